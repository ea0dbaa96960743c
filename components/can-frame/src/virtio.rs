//! virtio-can TX and RX messages (VIRTIO 1.4 §5.20), parsed with every field
//! validated against the negotiated features, and serialised back.
//!
//! ```
//! use bulkhead_can_frame::virtio::{self, Features};
//! use bulkhead_can_frame::{CanId, Frame};
//! let f = Frame::classic(CanId::extended(0x1234_5678).unwrap(), &[1, 2]).unwrap();
//! let mut buf = [0u8; virtio::MAX_MESSAGE_LEN];
//! let n = virtio::serialise(&f, virtio::MSG_TX, &mut buf).unwrap();
//! let classic = Features::from_bits(1 << virtio::F_CAN_CLASSIC);
//! assert_eq!(virtio::parse_tx(&buf[..n], classic), Ok(f));
//! buf[8] = 0x01; // an undefined flag bit
//! assert!(virtio::parse_tx(&buf[..n], classic).is_err());
//! ```
//!
//! Layout (all little-endian), the same for TX (`msg_type` 0x0001) and RX
//! (0x0101):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 2 | `msg_type` |
//! | 2 | 2 | `length`: payload bytes (remote frame: the requested DLC) |
//! | 4 | 1 | `reserved_classic_dlc`: 0, or 8..=15 on a classic 8-byte frame |
//! | 5 | 1 | padding (must be 0) |
//! | 6 | 2 | `reserved_xl_priority` (must be 0) |
//! | 8 | 4 | `flags`: EXTENDED 0x8000, FD 0x4000, RTR 0x2000 |
//! | 12 | 4 | `can_id` |
//! | 16 | `length` | `sdu` (absent for remote frames; bytes past it are ignored) |
//!
//! virtio-can has no BRS or ESI bit: a parsed FD frame has both clear; the
//! device sets BRS from its bus configuration and the controller sets ESI.
//!
//! We reject rather than ignore non-zero reserved fields: nothing a guest
//! sends reaches the bus unless every byte of it means what we think.

use crate::{fd_dlc_for_len, CanId, Frame, FrameError, FrameKind, MAX_CLASSIC_LEN, MAX_FD_LEN};
use core::fmt;

/// TX request message type.
pub const MSG_TX: u16 = 0x0001;
/// RX message type.
pub const MSG_RX: u16 = 0x0101;
/// Flag: 29-bit identifier.
pub const FLAG_EXTENDED: u32 = 0x8000;
/// Flag: CAN FD frame.
pub const FLAG_FD: u32 = 0x4000;
/// Flag: remote transmission request.
pub const FLAG_RTR: u32 = 0x2000;
/// Every defined flag bit.
pub const FLAGS_KNOWN: u32 = FLAG_EXTENDED | FLAG_FD | FLAG_RTR;
/// Feature bit: classic CAN frames.
pub const F_CAN_CLASSIC: u32 = 0;
/// Feature bit: CAN FD frames.
pub const F_CAN_FD: u32 = 1;
/// Feature bit: remote frames (requires classic).
pub const F_RTR_FRAMES: u32 = 2;
/// Feature bit: TX completes only once the frame is on the bus.
pub const F_LATE_TX_ACK: u32 = 3;
/// Header size before `sdu`.
pub const HEADER_LEN: usize = 16;
/// Largest message: header and a 64-byte FD payload.
pub const MAX_MESSAGE_LEN: usize = HEADER_LEN + MAX_FD_LEN;
/// Result byte: request done.
pub const RESULT_OK: u8 = 0;
/// Result byte: request refused or failed (anything else reads the same).
pub const RESULT_NOT_OK: u8 = 1;

/// The negotiated frame-type features that decide what a message may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Features {
    /// VIRTIO_CAN_F_CAN_CLASSIC.
    pub classic: bool,
    /// VIRTIO_CAN_F_CAN_FD.
    pub fd: bool,
    /// VIRTIO_CAN_F_RTR_FRAMES (only meaningful with classic).
    pub rtr: bool,
}

impl Features {
    /// From the negotiated feature bits (device-specific bits 0..=3).
    pub fn from_bits(bits: u64) -> Self {
        let has = |b: u32| bits & (1u64 << b) != 0;
        Self {
            classic: has(F_CAN_CLASSIC),
            fd: has(F_CAN_FD),
            rtr: has(F_RTR_FRAMES) && has(F_CAN_CLASSIC),
        }
    }
}

/// Why a message was refused (the device answers NOT_OK and sends nothing).
/// Each variant's doc is its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtioCanError {
    /// message shorter than the 16-byte header
    TooShort(usize),
    /// msg_type is not the one this queue carries
    WrongMsgType(u16),
    /// flag bits outside EXTENDED | FD | RTR
    UndefinedFlags(u32),
    /// an FD frame but VIRTIO_CAN_F_CAN_FD was not negotiated
    FdNotNegotiated,
    /// a classic frame but VIRTIO_CAN_F_CAN_CLASSIC was not negotiated
    ClassicNotNegotiated,
    /// a remote frame but VIRTIO_CAN_F_RTR_FRAMES was not negotiated
    RtrNotNegotiated,
    /// RTR and FD together (FD has no remote frames)
    RtrWithFd,
    /// can_id does not fit its format (11 or 29 bits)
    IdOutOfRange(u32),
    /// length above 8 (classic, remote) or 64 (FD)
    LengthTooLong(u16),
    /// an FD length that no DLC encodes
    NotAnFdLength(u16),
    /// fewer sdu bytes present than length says
    SduTooShort {
        /// what `length` claims
        length: u16,
        /// what the buffer holds after the header
        available: usize,
    },
    /// reserved_classic_dlc set where it has no meaning, or outside 8..=15
    BadClassicDlc(u8),
    /// padding or reserved_xl_priority not zero
    ReservedNotZero,
    /// the output buffer is too small for the message
    BufferTooSmall,
}

impl fmt::Display for VirtioCanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(n) => write!(
                f,
                "virtio-can message of {n} bytes is shorter than its header"
            ),
            Self::WrongMsgType(t) => write!(f, "unexpected virtio-can msg_type {t:#06x}"),
            Self::UndefinedFlags(fl) => write!(f, "undefined virtio-can flags {fl:#x}"),
            Self::FdNotNegotiated => f.write_str("CAN FD frame without VIRTIO_CAN_F_CAN_FD"),
            Self::ClassicNotNegotiated => {
                f.write_str("classic CAN frame without VIRTIO_CAN_F_CAN_CLASSIC")
            }
            Self::RtrNotNegotiated => f.write_str("remote frame without VIRTIO_CAN_F_RTR_FRAMES"),
            Self::RtrWithFd => f.write_str("remote frame flagged FD"),
            Self::IdOutOfRange(id) => write!(f, "CAN id {id:#x} out of range for its format"),
            Self::LengthTooLong(n) => write!(f, "length {n} too long for the frame type"),
            Self::NotAnFdLength(n) => write!(f, "length {n} is not a CAN FD length"),
            Self::SduTooShort { length, available } => {
                write!(f, "length {length} but only {available} sdu bytes")
            }
            Self::BadClassicDlc(d) => write!(f, "reserved_classic_dlc {d} invalid here"),
            Self::ReservedNotZero => f.write_str("reserved virtio-can fields not zero"),
            Self::BufferTooSmall => f.write_str("buffer too small for the virtio-can message"),
        }
    }
}

impl core::error::Error for VirtioCanError {}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses a TX request (driver → device).
pub fn parse_tx(buf: &[u8], features: Features) -> Result<Frame, VirtioCanError> {
    parse(buf, MSG_TX, features)
}

/// Parses an RX message (device → driver), as the guest driver must.
pub fn parse_rx(buf: &[u8], features: Features) -> Result<Frame, VirtioCanError> {
    parse(buf, MSG_RX, features)
}

/// Parses a message of type `msg_type`, checking every field before use.
pub fn parse(buf: &[u8], msg_type: u16, features: Features) -> Result<Frame, VirtioCanError> {
    if buf.len() < HEADER_LEN {
        return Err(VirtioCanError::TooShort(buf.len()));
    }
    let ty = le16(buf, 0);
    if ty != msg_type {
        return Err(VirtioCanError::WrongMsgType(ty));
    }
    let length = le16(buf, 2);
    let classic_dlc = buf[4];
    if buf[5] != 0 || le16(buf, 6) != 0 {
        return Err(VirtioCanError::ReservedNotZero);
    }
    let flags = le32(buf, 8);
    if flags & !FLAGS_KNOWN != 0 {
        return Err(VirtioCanError::UndefinedFlags(flags & !FLAGS_KNOWN));
    }
    let raw_id = le32(buf, 12);
    let (fd, rtr) = (flags & FLAG_FD != 0, flags & FLAG_RTR != 0);
    if rtr && fd {
        return Err(VirtioCanError::RtrWithFd);
    }
    if fd && !features.fd {
        return Err(VirtioCanError::FdNotNegotiated);
    }
    if !fd && !features.classic {
        return Err(VirtioCanError::ClassicNotNegotiated);
    }
    if rtr && !features.rtr {
        return Err(VirtioCanError::RtrNotNegotiated);
    }
    let id = if flags & FLAG_EXTENDED != 0 {
        CanId::extended(raw_id)
    } else {
        u16::try_from(raw_id)
            .map_err(|_| FrameError::StandardIdOutOfRange(raw_id))
            .and_then(CanId::standard)
    }
    .map_err(|_| VirtioCanError::IdOutOfRange(raw_id))?;
    let max = if fd { MAX_FD_LEN } else { MAX_CLASSIC_LEN };
    if usize::from(length) > max {
        return Err(VirtioCanError::LengthTooLong(length));
    }
    if fd && fd_dlc_for_len(usize::from(length)).is_none() {
        return Err(VirtioCanError::NotAnFdLength(length));
    }
    // Only a classic 8-byte data frame may carry a DLC of 9..=15 (8 also
    // allowed, meaning the default); everywhere else the field is reserved.
    let dlc_ok =
        classic_dlc == 0 || (!fd && !rtr && length == 8 && (8..=15).contains(&classic_dlc));
    if !dlc_ok {
        return Err(VirtioCanError::BadClassicDlc(classic_dlc));
    }
    // `length` ≤ 64 here, so it fits in u8.
    let len8 = u8::try_from(length).map_err(|_| VirtioCanError::LengthTooLong(length))?;
    if rtr {
        // A remote frame carries no data; `length` is the DLC it requests.
        return Frame::remote(id, len8).map_err(|_| VirtioCanError::LengthTooLong(length));
    }
    let sdu = &buf[HEADER_LEN..];
    let n = usize::from(length);
    if sdu.len() < n {
        return Err(VirtioCanError::SduTooShort {
            length,
            available: sdu.len(),
        });
    }
    let data = &sdu[..n];
    let frame = if fd {
        Frame::fd(id, data, false)
    } else if classic_dlc > 8 {
        Frame::classic_with_dlc(id, data, classic_dlc)
    } else {
        Frame::classic(id, data)
    };
    // Every condition the constructors check was checked above.
    frame.map_err(|_| VirtioCanError::LengthTooLong(length))
}

/// The flags word for a frame.
pub fn flags_of(frame: &Frame) -> u32 {
    let mut flags = 0;
    if frame.id().is_extended() {
        flags |= FLAG_EXTENDED;
    }
    if frame.is_fd() {
        flags |= FLAG_FD;
    }
    if frame.is_remote() {
        flags |= FLAG_RTR;
    }
    flags
}

/// Writes `frame` as a message of type `msg_type` into `out`; returns the
/// message length (header plus payload; a remote frame has no payload).
pub fn serialise(frame: &Frame, msg_type: u16, out: &mut [u8]) -> Result<usize, VirtioCanError> {
    let n = HEADER_LEN + frame.len();
    if out.len() < n {
        return Err(VirtioCanError::BufferTooSmall);
    }
    let (length, classic_dlc) = match frame.kind() {
        FrameKind::Classic { rtr: true, dlc } => (u16::from(dlc), 0),
        FrameKind::Classic { rtr: false, dlc } if dlc > 8 => (8, dlc),
        // len ≤ 64 always.
        _ => (u16::try_from(frame.len()).unwrap_or(64), 0),
    };
    out[0..2].copy_from_slice(&msg_type.to_le_bytes());
    out[2..4].copy_from_slice(&length.to_le_bytes());
    out[4] = classic_dlc;
    out[5] = 0;
    out[6..8].copy_from_slice(&0u16.to_le_bytes());
    out[8..12].copy_from_slice(&flags_of(frame).to_le_bytes());
    out[12..16].copy_from_slice(&frame.id().raw().to_le_bytes());
    out[HEADER_LEN..n].copy_from_slice(frame.data());
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: Features = Features {
        classic: true,
        fd: true,
        rtr: true,
    };

    fn msg(length: u16, flags: u32, id: u32, sdu: &[u8]) -> std::vec::Vec<u8> {
        let mut v = std::vec::Vec::new();
        v.extend_from_slice(&MSG_TX.to_le_bytes());
        v.extend_from_slice(&length.to_le_bytes());
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(&flags.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
        v.extend_from_slice(sdu);
        v
    }

    #[test]
    fn hostile_fields_are_refused() {
        use VirtioCanError::*;
        let classic = Features {
            classic: true,
            fd: false,
            rtr: false,
        };
        assert_eq!(parse_tx(&[0; 15], ALL), Err(TooShort(15)));
        assert_eq!(parse_rx(&msg(0, 0, 1, &[]), ALL), Err(WrongMsgType(MSG_TX)));
        assert_eq!(parse_tx(&msg(0, 0x1, 1, &[]), ALL), Err(UndefinedFlags(1)));
        assert_eq!(
            parse_tx(&msg(0, 0x8000_0000, 1, &[]), ALL),
            Err(UndefinedFlags(0x8000_0000))
        );
        assert_eq!(
            parse_tx(&msg(8, FLAG_FD, 1, &[0; 8]), classic),
            Err(FdNotNegotiated)
        );
        assert_eq!(
            parse_tx(&msg(0, FLAG_RTR, 1, &[]), classic),
            Err(RtrNotNegotiated)
        );
        let fd_only = Features {
            classic: false,
            fd: true,
            rtr: false,
        };
        assert_eq!(
            parse_tx(&msg(0, 0, 1, &[]), fd_only),
            Err(ClassicNotNegotiated)
        );
        // RTR needs classic even if the bit was offered.
        assert_eq!(
            Features::from_bits(0b110),
            Features {
                classic: false,
                fd: true,
                rtr: false
            }
        );
        assert_eq!(
            parse_tx(&msg(0, FLAG_RTR | FLAG_FD, 1, &[]), ALL),
            Err(RtrWithFd)
        );
        assert_eq!(
            parse_tx(&msg(0, 0, 0x800, &[]), ALL),
            Err(IdOutOfRange(0x800))
        );
        assert_eq!(
            parse_tx(&msg(0, FLAG_EXTENDED, 0x2000_0000, &[]), ALL),
            Err(IdOutOfRange(0x2000_0000))
        );
        assert_eq!(parse_tx(&msg(9, 0, 1, &[0; 9]), ALL), Err(LengthTooLong(9)));
        assert_eq!(
            parse_tx(&msg(65, FLAG_FD, 1, &[0; 65]), ALL),
            Err(LengthTooLong(65))
        );
        assert_eq!(
            parse_tx(&msg(0xffff, FLAG_FD, 1, &[]), ALL),
            Err(LengthTooLong(0xffff))
        );
        assert_eq!(
            parse_tx(&msg(9, FLAG_RTR, 1, &[]), ALL),
            Err(LengthTooLong(9))
        );
        assert_eq!(
            parse_tx(&msg(13, FLAG_FD, 1, &[0; 13]), ALL),
            Err(NotAnFdLength(13))
        );
        assert_eq!(
            parse_tx(&msg(8, 0, 1, &[0; 7]), ALL),
            Err(SduTooShort {
                length: 8,
                available: 7
            })
        );
        let mut m = msg(8, 0, 1, &[0; 8]);
        m[5] = 1;
        assert_eq!(parse_tx(&m, ALL), Err(ReservedNotZero));
        let mut m = msg(8, 0, 1, &[0; 8]);
        m[7] = 1;
        assert_eq!(parse_tx(&m, ALL), Err(ReservedNotZero));
        let mut m = msg(7, 0, 1, &[0; 7]);
        m[4] = 12;
        assert_eq!(parse_tx(&m, ALL), Err(BadClassicDlc(12)));
        let mut m = msg(8, FLAG_FD, 1, &[0; 8]);
        m[4] = 12;
        assert_eq!(parse_tx(&m, ALL), Err(BadClassicDlc(12)));
        let mut m = msg(8, 0, 1, &[0; 8]);
        m[4] = 16;
        assert_eq!(parse_tx(&m, ALL), Err(BadClassicDlc(16)));
    }

    #[test]
    fn valid_messages_parse_to_the_frame() {
        let f = parse_tx(&msg(3, FLAG_EXTENDED, 0x1fff_ffff, &[1, 2, 3, 99]), ALL).unwrap();
        assert_eq!(f.id(), CanId::extended(0x1fff_ffff).unwrap());
        assert_eq!(f.data(), &[1, 2, 3]);
        let r = parse_tx(&msg(4, FLAG_RTR, 0x7ff, &[]), ALL).unwrap();
        assert!(r.is_remote());
        assert_eq!(r.dlc(), 4);
        let fd = parse_tx(&msg(48, FLAG_FD, 5, &[7; 48]), ALL).unwrap();
        assert_eq!((fd.is_fd(), fd.len(), fd.dlc()), (true, 48, 14));
        let mut m = msg(8, 0, 1, &[0; 8]);
        m[4] = 13;
        assert_eq!(parse_tx(&m, ALL).unwrap().dlc(), 13);
    }

    proptest! {
        /// VIRTIO 1.4 §5.20: any bytes give a frame or a typed error, never a
        /// panic, and an accepted frame serialises to a message that parses
        /// back to the same frame.
        #[test]
        fn virtio_1_4_5_20_parse_never_panics_and_round_trips(
            bytes in prop::collection::vec(any::<u8>(), 0..100),
            feat in 0u64..16,
        ) {
            let features = Features::from_bits(feat);
            if let Ok(f) = parse_tx(&bytes, features) {
                let mut out = [0u8; MAX_MESSAGE_LEN];
                let n = serialise(&f, MSG_TX, &mut out).unwrap();
                prop_assert_eq!(parse_tx(&out[..n], features), Ok(f));
            }
        }

        /// Frames built from valid fields always survive the round trip.
        #[test]
        fn virtio_1_4_5_20_valid_frames_round_trip(
            ext in any::<bool>(), id in any::<u32>(), fdlen in 0usize..16, fd in any::<bool>(),
            data in prop::collection::vec(any::<u8>(), 64),
        ) {
            let id = if ext { CanId::extended(id & 0x1fff_ffff) } else { CanId::standard(u16::try_from(id & 0x7ff).unwrap()) }.unwrap();
            let f = if fd {
                Frame::fd(id, &data[..usize::from(crate::fd_len_for_dlc(u8::try_from(fdlen).unwrap()))], false).unwrap()
            } else {
                Frame::classic(id, &data[..fdlen % 9]).unwrap()
            };
            let mut out = [0u8; MAX_MESSAGE_LEN];
            let n = serialise(&f, MSG_RX, &mut out).unwrap();
            prop_assert_eq!(parse_rx(&out[..n], ALL), Ok(f));
            prop_assert!(serialise(&f, MSG_RX, &mut out[..n - 1]).is_err());
        }
    }
}
