//! Benchmark peer: echoes every notification on channel 0 and answers every
//! PPC on channel 1 with an empty reply.
#![no_std]
#![no_main]

use bulkhead_runtime::{Channel, ChannelSet, Handler, MessageInfo};

const NOTIFY: Channel = Channel::new(0);

struct Echo;

impl Handler for Echo {
    fn init() -> Self {
        Echo
    }

    fn notified(&mut self, channels: ChannelSet) {
        if channels.contains(NOTIFY) {
            let _ = NOTIFY.notify();
        }
    }

    fn protected(&mut self, _channel: Channel, _msg: MessageInfo) -> MessageInfo {
        MessageInfo::new(0, 0)
    }
}

bulkhead_runtime::protection_domain!(Echo);
