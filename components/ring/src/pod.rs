//! [`Pod`]: how a slot's value is laid out as 32-bit words in shared memory.
//!
//! A slot is written and copied out one 32-bit word at a time (atomically, see
//! [`crate::region`]), so a type's wire layout is its word list — explicit,
//! fixed and endian-stated — rather than whatever `repr` the compiler picks.
//! Decoding must accept every bit pattern: a hostile peer controls the words,
//! and a value's *meaning* is validated only after it has been copied out.
//!
//! ```
//! use bulkhead_ring::Pod;
//! #[derive(Clone, Copy, Debug, PartialEq)]
//! struct Frame { can_id: u32, dlc: u32, data: u64 }
//! impl Pod for Frame {
//!     const WORDS: usize = 4;
//!     fn store(&self, put: &mut impl FnMut(usize, u32)) {
//!         put(0, self.can_id);
//!         put(1, self.dlc);
//!         self.data.store(&mut |i, w| put(2 + i, w));
//!     }
//!     fn load(get: &mut impl FnMut(usize) -> u32) -> Self {
//!         Frame { can_id: get(0), dlc: get(1), data: u64::load(&mut |i| get(2 + i)) }
//!     }
//! }
//! ```

/// A plain-old-data slot value with a fixed layout of [`Pod::WORDS`] 32-bit
/// words (each in the CPU's native byte order; both PDs of a ring run on the
/// same CPU).
///
/// Implementations must only use word indices `0..WORDS`; the ring ignores
/// stores outside that range and returns 0 for loads outside it, so a wrong
/// implementation gives wrong values, never an out-of-range access.
pub trait Pod: Copy {
    /// Number of 32-bit words in one slot. At most [`crate::MAX_SLOT_WORDS`].
    const WORDS: usize;

    /// Writes the value: `put(i, word)` for each word index `i < WORDS`.
    fn store(&self, put: &mut impl FnMut(usize, u32));

    /// Builds a value from words: `get(i)` returns word `i`. Each word should
    /// be read once; every bit pattern must give a value (no panics).
    fn load(get: &mut impl FnMut(usize) -> u32) -> Self;
}

impl Pod for () {
    const WORDS: usize = 0;
    fn store(&self, _put: &mut impl FnMut(usize, u32)) {}
    fn load(_get: &mut impl FnMut(usize) -> u32) -> Self {}
}

impl Pod for u32 {
    const WORDS: usize = 1;
    fn store(&self, put: &mut impl FnMut(usize, u32)) {
        put(0, *self);
    }
    fn load(get: &mut impl FnMut(usize) -> u32) -> Self {
        get(0)
    }
}

/// Low word first.
impl Pod for u64 {
    const WORDS: usize = 2;
    fn store(&self, put: &mut impl FnMut(usize, u32)) {
        // Truncation is the point: the low half, then the high half.
        #[allow(clippy::cast_possible_truncation)]
        {
            put(0, *self as u32);
            put(1, (*self >> 32) as u32);
        }
    }
    fn load(get: &mut impl FnMut(usize) -> u32) -> Self {
        let lo = u64::from(get(0));
        let hi = u64::from(get(1));
        lo | (hi << 32)
    }
}

impl<const N: usize> Pod for [u32; N] {
    const WORDS: usize = N;
    fn store(&self, put: &mut impl FnMut(usize, u32)) {
        for (i, w) in self.iter().enumerate() {
            put(i, *w);
        }
    }
    fn load(get: &mut impl FnMut(usize) -> u32) -> Self {
        core::array::from_fn(get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: Pod + PartialEq + core::fmt::Debug>(v: T) {
        let mut words = [0u32; 16];
        v.store(&mut |i, w| words[i] = w);
        let back = T::load(&mut |i| words[i]);
        assert_eq!(back, v);
    }

    #[test]
    fn u64_is_low_word_first() {
        let mut words = [0u32; 2];
        0x1122_3344_5566_7788_u64.store(&mut |i, w| words[i] = w);
        assert_eq!(words, [0x5566_7788, 0x1122_3344]);
        roundtrip(u64::MAX - 5);
        roundtrip([1u32, 2, 3]);
        roundtrip(7u32);
    }
}
