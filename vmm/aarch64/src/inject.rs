//! Exception entry into a guest: what a VMM writes into a vCPU so the
//! guest's own EL1 handler sees a synchronous data abort, as it would on
//! hardware when an access hits no device (a bus error).
//!
//! Rules from the Arm ARM (D1.10 "Exception entry", D17.2.37 `ESR_ELx`):
//! the exception is taken to EL1 at `VBAR_EL1` plus an offset chosen by
//! where it came from (current EL with SP_EL0: 0x000, current EL with
//! SP_ELx: 0x200, lower EL AArch64: 0x400, lower EL AArch32: 0x600);
//! `ELR_EL1` = the faulting instruction, `SPSR_EL1` = its PSTATE,
//! `FAR_EL1` = the faulting address, and PSTATE becomes EL1h with D, A, I,
//! F masked. The syndrome: EC 0x25 (data abort, same EL) or 0x24 (lower
//! EL), IL set, WnR as the access, DFSC 0b010000 (synchronous external
//! abort, not on a table walk), ISV clear.

/// PSTATE on exception entry to EL1: EL1h, D, A, I, F masked.
pub const PSTATE_EL1H_DAIF: u64 = 0x3c5;
/// `ESR` exception class: data abort from a lower EL.
pub const EC_DABT_LOWER: u64 = 0x24;
/// `ESR` exception class: data abort from the current EL.
pub const EC_DABT_SAME: u64 = 0x25;
/// DFSC of a synchronous external abort (not on a translation table walk).
pub const DFSC_EXTERNAL: u64 = 0x10;

/// The register writes that enter the guest's data-abort handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortEntry {
    /// New PC: the guest's vector.
    pub pc: u64,
    /// New PSTATE.
    pub pstate: u64,
    /// `ELR_EL1`: the faulting instruction.
    pub elr: u64,
    /// `SPSR_EL1`: the PSTATE the access ran with.
    pub spsr: u64,
    /// `ESR_EL1`: the syndrome the guest reads.
    pub esr: u64,
    /// `FAR_EL1`: the faulting address.
    pub far: u64,
}

/// Computes the entry into the guest's synchronous-abort vector for an
/// access at `far` by the instruction at `pc`, running with `pstate`,
/// given the guest's `vbar`. `write` is the access direction.
#[must_use]
pub fn data_abort(pc: u64, pstate: u64, vbar: u64, far: u64, write: bool) -> AbortEntry {
    let aarch32 = pstate & 0x10 != 0;
    let el = (pstate >> 2) & 3;
    let sp_elx = pstate & 1 != 0;
    let (offset, ec) = if aarch32 {
        (0x600, EC_DABT_LOWER)
    } else if el == 0 {
        (0x400, EC_DABT_LOWER)
    } else if sp_elx {
        (0x200, EC_DABT_SAME)
    } else {
        (0x000, EC_DABT_SAME)
    };
    let il = 1 << 25;
    let wnr = if write { 1 << 6 } else { 0 };
    AbortEntry {
        pc: vbar.wrapping_add(offset),
        pstate: PSTATE_EL1H_DAIF,
        elr: pc,
        spsr: pstate,
        esr: (ec << 26) | il | wnr | DFSC_EXTERNAL,
        far,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_el1h_the_abort_goes_to_the_current_el_spx_vector() {
        let e = data_abort(0x4020_0100, 0x3c5, 0x4020_0800, 0x0900_0000, false);
        assert_eq!(e.pc, 0x4020_0a00);
        assert_eq!(e.pstate, PSTATE_EL1H_DAIF);
        assert_eq!((e.elr, e.spsr, e.far), (0x4020_0100, 0x3c5, 0x0900_0000));
        assert_eq!(e.esr >> 26, EC_DABT_SAME);
        assert_eq!(e.esr & 0x3f, DFSC_EXTERNAL);
        assert_ne!(e.esr & (1 << 25), 0, "IL");
        assert_eq!(e.esr & (1 << 24), 0, "no ISV: nothing to emulate");
        assert_eq!(e.esr & (1 << 6), 0, "read");
    }

    #[test]
    fn each_origin_picks_its_vector_and_class() {
        let v = 0x1000;
        // EL1t (SP_EL0).
        let e = data_abort(0, 0x3c4, v, 0, true);
        assert_eq!((e.pc, e.esr >> 26), (0x1000, EC_DABT_SAME));
        assert_ne!(e.esr & (1 << 6), 0, "write");
        // EL0t.
        let e = data_abort(0, 0x0, v, 0, false);
        assert_eq!((e.pc, e.esr >> 26), (0x1400, EC_DABT_LOWER));
        // AArch32 user (M[4] set).
        let e = data_abort(0, 0x10, v, 0, false);
        assert_eq!((e.pc, e.esr >> 26), (0x1600, EC_DABT_LOWER));
    }
}
