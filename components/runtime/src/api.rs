//! The backend-independent PD API: handler trait, channels, messages,
//! regions, setvars, children, vCPUs and the runtime's error type.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::backend;
use bulkhead_config::{ConfigError, ConfigRegion};

/// Number of message registers a message can carry.
///
/// seL4 allows 120; Bulkhead protocols use at most a few, and the host wire
/// format carries exactly this many at most.
pub const MAX_MRS: usize = 64;

/// Highest channel id plus one (Microkit: ids 0..=61 share one namespace with
/// IRQ ids).
pub const MAX_CHANNELS: u8 = 62;

/// Everything that can go wrong in a runtime call. Each variant is a named
/// refusal; none is a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeError {
    /// The description gives this PD no channel with this id.
    UndeclaredChannel(u8),
    /// The channel exists but this PD's end may not notify (`notify="false"`).
    NotifyNotPermitted(u8),
    /// The channel exists but this PD's end may not make PPCs on it (`pp`).
    NotPpcCaller(u8),
    /// The id is not an IRQ of this PD.
    NotAnIrq(u8),
    /// Message register index past [`MAX_MRS`].
    MrOutOfRange(usize),
    /// Message length past [`MAX_MRS`].
    MessageTooLong(u64),
    /// No memory region with this name or setvar symbol is mapped in this PD.
    NoSuchRegion,
    /// An access past the end of a region, or misaligned for its type.
    OutOfBounds {
        /// Offset asked for.
        offset: usize,
        /// Bytes asked for.
        len: usize,
    },
    /// A write to a region this PD maps without write permission.
    ReadOnlyRegion,
    /// No `setvar` with this symbol name.
    NoSuchSetvar,
    /// The PD has no child with this id.
    UndeclaredChild(u8),
    /// The PD has no vCPU with this id.
    UndeclaredVcpu(u8),
    /// This operation exists in the API but the current backend does not
    /// provide it yet (the seL4 backend; vCPUs on the host board).
    BackendNotImplemented,
    /// The host kernel refused a call the runtime made (errno).
    Os(i32),
    /// The peer of a PPC went away (its process ended) before replying.
    PeerGone(u8),
    /// A malformed message from the supervisor or a PPC peer.
    BadMessage,
    /// The PD's configuration region was refused (bulkhead-config error text).
    BadConfig,
    /// No host resource with this name is bound to this PD.
    NoSuchResource,
    /// Some PD maps the region writable, so it cannot be viewed as bytes.
    NotImmutable,
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::UndeclaredChannel(id) => {
                write!(f, "channel {id} is not declared for this PD")
            }
            RuntimeError::NotifyNotPermitted(id) => {
                write!(f, "channel {id}: this end may not notify")
            }
            RuntimeError::NotPpcCaller(id) => write!(
                f,
                "channel {id}: this end may not make protected procedure calls"
            ),
            RuntimeError::NotAnIrq(id) => write!(f, "id {id} is not an IRQ of this PD"),
            RuntimeError::MrOutOfRange(i) => {
                write!(f, "message register {i} is past the last ({})", MAX_MRS - 1)
            }
            RuntimeError::MessageTooLong(n) => {
                write!(f, "message of {n} registers is longer than {MAX_MRS}")
            }
            RuntimeError::NoSuchRegion => write!(f, "no such memory region is mapped in this PD"),
            RuntimeError::OutOfBounds { offset, len } => write!(
                f,
                "access of {len} bytes at offset {offset:#x} is outside the region or misaligned"
            ),
            RuntimeError::ReadOnlyRegion => write!(f, "the region is mapped read-only in this PD"),
            RuntimeError::NoSuchSetvar => write!(f, "no such setvar"),
            RuntimeError::UndeclaredChild(id) => {
                write!(f, "child {id} is not declared for this PD")
            }
            RuntimeError::UndeclaredVcpu(id) => write!(f, "vCPU {id} is not declared for this PD"),
            RuntimeError::BackendNotImplemented => write!(f, "not implemented by this backend yet"),
            RuntimeError::Os(e) => write!(f, "host kernel error {e}"),
            RuntimeError::PeerGone(id) => write!(f, "channel {id}: the peer is gone"),
            RuntimeError::BadMessage => write!(f, "malformed message"),
            RuntimeError::BadConfig => write!(f, "configuration region refused"),
            RuntimeError::NoSuchResource => write!(f, "no such host resource is bound to this PD"),
            RuntimeError::NotImmutable => write!(
                f,
                "the region is writable by some PD, so it cannot be viewed as bytes"
            ),
        }
    }
}

/// A PD's event handlers. The runtime calls [`Handler::init`] once at start
/// (and again after every restart), then dispatches events forever.
pub trait Handler: Sized {
    /// Sets the PD up and returns its state. Runs at start and after each
    /// restart; statics keep their contents across restarts, as on Microkit.
    fn init() -> Self;

    /// One or more notifications (or IRQs) arrived; each channel is in the set
    /// once however often it was signalled since the last call (seL4 badges
    /// coalesce).
    fn notified(&mut self, channels: ChannelSet);

    /// A protected procedure call arrived on `channel` with `msg` (arguments
    /// in the message registers). The returned message is the reply.
    fn protected(&mut self, channel: Channel, msg: MessageInfo) -> MessageInfo {
        let _ = (channel, msg);
        MessageInfo::new(0, 0)
    }

    /// Child `child` faulted; `msg` describes the fault (see [`FaultInfo`]).
    /// Return `true` to reply to the fault (the child resumes where it
    /// faulted, unless it was restarted meanwhile), `false` to leave it
    /// stopped.
    fn fault(&mut self, child: Child, msg: MessageInfo) -> bool {
        let _ = (child, msg);
        false
    }
}

/// A channel id of this PD, as numbered by its `<end id>` in the description.
///
/// Constructing one is free; every operation checks the id against the
/// channels the description gave this PD and fails with a named error
/// otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Channel(u8);

impl Channel {
    /// The channel with local id `id`.
    pub const fn new(id: u8) -> Self {
        Channel(id)
    }

    /// The local id.
    pub const fn id(self) -> u8 {
        self.0
    }

    /// Signals the PD at the other end (coalesces with pending signals).
    pub fn notify(self) -> Result<(), RuntimeError> {
        backend::notify(self.0)
    }

    /// Makes a protected procedure call with the message registers set by
    /// [`mr_set`]; blocks until the callee replies. The reply's registers are
    /// then readable with [`mr_get`].
    pub fn pp_call(self, msg: MessageInfo) -> Result<MessageInfo, RuntimeError> {
        if msg.count() > MAX_MRS as u64 {
            return Err(RuntimeError::MessageTooLong(msg.count()));
        }
        backend::pp_call(self.0, msg)
    }

    /// Acknowledges the IRQ delivered on this channel so it can fire again.
    pub fn irq_ack(self) -> Result<(), RuntimeError> {
        backend::irq_ack(self.0)
    }
}

/// A set of channel ids, as delivered to [`Handler::notified`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelSet(u64);

impl ChannelSet {
    /// The empty set.
    pub const fn empty() -> Self {
        ChannelSet(0)
    }

    /// The set with the bits of `badge` (bit `i` = channel `i`); bits 62 and
    /// 63 are ignored.
    pub const fn from_bits(badge: u64) -> Self {
        ChannelSet(badge & ((1 << MAX_CHANNELS) - 1))
    }

    /// The badge bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Adds `ch`.
    pub fn insert(&mut self, ch: Channel) {
        if ch.0 < MAX_CHANNELS {
            self.0 |= 1 << ch.0;
        }
    }

    /// Whether `ch` is in the set.
    pub const fn contains(self, ch: Channel) -> bool {
        ch.0 < MAX_CHANNELS && self.0 & (1 << ch.0) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The channels in the set, lowest id first.
    pub fn iter(self) -> impl Iterator<Item = Channel> {
        (0..MAX_CHANNELS)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(Channel)
    }
}

/// An seL4 message tag: a label and the number of message registers used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageInfo {
    label: u64,
    count: u64,
}

impl MessageInfo {
    /// A message with `label` (52 bits used) and `count` registers.
    pub const fn new(label: u64, count: u64) -> Self {
        MessageInfo {
            label: label & ((1 << 52) - 1),
            count,
        }
    }

    /// The label.
    pub const fn label(self) -> u64 {
        self.label
    }

    /// The number of message registers.
    pub const fn count(self) -> u64 {
        self.count
    }
}

/// This PD's message registers. On seL4 they live in the IPC buffer; here
/// they are the runtime's own per-PD array (a PD is single-threaded).
static MRS: [AtomicU64; MAX_MRS] = [const { AtomicU64::new(0) }; MAX_MRS];

/// Sets message register `i`.
pub fn mr_set(i: usize, value: u64) -> Result<(), RuntimeError> {
    MRS.get(i)
        .ok_or(RuntimeError::MrOutOfRange(i))?
        .store(value, Ordering::Relaxed);
    Ok(())
}

/// Reads message register `i`.
pub fn mr_get(i: usize) -> Result<u64, RuntimeError> {
    Ok(MRS
        .get(i)
        .ok_or(RuntimeError::MrOutOfRange(i))?
        .load(Ordering::Relaxed))
}

/// Access rights of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub execute: bool,
}

impl Perms {
    /// Encodes as bits r=1, w=2, x=4.
    pub const fn bits(self) -> u8 {
        (self.read as u8) | ((self.write as u8) << 1) | ((self.execute as u8) << 2)
    }

    /// Bit set in a host boot record when some PD maps the region writable.
    pub const WRITABLE_SOMEWHERE: u8 = 8;

    /// Decodes bits r=1, w=2, x=4.
    pub const fn from_bits(b: u8) -> Self {
        Perms {
            read: b & 1 != 0,
            write: b & 2 != 0,
            execute: b & 4 != 0,
        }
    }
}

/// A memory region as mapped into this PD.
///
/// Look one up by its `setvar_vaddr` symbol or its memory-region name with
/// [`Region::get`]. The accessors bounds-check every access and refuse writes
/// to read-only maps; they are the only place the runtime dereferences shared
/// memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    vaddr: usize,
    size: usize,
    perms: Perms,
    /// No PD maps this region writable (so its bytes never change).
    immutable: bool,
}

impl Region {
    /// The region mapped in this PD whose `setvar_vaddr` symbol or memory
    /// region name is `name`.
    pub fn get(name: &str) -> Result<Region, RuntimeError> {
        backend::region(name)
    }

    /// The region this PD maps at exactly `vaddr`: for PDs told their
    /// regions' addresses by their configuration (compose writes hop
    /// vaddrs, not names). On seL4 only declared regions are found (see
    /// [`protection_domain!`](crate::protection_domain)).
    pub fn at(vaddr: u64) -> Result<Region, RuntimeError> {
        backend::region_at(vaddr)
    }

    /// Builds a region handle. Only backends do this, from the mappings they
    /// made themselves.
    #[cfg_attr(target_os = "none", allow(dead_code))]
    pub(crate) const fn from_mapping(
        vaddr: usize,
        size: usize,
        perms: Perms,
        immutable: bool,
    ) -> Region {
        Region {
            vaddr,
            size,
            perms,
            immutable,
        }
    }

    /// Virtual address of the first byte.
    pub const fn vaddr(&self) -> usize {
        self.vaddr
    }

    /// Size in bytes.
    pub const fn size(&self) -> usize {
        self.size
    }

    /// The permissions this PD maps it with.
    pub const fn perms(&self) -> Perms {
        self.perms
    }

    fn check(&self, offset: usize, len: usize, align: usize) -> Result<usize, RuntimeError> {
        let oob = RuntimeError::OutOfBounds { offset, len };
        let end = offset.checked_add(len).ok_or(oob)?;
        if end > self.size || (self.vaddr + offset) % align != 0 {
            return Err(oob);
        }
        Ok(self.vaddr + offset)
    }

    fn check_write(&self, offset: usize, len: usize, align: usize) -> Result<usize, RuntimeError> {
        if !self.perms.write {
            return Err(RuntimeError::ReadOnlyRegion);
        }
        self.check(offset, len, align)
    }

    /// Reads the `u32` at `offset` (volatile; 4-byte aligned).
    pub fn read_u32(&self, offset: usize) -> Result<u32, RuntimeError> {
        let addr = self.check(offset, 4, 4)?;
        // SAFETY: `addr..addr+4` lies inside this mapping (checked), is aligned,
        // and the mapping stays for the PD's life (no unmap is possible).
        Ok(unsafe { core::ptr::read_volatile(addr as *const u32) })
    }

    /// Reads the `u64` at `offset` (volatile; 8-byte aligned).
    pub fn read_u64(&self, offset: usize) -> Result<u64, RuntimeError> {
        let addr = self.check(offset, 8, 8)?;
        // SAFETY: in bounds and aligned (checked); the mapping lives forever.
        Ok(unsafe { core::ptr::read_volatile(addr as *const u64) })
    }

    /// Writes the `u32` at `offset` (volatile; 4-byte aligned).
    pub fn write_u32(&self, offset: usize, value: u32) -> Result<(), RuntimeError> {
        let addr = self.check_write(offset, 4, 4)?;
        // SAFETY: in bounds, aligned and writable (checked); the mapping lives
        // forever and other PDs may only race on plain data, never on Rust
        // references.
        unsafe { core::ptr::write_volatile(addr as *mut u32, value) };
        Ok(())
    }

    /// Writes the `u64` at `offset` (volatile; 8-byte aligned).
    pub fn write_u64(&self, offset: usize, value: u64) -> Result<(), RuntimeError> {
        let addr = self.check_write(offset, 8, 8)?;
        // SAFETY: in bounds, aligned and writable (checked); see write_u32.
        unsafe { core::ptr::write_volatile(addr as *mut u64, value) };
        Ok(())
    }

    /// Copies `out.len()` bytes starting at `offset` out of the region.
    pub fn copy_out(&self, offset: usize, out: &mut [u8]) -> Result<(), RuntimeError> {
        let addr = self.check(offset, out.len(), 1)?;
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: `addr + i` is inside the checked range; byte reads are
            // volatile because a neighbour PD may change the bytes meanwhile.
            *b = unsafe { core::ptr::read_volatile((addr + i) as *const u8) };
        }
        Ok(())
    }

    /// Copies `data` into the region at `offset`.
    pub fn copy_in(&self, offset: usize, data: &[u8]) -> Result<(), RuntimeError> {
        let addr = self.check_write(offset, data.len(), 1)?;
        for (i, b) in data.iter().enumerate() {
            // SAFETY: `addr + i` is inside the checked, writable range.
            unsafe { core::ptr::write_volatile((addr + i) as *mut u8, *b) };
        }
        Ok(())
    }

    /// The `u64` at `offset` as an atomic shared with the other PDs that map
    /// this region (8-byte aligned). Fails with [`RuntimeError::ReadOnlyRegion`]
    /// on a read-only map, since any atomic operation may write.
    pub fn atomic_u64(&self, offset: usize) -> Result<&'static AtomicU64, RuntimeError> {
        let addr = self.check_write(offset, 8, 8)?;
        // SAFETY: in bounds, aligned and writable (checked); the mapping is
        // never unmapped, so 'static holds; AtomicU64 has u64's layout and only
        // atomic accesses are made through it.
        Ok(unsafe { &*(addr as *const AtomicU64) })
    }

    /// The whole region as bytes, for parsers that need a slice (the
    /// configuration region). Only for regions no PD maps writable: bytes a
    /// neighbour could change must not sit behind a Rust reference.
    pub fn as_read_only_bytes(&self) -> Result<&'static [u8], RuntimeError> {
        if !self.immutable || self.perms.write || !self.perms.read {
            return Err(RuntimeError::NotImmutable);
        }
        // SAFETY: the region is mapped readable for the PD's life, and the
        // description gives no PD (this one included) a writable map of it,
        // so its bytes cannot change while the reference lives.
        Ok(unsafe { core::slice::from_raw_parts(self.vaddr as *const u8, self.size) })
    }
}

/// The value the description gives `setvar` symbol `name` (a `setvar_vaddr`,
/// `setvar_size`, or a channel/IRQ/child/vCPU `setvar_id`).
pub fn setvar(name: &str) -> Result<u64, RuntimeError> {
    backend::setvar(name)
}

/// This PD's name from the description.
pub fn pd_name() -> &'static str {
    backend::pd_name()
}

/// Ends this PD. On the host board the process exits with `status` (the
/// supervisor reports it); on seL4 the PD stops taking events.
pub fn halt(status: u8) -> ! {
    backend::halt(status)
}

/// `setvar_vaddr` symbol that marks a PD's configuration region (the
/// memory region named `<pd>_config` is found too).
pub const CONFIG_SYMBOL: &str = "bulkhead_config";

/// Why the configuration region could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigLoadError {
    /// The region is mapped writable, or the backend cannot look it up.
    Runtime(RuntimeError),
    /// The bytes were refused by the configuration-region reader.
    Format(ConfigError),
}

/// Finds, checks and parses the configuration region (see [`config`]).
pub(crate) fn load_config() -> Result<Option<ConfigRegion<'static>>, ConfigLoadError> {
    // seL4: the runtime copied (and checked) the configuration at boot.
    if let Some(copy) = backend::config_copy() {
        let bytes = copy.map_err(ConfigLoadError::Runtime)?;
        return ConfigRegion::parse(bytes, pd_name())
            .map(Some)
            .map_err(ConfigLoadError::Format);
    }
    let region = match Region::get(CONFIG_SYMBOL) {
        Ok(r) => r,
        Err(RuntimeError::NoSuchRegion) => {
            let name = pd_name();
            let mut buf = [0u8; 64 + 7];
            let n = name.len().min(64);
            buf[..n].copy_from_slice(&name.as_bytes()[..n]);
            buf[n..n + 7].copy_from_slice(b"_config");
            let mr = core::str::from_utf8(&buf[..n + 7])
                .map_err(|_| ConfigLoadError::Runtime(RuntimeError::NoSuchRegion))?;
            match Region::get(mr) {
                Ok(r) => r,
                Err(RuntimeError::NoSuchRegion) => return Ok(None),
                Err(e) => return Err(ConfigLoadError::Runtime(e)),
            }
        }
        Err(e) => return Err(ConfigLoadError::Runtime(e)),
    };
    let bytes = region
        .as_read_only_bytes()
        .map_err(ConfigLoadError::Runtime)?;
    // A zeroed region is "no configuration yet" (system/README.md: the
    // regions are mapped before their generator exists).
    if bytes.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    ConfigRegion::parse(bytes, pd_name())
        .map(Some)
        .map_err(ConfigLoadError::Format)
}

/// This PD's configuration region, parsed: the read-only region whose
/// `setvar_vaddr` is [`CONFIG_SYMBOL`] or whose memory region is named
/// `<pd>_config`. `Ok(None)` when there is none or it is all zeros. On the
/// host board a PD whose region does not parse never starts (the runtime
/// refuses at boot and prints why), so after boot this only fails with
/// [`RuntimeError::BadConfig`] if the region is writable.
pub fn config() -> Result<Option<ConfigRegion<'static>>, RuntimeError> {
    load_config().map_err(|e| match e {
        ConfigLoadError::Runtime(r) => r,
        ConfigLoadError::Format(_) => RuntimeError::BadConfig,
    })
}

/// A child PD of this PD, by its `id` in the description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Child(u8);

impl Child {
    /// The child with id `id`.
    pub const fn new(id: u8) -> Self {
        Child(id)
    }

    /// The id.
    pub const fn id(self) -> u8 {
        self.0
    }

    /// Restarts the child as Microkit does: program counter back to the entry
    /// point and stack pointer to the initial stack top; memory is kept.
    pub fn restart(self) -> Result<(), RuntimeError> {
        backend::child_restart(self.0)
    }

    /// Stops the child; it runs again only after [`Child::restart`].
    pub fn stop(self) -> Result<(), RuntimeError> {
        backend::child_stop(self.0)
    }
}

/// A virtual CPU of this PD's virtual machine (VMM PDs only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vcpu(u8);

/// Operations a VMM performs on its vCPUs. On seL4 they are TCB/vCPU
/// invocations; on the host board they map to the guest process's controls.
pub trait VcpuOps {
    /// Starts (or restarts) the vCPU at guest address `pc`.
    fn restart(self, pc: u64) -> Result<(), RuntimeError>;
    /// Stops the vCPU.
    fn stop(self) -> Result<(), RuntimeError>;
    /// Injects virtual IRQ `irq` into the vCPU.
    fn inject_irq(self, irq: u16) -> Result<(), RuntimeError>;
    /// Sets the value the load behind the VM fault being handled returns.
    /// Call it from [`Handler::fault`] before returning `true`; the backend
    /// writes it into the load's destination register (zero-extended as the
    /// instruction does) and moves the vCPU past the instruction.
    fn complete_load(self, value: u64) -> Result<(), RuntimeError>;
}

impl Vcpu {
    /// The vCPU with id `id`.
    pub const fn new(id: u8) -> Self {
        Vcpu(id)
    }

    /// The id.
    pub const fn id(self) -> u8 {
        self.0
    }
}

impl VcpuOps for Vcpu {
    fn restart(self, pc: u64) -> Result<(), RuntimeError> {
        backend::vcpu_restart(self.0, pc)
    }

    fn stop(self) -> Result<(), RuntimeError> {
        backend::vcpu_stop(self.0)
    }

    fn inject_irq(self, irq: u16) -> Result<(), RuntimeError> {
        backend::vcpu_inject_irq(self.0, irq)
    }

    fn complete_load(self, value: u64) -> Result<(), RuntimeError> {
        backend::vcpu_complete_load(self.0, value)
    }
}

/// The kind of a fault reported to a parent's [`Handler::fault`] (the label
/// of the fault message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum FaultKind {
    /// Access to an address no map covers.
    Unmapped = 1,
    /// Access a map's permissions forbid (e.g. a write to a read-only map).
    Permission = 2,
    /// Misaligned or otherwise invalid bus access.
    Bus = 3,
    /// Undefined instruction (also how a PD's panic ends).
    Instruction = 4,
    /// Arithmetic fault (division by zero).
    Arithmetic = 5,
    /// Breakpoint or trap.
    Breakpoint = 6,
    /// A system call outside the PD's allow-list.
    ForbiddenSyscall = 7,
    /// A guest access to a guest-physical address no RAM backs, reported to
    /// the VMM with the vCPU id as the child (see [`VmFaultInfo`]).
    VmFault = 8,
    /// A guest instruction the hypervisor traps (aarch64 on seL4: `smc`,
    /// `wfi`/`wfe`, a system register): MR0 = guest PC, MR2 = the syndrome
    /// (`ESR_EL2`). Resuming moves the vCPU past the instruction.
    VcpuTrap = 9,
    /// The virtual GIC's maintenance interrupt: MR2 = the list register the
    /// guest completed (`u64::MAX` when none is named).
    VgicMaintenance = 10,
    /// A virtual per-CPU interrupt (the virtual timer) fired for the vCPU:
    /// MR2 = its INTID; inject it and acknowledge it.
    VirtualPpi = 11,
    /// Anything else.
    Other = 15,
}

impl FaultKind {
    /// Decodes a fault message label.
    pub const fn from_label(label: u64) -> FaultKind {
        match label {
            1 => FaultKind::Unmapped,
            2 => FaultKind::Permission,
            3 => FaultKind::Bus,
            4 => FaultKind::Instruction,
            5 => FaultKind::Arithmetic,
            6 => FaultKind::Breakpoint,
            7 => FaultKind::ForbiddenSyscall,
            8 => FaultKind::VmFault,
            9 => FaultKind::VcpuTrap,
            10 => FaultKind::VgicMaintenance,
            11 => FaultKind::VirtualPpi,
            _ => FaultKind::Other,
        }
    }

    /// A short human name.
    pub const fn name(self) -> &'static str {
        match self {
            FaultKind::Unmapped => "unmapped address",
            FaultKind::Permission => "permission",
            FaultKind::Bus => "bus error",
            FaultKind::Instruction => "illegal instruction",
            FaultKind::Arithmetic => "arithmetic",
            FaultKind::Breakpoint => "breakpoint",
            FaultKind::ForbiddenSyscall => "forbidden syscall",
            FaultKind::VmFault => "VM fault",
            FaultKind::VcpuTrap => "trapped guest instruction",
            FaultKind::VgicMaintenance => "vGIC maintenance",
            FaultKind::VirtualPpi => "virtual PPI",
            FaultKind::Other => "other",
        }
    }
}

/// A decoded fault message: label = [`FaultKind`], MR0 = program counter,
/// MR1 = faulting address, MR2 = backend detail (host: signal number,
/// seL4: fault status register).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultInfo {
    /// What happened.
    pub kind: FaultKind,
    /// Program counter of the faulting instruction.
    pub pc: u64,
    /// The address accessed (0 when not an access fault).
    pub addr: u64,
    /// Backend-specific detail.
    pub detail: u64,
}

impl FaultInfo {
    /// Reads the fault message that [`Handler::fault`] was given.
    pub fn from_message(msg: MessageInfo) -> FaultInfo {
        let mr = |i| mr_get(i).unwrap_or(0);
        FaultInfo {
            kind: FaultKind::from_label(msg.label()),
            pc: mr(0),
            addr: mr(1),
            detail: mr(2),
        }
    }
}

/// A decoded VM fault: label [`FaultKind::VmFault`], MR0 = guest program
/// counter, MR1 = guest-physical address, MR2 = syndrome, MR3 = the value
/// stored (writes).
///
/// The syndrome uses the aarch64 data-abort ISS layout on both backends, so
/// a VMM reads one format: bit 24 ISV (the fields are valid), bits 23:22 SAS
/// (log2 of the width), bits 20:16 SRT (the transfer register: an aarch64
/// `Xn`, or on the host board the x86 register number, rax = 0 … r15 = 15),
/// bit 6 WnR (write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmFaultInfo {
    /// Guest program counter.
    pub pc: u64,
    /// Guest-physical address accessed.
    pub gpa: u64,
    /// Width in bytes: 1, 2, 4 or 8.
    pub width: u8,
    /// Store (true) or load.
    pub write: bool,
    /// Transfer register number (see above).
    pub reg: u8,
    /// The value stored (writes only; already truncated to the width).
    pub value: u64,
}

/// Syndrome bit: the access fields are valid.
const ISS_ISV: u64 = 1 << 24;
/// Syndrome bit: the access is a write.
const ISS_WNR: u64 = 1 << 6;

impl VmFaultInfo {
    /// The syndrome for an access of `width` bytes (1, 2, 4 or 8), direction
    /// `write`, transfer register `reg` (0..=31).
    pub const fn syndrome(width: u8, write: bool, reg: u8) -> u64 {
        let sas = match width {
            1 => 0,
            2 => 1,
            4 => 2,
            _ => 3,
        };
        ISS_ISV | (sas << 22) | (((reg & 31) as u64) << 16) | if write { ISS_WNR } else { 0 }
    }

    /// Decodes the parts of a fault message; `None` unless `label` is
    /// [`FaultKind::VmFault`] and the syndrome says its fields are valid.
    pub const fn decode(label: u64, pc: u64, gpa: u64, syndrome: u64, value: u64) -> Option<Self> {
        if label != FaultKind::VmFault as u64 || syndrome & ISS_ISV == 0 {
            return None;
        }
        let write = syndrome & ISS_WNR != 0;
        let width = 1u8 << ((syndrome >> 22) & 3);
        let reg = ((syndrome >> 16) & 31) as u8;
        Some(VmFaultInfo {
            pc,
            gpa,
            width,
            write,
            reg,
            value: if write { value } else { 0 },
        })
    }

    /// Reads the fault message that [`Handler::fault`] was given.
    pub fn from_message(msg: MessageInfo) -> Option<Self> {
        let mr = |i| mr_get(i).unwrap_or(0);
        Self::decode(msg.label(), mr(0), mr(1), mr(2), mr(3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_fault_syndrome_round_trips_and_rejects_other_labels() {
        for (width, write, reg) in [
            (1u8, false, 0u8),
            (2, true, 15),
            (4, false, 7),
            (8, true, 31),
        ] {
            let s = VmFaultInfo::syndrome(width, write, reg);
            let f = VmFaultInfo::decode(8, 1, 2, s, 0xffff).unwrap();
            assert_eq!((f.width, f.write, f.reg), (width, write, reg));
            assert_eq!(f.value, if write { 0xffff } else { 0 });
        }
        assert_eq!(
            VmFaultInfo::decode(2, 1, 2, VmFaultInfo::syndrome(4, true, 0), 0),
            None
        );
        assert_eq!(VmFaultInfo::decode(8, 1, 2, 0, 0), None, "ISV clear");
    }

    #[test]
    fn mrs_are_bounded() {
        assert_eq!(mr_set(MAX_MRS, 1), Err(RuntimeError::MrOutOfRange(MAX_MRS)));
        assert_eq!(
            mr_get(MAX_MRS + 7),
            Err(RuntimeError::MrOutOfRange(MAX_MRS + 7))
        );
        mr_set(3, 42).unwrap();
        assert_eq!(mr_get(3).unwrap(), 42);
    }

    #[test]
    fn channel_set_coalesces_and_ignores_high_bits() {
        let mut s = ChannelSet::empty();
        s.insert(Channel::new(3));
        s.insert(Channel::new(3));
        s.insert(Channel::new(70));
        assert_eq!(s.bits(), 1 << 3);
        assert!(s.contains(Channel::new(3)));
        assert!(!s.contains(Channel::new(4)));
        assert_eq!(ChannelSet::from_bits(u64::MAX).iter().count(), 62);
    }

    #[test]
    fn region_bounds_and_perms() {
        let mut backing = [0u64; 4];
        let ro = Region::from_mapping(
            backing.as_mut_ptr() as usize,
            32,
            Perms {
                read: true,
                write: false,
                execute: false,
            },
            false,
        );
        assert_eq!(ro.write_u64(0, 1), Err(RuntimeError::ReadOnlyRegion));
        assert_eq!(
            ro.as_read_only_bytes(),
            Err(RuntimeError::NotImmutable),
            "writable elsewhere"
        );
        assert!(ro.read_u64(24).is_ok());
        assert_eq!(
            ro.read_u64(32),
            Err(RuntimeError::OutOfBounds { offset: 32, len: 8 })
        );
        assert_eq!(
            ro.read_u64(usize::MAX),
            Err(RuntimeError::OutOfBounds {
                offset: usize::MAX,
                len: 8
            })
        );
        assert!(ro.read_u64(4).is_err(), "misaligned");
        let rw = Region::from_mapping(
            backing.as_mut_ptr() as usize,
            32,
            Perms {
                read: true,
                write: true,
                execute: false,
            },
            true,
        );
        assert_eq!(
            rw.as_read_only_bytes(),
            Err(RuntimeError::NotImmutable),
            "own map is writable"
        );
        rw.write_u64(8, 7).unwrap();
        assert_eq!(rw.read_u64(8).unwrap(), 7);
        rw.copy_in(30, &[1, 2]).unwrap();
        assert!(rw.copy_in(31, &[1, 2]).is_err());
        let mut out = [0u8; 2];
        rw.copy_out(30, &mut out).unwrap();
        assert_eq!(out, [1, 2]);
        assert_eq!(
            rw.atomic_u64(16).unwrap().fetch_add(1, Ordering::Relaxed),
            0
        );
        assert_eq!(backing[1], 7);
    }

    #[test]
    fn message_info_masks_label() {
        let m = MessageInfo::new(u64::MAX, 3);
        assert_eq!(m.label(), (1 << 52) - 1);
        assert_eq!(m.count(), 3);
    }
}
