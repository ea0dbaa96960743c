//! The capability layout libmicrokit assumes in every PD's CSpace.
//!
//! Slots from `libmicrokit/include/microkit.h` and `libmicrokit/src/main.c`
//! (Microkit 2.3.0), cross-checked with `PD_*_CAP_IDX` in
//! `tool/microkit/src/capdl/builder.rs`, which places them.

/// A capability pointer (`seL4_CPtr`).
pub type CPtr = u64;

/// Endpoint (PD has PPC callers, children or a VM) or notification the PD
/// waits on.
pub const INPUT: CPtr = 1;
/// The PD's own fault endpoint.
pub const FAULT_EP: CPtr = 2;
/// The PD's VSpace.
pub const VSPACE: CPtr = 3;
/// Reply object for `Recv`/`ReplyRecv` (MCS).
pub const REPLY: CPtr = 4;
/// The monitor's endpoint (passive PDs signal it after `init`).
pub const MONITOR_EP: CPtr = 5;
/// The PD's own TCB; only in the benchmark config.
pub const TCB: CPtr = 6;
/// SMC capability; only for PDs with `smc="true"`.
pub const ARM_SMC: CPtr = 7;
/// Output notification of channel `id` is `BASE_OUTPUT_NOTIFICATION + id`.
pub const BASE_OUTPUT_NOTIFICATION: CPtr = 10;
/// PPC endpoint of channel `id` is `BASE_ENDPOINT + id`.
pub const BASE_ENDPOINT: CPtr = 74;
/// IRQ handler of IRQ id `id` is `BASE_IRQ + id`.
pub const BASE_IRQ: CPtr = 138;
/// TCB of child PD `id` is `BASE_TCB + id`.
pub const BASE_TCB: CPtr = 202;
/// TCB of vCPU `id` is `BASE_VM_TCB + id`.
pub const BASE_VM_TCB: CPtr = 266;
/// vCPU object `id` is `BASE_VCPU + id`.
pub const BASE_VCPU: CPtr = 330;
/// x86 I/O port `id` is `BASE_IOPORT + id` (not used on aarch64).
pub const BASE_IOPORT: CPtr = 394;
/// Channel ids are 0..=61 (`MICROKIT_MAX_CHANNELS` = 62).
pub const MAX_CHANNELS: u64 = 62;

/// Radix of the PD's root CNode (`PD_ROOT_CAP_BITS` in `microkit.h` and
/// `capdl/builder.rs`). The root CNode (guard 0) holds the Microkit CNode
/// (the slots above, 512 of them, reached through a guard) in slot 0 and
/// the `<cspace>` caps in slots 1..=63. A small CPtr has its top 6 bits
/// zero and so resolves through slot 0: the constants above are unchanged.
pub const ROOT_CAP_BITS: u32 = 6;

/// A `<cspace>` slot outside 1..=63.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SlotOutOfRange(pub u64);

/// CPtr of the cap a `<cspace>` element put in root slot `slot` (what
/// libmicrokit's `microkit_cspace_root_slot_to_cptr` computes: the slot in
/// the top `ROOT_CAP_BITS` bits).
///
/// Only 1..=63 exist: slot 0 is the Microkit CNode, and the root CNode has
/// 64 slots. The Microkit 2.3.0 tool accepts `slot` up to 127, but a cap
/// for slot 64 lands in slot 0 (the index wraps) and the CapDL initialiser
/// stops the boot with `DeleteFirst`; seen on QEMU `virt` with a real SDK.
pub fn cspace_root_slot(slot: u64) -> Result<CPtr, SlotOutOfRange> {
    if slot == 0 || slot >= 1 << ROOT_CAP_BITS {
        return Err(SlotOutOfRange(slot));
    }
    Ok(slot << (u64::BITS - ROOT_CAP_BITS))
}

/// A channel, IRQ, child or vCPU id out of 0..=61.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IdOutOfRange(pub u64);

fn slot(base: CPtr, id: u64) -> Result<CPtr, IdOutOfRange> {
    if id < MAX_CHANNELS {
        Ok(base + id)
    } else {
        Err(IdOutOfRange(id))
    }
}

/// Output notification cap of channel `ch`.
pub fn notification(ch: u64) -> Result<CPtr, IdOutOfRange> {
    slot(BASE_OUTPUT_NOTIFICATION, ch)
}
/// PPC endpoint cap of channel `ch`.
pub fn endpoint(ch: u64) -> Result<CPtr, IdOutOfRange> {
    slot(BASE_ENDPOINT, ch)
}
/// IRQ handler cap of IRQ id `id`.
pub fn irq(id: u64) -> Result<CPtr, IdOutOfRange> {
    slot(BASE_IRQ, id)
}
/// TCB cap of child PD `id`.
pub fn child_tcb(id: u64) -> Result<CPtr, IdOutOfRange> {
    slot(BASE_TCB, id)
}
/// TCB cap of vCPU `id`.
pub fn vcpu_tcb(id: u64) -> Result<CPtr, IdOutOfRange> {
    slot(BASE_VM_TCB, id)
}
/// vCPU cap of vCPU `id`.
pub fn vcpu(id: u64) -> Result<CPtr, IdOutOfRange> {
    slot(BASE_VCPU, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_64_apart_as_the_tool_lays_them_out() {
        // builder.rs: each base is the previous one + 64.
        let bases = [
            BASE_OUTPUT_NOTIFICATION,
            BASE_ENDPOINT,
            BASE_IRQ,
            BASE_TCB,
            BASE_VM_TCB,
            BASE_VCPU,
            BASE_IOPORT,
        ];
        for w in bases.windows(2) {
            assert_eq!(w[1] - w[0], 64);
        }
        assert_eq!(BASE_OUTPUT_NOTIFICATION, 10);
    }

    #[test]
    fn ids_map_to_slots_and_are_bounded() {
        assert_eq!(notification(0), Ok(10));
        assert_eq!(endpoint(61), Ok(135));
        assert_eq!(irq(3), Ok(141));
        assert_eq!(child_tcb(1), Ok(203));
        assert_eq!(vcpu_tcb(0), Ok(266));
        assert_eq!(vcpu(0), Ok(330));
        assert_eq!(notification(62), Err(IdOutOfRange(62)));
        assert_eq!(irq(u64::MAX), Err(IdOutOfRange(u64::MAX)));
    }

    #[test]
    fn cspace_slots_sit_in_the_top_bits_of_the_cptr_and_are_bounded() {
        // microkit.h: slot << (seL4_WordBits - PD_ROOT_CAP_BITS), 0 and
        // >= PD_ROOT_CAP_SIZE give seL4_CapNull.
        assert_eq!(cspace_root_slot(1), Ok(1 << 58));
        assert_eq!(cspace_root_slot(63), Ok(63 << 58));
        assert_eq!(cspace_root_slot(0), Err(SlotOutOfRange(0)));
        assert_eq!(cspace_root_slot(64), Err(SlotOutOfRange(64)));
        assert_eq!(cspace_root_slot(u64::MAX), Err(SlotOutOfRange(u64::MAX)));
        // Every Microkit-CNode slot resolves through root slot 0: its top
        // ROOT_CAP_BITS bits are zero.
        assert_eq!((BASE_IOPORT + 63) >> (u64::BITS - ROOT_CAP_BITS), 0);
    }
}
