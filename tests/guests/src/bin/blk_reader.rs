//! The read-only block guest: its partition holds `pattern(capacity, s)`
//! (the test writes it into the image). It checks that the device says
//! read-only, that writes fail (one inside, one at the last block), then
//! reads the whole partition over and over comparing every byte, printing
//! `verified round <k>` after each pass, until the test stops the system.

// Test guests are x86_64 Linux programs: u64 and usize are the same width.
#![allow(clippy::cast_possible_truncation)]

#[path = "blk_guest.rs"]
mod blk_guest;

use blk_guest::{block, open, BLOCK, BLOCK_SECTORS};

fn main() {
    let mut d = open();
    let tag = d.capacity();
    if !d.readonly() {
        println!("FAILED: device not read-only");
    }
    for s in [0, tag - BLOCK_SECTORS] {
        match d.write_blocks(s as usize, &vec![0xEE; BLOCK]) {
            Err(e) => println!("ro write at {s}: refused ({e:?})"),
            Ok(()) => println!("FAILED: ro write at {s} accepted"),
        }
    }
    let mut buf = vec![0u8; BLOCK];
    for round in 1.. {
        for k in 0..tag / BLOCK_SECTORS {
            let s = k * BLOCK_SECTORS;
            if d.read_blocks(s as usize, &mut buf).is_err() || buf != block(tag, s) {
                println!("FAILED: round {round}: block at {s} differs");
                std::process::exit(1);
            }
            bulkhead_test_guests::watchdog(20);
        }
        println!("verified round {round}");
    }
}
