//! memwarden-sched: a cache-aware, order-preserving parallel scheduler on rayon.
//!
//! Data-parallel stages of memwarden (Gramian Angular Field images, batched matrix
//! products, per-sample transforms) share one problem: the work is a slice of items,
//! the results must come back in the slice's order, the right chunk size depends on
//! what an item costs and on the CPU's caches, and the number of threads must respect a
//! memory budget, because every worker holds buffers of its own.
//!
//! - [`ParallelScheduler`] owns a rayon pool of [`jobs`](ParallelScheduler::jobs)
//!   threads and runs [`schedule`](ParallelScheduler::schedule) (per item, results in
//!   input order), [`schedule_chunks`](ParallelScheduler::schedule_chunks) (per chunk,
//!   for reductions), [`for_each_chunk_mut`](ParallelScheduler::for_each_chunk_mut) (in
//!   place), [`wrap`](ParallelScheduler::wrap) (a per-item function lifted to slices)
//!   and [`batched_matmul`](ParallelScheduler::batched_matmul). Configure it through
//!   [`SchedulerBuilder`]: `jobs`, `chunk_size`, `dynamic_balance`, `per_worker_bytes`,
//!   `memory_budget`, a [`PressureSource`].
//! - [`ScheduleExt`] puts the same calls on slices: `data.par_schedule(&sched, op)`.
//! - [`schedule`] and [`batched_matmul`] are the function forms, on a process-wide
//!   [`global`] scheduler.
//! - [`CacheInfo`] reads the cache sizes from sysfs, clamped to plausible ranges;
//!   [`available_jobs`] counts the CPUs this process may use.
//!
//! ```
//! use memwarden_sched::{ParallelScheduler, ScheduleExt};
//!
//! let sched = ParallelScheduler::builder()
//!     .jobs(4)
//!     .per_worker_bytes(64 << 20)
//!     .memory_budget(128 << 20) // room for two workers' buffers
//!     .build()?;
//! assert_eq!(sched.jobs(), 2);
//!
//! let samples: Vec<f32> = (0..100_000).map(|i| i as f32).collect();
//! let scaled = samples.par_schedule(&sched, |x| x * 0.5);
//! assert_eq!(scaled[99_999], 49_999.5); // in input order
//!
//! let run = sched.last_run().expect("one call ran");
//! println!("{} items: {} chunks of {} on {} workers", run.items, run.chunks, run.chunk, run.workers);
//! # Ok::<(), memwarden_sched::SchedError>(())
//! ```
//!
//! # Design: results go into their slots, workers claim ranges from one counter
//!
//! The Python original merged results in completion order, so its output order
//! depended on timing. Here a call first plans (a timed probe of the first few items on
//! the caller's thread gives the cost of an item, hence a first chunk of ~100 µs; or the
//! caches give a chunk size; or it is fixed), reserves the output vector, and lets
//! `jobs` workers claim ranges of items from one atomic counter. A worker writes item
//! `i`'s result straight into slot `i`, so order is a property of the layout and costs
//! no merge; and it times each range it runs and sizes its next claim to the cost it
//! measured, shrinking claims as the unclaimed rest runs out, so uneven items (a
//! triangular loop) still finish together. Claiming from a counter rather than
//! splitting recursively is also what lets a call use fewer workers than the pool has
//! threads when memory pressure asks for it. The only unsafe code is that slot writing
//! and the carving of disjoint `&mut` ranges, both in one internal module, with drop
//! guards so that a panic in user code drops exactly the results already produced.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod cache;
mod engine;
mod error;
mod ext;
mod matmul;
mod pressure;
mod scheduler;

use std::sync::OnceLock;

pub use cache::{CacheInfo, available_jobs};
pub use error::SchedError;
pub use ext::ScheduleExt;
pub use matmul::MatmulShape;
pub use pressure::PressureSource;
pub use scheduler::{MAX_JOBS, ParallelScheduler, RunReport, SchedulerBuilder};

/// The process-wide scheduler behind [`schedule`] and [`batched_matmul`]:
/// [`ParallelScheduler::new`]'s automatic configuration, built on first use and never
/// dropped (its threads live as long as the process).
pub fn global() -> &'static ParallelScheduler {
    static GLOBAL: OnceLock<ParallelScheduler> = OnceLock::new();
    GLOBAL.get_or_init(ParallelScheduler::new)
}

/// [`ParallelScheduler::schedule`] on the [`global`] scheduler: `op` over every item of
/// `data`, in parallel, results in input order.
///
/// ```
/// let lengths = memwarden_sched::schedule(|s: &&str| s.len(), &["one", "three"]);
/// assert_eq!(lengths, [3, 5]);
/// ```
pub fn schedule<T, R, F>(op: F, data: &[T]) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    global().schedule(op, data)
}

/// [`ParallelScheduler::batched_matmul`] on the [`global`] scheduler:
/// `out[i] = a[i] · b[i]`, `a` being `batch × m × k`, `b` `batch × k × n` (or one shared
/// `k × n`), `out` `batch × m × n`, all row-major.
///
/// ```
/// // Two 1 x 2 rows times one shared 2 x 1 column.
/// let mut out = [0.0; 2];
/// memwarden_sched::batched_matmul(&[1.0, 2.0, 3.0, 4.0], &[10.0, 1.0], &mut out, 2, 1, 2, 1)?;
/// assert_eq!(out, [12.0, 34.0]);
/// # Ok::<(), memwarden_sched::SchedError>(())
/// ```
pub fn batched_matmul(
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> Result<(), SchedError> {
    global().batched_matmul(MatmulShape { batch, m, k, n }, a, b, out)
}
