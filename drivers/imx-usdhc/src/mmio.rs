//! The one place with `unsafe`: volatile 32-bit accesses over a mapped base.
//!
//! ```ignore
//! // SAFETY: `base` is the uSDHC window the PD was given in its .system file.
//! let regs = unsafe { VolatileMmio::new(base, ) };
//! ```
#![allow(unsafe_code)]

use crate::regs::Reg;

/// Register access at a byte offset inside one device window.
///
/// The driver logic sees hardware only through this trait, so the tests
/// can implement it with a register-level model.
pub trait Mmio {
    /// Read the 32-bit register `r`.
    fn read32(&mut self, r: Reg) -> u32;
    /// Write `v` to the 32-bit register `r`.
    fn write32(&mut self, r: Reg, v: u32);
}

/// Volatile MMIO over a device window mapped into this PD.
#[derive(Debug)]
pub struct VolatileMmio {
    base: *mut u32,
}

impl VolatileMmio {
    /// Wrap the device window at `base`.
    ///
    /// # Safety
    /// `base` must be 4-byte aligned and point to at least
    /// [`crate::regs::BLOCK_SIZE`] bytes of this device's registers, mapped
    /// uncached into this PD for as long as the returned value lives, and no
    /// other code may access that window meanwhile.
    pub unsafe fn new(base: *mut u32) -> VolatileMmio {
        VolatileMmio { base }
    }
}

impl Mmio for VolatileMmio {
    fn read32(&mut self, r: Reg) -> u32 {
        // SAFETY: `Reg` offsets are checked at compile time to be aligned and
        // below BLOCK_SIZE, and `new`'s contract says the window is mapped.
        unsafe { self.base.add(r.offset() / 4).read_volatile() }
    }

    fn write32(&mut self, r: Reg, v: u32) {
        // SAFETY: as in `read32`.
        unsafe { self.base.add(r.offset() / 4).write_volatile(v) }
    }
}
