//! memwarden's caching pool against glibc `malloc`/`free` and mimalloc: alloc+free
//! throughput on recorded tensor traces and a synthetic small-object mix, and the pool's
//! memory overhead (peak reserved over peak requested bytes).
//!
//! Run with `cargo bench -p memwarden-benches --bench pool_vs_malloc`. Under `cargo test
//! --benches` (no `--bench` argument) every workload replays once per peer: the figures
//! print, but are a smoke test, not a measurement.
//!
//! The traces are `workspace/../shared/data/traces/*.trace` (lines `a,ID,BYTES` and
//! `f,ID,BYTES`, `#` comments): per-operator allocations of four vision models at batch
//! 1 and a serving run of 200 requests alternating two models at batch sizes 1..8. The
//! synthetic mix allocates and frees log-uniform 16 B..64 KiB objects at random with
//! about 2 000 live. A missing trace directory is reported and skipped.
//!
//! Peers, all in this process and run in turn within each round (the order rotates per
//! round; a figure is the median round; in a round each peer replays a short trace back
//! to back until it has done at least 20 000 operations):
//! - `pool`: [`MemoryPool`] with its default configuration (one reservation committed
//!   on demand, best fit with immediate merging and the 10 % overhead cap enforced by
//!   decommitting free pages), one pool per workload kept
//!   across rounds, as in a process that serves request after request;
//! - `local`: the same allocator as a [`LocalPool`] (no mutex), which shows what the
//!   uncontended lock costs;
//! - `torch`: [`MemoryPool`] with [`PoolConfig::torch`] (no overhead cap, nothing
//!   decommitted): what the layout costs without the cap, for the overhead comparison;
//! - `glibc`: `libc::malloc` / `libc::free`;
//! - `mimalloc`: `mi_malloc_aligned(size, 16)` / `mi_free`, called directly (not as the
//!   global allocator).
//!
//! Every peer allocates with alignment 16 and writes the first byte of each allocation,
//! so a peer that hands out fresh pages pays for faulting one in. An operation is one
//! allocation or one free.
//!
//! Goals from the issue: on every workload the pool's throughput at least 1x glibc's and
//! at least 1x mimalloc's; peak reserved over peak requested at most 1.10 on
//! `serving_mixed_batches` and at most 1.15 on every trace; no segment mapped or
//! unmapped after the warm-up round. The `alloc_replay` binary runs the same comparison
//! on any trace file and adds the resident bytes after `empty_cache`.

use memwarden_benches::report::{self, Ratios, times};
use memwarden_benches::{ALIGN, AllocOp, AllocTrace, Malloc, replay_pool, touch};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use memwarden_pool::{LocalPool, MemoryPool, PoolConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The overhead goal on the serving trace.
const OVERHEAD_GOAL: f64 = 1.10;
/// The overhead goal on every other trace.
const TRACE_OVERHEAD_GOAL: f64 = 1.15;

type Op = AllocOp;

struct Workload {
    name: String,
    ops: Vec<Op>,
    slots: usize,
    is_trace: bool,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let started = Instant::now();
    let mut workloads = load_traces();
    workloads.push(small_mix(if full { 200_000 } else { 20_000 }));
    println!(
        "pool_vs_malloc: {} workloads, peers pool / local / torch / glibc / mimalloc, \
         alignment {ALIGN}, first byte written",
        workloads.len()
    );
    println!(
        "\n| workload | ops | pool Mops/s | local Mops/s | torch Mops/s | glibc Mops/s | mimalloc Mops/s | pool/glibc | pool/mimalloc | reserved/requested pool | torch | pool decommits | warm maps+unmaps |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");

    let mut ratios = Ratios::default();
    let mut goals = Vec::new();
    for workload in &workloads {
        // A timed sample replays a short trace back to back until it holds at least
        // 20 000 operations, so that a sample is milliseconds, not a timer tick.
        let reps = if full {
            (20_000 / workload.ops.len()).max(1)
        } else {
            1
        };
        let rounds = if full {
            (4_000_000 / (workload.ops.len() * reps)).clamp(9, 2_001)
        } else {
            1
        };
        let figures = measure(workload, rounds, reps);
        let vs_glibc = figures.pool / figures.glibc;
        let vs_mi = figures.pool / figures.mimalloc;
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {:.3} | {:.3} | {} | {} |",
            workload.name,
            workload.ops.len(),
            figures.pool / 1e6,
            figures.local / 1e6,
            figures.torch / 1e6,
            figures.glibc / 1e6,
            figures.mimalloc / 1e6,
            times(vs_glibc),
            times(vs_mi),
            figures.overhead,
            figures.torch_overhead,
            figures.decommits,
            figures.warm_maps,
        );
        goals.push((
            format!(
                "goal {} pool >= 1x glibc: {}",
                workload.name,
                times(vs_glibc)
            ),
            vs_glibc >= 1.0,
        ));
        goals.push((
            format!(
                "goal {} pool >= 1x mimalloc: {}",
                workload.name,
                times(vs_mi)
            ),
            vs_mi >= 1.0,
        ));
        goals.push((
            format!(
                "goal {} no maps or unmaps after the warm-up round: {}",
                workload.name, figures.warm_maps
            ),
            figures.warm_maps == 0,
        ));
        if workload.is_trace && workload.name != "serving_mixed_batches" {
            goals.push((
                format!(
                    "goal {} peak reserved / peak requested <= {TRACE_OVERHEAD_GOAL}: {:.3}",
                    workload.name, figures.overhead
                ),
                figures.overhead <= TRACE_OVERHEAD_GOAL,
            ));
        }
        if workload.name == "serving_mixed_batches" {
            goals.push((
                format!(
                    "goal serving_mixed_batches peak reserved / peak requested <= {OVERHEAD_GOAL}: \
                     {:.3} (torch design: {:.3})",
                    figures.overhead, figures.torch_overhead
                ),
                figures.overhead <= OVERHEAD_GOAL,
            ));
        }
        let what = format!("ops/s {}", workload.name);
        ratios.add(&what, "pool", "glibc", vs_glibc);
        ratios.add(&what, "pool", "mimalloc", vs_mi);
        ratios.add(&what, "local", "mimalloc", figures.local / figures.mimalloc);
        ratios.add(&what, "pool", "local", figures.pool / figures.local);
    }
    report::print_summary(full, started, &goals, &ratios);
}

/// Median throughputs (ops/s) and the pools' overheads.
struct Figures {
    pool: f64,
    local: f64,
    torch: f64,
    glibc: f64,
    mimalloc: f64,
    overhead: f64,
    torch_overhead: f64,
    /// Decommit calls the pool made.
    decommits: u64,
    /// Maps and unmaps the pool made after the warm-up round.
    warm_maps: u64,
}

fn measure(workload: &Workload, rounds: usize, reps: usize) -> Figures {
    let pool = MemoryPool::new();
    let local = LocalPool::new();
    let torch = MemoryPool::with_config(PoolConfig::torch());
    let mut pool_slots: Vec<Option<memwarden_pool::Block>> = Vec::new();
    pool_slots.resize_with(workload.slots, || None);
    let mut torch_slots: Vec<Option<memwarden_pool::Block>> = Vec::new();
    torch_slots.resize_with(workload.slots, || None);
    let mut raw_slots = vec![std::ptr::null_mut::<u8>(); workload.slots];

    let mut times: [Vec<Duration>; 5] = Default::default();
    let mut warm = 0;
    // Round 0 warms every peer up and is not timed.
    for round in 0..=rounds {
        if round == 1 {
            let s = pool.stats();
            warm = s.maps + s.unmaps;
        }
        for k in 0..5 {
            let peer = (k + round) % 5;
            let took = (0..reps)
                .map(|_| match peer {
                    0 => replay_pool(&workload.ops, &mut pool_slots, |size| {
                        pool.allocate(size, ALIGN).expect("no limit")
                    }),
                    1 => replay_local(&workload.ops, &local, workload.slots),
                    2 => replay_pool(&workload.ops, &mut torch_slots, |size| {
                        torch.allocate(size, ALIGN).expect("no limit")
                    }),
                    3 => Malloc::Glibc.replay(&workload.ops, &mut raw_slots),
                    _ => Malloc::Mimalloc.replay(&workload.ops, &mut raw_slots),
                })
                .sum::<Duration>();
            if round > 0 {
                times[peer].push(took);
            }
        }
    }
    for p in [&pool, &torch] {
        p.check_invariants().expect("the pool is consistent");
    }
    let overhead = |stats: memwarden_pool::PoolStats| {
        stats.reserved.peak as f64 / stats.requested.peak.max(1) as f64
    };
    let ops = (workload.ops.len() * reps) as f64;
    let rate = |t: &mut Vec<Duration>| {
        t.sort_unstable();
        ops / t[t.len() / 2].as_secs_f64().max(1e-12)
    };
    let [p, l, t, g, m] = &mut times;
    Figures {
        pool: rate(p),
        local: rate(l),
        torch: rate(t),
        glibc: rate(g),
        mimalloc: rate(m),
        overhead: overhead(pool.stats()),
        torch_overhead: overhead(torch.stats()),
        decommits: pool.stats().decommits,
        warm_maps: pool.stats().maps + pool.stats().unmaps - warm,
    }
}

fn replay_local(ops: &[Op], pool: &LocalPool, slots: usize) -> Duration {
    let mut live: Vec<Option<memwarden_pool::LocalBlock<'_>>> = Vec::new();
    live.resize_with(slots, || None);
    let start = Instant::now();
    for op in ops {
        let slot = &mut live[op.slot as usize];
        if op.alloc {
            let mut block = pool.allocate(op.size, ALIGN).expect("no limit");
            // SAFETY: the block is live and holds at least one byte (sizes are >= 1).
            unsafe { touch(block.as_mut_ptr()) };
            *slot = Some(block);
        } else {
            drop(black_box(slot.take()));
        }
    }
    start.elapsed()
}

/// The trace files, sorted by name; empty (with a note) when the directory is missing.
fn load_traces() -> Vec<Workload> {
    let dir = memwarden_benches::shared_data("traces");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("pool_vs_malloc: no trace directory at {}", dir.display());
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "trace"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("a readable trace");
            let name = path
                .file_stem()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let trace = AllocTrace::parse(name, &text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Workload {
                name: trace.name,
                slots: trace.slots,
                ops: trace.ops,
                is_trace: true,
            }
        })
        .collect()
}

/// Random allocations and frees of log-uniform 16 B..64 KiB objects over 4 096 slots
/// (about half live), seeded, ending with everything freed.
fn small_mix(ops: usize) -> Workload {
    const SLOTS: usize = 4096;
    let mut rng = StdRng::seed_from_u64(0x600d_5eed);
    let mut live = vec![false; SLOTS];
    let mut out = Vec::with_capacity(ops + SLOTS);
    for _ in 0..ops {
        let slot = rng.random_range(0..SLOTS);
        let size = 2f64.powf(rng.random_range(4.0..16.0)) as usize;
        out.push(Op {
            alloc: !live[slot],
            slot: slot as u32,
            size,
        });
        live[slot] = !live[slot];
    }
    out.extend((0..SLOTS).filter(|&s| live[s]).map(|slot| Op {
        alloc: false,
        slot: slot as u32,
        size: 0,
    }));
    Workload {
        name: "small_mix_16B_64KiB".to_owned(),
        ops: out,
        slots: SLOTS,
        is_trace: false,
    }
}
