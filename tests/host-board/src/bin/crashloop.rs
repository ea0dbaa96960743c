//! Child that faults on each of its first `CRASH_LOOPS` runs (the run count
//! survives restarts, as memory does on Microkit).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_host_board_tests::{CRASH_LOOPS, OUTSIDE_ADDR};
use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};

static RUNS: AtomicU64 = AtomicU64::new(0);

struct CrashLoop;

impl Handler for CrashLoop {
    fn init() -> Self {
        let run = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
        if run <= CRASH_LOOPS {
            // SAFETY: deliberately faults; the parent restarts this PD.
            unsafe { core::ptr::read_volatile(OUTSIDE_ADDR as *const u64) };
            halt(2);
        }
        debug_println!("crashloop: ran through after {} restarts", run - 1);
        halt(0)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(CrashLoop);
