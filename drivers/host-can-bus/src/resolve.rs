//! One bus transaction, resolved bit by bit on the wired-AND bus: arbitration,
//! bit/ACK errors, the other nodes' detection of an error flag, and the
//! fault-confinement effects of it all.

use crate::{Effect, ErrorState};
use bulkhead_can_frame::{BitTiming, Frame, FrameBits};

/// A node that starts a frame at the transaction's SOF.
pub(crate) struct Contender {
    pub node: usize,
    pub key: (u64, u64),
    pub frame: Frame,
    pub bits: FrameBits,
    /// Its transceiver can drive dominant bits.
    pub visible: bool,
    /// Its receive path corrupts frames (CRC error on every reception).
    pub rx_corrupt: bool,
}

/// A node that only listens.
pub(crate) struct Receiver {
    pub node: usize,
    pub active: bool,
    pub can_drive: bool,
    pub rx_corrupt: bool,
}

/// What the transaction does, applied at `end`.
pub(crate) struct Outcome {
    pub effects: Vec<Effect>,
    pub end: u64,
    pub first_dominant: Option<u64>,
    pub last_dominant_end: Option<u64>,
    pub ok: bool,
}

struct Walk<'a> {
    t: &'a BitTiming,
    t0: u64,
    cs: &'a [Contender],
    rs: &'a [Receiver],
    states: &'a [ErrorState],
    lost: Vec<usize>,
    /// Contenders that detected an error but whose flag nobody saw
    /// (error-passive or dead transceiver), with "was an ACK error".
    quiet_failed: Vec<(usize, bool)>,
    run_val: bool,
    run_len: u32,
    any_dominant: bool,
}

const FLAG: usize = 6;

/// A node's view of an error: (node, bit it detected the error at, its TX
/// key if it was transmitting, error-active, can drive the bus).
type Detection = (usize, usize, Option<(u64, u64)>, bool, bool);
/// Error delimiter (8) and intermission (3).
const DELIM_IFS: u64 = 11;

pub(crate) fn resolve(
    t: &BitTiming,
    t0: u64,
    cs: &[Contender],
    rs: &[Receiver],
    states: &[ErrorState],
) -> Outcome {
    let mut w = Walk {
        t,
        t0,
        cs,
        rs,
        states,
        lost: Vec::new(),
        quiet_failed: Vec::new(),
        run_val: true,
        run_len: 0,
        any_dominant: false,
    };
    w.run()
}

impl Walk<'_> {
    fn active(&self, c: usize) -> bool {
        self.states[self.cs[c].node] == ErrorState::Active
    }

    /// Whether anyone but the transmitters can drive the ACK slot.
    fn ackers(&self) -> bool {
        // A node that sees a CRC error does not acknowledge.
        self.rs.iter().any(|r| r.can_drive && !r.rx_corrupt)
            || self
                .lost
                .iter()
                .any(|&c| self.cs[c].visible && !self.cs[c].rx_corrupt)
    }

    fn run(&mut self) -> Outcome {
        let mut sending: Vec<usize> = (0..self.cs.len()).collect();
        let max_len = self
            .cs
            .iter()
            .map(|c| usize::from(c.bits.len()))
            .max()
            .unwrap_or(0);
        let mut i = 0usize;
        let mut last_ref = 0usize;
        loop {
            if sending.is_empty() || i > max_len {
                return self.abort(i.saturating_sub(1), last_ref);
            }
            last_ref = sending[0];
            let c0 = &self.cs[sending[0]];
            let ack_slot = usize::from(c0.bits.ack_slot());
            // Fast path: one visible transmitter past its arbitration field
            // owns the bus; nothing can go wrong before the ACK slot.
            if sending.len() == 1
                && c0.visible
                && i > usize::from(c0.bits.arbitration_end())
                && i < ack_slot
            {
                self.any_dominant = true;
                i = ack_slot;
                continue;
            }
            let ack_here = i == ack_slot;
            let bus = if ack_here {
                !self.ackers()
            } else {
                sending
                    .iter()
                    .filter(|&&c| self.cs[c].visible)
                    .all(|&c| self.cs[c].bits.bit(i))
            };
            let mut primaries: Vec<(usize, bool)> = Vec::new();
            let mut lost_now = Vec::new();
            for &c in &sending {
                let bits = &self.cs[c].bits;
                if ack_here {
                    if bus {
                        primaries.push((c, true));
                    }
                    continue;
                }
                let own = bits.bit(i);
                if own && !bus {
                    if i <= usize::from(bits.arbitration_end()) {
                        lost_now.push(c);
                    } else {
                        primaries.push((c, false));
                    }
                } else if !own && bus {
                    primaries.push((c, false));
                }
            }
            sending.retain(|c| !lost_now.contains(c) && !primaries.iter().any(|(p, _)| p == c));
            self.lost.extend(lost_now);
            if !bus {
                self.any_dominant = true;
            }
            if bus == self.run_val {
                self.run_len += 1;
            } else {
                self.run_val = bus;
                self.run_len = 1;
            }
            if !primaries.is_empty() {
                let loud = primaries
                    .iter()
                    .any(|&(c, _)| self.cs[c].visible && self.active(c));
                if loud {
                    return self.error_frame(i, &primaries, &sending);
                }
                self.quiet_failed.extend(primaries);
            }
            if ack_here && !sending.is_empty() {
                return self.success(&sending);
            }
            i += 1;
        }
    }

    /// Receivers (listeners and arbitration losers) as (node, error-active,
    /// can drive, sees a CRC error).
    fn all_receivers(&self) -> Vec<(usize, bool, bool, bool)> {
        let mut v: Vec<_> = self
            .rs
            .iter()
            .map(|r| (r.node, r.active, r.can_drive, r.rx_corrupt))
            .collect();
        v.extend(self.lost.iter().map(|&c| {
            let x = &self.cs[c];
            (x.node, self.active(c), x.visible, x.rx_corrupt)
        }));
        v
    }

    fn success(&self, winners: &[usize]) -> Outcome {
        if self
            .all_receivers()
            .iter()
            .any(|&(_, active, drive, corrupt)| corrupt && active && drive)
        {
            return self.crc_error_frame(winners);
        }
        let w = &self.cs[winners[0]];
        let bits = &w.bits;
        let t0 = self.t0;
        let eof_end = t0 + bits.time_of_first_ns(usize::from(bits.intermission_start()), self.t);
        // ISO 11898-1 §10.7: valid for receivers after the last-but-one EOF
        // bit, for the transmitter after the last one.
        let rx_valid = eof_end - u64::from(self.t.nominal_ns);
        let end = t0 + bits.duration_ns(self.t);
        let mut effects = Vec::new();
        for &c in winners {
            let n = self.cs[c].node;
            effects.push(Effect::TecSuccess(n));
            effects.push(Effect::Sent {
                node: n,
                key: self.cs[c].key,
                sof: t0,
                eof_end,
                bits: bits.len(),
            });
            effects.push(Effect::Suspend(n));
        }
        let frame = w.frame;
        for &c in &self.lost {
            effects.push(Effect::ArbitrationLost(self.cs[c].node));
        }
        for (node, _, _, corrupt) in self.all_receivers() {
            if corrupt {
                // An error-passive node's CRC error flag is recessive: only it
                // loses the frame.
                effects.push(Effect::RecError(node, 1));
                continue;
            }
            effects.push(Effect::RecSuccess(node));
            effects.push(Effect::Deliver {
                to: node,
                from: w.node,
                frame,
                at: rx_valid,
            });
        }
        self.quiet_effects(&mut effects, false);
        Outcome {
            effects,
            end,
            first_dominant: Some(t0),
            last_dominant_end: Some(
                t0 + bits.time_of_first_ns(usize::from(bits.ack_slot()) + 1, self.t),
            ),
            ok: true,
        }
    }

    /// An error-active receiver with a CRC error flags from the bit after
    /// the ACK delimiter (ISO 11898-1 §10.9.3): the transmitters see it as a
    /// bit error in EOF, the other receivers as a form error, one bit later.
    fn crc_error_frame(&self, winners: &[usize]) -> Outcome {
        let bits = &self.cs[winners[0]].bits;
        let i = usize::from(bits.ack_slot()) + 1;
        let receivers = self.all_receivers();
        let mut dom_end = i + FLAG;
        let others_loud = winners
            .iter()
            .any(|&c| self.cs[c].visible && self.active(c))
            || receivers
                .iter()
                .any(|&(_, a, d, corrupt)| a && d && !corrupt);
        if others_loud {
            dom_end = i + 1 + FLAG;
        }
        let mut effects = Vec::new();
        for &c in &self.lost {
            effects.push(Effect::ArbitrationLost(self.cs[c].node));
        }
        for &c in winners {
            let x = &self.cs[c];
            effects.push(Effect::TecError(x.node));
            effects.push(Effect::Failed {
                node: x.node,
                key: x.key,
            });
            effects.push(Effect::Suspend(x.node));
        }
        for (node, active, drive, corrupt) in receivers {
            let d = if corrupt && active && drive { i } else { i + 1 };
            // Rule 2: dominant right after its own active flag → +8 more.
            let extra = if active && drive && d + FLAG < dom_end {
                8
            } else {
                0
            };
            effects.push(Effect::RecError(node, 1 + extra));
        }
        self.quiet_effects(&mut effects, true);
        let nominal = u64::from(self.t.nominal_ns);
        let t_err = self.t0 + bits.time_of_first_ns(i + 1, self.t);
        let last = t_err + u64::try_from(dom_end - i).unwrap_or(u64::MAX) * nominal;
        Outcome {
            effects,
            end: last + DELIM_IFS * nominal,
            first_dominant: Some(self.t0),
            last_dominant_end: Some(last),
            ok: false,
        }
    }

    /// Effects for the transmitters whose error flag nobody saw.
    fn quiet_effects(&self, effects: &mut Vec<Effect>, saw_dominant_in_flag: bool) {
        for &(c, ack_error) in &self.quiet_failed {
            let n = self.cs[c].node;
            // ISO 11898-1 §12.1.4.2 exception 1: an error-passive transmitter
            // with an ACK error that sees no dominant bit during its passive
            // flag keeps its TEC.
            let exempt = ack_error && !self.active(c) && !saw_dominant_in_flag;
            if !exempt {
                effects.push(Effect::TecError(n));
            }
            effects.push(Effect::Failed {
                node: n,
                key: self.cs[c].key,
            });
            effects.push(Effect::Suspend(n));
        }
    }

    /// The bit at which a receiver detects the error flag that starts at
    /// `i + 1`: a sixth equal bit in the stuffed region (stuff error) or a
    /// dominant bit where the format fixes a recessive one (form error).
    fn receiver_detects(&self, bits: &FrameBits, i: usize) -> usize {
        let stuff_end = usize::from(bits.stuff_end());
        let mut run = if self.run_val { 0 } else { self.run_len };
        for k in i + 1..=i + FLAG {
            if k < stuff_end {
                run += 1;
                if run >= 6 {
                    return k;
                }
            } else if bits.is_fixed_form(k) {
                return k;
            }
        }
        i + FLAG
    }

    fn error_frame(&self, i: usize, primaries: &[(usize, bool)], remaining: &[usize]) -> Outcome {
        let reference = &self.cs[primaries[0].0].bits;
        let mut det: Vec<Detection> = Vec::new();
        for &(c, _) in primaries {
            let x = &self.cs[c];
            det.push((x.node, i, Some(x.key), self.active(c), x.visible));
        }
        for &c in remaining {
            let x = &self.cs[c];
            let ack = usize::from(x.bits.ack_slot());
            // A transmitter sees the flag as a bit error at its next recessive bit.
            let d = (i + 1..=i + FLAG)
                .find(|&k| x.bits.bit(k) && k != ack)
                .unwrap_or(i + FLAG);
            det.push((x.node, d, Some(x.key), self.active(c), x.visible));
        }
        let d_rx = self.receiver_detects(reference, i);
        for r in self.rs {
            det.push((r.node, d_rx, None, r.active, r.can_drive));
        }
        for &c in &self.lost {
            det.push((
                self.cs[c].node,
                d_rx,
                None,
                self.active(c),
                self.cs[c].visible,
            ));
        }
        let dom_end = det
            .iter()
            .filter(|d| d.3 && d.4)
            .map(|d| d.1 + FLAG)
            .max()
            .unwrap_or(i + FLAG);
        let mut effects = Vec::new();
        for &c in &self.lost {
            effects.push(Effect::ArbitrationLost(self.cs[c].node));
        }
        for &(node, d, key, active, drive) in &det {
            match key {
                Some(key) => {
                    effects.push(Effect::TecError(node));
                    effects.push(Effect::Failed { node, key });
                    effects.push(Effect::Suspend(node));
                }
                None => {
                    // Rule 2: dominant right after its own active flag → +8 more.
                    let extra = if active && drive && d + FLAG < dom_end {
                        8
                    } else {
                        0
                    };
                    effects.push(Effect::RecError(node, 1 + extra));
                }
            }
        }
        self.quiet_effects(&mut effects, true);
        let nominal = u64::from(self.t.nominal_ns);
        let t_err = self.t0 + reference.time_of_first_ns(i + 1, self.t);
        let dom = u64::try_from(dom_end - i).unwrap_or(u64::MAX);
        let last_dominant_end = t_err + dom * nominal;
        Outcome {
            effects,
            end: last_dominant_end + DELIM_IFS * nominal,
            first_dominant: Some(self.t0),
            last_dominant_end: Some(last_dominant_end),
            ok: false,
        }
    }

    /// Every transmitter dropped out without a flag anyone saw.
    fn abort(&self, i: usize, reference: usize) -> Outcome {
        let nominal = u64::from(self.t.nominal_ns);
        let bits = &self.cs[reference].bits;
        let t_err = self.t0 + bits.time_of_first_ns(i + 1, self.t);
        let mut effects = Vec::new();
        for &c in &self.lost {
            effects.push(Effect::ArbitrationLost(self.cs[c].node));
        }
        // If something was on the bus, listening nodes see it stop: a stuff
        // error after six recessive bits, then their flags.
        let flaggers: Vec<&Receiver> = if self.any_dominant {
            self.rs.iter().collect()
        } else {
            Vec::new()
        };
        let loud = flaggers.iter().any(|r| r.active && r.can_drive);
        for r in &flaggers {
            effects.push(Effect::RecError(r.node, 1));
        }
        self.quiet_effects(&mut effects, loud);
        let flag_bits = if loud { 2 * FLAG as u64 } else { FLAG as u64 };
        let last = t_err + flag_bits * nominal;
        Outcome {
            effects,
            end: last + DELIM_IFS * nominal,
            first_dominant: self.any_dominant.then_some(self.t0),
            last_dominant_end: self.any_dominant.then_some(if loud { last } else { t_err }),
            ok: false,
        }
    }
}
