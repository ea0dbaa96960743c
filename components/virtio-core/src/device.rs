//! The interface between the transport and a device model (blk, console,
//! can, …): what the model declares, and the [`QueueContext`] through which
//! it pops and completes chains when a queue is notified.
//!
//! ```
//! use bulkhead_virtio::{QueueContext, QueueError, VirtioDevice};
//! /// Completes every chain with nothing written.
//! struct Sink;
//! impl VirtioDevice for Sink {
//!     fn device_id(&self) -> u32 { 3 }
//!     fn features(&self) -> u64 { 0 }
//!     fn queue_max_sizes(&self) -> &[u16] { &[64] }
//!     fn config_len(&self) -> usize { 0 }
//!     fn read_config(&self, _offset: usize, _data: &mut [u8]) {}
//!     fn write_config(&mut self, _offset: usize, _data: &[u8]) {}
//!     fn activate(&mut self, _features: u64) {}
//!     fn reset(&mut self) {}
//!     fn queue_notify(&mut self, _q: u16, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
//!         while let Some(chain) = ctx.pop::<4>()? {
//!             ctx.add_used(&chain, 0)?;
//!         }
//!         Ok(())
//!     }
//! }
//! ```

use crate::chain::DescriptorChain;
use crate::mem::GuestMemory;
use crate::queue::{Queue, QueueError};

/// A virtio device model behind an [`crate::MmioTransport`].
///
/// The transport calls [`VirtioDevice::queue_notify`] only after DRIVER_OK,
/// only for a ready queue, and never while `DEVICE_NEEDS_RESET` is set; it
/// never passes a config offset/length outside [`VirtioDevice::config_len`].
pub trait VirtioDevice {
    /// The virtio device ID (§5: 1 net, 2 blk, 3 console, 36 can, …).
    fn device_id(&self) -> u32;

    /// The vendor ID the transport reports.
    fn vendor_id(&self) -> u32 {
        // No vendor: guests apply no vendor-specific quirks.
        0
    }

    /// Device-specific feature bits offered (bits 0–23 and 42–63). Of the
    /// transport bits, the transport offers VERSION_1 always and
    /// INDIRECT_DESC, EVENT_IDX and RING_RESET only if set here.
    fn features(&self) -> u64;

    /// Whether the driver's accepted subset is one this device can work
    /// with (§2.2.2); FEATURES_OK is refused otherwise. Only called with a
    /// subset of what was offered.
    fn accept_features(&self, _driver_features: u64) -> bool {
        true
    }

    /// QueueSizeMax for each queue; the slice length is the queue count
    /// (at most [`crate::mmio::MAX_QUEUES`]).
    fn queue_max_sizes(&self) -> &[u16];

    /// Length in bytes of the device configuration space.
    fn config_len(&self) -> usize;

    /// Copies config bytes `[offset, offset + data.len())`, always inside
    /// [`VirtioDevice::config_len`].
    fn read_config(&self, offset: usize, data: &mut [u8]);

    /// A driver write to config bytes `[offset, offset + data.len())`,
    /// always inside [`VirtioDevice::config_len`].
    fn write_config(&mut self, offset: usize, data: &[u8]);

    /// DRIVER_OK was set with the negotiated `features`.
    fn activate(&mut self, features: u64);

    /// The driver reset the device: forget every chain and queue state.
    fn reset(&mut self);

    /// The driver reset one queue (RING_RESET): forget its chains.
    fn queue_reset(&mut self, _queue: u16) {}

    /// The driver notified `queue` (or the VMM kicked it because backend
    /// data arrived). Pop and complete what can be completed now.
    ///
    /// # Errors
    /// A [`QueueError`] from the context; a fatal one makes the transport
    /// set `DEVICE_NEEDS_RESET`.
    fn queue_notify(&mut self, queue: u16, ctx: &mut QueueContext<'_>) -> Result<(), QueueError>;
}

/// One ready queue and guest memory, lent to a device model for the length
/// of one [`VirtioDevice::queue_notify`] call.
pub struct QueueContext<'a> {
    index: u16,
    queue: &'a mut Queue,
    mem: &'a mut dyn GuestMemory,
}

impl<'a> QueueContext<'a> {
    /// Lends `queue` (number `index`) and `mem` to a device model.
    pub fn new(index: u16, queue: &'a mut Queue, mem: &'a mut dyn GuestMemory) -> Self {
        Self { index, queue, mem }
    }

    /// The queue number.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Guest memory, for [`crate::Reader::read`].
    pub fn memory(&self) -> &dyn GuestMemory {
        self.mem
    }

    /// Guest memory, for [`crate::Writer::write`].
    pub fn memory_mut(&mut self) -> &mut dyn GuestMemory {
        self.mem
    }

    /// See [`Queue::pop`].
    ///
    /// # Errors
    /// As [`Queue::pop`].
    pub fn pop<const N: usize>(&mut self) -> Result<Option<DescriptorChain<N>>, QueueError> {
        self.queue.pop(self.mem)
    }

    /// See [`Queue::add_used`].
    ///
    /// # Errors
    /// As [`Queue::add_used`].
    pub fn add_used<const N: usize>(
        &mut self,
        chain: &DescriptorChain<N>,
        len: u32,
    ) -> Result<(), QueueError> {
        self.queue.add_used(self.mem, chain, len)
    }

    /// The queue itself (read-only: counters, size).
    pub fn queue(&self) -> &Queue {
        self.queue
    }
}
