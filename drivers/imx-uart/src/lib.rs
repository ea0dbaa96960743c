//! i.MX UART driver logic: init, baud divider, FIFO I/O, interrupts.
//!
//! ```
//! use drv_imx_uart::Divider;
//! // 115200 baud from an 80 MHz UART root clock, as Linux imx.c programs it.
//! let d = Divider::for_baud(80_000_000, 115_200).unwrap();
//! assert_eq!((d.rfdiv, d.ubir, d.ubmr), (7, 503, 3124));
//! ```
//!
//! In a driver PD (the window and clock come from the board and .system):
//!
//! ```ignore
//! // SAFETY: the UART window is mapped into this PD by its .system file.
//! let mut uart = Uart::new(unsafe { VolatileMmio::new(base, drv_imx_uart::regs::BLOCK_SIZE) });
//! uart.init(&Config::console(ref_clk_hz))?;
//! let taken = uart.write(b"hello\n"); // fewer when the TX FIFO is full
//! ```
#![no_std]
#![deny(unsafe_code)]

pub mod mmio;
pub mod regs;

#[forbid(unsafe_code)]
mod driver;

pub use driver::*;
pub use mmio::{Mmio, VolatileMmio};
