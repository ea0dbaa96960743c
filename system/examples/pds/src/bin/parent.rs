//! `parent`: receives its child `crasher`'s faults and restarts it until it
//! has done so `CRASHES` times, then halts.
#![no_std]
#![no_main]

use bulkhead_example_pds::CRASHES;
use bulkhead_runtime::{debug_println, halt, ChannelSet, Child, FaultInfo, Handler, MessageInfo};

struct Parent {
    restarts: u64,
}

impl Handler for Parent {
    fn init() -> Self {
        debug_println!("parent: ready");
        Parent { restarts: 0 }
    }

    fn notified(&mut self, _channels: ChannelSet) {}

    fn fault(&mut self, child: Child, msg: MessageInfo) -> bool {
        let f = FaultInfo::from_message(msg);
        self.restarts += 1;
        debug_println!(
            "parent: child {} faulted: {} at {:#x}; restart {}",
            child.id(),
            f.kind.name(),
            f.addr,
            self.restarts
        );
        if let Err(e) = child.restart() {
            debug_println!("parent: restart refused: {e}");
            halt(1);
        }
        if self.restarts == CRASHES {
            debug_println!("parent: restarted the crasher {CRASHES} times, done");
            halt(0);
        }
        false
    }
}

bulkhead_runtime::protection_domain!(Parent);
