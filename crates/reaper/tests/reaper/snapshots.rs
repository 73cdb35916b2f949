//! Snapshot before release: written when the kind asks for it, the resource kept when it fails.

use std::sync::Arc;

use memwarden_core::{ManualClock, ResourceId, ResourceKind};
use memwarden_reaper::{Reaper, SkipReason};
use memwarden_snapshot::{
    FailPoint, PixelFormat, RenderFrame, SnapshotStore, StoreConfig, WriteFault, codec,
};
use memwarden_tracker::{ResourceSpec, Tracker};

fn frame(index: u64) -> RenderFrame {
    RenderFrame {
        width: 8,
        height: 2,
        stride: 32,
        format: PixelFormat::Rgba8,
        index,
        pts_us: index as i64 * 40_000,
        pixels: (0..64).map(|i| (i as u64 * 7 + index) as u8).collect(),
    }
}

fn setup(fail_point: FailPoint) -> (tempfile::TempDir, Arc<Tracker>, Reaper, Arc<SnapshotStore>) {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        fail_point,
        ..StoreConfig::new(dir.path())
    };
    let store = Arc::new(SnapshotStore::open(config, Arc::new(ManualClock::new())).unwrap());
    let tracker = Arc::new(Tracker::new());
    let reaper = Reaper::new(Arc::clone(&tracker));
    reaper.set_snapshot_store(Arc::clone(&store));
    reaper.set_snapshot_codec(ResourceKind::RenderCache, codec::<RenderFrame>());
    (dir, tracker, reaper, store)
}

#[test]
fn snapshotted_kinds_are_written_before_release() {
    let (_dir, tracker, reaper, store) = setup(FailPoint::new());
    tracker
        .register(
            ResourceSpec::new("frame-1", ResourceKind::RenderCache, 64),
            frame(1),
        )
        .unwrap();
    tracker
        .register(
            ResourceSpec::new("scratch", ResourceKind::TempBuffers, 64),
            vec![0u8; 64],
        )
        .unwrap();
    // A render_cache value of another type than the codec's goes without a snapshot.
    tracker
        .register(ResourceSpec::new("odd", ResourceKind::RenderCache, 8), 5u32)
        .unwrap();
    let report = reaper.release_batch(["frame-1", "scratch", "odd"]);
    assert_eq!(report.released.len(), 3);
    assert!(report.released[0].snapshot_bytes.is_some_and(|b| b > 64));
    assert_eq!(report.released[1].snapshot_bytes, None);
    assert_eq!(report.released[2].snapshot_bytes, None);
    let id = ResourceId::from("frame-1");
    assert_eq!(
        store.load::<RenderFrame>(&id, &ResourceKind::RenderCache),
        Some(frame(1))
    );
    assert!(!store.contains(&ResourceId::from("scratch")));
    let stats = reaper.stats();
    assert_eq!(stats.kinds[&ResourceKind::RenderCache].snapshots, 1);
    assert_eq!(stats.total.snapshots, 1);
}

#[test]
fn a_failed_snapshot_keeps_the_resource() {
    let fail_point = FailPoint::new();
    let (_dir, tracker, reaper, store) = setup(fail_point.clone());
    tracker
        .register(
            ResourceSpec::new("frame-2", ResourceKind::RenderCache, 64),
            frame(2),
        )
        .unwrap();
    fail_point.arm(WriteFault::Write { after_bytes: 16 }); // the disk fills mid-write
    let report = reaper.release("frame-2");
    assert!(report.released.is_empty());
    assert!(
        matches!(report.skipped[0].reason, SkipReason::SnapshotFailed { .. }),
        "{report:?}"
    );
    assert!(tracker.contains("frame-2"), "the resource was not released");
    assert!(
        !store.contains(&ResourceId::from("frame-2")),
        "no half snapshot was accepted"
    );
    assert_eq!(
        reaper.stats().kinds[&ResourceKind::RenderCache].snapshot_failures,
        1
    );
    fail_point.disarm();
    assert_eq!(reaper.release("frame-2").bytes_freed, 64);
    assert!(store.contains(&ResourceId::from("frame-2")));
}

#[test]
fn at_critical_urgency_a_failed_snapshot_does_not_keep_the_memory() {
    use memwarden_prioritizer::{Policy, Request, Urgency, plan};

    let fail_point = FailPoint::new();
    let (_dir, tracker, reaper, _store) = setup(fail_point.clone());
    tracker
        .register(
            ResourceSpec::new("frame-3", ResourceKind::RenderCache, 64),
            frame(3),
        )
        .unwrap();
    fail_point.arm(WriteFault::SyncFile);
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
fn a_victim_whose_id_now_holds_another_kind_is_not_released() {
    use memwarden_prioritizer::{Policy, Request, Urgency, plan};
    use memwarden_reaper::SkipReason;

    let (_dir, tracker, reaper, _store) = setup(FailPoint::new());
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
}
