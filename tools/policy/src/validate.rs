//! Checks: a policy on its own ([`internal`], run by [`parse`](crate::parse)),
//! and a system description against a policy ([`validate_against`]).
//!
//! ```
//! use bulkhead_sdf::model::{ProtectionDomain, SystemDescription};
//! let policy = bulkhead_policy::parse(r#"
//! version = 1
//! [[domain]]
//! name = "safety"
//! criticality = "ASIL-B"
//! members = ["can_virt"]
//! "#).unwrap();
//! let mut sys = SystemDescription::default();
//! for name in ["can_virt", "stranger"] {
//!     sys.protection_domains.push(ProtectionDomain { name: name.into(), ..Default::default() });
//! }
//! let diags = bulkhead_policy::validate_against(&policy, &sys);
//! assert_eq!(diags.len(), 1);
//! assert_eq!(diags[0].code, "P105"); // `stranger` is in no domain
//! ```

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_sdf::model::{Channel, SystemDescription};

use crate::diag::{PolicyDiagnostic, Severity};
use crate::{ChannelRef, Direction, Domain, Flow, Policy, Pos, Unassigned};

/// The policy's own consistency: unique domains, disjoint members, flows
/// between known domains with a reason and a fitting validator.
pub(crate) fn internal(p: &Policy, diags: &mut Vec<PolicyDiagnostic>) {
    internal_exemptions(p, diags);
    let mut seen: BTreeMap<&str, &Domain> = BTreeMap::new();
    let mut member_of: BTreeMap<&str, &str> = BTreeMap::new();
    for d in &p.domains {
        if let Some(first) = seen.get(d.name.value.as_str()) {
            diags.push(PolicyDiagnostic::error(
                "P007",
                d.name.pos,
                format!(
                    "domain `{}` is declared twice (first at line {})",
                    d.name.value, first.name.pos.line
                ),
                "merge the two [[domain]] entries or rename one",
            ));
            continue;
        }
        seen.insert(&d.name.value, d);
        if d.members.is_empty() {
            diags.push(PolicyDiagnostic::error(
                "P015",
                d.pos,
                format!("domain `{}` has no members", d.name.value),
                "list its PDs, VMs and private regions in `members`, or remove it",
            ));
        }
        for m in &d.members {
            if let Some(other) = member_of.insert(&m.value, &d.name.value) {
                diags.push(PolicyDiagnostic::error(
                    "P008",
                    m.pos,
                    format!(
                        "`{}` is already a member of domain `{other}`; an element belongs to at most one domain",
                        m.value
                    ),
                    "remove it from one domain; to share memory between domains declare a [[flow]]",
                ));
            }
        }
    }
    for f in &p.flows {
        let from = known_domain(p, &f.from.value, f.from.pos, diags);
        let to = known_domain(p, &f.to.value, f.to.pos, diags);
        if f.reason.value.trim().is_empty() {
            diags.push(PolicyDiagnostic::error(
                "P010",
                f.reason.pos,
                "this flow gives no reason".into(),
                "say why the flow is needed: reviewers approve the reason, not just the wiring",
            ));
        }
        let (Some(from), Some(to)) = (from, to) else {
            continue;
        };
        if from.name.value == to.name.value {
            diags.push(PolicyDiagnostic::error(
                "P011",
                f.to.pos,
                format!("flow from domain `{}` to itself", from.name.value),
                "flows inside a domain need no declaration; check `from` and `to`",
            ));
            continue;
        }
        let via_in = |d: &Domain| d.members.iter().any(|m| m.value == f.via.value);
        if !via_in(from) && !via_in(to) {
            diags.push(PolicyDiagnostic::error(
                "P013",
                f.via.pos,
                format!(
                    "`via = \"{}\"` is a member of neither `{}` nor `{}`",
                    f.via.value, from.name.value, to.name.value
                ),
                "the validating PD must belong to one of the two domains it joins",
            ));
            continue;
        }
        // Information entering a more critical domain is validated by a PD
        // of that domain: the less critical side cannot vouch for itself.
        let (low, high) = if from.criticality.value <= to.criticality.value {
            (from, to)
        } else {
            (to, from)
        };
        let enters_high =
            f.direction.value == Direction::TwoWay || high.name.value == to.name.value;
        if enters_high && low.criticality.value < high.criticality.value && !via_in(high) {
            diags.push(PolicyDiagnostic::error(
                "P014",
                f.via.pos,
                format!(
                    "information enters `{}` ({}) from `{}` ({}) but is validated by `{}`, which is not in `{}`",
                    high.name.value,
                    high.criticality.value,
                    low.name.value,
                    low.criticality.value,
                    f.via.value,
                    high.name.value
                ),
                "set `via` to the PD of the more critical domain that checks what crosses",
            ));
        }
    }
}

/// Exemptions: a reason each, and no region also named by a flow or a domain.
fn internal_exemptions(p: &Policy, diags: &mut Vec<PolicyDiagnostic>) {
    for e in &p.exemptions {
        if e.reason.value.trim().is_empty() {
            diags.push(PolicyDiagnostic::error(
                "P010",
                e.reason.pos,
                "this exemption gives no reason".into(),
                "say why no information passes through these regions",
            ));
        }
        for r in &e.regions {
            let in_flow = p
                .flows
                .iter()
                .any(|f| f.regions.iter().any(|x| x.value == r.value));
            if in_flow || p.domain_of(&r.value).is_some() {
                diags.push(PolicyDiagnostic::error(
                    "P016",
                    r.pos,
                    format!("region `{}` is exempted but also named by a flow or a domain", r.value),
                    "a region either carries a declared flow or is exempted as carrying none, not both",
                ));
            }
        }
    }
}

fn known_domain<'p>(
    p: &'p Policy,
    name: &str,
    pos: Pos,
    diags: &mut Vec<PolicyDiagnostic>,
) -> Option<&'p Domain> {
    let d = p.domain(name);
    if d.is_none() {
        let names: Vec<&str> = p.domains.iter().map(|d| d.name.value.as_str()).collect();
        diags.push(PolicyDiagnostic::error(
            "P009",
            pos,
            format!("no domain named `{name}`"),
            &format!("declared domains: {}", names.join(", ")),
        ));
    }
    d
}

/// Who maps a region: the PD or VM, and whether writably.
struct Mapper<'s> {
    element: &'s str,
    write: bool,
}

/// What the system gives: names, who maps what, channels.
struct Facts<'s> {
    pds: BTreeMap<&'s str, u32>,
    vms: BTreeMap<&'s str, u32>,
    regions: BTreeMap<&'s str, u32>,
    device_regions: BTreeSet<&'s str>,
    maps: BTreeMap<&'s str, Vec<Mapper<'s>>>,
    channels: Vec<&'s Channel>,
}

impl<'s> Facts<'s> {
    fn new(sys: &'s SystemDescription) -> Self {
        let mut f = Facts {
            pds: BTreeMap::new(),
            vms: BTreeMap::new(),
            regions: sys
                .memory_regions
                .iter()
                .map(|m| (m.name.as_str(), m.loc.elem.line))
                .collect(),
            device_regions: sys
                .memory_regions
                .iter()
                .filter(|m| m.phys_addr.is_some())
                .map(|m| m.name.as_str())
                .collect(),
            maps: BTreeMap::new(),
            channels: sys.channels.iter().collect(),
        };
        for pd in sys.all_pds() {
            f.pds.insert(&pd.name, pd.loc.elem.line);
            for m in &pd.maps {
                f.maps.entry(&m.mr).or_default().push(Mapper {
                    element: &pd.name,
                    write: m.perms.write,
                });
            }
            if let Some(vm) = &pd.virtual_machine {
                f.vms.insert(&vm.name, vm.loc.elem.line);
                for m in &vm.maps {
                    f.maps.entry(&m.mr).or_default().push(Mapper {
                        element: &vm.name,
                        write: m.perms.write,
                    });
                }
            }
        }
        f
    }

    fn matching_channels(&self, c: &ChannelRef) -> Vec<&'s Channel> {
        self.channels
            .iter()
            .copied()
            .filter(|ch| channel_matches(c, ch))
            .collect()
    }
}

fn channel_matches(c: &ChannelRef, ch: &Channel) -> bool {
    let end_ok = |r: &crate::EndRef, e: &bulkhead_sdf::model::ChannelEnd| {
        r.pd == e.pd && r.id.is_none_or(|id| id == e.id)
    };
    (end_ok(&c.ends[0], &ch.ends[0]) && end_ok(&c.ends[1], &ch.ends[1]))
        || (end_ok(&c.ends[0], &ch.ends[1]) && end_ok(&c.ends[1], &ch.ends[0]))
}

/// Checks `sys` against `policy`: every name the policy uses exists (a
/// warning otherwise, since one policy serves several boards' files); every
/// PD and VM is in a domain; every region and channel that crosses domains
/// is named by a flow between exactly those domains, validated by a PD that
/// touches it; one-way flows are read-only on their receiving side.
/// Returns every finding; the system passes when none is an error.
pub fn validate_against(policy: &Policy, sys: &SystemDescription) -> Vec<PolicyDiagnostic> {
    let facts = Facts::new(sys);
    let mut out = Vec::new();
    let domain_of = |e: &str| policy.domain_of(e).map(|d| d.name.value.as_str());
    // Where the policy lists an element (for pointing at it), else 1:1.
    let listed_at = |e: &str| {
        policy
            .domains
            .iter()
            .flat_map(|d| d.members.iter())
            .find(|m| m.value == e)
            .map_or(Pos { line: 1, col: 1 }, |m| m.pos)
    };
    let warn = |code, pos, message: String, hint: &str| PolicyDiagnostic {
        severity: Severity::Warning,
        ..PolicyDiagnostic::error(code, pos, message, hint)
    };

    for d in &policy.domains {
        for m in &d.members {
            let v = m.value.as_str();
            if !facts.pds.contains_key(v)
                && !facts.vms.contains_key(v)
                && !facts.regions.contains_key(v)
            {
                out.push(warn(
                    "P101",
                    m.pos,
                    format!("`{v}` is not a PD, VM or memory region of this system"),
                    "fine if the policy also serves a board without it; otherwise check the spelling",
                ));
            }
        }
    }

    let severity = match policy.unassigned.value {
        Unassigned::Error => Severity::Error,
        Unassigned::Warn => Severity::Warning,
    };
    for (kind, names) in [("PD", &facts.pds), ("VM", &facts.vms)] {
        for (name, line) in names {
            if domain_of(name).is_none() {
                out.push(PolicyDiagnostic {
                    severity,
                    ..PolicyDiagnostic::error(
                        "P105",
                        policy.unassigned.pos,
                        format!("{kind} `{name}` (system line {line}) belongs to no domain"),
                        "add it to the `members` of the domain it serves",
                    )
                })
            }
        }
    }

    for f in &policy.flows {
        flow_checks(policy, &facts, f, &mut out, &warn);
    }
    let mut exempt = BTreeSet::new();
    for r in policy.exemptions.iter().flat_map(|e| e.regions.iter()) {
        let name = r.value.as_str();
        if !facts.regions.contains_key(name) {
            out.push(warn(
                "P102",
                r.pos,
                format!("memory region `{name}` is not in this system"),
                "fine if the policy also serves a board without it; otherwise check the spelling",
            ));
        } else if !facts.device_regions.contains(name) {
            out.push(PolicyDiagnostic::error(
                "P111",
                r.pos,
                format!("region `{name}` has no fixed phys_addr, so it is memory, and shared memory carries information"),
                "declare a [[flow]] for it instead; only device frames can be exempted",
            ));
        } else {
            exempt.insert(name);
        }
    }

    // Every region mapped from more than one domain needs a flow naming it.
    for (region, mappers) in &facts.maps {
        let mut domains: BTreeSet<Option<&str>> =
            mappers.iter().map(|m| domain_of(m.element)).collect();
        if let Some(d) = domain_of(region) {
            domains.insert(Some(d));
        }
        if domains.len() > 1
            && !exempt.contains(region)
            && !policy
                .flows
                .iter()
                .any(|f| f.regions.iter().any(|r| r.value == *region))
        {
            let who: Vec<String> = mappers
                .iter()
                .map(|m| {
                    format!(
                        "{} ({})",
                        m.element,
                        domain_of(m.element).unwrap_or("no domain")
                    )
                })
                .collect();
            let line = facts.regions.get(region).copied().unwrap_or(0);
            out.push(PolicyDiagnostic::error(
                "P108",
                mappers.first().map_or(Pos { line: 1, col: 1 }, |m| listed_at(m.element)),
                format!(
                    "memory region `{region}` (system line {line}) is shared across domains by {} and no flow names it",
                    who.join(", ")
                ),
                "declare a [[flow]] with this region, its domains, the validating PD and a reason — or stop sharing it",
            ));
        }
    }

    // Every channel between domains needs a flow naming it.
    for ch in &facts.channels {
        let (a, b) = (&ch.ends[0].pd, &ch.ends[1].pd);
        let (da, db) = (domain_of(a), domain_of(b));
        if da == db && da.is_some() {
            continue;
        }
        let declared = policy
            .flows
            .iter()
            .any(|f| f.channels.iter().any(|c| channel_matches(&c.value, ch)));
        if !declared {
            out.push(PolicyDiagnostic::error(
                "P109",
                listed_at(a),
                format!(
                    "channel {a}:{} <-> {b}:{} (system line {}) joins {} and {} and no flow names it",
                    ch.ends[0].id,
                    ch.ends[1].id,
                    ch.loc.elem.line,
                    da.unwrap_or("no domain"),
                    db.unwrap_or("no domain")
                ),
                "declare a [[flow]] with this channel, or remove the channel",
            ));
        }
    }
    out.sort_by_key(|d| d.pos);
    out
}

fn flow_checks(
    policy: &Policy,
    facts: &Facts<'_>,
    f: &Flow,
    out: &mut Vec<PolicyDiagnostic>,
    warn: &dyn Fn(&'static str, Pos, String, &str) -> PolicyDiagnostic,
) {
    let domain_of = |e: &str| policy.domain_of(e).map(|d| d.name.value.as_str());
    let ends = [f.from.value.as_str(), f.to.value.as_str()];
    let via = f.via.value.as_str();
    if !facts.pds.contains_key(via) {
        out.push(warn(
            "P104",
            f.via.pos,
            format!("`via = \"{via}\"` is not a PD of this system"),
            "fine if the policy also serves a board without it; otherwise check the spelling",
        ));
    }
    for r in &f.regions {
        let Some(mappers) = facts.maps.get(r.value.as_str()) else {
            if !facts.regions.contains_key(r.value.as_str()) {
                out.push(warn(
                    "P102",
                    r.pos,
                    format!("memory region `{}` is not in this system", r.value),
                    "fine if the policy also serves a board without it; otherwise check the spelling",
                ));
            }
            continue;
        };
        if facts.pds.contains_key(via) && !mappers.iter().any(|m| m.element == via) {
            out.push(PolicyDiagnostic::error(
                "P106",
                r.pos,
                format!(
                    "`{via}` (the flow's `via`) does not map region `{}`",
                    r.value
                ),
                "the validating PD must be one side of the region it validates",
            ));
        }
        for m in mappers {
            let d = domain_of(m.element);
            if !d.is_some_and(|d| ends.contains(&d)) {
                out.push(PolicyDiagnostic::error(
                    "P107",
                    r.pos,
                    format!(
                        "region `{}` is also mapped by `{}` ({}), outside this flow's domains `{}` and `{}`",
                        r.value,
                        m.element,
                        d.unwrap_or("no domain"),
                        ends[0],
                        ends[1]
                    ),
                    "unmap it there, or declare the flow that exists",
                ));
            } else if f.direction.value == Direction::OneWay && m.write && d == Some(ends[1]) {
                out.push(PolicyDiagnostic::error(
                    "P110",
                    r.pos,
                    format!(
                        "one-way flow into `{}`, but `{}` maps region `{}` writable",
                        ends[1], m.element, r.value
                    ),
                    "map it read-only (perms=\"r\") on the receiving side, or declare the flow two-way",
                ));
            }
        }
    }
    for c in &f.channels {
        let found = facts.matching_channels(&c.value);
        if found.is_empty() {
            out.push(warn(
                "P103",
                c.pos,
                format!("no channel {} in this system", c.value),
                "fine if the policy also serves a board without it; otherwise check the names and ids",
            ));
            continue;
        }
        for ch in found {
            let pds = [ch.ends[0].pd.as_str(), ch.ends[1].pd.as_str()];
            if facts.pds.contains_key(via) && !pds.contains(&via) {
                out.push(PolicyDiagnostic::error(
                    "P106",
                    c.pos,
                    format!(
                        "`{via}` (the flow's `via`) is not an end of channel {}",
                        c.value
                    ),
                    "the validating PD must be one end of the channel it validates",
                ));
            }
            for pd in pds {
                let d = domain_of(pd);
                if !d.is_some_and(|d| ends.contains(&d)) {
                    out.push(PolicyDiagnostic::error(
                        "P107",
                        c.pos,
                        format!(
                            "channel {} ends in `{pd}` ({}), outside this flow's domains `{}` and `{}`",
                            c.value,
                            d.unwrap_or("no domain"),
                            ends[0],
                            ends[1]
                        ),
                        "name the channel in a flow between the right domains",
                    ));
                }
            }
        }
    }
}
