//! Block test guests on the host board: `virtio-drivers`' unmodified
//! `VirtIOBlk` on the guest's partition, through trapped MMIO, the VMM,
//! `blk_virt` and `blk_driver`. This file is the shared part (the other
//! `blk_*` programs include it) and, run as `blk_guest`, the writer.
//!
//! Every line a guest prints is for `tests/guests/tests/storage.rs`:
//! `ack <sector>` after each acknowledged 4 KiB write (so the test can
//! check the image after a power cut), `verified <n> blocks`, `done`. The
//! data of sector `s` is [`pattern`]`(tag, s)` with `tag` = the guest's
//! capacity in sectors (so two guests' data differ).

#![allow(dead_code)]
// Test guests are x86_64 Linux programs: u64 and usize are the same width.
#![allow(clippy::cast_possible_truncation)]

use std::time::{Duration, Instant};

use std::ptr::NonNull;

use bulkhead_test_guests::{setup, watchdog, GuestHal};
use bulkhead_vmm_host::{layout, Class};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};

/// Sectors per write (4 KiB).
pub const BLOCK_SECTORS: u64 = 8;
/// Bytes per write.
pub const BLOCK: usize = 4096;

/// The driver on this guest's disk.
pub type Disk = VirtIOBlk<GuestHal, MmioTransport<'static>>;

/// Byte `i` of sector `s` of a guest whose capacity is `tag` sectors
/// (`storage.rs` computes the same).
pub fn pattern(tag: u64, s: u64, i: usize) -> u8 {
    let x = s
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(tag.wrapping_mul(131))
        .wrapping_add(i as u64 * 7);
    (x ^ (x >> 11) ^ (s >> 3)) as u8
}

/// The bytes of `BLOCK / 512` sectors starting at `s`.
pub fn block(tag: u64, s: u64) -> Vec<u8> {
    (0..BLOCK)
        .map(|k| pattern(tag, s + (k / 512) as u64, k % 512))
        .collect()
}

fn fail(what: &str) -> ! {
    println!("FAILED: {what}");
    eprintln!("guest: {what}");
    std::process::exit(1)
}

/// The block device in the blk class's slot (where the guest's device tree
/// puts it), if it is there yet.
fn probe_blk() -> Option<MmioTransport<'static>> {
    let at = layout::slot(Class::Blk.index() as u64);
    let header = NonNull::new(at as *mut VirtIOHeader)?;
    // SAFETY: the slot is in the reserved MMIO range; every access to it
    // traps into the VMM, which emulates the device (zeros until it is up).
    let t = unsafe { MmioTransport::new(header, layout::SLOT_SIZE as usize) }.ok()?;
    (t.device_type() == DeviceType::Block).then_some(t)
}

/// Sets the guest up and opens its disk. The device appears once
/// `blk_virt` has read the partition table, so probing is retried for a
/// few seconds (the slot reads as zeros until then).
pub fn open() -> Disk {
    watchdog(20);
    if let Err(e) = setup() {
        fail(&format!("setup: {e:?}"));
    }
    let start = Instant::now();
    loop {
        if let Some(t) = probe_blk() {
            match VirtIOBlk::<GuestHal, _>::new(t) {
                Ok(d) => {
                    println!(
                        "disk: {} sectors{}",
                        d.capacity(),
                        if d.readonly() { ", read-only" } else { "" }
                    );
                    return d;
                }
                Err(e) => fail(&format!("VirtIOBlk::new: {e:?}")),
            }
        }
        if start.elapsed() > Duration::from_secs(8) {
            fail("no block device");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes blocks from sector 0 upwards for `secs` seconds (or until the
/// partition is full), reading each back at once and comparing every
/// byte (with `sync`, a flush after each write, as a database commit
/// does); prints `ack <sector>` per acknowledged write. Then a flush, a
/// full pass comparing every block written, `verified <n> blocks`. Returns
/// the number of blocks.
pub fn write_and_verify(d: &mut Disk, secs: f64, sync: bool) -> u64 {
    let tag = d.capacity();
    let blocks = tag / BLOCK_SECTORS;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut back = vec![0u8; BLOCK];
    let mut n = 0;
    while n < blocks && Instant::now() < end {
        let s = n * BLOCK_SECTORS;
        if let Err(e) = d.write_blocks(s as usize, &block(tag, s)) {
            fail(&format!("write at {s}: {e:?}"));
        }
        if sync {
            if let Err(e) = d.flush() {
                fail(&format!("flush after {s}: {e:?}"));
            }
        }
        println!("ack {s}");
        if let Err(e) = d.read_blocks(s as usize, &mut back) {
            fail(&format!("read at {s}: {e:?}"));
        }
        if back != block(tag, s) {
            fail(&format!("read-back at {s} differs"));
        }
        n += 1;
        watchdog(20);
    }
    if let Err(e) = d.flush() {
        fail(&format!("flush: {e:?}"));
    }
    println!("flushed");
    for k in 0..n {
        let s = k * BLOCK_SECTORS;
        if d.read_blocks(s as usize, &mut back).is_err() || back != block(tag, s) {
            fail(&format!("final pass: block at {s} differs"));
        }
    }
    println!("verified {n} blocks");
    n
}

/// Ends the guest's work: `done`, then idles (the test stops the system).
pub fn idle() -> ! {
    println!("done");
    watchdog(0);
    loop {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let mut d = open();
    write_and_verify(&mut d, 1.0, false);
    idle()
}
