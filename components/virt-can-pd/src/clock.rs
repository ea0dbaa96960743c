//! The virtualiser's clock for budgets: monotonic nanoseconds.
//!
//! Host board: `CLOCK_MONOTONIC` (the vDSO; `clock_gettime` is on the
//! runtime's seccomp allow-list). seL4 on aarch64: the generic timer's
//! physical count `CNTPCT_EL0` scaled by `CNTFRQ_EL0` (Microkit's kernel
//! configurations export the physical counter to user level,
//! `CONFIG_EXPORT_PCNT_USER`).

/// Monotonic time in nanoseconds (0 where no clock is available).
#[cfg(target_os = "linux")]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    let s = u64::try_from(ts.tv_sec).unwrap_or(0);
    let ns = u64::try_from(ts.tv_nsec).unwrap_or(0);
    s.saturating_mul(1_000_000_000).saturating_add(ns)
}

/// Monotonic time in nanoseconds (0 where no clock is available).
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
pub fn now_ns() -> u64 {
    let (count, freq): (u64, u64);
    // SAFETY: reads two EL0-accessible system registers; no memory access.
    unsafe {
        core::arch::asm!("mrs {}, cntpct_el0", out(reg) count, options(nomem, nostack));
        core::arch::asm!("mrs {}, cntfrq_el0", out(reg) freq, options(nomem, nostack));
    }
    if freq == 0 {
        return 0;
    }
    let ns = u128::from(count) * 1_000_000_000 / u128::from(freq);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Monotonic time in nanoseconds (0 where no clock is available).
#[cfg(not(any(target_os = "linux", all(target_os = "none", target_arch = "aarch64"))))]
pub fn now_ns() -> u64 {
    0
}
