//! Validation: a parsed [`Description`] plus a board → a [`Resolved`] system
//! with every default filled in and every number range-checked, or every
//! problem found, each at its position in the description.
//!
//! Conflicts checked here (beyond ranges and syntax): more guest RAM than
//! the board has, two guests writing one partition, overlapping partitions,
//! one CAN id whitelisted twice, reserved Ethernet bandwidth over 75 % of
//! the link, duplicate MACs, two guests taking console input, a PD in the
//! safety domain sharing a core with a higher-priority PD that has no
//! budget, a device class the board lacks, more than 63 PDs, duplicate or
//! clashing names.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use bulkhead_boards::Board;
use toml::Spanned;

use crate::boards::{binding, Binding};
use crate::desc::{self, Description, Guest, Sched, Size};
use crate::diag::{Diagnostic, LineIndex};
use crate::Class;

/// Microkit's limit on protection domains.
pub const MAX_PDS: usize = 63;
/// Share of the Ethernet link that may be reserved (IEEE 802.1Qav's
/// default limit for stream reservation classes).
pub const MAX_RESERVED_PERCENT: u64 = 75;
/// Guest RAM granularity: Microkit maps guest RAM with 2 MiB pages.
pub const RAM_ALIGN: u64 = 0x20_0000;
/// Smallest guest RAM: the kernel slot (RAM + 2 MiB) and the device tree
/// (last 2 MiB) must not coincide.
pub const MIN_RAM: u64 = 0x40_0000;

/// Priority, budget and period (µs) and core of a PD or VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedR {
    /// Priority 0..=254.
    pub priority: u8,
    /// Budget in µs.
    pub budget: u64,
    /// Period in µs.
    pub period: u64,
    /// Core.
    pub cpu: u32,
}

/// Console policy of one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleR {
    /// Output prefix.
    pub prefix: String,
    /// Console input goes to this guest.
    pub input: bool,
}

/// Storage policy of one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageR {
    /// Partition name.
    pub partition: String,
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// Read-only.
    pub read_only: bool,
    /// Requests per period (0 = unlimited).
    pub ops: u32,
    /// Bytes per period (0 = unlimited).
    pub bytes: u64,
    /// Budget period in µs (0 = no budget).
    pub period_us: u32,
}

/// CAN policy of one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanR {
    /// RX filters (id, mask).
    pub filters: Vec<(u32, u32)>,
    /// TX whitelist.
    pub tx: Vec<u32>,
    /// Frames per period.
    pub frames: u32,
    /// Bits per period.
    pub bits: u32,
    /// Period in µs.
    pub period_us: u32,
}

/// Ethernet policy of one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthR {
    /// MAC address.
    pub mac: [u8; 6],
    /// VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Priority code point.
    pub pcp: u8,
    /// Reserved bandwidth in Mbit/s.
    pub reserved_mbps: u32,
}

/// Audio priority class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioClass {
    /// Preempts everything (chimes, warnings).
    Safety = 0,
    /// Ducked by safety sounds.
    Media = 1,
    /// Lowest.
    Background = 2,
}

/// One audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamR {
    /// Name.
    pub name: String,
    /// Capture (true) or playback.
    pub capture: bool,
    /// Channels.
    pub channels: u8,
    /// Rate in Hz.
    pub rate: u32,
}

/// Audio policy of one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioR {
    /// Priority class.
    pub class: AudioClass,
    /// Streams.
    pub streams: Vec<StreamR>,
}

/// One guest, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestR {
    /// Name (of the VM; the VMM is `<name>_vmm`).
    pub name: String,
    /// Index among all guests (fixes its hop slot and channel ids).
    pub index: usize,
    /// RAM in bytes.
    pub ram: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Kernel image path.
    pub kernel: Option<String>,
    /// Initrd path and size.
    pub initrd: Option<(String, u64)>,
    /// A given device tree blob (instead of the generated one).
    pub device_tree: Option<Vec<u8>>,
    /// Kernel command line.
    pub bootargs: String,
    /// The VM's scheduling (cpu = first core).
    pub vm: SchedR,
    /// The VMM's scheduling.
    pub vmm: SchedR,
    /// In the safety domain.
    pub safety: bool,
    /// Console grant.
    pub console: Option<ConsoleR>,
    /// Storage grant.
    pub storage: Option<StorageR>,
    /// CAN grant.
    pub can: Option<CanR>,
    /// Ethernet grant.
    pub eth: Option<EthR>,
    /// Audio grant.
    pub audio: Option<AudioR>,
}

impl GuestR {
    /// Whether this guest has a grant of `class`.
    pub fn uses(&self, class: Class) -> bool {
        match class {
            Class::Serial => self.console.is_some(),
            Class::Blk => self.storage.is_some(),
            Class::Eth => self.eth.is_some(),
            Class::Can => self.can.is_some(),
            Class::Snd => self.audio.is_some(),
        }
    }
}

/// A validated system for one board.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// System name.
    pub name: String,
    /// One line for humans.
    pub description: Option<String>,
    /// The board.
    pub board: &'static Board,
    /// Classes some guest uses on this board, in [`Class::ALL`] order.
    pub classes: Vec<Class>,
    /// Classes left out on this board by `[per_board.B] omit`.
    pub omitted: Vec<Class>,
    /// Guests in description order.
    pub guests: Vec<GuestR>,
    /// Driver and virtualiser scheduling per class used.
    pub services: BTreeMap<Class, (SchedR, SchedR)>,
    /// The board devices behind each class used.
    pub bindings: BTreeMap<Class, Binding>,
    /// Ethernet link speed.
    pub link_mbps: u32,
    /// Host resources.
    pub host: desc::HostResources,
}

/// Default (driver, virtualiser) scheduling per class: drivers above
/// virtualisers above VMMs, CAN first in each tier (it carries the safety
/// traffic), every one budgeted.
fn default_service(class: Class) -> (SchedR, SchedR) {
    let s = |priority, budget| SchedR {
        priority,
        budget,
        period: 1000,
        cpu: 0,
    };
    match class {
        Class::Can => (s(200, 50), s(160, 50)),
        Class::Eth => (s(195, 100), s(155, 100)),
        Class::Blk => (s(190, 50), s(150, 50)),
        Class::Snd => (s(185, 50), s(145, 50)),
        Class::Serial => (s(180, 50), s(140, 50)),
    }
}

/// Something that runs: for the scheduling check.
struct Runner {
    name: String,
    sched: SchedR,
    cores: Range<u32>,
    safety: bool,
    span: Range<usize>,
}

struct Cx<'s> {
    idx: LineIndex<'s>,
    diags: Vec<Diagnostic>,
}

impl Cx<'_> {
    fn err(&mut self, span: &Range<usize>, msg: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::new(self.idx.pos(span.start), msg, hint));
    }

    /// `v` in `lo..=hi`, or an error naming `what`.
    fn int(&mut self, v: &Spanned<i64>, lo: i64, hi: i64, what: &str) -> Option<u64> {
        let n = *v.get_ref();
        if n < lo || n > hi {
            self.err(
                &v.span(),
                format!("{what} {n} is out of range"),
                format!("{what} must be between {lo} and {hi}"),
            );
            return None;
        }
        u64::try_from(n).ok()
    }

    fn opt_int(
        &mut self,
        v: &Option<Spanned<i64>>,
        lo: i64,
        hi: i64,
        what: &str,
    ) -> Option<Option<u64>> {
        match v {
            None => Some(None),
            Some(v) => self.int(v, lo, hi, what).map(Some),
        }
    }

    /// A scheduling block with defaults.
    fn sched(&mut self, s: Option<&Sched>, def: SchedR, cores: u32, span: &Range<usize>) -> SchedR {
        let Some(s) = s else { return def };
        let priority = self.opt_int(&s.priority, 0, 254, "priority").flatten();
        let period = self
            .opt_int(&s.period, 1, i64::from(u32::MAX), "period")
            .flatten();
        let budget = self
            .opt_int(&s.budget, 1, i64::from(u32::MAX), "budget")
            .flatten();
        let cpu = self
            .opt_int(&s.cpu, 0, i64::from(cores) - 1, "cpu")
            .flatten();
        let mut r = def;
        if let Some(p) = priority {
            r.priority = u8::try_from(p).unwrap_or(u8::MAX);
        }
        if let Some(p) = period {
            r.period = p;
            // A new period without a budget keeps the default's share.
            if budget.is_none() && def.budget >= def.period {
                r.budget = p;
            }
        }
        if let Some(b) = budget {
            r.budget = b;
        }
        if let Some(c) = cpu {
            r.cpu = u32::try_from(c).unwrap_or(0);
        }
        if r.budget > r.period {
            let at = s.budget.as_ref().map_or(span.clone(), Spanned::span);
            self.err(
                &at,
                format!(
                    "budget {} µs is longer than the period {} µs",
                    r.budget, r.period
                ),
                "the budget is the time per period: make it at most the period",
            );
        }
        r
    }
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && n.len() <= 32
}

/// Validates `d` for `board_name`; `src` is the description text (for
/// positions), `base` the directory relative paths in it are relative to.
pub fn resolve(
    d: &Description,
    src: &str,
    board_name: &str,
    board_span: Option<Range<usize>>,
    base: &std::path::Path,
) -> Result<Resolved, Vec<Diagnostic>> {
    let mut cx = Cx {
        idx: LineIndex::new(src),
        diags: Vec::new(),
    };
    let whole = 0..0;
    let Some(board) = bulkhead_boards::board(board_name) else {
        let names: Vec<&str> = bulkhead_boards::BOARDS.iter().map(|b| b.name).collect();
        cx.err(
            board_span.as_ref().unwrap_or(&whole),
            format!("unknown board `{board_name}`"),
            format!("boards: {}", names.join(", ")),
        );
        return Err(cx.diags);
    };
    let cores = board.cores;

    // Per-board omissions.
    let mut omitted: BTreeSet<Class> = BTreeSet::new();
    for (name, pb) in &d.per_board {
        if bulkhead_boards::board(name).is_none() {
            cx.err(
                &pb.span(),
                format!("unknown board `{name}` in [per_board]"),
                "use a board name from `boards`",
            );
        }
        for o in &pb.get_ref().omit {
            match Class::from_grant(o.get_ref()) {
                Some(c) if name == board_name => {
                    omitted.insert(c);
                }
                Some(_) => {}
                None => cx.err(
                    &o.span(),
                    format!("unknown device class `{}`", o.get_ref()),
                    "classes: console, storage, ethernet, can, audio",
                ),
            }
        }
    }

    // Partitions.
    let mut parts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut spans: Vec<(u64, u64, String, Range<usize>)> = Vec::new();
    for p in &d.partition {
        let name = p.name.get_ref();
        let (Size(start), Size(size)) = (*p.start.get_ref(), *p.size.get_ref());
        if parts.contains_key(name) {
            cx.err(
                &p.name.span(),
                format!("partition `{name}` is defined twice"),
                "give each partition its own name",
            );
            continue;
        }
        if start % 512 != 0 {
            cx.err(
                &p.start.span(),
                format!("partition start {start:#x} is not a multiple of 512"),
                "partitions start on a sector boundary",
            );
        }
        if size == 0 || size % 512 != 0 {
            cx.err(
                &p.size.span(),
                format!("partition size {size:#x} is not a non-zero multiple of 512"),
                "partitions are whole sectors",
            );
        }
        let end = start.saturating_add(size);
        for (s, e, other, _) in &spans {
            if start < *e && *s < end {
                cx.err(
                    &p.start.span(),
                    format!("partition `{name}` [{start:#x}..{end:#x}) overlaps partition `{other}` [{s:#x}..{e:#x})"),
                    "partitions must not overlap: move or shrink one",
                );
            }
        }
        spans.push((start, end, name.clone(), p.start.span()));
        parts.insert(name.clone(), (start, size));
    }

    let link_mbps = *d.ethernet.link_mbps.get_ref();
    if link_mbps == 0 {
        cx.err(
            &d.ethernet.link_mbps.span(),
            "link speed 0 Mbit/s",
            "give the link speed in Mbit/s, e.g. 1000",
        );
    }

    // Guests.
    let mut guests = Vec::new();
    let mut names: BTreeMap<String, Range<usize>> = BTreeMap::new();
    let mut writers: BTreeMap<String, String> = BTreeMap::new();
    let mut can_ids: BTreeMap<u32, String> = BTreeMap::new();
    let mut macs: BTreeMap<[u8; 6], String> = BTreeMap::new();
    let mut reserved_total: u64 = 0;
    let mut input_guest: Option<String> = None;
    let mut ram_total: u64 = 0;
    let mut can_controller: Option<(String, String)> = None;
    let mut first_grant: BTreeMap<Class, Range<usize>> = BTreeMap::new();
    let ram_avail: u64 = board.ram.iter().map(|r| r.size).sum();
    let biggest_bank = board.ram.iter().map(|r| r.size).max().unwrap_or(0);
    let mut pd_count = 0usize;
    let mut classes_seen: BTreeSet<Class> = BTreeSet::new();
    let mut too_many = false;

    for (index, g) in d.guest.iter().enumerate() {
        let name = g.name.get_ref().clone();
        if !valid_name(&name) {
            cx.err(
                &g.name.span(),
                format!("guest name `{name}` is not valid"),
                "use 1 to 32 of a-z, 0-9 and _, starting with a letter",
            );
        } else if name == "drv"
            || ["_vmm", "_virt", "_driver"]
                .iter()
                .any(|s| name.ends_with(s))
            || Class::ALL.iter().any(|c| c.name() == name)
        {
            cx.err(
                &g.name.span(),
                format!("guest name `{name}` clashes with generated names"),
                "`drv`, class names and names ending in _vmm, _virt or _driver are taken",
            );
        }
        if let Some(prev) = names.get(&name) {
            let p = cx.idx.pos(prev.start);
            cx.err(
                &g.name.span(),
                format!("duplicate guest name `{name}` (first at line {})", p.line),
                "give every guest its own name",
            );
        }
        names.insert(name.clone(), g.name.span());

        let Size(ram) = *g.ram.get_ref();
        if ram == 0 || ram % RAM_ALIGN != 0 {
            cx.err(
                &g.ram.span(),
                format!("guest RAM {ram:#x} is not a non-zero multiple of 2 MiB"),
                "Microkit maps guest RAM in 2 MiB pages; round it up",
            );
        } else if ram < MIN_RAM {
            cx.err(
                &g.ram.span(),
                format!("guest RAM {} MiB is too small", ram >> 20),
                "a guest needs at least 4 MiB: the kernel slot at RAM + 2 MiB and the device tree in the last 2 MiB must not coincide",
            );
        }
        if !board.ram.is_empty() {
            ram_total = ram_total.saturating_add(ram);
            if ram > biggest_bank {
                cx.err(&g.ram.span(), format!("guest `{name}` asks for {} MiB of RAM, more than the largest RAM bank of {} ({} MiB)", ram >> 20, board.name, biggest_bank >> 20), "a guest's RAM must fit in one bank: give it less");
            } else if ram_total > ram_avail {
                cx.err(
                    &g.ram.span(),
                    format!(
                        "guests ask for {} MiB of RAM in total, more than {} has ({} MiB)",
                        ram_total >> 20,
                        board.name,
                        ram_avail >> 20
                    ),
                    "give the guests less RAM",
                );
            }
        }
        let vcpus = cx
            .opt_int(&g.vcpus, 1, i64::from(cores), "vcpus")
            .flatten()
            .unwrap_or(1);
        let vcpus = u32::try_from(vcpus).unwrap_or(1);

        let gspan = g.name.span();
        let vm_sched = guest_vm_sched(&mut cx, g, cores, &gspan);
        if u64::from(vm_sched.cpu) + u64::from(vcpus) > u64::from(cores) {
            let at = g.cpu.as_ref().map_or(gspan.clone(), Spanned::span);
            cx.err(
                &at,
                format!(
                    "vCPUs {vcpus} from core {} run past the board's {cores} cores",
                    vm_sched.cpu
                ),
                "vCPU i runs on core cpu + i: lower cpu or vcpus",
            );
        }
        let vmm_def = SchedR {
            priority: vm_sched.priority.saturating_add(10).min(254),
            budget: 500,
            period: 10_000,
            cpu: vm_sched.cpu,
        };
        let vmm_span = g.vmm.as_ref().map_or(gspan.clone(), Spanned::span);
        let vmm = cx.sched(
            g.vmm.as_ref().map(Spanned::get_ref),
            vmm_def,
            cores,
            &vmm_span,
        );
        pd_count += 1;

        let initrd = match &g.initrd {
            None => None,
            Some(p) => match std::fs::metadata(base.join(p.get_ref())) {
                Ok(m) if m.len() > (ram / 2).saturating_sub(RAM_ALIGN) => {
                    cx.err(
                        &p.span(),
                        format!("initrd `{}` ({} bytes) does not fit between RAM + RAM/2 and the device tree", p.get_ref(), m.len()),
                        "give the guest more RAM (the initrd may use RAM/2 - 2 MiB)",
                    );
                    None
                }
                Ok(m) => Some((p.get_ref().clone(), m.len())),
                Err(e) => {
                    cx.err(&p.span(), format!("cannot read initrd `{}`: {e}", p.get_ref()), "the initrd's size goes into the device tree: give a path relative to the description");
                    None
                }
            },
        };

        let device_tree = match &g.device_tree {
            None => None,
            Some(p) => match std::fs::read(base.join(p.get_ref())) {
                Ok(b) => match check_dtb(&b) {
                    Ok(()) => Some(b),
                    Err(why) => {
                        cx.err(&p.span(), format!("`{}` is not a device tree blob: {why}", p.get_ref()), "give a .dtb (dtc -I dts -O dtb), or drop device_tree to have one generated");
                        None
                    }
                },
                Err(e) => {
                    cx.err(
                        &p.span(),
                        format!("cannot read device tree `{}`: {e}", p.get_ref()),
                        "give a path relative to the description",
                    );
                    None
                }
            },
        };

        let mut gr = GuestR {
            name: name.clone(),
            index,
            ram,
            vcpus,
            kernel: g.kernel.as_ref().map(|k| k.get_ref().clone()),
            initrd,
            device_tree,
            bootargs: g.bootargs.clone().unwrap_or_default(),
            vm: vm_sched,
            vmm,
            safety: g.safety,
            console: None,
            storage: None,
            can: None,
            eth: None,
            audio: None,
        };

        // Grants: class present on the board unless omitted there.
        let mut class_ok = |cx: &mut Cx, class: Class, span: Range<usize>| -> bool {
            if omitted.contains(&class) {
                return false;
            }
            if binding(board, class, None).is_err() {
                cx.err(
                    &span,
                    format!(
                        "board {} has no {} device, but guest `{name}` is granted {}",
                        board.name,
                        class.human(),
                        class.grant()
                    ),
                    format!(
                        "remove the grant, or add `omit = [\"{}\"]` under [per_board.{}]",
                        class.grant(),
                        board.name
                    ),
                );
                return false;
            }
            classes_seen.insert(class);
            first_grant.entry(class).or_insert(span);
            true
        };

        if let Some(c) = &g.console {
            if class_ok(&mut cx, Class::Serial, c.span()) {
                let prefix = c
                    .get_ref()
                    .prefix
                    .as_ref()
                    .map_or(name.clone(), |p| p.get_ref().clone());
                if prefix.len() > 15 {
                    let at = c.get_ref().prefix.as_ref().map_or(c.span(), Spanned::span);
                    cx.err(
                        &at,
                        format!("console prefix `{prefix}` is longer than 15 bytes"),
                        "shorten it",
                    );
                }
                let input = c.get_ref().input.as_ref().is_some_and(|i| *i.get_ref());
                if input {
                    if let Some(other) = &input_guest {
                        let at = c.get_ref().input.as_ref().map_or(c.span(), Spanned::span);
                        cx.err(
                            &at,
                            format!("console input already goes to guest `{other}`"),
                            "console input goes to one guest: set input = true on one only",
                        );
                    }
                    input_guest = Some(name.clone());
                }
                gr.console = Some(ConsoleR { prefix, input });
            }
        }
        if let Some(s) = &g.storage {
            if class_ok(&mut cx, Class::Blk, s.span()) {
                let sg = s.get_ref();
                let pname = sg.partition.get_ref();
                match parts.get(pname) {
                    None => cx.err(
                        &sg.partition.span(),
                        format!("no partition named `{pname}`"),
                        "define it in a [[partition]] table",
                    ),
                    Some(&(start, size)) => {
                        if !sg.read_only {
                            if let Some(other) = writers.get(pname) {
                                cx.err(&sg.partition.span(), format!("guests `{other}` and `{name}` both write partition `{pname}`"), "at most one guest may write a partition: make the other grants read_only = true");
                            } else {
                                writers.insert(pname.clone(), name.clone());
                            }
                        }
                        let (mut ops, mut bytes, mut period_us) = (0, 0, 0);
                        if let Some(b) = &sg.budget {
                            ops = cx.int(&b.ops, 1, i64::from(u32::MAX), "ops").unwrap_or(1);
                            period_us = cx
                                .int(&b.period_us, 1, i64::from(u32::MAX), "period_us")
                                .unwrap_or(1);
                            bytes = b.bytes.get_ref().0;
                            if bytes == 0 {
                                cx.err(
                                    &b.bytes.span(),
                                    "an I/O budget of 0 bytes",
                                    "give bytes per period, or drop the budget for no limit",
                                );
                            }
                        }
                        gr.storage = Some(StorageR {
                            partition: pname.clone(),
                            start,
                            size,
                            read_only: sg.read_only,
                            ops: u32::try_from(ops).unwrap_or(u32::MAX),
                            bytes,
                            period_us: u32::try_from(period_us).unwrap_or(u32::MAX),
                        });
                    }
                }
            }
        }
        if let Some(c) = &g.can {
            if class_ok(&mut cx, Class::Can, c.span()) {
                let cg = c.get_ref();
                if let Some(ctl) = &cg.controller {
                    match &can_controller {
                        Some((other, who)) if other != ctl.get_ref() => cx.err(
                            &ctl.span(),
                            format!(
                                "guest `{who}` uses CAN controller `{other}`, guest `{name}` `{}`",
                                ctl.get_ref()
                            ),
                            "one CAN driver per system: give every guest the same controller",
                        ),
                        _ => {
                            if let Err(msg) = binding(board, Class::Can, Some(ctl.get_ref())) {
                                cx.err(
                                    &ctl.span(),
                                    msg,
                                    "name a CAN device of the board (bulkhead_boards)",
                                );
                            }
                            can_controller = Some((ctl.get_ref().clone(), name.clone()));
                        }
                    }
                }
                const MAX_ID: i64 = 0x1fff_ffff;
                let mut filters = Vec::new();
                for f in &cg.rx_filters {
                    let id = cx.int(&f.get_ref().id, 0, MAX_ID, "CAN filter id");
                    let mask = cx.int(&f.get_ref().mask, 0, MAX_ID, "CAN filter mask");
                    if let (Some(id), Some(mask)) = (id, mask) {
                        if id & !mask != 0 {
                            cx.err(
                                &f.get_ref().id.span(),
                                format!(
                                    "CAN filter id {id:#x} has bits outside its mask {mask:#x}"
                                ),
                                "those bits can never match: clear them in id or set them in mask",
                            );
                        }
                        filters.push((
                            u32::try_from(id).unwrap_or(0),
                            u32::try_from(mask).unwrap_or(0),
                        ));
                    }
                }
                let mut tx = Vec::new();
                for t in &cg.tx_whitelist {
                    let Some(id) = cx.int(t, 0, MAX_ID, "CAN id") else {
                        continue;
                    };
                    let id = u32::try_from(id).unwrap_or(0);
                    if let Some(other) = can_ids.get(&id) {
                        cx.err(
                            &t.span(),
                            format!("CAN id {id:#x} is already whitelisted for guest `{other}`"),
                            "each CAN id has one sender: remove it from one guest's tx_whitelist",
                        );
                    } else {
                        can_ids.insert(id, name.clone());
                    }
                    tx.push(id);
                }
                let b = &cg.budget;
                let frames = cx
                    .int(&b.frames, 1, i64::from(u32::MAX), "frames")
                    .unwrap_or(1);
                let bits = cx.int(&b.bits, 1, i64::from(u32::MAX), "bits").unwrap_or(1);
                let period_us = cx
                    .int(&b.period_us, 1, i64::from(u32::MAX), "period_us")
                    .unwrap_or(1);
                // The shortest classic CAN frame (no data) is 47 bits.
                if bits < frames.saturating_mul(47) {
                    cx.err(&b.bits.span(), format!("{bits} bits per period cannot carry {frames} frames (a frame is at least 47 bits)"), "raise bits or lower frames");
                }
                gr.can = Some(CanR {
                    filters,
                    tx,
                    frames: u32::try_from(frames).unwrap_or(u32::MAX),
                    bits: u32::try_from(bits).unwrap_or(u32::MAX),
                    period_us: u32::try_from(period_us).unwrap_or(u32::MAX),
                });
            }
        }
        if let Some(e) = &g.ethernet {
            if class_ok(&mut cx, Class::Eth, e.span()) {
                let eg = e.get_ref();
                let mac = match parse_mac(eg.mac.get_ref()) {
                    None => {
                        cx.err(
                            &eg.mac.span(),
                            format!("`{}` is not a MAC address", eg.mac.get_ref()),
                            "write six hex octets: 02:00:00:00:00:01",
                        );
                        [0; 6]
                    }
                    Some(m) if m[0] & 1 != 0 || m == [0; 6] => {
                        cx.err(&eg.mac.span(), format!("MAC {} is not a unicast address", eg.mac.get_ref()), "the first octet must be even (bit 0 clear); use a locally administered address like 02:…");
                        m
                    }
                    Some(m) => {
                        if let Some(other) = macs.get(&m) {
                            cx.err(
                                &eg.mac.span(),
                                format!("MAC {} is already guest `{other}`'s", eg.mac.get_ref()),
                                "give every guest its own MAC",
                            );
                        }
                        macs.insert(m, name.clone());
                        m
                    }
                };
                let vlan = cx.opt_int(&eg.vlan, 1, 4094, "VLAN id").flatten();
                let pcp = cx.opt_int(&eg.pcp, 0, 7, "PCP").flatten().unwrap_or(0);
                let reserved = cx
                    .opt_int(&eg.reserved_mbps, 0, i64::from(u32::MAX), "reserved_mbps")
                    .flatten()
                    .unwrap_or(0);
                reserved_total = reserved_total.saturating_add(reserved);
                let limit = u64::from(link_mbps) * MAX_RESERVED_PERCENT / 100;
                if reserved > 0 && reserved_total > limit {
                    let at = eg.reserved_mbps.as_ref().map_or(e.span(), Spanned::span);
                    cx.err(&at, format!("reserved Ethernet bandwidth totals {reserved_total} Mbit/s, over {MAX_RESERVED_PERCENT} % of the {link_mbps} Mbit/s link ({limit} Mbit/s)"), "802.1Qav leaves at least 25 % for best-effort traffic: reserve less");
                }
                gr.eth = Some(EthR {
                    mac,
                    vlan: vlan.map(|v| u16::try_from(v).unwrap_or(0)),
                    pcp: u8::try_from(pcp).unwrap_or(0),
                    reserved_mbps: u32::try_from(reserved).unwrap_or(u32::MAX),
                });
            }
        }
        if let Some(a) = &g.audio {
            if class_ok(&mut cx, Class::Snd, a.span()) {
                let ag = a.get_ref();
                let class = match ag.priority_class.get_ref().as_str() {
                    "safety" => AudioClass::Safety,
                    "media" => AudioClass::Media,
                    "background" => AudioClass::Background,
                    other => {
                        cx.err(
                            &ag.priority_class.span(),
                            format!("unknown audio priority class `{other}`"),
                            "classes: safety, media, background",
                        );
                        AudioClass::Background
                    }
                };
                if ag.streams.is_empty() {
                    cx.err(
                        &a.span(),
                        "an audio grant with no streams",
                        "add at least one [[guest.audio.streams]]",
                    );
                }
                let mut streams: Vec<StreamR> = Vec::new();
                for s in &ag.streams {
                    let s = s.get_ref();
                    let sname = s.name.get_ref().clone();
                    if sname.is_empty() || sname.len() > 15 {
                        cx.err(
                            &s.name.span(),
                            format!("stream name `{sname}` must be 1 to 15 bytes"),
                            "shorten it",
                        );
                    }
                    if streams.iter().any(|o| o.name == sname) {
                        cx.err(
                            &s.name.span(),
                            format!("stream `{sname}` is defined twice"),
                            "give each stream its own name",
                        );
                    }
                    let capture = match s.direction.get_ref().as_str() {
                        "playback" => false,
                        "capture" => true,
                        other => {
                            cx.err(
                                &s.direction.span(),
                                format!("unknown stream direction `{other}`"),
                                "use playback or capture",
                            );
                            false
                        }
                    };
                    let channels = cx.int(&s.channels, 1, 8, "channels").unwrap_or(1);
                    let rate = *s.rate.get_ref();
                    const RATES: [i64; 8] =
                        [8000, 16000, 22050, 32000, 44100, 48000, 96000, 192000];
                    if !RATES.contains(&rate) {
                        cx.err(
                            &s.rate.span(),
                            format!("sample rate {rate} Hz is not supported"),
                            "rates: 8000, 16000, 22050, 32000, 44100, 48000, 96000, 192000",
                        );
                    }
                    streams.push(StreamR {
                        name: sname,
                        capture,
                        channels: u8::try_from(channels).unwrap_or(1),
                        rate: u32::try_from(rate).unwrap_or(0),
                    });
                }
                gr.audio = Some(AudioR { class, streams });
            }
        }
        let services = 2 * classes_seen.len();
        if !too_many && pd_count + services > MAX_PDS {
            too_many = true;
            cx.err(&g.name.span(), format!("guest `{name}` makes {} PDs, more than Microkit's {MAX_PDS}", pd_count + services), "each guest has a VMM PD and each class used a driver and a virtualiser: use fewer guests");
        }
        guests.push(gr);
    }

    // Services.
    let classes: Vec<Class> = Class::ALL
        .iter()
        .copied()
        .filter(|c| classes_seen.contains(c))
        .collect();
    let mut services = BTreeMap::new();
    let mut bindings = BTreeMap::new();
    for &c in &classes {
        let (mut drv, mut virt) = default_service(c);
        let span = first_grant.get(&c).cloned().unwrap_or(0..0);
        if let Some(s) = d.services.get(c.grant()) {
            let sp = s.span();
            drv = cx.sched(s.get_ref().driver.as_ref(), drv, cores, &sp);
            virt = cx.sched(s.get_ref().virt.as_ref(), virt, cores, &sp);
        }
        services.insert(c, (drv, virt));
        let ctl = if c == Class::Can {
            can_controller.as_ref().map(|(n, _)| n.as_str())
        } else {
            None
        };
        match binding(board, c, ctl) {
            Ok(b) => {
                bindings.insert(c, b);
            }
            Err(msg) => cx.err(&span, msg, "name a device of the board"),
        }
    }
    for (key, s) in &d.services {
        if Class::from_grant(key).is_none() {
            cx.err(
                &s.span(),
                format!("unknown device class `{key}` in [services]"),
                "classes: console, storage, ethernet, can, audio",
            );
        }
    }

    // Everything that runs, for the scheduling-isolation check.
    let mut runners = Vec::new();
    for (g, dg) in guests.iter().zip(&d.guest) {
        runners.push(Runner {
            name: g.name.clone(),
            sched: g.vm,
            cores: g.vm.cpu..g.vm.cpu + g.vcpus,
            safety: g.safety,
            span: dg.priority.as_ref().map_or(dg.name.span(), Spanned::span),
        });
        runners.push(Runner {
            name: format!("{}_vmm", g.name),
            sched: g.vmm,
            cores: g.vmm.cpu..g.vmm.cpu + 1,
            safety: g.safety,
            span: dg.vmm.as_ref().map_or(dg.name.span(), Spanned::span),
        });
    }
    for (c, (drv, virt)) in &services {
        let span = d.services.get(c.grant()).map_or_else(
            || first_grant.get(c).cloned().unwrap_or(0..0),
            Spanned::span,
        );
        for (suffix, s) in [("driver", drv), ("virt", virt)] {
            runners.push(Runner {
                name: format!("{}_{suffix}", c.name()),
                sched: *s,
                cores: s.cpu..s.cpu + 1,
                safety: false,
                span: span.clone(),
            });
        }
    }
    for s in runners.iter().filter(|r| r.safety) {
        for o in &runners {
            let shared = o.cores.start < s.cores.end && s.cores.start < o.cores.end;
            if shared && o.sched.priority > s.sched.priority && o.sched.budget >= o.sched.period {
                cx.err(
                    &o.span,
                    format!(
                        "`{}` (priority {}, no budget) shares core {} with `{}` of the safety domain (priority {}) and can starve it",
                        o.name, o.sched.priority, o.cores.start.max(s.cores.start), s.name, s.sched.priority
                    ),
                    format!("give `{}` a budget below its period, a priority below {}, or another core", o.name, s.sched.priority),
                );
            }
        }
    }

    // Memory besides guest RAM: rings, DMA and configuration pages.
    if !board.ram.is_empty() && cx.diags.is_empty() {
        let extra = crate::layout::shared_bytes(&guests, &classes, &bindings);
        if ram_total.saturating_add(extra) > ram_avail {
            cx.err(
                &d.guest.last().map_or(0..0, |g| g.ram.span()),
                format!(
                    "guests and services need {} MiB, more than {} has ({} MiB)",
                    (ram_total + extra) >> 20,
                    board.name,
                    ram_avail >> 20
                ),
                "give the guests less RAM",
            );
        }
    }

    if cx.diags.is_empty() {
        Ok(Resolved {
            name: d.name.clone().unwrap_or_else(|| "system".into()),
            description: d.description.clone(),
            board,
            classes,
            omitted: omitted.iter().copied().collect(),
            guests,
            services,
            bindings,
            link_mbps,
            host: d.host.clone(),
        })
    } else {
        cx.diags.sort_by_key(|d| d.pos);
        Err(cx.diags)
    }
}

fn guest_vm_sched(cx: &mut Cx, g: &Guest, cores: u32, span: &Range<usize>) -> SchedR {
    let s = Sched {
        priority: g.priority.clone(),
        budget: g.budget.clone(),
        period: g.period.clone(),
        cpu: g.cpu.clone(),
    };
    let def = SchedR {
        priority: 100,
        budget: 10_000,
        period: 10_000,
        cpu: 0,
    };
    cx.sched(Some(&s), def, cores, span)
}

/// `aa:bb:cc:dd:ee:ff` → bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for o in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The header checks a VMM would make before handing a blob to a guest:
/// magic, total size equal to the file, a version guests understand, and
/// blocks inside the blob.
pub fn check_dtb(b: &[u8]) -> Result<(), String> {
    let be = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let (
        Some(magic),
        Some(total),
        Some(off_struct),
        Some(off_strings),
        Some(version),
        Some(size_strings),
        Some(size_struct),
    ) = (be(0), be(4), be(8), be(12), be(20), be(32), be(36))
    else {
        return Err("shorter than a header".into());
    };
    if magic != crate::fdt::MAGIC {
        return Err(format!("magic {magic:#x}, not 0xd00dfeed"));
    }
    if u64::from(total) != b.len() as u64 {
        return Err(format!(
            "header says {total} bytes, the file has {}",
            b.len()
        ));
    }
    if version < 16 {
        return Err(format!(
            "format version {version} (guests need 16 or later)"
        ));
    }
    let inside = |off: u32, len: u32| u64::from(off) + u64::from(len) <= u64::from(total);
    if !inside(off_struct, size_struct) || !inside(off_strings, size_strings) {
        return Err("a block lies outside the blob".into());
    }
    Ok(())
}
