//! A test guest that times trapped register reads: each read of the
//! console's MagicValue goes guest → SIGSEGV → supervisor (decode) → VMM PD
//! → supervisor (write back) → guest. Prints `trap-bench: …` on stderr.
use std::time::Instant;

use bulkhead_test_guests::{setup, watchdog};
use bulkhead_vmm_host::layout;

const WARMUP: usize = 500;
const ROUNDS: usize = 10_000;

fn main() {
    watchdog(120);
    if let Err(e) = setup() {
        eprintln!("trap-bench: setup failed: {e:?}");
        std::process::exit(2);
    }
    let magic = layout::slot(0) as *const u32;
    let mut ns = Vec::with_capacity(ROUNDS);
    for i in 0..WARMUP + ROUNDS {
        let t = Instant::now();
        // SAFETY: slot 0's MagicValue in the reserved MMIO range; the read
        // traps into the VMM by design.
        let v = unsafe { std::ptr::read_volatile(magic) };
        let dt = t.elapsed();
        if v != 0x7472_6976 {
            eprintln!("trap-bench: wrong magic {v:#x}");
            std::process::exit(1);
        }
        if i >= WARMUP {
            ns.push(u64::try_from(dt.as_nanos()).unwrap_or(u64::MAX));
        }
    }
    ns.sort_unstable();
    let at = |q: usize| ns[(ns.len() * q / 100).min(ns.len() - 1)] as f64 / 1000.0;
    eprintln!(
        "trap-bench: {ROUNDS} trapped 4-byte MMIO reads: p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        at(50),
        at(99),
        ns[ns.len() - 1] as f64 / 1000.0
    );
    std::process::exit(0)
}
