//! Replays allocation traces through memwarden's pool, glibc `malloc` and mimalloc in
//! the same run, and prints throughput, the pool's memory overhead and the system calls
//! it made.
//!
//! ```text
//! cargo run --release -p memwarden-benches --bin alloc_replay -- TRACE… [--format json|text]
//!     [--rounds N] [--max-overhead F|none] [--defer-merge] [--in-process]
//! ```
//!
//! A trace has lines `a,ID,BYTES` and `f,ID,BYTES` (`#` comments), as in
//! `shared/data/traces`. A bad trace (a malformed line, a free of an id not allocated)
//! exits with status 2 naming the file and the line.
//!
//! Every trace is replayed in a fresh process (the tool runs itself once per trace), so
//! that no engine carries state from one trace to the next: glibc raises its mmap
//! threshold after freeing a large mapped block, and then serves blocks of that size
//! from its heap for the rest of the process, which makes its figure on a trace depend
//! on the traces replayed before it. `--in-process` replays them all in one process.
//!
//! `--rounds N` sets the timed rounds (by default enough for about two million
//! operations, from 5 to 201); `--max-overhead F|none` and `--defer-merge` change the
//! pool's configuration, which is otherwise `PoolConfig::default()`.
//!
//! Each engine replays the trace back to back (at least 20 000 operations a sample),
//! touching the first byte of every block; round 0 warms up, and a figure is the median
//! of the timed rounds, the engines taking turns in a rotating order. The pool is one
//! [`MemoryPool`] with the default configuration kept across rounds, as in a server.
//! After the timed rounds the pool replays the trace once more up to its peak, writing
//! every byte of the live blocks, empties its cache and measures with `mincore` how much
//! of its memory is still resident against the bytes still allocated.
//!
//! One JSON object per trace: `{"trace", "ops", "rounds", "engines": {"pool": {"mops",
//! "peak_reserved_over_requested", "maps", "unmaps", "commits", "decommits",
//! "warm_maps", "warm_unmaps", "resident_after_empty_cache", "allocated_after_empty_cache"},
//! "glibc": {"mops"}, "mimalloc": {"mops"}}}` (`warm_*`: calls in the rounds after the
//! first).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use memwarden_benches::{ALIGN, AllocTrace, Malloc, replay_pool};
use memwarden_pool::{Block, MemoryPool, PoolConfig};
use serde_json::json;

struct Args {
    traces: Vec<PathBuf>,
    json: bool,
    rounds: Option<usize>,
    max_overhead: Option<Option<f64>>,
    defer: bool,
    in_process: bool,
}

fn usage() -> String {
    "usage: alloc_replay TRACE... [--format json|text] [--rounds N] [--max-overhead F|none] \
     [--defer-merge] [--in-process]"
        .to_owned()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        traces: Vec::new(),
        json: true,
        rounds: None,
        max_overhead: None,
        defer: false,
        in_process: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--format" => {
                args.json = match value("--format")?.as_str() {
                    "json" => true,
                    "text" => false,
                    other => return Err(format!("--format {other:?}: json or text")),
                }
            }
            "--rounds" => {
                let v = value("--rounds")?;
                args.rounds = Some(
                    v.parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("--rounds {v:?}: a positive count"))?,
                );
            }
            "--max-overhead" => {
                let v = value("--max-overhead")?;
                args.max_overhead = Some(if v == "none" {
                    None
                } else {
                    Some(
                        v.parse::<f64>()
                            .ok()
                            .filter(|f| f.is_finite() && *f >= 0.0)
                            .ok_or_else(|| format!("--max-overhead {v:?}: a fraction or none"))?,
                    )
                });
            }
            "--defer-merge" => args.defer = true,
            "--in-process" => args.in_process = true,
            "--help" | "-h" => return Err(usage()),
            "--bench" => {}
            flag if flag.starts_with("--") => {
                return Err(format!("unknown flag {flag}\n{}", usage()));
            }
            path => args.traces.push(PathBuf::from(path)),
        }
    }
    if args.traces.is_empty() {
        return Err(usage());
    }
    Ok(args)
}

/// Runs this tool once per trace, each in a process of its own, passing the flags on,
/// and prints what they print (the table's header once).
fn replay_in_children(args: &Args) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("alloc_replay: cannot find its own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let flags: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !args.traces.iter().any(|t| t.as_os_str() == a.as_str()))
        .collect();
    for (i, trace) in args.traces.iter().enumerate() {
        let out = std::process::Command::new(&exe)
            .args(&flags)
            .arg("--in-process")
            .arg(trace)
            .stderr(std::process::Stdio::inherit())
            .output();
        let out = match out {
            Ok(out) if out.status.success() => out,
            Ok(out) => {
                eprintln!("alloc_replay: {} failed: {}", trace.display(), out.status);
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("alloc_replay: cannot run {}: {e}", exe.display());
                return ExitCode::FAILURE;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        // The table's header and rule come once.
        let skip = if args.json || i == 0 { 0 } else { 2 };
        for line in text.lines().skip(skip) {
            println!("{line}");
        }
    }
    ExitCode::SUCCESS
}

fn load(path: &Path) -> Result<AllocTrace, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    AllocTrace::parse(name, &text).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("alloc_replay: {msg}");
            return ExitCode::from(2);
        }
    };
    // Every trace is parsed before any is replayed: a bad one fails fast.
    let mut traces = Vec::new();
    for path in &args.traces {
        match load(path) {
            Ok(trace) => traces.push(trace),
            Err(msg) => {
                eprintln!("alloc_replay: {msg}");
                return ExitCode::from(2);
            }
        }
    }
    if traces.len() > 1 && !args.in_process {
        return replay_in_children(&args);
    }
    if !args.json {
        println!(
            "| trace | ops | pool Mops/s | glibc Mops/s | mimalloc Mops/s | pool/glibc | pool/mimalloc | reserved/requested | maps | unmaps | commits | decommits | warm maps+unmaps | resident/allocated after empty_cache |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    }
    for trace in &traces {
        let mut config = PoolConfig::default();
        if args.defer {
            config.defer_merge = true;
        }
        if let Some(overhead) = args.max_overhead {
            config.max_overhead = overhead;
        }
        let r = replay(trace, config, args.rounds);
        if args.json {
            println!(
                "{}",
                json!({
                    "trace": trace.name,
                    "ops": trace.ops.len(),
                    "rounds": r.rounds,
                    "engines": {
                        "pool": {
                            "mops": r.pool / 1e6,
                            "peak_reserved_over_requested": r.overhead,
                            "maps": r.maps,
                            "unmaps": r.unmaps,
                            "commits": r.commits,
                            "decommits": r.decommits,
                            "warm_maps": r.warm_maps,
                            "warm_unmaps": r.warm_unmaps,
                            "resident_after_empty_cache": r.resident,
                            "allocated_after_empty_cache": r.allocated,
                        },
                        "glibc": {"mops": r.glibc / 1e6},
                        "mimalloc": {"mops": r.mimalloc / 1e6},
                    }
                })
            );
        } else {
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2}x | {:.2}x | {:.3} | {} | {} | {} | {} | {} | {:.3} |",
                trace.name,
                trace.ops.len(),
                r.pool / 1e6,
                r.glibc / 1e6,
                r.mimalloc / 1e6,
                r.pool / r.glibc,
                r.pool / r.mimalloc,
                r.overhead,
                r.maps,
                r.unmaps,
                r.commits,
                r.decommits,
                r.warm_maps + r.warm_unmaps,
                r.resident as f64 / r.allocated.max(1) as f64,
            );
        }
    }
    ExitCode::SUCCESS
}

/// Throughputs (ops/s) and the pool's figures.
struct Replayed {
    rounds: usize,
    pool: f64,
    glibc: f64,
    mimalloc: f64,
    overhead: f64,
    maps: u64,
    unmaps: u64,
    commits: u64,
    decommits: u64,
    warm_maps: u64,
    warm_unmaps: u64,
    resident: u64,
    allocated: u64,
}

fn replay(trace: &AllocTrace, config: PoolConfig, rounds: Option<usize>) -> Replayed {
    let ops = trace.ops.len().max(1);
    let reps = (20_000 / ops).max(1);
    let rounds = rounds.unwrap_or_else(|| (2_000_000 / (ops * reps)).clamp(5, 201));
    let pool = MemoryPool::with_config(config);
    let mut blocks: Vec<Option<Block>> = Vec::new();
    blocks.resize_with(trace.slots, || None);
    let mut raw = vec![std::ptr::null_mut::<u8>(); trace.slots];
    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut after_warmup = (0, 0);
    for round in 0..=rounds {
        for k in 0..3 {
            let engine = (k + round) % 3;
            let took: Duration = (0..reps)
                .map(|_| match engine {
                    0 => replay_pool(&trace.ops, &mut blocks, |size| {
                        pool.allocate(size, ALIGN).expect("no limit")
                    }),
                    1 => Malloc::Glibc.replay(&trace.ops, &mut raw),
                    _ => Malloc::Mimalloc.replay(&trace.ops, &mut raw),
                })
                .sum();
            if round > 0 {
                times[engine].push(took);
            }
        }
        if round == 0 {
            let s = pool.stats();
            after_warmup = (s.maps, s.unmaps);
        }
    }
    pool.check_invariants().expect("the pool is consistent");
    let stats = pool.stats();
    let (resident, allocated) = resident_after_empty_cache(trace, &pool, &mut blocks);
    let rate = |t: &mut Vec<Duration>| {
        t.sort_unstable();
        (ops * reps) as f64 / t[t.len() / 2].as_secs_f64().max(1e-12)
    };
    let [p, g, m] = &mut times;
    Replayed {
        rounds,
        pool: rate(p),
        glibc: rate(g),
        mimalloc: rate(m),
        overhead: stats.reserved.peak as f64 / stats.requested.peak.max(1) as f64,
        maps: stats.maps,
        unmaps: stats.unmaps,
        commits: stats.commits,
        decommits: stats.decommits,
        warm_maps: stats.maps - after_warmup.0,
        warm_unmaps: stats.unmaps - after_warmup.1,
        resident,
        allocated,
    }
}

/// Replays the trace up to its peak of live bytes writing every byte of each block,
/// empties the cache, and returns the pool's resident bytes (by `mincore`) and its
/// allocated bytes at that moment; then frees the rest.
fn resident_after_empty_cache(
    trace: &AllocTrace,
    pool: &MemoryPool,
    blocks: &mut [Option<Block>],
) -> (u64, u64) {
    let peak = trace.peak_bytes();
    let mut live = 0u64;
    for op in &trace.ops {
        let slot = &mut blocks[op.slot as usize];
        if op.alloc {
            let mut block = pool.allocate(op.size, ALIGN).expect("no limit");
            block.as_mut_slice().fill(1);
            live += op.size as u64;
            *slot = Some(block);
            if live == peak {
                break;
            }
        } else if let Some(block) = slot.take() {
            live -= block.len() as u64;
        }
    }
    pool.empty_cache();
    let allocated = pool.stats().allocated.current;
    let resident = pool
        .inspect()
        .segments
        .iter()
        .map(|s| resident_bytes(s.addr, s.size as usize))
        .sum();
    blocks.iter_mut().for_each(|b| drop(b.take()));
    (resident, allocated)
}

/// Bytes of `[addr, addr + len)` resident in memory, by `mincore`.
fn resident_bytes(addr: usize, len: usize) -> u64 {
    if len == 0 {
        return 0;
    }
    // SAFETY: `sysconf` only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: the range is a live segment of the pool (page-aligned, mapped), and `vec`
    // has one byte per page of it.
    let rc = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|&&v| v & 1 == 1).count() as u64 * page as u64
}
