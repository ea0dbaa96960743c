//! i.MX UART driver logic: init, baud divider, FIFO I/O, interrupts.
//!
//! ```ignore
//! use drv_imx_uart::{Config, Uart, VolatileMmio};
//! // SAFETY: the UART window is mapped into this PD by its .system file.
//! let mut uart = Uart::new(unsafe { VolatileMmio::new(base) });
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
