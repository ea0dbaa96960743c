//! The checklist registry: one entry per item of `automotive.md`, in order.
//!
//! To add a test when a device class is wired on the host board: write a
//! [`crate::TestFn`] and put `Ok(that_fn)` into the item's `test` field in
//! [`registry`]. Nothing is found by name.

use crate::scenario::{
    noisy, safety_checks, safety_findings, Ctx, Profile, RunResult, Variant, MAX_LATE_PERCENT,
    SAFETY_PARTNER, UNTRUSTED_PD,
};
use crate::stats::{percentile, T1_TOLERANCE};
use crate::{Distribution, Item, Outcome, Status};

const D_MEM: &str = "D.2.3 memory";
const D_TIME: &str = "D.2.2 timing and execution";
const D_INFO: &str = "D.2.4 exchange of information";

/// The checklist, in the order of `automotive.md`.
pub fn registry() -> Vec<Item> {
    vec![
        Item {
            id: "M1",
            annex_d: D_MEM,
            attacks: "a compromised infotainment_vmm writes its own read-only map, reads and writes the safety CAN ring's address and the other VMM's console ring address, maps descriptors, writes another process (process_vm_writev)",
            measures: "monitor fault/stop report per attack (PD, kind, address); cluster_ram checksum; cluster_vmm tick gaps and round trips",
            criterion: "every attack ends in a fault or seccomp stop of infotainment_vmm naming it (faults at the attacked address); no attack reports success; checksum unchanged; ≤ 2 % of ticks more than 2 ms after the previous one (p99 tick gap ≤ 2 ms); every safety round trip answered",
            test: Ok(m1),
            removed_by: &["seccomp", "ro-maps"],
        },
        Item {
            id: "M2",
            annex_d: D_MEM,
            attacks: "descriptors pointing outside the guest's RAM, overlapping, huge lengths",
            measures: "backend rejections; device accesses outside the window",
            criterion: "all rejected; no device access outside the guest window",
            test: Err("not written yet: the storage and CAN paths run on the host board (C1), but M2 needs a hostile guest whose virtio descriptors point outside its RAM, overlap or carry huge lengths, with the device accesses observed; the virtio core's hostile-descriptor cases are unit tests (components/virtio-core), not this suite"),
            removed_by: &[],
        },
        Item {
            id: "M3",
            annex_d: D_MEM,
            attacks: "the guest rewrites rings/config while the backend reads them",
            measures: "torn state reaching S",
            criterion: "backend copies then validates; nothing torn reaches S",
            test: Err("not written yet: needs a guest that rewrites its rings while the VMM reads them, with the cluster's path observed for torn state; the copy-then-validate rule is tested in the virtio core and VMM unit tests, not this suite"),
            removed_by: &[],
        },
        Item {
            id: "M4",
            annex_d: D_MEM,
            attacks: "infotainment_vmm overflows its stack (recursion of 4 KiB frames to 32 MiB below its start, 4 × the default 8 MiB stack limit)",
            measures: "the monitor's fault report; which PDs are affected; cluster_vmm's period and round trips",
            criterion: "a fault of infotainment_vmm only (never a silent write below the stack: the recursion must not return); no monitor line about any other PD; safety checks as M1; not enforced when the host's stack limit exceeds 32 MiB (legal growth could then reach that deep)",
            test: Ok(m4),
            removed_by: &["stack-guard"],
        },
        Item {
            id: "T1",
            annex_d: D_TIME,
            attacks: "infotainment_vmm busy-loops; infotainment_vmm storms can_virt (the shared safety virtualiser) with notifications",
            measures: "cluster_vmm -> can_virt -> cluster_vmm round-trip time on a 1 ms period, baseline (idle infotainment) and attacked, in the same suite run",
            criterion: "attacked p99 ≤ 1.5 × baseline p99 + 50 µs; ≤ 2 % of ticks more than 2 ms after the previous one (p99 tick gap ≤ 2 ms); no lost round trip; samples = runs × 1000 per condition (--samples sets runs)",
            test: Ok(t1),
            removed_by: &["priorities"],
        },
        Item {
            id: "T2",
            annex_d: D_TIME,
            attacks: "the guest stops consuming RX or never returns TX buffers",
            measures: "S's latency; which guest loses data",
            criterion: "only the attacker loses data; S's latency as T1",
            test: Err("not written yet: needs a guest that stops consuming CAN RX (or never returns TX buffers) while the cluster's frames are timed; the test guests here send and listen but time nothing"),
            removed_by: &[],
        },
        Item {
            id: "T3",
            annex_d: D_TIME,
            attacks: "infotainment_vmm crashes; infotainment_vmm hangs (busy-loop); can_virt (S's callee on its path) crashes after 300 requests",
            measures: "whether cluster_vmm keeps ticking and finishes; when it notices the dead partner",
            criterion: "cluster_vmm finishes every run (nothing waits forever); with a dead can_virt it detects the outage on the next tick (lost > 0, period kept) and the monitor names can_virt's fault; PPC callers of restartable callees are refused statically by `bulkhead prove` (rule F004), since a Microkit PPC caller of a dead callee blocks for ever.",
            test: Ok(t3),
            removed_by: &["priorities"],
        },
        Item {
            id: "T4",
            annex_d: D_TIME,
            attacks: "infotainment_vmm notifies can_virt at random rates (random bursts, random pauses)",
            measures: "sequence numbers on every safety round trip",
            criterion: "0 lost wake-ups and 0 mismatched sequence numbers in runs × 1000 round trips",
            test: Ok(t4),
            removed_by: &["wakeups"],
        },
        Item {
            id: "C1",
            annex_d: D_INFO,
            attacks: "reference system: the infotainment guest (can_infotainment) sends the cluster's CAN id 0x300 three times through its VMM; the infotainment guest (blk_oob) writes across and past the end of its partition and reads past it (4 requests); Ethernet source MAC/VLAN PCP: not built",
            measures: "guest replies; can_virt's whitelist-drop counter; every frame on the bus (can_driver's bus model, trace bus); SHA-256 of the disk image outside infotainment's partition before and after",
            criterion: "CAN: 3 of 3 refused, counted by can_virt, none on the bus, while infotainment's own 0x480 and the cluster's own 0x300 (3 each) reach it; storage: 4 of 4 refused and the disk outside infotainment's partition (the cluster's partition, the partition tables) unchanged; no PD but the attacker's side reported by the monitor beyond the unattacked run; Ethernet not covered (class not built). Protection-removed build: can_virt without its whitelist; the storage part has none yet — the VMM's virtio-blk capacity check refuses these requests before blk_virt's bounds check sees them (defence in depth), so showing blk_virt's check alone needs a compromised-VMM attacker on the blk hop",
            test: Ok(crate::devices::c1),
            removed_by: &["can-whitelist"],
        },
        Item {
            id: "C2",
            annex_d: D_INFO,
            attacks: "infotainment saturates CAN at 100 %, Ethernet at line rate, block at full queue depth",
            measures: "S's frame/IO latency",
            criterion: "S's frames/IO meet their bound",
            test: Err("not written yet: needs a cluster guest that times its CAN frames / block I/O while infotainment floods at its budget or full queue depth (the paths exist; a timing guest does not); blk_virt does not enforce I/O budgets on the host board (no clock: it says so at start); Ethernet not built"),
            removed_by: &[],
        },
        Item {
            id: "C3",
            annex_d: D_INFO,
            attacks: "infotainment provokes CAN bus-off or fills the TX mailboxes",
            measures: "S's recovery time; whether I is stopped",
            criterion: "S recovers within the bound; I is stopped",
            test: Err("not written yet: the bus model can inject the id collision that drives a node bus-off (can_driver script `twin`), but the scenario (infotainment driven bus-off, can_virt stopping it, the cluster's recovery time) is not in this suite"),
            removed_by: &[],
        },
        Item {
            id: "C4",
            annex_d: D_INFO,
            attacks: "reference system: ECUs on the bus send the ids more than one guest's RX filters pass (from can_virt's configuration; a counter in byte 0, 100 frames/s in all) while both guests listen 1.5 s (can_cluster, can_infotainment); not covered when no id is shared; Ethernet RX fan-out: not built",
            measures: "the sequence of broadcast frames each guest received vs the sequence on the bus (can_driver's trace)",
            criterion: "each guest receives at least 50 shared-id frames and they are a gapless run of the bus's sequence (no loss, duplicate or reordering); no PD reported by the monitor beyond the unattacked run. Protection-removed build: can_virt delivering each frame to the first subscriber only (can-fanout)",
            test: Ok(crate::devices::c4),
            removed_by: &["can-fanout"],
        },
        Item {
            id: "C5",
            annex_d: D_INFO,
            attacks: "bits flipped in shared memory after validation",
            measures: "whether anything acts on guest-writable memory",
            criterion: "nothing acts on memory a guest can still write",
            test: Err("not written yet: needs a guest that flips bits in its rings after the VMM validated them, with the cluster's path observed; covered by the copy-then-validate unit tests, not this suite"),
            removed_by: &[],
        },
    ]
}

fn fail_or_pass(
    errs: Vec<String>,
    evidence: Vec<String>,
    distributions: Vec<Distribution>,
) -> Outcome {
    Outcome {
        status: if errs.is_empty() {
            Status::Passed
        } else {
            Status::Failed(errs.join("; "))
        },
        evidence,
        distributions,
    }
}

/// How a failure that is not a measurement starts: the scenario itself
/// could not run (a program missing, a system that does not load). Such a
/// failure fails the item, but proves nothing about a protection-removed
/// build ([`crate::proof`]).
pub const COULD_NOT_RUN: &str = "could not run the scenario: ";

/// The failed outcome of a scenario that could not run.
pub fn run_error(e: String) -> Outcome {
    Outcome::new(Status::Failed(format!("{COULD_NOT_RUN}{e}")))
}

fn succeeded(r: &RunResult) -> Option<&String> {
    r.lines.iter().find(|l| l.contains("ATTACK SUCCEEDED"))
}

fn untrusted_reports(r: &RunResult) -> Vec<&str> {
    r.monitor
        .iter()
        .filter(|(pd, _)| pd == UNTRUSTED_PD)
        .map(|(_, t)| t.as_str())
        .collect()
}

/// M1: one run per memory attack.
fn m1(ctx: &mut Ctx) -> Outcome {
    // (program, what the monitor must say: a fault at this address, or a stop)
    let attacks: [(&str, Option<u64>); 6] = [
        ("sep_m1_ro_write", Some(0x6140_0000)),
        ("sep_m1_safety_read", Some(0x6680_1000)),
        ("sep_m1_safety_write", Some(0x6680_1000)),
        ("sep_m1_vmm_write", Some(0x60a0_0000)),
        ("sep_m1_mmap", None),
        ("sep_m1_procmem", None),
    ];
    let mut errs = Vec::new();
    let mut ev = Vec::new();
    for (prog, addr) in attacks {
        let r = match ctx.run(Variant::attack(Some(prog)), ctx.attack_run()) {
            Ok(r) => r,
            Err(e) => return run_error(e),
        };
        if let Some(l) = succeeded(&r) {
            errs.push(format!("{prog}: {l}"));
        }
        let reports = untrusted_reports(&r);
        let want = match addr {
            Some(_) => format!("fault in PD {UNTRUSTED_PD}: "),
            None => format!("PD {UNTRUSTED_PD} stopped: forbidden syscall"),
        };
        let hit = reports
            .iter()
            .find(|t| t.contains(&want) && addr.is_none_or(|a| t.contains(&format!("at {a:#x}"))));
        match hit {
            Some(t) => ev.push(format!("{prog}: {t}")),
            None => errs.push(format!(
                "{prog}: no report `{want}`{} (monitor said: {})",
                addr.map(|a| format!(" at {a:#x}")).unwrap_or_default(),
                reports.join(" | ")
            )),
        }
        match ctx.judge(&r) {
            Ok((e, notes)) => {
                errs.extend(e.into_iter().map(|e| format!("{prog}: {e}")));
                ev.extend(notes.into_iter().map(|n| format!("{prog}: {n}")));
            }
            Err(e) => return run_error(e),
        }
        if let Some(s) = r.summary {
            ev.push(format!(
                "{prog}: cluster_ram checksum {:#x} -> {:#x}; {} of {} round trips; {} late ticks, largest tick gap {} µs",
                s.checksum_start, s.checksum_end, s.answered, s.ticks, s.late, s.max_gap_ns / 1000
            ));
        }
    }
    if ctx.profile == Profile::Reference {
        ev.push(REFERENCE_NOTE.into());
    }
    fail_or_pass(errs, ev, Vec::new())
}

/// What the evidence says about a run on the reference system.
const REFERENCE_NOTE: &str = "reference system: every other PD runs its own program; judged by the monitor against an unattacked run of the same system (no PD but the attacker affected)";

/// Why the timing items need the stand-in (on the reference system).
const NEEDS_STAND_IN: &str = "the reference system has no program measuring the safety path yet: this item times cluster_vmm's 1 ms round trip through can_virt, which the stand-in sep_cluster provides (tests/separation/systems/automotive-sep.system, run by make separation); on the real system it needs a cluster test guest timing its CAN frames through its VMM, can_virt and can_driver";

/// M4: stack overflow in the untrusted PD.
fn m4(ctx: &mut Ctx) -> Outcome {
    if let Some(why) = stack_limit_too_large() {
        return Outcome::new(Status::NotEnforced(why));
    }
    let r = match ctx.run(Variant::attack(Some("sep_overflow")), ctx.attack_run()) {
        Ok(r) => r,
        Err(e) => return run_error(e),
    };
    let mut errs = Vec::new();
    let mut ev = Vec::new();
    if let Some(l) = succeeded(&r) {
        errs.push(l.clone());
    }
    let reports = untrusted_reports(&r);
    match reports
        .iter()
        .find(|t| t.contains(&format!("fault in PD {UNTRUSTED_PD}")))
    {
        Some(t) => ev.push(format!("sep_overflow: {t}")),
        None => errs.push(format!(
            "no fault reported for the overflow (monitor: {})",
            reports.join(" | ")
        )),
    }
    if ctx.profile == Profile::StandIn {
        for (pd, t) in &r.monitor {
            if pd != UNTRUSTED_PD {
                errs.push(format!("another PD was affected: {pd}: {t}"));
            }
        }
    } else {
        ev.push(REFERENCE_NOTE.into());
    }
    match ctx.judge(&r) {
        Ok((e, notes)) => {
            errs.extend(e);
            ev.extend(notes);
        }
        Err(e) => return run_error(e),
    }
    ev.push("infotainment_vmm has no fault-handling parent in this system, so the monitor stops it (Microkit semantics); restart by a parent is exercised in tests/host-board (restarter/crashloop)".into());
    fail_or_pass(errs, ev, Vec::new())
}

/// Why an overflow of [`OVERFLOW_BYTES`] cannot be told from legal stack
/// growth here, if so: the PDs inherit this process's stack limit.
fn stack_limit_too_large() -> Option<String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid out-pointer for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut lim) } != 0 {
        return Some("cannot read the stack limit (getrlimit failed)".into());
    }
    (lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur > OVERFLOW_BYTES).then(|| {
        format!(
            "the stack limit ({}) lets a PD's stack grow beyond the attack's {} MiB, so an overflow cannot be told from legal growth; run with `ulimit -s 8192`",
            if lim.rlim_cur == libc::RLIM_INFINITY { "unlimited".to_string() } else { format!("{} KiB", lim.rlim_cur >> 10) },
            OVERFLOW_BYTES >> 20
        )
    })
}

/// How deep `sep_overflow` recurses below its start (tests/separation).
const OVERFLOW_BYTES: u64 = 32 << 20;

fn pooled(ctx: &mut Ctx, untrusted: &str) -> Result<(Vec<RunResult>, Vec<u64>), String> {
    let runs = ctx.run_pooled(Variant::attack(Some(untrusted)))?;
    let lat = runs
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    Ok((runs, lat))
}

/// T1: baseline vs busy-loop vs notification storm, same suite run.
fn t1(ctx: &mut Ctx) -> Outcome {
    if ctx.profile == Profile::Reference {
        return Outcome::new(Status::NotCovered(NEEDS_STAND_IN.into()));
    }
    let mut errs = Vec::new();
    let mut ev = Vec::new();
    let mut dists = Vec::new();
    let baseline = match ctx.baseline() {
        Ok(b) => b,
        Err(e) => return run_error(e),
    };
    let base_checks: Vec<String> = baseline
        .runs
        .iter()
        .flat_map(|r| safety_checks(r, &baseline, true))
        .collect();
    errs.extend(base_checks.into_iter().map(|e| format!("baseline: {e}")));
    let host_noisy = noisy(&baseline);
    let base = baseline.latencies.clone();
    let base_p50 = percentile(&base, 50);
    let base_p99 = percentile(&base, 99);
    let bound = T1_TOLERANCE.bound(base_p99);
    ev.push(format!(
        "baseline (infotainment idle): n={} p50 {} µs p99 {} µs; bound for attacked p99: {} µs",
        base.len(),
        base_p50 / 1000,
        base_p99 / 1000,
        bound / 1000
    ));
    dists.push(Distribution {
        label: "baseline (idle infotainment)".into(),
        samples_ns: base,
    });
    for (prog, what) in [
        ("sep_busy", "infotainment busy-loop"),
        ("sep_storm", "notification storm into can_virt"),
    ] {
        let (runs, lat) = match pooled(ctx, prog) {
            Ok(x) => x,
            Err(e) => return run_error(e),
        };
        for r in &runs {
            errs.extend(
                safety_checks(r, &baseline, true)
                    .into_iter()
                    .map(|e| format!("{what}: {e}")),
            );
        }
        let p50 = percentile(&lat, 50);
        let p99 = percentile(&lat, 99);
        ev.push(format!(
            "{what}: n={} p50 {} µs p99 {} µs",
            lat.len(),
            p50 / 1000,
            p99 / 1000
        ));
        if lat.is_empty() || p99 > bound {
            errs.push(format!(
                "{what}: p99 {} µs > bound {} µs (n={})",
                p99 / 1000,
                bound / 1000,
                lat.len()
            ));
        }
        dists.push(Distribution {
            label: what.into(),
            samples_ns: lat,
        });
    }
    ev.push(format!(
        "period: baseline worst run {} late ticks / {} overruns in 1000; attacked runs may add {} % of ticks",
        baseline.max_late, baseline.max_overrun, MAX_LATE_PERCENT
    ));
    let mut out = fail_or_pass(errs, ev, dists);
    if let (Some(why), Status::Failed(f)) = (&host_noisy, &out.status) {
        out.status = Status::NotEnforced(format!("{why} ({f})"));
    }
    if let Some(why) = &ctx.fifo_refused {
        if !matches!(out.status, Status::Passed) {
            out.status = Status::NotEnforced(format!(
                "{why}; without real-time scheduling the host cannot keep a lower-priority PD off the safety path's CPU (measured: {})",
                out.status.reason()
            ));
        } else {
            out.status = Status::NotEnforced(format!(
                "{why}; the measurement held anyway but proves nothing about priority enforcement"
            ));
        }
    }
    out.evidence.push("budgets/periods are not enforced by the host board: this item shows priority isolation only, not MCS budget isolation".into());
    out
}

/// T3: kill or hang each PD in turn.
fn t3(ctx: &mut Ctx) -> Outcome {
    if ctx.profile == Profile::Reference {
        return Outcome::new(Status::NotCovered(NEEDS_STAND_IN.into()));
    }
    let base = match ctx.baseline() {
        Ok(b) => b,
        Err(e) => return run_error(e),
    };
    let host_noisy = noisy(&base);
    let mut errs = Vec::new();
    let mut ev = Vec::new();
    // Failures the host's scheduling alone can explain (no SCHED_FIFO, or
    // a host that misses the period without attack).
    let mut fifo_dependent = Vec::new();
    for (prog, what) in [
        ("sep_crash", "infotainment_vmm killed"),
        ("sep_busy", "infotainment_vmm hung"),
    ] {
        let r = match ctx.run(Variant::attack(Some(prog)), ctx.run_timeout) {
            Ok(r) => r,
            Err(e) => return run_error(e),
        };
        let found = safety_findings(&r, &base, true);
        if found.is_empty() {
            ev.push(format!(
                "{what}: cluster_vmm finished, every round trip answered"
            ));
        }
        for f in found {
            let text = format!("{what}: {}", f.text);
            if (prog == "sep_busy" && ctx.fifo_refused.is_some())
                || (f.timing && host_noisy.is_some())
            {
                fifo_dependent.push(text);
            } else {
                errs.push(text);
            }
        }
    }
    let r = match ctx.run(
        Variant {
            partner: Some("sep_can_virt_crash"),
            ..Variant::attack(Some("sep_idle"))
        },
        ctx.run_timeout,
    ) {
        Ok(r) => r,
        Err(e) => return run_error(e),
    };
    match r.summary {
        None => errs.push(format!(
            "{SAFETY_PARTNER} killed: cluster_vmm did not finish (waits for ever?), run status {}",
            r.status
        )),
        Some(s) => {
            ev.push(format!(
                "{SAFETY_PARTNER} killed after 300 requests: cluster_vmm finished; {} answered, {} ticks found the request unanswered (outage detected one period after the crash); largest tick gap {} µs",
                s.answered, s.lost, s.max_gap_ns / 1000
            ));
            if s.lost == 0 {
                errs.push(format!(
                    "{SAFETY_PARTNER} killed: cluster_vmm did not notice the dead partner"
                ));
            }
            if s.late * 100 > s.ticks * crate::scenario::MAX_LATE_PERCENT {
                errs.push(format!(
                    "{SAFETY_PARTNER} killed: cluster_vmm missed its period ({} late ticks)",
                    s.late
                ));
            }
            if s.checksum_start != s.checksum_end {
                errs.push("cluster_ram changed".into());
            }
        }
    }
    match r
        .monitor
        .iter()
        .find(|(pd, t)| pd == SAFETY_PARTNER && t.contains("fault in PD"))
    {
        Some((_, t)) => ev.push(t.clone()),
        None => errs.push(format!(
            "the monitor did not report {SAFETY_PARTNER}'s fault"
        )),
    }
    ev.push("recovery: can_virt has no fault-handling parent in this system, so it stays down and cluster_vmm degrades (counts unanswered requests) instead of waiting; a PPC from the safety domain into a restartable PD would block its caller for ever on Microkit and is refused by `bulkhead prove` (F004)".into());
    let mut out = fail_or_pass(errs, ev, Vec::new());
    if matches!(out.status, Status::Passed) && !fifo_dependent.is_empty() {
        out.status = Status::NotEnforced(format!(
            "{}; {}",
            ctx.fifo_refused.clone().or(host_noisy).unwrap_or_default(),
            fifo_dependent.join("; ")
        ));
    }
    out
}

/// T4: random notification rates, sequence numbers.
fn t4(ctx: &mut Ctx) -> Outcome {
    if ctx.profile == Profile::Reference {
        return Outcome::new(Status::NotCovered(NEEDS_STAND_IN.into()));
    }
    let base = match ctx.baseline() {
        Ok(b) => b,
        Err(e) => return run_error(e),
    };
    let (runs, lat) = match pooled(ctx, "sep_random_storm") {
        Ok(x) => x,
        Err(e) => return run_error(e),
    };
    let host_noisy = noisy(&base);
    let mut errs = Vec::new();
    let mut timing = Vec::new();
    let mut ev = Vec::new();
    for r in &runs {
        for f in safety_findings(r, &base, true) {
            if f.timing && host_noisy.is_some() {
                timing.push(f.text);
            } else {
                errs.push(f.text);
            }
        }
        if let Some(s) = r.summary {
            ev.push(format!(
                "{} round trips: {} answered, {} lost wake-ups, {} mismatched sequence numbers",
                s.ticks, s.answered, s.lost, s.mismatched
            ));
        }
    }
    let mut out = fail_or_pass(
        errs,
        ev,
        vec![Distribution {
            label: "random-rate notifications".into(),
            samples_ns: lat,
        }],
    );
    if let (Some(why), Status::Failed(f)) = (&ctx.fifo_refused, &out.status) {
        out.status = Status::NotEnforced(format!("{why}; a late reply is indistinguishable from a lost one without real-time scheduling ({f})"));
    }
    if let (Some(why), Status::Passed, false) = (&host_noisy, &out.status, timing.is_empty()) {
        out.status = Status::NotEnforced(format!(
            "{why}; a reply late by host preemption is indistinguishable from a lost one ({})",
            timing.join("; ")
        ));
    }
    out
}
