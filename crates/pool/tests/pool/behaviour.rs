//! Limits, the release threshold, `empty_cache`, page-locked blocks, errors, the
//! profiler hook, statistics and threads.

use std::sync::Arc;

use memwarden_pool::profiler::{EventKind, Profiler};
use std::ptr::NonNull;

use memwarden_pool::{Backend, LocalPool, MemoryPool, PoolConfig, PoolError, SystemBackend};

const MIB: usize = 1 << 20;

/// Whole segments, as a backend that cannot reserve address space gives them.
fn whole_segments(config: PoolConfig) -> PoolConfig {
    PoolConfig {
        backend: Arc::new(SystemBackend),
        ..config
    }
}

#[test]
fn limit_releases_cached_segments_before_failing() {
    let pool = MemoryPool::with_config(whole_segments(PoolConfig {
        limit: Some(16 * MIB as u64),
        max_overhead: None,
        ..PoolConfig::default()
    }));
    // 12 MiB of exact large segment, cached after the drop.
    drop(pool.allocate(12 * MIB, 64).expect("under the limit"));
    assert_eq!(pool.stats().reserved.current, 12 * MIB as u64);
    // 8 MiB is served from the cached 12 MiB block (best fit, split).
    let a = pool.allocate(8 * MIB, 64).expect("served from the cache");
    assert_eq!(pool.stats().segment_allocs, 1);
    drop(a);
    // 14 MiB does not fit in 12: the cached segment goes back first, then the new one
    // fits under the limit.
    let b = pool.allocate(14 * MIB, 64).expect("released and retried");
    let stats = pool.stats();
    assert_eq!(stats.alloc_retries, 1);
    assert_eq!(stats.segment_frees, 1);
    assert_eq!(stats.reserved.current, 14 * MIB as u64);
    assert_eq!(stats.ooms, 0);
    drop(b);
}

#[test]
fn out_of_memory_says_what_was_asked_and_held() {
    let limit = 8 * MIB as u64;
    let pool = MemoryPool::with_config(PoolConfig {
        limit: Some(limit),
        ..PoolConfig::default()
    });
    let held = pool.allocate(5 * MIB, 16).expect("under the limit");
    let err = pool.allocate(4 * MIB, 16).expect_err("over the limit");
    match err {
        PoolError::OutOfMemory {
            requested,
            limit: l,
            reserved,
            allocated,
        } => {
            assert_eq!(requested, 4 * MIB as u64);
            assert_eq!(l, limit);
            assert_eq!(reserved, 5 * MIB as u64);
            assert_eq!(allocated, 5 * MIB as u64);
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    assert!(err_text(&pool).contains("out of memory"));
    let stats = pool.stats();
    assert_eq!(stats.ooms, 2);
    assert_eq!(stats.allocated.current, 5 * MIB as u64);
    drop(held);
    // The limit can change at runtime.
    pool.set_limit(None);
    assert!(pool.allocate(40 * MIB, 16).is_ok());
}

fn err_text(pool: &MemoryPool) -> String {
    pool.allocate(usize::MAX / 4, 16)
        .expect_err("far over the limit")
        .to_string()
}

#[test]
fn release_threshold_returns_cached_bytes_above_it() {
    let pool = MemoryPool::with_config(whole_segments(PoolConfig {
        release_threshold: Some(4 * MIB as u64),
        max_overhead: None,
        ..PoolConfig::torch()
    }));
    let blocks: Vec<_> = (0..3)
        .map(|_| pool.allocate(3 * MIB, 16).expect("no limit"))
        .collect();
    // 3 MiB requests share a 20 MiB segment.
    assert_eq!(pool.stats().segments.current, 1);
    drop(blocks);
    // The whole segment became free: 20 MiB cached is over the 4 MiB threshold.
    let stats = pool.stats();
    assert_eq!(stats.reserved.current, 0);
    assert_eq!(stats.segment_frees, 1);

    // Under the threshold, segments stay cached.
    let small = pool.allocate(1000, 16).expect("no limit");
    drop(small);
    assert_eq!(pool.stats().reserved.current, 2 * MIB as u64);
}

#[test]
fn empty_cache_returns_only_entirely_free_segments() {
    let pool = MemoryPool::with_config(whole_segments(PoolConfig::default()));
    let keep = pool.allocate(100, 16).expect("no limit");
    let other = pool.allocate(100, 16).expect("no limit");
    let big = pool.allocate(12 * MIB, 16).expect("no limit");
    drop(other);
    drop(big);
    let before = pool.stats();
    let released = pool.empty_cache();
    let after = pool.stats();
    assert_eq!(released, before.reserved.current - after.reserved.current);
    assert!(released >= 12 * MIB as u64);
    // The small segment still holds `keep`.
    assert_eq!(after.segments.current, 1);
    assert_eq!(after.allocated.current, 512);
    assert_eq!(pool.release_unused(), 0);
    drop(keep);
    assert!(pool.release_unused() > 0);
    assert_eq!(pool.stats().reserved.current, 0);
}

#[test]
fn pinned_blocks_are_locked_or_fail_with_a_typed_error() {
    let pool = MemoryPool::new();
    match pool.allocate_pinned(4096, 4096) {
        Ok(mut block) => {
            block.as_mut_slice().fill(3);
            let stats = pool.stats();
            assert!(stats.pinned_reserved.current > 0);
            assert!(pool.inspect().segments.iter().any(|s| s.pinned));
            drop(block);
            pool.empty_cache();
            assert_eq!(pool.stats().pinned_reserved.current, 0);
        }
        Err(err) => assert!(
            matches!(err, PoolError::PinFailed { .. }),
            "expected PinFailed, got {err:?}"
        ),
    }
    // Far more than any default RLIMIT_MEMLOCK (8 MiB for users on Linux).
    let soft = memlock_soft();
    // SAFETY: `geteuid` only reads the process's credentials.
    let root = unsafe { libc::geteuid() } == 0;
    // Root (CAP_IPC_LOCK) is not bound by RLIMIT_MEMLOCK; the typed error is then
    // checked through a backend that refuses to lock, below.
    if soft < (1 << 30) && !root {
        match pool.allocate_pinned(soft as usize + 16 * MIB, 16) {
            Err(PoolError::PinFailed {
                bytes,
                memlock_limit,
                source,
            }) => {
                assert!(bytes > soft);
                assert_eq!(memlock_limit, Some(soft));
                assert!(source.raw_os_error().is_some());
            }
            other => panic!("expected PinFailed over RLIMIT_MEMLOCK, got {other:?}"),
        }
        // A failed lock leaves nothing behind.
        pool.check_invariants().expect("consistent");
        assert_eq!(pool.stats().pinned_reserved.current, 0);
    }
}

/// The `RLIMIT_MEMLOCK` soft limit (`u64::MAX` when unlimited).
fn memlock_soft() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` into the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    assert_eq!(rc, 0);
    if limit.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        limit.rlim_cur
    }
}

#[test]
fn bad_requests_are_typed_errors() {
    let pool = MemoryPool::new();
    assert!(matches!(
        pool.allocate(10, 24),
        Err(PoolError::InvalidAlignment { align: 24 })
    ));
    assert!(matches!(
        pool.allocate(10, 0),
        Err(PoolError::InvalidAlignment { align: 0 })
    ));
    assert!(matches!(
        pool.allocate(usize::MAX - 10, 16),
        Err(PoolError::TooLarge { .. })
    ));
    let empty = pool.allocate(0, 1).expect("zero bytes");
    assert!(empty.is_empty());
    assert!(empty.as_slice().is_empty());
    let big_align = pool.allocate(100, 1 << 16).expect("64 KiB alignment");
    assert_eq!(big_align.as_ptr() as usize % (1 << 16), 0);
    pool.check_invariants().expect("consistent");
}

#[test]
fn stats_follow_torch_definitions_and_serialise() {
    let pool = MemoryPool::with_config(whole_segments(PoolConfig::torch()));
    let a = pool.allocate(1000, 16).expect("no limit");
    let b = pool.allocate(3 * MIB, 16).expect("no limit");
    let stats = pool.stats();
    assert_eq!(stats.requested.current, 1000 + 3 * MIB as u64);
    assert_eq!(stats.allocated.current, 1024 + 3 * MIB as u64);
    assert_eq!(stats.active, stats.allocated);
    assert_eq!(stats.reserved.current, (2 + 20) * MIB as u64);
    assert_eq!(stats.segment_allocs, 2);
    assert_eq!(stats.reuses, 0);
    let fragmentation = 1.0 - stats.allocated.current as f64 / stats.reserved.current as f64;
    assert!((stats.fragmentation - fragmentation).abs() < 1e-12);
    assert_eq!(stats.largest_free_block, 17 * MIB as u64);
    drop(a);
    let c = pool.allocate(900, 16).expect("no limit");
    let stats = pool.stats();
    assert_eq!(stats.reuses, 1);
    assert!((stats.cache_hit_rate - 1.0 / 3.0).abs() < 1e-12);
    drop((b, c));
    let stats = pool.stats();
    assert_eq!(stats.allocated.current, 0);
    assert_eq!(stats.allocated.peak, 1024 + 3 * MIB as u64);
    assert_eq!(stats.inactive.current, 22 * MIB as u64);
    pool.reset_peak();
    let stats = pool.stats();
    assert_eq!(stats.allocated.peak, 0);
    assert_eq!(stats.reserved.peak, stats.reserved.current);
    let json = serde_json::to_value(&stats).expect("serialisable");
    assert_eq!(json["reserved"]["current"], 22 * MIB as u64);
    assert!(json["cache_hit_rate"].is_number());
}

#[test]
fn overhead_cap_sizes_segments_to_the_requests() {
    let capped = MemoryPool::new();
    let whole = MemoryPool::with_config(whole_segments(PoolConfig::default()));
    let torch = MemoryPool::with_config(whole_segments(PoolConfig::torch()));
    for pool in [&capped, &whole, &torch] {
        let blocks: Vec<_> = [3 * MIB, 2 * MIB, 5 * MIB, 100 << 10]
            .iter()
            .map(|&s| pool.allocate(s, 16).expect("no limit"))
            .collect();
        drop(blocks);
    }
    let ratio = |p: &MemoryPool| {
        let s = p.stats();
        s.reserved.peak as f64 / s.requested.peak as f64
    };
    assert!(ratio(&capped) <= 1.10, "capped: {}", ratio(&capped));
    assert!(ratio(&whole) <= 1.10, "whole segments: {}", ratio(&whole));
    assert!(ratio(&torch) > 2.0, "torch: {}", ratio(&torch));
}

/// The serving trace's pattern that took torch's layout to 4/3 of the peak: two big
/// tensors, then three of two thirds their size. Split out of the big segments, two of
/// the three would leave stranded tails and the third would need a segment of its own.
#[test]
fn overhead_cap_holds_when_smaller_tensors_follow_bigger_ones() {
    for pool in [
        MemoryPool::new(),
        MemoryPool::with_config(whole_segments(PoolConfig::default())),
    ] {
        overhead_cap_holds_on(&pool);
    }
}

fn overhead_cap_holds_on(pool: &MemoryPool) {
    for round in 0..3 {
        let big: Vec<_> = (0..2).map(|_| pool.allocate(6 * MIB, 16)).collect();
        drop(big);
        let medium: Vec<_> = (0..3).map(|_| pool.allocate(4 * MIB, 16)).collect();
        assert!(medium.iter().all(Result::is_ok));
        drop(medium);
        let s = pool.stats();
        let ratio = s.reserved.peak as f64 / s.requested.peak as f64;
        assert!(ratio <= 1.10, "round {round}: {ratio}");
        pool.check_invariants().expect("consistent");
    }
}

#[test]
fn labels_reach_the_state_and_the_profiler() {
    let pool = MemoryPool::with_config(PoolConfig::torch());
    let profiler = Arc::new(Profiler::new());
    pool.set_profiler(Some(Arc::clone(&profiler)));
    let unrecorded = pool.allocate(64, 16).expect("no limit");
    profiler.start();
    let weights = pool
        .allocate_labeled(5000, 64, "weights")
        .expect("no limit");
    let live: Vec<_> = pool
        .inspect()
        .segments
        .into_iter()
        .flat_map(|s| s.blocks)
        .filter(|b| b.allocated)
        .collect();
    assert_eq!(live.len(), 2);
    assert!(
        live.iter()
            .any(|b| b.label.as_deref() == Some("weights") && b.requested == 5000)
    );
    drop(weights);
    drop(unrecorded);
    let timeline = profiler.stop();
    let kinds: Vec<EventKind> = timeline.events().iter().map(|e| e.event.kind).collect();
    // The new block's pages are charged first (the first block's page is already).
    assert_eq!(
        kinds,
        [
            EventKind::Commit,
            EventKind::Alloc,
            EventKind::Free,
            EventKind::Free
        ]
    );
    assert_eq!(timeline.events()[0].event.size, 4096);
    let alloc = &timeline.events()[1].event;
    assert_eq!(alloc.label.as_deref(), Some("weights"));
    assert_eq!(alloc.requested, 5000);
    assert_eq!(alloc.size, 5120);
    assert_eq!(alloc.allocated, 512 + 5120);
    let last = &timeline.events()[3].event;
    assert_eq!(last.allocated, 0);
    assert_eq!(last.reserved, pool.stats().reserved.current);
    // Page events too (a reservation's free pages decommitted), and nothing once
    // stopped.
    profiler.start();
    pool.empty_cache();
    let timeline = profiler.stop();
    assert!(
        timeline
            .events()
            .iter()
            .all(|e| e.event.kind == EventKind::Decommit)
    );
    assert_eq!(timeline.events().last().map(|e| e.event.reserved), Some(0));
    assert!(!timeline.events().is_empty());
    drop(pool.allocate(10, 16));
    assert!(profiler.stop().events().is_empty());
}

#[test]
fn local_pool_behaves_like_the_shared_one() {
    let pool = LocalPool::new();
    let mut a = pool.allocate(100, 32).expect("no limit");
    a.as_mut_slice().fill(9);
    let b = pool.allocate_labeled(200, 64, "b").expect("no limit");
    assert_eq!(b.as_ptr() as usize % 64, 0);
    assert!(a.as_slice().iter().all(|&x| x == 9));
    drop((a, b));
    pool.check_invariants().expect("consistent");
    assert_eq!(pool.stats().allocs, 2);
    assert!(pool.empty_cache() > 0);
}

#[test]
fn threads_share_one_pool() {
    let pool = MemoryPool::with_config(crate::small_segments());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let mut live = Vec::new();
                for i in 0..300usize {
                    let size = 16 + (i * 7919 + t * 104_729) % 40_000;
                    let mut block = pool.allocate(size, 16).expect("no limit");
                    block.as_mut_slice()[0] = t as u8;
                    live.push(block);
                    if i % 3 == 0 {
                        let gone = live.swap_remove((i * 31) % live.len());
                        assert_eq!(gone.as_slice()[0], t as u8);
                    }
                }
                // Blocks may also outlive their thread.
                live
            })
        })
        .collect();
    let survivors: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("no panic"))
        .collect();
    pool.check_invariants().expect("consistent");
    assert_eq!(pool.stats().active_blocks.current, survivors.len() as u64);
    drop(survivors);
    assert_eq!(pool.stats().allocated.current, 0);
    pool.check_invariants().expect("consistent");
}

/// The system heap, except that page-locking always fails as under a tiny
/// RLIMIT_MEMLOCK.
#[derive(Debug)]
struct NoLock;

// SAFETY: allocation is delegated to `SystemBackend`, which upholds the contract.
unsafe impl Backend for NoLock {
    fn name(&self) -> &'static str {
        "no-lock"
    }

    fn allocate(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        SystemBackend.allocate(size, align)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, size: usize, align: usize) {
        // SAFETY: forwarded unchanged from the pool, which keeps the contract.
        unsafe { SystemBackend.deallocate(ptr, size, align) }
    }

    fn lock(&self, _ptr: NonNull<u8>, _size: usize) -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::ENOMEM))
    }
}

#[test]
fn a_refused_lock_is_a_typed_error_and_leaks_nothing() {
    let pool = MemoryPool::with_config(PoolConfig {
        backend: Arc::new(NoLock),
        ..PoolConfig::default()
    });
    assert_eq!(pool.backend_name(), "no-lock");
    match pool.allocate_pinned(4096, 16) {
        Err(PoolError::PinFailed { bytes, source, .. }) => {
            assert!(bytes >= 4096);
            assert_eq!(source.raw_os_error(), Some(libc::ENOMEM));
        }
        other => panic!("expected PinFailed, got {other:?}"),
    }
    let stats = pool.stats();
    assert_eq!(stats.reserved.current, 0);
    assert_eq!(stats.segment_allocs, 0);
    // Unpinned blocks from the same backend are fine.
    assert!(pool.allocate(4096, 16).is_ok());
}

#[cfg(unix)]
#[test]
fn mmap_backend_serves_blocks() {
    let pool = MemoryPool::with_config(PoolConfig {
        backend: Arc::new(memwarden_pool::MmapBackend),
        ..PoolConfig::default()
    });
    let mut block = pool.allocate(3 * MIB, 1 << 21).expect("no limit");
    assert_eq!(block.as_ptr() as usize % (1 << 21), 0);
    assert!(
        block.as_slice().iter().all(|&b| b == 0),
        "fresh mappings are zeroed"
    );
    block.as_mut_slice().fill(5);
    drop(block);
    assert!(pool.empty_cache() >= 3 * MIB as u64);
}

#[test]
fn a_fresh_block_reads_as_initialised_zeroes() {
    // Leave dirty memory in the process heap first: freed large buffers full of 0xAB,
    // which a careless backend would hand straight back uninitialised.
    for _ in 0..4 {
        let mut dirty = vec![0xABu8; 8 << 20];
        std::hint::black_box(&mut dirty);
        drop(dirty);
        let mut dirty = vec![0xABu8; 3 << 20];
        std::hint::black_box(&mut dirty);
        drop(dirty);
    }
    let pool = MemoryPool::new();
    let block = pool.allocate(1 << 20, 64).expect("room");
    assert!(block.as_slice().iter().all(|&b| b == 0));
}

#[test]
fn out_of_range_settings_do_not_panic_or_break_the_invariants() {
    for max_overhead in [f64::INFINITY, f64::NAN, -1.0, 3.0] {
        let pool = MemoryPool::with_config(PoolConfig {
            max_overhead: Some(max_overhead),
            ..PoolConfig::default()
        });
        let block = pool.allocate(1, 1).expect("a tiny block");
        assert!(pool.allocate(1 << 62, 1).is_err());
        drop(block);
        pool.check_invariants().expect("consistent");
    }
    // Segment sizes that are not whole pages are rounded up to them.
    let pool = MemoryPool::with_config(PoolConfig {
        small_segment: 5000,
        ..PoolConfig::default()
    });
    let a = pool.allocate(600, 16).expect("room");
    let b = pool.allocate(600, 16).expect("room");
    pool.check_invariants()
        .expect("every block a multiple of 512 bytes");
    drop((a, b));
}

#[test]
fn a_huge_alignment_is_refused_without_emptying_the_cache() {
    let pool = MemoryPool::new();
    drop(pool.allocate(4 << 20, 64).expect("room"));
    let cached = pool.stats().reserved.current;
    assert!(cached > 0);
    let err = pool
        .allocate(0, 1 << 62)
        .expect_err("no backend has this alignment");
    assert!(matches!(err, PoolError::TooLarge { .. }), "{err:?}");
    assert_eq!(pool.stats().reserved.current, cached, "the cache is kept");
    assert_eq!(pool.stats().ooms, 0);
}

#[test]
fn a_new_segment_does_not_inflate_the_inactive_peak() {
    let pool = MemoryPool::with_config(whole_segments(PoolConfig::torch()));
    let block = pool.allocate(1 << 20, 64).expect("room");
    let stats = pool.stats();
    // The 2 MiB segment's other half is really inactive; the whole segment never was.
    assert!(stats.inactive.peak <= stats.reserved.current - stats.allocated.current);
    drop(block);
    let pool = MemoryPool::new();
    let block = pool.allocate(30 << 20, 64).expect("room");
    assert_eq!(
        pool.stats().inactive.peak,
        0,
        "an exact segment is never idle"
    );
    drop(block);
}

#[cfg(unix)]
#[test]
fn the_mmap_backend_refuses_bad_requests() {
    use memwarden_pool::{Backend, MmapBackend};
    let backend = MmapBackend;
    assert!(backend.allocate(4096, 0).is_none());
    assert!(backend.allocate(4096, 3).is_none());
    assert!(backend.allocate(0, 4096).is_none());
}
