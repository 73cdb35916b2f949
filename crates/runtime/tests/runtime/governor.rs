//! The governor against a fake RSS source and the test clock: pressure levels, plan
//! sizes, listeners, bounded reports, and a monitor thread that stops when told.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memwarden_core::{ByteSize, ManualClock, Priority, ResourceKind};
use memwarden_prioritizer::Urgency;
use memwarden_runtime::governor::{Cause, Governor, GovernorConfig, PressureChange};
use memwarden_runtime::{Lifecycle, Thresholds};
use memwarden_tracker::{ResourceSpec, Tracker};
use parking_lot::Mutex;

const MIB: u64 = 1 << 20;

/// A process whose RSS is a fixed overhead plus whatever the tracker holds, as if every
/// released byte went straight back to the OS.
struct Fixture {
    tracker: Arc<Tracker>,
    lifecycle: Arc<Lifecycle>,
    clock: ManualClock,
    overhead: Arc<AtomicU64>,
}

impl Fixture {
    fn new() -> Self {
        let clock = ManualClock::new();
        let tracker = Arc::new(Tracker::with_clock(Arc::new(clock.clone())));
        let lifecycle = Arc::new(Lifecycle::new(Arc::clone(&tracker), ByteSize::gib(64)));
        Fixture {
            tracker,
            lifecycle,
            clock,
            overhead: Arc::new(AtomicU64::new(5 * MIB)),
        }
    }

    fn governor(&self, budget_mib: u64) -> Governor {
        let tracker = Arc::clone(&self.tracker);
        let overhead = Arc::clone(&self.overhead);
        self.lifecycle
            .set_budget(ByteSize::mib(budget_mib))
            .expect("above zero");
        Governor::builder(Arc::clone(&self.lifecycle), GovernorConfig::default())
            .source(move || Some(overhead.load(Ordering::Relaxed) + tracker.totals().bytes))
            .manual()
            .start()
            .expect("a valid config")
    }

    fn add(&self, id: &str, kind: ResourceKind, mib: u64) {
        self.clock.advance(Duration::from_secs(1));
        self.tracker
            .register(ResourceSpec::new(id, kind, mib * MIB), ())
            .expect("fresh id");
    }
}

#[test]
fn below_the_warning_line_nothing_is_released() {
    let f = Fixture::new();
    let governor = f.governor(100);
    for i in 0..7 {
        f.add(&format!("frame-{i}"), ResourceKind::RenderCache, 10);
    }
    // 5 + 70 = 75 MiB: exactly the warning line.
    let released = governor.tick();
    assert_eq!(released.bytes_freed, 0);
    assert_eq!(governor.level(), Urgency::Low);
    let report = governor.stats();
    assert_eq!(report.ticks, 1);
    assert_eq!(report.release_count, 0);
    assert_eq!(report.samples.len(), 1);
    assert_eq!(report.samples[0].rss, 75 * MIB);
    assert_eq!(report.samples[0].tracked, 70 * MIB);
}

#[test]
fn a_tick_above_the_warning_line_frees_to_the_relief_line() {
    let f = Fixture::new();
    let governor = f.governor(100);
    for i in 0..8 {
        f.add(&format!("frame-{i}"), ResourceKind::RenderCache, 10);
    }
    // 85 MiB: medium pressure. The relief line is 70 MiB (warning 75 % minus 5 %), so
    // 15 MiB must go: two 10 MiB frames, the two least recently used.
    let released = governor.tick();
    assert_eq!(released.bytes_freed, 20 * MIB);
    let ids: Vec<&str> = released.released.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["frame-0", "frame-1"]);
    assert_eq!(governor.level(), Urgency::Low, "65 MiB after the release");
    let report = governor.stats();
    assert_eq!(report.release_count, 1);
    let event = report.releases[0];
    assert_eq!(event.cause, Cause::Tick);
    assert_eq!(event.level, Urgency::Medium);
    assert_eq!((event.rss_before, event.rss_after), (85 * MIB, 65 * MIB));
    assert_eq!(event.released, 2);
    let levels: Vec<(Urgency, Urgency)> = report
        .pressure_changes
        .iter()
        .map(|c| (c.from, c.to))
        .collect();
    assert_eq!(
        levels,
        [
            (Urgency::Low, Urgency::Medium),
            (Urgency::Medium, Urgency::Low)
        ]
    );
}

#[test]
fn admission_counts_the_incoming_bytes() {
    let f = Fixture::new();
    let governor = f.governor(100);
    // Memory nobody tracks: the tracked bytes alone (30 + 30 MiB coming) stay under the
    // warning line, so only the resident memory calls for a release.
    f.overhead.store(25 * MIB, Ordering::Relaxed);
    for i in 0..3 {
        f.add(&format!("clip-{i}"), ResourceKind::AudioCache, 10);
    }
    // 55 MiB resident, 30 MiB coming: 85 MiB, over the warning line before the
    // allocation happens. 15 MiB must go.
    let released = governor.make_room(&ResourceKind::AudioCache, 30 * MIB);
    assert_eq!(released.bytes_freed, 20 * MIB);
    let report = governor.stats();
    assert_eq!(report.admissions, 1);
    assert_eq!(report.releases[0].cause, Cause::Admit);
    assert_eq!(report.releases[0].incoming, 30 * MIB);
    // Room made: the same admission now passes untouched.
    assert_eq!(
        governor
            .make_room(&ResourceKind::AudioCache, 30 * MIB)
            .bytes_freed,
        0
    );
}

#[test]
fn over_the_budget_anything_unpinned_may_go() {
    let f = Fixture::new();
    let governor = f.governor(100);
    f.add("model", ResourceKind::ModelShards, 60);
    f.add("weights", ResourceKind::ModelWeightsCache, 30);
    f.add("pinned", ResourceKind::ModelShards, 10);
    f.tracker.set_pinned("pinned", true).unwrap();
    // 105 MiB: critical. Only the pinned model stays.
    let released = governor.tick();
    assert_eq!(released.bytes_freed, 90 * MIB);
    assert!(f.tracker.contains("pinned"));
    assert_eq!(governor.stats().releases[0].level, Urgency::Critical);
    assert_eq!(governor.level(), Urgency::Low);
}

#[test]
fn high_pressure_spares_the_most_important_kinds_until_the_budget_is_passed() {
    let f = Fixture::new();
    let governor = f.governor(100);
    f.tracker.set_kind_policy(
        ResourceKind::ModelShards,
        memwarden_tracker::KindPolicy {
            priority: Priority::new(9).unwrap(),
            ttl: None,
            max_idle: None,
        },
    );
    f.add("model", ResourceKind::ModelShards, 80);
    f.add("frame", ResourceKind::RenderCache, 7);
    // 92 MiB: high pressure, under the budget. The frame goes; the model (priority 9,
    // above what high pressure may touch) stays although the relief line is not reached.
    let released = governor.tick();
    assert_eq!(released.bytes_freed, 7 * MIB);
    assert!(f.tracker.contains("model"));
    assert_eq!(governor.level(), Urgency::Medium, "85 MiB left");
}

#[test]
fn listeners_hear_every_change() {
    let f = Fixture::new();
    let governor = f.governor(100);
    let heard: Arc<Mutex<Vec<PressureChange>>> = Arc::default();
    let sink = Arc::clone(&heard);
    governor.on_pressure(move |change| sink.lock().push(*change));
    f.overhead.store(80 * MIB, Ordering::Relaxed); // untracked: nothing can be freed
    governor.tick();
    f.overhead.store(95 * MIB, Ordering::Relaxed);
    governor.tick();
    f.overhead.store(101 * MIB, Ordering::Relaxed);
    governor.tick();
    f.overhead.store(10 * MIB, Ordering::Relaxed);
    governor.tick();
    governor.tick();
    let heard: Vec<(Urgency, Urgency, u64)> = heard
        .lock()
        .iter()
        .map(|c| (c.from, c.to, c.rss / MIB))
        .collect();
    assert_eq!(
        heard,
        [
            (Urgency::Low, Urgency::Medium, 80),
            (Urgency::Medium, Urgency::High, 95),
            (Urgency::High, Urgency::Critical, 101),
            (Urgency::Critical, Urgency::Low, 10),
        ]
    );
    let report = governor.stats();
    assert_eq!(report.pressure_changes.len(), 4);
    assert_eq!(report.release_count, 0, "nothing tracked, nothing released");
    assert_eq!((report.rss_min, report.rss_max), (10 * MIB, 101 * MIB));
}

#[test]
fn failed_reads_are_counted_and_release_nothing() {
    let f = Fixture::new();
    f.add("frame", ResourceKind::RenderCache, 10);
    f.lifecycle
        .set_budget(ByteSize::mib(1))
        .expect("above zero");
    let governor = Governor::builder(Arc::clone(&f.lifecycle), GovernorConfig::default())
        .source(|| None)
        .manual()
        .start()
        .expect("a valid config");
    assert_eq!(governor.tick().bytes_freed, 0);
    assert!(f.tracker.contains("frame"));
    let report = governor.stats();
    assert_eq!(report.failed_reads, 1);
    assert!(report.samples.is_empty());
    assert_eq!((report.rss_min, report.rss_max), (0, 0));
}

#[test]
fn samples_stay_bounded_and_even() {
    let f = Fixture::new();
    let tracker = Arc::clone(&f.tracker);
    let governor = Governor::builder(
        Arc::clone(&f.lifecycle),
        GovernorConfig::default().max_samples(8),
    )
    .source(move || Some(tracker.totals().bytes))
    .manual()
    .start()
    .expect("a valid config");
    for i in 0..100u64 {
        f.clock.advance(Duration::from_secs(1));
        governor.tick();
        assert!(governor.stats().samples.len() < 8, "after tick {i}");
    }
    let report = governor.stats();
    assert_eq!(report.ticks, 100);
    let at: Vec<u64> = report.samples.iter().map(|s| s.at.as_secs()).collect();
    let gaps: Vec<u64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[0] == g[1]),
        "evenly spaced: {at:?}"
    );
    assert!(at.len() >= 3, "{at:?}");
}

#[test]
fn the_monitor_ticks_on_its_own_and_shutdown_joins_it() {
    let f = Fixture::new();
    let ticks = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&ticks);
    let governor = Governor::builder(
        Arc::clone(&f.lifecycle),
        GovernorConfig::default().tick(Duration::from_millis(5)),
    )
    .source(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        Some(MIB)
    })
    .start()
    .expect("a valid config");
    let deadline = Instant::now() + Duration::from_secs(30);
    while governor.stats().ticks < 3 {
        assert!(Instant::now() < deadline, "the monitor never ticked");
        std::thread::sleep(Duration::from_millis(2));
    }
    let report = governor.shutdown();
    assert!(report.ticks >= 3);
    let after = ticks.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        ticks.load(Ordering::SeqCst),
        after,
        "no reading after shutdown returned"
    );
}

#[test]
fn dropping_a_governor_with_a_long_tick_returns_at_once() {
    let f = Fixture::new();
    let governor = Governor::builder(
        Arc::clone(&f.lifecycle),
        GovernorConfig::default().tick(Duration::from_secs(3600)),
    )
    .source(|| Some(MIB))
    .start()
    .expect("a valid config");
    std::thread::sleep(Duration::from_millis(20));
    let started = Instant::now();
    drop(governor);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drop waited for the hour-long tick"
    );
}

#[test]
fn thresholds_and_tick_come_from_the_config() {
    let config = memwarden_runtime::config::Config::shipped();
    assert_eq!(
        Thresholds::from_config(&config.monitor),
        Thresholds {
            warning: config.monitor.warning_fraction,
            critical: config.monitor.critical_fraction,
            ..Thresholds::default()
        }
    );
    assert_eq!(
        GovernorConfig::from_config(&config).tick,
        config.monitor.tick
    );
    let tracker = Arc::new(Tracker::new());
    let lifecycle = Lifecycle::from_config(tracker, &config);
    assert_eq!(lifecycle.budget(), config.monitor.budget_bytes);
    assert_eq!(
        lifecycle.thresholds(),
        Thresholds::from_config(&config.monitor)
    );
}

#[test]
fn the_real_rss_is_read_by_default() {
    let f = Fixture::new();
    let governor = Governor::builder(Arc::clone(&f.lifecycle), GovernorConfig::default())
        .manual()
        .start()
        .expect("a valid config");
    governor.tick();
    let report = governor.stats();
    if cfg!(target_os = "linux") {
        assert_eq!(report.failed_reads, 0);
        assert!(report.rss_max > MIB, "a running test binary is resident");
    }
}

#[test]
fn the_defragmenter_hears_every_release_and_compacts_when_the_rss_stays_up() {
    use memwarden_defrag::{DefragConfig, Defragmenter, Trigger};
    let f = Fixture::new();
    let defrag = Arc::new(
        Defragmenter::builder(DefragConfig::manual())
            .build()
            .expect("a manual config"),
    );
    // An RSS that does not fall when resources are released: the allocator kept them.
    f.lifecycle
        .set_budget(ByteSize::mib(100))
        .expect("above zero");
    let governor = Governor::builder(Arc::clone(&f.lifecycle), GovernorConfig::default())
        .source(|| Some(90 * MIB))
        .defrag(Arc::clone(&defrag))
        .manual()
        .start()
        .expect("a valid config");
    for i in 0..8 {
        f.add(&format!("frame-{i}"), ResourceKind::RenderCache, 10);
    }
    let released = governor.tick();
    assert!(released.bytes_freed >= 20 * MIB);
    let report = governor.stats();
    assert_eq!(report.compactions, 1);
    assert!(report.releases[0].compacted);
    assert_eq!(defrag.stats().by_trigger.get(Trigger::Pressure), 1);

    // A release nobody asked the governor for is heard too.
    let before = defrag.pending_released();
    let left = f
        .tracker
        .candidates()
        .candidates
        .first()
        .map(|c| c.id.clone())
        .expect("frames left");
    f.lifecycle.reaper().release(left.as_str());
    assert_eq!(defrag.pending_released(), before + 10 * MIB);
}

#[test]
fn bad_settings_are_refused() {
    let f = Fixture::new();
    let start = |config: GovernorConfig| {
        Governor::builder(Arc::clone(&f.lifecycle), config)
            .source(|| Some(MIB))
            .manual()
            .start()
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let base = GovernorConfig::default();
    assert!(start(base).is_ok());
    let err = start(base.tick(Duration::ZERO)).expect_err("refused");
    assert!(err.contains("tick"), "{err}");
    let bad_thresholds = [
        (
            Thresholds {
                warning: 0.9,
                critical: 0.8,
                relief: 0.05,
            },
            "warning < critical",
        ),
        (
            Thresholds {
                warning: f64::NAN,
                ..Thresholds::default()
            },
            "warning < critical",
        ),
        (
            Thresholds {
                relief: 0.8,
                ..Thresholds::default()
            },
            "relief",
        ),
    ];
    for (thresholds, word) in bad_thresholds {
        let err = f
            .lifecycle
            .set_thresholds(thresholds)
            .expect_err("refused")
            .to_string();
        assert!(err.contains(word), "{err}");
    }
    assert_eq!(f.lifecycle.thresholds(), Thresholds::default());
    let err = f.lifecycle.set_budget(ByteSize::b(0)).expect_err("refused");
    assert!(err.to_string().contains("budget"), "{err}");
}

#[test]
fn a_listener_may_call_back_in_and_a_panicking_one_is_contained() {
    let f = Fixture::new();
    let governor = Arc::new(f.governor(100));
    let inner = Arc::downgrade(&governor);
    let levels: Arc<Mutex<Vec<Urgency>>> = Arc::default();
    let sink = Arc::clone(&levels);
    governor.on_pressure(move |_| {
        if let Some(governor) = inner.upgrade() {
            // Re-entry: reads and registers from inside a notification.
            sink.lock().push(governor.level());
            governor.on_pressure(|_| {});
        }
    });
    governor.on_pressure(|_| panic!("a listener bug"));
    f.overhead.store(95 * MIB, Ordering::Relaxed);
    governor.tick();
    f.overhead.store(MIB, Ordering::Relaxed);
    governor.tick();
    assert_eq!(*levels.lock(), [Urgency::High, Urgency::Low]);
    assert_eq!(governor.stats().pressure_change_count, 2);
}

#[test]
fn an_admission_that_needs_no_release_is_no_pressure_event() {
    let f = Fixture::new();
    let governor = f.governor(100);
    f.add("frame", ResourceKind::RenderCache, 10);
    // 15 MiB resident and 70 MiB announced: the projection passes the warning line, so
    // the frame is released to make room, but the process itself never did: the level
    // follows the RSS it really has.
    governor.make_room(&ResourceKind::AudioCache, 70 * MIB);
    let report = governor.stats();
    assert_eq!(
        report.pressure_change_count, 0,
        "{:?}",
        report.pressure_changes
    );
    assert_eq!(governor.level(), Urgency::Low);
    assert_eq!(report.admissions, 1);
}

#[test]
fn set_budget_takes_effect_and_refuses_zero() {
    let f = Fixture::new();
    let governor = f.governor(1000);
    f.add("frame", ResourceKind::RenderCache, 10);
    governor.tick();
    assert_eq!(governor.level(), Urgency::Low);
    governor
        .set_budget(ByteSize::mib(16))
        .expect("a valid budget");
    assert_eq!(governor.stats().budget, ByteSize::mib(16));
    assert_eq!(f.lifecycle.budget(), ByteSize::mib(16), "one budget");
    governor.tick();
    assert!(
        !f.tracker.contains("frame"),
        "15 MiB of 16 is past the warning line"
    );
    assert!(governor.set_budget(ByteSize::b(0)).is_err());
    assert_eq!(governor.budget(), ByteSize::mib(16));
}

#[test]
fn a_handle_makes_room_until_the_governor_is_gone() {
    let f = Fixture::new();
    let governor = f.governor(100);
    let handle = governor.handle();
    for i in 0..7 {
        f.add(&format!("clip-{i}"), ResourceKind::AudioCache, 10);
    }
    assert!(
        handle
            .make_room(&ResourceKind::AudioCache, 20 * MIB)
            .bytes_freed
            > 0
    );
    drop(governor);
    assert_eq!(
        handle
            .make_room(&ResourceKind::AudioCache, 500 * MIB)
            .bytes_freed,
        0
    );
}

#[cfg(feature = "sched")]
#[test]
fn a_scheduler_uses_fewer_threads_under_pressure() {
    use memwarden_sched::ParallelScheduler;
    let f = Fixture::new();
    let governor = f.governor(100);
    let sched = ParallelScheduler::builder()
        .jobs(4)
        .pressure_source(governor.scheduler_pressure())
        .build()
        .unwrap();
    assert_eq!(sched.jobs_now(), 4);
    // 115 MiB, all pinned: nothing can go, the level stays critical.
    f.add("pinned", ResourceKind::ModelShards, 110);
    f.tracker.set_pinned("pinned", true).unwrap();
    governor.tick();
    assert_eq!(governor.level(), Urgency::Critical);
    assert_eq!(sched.jobs_now(), 1);
    assert_eq!(sched.schedule(|x: &u32| x * 2, &[1, 2, 3]), vec![2, 4, 6]);
    f.tracker.set_pinned("pinned", false).unwrap();
    governor.tick();
    assert_eq!(governor.level(), Urgency::Low);
    assert_eq!(sched.jobs_now(), 4);
    drop(governor);
    assert_eq!(sched.jobs_now(), 4, "no governor, no pressure");
}
