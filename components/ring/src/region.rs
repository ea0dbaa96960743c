//! The only `unsafe` in this crate: turning a shared memory region into `&[AtomicU32]`.
//!
//! Every access the rings make to shared memory — indices, flags and slot
//! contents — is a 32-bit atomic load or store through the slice built here.
//! That is what makes a hostile neighbour harmless to the memory model: the
//! peer can write any bit pattern at any time, and each of our reads still
//! returns *some* 32-bit value (a torn multi-word slot is just another
//! arbitrary value, validated after it has been copied out).
//!
//! ```
//! use bulkhead_ring::{CacheLine, Region};
//! let lines: Vec<CacheLine> = (0..8).map(|_| CacheLine::new()).collect();
//! let region = Region::from_lines(&lines);
//! assert_eq!(region.len_bytes(), 8 * 64);
//! ```
#![allow(unsafe_code)]

use core::sync::atomic::AtomicU32;

use crate::RingError;

/// Alignment the rings require of a region: one cache line on every board we
/// support (Cortex-A53/A55/A72 and x86-64). With it, header fields written by
/// different sides, which the layout puts 128 bytes apart, never share a line
/// or an adjacent-line prefetch pair (see [`crate::layout::HEADER_WORDS`]).
pub const REGION_ALIGN: usize = 64;

/// Number of 32-bit words in one [`CacheLine`].
pub const LINE_WORDS: usize = REGION_ALIGN / 4;

/// One cache line of atomics: the unit tests, benchmarks and fuzzers allocate
/// regions in, so that they get the alignment a Microkit region (page-aligned)
/// has without any `unsafe` on their side.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct CacheLine(pub [AtomicU32; LINE_WORDS]);

impl CacheLine {
    /// A zeroed line (a zeroed region is an empty ring).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

// The layout claims above are what `from_lines` relies on.
const _: () = assert!(core::mem::size_of::<CacheLine>() == REGION_ALIGN);
const _: () = assert!(core::mem::align_of::<CacheLine>() == REGION_ALIGN);

/// A shared memory region seen as 32-bit atomic words, aligned to
/// [`REGION_ALIGN`]. Cheap to copy; borrows the memory for `'a`.
#[derive(Debug, Clone, Copy)]
pub struct Region<'a> {
    words: &'a [AtomicU32],
}

impl<'a> Region<'a> {
    /// Views `len` bytes at `ptr` as a region.
    ///
    /// This is how a PD turns the address Microkit patched into its
    /// `setvar_vaddr` symbol (and the size from its configuration) into a
    /// region. `len` is rounded down to whole 32-bit words.
    ///
    /// # Errors
    /// [`RingError::Misaligned`] if `ptr` is null or not aligned to
    /// [`REGION_ALIGN`].
    ///
    /// # Safety
    /// For all of `'a`, `ptr..ptr+len` must be mapped readable and writable in
    /// this address space, and every access to it *from this address space*
    /// must be atomic (in practice: only through regions built from it). Other
    /// address spaces (the peer PD) may write it arbitrarily; that is the
    /// threat the rings are built to survive.
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> Result<Self, RingError> {
        if ptr.is_null() || ptr.align_offset(REGION_ALIGN) != 0 {
            return Err(RingError::Misaligned);
        }
        // SAFETY: the pointer is non-null and aligned (checked above, and
        // REGION_ALIGN is a multiple of AtomicU32's alignment); the caller
        // guarantees `len` bytes are mapped and only accessed atomically for
        // 'a, and `len / 4` words fit in those bytes. AtomicU32 has the same
        // size as u32 and every bit pattern is valid.
        let words = unsafe { core::slice::from_raw_parts(ptr.cast::<AtomicU32>(), len / 4) };
        Ok(Self { words })
    }

    /// Views a slice of cache lines (heap or static memory) as a region.
    #[must_use]
    pub fn from_lines(lines: &'a [CacheLine]) -> Self {
        let ptr = lines.as_ptr().cast::<AtomicU32>();
        // SAFETY: `CacheLine` is `repr(C)` around `[AtomicU32; LINE_WORDS]`
        // with no padding (size asserted equal to LINE_WORDS * 4 above), so
        // `lines.len()` lines are exactly `lines.len() * LINE_WORDS` contiguous,
        // initialised atomics, borrowed for 'a like `lines` itself.
        let words = unsafe { core::slice::from_raw_parts(ptr, lines.len() * LINE_WORDS) };
        Self { words }
    }

    /// Length of the region in bytes.
    #[must_use]
    pub fn len_bytes(&self) -> usize {
        self.words.len() * 4
    }

    /// Splits the region at byte offset `at` (a multiple of [`REGION_ALIGN`]),
    /// e.g. to carve the two rings of a [`crate::buf`] queue pair out of one
    /// Microkit region.
    ///
    /// # Errors
    /// [`RingError::Misaligned`] if `at` is not a multiple of
    /// [`REGION_ALIGN`]; [`RingError::RegionTooSmall`] if it is past the end.
    pub fn split_at(self, at: usize) -> Result<(Region<'a>, Region<'a>), RingError> {
        if at % REGION_ALIGN != 0 {
            return Err(RingError::Misaligned);
        }
        if at > self.len_bytes() {
            return Err(RingError::RegionTooSmall {
                needed: at,
                got: self.len_bytes(),
            });
        }
        let (a, b) = self.words.split_at(at / 4);
        Ok((Region { words: a }, Region { words: b }))
    }

    /// The region's words (crate-internal: rings index it only with offsets
    /// validated against its length when they attach).
    pub(crate) fn words(&self) -> &'a [AtomicU32] {
        self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_raw_rejects_misaligned_and_null() {
        let lines = [CacheLine::new(), CacheLine::new()];
        let base = lines.as_ptr().cast::<u8>().cast_mut();
        // SAFETY: never dereferenced: the constructor fails before building a slice.
        let r = unsafe { Region::from_raw(base.wrapping_add(4), 64) };
        assert_eq!(r.err(), Some(RingError::Misaligned));
        // SAFETY: as above, null is rejected first.
        let r = unsafe { Region::from_raw(core::ptr::null_mut(), 64) };
        assert_eq!(r.err(), Some(RingError::Misaligned));
        // SAFETY: `lines` is 128 bytes of atomics, aligned to 64, alive here.
        let r = unsafe { Region::from_raw(base, 128) }.unwrap();
        assert_eq!(r.len_bytes(), 128);
    }

    #[test]
    fn split_at_checks_alignment_and_bounds() {
        let lines = [CacheLine::new(), CacheLine::new()];
        let r = Region::from_lines(&lines);
        assert_eq!(r.split_at(4).err(), Some(RingError::Misaligned));
        assert!(matches!(
            r.split_at(192),
            Err(RingError::RegionTooSmall { .. })
        ));
        let (a, b) = r.split_at(64).unwrap();
        assert_eq!((a.len_bytes(), b.len_bytes()), (64, 64));
    }
}
