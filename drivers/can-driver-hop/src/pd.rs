//! The PD side of the hop: what both CAN driver PDs did the same way —
//! find the two rings by region name (`can_drv_req` / `can_drv_resp`),
//! announce READY and notify the virtualiser, serve on every notification,
//! and drop a hop whose rings a peer corrupted while keeping the controller
//! drained (its level interrupt must not storm a high-priority PD).

use bulkhead_can_protocol::controller::CanController;
use bulkhead_can_protocol::{WireFrame, RING_CAPACITY};
use bulkhead_ring::{Consumer, Producer, Region as RingRegion, Request, Response};
use bulkhead_runtime::{debug_println, Channel, Region};

use crate::Hop;

/// The region holding the virtualiser → driver ring.
pub const REQ_REGION: &str = "can_drv_req";
/// The region holding the driver → virtualiser ring.
pub const RESP_REGION: &str = "can_drv_resp";

/// The ring in region `name`.
fn ring(name: &str) -> Option<RingRegion<'static>> {
    let r = Region::get(name).ok()?;
    // SAFETY: the runtime mapped `r.size()` bytes at `r.vaddr()` read-write
    // for the PD's life (the description's map of a ring region), and this
    // PD touches the region only through the ring built here.
    unsafe { RingRegion::from_raw(r.vaddr() as *mut u8, r.size()) }.ok()
}

/// A driver PD's hop, or the lack of one (no rings, or rings a peer
/// corrupted).
pub struct DriverHop {
    hop: Option<Hop>,
    virt: Channel,
    /// The PD's name, for its console lines.
    pd: &'static str,
}

impl DriverHop {
    /// Attaches the hop on [`REQ_REGION`] / [`RESP_REGION`] and announces
    /// READY (`slots` TX buffers, FD or not), notifying the virtualiser on
    /// `virt`. Call it only once the controller holds no frame (just reset),
    /// as the hop's rule 1 requires. Without the rings the PD runs with no
    /// hop (said on the console) and [`DriverHop::serve`] only drains.
    pub fn attach(virt: Channel, pd: &'static str, slots: usize, fd: bool) -> Self {
        let hop = Self::start(slots, fd);
        match hop {
            Some(_) => {
                let _ = virt.notify();
            }
            None => debug_println!("{}: no drv hop rings; controller up, nothing to serve", pd),
        }
        Self { hop, virt, pd }
    }

    fn start(slots: usize, fd: bool) -> Option<Hop> {
        let rx = Consumer::<Request<WireFrame>>::attach(ring(REQ_REGION)?, RING_CAPACITY).ok()?;
        let tx = Producer::<Response<WireFrame>>::attach(ring(RESP_REGION)?, RING_CAPACITY).ok()?;
        Hop::start(rx, tx, slots, fd).ok()
    }

    /// Whether a hop is being served.
    pub fn is_attached(&self) -> bool {
        self.hop.is_some()
    }

    /// Serves the hop against `ctrl` at `now_ns` ([`Hop::serve`]) and
    /// notifies the virtualiser when it asked. With no hop, takes what the
    /// controller holds so its interrupt drops. A ring the peer corrupted
    /// loses the hop (said once on the console); the controller stays up.
    pub fn serve<C: CanController>(&mut self, ctrl: &mut C, now_ns: u64) {
        let Some(hop) = self.hop.as_mut() else {
            while ctrl.completion().is_some() {}
            while ctrl.receive().is_some() {}
            return;
        };
        match hop.serve(ctrl, now_ns) {
            Ok(true) => {
                let _ = self.virt.notify();
            }
            Ok(false) => {}
            Err(e) => {
                debug_println!("{}: drv hop corrupt ({:?}); ignoring it", self.pd, e);
                self.hop = None;
            }
        }
    }
}
