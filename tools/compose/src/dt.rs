//! Each guest's device tree: exactly its RAM, its vCPUs, its virtio-mmio
//! windows and their IRQs, the GIC its VMM presents, the architected timer,
//! PSCI (over SMC, which seL4 delivers to the VMM as a vCPU fault; a guest
//! `hvc` would enter the seL4 kernel as a system call) and `/chosen` with the command line
//! and the initrd.
//!
//! Guest-physical map (the same on every board; the VMM emulates all of it
//! except RAM and, on GICv2, the CPU interface):
//!
//! | what | where |
//! |---|---|
//! | GIC distributor | 0x0800_0000 |
//! | GICv2 CPU interface / GICv3 redistributors | 0x0801_0000 / 0x080a_0000 |
//! | virtio-mmio window of class `c` | 0x0a00_0000 + 0x200·c, SPI 16 + c |
//! | RAM | 0x4000_0000 |
//! | kernel | RAM + 2 MiB |
//! | initrd | RAM + RAM/2 |
//! | device tree | RAM end − 2 MiB |

use crate::fdt::Node;
use crate::layout as l;
use crate::resolve::{GuestR, Resolved};

/// Boot addresses inside a guest's RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootAddrs {
    /// Kernel load address.
    pub kernel: u64,
    /// Device tree address.
    pub dtb: u64,
    /// Initrd address (0 without one).
    pub initrd: u64,
    /// Initrd size.
    pub initrd_size: u64,
}

/// Where the VMM puts the kernel, initrd and device tree of `g`.
pub fn addresses(g: &GuestR) -> BootAddrs {
    let (initrd, initrd_size) = match &g.initrd {
        Some((_, size)) => (l::GUEST_RAM_BASE + g.ram / 2, *size),
        None => (0, 0),
    };
    BootAddrs {
        kernel: l::GUEST_RAM_BASE + 0x20_0000,
        dtb: l::GUEST_RAM_BASE + g.ram - 0x20_0000,
        initrd,
        initrd_size,
    }
}

/// GIC interrupt specifier flags.
const IRQ_TYPE_EDGE_RISING: u32 = 1;
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
const GIC_PHANDLE: u32 = 1;

fn hi(v: u64) -> u32 {
    u32::try_from(v >> 32).unwrap_or(0)
}

fn lo(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

/// The DTB of guest `g`.
pub fn guest_dtb(r: &Resolved, g: &GuestR) -> Vec<u8> {
    let mut root = Node::new("");
    root.prop_u32("#address-cells", 2)
        .prop_u32("#size-cells", 2)
        .prop_u32("interrupt-parent", GIC_PHANDLE)
        .prop_str("compatible", "bulkhead,guest")
        .prop_str(
            "model",
            &format!("Bulkhead guest {} ({})", g.name, r.board.name),
        );

    let a = addresses(g);
    let chosen = root.child(Node::new("chosen"));
    chosen.prop_str("bootargs", &g.bootargs);
    if a.initrd != 0 {
        chosen.prop_u64s("linux,initrd-start", &[a.initrd]);
        chosen.prop_u64s("linux,initrd-end", &[a.initrd + a.initrd_size]);
    }

    let cpus = root.child(Node::new("cpus"));
    cpus.prop_u32("#address-cells", 1)
        .prop_u32("#size-cells", 0);
    for v in 0..g.vcpus {
        cpus.child(Node::new(&format!("cpu@{v}")))
            .prop_str("device_type", "cpu")
            .prop_str("compatible", "arm,armv8")
            .prop_u32("reg", v)
            .prop_str("enable-method", "psci");
    }

    root.child(Node::new("psci"))
        .prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2"])
        .prop_str("method", "smc");

    let ram = l::GUEST_RAM_BASE;
    root.child(Node::new(&format!("memory@{ram:x}")))
        .prop_str("device_type", "memory")
        .prop_u32s("reg", &[hi(ram), lo(ram), hi(g.ram), lo(g.ram)]);

    let gicd = l::GUEST_GICD;
    let gic = root.child(Node::new(&format!("interrupt-controller@{gicd:x}")));
    match r.board.gic {
        Some(bulkhead_boards::Gic::V3) => {
            let redist = 0x2_0000 * u64::from(g.vcpus);
            gic.prop_str("compatible", "arm,gic-v3").prop_u32s(
                "reg",
                &[
                    0,
                    lo(gicd),
                    0,
                    0x1_0000,
                    0,
                    lo(l::GUEST_GICR),
                    hi(redist),
                    lo(redist),
                ],
            );
        }
        _ => {
            gic.prop_str("compatible", "arm,cortex-a15-gic").prop_u32s(
                "reg",
                &[0, lo(gicd), 0, 0x1000, 0, lo(l::GUEST_GICC), 0, 0x2000],
            );
        }
    }
    gic.prop_u32("#interrupt-cells", 3)
        .prop_u32("#address-cells", 0)
        .prop_empty("interrupt-controller")
        .prop_u32("phandle", GIC_PHANDLE);

    // Secure, non-secure, virtual and hypervisor timer PPIs.
    let mut timer_irqs = Vec::new();
    for ppi in [13, 14, 11, 10] {
        timer_irqs.extend_from_slice(&[GIC_PPI, ppi, IRQ_TYPE_LEVEL_HIGH]);
    }
    root.child(Node::new("timer"))
        .prop_str("compatible", "arm,armv8-timer")
        .prop_u32s("interrupts", &timer_irqs)
        .prop_empty("always-on");

    for &c in r.classes.iter().filter(|&&c| g.uses(c)) {
        let (gpa, spi) = l::guest_virtio(c);
        root.child(Node::new(&format!("virtio_mmio@{gpa:x}")))
            .prop_str("compatible", "virtio,mmio")
            .prop_u32s("reg", &[hi(gpa), lo(gpa), 0, lo(l::GUEST_VIRTIO_SIZE)])
            .prop_u32s("interrupts", &[GIC_SPI, spi, IRQ_TYPE_EDGE_RISING])
            .prop_empty("dma-coherent");
    }

    // Reserve the device tree itself so the kernel does not reuse it early.
    root.to_dtb(&[(a.dtb, 0x20_0000)], 0)
}
