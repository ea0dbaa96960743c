//! The `automotive` system's policy against every board's file.

// Test helpers outside #[test] fns: a panic there is a failed test.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::path::PathBuf;

use bulkhead_policy::{parse, validate_against, PolicyDiagnostic, Severity};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn policy() -> bulkhead_policy::Policy {
    let src = read("system/automotive/policy.toml");
    match parse(&src) {
        Ok(p) => p,
        Err(errs) => panic!(
            "{}",
            errs.iter()
                .map(|e| e.render("policy.toml"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn check(board: &str) -> Vec<PolicyDiagnostic> {
    let src = read(&format!("system/automotive/{board}.system"));
    let sys = bulkhead_sdf::parse(&src).unwrap_or_else(|e| panic!("{board}: {e:?}"));
    validate_against(&policy(), &sys)
}

fn render(d: &[PolicyDiagnostic]) -> String {
    d.iter()
        .map(|d| d.render("system/automotive/policy.toml"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn qemu_imx8mp_and_host_files_pass_with_no_findings_but_board_absences() {
    for board in ["qemu_virt_aarch64", "imx8mp_evk", "host"] {
        let d = check(board);
        assert!(
            !d.iter().any(PolicyDiagnostic::is_error),
            "{board}:\n{}",
            render(&d)
        );
        // Only QEMU's GICv2 has a gic_vcpu frame; other boards warn about it.
        for w in &d {
            assert!(
                w.severity == Severity::Warning && w.message.contains("gic_vcpu"),
                "{board}: unexpected {}",
                w.render("policy.toml")
            );
        }
        if board == "qemu_virt_aarch64" {
            assert!(d.is_empty(), "{}", render(&d));
        }
    }
}

#[test]
fn imx8mm_without_can_passes_with_warnings_for_the_can_names_only() {
    let d = check("imx8mm_evk");
    assert!(!d.iter().any(PolicyDiagnostic::is_error), "{}", render(&d));
    assert!(!d.is_empty());
    for w in &d {
        assert!(
            w.message.contains("can_") || w.message.contains("gic_vcpu"),
            "unexpected {}",
            w.render("policy.toml")
        );
    }
}

#[test]
fn the_policy_catches_a_new_path_into_the_safety_domain() {
    let src = read("system/automotive/qemu_virt_aarch64.system");
    // Give infotainment_vmm a read-only map of the cluster guest's RAM.
    let evil = src.replacen(
        r#"<map mr="infotainment_ram" vaddr="0x4000_0000" perms="rw" />"#,
        r#"<map mr="infotainment_ram" vaddr="0x4000_0000" perms="rw" />
        <map mr="cluster_ram" vaddr="0x8000_0000" perms="r" />"#,
        1,
    );
    assert_ne!(evil, src, "the fixture changed: update this test");
    let sys = bulkhead_sdf::parse(&evil).unwrap();
    let d = validate_against(&policy(), &sys);
    assert!(
        d.iter()
            .any(|d| d.code == "P108" && d.message.contains("cluster_ram")),
        "{}",
        render(&d)
    );
}

#[test]
fn the_policy_catches_a_new_undeclared_channel() {
    let src = read("system/automotive/qemu_virt_aarch64.system");
    let evil = src.replacen(
        "</system>",
        r#"<channel><end pd="infotainment_vmm" id="9" /><end pd="can_driver" id="9" /></channel>
</system>"#,
        1,
    );
    let sys = bulkhead_sdf::parse(&evil).unwrap();
    let d = validate_against(&policy(), &sys);
    assert!(
        d.iter()
            .any(|d| d.code == "P109" && d.message.contains("can_driver:9")),
        "{}",
        render(&d)
    );
}

#[test]
fn the_policy_catches_a_writable_map_on_the_receiving_side_of_a_one_way_flow() {
    let src = read("system/automotive/qemu_virt_aarch64.system");
    let evil = src.replacen(
        r#"<map mr="blk_infotainment_out" vaddr="0x6320_0000" perms="r" />"#,
        r#"<map mr="blk_infotainment_out" vaddr="0x6320_0000" perms="rw" />"#,
        1,
    );
    assert_ne!(evil, src, "the fixture changed: update this test");
    let sys = bulkhead_sdf::parse(&evil).unwrap();
    let d = validate_against(&policy(), &sys);
    assert!(
        d.iter()
            .any(|d| d.code == "P110" && d.message.contains("blk_infotainment_out")),
        "{}",
        render(&d)
    );
}
