//! `memwarden demo`: an editing-and-inference session that holds a real RSS budget.
//!
//! The session edits a video with machine help: it scrubs rendered frames, plays audio
//! clips, looks up subtitles and runs models. Which frame, clip, cue or model each step
//! touches follows a seeded Zipf law. Everything is real: frames and audio are heap
//! buffers that are read for real, subtitle indexes are maps, and the models are weight
//! files (generated once into a cache directory) that a [`ModelRegistry`] maps on first
//! use, so inference makes their pages resident.
//!
//! The whole process is held to the budget by a [`Governor`]: before each load it checks
//! the resident set plus the incoming bytes against the budget and releases (through the
//! prioritizer and the reaper) when they would pass the warning line; its monitor thread
//! reads the RSS every tick for growth nobody announced. Released frames are snapshotted
//! and restored on the next visit; the defragmenter returns what the allocator kept.
//! Time is a manual clock advanced 50 ms per step, so idle limits and TTLs from the config
//! play out the same on every machine.
//!
//! The run fails (exit code 1) if the peak RSS the OS recorded for the process passed the
//! budget by more than 5 %.

mod models;
mod overhead;
mod timeline;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use memwarden::core::{ByteSize, ManualClock, ResourceKind};
use memwarden::defrag::{DefragConfig, Defragmenter, rss};
use memwarden::governor::{Governor, GovernorConfig, GovernorReport, OsRss, RssSource};
use memwarden::registry::{ModelRegistry, RegistryConfig};
use memwarden::snapshot::{SnapshotStore, StoreConfig};
use memwarden::tracker::{ResourceSpec, Tracker, TrackerError};
use memwarden::{Fetched, Lifecycle};
use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::Format;
use timeline::{Mark, Point};
use workload::{Clip, Scratch, Script, Step, SubtitleTrack};

/// Arguments of `memwarden demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The most resident memory the whole process may use: a size ("384MiB") or a share
    /// of this machine's memory ("25%"); the config's `monitor.budget` by default.
    #[arg(long)]
    budget: Option<BudgetArg>,
    /// Seed of the access pattern.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of steps in the session.
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// Smaller model files (84 MiB in all instead of 336 MiB).
    #[arg(long)]
    small: bool,
    /// Where the model files are generated once and kept; the user's cache directory
    /// (`~/.cache/memwarden/demo-models`) by default.
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// Write a picture of RSS, tracked bytes and budget over time, with the releases
    /// marked, to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    timeline: Option<PathBuf>,
    /// Config file; the shipped defaults when left out.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Measure what memwarden costs: run the same steps without memwarden, with
    /// memwarden but a budget it never reaches, and under the budget, each in its own
    /// process, and print the time ratios. The run without memwarden keeps everything,
    /// so it needs about 2 GiB (under 1 GiB with --small).
    #[arg(long)]
    overhead: bool,
    /// With --overhead: runs of each session; the fastest counts.
    #[arg(long, default_value_t = 5, requires = "overhead")]
    repeat: u32,
    /// Which session to run (--overhead starts the other two).
    #[arg(long, value_enum, default_value_t = Mode::Governed, hide = true)]
    mode: Mode,
}

/// `--budget`: a size, or a share of the machine's memory.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BudgetArg {
    Bytes(ByteSize),
    Share(f64),
}

impl std::str::FromStr for BudgetArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().strip_suffix('%') {
            Some(percent) => match percent.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Ok(BudgetArg::Share(p / 100.0)),
                _ => Err(format!(
                    "invalid share {s:?}: expected a percentage above 0 and at most 100, such as \"25%\""
                )),
            },
            None => s.parse().map(BudgetArg::Bytes).map_err(|e| format!("{e}")),
        }
    }
}

impl BudgetArg {
    fn resolve(self) -> anyhow::Result<ByteSize> {
        match self {
            BudgetArg::Bytes(bytes) => Ok(bytes),
            BudgetArg::Share(share) => {
                let total = memwarden::machine_memory()
                    .context("cannot read this machine's memory size for a --budget share")?;
                Ok(ByteSize::b((total as f64 * share) as u64))
            }
        }
    }
}

/// The three sessions `--overhead` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// Under the budget: the demo.
    Governed,
    /// Through memwarden, with a budget and caps it never reaches.
    Unbounded,
    /// Without memwarden.
    Plain,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Governed => "governed",
            Mode::Unbounded => "unbounded",
            Mode::Plain => "plain",
        }
    }
}

/// Simulated time per step.
const STEP: Duration = Duration::from_millis(50);
/// Steps between sweeps of due resources (one simulated second).
const SWEEP_EVERY: u64 = 20;
/// How far past the budget the peak RSS may go before the run fails.
const TOLERANCE: f64 = 1.05;

#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Access {
    hits: u64,
    restores: u64,
    reloads: u64,
}

#[derive(Debug, Serialize)]
struct KindReport {
    hits: u64,
    restores: u64,
    reloads: u64,
    hit_ratio: f64,
    snapshots_written: u64,
    releases: u64,
    partial_releases: u64,
    bytes_freed: u64,
    handler_failures: u64,
    skipped: u64,
}

#[derive(Debug, Serialize)]
struct RssReport {
    budget_bytes: u64,
    /// Lowest and highest RSS read after a step, and the median of the kept samples.
    min_bytes: u64,
    median_bytes: u64,
    max_bytes: u64,
    /// The OS's high-water mark for the whole run (`VmHWM`, what `time -v` reports).
    peak_bytes: u64,
    /// `peak_bytes / budget_bytes`.
    peak_over_budget: f64,
    /// Whether the peak stayed within the budget plus 5 %.
    within_budget: bool,
    /// RSS at the end.
    final_bytes: u64,
}

#[derive(Debug, Serialize)]
struct Tracked {
    min_bytes: u64,
    max_bytes: u64,
    final_bytes: u64,
}

#[derive(Debug, Serialize)]
struct GovernorSummary {
    ticks: u64,
    admissions: u64,
    releases: u64,
    bytes_freed: u64,
    compactions: u64,
    pressure_events: u64,
    /// Each change of pressure level: (simulated seconds, from, to).
    pressure_changes: Vec<(f64, String, String)>,
}

#[derive(Debug, Serialize)]
struct DefragSummary {
    runs: u64,
    bytes_returned: u64,
    /// Time spent compacting, all runs together.
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    seed: u64,
    steps: u64,
    small: bool,
    budget_bytes: u64,
    warning_fraction: f64,
    critical_fraction: f64,
    simulated_seconds: f64,
    wall_seconds: f64,
    /// CPU time of the session's steps, all threads (the governor's monitor included).
    cpu_seconds: Option<f64>,
    rss: RssReport,
    tracked: Tracked,
    kinds: BTreeMap<String, KindReport>,
    accesses: u64,
    hits: u64,
    restores: u64,
    reloads: u64,
    hit_ratio: f64,
    bytes_freed: u64,
    governor: GovernorSummary,
    defrag: DefragSummary,
    models: serde_json::Value,
    snapshots: SnapshotReport,
    /// RSS and tracked bytes after each step (thinned evenly to under 4000 points).
    samples: Vec<Point>,
}

#[derive(Debug, Serialize)]
struct SnapshotReport {
    /// Where the session's snapshot store lived (removed at the end).
    dir: String,
    writes: u64,
    write_failures: u64,
    restores: u64,
    files_on_disk: u64,
    bytes_on_disk: u64,
}

/// RSS and tracked bytes after each step, thinned evenly as they accumulate (every
/// other point dropped and the stride doubled past [`Series::MAX`]), with the exact
/// extremes kept aside.
struct Series {
    points: Vec<Point>,
    stride: u64,
    min_rss: u64,
    max_rss: u64,
}

impl Series {
    const MAX: usize = 4000;

    fn new() -> Self {
        Series {
            points: Vec::new(),
            stride: 1,
            min_rss: u64::MAX,
            max_rss: 0,
        }
    }

    fn push(&mut self, point: Point) {
        self.min_rss = self.min_rss.min(point.rss);
        self.max_rss = self.max_rss.max(point.rss);
        if !point.step.is_multiple_of(self.stride) {
            return;
        }
        self.points.push(point);
        if self.points.len() >= Self::MAX {
            self.stride *= 2;
            let stride = self.stride;
            self.points.retain(|p| p.step.is_multiple_of(stride));
        }
    }
}

struct Session {
    lifecycle: Arc<Lifecycle>,
    governor: Governor,
    registry: ModelRegistry,
    clock: ManualClock,
    access: BTreeMap<ResourceKind, Access>,
    fill: u8,
}

impl Session {
    fn tracker(&self) -> &Arc<Tracker> {
        self.lifecycle.tracker()
    }

    fn count(&mut self, kind: &ResourceKind) -> &mut Access {
        self.access.entry(kind.clone()).or_default()
    }

    /// The value of `spec.id`: held, restored from its snapshot, or loaded with `load`.
    /// Before anything is restored or loaded the governor makes room for `admit` bytes.
    fn fetch<T: Send + Sync + 'static>(
        &mut self,
        spec: ResourceSpec,
        admit: u64,
        load: impl FnOnce(u8) -> T,
    ) -> anyhow::Result<Arc<T>> {
        if let Some(value) = self.tracker().get::<T>(spec.id.as_str())? {
            self.count(&spec.kind).hits += 1;
            return Ok(value);
        }
        self.governor.make_room(&spec.kind, admit);
        match self.lifecycle.get_or_restore::<T>(&spec)? {
            Some(Fetched::Held(value)) => {
                self.count(&spec.kind).hits += 1;
                return Ok(value);
            }
            Some(Fetched::Restored(value)) => {
                self.count(&spec.kind).restores += 1;
                return Ok(value);
            }
            None => {}
        }
        self.count(&spec.kind).reloads += 1;
        self.fill = self.fill.wrapping_add(1);
        Ok(self.tracker().register(spec, load(self.fill))?)
    }

    fn step(&mut self, step: Step, n: u64) -> anyhow::Result<()> {
        match step {
            Step::Frame(i) => {
                let bytes = workload::FRAME_BYTES as u64;
                let spec =
                    ResourceSpec::new(workload::frame_id(i), ResourceKind::RenderCache, bytes);
                // A restore reads the snapshot and decodes it: twice the frame, briefly.
                let frame = self.fetch(spec, 2 * bytes, |fill| workload::render_frame(i, fill))?;
                workload::consume(workload::luminance(&frame));
            }
            Step::Clip(i) => {
                let bytes = workload::CLIP_BYTES as u64;
                let spec = ResourceSpec::new(workload::clip_id(i), ResourceKind::AudioCache, bytes);
                let clip = self.fetch(spec, bytes, |fill| Clip::decode(i, fill))?;
                workload::consume(clip.level());
            }
            Step::Subtitle { track, at_ms } => {
                let id = workload::track_id(track);
                let kind = ResourceKind::SubtitleIndex;
                if let Some(held) = self.tracker().get::<SubtitleTrack>(id.as_str())? {
                    self.count(&kind).hits += 1;
                    workload::consume(held.lookup(at_ms));
                    return Ok(());
                }
                self.count(&kind).reloads += 1;
                self.fill = self.fill.wrapping_add(1);
                let estimate = (workload::TRACK_CUES * 400) as u64;
                self.governor.make_room(&kind, estimate);
                let parsed = SubtitleTrack::parse(track, self.fill);
                let spec = ResourceSpec::new(id, kind, parsed.bytes());
                workload::consume(
                    self.tracker()
                        .register_shrinkable(spec, parsed)?
                        .lookup(at_ms),
                );
            }
            Step::Inference(m) => self.inference(m, n)?,
        }
        Ok(())
    }

    fn inference(&mut self, m: usize, n: u64) -> anyhow::Result<()> {
        // Scratch space first, pinned while the inference runs: it is resident when the
        // model is admitted, and nothing releases it from under the step. It is handed
        // back (through the reaper, like every release) when the step ends.
        let scratch_id = format!("scratch-{n}");
        let bytes = workload::SCRATCH_BYTES as u64;
        let spec =
            ResourceSpec::new(scratch_id.as_str(), ResourceKind::TempBuffers, bytes).pinned(true);
        let scratch = self.fetch(spec, bytes, |fill| Mutex::new(Scratch::new(fill)))?;
        let result = self.run_model(&models::MODELS[m], &scratch);
        drop(scratch);
        if self.tracker().contains(&scratch_id) {
            self.tracker().set_pinned(&scratch_id, false)?;
            self.lifecycle.reaper().release(&scratch_id);
        }
        result
    }

    /// Loads (if need be) and runs one model. The registry admits a load through the
    /// governor (its admission hook), so the file's bytes are counted before inference
    /// makes its pages resident.
    fn run_model(
        &mut self,
        model: &models::DemoModel,
        scratch: &Mutex<Scratch>,
    ) -> anyhow::Result<()> {
        let held = self.tracker().contains(model.name);
        // The monitor may release the model between `get` and the pin: then get it again
        // (the registry re-admits the mapping it still has).
        for _ in 0..3 {
            let weights = self
                .registry
                .get(model.name)
                .with_context(|| format!("loading model {}", model.name))?;
            match self.tracker().set_pinned(model.name, true) {
                Ok(()) => {}
                Err(TrackerError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            let count = self.count(&model.kind);
            if held {
                count.hits += 1;
            } else {
                count.reloads += 1;
            }
            workload::consume(workload::run_model(
                weights.as_bytes(),
                &mut scratch.lock().0,
            ));
            // Released meanwhile is fine: unpinned is what it would be.
            let _ = self.tracker().set_pinned(model.name, false);
            return Ok(());
        }
        anyhow::bail!(
            "model {} was released between loading and use three times in a row",
            model.name
        )
    }
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = crate::load_config(args.config.as_ref())?;
    crate::init_logging(config.logging.level);
    let budget = match args.budget {
        Some(budget) => budget.resolve()?,
        None => config.monitor.budget,
    };
    anyhow::ensure!(budget.as_u64() > 0, "--budget must be more than 0 bytes");

    let models_dir = args.models_dir.clone().unwrap_or_else(models::default_dir);
    let written = models::ensure_files(&models_dir, args.small)?;
    if written > 0 && args.format == Format::Text {
        eprintln!(
            "wrote {written} model file(s) into {} (kept for the next run)",
            models_dir.display()
        );
    }

    if args.overhead {
        overhead::compare(args, &models_dir, budget)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.mode == Mode::Plain {
        let report = overhead::run_plain(args, &models_dir)?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let unbounded = args.mode == Mode::Unbounded;
    // A budget and caps the session never reaches: only the bookkeeping runs.
    let budget = if unbounded {
        ByteSize::gib(1 << 20)
    } else {
        budget
    };

    let clock = ManualClock::new();
    let tracker = Arc::new(Tracker::with_clock(Arc::new(clock.clone())));
    let mut lifecycle = Lifecycle::from_config(Arc::clone(&tracker), &config);
    lifecycle.set_budget(budget);
    if unbounded {
        for kind in ResourceKind::BUILTIN {
            lifecycle.set_kind_cap(kind, budget);
        }
    }
    // Render frames are snapshotted before release (the config's snapshot_on_release)
    // into a store of the session's own, on disk only, so that the budget covers all
    // the memory the session holds.
    // A fresh directory, removed when the session ends however it ends.
    let scratch = tempfile::Builder::new()
        .prefix("memwarden-demo-")
        .tempdir()
        .context("cannot create a directory for the session's snapshots")?;
    let store_config = StoreConfig {
        memory_bytes: 0,
        disk_bytes: config.snapshot.max_bytes.as_u64(),
        ..StoreConfig::new(scratch.path())
    };
    let store = Arc::new(
        SnapshotStore::open(store_config, Arc::clone(tracker.clock())).with_context(|| {
            format!("opening the snapshot store in {}", scratch.path().display())
        })?,
    );
    lifecycle.set_snapshot_store(Arc::clone(&store));
    let lifecycle = Arc::new(lifecycle);

    let defrag = Arc::new(
        Defragmenter::start(DefragConfig::from(&config.defrag))
            .context("starting the defragmenter")?,
    );
    let governor_config = GovernorConfig {
        budget,
        ..GovernorConfig::from_config(&config)
    };
    let governor = Governor::builder(Arc::clone(&lifecycle), governor_config)
        .defrag(Arc::clone(&defrag))
        .start()?;
    let registry = ModelRegistry::new(
        Arc::clone(&lifecycle),
        RegistryConfig {
            cap: config.kinds.model_shards.max_bytes.filter(|_| !unbounded),
            ..RegistryConfig::default()
        },
    );
    let admission = governor.handle();
    registry.set_admission(move |kind, bytes| {
        admission.make_room(kind, bytes);
    });
    models::declare(&registry, &models_dir, args.small)?;

    let mut script = Script::new(StdRng::seed_from_u64(args.seed), models::MODELS.len())?;
    let mut session = Session {
        lifecycle,
        governor,
        registry,
        clock,
        access: BTreeMap::new(),
        fill: 0,
    };

    let progress = if args.format == Format::Text {
        ProgressBar::new(args.steps)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} steps {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let reader = OsRss::new();
    let started = Instant::now();
    let cpu_started = overhead::cpu_seconds();
    let mut series = Series::new();
    let mut tracked = Tracked {
        min_bytes: u64::MAX,
        max_bytes: 0,
        final_bytes: 0,
    };
    for n in 0..args.steps {
        session.clock.advance(STEP);
        if n % SWEEP_EVERY == 0 {
            session.lifecycle.sweep();
        }
        let step = script.next_step();
        session.step(step, n)?;
        let bytes = session.tracker().totals().bytes;
        tracked.min_bytes = tracked.min_bytes.min(bytes);
        tracked.max_bytes = tracked.max_bytes.max(bytes);
        let rss = reader.resident_bytes().unwrap_or(0);
        series.push(Point {
            step: n,
            at_s: STEP.as_secs_f64() * (n + 1) as f64,
            rss,
            tracked: bytes,
        });
        if n % 20 == 0 {
            progress.set_message(format!(
                "RSS {} of {}",
                ByteSize::b(rss),
                ByteSize::b(budget.as_u64())
            ));
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let wall_seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = overhead::cpu_seconds()
        .zip(cpu_started)
        .map(|(end, start)| end - start);
    tracked.final_bytes = session.tracker().totals().bytes;
    if args.steps == 0 {
        tracked.min_bytes = 0;
    }

    let Session {
        lifecycle,
        governor,
        registry,
        access,
        ..
    } = session;
    let governor_report = governor.shutdown();
    let models = serde_json::to_value(registry.status())?;
    let report = build_report(
        args,
        budget.as_u64(),
        &lifecycle,
        &store,
        &scratch,
        &access,
        &governor_report,
        &defrag,
        models,
        tracked,
        series,
        (wall_seconds, cpu_seconds),
    );
    if let Some(path) = &args.timeline {
        let marks: Vec<Mark> = governor_report
            .releases
            .iter()
            .map(|e| Mark {
                at_s: e.at.as_secs_f64(),
                rss_before: e.rss_before,
                rss_after: e.rss_after,
            })
            .collect();
        timeline::write(
            path,
            &report.samples,
            &marks,
            budget.as_u64(),
            report.warning_fraction,
        )?;
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", render(&report)),
    }
    if let Some(path) = &args.timeline
        && args.format == Format::Text
    {
        println!("timeline written to {}", path.display());
    }
    if report.rss.within_budget {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: peak RSS {} passed the budget {} by more than 5 % ({:.3}x)",
            ByteSize::b(report.rss.peak_bytes),
            budget,
            report.rss.peak_over_budget
        );
        Ok(ExitCode::FAILURE)
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "the report gathers every part of the session once, at the end"
)]
fn build_report(
    args: &Args,
    budget: u64,
    lifecycle: &Lifecycle,
    store: &SnapshotStore,
    scratch: &tempfile::TempDir,
    access: &BTreeMap<ResourceKind, Access>,
    governor: &GovernorReport,
    defrag: &Defragmenter,
    models: serde_json::Value,
    tracked: Tracked,
    series: Series,
    (wall_seconds, cpu_seconds): (f64, Option<f64>),
) -> Report {
    let stats = lifecycle.reaper().stats();
    let mut kinds = BTreeMap::new();
    for kind in ResourceKind::BUILTIN {
        let a = access.get(&kind).copied().unwrap_or_default();
        let r = stats.kinds.get(&kind).copied().unwrap_or_default();
        kinds.insert(
            kind.to_string(),
            KindReport {
                hits: a.hits,
                restores: a.restores,
                reloads: a.reloads,
                hit_ratio: ratio(a.hits, a.hits + a.restores + a.reloads),
                snapshots_written: r.snapshots,
                releases: r.releases,
                partial_releases: r.partial_releases,
                bytes_freed: r.bytes_freed,
                handler_failures: r.failures,
                skipped: r.skipped,
            },
        );
    }
    let (hits, restores, reloads) = access.values().fold((0, 0, 0), |(h, s, r), a| {
        (h + a.hits, s + a.restores, r + a.reloads)
    });
    let store_stats = store.stats();
    let snapshots = SnapshotReport {
        dir: scratch.path().display().to_string(),
        writes: stats.total.snapshots,
        write_failures: stats.total.snapshot_failures,
        restores,
        files_on_disk: store_stats.count,
        bytes_on_disk: store_stats.disk_bytes,
    };

    let mut rss_values: Vec<u64> = series.points.iter().map(|p| p.rss).collect();
    rss_values.sort_unstable();
    let final_rss = rss::current().unwrap_or(0);
    let steps_seen = !series.points.is_empty();
    let peak = rss::peak().unwrap_or(0).max(series.max_rss);
    let peak_over_budget = peak as f64 / budget as f64;
    let rss = RssReport {
        budget_bytes: budget,
        min_bytes: if steps_seen {
            series.min_rss
        } else {
            final_rss
        },
        median_bytes: rss_values
            .get(rss_values.len() / 2)
            .copied()
            .unwrap_or(final_rss),
        max_bytes: if steps_seen {
            series.max_rss
        } else {
            final_rss
        },
        peak_bytes: peak,
        peak_over_budget,
        within_budget: peak_over_budget <= TOLERANCE,
        final_bytes: final_rss,
    };
    let points = series.points;
    let defrag_stats = defrag.stats();
    Report {
        seed: args.seed,
        steps: args.steps,
        small: args.small,
        budget_bytes: budget,
        warning_fraction: lifecycle.thresholds().warning,
        critical_fraction: lifecycle.thresholds().critical,
        simulated_seconds: STEP.as_secs_f64() * args.steps as f64,
        wall_seconds,
        cpu_seconds,
        rss,
        tracked,
        kinds,
        accesses: hits + restores + reloads,
        hits,
        restores,
        reloads,
        hit_ratio: ratio(hits, hits + restores + reloads),
        bytes_freed: stats.total.bytes_freed,
        governor: GovernorSummary {
            ticks: governor.ticks,
            admissions: governor.admissions,
            releases: governor.release_count,
            bytes_freed: governor.bytes_freed,
            compactions: governor.compactions,
            pressure_events: governor.pressure_change_count,
            pressure_changes: governor
                .pressure_changes
                .iter()
                .map(|c| {
                    (
                        c.at.as_secs_f64(),
                        format!("{:?}", c.from).to_lowercase(),
                        format!("{:?}", c.to).to_lowercase(),
                    )
                })
                .collect(),
        },
        defrag: DefragSummary {
            runs: defrag_stats.runs,
            bytes_returned: defrag_stats.total_returned,
            seconds: defrag_stats.total_duration.as_secs_f64(),
        },
        models,
        snapshots,
        samples: points,
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn render(r: &Report) -> String {
    use std::fmt::Write;
    let b = ByteSize::b;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "memwarden demo: seed {}, {} steps ({:.0} s simulated, {:.2} s wall), budget {} (warning {:.0}%, critical {:.0}%){}",
        r.seed,
        r.steps,
        r.simulated_seconds,
        r.wall_seconds,
        b(r.budget_bytes),
        r.warning_fraction * 100.0,
        r.critical_fraction * 100.0,
        if r.small { ", small models" } else { "" }
    );
    let _ = writeln!(
        out,
        "\nprocess RSS: min {}, median {}, max {}; peak (VmHWM) {} = {:.1}% of budget{}",
        b(r.rss.min_bytes),
        b(r.rss.median_bytes),
        b(r.rss.max_bytes),
        b(r.rss.peak_bytes),
        r.rss.peak_over_budget * 100.0,
        if r.rss.within_budget {
            ""
        } else {
            "  <-- OVER BUDGET"
        }
    );
    let _ = writeln!(
        out,
        "over time:   {}",
        sparkline(&r.samples, r.budget_bytes)
    );
    let _ = writeln!(
        out,
        "             (RSS; a full bar is the budget)\ntracked bytes: min {}, max {}, final {}\n",
        b(r.tracked.min_bytes),
        b(r.tracked.max_bytes),
        b(r.tracked.final_bytes)
    );
    let _ = writeln!(
        out,
        "{:<20} {:>7} {:>8} {:>8} {:>9} {:>9} {:>8} {:>12} {:>10}",
        "kind",
        "hits",
        "restores",
        "reloads",
        "hit ratio",
        "releases",
        "partial",
        "freed",
        "snapshots"
    );
    for (kind, k) in &r.kinds {
        let _ = writeln!(
            out,
            "{:<20} {:>7} {:>8} {:>8} {:>8.1}% {:>9} {:>8} {:>12} {:>10}",
            kind,
            k.hits,
            k.restores,
            k.reloads,
            k.hit_ratio * 100.0,
            k.releases,
            k.partial_releases,
            b(k.bytes_freed).to_string(),
            k.snapshots_written
        );
    }
    let _ = writeln!(
        out,
        "{:<20} {:>7} {:>8} {:>8} {:>8.1}% {:>9} {:>8} {:>12} {:>10}",
        "all",
        r.hits,
        r.snapshots.restores,
        r.reloads,
        r.hit_ratio * 100.0,
        r.kinds.values().map(|k| k.releases).sum::<u64>(),
        r.kinds.values().map(|k| k.partial_releases).sum::<u64>(),
        b(r.bytes_freed).to_string(),
        r.snapshots.writes
    );
    let g = &r.governor;
    let _ = writeln!(
        out,
        "\ngovernor: {} ticks, {} admission checks, {} releases freeing {}, {} pressure changes, {} compactions",
        g.ticks,
        g.admissions,
        g.releases,
        b(g.bytes_freed),
        g.pressure_events,
        g.compactions
    );
    let _ = writeln!(
        out,
        "defrag: {} runs returned {} to the OS in {:.0} ms",
        r.defrag.runs,
        b(r.defrag.bytes_returned),
        r.defrag.seconds * 1000.0
    );
    let _ = writeln!(
        out,
        "snapshots: {} written ({} failed), {} restored instead of re-rendered; {} files, {} on disk at the end",
        r.snapshots.writes,
        r.snapshots.write_failures,
        r.snapshots.restores,
        r.snapshots.files_on_disk,
        b(r.snapshots.bytes_on_disk)
    );
    let failures: u64 = r.kinds.values().map(|k| k.handler_failures).sum();
    let _ = writeln!(out, "release handler failures: {failures}");
    out
}

fn sparkline(samples: &[Point], budget: u64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let per_bar = samples.len().div_ceil(60).max(1);
    samples
        .chunks(per_bar)
        .map(|chunk| {
            let rss = chunk.iter().map(|p| p.rss).max().unwrap_or(0);
            let level = (rss as f64 / budget.max(1) as f64 * 8.0).ceil() as usize;
            BARS[level.clamp(1, 8) - 1]
        })
        .collect()
}
