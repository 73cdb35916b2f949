//! The before-release hook: called with the value before a full release, the resource kept when it fails.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use memwarden_core::{ResourceId, ResourceKind};
use memwarden_prioritizer::{Policy, Request, Urgency, plan};
use memwarden_reaper::{BeforeRelease, HandlerError, Reaper, ReleaseGuard, SkipReason};
use memwarden_tracker::{ResourceSpec, Tracker};
use parking_lot::Mutex;

/// The one type [`Saver`] saves.
#[derive(Debug, Clone, PartialEq)]
struct Frame(Vec<u8>);

/// What [`Saver`] does when called.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Save,
    Fail,
    Panic,
}

/// A hook that keeps copies of [`Frame`]s in memory and records every call.
struct Saver {
    tracker: Arc<Tracker>,
    mode: Mutex<Mode>,
    saved: Mutex<HashMap<ResourceId, Frame>>,
    /// Id, kind, tracked bytes, and whether the resource was still registered.
    calls: Mutex<Vec<(ResourceId, ResourceKind, u64, bool)>>,
    /// Set on every call: a lock taken while the snapshot is written.
    lock_during_call: Option<Arc<AtomicBool>>,
}

impl BeforeRelease for Saver {
    fn before_release(
        &self,
        id: &ResourceId,
        kind: &ResourceKind,
        bytes: u64,
        value: &(dyn Any + Send + Sync),
    ) -> Result<Option<u64>, HandlerError> {
        let registered = self.tracker.contains(id.as_str());
        self.calls
            .lock()
            .push((id.clone(), kind.clone(), bytes, registered));
        if let Some(lock) = &self.lock_during_call {
            lock.store(true, Ordering::SeqCst);
        }
        match *self.mode.lock() {
            Mode::Fail => return Err("the disk is full".into()),
            Mode::Panic => panic!("the codec fell over"),
            Mode::Save => {}
        }
        let Some(frame) = value.downcast_ref::<Frame>() else {
            return Ok(None);
        };
        self.saved.lock().insert(id.clone(), frame.clone());
        Ok(Some(frame.0.len() as u64 + 16))
    }
}

/// Locks whatever [`Saver`] marks locked.
struct Flag(Arc<AtomicBool>);

impl ReleaseGuard for Flag {
    fn protects(&self, _id: &ResourceId) -> Option<String> {
        self.0
            .load(Ordering::SeqCst)
            .then(|| "locked during the snapshot".to_string())
    }
}

fn setup_with(lock_during_call: Option<Arc<AtomicBool>>) -> (Arc<Tracker>, Reaper, Arc<Saver>) {
    let tracker = Arc::new(Tracker::new());
    let reaper = Reaper::new(Arc::clone(&tracker));
    let saver = Arc::new(Saver {
        tracker: Arc::clone(&tracker),
        mode: Mutex::new(Mode::Save),
        saved: Mutex::new(HashMap::new()),
        calls: Mutex::new(Vec::new()),
        lock_during_call,
    });
    reaper.set_before_release(Arc::clone(&saver) as Arc<dyn BeforeRelease>);
    (tracker, reaper, saver)
}

fn setup() -> (Arc<Tracker>, Reaper, Arc<Saver>) {
    setup_with(None)
}

fn frame(n: u8) -> Frame {
    Frame(vec![n; 64])
}

#[test]
fn the_hook_gets_each_value_before_its_full_release() {
    let (tracker, reaper, saver) = setup();
    tracker
        .register(
            ResourceSpec::new("frame-1", ResourceKind::RenderCache, 64),
            frame(1),
        )
        .unwrap();
    tracker
        .register(
            ResourceSpec::new("scratch", ResourceKind::TempBuffers, 32),
            vec![0u8; 32],
        )
        .unwrap();
    // A render_cache value the hook has nothing to save for goes without a snapshot.
    tracker
        .register(ResourceSpec::new("odd", ResourceKind::RenderCache, 8), 5u32)
        .unwrap();
    let report = reaper.release_batch(["frame-1", "scratch", "odd"]);
    assert_eq!(report.released.len(), 3);
    assert_eq!(report.released[0].snapshot_bytes, Some(80));
    assert_eq!(report.released[1].snapshot_bytes, None);
    assert_eq!(report.released[2].snapshot_bytes, None);
    assert_eq!(
        *saver.calls.lock(),
        [
            (
                ResourceId::from("frame-1"),
                ResourceKind::RenderCache,
                64,
                true
            ),
            (
                ResourceId::from("scratch"),
                ResourceKind::TempBuffers,
                32,
                true
            ),
            (ResourceId::from("odd"), ResourceKind::RenderCache, 8, true),
        ],
        "called with each value while it was still registered"
    );
    assert_eq!(
        saver.saved.lock().get(&ResourceId::from("frame-1")),
        Some(&frame(1))
    );
    let stats = reaper.stats();
    let render = &stats.kinds[&ResourceKind::RenderCache];
    assert_eq!((render.snapshots, render.snapshot_bytes), (1, 80));
    assert_eq!(
        (stats.total.snapshots, stats.total.snapshot_failures),
        (1, 0)
    );
}

#[test]
fn a_failed_hook_keeps_the_resource() {
    let (tracker, reaper, saver) = setup();
    tracker
        .register(
            ResourceSpec::new("frame-2", ResourceKind::RenderCache, 64),
            frame(2),
        )
        .unwrap();
    *saver.mode.lock() = Mode::Fail;
    let report = reaper.release("frame-2");
    assert!(report.released.is_empty());
    assert_eq!(
        report.skipped[0].reason,
        SkipReason::SnapshotFailed {
            error: "the disk is full".into()
        }
    );
    assert!(tracker.contains("frame-2"), "the resource was not released");
    let render = reaper.stats().kinds[&ResourceKind::RenderCache];
    assert_eq!(
        (render.snapshot_failures, render.skipped, render.releases),
        (1, 1, 0)
    );

    *saver.mode.lock() = Mode::Save;
    assert_eq!(reaper.release("frame-2").bytes_freed, 64);
    assert!(
        saver
            .saved
            .lock()
            .contains_key(&ResourceId::from("frame-2"))
    );
}

#[test]
fn a_panicking_hook_is_a_failure_that_keeps_the_resource() {
    let (tracker, reaper, saver) = setup();
    tracker
        .register(
            ResourceSpec::new("frame-3", ResourceKind::RenderCache, 64),
            frame(3),
        )
        .unwrap();
    *saver.mode.lock() = Mode::Panic;
    let report = reaper.release("frame-3");
    assert_eq!(
        report.skipped[0].reason,
        SkipReason::SnapshotFailed {
            error: "panicked: the codec fell over".into()
        }
    );
    assert!(tracker.contains("frame-3"));
    assert_eq!(
        reaper.stats().kinds[&ResourceKind::RenderCache].snapshot_failures,
        1
    );
}

#[test]
fn at_critical_urgency_a_failed_hook_does_not_keep_the_memory() {
    let (tracker, reaper, saver) = setup();
    tracker
        .register(
            ResourceSpec::new("frame-4", ResourceKind::RenderCache, 64),
            frame(4),
        )
        .unwrap();
    *saver.mode.lock() = Mode::Fail;
    let high = plan(
        &tracker.candidates(),
        &Policy::default(),
        &Request::new(Urgency::High, 64),
    );
    assert_eq!(
        reaper.execute(&high).bytes_freed,
        0,
        "below critical the snapshot comes first"
    );
    let critical = plan(
        &tracker.candidates(),
        &Policy::default(),
        &Request::new(Urgency::Critical, 64),
    );
    let report = reaper.execute(&critical);
    assert_eq!(report.bytes_freed, 64);
    assert_eq!(report.released[0].snapshot_bytes, None);
    assert_eq!(
        reaper.stats().kinds[&ResourceKind::RenderCache].snapshot_failures,
        2
    );
}

#[test]
fn a_lock_taken_while_the_hook_runs_keeps_the_resource() {
    let locked = Arc::new(AtomicBool::new(false));
    let (tracker, reaper, saver) = setup_with(Some(Arc::clone(&locked)));
    reaper.add_guard(Arc::new(Flag(locked)));
    tracker
        .register(
            ResourceSpec::new("frame-5", ResourceKind::RenderCache, 64),
            frame(5),
        )
        .unwrap();
    let report = reaper.release("frame-5");
    assert_eq!(
        report.skipped[0].reason,
        SkipReason::Locked {
            holder: "locked during the snapshot".into()
        }
    );
    assert!(tracker.contains("frame-5"));
    assert_eq!(
        saver.calls.lock().len(),
        1,
        "the guard is checked again after the hook"
    );
}

#[test]
fn pinned_and_gone_resources_are_not_handed_to_the_hook() {
    let (tracker, reaper, saver) = setup();
    tracker
        .register(
            ResourceSpec::new("frame-6", ResourceKind::RenderCache, 64),
            frame(6),
        )
        .unwrap();
    tracker.set_pinned("frame-6", true).unwrap();
    let report = reaper.release_batch(["frame-6", "never-registered"]);
    assert_eq!(report.skipped[0].reason, SkipReason::Pinned);
    assert_eq!(report.skipped[1].reason, SkipReason::Gone);
    assert!(saver.calls.lock().is_empty());
}

#[test]
fn a_victim_whose_id_now_holds_another_kind_is_not_released() {
    let (tracker, reaper, saver) = setup();
    tracker
        .register(ResourceSpec::new("x", ResourceKind::TempBuffers, 8), ())
        .unwrap();
    let p = plan(
        &tracker.candidates(),
        &Policy::default(),
        &Request::new(Urgency::Critical, 8),
    );
    reaper.release("x");
    tracker
        .register(ResourceSpec::new("x", ResourceKind::ModelShards, 8), ())
        .unwrap();
    let report = reaper.execute(&p);
    assert_eq!(report.skipped[0].reason, SkipReason::Gone);
    assert!(tracker.contains("x"));
    assert_eq!(saver.calls.lock().len(), 1, "only the first release");
}
