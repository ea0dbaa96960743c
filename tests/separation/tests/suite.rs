//! The separation suite's own tests: it passes the memory items on the test
//! variant of the automotive system, reports every item it cannot cover as
//! such, writes its reports, and FAILS M1 on a variant whose description
//! maps the safety CAN ring into infotainment (a protection removed).
//!
//! The timing items (T1, T3, T4) are exercised by `make separation`, not
//! here: their outcome depends on the host's scheduling (see the README).

// A panic is how an integration test fails.
#![allow(clippy::panic)]

use std::path::{Path, PathBuf};

use bulkhead_separation::{run_suite, write_reports, Status, SuiteOptions};

fn systems() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systems")
}

/// Why this host cannot run the host board, if it cannot.
fn unsupported() -> Option<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Seccomp:")) {
        return Some("the kernel has no seccomp");
    }
    if std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").is_ok_and(|s| s.trim() == "3")
    {
        return Some("ptrace is disabled");
    }
    None
}

fn opts(system: &str, only: &[&str]) -> SuiteOptions {
    SuiteOptions {
        system: systems().join(system),
        policy: Some(systems().join("policy.toml")),
        runs: 1,
        search_path: vec![],
        only: only.iter().map(|s| s.to_string()).collect(),
        removed: vec![],
    }
}

#[test]
fn memory_items_pass_and_device_items_are_not_covered() {
    if let Some(why) = unsupported() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let res = run_suite(&opts(
        "automotive-sep.system",
        &["M1", "M2", "M4", "C1", "C3"],
    ))
    .expect("suite runs");
    for r in &res.items {
        match r.item.id {
            "M1" | "M4" => assert_eq!(
                r.outcome.status,
                Status::Passed,
                "{}: {:?}",
                r.item.id,
                r.outcome
            ),
            _ => assert!(
                matches!(r.outcome.status, Status::NotCovered(_)),
                "{}: {:?}",
                r.item.id,
                r.outcome.status
            ),
        }
    }
    let m1 = &res.items[0];
    assert!(
        m1.outcome
            .evidence
            .iter()
            .any(|e| e.contains("fault in PD infotainment_vmm") && e.contains("at 0x66801000")),
        "{:?}",
        m1.outcome.evidence
    );
    assert!(m1
        .outcome
        .evidence
        .iter()
        .any(|e| e.contains("forbidden syscall")));
    let dir = std::env::temp_dir().join(format!("bulkhead-separation-{}", std::process::id()));
    write_reports(&res, &dir).expect("reports");
    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("junit");
    assert_eq!(junit.matches("<testcase").count(), 5);
    assert_eq!(junit.matches("<skipped message=\"not covered").count(), 3);
    let html = std::fs::read_to_string(dir.join("report.html")).expect("html");
    assert!(html.contains("sha256") && html.contains("automotive-sep.system"));
    assert!(res
        .config
        .files
        .iter()
        .any(|f| f.role == "program sep_cluster" && f.sha256.is_ok()));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn m1_fails_when_the_description_maps_the_safety_ring_into_infotainment() {
    if let Some(why) = unsupported() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let res = run_suite(&opts("leaky.system", &["M1"])).expect("suite runs");
    let Status::Failed(why) = &res.items[0].outcome.status else {
        panic!("M1 must fail on leaky.system: {:?}", res.items[0].outcome)
    };
    assert!(why.contains("ATTACK SUCCEEDED"), "{why}");
    assert!(res.any_failed());
}

#[test]
fn the_reference_system_runs_with_its_own_programs() {
    if let Some(why) = unsupported() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let system = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system/automotive/host.system");
    let res = run_suite(&SuiteOptions {
        system,
        policy: None,
        runs: 1,
        search_path: vec![],
        only: vec!["M4".into(), "T1".into()],
        removed: vec![],
    })
    .expect("suite runs");
    assert_eq!(
        res.config.profile,
        bulkhead_separation::scenario::Profile::Reference
    );
    let m4 = &res.items[0];
    assert_eq!(m4.outcome.status, Status::Passed, "{:?}", m4.outcome);
    assert!(
        m4.outcome
            .evidence
            .iter()
            .any(|e| e.contains("fault in PD infotainment_vmm")),
        "{:?}",
        m4.outcome.evidence
    );
    // The timing items need the stand-in's measurements: not covered, never passed.
    let Status::NotCovered(why) = &res.items[1].outcome.status else {
        panic!("T1 on the reference system: {:?}", res.items[1].outcome)
    };
    assert!(why.contains("reference system"), "{why}");
    // The PDs of classes not built are played by the placeholder.
    assert!(res
        .config
        .files
        .iter()
        .any(|f| f.role == "program class_not_built"));
}
