//! Test PD: signals channel 0 a hundred times, then channel 1 once, then
//! halts. It outranks `counter` on the same core, so `counter` cannot run
//! in between.
#![no_std]
#![no_main]

use bulkhead_runtime::{halt, Channel, ChannelSet, Handler};

struct Burst;

impl Handler for Burst {
    fn init() -> Self {
        for _ in 0..100 {
            if Channel::new(0).notify().is_err() {
                halt(1);
            }
        }
        if Channel::new(1).notify().is_err() {
            halt(1);
        }
        halt(0)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Burst);
