//! When runs happen: the released-bytes threshold, the timer, runtime reconfiguration,
//! the monitor thread's lifecycle, and the statistics they leave.

use std::sync::Arc;
use std::time::{Duration, Instant};

use memwarden_core::{ManualClock, Timestamp};
use memwarden_defrag::{
    DefragConfig, DefragError, DefragStats, Defragmenter, HISTORY_LEN, Trigger,
};

use crate::{eventually, manual, quiet};

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn the_defragmenter_can_be_shared_between_threads() {
    fn check<T: Send + Sync>() {}
    check::<Defragmenter>();
    check::<memwarden_defrag::rss::RssReader>();
}

#[test]
fn released_bytes_threshold_fires_once_and_resets_the_counter() {
    let (defrag, _clock) = manual(DefragConfig {
        released_threshold: 1000,
        ..quiet()
    });
    defrag.notify_released(600);
    assert_eq!(defrag.stats().runs, 0);
    assert_eq!(defrag.pending_released(), 600);
    assert!(defrag.check_triggers().is_none(), "600 < 1000");

    // Without a monitor thread the crossing call compacts inline.
    defrag.notify_released(500);
    let stats = defrag.stats();
    assert_eq!(stats.runs, 1);
    assert_eq!(stats.by_trigger.released_bytes, 1);
    let last = stats.last.expect("a run");
    assert_eq!(last.trigger, Trigger::ReleasedBytes);
    assert_eq!(last.released_since_last, 1100);
    assert_eq!(defrag.pending_released(), 0);
    assert_eq!(stats.pending_released, 0);

    // Reset: nothing is due until another 1000 bytes.
    assert!(defrag.check_triggers().is_none());
    defrag.notify_released(999);
    assert_eq!(defrag.stats().runs, 1);
    defrag.notify_released(1);
    assert_eq!(defrag.stats().by_trigger.released_bytes, 2);
}

#[test]
fn the_timer_fires_after_the_interval_since_the_last_run() {
    let (defrag, clock) = manual(DefragConfig {
        interval: Some(HOUR),
        ..quiet()
    });
    assert!(defrag.check_triggers().is_none());
    clock.advance(HOUR - Duration::from_secs(1));
    assert!(defrag.check_triggers().is_none());
    clock.advance(Duration::from_secs(1));
    let report = defrag.check_triggers().expect("an hour passed");
    assert_eq!(report.trigger, Trigger::Timer);
    assert_eq!(report.at, Timestamp::ZERO + HOUR);
    assert!(defrag.check_triggers().is_none(), "the timer restarted");

    // A run of any cause restarts the timer.
    clock.advance(HOUR / 2);
    defrag.compact(Trigger::Manual);
    clock.advance(HOUR / 2);
    assert!(
        defrag.check_triggers().is_none(),
        "half an hour since the manual run"
    );
    clock.advance(HOUR / 2);
    assert_eq!(
        defrag.check_triggers().map(|r| r.trigger),
        Some(Trigger::Timer)
    );
    let counts = defrag.stats().by_trigger;
    assert_eq!(
        (counts.timer, counts.manual, counts.released_bytes),
        (2, 1, 0)
    );
}

#[test]
fn released_bytes_go_first_when_both_triggers_are_due() {
    let (defrag, clock) = manual(DefragConfig {
        released_threshold: 10,
        interval: Some(HOUR),
        enabled: false,
        ..quiet()
    });
    defrag.notify_released(50);
    clock.advance(HOUR);
    assert!(defrag.check_triggers().is_none(), "disabled");
    assert_eq!(
        defrag.pending_released(),
        50,
        "still counted while disabled"
    );
    defrag
        .set_config(DefragConfig {
            enabled: true,
            ..defrag.config()
        })
        .expect("valid");
    assert_eq!(
        defrag.check_triggers().map(|r| r.trigger),
        Some(Trigger::ReleasedBytes)
    );
    // That run restarted the timer too.
    assert!(defrag.check_triggers().is_none());
}

#[test]
fn set_config_changes_the_threshold_at_runtime() {
    let (defrag, _clock) = manual(DefragConfig {
        released_threshold: 1 << 30,
        ..quiet()
    });
    defrag.notify_released(10 << 20);
    assert_eq!(defrag.stats().runs, 0);
    defrag
        .set_config(DefragConfig {
            released_threshold: 5 << 20,
            ..defrag.config()
        })
        .expect("valid");
    assert_eq!(defrag.config().released_threshold, 5 << 20);
    assert_eq!(
        defrag.check_triggers().map(|r| r.released_since_last),
        Some(10 << 20)
    );
    // Zero turns the trigger off.
    defrag
        .set_config(DefragConfig {
            released_threshold: 0,
            ..defrag.config()
        })
        .expect("valid");
    defrag.notify_released(u64::MAX);
    defrag.notify_released(u64::MAX);
    assert_eq!(defrag.stats().runs, 1);
    assert_eq!(defrag.pending_released(), u64::MAX, "the counter saturates");
}

#[test]
fn invalid_configs_are_refused_and_change_nothing() {
    let check = |config: DefragConfig, what: &str| {
        match Defragmenter::builder(config.clone()).build() {
            Err(DefragError::ZeroDuration { what: got }) => assert_eq!(got, what),
            other => panic!("{config:?}: {other:?}"),
        }
        let (defrag, _clock) = manual(quiet());
        let before = defrag.config();
        assert!(matches!(
            defrag.set_config(config),
            Err(DefragError::ZeroDuration { .. })
        ));
        assert_eq!(defrag.config(), before);
    };
    check(
        DefragConfig {
            poll: Duration::ZERO,
            ..DefragConfig::default()
        },
        "the poll interval",
    );
    check(
        DefragConfig {
            interval: Some(Duration::ZERO),
            ..DefragConfig::default()
        },
        "the timer interval",
    );
    let defaults = DefragConfig::default();
    assert_eq!(defaults.released_threshold, 500_000_000);
    assert_eq!(defaults.interval, Some(HOUR));
    assert!(defaults.enabled && !defaults.aggressive);
}

#[test]
fn the_monitor_thread_fires_both_triggers() {
    let clock = ManualClock::new();
    let defrag = Defragmenter::builder(DefragConfig {
        released_threshold: 1000,
        interval: Some(HOUR),
        ..quiet()
    })
    .clock(Arc::new(clock.clone()))
    .start()
    .expect("the monitor starts");
    assert!(defrag.is_monitored());

    defrag.notify_released(1500);
    assert!(eventually(|| defrag.stats().by_trigger.released_bytes == 1));
    assert_eq!(defrag.pending_released(), 0);

    clock.advance(HOUR);
    assert!(eventually(|| defrag.stats().by_trigger.timer == 1));
    let stats = defrag.stats();
    assert_eq!(stats.runs, 2);
    assert_eq!(stats.last.map(|r| r.trigger), Some(Trigger::Timer));
}

#[test]
fn a_lower_threshold_wakes_the_monitor_at_once() {
    let defrag = Defragmenter::builder(DefragConfig {
        released_threshold: 1 << 30,
        poll: HOUR, // only a wake-up can make it look
        ..quiet()
    })
    .clock(Arc::new(ManualClock::new()))
    .start()
    .expect("the monitor starts");
    defrag.notify_released(1 << 20);
    defrag
        .set_config(DefragConfig {
            released_threshold: 1 << 10,
            ..defrag.config()
        })
        .expect("valid");
    assert!(eventually(|| defrag.stats().by_trigger.released_bytes == 1));
}

#[test]
fn the_monitor_stops_and_joins_promptly() {
    let config = DefragConfig {
        released_threshold: 1000,
        interval: Some(HOUR),
        poll: HOUR, // a thread that only sleeps would hold drop up for an hour
        ..DefragConfig::default()
    };
    let started = Instant::now();
    let defrag = Defragmenter::builder(config.clone())
        .start()
        .expect("the monitor starts");
    drop(defrag);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drop waited {:?}",
        started.elapsed()
    );

    // An explicit shutdown, then the defragmenter works on without a thread.
    let defrag = Defragmenter::builder(config)
        .start()
        .expect("the monitor starts");
    let started = Instant::now();
    defrag.shutdown();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!defrag.is_monitored());
    defrag.shutdown(); // idempotent
    defrag.notify_released(1000); // compacts inline now
    assert_eq!(defrag.stats().by_trigger.released_bytes, 1);
}

#[test]
fn history_keeps_the_most_recent_runs_oldest_first() {
    let (defrag, clock) = manual(quiet());
    let runs = HISTORY_LEN + 8;
    for i in 0..runs {
        clock.advance(Duration::from_secs(1));
        let trigger = if i % 2 == 0 {
            Trigger::Manual
        } else {
            Trigger::Pressure
        };
        defrag.compact(trigger);
    }
    let stats = defrag.stats();
    assert_eq!(stats.runs, runs as u64);
    assert_eq!(
        stats.by_trigger.manual + stats.by_trigger.pressure,
        runs as u64
    );
    assert_eq!(stats.recent.len(), HISTORY_LEN);
    let seconds: Vec<u64> = stats
        .recent
        .iter()
        .map(|r| r.at.as_nanos() / 1_000_000_000)
        .collect();
    assert_eq!(seconds, (9..=runs as u64).collect::<Vec<_>>());
    assert_eq!(stats.last.as_ref(), stats.recent.last());
}

#[test]
fn concurrent_compactions_run_one_at_a_time() {
    let (defrag, _clock) = manual(quiet());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5 {
                    defrag.compact(Trigger::Manual);
                }
            });
        }
    });
    let stats = defrag.stats();
    assert_eq!(stats.runs, 20);
    assert_eq!(stats.by_trigger.manual, 20);
    let sum: Duration = stats.recent.iter().map(|r| r.duration).sum();
    assert_eq!(sum, stats.total_duration, "every run recorded whole");
}

#[test]
fn stats_serialise_and_round_trip() {
    let (defrag, _clock) = manual(quiet());
    defrag.notify_released(123);
    defrag.compact(Trigger::Manual);
    let stats = defrag.stats();
    let json = serde_json::to_string(&stats).expect("serialisable");
    let back: DefragStats = serde_json::from_str(&json).expect("deserialisable");
    assert_eq!(back, stats);
    assert!(json.contains("\"trigger\":\"Manual\""), "{json}");
    assert!(json.contains("\"released_since_last\":123"), "{json}");
    let config: DefragConfig =
        serde_json::from_str("{\"released_threshold\": 42}").expect("defaults fill in");
    assert_eq!(config.released_threshold, 42);
    assert_eq!(config.interval, Some(HOUR));
}
