//! 4 KiB random-read IOPS of the io_uring [`Engine`] against direct
//! `pread`, both with `O_DIRECT` on the same file in the same run:
//! engine at QD 1 vs one thread of `pread`, engine at QD 32 (one thread,
//! 32 requests in flight) vs 32 threads each with one `pread` outstanding.
//! Rounds alternate the two sides so drift in the machine's load hits both;
//! the median round is reported, with the load average.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-storage-bench cargo bench -p drv-host-blk-file --bench engine
//! ```
//! Environment: `ENGINE_BENCH_MIB` (file size, default 256),
//! `ENGINE_BENCH_READS` (reads per round at QD 32, default 8192; QD 1 does
//! a quarter), `ENGINE_BENCH_ROUNDS` (default 5).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use drv_host_blk_file::engine::{DirectIo, Engine, EngineConfig, Outcome};

const BLOCK: usize = 4096;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn block(&mut self, blocks: u64) -> u64 {
        (self.next() % blocks) * BLOCK as u64
    }
}

/// Byte `i` of every 4 KiB block `b` holds `b` in its first 8 bytes, so a
/// read can be checked cheaply.
fn make_image(mib: u64) -> tempfile::NamedTempFile {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let img = tempfile::NamedTempFile::new_in(dir).unwrap();
    let mut chunk = vec![0x5Au8; 1 << 20];
    for mb in 0..mib {
        for (i, blk) in chunk.chunks_exact_mut(BLOCK).enumerate() {
            let b = mb * 256 + i as u64;
            blk[..8].copy_from_slice(&b.to_le_bytes());
        }
        img.as_file().write_all_at(&chunk, mb << 20).unwrap();
    }
    img.as_file().sync_all().unwrap();
    img
}

fn check(data: &[u8], off: u64) {
    let mut w = [0u8; 8];
    w.copy_from_slice(&data[..8]);
    assert_eq!(u64::from_le_bytes(w), off / BLOCK as u64, "wrong block");
}

/// One page-aligned 4 KiB buffer for `O_DIRECT` `pread`.
#[repr(C, align(4096))]
struct Aligned([u8; BLOCK]);

fn pread_round(file: &File, threads: usize, reads: u64, blocks: u64, seed: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut rng = Rng(seed ^ ((t as u64 + 1) * 0x9E37_79B9_7F4A_7C15));
                let mut buf = Box::new(Aligned([0; BLOCK]));
                for _ in 0..reads / threads as u64 {
                    let off = rng.block(blocks);
                    file.read_exact_at(&mut buf.0, off).unwrap();
                    check(&buf.0, off);
                }
            });
        }
    });
    start.elapsed()
}

fn engine_round(e: &mut Engine, qd: usize, reads: u64, blocks: u64, seed: u64) -> Duration {
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let (mut posted, mut done) = (0u64, 0u64);
    while done < reads {
        while e.in_flight() < qd && posted < reads {
            let off = rng.block(blocks);
            // The tag carries the offset, so the completion can be checked.
            e.read(off, off, BLOCK).unwrap();
            posted += 1;
        }
        e.wait(1).unwrap();
        done += e.reap(|c| {
            assert_eq!(c.outcome, Outcome::Done);
            check(c.data, c.tag);
        }) as u64;
    }
    start.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench`-less args;
    // only do the (long) measurement under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("engine bench: run with `cargo bench` to measure");
        return;
    }
    let mib = env("ENGINE_BENCH_MIB", 256);
    let reads = env("ENGINE_BENCH_READS", 8192);
    let rounds = env("ENGINE_BENCH_ROUNDS", 5);
    let img = make_image(mib);
    let blocks = (mib << 20) / BLOCK as u64;
    let direct = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(img.path())
        .unwrap();
    let mut engine = Engine::open(
        img.path(),
        &EngineConfig {
            depth: 32,
            max_len: BLOCK,
            read_only: true,
            direct: true,
        },
    )
    .unwrap();
    match engine.direct() {
        DirectIo::On { offset_align } => {
            println!("O_DIRECT on (offset alignment {offset_align}) for both sides")
        }
        other => println!(
            "!!! ENGINE RUNS WITHOUT O_DIRECT ({other:?}): its figures include the page cache !!!"
        ),
    }
    println!(
        "{mib} MiB image, 4 KiB random reads, {rounds} alternating rounds, load before: {}",
        load()
    );
    let mut results = Vec::new();
    for qd in [1usize, 32] {
        let n = if qd == 1 { reads / 4 } else { reads };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            let seed = 0x1234_5678 + r * 77;
            let t = engine_round(&mut engine, qd, n, blocks, seed);
            ours.push(n as f64 / t.as_secs_f64());
            let t = pread_round(&direct, qd, n, blocks, seed);
            theirs.push(n as f64 / t.as_secs_f64());
        }
        results.push((qd, median(ours), median(theirs)));
    }
    for (qd, o, d) in &results {
        println!(
            "QD {qd:2}: engine {o:9.0} IOPS, pread ({qd} thread{}) {d:9.0} IOPS, ratio {:.2}",
            if *qd == 1 { "" } else { "s" },
            o / d
        );
    }
    println!("load after: {}", load());
}
