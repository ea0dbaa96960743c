//! Golden tests: the report (text, JSON) and the graph (DOT) of a fixture
//! that uses every kind of grant, compared byte for byte with committed
//! files. `UPDATE_GOLDEN=1` rewrites them after a deliberate change.

// A test fails by panicking; helpers here may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

use bulkhead_inspect::{access::AccessModel, graph, report};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn model(name: &str) -> AccessModel {
    let src = std::fs::read_to_string(dir().join("fixtures").join(name)).unwrap();
    let sys = bulkhead_sdf::parse(&src).unwrap_or_else(|d| panic!("{name} does not parse: {d:?}"));
    AccessModel::of(&sys)
}

fn golden(name: &str, actual: &str) {
    let path = dir().join("golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name} differs from its golden file; rerun with UPDATE_GOLDEN=1 if the change is deliberate.\n--- actual ---\n{actual}"
    );
}

fn domains() -> graph::Domains {
    graph::Domains {
        domains: vec![
            (
                "safety".to_string(),
                vec!["driver".to_string(), "uart_regs".to_string()],
            ),
            (
                "qm".to_string(),
                vec!["vmm".to_string(), "guest".to_string(), "helper".to_string()],
            ),
        ],
    }
}

#[test]
fn report_text_matches_golden() {
    golden("mixed.report.txt", &report::text(&model("mixed.system")));
}

#[test]
fn report_json_matches_golden() {
    let j = serde_json::to_string_pretty(&report::json(&model("mixed.system"))).unwrap();
    golden("mixed.report.json", &(j + "\n"));
}

#[test]
fn graph_dot_matches_golden() {
    golden("mixed.dot", &graph::dot(&model("mixed.system"), None));
    golden(
        "mixed.domains.dot",
        &graph::dot(&model("mixed.system"), Some(&domains())),
    );
}

/// The golden files could drift into saying the wrong thing and still
/// match; these assert the facts a reviewer relies on.
#[test]
fn model_states_directions_and_rights() {
    let m = model("mixed.system");
    let ring = m.regions.iter().find(|r| r.name == "tx_ring").unwrap();
    assert_eq!(
        ring.writers().map(|w| w.who.as_str()).collect::<Vec<_>>(),
        ["vmm"]
    );
    assert_eq!(
        ring.readers_only()
            .map(|w| w.who.as_str())
            .collect::<Vec<_>>(),
        ["driver"]
    );
    let ppc = m.channels.iter().find(|c| c.b == "server").unwrap();
    assert!(
        ppc.a_calls_b && !ppc.b_calls_a,
        "vmm calls server, not the reverse"
    );
    assert!(ppc.a_notifies_b && !ppc.b_notifies_a);
    let helper = m.actor("helper").unwrap();
    assert_eq!(helper.parent.as_deref(), Some("vmm"));
    assert_eq!(helper.child_id, Some(1));
    assert_eq!(m.actor("guest").unwrap().parent.as_deref(), Some("vmm"));
    let dot = graph::dot(&m, None);
    assert!(
        dot.contains("\"vmm\" -> \"driver\" [label=\"tx_ring rw/r"),
        "ring edge points from writer to reader"
    );
    assert!(
        dot.contains("\"vmm\" -> \"server\" [label=\"PPC ch 2\""),
        "PPC edge from caller to callee"
    );
    assert!(dot.contains("\"irq:33\" -> \"driver\""));
    assert!(dot.contains("(unmapped)"), "unmapped region drawn");
    let clustered = graph::dot(&m, Some(&domains()));
    let safety = clustered.split("cluster_domain_1").next().unwrap();
    assert!(
        safety.contains("\"driver\" [label="),
        "driver drawn inside the safety cluster"
    );
    assert!(
        !safety.contains("\"vmm\" [label="),
        "vmm not drawn inside the safety cluster"
    );
}

#[test]
fn svg_renders_when_dot_is_present() {
    let dot = graph::dot(&model("mixed.system"), Some(&domains()));
    match graph::svg(&dot) {
        Ok(svg) => {
            assert!(svg.contains("<svg"), "not an SVG document");
            assert!(svg.contains(">driver<") && svg.contains(">legend<"));
        }
        // `make test` installs Graphviz first; a machine without it fails
        // here with the install hint rather than reporting a pass.
        Err(e) => panic!("{e}"),
    }
}
