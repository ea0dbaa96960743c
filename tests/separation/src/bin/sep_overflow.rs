//! M4 attacker: recursion with 4 KiB frames down to [`OVERFLOW_BYTES`]
//! below where it starts, four times the host's default stack limit (8 MiB),
//! so on a sound host it overflows and faults. If the recursion comes back,
//! that much memory below the stack was written without a fault: the stack
//! ran into a neighbouring mapping (the attack succeeded).
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};
#[allow(unused_imports)]
use bulkhead_separation_pds::*;

/// How far below its start the recursion writes.
const OVERFLOW_BYTES: u64 = 32 << 20;

/// Bytes of one frame.
const FRAME: u64 = FRAME_BYTES as u64;

/// The frame as an array length.
const FRAME_BYTES: usize = 4096;

struct Attacker;

impl Handler for Attacker {
    fn init() -> Self {
        debug_println!("sep: overflowing the stack");
        let depth = recurse(0);
        debug_println!(
            "sep: ATTACK SUCCEEDED: recursion returned at depth {depth}: {} MiB below the stack written without a fault",
            (depth * FRAME) >> 20
        );
        halt(3)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Attacker);

/// One 4 KiB frame per call; `black_box` keeps the frame and the recursion.
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; FRAME_BYTES];
    frame[0] = depth.to_le_bytes()[0];
    core::hint::black_box(&mut frame);
    if depth * FRAME >= OVERFLOW_BYTES {
        return depth;
    }
    recurse(depth + 1) + u64::from(core::hint::black_box(frame[FRAME_BYTES - 1]))
}
