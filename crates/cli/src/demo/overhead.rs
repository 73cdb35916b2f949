//! `memwarden demo --overhead`: what memwarden costs, measured against the same session
//! without it.
//!
//! Three runs of the same seeded steps, each in a fresh child process (so each one's
//! peak RSS and allocator state are its own), repeated and the fastest of each kept:
//!
//! - **plain**: no memwarden at all. Frames, clips and subtitle tracks live in plain
//!   maps and are never released, models are mapped once and kept; scratch space is
//!   dropped when the inference ends. This needs room for the whole session (about
//!   2 GiB at the default size).
//! - **unbounded**: the session through tracker, registry, governor (monitor thread and
//!   an admission check before every load), defragmenter and sweeps, with a budget and
//!   caps it never reaches. Its time over the plain run's is the bookkeeping overhead.
//! - **budgeted**: the real session under the budget. Its time over the plain run's is
//!   the price of the budget: what was released has to be restored or rebuilt.
//!
//! Most of each run's time is page faults, whose cost on a shared virtual machine moves
//! from run to run by more than the overhead being measured; for a repeatable figure,
//! `benches/scripts/demo_overhead_instructions.sh` counts the instructions of the plain
//! and unbounded runs with callgrind.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use memwarden::core::ByteSize;
use memwarden::snapshot::RenderFrame;
use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use super::args::{Args, Mode};
use super::models::{self, DemoModel};
use super::workload::{self, Clip, Scratch, Script, Step, SubtitleTrack};

/// The plain run's report: enough for the comparison.
#[derive(Debug, Serialize)]
pub(super) struct PlainReport {
    mode: &'static str,
    steps: u64,
    wall_seconds: f64,
    cpu_seconds: Option<f64>,
    rss: PlainRss,
}

/// CPU time the whole process has used, every thread, user and system; `None` where
/// the OS cannot say.
pub(super) fn cpu_seconds() -> Option<f64> {
    #[cfg(unix)]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `usage` points to writable memory the size of a `rusage`, which is all
        // getrusage writes; RUSAGE_SELF is a valid `who`.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: getrusage returned 0, so it filled the struct (and it was zeroed before).
        let usage = unsafe { usage.assume_init() };
        let seconds =
            |t: libc::timeval| t.tv_sec as f64 + f64::from(t.tv_usec as i32) / 1_000_000.0;
        Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[derive(Debug, Serialize)]
struct PlainRss {
    peak_bytes: u64,
}

/// The session without memwarden: everything loaded stays.
pub(super) fn run_plain(args: &Args, models_dir: &Path) -> anyhow::Result<PlainReport> {
    let mut script = Script::new(StdRng::seed_from_u64(args.seed), models::MODELS.len())?;
    let mut frames: HashMap<usize, RenderFrame> = HashMap::new();
    let mut clips: HashMap<usize, Clip> = HashMap::new();
    let mut tracks: HashMap<usize, SubtitleTrack> = HashMap::new();
    let mut mapped: HashMap<usize, memmap2::Mmap> = HashMap::new();
    let mut fill = 0u8;
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    for _ in 0..args.steps {
        match script.next_step() {
            Step::Frame(i) => {
                let frame = frames.entry(i).or_insert_with(|| {
                    fill = fill.wrapping_add(1);
                    workload::render_frame(i, fill)
                });
                workload::consume(workload::luminance(frame));
            }
            Step::Clip(i) => {
                let clip = clips.entry(i).or_insert_with(|| {
                    fill = fill.wrapping_add(1);
                    Clip::decode(i, fill)
                });
                workload::consume(clip.level());
            }
            Step::Subtitle { track, at_ms } => {
                let parsed = tracks.entry(track).or_insert_with(|| {
                    fill = fill.wrapping_add(1);
                    SubtitleTrack::parse(track, fill)
                });
                workload::consume(parsed.lookup(at_ms));
            }
            Step::Inference(m) => {
                let weights = match mapped.entry(m) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(map(&models::MODELS[m], models_dir, args.small)?)
                    }
                };
                fill = fill.wrapping_add(1);
                let scratch = Mutex::new(Scratch::new(fill));
                workload::consume(workload::run_model(weights, &mut scratch.lock().0));
            }
        }
    }
    Ok(PlainReport {
        mode: "plain",
        steps: args.steps,
        wall_seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds()
            .zip(cpu_started)
            .map(|(end, start)| end - start),
        rss: PlainRss {
            peak_bytes: memwarden::defrag::rss::peak().unwrap_or(0),
        },
    })
}

fn map(model: &DemoModel, dir: &Path, small: bool) -> anyhow::Result<memmap2::Mmap> {
    let path = dir.join(model.file_name(small));
    let file = std::fs::File::open(&path)
        .with_context(|| format!("cannot open the model file {}", path.display()))?;
    // SAFETY: the file is mapped read-only and only read through the map. The demo
    // generated it into its own cache directory and nothing truncates it while this
    // process runs (the same contract the registry documents for its mappings).
    unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("cannot map the model file {}", path.display()))
}

/// One child run's figures.
struct Run {
    wall: f64,
    cpu: f64,
    peak: u64,
    reloads: Option<u64>,
    restores: Option<u64>,
}

/// Runs the three sessions `args.repeat` times each, interleaved, and prints the table.
pub(super) fn compare(args: &Args, models_dir: &Path, budget: ByteSize) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the memwarden binary")?;
    let modes = [Mode::Plain, Mode::Unbounded, Mode::Governed];
    let mut best: [Option<Run>; 3] = [None, None, None];
    for round in 0..args.repeat.max(1) {
        // Alternate which of the first two goes first, so neither always runs on the
        // heels of the same predecessor.
        let order: [usize; 3] = if round % 2 == 0 { [0, 1, 2] } else { [1, 0, 2] };
        for slot in order {
            let mode = &modes[slot];
            eprintln!(
                "overhead: round {} of {}, {mode:?} run",
                round + 1,
                args.repeat.max(1)
            );
            let run = child(&exe, args, models_dir, budget, *mode)?;
            // The fastest wall time and, separately, the least CPU time.
            best[slot] = Some(match best[slot].take() {
                None => run,
                Some(b) => Run {
                    wall: b.wall.min(run.wall),
                    cpu: b.cpu.min(run.cpu),
                    ..if run.wall < b.wall { run } else { b }
                },
            });
        }
    }
    let [Some(plain), Some(unbounded), Some(governed)] = best else {
        unreachable!("every mode ran at least once");
    };
    let b = ByteSize::b;
    println!(
        "memwarden demo --overhead: seed {}, {} steps{}, fastest of {} runs each, every run in its own process\n",
        args.seed,
        args.steps,
        if args.small { ", small models" } else { "" },
        args.repeat.max(1)
    );
    println!(
        "{:<44} {:>8} {:>9} {:>8} {:>9} {:>11}",
        "session", "wall", "vs plain", "CPU", "vs plain", "peak RSS"
    );
    let rows = [
        (
            "plain maps, no memwarden, nothing released".to_owned(),
            &plain,
        ),
        (
            "memwarden, budget and caps never reached".to_owned(),
            &unbounded,
        ),
        (format!("memwarden, budget {budget}"), &governed),
    ];
    for (name, run) in rows {
        println!(
            "{:<44} {:>7.2}s {:>8.3}x {:>7.2}s {:>8.3}x {:>11}",
            name,
            run.wall,
            run.wall / plain.wall,
            run.cpu,
            run.cpu / plain.cpu,
            b(run.peak).to_string()
        );
    }
    println!(
        "\ntracking and governor overhead: {:+.1} % wall, {:+.1} % CPU (unbounded / plain)",
        (unbounded.wall / plain.wall - 1.0) * 100.0,
        (unbounded.cpu / plain.cpu - 1.0) * 100.0,
    );
    println!(
        "price of the {budget} budget: {:.3}x the plain wall time for {:.2}x less peak RSS ({} reloads, {} restores from snapshots)",
        governed.wall / plain.wall,
        plain.peak as f64 / governed.peak.max(1) as f64,
        governed.reloads.unwrap_or(0),
        governed.restores.unwrap_or(0)
    );
    Ok(())
}

fn child(
    exe: &Path,
    args: &Args,
    models_dir: &Path,
    budget: ByteSize,
    mode: Mode,
) -> anyhow::Result<Run> {
    let mut command = Command::new(exe);
    command
        .arg("demo")
        .args(["--format", "json", "--mode", mode.name()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--steps", &args.steps.to_string()])
        .args(["--budget", &budget.as_u64().to_string()])
        .arg("--models-dir")
        .arg(models_dir);
    if args.small {
        command.arg("--small");
    }
    if let Some(config) = &args.config {
        command.arg("--config").arg(config);
    }
    let out = command
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "the {mode:?} run failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("the {mode:?} run printed no JSON report"))?;
    let number = |v: &serde_json::Value| v.as_u64();
    Ok(Run {
        wall: report["wall_seconds"].as_f64().unwrap_or(f64::NAN),
        cpu: report["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
        peak: number(&report["rss"]["peak_bytes"]).unwrap_or(0),
        reloads: number(&report["reloads"]),
        restores: number(&report["restores"]),
    })
}
