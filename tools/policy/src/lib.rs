//! The safety policy: the hand-written, human-reviewed list of safety
//! domains and of the flows allowed between them.
//!
//! A policy is TOML (format in `tools/policy/README.md`). [`parse`] reads it
//! strictly — unknown keys, wrong types and unknown values are errors, each
//! with its line and column — and checks it on its own (unique domains, an
//! element in at most one domain, flows between known domains, every flow
//! with a reason). [`validate_against`] then checks a system description
//! against it: every name exists, every PD and VM is in a domain, and every
//! region or channel that crosses domains is a declared flow.
//!
//! The policy is never generated: `bulkhead compose` writes `.system` files,
//! never policies, so that a change to what may reach the safety domain is
//! always a reviewed edit to this file.
//!
//! ```
//! let policy = bulkhead_policy::parse(r#"
//! version = 1
//! [[domain]]
//! name = "safety"
//! criticality = "ASIL-B"
//! members = ["cluster_vmm"]
//! "#).unwrap();
//! assert_eq!(policy.domains[0].name.value, "safety");
//! assert_eq!(policy.domains[0].members[0].pos.line, 6);
//! ```

mod diag;
mod parse;
mod validate;

pub use bulkhead_sdf::model::Pos;
pub use diag::{PolicyDiagnostic, Rule, Severity, RULES};
pub use parse::parse;
pub use validate::validate_against;

use std::fmt;

/// The policy format version this crate reads.
pub const FORMAT_VERSION: i64 = 1;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Position of the value (for defaults: of the table that would hold it).
    pub pos: Pos,
}

/// A whole policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `version`.
    pub version: Spanned<i64>,
    /// `unassigned`: what a PD or VM in no domain is (default error).
    pub unassigned: Spanned<Unassigned>,
    /// `[rules]`.
    pub rules: Rules,
    /// `[[domain]]` entries, in source order.
    pub domains: Vec<Domain>,
    /// `[[flow]]` entries, in source order.
    pub flows: Vec<Flow>,
    /// `[[exemption]]` entries, in source order.
    pub exemptions: Vec<Exemption>,
}

impl Policy {
    /// The domain named `name`.
    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.name.value == name)
    }

    /// The domain `element` (a PD, VM or region name) is a member of.
    pub fn domain_of(&self, element: &str) -> Option<&Domain> {
        self.domains
            .iter()
            .find(|d| d.members.iter().any(|m| m.value == element))
    }
}

/// What a PD or VM that belongs to no domain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unassigned {
    /// An error (the default).
    #[default]
    Error,
    /// A warning.
    Warn,
}

/// `[rules]`: checks that `bulkhead check`/`prove` apply to systems under
/// this policy. Each defaults to on; turning one off is a reviewed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// No memory region mapped directly below a PD's stack, where a stack
    /// overflow would write into it instead of faulting.
    pub forbid_stack_bottom_maps: Spanned<bool>,
    /// No protected procedure call from a safety-domain PD into a PD that can
    /// be restarted (a restart would leave the caller blocked or with a
    /// half-done call).
    pub forbid_safety_ppc_into_restartable: Spanned<bool>,
}

/// ISO 26262 criticality of a domain, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Criticality {
    /// Quality managed (no ASIL).
    Qm,
    /// ASIL A.
    AsilA,
    /// ASIL B.
    AsilB,
    /// ASIL C.
    AsilC,
    /// ASIL D.
    AsilD,
}

impl Criticality {
    /// Every level with its spelling in a policy file.
    pub const ALL: [(Criticality, &'static str); 5] = [
        (Criticality::Qm, "QM"),
        (Criticality::AsilA, "ASIL-A"),
        (Criticality::AsilB, "ASIL-B"),
        (Criticality::AsilC, "ASIL-C"),
        (Criticality::AsilD, "ASIL-D"),
    ];

    /// Its spelling in a policy file.
    pub fn as_str(self) -> &'static str {
        Criticality::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("?", |(_, s)| s)
    }
}

impl fmt::Display for Criticality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[domain]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// `name`.
    pub name: Spanned<String>,
    /// `criticality`.
    pub criticality: Spanned<Criticality>,
    /// `description` (optional, for reviewers and reports).
    pub description: Option<Spanned<String>>,
    /// `members`: PD, VM and memory-region names.
    pub members: Vec<Spanned<String>>,
    /// Position of the `[[domain]]` header.
    pub pos: Pos,
}

/// Which way information may go in a [`Flow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From `from` to `to` only (`"one-way"`): `to` may read, never write.
    OneWay,
    /// Both ways (`"two-way"`), e.g. a request/response queue both sides update.
    TwoWay,
}

/// One end of a channel named in a flow: a PD and, optionally, its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndRef {
    /// The PD.
    pub pd: String,
    /// The PD-local channel id, if the policy pins it.
    pub id: Option<u64>,
}

/// A channel named in a flow: `"pd_a <-> pd_b"` or `"pd_a:1 <-> pd_b:4"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelRef {
    /// The two ends, as written.
    pub ends: [EndRef; 2],
}

impl fmt::Display for EndRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "{}:{}", self.pd, id),
            None => f.write_str(&self.pd),
        }
    }
}

impl fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} <-> {}", self.ends[0], self.ends[1])
    }
}

/// `[[flow]]`: information allowed from one domain to another through the
/// named regions and channels, validated by the `via` PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// `regions`: memory regions the flow uses.
    pub regions: Vec<Spanned<String>>,
    /// `channels`: channels the flow uses.
    pub channels: Vec<Spanned<ChannelRef>>,
    /// `from`: the domain information comes from.
    pub from: Spanned<String>,
    /// `to`: the domain information goes to.
    pub to: Spanned<String>,
    /// `direction`.
    pub direction: Spanned<Direction>,
    /// `via`: the PD that validates what crosses.
    pub via: Spanned<String>,
    /// `reason`: why the flow is needed (required, non-empty).
    pub reason: Spanned<String>,
    /// Position of the `[[flow]]` header.
    pub pos: Pos,
}

/// `[[exemption]]`: device memory mapped into several domains that carries
/// no information between them (e.g. the GIC virtual CPU interface, whose
/// hardware shows only the state of the vCPU the kernel has loaded). Only
/// regions with a fixed physical address qualify: shared RAM always carries
/// information and needs a [`Flow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exemption {
    /// `regions`.
    pub regions: Vec<Spanned<String>>,
    /// `reason`: why no information passes (required, non-empty).
    pub reason: Spanned<String>,
    /// Position of the `[[exemption]]` header.
    pub pos: Pos,
}
