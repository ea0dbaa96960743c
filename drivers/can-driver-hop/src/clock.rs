//! The driver's clock for the hop's timestamps (`driver_hop`: nanoseconds
//! of the driver's monotonic clock): the Arm generic timer's physical count
//! `CNTPCT_EL0` scaled by `CNTFRQ_EL0` on aarch64 (readable at EL0 under
//! Microkit's kernel; `can_virt` reads the same counter). Elsewhere (a host
//! build of the PD, which has no such device to drive) it reads 0.

/// Nanoseconds since the counter started.
pub fn now_ns() -> u64 {
    #[cfg(target_arch = "aarch64")]
    {
        let count: u64;
        let freq: u64;
        // SAFETY: reads of two architectural system registers that EL0 may
        // read (the kernel enables it); no memory is touched.
        unsafe {
            core::arch::asm!("mrs {}, cntpct_el0", out(reg) count, options(nomem, nostack));
            core::arch::asm!("mrs {}, cntfrq_el0", out(reg) freq, options(nomem, nostack));
        }
        if freq == 0 {
            return 0;
        }
        u64::try_from(u128::from(count) * 1_000_000_000 / u128::from(freq)).unwrap_or(u64::MAX)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        0
    }
}
