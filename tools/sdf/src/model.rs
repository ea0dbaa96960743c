//! The typed model of a Microkit system description.
//!
//! Every element keeps the position of its start tag and of each attribute it
//! was given, so that later passes (the checker, `report`, `prove`) can point
//! a user at the exact place in their file. Values are stored after parsing
//! and defaulting exactly as the Microkit tool does (see
//! `shared/reference/microkit.md`); whether an attribute was written out is
//! recorded in [`Loc::attrs`].

/// A 1-based line and column in the source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column number (in characters).
    pub col: u32,
}

/// Where an element and each of its written attributes sit in the source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loc {
    /// Position of the element's start tag (`<`).
    pub elem: Pos,
    /// Position of each attribute the source wrote, by attribute name.
    pub attrs: Vec<(String, Pos)>,
}

impl Loc {
    /// Position of attribute `name`, or of the element when it was not written.
    pub fn attr(&self, name: &str) -> Pos {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map_or(self.elem, |(_, p)| *p)
    }

    /// Whether the source wrote attribute `name` explicitly.
    pub fn has(&self, name: &str) -> bool {
        self.attrs.iter().any(|(n, _)| n == name)
    }
}

/// Access rights of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub execute: bool,
}

/// A whole system description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SystemDescription {
    /// Top-level protection domains, in source order; children are nested.
    pub protection_domains: Vec<ProtectionDomain>,
    /// Memory regions, in source order.
    pub memory_regions: Vec<MemoryRegion>,
    /// Channels, in source order.
    pub channels: Vec<Channel>,
    /// The `<domains>` schedule, if present.
    pub domain_schedule: Option<DomainSchedule>,
}

/// `<program_image>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProgramImage {
    /// `path`: the ELF file, looked up on the search path.
    pub path: String,
    /// `path_for_symbols`: an ELF with symbols for debugging, if given.
    pub path_for_symbols: Option<String>,
    /// Source location.
    pub loc: Loc,
}

/// `<protection_domain>`, top-level or nested.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProtectionDomain {
    /// `name`, unique over all PDs.
    pub name: String,
    /// `priority` 0..=254 (default 0).
    pub priority: u8,
    /// `budget` in µs (default 1000).
    pub budget: u64,
    /// `period` in µs (defaults to the budget).
    pub period: u64,
    /// `passive`.
    pub passive: bool,
    /// `stack_size` in bytes (default 0x2000).
    pub stack_size: u64,
    /// `cpu` (default 0).
    pub cpu: u32,
    /// `smc`: may issue SMC calls.
    pub smc: bool,
    /// `fpu` (default true).
    pub fpu: bool,
    /// `domain`, required iff the system has `<domains>`.
    pub domain: Option<String>,
    /// `id`: the child id, only on nested PDs.
    pub id: Option<u64>,
    /// `setvar_id` on a nested PD.
    pub setvar_id: Option<String>,
    /// The one `<program_image>`.
    pub program_image: ProgramImage,
    /// `<map>` children.
    pub maps: Vec<Map>,
    /// `<irq>` children.
    pub irqs: Vec<Irq>,
    /// `<setvar>` children.
    pub setvars: Vec<Setvar>,
    /// Nested `<protection_domain>` children.
    pub children: Vec<ProtectionDomain>,
    /// The `<virtual_machine>` child, if any.
    pub virtual_machine: Option<VirtualMachine>,
    /// The `<cspace>` child, if any.
    pub cspace: Option<CSpace>,
    /// Source location.
    pub loc: Loc,
}

/// `<map>` in a PD or VM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Map {
    /// `mr`: the memory region's name.
    pub mr: String,
    /// `vaddr` (guest-physical for a VM).
    pub vaddr: u64,
    /// `perms` (default `rw`).
    pub perms: Perms,
    /// `cached` (default true).
    pub cached: bool,
    /// `setvar_vaddr`: symbol patched with the vaddr.
    pub setvar_vaddr: Option<String>,
    /// `setvar_size`: symbol patched with the size.
    pub setvar_size: Option<String>,
    /// `setvar_prefill_size`: symbol patched with the prefill file's size.
    pub setvar_prefill_size: Option<String>,
    /// Source location.
    pub loc: Loc,
}

/// Interrupt trigger mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Trigger {
    /// Level triggered (default).
    #[default]
    Level,
    /// Edge triggered.
    Edge,
}

/// `<irq>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Irq {
    /// `irq`: the interrupt number (GIC INTID on aarch64).
    pub irq: u64,
    /// `id`: the PD-local channel id.
    pub id: u64,
    /// `trigger`.
    pub trigger: Trigger,
    /// `setvar_id`.
    pub setvar_id: Option<String>,
    /// Source location.
    pub loc: Loc,
}

/// `<setvar symbol region_paddr>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Setvar {
    /// `symbol`: an 8-byte symbol in the PD's ELF.
    pub symbol: String,
    /// `region_paddr`: the memory region whose physical address is patched in.
    pub region_paddr: String,
    /// Source location.
    pub loc: Loc,
}

/// `<virtual_machine>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VirtualMachine {
    /// `name`.
    pub name: String,
    /// `priority`.
    pub priority: u8,
    /// `budget` in µs.
    pub budget: u64,
    /// `period` in µs.
    pub period: u64,
    /// `<vcpu>` children.
    pub vcpus: Vec<Vcpu>,
    /// `<map>` children (guest-physical addresses).
    pub maps: Vec<Map>,
    /// Source location.
    pub loc: Loc,
}

/// `<vcpu>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vcpu {
    /// `id`.
    pub id: u64,
    /// `cpu` (default 0).
    pub cpu: u32,
    /// `setvar_id`.
    pub setvar_id: Option<String>,
    /// Source location.
    pub loc: Loc,
}

/// `<cspace>`: extra capabilities given to a PD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CSpace {
    /// The capabilities, in source order.
    pub caps: Vec<CSpaceCap>,
    /// Source location.
    pub loc: Loc,
}

/// Kind of a `<cspace>` capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapKind {
    /// `<cap_tcb>`.
    Tcb,
    /// `<cap_sc>`.
    Sc,
    /// `<cap_vspace>`.
    VSpace,
}

/// One `<cap_tcb|cap_sc|cap_vspace slot pd>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSpaceCap {
    /// Which object.
    pub kind: CapKind,
    /// `slot` 1..=127.
    pub slot: u64,
    /// `pd`: the PD whose object this is.
    pub pd: String,
    /// Source location.
    pub loc: Loc,
}

/// Page size of a memory region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PageSize {
    /// 4 KiB.
    #[default]
    Small,
    /// 2 MiB.
    Large,
}

impl PageSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        match self {
            PageSize::Small => 0x1000,
            PageSize::Large => 0x20_0000,
        }
    }
}

/// Where a memory region's initial contents come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prefill {
    /// `prefill_path`: a file on the search path.
    Path(String),
    /// `prefill_bootinfo`: boot information of the named kind.
    Bootinfo(String),
}

/// `<memory_region>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryRegion {
    /// `name`, unique.
    pub name: String,
    /// `size` in bytes; `None` when omitted (allowed with `prefill_path`).
    pub size: Option<u64>,
    /// `page_size`.
    pub page_size: PageSize,
    /// `phys_addr`, when fixed (device registers or carved-out RAM).
    pub phys_addr: Option<u64>,
    /// Prefill source, if any.
    pub prefill: Option<Prefill>,
    /// Source location.
    pub loc: Loc,
}

/// One `<end>` of a channel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelEnd {
    /// `pd`.
    pub pd: String,
    /// `id` 0..=61.
    pub id: u64,
    /// `pp`: this end may make protected procedure calls to the other.
    pub pp: bool,
    /// `notify` (default true): this end may notify the other.
    pub notify: bool,
    /// `setvar_id`.
    pub setvar_id: Option<String>,
    /// Source location.
    pub loc: Loc,
}

/// `<channel>` with exactly two ends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Channel {
    /// The two ends, in source order.
    pub ends: [ChannelEnd; 2],
    /// Source location.
    pub loc: Loc,
}

/// `<domains>`: the static domain schedule (single-core configs only).
///
/// Microkit 2.3 writes it as `<domains>` holding `<domain name [id]>`
/// declarations and one `<domain_schedule [start_index] [index_shift]>` of
/// `<schedule_entry domain duration>` and `<schedule_end_marker/>` elements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainSchedule {
    /// The schedule entries (`<schedule_entry>`), in schedule order.
    pub entries: Vec<DomainEntry>,
    /// Source location.
    pub loc: Loc,
    /// The `<domain name [id]>` declarations, in source order.
    pub domains: Vec<DomainDecl>,
    /// `start_index` of `<domain_schedule>` (default 0).
    pub start_index: u64,
    /// `index_shift` of `<domain_schedule>`, if given.
    pub index_shift: Option<u64>,
    /// Location of the `<domain_schedule>` element (the `<domains>` element's
    /// when it is missing).
    pub schedule_loc: Loc,
}

/// One `<domain name [id]>` declaration inside `<domains>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainDecl {
    /// `name`, referred to by `<protection_domain domain>` and schedule entries.
    pub name: String,
    /// `id`, when given (otherwise the tool assigns the lowest free id).
    pub id: Option<u64>,
    /// Source location.
    pub loc: Loc,
}

/// Unit of a schedule entry's `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DurationUnit {
    /// Microseconds (`"1000 us"`).
    #[default]
    Us,
    /// Kernel timer ticks (`"5 ticks"`).
    Ticks,
}

/// One `<schedule_entry>` (or `<schedule_end_marker/>`) of the domain schedule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainEntry {
    /// `domain`: the name of a declared domain (empty for an end marker).
    pub name: String,
    /// The number in `duration`, non-zero (0 for an end marker).
    pub length: u64,
    /// Source location.
    pub loc: Loc,
    /// The unit of `duration`.
    pub unit: DurationUnit,
    /// Whether this is a `<schedule_end_marker/>`.
    pub end_marker: bool,
}

impl SystemDescription {
    /// Every PD, parents before their children, in source order.
    pub fn all_pds(&self) -> Vec<&ProtectionDomain> {
        fn walk<'a>(pd: &'a ProtectionDomain, out: &mut Vec<&'a ProtectionDomain>) {
            out.push(pd);
            for c in &pd.children {
                walk(c, out);
            }
        }
        let mut out = Vec::new();
        for pd in &self.protection_domains {
            walk(pd, &mut out);
        }
        out
    }

    /// The parent of the PD named `name`, if it is a child.
    pub fn parent_of(&self, name: &str) -> Option<&ProtectionDomain> {
        self.all_pds()
            .into_iter()
            .find(|p| p.children.iter().any(|c| c.name == name))
    }

    /// The memory region named `name`.
    pub fn region(&self, name: &str) -> Option<&MemoryRegion> {
        self.memory_regions.iter().find(|m| m.name == name)
    }
}
