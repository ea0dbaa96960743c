//! The typed configuration sections compose writes, their type ids and
//! byte layouts (all version 1, little-endian, in the container format of
//! `bulkhead_config`). A PD reads them with `bulkhead_config::FieldReader`
//! in the order below; every count is followed by exactly that many entries
//! and nothing else.
//!
//! ```
//! use bulkhead_compose::sections::*;
//! assert_eq!(bulkhead_config::type_class(CAN_POLICY), "can");
//! assert_eq!(bulkhead_config::type_class(VMM_GUEST), "vmm");
//! ```
//!
//! # Every PD: the runtime's `MAPS` (`0x0000_0001`, optional)
//!
//! Every map of the PD except its configuration's own, so the runtime on
//! seL4 finds any region by name or vaddr as the host board's supervisor
//! lets it (decoder: `components/runtime/src/maps.rs`). count u32, pad u32;
//! per map (88 bytes): vaddr u64, size u64, perms u8 (r=1, w=2, x=4),
//! cached u8, name length u8, pad \[5\], name \[64\] (zero padded). The
//! configuration's own map carries `setvar_vaddr="bulkhead_config_vaddr"
//! setvar_size="bulkhead_config_size"`.
//!
//! # Every virtualiser: `HOPS` (`0xCCCC_0001`, CCCC = class)
//!
//! | size | field |
//! |---:|---|
//! | 4 | channel id of the driver |
//! | 4 | client count `N` |
//! | 8 | vaddr of the `drv` hop (req; resp +0x1000, out +0x20_0000, in +0x40_0000) |
//! | 8 | data region size (0: no out/in regions) |
//! | 16·N | per client: channel id u32, guest index u32, hop vaddr u64 |
//!
//! # Every driver: `DEVICE` (`0xCCCC_8001`)
//!
//! | size | field |
//! |---:|---|
//! | 4 | channel id of the virtualiser |
//! | 4 | window count `W` |
//! | 8 | vaddr of the `drv` hop |
//! | 8 | data region size |
//! | 8 | DMA descriptor vaddr (0: none) |
//! | 8 | DMA descriptor size |
//! | 48·W | per window: name \[16\] (NUL-padded), vaddr u64, paddr u64 (0 on host), size u64, IRQ count u32, channel id of its first IRQ u32 |
//!
//! # Class policies (`0xCCCC_0002`), one entry per client, by channel id
//!
//! - console `0x0006_0002`: count u32, pad u32; per client (24 bytes):
//!   channel u32, flags u32 (bit 0: receives input), prefix \[16\].
//! - storage `0x0002_0002`: count u32, pad u32; per client (40 bytes):
//!   channel u32, flags u32 (bit 0: read-only), start u64 and size u64
//!   (bytes on the disk), ops u32, period_us u32 (0: no budget), bytes u64
//!   per period (0: unlimited).
//! - CAN `0x0003_0002`: count u32, pad u32; per client: channel u32,
//!   filter count F u16, TX count T u16, frames u32, bits u32, period_us
//!   u32, pad u32; then F × (id u32, mask u32); then T × id u32; then zero
//!   padding to 8.
//! - Ethernet `0x0004_0002`: link Mbit/s u32, count u32; per client (24
//!   bytes): channel u32, VLAN u16 (0: untagged), PCP u8, pad u8, MAC \[6\],
//!   pad \[2\], reserved Mbit/s u32, pad u32.
//! - audio `0x0005_0002`: count u32, pad u32; per client: channel u32,
//!   class u8 (0 safety, 1 media, 2 background), stream count S u8, pad
//!   u16; then S × 24 bytes: name \[16\], direction u8 (0 playback, 1
//!   capture), channels u8, pad u16, rate u32.
//!
//! # VMM
//!
//! - `VMM_GUEST` `0x0001_0001`: RAM guest-physical u64, RAM size u64, RAM
//!   vaddr in the VMM u64, vCPUs u32, first core u32, kernel gpa u64, DTB
//!   gpa u64, initrd gpa u64, initrd size u64, GIC version u32 (2, 3; 0 on
//!   host), pad u32.
//! - `VMM_VIRTIO` `0x0001_0002`: count u32, pad u32; per device (40 bytes):
//!   virtio device id u32, channel id of the virtualiser u32, window gpa
//!   u64, window size u64, GIC INTID u32, pad u32, hop vaddr u64.
//! - `VMM_IMAGES` `0x0001_0003`: kernel path length u16, initrd path length
//!   u16, pad u32, the two paths (UTF-8), zero padding to 8.
//! - `VMM_DTB` `0x0001_0004`: the guest's device tree blob.

use bulkhead_config::SectionWriter;

use crate::Class;

/// The PD runtime's map table (every PD).
pub const RUNTIME_MAPS: u32 = 0x0000_0001;
/// Longest region name in [`RUNTIME_MAPS`].
pub const MAPS_NAME_MAX: usize = 64;
/// Section version of every section below.
pub const VERSION: u16 = 1;
/// VMM: the guest's memory, vCPUs and boot addresses.
pub const VMM_GUEST: u32 = 0x0001_0001;
/// VMM: the virtio-mmio devices it emulates.
pub const VMM_VIRTIO: u32 = 0x0001_0002;
/// VMM: kernel and initrd image names.
pub const VMM_IMAGES: u32 = 0x0001_0003;
/// VMM: the guest's device tree.
pub const VMM_DTB: u32 = 0x0001_0004;
/// Storage policy.
pub const BLK_POLICY: u32 = 0x0002_0002;
/// CAN policy.
pub const CAN_POLICY: u32 = 0x0003_0002;
/// Ethernet policy.
pub const ETH_POLICY: u32 = 0x0004_0002;
/// Audio policy.
pub const SND_POLICY: u32 = 0x0005_0002;
/// Console policy.
pub const SERIAL_POLICY: u32 = 0x0006_0002;

/// The class's type id range (upper 16 bits).
pub fn class_base(class: Class) -> u32 {
    match class {
        Class::Blk => 0x0002_0000,
        Class::Can => 0x0003_0000,
        Class::Eth => 0x0004_0000,
        Class::Snd => 0x0005_0000,
        Class::Serial => 0x0006_0000,
    }
}

/// A virtualiser's hop section id.
pub fn hops_id(class: Class) -> u32 {
    class_base(class) | 0x0001
}

/// A driver's device section id.
pub fn device_id(class: Class) -> u32 {
    class_base(class) | 0x8001
}

/// Appends `s` as a fixed 16-byte NUL-padded field (truncated at 16).
pub fn name16(w: &mut SectionWriter, s: &str) {
    let mut b = [0u8; 16];
    for (d, c) in b.iter_mut().zip(s.bytes()) {
        *d = c;
    }
    w.bytes(&b);
}

/// A count as a u32 field (counts are bounded far below by validation).
pub fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
