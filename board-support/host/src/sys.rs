//! Thin, checked wrappers over the Linux calls the supervisor makes. Every
//! `unsafe` block of the host board outside the runtime is here.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(fd)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A sealed shared-memory object of `size` bytes, filled with `prefill`.
/// Returns the read-write descriptor; size can never change afterwards.
pub fn memfd(name: &str, size: u64, prefill: &[u8]) -> io::Result<OwnedFd> {
    let cname =
        CString::new(name.replace('\0', "_")).map_err(|_| io::Error::other("bad region name"))?;
    // SAFETY: cname is a valid C string for the call.
    let fd = owned(unsafe {
        libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    let len = libc::off_t::try_from(size).map_err(|_| io::Error::other("region too large"))?;
    // SAFETY: plain syscall on a descriptor we own.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), len) })?;
    let mut done = 0;
    while done < prefill.len() {
        // SAFETY: the buffer range is valid; pwrite does not retain it.
        let n = unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                prefill[done..].as_ptr().cast(),
                prefill.len() - done,
                done as libc::off_t,
            )
        };
        if n <= 0 {
            return Err(io::Error::last_os_error());
        }
        done += n.unsigned_abs();
    }
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: plain fcntl on a descriptor we own.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(fd)
}

/// A read-only descriptor of the same object as `fd` (a fresh open of
/// `/proc/self/fd/N` with `O_RDONLY`): a mapping made from it can never be
/// made writable, and it cannot be reopened writable by a PD that has no
/// `open` call.
pub fn reopen_read_only(fd: &OwnedFd) -> io::Result<OwnedFd> {
    let path =
        CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io::Error::other)?;
    // SAFETY: path is a valid C string.
    owned(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })
}

/// An eventfd (one directed notification, or one half of a PPC path);
/// non-blocking unless `blocking` (a PPC reply, which the caller waits on).
pub fn eventfd(blocking: bool) -> io::Result<OwnedFd> {
    let flags = if blocking {
        libc::EFD_CLOEXEC
    } else {
        libc::EFD_CLOEXEC | libc::EFD_NONBLOCK
    };
    // SAFETY: plain syscall.
    owned(unsafe { libc::eventfd(0, flags) })
}

/// A connected `SOCK_SEQPACKET` pair.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both descriptors were just created and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends one packet with `fds` attached (`SCM_RIGHTS`).
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let fd_bytes = std::mem::size_of_val(fds);
    let fd_bytes32 = u32::try_from(fd_bytes).map_err(io::Error::other)?;
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8).max(1)];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: the control buffer has room for one header with fd_bytes of
        // data (CMSG_SPACE), so FIRSTHDR is non-null and DATA is in bounds.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(fd_bytes32) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), fd_bytes);
        }
    }
    // SAFETY: msg points at buffers that live across the call.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one packet without blocking; `Ok(None)` if none is queued,
/// `Ok(Some(0))` at end of stream.
pub fn recv_nonblocking(sock: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: buf is a valid writable buffer.
    let n = unsafe { libc::recv(sock, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(n.unsigned_abs()))
}

/// Sends one packet.
pub fn send(sock: RawFd, data: &[u8]) -> io::Result<()> {
    send_with_fds(sock, data, &[])
}

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl calls.
    let fl = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) })?;
    Ok(())
}

/// Reads what is available from a non-blocking descriptor; `Ok(0)` = EOF,
/// `Err(WouldBlock)` when nothing is there.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.unsigned_abs())
}

/// An epoll instance.
pub struct Epoll(OwnedFd);

impl Epoll {
    /// Creates one.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall.
        Ok(Epoll(owned(unsafe {
            libc::epoll_create1(libc::EPOLL_CLOEXEC)
        })?))
    }

    /// Watches `fd` for input with `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: ev is valid for the call.
        check(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: RawFd) {
        // SAFETY: plain syscall; failure (not watched) is harmless.
        unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    /// Waits up to `timeout_ms`; returns the ready tokens.
    pub fn wait(&self, timeout_ms: i32, out: &mut Vec<u64>) -> io::Result<()> {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 32];
        // SAFETY: evs is a valid array of 32 entries.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), evs.as_mut_ptr(), 32, timeout_ms) };
        out.clear();
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EINTR) {
                Ok(())
            } else {
                Err(e)
            };
        }
        out.extend(evs[..n.unsigned_abs() as usize].iter().map(|e| e.u64));
        Ok(())
    }
}

/// A signalfd for the given signals, which are blocked in the calling thread.
pub fn signalfd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for s in signals {
        // SAFETY: as above.
        unsafe { libc::sigaddset(&mut set, *s) };
    }
    // SAFETY: set is valid; blocks the signals in this thread only.
    check(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
    // SAFETY: set is valid.
    owned(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })
}

/// Outcome of `waitpid`.
pub enum Wait {
    /// Nothing to report.
    Nothing,
    /// Exited with a status.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
    /// A ptrace signal-delivery stop for this signal.
    SignalStop(i32),
    /// A ptrace group-stop or interrupt-stop (`PTRACE_EVENT_STOP`).
    EventStop,
}

/// Non-blocking `waitpid` for one traced child.
pub fn wait_pid(pid: libc::pid_t) -> io::Result<Wait> {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r == 0 {
        return Ok(Wait::Nothing);
    }
    Ok(if libc::WIFEXITED(status) {
        Wait::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Wait::Signaled(libc::WTERMSIG(status))
    } else if libc::WIFSTOPPED(status) {
        if status >> 16 == libc::PTRACE_EVENT_STOP {
            Wait::EventStop
        } else {
            Wait::SignalStop(libc::WSTOPSIG(status))
        }
    } else {
        Wait::Nothing
    })
}

/// Attaches as tracer without stopping the process; the tracee dies if the
/// supervisor does (`PTRACE_O_EXITKILL`).
pub fn ptrace_seize(pid: libc::pid_t) -> io::Result<()> {
    // SAFETY: PTRACE_SEIZE takes no pointers; options in `data`.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            pid,
            0usize,
            libc::PTRACE_O_EXITKILL as usize,
        )
    };
    check(i32::try_from(r).unwrap_or(-1))?;
    Ok(())
}

/// Continues a stopped tracee, delivering `sig` (0 = none).
pub fn ptrace_cont(pid: libc::pid_t, sig: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    let r = unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0usize, sig as usize) };
    check(i32::try_from(r).unwrap_or(-1))?;
    Ok(())
}

/// Stops a running tracee (it reports an `EventStop`).
pub fn ptrace_interrupt(pid: libc::pid_t) -> io::Result<()> {
    // SAFETY: no pointers.
    let r = unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0usize, 0usize) };
    check(i32::try_from(r).unwrap_or(-1))?;
    Ok(())
}

/// What the supervisor needs of a fault's siginfo.
#[derive(Debug, Clone, Copy)]
pub struct SigInfo {
    /// Signal number.
    pub signo: i32,
    /// `si_code`.
    pub code: i32,
    /// `si_addr` (faults) — for SIGSYS the call address.
    pub addr: u64,
    /// For SIGSYS from seccomp: the syscall number.
    pub syscall: i32,
}

/// Reads the stopped tracee's siginfo.
pub fn ptrace_siginfo(pid: libc::pid_t) -> io::Result<SigInfo> {
    // Read it as raw bytes: the field layout differs per signal (a union).
    let mut raw = [0u64; 16];
    // SAFETY: raw is 128 bytes, the size of siginfo_t.
    let r = unsafe { libc::ptrace(libc::PTRACE_GETSIGINFO, pid, 0usize, raw.as_mut_ptr()) };
    check(i32::try_from(r).unwrap_or(-1))?;
    // x86_64 layout: si_signo @0, si_errno @4, si_code @8, union @16;
    // faults: si_addr @16; SIGSYS: _call_addr @16, _syscall @24, _arch @28.
    let lo = |v: u64| {
        let b = v.to_le_bytes();
        i32::from_le_bytes([b[0], b[1], b[2], b[3]])
    };
    Ok(SigInfo {
        signo: lo(raw[0]),
        code: lo(raw[1]),
        addr: raw[2],
        syscall: lo(raw[3]),
    })
}

/// Reads the tracee's registers.
pub fn ptrace_getregs(pid: libc::pid_t) -> io::Result<libc::user_regs_struct> {
    // SAFETY: user_regs_struct is plain data.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: regs is a valid out-buffer of the right type.
    let r = unsafe { libc::ptrace(libc::PTRACE_GETREGS, pid, 0usize, &mut regs) };
    check(i32::try_from(r).unwrap_or(-1))?;
    Ok(regs)
}

/// Writes the tracee's registers.
pub fn ptrace_setregs(pid: libc::pid_t, regs: &libc::user_regs_struct) -> io::Result<()> {
    // SAFETY: regs is a valid in-buffer of the right type.
    let r = unsafe { libc::ptrace(libc::PTRACE_SETREGS, pid, 0usize, regs) };
    check(i32::try_from(r).unwrap_or(-1))?;
    Ok(())
}

/// Sends `sig` to process `pid`.
pub fn kill(pid: libc::pid_t, sig: i32) {
    // SAFETY: plain syscall; failure (already gone) is harmless.
    unsafe { libc::kill(pid, sig) };
}

/// Pins `pid` to host CPU `cpu`.
pub fn pin(pid: libc::pid_t, cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET stays in bounds for cpu < 1024.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 1024 {
        return Err(io::Error::other("cpu number too large"));
    }
    // SAFETY: see above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: set is valid for the call.
    check(unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}

/// The host CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid out-buffer.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return vec![0];
    }
    // SAFETY: CPU_ISSET reads within the set for i < 1024.
    let cpus: Vec<usize> = (0..1024)
        .filter(|i| unsafe { libc::CPU_ISSET(*i, &set) })
        .collect();
    if cpus.is_empty() {
        vec![0]
    } else {
        cpus
    }
}

/// Puts `pid` under SCHED_FIFO at `prio` (1..=99).
pub fn set_fifo(pid: libc::pid_t, prio: i32) -> io::Result<()> {
    let p = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: p is valid for the call.
    check(unsafe { libc::sched_setscheduler(pid, libc::SCHED_FIFO, &p) })?;
    Ok(())
}

/// Opens a disk image for a PD.
pub fn open_disk(path: &std::path::Path, read_only: bool) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let flags = if read_only {
        libc::O_RDONLY
    } else {
        libc::O_RDWR
    };
    // SAFETY: c is a valid C string.
    owned(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// Attaches to TAP interface `name` (created if absent; needs CAP_NET_ADMIN).
pub fn open_tap(name: &str) -> io::Result<OwnedFd> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::other("interface name must be 1..15 bytes"));
    }
    // SAFETY: a valid C string literal.
    let fd =
        owned(unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // struct ifreq: 16-byte name, then a short of flags (40 bytes in all).
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    let flags = i16::try_from(libc::IFF_TAP | libc::IFF_NO_PI).map_err(io::Error::other)?;
    ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which ifr is sized
    // and laid out as.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) })?;
    Ok(fd)
}

/// A raw CAN socket bound to SocketCAN interface `name`.
pub fn open_can(name: &str) -> io::Result<OwnedFd> {
    let c = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: c is a valid C string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain syscall.
    let fd = owned(unsafe {
        libc::socket(
            libc::AF_CAN,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::CAN_RAW,
        )
    })?;
    // SAFETY: sockaddr_can is plain data.
    let mut addr: libc::sockaddr_can = unsafe { std::mem::zeroed() };
    addr.can_family = libc::sa_family_t::try_from(libc::AF_CAN).map_err(io::Error::other)?;
    addr.can_ifindex = i32::try_from(index).map_err(io::Error::other)?;
    // SAFETY: addr is a valid sockaddr_can of the given length.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_can>()).unwrap_or(0),
        )
    })?;
    Ok(fd)
}

/// A non-blocking periodic timer that fires every `period_us` µs (a host
/// timer as an interrupt source; reading it returns the expiry count, like
/// an eventfd).
pub fn timerfd(period_us: u64) -> io::Result<OwnedFd> {
    if period_us == 0 {
        return Err(io::Error::other("timer period must be non-zero"));
    }
    // SAFETY: plain syscall.
    let fd = owned(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
        )
    })?;
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(period_us / 1_000_000).map_err(io::Error::other)?,
        tv_nsec: libc::c_long::try_from((period_us % 1_000_000) * 1000)
            .map_err(io::Error::other)?,
    };
    let spec = libc::itimerspec {
        it_interval: ts,
        it_value: ts,
    };
    // SAFETY: spec is valid for the call; no old value is asked for.
    check(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) })?;
    Ok(fd)
}

/// Reads `out.len()` bytes of a stopped tracee's memory at `addr`, a word at
/// a time (`PTRACE_PEEKTEXT`).
pub fn ptrace_peek(pid: libc::pid_t, addr: u64, out: &mut [u8]) -> io::Result<()> {
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let at = addr.wrapping_add(8 * i as u64);
        // PEEKTEXT returns the word itself, so -1 is only an error when
        // errno says so.
        // SAFETY: errno location is thread-local and valid.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: no pointers are passed; the word comes back as the result.
        let word = unsafe {
            libc::ptrace(
                libc::PTRACE_PEEKTEXT,
                pid,
                usize::try_from(at).unwrap_or(usize::MAX),
                0usize,
            )
        };
        // SAFETY: errno location is thread-local and valid.
        if word == -1 && unsafe { *libc::__errno_location() } != 0 {
            return Err(io::Error::last_os_error());
        }
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
    Ok(())
}

/// Adds 1 to an eventfd counter (wakes whoever polls it).
pub fn eventfd_signal(fd: RawFd) -> io::Result<()> {
    let v = 1u64;
    // SAFETY: writes 8 bytes from a local u64 (eventfd protocol).
    let r = unsafe { libc::write(fd, std::ptr::addr_of!(v).cast(), 8) };
    if r == 8 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes all of `buf` to `fd`.
pub fn write_all(fd: RawFd, buf: &[u8]) -> io::Result<()> {
    // SAFETY: buf is a valid buffer of buf.len() bytes.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if usize::try_from(n).ok() == Some(buf.len()) {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
