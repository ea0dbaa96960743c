//! virtio device models the VMM puts behind its virtio-mmio windows.
#![no_std]
#![forbid(unsafe_code)]

pub mod blk;
pub mod can;
pub mod console;
