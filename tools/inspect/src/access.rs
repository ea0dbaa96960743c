//! The access model: who may touch what, derived from the description alone.
//!
//! This is the one place that interprets a [`SystemDescription`] as grants;
//! `report`, `graph` and (later) `prove` all read this model so that they can
//! never disagree about what a description allows.

use bulkhead_sdf::model::{
    Perms, Prefill, ProtectionDomain, SystemDescription, Trigger, VirtualMachine,
};

/// Whether an actor is a protection domain or a virtual machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// A protection domain.
    Pd,
    /// A virtual machine (guest), owned by a VMM PD.
    Vm,
}

impl ActorKind {
    /// `"pd"` or `"vm"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Pd => "pd",
            ActorKind::Vm => "vm",
        }
    }
}

/// One mapping of a region into an actor's address space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// PD or VM name.
    pub who: String,
    /// PD or VM.
    pub kind: ActorKind,
    /// Virtual address (guest-physical for a VM).
    pub vaddr: u64,
    /// Permissions.
    pub perms: Perms,
    /// Cached mapping.
    pub cached: bool,
}

/// A memory region and every mapping of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionAccess {
    /// Region name.
    pub name: String,
    /// Size in bytes, when given.
    pub size: Option<u64>,
    /// Page size in bytes.
    pub page_size: u64,
    /// Fixed physical address (device registers or carved-out RAM).
    pub phys_addr: Option<u64>,
    /// Prefill source, as written (`path:FILE` or `bootinfo:KIND`).
    pub prefill: Option<String>,
    /// Mappings in source order.
    pub mappings: Vec<Mapping>,
}

impl RegionAccess {
    /// Actors that may write the region.
    pub fn writers(&self) -> impl Iterator<Item = &Mapping> {
        self.mappings.iter().filter(|m| m.perms.write)
    }

    /// Actors that may read (or execute) but not write the region.
    pub fn readers_only(&self) -> impl Iterator<Item = &Mapping> {
        self.mappings
            .iter()
            .filter(|m| !m.perms.write && (m.perms.read || m.perms.execute))
    }
}

/// A channel between two PDs, with the direction of each capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelAccess {
    /// First end's PD.
    pub a: String,
    /// First end's channel id.
    pub a_id: u64,
    /// Second end's PD.
    pub b: String,
    /// Second end's channel id.
    pub b_id: u64,
    /// `a` may notify `b`.
    pub a_notifies_b: bool,
    /// `b` may notify `a`.
    pub b_notifies_a: bool,
    /// `a` may make protected procedure calls to `b`.
    pub a_calls_b: bool,
    /// `b` may make protected procedure calls to `a`.
    pub b_calls_a: bool,
}

/// An interrupt delivered to a PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqAccess {
    /// The PD that receives and acknowledges it.
    pub pd: String,
    /// Interrupt number.
    pub irq: u64,
    /// The PD's channel id for it.
    pub id: u64,
    /// Trigger mode.
    pub trigger: Trigger,
}

/// A virtual CPU of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuAccess {
    /// The VM.
    pub vm: String,
    /// The VMM PD that owns the VM.
    pub vmm: String,
    /// vCPU id (the VMM's channel id for its faults).
    pub id: u64,
    /// Physical core.
    pub cpu: u32,
}

/// Scheduling parameters and control relations of one actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sched {
    /// PD or VM name.
    pub name: String,
    /// PD or VM.
    pub kind: ActorKind,
    /// The PD that receives this actor's faults and may stop or restart it.
    pub parent: Option<String>,
    /// Child id (PDs) under the parent.
    pub child_id: Option<u64>,
    /// Priority.
    pub priority: u8,
    /// Budget in µs.
    pub budget: u64,
    /// Period in µs.
    pub period: u64,
    /// Passive PD (runs only on its callers' budget).
    pub passive: bool,
    /// Core (for a VM: the cores of its vCPUs, the first one here).
    pub cpu: u32,
    /// Stack size in bytes (0 for a VM).
    pub stack_size: u64,
    /// Program image (empty for a VM).
    pub image: String,
}

/// Everything a description grants, in source order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessModel {
    /// Every PD then VM, in source order (a VM right after its VMM).
    pub actors: Vec<Sched>,
    /// Every memory region.
    pub regions: Vec<RegionAccess>,
    /// Every channel.
    pub channels: Vec<ChannelAccess>,
    /// Every IRQ.
    pub irqs: Vec<IrqAccess>,
    /// Every vCPU.
    pub vcpus: Vec<VcpuAccess>,
}

impl AccessModel {
    /// Derive the model of `sys`. Dangling references (a map of an unknown
    /// region) are kept as a region entry with no size, so the report still
    /// shows them; the checker reports them as errors.
    pub fn of(sys: &SystemDescription) -> AccessModel {
        let mut m = AccessModel::default();
        for r in &sys.memory_regions {
            m.regions.push(RegionAccess {
                name: r.name.clone(),
                size: r.size,
                page_size: r.page_size.bytes(),
                phys_addr: r.phys_addr,
                prefill: r.prefill.as_ref().map(|p| match p {
                    Prefill::Path(f) => format!("path:{f}"),
                    Prefill::Bootinfo(k) => format!("bootinfo:{k}"),
                }),
                mappings: Vec::new(),
            });
        }
        for pd in &sys.protection_domains {
            m.add_pd(pd, None);
        }
        for c in &sys.channels {
            let [a, b] = &c.ends;
            m.channels.push(ChannelAccess {
                a: a.pd.clone(),
                a_id: a.id,
                b: b.pd.clone(),
                b_id: b.id,
                a_notifies_b: a.notify,
                b_notifies_a: b.notify,
                a_calls_b: a.pp,
                b_calls_a: b.pp,
            });
        }
        m
    }

    fn add_map(&mut self, mr: &str, map: Mapping) {
        if let Some(r) = self.regions.iter_mut().find(|r| r.name == mr) {
            r.mappings.push(map);
        } else {
            self.regions.push(RegionAccess {
                name: mr.to_string(),
                size: None,
                page_size: 0x1000,
                phys_addr: None,
                prefill: None,
                mappings: vec![map],
            });
        }
    }

    fn add_pd(&mut self, pd: &ProtectionDomain, parent: Option<&str>) {
        self.actors.push(Sched {
            name: pd.name.clone(),
            kind: ActorKind::Pd,
            parent: parent.map(str::to_string),
            child_id: pd.id,
            priority: pd.priority,
            budget: pd.budget,
            period: pd.period,
            passive: pd.passive,
            cpu: pd.cpu,
            stack_size: pd.stack_size,
            image: pd.program_image.path.clone(),
        });
        for map in &pd.maps {
            self.add_map(
                &map.mr,
                Mapping {
                    who: pd.name.clone(),
                    kind: ActorKind::Pd,
                    vaddr: map.vaddr,
                    perms: map.perms,
                    cached: map.cached,
                },
            );
        }
        for irq in &pd.irqs {
            self.irqs.push(IrqAccess {
                pd: pd.name.clone(),
                irq: irq.irq,
                id: irq.id,
                trigger: irq.trigger,
            });
        }
        if let Some(vm) = &pd.virtual_machine {
            self.add_vm(vm, &pd.name);
        }
        for child in &pd.children {
            self.add_pd(child, Some(&pd.name));
        }
    }

    fn add_vm(&mut self, vm: &VirtualMachine, vmm: &str) {
        self.actors.push(Sched {
            name: vm.name.clone(),
            kind: ActorKind::Vm,
            parent: Some(vmm.to_string()),
            child_id: None,
            priority: vm.priority,
            budget: vm.budget,
            period: vm.period,
            passive: false,
            cpu: vm.vcpus.first().map_or(0, |v| v.cpu),
            stack_size: 0,
            image: String::new(),
        });
        for v in &vm.vcpus {
            self.vcpus.push(VcpuAccess {
                vm: vm.name.clone(),
                vmm: vmm.to_string(),
                id: v.id,
                cpu: v.cpu,
            });
        }
        for map in &vm.maps {
            self.add_map(
                &map.mr,
                Mapping {
                    who: vm.name.clone(),
                    kind: ActorKind::Vm,
                    vaddr: map.vaddr,
                    perms: map.perms,
                    cached: map.cached,
                },
            );
        }
    }

    /// The actor named `name`.
    pub fn actor(&self, name: &str) -> Option<&Sched> {
        self.actors.iter().find(|a| a.name == name)
    }
}

/// `perms` as Microkit writes them (`r`, `rw`, `rx`, `rwx`, ...; `-` for none).
pub fn perms_str(p: Perms) -> String {
    let mut s = String::new();
    if p.read {
        s.push('r');
    }
    if p.write {
        s.push('w');
    }
    if p.execute {
        s.push('x');
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}
