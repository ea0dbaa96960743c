//! Shape (a): free/active queue pairs of buffer descriptors into a data region.
//!
//! Two rings in one control region, `free` first, then `active`, each of the
//! same capacity. Buffers live in a separate data region both PDs map; a
//! descriptor names one by byte offset and length. Ownership of a buffer
//! travels with its descriptor: whoever last popped it may touch it.
//!
//! - A [`Lender`] owns empty buffers: it pushes them on `free` and gets them
//!   back, filled, on `active` (network/serial RX client, block requester).
//! - A [`Filler`] pops empty buffers from `free`, fills them and pushes them
//!   on `active` (RX driver or virtualiser; TX client, which fills frames).
//!
//! A descriptor popped from a neighbour is a copy; check it with
//! [`BufDesc::range_in`] before touching the data region.
//!
//! ```
//! use bulkhead_ring::{buf, BufDesc, CacheLine, Region};
//! let bytes = buf::pair_bytes(16)?;
//! let lines: Vec<CacheLine> = (0..bytes / 64).map(|_| CacheLine::new()).collect();
//! let region = Region::from_lines(&lines);
//! let mut client = buf::Lender::attach(region, 16)?;
//! let mut driver = buf::Filler::attach(region, 16)?;
//! client.free.push(&BufDesc { offset: 0, len: 2048, cookie: 0 })?;
//! let d = driver.free.pop()?.expect("one buffer");
//! let range = d.range_in(1 << 20)?; // the data region is 1 MiB
//! driver.active.push(&BufDesc { len: 60, ..d })?;
//! assert_eq!(client.active.pop()?.map(|d| d.len), Some(60));
//! # let _ = range;
//! # Ok::<(), bulkhead_ring::RingError>(())
//! ```

use core::ops::Range;

use crate::{layout, Consumer, Pod, Producer, Region, RingError};

/// A buffer descriptor: `len` bytes at `offset` in the data region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufDesc {
    /// Byte offset of the buffer in the data region.
    pub offset: u64,
    /// Length in bytes: capacity when on `free`, bytes filled when on `active`.
    pub len: u32,
    /// Opaque to the rings; the lender's own tag (e.g. its buffer index), so
    /// that it can find its bookkeeping without trusting `offset`.
    pub cookie: u32,
}

/// Words: `offset` low, `offset` high, `len`, `cookie`.
impl Pod for BufDesc {
    const WORDS: usize = 4;
    fn store(&self, put: &mut impl FnMut(usize, u32)) {
        self.offset.store(put);
        put(2, self.len);
        put(3, self.cookie);
    }
    fn load(get: &mut impl FnMut(usize) -> u32) -> Self {
        BufDesc {
            offset: u64::load(get),
            len: get(2),
            cookie: get(3),
        }
    }
}

impl BufDesc {
    /// The byte range this descriptor names, if it lies wholly inside a data
    /// region of `data_len` bytes. Overflow-safe; a zero-length buffer at the
    /// very end is allowed.
    ///
    /// # Errors
    /// [`RingError::BufferOutOfRange`] otherwise.
    pub fn range_in(&self, data_len: usize) -> Result<Range<usize>, RingError> {
        let bad = RingError::BufferOutOfRange {
            offset: self.offset,
            len: self.len,
        };
        let start = usize::try_from(self.offset).map_err(|_| bad)?;
        let len = usize::try_from(self.len).map_err(|_| bad)?;
        let end = start.checked_add(len).ok_or(bad)?;
        if end > data_len {
            return Err(bad);
        }
        Ok(start..end)
    }
}

/// Bytes a queue pair of `capacity` descriptors per ring occupies (two rings
/// back to back; see README for offsets).
///
/// # Errors
/// As [`layout::ring_bytes`].
pub fn pair_bytes(capacity: u32) -> Result<usize, RingError> {
    Ok(layout::ring_bytes(capacity, BufDesc::WORDS)? * 2)
}

/// Splits a control region into the `free` and `active` ring regions.
fn split(region: Region<'_>, capacity: u32) -> Result<(Region<'_>, Region<'_>), RingError> {
    let one = layout::ring_bytes(capacity, BufDesc::WORDS)?;
    let needed = one * 2;
    if region.len_bytes() < needed {
        return Err(RingError::RegionTooSmall {
            needed,
            got: region.len_bytes(),
        });
    }
    region.split_at(one)
}

/// The end that owns empty buffers: produces `free`, consumes `active`.
#[derive(Debug)]
pub struct Lender<'a> {
    /// Empty buffers handed to the filler.
    pub free: Producer<'a, BufDesc>,
    /// Filled buffers coming back.
    pub active: Consumer<'a, BufDesc>,
}

impl<'a> Lender<'a> {
    /// Attaches to a queue pair of `capacity` descriptors per ring.
    ///
    /// # Errors
    /// As [`Producer::attach`].
    pub fn attach(region: Region<'a>, capacity: u32) -> Result<Self, RingError> {
        let (free, active) = split(region, capacity)?;
        Ok(Self {
            free: Producer::attach(free, capacity)?,
            active: Consumer::attach(active, capacity)?,
        })
    }
}

/// The end that fills buffers: consumes `free`, produces `active`.
#[derive(Debug)]
pub struct Filler<'a> {
    /// Empty buffers to fill.
    pub free: Consumer<'a, BufDesc>,
    /// Filled buffers handed back.
    pub active: Producer<'a, BufDesc>,
}

impl<'a> Filler<'a> {
    /// Attaches to a queue pair of `capacity` descriptors per ring.
    ///
    /// # Errors
    /// As [`Producer::attach`].
    pub fn attach(region: Region<'a>, capacity: u32) -> Result<Self, RingError> {
        let (free, active) = split(region, capacity)?;
        Ok(Self {
            free: Consumer::attach(free, capacity)?,
            active: Producer::attach(active, capacity)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_in_rejects_overflow_and_overrun() {
        let d = |offset, len| BufDesc {
            offset,
            len,
            cookie: 0,
        };
        assert_eq!(d(0, 10).range_in(10), Ok(0..10));
        assert_eq!(d(10, 0).range_in(10), Ok(10..10));
        assert!(d(10, 1).range_in(10).is_err());
        assert!(d(u64::MAX, 2).range_in(usize::MAX).is_err());
        assert!(d(u64::MAX - 1, u32::MAX).range_in(usize::MAX).is_err());
    }

    #[test]
    fn pair_needs_room_for_both_rings() {
        let lines: std::vec::Vec<crate::CacheLine> =
            (0..10).map(|_| crate::CacheLine::new()).collect();
        // One ring of 4 descriptors is 448 bytes; the pair needs 896, we have 640.
        let r = Region::from_lines(&lines);
        assert!(matches!(
            Lender::attach(r, 4),
            Err(RingError::RegionTooSmall { needed: 896, .. })
        ));
    }
}
