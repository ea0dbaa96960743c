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
//! - output: `seL4_DebugPutChar`, only in SDK `debug` configs (the syscall
//!   does not exist in release kernels).
//!
//! Without an SDK at build time (`cfg(sel4_sdk)` unset) there are no
//! invocation labels and no event loop: PDs still build for
//! `aarch64-unknown-none` (CI checks), the channel calls work, but `start`
//! parks after `init` and invocations return
//! [`RuntimeError::BackendNotImplemented`]. Such an ELF is not meant to boot.

use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use bulkhead_sel4_abi::caps;
use bulkhead_sel4_abi::event_loop::{Deferred, Dispatch};
use bulkhead_sel4_abi::ipc_buffer::{get_mr, set_mr};
use bulkhead_sel4_abi::message::MSG_MAX_LENGTH;
use bulkhead_sel4_abi::symbols::patched::{
    self, microkit_irqs, microkit_notifications, microkit_pps,
};
use bulkhead_sel4_abi::symbols::Patched;
use bulkhead_sel4_abi::syscall;
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
use logic::{channel_refusal, translate_fault};

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
        let (kind, pc, addr, detail) = translate_fault(info.label(), &|i| get_mr(i).unwrap_or(0));
        let _ = (mr_set(0, pc), mr_set(1, addr), mr_set(2, detail));
        let child = u8::try_from(child).unwrap_or(u8::MAX);
        // An empty reply resumes the faulting thread (seL4 fault replies).
        self.0
            .fault(Child::new(child), MessageInfo::new(kind as u64, 3))
            .then_some(AbiInfo::EMPTY)
    }
}

/// Runs the PD: remembers its region table, runs `init`, then the
/// libmicrokit event loop.
pub(crate) fn start<H: Handler>(table: &'static [RegionDecl]) -> ! {
    REGIONS_LEN.store(table.len(), Ordering::Release);
    REGIONS_PTR.store(table.as_ptr().cast_mut(), Ordering::Release);
    let pd = Pd(H::init());
    run(pd)
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
    }
}

pub(crate) fn region(name: &str) -> Result<Region, RuntimeError> {
    let d = regions()
        .iter()
        .find(|d| d.name == name)
        .ok_or(RuntimeError::NoSuchRegion)?;
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

pub(crate) fn vcpu_restart(_id: u8, _pc: u64) -> Result<(), RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}

pub(crate) fn vcpu_stop(_id: u8) -> Result<(), RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}

pub(crate) fn vcpu_inject_irq(_id: u8, _irq: u16) -> Result<(), RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}

// Referenced by `VcpuOps::complete_load` in api.rs (landing with the host
// board's guest work); until then it is unused in some trees.
#[allow(dead_code)]
pub(crate) fn vcpu_complete_load(_id: u8, _value: u64) -> Result<(), RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}
