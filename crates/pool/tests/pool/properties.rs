//! Random alloc/free sequences: no overlapping live ranges, alignment honoured, contents
//! kept, statistics equal to a shadow model, invariants (tiling, merging) at every step.

use std::collections::BTreeMap;

use memwarden_pool::{Block, MemoryPool, PoolConfig};
use proptest::prelude::*;

use crate::{cases, small_segments};

#[derive(Debug, Clone)]
enum Op {
    Alloc { size: usize, align_log2: u32 },
    Free { pick: usize },
    EmptyCache,
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        6 => 0usize..2048,
        3 => 2048usize..(256 << 10),
        1 => (1usize << 20)..(3 << 20),
    ];
    prop_oneof![
        // Alignments up to 4 MiB: past a page, the padding leaves free gaps of pages
        // the pool never needed, which later blocks must be committed on.
        6 => (size, prop_oneof![9 => 0u32..13, 1 => 13u32..23])
            .prop_map(|(size, align_log2)| Op::Alloc { size, align_log2 }),
        5 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        1 => Just(Op::EmptyCache),
    ]
}

fn config() -> impl Strategy<Value = (&'static str, PoolConfig)> {
    prop_oneof![
        Just(("default", PoolConfig::default())),
        Just(("torch", PoolConfig::torch())),
        Just(("small segments", small_segments())),
        Just((
            "no parking, threshold",
            PoolConfig {
                defer_merge: false,
                release_threshold: Some(1 << 20),
                ..small_segments()
            }
        )),
        Just((
            "1 MiB reservations, deferred merging",
            PoolConfig {
                reservation: Some(1 << 20),
                defer_merge: true,
                ..PoolConfig::default()
            }
        )),
        Just((
            "whole segments",
            PoolConfig {
                backend: std::sync::Arc::new(memwarden_pool::SystemBackend),
                ..small_segments()
            }
        )),
        Just((
            "limit 8 MiB",
            PoolConfig {
                limit: Some(8 << 20),
                ..small_segments()
            }
        )),
    ]
}

/// What the pool's statistics must say, kept by the test.
#[derive(Debug, Default)]
struct Shadow {
    requested: u64,
    requested_peak: u64,
    live: u64,
    allocs: u64,
    frees: u64,
}

/// A live block, the byte it was filled with, and its address range.
struct Live {
    block: Block,
    fill: u8,
}

fn check_block(live: &Live) -> Result<(), TestCaseError> {
    let bytes = live.block.as_slice();
    // Both ends and the middle: enough to catch another block written over this one.
    for i in [0, bytes.len() / 2, bytes.len().saturating_sub(1)] {
        if let Some(&b) = bytes.get(i) {
            prop_assert_eq!(b, live.fill, "byte {} of a {}-byte block", i, bytes.len());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn random_sequences_keep_every_invariant(
        (name, config) in config(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let limit = config.limit;
        let pool = MemoryPool::with_config(config);
        let mut live: Vec<Live> = Vec::new();
        let mut shadow = Shadow::default();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Alloc { size, align_log2 } => {
                    let align = 1usize << align_log2;
                    match pool.allocate(size, align) {
                        Ok(mut block) => {
                            prop_assert_eq!(block.len(), size);
                            prop_assert_eq!(block.as_ptr() as usize % align, 0, "alignment {}", align);
                            let fill = (step % 251) as u8 + 1;
                            // Writing the whole block under valgrind would be slow for
                            // megabyte blocks: the ends and the middle suffice.
                            let len = block.len();
                            let bytes = block.as_mut_slice();
                            for i in [0, len / 2, len.saturating_sub(1)] {
                                if let Some(b) = bytes.get_mut(i) {
                                    *b = fill;
                                }
                            }
                            shadow.requested += size as u64;
                            shadow.requested_peak = shadow.requested_peak.max(shadow.requested);
                            shadow.live += 1;
                            shadow.allocs += 1;
                            live.push(Live { block, fill });
                        }
                        Err(memwarden_pool::PoolError::OutOfMemory { limit: l, reserved, .. }) => {
                            let limit = limit.expect("only a limited pool runs out");
                            prop_assert_eq!(l, limit);
                            prop_assert!(reserved <= limit);
                        }
                        Err(e) => prop_assert!(false, "{name}: unexpected error {e}"),
                    }
                }
                Op::Free { pick } => {
                    if !live.is_empty() {
                        let gone = live.swap_remove(pick % live.len());
                        check_block(&gone)?;
                        shadow.requested -= gone.block.len() as u64;
                        shadow.live -= 1;
                        shadow.frees += 1;
                    }
                }
                Op::EmptyCache => {
                    pool.empty_cache();
                }
            }
            // No two live blocks overlap.
            let mut ranges = BTreeMap::new();
            for l in &live {
                let start = l.block.as_ptr() as usize;
                ranges.insert(start, start + l.block.len().max(1));
            }
            let mut end = 0;
            for (&start, &stop) in &ranges {
                prop_assert!(start >= end, "{name}: overlapping live blocks at {start:#x}");
                end = stop;
            }
            prop_assert_eq!(ranges.len(), live.len(), "two live blocks share an address");
            for l in &live {
                check_block(l)?;
            }
            // The statistics equal the shadow model and a recount of the blocks.
            if let Err(e) = pool.check_invariants() {
                prop_assert!(false, "{name}, step {step}: {e}");
            }
            let stats = pool.stats();
            prop_assert_eq!(stats.requested.current, shadow.requested);
            prop_assert_eq!(stats.requested.peak, shadow.requested_peak);
            prop_assert_eq!(stats.active_blocks.current, shadow.live);
            prop_assert_eq!(stats.allocs, shadow.allocs);
            prop_assert_eq!(stats.frees, shadow.frees);
            prop_assert!(stats.allocated.current >= stats.requested.current);
            prop_assert_eq!(stats.inactive.current, stats.reserved.current - stats.allocated.current);
            prop_assert!(stats.reserved.peak >= stats.reserved.current);
            if let Some(limit) = limit {
                prop_assert!(stats.reserved.peak <= limit, "{name}: reserved over the limit");
            }
            prop_assert!((0.0..=1.0).contains(&stats.fragmentation));
        }
        drop(live);
        // With everything returned and the cache emptied, nothing is held.
        pool.empty_cache();
        let stats = pool.stats();
        prop_assert_eq!(stats.allocated.current, 0);
        prop_assert_eq!(stats.reserved.current, 0);
        // Every whole segment went back; a reservation keeps its address space with
        // nothing charged, as one free block.
        for segment in pool.inspect().segments {
            prop_assert_eq!(segment.committed, 0);
            prop_assert!(segment.blocks.len() <= 1);
            prop_assert!(segment.address_space > segment.size || segment.blocks.is_empty() || segment.size == segment.address_space);
        }
    }

    #[test]
    fn merging_leaves_no_adjacent_free_blocks(
        sizes in proptest::collection::vec(1usize..20_000, 1..60),
        order in proptest::collection::vec(any::<usize>(), 60),
    ) {
        let pool = MemoryPool::with_config(PoolConfig::torch());
        let mut live: Vec<Block> = sizes
            .iter()
            .map(|&s| pool.allocate(s, 16).expect("no limit"))
            .collect();
        for pick in order {
            if live.is_empty() {
                break;
            }
            live.swap_remove(pick % live.len());
            for segment in pool.inspect().segments {
                for pair in segment.blocks.windows(2) {
                    // Parked blocks (the small-object front) wait unmerged.
                    prop_assert!(
                        pair[0].allocated || pair[1].allocated || pair[0].parked || pair[1].parked,
                        "adjacent free blocks at {:#x}", pair[0].addr
                    );
                }
                let covered: u64 = segment.blocks.iter().map(|b| b.size).sum();
                prop_assert_eq!(covered, segment.size);
            }
        }
        drop(live);
        pool.empty_cache();
        for segment in pool.inspect().segments {
            prop_assert_eq!(segment.blocks.len(), 1, "a free segment is one block");
        }
    }
}
