//! The guest's RAM as its VMM maps it.

use bulkhead_virtio::{GuestMemory, MemError};

/// The bytes behind guest RAM. Implementations copy; nothing hands out a
/// reference into memory the guest can change under it.
///
/// [`GuestRam`] calls these only with `offset + len <= self.len()`.
pub trait RamBacking {
    /// Size in bytes.
    fn len(&self) -> usize;
    /// Whether the backing is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copy `buf.len()` bytes at `offset` into `buf`.
    fn read_at(&self, offset: usize, buf: &mut [u8]);
    /// Copy `data` to `offset`.
    fn write_at(&mut self, offset: usize, data: &[u8]);
}

impl RamBacking for &mut [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn read_at(&self, offset: usize, buf: &mut [u8]) {
        if let Some(src) = self.get(offset..offset.saturating_add(buf.len())) {
            buf.copy_from_slice(src);
        }
    }
    fn write_at(&mut self, offset: usize, data: &[u8]) {
        if let Some(dst) = self.get_mut(offset..offset.saturating_add(data.len())) {
            dst.copy_from_slice(data);
        }
    }
}

/// Guest RAM: `backing` seen at guest-physical `base`.
#[derive(Debug)]
pub struct GuestRam<B> {
    base: u64,
    backing: B,
}

impl<B: RamBacking> GuestRam<B> {
    /// RAM of `backing.len()` bytes at guest-physical `base`.
    pub fn new(base: u64, backing: B) -> Self {
        GuestRam { base, backing }
    }

    /// Guest-physical base.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.backing.len() as u64
    }

    /// The backing (for loading images at boot).
    pub fn backing_mut(&mut self) -> &mut B {
        &mut self.backing
    }

    /// Offset of `[gpa, gpa + len)` in the backing, if wholly inside.
    fn offset(&self, gpa: u64, len: u64) -> Option<usize> {
        let off = gpa.checked_sub(self.base)?;
        let end = off.checked_add(len)?;
        if end > self.size() {
            return None;
        }
        usize::try_from(off).ok()
    }
}

impl<B: RamBacking> GuestMemory for GuestRam<B> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let off = self
            .offset(gpa, buf.len() as u64)
            .ok_or(MemError::OutOfRange)?;
        self.backing.read_at(off, buf);
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let off = self
            .offset(gpa, data.len() as u64)
            .ok_or(MemError::OutOfRange)?;
        self.backing.write_at(off, data);
        Ok(())
    }

    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        self.offset(gpa, len)
            .map(|_| ())
            .ok_or(MemError::OutOfRange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_at_both_ends_and_for_overflow() {
        let mut bytes = [0u8; 16];
        let mut ram = GuestRam::new(0x1000, &mut bytes[..]);
        assert!(ram.write(0x1000, &[1; 16]).is_ok());
        assert_eq!(ram.write(0x0fff, &[1]), Err(MemError::OutOfRange));
        assert_eq!(ram.write(0x1001, &[1; 16]), Err(MemError::OutOfRange));
        assert_eq!(ram.check_range(u64::MAX, 2), Err(MemError::OutOfRange));
        assert_eq!(
            ram.check_range(0x1010, 0),
            Ok(()),
            "an empty range at the end is inside"
        );
        let mut b = [0u8; 4];
        assert!(ram.read(0x100c, &mut b).is_ok());
        assert_eq!(b, [1; 4]);
    }
}
