//! M4 attacker: unbounded recursion, each frame 4 KiB, until the stack runs into what lies below it. Must end in a fault, never in writes to a neighbouring mapping.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};
#[allow(unused_imports)]
use bulkhead_separation_pds::*;

struct Attacker;

impl Handler for Attacker {
    fn init() -> Self {
        debug_println!("sep: overflowing the stack");
        let depth = recurse(0);
        debug_println!("sep: ATTACK SUCCEEDED: recursion returned at depth {depth}");
        halt(3)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Attacker);

/// One 4 KiB frame per call; `black_box` keeps the frame and the recursion.
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[0] = depth.to_le_bytes()[0];
    core::hint::black_box(&mut frame);
    if depth == u64::MAX {
        return depth;
    }
    recurse(depth + 1) + u64::from(core::hint::black_box(frame[4095]))
}
