//! `Runtime::builder`: every part wired from one config, and stopped as one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memwarden_core::{ByteSize, ManualClock, ResourceKind};
use memwarden_lock::LockManager;
use memwarden_runtime::config::Config;
use memwarden_runtime::{Budget, Runtime, RuntimeError};
use memwarden_tracker::ResourceSpec;

const MIB: u64 = 1 << 20;

fn config_in(dir: &std::path::Path) -> Config {
    let mut config = Config::shipped();
    config.snapshot.dir = dir.join("snapshots");
    config
}

#[test]
fn one_budget_reaches_the_lifecycle_and_the_governor() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let runtime = Runtime::builder(&config_in(dir.path()))
        .budget("64MiB".parse().expect("a budget"))
        .rss_source(|| Some(MIB))
        .manual_governor()
        .start()
        .expect("starts");
    assert_eq!(runtime.lifecycle().budget(), ByteSize::mib(64));
    let governor = runtime.governor().expect("on by default");
    assert_eq!(governor.budget(), ByteSize::mib(64));
    governor.set_budget(ByteSize::mib(32)).expect("above zero");
    assert_eq!(
        runtime.lifecycle().budget(),
        ByteSize::mib(32),
        "one budget"
    );
    assert_eq!(runtime.config().monitor.budget_bytes, ByteSize::mib(64));
    // The shipped config snapshots render frames: a store opened in its directory.
    let store = runtime
        .snapshot_store()
        .expect("render_cache is snapshotted");
    assert_eq!(store.config().dir, dir.path().join("snapshots"));
    assert!(runtime.defrag().is_some() && runtime.locks().is_none());
}

#[test]
fn loads_are_admitted_against_the_resident_memory() {
    // The RSS is what the tracker holds plus 40 MiB nobody tracks.
    let rss = Arc::new(AtomicU64::new(40 * MIB));
    let seen = Arc::clone(&rss);
    let runtime = Runtime::builder(&Config::shipped())
        .budget(Budget::Bytes(ByteSize::mib(100)))
        .no_snapshots()
        .manual_governor()
        .rss_source(move || Some(seen.load(Ordering::Relaxed)))
        .start()
        .expect("starts");
    let tracker = Arc::clone(runtime.tracker());
    for i in 0..3 {
        let spec = ResourceSpec::new(format!("clip-{i}"), ResourceKind::AudioCache, 10 * MIB);
        runtime.make_room(&spec.kind, spec.bytes);
        tracker.register(spec, ()).expect("fresh id");
        rss.fetch_add(10 * MIB, Ordering::Relaxed);
    }
    // 70 MiB resident and 20 MiB coming passes the 75 MiB warning line: the tracked
    // bytes alone (50 MiB) would not, so only the governor's RSS loop releases.
    let released = runtime.make_room(&ResourceKind::AudioCache, 20 * MIB);
    assert!(released.bytes_freed >= 10 * MIB, "{released:?}");
    let report = runtime.shutdown().expect("a governor ran");
    assert_eq!(report.admissions, 4);
    assert_eq!(report.release_count, 1);
}

#[test]
fn locked_resources_are_never_released_and_parts_can_be_left_out() {
    let locks = Arc::new(LockManager::new());
    let clock = ManualClock::new();
    let runtime = Runtime::builder(&Config::shipped())
        .budget(Budget::Bytes(ByteSize::mib(8)))
        .clock(Arc::new(clock))
        .locks(Arc::clone(&locks))
        .no_snapshots()
        .no_defrag()
        .no_governor()
        .start()
        .expect("starts");
    assert!(runtime.governor().is_none() && runtime.defrag().is_none());
    let tracker = runtime.tracker();
    tracker
        .register(
            ResourceSpec::new("held", ResourceKind::RenderCache, 4 * MIB),
            (),
        )
        .expect("fresh id");
    let guard = locks.read("held").expect("free");
    // Without a governor, make_room is the lifecycle's: 4 + 8 MiB passes the budget.
    runtime.make_room(&ResourceKind::RenderCache, 8 * MIB);
    assert!(tracker.contains("held"), "locked: kept at any urgency");
    drop(guard);
    runtime.make_room(&ResourceKind::RenderCache, 8 * MIB);
    assert!(!tracker.contains("held"));
    assert!(runtime.shutdown().is_none());
}

#[test]
fn bad_settings_are_errors_not_panics() {
    let mut config = Config::shipped();
    config.monitor.budget_bytes = ByteSize::b(0);
    let error = Runtime::builder(&config)
        .no_snapshots()
        .start()
        .expect_err("zero");
    assert!(matches!(error, RuntimeError::Setting(_)), "{error}");
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("writable");
    let mut config = Config::shipped();
    config.snapshot.dir = file;
    let error = Runtime::builder(&config)
        .no_governor()
        .start()
        .expect_err("a file is no snapshot directory");
    assert!(matches!(error, RuntimeError::Snapshots(_)), "{error}");
}
