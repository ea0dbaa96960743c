//! Infotainment stand-in for baseline runs: does nothing.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, ChannelSet, Handler};
#[allow(unused_imports)]
use bulkhead_separation_pds::*;

struct Attacker;

impl Handler for Attacker {
    fn init() -> Self {
        debug_println!("sep: idle");
        Attacker
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Attacker);
