//! i.MX uSDHC register map and bit fields.
//!
//! Facts from: U-Boot `include/fsl_esdhc_imx.h` and `drivers/mmc/fsl_esdhc_imx.c`
//! (offsets, SYS_CTRL/PRES_STATE/XFERTYP/VENDORSPEC bits), Linux
//! `drivers/mmc/host/sdhci.h` (the INT_STATUS bit layout the uSDHC shares
//! with the SD Host Controller spec) and `drivers/mmc/host/sdhci-esdhc-imx.c`
//! (MIX_CTRL holding the transfer-mode bits on uSDHC, WTMK_LVL), Arm TF-A
//! `drivers/imx/usdhc/imx_usdhc.h`, all transcribing the i.MX8M reference
//! manual's "uSDHC Memory Map".
#![forbid(unsafe_code)]

/// Register window size the driver uses (VEND_SPEC at 0xC0 is the last).
pub const BLOCK_SIZE: usize = 0x100;

pub use drv_mmio::Reg;

/// A register of this device's window (see [`BLOCK_SIZE`]).
const fn reg(off: usize) -> Reg {
    Reg::at(off, BLOCK_SIZE)
}

/// Block attributes: BLKSIZE 12:0, BLKCNT 31:16.
pub const BLK_ATT: Reg = reg(0x04);
/// Command argument.
pub const CMD_ARG: Reg = reg(0x08);
/// Command transfer type; writing it issues the command.
pub const CMD_XFR_TYP: Reg = reg(0x0C);
/// Response bits 31:0 (R2: response bits 39:8).
pub const CMD_RSP0: Reg = reg(0x10);
/// Response word 1.
pub const CMD_RSP1: Reg = reg(0x14);
/// Response word 2.
pub const CMD_RSP2: Reg = reg(0x18);
/// Response word 3.
pub const CMD_RSP3: Reg = reg(0x1C);
/// PIO data port (one 32-bit word per access).
pub const DATA_BUFF_ACC_PORT: Reg = reg(0x20);
/// Present state.
pub const PRES_STATE: Reg = reg(0x24);
/// Protocol control (bus width, endianness).
pub const PROT_CTRL: Reg = reg(0x28);
/// System control (clock dividers, data timeout, resets, INITA).
pub const SYS_CTRL: Reg = reg(0x2C);
/// Interrupt status (write 1 to clear).
pub const INT_STATUS: Reg = reg(0x30);
/// Which events are latched into INT_STATUS.
pub const INT_STATUS_EN: Reg = reg(0x34);
/// Which INT_STATUS bits raise the interrupt line.
pub const INT_SIGNAL_EN: Reg = reg(0x38);
/// Read/write FIFO watermarks, in words.
pub const WTMK_LVL: Reg = reg(0x44);
/// Mixer control: transfer-mode bits (DMAEN, BCEN, AC12EN, DTDSEL, MSBSEL).
pub const MIX_CTRL: Reg = reg(0x48);
/// ADMA error status.
pub const ADMA_ERR_STATUS: Reg = reg(0x54);
/// Vendor-specific control (SD clock gate).
pub const VEND_SPEC: Reg = reg(0xC0);

/// VEND_SPEC: SD clock enable; gated off while SYS_CTRL's dividers change
/// (U-Boot `fsl_esdhc_imx.c` `set_sysctl` on uSDHC).
pub const VEND_CKEN: u32 = 1 << 14;
/// VEND_SPEC: peripheral clock enable.
pub const VEND_PEREN: u32 = 1 << 13;

/// CMD_XFR_TYP: command index shift (bits 29:24).
pub const XFR_CMDINX_SHIFT: u32 = 24;
/// CMD_XFR_TYP: data present.
pub const XFR_DPSEL: u32 = 1 << 21;
/// CMD_XFR_TYP: check the response's command index.
pub const XFR_CICEN: u32 = 1 << 20;
/// CMD_XFR_TYP: check the response's CRC.
pub const XFR_CCCEN: u32 = 1 << 19;
/// CMD_XFR_TYP: response type shift (bits 17:16).
pub const XFR_RSPTYP_SHIFT: u32 = 16;
/// RSPTYP: no response.
pub const RSPTYP_NONE: u32 = 0;
/// RSPTYP: 136-bit response.
pub const RSPTYP_136: u32 = 1;
/// RSPTYP: 48-bit response.
pub const RSPTYP_48: u32 = 2;
/// RSPTYP: 48-bit response, then busy on DAT0.
pub const RSPTYP_48_BUSY: u32 = 3;

/// MIX_CTRL: block count enable.
pub const MIX_BCEN: u32 = 1 << 1;
/// MIX_CTRL: auto CMD12 enable (unused: the driver sends CMD12 itself).
pub const MIX_AC12EN: u32 = 1 << 2;
/// MIX_CTRL: data direction, 1 = card to host.
pub const MIX_DTDSEL: u32 = 1 << 4;
/// MIX_CTRL: multi-block.
pub const MIX_MSBSEL: u32 = 1 << 5;
/// MIX_CTRL: the low transfer-mode bits the driver owns.
pub const MIX_XFER_MASK: u32 = 0x7F;

/// PRES_STATE: command inhibit (CMD line busy).
pub const PRES_CIHB: u32 = 1 << 0;
/// PRES_STATE: command inhibit (DAT lines busy).
pub const PRES_CDIHB: u32 = 1 << 1;
/// PRES_STATE: SD clock stable.
pub const PRES_SDSTB: u32 = 1 << 3;
/// PRES_STATE: buffer write enable (room for WR_WML words).
pub const PRES_BWEN: u32 = 1 << 10;
/// PRES_STATE: buffer read enable (RD_WML words available).
pub const PRES_BREN: u32 = 1 << 11;
/// PRES_STATE: card inserted.
pub const PRES_CINST: u32 = 1 << 16;

/// PROT_CTRL: data transfer width shift (bits 2:1; 0 = 1-bit, 1 = 4-bit).
pub const PROT_DTW_SHIFT: u32 = 1;
/// PROT_CTRL: endian mode field (bits 5:4); 0b10 = little endian.
pub const PROT_EMODE_LE: u32 = 2 << 4;

/// SYS_CTRL: divisor DVS (bits 7:4, divide by DVS+1).
pub const SYS_DVS_SHIFT: u32 = 4;
/// SYS_CTRL: prescaler SDCLKFS (bits 15:8; 0 = /1, 0x01 = /2 ... 0x80 = /256).
pub const SYS_SDCLKFS_SHIFT: u32 = 8;
/// SYS_CTRL: data timeout counter value (bits 19:16).
pub const SYS_DTOCV_SHIFT: u32 = 16;
/// SYS_CTRL: the clock and timeout fields.
pub const SYS_CLOCK_MASK: u32 = 0x000F_FFF0;
/// SYS_CTRL: software reset for all.
pub const SYS_RSTA: u32 = 1 << 24;
/// SYS_CTRL: software reset for the CMD line.
pub const SYS_RSTC: u32 = 1 << 25;
/// SYS_CTRL: software reset for the DAT lines.
pub const SYS_RSTD: u32 = 1 << 26;
/// SYS_CTRL: send 80 initialisation clocks.
pub const SYS_INITA: u32 = 1 << 27;

/// INT_STATUS: command complete.
pub const INT_CC: u32 = 1 << 0;
/// INT_STATUS: transfer complete.
pub const INT_TC: u32 = 1 << 1;
/// INT_STATUS: buffer write ready.
pub const INT_BWR: u32 = 1 << 4;
/// INT_STATUS: buffer read ready.
pub const INT_BRR: u32 = 1 << 5;
/// INT_STATUS: card insertion.
pub const INT_CINS: u32 = 1 << 6;
/// INT_STATUS: card removal.
pub const INT_CRM: u32 = 1 << 7;
/// INT_STATUS: command timeout error.
pub const INT_CTOE: u32 = 1 << 16;
/// INT_STATUS: command CRC error.
pub const INT_CCE: u32 = 1 << 17;
/// INT_STATUS: command end bit error.
pub const INT_CEBE: u32 = 1 << 18;
/// INT_STATUS: command index error.
pub const INT_CIE: u32 = 1 << 19;
/// INT_STATUS: data timeout error.
pub const INT_DTOE: u32 = 1 << 20;
/// INT_STATUS: data CRC error.
pub const INT_DCE: u32 = 1 << 21;
/// INT_STATUS: data end bit error.
pub const INT_DEBE: u32 = 1 << 22;
/// INT_STATUS: auto CMD12 error.
pub const INT_AC12E: u32 = 1 << 24;
/// INT_STATUS: DMA (ADMA) error.
pub const INT_DMAE: u32 = 1 << 28;
/// INT_STATUS: the command-phase error bits.
pub const INT_CMD_ERR: u32 = INT_CTOE | INT_CCE | INT_CEBE | INT_CIE;
/// INT_STATUS: the data-phase error bits.
pub const INT_DATA_ERR: u32 = INT_DTOE | INT_DCE | INT_DEBE | INT_AC12E | INT_DMAE;
/// Everything the driver latches (INT_STATUS_EN).
pub const INT_ALL: u32 =
    INT_CC | INT_TC | INT_BWR | INT_BRR | INT_CINS | INT_CRM | INT_CMD_ERR | INT_DATA_ERR;
