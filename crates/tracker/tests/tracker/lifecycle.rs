//! Registration, access, expiry, queries and detaching.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use memwarden_core::{ManualClock, Priority, ResourceKind};
use memwarden_tracker::{KindPolicy, ResourceSpec, Shrink, Tracker, TrackerError, release};
use parking_lot::Mutex;

fn tracker() -> (Tracker, ManualClock) {
    let clock = ManualClock::new();
    (Tracker::with_clock(Arc::new(clock.clone())), clock)
}

fn spec(id: &str, kind: ResourceKind, bytes: u64) -> ResourceSpec {
    ResourceSpec::new(id, kind, bytes)
}

#[test]
fn values_without_weak_references_are_held_and_shared() {
    let (t, _) = tracker();
    let map: HashMap<String, u32> = HashMap::from([("a".into(), 1)]);
    let held = t
        .register(spec("m", ResourceKind::SubtitleIndex, 10), map)
        .unwrap();
    let got = t.get::<HashMap<String, u32>>("m").unwrap().unwrap();
    assert!(Arc::ptr_eq(&held, &got));
    assert_eq!(got["a"], 1);
    let err = t.get::<Vec<u8>>("m").unwrap_err();
    assert!(
        matches!(err, TrackerError::TypeMismatch { ref id, .. } if id.as_str() == "m"),
        "{err}"
    );
    assert_eq!(t.get::<Vec<u8>>("nope").unwrap(), None);
}

#[test]
fn detaching_keeps_outstanding_clones_valid() {
    let (t, _) = tracker();
    let frame = t
        .register(spec("f", ResourceKind::RenderCache, 1024), vec![7u8; 1024])
        .unwrap();
    let detached = release::detach(&t, "f").unwrap();
    assert_eq!(detached.bytes, 1024);
    drop(detached);
    assert_eq!(frame.len(), 1024);
    assert!(frame.iter().all(|&b| b == 7));
    assert_eq!(
        Arc::strong_count(&frame),
        1,
        "the registry no longer holds a reference"
    );
    assert!(!t.contains("f"));
    assert_eq!(t.get::<Vec<u8>>("f").unwrap(), None);
}

#[test]
fn registration_errors_name_the_ids() {
    let (t, _) = tracker();
    t.register(spec("a", ResourceKind::TempBuffers, 1), ())
        .unwrap();
    let dup = t
        .register(spec("a", ResourceKind::TempBuffers, 1), ())
        .unwrap_err();
    assert_eq!(dup.to_string(), "resource a is already registered");
    let dep = t
        .register(
            spec("b", ResourceKind::TempBuffers, 1).depends_on(["ghost"]),
            (),
        )
        .unwrap_err();
    assert_eq!(
        dep.to_string(),
        "resource b depends on ghost, which is not registered"
    );
    assert!(
        !t.contains("b"),
        "a refused registration leaves nothing behind"
    );
    assert_eq!(t.totals().count, 1);
}

#[test]
fn access_updates_recency_and_count() {
    let (t, clock) = tracker();
    t.register(spec("a", ResourceKind::AudioCache, 5), 0u32)
        .unwrap();
    clock.advance(Duration::from_secs(10));
    assert!(t.touch("a"));
    t.get::<u32>("a").unwrap();
    assert!(!t.touch("missing"));
    assert!(t.peek_any("a").is_some(), "peeking finds the value");
    assert!(t.peek_any("missing").is_none());
    let info = t.info("a").unwrap();
    assert_eq!(info.accesses, 3, "registration plus two accesses");
    assert_eq!(info.last_access.as_nanos(), 10_000_000_000);
    clock.advance(Duration::from_secs(5));
    assert_eq!(info.idle(t.now()), Duration::from_secs(5));
    let stats = t.stats();
    assert_eq!((stats.hits, stats.misses, stats.registered), (2, 1, 1));
}

#[test]
fn expiry_by_kind_policy_and_by_resource() {
    let (t, clock) = tracker();
    t.set_kind_policy(
        ResourceKind::TempBuffers,
        KindPolicy {
            priority: Priority::MIN,
            ttl: None,
            max_idle: Some(Duration::from_secs(30)),
        },
    );
    t.set_kind_policy(
        ResourceKind::RenderCache,
        KindPolicy {
            priority: Priority::new(3).unwrap(),
            ttl: Some(Duration::from_secs(120)),
            max_idle: None,
        },
    );
    t.register(spec("tmp", ResourceKind::TempBuffers, 1), ())
        .unwrap();
    t.register(spec("frame", ResourceKind::RenderCache, 1), ())
        .unwrap();
    t.register(
        spec("frame-short", ResourceKind::RenderCache, 1).ttl(Duration::from_secs(20)),
        (),
    )
    .unwrap();
    t.register(spec("model", ResourceKind::ModelShards, 1), ())
        .unwrap();

    clock.advance(Duration::from_secs(25));
    assert_eq!(t.expired(), vec!["frame-short".into()]);
    t.touch("tmp");
    clock.advance(Duration::from_secs(29));
    assert_eq!(
        t.expired(),
        vec!["frame-short".into()],
        "tmp was touched 29 s ago"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(t.expired(), vec!["frame-short".into(), "tmp".into()]);
    clock.advance(Duration::from_secs(100));
    assert_eq!(
        t.expired(),
        vec!["frame".into(), "frame-short".into(), "tmp".into()]
    );
    let info = t.info("frame").unwrap();
    assert_eq!(info.kind_priority.get(), 3);
    assert_eq!(info.ttl, Some(Duration::from_secs(120)));
}

#[test]
fn totals_per_kind_follow_register_resize_and_detach() {
    let (t, _) = tracker();
    t.register(spec("a", ResourceKind::RenderCache, 100), ())
        .unwrap();
    t.register(spec("b", ResourceKind::RenderCache, 50), ())
        .unwrap();
    t.register(spec("c", ResourceKind::AudioCache, 7), ())
        .unwrap();
    assert_eq!(t.totals().bytes, 157);
    assert_eq!(t.kind_total(&ResourceKind::RenderCache).count, 2);
    assert_eq!(t.set_bytes("a", 40).unwrap(), 100);
    assert_eq!(t.kind_total(&ResourceKind::RenderCache).bytes, 90);
    release::detach(&t, "c").unwrap();
    let kinds = t.kind_totals();
    assert_eq!(kinds.len(), 1);
    assert_eq!(kinds[&ResourceKind::RenderCache].bytes, 90);
    assert_eq!(t.totals().bytes, 90);
    assert!(matches!(
        t.set_bytes("c", 1),
        Err(TrackerError::NotFound { .. })
    ));
}

#[test]
fn pinned_and_depended_on_resources_are_not_detached() {
    let (t, _) = tracker();
    t.register(spec("weights", ResourceKind::ModelWeightsCache, 10), ())
        .unwrap();
    t.register(
        spec("shard", ResourceKind::ModelShards, 10).depends_on(["weights"]),
        (),
    )
    .unwrap();
    t.register(
        spec("pinned", ResourceKind::TempBuffers, 1).pinned(true),
        (),
    )
    .unwrap();

    let err = release::detach(&t, "weights").unwrap_err();
    assert_eq!(err.to_string(), "resource weights is still needed by shard");
    assert!(matches!(
        release::detach(&t, "pinned"),
        Err(TrackerError::Pinned { .. })
    ));
    t.set_pinned("pinned", false).unwrap();
    release::detach(&t, "pinned").unwrap();

    release::detach(&t, "shard").unwrap();
    release::detach(&t, "weights").unwrap();
    assert!(t.is_empty());
}

#[test]
fn candidates_describe_every_resource() {
    let (t, clock) = tracker();
    for i in 0..1000u64 {
        let kind = if i % 2 == 0 {
            ResourceKind::RenderCache
        } else {
            ResourceKind::AudioCache
        };
        t.register(spec(&format!("r{i}"), kind, i).group("g"), ())
            .unwrap();
    }
    clock.advance(Duration::from_secs(3));
    let set = t.candidates();
    assert_eq!(set.now.as_nanos(), 3_000_000_000);
    assert_eq!(set.candidates.len(), 1000);
    assert_eq!(
        set.candidates.iter().map(|c| c.bytes).sum::<u64>(),
        (0..1000).sum::<u64>()
    );
    assert!(
        set.candidates
            .iter()
            .all(|c| c.group.as_deref() == Some("g") && c.idle(set.now).as_secs() == 3)
    );
}

struct Index {
    entries: Mutex<Vec<u64>>,
}

impl Shrink for Index {
    fn shrink(&self, fraction: f64) -> u64 {
        let mut entries = self.entries.lock();
        let drop = (entries.len() as f64 * fraction) as usize;
        entries.drain(..drop).sum()
    }
}

#[test]
fn shrinkable_values_expose_their_capability() {
    let (t, _) = tracker();
    let index = t
        .register_shrinkable(
            spec("subs", ResourceKind::SubtitleIndex, 10),
            Index {
                entries: Mutex::new(vec![1; 10]),
            },
        )
        .unwrap();
    let shrink = t.shrinker("subs").expect("registered as shrinkable");
    assert_eq!(shrink.shrink(0.5), 5);
    assert_eq!(index.entries.lock().len(), 5);
    t.register(spec("plain", ResourceKind::SubtitleIndex, 1), ())
        .unwrap();
    assert!(t.shrinker("plain").is_none());
}
