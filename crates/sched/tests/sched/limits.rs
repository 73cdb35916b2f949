//! The thread count: bounded by the memory budget, lowered by the pressure hook, and
//! bad configurations refused.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::ThreadId;
use std::time::Duration;

use memwarden_sched::{ParallelScheduler, PressureSource, SchedError};

/// The distinct threads that ran items of a call with chunks of one.
fn threads_used(s: &ParallelScheduler) -> HashSet<ThreadId> {
    let ids = s.schedule(
        |_| {
            // Enough work per item that every worker gets to claim some.
            let mut acc = 0u64;
            for i in 0..2_000u64 {
                acc = std::hint::black_box(acc ^ i);
            }
            std::thread::current().id()
        },
        &[(); 400],
    );
    ids.into_iter().collect()
}

#[test]
fn the_memory_budget_bounds_the_threads() {
    const MIB: u64 = 1 << 20;
    // (jobs asked, per-worker bytes, budget) -> jobs
    for (jobs, per_worker, budget, want) in [
        (8, 100 * MIB, 250 * MIB, 2),
        (8, 100 * MIB, 100 * MIB, 1),
        (8, 100 * MIB, 10_000 * MIB, 8),
        (3, 1, u64::MAX, 3),
    ] {
        let s = ParallelScheduler::builder()
            .jobs(jobs)
            .per_worker_bytes(per_worker)
            .memory_budget(budget)
            .chunk_size(1)
            .build()
            .expect("a budget that fits a worker");
        assert_eq!(
            s.jobs(),
            want,
            "{jobs} jobs of {per_worker} B in {budget} B"
        );
        assert_eq!(s.jobs_now(), want);
        assert!(threads_used(&s).len() <= want, "at most {want} threads ran");
    }
    // Without a budget the per-worker bytes bind nothing.
    let s = ParallelScheduler::builder()
        .jobs(5)
        .per_worker_bytes(MIB)
        .build()
        .expect("valid");
    assert_eq!(s.jobs(), 5);
}

#[test]
fn bad_configurations_are_refused() {
    let err = |b: memwarden_sched::SchedulerBuilder| b.build().expect_err("refused");
    assert_eq!(
        err(ParallelScheduler::builder().jobs(0)),
        SchedError::ZeroJobs
    );
    assert_eq!(
        err(ParallelScheduler::builder().chunk_size(0)),
        SchedError::ZeroChunkSize
    );
    assert_eq!(
        err(ParallelScheduler::builder().jobs(usize::MAX)),
        SchedError::TooManyJobs {
            jobs: usize::MAX,
            max: memwarden_sched::MAX_JOBS
        }
    );
    assert!(matches!(
        err(ParallelScheduler::builder().chunk_time(Duration::ZERO)),
        SchedError::ZeroChunkTime { .. }
    ));
    assert_eq!(
        err(ParallelScheduler::builder()
            .per_worker_bytes(1 << 20)
            .memory_budget(1 << 19)),
        SchedError::BudgetTooSmall {
            budget: 1 << 19,
            per_worker_bytes: 1 << 20
        }
    );
    assert_eq!(
        err(ParallelScheduler::builder().memory_budget(1 << 30)),
        SchedError::BudgetWithoutWorkerBytes { budget: 1 << 30 }
    );
    let message = err(ParallelScheduler::builder()
        .per_worker_bytes(300)
        .memory_budget(200))
    .to_string();
    assert!(
        message.contains("200") && message.contains("300"),
        "{message}"
    );
}

/// A pressure source the test turns by hand.
#[derive(Debug)]
struct Dial(AtomicU64);

impl Dial {
    fn set(&self, factor: f64) {
        self.0.store(factor.to_bits(), Ordering::Relaxed);
    }
}

impl PressureSource for Dial {
    fn jobs_factor(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

#[test]
fn pressure_lowers_the_workers_of_the_next_call() {
    let dial = Arc::new(Dial(AtomicU64::new(1.0f64.to_bits())));
    let s = ParallelScheduler::builder()
        .jobs(4)
        .chunk_size(1)
        .pressure_source(dial.clone())
        .build()
        .expect("valid");

    // (factor, workers allowed)
    for (factor, want) in [
        (1.0, 4),
        (0.5, 2),
        (0.25, 1),
        (0.0, 1),
        (f64::NAN, 4),
        (7.0, 4),
    ] {
        dial.set(factor);
        assert_eq!(s.jobs_now(), want, "factor {factor}");
        let used = threads_used(&s);
        assert!(
            used.len() <= want,
            "factor {factor}: {} threads",
            used.len()
        );
        assert_eq!(s.last_run().expect("ran").workers, want, "factor {factor}");
        assert_eq!(s.jobs(), 4, "the pool keeps its size");
    }

    // At critical pressure the call runs inline, on the caller's thread.
    dial.set(0.0);
    let used = threads_used(&s);
    assert_eq!(used, HashSet::from([std::thread::current().id()]));
}

#[test]
fn a_closure_is_a_pressure_source_and_can_be_attached_later() {
    let s = ParallelScheduler::builder()
        .jobs(6)
        .build()
        .expect("valid")
        .with_pressure(Arc::new(|| 0.5));
    assert_eq!(s.jobs_now(), 3);
    let s = ParallelScheduler::builder()
        .jobs(6)
        .pressure(|| 0.34)
        .build()
        .expect("valid");
    assert_eq!(s.jobs_now(), 2);
}
