//! Policy diagnostics: a stable code, a position, a message and a hint.
//!
//! Codes never change meaning once released; [`RULES`] lists them all and
//! `tools/policy/README.md` mirrors the list (a test keeps the two in step).
//!
//! ```
//! let errs = bulkhead_policy::parse("version = 2\n").unwrap_err();
//! assert_eq!(errs[0].code, "P005");
//! assert_eq!(
//!     errs[0].render("policy.toml").lines().next().unwrap(),
//!     "policy.toml:1:11: error[P005]: policy format version 2 is not supported"
//! );
//! ```

use bulkhead_sdf::model::Pos;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The policy is invalid, or the system breaks it.
    Error,
    /// Worth a look, but not a breach (e.g. a name of another board's file).
    Warning,
}

impl Severity {
    /// `error` or `warning`, as rustc prints them.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding about a policy, or about a system checked against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDiagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code (`P001`…), listed in [`RULES`].
    pub code: &'static str,
    /// Where in the policy file.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl PolicyDiagnostic {
    /// An error.
    pub(crate) fn error(code: &'static str, pos: Pos, message: String, hint: &str) -> Self {
        PolicyDiagnostic {
            severity: Severity::Error,
            code,
            pos,
            message,
            hint: hint.into(),
        }
    }

    /// `file:line:col: error[P0xx]: message` and an indented `hint:` line.
    pub fn render(&self, file: &str) -> String {
        format!(
            "{}:{}:{}: {}[{}]: {}\n  hint: {}",
            file,
            self.pos.line,
            self.pos.col,
            self.severity.as_str(),
            self.code,
            self.message,
            self.hint
        )
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// One rule: a stable code and what it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable code.
    pub code: &'static str,
    /// What the rule checks.
    pub summary: &'static str,
}

/// Every rule, by code. P0xx are about the policy alone; P1xx about a
/// system checked against it.
#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    Rule { code: "P001", summary: "the file is not valid TOML" },
    Rule { code: "P002", summary: "unknown key (every key the format does not define is refused)" },
    Rule { code: "P003", summary: "a required key is missing" },
    Rule { code: "P004", summary: "a value has the wrong type" },
    Rule { code: "P005", summary: "unsupported policy format version" },
    Rule { code: "P006", summary: "a value is not one of those allowed (criticality, direction, unassigned, name or channel syntax)" },
    Rule { code: "P007", summary: "two domains have the same name" },
    Rule { code: "P008", summary: "an element is listed in more than one domain (or twice in one)" },
    Rule { code: "P009", summary: "a flow names a domain that is not declared" },
    Rule { code: "P010", summary: "a flow's or exemption's reason is empty" },
    Rule { code: "P011", summary: "a flow goes from a domain to itself" },
    Rule { code: "P012", summary: "a flow names no region and no channel (or an exemption no region)" },
    Rule { code: "P013", summary: "a flow's `via` PD is not a member of its `from` or `to` domain" },
    Rule { code: "P014", summary: "a flow into a higher-criticality domain is validated by a PD outside that domain" },
    Rule { code: "P015", summary: "a domain has no members" },
    Rule { code: "P016", summary: "an exempted region is also named by a flow or a domain" },
    Rule { code: "P101", summary: "a domain member is not a PD, VM or memory region of the system (warning: the policy may serve other boards)" },
    Rule { code: "P102", summary: "a flow's region is not in the system (warning)" },
    Rule { code: "P103", summary: "a flow's channel is not in the system (warning)" },
    Rule { code: "P104", summary: "a flow's `via` is not a PD of the system (warning)" },
    Rule { code: "P105", summary: "a PD or VM of the system belongs to no domain (error, or warning with unassigned = \"warn\")" },
    Rule { code: "P106", summary: "a flow's `via` PD neither maps the flow's region nor ends its channel" },
    Rule { code: "P107", summary: "a flow's region or channel is reached by a domain other than its `from` and `to`" },
    Rule { code: "P108", summary: "a memory region is shared across domains with no flow naming it" },
    Rule { code: "P109", summary: "a channel connects two domains with no flow naming it" },
    Rule { code: "P110", summary: "a one-way flow's region is writable by its `to` side" },
    Rule { code: "P111", summary: "an exempted region is not device memory (no fixed phys_addr)" },
];
