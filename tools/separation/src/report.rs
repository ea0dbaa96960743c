//! The three reports: a text table (stdout), JUnit XML (one testcase per
//! checklist item; not covered / not enforced are `<skipped>` with the
//! reason) and a self-contained HTML page (inline CSS, inline SVG plots of
//! the measured latency distributions; no script, no external asset).

use std::fmt::Write as _;

use crate::proof::Shown;
use crate::stats::percentile;
use crate::{Distribution, Status, SuiteResult};

/// Escapes text for XML/HTML content and attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => o.push(c),
        }
    }
    o
}

fn config_lines(res: &SuiteResult) -> Vec<String> {
    let c = &res.config;
    let mut v = Vec::new();
    for f in &c.files {
        v.push(format!(
            "{}: {} sha256 {}",
            f.role,
            f.path.display(),
            f.sha256.as_deref().unwrap_or_else(|e| e)
        ));
    }
    v.push(format!("host kernel: {}", c.kernel));
    v.push(format!("host CPU: {} ({} cores online)", c.cpu, c.cores));
    v.push(match &c.sched_fifo {
        Ok(()) => "SCHED_FIFO: granted".to_string(),
        Err(e) => format!("SCHED_FIFO: refused ({e})"),
    });
    v.push(match c.profile {
        crate::scenario::Profile::StandIn => {
            "safety path: the stand-in sep_cluster in cluster_vmm (timed round trips)".to_string()
        }
        crate::scenario::Profile::Reference => {
            "safety path: the system's own programs (reference system; judged by the monitor)"
                .to_string()
        }
    });
    for n in &c.notes {
        v.push(format!("binding changed for this host: {n}"));
    }
    v
}

/// The human table.
pub fn table(res: &SuiteResult) -> String {
    let mut o = String::new();
    for l in config_lines(res) {
        let _ = writeln!(o, "{l}");
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<4} {:<30} {:<26} reason",
        "item", "Annex D class", "status"
    );
    for r in &res.items {
        let _ = writeln!(
            o,
            "{:<4} {:<30} {:<26} {}",
            r.item.id,
            r.item.annex_d,
            r.outcome.status.word(),
            r.outcome.status.reason()
        );
    }
    for l in proof_lines(res) {
        let _ = writeln!(o, "{l}");
    }
    o
}

/// One line per protection-removed build and per item run on it.
fn proof_lines(res: &SuiteResult) -> Vec<String> {
    let mut v = Vec::new();
    if res.proofs.is_empty() {
        return v;
    }
    v.push(String::new());
    v.push("proof that the tests can fail (builds with one protection removed):".into());
    for p in &res.proofs {
        v.push(format!(
            "without {} ({}; {}):",
            p.build.name,
            p.removes,
            p.build.dir.display()
        ));
        v.push(match &p.check {
            Ok(e) => format!("  check: {e}"),
            Err(e) => format!("  check: NOT REFUSED: {e}"),
        });
        for (id, _, shown) in &p.items {
            v.push(match shown {
                Shown::Failing(why) => format!("  {id}: FAILED as it must: {why}"),
                Shown::NotFailing(why) => format!("  {id}: DID NOT FAIL: {why}"),
                Shown::NotApplicable(why) => format!("  {id}: not shown: {why}"),
            });
        }
    }
    let shown: Vec<&str> = res
        .proofs
        .iter()
        .flat_map(|p| p.items.iter())
        .filter(|(_, _, s)| matches!(s, Shown::Failing(_)))
        .map(|(id, _, _)| *id)
        .collect();
    for r in &res.items {
        if matches!(r.outcome.status, Status::Passed) && !shown.contains(&r.item.id) {
            v.push(format!(
                "  {}: passed but not shown failing on any build here{}",
                r.item.id,
                if r.item.removed_by.is_empty() {
                    " (it has no protection-removed build; see its criterion)"
                } else {
                    ""
                }
            ));
        }
    }
    v
}

/// JUnit XML.
pub fn junit(res: &SuiteResult) -> String {
    let failures = res
        .items
        .iter()
        .filter(|r| matches!(r.outcome.status, Status::Failed(_)))
        .count();
    let skipped = res
        .items
        .iter()
        .filter(|r| {
            matches!(
                r.outcome.status,
                Status::NotCovered(_) | Status::NotEnforced(_)
            )
        })
        .count();
    let proof_cases = res.proofs.iter().map(|p| 1 + p.items.len()).sum::<usize>();
    let failures = failures
        + res
            .proofs
            .iter()
            .map(|p| {
                usize::from(p.check.is_err())
                    + p.items
                        .iter()
                        .filter(|(_, _, s)| matches!(s, Shown::NotFailing(_)))
                        .count()
            })
            .sum::<usize>();
    let skipped = skipped
        + res
            .proofs
            .iter()
            .flat_map(|p| p.items.iter())
            .filter(|(_, _, s)| matches!(s, Shown::NotApplicable(_)))
            .count();
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        "<testsuites><testsuite name=\"bulkhead-separation\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" errors=\"0\">",
        res.items.len() + proof_cases
    );
    o.push_str("<properties>\n");
    for (i, l) in config_lines(res).iter().enumerate() {
        let _ = writeln!(o, "<property name=\"config.{i}\" value=\"{}\"/>", esc(l));
    }
    o.push_str("</properties>\n");
    for r in &res.items {
        let _ = write!(
            o,
            "<testcase classname=\"separation.{}\" name=\"{} {}\">",
            esc(&r.item.annex_d.replace(' ', "_")),
            r.item.id,
            esc(r.item.attacks)
        );
        let reason = esc(r.outcome.status.reason());
        match &r.outcome.status {
            Status::Passed => {}
            Status::Failed(_) => {
                let _ = write!(o, "<failure message=\"{reason}\">{reason}</failure>");
            }
            Status::NotCovered(_) => {
                let _ = write!(o, "<skipped message=\"not covered: {reason}\"/>");
            }
            Status::NotEnforced(_) => {
                let _ = write!(
                    o,
                    "<skipped message=\"not enforced on this host: {reason}\"/>"
                );
            }
        }
        let mut out = format!("criterion: {}\n", r.item.criterion);
        for e in &r.outcome.evidence {
            out.push_str(e);
            out.push('\n');
        }
        let _ = writeln!(o, "<system-out>{}</system-out></testcase>", esc(&out));
    }
    for p in &res.proofs {
        let _ = write!(
            o,
            "<testcase classname=\"separation.protection_removed\" name=\"bulkhead check refuses the build without {}\">",
            esc(&p.build.name)
        );
        if let Err(e) = &p.check {
            let _ = write!(o, "<failure message=\"{0}\">{0}</failure>", esc(e));
        }
        o.push_str("</testcase>\n");
        for (id, _, shown) in &p.items {
            let _ = write!(
                o,
                "<testcase classname=\"separation.protection_removed\" name=\"{id} fails without {}\">",
                esc(&p.build.name)
            );
            match shown {
                Shown::Failing(why) => {
                    let _ = write!(o, "<system-out>{}</system-out>", esc(why));
                }
                Shown::NotFailing(why) => {
                    let _ = write!(o, "<failure message=\"{0}\">{0}</failure>", esc(why));
                }
                Shown::NotApplicable(why) => {
                    let _ = write!(o, "<skipped message=\"{}\"/>", esc(why));
                }
            }
            o.push_str("</testcase>\n");
        }
    }
    o.push_str("</testsuite></testsuites>\n");
    o
}

const COLOURS: [&str; 6] = [
    "#1f5fa8", "#c0392b", "#27864a", "#8e44ad", "#d35400", "#555555",
];

/// An empirical CDF of each distribution on one linear time axis (0 to the
/// largest p99.9 × 1.1), with p50/p99 in the legend.
pub fn svg_cdf(dists: &[Distribution]) -> String {
    let (w, h, l, r, t, b) = (640.0f64, 300.0f64, 56.0f64, 16.0f64, 12.0f64, 40.0f64);
    let xmax_ns = dists
        .iter()
        .map(|d| {
            percentile(&d.samples_ns, 100).min(percentile(&d.samples_ns, 99).saturating_mul(2))
        })
        .max()
        .unwrap_or(1)
        .max(1);
    let xmax = xmax_ns as f64 * 1.1;
    let px = |ns: f64| l + (ns / xmax).min(1.0) * (w - l - r);
    let py = |q: f64| t + (1.0 - q) * (h - t - b);
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" viewBox=\"0 0 {w} {}\" role=\"img\">",
        h + 18.0 * dists.len() as f64,
        h + 18.0 * dists.len() as f64
    );
    let _ = write!(
        o,
        "<rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"#fafafa\" stroke=\"#999\"/>",
        w - l - r,
        h - t - b
    );
    for i in 0..=5 {
        let ns = xmax * f64::from(i) / 5.0;
        let x = px(ns);
        let _ = write!(
            o,
            "<line x1=\"{x:.1}\" y1=\"{t}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{:.0}</text>",
            h - b,
            h - b + 14.0,
            ns / 1000.0
        );
    }
    for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
        let y = py(q);
        let _ = write!(
            o,
            "<line x1=\"{l}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{q}</text>",
            w - r,
            l - 4.0,
            y + 4.0
        );
    }
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">round-trip time (µs); y: fraction of samples ≤ x</text>",
        l + (w - l - r) / 2.0,
        h - 6.0
    );
    for (i, d) in dists.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut v = d.samples_ns.clone();
        v.sort_unstable();
        let n = v.len().max(1) as f64;
        // At most ~400 points per curve: every k-th sample.
        let step = (v.len() / 400).max(1);
        let mut pts = String::new();
        for (j, s) in v.iter().enumerate().step_by(step) {
            let _ = write!(pts, "{:.1},{:.1} ", px(*s as f64), py((j + 1) as f64 / n));
        }
        if let Some(last) = v.last() {
            let _ = write!(pts, "{:.1},{:.1}", px(*last as f64), py(1.0));
        }
        let _ = write!(
            o,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.6\" points=\"{pts}\"/>"
        );
        let ly = h + 12.0 + 18.0 * i as f64;
        let _ = write!(
            o,
            "<rect x=\"{l}\" y=\"{:.1}\" width=\"14\" height=\"4\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{ly:.1}\" font-size=\"12\">{} — n={} p50 {:.1} µs, p99 {:.1} µs</text>",
            ly - 5.0,
            l + 20.0,
            esc(&d.label),
            v.len(),
            percentile(&v, 50) as f64 / 1000.0,
            percentile(&v, 99) as f64 / 1000.0
        );
    }
    o.push_str("</svg>");
    o
}

/// The HTML report.
pub fn html(res: &SuiteResult) -> String {
    let mut o = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Bulkhead separation report</title><style>\
body{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}\
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.35em .5em;vertical-align:top;text-align:left}\
th{background:#eee}.passed{background:#dff0d8}.FAILED{background:#f2dede}.skip{background:#fcf8e3}\
code,pre{font-family:ui-monospace,monospace;font-size:.9em}pre{white-space:pre-wrap}h2{margin-top:1.5em}\
</style></head><body><h1>Safety-separation report</h1>",
    );
    o.push_str("<h2>Configuration tested</h2><pre>");
    for l in config_lines(res) {
        o.push_str(&esc(&l));
        o.push('\n');
    }
    o.push_str("</pre><p>Host-board results show isolation and ordering properties enforced by Linux (processes, sealed memfds, seccomp, SCHED_FIFO); they say nothing about seL4 worst-case timing (see tools/separation/README.md).</p>");
    o.push_str("<h2>Checklist</h2><table><tr><th>item</th><th>Annex D</th><th>status</th><th>attacks</th><th>measures</th><th>pass criterion</th><th>reason / evidence</th></tr>");
    for r in &res.items {
        let s = &r.outcome.status;
        let class = match s {
            Status::Passed => "passed",
            Status::Failed(_) => "FAILED",
            _ => "skip",
        };
        let _ = write!(
            o,
            "<tr class=\"{class}\"><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}",
            r.item.id,
            esc(r.item.annex_d),
            esc(s.word()),
            esc(r.item.attacks),
            esc(r.item.measures),
            esc(r.item.criterion),
            esc(s.reason())
        );
        if !r.outcome.evidence.is_empty() {
            o.push_str("<ul>");
            for e in &r.outcome.evidence {
                let _ = write!(o, "<li><code>{}</code></li>", esc(e));
            }
            o.push_str("</ul>");
        }
        o.push_str("</td></tr>");
    }
    o.push_str("</table>");
    let proof = proof_lines(res);
    if !proof.is_empty() {
        o.push_str("<h2>Proof that the tests can fail</h2><p>Each build below has one host-board protection removed (the runtime's test-only <code>protection-removed-*</code> features); every item relying on it must FAIL there, and <code>bulkhead check</code> must refuse the build.</p><pre>");
        for l in proof.iter().skip(2) {
            o.push_str(&esc(l));
            o.push('\n');
        }
        o.push_str("</pre>");
        for p in &res.proofs {
            o.push_str("<details><summary>");
            o.push_str(&esc(&format!(
                "programs of the build without {}",
                p.build.name
            )));
            o.push_str("</summary><pre>");
            for (n, path, h) in &p.programs {
                let _ = writeln!(
                    o,
                    "{}",
                    esc(&format!(
                        "{n}: {} sha256 {}",
                        path.display(),
                        h.as_deref().unwrap_or_else(|e| e)
                    ))
                );
            }
            o.push_str("</pre></details>");
        }
    }
    for r in &res.items {
        if r.outcome.distributions.is_empty() {
            continue;
        }
        let _ = write!(o, "<h2>{}: latency distributions</h2>", r.item.id);
        o.push_str(&svg_cdf(&r.outcome.distributions));
    }
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Item, ItemResult, Outcome};

    fn result(status: Status) -> SuiteResult {
        SuiteResult {
            config: crate::config::Configuration {
                files: vec![],
                kernel: "k".into(),
                cpu: "c".into(),
                cores: 2,
                sched_fifo: Ok(()),
                profile: crate::scenario::Profile::StandIn,
                notes: vec![],
            },
            items: vec![ItemResult {
                item: Item {
                    id: "T1",
                    annex_d: "D.2.2",
                    attacks: "a <b>",
                    measures: "m",
                    criterion: "c",
                    test: Err("x"),
                    removed_by: &[],
                },
                outcome: Outcome {
                    status,
                    evidence: vec![],
                    distributions: vec![Distribution {
                        label: "base".into(),
                        samples_ns: (1..1000).collect(),
                    }],
                },
            }],
            proofs: vec![],
        }
    }

    fn with_proof(shown: Shown, check: Result<String, String>) -> SuiteResult {
        let mut r = result(Status::Passed);
        r.proofs.push(crate::proof::Proof {
            build: crate::proof::RemovedBuild {
                name: "priorities".into(),
                dir: "/d".into(),
            },
            removes: "priorities",
            check,
            items: vec![("T1", Outcome::new(Status::Passed), shown)],
            programs: vec![],
        });
        r
    }

    #[test]
    fn a_test_that_does_not_fail_without_its_protection_fails_the_suite() {
        let ok = with_proof(Shown::Failing("late".into()), Ok("E078".into()));
        assert!(!ok.any_failed());
        let j = junit(&ok);
        assert!(
            j.contains("name=\"T1 fails without priorities\"") && j.contains("failures=\"0\""),
            "{j}"
        );
        assert!(table(&ok).contains("T1: FAILED as it must: late"));

        let blind = with_proof(Shown::NotFailing("T1 passed".into()), Ok("E078".into()));
        assert!(blind.any_failed());
        assert!(junit(&blind).contains("failures=\"1\""));
        assert!(table(&blind).contains("T1: DID NOT FAIL"));
        assert!(html(&blind).contains("Proof that the tests can fail"));

        let unrefused = with_proof(Shown::Failing("late".into()), Err("0 of 3".into()));
        assert!(unrefused.any_failed());
        assert!(table(&unrefused).contains("check: NOT REFUSED"));
    }

    #[test]
    fn junit_marks_skips_and_failures() {
        let j = junit(&result(Status::NotCovered("no CAN".into())));
        assert!(
            j.contains("<skipped message=\"not covered: no CAN\"/>"),
            "{j}"
        );
        assert!(j.contains("a &lt;b&gt;"));
        let j = junit(&result(Status::Failed("p99 too high".into())));
        assert!(j.contains("failures=\"1\""));
        assert!(j.contains("<failure message=\"p99 too high\">"));
    }

    #[test]
    fn html_is_self_contained() {
        let h = html(&result(Status::Passed));
        assert!(h.contains("<svg") && h.contains("<polyline"));
        assert!(
            !h.contains("<script") && !h.contains("http://") || h.matches("http://").count() == 1
        );
        assert!(!h.contains("src="));
    }
}
