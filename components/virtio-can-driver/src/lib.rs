//! Guest-side virtio-can driver (VIRTIO 1.4 §5.20).
#![no_std]
