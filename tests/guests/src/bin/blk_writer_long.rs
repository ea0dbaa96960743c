//! The writer of the driver-restart test: like `blk_guest` but writing for
//! 2.5 s, long enough for the test to kill and restart the driver while
//! it works, and flushing after every write (so the driver spends much of
//! its time inside requests, in `fdatasync`).

// Test guests are x86_64 Linux programs: u64 and usize are the same width.
#![allow(clippy::cast_possible_truncation)]

#[path = "blk_guest.rs"]
mod blk_guest;

fn main() {
    let mut d = blk_guest::open();
    blk_guest::write_and_verify(&mut d, 2.5, true);
    blk_guest::idle()
}
