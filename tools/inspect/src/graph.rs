//! `bulkhead graph`: the access model drawn as Graphviz DOT (and SVG).
//!
//! Conventions (also drawn as a legend in every graph):
//! - a PD is a rounded box, a VM a 3-D box; a box lists the regions only it
//!   maps;
//! - a region mapped by exactly two actors is a blue edge between them,
//!   pointing from the writer to the read-only side (both ways when both
//!   write);
//! - a region mapped by three or more actors (or by none) is a note node with
//!   an edge to each mapper;
//! - a device region (fixed physical address) is a component node;
//! - a channel is a dashed edge in the direction(s) it may notify; a PPC is a
//!   bold green edge from caller to callee;
//! - an IRQ is an orange diamond pointing at the PD that receives it;
//! - control (parent to child PD, VMM to VM) is a dotted grey edge.
//!
//! With a policy, actors and regions are clustered by safety domain.

use crate::access::{perms_str, AccessModel, ActorKind, RegionAccess};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// Safety domains for clustering: domain name and the PDs, VMs and regions
/// it contains, in the order they should be drawn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Domains {
    /// `(domain, members)` pairs.
    pub domains: Vec<(String, Vec<String>)>,
}

impl Domains {
    fn of(&self, name: &str) -> Option<usize> {
        self.domains
            .iter()
            .position(|(_, members)| members.iter().any(|m| m == name))
    }
}

/// DOT string literal with `"` and `\` escaped.
fn q(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn region_node(r: &RegionAccess) -> String {
    format!("mr:{}", r.name)
}

/// (from, to, Graphviz `dir`) of a merged region edge.
type PairKey = (String, String, &'static str);

/// How a region is drawn.
enum RegionDraw {
    /// Listed inside its only mapper's box.
    Private,
    /// An edge between its two mappers.
    Edge,
    /// A node of its own (device, hub or unmapped).
    Node,
}

fn region_draw(r: &RegionAccess) -> RegionDraw {
    if r.phys_addr.is_some() {
        return RegionDraw::Node;
    }
    match r.mappings.len() {
        1 => RegionDraw::Private,
        2 if r.mappings[0].who != r.mappings[1].who => RegionDraw::Edge,
        _ => RegionDraw::Node,
    }
}

/// The DOT text of `m`, clustered by `domains` when given.
pub fn dot(m: &AccessModel, domains: Option<&Domains>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "digraph system {{");
    let _ = writeln!(
        o,
        "  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=11, compound=true, newrank=true];"
    );
    let _ = writeln!(o, "  node [fontname=\"Helvetica\", fontsize=10];");
    let _ = writeln!(o, "  edge [fontname=\"Helvetica\", fontsize=8];");

    // Private regions per actor, listed in that actor's box.
    let mut private: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in &m.regions {
        if let RegionDraw::Private = region_draw(r) {
            let mp = &r.mappings[0];
            private.entry(mp.who.as_str()).or_default().push(format!(
                "{} {}",
                r.name,
                perms_str(mp.perms)
            ));
        }
    }

    // Node statements, grouped by cluster (None = outside every domain).
    let ndomains = domains.map_or(0, |d| d.domains.len());
    let mut by_cluster: Vec<Vec<String>> = vec![Vec::new(); ndomains + 1];
    let cluster_of = |name: &str| -> usize { domains.and_then(|d| d.of(name)).unwrap_or(ndomains) };

    for a in &m.actors {
        let mut label = a.name.clone();
        match a.kind {
            ActorKind::Pd => {
                let _ = write!(label, "\nprio {}", a.priority);
                if a.passive {
                    label.push_str(", passive");
                }
                if a.budget < a.period {
                    let _ = write!(label, ", {}/{} µs", a.budget, a.period);
                }
            }
            ActorKind::Vm => {
                let n = m.vcpus.iter().filter(|v| v.vm == a.name).count();
                let _ = write!(label, "\nVM, {n} vCPU, prio {}", a.priority);
            }
        }
        if let Some(list) = private.get(a.name.as_str()) {
            for item in list {
                let _ = write!(label, "\n{item}");
            }
        }
        let shape = match a.kind {
            ActorKind::Pd => "shape=box, style=\"rounded,filled\", fillcolor=\"#f4f4f4\"",
            ActorKind::Vm => "shape=box3d, style=filled, fillcolor=\"#fff7e0\"",
        };
        by_cluster[cluster_of(&a.name)].push(format!(
            "{} [label={}, {shape}];",
            q(&a.name),
            q(&label)
        ));
    }
    for r in &m.regions {
        if let RegionDraw::Node = region_draw(r) {
            let mut label = r.name.clone();
            let style = if let Some(pa) = r.phys_addr {
                let _ = write!(label, "\nphys {pa:#x}");
                "shape=component, style=filled, fillcolor=\"#e8e8ff\""
            } else if r.mappings.is_empty() {
                label.push_str("\n(unmapped)");
                "shape=note, style=dashed"
            } else {
                "shape=note"
            };
            if let Some(s) = r.size {
                let _ = write!(label, "\n{s:#x} bytes");
            }
            by_cluster[cluster_of(&r.name)].push(format!(
                "{} [label={}, {style}];",
                q(&region_node(r)),
                q(&label)
            ));
        }
    }
    for i in &m.irqs {
        by_cluster[cluster_of(&i.pd)].push(format!(
            "{} [label={}, shape=diamond, style=filled, fillcolor=\"#ffe0c0\", fontsize=8];",
            q(&format!("irq:{}", i.irq)),
            q(&format!("IRQ {}", i.irq))
        ));
    }

    if let Some(d) = domains {
        for (idx, (name, _)) in d.domains.iter().enumerate() {
            let _ = writeln!(o, "  subgraph {} {{", q(&format!("cluster_domain_{idx}")));
            let _ = writeln!(
                o,
                "    label={}; style=\"rounded,dashed\"; color=\"#804040\";",
                q(&format!("domain: {name}"))
            );
            for stmt in &by_cluster[idx] {
                let _ = writeln!(o, "    {stmt}");
            }
            let _ = writeln!(o, "  }}");
        }
    }
    for stmt in &by_cluster[ndomains] {
        let _ = writeln!(o, "  {stmt}");
    }

    // Edges. Regions shared by the same two actors in the same direction
    // are drawn as one edge listing them all, so a hop with request,
    // response and data regions is one arrow, not four.
    let mut pair_edges: Vec<(PairKey, Vec<String>)> = Vec::new();
    for r in &m.regions {
        match region_draw(r) {
            RegionDraw::Private => {}
            RegionDraw::Edge => {
                let (x, y) = (&r.mappings[0], &r.mappings[1]);
                let (from, to, dir, line) = match (x.perms.write, y.perms.write) {
                    (false, true) => (
                        &y.who,
                        &x.who,
                        "forward",
                        format!("{} {}/{}", r.name, perms_str(y.perms), perms_str(x.perms)),
                    ),
                    (true, false) => (
                        &x.who,
                        &y.who,
                        "forward",
                        format!("{} {}/{}", r.name, perms_str(x.perms), perms_str(y.perms)),
                    ),
                    (true, true) => (
                        &x.who,
                        &y.who,
                        "both",
                        format!("{} {}/{}", r.name, perms_str(x.perms), perms_str(y.perms)),
                    ),
                    (false, false) => (
                        &x.who,
                        &y.who,
                        "none",
                        format!("{} {}/{}", r.name, perms_str(x.perms), perms_str(y.perms)),
                    ),
                };
                let key = (from.clone(), to.clone(), dir);
                match pair_edges.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, lines)) => lines.push(line),
                    None => pair_edges.push((key, vec![line])),
                }
            }
            RegionDraw::Node => {
                let node = q(&region_node(r));
                for mp in &r.mappings {
                    let mut label = perms_str(mp.perms);
                    if !mp.cached {
                        label.push_str(" uc");
                    }
                    let (from, to) = if mp.perms.write {
                        (q(&mp.who), node.clone())
                    } else {
                        (node.clone(), q(&mp.who))
                    };
                    let dir = if mp.perms.write && (mp.perms.read || mp.perms.execute) {
                        "both"
                    } else {
                        "forward"
                    };
                    let _ = writeln!(o, "  {from} -> {to} [label={}, color=\"#2060c0\", fontcolor=\"#2060c0\", dir={dir}];", q(&label));
                }
            }
        }
    }
    for ((from, to, dir), lines) in &pair_edges {
        let _ = writeln!(
            o,
            "  {} -> {} [label={}, color=\"#2060c0\", fontcolor=\"#2060c0\", dir={dir}];",
            q(from),
            q(to),
            q(&lines.join("\n"))
        );
    }
    for c in &m.channels {
        if c.a_notifies_b || c.b_notifies_a {
            let dir = match (c.a_notifies_b, c.b_notifies_a) {
                (true, true) => "both",
                (true, false) => "forward",
                _ => "back",
            };
            let _ = writeln!(
                o,
                "  {} -> {} [label={}, style=dashed, dir={dir}];",
                q(&c.a),
                q(&c.b),
                q(&format!("ch {}:{}", c.a_id, c.b_id))
            );
        }
        for (caller, callee, id) in [(&c.a, &c.b, c.a_id), (&c.b, &c.a, c.b_id)]
            .into_iter()
            .zip([c.a_calls_b, c.b_calls_a])
            .filter_map(|(t, on)| on.then_some(t))
        {
            let _ = writeln!(
                o,
                "  {} -> {} [label={}, style=bold, color=\"#208020\", fontcolor=\"#208020\"];",
                q(caller),
                q(callee),
                q(&format!("PPC ch {id}"))
            );
        }
    }
    for i in &m.irqs {
        let _ = writeln!(
            o,
            "  {} -> {} [label={}, color=\"#d07000\", fontcolor=\"#d07000\"];",
            q(&format!("irq:{}", i.irq)),
            q(&i.pd),
            q(&format!("id {}", i.id))
        );
    }
    for a in &m.actors {
        if let Some(p) = &a.parent {
            let label = match (a.kind, a.child_id) {
                (ActorKind::Vm, _) => "vmm".to_string(),
                (ActorKind::Pd, Some(id)) => format!("child {id}"),
                (ActorKind::Pd, None) => "child".to_string(),
            };
            let _ = writeln!(
                o,
                "  {} -> {} [label={}, style=dotted, color=\"#808080\"];",
                q(p),
                q(&a.name),
                q(&label)
            );
        }
    }

    legend(&mut o);
    let _ = writeln!(o, "}}");
    o
}

fn legend(o: &mut String) {
    let _ = writeln!(o, "  subgraph cluster_legend {{");
    let _ = writeln!(
        o,
        "    label=\"legend\"; style=rounded; color=\"#b0b0b0\"; fontsize=9;"
    );
    let _ = writeln!(o, "    node [fontsize=8, width=0.3, height=0.2];");
    let _ = writeln!(o, "    \"legend:pd\" [label=\"PD\", shape=box, style=\"rounded,filled\", fillcolor=\"#f4f4f4\"];");
    let _ = writeln!(
        o,
        "    \"legend:vm\" [label=\"VM\", shape=box3d, style=filled, fillcolor=\"#fff7e0\"];"
    );
    let _ = writeln!(
        o,
        "    \"legend:mr\" [label=\"region shared by 3+\", shape=note];"
    );
    let _ = writeln!(o, "    \"legend:dev\" [label=\"device region\", shape=component, style=filled, fillcolor=\"#e8e8ff\"];");
    let _ = writeln!(
        o,
        "    \"legend:irq\" [label=\"IRQ\", shape=diamond, style=filled, fillcolor=\"#ffe0c0\"];"
    );
    let edges = [
        (
            "memory: writer to reader",
            "color=\"#2060c0\", fontcolor=\"#2060c0\"",
        ),
        ("notification", "style=dashed"),
        (
            "PPC: caller to callee",
            "style=bold, color=\"#208020\", fontcolor=\"#208020\"",
        ),
        ("IRQ delivery", "color=\"#d07000\", fontcolor=\"#d07000\""),
        (
            "control: parent to child",
            "style=dotted, color=\"#808080\"",
        ),
    ];
    for (i, (label, style)) in edges.iter().enumerate() {
        let _ = writeln!(o, "    \"legend:e{i}a\" [shape=point, width=0.05]; \"legend:e{i}b\" [shape=point, width=0.05];");
        let _ = writeln!(
            o,
            "    \"legend:e{i}a\" -> \"legend:e{i}b\" [label={}, {style}];",
            q(label)
        );
    }
    let _ = writeln!(o, "  }}");
}

/// Errors from rendering SVG.
#[derive(Debug)]
pub enum SvgError {
    /// Graphviz's `dot` could not be started.
    DotMissing(std::io::Error),
    /// `dot` ran and failed.
    DotFailed(String),
}

impl std::fmt::Display for SvgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SvgError::DotMissing(e) => write!(
                f,
                "cannot run Graphviz's `dot` ({e}); install it with `apt-get install graphviz` (or `make setup`), or write `-o FILE.dot` instead"
            ),
            SvgError::DotFailed(msg) => write!(f, "`dot` failed: {msg}"),
        }
    }
}

impl std::error::Error for SvgError {}

/// Render DOT text to SVG with Graphviz's `dot`.
pub fn svg(dot_text: &str) -> Result<String, SvgError> {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(SvgError::DotMissing)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(dot_text.as_bytes())
            .map_err(|e| SvgError::DotFailed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| SvgError::DotFailed(e.to_string()))?;
    if !out.status.success() {
        return Err(SvgError::DotFailed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| SvgError::DotFailed(e.to_string()))
}
