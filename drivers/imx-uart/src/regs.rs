//! i.MX UART register map and bit fields.
//!
//! Facts from: Linux `drivers/tty/serial/imx.c` (register offsets, UCRn/
//! UFCR/USRn/UTS bits, URXD error bits) and FreeBSD
//! `sys/dev/uart/uart_dev_imx.c` (the RFDIV encoding table {6,5,4,3,2,1,7}),
//! both describing the i.MX reference manual's "UART Memory Map".
#![forbid(unsafe_code)]

/// Size of the register window in bytes (UTS at 0xB4 is the last one used).
pub const BLOCK_SIZE: usize = 0xB8;
/// Depth of each of the TX and RX FIFOs, in characters.
pub const FIFO_DEPTH: usize = 32;

pub use drv_mmio::Reg;

/// A register of this device's window (see [`BLOCK_SIZE`]).
const fn reg(off: usize) -> Reg {
    Reg::at(off, BLOCK_SIZE)
}

/// Receiver register (read pops the RX FIFO).
pub const URXD: Reg = reg(0x00);
/// Transmitter register (write pushes the TX FIFO).
pub const UTXD: Reg = reg(0x40);
/// Control register 1.
pub const UCR1: Reg = reg(0x80);
/// Control register 2.
pub const UCR2: Reg = reg(0x84);
/// Control register 3.
pub const UCR3: Reg = reg(0x88);
/// Control register 4.
pub const UCR4: Reg = reg(0x8C);
/// FIFO control register.
pub const UFCR: Reg = reg(0x90);
/// Status register 1.
pub const USR1: Reg = reg(0x94);
/// Status register 2.
pub const USR2: Reg = reg(0x98);
/// Baud rate increment (numerator - 1).
pub const UBIR: Reg = reg(0xA4);
/// Baud rate modulator (denominator - 1); writing it loads the divider.
pub const UBMR: Reg = reg(0xA8);
/// Test register (FIFO full/empty flags, soft reset status).
pub const UTS: Reg = reg(0xB4);

/// URXD: a character is valid.
pub const URXD_CHARRDY: u32 = 1 << 15;
/// URXD: any of the error bits below is set.
pub const URXD_ERR: u32 = 1 << 14;
/// URXD: RX FIFO overrun before this character.
pub const URXD_OVRRUN: u32 = 1 << 13;
/// URXD: frame (stop bit) error.
pub const URXD_FRMERR: u32 = 1 << 12;
/// URXD: break detected.
pub const URXD_BRK: u32 = 1 << 11;
/// URXD: parity error.
pub const URXD_PRERR: u32 = 1 << 10;

/// UCR1: TX ready interrupt enable (TX FIFO below TXTL).
pub const UCR1_TRDYEN: u32 = 1 << 13;
/// UCR1: RX ready interrupt enable (RX FIFO at or above RXTL).
pub const UCR1_RRDYEN: u32 = 1 << 9;
/// UCR1: UART enable.
pub const UCR1_UARTEN: u32 = 1 << 0;

/// UCR2: ignore RTS pin.
pub const UCR2_IRTS: u32 = 1 << 14;
/// UCR2: 8-bit words.
pub const UCR2_WS: u32 = 1 << 5;
/// UCR2: transmitter enable.
pub const UCR2_TXEN: u32 = 1 << 2;
/// UCR2: receiver enable.
pub const UCR2_RXEN: u32 = 1 << 1;
/// UCR2: software reset, active low (reads 0 while resetting).
pub const UCR2_SRST: u32 = 1 << 0;

/// UCR3: RXD muxed input selected; the manual says it must be set on i.MX6+.
pub const UCR3_RXDMUXSEL: u32 = 1 << 2;

/// UCR4: receiver overrun interrupt enable.
pub const UCR4_OREN: u32 = 1 << 1;

/// UFCR: TX trigger level shift (bits 15:10).
pub const UFCR_TXTL_SHIFT: u32 = 10;
/// UFCR: reference-frequency divider shift (bits 9:7).
pub const UFCR_RFDIV_SHIFT: u32 = 7;
/// UFCR: RX trigger level mask (bits 5:0).
pub const UFCR_RXTL_MASK: u32 = 0x3F;

/// USR1: TX FIFO is below its trigger level.
pub const USR1_TRDY: u32 = 1 << 13;
/// USR1: RX FIFO is at or above its trigger level.
pub const USR1_RRDY: u32 = 1 << 9;

/// USR2: TX FIFO empty.
pub const USR2_TXFE: u32 = 1 << 14;
/// USR2: transmission complete (FIFO and shifter empty).
pub const USR2_TXDC: u32 = 1 << 3;
/// USR2: break condition detected (write 1 to clear).
pub const USR2_BRCD: u32 = 1 << 2;
/// USR2: overrun (write 1 to clear).
pub const USR2_ORE: u32 = 1 << 1;
/// USR2: receive data ready (at least one character in the RX FIFO).
pub const USR2_RDR: u32 = 1 << 0;

/// UTS: TX FIFO full.
pub const UTS_TXFULL: u32 = 1 << 4;
/// UTS: RX FIFO empty.
pub const UTS_RXEMPTY: u32 = 1 << 5;

/// The RFDIV field value for a divide-by-`div` (1..=7), per the manual's
/// table: 0b000=/6, 0b001=/5, 0b010=/4, 0b011=/3, 0b100=/2, 0b101=/1, 0b110=/7.
pub const fn rfdiv_field(div: u32) -> Option<u32> {
    match div {
        1..=6 => Some(6 - div),
        7 => Some(6),
        _ => None,
    }
}

/// The divider a RFDIV field value selects (inverse of [`rfdiv_field`]).
pub const fn rfdiv_divider(field: u32) -> Option<u32> {
    match field {
        0..=5 => Some(6 - field),
        6 => Some(7),
        _ => None,
    }
}
