//! Validated CAN / CAN FD frames, their exact on-the-wire bit sequence and the
//! virtio-can message format.
//!
//! ```
//! use bulkhead_can_frame::{CanId, Frame};
//! let id = CanId::standard(0x123).unwrap();
//! let f = Frame::classic(id, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
//! let bits = f.wire_bits(); // stuffed length, SOF through intermission
//! assert!((111..=135).contains(&bits));
//! assert!(Frame::classic(id, &[0; 9]).is_err());
//! ```
//!
//! Everything here is pure: no queues, no time source, no allocation. The
//! host board's CAN bus (`drv-host-can-bus`), the virtio-can device and the
//! CAN virtualiser all build on it.
#![no_std]
#![forbid(unsafe_code)]

// Tests run on the host and may use `vec!`, `format!`.
#[cfg(test)]
#[macro_use]
extern crate std;

pub mod bits;
pub mod virtio;

pub use bits::{BitTiming, FrameBits, Phase};

use core::fmt;

/// Largest 11-bit (base format) identifier.
pub const MAX_STANDARD_ID: u16 = 0x7ff;
/// Largest 29-bit (extended format) identifier.
pub const MAX_EXTENDED_ID: u32 = 0x1fff_ffff;
/// Largest classic CAN payload.
pub const MAX_CLASSIC_LEN: usize = 8;
/// Largest CAN FD payload.
pub const MAX_FD_LEN: usize = 64;

/// Payload length for each FD data length code (ISO 11898-1:2015 table 5).
const FD_LEN_FOR_DLC: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64];

/// Why a frame could not be built. Each variant's doc is its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// an 11-bit identifier above 0x7ff
    StandardIdOutOfRange(u32),
    /// a 29-bit identifier above 0x1fff_ffff
    ExtendedIdOutOfRange(u32),
    /// a classic frame with more than 8 data bytes
    ClassicTooLong(usize),
    /// an FD frame with more than 64 data bytes
    FdTooLong(usize),
    /// an FD payload length that no DLC encodes (not 0..8, 12, 16, 20, 24, 32, 48 or 64)
    NotAnFdLength(usize),
    /// a classic DLC above 15, or a DLC of 9..15 on a frame that does not carry 8 bytes
    BadClassicDlc(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StandardIdOutOfRange(id) => write!(f, "11-bit CAN id {id:#x} above 0x7ff"),
            Self::ExtendedIdOutOfRange(id) => write!(f, "29-bit CAN id {id:#x} above 0x1fffffff"),
            Self::ClassicTooLong(n) => write!(f, "classic CAN frame with {n} data bytes (max 8)"),
            Self::FdTooLong(n) => write!(f, "CAN FD frame with {n} data bytes (max 64)"),
            Self::NotAnFdLength(n) => write!(f, "{n} bytes is not a CAN FD payload length"),
            Self::BadClassicDlc(d) => write!(f, "classic DLC {d} does not match the payload"),
        }
    }
}

impl core::error::Error for FrameError {}

/// A CAN identifier in one of the two formats; the value is always in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CanId {
    /// Base format, 11 bits.
    Standard(StandardId),
    /// Extended format, 29 bits.
    Extended(ExtendedId),
}

/// An 11-bit identifier (≤ 0x7ff).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StandardId(u16);

/// A 29-bit identifier (≤ 0x1fff_ffff).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtendedId(u32);

impl StandardId {
    /// The raw 11-bit value.
    pub const fn raw(self) -> u16 {
        self.0
    }
}

impl ExtendedId {
    /// The raw 29-bit value.
    pub const fn raw(self) -> u32 {
        self.0
    }
}

impl CanId {
    /// An 11-bit identifier, or [`FrameError::StandardIdOutOfRange`].
    pub fn standard(id: u16) -> Result<Self, FrameError> {
        if id > MAX_STANDARD_ID {
            return Err(FrameError::StandardIdOutOfRange(u32::from(id)));
        }
        Ok(Self::Standard(StandardId(id)))
    }

    /// A 29-bit identifier, or [`FrameError::ExtendedIdOutOfRange`].
    pub fn extended(id: u32) -> Result<Self, FrameError> {
        if id > MAX_EXTENDED_ID {
            return Err(FrameError::ExtendedIdOutOfRange(id));
        }
        Ok(Self::Extended(ExtendedId(id)))
    }

    /// The identifier's numeric value (without any format flag).
    pub fn raw(self) -> u32 {
        match self {
            Self::Standard(s) => u32::from(s.0),
            Self::Extended(e) => e.0,
        }
    }

    /// Whether this is a 29-bit identifier.
    pub fn is_extended(self) -> bool {
        matches!(self, Self::Extended(_))
    }

    /// The 11 most significant identifier bits that go on the wire first
    /// (the whole id for base format, ID-A = id >> 18 for extended).
    pub fn base_bits(self) -> u16 {
        match self {
            Self::Standard(s) => s.0,
            // ID-A: e ≤ 0x1fff_ffff, so the shift leaves at most 11 bits.
            Self::Extended(e) => u16::try_from(e.0 >> 18).unwrap_or(MAX_STANDARD_ID),
        }
    }
}

/// Classic or FD, with the bits that exist only in that format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Classical CAN: a data frame or (with `rtr`) a remote frame.
    Classic {
        /// Remote transmission request: no data field; `dlc` is the requested length.
        rtr: bool,
        /// The 4-bit DLC sent on the wire (0..8, or 9..15 meaning 8 bytes).
        dlc: u8,
    },
    /// CAN FD (FDF recessive). No remote frames exist in this format.
    Fd {
        /// Bit rate switch: data phase at the data bit rate.
        brs: bool,
        /// Error state indicator: recessive when the transmitter is error-passive.
        esi: bool,
    },
}

/// A validated CAN frame. Fields are private so that every value is one the
/// wire can carry; build it with [`Frame::classic`], [`Frame::remote`],
/// [`Frame::classic_with_dlc`] or [`Frame::fd`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Frame {
    id: CanId,
    kind: FrameKind,
    len: u8,
    data: [u8; MAX_FD_LEN],
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("data", &self.data())
            .finish()
    }
}

/// The DLC that encodes an FD payload length, if any.
pub fn fd_dlc_for_len(len: usize) -> Option<u8> {
    (0u8..16).find(|&dlc| usize::from(FD_LEN_FOR_DLC[usize::from(dlc)]) == len)
}

/// The FD payload length a DLC (taken modulo 16) stands for.
pub fn fd_len_for_dlc(dlc: u8) -> u8 {
    FD_LEN_FOR_DLC[usize::from(dlc & 0xf)]
}

fn copy_payload(data: &[u8]) -> ([u8; MAX_FD_LEN], u8) {
    let mut buf = [0u8; MAX_FD_LEN];
    let n = data.len().min(MAX_FD_LEN);
    buf[..n].copy_from_slice(&data[..n]);
    // n ≤ 64 by the min above.
    (buf, u8::try_from(n).unwrap_or(64))
}

impl Frame {
    /// A classic data frame with 0..=8 bytes (DLC = length).
    pub fn classic(id: CanId, data: &[u8]) -> Result<Self, FrameError> {
        if data.len() > MAX_CLASSIC_LEN {
            return Err(FrameError::ClassicTooLong(data.len()));
        }
        let (buf, len) = copy_payload(data);
        Ok(Self {
            id,
            kind: FrameKind::Classic {
                rtr: false,
                dlc: len,
            },
            len,
            data: buf,
        })
    }

    /// A classic data frame with an explicit DLC: equal to the length, or
    /// 9..=15 with exactly 8 bytes (ISO 11898-1 allows both; they differ on
    /// the wire).
    pub fn classic_with_dlc(id: CanId, data: &[u8], dlc: u8) -> Result<Self, FrameError> {
        let mut f = Self::classic(id, data)?;
        let ok = usize::from(dlc) == data.len() || (data.len() == 8 && (9..=15).contains(&dlc));
        if !ok {
            return Err(FrameError::BadClassicDlc(dlc));
        }
        f.kind = FrameKind::Classic { rtr: false, dlc };
        Ok(f)
    }

    /// A classic remote frame requesting `dlc` (0..=8) bytes.
    pub fn remote(id: CanId, dlc: u8) -> Result<Self, FrameError> {
        if usize::from(dlc) > MAX_CLASSIC_LEN {
            return Err(FrameError::BadClassicDlc(dlc));
        }
        Ok(Self {
            id,
            kind: FrameKind::Classic { rtr: true, dlc },
            len: 0,
            data: [0; MAX_FD_LEN],
        })
    }

    /// An FD data frame; `data.len()` must be one of the FD lengths.
    pub fn fd(id: CanId, data: &[u8], brs: bool) -> Result<Self, FrameError> {
        if data.len() > MAX_FD_LEN {
            return Err(FrameError::FdTooLong(data.len()));
        }
        if fd_dlc_for_len(data.len()).is_none() {
            return Err(FrameError::NotAnFdLength(data.len()));
        }
        let (buf, len) = copy_payload(data);
        Ok(Self {
            id,
            kind: FrameKind::Fd { brs, esi: false },
            len,
            data: buf,
        })
    }

    /// The same frame with the ESI bit set as given (FD only; the transmitter
    /// sets it from its own error state). Classic frames are returned as is.
    pub fn with_esi(mut self, esi: bool) -> Self {
        if let FrameKind::Fd { brs, .. } = self.kind {
            self.kind = FrameKind::Fd { brs, esi };
        }
        self
    }

    /// The same frame with payload byte `index` set to `value` (no change if
    /// `index` is past the payload): the length, and so validity, is kept.
    pub fn with_byte(mut self, index: usize, value: u8) -> Self {
        if index < self.len() {
            self.data[index] = value;
        }
        self
    }

    /// The identifier.
    pub fn id(&self) -> CanId {
        self.id
    }

    /// Classic or FD, with format-specific bits.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The payload (empty for remote frames).
    pub fn data(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The 4-bit DLC sent on the wire.
    pub fn dlc(&self) -> u8 {
        match self.kind {
            FrameKind::Classic { dlc, .. } => dlc,
            // Constructors only admit FD lengths, so the lookup succeeds.
            FrameKind::Fd { .. } => fd_dlc_for_len(self.len()).unwrap_or(0xf),
        }
    }

    /// Whether this is an FD frame.
    pub fn is_fd(&self) -> bool {
        matches!(self.kind, FrameKind::Fd { .. })
    }

    /// Whether this is a (classic) remote frame.
    pub fn is_remote(&self) -> bool {
        matches!(self.kind, FrameKind::Classic { rtr: true, .. })
    }

    /// Whether the data phase runs at the data bit rate (FD with BRS).
    pub fn brs(&self) -> bool {
        matches!(self.kind, FrameKind::Fd { brs: true, .. })
    }

    /// The ESI bit (FD only; false for classic frames).
    pub fn esi(&self) -> bool {
        matches!(self.kind, FrameKind::Fd { esi: true, .. })
    }

    /// The arbitration priority: a lower key wins arbitration against a
    /// higher one, equal keys reach the end of the arbitration field together.
    ///
    /// The key is the sequence of arbitration bits, most significant first:
    /// ID-A (11), then RTR or SRR, then IDE, then ID-B (18) and the extended
    /// RTR/RRS. A base frame puts RTR (data: dominant 0) where an extended
    /// frame puts SRR (recessive 1), and IDE dominant where the extended frame
    /// has it recessive, so a base frame beats an extended one with the same
    /// ID-A whatever its RTR bit; a data frame beats a remote frame with the
    /// same id. FD frames send RRS (dominant) in place of RTR.
    pub fn arbitration_key(&self) -> u32 {
        let a = u32::from(self.id.base_bits());
        let rtr = u32::from(self.is_remote());
        // 11 + 1 + 1 + 18 + 1 = 32 bits: ID-A at 31..=21, RTR/SRR at 20,
        // IDE at 19, ID-B at 18..=1, extended RTR/RRS at 0.
        match self.id {
            CanId::Standard(_) => (a << 21) | (rtr << 20),
            CanId::Extended(e) => (a << 21) | (1 << 20) | (1 << 19) | ((e.0 & 0x3_ffff) << 1) | rtr,
        }
    }

    /// The exact number of bits this frame occupies on the wire: SOF through
    /// the 3-bit intermission, including every stuff bit, with a dominant ACK.
    pub fn wire_bits(&self) -> u16 {
        FrameBits::new(self).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_range_checked() {
        assert!(CanId::standard(0x7ff).is_ok());
        assert_eq!(
            CanId::standard(0x800),
            Err(FrameError::StandardIdOutOfRange(0x800))
        );
        assert!(CanId::extended(0x1fff_ffff).is_ok());
        assert_eq!(
            CanId::extended(0x2000_0000),
            Err(FrameError::ExtendedIdOutOfRange(0x2000_0000))
        );
    }

    #[test]
    fn lengths_and_dlcs_are_checked() {
        let id = CanId::standard(1).unwrap();
        assert_eq!(
            Frame::classic(id, &[0; 9]),
            Err(FrameError::ClassicTooLong(9))
        );
        assert_eq!(
            Frame::fd(id, &[0; 9], false),
            Err(FrameError::NotAnFdLength(9))
        );
        assert_eq!(
            Frame::fd(id, &[0; 65], false),
            Err(FrameError::FdTooLong(65))
        );
        assert_eq!(Frame::fd(id, &[0; 48], false).unwrap().dlc(), 14);
        assert_eq!(Frame::classic_with_dlc(id, &[0; 8], 15).unwrap().dlc(), 15);
        assert_eq!(
            Frame::classic_with_dlc(id, &[0; 7], 9),
            Err(FrameError::BadClassicDlc(9))
        );
        assert_eq!(Frame::remote(id, 9), Err(FrameError::BadClassicDlc(9)));
        for dlc in 0..16u8 {
            assert_eq!(fd_dlc_for_len(usize::from(fd_len_for_dlc(dlc))), Some(dlc));
        }
    }

    #[test]
    fn arbitration_order_follows_the_wire_bits() {
        let s = |id| CanId::standard(id).unwrap();
        let e = |id| CanId::extended(id).unwrap();
        let key = |f: Frame| f.arbitration_key();
        // Lower id wins.
        assert!(
            key(Frame::classic(s(0x100), &[]).unwrap())
                < key(Frame::classic(s(0x101), &[]).unwrap())
        );
        // Base beats extended with the same ID-A, even a base remote frame.
        let ext = Frame::classic(e(0x100 << 18), &[]).unwrap();
        assert!(key(Frame::classic(s(0x100), &[]).unwrap()) < key(ext));
        assert!(key(Frame::remote(s(0x100), 0).unwrap()) < key(ext));
        // But an extended frame with a lower ID-A beats the base frame.
        assert!(
            key(Frame::classic(e(0x0ff << 18 | 0x3_ffff), &[]).unwrap())
                < key(Frame::classic(s(0x100), &[]).unwrap())
        );
        // ID-B's top bit has its own place in the key: it must not collide
        // with IDE (a property test found 0x1f07408 vs 0x1f20000 misordered).
        assert!(
            key(Frame::classic(e(0x1f0_7408), &[]).unwrap())
                < key(Frame::classic(e(0x1f2_0000), &[]).unwrap())
        );
        assert!(
            key(Frame::classic(e(0x3_ffff), &[]).unwrap())
                < key(Frame::classic(s(1), &[]).unwrap())
        );
        // Data beats remote with the same id.
        assert!(key(Frame::classic(s(5), &[]).unwrap()) < key(Frame::remote(s(5), 0).unwrap()));
        assert!(key(Frame::classic(e(5), &[]).unwrap()) < key(Frame::remote(e(5), 0).unwrap()));
    }
}
