//! The driver end of the `drv` hop (`bulkhead_can_protocol::driver_hop`,
//! version 1): requests from the CAN virtualiser (`can_drv_req`) applied to
//! a [`CanController`], and what the controller did reported back
//! (`can_drv_resp`).
//!
//! Room (rule 6): `S + 1` entries of the response ring are kept for slot
//! responses (one per SUBMIT, at most `S` loaded plus one refused); an RX
//! frame that would eat into that reserve is dropped and counted, and a
//! STATUS that does not fit waits, latest value, until room appears.

use bulkhead_can_protocol::controller::{CanController, ControllerStatus};
use bulkhead_can_protocol::driver_hop::{encode_ready, encode_status};
use bulkhead_can_protocol::{drv_op, drv_status, WireFrame, EVENT_ID, MAX_DRIVER_SLOTS};
use bulkhead_ring::{Armed, Consumer, Producer, Request, Response, RingError};

const SLOTS: usize = MAX_DRIVER_SLOTS as usize;

/// The two rings of the hop and what the driver owes the virtualiser.
pub struct Hop {
    rx: Consumer<'static, Request<WireFrame>>,
    tx: Producer<'static, Response<WireFrame>>,
    /// TX buffers announced in READY.
    slots: usize,
    /// The frame loaded in each slot (echoed in its response).
    loaded: [Option<WireFrame>; SLOTS],
    reported: Option<ControllerStatus>,
    /// READY not yet pushed (the response ring was full at start, e.g.
    /// after a restart while the virtualiser was not reading).
    ready: Option<WireFrame>,
    /// Requests refused as malformed or unknown (counted, never acted on).
    pub bad_requests: u32,
    /// RX frames dropped to keep the slot-response reserve.
    pub rx_dropped: u32,
}

impl Hop {
    /// Attaches the hop and announces READY: `slots` TX buffers, FD or not
    /// (at once, or from the first [`Hop::serve`] that finds room). No
    /// request is taken before READY is out.
    ///
    /// # Errors
    /// The response ring is corrupt.
    pub fn start(
        rx: Consumer<'static, Request<WireFrame>>,
        tx: Producer<'static, Response<WireFrame>>,
        slots: usize,
        fd: bool,
    ) -> Result<Self, RingError> {
        let slots = slots.min(SLOTS);
        let mut me = Self {
            rx,
            tx,
            slots,
            loaded: [None; SLOTS],
            reported: None,
            ready: Some(WireFrame {
                timestamp: encode_ready(u32::try_from(slots).unwrap_or(0), fd),
                ..WireFrame::default()
            }),
            bad_requests: 0,
            rx_dropped: 0,
        };
        me.announce()?;
        Ok(me)
    }

    /// Pushes a pending READY if there is room; true once it is out.
    fn announce(&mut self) -> Result<bool, RingError> {
        let Some(w) = self.ready else {
            return Ok(true);
        };
        if self.tx.free()? == 0 {
            return Ok(false);
        }
        self.push(EVENT_ID, drv_status::READY, w)?;
        self.ready = None;
        Ok(true)
    }

    fn push(&mut self, id: u32, status: u32, payload: WireFrame) -> Result<(), RingError> {
        self.tx.push(&Response {
            id,
            status,
            payload,
        })
    }

    /// Answers slot `slot` with `status`, echoing its frame.
    fn answer(&mut self, slot: usize, status: u32, at_ns: u64) -> Result<(), RingError> {
        let mut w = self
            .loaded
            .get_mut(slot)
            .and_then(Option::take)
            .unwrap_or_default();
        w.timestamp = at_ns;
        self.push(u32::try_from(slot).unwrap_or(u32::MAX), status, w)
    }

    /// Applies pending requests and reports what the controller finished,
    /// received and how its state changed, until nothing is left. Returns
    /// whether the virtualiser asked to be notified.
    ///
    /// # Errors
    /// A ring the peer corrupted ([`RingError`]); the hop is then dead.
    pub fn serve<C: CanController>(
        &mut self,
        ctrl: &mut C,
        now_ns: u64,
    ) -> Result<bool, RingError> {
        if !self.announce()? {
            // Still no room for READY: keep the controller drained (its RX
            // is dropped and counted; nothing was submitted yet).
            while ctrl.receive().is_some() {
                self.rx_dropped = self.rx_dropped.saturating_add(1);
            }
            return Ok(self.tx.notify_needed());
        }
        loop {
            let mut progress = false;
            // Completions first: they free TX buffers the next SUBMIT needs.
            while self.tx.free()? > 0 {
                let Some(done) = ctrl.completion() else { break };
                let status = if done.sent {
                    drv_status::SENT
                } else {
                    drv_status::FAILED
                };
                self.answer(done.slot, status, done.at_ns)?;
                progress = true;
            }
            // Each request produces at most one slot response.
            while self.tx.free()? > 0 {
                let Some(req) = self.rx.pop()? else { break };
                self.apply(ctrl, &req, now_ns)?;
                progress = true;
            }
            let reserve = u32::try_from(self.slots + 1).unwrap_or(u32::MAX);
            while let Some(r) = ctrl.receive() {
                if self.tx.free()? > reserve {
                    self.push(
                        EVENT_ID,
                        drv_status::RX,
                        WireFrame::from_frame(&r.frame, r.at_ns),
                    )?;
                } else {
                    self.rx_dropped = self.rx_dropped.saturating_add(1);
                }
                progress = true;
            }
            let now = ctrl.status();
            if self.reported != Some(now) && self.tx.free()? > 0 {
                let w = WireFrame {
                    timestamp: encode_status(now),
                    ..WireFrame::default()
                };
                self.push(EVENT_ID, drv_status::STATUS, w)?;
                self.reported = Some(now);
                progress = true;
            }
            // Arm before sleeping: a request that raced in is served now.
            if !progress && self.rx.arm_signal()? == Armed::MaySleep {
                break;
            }
        }
        Ok(self.tx.notify_needed())
    }

    fn apply<C: CanController>(
        &mut self,
        ctrl: &mut C,
        req: &Request<WireFrame>,
        now_ns: u64,
    ) -> Result<(), RingError> {
        let slot = usize::try_from(req.id).unwrap_or(usize::MAX);
        match req.op {
            drv_op::SUBMIT => {
                let free = slot < self.slots && self.loaded[slot].is_none();
                let accepted = free
                    && req.payload.to_frame().is_ok_and(|frame| {
                        ctrl.submit(slot, &frame, frame.arbitration_key()).is_ok()
                    });
                if accepted {
                    self.loaded[slot] = Some(req.payload);
                } else {
                    // Refused: answered at once, echoing what was asked
                    // (a busy slot keeps its own frame and answer).
                    self.bad_requests = self.bad_requests.saturating_add(1);
                    let w = WireFrame {
                        timestamp: now_ns,
                        ..req.payload
                    };
                    self.push(req.id, drv_status::FAILED, w)?;
                }
            }
            drv_op::ABORT => {
                // Not aborted: the frame is on the wire (or done) and its
                // SENT/FAILED follows; an empty slot is ignored.
                if slot < self.slots && self.loaded[slot].is_some() && ctrl.abort(slot) {
                    self.answer(slot, drv_status::ABORTED, now_ns)?;
                }
            }
            drv_op::RECOVER => {
                // Ignored when not bus-off; the state change comes as STATUS.
                let _ = ctrl.recover();
            }
            _ => self.bad_requests = self.bad_requests.saturating_add(1),
        }
        Ok(())
    }
}
