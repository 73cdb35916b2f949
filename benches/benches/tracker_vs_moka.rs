//! memwarden as a cache against `moka::sync::Cache` and `quick_cache`: hit ratios on
//! seeded traces and on the shared ARC traces, replay throughput, and the throughput of
//! lookups that hit.
//!
//! Run with `cargo bench -p memwarden-benches --bench tracker_vs_moka`. Under `cargo test
//! --benches` (criterion's test mode) the traces are short and every number is a smoke
//! test, not a measurement.
//!
//! Part one replays each trace of [`Trace::standard`] (Zipf 0.8, Zipf 1.0, scans mixed
//! into Zipf 0.8, a loop ten times the cache, and Zipf 1.0 with a moving hot set; item
//! sizes 1 KiB to 256 KiB) through memwarden (tracker, prioritizer and reaper behind a
//! `Lifecycle`), moka with LRU and with TinyLFU, and quick_cache, all with the same byte
//! capacity, a tenth of the trace's distinct bytes, and prints one table per trace. Every
//! engine is held to that capacity at every request: memwarden makes room before it
//! registers, and moka runs its pending tasks after every insert (which costs moka about
//! a fifth of its replay throughput against letting it batch 64 writes; its hit ratios
//! move by about a point either way). The peak column is checked: no engine ever holds
//! more than its capacity. Then the shared ARC traces (`../shared/data/cache_traces`,
//! Megiddo and Modha, FAST 2003), when the checkout has them, at 1024 and 8192 blocks of
//! 512 bytes (the `cache_replay` binary runs any trace at any capacity).
//!
//! Part two is a criterion group: `tracker.get`, `tracker.touch` and moka's `get` over a
//! Zipf stream of ids that are all resident, memwarden on the system clock as shipped.
//!
//! Part three is the cost of planning at 100 000 resources: `select` (what the lifecycle
//! and the governor plan with: victims walked off the release order) for 1 % of the
//! bytes, the full scan it replaced (`tracker.candidates()` and `plan` over them), and
//! collecting moka's (key, weight) snapshot with `iter()` for scale.
//! The summary ends with one `ratio` line per comparison, memwarden first.

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use memwarden::core::{ByteSize, ResourceId, ResourceKind};
use memwarden::prioritizer::{Policy, Request, Urgency, plan, select};
use memwarden::tracker::{ResourceSpec, Tracker};
use memwarden_benches::report::{self, Rate, Ratios, times};
use memwarden_benches::{
    CacheTrace, MemwardenConfig, MemwardenEngine, MokaEngine, MokaPolicy, Outcome, Pattern,
    Payload, QuickCacheEngine, Trace, TraceConfig, replay_requests,
};
use moka::sync::Cache;

/// The cache capacity as a fraction of a trace's distinct bytes.
const CAPACITY_FRACTION: f64 = 0.10;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let started = Instant::now();
    // Parsed first, so a bad argument fails before the replays.
    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    let mut ratios = Ratios::default();
    hit_ratios(full, &mut ratios);
    lookups(&mut criterion, &mut ratios);
    criterion.final_summary();
    tick_cost(full, &mut ratios);

    report::print_summary(full, started, &[], &ratios);
}

/// One engine's replay of one trace.
struct Row {
    engine: String,
    outcome: Outcome,
}

fn hit_ratios(full: bool, ratios: &mut Ratios) {
    let config = if full {
        TraceConfig::BENCH
    } else {
        TraceConfig::QUICK
    };
    for trace in Trace::standard(config) {
        let distinct = trace.distinct_bytes();
        let capacity = (distinct as f64 * CAPACITY_FRACTION) as u64;
        let largest = trace.sizes.iter().copied().max().unwrap_or(1);
        let rows = run_engines(capacity, (largest, trace.keys.len()), || trace.iter());
        let title = format!(
            "{}: {} requests over {} keys, {} distinct, capacity {} ({:.0}%)",
            trace.pattern,
            trace.requests.len(),
            trace.distinct_keys(),
            ByteSize::b(distinct),
            ByteSize::b(capacity),
            CAPACITY_FRACTION * 100.0,
        );
        print_table(&title, capacity, &rows);
        add_ratios(&trace.pattern.to_string(), &rows, ratios);
    }
    arc_traces(full, ratios);
}

/// The shared ARC traces at 1024 and 8192 blocks (the whole trace in bench mode, its
/// first 20 000 requests under `cargo test --benches`), when the checkout has them.
fn arc_traces(full: bool, ratios: &mut Ratios) {
    let dir = memwarden_benches::shared_data("cache_traces");
    for name in ["OLTP", "P3"] {
        let path = dir.join(format!("{name}.lis.zst"));
        if !path.is_file() {
            println!("\n### {name}: {} not found, skipped", path.display());
            continue;
        }
        let limit = if full { None } else { Some(20_000) };
        let trace = CacheTrace::load(&path, 512, limit).expect("the shared trace parses");
        for blocks in [1024u64, 8192] {
            let capacity = blocks * 512;
            let largest = trace.sizes.iter().copied().max().unwrap_or(1);
            let rows = run_engines(capacity, (largest, trace.keys.len()), || trace.iter());
            let title = format!(
                "{name} (ARC, FAST 2003): {} requests over {} blocks, capacity {blocks} blocks",
                trace.requests.len(),
                trace.keys.len(),
            );
            print_table(&title, capacity, &rows);
            add_ratios(&format!("{name}-{blocks}"), &rows, ratios);
        }
    }
}

/// memwarden and its three peers over the same requests at the same capacity (`items`:
/// the largest item's bytes and the distinct keys, for quick_cache's sizing).
fn run_engines<'a, I>(capacity: u64, items: (u32, usize), requests: impl Fn() -> I) -> Vec<Row>
where
    I: Iterator<Item = (&'a ResourceId, u32)>,
{
    let mut rows = Vec::new();
    let mut push = |engine: String, outcome: Outcome| {
        assert!(
            outcome.peak_bytes <= capacity,
            "{engine} overran its capacity"
        );
        rows.push(Row { engine, outcome });
    };
    let mut engine = MemwardenEngine::new(capacity, MemwardenConfig::default());
    push(
        "memwarden".to_owned(),
        replay_requests(&mut engine, requests()),
    );
    for policy in [MokaPolicy::Lru, MokaPolicy::TinyLfu] {
        let mut engine = MokaEngine::new(capacity, policy, 1);
        push(policy.to_string(), replay_requests(&mut engine, requests()));
    }
    let mut engine = QuickCacheEngine::new(capacity, items.0, items.1);
    push(
        "quick_cache".to_owned(),
        replay_requests(&mut engine, requests()),
    );
    rows
}

/// memwarden's ratios against each peer: hit ratio, byte hit ratio, replay throughput.
fn add_ratios(what: &str, rows: &[Row], ratios: &mut Ratios) {
    let (ours, theirs) = rows.split_at(1);
    let ours = &ours[0];
    for other in theirs {
        let pairs = [
            (
                "hit-ratio",
                ours.outcome.hit_ratio() / other.outcome.hit_ratio(),
            ),
            (
                "byte-hit-ratio",
                ours.outcome.byte_hit_ratio() / other.outcome.byte_hit_ratio(),
            ),
            (
                "replay-ops/s",
                ours.outcome.ops_per_sec() / other.outcome.ops_per_sec(),
            ),
        ];
        for (metric, ratio) in pairs {
            ratios.add(
                &format!("{metric} {what}"),
                &ours.engine,
                &other.engine,
                ratio,
            );
        }
    }
}

fn print_table(title: &str, capacity: u64, rows: &[Row]) {
    let mut out = String::new();
    let _ = writeln!(out, "\n### {title}");
    let _ = writeln!(
        out,
        "| engine          | hit ratio | memwarden / this | byte hit ratio | replay ops/s | peak / capacity |"
    );
    let _ = writeln!(
        out,
        "|-----------------|-----------|------------------|----------------|--------------|-----------------|"
    );
    let base = rows[0].outcome.hit_ratio();
    for row in rows {
        let o = &row.outcome;
        let _ = writeln!(
            out,
            "| {:<15} | {:>9.4} | {:>16} | {:>14.4} | {:>12} | {:>14.2}% |",
            row.engine,
            o.hit_ratio(),
            times(base / o.hit_ratio()),
            o.byte_hit_ratio(),
            si(o.ops_per_sec()),
            o.peak_bytes as f64 / capacity as f64 * 100.0,
        );
    }
    print!("{out}");
}

/// `1234567.0` as `1.23 M`.
fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Resident keys of the lookup benchmark.
const LOOKUP_KEYS: usize = 10_000;
/// Lookups per criterion iteration.
const LOOKUP_BATCH: usize = 1024;

/// Times `iters` batches of lookups, each batch the next window of `stream`.
fn timed(iters: u64, stream: &[&str], rate: &Rate, mut lookup: impl FnMut(&str)) -> Duration {
    let windows = stream.len() / LOOKUP_BATCH;
    let start = Instant::now();
    for i in 0..iters as usize {
        let at = (i % windows) * LOOKUP_BATCH;
        for &id in &stream[at..at + LOOKUP_BATCH] {
            lookup(id);
        }
    }
    rate.record(iters * LOOKUP_BATCH as u64, start.elapsed())
}

fn lookups(c: &mut Criterion, ratios: &mut Ratios) {
    let config = TraceConfig {
        keys: LOOKUP_KEYS,
        requests: 1 << 16,
        ..TraceConfig::BENCH
    };
    let trace = Trace::generate(Pattern::Zipf { exponent: 1.0 }, config);
    let stream: Vec<&str> = trace
        .requests
        .iter()
        .map(|&k| trace.keys[k as usize].as_str())
        .collect();

    // memwarden as shipped: the system clock, no budget (nothing is evicted here).
    let tracker = Tracker::new();
    let cache: Cache<ResourceId, Arc<Payload>> = Cache::builder()
        .max_capacity(trace.sizes.iter().map(|&s| u64::from(s)).sum::<u64>() * 2)
        .weigher(|_, v: &Arc<Payload>| v.bytes)
        .build();
    for (id, &bytes) in trace.keys.iter().zip(&trace.sizes) {
        let spec = ResourceSpec::new(id.clone(), ResourceKind::TempBuffers, u64::from(bytes));
        tracker.register(spec, Payload { bytes }).expect("fresh id");
        cache.insert(id.clone(), Arc::new(Payload { bytes }));
    }
    cache.run_pending_tasks();
    assert_eq!(
        cache.entry_count(),
        LOOKUP_KEYS as u64,
        "moka holds every key"
    );
    assert!(
        stream
            .iter()
            .all(|id| tracker.contains(id) && cache.contains_key(*id))
    );

    let (get, touch, moka) = (Rate::default(), Rate::default(), Rate::default());
    let mut group = c.benchmark_group("lookup_hits");
    group.throughput(Throughput::Elements(LOOKUP_BATCH as u64));
    group.bench_function("memwarden_get", |b| {
        b.iter_custom(|iters| {
            timed(iters, &stream, &get, |id| {
                black_box(
                    tracker
                        .get::<Payload>(black_box(id))
                        .expect("payloads only"),
                );
            })
        });
    });
    group.bench_function("memwarden_touch", |b| {
        b.iter_custom(|iters| {
            timed(iters, &stream, &touch, |id| {
                black_box(tracker.touch(black_box(id)));
            })
        });
    });
    group.bench_function("moka_get", |b| {
        b.iter_custom(|iters| {
            timed(iters, &stream, &moka, |id| {
                black_box(cache.get(black_box(id)));
            })
        });
    });
    group.finish();

    println!("\n### lookups that hit: {LOOKUP_KEYS} resident keys, Zipf 1.0 stream, one thread");
    println!("| engine          | lookups/s | memwarden / moka |");
    println!("|-----------------|-----------|------------------|");
    for (name, rate) in [
        ("memwarden get", &get),
        ("memwarden touch", &touch),
        ("moka get", &moka),
    ] {
        println!(
            "| {name:<15} | {:>9} | {:>15.3}x |",
            si(rate.per_sec()),
            rate.per_sec() / moka.per_sec()
        );
    }
    ratios.add(
        "lookup-ops/s",
        "memwarden-get",
        "moka-get",
        get.per_sec() / moka.per_sec(),
    );
    ratios.add(
        "lookup-ops/s",
        "memwarden-touch",
        "moka-get",
        touch.per_sec() / moka.per_sec(),
    );
}

/// Part three: what one monitor tick costs at 100 000 resources.
fn tick_cost(full: bool, ratios: &mut Ratios) {
    let resources: u64 = if full { 100_000 } else { 5_000 };
    let rounds = if full { 20 } else { 2 };
    let tracker = Tracker::new();
    let cache: Cache<ResourceId, Arc<Payload>> = Cache::builder()
        .weigher(|_, v: &Arc<Payload>| v.bytes)
        .build();
    for i in 0..resources {
        let id = ResourceId::from(format!("resource-{i:06}"));
        let bytes = 1024 + (i * 7919 % 262_144) as u32;
        let spec = ResourceSpec::new(id.clone(), ResourceKind::RenderCache, u64::from(bytes));
        tracker.register(spec, Payload { bytes }).expect("fresh id");
        cache.insert(id, Arc::new(Payload { bytes }));
    }
    cache.run_pending_tasks();
    let time = |f: &mut dyn FnMut() -> usize| {
        let start = Instant::now();
        for _ in 0..rounds {
            assert_eq!(black_box(f()), resources as usize);
        }
        start.elapsed() / rounds
    };
    let snapshot = time(&mut || tracker.candidates().candidates.len());
    let planned = time(&mut || {
        let set = tracker.candidates();
        let p = plan(
            &set,
            &Policy::default(),
            &Request::new(Urgency::Critical, tracker.totals().bytes / 100),
        );
        black_box(p.victims.len());
        set.candidates.len()
    });
    let selected = time(&mut || {
        let p = select(
            &tracker,
            &Policy::default(),
            &Request::new(Urgency::Critical, tracker.totals().bytes / 100),
            &|_| false,
        );
        black_box(p.victims.len());
        resources as usize
    });
    let moka = time(&mut || {
        cache
            .iter()
            .map(|(k, v)| (k, v.bytes))
            .collect::<Vec<_>>()
            .len()
    });
    println!("\n### planning: {resources} resources, mean of {rounds} rounds");
    println!(
        "| memwarden select, 1 % of bytes | {:>9.3} ms |",
        selected.as_secs_f64() * 1e3
    );
    println!(
        "| memwarden candidates()      | {:>9.2} ms |",
        snapshot.as_secs_f64() * 1e3
    );
    println!(
        "| memwarden candidates + plan | {:>9.2} ms |",
        planned.as_secs_f64() * 1e3
    );
    println!(
        "| moka iter() snapshot        | {:>9.2} ms |",
        moka.as_secs_f64() * 1e3
    );
    ratios.add(
        "plan-time",
        "memwarden-select",
        "full-scan-plan",
        selected.as_secs_f64() / planned.as_secs_f64(),
    );
    ratios.add(
        "tick-time",
        "memwarden-candidates",
        "moka-iter",
        snapshot.as_secs_f64() / moka.as_secs_f64(),
    );
    ratios.add(
        "tick-time",
        "memwarden-candidates+plan",
        "moka-iter",
        planned.as_secs_f64() / moka.as_secs_f64(),
    );
}
