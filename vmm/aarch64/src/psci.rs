//! PSCI 1.1 (Arm DEN0022) for a guest's vCPUs, reached over `smc` or
//! `hvc` with the SMC Calling Convention: function ID in W0, arguments in
//! X1..X3 (W1..W3 for SMC32 calls), result in X0.
//!
//! [`Psci::call`] returns the value for the guest's X0 and an [`Action`]
//! the seL4 backend performs (start another vCPU, stop this one, power the
//! guest off or reset it). vCPU `k` has MPIDR affinity Aff0 = `k` (Aff1..3
//! zero): the backend programs VMPIDR_EL2 and the guest device tree's
//! `/cpus/cpu@k` `reg` with [`mpidr_of`] so the three agree.
//!
//! CPU_ON of a second vCPU is only useful once the virtual GIC banks
//! per-vCPU state; `vgic` models one vCPU today.

/// PSCI version reported: 1.1 (major in bits `[31:16]`, minor in `[15:0]`).
pub const VERSION_1_1: u32 = 0x0001_0001;

/// Function IDs (SMC32 forms; SMC64 forms set bit 30).
pub mod fid {
    /// PSCI_VERSION.
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    /// CPU_SUSPEND (SMC32).
    pub const CPU_SUSPEND: u32 = 0x8400_0001;
    /// CPU_OFF.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// CPU_ON (SMC32).
    pub const CPU_ON: u32 = 0x8400_0003;
    /// AFFINITY_INFO (SMC32).
    pub const AFFINITY_INFO: u32 = 0x8400_0004;
    /// MIGRATE_INFO_TYPE.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// PSCI_FEATURES.
    pub const PSCI_FEATURES: u32 = 0x8400_000a;
    /// Bit 30: the SMC64/HVC64 calling convention.
    pub const SMC64: u32 = 0x4000_0000;
}

/// PSCI return codes (as the signed 32-bit values the spec defines).
pub mod ret {
    /// SUCCESS.
    pub const SUCCESS: i32 = 0;
    /// NOT_SUPPORTED.
    pub const NOT_SUPPORTED: i32 = -1;
    /// INVALID_PARAMETERS.
    pub const INVALID_PARAMETERS: i32 = -2;
    /// ALREADY_ON.
    pub const ALREADY_ON: i32 = -4;
    /// INVALID_ADDRESS.
    pub const INVALID_ADDRESS: i32 = -9;
    /// AFFINITY_INFO: the affinity instance is on.
    pub const AFF_ON: i32 = 0;
    /// AFFINITY_INFO: the affinity instance is off.
    pub const AFF_OFF: i32 = 1;
}

/// MIGRATE_INFO_TYPE value 2: no Trusted OS needs migration.
const MIGRATE_NOT_REQUIRED: i32 = 2;

/// How the guest made the call; it decides where the vCPU resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conduit {
    /// `smc` trapped by HCR_EL2.TSC: ELR_EL2 holds the address of the
    /// `smc` itself, so the backend advances the PC by 4.
    Smc,
    /// `hvc`: ELR_EL2 already holds the next instruction.
    Hvc,
}

impl Conduit {
    /// Bytes to add to the vCPU's PC before resuming it after the call.
    pub fn pc_advance(self) -> u64 {
        match self {
            Conduit::Smc => 4,
            Conduit::Hvc => 0,
        }
    }
}

/// What the backend must do besides writing X0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing: write X0, advance the PC, resume the caller.
    Resume,
    /// Resume the caller, and start vCPU `vcpu` at `entry` in EL1h with
    /// DAIF masked, MMU off, X0 = `context`.
    StartCpu {
        /// vCPU index.
        vcpu: usize,
        /// Entry point (guest-physical; the guest's MMU is off).
        entry: u64,
        /// Value for the new vCPU's X0.
        context: u64,
    },
    /// Stop the calling vCPU (CPU_OFF); it does not return. X0 is ignored.
    StopCpu {
        /// vCPU index.
        vcpu: usize,
    },
    /// The calling vCPU waits for an interrupt, then resumes (CPU_SUSPEND,
    /// treated as a standby state).
    WaitForInterrupt,
    /// Power the whole guest off.
    SystemOff,
    /// Reset the whole guest (reload it and boot vCPU 0 again).
    SystemReset,
}

/// The result of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Value for the caller's X0 (the 32-bit result sign-extended).
    pub x0: u64,
    /// What the backend does next.
    pub action: Action,
}

fn reply(code: i32, action: Action) -> Reply {
    Reply {
        x0: i64::from(code) as u64,
        action,
    }
}

/// The MPIDR affinity of vCPU `k` (Aff0 = `k`, at most 255 vCPUs).
pub fn mpidr_of(vcpu: u8) -> u64 {
    u64::from(vcpu)
}

/// Power state of each of up to `N` vCPUs of one guest.
#[derive(Debug, Clone)]
pub struct Psci<const N: usize> {
    on: [bool; N],
    count: usize,
    /// Guest RAM `[base, end)`: entry points must lie in it.
    ram: (u64, u64),
}

impl<const N: usize> Psci<N> {
    /// `vcpus` vCPUs (clamped to `N`), vCPU 0 on and the rest off, entry
    /// points restricted to guest RAM `[ram_base, ram_base + ram_size)`.
    pub fn new(vcpus: usize, ram_base: u64, ram_size: u64) -> Self {
        let mut on = [false; N];
        if let Some(first) = on.first_mut() {
            *first = true;
        }
        Psci {
            on,
            count: vcpus.min(N),
            ram: (ram_base, ram_base.saturating_add(ram_size)),
        }
    }

    /// Whether vCPU `k` is on.
    pub fn is_on(&self, k: usize) -> bool {
        k < self.count && self.on.get(k).copied().unwrap_or(false)
    }

    /// Back to the reset state (after [`Action::SystemReset`]).
    pub fn reset(&mut self) {
        for (i, s) in self.on.iter_mut().enumerate() {
            *s = i == 0;
        }
    }

    fn vcpu_of(&self, mpidr: u64, smc64: bool) -> Option<usize> {
        let mpidr = if smc64 { mpidr } else { mpidr & 0xffff_ffff };
        // Every vCPU has Aff1..Aff3 = 0, so any bit above Aff0 (affinity
        // or reserved) names no vCPU.
        if mpidr & !0xff != 0 {
            return None;
        }
        let k = usize::try_from(mpidr).ok()?;
        (k < self.count).then_some(k)
    }

    fn implemented(id: u32) -> bool {
        let base = id & !fid::SMC64;
        let has64 = matches!(base, fid::CPU_SUSPEND | fid::CPU_ON | fid::AFFINITY_INFO);
        if id & fid::SMC64 != 0 {
            return has64;
        }
        has64
            || matches!(
                base,
                fid::PSCI_VERSION
                    | fid::CPU_OFF
                    | fid::MIGRATE_INFO_TYPE
                    | fid::SYSTEM_OFF
                    | fid::SYSTEM_RESET
                    | fid::PSCI_FEATURES
            )
    }

    /// Handle a call from vCPU `caller` with the guest's X0..X3.
    pub fn call(&mut self, caller: usize, x: [u64; 4]) -> Reply {
        // SMCCC: the function ID is W0; the upper half of X0 is ignored.
        let id = (x[0] & 0xffff_ffff) as u32;
        let smc64 = id & fid::SMC64 != 0;
        let arg = |i: usize| {
            let v = x.get(i).copied().unwrap_or(0);
            if smc64 {
                v
            } else {
                v & 0xffff_ffff
            }
        };
        if !Self::implemented(id) {
            return reply(ret::NOT_SUPPORTED, Action::Resume);
        }
        match id & !fid::SMC64 {
            fid::PSCI_VERSION => Reply {
                x0: u64::from(VERSION_1_1),
                action: Action::Resume,
            },
            fid::CPU_SUSPEND => reply(ret::SUCCESS, Action::WaitForInterrupt),
            fid::CPU_OFF => {
                if let Some(s) = self.on.get_mut(caller) {
                    *s = false;
                }
                reply(ret::SUCCESS, Action::StopCpu { vcpu: caller })
            }
            fid::CPU_ON => {
                let Some(k) = self.vcpu_of(arg(1), smc64) else {
                    return reply(ret::INVALID_PARAMETERS, Action::Resume);
                };
                if self.is_on(k) {
                    return reply(ret::ALREADY_ON, Action::Resume);
                }
                let entry = arg(2);
                if entry % 4 != 0 || entry < self.ram.0 || entry >= self.ram.1 {
                    return reply(ret::INVALID_ADDRESS, Action::Resume);
                }
                if let Some(s) = self.on.get_mut(k) {
                    *s = true;
                }
                reply(
                    ret::SUCCESS,
                    Action::StartCpu {
                        vcpu: k,
                        entry,
                        context: arg(3),
                    },
                )
            }
            fid::AFFINITY_INFO => {
                // Only level 0 (single cores) is described to the guest.
                if arg(2) != 0 {
                    return reply(ret::INVALID_PARAMETERS, Action::Resume);
                }
                match self.vcpu_of(arg(1), smc64) {
                    Some(k) if self.is_on(k) => reply(ret::AFF_ON, Action::Resume),
                    Some(_) => reply(ret::AFF_OFF, Action::Resume),
                    None => reply(ret::INVALID_PARAMETERS, Action::Resume),
                }
            }
            fid::MIGRATE_INFO_TYPE => reply(MIGRATE_NOT_REQUIRED, Action::Resume),
            fid::SYSTEM_OFF => reply(ret::SUCCESS, Action::SystemOff),
            fid::SYSTEM_RESET => reply(ret::SUCCESS, Action::SystemReset),
            fid::PSCI_FEATURES => {
                // The queried ID is a 32-bit value in W1 whatever the call's
                // convention. CPU_SUSPEND's feature flags are 0: original
                // power_state format, platform-coordinated mode only.
                let q = (x[1] & 0xffff_ffff) as u32;
                let code = if Self::implemented(q) {
                    ret::SUCCESS
                } else {
                    ret::NOT_SUPPORTED
                };
                reply(code, Action::Resume)
            }
            _ => reply(ret::NOT_SUPPORTED, Action::Resume),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: u64 = 0x4000_0000;
    const NS: u64 = u64::MAX; // -1
    fn code(c: i32) -> u64 {
        i64::from(c) as u64
    }

    fn psci() -> Psci<4> {
        Psci::new(4, RAM, 0x1000_0000)
    }

    #[test]
    fn version_and_migrate_info() {
        let mut p = psci();
        let r = p.call(0, [u64::from(fid::PSCI_VERSION), 0, 0, 0]);
        assert_eq!(
            r,
            Reply {
                x0: 0x1_0001,
                action: Action::Resume
            }
        );
        // Upper half of X0 ignored.
        let r = p.call(
            0,
            [
                0xdead_0000_0000_0000 | u64::from(fid::PSCI_VERSION),
                0,
                0,
                0,
            ],
        );
        assert_eq!(r.x0, 0x1_0001);
        let r = p.call(0, [u64::from(fid::MIGRATE_INFO_TYPE), 0, 0, 0]);
        assert_eq!(r.x0, 2);
    }

    #[test]
    fn cpu_on_smc64_and_smc32() {
        let mut p = psci();
        let on64 = u64::from(fid::CPU_ON | fid::SMC64);
        let r = p.call(0, [on64, mpidr_of(2), RAM + 0x8_0000, 0x1234_5678_9abc]);
        assert_eq!(
            r,
            Reply {
                x0: 0,
                action: Action::StartCpu {
                    vcpu: 2,
                    entry: RAM + 0x8_0000,
                    context: 0x1234_5678_9abc
                }
            }
        );
        assert!(p.is_on(2));
        assert_eq!(p.call(0, [on64, 2, RAM, 0]).x0, code(ret::ALREADY_ON));
        // SMC32: upper halves of the arguments are ignored.
        let r = p.call(
            0,
            [
                u64::from(fid::CPU_ON),
                0xffff_0000_0000_0001,
                0xffff_ffff_0000_0000 | RAM,
                0xaaaa_bbbb_cccc_dddd,
            ],
        );
        assert_eq!(
            r.action,
            Action::StartCpu {
                vcpu: 1,
                entry: RAM,
                context: 0xcccc_dddd
            }
        );
    }

    #[test]
    fn cpu_on_invalid() {
        let mut p = psci();
        let on64 = u64::from(fid::CPU_ON | fid::SMC64);
        // No such vCPU, Aff1 set, bits outside the affinity fields.
        for target in [4u64, 0x100, 1 << 32, 1 << 24 | 1, 1 << 40] {
            let r = p.call(0, [on64, target, RAM, 0]);
            assert_eq!(
                r,
                reply(ret::INVALID_PARAMETERS, Action::Resume),
                "{target:#x}"
            );
        }
        // Entry outside RAM or misaligned.
        for entry in [0u64, RAM - 4, RAM + 0x1000_0000, RAM + 2] {
            let r = p.call(0, [on64, 1, entry, 0]);
            assert_eq!(r, reply(ret::INVALID_ADDRESS, Action::Resume), "{entry:#x}");
        }
        assert!(!p.is_on(1));
        // vCPU 0 is on from the start.
        assert_eq!(p.call(1, [on64, 0, RAM, 0]).x0, code(ret::ALREADY_ON));
    }

    #[test]
    fn cpu_off_and_affinity_info() {
        let mut p = psci();
        let aff = u64::from(fid::AFFINITY_INFO | fid::SMC64);
        assert_eq!(p.call(0, [aff, 1, 0, 0]).x0, code(ret::AFF_OFF));
        p.call(0, [u64::from(fid::CPU_ON | fid::SMC64), 1, RAM, 0]);
        assert_eq!(p.call(0, [aff, 1, 0, 0]).x0, code(ret::AFF_ON));
        let r = p.call(1, [u64::from(fid::CPU_OFF), 0, 0, 0]);
        assert_eq!(r.action, Action::StopCpu { vcpu: 1 });
        assert_eq!(p.call(0, [aff, 1, 0, 0]).x0, code(ret::AFF_OFF));
        // It can be started again.
        let r = p.call(0, [u64::from(fid::CPU_ON | fid::SMC64), 1, RAM, 7]);
        assert_eq!(
            r.action,
            Action::StartCpu {
                vcpu: 1,
                entry: RAM,
                context: 7
            }
        );
        // Level 1 is not described; unknown target.
        assert_eq!(p.call(0, [aff, 0, 1, 0]).x0, code(ret::INVALID_PARAMETERS));
        assert_eq!(p.call(0, [aff, 9, 0, 0]).x0, code(ret::INVALID_PARAMETERS));
        // SMC32 form.
        assert_eq!(
            p.call(0, [u64::from(fid::AFFINITY_INFO), 0, 0, 0]).x0,
            code(ret::AFF_ON)
        );
    }

    #[test]
    fn system_off_reset_and_reset_state() {
        let mut p = psci();
        assert_eq!(
            p.call(0, [u64::from(fid::SYSTEM_OFF), 0, 0, 0]).action,
            Action::SystemOff
        );
        assert_eq!(
            p.call(3, [u64::from(fid::SYSTEM_RESET), 0, 0, 0]).action,
            Action::SystemReset
        );
        p.call(0, [u64::from(fid::CPU_ON | fid::SMC64), 3, RAM, 0]);
        p.reset();
        assert!(p.is_on(0) && !p.is_on(3));
    }

    #[test]
    fn features_and_unknown_ids() {
        let mut p = psci();
        let feat = u64::from(fid::PSCI_FEATURES);
        for id in [
            fid::PSCI_VERSION,
            fid::CPU_ON,
            fid::CPU_ON | fid::SMC64,
            fid::CPU_OFF,
            fid::CPU_SUSPEND | fid::SMC64,
            fid::AFFINITY_INFO | fid::SMC64,
            fid::SYSTEM_OFF,
            fid::SYSTEM_RESET,
            fid::PSCI_FEATURES,
            fid::MIGRATE_INFO_TYPE,
        ] {
            assert_eq!(p.call(0, [feat, u64::from(id), 0, 0]).x0, 0, "{id:#x}");
        }
        // SMC64 forms of 32-bit-only functions, MIGRATE, SYSTEM_SUSPEND,
        // SYSTEM_RESET2, SMCCC_VERSION, garbage.
        for id in [
            fid::PSCI_VERSION | fid::SMC64,
            fid::SYSTEM_OFF | fid::SMC64,
            0x8400_0005,
            0xc400_000e,
            0x8400_0012,
            0x8000_0000,
            0,
            0xffff_ffff,
        ] {
            assert_eq!(p.call(0, [feat, u64::from(id), 0, 0]).x0, NS, "{id:#x}");
            let r = p.call(0, [u64::from(id), 1, RAM, 0]);
            assert_eq!(
                r,
                Reply {
                    x0: NS,
                    action: Action::Resume
                },
                "{id:#x}"
            );
        }
        // Nothing changed state.
        assert!(!p.is_on(1));
    }

    #[test]
    fn suspend_waits() {
        let mut p = psci();
        let r = p.call(0, [u64::from(fid::CPU_SUSPEND | fid::SMC64), 0, RAM, 0]);
        assert_eq!(
            r,
            Reply {
                x0: 0,
                action: Action::WaitForInterrupt
            }
        );
        assert_eq!(Conduit::Smc.pc_advance(), 4);
        assert_eq!(Conduit::Hvc.pc_advance(), 0);
    }

    #[test]
    fn more_vcpus_than_capacity_are_clamped() {
        let mut p: Psci<2> = Psci::new(8, RAM, 0x1000);
        let on64 = u64::from(fid::CPU_ON | fid::SMC64);
        assert_eq!(p.call(0, [on64, 1, RAM, 0]).x0, 0);
        assert_eq!(
            p.call(0, [on64, 2, RAM, 0]).x0,
            code(ret::INVALID_PARAMETERS)
        );
        // A bogus caller index does not panic.
        let r = p.call(99, [u64::from(fid::CPU_OFF), 0, 0, 0]);
        assert_eq!(r.action, Action::StopCpu { vcpu: 99 });
    }
}
