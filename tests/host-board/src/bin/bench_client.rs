//! Benchmark driver PD: measures notification round trips (notify, wait for
//! the echo) on channel 0, then PPC round trips on channel 1, and prints
//! `bench: <what> p50 <ns> p99 <ns>` lines.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_host_board_tests::{now_ns, percentile, BENCH_ROUNDS, BENCH_WARMUP};
use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler, MessageInfo};

const NOTIFY: Channel = Channel::new(0);
const PPC: Channel = Channel::new(1);

/// Samples live in .bss: a PD has no allocator.
static SAMPLES: [AtomicU64; BENCH_ROUNDS] = [const { AtomicU64::new(0) }; BENCH_ROUNDS];

struct Client {
    round: usize,
    t0: u64,
}

fn report(what: &str) {
    let mut v = [0u64; BENCH_ROUNDS];
    for (d, s) in v.iter_mut().zip(SAMPLES.iter()) {
        *d = s.load(Ordering::Relaxed);
    }
    let p50 = percentile(&mut v, 50);
    let p99 = percentile(&mut v, 99);
    debug_println!("bench: {what} p50 {p50} p99 {p99}");
}

impl Handler for Client {
    fn init() -> Self {
        let t0 = now_ns();
        if NOTIFY.notify().is_err() {
            halt(1);
        }
        Client { round: 0, t0 }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if !channels.contains(NOTIFY) {
            return;
        }
        let t = now_ns();
        if self.round >= BENCH_WARMUP {
            SAMPLES[self.round - BENCH_WARMUP].store(t - self.t0, Ordering::Relaxed);
        }
        self.round += 1;
        if self.round < BENCH_WARMUP + BENCH_ROUNDS {
            self.t0 = now_ns();
            if NOTIFY.notify().is_err() {
                halt(1);
            }
            return;
        }
        report("notify");
        for i in 0..BENCH_WARMUP + BENCH_ROUNDS {
            let t0 = now_ns();
            if PPC.pp_call(MessageInfo::new(0, 0)).is_err() {
                halt(1);
            }
            if i >= BENCH_WARMUP {
                SAMPLES[i - BENCH_WARMUP].store(now_ns() - t0, Ordering::Relaxed);
            }
        }
        report("ppc");
        halt(0)
    }
}

bulkhead_runtime::protection_domain!(Client);
