//! Item 4 of issue 12: the suite's tests can fail. Builds the attack and
//! stand-in PDs with the test-only `protection-removed-seccomp` feature
//! (components/runtime/src/protection_removed.rs) and shows
//!
//! - M1 FAILING on that variant (its mmap and process_vm_writev attacks are
//!   no longer stopped by the seccomp allow-list), while it passes on the
//!   normal build (tests/suite.rs);
//! - `bulkhead check --require-images` refusing the variant's images (E078)
//!   and accepting the normal ones.

// A panic is how an integration test fails.
#![allow(clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Builds the protection-removed variant into its own target directory and
/// returns the directory holding its programs.
fn build_variant() -> PathBuf {
    let target = bin_dir()
        .parent()
        .expect("target dir")
        .join("protection-removed");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(repo())
        .args([
            "build",
            "-p",
            "bulkhead-separation-pds",
            "--features",
            "protection-removed-seccomp",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .expect("run cargo build");
    assert!(
        st.success(),
        "building the protection-removed variant failed"
    );
    target.join("debug")
}

fn unsupported() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    !status.lines().any(|l| l.starts_with("Seccomp:"))
}

/// Copies the test system's three images from `dir` as `<name>.elf` into a
/// fresh directory and runs the checker with `--require-images` on it.
fn check_images(dir: &Path, tag: &str) -> bulkhead_sdf::Report {
    let imgs = std::env::temp_dir().join(format!("sep-images-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&imgs).expect("temp dir");
    for p in ["sep_cluster", "sep_idle", "sep_can_virt"] {
        std::fs::copy(dir.join(p), imgs.join(format!("{p}.elf"))).expect("copy image");
    }
    let system = Path::new(env!("CARGO_MANIFEST_DIR")).join("systems/automotive-sep.system");
    let src = std::fs::read_to_string(&system).expect("read system");
    let opts = bulkhead_sdf::CheckOptions {
        board: bulkhead_boards::board("host"),
        search_paths: vec![imgs.clone()],
        require_images: true,
        ..Default::default()
    };
    let report = bulkhead_sdf::check_source(&src, "automotive-sep.system", &opts);
    let _ = std::fs::remove_dir_all(imgs);
    report
}

#[test]
fn m1_fails_and_check_refuses_without_seccomp() {
    if unsupported() {
        eprintln!("SKIPPED: the kernel has no seccomp");
        return;
    }
    let variant = build_variant();

    let refused = check_images(&variant, "removed");
    let e078: Vec<_> = refused
        .diagnostics
        .iter()
        .filter(|d| d.code == "E078")
        .collect();
    assert_eq!(e078.len(), 3, "{}", refused.render());
    assert!(e078[0].message.contains("seccomp"), "{}", refused.render());
    let accepted = check_images(&bin_dir(), "normal");
    // (Only E078 matters here: the checker's host board has no claimable
    // IRQs, while the host board binds IRQ 27 to a timer; see the report.)
    assert!(
        accepted
            .diagnostics
            .iter()
            .all(|d| d.code != "E078" && d.code != "E071"),
        "{}",
        accepted.render()
    );

    let res = run_suite(&SuiteOptions {
        system: Path::new(env!("CARGO_MANIFEST_DIR")).join("systems/automotive-sep.system"),
        policy: None,
        runs: 1,
        search_path: vec![variant],
        only: vec!["M1".into()],
    })
    .expect("suite runs");
    let Status::Failed(why) = &res.items[0].outcome.status else {
        panic!("M1 must fail without seccomp: {:?}", res.items[0].outcome)
    };
    assert!(
        why.contains("sep_m1_mmap") && why.contains("forbidden syscall"),
        "{why}"
    );
}
