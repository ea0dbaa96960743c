//! M1 attacker: writes to its own read-only map (serial_infotainment_in, the console RX ring the virtualiser fills).
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};
#[allow(unused_imports)]
use bulkhead_separation_pds::*;

struct Attacker;

impl Handler for Attacker {
    fn init() -> Self {
        let Ok(ro) = bulkhead_runtime::Region::get("serial_infotainment_in") else {
            halt(2)
        };
        debug_println!("sep: writing read-only map at {:#x}", ro.vaddr());
        // SAFETY: an attack: a store through the read-only mapping.
        unsafe { core::ptr::write_volatile(ro.vaddr() as *mut u64, 0xdead) };
        debug_println!("sep: ATTACK SUCCEEDED: wrote a read-only map");
        halt(3)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Attacker);
