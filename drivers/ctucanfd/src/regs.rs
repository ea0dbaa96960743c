//! CTU CAN FD register offsets and fields (Linux `ctucanfd_kregs.h` and
//! `ctucanfd_kframe.h`; accessed as aligned 32-bit words, so 16-bit
//! registers are reached through the word that holds them).

/// DEVICE_ID (15..0, reads 0xCAFD) and VERSION (31..16).
pub const DEVICE_ID: usize = 0x00;
/// MODE (15..0) and SETTINGS (31..16).
pub const MODE: usize = 0x04;
/// STATUS.
pub const STATUS: usize = 0x08;
/// COMMAND.
pub const COMMAND: usize = 0x0c;
/// Interrupt status (write 1 to clear).
pub const INT_STAT: usize = 0x10;
/// Interrupt enable set.
pub const INT_ENA_SET: usize = 0x14;
/// Interrupt enable clear.
pub const INT_ENA_CLR: usize = 0x18;
/// Interrupt mask set.
pub const INT_MASK_SET: usize = 0x1c;
/// Interrupt mask clear.
pub const INT_MASK_CLR: usize = 0x20;
/// Nominal bit timing.
pub const BTR: usize = 0x24;
/// Data bit timing.
pub const BTR_FD: usize = 0x28;
/// EWL (7..0), ERP (15..8), FAULT_STATE (18..16).
pub const EWL: usize = 0x2c;
/// REC (8..0) and TEC (24..16).
pub const REC_TEC: usize = 0x30;
/// RX_STATUS (15..0) and RX_SETTINGS (31..16).
pub const RX_STATUS: usize = 0x68;
/// RX FIFO read port (each read pops one word).
pub const RX_DATA: usize = 0x6c;
/// TX buffer states, 4 bits per buffer.
pub const TX_STATUS: usize = 0x70;
/// TX_COMMAND (15..0) and TXTB_INFO (31..16).
pub const TX_COMMAND: usize = 0x74;
/// TX buffer priorities, 3 bits per buffer at 4-bit spacing.
pub const TX_PRIORITY: usize = 0x78;
/// TX buffer `n` (0-based) starts here: 0x100 × (n + 1).
pub const TXTB_BASE: usize = 0x100;

/// The value DEVICE_ID reads.
pub const CTUCANFD_ID: u32 = 0xcafd;

/// MODE: soft reset.
pub const MODE_RST: u32 = 1 << 0;
/// MODE: CAN FD enable.
pub const MODE_FDE: u32 = 1 << 4;
/// SETTINGS: core enable.
pub const MODE_ENA: u32 = 1 << 22;
/// SETTINGS: non-ISO FD (we keep ISO, so never set).
pub const MODE_NISOFD: u32 = 1 << 23;

/// COMMAND: release receive buffer.
pub const CMD_RRB: u32 = 1 << 2;
/// COMMAND: clear data overrun.
pub const CMD_CDO: u32 = 1 << 3;
/// COMMAND: error counters reset — leave bus-off after 128 × 11 recessive bits.
pub const CMD_ERCRST: u32 = 1 << 4;

/// INT: frame received.
pub const INT_RXI: u32 = 1 << 0;
/// INT: frame transmitted.
pub const INT_TXI: u32 = 1 << 1;
/// INT: error warning limit.
pub const INT_EWLI: u32 = 1 << 2;
/// INT: data overrun.
pub const INT_DOI: u32 = 1 << 3;
/// INT: fault confinement state changed.
pub const INT_FCSI: u32 = 1 << 4;
/// INT: TX buffer HW command (state change).
pub const INT_TXBHCI: u32 = 1 << 11;

/// FAULT_STATE: error active.
pub const FS_ERA: u32 = 1 << 16;
/// FAULT_STATE: error passive.
pub const FS_ERP: u32 = 1 << 17;
/// FAULT_STATE: bus-off.
pub const FS_BOF: u32 = 1 << 18;

/// RX_STATUS: FIFO empty.
pub const RX_RXE: u32 = 1 << 0;

/// TX_COMMAND: set empty.
pub const TXC_TXCE: u32 = 1 << 0;
/// TX_COMMAND: set ready.
pub const TXC_TXCR: u32 = 1 << 1;
/// TX_COMMAND: set abort.
pub const TXC_TXCA: u32 = 1 << 2;
/// TX_COMMAND: buffer select bits start here (TXB1 = bit 8).
pub const TXC_TXB_SHIFT: u32 = 8;

/// TX buffer state (Linux `enum ctucan_txtb_status`).
pub mod txt {
    /// Ready: waiting for the bus.
    pub const RDY: u32 = 0x1;
    /// Being transmitted.
    pub const TRAN: u32 = 0x2;
    /// Abort requested while transmitting.
    pub const ABTP: u32 = 0x3;
    /// Transmitted.
    pub const TOK: u32 = 0x4;
    /// Failed (retransmit limit or bus-off).
    pub const ERR: u32 = 0x6;
    /// Aborted.
    pub const ABT: u32 = 0x7;
    /// Empty.
    pub const ETY: u32 = 0x8;
}

/// Frame format word: DLC (3..0).
pub const FFW_DLC_MASK: u32 = 0xf;
/// Frame format word: remote frame.
pub const FFW_RTR: u32 = 1 << 5;
/// Frame format word: extended id.
pub const FFW_IDE: u32 = 1 << 6;
/// Frame format word: FD frame.
pub const FFW_FDF: u32 = 1 << 7;
/// Frame format word: bit rate switch.
pub const FFW_BRS: u32 = 1 << 9;
/// Frame format word: error state indicator.
pub const FFW_ESI: u32 = 1 << 10;
/// Frame format word: words following the first (RX only).
pub const FFW_RWCNT_SHIFT: u32 = 11;
/// Identifier word: base id position (28..18); the extension is 17..0.
pub const ID_BASE_SHIFT: u32 = 18;
