//! Test PD: counts how often `notified` sees channel 0 until channel 1
//! arrives (seL4 semantics: signals coalesce into one badge bit).
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler};

struct Counter {
    calls: u32,
}

impl Handler for Counter {
    fn init() -> Self {
        Counter { calls: 0 }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if channels.contains(Channel::new(0)) {
            self.calls += 1;
        }
        if channels.contains(Channel::new(1)) {
            debug_println!(
                "counter: channel 0 delivered {} time(s) for 100 signals",
                self.calls
            );
            halt(0);
        }
    }
}

bulkhead_runtime::protection_domain!(Counter);
