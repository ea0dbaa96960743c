//! Stage-2 data-abort decoding: ESR_EL2 + faulting IPA (+ the vCPU's
//! registers for a store) → [`MmioAccess`], and the write-back of a load's
//! result into the register file.
//!
//! Field positions are those of the Arm ARM's ESR_ELx description for
//! EC 0b100100 ("Data Abort from a lower Exception level"): EC `[31:26]`,
//! IL `[25]`, and in the ISS: ISV `[24]`, SAS `[23:22]`, SSE `[21]`,
//! SRT `[20:16]`, SF `[15]`, AR `[14]`, FnV `[10]`, CM `[8]`, S1PTW `[7]`,
//! WnR `[6]`, DFSC `[5:0]`. SAS..AR are only valid when ISV is 1; an abort
//! without a valid syndrome (e.g. a load/store pair, or a post-indexed
//! access on cores that do not report it) cannot be emulated without
//! decoding the instruction from guest memory, which this VMM deliberately
//! does not do: the guest is stopped with [`DecodeError::NoSyndrome`].

use bulkhead_vmm_core::{AccessKind, MmioAccess};

/// Exception class of a data abort taken from a lower exception level.
pub const EC_DABT_LOW: u8 = 0x24;

const ISV: u64 = 1 << 24;
const SSE: u64 = 1 << 21;
const SF: u64 = 1 << 15;
const AR: u64 = 1 << 14;
const FNV: u64 = 1 << 10;
const CM: u64 = 1 << 8;
const S1PTW: u64 = 1 << 7;
const WNR: u64 = 1 << 6;
const IL: u64 = 1 << 25;

/// Register number that names XZR/WZR in SRT.
pub const XZR: u8 = 31;

/// Why a fault cannot be turned into an MMIO access. The backend stops the
/// faulting guest (only that guest) and reports this value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// ESR_EL2's exception class is not a lower-EL data abort.
    WrongClass {
        /// The EC field found.
        ec: u8,
    },
    /// ESR_EL2 has bits set above bit 31 that this decoder does not know
    /// (ISS2 of FEAT_LS64 stores, or a corrupted value).
    UnknownHighBits {
        /// ESR_EL2 as received.
        esr: u64,
    },
    /// ISV is 0: width and register are not in the syndrome.
    NoSyndrome,
    /// The abort happened on a stage-1 page-table walk touching unmapped
    /// guest-physical memory: the guest's page tables point outside RAM.
    StageOneWalk,
    /// A cache-maintenance instruction hit an unmapped address.
    CacheMaintenance,
    /// FnV is set: the page offset of the address is unknown.
    AddressNotValid,
    /// IL is 0: a 16-bit (T32) instruction; only AArch64 guests are run.
    NotAArch64,
    /// An 8-byte access through a 32-bit register: no instruction does
    /// this, so the syndrome is inconsistent.
    InconsistentWidth,
    /// The access crosses the end of the address space.
    AddressOverflow,
}

/// A decoded data abort: the access for the VMM core, plus what the
/// backend needs to complete a load and resume the vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataAbort {
    /// The access, with the store's value already read and truncated.
    pub access: MmioAccess,
    /// Sign-extend a loaded value (SSE).
    pub sign_extend: bool,
    /// The register is a 64-bit X register (SF); otherwise a W register.
    pub sixty_four: bool,
    /// Acquire/release semantics (AR). The backend completes every access
    /// before resuming the vCPU, so ordering is already the strongest; the
    /// flag is kept for traces.
    pub acquire_release: bool,
}

/// Bytes the vCPU's PC must advance by to step over the faulting
/// instruction: 4 for every AArch64 instruction.
pub const INSTRUCTION_LEN: u64 = 4;

/// The exception class of `esr`.
pub fn exception_class(esr: u64) -> u8 {
    // Masked to 6 bits, so the cast cannot lose anything.
    ((esr >> 26) & 0x3f) as u8
}

/// The faulting IPA from HPFAR_EL2 and FAR_EL2: HPFAR_EL2.FIPA (bits
/// `[43:4]`, bits `[43:40]` RES0 without FEAT_LPA) holds IPA`[51:12]`, and
/// the page offset comes from FAR_EL2`[11:0]`.
pub fn ipa_from(hpfar: u64, far: u64) -> u64 {
    let fipa = (hpfar >> 4) & ((1 << 40) - 1);
    (fipa << 12) | (far & 0xfff)
}

fn mask(width: u8) -> u64 {
    match width {
        8 => u64::MAX,
        w => (1u64 << (u32::from(w) * 8)) - 1,
    }
}

/// Decode a data abort at guest-physical `ipa` with syndrome `esr`.
/// `regs` are the vCPU's x0..x30 at the fault; a store takes its value from
/// them (XZR stores 0; a W register stores its low 32 bits).
///
/// # Errors
/// [`DecodeError`] for anything that is not a lower-EL data abort with a
/// complete syndrome.
pub fn decode(esr: u64, ipa: u64, regs: &[u64; 31]) -> Result<DataAbort, DecodeError> {
    if esr >> 32 != 0 {
        return Err(DecodeError::UnknownHighBits { esr });
    }
    let ec = exception_class(esr);
    if ec != EC_DABT_LOW {
        return Err(DecodeError::WrongClass { ec });
    }
    // S1PTW and CM are checked before ISV: their meaning holds whatever ISV
    // says, and they name the real problem more precisely.
    if esr & S1PTW != 0 {
        return Err(DecodeError::StageOneWalk);
    }
    if esr & CM != 0 {
        return Err(DecodeError::CacheMaintenance);
    }
    if esr & ISV == 0 {
        return Err(DecodeError::NoSyndrome);
    }
    if esr & FNV != 0 {
        return Err(DecodeError::AddressNotValid);
    }
    if esr & IL == 0 {
        return Err(DecodeError::NotAArch64);
    }
    let width = 1u8 << ((esr >> 22) & 0x3);
    let sixty_four = esr & SF != 0;
    if width == 8 && !sixty_four {
        return Err(DecodeError::InconsistentWidth);
    }
    if ipa.checked_add(u64::from(width) - 1).is_none() {
        return Err(DecodeError::AddressOverflow);
    }
    // Masked to 5 bits.
    let reg = ((esr >> 16) & 0x1f) as u8;
    let kind = if esr & WNR != 0 {
        let raw = regs.get(usize::from(reg)).copied().unwrap_or(0);
        let reg_bits = if sixty_four { raw } else { raw & 0xffff_ffff };
        AccessKind::Write {
            value: reg_bits & mask(width),
        }
    } else {
        AccessKind::Read { reg }
    };
    Ok(DataAbort {
        access: MmioAccess {
            gpa: ipa,
            width,
            kind,
        },
        sign_extend: esr & SSE != 0,
        sixty_four,
        acquire_release: esr & AR != 0,
    })
}

/// The register value a load of `value` produces: truncated to the access
/// width, sign- or zero-extended to the register's width, and for a W
/// register the upper 32 bits cleared (as every write to a W register does).
pub fn load_result(abort: &DataAbort, value: u64) -> u64 {
    let width = abort.access.width;
    let v = value & mask(width);
    let bits = u32::from(width) * 8;
    let extended = if abort.sign_extend && bits < 64 {
        let shift = 64 - bits;
        // Reinterpreting as i64 and back is the point: an arithmetic shift
        // replicates the access's sign bit.
        (((v << shift) as i64) >> shift) as u64
    } else {
        v
    };
    if abort.sixty_four {
        extended
    } else {
        extended & 0xffff_ffff
    }
}

/// Complete a load in `regs` (x0..x30): writes [`load_result`] to the
/// destination register; a load into XZR is discarded. A store leaves
/// `regs` unchanged.
pub fn complete_load(abort: &DataAbort, value: u64, regs: &mut [u64; 31]) {
    if let AccessKind::Read { reg } = abort.access.kind {
        if let Some(r) = regs.get_mut(usize::from(reg)) {
            *r = load_result(abort, value);
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // Test loops index with small u64s.
mod tests {
    use super::*;

    const BASE: u64 = (EC_DABT_LOW as u64) << 26 | IL | ISV;

    fn esr(sas: u64, srt: u64, write: bool, sse: bool, sf: bool) -> u64 {
        BASE | sas << 22
            | srt << 16
            | if write { WNR } else { 0 }
            | if sse { SSE } else { 0 }
            | if sf { SF } else { 0 }
    }

    fn regs() -> [u64; 31] {
        let mut r = [0u64; 31];
        for (i, x) in r.iter_mut().enumerate() {
            // Distinct, with high bits set in every byte lane.
            *x = 0xf0e1_d2c3_b4a5_9680 ^ (i as u64 * 0x0101_0101_0101_0101);
        }
        r
    }

    #[test]
    fn every_width_register_and_direction() {
        let r = regs();
        for sas in 0..4u64 {
            let width = 1u8 << sas;
            for srt in 0..=31u64 {
                for sf in [false, true] {
                    if width == 8 && !sf {
                        continue;
                    }
                    // Load.
                    let d = decode(esr(sas, srt, false, false, sf), 0x0a00_0010, &r).unwrap();
                    assert_eq!(d.access.width, width);
                    assert_eq!(d.access.gpa, 0x0a00_0010);
                    assert_eq!(d.access.kind, AccessKind::Read { reg: srt as u8 });
                    assert_eq!(d.sixty_four, sf);
                    // Store.
                    let d = decode(esr(sas, srt, true, false, sf), 0x0a00_0010, &r).unwrap();
                    let expect = if srt == 31 {
                        0
                    } else {
                        let full = r[srt as usize];
                        let reg = if sf { full } else { full & 0xffff_ffff };
                        reg & mask(width)
                    };
                    assert_eq!(
                        d.access.kind,
                        AccessKind::Write { value: expect },
                        "sas {sas} srt {srt} sf {sf}"
                    );
                }
            }
        }
    }

    #[test]
    fn store_from_xzr_is_zero_even_with_nonzero_array() {
        let r = [u64::MAX; 31];
        let d = decode(esr(3, 31, true, false, true), 0x1000, &r).unwrap();
        assert_eq!(d.access.kind, AccessKind::Write { value: 0 });
    }

    #[test]
    fn load_into_xzr_is_discarded() {
        let before = regs();
        let mut r = before;
        let d = decode(esr(2, 31, false, false, true), 0x1000, &r).unwrap();
        complete_load(&d, 0xdead_beef, &mut r);
        assert_eq!(r, before);
    }

    #[test]
    fn load_writes_only_its_register() {
        for srt in 0..31usize {
            let before = regs();
            let mut r = before;
            let d = decode(esr(2, srt as u64, false, false, false), 0x1000, &r).unwrap();
            complete_load(&d, 0x1234_5678, &mut r);
            for (i, (a, b)) in r.iter().zip(before.iter()).enumerate() {
                if i == srt {
                    assert_eq!(*a, 0x1234_5678);
                } else {
                    assert_eq!(a, b);
                }
            }
        }
    }

    #[test]
    fn sign_and_zero_extension() {
        let r = [0u64; 31];
        // (sas, sse, sf, device value, expected register)
        let cases: &[(u64, bool, bool, u64, u64)] = &[
            // LDRB W / LDRB into X (zero-extended either way).
            (0, false, false, 0xff, 0xff),
            (0, false, true, 0xff, 0xff),
            // LDRSB W: sign-extended to 32 bits, upper half clear.
            (0, true, false, 0x80, 0xffff_ff80),
            // LDRSB X.
            (0, true, true, 0x80, 0xffff_ffff_ffff_ff80),
            (0, true, true, 0x7f, 0x7f),
            // LDRSH W / X.
            (1, true, false, 0x8001, 0xffff_8001),
            (1, true, true, 0x8001, 0xffff_ffff_ffff_8001),
            (1, false, true, 0x8001, 0x8001),
            // LDR W: upper half clear.
            (2, false, false, 0x8000_0000, 0x8000_0000),
            // LDRSW X.
            (2, true, true, 0x8000_0000, 0xffff_ffff_8000_0000),
            (2, true, true, 0x7fff_ffff, 0x7fff_ffff),
            // LDR X.
            (3, false, true, 0x8000_0000_0000_0001, 0x8000_0000_0000_0001),
            // SSE on a 64-bit load changes nothing.
            (3, true, true, 0x8000_0000_0000_0001, 0x8000_0000_0000_0001),
        ];
        for &(sas, sse, sf, value, expect) in cases {
            let d = decode(esr(sas, 5, false, sse, sf), 0x1000, &r).unwrap();
            assert_eq!(
                load_result(&d, value),
                expect,
                "sas {sas} sse {sse} sf {sf}"
            );
            let mut regs = [u64::MAX; 31];
            complete_load(&d, value, &mut regs);
            assert_eq!(regs[5], expect);
        }
    }

    #[test]
    fn device_value_wider_than_access_is_truncated() {
        let r = [0u64; 31];
        let d = decode(esr(0, 1, false, false, true), 0x1000, &r).unwrap();
        assert_eq!(load_result(&d, 0x1234), 0x34);
        let d = decode(esr(1, 1, false, true, false), 0x1000, &r).unwrap();
        assert_eq!(load_result(&d, 0xffff_0000_0001_8000), 0xffff_8000);
    }

    #[test]
    fn acquire_release_flag() {
        let r = [0u64; 31];
        let d = decode(esr(2, 0, false, false, false) | AR, 0x1000, &r).unwrap();
        assert!(d.acquire_release);
    }

    #[test]
    fn rejects() {
        let r = [0u64; 31];
        let ok = esr(2, 3, true, false, false);
        assert!(decode(ok, 0x1000, &r).is_ok());
        assert_eq!(decode(ok & !ISV, 0x1000, &r), Err(DecodeError::NoSyndrome));
        assert_eq!(
            decode(ok | S1PTW, 0x1000, &r),
            Err(DecodeError::StageOneWalk)
        );
        // S1PTW without ISV still says what happened.
        assert_eq!(
            decode((ok | S1PTW) & !ISV, 0x1000, &r),
            Err(DecodeError::StageOneWalk)
        );
        assert_eq!(
            decode(ok | CM, 0x1000, &r),
            Err(DecodeError::CacheMaintenance)
        );
        assert_eq!(
            decode(ok | FNV, 0x1000, &r),
            Err(DecodeError::AddressNotValid)
        );
        assert_eq!(decode(ok & !IL, 0x1000, &r), Err(DecodeError::NotAArch64));
        // Data abort from EL2 itself, instruction abort, HVC, and EC 0.
        for ec in [0x25u64, 0x20, 0x16, 0x00, 0x3f] {
            let bad = (ok & !(0x3f << 26)) | ec << 26;
            assert_eq!(
                decode(bad, 0x1000, &r),
                Err(DecodeError::WrongClass { ec: ec as u8 })
            );
        }
        assert_eq!(
            decode(esr(3, 0, false, false, false), 0x1000, &r),
            Err(DecodeError::InconsistentWidth)
        );
        assert_eq!(
            decode(ok | 1 << 32, 0x1000, &r),
            Err(DecodeError::UnknownHighBits { esr: ok | 1 << 32 })
        );
        assert_eq!(
            decode(ok, u64::MAX - 1, &r),
            Err(DecodeError::AddressOverflow)
        );
        assert!(decode(ok, u64::MAX - 3, &r).is_ok());
    }

    #[test]
    fn no_esr_value_panics() {
        // Walk a spread of arbitrary ESR values through decode and, when it
        // succeeds, through the load completion.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut r = regs();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let esr = (x & 0x03ff_ffff) | (EC_DABT_LOW as u64) << 26;
            if let Ok(d) = decode(esr, x >> 20, &r) {
                assert!(d.access.width_valid());
                complete_load(&d, x, &mut r);
            }
            let _ = decode(x, x, &r);
        }
    }

    #[test]
    fn ipa_from_hpfar_and_far() {
        // IPA 0x0a00_3456: FIPA = IPA >> 12 placed at bit 4.
        let hpfar = (0x0a00_3456u64 >> 12) << 4;
        assert_eq!(ipa_from(hpfar, 0xffff_0000_1234_5456), 0x0a00_3456);
        // 48-bit IPA.
        let ipa = 0xfedc_ba98_7654u64;
        assert_eq!(ipa_from((ipa >> 12) << 4 | 0xf, ipa), ipa);
        // Bits above FIPA are ignored.
        assert_eq!(ipa_from(1 << 63 | (1 << 4), 0), 0x1000);
    }
}
