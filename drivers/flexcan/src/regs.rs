//! FlexCAN register offsets and bit fields (i.MX8M Plus Reference Manual,
//! FlexCAN chapter; names as in Linux `flexcan.h`).

/// Module configuration.
pub const MCR: usize = 0x00;
/// Control 1.
pub const CTRL1: usize = 0x04;
/// Free-running timer.
pub const TIMER: usize = 0x08;
/// RX MB global mask (unused with IRMQ).
pub const RXMGMASK: usize = 0x10;
/// Error counters: TXERRCNT 7..0, RXERRCNT 15..8.
pub const ECR: usize = 0x1c;
/// Error and status 1.
pub const ESR1: usize = 0x20;
/// Interrupt masks, MBs 63..32.
pub const IMASK2: usize = 0x24;
/// Interrupt masks, MBs 31..0.
pub const IMASK1: usize = 0x28;
/// Interrupt flags (write 1 to clear), MBs 63..32.
pub const IFLAG2: usize = 0x2c;
/// Interrupt flags (write 1 to clear), MBs 31..0.
pub const IFLAG1: usize = 0x30;
/// Control 2.
pub const CTRL2: usize = 0x34;
/// Error and status 2.
pub const ESR2: usize = 0x38;
/// CAN bit timing (nominal phase).
pub const CBT: usize = 0x50;
/// Message buffer RAM.
pub const MB_BASE: usize = 0x80;
/// RX individual masks, one word per MB.
pub const RXIMR: usize = 0x880;
/// FD control.
pub const FDCTRL: usize = 0xc00;
/// FD bit timing (data phase).
pub const FDCBT: usize = 0xc04;

/// Module disable.
pub const MCR_MDIS: u32 = 1 << 31;
/// Freeze enable.
pub const MCR_FRZ: u32 = 1 << 30;
/// Halt (enter freeze when FRZ is set).
pub const MCR_HALT: u32 = 1 << 28;
/// Not ready (frozen, disabled or stopped).
pub const MCR_NOT_RDY: u32 = 1 << 27;
/// Soft reset (self-clearing).
pub const MCR_SOFTRST: u32 = 1 << 25;
/// Freeze acknowledge.
pub const MCR_FRZ_ACK: u32 = 1 << 24;
/// Supervisor-only register access.
pub const MCR_SUPV: u32 = 1 << 23;
/// Warning interrupts enable.
pub const MCR_WRN_EN: u32 = 1 << 21;
/// Low-power acknowledge.
pub const MCR_LPM_ACK: u32 = 1 << 20;
/// Self-reception disable.
pub const MCR_SRX_DIS: u32 = 1 << 17;
/// Individual RX masking.
pub const MCR_IRMQ: u32 = 1 << 16;
/// Local priority enable.
pub const MCR_LPRIO_EN: u32 = 1 << 13;
/// Abort enable.
pub const MCR_AEN: u32 = 1 << 12;
/// CAN FD enable.
pub const MCR_FDEN: u32 = 1 << 11;
/// Last MB in use (7 bits).
pub const MCR_MAXMB_MASK: u32 = 0x7f;

/// Bus-off interrupt mask.
pub const CTRL1_BOFF_MSK: u32 = 1 << 15;
/// Error interrupt mask.
pub const CTRL1_ERR_MSK: u32 = 1 << 14;
/// TX warning interrupt mask.
pub const CTRL1_TWRN_MSK: u32 = 1 << 11;
/// RX warning interrupt mask.
pub const CTRL1_RWRN_MSK: u32 = 1 << 10;
/// Bus-off recovery disabled (1) / automatic (0).
pub const CTRL1_BOFF_REC: u32 = 1 << 6;
/// Lowest buffer transmitted first (1) / lowest id first (0).
pub const CTRL1_LBUF: u32 = 1 << 4;

/// Bus-off-done interrupt mask (bit 30; checked against NXP's FlexCAN
/// register headers, `CAN_CTRL2_BOFFDONEMSK_SHIFT` = 30, mask 0x4000_0000).
pub const CTRL2_BOFFDONEMSK: u32 = 1 << 30;
/// Error counters writable in freeze mode.
pub const CTRL2_ECRWRE: u32 = 1 << 29;
/// Remote request storing (store remote frames rather than answer them).
pub const CTRL2_RRS: u32 = 1 << 17;
/// ISO CAN FD (stuff-bit count and CRC per ISO 11898-1:2015).
pub const CTRL2_ISOCANFDEN: u32 = 1 << 12;

/// Fault-confinement state field position (2 bits: 00 active, 01 passive,
/// 1x bus-off).
pub const ESR1_FLTCONF_SHIFT: u32 = 4;
/// Bus-off-done interrupt (bit 19; NXP's `CAN_ESR1_BOFFDONEINT_SHIFT` = 19,
/// mask 0x8_0000: set when a bus-off recovery has completed).
pub const ESR1_BOFFDONEINT: u32 = 1 << 19;
/// TX warning interrupt.
pub const ESR1_TWRNINT: u32 = 1 << 17;
/// RX warning interrupt.
pub const ESR1_RWRNINT: u32 = 1 << 16;
/// Bus-off interrupt.
pub const ESR1_BOFFINT: u32 = 1 << 2;
/// Error interrupt.
pub const ESR1_ERRINT: u32 = 1 << 1;
/// The write-1-to-clear interrupt bits of ESR1.
pub const ESR1_W1C: u32 =
    ESR1_BOFFDONEINT | ESR1_TWRNINT | ESR1_RWRNINT | ESR1_BOFFINT | ESR1_ERRINT;

/// FD data bit-rate switching enable.
pub const FDCTRL_FDRATE: u32 = 1 << 31;
/// MBDSR0 = MBDSR1 = 0b11: 64-byte payloads in RAM blocks 0 and 1.
pub const FDCTRL_MBDSR_64: u32 = 3 << 16 | 3 << 19;
/// Transceiver delay compensation enable.
pub const FDCTRL_TDCEN: u32 = 1 << 15;
/// TDC offset field position (5 bits).
pub const FDCTRL_TDCOFF_SHIFT: u32 = 8;

/// Extended data length (FD frame).
pub const CS_EDL: u32 = 1 << 31;
/// Bit rate switch.
pub const CS_BRS: u32 = 1 << 30;
/// Error state indicator.
pub const CS_ESI: u32 = 1 << 29;
/// MB code field.
pub const CS_CODE_MASK: u32 = 0xf << CS_CODE_SHIFT;
/// MB code field position.
pub const CS_CODE_SHIFT: u32 = 24;
/// Substitute remote request.
pub const CS_SRR: u32 = 1 << 22;
/// Extended identifier.
pub const CS_IDE: u32 = 1 << 21;
/// Remote frame.
pub const CS_RTR: u32 = 1 << 20;
/// DLC field position (4 bits).
pub const CS_DLC_SHIFT: u32 = 16;
/// Standard id position in the ID word.
pub const STD_ID_SHIFT: u32 = 18;
/// Extended id bits of the ID word.
pub const EXT_ID_MASK: u32 = 0x1fff_ffff;

/// RX: MB inactive.
pub const CODE_RX_INACTIVE: u32 = 0x0;
/// RX: armed, empty.
pub const CODE_RX_EMPTY: u32 = 0x4;
/// RX: holds a frame.
pub const CODE_RX_FULL: u32 = 0x2;
/// RX: a frame overwrote an unread one.
pub const CODE_RX_OVERRUN: u32 = 0x6;
/// TX: inactive (also: transmitted).
pub const CODE_TX_INACTIVE: u32 = 0x8;
/// TX: aborted.
pub const CODE_TX_ABORT: u32 = 0x9;
/// TX: transmit once.
pub const CODE_TX_DATA: u32 = 0xc;

/// `code` placed in the CS word's code field.
pub const fn cs_code(code: u32) -> u32 {
    (code & 0xf) << CS_CODE_SHIFT
}
