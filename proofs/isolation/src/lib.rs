//! `bulkhead prove`: the information-flow graph of a system, computed from its
//! description alone, checked against the hand-written safety policy.
//!
//! Two layers, each with stable codes:
//!
//! - the policy fit (`P1xx`, from [`bulkhead_policy::validate_against`]):
//!   every name resolves, every PD and VM is in a domain, and every memory
//!   region or channel that joins two domains is a declared, reasoned flow in
//!   the allowed direction;
//! - the paths the policy's flows cannot express (`F0xx`, here): control
//!   across domains (a parent restarting a child, a VMM driving its VM), a
//!   device reached from two domains (registers in one, its interrupt in
//!   another), bus-master devices that no IOMMU confines (their drivers can
//!   reach every domain's RAM by DMA, so every such domain must be able to
//!   trust them), protected procedure calls from a safety-relevant PD into a
//!   PD that can be restarted (the caller would block for ever), and maps
//!   that end at a safety-relevant PD's unguarded stack bottom.
//!
//! Each finding is a chain of edges from the description (who, how, whom), so
//! a reviewer can see the path, not just a verdict. A clean result lists what
//! was checked; the DMA trust it had to assume is always listed.
//!
//! ```
//! use bulkhead_prove::{prove, Input};
//! let sys = bulkhead_sdf::parse(r#"<system>
//!   <protection_domain name="a"><program_image path="a.elf"/></protection_domain>
//! </system>"#).unwrap();
//! let policy = bulkhead_policy::parse(r#"
//! version = 1
//! [[domain]]
//! name = "safety"
//! criticality = "ASIL-B"
//! members = ["a"]
//! "#).unwrap();
//! let out = prove(&Input { system: &sys, policy: &policy, board: None });
//! assert!(out.is_clean());
//! ```
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fmt::Write as _;

use bulkhead_boards::{Board, Device};
use bulkhead_inspect::access::{perms_str, AccessModel, ActorKind};
use bulkhead_policy::{Criticality, Policy, PolicyDiagnostic};
use bulkhead_sdf::check::{StackLayout, DEFAULT_USER_TOP};
use bulkhead_sdf::model::SystemDescription;

/// What `prove` reads.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The system description (already checked against Microkit's rules).
    pub system: &'a SystemDescription,
    /// The safety policy.
    pub policy: &'a Policy,
    /// The board, for device windows, IRQs, DMA and the stack layout.
    /// Without it device and DMA paths cannot be analysed, and the outcome
    /// says so.
    pub board: Option<&'static Board>,
}

/// One edge of a path: `from --how--> to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// Source element (PD, VM, region or device).
    pub from: String,
    /// How information or control moves along the edge.
    pub how: String,
    /// Target element.
    pub to: String,
}

impl Hop {
    fn new(from: &str, how: impl Into<String>, to: &str) -> Hop {
        Hop {
            from: from.to_string(),
            how: how.into(),
            to: to.to_string(),
        }
    }
}

/// A forbidden path or broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Stable code: `P1xx` (policy fit) or `F0xx` (paths, rules).
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// The path, edge by edge (empty for a policy-fit finding, whose
    /// message names the elements).
    pub chain: Vec<Hop>,
    /// How to fix it.
    pub hint: String,
    /// For policy-fit findings: the line and column in the policy file.
    pub policy_pos: Option<(u32, u32)>,
}

/// Trust that DMA forces: `driver` can reach `domains`' memory through
/// `device`, which no IOMMU confines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmaTrust {
    /// The bus-master device.
    pub device: String,
    /// PDs that program it (map its registers).
    pub drivers: Vec<String>,
    /// Every domain whose RAM the device can reach (all of them).
    pub trusted_by: Vec<String>,
}

/// The result of [`prove`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Everything that was checked, one line each, for the clean report.
    pub checked: Vec<String>,
    /// What could not be analysed and why (e.g. no board given).
    pub not_analysed: Vec<String>,
    /// Findings; empty means the system fits its policy.
    pub violations: Vec<Violation>,
    /// Policy-fit warnings (names the policy lists that this system lacks).
    pub warnings: Vec<PolicyDiagnostic>,
    /// DMA trust the system relies on.
    pub dma_trust: Vec<DmaTrust>,
}

impl Outcome {
    /// No violations.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// Human-readable report.
    pub fn render(&self, system: &str, policy: &str) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "prove {system} against {policy}");
        for w in &self.warnings {
            let _ = writeln!(o, "{}", w.render(policy));
        }
        if self.is_clean() {
            let _ = writeln!(o, "result: CLEAN — no path the policy forbids");
        } else {
            let _ = writeln!(
                o,
                "result: {} FORBIDDEN PATH{} OR BROKEN RULE{}",
                self.violations.len(),
                if self.violations.len() == 1 { "" } else { "S" },
                if self.violations.len() == 1 { "" } else { "S" }
            );
            for v in &self.violations {
                match v.policy_pos {
                    Some((l, c)) => {
                        let _ = writeln!(o, "\n{policy}:{l}:{c}: error[{}]: {}", v.code, v.message);
                    }
                    None => {
                        let _ = writeln!(o, "\nerror[{}]: {}", v.code, v.message);
                    }
                }
                for h in &v.chain {
                    let _ = writeln!(o, "    {} --{}--> {}", h.from, h.how, h.to);
                }
                let _ = writeln!(o, "  hint: {}", v.hint);
            }
        }
        if !self.dma_trust.is_empty() {
            let _ = writeln!(
                o,
                "\nDMA without an IOMMU (these drivers are trusted by every domain listed):"
            );
            for t in &self.dma_trust {
                let _ = writeln!(
                    o,
                    "  {} (driven by {}) can reach the RAM of: {}",
                    t.device,
                    t.drivers.join(", "),
                    t.trusted_by.join(", ")
                );
            }
        }
        let _ = writeln!(o, "\nchecked:");
        for c in &self.checked {
            let _ = writeln!(o, "  - {c}");
        }
        for n in &self.not_analysed {
            let _ = writeln!(o, "  - NOT ANALYSED: {n}");
        }
        o
    }

    /// JSON report (format `bulkhead-prove/1`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "format": "bulkhead-prove/1",
            "clean": self.is_clean(),
            "checked": self.checked,
            "not_analysed": self.not_analysed,
            "violations": self.violations.iter().map(|v| serde_json::json!({
                "code": v.code,
                "message": v.message,
                "hint": v.hint,
                "policy_line": v.policy_pos.map(|p| p.0),
                "policy_col": v.policy_pos.map(|p| p.1),
                "chain": v.chain.iter().map(|h| serde_json::json!({
                    "from": h.from, "how": h.how, "to": h.to,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "warnings": self.warnings.iter().map(|w| serde_json::json!({
                "code": w.code, "message": w.message,
                "policy_line": w.pos.line, "policy_col": w.pos.col,
            })).collect::<Vec<_>>(),
            "dma_trust": self.dma_trust.iter().map(|t| serde_json::json!({
                "device": t.device, "drivers": t.drivers, "trusted_by": t.trusted_by,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Codes of the path rules, with what each checks (for docs and `--help`).
pub const RULES: &[(&str, &str)] = &[
    ("F001", "control crosses domains: a parent PD and its child, or a VMM and its VM, are in different domains"),
    ("F002", "a device is reached from two domains (its registers, or its interrupt, in different domains)"),
    ("F003", "a bus-master device no IOMMU confines is driven from a domain less critical than a domain whose RAM it can reach"),
    ("F004", "a PD of a safety-relevant domain makes protected procedure calls into a PD that can be restarted"),
    ("F005", "a map ends exactly at a safety-relevant PD's stack bottom, where an overflow would write into it"),
];

struct Ctx<'a> {
    input: &'a Input<'a>,
    model: AccessModel,
}

impl Ctx<'_> {
    fn domain(&self, element: &str) -> Option<&str> {
        self.input
            .policy
            .domain_of(element)
            .map(|d| d.name.value.as_str())
    }

    fn criticality(&self, element: &str) -> Option<Criticality> {
        self.input
            .policy
            .domain_of(element)
            .map(|d| d.criticality.value)
    }

    fn domain_label(&self, element: &str) -> String {
        match self.domain(element) {
            Some(d) => format!("{element} [{d}]"),
            None => format!("{element} [no domain]"),
        }
    }

    fn exempt(&self, region: &str) -> bool {
        self.input
            .policy
            .exemptions
            .iter()
            .any(|e| e.regions.iter().any(|r| r.value == region))
    }

    /// The board device whose window holds region `name`, if it is device memory.
    fn device_of_region(&self, name: &str) -> Option<&'static Device> {
        let board = self.input.board?;
        let r = self.model.regions.iter().find(|r| r.name == name)?;
        let pa = r.phys_addr?;
        board.device_containing(pa, r.size.unwrap_or(r.page_size).max(1))
    }
}

/// Check `input.system` against `input.policy`.
pub fn prove(input: &Input<'_>) -> Outcome {
    let ctx = Ctx {
        input,
        model: AccessModel::of(input.system),
    };
    let mut out = Outcome::default();

    for d in bulkhead_policy::validate_against(input.policy, input.system) {
        if d.is_error() {
            out.violations.push(Violation {
                code: d.code,
                message: d.message.clone(),
                chain: Vec::new(),
                hint: d.hint.clone(),
                policy_pos: Some((d.pos.line, d.pos.col)),
            });
        } else {
            out.warnings.push(d);
        }
    }
    let m = &ctx.model;
    let pds = m.actors.iter().filter(|a| a.kind == ActorKind::Pd).count();
    out.checked.push(format!(
        "policy fit: {} domains, {} flows, {} exemptions; every PD and VM in a domain; every region and channel that joins two domains is a declared flow in its direction (P1xx)",
        input.policy.domains.len(),
        input.policy.flows.len(),
        input.policy.exemptions.len()
    ));
    out.checked.push(format!(
        "information-flow graph: {pds} PDs, {} VMs, {} regions ({} mappings), {} channels, {} IRQs, {} vCPUs",
        m.actors.len() - pds,
        m.regions.len(),
        m.regions.iter().map(|r| r.mappings.len()).sum::<usize>(),
        m.channels.len(),
        m.irqs.len(),
        m.vcpus.len()
    ));

    control(&ctx, &mut out);
    devices(&ctx, &mut out);
    ppc_into_restartable(&ctx, &mut out);
    stack_bottom(&ctx, &mut out);
    out
}

/// F001: stop/restart/register access (parent → child, VMM → VM) and fault
/// messages (child → parent) are information flows the policy has no
/// `[[flow]]` form for; they must stay inside one domain.
fn control(ctx: &Ctx<'_>, out: &mut Outcome) {
    let mut n = 0;
    for a in &ctx.model.actors {
        let Some(parent) = &a.parent else { continue };
        n += 1;
        if ctx.domain(parent) == ctx.domain(&a.name) {
            continue;
        }
        let (down, up) = match a.kind {
            ActorKind::Pd => ("stops/restarts, sets registers of", "sends its faults to"),
            ActorKind::Vm => (
                "runs, reads and writes the vCPUs and RAM of",
                "exits (faults) to",
            ),
        };
        out.violations.push(Violation {
            code: "F001",
            message: format!(
                "{} controls {}, which is in another domain",
                ctx.domain_label(parent),
                ctx.domain_label(&a.name)
            ),
            chain: vec![Hop::new(parent, down, &a.name), Hop::new(&a.name, up, parent)],
            hint: "put the child (or VM) in its parent's domain; control cannot be validated by a virtualiser".into(),
            policy_pos: None,
        });
    }
    out.checked.push(format!(
        "control: {n} parent/child and VMM/VM relations stay inside one domain (F001)"
    ));
}

/// F002 and F003: device registers, interrupts and DMA.
fn devices(ctx: &Ctx<'_>, out: &mut Outcome) {
    let Some(board) = ctx.input.board else {
        out.not_analysed.push(
            "device and DMA paths (F002, F003): no board given, so device windows, interrupt sources and bus masters are unknown; pass --board".into(),
        );
        return;
    };
    let mut reached = 0;
    for dev in board.devices {
        // Every actor that touches the device: mappers of its registers and
        // receivers of its interrupts, each with the edge that reaches it.
        let mut touch: Vec<(String, Hop)> = Vec::new();
        for r in &ctx.model.regions {
            if ctx.device_of_region(&r.name).map(|d| d.name) != Some(dev.name)
                || ctx.exempt(&r.name)
            {
                continue;
            }
            for mp in &r.mappings {
                touch.push((
                    mp.who.clone(),
                    Hop::new(
                        &mp.who,
                        format!("maps {} {} of", r.name, perms_str(mp.perms)),
                        dev.name,
                    ),
                ));
            }
        }
        for i in ctx.model.irqs.iter().filter(|i| dev.irqs.contains(&i.irq)) {
            touch.push((
                i.pd.clone(),
                Hop::new(dev.name, format!("raises IRQ {} at", i.irq), &i.pd),
            ));
        }
        if touch.is_empty() {
            continue;
        }
        reached += 1;
        let domains: BTreeSet<Option<&str>> =
            touch.iter().map(|(who, _)| ctx.domain(who)).collect();
        if domains.len() > 1 {
            out.violations.push(Violation {
                code: "F002",
                message: format!(
                    "device {} is reached from {} domains: {}",
                    dev.name,
                    domains.len(),
                    touch.iter().map(|(w, _)| ctx.domain_label(w)).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", ")
                ),
                chain: touch.into_iter().map(|(_, h)| h).collect(),
                hint: "give the device's registers and interrupts to one driver PD and share it through a virtualiser; or exempt a register window that carries no information".into(),
                policy_pos: None,
            });
            continue;
        }
        if !dev.dma || dev.iommu {
            continue;
        }
        // A bus master with no IOMMU reaches all RAM: every domain with RAM
        // (every domain with a member that maps non-device memory) trusts it.
        let drivers: BTreeSet<String> = touch.iter().map(|(w, _)| w.clone()).collect();
        let mut trusted_by: BTreeSet<String> = BTreeSet::new();
        let mut worst: Option<(Criticality, String, String)> = None;
        for r in ctx.model.regions.iter().filter(|r| r.phys_addr.is_none()) {
            for mp in &r.mappings {
                let Some(d) = ctx.input.policy.domain_of(&mp.who) else {
                    continue;
                };
                trusted_by.insert(d.name.value.clone());
                if worst
                    .as_ref()
                    .is_none_or(|(c, _, _)| d.criticality.value > *c)
                {
                    worst = Some((d.criticality.value, r.name.clone(), mp.who.clone()));
                }
            }
        }
        for drv in &drivers {
            let (Some(crit), Some((wc, region, owner))) = (ctx.criticality(drv), worst.as_ref())
            else {
                continue;
            };
            if crit < *wc {
                out.violations.push(Violation {
                    code: "F003",
                    message: format!(
                        "{} ({}) drives bus master {} with no IOMMU, which can reach {} ({}) memory",
                        ctx.domain_label(drv),
                        crit,
                        dev.name,
                        ctx.domain_label(owner),
                        wc
                    ),
                    chain: vec![
                        Hop::new(drv, "programs DMA of", dev.name),
                        Hop::new(dev.name, "DMA writes", region),
                        Hop::new(region, "is the memory of", owner),
                    ],
                    hint: "the driver of an unconfined bus master is trusted by every domain: develop it (and list it) at the highest criticality it can reach, or use a board with an IOMMU for this device".into(),
                    policy_pos: None,
                });
            }
        }
        out.dma_trust.push(DmaTrust {
            device: dev.name.to_string(),
            drivers: drivers.into_iter().collect(),
            trusted_by: trusted_by.into_iter().collect(),
        });
    }
    out.checked.push(format!(
        "devices on {}: {reached} device(s) reached; each from one domain only (F002); unconfined bus masters driven at the criticality of every domain they reach (F003)",
        board.name
    ));
}

/// F004: a PPC caller blocks until the callee replies; Microkit has no PPC
/// timeout, and a callee restarted mid-call never replies.
fn ppc_into_restartable(ctx: &Ctx<'_>, out: &mut Outcome) {
    let on = ctx
        .input
        .policy
        .rules
        .forbid_safety_ppc_into_restartable
        .value;
    if !on {
        out.not_analysed.push(
            "F004 (safety PPC into a restartable PD): turned off by the policy's [rules]".into(),
        );
        return;
    }
    let mut n = 0;
    for c in &ctx.model.channels {
        for (caller, callee, calls) in [(&c.a, &c.b, c.a_calls_b), (&c.b, &c.a, c.b_calls_a)] {
            if !calls {
                continue;
            }
            n += 1;
            let safety = ctx.criticality(caller).is_some_and(|k| k > Criticality::Qm);
            let Some(parent) = ctx.model.actor(callee).and_then(|a| a.parent.clone()) else {
                continue;
            };
            if safety {
                out.violations.push(Violation {
                    code: "F004",
                    message: format!(
                        "{} calls {} by PPC, and {parent} can restart {callee}: the caller would block for ever",
                        ctx.domain_label(caller),
                        callee
                    ),
                    chain: vec![
                        Hop::new(caller, "PPC (blocks until reply)", callee),
                        Hop::new(&parent, "may restart", callee),
                    ],
                    hint: "call only PDs nobody restarts, or use notifications and shared memory with a timeout on the safety side".into(),
                    policy_pos: None,
                });
            }
        }
    }
    out.checked.push(format!(
        "{n} PPC edge(s): none from a safety-relevant PD into a restartable PD (F004)"
    ));
}

/// F005: nothing guards a Microkit PD's stack bottom.
fn stack_bottom(ctx: &Ctx<'_>, out: &mut Outcome) {
    if !ctx.input.policy.rules.forbid_stack_bottom_maps.value {
        out.not_analysed.push(
            "F005 (maps at a safety PD's stack bottom): turned off by the policy's [rules]".into(),
        );
        return;
    }
    let top = ctx
        .input
        .board
        .map_or(DEFAULT_USER_TOP, |b| b.user_vaddr_top);
    let mut n = 0;
    for pd in ctx.input.system.all_pds() {
        if ctx
            .criticality(&pd.name)
            .is_none_or(|k| k <= Criticality::Qm)
        {
            continue;
        }
        n += 1;
        let layout = StackLayout::new(top, pd.stack_size);
        for map in &pd.maps {
            let size = ctx
                .model
                .regions
                .iter()
                .find(|r| r.name == map.mr)
                .and_then(|r| r.size);
            let Some(end) = size.and_then(|s| map.vaddr.checked_add(s)) else {
                continue;
            };
            if end == layout.stack_bottom {
                out.violations.push(Violation {
                    code: "F005",
                    message: format!(
                        "{} maps {} up to its stack bottom {:#x} (system line {}): a stack overflow would write into {} instead of faulting",
                        ctx.domain_label(&pd.name),
                        map.mr,
                        layout.stack_bottom,
                        map.loc.elem.line,
                        map.mr
                    ),
                    chain: vec![Hop::new(&pd.name, "stack overflow writes", &map.mr)],
                    hint: format!(
                        "leave an unmapped guard page: end the map at or below {:#x}",
                        layout.stack_bottom.saturating_sub(0x1000)
                    ),
                    policy_pos: None,
                });
            }
        }
    }
    out.checked.push(format!(
        "{n} safety-relevant PD(s): no map ends at a stack bottom (F005)"
    ));
}
