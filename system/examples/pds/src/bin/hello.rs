//! `hello`: prints one line from `init` and halts.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, ChannelSet, Handler};

struct Hello;

impl Handler for Hello {
    fn init() -> Self {
        debug_println!("hello, world from {}", bulkhead_runtime::pd_name());
        bulkhead_runtime::halt(0)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Hello);
