//! seL4 backend: the runtime API on the libmicrokit ABI (`bulkhead-sel4-abi`).
//!
//! What maps to what (libmicrokit 2.3.0 semantics; facts and sources are in
//! `components/sel4-abi/README.md`):
//!
//! - entry: `start` runs [`Handler::init`] and then sel4-abi's event loop
//!   (`event_loop::run`) with the handler behind its `Dispatch` trait; a
//!   passive PD hands its scheduling context back exactly as libmicrokit.
//! - `notify`: `seL4_Signal` on cap 10+id after checking
//!   `microkit_notifications` (`microkit_notify`); immediate, never deferred.
//! - `pp_call`: `seL4_Call` on cap 74+id after checking `microkit_pps`;
//!   MRs are copied between the runtime's registers and the IPC buffer.
//! - `irq_ack`: `IRQAckIRQ` on cap 138+id after checking `microkit_irqs`
//!   (`microkit_irq_ack`, immediate; label from the SDK).
//! - regions: the tool patches `<name>_vaddr` / `<name>_size` (`setvar_vaddr`
//!   / `setvar_size` on the PD's `<map>`) into statics that
//!   [`protection_domain!`](crate::protection_domain) declares from its
//!   `regions: [name: perms, …]` list; `region` looks the name up there.
//! - children: `TCBWriteRegisters` (PC = entry, resume) on cap 202+id
//!   (`microkit_pd_restart`), `TCBSuspend` (`microkit_pd_stop`).
//! - child faults (badge bit 62): the seL4 fault message is translated to
//!   the runtime's fault message (label [`FaultKind`](crate::FaultKind), MR0 pc, MR1 address,
//!   MR2 fault status) before [`Handler::fault`] sees it, so
//!   [`FaultInfo::from_message`](crate::FaultInfo::from_message) reads the
//!   same thing on both backends.
//! - vCPU faults (badge bit 62 with the id of a vCPU this PD started with
//!   [`Vcpu::restart`](crate::Vcpu) or [`arm::boot`]): the runtime reads the
//!   vCPU's registers (`TCB_ReadRegisters`) and hands the handler a VM
//!   fault message ([`logic::translate_vcpu_fault`]): data aborts as
//!   [`FaultKind::VmFault`](crate::FaultKind) in the
//!   [`VmFaultInfo`](crate::VmFaultInfo) layout, trapped instructions,
//!   vGIC maintenance and virtual PPIs as their own kinds. The [`arm`]
//!   operations work on that register snapshot; if the handler resumes,
//!   the runtime steps past a completed access or trapped instruction,
//!   writes the snapshot back if anything changed (`TCB_WriteRegisters`)
//!   and replies.
//! - output: `seL4_DebugPutChar`, only in SDK `debug` configs (the syscall
//!   does not exist in release kernels).
//!
//! Without an SDK at build time (`cfg(sel4_sdk)` unset) there are no
//! invocation labels and no event loop: PDs still build for
//! `aarch64-unknown-none` (CI checks), the channel calls work, but `start`
//! parks after `init` and invocations return
//! [`RuntimeError::BackendNotImplemented`]. Such an ELF is not meant to boot.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use bulkhead_sel4_abi::caps;
use bulkhead_sel4_abi::event_loop::{Deferred, Dispatch};
use bulkhead_sel4_abi::ipc_buffer::{get_mr, set_mr};
use bulkhead_sel4_abi::message::MSG_MAX_LENGTH;
use bulkhead_sel4_abi::symbols::patched::{
    self, microkit_irqs, microkit_notifications, microkit_pps,
};
use bulkhead_sel4_abi::symbols::Patched;
use bulkhead_sel4_abi::syscall;
use bulkhead_sel4_abi::vcpu::{CTX_PC, USER_CONTEXT_WORDS};
use bulkhead_sel4_abi::MessageInfo as AbiInfo;

use crate::api::{
    mr_get, mr_set, Channel, ChannelSet, Child, Handler, MessageInfo, Perms, Region, RuntimeError,
    MAX_MRS,
};

/// Where every PD built with our linker script (`link/microkit-pd.ld`)
/// starts: `_start` is the first thing in `.text` at the link address.
/// `child_restart` sets a child's PC here, as `microkit_pd_restart(ch,
/// entry)` callers do with the child's known entry point.
pub const PD_ENTRY: u64 = 0x20_0000;

mod logic;
pub use logic::perms;
use logic::{channel_refusal, translate_fault, translate_vcpu_fault, vcpu_only, OnResume};

/// One memory region a PD declares in `protection_domain!(…, regions: […])`.
/// Built by that macro only.
pub struct RegionDecl {
    /// The memory region's name (what [`Region::get`] is asked for).
    pub name: &'static str,
    /// The `<name>_vaddr` symbol the tool patches (`setvar_vaddr`).
    pub vaddr: &'static Patched<u64>,
    /// The `<name>_size` symbol the tool patches (`setvar_size`).
    pub size: &'static Patched<u64>,
    /// The permissions the PD declares it maps the region with.
    pub perms: Perms,
}

/// The PD's region table (set once in [`start`], before `init`).
static REGIONS_PTR: AtomicPtr<RegionDecl> = AtomicPtr::new(core::ptr::null_mut());
/// Its length.
static REGIONS_LEN: AtomicUsize = AtomicUsize::new(0);

fn regions() -> &'static [RegionDecl] {
    let ptr = REGIONS_PTR.load(Ordering::Acquire);
    if ptr.is_null() {
        return &[];
    }
    // SAFETY: `start` stored the pointer and length of a `&'static
    // [RegionDecl]` (never written through: the cast to `*mut` only serves
    // AtomicPtr's signature), so rebuilding the same slice is sound.
    unsafe { core::slice::from_raw_parts(ptr, REGIONS_LEN.load(Ordering::Acquire)) }
}

/// The handler behind sel4-abi's `Dispatch`.
struct Pd<H>(H);

/// Copies `count` received registers from the IPC buffer (where the event
/// loop put MR0..3 and the kernel MR4..) into the runtime's registers.
fn mrs_from_ipc_buffer(count: u64) {
    let n = usize::try_from(count).unwrap_or(MAX_MRS).min(MAX_MRS);
    for i in 0..n {
        let _ = mr_set(i, get_mr(i).unwrap_or(0));
    }
}

/// Copies the runtime's first `count` registers into the IPC buffer, from
/// where the event loop / `pp_call` send them.
fn mrs_to_ipc_buffer(count: u64) {
    let n = usize::try_from(count).unwrap_or(MAX_MRS).min(MAX_MRS);
    for i in 0..n {
        set_mr(i, mr_get(i).unwrap_or(0));
    }
}

fn to_abi(msg: MessageInfo) -> AbiInfo {
    AbiInfo::with_label(msg.label(), msg.count())
}

impl<H: Handler> Dispatch for Pd<H> {
    fn notified(&mut self, channels: u64, _defer: &mut Deferred<'_>) {
        self.0.notified(ChannelSet::from_bits(channels));
    }

    fn protected(&mut self, ch: u64, info: AbiInfo, _defer: &mut Deferred<'_>) -> AbiInfo {
        mrs_from_ipc_buffer(info.length());
        // `ch` is badge & 0x3f, so it fits a u8.
        let ch = u8::try_from(ch).unwrap_or(u8::MAX);
        let reply = self.0.protected(
            Channel::new(ch),
            MessageInfo::new(info.label(), info.length()),
        );
        let count = reply.count().min(MAX_MRS as u64);
        mrs_to_ipc_buffer(count);
        AbiInfo::with_label(reply.label(), count)
    }

    fn fault(&mut self, child: u64, info: AbiInfo, _defer: &mut Deferred<'_>) -> Option<AbiInfo> {
        let id = u8::try_from(child).unwrap_or(u8::MAX);
        if is_vcpu(id) || vcpu_only(info.label()) {
            return vcpu_fault(&mut self.0, id, info.label());
        }
        let (kind, pc, addr, detail) = translate_fault(info.label(), &|i| get_mr(i).unwrap_or(0));
        let _ = (mr_set(0, pc), mr_set(1, addr), mr_set(2, detail));
        let child = u8::try_from(child).unwrap_or(u8::MAX);
        // An empty reply resumes the faulting thread (seL4 fault replies).
        self.0
            .fault(Child::new(child), MessageInfo::new(kind as u64, 3))
            .then_some(AbiInfo::EMPTY)
    }
}

/// vCPU ids this PD started (bit `id`): their faults take the vCPU path.
/// Microkit keeps a VM's vCPUs suspended until the VMM starts them, so a
/// vCPU cannot fault before its bit is set. Child PD ids never collide
/// with vCPU ids (the tool refuses that).
static VCPUS: AtomicU64 = AtomicU64::new(0);

fn is_vcpu(id: u8) -> bool {
    u32::from(id) < u64::BITS && VCPUS.load(Ordering::Relaxed) & (1 << id) != 0
}

/// The register snapshot of the vCPU whose fault is being handled: what
/// [`arm`] reads and changes, written back before the reply. A PD is one
/// thread handling one fault at a time, so one snapshot suffices.
struct Snapshot {
    /// `seL4_UserContext` words.
    ctx: [AtomicU64; USER_CONTEXT_WORDS],
    /// The vCPU it belongs to (`u64::MAX`: none, outside a fault).
    vcpu: AtomicU64,
    /// The syndrome of the fault (for load completion and stepping).
    esr: AtomicU64,
    /// Something changed the snapshot: write it back before resuming.
    dirty: AtomicBool,
    /// The handler set the PC itself: do not step.
    pc_set: AtomicBool,
}

static SNAPSHOT: Snapshot = Snapshot {
    ctx: [const { AtomicU64::new(0) }; USER_CONTEXT_WORDS],
    vcpu: AtomicU64::new(u64::MAX),
    esr: AtomicU64::new(0),
    dirty: AtomicBool::new(false),
    pc_set: AtomicBool::new(false),
};

impl Snapshot {
    fn load(&self) -> [u64; USER_CONTEXT_WORDS] {
        core::array::from_fn(|i| self.ctx[i].load(Ordering::Relaxed))
    }
    fn store(&self, ctx: &[u64; USER_CONTEXT_WORDS]) {
        for (a, v) in self.ctx.iter().zip(ctx) {
            a.store(*v, Ordering::Relaxed);
        }
    }
    /// The snapshot if it belongs to `vcpu` (i.e. inside its fault).
    fn of(&self, vcpu: u8) -> Result<[u64; USER_CONTEXT_WORDS], RuntimeError> {
        if self.vcpu.load(Ordering::Relaxed) != u64::from(vcpu) {
            return Err(RuntimeError::BadMessage);
        }
        Ok(self.load())
    }
}

/// A vCPU fault: snapshot the registers, hand the handler the translated
/// message, and on `true` step / write back / reply (see the module docs).
fn vcpu_fault<H: Handler>(h: &mut H, id: u8, label: u64) -> Option<AbiInfo> {
    // The fault message's MRs, before the register read reuses the IPC
    // buffer.
    let seen: [u64; 4] = core::array::from_fn(|i| get_mr(i).unwrap_or(0));
    let ctx = match vcpu_invocations::read_context(u64::from(id)) {
        Ok(c) => c,
        Err(e) => {
            crate::__print_line(format_args!(
                "{}: vCPU {id}: cannot read its registers ({e:?}); left stopped",
                pd_name()
            ));
            let _ = vcpu_invocations::stop(u64::from(id));
            return None;
        }
    };
    let store = bulkhead_sel4_abi::vcpu::store_value(seen[3], &ctx);
    let f = translate_vcpu_fault(
        label,
        &|i| seen.get(i).copied().unwrap_or(0),
        ctx[CTX_PC],
        store,
    );
    SNAPSHOT.store(&ctx);
    SNAPSHOT.esr.store(f.mrs[2], Ordering::Relaxed);
    SNAPSHOT.dirty.store(false, Ordering::Relaxed);
    SNAPSHOT.pc_set.store(false, Ordering::Relaxed);
    SNAPSHOT.vcpu.store(u64::from(id), Ordering::Relaxed);
    for (i, v) in f.mrs.iter().enumerate() {
        let _ = mr_set(i, *v);
    }
    let resume = h.fault(Child::new(id), MessageInfo::new(f.kind as u64, 4));
    SNAPSHOT.vcpu.store(u64::MAX, Ordering::Relaxed);
    if !resume {
        // Suspending cancels the vCPU's pending fault reply, so the reply
        // object is clean for the next receive (otherwise the kernel
        // reports "Reply object already has unexecuted reply").
        let _ = vcpu_invocations::stop(u64::from(id));
        return None;
    }
    let mut ctx = SNAPSHOT.load();
    let mut dirty = SNAPSHOT.dirty.load(Ordering::Relaxed);
    if f.on_resume == OnResume::Advance && !SNAPSHOT.pc_set.load(Ordering::Relaxed) {
        bulkhead_sel4_abi::vcpu::advance(f.mrs[2], &mut ctx);
        dirty = true;
    }
    if dirty {
        if let Err(e) = vcpu_invocations::write_context(u64::from(id), &ctx, false) {
            crate::__print_line(format_args!(
                "{}: vCPU {id}: cannot write its registers ({e:?}); left stopped",
                pd_name()
            ));
            let _ = vcpu_invocations::stop(u64::from(id));
            return None;
        }
    }
    // An empty reply restarts the vCPU at its (possibly new) PC.
    Some(AbiInfo::EMPTY)
}

/// Runs the PD: remembers its region table, runs `init`, then the
/// libmicrokit event loop.
pub(crate) fn start<H: Handler>(table: &'static [RegionDecl]) -> ! {
    REGIONS_LEN.store(table.len(), Ordering::Release);
    REGIONS_PTR.store(table.as_ptr().cast_mut(), Ordering::Release);
    boot_config::load();
    let pd = Pd(H::init());
    run(pd)
}

/// The PD's configuration on seL4: copied once out of its map (whose vaddr
/// and size the tool patches into `bulkhead_config_vaddr` /
/// `bulkhead_config_size`; `bulkhead compose` emits those setvars on every
/// PD's configuration map) before `init`, parsed from the copy, and its
/// `MAPS` section ([`crate::maps`]) kept as the PD's map table.
///
/// Why a copy: seL4 tells a PD nothing about other PDs' maps, so the
/// runtime cannot vouch that nobody writes the region; bytes copied into the
/// PD's own memory cannot change after they were checked.
mod boot_config {
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicU8, Ordering};

    use bulkhead_config::ConfigRegion;
    use bulkhead_sel4_abi::symbols::Patched;

    use crate::maps::{MapTable, MapsError};
    use crate::{debug_println, pd_name};

    /// Largest configuration the runtime copies.
    pub const CONFIG_MAX: usize = 64 * 1024;

    /// `setvar_vaddr` of the PD's configuration map.
    #[no_mangle]
    #[used]
    #[link_section = ".data.microkit"]
    static bulkhead_config_vaddr: Patched<u64> = Patched::new(0);

    /// `setvar_size` of the PD's configuration map.
    #[no_mangle]
    #[used]
    #[link_section = ".data.microkit"]
    static bulkhead_config_size: Patched<u64> = Patched::new(0);

    extern "C" {
        /// End of the PD's image (`link/microkit-pd.ld`).
        static __bulkhead_image_end: u8;
    }

    struct Boot {
        bytes: [u8; CONFIG_MAX],
        len: usize,
        maps: MapTable,
    }

    struct BootCell(UnsafeCell<Boot>);
    // SAFETY: a PD is one thread; the cell is written only by `load`, which
    // `start` calls once before `init`, and only read after `STATE` says it
    // is done (Release/Acquire), so no access races a write.
    unsafe impl Sync for BootCell {}

    static BOOT: BootCell = BootCell(UnsafeCell::new(Boot {
        bytes: [0; CONFIG_MAX],
        len: 0,
        maps: MapTable::new(),
    }));

    const EMPTY: u8 = 0;
    const LOADED: u8 = 1;
    const BAD: u8 = 2;
    static STATE: AtomicU8 = AtomicU8::new(EMPTY);

    fn boot() -> Option<&'static Boot> {
        if STATE.load(Ordering::Acquire) != LOADED {
            return None;
        }
        // SAFETY: LOADED is stored after the last write (see `BootCell`);
        // nothing writes the cell afterwards.
        Some(unsafe { &*BOOT.0.get() })
    }

    /// The copied configuration bytes (`None`: this PD has no
    /// configuration map, or it was refused at boot).
    pub fn bytes() -> Option<&'static [u8]> {
        boot().map(|b| &b.bytes[..b.len])
    }

    /// Whether a configuration map exists but was refused at boot.
    pub fn refused() -> bool {
        STATE.load(Ordering::Acquire) == BAD
    }

    /// The map table from the configuration (empty without one).
    pub fn maps() -> Option<&'static MapTable> {
        boot().map(|b| &b.maps)
    }

    fn refuse(why: &dyn core::fmt::Display) {
        debug_println!("{}: configuration refused: {why}", pd_name());
        STATE.store(BAD, Ordering::Release);
    }

    /// Copies, parses and checks the configuration; called once by `start`.
    pub fn load() {
        let vaddr = bulkhead_config_vaddr.get();
        let size = bulkhead_config_size.get();
        if vaddr == 0 || size == 0 {
            return;
        }
        let Ok(size) = usize::try_from(size) else {
            return refuse(&"size does not fit");
        };
        if size > CONFIG_MAX {
            return refuse(&"larger than the runtime's 64 KiB copy");
        }
        // SAFETY: `load` runs once, before `init`, on the PD's only thread
        // and before STATE is set, so this is the only reference.
        let b = unsafe { &mut *BOOT.0.get() };
        for (i, dst) in b.bytes[..size].iter_mut().enumerate() {
            let src = core::ptr::with_exposed_provenance::<u8>(
                usize::try_from(vaddr).unwrap_or(0).wrapping_add(i),
            );
            // SAFETY: the tool patched `vaddr`/`size` from this PD's own
            // `<map>` of its configuration region (mapped readable for the
            // PD's life); volatile because seL4 cannot tell us whether
            // another PD maps it writable.
            *dst = unsafe { core::ptr::read_volatile(src) };
        }
        b.len = size;
        // A zeroed region is "no configuration yet" (as on the host board).
        if b.bytes[..size].iter().all(|&x| x == 0) {
            b.len = 0;
            return;
        }
        let cfg = match ConfigRegion::parse(&b.bytes[..size], pd_name()) {
            Ok(c) => c,
            Err(e) => return refuse(&e),
        };
        // In place: a table is too big for a temporary on an 8 KiB stack.
        if let Err(e) = b.maps.load_config(&cfg) {
            return refuse(&e);
        }
        if let Err(e) = check_against_self(&b.maps, vaddr, size as u64) {
            b.maps.clear();
            return refuse(&e);
        }
        STATE.store(LOADED, Ordering::Release);
    }

    /// Why a configured map cannot be used by this PD.
    struct SelfOverlap(&'static str, MapsError);

    impl core::fmt::Display for SelfOverlap {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "{} ({})", self.0, self.1)
        }
    }

    /// A configured map must not cover the PD's own image, its stack (and
    /// IPC buffer above it) or the configuration map: a wrong table would
    /// otherwise alias the PD's own memory.
    fn check_against_self(
        maps: &MapTable,
        cfg_vaddr: u64,
        cfg_size: u64,
    ) -> Result<(), SelfOverlap> {
        let image_lo = super::PD_ENTRY;
        // Only the symbol's address is taken (safe); it is never read.
        let image_hi = core::ptr::addr_of!(__bulkhead_image_end).addr() as u64;
        let here = 0u8;
        let sp = core::ptr::addr_of!(here).addr() as u64;
        // The stack is at most 16 MiB (Microkit's stack_size limit); the IPC
        // buffer and its guard page sit within two pages above SP's start.
        let stack_lo = sp.saturating_sub(0x100_0000);
        let stack_hi = (sp | 0xfff).saturating_add(0x2001);
        for (i, e) in maps.entries().iter().enumerate() {
            if e.overlaps(image_lo, image_hi) {
                return Err(SelfOverlap(
                    "a configured map covers the PD's image",
                    MapsError::BadRange(i),
                ));
            }
            if e.overlaps(stack_lo, stack_hi) {
                return Err(SelfOverlap(
                    "a configured map covers the PD's stack",
                    MapsError::BadRange(i),
                ));
            }
            if e.overlaps(cfg_vaddr, cfg_vaddr.saturating_add(cfg_size)) {
                return Err(SelfOverlap(
                    "a configured map covers the configuration",
                    MapsError::BadRange(i),
                ));
            }
        }
        Ok(())
    }
}

/// The configuration bytes the runtime copied at boot (seL4), for
/// `api::load_config`. `Some(Err)` when a configuration map exists but was
/// refused (the reason was printed at boot).
pub(crate) fn config_copy() -> Option<Result<&'static [u8], RuntimeError>> {
    if boot_config::refused() {
        return Some(Err(RuntimeError::BadConfig));
    }
    boot_config::bytes().map(Ok)
}

/// A region from the configuration's map table.
fn configured_region(e: &crate::maps::MapEntry) -> Result<Region, RuntimeError> {
    let vaddr = usize::try_from(e.vaddr).map_err(|_| RuntimeError::NoSuchRegion)?;
    let size = usize::try_from(e.size).map_err(|_| RuntimeError::NoSuchRegion)?;
    Ok(Region::from_mapping(vaddr, size, e.perms, false))
}

#[cfg(sel4_sdk)]
fn run<H: Handler>(mut pd: Pd<H>) -> ! {
    use bulkhead_sel4_abi::event_loop::{run, LoopState, Masks};
    let passive = patched::microkit_passive.get() != 0;
    run(&mut pd, LoopState::new(Masks::patched()), passive)
}

#[cfg(not(sel4_sdk))]
fn run<H: Handler>(pd: Pd<H>) -> ! {
    // No SDK, no event loop (see the module docs): keep the state alive and
    // park.
    let _pd = pd;
    loop {
        core::hint::spin_loop();
    }
}

/// Prints the panic (debug configs) and ends in an undefined-instruction
/// fault, as on the host board: the parent's `fault()` (or the monitor)
/// learns of it like any other fault, and a restart is possible.
pub(crate) fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::__print_line(format_args!("{}: PANIC: {}", pd_name(), info.message()));
    loop {
        // SAFETY: `udf` touches no memory or registers; it traps to the
        // kernel, which suspends this thread and sends its fault handler a
        // UserException. If that handler resumes us, we trap again.
        unsafe { core::arch::asm!("udf #0", options(nomem, nostack)) };
    }
}

/// Whether this build's kernel has `seL4_DebugPutChar`.
const fn can_print() -> bool {
    #[cfg(sel4_sdk)]
    {
        let c = bulkhead_sel4_abi::sdk::CONFIG.as_bytes();
        // "debug": the only Microkit config whose kernel prints.
        c.len() == 5 && c[0] == b'd' && c[1] == b'e' && c[2] == b'b' && c[3] == b'u' && c[4] == b'g'
    }
    #[cfg(not(sel4_sdk))]
    {
        true
    }
}

pub(crate) fn write_line(line: &[u8]) {
    if !can_print() {
        return;
    }
    for &b in line {
        syscall::debug_put_char(b);
    }
}

pub(crate) fn notify(id: u8) -> Result<(), RuntimeError> {
    let mask = microkit_notifications.get();
    if u64::from(id) >= caps::MAX_CHANNELS || mask & (1 << id) == 0 {
        // The only other trace of a channel end is a pp right.
        return Err(channel_refusal(
            id,
            microkit_pps.get(),
            RuntimeError::NotifyNotPermitted(id),
        ));
    }
    bulkhead_sel4_abi::api::notify(u64::from(id)).map_err(|_| RuntimeError::UndeclaredChannel(id))
}

pub(crate) fn pp_call(id: u8, msg: MessageInfo) -> Result<MessageInfo, RuntimeError> {
    let mask = microkit_pps.get();
    if u64::from(id) >= caps::MAX_CHANNELS || mask & (1 << id) == 0 {
        return Err(channel_refusal(
            id,
            microkit_notifications.get(),
            RuntimeError::NotPpcCaller(id),
        ));
    }
    mrs_to_ipc_buffer(msg.count());
    let regs = core::array::from_fn(|i| get_mr(i).unwrap_or(0));
    let (reply, out) = bulkhead_sel4_abi::api::ppcall(u64::from(id), to_abi(msg), regs)
        .map_err(|_| RuntimeError::UndeclaredChannel(id))?;
    for (i, v) in out.iter().enumerate() {
        set_mr(i, *v);
    }
    let count = reply.length().min(MSG_MAX_LENGTH as u64);
    mrs_from_ipc_buffer(count);
    Ok(MessageInfo::new(reply.label(), count.min(MAX_MRS as u64)))
}

pub(crate) fn irq_ack(id: u8) -> Result<(), RuntimeError> {
    if u64::from(id) >= caps::MAX_CHANNELS || microkit_irqs.get() & (1 << id) == 0 {
        return Err(RuntimeError::NotAnIrq(id));
    }
    #[cfg(sel4_sdk)]
    {
        bulkhead_sel4_abi::invocations::irq_ack(u64::from(id)).map_err(invocation_error)
    }
    #[cfg(not(sel4_sdk))]
    {
        Err(RuntimeError::BackendNotImplemented)
    }
}

/// A refused invocation as a runtime error (kernel error number as `Os`).
#[cfg(sel4_sdk)]
fn invocation_error(e: bulkhead_sel4_abi::invocations::InvocationError) -> RuntimeError {
    use bulkhead_sel4_abi::invocations::InvocationError;
    match e {
        InvocationError::IdOutOfRange(_) => RuntimeError::BadMessage,
        InvocationError::Kernel(n) => RuntimeError::Os(i32::try_from(n).unwrap_or(i32::MAX)),
        InvocationError::NoHypervisor => RuntimeError::BackendNotImplemented,
    }
}

pub(crate) fn region(name: &str) -> Result<Region, RuntimeError> {
    let Some(d) = regions().iter().find(|d| d.name == name) else {
        // Not declared in `protection_domain!`: the configuration's maps.
        return boot_config::maps()
            .and_then(|m| m.by_name(name))
            .ok_or(RuntimeError::NoSuchRegion)
            .and_then(configured_region);
    };
    let vaddr = usize::try_from(d.vaddr.get()).map_err(|_| RuntimeError::NoSuchRegion)?;
    let size = usize::try_from(d.size.get()).map_err(|_| RuntimeError::NoSuchRegion)?;
    // 0 = the tool patched nothing: the .system file lacks the setvars.
    if vaddr == 0 || size == 0 {
        return Err(RuntimeError::NoSuchRegion);
    }
    // seL4 tells a PD nothing about other PDs' maps, so no region counts as
    // immutable here (as_read_only_bytes refuses rather than guesses).
    Ok(Region::from_mapping(vaddr, size, d.perms, false))
}

pub(crate) fn region_at(vaddr: u64) -> Result<Region, RuntimeError> {
    if let Some(d) = regions()
        .iter()
        .find(|d| vaddr != 0 && d.vaddr.get() == vaddr)
    {
        return region(d.name);
    }
    boot_config::maps()
        .and_then(|m| m.at(vaddr))
        .ok_or(RuntimeError::NoSuchRegion)
        .and_then(configured_region)
}

pub(crate) fn setvar(name: &str) -> Result<u64, RuntimeError> {
    for d in regions() {
        let Some(rest) = name.strip_prefix(d.name) else {
            continue;
        };
        match rest {
            "_vaddr" => return Ok(d.vaddr.get()),
            "_size" => return Ok(d.size.get()),
            _ => {}
        }
    }
    Err(RuntimeError::NoSuchSetvar)
}

pub(crate) fn pd_name() -> &'static str {
    patched::name()
}

/// Stops taking events: waits on the input endpoint forever and drops what
/// arrives (a PPC caller stays blocked, as on a stopped PD).
pub(crate) fn halt(_status: u8) -> ! {
    loop {
        let _ = syscall::recv(caps::INPUT, caps::REPLY);
    }
}

pub(crate) fn child_restart(id: u8) -> Result<(), RuntimeError> {
    if u64::from(id) >= caps::MAX_CHANNELS {
        return Err(RuntimeError::UndeclaredChild(id));
    }
    #[cfg(sel4_sdk)]
    {
        bulkhead_sel4_abi::invocations::pd_restart(u64::from(id), PD_ENTRY)
            .map_err(|e| child_error(id, e))
    }
    #[cfg(not(sel4_sdk))]
    {
        Err(RuntimeError::BackendNotImplemented)
    }
}

pub(crate) fn child_stop(id: u8) -> Result<(), RuntimeError> {
    if u64::from(id) >= caps::MAX_CHANNELS {
        return Err(RuntimeError::UndeclaredChild(id));
    }
    #[cfg(sel4_sdk)]
    {
        bulkhead_sel4_abi::invocations::pd_stop(u64::from(id)).map_err(|e| child_error(id, e))
    }
    #[cfg(not(sel4_sdk))]
    {
        Err(RuntimeError::BackendNotImplemented)
    }
}

/// An invocation on a child TCB cap the PD does not hold fails with
/// `seL4_InvalidCapability` (2): that is an undeclared child.
#[cfg(sel4_sdk)]
fn child_error(id: u8, e: bulkhead_sel4_abi::invocations::InvocationError) -> RuntimeError {
    use bulkhead_sel4_abi::invocations::InvocationError;
    match e {
        InvocationError::Kernel(2) | InvocationError::IdOutOfRange(_) => {
            RuntimeError::UndeclaredChild(id)
        }
        other => invocation_error(other),
    }
}

pub(crate) fn vcpu_restart(id: u8, pc: u64) -> Result<(), RuntimeError> {
    arm::boot(id, pc, 0)
}

pub(crate) fn vcpu_stop(id: u8) -> Result<(), RuntimeError> {
    if u64::from(id) >= caps::MAX_CHANNELS {
        return Err(RuntimeError::UndeclaredVcpu(id));
    }
    vcpu_invocations::stop(u64::from(id)).map_err(|e| vcpu_error(id, e))
}

pub(crate) fn vcpu_inject_irq(id: u8, irq: u16) -> Result<(), RuntimeError> {
    arm::inject_irq(id, irq, 0, 0)
}

pub(crate) fn vcpu_complete_load(id: u8, value: u64) -> Result<(), RuntimeError> {
    let mut ctx = SNAPSHOT.of(id)?;
    let esr = SNAPSHOT.esr.load(Ordering::Relaxed);
    if !bulkhead_sel4_abi::vcpu::complete_load(esr, value, &mut ctx) {
        return Err(RuntimeError::BadMessage);
    }
    SNAPSHOT.store(&ctx);
    SNAPSHOT.dirty.store(true, Ordering::Relaxed);
    Ok(())
}

/// The vCPU invocations (hypervisor SDK configs), or their refusals.
#[cfg(sel4_sdk)]
use bulkhead_sel4_abi::invocations::vcpu as vcpu_invocations;

/// Without an SDK there are no labels: every vCPU call is refused.
#[cfg(not(sel4_sdk))]
mod vcpu_invocations {
    use bulkhead_sel4_abi::invocations::InvocationError;
    use bulkhead_sel4_abi::vcpu::USER_CONTEXT_WORDS;
    type R<T> = Result<T, InvocationError>;
    pub fn stop(_: u64) -> R<()> {
        Err(InvocationError::NoHypervisor)
    }
    pub fn inject_irq(_: u64, _: u16, _: u8, _: u8, _: u8) -> R<()> {
        Err(InvocationError::NoHypervisor)
    }
    pub fn ack_vppi(_: u64, _: u64) -> R<()> {
        Err(InvocationError::NoHypervisor)
    }
    pub fn read_reg(_: u64, _: u64) -> R<u64> {
        Err(InvocationError::NoHypervisor)
    }
    pub fn write_reg(_: u64, _: u64, _: u64) -> R<()> {
        Err(InvocationError::NoHypervisor)
    }
    pub fn read_context(_: u64) -> R<[u64; USER_CONTEXT_WORDS]> {
        Err(InvocationError::NoHypervisor)
    }
    pub fn write_context(_: u64, _: &[u64; USER_CONTEXT_WORDS], _: bool) -> R<()> {
        Err(InvocationError::NoHypervisor)
    }
}

/// A refused vCPU invocation: an empty cap slot (2) is an undeclared vCPU,
/// a config without hypervisor support is "not implemented".
fn vcpu_error(id: u8, e: bulkhead_sel4_abi::invocations::InvocationError) -> RuntimeError {
    use bulkhead_sel4_abi::invocations::InvocationError;
    match e {
        InvocationError::Kernel(2) | InvocationError::IdOutOfRange(_) => {
            RuntimeError::UndeclaredVcpu(id)
        }
        InvocationError::NoHypervisor => RuntimeError::BackendNotImplemented,
        InvocationError::Kernel(n) => RuntimeError::Os(i32::try_from(n).unwrap_or(i32::MAX)),
    }
}

/// aarch64 vCPU operations beyond [`VcpuOps`](crate::VcpuOps), for a VMM on
/// seL4 (re-exported as `bulkhead_runtime::vcpu_arm`). Register access
/// works on the snapshot of the vCPU whose fault the handler is handling
/// (outside it: [`RuntimeError::BadMessage`]); system registers and
/// interrupts go to the vCPU object directly.
pub mod arm {
    use super::{vcpu_error, vcpu_invocations, SNAPSHOT, VCPUS};
    use crate::api::RuntimeError;
    use bulkhead_sel4_abi::caps;
    use bulkhead_sel4_abi::vcpu::{gpr_index, CTX_PC, CTX_SPSR, USER_CONTEXT_WORDS};
    use core::sync::atomic::Ordering;

    pub use bulkhead_sel4_abi::vcpu::VcpuReg;

    /// PSTATE a vCPU starts with: EL1h, D, A, I and F masked (the arm64
    /// boot protocol's entry state).
    pub const PSTATE_EL1H_DAIF: u64 = 0x3c5;

    fn check(id: u8) -> Result<u64, RuntimeError> {
        if u64::from(id) >= caps::MAX_CHANNELS {
            return Err(RuntimeError::UndeclaredVcpu(id));
        }
        Ok(u64::from(id))
    }

    /// Starts (or restarts) vCPU `id` at guest address `pc` with `x0` =
    /// `x0` (the device tree, for Linux), every other general register and
    /// SP 0, PSTATE [`PSTATE_EL1H_DAIF`]. From then on its faults reach
    /// the handler as vCPU faults.
    pub fn boot(id: u8, pc: u64, x0: u64) -> Result<(), RuntimeError> {
        let v = check(id)?;
        let mut ctx = [0u64; USER_CONTEXT_WORDS];
        ctx[CTX_PC] = pc;
        ctx[CTX_SPSR] = PSTATE_EL1H_DAIF;
        if let Some(i) = gpr_index(0) {
            ctx[i] = x0;
        }
        VCPUS.fetch_or(1 << v, Ordering::Relaxed);
        vcpu_invocations::write_context(v, &ctx, true).map_err(|e| vcpu_error(id, e))
    }

    /// General register `Xn` (n ≤ 30; 31 reads as XZR, 0) of the faulting
    /// vCPU.
    pub fn gpr(id: u8, n: u8) -> Result<u64, RuntimeError> {
        let ctx = SNAPSHOT.of(id)?;
        Ok(gpr_index(n).map_or(0, |i| ctx[i]))
    }

    /// Sets `Xn` of the faulting vCPU (XZR: ignored); written back on
    /// resume.
    pub fn set_gpr(id: u8, n: u8, value: u64) -> Result<(), RuntimeError> {
        SNAPSHOT.of(id)?;
        if let Some(i) = gpr_index(n) {
            SNAPSHOT.ctx[i].store(value, Ordering::Relaxed);
            SNAPSHOT.dirty.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The faulting vCPU's PC and PSTATE.
    pub fn pc_pstate(id: u8) -> Result<(u64, u64), RuntimeError> {
        let ctx = SNAPSHOT.of(id)?;
        Ok((ctx[CTX_PC], ctx[CTX_SPSR]))
    }

    /// Resumes the faulting vCPU at `pc` with `pstate` instead of stepping
    /// past the instruction (exception entry into the guest).
    pub fn set_pc_pstate(id: u8, pc: u64, pstate: u64) -> Result<(), RuntimeError> {
        SNAPSHOT.of(id)?;
        SNAPSHOT.ctx[CTX_PC].store(pc, Ordering::Relaxed);
        SNAPSHOT.ctx[CTX_SPSR].store(pstate, Ordering::Relaxed);
        SNAPSHOT.dirty.store(true, Ordering::Relaxed);
        SNAPSHOT.pc_set.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Reads a vCPU system register (`ARM_VCPU_ReadRegs`).
    pub fn sysreg(id: u8, reg: VcpuReg) -> Result<u64, RuntimeError> {
        vcpu_invocations::read_reg(check(id)?, reg as u64).map_err(|e| vcpu_error(id, e))
    }

    /// Writes a vCPU system register (`ARM_VCPU_WriteRegs`).
    pub fn set_sysreg(id: u8, reg: VcpuReg, value: u64) -> Result<(), RuntimeError> {
        vcpu_invocations::write_reg(check(id)?, reg as u64, value).map_err(|e| vcpu_error(id, e))
    }

    /// Puts virtual interrupt `irq` into list register `index` with
    /// `priority` (`ARM_VCPU_InjectIRQ`, group 0). The kernel refuses
    /// (seL4_DeleteFirst, as [`RuntimeError::Os`]) while that list
    /// register still holds a pending or active interrupt.
    pub fn inject_irq(id: u8, irq: u16, priority: u8, index: u8) -> Result<(), RuntimeError> {
        vcpu_invocations::inject_irq(check(id)?, irq, priority, 0, index)
            .map_err(|e| vcpu_error(id, e))
    }

    /// Re-enables a virtual PPI after it was injected
    /// (`ARM_VCPU_AckVPPI`).
    pub fn ack_vppi(id: u8, irq: u64) -> Result<(), RuntimeError> {
        vcpu_invocations::ack_vppi(check(id)?, irq).map_err(|e| vcpu_error(id, e))
    }
}
