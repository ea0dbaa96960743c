//! Driver for the CTU CAN FD IP core (QEMU `ctucan_pci` on `virt`),
//! implementing the CAN virtualiser's [`CanController`] interface.
//!
//! - TX: each slot is a TXT buffer. The core sends the ready buffer with the
//!   highest TX_PRIORITY value (ties: lowest index). On every submit the
//!   driver ranks the occupied buffers by the virtualiser's priority key
//!   (lowest key → highest value), so frames leave in arbitration order
//!   whatever order they were submitted in.
//! - RX: the core's RX FIFO, read word by word from RX_DATA (frame format
//!   word, identifier, 64-bit timestamp, payload).
//! - Fault confinement: FAULT_STATE and REC/TEC. The core does not leave
//!   bus-off by itself: COMMAND.ERCRST requests the ISO recovery (128 × 11
//!   recessive bits), so recovery happens only in [`CanController::recover`].
//!
//! Register facts: Linux `drivers/net/can/ctucanfd/ctucanfd_kregs.h`,
//! `ctucanfd_kframe.h`, `ctucanfd_base.c`; QEMU `hw/net/can/ctucan_core.c`.
#![no_std]
#![forbid(unsafe_code)]

pub mod regs;

use bulkhead_can_frame::{CanId, Frame, FrameKind};
use bulkhead_can_protocol::controller::{
    BusState, CanController, ControllerError, ControllerStatus, Received, SlotDone,
};
pub use drv_pci_ecam::Mmio;
use drv_pci_ecam::{Bar, Bdf, Ecam, PciError, Window};
use regs::*;

/// PCI vendor id of `ctucan_pci` (QEMU `ctucan_pci.c`, PCI_VENDOR_ID_TEDIA).
pub const PCI_VENDOR: u16 = 0x1760;
/// PCI device id of `ctucan_pci` (PCI_DEVICE_ID_TEDIA_CTUCAN_VER21).
pub const PCI_DEVICE: u16 = 0xff00;
/// Offset of core `n` inside BAR1 (CTUCAN_PCI_BYTES_PER_CORE).
pub const CORE_STRIDE: u64 = 0x4000;
/// Core clock Linux assumes for the PCI card (`ctucanfd_pci.c`).
pub const PCI_CLOCK_HZ: u32 = 100_000_000;
/// TXT buffers of the core QEMU models (CTUCAN_CORE_TXBUF_NUM).
pub const TX_BUFFERS: usize = 4;

/// A probed `ctucan_pci` function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciCard {
    /// Where it sits.
    pub bdf: Bdf,
    /// BAR1: the CAN cores, [`CORE_STRIDE`] apart.
    pub cores: Bar,
    /// GIC INTID of its INTA on `virt`.
    pub intid: Option<u32>,
}

/// Finds the first `ctucan_pci` on bus 0, assigns its BARs from `window`
/// and enables memory decoding (no DMA: bus mastering stays off).
///
/// # Errors
/// [`PciError::Absent`] when there is none; assignment errors.
pub fn probe_pci<M: Mmio>(ecam: &mut Ecam<M>, window: &mut Window) -> Result<PciCard, PciError> {
    let mut found = [Bdf::default(); 1];
    if ecam.find(PCI_VENDOR, PCI_DEVICE, &mut found) == 0 {
        return Err(PciError::Absent);
    }
    let bdf = found[0];
    let bars = ecam.assign_bars(bdf, window, false)?;
    let cores = bars[1].ok_or(PciError::BadBar)?;
    Ok(PciCard {
        bdf,
        cores,
        intid: ecam.virt_intid(bdf),
    })
}

/// Controller configuration.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Core clock.
    pub clock_hz: u32,
    /// Nominal bit rate.
    pub nominal_bps: u32,
    /// Data bit rate; `Some` enables CAN FD.
    pub data_bps: Option<u32>,
    /// TX slots to use, 1..=[`TX_BUFFERS`].
    pub tx_slots: usize,
}

/// Why the driver could not bring the core up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// DEVICE_ID is not 0xCAFD: no CTU CAN FD core at that address.
    NotCtuCanFd,
    /// A bit rate cannot be made from the clock.
    BitTiming,
    /// `tx_slots` out of range.
    Slots,
}

/// Bit-timing segments in time quanta.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segments {
    /// Clocks per quantum.
    pub brp: u32,
    /// Propagation segment.
    pub prop: u32,
    /// Phase 1.
    pub ph1: u32,
    /// Phase 2.
    pub ph2: u32,
    /// Synchronisation jump width.
    pub sjw: u32,
}

impl Segments {
    /// Quanta per bit.
    pub fn quanta(&self) -> u32 {
        1 + self.prop + self.ph1 + self.ph2
    }
}

/// Segments for `bps`: smallest prescaler, sample point 80 % (nominal) or
/// 75 % (data), within the field widths of BTR (PROP 7 bits, PH1/PH2 6 bits,
/// BRP 8 bits) or BTR_FD (PROP 6 bits, PH1/PH2 5 bits).
pub fn segments(clock_hz: u32, bps: u32, data_phase: bool) -> Option<Segments> {
    let (max_prop, max_ph, permille) = if data_phase {
        (63, 31, 750)
    } else {
        (127, 63, 800)
    };
    if bps == 0 {
        return None;
    }
    for brp in 1u32..=255 {
        let per_bit = brp.checked_mul(bps)?;
        if per_bit > clock_hz {
            return None;
        }
        if clock_hz % per_bit != 0 {
            continue;
        }
        let tq = clock_hz / per_bit;
        if tq < 5 {
            return None;
        }
        let ph2 = (tq - tq * permille / 1000).max(1);
        let tseg1 = tq - 1 - ph2;
        let ph1 = ph2.min(max_ph).min(tseg1.saturating_sub(1));
        let prop = tseg1 - ph1;
        if ph1 == 0 || ph2 > max_ph || prop == 0 || prop > max_prop {
            continue;
        }
        return Some(Segments {
            brp,
            prop,
            ph1,
            ph2,
            sjw: ph2.min(31),
        });
    }
    None
}

/// The BTR / BTR_FD register value (fields hold the values themselves).
pub fn btr(s: &Segments) -> u32 {
    s.prop | s.ph1 << 7 | s.ph2 << 13 | s.brp << 19 | s.sjw << 27
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tx {
    Free,
    Pending(u32),
}

/// A CTU CAN FD core driven through `M`.
#[derive(Debug)]
pub struct CtuCanFd<M: Mmio> {
    mmio: M,
    fd: bool,
    tx_slots: usize,
    tx: [Tx; TX_BUFFERS],
    now_ns: u64,
}

impl<M: Mmio> CtuCanFd<M> {
    /// Resets and configures the core and enables it.
    ///
    /// # Errors
    /// [`InitError`].
    pub fn new(mmio: M, cfg: &Config) -> Result<Self, InitError> {
        if mmio.read32(DEVICE_ID) & 0xffff != CTUCANFD_ID {
            return Err(InitError::NotCtuCanFd);
        }
        if cfg.tx_slots == 0 || cfg.tx_slots > TX_BUFFERS {
            return Err(InitError::Slots);
        }
        let nominal = segments(cfg.clock_hz, cfg.nominal_bps, false).ok_or(InitError::BitTiming)?;
        let data = match cfg.data_bps {
            Some(bps) => Some(segments(cfg.clock_hz, bps, true).ok_or(InitError::BitTiming)?),
            None => None,
        };
        let mut d = Self {
            mmio,
            fd: data.is_some(),
            tx_slots: cfg.tx_slots,
            tx: [Tx::Free; TX_BUFFERS],
            now_ns: 0,
        };
        // Soft reset (self-clearing), then timing while disabled.
        d.mmio.write32(MODE, MODE_RST);
        d.mmio.write32(BTR, btr(&nominal));
        d.mmio.write32(BTR_FD, btr(&data.unwrap_or(nominal)));
        // Every TXT buffer empty; the FIFO and counters clean.
        let all = ((1u32 << TX_BUFFERS) - 1) << TXC_TXB_SHIFT;
        d.mmio.write32(TX_COMMAND, TXC_TXCE | all);
        d.mmio.write32(COMMAND, CMD_RRB | CMD_CDO);
        d.mmio.write32(INT_STAT, u32::MAX);
        d.mmio.write32(
            INT_ENA_SET,
            INT_RXI | INT_TXBHCI | INT_EWLI | INT_DOI | INT_FCSI,
        );
        let mut mode = MODE_ENA;
        if d.fd {
            mode |= MODE_FDE;
        }
        d.mmio.write32(MODE, mode);
        Ok(d)
    }

    /// Sets the time used to stamp completions and received frames.
    pub fn set_now(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
    }

    /// Acknowledges all interrupt causes (call after draining completions
    /// and received frames from the interrupt handler).
    pub fn ack_interrupts(&mut self) {
        let s = self.mmio.read32(INT_STAT);
        self.mmio.write32(INT_STAT, s);
    }

    fn txt_state(&self, slot: usize) -> u32 {
        (self.mmio.read32(TX_STATUS) >> (4 * slot)) & 0xf
    }

    fn txt_command(&mut self, cmd: u32, slot: usize) {
        self.mmio
            .write32(TX_COMMAND, cmd | 1 << (TXC_TXB_SHIFT as usize + slot));
    }

    /// Ranks occupied buffers: lowest key → priority 7, next → 6, …
    fn rerank(&mut self) {
        let mut prio = 0u32;
        for slot in 0..self.tx_slots {
            if let Tx::Pending(key) = self.tx[slot] {
                let better = (0..self.tx_slots)
                    .filter(|&o| match self.tx[o] {
                        Tx::Pending(k) => (k, o) < (key, slot),
                        Tx::Free => false,
                    })
                    .count();
                let p = 7u32.saturating_sub(u32::try_from(better).unwrap_or(7));
                prio |= p << (4 * slot);
            }
        }
        self.mmio.write32(TX_PRIORITY, prio);
    }
}

impl<M: Mmio> CanController for CtuCanFd<M> {
    fn slots(&self) -> usize {
        self.tx_slots
    }

    fn submit(&mut self, slot: usize, frame: &Frame, priority: u32) -> Result<(), ControllerError> {
        if slot >= self.tx_slots || self.tx[slot] != Tx::Free {
            return Err(ControllerError::BadSlot);
        }
        if frame.is_fd() && !self.fd {
            return Err(ControllerError::Unsupported);
        }
        let base = TXTB_BASE * (slot + 1);
        let (id, mut ffw) = match frame.id() {
            CanId::Standard(s) => (u32::from(s.raw()) << ID_BASE_SHIFT, 0),
            CanId::Extended(e) => (e.raw(), FFW_IDE),
        };
        ffw |= u32::from(frame.dlc()) & FFW_DLC_MASK;
        match frame.kind() {
            FrameKind::Classic { rtr: true, .. } => ffw |= FFW_RTR,
            FrameKind::Classic { .. } => {}
            FrameKind::Fd { brs, .. } => ffw |= FFW_FDF | if brs { FFW_BRS } else { 0 },
        }
        self.mmio.write32(base, ffw);
        self.mmio.write32(base + 4, id);
        // Timestamp 0: send at once (no time-triggered transmission).
        self.mmio.write32(base + 8, 0);
        self.mmio.write32(base + 12, 0);
        // Payload bytes are little-endian in each word (DATA_1 = bits 7..0).
        for (w, chunk) in frame.data().chunks(4).enumerate() {
            let mut b = [0u8; 4];
            b[..chunk.len()].copy_from_slice(chunk);
            self.mmio.write32(base + 16 + 4 * w, u32::from_le_bytes(b));
        }
        self.tx[slot] = Tx::Pending(priority);
        self.rerank();
        self.txt_command(TXC_TXCR, slot);
        Ok(())
    }

    fn abort(&mut self, slot: usize) -> bool {
        if slot >= self.tx_slots || !matches!(self.tx[slot], Tx::Pending(_)) {
            return false;
        }
        // Ready: aborted at once. Transmitting: the abort is remembered
        // (ABTP), so a frame that then fails is not retried and its slot
        // comes back through `completion` as not sent.
        if !matches!(self.txt_state(slot), txt::RDY | txt::TRAN) {
            return false;
        }
        self.txt_command(TXC_TXCA, slot);
        if self.txt_state(slot) == txt::ABT {
            self.txt_command(TXC_TXCE, slot);
            self.tx[slot] = Tx::Free;
            return true;
        }
        // It won arbitration meanwhile: `completion` reports the outcome.
        false
    }

    fn completion(&mut self) -> Option<SlotDone> {
        for slot in 0..self.tx_slots {
            if !matches!(self.tx[slot], Tx::Pending(_)) {
                continue;
            }
            let sent = match self.txt_state(slot) {
                txt::TOK => true,
                txt::ERR | txt::ABT => false,
                _ => continue,
            };
            self.txt_command(TXC_TXCE, slot);
            self.tx[slot] = Tx::Free;
            return Some(SlotDone {
                slot,
                sent,
                at_ns: self.now_ns,
            });
        }
        None
    }

    fn receive(&mut self) -> Option<Received> {
        if self.mmio.read32(RX_STATUS) & RX_RXE != 0 {
            return None;
        }
        let ffw = self.mmio.read32(RX_DATA);
        // RWCNT words follow: identifier, two timestamp words, payload.
        let rwcnt = usize::try_from((ffw >> FFW_RWCNT_SHIFT) & 0x1f).unwrap_or(0);
        let idw = self.mmio.read32(RX_DATA);
        let mut buf = [0u8; 64];
        for w in 1..rwcnt {
            let v = self.mmio.read32(RX_DATA);
            // Words 1 and 2 are the timestamp; payload from word 3.
            if w >= 3 {
                let at = 4 * (w - 3);
                if let Some(dst) = buf.get_mut(at..at + 4) {
                    dst.copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        let id = if ffw & FFW_IDE != 0 {
            CanId::extended(idw & 0x1fff_ffff).ok()?
        } else {
            CanId::standard(u16::try_from((idw >> ID_BASE_SHIFT) & 0x7ff).ok()?).ok()?
        };
        let dlc = u8::try_from(ffw & FFW_DLC_MASK).ok()?;
        let frame = if ffw & FFW_FDF != 0 {
            let len = usize::from(bulkhead_can_frame::fd_len_for_dlc(dlc));
            Frame::fd(id, &buf[..len], ffw & FFW_BRS != 0)
                .ok()?
                .with_esi(ffw & FFW_ESI != 0)
        } else if ffw & FFW_RTR != 0 {
            Frame::remote(id, dlc.min(8)).ok()?
        } else {
            Frame::classic_with_dlc(id, &buf[..usize::from(dlc.min(8))], dlc).ok()?
        };
        Some(Received {
            frame,
            at_ns: self.now_ns,
        })
    }

    fn status(&self) -> ControllerStatus {
        let fs = self.mmio.read32(EWL);
        let state = if fs & FS_BOF != 0 {
            BusState::BusOff
        } else if fs & FS_ERP != 0 {
            BusState::Passive
        } else {
            BusState::Active
        };
        let c = self.mmio.read32(REC_TEC);
        ControllerStatus {
            state,
            tec: u16::try_from((c >> 16) & 0x1ff).unwrap_or(u16::MAX),
            rec: u16::try_from(c & 0x1ff).unwrap_or(u16::MAX),
        }
    }

    fn recover(&mut self) -> Result<(), ControllerError> {
        if self.mmio.read32(EWL) & FS_BOF == 0 {
            return Err(ControllerError::NotBusOff);
        }
        self.mmio.write32(COMMAND, CMD_ERCRST);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_at_100_mhz() {
        let s = segments(PCI_CLOCK_HZ, 500_000, false).expect("500k");
        assert_eq!((s.brp, s.quanta()), (1, 200));
        assert_eq!((s.quanta() - s.ph2) * 1000 / s.quanta(), 800);
        let d = segments(PCI_CLOCK_HZ, 2_000_000, true).expect("2M");
        assert_eq!(PCI_CLOCK_HZ / (d.brp * d.quanta()), 2_000_000);
        assert!(d.prop <= 63 && d.ph1 <= 31 && d.ph2 <= 31);
        assert_eq!(btr(&s) & 0x7f, s.prop);
        assert_eq!((btr(&s) >> 19) & 0xff, 1);
        assert_eq!(segments(PCI_CLOCK_HZ, 0, false), None);
        assert_eq!(segments(PCI_CLOCK_HZ, 30_000_000, true), None);
    }
}
