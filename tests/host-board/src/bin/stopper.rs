//! Parent for the stop/restart test: when its running (not faulted) child
//! first reports, stops it and restarts it; halts after the second report.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Child, Handler};

const CHILD: Child = Child::new(1);

struct Stopper {
    reports: u64,
}

impl Handler for Stopper {
    fn init() -> Self {
        if let Err(e) = Child::new(9).restart() {
            debug_println!("stopper: child 9: {e}");
        }
        Stopper { reports: 0 }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if !channels.contains(Channel::new(0)) {
            return;
        }
        self.reports += 1;
        debug_println!("stopper: report {} from the child", self.reports);
        if self.reports == 1 {
            if CHILD.stop().and_then(|()| CHILD.restart()).is_err() {
                halt(1);
            }
            debug_println!("stopper: stopped and restarted the child");
        } else {
            halt(0);
        }
    }
}

bulkhead_runtime::protection_domain!(Stopper);
