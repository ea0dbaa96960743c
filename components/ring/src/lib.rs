//! Single-producer single-consumer rings in a memory region shared by two PDs.
//!
//! Two shapes over one ring primitive ([`Producer`]/[`Consumer`] of any
//! [`Pod`] slot type):
//! - [`buf`]: sDDF-style free/active pairs of [`BufDesc`] into a data region;
//! - [`reqresp`]: [`Request`]/[`Response`] rings with ids ([`InFlight`]) for
//!   out-of-order completion.
//!
//! Each side sees only a raw byte region ([`Region`]). The layout (README,
//! [`layout`]) is versioned; the notification protocol (`need_signal`) lets
//! the producer skip the signal syscall unless the consumer is going to sleep,
//! and never loses a wake-up (model-checked in `proofs/ring/ring.pml`). A
//! neighbour writing anything at all into the region makes the other side see
//! at worst a [`RingError`], never an out-of-range access or a panic.
//!
//! ```
//! use bulkhead_ring::{CacheLine, Consumer, Producer, Region, Request};
//! let lines: Vec<CacheLine> = (0..16).map(|_| CacheLine::new()).collect();
//! let region = Region::from_lines(&lines); // a PD uses `Region::from_raw`
//! let mut tx = Producer::<Request<u64>>::attach(region, 16)?;
//! let mut rx = Consumer::<Request<u64>>::attach(region, 16)?;
//! tx.push(&Request { id: 1, op: 2, payload: 3 })?;
//! assert_eq!(rx.pop()?.map(|r| r.payload), Some(3));
//! # Ok::<(), bulkhead_ring::RingError>(())
//! ```
#![no_std]
// `unsafe` is allowed only in `region`, which carries its own `allow`.
#![deny(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod buf;
pub mod fifo;
pub mod layout;
mod pod;
pub mod region;
pub mod reqresp;
mod spsc;

pub use buf::BufDesc;
pub use fifo::Fifo;
pub use pod::Pod;
pub use region::{CacheLine, Region, REGION_ALIGN};
pub use reqresp::{InFlight, Request, Response};
pub use spsc::{Armed, Consumer, Producer};

/// Largest slot, in 32-bit words (the layout tag keeps 8 bits for it).
pub const MAX_SLOT_WORDS: usize = 255;

/// Everything that can go wrong with a ring. A PD treats [`RingError::Corrupt`]
/// as "the neighbour is faulty" (report it, stop using the ring); the rest are
/// configuration errors found at attach time, or back-pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The peer's index is impossible: it claims a negative count or more
    /// than `capacity` entries relative to ours. The end is poisoned.
    Corrupt {
        /// Our own index (authoritative, kept privately).
        ours: u32,
        /// The index the peer wrote.
        theirs: u32,
    },
    /// The ring is full; nothing was written.
    Full,
    /// Capacity is not a power of two in `1..=2^31`.
    BadCapacity,
    /// The slot type is larger than [`MAX_SLOT_WORDS`].
    SlotTooLarge,
    /// The region cannot hold the ring.
    RegionTooSmall {
        /// Bytes the layout needs.
        needed: usize,
        /// Bytes the region has.
        got: usize,
    },
    /// The region's address is null or not aligned to [`REGION_ALIGN`], or a
    /// split point is not a multiple of it.
    Misaligned,
    /// The peer attached with a different layout version, capacity or slot
    /// size: the two PDs' configurations disagree.
    LayoutMismatch {
        /// Our layout tag ([`layout::tag`]).
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// A buffer descriptor does not lie inside the data region.
    BufferOutOfRange {
        /// The descriptor's offset.
        offset: u64,
        /// The descriptor's length.
        len: u32,
    },
    /// A response names an id that is not outstanding.
    UnknownId(u32),
}
