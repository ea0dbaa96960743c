//! CAN scenario tests, in simulated bus time: the adapter from the
//! virtualiser's [`bulkhead_virt_can::CanController`] to a node of the
//! simulated bus ([`adapter`]), and the whole path in one process
//! ([`harness`]): guest driver → virtio-can device → virtualiser → adapter →
//! `drv-host-can-bus`. The scenarios are in `tests/`.

pub mod adapter;
pub mod harness;
