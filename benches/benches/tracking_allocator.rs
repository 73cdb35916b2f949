//! `TrackingAllocator<System>` against the bare system allocator: what counting every
//! allocation of the process costs.
//!
//! Run with `cargo bench -p memwarden-benches --bench tracking_allocator`. Under `cargo
//! test --benches` (criterion's test mode) every routine runs once and each workload
//! part runs one round: the figures print, but are a smoke test, not a measurement.
//!
//! # How this measures
//!
//! A binary has one global allocator, so the two cannot both be installed. Instead the
//! workload is written against [`GlobalAlloc`] and calls the allocator it is given
//! directly: once with `System`, once with a `static TrackingAllocator<System>` (as it
//! would be declared for `#[global_allocator]`). The workload is generic, so each
//! allocator's calls are monomorphised and inlined alike; the only difference between
//! the two runs is the counting. The binary's own global allocator (the default,
//! `System`) serves criterion and the harness, outside the timed code.
//!
//! The workload is the allocation pattern of ordinary Rust code, rebuilt on a
//! `Vec`-like growable array ([`RawVec`]) over the given allocator, so that every byte
//! goes through it:
//!
//! - a `Vec<String>` of 20 000 strings of 8-120 bytes: each string is allocated when
//!   its first bytes are written and half of them grow once (`realloc`), the
//!   vector itself grows by doubling;
//! - a `HashMap<u64, Box<[u8; 48]>>` of 10 000 entries: one 48-byte block per value
//!   and an open-addressed table that is reallocated (new table, entries moved, old one
//!   freed) whenever it is 7/8 full, then 10 000 lookups;
//! - three large buffers (256 KiB, 1 MiB, 4 MiB), one byte written per 4 KiB page;
//! - everything dropped again, strings in order.
//!
//! About 30 000 allocations, 10 000 reallocations and 30 000 frees per round. Part one
//! (criterion) times a 64-byte `alloc` + `dealloc` pair through each allocator: the
//! worst case, an allocator call with no work around it. Part two times the workload,
//! 20 rounds per thread, on one thread and then on two threads at once through the same
//! allocator (so the counters' cache line is shared between cores), alternating the two
//! allocators run by run (and which goes first), 16 runs each, and keeps each one's
//! median: on a shared machine the alternation spreads other load over both. Each ratio is tracking over system:
//! above 1 means tracking is slower. Before timing, the bench checks through the tracking
//! allocator's counters that a round allocates what it should and frees everything.

use memwarden_benches::report::{self, Rate, Ratios};
use std::alloc::{GlobalAlloc, Layout, System, handle_alloc_error};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use memwarden_pool::tracking::TrackingAllocator;

/// The tracking allocator, declared as it would be for `#[global_allocator]`.
static TRACKING: TrackingAllocator = TrackingAllocator::new(System);

/// Strings in the `Vec<String>` part.
const STRINGS: usize = 20_000;
/// Entries in the map part.
const ENTRIES: u64 = 10_000;
/// The large buffers of a round.
const LARGE: [usize; 3] = [256 << 10, 1 << 20, 4 << 20];
/// Thread counts of part two.
const THREADS: [usize; 2] = [1, 2];
/// Page size for touching the large buffers.
const PAGE: usize = 4096;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let started = Instant::now();
    check_workload();

    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let mut ratios = Ratios::default();
    pair_cost(&mut criterion, &mut ratios);
    criterion.final_summary();
    for threads in THREADS {
        workload_runs(full, threads, &mut ratios);
    }

    report::print_summary(full, started, &[], &ratios);
}

/// Runs one round through the tracking allocator and checks its counters.
fn check_workload() {
    let before = TRACKING.stats();
    TRACKING.reset_peak();
    black_box(workload(&TRACKING, 1));
    let after = TRACKING.stats();
    let allocations = after.allocations - before.allocations;
    let reallocations = after.reallocations - before.reallocations;
    let frees = after.deallocations - before.deallocations;
    assert_eq!(allocations, frees, "a round frees everything it allocates");
    assert_eq!(after.current, before.current, "no bytes left over");
    assert!(allocations > 2 * ENTRIES && reallocations > ENTRIES / 2);
    println!(
        "tracking_allocator: one workload round = {allocations} allocations, {reallocations} \
         reallocations, {frees} frees, peak {:.1} MiB (counted by the tracking allocator)",
        (after.peak - before.current) as f64 / f64::from(1 << 20)
    );
}

/// Part one: a bare 64-byte alloc + dealloc pair, one thread, under criterion.
fn pair_cost(c: &mut Criterion, ratios: &mut Ratios) {
    let [system, tracking] = std::array::from_fn(|_| Rate::default());
    let mut group = c.benchmark_group("alloc_dealloc_64B");
    group.bench_function("system", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                pair(&System);
            }
            system.record(iters, start.elapsed())
        });
    });
    group.bench_function("tracking", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                pair(&TRACKING);
            }
            tracking.record(iters, start.elapsed())
        });
    });
    group.finish();
    let ratio = tracking.ns_per_op() / system.ns_per_op();
    println!(
        "\n### 64-byte alloc + dealloc, one thread: system {:.1} ns, tracking {:.1} ns, \
         tracking/system {}",
        system.ns_per_op(),
        tracking.ns_per_op(),
        report::times(ratio)
    );
    ratios.add("alloc-dealloc-64B-time", "tracking", "system", ratio);
}

/// Part two: the workload on `threads` threads at once through one allocator, the two
/// allocators alternating run by run.
fn workload_runs(full: bool, threads: usize, ratios: &mut Ratios) {
    let (runs, per_thread) = if full { (16, 20) } else { (1, 1) };
    let mut system = Vec::new();
    let mut tracking = Vec::new();
    for run in 0..runs {
        // Who goes first alternates too, so neither always runs after the other.
        if run % 2 == 0 {
            system.push(concurrent(&System, threads, per_thread));
            tracking.push(concurrent(&TRACKING, threads, per_thread));
        } else {
            tracking.push(concurrent(&TRACKING, threads, per_thread));
            system.push(concurrent(&System, threads, per_thread));
        }
    }
    let (system, tracking) = (median(system), median(tracking));
    let per_round = |wall: Duration| wall.as_secs_f64() * 1e6 / per_thread as f64;
    let ratio = tracking.as_secs_f64() / system.as_secs_f64();
    println!(
        "\n### workload, {threads} thread(s), one allocator, {per_thread} rounds per thread, \
         median of {runs} alternating runs"
    );
    println!("| allocator | wall per round |");
    println!("|-----------|----------------|");
    println!("| system    | {:>11.0} us |", per_round(system));
    println!("| tracking  | {:>11.0} us |", per_round(tracking));
    println!("tracking/system: {}", report::times(ratio));
    ratios.add(
        &format!("workload-{threads}thread-time"),
        "tracking",
        "system",
        ratio,
    );
}

/// Wall time of `threads` threads each running `per_thread` rounds through `heap`.
fn concurrent<A: GlobalAlloc + Sync>(heap: &A, threads: usize, per_thread: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads as u64 {
            s.spawn(move || {
                for i in 0..per_thread {
                    black_box(workload(heap, t * 1_000 + i));
                }
            });
        }
    });
    start.elapsed()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

/// One 64-byte allocation, freed at once.
#[inline(never)]
fn pair<A: GlobalAlloc>(heap: &A) {
    let layout = Layout::new::<[u64; 8]>();
    // SAFETY: the layout has a non-zero size; the pointer is freed once, with the same
    // layout, and only if it is not null.
    unsafe {
        let ptr = heap.alloc(layout);
        if ptr.is_null() {
            handle_alloc_error(layout);
        }
        black_box(ptr).write(1);
        heap.dealloc(ptr, layout);
    }
}

/// One round of the workload (see the file's documentation); returns a checksum so the
/// optimiser keeps everything.
fn workload<A: GlobalAlloc>(heap: &A, seed: u64) -> u64 {
    const TEXT: &[u8] = b"the quick brown fox jumps over the lazy dog; pack my box with five \
                          dozen liquor jugs. sphinx of black quartz, judge my vow!";
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut sum = 0u64;

    // Vec<String>.
    let mut strings: RawVec<'_, RawVec<'_, u8, A>, A> = RawVec::new(heap);
    for _ in 0..STRINGS {
        let mut s = RawVec::new(heap);
        s.extend_from_slice(&TEXT[..rng.below(8, 24)]);
        if rng.below(0, 2) == 0 {
            let more = rng.below(8, 96);
            s.extend_from_slice(&TEXT[..more]);
        }
        strings.push(s);
    }
    sum += strings.as_slice().iter().map(|s| s.len as u64).sum::<u64>();

    // HashMap<u64, Box<[u8; 48]>>.
    let mut map = Map::new(heap);
    for key in 0..ENTRIES {
        let mut value = RawVec::with_capacity(heap, 48);
        value.extend_from_slice(&[key as u8; 48]);
        map.insert(key.wrapping_mul(0x9e37_79b9), value);
    }
    for _ in 0..ENTRIES {
        let key = rng.below(0, ENTRIES as usize) as u64;
        sum += map
            .get(key.wrapping_mul(0x9e37_79b9))
            .map_or(0, |v| u64::from(v.as_slice()[0]));
    }

    // Large buffers, one byte written per page.
    let large = LARGE.map(|size| {
        let buffer = RawVec::<u8, A>::with_capacity(heap, size);
        for offset in (0..size).step_by(PAGE) {
            // SAFETY: `offset` is below the buffer's capacity; the byte is written, never
            // read.
            unsafe { buffer.ptr.add(offset).write(1) };
        }
        buffer
    });
    sum += large.len() as u64;

    drop(large);
    drop(map);
    drop(strings);
    sum
}

/// A growable array in memory from `A`, grown as `Vec` grows: capacity at least doubles
/// (8 elements at first for bytes, 4 otherwise) through `realloc`. Drops its elements
/// and frees its buffer when dropped. `T` must not be zero-sized.
struct RawVec<'a, T, A: GlobalAlloc> {
    ptr: *mut T,
    len: usize,
    cap: usize,
    heap: &'a A,
}

impl<'a, T, A: GlobalAlloc> RawVec<'a, T, A> {
    fn new(heap: &'a A) -> Self {
        assert!(size_of::<T>() > 0, "RawVec holds no zero-sized types");
        RawVec {
            ptr: std::ptr::null_mut(),
            len: 0,
            cap: 0,
            heap,
        }
    }

    fn with_capacity(heap: &'a A, cap: usize) -> Self {
        let mut vec = Self::new(heap);
        vec.grow_to(cap);
        vec
    }

    fn layout(cap: usize) -> Layout {
        Layout::array::<T>(cap).expect("benchmark sizes are far below isize::MAX")
    }

    fn grow_to(&mut self, cap: usize) {
        if cap <= self.cap {
            return;
        }
        let new = Self::layout(cap);
        let ptr = if self.cap == 0 {
            // SAFETY: `cap > self.cap >= 0` and `T` is not zero-sized, so the size is
            // not zero.
            unsafe { self.heap.alloc(new) }
        } else {
            // SAFETY: `self.ptr` came from `self.heap` with `layout(self.cap)` (every
            // allocation and reallocation below records its capacity); the new size is
            // not zero and `Layout::array` checked it does not overflow.
            unsafe {
                self.heap
                    .realloc(self.ptr.cast(), Self::layout(self.cap), new.size())
            }
        };
        if ptr.is_null() {
            handle_alloc_error(new);
        }
        self.ptr = ptr.cast();
        self.cap = cap;
    }

    fn reserve(&mut self, additional: usize) {
        let need = self.len + additional;
        if need > self.cap {
            let min = if size_of::<T>() == 1 { 8 } else { 4 };
            self.grow_to(need.max(self.cap * 2).max(min));
        }
    }

    fn push(&mut self, value: T) {
        self.reserve(1);
        // SAFETY: `reserve` made room: `len < cap`, inside the allocation.
        unsafe { self.ptr.add(self.len).write(value) };
        self.len += 1;
    }

    fn as_slice(&self) -> &[T] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the first `len` elements were written and are owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T: Copy, A: GlobalAlloc> RawVec<'_, T, A> {
    fn extend_from_slice(&mut self, values: &[T]) {
        self.reserve(values.len());
        // SAFETY: `reserve` made room for `values.len()` more elements past `len`; the
        // source is a distinct borrowed slice, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr.add(self.len), values.len());
        }
        self.len += values.len();
    }
}

impl<T, A: GlobalAlloc> Drop for RawVec<'_, T, A> {
    fn drop(&mut self) {
        if self.cap == 0 {
            return;
        }
        // SAFETY: the first `len` elements are initialised and owned; they are dropped
        // once, then the buffer is freed with the layout it was allocated with.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len));
            self.heap.dealloc(self.ptr.cast(), Self::layout(self.cap));
        }
    }
}

/// The slots of a [`Map`]: a key and its value's block, or nothing.
type Table<'a, A> = RawVec<'a, Option<(u64, RawVec<'a, u8, A>)>, A>;

/// An open-addressed map from `u64` to a heap block, as `HashMap<u64, Box<[u8; 48]>>`
/// allocates: one table, replaced by one twice its size when 7/8 full.
struct Map<'a, A: GlobalAlloc> {
    slots: Table<'a, A>,
    items: usize,
}

impl<'a, A: GlobalAlloc> Map<'a, A> {
    fn new(heap: &'a A) -> Self {
        Map {
            slots: Self::table(heap, 16),
            items: 0,
        }
    }

    fn table(heap: &'a A, cap: usize) -> Table<'a, A> {
        let mut slots = RawVec::with_capacity(heap, cap);
        for _ in 0..cap {
            slots.push(None);
        }
        slots
    }

    fn slot(&self, key: u64) -> usize {
        let mask = self.slots.len - 1;
        let mut i = (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & mask;
        loop {
            match &self.slots.as_slice()[i] {
                Some((k, _)) if *k != key => i = (i + 1) & mask,
                _ => return i,
            }
        }
    }

    fn insert(&mut self, key: u64, value: RawVec<'a, u8, A>) {
        if (self.items + 1) * 8 > self.slots.len * 7 {
            let bigger = Self::table(self.slots.heap, self.slots.len * 2);
            let mut old = std::mem::replace(&mut self.slots, bigger);
            self.items = 0;
            // From here `old` owns no elements: its drop frees the buffer alone.
            let len = std::mem::take(&mut old.len);
            for i in 0..len {
                // SAFETY: each of the old table's `len` initialised slots is read once,
                // moving its entry out; `old.len` is 0, so nothing is dropped twice.
                if let Some((k, v)) = unsafe { old.ptr.add(i).read() } {
                    self.insert(k, v);
                }
            }
        }
        let i = self.slot(key);
        // SAFETY: `i` is below `len`, an initialised slot; assigning through the pointer
        // drops the value it replaces.
        let slot = unsafe { &mut *self.slots.ptr.add(i) };
        if slot.is_none() {
            self.items += 1;
        }
        *slot = Some((key, value));
    }

    fn get(&self, key: u64) -> Option<&RawVec<'a, u8, A>> {
        self.slots.as_slice()[self.slot(key)]
            .as_ref()
            .map(|(_, v)| v)
    }
}

/// A tiny deterministic generator (xorshift64).
struct XorShift(u64);

impl XorShift {
    /// A value in `low..high`.
    fn below(&mut self, low: usize, high: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + (self.0 % (high - low) as u64) as usize
    }
}
