//! `crasher`: child PD that faults on its first `CRASHES` runs. Its run
//! count lives in a static, which a Microkit restart keeps (memory is not
//! reset), so after `CRASHES` restarts it runs through and halts.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_example_pds::{CRASHES, CRASH_ADDR};
use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};

static RUNS: AtomicU64 = AtomicU64::new(0);

struct Crasher;

impl Handler for Crasher {
    fn init() -> Self {
        let run = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
        debug_println!("crasher: run {run}");
        if run <= CRASHES {
            debug_println!("crasher: reading {CRASH_ADDR:#x}");
            // SAFETY: deliberately reads an address no map covers, to fault;
            // the read never completes (the parent restarts this PD).
            let v = unsafe { core::ptr::read_volatile(CRASH_ADDR as *const u64) };
            debug_println!("crasher: read {v} and did not fault?!");
            halt(2);
        }
        debug_println!("crasher: done after {CRASHES} restarts");
        halt(0)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Crasher);
