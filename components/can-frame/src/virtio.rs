//! virtio-can TX/RX messages (VIRTIO 1.4 §5.20)
