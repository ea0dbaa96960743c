//! Item 4 of issue 12: the suite's tests can fail. Builds the stand-in and
//! attack PDs with the runtime's test-only `protection-removed-*` features
//! (components/runtime/src/protection_removed.rs), one protection each, and
//! runs the suite with those builds (`SuiteOptions::removed`), requiring
//!
//! - each item that relies on the removed protection to FAIL on its build
//!   (while the same items pass on the normal build: tests/suite.rs);
//! - `bulkhead check --require-images` to refuse every image of each build
//!   (E078) and to accept the normal ones.
//!
//! The `priorities` build (T1, T3) stalls the safety path until each run's
//! timeout; it is exercised by `make separation`, which runs every build.

// A panic is how an integration test fails.
#![allow(clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use bulkhead_separation::proof::{RemovedBuild, Shown};
use bulkhead_separation::{run_suite, Status, SuiteOptions};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/<profile>` of this test binary, where cargo put the normal PDs.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// Builds the variant without `name` into `<target>/protection-removed-<name>`
/// (where `make separation` builds it too) and returns its program directory.
fn build_variant(name: &str) -> PathBuf {
    let target = bin_dir()
        .parent()
        .expect("target dir")
        .join(format!("protection-removed-{name}"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(repo())
        .args([
            "build",
            "-q",
            "-p",
            "bulkhead-separation-pds",
            "--features",
            &format!("protection-removed-{name}"),
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .expect("run cargo build");
    assert!(st.success(), "building the variant without {name} failed");
    target.join("debug")
}

fn unsupported() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    !status.lines().any(|l| l.starts_with("Seccomp:"))
}

fn system() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systems/automotive-sep.system")
}

#[test]
fn every_variant_fails_its_items_and_is_refused_by_check() {
    if unsupported() {
        eprintln!("SKIPPED: the kernel has no seccomp");
        return;
    }
    let variants = ["seccomp", "ro-maps", "wakeups", "stack-guard"];
    let removed: Vec<RemovedBuild> = variants
        .iter()
        .map(|v| RemovedBuild {
            name: v.to_string(),
            dir: build_variant(v),
        })
        .collect();
    let res = run_suite(&SuiteOptions {
        system: system(),
        policy: None,
        runs: 1,
        search_path: vec![],
        only: vec!["M1".into(), "M4".into(), "T4".into()],
        removed,
    })
    .expect("suite runs");
    for r in &res.items {
        assert_eq!(
            r.outcome.status,
            Status::Passed,
            "{}: {:?}",
            r.item.id,
            r.outcome
        );
    }
    assert_eq!(res.proofs.len(), variants.len());
    for p in &res.proofs {
        let check = p
            .check
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}", p.build.name));
        assert!(
            check.contains("E078") && check.contains(&format!("({})", p.build.name)),
            "{check}"
        );
        assert!(
            !p.items.is_empty(),
            "{}: no item relies on it",
            p.build.name
        );
        for (id, outcome, shown) in &p.items {
            assert!(
                matches!(shown, Shown::Failing(_)),
                "{id} must fail without {}: {shown:?} {:?}",
                p.build.name,
                outcome.evidence
            );
        }
        assert!(p.holds());
    }
    let why = |name: &str, id: &str| -> String {
        res.proofs
            .iter()
            .find(|p| p.build.name == name)
            .and_then(|p| p.items.iter().find(|(i, _, _)| *i == id))
            .map(|(_, o, _)| o.status.reason().to_string())
            .unwrap_or_default()
    };
    // Each build fails for the protection it removes, not by accident.
    assert!(
        why("seccomp", "M1").contains("sep_m1_mmap")
            && why("seccomp", "M1").contains("forbidden syscall")
    );
    assert!(
        why("ro-maps", "M1").contains("sep_m1_ro_write: [infotainment_vmm] sep: ATTACK SUCCEEDED")
    );
    assert!(why("stack-guard", "M4").contains("ATTACK SUCCEEDED: recursion returned"));
    assert!(why("wakeups", "T4").contains("safety path"));
    assert!(!res.any_failed());
}

#[test]
fn check_accepts_the_normal_images() {
    let imgs = std::env::temp_dir().join(format!("sep-images-normal-{}", std::process::id()));
    std::fs::create_dir_all(&imgs).expect("temp dir");
    for p in ["sep_cluster", "sep_idle", "sep_can_virt"] {
        std::fs::copy(bin_dir().join(p), imgs.join(format!("{p}.elf"))).expect("copy image");
    }
    let src = std::fs::read_to_string(system()).expect("read system");
    let opts = bulkhead_sdf::CheckOptions {
        board: bulkhead_boards::board("host"),
        search_paths: vec![imgs.clone()],
        require_images: true,
        ..Default::default()
    };
    let report = bulkhead_sdf::check_source(&src, "automotive-sep.system", &opts);
    let _ = std::fs::remove_dir_all(imgs);
    assert!(
        report
            .diagnostics
            .iter()
            .all(|d| d.code != "E078" && d.code != "E071"),
        "{}",
        report.render()
    );
}
