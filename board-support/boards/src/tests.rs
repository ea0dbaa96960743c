//! Consistency tests over every board in [`BOARDS`].

use super::*;

const PAGE: u64 = 0x1000;

/// IRQs that two devices of one board legitimately share (from the DT), so
/// only one of those devices can be given to a PD.
const SHARED_IRQS: &[(&str, u64)] = &[("imx8mp_evk", 122), ("imx8mm_evk", 122)];

fn overlaps(a: &Range, b: &Range) -> bool {
    a.base < b.end() && b.base < a.end()
}

#[test]
fn registry_names_are_unique_and_resolvable() {
    for (i, b) in BOARDS.iter().enumerate() {
        for other in &BOARDS[i + 1..] {
            assert_ne!(b.name, other.name);
        }
        assert_eq!(board(b.name).map(|x| x.name), Some(b.name));
    }
    assert!(board("qemu_virt_aarch64_el1").is_none());
}

#[test]
fn ranges_do_not_overlap() {
    for b in BOARDS {
        let mut all: [Option<(&str, Range)>; 64] = [None; 64];
        let mut n = 0;
        for r in b.ram {
            all[n] = Some(("ram", *r));
            n += 1;
        }
        for d in b.devices {
            all[n] = Some((d.name, d.window));
            n += 1;
        }
        for i in 0..n {
            for j in i + 1..n {
                let (an, a) = all[i].unwrap();
                let (bn, bb) = all[j].unwrap();
                assert!(!overlaps(&a, &bb), "{}: {an} overlaps {bn}", b.name);
            }
        }
    }
}

#[test]
fn windows_and_banks_are_page_aligned_and_fit_pa_bits() {
    for b in BOARDS {
        for r in b.ram {
            assert!(
                r.size > 0 && r.base % PAGE == 0 && r.size % PAGE == 0,
                "{}: ram",
                b.name
            );
            assert!(b.pa_fits(r.end() - 1), "{}: ram beyond pa_bits", b.name);
        }
        for d in b.devices {
            let w = d.window;
            assert!(w.size > 0, "{}: {} empty", b.name, d.name);
            assert_eq!(w.base % PAGE, 0, "{}: {} base", b.name, d.name);
            assert_eq!(w.size % PAGE, 0, "{}: {} size", b.name, d.name);
            assert!(
                b.pa_fits(w.end() - 1),
                "{}: {} beyond pa_bits",
                b.name,
                d.name
            );
        }
    }
}

#[test]
fn every_irq_is_claimable_and_unique_unless_documented() {
    for b in BOARDS {
        for (i, d) in b.devices.iter().enumerate() {
            for &irq in d.irqs {
                assert!(b.irq_claimable(irq), "{}: {} irq {irq}", b.name, d.name);
                // GIC INTIDs of SPIs start at 32.
                assert!(irq >= 32, "{}: {} irq {irq} is not an SPI", b.name, d.name);
                let shared = SHARED_IRQS.contains(&(b.name, irq));
                for other in &b.devices[i + 1..] {
                    if other.irqs.contains(&irq) {
                        assert!(
                            shared,
                            "{}: {} and {} share {irq}",
                            b.name, d.name, other.name
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn device_names_are_unique_per_board() {
    for b in BOARDS {
        for (i, d) in b.devices.iter().enumerate() {
            assert!(
                b.devices[i + 1..].iter().all(|o| o.name != d.name),
                "{}: {}",
                b.name,
                d.name
            );
        }
    }
}

#[test]
fn user_layout_matches_microkit() {
    for b in BOARDS {
        // IPC buffer at 0xff_ffff_f000 on every 40-bit hypervisor config.
        assert_eq!(b.user_vaddr_top - PAGE, 0xff_ffff_f000, "{}", b.name);
        assert!(b.cores >= 1);
        assert_eq!(
            b.cores_for(Config {
                kind: ConfigKind::Debug,
                smp: false
            }),
            1
        );
    }
}

#[test]
fn host_has_no_physical_resources() {
    let h = board("host").unwrap();
    assert!(h.ram.is_empty() && h.devices.is_empty() && h.gic.is_none());
    // Interrupts are host sources bound in the host-binding file; their
    // numbers stay GIC-style INTIDs (no SGIs) so descriptions are portable.
    assert!(!h.irq_claimable(0) && !h.irq_claimable(15) && !h.irq_claimable(1020));
    assert!(h.irq_claimable(33));
    assert!(!h.pa_fits(0) && !h.pa_fits(0x4000_0000));
}

#[test]
fn sel4_boards_have_a_gic_and_ram() {
    for name in ["qemu_virt_aarch64", "imx8mp_evk", "imx8mm_evk"] {
        let b = board(name).unwrap();
        assert!(
            b.gic.is_some() && !b.ram.is_empty() && b.hypervisor,
            "{name}"
        );
        assert!(b.pa_fits(0xff_ffff_ffff) && !b.pa_fits(1 << 40), "{name}");
        // Microkit builds these boards' SMP configs for 4 cores.
        assert_eq!(b.cores, 4, "{name}");
    }
}

#[test]
fn qemu_virt_facts() {
    use qemu_virt_aarch64::{pcie_intx_intid, virtio_mmio_slot};
    let b = board("qemu_virt_aarch64").unwrap();
    assert_eq!(virtio_mmio_slot(0), Some((0x0a00_0000, 48)));
    assert_eq!(virtio_mmio_slot(31), Some((0x0a00_3e00, 79)));
    assert_eq!(virtio_mmio_slot(32), None);
    // Every slot sits in a listed page whose IRQs include the slot's.
    for s in 0..32 {
        let (base, irq) = virtio_mmio_slot(s).unwrap();
        let d = b.device_containing(base, 0x200).unwrap();
        assert_eq!(d.kind, DeviceKind::VirtioMmio);
        assert!(d.irqs.contains(&irq));
    }
    // INTA of slot 1 is SPI 4; INTD of slot 0 is SPI 6; pins wrap.
    assert_eq!(pcie_intx_intid(1, 1), Some(36));
    assert_eq!(pcie_intx_intid(0, 4), Some(38));
    assert_eq!(pcie_intx_intid(3, 2), Some(35));
    assert_eq!(pcie_intx_intid(0, 0), None);
    assert_eq!(pcie_intx_intid(0, 5), None);
    let vcpu = b.device_containing(0x0804_0000, 0x1000).unwrap();
    assert_eq!(vcpu.name, "gic_vcpu");
    assert!(b.device_containing(0x40_1000_0000, 0x10_0000).is_some());
    assert!(b.ram_contains(0x4000_0000, 0x8000_0000));
    assert!(!b.ram_contains(0xbfff_f000, 0x2000));
}

#[test]
fn imx8_facts() {
    let mp = board("imx8mp_evk").unwrap();
    let mm = board("imx8mm_evk").unwrap();
    let flexcan = mp.device_containing(0x308c_0000, 0x1000).unwrap();
    assert_eq!(
        (flexcan.kind, flexcan.irqs),
        (DeviceKind::Can, &[174u64][..])
    );
    assert!(mm.devices.iter().all(|d| d.kind != DeviceKind::Can));
    assert!(mm.devices.iter().all(|d| d.name != "eqos"));
    // The 8MM rpmsg carve-out is not RAM.
    assert!(!mm.ram_contains(0xb800_0000, 0x1000));
    assert!(mm.ram_contains(0xb840_0000, 0x1000));
    assert!(mp.ram_contains(0x1_0000_0000, 0xc000_0000));
    for b in [mp, mm] {
        let uart2 = b.device_containing(0x3089_0000, 0x1000).unwrap();
        assert_eq!((uart2.name, uart2.irqs), ("uart2", &[59u64][..]));
        for d in b.devices {
            // Only the DMA engines we list are bus masters, and none is
            // confined by an IOMMU on these SoCs.
            assert!(!d.iommu);
            let master = matches!(d.kind, DeviceKind::Storage | DeviceKind::Ethernet)
                || d.name == "pcie_dbi";
            assert_eq!(d.dma, master, "{}: {}", b.name, d.name);
        }
    }
}

#[test]
fn config_names_parse() {
    for n in Config::NAMES {
        assert!(Config::parse(n).is_some());
    }
    assert!(Config::parse("smp-").is_none());
    assert_eq!(Config::parse("smp-release").map(|c| c.smp), Some(true));
}
