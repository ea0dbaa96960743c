//! `server`: a passive PD answering protected procedure calls on channel 0:
//! label `OP_SQUARE` squares MR0.
#![no_std]
#![no_main]

use bulkhead_example_pds::OP_SQUARE;
use bulkhead_runtime::{debug_println, mr_get, mr_set, Channel, ChannelSet, Handler, MessageInfo};

struct Server {
    calls: u64,
}

/// Reply label for an unknown operation.
const ERR_UNKNOWN_OP: u64 = 1;

impl Handler for Server {
    fn init() -> Self {
        debug_println!("server: ready");
        Server { calls: 0 }
    }

    fn notified(&mut self, _channels: ChannelSet) {}

    fn protected(&mut self, channel: Channel, msg: MessageInfo) -> MessageInfo {
        self.calls += 1;
        if msg.label() != OP_SQUARE || msg.count() != 1 {
            debug_println!(
                "server: call {} on channel {}: unknown operation",
                self.calls,
                channel.id()
            );
            return MessageInfo::new(ERR_UNKNOWN_OP, 0);
        }
        let x = mr_get(0).unwrap_or(0);
        let y = x.wrapping_mul(x);
        debug_println!("server: call {}: square({x}) = {y}", self.calls);
        if mr_set(0, y).is_err() {
            return MessageInfo::new(ERR_UNKNOWN_OP, 0);
        }
        MessageInfo::new(0, 1)
    }
}

bulkhead_runtime::protection_domain!(Server);
