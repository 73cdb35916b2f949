//! [`ParallelScheduler`] and its [`SchedulerBuilder`]: the pool, the configuration,
//! and the calls that run work on them.

use std::fmt;
use std::mem;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use rayon::ThreadPool;

use crate::engine::{self, Plan, SharedMut, Slots, Tuning};
use crate::pressure::jobs_under;
use crate::{CacheInfo, PressureSource, SchedError, available_jobs};

/// The most threads a scheduler takes ([`SchedulerBuilder::jobs`] above it is
/// [`SchedError::TooManyJobs`]); far beyond any machine this runs on, low enough that
/// per-thread bookkeeping never overflows.
pub const MAX_JOBS: usize = 4096;

/// The default target cost of one calibrated chunk.
const DEFAULT_CHUNK_TIME: Duration = Duration::from_micros(100);

/// Builds a [`ParallelScheduler`]; every setting is optional.
///
/// ```
/// use memwarden_sched::{ParallelScheduler, SchedError};
///
/// let sched = ParallelScheduler::builder()
///     .jobs(8)
///     .per_worker_bytes(256 << 20)
///     .memory_budget(1 << 30) // four workers of 256 MiB fit
///     .build()?;
/// assert_eq!(sched.jobs(), 4);
///
/// let too_small = ParallelScheduler::builder().per_worker_bytes(2 << 20).memory_budget(1 << 20).build();
/// assert!(matches!(too_small, Err(SchedError::BudgetTooSmall { .. })));
/// # Ok::<(), SchedError>(())
/// ```
#[derive(Clone)]
pub struct SchedulerBuilder {
    jobs: Option<usize>,
    chunk_size: Option<usize>,
    dynamic_balance: bool,
    per_worker_bytes: u64,
    memory_budget: Option<u64>,
    chunk_time: Duration,
    cache: Option<CacheInfo>,
    pressure: Option<Arc<dyn PressureSource>>,
}

impl Default for SchedulerBuilder {
    fn default() -> Self {
        SchedulerBuilder {
            jobs: None,
            chunk_size: None,
            dynamic_balance: true,
            per_worker_bytes: 0,
            memory_budget: None,
            chunk_time: DEFAULT_CHUNK_TIME,
            cache: None,
            pressure: None,
        }
    }
}

impl fmt::Debug for SchedulerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerBuilder")
            .field("jobs", &self.jobs)
            .field("chunk_size", &self.chunk_size)
            .field("dynamic_balance", &self.dynamic_balance)
            .field("per_worker_bytes", &self.per_worker_bytes)
            .field("memory_budget", &self.memory_budget)
            .field("chunk_time", &self.chunk_time)
            .field("cache", &self.cache)
            .field("pressure", &self.pressure.is_some())
            .finish()
    }
}

impl SchedulerBuilder {
    /// Threads of the pool; default [`available_jobs`]. With 1 every call runs inline on
    /// the caller's thread and no pool is built. The memory budget may lower it.
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = Some(jobs);
        self
    }

    /// Items per chunk, fixed: turns calibration off. Default: chosen per call (see
    /// [`dynamic_balance`](Self::dynamic_balance)).
    pub fn chunk_size(mut self, items: usize) -> Self {
        self.chunk_size = Some(items);
        self
    }

    /// With `true` (the default) and no fixed chunk size, each call times its first
    /// items on the caller's thread and sizes the first chunks to cost about
    /// [`chunk_time`](Self::chunk_time) each (at least eight per worker, at most half an
    /// L2 of input); each worker then times its own chunks and resizes the next one to
    /// the cost it measured, smaller towards the end. Work that turns out to be tiny
    /// finishes inline. With `false`, every chunk has the size the caches give: about
    /// four per worker, between an L1d and half an L2 of input. Either way workers claim
    /// chunks one at a time as they finish the last.
    pub fn dynamic_balance(mut self, on: bool) -> Self {
        self.dynamic_balance = on;
        self
    }

    /// Bytes one worker needs while it runs (its buffers, its share of a batch):
    /// with a [`memory_budget`](Self::memory_budget), `jobs × per_worker_bytes` stays
    /// within the budget. Default 0 (not accounted).
    pub fn per_worker_bytes(mut self, bytes: u64) -> Self {
        self.per_worker_bytes = bytes;
        self
    }

    /// Bytes all workers together may use: the pool gets at most
    /// `budget / per_worker_bytes` threads. Needs `per_worker_bytes` and must cover at
    /// least one worker.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = Some(bytes);
        self
    }

    /// What a calibrated chunk should cost; default 100 µs (long enough that claiming
    /// a chunk is noise, short enough to balance well).
    pub fn chunk_time(mut self, time: Duration) -> Self {
        self.chunk_time = time;
        self
    }

    /// The caches to size chunks and matrix tiles from, instead of
    /// [`CacheInfo::detect`].
    pub fn cache(mut self, cache: CacheInfo) -> Self {
        self.cache = Some(cache);
        self
    }

    /// A source of memory pressure that lowers the workers of each call (see
    /// [`PressureSource`]); any `Fn() -> f64 + Send + Sync` closure will do.
    pub fn pressure(self, source: impl PressureSource + 'static) -> Self {
        self.pressure_source(Arc::new(source))
    }

    /// [`pressure`](Self::pressure) with a source already shared.
    pub fn pressure_source(mut self, source: Arc<dyn PressureSource>) -> Self {
        self.pressure = Some(source);
        self
    }

    /// Checks the settings and resolves the thread count. The pool itself starts on the
    /// first call that runs in parallel.
    pub fn build(self) -> Result<ParallelScheduler, SchedError> {
        match self.jobs {
            Some(0) => return Err(SchedError::ZeroJobs),
            Some(jobs) if jobs > MAX_JOBS => {
                return Err(SchedError::TooManyJobs {
                    jobs,
                    max: MAX_JOBS,
                });
            }
            _ => {}
        }
        if self.chunk_size == Some(0) {
            return Err(SchedError::ZeroChunkSize);
        }
        if self.chunk_time.is_zero() {
            return Err(SchedError::ZeroChunkTime {
                chunk_time: self.chunk_time,
            });
        }
        let wanted = self.jobs.unwrap_or_else(available_jobs);
        let jobs = match self.memory_budget {
            None => wanted,
            Some(budget) => {
                let per_worker_bytes = self.per_worker_bytes;
                if per_worker_bytes == 0 {
                    return Err(SchedError::BudgetWithoutWorkerBytes { budget });
                }
                if budget < per_worker_bytes {
                    return Err(SchedError::BudgetTooSmall {
                        budget,
                        per_worker_bytes,
                    });
                }
                let fit = usize::try_from(budget / per_worker_bytes).unwrap_or(usize::MAX);
                if fit < wanted {
                    log::info!(
                        "memory budget {budget} B fits {fit} workers of {per_worker_bytes} B: \
                         {fit} threads instead of {wanted}"
                    );
                }
                wanted.min(fit)
            }
        };
        Ok(ParallelScheduler {
            jobs,
            chunk_size: self.chunk_size,
            dynamic_balance: self.dynamic_balance,
            per_worker_bytes: self.per_worker_bytes,
            memory_budget: self.memory_budget,
            chunk_time: self.chunk_time,
            cache: self.cache.unwrap_or_else(CacheInfo::detect),
            pressure: self.pressure,
            pool: OnceLock::new(),
            last_run: Mutex::new(None),
        })
    }
}

/// What the last call of a scheduler did: how it cut its input and how many workers
/// it used. From [`ParallelScheduler::last_run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunReport {
    /// Items (or, for [`for_each_chunk_mut`](ParallelScheduler::for_each_chunk_mut),
    /// elements) in the call's input.
    pub items: usize,
    /// Items the calibration probe ran on the caller's thread before the rest was cut.
    pub probed: usize,
    /// Items in the first chunk after the probe. With calibration, workers then resize
    /// their chunks to the cost they measure; otherwise every chunk but the last holds
    /// this many.
    pub chunk: usize,
    /// Chunks that ran after the probe.
    pub chunks: usize,
    /// Workers that ran the chunks; 1 means the call ran inline on the caller's thread.
    pub workers: usize,
    /// The per-item cost calibration measured, when it ran.
    pub item_cost: Option<Duration>,
}

impl RunReport {
    /// Whether the call ran entirely on the caller's thread.
    pub fn ran_inline(&self) -> bool {
        self.workers <= 1
    }
}

/// The pool's threads, spawned by us so that dropping the scheduler can join them.
struct Pool {
    pool: ThreadPool,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start(jobs: usize) -> Result<Pool, rayon::ThreadPoolBuildError> {
        let spawned = Arc::new(Mutex::new(Vec::with_capacity(jobs)));
        let sink = Arc::clone(&spawned);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs)
            .thread_name(|i| format!("memwarden-sched-{i}"))
            .spawn_handler(move |thread| {
                let mut builder = std::thread::Builder::new();
                if let Some(name) = thread.name() {
                    builder = builder.name(name.to_owned());
                }
                if let Some(size) = thread.stack_size() {
                    builder = builder.stack_size(size);
                }
                let handle = builder.spawn(|| thread.run())?;
                sink.lock().push(handle);
                Ok(())
            })
            .build()?;
        let threads = mem::take(&mut *spawned.lock());
        Ok(Pool { pool, threads })
    }
}

/// A cache-aware, order-preserving parallel scheduler with its own rayon pool.
///
/// - [`schedule`](Self::schedule) maps every item through `op` and returns the results
///   **in input order**, written straight into their slots.
/// - [`schedule_chunks`](Self::schedule_chunks) maps whole chunks (one result per
///   chunk, in order): the form for reductions.
/// - [`for_each_chunk_mut`](Self::for_each_chunk_mut) works in place on a mutable
///   slice, each element in exactly one chunk.
/// - [`wrap`](Self::wrap) turns a per-item function into one over slices (what the
///   Python original did with a decorator).
/// - [`batched_matmul`](Self::batched_matmul) multiplies a batch of matrices.
///
/// **Threads.** The pool has [`jobs`](Self::jobs) rayon threads, started on the first
/// call that runs in parallel and joined when the scheduler is dropped. A call that ends
/// up with one worker (`jobs == 1`, pressure, a tiny input) runs inline on the caller's
/// thread and starts nothing. Each call uses `max(1, floor(jobs × factor))` workers
/// where `factor` comes from the [`PressureSource`], if any.
///
/// **Chunks.** See [`SchedulerBuilder::dynamic_balance`]: calibrated (~100 µs per chunk,
/// resized by each worker as it measures), or from the cache sizes alone, or fixed.
/// Workers claim ranges of items one at a time from a shared counter, so a slow worker
/// simply claims fewer.
///
/// **Panics.** A panic in `op` stops further chunks from starting and is re-raised on
/// the caller's thread once the running chunks finished; the results already produced
/// are dropped, and the scheduler stays usable.
pub struct ParallelScheduler {
    jobs: usize,
    chunk_size: Option<usize>,
    dynamic_balance: bool,
    per_worker_bytes: u64,
    memory_budget: Option<u64>,
    chunk_time: Duration,
    cache: CacheInfo,
    pressure: Option<Arc<dyn PressureSource>>,
    /// Started on first parallel use; `None` inside when the threads could not start.
    pool: OnceLock<Option<Pool>>,
    last_run: Mutex<Option<RunReport>>,
}

impl fmt::Debug for ParallelScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParallelScheduler")
            .field("jobs", &self.jobs)
            .field("chunk_size", &self.chunk_size)
            .field("dynamic_balance", &self.dynamic_balance)
            .field("per_worker_bytes", &self.per_worker_bytes)
            .field("memory_budget", &self.memory_budget)
            .field("chunk_time", &self.chunk_time)
            .field("cache", &self.cache)
            .field("pressure", &self.pressure.is_some())
            .field("pool_started", &matches!(self.pool.get(), Some(Some(_))))
            .finish()
    }
}

impl Default for ParallelScheduler {
    fn default() -> Self {
        ParallelScheduler::new()
    }
}

impl Drop for ParallelScheduler {
    fn drop(&mut self) {
        let Some(Some(Pool { pool, threads })) = self.pool.take() else {
            return;
        };
        // A pool thread dropping its own scheduler cannot join itself: let the threads
        // exit on their own then.
        let inside = pool.current_thread_index().is_some();
        drop(pool);
        if inside {
            return;
        }
        for thread in threads {
            if thread.join().is_err() {
                log::warn!("a scheduler thread panicked outside any job");
            }
        }
    }
}

impl ParallelScheduler {
    /// The automatic configuration: [`available_jobs`] threads, calibrated chunks,
    /// detected caches, no budget, no pressure source.
    pub fn new() -> ParallelScheduler {
        SchedulerBuilder::default()
            .build()
            .expect("the default configuration sets nothing that can be invalid")
    }

    /// A builder for every other configuration.
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder::default()
    }

    /// This scheduler with `source` as its pressure source (replacing any other).
    pub fn with_pressure(mut self, source: Arc<dyn PressureSource>) -> Self {
        self.pressure = Some(source);
        self
    }

    /// Threads of the pool: the configured count, bounded by the memory budget.
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    /// Workers the next call would use: [`jobs`](Self::jobs) lowered by the pressure
    /// source's factor.
    pub fn jobs_now(&self) -> usize {
        match &self.pressure {
            Some(source) => jobs_under(self.jobs, source.jobs_factor()),
            None => self.jobs,
        }
    }

    /// The fixed chunk size, if one was configured.
    pub fn chunk_size(&self) -> Option<usize> {
        self.chunk_size
    }

    /// Whether chunk sizes are calibrated per call.
    pub fn dynamic_balance(&self) -> bool {
        self.dynamic_balance
    }

    /// Bytes one worker is accounted at.
    pub fn per_worker_bytes(&self) -> u64 {
        self.per_worker_bytes
    }

    /// The memory budget bounding the threads, if any.
    pub fn memory_budget(&self) -> Option<u64> {
        self.memory_budget
    }

    /// What a calibrated chunk aims to cost.
    pub fn chunk_time(&self) -> Duration {
        self.chunk_time
    }

    /// The caches chunks and tiles are sized from.
    pub fn cache(&self) -> CacheInfo {
        self.cache
    }

    /// How the most recent call (from any thread) cut its input; `None` before the
    /// first call.
    pub fn last_run(&self) -> Option<RunReport> {
        *self.last_run.lock()
    }

    /// Maps every item of `data` through `op`, in parallel, and returns the results in
    /// the order of `data`.
    ///
    /// ```
    /// let sched = memwarden_sched::ParallelScheduler::new();
    /// let squares = sched.schedule(|x: &u64| x * x, &[1, 2, 3, 4]);
    /// assert_eq!(squares, [1, 4, 9, 16]);
    /// ```
    pub fn schedule<T, R, F>(&self, op: F, data: &[T]) -> Vec<R>
    where
        T: Sync,
        R: Send,
        F: Fn(&T) -> R + Sync,
    {
        let mut out = Vec::with_capacity(data.len());
        let plan = self.plan(data.len(), size_of::<T>(), None, |r| {
            out.extend(data[r].iter().map(&op));
        });
        let Some(pool) = self.pool_for(&plan) else {
            out.extend(data[plan.start..].iter().map(&op));
            self.record(&plan, plan.chunks);
            return out;
        };
        let slots = Slots::new(out, plan.items);
        let ran = engine::run_ranges(pool, &plan, |range| {
            // SAFETY: `run_ranges` hands out disjoint ranges of `plan.start..items`,
            // which is `slots`' `base..end`.
            unsafe { slots.fill(range.clone(), data[range].iter().map(&op)) };
        });
        self.record(&plan, ran);
        slots.finish()
    }

    /// Maps chunks of `data` through `op(first_index, chunk)`, in parallel, and returns
    /// one result per chunk, in order; `first_index` is the index of `chunk[0]` in
    /// `data`. Chunk boundaries are the scheduler's choice (unless a chunk size is
    /// configured), so `op` should not depend on them: this is the form for reductions.
    ///
    /// ```
    /// let sched = memwarden_sched::ParallelScheduler::new();
    /// let data: Vec<u64> = (1..=1000).collect();
    /// let partial = sched.schedule_chunks(|_, chunk: &[u64]| chunk.iter().sum::<u64>(), &data);
    /// assert_eq!(partial.iter().sum::<u64>(), 500_500);
    /// ```
    pub fn schedule_chunks<T, R, F>(&self, op: F, data: &[T]) -> Vec<R>
    where
        T: Sync,
        R: Send,
        F: Fn(usize, &[T]) -> R + Sync,
    {
        let mut out = Vec::new();
        let plan = self.plan(data.len(), size_of::<T>(), None, |r| {
            out.push(op(r.start, &data[r]));
        });
        let Some(pool) = self.pool_for(&plan) else {
            out.extend((0..plan.chunks).map(|c| {
                let r = plan.range(c);
                op(r.start, &data[r])
            }));
            self.record(&plan, plan.chunks);
            return out;
        };
        // One result per chunk, tagged with where the chunk starts: chunks are few
        // (each costs ~100 µs), so sorting them afterwards costs nothing.
        let results = Mutex::new(Vec::with_capacity(plan.chunks * 2));
        let ran = engine::run_ranges(pool, &plan, |range| {
            let result = op(range.start, &data[range.clone()]);
            results.lock().push((range.start, result));
        });
        self.record(&plan, ran);
        let mut results = results.into_inner();
        results.sort_unstable_by_key(|&(first, _)| first);
        out.extend(results.into_iter().map(|(_, result)| result));
        out
    }

    /// Runs `op(first_index, chunk)` over disjoint chunks covering `data`, in parallel;
    /// every element is in exactly one chunk, and `first_index` is the index of
    /// `chunk[0]` in `data`. Chunk lengths vary (calibration runs the first chunks
    /// small) unless a chunk size is configured.
    ///
    /// ```
    /// let sched = memwarden_sched::ParallelScheduler::new();
    /// let mut data = vec![0usize; 10_000];
    /// sched.for_each_chunk_mut(&mut data, |first, chunk| {
    ///     for (i, x) in chunk.iter_mut().enumerate() {
    ///         *x = first + i;
    ///     }
    /// });
    /// assert!(data.iter().enumerate().all(|(i, &x)| x == i));
    /// ```
    pub fn for_each_chunk_mut<T, F>(&self, data: &mut [T], op: F)
    where
        T: Send,
        F: Fn(usize, &mut [T]) + Sync,
    {
        self.for_each_chunk_mut_by(data, None, op);
    }

    /// [`for_each_chunk_mut`](Self::for_each_chunk_mut) with a chunk size fixed for
    /// this call (`None`: the configured behaviour).
    pub(crate) fn for_each_chunk_mut_by<T, F>(&self, data: &mut [T], fixed: Option<usize>, op: F)
    where
        T: Send,
        F: Fn(usize, &mut [T]) + Sync,
    {
        let plan = self.plan(data.len(), size_of::<T>(), fixed, |r| {
            op(r.start, &mut data[r]);
        });
        let Some(pool) = self.pool_for(&plan) else {
            for c in 0..plan.chunks {
                let r = plan.range(c);
                op(r.start, &mut data[r]);
            }
            self.record(&plan, plan.chunks);
            return;
        };
        let shared = SharedMut::new(data);
        let ran = engine::run_ranges(pool, &plan, |range| {
            let first = range.start;
            // SAFETY: `run_ranges` hands out disjoint ranges, each once.
            let chunk = unsafe { shared.chunk(range) };
            op(first, chunk);
        });
        self.record(&plan, ran);
    }

    /// `op` lifted to slices: the returned closure maps a whole slice through `op` on
    /// this scheduler, in order. The Python original's `@parallelize` decorator.
    ///
    /// ```
    /// let sched = memwarden_sched::ParallelScheduler::new();
    /// let normalise = sched.wrap(|x: &f64| x / 10.0);
    /// assert_eq!(normalise(&[10.0, 20.0]), [1.0, 2.0]);
    /// ```
    pub fn wrap<T, R, F>(&self, op: F) -> impl Fn(&[T]) -> Vec<R>
    where
        T: Sync,
        R: Send,
        F: Fn(&T) -> R + Sync,
    {
        move |data: &[T]| self.schedule(&op, data)
    }

    /// The workers this call may use and how its input is cut; runs the calibration
    /// probe through `probe`.
    fn plan<P: FnMut(std::ops::Range<usize>)>(
        &self,
        items: usize,
        elem_bytes: usize,
        fixed: Option<usize>,
        probe: P,
    ) -> Plan {
        let tuning = Tuning {
            jobs: self.jobs_now(),
            fixed_chunk: fixed.or(self.chunk_size),
            dynamic: self.dynamic_balance,
            chunk_time: self.chunk_time,
            cache: self.cache,
        };
        engine::plan(&tuning, items, elem_bytes, probe)
    }

    /// Keeps how a call ran for [`last_run`](Self::last_run).
    fn record(&self, plan: &Plan, chunks: usize) {
        *self.last_run.lock() = Some(RunReport {
            items: plan.items,
            probed: plan.start,
            chunk: plan.chunk,
            chunks,
            workers: plan.workers,
            item_cost: plan.item_cost,
        });
    }

    /// The pool to run `plan` on, or `None` to run it inline: one worker, or the
    /// threads could not be started.
    fn pool_for(&self, plan: &Plan) -> Option<&ThreadPool> {
        if plan.workers <= 1 {
            return None;
        }
        let pool = self.pool.get_or_init(|| match Pool::start(self.jobs) {
            Ok(pool) => Some(pool),
            Err(e) => {
                log::warn!(
                    "could not start {} scheduler threads ({e}): running inline",
                    self.jobs
                );
                None
            }
        });
        pool.as_ref().map(|p| &p.pool)
    }
}
