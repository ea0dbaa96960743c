//! virtio-can (device ID 36, VIRTIO 1.4 §5.20): queue 0 transmits, queue 1
//! receives, queue 2 carries control messages; config space is one `le16
//! status` whose bit 0 is BUSOFF.
//!
//! Frames go to and come from a [`CanBackend`] (the VMM's link to the CAN
//! virtualiser). Every TX message is validated with `bulkhead-can-frame`
//! before anything reaches the backend: undefined flags, un-negotiated FD or
//! RTR, bad ids or lengths, and an sdu shorter than `length` are answered
//! NOT_OK and nothing is sent. The controller starts STOPPED; STOP and
//! bus-off complete pending TX with NOT_OK. An RX buffer is only popped while
//! a frame is waiting; one too short for it is returned with length 0 and
//! counted, and the frame waits for the next buffer, so neither is lost.
//!
//! STOP answers every pending TX NOT_OK at once. A frame the controller
//! had already started on the wire cannot be aborted and may still appear on
//! the bus: the same race as STOP against a hardware transmission.
//!
//! The device cannot raise interrupts or touch a queue on its own: after the
//! virtualiser signals, the VMM calls [`VirtioCan::poll_backend`] and acts on
//! the [`Service`] it returns (process the TX/RX queue, raise a
//! config-change notification).

mod device;

pub use device::{
    CanBackend, CanErrors, Service, TxAdmit, VirtioCan, CONFIG_LEN, CONTROL_QUEUE, CTRL_START,
    CTRL_STOP, DEVICE_ID, QUEUE_SIZE, RX_QUEUE, STATUS_BUSOFF, TX_QUEUE,
};
