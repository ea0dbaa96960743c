//! The CAN virtualiser's logic: several guests share one CAN controller so
//! that none can send another's ids, delay its frames beyond a known bound,
//! starve it of received frames, or take the bus down for it.
//!
//! - **TX whitelist**: a frame whose id no allow entry matches is dropped
//!   and counted; nothing reaches the bus.
//! - **Budget**: a token bucket per guest (frames and exact stuffed bits per
//!   period), charged at admission.
//! - **Arbitration across guests**: each guest's admitted frames wait in its
//!   own pending queue; the controller's TX buffers always hold the globally
//!   highest-priority frames (lowest arbitration key, FIFO among equal keys).
//!   When a higher-priority frame arrives and every buffer is full, the
//!   lowest-priority buffer is aborted and its frame goes back to its guest.
//!   So a pending lower-priority frame delays a higher-priority one by at
//!   most the one frame already on the wire (the longest frame the bus
//!   allows).
//! - **Bus-off attribution and containment**: every rise of the controller's
//!   TEC is charged to the guest owning the highest-priority TX buffer (the
//!   frame the controller was offering). At bus-off the guest with the
//!   largest charge is stopped (its virtio-can sees BUSOFF), every TX buffer
//!   is aborted, the other guests' frames go back to their queues, and the
//!   controller is told to recover.
//! - **RX**: each received frame (and each frame one guest sent, as a
//!   separate node would see it) goes to every started guest whose
//!   acceptance filters match, in the same order for all.
//!
//! The logic is heap-free and `no_std`; the PD wraps it with rings and
//! notifications. See README.md for the bounds.
#![no_std]
#![forbid(unsafe_code)]

pub use bulkhead_can_protocol::controller;
pub mod policy;

// TEST-ONLY (issue 12 item 4, tools/separation/README.md): the build
// without the TX whitelist, so the separation suite can show C1 failing on
// it. Its images carry the marker `bulkhead check` refuses (E078).
#[cfg(all(
    any(
        feature = "protection-removed-can-whitelist",
        feature = "protection-removed-can-fanout"
    ),
    not(debug_assertions)
))]
compile_error!("protection-removed-* features are test-only and refuse release builds");

/// The marker of the build without the TX whitelist.
#[cfg(feature = "protection-removed-can-whitelist")]
// NUL-terminated: the checker reads the name up to the first other byte.
static PROTECTION_REMOVED: &[u8] = b"BULKHEAD_PROTECTION_REMOVED=can-whitelist\0";

/// The marker of the build that delivers to one subscriber only (C4).
#[cfg(feature = "protection-removed-can-fanout")]
static PROTECTION_REMOVED_FANOUT: &[u8] = b"BULKHEAD_PROTECTION_REMOVED=can-fanout\0";

pub use controller::{
    BusState, CanController, ControllerError, ControllerStatus, Received, SlotDone,
};
pub use policy::{Budget, CanVirtConfig, IdFilter, Policy, PolicyError, MAX_FILTERS, MAX_GUESTS};

use bulkhead_can_frame::Frame;
use bulkhead_ring::Fifo;
use policy::Bucket;

/// Most TX buffers a controller may have here.
pub const MAX_SLOTS: usize = 8;

/// How frames are offered to the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Arbitration {
    /// Globally highest priority first, with aborts (the protection).
    #[default]
    ById,
    /// Arrival order, no aborts: what a naive multiplexer does. Only for
    /// showing what the protection buys (tests, benchmarks).
    Fifo,
}

/// Why [`Virtualiser::submit`] refused a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// no such guest
    NoSuchGuest,
    /// the guest's controller is stopped
    Stopped,
    /// the id is not on the guest's allow list
    NotAllowed,
    /// the guest's budget is exhausted
    OverBudget,
    /// the controller cannot carry this frame (FD on a classic bus)
    Unsupported,
}

/// What [`Virtualiser::submit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Queued; the completion will carry this tag.
    Queued(u32),
    /// Refused (counted); nothing will be sent.
    Refused(Refusal),
    /// The guest's queue is full; try again after a completion.
    Full,
}

/// Per-guest counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames on the bus.
    pub sent: u64,
    /// Dropped by the TX allow list.
    pub dropped_whitelist: u64,
    /// Dropped by the budget.
    pub dropped_budget: u64,
    /// Frames on the bus this guest's filters did not accept.
    pub filtered: u64,
    /// Frames delivered to this guest.
    pub delivered: u64,
    /// Frames for this guest dropped because its RX queue was full.
    pub rx_overrun: u64,
    /// TEC rises charged to this guest.
    pub errors: u64,
    /// Times this guest was stopped for a bus-off.
    pub bus_offs: u64,
}

/// A guest's admitted frame.
#[derive(Clone, Copy, Debug)]
struct Entry {
    frame: Frame,
    key: u32,
    tag: u32,
    /// Global admission order: FIFO among equal keys, and FIFO mode.
    seq: u64,
}

impl Entry {
    fn order(&self, mode: Arbitration) -> (u64, u64) {
        match mode {
            Arbitration::ById => (u64::from(self.key), self.seq),
            Arbitration::Fifo => (0, self.seq),
        }
    }
}

/// One guest's state.
#[derive(Clone, Copy, Debug)]
struct Guest<const Q: usize> {
    policy: Policy,
    bucket: Bucket,
    started: bool,
    bus_off: bool,
    pending: [Option<Entry>; Q],
    in_slots: usize,
    completions: Fifo<(u32, bool), Q>,
    rx: Fifo<Received, Q>,
    next_tag: u32,
    blame: u32,
    counters: Counters,
}

impl<const Q: usize> Guest<Q> {
    fn outstanding(&self) -> usize {
        self.pending.iter().flatten().count() + self.in_slots + self.completions.len()
    }
}

/// A TX buffer's owner.
#[derive(Clone, Copy, Debug)]
struct Slot {
    guest: usize,
    entry: Entry,
}

/// What [`Virtualiser::poll`] saw, for the PD to notify the right guests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollEvents {
    /// Bit `g % 32`: guest g has completions or received frames waiting
    /// (with more than 32 guests, bits are shared and a PD checks each).
    pub guests: u32,
    /// A guest was stopped for a bus-off in this poll.
    pub stopped: Option<usize>,
}

/// The virtualiser for `G` guests, each with up to `Q` frames outstanding
/// and `Q` received frames queued.
pub struct Virtualiser<const G: usize, const Q: usize> {
    guests: [Guest<Q>; G],
    slots: [Option<Slot>; MAX_SLOTS],
    nslots: usize,
    mode: Arbitration,
    fd: bool,
    seq: u64,
    last_tec: u16,
    recovering: bool,
    contain: bool,
    /// Bus-offs handled.
    pub bus_offs: u32,
}

impl<const G: usize, const Q: usize> Virtualiser<G, Q> {
    /// Queues of length 0 could hold nothing (and `Fifo` divides by `Q`).
    const Q_NONZERO: () = assert!(Q > 0, "Virtualiser needs Q > 0");

    /// A virtualiser for guests with `policies` (guest `i` gets
    /// `policies[i]`, missing ones a deny-all policy), over a controller with
    /// `slots` TX buffers (at most [`MAX_SLOTS`]) that carries FD if `fd`.
    pub fn new(policies: &[Policy], slots: usize, fd: bool, mode: Arbitration) -> Self {
        let () = Self::Q_NONZERO;
        let guest = |i: usize| {
            let policy = policies.get(i).copied().unwrap_or_default();
            Guest {
                policy,
                bucket: Bucket::full(&policy.budget),
                started: false,
                bus_off: false,
                pending: [None; Q],
                in_slots: 0,
                completions: Fifo::new(),
                rx: Fifo::new(),
                next_tag: 0,
                blame: 0,
                counters: Counters::default(),
            }
        };
        Self {
            guests: core::array::from_fn(guest),
            slots: [None; MAX_SLOTS],
            nslots: slots.clamp(1, MAX_SLOTS),
            mode,
            fd,
            seq: 0,
            last_tec: 0,
            recovering: false,
            contain: true,
            bus_offs: 0,
        }
    }

    /// Whether a bus-off stops the guest charged with it (default true).
    /// False only recovers the controller and lets every guest go on: what a
    /// virtualiser without attribution does. Only for showing what the
    /// protection buys (tests, benchmarks).
    pub fn set_containment(&mut self, on: bool) {
        self.contain = on;
    }

    /// Guest `g`'s counters.
    pub fn counters(&self, g: usize) -> Option<Counters> {
        self.guests.get(g).map(|x| x.counters)
    }

    /// Whether guest `g` was stopped for a bus-off it caused.
    pub fn is_bus_off(&self, g: usize) -> bool {
        self.guests.get(g).is_some_and(|x| x.bus_off)
    }

    /// Whether guest `g` is started.
    pub fn is_started(&self, g: usize) -> bool {
        self.guests.get(g).is_some_and(|x| x.started)
    }

    /// Guest `g` starts its controller; refused while it is held bus-off.
    pub fn start(&mut self, g: usize) -> bool {
        match self.guests.get_mut(g) {
            Some(x) if !x.bus_off => {
                x.started = true;
                true
            }
            _ => false,
        }
    }

    /// Guest `g` stops: its pending frames are dropped (no completions) and
    /// its queued RX frames discarded. Frames already in TX buffers are
    /// aborted by the next [`Virtualiser::poll`] if still unsent.
    pub fn stop(&mut self, g: usize) {
        if let Some(x) = self.guests.get_mut(g) {
            x.started = false;
            x.pending = [None; Q];
            x.completions.clear();
            x.rx.clear();
        }
    }

    /// Lets a guest stopped for bus-off start again (an operator or health
    /// monitor decision, never automatic).
    pub fn release_bus_off(&mut self, g: usize) {
        if let Some(x) = self.guests.get_mut(g) {
            x.bus_off = false;
        }
    }

    /// Guest `g` offers `frame` at time `now_ns`.
    pub fn submit(&mut self, g: usize, frame: &Frame, now_ns: u64) -> Admission {
        let fd = self.fd;
        let Some(x) = self.guests.get_mut(g) else {
            return Admission::Refused(Refusal::NoSuchGuest);
        };
        if !x.started {
            return Admission::Refused(Refusal::Stopped);
        }
        if frame.is_fd() && !fd {
            return Admission::Refused(Refusal::Unsupported);
        }
        #[cfg(feature = "protection-removed-can-whitelist")]
        core::hint::black_box(PROTECTION_REMOVED);
        if !cfg!(feature = "protection-removed-can-whitelist") && !x.policy.may_send(frame) {
            x.counters.dropped_whitelist += 1;
            return Admission::Refused(Refusal::NotAllowed);
        }
        if x.outstanding() >= Q {
            return Admission::Full;
        }
        let Some(free) = x.pending.iter().position(Option::is_none) else {
            return Admission::Full;
        };
        let budget = x.policy.budget;
        if !x.bucket.take(&budget, frame.wire_bits(), now_ns) {
            x.counters.dropped_budget += 1;
            return Admission::Refused(Refusal::OverBudget);
        }
        let tag = x.next_tag;
        x.next_tag = x.next_tag.wrapping_add(1) & 0x7fff_ffff;
        self.seq += 1;
        x.pending[free] = Some(Entry {
            frame: *frame,
            key: frame.arbitration_key(),
            tag,
            seq: self.seq,
        });
        Admission::Queued(tag)
    }

    /// Guest `g`'s next completion: `(tag, sent)`.
    pub fn take_completion(&mut self, g: usize) -> Option<(u32, bool)> {
        self.guests.get_mut(g)?.completions.pop()
    }

    /// Guest `g`'s oldest received frame, not removed.
    pub fn rx_peek(&self, g: usize) -> Option<Received> {
        self.guests.get(g)?.rx.peek()
    }

    /// Removes guest `g`'s oldest received frame.
    pub fn rx_pop(&mut self, g: usize) -> Option<Received> {
        self.guests.get_mut(g)?.rx.pop()
    }

    /// Delivers `r` to every started guest but `except` whose filters match.
    fn broadcast(&mut self, r: Received, except: Option<usize>, events: &mut PollEvents) {
        for (i, x) in self.guests.iter_mut().enumerate() {
            if Some(i) == except || !x.started {
                continue;
            }
            if !x.policy.accepts(&r.frame) {
                x.counters.filtered += 1;
            } else if x.rx.push(r) {
                x.counters.delivered += 1;
                events.guests |= 1 << (i % 32);
                // PROTECTION-REMOVED (test-only build): no fan-out.
                #[cfg(feature = "protection-removed-can-fanout")]
                {
                    core::hint::black_box(PROTECTION_REMOVED_FANOUT);
                    break;
                }
            } else {
                x.counters.rx_overrun += 1;
            }
        }
    }

    /// The occupied slot holding the highest-priority frame.
    fn best_slot(&self) -> Option<usize> {
        let mode = self.mode;
        (0..self.nslots)
            .filter_map(|i| self.slots[i].map(|s| (s.entry.order(mode), i)))
            .min()
            .map(|(_, i)| i)
    }

    /// Runs the virtualiser against the controller: collects completions
    /// and received frames, handles a bus-off, and refills the TX buffers.
    /// Call it whenever the controller signals and after guests submitted
    /// frames.
    pub fn poll<C: CanController>(&mut self, ctrl: &mut C) -> PollEvents {
        let mut events = PollEvents::default();
        // Errors first, against the slots as they were while the controller
        // was sending: this poll's refill must not change whom we charge.
        let st = ctrl.status();
        if st.tec > self.last_tec {
            if let Some(s) = self.best_slot().and_then(|i| self.slots[i]) {
                let x = &mut self.guests[s.guest];
                x.blame = x.blame.saturating_add(u32::from(st.tec - self.last_tec));
                x.counters.errors += 1;
            }
        }
        self.last_tec = st.tec;
        while let Some(r) = ctrl.receive() {
            self.broadcast(r, None, &mut events);
        }
        while let Some(done) = ctrl.completion() {
            let Some(s) = self.slots.get_mut(done.slot).and_then(Option::take) else {
                continue;
            };
            let x = &mut self.guests[s.guest];
            x.in_slots = x.in_slots.saturating_sub(1);
            if done.sent {
                x.counters.sent += 1;
            }
            if x.started {
                // Room is guaranteed: outstanding ≤ Q counts this entry.
                let _ = x.completions.push((s.entry.tag, done.sent));
                events.guests |= 1 << (s.guest % 32);
            }
            if done.sent {
                let r = Received {
                    frame: s.entry.frame,
                    at_ns: done.at_ns,
                };
                self.broadcast(r, Some(s.guest), &mut events);
            }
        }
        if st.state == BusState::BusOff && !self.recovering {
            events.stopped = self.contain(ctrl);
            return events;
        }
        if self.recovering {
            if st.state == BusState::BusOff {
                return events;
            }
            self.recovering = false;
        }
        if st.tec == 0 && st.state == BusState::Active {
            for x in &mut self.guests {
                x.blame = 0;
            }
        }
        self.refill(ctrl);
        events
    }

    /// Bus-off: stop the guest charged most, abort every buffer, give the
    /// others' frames back, recover.
    fn contain<C: CanController>(&mut self, ctrl: &mut C) -> Option<usize> {
        self.bus_offs = self.bus_offs.saturating_add(1);
        let culprit = self
            .guests
            .iter()
            .enumerate()
            .filter(|(_, x)| x.blame > 0)
            .max_by_key(|(i, x)| (x.blame, core::cmp::Reverse(*i)))
            .map(|(i, _)| i)
            .filter(|_| self.contain);
        for i in 0..self.nslots {
            let Some(s) = self.slots[i] else { continue };
            if !ctrl.abort(i) {
                continue;
            }
            self.slots[i] = None;
            let x = &mut self.guests[s.guest];
            x.in_slots = x.in_slots.saturating_sub(1);
            if x.started && Some(s.guest) != culprit {
                if let Some(free) = x.pending.iter().position(Option::is_none) {
                    x.pending[free] = Some(s.entry);
                }
            }
        }
        if let Some(c) = culprit {
            self.stop(c);
            let x = &mut self.guests[c];
            x.bus_off = true;
            x.counters.bus_offs += 1;
        }
        for x in &mut self.guests {
            x.blame = 0;
        }
        self.recovering = ctrl.recover().is_ok();
        culprit
    }

    /// The highest-priority pending frame over all started guests, after
    /// `after` (exclusive) in the current order.
    fn best_pending(&self) -> Option<(usize, usize, (u64, u64))> {
        let mode = self.mode;
        let mut best: Option<(usize, usize, (u64, u64))> = None;
        for (g, x) in self.guests.iter().enumerate() {
            if !x.started {
                continue;
            }
            for (k, e) in x.pending.iter().enumerate() {
                if let Some(e) = e {
                    let o = e.order(mode);
                    if best.is_none_or(|(_, _, b)| o < b) {
                        best = Some((g, k, o));
                    }
                }
            }
        }
        best
    }

    fn refill<C: CanController>(&mut self, ctrl: &mut C) {
        // Frames of guests stopped meanwhile leave the buffers first.
        for i in 0..self.nslots {
            if let Some(s) = self.slots[i] {
                if !self.guests[s.guest].started && ctrl.abort(i) {
                    self.slots[i] = None;
                    let x = &mut self.guests[s.guest];
                    x.in_slots = x.in_slots.saturating_sub(1);
                }
            }
        }
        // Bounded: each round places one frame or aborts one lower frame
        // (which then cannot come back ahead of the one that displaced it).
        for _ in 0..(2 * (self.nslots + G * Q)) {
            let Some((g, k, order)) = self.best_pending() else {
                return;
            };
            let slot = match (0..self.nslots).find(|&i| self.slots[i].is_none()) {
                Some(free) => free,
                None => {
                    if self.mode == Arbitration::Fifo {
                        return;
                    }
                    // The lowest-priority buffer, if below the candidate.
                    let mode = self.mode;
                    let worst = (0..self.nslots)
                        .filter_map(|i| self.slots[i].map(|s| (s.entry.order(mode), i)))
                        .max();
                    match worst {
                        Some((w, i)) if w > order && ctrl.abort(i) => {
                            if let Some(s) = self.slots[i].take() {
                                let x = &mut self.guests[s.guest];
                                x.in_slots = x.in_slots.saturating_sub(1);
                                if let Some(free) = x.pending.iter().position(Option::is_none) {
                                    x.pending[free] = Some(s.entry);
                                }
                            }
                            i
                        }
                        _ => return,
                    }
                }
            };
            let Some(e) = self.guests[g].pending[k].take() else {
                return;
            };
            match ctrl.submit(slot, &e.frame, e.key) {
                Ok(()) => {
                    self.slots[slot] = Some(Slot { guest: g, entry: e });
                    self.guests[g].in_slots += 1;
                }
                Err(_) => {
                    // The controller refuses it: complete it as not sent.
                    let x = &mut self.guests[g];
                    let _ = x.completions.push((e.tag, false));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_can_frame::CanId;

    /// A controller with `slots` buffers that sends nothing by itself: the
    /// test decides what finishes (unit test only; the real bus is in
    /// tests/can).
    struct Fake {
        slots: [Option<Frame>; 3],
        done: [Option<SlotDone>; 8],
        status: ControllerStatus,
        recovered: bool,
        /// Slots whose frame is on the wire (abort fails).
        busy: [bool; 3],
    }

    impl Fake {
        fn new() -> Self {
            Self {
                slots: [None; 3],
                done: [None; 8],
                status: ControllerStatus {
                    state: BusState::Active,
                    tec: 0,
                    rec: 0,
                },
                recovered: false,
                busy: [false; 3],
            }
        }
        fn ids(&self) -> [Option<u32>; 3] {
            self.slots.map(|s| s.map(|f| f.id().raw()))
        }
        fn finish(&mut self, slot: usize) {
            self.slots[slot] = None;
            self.busy[slot] = false;
            if let Some(d) = self.done.iter_mut().find(|d| d.is_none()) {
                *d = Some(SlotDone {
                    slot,
                    sent: true,
                    at_ns: 0,
                });
            }
        }
    }

    impl CanController for Fake {
        fn slots(&self) -> usize {
            3
        }
        fn submit(&mut self, slot: usize, frame: &Frame, _p: u32) -> Result<(), ControllerError> {
            match self.slots.get_mut(slot) {
                Some(s @ None) => {
                    *s = Some(*frame);
                    Ok(())
                }
                _ => Err(ControllerError::BadSlot),
            }
        }
        fn abort(&mut self, slot: usize) -> bool {
            if self.busy[slot] || self.slots[slot].is_none() {
                return false;
            }
            self.slots[slot] = None;
            true
        }
        fn completion(&mut self) -> Option<SlotDone> {
            self.done.iter_mut().find_map(Option::take)
        }
        fn receive(&mut self) -> Option<Received> {
            None
        }
        fn status(&self) -> ControllerStatus {
            self.status
        }
        fn recover(&mut self) -> Result<(), ControllerError> {
            self.recovered = true;
            Ok(())
        }
    }

    fn f(id: u16) -> Frame {
        Frame::classic(CanId::standard(id).unwrap(), &[0]).unwrap()
    }

    fn allow_all() -> Policy {
        let all = IdFilter {
            id: 0,
            mask: 0,
            extended: false,
        };
        Policy::new(&[all], &[all], Budget::default()).unwrap()
    }

    fn virt(mode: Arbitration) -> Virtualiser<2, 8> {
        let mut v = Virtualiser::new(&[allow_all(), allow_all()], 3, false, mode);
        assert!(v.start(0) && v.start(1));
        v
    }

    #[test]
    fn buffers_hold_the_globally_highest_frames_and_aborts_make_room() {
        let mut c = Fake::new();
        let mut v = virt(Arbitration::ById);
        for id in [0x400, 0x401, 0x402, 0x403] {
            assert!(matches!(v.submit(1, &f(id), 0), Admission::Queued(_)));
        }
        v.poll(&mut c);
        assert_eq!(c.ids(), [Some(0x400), Some(0x401), Some(0x402)]);
        // 0x400 is on the wire; a higher frame of the other guest displaces
        // the lowest buffer (0x402), which goes back to its queue.
        c.busy[0] = true;
        v.submit(0, &f(0x100), 0);
        v.poll(&mut c);
        assert_eq!(c.ids(), [Some(0x400), Some(0x401), Some(0x100)]);
        c.finish(0);
        v.poll(&mut c);
        assert_eq!(c.ids(), [Some(0x402), Some(0x401), Some(0x100)]);
        assert_eq!(v.take_completion(1), Some((0, true)));
        assert_eq!(v.counters(1).unwrap().sent, 1);

        // FIFO mode never aborts: the high frame waits for a free buffer.
        let mut c = Fake::new();
        let mut v = virt(Arbitration::Fifo);
        for id in [0x400, 0x401, 0x402] {
            v.submit(1, &f(id), 0);
        }
        v.poll(&mut c);
        v.submit(0, &f(0x100), 0);
        v.poll(&mut c);
        assert_eq!(c.ids(), [Some(0x400), Some(0x401), Some(0x402)]);
    }

    #[test]
    fn equal_ids_keep_admission_order_and_queues_are_bounded() {
        let mut c = Fake::new();
        let mut v: Virtualiser<1, 4> =
            Virtualiser::new(&[allow_all()], 1, false, Arbitration::ById);
        v.start(0);
        let a = Frame::classic(CanId::standard(0x10).unwrap(), &[1]).unwrap();
        let b = Frame::classic(CanId::standard(0x10).unwrap(), &[2]).unwrap();
        v.submit(0, &a, 0);
        v.submit(0, &b, 0);
        v.poll(&mut c);
        assert_eq!(c.slots[0], Some(a));
        v.submit(0, &f(0x11), 0);
        v.submit(0, &f(0x12), 0);
        assert_eq!(v.submit(0, &f(0x13), 0), Admission::Full, "4 outstanding");
        assert_eq!(
            v.submit(1, &f(0x13), 0),
            Admission::Refused(Refusal::NoSuchGuest)
        );
        v.stop(0);
        assert_eq!(
            v.submit(0, &f(0x13), 0),
            Admission::Refused(Refusal::Stopped)
        );
        v.poll(&mut c);
        assert_eq!(c.slots[0], None, "a stopped guest's buffer is aborted");
    }

    #[test]
    fn bus_off_stops_the_guest_charged_with_the_tec_rises() {
        let mut c = Fake::new();
        let mut v = virt(Arbitration::ById);
        v.submit(0, &f(0x100), 0);
        v.submit(1, &f(0x050), 0); // infotainment's frame is the one offered
        v.poll(&mut c);
        c.busy = [false; 3];
        for tec in (8..=248).step_by(8) {
            c.status.tec = tec;
            c.status.state = if tec >= 128 {
                BusState::Passive
            } else {
                BusState::Active
            };
            v.poll(&mut c);
        }
        assert_eq!(v.counters(1).unwrap().errors, 31);
        c.status = ControllerStatus {
            state: BusState::BusOff,
            tec: 256,
            rec: 0,
        };
        let ev = v.poll(&mut c);
        assert_eq!(ev.stopped, Some(1));
        assert!(c.recovered);
        assert!(v.is_bus_off(1) && !v.is_started(1) && !v.start(1));
        assert!(v.is_started(0) && !v.is_bus_off(0));
        assert_eq!(c.ids(), [None, None, None], "all buffers aborted");
        // While recovering nothing is offered; after, the cluster's frame is.
        v.poll(&mut c);
        assert_eq!(c.ids(), [None, None, None]);
        c.status = ControllerStatus {
            state: BusState::Active,
            tec: 0,
            rec: 0,
        };
        v.poll(&mut c);
        assert_eq!(c.ids(), [Some(0x100), None, None]);
        v.release_bus_off(1);
        assert!(v.start(1));
    }
}
