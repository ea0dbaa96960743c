//! T1 attacker: notifies can_virt (its only channel, id 4) as fast as it can.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};
#[allow(unused_imports)]
use bulkhead_separation_pds::*;

struct Attacker;

impl Handler for Attacker {
    fn init() -> Self {
        debug_println!("sep: notification storm");
        let ch = bulkhead_runtime::Channel::new(4);
        loop {
            if ch.notify().is_err() {
                halt(1);
            }
        }
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Attacker);
