//! Typed 32-bit register access for device drivers.
//!
//! ```
//! use drv_mmio::Reg;
//! const WINDOW: usize = 0x100;
//! const CTRL: Reg = Reg::at(0x04, WINDOW);
//! assert_eq!(CTRL.offset(), 4);
//! ```
#![no_std]
#![deny(unsafe_code)]

/// A 32-bit register at a byte offset checked at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(usize);

impl Reg {
    /// A register at `off` in a device window of `window` bytes; fails to
    /// compile (in a const) unless `off` is 4-byte aligned and inside it.
    pub const fn at(off: usize, window: usize) -> Reg {
        assert!(
            off % 4 == 0 && off < window,
            "register offset out of window"
        );
        Reg(off)
    }

    /// Byte offset in the window.
    pub const fn offset(self) -> usize {
        self.0
    }
}

/// Register access at a byte offset inside one device window.
///
/// Driver logic sees hardware only through this trait, so tests can
/// implement it with a register-level model.
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
    window: usize,
}

impl VolatileMmio {
    /// Wrap the device window of `window` bytes at `base`.
    ///
    /// # Safety
    /// `base` must be 4-byte aligned and point to `window` bytes of one
    /// device's registers, mapped uncached into this PD for as long as the
    /// returned value lives, and no other code may access that window
    /// meanwhile.
    #[allow(unsafe_code)]
    pub unsafe fn new(base: *mut u32, window: usize) -> VolatileMmio {
        VolatileMmio { base, window }
    }

    fn index(&self, r: Reg) -> Option<usize> {
        (r.offset() < self.window).then_some(r.offset() / 4)
    }
}

#[allow(unsafe_code)]
impl Mmio for VolatileMmio {
    fn read32(&mut self, r: Reg) -> u32 {
        // A register of another device's window reads as 0, never outside.
        let Some(i) = self.index(r) else { return 0 };
        // SAFETY: `i * 4 < window` (checked above) and `Reg` offsets are
        // 4-byte aligned; `new`'s contract says the window is mapped.
        unsafe { self.base.add(i).read_volatile() }
    }

    fn write32(&mut self, r: Reg, v: u32) {
        let Some(i) = self.index(r) else { return };
        // SAFETY: as in `read32`.
        unsafe { self.base.add(i).write_volatile(v) }
    }
}
