//! `bulkhead report`: the access matrix as text or JSON.
//!
//! The text form is meant for a reviewer: per memory region who maps it
//! where and how; per PD pair the channels and their directions; IRQs;
//! vCPUs; scheduling; and, per actor, a one-line summary of everything it
//! can touch. The JSON form carries the same facts for tools.

use crate::access::{perms_str, AccessModel, ActorKind};
use bulkhead_sdf::model::Trigger;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Version tag of the JSON report; bump on incompatible changes.
pub const JSON_FORMAT: &str = "bulkhead-report/1";

fn size_str(bytes: u64) -> String {
    const KIB: u64 = 1024;
    if bytes >= KIB * KIB && bytes % (KIB * KIB) == 0 {
        format!("{} MiB", bytes / (KIB * KIB))
    } else if bytes >= KIB && bytes % KIB == 0 {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}

fn trigger_str(t: Trigger) -> &'static str {
    match t {
        Trigger::Level => "level",
        Trigger::Edge => "edge",
    }
}

/// The report as text.
pub fn text(m: &AccessModel) -> String {
    let mut o = String::new();
    let pds = m.actors.iter().filter(|a| a.kind == ActorKind::Pd).count();
    let vms = m.actors.len() - pds;
    // Writing to a String cannot fail; `let _ =` keeps clippy quiet without unwrap.
    let _ = writeln!(
        o,
        "{pds} PDs, {vms} VMs, {} memory regions, {} channels, {} IRQs",
        m.regions.len(),
        m.channels.len(),
        m.irqs.len()
    );

    let _ = writeln!(o, "\nScheduling");
    let _ = writeln!(
        o,
        "  {:<22} {:<4} {:<20} {:>4} {:>10} {:>10} {:>7} {:>3} {:>8}",
        "name", "kind", "parent", "prio", "budget µs", "period µs", "passive", "cpu", "stack"
    );
    for a in &m.actors {
        let parent = match (&a.parent, a.child_id) {
            (Some(p), Some(id)) => format!("{p} (id {id})"),
            (Some(p), None) => p.clone(),
            (None, _) => "-".to_string(),
        };
        let stack = if a.kind == ActorKind::Pd {
            format!("{:#x}", a.stack_size)
        } else {
            "-".to_string()
        };
        let _ = writeln!(
            o,
            "  {:<22} {:<4} {:<20} {:>4} {:>10} {:>10} {:>7} {:>3} {:>8}",
            a.name,
            a.kind.as_str(),
            parent,
            a.priority,
            a.budget,
            a.period,
            if a.passive { "yes" } else { "no" },
            a.cpu,
            stack
        );
    }

    let _ = writeln!(
        o,
        "\nMemory regions (who maps each, where, with which rights)"
    );
    for r in &m.regions {
        let size = r.size.map_or_else(|| "?".to_string(), size_str);
        let mut extra = String::new();
        if let Some(pa) = r.phys_addr {
            let _ = write!(extra, " phys {pa:#x}");
        }
        if let Some(p) = &r.prefill {
            let _ = write!(extra, " prefill {p}");
        }
        let _ = writeln!(
            o,
            "  {} ({size}, page {}){extra}",
            r.name,
            size_str(r.page_size)
        );
        if r.mappings.is_empty() {
            let _ = writeln!(o, "      (mapped by nobody)");
        }
        for mp in &r.mappings {
            let _ = writeln!(
                o,
                "      {:<3} {:<22} at {:#014x} {:<3}{}",
                mp.kind.as_str(),
                mp.who,
                mp.vaddr,
                perms_str(mp.perms),
                if mp.cached { "" } else { " uncached" }
            );
        }
    }

    let _ = writeln!(o, "\nChannels");
    for c in &m.channels {
        let mut caps = Vec::new();
        if c.a_notifies_b {
            caps.push(format!("{} notifies {}", c.a, c.b));
        }
        if c.b_notifies_a {
            caps.push(format!("{} notifies {}", c.b, c.a));
        }
        if c.a_calls_b {
            caps.push(format!("{} calls {} (PPC)", c.a, c.b));
        }
        if c.b_calls_a {
            caps.push(format!("{} calls {} (PPC)", c.b, c.a));
        }
        if caps.is_empty() {
            caps.push("no capability in either direction".to_string());
        }
        let _ = writeln!(
            o,
            "  {}:{} <-> {}:{}  {}",
            c.a,
            c.a_id,
            c.b,
            c.b_id,
            caps.join("; ")
        );
    }

    let _ = writeln!(o, "\nIRQs");
    if m.irqs.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for i in &m.irqs {
        let _ = writeln!(
            o,
            "  irq {:<5} -> {}:{} ({})",
            i.irq,
            i.pd,
            i.id,
            trigger_str(i.trigger)
        );
    }

    let _ = writeln!(o, "\nvCPUs");
    if m.vcpus.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for v in &m.vcpus {
        let _ = writeln!(
            o,
            "  {} vcpu {} on cpu {} (faults to {}:{})",
            v.vm, v.id, v.cpu, v.vmm, v.id
        );
    }

    let _ = writeln!(o, "\nWhat each actor can touch");
    for a in &m.actors {
        let mut items = Vec::new();
        for r in &m.regions {
            for mp in r.mappings.iter().filter(|mp| mp.who == a.name) {
                items.push(format!("{}:{}", r.name, perms_str(mp.perms)));
            }
        }
        for c in &m.channels {
            let ends = [
                (
                    &c.a,
                    c.a_id,
                    &c.b,
                    c.a_notifies_b,
                    c.a_calls_b,
                    c.b_notifies_a,
                    c.b_calls_a,
                ),
                (
                    &c.b,
                    c.b_id,
                    &c.a,
                    c.b_notifies_a,
                    c.b_calls_a,
                    c.a_notifies_b,
                    c.a_calls_b,
                ),
            ];
            for (me, id, peer, notifies, calls, notified, called) in ends {
                if *me != a.name {
                    continue;
                }
                let caps: Vec<&str> = [
                    (notifies, "notify"),
                    (calls, "call"),
                    (notified, "is notified"),
                    (called, "serves calls"),
                ]
                .into_iter()
                .filter_map(|(on, what)| on.then_some(what))
                .collect();
                items.push(format!("ch{id} {peer} ({})", caps.join("+")));
            }
        }
        for i in m.irqs.iter().filter(|i| i.pd == a.name) {
            items.push(format!("irq{}", i.irq));
        }
        for v in m.vcpus.iter().filter(|v| v.vmm == a.name) {
            items.push(format!("vm {} vcpu{}", v.vm, v.id));
        }
        for c in m
            .actors
            .iter()
            .filter(|c| c.parent.as_deref() == Some(&a.name))
        {
            if c.kind == ActorKind::Pd {
                items.push(format!("child {}", c.name));
            }
        }
        let _ = writeln!(o, "  {}: {}", a.name, items.join(", "));
    }
    // Padding leaves trailing blanks on some lines; reviewers diff this text.
    o.lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n"
}

/// The report as JSON.
pub fn json(m: &AccessModel) -> Value {
    let perms = |p: bulkhead_sdf::model::Perms| json!({"read": p.read, "write": p.write, "execute": p.execute});
    json!({
        "format": JSON_FORMAT,
        "actors": m.actors.iter().map(|a| json!({
            "name": a.name, "kind": a.kind.as_str(), "parent": a.parent,
            "child_id": a.child_id, "priority": a.priority, "budget_us": a.budget,
            "period_us": a.period, "passive": a.passive, "cpu": a.cpu,
            "stack_size": a.stack_size, "program_image": a.image,
        })).collect::<Vec<_>>(),
        "memory_regions": m.regions.iter().map(|r| json!({
            "name": r.name, "size": r.size, "page_size": r.page_size,
            "phys_addr": r.phys_addr, "prefill": r.prefill,
            "mappings": r.mappings.iter().map(|mp| json!({
                "who": mp.who, "kind": mp.kind.as_str(), "vaddr": mp.vaddr,
                "perms": perms(mp.perms), "cached": mp.cached,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "channels": m.channels.iter().map(|c| json!({
            "a": {"pd": c.a, "id": c.a_id, "notify": c.a_notifies_b, "pp": c.a_calls_b},
            "b": {"pd": c.b, "id": c.b_id, "notify": c.b_notifies_a, "pp": c.b_calls_a},
        })).collect::<Vec<_>>(),
        "irqs": m.irqs.iter().map(|i| json!({
            "pd": i.pd, "irq": i.irq, "id": i.id, "trigger": trigger_str(i.trigger),
        })).collect::<Vec<_>>(),
        "vcpus": m.vcpus.iter().map(|v| json!({
            "vm": v.vm, "vmm": v.vmm, "id": v.id, "cpu": v.cpu,
        })).collect::<Vec<_>>(),
    })
}
