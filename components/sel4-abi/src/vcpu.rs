//! aarch64 hypervisor facts a VMM PD needs: the fault messages a vCPU's
//! thread sends its parent, the `seL4_UserContext` word order that
//! `TCB_ReadRegisters` / `TCB_WriteRegisters` use, and the vCPU register
//! numbers of `ARM_VCPU_ReadRegs` / `WriteRegs`.
//!
//! Sources (seL4 16.0.0, as shipped in the Microkit 2.3.0 SDK's
//! `board/qemu_virt_aarch64/debug/include`): `sel4/sel4_arch/types_gen.h`
//! (fault labels), `sel4/sel4_arch/constants.h` (MR layouts, `seL4_VCPUReg`),
//! `sel4/sel4_arch/types.h` (`seL4_UserContext`), `src/arch/arm/api/faults.c`
//! (`Arch_setMRs_fault`) and `src/arch/arm/64/kernel/vspace.c`
//! (`handleVMFault`: for a vCPU the address is the IPA, the FSR is the full
//! `ESR_EL2`). Pure data: builds and is tested everywhere.

/// Fault labels (`seL4_FaultType`, aarch64 with hypervisor support).
pub mod label {
    /// `seL4_Fault_CapFault`.
    pub const CAP: u64 = 1;
    /// `seL4_Fault_UnknownSyscall`: from a vCPU, an `hvc` (the kernel treats
    /// a guest `hvc` like a system call it does not know).
    pub const UNKNOWN_SYSCALL: u64 = 2;
    /// `seL4_Fault_UserException`.
    pub const USER_EXCEPTION: u64 = 3;
    /// `seL4_Fault_DebugException`.
    pub const DEBUG_EXCEPTION: u64 = 4;
    /// `seL4_Fault_Timeout` (MCS).
    pub const TIMEOUT: u64 = 5;
    /// `seL4_Fault_VMFault`: MRs [`super::vm_fault`].
    pub const VM: u64 = 6;
    /// `seL4_Fault_VGICMaintenance`: MR0 = list register index, or
    /// `u64::MAX` (-1) when the kernel found none.
    pub const VGIC_MAINTENANCE: u64 = 7;
    /// `seL4_Fault_VCPUFault`: MR0 = `ESR_EL2` of a trapped instruction
    /// (`smc`, `wfi`/`wfe`, system register access).
    pub const VCPU: u64 = 8;
    /// `seL4_Fault_VPPIEvent`: MR0 = the PPI's INTID (the virtual timer's
    /// is 27); the kernel masks it until `ARM_VCPU_AckVPPI`.
    pub const VPPI: u64 = 9;
}

/// MR indices of a `seL4_Fault_VMFault` message.
pub mod vm_fault {
    /// Restart PC (the faulting instruction).
    pub const IP: usize = 0;
    /// Faulting address: for a vCPU the guest-physical address (the kernel
    /// translates `FAR_EL2` through the guest's stage 1), else the VA.
    pub const ADDR: usize = 1;
    /// 1 for an instruction fetch, 0 for a data access.
    pub const PREFETCH_FAULT: usize = 2;
    /// The syndrome: `ESR_EL2` as the kernel read it.
    pub const FSR: usize = 3;
    /// Message length.
    pub const LENGTH: u64 = 4;
}

/// MR index of the payload of `VGICMaintenance`, `VCPUFault` and
/// `VPPIEvent` messages (each has exactly one word).
pub const PAYLOAD_MR: usize = 0;

/// Words in `seL4_UserContext` on aarch64: pc, sp, spsr, 31 general
/// registers, tpidr_el0, tpidrro_el0.
pub const USER_CONTEXT_WORDS: usize = 36;
/// Index of the program counter in `seL4_UserContext`.
pub const CTX_PC: usize = 0;
/// Index of the stack pointer (`SP_EL0` for a PD, the guest's `SP_EL0`).
pub const CTX_SP: usize = 1;
/// Index of the saved PSTATE (`SPSR_EL2` of the thread).
pub const CTX_SPSR: usize = 2;

/// Where general register `Xn` sits in `seL4_UserContext`. The struct does
/// not list x0..x30 in order: its "frame registers" come first (pc, sp,
/// spsr, x0–x8, x16, x17, x18, x29, x30), then x9–x15 and x19–x28. `None`
/// for n > 30 (31 is XZR in a syndrome, which has no storage).
#[must_use]
pub const fn gpr_index(n: u8) -> Option<usize> {
    let n = n as usize;
    match n {
        0..=8 => Some(3 + n),
        16..=18 => Some(12 + (n - 16)),
        29 | 30 => Some(15 + (n - 29)),
        9..=15 => Some(17 + (n - 9)),
        19..=28 => Some(24 + (n - 19)),
        _ => None,
    }
}

/// `TCBReadRegisters` MR0: `suspend_source` (bit 0), `arch_flags` (bits
/// 8..15); MR1 is the count. The reply's MRs are the context words.
#[must_use]
pub const fn read_registers_mr0(suspend_source: bool, arch_flags: u8) -> u64 {
    (suspend_source as u64) | ((arch_flags as u64) << 8)
}

/// Syndrome (`ESR_EL2`) fields the VMM path needs from a data abort.
mod iss {
    /// Instruction length: 1 = 32-bit instruction.
    pub const IL: u64 = 1 << 25;
    /// The access fields below are valid.
    pub const ISV: u64 = 1 << 24;
    /// Sign-extend the loaded value.
    pub const SSE: u64 = 1 << 21;
    /// The transfer register is an X register (else W).
    pub const SF: u64 = 1 << 15;
    /// The access is a write.
    pub const WNR: u64 = 1 << 6;
}

/// Bytes of the trapped instruction: 4 unless `ESR.IL` says a 16-bit one
/// (only possible for AArch32 T32 guests).
#[must_use]
pub const fn instruction_len(esr: u64) -> u64 {
    if esr & iss::IL != 0 {
        4
    } else {
        2
    }
}

/// The access width of a data-abort syndrome with ISV set, in bytes.
const fn width(esr: u64) -> u32 {
    1 << ((esr >> 22) & 3)
}

const fn width_mask(esr: u64) -> u64 {
    match width(esr) {
        8 => u64::MAX,
        w => (1 << (8 * w)) - 1,
    }
}

/// The transfer register of a data-abort syndrome (31 = XZR).
const fn srt(esr: u64) -> u8 {
    ((esr >> 16) & 31) as u8
}

/// The value a decodable store (ISV and WnR set) writes, truncated to its
/// width: read from the context word of its transfer register (XZR
/// stores 0). 0 for anything else.
#[must_use]
pub fn store_value(esr: u64, ctx: &[u64; USER_CONTEXT_WORDS]) -> u64 {
    if esr & iss::ISV == 0 || esr & iss::WNR == 0 {
        return 0;
    }
    match gpr_index(srt(esr)) {
        Some(i) => ctx[i] & width_mask(esr),
        None => 0,
    }
}

/// Completes a decodable load (ISV set, WnR clear) in `ctx`: `value`,
/// truncated to the access width, sign-extended when `SSE` says so and cut
/// to 32 bits for a W register, goes into the transfer register (a load
/// into XZR is discarded). Returns false (and changes nothing) when the
/// syndrome is not such a load.
pub fn complete_load(esr: u64, value: u64, ctx: &mut [u64; USER_CONTEXT_WORDS]) -> bool {
    if esr & iss::ISV == 0 || esr & iss::WNR != 0 {
        return false;
    }
    let mut v = value & width_mask(esr);
    let bits = 8 * width(esr);
    if esr & iss::SSE != 0 && bits < 64 && v >> (bits - 1) & 1 != 0 {
        v |= !width_mask(esr);
    }
    if esr & iss::SF == 0 {
        v &= 0xffff_ffff;
    }
    if let Some(i) = gpr_index(srt(esr)) {
        ctx[i] = v;
    }
    true
}

/// Moves the context's PC past the trapped instruction.
pub fn advance(esr: u64, ctx: &mut [u64; USER_CONTEXT_WORDS]) {
    ctx[CTX_PC] = ctx[CTX_PC].wrapping_add(instruction_len(esr));
}

/// `seL4_VCPUReg`: the vCPU registers `ARM_VCPU_ReadRegs` / `WriteRegs`
/// name (aarch64).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u64)]
pub enum VcpuReg {
    /// `SCTLR_EL1`.
    Sctlr = 0,
    /// `CPACR_EL1`.
    Cpacr = 1,
    /// `TTBR0_EL1`.
    Ttbr0 = 2,
    /// `TTBR1_EL1`.
    Ttbr1 = 3,
    /// `TCR_EL1`.
    Tcr = 4,
    /// `MAIR_EL1`.
    Mair = 5,
    /// `AMAIR_EL1`.
    Amair = 6,
    /// `CONTEXTIDR_EL1`.
    Cidr = 7,
    /// `ACTLR_EL1`.
    Actlr = 8,
    /// `AFSR0_EL1`.
    Afsr0 = 9,
    /// `AFSR1_EL1`.
    Afsr1 = 10,
    /// `ESR_EL1`: the syndrome the guest's own handler reads.
    Esr = 11,
    /// `FAR_EL1`.
    Far = 12,
    /// `PAR_EL1`.
    Par = 13,
    /// `VBAR_EL1`: the guest's vector table.
    Vbar = 14,
    /// `TPIDR_EL1`.
    TpidrEl1 = 15,
    /// `VMPIDR_EL2`: what the guest reads as `MPIDR_EL1`.
    Vmpidr = 16,
    /// `SP_EL1`.
    SpEl1 = 17,
    /// `ELR_EL1`: where the guest's exception handler returns to.
    ElrEl1 = 18,
    /// `SPSR_EL1` (32 bits).
    SpsrEl1 = 19,
    /// `CNTV_CTL_EL0`.
    CntvCtl = 20,
    /// `CNTV_CVAL_EL0`.
    CntvCval = 21,
    /// `CNTVOFF_EL2`.
    Cntvoff = 22,
    /// `CNTKCTL_EL1`.
    Cntkctl = 23,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_general_register_has_its_own_context_word() {
        let mut seen = [false; USER_CONTEXT_WORDS];
        for n in 0..=30u8 {
            let i = gpr_index(n).unwrap();
            assert!((3..34).contains(&i), "x{n} at {i}");
            assert!(!seen[i], "x{n} shares word {i}");
            seen[i] = true;
        }
        assert_eq!(gpr_index(31), None, "XZR has no storage");
        assert_eq!(gpr_index(u8::MAX), None);
    }

    #[test]
    fn context_order_is_libsel4s() {
        // seL4_UserContext: pc, sp, spsr, x0..x8, x16, x17, x18, x29, x30,
        // x9..x15, x19..x28, tpidr_el0, tpidrro_el0.
        let order: [u8; 31] = [
            0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 17, 18, 29, 30, 9, 10, 11, 12, 13, 14, 15, 19, 20, 21,
            22, 23, 24, 25, 26, 27, 28,
        ];
        for (k, n) in order.iter().enumerate() {
            assert_eq!(gpr_index(*n), Some(3 + k), "x{n}");
        }
    }

    /// A data-abort syndrome: EC 0x24, IL, ISV, width, SSE, SRT, SF, WnR.
    fn dabt(width: u64, sse: bool, srt: u64, sf: bool, write: bool) -> u64 {
        let sas = width.trailing_zeros() as u64;
        (0x24 << 26)
            | iss::IL
            | iss::ISV
            | (sas << 22)
            | if sse { iss::SSE } else { 0 }
            | (srt << 16)
            | if sf { iss::SF } else { 0 }
            | if write { iss::WNR } else { 0 }
    }

    fn ctx_with(n: u8, v: u64) -> [u64; USER_CONTEXT_WORDS] {
        let mut c = [0u64; USER_CONTEXT_WORDS];
        c[gpr_index(n).unwrap()] = v;
        c
    }

    #[test]
    fn store_values_come_from_the_transfer_register_cut_to_width() {
        let c = ctx_with(19, 0x1122_3344_5566_7788);
        assert_eq!(store_value(dabt(1, false, 19, false, true), &c), 0x88);
        assert_eq!(store_value(dabt(2, false, 19, false, true), &c), 0x7788);
        assert_eq!(
            store_value(dabt(4, false, 19, false, true), &c),
            0x5566_7788
        );
        assert_eq!(
            store_value(dabt(8, false, 19, true, true), &c),
            0x1122_3344_5566_7788
        );
        assert_eq!(store_value(dabt(8, false, 31, true, true), &c), 0, "XZR");
        assert_eq!(store_value(dabt(4, false, 19, false, false), &c), 0, "load");
        assert_eq!(
            store_value(dabt(4, false, 19, false, true) & !iss::ISV, &c),
            0
        );
    }

    #[test]
    fn loads_extend_as_the_instruction_does() {
        let mut c = ctx_with(5, u64::MAX);
        // ldrb w5: zero-extended, upper half of x5 cleared.
        assert!(complete_load(
            dabt(1, false, 5, false, false),
            0x1ff,
            &mut c
        ));
        assert_eq!(c[gpr_index(5).unwrap()], 0xff);
        // ldrsh x5: sign-extended to 64 bits.
        assert!(complete_load(dabt(2, true, 5, true, false), 0x8001, &mut c));
        assert_eq!(c[gpr_index(5).unwrap()], 0xffff_ffff_ffff_8001);
        // ldrsb w5: sign-extended to 32 bits only.
        assert!(complete_load(dabt(1, true, 5, false, false), 0x80, &mut c));
        assert_eq!(c[gpr_index(5).unwrap()], 0xffff_ff80);
        // ldr x30 (a word stored out of order in the context).
        assert!(complete_load(dabt(8, false, 30, true, false), 7, &mut c));
        assert_eq!(c[gpr_index(30).unwrap()], 7);
        // XZR swallows the value; a store or ISV=0 is no load.
        let before = c;
        assert!(complete_load(dabt(4, false, 31, false, false), 9, &mut c));
        assert_eq!(c, before);
        assert!(!complete_load(dabt(4, false, 5, false, true), 9, &mut c));
        assert!(!complete_load(
            dabt(4, false, 5, false, false) & !iss::ISV,
            9,
            &mut c
        ));
        assert_eq!(c, before);
    }

    #[test]
    fn advance_uses_the_instruction_length() {
        let mut c = [0u64; USER_CONTEXT_WORDS];
        c[CTX_PC] = 0x4020_0000;
        advance(dabt(4, false, 0, false, false), &mut c);
        assert_eq!(c[CTX_PC], 0x4020_0004);
        advance(0x24 << 26, &mut c);
        assert_eq!(c[CTX_PC], 0x4020_0006, "16-bit T32 instruction");
    }

    #[test]
    fn labels_and_registers_match_the_sdk_headers() {
        assert_eq!(
            (label::VM, label::VGIC_MAINTENANCE, label::VCPU, label::VPPI),
            (6, 7, 8, 9)
        );
        assert_eq!(VcpuReg::Esr as u64, 11);
        assert_eq!(VcpuReg::Vbar as u64, 14);
        assert_eq!(VcpuReg::SpsrEl1 as u64, 19);
        assert_eq!(VcpuReg::Cntkctl as u64, 23);
        assert_eq!(read_registers_mr0(true, 0), 1);
    }
}
