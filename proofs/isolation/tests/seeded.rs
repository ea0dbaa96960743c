//! `prove` against the reference `automotive` system: clean on every board
//! with its policy, and failing — naming the path — on each seeded
//! violation. Each seed is one small edit of the real system file or policy,
//! so a seed stands for a plausible mistake, not a contrived fixture.

// A test fails by panicking; helpers here may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::path::PathBuf;

use bulkhead_prove::{prove, Input, Outcome};
use bulkhead_sdf::{check_source, CheckOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Prove `system_src` (for `board`) against `policy_src`. The system must
/// still be one the checker accepts, so each seed is a system a user could
/// really build.
fn run(board: &str, system_src: &str, policy_src: &str) -> Outcome {
    let b = bulkhead_boards::board(board).unwrap();
    let opts = CheckOptions {
        board: Some(b),
        ..CheckOptions::default()
    };
    let rep = check_source(system_src, "seed.system", &opts);
    assert!(
        rep.is_valid(),
        "seeded system no longer checks:\n{}",
        rep.render()
    );
    let sys = rep.system.unwrap();
    let policy = bulkhead_policy::parse(policy_src)
        .unwrap_or_else(|d| panic!("seeded policy does not parse: {d:?}"));
    prove(&Input {
        system: &sys,
        policy: &policy,
        board: Some(b),
    })
}

fn insert_after(src: &str, anchor: &str, text: &str) -> String {
    assert_eq!(
        src.matches(anchor).count(),
        1,
        "anchor not unique: {anchor}"
    );
    src.replacen(anchor, &format!("{anchor}\n{text}"), 1)
}

fn replace_once(src: &str, from: &str, to: &str) -> String {
    assert_eq!(src.matches(from).count(), 1, "not unique: {from}");
    src.replacen(from, to, 1)
}

const QEMU: &str = "system/automotive/qemu_virt_aarch64.system";
const POLICY: &str = "system/automotive/policy.toml";
const INFO_VMM: &str = r#"<program_image path="infotainment_vmm.elf" />"#;
const CLUSTER_VMM: &str = r#"<program_image path="cluster_vmm.elf" />"#;

/// Assert that `out` fails with `code`, and that the finding (message and
/// chain) names every one of `names`.
fn assert_fails(seed: &str, out: &Outcome, code: &str, names: &[&str]) {
    assert!(!out.is_clean(), "{seed}: prove passed a seeded violation");
    let hit = out.violations.iter().find(|v| {
        v.code == code && {
            let text = format!(
                "{} {}",
                v.message,
                v.chain
                    .iter()
                    .map(|h| format!("{} {} {}", h.from, h.how, h.to))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            names.iter().all(|n| text.contains(n))
        }
    });
    assert!(
        hit.is_some(),
        "{seed}: expected {code} naming {names:?}, got:\n{}",
        out.render("seed.system", "policy.toml")
    );
}

#[test]
fn reference_systems_prove_clean_on_every_board() {
    let policy = read(POLICY);
    for board in ["host", "qemu_virt_aarch64", "imx8mp_evk", "imx8mm_evk"] {
        let sys = read(&format!("system/automotive/{board}.system"));
        let out = run(board, &sys, &policy);
        assert!(out.is_clean(), "{board}:\n{}", out.render(board, POLICY));
        assert!(
            out.not_analysed.is_empty(),
            "{board}: {:?}",
            out.not_analysed
        );
    }
}

#[test]
fn dma_trust_is_reported_where_bus_masters_are_unconfined() {
    let out = run(
        "imx8mp_evk",
        &read("system/automotive/imx8mp_evk.system"),
        &read(POLICY),
    );
    let devices: Vec<&str> = out.dma_trust.iter().map(|t| t.device.as_str()).collect();
    assert!(
        !devices.is_empty(),
        "i.MX8MP's uSDHC and FEC master the bus with no IOMMU"
    );
    for t in &out.dma_trust {
        assert!(t.trusted_by.iter().any(|d| d == "safety"), "{t:?}");
    }
    let host = run(
        "host",
        &read("system/automotive/host.system"),
        &read(POLICY),
    );
    assert!(
        host.dma_trust.is_empty(),
        "the host board has no bus masters"
    );
}

#[test]
fn seed_infotainment_vmm_maps_a_can_ring() {
    let sys = insert_after(
        &read(QEMU),
        INFO_VMM,
        r#"        <map mr="can_cluster_req" vaddr="0x7000_0000" perms="rw" />"#,
    );
    let out = run("qemu_virt_aarch64", &sys, &read(POLICY));
    assert_fails(
        "can ring",
        &out,
        "P108",
        &["can_cluster_req", "infotainment_vmm"],
    );
}

#[test]
fn seed_channel_from_infotainment_to_can_driver() {
    let sys = replace_once(
        &read(QEMU),
        "</system>",
        r#"<channel><end pd="infotainment_vmm" id="20" /><end pd="can_driver" id="20" /></channel>
</system>"#,
    );
    let out = run("qemu_virt_aarch64", &sys, &read(POLICY));
    assert_fails("channel", &out, "P109", &["infotainment_vmm", "can_driver"]);
}

#[test]
fn seed_write_permission_where_the_policy_says_read_only() {
    let sys = replace_once(
        &read(QEMU),
        r#"<map mr="serial_cluster_in" vaddr="0x60c0_0000" perms="r" />"#,
        r#"<map mr="serial_cluster_in" vaddr="0x60c0_0000" perms="rw" />"#,
    );
    let out = run("qemu_virt_aarch64", &sys, &read(POLICY));
    assert_fails("rw", &out, "P110", &["serial_cluster_in"]);
}

#[test]
fn seed_dma_capable_driver_in_the_infotainment_domain() {
    // blk_driver serves both guests; put it in the QM domain and its
    // unconfined virtio bus master can still write the cluster's RAM.
    let policy = replace_once(
        &replace_once(
            &read(POLICY),
            r#""blk_virt", "blk_driver","#,
            r#""blk_virt","#,
        ),
        r#"members = ["infotainment", "infotainment_vmm", "infotainment_ram"]"#,
        r#"members = ["infotainment", "infotainment_vmm", "infotainment_ram", "blk_driver"]"#,
    );
    let out = run("qemu_virt_aarch64", &read(QEMU), &policy);
    assert_fails("dma", &out, "F003", &["blk_driver", "DMA", "cluster"]);
}

#[test]
fn seed_safety_ppc_into_a_restartable_pd() {
    let sys = insert_after(
        &read(QEMU),
        r#"<program_image path="can_virt.elf" />"#,
        r#"        <protection_domain name="can_helper" id="3" priority="170" passive="true">
            <program_image path="can_helper.elf" />
        </protection_domain>"#,
    );
    let sys = replace_once(
        &sys,
        "</system>",
        r#"<channel><end pd="cluster_vmm" id="21" pp="true" /><end pd="can_helper" id="0" /></channel>
</system>"#,
    );
    let policy = replace_once(
        &read(POLICY),
        r#""cluster", "cluster_vmm", "can_virt", "can_driver","#,
        r#""cluster", "cluster_vmm", "can_virt", "can_driver", "can_helper","#,
    );
    let out = run("qemu_virt_aarch64", &sys, &policy);
    assert_fails(
        "ppc",
        &out,
        "F004",
        &["cluster_vmm", "can_helper", "can_virt"],
    );
}

#[test]
fn seed_map_ending_at_a_safety_pd_stack_bottom() {
    // The VMM's stack_size 0x2_0000 (compose gives VMMs 128 KiB) below the
    // guard page under the IPC buffer at 0xFF_FFFF_F000: the stack bottom
    // is 0xFF_FFFD_E000.
    let sys = insert_after(
        &read(QEMU),
        "<system>",
        r#"    <memory_region name="cluster_scratch" size="0x1000" />"#,
    );
    let sys = insert_after(
        &sys,
        CLUSTER_VMM,
        r#"        <map mr="cluster_scratch" vaddr="0xff_fffd_d000" perms="rw" />"#,
    );
    let out = run("qemu_virt_aarch64", &sys, &read(POLICY));
    assert_fails(
        "stack",
        &out,
        "F005",
        &["cluster_vmm", "cluster_scratch", "0xfffffde000"],
    );
}

#[test]
fn seed_device_interrupt_delivered_to_another_domain() {
    let sys = replace_once(
        &read(QEMU),
        r#"        <irq irq="36" id="1" trigger="level" />
"#,
        "",
    );
    let sys = insert_after(
        &sys,
        INFO_VMM,
        r#"        <irq irq="36" id="30" trigger="level" />"#,
    );
    let out = run("qemu_virt_aarch64", &sys, &read(POLICY));
    assert_fails(
        "irq",
        &out,
        "F002",
        &["can_driver", "infotainment_vmm", "IRQ 36"],
    );
}

#[test]
fn seed_vm_in_another_domain_than_its_vmm() {
    let policy = replace_once(
        &read(POLICY),
        r#""cluster", "cluster_vmm","#,
        r#""cluster_vmm","#,
    );
    let policy = replace_once(
        &policy,
        r#"members = ["infotainment", "infotainment_vmm", "infotainment_ram"]"#,
        r#"members = ["infotainment", "infotainment_vmm", "infotainment_ram", "cluster"]"#,
    );
    let out = run("qemu_virt_aarch64", &read(QEMU), &policy);
    assert_fails("vm", &out, "F001", &["cluster_vmm", "cluster"]);
}

#[test]
fn seed_cluster_ram_mapped_into_the_infotainment_vm() {
    let sys = insert_after(
        &read(QEMU),
        r#"<map mr="infotainment_ram" vaddr="0x4000_0000" perms="rwx" />"#,
        r#"            <map mr="cluster_ram" vaddr="0x8000_0000" perms="rw" />"#,
    );
    let out = run("qemu_virt_aarch64", &sys, &read(POLICY));
    assert_fails("ram", &out, "P108", &["cluster_ram", "infotainment"]);
}

#[test]
fn seed_private_region_between_the_two_vmms() {
    let sys = insert_after(
        &read(QEMU),
        "<system>",
        r#"    <memory_region name="backchannel" size="0x1000" />"#,
    );
    let sys = insert_after(
        &sys,
        CLUSTER_VMM,
        r#"        <map mr="backchannel" vaddr="0x7000_0000" perms="r" />"#,
    );
    let sys = insert_after(
        &sys,
        INFO_VMM,
        r#"        <map mr="backchannel" vaddr="0x7000_0000" perms="rw" />"#,
    );
    let out = run("qemu_virt_aarch64", &sys, &read(POLICY));
    assert_fails(
        "backchannel",
        &out,
        "P108",
        &["backchannel", "cluster_vmm", "infotainment_vmm"],
    );
}

#[test]
fn seed_notification_channel_between_the_vmms() {
    let sys = replace_once(
        &read(QEMU),
        "</system>",
        r#"<channel><end pd="cluster_vmm" id="22" /><end pd="infotainment_vmm" id="22" /></channel>
</system>"#,
    );
    let out = run("qemu_virt_aarch64", &sys, &read(POLICY));
    assert_fails("notify", &out, "P109", &["cluster_vmm", "infotainment_vmm"]);
}

#[test]
fn seed_infotainment_parent_controls_a_safety_child() {
    let sys = insert_after(
        &read(QEMU),
        INFO_VMM,
        r#"        <protection_domain name="watchdog" id="5" priority="95">
            <program_image path="watchdog.elf" />
        </protection_domain>"#,
    );
    let policy = replace_once(
        &read(POLICY),
        r#""cluster", "cluster_vmm", "can_virt", "can_driver","#,
        r#""cluster", "cluster_vmm", "can_virt", "can_driver", "watchdog","#,
    );
    let out = run("qemu_virt_aarch64", &sys, &policy);
    assert_fails("child", &out, "F001", &["infotainment_vmm", "watchdog"]);
}

#[test]
fn seed_can_driver_registers_mapped_by_infotainment() {
    let sys = insert_after(
        &read(QEMU),
        INFO_VMM,
        r#"        <map mr="pcie_ecam" vaddr="0x7000_0000" perms="rw" cached="false" />"#,
    );
    let out = run("qemu_virt_aarch64", &sys, &read(POLICY));
    // Both layers see it: a region shared across domains (P108) and a
    // device reached from two domains (F002).
    assert_fails(
        "regs",
        &out,
        "F002",
        &["pcie_ecam", "infotainment_vmm", "can_driver"],
    );
    assert_fails("regs", &out, "P108", &["pcie_ecam"]);
}

#[test]
fn without_a_board_device_paths_are_reported_as_not_analysed() {
    let sys = bulkhead_sdf::parse(&read(QEMU)).unwrap();
    let policy = bulkhead_policy::parse(&read(POLICY)).unwrap();
    let out = prove(&Input {
        system: &sys,
        policy: &policy,
        board: None,
    });
    assert!(out
        .not_analysed
        .iter()
        .any(|n| n.contains("no board given")));
}
