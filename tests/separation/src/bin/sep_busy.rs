//! T1/T3 attacker: busy-loops for ever in init (a hung PD at its priority).
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, ChannelSet, Handler};
#[allow(unused_imports)]
use bulkhead_separation_pds::*;

struct Attacker;

impl Handler for Attacker {
    fn init() -> Self {
        debug_println!("sep: busy-looping");
        loop {
            spin(1 << 20);
        }
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Attacker);
