//! `validate_against`: each system-level finding, on small systems.

// Test helpers outside #[test] fns: a panic there is a failed test.
#![allow(clippy::panic, clippy::unwrap_used)]

use bulkhead_policy::{parse, validate_against, PolicyDiagnostic, Severity};

const SYSTEM: &str = r#"<system>
    <memory_region name="ring" size="0x1000" />
    <memory_region name="data" size="0x1000" />
    <memory_region name="private" size="0x1000" />
    <memory_region name="gicv" size="0x1000" phys_addr="0x8040000" />
    <protection_domain name="virt" priority="150">
        <program_image path="virt.elf" />
        <map mr="ring" vaddr="0x1000000" perms="rw" />
        <map mr="data" vaddr="0x1100000" perms="r" />
        <map mr="private" vaddr="0x1200000" perms="rw" />
    </protection_domain>
    <protection_domain name="vmm" priority="100">
        <program_image path="vmm.elf" />
        <map mr="ring" vaddr="0x1000000" perms="rw" />
        <map mr="data" vaddr="0x1100000" perms="rw" />
        <virtual_machine name="guest">
            <vcpu id="0" />
            <map mr="gicv" vaddr="0x8010000" perms="rw" />
        </virtual_machine>
    </protection_domain>
    <protection_domain name="vmm2" priority="90">
        <program_image path="vmm.elf" />
        <virtual_machine name="guest2">
            <vcpu id="0" />
            <map mr="gicv" vaddr="0x8010000" perms="rw" />
        </virtual_machine>
    </protection_domain>
    <channel>
        <end pd="vmm" id="1" />
        <end pd="virt" id="2" />
    </channel>
</system>"#;

const POLICY: &str = r#"version = 1

[[domain]]
name = "safe"
criticality = "ASIL-B"
members = ["virt", "private"]

[[domain]]
name = "qm"
criticality = "QM"
members = ["vmm", "guest", "vmm2", "guest2"]

[[flow]]
regions = ["ring"]
channels = ["vmm:1 <-> virt:2"]
from = "qm"
to = "safe"
direction = "two-way"
via = "virt"
reason = "requests"

[[flow]]
regions = ["data"]
from = "qm"
to = "safe"
direction = "one-way"
via = "virt"
reason = "data"

[[exemption]]
regions = ["gicv"]
reason = "banked per vCPU"
"#;

fn run(policy: &str, system: &str) -> Vec<(&'static str, Severity, u32, u32)> {
    let p = parse(policy).unwrap_or_else(|e| panic!("{e:?}"));
    let s = bulkhead_sdf::parse(system).unwrap_or_else(|e| panic!("{e:?}"));
    validate_against(&p, &s)
        .iter()
        .map(|d: &PolicyDiagnostic| (d.code, d.severity, d.pos.line, d.pos.col))
        .collect()
}

use Severity::{Error as E, Warning as W};

#[test]
fn the_base_system_passes_cleanly() {
    assert_eq!(run(POLICY, SYSTEM), []);
}

#[test]
fn p101_member_not_in_system_is_a_warning() {
    let p = POLICY.replace(
        "[\"virt\", \"private\"]",
        "[\"virt\", \"private\", \"ghost\"]",
    );
    assert_eq!(run(&p, SYSTEM), [("P101", W, 6, 31)]);
}

#[test]
fn p102_p103_p104_names_of_other_boards_are_warnings() {
    let p = POLICY
        .replace(
            "regions = [\"data\"]",
            "regions = [\"data\", \"other_board_ring\"]",
        )
        .replace(
            "\"vmm:1 <-> virt:2\"",
            "\"vmm:1 <-> virt:2\", \"vmm:7 <-> virt:7\"",
        );
    assert_eq!(run(&p, SYSTEM), [("P103", W, 15, 33), ("P102", W, 23, 20)]);
    // A validator absent from this board.
    let p = POLICY
        .replace(
            "members = [\"virt\", \"private\"]",
            "members = [\"virt\", \"private\", \"virt_b\"]",
        )
        .replace(
            "via = \"virt\"\nreason = \"data\"",
            "via = \"virt_b\"\nreason = \"data\"",
        );
    assert_eq!(run(&p, SYSTEM), [("P101", W, 6, 31), ("P104", W, 27, 7)]);
}

#[test]
fn p105_unassigned_pd_or_vm_is_an_error_unless_warn() {
    let p = POLICY.replace("\"vmm2\", \"guest2\"", "\"vmm2\"");
    assert_eq!(run(&p, SYSTEM), [("P105", E, 1, 1)]);
    let p = p.replace("version = 1", "version = 1\nunassigned = \"warn\"");
    // The warning points at the setting that made it one; the unassigned VM
    // still shares `gicv`, but that is exempted.
    assert_eq!(run(&p, SYSTEM), [("P105", W, 2, 14)]);
}

#[test]
fn p106_validator_must_touch_what_it_validates() {
    let p = POLICY.replace(
        "[\"virt\", \"private\"]",
        "[\"virt\", \"private\", \"lone\"]",
    );
    let s = SYSTEM.replace(
        "<channel>",
        "<protection_domain name=\"lone\"><program_image path=\"l.elf\" /></protection_domain>\n<channel>",
    );
    let p = p.replace(
        "via = \"virt\"\nreason = \"data\"",
        "via = \"lone\"\nreason = \"data\"",
    );
    // `lone` is in `safe`, the flow's `to`, but does not map `data`.
    assert_eq!(run(&p, &s), [("P106", E, 23, 12)]);
}

#[test]
fn p107_region_reached_by_a_third_domain() {
    let p = POLICY.replace(
        "[[flow]]\nregions = [\"ring\"]",
        "[[domain]]\nname = \"third\"\ncriticality = \"QM\"\nmembers = [\"vmm2\"]\n\n[[flow]]\nregions = [\"ring\"]",
    ).replace("\"vmm2\", \"guest2\"]", "\"guest2\"]");
    let s = SYSTEM.replace(
        "<virtual_machine name=\"guest2\">",
        "<map mr=\"ring\" vaddr=\"0x1000000\" perms=\"rw\" />\n<virtual_machine name=\"guest2\">",
    );
    assert_eq!(run(&p, &s), [("P107", E, 19, 12)]);
}

#[test]
fn p108_undeclared_shared_region() {
    // Without the `data` flow, the shared region is undeclared; the finding
    // points at where the policy lists the first PD that maps it.
    let p = POLICY.replace(
        "[[flow]]\nregions = [\"data\"]\nfrom = \"qm\"\nto = \"safe\"\ndirection = \"one-way\"\nvia = \"virt\"\nreason = \"data\"\n",
        "",
    );
    assert_eq!(run(&p, SYSTEM), [("P108", E, 6, 12)]);
    // A private region of one domain mapped by another.
    let s = SYSTEM.replace(
        "<map mr=\"data\" vaddr=\"0x1100000\" perms=\"rw\" />",
        "<map mr=\"data\" vaddr=\"0x1100000\" perms=\"rw\" />\n<map mr=\"private\" vaddr=\"0x1300000\" perms=\"r\" />",
    );
    let d = run(POLICY, &s);
    assert_eq!(d, [("P108", E, 6, 12)]);
}

#[test]
fn p109_undeclared_channel() {
    let p = POLICY.replace("channels = [\"vmm:1 <-> virt:2\"]\n", "");
    assert_eq!(run(&p, SYSTEM), [("P109", E, 11, 12)]);
    // Pinned ids must match.
    let p = POLICY.replace("\"vmm:1 <-> virt:2\"", "\"vmm:1 <-> virt:3\"");
    assert_eq!(run(&p, SYSTEM), [("P109", E, 11, 12), ("P103", W, 15, 13)]);
    // Unpinned ids and either end order match.
    let p = POLICY.replace("\"vmm:1 <-> virt:2\"", "\"virt <-> vmm\"");
    assert_eq!(run(&p, SYSTEM), []);
}

#[test]
fn p110_one_way_flow_writable_by_the_receiver() {
    let s = SYSTEM.replace(
        "<map mr=\"data\" vaddr=\"0x1100000\" perms=\"r\" />",
        "<map mr=\"data\" vaddr=\"0x1100000\" perms=\"rw\" />",
    );
    assert_eq!(run(POLICY, &s), [("P110", E, 23, 12)]);
}

#[test]
fn p111_only_device_frames_can_be_exempted() {
    let s = SYSTEM.replace(" phys_addr=\"0x8040000\"", "");
    assert_eq!(run(POLICY, &s), [("P111", E, 31, 12)]);
}
