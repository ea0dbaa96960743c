//! Deterministic allocation: PD vaddrs, region sizes, hop slots and the
//! guest-physical map, as `system/README.md` states them.
//!
//! Per PD: configuration at [`CONFIG_VADDR`], device registers from
//! [`DEVICE_VADDR`] (1 MiB apart), DMA descriptors at [`DMA_VADDR`], guest
//! RAM at [`GUEST_RAM_BASE`] (= its guest-physical address), rings from
//! [`ring_base`]: class slot × [`class_stride`], hop slot `drv` +0 and guest
//! `i` + 0x80_0000·(i+1), and inside a hop `req` +0, `resp` +0x1000, `out`
//! +0x20_0000, `in` +0x40_0000.
//!
//! ```
//! use bulkhead_compose::layout::*;
//! assert_eq!(class_stride(2), 0x200_0000);
//! assert_eq!(ring_base(0x2000_0000), 0x6000_0000);
//! ```

use std::collections::BTreeMap;

use crate::boards::Binding;
use crate::resolve::GuestR;
use crate::Class;

/// Each PD's configuration region.
pub const CONFIG_VADDR: u64 = 0x1000_0000;
/// `stack_size` of VMMs and virtualisers (they build their state by value in
/// `init`; Microkit's default is 8 KiB).
pub const STATE_STACK_SIZE: u64 = 0x2_0000;
/// First device window of a driver.
pub const DEVICE_VADDR: u64 = 0x2000_0000;
/// Distance between a driver's device windows.
pub const DEVICE_STRIDE: u64 = 0x10_0000;
/// A driver's DMA descriptor memory.
pub const DMA_VADDR: u64 = 0x3000_0000;
/// Guest RAM: guest-physical address, and the VMM's vaddr for it.
pub const GUEST_RAM_BASE: u64 = 0x4000_0000;
/// Lowest ring address.
pub const RING_BASE_MIN: u64 = 0x6000_0000;
/// Distance between the hops of one class.
pub const HOP_STRIDE: u64 = 0x80_0000;
/// Queue region size.
pub const QUEUE_SIZE: u64 = 0x1000;
/// Offsets inside a hop: req, resp, out, in.
pub const PART_OFFSET: [(&str, u64); 4] = [
    ("req", 0),
    ("resp", 0x1000),
    ("out", 0x20_0000),
    ("in", 0x40_0000),
];
/// Guest-physical base of the first virtio-mmio window a VMM emulates.
pub const GUEST_VIRTIO_BASE: u64 = 0x0a00_0000;
/// Size of one guest virtio-mmio window.
pub const GUEST_VIRTIO_SIZE: u64 = 0x200;
/// GIC SPI of guest virtio window 0 (INTID 48, as on QEMU virt).
pub const GUEST_VIRTIO_FIRST_SPI: u32 = 16;
/// Guest GIC distributor.
pub const GUEST_GICD: u64 = 0x0800_0000;
/// Guest GICv2 CPU interface (where a VM maps `gic_vcpu`).
pub const GUEST_GICC: u64 = 0x0801_0000;
/// Guest GICv3 redistributors.
pub const GUEST_GICR: u64 = 0x080a_0000;

/// Data region (`out`/`in`) bytes per class; CAN frames travel inline in
/// the queues, so CAN has no data regions.
pub fn data_size(class: Class) -> u64 {
    match class {
        Class::Serial => 0x1000,
        Class::Blk | Class::Eth => 0x20_0000,
        Class::Can => 0,
        Class::Snd => 0x10_0000,
    }
}

/// Parts of a hop of `class`.
pub fn parts(class: Class) -> &'static [(&'static str, u64)] {
    if data_size(class) == 0 {
        &PART_OFFSET[..2]
    } else {
        &PART_OFFSET
    }
}

/// Bytes one class slot spans with `guests` guests: room for the `drv` hop
/// and one hop per guest, rounded up to 32 MiB.
pub fn class_stride(guests: usize) -> u64 {
    let hops = guests as u64 + 1;
    (hops * HOP_STRIDE).div_ceil(0x200_0000) * 0x200_0000
}

/// Where rings start: above the largest guest RAM mapped at
/// [`GUEST_RAM_BASE`], never below [`RING_BASE_MIN`].
pub fn ring_base(max_ram: u64) -> u64 {
    let end = GUEST_RAM_BASE.saturating_add(max_ram);
    end.div_ceil(0x200_0000)
        .saturating_mul(0x200_0000)
        .max(RING_BASE_MIN)
}

/// Vaddr of `part` of hop `hop` (0 = `drv`, i + 1 = guest i) of `class`.
pub fn hop_vaddr(base: u64, stride: u64, class: Class, hop: usize, part_off: u64) -> u64 {
    base + class.index() as u64 * stride + hop as u64 * HOP_STRIDE + part_off
}

/// Guest-physical window and SPI of a guest's virtio device of `class`
/// (one slot per class, the same in every guest).
pub fn guest_virtio(class: Class) -> (u64, u32) {
    let slot = class.index() as u64;
    (
        GUEST_VIRTIO_BASE + slot * GUEST_VIRTIO_SIZE,
        GUEST_VIRTIO_FIRST_SPI + u32::try_from(slot).unwrap_or(0),
    )
}

/// RAM the services need besides guest RAM (rings, DMA, configuration
/// pages): an estimate for the RAM check, one page per configuration.
pub fn shared_bytes(
    guests: &[GuestR],
    classes: &[Class],
    bindings: &BTreeMap<Class, Binding>,
) -> u64 {
    let mut total = 0u64;
    for &c in classes {
        let users = guests.iter().filter(|g| g.uses(c)).count() as u64;
        let hop = 2 * QUEUE_SIZE + 2 * data_size(c);
        total += (users + 1) * hop + bindings.get(&c).and_then(|b| b.dma).unwrap_or(0);
        total += 2 * 0x1000;
    }
    total + guests.len() as u64 * 0x2000
}
