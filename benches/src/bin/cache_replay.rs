//! Replays a cache trace through memwarden, moka (LRU and TinyLFU) and quick_cache at the
//! same byte capacities, and prints each engine's hit ratios, throughput and peak.
//!
//! ```text
//! cargo run --release -p memwarden-benches --bin cache_replay -- TRACE --capacity N[,N…]
//!     [--item-bytes B] [--format json|text] [--limit REQUESTS]
//! ```
//!
//! TRACE is an ARC `.lis` block trace, plain or `.lis.zst` (lines `start_block n_blocks
//! ignored request_no`; each block one key of `--item-bytes` bytes, 512 by default;
//! capacities in blocks, or in bytes with a unit such as `64MiB`), or any other file as a
//! CSV of `key,bytes` requests, one per line (capacities in bytes: `1048576`, `64MiB`,
//! `1GiB`). `--limit` replays the first requests only; `--engines` runs some of the
//! engines only (memwarden's figures do not depend on the others'). A file that cannot be read or a
//! line that does not parse exits with status 2, naming the file and the line.
//!
//! Every engine sees the same keys, sizes and capacity:
//! - `memwarden`: a `Tracker` held to the capacity by `Lifecycle::make_room` before each
//!   registration that would pass it, the path a governor's admission takes (see
//!   `MemwardenEngine`);
//! - `moka-lru`, `moka-tinylfu`: `moka::sync::Cache` weighed by size, its pending work run
//!   after every insert so that it holds the capacity;
//! - `quick_cache`: `quick_cache::sync::Cache` weighed by size.
//!
//! Each engine's resident bytes are checked against the capacity after every insert;
//! `over_capacity` says whether an engine ever held more. One JSON object per capacity:
//! `{"trace", "capacity_bytes", "capacity_blocks", "requests", "engines": {"memwarden":
//! {"hit_ratio", "byte_hit_ratio", "ops_per_sec", "peak_bytes", "over_capacity"},
//! "moka-lru": {…}, "moka-tinylfu": {…}, "quick_cache": {…}}}` (`capacity_blocks` only
//! for a block trace). `--format text` prints a table per capacity, and a last table of
//! memwarden's hit ratio against the better of the two moka policies and the best peer.

use std::path::PathBuf;
use std::process::ExitCode;

use memwarden::core::ByteSize;
use memwarden_benches::{
    CacheTrace, MemwardenConfig, MemwardenEngine, MokaEngine, MokaPolicy, Outcome,
    QuickCacheEngine, replay_requests,
};
use serde_json::json;

const ENGINES: [&str; 4] = ["memwarden", "moka-lru", "moka-tinylfu", "quick_cache"];

struct Args {
    trace: PathBuf,
    capacities: Vec<String>,
    item_bytes: u32,
    json: bool,
    limit: Option<usize>,
    engines: Option<Vec<String>>,
}

fn usage() -> String {
    "usage: cache_replay TRACE --capacity N[,N...] [--item-bytes B] [--format json|text] \
     [--limit REQUESTS] [--engines memwarden,moka-lru,moka-tinylfu,quick_cache]"
        .to_owned()
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut trace, mut capacities) = (None, Vec::new());
    let (mut item_bytes, mut json, mut limit, mut engines) = (512u32, true, None, None);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--capacity" => {
                capacities.extend(value("--capacity")?.split(',').map(str::to_owned));
            }
            "--item-bytes" => {
                let v = value("--item-bytes")?;
                item_bytes = v
                    .parse()
                    .ok()
                    .filter(|&b| b > 0)
                    .ok_or_else(|| format!("--item-bytes {v:?} is not a positive number"))?;
            }
            "--format" => {
                json = match value("--format")?.as_str() {
                    "json" => true,
                    "text" => false,
                    other => return Err(format!("--format {other:?}: expected json or text")),
                };
            }
            "--limit" => {
                let v = value("--limit")?;
                limit = Some(
                    v.parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("--limit {v:?} is not a positive number"))?,
                );
            }
            "--engines" => {
                let list: Vec<String> = value("--engines")?.split(',').map(str::to_owned).collect();
                if let Some(bad) = list.iter().find(|e| !ENGINES.contains(&e.as_str())) {
                    return Err(format!(
                        "unknown engine {bad:?}; the engines are {}",
                        ENGINES.join(", ")
                    ));
                }
                engines = Some(list);
            }
            "-h" | "--help" => return Err(usage()),
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{}", usage()));
            }
            path if trace.is_none() => trace = Some(PathBuf::from(path)),
            extra => {
                return Err(format!(
                    "one trace at a time, not also {extra:?}\n{}",
                    usage()
                ));
            }
        }
    }
    let trace = trace.ok_or_else(usage)?;
    if capacities.is_empty() {
        return Err(format!("--capacity is required\n{}", usage()));
    }
    Ok(Args {
        trace,
        capacities,
        item_bytes,
        json,
        limit,
        engines,
    })
}

/// A capacity in bytes: a plain number is blocks for a block trace and bytes otherwise;
/// a number with a unit (`64MiB`) is bytes.
fn capacity_bytes(text: &str, trace: &CacheTrace, item_bytes: u32) -> Result<u64, String> {
    let text = text.trim();
    let bytes = if let Ok(n) = text.parse::<u64>() {
        if trace.blocks {
            n.checked_mul(u64::from(item_bytes))
                .ok_or_else(|| format!("capacity {text:?} blocks overflows"))?
        } else {
            n
        }
    } else {
        text.parse::<ByteSize>()
            .map_err(|e| format!("capacity {text:?}: {e}"))?
            .as_u64()
    };
    if bytes == 0 {
        return Err(format!("capacity {text:?} is zero"));
    }
    Ok(bytes)
}

struct Run {
    engine: &'static str,
    outcome: Outcome,
}

fn run_engine(name: &'static str, capacity: u64, trace: &CacheTrace) -> Run {
    let requests = trace.iter();
    let outcome = match name {
        "memwarden" => {
            let mut engine = MemwardenEngine::new(capacity, MemwardenConfig::default());
            replay_requests(&mut engine, requests)
        }
        "moka-lru" => replay_requests(&mut MokaEngine::new(capacity, MokaPolicy::Lru, 1), requests),
        "moka-tinylfu" => replay_requests(
            &mut MokaEngine::new(capacity, MokaPolicy::TinyLfu, 1),
            requests,
        ),
        _ => {
            let largest = trace.sizes.iter().copied().max().unwrap_or(1);
            let mut engine = QuickCacheEngine::new(capacity, largest, trace.keys.len());
            replay_requests(&mut engine, requests)
        }
    };
    Run {
        engine: name,
        outcome,
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let trace = match CacheTrace::load(&args.trace, args.item_bytes, args.limit) {
        Ok(trace) => trace,
        Err(e) => {
            eprintln!("cache_replay: {e}");
            return ExitCode::from(2);
        }
    };
    let mut capacities = Vec::new();
    for text in &args.capacities {
        match capacity_bytes(text, &trace, args.item_bytes) {
            Ok(bytes) => capacities.push(bytes),
            Err(message) => {
                eprintln!("cache_replay: {message}");
                return ExitCode::from(2);
            }
        }
    }
    let mut summary = Vec::new();
    for &capacity in &capacities {
        let runs: Vec<Run> = ENGINES
            .iter()
            .filter(|&&name| {
                args.engines
                    .as_ref()
                    .is_none_or(|e| e.iter().any(|x| x == name))
            })
            .map(|&name| run_engine(name, capacity, &trace))
            .collect();
        if args.json {
            let engines: serde_json::Map<String, serde_json::Value> = runs
                .iter()
                .map(|r| {
                    let o = &r.outcome;
                    (
                        r.engine.to_owned(),
                        json!({
                            "hit_ratio": o.hit_ratio(),
                            "byte_hit_ratio": o.byte_hit_ratio(),
                            "ops_per_sec": o.ops_per_sec(),
                            "peak_bytes": o.peak_bytes,
                            "over_capacity": o.peak_bytes > capacity,
                        }),
                    )
                })
                .collect();
            let mut object = json!({
                "trace": trace.name,
                "capacity_bytes": capacity,
                "requests": trace.requests.len(),
                "engines": engines,
            });
            if trace.blocks {
                object["capacity_blocks"] = json!(capacity / u64::from(args.item_bytes));
            }
            println!("{object}");
        } else {
            print_table(&trace, capacity, args.item_bytes, &runs);
        }
        summary.push((capacity, runs));
    }
    if !args.json {
        print_summary(&trace, args.item_bytes, &summary);
    }
    ExitCode::SUCCESS
}

fn capacity_label(trace: &CacheTrace, capacity: u64, item_bytes: u32) -> String {
    if trace.blocks {
        format!("{} blocks", capacity / u64::from(item_bytes))
    } else {
        ByteSize::b(capacity).to_string()
    }
}

fn print_table(trace: &CacheTrace, capacity: u64, item_bytes: u32, runs: &[Run]) {
    println!(
        "\n### {}: {} requests over {} keys, capacity {} ({})",
        trace.name,
        trace.requests.len(),
        trace.keys.len(),
        capacity_label(trace, capacity, item_bytes),
        ByteSize::b(capacity),
    );
    println!(
        "| engine | hit ratio | byte hit ratio | requests/s | memwarden req/s over this | peak / capacity |"
    );
    println!("|---|---|---|---|---|---|");
    let ours = runs
        .iter()
        .find(|r| r.engine == "memwarden")
        .map_or(f64::NAN, |r| r.outcome.ops_per_sec());
    for run in runs {
        let o = &run.outcome;
        let over = if o.peak_bytes > capacity { " OVER" } else { "" };
        println!(
            "| {} | {:.3} % | {:.3} % | {:.0} | {:.2}x | {:.4}{over} |",
            run.engine,
            o.hit_ratio() * 100.0,
            o.byte_hit_ratio() * 100.0,
            o.ops_per_sec(),
            ours / o.ops_per_sec(),
            o.peak_bytes as f64 / capacity as f64,
        );
    }
}

fn print_summary(trace: &CacheTrace, item_bytes: u32, summary: &[(u64, Vec<Run>)]) {
    println!(
        "\n### {}: memwarden against the peers (hit ratio, points)",
        trace.name
    );
    println!(
        "| capacity | memwarden | better moka | memwarden - better moka | best peer | memwarden - best peer |"
    );
    println!("|---|---|---|---|---|---|");
    let (mut sum_ours, mut sums) = (0.0, [0.0f64; 4]);
    for (capacity, runs) in summary {
        let ratio = |name: &str| {
            runs.iter()
                .find(|r| r.engine == name)
                .map_or(0.0, |r| r.outcome.hit_ratio() * 100.0)
        };
        let ours = ratio("memwarden");
        let moka = ratio("moka-lru").max(ratio("moka-tinylfu"));
        let best = moka.max(ratio("quick_cache"));
        sum_ours += ours;
        for (sum, name) in sums.iter_mut().zip(ENGINES) {
            *sum += ratio(name);
        }
        println!(
            "| {} | {ours:.3} | {moka:.3} | {:+.3} | {best:.3} | {:+.3} |",
            capacity_label(trace, *capacity, item_bytes),
            ours - moka,
            ours - best,
        );
    }
    let n = summary.len().max(1) as f64;
    let best_mean = sums[1..].iter().fold(0.0f64, |a, &b| a.max(b)) / n;
    println!(
        "| mean | {:.3} | | | {best_mean:.3} | {:+.3} |",
        sum_ours / n,
        sum_ours / n - best_mean
    );
}
