//! A lazy model registry serving an inference pipeline under a cap.
//!
//! Six safetensors models, 360 MiB in all, are declared in a [`ModelRegistry`] capped at
//! 256 MiB, inside a [`Lifecycle`] with a 1 GiB budget. The demo, checked as it goes (it
//! fails if the registry behaves otherwise):
//!
//! 1. writes the model files once into a cache directory (`$MEMWARDEN_MODEL_CACHE`, else
//!    `memwarden-model-cache` in the temp directory) with [`write_model_file`]; later runs
//!    reuse them. Each file is written under a temporary name and renamed, so an
//!    interrupted run leaves no half-written model;
//! 2. declares the six models and shows what that costs in resident memory (nothing is
//!    opened, so next to nothing);
//! 3. preloads the pinned detector on the registry's background thread;
//! 4. runs ten jobs, each a `get` of one model and a pass over one of its layers. A first
//!    `get` maps the file and parses its header; only the layer the job reads becomes
//!    resident. Past the cap the registry has the reaper unload the least recently used
//!    model, lowest priority first: the pinned detector and the priority-9 depth model
//!    stay;
//! 5. declares a truncated copy of a model: its `get` fails with an error naming the
//!    file, and the registry carries on;
//! 6. asks the lifecycle for 900 MiB of render cache: the release plan takes every model
//!    but the pinned one, through the reaper, and the next `get` maps its model again;
//! 7. prints the registry's status as JSON.
//!
//! Run it with (the first run writes the files; `--release` makes that quick):
//!
//! ```text
//! cargo run -p memwarden-examples --example model_registry_demo
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use memwarden::Lifecycle;
use memwarden::core::{ByteSize, Priority, ResourceKind};
use memwarden::registry::{
    Model, ModelDecl, ModelRegistry, RegistryConfig, RegistryError, write_model_file,
};
use memwarden::tracker::Tracker;

const MIB: u64 = 1 << 20;
/// The registry's cap.
const CAP_MIB: u64 = 256;
/// The lifecycle's budget.
const BUDGET_MIB: u64 = 1024;

/// One model of the demo.
struct Spec {
    name: &'static str,
    mib: u64,
    kind: ResourceKind,
    priority: Option<i64>,
    pinned: bool,
}

const MODELS: [Spec; 6] = [
    Spec {
        name: "detector",
        mib: 96,
        kind: ResourceKind::ModelShards,
        priority: None,
        pinned: true,
    },
    Spec {
        name: "tracker-head",
        mib: 32,
        kind: ResourceKind::ModelWeightsCache,
        priority: None,
        pinned: false,
    },
    Spec {
        name: "segmenter",
        mib: 64,
        kind: ResourceKind::ModelWeightsCache,
        priority: None,
        pinned: false,
    },
    Spec {
        name: "ocr",
        mib: 48,
        kind: ResourceKind::ModelWeightsCache,
        priority: None,
        pinned: false,
    },
    Spec {
        name: "depth",
        mib: 80,
        kind: ResourceKind::ModelShards,
        priority: Some(9),
        pinned: false,
    },
    Spec {
        name: "pose",
        mib: 40,
        kind: ResourceKind::ModelWeightsCache,
        priority: None,
        pinned: false,
    },
];

/// The jobs, in order: which model each one runs.
const JOBS: [&str; 10] = [
    "detector",
    "segmenter",
    "ocr",
    "depth",
    "detector",
    "pose",
    "segmenter",
    "tracker-head",
    "depth",
    "ocr",
];

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();

    // 1. Model files, written once.
    let cache = std::env::var_os("MEMWARDEN_MODEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("memwarden-model-cache"));
    let paths = ensure_files(&cache)?;

    // 2. Declare: metadata only.
    let rss_start = rss();
    let lifecycle = Arc::new(Lifecycle::new(
        Arc::new(Tracker::new()),
        ByteSize::mib(BUDGET_MIB),
    ));
    let config = RegistryConfig {
        cap: Some(ByteSize::mib(CAP_MIB)),
        ..RegistryConfig::default()
    };
    let registry = ModelRegistry::new(Arc::clone(&lifecycle), config);
    for (spec, path) in MODELS.iter().zip(&paths) {
        let mut decl = ModelDecl::new(spec.name, path)
            .kind(spec.kind.clone())
            .pinned(spec.pinned);
        if let Some(p) = spec.priority {
            decl = decl.priority(Priority::new(p)?);
        }
        registry.declare(decl)?;
    }
    let rss_declared = rss();
    let on_disk: u64 = MODELS.iter().map(|m| m.mib).sum();
    println!(
        "\n== declared {} models ({on_disk} MiB on disk): RSS {} -> {} ({})",
        MODELS.len(),
        show(rss_start),
        show(rss_declared),
        delta(rss_start, rss_declared)
    );
    if let (Some(a), Some(b)) = (rss_start, rss_declared) {
        ensure!(b.saturating_sub(a) < MIB, "declaring cost more than 1 MiB");
    }
    ensure!(registry.inspect().models.iter().all(|m| !m.loaded));

    // 3. Preload the detector in the background.
    registry.preload(["detector"])?;
    let report = registry.wait_preload();
    ensure!(report.loaded.len() == 1 && report.failed.is_empty());
    println!(
        "== preloaded detector in the background: loaded {}",
        loaded(&registry)
    );

    // 4. Jobs under the cap.
    println!(
        "\n== {} jobs under a {CAP_MIB} MiB cap (get RSS: the change during the get, which \
         includes unmapping what it unloaded; job RSS: the pages the job read)",
        JOBS.len()
    );
    println!(
        "{:<4} {:<13} {:<5} {:>9} {:>13} {:>13}  loaded",
        "job", "model", "get", "get ms", "get RSS", "job RSS"
    );
    for (n, name) in JOBS.iter().enumerate() {
        let loads = row(&registry, name).loads;
        let before = rss();
        let start = Instant::now();
        let model = registry.get(name)?;
        let took = start.elapsed();
        let after_get = rss();
        let mean = run_job(&model)?;
        let after_job = rss();
        let how = if row(&registry, name).loads > loads {
            "load"
        } else {
            "hit"
        };
        println!(
            "{n:<4} {name:<13} {how:<5} {:>9.3} {:>13} {:>13}  {}   (mean |w| {mean:.3})",
            took.as_secs_f64() * 1e3,
            delta(before, after_get),
            delta(after_get, after_job),
            loaded(&registry)
        );
        let status = registry.inspect();
        ensure!(
            status.loaded_bytes <= CAP_MIB * MIB,
            "{} bytes loaded, over the cap",
            status.loaded_bytes
        );
    }
    for must in ["detector", "depth", "ocr"] {
        ensure!(registry.is_loaded(must), "{must} should be loaded");
    }
    let status = registry.inspect();
    println!(
        "\n{:<13} {:>5} {:>6} {:>8}",
        "model", "hits", "loads", "unloads"
    );
    for m in &status.models {
        println!(
            "{:<13} {:>5} {:>6} {:>8}",
            m.id.as_str(),
            m.hits,
            m.loads,
            m.unloads
        );
    }
    let segmenter = row(&registry, "segmenter");
    ensure!(
        (segmenter.loads, segmenter.unloads) == (2, 2),
        "segmenter: unloaded for depth, then for tracker-head"
    );
    ensure!(
        row(&registry, "depth").unloads == 0,
        "depth outranks the rest"
    );
    ensure!(
        row(&registry, "detector").unloads == 0,
        "detector is pinned"
    );

    // 5. A broken model file.
    let scratch = tempfile::Builder::new()
        .prefix("memwarden-registry-demo-")
        .tempdir()?;
    let broken = scratch.path().join("pose-truncated.safetensors");
    let pose = std::fs::read(&paths[5])?;
    std::fs::write(&broken, &pose[..pose.len() / 2])?;
    drop(pose);
    registry.declare(ModelDecl::new("pose-truncated", &broken))?;
    let err = registry
        .get("pose-truncated")
        .expect_err("half a file is refused");
    println!("\n== a truncated model file:\n   {err}");
    ensure!(matches!(err, RegistryError::Format { .. }));
    ensure!(err.to_string().contains(&*broken.to_string_lossy()));
    registry.get("pose")?;
    println!(
        "   the registry carries on: pose loaded, {}",
        loaded(&registry)
    );

    // 6. Pressure from elsewhere: the plan releases models through the reaper.
    let report = lifecycle.make_room(&ResourceKind::RenderCache, 900 * MIB);
    let released: Vec<&str> = report.released.iter().map(|r| r.id.as_str()).collect();
    println!(
        "\n== the render cache asks for 900 MiB of a {BUDGET_MIB} MiB budget: released {released:?} ({} MiB)",
        report.bytes_freed / MIB
    );
    ensure!(!released.is_empty() && !released.contains(&"detector"));
    println!(
        "   still loaded: {}; RSS {}",
        loaded(&registry),
        show(rss())
    );
    let ocr_loads = row(&registry, "ocr").loads;
    registry.get("ocr")?;
    ensure!(row(&registry, "ocr").loads == ocr_loads + 1, "mapped again");

    // 7. The status report.
    println!(
        "\n== registry status\n{}",
        serde_json::to_string_pretty(&registry.inspect())?
    );
    Ok(())
}

/// The model files in `dir`, written if missing or of the wrong size.
fn ensure_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the model cache {}", dir.display()))?;
    let start = Instant::now();
    let mut written = 0;
    let mut paths = Vec::new();
    for (seed, spec) in MODELS.iter().enumerate() {
        let path = dir.join(format!("{}-{}MiB.safetensors", spec.name, spec.mib));
        let bytes = spec.mib * MIB;
        let fresh = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes);
        if !fresh {
            write_model_file(&path, bytes, seed as u64)?;
            written += bytes;
        }
        paths.push(path);
    }
    if written > 0 {
        println!(
            "wrote {} MiB of model files into {} in {:.1} s",
            written / MIB,
            dir.display(),
            start.elapsed().as_secs_f64()
        );
    } else {
        println!("model files cached in {}", dir.display());
    }
    Ok(paths)
}

/// One inference-like pass: the mean magnitude of the first layer's weights. Reading them
/// pages in that layer, and only it.
fn run_job(model: &Model) -> anyhow::Result<f64> {
    let layer = model
        .tensor("layers.0.weight")
        .context("every demo model has a first layer")?;
    let sum: f64 = layer
        .data
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]).abs()))
        .sum();
    Ok(sum / layer.elements() as f64)
}

/// A model's row of the status.
fn row(registry: &ModelRegistry, id: &str) -> memwarden::registry::ModelInfo {
    registry
        .inspect()
        .models
        .into_iter()
        .find(|m| m.id.as_str() == id)
        .expect("declared")
}

/// The loaded models and their MiB.
fn loaded(registry: &ModelRegistry) -> String {
    let status = registry.inspect();
    let names: Vec<_> = status
        .models
        .iter()
        .filter(|m| m.loaded)
        .map(|m| m.id.as_str())
        .collect();
    format!("{} ({} MiB)", names.join(", "), status.loaded_bytes / MIB)
}

/// The process's resident set in bytes (Linux only).
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn show(rss: Option<u64>) -> String {
    rss.map_or_else(
        || "n/a".into(),
        |b| format!("{:.1} MiB", b as f64 / MIB as f64),
    )
}

fn delta(before: Option<u64>, after: Option<u64>) -> String {
    match (before, after) {
        (Some(a), Some(b)) => format!("{:+.2} MiB", (b as f64 - a as f64) / MIB as f64),
        _ => "n/a".into(),
    }
}
