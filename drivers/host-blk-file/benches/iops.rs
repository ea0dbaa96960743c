//! 4 KiB random-read IOPS: through the whole in-process storage path
//! (raw-ring guest → virtio-mmio transport → virtio-blk device → block
//! virtualiser → file driver) against direct `pread` on the same image, at
//! queue depth 1 and 32, in the same run. The page cache of the image is
//! dropped (`posix_fadvise(DONTNEED)`) before every batch, untimed, so both
//! sides read from the device. Prints both ratios (ours / direct).
//!
//! Direct QD 32 is 32 threads each with one `pread` outstanding; ours is 32
//! requests in flight through device and virtualiser, served by the
//! single-threaded file driver (as the driver PD will be).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

use bulkhead_virt_blk::config::{Budget, ClientConfig, Selector};
use bulkhead_virtio::SliceMemory;
use common::{RawGuest, World, RAW_BASE};
use criterion::{criterion_group, criterion_main, Criterion};
use drv_host_blk_file::gpt::{build, PartSpec};

const PART_SECTORS: u64 = 128 * 2048; // 128 MiB
const BATCH: u64 = 512;

fn drop_cache(f: &File) {
    // SAFETY: a plain syscall on an open descriptor; no memory is passed.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0);
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn ours(world: &mut World, guest: &mut RawGuest, qd: usize, n: u64, rng: &mut Rng) -> Duration {
    drop_cache(world.below.disk.file());
    let start = Instant::now();
    let (mut posted, mut done) = (0u64, 0u64);
    while done < n {
        let mut inflight = posted - done;
        while inflight < qd as u64 && posted < n && guest.can_post() {
            let sector = (rng.next() % (PART_SECTORS / 8)) * 8;
            guest.post_read(sector);
            posted += 1;
            inflight += 1;
        }
        let mut mem = SliceMemory::new(RAW_BASE, &mut guest.ram);
        world.devs[0].write(0x050, 4, 0).unwrap(); // QueueNotify
        world.devs[0].process_queue(0, &mut mem);
        world.pump();
        world.devs[0].process_queue(0, &mut mem);
        done += guest.reap() as u64;
    }
    start.elapsed()
}

fn direct(file: &File, base: u64, qd: usize, n: u64, seed: u64) -> Duration {
    drop_cache(file);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..qd {
            s.spawn(move || {
                let mut rng = Rng(seed ^ ((t as u64 + 1) * 0x9E37_79B9));
                let mut buf = vec![0u8; 4096];
                for _ in 0..n / qd as u64 {
                    let sector = (rng.next() % (PART_SECTORS / 8)) * 8;
                    file.read_exact_at(&mut buf, (base + sector) * 512).unwrap();
                }
            });
        }
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    // The image lives on the real disk (not tmpfs) so dropping its cache
    // means reading from the device.
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let img = tempfile::NamedTempFile::new_in(dir).unwrap();
    let placed = build(
        img.path(),
        PART_SECTORS + 4096,
        &[PartSpec {
            name: "bench".into(),
            sectors: PART_SECTORS,
        }],
    )
    .unwrap();
    {
        // Real data, not a sparse hole.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(img.path())
            .unwrap();
        let chunk = vec![0x5Au8; 1 << 20];
        for mb in 0..PART_SECTORS / 2048 {
            f.write_all_at(&chunk, (placed[0].first + mb * 2048) * 512)
                .unwrap();
        }
        f.sync_all().unwrap();
    }
    let clients = [ClientConfig {
        partition: Selector::Name("bench"),
        read_only: true,
        budget: Budget::UNLIMITED,
    }];
    let mut world = World::new(img.path(), &clients);
    let mut guest = RawGuest::attach(&mut world.devs[0]);
    let file = File::open(img.path()).unwrap();
    let base = placed[0].first;

    let mut results = Vec::new();
    for qd in [1usize, 32] {
        let mut g = c.benchmark_group(format!("randread_4k_qd{qd}"));
        g.sample_size(10).measurement_time(Duration::from_secs(4));
        g.throughput(criterion::Throughput::Elements(BATCH));
        let mut rng = Rng(0x1234_5678);
        let mut t_ours = (Duration::ZERO, 0u64);
        g.bench_function("virtio-blk+virt+driver", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += ours(&mut world, &mut guest, qd, BATCH, &mut rng);
                }
                t_ours.0 += total;
                t_ours.1 += iters * BATCH;
                total
            })
        });
        let mut t_direct = (Duration::ZERO, 0u64);
        g.bench_function("direct_pread", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    total += direct(&file, base, qd, BATCH, i);
                }
                t_direct.0 += total;
                t_direct.1 += iters * BATCH;
                total
            })
        });
        g.finish();
        let iops = |t: (Duration, u64)| t.1 as f64 / t.0.as_secs_f64();
        results.push((qd, iops(t_ours), iops(t_direct)));
    }
    for (qd, o, d) in results {
        println!(
            "QD {qd:2}: ours {o:9.0} IOPS, direct pread {d:9.0} IOPS, ratio {:.2}",
            o / d
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
