//! Handlers, hooks, containment, protection and incremental release.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use memwarden_core::{ResourceId, ResourceKind};
use memwarden_prioritizer::{Policy, Request, Urgency, plan};
use memwarden_reaper::{Hooks, Reaper, ReleaseGuard, SkipReason};
use memwarden_tracker::{ResourceSpec, Shrink, Tracker};
use parking_lot::Mutex;

fn setup() -> (Arc<Tracker>, Reaper) {
    let tracker = Arc::new(Tracker::new());
    let reaper = Reaper::new(Arc::clone(&tracker));
    (tracker, reaper)
}

/// A value that records when it is dropped.
struct Tell(Arc<AtomicBool>);

impl Drop for Tell {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn hooks_run_around_the_drop() {
    let (tracker, reaper) = setup();
    let dropped = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (d1, d2, s1, s2) = (
        Arc::clone(&dropped),
        Arc::clone(&dropped),
        Arc::clone(&seen),
        Arc::clone(&seen),
    );
    reaper.set_handler(
        ResourceKind::ModelShards,
        Hooks::new()
            .before_drop(move |r| {
                s1.lock().push(format!(
                    "before {} dropped={}",
                    r.id,
                    d1.load(Ordering::SeqCst)
                ));
                Ok(())
            })
            .after_drop(move |id, kind| {
                s2.lock().push(format!(
                    "after {id} {kind} dropped={}",
                    d2.load(Ordering::SeqCst)
                ));
                Ok(())
            }),
    );
    tracker
        .register(
            ResourceSpec::new("shard", ResourceKind::ModelShards, 64),
            Tell(Arc::clone(&dropped)),
        )
        .unwrap();
    let report = reaper.release("shard");
    assert_eq!(report.bytes_freed, 64);
    assert_eq!(
        *seen.lock(),
        [
            "before shard dropped=false",
            "after shard model_shards dropped=true"
        ]
    );
}

#[test]
fn failing_and_panicking_handlers_are_contained() {
    let (tracker, reaper) = setup();
    reaper.set_handler(
        ResourceKind::RenderCache,
        Hooks::new().before_drop(|_| Err("disk full".into())),
    );
    reaper.set_handler(
        ResourceKind::ModelWeightsCache,
        Hooks::new().before_drop(|_| panic!("offload exploded")),
    );
    let frame_dropped = Arc::new(AtomicBool::new(false));
    let weights_dropped = Arc::new(AtomicBool::new(false));
    tracker
        .register(
            ResourceSpec::new("frame", ResourceKind::RenderCache, 10),
            Tell(Arc::clone(&frame_dropped)),
        )
        .unwrap();
    tracker
        .register(
            ResourceSpec::new("weights", ResourceKind::ModelWeightsCache, 20),
            Tell(Arc::clone(&weights_dropped)),
        )
        .unwrap();
    tracker
        .register(ResourceSpec::new("tmp", ResourceKind::TempBuffers, 5), ())
        .unwrap();

    let report = reaper.release_batch(["frame", "weights", "tmp"]);
    assert_eq!(report.released.len(), 3);
    assert_eq!(report.failures, 2);
    assert_eq!(report.bytes_freed, 35);
    assert_eq!(
        report.released[0].handler_error.as_deref(),
        Some("disk full")
    );
    assert_eq!(
        report.released[1].handler_error.as_deref(),
        Some("panicked: offload exploded")
    );
    assert!(
        frame_dropped.load(Ordering::SeqCst) && weights_dropped.load(Ordering::SeqCst),
        "the fallback drop ran"
    );
    assert!(tracker.is_empty());
    let stats = reaper.stats();
    assert_eq!(stats.kinds[&ResourceKind::RenderCache].failures, 1);
    assert_eq!(stats.kinds[&ResourceKind::ModelWeightsCache].failures, 1);
    assert_eq!(stats.total.releases, 3);
    assert_eq!(stats.total.bytes_freed, 35);
}

#[test]
fn resource_handlers_take_precedence_over_kind_handlers() {
    let (tracker, reaper) = setup();
    let calls = Arc::new(AtomicUsize::new(0));
    let (c1, c2) = (Arc::clone(&calls), Arc::clone(&calls));
    reaper.set_handler(
        ResourceKind::AudioCache,
        Hooks::new().before_drop(move |_| {
            c1.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }),
    );
    reaper.set_resource_handler(
        "special",
        Hooks::new().before_drop(move |_| {
            c2.fetch_add(100, Ordering::SeqCst);
            Ok(())
        }),
    );
    tracker
        .register(
            ResourceSpec::new("special", ResourceKind::AudioCache, 1),
            (),
        )
        .unwrap();
    tracker
        .register(ResourceSpec::new("plain", ResourceKind::AudioCache, 1), ())
        .unwrap();
    reaper.release_batch(["special", "plain"]);
    assert_eq!(calls.load(Ordering::SeqCst), 101);
}

struct LockedNames(Vec<&'static str>);

impl ReleaseGuard for LockedNames {
    fn protects(&self, id: &ResourceId) -> Option<String> {
        self.0
            .contains(&id.as_str())
            .then(|| "thread editor (write)".to_owned())
    }
}

#[test]
fn pinned_locked_needed_and_gone_victims_are_skipped_and_reported() {
    let (tracker, reaper) = setup();
    reaper.add_guard(Arc::new(LockedNames(vec!["locked"])));
    tracker
        .register(
            ResourceSpec::new("pinned", ResourceKind::TempBuffers, 1),
            (),
        )
        .unwrap();
    tracker
        .register(
            ResourceSpec::new("locked", ResourceKind::TempBuffers, 1),
            (),
        )
        .unwrap();
    tracker
        .register(ResourceSpec::new("base", ResourceKind::TempBuffers, 1), ())
        .unwrap();
    tracker
        .register(
            ResourceSpec::new("user", ResourceKind::TempBuffers, 1).depends_on(["base"]),
            (),
        )
        .unwrap();
    // The plan is made first; then the world changes under it.
    let p = plan(
        &tracker.candidates(),
        &Policy::default(),
        &Request::new(Urgency::Critical, u64::MAX),
    );
    assert_eq!(p.victims.len(), 4);
    tracker.set_pinned("pinned", true).unwrap();
    tracker.set_pinned("user", true).unwrap();
    let report = reaper.execute(&p);
    assert!(report.released.is_empty(), "{report:?}");
    let reason = |id: &str| {
        report
            .skipped
            .iter()
            .find(|s| s.id.as_str() == id)
            .map(|s| s.reason.clone())
    };
    assert_eq!(reason("pinned"), Some(SkipReason::Pinned));
    assert_eq!(
        reason("locked"),
        Some(SkipReason::Locked {
            holder: "thread editor (write)".into()
        })
    );
    assert_eq!(reason("user"), Some(SkipReason::Pinned));
    assert_eq!(
        reason("base"),
        Some(SkipReason::NeededBy {
            dependents: vec!["user".into()]
        })
    );
    assert_eq!(tracker.len(), 4);
    assert_eq!(
        reaper.release("never-there").skipped[0].reason,
        SkipReason::Gone
    );
    // A release by id counts its skips under the resource's kind too.
    reaper.release_batch(["pinned", "locked"]);
    assert_eq!(
        reaper.stats().kinds[&ResourceKind::TempBuffers].skipped,
        4 + 2
    );
}

struct SubtitleIndex {
    entries: Mutex<Vec<(u32, u64)>>, // (hotness, bytes), hottest last
}

impl Shrink for SubtitleIndex {
    fn shrink(&self, fraction: f64) -> u64 {
        let mut entries = self.entries.lock();
        let n = (entries.len() as f64 * fraction).round() as usize;
        entries.drain(..n).map(|(_, bytes)| bytes).sum()
    }
}

#[test]
fn incremental_kinds_release_a_fraction_below_critical() {
    let (tracker, reaper) = setup();
    let index = tracker
        .register_shrinkable(
            ResourceSpec::new("subs", ResourceKind::SubtitleIndex, 1000),
            SubtitleIndex {
                entries: Mutex::new((0..10).map(|i| (i, 100)).collect()),
            },
        )
        .unwrap();
    let p = plan(
        &tracker.candidates(),
        &Policy::default(),
        &Request::new(Urgency::High, 100),
    );
    let report = reaper.execute(&p);
    assert_eq!(report.bytes_freed, 500, "half of the entries, the coldest");
    assert!(report.released[0].partial);
    assert_eq!(
        index.entries.lock().first(),
        Some(&(5, 100)),
        "the hot half is kept"
    );
    assert_eq!(tracker.info("subs").unwrap().bytes, 500);

    reaper.set_incremental_fraction(ResourceKind::SubtitleIndex, 0.2);
    reaper.execute(&plan(
        &tracker.candidates(),
        &Policy::default(),
        &Request::new(Urgency::High, 100),
    ));
    assert_eq!(tracker.info("subs").unwrap().bytes, 400);

    let p = plan(
        &tracker.candidates(),
        &Policy::default(),
        &Request::new(Urgency::Critical, 100),
    );
    let report = reaper.execute(&p);
    assert!(!report.released[0].partial, "critical releases in full");
    assert_eq!(report.bytes_freed, 400);
    assert!(!tracker.contains("subs"));
    let stats = reaper.stats();
    let subs = stats.kinds[&ResourceKind::SubtitleIndex];
    assert_eq!(
        (subs.partial_releases, subs.releases, subs.bytes_freed),
        (2, 1, 1000)
    );
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["kinds"]["subtitle_index"]["partial_releases"], 2);
}

#[test]
fn observers_hear_every_execution_that_released_something() {
    let (tracker, reaper) = setup();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    reaper.on_released(move |report| {
        sink.lock()
            .push((report.released.len(), report.bytes_freed));
    });
    for (id, bytes) in [("a", 10), ("b", 20), ("c", 40)] {
        tracker
            .register(ResourceSpec::new(id, ResourceKind::TempBuffers, bytes), ())
            .unwrap();
    }
    reaper.release("a");
    reaper.release("missing"); // nothing released: not heard
    let candidates = tracker.candidates();
    let plan = plan(
        &candidates,
        &Policy::default(),
        &Request::new(Urgency::High, 60),
    );
    reaper.execute(&plan);
    assert_eq!(*heard.lock(), [(1, 10), (2, 60)]);
}
