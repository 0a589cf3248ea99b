//! [`DurationHistogram`]: how long something took, counted in fixed buckets with atomics, so that the component
//! that measures keeps the one copy and a metrics endpoint reads a [`HistogramSnapshot`] when it is scraped.
//!
//! ```
//! use std::time::Duration;
//! use kelemetry_core::histogram::DurationHistogram;
//!
//! let histogram = DurationHistogram::default();
//! histogram.observe(Duration::from_millis(3));
//! histogram.observe(Duration::from_secs(2));
//! let snapshot = histogram.snapshot();
//! assert_eq!(snapshot.count, 2);
//! assert_eq!(snapshot.cumulative_at(0.005), 1); // one observation at or under 5 ms
//! assert!((snapshot.sum_seconds - 2.003).abs() < 1e-9);
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds in seconds of the default buckets: 1 ms to 2 minutes (a `+Inf` bucket follows).
pub const DEFAULT_BOUNDS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A histogram of durations with fixed bucket bounds: [`observe`](Self::observe) from any thread, read with
/// [`snapshot`](Self::snapshot). Its memory is fixed at creation.
#[derive(Debug)]
pub struct DurationHistogram {
    bounds: &'static [f64],
    /// One per bound, then the `+Inf` bucket; not cumulative.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Default for DurationHistogram {
    /// Buckets at [`DEFAULT_BOUNDS_SECONDS`].
    fn default() -> Self {
        Self::new(DEFAULT_BOUNDS_SECONDS)
    }
}

/// A copy of a [`DurationHistogram`] at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct HistogramSnapshot {
    /// Each bucket's upper bound in seconds and the observations in it (not cumulative), the `+Inf` bucket last.
    pub buckets: Vec<(f64, u64)>,
    /// The sum of the observations, in seconds.
    pub sum_seconds: f64,
    /// The number of observations.
    pub count: u64,
}

impl HistogramSnapshot {
    /// A snapshot of `buckets` (upper bound in seconds, observations in it; the `+Inf` bucket last) whose
    /// observations add up to `sum_seconds`; the count is the buckets' sum.
    pub fn new(buckets: Vec<(f64, u64)>, sum_seconds: f64) -> Self {
        Self {
            count: buckets.iter().map(|(_, count)| count).sum(),
            buckets,
            sum_seconds,
        }
    }

    /// The observations at or under `bound` seconds (the bucket bounds are the points where this is exact).
    pub fn cumulative_at(&self, bound: f64) -> u64 {
        self.buckets
            .iter()
            .take_while(|(upper, _)| *upper <= bound)
            .map(|(_, count)| count)
            .sum()
    }
}

impl DurationHistogram {
    /// A histogram with buckets at `bounds` (seconds, increasing) and one for everything above.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one duration.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let index = self.bounds.partition_point(|bound| *bound < seconds);
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Relaxed);
        }
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The buckets, the sum and the count now. The count is the sum of the buckets, so the two always agree.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().map(|bucket| bucket.load(Relaxed)))
            .collect();
        HistogramSnapshot::new(buckets, self.sum_nanos.load(Relaxed) as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_on_a_bound_counts_in_that_bucket_and_the_rest_above() {
        let histogram = DurationHistogram::new(&[0.1, 1.0]);
        histogram.observe(Duration::from_millis(100));
        histogram.observe(Duration::from_millis(101));
        histogram.observe(Duration::from_secs(1));
        histogram.observe(Duration::from_secs(7));
        histogram.observe(Duration::ZERO);
        let snapshot = histogram.snapshot();
        assert_eq!(
            snapshot.buckets,
            vec![(0.1, 2), (1.0, 2), (f64::INFINITY, 1)]
        );
        assert_eq!(snapshot.count, 5);
        assert_eq!(snapshot.cumulative_at(1.0), 4);
        assert!((snapshot.sum_seconds - 8.201).abs() < 1e-9);
    }
}
