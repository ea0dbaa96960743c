//! Order statistics of latency samples and the timing pass rule.

/// The `q`-th percentile (0..=100) of `samples` (nearest rank, sorted copy).
pub fn percentile(samples: &[u64], q: u32) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let idx = (v.len() - 1) * usize::try_from(q.min(100)).unwrap_or(100) / 100;
    v[idx]
}

/// The timing tolerance: the attacked p99 may exceed the baseline p99 by
/// `ratio` times plus `slack_ns` (host scheduling noise, stated in reports).
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Multiplier on the baseline p99, in percent (150 = 1.5 ×).
    pub ratio_percent: u64,
    /// Additive slack in nanoseconds.
    pub slack_ns: u64,
}

/// The suite's tolerance for "S's response-time distribution unchanged".
pub const T1_TOLERANCE: Tolerance = Tolerance {
    ratio_percent: 150,
    slack_ns: 50_000,
};

impl Tolerance {
    /// The largest p99 that passes against `baseline_p99`.
    pub fn bound(&self, baseline_p99: u64) -> u64 {
        baseline_p99.saturating_mul(self.ratio_percent) / 100 + self.slack_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&v, 100), 100);
        assert_eq!(percentile(&[], 99), 0);
    }

    #[test]
    fn tolerance_bound() {
        assert_eq!(T1_TOLERANCE.bound(100_000), 200_000);
    }
}
