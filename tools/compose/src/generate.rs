//! From a [`Resolved`] system to files: the `.system` text, one
//! configuration region per PD, one device tree per guest and, on the host
//! board, the host-binding file. Pure functions of their input: the same
//! resolved system always gives the same bytes.
//!
//! The `.system` layout follows `system/README.md` (names, channel ids,
//! vaddrs, permissions); see [`crate::layout`] for the numbers.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bulkhead_config::{ConfigBuilder, SectionWriter};

use crate::dt;
use crate::layout::{self as l, hop_vaddr};
use crate::resolve::{GuestR, Resolved, SchedR};
use crate::sections as s;
use crate::Class;

/// One generated file, its path relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Relative path (`<board>.system`, `<board>/<pd>_config.bin`, …).
    pub path: String,
    /// Contents.
    pub bytes: Vec<u8>,
}

/// A map: region, vaddr, perms, cached.
type MapLine = (String, u64, &'static str, bool);

#[derive(Debug, Default)]
struct Pd {
    sched: Option<SchedR>,
    comment: String,
    maps: Vec<MapLine>,
    irqs: Vec<(u64, u64, bool)>,
    setvars: Vec<(String, String)>,
    guest: Option<usize>,
}

/// `0x0900_0000`-style hex: `_` every four digits; `pad` zero-fills to
/// whole 16-bit groups so addresses line up.
pub fn hx(n: u64, pad: bool) -> String {
    let mut digits = format!("{n:x}");
    if pad {
        let w = digits.len().div_ceil(4) * 4;
        digits = format!("{n:0w$x}");
    }
    let mut groups = Vec::new();
    while digits.len() > 4 {
        let tail = digits.split_off(digits.len() - 4);
        groups.insert(0, tail);
    }
    groups.insert(0, digits);
    format!("0x{}", groups.join("_"))
}

/// Greedy word wrap at `width` columns.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for w in text.split_whitespace() {
        if !cur.is_empty() && cur.len() + 1 + w.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// Everything written for one board.
pub fn generate(r: &Resolved, desc_name: &str) -> Result<Vec<OutputFile>, String> {
    let board = r.board;
    let bname = board.name;
    let max_ram = r.guests.iter().map(|g| g.ram).max().unwrap_or(0);
    let base = l::ring_base(max_ram);
    let stride = l::class_stride(r.guests.len());
    let gic_vcpu = if board.gic == Some(bulkhead_boards::Gic::V2) {
        board
            .devices
            .iter()
            .find(|d| d.name == "gic_vcpu")
            .map(|d| d.window.base)
    } else {
        None
    };

    let mut order: Vec<String> = Vec::new();
    let mut pds: BTreeMap<String, Pd> = BTreeMap::new();
    let mut add = |name: String, pds: &mut BTreeMap<String, Pd>, pd: Pd| {
        order.push(name.clone());
        pds.insert(name, pd);
    };
    for g in &r.guests {
        add(
            format!("{}_vmm", g.name),
            &mut pds,
            Pd {
                sched: Some(g.vmm),
                comment: if g.safety {
                    format!(
                        "VMM of the safety guest `{}`: budgeted, above the other guests' side.",
                        g.name
                    )
                } else {
                    format!(
                        "VMM of the guest `{}`: budgeted so it cannot take the safety path's time.",
                        g.name
                    )
                },
                guest: Some(g.index),
                ..Pd::default()
            },
        );
    }
    for &c in &r.classes {
        let (drv, virt) = r.services.get(&c).copied().ok_or("no scheduling")?;
        let n = c.name();
        add(
            format!("{n}_virt"),
            &mut pds,
            Pd {
                sched: Some(virt),
                comment: format!(
                    "{n} virtualiser: per-guest policy between the VMMs and {n}_driver."
                ),
                ..Pd::default()
            },
        );
        add(
            format!("{n}_driver"),
            &mut pds,
            Pd {
                sched: Some(drv),
                comment: format!(
                    "{n} driver: owns the device, its IRQs and DMA; talks only to {n}_virt."
                ),
                ..Pd::default()
            },
        );
    }

    let mut o = String::new();
    let title = r
        .description
        .clone()
        .unwrap_or_else(|| format!("Bulkhead system `{}`", r.name));
    let guest_list: Vec<String> = r
        .guests
        .iter()
        .map(|g| {
            if g.safety {
                format!("`{}` (safety domain)", g.name)
            } else {
                format!("`{}`", g.name)
            }
        })
        .collect();
    o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!--\n");
    let _ = writeln!(o, "    {title}: {bname}.");
    let _ = writeln!(o, "    {}.", board.description);
    let owned: Vec<String> = r
        .classes
        .iter()
        .map(|c| {
            let w = r
                .bindings
                .get(c)
                .map(|b| {
                    b.windows
                        .iter()
                        .map(|w| w.region.as_str())
                        .collect::<Vec<_>>()
                        .join(" + ")
                })
                .unwrap_or_default();
            if w.is_empty() {
                format!("{} a host resource", c.name())
            } else {
                format!("{} {w}", c.name())
            }
        })
        .collect();
    let owned = if r.bindings.values().all(|b| b.windows.is_empty()) {
        "Drivers own host resources, bound in host.host.toml.".to_string()
    } else {
        format!("Drivers own: {}.", owned.join("; "))
    };
    for line in wrap(&owned, 76) {
        let _ = writeln!(o, "    {line}");
    }
    if !r.omitted.is_empty() {
        let left: Vec<&str> = r.omitted.iter().map(|c| c.human()).collect();
        let _ = writeln!(
            o,
            "    Left out here (the board lacks it): {}.",
            left.join(", ")
        );
    }
    o.push('\n');
    let intro = format!(
        "Guests: {}; each a virtual machine in its own VMM PD. Per device class a driver PD owns the device and a virtualiser PD multiplexes it; every hop is a request queue, a response queue, one-writer data regions and a channel. Each PD's configuration is a read-only prefilled region ({bname}/<pd>_config.bin).",
        guest_list.join(", ")
    );
    for line in wrap(&intro, 76) {
        let _ = writeln!(o, "    {line}");
    }
    let _ = writeln!(
        o,
        "    GENERATED by `bulkhead compose` from {desc_name}: edit that, not this"
    );
    o.push_str("    file, and regenerate (tools/compose/README.md). Names and ids:\n");
    o.push_str("    system/automotive/README.md; rules: system/README.md.\n-->\n<system>\n");

    // Every memory region's size, for each PD's `MAPS` section.
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();

    // --- guest RAM ---------------------------------------------------------
    o.push_str("    <!-- Guest RAM: mapped into its VM and into that VM's VMM only. -->\n");
    for g in &r.guests {
        let _ = writeln!(
            o,
            "    <memory_region name=\"{}_ram\" size=\"{}\" page_size=\"0x20_0000\" />",
            g.name,
            hx(g.ram, false)
        );
        sizes.insert(format!("{}_ram", g.name), g.ram);
        if let Some(pd) = pds.get_mut(&format!("{}_vmm", g.name)) {
            pd.maps
                .push((format!("{}_ram", g.name), l::GUEST_RAM_BASE, "rw", true));
        }
    }
    if let Some(pa) = gic_vcpu {
        o.push('\n');
        o.push_str("    <!-- GICv2 virtual CPU interface (GICV). Each VM maps it as its GIC CPU\n");
        o.push_str(
            "         interface; the hardware shows the state of whichever vCPU the kernel\n",
        );
        o.push_str("         has loaded, so this page carries no data between the VMs. -->\n");
        let _ = writeln!(
            o,
            "    <memory_region name=\"gic_vcpu\" size=\"0x1000\" phys_addr=\"{}\" />",
            hx(pa, true)
        );
    }

    // --- rings, devices, DMA (maps collected per PD) -------------------------
    let mut ring_text = String::new();
    for &c in &r.classes {
        let n = c.name();
        let users: Vec<&GuestR> = r.guests.iter().filter(|g| g.uses(c)).collect();
        let hop_names: Vec<String> = users.iter().map(|g| format!("`{}`", g.name)).collect();
        let binding = r.bindings.get(&c).cloned().unwrap_or_default();
        ring_text.push('\n');
        let _ = writeln!(
            ring_text,
            "    <!-- {n}: rings between {n}_virt and {n}_driver (hop `drv`) and between"
        );
        let _ = writeln!(
            ring_text,
            "         each VMM and {n}_virt (hops {}). -->",
            hop_names.join(", ")
        );
        let mut hops: Vec<(String, usize, String, String)> =
            vec![("drv".into(), 0, format!("{n}_virt"), format!("{n}_driver"))];
        for g in &users {
            hops.push((
                g.name.clone(),
                g.index + 1,
                format!("{}_vmm", g.name),
                format!("{n}_virt"),
            ));
        }
        for (hop, slot, upper, lower) in &hops {
            for &(part, off) in l::parts(c) {
                let queue = part == "req" || part == "resp";
                let size = if queue {
                    l::QUEUE_SIZE
                } else {
                    l::data_size(c)
                };
                let rname = format!("{n}_{hop}_{part}");
                sizes.insert(rname.clone(), size);
                let _ = writeln!(
                    ring_text,
                    "    <memory_region name=\"{rname}\" size=\"{}\" />",
                    hx(size, false)
                );
                let va = hop_vaddr(base, stride, c, *slot, off);
                // Queues hold a producer index written by one side and a
                // consumer index written by the other: rw at both ends.
                // Data regions have one writer: `out` the upper side.
                let (up, low) = match part {
                    "out" => ("rw", "r"),
                    "in" => ("r", "rw"),
                    _ => ("rw", "rw"),
                };
                if let Some(p) = pds.get_mut(upper) {
                    p.maps.push((rname.clone(), va, up, true));
                }
                if let Some(p) = pds.get_mut(lower) {
                    p.maps.push((rname.clone(), va, low, true));
                    // A bus-master device reads `out` and writes `in` of the
                    // driver hop by physical address.
                    if hop == "drv" && !queue && binding.dma.is_some() {
                        p.setvars.push((format!("{rname}_paddr"), rname.clone()));
                    }
                }
            }
        }
        let drv_name = format!("{n}_driver");
        if !binding.windows.is_empty() {
            let _ = writeln!(
                ring_text,
                "    <!-- {n}_driver's device registers: mapped uncached into {n}_driver only. -->"
            );
        }
        let mut irq_id = 1;
        for (i, w) in binding.windows.iter().enumerate() {
            let _ = writeln!(
                ring_text,
                "    <memory_region name=\"{}\" size=\"{}\" phys_addr=\"{}\" />",
                w.region,
                hx(w.size, false),
                hx(w.paddr, true)
            );
            sizes.insert(w.region.clone(), w.size);
            if let Some(p) = pds.get_mut(&drv_name) {
                p.maps.push((
                    w.region.clone(),
                    l::DEVICE_VADDR + i as u64 * l::DEVICE_STRIDE,
                    "rw",
                    false,
                ));
                for &irq in &w.irqs {
                    p.irqs.push((irq, irq_id, w.edge));
                    irq_id += 1;
                }
            }
        }
        if let Some(dma) = binding.dma {
            let _ = writeln!(
                ring_text,
                "    <!-- DMA descriptor memory of {n}_driver's bus-master device (uncached). -->"
            );
            let _ = writeln!(
                ring_text,
                "    <memory_region name=\"{n}_dma\" size=\"{}\" />",
                hx(dma, false)
            );
            sizes.insert(format!("{n}_dma"), dma);
            if let Some(p) = pds.get_mut(&drv_name) {
                p.maps.push((format!("{n}_dma"), l::DMA_VADDR, "rw", false));
                p.setvars
                    .push((format!("{n}_dma_paddr"), format!("{n}_dma")));
            }
        }
    }

    // Storage budgets refill from the clock, but only an event lets
    // `blk_virt` act on a refill: on the host board a host timer is that
    // event (bound in host.host.toml). On seL4 it would be a timer driver
    // PD's notification; without one a throttled request waits for the
    // next driver or guest event.
    if bname == "host" && crate::host::blk_tick_period_us(r).is_some() {
        if let Some(p) = pds.get_mut("blk_virt") {
            p.irqs
                .push((crate::host::BLK_TICK_IRQ, crate::host::BLK_TICK_ID, false));
        }
    }

    // --- configuration regions ---------------------------------------------
    let mut files = Vec::new();
    let mut dtbs: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    for g in &r.guests {
        let dtb = g.device_tree.clone().unwrap_or_else(|| dt::guest_dtb(r, g));
        files.push(OutputFile {
            path: format!("{bname}/{}.dtb", g.name),
            bytes: dtb.clone(),
        });
        dtbs.insert(g.index, dtb);
    }
    o.push('\n');
    o.push_str("    <!-- Read-only configuration of each PD (bulkhead_config format; section\n");
    o.push_str("         layouts in tools/compose/src/sections.rs). -->\n");
    let mut configs = Vec::new();
    for name in &order {
        let maps = pds
            .get(name)
            .map(|p| maps_section(&p.maps, &sizes))
            .transpose()?
            .unwrap_or_default();
        let bytes = config_for(r, name, base, stride, &dtbs, &maps)?;
        let size = (bytes.len() as u64).div_ceil(0x1000) * 0x1000;
        let _ = writeln!(o, "    <memory_region name=\"{name}_config\" size=\"{}\" prefill_path=\"{bname}/{name}_config.bin\" />", hx(size, false));
        configs.push(OutputFile {
            path: format!("{bname}/{name}_config.bin"),
            bytes,
        });
        if let Some(p) = pds.get_mut(name) {
            p.maps.insert(
                usize::from(p.guest.is_some()),
                (format!("{name}_config"), l::CONFIG_VADDR, "r", true),
            );
        }
    }
    files.extend(configs);
    o.push_str(&ring_text);

    // --- protection domains --------------------------------------------------
    for name in &order {
        let Some(p) = pds.get(name) else { continue };
        let sc = p.sched.ok_or("no scheduling")?;
        o.push('\n');
        let _ = writeln!(o, "    <!-- {} -->", p.comment);
        let cpu = if sc.cpu != 0 {
            format!(" cpu=\"{}\"", sc.cpu)
        } else {
            String::new()
        };
        // VMMs and virtualisers build their state (device models, queues,
        // per-guest policies) by value in `init`: more than Microkit's
        // 8 KiB default stack.
        let stack = if name.ends_with("_vmm") || name.ends_with("_virt") {
            format!(" stack_size=\"{}\"", hx(l::STATE_STACK_SIZE, false))
        } else {
            String::new()
        };
        let _ = writeln!(o, "    <protection_domain name=\"{name}\" priority=\"{}\" budget=\"{}\" period=\"{}\"{cpu}{stack}>", sc.priority, sc.budget, sc.period);
        let _ = writeln!(o, "        <program_image path=\"{name}.elf\" />");
        for (mr, va, perms, cached) in &p.maps {
            let mut extra = if *cached { "" } else { " cached=\"false\"" }.to_string();
            // The runtime finds its configuration through these two setvars
            // (on seL4 nothing else tells a PD where it is).
            if *mr == format!("{name}_config") {
                extra.push_str(
                    " setvar_vaddr=\"bulkhead_config_vaddr\" setvar_size=\"bulkhead_config_size\"",
                );
            }
            let _ = writeln!(
                o,
                "        <map mr=\"{mr}\" vaddr=\"{}\" perms=\"{perms}\"{extra} />",
                hx(*va, true)
            );
        }
        for (irq, id, edge) in &p.irqs {
            let _ = writeln!(
                o,
                "        <irq irq=\"{irq}\" id=\"{id}\" trigger=\"{}\" />",
                if *edge { "edge" } else { "level" }
            );
        }
        for (sym, mr) in &p.setvars {
            let _ = writeln!(
                o,
                "        <setvar symbol=\"{sym}\" region_paddr=\"{mr}\" />"
            );
        }
        if let Some(gi) = p.guest {
            let g = r.guests.get(gi).ok_or("no guest")?;
            let vm = g.vm;
            let _ = writeln!(
                o,
                "        <virtual_machine name=\"{}\" priority=\"{}\" budget=\"{}\" period=\"{}\">",
                g.name, vm.priority, vm.budget, vm.period
            );
            for v in 0..g.vcpus {
                let core = vm.cpu + v;
                if core != 0 {
                    let _ = writeln!(o, "            <vcpu id=\"{v}\" cpu=\"{core}\" />");
                } else {
                    let _ = writeln!(o, "            <vcpu id=\"{v}\" />");
                }
            }
            let _ = writeln!(
                o,
                "            <map mr=\"{}_ram\" vaddr=\"{}\" perms=\"rwx\" />",
                g.name,
                hx(l::GUEST_RAM_BASE, true)
            );
            if gic_vcpu.is_some() {
                let _ = writeln!(o, "            <map mr=\"gic_vcpu\" vaddr=\"{}\" perms=\"rw\" cached=\"false\" />", hx(l::GUEST_GICC, true));
            }
            o.push_str("        </virtual_machine>\n");
        }
        o.push_str("    </protection_domain>\n");
    }

    // --- channels ----------------------------------------------------------
    o.push('\n');
    o.push_str(
        "    <!-- Channels: notifications only (no PPC). Ids: VMM 1 serial, 2 blk, 3 eth,\n",
    );
    o.push_str("         4 can, 5 snd; virtualiser 0 driver, guest i (from 0) i + 1;\n");
    o.push_str("         driver 0 virtualiser, IRQs from 1. -->\n");
    for &c in &r.classes {
        let n = c.name();
        let _ = write!(o, "    <channel>\n        <end pd=\"{n}_virt\" id=\"0\" />\n        <end pd=\"{n}_driver\" id=\"0\" />\n    </channel>\n");
        for g in r.guests.iter().filter(|g| g.uses(c)) {
            let _ = write!(
                o,
                "    <channel>\n        <end pd=\"{}_vmm\" id=\"{}\" />\n        <end pd=\"{n}_virt\" id=\"{}\" />\n    </channel>\n",
                g.name,
                c.vmm_channel(),
                g.index + 1
            );
        }
    }
    o.push_str("</system>\n");

    files.insert(
        0,
        OutputFile {
            path: format!("{bname}.system"),
            bytes: o.into_bytes(),
        },
    );
    if bname == "host" {
        files.push(OutputFile {
            path: "host.host.toml".into(),
            bytes: crate::host::binding_file(r, desc_name).into_bytes(),
        });
    }
    Ok(files)
}

/// The runtime's `MAPS` section of a PD (layout in `sections.rs`): every
/// map but the configuration's own, in the order of its `<map>` lines.
fn maps_section(maps: &[MapLine], sizes: &BTreeMap<String, u64>) -> Result<Vec<u8>, String> {
    let mut w = SectionWriter::new();
    w.u32(s::count(maps.len())).u32(0);
    for (mr, va, perms, cached) in maps {
        let size = sizes
            .get(mr)
            .ok_or_else(|| format!("internal: no size for region {mr}"))?;
        if mr.is_empty() || mr.len() > s::MAPS_NAME_MAX {
            return Err(format!(
                "region name {mr:?} is longer than {} bytes",
                s::MAPS_NAME_MAX
            ));
        }
        let bits = perms.bytes().fold(0u8, |b, c| {
            b | match c {
                b'r' => 1,
                b'w' => 2,
                b'x' => 4,
                _ => 0,
            }
        });
        w.u64(*va).u64(*size);
        w.u8(bits).u8(u8::from(*cached));
        w.u8(u8::try_from(mr.len()).unwrap_or(0));
        w.bytes(&[0; 5]);
        let mut name = [0u8; s::MAPS_NAME_MAX];
        name[..mr.len()].copy_from_slice(mr.as_bytes());
        w.bytes(&name);
    }
    Ok(w.into_bytes())
}

/// The configuration region of PD `name`.
fn config_for(
    r: &Resolved,
    name: &str,
    base: u64,
    stride: u64,
    dtbs: &BTreeMap<usize, Vec<u8>>,
    maps: &[u8],
) -> Result<Vec<u8>, String> {
    let mut b = ConfigBuilder::new(name).optional_section(s::RUNTIME_MAPS, s::VERSION, maps);
    let err = |e: bulkhead_config::ConfigError| format!("configuration of {name}: {e:?}");
    if let Some(g) = r.guests.iter().find(|g| format!("{}_vmm", g.name) == name) {
        let gic = match r.board.gic {
            Some(bulkhead_boards::Gic::V2) => 2,
            Some(bulkhead_boards::Gic::V3) => 3,
            None => 0,
        };
        let a = dt::addresses(g);
        let mut w = SectionWriter::new();
        w.u64(l::GUEST_RAM_BASE).u64(g.ram).u64(l::GUEST_RAM_BASE);
        w.u32(g.vcpus).u32(g.vm.cpu);
        w.u64(a.kernel).u64(a.dtb).u64(a.initrd).u64(a.initrd_size);
        w.u32(gic).u32(0);
        b = b.section(s::VMM_GUEST, s::VERSION, &w.into_bytes());

        let used: Vec<Class> = r.classes.iter().copied().filter(|&c| g.uses(c)).collect();
        let mut w = SectionWriter::new();
        w.u32(s::count(used.len())).u32(0);
        for c in used {
            let (gpa, spi) = l::guest_virtio(c);
            w.u32(c.virtio_id()).u32(c.vmm_channel());
            w.u64(gpa).u64(l::GUEST_VIRTIO_SIZE).u32(spi + 32).u32(0);
            w.u64(hop_vaddr(base, stride, c, g.index + 1, 0));
        }
        b = b.section(s::VMM_VIRTIO, s::VERSION, &w.into_bytes());

        let kernel = g.kernel.clone().unwrap_or_default();
        let initrd = g
            .initrd
            .as_ref()
            .map(|(p, _)| p.clone())
            .unwrap_or_default();
        let mut w = SectionWriter::new();
        let len16 = |s: &str| u16::try_from(s.len()).unwrap_or(u16::MAX);
        w.u16(len16(&kernel)).u16(len16(&initrd)).u32(0);
        w.bytes(kernel.as_bytes())
            .bytes(initrd.as_bytes())
            .pad_to(8);
        b = b.section(s::VMM_IMAGES, s::VERSION, &w.into_bytes());
        if let Some(dtb) = dtbs.get(&g.index) {
            b = b.section(s::VMM_DTB, s::VERSION, dtb);
        }
        return b.build().map_err(err);
    }
    let Some(&c) = r
        .classes
        .iter()
        .find(|c| name == format!("{}_virt", c.name()) || name == format!("{}_driver", c.name()))
    else {
        return Err(format!("no configuration for {name}"));
    };
    let users: Vec<&GuestR> = r.guests.iter().filter(|g| g.uses(c)).collect();
    let drv_hop = hop_vaddr(base, stride, c, 0, 0);
    if name.ends_with("_driver") {
        let binding = r.bindings.get(&c).cloned().unwrap_or_default();
        let mut w = SectionWriter::new();
        w.u32(0).u32(s::count(binding.windows.len()));
        w.u64(drv_hop).u64(l::data_size(c));
        w.u64(if binding.dma.is_some() {
            l::DMA_VADDR
        } else {
            0
        })
        .u64(binding.dma.unwrap_or(0));
        let mut irq_id = 1u32;
        for (i, win) in binding.windows.iter().enumerate() {
            s::name16(&mut w, &win.region);
            w.u64(l::DEVICE_VADDR + i as u64 * l::DEVICE_STRIDE)
                .u64(win.paddr)
                .u64(win.size);
            let n = s::count(win.irqs.len());
            w.u32(n).u32(if n == 0 { 0 } else { irq_id });
            irq_id += n;
        }
        return b
            .section(s::device_id(c), s::VERSION, &w.into_bytes())
            .build()
            .map_err(err);
    }
    let mut w = SectionWriter::new();
    w.u32(0)
        .u32(s::count(users.len()))
        .u64(drv_hop)
        .u64(l::data_size(c));
    for g in &users {
        w.u32(s::count(g.index + 1))
            .u32(s::count(g.index))
            .u64(hop_vaddr(base, stride, c, g.index + 1, 0));
    }
    b = b.section(s::hops_id(c), s::VERSION, &w.into_bytes());
    let mut w = SectionWriter::new();
    let chan = |g: &GuestR| s::count(g.index + 1);
    match c {
        Class::Serial => {
            w.u32(s::count(users.len())).u32(0);
            for g in &users {
                let con = g.console.clone().unwrap_or(crate::resolve::ConsoleR {
                    prefix: String::new(),
                    input: false,
                });
                w.u32(chan(g)).u32(u32::from(con.input));
                s::name16(&mut w, &con.prefix);
            }
            b = b.section(s::SERIAL_POLICY, s::VERSION, &w.into_bytes());
        }
        Class::Blk => {
            w.u32(s::count(users.len())).u32(0);
            for g in &users {
                let Some(st) = &g.storage else { continue };
                w.u32(chan(g)).u32(u32::from(st.read_only));
                w.u64(st.start)
                    .u64(st.size)
                    .u32(st.ops)
                    .u32(st.period_us)
                    .u64(st.bytes);
            }
            b = b.section(s::BLK_POLICY, s::VERSION, &w.into_bytes());
        }
        Class::Can => {
            w.u32(s::count(users.len())).u32(0);
            for g in &users {
                let Some(cn) = &g.can else { continue };
                let n16 = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
                w.u32(chan(g))
                    .u16(n16(cn.filters.len()))
                    .u16(n16(cn.tx.len()));
                w.u32(cn.frames).u32(cn.bits).u32(cn.period_us).u32(0);
                for (id, mask) in &cn.filters {
                    w.u32(*id).u32(*mask);
                }
                for id in &cn.tx {
                    w.u32(*id);
                }
                w.pad_to(8);
            }
            b = b.section(s::CAN_POLICY, s::VERSION, &w.into_bytes());
        }
        Class::Eth => {
            w.u32(r.link_mbps).u32(s::count(users.len()));
            for g in &users {
                let Some(e) = &g.eth else { continue };
                w.u32(chan(g)).u16(e.vlan.unwrap_or(0)).u8(e.pcp).u8(0);
                w.bytes(&e.mac).u16(0).u32(e.reserved_mbps).u32(0);
            }
            b = b.section(s::ETH_POLICY, s::VERSION, &w.into_bytes());
        }
        Class::Snd => {
            w.u32(s::count(users.len())).u32(0);
            for g in &users {
                let Some(a) = &g.audio else { continue };
                w.u32(chan(g))
                    .u8(a.class as u8)
                    .u8(u8::try_from(a.streams.len()).unwrap_or(u8::MAX))
                    .u16(0);
                for st in &a.streams {
                    s::name16(&mut w, &st.name);
                    w.u8(u8::from(st.capture))
                        .u8(st.channels)
                        .u16(0)
                        .u32(st.rate);
                }
            }
            b = b.section(s::SND_POLICY, s::VERSION, &w.into_bytes());
        }
    }
    b.build().map_err(err)
}
