//! Constants shared by the adversarial test PDs of the host-board tests.
//!
//! These PDs exist only to attack the host board's isolation; they are not
//! examples and must never appear in a product system.
#![no_std]

/// How often `crashloop` crashes (and `restarter` restarts it).
pub const CRASH_LOOPS: u64 = 50;

/// An address no map and no part of the PD image covers.
pub const OUTSIDE_ADDR: usize = 0x3000_0000;

/// Round trips per benchmark phase.
pub const BENCH_ROUNDS: usize = 20_000;

/// Round trips before measuring.
pub const BENCH_WARMUP: usize = 2_000;

/// Monotonic time in nanoseconds (vDSO `clock_gettime`, allowed after
/// lockdown).
#[cfg(target_os = "linux")]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// The `q`-quantile (0..=100 percent) of `samples`, which it sorts.
pub fn percentile(samples: &mut [u64], q: usize) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    samples[(samples.len() - 1) * q.min(100) / 100]
}
