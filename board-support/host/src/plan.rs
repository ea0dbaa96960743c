//! What the supervisor will build for each PD, computed from the system
//! description before any process starts. Everything that can be wrong in
//! the description (for the host board) is found here, as a [`PlanError`].

use std::collections::BTreeMap;

use bulkhead_runtime::wire::ChanKind;
use bulkhead_sdf::model::{ProtectionDomain, SystemDescription};

/// One map of a memory region into a PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapPlan {
    /// Index into [`Plan::regions`].
    pub region: usize,
    /// Virtual address.
    pub vaddr: u64,
    /// Size in bytes (the region's).
    pub size: u64,
    /// Permission bits r=1 w=2 x=4.
    pub perms: u8,
    /// `setvar_vaddr` symbol, or "".
    pub symbol: String,
}

/// One memory region to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionPlan {
    /// Name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// `prefill_path`, if any.
    pub prefill: Option<String>,
}

/// One kernel object a channel needs, shared by two PDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChanObject {
    /// An eventfd: one directed notification.
    Event,
    /// Call and reply eventfds plus a message buffer: one directed PPC path.
    Ppc,
    /// An interrupt line of PD `pd` with number `irq`: an eventfd, or the
    /// host timer the binding file attaches to it.
    Irq {
        /// PD name.
        pd: String,
        /// `<irq irq=…>`.
        irq: u64,
    },
}

/// A channel handle a PD gets: (id, kind, index into [`Plan::objects`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle {
    /// Local channel id.
    pub id: u8,
    /// What it is for.
    pub kind: ChanKind,
    /// The object.
    pub object: usize,
}

/// Everything about one PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdPlan {
    /// Name.
    pub name: String,
    /// Microkit priority.
    pub priority: u8,
    /// Microkit core.
    pub cpu: u32,
    /// Passive.
    pub passive: bool,
    /// Budget in µs.
    pub budget: u64,
    /// Period in µs.
    pub period: u64,
    /// `program_image` path as written.
    pub image: String,
    /// Index of the parent PD and this PD's child id there.
    pub parent: Option<(usize, u8)>,
    /// Children: (child id, PD index).
    pub children: Vec<(u8, usize)>,
    /// vCPU ids of this PD's virtual machine.
    pub vcpus: Vec<u8>,
    /// Maps.
    pub maps: Vec<MapPlan>,
    /// Channel handles.
    pub handles: Vec<Handle>,
    /// setvars: symbol → value.
    pub setvars: BTreeMap<String, u64>,
}

/// A `<virtual_machine>`: what its guest process gets on the host board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPlan {
    /// `<virtual_machine name>`.
    pub name: String,
    /// Index of its VMM (the PD it is declared in).
    pub vmm: usize,
    /// The vCPU a test guest runs as (the first `<vcpu>`).
    pub vcpu: u8,
    /// Its maps; `vaddr` is the guest-physical address.
    pub maps: Vec<MapPlan>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// PDs, parents before children.
    pub pds: Vec<PdPlan>,
    /// Virtual machines.
    pub vms: Vec<VmPlan>,
    /// Memory regions.
    pub regions: Vec<RegionPlan>,
    /// Channel objects.
    pub objects: Vec<ChanObject>,
}

/// Why a description cannot run on the host board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// A map names a region that does not exist.
    UnknownRegion {
        /// PD.
        pd: String,
        /// Region name.
        mr: String,
    },
    /// A region without a size (and its prefill file is missing).
    RegionWithoutSize(String),
    /// A channel end names an unknown PD.
    UnknownPd(String),
    /// An id is out of range for the host board's wire format.
    IdOutOfRange {
        /// PD.
        pd: String,
        /// Id.
        id: u64,
    },
    /// A PPC goes to a PD of equal or lower priority.
    PpcPriority {
        /// Caller.
        caller: String,
        /// Callee.
        callee: String,
    },
    /// A map cannot be placed in a host process's address space.
    BadVaddr {
        /// PD.
        pd: String,
        /// Region.
        mr: String,
        /// Address.
        vaddr: u64,
    },
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::UnknownRegion { pd, mr } => write!(f, "PD {pd} maps unknown memory region {mr}"),
            PlanError::RegionWithoutSize(mr) => write!(f, "memory region {mr} has no size"),
            PlanError::UnknownPd(pd) => write!(f, "channel end names unknown PD {pd}"),
            PlanError::IdOutOfRange { pd, id } => write!(f, "PD {pd}: id {id} out of range (0..=61)"),
            PlanError::PpcPriority { caller, callee } => {
                write!(f, "PPC from {caller} to {callee}: the callee's priority must be strictly higher")
            }
            PlanError::BadVaddr { pd, mr, vaddr } => write!(
                f,
                "PD {pd}: map of {mr} at {vaddr:#x} is not page-aligned or outside the host board's window (0x10000..0x7f00_0000_0000)"
            ),
        }
    }
}

/// Lowest address a host process may map (Linux `mmap_min_addr` default).
const MIN_VADDR: u64 = 0x1_0000;
/// End of the window the host board maps into (below the x86_64 user stack).
const MAX_VADDR: u64 = 0x7f00_0000_0000;

fn id8(pd: &str, id: u64) -> Result<u8, PlanError> {
    u8::try_from(id)
        .ok()
        .filter(|i| *i < 62)
        .ok_or(PlanError::IdOutOfRange {
            pd: pd.to_string(),
            id,
        })
}

fn perms_bits(p: &bulkhead_sdf::model::Perms) -> u8 {
    u8::from(p.read) | (u8::from(p.write) << 1) | (u8::from(p.execute) << 2)
}

impl Plan {
    /// Builds the plan; `prefill_size` gives the size of a prefill file for a
    /// region without `size`.
    pub fn build(
        sd: &SystemDescription,
        prefill_size: &dyn Fn(&str) -> Option<u64>,
    ) -> Result<Plan, PlanError> {
        let mut plan = Plan::default();
        for mr in &sd.memory_regions {
            let prefill = match &mr.prefill {
                Some(bulkhead_sdf::model::Prefill::Path(p)) => Some(p.clone()),
                _ => None,
            };
            let size = match (mr.size, &prefill) {
                (Some(s), _) => s,
                (None, Some(p)) => {
                    prefill_size(p).ok_or_else(|| PlanError::RegionWithoutSize(mr.name.clone()))?
                }
                (None, None) => return Err(PlanError::RegionWithoutSize(mr.name.clone())),
            };
            plan.regions.push(RegionPlan {
                name: mr.name.clone(),
                size,
                prefill,
            });
        }
        fn walk(
            plan: &mut Plan,
            sd: &SystemDescription,
            pd: &ProtectionDomain,
            parent: Option<(usize, u8)>,
        ) -> Result<(), PlanError> {
            let index = plan.pds.len();
            let mut setvars = BTreeMap::new();
            let mut maps = Vec::new();
            for m in &pd.maps {
                let region = sd
                    .memory_regions
                    .iter()
                    .position(|r| r.name == m.mr)
                    .ok_or_else(|| PlanError::UnknownRegion {
                        pd: pd.name.clone(),
                        mr: m.mr.clone(),
                    })?;
                let size = plan.regions[region].size;
                let end = m.vaddr.checked_add(size);
                if m.vaddr % 0x1000 != 0 || m.vaddr < MIN_VADDR || end.is_none_or(|e| e > MAX_VADDR)
                {
                    return Err(PlanError::BadVaddr {
                        pd: pd.name.clone(),
                        mr: m.mr.clone(),
                        vaddr: m.vaddr,
                    });
                }
                if let Some(s) = &m.setvar_vaddr {
                    setvars.insert(s.clone(), m.vaddr);
                }
                if let Some(s) = &m.setvar_size {
                    setvars.insert(s.clone(), size);
                }
                maps.push(MapPlan {
                    region,
                    vaddr: m.vaddr,
                    size,
                    perms: perms_bits(&m.perms),
                    symbol: m.setvar_vaddr.clone().unwrap_or_default(),
                });
            }
            let mut handles = Vec::new();
            for irq in &pd.irqs {
                let id = id8(&pd.name, irq.id)?;
                if let Some(s) = &irq.setvar_id {
                    setvars.insert(s.clone(), u64::from(id));
                }
                plan.objects.push(ChanObject::Irq {
                    pd: pd.name.clone(),
                    irq: irq.irq,
                });
                handles.push(Handle {
                    id,
                    kind: ChanKind::Irq,
                    object: plan.objects.len() - 1,
                });
            }
            let vcpus = match &pd.virtual_machine {
                Some(vm) => vm
                    .vcpus
                    .iter()
                    .map(|v| id8(&pd.name, v.id))
                    .collect::<Result<Vec<_>, _>>()?,
                None => Vec::new(),
            };
            if let Some(vm) = &pd.virtual_machine {
                let mut vm_maps = Vec::new();
                for m in &vm.maps {
                    let region = sd
                        .memory_regions
                        .iter()
                        .position(|r| r.name == m.mr)
                        .ok_or_else(|| PlanError::UnknownRegion {
                            pd: vm.name.clone(),
                            mr: m.mr.clone(),
                        })?;
                    let size = plan.regions[region].size;
                    // The guest process maps RAM at its guest-physical
                    // address, so it must fit the same window as PD maps.
                    let end = m.vaddr.checked_add(size);
                    if m.vaddr % 0x1000 != 0
                        || m.vaddr < MIN_VADDR
                        || end.is_none_or(|e| e > MAX_VADDR)
                    {
                        return Err(PlanError::BadVaddr {
                            pd: vm.name.clone(),
                            mr: m.mr.clone(),
                            vaddr: m.vaddr,
                        });
                    }
                    vm_maps.push(MapPlan {
                        region,
                        vaddr: m.vaddr,
                        size,
                        perms: perms_bits(&m.perms),
                        symbol: String::new(),
                    });
                }
                plan.vms.push(VmPlan {
                    name: vm.name.clone(),
                    vmm: index,
                    vcpu: vcpus.first().copied().unwrap_or(0),
                    maps: vm_maps,
                });
            }
            plan.pds.push(PdPlan {
                name: pd.name.clone(),
                priority: pd.priority,
                cpu: pd.cpu,
                passive: pd.passive,
                budget: pd.budget,
                period: pd.period,
                image: pd.program_image.path.clone(),
                parent,
                children: Vec::new(),
                vcpus,
                maps,
                handles,
                setvars,
            });
            for c in &pd.children {
                let cid = id8(&c.name, c.id.unwrap_or(0))?;
                if let Some(s) = &c.setvar_id {
                    plan.pds[index].setvars.insert(s.clone(), u64::from(cid));
                }
                let child_index = plan.pds.len();
                plan.pds[index].children.push((cid, child_index));
                walk(plan, sd, c, Some((index, cid)))?;
            }
            Ok(())
        }
        for pd in &sd.protection_domains {
            walk(&mut plan, sd, pd, None)?;
        }
        for ch in &sd.channels {
            let mut idx = [0usize; 2];
            for (k, end) in ch.ends.iter().enumerate() {
                idx[k] = plan
                    .pds
                    .iter()
                    .position(|p| p.name == end.pd)
                    .ok_or_else(|| PlanError::UnknownPd(end.pd.clone()))?;
            }
            for (from, to) in [(0, 1), (1, 0)] {
                let (a, b) = (&ch.ends[from], &ch.ends[to]);
                let aid = id8(&a.pd, a.id)?;
                let bid = id8(&b.pd, b.id)?;
                if a.notify {
                    plan.objects.push(ChanObject::Event);
                    let o = plan.objects.len() - 1;
                    plan.pds[idx[from]].handles.push(Handle {
                        id: aid,
                        kind: ChanKind::NotifyOut,
                        object: o,
                    });
                    plan.pds[idx[to]].handles.push(Handle {
                        id: bid,
                        kind: ChanKind::NotifyIn,
                        object: o,
                    });
                }
                if a.pp {
                    if plan.pds[idx[to]].priority <= plan.pds[idx[from]].priority {
                        return Err(PlanError::PpcPriority {
                            caller: a.pd.clone(),
                            callee: b.pd.clone(),
                        });
                    }
                    plan.objects.push(ChanObject::Ppc);
                    let o = plan.objects.len() - 1;
                    plan.pds[idx[from]].handles.push(Handle {
                        id: aid,
                        kind: ChanKind::PpcCaller,
                        object: o,
                    });
                    plan.pds[idx[to]].handles.push(Handle {
                        id: bid,
                        kind: ChanKind::PpcCallee,
                        object: o,
                    });
                }
                if let Some(s) = &a.setvar_id {
                    plan.pds[idx[from]]
                        .setvars
                        .insert(s.clone(), u64::from(aid));
                }
            }
        }
        Ok(plan)
    }
}
