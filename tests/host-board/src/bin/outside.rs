//! Adversary: reads an address outside every map.
#![no_std]
#![no_main]

use bulkhead_host_board_tests::OUTSIDE_ADDR;
use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};

struct Outside;

impl Handler for Outside {
    fn init() -> Self {
        debug_println!("outside: reading {OUTSIDE_ADDR:#x}");
        // SAFETY: deliberately reads unmapped memory to fault.
        let v = unsafe { core::ptr::read_volatile(OUTSIDE_ADDR as *const u64) };
        debug_println!("outside: read {v}: isolation broken");
        halt(2)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Outside);
