//! The reaper: releasing resources through per-kind handlers, safely.
//!
//! Sets up a [`Reaper`] with the kind-specific work an editing-and-inference application
//! needs, all on real memory:
//!
//! - `model_shards`: after the shard is dropped, its device cache is cleared (here a
//!   list of cached blocks standing in for a GPU allocator's cache);
//! - `model_weights_cache`: before the weights are dropped, they are offloaded to a slower
//!   tier (here a second buffer standing in for host memory), so a switch back is quick;
//! - `render_cache`: before a frame is dropped, it is persisted as a real file in a fresh
//!   directory under the system temp dir (removed at the end);
//! - a handler that returns an error and one that panics: both are contained, the
//!   resource is dropped anyway, and the report says what went wrong;
//! - `subtitle_index`: released incrementally through [`Shrink`], keeping the hot cues;
//! - a [`ReleaseGuard`] that protects a locked frame from release;
//! - batch release, with the reasons a resource is skipped (locked, pinned, needed by
//!   another resource, not registered);
//!
//! and ends with the reaper's per-kind statistics as JSON.
//!
//! The panicking handler makes Rust's default panic hook print a panic message to
//! stderr; that is expected: the reaper catches the panic and reports it.
//! Set `RUST_LOG=debug` to see the reaper's own log lines as well.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p memwarden-examples --example resource_executor_demo
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, ensure};
use memwarden::core::{ByteSize, ManualClock, ResourceId, ResourceKind};
use memwarden::prioritizer::{Policy, Request, Urgency, plan};
use memwarden::reaper::{
    HandlerError, Hooks, Reaper, ReleaseGuard, ReleaseHandler, ReleaseReport, SkipReason,
};
use memwarden::tracker::{Detached, ResourceSpec, Shrink, Tracker};
use parking_lot::Mutex;

const MIB: usize = 1 << 20;

/// What the hooks did, in order, for printing after each release.
#[derive(Debug, Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    fn push(&self, event: String) {
        log::debug!("{event}");
        self.0.lock().push(event);
    }

    fn print(&self) {
        for event in self.0.lock().drain(..) {
            println!("    hook: {event}");
        }
    }
}

/// A rendered preview frame.
#[derive(Debug)]
struct Frame {
    index: u32,
    pixels: Vec<u8>,
}

/// A subtitle index whose cold cues can be dropped while the rest stays searchable.
#[derive(Debug)]
struct SubtitleIndex {
    cues: Mutex<Vec<Cue>>,
}

#[derive(Debug)]
struct Cue {
    number: u32,
    hits: u32,
    text: Vec<u8>,
}

const CUES: u32 = 4096;
const CUE_BYTES: usize = 1024;

impl SubtitleIndex {
    fn new() -> Self {
        let cues = (0..CUES)
            .map(|number| Cue {
                number,
                hits: 0,
                text: format!("cue {number}: ")
                    .into_bytes()
                    .into_iter()
                    .cycle()
                    .take(CUE_BYTES)
                    .collect(),
            })
            .collect();
        SubtitleIndex {
            cues: Mutex::new(cues),
        }
    }

    fn bytes(&self) -> u64 {
        self.cues.lock().iter().map(|c| c.text.len() as u64).sum()
    }

    fn lookup(&self, number: u32) -> bool {
        let mut cues = self.cues.lock();
        match cues.iter_mut().find(|c| c.number == number) {
            Some(cue) => {
                cue.hits += 1;
                true
            }
            None => false,
        }
    }
}

impl Shrink for SubtitleIndex {
    fn shrink(&self, fraction: f64) -> u64 {
        let mut cues = self.cues.lock();
        let drop = (cues.len() as f64 * fraction).round() as usize;
        // Coldest first, then by number so that the choice is deterministic.
        cues.sort_by_key(|c| (c.hits, c.number));
        let freed = cues.drain(..drop).map(|c| c.text.len() as u64).sum();
        cues.sort_by_key(|c| c.number);
        freed
    }
}

/// A lock table: a locked resource must not be released.
#[derive(Debug, Default)]
struct EditorLocks {
    held: Mutex<BTreeMap<ResourceId, String>>,
}

impl EditorLocks {
    fn lock(&self, id: &str, holder: &str) {
        self.held.lock().insert(id.into(), holder.to_owned());
    }
    fn unlock(&self, id: &str) {
        self.held.lock().remove(id);
    }
}

impl ReleaseGuard for EditorLocks {
    fn protects(&self, id: &ResourceId) -> Option<String> {
        self.held.lock().get(id).cloned()
    }
}

/// A handler written as a type rather than closures; this one's cleanup always panics.
#[derive(Debug)]
struct CrashingPluginHandler;

impl ReleaseHandler for CrashingPluginHandler {
    fn after_drop(&self, id: &ResourceId, _kind: &ResourceKind) -> Result<(), HandlerError> {
        panic!("the LUT plugin crashed while unloading {id}");
    }
}

/// A fresh directory under the system temp dir, removed (with its files) on drop.
#[derive(Debug)]
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("memwarden-executor-demo-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path)?;
        }
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            eprintln!("could not remove {}: {e}", self.0.display());
        }
    }
}

fn persist_frame(dir: &Path, resource: &Detached) -> Result<PathBuf, HandlerError> {
    let frame = resource
        .value
        .downcast_ref::<Frame>()
        .ok_or_else(|| format!("{} does not hold a Frame", resource.id))?;
    let path = dir.join(format!("frame-{:04}.raw", frame.index));
    fs::write(&path, &frame.pixels)?;
    Ok(path)
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error"))
        .format_timestamp(None)
        .init();

    let clock = ManualClock::new();
    let tracker = Arc::new(Tracker::with_clock(Arc::new(clock.clone())));
    let reaper = Reaper::new(Arc::clone(&tracker));
    let events = Events::default();
    let scratch = ScratchDir::new()?;
    let frames_dir = scratch.0.clone();

    // model_shards: drop, then clear the device cache the shard filled.
    let device_cache: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    reaper.set_handler(ResourceKind::ModelShards, {
        let (cache, events) = (Arc::clone(&device_cache), events.clone());
        Hooks::new().after_drop(move |id, _| {
            let blocks = std::mem::take(&mut *cache.lock());
            let bytes: usize = blocks.iter().map(Vec::len).sum();
            events.push(format!(
                "device cache cleared after dropping {id}: {} blocks, {} returned",
                blocks.len(),
                ByteSize::b(bytes as u64)
            ));
            Ok(())
        })
    });

    // model_weights_cache: offload the weights before they are dropped.
    let offloaded: Arc<Mutex<BTreeMap<ResourceId, Vec<u8>>>> = Arc::default();
    reaper.set_handler(ResourceKind::ModelWeightsCache, {
        let (offloaded, events) = (Arc::clone(&offloaded), events.clone());
        Hooks::new().before_drop(move |resource| {
            let weights = resource
                .value
                .downcast_ref::<Vec<u8>>()
                .ok_or("weights are not a byte buffer")?;
            offloaded
                .lock()
                .insert(resource.id.clone(), weights.clone());
            events.push(format!(
                "offloaded {} ({}) to the host tier before the drop",
                resource.id,
                ByteSize::b(weights.len() as u64)
            ));
            Ok(())
        })
    });

    // render_cache: persist the frame as a file before it is dropped.
    reaper.set_handler(ResourceKind::RenderCache, {
        let (dir, events) = (frames_dir.clone(), events.clone());
        Hooks::new().before_drop(move |resource| {
            let path = persist_frame(&dir, resource)?;
            events.push(format!(
                "persisted {} to {}",
                resource.id,
                path.file_name().unwrap_or_default().to_string_lossy()
            ));
            Ok(())
        })
    });

    // A custom kind whose handler fails, and one resource whose handler panics.
    let export_proxy = ResourceKind::custom("export_proxy")?;
    reaper.set_handler(
        export_proxy.clone(),
        Hooks::new().before_drop(|resource| {
            Err(format!("export service unreachable, {} not saved", resource.id).into())
        }),
    );
    reaper.set_resource_handler("plugin/lut-cache", CrashingPluginHandler);

    let locks = Arc::new(EditorLocks::default());
    reaper.add_guard(Arc::clone(&locks) as Arc<dyn ReleaseGuard>);

    // The resources.
    tracker.register(
        ResourceSpec::new(
            "llama/weights",
            ResourceKind::ModelWeightsCache,
            (6 * MIB) as u64,
        ),
        vec![0x57u8; 6 * MIB],
    )?;
    tracker.register(
        ResourceSpec::new("llama/shard-0", ResourceKind::ModelShards, (8 * MIB) as u64)
            .depends_on(["llama/weights"]),
        vec![0x53u8; 8 * MIB],
    )?;
    device_cache
        .lock()
        .extend((0..4).map(|i| vec![i as u8; MIB])); // what running the shard cached
    for index in 1..=4 {
        let pixels = vec![index as u8; 640 * 360 * 4];
        tracker.register(
            ResourceSpec::new(
                format!("frame-{index:04}"),
                ResourceKind::RenderCache,
                pixels.len() as u64,
            ),
            Frame { index, pixels },
        )?;
    }
    tracker.register(
        ResourceSpec::new("export/proxy-0001", export_proxy, (2 * MIB) as u64),
        vec![0u8; 2 * MIB],
    )?;
    tracker.register(
        ResourceSpec::new(
            "plugin/lut-cache",
            ResourceKind::custom("plugin_cache")?,
            MIB as u64,
        ),
        vec![0u8; MIB],
    )?;
    let subtitles = SubtitleIndex::new();
    let subtitle_bytes = subtitles.bytes();
    let subtitles = tracker.register_shrinkable(
        ResourceSpec::new("subs/en", ResourceKind::SubtitleIndex, subtitle_bytes),
        subtitles,
    )?;
    for n in 0..4 {
        tracker.register(
            ResourceSpec::new(
                format!("scratch/{n}"),
                ResourceKind::TempBuffers,
                MIB as u64,
            ),
            vec![0u8; MIB],
        )?;
    }
    tracker.register(
        ResourceSpec::new("scratch/pinned", ResourceKind::TempBuffers, MIB as u64).pinned(true),
        vec![0u8; MIB],
    )?;
    println!(
        "{} resources registered, {} tracked; frames persist to {}",
        tracker.len(),
        ByteSize::b(tracker.totals().bytes),
        std::env::temp_dir()
            .join("memwarden-executor-demo-<pid>")
            .display()
    );

    println!(
        "\n== model weights and the shard that uses them: release_batch([weights, shard, weights]) =="
    );
    let report = reaper.release_batch(["llama/weights", "llama/shard-0", "llama/weights"]);
    print_report(&report, &events);
    ensure!(offloaded.lock().contains_key("llama/weights"));
    ensure!(device_cache.lock().is_empty());
    println!(
        "  the first try was refused (the shard still needed the weights); the second went through"
    );

    println!("\n== render cache, with frame-0002 locked by the timeline scrubber ==");
    locks.lock("frame-0002", "timeline scrubber");
    let report = reaper.release_batch(["frame-0001", "frame-0002", "frame-0003", "frame-0004"]);
    print_report(&report, &events);
    println!("  the scrubber lets go of frame-0002:");
    locks.unlock("frame-0002");
    let report = reaper.release("frame-0002");
    print_report(&report, &events);
    let mut files: Vec<(String, u64)> = fs::read_dir(&frames_dir)?
        .map(|entry| -> anyhow::Result<(String, u64)> {
            let entry = entry?;
            Ok((
                entry.file_name().to_string_lossy().into_owned(),
                entry.metadata()?.len(),
            ))
        })
        .collect::<Result<_, _>>()?;
    files.sort();
    println!("  files on disk:");
    for (name, len) in &files {
        println!("    {name}  {}", ByteSize::b(*len));
    }
    ensure!(files.len() == 4, "every frame was persisted");

    println!("\n== handlers that fail: one returns an error, one panics ==");
    println!(
        "  (the panic message on stderr comes from Rust's default panic hook; the reaper catches it)"
    );
    let report = reaper.release_batch(["export/proxy-0001", "plugin/lut-cache"]);
    print_report(&report, &events);
    ensure!(report.failures == 2 && tracker.get_any("plugin/lut-cache").is_none());
    println!(
        "  both resources are gone from the tracker all the same, and the reaper keeps working"
    );

    println!("\n== incremental release of subs/en (half per step below critical urgency) ==");
    for cue in [7, 42, 99] {
        for _ in 0..3 {
            subtitles.lookup(cue);
        }
    }
    let policy = Policy::default();
    for urgency in [Urgency::High, Urgency::High, Urgency::Critical] {
        let request = Request::new(urgency, 1).of_kind(ResourceKind::SubtitleIndex);
        let plan = plan(&tracker.candidates(), &policy, &request);
        let report = reaper.execute(&plan);
        println!("  at {urgency} urgency:");
        print_report(&report, &events);
        let tracked = tracker
            .info("subs/en")
            .map_or("released".to_owned(), |c| ByteSize::b(c.bytes).to_string());
        let cues_left = subtitles.cues.lock().len();
        let hot_cue_kept = subtitles.lookup(42);
        println!(
            "    now tracked: {tracked}; {cues_left} cues left; hot cue 42 still there: {hot_cue_kept}"
        );
    }
    println!("  (the caller's handle still works after the full release, as for any value)");

    println!("\n== batch release of scratch buffers ==");
    let report = reaper.release_batch([
        "scratch/0",
        "scratch/1",
        "scratch/2",
        "scratch/pinned",
        "scratch/never-registered",
    ]);
    print_report(&report, &events);

    drop(scratch);
    println!(
        "\n{} resources left, {} tracked; the frame directory was removed: {}",
        tracker.len(),
        ByteSize::b(tracker.totals().bytes),
        !frames_dir.exists()
    );
    let mut stats = serde_json::to_value(reaper.stats())?;
    strip_key(&mut stats, "time_spent");
    println!(
        "reaper stats per kind (time_spent left out so that the output is the same every run):\n{}",
        serde_json::to_string_pretty(&stats)?
    );
    Ok(())
}

fn print_report(report: &ReleaseReport, events: &Events) {
    events.print();
    for r in &report.released {
        let mut line = format!(
            "  released {} ({}): {}",
            r.id,
            r.kind,
            ByteSize::b(r.bytes_freed)
        );
        if r.partial {
            line.push_str(", in part (stays registered)");
        }
        if let Some(error) = &r.handler_error {
            line.push_str(&format!(", handler failed: {error}"));
        }
        println!("{line}");
    }
    for s in &report.skipped {
        let why = match &s.reason {
            SkipReason::Pinned => "pinned".to_owned(),
            SkipReason::Locked { holder } => format!("locked by {holder}"),
            SkipReason::NeededBy { dependents } => {
                let ids: Vec<&str> = dependents.iter().map(ResourceId::as_str).collect();
                format!("still needed by {}", ids.join(", "))
            }
            SkipReason::Gone => "not registered".to_owned(),
            SkipReason::SnapshotFailed { error } => format!("snapshot failed: {error}"),
            other => format!("{other:?}"),
        };
        println!("  skipped {}: {why}", s.id);
    }
    println!(
        "  => {} freed, {} handler failures",
        ByteSize::b(report.bytes_freed),
        report.failures
    );
}

/// Removes every `key` field from a JSON value, at any depth.
fn strip_key(value: &mut serde_json::Value, key: &str) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove(key);
            map.values_mut().for_each(|v| strip_key(v, key));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| strip_key(v, key)),
        _ => {}
    }
}
