//! Semantic rules: relations between elements, the board and the config.
//!
//! [`check`] assumes a [`SystemDescription`] that [`crate::parse`] accepted
//! (or one built in code) and reports, in source order, every rule broken.
//! Address arithmetic is checked: an overflow is itself a rule (E061, E072),
//! never a panic.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Severity};
use crate::model::*;
use crate::CheckOptions;

pub use crate::parse::MAX_PDS;
/// Bytes of a PD's name the runtime sees (`microkit_name`).
pub const NAME_MAX: usize = 64;
/// The top of the user address space when no board is given: Microkit's
/// aarch64 hypervisor configs with a 40-bit physical address space, which
/// every supported aarch64 board uses.
pub const DEFAULT_USER_TOP: u64 = 1 << 40;
const PAGE: u64 = 0x1000;

/// A PD's fixed layout at the top of its address space (Microkit 2.3
/// `pd_ipc_buffer`/`pd_stack_top`/`pd_stack_bottom`): the IPC buffer in the
/// highest page, one unmapped guard page, then the stack growing down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackLayout {
    /// Address of the IPC buffer page.
    pub ipc_buffer: u64,
    /// Initial stack pointer (one past the stack's highest byte).
    pub stack_top: u64,
    /// Lowest byte of the stack; maps must end at or below it.
    pub stack_bottom: u64,
}

impl StackLayout {
    /// Layout for an address space whose user part ends at `user_top`
    /// (exclusive or inclusive both work: the IPC buffer is the page holding
    /// `user_top - 1`), with a stack of `stack_size` bytes.
    pub fn new(user_top: u64, stack_size: u64) -> StackLayout {
        let ipc_buffer = user_top.saturating_sub(1) & !(PAGE - 1);
        let stack_top = ipc_buffer.saturating_sub(PAGE);
        StackLayout {
            ipc_buffer,
            stack_top,
            stack_bottom: stack_top.saturating_sub(stack_size),
        }
    }
}

struct Ctx<'a> {
    sys: &'a SystemDescription,
    opts: &'a CheckOptions,
    out: Vec<Diagnostic>,
    /// Sizes of regions, resolved (prefill files read) once.
    sizes: HashMap<&'a str, Option<u64>>,
    /// Regions by name (the first of duplicates, as [`SystemDescription::region`]).
    regions: HashMap<&'a str, &'a MemoryRegion>,
}

fn diag(
    severity: Severity,
    code: &'static str,
    loc: &Loc,
    element: &str,
    attr: Option<&str>,
    message: String,
    hint: impl Into<String>,
) -> Diagnostic {
    Diagnostic {
        severity,
        code,
        pos: attr.map_or(loc.elem, |a| loc.attr(a)),
        element: element.to_string(),
        attribute: attr.map(str::to_string),
        message,
        hint: hint.into(),
    }
}

impl<'a> Ctx<'a> {
    fn error(
        &mut self,
        code: &'static str,
        loc: &Loc,
        element: &str,
        attr: Option<&str>,
        message: String,
        hint: impl Into<String>,
    ) {
        self.out.push(diag(
            Severity::Error,
            code,
            loc,
            element,
            attr,
            message,
            hint,
        ));
    }

    fn warn(
        &mut self,
        code: &'static str,
        loc: &Loc,
        element: &str,
        attr: Option<&str>,
        message: String,
        hint: impl Into<String>,
    ) {
        self.out.push(diag(
            Severity::Warning,
            code,
            loc,
            element,
            attr,
            message,
            hint,
        ));
    }

    fn region(&self, name: &str) -> Option<&'a MemoryRegion> {
        self.regions.get(name).copied()
    }

    fn user_top(&self) -> u64 {
        self.opts
            .board
            .map_or(DEFAULT_USER_TOP, |b| b.user_vaddr_top)
    }

    /// Cores the config offers, when known.
    fn cores(&self) -> Option<u32> {
        match (self.opts.board, self.opts.config.smp) {
            (Some(b), _) => Some(b.cores_for(self.opts.config)),
            (None, false) => Some(1),
            (None, true) => None,
        }
    }

    fn find_file(&self, path: &str) -> Option<PathBuf> {
        find_on_search_path(path, &self.opts.search_paths)
    }

    fn pds(&self) -> Vec<&'a ProtectionDomain> {
        self.sys.all_pds()
    }

    fn names_and_limits(&mut self) {
        let pds = self.pds();
        if pds.is_empty() {
            self.error(
                "E052",
                &Loc {
                    elem: Pos { line: 1, col: 1 },
                    attrs: Vec::new(),
                },
                "system",
                None,
                "at least one protection domain must be defined".into(),
                "add a <protection_domain> with a <program_image>",
            );
        }
        if let Some(extra) = pds.get(MAX_PDS) {
            self.error(
                "E052",
                &extra.loc,
                "protection_domain",
                None,
                format!(
                    "too many protection domains ({}); Microkit allows at most {MAX_PDS}",
                    pds.len()
                ),
                "merge protection domains (children count too)",
            );
        }
        let mut seen: HashSet<&str> = HashSet::new();
        for pd in &pds {
            if !seen.insert(pd.name.as_str()) {
                self.error(
                    "E050",
                    &pd.loc,
                    "protection_domain",
                    Some("name"),
                    format!("duplicate protection domain name '{}'", pd.name),
                    "names are unique across all protection domains, nested ones included; rename one",
                );
            }
            if pd.name == "monitor" {
                self.error(
                    "E051",
                    &pd.loc,
                    "protection_domain",
                    Some("name"),
                    "the name 'monitor' is reserved for the Microkit monitor".into(),
                    "choose another name",
                );
            }
            self.name_length(&pd.name, &pd.loc, "protection_domain");
            if let Some(vm) = &pd.virtual_machine {
                self.name_length(&vm.name, &vm.loc, "virtual_machine");
            }
        }
        let mut seen_vm: HashSet<&str> = HashSet::new();
        for pd in &pds {
            if let Some(vm) = &pd.virtual_machine {
                if !seen_vm.insert(vm.name.as_str()) {
                    self.error(
                        "E054",
                        &vm.loc,
                        "virtual_machine",
                        Some("name"),
                        format!("duplicate virtual machine name '{}'", vm.name),
                        "rename one virtual machine",
                    );
                }
            }
        }
        let mut seen_mr: HashSet<&str> = HashSet::new();
        for mr in &self.sys.memory_regions {
            if !seen_mr.insert(mr.name.as_str()) {
                self.error(
                    "E053",
                    &mr.loc,
                    "memory_region",
                    Some("name"),
                    format!("duplicate memory region name '{}'", mr.name),
                    "rename one memory region (and the maps that mean it)",
                );
            }
        }
    }

    fn name_length(&mut self, name: &str, loc: &Loc, element: &str) {
        if name.len() <= NAME_MAX {
            return;
        }
        if !name.is_char_boundary(NAME_MAX) {
            self.error(
                "E074",
                loc,
                element,
                Some("name"),
                format!(
                    "name is {} bytes and byte {NAME_MAX} falls inside a UTF-8 character: the Microkit tool panics cutting it",
                    name.len()
                ),
                format!("shorten the name to at most {NAME_MAX} bytes"),
            );
        } else {
            let seen = name.get(..NAME_MAX).unwrap_or(name);
            self.warn(
                "W001",
                loc,
                element,
                Some("name"),
                format!(
                    "name is {} bytes; the runtime (and fault messages) see only '{seen}'",
                    name.len()
                ),
                format!("shorten the name to at most {NAME_MAX} bytes"),
            );
        }
    }

    fn cpus(&mut self) {
        let Some(cores) = self.cores() else { return };
        for pd in self.pds() {
            if pd.cpu >= cores {
                self.error(
                    "E037",
                    &pd.loc,
                    "protection_domain",
                    Some("cpu"),
                    format!("cpu {} but the config has {cores} core(s)", pd.cpu),
                    cpu_hint(cores),
                );
            }
            if let Some(vm) = &pd.virtual_machine {
                for v in &vm.vcpus {
                    if v.cpu >= cores {
                        self.error(
                            "E037",
                            &v.loc,
                            "vcpu",
                            Some("cpu"),
                            format!("cpu {} but the config has {cores} core(s)", v.cpu),
                            cpu_hint(cores),
                        );
                    }
                }
            }
        }
    }

    fn domains(&mut self) {
        let pds = self.pds();
        match &self.sys.domain_schedule {
            None => {
                for pd in pds {
                    if let Some(d) = &pd.domain {
                        self.error(
                            "E038",
                            &pd.loc,
                            "protection_domain",
                            Some("domain"),
                            format!("domain '{d}' given but the system has no <domains> schedule"),
                            "remove domain=, or declare the domains and a <domain_schedule> in <domains>",
                        );
                    }
                }
            }
            Some(ds) => {
                if self.opts.config.smp {
                    self.error(
                        "E047",
                        &ds.loc,
                        "domains",
                        None,
                        "the domain scheduler is not supported in multicore (smp-) builds of seL4"
                            .into(),
                        "use a non-smp config, or remove <domains>",
                    );
                }
                let names: HashSet<&str> = ds.domains.iter().map(|d| d.name.as_str()).collect();
                for pd in pds {
                    if pd.loc.elem < ds.loc.elem {
                        self.error(
                            "E048",
                            &pd.loc,
                            "protection_domain",
                            pd.domain.as_ref().map(|_| "domain"),
                            "protection domain comes before <domains>: the Microkit tool reads the file in order and rejects or misplaces it".into(),
                            "move <domains> above every <protection_domain>",
                        );
                        continue;
                    }
                    match &pd.domain {
                        None => self.error(
                            "E039",
                            &pd.loc,
                            "protection_domain",
                            None,
                            format!("protection domain '{}' has no domain", pd.name),
                            "with <domains>, every protection domain needs domain=\"<declared name>\"",
                        ),
                        Some(d) if !names.contains(d.as_str()) => self.error(
                            "E040",
                            &pd.loc,
                            "protection_domain",
                            Some("domain"),
                            format!("domain '{d}' not declared in <domains>"),
                            format!(
                                "declared domains: {}",
                                ds.domains
                                    .iter()
                                    .map(|d| d.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ),
                        Some(_) => {}
                    }
                }
            }
        }
    }

    fn irqs_and_ids(&mut self) {
        let pds = self.pds();
        let board = self.opts.board;
        let mut claimed: HashMap<u64, &str> = HashMap::new();
        // (pd name, id) → what used it
        let mut ids: HashMap<(&str, u64), String> = HashMap::new();
        for pd in &pds {
            for irq in &pd.irqs {
                if let Some(prev) = claimed.get(&irq.irq) {
                    self.error(
                        "E055",
                        &irq.loc,
                        "irq",
                        Some("irq"),
                        format!("interrupt {} is already claimed by '{prev}'", irq.irq),
                        "an interrupt is delivered to one protection domain: remove one claim, or share via a driver PD and channels",
                    );
                } else {
                    claimed.insert(irq.irq, pd.name.as_str());
                }
                if let Some(b) = board {
                    let (lo, hi) = b.irq_range;
                    if b.reserved_irqs.contains(&irq.irq) {
                        self.error(
                            "E085",
                            &irq.loc,
                            "irq",
                            Some("irq"),
                            format!("interrupt {} is the kernel's own on board {}", irq.irq, b.name),
                            format!(
                                "seL4 keeps interrupts {:?} on {} (VGIC maintenance and its timers); a PD cannot claim them",
                                b.reserved_irqs, b.name
                            ),
                        );
                    } else if irq.irq < lo || irq.irq > hi {
                        let hint = if lo > hi {
                            format!(
                                "board {} has no interrupts a PD can claim; remove the <irq>",
                                b.name
                            )
                        } else {
                            format!(
                                "board {} has interrupts {lo}..={hi} (GIC INTID = device-tree SPI + 32)",
                                b.name
                            )
                        };
                        self.error(
                            "E082",
                            &irq.loc,
                            "irq",
                            Some("irq"),
                            format!("interrupt {} is outside board {}'s range", irq.irq, b.name),
                            hint,
                        );
                    }
                }
                let key = (pd.name.as_str(), irq.id);
                if let Some(prev) = ids.get(&key) {
                    self.error(
                        "E056",
                        &irq.loc,
                        "irq",
                        Some("id"),
                        format!("id {} in '{}' is already used by {prev}", irq.id, pd.name),
                        "irq and channel ids share one namespace per protection domain; pick an unused id",
                    );
                } else {
                    ids.insert(key, format!("the irq at line {}", irq.loc.elem.line));
                }
            }
        }
        for ch in &self.sys.channels {
            let mut ok = true;
            for end in &ch.ends {
                if !pds.iter().any(|p| p.name == end.pd) {
                    ok = false;
                    self.error(
                        "E058",
                        &end.loc,
                        "end",
                        Some("pd"),
                        format!("no protection domain named '{}'", end.pd),
                        "name an existing <protection_domain> (nested ones included)",
                    );
                }
            }
            for end in &ch.ends {
                let key = (end.pd.as_str(), end.id);
                if let Some(prev) = ids.get(&key) {
                    self.error(
                        "E056",
                        &end.loc,
                        "end",
                        Some("id"),
                        format!("id {} in '{}' is already used by {prev}", end.id, end.pd),
                        "irq and channel ids share one namespace per protection domain; pick an unused id",
                    );
                } else {
                    ids.insert(key, format!("the channel at line {}", ch.loc.elem.line));
                }
            }
            let [a, b] = &ch.ends;
            if a.pd == b.pd {
                self.warn(
                    "W004",
                    &ch.loc,
                    "channel",
                    None,
                    format!("channel connects '{}' to itself", a.pd),
                    "a channel normally joins two different protection domains; check the pd names",
                );
            }
            if !ok {
                continue;
            }
            let prio = |name: &str| pds.iter().find(|p| p.name == name).map(|p| p.priority);
            for (caller, callee) in [(a, b), (b, a)] {
                if !caller.pp {
                    continue;
                }
                if let (Some(pc), Some(pe)) = (prio(&caller.pd), prio(&callee.pd)) {
                    if pc >= pe {
                        self.error(
                            "E057",
                            &caller.loc,
                            "end",
                            Some("pp"),
                            format!(
                                "'{}' (priority {pc}) makes PPCs to '{}' (priority {pe}); the callee must have strictly higher priority",
                                caller.pd, callee.pd
                            ),
                            format!(
                                "raise '{}' above {pc} or lower '{}' below {pe}",
                                callee.pd, caller.pd
                            ),
                        );
                    }
                }
            }
        }
    }

    fn children(&mut self) {
        for pd in self.pds() {
            let mut seen: HashSet<u64> = HashSet::new();
            for c in &pd.children {
                let Some(id) = c.id else { continue };
                if !seen.insert(id) {
                    self.error(
                        "E067",
                        &c.loc,
                        "protection_domain",
                        Some("id"),
                        format!("duplicate child id {id} in '{}'", pd.name),
                        "give each child of a protection domain its own id",
                    );
                } else if pd
                    .virtual_machine
                    .as_ref()
                    .is_some_and(|vm| vm.vcpus.iter().any(|v| v.id == id))
                {
                    self.error(
                        "E067",
                        &c.loc,
                        "protection_domain",
                        Some("id"),
                        format!("child id {id} clashes with a vcpu id of '{}'", pd.name),
                        "child ids and vcpu ids share the parent's fault-badge namespace; pick another id",
                    );
                }
            }
        }
    }

    fn region_size(&mut self, mr: &'a MemoryRegion) -> Option<u64> {
        if let Some(s) = self.sizes.get(mr.name.as_str()) {
            return *s;
        }
        let size = match (mr.size, &mr.prefill) {
            (Some(s), _) => Some(s),
            (None, Some(Prefill::Path(p))) => self
                .find_file(p)
                .and_then(|f| std::fs::metadata(f).ok())
                .map(|m| {
                    let ps = mr.page_size.bytes();
                    m.len().div_ceil(ps).saturating_mul(ps)
                }),
            (None, _) => None,
        };
        self.sizes.insert(mr.name.as_str(), size);
        size
    }

    fn regions(&mut self) {
        let mut fixed: Vec<(&str, u64, u64)> = Vec::new();
        let host = self.opts.board.is_some_and(|b| b.name == "host");
        for mr in &self.sys.memory_regions {
            if let Some(Prefill::Path(p)) = &mr.prefill {
                match self.find_file(p) {
                    None => {
                        if self.opts.require_images {
                            self.error(
                                "E070",
                                &mr.loc,
                                "memory_region",
                                Some("prefill_path"),
                                format!("prefill file '{p}' not found on the search path"),
                                search_hint(&self.opts.search_paths),
                            );
                        }
                    }
                    Some(f) => {
                        let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
                        if len == 0 {
                            self.error(
                                "E070",
                                &mr.loc,
                                "memory_region",
                                Some("prefill_path"),
                                format!("prefill file '{}' is empty (or unreadable)", f.display()),
                                "the Microkit tool rejects empty prefill files; put the data in it",
                            );
                        } else if let Some(size) = mr.size.filter(|&s| len > s) {
                            self.error(
                                "E070",
                                &mr.loc,
                                "memory_region",
                                Some("size"),
                                format!(
                                    "prefill file '{}' is {len:#x} bytes, more than the region's size {size:#x}",
                                    f.display()
                                ),
                                format!(
                                    "raise size to at least {:#x}, or omit size to fit the file",
                                    len.div_ceil(mr.page_size.bytes())
                                        .saturating_mul(mr.page_size.bytes())
                                ),
                            );
                        }
                    }
                }
            }
            let Some(pa) = mr.phys_addr else { continue };
            if host {
                self.error(
                    "E084",
                    &mr.loc,
                    "memory_region",
                    Some("phys_addr"),
                    "the host board runs PDs as Linux processes and has no physical addresses"
                        .into(),
                    "remove phys_addr for --board host (devices are emulated there)",
                );
                continue;
            }
            let Some(size) = self.region_size(mr) else {
                continue;
            };
            let Some(end) = pa.checked_add(size) else {
                self.error(
                    "E072",
                    &mr.loc,
                    "memory_region",
                    Some("phys_addr"),
                    format!(
                        "phys_addr {pa:#x} + size {size:#x} overflows the 64-bit address space"
                    ),
                    "fix phys_addr or size",
                );
                continue;
            };
            for (name, s, e) in &fixed {
                if pa < *e && end > *s {
                    let msg = format!(
                        "physical range [{pa:#x}..{end:#x}) overlaps memory region '{name}' [{s:#x}..{e:#x})"
                    );
                    self.error(
                        "E066",
                        &mr.loc,
                        "memory_region",
                        Some("phys_addr"),
                        msg,
                        "two regions may not name the same physical memory; share one region by mapping it twice instead",
                    );
                    break;
                }
            }
            fixed.push((mr.name.as_str(), pa, end));
            self.board_phys(mr, pa, size, end);
        }
    }

    fn board_phys(&mut self, mr: &MemoryRegion, pa: u64, size: u64, end: u64) {
        let Some(b) = self.opts.board else { return };
        if b.pa_bits > 0 && b.pa_bits < 64 && end > (1u64 << b.pa_bits) {
            self.error(
                "E081",
                &mr.loc,
                "memory_region",
                Some("phys_addr"),
                format!(
                    "[{pa:#x}..{end:#x}) goes beyond board {}'s {}-bit physical address space",
                    b.name, b.pa_bits
                ),
                format!("use an address below {:#x}", 1u64 << b.pa_bits),
            );
            return;
        }
        if b.ram_contains(pa, size) || b.device_containing(pa, size).is_some() {
            return;
        }
        // Covered by several adjacent windows together?
        let mut windows: Vec<(u64, u64)> = b
            .ram
            .iter()
            .map(|r| (r.base, r.end()))
            .chain(b.devices.iter().map(|d| (d.window.base, d.window.end())))
            .collect();
        windows.sort_unstable();
        let mut cursor = pa;
        for (s, e) in windows {
            if s <= cursor && e > cursor {
                cursor = e;
            }
        }
        if cursor >= end {
            self.warn(
                "W005",
                &mr.loc,
                "memory_region",
                Some("phys_addr"),
                format!(
                    "[{pa:#x}..{end:#x}) spans several RAM/device windows of board {}",
                    b.name
                ),
                "give each device its own memory region so each mapping grants only what is needed",
            );
            return;
        }
        let near = b
            .devices
            .iter()
            .filter(|d| d.window.base < end && d.window.end() > pa)
            .map(|d| format!("{} [{:#x}..{:#x})", d.name, d.window.base, d.window.end()))
            .collect::<Vec<_>>();
        let hint = if near.is_empty() {
            format!(
                "board {} has RAM {} and {} device windows; use an address inside one",
                b.name,
                b.ram
                    .iter()
                    .map(|r| format!("[{:#x}..{:#x})", r.base, r.end()))
                    .collect::<Vec<_>>()
                    .join(", "),
                b.devices.len()
            )
        } else {
            format!(
                "it partly overlaps {}; fit it inside the window",
                near.join(", ")
            )
        };
        self.error(
            "E080",
            &mr.loc,
            "memory_region",
            Some("phys_addr"),
            format!(
                "[{pa:#x}..{end:#x}) is neither RAM nor a device window of board {}",
                b.name
            ),
            hint,
        );
    }

    fn maps(&mut self) {
        let user_top = self.user_top();
        let mut used: HashSet<&str> = HashSet::new();
        for pd in self.pds() {
            let layout = StackLayout::new(user_top, pd.stack_size);
            self.map_space(
                &pd.maps,
                layout.stack_bottom,
                Some(layout),
                &format!("protection domain '{}'", pd.name),
            );
            used.extend(pd.maps.iter().map(|m| m.mr.as_str()));
            if let Some(vm) = &pd.virtual_machine {
                self.map_space(
                    &vm.maps,
                    user_top,
                    None,
                    &format!("virtual machine '{}'", vm.name),
                );
                used.extend(vm.maps.iter().map(|m| m.mr.as_str()));
                let hyp = self
                    .opts
                    .board
                    .is_none_or(|b| b.hypervisor || b.name == "host");
                if !hyp {
                    let name = self.opts.board.map_or("", |b| b.name);
                    self.error(
                        "E083",
                        &vm.loc,
                        "virtual_machine",
                        None,
                        format!("board {name} is not built as a hypervisor: virtual machines are disabled"),
                        "use a board whose kernel runs at EL2 (every aarch64 board except *_el1 variants)",
                    );
                }
            }
        }
        for mr in &self.sys.memory_regions {
            if !used.contains(mr.name.as_str()) {
                self.warn(
                    "W002",
                    &mr.loc,
                    "memory_region",
                    None,
                    format!("memory region '{}' is not mapped anywhere", mr.name),
                    "map it into a protection domain or virtual machine, or remove it",
                );
            }
        }
    }

    fn map_space(
        &mut self,
        maps: &'a [Map],
        max_end: u64,
        stack: Option<StackLayout>,
        space: &str,
    ) {
        let mut done: Vec<(&str, u64, u64)> = Vec::new();
        for m in maps {
            let Some(mr) = self.region(&m.mr) else {
                self.error(
                    "E059",
                    &m.loc,
                    "map",
                    Some("mr"),
                    format!("no memory region named '{}'", m.mr),
                    "declare it with <memory_region name=... size=...> or fix the name",
                );
                continue;
            };
            let ps = mr.page_size.bytes();
            if m.vaddr % ps != 0 {
                self.error(
                    "E060",
                    &m.loc,
                    "map",
                    Some("vaddr"),
                    format!(
                        "vaddr {:#x} is not aligned to region '{}''s page size {ps:#x}",
                        m.vaddr, mr.name
                    ),
                    format!(
                        "use {:#x} or {:#x}",
                        m.vaddr / ps * ps,
                        (m.vaddr / ps).saturating_add(1).saturating_mul(ps)
                    ),
                );
                continue;
            }
            let Some(size) = self.region_size(mr) else {
                // Size unknown (prefill file not found): only the start can
                // be checked.
                if m.vaddr >= max_end {
                    self.out_of_range(m, m.vaddr, None, max_end, stack, space);
                }
                continue;
            };
            let Some(end) = m.vaddr.checked_add(size) else {
                self.error(
                    "E061",
                    &m.loc,
                    "map",
                    Some("vaddr"),
                    format!(
                        "vaddr {:#x} + size {size:#x} of '{}' overflows the 64-bit address space",
                        m.vaddr, mr.name
                    ),
                    "lower vaddr",
                );
                continue;
            };
            if end > max_end {
                self.out_of_range(m, m.vaddr, Some(end), max_end, stack, space);
                continue;
            }
            if let Some(l) = stack {
                if end == l.stack_bottom {
                    self.warn(
                        "W003",
                        &m.loc,
                        "map",
                        Some("vaddr"),
                        format!(
                            "map of '{}' ends exactly at the stack bottom {end:#x}: a stack overflow would silently write into it",
                            mr.name
                        ),
                        format!(
                            "leave an unmapped guard page: end the map at or below {:#x}",
                            l.stack_bottom.saturating_sub(PAGE)
                        ),
                    );
                }
            }
            if let Some((name, s, e)) = done.iter().find(|(_, s, e)| m.vaddr < *e && end > *s) {
                let msg = format!(
                    "map of '{}' [{:#x}..{end:#x}) overlaps map of '{name}' [{s:#x}..{e:#x}) in {space}",
                    mr.name, m.vaddr
                );
                self.error(
                    "E063",
                    &m.loc,
                    "map",
                    Some("vaddr"),
                    msg,
                    format!("move it to {e:#x} or above, or below {s:#x}"),
                );
                continue;
            }
            done.push((mr.name.as_str(), m.vaddr, end));
        }
    }

    fn out_of_range(
        &mut self,
        m: &Map,
        start: u64,
        end: Option<u64>,
        max_end: u64,
        stack: Option<StackLayout>,
        space: &str,
    ) {
        let range = match end {
            Some(e) => format!("[{start:#x}..{e:#x})"),
            None => format!("vaddr {start:#x}"),
        };
        let (msg, hint) = match stack {
            Some(l) => (
                format!(
                    "{range} in {space} runs into the stack [{:#x}..{:#x}) / IPC buffer {:#x}",
                    l.stack_bottom, l.stack_top, l.ipc_buffer
                ),
                format!(
                    "maps must end at or below the stack bottom {:#x}; lower vaddr (or shrink stack_size)",
                    l.stack_bottom
                ),
            ),
            None => (
                format!("{range} in {space} exceeds the address space [0..{max_end:#x})"),
                format!("guest-physical maps must end at or below {max_end:#x}"),
            ),
        };
        self.error("E062", &m.loc, "map", Some("vaddr"), msg, hint);
    }

    fn cspaces(&mut self) {
        let pds = self.pds();
        for pd in &pds {
            let Some(cs) = &pd.cspace else { continue };
            let mut slots: HashMap<u64, usize> = HashMap::new();
            for cap in &cs.caps {
                let el = match cap.kind {
                    CapKind::Tcb => "cap_tcb",
                    CapKind::Sc => "cap_sc",
                    CapKind::VSpace => "cap_vspace",
                };
                if !pds.iter().any(|p| p.name == cap.pd) {
                    self.error(
                        "E064",
                        &cap.loc,
                        el,
                        Some("pd"),
                        format!("no protection domain named '{}'", cap.pd),
                        "name an existing <protection_domain>",
                    );
                }
                if let Some(line) = slots.get(&cap.slot) {
                    self.error(
                        "E065",
                        &cap.loc,
                        el,
                        Some("slot"),
                        format!(
                            "slot {} of '{}' is already used at line {line}",
                            cap.slot, pd.name
                        ),
                        "give each cap its own slot",
                    );
                } else {
                    slots.insert(cap.slot, cap.loc.elem.line as usize);
                }
            }
        }
    }

    fn setvars(&mut self) {
        let pds = self.pds();
        // Every symbol a PD's image gets patched with, per PD, in order.
        let mut per_pd: HashMap<&str, Vec<(&str, &Loc, &'static str, &'static str)>> =
            HashMap::new();
        for pd in &pds {
            let v = per_pd.entry(pd.name.as_str()).or_default();
            for m in &pd.maps {
                for (s, a) in [
                    (&m.setvar_vaddr, "setvar_vaddr"),
                    (&m.setvar_size, "setvar_size"),
                    (&m.setvar_prefill_size, "setvar_prefill_size"),
                ] {
                    if let Some(s) = s {
                        v.push((s.as_str(), &m.loc, "map", a));
                    }
                }
            }
            for i in &pd.irqs {
                if let Some(s) = &i.setvar_id {
                    v.push((s.as_str(), &i.loc, "irq", "setvar_id"));
                }
            }
            for sv in &pd.setvars {
                v.push((sv.symbol.as_str(), &sv.loc, "setvar", "symbol"));
            }
            for c in &pd.children {
                if let Some(s) = &c.setvar_id {
                    v.push((s.as_str(), &c.loc, "protection_domain", "setvar_id"));
                }
            }
            if let Some(vm) = &pd.virtual_machine {
                for vc in &vm.vcpus {
                    if let Some(s) = &vc.setvar_id {
                        v.push((s.as_str(), &vc.loc, "vcpu", "setvar_id"));
                    }
                }
            }
        }
        for ch in &self.sys.channels {
            for e in &ch.ends {
                if let (Some(s), Some(v)) = (&e.setvar_id, per_pd.get_mut(e.pd.as_str())) {
                    v.push((s.as_str(), &e.loc, "end", "setvar_id"));
                }
            }
        }
        for pd in &pds {
            let Some(list) = per_pd.get(pd.name.as_str()) else {
                continue;
            };
            let mut seen: HashMap<&str, u32> = HashMap::new();
            for (sym, loc, el, attr) in list {
                if let Some(line) = seen.get(sym) {
                    self.out.push(diag(
                        Severity::Error,
                        "E036",
                        loc,
                        el,
                        Some(attr),
                        format!(
                            "symbol '{sym}' of '{}' is already set at line {line}",
                            pd.name
                        ),
                        "each symbol may be patched once; use another variable",
                    ));
                } else {
                    seen.insert(sym, loc.elem.line);
                }
            }
            for sv in &pd.setvars {
                if self.region(&sv.region_paddr).is_none() {
                    self.error(
                        "E068",
                        &sv.loc,
                        "setvar",
                        Some("region_paddr"),
                        format!("no memory region named '{}'", sv.region_paddr),
                        "name a declared <memory_region>",
                    );
                }
            }
            for m in &pd.maps {
                if m.setvar_prefill_size.is_some() {
                    if let Some(mr) = self.region(&m.mr) {
                        if !matches!(mr.prefill, Some(Prefill::Path(_))) {
                            self.error(
                                "E069",
                                &m.loc,
                                "map",
                                Some("setvar_prefill_size"),
                                format!("region '{}' has no prefill_path", mr.name),
                                "add prefill_path to the region, or drop setvar_prefill_size",
                            );
                        }
                    }
                }
            }
        }
    }

    fn images(&mut self) {
        let host = self.opts.board.is_some_and(|b| b.name == "host");
        let user_top = self.user_top();
        for pd in self.pds() {
            let p = &pd.program_image.path;
            let Some(found) = self.find_file(p) else {
                if !self.opts.require_images {
                    continue;
                }
                self.error(
                    "E071",
                    &pd.program_image.loc,
                    "program_image",
                    Some("path"),
                    format!("program image '{p}' not found on the search path"),
                    search_hint(&self.opts.search_paths),
                );
                continue;
            };
            // Test-only PDs built with a protection removed (the runtime's
            // `protection-removed-*` features) must never reach a system.
            if let Some(what) = protection_removed_marker(&found) {
                self.error(
                    "E078",
                    &pd.program_image.loc,
                    "program_image",
                    Some("path"),
                    format!(
                        "'{}' was built with a protection removed ({what}): a test-only variant",
                        found.display()
                    ),
                    "rebuild the PD without the runtime's protection-removed-* features",
                );
            }
            // Host-board PDs are native Linux executables, loaded wherever
            // Linux puts them: their segments say nothing about the maps.
            if !host {
                self.image_segments(pd, &found, user_top);
            }
        }
    }

    fn image_segments(&mut self, pd: &ProtectionDomain, file: &Path, user_top: u64) {
        let img = &pd.program_image;
        let info = match crate::elf::read_image(file) {
            Ok(i) => i,
            Err(e) => {
                self.error(
                    "E077",
                    &img.loc,
                    "program_image",
                    Some("path"),
                    format!("'{}' is not a usable program image: {e}", file.display()),
                    "point path at the PD's linked AArch64 ELF64 executable",
                );
                return;
            }
        };
        if info.machine != crate::elf::EM_AARCH64 {
            self.error(
                "E077",
                &img.loc,
                "program_image",
                Some("path"),
                format!(
                    "'{}' is built for ELF machine {}, not AArch64 ({})",
                    file.display(),
                    info.machine,
                    crate::elf::EM_AARCH64
                ),
                "build the PD for aarch64-unknown-none (or the board's target)",
            );
            return;
        }
        let stack_bottom = StackLayout::new(user_top, pd.stack_size).stack_bottom;
        let pages: Vec<(u64, u64)> = info
            .segments
            .iter()
            .map(|&(s, e)| {
                (
                    s & !(PAGE - 1),
                    e.checked_next_multiple_of(PAGE).unwrap_or(u64::MAX),
                )
            })
            .collect();
        for &(s, e) in &pages {
            if e > stack_bottom {
                self.error(
                    "E076",
                    &img.loc,
                    "program_image",
                    Some("path"),
                    format!(
                        "segment [{s:#x}..{e:#x}) of '{}' runs into the stack (bottom {stack_bottom:#x})",
                        file.display()
                    ),
                    "link the image lower (Microkit links at 0x200000) or shrink stack_size",
                );
            }
        }
        for m in &pd.maps {
            let Some(mr) = self.region(&m.mr) else {
                continue;
            };
            let Some(size) = self.region_size(mr) else {
                continue;
            };
            let Some(end) = m.vaddr.checked_add(size) else {
                continue;
            };
            if let Some((s, e)) = pages.iter().find(|(s, e)| m.vaddr < *e && end > *s) {
                self.error(
                    "E076",
                    &m.loc,
                    "map",
                    Some("vaddr"),
                    format!(
                        "map of '{}' [{:#x}..{end:#x}) overlaps the program image's segment [{s:#x}..{e:#x})",
                        mr.name, m.vaddr
                    ),
                    format!(
                        "move the map to {:#x} or above, past the image's last segment",
                        pages.iter().map(|p| p.1).max().unwrap_or(*e)
                    ),
                );
            }
        }
    }
}

fn cpu_hint(cores: u32) -> String {
    if cores == 1 {
        "non-smp configs have one core: use cpu=\"0\" (or an smp- config)".into()
    } else {
        format!("use cpu 0..={}", cores.saturating_sub(1))
    }
}

fn search_hint(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        "build it, or pass --search-path DIR".into()
    } else {
        format!(
            "searched {}; build it, or add --search-path DIR",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The first `dir/path` that is a file, for `dir` in `search_paths` in order
/// (an absolute `path` is taken as is), like the Microkit tool's lookup.
pub fn find_on_search_path(path: &str, search_paths: &[PathBuf]) -> Option<PathBuf> {
    let p = Path::new(path);
    if path.is_empty() {
        return None;
    }
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    search_paths.iter().map(|d| d.join(p)).find(|f| f.is_file())
}

/// Apply every semantic rule to `sys`; returns errors and warnings in
/// source order.
pub fn check(sys: &SystemDescription, opts: &CheckOptions) -> Vec<Diagnostic> {
    let mut cx = Ctx {
        sys,
        opts,
        out: Vec::new(),
        sizes: HashMap::new(),
        regions: HashMap::new(),
    };
    for mr in &sys.memory_regions {
        cx.regions.entry(mr.name.as_str()).or_insert(mr);
    }
    cx.names_and_limits();
    cx.cpus();
    cx.domains();
    cx.irqs_and_ids();
    cx.children();
    cx.regions();
    cx.maps();
    cx.cspaces();
    cx.setvars();
    cx.images();
    let mut out = cx.out;
    out.sort_by_key(|d| d.pos);
    out
}

/// The protection a test-only PD image was built without, if it carries the
/// runtime's `BULKHEAD_PROTECTION_REMOVED=<what>` marker (section
/// `.bulkhead_protection_removed`, components/runtime/src/protection_removed.rs).
fn protection_removed_marker(file: &Path) -> Option<String> {
    const TAG: &[u8] = b"BULKHEAD_PROTECTION_REMOVED=";
    let bytes = std::fs::read(file).ok()?;
    let at = bytes.windows(TAG.len()).position(|w| w == TAG)? + TAG.len();
    let what: String = bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'_')
        .map(|b| char::from(*b))
        .collect();
    Some(if what.is_empty() {
        "unknown".into()
    } else {
        what
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_boards::{Board, Range};

    #[test]
    fn stack_layout_matches_microkit_on_40_bit_hypervisor() {
        for top in [1u64 << 40, (1u64 << 40) - 1] {
            let l = StackLayout::new(top, 0x2000);
            assert_eq!(l.ipc_buffer, 0xFF_FFFF_F000);
            assert_eq!(l.stack_top, 0xFF_FFFF_E000);
            assert_eq!(l.stack_bottom, 0xFF_FFFF_C000);
        }
    }

    static EL1_BOARD: Board = Board {
        name: "test_el1",
        description: "an EL1-only board for tests",
        ram: &[Range {
            base: 0x4000_0000,
            size: 0x4000_0000,
        }],
        devices: &[],
        irq_range: (32, 100),
        reserved_irqs: &[],
        cores: 2,
        gic: None,
        user_vaddr_top: 1 << 39,
        hypervisor: false,
        pa_bits: 40,
    };

    fn run(src: &str, board: Option<&'static Board>) -> Vec<Diagnostic> {
        let sys = crate::parse(src).unwrap();
        check(
            &sys,
            &CheckOptions {
                board,
                ..CheckOptions::default()
            },
        )
    }

    const VM: &str = r#"<system><protection_domain name="vmm"><program_image path="v.elf"/>
        <virtual_machine name="vm"><vcpu id="0"/></virtual_machine></protection_domain></system>"#;

    #[test]
    fn vm_needs_hypervisor_board() {
        let d = run(VM, Some(&EL1_BOARD));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, "E083");
        assert_eq!(d[0].pos, Pos { line: 2, col: 9 });
        assert!(run(VM, None).is_empty());
    }

    #[test]
    fn board_user_top_moves_the_stack() {
        // On a 39-bit address space the default stack bottom is 0x7F_FFFF_C000.
        let src = r#"<system><memory_region name="m" size="0x1000"/>
            <protection_domain name="a"><program_image path="a.elf"/>
            <map mr="m" vaddr="0x7F_FFFF_C000"/></protection_domain></system>"#;
        let d = run(src, Some(&EL1_BOARD));
        assert_eq!(d.iter().map(|d| d.code).collect::<Vec<_>>(), ["E062"]);
        assert!(run(src, None).is_empty());
    }

    #[test]
    fn guard_page_gap_is_not_warned() {
        let src = r#"<system><memory_region name="m" size="0x1000"/>
            <protection_domain name="a"><program_image path="a.elf"/>
            <map mr="m" vaddr="0xFF_FFFF_A000"/></protection_domain></system>"#;
        assert!(run(src, None).is_empty());
        let at_bottom = src.replace("0xFF_FFFF_A000", "0xFF_FFFF_B000");
        let d = run(&at_bottom, None);
        assert_eq!(d.iter().map(|d| d.code).collect::<Vec<_>>(), ["W003"]);
    }

    #[test]
    fn smp_without_board_does_not_guess_cores() {
        let src = r#"<system><protection_domain name="a" cpu="7"><program_image path="a.elf"/>
            </protection_domain></system>"#;
        let sys = crate::parse(src).unwrap();
        let smp = CheckOptions {
            config: bulkhead_boards::Config::parse("smp-debug").unwrap(),
            ..CheckOptions::default()
        };
        assert!(check(&sys, &smp).is_empty());
        assert_eq!(check(&sys, &CheckOptions::default())[0].code, "E037");
    }
}
