//! A caching memory pool at work: allocate, reuse from the cache, give the cache back.
//!
//! Three acts on one [`MemoryPool`] with its default configuration but the
//! [`SystemBackend`], each followed by the pool's statistics (the figures
//! `torch.cuda.memory_stats` reports) and the process's heap as a [`TrackingAllocator`]
//! installed as the global allocator counts it. The system backend takes its segments
//! from the global allocator, so the heap figure shows what the pool holds from the
//! process (the default backend on Unix maps them from the OS directly). The demo checks as it goes
//! and fails if the pool behaves otherwise.
//!
//! 1. **Allocate.** Blocks of three sizes, each written: 200 small ones (1 KiB), 32
//!    tiles (64 KiB) and one 4 MiB frame. The pool reserves segments to hold them.
//! 2. **Reuse.** Every block is dropped (back into the pool's cache, not to the system)
//!    and the same sizes are asked for again: all come from the cache, no new segment
//!    is reserved, and the reserved bytes stay where they were.
//! 3. **Empty the cache.** The blocks are dropped and [`MemoryPool::empty_cache`] returns
//!    every free segment: nothing stays reserved, and the process's heap falls by the
//!    bytes released.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p memwarden-examples --example memory_pool_demo [-- --json]
//! ```
//!
//! `--json` also prints the final statistics as JSON.

use std::alloc::System;

use anyhow::{bail, ensure};
use memwarden::core::ByteSize;
use memwarden_pool::tracking::TrackingAllocator;
use memwarden_pool::{Block, MemoryPool, PoolConfig, PoolStats, Stat, SystemBackend};

/// Every allocation of this process, the pool's segments included, is counted here.
#[global_allocator]
static HEAP: TrackingAllocator = TrackingAllocator::new(System);

/// The blocks of acts 1 and 2: (label, size, how many).
const SHAPES: [(&str, usize, usize); 3] = [
    ("small", 1 << 10, 200),
    ("tile", 64 << 10, 32),
    ("frame", 4 << 20, 1),
];
/// Alignment asked for every block (a cache line).
const ALIGN: usize = 64;
/// Heap bytes the pool's own tables may take or give back while it releases segments.
const BOOKKEEPING: u64 = 64 << 10;

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let json = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--json") => true,
        Some(other) => bail!("unknown argument {other:?} (expected --json)"),
    };
    let pool = MemoryPool::with_config(PoolConfig {
        backend: std::sync::Arc::new(SystemBackend),
        ..PoolConfig::default()
    });
    println!("memory pool demo: backend {:?}", pool.backend_name());

    println!(
        "\n== act 1: allocate {} blocks and write them",
        block_count()
    );
    let blocks = allocate_all(&pool, 0x11)?;
    let first = pool.stats();
    print_stats(&first);
    ensure!(first.allocated.current >= requested_bytes(), "{first:?}");
    ensure!(
        first.reserved.current >= first.allocated.current,
        "{first:?}"
    );

    println!("\n== act 2: drop them all and allocate the same sizes again");
    drop(blocks);
    let cached = pool.stats();
    ensure!(
        cached.allocated.current == 0,
        "every block is back: {cached:?}"
    );
    ensure!(
        cached.reserved.current == first.reserved.current,
        "a drop keeps the segments cached: {cached:?}"
    );
    let blocks = allocate_all(&pool, 0x22)?;
    let second = pool.stats();
    print_stats(&second);
    let reused = second.reuses - first.reuses;
    println!(
        "{reused} of {} blocks came from the cache; segments reserved in this act: {}",
        block_count(),
        second.segment_allocs - first.segment_allocs
    );
    ensure!(reused == block_count() as u64, "{second:?}");
    ensure!(second.segment_allocs == first.segment_allocs, "{second:?}");
    ensure!(
        second.reserved.current == first.reserved.current,
        "{second:?}"
    );

    println!("\n== act 3: drop them and empty the cache");
    drop(blocks);
    let heap_before = HEAP.stats().current;
    let released = pool.empty_cache();
    let heap_after = HEAP.stats().current;
    let last = pool.stats();
    print_stats(&last);
    println!(
        "empty_cache released {}; the process heap fell by {}",
        ByteSize::b(released),
        ByteSize::b(heap_before.saturating_sub(heap_after))
    );
    ensure!(
        released == second.reserved.current,
        "everything was free: {last:?}"
    );
    ensure!(
        last.reserved.current == 0 && last.segments.current == 0,
        "{last:?}"
    );
    // The pool's own bookkeeping may move a little on the heap meanwhile.
    ensure!(
        heap_before.saturating_sub(heap_after) + BOOKKEEPING >= released,
        "the segments went back to the process heap: {heap_before} -> {heap_after}"
    );

    if json {
        println!("\n{}", serde_json::to_string_pretty(&last)?);
    }
    Ok(())
}

fn block_count() -> usize {
    SHAPES.iter().map(|&(_, _, n)| n).sum()
}

fn requested_bytes() -> u64 {
    SHAPES.iter().map(|&(_, size, n)| (size * n) as u64).sum()
}

/// Allocates every block of [`SHAPES`] and fills it with `fill`.
fn allocate_all(pool: &MemoryPool, fill: u8) -> anyhow::Result<Vec<Block>> {
    let mut blocks = Vec::with_capacity(block_count());
    for (label, size, count) in SHAPES {
        for _ in 0..count {
            let mut block = pool.allocate_labeled(size, ALIGN, label)?;
            ensure!((block.as_ptr() as usize).is_multiple_of(ALIGN), "{block:?}");
            block.as_mut_slice().fill(fill);
            blocks.push(block);
        }
    }
    Ok(blocks)
}

/// The statistics as a table, then the process heap.
fn print_stats(stats: &PoolStats) {
    let bytes = |s: Stat| (ByteSize::b(s.current), ByteSize::b(s.peak));
    println!("| stat            |      current |         peak |");
    println!("|-----------------|--------------|--------------|");
    for (name, stat) in [
        ("allocated", stats.allocated),
        ("reserved", stats.reserved),
        ("active", stats.active),
        ("inactive", stats.inactive),
        ("requested", stats.requested),
    ] {
        let (current, peak) = bytes(stat);
        println!(
            "| {name:<15} | {:>12} | {:>12} |",
            current.to_string(),
            peak.to_string()
        );
    }
    for (name, stat) in [
        ("active blocks", stats.active_blocks),
        ("segments", stats.segments),
    ] {
        println!("| {name:<15} | {:>12} | {:>12} |", stat.current, stat.peak);
    }
    println!(
        "allocs {}, frees {}, reuses {} (cache hit rate {:.1}%), segments reserved {} and \
         released {}, fragmentation {:.1}%, largest free block {}",
        stats.allocs,
        stats.frees,
        stats.reuses,
        stats.cache_hit_rate * 100.0,
        stats.segment_allocs,
        stats.segment_frees,
        stats.fragmentation * 100.0,
        ByteSize::b(stats.largest_free_block)
    );
    let heap = HEAP.stats();
    println!(
        "process heap (TrackingAllocator): {} now, {} at most, {} allocations",
        ByteSize::b(heap.current),
        ByteSize::b(heap.peak),
        heap.allocations
    );
}
