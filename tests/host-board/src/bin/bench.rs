//! Host-board benchmark: notification and PPC round trips between two PDs
//! (`systems/bench.system`) against a bare two-process eventfd ping-pong on
//! the same pinned CPU with the same scheduling policy, measured in one run.
//!
//! `cargo build --release -p bulkhead-host-board-tests -p bulkhead-example-pds
//! && target/release/bench`

use std::path::Path;

use bulkhead_host_board_tests::{now_ns, percentile, BENCH_ROUNDS, BENCH_WARMUP};

/// Pins the calling process to `cpu` and tries SCHED_FIFO at `prio`,
/// as the supervisor does for PDs.
fn pin_and_fifo(cpu: usize, prio: i32) -> bool {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < 1024 (checked by the caller's choice of CPU 0..n).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: set is valid.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    let p = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: p is valid.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) == 0 }
}

fn eventfd() -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::eventfd(0, 0) }
}

fn signal(fd: i32) {
    let one = 1u64;
    // SAFETY: 8 bytes from a valid local.
    unsafe { libc::write(fd, std::ptr::addr_of!(one).cast(), 8) };
}

fn wait(fd: i32) {
    let mut v = 0u64;
    // SAFETY: 8 bytes into a valid local.
    unsafe { libc::read(fd, std::ptr::addr_of_mut!(v).cast(), 8) };
}

/// The baseline: two processes, two eventfds, blocking reads.
fn bare_eventfd(cpu: usize) -> (u64, u64, bool) {
    let (to_child, to_parent) = (eventfd(), eventfd());
    // SAFETY: the child only makes async-signal-safe calls (sched, read,
    // write, _exit) before exiting.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        pin_and_fifo(cpu, 2);
        for _ in 0..BENCH_WARMUP + BENCH_ROUNDS {
            wait(to_child);
            signal(to_parent);
        }
        // SAFETY: ends the child.
        unsafe { libc::_exit(0) };
    }
    let rt = pin_and_fifo(cpu, 1);
    let mut samples = vec![0u64; BENCH_ROUNDS];
    for i in 0..BENCH_WARMUP + BENCH_ROUNDS {
        let t0 = now_ns();
        signal(to_child);
        wait(to_parent);
        if i >= BENCH_WARMUP {
            samples[i - BENCH_WARMUP] = now_ns() - t0;
        }
    }
    let mut st = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    // Back to normal scheduling for the supervisor part.
    let p = libc::sched_param { sched_priority: 0 };
    // SAFETY: p is valid.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &p) };
    (
        percentile(&mut samples, 50),
        percentile(&mut samples, 99),
        rt,
    )
}

fn field(line: &str, key: &str) -> Option<u64> {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == key {
            return it.next()?.parse().ok();
        }
    }
    None
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let system = root.join("systems/bench.system");
    let cpu = 0;
    let (b50, b99, rt) = bare_eventfd(cpu);
    println!("bare eventfd ping-pong (2 processes, CPU {cpu}, SCHED_FIFO {rt}): p50 {b50} ns p99 {b99} ns");
    let opts = bulkhead_host::RunOptions {
        timeout: Some(std::time::Duration::from_secs(120)),
        ..Default::default()
    };
    let outcome = match bulkhead_host::run_file(&system, &opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    for l in &outcome.lines {
        if l.monitor {
            println!("{}", l.render());
        }
    }
    let mut ok = outcome.status == 0;
    for l in outcome.transcript("bench_client") {
        for what in ["notify", "ppc"] {
            if l.starts_with(&format!("bench: {what} ")) {
                let (Some(p50), Some(p99)) = (field(&l, "p50"), field(&l, "p99")) else {
                    continue;
                };
                let r50 = p50 as f64 / b50.max(1) as f64;
                let r99 = p99 as f64 / b99.max(1) as f64;
                println!(
                    "host board {what:6} round trip: p50 {p50} ns p99 {p99} ns; ratio to bare eventfd p50 {r50:.2} p99 {r99:.2} (target <= 1.5)"
                );
            }
        }
    }
    if !outcome
        .transcript("bench_client")
        .iter()
        .any(|l| l.starts_with("bench: ppc"))
    {
        ok = false;
        eprintln!("bench: no results from the bench PDs");
    }
    std::process::exit(i32::from(!ok));
}
