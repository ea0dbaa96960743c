//! Schema-level parsing: XML → [`SystemDescription`].
//!
//! This pass checks what can be checked one element at a time — known
//! elements and attributes, value syntax, required attributes, per-value
//! ranges — and applies Microkit 2.3's defaults. Rules that relate several
//! elements (names that must resolve, overlaps, priorities across channels)
//! and rules that depend on the board or config live in [`crate::check`].
//!
//! Unlike the Microkit tool, which stops at the first problem, the parser
//! keeps going and reports every problem it can find, and never panics: all
//! values come from the input and are checked before use.

use crate::diag::{Diagnostic, Severity};
use crate::model::*;

/// Kernel limit on domain ids (`KernelNumDomains` in the Microkit SDK build).
pub(crate) const NUM_DOMAINS: u64 = 16;
/// Kernel limit on schedule entries (`KernelNumDomainSchedules`).
pub(crate) const NUM_DOMAIN_SCHEDULES: u64 = 100;
/// Largest channel/irq/vcpu id (62 bits of badge are left for ids).
pub const MAX_ID: u64 = 61;
/// Default PD budget in µs.
pub const BUDGET_DEFAULT: u64 = 1000;
/// Default PD stack size.
pub const STACK_DEFAULT: u64 = 0x2000;
/// Smallest allowed stack size.
pub const STACK_MIN: u64 = 0x1000;
/// Largest allowed stack size.
pub const STACK_MAX: u64 = 0x100_0000;
/// Highest PD priority (the monitor runs at 255).
pub const MAX_PRIORITY: u64 = 254;
/// Microkit's limit on protection domains (children included).
pub const MAX_PDS: usize = 63;
/// Cspace slots are `1..CSPACE_SLOTS`. The Microkit 2.3 tool accepts up to
/// 127, but a PD's root CNode has 64 slots (`ROOT_CAP_BITS` = 6 in
/// libmicrokit's layout): a cap for slot 64 wraps onto slot 0 and the boot
/// stops in the CapDL initialiser ("Destination not empty"), as booting a
/// real image showed. So the checker stops at 63.
pub const CSPACE_SLOTS: u64 = 64;

/// Parse a number the way the Microkit tool does: `_` anywhere is dropped,
/// then a `0x` prefix selects hex; otherwise decimal.
pub fn parse_number(s: &str) -> Option<u64> {
    let cleaned: String = s.chars().filter(|&c| c != '_').collect();
    match cleaned.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => cleaned.parse::<u64>().ok(),
    }
}

/// Byte offset → line/column, precomputed once (roxmltree's own
/// `text_pos_at` rescans the text from the start on every call).
pub(crate) struct Lines<'s> {
    src: &'s str,
    starts: Vec<usize>,
}

impl<'s> Lines<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Lines { src, starts }
    }

    pub(crate) fn pos(&self, byte: usize) -> Pos {
        let idx = match self.starts.binary_search(&byte) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts.get(idx).copied().unwrap_or(0);
        let col = match self.src.get(start..byte) {
            Some(s) => s.chars().count(),
            None => byte.saturating_sub(start),
        };
        Pos {
            line: u32::try_from(idx + 1).unwrap_or(u32::MAX),
            col: u32::try_from(col + 1).unwrap_or(u32::MAX),
        }
    }
}

type Node<'a, 'i> = roxmltree::Node<'a, 'i>;

struct Parser<'s> {
    lines: Lines<'s>,
    diags: Vec<Diagnostic>,
}

fn err(
    code: &'static str,
    pos: Pos,
    element: &str,
    attribute: Option<&str>,
    message: String,
    hint: impl Into<String>,
) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        code,
        pos,
        element: element.to_string(),
        attribute: attribute.map(str::to_string),
        message,
        hint: hint.into(),
    }
}

/// How an id-like attribute is read by the Microkit tool.
#[derive(Clone, Copy)]
enum IdSyntax {
    /// `str::parse::<i64>()`: negative values reach the tool's range check.
    DecimalSigned,
    /// `str::parse::<u64>()`.
    DecimalUnsigned,
}

impl<'s> Parser<'s> {
    fn pos(&self, byte: usize) -> Pos {
        self.lines.pos(byte)
    }

    fn elem_pos(&self, n: Node) -> Pos {
        self.pos(n.range().start)
    }

    fn attr_pos(&self, n: Node, name: &str) -> Pos {
        match n.attributes().find(|a| a.name() == name) {
            Some(a) => self.pos(a.range().start),
            None => self.elem_pos(n),
        }
    }

    fn loc(&self, n: Node) -> Loc {
        Loc {
            elem: self.elem_pos(n),
            attrs: n
                .attributes()
                .map(|a| (a.name().to_string(), self.pos(a.range().start)))
                .collect(),
        }
    }

    fn error(
        &mut self,
        code: &'static str,
        n: Node,
        attr: Option<&str>,
        message: String,
        hint: impl Into<String>,
    ) {
        let pos = match attr {
            Some(a) => self.attr_pos(n, a),
            None => self.elem_pos(n),
        };
        let name = n.tag_name().name().to_string();
        self.diags.push(err(code, pos, &name, attr, message, hint));
    }

    /// E004 for every attribute of `n` not in `allowed`.
    fn check_attrs(&mut self, n: Node, allowed: &[&str]) {
        for a in n.attributes() {
            if !allowed.contains(&a.name()) {
                let hint = if a.name() == "pp" && n.tag_name().name() == "protection_domain" {
                    "pp is not a protection domain attribute since Microkit 1.3: put pp=\"true\" on the caller's <end> of the channel instead".to_string()
                } else if allowed.is_empty() {
                    format!("<{}> takes no attributes; remove it", n.tag_name().name())
                } else {
                    format!("allowed here: {}", allowed.join(", "))
                };
                self.error(
                    "E004",
                    n,
                    Some(a.name()),
                    format!("invalid attribute '{}'", a.name()),
                    hint,
                );
            }
        }
    }

    fn required<'a>(&mut self, n: Node<'a, '_>, name: &str) -> Option<&'a str> {
        let v = n.attribute(name);
        if v.is_none() {
            self.error(
                "E006",
                n,
                None,
                format!("missing required attribute '{name}'"),
                format!("add {name}=\"...\" to <{}>", n.tag_name().name()),
            );
        }
        v
    }

    /// A number attribute in the tool's general syntax; `None` when absent
    /// or invalid (an error is recorded for invalid).
    fn number(&mut self, n: Node, name: &str) -> Option<u64> {
        let s = n.attribute(name)?;
        let v = parse_number(s);
        if v.is_none() {
            self.error(
                "E007",
                n,
                Some(name),
                format!("'{s}' is not a valid number"),
                "write a decimal (4096) or 0x-prefixed hex (0x1000) number, _ allowed as separator, at most 2^64-1",
            );
        }
        v
    }

    fn required_number(&mut self, n: Node, name: &str) -> Option<u64> {
        self.required(n, name)?;
        self.number(n, name)
    }

    /// A decimal-only attribute (the tool `unwrap`s `str::parse` on it).
    fn decimal(&mut self, n: Node, name: &str, syntax: IdSyntax) -> Option<u64> {
        let s = self.required(n, name)?;
        let parsed: Result<u64, bool> = match syntax {
            IdSyntax::DecimalSigned => match s.parse::<i64>() {
                Ok(v) => u64::try_from(v).map_err(|_| true),
                Err(_) => Err(false),
            },
            IdSyntax::DecimalUnsigned => s.parse::<u64>().map_err(|_| false),
        };
        match parsed {
            Ok(v) => Some(v),
            Err(true) => {
                self.error(
                    "E032",
                    n,
                    Some(name),
                    format!("{name} {s} is negative"),
                    format!("{name} must be 0..={MAX_ID}"),
                );
                None
            }
            Err(false) => {
                if let Some(v) = parse_number(s) {
                    self.error(
                        "E008",
                        n,
                        Some(name),
                        format!(
                            "'{s}' is not plain decimal; the Microkit tool reads {name} here as decimal only and crashes on it"
                        ),
                        format!("write {name}=\"{v}\""),
                    );
                } else {
                    self.error(
                        "E007",
                        n,
                        Some(name),
                        format!("'{s}' is not a valid decimal number"),
                        format!("write {name} as a plain decimal number, e.g. {name}=\"3\""),
                    );
                }
                None
            }
        }
    }

    fn boolean(&mut self, n: Node, name: &str, default: bool) -> bool {
        match n.attribute(name) {
            None => default,
            Some("true") => true,
            Some("false") => false,
            Some(s) => {
                self.error(
                    "E009",
                    n,
                    Some(name),
                    format!("'{s}' is not a boolean"),
                    format!("write {name}=\"true\" or {name}=\"false\" (exactly, lower case)"),
                );
                default
            }
        }
    }

    fn unknown_child(&mut self, parent: Node, child: Node, allowed: &[&str]) {
        let name = child.tag_name().name();
        let hint = if allowed.is_empty() {
            format!("<{}> has no child elements", parent.tag_name().name())
        } else {
            format!(
                "<{}> may contain: {}",
                parent.tag_name().name(),
                allowed
                    .iter()
                    .map(|a| format!("<{a}>"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        self.error(
            "E003",
            child,
            None,
            format!(
                "invalid element <{name}> inside <{}>",
                parent.tag_name().name()
            ),
            hint,
        );
    }

    fn stray_text(&mut self, root: Node) {
        for n in root.descendants() {
            if !n.is_text() {
                continue;
            }
            let Some(t) = n.text() else { continue };
            let trimmed = t.trim_start();
            if trimmed.is_empty() {
                continue;
            }
            // Point at the first non-blank character when the text is
            // stored verbatim (entities make the raw text differ).
            let offset = t.len() - trimmed.len();
            let start = n.range().start;
            let raw = self.lines.src.get(n.range()).unwrap_or("");
            let at = if raw == t { start + offset } else { start };
            let parent = n.parent_element().map_or("system", |p| p.tag_name().name());
            let snippet: String = trimmed.trim_end().chars().take(20).collect();
            self.diags.push(err(
                "E005",
                self.pos(at),
                parent,
                None,
                format!("unexpected text '{snippet}' inside <{parent}>"),
                "the system description takes no text content; put values in attributes and notes in <!-- comments -->",
            ));
        }
    }

    /// Elements that take no children. The Microkit tool ignores anything
    /// nested in them; a nested element there is a mistake (a `<map>` meant
    /// for the enclosing PD, say), so it is an error here.
    fn leaf_children(&mut self, root: Node) {
        const LEAVES: &[&str] = &[
            "program_image",
            "map",
            "irq",
            "setvar",
            "vcpu",
            "memory_region",
            "end",
            "cap_tcb",
            "cap_sc",
            "cap_vspace",
            "domain",
            "schedule_entry",
            "schedule_end_marker",
        ];
        for n in root.descendants().filter(|n| n.is_element()) {
            if !LEAVES.contains(&n.tag_name().name()) {
                continue;
            }
            // Only leaves reached through known parents are parsed at all;
            // report every one anyway: the position is what matters.
            for c in n.children().filter(|c| c.is_element()) {
                self.unknown_child(n, c, &[]);
            }
        }
    }

    fn system(&mut self, root: Node) -> SystemDescription {
        let mut sys = SystemDescription::default();
        self.stray_text(root);
        self.leaf_children(root);
        const ALLOWED: &[&str] = &["protection_domain", "memory_region", "channel", "domains"];
        for c in root.children().filter(|c| c.is_element()) {
            match c.tag_name().name() {
                "protection_domain" => {
                    let pd = self.pd(c, 0);
                    sys.protection_domains.push(pd);
                }
                "memory_region" => {
                    let mr = self.mr(c);
                    sys.memory_regions.push(mr);
                }
                "channel" => {
                    if let Some(ch) = self.channel(c) {
                        sys.channels.push(ch);
                    }
                }
                "domains" => {
                    let d = self.domains(c);
                    if sys.domain_schedule.is_some() {
                        self.error(
                            "E033",
                            c,
                            None,
                            "<domains> specified more than once".into(),
                            "merge all domains and the schedule into one <domains> element",
                        );
                    } else {
                        sys.domain_schedule = Some(d);
                    }
                }
                "virtual_machine" => self.error(
                    "E026",
                    c,
                    None,
                    "virtual machine must be a child of a protection domain".into(),
                    "move <virtual_machine> inside the <protection_domain> that runs its VMM",
                ),
                "io_address_space" => self.error(
                    "E090",
                    c,
                    None,
                    "<io_address_space> needs an x86-64 kernel built with IOMMU support".into(),
                    "remove it: no supported board is x86-64",
                ),
                _ => self.unknown_child(root, c, ALLOWED),
            }
        }
        sys
    }

    /// A `<protection_domain>` at nesting `depth` (0 = top level).
    fn pd(&mut self, n: Node, depth: usize) -> ProtectionDomain {
        let is_child = depth > 0;
        const ATTRS: &[&str] = &[
            "name",
            "priority",
            "budget",
            "period",
            "passive",
            "stack_size",
            "smc",
            "cpu",
            "domain",
            "fpu",
        ];
        const CHILD_ATTRS: &[&str] = &[
            "name",
            "priority",
            "budget",
            "period",
            "passive",
            "stack_size",
            "smc",
            "cpu",
            "domain",
            "fpu",
            "id",
            "setvar_id",
        ];
        if is_child {
            self.check_attrs(n, CHILD_ATTRS);
        } else {
            for a in ["id", "setvar_id"] {
                if n.attribute(a).is_some() {
                    self.error(
                        "E019",
                        n,
                        Some(a),
                        format!("'{a}' is only allowed on a nested (child) protection domain"),
                        "remove it, or nest this <protection_domain> inside its parent",
                    );
                }
            }
            let mut allowed = ATTRS.to_vec();
            allowed.extend(["id", "setvar_id"]);
            self.check_attrs(n, &allowed);
        }
        let mut pd = ProtectionDomain {
            name: self.required(n, "name").unwrap_or_default().to_string(),
            loc: self.loc(n),
            ..Default::default()
        };
        if is_child {
            if self.required(n, "id").is_some() {
                if let Some(id) = self.number(n, "id") {
                    if id > MAX_ID {
                        self.error(
                            "E032",
                            n,
                            Some("id"),
                            format!("child id {id} is above {MAX_ID}"),
                            format!(
                                "use 0..={MAX_ID}: the id selects the parent's cap slot and fault badge"
                            ),
                        );
                    }
                    pd.id = Some(id);
                }
            }
            pd.setvar_id = n.attribute("setvar_id").map(str::to_string);
        }
        let prio = self.number(n, "priority").unwrap_or(0);
        pd.priority = self.priority(n, prio);
        let (budget, period) = self.budget_period(n);
        pd.budget = budget;
        pd.period = period;
        pd.passive = self.boolean(n, "passive", false);
        pd.stack_size = self.number(n, "stack_size").unwrap_or(STACK_DEFAULT);
        if !(STACK_MIN..=STACK_MAX).contains(&pd.stack_size) {
            self.error(
                "E017",
                n,
                Some("stack_size"),
                format!("stack size {:#x} is out of range", pd.stack_size),
                format!("stack_size must be between {STACK_MIN:#x} and {STACK_MAX:#x} bytes"),
            );
        } else if pd.stack_size % 0x1000 != 0 {
            self.error(
                "E018",
                n,
                Some("stack_size"),
                format!(
                    "stack size {:#x} is not a multiple of the page size",
                    pd.stack_size
                ),
                format!(
                    "round it up to {:#x}",
                    pd.stack_size.div_ceil(0x1000).saturating_mul(0x1000)
                ),
            );
        }
        pd.smc = self.boolean(n, "smc", false);
        pd.fpu = self.boolean(n, "fpu", true);
        pd.cpu = self.cpu(n);
        pd.domain = n.attribute("domain").map(str::to_string);

        let mut image_seen = false;
        for c in n.children().filter(|c| c.is_element()) {
            match c.tag_name().name() {
                "program_image" => {
                    self.check_attrs(c, &["path", "path_for_symbols"]);
                    if image_seen {
                        self.error(
                            "E011",
                            c,
                            None,
                            "program_image must only be specified once".into(),
                            "keep a single <program_image> per protection domain",
                        );
                        continue;
                    }
                    image_seen = true;
                    pd.program_image = ProgramImage {
                        path: self.required(c, "path").unwrap_or_default().to_string(),
                        path_for_symbols: c.attribute("path_for_symbols").map(str::to_string),
                        loc: self.loc(c),
                    };
                }
                "map" => {
                    let m = self.map(c, true);
                    pd.maps.push(m);
                }
                "irq" => {
                    if let Some(irq) = self.irq(c) {
                        pd.irqs.push(irq);
                    }
                }
                "setvar" => {
                    self.check_attrs(c, &["symbol", "region_paddr"]);
                    let symbol = self.required(c, "symbol").unwrap_or_default().to_string();
                    let region_paddr = self
                        .required(c, "region_paddr")
                        .unwrap_or_default()
                        .to_string();
                    pd.setvars.push(Setvar {
                        symbol,
                        region_paddr,
                        loc: self.loc(c),
                    });
                }
                "protection_domain" => {
                    // A system has at most 63 PDs, so deeper nesting is
                    // invalid anyway; stopping here also bounds recursion
                    // on hostile input.
                    if depth + 1 >= MAX_PDS {
                        self.error(
                            "E052",
                            c,
                            None,
                            format!("protection domains nested more than {MAX_PDS} deep"),
                            format!("a system has at most {MAX_PDS} protection domains; flatten the hierarchy"),
                        );
                        continue;
                    }
                    let child = self.pd(c, depth + 1);
                    pd.children.push(child);
                }
                "virtual_machine" => {
                    let vm = self.vm(c);
                    if pd.virtual_machine.is_some() {
                        self.error(
                            "E027",
                            c,
                            None,
                            "virtual_machine must only be specified once".into(),
                            "a VMM protection domain runs one virtual machine; split the others into their own VMM PDs",
                        );
                    } else {
                        pd.virtual_machine = Some(vm);
                    }
                }
                "cspace" => {
                    let cs = self.cspace(c);
                    if pd.cspace.is_some() {
                        self.error(
                            "E028",
                            c,
                            None,
                            "cspace must only be specified once".into(),
                            "merge the caps into one <cspace>",
                        );
                    } else {
                        pd.cspace = Some(cs);
                    }
                }
                "ioport" => self.error(
                    "E090",
                    c,
                    None,
                    "I/O ports are only available on x86-64".into(),
                    "remove <ioport>: map the device's MMIO window with a <memory_region phys_addr> instead",
                ),
                _ => self.unknown_child(
                    n,
                    c,
                    &[
                        "program_image",
                        "map",
                        "irq",
                        "setvar",
                        "protection_domain",
                        "virtual_machine",
                        "cspace",
                    ],
                ),
            }
        }
        if !image_seen {
            self.error(
                "E010",
                n,
                None,
                format!("protection domain '{}' has no <program_image>", pd.name),
                "add <program_image path=\"name.elf\" /> as a child",
            );
        }
        pd
    }

    fn priority(&mut self, n: Node, prio: u64) -> u8 {
        match u8::try_from(prio) {
            Ok(p) if u64::from(p) <= MAX_PRIORITY => p,
            _ => {
                self.error(
                    "E015",
                    n,
                    Some("priority"),
                    format!("priority {prio} is out of range"),
                    format!("priority must be 0..={MAX_PRIORITY} (255 belongs to the monitor)"),
                );
                0
            }
        }
    }

    fn budget_period(&mut self, n: Node) -> (u64, u64) {
        let budget = self.number(n, "budget").unwrap_or(BUDGET_DEFAULT);
        let period = self.number(n, "period").unwrap_or(budget);
        if budget > period {
            let at = if n.attribute("budget").is_some() {
                "budget"
            } else {
                "period"
            };
            self.error(
                "E016",
                n,
                Some(at),
                format!("budget ({budget}) must be less than, or equal to, period ({period})"),
                "lower the budget or raise the period (both in microseconds; period defaults to the budget, budget to 1000)",
            );
        }
        (budget, period)
    }

    fn cpu(&mut self, n: Node) -> u32 {
        let v = self.number(n, "cpu").unwrap_or(0);
        match u8::try_from(v) {
            Ok(c) => u32::from(c),
            Err(_) => {
                self.error(
                    "E037",
                    n,
                    Some("cpu"),
                    format!("cpu {v} is not a core number (the Microkit tool crashes above 255)"),
                    "use a core index below the number of cores of the config (0 on non-smp configs)",
                );
                0
            }
        }
    }

    fn map(&mut self, n: Node, allow_setvar: bool) -> Map {
        const SETVARS: &[&str] = &["setvar_vaddr", "setvar_size", "setvar_prefill_size"];
        if allow_setvar {
            self.check_attrs(
                n,
                &[
                    "mr",
                    "vaddr",
                    "perms",
                    "cached",
                    "setvar_vaddr",
                    "setvar_size",
                    "setvar_prefill_size",
                ],
            );
        } else {
            for a in SETVARS {
                if n.attribute(*a).is_some() {
                    self.error(
                        "E075",
                        n,
                        Some(a),
                        format!("'{a}' is not allowed on a virtual machine's map"),
                        "a virtual machine has no program image to patch; move the setvar to a map in the VMM protection domain",
                    );
                }
            }
            let mut allowed = vec!["mr", "vaddr", "perms", "cached"];
            allowed.extend_from_slice(SETVARS);
            self.check_attrs(n, &allowed);
        }
        let mr = self.required(n, "mr").unwrap_or_default().to_string();
        let vaddr = self.required_number(n, "vaddr").unwrap_or(0);
        let perms = match n.attribute("perms") {
            None => Perms {
                read: true,
                write: true,
                execute: false,
            },
            Some(s) => {
                let mut p = Perms::default();
                let mut ok = true;
                for ch in s.chars() {
                    match ch {
                        'r' => p.read = true,
                        'w' => p.write = true,
                        'x' => p.execute = true,
                        _ => ok = false,
                    }
                }
                if !ok {
                    self.error(
                        "E012",
                        n,
                        Some("perms"),
                        format!("perms '{s}' must only be a combination of 'r', 'w', and 'x'"),
                        "write e.g. perms=\"r\", perms=\"rw\" or perms=\"rx\"",
                    );
                } else if p.write && !p.read && !p.execute {
                    self.error(
                        "E013",
                        n,
                        Some("perms"),
                        "perms must not be 'w': write-only mappings are not allowed".into(),
                        "use perms=\"rw\"",
                    );
                }
                p
            }
        };
        Map {
            mr,
            vaddr,
            perms,
            cached: self.boolean(n, "cached", true),
            setvar_vaddr: n.attribute("setvar_vaddr").map(str::to_string),
            setvar_size: n.attribute("setvar_size").map(str::to_string),
            setvar_prefill_size: n.attribute("setvar_prefill_size").map(str::to_string),
            loc: self.loc(n),
        }
    }

    fn irq(&mut self, n: Node) -> Option<Irq> {
        if n.attribute("irq").is_none() {
            for a in ["pin", "pcidev"] {
                if n.attribute(a).is_some() {
                    self.error(
                        "E090",
                        n,
                        Some(a),
                        format!("x86 {} interrupts are not supported on aarch64", if a == "pin" { "I/O APIC" } else { "MSI" }),
                        "use <irq irq=\"INTID\" id=\"N\"/> with the GIC interrupt number (DT SPI + 32)",
                    );
                    return None;
                }
            }
        }
        self.check_attrs(n, &["irq", "id", "setvar_id", "trigger"]);
        let id = self.decimal(n, "id", IdSyntax::DecimalSigned);
        if let Some(id) = id {
            self.id_range(n, "id", id);
        }
        let irq = self.decimal(n, "irq", IdSyntax::DecimalUnsigned);
        let trigger = match n.attribute("trigger") {
            None | Some("level") => Trigger::Level,
            Some("edge") => Trigger::Edge,
            Some(s) => {
                self.error(
                    "E014",
                    n,
                    Some("trigger"),
                    format!("trigger '{s}' must be either 'level' or 'edge'"),
                    "write trigger=\"level\" (the default) or trigger=\"edge\", as the device tree's interrupt flags say",
                );
                Trigger::Level
            }
        };
        Some(Irq {
            irq: irq?,
            id: id?,
            trigger,
            setvar_id: n.attribute("setvar_id").map(str::to_string),
            loc: self.loc(n),
        })
    }

    fn id_range(&mut self, n: Node, attr: &str, id: u64) {
        if id > MAX_ID {
            self.error(
                "E032",
                n,
                Some(attr),
                format!("{attr} {id} is above {MAX_ID}"),
                format!("use an id in 0..={MAX_ID} (62 badge bits are available per PD)"),
            );
        }
    }

    fn vm(&mut self, n: Node) -> VirtualMachine {
        self.check_attrs(n, &["name", "budget", "period", "priority"]);
        let name = self.required(n, "name").unwrap_or_default().to_string();
        let (budget, period) = self.budget_period(n);
        let prio = self.number(n, "priority").unwrap_or(0);
        let priority = self.priority(n, prio);
        let mut vm = VirtualMachine {
            name,
            priority,
            budget,
            period,
            loc: self.loc(n),
            ..Default::default()
        };
        for c in n.children().filter(|c| c.is_element()) {
            match c.tag_name().name() {
                "vcpu" => {
                    self.check_attrs(c, &["id", "setvar_id", "cpu"]);
                    let Some(id) = self.decimal(c, "id", IdSyntax::DecimalUnsigned) else {
                        continue;
                    };
                    self.id_range(c, "id", id);
                    if vm.vcpus.iter().any(|v| v.id == id) {
                        self.error(
                            "E035",
                            c,
                            Some("id"),
                            format!("duplicate vcpu id {id} in virtual machine '{}'", vm.name),
                            "give each <vcpu> of a virtual machine its own id",
                        );
                    }
                    let cpu = self.cpu(c);
                    vm.vcpus.push(Vcpu {
                        id,
                        cpu,
                        setvar_id: c.attribute("setvar_id").map(str::to_string),
                        loc: self.loc(c),
                    });
                }
                "map" => {
                    let m = self.map(c, false);
                    vm.maps.push(m);
                }
                _ => self.unknown_child(n, c, &["vcpu", "map"]),
            }
        }
        if vm.vcpus.is_empty() && !self.has_error_inside(n) {
            self.error(
                "E034",
                n,
                None,
                format!("virtual machine '{}' has no <vcpu>", vm.name),
                "add <vcpu id=\"0\" /> inside <virtual_machine>",
            );
        }
        vm
    }

    /// Whether an error was already reported for a descendant of `n` (so a
    /// follow-on "missing" error would only repeat it).
    fn has_error_inside(&self, n: Node) -> bool {
        let start = self.elem_pos(n);
        let end = self.pos(n.range().end);
        self.diags
            .iter()
            .any(|d| d.is_error() && d.pos > start && d.pos < end)
    }

    fn cspace(&mut self, n: Node) -> CSpace {
        self.check_attrs(n, &[]);
        let mut cs = CSpace {
            loc: self.loc(n),
            ..Default::default()
        };
        for c in n.children().filter(|c| c.is_element()) {
            let kind = match c.tag_name().name() {
                "cap_tcb" => CapKind::Tcb,
                "cap_sc" => CapKind::Sc,
                "cap_vspace" => CapKind::VSpace,
                _ => {
                    self.unknown_child(n, c, &["cap_tcb", "cap_sc", "cap_vspace"]);
                    continue;
                }
            };
            self.check_attrs(c, &["slot", "pd"]);
            let pd = self.required(c, "pd").map(str::to_string);
            let slot = self.required_number(c, "slot");
            if let Some(s) = slot {
                if s == 0 || s >= CSPACE_SLOTS {
                    self.error(
                        "E029",
                        c,
                        Some("slot"),
                        format!("cspace slot {s} is out of range"),
                        format!(
                            "use a slot in 1..={} (slot 0 is reserved for the Microkit CNode)",
                            CSPACE_SLOTS - 1
                        ),
                    );
                }
            }
            if let (Some(pd), Some(slot)) = (pd, slot) {
                cs.caps.push(CSpaceCap {
                    kind,
                    slot,
                    pd,
                    loc: self.loc(c),
                });
            }
        }
        cs
    }

    fn mr(&mut self, n: Node) -> MemoryRegion {
        self.check_attrs(
            n,
            &[
                "name",
                "size",
                "page_size",
                "phys_addr",
                "prefill_path",
                "prefill_bootinfo",
            ],
        );
        let name = self.required(n, "name").unwrap_or_default().to_string();
        let page_size = match self.number(n, "page_size") {
            None | Some(0x1000) => PageSize::Small,
            Some(0x20_0000) => PageSize::Large,
            Some(v) => {
                self.error(
                    "E020",
                    n,
                    Some("page_size"),
                    format!("page size {v:#x} not supported"),
                    "use page_size=\"0x1000\" (4 KiB, the default) or page_size=\"0x200000\" (2 MiB)",
                );
                PageSize::Small
            }
        };
        let ps = page_size.bytes();
        let prefill_path = n.attribute("prefill_path").map(str::to_string);
        let bootinfo = match n.attribute("prefill_bootinfo") {
            None => None,
            Some("fdt") => Some("fdt".to_string()),
            Some(
                s @ ("x86_vbe" | "x86_mbmmap" | "x86_acpi_rsdp" | "x86_framebuffer"
                | "x86_tsc_freq"),
            ) => {
                self.error(
                    "E090",
                    n,
                    Some("prefill_bootinfo"),
                    format!("boot information '{s}' only exists on x86-64"),
                    "on aarch64 the only boot information is prefill_bootinfo=\"fdt\"",
                );
                None
            }
            Some(s) => {
                self.error(
                    "E024",
                    n,
                    Some("prefill_bootinfo"),
                    format!("boot information kind '{s}' is not supported"),
                    "use prefill_bootinfo=\"fdt\" (x86-64 also has x86_vbe, x86_mbmmap, x86_acpi_rsdp, x86_framebuffer, x86_tsc_freq)",
                );
                None
            }
        };
        let prefill = match (prefill_path, bootinfo) {
            (Some(_), Some(_)) => {
                self.error(
                    "E023",
                    n,
                    Some("prefill_bootinfo"),
                    "prefill_path and prefill_bootinfo cannot be both specified".into(),
                    "keep one: a region is filled either from a file or with boot information",
                );
                None
            }
            (Some(p), None) => Some(Prefill::Path(p)),
            (None, Some(b)) => Some(Prefill::Bootinfo(b)),
            (None, None) => None,
        };
        let size = match n.attribute("size") {
            Some(_) => {
                let s = self.number(n, "size");
                if let Some(s) = s {
                    if s == 0 {
                        self.error(
                            "E073",
                            n,
                            Some("size"),
                            "memory region size is zero".into(),
                            format!("give the region at least one page ({ps:#x} bytes)"),
                        );
                    } else if s % ps != 0 {
                        self.error(
                            "E021",
                            n,
                            Some("size"),
                            format!("size {s:#x} is not a multiple of the page size {ps:#x}"),
                            format!("round it up to {:#x}", s.div_ceil(ps).saturating_mul(ps)),
                        );
                    }
                }
                s
            }
            None => match &prefill {
                Some(Prefill::Bootinfo(_)) => Some(ps),
                Some(Prefill::Path(_)) => None,
                None => {
                    if n.attribute("prefill_bootinfo").is_none() {
                        self.error(
                            "E025",
                            n,
                            None,
                            "size must be specified if memory region is not prefilled".into(),
                            "add size=\"0x1000\" (a multiple of the page size)",
                        );
                    }
                    None
                }
            },
        };
        let phys_addr = self.number(n, "phys_addr");
        if let Some(p) = phys_addr {
            if p % ps != 0 {
                self.error(
                    "E022",
                    n,
                    Some("phys_addr"),
                    format!("phys_addr {p:#x} is not aligned to the page size {ps:#x}"),
                    "align phys_addr to the page size (or use the smaller page size)",
                );
            }
        }
        MemoryRegion {
            name,
            size,
            page_size,
            phys_addr,
            prefill,
            loc: self.loc(n),
        }
    }

    fn channel(&mut self, n: Node) -> Option<Channel> {
        self.check_attrs(n, &[]);
        let mut ends = Vec::new();
        let mut all_ok = true;
        for c in n.children().filter(|c| c.is_element()) {
            if c.tag_name().name() != "end" {
                self.unknown_child(n, c, &["end"]);
                all_ok = false;
                continue;
            }
            self.check_attrs(c, &["pd", "id", "pp", "notify", "setvar_id"]);
            let pd = self.required(c, "pd").map(str::to_string);
            let id = self.decimal(c, "id", IdSyntax::DecimalSigned);
            if let Some(id) = id {
                self.id_range(c, "id", id);
            }
            let end = ChannelEnd {
                pd: pd.clone().unwrap_or_default(),
                id: id.unwrap_or(0),
                pp: self.boolean(c, "pp", false),
                notify: self.boolean(c, "notify", true),
                setvar_id: c.attribute("setvar_id").map(str::to_string),
                loc: self.loc(c),
            };
            all_ok &= pd.is_some() && id.is_some();
            ends.push(end);
        }
        let count = ends.len();
        let Ok([a, b]) = <[ChannelEnd; 2]>::try_from(ends) else {
            self.error(
                "E030",
                n,
                None,
                format!("exactly two end elements must be specified, found {count}"),
                "a channel joins two protection domains: give it two <end pd=\"...\" id=\"...\"/>",
            );
            return None;
        };
        if a.pp && b.pp {
            let second = n.children().filter(|c| c.tag_name().name() == "end").nth(1);
            if let Some(second) = second {
                self.error(
                    "E031",
                    second,
                    Some("pp"),
                    "cannot ppc bidirectionally: pp=\"true\" on both ends".into(),
                    "set pp=\"true\" only on the caller's end (the lower-priority PD)",
                );
            }
        }
        all_ok.then(|| Channel {
            ends: [a, b],
            loc: self.loc(n),
        })
    }

    fn domains(&mut self, n: Node) -> DomainSchedule {
        self.check_attrs(n, &[]);
        let mut ds = DomainSchedule {
            loc: self.loc(n),
            schedule_loc: self.loc(n),
            ..Default::default()
        };
        let mut schedule: Option<Node> = None;
        for c in n.children().filter(|c| c.is_element()) {
            match c.tag_name().name() {
                "domain" => {
                    self.check_attrs(c, &["name", "id"]);
                    let Some(name) = self.required(c, "name") else {
                        continue;
                    };
                    let id = self.number(c, "id");
                    if let Some(id) = id {
                        if id >= NUM_DOMAINS {
                            self.error(
                                "E042",
                                c,
                                Some("id"),
                                format!("domain id {id} should be less than KernelNumDomains ({NUM_DOMAINS})"),
                                format!("use an id in 0..{NUM_DOMAINS}, or omit id to have one assigned"),
                            );
                        }
                    }
                    if ds.domains.iter().any(|d| d.name == name) {
                        self.error(
                            "E041",
                            c,
                            Some("name"),
                            format!("domain '{name}' is declared twice"),
                            "give each <domain> its own name",
                        );
                    } else if let Some(id) =
                        id.filter(|&i| ds.domains.iter().any(|d| d.id == Some(i)))
                    {
                        self.error(
                            "E041",
                            c,
                            Some("id"),
                            format!("domain id {id} is used twice"),
                            "give each <domain> its own id, or omit id to have one assigned",
                        );
                    }
                    ds.domains.push(DomainDecl {
                        name: name.to_string(),
                        id,
                        loc: self.loc(c),
                    });
                }
                "domain_schedule" => {
                    if schedule.is_some() {
                        self.error(
                            "E043",
                            c,
                            None,
                            "the <domain_schedule> element can only appear once".into(),
                            "merge the schedules into one <domain_schedule>",
                        );
                    } else {
                        schedule = Some(c);
                    }
                }
                _ => self.unknown_child(n, c, &["domain", "domain_schedule"]),
            }
        }
        let explicit = ds.domains.iter().filter(|d| d.id.is_some()).count();
        let total = ds.domains.len();
        if total > usize::try_from(NUM_DOMAINS).unwrap_or(usize::MAX) && explicit < total {
            self.error(
                "E042",
                n,
                None,
                format!("{total} domains declared; the kernel has {NUM_DOMAINS}"),
                format!("declare at most {NUM_DOMAINS} domains"),
            );
        }
        let Some(s) = schedule else {
            self.error(
                "E043",
                n,
                None,
                "the <domain_schedule> element must appear once".into(),
                "add <domain_schedule> with <schedule_entry domain=\"...\" duration=\"1000 us\"/> entries",
            );
            return ds;
        };
        ds.schedule_loc = self.loc(s);
        self.check_attrs(s, &["index_shift", "start_index"]);
        ds.start_index = self.number(s, "start_index").unwrap_or(0);
        ds.index_shift = self.number(s, "index_shift");
        for e in s.children().filter(|c| c.is_element()) {
            match e.tag_name().name() {
                "schedule_entry" => {
                    self.check_attrs(e, &["domain", "duration"]);
                    let dom = self.required(e, "domain");
                    let dur = self.required(e, "duration");
                    let (Some(dom), Some(dur)) = (dom, dur) else {
                        continue;
                    };
                    if !ds.domains.iter().any(|d| d.name == dom) {
                        self.error(
                            "E040",
                            e,
                            Some("domain"),
                            format!("domain '{dom}' does not exist"),
                            "declare it with <domain name=\"...\"/> inside <domains>",
                        );
                    }
                    let parsed = dur.split_once(' ').and_then(|(v, unit)| {
                        let unit = match unit {
                            "us" => DurationUnit::Us,
                            "ticks" => DurationUnit::Ticks,
                            _ => return None,
                        };
                        parse_number(v).filter(|&v| v != 0).map(|v| (v, unit))
                    });
                    match parsed {
                        Some((length, unit)) => ds.entries.push(DomainEntry {
                            name: dom.to_string(),
                            length,
                            unit,
                            end_marker: false,
                            loc: self.loc(e),
                        }),
                        None => self.error(
                            "E044",
                            e,
                            Some("duration"),
                            format!("duration '{dur}' must be a non-zero number, one space, and 'us' or 'ticks'"),
                            "write e.g. duration=\"1000 us\" or duration=\"5 ticks\"",
                        ),
                    }
                }
                "schedule_end_marker" => {
                    self.check_attrs(e, &[]);
                    ds.entries.push(DomainEntry {
                        end_marker: true,
                        loc: self.loc(e),
                        ..Default::default()
                    });
                }
                _ => self.unknown_child(s, e, &["schedule_entry", "schedule_end_marker"]),
            }
        }
        let len = u64::try_from(ds.entries.len()).unwrap_or(u64::MAX);
        if len >= NUM_DOMAIN_SCHEDULES
            || ds
                .index_shift
                .is_some_and(|sh| sh.saturating_add(len) >= NUM_DOMAIN_SCHEDULES)
        {
            self.error(
                "E045",
                s,
                ds.index_shift.map(|_| "index_shift"),
                format!(
                    "{len} schedule entries{} exceed KernelNumDomainSchedules ({NUM_DOMAIN_SCHEDULES})",
                    ds.index_shift.map(|s| format!(" shifted by {s}")).unwrap_or_default()
                ),
                format!("keep entries plus index_shift below {NUM_DOMAIN_SCHEDULES}"),
            );
        }
        if ds.start_index >= len && !self.has_error_inside(s) {
            self.error(
                "E046",
                s,
                Some("start_index"),
                format!(
                    "start_index {} is not inside the schedule of {len} entries",
                    ds.start_index
                ),
                "start_index is a 0-based index into the <schedule_entry> list",
            );
        }
        ds
    }
}

/// Parse a system description: XML well-formedness, known elements and
/// attributes, value syntax and per-value ranges, with Microkit 2.3's
/// defaults applied. Every problem found is returned, in source order.
pub fn parse(source: &str) -> Result<SystemDescription, Vec<Diagnostic>> {
    let lines = Lines::new(source);
    let doc = match roxmltree::Document::parse(source) {
        Ok(d) => d,
        Err(e) => {
            let tp = e.pos();
            return Err(vec![err(
                "E001",
                Pos {
                    line: tp.row,
                    col: tp.col,
                },
                "system",
                None,
                format!("not well-formed XML: {e}"),
                "fix the XML syntax at this position (unclosed tag, bad quote, stray '<' or '&'?)",
            )]);
        }
    };
    let mut p = Parser {
        lines,
        diags: Vec::new(),
    };
    let root = doc.root_element();
    if root.tag_name().name() != "system" {
        p.error(
            "E002",
            root,
            None,
            format!(
                "the root element is <{}>, not <system>",
                root.tag_name().name()
            ),
            "wrap the description in <system> ... </system>",
        );
        return Err(p.diags);
    }
    let sys = p.system(root);
    if p.diags.iter().any(Diagnostic::is_error) {
        p.diags.sort_by_key(|d| d.pos);
        Err(p.diags)
    } else {
        Ok(sys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_like_microkit() {
        assert_eq!(parse_number("0x1000"), Some(0x1000));
        assert_eq!(parse_number("4_096"), Some(4096));
        assert_eq!(parse_number("0x_ff"), Some(0xff));
        assert_eq!(parse_number("0X10"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("18446744073709551616"), None);
    }

    #[test]
    fn lines_count_chars() {
        let l = Lines::new("ab\nçd\n");
        assert_eq!(l.pos(0), Pos { line: 1, col: 1 });
        assert_eq!(l.pos(3), Pos { line: 2, col: 1 });
        assert_eq!(l.pos(5), Pos { line: 2, col: 2 });
    }

    #[test]
    fn defaults_applied() {
        let s = parse(
            r#"<system><protection_domain name="a"><program_image path="a.elf"/>
               <map mr="m" vaddr="0x1000"/></protection_domain>
               <memory_region name="m" size="0x1000"/></system>"#,
        )
        .unwrap();
        let pd = &s.protection_domains[0];
        assert_eq!(pd.priority, 0);
        assert_eq!(pd.budget, 1000);
        assert_eq!(pd.period, 1000);
        assert_eq!(pd.stack_size, 0x2000);
        assert!(pd.fpu);
        assert!(!pd.passive);
        let m = &pd.maps[0];
        assert!(m.perms.read && m.perms.write && !m.perms.execute);
        assert!(m.cached);
        assert_eq!(pd.loc.elem, Pos { line: 1, col: 9 });
        assert_eq!(pd.loc.attr("name"), Pos { line: 1, col: 28 });
    }

    #[test]
    fn elements_nested_in_leaves_are_errors() {
        let e = parse(
            "<system><protection_domain name=\"a\"><program_image path=\"a.elf\"/>\n<irq irq=\"33\" id=\"0\"><map mr=\"m\" vaddr=\"0\"/></irq>\n</protection_domain></system>",
        )
        .unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].code, "E003");
        assert_eq!(e[0].pos, Pos { line: 2, col: 22 });
        assert_eq!(e[0].element, "map");
    }

    #[test]
    fn text_anywhere_is_an_error() {
        let e = parse("<system>\n<protection_domain name=\"a\">\n  x<program_image path=\"a.elf\"/></protection_domain></system>")
            .unwrap_err();
        assert_eq!(e[0].code, "E005");
        assert_eq!(e[0].pos, Pos { line: 3, col: 3 });
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let depth = 10_000;
        let mut src = String::from("<system>");
        for i in 0..depth {
            src.push_str(&format!("<protection_domain name=\"p{i}\" id=\"0\">"));
        }
        for _ in 0..depth {
            src.push_str("</protection_domain>");
        }
        src.push_str("</system>");
        let e = parse(&src).unwrap_err();
        assert!(e.iter().any(|d| d.code == "E052"));
    }

    #[test]
    fn collects_several_errors() {
        let e = parse(r#"<system><protection_domain name="a" priority="x" foo="1"/></system>"#)
            .unwrap_err();
        let codes: Vec<_> = e.iter().map(|d| d.code).collect();
        assert_eq!(codes, ["E010", "E007", "E004"]);
    }
}
