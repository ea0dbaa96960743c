//! A bounded view of guest RAM: the only way the device side touches guest
//! memory, by copying.
//!
//! ```
//! use bulkhead_virtio::{GuestMemory, MemError, SliceMemory};
//! let mut ram = [0u8; 16];
//! let mut mem = SliceMemory::new(0x1000, &mut ram);
//! mem.write(0x1008, &7u32.to_le_bytes())?;
//! let mut out = [0u8; 4];
//! mem.read(0x1008, &mut out)?;
//! assert_eq!(u32::from_le_bytes(out), 7);
//! assert_eq!(mem.read(0x0fff, &mut out), Err(MemError::OutOfRange));
//! # Ok::<(), MemError>(())
//! ```

use core::sync::atomic::{fence, Ordering};

/// Why a guest-memory access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    /// The range is not entirely inside guest RAM (or its end overflows).
    OutOfRange,
}

/// Guest RAM as the device side sees it: a set of guest-physical addresses
/// it may copy from and to.
///
/// Implementations must check every range completely (start and end, with
/// checked arithmetic) and must never return part of a copy: an access is
/// either done in full or refused. The device side never keeps a reference
/// into guest memory, so a guest changing memory concurrently can change only
/// the bytes of a copy, never the device's view of what it already copied.
///
/// Ordering: the split virtqueue needs three fences (§2.7.13: the device reads
/// `avail.idx` before the ring entries it covers, writes a used element
/// before `used.idx`, and publishes `used.idx`/`avail_event` before reading
/// `used_event`/`avail.idx` again). The defaults use `core::sync::atomic`
/// fences, which order plain copies against the guest's vCPUs on the same
/// coherent RAM; an implementation over memory without that guarantee
/// overrides them.
pub trait GuestMemory {
    /// Copies `buf.len()` bytes at guest-physical `gpa` into `buf`.
    ///
    /// # Errors
    /// [`MemError::OutOfRange`] if any byte is outside guest RAM; `buf` is
    /// then unspecified.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError>;

    /// Copies `data` to guest-physical `gpa`.
    ///
    /// # Errors
    /// [`MemError::OutOfRange`] if any byte is outside guest RAM; nothing is
    /// written then.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError>;

    /// Checks that `[gpa, gpa + len)` lies inside guest RAM without copying.
    ///
    /// # Errors
    /// [`MemError::OutOfRange`] if it does not.
    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError>;

    /// Orders earlier reads before later reads and writes (acquire).
    fn acquire_fence(&self) {
        fence(Ordering::Acquire);
    }

    /// Orders earlier reads and writes before later writes (release).
    fn release_fence(&self) {
        fence(Ordering::Release);
    }

    /// Orders earlier writes before later reads (full barrier).
    fn full_fence(&self) {
        fence(Ordering::SeqCst);
    }
}

/// Reads a little-endian `u16` at `gpa`.
pub(crate) fn read_u16<M: GuestMemory + ?Sized>(mem: &M, gpa: u64) -> Result<u16, MemError> {
    let mut b = [0u8; 2];
    mem.read(gpa, &mut b)?;
    Ok(u16::from_le_bytes(b))
}

/// Writes a little-endian `u16` at `gpa`.
pub(crate) fn write_u16<M: GuestMemory + ?Sized>(
    mem: &mut M,
    gpa: u64,
    v: u16,
) -> Result<(), MemError> {
    mem.write(gpa, &v.to_le_bytes())
}

/// Guest RAM backed by one byte slice that starts at guest-physical `base`.
///
/// Used by tests, fuzz targets and benchmarks; the VMM implements
/// [`GuestMemory`] over its shared guest-RAM region the same way.
#[derive(Debug)]
pub struct SliceMemory<'a> {
    base: u64,
    bytes: &'a mut [u8],
}

impl<'a> SliceMemory<'a> {
    /// Guest RAM `[base, base + bytes.len())`.
    pub fn new(base: u64, bytes: &'a mut [u8]) -> Self {
        Self { base, bytes }
    }

    /// The first guest-physical address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The backing bytes (for tests that inspect guest RAM directly).
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// The backing bytes, mutable (for in-test drivers that lay out rings).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.bytes
    }

    /// The slice index range for `[gpa, gpa + len)`, or `None` if any part of
    /// it is outside the slice or the arithmetic overflows.
    fn range(&self, gpa: u64, len: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(gpa.checked_sub(self.base)?).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.bytes.len()).then_some(start..end)
    }
}

impl GuestMemory for SliceMemory<'_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let r = self.range(gpa, buf.len()).ok_or(MemError::OutOfRange)?;
        let src = self.bytes.get(r).ok_or(MemError::OutOfRange)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let r = self.range(gpa, data.len()).ok_or(MemError::OutOfRange)?;
        let dst = self.bytes.get_mut(r).ok_or(MemError::OutOfRange)?;
        dst.copy_from_slice(data);
        Ok(())
    }

    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        let len = usize::try_from(len).map_err(|_| MemError::OutOfRange)?;
        self.range(gpa, len).map(|_| ()).ok_or(MemError::OutOfRange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_at_both_ends_and_for_overflow() {
        let mut ram = [0u8; 32];
        let mut m = SliceMemory::new(0x100, &mut ram);
        let mut b = [0u8; 4];
        assert_eq!(m.read(0xff, &mut b), Err(MemError::OutOfRange));
        assert_eq!(m.read(0x11d, &mut b), Err(MemError::OutOfRange));
        assert!(m.read(0x11c, &mut b).is_ok());
        assert_eq!(m.read(u64::MAX - 1, &mut b), Err(MemError::OutOfRange));
        assert_eq!(m.write(0x11f, &[1, 2]), Err(MemError::OutOfRange));
        assert_eq!(m.bytes()[31], 0, "a refused write writes nothing");
        assert_eq!(m.check_range(0x100, 32), Ok(()));
        assert_eq!(m.check_range(0x100, 33), Err(MemError::OutOfRange));
        assert_eq!(m.check_range(0x101, u64::MAX), Err(MemError::OutOfRange));
        // A zero-length range is inside if its start is.
        assert_eq!(m.check_range(0x120, 0), Ok(()));
        assert_eq!(m.check_range(0x121, 0), Err(MemError::OutOfRange));
    }
}
