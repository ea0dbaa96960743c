//! A block guest that asks for what lies past its partition: a write
//! straddling the end, a write and a read just past it, a read far past
//! it (sector overflow). Each must fail; it prints one line per request
//! (`oob <what>: refused` or `FAILED: …`), then `done`.

// Test guests are x86_64 Linux programs: u64 and usize are the same width.
#![allow(clippy::cast_possible_truncation)]

#[path = "blk_guest.rs"]
mod blk_guest;

use blk_guest::{idle, open, BLOCK};

fn main() {
    let mut d = open();
    let cap = d.capacity() as usize;
    let buf = vec![0xA5u8; BLOCK];
    let cases: [(&str, usize, bool); 4] = [
        ("write straddling the end", cap - 4, true),
        ("write at the end", cap, true),
        ("read at the end", cap, false),
        ("read far past the end", usize::MAX / 512 - 8, false),
    ];
    for (what, s, write) in cases {
        let r = if write {
            d.write_blocks(s, &buf)
        } else {
            d.read_blocks(s, &mut vec![0u8; BLOCK])
        };
        match r {
            Err(e) => println!("oob {what}: refused ({e:?})"),
            Ok(()) => println!("FAILED: oob {what} accepted"),
        }
    }
    idle()
}
