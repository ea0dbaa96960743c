//! Every invalid policy is refused with the right code at the right place.

// Test helpers outside #[test] fns: a panic there is a failed test.
#![allow(clippy::panic, clippy::unwrap_used)]

use bulkhead_policy::{parse, PolicyDiagnostic};

/// A valid policy to start from; each test breaks one thing.
const BASE: &str = r#"version = 1

[[domain]]
name = "safety"
criticality = "ASIL-B"
members = ["can_virt", "cluster_vmm"]

[[domain]]
name = "infotainment"
criticality = "QM"
members = ["infotainment_vmm"]

[[flow]]
regions = ["can_infotainment_req"]
channels = ["infotainment_vmm:4 <-> can_virt:2"]
from = "infotainment"
to = "safety"
direction = "two-way"
via = "can_virt"
reason = "CAN frames, filtered and budgeted by can_virt"
"#;

/// Parses `src`, expects failure, and returns (code, line, col) of each error.
fn errors(src: &str) -> Vec<(&'static str, u32, u32)> {
    match parse(src) {
        Ok(_) => panic!("accepted:\n{src}"),
        Err(e) => e.iter().map(|d| (d.code, d.pos.line, d.pos.col)).collect(),
    }
}

fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

#[test]
fn base_is_valid() {
    let p = parse(BASE).unwrap();
    assert_eq!(p.domains.len(), 2);
    assert_eq!(
        p.flows[0].channels[0].value.to_string(),
        "infotainment_vmm:4 <-> can_virt:2"
    );
    assert_eq!((p.flows[0].via.pos.line, p.flows[0].via.pos.col), (19, 7));
    assert_eq!((p.domains[1].pos.line, p.domains[1].pos.col), (8, 1));
}

#[test]
fn p001_toml_syntax() {
    assert_eq!(
        errors(&edit("name = \"safety\"", "name = \"safety")),
        [("P001", 4, 15)]
    );
    // A repeated key is a TOML error too.
    assert_eq!(
        errors(&edit(
            "name = \"safety\"",
            "name = \"safety\"\nname = \"x\""
        )),
        [("P001", 5, 1)]
    );
}

#[test]
fn p002_unknown_keys_everywhere() {
    assert_eq!(errors(&format!("{BASE}colour = 1\n")), [("P002", 21, 1)]);
    assert_eq!(
        errors(&edit(
            "criticality = \"QM\"",
            "criticality = \"QM\"\nasil = \"B\""
        )),
        [("P002", 11, 1)]
    );
    assert_eq!(
        errors(&edit("via = ", "validator = \"x\"\nvia = ")),
        [("P002", 19, 1)]
    );
    assert_eq!(
        errors(&format!("{BASE}[rules]\nforbid_everything = true\n")),
        [("P002", 22, 1)]
    );
}

#[test]
fn p003_missing_keys_point_at_the_table() {
    assert_eq!(
        errors(&edit("criticality = \"QM\"\n", "")),
        [("P003", 8, 1)]
    );
    assert_eq!(
        errors(&edit(
            "reason = \"CAN frames, filtered and budgeted by can_virt\"\n",
            ""
        )),
        [("P003", 13, 1)]
    );
    assert_eq!(errors(&edit("version = 1\n", "")), [("P003", 1, 1)]);
}

#[test]
fn p004_wrong_types() {
    assert_eq!(
        errors(&edit("version = 1", "version = \"1\"")),
        [("P004", 1, 11)]
    );
    assert_eq!(
        errors(&edit(
            "members = [\"infotainment_vmm\"]",
            "members = \"infotainment_vmm\""
        )),
        [("P004", 11, 11)]
    );
    assert_eq!(
        errors(&edit(
            "members = [\"infotainment_vmm\"]",
            "members = [\"infotainment_vmm\", 7]"
        )),
        [("P004", 11, 32)]
    );
    assert_eq!(
        errors(&format!(
            "{BASE}[rules]\nforbid_stack_bottom_maps = \"yes\"\n"
        )),
        [("P004", 22, 28)]
    );
    assert_eq!(
        errors(&format!(
            "domain = 3\n{}",
            BASE.replace("[[domain]]", "[[dom]]")
        ))[0],
        ("P004", 1, 10)
    );
}

#[test]
fn p005_unknown_version() {
    assert_eq!(
        errors(&edit("version = 1", "version = 2")),
        [("P005", 1, 11)]
    );
}

#[test]
fn p006_values_not_allowed() {
    assert_eq!(
        errors(&edit("criticality = \"QM\"", "criticality = \"ASIL-E\"")),
        [("P006", 10, 15)]
    );
    assert_eq!(
        errors(&edit("direction = \"two-way\"", "direction = \"both\"")),
        [("P006", 18, 13)]
    );
    assert_eq!(
        errors(&edit("version = 1", "version = 1\nunassigned = \"ignore\"")),
        [("P006", 2, 14)]
    );
    assert_eq!(
        errors(&edit("name = \"safety\"", "name = \"Safety Domain\"")),
        [("P006", 4, 8)]
    );
    assert_eq!(
        errors(&edit(
            "infotainment_vmm:4 <-> can_virt:2",
            "infotainment_vmm -> can_virt"
        )),
        [("P006", 15, 13)]
    );
    assert_eq!(
        errors(&edit(
            "members = [\"infotainment_vmm\"]",
            "members = [\"infotainment_vmm\", \" \"]"
        )),
        [("P006", 11, 32)]
    );
}

#[test]
fn p007_duplicate_domain() {
    assert_eq!(
        errors(&edit("name = \"infotainment\"", "name = \"safety\"")),
        [("P007", 9, 8), ("P009", 16, 8)]
    );
}

#[test]
fn p008_element_in_two_domains() {
    assert_eq!(
        errors(&edit(
            "[\"infotainment_vmm\"]",
            "[\"infotainment_vmm\", \"can_virt\"]"
        )),
        [("P008", 11, 32)]
    );
    assert_eq!(
        errors(&edit(
            "[\"infotainment_vmm\"]",
            "[\"infotainment_vmm\", \"infotainment_vmm\"]"
        )),
        [("P008", 11, 32)]
    );
}

#[test]
fn p009_unknown_domain_in_flow() {
    assert_eq!(
        errors(&edit("to = \"safety\"", "to = \"safty\"")),
        [("P009", 17, 6)]
    );
}

#[test]
fn p010_empty_reason() {
    assert_eq!(
        errors(&edit(
            "\"CAN frames, filtered and budgeted by can_virt\"",
            "\"  \""
        )),
        [("P010", 20, 10)]
    );
    let e = format!("{BASE}\n[[exemption]]\nregions = [\"gic_vcpu\"]\nreason = \"\"\n");
    assert_eq!(errors(&e), [("P010", 24, 10)]);
}

#[test]
fn p011_flow_to_itself() {
    assert_eq!(
        errors(&edit("from = \"infotainment\"", "from = \"safety\"")),
        [("P011", 17, 6)]
    );
}

#[test]
fn p012_flow_through_nothing() {
    let src = edit("regions = [\"can_infotainment_req\"]\nchannels = [\"infotainment_vmm:4 <-> can_virt:2\"]\n", "");
    assert_eq!(errors(&src), [("P012", 13, 1)]);
    let e = format!("{BASE}\n[[exemption]]\nregions = []\nreason = \"banked\"\n");
    assert_eq!(errors(&e), [("P012", 22, 1)]);
}

#[test]
fn p013_validator_outside_both_domains() {
    let src = BASE.replace("members = [\"infotainment_vmm\"]", "members = [\"infotainment_vmm\"]\n\n[[domain]]\nname = \"other\"\ncriticality = \"QM\"\nmembers = [\"blk_virt\"]");
    assert_eq!(
        errors(&src.replace("via = \"can_virt\"", "via = \"blk_virt\"")),
        [("P013", 24, 7)]
    );
}

#[test]
fn p014_validated_by_the_less_critical_side() {
    assert_eq!(
        errors(&edit("via = \"can_virt\"", "via = \"infotainment_vmm\"")),
        [("P014", 19, 7)]
    );
    // One-way from the critical side to the QM side needs no validator in QM.
    let ok = edit("direction = \"two-way\"", "direction = \"one-way\"").replace(
        "from = \"infotainment\"\nto = \"safety\"",
        "from = \"safety\"\nto = \"infotainment\"",
    );
    assert!(parse(&ok).is_ok());
    // But one-way into the critical side does.
    let bad = edit("direction = \"two-way\"", "direction = \"one-way\"")
        .replace("via = \"can_virt\"", "via = \"infotainment_vmm\"");
    assert_eq!(errors(&bad), [("P014", 19, 7)]);
}

#[test]
fn p015_empty_domain() {
    assert_eq!(
        errors(&edit("members = [\"infotainment_vmm\"]", "members = []")),
        [("P015", 8, 1)]
    );
}

#[test]
fn p016_exempted_and_flowing() {
    let e = format!(
        "{BASE}\n[[exemption]]\nregions = [\"can_infotainment_req\"]\nreason = \"banked\"\n"
    );
    assert_eq!(errors(&e), [("P016", 23, 12)]);
}

#[test]
fn errors_are_all_reported_in_source_order() {
    let src = edit("version = 1", "version = 7\nextra = true")
        .replace("criticality = \"QM\"", "criticality = \"qm\"");
    assert_eq!(
        errors(&src),
        [("P005", 1, 11), ("P002", 2, 1), ("P006", 11, 15)]
    );
}

#[test]
fn rendering_is_file_line_col_code_message_hint() {
    let e: Vec<PolicyDiagnostic> = parse(&edit("to = \"safety\"", "to = \"safty\"")).unwrap_err();
    assert_eq!(
        e[0].render("policy.toml"),
        "policy.toml:17:6: error[P009]: no domain named `safty`\n  hint: declared domains: safety, infotainment"
    );
}

#[test]
fn inline_tables_are_read_like_headers() {
    let src = "version = 1\ndomain = [{ name = \"a\", criticality = \"QM\", members = [\"x\"], extra = 1 }]\n";
    assert_eq!(errors(src), [("P002", 2, 62)]);
}

#[test]
fn readme_lists_every_rule() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for r in bulkhead_policy::RULES {
        assert!(
            readme.contains(&format!("| {} |", r.code)),
            "README misses {}",
            r.code
        );
    }
}
