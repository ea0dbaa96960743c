//! T3 attacker: faults at once (a killed infotainment VMM).
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};
#[allow(unused_imports)]
use bulkhead_separation_pds::*;

struct Attacker;

impl Handler for Attacker {
    fn init() -> Self {
        debug_println!("sep: crashing");
        // SAFETY: deliberately faults: address 0x10 is never mapped.
        unsafe { core::ptr::write_volatile(0x10 as *mut u64, 1) };
        halt(3)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Attacker);
