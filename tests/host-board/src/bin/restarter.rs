//! Parent of `crashloop`: restarts it on every fault, `CRASH_LOOPS` times.
#![no_std]
#![no_main]

use bulkhead_host_board_tests::CRASH_LOOPS;
use bulkhead_runtime::{
    debug_println, halt, ChannelSet, Child, FaultInfo, FaultKind, Handler, MessageInfo,
};

struct Restarter {
    restarts: u64,
}

impl Handler for Restarter {
    fn init() -> Self {
        Restarter { restarts: 0 }
    }

    fn notified(&mut self, _channels: ChannelSet) {}

    fn fault(&mut self, child: Child, msg: MessageInfo) -> bool {
        let f = FaultInfo::from_message(msg);
        if f.kind != FaultKind::Unmapped {
            debug_println!("restarter: unexpected fault {}", f.kind.name());
            halt(1);
        }
        self.restarts += 1;
        if child.restart().is_err() {
            halt(1);
        }
        if self.restarts == CRASH_LOOPS {
            debug_println!("restarter: restarted {} times", self.restarts);
            halt(0);
        }
        false
    }
}

bulkhead_runtime::protection_domain!(Restarter);
