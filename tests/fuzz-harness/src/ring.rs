//! Fuzz target `ring_reader`: a hostile neighbour writes the whole shared ring region.
//!
//! Input: byte 0 picks the capacity (`1 << ((b & 15) % 6)`) and the reading side
//! (`b >> 4`: a consumer of buffer descriptors, of responses, of `u64`s, or a
//! producer reading the neighbour's `head`); then the region's bytes (header
//! and slots, little-endian words, zero-filled if short); then a script of
//! 6-byte steps `[op, word, value: u32 LE]` — odd `op`: the neighbour writes
//! `value` into `word` (modulo the ring's words), even `op`: our side acts.
//!
//! Whatever the bytes, the reader must return items or typed errors, never
//! panic, never report an internal bounds error (which would mean an index
//! escaped its mask), and every descriptor it accepts must index a real data
//! buffer without going out of range.

use core::sync::atomic::Ordering;

use bulkhead_ring::layout;
use bulkhead_ring::{
    BufDesc, CacheLine, Consumer, InFlight, Pod, Producer, Region, Response, RingError,
};

/// Bytes of the data region the fuzzed buffer descriptors point into.
const DATA_LEN: usize = 4096;

/// Which side of the ring the fuzzer plays against.
#[derive(Clone, Copy)]
enum Side {
    Buffers,
    Responses,
    Words,
    Producer,
}

/// Run one input (see module docs).
pub fn ring_reader(data: &[u8]) {
    let Some((&cfg, rest)) = data.split_first() else {
        return;
    };
    let capacity = 1u32 << ((cfg & 0xf) % 6);
    let side = match cfg >> 4 & 3 {
        0 => Side::Buffers,
        1 => Side::Responses,
        2 => Side::Words,
        _ => Side::Producer,
    };
    match side {
        Side::Buffers | Side::Producer => run::<BufDesc>(side, capacity, rest),
        Side::Responses => run::<Response<[u32; 2]>>(side, capacity, rest),
        Side::Words => run::<u64>(side, capacity, rest),
    }
}

/// Only `Corrupt` may come out of a ring operation after a successful attach.
fn check(e: RingError) {
    assert!(
        matches!(e, RingError::Corrupt { .. } | RingError::Full),
        "unexpected ring error {e:?}"
    );
}

fn run<T: Pod + core::fmt::Debug + 'static>(side: Side, capacity: u32, input: &[u8]) {
    let Ok(bytes) = layout::ring_bytes(capacity, T::WORDS) else {
        return;
    };
    let lines: Vec<CacheLine> = (0..bytes / 64).map(|_| CacheLine::new()).collect();
    let region = Region::from_lines(&lines);
    let words: Vec<&core::sync::atomic::AtomicU32> =
        lines.iter().flat_map(|l| l.0.iter()).collect();

    let (contents, script) = input.split_at(input.len().min(bytes));
    for (w, chunk) in words.iter().zip(contents.chunks(4)) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        w.store(u32::from_le_bytes(b), Ordering::Relaxed);
    }

    let data_region = [0u8; DATA_LEN];
    let mut ids = InFlight::<8>::new();
    for _ in 0..4 {
        ids.issue();
    }
    let mut ours = Ours::<T>::attach(side, region, capacity, &words);
    let Some(ours) = ours.as_mut() else { return };

    for step in script.chunks_exact(6) {
        if step[0] & 1 == 1 {
            let value = u32::from_le_bytes([step[2], step[3], step[4], step[5]]);
            if let Some(w) = words.get(usize::from(step[1]) % words.len()) {
                w.store(value, Ordering::Relaxed);
            }
        } else {
            ours.act(&data_region, &mut ids);
        }
    }
    // Then drain: at most `capacity` entries can be available at once.
    for _ in 0..=capacity {
        ours.act(&data_region, &mut ids);
    }
}

/// Our side of the ring.
enum Ours<'a, T: Pod> {
    Consumer(Side, Consumer<'a, T>),
    Producer(Producer<'a, T>),
}

impl<'a, T: Pod + core::fmt::Debug + 'static> Ours<'a, T> {
    /// Attach; if the neighbour's layout tag disagrees, clear it and retry so
    /// that the fuzzer gets past the tag check to the indices and slots.
    fn attach(
        side: Side,
        region: Region<'a>,
        capacity: u32,
        words: &[&core::sync::atomic::AtomicU32],
    ) -> Option<Self> {
        let peer_tag = if matches!(side, Side::Producer) {
            layout::CONSUMER_TAG
        } else {
            layout::PRODUCER_TAG
        };
        for _ in 0..2 {
            let r = match side {
                Side::Producer => Producer::attach(region, capacity).map(Ours::Producer),
                _ => Consumer::attach(region, capacity).map(|c| Ours::Consumer(side, c)),
            };
            match r {
                Ok(o) => return Some(o),
                Err(e) => {
                    assert!(
                        matches!(e, RingError::LayoutMismatch { .. }),
                        "attach failed on a well-sized region: {e:?}"
                    );
                    words.get(peer_tag)?.store(0, Ordering::Relaxed);
                }
            }
        }
        None
    }

    fn act(&mut self, data_region: &[u8; DATA_LEN], ids: &mut InFlight<8>) {
        match self {
            Ours::Producer(p) => match p.push(&pod_default::<T>()) {
                Ok(()) => {
                    let _ = p.notify_needed();
                }
                Err(e) => check(e),
            },
            Ours::Consumer(side, c) => match c.pop() {
                Ok(Some(item)) => use_item(*side, &item, data_region, ids),
                Ok(None) => {
                    let _ = c.arm_signal();
                }
                Err(e) => check(e),
            },
        }
    }
}

/// An all-zero `T`, built through its own decoder.
fn pod_default<T: Pod>() -> T {
    T::load(&mut |_| 0)
}

/// Validate a copied-out entry the way a PD would, and use it.
fn use_item<T: Pod + core::fmt::Debug + 'static>(
    side: Side,
    item: &T,
    data_region: &[u8; DATA_LEN],
    ids: &mut InFlight<8>,
) {
    let mut w = [0u32; 8];
    item.store(&mut |i, v| {
        if let Some(slot) = w.get_mut(i) {
            *slot = v;
        }
    });
    match side {
        Side::Buffers => {
            let d = BufDesc::load(&mut |i| w.get(i).copied().unwrap_or(0));
            if let Ok(range) = d.range_in(DATA_LEN) {
                // Slicing panics if `range_in` let anything out of range through.
                let buf = &data_region[range];
                let _ = buf.iter().fold(0u8, |a, b| a ^ b);
            }
        }
        Side::Responses => {
            let r = Response::<[u32; 2]>::load(&mut |i| w.get(i).copied().unwrap_or(0));
            let _ = ids.complete(r.id);
        }
        Side::Words | Side::Producer => {}
    }
}
