//! `can_drv_client`: stands where `can_virt` would and talks the driver hop
//! (`bulkhead_can_protocol::driver_hop`) to the CAN driver PD directly, for
//! the seL4 test of the driver on its own. After the driver's READY it
//! loads every frame of both guests that the policy of the full test lets
//! through (0x300, FD 0x301, 0x480) into slots 0..3, and prints every
//! response (`can_drv_client: slot N SENT …`) and event (`… rx …`,
//! `… status …`).
//!
//! Maps: `can_drv_req`, `can_drv_resp`; channel 0 = the driver.
#![no_std]
#![no_main]

use bulkhead_can_protocol::driver_hop::{decode_ready, decode_status};
use bulkhead_can_protocol::{drv_op, drv_status, WireFrame, EVENT_ID, RING_CAPACITY};
use bulkhead_ring::{Armed, Consumer, Producer, Request, Response};
use bulkhead_runtime::{debug_println, Channel, ChannelSet, Handler};
use bulkhead_sel4_can_pds::{guest_frames, ring, Show};

const DRIVER: Channel = Channel::new(0);

struct Client {
    req: Option<Producer<'static, Request<WireFrame>>>,
    resp: Option<Consumer<'static, Response<WireFrame>>>,
    submitted: bool,
}

impl Client {
    fn submit_all(&mut self, slots: u32) {
        let Some(req) = self.req.as_mut() else { return };
        let [a0, a1] = guest_frames(0);
        let [b0, _refused] = guest_frames(1);
        for (slot, f) in (0..slots).zip([a0, a1, b0].into_iter().flatten()) {
            let r = Request {
                id: slot,
                op: drv_op::SUBMIT,
                payload: WireFrame::from_frame(&f, 0),
            };
            if req.push(&r).is_ok() {
                debug_println!("can_drv_client: submit slot {} {}", slot, Show(&f));
            }
        }
        if req.notify_needed() {
            let _ = DRIVER.notify();
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
                    debug_println!("can_drv_client: resp ring corrupt ({:?})", e);
                    self.resp = None;
                    return;
                }
            };
            self.show(&r);
        }
    }

    fn show(&mut self, r: &Response<WireFrame>) {
        if r.id == EVENT_ID {
            match r.status {
                drv_status::READY => {
                    let Some((slots, fd)) = decode_ready(r.payload.timestamp) else {
                        debug_println!("can_drv_client: bad READY");
                        return;
                    };
                    debug_println!("can_drv_client: driver READY, {} slots, fd {}", slots, fd);
                    if !self.submitted {
                        self.submitted = true;
                        self.submit_all(slots);
                    }
                }
                drv_status::RX => match r.payload.to_frame() {
                    Ok(f) => debug_println!("can_drv_client: rx {}", Show(&f)),
                    Err(_) => debug_println!("can_drv_client: rx frame does not decode"),
                },
                drv_status::STATUS => {
                    if let Some(s) = decode_status(r.payload.timestamp) {
                        debug_println!(
                            "can_drv_client: status {:?} tec {} rec {}",
                            s.state,
                            s.tec,
                            s.rec
                        );
                    }
                }
                other => debug_println!("can_drv_client: unknown event {:#x}", other),
            }
            return;
        }
        let what = match r.status {
            drv_status::SENT => "SENT",
            drv_status::ABORTED => "ABORTED",
            drv_status::FAILED => "FAILED",
            _ => "?",
        };
        match r.payload.to_frame() {
            Ok(f) => debug_println!("can_drv_client: slot {} {} {}", r.id, what, Show(&f)),
            Err(_) => debug_println!("can_drv_client: slot {} {}", r.id, what),
        }
    }
}

impl Handler for Client {
    fn init() -> Self {
        let req = ring("can_drv_req").and_then(|r| Producer::attach(r, RING_CAPACITY).ok());
        let resp = ring("can_drv_resp").and_then(|r| Consumer::attach(r, RING_CAPACITY).ok());
        if req.is_none() || resp.is_none() {
            debug_println!("can_drv_client: driver hop rings missing");
        }
        let mut me = Client {
            req,
            resp,
            submitted: false,
        };
        // The driver (higher priority) may have announced READY already.
        me.drain();
        me
    }

    fn notified(&mut self, _channels: ChannelSet) {
        self.drain();
    }
}

bulkhead_runtime::protection_domain!(Client, regions: [can_drv_req: rw, can_drv_resp: rw]);
