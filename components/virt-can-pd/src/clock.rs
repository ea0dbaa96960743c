//! The virtualiser's clock for budgets: monotonic nanoseconds, from the
//! runtime's clock (`bulkhead_runtime::time`: `CLOCK_MONOTONIC` on the host
//! board, the generic timer's `CNTPCT_EL0` on seL4 — the backends and why
//! they are readable at EL0 are documented there).

/// Monotonic time in nanoseconds (0 where the platform gives no clock).
pub fn now_ns() -> u64 {
    bulkhead_runtime::time::now_ns().unwrap_or(0)
}
