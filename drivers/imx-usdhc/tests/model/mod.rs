//! A register-level model of the uSDHC with an SD card state machine
//! behind it (a `Vec<u8>` backing store), plus fault injection.
//!
//! Commands complete synchronously when CMD_XFR_TYP is written; read data
//! is staged in a FIFO the port drains, write data is committed one block
//! at a time. INT_STATUS shows only bits enabled in INT_STATUS_EN, as on
//! the hardware.
#![allow(dead_code)]
// An access to a register the model does not know is a test failure.
#![allow(clippy::panic)]
// Test-only model: casts split u128 responses into words and index a
// backing store the tests size; truncation there is intended or impossible.
#![allow(clippy::cast_possible_truncation)]

use drv_imx_usdhc::regs::*;
use drv_imx_usdhc::Mmio;
use std::collections::VecDeque;

/// SD card states (SD Physical Layer spec, figure 4-1/4-13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardState {
    Idle,
    Ready,
    Ident,
    Stby,
    Tran,
    Data,
    Rcv,
}

/// An SDHC card.
pub struct SdCard {
    pub state: CardState,
    pub data: Vec<u8>,
    pub rca: u16,
    pub app_cmd: bool,
    /// ACMD41 calls answered busy before ready.
    pub busy_polls: u32,
    pub bus4: bool,
    /// Answer CMD8 (an SD 2.0 card does).
    pub v2: bool,
    /// Supports high speed (CMD6 function group 1 = 1).
    pub hs_capable: bool,
    /// Switched to high speed.
    pub hs: bool,
    /// The switch status of the last CMD6, sent as its data block.
    pub switch_status: Option<Vec<u8>>,
}

impl SdCard {
    pub fn new(bytes: usize) -> SdCard {
        SdCard {
            state: CardState::Idle,
            data: (0..bytes).map(|i| (i * 7 + i / 512) as u8).collect(),
            rca: 0x4567,
            app_cmd: false,
            busy_polls: 3,
            bus4: false,
            v2: true,
            hs_capable: true,
            hs: false,
            switch_status: None,
        }
    }
    fn status(&self) -> u32 {
        let st = match self.state {
            CardState::Idle => 0,
            CardState::Ready => 1,
            CardState::Ident => 2,
            CardState::Stby => 3,
            CardState::Tran => 4,
            CardState::Data => 5,
            CardState::Rcv => 6,
        };
        (st << 9) | (1 << 8) | if self.app_cmd { 1 << 5 } else { 0 }
    }
    /// The CSD 2.0 for this card, bits 127:0.
    fn csd(&self) -> u128 {
        let c_size = (self.data.len() as u128 / (512 * 1024)) - 1;
        (1u128 << 126) | (9u128 << 80) | (c_size << 48) | 1
    }
    /// Execute a command: `None` means no response (timeout).
    fn command(&mut self, idx: u8, arg: u32) -> Option<[u32; 4]> {
        let app = std::mem::take(&mut self.app_cmd);
        let r1 = |s: &SdCard| Some([s.status(), 0, 0, 0]);
        match (idx, app, self.state) {
            (0, _, _) => {
                self.state = CardState::Idle;
                Some([0; 4])
            }
            (8, _, CardState::Idle) if self.v2 => Some([arg & 0xFFF, 0, 0, 0]),
            (55, _, _) => {
                self.app_cmd = true;
                r1(self)
            }
            (41, true, CardState::Idle) => {
                if self.busy_polls > 0 {
                    self.busy_polls -= 1;
                    return Some([0x00FF_8000, 0, 0, 0]);
                }
                self.state = CardState::Ready;
                Some([0x80FF_8000 | (arg & (1 << 30)), 0, 0, 0])
            }
            (2, _, CardState::Ready) => {
                self.state = CardState::Ident;
                Some([0x1111_1111, 0x2222_2222, 0x3333_3333, 0x0044_4444])
            }
            (3, _, CardState::Ident) => {
                self.state = CardState::Stby;
                Some([u32::from(self.rca) << 16 | 0x0500, 0, 0, 0])
            }
            (9, _, CardState::Stby) if arg >> 16 == u32::from(self.rca) => {
                let r = self.csd() >> 8;
                Some([
                    r as u32,
                    (r >> 32) as u32,
                    (r >> 64) as u32,
                    (r >> 96) as u32,
                ])
            }
            (7, _, CardState::Stby) if arg >> 16 == u32::from(self.rca) => {
                let r = r1(self);
                self.state = CardState::Tran;
                r
            }
            (6, true, CardState::Tran) => {
                self.bus4 = arg & 3 == 2;
                r1(self)
            }
            (6, false, CardState::Tran) => {
                let mut st = vec![0u8; 64];
                let want = arg & 0xF;
                // Group 1 function selected: the requested one, or 0xF
                // (cannot switch) when unsupported.
                st[16] = if want == 1 && !self.hs_capable {
                    0xF
                } else {
                    want as u8
                };
                if arg & (1 << 31) != 0 && want == 1 && self.hs_capable {
                    self.hs = true;
                }
                self.switch_status = Some(st);
                self.state = CardState::Data;
                r1(self)
            }
            (17 | 18, _, CardState::Tran) | (24 | 25, _, CardState::Tran) => {
                let r = r1(self);
                // OUT_OF_RANGE when the start block is past the end.
                if u64::from(arg) * 512 >= self.data.len() as u64 {
                    return Some([r.expect("r1")[0] | 1 << 31, 0, 0, 0]);
                }
                self.state = if idx < 24 {
                    CardState::Data
                } else {
                    CardState::Rcv
                };
                r
            }
            (12, _, CardState::Data | CardState::Rcv) => {
                let r = r1(self);
                self.state = CardState::Tran;
                r
            }
            // Anything else: an illegal command is not answered.
            _ => None,
        }
    }
}

/// A data transfer in progress.
#[derive(Default)]
struct Xfer {
    read: bool,
    block: u64,
    left: u32,
    fifo: VecDeque<u32>,
    wbuf: Vec<u8>,
    active: bool,
}

/// What the model is told to break.
#[derive(Default, Clone, Copy)]
pub struct Faults {
    /// No response to this command index (CTOE).
    pub cmd_timeout: Option<u8>,
    /// CRC error on this command's response (CCE).
    pub cmd_crc: Option<u8>,
    /// Data CRC error (DCE) on the block with this index in the transfer.
    pub data_crc_block: Option<u32>,
    /// Data timeout (DTOE) on the block with this index in the transfer.
    pub data_timeout_block: Option<u32>,
    /// Pull the card out after this many data-port words.
    pub remove_after_words: Option<u32>,
    /// Latch these raw INT_STATUS bits instead of completing this command.
    pub cmd_int: Option<(u8, u32)>,
    /// Hold PRES_STATE.CIHB set (a wedged CMD line).
    pub stuck_cmd_line: bool,
}

pub struct UsdhcModel {
    pub card: Option<SdCard>,
    pub faults: Faults,
    pub sys_ctrl: u32,
    pub prot_ctrl: u32,
    pub mix_ctrl: u32,
    pub blk_att: u32,
    pub arg: u32,
    pub rsp: [u32; 4],
    raw_int: u32,
    pub int_en: u32,
    pub sig_en: u32,
    pub wtmk: u32,
    xfer: Xfer,
    port_words: u32,
    /// Commands issued, in order.
    pub cmds: Vec<(u8, u32)>,
    pub vend_spec: u32,
    /// SYS_CTRL clock fields changed while VEND_SPEC.CKEN was set.
    pub glitched: bool,
}

impl UsdhcModel {
    pub fn new(card: Option<SdCard>) -> UsdhcModel {
        UsdhcModel {
            card,
            faults: Faults::default(),
            sys_ctrl: 0,
            prot_ctrl: 0,
            mix_ctrl: 0,
            blk_att: 0,
            arg: 0,
            rsp: [0; 4],
            raw_int: 0,
            int_en: 0,
            sig_en: 0,
            wtmk: 0,
            xfer: Xfer::default(),
            port_words: 0,
            cmds: Vec::new(),
            // Reset value from U-Boot's VENDORSPEC_INIT.
            vend_spec: 0x2000_7809,
            glitched: false,
        }
    }

    pub fn remove_card(&mut self) {
        if self.card.take().is_some() {
            self.raw_int |= INT_CRM;
        }
        self.xfer.fifo.clear();
    }

    pub fn data_busy(&self) -> bool {
        self.xfer.active
    }

    fn stage_read_block(&mut self) {
        let x = &mut self.xfer;
        if x.left == 0 {
            return;
        }
        let nth = self.blk_att >> 16;
        let index = nth.saturating_sub(x.left);
        if self.faults.data_crc_block == Some(index) {
            self.raw_int |= INT_DCE;
            return;
        }
        if self.faults.data_timeout_block == Some(index) {
            self.raw_int |= INT_DTOE;
            return;
        }
        let Some(card) = self.card.as_mut() else {
            return;
        };
        if let Some(st) = card.switch_status.take() {
            for w in st.chunks_exact(4) {
                x.fifo
                    .push_back(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
            }
            x.left -= 1;
            return;
        }
        let off = (x.block * 512) as usize;
        for w in card.data[off..off + 512].chunks_exact(4) {
            x.fifo
                .push_back(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
        x.block += 1;
        x.left -= 1;
    }

    fn end_transfer(&mut self) {
        self.xfer.active = false;
        self.raw_int |= INT_TC;
        if let Some(c) = self.card.as_mut() {
            // Single-block transfers return to tran on their own.
            if self.mix_ctrl & MIX_MSBSEL == 0 {
                c.state = CardState::Tran;
            }
        }
    }

    fn issue(&mut self, xfr: u32) {
        let idx = ((xfr >> XFR_CMDINX_SHIFT) & 0x3F) as u8;
        self.cmds.push((idx, self.arg));
        let Some(card) = self.card.as_mut() else {
            self.raw_int |= INT_CTOE;
            return;
        };
        if let Some((i, bits)) = self.faults.cmd_int {
            if i == idx {
                self.raw_int |= bits;
                return;
            }
        }
        if self.faults.cmd_timeout == Some(idx) {
            self.raw_int |= INT_CTOE;
            return;
        }
        let Some(r) = card.command(idx, self.arg) else {
            self.raw_int |= INT_CTOE;
            return;
        };
        if self.faults.cmd_crc == Some(idx) && xfr & XFR_CCCEN != 0 {
            self.raw_int |= INT_CCE;
            return;
        }
        self.rsp = r;
        self.raw_int |= INT_CC;
        let rsptyp = (xfr >> XFR_RSPTYP_SHIFT) & 3;
        if xfr & XFR_DPSEL == 0 {
            if rsptyp == RSPTYP_48_BUSY {
                self.raw_int |= INT_TC;
            }
            return;
        }
        if r[0] & (1 << 31) != 0 {
            // The card refused (OUT_OF_RANGE): no data follows.
            return;
        }
        let count = if self.mix_ctrl & MIX_MSBSEL != 0 {
            self.blk_att >> 16
        } else {
            1
        };
        let block = u64::from(self.arg);
        self.xfer = Xfer {
            read: self.mix_ctrl & MIX_DTDSEL != 0,
            block,
            left: count,
            fifo: VecDeque::new(),
            wbuf: Vec::new(),
            active: true,
        };
        if self.xfer.read {
            self.stage_read_block();
        }
    }

    fn port_access(&mut self) -> bool {
        self.port_words += 1;
        if self.faults.remove_after_words == Some(self.port_words) {
            self.remove_card();
            return false;
        }
        true
    }
}

impl Mmio for UsdhcModel {
    fn read32(&mut self, r: Reg) -> u32 {
        match r {
            CMD_RSP0 => self.rsp[0],
            CMD_RSP1 => self.rsp[1],
            CMD_RSP2 => self.rsp[2],
            CMD_RSP3 => self.rsp[3],
            DATA_BUFF_ACC_PORT => {
                if !self.xfer.active || !self.xfer.read || !self.port_access() {
                    return 0;
                }
                let w = self.xfer.fifo.pop_front().unwrap_or(0);
                if self.xfer.fifo.is_empty() {
                    if self.xfer.left == 0 {
                        self.end_transfer();
                    } else {
                        self.stage_read_block();
                    }
                }
                w
            }
            PRES_STATE => {
                let mut v = PRES_SDSTB;
                if self.faults.stuck_cmd_line {
                    v |= PRES_CIHB;
                }
                if self.card.is_some() {
                    v |= PRES_CINST;
                }
                if self.xfer.active {
                    v |= PRES_CDIHB;
                    if self.xfer.read && self.xfer.fifo.len() >= (self.wtmk & 0xFF) as usize {
                        v |= PRES_BREN;
                    }
                    if !self.xfer.read && self.card.is_some() {
                        v |= PRES_BWEN;
                    }
                }
                v
            }
            PROT_CTRL => self.prot_ctrl,
            SYS_CTRL => self.sys_ctrl,
            INT_STATUS => self.raw_int & self.int_en,
            INT_STATUS_EN => self.int_en,
            INT_SIGNAL_EN => self.sig_en,
            WTMK_LVL => self.wtmk,
            MIX_CTRL => self.mix_ctrl,
            BLK_ATT => self.blk_att,
            ADMA_ERR_STATUS => 0,
            VEND_SPEC => self.vend_spec,
            other => panic!("read of unmodelled register {:#x}", other.offset()),
        }
    }

    fn write32(&mut self, r: Reg, v: u32) {
        match r {
            BLK_ATT => self.blk_att = v,
            CMD_ARG => self.arg = v,
            CMD_XFR_TYP => self.issue(v),
            DATA_BUFF_ACC_PORT => {
                if !self.xfer.active || self.xfer.read || !self.port_access() {
                    return;
                }
                self.xfer.wbuf.extend_from_slice(&v.to_le_bytes());
                if self.xfer.wbuf.len() == 512 {
                    let nth = self.blk_att >> 16;
                    let index = if self.mix_ctrl & MIX_MSBSEL != 0 {
                        nth - self.xfer.left
                    } else {
                        0
                    };
                    let buf = std::mem::take(&mut self.xfer.wbuf);
                    if self.faults.data_crc_block == Some(index) {
                        // The card's CRC status token says the block was bad.
                        self.raw_int |= INT_DCE;
                        return;
                    }
                    if let Some(card) = self.card.as_mut() {
                        let off = (self.xfer.block * 512) as usize;
                        card.data[off..off + 512].copy_from_slice(&buf);
                    }
                    self.xfer.block += 1;
                    self.xfer.left -= 1;
                    if self.xfer.left == 0 {
                        self.end_transfer();
                    }
                }
            }
            PROT_CTRL => self.prot_ctrl = v,
            SYS_CTRL => {
                // Resets and INITA complete at once and read back 0.
                if v & SYS_RSTA != 0 {
                    let card = self.card.take();
                    let (faults, cmds) = (self.faults, std::mem::take(&mut self.cmds));
                    *self = UsdhcModel::new(card);
                    (self.faults, self.cmds) = (faults, cmds);
                    return;
                }
                if v & (SYS_RSTC | SYS_RSTD) != 0 {
                    self.raw_int &= !(INT_CMD_ERR | INT_CC);
                }
                if v & SYS_RSTD != 0 {
                    self.xfer = Xfer::default();
                    self.raw_int &= !(INT_DATA_ERR | INT_TC);
                }
                if (v ^ self.sys_ctrl) & 0xFFF0 != 0 && self.vend_spec & VEND_CKEN != 0 {
                    self.glitched = true;
                }
                self.sys_ctrl = v & !(SYS_RSTA | SYS_RSTC | SYS_RSTD | SYS_INITA);
            }
            INT_STATUS => self.raw_int &= !v,
            INT_STATUS_EN => self.int_en = v,
            INT_SIGNAL_EN => self.sig_en = v,
            WTMK_LVL => self.wtmk = v,
            MIX_CTRL => self.mix_ctrl = v,
            VEND_SPEC => self.vend_spec = v,
            other => panic!("write of unmodelled register {:#x}", other.offset()),
        }
    }
}
