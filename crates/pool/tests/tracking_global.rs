//! `TrackingAllocator` installed as the global allocator of this test binary.
//!
//! This is a test target of its own, not a module of the crate's main test binary,
//! because a binary has exactly one global allocator: installing the tracking one there
//! would count (and slow) every other test. It holds a single test so that no other test
//! thread allocates while it compares counters; the harness's own thread is idle until
//! the test ends, and the comparisons still leave a little slack for it.

use std::collections::HashMap;

use memwarden_pool::tracking::{AllocStats, TrackingAllocator};

#[global_allocator]
static GLOBAL: TrackingAllocator = TrackingAllocator::new(std::alloc::System);

const MIB: u64 = 1 << 20;
/// Bytes other code of the process (the harness) may allocate between two readings.
const SLACK: u64 = 16 << 10;

fn stats() -> AllocStats {
    GLOBAL.stats()
}

#[test]
fn the_global_allocator_counts_the_whole_process() {
    let start = stats();
    assert!(start.allocations > 0, "the runtime allocated before main");
    assert!(start.peak >= start.current);

    // One large buffer: counted on the way in and on the way out.
    let buffer = vec![1u8; MIB as usize];
    let with = stats();
    assert!(with.current >= start.current + MIB, "{start:?} -> {with:?}");
    assert!(
        with.current <= start.current + MIB + SLACK,
        "{start:?} -> {with:?}"
    );
    assert!(with.allocations > start.allocations);
    assert!(with.peak >= with.current);
    drop(buffer);
    let without = stats();
    assert!(
        without.current + MIB <= with.current,
        "{with:?} -> {without:?}"
    );
    assert!(without.deallocations > with.deallocations);

    // A growing vector reallocates, and its bytes follow its capacity.
    let before = stats();
    let mut grown: Vec<u64> = Vec::with_capacity(4);
    for i in 0..100_000u64 {
        grown.push(i);
    }
    let after = stats();
    assert!(
        after.reallocations >= before.reallocations + 10,
        "{after:?}"
    );
    let bytes = (grown.capacity() * size_of::<u64>()) as u64;
    assert!(
        after.current >= before.current + bytes,
        "{before:?} -> {after:?}"
    );
    drop(grown);

    // The peak remembers a short-lived 8 MiB buffer until it is reset.
    let before = stats();
    drop(std::hint::black_box(vec![0u8; 8 * MIB as usize]));
    let after = stats();
    assert!(
        after.peak >= before.current + 8 * MIB,
        "{before:?} -> {after:?}"
    );
    assert!(
        after.current < before.current + SLACK,
        "{before:?} -> {after:?}"
    );
    GLOBAL.reset_peak();
    let reset = stats();
    assert!(
        reset.peak < after.peak && reset.peak <= reset.current + SLACK,
        "{reset:?}"
    );

    // Small objects from two threads: strings in a vector and boxed values in a map, all
    // freed again. Allocations and frees balance out.
    let before = stats();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            s.spawn(move || {
                let strings: Vec<String> = (0..5_000).map(|i| format!("item {t}-{i}")).collect();
                let map: HashMap<u64, Box<[u8; 48]>> =
                    (0..5_000).map(|i| (i, Box::new([t as u8; 48]))).collect();
                let held = stats();
                assert!(held.current >= before.current + 5_000 * 48, "{held:?}");
                assert!(held.allocations >= before.allocations + 10_000, "{held:?}");
                drop((strings, map));
            });
        }
    });
    let after = stats();
    assert!(
        after.allocations >= before.allocations + 20_000,
        "{after:?}"
    );
    assert!(
        after.current < before.current + SLACK,
        "{before:?} -> {after:?}"
    );
    assert!(after.live() < before.live() + 64, "{before:?} -> {after:?}");
}
