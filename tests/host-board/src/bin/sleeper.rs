//! Child for the stop/restart test: counts its runs in a static (kept
//! across restarts), tells its parent on channel 0 and, on its second run,
//! halts.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler};

static RUNS: AtomicU64 = AtomicU64::new(0);

struct Sleeper;

impl Handler for Sleeper {
    fn init() -> Self {
        let run = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
        debug_println!("sleeper: run {run}");
        if Channel::new(0).notify().is_err() {
            halt(1);
        }
        if run >= 2 {
            halt(0);
        }
        Sleeper
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Sleeper);
