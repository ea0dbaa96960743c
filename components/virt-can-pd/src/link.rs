//! [`DriverLink`]: the CAN driver PD, reached over the driver hop
//! (`bulkhead_can_protocol::driver_hop`), seen by the virtualiser as a
//! [`CanController`].
//!
//! The virtualiser's controller interface aborts synchronously; the hop
//! cannot. So the link shows the virtualiser [`LINK_SLOTS`] buffers of its
//! own and keeps every frame it was given until the driver finished it:
//!
//! - a frame not yet forwarded to the driver is *held*; aborting it
//!   succeeds at once;
//! - the link forwards held frames into the driver's `S` buffers, lowest
//!   arbitration key first, and when a held frame beats a forwarded one
//!   and the driver's buffers are full, it sends ABORT for the lowest
//!   forwarded frame (the preemption the virtualiser would do itself);
//! - aborting a forwarded frame sends ABORT and reports "not aborted" (it
//!   may be on the wire); the driver's ABORTED makes the frame *held*
//!   again, still in the virtualiser's buffer, so the virtualiser's next
//!   abort succeeds or the link forwards it again. Nothing is lost and
//!   nothing sent twice.
//!
//! Hence a higher-priority frame waits for at most the frame on the wire
//! plus one ABORT round trip over the hop, as with a controller whose abort
//! lost the race.

use bulkhead_can_frame::Frame;
use bulkhead_can_protocol::driver_hop::{decode_ready, decode_status};
use bulkhead_can_protocol::{drv_op, drv_status, WireFrame, EVENT_ID, MAX_DRIVER_SLOTS};
use bulkhead_ring::{Armed, Consumer, Producer, Request, Response, RingError};
use bulkhead_virt_can::{
    BusState, CanController, ControllerError, ControllerStatus, Received, SlotDone,
};

/// Buffers the link shows the virtualiser (its `MAX_SLOTS`).
pub const LINK_SLOTS: usize = bulkhead_virt_can::MAX_SLOTS;
/// Finished slots and received frames the link queues between polls.
const QUEUE: usize = 64;
const DSLOTS: usize = MAX_DRIVER_SLOTS as usize;

/// What the virtualiser's buffer `i` holds.
#[derive(Clone, Copy, Debug)]
enum VSlot {
    Free,
    Held {
        frame: Frame,
        seq: u64,
    },
    Forwarded {
        frame: Frame,
        seq: u64,
        dslot: usize,
        abort_sent: bool,
    },
}

/// A small fixed FIFO.
#[derive(Debug)]
struct Queue<T: Copy> {
    items: [Option<T>; QUEUE],
    head: usize,
    len: usize,
}

impl<T: Copy> Queue<T> {
    const fn new() -> Self {
        Self {
            items: [None; QUEUE],
            head: 0,
            len: 0,
        }
    }
    fn push(&mut self, v: T) -> bool {
        if self.len == QUEUE {
            return false;
        }
        self.items[(self.head + self.len) % QUEUE] = Some(v);
        self.len += 1;
        true
    }
    fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let v = self.items[self.head].take();
        self.head = (self.head + 1) % QUEUE;
        self.len -= 1;
        v
    }
}

/// Counters of what the driver did wrong or what was dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Responses for a slot holding no frame, undecodable statuses, unknown
    /// statuses.
    pub bad_responses: u64,
    /// Received frames dropped (undecodable, or the link's queue full).
    pub rx_dropped: u64,
    /// READY events after the first (driver restarts).
    pub restarts: u64,
}

/// The driver hop as a [`CanController`].
pub struct DriverLink<'a> {
    req: Option<Producer<'a, Request<WireFrame>>>,
    resp: Option<Consumer<'a, Response<WireFrame>>>,
    /// Driver buffer count and FD, once READY came.
    ready: Option<(usize, bool)>,
    vslots: [VSlot; LINK_SLOTS],
    /// Driver buffer → the virtualiser buffer whose frame is in it.
    dslots: [Option<usize>; DSLOTS],
    seq: u64,
    done: Queue<SlotDone>,
    rx: Queue<Received>,
    status: ControllerStatus,
    /// A request did not fit the ring: retry before anything else.
    stalled: Option<Request<WireFrame>>,
    /// The driver should be signalled.
    notify: bool,
    /// Problems seen.
    pub counters: LinkCounters,
    /// A ring reported corruption (logged by the PD once).
    pub broken: Option<RingError>,
}

impl<'a> DriverLink<'a> {
    /// A link over the hop's rings (either may be missing: then nothing is
    /// sent or nothing arrives).
    pub fn new(
        req: Option<Producer<'a, Request<WireFrame>>>,
        resp: Option<Consumer<'a, Response<WireFrame>>>,
    ) -> Self {
        Self {
            req,
            resp,
            ready: None,
            vslots: [VSlot::Free; LINK_SLOTS],
            dslots: [None; DSLOTS],
            seq: 0,
            done: Queue::new(),
            rx: Queue::new(),
            status: ControllerStatus {
                state: BusState::Active,
                tec: 0,
                rec: 0,
            },
            stalled: None,
            notify: false,
            counters: LinkCounters::default(),
            broken: None,
        }
    }

    /// The driver's buffer count and FD support, once it announced them.
    pub fn ready(&self) -> Option<(usize, bool)> {
        self.ready
    }

    /// Whether the driver should be signalled now (cleared by the call).
    pub fn take_notify(&mut self) -> bool {
        core::mem::take(&mut self.notify)
    }

    fn fail(&mut self, e: RingError) {
        if self.broken.is_none() {
            self.broken = Some(e);
        }
    }

    fn send(&mut self, r: Request<WireFrame>) -> bool {
        let Some(p) = self.req.as_mut() else {
            return false;
        };
        match p.push(&r) {
            Ok(()) => {
                self.notify |= p.notify_needed();
                true
            }
            Err(RingError::Full) => false,
            Err(e) => {
                self.req = None;
                self.fail(e);
                false
            }
        }
    }

    fn request(op: u32, id: u32, frame: Option<&Frame>) -> Request<WireFrame> {
        Request {
            id,
            op,
            payload: frame.map_or_else(WireFrame::default, |f| WireFrame::from_frame(f, 0)),
        }
    }

    /// Takes what the driver answered, then forwards held frames. Stops
    /// right after a STATUS that changed the state or the TEC and returns
    /// true: the caller polls the virtualiser then (so each TEC rise is
    /// charged to the frame offered at that moment, as the virtualiser's
    /// attribution needs) and calls again. False: nothing more waiting.
    pub fn pump(&mut self) -> bool {
        let mut stopped = false;
        while let Some(c) = self.resp.as_mut() {
            match c.pop() {
                Ok(Some(r)) => {
                    let before = self.status;
                    self.response(&r);
                    let s = self.status;
                    if (s.state, s.tec) != (before.state, before.tec) {
                        stopped = true;
                        break;
                    }
                }
                Ok(None) => match c.arm_signal() {
                    Ok(Armed::Pending) => {}
                    Ok(Armed::MaySleep) => break,
                    Err(e) => {
                        self.resp = None;
                        self.fail(e);
                    }
                },
                Err(e) => {
                    self.resp = None;
                    self.fail(e);
                }
            }
        }
        if !stopped {
            // After a state change the virtualiser polls first: it may
            // take frames back (a guest stopped for bus-off) before any
            // is forwarded again.
            self.forward();
        }
        stopped
    }

    fn response(&mut self, r: &Response<WireFrame>) {
        if r.id == EVENT_ID {
            match r.status {
                drv_status::RX => match r.payload.to_frame() {
                    Ok(frame) => {
                        let at_ns = r.payload.timestamp;
                        if !self.rx.push(Received { frame, at_ns }) {
                            self.counters.rx_dropped += 1;
                        }
                    }
                    Err(_) => self.counters.rx_dropped += 1,
                },
                drv_status::STATUS => match decode_status(r.payload.timestamp) {
                    Some(s) => self.status = s,
                    None => self.counters.bad_responses += 1,
                },
                drv_status::READY => match decode_ready(r.payload.timestamp) {
                    Some((n, fd)) => self.driver_ready(n, fd),
                    None => self.counters.bad_responses += 1,
                },
                _ => self.counters.bad_responses += 1,
            }
            return;
        }
        let d = usize::try_from(r.id).unwrap_or(usize::MAX);
        let Some(v) = self.dslots.get_mut(d).and_then(Option::take) else {
            self.counters.bad_responses += 1;
            return;
        };
        let VSlot::Forwarded { frame, seq, .. } = self.vslots[v] else {
            self.counters.bad_responses += 1;
            return;
        };
        match r.status {
            drv_status::SENT | drv_status::FAILED => {
                self.vslots[v] = VSlot::Free;
                let done = SlotDone {
                    slot: v,
                    sent: r.status == drv_status::SENT,
                    at_ns: r.payload.timestamp,
                };
                // At most LINK_SLOTS completions are outstanding: room.
                let _ = self.done.push(done);
            }
            drv_status::ABORTED => self.vslots[v] = VSlot::Held { frame, seq },
            _ => {
                // Unknown answer: the slot's fate is unknown; keep the frame
                // forwarded (it is not re-sent) and count the fault.
                self.dslots[d] = Some(v);
                self.counters.bad_responses += 1;
            }
        }
    }

    fn driver_ready(&mut self, n: u32, fd: bool) {
        if self.ready.is_some() {
            // A restart: whatever the old driver held is void. Report those
            // frames not sent rather than risk sending one twice.
            self.counters.restarts += 1;
            for v in 0..LINK_SLOTS {
                if let VSlot::Forwarded { .. } = self.vslots[v] {
                    self.vslots[v] = VSlot::Free;
                    let _ = self.done.push(SlotDone {
                        slot: v,
                        sent: false,
                        at_ns: 0,
                    });
                }
            }
            self.dslots = [None; DSLOTS];
            self.stalled = None;
        }
        self.ready = Some((usize::try_from(n).unwrap_or(1).min(DSLOTS), fd));
    }

    /// Forwards held frames, best first, and preempts a worse forwarded one.
    fn forward(&mut self) {
        // Requests already decided (RECOVER, ABORT) go out whatever the
        // state; new frames wait below.
        if let Some(r) = self.stalled.take() {
            if !self.send(r) {
                self.stalled = Some(r);
                return;
            }
        }
        let Some((n, _)) = self.ready else { return };
        if self.status.state == BusState::BusOff {
            // Nothing new to a bus-off controller: the frames it gave back
            // (ABORTED) stay held until the virtualiser has contained the
            // bus-off and the controller recovered.
            return;
        }
        loop {
            let best = (0..LINK_SLOTS)
                .filter_map(|v| match self.vslots[v] {
                    VSlot::Held { frame, seq } => Some(((frame.arbitration_key(), seq), v)),
                    _ => None,
                })
                .min();
            let Some((order, v)) = best else { return };
            if let Some(d) = (0..n).find(|&d| self.dslots[d].is_none()) {
                let VSlot::Held { frame, seq } = self.vslots[v] else {
                    return;
                };
                let id = u32::try_from(d).unwrap_or(0);
                if !self.send(Self::request(drv_op::SUBMIT, id, Some(&frame))) {
                    return;
                }
                self.vslots[v] = VSlot::Forwarded {
                    frame,
                    seq,
                    dslot: d,
                    abort_sent: false,
                };
                self.dslots[d] = Some(v);
                continue;
            }
            // Every driver buffer is busy: preempt the worst forwarded
            // frame if the best held one beats it (one abort at a time).
            let mut worst: Option<((u32, u64), usize)> = None;
            for w in 0..LINK_SLOTS {
                match self.vslots[w] {
                    VSlot::Forwarded {
                        abort_sent: true, ..
                    } => return,
                    VSlot::Forwarded { frame, seq, .. } => {
                        let o = (frame.arbitration_key(), seq);
                        if worst.is_none_or(|(b, _)| o > b) {
                            worst = Some((o, w));
                        }
                    }
                    _ => {}
                }
            }
            if let Some((o, w)) = worst {
                if o > order {
                    self.abort_forwarded(w);
                }
            }
            return;
        }
    }

    fn abort_forwarded(&mut self, v: usize) {
        if let VSlot::Forwarded {
            frame,
            seq,
            dslot,
            abort_sent: false,
        } = self.vslots[v]
        {
            let id = u32::try_from(dslot).unwrap_or(0);
            let r = Self::request(drv_op::ABORT, id, None);
            if self.send(r) {
                self.vslots[v] = VSlot::Forwarded {
                    frame,
                    seq,
                    dslot,
                    abort_sent: true,
                };
            }
        }
    }
}

impl CanController for DriverLink<'_> {
    fn slots(&self) -> usize {
        LINK_SLOTS
    }

    fn submit(
        &mut self,
        slot: usize,
        frame: &Frame,
        _priority: u32,
    ) -> Result<(), ControllerError> {
        if !matches!(self.vslots.get(slot), Some(VSlot::Free)) {
            return Err(ControllerError::BadSlot);
        }
        if frame.is_fd() && self.ready.is_some_and(|(_, fd)| !fd) {
            return Err(ControllerError::Unsupported);
        }
        self.seq += 1;
        self.vslots[slot] = VSlot::Held {
            frame: *frame,
            seq: self.seq,
        };
        self.forward();
        Ok(())
    }

    fn abort(&mut self, slot: usize) -> bool {
        match self.vslots.get(slot).copied() {
            Some(VSlot::Held { .. }) => {
                self.vslots[slot] = VSlot::Free;
                true
            }
            Some(VSlot::Forwarded { .. }) => {
                self.abort_forwarded(slot);
                false
            }
            _ => false,
        }
    }

    fn completion(&mut self) -> Option<SlotDone> {
        self.done.pop()
    }

    fn receive(&mut self) -> Option<Received> {
        self.rx.pop()
    }

    fn status(&self) -> ControllerStatus {
        self.status
    }

    fn recover(&mut self) -> Result<(), ControllerError> {
        if self.status.state != BusState::BusOff {
            return Err(ControllerError::NotBusOff);
        }
        let r = Self::request(drv_op::RECOVER, 0, None);
        if !self.send(r) {
            self.stalled = Some(r);
        }
        Ok(())
    }
}
