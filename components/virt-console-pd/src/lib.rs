//! The console hop between PDs: rings of [`Chunk`]s in `serial_H_req`
//! (downwards, towards the UART) and `serial_H_resp` (upwards, input), and
//! helpers to attach them from a PD's regions.
#![no_std]

#[cfg(test)]
extern crate std;

use bulkhead_ring::{Consumer, Pod, Producer, Region as RingRegion, RingError};
use bulkhead_runtime::Region;

/// Bytes one chunk carries.
pub const CHUNK_BYTES: usize = 56;

/// Slots per console ring (both directions, every hop).
pub const RING_CAPACITY: u32 = 32;

/// Up to [`CHUNK_BYTES`] bytes of console data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    len: u32,
    data: [u8; CHUNK_BYTES],
}

impl Chunk {
    /// A chunk of the first [`CHUNK_BYTES`] bytes of `bytes`; returns it and
    /// how many bytes it took.
    pub fn new(bytes: &[u8]) -> (Chunk, usize) {
        let n = bytes.len().min(CHUNK_BYTES);
        let mut data = [0u8; CHUNK_BYTES];
        data[..n].copy_from_slice(&bytes[..n]);
        (
            Chunk {
                len: u32::try_from(n).unwrap_or(0),
                data,
            },
            n,
        )
    }

    /// The bytes (a length from a neighbour is clamped, never trusted).
    pub fn bytes(&self) -> &[u8] {
        let n = usize::try_from(self.len).unwrap_or(0).min(CHUNK_BYTES);
        &self.data[..n]
    }
}

impl Pod for Chunk {
    const WORDS: usize = 1 + CHUNK_BYTES / 4;

    fn store(&self, put: &mut impl FnMut(usize, u32)) {
        put(0, self.len);
        for (i, w) in self.data.chunks_exact(4).enumerate() {
            put(1 + i, u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
    }

    fn load(get: &mut impl FnMut(usize) -> u32) -> Self {
        let len = get(0);
        let mut data = [0u8; CHUNK_BYTES];
        for (i, w) in data.chunks_exact_mut(4).enumerate() {
            w.copy_from_slice(&get(1 + i).to_le_bytes());
        }
        Chunk { len, data }
    }
}

/// Why a hop could not be attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopError {
    /// The PD has no such region.
    NoRegion,
    /// The ring refused the region.
    Ring(RingError),
}

fn ring_region(name: &str) -> Result<RingRegion<'static>, HopError> {
    let r = Region::get(name).map_err(|_| HopError::NoRegion)?;
    // SAFETY: the runtime mapped `r.size()` bytes at `r.vaddr()` read-write
    // for the life of the PD, and this PD touches the region only through
    // the ring built here (atomic word accesses).
    unsafe { RingRegion::from_raw(r.vaddr() as *mut u8, r.size()) }.map_err(HopError::Ring)
}

/// Attaches the producer end of the ring in region `name`.
pub fn producer(name: &str) -> Result<Producer<'static, Chunk>, HopError> {
    Producer::attach(ring_region(name)?, RING_CAPACITY).map_err(HopError::Ring)
}

/// Attaches the consumer end of the ring in region `name`.
pub fn consumer(name: &str) -> Result<Consumer<'static, Chunk>, HopError> {
    Consumer::attach(ring_region(name)?, RING_CAPACITY).map_err(HopError::Ring)
}

/// Pushes as much of `bytes` as fits; returns how many bytes went in and
/// whether the consumer asked for a notification.
pub fn push_bytes(
    p: &mut Producer<'_, Chunk>,
    mut bytes: &[u8],
) -> Result<(usize, bool), RingError> {
    let mut sent = 0;
    while !bytes.is_empty() {
        let (c, n) = Chunk::new(bytes);
        match p.push(&c) {
            Ok(()) => {}
            Err(RingError::Full) => break,
            Err(e) => return Err(e),
        }
        sent += n;
        bytes = &bytes[n..];
    }
    Ok((sent, sent > 0 && p.notify_needed()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_ring::{Armed, CacheLine};

    #[test]
    fn chunks_round_trip_and_a_hostile_length_is_clamped() {
        let (c, n) = Chunk::new(&[7u8; 100]);
        assert_eq!((n, c.bytes().len()), (CHUNK_BYTES, CHUNK_BYTES));
        let mut words = [0u32; Chunk::WORDS];
        c.store(&mut |i, w| words[i] = w);
        words[0] = u32::MAX;
        let back = Chunk::load(&mut |i| words[i]);
        assert_eq!(back.bytes(), &[7u8; CHUNK_BYTES][..]);
    }

    #[test]
    fn push_bytes_splits_stops_when_full_and_asks_to_notify_only_when_armed() {
        let need = bulkhead_ring::layout::ring_bytes(RING_CAPACITY, Chunk::WORDS).unwrap();
        let lines: std::vec::Vec<CacheLine> = (0..need / core::mem::size_of::<CacheLine>() + 1)
            .map(|_| CacheLine::new())
            .collect();
        let region = RingRegion::from_lines(&lines);
        let mut tx = Producer::<Chunk>::attach(region, RING_CAPACITY).unwrap();
        let mut rx = Consumer::<Chunk>::attach(region, RING_CAPACITY).unwrap();
        assert_eq!(push_bytes(&mut tx, b"hello").unwrap(), (5, false));
        assert_eq!(rx.pop().unwrap().unwrap().bytes(), b"hello");
        assert_eq!(rx.arm_signal().unwrap(), Armed::MaySleep);
        assert_eq!(push_bytes(&mut tx, b"x").unwrap(), (1, true));
        let big = [1u8; CHUNK_BYTES * 40];
        let (sent, _) = push_bytes(&mut tx, &big).unwrap();
        assert_eq!(sent, CHUNK_BYTES * 31, "one slot was taken, 31 left");
    }
}
