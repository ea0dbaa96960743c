//! aarch64 MCS system calls: numbers (all targets) and `svc #0` wrappers
//! (aarch64 bare metal only).
//!
//! Numbers: seL4 `libsel4/include/api/syscall.xml`, numbered -1, -2, … in
//! file order across the MCS API list and then the debug list by
//! `tools/syscall_header_gen.py` (`map_syscalls_neg` uses one counter for
//! all lists, so the numbers do not depend on which debug options are on).
//! Registers: libsel4 `sel4_arch_include/aarch64/sel4/sel4_arch/syscalls.h`
//! — x7 syscall number, x0 destination/source cap (badge on return), x1
//! `MessageInfo`, x2..x5 MR0..MR3, x6 reply cap (MCS), x8 the send
//! destination of `NBSendRecv`.
//!
//! These wrappers move MR0..MR3 in registers only; they neither read nor
//! write the IPC buffer. Callers that use longer messages (or that want
//! libsel4's "MRs live in the IPC buffer" view) copy MR0..MR3 themselves,
//! as [`crate::event_loop`] does.

use crate::message::MessageInfo;

/// seL4 MCS syscall numbers (`seL4_Syscall_ID`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i64)]
pub enum Syscall {
    /// `seL4_SysCall`.
    Call = -1,
    /// `seL4_SysReplyRecv`.
    ReplyRecv = -2,
    /// `seL4_SysNBSendRecv`.
    NBSendRecv = -3,
    /// `seL4_SysNBSendWait`.
    NBSendWait = -4,
    /// `seL4_SysSend`.
    Send = -5,
    /// `seL4_SysNBSend`.
    NBSend = -6,
    /// `seL4_SysRecv`.
    Recv = -7,
    /// `seL4_SysNBRecv`.
    NBRecv = -8,
    /// `seL4_SysWait`.
    Wait = -9,
    /// `seL4_SysNBWait`.
    NBWait = -10,
    /// `seL4_SysYield`.
    Yield = -11,
    /// `seL4_SysDebugPutChar` (kernels with `CONFIG_PRINTING`).
    DebugPutChar = -12,
    /// `seL4_SysDebugDumpScheduler` (`CONFIG_PRINTING`).
    DebugDumpScheduler = -13,
    /// `seL4_SysDebugHalt` (`CONFIG_DEBUG_BUILD`).
    DebugHalt = -14,
    /// `seL4_SysDebugCapIdentify` (`CONFIG_DEBUG_BUILD`).
    DebugCapIdentify = -15,
    /// `seL4_SysDebugSnapshot` (`CONFIG_DEBUG_BUILD`).
    DebugSnapshot = -16,
    /// `seL4_SysDebugNameThread` (`CONFIG_DEBUG_BUILD`).
    DebugNameThread = -17,
}

impl Syscall {
    /// The value that goes in x7 (two's complement of the number).
    #[must_use]
    pub const fn x7(self) -> u64 {
        // Reinterpreting the negative number as its two's complement is the
        // point: the kernel compares x7 as a signed word.
        self as i64 as u64
    }
}

/// What a receiving syscall returns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Received {
    /// Badge of the capability the message or signal came through.
    pub badge: u64,
    /// The message tag.
    pub info: MessageInfo,
    /// MR0..MR3 as the kernel left them in x2..x5.
    pub mrs: [u64; 4],
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod imp {
    use super::{MessageInfo, Received, Syscall};
    use crate::caps::CPtr;
    use core::arch::asm;

    // SAFETY (for every `asm!` below): `svc #0` traps into seL4, which reads
    // only the registers named here and writes at most x0..x5 (declared as
    // outputs or clobbers). The kernel may write this PD's IPC buffer
    // frame; this crate touches that frame only through raw volatile
    // pointers, and asm! without `nomem` already tells the compiler memory
    // may change. The stack is not used by the instruction.

    /// `seL4_Call`: send on `dest` and wait for the reply (MCS: reply
    /// register x6 = 0, as libsel4 passes). Returns the reply tag and MRs.
    pub fn call(dest: CPtr, info: MessageInfo, mrs: [u64; 4]) -> (MessageInfo, [u64; 4]) {
        let (mut m0, mut m1, mut m2, mut m3) = (mrs[0], mrs[1], mrs[2], mrs[3]);
        let mut tag = info.to_word();
        // SAFETY: see the module comment.
        unsafe {
            asm!("svc #0",
                inout("x0") dest => _, inout("x1") tag, inout("x2") m0, inout("x3") m1,
                inout("x4") m2, inout("x5") m3, in("x6") 0u64, in("x7") Syscall::Call.x7(),
                options(nostack));
        }
        (MessageInfo::from_word(tag), [m0, m1, m2, m3])
    }

    /// `seL4_ReplyRecv`: reply through `reply` with `info`/`mrs`, then wait
    /// on `src`.
    pub fn reply_recv(src: CPtr, info: MessageInfo, mrs: [u64; 4], reply: CPtr) -> Received {
        let (mut m0, mut m1, mut m2, mut m3) = (mrs[0], mrs[1], mrs[2], mrs[3]);
        let mut tag = info.to_word();
        let mut badge = src;
        // SAFETY: see the module comment.
        unsafe {
            asm!("svc #0",
                inout("x0") badge, inout("x1") tag, inout("x2") m0, inout("x3") m1,
                inout("x4") m2, inout("x5") m3, in("x6") reply, in("x7") Syscall::ReplyRecv.x7(),
                options(nostack));
        }
        Received {
            badge,
            info: MessageInfo::from_word(tag),
            mrs: [m0, m1, m2, m3],
        }
    }

    /// `seL4_NBSendRecv`: non-blocking send of `info`/`mrs` to `dest`
    /// (x8), then wait on `src` with reply object `reply`.
    pub fn nb_send_recv(
        dest: CPtr,
        info: MessageInfo,
        mrs: [u64; 4],
        src: CPtr,
        reply: CPtr,
    ) -> Received {
        let (mut m0, mut m1, mut m2, mut m3) = (mrs[0], mrs[1], mrs[2], mrs[3]);
        let mut tag = info.to_word();
        let mut badge = src;
        // SAFETY: see the module comment.
        unsafe {
            asm!("svc #0",
                inout("x0") badge, inout("x1") tag, inout("x2") m0, inout("x3") m1,
                inout("x4") m2, inout("x5") m3, in("x6") reply, in("x7") Syscall::NBSendRecv.x7(),
                in("x8") dest, options(nostack));
        }
        Received {
            badge,
            info: MessageInfo::from_word(tag),
            mrs: [m0, m1, m2, m3],
        }
    }

    fn send_common(sys: Syscall, dest: CPtr, info: MessageInfo, mrs: [u64; 4]) {
        // SAFETY: see the module comment.
        unsafe {
            asm!("svc #0",
                inout("x0") dest => _, inout("x1") info.to_word() => _,
                inout("x2") mrs[0] => _, inout("x3") mrs[1] => _,
                inout("x4") mrs[2] => _, inout("x5") mrs[3] => _, in("x7") sys.x7(),
                options(nostack));
        }
    }

    /// `seL4_Send`: blocking send (a signal when `dest` is a notification;
    /// an invocation when it is an object cap, e.g. an IRQ handler).
    pub fn send(dest: CPtr, info: MessageInfo, mrs: [u64; 4]) {
        send_common(Syscall::Send, dest, info, mrs);
    }

    /// `seL4_NBSend`: send that is dropped if nobody waits.
    pub fn nb_send(dest: CPtr, info: MessageInfo, mrs: [u64; 4]) {
        send_common(Syscall::NBSend, dest, info, mrs);
    }

    /// `seL4_Signal`: `Send` of an empty message (`microkit_notify`).
    pub fn signal(dest: CPtr) {
        send_common(Syscall::Send, dest, MessageInfo::EMPTY, [0; 4]);
    }

    fn recv_common(sys: Syscall, src: CPtr, reply: CPtr) -> Received {
        let (m0, m1, m2, m3, tag);
        let mut badge = src;
        // SAFETY: see the module comment.
        unsafe {
            asm!("svc #0",
                inout("x0") badge, out("x1") tag, out("x2") m0, out("x3") m1,
                out("x4") m2, out("x5") m3, in("x6") reply, in("x7") sys.x7(),
                options(nostack));
        }
        Received {
            badge,
            info: MessageInfo::from_word(tag),
            mrs: [m0, m1, m2, m3],
        }
    }

    /// `seL4_Recv` (MCS): wait on `src`, with `reply` to receive a reply
    /// capability into.
    pub fn recv(src: CPtr, reply: CPtr) -> Received {
        recv_common(Syscall::Recv, src, reply)
    }

    /// `seL4_Wait`: wait on `src` without a reply object.
    pub fn wait(src: CPtr) -> Received {
        recv_common(Syscall::Wait, src, 0)
    }

    /// `seL4_NBWait` (`seL4_Poll` on MCS): poll `src`.
    pub fn nb_wait(src: CPtr) -> Received {
        recv_common(Syscall::NBWait, src, 0)
    }

    /// `seL4_Yield`.
    pub fn yield_now() {
        // SAFETY: see the module comment; Yield reads only x7.
        unsafe { asm!("svc #0", in("x7") Syscall::Yield.x7(), options(nostack)) };
    }

    /// `seL4_DebugPutChar`: one byte on the kernel's debug console (debug
    /// kernels; on others the kernel reports an unknown syscall fault).
    pub fn debug_put_char(c: u8) {
        // SAFETY: see the module comment. libsel4 passes x1..x5 = 0, x6 = 0
        // and treats x0..x5 as outputs; so do we.
        unsafe {
            asm!("svc #0",
                inout("x0") u64::from(c) => _, inout("x1") 0u64 => _, inout("x2") 0u64 => _,
                inout("x3") 0u64 => _, inout("x4") 0u64 => _, inout("x5") 0u64 => _,
                in("x6") 0u64, in("x7") Syscall::DebugPutChar.x7(), options(nostack));
        }
    }

    /// `seL4_DebugHalt`: stop the system (debug kernels).
    pub fn debug_halt() {
        // SAFETY: see the module comment; DebugHalt reads only x7.
        unsafe { asm!("svc #0", in("x7") Syscall::DebugHalt.x7(), options(nostack)) };
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use imp::*;

/// Writes `s` with [`debug_put_char`], byte by byte (`microkit_dbg_puts`).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn debug_puts(s: &str) {
    for b in s.bytes() {
        debug_put_char(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcs_numbers_follow_syscall_xml_order() {
        let order = [
            Syscall::Call,
            Syscall::ReplyRecv,
            Syscall::NBSendRecv,
            Syscall::NBSendWait,
            Syscall::Send,
            Syscall::NBSend,
            Syscall::Recv,
            Syscall::NBRecv,
            Syscall::Wait,
            Syscall::NBWait,
            Syscall::Yield,
            Syscall::DebugPutChar,
            Syscall::DebugDumpScheduler,
            Syscall::DebugHalt,
            Syscall::DebugCapIdentify,
            Syscall::DebugSnapshot,
            Syscall::DebugNameThread,
        ];
        for (i, s) in order.iter().enumerate() {
            assert_eq!(*s as i64, -(i as i64) - 1, "{s:?}");
        }
    }

    #[test]
    fn x7_is_twos_complement() {
        assert_eq!(Syscall::Call.x7(), u64::MAX);
        assert_eq!(Syscall::DebugPutChar.x7(), 0xffff_ffff_ffff_fff4);
    }
}
