//! The wire format between the VMM (one per guest), the CAN virtualiser and
//! the CAN driver PD, carried in `bulkhead-ring` slots.
//!
//! A frame crosses a ring as a [`WireFrame`] (21 words). Loading one never
//! fails (a ring slot is just words), but turning it back into a
//! [`Frame`] validates every field ([`WireFrame::to_frame`]): the peer may
//! be hostile, and a frame that does not decode is refused, never guessed.
//!
//! Rings and what they carry (`Request`/`Response` of `bulkhead-ring`):
//!
//! | ring | slot | ops |
//! |---|---|---|
//! | VMM → virtualiser | `Request<WireFrame>` | [`vmm_op`]: TX (id = tag), START, STOP |
//! | virtualiser → VMM | `Response<WireFrame>` | [`vmm_status`]: tag's outcome, or an RX frame / BUSOFF change (id = [`EVENT_ID`]) |
//! | virtualiser → driver | `Request<WireFrame>` | [`drv_op`]: SUBMIT (id = slot, frame's key is its priority), ABORT, RECOVER |
//! | driver → virtualiser | `Response<WireFrame>` | [`drv_status`]: slot SENT / ABORTED / FAILED, RX frame, STATUS (tec, rec, state in the frame words) |
//!
//! Every ring of both hops has [`RING_CAPACITY`] slots and lives in its own
//! 4 KiB queue region: `req` at the hop's vaddr, `resp` at +0x1000
//! (`tools/compose` allocates them; the PDs find the vaddrs in their
//! configuration). The rules each side follows are in [`driver_hop`] and
//! [`vmm_hop`]; a driver for a new controller needs only [`driver_hop`].
#![no_std]
#![forbid(unsafe_code)]

pub mod controller;

use bulkhead_can_frame::{fd_dlc_for_len, CanId, Frame, FrameError, FrameKind, MAX_FD_LEN};
use bulkhead_ring::Pod;

/// Words of a [`WireFrame`].
pub const FRAME_WORDS: usize = 5 + MAX_FD_LEN / 4;
/// Response id of unsolicited events (RX frames, status changes).
pub const EVENT_ID: u32 = u32::MAX;

/// Operations from a VMM to the virtualiser.
pub mod vmm_op {
    /// Transmit the frame; the request id is the VMM's tag.
    pub const TX: u32 = 1;
    /// The guest started its controller.
    pub const START: u32 = 2;
    /// The guest stopped its controller.
    pub const STOP: u32 = 3;
}

/// Statuses from the virtualiser to a VMM.
pub mod vmm_status {
    /// The tagged frame is on the bus.
    pub const SENT: u32 = 0;
    /// The tagged frame was refused or dropped (NOT_OK).
    pub const NOT_SENT: u32 = 1;
    /// START accepted.
    pub const STARTED: u32 = 2;
    /// START refused (held bus-off).
    pub const START_REFUSED: u32 = 3;
    /// Event: a received frame (id [`super::EVENT_ID`]).
    pub const RX: u32 = 0x100;
    /// Event: the guest's BUSOFF bit is now set.
    pub const BUS_OFF: u32 = 0x101;
    /// Event: the guest's BUSOFF bit is now clear.
    pub const BUS_OK: u32 = 0x102;
}

/// Operations from the virtualiser to the driver PD.
pub mod drv_op {
    /// Put the frame in TX buffer `id`.
    pub const SUBMIT: u32 = 1;
    /// Abort TX buffer `id` if unsent.
    pub const ABORT: u32 = 2;
    /// Start bus-off recovery.
    pub const RECOVER: u32 = 3;
}

/// Statuses from the driver PD to the virtualiser.
pub mod drv_status {
    /// Buffer `id` is on the bus (timestamp in the frame).
    pub const SENT: u32 = 0;
    /// Buffer `id` was aborted unsent.
    pub const ABORTED: u32 = 1;
    /// Buffer `id` could not be sent (refused by the controller).
    pub const FAILED: u32 = 2;
    /// Event: a received frame.
    pub const RX: u32 = 0x100;
    /// Event: controller status; `timestamp` carries `state << 32 | tec << 16 | rec`.
    pub const STATUS: u32 = 0x101;
    /// Event: the driver (re)started; `timestamp` carries its TX buffer
    /// count and FD support ([`super::driver_hop::encode_ready`]).
    pub const READY: u32 = 0x102;
}

/// Slots of every ring of the CAN hops (VMM ↔ virtualiser and virtualiser
/// ↔ driver, both directions): 32 slots of `Request<WireFrame>` (23 words)
/// plus the 384-byte ring header take 3 328 bytes of a 4 KiB queue region.
pub const RING_CAPACITY: u32 = 32;

/// Bytes of one queue region (`req` or `resp`) of a CAN hop.
pub const QUEUE_REGION_BYTES: usize = 0x1000;

/// Offset of the `resp` queue region from the hop's vaddr (`req` is at 0).
pub const RESP_OFFSET: usize = 0x1000;

/// Most TX buffers a driver may announce in [`drv_status::READY`].
pub const MAX_DRIVER_SLOTS: u32 = 8;

pub mod driver_hop {
    //! The driver hop: the rules between the CAN virtualiser (`can_virt`,
    //! channel 0 towards the driver) and a CAN driver PD (`can_driver`,
    //! channel 0 towards the virtualiser). Stable, version 1: a driver
    //! written against this page works with `components/virt-can-pd`.
    //!
    //! Rings (each [`super::RING_CAPACITY`] slots): `req` carries
    //! `Request<WireFrame>` virtualiser → driver, `resp` carries
    //! `Response<WireFrame>` driver → virtualiser. Notification: after
    //! pushing a batch, a side signals its channel 0 iff `notify_needed()`;
    //! a consumer pops until empty, then `arm_signal()` and re-checks
    //! (`components/ring` README). The driver signals after every batch of
    //! responses, including ones produced by its IRQ handler.
    //!
    //! 1. **Start.** On init (and re-init after a restart) the driver
    //!    attaches both rings, aborts whatever its controller still holds,
    //!    and pushes one [`super::drv_status::READY`] event (id
    //!    [`super::EVENT_ID`]) announcing its TX buffer count `S`
    //!    (`1..=`[`super::MAX_DRIVER_SLOTS`]) and whether it carries FD
    //!    ([`encode_ready`]). The virtualiser submits nothing before READY;
    //!    a second READY means the driver restarted: every outstanding slot
    //!    is void (no response will come for it).
    //! 2. **SUBMIT** (`op` [`super::drv_op::SUBMIT`], `id` = slot `< S`,
    //!    payload = the frame): the driver validates the frame
    //!    ([`super::WireFrame::to_frame`]) and puts it in TX buffer `slot`.
    //!    Among its loaded buffers the controller must offer the frame with
    //!    the lowest [`bulkhead_can_frame::Frame::arbitration_key`] first
    //!    (FIFO among equal keys) — e.g. CTU CAN FD: TX buffer priorities
    //!    re-ordered by key; FlexCAN: lowest-id-first arbitration. Exactly one
    //!    response with `id` = slot follows: [`super::drv_status::SENT`]
    //!    (on the bus and acknowledged; `timestamp` = when it finished, ns in
    //!    the driver's clock), [`super::drv_status::FAILED`] (refused: frame
    //!    does not decode, FD on a classic controller, slot out of range or
    //!    busy), or [`super::drv_status::ABORTED`] (after an ABORT, below).
    //!    The response echoes the frame it completes.
    //! 3. **ABORT** (`id` = slot): if that buffer's frame has not started on
    //!    the bus, the driver removes it and answers ABORTED; if it is being
    //!    sent (or already finished), nothing extra: its SENT or FAILED
    //!    comes as usual. ABORT of an empty slot is ignored. While bus-off
    //!    every loaded buffer is abortable.
    //! 4. **RECOVER**: start bus-off recovery (ISO 11898-1: the controller
    //!    rejoins after 128 × 11 recessive bits). No direct response; the
    //!    state change arrives as STATUS. Ignored when not bus-off.
    //! 5. **Events** (id [`super::EVENT_ID`]): [`super::drv_status::RX`]
    //!    for each received frame (`timestamp` = reception time, ns), in bus
    //!    order; [`super::drv_status::STATUS`] whenever the fault-confinement
    //!    state, TEC or REC changed ([`encode_status`]) — the virtualiser
    //!    charges every TEC rise to the guest whose frame the controller was
    //!    offering, so rises must not be coalesced away: report at least
    //!    once per bus event that changed a counter.
    //! 6. **Room.** The driver never drops a slot response: it keeps `S + 1`
    //!    entries of its `resp` ring for them and drops (and counts) RX
    //!    frames that would eat into that reserve; a STATUS that does not
    //!    fit is kept and sent, latest value, when room appears.
    //! 7. **Hostile peer.** Either side treats a ring that reports
    //!    corruption as dead (logged once, no further reads). The driver
    //!    ignores unknown ops; the virtualiser ignores responses for slots it
    //!    has no frame in, and statuses it cannot decode.
    //!
    //! Timestamps are nanoseconds of the driver's monotonic clock; the
    //! virtualiser uses them only for the frames' own records, never for
    //! its budgets (it has its own clock).

    use crate::controller::{BusState, ControllerStatus};

    /// Encodes a READY event's `timestamp`: `slots` in bits 0..8, FD in bit 8.
    pub const fn encode_ready(slots: u32, fd: bool) -> u64 {
        (slots as u64 & 0xff) | if fd { 1 << 8 } else { 0 }
    }

    /// Encodes a STATUS event's `timestamp`: `state << 32 | tec << 16 |
    /// rec`, state 0 error-active, 1 error-passive, 2 bus-off.
    pub const fn encode_status(s: ControllerStatus) -> u64 {
        let state = match s.state {
            BusState::Active => 0u64,
            BusState::Passive => 1,
            BusState::BusOff => 2,
        };
        state << 32 | (s.tec as u64) << 16 | s.rec as u64
    }

    /// Decodes a STATUS event's `timestamp`, or `None` for an unknown state
    /// or bits above it.
    pub const fn decode_status(t: u64) -> Option<ControllerStatus> {
        let state = match t >> 32 {
            0 => BusState::Active,
            1 => BusState::Passive,
            2 => BusState::BusOff,
            _ => return None,
        };
        Some(ControllerStatus {
            state,
            tec: ((t >> 16) & 0xffff) as u16,
            rec: (t & 0xffff) as u16,
        })
    }

    /// Decodes a READY event's `timestamp`: `(slots, fd)`, or `None` if the
    /// slot count is 0, above [`super::MAX_DRIVER_SLOTS`], or unknown bits
    /// are set.
    pub const fn decode_ready(t: u64) -> Option<(u32, bool)> {
        let slots = (t & 0xff) as u32;
        if t >> 9 != 0 || slots == 0 || slots > super::MAX_DRIVER_SLOTS {
            return None;
        }
        Some((slots, t & (1 << 8) != 0))
    }
}

pub mod vmm_hop {
    //! The VMM hop: the rules between a VMM (`<guest>_vmm`, channel 4
    //! towards `can_virt`) and the CAN virtualiser (channel `i + 1` towards
    //! guest `i`). `req` carries `Request<WireFrame>` VMM → virtualiser,
    //! `resp` carries `Response<WireFrame>` back; notification as on the
    //! driver hop.
    //!
    //! 1. **TX** (`id` = the VMM's tag, any value but [`super::EVENT_ID`]):
    //!    one response with that id, [`super::vmm_status::SENT`] (on the
    //!    bus) or [`super::vmm_status::NOT_SENT`] (refused: the frame does
    //!    not decode, the guest is stopped or held bus-off, its whitelist or
    //!    budget refuses it, the controller cannot carry it; or dropped by
    //!    a bus-off). A TX the virtualiser cannot queue yet (the guest's
    //!    queue is full) waits in the ring: the VMM keeps at most
    //!    [`super::RING_CAPACITY`] TX outstanding.
    //! 2. **START** / **STOP** (`id` chosen by the VMM): START is answered
    //!    [`super::vmm_status::STARTED`] or
    //!    [`super::vmm_status::START_REFUSED`] (held bus-off); STOP has no
    //!    answer, and the TX before it may or may not be answered (the
    //!    device has answered them NOT_OK itself; the VMM ignores tags it
    //!    no longer holds).
    //! 3. **Events** (id [`super::EVENT_ID`]): RX frames the guest's
    //!    filters accept, in bus order, the same order for every guest;
    //!    BUS_OFF / BUS_OK when the guest is stopped for a bus-off it caused
    //!    or released.
    //! 4. A VMM that corrupts its ring is cut off (logged once); the other
    //!    guests are not affected.
}

/// Why a [`WireFrame`] does not decode. Each variant's doc is its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// flag bits outside the defined ones
    UndefinedFlags(u32),
    /// the id or length does not make a valid frame
    BadFrame(FrameError),
    /// a length above 64
    LengthTooLong(u32),
    /// RTR together with FD, or BRS/ESI on a classic frame
    BadCombination,
    /// data bytes beyond the length are not zero
    TrailingData,
}

impl core::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::UndefinedFlags(x) => write!(f, "undefined CAN wire flags {x:#x}"),
            Self::BadFrame(e) => write!(f, "invalid CAN frame: {e}"),
            Self::LengthTooLong(n) => write!(f, "CAN wire length {n} above 64"),
            Self::BadCombination => f.write_str("contradictory CAN wire flags"),
            Self::TrailingData => f.write_str("CAN wire data beyond length not zero"),
        }
    }
}

/// Wire flag: 29-bit id.
pub const W_EXTENDED: u32 = 1 << 0;
/// Wire flag: FD frame.
pub const W_FD: u32 = 1 << 1;
/// Wire flag: remote frame.
pub const W_RTR: u32 = 1 << 2;
/// Wire flag: FD bit-rate switch.
pub const W_BRS: u32 = 1 << 3;
/// Wire flag: FD error-state indicator.
pub const W_ESI: u32 = 1 << 4;
const W_KNOWN: u32 = W_EXTENDED | W_FD | W_RTR | W_BRS | W_ESI;

/// A frame as ring words: `flags, id, len | dlc << 8, timestamp (2 words),
/// data (16 words, little-endian bytes, zero beyond len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WireFrame {
    /// `W_*` flags.
    pub flags: u32,
    /// Raw identifier.
    pub id: u32,
    /// Payload length (bits 0..8) and classic DLC (bits 8..12).
    pub len_dlc: u32,
    /// Timestamp or status word (ns), meaning per op.
    pub timestamp: u64,
    /// Payload words.
    pub data: [u32; MAX_FD_LEN / 4],
}

impl WireFrame {
    /// Encodes `frame` with `timestamp`.
    pub fn from_frame(frame: &Frame, timestamp: u64) -> Self {
        let mut flags = 0;
        if frame.id().is_extended() {
            flags |= W_EXTENDED;
        }
        match frame.kind() {
            FrameKind::Classic { rtr, .. } => {
                if rtr {
                    flags |= W_RTR;
                }
            }
            FrameKind::Fd { brs, esi } => {
                flags |= W_FD;
                if brs {
                    flags |= W_BRS;
                }
                if esi {
                    flags |= W_ESI;
                }
            }
        }
        let mut bytes = [0u8; MAX_FD_LEN];
        bytes[..frame.len()].copy_from_slice(frame.data());
        let data = core::array::from_fn(|i| {
            u32::from_le_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ])
        });
        let len = u32::try_from(frame.len()).unwrap_or(0);
        Self {
            flags,
            id: frame.id().raw(),
            len_dlc: len | u32::from(frame.dlc()) << 8,
            timestamp,
            data,
        }
    }

    /// Decodes and validates the frame.
    ///
    /// # Errors
    /// [`ProtocolError`] for anything that is not exactly one valid frame.
    pub fn to_frame(&self) -> Result<Frame, ProtocolError> {
        if self.flags & !W_KNOWN != 0 {
            return Err(ProtocolError::UndefinedFlags(self.flags & !W_KNOWN));
        }
        let (fd, rtr) = (self.flags & W_FD != 0, self.flags & W_RTR != 0);
        let (brs, esi) = (self.flags & W_BRS != 0, self.flags & W_ESI != 0);
        if (fd && rtr) || (!fd && (brs || esi)) || self.len_dlc >> 12 != 0 {
            return Err(ProtocolError::BadCombination);
        }
        let len = self.len_dlc & 0xff;
        let dlc = u8::try_from((self.len_dlc >> 8) & 0xf).unwrap_or(0);
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        if n > MAX_FD_LEN {
            return Err(ProtocolError::LengthTooLong(len));
        }
        let mut bytes = [0u8; MAX_FD_LEN];
        for (i, w) in self.data.iter().enumerate() {
            bytes[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        if bytes[n..].iter().any(|&b| b != 0) || (rtr && n != 0) {
            return Err(ProtocolError::TrailingData);
        }
        let id = if self.flags & W_EXTENDED != 0 {
            CanId::extended(self.id)
        } else {
            u16::try_from(self.id)
                .map_err(|_| FrameError::StandardIdOutOfRange(self.id))
                .and_then(CanId::standard)
        }
        .map_err(ProtocolError::BadFrame)?;
        let frame = if rtr {
            Frame::remote(id, dlc)
        } else if fd {
            if fd_dlc_for_len(n) != Some(dlc) {
                return Err(ProtocolError::BadCombination);
            }
            Frame::fd(id, &bytes[..n], brs).map(|f| f.with_esi(esi))
        } else {
            Frame::classic_with_dlc(id, &bytes[..n], dlc)
        };
        frame.map_err(ProtocolError::BadFrame)
    }
}

impl Pod for WireFrame {
    const WORDS: usize = FRAME_WORDS;

    fn store(&self, put: &mut impl FnMut(usize, u32)) {
        put(0, self.flags);
        put(1, self.id);
        put(2, self.len_dlc);
        self.timestamp.store(&mut |i, w| put(3 + i, w));
        for (i, w) in self.data.iter().enumerate() {
            put(5 + i, *w);
        }
    }

    fn load(get: &mut impl FnMut(usize) -> u32) -> Self {
        Self {
            flags: get(0),
            id: get(1),
            len_dlc: get(2),
            timestamp: u64::load(&mut |i| get(3 + i)),
            data: core::array::from_fn(|i| get(5 + i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(w: &WireFrame) -> [u32; WireFrame::WORDS] {
        let mut out = [0u32; WireFrame::WORDS];
        w.store(&mut |i, x| out[i] = x);
        out
    }

    #[test]
    fn frames_round_trip_through_ring_words() {
        let s = CanId::standard(0x123).unwrap();
        let e = CanId::extended(0x1abc_def0).unwrap();
        let frames = [
            Frame::classic(s, &[1, 2, 3]).unwrap(),
            Frame::classic_with_dlc(s, &[9; 8], 15).unwrap(),
            Frame::remote(e, 4).unwrap(),
            Frame::fd(e, &[7; 48], true).unwrap().with_esi(true),
            Frame::fd(s, &[], false).unwrap(),
        ];
        for f in frames {
            let w = WireFrame::from_frame(&f, 0x1_0000_0002);
            let back = WireFrame::load(&mut |i| words(&w)[i]);
            assert_eq!(back, w);
            assert_eq!(back.timestamp, 0x1_0000_0002);
            assert_eq!(back.to_frame(), Ok(f));
        }
    }

    #[test]
    fn ready_and_status_words_round_trip_and_bad_ones_are_refused() {
        use crate::controller::{BusState, ControllerStatus};
        use driver_hop::*;
        assert_eq!(decode_ready(encode_ready(3, true)), Some((3, true)));
        assert_eq!(decode_ready(encode_ready(8, false)), Some((8, false)));
        assert_eq!(decode_ready(0), None, "no slots");
        assert_eq!(decode_ready(9), None, "above MAX_DRIVER_SLOTS");
        assert_eq!(decode_ready(1 | 1 << 9), None, "unknown bit");
        for state in [BusState::Active, BusState::Passive, BusState::BusOff] {
            let s = ControllerStatus {
                state,
                tec: 0xfffe,
                rec: 127,
            };
            assert_eq!(decode_status(encode_status(s)), Some(s));
        }
        assert_eq!(decode_status(3 << 32), None);
        assert_eq!(decode_status(u64::MAX), None);
    }

    #[test]
    fn hostile_words_are_refused() {
        let good = WireFrame::from_frame(
            &Frame::classic(CanId::standard(1).unwrap(), &[1]).unwrap(),
            0,
        );
        let bad = |m: fn(&mut WireFrame)| {
            let mut w = good;
            m(&mut w);
            w.to_frame()
        };
        assert_eq!(
            bad(|w| w.flags |= 1 << 9),
            Err(ProtocolError::UndefinedFlags(1 << 9))
        );
        assert!(bad(|w| w.id = 0x800).is_err());
        assert_eq!(
            bad(|w| w.len_dlc = 65),
            Err(ProtocolError::LengthTooLong(65))
        );
        assert!(bad(|w| w.len_dlc = 9 | 9 << 8).is_err());
        assert_eq!(bad(|w| w.data[1] = 1), Err(ProtocolError::TrailingData));
        assert_eq!(
            bad(|w| w.flags |= W_BRS),
            Err(ProtocolError::BadCombination)
        );
        assert_eq!(
            bad(|w| w.flags |= W_FD | W_RTR),
            Err(ProtocolError::BadCombination)
        );
        assert_eq!(
            bad(|w| w.len_dlc |= 1 << 12),
            Err(ProtocolError::BadCombination)
        );
    }

    proptest! {
        /// Any words: decoding never panics, and what decodes re-encodes to
        /// the same words (no two encodings of one frame are accepted).
        #[test]
        fn any_words_decode_canonically(ws in proptest::collection::vec(any::<u32>(), WireFrame::WORDS), small in 0u32..0x2000, len in 0u32..80) {
            let mut ws = ws;
            // Bias toward plausible headers so the accepting path is reached.
            ws[0] &= 0x1f;
            ws[1] = small;
            ws[2] = len | (ws[2] & 0xf00);
            for w in ws.iter_mut().skip(5 + usize::try_from(len.div_ceil(4)).unwrap_or(16)) { *w = 0; }
            let w = WireFrame::load(&mut |i| ws[i]);
            if let Ok(f) = w.to_frame() {
                let again = WireFrame::from_frame(&f, w.timestamp);
                prop_assert_eq!(again, w);
            }
        }
    }
}
