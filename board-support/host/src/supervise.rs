//! The supervisor: starts the PD processes, hands each its descriptors, and
//! runs the event loop that turns PD output into prefixed lines and ptrace
//! stops into fault messages, monitor reports and restarts.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use bulkhead_runtime::wire::{
    BootChannel, BootRegion, BootWriter, Control, CONTROL_LEN, MAX_BOOT_FDS, MAX_BOOT_LEN,
    PPC_BUF_SIZE,
};
use bulkhead_runtime::{FaultKind, VmFaultInfo};

use crate::bindings::Bindings;
use crate::guest;
use crate::plan::{ChanObject, Plan};
use crate::{sys, HostError, RunOptions};

/// One line of a run's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The PD the line is from or about; `None` for board-wide lines.
    pub pd: Option<String>,
    /// The text, without prefix or newline.
    pub text: String,
    /// Whether the supervisor (monitor) wrote it rather than the PD.
    pub monitor: bool,
}

impl Line {
    /// The line as printed: `[pd] text` for PD output, the bare text for
    /// monitor and board lines.
    pub fn render(&self) -> String {
        match (&self.pd, self.monitor) {
            (Some(pd), false) => format!("[{pd}] {}", self.text),
            _ => self.text.clone(),
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Exit status for the CLI: 0 = the exit condition was met cleanly.
    pub status: i32,
    /// Every line, in the order the supervisor saw them.
    pub lines: Vec<Line>,
}

impl RunOutcome {
    /// The per-PD transcript: the PD's own lines and the monitor's lines
    /// about it, in order.
    pub fn transcript(&self, pd: &str) -> Vec<String> {
        self.lines
            .iter()
            .filter(|l| l.pd.as_deref() == Some(pd))
            .map(|l| l.text.clone())
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Booting,
    Running,
    FaultStopped,
    Stopped,
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Restart,
    Stop,
}

struct Proc {
    pid: libc::pid_t,
    ctl: OwnedFd,
    out: [Option<OwnedFd>; 2],
    buf: [Vec<u8>; 2],
    state: State,
    entry: Option<(u64, u64)>,
    pending: Pending,
    exit: Option<i32>,
    killed_by_us: bool,
}

/// A test guest: a host program that plays a `<virtual_machine>`'s vCPU.
struct GuestProc {
    /// Index into [`Plan::vms`].
    vm: usize,
    pid: libc::pid_t,
    /// The supervisor's end of the guest's interrupt eventfd.
    irq: OwnedFd,
    out: [Option<OwnedFd>; 2],
    buf: [Vec<u8>; 2],
    /// The access the VMM is emulating, with the registers at the fault.
    waiting: Option<(guest::Decoded, libc::user_regs_struct)>,
    dead: bool,
}

const TOK_SIGNAL: u64 = u64::MAX;
/// Token bit of a guest's output streams (`TOK_GUEST | g << 8 | stream`).
const TOK_GUEST: u64 = 1 << 40;
const TOK_CTL: u64 = 0;
const TOK_OUT: u64 = 1;
const TOK_ERR: u64 = 2;

/// Exit status of a run stopped by `--timeout`.
pub const STATUS_TIMEOUT: i32 = 124;

struct Supervisor<'a> {
    plan: &'a Plan,
    procs: Vec<Proc>,
    guests: Vec<GuestProc>,
    lines: Vec<Line>,
    echo: bool,
    abnormal: bool,
    until_line: Option<regex::Regex>,
    matched: bool,
    epoll: sys::Epoll,
}

impl Supervisor<'_> {
    fn emit(&mut self, line: Line) {
        let text = line.render();
        if self.echo {
            println!("{text}");
        }
        if self.until_line.as_ref().is_some_and(|r| r.is_match(&text)) {
            self.matched = true;
        }
        self.lines.push(line);
    }

    fn board(&mut self, text: String) {
        self.emit(Line {
            pd: None,
            text,
            monitor: true,
        });
    }

    fn monitor(&mut self, pd: usize, text: String) {
        let name = self.plan.pds[pd].name.clone();
        self.emit(Line {
            pd: Some(name),
            text: format!("MONITOR: {text}"),
            monitor: true,
        });
    }

    fn read_output(&mut self, i: usize, stream: usize) {
        let Some(fd) = self.procs[i].out[stream].as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        loop {
            match sys::read(fd, &mut chunk) {
                Ok(0) => {
                    self.epoll.remove(fd);
                    self.procs[i].out[stream] = None;
                    let rest = std::mem::take(&mut self.procs[i].buf[stream]);
                    if !rest.is_empty() {
                        self.pd_line(i, &rest);
                    }
                    return;
                }
                Ok(n) => {
                    self.procs[i].buf[stream].extend_from_slice(&chunk[..n]);
                    while let Some(pos) = self.procs[i].buf[stream].iter().position(|b| *b == b'\n')
                    {
                        let line: Vec<u8> = self.procs[i].buf[stream].drain(..=pos).collect();
                        self.pd_line(i, &line[..pos]);
                    }
                }
                Err(_) => return,
            }
        }
    }

    fn pd_line(&mut self, i: usize, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes)
            .trim_end_matches('\r')
            .to_string();
        let name = self.plan.pds[i].name.clone();
        self.emit(Line {
            pd: Some(name),
            text,
            monitor: false,
        });
    }

    fn child_index(&mut self, parent: usize, child: u8) -> Option<usize> {
        let found = self.lookup_child(parent, child);
        if let Some(c) = found {
            if self.procs[c].state == State::Booting {
                // Its Ready may be queued behind the parent's request.
                self.handle_control(c);
            }
        }
        found
    }

    fn lookup_child(&mut self, parent: usize, child: u8) -> Option<usize> {
        let found = self.plan.pds[parent]
            .children
            .iter()
            .find(|(id, _)| *id == child)
            .map(|(_, i)| *i);
        if found.is_none() {
            self.monitor(
                parent,
                format!(
                    "refused: PD {} has no child {child}",
                    self.plan.pds[parent].name
                ),
            );
            self.abnormal = true;
        }
        found
    }

    fn handle_control(&mut self, i: usize) {
        let fd = self.procs[i].ctl.as_raw_fd();
        let mut rec = [0u8; CONTROL_LEN];
        loop {
            match sys::recv_nonblocking(fd, &mut rec) {
                Ok(Some(0)) | Err(_) => {
                    self.epoll.remove(fd);
                    return;
                }
                Ok(None) => return,
                Ok(Some(n)) => match Control::decode(&rec[..n]) {
                    Ok(Control::Ready { pc, sp }) => {
                        self.procs[i].entry = Some((pc, sp));
                        if self.procs[i].state == State::Booting {
                            self.procs[i].state = State::Running;
                        }
                    }
                    Ok(Control::FaultReply { child, resume }) => {
                        if let Some(c) = self.child_index(i, child) {
                            if resume && self.procs[c].state == State::FaultStopped {
                                self.resume(c);
                            }
                        }
                    }
                    Ok(Control::Restart { child }) => {
                        if let Some(c) = self.child_index(i, child) {
                            self.restart(c);
                        }
                    }
                    Ok(Control::Stop { child }) => {
                        if let Some(c) = self.child_index(i, child) {
                            if self.procs[c].state == State::Running {
                                self.procs[c].pending = Pending::Stop;
                                let _ = sys::ptrace_interrupt(self.procs[c].pid);
                            }
                        }
                    }
                    Ok(Control::VcpuReply {
                        vcpu,
                        resume,
                        value,
                    }) => self.vcpu_reply(i, vcpu, resume, value),
                    Ok(Control::VcpuIrq { vcpu, .. }) => {
                        // One line per test guest: the eventfd counts edges;
                        // the guest reads the device's interrupt status.
                        if let Some(g) = self.guest_of(i, vcpu) {
                            let _ = sys::eventfd_signal(self.guests[g].irq.as_raw_fd());
                        }
                    }
                    Ok(Control::VcpuStop { vcpu }) => {
                        if let Some(g) = self.guest_of(i, vcpu) {
                            self.guest_report(g, "stopped by its VMM".to_string());
                            sys::kill(self.guests[g].pid, libc::SIGKILL);
                        }
                    }
                    Ok(Control::Fault { .. } | Control::VcpuFault { .. }) | Err(_) => {
                        self.monitor(i, "refused: malformed control message".to_string());
                        self.abnormal = true;
                    }
                },
            }
        }
    }

    /// The running test guest of vCPU `vcpu` of VMM `pd`.
    fn guest_of(&self, pd: usize, vcpu: u8) -> Option<usize> {
        self.guests.iter().position(|g| {
            let vm = &self.plan.vms[g.vm];
            vm.vmm == pd && vm.vcpu == vcpu && !g.dead
        })
    }

    fn guest_report(&mut self, g: usize, text: String) {
        let name = self.plan.vms[self.guests[g].vm].name.clone();
        self.emit(Line {
            pd: Some(name.clone()),
            text: format!("MONITOR: guest {name}: {text}"),
            monitor: true,
        });
    }

    /// A guest stopped on a signal. A SIGSEGV outside its RAM is an MMIO
    /// access: decode it and hand it to the VMM as a VM fault. Anything else
    /// stops this guest only.
    fn guest_fault(&mut self, g: usize, signo: i32) {
        let pid = self.guests[g].pid;
        let (Ok(info), Ok(regs)) = (sys::ptrace_siginfo(pid), sys::ptrace_getregs(pid)) else {
            return;
        };
        let vm = &self.plan.vms[self.guests[g].vm];
        let in_ram = vm
            .maps
            .iter()
            .any(|m| info.addr >= m.vaddr && info.addr - m.vaddr < m.size);
        let stop = |sup: &mut Self, why: String| {
            sup.guest_report(g, format!("{why} (pc {:#x}); guest stopped", regs.rip));
            sys::kill(pid, libc::SIGKILL);
        };
        if signo != libc::SIGSEGV {
            return stop(self, format!("signal {signo} at {:#x}", info.addr));
        }
        if in_ram {
            return stop(
                self,
                format!("access to its RAM at {:#x} that its map forbids", info.addr),
            );
        }
        let mut bytes = [0u8; 16];
        if sys::ptrace_peek(pid, regs.rip, &mut bytes).is_err() {
            return stop(self, "instruction bytes unreadable".to_string());
        }
        let d = match guest::decode(&bytes[..guest::MAX_INSN]) {
            Ok(d) => d,
            Err(e) => return stop(self, format!("{e} at gpa {:#x}", info.addr)),
        };
        let (vmm, vcpu) = (vm.vmm, vm.vcpu);
        if self.procs[vmm].state == State::Dead {
            return stop(self, "its VMM is gone".to_string());
        }
        let (write, reg) = match d.op {
            guest::Op::Load { dst } => (false, dst.num),
            guest::Op::Store {
                src: guest::Source::Reg(r),
            } => (true, r.num),
            // An immediate has no register; 31 is the aarch64 zero register.
            guest::Op::Store { .. } => (true, 31),
        };
        let msg = Control::VcpuFault {
            vcpu,
            pc: regs.rip,
            addr: info.addr,
            syndrome: VmFaultInfo::syndrome(d.width, write, reg),
            value: guest::store_value(&regs, &d),
        };
        self.guests[g].waiting = Some((d, regs));
        if sys::send(self.procs[vmm].ctl.as_raw_fd(), &msg.encode()).is_err() {
            self.guests[g].waiting = None;
            stop(self, "its VMM is gone".to_string());
        }
    }

    /// The VMM's answer to a VM fault: complete the access and resume, or
    /// inject an abort (SIGBUS, which ends a guest that does not handle it).
    fn vcpu_reply(&mut self, pd: usize, vcpu: u8, resume: bool, value: u64) {
        let Some(g) = self.guest_of(pd, vcpu) else {
            return;
        };
        let Some((d, mut regs)) = self.guests[g].waiting.take() else {
            self.monitor(pd, format!("refused: vCPU {vcpu} has no VM fault pending"));
            self.abnormal = true;
            return;
        };
        let pid = self.guests[g].pid;
        if resume {
            guest::complete(&mut regs, &d, value);
            if sys::ptrace_setregs(pid, &regs).is_ok() {
                let _ = sys::ptrace_cont(pid, 0);
            }
        } else {
            self.guest_report(
                g,
                format!(
                    "data abort injected (pc {:#x}, {}-byte {})",
                    regs.rip,
                    d.width,
                    match d.op {
                        guest::Op::Load { .. } => "load",
                        guest::Op::Store { .. } => "store",
                    }
                ),
            );
            let _ = sys::ptrace_cont(pid, libc::SIGBUS);
        }
    }

    fn guest_output(&mut self, g: usize, stream: usize) {
        let Some(fd) = self.guests[g].out[stream].as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let name = self.plan.vms[self.guests[g].vm].name.clone();
        let mut chunk = [0u8; 4096];
        loop {
            let n = match sys::read(fd, &mut chunk) {
                Ok(n) => n,
                Err(_) => return,
            };
            if n == 0 {
                self.epoll.remove(fd);
                self.guests[g].out[stream] = None;
            }
            self.guests[g].buf[stream].extend_from_slice(&chunk[..n]);
            while let Some(pos) = self.guests[g].buf[stream].iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.guests[g].buf[stream].drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line[..pos])
                    .trim_end_matches('\r')
                    .to_string();
                self.emit(Line {
                    pd: Some(name.clone()),
                    text,
                    monitor: false,
                });
            }
            if n == 0 {
                return;
            }
        }
    }

    fn reap_guests(&mut self) {
        for g in 0..self.guests.len() {
            while !self.guests[g].dead {
                let pid = self.guests[g].pid;
                let w = sys::wait_pid(pid);
                if !matches!(w, Ok(sys::Wait::Nothing)) {
                    self.guest_output(g, 0);
                    self.guest_output(g, 1);
                }
                match w {
                    Ok(sys::Wait::Nothing) => break,
                    Ok(sys::Wait::Exited(s)) => {
                        self.guests[g].dead = true;
                        self.guest_report(g, format!("exited with status {s}"));
                    }
                    Ok(sys::Wait::Signaled(s)) => {
                        self.guests[g].dead = true;
                        self.guest_report(g, format!("killed by signal {s}"));
                    }
                    Ok(sys::Wait::SignalStop(sig)) => match sig {
                        libc::SIGSEGV
                        | libc::SIGBUS
                        | libc::SIGILL
                        | libc::SIGFPE
                        | libc::SIGTRAP => self.guest_fault(g, sig),
                        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => {
                            let _ = sys::ptrace_cont(pid, 0);
                        }
                        other => {
                            let _ = sys::ptrace_cont(pid, other);
                        }
                    },
                    Ok(sys::Wait::EventStop) => {
                        let _ = sys::ptrace_cont(pid, 0);
                    }
                    Err(_) => self.guests[g].dead = true,
                }
            }
        }
    }

    fn resume(&mut self, c: usize) {
        if sys::ptrace_cont(self.procs[c].pid, 0).is_ok() {
            self.procs[c].state = State::Running;
        }
    }

    fn restart(&mut self, c: usize) {
        match self.procs[c].state {
            State::FaultStopped | State::Stopped => self.reset_and_go(c),
            State::Running => {
                self.procs[c].pending = Pending::Restart;
                let _ = sys::ptrace_interrupt(self.procs[c].pid);
            }
            State::Booting | State::Dead => {
                let name = self.plan.pds[c].name.clone();
                self.monitor(c, format!("cannot restart PD {name}: it is not running"));
            }
        }
    }

    /// Microkit restart: PC to the entry, SP to the initial stack top,
    /// memory untouched.
    fn reset_and_go(&mut self, c: usize) {
        let pid = self.procs[c].pid;
        let Some((pc, sp)) = self.procs[c].entry else {
            let name = self.plan.pds[c].name.clone();
            self.monitor(
                c,
                format!("cannot restart PD {name}: it faulted before it finished booting"),
            );
            return;
        };
        match sys::ptrace_getregs(pid) {
            Ok(mut regs) => {
                regs.rip = pc;
                regs.rsp = sp;
                regs.rbp = 0;
                regs.rax = 0;
                // Not in a syscall any more: stops the kernel from restarting
                // an interrupted one at the new PC.
                regs.orig_rax = u64::MAX;
                if sys::ptrace_setregs(pid, &regs).is_ok() {
                    self.procs[c].pending = Pending::None;
                    self.resume(c);
                }
            }
            Err(e) => {
                let name = self.plan.pds[c].name.clone();
                self.monitor(c, format!("cannot restart PD {name}: {e}"));
            }
        }
    }

    fn classify(&self, i: usize, info: &sys::SigInfo, pc: u64) -> (FaultKind, String) {
        let map = self.plan.pds[i]
            .maps
            .iter()
            .find(|m| info.addr >= m.vaddr && info.addr - m.vaddr < m.size);
        match info.signo {
            libc::SIGSEGV => match (map, info.code) {
                (Some(m), _) if m.perms & 2 == 0 && pc != info.addr => (
                    FaultKind::Permission,
                    format!(
                        "write to read-only map of {}",
                        self.plan.regions[m.region].name
                    ),
                ),
                (Some(m), _) if pc == info.addr => (
                    FaultKind::Permission,
                    format!(
                        "execute in non-executable map of {}",
                        self.plan.regions[m.region].name
                    ),
                ),
                (_, 1) => (FaultKind::Unmapped, "access outside the maps".to_string()),
                _ => (
                    FaultKind::Permission,
                    "permission fault outside the maps".to_string(),
                ),
            },
            libc::SIGBUS => (FaultKind::Bus, "bus error".to_string()),
            libc::SIGILL => (FaultKind::Instruction, "illegal instruction".to_string()),
            libc::SIGFPE => (FaultKind::Arithmetic, "arithmetic fault".to_string()),
            libc::SIGTRAP => (FaultKind::Breakpoint, "breakpoint".to_string()),
            _ => (FaultKind::Other, format!("signal {}", info.signo)),
        }
    }

    fn fault(&mut self, i: usize) {
        let pid = self.procs[i].pid;
        let (Ok(info), Ok(regs)) = (sys::ptrace_siginfo(pid), sys::ptrace_getregs(pid)) else {
            return;
        };
        self.procs[i].state = State::FaultStopped;
        let (kind, what) = self.classify(i, &info, regs.rip);
        let parent = self.plan.pds[i]
            .parent
            .filter(|(p, _)| self.procs[*p].state != State::Dead);
        if let Some((p, child)) = parent {
            let msg = Control::Fault {
                child,
                kind: kind as u64,
                pc: regs.rip,
                addr: info.addr,
                detail: info.signo.unsigned_abs().into(),
            };
            if sys::send(self.procs[p].ctl.as_raw_fd(), &msg.encode()).is_ok() {
                return;
            }
        }
        let name = self.plan.pds[i].name.clone();
        self.monitor(
            i,
            format!(
                "fault in PD {name}: {what} at {:#x} (pc {:#x})",
                info.addr, regs.rip
            ),
        );
        self.abnormal = true;
    }

    fn forbidden_syscall(&mut self, i: usize) {
        let pid = self.procs[i].pid;
        let Ok(info) = sys::ptrace_siginfo(pid) else {
            return;
        };
        if info.code != 1 {
            // A SIGSYS not from seccomp: deliver it like any other signal.
            let _ = sys::ptrace_cont(pid, libc::SIGSYS);
            return;
        }
        let name = self.plan.pds[i].name.clone();
        self.monitor(
            i,
            format!(
                "PD {name} stopped: forbidden syscall {} ({})",
                info.syscall,
                syscall_name(info.syscall)
            ),
        );
        self.abnormal = true;
        self.procs[i].killed_by_us = true;
        sys::kill(pid, libc::SIGKILL);
    }

    fn exited(&mut self, i: usize, status: i32, signal: bool) {
        // Handle what the PD sent before it died (a restart request, say).
        self.handle_control(i);
        self.procs[i].state = State::Dead;
        self.procs[i].exit = Some(if signal { 128 + status } else { status });
        // A guest whose VMM is gone can never be answered: stop it.
        for g in 0..self.guests.len() {
            if !self.guests[g].dead && self.plan.vms[self.guests[g].vm].vmm == i {
                self.guest_report(g, "its VMM is gone; guest stopped".to_string());
                sys::kill(self.guests[g].pid, libc::SIGKILL);
            }
        }
        let name = self.plan.pds[i].name.clone();
        if signal && !self.procs[i].killed_by_us {
            self.monitor(i, format!("PD {name} killed by signal {status}"));
            self.abnormal = true;
        } else if !signal && status != 0 {
            self.monitor(i, format!("PD {name} exited with status {status}"));
            self.abnormal = true;
        }
    }

    fn reap(&mut self) {
        for i in 0..self.procs.len() {
            while self.procs[i].state != State::Dead {
                let pid = self.procs[i].pid;
                let w = sys::wait_pid(pid);
                if !matches!(w, Ok(sys::Wait::Nothing)) {
                    // What the PD printed before it stopped comes first.
                    self.read_output(i, 0);
                    self.read_output(i, 1);
                }
                match w {
                    Ok(sys::Wait::Nothing) => break,
                    Ok(sys::Wait::Exited(s)) => self.exited(i, s, false),
                    Ok(sys::Wait::Signaled(s)) => self.exited(i, s, true),
                    Ok(sys::Wait::SignalStop(sig)) => match sig {
                        libc::SIGSEGV
                        | libc::SIGBUS
                        | libc::SIGILL
                        | libc::SIGFPE
                        | libc::SIGTRAP => self.fault(i),
                        libc::SIGSYS => self.forbidden_syscall(i),
                        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => {
                            let _ = sys::ptrace_cont(pid, 0);
                        }
                        other => {
                            let _ = sys::ptrace_cont(pid, other);
                        }
                    },
                    Ok(sys::Wait::EventStop) => match self.procs[i].pending {
                        Pending::Restart => self.reset_and_go(i),
                        Pending::Stop => {
                            self.procs[i].pending = Pending::None;
                            self.procs[i].state = State::Stopped;
                        }
                        Pending::None => {
                            let _ = sys::ptrace_cont(pid, 0);
                        }
                    },
                    Err(_) => {
                        self.procs[i].state = State::Dead;
                        self.procs[i].exit.get_or_insert(-1);
                    }
                }
            }
        }
    }

    /// Whether PD `i` can never run again on its own or by its parent.
    fn ended(&self, i: usize) -> bool {
        match self.procs[i].state {
            State::Dead => true,
            State::FaultStopped | State::Stopped => self.plan.pds[i]
                .parent
                .is_none_or(|(p, _)| self.procs[p].state == State::Dead),
            _ => false,
        }
    }

    fn kill_all(&mut self) {
        for g in 0..self.guests.len() {
            if !self.guests[g].dead {
                sys::kill(self.guests[g].pid, libc::SIGKILL);
                let mut status = 0;
                // SAFETY: status is a valid out-pointer; blocking wait on our
                // own child, which was just sent SIGKILL.
                unsafe { libc::waitpid(self.guests[g].pid, &mut status, libc::__WALL) };
                self.guests[g].dead = true;
            }
            for s in 0..2 {
                if let Some(fd) = self.guests[g].out[s].as_ref().map(AsRawFd::as_raw_fd) {
                    // SAFETY: plain fcntl on our descriptor.
                    unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
                    self.guest_output(g, s);
                }
            }
        }
        for p in &mut self.procs {
            if p.state != State::Dead {
                p.killed_by_us = true;
                sys::kill(p.pid, libc::SIGKILL);
            }
        }
        for i in 0..self.procs.len() {
            if self.procs[i].state == State::Dead {
                continue;
            }
            let mut status = 0;
            // SAFETY: status is a valid out-pointer; blocking wait on our own
            // child, which was just sent SIGKILL.
            unsafe { libc::waitpid(self.procs[i].pid, &mut status, libc::__WALL) };
            self.procs[i].state = State::Dead;
        }
        // Collect every line still in the pipes.
        for i in 0..self.procs.len() {
            for s in 0..2 {
                if let Some(fd) = self.procs[i].out[s].as_ref().map(AsRawFd::as_raw_fd) {
                    // Blocking now: the writers are gone, so this ends at EOF.
                    // SAFETY: plain fcntl on our descriptor.
                    unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
                    self.read_output(i, s);
                }
            }
        }
    }
}

/// x86_64 names of the syscalls a report is likely to name.
fn syscall_name(nr: i32) -> &'static str {
    match nr {
        2 => "open",
        9 => "mmap",
        10 => "mprotect",
        11 => "munmap",
        12 => "brk",
        16 => "ioctl",
        25 => "mremap",
        28 => "madvise",
        41 => "socket",
        42 => "connect",
        56 => "clone",
        57 => "fork",
        58 => "vfork",
        59 => "execve",
        62 => "kill",
        101 => "ptrace",
        200 => "tkill",
        234 => "tgkill",
        257 => "openat",
        310 => "process_vm_readv",
        311 => "process_vm_writev",
        322 => "execveat",
        435 => "clone3",
        437 => "openat2",
        _ => "not in the allow-list",
    }
}

fn fifo_ranks(plan: &Plan) -> Vec<i32> {
    let mut prios: Vec<u8> = plan.pds.iter().map(|p| p.priority).collect();
    prios.sort_unstable();
    prios.dedup();
    plan.pds
        .iter()
        .map(|p| {
            1 + i32::try_from(prios.iter().position(|x| *x == p.priority).unwrap_or(0)).unwrap_or(0)
        })
        .collect()
}

/// Starts every PD of `plan` (with `programs[i]` for PD `i`) and supervises
/// them until the exit condition of `opts`.
pub fn run_plan(
    plan: &Plan,
    programs: &[PathBuf],
    guests: &[(usize, PathBuf)],
    base: &Path,
    binds: &Bindings,
    opts: &RunOptions,
    until_line: Option<regex::Regex>,
) -> Result<RunOutcome, HostError> {
    let os = |what| move |e| HostError::Os(what, e);
    // Host resources are opened here, before any PD runs; each PD gets only
    // its own, as descriptors (it cannot open anything after lockdown).
    let mut resources: Vec<Vec<(String, OwnedFd)>> = plan.pds.iter().map(|_| Vec::new()).collect();
    let pd_index = |pd: &str| {
        plan.pds
            .iter()
            .position(|p| p.name == pd)
            .ok_or_else(|| HostError::Bindings(format!("host binding names unknown PD {pd:?}")))
    };
    for d in &binds.disk {
        let fd = sys::open_disk(&base.join(&d.path), d.read_only)
            .map_err(os("opening a bound disk image"))?;
        resources[pd_index(&d.pd)?].push((d.name.clone(), fd));
    }
    for t in &binds.tap {
        let fd = sys::open_tap(&t.interface).map_err(os("attaching a bound TAP interface"))?;
        resources[pd_index(&t.pd)?].push((t.name.clone(), fd));
    }
    for c in &binds.can {
        let fd = sys::open_can(&c.interface).map_err(os("binding a SocketCAN interface"))?;
        resources[pd_index(&c.pd)?].push((c.name.clone(), fd));
    }
    // Kernel objects: one sealed memfd per region (plus its read-only
    // reopen); channel objects below.
    let mut regions = Vec::new();
    for r in &plan.regions {
        let prefill = match &r.prefill {
            Some(p) => std::fs::read(base.join(p)).map_err(os("prefill file"))?,
            None => Vec::new(),
        };
        if prefill.len() as u64 > r.size {
            return Err(HostError::Os(
                "prefill file",
                std::io::Error::other(format!("larger than region {}", r.name)),
            ));
        }
        let rw = sys::memfd(&r.name, r.size, &prefill).map_err(os("memfd"))?;
        let ro = sys::reopen_read_only(&rw).map_err(os("read-only reopen"))?;
        regions.push((rw, ro));
    }
    // An eventfd per notification direction; per PPC direction a call
    // eventfd, a (blocking) reply eventfd and a one-page message buffer that
    // only its two ends map.
    let mut objects: Vec<Vec<OwnedFd>> = Vec::new();
    for o in &plan.objects {
        objects.push(match o {
            ChanObject::Event => vec![sys::eventfd(false).map_err(os("eventfd"))?],
            ChanObject::Irq { pd, irq } => {
                match binds
                    .timer_irq
                    .iter()
                    .find(|t| &t.pd == pd && t.irq == *irq)
                {
                    Some(t) => vec![sys::timerfd(t.period_us).map_err(os("timerfd"))?],
                    // Not bound to a host device: a line that never fires.
                    None => vec![sys::eventfd(false).map_err(os("eventfd"))?],
                }
            }
            ChanObject::Ppc => vec![
                sys::eventfd(false).map_err(os("eventfd"))?,
                sys::eventfd(true).map_err(os("eventfd"))?,
                sys::memfd("ppc", PPC_BUF_SIZE as u64, &[]).map_err(os("memfd"))?,
            ],
        });
    }
    let signal_fd =
        sys::signalfd(&[libc::SIGINT, libc::SIGTERM, libc::SIGCHLD]).map_err(os("signalfd"))?;
    let mut sup = Supervisor {
        plan,
        procs: Vec::new(),
        guests: Vec::new(),
        lines: Vec::new(),
        echo: opts.echo,
        abnormal: false,
        until_line,
        matched: false,
        epoll: sys::Epoll::new().map_err(os("epoll"))?,
    };
    sup.epoll
        .add(signal_fd.as_raw_fd(), TOK_SIGNAL)
        .map_err(os("epoll"))?;

    let cpus = sys::allowed_cpus();
    let ranks = fifo_ranks(plan);
    let mut rt_ok = true;
    if plan.pds.iter().any(|p| p.budget < p.period) {
        sup.board("host board: budgets/periods are NOT enforced (PDs run to completion at their priority)".to_string());
    }
    // Regions some PD maps writable: never handed out as immutable bytes.
    let mut writable = vec![false; plan.regions.len()];
    for m in plan.pds.iter().flat_map(|p| &p.maps) {
        writable[m.region] |= m.perms & 2 != 0;
    }
    let my_pid = std::process::id();
    let mut pgid = 0;
    for (i, pd) in plan.pds.iter().enumerate() {
        let (sup_end, pd_end) = sys::seqpacket_pair().map_err(os("socketpair"))?;
        let pd_raw = pd_end.as_raw_fd();
        let mut cmd = Command::new(&programs[i]);
        cmd.env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(pgid);
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe calls (prctl, getppid, sigprocmask, fcntl, dup2,
        // close_range/close, _exit); it touches no locks or allocations.
        unsafe {
            cmd.pre_exec(move || {
                // No orphans: the PD dies with the supervisor.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != i32::try_from(my_pid).unwrap_or(-1) {
                    libc::_exit(1);
                }
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                // The control socket is fd 3.
                if pd_raw == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0);
                } else if libc::dup2(pd_raw, 3) != 3 {
                    libc::_exit(1);
                }
                // Nothing else: not even descriptors the supervisor itself
                // inherited without close-on-exec from whoever started it.
                if libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) != 0 {
                    for fd in 4..65536 {
                        libc::close(fd);
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| HostError::Os("starting a PD program", e))?;
        drop(pd_end);
        let pid = i32::try_from(child.id()).unwrap_or(-1);
        if pgid == 0 {
            pgid = pid;
        }
        let out = child.stdout.take().map(OwnedFd::from);
        let err = child.stderr.take().map(OwnedFd::from);
        // From here the supervisor, not std, waits for the process.
        drop(child);
        if let Err(e) = sys::ptrace_seize(pid) {
            sys::kill(pid, libc::SIGKILL);
            sup.kill_all();
            return Err(HostError::Os(
                "ptrace (the host board traces every PD; is ptrace permitted here?)",
                e,
            ));
        }
        let host_cpu = cpus[usize::try_from(pd.cpu).unwrap_or(0) % cpus.len()];
        if let Err(e) = sys::pin(pid, host_cpu) {
            sup.board(format!(
                "host board: cannot pin PD {} to CPU {host_cpu}: {e}",
                pd.name
            ));
        }
        if rt_ok {
            if let Err(e) = sys::set_fifo(pid, ranks[i]) {
                rt_ok = false;
                sup.board(format!(
                    "host board: priorities are NOT enforced (SCHED_FIFO refused: {e})"
                ));
            }
        }
        for (s, fd) in [&out, &err].into_iter().enumerate() {
            if let Some(fd) = fd {
                sys::set_nonblocking(fd.as_raw_fd()).map_err(os("pipe"))?;
                sup.epoll
                    .add(fd.as_raw_fd(), (i as u64) << 8 | (TOK_OUT + s as u64))
                    .map_err(os("epoll"))?;
            }
        }
        sys::set_nonblocking(sup_end.as_raw_fd()).map_err(os("socket"))?;
        sup.epoll
            .add(sup_end.as_raw_fd(), (i as u64) << 8 | TOK_CTL)
            .map_err(os("epoll"))?;
        sup.procs.push(Proc {
            pid,
            ctl: sup_end,
            out: [out, err],
            buf: [Vec::new(), Vec::new()],
            state: State::Booting,
            entry: None,
            pending: Pending::None,
            exit: None,
            killed_by_us: false,
        });
        // The boot message: this PD's descriptors and nothing else.
        let mut fds: Vec<RawFd> = Vec::new();
        let mut buf = vec![0u8; MAX_BOOT_LEN];
        let len = (|| {
            let mut w = BootWriter::new(&mut buf, &pd.name, pd.passive)?;
            w.section(
                u16::try_from(pd.maps.len())
                    .map_err(|_| bulkhead_runtime::wire::WireError::NoRoom)?,
            )?;
            for m in &pd.maps {
                let (rw, ro) = &regions[m.region];
                fds.push(if m.perms & 2 != 0 {
                    rw.as_raw_fd()
                } else {
                    ro.as_raw_fd()
                });
                w.region(&BootRegion {
                    mr: &plan.regions[m.region].name,
                    symbol: &m.symbol,
                    vaddr: m.vaddr,
                    size: m.size,
                    perms: m.perms
                        | if writable[m.region] {
                            bulkhead_runtime::Perms::WRITABLE_SOMEWHERE
                        } else {
                            0
                        },
                    fd: u16::try_from(fds.len() - 1).unwrap_or(u16::MAX),
                })?;
            }
            w.section(u16::try_from(pd.handles.len()).unwrap_or(u16::MAX))?;
            for h in &pd.handles {
                let first = fds.len();
                fds.extend(objects[h.object].iter().map(AsRawFd::as_raw_fd));
                w.channel(&BootChannel {
                    id: h.id,
                    kind: h.kind,
                    fd: u16::try_from(first).unwrap_or(u16::MAX),
                })?;
            }
            w.section(u16::try_from(pd.setvars.len()).unwrap_or(u16::MAX))?;
            for (k, v) in &pd.setvars {
                w.setvar(k, *v)?;
            }
            w.section(u16::try_from(pd.children.len()).unwrap_or(u16::MAX))?;
            for (id, _) in &pd.children {
                w.id(*id)?;
            }
            w.section(u16::try_from(pd.vcpus.len()).unwrap_or(u16::MAX))?;
            for id in &pd.vcpus {
                w.id(*id)?;
            }
            w.section(u16::try_from(resources[i].len()).unwrap_or(u16::MAX))?;
            for (name, fd) in &resources[i] {
                fds.push(fd.as_raw_fd());
                w.resource(name, u16::try_from(fds.len() - 1).unwrap_or(u16::MAX))?;
            }
            Ok::<usize, bulkhead_runtime::wire::WireError>(w.finish())
        })()
        .map_err(|e| HostError::Os("boot message", std::io::Error::other(format!("{e:?}"))))?;
        if fds.len() > MAX_BOOT_FDS {
            sup.kill_all();
            return Err(HostError::Os(
                "boot message",
                std::io::Error::other("PD has more than 253 handles"),
            ));
        }
        sys::send_with_fds(sup.procs[i].ctl.as_raw_fd(), &buf[..len], &fds)
            .map_err(os("sending boot message"))?;
    }
    for (vm, program) in guests {
        if let Err(e) = start_guest(&mut sup, *vm, program, &regions, pgid) {
            sup.kill_all();
            return Err(e);
        }
    }
    // The PDs hold their descriptors now; the supervisor keeps none, so a
    // PD's death is visible to its peers (EOF on PPC sockets).
    drop(regions);
    drop(objects);
    drop(resources);

    let start = Instant::now();
    let mut tokens = Vec::new();
    let mut stop_signal = None;
    let status = loop {
        let timeout_ms = match opts.timeout {
            Some(t) => {
                let left = t.saturating_sub(start.elapsed());
                if left.is_zero() {
                    sup.board(format!(
                        "host board: timeout after {} s, stopping",
                        t.as_secs_f64()
                    ));
                    break STATUS_TIMEOUT;
                }
                i32::try_from(left.as_millis().min(20)).unwrap_or(20)
            }
            None => 20,
        };
        sup.epoll
            .wait(timeout_ms, &mut tokens)
            .map_err(os("epoll_wait"))?;
        for tok in tokens.clone() {
            if tok == TOK_SIGNAL {
                let mut si = [0u8; 128];
                while let Ok(n) = sys::read(signal_fd.as_raw_fd(), &mut si) {
                    if n < 4 {
                        break;
                    }
                    let signo = i32::from_ne_bytes([si[0], si[1], si[2], si[3]]);
                    if signo == libc::SIGINT || signo == libc::SIGTERM {
                        stop_signal = Some(signo);
                    }
                }
                continue;
            }
            if tok & TOK_GUEST != 0 {
                let g = usize::try_from((tok & !TOK_GUEST) >> 8).unwrap_or(usize::MAX);
                if g < sup.guests.len() {
                    sup.guest_output(g, usize::from(tok & 0xff == TOK_ERR));
                }
                continue;
            }
            let i = usize::try_from(tok >> 8).unwrap_or(usize::MAX);
            if i >= sup.procs.len() {
                continue;
            }
            match tok & 0xff {
                TOK_CTL => sup.handle_control(i),
                TOK_OUT => sup.read_output(i, 0),
                TOK_ERR => sup.read_output(i, 1),
                _ => {}
            }
        }
        sup.reap();
        sup.reap_guests();
        if let Some(sig) = stop_signal {
            sup.board(format!("host board: signal {sig}, stopping every PD"));
            break 128 + sig;
        }
        if sup.matched {
            break 0;
        }
        if let Some(name) = &opts.until_exit {
            if let Some(i) = plan.pds.iter().position(|p| &p.name == name) {
                if sup.procs[i].state == State::Dead {
                    break sup.procs[i].exit.unwrap_or(1);
                }
            }
        }
        let all_ended = (0..plan.pds.len())
            .filter(|i| !plan.pds[*i].passive)
            .all(|i| sup.ended(i));
        if all_ended {
            if opts.until_line.is_some() || opts.until_exit.is_some() {
                sup.board("host board: every PD has ended before the exit condition".to_string());
                break 1;
            }
            break i32::from(sup.abnormal);
        }
    };
    sup.kill_all();
    // A line matched only while draining still counts for the caller's view.
    Ok(RunOutcome {
        status,
        lines: sup.lines,
    })
}

/// Environment variable naming a test guest's RAM maps:
/// `gpa,size,perms;…` (perms r=1 w=2 x=4), the descriptors from fd 5 on.
pub const GUEST_MAPS_ENV: &str = "BULKHEAD_GUEST_MAPS";
/// A test guest reads one byte here before it starts (it is traced then).
pub const GUEST_GO_FD: RawFd = 3;

/// Starts the test guest of `plan.vms[vm]`: a start pipe as fd 3, its
/// interrupt eventfd as fd 4, its RAM memfds from fd 5 (described in
/// [`GUEST_MAPS_ENV`]), traced like a PD, and nothing else.
fn start_guest(
    sup: &mut Supervisor<'_>,
    vm: usize,
    program: &Path,
    regions: &[(OwnedFd, OwnedFd)],
    pgid: libc::pid_t,
) -> Result<(), HostError> {
    let os = |what| move |e| HostError::Os(what, e);
    let plan = sup.plan;
    let irq = sys::eventfd(false).map_err(os("eventfd"))?;
    let mut fds: Vec<RawFd> = vec![irq.as_raw_fd()];
    let mut desc = Vec::new();
    for m in &plan.vms[vm].maps {
        let (rw, ro) = &regions[m.region];
        fds.push(if m.perms & 2 != 0 {
            rw.as_raw_fd()
        } else {
            ro.as_raw_fd()
        });
        desc.push(format!("{:#x},{:#x},{}", m.vaddr, m.size, m.perms));
    }
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env(GUEST_MAPS_ENV, desc.join(";"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(pgid);
    let my_pid = std::process::id();
    // The guest runs straight into trapping accesses, so it must not touch
    // MMIO before it is traced: it waits for a byte on this pipe (its fd 3,
    // see GUEST_GO_FD) first. (Blocking before exec would deadlock: spawn
    // waits for the exec.)
    let (go_r, go_w) = sys::pipe().map_err(os("pipe"))?;
    fds.insert(0, go_r.as_raw_fd());
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (prctl, getppid, sigprocmask, dup2,
    // close_range/close, _exit); it touches no locks or allocations (`fds`
    // was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != i32::try_from(my_pid).unwrap_or(-1) {
                libc::_exit(1);
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            // Move every source above the target range first, so a dup2
            // never overwrites a source not yet placed.
            let high = 1000;
            for (k, fd) in fds.iter().enumerate() {
                let k = i32::try_from(k).unwrap_or(0);
                if libc::dup2(*fd, high + k) < 0 {
                    libc::_exit(1);
                }
            }
            for k in 0..fds.len() {
                let k = i32::try_from(k).unwrap_or(0);
                if libc::dup2(high + k, GUEST_GO_FD + k) < 0 {
                    libc::_exit(1);
                }
            }
            let first =
                u32::try_from(GUEST_GO_FD).unwrap_or(3) + u32::try_from(fds.len()).unwrap_or(0);
            if libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) != 0 {
                for fd in i32::try_from(first).unwrap_or(4)..65536 {
                    libc::close(fd);
                }
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| HostError::Os("starting a test-guest program", e))?;
    let pid = i32::try_from(child.id()).unwrap_or(-1);
    let out = child.stdout.take().map(OwnedFd::from);
    let err = child.stderr.take().map(OwnedFd::from);
    drop(child);
    drop(go_r);
    if let Err(e) = sys::ptrace_seize(pid) {
        sys::kill(pid, libc::SIGKILL);
        return Err(HostError::Os("ptrace of a test guest", e));
    }
    if sys::write_all(go_w.as_raw_fd(), &[1]).is_err() {
        sys::kill(pid, libc::SIGKILL);
        return Err(HostError::Os(
            "starting a test guest",
            std::io::Error::last_os_error(),
        ));
    }
    drop(go_w);
    let g = sup.guests.len() as u64;
    for (s, fd) in [&out, &err].into_iter().enumerate() {
        if let Some(fd) = fd {
            sys::set_nonblocking(fd.as_raw_fd()).map_err(os("pipe"))?;
            sup.epoll
                .add(fd.as_raw_fd(), TOK_GUEST | g << 8 | (TOK_OUT + s as u64))
                .map_err(os("epoll"))?;
        }
    }
    sup.guests.push(GuestProc {
        vm,
        pid,
        irq,
        out: [out, err],
        buf: [Vec::new(), Vec::new()],
        waiting: None,
        dead: false,
    });
    Ok(())
}
