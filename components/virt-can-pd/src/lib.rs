//! The `can_virt` protection domain's parts: its configuration
//! ([`config`], from `bulkhead compose`), the driver hop as a controller
//! ([`link::DriverLink`]), the clock its budgets use ([`clock`]), and
//! [`CanVirt`], which moves requests from the VMM hops into the virtualiser
//! of `bulkhead-virt-can` and its answers back. The PD program is
//! `src/bin/can_virt.rs`; everything here is backend-agnostic and builds
//! for `aarch64-unknown-none`.
//!
//! One call of [`CanVirt::service`] per wake-up does all the work: take the
//! driver's answers, take each guest's requests (TX admitted by policy,
//! START/STOP), run the virtualiser (arbitration, bus-off containment, RX
//! broadcast), and answer every guest (completions, received frames,
//! bus-off changes) — it returns whom to signal. The rules of both hops are
//! in `bulkhead_can_protocol::{driver_hop, vmm_hop}`.
#![no_std]

pub mod clock;
pub mod config;
pub mod link;

use bulkhead_can_protocol::{vmm_op, vmm_status, WireFrame, EVENT_ID};
use bulkhead_ring::{Armed, Consumer, Producer, Request, Response, RingError};
use bulkhead_virt_can::{Admission, Arbitration, Counters, Policy, Virtualiser};

pub use config::{Config, GUESTS};
pub use link::DriverLink;

/// Frames outstanding per guest in the virtualiser, and received frames
/// queued per guest.
pub const DEPTH: usize = 16;

/// The virtualiser this PD runs.
pub type Virt = Virtualiser<GUESTS, DEPTH>;

/// One guest's hop as `can_virt` sees it.
pub struct GuestHop<'a> {
    req: Option<Consumer<'a, Request<WireFrame>>>,
    resp: Option<Producer<'a, Response<WireFrame>>>,
    /// A TX the virtualiser had no room for yet.
    held: Option<Request<WireFrame>>,
    /// Virtualiser tag → the VMM's id, for each outstanding TX.
    tags: [Option<(u32, u32)>; DEPTH],
    bus_off: bool,
    notify: bool,
    /// A ring of this hop reported corruption.
    pub broken: Option<RingError>,
    /// Requests that were not understood (unknown op).
    pub bad_requests: u64,
}

impl<'a> GuestHop<'a> {
    /// A hop over the guest's rings (missing ones leave that direction off).
    pub fn new(
        req: Option<Consumer<'a, Request<WireFrame>>>,
        resp: Option<Producer<'a, Response<WireFrame>>>,
    ) -> Self {
        Self {
            req,
            resp,
            held: None,
            tags: [None; DEPTH],
            bus_off: false,
            notify: false,
            broken: None,
            bad_requests: 0,
        }
    }

    fn cut(&mut self, e: RingError) {
        self.req = None;
        self.resp = None;
        if self.broken.is_none() {
            self.broken = Some(e);
        }
    }

    fn room(&mut self) -> bool {
        match self.resp.as_mut().map(Producer::free) {
            Some(Ok(n)) => n > 0,
            Some(Err(e)) => {
                self.cut(e);
                false
            }
            None => false,
        }
    }

    fn answer(&mut self, id: u32, status: u32, payload: WireFrame) {
        let Some(p) = self.resp.as_mut() else { return };
        match p.push(&Response {
            id,
            status,
            payload,
        }) {
            Ok(()) => self.notify |= p.notify_needed(),
            Err(RingError::Full) => {}
            Err(e) => self.cut(e),
        }
    }

    fn next_request(&mut self) -> Option<Request<WireFrame>> {
        if let Some(r) = self.held.take() {
            return Some(r);
        }
        loop {
            let c = self.req.as_mut()?;
            match c.pop() {
                Ok(Some(r)) => return Some(r),
                Ok(None) => match c.arm_signal() {
                    Ok(Armed::Pending) => {}
                    Ok(Armed::MaySleep) => return None,
                    Err(e) => {
                        self.cut(e);
                        return None;
                    }
                },
                Err(e) => {
                    self.cut(e);
                    return None;
                }
            }
        }
    }
}

/// Whom to signal after [`CanVirt::service`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Signals {
    /// The driver.
    pub driver: bool,
    /// Bit `g`: guest `g`'s VMM.
    pub guests: u32,
}

/// The virtualiser between the guests' hops and the driver link.
pub struct CanVirt<'a> {
    virt: Virt,
    /// The driver hop.
    pub link: DriverLink<'a>,
    hops: [Option<GuestHop<'a>>; GUESTS],
}

impl<'a> CanVirt<'a> {
    /// A virtualiser for `policies` (guest `g` = hop `g`), arbitrating by id.
    pub fn new(
        policies: &[Policy],
        link: DriverLink<'a>,
        hops: [Option<GuestHop<'a>>; GUESTS],
    ) -> Self {
        // The link shows LINK_SLOTS buffers and says itself which frames
        // the driver cannot carry (FD on a classic controller).
        let virt = Virtualiser::new(policies, link::LINK_SLOTS, true, Arbitration::ById);
        Self { virt, link, hops }
    }

    /// Guest `g`'s counters.
    pub fn counters(&self, g: usize) -> Option<Counters> {
        self.virt.counters(g)
    }

    /// Guest `g`'s hop.
    pub fn hop(&self, g: usize) -> Option<&GuestHop<'a>> {
        self.hops.get(g).and_then(Option::as_ref)
    }

    /// Does everything that can be done now (`now_ns`: the budget clock).
    pub fn service(&mut self, now_ns: u64) -> Signals {
        // Bounded: each round either moves something or ends the loop.
        for _ in 0..64 {
            // Each change of the controller's state or TEC is seen by a
            // poll of its own (exact attribution); bounded like the loop.
            for _ in 0..256 {
                if !self.link.pump() {
                    break;
                }
                let _ = self.virt.poll(&mut self.link);
            }
            let mut moved = false;
            for g in 0..GUESTS {
                moved |= self.take_requests(g, now_ns);
            }
            let _ = self.virt.poll(&mut self.link);
            for g in 0..GUESTS {
                moved |= self.answer(g);
            }
            if !moved {
                break;
            }
        }
        let mut s = Signals {
            driver: self.link.take_notify(),
            guests: 0,
        };
        for (g, h) in self.hops.iter_mut().enumerate() {
            if let Some(h) = h {
                if core::mem::take(&mut h.notify) {
                    s.guests |= 1 << g;
                }
            }
        }
        s
    }

    /// Takes guest `g`'s requests while it has room for answers.
    fn take_requests(&mut self, g: usize, now_ns: u64) -> bool {
        let Some(h) = self.hops[g].as_mut() else {
            return false;
        };
        let mut moved = false;
        while h.room() {
            let Some(r) = h.next_request() else { break };
            moved = true;
            match r.op {
                vmm_op::TX => {
                    let Ok(frame) = r.payload.to_frame() else {
                        h.answer(r.id, vmm_status::NOT_SENT, r.payload);
                        continue;
                    };
                    if r.id == EVENT_ID {
                        h.answer(r.id, vmm_status::NOT_SENT, r.payload);
                        continue;
                    }
                    match self.virt.submit(g, &frame, now_ns) {
                        Admission::Queued(tag) => {
                            match h.tags.iter_mut().find(|t| t.is_none()) {
                                Some(t) => *t = Some((tag, r.id)),
                                // Cannot happen (the virtualiser keeps at
                                // most DEPTH outstanding); the frame still
                                // goes, unanswered.
                                None => h.bad_requests += 1,
                            }
                        }
                        Admission::Refused(_) => h.answer(r.id, vmm_status::NOT_SENT, r.payload),
                        Admission::Full => {
                            h.held = Some(r);
                            break;
                        }
                    }
                }
                vmm_op::START => {
                    let st = if self.virt.start(g) {
                        vmm_status::STARTED
                    } else {
                        vmm_status::START_REFUSED
                    };
                    h.answer(r.id, st, WireFrame::default());
                }
                vmm_op::STOP => {
                    self.virt.stop(g);
                    h.tags = [None; DEPTH];
                }
                _ => h.bad_requests += 1,
            }
        }
        moved
    }

    /// Answers guest `g`: bus-off changes, completions, received frames.
    fn answer(&mut self, g: usize) -> bool {
        let Some(h) = self.hops[g].as_mut() else {
            return false;
        };
        let mut moved = false;
        let off = self.virt.is_bus_off(g);
        if off != h.bus_off && h.room() {
            h.bus_off = off;
            let ev = if off {
                vmm_status::BUS_OFF
            } else {
                vmm_status::BUS_OK
            };
            h.answer(EVENT_ID, ev, WireFrame::default());
            moved = true;
        }
        while h.room() {
            let Some((tag, sent)) = self.virt.take_completion(g) else {
                break;
            };
            moved = true;
            let Some(k) = h.tags.iter().position(|t| t.is_some_and(|(x, _)| x == tag)) else {
                continue; // stopped meanwhile: the device answered already
            };
            let id = h.tags[k].map_or(0, |(_, id)| id);
            h.tags[k] = None;
            let st = if sent {
                vmm_status::SENT
            } else {
                vmm_status::NOT_SENT
            };
            h.answer(id, st, WireFrame::default());
        }
        while h.room() {
            let Some(rx) = self.virt.rx_pop(g) else { break };
            moved = true;
            h.answer(
                EVENT_ID,
                vmm_status::RX,
                WireFrame::from_frame(&rx.frame, rx.at_ns),
            );
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    //! The PD's logic over in-memory rings, with the test playing the VMMs
    //! and a driver that answers by hand (unit tests; the whole path with
    //! the real driver PD is `tests/guests/tests/can.rs`).
    use super::*;
    use bulkhead_can_frame::{CanId, Frame};
    use bulkhead_can_protocol::driver_hop::encode_ready;
    use bulkhead_can_protocol::{drv_op, drv_status, RING_CAPACITY};
    use bulkhead_ring::{CacheLine, Region};
    use bulkhead_virt_can::{Budget, IdFilter};
    extern crate std;
    use std::vec::Vec;

    type Req = Request<WireFrame>;
    type Resp = Response<WireFrame>;

    fn mem() -> &'static [CacheLine] {
        let n = 4096 / core::mem::size_of::<CacheLine>();
        std::boxed::Box::leak(
            (0..n)
                .map(|_| CacheLine::new())
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        )
    }

    /// Both ends of one ring.
    fn ring<T: bulkhead_ring::Pod>() -> (Producer<'static, T>, Consumer<'static, T>) {
        let r = Region::from_lines(mem());
        (
            Producer::attach(r, RING_CAPACITY).unwrap(),
            Consumer::attach(r, RING_CAPACITY).unwrap(),
        )
    }

    struct Bench {
        v: CanVirt<'static>,
        vmm_tx: Vec<Producer<'static, Req>>,
        vmm_rx: Vec<Consumer<'static, Resp>>,
        drv_rx: Consumer<'static, Req>,
        drv_tx: Producer<'static, Resp>,
    }

    fn f(id: u16) -> Frame {
        Frame::classic(CanId::standard(id).unwrap(), &id.to_le_bytes()[..1]).unwrap()
    }

    fn bench(driver_slots: u32) -> Bench {
        let (dreq_p, dreq_c) = ring::<Req>();
        let (dresp_p, dresp_c) = ring::<Resp>();
        let mut hops: [Option<GuestHop<'static>>; GUESTS] = [const { None }; GUESTS];
        let (mut vmm_tx, mut vmm_rx) = (Vec::new(), Vec::new());
        for h in hops.iter_mut().take(2) {
            let (rp, rc) = ring::<Req>();
            let (sp, sc) = ring::<Resp>();
            *h = Some(GuestHop::new(Some(rc), Some(sp)));
            vmm_tx.push(rp);
            vmm_rx.push(sc);
        }
        let pol = |rx: u16, tx: &[u16]| {
            let tx: Vec<IdFilter> = tx.iter().map(|&i| IdFilter::standard(i)).collect();
            let rx = IdFilter {
                id: u32::from(rx),
                mask: 0x700,
                extended: false,
            };
            Policy::new(&[rx], &tx, Budget::default()).unwrap()
        };
        let policies = [
            pol(0x100, &[0x300, 0x301, 0x050]),
            pol(0x300, &[0x480, 0x481]),
        ];
        let link = DriverLink::new(Some(dreq_p), Some(dresp_c));
        let mut b = Bench {
            v: CanVirt::new(&policies, link, hops),
            vmm_tx,
            vmm_rx,
            drv_rx: dreq_c,
            drv_tx: dresp_p,
        };
        b.event(drv_status::READY, encode_ready(driver_slots, false));
        for g in 0..2 {
            b.vmm_tx[g]
                .push(&Req {
                    id: 99,
                    op: vmm_op::START,
                    payload: WireFrame::default(),
                })
                .unwrap();
        }
        b.v.service(0);
        for g in 0..2 {
            assert_eq!(b.answers(g), [(99, vmm_status::STARTED, None)]);
        }
        b
    }

    impl Bench {
        fn event(&mut self, status: u32, t: u64) {
            let payload = WireFrame {
                timestamp: t,
                ..WireFrame::default()
            };
            self.drv_tx
                .push(&Resp {
                    id: EVENT_ID,
                    status,
                    payload,
                })
                .unwrap();
        }
        fn tx(&mut self, g: usize, tag: u32, fr: Frame) {
            self.vmm_tx[g]
                .push(&Req {
                    id: tag,
                    op: vmm_op::TX,
                    payload: WireFrame::from_frame(&fr, 0),
                })
                .unwrap();
        }
        fn answers(&mut self, g: usize) -> Vec<(u32, u32, Option<u32>)> {
            let mut v = Vec::new();
            while let Some(r) = self.vmm_rx[g].pop().unwrap() {
                let id = (r.status == vmm_status::RX).then_some(r.payload.id);
                v.push((r.id, r.status, id));
            }
            v
        }
        /// What the driver was asked: (op, slot, frame id).
        fn driver_got(&mut self) -> Vec<(u32, u32, u32)> {
            let mut v = Vec::new();
            while let Some(r) = self.drv_rx.pop().unwrap() {
                v.push((r.op, r.id, r.payload.id));
            }
            v
        }
        fn driver_says(&mut self, slot: u32, status: u32, fr: Frame) {
            self.drv_tx
                .push(&Resp {
                    id: slot,
                    status,
                    payload: WireFrame::from_frame(&fr, 5),
                })
                .unwrap();
        }
    }

    #[test]
    fn whitelist_refusal_never_reaches_the_driver_and_a_sent_frame_is_broadcast() {
        let mut b = bench(2);
        b.tx(1, 7, f(0x300)); // the cluster's id, from infotainment
        b.tx(0, 8, f(0x301));
        b.v.service(0);
        assert_eq!(b.answers(1), [(7, vmm_status::NOT_SENT, None)]);
        assert_eq!(b.driver_got(), [(drv_op::SUBMIT, 0, 0x301)]);
        assert_eq!(b.v.counters(1).unwrap().dropped_whitelist, 1);
        b.driver_says(0, drv_status::SENT, f(0x301));
        b.v.service(0);
        assert_eq!(b.answers(0), [(8, vmm_status::SENT, None)]);
        // Infotainment subscribed to 0x3xx: it sees the cluster's frame.
        assert_eq!(b.answers(1), [(EVENT_ID, vmm_status::RX, Some(0x301))]);
        // A frame from the bus reaches only the guest whose filter takes it.
        let w = WireFrame::from_frame(&f(0x123), 9);
        b.drv_tx
            .push(&Resp {
                id: EVENT_ID,
                status: drv_status::RX,
                payload: w,
            })
            .unwrap();
        b.v.service(0);
        assert_eq!(b.answers(0), [(EVENT_ID, vmm_status::RX, Some(0x123))]);
        assert!(b.answers(1).is_empty());
    }

    #[test]
    fn a_higher_frame_preempts_a_forwarded_lower_one_without_loss_or_duplicate() {
        let mut b = bench(1);
        b.tx(1, 1, f(0x480));
        b.v.service(0);
        assert_eq!(b.driver_got(), [(drv_op::SUBMIT, 0, 0x480)]);
        b.tx(0, 2, f(0x050));
        b.v.service(0);
        assert_eq!(b.driver_got(), [(drv_op::ABORT, 0, 0)]);
        // Not yet on the wire: the driver aborts it; 0x050 goes first.
        b.driver_says(0, drv_status::ABORTED, f(0x480));
        b.v.service(0);
        assert_eq!(b.driver_got(), [(drv_op::SUBMIT, 0, 0x050)]);
        assert!(b.answers(1).is_empty(), "the aborted frame is not answered");
        b.driver_says(0, drv_status::SENT, f(0x050));
        b.v.service(0);
        assert_eq!(b.driver_got(), [(drv_op::SUBMIT, 0, 0x480)]);
        b.driver_says(0, drv_status::SENT, f(0x480));
        b.v.service(0);
        assert_eq!(b.answers(0), [(2, vmm_status::SENT, None)]);
        assert_eq!(b.answers(1), [(1, vmm_status::SENT, None)]);
        assert!(
            b.driver_got().is_empty(),
            "each frame submitted until sent, once"
        );

        // When the abort loses the race the frame is sent, and not again.
        b.tx(1, 3, f(0x481));
        b.v.service(0);
        b.tx(0, 4, f(0x050));
        b.v.service(0);
        assert_eq!(
            b.driver_got(),
            [(drv_op::SUBMIT, 0, 0x481), (drv_op::ABORT, 0, 0)]
        );
        b.driver_says(0, drv_status::SENT, f(0x481));
        b.v.service(0);
        assert_eq!(b.driver_got(), [(drv_op::SUBMIT, 0, 0x050)]);
        assert_eq!(b.answers(1), [(3, vmm_status::SENT, None)]);
    }

    #[test]
    fn each_tec_rise_is_charged_to_the_frame_offered_when_it_was_reported() {
        use bulkhead_can_protocol::driver_hop::encode_status;
        use bulkhead_virt_can::{BusState, ControllerStatus};
        let mut b = bench(2);
        b.tx(0, 1, f(0x050));
        b.tx(1, 2, f(0x480));
        b.v.service(0);
        b.driver_got();
        let st = |state, tec| encode_status(ControllerStatus { state, tec, rec: 0 });
        // One batch (it fits the ring): 64 of TEC while the cluster's
        // 0x050 is offered, then it gets through, then 192 on
        // infotainment's 0x480 up to bus-off. Charged in order,
        // infotainment caused most; charged at the end of the batch, the
        // cluster's frame (still in the virtualiser's buffer) would be
        // blamed for everything.
        for tec in [16, 32, 48, 64] {
            b.event(drv_status::STATUS, st(BusState::Active, tec));
        }
        b.driver_says(0, drv_status::SENT, f(0x050));
        for k in 1..=12u16 {
            let tec = 64 + k * 16;
            let state = if tec >= 128 {
                BusState::Passive
            } else {
                BusState::Active
            };
            b.event(drv_status::STATUS, st(state, tec));
        }
        b.event(drv_status::STATUS, st(BusState::BusOff, 256));
        b.v.service(0);
        assert_eq!(
            b.v.counters(1).unwrap().bus_offs,
            1,
            "infotainment is stopped"
        );
        assert_eq!(b.v.counters(0).unwrap().bus_offs, 0, "the cluster is not");
        let got = b.driver_got();
        assert!(got.contains(&(drv_op::ABORT, 1, 0)) && got.contains(&(drv_op::RECOVER, 0, 0)));
        assert!(b
            .answers(1)
            .contains(&(EVENT_ID, vmm_status::BUS_OFF, None)));
        assert!(!b
            .answers(0)
            .contains(&(EVENT_ID, vmm_status::BUS_OFF, None)));
    }

    #[test]
    fn a_bus_off_culprits_frames_are_never_offered_again() {
        use bulkhead_can_protocol::driver_hop::encode_status;
        use bulkhead_virt_can::{BusState, ControllerStatus};
        let mut b = bench(2);
        b.tx(1, 1, f(0x480));
        b.tx(1, 2, f(0x481));
        b.v.service(0);
        b.driver_got();
        let st = |state, tec| encode_status(ControllerStatus { state, tec, rec: 0 });
        b.event(drv_status::STATUS, st(BusState::Passive, 200));
        b.event(drv_status::STATUS, st(BusState::BusOff, 256));
        b.v.service(0);
        let got = b.driver_got();
        assert!(got.contains(&(drv_op::RECOVER, 0, 0)), "{got:?}");
        // The bus-off controller gives both frames back; nothing is
        // submitted to it, and after recovery the stopped guest's frames
        // are gone for good.
        b.driver_says(0, drv_status::ABORTED, f(0x480));
        b.driver_says(1, drv_status::ABORTED, f(0x481));
        b.v.service(0);
        assert!(b.driver_got().is_empty(), "nothing to a bus-off controller");
        b.event(drv_status::STATUS, st(BusState::Active, 0));
        b.v.service(0);
        assert!(
            b.driver_got().is_empty(),
            "the culprit's frames are not re-sent"
        );
        b.tx(0, 3, f(0x300));
        b.v.service(0);
        assert_eq!(
            b.driver_got(),
            [(drv_op::SUBMIT, 0, 0x300)],
            "the cluster goes on"
        );
        assert_eq!(b.v.counters(1).unwrap().bus_offs, 1);
    }

    #[test]
    fn a_hostile_driver_or_vmm_cannot_make_it_answer_twice_or_panic() {
        let mut b = bench(2);
        b.tx(0, 5, f(0x300));
        b.v.service(0);
        b.driver_got();
        // Answers for slots with no frame, unknown statuses, bad READY.
        b.driver_says(1, drv_status::SENT, f(0x300));
        b.driver_says(7, drv_status::SENT, f(0x300));
        b.event(0x777, 0);
        b.event(drv_status::READY, 0);
        b.event(drv_status::STATUS, u64::MAX);
        b.v.service(0);
        assert!(b.answers(0).is_empty());
        assert_eq!(b.v.link.counters.bad_responses, 5);
        b.driver_says(0, drv_status::SENT, f(0x300));
        b.driver_says(0, drv_status::SENT, f(0x300));
        b.v.service(0);
        assert_eq!(b.answers(0), [(5, vmm_status::SENT, None)], "once");
        // A VMM's garbage: undecodable frame, unknown op.
        let mut w = WireFrame::from_frame(&f(0x300), 0);
        w.flags = 0x80;
        b.vmm_tx[0]
            .push(&Req {
                id: 6,
                op: vmm_op::TX,
                payload: w,
            })
            .unwrap();
        b.vmm_tx[0]
            .push(&Req {
                id: 7,
                op: 42,
                payload: w,
            })
            .unwrap();
        b.v.service(0);
        assert_eq!(b.answers(0), [(6, vmm_status::NOT_SENT, None)]);
        assert_eq!(b.v.hop(0).unwrap().bad_requests, 1);
        assert!(b.driver_got().is_empty());
    }
}
