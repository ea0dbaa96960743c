//! Numbers from the VIRTIO specification (1.2/1.3 section numbers in the docs):
//! status bits, reserved feature bits, descriptor and ring flags, and the
//! virtio-mmio v2 register offsets.

/// Device status bits (§2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest knows how to drive the device.
    pub const DRIVER: u32 = 2;
    /// The driver is set up; the device may use its queues.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The driver asked the device to suspend (not offered here).
    pub const SUSPEND: u32 = 16;
    /// The device hit an error only a reset clears.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 128;
}

/// Reserved (transport) feature bits (§6).
pub mod feature {
    /// Descriptors may point to indirect tables (§2.7.5).
    pub const INDIRECT_DESC: u64 = 1 << 28;
    /// `used_event` / `avail_event` notification suppression (§2.7.7, §2.7.10).
    pub const EVENT_IDX: u64 = 1 << 29;
    /// A modern (non-legacy) device; mandatory for virtio-mmio v2 here.
    pub const VERSION_1: u64 = 1 << 32;
    /// Device accesses go through a platform IOMMU (never offered here).
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
    /// Packed virtqueues (never offered here).
    pub const RING_PACKED: u64 = 1 << 34;
    /// Buffers are used in order (never offered here).
    pub const IN_ORDER: u64 = 1 << 35;
    /// Notifications carry data (never offered here).
    pub const NOTIFICATION_DATA: u64 = 1 << 38;
    /// Per-queue reset through `QueueReset` (§2.6.1).
    pub const RING_RESET: u64 = 1 << 40;
    /// The transport feature range (§6: bits 24 to 41 are reserved for the
    /// transport and the queues).
    pub const TRANSPORT_MASK: u64 = ((1 << 42) - 1) & !((1 << 24) - 1);
    /// Transport features this crate implements and so lets a device offer.
    pub const TRANSPORT_SUPPORTED: u64 = INDIRECT_DESC | EVENT_IDX | VERSION_1 | RING_RESET;
}

/// Split-virtqueue descriptor flags (§2.7.4) and ring flags (§2.7.6, §2.7.8).
pub mod ring {
    /// The descriptor continues via `next`.
    pub const DESC_F_NEXT: u16 = 1;
    /// The buffer is device-writable.
    pub const DESC_F_WRITE: u16 = 2;
    /// The buffer is an indirect descriptor table.
    pub const DESC_F_INDIRECT: u16 = 4;
    /// `avail.flags`: the driver asks for no used-buffer notification.
    pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
    /// `used.flags`: the device asks for no available-buffer notification.
    pub const USED_F_NO_NOTIFY: u16 = 1;
    /// Size of one descriptor in bytes.
    pub const DESC_SIZE: u64 = 16;
    /// Size of one used-ring element in bytes.
    pub const USED_ELEM_SIZE: u64 = 8;
    /// Largest queue size of a split virtqueue.
    pub const MAX_QUEUE_SIZE: u16 = 32768;
}

/// virtio-mmio v2 register offsets (§4.2.2).
#[allow(missing_docs)] // the names are the specification's register names
pub mod reg {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_SEL: u64 = 0x0ac;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const QUEUE_RESET: u64 = 0x0c0;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
    /// "virt" in little-endian.
    pub const MAGIC: u32 = 0x7472_6976;
    /// InterruptStatus bit: a used buffer was added.
    pub const INT_VRING: u32 = 1;
    /// InterruptStatus bit: the configuration changed.
    pub const INT_CONFIG: u32 = 2;
}
