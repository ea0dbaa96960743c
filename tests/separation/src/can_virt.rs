//! The can_virt stand-in of the safety path: echoes cluster_vmm's sequence
//! number from `can_cluster_req` into `can_cluster_resp` and notifies it
//! back; counts (and otherwise ignores) infotainment's notifications, which
//! is the load the timing attacks put on S's path. `CRASH` = true is the T3
//! variant: it faults after [`CRASH_AFTER`] requests and is not restarted
//! (the reference system gives can_virt no fault-handling parent).

use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler, Region};

const CLUSTER: Channel = Channel::new(1);
const INFOTAINMENT: Channel = Channel::new(2);

/// Requests served before the crashing variant (`sep_can_virt_crash`) faults.
pub const CRASH_AFTER: u64 = 300;

/// The stand-in; `CRASH` selects the T3 variant.
pub struct CanVirt<const CRASH: bool> {
    req: Region,
    resp: Region,
    served: u64,
    from_infotainment: u64,
}

impl<const CRASH: bool> Handler for CanVirt<CRASH> {
    fn init() -> Self {
        let (Ok(req), Ok(resp)) = (
            Region::get("can_cluster_req"),
            Region::get("can_cluster_resp"),
        ) else {
            debug_println!("sep: can_virt missing a region");
            halt(2)
        };
        CanVirt {
            req,
            resp,
            served: 0,
            from_infotainment: 0,
        }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if channels.contains(INFOTAINMENT) {
            self.from_infotainment += 1;
        }
        if channels.contains(CLUSTER) {
            if CRASH && self.served == CRASH_AFTER {
                debug_println!("sep: can_virt crashing after {} requests", self.served);
                // SAFETY: deliberately faults (the T3 "kill a PD" scenario):
                // a write to address 0x10, which is never mapped.
                unsafe { core::ptr::write_volatile(0x10 as *mut u64, 1) };
            }
            let seq = self.req.read_u64(0).unwrap_or(0);
            let _ = self.resp.write_u64(0, seq);
            self.served += 1;
            let _ = CLUSTER.notify();
        }
    }
}
