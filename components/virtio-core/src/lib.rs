//! The virtio device side that faces a guest which may be hostile: a bounded
//! guest-memory view ([`GuestMemory`]), split virtqueues ([`Queue`],
//! [`DescriptorChain`]) and the virtio-mmio v2 register state machine
//! ([`MmioTransport`]) that device models ([`VirtioDevice`]) plug into.
//!
//! ```
//! use bulkhead_virtio::{GuestMemory, SliceMemory};
//! let mut ram = [0u8; 64];
//! let mut mem = SliceMemory::new(0x4000_0000, &mut ram);
//! mem.write(0x4000_0010, &[1, 2]).unwrap();
//! assert!(mem.write(0x4000_003f, &[1, 2]).is_err()); // crosses the end
//! ```
//!
//! Rules (see README.md and `shared/reference/virtio.md`): the device side
//! never holds a reference into guest memory, it copies; every guest-supplied
//! index, address and length is checked with checked arithmetic before use;
//! a guest that breaks a rule gets a typed error, a chain completed with
//! length 0, or `DEVICE_NEEDS_RESET` for itself, never a panic.
#![no_std]
#![forbid(unsafe_code)]

pub mod chain;
pub mod device;
pub mod mem;
pub mod mmio;
pub mod queue;
pub mod spec;

pub use chain::{ChainError, DescriptorChain, Reader, Writer};
pub use device::{QueueContext, VirtioDevice};
pub use mem::{GuestMemory, MemError, SliceMemory};
pub use mmio::{MmioError, MmioTransport, TransportError, TransportStats, WriteEffect};
pub use queue::{Queue, QueueError};
