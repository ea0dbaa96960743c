//! Driver for QEMU's `virtio-blk-device` on the `virt` machine's
//! virtio-mmio transport, treated as physical hardware: a modern (v2)
//! transport, feature negotiation, one split virtqueue in a DMA region the
//! `.system` file places at a fixed physical address, and block-protocol
//! requests served zero-copy from the `blk_drv_out` / `blk_drv_in` regions
//! (the device reads and writes them by physical address).
//!
//! ```ignore
//! use drv_virtio_blk_mmio::{DataWindow, DataWindows, VirtioBlk, VolatileDma, VolatileMmio};
//! // SAFETY: the transport and the DMA region are mapped uncached into this PD.
//! let mmio = unsafe { VolatileMmio::new(regs_vaddr as *mut u32, drv_virtio_blk_mmio::regs::WINDOW) };
//! let dma = unsafe { VolatileDma::new(dma_vaddr as *mut u8, dma_len, dma_paddr) };
//! let mut blk = VirtioBlk::init(mmio, dma, windows)?;
//! blk.submit(&request)?;          // or Busy: keep it for later
//! blk.kick();                     // QueueNotify
//! blk.interrupt()?;               // on the IRQ; or blk.collect()? to poll
//! blk.take_responses(|rsp| ring.push(&rsp.into()).is_ok());
//! ```
//!
//! `src/bin/virtio_blk_driver.rs` is the driver PD around it.
#![no_std]
#![deny(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod dma;
pub mod regs;

#[forbid(unsafe_code)]
mod driver;

pub use dma::{DmaRegion, VolatileDma};
pub use driver::*;
pub use drv_mmio::{Mmio, Reg, VolatileMmio};
