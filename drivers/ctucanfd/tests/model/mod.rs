//! A register-level model of one CTU CAN FD core, written from the
//! register map (Linux `ctucanfd_kregs.h`) and the core's documented
//! behaviour: TXT buffer state machine driven by TX_COMMAND, selection of
//! the ready buffer with the highest TX_PRIORITY (ties: lowest index), an RX
//! FIFO read through RX_DATA, fault confinement with REC/TEC, and bus-off
//! left only after COMMAND.ERCRST plus 128 × 11 recessive bits. Frames sent
//! appear on `wire`; frames can be injected.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use bulkhead_can_frame::{CanId, Frame, FrameKind};
use drv_ctucanfd::regs::*;
use drv_ctucanfd::Mmio;

pub struct Model {
    pub mode: u32,
    pub btr: u32,
    pub btr_fd: u32,
    pub prio: u32,
    pub int_ena: u32,
    pub int_stat: u32,
    txt: [u32; 4],
    txtb: [[u32; 20]; 4],
    rx: VecDeque<u32>,
    pub wire: Vec<(usize, Frame)>,
    in_tx: Option<usize>,
    pub tec: u16,
    pub rec: u16,
    ercrst: bool,
    seqs: u32,
    pub violations: Vec<String>,
}

impl Model {
    pub fn new() -> Self {
        Self {
            mode: 0,
            btr: 0,
            btr_fd: 0,
            prio: 0,
            int_ena: 0,
            int_stat: 0,
            // Out of reset the buffers are empty; scribble their memory.
            txt: [txt::ETY; 4],
            txtb: [[0xdead_beef; 20]; 4],
            rx: VecDeque::new(),
            wire: Vec::new(),
            in_tx: None,
            tec: 0,
            rec: 0,
            ercrst: false,
            seqs: 0,
            violations: Vec::new(),
        }
    }

    pub fn handle(self) -> (Rc<RefCell<Model>>, Handle) {
        let rc = Rc::new(RefCell::new(self));
        (rc.clone(), Handle(rc))
    }

    pub fn enabled(&self) -> bool {
        self.mode & MODE_ENA != 0
    }

    pub fn bus_off(&self) -> bool {
        self.tec >= 256
    }

    pub fn state(&self, slot: usize) -> u32 {
        self.txt[slot]
    }

    fn fault_bits(&self) -> u32 {
        if self.bus_off() {
            FS_BOF
        } else if self.tec >= 128 || self.rec >= 128 {
            FS_ERP
        } else {
            FS_ERA
        }
    }

    fn read(&mut self, off: usize) -> u32 {
        match off {
            DEVICE_ID => 0x0002_0000 | CTUCANFD_ID,
            MODE => self.mode,
            INT_STAT => self.int_stat,
            BTR => self.btr,
            BTR_FD => self.btr_fd,
            EWL => 96 | 128 << 8 | self.fault_bits(),
            REC_TEC => u32::from(self.rec.min(511)) | u32::from(self.tec.min(511)) << 16,
            RX_STATUS => {
                let frames = self.rx_frames();
                (if self.rx.is_empty() { RX_RXE } else { 0 }) | (frames as u32) << 4
            }
            RX_DATA => self.rx.pop_front().unwrap_or(0),
            TX_STATUS => (0..4).map(|i| self.txt[i] << (4 * i)).sum(),
            TX_COMMAND => 4 << 16, // TXTB_INFO: 4 buffers
            TX_PRIORITY => self.prio,
            o if (TXTB_BASE..TXTB_BASE * 5).contains(&o) => {
                let b = o / TXTB_BASE - 1;
                self.txtb[b][(o % TXTB_BASE) / 4 % 20]
            }
            _ => 0,
        }
    }

    fn rx_frames(&self) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.rx.len() {
            n += 1;
            i += 1 + ((self.rx[i] >> FFW_RWCNT_SHIFT) & 0x1f) as usize;
        }
        n
    }

    fn write(&mut self, off: usize, v: u32) {
        match off {
            MODE => {
                if v & MODE_RST != 0 {
                    let mut fresh = Model::new();
                    std::mem::swap(&mut fresh.wire, &mut self.wire);
                    std::mem::swap(&mut fresh.violations, &mut self.violations);
                    fresh.txtb = self.txtb; // buffer RAM survives reset
                    *self = fresh;
                    return;
                }
                self.mode = v;
            }
            BTR | BTR_FD => {
                if self.enabled() {
                    self.violations
                        .push(format!("bit timing {off:#x} written while enabled"));
                }
                if off == BTR {
                    self.btr = v;
                } else {
                    self.btr_fd = v;
                }
            }
            COMMAND => {
                if v & CMD_ERCRST != 0 && self.bus_off() {
                    self.ercrst = true;
                    self.seqs = 0;
                }
                if v & CMD_RRB != 0 {
                    self.rx.clear();
                }
            }
            INT_STAT => self.int_stat &= !v,
            INT_ENA_SET => self.int_ena |= v,
            INT_ENA_CLR => self.int_ena &= !v,
            TX_PRIORITY => self.prio = v & 0x7777,
            TX_COMMAND => {
                for b in 0..4 {
                    if v & (1 << (TXC_TXB_SHIFT as usize + b)) == 0 {
                        continue;
                    }
                    let s = self.txt[b];
                    let finished = matches!(s, txt::TOK | txt::ERR | txt::ABT | txt::ETY);
                    if v & TXC_TXCR != 0 && finished {
                        self.txt[b] = txt::RDY;
                    } else if v & TXC_TXCA != 0 && s == txt::RDY {
                        self.txt[b] = txt::ABT;
                    } else if v & TXC_TXCA != 0 && s == txt::TRAN {
                        self.txt[b] = txt::ABTP;
                    } else if v & TXC_TXCE != 0 && finished {
                        self.txt[b] = txt::ETY;
                    } else if v & (TXC_TXCR | TXC_TXCE) != 0 {
                        self.violations
                            .push(format!("TX_COMMAND {v:#x} on buffer {b} in state {s:#x}"));
                    }
                }
            }
            o if (TXTB_BASE..TXTB_BASE * 5).contains(&o) => {
                let b = o / TXTB_BASE - 1;
                if matches!(self.txt[b], txt::RDY | txt::TRAN | txt::ABTP) {
                    self.violations
                        .push(format!("buffer {b} written while owned by the core"));
                }
                self.txtb[b][(o % TXTB_BASE) / 4 % 20] = v;
            }
            _ => {}
        }
    }

    pub fn next_tx(&self) -> Option<usize> {
        if !self.enabled() || self.bus_off() {
            return None;
        }
        (0..4)
            .filter(|&b| self.txt[b] == txt::RDY)
            .min_by_key(|&b| (std::cmp::Reverse((self.prio >> (4 * b)) & 7), b))
    }

    pub fn start_tx(&mut self) -> Option<usize> {
        assert!(self.in_tx.is_none());
        let b = self.next_tx()?;
        self.txt[b] = txt::TRAN;
        self.in_tx = Some(b);
        Some(b)
    }

    fn frame_of(&self, b: usize) -> Frame {
        let w = &self.txtb[b];
        let ffw = w[0];
        let id = if ffw & FFW_IDE != 0 {
            CanId::extended(w[1] & 0x1fff_ffff).unwrap()
        } else {
            CanId::standard(((w[1] >> ID_BASE_SHIFT) & 0x7ff) as u16).unwrap()
        };
        let dlc = (ffw & FFW_DLC_MASK) as u8;
        let bytes: Vec<u8> = w[4..].iter().flat_map(|x| x.to_le_bytes()).collect();
        if ffw & FFW_FDF != 0 {
            assert!(self.mode & MODE_FDE != 0, "FD frame with FDE clear");
            let len = bulkhead_can_frame::fd_len_for_dlc(dlc) as usize;
            Frame::fd(id, &bytes[..len], ffw & FFW_BRS != 0).unwrap()
        } else if ffw & FFW_RTR != 0 {
            Frame::remote(id, dlc).unwrap()
        } else {
            Frame::classic_with_dlc(id, &bytes[..(dlc as usize).min(8)], dlc).unwrap()
        }
    }

    pub fn finish_tx(&mut self, ack: bool) {
        let b = self.in_tx.take().expect("nothing on the bus");
        if ack {
            let f = self.frame_of(b);
            self.wire.push((b, f));
            self.txt[b] = txt::TOK;
            self.tec = self.tec.saturating_sub(1);
            self.int_stat |= INT_TXI | INT_TXBHCI;
        } else {
            self.tec += 8;
            self.txt[b] = if self.txt[b] == txt::ABTP {
                txt::ABT
            } else if self.bus_off() {
                txt::ERR
            } else {
                txt::RDY
            };
            self.int_stat |= INT_TXBHCI;
        }
    }

    pub fn drain(&mut self) {
        while self.start_tx().is_some() {
            self.finish_tx(true);
        }
    }

    pub fn inject(&mut self, f: &Frame) -> bool {
        if !self.enabled() || self.bus_off() || (f.is_fd() && self.mode & MODE_FDE == 0) {
            return false;
        }
        let (id, mut ffw) = match f.id() {
            CanId::Standard(s) => (u32::from(s.raw()) << ID_BASE_SHIFT, 0),
            CanId::Extended(e) => (e.raw(), FFW_IDE),
        };
        ffw |= u32::from(f.dlc());
        match f.kind() {
            FrameKind::Classic { rtr, .. } => {
                if rtr {
                    ffw |= FFW_RTR;
                }
            }
            FrameKind::Fd { brs, esi } => {
                ffw |= FFW_FDF;
                if brs {
                    ffw |= FFW_BRS;
                }
                if esi {
                    ffw |= FFW_ESI;
                }
            }
        }
        let words = f.len().div_ceil(4);
        ffw |= ((3 + words) as u32) << FFW_RWCNT_SHIFT;
        self.rx.push_back(ffw);
        self.rx.push_back(id);
        self.rx.push_back(0x1234); // timestamp low
        self.rx.push_back(0); // timestamp high
        for c in f.data().chunks(4) {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            self.rx.push_back(u32::from_le_bytes(b));
        }
        self.int_stat |= INT_RXI;
        true
    }

    pub fn set_counters(&mut self, tec: u16, rec: u16) {
        self.tec = tec;
        self.rec = rec;
        self.int_stat |= INT_FCSI;
    }

    /// `n` × 11 recessive bits on an idle bus.
    pub fn idle(&mut self, n: u32) {
        if self.bus_off() && self.ercrst {
            self.seqs += n;
            if self.seqs >= 128 {
                self.tec = 0;
                self.rec = 0;
                self.ercrst = false;
                self.int_stat |= INT_FCSI;
            }
        }
    }
}

pub struct Handle(pub Rc<RefCell<Model>>);

impl Mmio for Handle {
    fn read32(&self, offset: usize) -> u32 {
        assert!(offset % 4 == 0 && offset < 0x4000, "bad read {offset:#x}");
        self.0.borrow_mut().read(offset)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        assert!(offset % 4 == 0 && offset < 0x4000, "bad write {offset:#x}");
        self.0.borrow_mut().write(offset, value);
    }
}
