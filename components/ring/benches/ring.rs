//! Enqueue+dequeue throughput of bulkhead-ring against `rtrb` on identical workloads.
//!
//! `cargo bench -p bulkhead-ring` runs both, in one process, and prints the
//! ratio (rtrb time / our time: above 1.0 means ours is faster) from the same
//! measurements criterion took.
//!
//! - `single`: one thread pushes a batch of 64 `u64`s, then pops them
//!   (capacity 1024); "ours+notify" also does the producer's
//!   `notify_needed` check (one SeqCst fence) per batch, as a PD would.
//! - `cross`: one thread pushes 2^18 `u64`s, another pops them, both
//!   spinning on full/empty (capacity 1024).

// A benchmark harness, not PD code: a failed unwrap aborts the run, which is
// the right outcome for a broken setup.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bulkhead_ring::{CacheLine, Consumer, Producer, Region, RingError};
use criterion::{Criterion, Throughput};

const CAP: u32 = 1024;
const BATCH: u64 = 64;
const CROSS_ITEMS: u64 = 1 << 18;

/// (total time, iterations) per benchmark id, as measured for criterion.
static SEEN: Mutex<BTreeMap<&'static str, (Duration, u64)>> = Mutex::new(BTreeMap::new());

fn record(id: &'static str, d: Duration, iters: u64) {
    let mut seen = SEEN.lock().unwrap();
    let e = seen.entry(id).or_default();
    e.0 += d;
    e.1 += iters;
}

fn region_lines() -> Vec<CacheLine> {
    let bytes = bulkhead_ring::layout::ring_bytes(CAP, 2).unwrap();
    (0..bytes / 64).map(|_| CacheLine::new()).collect()
}

fn ours_single(iters: u64, notify: bool) -> Duration {
    let mem = region_lines();
    let r = Region::from_lines(&mem);
    let mut p = Producer::<u64>::attach(r, CAP).unwrap();
    let mut c = Consumer::<u64>::attach(r, CAP).unwrap();
    let start = Instant::now();
    for _ in 0..iters {
        for i in 0..BATCH {
            p.push(&black_box(i)).unwrap();
        }
        if notify {
            black_box(p.notify_needed());
        }
        for _ in 0..BATCH {
            black_box(c.pop().unwrap());
        }
    }
    start.elapsed()
}

fn rtrb_single(iters: u64) -> Duration {
    let (mut p, mut c) = rtrb::RingBuffer::<u64>::new(CAP as usize);
    let start = Instant::now();
    for _ in 0..iters {
        for i in 0..BATCH {
            p.push(black_box(i)).unwrap();
        }
        for _ in 0..BATCH {
            black_box(c.pop().unwrap());
        }
    }
    start.elapsed()
}

/// Waiting for the other thread, identical for both rings: spin briefly,
/// then yield, so that an oversubscribed machine (the other thread not
/// running) does not turn the measurement into a scheduler benchmark.
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins % 64 == 0 {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

fn ours_cross(iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mem = region_lines();
        let r = Region::from_lines(&mem);
        let mut p = Producer::<u64>::attach(r, CAP).unwrap();
        let mut c = Consumer::<u64>::attach(r, CAP).unwrap();
        let start = Instant::now();
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut spins = 0u32;
                for i in 0..CROSS_ITEMS {
                    while let Err(RingError::Full) = p.push(&i) {
                        backoff(&mut spins);
                    }
                }
            });
            let mut next = 0;
            let mut spins = 0u32;
            while next < CROSS_ITEMS {
                match c.pop().unwrap() {
                    Some(v) => {
                        assert_eq!(v, next);
                        next += 1;
                    }
                    None => backoff(&mut spins),
                }
            }
        });
        total += start.elapsed();
    }
    total
}

fn rtrb_cross(iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (mut p, mut c) = rtrb::RingBuffer::<u64>::new(CAP as usize);
        let start = Instant::now();
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut spins = 0u32;
                for i in 0..CROSS_ITEMS {
                    while p.push(i).is_err() {
                        backoff(&mut spins);
                    }
                }
            });
            let mut next = 0;
            let mut spins = 0u32;
            while next < CROSS_ITEMS {
                match c.pop() {
                    Ok(v) => {
                        assert_eq!(v, next);
                        next += 1;
                    }
                    Err(_) => backoff(&mut spins),
                }
            }
        });
        total += start.elapsed();
    }
    total
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("single");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("ours", |b| {
        b.iter_custom(|n| {
            let d = ours_single(n, false);
            record("single/ours", d, n);
            d
        });
    });
    g.bench_function("ours+notify", |b| {
        b.iter_custom(|n| {
            let d = ours_single(n, true);
            record("single/ours+notify", d, n);
            d
        });
    });
    g.bench_function("rtrb", |b| {
        b.iter_custom(|n| {
            let d = rtrb_single(n);
            record("single/rtrb", d, n);
            d
        });
    });
    g.finish();

    let mut g = c.benchmark_group("cross");
    g.throughput(Throughput::Elements(CROSS_ITEMS));
    g.sample_size(10);
    g.bench_function("ours", |b| {
        b.iter_custom(|n| {
            let d = ours_cross(n);
            record("cross/ours", d, n);
            d
        });
    });
    g.bench_function("rtrb", |b| {
        b.iter_custom(|n| {
            let d = rtrb_cross(n);
            record("cross/rtrb", d, n);
            d
        });
    });
    g.finish();
}

fn per_iter(seen: &BTreeMap<&'static str, (Duration, u64)>, id: &str) -> Option<f64> {
    let (d, n) = seen.get(id)?;
    (*n > 0).then(|| d.as_secs_f64() / *n as f64)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    let seen = SEEN.lock().unwrap();
    println!("ratio = rtrb time / bulkhead-ring time (> 1.0: ours faster), same runs as above:");
    for (ours, theirs) in [
        ("single/ours", "single/rtrb"),
        ("single/ours+notify", "single/rtrb"),
        ("cross/ours", "cross/rtrb"),
    ] {
        if let (Some(a), Some(b)) = (per_iter(&seen, ours), per_iter(&seen, theirs)) {
            println!("  {ours:<20} vs {theirs:<12} ratio {:.2}", b / a);
        }
    }
}
