//! A register-level model of the i.MX8M Plus FlexCAN, written from the
//! reference manual's description of its behaviour: MCR reset/freeze/low-power
//! handshakes, configuration registers writable only in freeze mode, MB RAM
//! with codes, TX arbitration (lowest id, or lowest MB with LBUF), abort with
//! AEN, RX matching with individual masks (IRMQ), IFLAGs, ECR/ESR1 fault
//! confinement with BOFFREC, and a wire: transmitted frames appear on it and
//! frames can be injected.
//!
//! Writes the real controller would ignore or that would corrupt it (config
//! outside freeze, touching an MB in transmission) are counted in
//! `violations` so tests can assert the driver never does them.

// Register fields are masked before narrowing casts.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::cell::RefCell;
use std::rc::Rc;

use bulkhead_can_frame::{CanId, Frame};
use drv_flexcan::regs::*;
use drv_flexcan::Mmio;

const SIZE: usize = 0xc10;

pub struct Model {
    regs: Vec<u32>,
    pub violations: Vec<String>,
    /// Frames on the wire, with the MB that sent them.
    pub wire: Vec<(usize, Frame)>,
    in_tx: Option<usize>,
    abort_req: bool,
    pub tec: u16,
    pub rec: u16,
    recessive_seqs: u32,
    /// Make the freeze acknowledge never come (a dead clock).
    pub stuck: bool,
    /// INACTIVE codes written to MB 0 (the ERR005829 workaround's MB).
    pub mb0_inactive_writes: u32,
}

impl Model {
    pub fn new() -> Self {
        let mut regs = vec![0u32; SIZE / 4];
        // MB RAM and masks are not initialised by reset: garbage.
        for (i, w) in regs.iter_mut().enumerate().skip(MB_BASE / 4) {
            *w = 0xdead_beef ^ (i as u32);
        }
        // Out of reset: disabled, frozen.
        regs[MCR / 4] = MCR_MDIS | MCR_FRZ | MCR_HALT | MCR_NOT_RDY | MCR_LPM_ACK | MCR_SUPV | 0xf;
        Self {
            regs,
            violations: Vec::new(),
            wire: Vec::new(),
            in_tx: None,
            abort_req: false,
            tec: 0,
            rec: 0,
            recessive_seqs: 0,
            stuck: false,
            mb0_inactive_writes: 0,
        }
    }

    pub fn handle(self) -> (Rc<RefCell<Model>>, Handle) {
        let rc = Rc::new(RefCell::new(self));
        (rc.clone(), Handle(rc))
    }

    pub fn reg(&self, off: usize) -> u32 {
        self.regs[off / 4]
    }

    fn mcr(&self) -> u32 {
        self.reg(MCR)
    }

    pub fn frozen(&self) -> bool {
        self.mcr() & MCR_FRZ_ACK != 0
    }

    pub fn fd(&self) -> bool {
        self.mcr() & MCR_FDEN != 0
    }

    fn maxmb(&self) -> usize {
        (self.mcr() & MCR_MAXMB_MASK) as usize
    }

    pub fn mb_count(&self) -> usize {
        let cap = if self.fd() { 14 } else { 64 };
        (self.maxmb() + 1).min(cap)
    }

    pub fn mb_addr(&self, mb: usize) -> usize {
        if self.fd() {
            MB_BASE + (mb / 7) * 0x200 + (mb % 7) * 72
        } else {
            MB_BASE + mb * 16
        }
    }

    fn payload_words(&self) -> usize {
        if self.fd() {
            // FDCTRL.MBDSR0: 0 → 8 bytes .. 3 → 64 bytes.
            match (self.reg(FDCTRL) >> 16) & 3 {
                0 => 2,
                1 => 4,
                2 => 8,
                _ => 16,
            }
        } else {
            2
        }
    }

    pub fn code(&self, mb: usize) -> u32 {
        (self.reg(self.mb_addr(mb)) & CS_CODE_MASK) >> CS_CODE_SHIFT
    }

    fn set_code(&mut self, mb: usize, code: u32) {
        let a = self.mb_addr(mb) / 4;
        self.regs[a] = (self.regs[a] & !CS_CODE_MASK) | cs_code(code);
    }

    fn set_iflag(&mut self, mb: usize) {
        if mb < 32 {
            self.regs[IFLAG1 / 4] |= 1 << mb;
        } else {
            self.regs[IFLAG2 / 4] |= 1 << (mb - 32);
        }
    }

    fn timer(&self) -> u32 {
        self.reg(TIMER)
    }

    fn tick_timer(&mut self, by: u32) {
        self.regs[TIMER / 4] = (self.timer() + by) & 0xffff;
    }

    pub fn state(&self) -> u32 {
        (self.reg(ESR1) >> ESR1_FLTCONF_SHIFT) & 3
    }

    fn bus_off(&self) -> bool {
        self.state() >= 2
    }

    fn mb_in_range(&self, off: usize) -> Option<(usize, usize)> {
        let n = if self.fd() { 14 } else { 64 };
        (0..n).find_map(|mb| {
            let a = self.mb_addr(mb);
            let len = 8 + 4 * self.payload_words();
            (off >= a && off < a + len).then_some((mb, off - a))
        })
    }

    fn write(&mut self, off: usize, v: u32) {
        let frozen = self.frozen();
        match off {
            MCR => {
                let old = self.mcr();
                if v & MCR_SOFTRST != 0 {
                    if old & MCR_MDIS != 0 {
                        self.violations.push("SOFTRST while disabled".into());
                        return;
                    }
                    // Reset: registers to defaults, module frozen; MB RAM kept.
                    for r in [
                        CTRL1, ECR, ESR1, IMASK1, IMASK2, IFLAG1, IFLAG2, CTRL2, CBT, FDCTRL, FDCBT,
                    ] {
                        self.regs[r / 4] = 0;
                    }
                    let ack = if self.stuck { 0 } else { MCR_FRZ_ACK };
                    self.regs[MCR / 4] = MCR_FRZ | MCR_HALT | MCR_NOT_RDY | ack | MCR_SUPV | 0xf;
                    self.tec = 0;
                    self.rec = 0;
                    self.in_tx = None;
                    return;
                }
                let cfg =
                    MCR_MAXMB_MASK | MCR_SRX_DIS | MCR_IRMQ | MCR_AEN | MCR_FDEN | MCR_LPRIO_EN;
                let mut new = old;
                if (v ^ old) & cfg != 0 {
                    if frozen {
                        new = (new & !cfg) | (v & cfg);
                    } else {
                        self.violations
                            .push(format!("MCR config {v:#x} outside freeze"));
                    }
                }
                let ctl = MCR_MDIS | MCR_FRZ | MCR_HALT | MCR_SUPV | MCR_WRN_EN;
                new = (new & !ctl) | (v & ctl);
                // Handshakes complete at once (unless stuck).
                if new & MCR_MDIS != 0 {
                    new |= MCR_LPM_ACK | MCR_NOT_RDY;
                } else {
                    new &= !MCR_LPM_ACK;
                    let freeze = new & MCR_FRZ != 0 && new & MCR_HALT != 0;
                    if freeze {
                        if !self.stuck {
                            new |= MCR_FRZ_ACK | MCR_NOT_RDY;
                        }
                    } else {
                        new &= !(MCR_FRZ_ACK | MCR_NOT_RDY);
                    }
                }
                self.regs[MCR / 4] = new;
            }
            CTRL1 => {
                // Anytime-writable: interrupt masks and BOFFREC.
                let any = CTRL1_BOFF_MSK
                    | CTRL1_ERR_MSK
                    | CTRL1_TWRN_MSK
                    | CTRL1_RWRN_MSK
                    | CTRL1_BOFF_REC;
                let old = self.reg(CTRL1);
                if !frozen && (v ^ old) & !any != 0 {
                    self.violations.push(format!("CTRL1 {v:#x} outside freeze"));
                    self.regs[CTRL1 / 4] = (old & !any) | (v & any);
                } else {
                    self.regs[CTRL1 / 4] = v;
                }
            }
            CBT | FDCBT | FDCTRL | CTRL2 | RXMGMASK => {
                if frozen {
                    self.regs[off / 4] = v;
                } else {
                    self.violations
                        .push(format!("{off:#x} = {v:#x} outside freeze"));
                }
            }
            ECR => {
                if frozen {
                    self.tec = (v & 0xff) as u16;
                    self.rec = ((v >> 8) & 0xff) as u16;
                    self.update_ecr();
                } else {
                    self.violations.push("ECR outside freeze".into());
                }
            }
            IFLAG1 | IFLAG2 | ESR1 => self.regs[off / 4] &= !v,
            IMASK1 | IMASK2 => self.regs[off / 4] = v,
            TIMER => self.regs[off / 4] = v & 0xffff,
            o if (RXIMR..RXIMR + 4 * 64).contains(&o) => {
                if frozen {
                    self.regs[o / 4] = v;
                } else {
                    self.violations.push("RXIMR outside freeze".into());
                }
            }
            o => match self.mb_in_range(o) {
                Some((mb, 0)) => self.write_cs(mb, v),
                Some((mb, _)) => {
                    if self.in_tx == Some(mb) || (!frozen && self.code(mb) == CODE_TX_DATA) {
                        self.violations
                            .push(format!("MB {mb} body written while pending"));
                    }
                    self.regs[o / 4] = v;
                }
                None => self.regs[o / 4] = v,
            },
        }
    }

    fn write_cs(&mut self, mb: usize, v: u32) {
        let old = self.code(mb);
        let new = (v & CS_CODE_MASK) >> CS_CODE_SHIFT;
        if mb == 0 && new == CODE_TX_INACTIVE {
            self.mb0_inactive_writes += 1;
        }
        let a = self.mb_addr(mb) / 4;
        if old == CODE_TX_DATA && !self.frozen() {
            if new == CODE_TX_ABORT && self.mcr() & MCR_AEN != 0 {
                if self.in_tx == Some(mb) {
                    // On the bus: the abort takes effect after the frame.
                    self.abort_req = true;
                } else {
                    self.set_code(mb, CODE_TX_ABORT);
                    self.set_iflag(mb);
                }
                return;
            }
            self.violations.push(format!(
                "MB {mb} CS rewritten while pending (code {new:#x})"
            ));
        }
        if self.in_tx == Some(mb) {
            self.violations
                .push(format!("MB {mb} CS written while on the bus"));
        }
        self.regs[a] = v;
    }

    fn update_ecr(&mut self) {
        self.regs[ECR / 4] = u32::from(self.tec.min(255)) | u32::from(self.rec.min(255)) << 8;
        let state = if self.tec >= 256 {
            2
        } else if self.tec >= 128 || self.rec >= 128 {
            1
        } else {
            0
        };
        let old = self.state();
        let mut esr1 = self.reg(ESR1) & !(3 << ESR1_FLTCONF_SHIFT);
        esr1 |= state << ESR1_FLTCONF_SHIFT;
        if state != old {
            esr1 |= ESR1_ERRINT;
            if state == 2 {
                esr1 |= ESR1_BOFFINT;
                self.recessive_seqs = 0;
            }
        }
        self.regs[ESR1 / 4] = esr1;
    }

    /// Sets the error counters as bus errors would (ISO fault confinement).
    pub fn set_counters(&mut self, tec: u16, rec: u16) {
        self.tec = tec;
        self.rec = rec;
        self.update_ecr();
    }

    /// `n` sequences of 11 recessive bits on an idle bus. A bus-off
    /// controller recovers after 128 of them, unless BOFFREC disables it.
    pub fn idle(&mut self, n: u32) {
        if !self.bus_off() || self.reg(CTRL1) & CTRL1_BOFF_REC != 0 {
            return;
        }
        self.recessive_seqs += n;
        if self.recessive_seqs >= 128 {
            self.tec = 0;
            self.rec = 0;
            self.update_ecr();
            self.regs[ESR1 / 4] |= ESR1_BOFFDONEINT;
        }
    }

    fn arb_key(&self, mb: usize) -> u64 {
        let a = self.mb_addr(mb);
        let cs = self.reg(a);
        let idw = self.reg(a + 4);
        let rtr = u64::from(cs & CS_RTR != 0);
        if cs & CS_IDE != 0 {
            let id = u64::from(idw & EXT_ID_MASK);
            (id >> 18) << 21 | 1 << 20 | 1 << 19 | (id & 0x3ffff) << 1 | rtr
        } else {
            u64::from((idw >> STD_ID_SHIFT) & 0x7ff) << 21 | rtr << 20
        }
    }

    /// The MB the controller offers next, if any.
    pub fn next_tx(&self) -> Option<usize> {
        if self.frozen() || self.mcr() & MCR_MDIS != 0 || self.bus_off() {
            return None;
        }
        let pending = (0..self.mb_count()).filter(|&mb| self.code(mb) == CODE_TX_DATA);
        if self.reg(CTRL1) & CTRL1_LBUF != 0 {
            pending.min()
        } else {
            pending.min_by_key(|&mb| (self.arb_key(mb), mb))
        }
    }

    /// Starts sending the winning MB (it is now on the bus).
    pub fn start_tx(&mut self) -> Option<usize> {
        assert!(self.in_tx.is_none());
        self.in_tx = self.next_tx();
        self.abort_req = false;
        self.in_tx
    }

    fn frame_of(&self, mb: usize) -> Frame {
        let a = self.mb_addr(mb);
        let cs = self.reg(a);
        let idw = self.reg(a + 4);
        let id = if cs & CS_IDE != 0 {
            CanId::extended(idw & EXT_ID_MASK).unwrap()
        } else {
            CanId::standard(((idw >> STD_ID_SHIFT) & 0x7ff) as u16).unwrap()
        };
        let dlc = ((cs >> CS_DLC_SHIFT) & 0xf) as u8;
        let mut data = Vec::new();
        for w in 0..self.payload_words() {
            data.extend_from_slice(&self.reg(a + 8 + 4 * w).to_be_bytes());
        }
        if cs & CS_EDL != 0 {
            assert!(self.fd(), "EDL set with FDEN clear");
            let len = bulkhead_can_frame::fd_len_for_dlc(dlc) as usize;
            assert!(len <= data.len(), "payload exceeds MBDSR");
            Frame::fd(id, &data[..len], cs & CS_BRS != 0).unwrap()
        } else if cs & CS_RTR != 0 {
            Frame::remote(id, dlc).unwrap()
        } else {
            let len = (dlc as usize).min(8);
            Frame::classic_with_dlc(id, &data[..len], dlc).unwrap()
        }
    }

    /// Ends the frame on the bus: acknowledged (on the wire, MB INACTIVE,
    /// flag set) or an error (TEC += 8 and retransmission, unless an abort
    /// was requested meanwhile: then ABORT and flag).
    pub fn finish_tx(&mut self, ack: bool) {
        let mb = self.in_tx.take().expect("no frame on the bus");
        if ack {
            let f = self.frame_of(mb);
            self.wire.push((mb, f));
            self.set_code(mb, CODE_TX_INACTIVE);
            self.set_iflag(mb);
            self.tec = self.tec.saturating_sub(1);
            self.update_ecr();
            if self.mcr() & MCR_SRX_DIS == 0 {
                self.receive(&f);
            }
        } else {
            self.tec += 8;
            self.update_ecr();
            if self.abort_req {
                self.set_code(mb, CODE_TX_ABORT);
                self.set_iflag(mb);
            }
        }
        self.abort_req = false;
    }

    /// Sends everything pending, in the controller's order.
    pub fn drain(&mut self) {
        while self.start_tx().is_some() {
            self.finish_tx(true);
        }
    }

    /// A frame from another node: matched against the armed RX MBs (lowest
    /// free matching MB first; if all matching MBs are full, the last one
    /// is overrun). Returns the MB that took it.
    pub fn inject(&mut self, f: &Frame) -> Option<usize> {
        if self.frozen() || self.bus_off() {
            return None;
        }
        self.receive(f)
    }

    fn matches(&self, mb: usize, f: &Frame) -> bool {
        let a = self.mb_addr(mb);
        let cs = self.reg(a);
        let idw = self.reg(a + 4);
        let ext = f.id().is_extended();
        // IDE is always compared.
        if (cs & CS_IDE != 0) != ext {
            return false;
        }
        let fid = if ext {
            f.id().raw()
        } else {
            f.id().raw() << STD_ID_SHIFT
        };
        let mask = if self.mcr() & MCR_IRMQ != 0 {
            self.reg(RXIMR + 4 * mb)
        } else {
            self.reg(RXMGMASK)
        };
        let bits = if ext {
            EXT_ID_MASK
        } else {
            0x7ff << STD_ID_SHIFT
        };
        (fid ^ idw) & mask & bits == 0
    }

    fn receive(&mut self, f: &Frame) -> Option<usize> {
        if f.is_fd() && !self.fd() {
            return None;
        }
        let rx: Vec<usize> = (0..self.mb_count())
            .filter(|&mb| {
                matches!(
                    self.code(mb),
                    CODE_RX_EMPTY | CODE_RX_FULL | CODE_RX_OVERRUN
                )
            })
            .filter(|&mb| self.matches(mb, f))
            .collect();
        let (mb, code) = match rx.iter().find(|&&mb| self.code(mb) == CODE_RX_EMPTY) {
            Some(&mb) => (mb, CODE_RX_FULL),
            None => (*rx.last()?, CODE_RX_OVERRUN),
        };
        let a = self.mb_addr(mb);
        let words = self.payload_words();
        if f.len() > 4 * words {
            return None;
        }
        let (idw, mut cs) = match f.id() {
            CanId::Standard(s) => (u32::from(s.raw()) << STD_ID_SHIFT, 0),
            CanId::Extended(e) => (e.raw(), CS_IDE | CS_SRR),
        };
        cs |= cs_code(code) | u32::from(f.dlc()) << CS_DLC_SHIFT | self.timer();
        match f.kind() {
            bulkhead_can_frame::FrameKind::Classic { rtr, .. } => {
                if rtr {
                    cs |= CS_RTR;
                }
            }
            bulkhead_can_frame::FrameKind::Fd { brs, esi } => {
                cs |= CS_EDL;
                if brs {
                    cs |= CS_BRS;
                }
                if esi {
                    cs |= CS_ESI;
                }
            }
        }
        self.regs[a / 4] = cs;
        self.regs[a / 4 + 1] = idw;
        for w in 0..words {
            let mut b = [0u8; 4];
            for (i, x) in b.iter_mut().enumerate() {
                *x = f.data().get(4 * w + i).copied().unwrap_or(0);
            }
            self.regs[a / 4 + 2 + w] = u32::from_be_bytes(b);
        }
        self.set_iflag(mb);
        self.tick_timer(100);
        Some(mb)
    }
}

/// The driver's view of the model.
pub struct Handle(pub Rc<RefCell<Model>>);

impl Mmio for Handle {
    fn read32(&self, offset: usize) -> u32 {
        assert!(offset % 4 == 0 && offset < SIZE, "bad read {offset:#x}");
        self.0.borrow().reg(offset)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        assert!(offset % 4 == 0 && offset < SIZE, "bad write {offset:#x}");
        self.0.borrow_mut().write(offset, value);
    }
}
