//! Driver for the NXP FlexCAN controller (i.MX8M Plus), implementing the
//! CAN virtualiser's [`CanController`] interface.
//!
//! Design (register facts: i.MX8M Plus Reference Manual, FlexCAN chapter;
//! Linux `drivers/net/can/flexcan/flexcan-core.c` and `flexcan.h`):
//! - TX slot `i` is message buffer (MB) `i + 1`; MB 0 stays inactive for the
//!   ERR005829 workaround Linux applies. CTRL1.LBUF = 0 makes the
//!   controller offer the pending MB with the lowest arbitration field first,
//!   so frames from different guests leave in id order, never in submission
//!   order (no FIFO priority inversion). MCR.AEN makes aborts safe: writing
//!   the ABORT code to a pending MB either aborts it (code reads back ABORT)
//!   or, if it is already on the bus, lets it finish (code INACTIVE).
//! - RX MBs follow the TX MBs. Each holds one id/mask filter of the union of
//!   the guests' filters, with its own mask in RXIMR (MCR.IRMQ); spare RX MBs
//!   repeat the filters so that a burst does not overrun one MB. Frames are
//!   handed out oldest first by their 16-bit capture timestamp.
//! - FD: MCR.FDEN, FDCTRL with 64-byte payloads in both MB RAM blocks
//!   (7 MBs per 512-byte block), FDCBT for the data phase.
//! - Fault confinement: CTRL1.BOFFREC = 1 disables automatic bus-off
//!   recovery; [`FlexCan::recover`] clears it so the controller rejoins after
//!   128 × 11 recessive bits, and [`FlexCan::service`] sets it again once the
//!   controller is error-active.
#![no_std]
// `deny`, not `forbid`: the one volatile MMIO module (`mmio::volatile`) opts out.
#![deny(unsafe_code)]

pub mod mmio;
pub mod regs;
pub mod timing;

use bulkhead_can_frame::{CanId, Frame};
use bulkhead_can_protocol::controller::{
    BusState, CanController, ControllerError, ControllerStatus, Received, SlotDone,
};

pub use mmio::Mmio;
use regs::*;

/// The i.MX8M Plus FlexCAN protocol-engine clock (automotive reference).
pub const CLOCK_HZ: u32 = 40_000_000;
/// Message buffers with 8-byte payloads (classic mode, 1 KiB of MB RAM).
pub const CLASSIC_MBS: usize = 64;
/// Message buffers with 64-byte payloads (FD mode: 7 per 512-byte block × 2).
pub const FD_MBS: usize = 14;
/// Most TX slots a driver instance manages.
pub const MAX_TX: usize = 16;
/// Polls of a status bit before a handshake counts as failed.
const POLLS: u32 = 10_000;

/// One hardware acceptance filter: frames whose id agrees with `id` on the
/// bits set in `mask` (and whose IDE matches `extended`) are received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Identifier bits to match.
    pub id: u32,
    /// Which identifier bits must match (1 = compare).
    pub mask: u32,
    /// Extended (29-bit) rather than standard (11-bit) identifiers.
    pub extended: bool,
}

impl Filter {
    /// Every standard and every extended id: the widest union, for a driver
    /// that is not told the guests' filters (the virtualiser then filters
    /// per guest in software).
    pub const ACCEPT_ALL: [Filter; 2] = [
        Filter {
            id: 0,
            mask: 0,
            extended: false,
        },
        Filter {
            id: 0,
            mask: 0,
            extended: true,
        },
    ];

    /// The smallest single filter accepting everything `self` and `other`
    /// accept (for fitting many guests' filters into few MBs; software
    /// filtering in the virtualiser removes the surplus). `None` if the two
    /// differ in IDE, which one MB cannot cover.
    pub fn merge(&self, other: &Self) -> Option<Self> {
        (self.extended == other.extended).then(|| {
            let mask = self.mask & other.mask & !(self.id ^ other.id);
            Self {
                id: self.id & mask,
                mask,
                extended: self.extended,
            }
        })
    }

    fn id_word(&self, v: u32) -> u32 {
        if self.extended {
            v & EXT_ID_MASK
        } else {
            (v & 0x7ff) << STD_ID_SHIFT
        }
    }
}

/// Controller configuration.
#[derive(Clone, Copy, Debug)]
pub struct Config<'a> {
    /// Nominal (arbitration) bit rate.
    pub nominal_bps: u32,
    /// Data-phase bit rate; `Some` enables CAN FD.
    pub data_bps: Option<u32>,
    /// TX slots (MBs) to use, 1..=[`MAX_TX`].
    pub tx_slots: usize,
    /// The union of the guests' filters. Each gets an RX MB while MBs last;
    /// beyond that, filters are merged into wider ones (a superset).
    pub filters: &'a [Filter],
}

/// Why the driver could not bring the controller up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// A bit rate cannot be made from the 40 MHz clock.
    BitTiming,
    /// `tx_slots` is 0, above [`MAX_TX`], or leaves fewer than 2 RX MBs
    /// besides the reserved MB 0
    /// (one per IDE kind).
    Slots,
    /// No filters given (nothing could be received).
    NoFilters,
    /// The controller did not acknowledge reset, freeze or unfreeze.
    Timeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tx {
    Free,
    Pending,
}

/// A FlexCAN controller driven through `M`.
#[derive(Debug)]
pub struct FlexCan<M: Mmio> {
    mmio: M,
    fd: bool,
    tx_slots: usize,
    mbs: usize,
    tx: [Tx; MAX_TX],
    /// Recovery started by `recover()`, BOFFREC to be set again when done.
    recovering: bool,
    now_ns: u64,
    overruns: u32,
}

impl<M: Mmio> FlexCan<M> {
    /// Resets and configures the controller and starts it on the bus.
    ///
    /// # Errors
    /// [`InitError`] for unusable configurations or an unresponsive controller.
    pub fn new(mmio: M, cfg: &Config<'_>) -> Result<Self, InitError> {
        let nominal = timing::nominal(CLOCK_HZ, cfg.nominal_bps).ok_or(InitError::BitTiming)?;
        let data = match cfg.data_bps {
            Some(bps) => Some(timing::data(CLOCK_HZ, bps).ok_or(InitError::BitTiming)?),
            None => None,
        };
        let fd = data.is_some();
        let mbs = if fd { FD_MBS } else { CLASSIC_MBS };
        if cfg.tx_slots == 0 || cfg.tx_slots > MAX_TX || cfg.tx_slots + 3 > mbs {
            return Err(InitError::Slots);
        }
        if cfg.filters.is_empty() {
            return Err(InitError::NoFilters);
        }
        let mut d = Self {
            mmio,
            fd,
            tx_slots: cfg.tx_slots,
            mbs,
            tx: [Tx::Free; MAX_TX],
            recovering: false,
            now_ns: 0,
            overruns: 0,
        };
        d.reset()?;
        d.freeze()?;
        // MCR: one MB past the last in use is MAXMB + 1; no self reception
        // (our own frames must not come back as guests' RX); individual RX
        // masks; safe abort; warnings; FD if configured. Supervisor-only
        // access off so the user-level PD may touch all registers.
        let maxmb = u32::try_from(mbs - 1).map_err(|_| InitError::Slots)?;
        let mut mcr = MCR_FRZ | MCR_HALT | MCR_SRX_DIS | MCR_IRMQ | MCR_AEN | MCR_WRN_EN | maxmb;
        if fd {
            mcr |= MCR_FDEN;
        }
        d.mmio.write32(MCR, mcr);
        // CTRL1: BOFFREC (no automatic recovery), LBUF = 0 (lowest id
        // first), bus-off/error/warning interrupts. Timing lives in CBT.
        d.mmio.write32(
            CTRL1,
            CTRL1_BOFF_REC | CTRL1_BOFF_MSK | CTRL1_ERR_MSK | CTRL1_TWRN_MSK | CTRL1_RWRN_MSK,
        );
        d.mmio.write32(CBT, timing::cbt(&nominal));
        // CTRL2: store remote frames (no automatic answers the guests did
        // not ask for), ISO CAN FD CRC, bus-off-done interrupt.
        let mut ctrl2 = CTRL2_RRS | CTRL2_BOFFDONEMSK;
        if let Some(ds) = data {
            ctrl2 |= CTRL2_ISOCANFDEN;
            d.mmio.write32(FDCBT, timing::fdcbt(&ds));
            let mut fdctrl = FDCTRL_FDRATE | FDCTRL_MBDSR_64;
            if let Some(off) = timing::tdc_offset(&ds) {
                fdctrl |= FDCTRL_TDCEN | u32::from(off) << FDCTRL_TDCOFF_SHIFT;
            }
            d.mmio.write32(FDCTRL, fdctrl);
        }
        d.mmio.write32(CTRL2, ctrl2);
        d.program_mbs(cfg.filters);
        // Counters and stale flags from before the reset.
        d.mmio.write32(ECR, 0);
        d.mmio.write32(IFLAG1, u32::MAX);
        d.mmio.write32(IFLAG2, u32::MAX);
        d.mmio.write32(ESR1, ESR1_W1C);
        let used = d.mbs;
        // MB 0 is the erratum's reserved MB and never raises a flag.
        d.mmio.write32(IMASK1, mb_bits(used, 0) & !1);
        d.mmio.write32(IMASK2, mb_bits(used, 32));
        d.unfreeze()?;
        Ok(d)
    }

    fn wait(&self, reg: usize, bit: u32, set: bool) -> Result<(), InitError> {
        for _ in 0..POLLS {
            if (self.mmio.read32(reg) & bit != 0) == set {
                return Ok(());
            }
        }
        Err(InitError::Timeout)
    }

    fn reset(&mut self) -> Result<(), InitError> {
        // Enable the module (soft reset needs it clocked), then reset.
        let mcr = self.mmio.read32(MCR) & !MCR_MDIS;
        self.mmio.write32(MCR, mcr);
        self.wait(MCR, MCR_LPM_ACK, false)?;
        self.mmio.write32(MCR, mcr | MCR_SOFTRST);
        self.wait(MCR, MCR_SOFTRST, false)
    }

    fn freeze(&mut self) -> Result<(), InitError> {
        let mcr = self.mmio.read32(MCR);
        self.mmio.write32(MCR, mcr | MCR_FRZ | MCR_HALT);
        self.wait(MCR, MCR_FRZ_ACK, true)
    }

    fn unfreeze(&mut self) -> Result<(), InitError> {
        let mcr = self.mmio.read32(MCR);
        self.mmio.write32(MCR, mcr & !MCR_HALT);
        self.wait(MCR, MCR_FRZ_ACK, false)?;
        self.wait(MCR, MCR_NOT_RDY, false)
    }

    /// First RX MB: after the reserved MB and the TX MBs.
    fn rx_first(&self) -> usize {
        self.tx_slots + 1
    }

    fn mb_addr(&self, mb: usize) -> usize {
        if self.fd {
            MB_BASE + (mb / 7) * 0x200 + (mb % 7) * 72
        } else {
            MB_BASE + mb * 16
        }
    }

    fn program_mbs(&mut self, filters: &[Filter]) {
        // MB RAM is not reset by SOFTRST: every MB gets a defined code.
        for mb in 0..=self.tx_slots {
            let a = self.mb_addr(mb);
            self.mmio.write32(a, cs_code(CODE_TX_INACTIVE));
            self.mmio.write32(a + 4, 0);
        }
        // Fit the filters into the RX MBs: merge the last two while too
        // many (a wider filter is still a union over-approximation).
        let rx = self.mbs - self.rx_first();
        let mut set = [Filter {
            id: 0,
            mask: 0,
            extended: false,
        }; CLASSIC_MBS];
        let mut n = 0;
        for f in filters {
            if n < rx {
                set[n] = *f;
                n += 1;
            } else if let Some((i, m)) = (0..n).find_map(|i| set[i].merge(f).map(|m| (i, m))) {
                set[i] = m;
            } else {
                // All kept filters are of the other IDE kind (rx ≥ 2 by
                // construction): merge the last two of them, free a slot.
                if let Some(m) = set[n - 2].merge(&set[n - 1]) {
                    set[n - 2] = m;
                }
                set[n - 1] = *f;
            }
        }
        for i in 0..rx {
            let f = set[i % n.max(1)];
            let mb = self.rx_first() + i;
            let a = self.mb_addr(mb);
            // Inactive while being written, then EMPTY to arm it.
            self.mmio.write32(a, 0);
            self.mmio.write32(a + 4, f.id_word(f.id));
            self.mmio.write32(RXIMR + 4 * mb, f.id_word(f.mask));
            let ide = if f.extended { CS_IDE } else { 0 };
            self.mmio.write32(a, cs_code(CODE_RX_EMPTY) | ide);
        }
        // The global mask is unused with IRMQ; leave it fully comparing.
        self.mmio.write32(RXMGMASK, u32::MAX);
    }

    /// Sets the time used to stamp completions and received frames (the
    /// PD calls this with its clock before servicing an interrupt).
    pub fn set_now(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
    }

    /// Frames received into an MB that already held one (lost frames).
    pub fn overruns(&self) -> u32 {
        self.overruns
    }

    /// Interrupt-side housekeeping: once a recovery the virtualiser asked
    /// for has completed, disable automatic recovery again so the next
    /// bus-off also waits for `recover()`.
    pub fn service(&mut self) {
        let esr1 = self.mmio.read32(ESR1);
        if self.recovering && fltconf(esr1) != BusState::BusOff {
            let ctrl1 = self.mmio.read32(CTRL1);
            self.mmio.write32(CTRL1, ctrl1 | CTRL1_BOFF_REC);
            self.recovering = false;
        }
        self.mmio.write32(ESR1, esr1 & ESR1_W1C);
    }

    fn iflag(&self, mb: usize) -> bool {
        let (reg, bit) = if mb < 32 {
            (IFLAG1, mb)
        } else {
            (IFLAG2, mb - 32)
        };
        self.mmio.read32(reg) & (1 << bit) != 0
    }

    fn clear_iflag(&mut self, mb: usize) {
        let (reg, bit) = if mb < 32 {
            (IFLAG1, mb)
        } else {
            (IFLAG2, mb - 32)
        };
        self.mmio.write32(reg, 1 << bit);
    }

    /// The full RX MB captured longest ago (16-bit capture timestamps,
    /// compared as wrapping distance back from the current timer).
    fn oldest_full(&self) -> Option<(usize, u32)> {
        let now = self.mmio.read32(TIMER) & 0xffff;
        let mut best: Option<(u32, usize, u32)> = None;
        for mb in self.rx_first()..self.mbs {
            if !self.iflag(mb) {
                continue;
            }
            let cs = self.mmio.read32(self.mb_addr(mb));
            let age = now.wrapping_sub(cs & 0xffff) & 0xffff;
            if best.is_none_or(|(b, _, _)| age > b) {
                best = Some((age, mb, cs));
            }
        }
        best.map(|(_, mb, cs)| (mb, cs))
    }

    fn read_frame(&self, a: usize, cs: u32) -> Option<Frame> {
        let idw = self.mmio.read32(a + 4);
        let id = if cs & CS_IDE != 0 {
            CanId::extended(idw & EXT_ID_MASK).ok()?
        } else {
            let raw = u16::try_from((idw >> STD_ID_SHIFT) & 0x7ff).ok()?;
            CanId::standard(raw).ok()?
        };
        let dlc = u8::try_from((cs >> CS_DLC_SHIFT) & 0xf).ok()?;
        let mut buf = [0u8; 64];
        if cs & CS_EDL != 0 {
            let len = usize::from(bulkhead_can_frame::fd_len_for_dlc(dlc));
            read_payload(&self.mmio, a + 8, &mut buf[..len]);
            Frame::fd(id, &buf[..len], cs & CS_BRS != 0)
                .ok()
                .map(|f| f.with_esi(cs & CS_ESI != 0))
        } else if cs & CS_RTR != 0 {
            Frame::remote(id, dlc.min(8)).ok()
        } else {
            let len = usize::from(dlc.min(8));
            read_payload(&self.mmio, a + 8, &mut buf[..len]);
            Frame::classic_with_dlc(id, &buf[..len], dlc).ok()
        }
    }
}

fn read_payload<M: Mmio>(m: &M, at: usize, out: &mut [u8]) {
    // Payload words are big-endian: byte 0 is bits 31..24 (flexcan.h reads
    // them with be32_to_cpu).
    for (w, chunk) in out.chunks_mut(4).enumerate() {
        let v = m.read32(at + 4 * w).to_be_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

fn write_payload<M: Mmio>(m: &mut M, at: usize, data: &[u8], words: usize) {
    for w in 0..words {
        let mut b = [0u8; 4];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = data.get(4 * w + i).copied().unwrap_or(0);
        }
        m.write32(at + 4 * w, u32::from_be_bytes(b));
    }
}

/// The MB kept inactive for the ERR005829 workaround.
const RESERVED_MB: usize = 0;

/// TX slot `slot` is MB `slot + 1` (MB 0 is reserved).
fn tx_mb(slot: usize) -> usize {
    slot + 1
}

fn mb_bits(count: usize, from: usize) -> u32 {
    let n = count.saturating_sub(from).min(32);
    if n == 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

fn fltconf(esr1: u32) -> BusState {
    match (esr1 >> ESR1_FLTCONF_SHIFT) & 3 {
        0 => BusState::Active,
        1 => BusState::Passive,
        _ => BusState::BusOff,
    }
}

impl<M: Mmio> CanController for FlexCan<M> {
    fn slots(&self) -> usize {
        self.tx_slots
    }

    /// `priority` is not written anywhere: the controller arbitrates its
    /// pending MBs by the frames' own arbitration fields, which is the
    /// virtualiser's priority key.
    fn submit(
        &mut self,
        slot: usize,
        frame: &Frame,
        _priority: u32,
    ) -> Result<(), ControllerError> {
        if slot >= self.tx_slots || self.tx[slot] != Tx::Free {
            return Err(ControllerError::BadSlot);
        }
        if frame.is_fd() && !self.fd {
            return Err(ControllerError::Unsupported);
        }
        let a = self.mb_addr(tx_mb(slot));
        let (idw, mut cs) = match frame.id() {
            CanId::Standard(s) => (u32::from(s.raw()) << STD_ID_SHIFT, 0),
            // SRR must be recessive (1) in extended frames.
            CanId::Extended(e) => (e.raw() & EXT_ID_MASK, CS_IDE | CS_SRR),
        };
        cs |= cs_code(CODE_TX_DATA) | u32::from(frame.dlc()) << CS_DLC_SHIFT;
        match frame.kind() {
            bulkhead_can_frame::FrameKind::Classic { rtr: true, .. } => cs |= CS_RTR,
            bulkhead_can_frame::FrameKind::Classic { .. } => {}
            bulkhead_can_frame::FrameKind::Fd { brs, .. } => {
                // ESI is set by the controller from its own error state.
                cs |= CS_EDL | if brs { CS_BRS } else { 0 };
            }
        }
        // Code INACTIVE while the MB is filled; the CS write with DATA last
        // hands it to the controller.
        self.mmio.write32(a, cs_code(CODE_TX_INACTIVE));
        self.mmio.write32(a + 4, idw);
        write_payload(&mut self.mmio, a + 8, frame.data(), frame.len().div_ceil(4));
        self.mmio.write32(a, cs);
        // ERR005829 workaround (as Linux `flexcan_start_xmit`): write
        // INACTIVE twice to the reserved first MB after activating one, so a
        // transmission enabled during arbitration is not missed.
        let reserved = self.mb_addr(RESERVED_MB);
        self.mmio.write32(reserved, cs_code(CODE_TX_INACTIVE));
        self.mmio.write32(reserved, cs_code(CODE_TX_INACTIVE));
        self.tx[slot] = Tx::Pending;
        Ok(())
    }

    fn abort(&mut self, slot: usize) -> bool {
        if slot >= self.tx_slots || self.tx[slot] != Tx::Pending || self.iflag(tx_mb(slot)) {
            return false;
        }
        let mb = tx_mb(slot);
        let a = self.mb_addr(mb);
        let cs = self.mmio.read32(a);
        self.mmio
            .write32(a, (cs & !CS_CODE_MASK) | cs_code(CODE_TX_ABORT));
        // With AEN the controller answers at once for an MB not in
        // transmission; an MB on the bus raises its flag when the frame
        // ends, and `completion` reports it.
        for _ in 0..POLLS {
            if self.iflag(mb) {
                let code = (self.mmio.read32(a) & CS_CODE_MASK) >> CS_CODE_SHIFT;
                if code == CODE_TX_ABORT {
                    self.clear_iflag(mb);
                    self.tx[slot] = Tx::Free;
                    return true;
                }
                return false;
            }
        }
        false
    }

    fn completion(&mut self) -> Option<SlotDone> {
        for slot in 0..self.tx_slots {
            let mb = tx_mb(slot);
            if self.tx[slot] == Tx::Pending && self.iflag(mb) {
                let code = (self.mmio.read32(self.mb_addr(mb)) & CS_CODE_MASK) >> CS_CODE_SHIFT;
                self.clear_iflag(mb);
                self.tx[slot] = Tx::Free;
                return Some(SlotDone {
                    slot,
                    sent: code == CODE_TX_INACTIVE,
                    at_ns: self.now_ns,
                });
            }
        }
        None
    }

    fn receive(&mut self) -> Option<Received> {
        // Each pass consumes one full MB, so this ends within `mbs` passes.
        for _ in self.rx_first()..self.mbs {
            let (mb, _) = self.oldest_full()?;
            let a = self.mb_addr(mb);
            // Reading an MB's CS locks it against move-in (and releases
            // the previously locked one), so read this MB's CS again last
            // before its body; then unlock by reading TIMER, and re-arm.
            let cs = self.mmio.read32(a);
            let frame = self.read_frame(a, cs);
            let _unlock = self.mmio.read32(TIMER);
            if (cs & CS_CODE_MASK) >> CS_CODE_SHIFT == CODE_RX_OVERRUN {
                self.overruns = self.overruns.saturating_add(1);
            }
            self.clear_iflag(mb);
            self.mmio.write32(a, (cs & CS_IDE) | cs_code(CODE_RX_EMPTY));
            // A frame that cannot be represented (not expected from the
            // hardware) is dropped rather than delivered malformed.
            if let Some(frame) = frame {
                return Some(Received {
                    frame,
                    at_ns: self.now_ns,
                });
            }
        }
        None
    }

    fn status(&self) -> ControllerStatus {
        let ecr = self.mmio.read32(ECR);
        let state = fltconf(self.mmio.read32(ESR1));
        ControllerStatus {
            state,
            tec: u16::try_from(ecr & 0xff).unwrap_or(255),
            rec: u16::try_from((ecr >> 8) & 0xff).unwrap_or(255),
        }
    }

    fn recover(&mut self) -> Result<(), ControllerError> {
        if fltconf(self.mmio.read32(ESR1)) != BusState::BusOff {
            return Err(ControllerError::NotBusOff);
        }
        // Negating BOFFREC while bus-off starts the standard recovery.
        let ctrl1 = self.mmio.read32(CTRL1);
        self.mmio.write32(CTRL1, ctrl1 & !CTRL1_BOFF_REC);
        self.recovering = true;
        Ok(())
    }
}
