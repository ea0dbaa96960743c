//! The seL4 backend's pure decisions (no system calls), compiled on the
//! host too so they are unit-tested there: region permission words, seL4
//! fault message → runtime fault message, which error a refused channel
//! id gets.

use crate::api::{FaultKind, Perms, RuntimeError, MAX_CHANNELS};

/// Parses a `regions:` permission word (`r`, `rw`, `rx`, `rwx`) for
/// `protection_domain!`; anything else stops the build (const evaluation).
// The macro only calls this in a `static` initializer, so the panic is a
// compile-time error naming the bad word, never a runtime panic.
#[allow(clippy::panic)]
pub const fn perms(word: &str) -> Perms {
    let b = word.as_bytes();
    let mut p = Perms {
        read: false,
        write: false,
        execute: false,
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'r' => p.read = true,
            b'w' => p.write = true,
            b'x' => p.execute = true,
            _ => panic!("region perms must be made of r, w and x"),
        }
        i += 1;
    }
    p
}

/// seL4 fault labels (libsel4 `sel4_arch/types_gen.h`, aarch64 MCS).
mod fault_label {
    /// `seL4_Fault_CapFault`.
    pub const CAP: u64 = 1;
    /// `seL4_Fault_UnknownSyscall`.
    pub const UNKNOWN_SYSCALL: u64 = 2;
    /// `seL4_Fault_UserException`.
    pub const USER_EXCEPTION: u64 = 3;
    /// `seL4_Fault_DebugException`.
    pub const DEBUG_EXCEPTION: u64 = 4;
    /// `seL4_Fault_VMFault`.
    pub const VM: u64 = 6;
}

/// MR index of `FaultIP` in an `UnknownSyscall` message (after x0..x7).
const UNKNOWN_SYSCALL_IP_MR: usize = 8;

/// Translates an seL4 fault message (label, raw MRs) into the runtime's:
/// (kind, pc, address, detail).
///
/// VMFault MRs: IP, Addr, PrefetchFault, FSR. The FSR's fault status code
/// (bits 5:0) says translation (0b0001xx: unmapped), access flag (0b0010xx)
/// or permission (0b0011xx) fault; alignment (0b100001) is a bus error.
pub(crate) fn translate_fault(label: u64, mr: &dyn Fn(usize) -> u64) -> (FaultKind, u64, u64, u64) {
    match label {
        fault_label::VM => {
            let fsr = mr(3);
            let kind = match fsr & 0x3f {
                0b00_0100..=0b00_0111 => FaultKind::Unmapped,
                0b00_1100..=0b00_1111 => FaultKind::Permission,
                0b10_0001 => FaultKind::Bus,
                _ => FaultKind::Other,
            };
            (kind, mr(0), mr(1), fsr)
        }
        fault_label::USER_EXCEPTION => (FaultKind::Instruction, mr(0), 0, mr(3)),
        fault_label::UNKNOWN_SYSCALL => {
            (FaultKind::ForbiddenSyscall, mr(UNKNOWN_SYSCALL_IP_MR), 0, 0)
        }
        fault_label::DEBUG_EXCEPTION => (FaultKind::Breakpoint, mr(0), 0, 0),
        fault_label::CAP => (FaultKind::Other, mr(0), mr(1), 0),
        _ => (FaultKind::Other, 0, 0, label),
    }
}

/// Why a channel id is refused: not in `mask` → the more precise of
/// "exists with the other right" and "undeclared".
pub(crate) fn channel_refusal(id: u8, other_mask: u64, other: RuntimeError) -> RuntimeError {
    if id < MAX_CHANNELS && other_mask & (1 << id) != 0 {
        other
    } else {
        RuntimeError::UndeclaredChannel(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_words() {
        let rw = perms("rw");
        assert!(rw.read && rw.write && !rw.execute);
        let r = perms("r");
        assert!(r.read && !r.write);
        assert_eq!(perms("rwx").bits(), 7);
    }

    fn vm_fault(fsr: u64) -> (FaultKind, u64, u64, u64) {
        let mrs = [0x20_0100, 0xdead_0000, 0, fsr];
        translate_fault(6, &|i| mrs.get(i).copied().unwrap_or(0))
    }

    #[test]
    fn vm_faults_are_classified_by_their_fault_status_code() {
        // Translation faults, levels 0..3 (DFSC 0b0001LL), plus WnR and
        // other ESR bits above the status code.
        for fsr in [0x4, 0x5, 0x6, 0x7, 0x9200_0047] {
            assert_eq!(vm_fault(fsr).0, FaultKind::Unmapped, "{fsr:#x}");
        }
        // Permission faults (0b0011LL): the rowrite case.
        for fsr in [0xc, 0xf, 0x9200_004f] {
            assert_eq!(vm_fault(fsr).0, FaultKind::Permission, "{fsr:#x}");
        }
        assert_eq!(vm_fault(0x21).0, FaultKind::Bus, "alignment");
        assert_eq!(vm_fault(0x10).0, FaultKind::Other, "external abort");
        let (_, pc, addr, detail) = vm_fault(0x7);
        assert_eq!((pc, addr, detail), (0x20_0100, 0xdead_0000, 0x7));
    }

    #[test]
    fn other_faults_map_to_their_kinds_and_pcs() {
        let mrs: [u64; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 0x20_0400, 10];
        let mr = |i: usize| mrs.get(i).copied().unwrap_or(0);
        assert_eq!(translate_fault(3, &mr), (FaultKind::Instruction, 1, 0, 4));
        assert_eq!(
            translate_fault(2, &mr),
            (FaultKind::ForbiddenSyscall, 0x20_0400, 0, 0)
        );
        assert_eq!(translate_fault(4, &mr).0, FaultKind::Breakpoint);
        assert_eq!(
            translate_fault(5, &mr),
            (FaultKind::Other, 0, 0, 5),
            "timeout"
        );
    }

    #[test]
    fn a_refused_channel_names_the_right_error() {
        let pp_only = 1 << 3;
        assert_eq!(
            channel_refusal(3, pp_only, RuntimeError::NotifyNotPermitted(3)),
            RuntimeError::NotifyNotPermitted(3)
        );
        assert_eq!(
            channel_refusal(7, pp_only, RuntimeError::NotifyNotPermitted(7)),
            RuntimeError::UndeclaredChannel(7)
        );
        assert_eq!(
            channel_refusal(200, u64::MAX, RuntimeError::NotPpcCaller(200)),
            RuntimeError::UndeclaredChannel(200)
        );
    }
}
