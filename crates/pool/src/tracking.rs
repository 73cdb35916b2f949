//! A counting global allocator: current and peak heap bytes of the whole process.
//!
//! [`TrackingAllocator`] wraps any [`GlobalAlloc`] (the system allocator by default) and
//! counts, for every allocation of the process, the bytes currently allocated, their
//! peak, and how many allocations, frees and reallocations there were. Install it once
//! per binary:
//!
//! ```
//! use memwarden_pool::tracking::TrackingAllocator;
//!
//! #[global_allocator]
//! static GLOBAL: TrackingAllocator = TrackingAllocator::new(std::alloc::System);
//!
//! let before = GLOBAL.stats();
//! let buffer = vec![0u8; 1 << 20];
//! let after = GLOBAL.stats();
//! assert!(after.current >= before.current + (1 << 20));
//! assert!(after.peak >= after.current);
//! drop(buffer);
//! ```
//!
//! # Cost
//!
//! The counters are relaxed atomics in one cache line: an allocation is two atomic
//! additions and a relaxed load of the peak (the `fetch_max` runs only when the peak
//! actually rises), a free two atomic additions. The `tracking_allocator` benchmark
//! measures what that costs on an allocation-heavy workload against the bare system
//! allocator. Threads that allocate at the same time share that cache line, which is the
//! price of exact process-wide figures without per-thread state.
//!
//! The counts are the sizes callers ask for ([`Layout::size`]), not what the inner
//! allocator rounds them to, and cover the Rust heap only: memory that C code `malloc`s
//! directly, thread stacks and `mmap`s are not seen. Each counter is exact, but
//! [`TrackingAllocator::stats`] reads them one after the other, so a reading taken while
//! other threads allocate may mix moments.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;

/// A [`GlobalAlloc`] that forwards to `A` and counts what passes through it.
///
/// See the [module documentation](self) for how to install it and what it costs.
#[derive(Debug)]
#[repr(align(64))]
pub struct TrackingAllocator<A = System> {
    current: AtomicUsize,
    peak: AtomicUsize,
    allocations: AtomicU64,
    deallocations: AtomicU64,
    reallocations: AtomicU64,
    inner: A,
}

/// What a [`TrackingAllocator`] has counted ([`TrackingAllocator::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AllocStats {
    /// Bytes allocated and not yet freed.
    pub current: u64,
    /// The most bytes allocated at once since the start or the last
    /// [`TrackingAllocator::reset_peak`].
    pub peak: u64,
    /// Allocations (`alloc` and `alloc_zeroed`) that succeeded.
    pub allocations: u64,
    /// Frees.
    pub deallocations: u64,
    /// Reallocations (a `Vec` growing, say) that succeeded; not counted as allocations
    /// or frees.
    pub reallocations: u64,
}

impl AllocStats {
    /// Allocations not yet freed: `allocations - deallocations`.
    pub fn live(&self) -> u64 {
        self.allocations.saturating_sub(self.deallocations)
    }
}

impl<A> TrackingAllocator<A> {
    /// Wraps `inner`, with every counter at zero. `const`, so it can initialise the
    /// `#[global_allocator]` static.
    pub const fn new(inner: A) -> Self {
        TrackingAllocator {
            current: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            allocations: AtomicU64::new(0),
            deallocations: AtomicU64::new(0),
            reallocations: AtomicU64::new(0),
            inner,
        }
    }

    /// The wrapped allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// The counters now.
    pub fn stats(&self) -> AllocStats {
        AllocStats {
            current: self.current.load(Ordering::Relaxed) as u64,
            peak: self.peak.load(Ordering::Relaxed) as u64,
            allocations: self.allocations.load(Ordering::Relaxed),
            deallocations: self.deallocations.load(Ordering::Relaxed),
            reallocations: self.reallocations.load(Ordering::Relaxed),
        }
    }

    /// Starts a new peak from the bytes allocated now, so the next
    /// [`stats`](Self::stats) shows the peak of what happens from here on.
    pub fn reset_peak(&self) {
        self.peak
            .store(self.current.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    #[inline]
    fn grew(&self, bytes: usize) {
        let now = self
            .current
            .fetch_add(bytes, Ordering::Relaxed)
            .wrapping_add(bytes);
        // Most allocations do not raise the peak: a plain load keeps them off the
        // read-modify-write.
        if now > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
    }

    #[inline]
    fn shrank(&self, bytes: usize) {
        self.current.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Default for TrackingAllocator<System> {
    fn default() -> Self {
        Self::new(System)
    }
}

// SAFETY: every method forwards to `inner`, which upholds `GlobalAlloc`'s contract, with
// the caller's arguments unchanged and returns its result unchanged; the counting around
// the calls neither allocates nor unwinds (atomic operations only), as a global allocator
// must not.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackingAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller guarantees `layout` has a non-zero size, as `alloc` requires.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            self.allocations.fetch_add(1, Ordering::Relaxed);
            self.grew(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`: the caller guarantees a non-zero size.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            self.allocations.fetch_add(1, Ordering::Relaxed);
            self.grew(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Counted before the memory goes back: once `inner` has it, another thread may be
        // handed it, and counting both at once would overstate the peak.
        self.deallocations.fetch_add(1, Ordering::Relaxed);
        self.shrank(layout.size());
        // SAFETY: the caller guarantees `ptr` came from this allocator, that is from
        // `inner` (every pointer we hand out is `inner`'s), with this `layout`.
        unsafe { self.inner.dealloc(ptr, layout) };
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `ptr` came from this allocator (so from `inner`)
        // with `layout`, and that `new_size` is non-zero and does not overflow when
        // rounded to `layout.align()`.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            self.reallocations.fetch_add(1, Ordering::Relaxed);
            let old_size = layout.size();
            if new_size >= old_size {
                self.grew(new_size - old_size);
            } else {
                self.shrank(old_size - new_size);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An allocator that fails every request, to check failures are not counted.
    struct Refusing;

    // SAFETY: `alloc` never returns memory, so `dealloc` and `realloc` can never be
    // called with a pointer from it; returning null is how an allocator says no.
    unsafe impl GlobalAlloc for Refusing {
        unsafe fn alloc(&self, _: Layout) -> *mut u8 {
            std::ptr::null_mut()
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
    }

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).expect("a valid layout")
    }

    #[test]
    fn counts_follow_alloc_realloc_and_free() {
        let tracking = TrackingAllocator::new(System);
        // SAFETY: every pointer is freed once, with the layout it was last allocated or
        // reallocated with, and written only within its size.
        unsafe {
            let a = tracking.alloc(layout(1000));
            let b = tracking.alloc_zeroed(layout(24));
            assert!(!a.is_null() && !b.is_null());
            assert_eq!(*b.add(23), 0);
            a.write_bytes(7, 1000);
            let stats = tracking.stats();
            assert_eq!((stats.current, stats.peak), (1024, 1024));
            assert_eq!((stats.allocations, stats.live()), (2, 2));

            let a = tracking.realloc(a, layout(1000), 4000);
            assert!(!a.is_null());
            assert_eq!(*a.add(999), 7, "realloc keeps the contents");
            assert_eq!(tracking.stats().current, 4024);
            let a = tracking.realloc(a, layout(4000), 100);
            assert_eq!(
                tracking.stats(),
                AllocStats {
                    current: 124,
                    peak: 4024,
                    allocations: 2,
                    deallocations: 0,
                    reallocations: 2,
                }
            );

            tracking.dealloc(a, layout(100));
            tracking.dealloc(b, layout(24));
        }
        let stats = tracking.stats();
        assert_eq!((stats.current, stats.peak), (0, 4024));
        assert_eq!((stats.deallocations, stats.live()), (2, 0));
    }

    #[test]
    fn reset_peak_starts_from_the_current_bytes() {
        let tracking = TrackingAllocator::default();
        // SAFETY: each pointer is freed once with its layout.
        unsafe {
            let big = tracking.alloc(layout(1 << 16));
            let small = tracking.alloc(layout(64));
            tracking.dealloc(big, layout(1 << 16));
            assert_eq!(tracking.stats().peak, (1 << 16) + 64);
            tracking.reset_peak();
            assert_eq!(tracking.stats().peak, 64);
            let mid = tracking.alloc(layout(256));
            assert_eq!(tracking.stats().peak, 64 + 256);
            tracking.dealloc(mid, layout(256));
            tracking.dealloc(small, layout(64));
        }
        assert_eq!(tracking.stats().peak, 64 + 256);
    }

    #[test]
    fn failed_requests_are_not_counted() {
        let tracking = TrackingAllocator::new(Refusing);
        // SAFETY: `Refusing` returns null for every request; nothing is freed.
        let (a, z) = unsafe {
            (
                tracking.alloc(layout(64)),
                tracking.alloc_zeroed(layout(64)),
            )
        };
        assert!(a.is_null() && z.is_null());
        assert_eq!(tracking.stats(), AllocStats::default());
    }

    #[test]
    fn threads_add_up_exactly() {
        let tracking = TrackingAllocator::new(System);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for i in 1..=1000 {
                        let l = layout(i);
                        // SAFETY: a pointer that is not null is freed at once with its
                        // layout.
                        unsafe {
                            let p = tracking.alloc(l);
                            assert!(!p.is_null());
                            tracking.dealloc(p, l);
                        }
                    }
                });
            }
        });
        let stats = tracking.stats();
        assert_eq!((stats.allocations, stats.deallocations), (2000, 2000));
        assert_eq!(stats.current, 0);
        assert!((1000..=2000).contains(&stats.peak), "{}", stats.peak);
    }
}
