//! The runtime under concurrent load, against the real RSS: every operation at once, for
//! `MEMWARDEN_STRESS_SECS` seconds (3 by default; CI runs 15).
//!
//! A test binary of its own, not a module of `tests/runtime`: it measures the process's
//! peak RSS, which other tests running beside it in one process would disturb.
//!
//! Worker threads mix registrations, gets and touches, releases by id (the application
//! replacing a resource), pins, dependencies, admissions of heap buffers, restores from
//! snapshots, model loads and unloads under the registry's cap (admitted through the
//! governor), and locks; release handlers call back into the registry and the governor.
//! A watchdog fails the test, naming every thread's last operation, when one stops
//! progressing. At the end: the tracker's totals equal what is registered, no pinned,
//! locked or depended-on resource went while so held, no snapshot older than the value
//! last registered came back, every load was admitted, and the peak RSS stayed within
//! the budget plus 5 %.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use memwarden_core::{ByteSize, ResourceKind};
use memwarden_lock::{LockConfig, LockManager};
use memwarden_reaper::Hooks;
use memwarden_runtime::config::Config;
use memwarden_runtime::registry::{ModelDecl, RegistryConfig, write_model_file};
use memwarden_runtime::{Fetched, Runtime};
use memwarden_snapshot::{PixelFormat, RenderFrame, StoreConfig};
use memwarden_tracker::ResourceSpec;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const BUDGET: u64 = 96 * MIB;
const MODELS: usize = 6;
const WORKERS: usize = 6;

/// What went wrong, counted by every thread.
#[derive(Default)]
struct Violations {
    stale_restores: AtomicU64,
    pinned_released: AtomicU64,
    locked_released: AtomicU64,
    dependency_released: AtomicU64,
    failed_loads: AtomicU64,
}

/// Each thread's progress, for the watchdog.
struct Progress {
    ops: AtomicU64,
    last: Mutex<&'static str>,
}

impl Progress {
    fn at(&self, op: &'static str) {
        *self.last.lock().expect("not poisoned") = op;
        self.ops.fetch_add(1, Ordering::Relaxed);
    }
}

/// A small xorshift generator: the workload differs per thread and per run seed, with
/// no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The peak RSS of this process since the last reset, from the kernel (`VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("a VmHWM line")
        * KIB
}

fn frame(index: u64, bytes: u64) -> RenderFrame {
    RenderFrame {
        width: (bytes / 4) as u32,
        height: 1,
        stride: bytes as u32,
        format: PixelFormat::Rgba8,
        index,
        pts_us: 0,
        pixels: vec![(index % 251) as u8; bytes as usize],
    }
}

struct World {
    runtime: Runtime,
    violations: Violations,
    stop: AtomicBool,
    /// Versions handed out to frames, so that every registration is a new one.
    versions: AtomicU64,
}

/// One worker: its own frames (only it registers them, so it knows their latest
/// version), and everything else shared.
fn worker(world: &World, me: usize, progress: &Progress) {
    let runtime = &world.runtime;
    let tracker = runtime.tracker();
    let locks = runtime.locks().expect("locks are set");
    let v = &world.violations;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((me as u64 + 1) * 0x2545_f491));
    let mut latest: HashMap<String, u64> = HashMap::new();
    // A new version of frame `id`, admitted, made and registered; remembered as its latest.
    let load_new = |id: &str, bytes: u64, latest: &mut HashMap<String, u64>| {
        let admission = runtime.admit(&ResourceKind::RenderCache, bytes);
        let version = world.versions.fetch_add(1, Ordering::Relaxed);
        let spec = ResourceSpec::new(id, ResourceKind::RenderCache, bytes);
        if tracker.register(spec, frame(version, bytes)).is_ok() {
            latest.insert(id.to_owned(), version);
        }
        drop(admission);
    };
    while !world.stop.load(Ordering::Relaxed) {
        let id = format!("frame-{me}-{}", rng.below(24));
        let bytes = (64 + rng.below(448)) * KIB;
        match rng.below(10) {
            // Get, or restore, or load anew: the common path.
            0..=3 => {
                progress.at("get_or_restore");
                let spec = ResourceSpec::new(id.as_str(), ResourceKind::RenderCache, bytes);
                match runtime.lifecycle().get_or_restore::<RenderFrame>(&spec) {
                    Ok(Some(Fetched::Held(f) | Fetched::Restored(f))) => {
                        if latest.get(&id) != Some(&f.index) {
                            v.stale_restores.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(None) => {
                        progress.at("admit frame");
                        load_new(&id, bytes, &mut latest);
                    }
                    Err(_) => {}
                }
            }
            // The application replaces a frame: released by id, registered anew.
            4 => {
                progress.at("replace");
                runtime.lifecycle().reaper().release(&id);
                load_new(&id, bytes, &mut latest);
            }
            // Pin, work, check it stayed, unpin.
            5 => {
                progress.at("pin");
                if tracker.set_pinned(&id, true).is_ok() {
                    tracker.touch(&id);
                    thread::yield_now();
                    if !tracker.contains(&id) {
                        v.pinned_released.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = tracker.set_pinned(&id, false);
                }
            }
            // Lock, check it stays while held.
            6 => {
                progress.at("lock");
                if let Ok(guard) = locks.try_read_for(&id, Duration::from_millis(50)) {
                    let held_at_grant = tracker.contains(&id);
                    thread::yield_now();
                    if held_at_grant && !tracker.contains(&id) {
                        v.locked_released.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(guard);
                }
            }
            // A subtitle index that depends on one of this thread's frames.
            7 => {
                progress.at("dependency");
                // One index per frame, so it always depends on that frame.
                let sub = format!("subs-of-{id}");
                let spec = ResourceSpec::new(sub.as_str(), ResourceKind::SubtitleIndex, 16 * KIB)
                    .depends_on([id.as_str()]);
                let _ = tracker.register(spec, vec![1u8; 16 << 10]);
                // The frame may not go while the index is registered.
                if !tracker.contains(&id) && tracker.contains(&sub) {
                    v.dependency_released.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Models: a get (its weights read), sometimes an unload.
            8 => {
                let model = format!("model-{}", rng.below(MODELS as u64));
                progress.at("model get");
                match runtime.registry().get(&model) {
                    Ok(m) => {
                        let bytes = m.as_bytes();
                        let mut sum = 0u64;
                        for page in (0..bytes.len()).step_by(4096) {
                            sum = sum.wrapping_add(u64::from(bytes[page]));
                        }
                        std::hint::black_box(sum);
                    }
                    Err(_) => {
                        v.failed_loads.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if rng.below(4) == 0 {
                    progress.at("model unload");
                    let _ = runtime.registry().unload(&model);
                }
            }
            // A heap buffer, admitted, then registered as temporary.
            _ => {
                progress.at("temp buffer");
                let bytes = (256 + rng.below(1792)) * KIB;
                let admission = runtime.admit(&ResourceKind::TempBuffers, bytes);
                let buffer = vec![me as u8; bytes as usize];
                let spec = ResourceSpec::new(
                    format!("temp-{me}-{}", rng.below(8)),
                    ResourceKind::TempBuffers,
                    bytes,
                );
                if tracker.register(spec, buffer).is_err() {
                    // Taken: release the old one and leave it at that.
                    runtime
                        .lifecycle()
                        .reaper()
                        .release(&format!("temp-{me}-0"));
                }
                drop(admission);
            }
        }
    }
}

#[test]
fn the_runtime_holds_its_budget_and_its_promises_under_concurrent_load() {
    let seconds: u64 = std::env::var("MEMWARDEN_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let models = dir.path().join("models");
    std::fs::create_dir(&models).expect("a models directory");
    let mut config = Config::shipped();
    config.monitor.tick = Duration::from_millis(10);
    let runtime = Runtime::builder(&config)
        .budget(ByteSize::b(BUDGET).to_string().parse().expect("a budget"))
        // The store's memory tier is memory the tracker does not see: kept small.
        .snapshots(StoreConfig {
            memory_bytes: 8 * MIB,
            ..StoreConfig::new(dir.path().join("snapshots"))
        })
        .locks(Arc::new(
            LockManager::with_config(LockConfig::without_leases()).expect("a valid config"),
        ))
        .registry(RegistryConfig {
            cap: Some(ByteSize::mib(12)),
            ..RegistryConfig::default()
        })
        .start()
        .expect("the runtime starts");
    for i in 0..MODELS {
        let path = models.join(format!("model-{i}.safetensors"));
        write_model_file(&path, 4 * MIB, i as u64).expect("a model file");
        runtime
            .registry()
            .declare(ModelDecl::new(format!("model-{i}"), path))
            .expect("a fresh id");
    }
    let world = Arc::new(World {
        runtime,
        violations: Violations::default(),
        stop: AtomicBool::new(false),
        versions: AtomicU64::new(1),
    });
    // Handlers that call back in: a released frame may load a model and make room.
    {
        let weak = Arc::downgrade(&world);
        let calls = AtomicU64::new(0);
        world.runtime.lifecycle().reaper().set_handler(
            ResourceKind::RenderCache,
            Hooks::new().after_drop(move |_, _| {
                let n = calls.fetch_add(1, Ordering::Relaxed);
                if let Some(world) = weak.upgrade() {
                    if n.is_multiple_of(16) {
                        world.runtime.registry().get(&format!("model-{}", n % 6))?;
                    }
                    if n.is_multiple_of(8) {
                        world.runtime.make_room(&ResourceKind::TempBuffers, 0);
                    }
                }
                Ok(())
            }),
        );
    }
    // The peak from here on (writing 5 to clear_refs resets VmHWM).
    std::fs::write("/proc/self/clear_refs", "5").expect("the peak RSS resets");

    let progress: Arc<Vec<Progress>> = Arc::new(
        (0..WORKERS)
            .map(|_| Progress {
                ops: AtomicU64::new(0),
                last: Mutex::new("start"),
            })
            .collect(),
    );
    let workers: Vec<_> = (0..WORKERS)
        .map(|me| {
            let (world, progress) = (Arc::clone(&world), Arc::clone(&progress));
            thread::spawn(move || worker(&world, me, &progress[me]))
        })
        .collect();
    // The watchdog: every thread must move within each 10 s.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut seen = [0u64; WORKERS];
    let mut moved_at = [Instant::now(); WORKERS];
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
        for (i, p) in progress.iter().enumerate() {
            let ops = p.ops.load(Ordering::Relaxed);
            if ops != seen[i] {
                seen[i] = ops;
                moved_at[i] = Instant::now();
            }
        }
        if moved_at
            .iter()
            .any(|t| t.elapsed() > Duration::from_secs(10))
        {
            let report: Vec<String> = progress
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    format!(
                        "thread {i}: {} ops, last {:?}, still for {:.1} s",
                        p.ops.load(Ordering::Relaxed),
                        *p.last.lock().expect("not poisoned"),
                        moved_at[i].elapsed().as_secs_f64()
                    )
                })
                .collect();
            panic!("a worker stopped progressing:\n{}", report.join("\n"));
        }
    }
    world.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("a worker panicked");
    }
    let peak = peak_rss();

    let ops: u64 = progress.iter().map(|p| p.ops.load(Ordering::Relaxed)).sum();
    let tracker = world.runtime.tracker();
    let registered = tracker.candidates().candidates;
    let v = &world.violations;
    let governor = world.runtime.governor().expect("a governor").stats();
    eprintln!(
        "{ops} operations in {seconds} s on {WORKERS} threads; peak RSS {:.1} MiB of {} MiB; \
         {} admissions, {} releases by the governor, {} restores, {} model loads",
        peak as f64 / MIB as f64,
        BUDGET / MIB,
        governor.admissions,
        governor.release_count,
        world.runtime.lifecycle().restores(),
        world
            .runtime
            .registry()
            .inspect()
            .models
            .iter()
            .map(|m| m.loads)
            .sum::<u64>(),
    );
    assert_eq!(
        tracker.totals().bytes,
        registered.iter().map(|c| c.bytes).sum::<u64>(),
        "the totals are the sum of what is registered"
    );
    assert_eq!(tracker.totals().count, registered.len() as u64);
    for (what, count) in [
        ("stale restores", &v.stale_restores),
        ("pinned resources released", &v.pinned_released),
        ("locked resources released", &v.locked_released),
        (
            "depended-on resources released first",
            &v.dependency_released,
        ),
        ("failed model loads", &v.failed_loads),
    ] {
        assert_eq!(count.load(Ordering::Relaxed), 0, "{what}");
    }
    assert!(
        peak as f64 <= BUDGET as f64 * 1.05,
        "peak RSS {:.1} MiB passed the {} MiB budget by more than 5 %",
        peak as f64 / MIB as f64,
        BUDGET / MIB
    );
}
