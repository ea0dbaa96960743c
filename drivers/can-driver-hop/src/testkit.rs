//! The virtualiser's end of the `drv` hop over in-memory rings, for host
//! tests of a driver behind [`Hop`]: the test drives a real controller
//! driver (on its register model) through the real hop and checks what the
//! virtualiser would see.

use std::boxed::Box;
use std::vec::Vec;

use bulkhead_can_frame::Frame;
use bulkhead_can_protocol::{drv_op, drv_status, WireFrame, EVENT_ID, RING_CAPACITY};
use bulkhead_ring::layout::ring_bytes;
use bulkhead_ring::{CacheLine, Consumer, Pod, Producer, Region, Request, Response};

use crate::Hop;

// Test support: a ring error here is a broken test set-up or a hop that
// corrupted its ring, so it fails the test (`expect`) rather than being
// threaded through every assertion.

/// Cache lines for one ring of the hop, leaked (a test's rings live as
/// long as the test process).
fn lines() -> &'static [CacheLine] {
    let bytes = ring_bytes(RING_CAPACITY, <Request<WireFrame> as Pod>::WORDS)
        .expect("the hop's ring layout");
    let n = bytes / core::mem::size_of::<CacheLine>() + 1;
    Box::leak(
        (0..n)
            .map(|_| CacheLine::new())
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

/// What the virtualiser holds: its ends of both rings.
pub struct Virt {
    req: Producer<'static, Request<WireFrame>>,
    resp: Consumer<'static, Response<WireFrame>>,
}

/// A hop started over fresh in-memory rings (READY already pushed:
/// `slots` TX buffers, FD or not) and the virtualiser's end of it.
///
/// # Panics
/// A ring that cannot be attached (a bug in the ring crate).
pub fn connect(slots: usize, fd: bool) -> (Hop, Virt) {
    connect_after(slots, fd, 0)
}

/// As [`connect`], but the driver restarts into a response ring its
/// previous life filled with `RING_CAPACITY` SENT answers nobody read:
/// READY has to wait for room.
///
/// # Panics
/// As [`connect`].
pub fn connect_into_full_ring(slots: usize, fd: bool) -> (Hop, Virt) {
    connect_after(slots, fd, RING_CAPACITY)
}

fn connect_after(slots: usize, fd: bool, stale: u32) -> (Hop, Virt) {
    let (q, r) = (Region::from_lines(lines()), Region::from_lines(lines()));
    let mut old = Producer::<Response<WireFrame>>::attach(r, RING_CAPACITY).expect("resp ring");
    for id in 0..stale {
        old.push(&Response {
            id,
            status: drv_status::SENT,
            payload: WireFrame::default(),
        })
        .expect("room for the stale answers");
    }
    let hop = Hop::start(
        Consumer::attach(q, RING_CAPACITY).expect("req ring"),
        Producer::attach(r, RING_CAPACITY).expect("resp ring"),
        slots,
        fd,
    )
    .expect("the hop starts");
    let virt = Virt {
        req: Producer::attach(q, RING_CAPACITY).expect("req ring"),
        resp: Consumer::attach(r, RING_CAPACITY).expect("resp ring"),
    };
    (hop, virt)
}

impl Virt {
    /// Pushes request `op` for `id` (a slot, usually) carrying `payload`.
    ///
    /// # Panics
    /// The request ring is full or corrupt.
    pub fn send(&mut self, op: u32, id: u32, payload: WireFrame) {
        self.req
            .push(&Request { id, op, payload })
            .expect("room in the request ring");
    }

    /// SUBMITs `f` in `slot`.
    ///
    /// # Panics
    /// As [`Virt::send`].
    pub fn submit(&mut self, slot: u32, f: &Frame) {
        self.send(drv_op::SUBMIT, slot, WireFrame::from_frame(f, 0));
    }

    /// Every response waiting, oldest first.
    ///
    /// # Panics
    /// The hop corrupted the response ring.
    pub fn answers(&mut self) -> Vec<Response<WireFrame>> {
        std::iter::from_fn(|| self.resp.pop().expect("an intact response ring")).collect()
    }

    /// The slot responses waiting (events left out): slot, status and the
    /// echoed frame.
    ///
    /// # Panics
    /// As [`Virt::answers`], or an echo that does not decode.
    pub fn slot_answers(&mut self) -> Vec<(u32, u32, Frame)> {
        self.answers()
            .into_iter()
            .filter(|r| r.id != EVENT_ID)
            .map(|r| (r.id, r.status, r.payload.to_frame().expect("echoed frame")))
            .collect()
    }
}
