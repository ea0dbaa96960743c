//! `can_guest`: a guest's CAN device as `can_virt` sees it, for the seL4 CAN
//! test — it speaks the VMM hop (`bulkhead_can_protocol::vmm_hop`) the way a
//! VMM does for its guest's virtio-can: START, then the frames of
//! [`bulkhead_sel4_can_pds::guest_frames`] (`guest_a` is guest 0, any other
//! name guest 1) as TX with tags 1, 2, …, printing each outcome
//! (`<pd>: tag N SENT|NOT_SENT …`) and every received frame (`<pd>: rx …`).
//!
//! Maps: `can_hop_req`, `can_hop_resp`; channel 4 = `can_virt` (the VMM's
//! CAN channel in compose's numbering).
#![no_std]
#![no_main]

use bulkhead_can_protocol::{vmm_op, vmm_status, WireFrame, EVENT_ID, RING_CAPACITY};
use bulkhead_ring::{Armed, Consumer, Producer, Request, Response};
use bulkhead_runtime::{debug_println, pd_name, Channel, ChannelSet, Handler};
use bulkhead_sel4_can_pds::{guest_frames, ring, Show};

const VIRT: Channel = Channel::new(4);
/// Tag of the START request.
const START_TAG: u32 = 0;

struct Guest {
    who: usize,
    req: Option<Producer<'static, Request<WireFrame>>>,
    resp: Option<Consumer<'static, Response<WireFrame>>>,
}

impl Guest {
    fn send(&mut self, op: u32, id: u32, payload: WireFrame) {
        let Some(req) = self.req.as_mut() else { return };
        if req.push(&Request { id, op, payload }).is_err() {
            debug_println!("{}: request ring full", pd_name());
        }
        if req.notify_needed() {
            let _ = VIRT.notify();
        }
    }

    fn transmit(&mut self) {
        for (i, f) in guest_frames(self.who).iter().enumerate() {
            let Some(f) = f else { continue };
            let tag = u32::try_from(i).unwrap_or(0) + 1;
            debug_println!("{}: tx tag {} {}", pd_name(), tag, Show(f));
            self.send(vmm_op::TX, tag, WireFrame::from_frame(f, 0));
        }
    }

    fn drain(&mut self) {
        loop {
            let Some(resp) = self.resp.as_mut() else {
                return;
            };
            let r = match resp.pop() {
                Ok(Some(r)) => r,
                Ok(None) => match resp.arm_signal() {
                    Ok(Armed::Pending) => continue,
                    _ => return,
                },
                Err(e) => {
                    debug_println!("{}: resp ring corrupt ({:?})", pd_name(), e);
                    self.resp = None;
                    return;
                }
            };
            self.show(&r);
        }
    }

    fn show(&mut self, r: &Response<WireFrame>) {
        let me = pd_name();
        if r.id == EVENT_ID {
            match r.status {
                vmm_status::RX => match r.payload.to_frame() {
                    Ok(f) => debug_println!("{}: rx {}", me, Show(&f)),
                    Err(_) => debug_println!("{}: rx frame does not decode", me),
                },
                vmm_status::BUS_OFF => debug_println!("{}: bus-off", me),
                vmm_status::BUS_OK => debug_println!("{}: bus ok", me),
                other => debug_println!("{}: unknown event {:#x}", me, other),
            }
            return;
        }
        match (r.id, r.status) {
            (START_TAG, vmm_status::STARTED) => {
                debug_println!("{}: started", me);
                self.transmit();
            }
            (START_TAG, vmm_status::START_REFUSED) => debug_println!("{}: start refused", me),
            (tag, vmm_status::SENT) => debug_println!("{}: tag {} SENT", me, tag),
            (tag, vmm_status::NOT_SENT) => debug_println!("{}: tag {} NOT_SENT", me, tag),
            (tag, other) => debug_println!("{}: tag {} status {:#x}", me, tag, other),
        }
    }
}

impl Handler for Guest {
    fn init() -> Self {
        let req = ring("can_hop_req").and_then(|r| Producer::attach(r, RING_CAPACITY).ok());
        let resp = ring("can_hop_resp").and_then(|r| Consumer::attach(r, RING_CAPACITY).ok());
        if req.is_none() || resp.is_none() {
            debug_println!("{}: CAN hop rings missing", pd_name());
        }
        let who = usize::from(pd_name() != "guest_a");
        let mut me = Guest { who, req, resp };
        me.drain();
        me.send(vmm_op::START, START_TAG, WireFrame::default());
        me
    }

    fn notified(&mut self, _channels: ChannelSet) {
        self.drain();
    }
}

bulkhead_runtime::protection_domain!(Guest, regions: [can_hop_req: rw, can_hop_resp: rw]);
