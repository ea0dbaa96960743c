//! A block guest killed mid-request: writes and verifies 40 blocks
//! (`ack <sector>` each), submits one more write without waiting for it,
//! prints `in flight <sector>` and SIGKILLs itself.

// Test guests are x86_64 Linux programs: u64 and usize are the same width.
#![allow(clippy::cast_possible_truncation)]

#[path = "blk_guest.rs"]
mod blk_guest;

use blk_guest::{block, open, BLOCK_SECTORS};
use virtio_drivers::device::blk::{BlkReq, BlkResp};

fn main() {
    let mut d = open();
    let tag = d.capacity();
    for k in 0..40u64 {
        let s = k * BLOCK_SECTORS;
        if d.write_blocks(s as usize, &block(tag, s)).is_err() {
            println!("FAILED: write at {s}");
            std::process::exit(1);
        }
        println!("ack {s}");
    }
    let s = 40 * BLOCK_SECTORS;
    let data = block(tag, s);
    let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
    // SAFETY: the buffers are not touched again: the guest dies below with
    // the request in flight, which is the point.
    if unsafe { d.write_blocks_nb(s as usize, &mut req, &data, &mut resp) }.is_err() {
        println!("FAILED: submit at {s}");
        std::process::exit(1);
    }
    println!("in flight {s}");
    // SAFETY: plain syscall; the guest ends abruptly, as a crashed one would.
    unsafe { libc::raise(libc::SIGKILL) };
}
