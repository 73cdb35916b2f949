//! A whole session under a byte budget: config, lifecycle, make_room, sweep.
//!
//! Loads the shipped configuration (`configs/releasable_resources.toml`), builds a
//! [`Lifecycle`] from it, and lowers the budget to 64 MiB so that pressure comes quickly.
//! Then a preview renderer produces 120 frames of 1280x720 RGBA (real `Vec<u8>` buffers,
//! 3.5 MiB each: 422 MiB in all) while a detector shard stays in use, scratch buffers come
//! and go, and the editor scrubs back over recent frames. Every new resource goes through
//! [`Lifecycle::make_room`] before it is registered, and the example checks after each
//! registration that the tracked bytes never exceed the budget. A byte counter in the
//! frames' `Drop` shows that what the tracker accounts for is what is really alive.
//! At the end it lets six minutes pass on the [`ManualClock`], sweeps what went idle past
//! its limit, and prints the reaper's statistics.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p memwarden-examples --example budgeted_session
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::ensure;
use memwarden::Lifecycle;
use memwarden::config::Config;
use memwarden::core::{ByteSize, ManualClock, ResourceKind};
use memwarden::reaper::ReleaseReport;
use memwarden::tracker::{ResourceSpec, Tracker};

const FRAMES: u32 = 120;
const FRAME_BYTES: usize = 1280 * 720 * 4;
const SHARD_BYTES: usize = 16 << 20;
const SCRATCH_BYTES: usize = 4 << 20;
const WEIGHTS_BYTES: usize = 24 << 20;
/// One frame every 40 ms: 25 frames per second.
const FRAME_INTERVAL: Duration = Duration::from_millis(40);

/// Bytes held by frames that are still alive, wherever they are held.
static LIVE_FRAME_BYTES: AtomicU64 = AtomicU64::new(0);

/// A rendered frame; its pixels are real memory, and its drop is counted.
struct Frame {
    pixels: Vec<u8>,
}

impl Frame {
    fn render(number: u32) -> Self {
        let pixels = vec![(number % 251) as u8 | 1; FRAME_BYTES];
        LIVE_FRAME_BYTES.fetch_add(pixels.len() as u64, Ordering::Relaxed);
        Frame { pixels }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        LIVE_FRAME_BYTES.fetch_sub(self.pixels.len() as u64, Ordering::Relaxed);
    }
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();

    let config = Config::shipped();
    println!(
        "shipped config: budget {}, warning at {:.0}%, critical at {:.0}%",
        config.monitor.budget,
        config.monitor.warning_fraction * 100.0,
        config.monitor.critical_fraction * 100.0
    );
    println!(
        "  {:<20} {:>4} {:>6} {:>8} {:>9}",
        "kind", "prio", "ttl", "max_idle", "cap"
    );
    for (kind, k) in config.kinds.iter() {
        println!(
            "  {:<20} {:>4} {:>6} {:>8} {:>9}",
            kind.as_str(),
            k.priority,
            span(k.ttl),
            span(k.max_idle),
            k.max_bytes.map_or("-".to_owned(), |b| b.to_string())
        );
    }

    let clock = ManualClock::new();
    let tracker = Arc::new(Tracker::with_clock(Arc::new(clock.clone())));
    let lifecycle = Lifecycle::from_config(Arc::clone(&tracker), &config);
    let budget = ByteSize::mib(64);
    lifecycle.set_budget(budget)?;
    let thresholds = lifecycle.thresholds();
    println!(
        "\nbudget lowered to {budget}: above {} (the warning line) make_room frees down to it, \
         and if {budget} would be passed, anything unpinned may go",
        ByteSize::b((budget.as_u64() as f64 * thresholds.warning) as u64)
    );

    let mut session = Session {
        lifecycle: &lifecycle,
        budget: budget.as_u64(),
        peak: 0,
        released: ReleaseReport::default(),
    };
    session.admit(
        ResourceSpec::new(
            "detector/shard-0",
            ResourceKind::ModelShards,
            SHARD_BYTES as u64,
        ),
        vec![0x5au8; SHARD_BYTES],
    )?;

    println!(
        "\n{:>6} {:>12} {:>7} {:>9} {:>12}   (released and freed: over the last 10 frames)",
        "frame", "tracked", "frames", "released", "freed"
    );
    // What had been released when the last row was printed.
    let (mut released_before, mut freed_before) = (0, 0);
    for number in 1..=FRAMES {
        clock.advance(FRAME_INTERVAL);
        session.admit(
            ResourceSpec::new(
                format!("frame-{number:04}"),
                ResourceKind::RenderCache,
                FRAME_BYTES as u64,
            ),
            Frame::render(number),
        )?;
        if number % 8 == 0 {
            session.admit(
                ResourceSpec::new(
                    format!("scratch/{number}"),
                    ResourceKind::TempBuffers,
                    SCRATCH_BYTES as u64,
                ),
                vec![0u8; SCRATCH_BYTES],
            )?;
        }
        // The detector runs on every frame.
        tracker.touch("detector/shard-0");
        if number % 10 == 0 {
            println!(
                "{number:>6} {:>12} {:>7} {:>9} {:>12}",
                ByteSize::b(tracker.totals().bytes).to_string(),
                tracker.kind_total(&ResourceKind::RenderCache).count,
                session.released.released.len() - released_before,
                ByteSize::b(session.released.bytes_freed - freed_before).to_string()
            );
            released_before = session.released.released.len();
            freed_before = session.released.bytes_freed;
        }
    }

    let frames = tracker.kind_total(&ResourceKind::RenderCache);
    let live = LIVE_FRAME_BYTES.load(Ordering::Relaxed);
    println!(
        "\n{FRAMES} frames rendered ({}), {} resident ({}); peak tracked {} of {budget}",
        ByteSize::b(u64::from(FRAMES) * FRAME_BYTES as u64),
        frames.count,
        ByteSize::b(frames.bytes),
        ByteSize::b(session.peak)
    );
    println!(
        "frame bytes really alive (counted in Drop): {}; the tracker accounts for {}",
        ByteSize::b(live),
        ByteSize::b(frames.bytes)
    );
    ensure!(live == frames.bytes, "released frames were freed");
    let resident: Vec<u32> = (1..=FRAMES)
        .filter(|n| tracker.contains(&format!("frame-{n:04}")))
        .collect();
    println!(
        "resident frames: {resident:?} (the oldest went first); detector shard kept: {}",
        tracker.contains("detector/shard-0")
    );

    println!(
        "\nthe user switches models: {} of model weights arrive",
        ByteSize::b(WEIGHTS_BYTES as u64)
    );
    let projected = tracker.totals().bytes + WEIGHTS_BYTES as u64;
    println!(
        "  projected {} of {budget}: {} urgency",
        ByteSize::b(projected),
        thresholds.urgency(projected, budget.as_u64())
    );
    let before = session.released.released.len();
    session.admit(
        ResourceSpec::new(
            "tracker-model/weights",
            ResourceKind::ModelWeightsCache,
            WEIGHTS_BYTES as u64,
        ),
        vec![0x77u8; WEIGHTS_BYTES],
    )?;
    let made_room = &session.released.released[before..];
    let names: Vec<&str> = made_room.iter().map(|r| r.id.as_str()).collect();
    println!(
        "  make_room released {}: {}; tracked now {}",
        ByteSize::b(made_room.iter().map(|r| r.bytes_freed).sum()),
        names.join(", "),
        ByteSize::b(tracker.totals().bytes)
    );

    println!("\nsix minutes pass without use; sweeping what is due:");
    clock.advance(Duration::from_secs(6 * 60));
    let swept = lifecycle.sweep();
    println!(
        "  released {} resources, {} freed; {} left ({}), frame bytes alive: {}",
        swept.released.len(),
        ByteSize::b(swept.bytes_freed),
        tracker.len(),
        ByteSize::b(tracker.totals().bytes),
        ByteSize::b(LIVE_FRAME_BYTES.load(Ordering::Relaxed))
    );
    println!(
        "  (render_cache and temp_buffers idle out after 5 min and 30 s; the shard and the \
         weights are allowed 10 and 15 min)"
    );

    let stats = lifecycle.reaper().stats();
    println!(
        "\nreaper stats:\n  {:<20} {:>8} {:>8} {:>12} {:>8} {:>7}",
        "kind", "releases", "partial", "freed", "failures", "skipped"
    );
    let rows = stats
        .kinds
        .iter()
        .map(|(kind, s)| (kind.as_str(), s))
        .chain([("total", &stats.total)]);
    for (name, s) in rows {
        println!(
            "  {:<20} {:>8} {:>8} {:>12} {:>8} {:>7}",
            name,
            s.releases,
            s.partial_releases,
            ByteSize::b(s.bytes_freed).to_string(),
            s.failures,
            s.skipped
        );
    }
    let t = tracker.stats();
    println!(
        "tracker stats: {} registered, {} released, {} hits, {} misses",
        t.registered, t.detached, t.hits, t.misses
    );
    Ok(())
}

/// A duration as the config file writes it ("30s", "10m", "1h"), or "-" for none.
fn span(d: Option<Duration>) -> String {
    match d.map(|d| d.as_secs()) {
        None => "-".to_owned(),
        Some(s) if s % 3600 == 0 => format!("{}h", s / 3600),
        Some(s) if s % 60 == 0 => format!("{}m", s / 60),
        Some(s) => format!("{s}s"),
    }
}

/// Admits resources into the budget: make room first, then register, then check.
struct Session<'a> {
    lifecycle: &'a Lifecycle,
    budget: u64,
    peak: u64,
    released: ReleaseReport,
}

impl Session<'_> {
    fn admit<T: Send + Sync + 'static>(
        &mut self,
        spec: ResourceSpec,
        value: T,
    ) -> anyhow::Result<()> {
        let report = self.lifecycle.make_room(&spec.kind, spec.bytes);
        if !report.released.is_empty() {
            log::debug!(
                "made room for {}: released {} resources, {} bytes",
                spec.id,
                report.released.len(),
                report.bytes_freed
            );
        }
        self.released.merge(report);
        let tracker = self.lifecycle.tracker();
        let id = spec.id.clone();
        tracker.register(spec, value)?;
        let tracked = tracker.totals().bytes;
        self.peak = self.peak.max(tracked);
        ensure!(
            tracked <= self.budget,
            "{id} took the tracked bytes to {tracked}, over the budget of {}",
            self.budget
        );
        Ok(())
    }
}
