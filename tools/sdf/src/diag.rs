//! Diagnostics: what the parser and checker report, and the table of rules.
//!
//! Every diagnostic carries a stable code (`E012`, `W003`), the position of
//! the element or attribute it is about, and a hint saying how to fix it.
//! Codes never change meaning once released; [`RULES`] lists them all and
//! `tools/sdf/README.md` mirrors that list (a test keeps the two in step).

use crate::model::Pos;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The system is invalid: the Microkit tool would reject it (or crash),
    /// or it cannot work on the chosen board.
    Error,
    /// The system is valid but probably not what was meant.
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

/// One finding about a system description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable rule code, listed in [`RULES`].
    pub code: &'static str,
    /// Where: the attribute when there is one, else the element's `<`.
    pub pos: Pos,
    /// The element's tag name (`protection_domain`, `map`, ...).
    pub element: String,
    /// The attribute concerned, if any.
    pub attribute: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl Diagnostic {
    /// `file:line:col: error[E012]: <element> <attribute>: message` and an
    /// indented `hint:` line, like rustc.
    pub fn render(&self, file: &str) -> String {
        let what = match &self.attribute {
            Some(a) => format!("<{}> {}", self.element, a),
            None => format!("<{}>", self.element),
        };
        format!(
            "{}:{}:{}: {}[{}]: {}: {}\n  hint: {}",
            file,
            self.pos.line,
            self.pos.col,
            self.severity.as_str(),
            self.code,
            what,
            self.message,
            self.hint
        )
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// One rule of the checker: its stable code and what it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable code.
    pub code: &'static str,
    /// Short kebab-case name (used for fixture file names).
    pub name: &'static str,
    /// What the rule checks.
    pub summary: &'static str,
}

/// Every rule the parser and checker apply, by code.
#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    Rule { code: "E001", name: "xml-syntax", summary: "the file is not well-formed XML (or uses a DTD)" },
    Rule { code: "E002", name: "root-not-system", summary: "the root element must be <system>" },
    Rule { code: "E003", name: "unknown-element", summary: "element not allowed here" },
    Rule { code: "E004", name: "unknown-attribute", summary: "attribute not allowed on this element" },
    Rule { code: "E005", name: "stray-text", summary: "text outside attributes and comments" },
    Rule { code: "E006", name: "missing-attribute", summary: "a required attribute is missing" },
    Rule { code: "E007", name: "bad-number", summary: "not a number (decimal, 0x hex, _ separators) or does not fit" },
    Rule { code: "E008", name: "decimal-only", summary: "hex or _ in <irq irq/id>, <end id>, <vcpu id> (the Microkit tool crashes)" },
    Rule { code: "E009", name: "bad-bool", summary: "boolean must be exactly true or false" },
    Rule { code: "E010", name: "missing-program-image", summary: "a protection domain needs one <program_image>" },
    Rule { code: "E011", name: "duplicate-program-image", summary: "more than one <program_image> in a protection domain" },
    Rule { code: "E012", name: "bad-perms", summary: "perms may only contain the letters r, w, x" },
    Rule { code: "E013", name: "write-only-map", summary: "perms=\"w\": write-only mappings are not allowed" },
    Rule { code: "E014", name: "bad-trigger", summary: "irq trigger must be level or edge" },
    Rule { code: "E015", name: "priority-range", summary: "priority must be 0..=254 (255 is the monitor's)" },
    Rule { code: "E016", name: "budget-over-period", summary: "budget must not exceed period" },
    Rule { code: "E017", name: "stack-size-range", summary: "stack_size must be in 0x1000..=0x1000000" },
    Rule { code: "E018", name: "stack-size-align", summary: "stack_size must be a multiple of 0x1000" },
    Rule { code: "E019", name: "child-only-attribute", summary: "id/setvar_id only on nested protection domains" },
    Rule { code: "E020", name: "page-size", summary: "page_size must be 0x1000 or 0x200000" },
    Rule { code: "E021", name: "size-not-page-multiple", summary: "memory region size must be a multiple of its page size" },
    Rule { code: "E022", name: "phys-addr-align", summary: "phys_addr must be aligned to the page size" },
    Rule { code: "E023", name: "prefill-both", summary: "prefill_path and prefill_bootinfo are mutually exclusive" },
    Rule { code: "E024", name: "prefill-bootinfo-kind", summary: "unknown prefill_bootinfo kind" },
    Rule { code: "E025", name: "size-required", summary: "size may only be omitted on a prefilled memory region" },
    Rule { code: "E026", name: "toplevel-vm", summary: "<virtual_machine> must be inside a protection domain" },
    Rule { code: "E027", name: "duplicate-vm", summary: "at most one <virtual_machine> per protection domain" },
    Rule { code: "E028", name: "duplicate-cspace", summary: "at most one <cspace> per protection domain" },
    Rule { code: "E029", name: "cspace-slot-range", summary: "cspace slot must be 1..=63 (the PD root CNode has 64 slots; the tool accepts up to 127, the boot then fails)" },
    Rule { code: "E030", name: "channel-ends", summary: "a channel has exactly two <end> elements" },
    Rule { code: "E031", name: "pp-both-ends", summary: "pp on both ends of a channel" },
    Rule { code: "E032", name: "id-range", summary: "channel, irq, child and vcpu ids must be 0..=61" },
    Rule { code: "E033", name: "duplicate-domains", summary: "<domains> may appear only once" },
    Rule { code: "E034", name: "vm-without-vcpu", summary: "a virtual machine needs at least one <vcpu>" },
    Rule { code: "E035", name: "duplicate-vcpu-id", summary: "vcpu ids must be unique within a virtual machine" },
    Rule { code: "E036", name: "duplicate-setvar", summary: "a symbol may be the target of only one setvar per protection domain" },
    Rule { code: "E037", name: "cpu-range", summary: "cpu must be below the number of cores of the config/board" },
    Rule { code: "E038", name: "domain-without-domains", summary: "domain attribute without a <domains> schedule" },
    Rule { code: "E039", name: "domain-required", summary: "with <domains>, every protection domain needs a domain" },
    Rule { code: "E040", name: "unknown-domain", summary: "domain name not declared in <domains>" },
    Rule { code: "E041", name: "duplicate-domain", summary: "domain names and ids must be unique" },
    Rule { code: "E042", name: "domain-id-range", summary: "domain id must be below KernelNumDomains (16)" },
    Rule { code: "E043", name: "domain-schedule-count", summary: "<domains> needs exactly one <domain_schedule>" },
    Rule { code: "E044", name: "schedule-duration", summary: "duration must be '<non-zero number> us|ticks'" },
    Rule { code: "E045", name: "schedule-too-long", summary: "schedule must have fewer than 100 entries (incl. end marker and index_shift)" },
    Rule { code: "E046", name: "schedule-start-index", summary: "start_index must be inside the schedule" },
    Rule { code: "E047", name: "domains-smp", summary: "the domain scheduler is not available in smp- configs" },
    Rule { code: "E048", name: "domains-after-pd", summary: "<domains> must come before the protection domains that use it" },
    Rule { code: "E050", name: "duplicate-pd-name", summary: "protection domain names must be unique (children included)" },
    Rule { code: "E051", name: "reserved-monitor", summary: "the name monitor is reserved" },
    Rule { code: "E052", name: "pd-count", summary: "a system has 1..=63 protection domains" },
    Rule { code: "E053", name: "duplicate-mr-name", summary: "memory region names must be unique" },
    Rule { code: "E054", name: "duplicate-vm-name", summary: "virtual machine names must be unique" },
    Rule { code: "E055", name: "duplicate-irq", summary: "an interrupt may be claimed only once in the system" },
    Rule { code: "E056", name: "duplicate-channel-id", summary: "channel and irq ids share one namespace per protection domain" },
    Rule { code: "E057", name: "ppc-priority", summary: "a PPC caller must have strictly lower priority than the callee" },
    Rule { code: "E058", name: "unknown-pd", summary: "channel end names no protection domain" },
    Rule { code: "E059", name: "unknown-mr", summary: "map names no memory region" },
    Rule { code: "E060", name: "map-align", summary: "map vaddr must be aligned to the region's page size" },
    Rule { code: "E061", name: "map-overflow", summary: "vaddr + size overflows 64 bits" },
    Rule { code: "E062", name: "map-range", summary: "map must end below the stack (PD) or the top of the address space (VM)" },
    Rule { code: "E063", name: "map-overlap", summary: "maps of one address space must not overlap" },
    Rule { code: "E064", name: "cspace-unknown-pd", summary: "cspace cap names no protection domain" },
    Rule { code: "E065", name: "cspace-slot-overlap", summary: "two caps in the same cspace slot" },
    Rule { code: "E066", name: "phys-overlap", summary: "memory regions with fixed phys_addr must not overlap" },
    Rule { code: "E067", name: "duplicate-child-id", summary: "child ids unique per parent, distinct from its vcpu ids" },
    Rule { code: "E068", name: "setvar-unknown-mr", summary: "setvar region_paddr names no memory region" },
    Rule { code: "E069", name: "prefill-size-without-prefill", summary: "setvar_prefill_size on a region without prefill_path" },
    Rule { code: "E070", name: "prefill-file", summary: "prefill file missing, empty, or larger than the region" },
    Rule { code: "E071", name: "image-missing", summary: "program image not found on the search path (--require-images)" },
    Rule { code: "E072", name: "phys-overflow", summary: "phys_addr + size overflows 64 bits" },
    Rule { code: "E073", name: "size-zero", summary: "memory region size must not be zero" },
    Rule { code: "E074", name: "name-split-utf8", summary: "name cut at 64 bytes inside a UTF-8 character (the Microkit tool crashes)" },
    Rule { code: "E075", name: "setvar-on-vm-map", summary: "setvar_* attributes only on protection domain maps" },
    Rule { code: "E076", name: "image-overlap", summary: "a map or the stack overlaps a load segment of the program image (when the image is found)" },
    Rule { code: "E077", name: "bad-image", summary: "program image found but not an AArch64 ELF64 file" },
    Rule { code: "E078", name: "protection-removed", summary: "program image built with a test-only protection-removed feature" },
    Rule { code: "E080", name: "phys-not-on-board", summary: "phys_addr lies in no RAM bank or device window of the board" },
    Rule { code: "E081", name: "phys-beyond-pa", summary: "phys_addr beyond the board's physical address width" },
    Rule { code: "E082", name: "irq-range", summary: "interrupt number outside the board's range" },
    Rule { code: "E083", name: "no-hypervisor", summary: "virtual machines need a hypervisor (EL2) board" },
    Rule { code: "E085", name: "irq-kernel-reserved", summary: "interrupt the kernel keeps for itself on this board (VGIC maintenance, its timers)" },
    Rule { code: "E084", name: "host-phys-addr", summary: "the host board has no physical memory to name" },
    Rule { code: "E090", name: "x86-only", summary: "x86-only element or attribute on an aarch64/host system" },
    Rule { code: "W001", name: "long-name", summary: "name longer than 64 bytes: the runtime sees only the first 64" },
    Rule { code: "W002", name: "unmapped-mr", summary: "memory region mapped nowhere" },
    Rule { code: "W003", name: "no-stack-guard", summary: "map ends exactly at the stack bottom: no guard page" },
    Rule { code: "W004", name: "self-channel", summary: "channel connects a protection domain to itself" },
    Rule { code: "W005", name: "phys-straddles", summary: "phys_addr region straddles RAM and device windows" },
];

/// The rule with `code`, if there is one.
pub fn rule(code: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_like_rustc() {
        let d = Diagnostic {
            severity: Severity::Error,
            code: "E015",
            pos: Pos { line: 3, col: 5 },
            element: "protection_domain".into(),
            attribute: Some("priority".into()),
            message: "priority 300 is above 254".into(),
            hint: "use 0..=254".into(),
        };
        assert_eq!(
            d.render("a.system"),
            "a.system:3:5: error[E015]: <protection_domain> priority: priority 300 is above 254\n  hint: use 0..=254"
        );
    }

    #[test]
    fn codes_unique_and_names_unique() {
        for (i, r) in RULES.iter().enumerate() {
            assert!(
                RULES[i + 1..].iter().all(|o| o.code != r.code),
                "{}",
                r.code
            );
            assert!(
                RULES[i + 1..].iter().all(|o| o.name != r.name),
                "{}",
                r.name
            );
        }
    }

    #[test]
    fn readme_lists_every_rule() {
        let readme = include_str!("../README.md");
        for r in RULES {
            assert!(
                readme.contains(&format!("| {} |", r.code)),
                "README.md lacks a row for {}",
                r.code
            );
        }
    }
}
