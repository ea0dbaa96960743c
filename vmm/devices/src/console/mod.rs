//! virtio-console (device ID 3, VIRTIO 1.2 §5.3), single port, no
//! multiport: queue 0 receives (device → driver), queue 1 transmits.
//!
//! Output is pushed to a [`ConsoleBackend`] as the driver queues it; when
//! the backend is full the chain in progress stays with the device and is
//! resumed by the next [`bulkhead_virtio::VirtioDevice::queue_notify`] (the
//! VMM calls it again when the backend drains). Input is delivered only
//! into RX buffers popped while input is pending, so the guest never loses
//! an RX buffer to an empty read.

mod device;

pub use device::{
    ConsoleBackend, ConsoleErrors, VirtioConsole, CONFIG_LEN, QUEUE_SIZE, RX_QUEUE, TX_QUEUE,
};
