//! Bit-timing segments for the FlexCAN CBT (nominal) and FDCBT (data)
//! registers, computed from a bit rate and the protocol-engine clock.
//!
//! A bit is `1 + prop + seg1 + seg2` time quanta of `prescaler` clocks. We
//! take the smallest prescaler (most quanta, finest sample-point placement)
//! whose quanta fit the register fields, with the sample point at 80 %
//! (nominal) or 75 % (data), the CiA 601-3 recommendations.

/// One phase's segments, in time quanta (real values, not register encodings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segments {
    /// Clock cycles per time quantum.
    pub prescaler: u16,
    /// Propagation segment.
    pub prop: u8,
    /// Phase segment 1.
    pub seg1: u8,
    /// Phase segment 2.
    pub seg2: u8,
    /// Resynchronisation jump width.
    pub sjw: u8,
}

impl Segments {
    /// Quanta per bit.
    pub fn quanta(&self) -> u32 {
        1 + u32::from(self.prop) + u32::from(self.seg1) + u32::from(self.seg2)
    }

    /// The bit rate these segments give at `clock_hz`.
    pub fn bit_rate(&self, clock_hz: u32) -> u32 {
        clock_hz / (u32::from(self.prescaler) * self.quanta())
    }

    /// Sample point in per mille of the bit.
    pub fn sample_permille(&self) -> u32 {
        (self.quanta() - u32::from(self.seg2)) * 1000 / self.quanta()
    }
}

struct Limits {
    min_prop: u32,
    max_prop: u32,
    max_seg1: u32,
    max_seg2: u32,
    max_sjw: u32,
    min_quanta: u32,
    sample_permille: u32,
}

// CBT field widths (i.MX8M Plus RM, CAN_CBT): EPRESDIV 10 bits, EPROPSEG 6,
// EPSEG1 5, EPSEG2 5, ERJW 5; all stored as value − 1.
const NOMINAL: Limits = Limits {
    min_prop: 1,
    max_prop: 64,
    max_seg1: 32,
    max_seg2: 32,
    max_sjw: 32,
    min_quanta: 8,
    sample_permille: 800,
};

// FDCBT field widths: FPRESDIV 10 bits (29..20), FPROPSEG 5 bits (14..10)
// stored as is (0..31), FPSEG1 3 bits (7..5), FPSEG2 3 bits (2..0), FRJW 3
// bits (18..16), stored as value − 1. Checked against NXP's FlexCAN
// register headers (`CAN_FDCBT_FPROPSEG_MASK` 0x7C00, shift 10; their bit-
// timing code bounds FPROPSEG by the field maximum itself, FPSEG1/FPSEG2/
// FRJW by maximum + 1, i.e. only FPROPSEG is not stored minus one).
const DATA: Limits = Limits {
    min_prop: 0,
    max_prop: 31,
    max_seg1: 8,
    max_seg2: 8,
    max_sjw: 8,
    min_quanta: 5,
    sample_permille: 750,
};

fn compute(clock_hz: u32, bps: u32, l: &Limits) -> Option<Segments> {
    if bps == 0 {
        return None;
    }
    for prescaler in 1u32..=1024 {
        let per_bit = prescaler.checked_mul(bps)?;
        if per_bit > clock_hz {
            return None;
        }
        if clock_hz % per_bit != 0 {
            continue;
        }
        let tq = clock_hz / per_bit;
        if tq < l.min_quanta {
            return None;
        }
        let sample = tq * l.sample_permille / 1000;
        let seg2 = (tq - sample).max(2);
        let tseg1 = tq - 1 - seg2;
        // Phase segments symmetric around the sample point where possible;
        // the rest is propagation.
        let seg1 = seg2.min(l.max_seg1).min(tseg1.saturating_sub(l.min_prop));
        let prop = tseg1 - seg1;
        if seg1 == 0 || seg2 > l.max_seg2 || prop < l.min_prop || prop > l.max_prop {
            continue;
        }
        let sjw = seg2.min(l.max_sjw);
        return Some(Segments {
            prescaler: u16::try_from(prescaler).ok()?,
            prop: u8::try_from(prop).ok()?,
            seg1: u8::try_from(seg1).ok()?,
            seg2: u8::try_from(seg2).ok()?,
            sjw: u8::try_from(sjw).ok()?,
        });
    }
    None
}

/// Nominal-phase segments for `bps` at `clock_hz`, if the rate divides the
/// clock into a usable number of quanta.
pub fn nominal(clock_hz: u32, bps: u32) -> Option<Segments> {
    compute(clock_hz, bps, &NOMINAL)
}

/// Data-phase segments for `bps` at `clock_hz`.
pub fn data(clock_hz: u32, bps: u32) -> Option<Segments> {
    compute(clock_hz, bps, &DATA)
}

/// The CBT register value (BTF set: use CBT instead of CTRL1's fields).
pub fn cbt(s: &Segments) -> u32 {
    (1 << 31)
        | (u32::from(s.prescaler) - 1) << 21
        | (u32::from(s.sjw) - 1) << 16
        | (u32::from(s.prop) - 1) << 10
        | (u32::from(s.seg1) - 1) << 5
        | (u32::from(s.seg2) - 1)
}

/// The FDCBT register value.
pub fn fdcbt(s: &Segments) -> u32 {
    (u32::from(s.prescaler) - 1) << 20
        | (u32::from(s.sjw) - 1) << 16
        | u32::from(s.prop) << 10
        | (u32::from(s.seg1) - 1) << 5
        | (u32::from(s.seg2) - 1)
}

/// Transceiver-delay-compensation offset in clock cycles (the secondary
/// sample point at the data sample point), if it fits FDCTRL.TDCOFF (5 bits).
pub fn tdc_offset(s: &Segments) -> Option<u8> {
    let off = (1 + u32::from(s.prop) + u32::from(s.seg1)) * u32::from(s.prescaler);
    u8::try_from(off).ok().filter(|&o| o <= 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLK: u32 = 40_000_000;

    #[test]
    fn common_rates_are_exact_with_the_recommended_sample_points() {
        for bps in [125_000, 250_000, 500_000, 1_000_000] {
            let s = nominal(CLK, bps).expect("nominal rate");
            assert_eq!(s.bit_rate(CLK), bps);
            assert_eq!(s.sample_permille(), 800, "{bps}: {s:?}");
        }
        for bps in [2_000_000, 4_000_000, 5_000_000] {
            let s = data(CLK, bps).expect("data rate");
            assert_eq!(s.bit_rate(CLK), bps);
            // 4 Mbit/s is 10 quanta: 70 % is the nearest placement.
            assert!(s.sample_permille().abs_diff(750) <= 50, "{bps}: {s:?}");
        }
    }

    #[test]
    fn five_hundred_k_is_eighty_quanta() {
        let s = nominal(CLK, 500_000).expect("500k");
        assert_eq!(
            (s.prescaler, s.prop, s.seg1, s.seg2, s.sjw),
            (1, 47, 16, 16, 16)
        );
        // EPRESDIV 0, ERJW 15, EPROPSEG 46, EPSEG1 15, EPSEG2 15, BTF.
        assert_eq!(cbt(&s), 0x8000_0000 | 15 << 16 | 46 << 10 | 15 << 5 | 15);
    }

    #[test]
    fn two_mega_data_phase_encodes_fdcbt() {
        let s = data(CLK, 2_000_000).expect("2M");
        assert_eq!((s.prescaler, s.prop, s.seg1, s.seg2), (1, 9, 5, 5));
        assert_eq!(fdcbt(&s), 4 << 16 | 9 << 10 | 4 << 5 | 4);
        assert_eq!(tdc_offset(&s), Some(15));
    }

    #[test]
    fn impossible_rates_are_refused() {
        assert_eq!(nominal(CLK, 0), None);
        assert_eq!(nominal(CLK, 333_333), None); // does not divide 40 MHz
        assert_eq!(data(CLK, 10_000_000), None); // 4 quanta only
                                                 // Slow rates need a prescaler: 10 kbit/s is 40 clocks × 100 quanta.
        assert_eq!(
            nominal(CLK, 10_000).map(|s| (s.prescaler, s.quanta())),
            Some((40, 100))
        );
    }
}
