//! Storage benchmark of issue 7: 4 KiB random-read IOPS at queue depth 1
//! and 32 through the whole host-board path — trapping test guest
//! (`tests/guests` `blk_bench_guest`) → VMM PD → `blk_virt` → `blk_driver`
//! → disk image — against `pread` on the same image in the same run.
//!
//! ```text
//! cargo build --release -p bulkhead-host-board-tests --bin blk_bench
//! target/release/blk_bench            # builds the PDs and the guest first
//! ```
//!
//! The system is `systems/blk_bench.toml`, composed into a scratch
//! directory beside the programs (on the target dir's disk, not tmpfs) with
//! a 256 MiB partition whose every 4 KiB block starts with its own block
//! number (the guest and the anchors check every read).
//!
//! Both sides bypass the page cache: `blk_driver` switches its image
//! descriptor to `O_DIRECT` (its start line says so; the bench shouts if
//! it did not), and the anchor is `pread` on the same image opened with
//! `O_DIRECT`, run before and after the system (mean of the two, both
//! printed); the anchor's QD 32 is 32 threads with one `pread` each
//! outstanding.
//!
//! Scheduling: the PDs run under SCHED_FIFO at their priorities (as the
//! host board always runs them). This process — the supervisor, which
//! plays the kernel delivering the guest's traps, the guest it starts, and
//! the anchor's threads — moves to SCHED_FIFO 1 first, so the other jobs
//! of a shared machine do not decide the result (`--no-rt` leaves it at
//! the normal policy; the output says which).
//!
//! Options: `--no-build` (use the programs already beside this one),
//! `--secs S` (anchor phase length, default 3), `--no-rt`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use drv_host_blk_file::gpt::{build, PartSpec};

const BLOCK: u64 = 4096;
/// [`BLOCK`] as a buffer length.
const BLOCK_BYTES: usize = 4096;
/// Partition size (as `systems/blk_bench.toml` says).
const PART_BYTES: u64 = 256 << 20;

fn die(what: &str) -> ! {
    eprintln!("blk_bench: {what}");
    std::process::exit(2)
}

/// `target/<profile>`: where this program and the ones it runs live.
fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| die("cannot locate this program"))
}

fn build_programs(bin: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = bin.parent().unwrap_or(bin);
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root)
        .args([
            "build",
            "-q",
            "-p",
            "bulkhead-vmm-host",
            "-p",
            "bulkhead-virt-blk-pd",
        ])
        .args(["-p", "drv-host-blk-file", "--bin", "blk_driver"])
        .args(["-p", "bulkhead-test-guests", "--bin", "blk_bench_guest"])
        .arg("--target-dir")
        .arg(target);
    if bin.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    match cmd.status() {
        Ok(s) if s.success() => {}
        _ => die("building the PDs and the guest failed (or pass --no-build)"),
    }
}

/// Composes `systems/blk_bench.toml` into `dir`, binding the VMM program.
fn compose_into(dir: &Path, bin: &Path) -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("systems");
    let src = std::fs::read_to_string(here.join("blk_bench.toml"))
        .unwrap_or_else(|e| die(&format!("systems/blk_bench.toml: {e}")));
    let out = bulkhead_compose::compose(&src, "blk_bench.toml", &here, Some("host"))
        .unwrap_or_else(|d| die(&format!("compose: {d:?}")));
    for o in &out {
        for f in &o.files {
            let p = dir.join(&f.path);
            if let Some(parent) = p.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            std::fs::write(&p, &f.bytes).unwrap_or_else(|e| die(&format!("{}: {e}", p.display())));
        }
    }
    // The generated binding plus where the VMM program is.
    let toml = dir.join("host.host.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap_or_default();
    text.push_str(&format!(
        "\n[programs]\n\"bench_vmm.elf\" = {:?}\n",
        bin.join("vmm")
    ));
    std::fs::write(&toml, text).unwrap_or_else(|e| die(&format!("host.host.toml: {e}")));
    dir.join("host.system")
}

/// Builds the image; returns the partition's first byte.
fn make_image(path: &Path) -> u64 {
    let sectors = PART_BYTES / 512;
    let placed = build(
        path,
        2048 + sectors + 2048,
        &[PartSpec {
            name: "bench".into(),
            sectors,
        }],
    )
    .unwrap_or_else(|e| die(&format!("GPT image: {e}")));
    let base = placed.first().map_or(0, |p| p.first * 512);
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| die(&format!("image: {e}")));
    let mut chunk = vec![0x5Au8; 1 << 20];
    for mb in 0..PART_BYTES >> 20 {
        for (i, blk) in chunk.chunks_exact_mut(BLOCK_BYTES).enumerate() {
            let b = mb * 256 + i as u64;
            blk[..8].copy_from_slice(&b.to_le_bytes());
        }
        f.write_all_at(&chunk, base + (mb << 20))
            .unwrap_or_else(|e| die(&format!("image: {e}")));
    }
    f.sync_all().unwrap_or_else(|e| die(&format!("image: {e}")));
    base
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

/// A page-aligned 4 KiB buffer (`O_DIRECT`).
#[repr(C, align(4096))]
struct Aligned([u8; BLOCK_BYTES]);

/// `threads` threads each keep one 4 KiB `pread` of a random block of the
/// partition outstanding for `secs`; returns IOPS.
fn pread_iops(file: &File, base: u64, threads: usize, secs: Duration) -> f64 {
    let blocks = PART_BYTES / BLOCK;
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((t as u64 + 1) * 0x2545_F491));
                    let mut buf = Box::new(Aligned([0; BLOCK_BYTES]));
                    let mut n = 0u64;
                    while start.elapsed() < secs {
                        let b = rng.next() % blocks;
                        if file.read_exact_at(&mut buf.0, base + b * BLOCK).is_err() {
                            die("anchor read failed");
                        }
                        let mut w = [0u8; 8];
                        w.copy_from_slice(&buf.0[..8]);
                        if u64::from_le_bytes(w) != b {
                            die("anchor read the wrong block");
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

/// `O_DIRECT` `pread` IOPS at QD 1 and 32.
fn anchors(image: &Path, base: u64, secs: Duration) -> [f64; 2] {
    let direct = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(image)
        .unwrap_or_else(|e| die(&format!("O_DIRECT open of the image: {e}")));
    [1, 32].map(|qd| pread_iops(&direct, base, qd, secs))
}

/// Moves this process (and every thread and child it makes afterwards) to
/// SCHED_FIFO 1; says whether it could.
fn realtime() -> Result<(), std::io::Error> {
    let p = libc::sched_param { sched_priority: 1 };
    // SAFETY: `p` is a valid sched_param; pid 0 is this process.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// `key=value` from a guest line.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .map_or(Duration::from_secs(3), Duration::from_secs);
    let bin = bin_dir();
    if !args.iter().any(|a| a == "--no-build") {
        build_programs(&bin);
    }
    let dir = bin.join(format!("blk-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let system = compose_into(&dir, &bin);
    let image = dir.join("bench.img");
    let base = make_image(&image);
    let sched = if args.iter().any(|a| a == "--no-rt") {
        "normal policy (--no-rt)".to_string()
    } else {
        match realtime() {
            Ok(()) => "SCHED_FIFO 1 (supervisor, guest, anchor threads)".to_string(),
            Err(e) => format!("normal policy (SCHED_FIFO refused: {e})"),
        }
    };
    println!(
        "blk_bench: 256 MiB partition, 4 KiB random reads, O_DIRECT; {sched}; load {} before",
        load()
    );
    let before = anchors(&image, base, secs);
    let opts = bulkhead_host::RunOptions {
        search_path: vec![bin.clone()],
        timeout: Some(Duration::from_secs(180)),
        until_line: Some("blk-bench: done".into()),
        ..Default::default()
    };
    let out = bulkhead_host::run_file(&system, &opts);
    let after = anchors(&image, base, secs);
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.unwrap_or_else(|e| die(&format!("run: {e}")));
    let guest = out.transcript("bench");
    let mut path = [Vec::new(), Vec::new()];
    for l in &guest {
        if let (Some(qd), Some(iops)) = (field(l, "qd"), field(l, "iops")) {
            path[usize::from(qd > 1.0)].push(iops);
        }
    }
    for l in out.lines.iter().filter(|l| {
        l.monitor || l.text.starts_with("blk_driver") || l.pd.as_deref() == Some("bench")
    }) {
        println!("  | {}", l.render());
    }
    if out.status != 0 || path.iter().any(Vec::is_empty) {
        die(&format!("the run did not finish (status {})", out.status));
    }
    if !out
        .transcript("blk_driver")
        .iter()
        .any(|l| l.contains("io_uring") && l.contains("On {"))
    {
        println!(
            "!!! blk_driver did NOT use O_DIRECT: the whole path read through the page cache !!!"
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!("load {} after", load());
    println!("QD | whole path (mean of rounds) | pread O_DIRECT (before / after) | ratio");
    for (i, qd) in [1, 32].into_iter().enumerate() {
        let ours = mean(&path[i]);
        let direct = (before[i] + after[i]) / 2.0;
        println!(
            "{qd:2} | {ours:8.0} IOPS | {direct:8.0} IOPS ({:.0} / {:.0}) | {:.2}",
            before[i],
            after[i],
            ours / direct
        );
    }
}
