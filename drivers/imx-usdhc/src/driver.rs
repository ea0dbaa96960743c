//! The device logic proper; reaches hardware only through [`Mmio`].

use crate::mmio::Mmio;
use crate::regs::*;

/// Bytes per block (SDHC/SDXC blocks are fixed at 512).
pub const BLOCK: usize = 512;
/// [`BLOCK`] as a register value.
const BLOCK_U32: u32 = 512;
/// Words per block; also the FIFO watermark the driver programs.
const BLOCK_WORDS: u32 = 128;
/// Polls of a status register before giving up on the controller.
const POLLS: u32 = 100_000;
/// ACMD41 attempts before the card is declared stuck busy (the SD spec
/// allows 1 s; the PD paces retries with its timer).
const ACMD41_TRIES: u32 = 1000;
/// R1 card-status bits that are errors (SD Physical Layer spec, Table 4-42).
const R1_ERRORS: u32 = 0xFDF9_8008;
/// ACMD41 voltage window: 3.2-3.4 V (OCR bits 20, 21).
const OCR_VDD: u32 = 0x0030_0000;
/// ACMD41/OCR: host supports / card is high capacity.
const OCR_HCS: u32 = 1 << 30;
/// OCR: card power-up done.
const OCR_READY: u32 = 1 << 31;
/// CMD8 argument: 2.7-3.6 V and check pattern 0xAA.
const CMD8_ARG: u32 = 0x1AA;
/// Identification clock.
pub const IDENT_HZ: u32 = 400_000;
/// Default-speed transfer clock.
pub const TRANSFER_HZ: u32 = 25_000_000;
/// High-speed transfer clock, used after a successful CMD6 switch.
pub const HIGH_SPEED_HZ: u32 = 50_000_000;
/// CMD6 argument: mode 1 (switch), function group 1 = 1 (high speed),
/// other groups unchanged (0xF).
const CMD6_SWITCH_HS: u32 = 0x80FF_FFF1;
/// Size of the CMD6 switch-status block (512 bits).
const SWITCH_STATUS_LEN: usize = 64;

/// Why an operation failed. After any of these the controller has been
/// reset back to idle lines; `CardRemoved`/`CardAbsent` also forget the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdError {
    /// No card in the slot (PRES_STATE.CINST clear).
    CardAbsent,
    /// The card went away during the operation.
    CardRemoved,
    /// `init` has not succeeded since the last reset or removal.
    NotInitialised,
    /// INT_STATUS.CTOE: no response to command `0`.
    CmdTimeout(u8),
    /// INT_STATUS.CCE: response CRC mismatch.
    CmdCrc(u8),
    /// INT_STATUS.CEBE: response end bit was 0.
    CmdEndBit(u8),
    /// INT_STATUS.CIE: response carried the wrong command index.
    CmdIndex(u8),
    /// INT_STATUS.DTOE: the card stopped sending/accepting data.
    DataTimeout,
    /// INT_STATUS.DCE: data block CRC mismatch (or the card's CRC status on write).
    DataCrc,
    /// INT_STATUS.DEBE: data end bit error.
    DataEndBit,
    /// INT_STATUS.AC12E: auto CMD12 failed.
    AutoCmd12,
    /// INT_STATUS.DMAE: ADMA error (ADMA_ERR_STATUS value).
    Adma(u32),
    /// The card answered with error bits in its R1 status.
    CardStatus(u32),
    /// Not an SD 2.0+ card (no or wrong CMD8 echo), or wrong voltage.
    Unsupported,
    /// ACMD41 never reported power-up done.
    CardBusy,
    /// A status bit never came; the controller is wedged.
    ControllerTimeout,
    /// A request past the card's end, empty, not a whole number of blocks,
    /// or over 65535 blocks.
    BadRequest,
}

/// What `init` learned about the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardInfo {
    /// Relative card address (CMD3).
    pub rca: u16,
    /// High capacity (SDHC/SDXC, block addressed).
    pub high_capacity: bool,
    /// Capacity in 512-byte blocks, from the CSD.
    pub blocks: u64,
    /// The CID register (bits 127:8 as the controller reports them).
    pub cid: [u32; 4],
}

/// A response kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resp {
    None,
    R1,
    R1b,
    R2,
    R3,
    R6,
    R7,
}

/// Data phase of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Data {
    None,
    /// `count` blocks of `size` bytes from the card.
    Read(u16, u32),
    Write(u16),
}

/// A clock setting: SD clock = base / (prescaler * divisor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockDiv {
    /// Prescaler, a power of two 1..=256 (SDCLKFS = prescaler / 2).
    pub prescaler: u32,
    /// Divisor 1..=16 (DVS = divisor - 1).
    pub divisor: u32,
}

impl ClockDiv {
    /// The fastest setting not above `target_hz` from `base_hz`, or `None`
    /// if even base/4096 is too fast.
    pub fn for_rate(base_hz: u32, target_hz: u32) -> Option<ClockDiv> {
        let mut best: Option<(u32, ClockDiv)> = None;
        for shift in 0..=8u32 {
            let prescaler = 1u32 << shift;
            for divisor in 1..=16u32 {
                let f = base_hz / (prescaler * divisor);
                if f <= target_hz && best.is_none_or(|(bf, _)| f > bf) {
                    best = Some((f, ClockDiv { prescaler, divisor }));
                }
            }
        }
        best.map(|(_, d)| d)
    }

    /// The SYS_CTRL SDCLKFS and DVS fields.
    pub fn sys_ctrl_bits(self) -> u32 {
        ((self.prescaler / 2) << SYS_SDCLKFS_SHIFT) | ((self.divisor - 1) << SYS_DVS_SHIFT)
    }

    /// The resulting SD clock.
    pub fn hz(self, base_hz: u32) -> u32 {
        base_hz / (self.prescaler * self.divisor)
    }
}

/// Capacity in 512-byte blocks from a CSD (bits 127:0; the controller's
/// R2 words hold bits 127:8, so `csd = rsp << 8`). CSD 1.0 (SDSC) and 2.0
/// (SDHC/SDXC) layouts per the SD Physical Layer spec, section 5.3.
pub fn csd_blocks(csd: u128) -> Option<u64> {
    // Every field read is at most 22 bits wide, so the conversion cannot fail.
    let bits = |hi: u32, lo: u32| {
        u64::try_from((csd >> lo) & ((1u128 << (hi - lo + 1)) - 1)).unwrap_or(u64::MAX)
    };
    match bits(127, 126) {
        0 => {
            let c_size = bits(73, 62);
            let mult = bits(49, 47);
            let read_bl_len = bits(83, 80);
            let bytes = (c_size + 1) << (mult + 2 + read_bl_len);
            Some(bytes / BLOCK as u64)
        }
        // C_SIZE counts 512 KiB units = 1024 blocks.
        1 => Some((bits(69, 48) + 1) * 1024),
        _ => None,
    }
}

/// One uSDHC controller and the card in its slot.
#[derive(Debug)]
pub struct Usdhc<M: Mmio> {
    regs: M,
    base_hz: u32,
    card: Option<CardInfo>,
}

impl<M: Mmio> Usdhc<M> {
    /// A driver over `regs`, whose clock input runs at `base_hz`.
    pub fn new(regs: M, base_hz: u32) -> Usdhc<M> {
        Usdhc {
            regs,
            base_hz,
            card: None,
        }
    }

    /// The register window (for tests and for handing it back).
    pub fn regs(&mut self) -> &mut M {
        &mut self.regs
    }

    /// The initialised card, if any.
    pub fn card(&self) -> Option<CardInfo> {
        self.card
    }

    /// Whether a card sits in the slot (PRES_STATE.CINST).
    pub fn card_present(&mut self) -> bool {
        self.regs.read32(PRES_STATE) & PRES_CINST != 0
    }

    fn wait_clear(&mut self, r: Reg, mask: u32) -> Result<(), SdError> {
        for _ in 0..POLLS {
            if self.regs.read32(r) & mask == 0 {
                return Ok(());
            }
        }
        Err(SdError::ControllerTimeout)
    }

    /// Software reset: `bits` is a mix of SYS_RSTA/RSTC/RSTD; they
    /// self-clear when done. Pending status is cleared too.
    pub fn reset(&mut self, bits: u32) -> Result<(), SdError> {
        let v = self.regs.read32(SYS_CTRL);
        self.regs.write32(SYS_CTRL, v | bits);
        let r = self.wait_clear(SYS_CTRL, bits);
        self.regs.write32(INT_STATUS, !0);
        r
    }

    /// Set the SD clock to the fastest rate not above `hz`.
    pub fn set_clock(&mut self, hz: u32) -> Result<u32, SdError> {
        let d = ClockDiv::for_rate(self.base_hz, hz).ok_or(SdError::Unsupported)?;
        // Gate the card clock while the dividers change so the card never
        // sees a glitch, ungate once PRES_STATE says the clock is stable.
        let vend = self.regs.read32(VEND_SPEC);
        self.regs.write32(VEND_SPEC, vend & !VEND_CKEN);
        let v = self.regs.read32(SYS_CTRL) & !SYS_CLOCK_MASK;
        // DTOCV 0xE: the longest data timeout the manual allows (0xF is reserved).
        self.regs
            .write32(SYS_CTRL, v | d.sys_ctrl_bits() | (0xE << SYS_DTOCV_SHIFT));
        let mut stable = false;
        for _ in 0..POLLS {
            if self.regs.read32(PRES_STATE) & PRES_SDSTB != 0 {
                stable = true;
                break;
            }
        }
        self.regs.write32(VEND_SPEC, vend | VEND_PEREN | VEND_CKEN);
        if stable {
            Ok(d.hz(self.base_hz))
        } else {
            Err(SdError::ControllerTimeout)
        }
    }

    /// Bring up the card: reset the controller, identify at 400 kHz,
    /// select it, 4-bit bus, then 50 MHz if the card switches to high speed
    /// (CMD6), else 25 MHz.
    pub fn init(&mut self) -> Result<CardInfo, SdError> {
        self.card = None;
        if !self.card_present() {
            return Err(SdError::CardAbsent);
        }
        self.reset(SYS_RSTA)?;
        self.regs.write32(PROT_CTRL, PROT_EMODE_LE);
        self.regs
            .write32(WTMK_LVL, (BLOCK_WORDS << 16) | BLOCK_WORDS);
        self.regs.write32(INT_STATUS_EN, INT_ALL);
        // Polled driver: the interrupt line stays quiet.
        self.regs.write32(INT_SIGNAL_EN, 0);
        self.set_clock(IDENT_HZ)?;
        let v = self.regs.read32(SYS_CTRL);
        self.regs.write32(SYS_CTRL, v | SYS_INITA);
        self.wait_clear(SYS_CTRL, SYS_INITA)?;

        self.cmd(0, 0, Resp::None, Data::None)?;
        let r7 = match self.cmd(8, CMD8_ARG, Resp::R7, Data::None) {
            Ok(r) => r[0],
            // SD 1.x cards do not answer CMD8.
            Err(SdError::CmdTimeout(_)) => return Err(SdError::Unsupported),
            Err(e) => return Err(e),
        };
        if r7 & 0xFFF != CMD8_ARG {
            return Err(SdError::Unsupported);
        }
        let mut ocr = 0;
        for _ in 0..ACMD41_TRIES {
            self.cmd(55, 0, Resp::R1, Data::None)?;
            ocr = self.cmd(41, OCR_HCS | OCR_VDD, Resp::R3, Data::None)?[0];
            if ocr & OCR_READY != 0 {
                break;
            }
        }
        if ocr & OCR_READY == 0 {
            return Err(SdError::CardBusy);
        }
        if ocr & OCR_VDD == 0 {
            return Err(SdError::Unsupported);
        }
        let high_capacity = ocr & OCR_HCS != 0;
        let cid = self.cmd(2, 0, Resp::R2, Data::None)?;
        let rca = (self.cmd(3, 0, Resp::R6, Data::None)?[0] >> 16) as u16;
        let arg = u32::from(rca) << 16;
        let r = self.cmd(9, arg, Resp::R2, Data::None)?;
        let csd = (u128::from(r[0])
            | u128::from(r[1]) << 32
            | u128::from(r[2]) << 64
            | u128::from(r[3]) << 96)
            << 8;
        let blocks = csd_blocks(csd).ok_or(SdError::Unsupported)?;
        self.cmd(7, arg, Resp::R1b, Data::None)?;
        self.cmd(55, arg, Resp::R1, Data::None)?;
        self.cmd(6, 2, Resp::R1, Data::None)?; // ACMD6: 4-bit bus
        let v = self.regs.read32(PROT_CTRL);
        self.regs.write32(
            PROT_CTRL,
            (v & !(3 << PROT_DTW_SHIFT)) | (1 << PROT_DTW_SHIFT),
        );
        if !high_capacity {
            // SDSC: block length is settable; SDHC/SDXC are fixed at 512.
            self.cmd(16, BLOCK_U32, Resp::R1, Data::None)?;
        }
        let hz = if self.switch_high_speed()? {
            HIGH_SPEED_HZ
        } else {
            TRANSFER_HZ
        };
        self.set_clock(hz)?;
        let info = CardInfo {
            rca,
            high_capacity,
            blocks,
            cid,
        };
        self.card = Some(info);
        Ok(info)
    }

    /// CMD6 (SWITCH_FUNC) to high speed; true when the card switched
    /// (switch-status bits 379:376, the group 1 function now selected, are 1).
    /// A card without the switch command class answers "illegal command"
    /// (no response): it stays at default speed.
    fn switch_high_speed(&mut self) -> Result<bool, SdError> {
        let mut st = [0u8; SWITCH_STATUS_LEN];
        match self.read_phase(6, CMD6_SWITCH_HS, 1, SWITCH_STATUS_LEN, &mut st) {
            Ok(()) => Ok(st[16] & 0xF == 1),
            Err(SdError::CmdTimeout(_) | SdError::CardStatus(_)) => Ok(false),
            Err(e) => {
                let _ = self.recover(Err(e));
                Err(e)
            }
        }
    }

    /// Turn error bits into an error, reset the lines involved, and on a
    /// missing card forget it.
    fn fail(&mut self, status: u32, idx: u8) -> SdError {
        let gone = status & INT_CRM != 0 || !self.card_present();
        let err = if gone {
            if self.card.is_some() {
                SdError::CardRemoved
            } else {
                SdError::CardAbsent
            }
        } else if status & INT_CTOE != 0 {
            SdError::CmdTimeout(idx)
        } else if status & INT_CCE != 0 {
            SdError::CmdCrc(idx)
        } else if status & INT_CEBE != 0 {
            SdError::CmdEndBit(idx)
        } else if status & INT_CIE != 0 {
            SdError::CmdIndex(idx)
        } else if status & INT_DTOE != 0 {
            SdError::DataTimeout
        } else if status & INT_DCE != 0 {
            SdError::DataCrc
        } else if status & INT_DEBE != 0 {
            SdError::DataEndBit
        } else if status & INT_AC12E != 0 {
            SdError::AutoCmd12
        } else if status & INT_DMAE != 0 {
            SdError::Adma(self.regs.read32(ADMA_ERR_STATUS))
        } else {
            SdError::ControllerTimeout
        };
        if gone {
            self.card = None;
        }
        // Leave both lines idle whatever happened; a failing reset is
        // reported by the next operation's inhibit wait.
        let _ = self.reset(SYS_RSTC | SYS_RSTD);
        err
    }

    /// Wait for any of `want` (or an error) in INT_STATUS; returns status.
    fn wait_int(&mut self, want: u32, idx: u8) -> Result<u32, SdError> {
        for _ in 0..POLLS {
            let s = self.regs.read32(INT_STATUS);
            if s & (INT_CMD_ERR | INT_DATA_ERR | INT_CRM) != 0 || !self.card_present() {
                return Err(self.fail(s, idx));
            }
            if s & want != 0 {
                return Ok(s);
            }
        }
        Err(self.fail(0, idx))
    }

    /// Issue one command and wait for its response.
    fn cmd(&mut self, idx: u8, arg: u32, resp: Resp, data: Data) -> Result<[u32; 4], SdError> {
        if !self.card_present() {
            return Err(self.fail(INT_CRM, idx));
        }
        let inhibit = if data == Data::None {
            PRES_CIHB
        } else {
            PRES_CIHB | PRES_CDIHB
        };
        if self.wait_clear(PRES_STATE, inhibit).is_err() {
            return Err(self.fail(0, idx));
        }
        self.regs.write32(INT_STATUS, !0);
        let (rsptyp, checks) = match resp {
            Resp::None => (RSPTYP_NONE, 0),
            Resp::R2 => (RSPTYP_136, XFR_CCCEN),
            Resp::R3 => (RSPTYP_48, 0),
            Resp::R1 | Resp::R6 | Resp::R7 => (RSPTYP_48, XFR_CCCEN | XFR_CICEN),
            Resp::R1b => (RSPTYP_48_BUSY, XFR_CCCEN | XFR_CICEN),
        };
        let mut xfr = (u32::from(idx) << XFR_CMDINX_SHIFT) | (rsptyp << XFR_RSPTYP_SHIFT) | checks;
        let mix = self.regs.read32(MIX_CTRL) & !MIX_XFER_MASK;
        let (mode, count) = match data {
            Data::None => (0, 0),
            Data::Read(n, _) => (MIX_DTDSEL, n),
            Data::Write(n) => (0, n),
        };
        let size = match data {
            Data::Read(_, size) => size,
            _ => BLOCK_U32,
        };
        if count > 0 {
            xfr |= XFR_DPSEL;
            let multi = if count > 1 { MIX_MSBSEL | MIX_BCEN } else { 0 };
            self.regs.write32(BLK_ATT, (u32::from(count) << 16) | size);
            // Read watermark = one block, so BREN means a whole block waits.
            self.regs
                .write32(WTMK_LVL, (BLOCK_WORDS << 16) | (size / 4).min(BLOCK_WORDS));
            self.regs.write32(MIX_CTRL, mix | mode | multi);
        } else {
            self.regs.write32(MIX_CTRL, mix);
        }
        self.regs.write32(CMD_ARG, arg);
        self.regs.write32(CMD_XFR_TYP, xfr);
        self.wait_int(INT_CC, idx)?;
        self.regs.write32(INT_STATUS, INT_CC);
        let r = [
            self.regs.read32(CMD_RSP0),
            self.regs.read32(CMD_RSP1),
            self.regs.read32(CMD_RSP2),
            self.regs.read32(CMD_RSP3),
        ];
        if resp == Resp::R1b && count == 0 {
            // Busy on DAT0 ends with transfer complete.
            self.wait_int(INT_TC, idx)?;
            self.regs.write32(INT_STATUS, INT_TC);
        }
        if matches!(resp, Resp::R1 | Resp::R1b) && r[0] & R1_ERRORS != 0 {
            let _ = self.reset(SYS_RSTC | SYS_RSTD);
            return Err(SdError::CardStatus(r[0]));
        }
        Ok(r)
    }

    fn check(&self, lba: u64, len: usize) -> Result<(CardInfo, u16, u32), SdError> {
        let card = self.card.ok_or(SdError::NotInitialised)?;
        let n = len / BLOCK;
        if len == 0 || len % BLOCK != 0 {
            return Err(SdError::BadRequest);
        }
        let n16 = u16::try_from(n).map_err(|_| SdError::BadRequest)?;
        let end = lba.checked_add(n as u64).ok_or(SdError::BadRequest)?;
        if end > card.blocks {
            return Err(SdError::BadRequest);
        }
        // SDSC cards take byte addresses.
        let addr = if card.high_capacity {
            lba
        } else {
            lba * BLOCK as u64
        };
        let addr = u32::try_from(addr).map_err(|_| SdError::BadRequest)?;
        Ok((card, n16, addr))
    }

    /// Wait for PRES_STATE `bit` (BREN/BWEN), failing on errors or removal.
    fn wait_buffer(&mut self, bit: u32, idx: u8) -> Result<(), SdError> {
        for _ in 0..POLLS {
            let s = self.regs.read32(INT_STATUS);
            let p = self.regs.read32(PRES_STATE);
            if s & (INT_CMD_ERR | INT_DATA_ERR | INT_CRM) != 0 || p & PRES_CINST == 0 {
                return Err(self.fail(s, idx));
            }
            if p & bit != 0 {
                return Ok(());
            }
        }
        Err(self.fail(0, idx))
    }

    /// Finish a data command: wait for transfer complete, CMD12 after a
    /// multi-block transfer.
    fn finish(&mut self, n: u16, idx: u8) -> Result<(), SdError> {
        self.wait_int(INT_TC, idx)?;
        self.regs.write32(INT_STATUS, INT_TC | INT_BRR | INT_BWR);
        if n > 1 {
            self.cmd(12, 0, Resp::R1b, Data::None)?;
        }
        Ok(())
    }

    /// Read `buf.len() / 512` blocks starting at `lba` (CMD17, or CMD18 + CMD12).
    pub fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), SdError> {
        let (_, n, addr) = self.check(lba, buf.len())?;
        let idx = if n > 1 { 18 } else { 17 };
        let r = self.read_phase(idx, addr, n, BLOCK, buf);
        self.recover(r)
    }

    fn read_phase(
        &mut self,
        idx: u8,
        addr: u32,
        n: u16,
        size: usize,
        buf: &mut [u8],
    ) -> Result<(), SdError> {
        let size32 = u32::try_from(size).map_err(|_| SdError::BadRequest)?;
        self.cmd(idx, addr, Resp::R1, Data::Read(n, size32))?;
        for block in buf.chunks_exact_mut(size) {
            self.wait_buffer(PRES_BREN, idx)?;
            for w in block.chunks_exact_mut(4) {
                w.copy_from_slice(&self.regs.read32(DATA_BUFF_ACC_PORT).to_le_bytes());
            }
        }
        self.finish(n, idx)
    }

    /// After a failed data command the card may still be sending or
    /// receiving: a best-effort CMD12 returns it to the transfer state (it
    /// times out harmlessly when the card is already there).
    fn recover(&mut self, r: Result<(), SdError>) -> Result<(), SdError> {
        match r {
            Err(e) if self.card.is_some() => {
                let _ = self.cmd(12, 0, Resp::R1b, Data::None);
                Err(e)
            }
            r => r,
        }
    }

    /// Write `buf.len() / 512` blocks starting at `lba` (CMD24, or CMD25 + CMD12).
    pub fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), SdError> {
        let (_, n, addr) = self.check(lba, buf.len())?;
        let idx = if n > 1 { 25 } else { 24 };
        let r = self.write_phase(idx, addr, n, buf);
        self.recover(r)
    }

    fn write_phase(&mut self, idx: u8, addr: u32, n: u16, buf: &[u8]) -> Result<(), SdError> {
        self.cmd(idx, addr, Resp::R1, Data::Write(n))?;
        for block in buf.chunks_exact(BLOCK) {
            self.wait_buffer(PRES_BWEN, idx)?;
            for w in block.chunks_exact(4) {
                let word = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                self.regs.write32(DATA_BUFF_ACC_PORT, word);
            }
        }
        self.finish(n, idx)
    }
}
