//! The storage-budget guests (`tests/storage_budget.rs`, issue 7). One
//! program, two roles, chosen the way `system/automotive` sets its guests
//! up: a **read-only** disk is the cluster, a writable one infotainment.
//!
//! - infotainment floods: 4 KiB reads back to back (QD1, as fast as the
//!   device answers) across its partition for [`RUN`], and prints the
//!   completion time of every read, in µs since its first, batched as
//!   `c <t> <t> ...` lines; then `flood <n> ops`.
//! - the cluster reads one 4 KiB block every [`CLUSTER_EVERY`], compares
//!   every byte with its partition's pattern (`blk_guest.rs`), and prints
//!   `r <k> <latency µs>` per read; then `cluster <n> reads`.
//!
//! Both then print `done` and idle.

// Test guests are x86_64 Linux programs: u64 and usize are the same width.
#![allow(clippy::cast_possible_truncation)]

#[path = "blk_guest.rs"]
mod blk_guest;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use blk_guest::{block, idle, open, Disk, BLOCK, BLOCK_SECTORS};

/// How long each role runs.
const RUN: Duration = Duration::from_secs(3);
/// The cluster's read period.
const CLUSTER_EVERY: Duration = Duration::from_millis(500);

fn fail(what: &str) -> ! {
    println!("FAILED: {what}");
    std::process::exit(1)
}

fn flood(d: &mut Disk) {
    let blocks = d.capacity() / BLOCK_SECTORS;
    let mut buf = vec![0u8; BLOCK];
    let start = Instant::now();
    let mut line = String::from("c");
    let mut n = 0u64;
    while start.elapsed() < RUN {
        let s = (n % blocks) * BLOCK_SECTORS;
        if let Err(e) = d.read_blocks(s as usize, &mut buf) {
            fail(&format!("flood read at {s}: {e:?}"));
        }
        let _ = write!(line, " {}", start.elapsed().as_micros());
        n += 1;
        if n % 64 == 0 {
            println!("{line}");
            line = String::from("c");
        }
        bulkhead_test_guests::watchdog(20);
    }
    if line.len() > 1 {
        println!("{line}");
    }
    println!("flood {n} ops");
}

fn cluster(d: &mut Disk) {
    let tag = d.capacity();
    let blocks = tag / BLOCK_SECTORS;
    let mut buf = vec![0u8; BLOCK];
    let start = Instant::now();
    let mut k = 0u64;
    while start.elapsed() < RUN {
        let next = start + CLUSTER_EVERY * (k as u32);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let s = (k % blocks) * BLOCK_SECTORS;
        let t = Instant::now();
        if d.read_blocks(s as usize, &mut buf).is_err() || buf != block(tag, s) {
            fail(&format!("cluster read {k} at {s} failed or differs"));
        }
        println!("r {k} {}", t.elapsed().as_micros());
        k += 1;
        bulkhead_test_guests::watchdog(20);
    }
    println!("cluster {k} reads");
}

fn main() {
    let mut d = open();
    if d.readonly() {
        cluster(&mut d);
    } else {
        flood(&mut d);
    }
    idle()
}
