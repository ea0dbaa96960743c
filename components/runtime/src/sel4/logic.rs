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
    /// `seL4_Fault_VGICMaintenance` (vCPUs only).
    pub const VGIC_MAINTENANCE: u64 = 7;
    /// `seL4_Fault_VCPUFault` (vCPUs only).
    pub const VCPU: u64 = 8;
    /// `seL4_Fault_VPPIEvent` (vCPUs only).
    pub const VPPI: u64 = 9;
}

/// Whether a fault with this seL4 label can only come from a vCPU thread
/// (the other labels come from child PDs and vCPUs alike).
pub(crate) const fn vcpu_only(label: u64) -> bool {
    matches!(
        label,
        fault_label::VGIC_MAINTENANCE | fault_label::VCPU | fault_label::VPPI
    )
}

/// What the runtime does with a vCPU when the VMM's handler says resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnResume {
    /// Step past the trapped instruction (after a completed MMIO access or
    /// an emulated `smc`/`wfi`), writing back any register the VMM set.
    Advance,
    /// Resume where the vCPU stopped (an interrupt-like event, or an abort
    /// the VMM did not complete: it re-executes).
    AsIs,
}

/// A vCPU fault as the runtime's fault message: kind, MR0..3, and what
/// resuming means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VcpuFault {
    /// The message label.
    pub kind: FaultKind,
    /// MR0..3.
    pub mrs: [u64; 4],
    /// What `true` from the handler does.
    pub on_resume: OnResume,
}

/// Translates a vCPU thread's seL4 fault message into the runtime's: `mr`
/// reads the seL4 message, `pc` is the vCPU's PC from its register
/// context, `store` the value a decodable store writes (read from the
/// same context).
///
/// - `VMFault` (data): [`FaultKind::VmFault`], MR0 pc, MR1 IPA, MR2 the
///   syndrome (`ESR_EL2`, already the data-abort ISS layout that
///   [`VmFaultInfo`](crate::VmFaultInfo) decodes), MR3 the stored value.
///   Resuming advances only when the syndrome is decodable (ISV).
/// - `VMFault` (instruction fetch): [`FaultKind::VmFault`] with MR2 the
///   syndrome (an instruction abort: ISV clear, so no access to emulate).
/// - `VCPUFault`: [`FaultKind::VcpuTrap`], MR0 pc, MR2 syndrome; resuming
///   advances past the instruction.
/// - `VGICMaintenance` / `VPPIEvent`: their kinds, MR2 the payload.
/// - anything else (`hvc` arrives as `UnknownSyscall`): [`FaultKind::Other`]
///   with MR2 the seL4 label; not meant to be resumed.
pub(crate) fn translate_vcpu_fault(
    label: u64,
    mr: &dyn Fn(usize) -> u64,
    pc: u64,
    store: u64,
) -> VcpuFault {
    const ISV: u64 = 1 << 24;
    match label {
        fault_label::VM => {
            let esr = mr(3);
            let data = mr(2) == 0;
            VcpuFault {
                kind: FaultKind::VmFault,
                mrs: [mr(0), mr(1), esr, if data { store } else { 0 }],
                on_resume: if data && esr & ISV != 0 {
                    OnResume::Advance
                } else {
                    OnResume::AsIs
                },
            }
        }
        fault_label::VCPU => VcpuFault {
            kind: FaultKind::VcpuTrap,
            mrs: [pc, 0, mr(0), 0],
            on_resume: OnResume::Advance,
        },
        fault_label::VGIC_MAINTENANCE => VcpuFault {
            kind: FaultKind::VgicMaintenance,
            mrs: [pc, 0, mr(0), 0],
            on_resume: OnResume::AsIs,
        },
        fault_label::VPPI => VcpuFault {
            kind: FaultKind::VirtualPpi,
            mrs: [pc, 0, mr(0), 0],
            on_resume: OnResume::AsIs,
        },
        other => VcpuFault {
            kind: FaultKind::Other,
            mrs: [pc, 0, other, 0],
            on_resume: OnResume::AsIs,
        },
    }
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

    /// A 4-byte `str w1, [x0]`-style syndrome: EC 0x24, IL, ISV, SAS=2,
    /// SRT=1, WnR.
    const STR_W1: u64 = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (1 << 16) | (1 << 6);

    #[test]
    fn a_vcpu_data_abort_becomes_a_vm_fault_message_the_vmm_decodes() {
        let mrs = [0x4020_0010, 0x0a00_0050, 0, STR_W1];
        let f = translate_vcpu_fault(6, &|i| mrs[i], 0x4020_0010, 0xabcd);
        assert_eq!(f.kind, FaultKind::VmFault);
        assert_eq!(f.on_resume, OnResume::Advance);
        let v = crate::VmFaultInfo::decode(f.kind as u64, f.mrs[0], f.mrs[1], f.mrs[2], f.mrs[3])
            .unwrap();
        assert_eq!(
            (v.pc, v.gpa, v.width, v.write, v.reg, v.value),
            (0x4020_0010, 0x0a00_0050, 4, true, 1, 0xabcd)
        );
    }

    #[test]
    fn undecodable_and_instruction_aborts_do_not_advance() {
        let no_isv = [0x4020_0010, 0x0900_0000, 0, STR_W1 & !(1 << 24)];
        let f = translate_vcpu_fault(6, &|i| no_isv[i], 0, 5);
        assert_eq!(f.on_resume, OnResume::AsIs);
        assert_eq!(
            crate::VmFaultInfo::decode(f.kind as u64, f.mrs[0], f.mrs[1], f.mrs[2], f.mrs[3]),
            None
        );
        // Instruction abort (EC 0x20), PrefetchFault = 1: no stored value.
        let iabt = [0x8000_0000, 0x8000_0000, 1, (0x20 << 26) | (1 << 25) | 0x6];
        let f = translate_vcpu_fault(6, &|i| iabt[i], 0x8000_0000, 5);
        assert_eq!(
            (f.kind, f.mrs[3], f.on_resume),
            (FaultKind::VmFault, 0, OnResume::AsIs)
        );
    }

    #[test]
    fn vcpu_only_faults_carry_their_payload_in_mr2() {
        let smc = [(0x17u64 << 26) | (1 << 25)];
        let f = translate_vcpu_fault(8, &|i| smc.get(i).copied().unwrap_or(0), 0x4020_0100, 0);
        assert_eq!(
            (f.kind, f.mrs[0], f.mrs[2], f.on_resume),
            (FaultKind::VcpuTrap, 0x4020_0100, smc[0], OnResume::Advance)
        );
        let lr = [3u64];
        let f = translate_vcpu_fault(7, &|i| lr.get(i).copied().unwrap_or(0), 0, 0);
        assert_eq!(
            (f.kind, f.mrs[2], f.on_resume),
            (FaultKind::VgicMaintenance, 3, OnResume::AsIs)
        );
        let ppi = [27u64];
        let f = translate_vcpu_fault(9, &|i| ppi.get(i).copied().unwrap_or(0), 0, 0);
        assert_eq!((f.kind, f.mrs[2]), (FaultKind::VirtualPpi, 27));
        let f = translate_vcpu_fault(2, &|_| 0, 0x10, 0);
        assert_eq!(
            (f.kind, f.mrs[2]),
            (FaultKind::Other, 2),
            "hvc: unknown syscall"
        );
        assert!(vcpu_only(7) && vcpu_only(8) && vcpu_only(9));
        assert!(!vcpu_only(6) && !vcpu_only(3));
        for k in [
            FaultKind::VcpuTrap,
            FaultKind::VgicMaintenance,
            FaultKind::VirtualPpi,
        ] {
            assert_eq!(FaultKind::from_label(k as u64), k);
        }
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
