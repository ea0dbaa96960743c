//! The memory the device reads and writes by physical address: the trait
//! the driver logic uses for its virtqueue region, and its one volatile
//! implementation over a region mapped into the driver PD.
//!
//! Every access is bounds-checked against the region (an access outside it
//! reads 0 and writes nothing): the driver's own offsets are constants
//! checked at init, so an out-of-range access would be a driver bug, and it
//! must not become a stray write.

/// A physically contiguous region shared with a bus-master device.
///
/// Accesses are little-endian (virtio is; so is aarch64) and naturally
/// aligned; they are volatile because the device changes the memory.
pub trait DmaRegion {
    /// Physical address of byte 0 (what the device is told).
    fn paddr(&self) -> u64;
    /// Bytes in the region.
    fn len(&self) -> usize;
    /// Whether the region is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads the byte at `off`.
    fn read8(&self, off: usize) -> u8;
    /// Reads the `u16` at `off` (2-aligned).
    fn read16(&self, off: usize) -> u16;
    /// Reads the `u32` at `off` (4-aligned).
    fn read32(&self, off: usize) -> u32;
    /// Writes the byte at `off`.
    fn write8(&mut self, off: usize, v: u8);
    /// Writes the `u16` at `off` (2-aligned).
    fn write16(&mut self, off: usize, v: u16);
    /// Writes the `u32` at `off` (4-aligned).
    fn write32(&mut self, off: usize, v: u32);
    /// Writes the `u64` at `off` (8-aligned).
    fn write64(&mut self, off: usize, v: u64);
    /// Orders every access before it against every access after it, for
    /// the device too. The virtio-mmio device is cache-coherent on `virt`
    /// (as Linux assumes with its weak barriers there), so an inner-shareable
    /// full fence is enough.
    fn barrier(&self) {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}

/// [`DmaRegion`] over memory mapped into this PD.
#[derive(Debug)]
pub struct VolatileDma {
    base: *mut u8,
    len: usize,
    paddr: u64,
}

impl VolatileDma {
    /// Wraps `len` bytes mapped at `base` whose physical address is `paddr`.
    ///
    /// # Safety
    /// `base` must be 8-byte aligned and `base..base + len` mapped
    /// readable and writable into this PD for as long as the value lives,
    /// physically contiguous from `paddr`, and accessed by no other code of
    /// this PD meanwhile (the device may change it at any time: that is why
    /// every access is volatile).
    #[allow(unsafe_code)]
    pub unsafe fn new(base: *mut u8, len: usize, paddr: u64) -> VolatileDma {
        VolatileDma { base, len, paddr }
    }

    /// The pointer for `width` bytes at `off`, if inside and aligned.
    fn at(&self, off: usize, width: usize) -> Option<*mut u8> {
        let end = off.checked_add(width)?;
        (end <= self.len && off % width == 0).then(|| self.base.wrapping_add(off))
    }
}

#[allow(unsafe_code)]
impl DmaRegion for VolatileDma {
    fn paddr(&self) -> u64 {
        self.paddr
    }

    fn len(&self) -> usize {
        self.len
    }

    fn read8(&self, off: usize) -> u8 {
        match self.at(off, 1) {
            // SAFETY: in bounds (checked by `at`); `new`'s contract says it is mapped.
            Some(p) => unsafe { p.read_volatile() },
            None => 0,
        }
    }

    fn read16(&self, off: usize) -> u16 {
        match self.at(off, 2) {
            // SAFETY: in bounds and 2-aligned (checked; base is 8-aligned).
            Some(p) => u16::from_le(unsafe { p.cast::<u16>().read_volatile() }),
            None => 0,
        }
    }

    fn read32(&self, off: usize) -> u32 {
        match self.at(off, 4) {
            // SAFETY: in bounds and 4-aligned (checked; base is 8-aligned).
            Some(p) => u32::from_le(unsafe { p.cast::<u32>().read_volatile() }),
            None => 0,
        }
    }

    fn write8(&mut self, off: usize, v: u8) {
        if let Some(p) = self.at(off, 1) {
            // SAFETY: in bounds and writable (`new`'s contract).
            unsafe { p.write_volatile(v) }
        }
    }

    fn write16(&mut self, off: usize, v: u16) {
        if let Some(p) = self.at(off, 2) {
            // SAFETY: in bounds, 2-aligned and writable.
            unsafe { p.cast::<u16>().write_volatile(v.to_le()) }
        }
    }

    fn write32(&mut self, off: usize, v: u32) {
        if let Some(p) = self.at(off, 4) {
            // SAFETY: in bounds, 4-aligned and writable.
            unsafe { p.cast::<u32>().write_volatile(v.to_le()) }
        }
    }

    fn write64(&mut self, off: usize, v: u64) {
        if let Some(p) = self.at(off, 8) {
            // SAFETY: in bounds, 8-aligned and writable.
            unsafe { p.cast::<u64>().write_volatile(v.to_le()) }
        }
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    #[test]
    fn volatile_dma_bounds_and_alignment() {
        let mut backing = [0u64; 4];
        // SAFETY: `backing` is 32 bytes, 8-aligned, alive for the test and
        // only touched through `d` meanwhile.
        let mut d = unsafe { VolatileDma::new(backing.as_mut_ptr().cast(), 32, 0x5000_0000) };
        d.write64(8, 0x0102_0304_0506_0708);
        assert_eq!(d.read32(8), 0x0506_0708);
        assert_eq!(d.read16(12), 0x0304);
        assert_eq!(d.read8(15), 1);
        d.write64(32, 1); // past the end: dropped
        d.write32(30, 1); // straddles the end: dropped
        d.write16(3, 1); // misaligned: dropped
        assert_eq!(d.read32(32), 0);
        assert_eq!(d.read16(3), 0);
        d.write8(31, 0xAA);
        d.write16(28, 0xBBCC);
        assert_eq!(d.read32(28), 0xAA00_BBCC);
        assert_eq!(backing[1], 0x0102_0304_0506_0708);
        assert_eq!((d.paddr(), d.len(), d.is_empty()), (0x5000_0000, 32, false));
    }
}
