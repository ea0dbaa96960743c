//! virtio-mmio v2 registers (VIRTIO 1.x §4.2.2), device status and feature
//! bits, and the virtio-blk request codes the driver uses.
//!
//! Offsets are checked at compile time against [`WINDOW`], one transport.

use drv_mmio::Reg;

/// Bytes of one virtio-mmio transport on QEMU `virt` (registers and the
/// device configuration space at 0x100).
pub const WINDOW: usize = 0x200;

/// `0x74726976` ("virt").
pub const MAGIC_VALUE: Reg = Reg::at(0x000, WINDOW);
/// 2 for a modern transport, 1 for legacy.
pub const VERSION: Reg = Reg::at(0x004, WINDOW);
/// Device type (2 = block; 0 = no device behind this transport).
pub const DEVICE_ID: Reg = Reg::at(0x008, WINDOW);
/// Vendor id.
pub const VENDOR_ID: Reg = Reg::at(0x00c, WINDOW);
/// 32 feature bits selected by [`DEVICE_FEATURES_SEL`].
pub const DEVICE_FEATURES: Reg = Reg::at(0x010, WINDOW);
/// Which 32 bits [`DEVICE_FEATURES`] shows.
pub const DEVICE_FEATURES_SEL: Reg = Reg::at(0x014, WINDOW);
/// 32 feature bits the driver accepts, selected by [`DRIVER_FEATURES_SEL`].
pub const DRIVER_FEATURES: Reg = Reg::at(0x020, WINDOW);
/// Which 32 bits [`DRIVER_FEATURES`] writes.
pub const DRIVER_FEATURES_SEL: Reg = Reg::at(0x024, WINDOW);
/// Queue the queue registers below refer to.
pub const QUEUE_SEL: Reg = Reg::at(0x030, WINDOW);
/// Largest queue size the device supports (0: no such queue).
pub const QUEUE_NUM_MAX: Reg = Reg::at(0x034, WINDOW);
/// Queue size the driver chose.
pub const QUEUE_NUM: Reg = Reg::at(0x038, WINDOW);
/// 1 once the queue is set up.
pub const QUEUE_READY: Reg = Reg::at(0x044, WINDOW);
/// Write a queue index: there are new available buffers.
pub const QUEUE_NOTIFY: Reg = Reg::at(0x050, WINDOW);
/// Bit 0 used buffer, bit 1 configuration change.
pub const INTERRUPT_STATUS: Reg = Reg::at(0x060, WINDOW);
/// Write the bits handled.
pub const INTERRUPT_ACK: Reg = Reg::at(0x064, WINDOW);
/// Device status; write 0 to reset.
pub const STATUS: Reg = Reg::at(0x070, WINDOW);
/// Descriptor table physical address, low half.
pub const QUEUE_DESC_LOW: Reg = Reg::at(0x080, WINDOW);
/// Descriptor table physical address, high half.
pub const QUEUE_DESC_HIGH: Reg = Reg::at(0x084, WINDOW);
/// Available ring physical address, low half.
pub const QUEUE_DRIVER_LOW: Reg = Reg::at(0x090, WINDOW);
/// Available ring physical address, high half.
pub const QUEUE_DRIVER_HIGH: Reg = Reg::at(0x094, WINDOW);
/// Used ring physical address, low half.
pub const QUEUE_DEVICE_LOW: Reg = Reg::at(0x0a0, WINDOW);
/// Used ring physical address, high half.
pub const QUEUE_DEVICE_HIGH: Reg = Reg::at(0x0a4, WINDOW);
/// Changes whenever the configuration space may have been seen torn.
pub const CONFIG_GENERATION: Reg = Reg::at(0x0fc, WINDOW);
/// virtio-blk `capacity` (le64, 512-byte sectors), low half.
pub const CONFIG_CAPACITY_LOW: Reg = Reg::at(0x100, WINDOW);
/// virtio-blk `capacity`, high half.
pub const CONFIG_CAPACITY_HIGH: Reg = Reg::at(0x104, WINDOW);
/// virtio-blk `size_max` (le32), valid with [`F_SIZE_MAX`].
pub const CONFIG_SIZE_MAX: Reg = Reg::at(0x108, WINDOW);
/// virtio-blk `max_discard_sectors` (le32), valid with [`F_DISCARD`].
pub const CONFIG_MAX_DISCARD_SECTORS: Reg = Reg::at(0x124, WINDOW);
/// virtio-blk `max_discard_seg` (le32).
pub const CONFIG_MAX_DISCARD_SEG: Reg = Reg::at(0x128, WINDOW);
/// virtio-blk `max_write_zeroes_sectors` (le32), valid with
/// [`F_WRITE_ZEROES`].
pub const CONFIG_MAX_WRITE_ZEROES_SECTORS: Reg = Reg::at(0x130, WINDOW);
/// virtio-blk `max_write_zeroes_seg` (le32).
pub const CONFIG_MAX_WRITE_ZEROES_SEG: Reg = Reg::at(0x134, WINDOW);

/// "virt", little endian.
pub const MAGIC: u32 = 0x7472_6976;
/// virtio device id of a block device.
pub const DEVICE_ID_BLK: u32 = 2;

/// Status: the guest noticed the device.
pub const S_ACKNOWLEDGE: u32 = 1;
/// Status: the guest knows how to drive it.
pub const S_DRIVER: u32 = 2;
/// Status: the driver is ready.
pub const S_DRIVER_OK: u32 = 4;
/// Status: feature negotiation is complete.
pub const S_FEATURES_OK: u32 = 8;
/// Status: the device hit an error it cannot recover from without a reset.
pub const S_DEVICE_NEEDS_RESET: u32 = 64;
/// Status: the driver gave up on the device.
pub const S_FAILED: u32 = 128;

/// InterruptStatus bit: the used ring was updated.
pub const INT_USED_BUFFER: u32 = 1;
/// InterruptStatus bit: the configuration changed (or NEEDS_RESET was set).
pub const INT_CONFIG_CHANGE: u32 = 2;

/// virtio-blk: `size_max` is valid (largest single segment).
pub const F_SIZE_MAX: u64 = 1 << 1;
/// virtio-blk: the device is read-only.
pub const F_RO: u64 = 1 << 5;
/// virtio-blk: the device has a volatile write cache and takes FLUSH.
pub const F_FLUSH: u64 = 1 << 9;
/// virtio-blk: the device takes DISCARD.
pub const F_DISCARD: u64 = 1 << 13;
/// virtio-blk: the device takes WRITE_ZEROES.
pub const F_WRITE_ZEROES: u64 = 1 << 14;
/// The device follows VIRTIO 1.x (modern); required.
pub const F_VERSION_1: u64 = 1 << 32;

/// Every feature this driver may accept. Not accepted, on purpose:
/// INDIRECT_DESC and EVENT_IDX (plain chains and interrupts suffice),
/// RING_PACKED (split ring only), ACCESS_PLATFORM (no IOMMU on `virt`:
/// buffers are given by physical address), CONFIG_WCE (the cache mode
/// stays the device's; FLUSH covers durability).
pub const ACCEPTED: u64 = F_VERSION_1 | F_SIZE_MAX | F_RO | F_FLUSH | F_DISCARD | F_WRITE_ZEROES;

/// virtio-blk request type: read.
pub const T_IN: u32 = 0;
/// virtio-blk request type: write.
pub const T_OUT: u32 = 1;
/// virtio-blk request type: flush.
pub const T_FLUSH: u32 = 4;
/// virtio-blk request type: discard.
pub const T_DISCARD: u32 = 11;
/// virtio-blk request type: write zeroes.
pub const T_WRITE_ZEROES: u32 = 13;

/// virtio-blk status byte: success.
pub const BLK_S_OK: u8 = 0;
/// virtio-blk status byte: I/O error.
pub const BLK_S_IOERR: u8 = 1;
/// virtio-blk status byte: unsupported request.
pub const BLK_S_UNSUPP: u8 = 2;

/// Descriptor flag: the chain continues at `next`.
pub const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer.
pub const DESC_F_WRITE: u16 = 2;
