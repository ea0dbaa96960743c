//! Register access behind a trait, so the driver logic is safe code and can
//! run against a register-level model in tests.

/// 32-bit register access at byte offsets from a controller's base.
pub trait Mmio {
    /// Reads the register at `offset`.
    fn read32(&self, offset: usize) -> u32;
    /// Writes `value` to the register at `offset`.
    fn write32(&mut self, offset: usize, value: u32);
}

#[allow(unsafe_code)]
pub mod volatile {
    //! Volatile access to a memory-mapped register window: the crate's only
    //! `unsafe`.

    use super::Mmio;

    /// A mapped register window of `len` bytes at `base`.
    #[derive(Debug)]
    pub struct VolatileMmio {
        base: usize,
        len: usize,
    }

    impl VolatileMmio {
        /// Wraps the window `[base, base + len)`.
        ///
        /// # Safety
        /// `base` must be the 4-byte aligned virtual address of a device
        /// register window of at least `len` bytes, mapped uncached into
        /// this protection domain for the lifetime of the value, and no
        /// other code may access it concurrently.
        pub const unsafe fn new(base: usize, len: usize) -> Self {
            Self { base, len }
        }

        fn addr(&self, offset: usize) -> Option<usize> {
            (offset % 4 == 0 && offset.checked_add(4)? <= self.len).then(|| self.base + offset)
        }
    }

    impl Mmio for VolatileMmio {
        fn read32(&self, offset: usize) -> u32 {
            match self.addr(offset) {
                // SAFETY: `new`'s contract makes [base, base+len) a mapped,
                // exclusively owned register window; `addr` checked that the
                // aligned 4-byte access lies inside it.
                Some(a) => unsafe { core::ptr::read_volatile(a as *const u32) },
                // Out of the window: a driver bug; reads as all-ones like an
                // unclaimed bus access rather than touching other memory.
                None => u32::MAX,
            }
        }

        fn write32(&mut self, offset: usize, value: u32) {
            if let Some(a) = self.addr(offset) {
                // SAFETY: as for `read32`: an aligned access inside the
                // window this value exclusively owns.
                unsafe { core::ptr::write_volatile(a as *mut u32, value) }
            }
        }
    }
}
