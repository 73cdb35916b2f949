//! Reservations: address space mapped once, pages committed as blocks first touch
//! them and decommitted (not unmapped) under the cap, the limit, the threshold and
//! `empty_cache`; what the system really holds checked with `mincore`.

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memwarden_pool::{Backend, MemoryPool, MmapBackend, PoolConfig, PoolError};

const MIB: usize = 1 << 20;

fn page() -> usize {
    // SAFETY: `sysconf` only reads a system constant.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// How many bytes of `[addr, addr + len)` (page-aligned outward) are resident.
fn resident(addr: usize, len: usize) -> usize {
    let page = page();
    let start = addr / page * page;
    let end = (addr + len).next_multiple_of(page);
    let mut vec = vec![0u8; (end - start) / page];
    // SAFETY: the range lies in a mapping of the pool (a live reservation), and `vec`
    // holds one byte per page of it.
    let rc = unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|&&v| v & 1 == 1).count() * page
}

#[test]
fn empty_cache_gives_the_pages_back_and_they_come_back_zeroed() {
    let pool = MemoryPool::new();
    let mut keep = pool.allocate(MIB, 64).expect("no limit");
    keep.as_mut_slice().fill(7);
    let mut big = pool.allocate(8 * MIB, 64).expect("no limit");
    big.as_mut_slice().fill(9);
    let (addr, len) = (big.as_ptr() as usize, big.len());
    assert_eq!(resident(addr, len), len);
    drop(big);
    // Cached, still resident.
    assert_eq!(pool.stats().reserved.current, 9 * MIB as u64);
    let released = pool.empty_cache();
    assert_eq!(released, 8 * MIB as u64);
    let stats = pool.stats();
    assert_eq!(stats.reserved.current, MIB as u64, "only `keep`'s pages");
    assert_eq!(resident(addr, len), 0, "the system took the pages back");
    assert_eq!(resident(keep.as_ptr() as usize, keep.len()), MIB);
    assert!(keep.as_slice().iter().all(|&b| b == 7));
    assert_eq!((stats.maps, stats.unmaps), (1, 0));
    assert!(stats.decommits >= 1);
    // The same range again: no new mapping, and it reads as zero.
    let again = pool.allocate(8 * MIB, 64).expect("no limit");
    assert_eq!(again.as_ptr() as usize, addr);
    assert!(again.as_slice().iter().step_by(4096).all(|&b| b == 0));
    assert_eq!(pool.stats().maps, 1);
    pool.check_invariants().expect("consistent");
}

#[test]
fn a_repeated_workload_maps_once_and_then_makes_no_system_calls() {
    let pool = MemoryPool::new();
    let sizes = [602_112, 3_211_264, 802_816, 100, 70_000, 3_211_264, 1 << 20];
    let round = |pool: &MemoryPool| {
        // Each block outlives the next one's allocation, as an operator's input does.
        let mut previous = None;
        for &size in &sizes {
            let mut block = pool.allocate(size, 64).expect("no limit");
            block.as_mut_slice()[size - 1] = 1;
            previous = Some(block);
        }
        drop(previous);
    };
    round(&pool);
    let warm = pool.stats();
    assert_eq!(warm.maps, 1, "one reservation for every size");
    for _ in 0..5 {
        round(&pool);
    }
    let stats = pool.stats();
    assert_eq!(
        (stats.maps, stats.unmaps, stats.commits, stats.decommits),
        (warm.maps, warm.unmaps, warm.commits, warm.decommits)
    );
    let ratio = stats.reserved.peak as f64 / stats.requested.peak as f64;
    assert!(ratio <= 1.10, "{ratio}");
}

#[test]
fn the_limit_is_held_by_decommitting_free_pages() {
    let limit = 16 * MIB as u64;
    let pool = MemoryPool::with_config(PoolConfig {
        limit: Some(limit),
        max_overhead: None,
        ..PoolConfig::default()
    });
    drop(pool.allocate(12 * MIB, 64).expect("under the limit"));
    assert_eq!(pool.stats().reserved.current, 12 * MIB as u64);
    // 14 MiB grows the cached free range in place: 2 MiB more charged, no mapping.
    let b = pool.allocate(14 * MIB, 64).expect("under the limit");
    let stats = pool.stats();
    assert!(stats.reserved.peak <= limit, "{}", stats.reserved.peak);
    assert_eq!((stats.maps, stats.unmaps, stats.ooms), (1, 0, 0));
    drop(b);
    // 6 MiB live, then 11 MiB: the free 8 MiB grows by 3 MiB, over the limit, and no
    // other free page is left to give back.
    let c = pool.allocate(6 * MIB, 64).expect("under the limit");
    match pool.allocate(11 * MIB, 64) {
        Err(PoolError::OutOfMemory {
            limit: l,
            reserved,
            allocated,
            ..
        }) => {
            assert_eq!(l, limit);
            assert!(reserved <= limit);
            assert_eq!(allocated, 6 * MIB as u64);
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    drop(c);
    pool.check_invariants().expect("consistent");
}

#[test]
fn the_release_threshold_decommits_what_is_cached_above_it() {
    let pool = MemoryPool::with_config(PoolConfig {
        release_threshold: Some(4 * MIB as u64),
        max_overhead: None,
        ..PoolConfig::default()
    });
    let blocks: Vec<_> = (0..4)
        .map(|_| pool.allocate(3 * MIB, 16).expect("no limit"))
        .collect();
    drop(blocks);
    let stats = pool.stats();
    assert!(stats.inactive.current <= 4 * MIB as u64, "{stats:?}");
    assert!(stats.decommits > 0);
    assert_eq!((stats.maps, stats.unmaps), (1, 0));
}

/// A large alignment leaves a free head of pages the pool never needed; a block carved
/// from that head later must be committed all the same (found on review: it was not,
/// and writing its end faulted).
#[test]
fn a_block_carved_from_an_alignment_gap_is_committed() {
    const ALIGN: usize = 16 * MIB;
    let pool = MemoryPool::new();
    let first = pool.allocate(512, 16).expect("room");
    let base = first.as_ptr() as usize;
    // A filler that ends just past an ALIGN boundary, so that the next aligned block
    // leaves a head of almost ALIGN bytes free.
    let boundary = (base + 4096).next_multiple_of(ALIGN);
    let filler = pool.allocate(boundary - base, 16).expect("room");
    assert_eq!(filler.as_ptr() as usize, base + 512);
    let aligned = pool.allocate(512, ALIGN).expect("room");
    assert_eq!(aligned.as_ptr() as usize, boundary + ALIGN);
    let mut gap = pool.allocate(4 * MIB, 16).expect("from the head");
    assert!((gap.as_ptr() as usize) < boundary + ALIGN);
    gap.as_mut_slice().fill(5);
    assert!(gap.as_slice().iter().step_by(4096).all(|&b| b == 5));
    pool.check_invariants().expect("consistent");
    drop((first, filler, aligned, gap));
}

/// The fit search for an alignment above 512 bytes looks at 64 candidates; when it
/// gives up, growing must not shorten a free last block that already holds the request
/// (found on review: it did, leaking its charged pages).
#[test]
fn growing_never_shortens_the_reservation() {
    let pool = MemoryPool::new();
    let smalls: Vec<_> = (0..141)
        .map(|_| pool.allocate(512, 16).expect("room"))
        .collect();
    drop(pool.allocate(MIB, 16).expect("room"));
    // 70 free 512-byte holes, none aligned to 4096.
    let kept: Vec<_> = smalls
        .into_iter()
        .enumerate()
        .filter_map(|(i, b)| (i % 2 == 0).then_some(b))
        .collect();
    let before = pool.stats().reserved.current;
    let block = pool.allocate(512, 4096).expect("room");
    assert_eq!(block.as_ptr() as usize % 4096, 0);
    pool.check_invariants().expect("consistent");
    assert_eq!(
        pool.stats().reserved.current,
        before,
        "the free tail served it"
    );
    drop((kept, block));
    pool.check_invariants().expect("consistent");
}

#[test]
fn outsized_requests_fail_without_changing_how_the_pool_grows() {
    let limited = MemoryPool::with_config(PoolConfig {
        limit: Some(64 * MIB as u64),
        ..PoolConfig::default()
    });
    let keep = limited.allocate(MIB, 64).expect("under the limit");
    for _ in 0..3 {
        assert!(matches!(
            limited.allocate(100 * MIB, 64),
            Err(PoolError::OutOfMemory { .. })
        ));
    }
    assert_eq!(
        limited.stats().maps,
        1,
        "no reservation for a request over the limit"
    );
    drop(keep);
    let unlimited = MemoryPool::new();
    let err = unlimited
        .allocate(usize::MAX / 4, 64)
        .expect_err("more than any machine");
    assert!(matches!(err, PoolError::OutOfMemory { .. }), "{err}");
    let block = unlimited.allocate(MIB, 64).expect("room");
    let state = unlimited.inspect();
    assert!(
        state.segments.iter().all(|s| s.address_space > s.size),
        "still a reservation, not a whole segment"
    );
    drop(block);
}

#[test]
fn a_full_reservation_is_followed_by_another_and_all_go_back_on_drop() {
    let counts = Arc::new(Counts::default());
    let pool = MemoryPool::with_config(PoolConfig {
        reservation: Some(4 * MIB),
        backend: Arc::new(Counting(Arc::clone(&counts))),
        ..PoolConfig::default()
    });
    let blocks: Vec<_> = (0..3)
        .map(|_| pool.allocate(3 * MIB, 64).expect("no limit"))
        .collect();
    assert_eq!(
        pool.stats().maps,
        3,
        "a 4 MiB reservation holds one 3 MiB block"
    );
    drop(blocks);
    let again: Vec<_> = (0..3)
        .map(|_| pool.allocate(3 * MIB, 64).expect("no limit"))
        .collect();
    assert_eq!(pool.stats().maps, 3, "the cached ones serve");
    pool.check_invariants().expect("consistent");
    drop(again);
    drop(pool);
    assert_eq!(counts.reserved.load(Ordering::SeqCst), 3);
    assert_eq!(counts.released.load(Ordering::SeqCst), 3);
}

#[test]
fn a_refused_reservation_falls_back_to_whole_segments() {
    let counts = Arc::new(Counts::default());
    counts.refuse.store(1, Ordering::SeqCst);
    let pool = MemoryPool::with_config(PoolConfig {
        backend: Arc::new(Counting(Arc::clone(&counts))),
        ..PoolConfig::default()
    });
    let mut block = pool.allocate(5 * MIB, 64).expect("a whole segment");
    block.as_mut_slice().fill(3);
    let state = pool.inspect();
    assert_eq!(state.segments.len(), 1);
    assert_eq!(state.segments[0].committed, state.segments[0].address_space);
    drop(block);
    assert_eq!(pool.empty_cache(), 5 * MIB as u64);
    assert_eq!(pool.stats().unmaps, 1);
    pool.check_invariants().expect("consistent");
}

#[test]
fn pinned_pages_are_locked_as_they_are_committed() {
    let pool = MemoryPool::new();
    match pool.allocate_pinned(64 << 10, 64) {
        Ok(mut block) => {
            block.as_mut_slice().fill(1);
            let stats = pool.stats();
            assert_eq!(stats.pinned_reserved.current, 64 << 10);
            drop(block);
            pool.empty_cache();
            assert_eq!(pool.stats().pinned_reserved.current, 0);
        }
        // A system that allows no locked memory at all.
        Err(PoolError::PinFailed { .. }) => {}
        Err(other) => panic!("unexpected {other}"),
    }
    pool.check_invariants().expect("consistent");
}

#[derive(Debug, Default)]
struct Counts {
    reserved: AtomicU64,
    released: AtomicU64,
    refuse: AtomicU64,
}

/// The mmap backend, counting reservations (or refusing them).
#[derive(Debug)]
struct Counting(Arc<Counts>);

// SAFETY: every call is forwarded to `MmapBackend`, which upholds the contract;
// refusing a reservation (`None`) is allowed.
unsafe impl Backend for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn allocate(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        MmapBackend.allocate(size, align)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, size: usize, align: usize) {
        // SAFETY: forwarded unchanged from the pool, which keeps the contract.
        unsafe { MmapBackend.deallocate(ptr, size, align) }
    }

    fn can_reserve(&self) -> bool {
        // Even when every reservation is then refused, as under a small `RLIMIT_AS`.
        true
    }

    fn reserve(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if self.0.refuse.load(Ordering::SeqCst) != 0 {
            return None;
        }
        self.0.reserved.fetch_add(1, Ordering::SeqCst);
        MmapBackend.reserve(size, align)
    }

    unsafe fn commit(&self, ptr: NonNull<u8>, len: usize) -> std::io::Result<()> {
        // SAFETY: forwarded unchanged from the pool, which keeps the contract.
        unsafe { MmapBackend.commit(ptr, len) }
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> std::io::Result<()> {
        // SAFETY: forwarded unchanged from the pool, which keeps the contract.
        unsafe { MmapBackend.decommit(ptr, len) }
    }

    fn decommit_keeps_access(&self) -> bool {
        MmapBackend.decommit_keeps_access()
    }

    unsafe fn release(&self, ptr: NonNull<u8>, size: usize, align: usize) {
        self.0.released.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded unchanged from the pool, which keeps the contract.
        unsafe { MmapBackend.release(ptr, size, align) }
    }
}
