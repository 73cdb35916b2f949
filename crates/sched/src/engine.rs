//! The machinery under every call: planning a call's chunks (calibrating on a probe
//! when asked), handing ranges of items out from an atomic counter to the pool's
//! workers (who resize their chunks as they measure them), and writing results straight
//! into their output slots.

use std::marker::PhantomData;
use std::mem;
use std::ops::Range;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rayon::ThreadPool;

use crate::CacheInfo;

/// Chunks per worker a calibrated plan aims for at least, so that a worker that falls
/// behind (a slow core, a neighbour process) leaves little at the end.
const CHUNKS_PER_WORKER_TIMED: usize = 8;
/// Chunks per worker a cache-sized plan aims for.
const CHUNKS_PER_WORKER_STATIC: usize = 4;
/// A probe step that took `chunk_time / PROBE_FRACTION` (10 µs by default) ends the
/// calibration: long enough to time reliably, short enough that the serial probe is
/// noise next to any call worth running in parallel.
const PROBE_FRACTION: u32 = 10;
/// Below this per-item estimate the timer's own resolution dominates: assume it.
const MIN_ITEM_COST: Duration = Duration::from_nanos(1);

/// What a call is planned from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Workers this call may use (configured, budget-bounded, pressure-lowered).
    pub(crate) jobs: usize,
    /// A chunk size fixed by the configuration or the caller.
    pub(crate) fixed_chunk: Option<usize>,
    /// Calibrate the chunk size on a probe.
    pub(crate) dynamic: bool,
    /// What one chunk should cost when calibrated.
    pub(crate) chunk_time: Duration,
    /// The caches chunk sizes are bounded by.
    pub(crate) cache: CacheInfo,
}

/// How one call is cut: items `[0, start)` already ran on the caller's thread (the
/// calibration probe); the rest goes to `workers` workers in chunks of `chunk` items
/// (`chunks` of them, the last one shorter), or, with `adapt`, in chunks that start
/// at `chunk` items and are resized by each worker as it goes. `workers <= 1` means:
/// run the rest inline, in chunks of `chunk`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) items: usize,
    pub(crate) start: usize,
    pub(crate) chunk: usize,
    pub(crate) chunks: usize,
    pub(crate) workers: usize,
    pub(crate) item_cost: Option<Duration>,
    /// How workers resize their chunks; `None`: every chunk holds `chunk` items.
    pub(crate) adapt: Option<Adapt>,
}

impl Plan {
    fn new(
        items: usize,
        start: usize,
        chunk: usize,
        workers: usize,
        item_cost: Option<Duration>,
    ) -> Plan {
        let chunk = chunk.max(1);
        let chunks = (items - start).div_ceil(chunk);
        Plan {
            items,
            start,
            chunk,
            chunks,
            workers: workers.min(chunks).max(1),
            item_cost,
            adapt: None,
        }
    }

    /// The items of chunk `c`.
    pub(crate) fn range(&self, c: usize) -> Range<usize> {
        let first = self.start + c * self.chunk;
        first..(first + self.chunk).min(self.items)
    }
}

/// Plans a call over `items` items of `elem_bytes` bytes each. With calibration on,
/// `probe` runs the first items on the caller's thread (in growing, contiguous ranges
/// from 0) and the plan starts after them.
pub(crate) fn plan<P: FnMut(Range<usize>)>(
    t: &Tuning,
    items: usize,
    elem_bytes: usize,
    mut probe: P,
) -> Plan {
    if items == 0 {
        return Plan::new(0, 0, 1, 1, None);
    }
    if t.jobs <= 1 {
        return Plan::new(items, 0, t.fixed_chunk.unwrap_or(items), 1, None);
    }
    if let Some(chunk) = t.fixed_chunk {
        return Plan::new(items, 0, chunk, t.jobs, None);
    }
    if !t.dynamic {
        let chunk = static_chunk(items, t.jobs, elem_bytes, &t.cache);
        return Plan::new(items, 0, chunk, t.jobs, None);
    }
    let (probed, cost) = calibrate(items, t.jobs, t.chunk_time / PROBE_FRACTION, &mut probe);
    let remaining = items - probed;
    // Waking the pool costs tens of microseconds: less than half a chunk of work left
    // is cheaper to finish here.
    let remaining_cost = cost.as_secs_f64() * remaining as f64;
    if remaining_cost < t.chunk_time.as_secs_f64() / 2.0 {
        return Plan::new(items, probed, remaining, 1, Some(cost));
    }
    let chunk = timed_chunk(remaining, t.jobs, elem_bytes, &t.cache, cost, t.chunk_time);
    Plan {
        adapt: Some(Adapt {
            chunk_time: t.chunk_time,
            max_chunk: items_in(t.cache.l2 / 2, elem_bytes),
        }),
        ..Plan::new(items, probed, chunk, t.jobs, Some(cost))
    }
}

/// Items of `elem_bytes` that fit in `bytes` (at least one).
fn items_in(bytes: usize, elem_bytes: usize) -> usize {
    (bytes / elem_bytes.max(1)).max(1)
}

/// The chunk size without calibration: a balance share of the input (four chunks per
/// worker), but at least an L1d's worth (so a claim is amortised) and at most half an
/// L2 (so a chunk's input is still cached while it is worked on), and never so large
/// that a worker is left without a chunk.
pub(crate) fn static_chunk(
    items: usize,
    jobs: usize,
    elem_bytes: usize,
    cache: &CacheInfo,
) -> usize {
    let lo = items_in(cache.l1d, elem_bytes);
    let hi = items_in(cache.l2 / 2, elem_bytes).max(lo);
    let balance = items.div_ceil(jobs * CHUNKS_PER_WORKER_STATIC);
    balance.clamp(lo, hi).min(items.div_ceil(jobs)).max(1)
}

/// The chunk size from a per-item cost: `chunk_time` worth of items, but at most half
/// an L2 of input and at most a share giving every worker eight chunks.
pub(crate) fn timed_chunk(
    remaining: usize,
    jobs: usize,
    elem_bytes: usize,
    cache: &CacheInfo,
    item_cost: Duration,
    chunk_time: Duration,
) -> usize {
    let per_item = item_cost.max(MIN_ITEM_COST).as_nanos();
    let by_time = usize::try_from(chunk_time.as_nanos().div_ceil(per_item)).unwrap_or(usize::MAX);
    let by_balance = remaining.div_ceil(jobs * CHUNKS_PER_WORKER_TIMED);
    let by_cache = items_in(cache.l2 / 2, elem_bytes);
    by_time.min(by_balance).min(by_cache).max(1)
}

/// Runs `probe` over growing ranges `[0, 1)`, `[1, 3)`, `[3, 7)`, ... until one range
/// took at least `target` or the probe reached its cap (an eighth of one worker's
/// share); returns the items probed and the estimated cost of one item (from the
/// ranges after the first, whose single item pays for cold caches).
fn calibrate<P: FnMut(Range<usize>)>(
    items: usize,
    jobs: usize,
    target: Duration,
    probe: &mut P,
) -> (usize, Duration) {
    let cap = (items / (jobs * CHUNKS_PER_WORKER_TIMED)).max(1);
    let (mut done, mut step) = (0, 1);
    let mut first = Duration::ZERO;
    let (mut warm, mut warm_items) = (Duration::ZERO, 0usize);
    while done < cap {
        let len = step.min(cap - done);
        let started = Instant::now();
        probe(done..done + len);
        let took = started.elapsed();
        if done == 0 {
            first = took;
        } else {
            warm += took;
            warm_items += len;
        }
        done += len;
        step *= 2;
        if took >= target {
            break;
        }
    }
    let cost = if warm_items > 0 {
        Duration::from_secs_f64(warm.as_secs_f64() / warm_items as f64)
    } else {
        first
    };
    (done, cost.max(MIN_ITEM_COST))
}

/// How a worker resizes its chunks as it goes, when calibration is on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Adapt {
    /// What one chunk should cost.
    pub(crate) chunk_time: Duration,
    /// The most items a chunk may hold (half an L2 of input).
    pub(crate) max_chunk: usize,
}

impl Adapt {
    /// The next chunk's length, after a chunk of `done` items took `took`: `chunk_time`
    /// worth at the cost just measured, growing at most twofold per step (one fast
    /// chunk is not proof), at most `max_chunk`, and at most half of one worker's share
    /// of what is still unclaimed, so chunks shrink towards the end and the workers
    /// finish together even when item costs drift (a triangular loop, say).
    pub(crate) fn next_len(
        &self,
        current: usize,
        done: usize,
        took: Duration,
        unclaimed: usize,
        workers: usize,
    ) -> usize {
        let per_item = (took.as_nanos() / done.max(1) as u128).max(MIN_ITEM_COST.as_nanos());
        let ideal = usize::try_from(self.chunk_time.as_nanos() / per_item).unwrap_or(usize::MAX);
        let guided = unclaimed.div_ceil(2 * workers.max(1));
        ideal
            .min(current.saturating_mul(2))
            .min(self.max_chunk)
            .min(guided)
            .max(1)
    }
}

/// Runs `body(range)` over ranges that tile `plan.start..plan.items`, on
/// `plan.workers` of `pool`'s threads. Each worker claims its next range from a shared
/// item counter, `plan.chunk` items at first and then, with `plan.adapt`, as many as
/// its last chunk's timing says. Returns how many ranges ran. A panic in `body` stops
/// further claims and is re-raised here once the running ranges finished.
pub(crate) fn run_ranges<B: Fn(Range<usize>) + Sync>(
    pool: &ThreadPool,
    plan: &Plan,
    body: B,
) -> usize {
    let next = AtomicUsize::new(plan.start);
    let ran = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || {
        let mut len = plan.chunk;
        while !failed.load(Ordering::Relaxed) {
            let Ok(first) = next.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < plan.items).then(|| n.saturating_add(len))
            }) else {
                break;
            };
            let range = first..first.saturating_add(len).min(plan.items);
            let items = range.len();
            let started = plan.adapt.map(|_| Instant::now());
            let guard = FlagOnUnwind(&failed);
            body(range);
            mem::forget(guard);
            ran.fetch_add(1, Ordering::Relaxed);
            if let (Some(adapt), Some(started)) = (plan.adapt, started) {
                let unclaimed = plan.items.saturating_sub(next.load(Ordering::Relaxed));
                len = adapt.next_len(len, items, started.elapsed(), unclaimed, plan.workers);
            }
        }
    };
    // The scope's own closure runs on a pool thread and works too: `workers` workers in
    // all, however many threads the pool has.
    pool.scope(|s| {
        for _ in 1..plan.workers {
            s.spawn(|_| work());
        }
        work();
    });
    ran.into_inner()
}

/// Sets its flag when dropped: forgotten on success, so it fires only while unwinding.
struct FlagOnUnwind<'a>(&'a AtomicBool);

impl Drop for FlagOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// An output vector whose tail is filled range by range, from several threads, in
/// place: the result of item `i` goes to slot `i`, so results are in input order
/// without any merge.
///
/// `buf[..base]` holds results written before (the probe's); slots `base..end` are
/// filled through [`Slots::fill`]. Dropped early (a panic), it drops exactly the results
/// written: those of finished ranges here, those of a range cut short by its own guard
/// in `fill`.
pub(crate) struct Slots<R> {
    buf: Vec<R>,
    base: usize,
    end: usize,
    ptr: *mut R,
    written: AtomicUsize,
    /// Ranges filled, kept only when `R` has drop glue (to drop them after a panic).
    filled: Mutex<Vec<Range<usize>>>,
}

// SAFETY: workers share a `&Slots` only to call `fill`, whose contract gives each slot
// to one call; `filled` is behind a mutex; results (`R: Send`) cross to the caller's
// thread when `finish` hands the vector over, after the pool's scope joined every
// worker.
unsafe impl<R: Send> Sync for Slots<R> {}

impl<R> Slots<R> {
    /// Slots up to `end`, after the `buf.len()` results already in `buf`.
    pub(crate) fn new(mut buf: Vec<R>, end: usize) -> Self {
        let base = buf.len();
        buf.reserve_exact(end - base);
        let ptr = buf.as_mut_ptr();
        Slots {
            buf,
            base,
            end,
            ptr,
            written: AtomicUsize::new(0),
            filled: Mutex::new(Vec::new()),
        }
    }

    /// Writes the results of the items in `range`, in order. `results` must yield at
    /// least `range.len()` items (it panics otherwise, dropping what it wrote).
    ///
    /// # Safety
    ///
    /// `range` lies in `base..end` (checked) and overlaps no range of another `fill`.
    pub(crate) unsafe fn fill(&self, range: Range<usize>, results: impl Iterator<Item = R>) {
        assert!(
            self.base <= range.start && range.start <= range.end && range.end <= self.end,
            "slots {range:?} out of {}..{}",
            self.base,
            self.end
        );
        // SAFETY: `range.start <= end <= capacity` (reserved in `new`): in bounds.
        let first = unsafe { self.ptr.add(range.start) };
        let mut partial = Partial { first, written: 0 };
        for result in results.take(range.len()) {
            // SAFETY: `written < range.len()`: the slot is in this range, inside the
            // capacity, not yet initialised, and no other call writes it (the contract).
            unsafe { first.add(partial.written).write(result) };
            partial.written += 1;
        }
        assert_eq!(
            partial.written,
            range.len(),
            "a range produced fewer results than it has items"
        );
        mem::forget(partial);
        if mem::needs_drop::<R>() {
            self.filled.lock().push(range.clone());
        }
        self.written.fetch_add(range.len(), Ordering::Release);
    }

    /// The whole vector, once every slot was filled.
    pub(crate) fn finish(mut self) -> Vec<R> {
        assert_eq!(
            self.written.load(Ordering::Acquire),
            self.end - self.base,
            "every slot is filled before the results are handed over"
        );
        let mut buf = mem::take(&mut self.buf);
        // SAFETY: `buf[..base]` was initialised before; the disjoint ranges `fill` wrote
        // add up to `end - base` slots inside `base..end`, so they cover it all.
        unsafe { buf.set_len(self.end) };
        // Nothing is left for `Drop` to drop: the results now belong to `buf`.
        self.filled.get_mut().clear();
        buf
    }
}

impl<R> Drop for Slots<R> {
    fn drop(&mut self) {
        for range in self.filled.get_mut().drain(..) {
            // SAFETY: `range` was filled completely (it is recorded only then), nothing
            // else owns its results (`buf.len()` is still `base`), and each recorded
            // range is dropped once.
            unsafe {
                ptr::drop_in_place(ptr::slice_from_raw_parts_mut(
                    self.ptr.add(range.start),
                    range.len(),
                ));
            }
        }
    }
}

/// The results a range wrote so far; drops them if the range does not finish.
struct Partial<R> {
    first: *mut R,
    written: usize,
}

impl<R> Drop for Partial<R> {
    fn drop(&mut self) {
        // SAFETY: the first `written` slots from `first` were initialised by `fill` and
        // are not recorded as filled, so nothing else drops them.
        unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.first, self.written)) };
    }
}

/// A mutable slice several workers carve disjoint chunks from.
pub(crate) struct SharedMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: it hands out `&mut [T]` to disjoint ranges only (the contract of `chunk`), so
// sharing it moves `T`s' exclusive access between threads, which `T: Send` allows.
unsafe impl<T: Send> Sync for SharedMut<'_, T> {}

impl<'a, T> SharedMut<'a, T> {
    pub(crate) fn new(slice: &'a mut [T]) -> Self {
        SharedMut {
            ptr: slice.as_mut_ptr(),
            len: slice.len(),
            _borrow: PhantomData,
        }
    }

    /// The elements in `range`.
    ///
    /// # Safety
    ///
    /// No two calls may hand out overlapping ranges while the slices live.
    #[allow(clippy::mut_from_ref)] // Disjointness is the caller's promise (see Safety).
    pub(crate) unsafe fn chunk(&self, range: Range<usize>) -> &'a mut [T] {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "chunk {range:?} out of 0..{}",
            self.len
        );
        // SAFETY: in bounds (asserted), the borrow `'a` is exclusive to `self`, and the
        // caller guarantees no other live slice overlaps this one.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CACHE: CacheInfo = CacheInfo {
        l1d: 32 << 10,
        l2: 1 << 20,
        l3: None,
        line: 64,
    };

    #[test]
    fn static_chunks_sit_between_l1d_and_half_l2() {
        // (items, jobs, elem bytes) -> chunk
        for (items, jobs, elem, want) in [
            (100_000_000, 2, 4, 131_072), // half an L2 of f32
            (100_000, 2, 4, 12_500),      // four per worker
            (10_000, 2, 4, 5_000),        // an L1d's worth is 8192, but each worker gets one
            (3, 8, 4, 1),                 // fewer items than workers
            (1_000, 4, 1 << 20, 1),       // elements larger than the L2
        ] {
            assert_eq!(
                static_chunk(items, jobs, elem, &CACHE),
                want,
                "{items} x {elem} B on {jobs}"
            );
        }
    }

    #[test]
    fn timed_chunks_aim_at_the_chunk_time_and_keep_eight_per_worker() {
        let us = Duration::from_micros;
        let ns = Duration::from_nanos;
        for (remaining, jobs, elem, cost, want) in [
            (1_000_000, 2, 8, ns(50), 2_000),    // 100 us of 50 ns items
            (1_000_000, 2, 8, us(10), 10),       // 100 us of 10 us items
            (1_000, 2, 8, us(1), 63),            // eight chunks per worker first
            (100, 2, 8, Duration::ZERO, 7),      // zero cost counts as 1 ns
            (100_000_000, 2, 4, ns(1), 100_000), // 100 us of 1 ns items
            (100_000_000, 2, 64, ns(1), 8_192),  // half an L2 of 64 B items
            (10, 4, 8, us(500), 1),
        ] {
            assert_eq!(
                timed_chunk(remaining, jobs, elem, &CACHE, cost, us(100)),
                want,
                "{remaining} items of {cost:?} on {jobs}"
            );
        }
    }

    #[test]
    fn workers_resize_chunks_to_the_cost_they_measure() {
        let us = Duration::from_micros;
        let adapt = Adapt {
            chunk_time: us(100),
            max_chunk: 5_000,
        };
        // (current, done, took, unclaimed) -> next, on two workers
        for (current, done, took, unclaimed, want) in [
            (100, 100, us(100), 1_000_000, 100),     // on target: unchanged
            (100, 100, us(10), 1_000_000, 200),      // ten times cheaper: doubles, no more
            (100, 100, us(1_000), 1_000_000, 10),    // ten times dearer: shrinks at once
            (4_000, 4_000, us(1), 1_000_000, 5_000), // capped at half an L2
            (100, 100, us(100), 30, 8),              // the tail: a quarter of what is left
            (100, 100, us(100), 0, 1),               // nothing left: never zero
            (100, 0, Duration::ZERO, 1_000, 200),    // an empty range teaches nothing odd
        ] {
            assert_eq!(
                adapt.next_len(current, done, took, unclaimed, 2),
                want,
                "{current} after {done} in {took:?}, {unclaimed} left"
            );
        }
    }

    #[test]
    fn plan_ranges_tile_the_input_after_the_probe() {
        let plan = Plan::new(103, 7, 10, 4, None);
        assert_eq!(plan.chunks, 10);
        let mut next = 7;
        for c in 0..plan.chunks {
            let r = plan.range(c);
            assert_eq!(r.start, next);
            assert!(!r.is_empty());
            next = r.end;
        }
        assert_eq!(next, 103);
        assert_eq!(
            Plan::new(5, 5, 10, 4, None).workers,
            1,
            "nothing left: inline"
        );
    }
}
