//! T4 attacker: notifies can_virt in bursts of random length separated by random pauses, so wake-ups on the safety path race with infotainment at every phase.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};
#[allow(unused_imports)]
use bulkhead_separation_pds::*;

struct Attacker;

impl Handler for Attacker {
    fn init() -> Self {
        debug_println!("sep: random-rate notifications");
        let ch = bulkhead_runtime::Channel::new(4);
        let mut rng = XorShift(now_ns() | 1);
        loop {
            for _ in 0..rng.next_u64() % 64 {
                if ch.notify().is_err() {
                    halt(1);
                }
            }
            spin(rng.next_u64() % 20_000);
        }
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Attacker);
