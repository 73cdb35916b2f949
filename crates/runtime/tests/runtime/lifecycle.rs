//! The budget loop: make_room, sweep, caps and thresholds, on real tracker contents.

use std::sync::Arc;
use std::time::Duration;

use memwarden_core::{ByteSize, ManualClock, ResourceKind};
use memwarden_prioritizer::Urgency;
use memwarden_runtime::config::{Config, KindConfig};
use memwarden_runtime::{Lifecycle, Thresholds};
use memwarden_tracker::{ResourceSpec, Tracker};

const MIB: u64 = 1 << 20;

fn lifecycle(budget: ByteSize) -> (Lifecycle, ManualClock) {
    let clock = ManualClock::new();
    let tracker = Arc::new(Tracker::with_clock(Arc::new(clock.clone())));
    (Lifecycle::new(tracker, budget), clock)
}

#[test]
fn thresholds_map_usage_to_urgency() {
    let t = Thresholds {
        warning: 0.5,
        critical: 0.8,
        relief: 0.05,
    };
    let check = |used, want| assert_eq!(t.urgency(used, 100), want, "{used} of 100");
    check(0, Urgency::Low);
    check(50, Urgency::Low);
    check(51, Urgency::Medium);
    check(80, Urgency::Medium);
    check(81, Urgency::High);
    check(100, Urgency::High);
    check(101, Urgency::Critical);
}

#[test]
fn make_room_holds_the_budget_across_kinds() {
    let (lc, clock) = lifecycle(ByteSize::mib(100));
    let kinds = [
        ResourceKind::RenderCache,
        ResourceKind::AudioCache,
        ResourceKind::ModelShards,
        ResourceKind::TempBuffers,
    ];
    let mut max_seen = 0;
    for i in 0..400u64 {
        clock.advance(Duration::from_millis(100));
        let kind = kinds[(i % 4) as usize].clone();
        let bytes = (1 + i % 7) * MIB;
        lc.make_room(&kind, bytes);
        lc.tracker()
            .register(
                ResourceSpec::new(format!("r{i}"), kind, bytes),
                vec![1u8; 64],
            )
            .unwrap();
        max_seen = max_seen.max(lc.tracker().totals().bytes);
        // Re-use a few hot ones so recency and frequency matter.
        lc.tracker().touch(&format!("r{}", i / 2));
    }
    assert!(
        max_seen <= 100 * MIB,
        "tracked {max_seen} bytes over a 100 MiB budget"
    );
    let stats = lc.reaper().stats();
    assert!(stats.total.releases > 0);
    // Temp buffers (priority 1) went before model shards (priority 8).
    let released = |k: &ResourceKind| stats.kinds.get(k).map_or(0, |s| s.releases);
    assert!(released(&ResourceKind::TempBuffers) > released(&ResourceKind::ModelShards));
}

#[test]
fn pinned_resources_are_kept_even_over_budget() {
    let (lc, _) = lifecycle(ByteSize::mib(10));
    for i in 0..4 {
        let spec =
            ResourceSpec::new(format!("p{i}"), ResourceKind::ModelShards, 4 * MIB).pinned(true);
        lc.make_room(&ResourceKind::ModelShards, 4 * MIB);
        lc.tracker().register(spec, ()).unwrap();
    }
    let report = lc.make_room(&ResourceKind::TempBuffers, MIB);
    assert_eq!(report.bytes_freed, 0);
    assert_eq!(lc.tracker().len(), 4, "nothing pinned was released");
}

#[test]
fn kind_caps_are_enforced_within_the_kind() {
    let (mut lc, clock) = lifecycle(ByteSize::gib(1));
    lc.set_kind_cap(ResourceKind::AudioCache, ByteSize::mib(8));
    lc.tracker()
        .register(
            ResourceSpec::new("frame", ResourceKind::RenderCache, 4 * MIB),
            (),
        )
        .unwrap();
    for i in 0..10 {
        clock.advance(Duration::from_secs(1));
        lc.make_room(&ResourceKind::AudioCache, 2 * MIB);
        lc.tracker()
            .register(
                ResourceSpec::new(format!("clip{i}"), ResourceKind::AudioCache, 2 * MIB),
                (),
            )
            .unwrap();
        assert!(lc.tracker().kind_total(&ResourceKind::AudioCache).bytes <= 8 * MIB);
    }
    assert!(
        lc.tracker().contains("frame"),
        "the cap only takes from its own kind"
    );
    assert!(
        lc.tracker().contains("clip9") && !lc.tracker().contains("clip0"),
        "the oldest clips went"
    );
}

#[test]
fn config_sets_priorities_idle_limits_and_fractions() {
    let clock = ManualClock::new();
    let tracker = Arc::new(Tracker::with_clock(Arc::new(clock.clone())));
    let config = Config::shipped();
    let lc = Lifecycle::from_config(Arc::clone(&tracker), &config);
    assert_eq!(lc.budget(), config.monitor.budget_bytes);
    assert_eq!(lc.thresholds().warning, config.monitor.warning_fraction);
    let temp = config.kinds.get(&ResourceKind::TempBuffers).unwrap();
    assert_eq!(
        tracker.kind_policy(&ResourceKind::TempBuffers).priority,
        temp.priority
    );

    tracker
        .register(
            ResourceSpec::new("scratch", ResourceKind::TempBuffers, MIB),
            (),
        )
        .unwrap();
    tracker
        .register(
            ResourceSpec::new("shard", ResourceKind::ModelShards, MIB),
            (),
        )
        .unwrap();
    let idle = temp
        .max_idle
        .expect("the shipped config gives temp buffers an idle limit");
    clock.advance(idle - Duration::from_millis(1));
    assert_eq!(lc.sweep().bytes_freed, 0);
    clock.advance(Duration::from_millis(1));
    let report = lc.sweep();
    assert_eq!(report.released.len(), 1);
    assert_eq!(report.released[0].id.as_str(), "scratch");
    assert!(tracker.contains("shard"));
}

#[test]
fn locked_resources_are_never_released() {
    use memwarden_lock::{LockConfig, LockManager};
    use memwarden_reaper::SkipReason;

    let clock = ManualClock::new();
    let tracker = Arc::new(Tracker::with_clock(Arc::new(clock.clone())));
    let mut lc = Lifecycle::new(Arc::clone(&tracker), ByteSize::mib(8));
    let locks = Arc::new(LockManager::with_config(LockConfig::without_leases()).unwrap());
    lc.set_locks(Arc::clone(&locks));
    for i in 0..4 {
        tracker
            .register(
                ResourceSpec::new(format!("f{i}"), ResourceKind::TempBuffers, 2 * MIB),
                (),
            )
            .unwrap();
    }
    let read = locks.read("f0").unwrap();
    let write = locks.write("f1").unwrap();
    clock.advance(Duration::from_secs(1));
    // Far over the budget: everything unlocked goes, the locked two stay.
    let report = lc.make_room(&ResourceKind::TempBuffers, 7 * MIB);
    assert_eq!(report.bytes_freed, 4 * MIB, "{report:?}");
    assert!(tracker.contains("f0") && tracker.contains("f1"));
    // The reaper re-checks at release time, whatever the plan said.
    let direct = lc.reaper().release("f1");
    assert_eq!(
        direct.skipped[0].reason,
        SkipReason::Locked {
            holder: "write-locked".into()
        }
    );
    drop((read, write));
    assert_eq!(lc.reaper().release("f1").bytes_freed, 2 * MIB);
}

#[test]
fn released_frames_come_back_from_their_snapshots() {
    use memwarden_runtime::Fetched;
    use memwarden_snapshot::{PixelFormat, RenderFrame, SnapshotStore, StoreConfig};

    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let tracker = Arc::new(Tracker::with_clock(Arc::new(clock.clone())));
    let lc = Lifecycle::new(Arc::clone(&tracker), ByteSize::kib(64));
    let store = SnapshotStore::open(
        StoreConfig {
            memory_bytes: 0,
            ..StoreConfig::new(dir.path())
        },
        Arc::new(clock.clone()),
    );
    lc.set_snapshot_store(Arc::new(store.unwrap()));
    let frame = |i: u64| RenderFrame {
        width: 64,
        height: 64,
        stride: 256,
        format: PixelFormat::Gray8,
        index: i,
        pts_us: i as i64 * 40_000,
        pixels: vec![i as u8; 4096],
    };
    let spec = |i: u64| ResourceSpec::new(format!("frame-{i}"), ResourceKind::RenderCache, 4096);
    for i in 0..40 {
        clock.advance(Duration::from_millis(10));
        lc.make_room(&ResourceKind::RenderCache, 4096);
        tracker.register(spec(i), frame(i)).unwrap();
    }
    assert!(
        !tracker.contains("frame-0"),
        "the budget forced early frames out"
    );
    let written = lc.reaper().stats().kinds[&ResourceKind::RenderCache].snapshots;
    assert!(written > 0);
    match lc.get_or_restore::<RenderFrame>(&spec(0)).unwrap() {
        Some(Fetched::Restored(f)) => assert_eq!(*f, frame(0)),
        other => panic!("expected a restore, got {other:?}"),
    }
    assert!(
        tracker.contains("frame-0"),
        "restored frames are tracked again"
    );
    assert!(matches!(
        lc.get_or_restore::<RenderFrame>(&spec(0)).unwrap(),
        Some(Fetched::Held(_))
    ));
    assert_eq!(lc.restores(), 1);
    assert!(
        tracker.totals().bytes <= 64 << 10,
        "restoring made room first"
    );
    // Never snapshotted: the caller must load it.
    assert!(
        lc.get_or_restore::<RenderFrame>(&spec(999))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_failed_snapshot_keeps_the_frame_and_a_restore_as_another_type_is_a_miss() {
    use memwarden_reaper::SkipReason;
    use memwarden_runtime::Fetched;
    use memwarden_snapshot::{PixelFormat, RenderFrame, SnapshotStore, StoreConfig, WriteFault};

    let dir = tempfile::tempdir().unwrap();
    let (lc, clock) = lifecycle(ByteSize::mib(1));
    let config = StoreConfig::new(dir.path());
    let fail = config.fail_point.clone();
    assert!(lc.snapshotter().is_none(), "no store yet");
    lc.set_snapshot_store(Arc::new(
        SnapshotStore::open(config, Arc::new(clock)).unwrap(),
    ));
    assert!(lc.snapshotter().is_some());
    let frame = RenderFrame {
        width: 4,
        height: 4,
        stride: 16,
        format: PixelFormat::Gray8,
        index: 7,
        pts_us: 280_000,
        pixels: vec![7; 16],
    };
    let spec = ResourceSpec::new("frame-7", ResourceKind::RenderCache, 16);
    lc.tracker().register(spec.clone(), frame.clone()).unwrap();

    fail.arm(WriteFault::Rename);
    let report = lc.reaper().release("frame-7");
    assert!(
        matches!(&report.skipped[0].reason, SkipReason::SnapshotFailed { error } if error.contains("rename")),
        "{report:?}"
    );
    assert!(
        lc.tracker().contains("frame-7"),
        "kept without its snapshot"
    );

    fail.disarm();
    let report = lc.reaper().release("frame-7");
    assert!(report.released[0].snapshot_bytes.is_some());
    assert!(lc.get_or_restore::<u32>(&spec).unwrap().is_none());
    assert_eq!(lc.restores(), 0);
    assert!(matches!(
        lc.get_or_restore::<RenderFrame>(&spec).unwrap(),
        Some(Fetched::Restored(f)) if *f == frame
    ));
    assert_eq!(lc.restores(), 1);
}

#[test]
fn relief_frees_below_the_warning_line_so_the_next_registrations_plan_nothing() {
    let (lc, clock) = lifecycle(ByteSize::mib(100));
    let mut releasing_calls = 0;
    for i in 0..200u64 {
        clock.advance(Duration::from_millis(10));
        let report = lc.make_room(&ResourceKind::RenderCache, MIB);
        releasing_calls += u64::from(report.bytes_freed > 0);
        lc.tracker()
            .register(
                ResourceSpec::new(format!("f{i}"), ResourceKind::RenderCache, MIB),
                (),
            )
            .unwrap();
    }
    // 75 MiB warning line, relief down to 70 MiB: one release round per ~5 registrations.
    assert!(
        releasing_calls <= 200 / 5,
        "{releasing_calls} of 200 calls released something"
    );
    assert!(lc.tracker().totals().bytes <= 75 * MIB);
}

#[test]
fn a_custom_kind_from_the_config_gets_its_policy_and_cap() {
    let mut config = Config::shipped();
    let kv_cache: ResourceKind = "kv_cache".parse().expect("a valid name");
    let mut policy = KindConfig::new(memwarden_core::Priority::new(6).expect("in range"));
    policy.max_bytes = Some(ByteSize::mib(4));
    config.kinds.insert(kv_cache.clone(), policy);
    let tracker = Arc::new(Tracker::new());
    let lc = Lifecycle::from_config(Arc::clone(&tracker), &config);
    assert_eq!(tracker.kind_policy(&kv_cache).priority.get(), 6);
    for i in 0..8 {
        lc.make_room(&kv_cache, MIB);
        tracker
            .register(
                ResourceSpec::new(format!("kv{i}"), kv_cache.clone(), MIB),
                (),
            )
            .expect("fresh id");
        assert!(tracker.kind_total(&kv_cache).bytes <= 4 * MIB, "after {i}");
    }
}
