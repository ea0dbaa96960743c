//! i.MX uSDHC driver logic: SD card init, clocking, PIO block I/O, errors.
//!
//! ```
//! use drv_imx_usdhc::ClockDiv;
//! // 400 kHz identification clock from a 200 MHz uSDHC root: the fastest
//! // setting not above it is 200 MHz / (32 * 16).
//! let d = ClockDiv::for_rate(200_000_000, 400_000).unwrap();
//! assert_eq!(d.hz(200_000_000), 390_625);
//! ```
//!
//! In a driver PD (the window and clock come from the board and .system):
//!
//! ```ignore
//! use drv_imx_usdhc::{Usdhc, VolatileMmio};
//! // SAFETY: the uSDHC window is mapped into this PD by its .system file.
//! let mut sd = Usdhc::new(unsafe { VolatileMmio::new(base, drv_imx_usdhc::regs::BLOCK_SIZE) }, base_clk_hz);
//! let card = sd.init()?; // CMD0, CMD8, ACMD41, CMD2/3/9/7, ACMD6, CMD6
//! sd.read_blocks(0, &mut buf[..512])?; // CMD17; CMD18 + CMD12 for more
//! ```
//!
//! Data moves by PIO through DATA_BUFF_ACC_PORT, not ADMA2: the block
//! virtualiser's buffers are in memory this PD maps but whose physical
//! addresses it would have to be told, and PIO keeps the controller from
//! ever mastering the bus (no IOMMU on i.MX8M). The cost is CPU time per
//! byte; ADMA2 is the upgrade once the PD knows its buffers' physical addresses.
#![no_std]
#![deny(unsafe_code)]

pub mod mmio;
pub mod regs;

#[forbid(unsafe_code)]
mod driver;

pub use driver::*;
pub use mmio::{Mmio, VolatileMmio};
