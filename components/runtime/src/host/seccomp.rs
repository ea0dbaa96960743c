//! The seccomp-BPF allow-list a host-board PD installs on itself after
//! set-up (x86_64).
//!
//! After lockdown a PD may only do what the runtime needs to run the event
//! loop: read/write its descriptors, wait on epoll, send/receive PPC and
//! control messages, tell the time, sleep, and exit — plus positioned I/O,
//! `lseek` and `fdatasync` on its descriptors, which is how a driver uses a
//! bound disk image (no new authority: only descriptors it was given),
//! `io_uring_enter` on a ring it restricted to the same before lockdown,
//! and `fcntl(fd, F_SETFL, O_DIRECT or 0)` ([`FCNTL`]) so a driver can
//! read its image past the page cache.
//! Everything else — in particular `open`/`openat`, `mmap`/`mprotect`/`mremap`/`munmap`/`brk`,
//! `kill`/`tgkill`/`ptrace`/`process_vm_writev`, `fork`/`clone`/`execve` —
//! traps with SIGSYS, which the supervisor (the PD's tracer) reports as a
//! forbidden syscall and stops the PD. A foreign architecture or the x32
//! ABI kills the process outright.

/// Syscalls the runtime needs after lockdown, with the reason for each.
const ALLOWED: &[(u32, &str)] = &[
    (0, "read: eventfds, pipes"),
    (1, "write: eventfds, log lines"),
    (3, "close: the PD's own descriptors"),
    (8, "lseek: the size of a bound disk image (SEEK_END)"),
    (15, "rt_sigreturn: return from a signal frame"),
    (
        17,
        "pread64: a bound disk image (only descriptors the PD was given)",
    ),
    (18, "pwrite64: a bound disk image"),
    (20, "writev: std's stderr on panic"),
    (24, "sched_yield"),
    (35, "nanosleep"),
    (44, "sendto: PPC and control messages"),
    (45, "recvfrom: PPC and control messages"),
    (46, "sendmsg"),
    (47, "recvmsg"),
    (60, "exit"),
    (75, "fdatasync: a bound disk image's flush and FUA writes"),
    (186, "gettid: std's panic path names the current thread"),
    (202, "futex: libc-internal locks"),
    (228, "clock_gettime (when the vDSO falls back)"),
    (230, "clock_nanosleep"),
    (231, "exit_group: halt"),
    (232, "epoll_wait: the event loop"),
    (
        233,
        "epoll_ctl: drop a departed PPC peer from the wait set (only own descriptors)",
    ),
    (281, "epoll_pwait"),
    // io_uring_setup (425) and io_uring_register (427) stay forbidden: only
    // a ring made before lockdown can be entered, so a PD without one gets
    // nothing from this. blk_driver's engine (drivers/host-blk-file
    // engine.rs) restricts its ring before lockdown to READ_FIXED,
    // WRITE_FIXED, FSYNC and FALLOCATE into its own registered buffers, no
    // SQE flag but IO_DRAIN and no further registration: no more than
    // pread64/pwrite64/fdatasync on descriptors the PD already holds.
    (
        426,
        "io_uring_enter: submit to / wait on a ring set up before lockdown",
    ),
    (441, "epoll_pwait2"),
];

/// `fcntl` (72) is allowed in one form only: `F_SETFL` with exactly
/// `O_DIRECT` or 0 — blk_driver puts its bound image's descriptor into
/// direct I/O (the supervisor opens it buffered) and back if the
/// filesystem refuses. No other command: no dup, no owner or signal, no
/// locks, no lease. (Setting the status flags of its own descriptor is all
/// a PD can do with it.)
const FCNTL: (u32, u32, [u32; 2]) = (72, libc::F_SETFL as u32, [libc::O_DIRECT as u32, 0]);

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Classic BPF opcodes (linux/filter.h).
/// BPF_LD | BPF_W | BPF_ABS (BPF_LD and BPF_W are 0).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

// Offsets in struct seccomp_data (the low words of args[1], args[2] on
// little-endian x86_64; fcntl reads both as 32-bit ints).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG1: u32 = 24;
const OFF_ARG2: u32 = 32;

const MAX_INSNS: usize = 64;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Builds the filter program; returns it and its length.
fn program() -> ([libc::sock_filter; MAX_INSNS], usize) {
    let mut p = [insn(0, 0, 0, 0); MAX_INSNS];
    let mut n = 0;
    let mut push = |i| {
        p[n] = i;
        n += 1;
    };
    // Layout: [0] ld arch; [1] arch ok? skip : kill; [2] ld nr;
    // [3] x32? kill; [4..4+k] allowed? -> allow; [4+k..4+k+6] fcntl?
    // (ld arg1; F_SETFL?; ld arg2; O_DIRECT? -> allow; 0? -> allow);
    // trap; allow; kill.
    let k = ALLOWED.len();
    let fcntl_at = 4 + k;
    let trap_at = fcntl_at + 6;
    let allow_at = trap_at + 1;
    let kill_at = allow_at + 1;
    push(insn(BPF_LD_W_ABS, 0, 0, OFF_ARCH));
    // Jump offsets are relative to the next instruction and fit in a u8
    // because the program is shorter than MAX_INSNS (64).
    let off = |to: usize, from: usize| u8::try_from(to - from - 1).unwrap_or(u8::MAX);
    push(insn(BPF_JMP_JEQ_K, 0, off(kill_at, 1), AUDIT_ARCH_X86_64));
    push(insn(BPF_LD_W_ABS, 0, 0, OFF_NR));
    push(insn(BPF_JMP_JGE_K, off(kill_at, 3), 0, X32_SYSCALL_BIT));
    for (i, (nr, _why)) in ALLOWED.iter().enumerate() {
        push(insn(BPF_JMP_JEQ_K, off(allow_at, 4 + i), 0, *nr));
    }
    let (fcntl_nr, setfl, [direct, none]) = FCNTL;
    push(insn(BPF_JMP_JEQ_K, 0, off(trap_at, fcntl_at), fcntl_nr));
    push(insn(BPF_LD_W_ABS, 0, 0, OFF_ARG1));
    push(insn(BPF_JMP_JEQ_K, 0, off(trap_at, fcntl_at + 2), setfl));
    push(insn(BPF_LD_W_ABS, 0, 0, OFF_ARG2));
    push(insn(BPF_JMP_JEQ_K, off(allow_at, fcntl_at + 4), 0, direct));
    push(insn(BPF_JMP_JEQ_K, off(allow_at, fcntl_at + 5), 0, none));
    push(insn(BPF_RET_K, 0, 0, SECCOMP_RET_TRAP));
    push(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
    push(insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS));
    (p, n)
}

/// Installs the allow-list on the calling process. Irreversible.
pub(super) fn install() -> Result<(), &'static str> {
    let (prog, len) = program();
    let len = u16::try_from(len).map_err(|_| "filter too long")?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl; no pointers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err("PR_SET_NO_NEW_PRIVS refused");
    }
    // SAFETY: fprog points at `len` valid instructions that outlive the call
    // (the kernel copies the program).
    if unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            core::ptr::addr_of!(fprog),
        )
    } != 0
    {
        return Err("seccomp filter refused by the host kernel");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program over (arch, nr) the way the kernel would.
    fn eval(arch: u32, nr: u32) -> u32 {
        eval_args(arch, nr, [0; 3])
    }

    /// … with the low words of args[0..3].
    fn eval_args(arch: u32, nr: u32, args: [u32; 3]) -> u32 {
        let (p, n) = program();
        let mut pc = 0;
        let mut acc = 0u32;
        loop {
            let i = p[pc];
            assert!(pc < n);
            match i.code {
                BPF_LD_W_ABS => {
                    acc = match i.k {
                        OFF_ARCH => arch,
                        OFF_NR => nr,
                        OFF_ARG1 => args[1],
                        OFF_ARG2 => args[2],
                        other => panic!("load of offset {other}"),
                    }
                }
                BPF_JMP_JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                BPF_JMP_JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                BPF_RET_K => return i.k,
                _ => panic!("unknown opcode"),
            }
            pc += 1;
        }
    }

    #[test]
    fn allows_exactly_the_list() {
        for (nr, why) in ALLOWED {
            assert_eq!(eval(AUDIT_ARCH_X86_64, *nr), SECCOMP_RET_ALLOW, "{why}");
        }
        // openat, open, mmap, mprotect, munmap, mremap, brk, kill, tgkill,
        // ptrace, process_vm_writev, clone, fork, execve, socket, ioctl
        // … io_uring_setup, io_uring_register (no new ring after lockdown)
        for nr in [
            257, 2, 9, 10, 11, 25, 12, 62, 234, 101, 311, 56, 57, 59, 41, 16, 425, 427,
        ] {
            assert_eq!(eval(AUDIT_ARCH_X86_64, nr), SECCOMP_RET_TRAP, "nr {nr}");
        }
    }

    #[test]
    fn fcntl_only_sets_o_direct_or_clears() {
        let x = |cmd: i32, arg: i32| eval_args(AUDIT_ARCH_X86_64, 72, [3, cmd as u32, arg as u32]);
        assert_eq!(x(libc::F_SETFL, libc::O_DIRECT), SECCOMP_RET_ALLOW);
        assert_eq!(x(libc::F_SETFL, 0), SECCOMP_RET_ALLOW);
        for (cmd, arg) in [
            (libc::F_SETFL, libc::O_DIRECT | libc::O_NONBLOCK),
            (libc::F_SETFL, libc::O_ASYNC),
            (libc::F_GETFL, 0),
            (libc::F_DUPFD, 0),
            (libc::F_DUPFD_CLOEXEC, 100),
            (libc::F_SETOWN, 1),
            (libc::F_SETLK, 0),
            (libc::F_SETFD, 0),
        ] {
            assert_eq!(x(cmd, arg), SECCOMP_RET_TRAP, "fcntl({cmd}, {arg:#x})");
        }
        // The same argument values under other syscalls change nothing.
        assert_eq!(
            eval_args(
                AUDIT_ARCH_X86_64,
                16,
                [3, libc::F_SETFL as u32, libc::O_DIRECT as u32]
            ),
            SECCOMP_RET_TRAP,
            "ioctl"
        );
    }

    #[test]
    fn kills_foreign_arch_and_x32() {
        assert_eq!(eval(0x4000_0003, 0), SECCOMP_RET_KILL_PROCESS, "i386 read");
        assert_eq!(
            eval(AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 1),
            SECCOMP_RET_KILL_PROCESS
        );
    }
}
