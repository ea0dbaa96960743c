//! `seL4_MessageInfo`: the tag word of every IPC (x1 on aarch64).
//!
//! Layout (libsel4 `mode_include/64/sel4/shared_types.bf`, block
//! `seL4_MessageInfo`, fields listed most-significant first):
//! `label` bits 63..12 (52 bits), `capsUnwrapped` 11..9 (3), `extraCaps`
//! 8..7 (2), `length` 6..0 (7).
//!
//! ```
//! use bulkhead_sel4_abi::MessageInfo;
//! let m = MessageInfo::new(7, 0, 0, 3);
//! assert_eq!((m.label(), m.length()), (7, 3));
//! ```

/// Number of message registers in the IPC buffer (`seL4_MsgMaxLength`).
pub const MSG_MAX_LENGTH: usize = 120;
/// Number of extra caps a message can carry (`seL4_MsgMaxExtraCaps`).
pub const MSG_MAX_EXTRA_CAPS: usize = 3;

const LENGTH_BITS: u32 = 7;
const EXTRA_CAPS_BITS: u32 = 2;
const CAPS_UNWRAPPED_BITS: u32 = 3;
const LABEL_BITS: u32 = 52;
const EXTRA_CAPS_SHIFT: u32 = LENGTH_BITS;
const CAPS_UNWRAPPED_SHIFT: u32 = EXTRA_CAPS_SHIFT + EXTRA_CAPS_BITS;
const LABEL_SHIFT: u32 = CAPS_UNWRAPPED_SHIFT + CAPS_UNWRAPPED_BITS;

const fn mask(bits: u32) -> u64 {
    (1u64 << bits) - 1
}

/// One `seL4_MessageInfo_t` word.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct MessageInfo(u64);

impl MessageInfo {
    /// An empty message: label 0, no caps, no words (what libmicrokit sends
    /// for signals and the passive-PD handshake).
    pub const EMPTY: Self = Self(0);

    /// Packs the four fields. Like libsel4's generated
    /// `seL4_MessageInfo_new`, each field is masked to its width, so an
    /// out-of-range value cannot spill into a neighbouring field.
    #[must_use]
    pub const fn new(label: u64, caps_unwrapped: u64, extra_caps: u64, length: u64) -> Self {
        Self(
            ((label & mask(LABEL_BITS)) << LABEL_SHIFT)
                | ((caps_unwrapped & mask(CAPS_UNWRAPPED_BITS)) << CAPS_UNWRAPPED_SHIFT)
                | ((extra_caps & mask(EXTRA_CAPS_BITS)) << EXTRA_CAPS_SHIFT)
                | (length & mask(LENGTH_BITS)),
        )
    }

    /// A message with a label and `length` words and no caps, as
    /// `microkit_msginfo_new` makes.
    #[must_use]
    pub const fn with_label(label: u64, length: u64) -> Self {
        Self::new(label, 0, 0, length)
    }

    /// The raw word as it travels in x1.
    #[must_use]
    pub const fn to_word(self) -> u64 {
        self.0
    }

    /// Wraps a raw word received from the kernel. Every u64 is a valid tag.
    #[must_use]
    pub const fn from_word(word: u64) -> Self {
        Self(word)
    }

    /// The label (52 bits). On a reply to an invocation it is the
    /// `seL4_Error` code.
    #[must_use]
    pub const fn label(self) -> u64 {
        (self.0 >> LABEL_SHIFT) & mask(LABEL_BITS)
    }

    /// Number of caps the kernel unwrapped (3 bits).
    #[must_use]
    pub const fn caps_unwrapped(self) -> u64 {
        (self.0 >> CAPS_UNWRAPPED_SHIFT) & mask(CAPS_UNWRAPPED_BITS)
    }

    /// Number of extra caps (2 bits).
    #[must_use]
    pub const fn extra_caps(self) -> u64 {
        (self.0 >> EXTRA_CAPS_SHIFT) & mask(EXTRA_CAPS_BITS)
    }

    /// Number of message words (7 bits, up to 127 encodable).
    #[must_use]
    pub const fn length(self) -> u64 {
        self.0 & mask(LENGTH_BITS)
    }

    /// The length as an index bound that is safe to use on the IPC buffer's
    /// `msg` array: the kernel never sends more than
    /// [`MSG_MAX_LENGTH`] words, but the field can encode 127, so a peer's
    /// tag is clamped rather than trusted.
    #[must_use]
    pub fn length_clamped(self) -> usize {
        usize::try_from(self.length()).map_or(MSG_MAX_LENGTH, |len| len.min(MSG_MAX_LENGTH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_positions_match_the_bitfield_spec() {
        assert_eq!(MessageInfo::new(0, 0, 0, 1).to_word(), 1);
        assert_eq!(MessageInfo::new(0, 0, 1, 0).to_word(), 1 << 7);
        assert_eq!(MessageInfo::new(0, 1, 0, 0).to_word(), 1 << 9);
        assert_eq!(MessageInfo::new(1, 0, 0, 0).to_word(), 1 << 12);
        assert_eq!(
            MessageInfo::new(mask(52), 7, 3, 127).to_word(),
            u64::MAX,
            "the four fields cover the word exactly"
        );
    }

    #[test]
    fn round_trip_every_field() {
        for (label, cu, ec, len) in [
            (0, 0, 0, 0),
            (1, 2, 3, 4),
            (mask(52), 7, 3, 127),
            (0x1234_5678_9abc, 5, 1, 120),
        ] {
            let m = MessageInfo::new(label, cu, ec, len);
            assert_eq!(m.label(), label);
            assert_eq!(m.caps_unwrapped(), cu);
            assert_eq!(m.extra_caps(), ec);
            assert_eq!(m.length(), len);
            assert_eq!(MessageInfo::from_word(m.to_word()), m);
        }
    }

    #[test]
    fn out_of_range_fields_are_masked_not_spilled() {
        let m = MessageInfo::new(0, 0, 0, 128);
        assert_eq!(
            m.to_word(),
            0,
            "length 128 wraps to 0 instead of setting extraCaps"
        );
        let m = MessageInfo::new(1 << 52, 8, 4, 0);
        assert_eq!(m.to_word(), 0);
    }

    #[test]
    fn length_is_clamped_to_the_ipc_buffer() {
        assert_eq!(MessageInfo::from_word(127).length_clamped(), MSG_MAX_LENGTH);
        assert_eq!(MessageInfo::from_word(120).length_clamped(), 120);
        assert_eq!(MessageInfo::from_word(3).length_clamped(), 3);
    }
}
