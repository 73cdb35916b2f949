//! [`PressureSource`]: how something outside the scheduler (memwarden's governor, a
//! test) lowers the threads the next call may use.

/// Tells a scheduler what share of its threads the next call may use.
///
/// The scheduler asks once at the start of every call (`schedule`,
/// `for_each_chunk_mut`, ...) and uses `max(1, floor(jobs × factor))` workers for that
/// call, where `jobs` is its configured (and budget-bounded) thread count:
///
/// | `jobs_factor()` | meaning | with `jobs = 8` |
/// |---|---|---|
/// | `1.0` (or more) | no pressure | 8 workers |
/// | `0.5` | high pressure: half | 4 workers |
/// | `0.0` (or less) | critical: one | 1 worker, the caller's thread |
/// | NaN | ignored, as `1.0` | 8 workers |
///
/// Fewer workers means fewer per-worker buffers live at once, which is the point: under
/// memory pressure a parallel stage should not multiply its footprint by the core
/// count. The pool keeps its threads; the surplus ones simply get no work.
///
/// The call must be cheap (it runs on every scheduling call) and must not block on the
/// scheduler itself. Any `Fn() -> f64 + Send + Sync` closure is a source:
///
/// ```
/// use memwarden_sched::ParallelScheduler;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// let factor = Arc::new(AtomicU64::new(1.0f64.to_bits()));
/// let seen = Arc::clone(&factor);
/// let sched = ParallelScheduler::builder()
///     .jobs(4)
///     .pressure(move || f64::from_bits(seen.load(Ordering::Relaxed)))
///     .build()?;
/// assert_eq!(sched.jobs_now(), 4);
/// factor.store(0.5f64.to_bits(), Ordering::Relaxed);
/// assert_eq!(sched.jobs_now(), 2);
/// factor.store(0.0f64.to_bits(), Ordering::Relaxed);
/// assert_eq!(sched.jobs_now(), 1);
/// # Ok::<(), memwarden_sched::SchedError>(())
/// ```
pub trait PressureSource: Send + Sync {
    /// The share of the configured threads the next call may use, in `[0, 1]`: `1.0`
    /// without pressure, `0.0` at critical pressure. Values outside are clamped; NaN
    /// counts as `1.0`.
    fn jobs_factor(&self) -> f64;
}

impl<F> PressureSource for F
where
    F: Fn() -> f64 + Send + Sync,
{
    fn jobs_factor(&self) -> f64 {
        self()
    }
}

/// The workers a call may use out of `jobs` at `factor` (see [`PressureSource`]).
pub(crate) fn jobs_under(jobs: usize, factor: f64) -> usize {
    if factor.is_nan() || factor >= 1.0 {
        return jobs;
    }
    let factor = factor.max(0.0);
    // Truncation is the intent: under pressure, round the thread count down.
    let scaled = (jobs as f64 * factor).floor() as usize;
    scaled.clamp(1, jobs)
}

#[cfg(test)]
mod tests {
    use super::jobs_under;

    #[test]
    fn factors_map_to_worker_counts() {
        for (jobs, factor, want) in [
            (8, 1.0, 8),
            (8, 2.0, 8),
            (8, 0.5, 4),
            (8, 0.3, 2),
            (8, 0.0, 1),
            (8, -1.0, 1),
            (8, f64::NAN, 8),
            (1, 0.5, 1),
            (3, 0.5, 1),
            (3, 0.99, 2),
        ] {
            assert_eq!(jobs_under(jobs, factor), want, "{jobs} x {factor}");
        }
    }
}
