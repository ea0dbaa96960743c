//! The arch-neutral VMM core: guest RAM view, MMIO bus, virtio-mmio dispatch
//! and IRQ lines, driven by decoded fault messages.
//!
//! ```
//! use bulkhead_vmm_core::{GuestRam, MmioAccess, Outcome, Vmm, Window};
//! let mut ram_bytes = vec![0u8; 0x1000];
//! let mut ram = GuestRam::new(0x4000_0000, ram_bytes.as_mut_slice());
//! let mut vmm: Vmm<4> = Vmm::new();
//! // No device yet: the access is unhandled and the backend injects an abort.
//! let out = vmm.handle(&MmioAccess::read(0x0a00_0000, 4), &mut ram, &mut []);
//! assert_eq!(out, Outcome::Unhandled { gpa: 0x0a00_0000 });
//! # let _ = Window { base: 0, size: 0x200, irq: 0 };
//! ```
#![no_std]
#![forbid(unsafe_code)]

mod access;
mod bus;
mod ram;
mod virtio;

pub use access::{AccessKind, MmioAccess};
pub use bus::{BusError, IrqEdge, MmioDevice, Outcome, Vmm, Window};
pub use ram::{GuestRam, RamBacking};
pub use virtio::VirtioMmio;
