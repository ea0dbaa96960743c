//! Monotonic time for PDs: [`now_ns`], [`now_us`] and [`Instant`].
//!
//! The clock only ever goes forward and starts at an arbitrary point (host
//! boot, or the seL4 board's counter reset): use differences, never wall
//! time. It is for budgets, rate limits and timeouts *measured* at events;
//! it wakes nobody — a PD that must act at a time needs a timer interrupt
//! (`<irq>`; on the host board a `[[timer_irq]]` binding).
//!
//! Backends:
//! - **host board**: `clock_gettime(CLOCK_MONOTONIC)`. glibc answers from
//!   the vDSO without a system call; where it falls back to the syscall
//!   (228), the runtime's seccomp allow-list permits it
//!   (`host/seccomp.rs`).
//! - **seL4 on aarch64**: the ARM generic timer's physical count
//!   `CNTPCT_EL0` scaled by its frequency `CNTFRQ_EL0` (always readable at
//!   EL0). EL0 may read `CNTPCT_EL0` only if the kernel set
//!   `CNTKCTL_EL1.EL0PCTEN` (and, with hypervisor support, `CNTHCTL_EL2.
//!   EL1PCTEN`); seL4 does both exactly when built with
//!   `CONFIG_EXPORT_PCNT_USER` (`src/arch/arm/armv/armv8-a/64/
//!   user_access.c`), which the Microkit 2.3.0 SDK's kernels are (checked in
//!   `board/qemu_virt_aarch64/{debug,release}/include/kernel/gen_config.h`).
//!   The *virtual* counter `CNTVCT_EL0` would be the usual choice for EL0,
//!   but those kernels leave `CONFIG_EXPORT_VCNT_USER` off, so reading it
//!   would trap: the physical counter is the one seL4 exports here. A PD is
//!   not a vCPU, so no guest's `CNTVOFF` is involved either way.

/// Nanoseconds on the monotonic clock, or `None` if this platform gives the
/// PD no clock (a counter frequency of 0, or a target without a backend).
pub fn now_ns() -> Option<u64> {
    backend_now_ns()
}

/// Microseconds on the monotonic clock ([`now_ns`] / 1000).
pub fn now_us() -> Option<u64> {
    now_ns().map(|ns| ns / 1000)
}

/// A point on the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(u64);

impl Instant {
    /// Now, or `None` without a clock (see [`now_ns`]).
    pub fn now() -> Option<Instant> {
        now_ns().map(Instant)
    }

    /// The instant `ns` nanoseconds after the clock's origin.
    pub const fn from_ns(ns: u64) -> Instant {
        Instant(ns)
    }

    /// Nanoseconds since the clock's origin.
    pub const fn as_ns(self) -> u64 {
        self.0
    }

    /// Nanoseconds from `earlier` to `self` (0 if `earlier` is later).
    pub const fn ns_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[cfg(target_os = "linux")]
fn backend_now_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the
    // call; CLOCK_MONOTONIC is always supported on Linux.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return None;
    }
    let s = u64::try_from(ts.tv_sec).ok()?;
    let ns = u64::try_from(ts.tv_nsec).ok()?;
    Some(s.saturating_mul(1_000_000_000).saturating_add(ns))
}

#[cfg(all(target_os = "none", target_arch = "aarch64"))]
fn backend_now_ns() -> Option<u64> {
    let (count, freq): (u64, u64);
    // SAFETY: reads two system registers seL4 makes readable at EL0 (see
    // the module documentation); no memory is touched. The `isb` keeps the
    // counter read from being hoisted above earlier instructions, so a
    // time taken after an event is not older than the event.
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) count, options(nomem, nostack));
        core::arch::asm!("mrs {}, cntfrq_el0", out(reg) freq, options(nomem, nostack));
    }
    ticks_to_ns(count, freq)
}

#[cfg(not(any(target_os = "linux", all(target_os = "none", target_arch = "aarch64"))))]
fn backend_now_ns() -> Option<u64> {
    None
}

/// `count` ticks of a `freq` Hz counter in nanoseconds (`None` for a zero
/// frequency: firmware that did not program `CNTFRQ_EL0`).
#[cfg_attr(
    not(any(test, all(target_os = "none", target_arch = "aarch64"))),
    allow(dead_code)
)]
fn ticks_to_ns(count: u64, freq: u64) -> Option<u64> {
    if freq == 0 {
        return None;
    }
    // u128: a 62.5 MHz counter × 10^9 overflows u64 after ~5 minutes.
    let ns = u128::from(count) * 1_000_000_000 / u128::from(freq);
    Some(u64::try_from(ns).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_clock_exists_and_goes_forward() {
        let a = Instant::now().expect("the host board has a clock");
        let mut b = a;
        // Spin until it moves (ns resolution: a few iterations at most).
        for _ in 0..1_000_000 {
            b = Instant::now().expect("clock");
            if b > a {
                break;
            }
        }
        assert!(b > a, "the monotonic clock did not advance");
        assert_eq!(b.ns_since(a), b.as_ns() - a.as_ns());
        assert_eq!(a.ns_since(b), 0);
        let us = now_us().expect("clock");
        assert!(us >= b.as_ns() / 1000);
    }

    #[test]
    fn counter_ticks_scale_without_overflow() {
        assert_eq!(ticks_to_ns(62_500_000, 62_500_000), Some(1_000_000_000));
        assert_eq!(ticks_to_ns(1, 0), None);
        // A day of a 62.5 MHz counter: the product exceeds u64.
        let day = 86_400u64 * 62_500_000;
        assert_eq!(ticks_to_ns(day, 62_500_000), Some(86_400_000_000_000));
        assert_eq!(ticks_to_ns(u64::MAX, 1), Some(u64::MAX));
    }
}
