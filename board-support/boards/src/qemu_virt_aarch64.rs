//! QEMU's `virt` machine as Microkit's `qemu_virt_aarch64` board runs it:
//! `-machine virt,virtualization=on -cpu cortex-a53 -m 2G` (GICv2, default
//! `highmem`).
//!
//! Sources (facts only, no code copied):
//! - QEMU `hw/arm/virt.c` (`base_memmap`, `extended_memmap`, `a15irqmap`,
//!   `create_virtio_devices`, `create_pcie_irq_map`), read at
//!   bonzini/qemu@2f8c053.
//! - Microkit `build_sdk.py` (board `qemu_virt_aarch64`: cortex-a53,
//!   `QEMU_MEMORY` 2048, `smp_cores` 4), seL4/microkit@cfd5216.
//! - The DTB QEMU 10.0.2 itself generates for `-machine
//!   virt,virtualization=on,dumpdtb=... -cpu cortex-a53 -m 2G -smp 4`, and
//!   its `info qtree` / `info pci` (which confirmed `virtio-mmio-bus.N` is
//!   the transport at `0x0a00_0000 + 0x200·N`, and that `ctucan_pci` lands
//!   at 00:01.0 with INTA); every address and IRQ below matches it.
//! - seL4 `src/plat/qemu-arm-virt/config.cmake` (`MAX_IRQ 159`, GICv2 by
//!   default) and `src/arch/arm/config.cmake` (cortex-a53: 40-bit PA),
//!   seL4/seL4@1326364.
//!
//! No IOMMU: `virt` only has an SMMUv3 when started with `iommu=smmuv3`, and
//! Microkit's command line does not ask for one, so every bus master
//! (virtio-mmio devices, PCIe functions) can reach all of guest-physical
//! memory — which is all of RAM, since seL4 runs the machine's RAM 1:1.

use crate::{Board, Device, DeviceKind, Gic, Range};

/// Base of the first virtio-mmio transport (`VIRT_MMIO`).
pub const VIRTIO_MMIO_BASE: u64 = 0x0a00_0000;
/// Bytes per virtio-mmio transport.
pub const VIRTIO_MMIO_SLOT_SIZE: u64 = 0x200;
/// Number of virtio-mmio transports QEMU creates (`NUM_VIRTIO_TRANSPORTS`).
pub const VIRTIO_MMIO_SLOTS: u64 = 32;
/// GIC INTID of transport 0 (`a15irqmap[VIRT_MMIO]` = SPI 16, + 32).
pub const VIRTIO_MMIO_FIRST_INTID: u64 = 48;

/// Register base and GIC INTID of virtio-mmio transport `slot` (0..=31), or
/// `None` past the last one.
///
/// QEMU attaches `-device virtio-*-device` options to transports from the
/// highest address down (slot 31 first) unless the option names a bus with
/// `bus=virtio-mmio-bus.N`; our command lines always name the bus, so that
/// each driver's device sits in its own page (see [`BOARD`]).
pub const fn virtio_mmio_slot(slot: u64) -> Option<(u64, u64)> {
    if slot < VIRTIO_MMIO_SLOTS {
        Some((
            VIRTIO_MMIO_BASE + slot * VIRTIO_MMIO_SLOT_SIZE,
            VIRTIO_MMIO_FIRST_INTID + slot,
        ))
    } else {
        None
    }
}

/// GIC INTID of PCIe INTx pin `pin` (1 = INTA .. 4 = INTD) of a function in
/// slot `slot` on the root bus: SPI 3 + ((slot + pin − 1) mod 4), + 32
/// (`create_pcie_irq_map`). `None` for a pin outside 1..=4.
pub const fn pcie_intx_intid(slot: u64, pin: u64) -> Option<u64> {
    if pin >= 1 && pin <= 4 {
        Some(32 + 3 + (slot + pin - 1) % 4)
    } else {
        None
    }
}

/// Interrupts of one page of eight virtio-mmio transports.
const VIRTIO_PAGE_IRQS: [[u64; 8]; 4] = {
    let mut out = [[0u64; 8]; 4];
    let mut page = 0;
    while page < 4 {
        let mut i = 0;
        while i < 8 {
            out[page][i] = VIRTIO_MMIO_FIRST_INTID + (page as u64) * 8 + i as u64;
            i += 1;
        }
        page += 1;
    }
    out
};

/// A page of eight virtio-mmio transports: the smallest window a PD can map
/// (transports are 0x200 bytes; pages are 0x1000), so a driver that maps its
/// transport's page can also reach the other seven — which is why the
/// reference systems put each virtio device in a different page.
const fn virtio_page(name: &'static str, page: usize) -> Device {
    Device {
        name,
        kind: DeviceKind::VirtioMmio,
        window: Range {
            base: VIRTIO_MMIO_BASE + (page as u64) * 0x1000,
            size: 0x1000,
        },
        irqs: &VIRTIO_PAGE_IRQS[page],
        // A virtio device reads and writes its virtqueues and buffers by
        // guest-physical (here: physical) address.
        dma: true,
        iommu: false,
    }
}

/// Device windows. The GIC windows belong to the kernel except `gic_vcpu`,
/// the GICv2 virtual CPU interface, which VMMs map into their VMs as the
/// guest's CPU interface.
const DEVICES: &[Device] = &[
    Device {
        name: "gic_dist",
        kind: DeviceKind::InterruptController,
        window: Range {
            base: 0x0800_0000,
            size: 0x1_0000,
        },
        irqs: &[],
        dma: false,
        iommu: false,
    },
    Device {
        name: "gic_cpu",
        kind: DeviceKind::InterruptController,
        window: Range {
            base: 0x0801_0000,
            size: 0x1_0000,
        },
        irqs: &[],
        dma: false,
        iommu: false,
    },
    // GICv2m MSI frame; its SPIs 48..=111 (INTIDs 80..=143) are only raised
    // by PCIe MSI writes, which no reference system enables.
    Device {
        name: "gic_v2m",
        kind: DeviceKind::InterruptController,
        window: Range {
            base: 0x0802_0000,
            size: 0x1000,
        },
        irqs: &[],
        dma: false,
        iommu: false,
    },
    // GICH (hypervisor control), present with virtualization=on; the kernel's.
    Device {
        name: "gic_hyp",
        kind: DeviceKind::InterruptController,
        window: Range {
            base: 0x0803_0000,
            size: 0x1_0000,
        },
        irqs: &[],
        dma: false,
        iommu: false,
    },
    // GICV (virtual CPU interface), present with virtualization=on.
    Device {
        name: "gic_vcpu",
        kind: DeviceKind::InterruptController,
        window: Range {
            base: 0x0804_0000,
            size: 0x1_0000,
        },
        irqs: &[],
        dma: false,
        iommu: false,
    },
    // PL011, SPI 1. Also the kernel's debug console in debug configs.
    Device {
        name: "pl011",
        kind: DeviceKind::Uart,
        window: Range {
            base: 0x0900_0000,
            size: 0x1000,
        },
        irqs: &[33],
        dma: false,
        iommu: false,
    },
    // PL031 real-time clock, SPI 2.
    Device {
        name: "pl031",
        kind: DeviceKind::Other,
        window: Range {
            base: 0x0901_0000,
            size: 0x1000,
        },
        irqs: &[34],
        dma: false,
        iommu: false,
    },
    // PL061 GPIO (power button), SPI 7.
    Device {
        name: "pl061",
        kind: DeviceKind::Other,
        window: Range {
            base: 0x0903_0000,
            size: 0x1000,
        },
        irqs: &[39],
        dma: false,
        iommu: false,
    },
    virtio_page("virtio_mmio_0_7", 0),
    virtio_page("virtio_mmio_8_15", 1),
    virtio_page("virtio_mmio_16_23", 2),
    virtio_page("virtio_mmio_24_31", 3),
    // PCIe 32-bit MMIO window (BARs). No firmware assigns BARs on this
    // machine: the PD owning the root complex programs them inside this
    // window through ECAM.
    Device {
        name: "pcie_mmio",
        kind: DeviceKind::Pcie,
        window: Range {
            base: 0x1000_0000,
            size: 0x2eff_0000,
        },
        irqs: &[],
        dma: false,
        iommu: false,
    },
    // PCIe I/O port window (memory-mapped).
    Device {
        name: "pcie_pio",
        kind: DeviceKind::Pcie,
        window: Range {
            base: 0x3eff_0000,
            size: 0x1_0000,
        },
        irqs: &[],
        dma: false,
        iommu: false,
    },
    // High ECAM (256 MiB, 256 buses): with highmem (the default) and less
    // than 256 GiB of RAM the floating high area starts at 256 GiB; the
    // 64 MiB second redistributor slot comes first, so ECAM, aligned to its
    // size, lands at 256 GiB + 256 MiB. The low ECAM at 0x3f00_0000 is used
    // only with highmem-ecam=off and is not listed. The INTx lines of every
    // function are SPIs 3..=6 (see [`pcie_intx_intid`]); they belong to
    // whoever owns the root complex. PCIe functions are bus masters.
    Device {
        name: "pcie_ecam",
        kind: DeviceKind::Pcie,
        window: Range {
            base: 0x40_1000_0000,
            size: 0x1000_0000,
        },
        irqs: &[35, 36, 37, 38],
        dma: true,
        iommu: false,
    },
    // High 64-bit PCIe MMIO window: 512 GiB at 512 GiB, which still ends
    // inside a 40-bit physical address space.
    Device {
        name: "pcie_mmio_high",
        kind: DeviceKind::Pcie,
        window: Range {
            base: 0x80_0000_0000,
            size: 0x80_0000_0000,
        },
        irqs: &[],
        dma: false,
        iommu: false,
    },
];

/// The board.
pub static BOARD: Board = Board {
    name: "qemu_virt_aarch64",
    description: "QEMU virt, virtualization=on, 4x Cortex-A53, GICv2, 2 GiB",
    // -m 2G (Microkit's QEMU_MEMORY 2048) at VIRT_MEM = 1 GiB.
    ram: &[Range {
        base: 0x4000_0000,
        size: 0x8000_0000,
    }],
    devices: DEVICES,
    // Up to seL4's MAX_IRQ (159) for this platform.
    // PPIs 16..=31 are per-core; seL4 (hypervisor configs) keeps 25 (VGIC
    // maintenance), 26 (EL2 physical timer, the kernel's tick) and 27 (the
    // virtual timer, delivered to VMMs as vPPI events). The others, e.g. the
    // EL1 physical timer (30) that sDDF's timer driver claims, are a PD's to
    // claim. SGIs (0..=15) never are.
    irq_range: (16, 159),
    reserved_irqs: &[25, 26, 27],
    cores: 4,
    gic: Some(Gic::V2),
    // seL4_UserTop is 0xff_ffff_ffff for hypervisor configs with 40-bit PA;
    // Microkit puts the IPC buffer in the page just below 1 << 40.
    user_vaddr_top: 1 << 40,
    hypervisor: true,
    pa_bits: 40,
};
