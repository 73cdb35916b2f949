//! The defects a review and a load test found, one test each: re-entrant handlers that
//! hung, a wrapping projection, observers that stacked up, a stale snapshot restored,
//! admissions that overran the budget together, and a lock granted during a release.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock, mpsc};
use std::thread;
use std::time::Duration;

use memwarden_core::{ByteSize, ResourceKind};
use memwarden_lock::{LockConfig, LockManager};
use memwarden_reaper::{BeforeRelease, HandlerError, Hooks, Reaper, ReleaseGuard, SkipReason};
use memwarden_runtime::governor::{Governor, GovernorConfig, GovernorHandle};
use memwarden_runtime::registry::{ModelDecl, ModelRegistry, RegistryConfig, write_model_file};
use memwarden_runtime::{Fetched, Lifecycle};
use memwarden_tracker::{ResourceSpec, Tracker};

const MIB: u64 = 1 << 20;

/// Runs `f` on a thread of its own and fails the test if it has not returned within a
/// generous limit: a deadlock fails instead of hanging the run (the stuck thread is
/// left behind).
fn within_limit<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, wait) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(f());
    });
    match wait.recv_timeout(Duration::from_secs(20)) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked (above)"),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no progress in 20 s, deadlocked"),
    }
}

/// A governor over `lifecycle` whose RSS is `overhead` plus the tracked bytes.
fn governor(lifecycle: &Arc<Lifecycle>, overhead: u64) -> Governor {
    let tracker = Arc::clone(lifecycle.tracker());
    Governor::builder(Arc::clone(lifecycle), GovernorConfig::default())
        .source(move || Some(overhead + tracker.totals().bytes))
        .manual()
        .start()
        .expect("a valid config")
}

fn frames(tracker: &Tracker, count: usize, mib: u64) {
    for i in 0..count {
        let spec = ResourceSpec::new(format!("frame-{i}"), ResourceKind::RenderCache, mib * MIB);
        tracker.register(spec, ()).expect("a fresh id");
    }
}

#[test]
fn a_release_handler_may_make_room_through_the_governor() {
    within_limit("a handler calling governor.make_room during a tick", || {
        let lifecycle = Arc::new(Lifecycle::new(Arc::new(Tracker::new()), ByteSize::mib(100)));
        frames(lifecycle.tracker(), 20, 5);
        let handle: Arc<OnceLock<GovernorHandle>> = Arc::new(OnceLock::new());
        let calls = Arc::new(AtomicU64::new(0));
        {
            let (handle, calls) = (Arc::clone(&handle), Arc::clone(&calls));
            lifecycle.reaper().set_handler(
                ResourceKind::RenderCache,
                Hooks::new().after_drop(move |_, _| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    if let Some(governor) = handle.get() {
                        governor.make_room(&ResourceKind::TempBuffers, MIB);
                    }
                    Ok(())
                }),
            );
        }
        let governor = governor(&lifecycle, 0);
        handle.set(governor.handle()).expect("set once");
        // 100 MiB tracked against a 100 MiB budget: the tick releases, handlers call in.
        let released = governor.tick();
        assert!(released.bytes_freed > 0);
        // Every release ran the handler, those its own calls made included.
        assert_eq!(
            calls.load(Ordering::Relaxed),
            lifecycle.reaper().stats().total.releases
        );
    });
}

/// Writes and declares `name`, `bytes` long.
fn declare(registry: &ModelRegistry, dir: &std::path::Path, name: &str, bytes: u64) {
    let path = dir.join(format!("{name}.safetensors"));
    write_model_file(&path, bytes, 7).expect("the model file is written");
    registry
        .declare(ModelDecl::new(name, path))
        .expect("a fresh id");
}

#[test]
fn a_model_release_handler_may_get_another_model() {
    within_limit("a model handler calling registry.get under the cap", || {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let lifecycle = Arc::new(Lifecycle::new(Arc::new(Tracker::new()), ByteSize::gib(1)));
        let registry = Arc::new(ModelRegistry::new(
            Arc::clone(&lifecycle),
            RegistryConfig {
                cap: Some(ByteSize::kib(150)),
                ..RegistryConfig::default()
            },
        ));
        for name in ["a", "b", "c", "d"] {
            declare(&registry, dir.path(), name, 64 << 10);
        }
        let weak = Arc::downgrade(&registry);
        let fetched = Arc::new(AtomicU64::new(0));
        {
            let fetched = Arc::clone(&fetched);
            lifecycle.reaper().set_handler(
                ResourceKind::ModelWeightsCache,
                Hooks::new().after_drop(move |id, _| {
                    // Releasing `a` loads `d` in its place (a fallback model, say).
                    if id.as_str() == "a"
                        && let Some(registry) = weak.upgrade()
                    {
                        registry.get("d")?;
                        fetched.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }),
            );
        }
        registry.get("a").expect("a loads");
        registry.get("b").expect("b loads");
        registry
            .get("c")
            .expect("c loads, releasing a, whose handler loads d");
        assert_eq!(
            fetched.load(Ordering::Relaxed),
            1,
            "{:?}",
            lifecycle.reaper().stats()
        );
        assert!(registry.is_loaded("c"));
        assert!(!registry.is_loaded("a"));
    });
}

#[test]
fn handlers_calling_the_registry_do_not_deadlock_with_a_governor_admitting_its_loads() {
    within_limit(
        "handlers calling registry.get while loads are admitted",
        || {
            let dir = tempfile::tempdir().expect("a temporary directory");
            // A tight budget: every load's admission releases, and so runs handlers.
            let lifecycle = Arc::new(Lifecycle::new(Arc::new(Tracker::new()), ByteSize::kib(400)));
            let governor = Arc::new(governor(&lifecycle, 0));
            let registry = Arc::new(ModelRegistry::new(
                Arc::clone(&lifecycle),
                RegistryConfig::default(),
            ));
            let handle = governor.handle();
            registry.set_admission(move |kind, bytes| handle.admit(kind, bytes));
            let names: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
            for name in &names {
                declare(&registry, dir.path(), name, 64 << 10);
            }
            let weak = Arc::downgrade(&registry);
            lifecycle.reaper().set_handler(
                ResourceKind::ModelWeightsCache,
                Hooks::new().after_drop(move |id, _| {
                    if let Some(registry) = weak.upgrade() {
                        // Another model's state, through the registry.
                        let next = format!("m{}", (id.as_str()[1..].parse::<usize>()? + 1) % 8);
                        registry.get(&next)?;
                    }
                    Ok(())
                }),
            );
            let start = Arc::new(Barrier::new(3));
            let workers: Vec<_> = (0..2)
                .map(|w| {
                    let (registry, governor, start, names) = (
                        Arc::clone(&registry),
                        Arc::clone(&governor),
                        Arc::clone(&start),
                        names.clone(),
                    );
                    thread::spawn(move || {
                        start.wait();
                        for round in 0..200 {
                            let name = &names[(round * 3 + w) % names.len()];
                            registry.get(name).expect("the model loads");
                            governor.tick();
                        }
                    })
                })
                .collect();
            start.wait();
            for worker in workers {
                worker.join().expect("the worker finished");
            }
        },
    );
}

#[test]
fn a_huge_request_releases_what_may_go_instead_of_wrapping() {
    let mut lifecycle = Lifecycle::new(Arc::new(Tracker::new()), ByteSize::gib(1));
    lifecycle.set_kind_cap(ResourceKind::RenderCache, ByteSize::mib(100));
    frames(lifecycle.tracker(), 4, 1);
    let report = lifecycle.make_room(&ResourceKind::RenderCache, u64::MAX);
    assert_eq!(report.bytes_freed, 4 * MIB, "everything unpinned went");
    assert!(lifecycle.tracker().is_empty());
    let report = lifecycle.make_room(&ResourceKind::RenderCache, u64::MAX - 1);
    assert_eq!(report.bytes_freed, 0, "nothing left, and no panic");
}

#[test]
fn a_governor_started_again_tells_the_defragmenter_of_each_release_once() {
    use memwarden_defrag::{DefragConfig, Defragmenter};
    let lifecycle = Arc::new(Lifecycle::new(Arc::new(Tracker::new()), ByteSize::gib(1)));
    let defrag = Arc::new(
        Defragmenter::builder(DefragConfig::manual())
            .build()
            .expect("a manual config"),
    );
    let start = || {
        Governor::builder(Arc::clone(&lifecycle), GovernorConfig::default())
            .source(|| Some(MIB))
            .defrag(Arc::clone(&defrag))
            .manual()
            .start()
            .expect("a valid config")
    };
    start().shutdown();
    drop(start());
    let _governor = start();
    assert_eq!(lifecycle.reaper().observer_count(), 1);
    frames(lifecycle.tracker(), 1, 10);
    let before = defrag.pending_released();
    lifecycle.reaper().release("frame-0");
    assert_eq!(defrag.pending_released(), before + 10 * MIB);
}

/// Saves every value it is given and, on its first call, has another reaper release the
/// resource and register a new version under the same id before returning: the
/// application replacing a resource while its release is in flight.
struct ReplaceDuringSave {
    tracker: Arc<Tracker>,
    saved: parking_lot::Mutex<Vec<(String, u64)>>,
    discarded: AtomicU64,
}

impl BeforeRelease for ReplaceDuringSave {
    fn before_release(
        &self,
        id: &memwarden_core::ResourceId,
        _kind: &ResourceKind,
        _bytes: u64,
        value: &(dyn std::any::Any + Send + Sync),
    ) -> Result<Option<u64>, HandlerError> {
        let version = *value.downcast_ref::<u64>().ok_or("not a version")?;
        let first = {
            let mut saved = self.saved.lock();
            saved.push((id.to_string(), version));
            saved.len() == 1
        };
        if first {
            Reaper::new(Arc::clone(&self.tracker)).release(id.as_str());
            let spec = ResourceSpec::new(id.as_str(), ResourceKind::RenderCache, MIB);
            self.tracker.register(spec, version + 1)?;
        }
        Ok(Some(8))
    }

    fn discard(&self, id: &memwarden_core::ResourceId, _kind: &ResourceKind) {
        self.saved.lock().retain(|(saved, _)| saved != id.as_str());
        self.discarded.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_resource_replaced_during_its_release_is_kept_and_the_old_copy_dropped() {
    let tracker = Arc::new(Tracker::new());
    let reaper = Reaper::new(Arc::clone(&tracker));
    let hook = Arc::new(ReplaceDuringSave {
        tracker: Arc::clone(&tracker),
        saved: parking_lot::Mutex::new(Vec::new()),
        discarded: AtomicU64::new(0),
    });
    reaper.set_before_release(Arc::clone(&hook) as Arc<dyn BeforeRelease>);
    let spec = ResourceSpec::new("frame", ResourceKind::RenderCache, MIB);
    tracker.register(spec, 1u64).expect("a fresh id");

    let report = reaper.release("frame");
    assert!(report.released.is_empty(), "{report:?}");
    assert_eq!(report.skipped[0].reason, SkipReason::Replaced);
    assert_eq!(
        tracker.get::<u64>("frame").expect("a u64").as_deref(),
        Some(&2),
        "the new version stays registered"
    );
    assert_eq!(hook.discarded.load(Ordering::Relaxed), 1);
    assert!(
        hook.saved.lock().is_empty(),
        "no copy of version 1 is left to be restored in place of version 2"
    );
}

#[test]
fn a_replaced_frame_is_never_restored_from_the_old_snapshot() {
    use memwarden_snapshot::{PixelFormat, RenderFrame, SnapshotStore, StoreConfig};
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tracker = Arc::new(Tracker::new());
    let lifecycle = Arc::new(Lifecycle::new(Arc::clone(&tracker), ByteSize::gib(1)));
    let store = SnapshotStore::open(StoreConfig::new(dir.path()), Arc::clone(tracker.clock()))
        .expect("the store opens");
    lifecycle.set_snapshot_store(Arc::new(store));
    let frame = |index: u64| RenderFrame {
        width: 4,
        height: 4,
        stride: 16,
        format: PixelFormat::Gray8,
        index,
        pts_us: 0,
        pixels: vec![index as u8; 16],
    };
    let spec = ResourceSpec::new("frame", ResourceKind::RenderCache, 16);
    tracker
        .register(spec.clone(), frame(1))
        .expect("a fresh id");
    // The first release saves version 1; released and registered again, version 2 is
    // then released with no snapshot (as at critical urgency when the store is full).
    assert_eq!(lifecycle.reaper().release("frame").released.len(), 1);
    tracker.register(spec.clone(), frame(2)).expect("released");
    let snapshotter = lifecycle.snapshotter().expect("a store is set");
    snapshotter.set_codec(ResourceKind::RenderCache, Arc::new(Failing));
    assert_eq!(
        lifecycle
            .release(memwarden_prioritizer::Request::new(
                memwarden_prioritizer::Urgency::Critical,
                16
            ))
            .released
            .len(),
        1
    );
    snapshotter.set_codec(
        ResourceKind::RenderCache,
        memwarden_snapshot::codec::<RenderFrame>(),
    );
    match lifecycle.get_or_restore::<RenderFrame>(&spec) {
        Ok(None) => {}
        Ok(Some(Fetched::Restored(v) | Fetched::Held(v))) => {
            panic!("version {} came back after version 2 was released", v.index)
        }
        Err(e) => panic!("{e}"),
    }
}

/// A codec whose every save fails.
#[derive(Debug)]
struct Failing;

impl memwarden_snapshot::ErasedCodec for Failing {
    fn type_name(&self) -> &'static str {
        "failing"
    }
    fn version(&self) -> u32 {
        1
    }
    fn encode_any(
        &self,
        _value: &(dyn std::any::Any + Send + Sync),
        _out: &mut Vec<u8>,
    ) -> Option<Result<(), memwarden_snapshot::SnapshotError>> {
        Some(Err(memwarden_snapshot::SnapshotError::Malformed {
            type_name: "failing",
            reason: "cannot be encoded".into(),
        }))
    }
    fn decode_any(
        &self,
        _bytes: &[u8],
        _version: u32,
    ) -> Result<Arc<dyn std::any::Any + Send + Sync>, memwarden_snapshot::SnapshotError> {
        Err(memwarden_snapshot::SnapshotError::Malformed {
            type_name: "failing",
            reason: "never written".into(),
        })
    }
}

#[test]
fn admissions_at_the_same_time_count_each_others_bytes() {
    const THREADS: usize = 6;
    // 4 MiB of overhead and 40 MiB of frames against 64 MiB; six 8 MiB loads admitted
    // at once, each allocated only after all were admitted.
    let lifecycle = Arc::new(Lifecycle::new(Arc::new(Tracker::new()), ByteSize::mib(64)));
    frames(lifecycle.tracker(), 40, 1);
    let governor = Arc::new(governor(&lifecycle, 4 * MIB));
    let admitted = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (governor, lifecycle, admitted) = (
                Arc::clone(&governor),
                Arc::clone(&lifecycle),
                Arc::clone(&admitted),
            );
            thread::spawn(move || {
                let admission = governor.admit(&ResourceKind::TempBuffers, 8 * MIB);
                admitted.wait();
                let spec =
                    ResourceSpec::new(format!("load-{t}"), ResourceKind::TempBuffers, 8 * MIB)
                        .pinned(true);
                lifecycle.tracker().register(spec, ()).expect("a fresh id");
                drop(admission);
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("the worker finished");
    }
    let rss = 4 * MIB + lifecycle.tracker().totals().bytes;
    assert!(
        rss <= 64 * MIB,
        "{} MiB resident against a 64 MiB budget",
        rss / MIB
    );
    assert_eq!(lifecycle.reserved(), 0, "every reservation ended");
}

/// A guard that, on its second consultation (the last check before the detach), has
/// another thread take a read lock on the resource and waits a moment for it.
struct LockMeanwhile {
    locks: Arc<LockManager>,
    tracker: Arc<Tracker>,
    calls: AtomicU64,
    locker: parking_lot::Mutex<Option<thread::JoinHandle<bool>>>,
}

impl ReleaseGuard for LockMeanwhile {
    fn protects(&self, id: &memwarden_core::ResourceId) -> Option<String> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 1 {
            let (locks, tracker, id) = (
                Arc::clone(&self.locks),
                Arc::clone(&self.tracker),
                id.clone(),
            );
            let (granted, wait) = mpsc::channel();
            // Whether the resource was still registered when the lock was granted, and
            // still is once the lock is let go: a lock holder never sees it go.
            *self.locker.lock() = Some(thread::spawn(move || {
                let guard = locks.read(id.as_str()).expect("a read lock");
                let at_grant = tracker.contains(id.as_str());
                let _ = granted.send(());
                thread::sleep(Duration::from_millis(50));
                let at_end = tracker.contains(id.as_str());
                drop(guard);
                !at_grant || at_end
            }));
            let _ = wait.recv_timeout(Duration::from_millis(300));
        }
        None
    }
}

#[test]
fn a_lock_granted_during_a_release_never_sees_its_resource_go() {
    let tracker = Arc::new(Tracker::new());
    let locks = Arc::new(LockManager::with_config(LockConfig::without_leases()).expect("valid"));
    let mut lifecycle = Lifecycle::new(Arc::clone(&tracker), ByteSize::gib(1));
    lifecycle.set_locks(Arc::clone(&locks));
    let meanwhile = Arc::new(LockMeanwhile {
        locks,
        tracker: Arc::clone(&tracker),
        calls: AtomicU64::new(0),
        locker: parking_lot::Mutex::new(None),
    });
    lifecycle
        .reaper()
        .add_guard(Arc::clone(&meanwhile) as Arc<dyn ReleaseGuard>);
    frames(&tracker, 1, 1);
    lifecycle.reaper().release("frame-0");
    let locker = meanwhile.locker.lock().take().expect("the lock was tried");
    assert!(
        locker.join().expect("the locker finished"),
        "the resource was released while a lock on it was held"
    );
}

#[test]
fn a_governor_dropped_by_a_handler_on_its_own_monitor_thread_stops_cleanly() {
    within_limit("a governor dropped on its monitor thread", || {
        let lifecycle = Arc::new(Lifecycle::new(Arc::new(Tracker::new()), ByteSize::mib(10)));
        frames(lifecycle.tracker(), 20, 1);
        let slot: Arc<parking_lot::Mutex<Option<Governor>>> = Arc::default();
        let (dropped, wait) = mpsc::channel();
        {
            let (slot, dropped) = (Arc::clone(&slot), parking_lot::Mutex::new(dropped));
            lifecycle.reaper().set_handler(
                ResourceKind::RenderCache,
                Hooks::new().after_drop(move |_, _| {
                    // The last owner lets go of the governor from inside its own tick.
                    if let Some(governor) = slot.lock().take() {
                        drop(governor);
                        let _ = dropped.lock().send(());
                    }
                    Ok(())
                }),
            );
        }
        let tracker = Arc::clone(lifecycle.tracker());
        let config = GovernorConfig::default().tick(Duration::from_millis(1));
        *slot.lock() = Some(
            Governor::builder(Arc::clone(&lifecycle), config)
                .source(move || Some(tracker.totals().bytes))
                .start()
                .expect("a valid config"),
        );
        wait.recv().expect("the handler dropped the governor");
        assert_eq!(
            lifecycle.reaper().stats().total.failures,
            0,
            "no handler failed"
        );
    });
}
