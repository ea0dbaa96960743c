//! Shared pieces of the separation suite's stand-in and attack PDs.
//!
//! These PDs exist only to exercise the checklist of
//! `shared/reference/automotive.md` on the host board (`bulkhead
//! test-separation`); they must never appear in a product system. The
//! suite reads what they print (`sep: ...` lines); the formats are fixed in
//! `tools/separation/src/scenario.rs`.
#![no_std]

pub mod can_virt;

/// Ticks of the safety stand-in per run, after [`S_WARMUP`] (1 ms each).
pub const S_TICKS: usize = 1000;

/// Ticks before measuring (lets every PD reach its event loop).
pub const S_WARMUP: usize = 50;

/// Latency samples per `sep: lat` output line.
pub const LAT_PER_LINE: usize = 16;

/// The reference system's vaddr of `can_cluster_resp` in cluster_vmm and
/// can_virt: nothing is mapped there in infotainment_vmm.
pub const SAFETY_RING_VADDR: usize = 0x6680_1000;

/// The reference system's vaddr of `serial_cluster_out` in cluster_vmm (the
/// other VMM's console ring): nothing is mapped there in infotainment_vmm.
pub const OTHER_VMM_VADDR: usize = 0x60a0_0000;

/// Monotonic time in nanoseconds (vDSO `clock_gettime`, allowed after
/// lockdown).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// A small xorshift generator: the attacks need varied, not secure, rates.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Spins for `n` iterations without the compiler removing the loop.
pub fn spin(n: u64) {
    for i in 0..n {
        core::hint::black_box(i);
        core::hint::spin_loop();
    }
}
