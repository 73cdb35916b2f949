//! `memwarden demo`: a scripted editing-and-inference session under a byte budget.
//!
//! The session edits a video with machine help: it scrubs rendered frames, plays audio
//! clips, looks up subtitles and runs inference with one of two detector variants (a
//! mutual-exclusion group) and a transcriber. Which frame, clip, track or model each step
//! touches follows a seeded Zipf law. Every payload is real memory, written page by page,
//! so the process RSS at the end is the OS's figure for what the budget let live.
//!
//! Each access goes through the tracker: a hit uses the held value; a miss reloads it,
//! asking the [`Lifecycle`] to make room first, which plans with the prioritizer and
//! releases with the reaper. Time is a manual clock advanced 50 ms per step, so idle
//! limits and TTLs from the config play out the same on every machine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use memwarden::core::{ByteSize, ManualClock, ResourceId, ResourceKind};
use memwarden::snapshot::{PixelFormat, RenderFrame, SnapshotStore, StoreConfig};
use memwarden::tracker::{ResourceSpec, Shrink, Tracker};
use memwarden::{Fetched, Lifecycle};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde::Serialize;

use crate::{Format, rss};

/// Arguments of `memwarden demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Byte budget for tracked resources (e.g. "768MiB"); the config's `monitor.budget` by default.
    #[arg(long)]
    budget: Option<ByteSize>,
    /// Seed of the access pattern.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of steps in the session.
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// Config file; the shipped defaults when left out.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Simulated time per step.
const STEP: Duration = Duration::from_millis(50);
/// Steps between sweeps of due resources (one simulated second).
const SWEEP_EVERY: u64 = 20;
/// Zipf exponent of every access pattern.
const ZIPF_EXPONENT: f64 = 1.0;

const FRAMES: usize = 480;
const FRAME_WIDTH: u32 = 1280;
const FRAME_HEIGHT: u32 = 720;
const FRAME_BYTES: usize = FRAME_WIDTH as usize * FRAME_HEIGHT as usize * 4;
const CLIPS: usize = 48;
const CLIP_BYTES: usize = 10 * 48_000 * 2 * 4;
const TRACKS: usize = 6;
const TRACK_ENTRIES: usize = 4000;
const ENTRY_BYTES: usize = 256;
const WEIGHTS_BYTES: usize = 24 << 20;
const SHARDS_PER_MODEL: usize = 4;
const SHARD_BYTES: usize = 16 << 20;
const SCRATCH_BYTES: usize = 8 << 20;
/// Models as (name, mutual-exclusion group): the two detector variants exclude each other.
const MODELS: [(&str, Option<&str>); 3] = [
    ("detector-s", Some("detector")),
    ("detector-m", Some("detector")),
    ("transcriber", None),
];

/// Real memory: every page is written so that it is resident.
struct Payload(Box<[u8]>);

impl Payload {
    fn new(bytes: usize, fill: u8) -> Self {
        Payload(vec![fill | 1; bytes].into_boxed_slice())
    }
}

/// A subtitle track whose coldest entries can be dropped while the rest stays usable.
struct SubtitleTrack {
    entries: Mutex<Vec<(u32, Box<[u8]>)>>,
}

impl SubtitleTrack {
    fn new(fill: u8) -> Self {
        let entries = (0..TRACK_ENTRIES)
            .map(|_| (0, vec![fill | 1; ENTRY_BYTES].into_boxed_slice()))
            .collect();
        SubtitleTrack {
            entries: Mutex::new(entries),
        }
    }

    fn lookup(&self, rank: usize) {
        let mut entries = self.entries.lock();
        let len = entries.len();
        if len > 0 {
            entries[rank % len].0 += 1;
        }
    }
}

impl Shrink for SubtitleTrack {
    fn shrink(&self, fraction: f64) -> u64 {
        let mut entries = self.entries.lock();
        let drop = (entries.len() as f64 * fraction).round() as usize;
        entries.sort_by_key(|(hits, _)| *hits); // coldest first; the hot part stays
        entries
            .drain(..drop)
            .map(|(_, text)| text.len() as u64)
            .sum()
    }
}

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
struct Tracked {
    min_bytes: u64,
    max_bytes: u64,
    final_bytes: u64,
    steps_over_budget: u64,
    /// (step, tracked bytes) every few steps, for plotting.
    samples: Vec<(u64, u64)>,
}

#[derive(Debug, Serialize)]
struct Report {
    seed: u64,
    steps: u64,
    budget_bytes: u64,
    warning_fraction: f64,
    critical_fraction: f64,
    simulated_seconds: f64,
    wall_seconds: f64,
    tracked: Tracked,
    kinds: BTreeMap<String, KindReport>,
    accesses: u64,
    hits: u64,
    restores: u64,
    reloads: u64,
    hit_ratio: f64,
    bytes_freed: u64,
    snapshots: SnapshotReport,
    rss: Option<rss::Rss>,
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

/// The session's snapshot directory, removed when the session ends however it ends.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            log::warn!(
                "cannot remove the demo's snapshot directory {}: {e}",
                self.0.display()
            );
        }
    }
}

struct Session {
    lifecycle: Lifecycle,
    clock: ManualClock,
    rng: StdRng,
    access: BTreeMap<ResourceKind, Access>,
    fill: u8,
}

impl Session {
    fn tracker(&self) -> &Arc<Tracker> {
        self.lifecycle.tracker()
    }

    /// Uses `id` if it is held; otherwise makes room and loads it with `load`.
    fn access<T: Send + Sync + 'static>(
        &mut self,
        spec: ResourceSpec,
        load: impl FnOnce(u8) -> T,
    ) -> anyhow::Result<Arc<T>> {
        match self.lifecycle.get_or_restore::<T>(&spec)? {
            Some(Fetched::Held(value)) => {
                self.access.entry(spec.kind).or_default().hits += 1;
                return Ok(value);
            }
            Some(Fetched::Restored(value)) => {
                self.access.entry(spec.kind).or_default().restores += 1;
                return Ok(value);
            }
            None => {}
        }
        self.access.entry(spec.kind.clone()).or_default().reloads += 1;
        self.lifecycle.make_room(&spec.kind, spec.bytes);
        self.fill = self.fill.wrapping_add(1);
        Ok(self.tracker().register(spec, load(self.fill))?)
    }

    fn frame(&mut self, n: usize) -> anyhow::Result<()> {
        let spec = ResourceSpec::new(
            format!("frame-{n:04}"),
            ResourceKind::RenderCache,
            FRAME_BYTES as u64,
        );
        let frame = self.access(spec, |fill| RenderFrame {
            width: FRAME_WIDTH,
            height: FRAME_HEIGHT,
            stride: FRAME_WIDTH * 4,
            format: PixelFormat::Rgba8,
            index: n as u64,
            pts_us: n as i64 * 40_000,
            pixels: vec![fill | 1; FRAME_BYTES],
        })?;
        std::hint::black_box(frame.pixels[n % frame.pixels.len()]);
        Ok(())
    }

    fn clip(&mut self, n: usize) -> anyhow::Result<()> {
        let spec = ResourceSpec::new(
            format!("audio-{n:02}"),
            ResourceKind::AudioCache,
            CLIP_BYTES as u64,
        );
        let clip = self.access(spec, |fill| Payload::new(CLIP_BYTES, fill))?;
        std::hint::black_box(clip.0[n % clip.0.len()]);
        Ok(())
    }

    fn subtitles(&mut self, track: usize, entry: usize) -> anyhow::Result<()> {
        let id = ResourceId::from(format!("subs-{track}"));
        if let Some(held) = self.tracker().get::<SubtitleTrack>(id.as_str())? {
            self.access
                .entry(ResourceKind::SubtitleIndex)
                .or_default()
                .hits += 1;
            held.lookup(entry);
            return Ok(());
        }
        self.access
            .entry(ResourceKind::SubtitleIndex)
            .or_default()
            .reloads += 1;
        let bytes = (TRACK_ENTRIES * ENTRY_BYTES) as u64;
        self.lifecycle
            .make_room(&ResourceKind::SubtitleIndex, bytes);
        self.fill = self.fill.wrapping_add(1);
        let spec = ResourceSpec::new(id, ResourceKind::SubtitleIndex, bytes);
        self.tracker()
            .register_shrinkable(spec, SubtitleTrack::new(self.fill))?
            .lookup(entry);
        Ok(())
    }

    fn inference(&mut self, model: usize, step: u64) -> anyhow::Result<()> {
        let (name, group) = MODELS[model];
        let weights_id = format!("{name}/weights");
        let mut parts = vec![ResourceSpec::new(
            weights_id.as_str(),
            ResourceKind::ModelWeightsCache,
            WEIGHTS_BYTES as u64,
        )];
        for shard in 0..SHARDS_PER_MODEL {
            let spec = ResourceSpec::new(
                format!("{name}/shard-{shard}"),
                ResourceKind::ModelShards,
                SHARD_BYTES as u64,
            )
            .depends_on([weights_id.as_str()]);
            parts.push(spec);
        }
        // The model is in use until the step ends: pin each part once it is loaded, so
        // making room for the next part cannot release the ones before it.
        let mut in_use = Vec::with_capacity(parts.len());
        let mut result = Ok(());
        for mut spec in parts {
            if let Some(group) = group {
                spec = spec.group(group);
            }
            let (id, bytes) = (spec.id.clone(), spec.bytes as usize);
            result = self
                .access(spec, |fill| Payload::new(bytes, fill))
                .map(drop);
            if result.is_err() {
                break;
            }
            self.tracker().set_pinned(id.as_str(), true)?;
            in_use.push(id);
        }
        if result.is_ok() {
            // Scratch space for this inference; nobody asks for it again, so it goes idle.
            let spec = ResourceSpec::new(
                format!("scratch-{step}"),
                ResourceKind::TempBuffers,
                SCRATCH_BYTES as u64,
            );
            result = self
                .access(spec, |fill| Payload::new(SCRATCH_BYTES, fill))
                .map(drop);
        }
        for id in in_use {
            self.tracker().set_pinned(id.as_str(), false)?;
        }
        result
    }
}

/// A Zipf-distributed index into `n` items, with the popular items shuffled by the seed.
struct Popularity {
    zipf: Zipf<f64>,
    order: Vec<usize>,
}

impl Popularity {
    fn new(n: usize, rng: &mut StdRng) -> anyhow::Result<Self> {
        let zipf = Zipf::new(n as f64, ZIPF_EXPONENT).context("Zipf parameters")?;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        Ok(Popularity { zipf, order })
    }

    fn pick(&self, rng: &mut StdRng) -> usize {
        let rank = self.zipf.sample(rng) as usize;
        self.order[rank.clamp(1, self.order.len()) - 1]
    }
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let config = crate::load_config(args.config.as_ref())?;
    crate::init_logging(config.logging.level);
    let clock = ManualClock::new();
    let tracker = Arc::new(Tracker::with_clock(Arc::new(clock.clone())));
    let mut lifecycle = Lifecycle::from_config(Arc::clone(&tracker), &config);
    // Render frames are snapshotted before release (the config's snapshot_on_release)
    // into a store of the session's own, on disk only, so that the budget covers all
    // the memory the session holds.
    let scratch =
        ScratchDir(std::env::temp_dir().join(format!("memwarden-demo-{}", std::process::id())));
    let store_config = StoreConfig {
        memory_bytes: 0,
        disk_bytes: config.snapshot.max_bytes.as_u64(),
        ..StoreConfig::new(&scratch.0)
    };
    let store = Arc::new(
        SnapshotStore::open(store_config, Arc::clone(tracker.clock()))
            .with_context(|| format!("opening the snapshot store in {}", scratch.0.display()))?,
    );
    lifecycle.set_snapshot_store(Arc::clone(&store));
    if let Some(budget) = args.budget {
        lifecycle.set_budget(budget);
    }
    let budget = lifecycle.budget().as_u64();
    anyhow::ensure!(budget > 0, "--budget must be more than 0 bytes");
    let mut rng = StdRng::seed_from_u64(args.seed);
    let frames = Popularity::new(FRAMES, &mut rng)?;
    let clips = Popularity::new(CLIPS, &mut rng)?;
    let tracks = Popularity::new(TRACKS, &mut rng)?;
    let entries = Popularity::new(TRACK_ENTRIES, &mut rng)?;
    let models = Popularity::new(MODELS.len(), &mut rng)?;
    let mut session = Session {
        lifecycle,
        clock,
        rng,
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
    let started = Instant::now();
    let mut tracked = Tracked {
        min_bytes: u64::MAX,
        max_bytes: 0,
        final_bytes: 0,
        steps_over_budget: 0,
        samples: Vec::new(),
    };
    let sample_every = (args.steps / 60).max(1);
    for step in 0..args.steps {
        session.clock.advance(STEP);
        if step % SWEEP_EVERY == 0 {
            session.lifecycle.sweep();
        }
        let roll: f64 = session.rng.random();
        match roll {
            r if r < 0.45 => {
                let n = frames.pick(&mut session.rng);
                session.frame(n)?;
            }
            r if r < 0.65 => {
                let n = clips.pick(&mut session.rng);
                session.clip(n)?;
            }
            r if r < 0.75 => {
                let (t, e) = (
                    tracks.pick(&mut session.rng),
                    entries.pick(&mut session.rng),
                );
                session.subtitles(t, e)?;
            }
            _ => {
                let m = models.pick(&mut session.rng);
                session.inference(m, step)?;
            }
        }
        let bytes = session.tracker().totals().bytes;
        tracked.min_bytes = tracked.min_bytes.min(bytes);
        tracked.max_bytes = tracked.max_bytes.max(bytes);
        tracked.steps_over_budget += u64::from(bytes > budget);
        if step % sample_every == 0 || step + 1 == args.steps {
            tracked.samples.push((step, bytes));
            progress.set_message(format!(
                "tracked {} of {}",
                ByteSize::b(bytes),
                ByteSize::b(budget)
            ));
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    tracked.final_bytes = session.tracker().totals().bytes;
    if args.steps == 0 {
        tracked.min_bytes = 0;
    }

    let stats = session.lifecycle.reaper().stats();
    let mut kinds = BTreeMap::new();
    for kind in ResourceKind::BUILTIN {
        let a = session.access.get(&kind).copied().unwrap_or_default();
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
    let (hits, restores, reloads) = session.access.values().fold((0, 0, 0), |(h, s, r), a| {
        (h + a.hits, s + a.restores, r + a.reloads)
    });
    let store_stats = store.stats();
    let snapshots = SnapshotReport {
        dir: scratch.0.display().to_string(),
        writes: stats.total.snapshots,
        write_failures: stats.total.snapshot_failures,
        restores,
        files_on_disk: store_stats.count,
        bytes_on_disk: store_stats.disk_bytes,
    };
    let report = Report {
        seed: args.seed,
        steps: args.steps,
        budget_bytes: budget,
        warning_fraction: session.lifecycle.thresholds().warning,
        critical_fraction: session.lifecycle.thresholds().critical,
        simulated_seconds: (STEP * args.steps as u32).as_secs_f64(),
        wall_seconds: started.elapsed().as_secs_f64(),
        tracked,
        kinds,
        accesses: hits + restores + reloads,
        hits,
        restores,
        reloads,
        hit_ratio: ratio(hits, hits + restores + reloads),
        bytes_freed: stats.total.bytes_freed,
        snapshots,
        rss: rss::read(),
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", render(&report)),
    }
    Ok(())
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
        "memwarden demo: seed {}, {} steps ({:.0} s simulated, {:.2} s wall), budget {} (warning {:.0}%, critical {:.0}%)",
        r.seed,
        r.steps,
        r.simulated_seconds,
        r.wall_seconds,
        b(r.budget_bytes),
        r.warning_fraction * 100.0,
        r.critical_fraction * 100.0
    );
    let _ = writeln!(
        out,
        "\ntracked bytes: min {}, max {} ({:.1}% of budget), final {}; steps over budget: {}",
        b(r.tracked.min_bytes),
        b(r.tracked.max_bytes),
        r.tracked.max_bytes as f64 / r.budget_bytes as f64 * 100.0,
        b(r.tracked.final_bytes),
        r.tracked.steps_over_budget
    );
    let _ = writeln!(
        out,
        "over time:     {}",
        sparkline(&r.tracked.samples, r.budget_bytes)
    );
    let _ = writeln!(
        out,
        "               (each bar one sample; a full bar is the budget)\n"
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
    let failures: u64 = r.kinds.values().map(|k| k.handler_failures).sum();
    let _ = writeln!(
        out,
        "\nsnapshots: {} written ({} failed), {} restored instead of re-rendered; {} files, {} on disk at the end",
        r.snapshots.writes,
        r.snapshots.write_failures,
        r.snapshots.restores,
        r.snapshots.files_on_disk,
        b(r.snapshots.bytes_on_disk)
    );
    let _ = writeln!(out, "release handler failures: {failures}");
    match r.rss {
        Some(rss) => {
            let _ = writeln!(
                out,
                "\nprocess RSS (from /proc/self/status): {} now, {} peak",
                b(rss.current_bytes),
                b(rss.peak_bytes)
            );
        }
        None => {
            let _ = writeln!(out, "\nprocess RSS: not available on this platform");
        }
    }
    out
}

fn sparkline(samples: &[(u64, u64)], budget: u64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    samples
        .iter()
        .map(|&(_, bytes)| {
            let level = (bytes as f64 / budget.max(1) as f64 * 8.0).ceil() as usize;
            BARS[level.clamp(1, 8) - 1]
        })
        .collect()
}
