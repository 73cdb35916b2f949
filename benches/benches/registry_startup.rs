//! What a lazy [`ModelRegistry`] costs in resident memory: at startup, at the first `get`
//! of a model, and once every page of the model has been read; against loading the same
//! file eagerly with `std::fs::read`.
//!
//! Run with `cargo bench -p memwarden-benches --bench registry_startup`. Under `cargo test
//! --benches` (no `--bench` argument) the models are 4 MiB instead of 64 MiB and the goals
//! are not judged: every number is a smoke test, not a measurement.
//!
//! The bench writes ten safetensors models with `write_model_file` into a temporary
//! directory, then reads the process's resident set (`VmRSS`, with its anonymous and
//! file-backed parts `RssAnon` and `RssFile`, from `/proc/self/status`) at each step:
//!
//! 1. before the registry exists;
//! 2. after declaring the ten models (metadata only: no file is opened);
//! 3. after the first `get` of one model (the file is mapped and its header parsed);
//! 4. after the first `get` of the nine others;
//! 5. after reading one byte of every page of the first model;
//! 6. after unloading it (the registry's last handle dropped, the mapping gone);
//!
//! and then, as the peer, after `std::fs::read` of one model file (what a loader without a
//! mapping does). First `get`s and eager reads are timed too, as a median over the ten
//! models. All files were just written, so they are in the page cache: the figures are
//! what the process is charged, not disk reads, and the times are those of the system
//! calls and copies, not of a device.
//!
//! The goals: startup with ten declared models costs less than 1 MiB of RSS, and
//! a first `get` maps a model without reading it (resident growth under 1% of the file).
//! The summary prints each goal against the figures, then one `ratio` line per
//! comparison, memwarden first.

use std::fs;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memwarden::Lifecycle;
use memwarden::core::ByteSize;
use memwarden::registry::{ModelDecl, ModelRegistry, RegistryConfig, write_model_file};
use memwarden::tracker::Tracker;
use memwarden_benches::report::{self, Ratios};

/// A mebibyte, for printing.
const MIB: f64 = 1_048_576.0;
/// Models declared.
const MODELS: usize = 10;
/// The goal for the RSS of declaring them.
const GOAL_DECLARE_BYTES: i64 = 1 << 20;
/// The goal for the resident growth of a first `get`, as a fraction of the file.
const GOAL_GET_FRACTION: f64 = 0.01;

/// The process's resident set, in bytes.
#[derive(Debug, Clone, Copy)]
struct Rss {
    total: i64,
    anon: i64,
    file: i64,
}

impl Rss {
    fn read() -> Rss {
        let status = fs::read_to_string("/proc/self/status").expect("Linux's /proc/self/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|kib| kib.trim().parse::<i64>().ok())
                .map(|kib| kib * 1024)
                .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
        };
        Rss {
            total: field("VmRSS:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
        }
    }
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / MIB
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let started = Instant::now();
    let model_bytes: u64 = if full { 64 << 20 } else { 4 << 20 };
    let root = tempfile::Builder::new()
        .prefix("memwarden-registry-bench-")
        .tempdir()
        .expect("a temporary directory");
    println!(
        "registry_startup in {}: {MODELS} models of {} MiB",
        root.path().display(),
        model_bytes >> 20
    );

    let paths: Vec<PathBuf> = (0..MODELS)
        .map(|i| root.path().join(format!("model-{i}.safetensors")))
        .collect();
    let write_start = Instant::now();
    for (i, path) in paths.iter().enumerate() {
        write_model_file(path, model_bytes, i as u64).expect("the model file is written");
    }
    let write_time = write_start.elapsed();
    println!(
        "wrote them with write_model_file at {:.0} MiB/s (synced)",
        (MODELS as u64 * model_bytes) as f64 / MIB / write_time.as_secs_f64()
    );

    let mut steps: Vec<(&str, Rss)> = vec![("start", Rss::read())];
    let lifecycle = Arc::new(Lifecycle::new(Arc::new(Tracker::new()), ByteSize::gib(64)));
    let registry = ModelRegistry::new(lifecycle, RegistryConfig::default());
    for (i, path) in paths.iter().enumerate() {
        registry
            .declare(ModelDecl::new(format!("model-{i}"), path))
            .expect("a fresh id");
    }
    steps.push(("declared 10", Rss::read()));

    let mut get_times = Vec::with_capacity(MODELS);
    let mut models = Vec::with_capacity(MODELS);
    for i in 0..MODELS {
        let start = Instant::now();
        let model = registry.get(&format!("model-{i}")).expect("a valid model");
        get_times.push(start.elapsed());
        models.push(model);
        if i == 0 {
            steps.push(("first get of 1", Rss::read()));
        }
    }
    steps.push(("first get of all 10", Rss::read()));

    let sum = models[0]
        .as_bytes()
        .iter()
        .step_by(4096)
        .fold(0u64, |acc, &b| acc.wrapping_add(u64::from(b)));
    black_box(sum);
    steps.push(("touched model 0", Rss::read()));

    let first = models.remove(0);
    drop(first);
    registry.unload("model-0").expect("declared");
    steps.push(("unloaded model 0", Rss::read()));
    drop(models);
    drop(registry);

    // The peer: an eager load of each file.
    let mut read_times = Vec::with_capacity(MODELS);
    let before_eager = Rss::read();
    let mut eager_rss = None;
    for path in &paths {
        let start = Instant::now();
        let bytes = fs::read(path).expect("the model file reads");
        read_times.push(start.elapsed());
        eager_rss.get_or_insert_with(Rss::read);
        black_box(&bytes);
    }
    let eager_rss = eager_rss.expect("ten files were read");
    steps.push(("peer: before fs::read", before_eager));
    steps.push(("peer: fs::read of 1", eager_rss));

    println!("\n### resident set at each step (MiB; delta from the previous row)");
    println!("| step                   |    VmRSS |  RssAnon |  RssFile |  delta VmRSS |");
    println!("|------------------------|----------|----------|----------|--------------|");
    let mut previous = steps[0].1;
    for (name, rss) in &steps {
        println!(
            "| {name:<22} | {:>8.2} | {:>8.2} | {:>8.2} | {:>+12.3} |",
            mib(rss.total),
            mib(rss.anon),
            mib(rss.file),
            mib(rss.total - previous.total)
        );
        previous = *rss;
    }

    let at = |name: &str| {
        steps
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, rss)| *rss)
            .expect("a recorded step")
    };
    let file = model_bytes as i64;
    let declare = at("declared 10").total - at("start").total;
    let first_get = at("first get of 1").total - at("declared 10").total;
    let all_gets = at("first get of all 10").total - at("declared 10").total;
    let touched = at("touched model 0").total - at("first get of all 10").total;
    let eager = eager_rss.total - before_eager.total;
    let get_fraction = first_get as f64 / file as f64;
    let get_time = median(&mut get_times);
    let read_time = median(&mut read_times);

    println!("\n### figures");
    println!(
        "declaring {MODELS} models: {:+.1} KiB of RSS",
        declare as f64 / 1024.0
    );
    println!(
        "first get of one model: {:+.1} KiB of RSS for a {} MiB file: resident-after-get / file size = {get_fraction:.5}",
        first_get as f64 / 1024.0,
        model_bytes >> 20
    );
    println!(
        "first get of all {MODELS}: {:+.1} KiB in all, {:.5} of their {} MiB",
        all_gets as f64 / 1024.0,
        all_gets as f64 / (file as f64 * MODELS as f64),
        (model_bytes >> 20) * MODELS as u64
    );
    println!(
        "reading every page of model 0: {:+.2} MiB = {:.3} of the file",
        mib(touched),
        touched as f64 / file as f64
    );
    println!(
        "eager fs::read of one model: {:+.2} MiB = {:.3} of the file",
        mib(eager),
        eager as f64 / file as f64
    );
    println!(
        "median first get {:.1} µs, median fs::read {:.1} µs",
        get_time.as_secs_f64() * 1e6,
        read_time.as_secs_f64() * 1e6
    );

    let goals = vec![
        (
            format!(
                "goal startup with {MODELS} declared models < 1 MiB of RSS: {:.1} KiB",
                declare as f64 / 1024.0
            ),
            declare < GOAL_DECLARE_BYTES,
        ),
        (
            format!("goal first get resident < {GOAL_GET_FRACTION} of the file: {get_fraction:.5}"),
            get_fraction < GOAL_GET_FRACTION,
        ),
    ];
    let mut ratios = Ratios::default();
    ratios.add(
        "resident-after-first-get/file-size",
        "memwarden",
        "file",
        get_fraction,
    );
    ratios.add(
        "rss-growth first-get/eager-read",
        "memwarden",
        "fs::read",
        first_get as f64 / eager.max(1) as f64,
    );
    ratios.add(
        "time first-get/eager-read",
        "memwarden",
        "fs::read",
        get_time.as_secs_f64() / read_time.as_secs_f64(),
    );
    root.close().expect("the temporary directory is removable");
    report::print_summary(full, started, &goals, &ratios);
}
