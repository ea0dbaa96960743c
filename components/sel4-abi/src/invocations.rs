//! Kernel object invocations libmicrokit makes: IRQ ack, TCB resume /
//! suspend / write registers (PD and vCPU restart), vCPU inject IRQ /
//! read / write registers / ack VPPI, SchedContext consumed.
//!
//! An invocation is a `Call` on the object's cap whose label says which
//! method; the reply's label is the `seL4_Error` (0 = success). Labels come
//! from the SDK at build time (see `build.rs`), so the calls exist only in
//! builds with `MICROKIT_SDK` set (`cfg(sel4_sdk)`; vCPU ones also need a
//! hypervisor config, `cfg(sel4_vcpu)`). The argument packing is fixed and
//! lives here for every build, tested on the host.
//!
//! Packing (libsel4 `tools/syscall_stub_gen.py`, `get_parameter_positions`):
//! parameters are laid out in order, each aligned to its own size (or a
//! word), `seL4_Bool` taking 1 bit. Methods and parameters from libsel4's
//! `object-api.xml` / `object-api-sel4-arch.xml` (aarch64).

/// `TCBWriteRegisters` MR0: `resume_target` (bit 0), `arch_flags` (bits
/// 8..15). MR1 is the register count, MR2.. the `seL4_UserContext` words
/// (aarch64 order: pc, sp, spsr, x0, …); the kernel needs length ≥ 2 +
/// count (`src/object/tcb.c`, `decodeWriteRegisters`).
#[must_use]
pub const fn write_registers_mr0(resume_target: bool, arch_flags: u8) -> u64 {
    (resume_target as u64) | ((arch_flags as u64) << 8)
}

/// `ARMVCPUInjectIRQ` MR0: `virq` u16 (bits 0..15), `priority` u8
/// (16..23), `group` u8 (24..31), `index` u8 (32..39).
#[must_use]
pub const fn inject_irq_mr0(virq: u16, priority: u8, group: u8, index: u8) -> u64 {
    (virq as u64) | ((priority as u64) << 16) | ((group as u64) << 24) | ((index as u64) << 32)
}

/// Why an invocation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InvocationError {
    /// The id is out of 0..=61.
    IdOutOfRange(u64),
    /// The kernel refused: this `seL4_Error` code.
    Kernel(u64),
    /// A vCPU invocation in a build whose SDK config has no hypervisor
    /// support (no vCPU labels).
    NoHypervisor,
}

impl From<crate::caps::IdOutOfRange> for InvocationError {
    fn from(e: crate::caps::IdOutOfRange) -> Self {
        InvocationError::IdOutOfRange(e.0)
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none", sel4_sdk))]
mod imp {
    use super::{write_registers_mr0, InvocationError};
    use crate::caps::{self, CPtr};
    use crate::message::MessageInfo;
    use crate::sdk::labels;
    use crate::syscall::call;

    fn invoke(cap: CPtr, label: u64, mrs: [u64; 4], len: u64) -> Result<[u64; 4], InvocationError> {
        let (tag, out) = call(cap, MessageInfo::with_label(label, len), mrs);
        match tag.label() {
            0 => Ok(out),
            e => Err(InvocationError::Kernel(e)),
        }
    }

    /// `microkit_irq_ack` (without its bitmask check, which the runtime
    /// does against `microkit_irqs`).
    pub fn irq_ack(id: u64) -> Result<(), InvocationError> {
        invoke(caps::irq(id)?, labels::IRQ_ACK_IRQ, [0; 4], 0).map(drop)
    }

    /// `seL4_TCB_Resume` on a TCB cap.
    pub fn tcb_resume(tcb: CPtr) -> Result<(), InvocationError> {
        invoke(tcb, labels::TCB_RESUME, [0; 4], 0).map(drop)
    }

    /// `seL4_TCB_Suspend` on a TCB cap.
    pub fn tcb_suspend(tcb: CPtr) -> Result<(), InvocationError> {
        invoke(tcb, labels::TCB_SUSPEND, [0; 4], 0).map(drop)
    }

    /// `seL4_TCB_WriteRegisters(tcb, resume, 0, 1, {pc})`: what
    /// `microkit_pd_restart` / `microkit_vcpu_restart` do. Only the PC
    /// changes; memory and the other registers keep their values.
    pub fn tcb_set_pc(tcb: CPtr, pc: u64, resume: bool) -> Result<(), InvocationError> {
        invoke(
            tcb,
            labels::TCB_WRITE_REGISTERS,
            [write_registers_mr0(resume, 0), 1, pc, 0],
            3,
        )
        .map(drop)
    }

    /// `microkit_pd_restart(child, entry)`.
    pub fn pd_restart(child: u64, entry: u64) -> Result<(), InvocationError> {
        tcb_set_pc(caps::child_tcb(child)?, entry, true)
    }

    /// `microkit_pd_stop(child)`.
    pub fn pd_stop(child: u64) -> Result<(), InvocationError> {
        tcb_suspend(caps::child_tcb(child)?)
    }

    /// `seL4_SchedContext_Consumed`: time consumed since the last call.
    pub fn sched_context_consumed(sc: CPtr) -> Result<u64, InvocationError> {
        invoke(sc, labels::SCHED_CONTEXT_CONSUMED, [0; 4], 0).map(|m| m[0])
    }

    /// vCPU invocations (hypervisor configs only).
    #[cfg(sel4_vcpu)]
    pub mod vcpu {
        use super::{invoke, InvocationError};
        use crate::caps;
        use crate::invocations::{inject_irq_mr0, write_registers_mr0};
        use crate::ipc_buffer::{get_mr, set_mr};
        use crate::sdk::labels;
        use crate::vcpu::{read_registers_mr0, USER_CONTEXT_WORDS};

        /// `microkit_vcpu_restart(vcpu, entry)`.
        pub fn restart(vcpu: u64, entry: u64) -> Result<(), InvocationError> {
            super::tcb_set_pc(caps::vcpu_tcb(vcpu)?, entry, true)
        }
        /// `microkit_vcpu_stop(vcpu)`.
        pub fn stop(vcpu: u64) -> Result<(), InvocationError> {
            super::tcb_suspend(caps::vcpu_tcb(vcpu)?)
        }
        /// `microkit_vcpu_arm_inject_irq`.
        pub fn inject_irq(
            vcpu: u64,
            irq: u16,
            priority: u8,
            group: u8,
            index: u8,
        ) -> Result<(), InvocationError> {
            let mr0 = inject_irq_mr0(irq, priority, group, index);
            invoke(
                caps::vcpu(vcpu)?,
                labels::ARM_VCPU_INJECT_IRQ,
                [mr0, 0, 0, 0],
                1,
            )
            .map(drop)
        }
        /// `microkit_vcpu_arm_ack_vppi`.
        pub fn ack_vppi(vcpu: u64, irq: u64) -> Result<(), InvocationError> {
            invoke(
                caps::vcpu(vcpu)?,
                labels::ARM_VCPU_ACK_VPPI,
                [irq, 0, 0, 0],
                1,
            )
            .map(drop)
        }
        /// `microkit_vcpu_arm_read_reg`.
        pub fn read_reg(vcpu: u64, reg: u64) -> Result<u64, InvocationError> {
            invoke(
                caps::vcpu(vcpu)?,
                labels::ARM_VCPU_READ_REG,
                [reg, 0, 0, 0],
                1,
            )
            .map(|m| m[0])
        }
        /// The faulting (or stopped) vCPU thread's whole `seL4_UserContext`
        /// (`seL4_TCB_ReadRegisters(vcpu_tcb, false, 0, 36, …)`).
        pub fn read_context(vcpu: u64) -> Result<[u64; USER_CONTEXT_WORDS], InvocationError> {
            let count = USER_CONTEXT_WORDS as u64;
            let head = invoke(
                caps::vcpu_tcb(vcpu)?,
                labels::TCB_READ_REGISTERS,
                [read_registers_mr0(false, 0), count, 0, 0],
                2,
            )?;
            // MR0..3 came back in registers, the rest in the IPC buffer.
            Ok(core::array::from_fn(|i| match head.get(i) {
                Some(v) => *v,
                None => get_mr(i).unwrap_or(0),
            }))
        }
        /// Writes the vCPU thread's whole `seL4_UserContext`
        /// (`seL4_TCB_WriteRegisters(vcpu_tcb, resume, 0, 36, …)`). The
        /// kernel keeps an EL1 mode in `spsr` because the TCB has a vCPU
        /// bound (`sanitiseRegister` with arch info).
        pub fn write_context(
            vcpu: u64,
            ctx: &[u64; USER_CONTEXT_WORDS],
            resume: bool,
        ) -> Result<(), InvocationError> {
            let count = USER_CONTEXT_WORDS as u64;
            // MR2.. are the words; MR0..3 travel in registers, the rest
            // through the IPC buffer.
            for (i, v) in ctx.iter().enumerate().skip(2) {
                set_mr(2 + i, *v);
            }
            invoke(
                caps::vcpu_tcb(vcpu)?,
                labels::TCB_WRITE_REGISTERS,
                [write_registers_mr0(resume, 0), count, ctx[0], ctx[1]],
                2 + count,
            )
            .map(drop)
        }
        /// `microkit_vcpu_arm_write_reg`.
        pub fn write_reg(vcpu: u64, reg: u64, value: u64) -> Result<(), InvocationError> {
            invoke(
                caps::vcpu(vcpu)?,
                labels::ARM_VCPU_WRITE_REG,
                [reg, value, 0, 0],
                2,
            )
            .map(drop)
        }
    }

    /// The vCPU calls of a config without hypervisor support: each says so.
    #[cfg(not(sel4_vcpu))]
    pub mod vcpu {
        use super::InvocationError;
        use crate::vcpu::USER_CONTEXT_WORDS;

        /// No vCPUs in this config.
        pub fn restart(_vcpu: u64, _entry: u64) -> Result<(), InvocationError> {
            Err(InvocationError::NoHypervisor)
        }
        /// No vCPUs in this config.
        pub fn stop(_vcpu: u64) -> Result<(), InvocationError> {
            Err(InvocationError::NoHypervisor)
        }
        /// No vCPUs in this config.
        pub fn inject_irq(
            _vcpu: u64,
            _irq: u16,
            _priority: u8,
            _group: u8,
            _index: u8,
        ) -> Result<(), InvocationError> {
            Err(InvocationError::NoHypervisor)
        }
        /// No vCPUs in this config.
        pub fn ack_vppi(_vcpu: u64, _irq: u64) -> Result<(), InvocationError> {
            Err(InvocationError::NoHypervisor)
        }
        /// No vCPUs in this config.
        pub fn read_reg(_vcpu: u64, _reg: u64) -> Result<u64, InvocationError> {
            Err(InvocationError::NoHypervisor)
        }
        /// No vCPUs in this config.
        pub fn write_reg(_vcpu: u64, _reg: u64, _value: u64) -> Result<(), InvocationError> {
            Err(InvocationError::NoHypervisor)
        }
        /// No vCPUs in this config.
        pub fn read_context(_vcpu: u64) -> Result<[u64; USER_CONTEXT_WORDS], InvocationError> {
            Err(InvocationError::NoHypervisor)
        }
        /// No vCPUs in this config.
        pub fn write_context(
            _vcpu: u64,
            _ctx: &[u64; USER_CONTEXT_WORDS],
            _resume: bool,
        ) -> Result<(), InvocationError> {
            Err(InvocationError::NoHypervisor)
        }
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none", sel4_sdk))]
pub use imp::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_registers_flags_word() {
        assert_eq!(write_registers_mr0(true, 0), 1);
        assert_eq!(write_registers_mr0(false, 0), 0);
        assert_eq!(write_registers_mr0(true, 0xab), 0xab01);
    }

    #[test]
    fn inject_irq_word() {
        assert_eq!(inject_irq_mr0(27, 0, 0, 0), 27);
        assert_eq!(inject_irq_mr0(0xffff, 0xa0, 1, 3), 0x0003_01a0_ffff);
    }
}
