//! The exact bit sequence a frame puts on the wire (ISO 11898-1:2015), with
//! stuff bits, CRC, ACK, EOF and intermission, and the frame-time arithmetic
//! built on it.
//!
//! ```
//! use bulkhead_can_frame::{BitTiming, CanId, Frame, FrameBits};
//! let f = Frame::classic(CanId::standard(0x7ff).unwrap(), &[0xff; 8]).unwrap();
//! let bits = FrameBits::new(&f);
//! let t = BitTiming::from_bps(500_000, 500_000).unwrap();
//! assert_eq!(bits.duration_ns(&t), u64::from(bits.len()) * 2_000);
//! ```
//!
//! Bit values: `true` is recessive (1), `false` dominant (0).
//!
//! Sequence built here:
//! - classic: SOF, arbitration, control, data and the CRC-15 sequence are
//!   dynamically stuffed (a complementary bit after five equal bits, the
//!   stuff bit counting towards the next run); the CRC is computed over the
//!   unstuffed bits.
//! - FD: SOF through the data field are dynamically stuffed, except that no
//!   dynamic stuff bit follows the last bit of the data field (the fixed stuff
//!   bit takes its place); the CRC-17 (≤ 16 bytes) or CRC-21 register starts
//!   with its top bit set and covers the stuffed bits and the stuff count; the
//!   CRC field is a fixed stuff bit, the stuff count (dynamic stuff bits mod 8
//!   in Gray code plus even parity), a fixed stuff bit, and the CRC with a
//!   fixed stuff bit after every fourth bit; each fixed stuff bit is the
//!   complement of the bit before it.
//! - both: CRC delimiter, ACK slot (dominant here: a receiver acknowledged),
//!   ACK delimiter, 7 EOF bits, 3 intermission bits.
//!
//! With BRS, the bits after BRS up to the CRC delimiter are sent at the data
//! bit rate. The real switch happens at the sample points of BRS and of the
//! CRC delimiter; we switch at bit boundaries, which changes a frame's time
//! by less than one nominal bit.

use crate::{CanId, Frame, FrameKind};

/// Upper bound of any frame's wire length (29-bit id, 64-byte FD is ≤ 735).
pub const MAX_WIRE_BITS: usize = 768;
const WORDS: usize = MAX_WIRE_BITS / 64;

/// Bits after the CRC field: CRC delimiter, ACK slot, ACK delimiter, EOF, intermission.
pub const TRAILER_BITS: u16 = 1 + 1 + 1 + 7 + 3;
/// Intermission length in bits.
pub const INTERMISSION_BITS: u16 = 3;

/// Which bit rate a bit is sent at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nominal (arbitration) bit rate.
    Nominal,
    /// FD data bit rate (only between BRS and the CRC delimiter of a BRS frame).
    Data,
}

/// Bit times of a bus, in whole nanoseconds (so every timestamp is exact).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitTiming {
    /// Nominal bit time.
    pub nominal_ns: u32,
    /// Data-phase bit time (equal to `nominal_ns` without FD).
    pub data_ns: u32,
}

impl BitTiming {
    /// Bit times for the given rates; `None` unless both rates divide 1 s
    /// into whole nanoseconds, nominal ≤ 1 Mbit/s and nominal ≤ data ≤ 16 Mbit/s.
    pub fn from_bps(nominal_bps: u32, data_bps: u32) -> Option<Self> {
        const NS: u32 = 1_000_000_000;
        let ok = nominal_bps > 0
            && nominal_bps <= 1_000_000
            && data_bps >= nominal_bps
            && data_bps <= 16_000_000
            && NS % nominal_bps == 0
            && NS % data_bps == 0;
        ok.then(|| Self {
            nominal_ns: NS / nominal_bps,
            data_ns: NS / data_bps,
        })
    }

    /// Duration of one bit in the given phase.
    pub fn bit_ns(&self, phase: Phase) -> u64 {
        match phase {
            Phase::Nominal => u64::from(self.nominal_ns),
            Phase::Data => u64::from(self.data_ns),
        }
    }
}

/// A fixed-capacity bit string.
#[derive(Clone, Copy)]
struct Bits {
    words: [u64; WORDS],
    len: u16,
}

impl Bits {
    const fn new() -> Self {
        Self {
            words: [0; WORDS],
            len: 0,
        }
    }

    fn push(&mut self, bit: bool) {
        let i = usize::from(self.len);
        if i < MAX_WIRE_BITS {
            if bit {
                self.words[i / 64] |= 1 << (i % 64);
            }
            self.len += 1;
        }
    }

    fn push_field(&mut self, value: u32, width: u32) {
        for k in (0..width).rev() {
            self.push((value >> k) & 1 == 1);
        }
    }

    fn get(&self, i: usize) -> bool {
        i < MAX_WIRE_BITS && (self.words[i / 64] >> (i % 64)) & 1 == 1
    }

    fn set(&mut self, i: usize) {
        if i < MAX_WIRE_BITS {
            self.words[i / 64] |= 1 << (i % 64);
        }
    }
}

/// CRC register step shared by CRC-15/17/21 (ISO 11898-1: shift left, xor
/// the polynomial when the incoming bit differs from the top bit).
fn crc_step(reg: u32, bit: bool, width: u32, poly: u32) -> u32 {
    let top = (reg >> (width - 1)) & 1 == 1;
    let mask = (1u32 << width) - 1;
    let shifted = (reg << 1) & mask;
    if bit ^ top {
        shifted ^ poly
    } else {
        shifted
    }
}

const CRC15_POLY: u32 = 0x4599;
const CRC17_POLY: u32 = 0x1_685b;
const CRC21_POLY: u32 = 0x10_2899;
/// Stuff count mod 8 → Gray code (3 bits) followed by even parity.
const GRAY_WITH_PARITY: [u32; 8] = [
    0b0000, 0b0011, 0b0110, 0b0101, 0b1100, 0b1111, 0b1010, 0b1001,
];

/// The wire bits of one frame and where its fields sit.
#[derive(Clone, Copy)]
pub struct FrameBits {
    bits: Bits,
    /// Fixed-form positions: fixed stuff bits, CRC delimiter, ACK delimiter, EOF.
    fixed: Bits,
    arbitration_end: u16,
    stuff_end: u16,
    data_phase: (u16, u16),
    crc_delim: u16,
    dynamic_stuff_bits: u16,
    fixed_stuff_bits: u16,
    crc: u32,
}

/// Logical (unstuffed) header and data bits of a frame, with the positions of
/// the last arbitration bit and of BRS (FD).
fn logical_bits(f: &Frame) -> (Bits, u16, Option<u16>) {
    let mut b = Bits::new();
    b.push(false); // SOF
    let fd = f.is_fd();
    // RTR for classic, RRS (always dominant) for FD.
    let rtr = f.is_remote();
    match f.id() {
        CanId::Standard(s) => {
            b.push_field(u32::from(s.raw()), 11);
            b.push(rtr);
        }
        CanId::Extended(e) => {
            b.push_field(e.raw() >> 18, 11);
            b.push(true); // SRR
            b.push(true); // IDE
            b.push_field(e.raw() & 0x3_ffff, 18);
            b.push(rtr);
        }
    }
    let arbitration_end = b.len - 1;
    if !f.id().is_extended() {
        b.push(false); // IDE
    }
    b.push(fd); // FDF (r0 / r1 in classic CAN 2.0: dominant)
    let mut brs_at = None;
    if fd {
        b.push(false); // res
        brs_at = Some(b.len);
        b.push(f.brs());
        b.push(f.esi());
    } else if f.id().is_extended() {
        b.push(false); // r0
    }
    b.push_field(u32::from(f.dlc()), 4);
    for &byte in f.data() {
        b.push_field(u32::from(byte), 8);
    }
    (b, arbitration_end, brs_at)
}

/// Dynamic stuffing state.
struct Stuffer {
    out: Bits,
    last: bool,
    run: u8,
    stuff_bits: u16,
}

impl Stuffer {
    fn new() -> Self {
        // The idle bus is recessive: SOF always starts a new run.
        Self {
            out: Bits::new(),
            last: true,
            run: 1,
            stuff_bits: 0,
        }
    }

    /// Emits `bit`; returns the stuff bit inserted after it, if any.
    fn emit(&mut self, bit: bool, may_stuff: bool) -> Option<bool> {
        self.out.push(bit);
        if bit == self.last {
            self.run += 1;
        } else {
            self.last = bit;
            self.run = 1;
        }
        if self.run == 5 && may_stuff {
            let s = !bit;
            self.out.push(s);
            self.last = s;
            self.run = 1;
            self.stuff_bits += 1;
            return Some(s);
        }
        None
    }
}

impl FrameBits {
    /// Builds the wire bits of `frame` (ACK slot dominant: acknowledged).
    pub fn new(frame: &Frame) -> Self {
        let (logical, arb_logical, brs_logical) = logical_bits(frame);
        let mut st = Stuffer::new();
        let mut arbitration_end = 0;
        let mut brs_out = None;
        let mut fixed = Bits::new();
        let n = usize::from(logical.len);
        let (stuff_end, crc, fixed_stuff_bits);
        if let FrameKind::Fd { .. } = frame.kind() {
            let (width, poly) = if frame.len() > 16 {
                (21, CRC21_POLY)
            } else {
                (17, CRC17_POLY)
            };
            let mut reg = 1u32 << (width - 1);
            for i in 0..n {
                if i == usize::from(arb_logical) {
                    arbitration_end = st.out.len;
                }
                if Some(i) == brs_logical.map(usize::from) {
                    brs_out = Some(st.out.len);
                }
                let bit = logical.get(i);
                reg = crc_step(reg, bit, width, poly);
                // No dynamic stuff bit after the last data-field bit.
                if let Some(s) = st.emit(bit, i + 1 < n) {
                    reg = crc_step(reg, s, width, poly);
                }
            }
            stuff_end = st.out.len;
            let sc = GRAY_WITH_PARITY[usize::from(st.stuff_bits % 8)];
            for k in (0..4).rev() {
                reg = crc_step(reg, (sc >> k) & 1 == 1, width, poly);
            }
            crc = reg;
            let mut out = st.out;
            let mut fsb = 0u16;
            let mut fixed_stuff = |out: &mut Bits, fixed: &mut Bits| {
                let prev = out.get(usize::from(out.len) - 1);
                fixed.set(usize::from(out.len));
                out.push(!prev);
                fsb += 1;
            };
            fixed_stuff(&mut out, &mut fixed);
            out.push_field(sc, 4);
            fixed_stuff(&mut out, &mut fixed);
            for k in (0..width).rev() {
                out.push((crc >> k) & 1 == 1);
                let sent = width - k;
                if sent % 4 == 0 && k != 0 {
                    fixed_stuff(&mut out, &mut fixed);
                }
            }
            fixed_stuff_bits = fsb;
            st.out = out;
        } else {
            let mut reg = 0u32;
            for i in 0..n {
                reg = crc_step(reg, logical.get(i), 15, CRC15_POLY);
            }
            crc = reg;
            for i in 0..n {
                if i == usize::from(arb_logical) {
                    arbitration_end = st.out.len;
                }
                st.emit(logical.get(i), true);
            }
            for k in (0..15).rev() {
                st.emit((crc >> k) & 1 == 1, true);
            }
            stuff_end = st.out.len;
            fixed_stuff_bits = 0;
        }
        let mut out = st.out;
        let crc_delim = out.len;
        let data_phase = match brs_out {
            Some(b) if frame.brs() => (b + 1, crc_delim),
            _ => (crc_delim, crc_delim),
        };
        fixed.set(usize::from(crc_delim));
        out.push(true); // CRC delimiter
        out.push(false); // ACK slot, driven by the receivers
        fixed.set(usize::from(out.len));
        out.push(true); // ACK delimiter
        for _ in 0..7 {
            fixed.set(usize::from(out.len));
            out.push(true); // EOF
        }
        for _ in 0..INTERMISSION_BITS {
            out.push(true);
        }
        Self {
            bits: out,
            fixed,
            arbitration_end,
            stuff_end,
            data_phase,
            crc_delim,
            dynamic_stuff_bits: st.stuff_bits,
            fixed_stuff_bits,
            crc,
        }
    }

    /// Total length in bits, SOF through intermission.
    // A frame always has at least its 47 fixed bits, so it is never empty.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        self.bits.len
    }

    /// Bit `i` (true = recessive); bits past the end read as recessive (idle bus).
    pub fn bit(&self, i: usize) -> bool {
        i >= usize::from(self.bits.len) || self.bits.get(i)
    }

    /// Index of the last arbitration bit (RTR, or RRS in FD frames).
    pub fn arbitration_end(&self) -> u16 {
        self.arbitration_end
    }

    /// First index not covered by dynamic stuffing (classic: the CRC
    /// delimiter; FD: the first fixed stuff bit).
    pub fn stuff_end(&self) -> u16 {
        self.stuff_end
    }

    /// Whether bit `i` has a fixed form: a fixed stuff bit, the CRC or ACK
    /// delimiter or an EOF bit.
    pub fn is_fixed_form(&self, i: usize) -> bool {
        self.fixed.get(i)
    }

    /// Index of the CRC delimiter.
    pub fn crc_delimiter(&self) -> u16 {
        self.crc_delim
    }

    /// Index of the ACK slot.
    pub fn ack_slot(&self) -> u16 {
        self.crc_delim + 1
    }

    /// Index of the first intermission bit (one past the last EOF bit).
    pub fn intermission_start(&self) -> u16 {
        self.bits.len - INTERMISSION_BITS
    }

    /// Number of dynamic stuff bits.
    pub fn dynamic_stuff_bits(&self) -> u16 {
        self.dynamic_stuff_bits
    }

    /// Number of fixed stuff bits (FD: 6 with CRC-17, 7 with CRC-21; classic: 0).
    pub fn fixed_stuff_bits(&self) -> u16 {
        self.fixed_stuff_bits
    }

    /// The CRC sequence value.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// The rate bit `i` is sent at.
    pub fn phase(&self, i: usize) -> Phase {
        let (a, b) = self.data_phase;
        if (usize::from(a)..usize::from(b)).contains(&i) {
            Phase::Data
        } else {
            Phase::Nominal
        }
    }

    /// Bits sent at the nominal and at the data rate.
    pub fn phase_split(&self) -> (u16, u16) {
        let data = self.data_phase.1 - self.data_phase.0;
        (self.bits.len - data, data)
    }

    /// Time of bits `0..end` (end clamped to the frame length).
    pub fn time_of_first_ns(&self, end: usize, t: &BitTiming) -> u64 {
        let end = end.min(usize::from(self.bits.len));
        let (a, b) = (
            usize::from(self.data_phase.0),
            usize::from(self.data_phase.1),
        );
        let data = end.saturating_sub(a).min(b - a) as u64;
        let nominal = end as u64 - data;
        nominal * t.bit_ns(Phase::Nominal) + data * t.bit_ns(Phase::Data)
    }

    /// Exact time on the wire, SOF through intermission.
    pub fn duration_ns(&self, t: &BitTiming) -> u64 {
        self.time_of_first_ns(usize::from(self.bits.len), t)
    }
}

/// What a worst/best-case bound is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// 29-bit identifier.
    pub extended: bool,
    /// FD format.
    pub fd: bool,
    /// FD with bit rate switch.
    pub brs: bool,
    /// Payload bytes (0 for a remote frame).
    pub len: u16,
}

impl Shape {
    /// Bits from SOF to the end of the data field, and for FD the bits up to
    /// and including BRS.
    fn header(&self) -> (u16, u16) {
        let data = 8 * self.len;
        match (self.fd, self.extended) {
            (false, false) => (19 + data, 0),
            (false, true) => (39 + data, 0),
            (true, false) => (22 + data, 17),
            (true, true) => (41 + data, 36),
        }
    }

    fn crc_field(&self) -> u16 {
        match (self.fd, self.len > 16) {
            (false, _) => 15,
            (true, false) => 4 + 17 + 6,
            (true, true) => 4 + 21 + 7,
        }
    }

    /// Most dynamic stuff bits any frame of this shape can carry: one after
    /// the first five stuffable bits, then at most one per four more.
    pub fn max_dynamic_stuff_bits(&self) -> u16 {
        let (h, _) = self.header();
        if self.fd {
            // SOF..data, no stuff bit after the last data bit.
            (h - 2) / 4
        } else {
            // SOF..CRC sequence.
            (h + 15 - 1) / 4
        }
    }

    /// Fewest wire bits (no dynamic stuff bits), SOF through intermission.
    pub fn min_wire_bits(&self) -> u16 {
        self.header().0 + self.crc_field() + TRAILER_BITS
    }

    /// Most wire bits, SOF through intermission (for classic frames this is
    /// the well-known `8n + 47 + ⌊(34 + 8n − 1)/4⌋` for 11-bit ids and
    /// `8n + 67 + ⌊(54 + 8n − 1)/4⌋` for 29-bit ids).
    pub fn max_wire_bits(&self) -> u16 {
        self.min_wire_bits() + self.max_dynamic_stuff_bits()
    }

    /// Upper bound of the frame's time: the stuff bits are put in the slower
    /// nominal phase as far as its length allows.
    pub fn max_duration_ns(&self, t: &BitTiming) -> u64 {
        let (h, arb) = self.header();
        let s = self.max_dynamic_stuff_bits();
        if !(self.fd && self.brs) {
            return u64::from(self.max_wire_bits()) * t.bit_ns(Phase::Nominal);
        }
        let s_nominal = ((arb - 1) / 4).min(s);
        let nominal = arb + s_nominal + TRAILER_BITS;
        let data = h - arb + (s - s_nominal) + self.crc_field();
        u64::from(nominal) * t.bit_ns(Phase::Nominal) + u64::from(data) * t.bit_ns(Phase::Data)
    }
}

/// The longest frame a bus allows, in ns: an extended 8-byte classic frame,
/// or an extended 64-byte FD frame (with `brs` as configured) where FD is on.
/// "One frame time" in a blocking bound means this.
pub fn longest_frame_ns(t: &BitTiming, fd: bool, brs: bool) -> u64 {
    let shape = if fd {
        Shape {
            extended: true,
            fd: true,
            brs,
            len: 64,
        }
    } else {
        Shape {
            extended: true,
            fd: false,
            brs: false,
            len: 8,
        }
    };
    shape.max_duration_ns(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn std_id(id: u16) -> CanId {
        CanId::standard(id).unwrap()
    }

    fn bitstring(fb: &FrameBits, range: core::ops::Range<usize>) -> [u8; 64] {
        let mut s = [b' '; 64];
        for (k, i) in range.enumerate() {
            s[k] = if fb.bit(i) { b'1' } else { b'0' };
        }
        s
    }

    #[test]
    fn classic_frame_worst_and_best_formulas_match_the_reference() {
        // automotive.md: 11-bit 8-byte 111–135 bits; 29-bit 131–160.
        let s11 = Shape {
            extended: false,
            fd: false,
            brs: false,
            len: 8,
        };
        let s29 = Shape {
            extended: true,
            fd: false,
            brs: false,
            len: 8,
        };
        assert_eq!((s11.min_wire_bits(), s11.max_wire_bits()), (111, 135));
        assert_eq!((s29.min_wire_bits(), s29.max_wire_bits()), (131, 160));
    }

    #[test]
    fn fd_64_byte_bounds_match_the_linux_can_length_table() {
        // include/linux/can/length.h (2023): CAN-FD SFF/EFF without stuffing
        // 579/598 bits, with worst-case dynamic stuffing 712/736. Ours give
        // 735 for EFF: Linux counts ⌊(n−1)/4⌋ dynamic stuff bits, but ISO
        // 11898-1:2015 §10.5 puts only the fixed stuff bit after the last
        // data bit, so at most ⌊(n−2)/4⌋ (equal for SFF, one less for EFF).
        let sff = Shape {
            extended: false,
            fd: true,
            brs: false,
            len: 64,
        };
        let eff = Shape {
            extended: true,
            fd: true,
            brs: false,
            len: 64,
        };
        assert_eq!((sff.min_wire_bits(), sff.max_wire_bits()), (579, 712));
        assert_eq!((eff.min_wire_bits(), eff.max_wire_bits()), (598, 735));
    }

    #[test]
    fn all_zero_frame_has_the_hand_counted_stuffing() {
        // id 0, DLC 0: SOF + 11 id + RTR + IDE + r0 + DLC 0000 = 19 dominant
        // bits: a recessive stuff bit after every 5 (the stuff bit starts a
        // recessive run, so the dominant run restarts after it).
        let f = Frame::classic(std_id(0), &[]).unwrap();
        let fb = FrameBits::new(&f);
        let head = bitstring(&fb, 0..23);
        assert_eq!(&head[..23], b"00000100000100000100000");
        // A stuff bit counts towards a following run of its own value:
        // id 0x00f = 0000000 1111 → SOF+4 zeros, stuff 1, 000, 1111, then
        // RTR IDE r0 DLC = 7 zeros → stuff after 5.
        let g = Frame::classic(std_id(0x00f), &[]).unwrap();
        let gb = FrameBits::new(&g);
        let head = bitstring(&gb, 0..21);
        assert_eq!(&head[..21], b"000001000111100000100");
        assert_eq!(fb.arbitration_end(), 14); // RTR after 12 logical bits + 2 stuff bits
                                              // CRC-15 of 19 zero bits from a zero register is zero: 15 more zeros.
        assert_eq!(fb.crc(), 0);
    }

    #[test]
    fn fd_crc_field_has_its_fixed_stuff_bits() {
        let id = std_id(0x10);
        let f16 = Frame::fd(id, &[0x55; 16], true).unwrap();
        let f20 = Frame::fd(id, &[0x55; 20], true).unwrap();
        let b16 = FrameBits::new(&f16);
        let b20 = FrameBits::new(&f20);
        assert_eq!(b16.fixed_stuff_bits(), 6);
        assert_eq!(b20.fixed_stuff_bits(), 7);
        assert_eq!(b16.crc_delimiter() - b16.stuff_end(), 27);
        assert_eq!(b20.crc_delimiter() - b20.stuff_end(), 32);
        // Each fixed stuff bit complements the bit before it.
        for fb in [b16, b20] {
            for i in usize::from(fb.stuff_end())..usize::from(fb.crc_delimiter()) {
                if fb.is_fixed_form(i) {
                    assert_ne!(fb.bit(i), fb.bit(i - 1), "FSB at {i}");
                }
            }
        }
    }

    #[test]
    fn fd_stuff_count_is_gray_coded_with_even_parity() {
        for (n, code) in GRAY_WITH_PARITY.iter().enumerate() {
            assert_eq!(code.count_ones() % 2, 0);
            let gray = u32::try_from(n ^ (n >> 1)).unwrap();
            assert_eq!(code >> 1, gray);
        }
        // The stuff count field holds the frame's dynamic stuff bits mod 8.
        let f = Frame::fd(std_id(0), &[0; 8], false).unwrap();
        let fb = FrameBits::new(&f);
        let at = usize::from(fb.stuff_end()) + 1;
        let mut sc = 0u32;
        for i in at..at + 3 {
            sc = (sc << 1) | u32::from(fb.bit(i));
        }
        let n = usize::from(fb.dynamic_stuff_bits() % 8);
        assert_eq!(sc, GRAY_WITH_PARITY[n] >> 1);
    }

    #[test]
    fn brs_moves_the_data_phase_to_the_fast_rate() {
        let t = BitTiming::from_bps(500_000, 2_000_000).unwrap();
        let id = std_id(0x10);
        let slow = FrameBits::new(&Frame::fd(id, &[0xa5; 64], false).unwrap());
        let fast = FrameBits::new(&Frame::fd(id, &[0xa5; 64], true).unwrap());
        assert_eq!(slow.len(), fast.len());
        assert_eq!(slow.duration_ns(&t), u64::from(slow.len()) * 2_000);
        let (n, d) = fast.phase_split();
        assert_eq!(
            fast.duration_ns(&t),
            u64::from(n) * 2_000 + u64::from(d) * 500
        );
        // Nominal bits: SOF..BRS (17 + its stuff bits) and the 13-bit trailer.
        assert!((17 + 13..=17 + 4 + 13).contains(&n), "{n}");
        assert!(BitTiming::from_bps(250_000, 8_000_000).is_some());
        assert!(BitTiming::from_bps(300_000, 300_000).is_none()); // 3333.3 ns
        assert!(BitTiming::from_bps(3_000_000, 3_000_000).is_none());
        assert!(BitTiming::from_bps(1_000_000, 3_000_000).is_none());
    }

    fn any_frame() -> impl Strategy<Value = Frame> {
        let id = prop_oneof![
            (0u16..=0x7ff).prop_map(|i| CanId::standard(i).unwrap()),
            (0u32..=0x1fff_ffff).prop_map(|i| CanId::extended(i).unwrap()),
        ];
        let fd_len = prop::sample::select(vec![
            0usize, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64,
        ]);
        prop_oneof![
            (id.clone(), prop::collection::vec(any::<u8>(), 0..=8))
                .prop_map(|(id, d)| Frame::classic(id, &d).unwrap()),
            (id.clone(), 0u8..=8).prop_map(|(id, dlc)| Frame::remote(id, dlc).unwrap()),
            (
                id,
                fd_len,
                any::<bool>(),
                any::<bool>(),
                prop::collection::vec(any::<u8>(), 64)
            )
                .prop_map(|(id, n, brs, esi, d)| Frame::fd(id, &d[..n], brs)
                    .unwrap()
                    .with_esi(esi)),
        ]
    }

    fn shape(f: &Frame) -> Shape {
        Shape {
            extended: f.id().is_extended(),
            fd: f.is_fd(),
            brs: f.brs(),
            len: u16::try_from(f.len()).unwrap(),
        }
    }

    proptest! {
        /// ISO 11898-1 §10.5: the stuffed length lies between the unstuffed
        /// length and the worst-case formula.
        #[test]
        fn iso11898_1_10_5_stuffed_length_within_bounds(f in any_frame()) {
            let fb = FrameBits::new(&f);
            let s = shape(&f);
            prop_assert!(fb.len() >= s.min_wire_bits());
            prop_assert!(fb.len() <= s.max_wire_bits());
            prop_assert_eq!(fb.len(), s.min_wire_bits() + fb.dynamic_stuff_bits());
            prop_assert!(usize::from(fb.len()) <= MAX_WIRE_BITS);
            let t = BitTiming::from_bps(500_000, 4_000_000).unwrap();
            prop_assert!(fb.duration_ns(&t) <= s.max_duration_ns(&t));
        }

        /// ISO 11898-1 §10.5: no six equal consecutive bits in the
        /// dynamically stuffed region, and destuffing gives back the logical bits.
        #[test]
        fn iso11898_1_10_5_no_six_equal_bits_and_destuffing_inverts(f in any_frame()) {
            let fb = FrameBits::new(&f);
            let end = usize::from(fb.stuff_end());
            let mut run = 0;
            let mut last = true;
            let mut destuffed = Bits::new();
            let mut skip = false;
            for i in 0..end {
                let b = fb.bit(i);
                if b == last { run += 1 } else { run = 1; last = b; }
                prop_assert!(run <= 5, "six equal bits ending at {}", i);
                if skip { skip = false; continue; }
                destuffed.push(b);
                if run == 5 && i + 1 < end { skip = true; }
            }
            let (logical, _, _) = logical_bits(&f);
            let n = usize::from(logical.len);
            for i in 0..n {
                prop_assert_eq!(destuffed.get(i), logical.get(i));
            }
        }

        /// A receiver running the CRC over what it received ends with a zero
        /// register (classic: over destuffed bits; FD: over stuffed bits and
        /// stuff count, then the CRC bits without their fixed stuff bits).
        #[test]
        fn iso11898_1_10_4_crc_residue_is_zero(f in any_frame()) {
            let fb = FrameBits::new(&f);
            let (width, poly, init) = match (f.is_fd(), f.len() > 16) {
                (false, _) => (15, CRC15_POLY, 0),
                (true, false) => (17, CRC17_POLY, 1 << 16),
                (true, true) => (21, CRC21_POLY, 1 << 20),
            };
            let mut reg = init;
            if f.is_fd() {
                for i in 0..usize::from(fb.stuff_end()) {
                    reg = crc_step(reg, fb.bit(i), width, poly);
                }
                for i in usize::from(fb.stuff_end())..usize::from(fb.crc_delimiter()) {
                    if !fb.is_fixed_form(i) {
                        reg = crc_step(reg, fb.bit(i), width, poly);
                    }
                }
            } else {
                let (logical, _, _) = logical_bits(&f);
                for i in 0..usize::from(logical.len) {
                    reg = crc_step(reg, logical.get(i), width, poly);
                }
                for k in (0..15).rev() {
                    reg = crc_step(reg, (fb.crc() >> k) & 1 == 1, width, poly);
                }
            }
            prop_assert_eq!(reg, 0);
        }

        /// Arbitration: walking two frames' wire bits, the first difference
        /// inside both arbitration fields goes to the lower key.
        #[test]
        fn arbitration_key_agrees_with_the_bits(a in any_frame(), b in any_frame()) {
            let (fa, fb) = (FrameBits::new(&a), FrameBits::new(&b));
            let end = usize::from(fa.arbitration_end().max(fb.arbitration_end()));
            let first_diff = (0..=end).find(|&i| fa.bit(i) != fb.bit(i));
            match first_diff {
                Some(i) => {
                    // The one sending dominant wins.
                    let a_wins = !fa.bit(i);
                    prop_assert_eq!(a_wins, a.arbitration_key() < b.arbitration_key());
                }
                None => {
                    // Same arbitration bits up to the shorter field.
                    if fa.arbitration_end() == fb.arbitration_end() {
                        prop_assert_eq!(a.arbitration_key(), b.arbitration_key());
                    }
                }
            }
        }
    }
}
