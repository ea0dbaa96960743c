//! Host-board backend: a PD as a Linux process under the `bulkhead-host`
//! supervisor.
//!
//! Start-up (before any PD code runs): receive the boot message and the PD's
//! descriptors on fd 3 (the control socket), map every region at its vaddr
//! with exactly its permissions (`MAP_FIXED_NOREPLACE`, then the descriptor
//! is closed), build the channel table and the epoll set, tell the
//! supervisor where a restart puts PC and SP, and install the seccomp
//! allow-list ([`seccomp`]). Then `init()` and the event loop.
//!
//! The process holds only the descriptors of its own channels; every
//! channel id is additionally checked against that table, so an undeclared
//! channel is a named error, and no syscall exists after lockdown that could
//! obtain another descriptor or mapping.

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "the host board runs on x86_64 Linux only (seccomp table and restart registers are x86_64)"
);

mod seccomp;

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::api::{
    Channel, ChannelSet, Child, Handler, MessageInfo, Perms, Region, RuntimeError, MAX_CHANNELS,
    MAX_MRS,
};
use crate::wire::{Boot, ChanKind, Control, CONTROL_LEN, MAX_BOOT_FDS, MAX_BOOT_LEN, PPC_BUF_SIZE};
use crate::{mr_get, mr_set};

/// The control socket's descriptor number, set up by the supervisor.
const CONTROL_FD: i32 = 3;

/// Exit status when the PD refuses to start (bad boot message, map failure,
/// bad configuration). The supervisor reports it.
const EXIT_REFUSED: i32 = 78;

/// Epoll token kinds (token = kind << 8 | channel id).
const TOK_NOTIFY: u64 = 1;
const TOK_PPC: u64 = 2;
const TOK_CONTROL: u64 = 3;
const TOK_IRQ: u64 = 4;

/// One end of a PPC channel direction: the call and reply eventfds and the
/// shared message buffer (0 = none).
#[derive(Clone, Copy)]
struct PpcEnd {
    call: i32,
    reply: i32,
    buf: usize,
}

impl PpcEnd {
    const NONE: PpcEnd = PpcEnd {
        call: -1,
        reply: -1,
        buf: 0,
    };

    fn present(&self) -> bool {
        self.buf != 0
    }
}

/// Descriptors of one channel id (-1 = none).
#[derive(Clone, Copy)]
struct Chan {
    notify_in: i32,
    notify_out: i32,
    pp_out: PpcEnd,
    pp_in: PpcEnd,
    irq: i32,
}

impl Chan {
    const NONE: Chan = Chan {
        notify_in: -1,
        notify_out: -1,
        pp_out: PpcEnd::NONE,
        pp_in: PpcEnd::NONE,
        irq: -1,
    };

    fn declared(&self) -> bool {
        self.notify_in >= 0
            || self.notify_out >= 0
            || self.pp_out.present()
            || self.pp_in.present()
            || self.irq >= 0
    }
}

/// Words of one PPC message area: sequence number, label, count, registers.
const PPC_WORDS: usize = 3 + MAX_MRS;

/// Word offset of the call area (caller writes, callee reads).
const PPC_CALL_AREA: usize = 0;

/// Word offset of the reply area (callee writes, caller reads). Separate
/// from the call area so that a late reply to a call made before the caller
/// was restarted cannot overwrite the arguments of its next call.
const PPC_REPLY_AREA: usize = 256;

/// Caller-side sequence numbers: a reply counts only if it echoes the
/// sequence number of the call it answers.
static PPC_SEQ: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

/// Writes one message (sequence number, label, count, the first `count`
/// registers) into the area at word `area` of a PPC buffer.
fn ppc_store(buf: usize, area: usize, seq: u64, msg: MessageInfo, regs: &[u64; MAX_MRS]) {
    let n = usize::try_from(msg.count()).unwrap_or(MAX_MRS).min(MAX_MRS);
    let head = [seq, msg.label(), n as u64];
    for (i, w) in head.iter().chain(regs[..n].iter()).enumerate() {
        // SAFETY: `buf` is a live PPC_BUF_SIZE mapping made at set-up and
        // never unmapped; area + i < 256 + 67 words (2584 bytes) fits in its
        // 4096; u64-aligned because mmap returns page-aligned addresses.
        unsafe { core::ptr::write_volatile((buf as *mut u64).add(area + i), *w) };
    }
}

/// Copies one message out of the area at word `area` (the peer may change
/// it at any time, so everything is copied and the count clamped before
/// use); returns (sequence number, tag, registers).
fn ppc_load(buf: usize, area: usize) -> (u64, MessageInfo, [u64; MAX_MRS]) {
    let mut words = [0u64; PPC_WORDS];
    for (i, w) in words.iter_mut().enumerate() {
        // SAFETY: as in ppc_store.
        *w = unsafe { core::ptr::read_volatile((buf as *const u64).add(area + i)) };
    }
    let n = usize::try_from(words[2]).unwrap_or(MAX_MRS).min(MAX_MRS);
    let mut regs = [0u64; MAX_MRS];
    regs[..n].copy_from_slice(&words[3..3 + n]);
    (words[0], MessageInfo::new(words[1], n as u64), regs)
}

/// Maps a PPC buffer descriptor (before lockdown) and closes it.
fn map_ppc(fds: &[i32], idx: u16) -> Result<PpcEnd, &'static str> {
    let call = fd_at(fds, idx)?;
    let reply = fd_at(
        fds,
        idx.checked_add(1).ok_or("descriptor index out of range")?,
    )?;
    let mfd = fd_at(
        fds,
        idx.checked_add(2).ok_or("descriptor index out of range")?,
    )?;
    // SAFETY: a fresh shared mapping at an address the kernel picks, so no
    // existing memory is affected; the result is checked.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            PPC_BUF_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            mfd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err("cannot map a PPC buffer");
    }
    // SAFETY: closing a descriptor we own; the mapping keeps the object.
    unsafe { libc::close(mfd) };
    Ok(PpcEnd {
        call,
        reply,
        buf: p as usize,
    })
}

fn signal(fd: i32) -> Result<(), RuntimeError> {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a local u64 (eventfd protocol).
    let n = unsafe { libc::write(fd, core::ptr::addr_of!(one).cast(), 8) };
    if n != 8 {
        return Err(RuntimeError::Os(errno()));
    }
    Ok(())
}

/// Everything the runtime learned at boot. Written once by `boot`, read-only
/// afterwards.
struct State {
    buf: [u8; MAX_BOOT_LEN],
    len: usize,
    epfd: i32,
    chans: [Chan; MAX_CHANNELS as usize],
    children: u64,
    vcpus: u64,
    resources: [i32; MAX_RESOURCES],
}

/// Most host resources one PD may be bound.
const MAX_RESOURCES: usize = 16;

/// A value written once during single-threaded start-up and only read after.
struct Global<T> {
    value: UnsafeCell<MaybeUninit<T>>,
    ready: AtomicBool,
}

// SAFETY: the value is written exactly once, by `boot` on the PD's only
// thread, before `ready` is set with Release; afterwards it is only read
// (after an Acquire load of `ready`). A PD process never starts threads.
unsafe impl<T> Sync for Global<T> {}

static STATE: Global<State> = Global {
    value: UnsafeCell::new(MaybeUninit::uninit()),
    ready: AtomicBool::new(false),
};

fn state() -> Option<&'static State> {
    if STATE.ready.load(Ordering::Acquire) {
        // SAFETY: `ready` is only set after the value was fully written, and
        // it is never written again (see `Global`).
        Some(unsafe { (*STATE.value.get()).assume_init_ref() })
    } else {
        None
    }
}

fn boot_info() -> Option<Boot<'static>> {
    let st = state()?;
    Boot::parse(&st.buf[..st.len]).ok()
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable buffer of the given length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            return;
        }
        bytes = &bytes[n.unsigned_abs()..];
    }
}

pub(crate) fn write_line(line: &[u8]) {
    write_all(1, line);
}

fn refuse(what: &str, err: impl core::fmt::Display) -> ! {
    crate::__print_line(format_args!("refusing to start: {what}: {err}"));
    // SAFETY: _exit ends the process; always sound.
    unsafe { libc::_exit(EXIT_REFUSED) }
}

/// Receives the boot message and its descriptors into `st`; returns the
/// number of descriptors.
fn receive_boot(st: &mut State, fds: &mut [i32; MAX_BOOT_FDS]) -> Result<usize, &'static str> {
    const CMSG_BYTES: usize = 1024 + 64;
    let mut cbuf = [0u64; CMSG_BYTES / 8];
    let mut iov = libc::iovec {
        iov_base: st.buf.as_mut_ptr().cast(),
        iov_len: st.buf.len(),
    };
    // SAFETY: msghdr is plain data; zero is a valid initial value.
    let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_BYTES;
    // SAFETY: msg points at valid buffers that live across the call.
    let n = unsafe { libc::recvmsg(CONTROL_FD, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n <= 0 {
        return Err("no boot message on fd 3 (is this PD being run by `bulkhead run`?)");
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err("boot message truncated");
    }
    st.len = n.unsigned_abs();
    let mut count = 0;
    // SAFETY: msg was filled by recvmsg; the CMSG_* helpers walk the control
    // buffer within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: cmsg points at a complete header inside the control buffer.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is a pure computation.
            let data_len = hdr.cmsg_len - unsafe { libc::CMSG_LEN(0) } as usize;
            // SAFETY: as above, for the data pointer of this header.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            for i in 0..data_len / 4 {
                if count == MAX_BOOT_FDS {
                    return Err("too many descriptors");
                }
                // SAFETY: `i * 4 + 4 <= data_len`, inside this cmsg's data;
                // read_unaligned because cmsg data need not be aligned.
                fds[count] = unsafe { core::ptr::read_unaligned(data.add(i * 4).cast::<i32>()) };
                count += 1;
            }
        }
        // SAFETY: walks to the next header or null, within the buffer.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(count)
}

fn fd_at(fds: &[i32], idx: u16) -> Result<i32, &'static str> {
    fds.get(usize::from(idx))
        .copied()
        .ok_or("descriptor index out of range")
}

fn epoll_add(epfd: i32, fd: i32, token: u64) -> Result<(), &'static str> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: ev is a valid epoll_event for the duration of the call.
    if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
        return Err("epoll_ctl failed");
    }
    Ok(())
}

/// PROTECTION-REMOVED variant `ro-maps` only: a read-write descriptor of
/// the object behind the read-only descriptor `fd` (re-opened through
/// `/proc/self/fd`), which replaces `fd`.
fn reopen_rw(fd: i32) -> Result<i32, &'static str> {
    let mut path = [0u8; 32];
    let mut w = Cursor {
        buf: &mut path,
        len: 0,
    };
    use core::fmt::Write as _;
    write!(w, "/proc/self/fd/{fd}\0").map_err(|_| "fd path")?;
    // SAFETY: path is NUL-terminated (written above, fits in 32 bytes).
    let rw = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDWR | libc::O_CLOEXEC) };
    if rw < 0 {
        return Err("re-opening a read-only region read-write failed");
    }
    // SAFETY: closing the read-only descriptor we own; `rw` replaces it.
    unsafe { libc::close(fd) };
    Ok(rw)
}

/// A `core::fmt::Write` into a fixed buffer.
struct Cursor<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl core::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// PROTECTION-REMOVED variant `stack-guard` only: maps 64 MiB of writable
/// memory directly below the stack, so nothing separates an overflowing
/// stack from a neighbouring mapping (what `bulkhead prove`'s
/// stack-bottom rule forbids on seL4).
fn map_below_stack() {
    const NEIGHBOUR: usize = 64 << 20;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some(start) = maps
        .lines()
        .find(|l| l.ends_with("[stack]"))
        .and_then(|l| l.split('-').next())
        .and_then(|a| usize::from_str_radix(a, 16).ok())
    else {
        return;
    };
    let Some(at) = start.checked_sub(NEIGHBOUR) else {
        return;
    };
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; an
    // anonymous mapping affects no memory Rust knows about.
    let got = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            NEIGHBOUR,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if got as usize != at {
        crate::__print_line(format_args!(
            "protection-removed stack-guard: cannot map below the stack (host error {})",
            errno()
        ));
    }
}

/// PROTECTION-REMOVED variant `wakeups` only: consumes every signal that
/// arrived while the handler ran, without delivering it (clearing the
/// badge after handling instead of before).
fn drop_pending(st: &State) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    // SAFETY: events is a valid array of 64 entries; timeout 0 never blocks.
    let n = unsafe { libc::epoll_wait(st.epfd, events.as_mut_ptr(), 64, 0) };
    for ev in events.iter().take(usize::try_from(n).unwrap_or(0)) {
        if ev.u64 >> 8 == TOK_NOTIFY {
            let id = usize::try_from(ev.u64 & 0xff).unwrap_or(0) % usize::from(MAX_CHANNELS);
            let mut v = 0u64;
            // SAFETY: reads 8 bytes into a local u64 (eventfd protocol); the
            // descriptor is ready, so the read does not block.
            unsafe { libc::read(st.chans[id].notify_in, core::ptr::addr_of_mut!(v).cast(), 8) };
        }
    }
}

/// Maps the regions and builds the tables. Runs before lockdown.
fn set_up(st: &mut State, fds: &[i32]) -> Result<(), &'static str> {
    let boot = Boot::parse(&st.buf[..st.len]).map_err(|_| "malformed boot message")?;
    for r in boot.regions() {
        let fd = fd_at(fds, r.fd)?;
        let p = Perms::from_bits(r.perms);
        let mut prot = 0;
        if p.read {
            prot |= libc::PROT_READ;
        }
        if p.write {
            prot |= libc::PROT_WRITE;
        }
        if p.execute {
            prot |= libc::PROT_EXEC;
        }
        let size = usize::try_from(r.size).map_err(|_| "region too large")?;
        let vaddr = usize::try_from(r.vaddr).map_err(|_| "vaddr too large")?;
        // PROTECTION-REMOVED (test-only feature, crate::protection_removed):
        // the variant that maps a read-only region writable.
        let (fd, prot) = if crate::protection_removed::RO_MAPS_REMOVED && !p.write {
            (reopen_rw(fd)?, prot | libc::PROT_WRITE)
        } else {
            (fd, prot)
        };
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so
        // no memory Rust knows about can be affected; the result is checked.
        let got = unsafe {
            libc::mmap(
                vaddr as *mut libc::c_void,
                size,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                fd,
                0,
            )
        };
        if got as usize != vaddr {
            crate::__print_line(format_args!(
                "cannot map region {} at {vaddr:#x} (+{size:#x}): host error {}",
                r.mr,
                errno()
            ));
            return Err("region mapping failed");
        }
        // The mapping keeps the object alive; the descriptor is not needed.
        // SAFETY: closing a descriptor we own.
        unsafe { libc::close(fd) };
    }
    // SAFETY: plain syscall.
    st.epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if st.epfd < 0 {
        return Err("epoll_create1 failed");
    }
    for c in boot.channels() {
        if c.id >= MAX_CHANNELS {
            return Err("channel id out of range");
        }
        let fd = fd_at(fds, c.fd)?;
        let slot = &mut st.chans[usize::from(c.id)];
        let id = u64::from(c.id);
        match c.kind {
            ChanKind::NotifyIn => {
                slot.notify_in = fd;
                epoll_add(st.epfd, fd, TOK_NOTIFY << 8 | id)?;
            }
            ChanKind::NotifyOut => slot.notify_out = fd,
            ChanKind::PpcCaller => slot.pp_out = map_ppc(fds, c.fd)?,
            ChanKind::PpcCallee => {
                slot.pp_in = map_ppc(fds, c.fd)?;
                epoll_add(st.epfd, slot.pp_in.call, TOK_PPC << 8 | id)?;
            }
            ChanKind::Irq => {
                slot.irq = fd;
                epoll_add(st.epfd, fd, TOK_IRQ << 8 | id)?;
            }
        }
    }
    for c in boot.children() {
        if c < 64 {
            st.children |= 1 << c;
        }
    }
    for v in boot.vcpus() {
        if v < 64 {
            st.vcpus |= 1 << v;
        }
    }
    for (k, (_, idx)) in boot.resources().enumerate() {
        *st.resources.get_mut(k).ok_or("too many host resources")? = fd_at(fds, idx)?;
    }
    epoll_add(st.epfd, CONTROL_FD, TOK_CONTROL << 8)?;
    Ok(())
}

fn send_control(c: Control) -> Result<(), RuntimeError> {
    let rec = c.encode();
    // SAFETY: rec is a valid buffer of CONTROL_LEN bytes.
    let n = unsafe {
        libc::send(
            CONTROL_FD,
            rec.as_ptr().cast(),
            rec.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(RuntimeError::Os(errno()));
    }
    Ok(())
}

/// Where a restart puts the program counter: re-runs `init` and the loop.
extern "C" fn restart_entry<H: Handler>() -> ! {
    run::<H>()
}

pub(crate) fn start<H: Handler>() -> i32 {
    // SAFETY: start runs once, first thing in the process and on its only
    // thread; nothing reads STATE before `ready` is set below.
    let st = unsafe {
        (*STATE.value.get()).write(State {
            buf: [0; MAX_BOOT_LEN],
            len: 0,
            epfd: -1,
            chans: [Chan::NONE; MAX_CHANNELS as usize],
            children: 0,
            vcpus: 0,
            resources: [-1; MAX_RESOURCES],
        })
    };
    let mut fds = [-1i32; MAX_BOOT_FDS];
    let nfds = match receive_boot(st, &mut fds) {
        Ok(n) => n,
        Err(e) => refuse("boot", e),
    };
    if let Err(e) = set_up(st, &fds[..nfds]) {
        refuse("set-up", e);
    }
    STATE.ready.store(true, Ordering::Release);
    if let Err(e) = check_config() {
        refuse("configuration region", e);
    }
    // Pre-warm the allocator that std's panic path uses, so a panic after
    // lockdown needs no new mapping (brk/mmap are forbidden then).
    drop(std::vec::Vec::<u8>::with_capacity(32 * 1024));
    // The restart stack top: below this frame, 16-byte aligned, minus the
    // return-address slot a call would have pushed (x86-64 entry alignment).
    let marker = 0u8;
    let top = (core::ptr::addr_of!(marker) as usize - 512) & !0xf;
    let ready = Control::Ready {
        pc: restart_entry::<H> as *const () as usize as u64,
        sp: (top - 8) as u64,
    };
    if let Err(e) = send_control(ready) {
        refuse("handshake", e);
    }
    // PROTECTION-REMOVED (test-only features, crate::protection_removed):
    // the variants with every PD at one real-time priority, with a mapping
    // below the stack, and without the seccomp allow-list.
    crate::protection_removed::keep_marker();
    if crate::protection_removed::PRIORITIES_REMOVED {
        let p = libc::sched_param { sched_priority: 1 };
        // SAFETY: p is a valid sched_param; pid 0 is this process.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) };
    }
    if crate::protection_removed::STACK_GUARD_REMOVED {
        map_below_stack();
    }
    if !crate::protection_removed::SECCOMP_REMOVED {
        if let Err(e) = seccomp::install() {
            refuse("seccomp", e);
        }
    }
    run::<H>()
}

/// Refuses to start unless the configuration region (if any) parses for
/// this PD; see [`crate::config`].
fn check_config() -> Result<(), ConfigRefusal> {
    match crate::api::load_config() {
        Ok(_) => Ok(()),
        Err(crate::api::ConfigLoadError::Runtime(e)) => Err(ConfigRefusal::Runtime(e)),
        Err(crate::api::ConfigLoadError::Format(e)) => Err(ConfigRefusal::Format(e)),
    }
}

/// Why the configuration region was refused, printable.
enum ConfigRefusal {
    Runtime(RuntimeError),
    Format(bulkhead_config::ConfigError),
}

impl core::fmt::Display for ConfigRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigRefusal::Runtime(e) => write!(f, "{e}"),
            ConfigRefusal::Format(e) => write!(f, "{e}"),
        }
    }
}

fn run<H: Handler>() -> ! {
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut h = H::init();
        event_loop(&mut h)
    }));
    // Only a panic gets here. End like a fault, so the parent (or the
    // monitor) learns of it and may restart this PD.
    let _ = res;
    crate::__print_line(format_args!(
        "PD panicked; stopping with an illegal-instruction fault"
    ));
    // SAFETY: ud2 raises SIGILL by design; nothing after it runs.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}

fn fatal(what: &str) -> ! {
    crate::__print_line(format_args!("runtime: {what} (host error {})", errno()));
    // SAFETY: _exit ends the process.
    unsafe { libc::_exit(70) }
}

fn event_loop<H: Handler>(h: &mut H) -> ! {
    let Some(st) = state() else { fatal("no state") };
    const MAX_EVENTS: usize = 64;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    loop {
        // SAFETY: events is a valid array of MAX_EVENTS entries.
        let n = unsafe { libc::epoll_wait(st.epfd, events.as_mut_ptr(), 64, -1) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            fatal("epoll_wait failed");
        }
        let mut set = ChannelSet::empty();
        for ev in &events[..n.unsigned_abs() as usize] {
            let tok = ev.u64;
            let id = u8::try_from(tok & 0xff).unwrap_or(u8::MAX);
            match tok >> 8 {
                TOK_NOTIFY | TOK_IRQ => {
                    let ch = &st.chans[usize::from(id) % usize::from(MAX_CHANNELS)];
                    let fd = if tok >> 8 == TOK_IRQ {
                        ch.irq
                    } else {
                        ch.notify_in
                    };
                    let mut v = 0u64;
                    // SAFETY: reads 8 bytes into a local u64 (eventfd protocol).
                    let r = unsafe { libc::read(fd, core::ptr::addr_of_mut!(v).cast(), 8) };
                    if r == 8 {
                        set.insert(Channel::new(id));
                    }
                }
                TOK_PPC => serve_ppc(h, st, id),
                TOK_CONTROL => serve_control(h),
                _ => {}
            }
        }
        if !set.is_empty() {
            h.notified(set);
            if crate::protection_removed::WAKEUPS_REMOVED {
                drop_pending(st);
            }
        }
    }
}

fn load_mrs(regs: &[u64]) {
    for (i, v) in regs.iter().enumerate() {
        let _ = mr_set(i, *v);
    }
}

fn snapshot_mrs() -> [u64; MAX_MRS] {
    let mut out = [0u64; MAX_MRS];
    for (i, v) in out.iter_mut().enumerate() {
        *v = mr_get(i).unwrap_or(0);
    }
    out
}

fn serve_ppc<H: Handler>(h: &mut H, st: &State, id: u8) {
    let end = st.chans[usize::from(id) % usize::from(MAX_CHANNELS)].pp_in;
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a local u64 (eventfd protocol).
    if unsafe { libc::read(end.call, core::ptr::addr_of_mut!(v).cast(), 8) } != 8 {
        return;
    }
    let (seq, msg, regs) = ppc_load(end.buf, PPC_CALL_AREA);
    load_mrs(&regs[..usize::try_from(msg.count()).unwrap_or(0)]);
    let reply = h.protected(Channel::new(id), msg);
    ppc_store(end.buf, PPC_REPLY_AREA, seq, reply, &snapshot_mrs());
    // A failed reply signal leaves the caller blocked, as a lost seL4 reply
    // would; nothing better can be done from here.
    let _ = signal(end.reply);
}

fn serve_control<H: Handler>(h: &mut H) {
    let mut rec = [0u8; CONTROL_LEN];
    // SAFETY: rec is a valid writable buffer.
    let n = unsafe { libc::recv(CONTROL_FD, rec.as_mut_ptr().cast(), rec.len(), 0) };
    if n == 0 {
        // The supervisor is gone: nothing is left to run for.
        // SAFETY: _exit ends the process.
        unsafe { libc::_exit(0) };
    }
    if n < 0 {
        return;
    }
    match Control::decode(&rec[..n.unsigned_abs()]) {
        Ok(Control::Fault {
            child,
            kind,
            pc,
            addr,
            detail,
        }) => {
            load_mrs(&[pc, addr, detail]);
            let resume = h.fault(Child::new(child), MessageInfo::new(kind, 3));
            let _ = send_control(Control::FaultReply { child, resume });
        }
        Ok(Control::VcpuFault {
            vcpu,
            pc,
            addr,
            syndrome,
            value,
        }) => {
            load_mrs(&[pc, addr, syndrome, value]);
            LOAD_VALUE.store(0, Ordering::Relaxed);
            IN_VM_FAULT.store(u64::from(vcpu) + 1, Ordering::Relaxed);
            let resume = h.fault(
                Child::new(vcpu),
                MessageInfo::new(crate::FaultKind::VmFault as u64, 4),
            );
            IN_VM_FAULT.store(0, Ordering::Relaxed);
            let value = LOAD_VALUE.load(Ordering::Relaxed);
            let _ = send_control(Control::VcpuReply {
                vcpu,
                resume,
                value,
            });
        }
        _ => {}
    }
}

/// The value [`vcpu_complete_load`] set for the VM fault being handled.
static LOAD_VALUE: AtomicU64 = AtomicU64::new(0);
/// 1 + the vCPU whose VM fault is being handled, or 0 outside one.
static IN_VM_FAULT: AtomicU64 = AtomicU64::new(0);

pub(crate) fn notify(id: u8) -> Result<(), RuntimeError> {
    let st = state().ok_or(RuntimeError::UndeclaredChannel(id))?;
    let ch = st
        .chans
        .get(usize::from(id))
        .ok_or(RuntimeError::UndeclaredChannel(id))?;
    if ch.notify_out < 0 {
        return Err(if ch.declared() {
            RuntimeError::NotifyNotPermitted(id)
        } else {
            RuntimeError::UndeclaredChannel(id)
        });
    }
    let one = 1u64;
    // SAFETY: writes 8 bytes from a local u64 (eventfd protocol).
    let n = unsafe { libc::write(ch.notify_out, core::ptr::addr_of!(one).cast(), 8) };
    if n != 8 {
        return Err(RuntimeError::Os(errno()));
    }
    Ok(())
}

pub(crate) fn pp_call(id: u8, msg: MessageInfo) -> Result<MessageInfo, RuntimeError> {
    let st = state().ok_or(RuntimeError::UndeclaredChannel(id))?;
    let ch = st
        .chans
        .get(usize::from(id))
        .ok_or(RuntimeError::UndeclaredChannel(id))?;
    let end = ch.pp_out;
    if !end.present() {
        return Err(if ch.declared() {
            RuntimeError::NotPpcCaller(id)
        } else {
            RuntimeError::UndeclaredChannel(id)
        });
    }
    let seq = PPC_SEQ.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    ppc_store(end.buf, PPC_CALL_AREA, seq, msg, &snapshot_mrs());
    signal(end.call)?;
    loop {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a local u64. Blocks until the reply, as
        // seL4_Call does (a callee that never replies blocks the caller for
        // good, as on Microkit).
        let n = unsafe { libc::read(end.reply, core::ptr::addr_of_mut!(v).cast(), 8) };
        if n != 8 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(RuntimeError::Os(errno()));
        }
        let (got, reply, regs) = ppc_load(end.buf, PPC_REPLY_AREA);
        if got != seq {
            // A late reply to a call this PD made before it was restarted.
            continue;
        }
        load_mrs(&regs[..usize::try_from(reply.count()).unwrap_or(0)]);
        return Ok(reply);
    }
}

pub(crate) fn irq_ack(id: u8) -> Result<(), RuntimeError> {
    let st = state().ok_or(RuntimeError::NotAnIrq(id))?;
    match st.chans.get(usize::from(id)) {
        // Host IRQs are eventfds the device side writes; reading them in the
        // event loop already re-arms them, so the ack has nothing left to do.
        Some(ch) if ch.irq >= 0 => Ok(()),
        _ => Err(RuntimeError::NotAnIrq(id)),
    }
}

pub(crate) fn region(name: &str) -> Result<Region, RuntimeError> {
    let boot = boot_info().ok_or(RuntimeError::NoSuchRegion)?;
    let r = boot
        .regions()
        .find(|r| r.symbol == name || r.mr == name)
        .ok_or(RuntimeError::NoSuchRegion)?;
    let vaddr = usize::try_from(r.vaddr).map_err(|_| RuntimeError::NoSuchRegion)?;
    let size = usize::try_from(r.size).map_err(|_| RuntimeError::NoSuchRegion)?;
    Ok(Region::from_mapping(
        vaddr,
        size,
        Perms::from_bits(r.perms),
        r.perms & Perms::WRITABLE_SOMEWHERE == 0,
    ))
}

/// The host board has no boot-time copy: the supervisor vouches that a
/// configuration region is read-only everywhere, and `load_config` reads it
/// in place.
pub(crate) fn config_copy() -> Option<Result<&'static [u8], RuntimeError>> {
    None
}

pub(crate) fn region_at(vaddr: u64) -> Result<Region, RuntimeError> {
    let boot = boot_info().ok_or(RuntimeError::NoSuchRegion)?;
    let r = boot
        .regions()
        .find(|r| r.vaddr == vaddr)
        .ok_or(RuntimeError::NoSuchRegion)?;
    let size = usize::try_from(r.size).map_err(|_| RuntimeError::NoSuchRegion)?;
    Ok(Region::from_mapping(
        usize::try_from(vaddr).map_err(|_| RuntimeError::NoSuchRegion)?,
        size,
        Perms::from_bits(r.perms),
        r.perms & Perms::WRITABLE_SOMEWHERE == 0,
    ))
}

pub(crate) fn setvar(name: &str) -> Result<u64, RuntimeError> {
    let boot = boot_info().ok_or(RuntimeError::NoSuchSetvar)?;
    boot.setvars()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .ok_or(RuntimeError::NoSuchSetvar)
}

pub(crate) fn pd_name() -> &'static str {
    boot_info().map_or("?", |b| b.name)
}

pub(crate) fn halt(status: u8) -> ! {
    // SAFETY: _exit ends the process.
    unsafe { libc::_exit(i32::from(status)) }
}

fn check_child(id: u8) -> Result<(), RuntimeError> {
    let st = state().ok_or(RuntimeError::UndeclaredChild(id))?;
    if id < 64 && st.children & (1 << id) != 0 {
        Ok(())
    } else {
        Err(RuntimeError::UndeclaredChild(id))
    }
}

pub(crate) fn child_restart(id: u8) -> Result<(), RuntimeError> {
    check_child(id)?;
    send_control(Control::Restart { child: id })
}

pub(crate) fn child_stop(id: u8) -> Result<(), RuntimeError> {
    check_child(id)?;
    send_control(Control::Stop { child: id })
}

fn check_vcpu(id: u8) -> Result<(), RuntimeError> {
    let st = state().ok_or(RuntimeError::UndeclaredVcpu(id))?;
    if id < 64 && st.vcpus & (1 << id) != 0 {
        Ok(())
    } else {
        Err(RuntimeError::UndeclaredVcpu(id))
    }
}

/// A test guest is a host program, not an image loaded at a guest address:
/// there is no `pc` to restart it at.
pub(crate) fn vcpu_restart(id: u8, _pc: u64) -> Result<(), RuntimeError> {
    check_vcpu(id)?;
    Err(RuntimeError::BackendNotImplemented)
}

pub(crate) fn vcpu_stop(id: u8) -> Result<(), RuntimeError> {
    check_vcpu(id)?;
    send_control(Control::VcpuStop { vcpu: id })
}

pub(crate) fn vcpu_inject_irq(id: u8, irq: u16) -> Result<(), RuntimeError> {
    check_vcpu(id)?;
    send_control(Control::VcpuIrq { vcpu: id, irq })
}

pub(crate) fn vcpu_complete_load(id: u8, value: u64) -> Result<(), RuntimeError> {
    check_vcpu(id)?;
    // Only meaningful while that vCPU's VM fault is being handled; the
    // supervisor ignores the value of a store.
    if IN_VM_FAULT.load(Ordering::Relaxed) != u64::from(id) + 1 {
        return Err(RuntimeError::UndeclaredVcpu(id));
    }
    LOAD_VALUE.store(value, Ordering::Relaxed);
    Ok(())
}

/// The descriptor of host resource `name` (a disk image, TAP or SocketCAN
/// socket bound to this PD in the host-binding file). Host-board drivers
/// only; the seL4 backend has no equivalent.
pub fn host_resource(name: &str) -> Result<i32, RuntimeError> {
    let st = state().ok_or(RuntimeError::NoSuchResource)?;
    let boot = boot_info().ok_or(RuntimeError::NoSuchResource)?;
    boot.resources()
        .position(|(n, _)| n == name)
        .and_then(|k| st.resources.get(k).copied())
        .filter(|fd| *fd >= 0)
        .ok_or(RuntimeError::NoSuchResource)
}
