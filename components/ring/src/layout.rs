//! Layout version 1 of one ring in a shared region: word offsets and the layout tag.
//!
//! See the crate README for the table. Everything is a 32-bit word in native
//! byte order; byte offset = 4 × word offset.

use crate::{RingError, MAX_SLOT_WORDS};

/// Version of the layout below; part of [`tag`], bump on any change.
pub const LAYOUT_VERSION: u32 = 1;

/// Word index of `tail`: the producer's free-running count of published
/// entries. Written only by the producer (block 0).
pub const TAIL: usize = 0;
/// Word index of the producer's layout tag (block 0).
pub const PRODUCER_TAG: usize = 1;
/// Word index of `head`: the consumer's free-running count of consumed
/// entries. Written only by the consumer (block 1).
pub const HEAD: usize = 32;
/// Word index of the consumer's layout tag (block 1).
pub const CONSUMER_TAG: usize = 33;
/// Word index of `need_signal`: non-zero when the consumer is about to sleep
/// and wants a notification. Set by the consumer, cleared by the producer
/// when it signals (block 2, alone, so that publishing an entry does not
/// bounce the consumer's `head` line).
pub const NEED_SIGNAL: usize = 64;
/// Words in the header (three 128-byte blocks); slots start here.
///
/// The blocks are 128 bytes apart, not 64, so that fields written by different
/// sides never share an aligned 128-byte pair of lines: x86 cores prefetch the
/// adjacent line of a pair and some Arm cores have 128-byte lines, and either
/// would make `tail` and `head` bounce together (as crossbeam's `CachePadded`
/// also assumes). Holds for any 64-byte-aligned region.
pub const HEADER_WORDS: usize = 96;
/// Bytes in the header.
pub const HEADER_BYTES: usize = HEADER_WORDS * 4;

/// The tag each side writes into its header line when it attaches, so that a
/// mismatch in capacity, slot size or layout version between the two PDs'
/// configurations is reported instead of silently misread:
/// `0xB4 << 24 | LAYOUT_VERSION << 16 | log2(capacity) << 8 | slot_words`.
#[must_use]
pub const fn tag(capacity: u32, slot_words: u32) -> u32 {
    0xB4 << 24 | LAYOUT_VERSION << 16 | capacity.trailing_zeros() << 8 | (slot_words & 0xff)
}

/// Bytes one ring of `capacity` slots of `slot_words` words occupies,
/// rounded up to a cache line (so rings can be packed back to back).
///
/// # Errors
/// [`RingError::BadCapacity`] unless `capacity` is a power of two in
/// `1..=2^31`; [`RingError::SlotTooLarge`] if `slot_words` exceeds
/// [`MAX_SLOT_WORDS`]; [`RingError::RegionTooSmall`] on arithmetic overflow.
pub fn ring_bytes(capacity: u32, slot_words: usize) -> Result<usize, RingError> {
    if !capacity.is_power_of_two() {
        return Err(RingError::BadCapacity);
    }
    if slot_words > MAX_SLOT_WORDS {
        return Err(RingError::SlotTooLarge);
    }
    let overflow = RingError::RegionTooSmall {
        needed: usize::MAX,
        got: 0,
    };
    let cap = usize::try_from(capacity).map_err(|_| overflow)?;
    let bytes = cap
        .checked_mul(slot_words)
        .and_then(|w| w.checked_mul(4))
        .and_then(|b| b.checked_add(HEADER_BYTES))
        .and_then(|b| b.checked_next_multiple_of(crate::REGION_ALIGN))
        .ok_or(overflow)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_words_sit_on_separate_lines() {
        // 128-byte blocks: fields of different writers are >= 128 bytes apart.
        assert_eq!(TAIL / 32, 0);
        assert_eq!(HEAD / 32, 1);
        assert_eq!(NEED_SIGNAL / 32, 2);
        assert_eq!(HEADER_BYTES, 384);
    }

    #[test]
    fn ring_bytes_rounds_and_rejects() {
        assert_eq!(ring_bytes(4, 4), Ok(384 + 64));
        assert_eq!(ring_bytes(1, 1), Ok(448));
        assert_eq!(ring_bytes(3, 1), Err(RingError::BadCapacity));
        assert_eq!(ring_bytes(0, 1), Err(RingError::BadCapacity));
        assert_eq!(
            ring_bytes(4, MAX_SLOT_WORDS + 1),
            Err(RingError::SlotTooLarge)
        );
        assert_eq!(tag(8, 4), 0xB401_0304);
    }
}
