//! The fast path against the reference: [`select`] over a tracker's release order, checked
//! against [`plan`]'s full scan of the same tracker on random registries.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use memwarden_core::{ManualClock, Priority, ResourceId, ResourceKind};
use memwarden_prioritizer::{Policy, Rank, Reason, ReleasePlan, Request, Urgency, plan, select};
use memwarden_tracker::{ResourceSpec, Tracker};
use proptest::prelude::*;

/// One resource of a random registry.
#[derive(Debug, Clone)]
struct Row {
    kind: u8,
    bytes: u64,
    priority: Option<u8>,
    pinned: bool,
    ttl: Option<u64>,
    idle: Option<u64>,
    group: Option<u8>,
    /// Dependencies, as offsets back from this row.
    deps: Vec<usize>,
    locked: bool,
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(
        (
            0u8..4,
            1u64..5000,
            prop::option::weighted(0.3, 1u8..=10),
            prop::bool::weighted(0.1),
            prop::option::weighted(0.2, 1u64..60),
            prop::option::weighted(0.2, 1u64..60),
            prop::option::weighted(0.2, 0u8..3),
            prop::collection::vec(1usize..6, 0..3),
            prop::bool::weighted(0.1),
        )
            .prop_map(
                |(kind, bytes, priority, pinned, ttl, idle, group, deps, locked)| Row {
                    kind,
                    bytes,
                    priority,
                    pinned,
                    ttl,
                    idle,
                    group,
                    deps,
                    locked,
                },
            ),
        1..60,
    )
}

fn kind(k: u8) -> ResourceKind {
    match k {
        0 => ResourceKind::TempBuffers,
        1 => ResourceKind::RenderCache,
        2 => ResourceKind::ModelShards,
        _ => ResourceKind::Custom("frames".into()),
    }
}

/// Builds the registry, then replays `accesses` (row index, seconds to advance first).
fn build(rows: &[Row], accesses: &[(usize, u64)]) -> (Tracker, HashSet<ResourceId>) {
    let clock = ManualClock::new();
    let tracker = Tracker::with_clock(Arc::new(clock.clone()));
    let mut locked = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let id = format!("r{i:02}");
        let mut spec = ResourceSpec::new(id.as_str(), kind(row.kind), row.bytes).pinned(row.pinned);
        if let Some(p) = row.priority {
            spec = spec.priority(Priority::new(i64::from(p)).unwrap());
        }
        if let Some(ttl) = row.ttl {
            spec = spec.ttl(Duration::from_secs(ttl));
        }
        if let Some(idle) = row.idle {
            spec = spec.max_idle(Duration::from_secs(idle));
        }
        if let Some(g) = row.group {
            spec = spec.group(&format!("g{g}"));
        }
        let mut deps: Vec<String> = row
            .deps
            .iter()
            .filter(|&&back| back <= i)
            .map(|&back| format!("r{:02}", i - back))
            .collect();
        deps.sort();
        deps.dedup();
        spec = spec.depends_on(deps);
        tracker
            .register(spec, ())
            .expect("fresh id, earlier dependencies");
        if row.locked {
            locked.insert(ResourceId::from(id.as_str()));
        }
        clock.advance(Duration::from_millis(300));
    }
    for &(i, secs) in accesses {
        clock.advance(Duration::from_secs(secs));
        tracker.touch(&format!("r{:02}", i % rows.len()));
    }
    (tracker, locked)
}

/// The reference: the full scan, with locked resources counted as pinned.
fn reference(tracker: &Tracker, locked: &HashSet<ResourceId>, request: &Request) -> ReleasePlan {
    let mut set = tracker.candidates();
    for c in &mut set.candidates {
        c.pinned |= locked.contains(&c.id);
    }
    plan(&set, &Policy::default(), request)
}

fn urgency(u: u8) -> Urgency {
    [
        Urgency::Low,
        Urgency::Medium,
        Urgency::High,
        Urgency::Critical,
    ][usize::from(u % 4)]
}

/// Checks `select`'s plan for `request` against the full scan of the same tracker.
fn check(
    tracker: &Tracker,
    locked: &HashSet<ResourceId>,
    request: &Request,
) -> Result<ReleasePlan, TestCaseError> {
    let everything = Request {
        bytes_to_free: u64::MAX,
        ..request.clone()
    };
    let allowed: HashSet<ResourceId> = reference(tracker, locked, &everything)
        .victims
        .into_iter()
        .map(|v| v.id)
        .collect();
    let slow = reference(tracker, locked, request);
    let exclude = |id: &ResourceId| locked.contains(id);
    let fast = select(tracker, &Policy::default(), request, &exclude);

    let planned: Vec<&ResourceId> = fast.victims.iter().map(|v| &v.id).collect();
    let unique: HashSet<&ResourceId> = planned.iter().copied().collect();
    prop_assert_eq!(unique.len(), planned.len(), "a victim planned twice");
    for v in &fast.victims {
        prop_assert!(
            allowed.contains(&v.id),
            "{} is not eligible: {}",
            v.id,
            fast
        );
        prop_assert!(!locked.contains(&v.id));
        prop_assert!(matches!(v.rank, Rank::Standing(_)));
        prop_assert!(!tracker.info(v.id.as_str()).expect("registered").pinned);
    }
    // Every due resource the reference releases, the fast path releases too.
    for v in slow.victims.iter().filter(|v| v.reason.is_due()) {
        prop_assert!(unique.contains(&v.id), "missed due {}: {}", v.id, fast);
    }
    prop_assert_eq!(
        fast.planned_bytes,
        fast.victims.iter().map(|v| v.bytes).sum::<u64>()
    );
    if slow.covers_target() {
        prop_assert!(
            fast.covers_target(),
            "fast {} < {} the reference covers\n{}",
            fast.planned_bytes,
            request.bytes_to_free,
            fast
        );
    }
    let blocked: Vec<&ResourceId> = fast.blocked.iter().map(|b| &b.id).collect();
    let unique_blocked: HashSet<&ResourceId> = blocked.iter().copied().collect();
    prop_assert_eq!(
        unique_blocked.len(),
        blocked.len(),
        "blocked twice: {}",
        fast
    );
    // Dependents before what they depend on.
    let position: HashMap<&ResourceId, usize> =
        planned.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for (i, v) in fast.victims.iter().enumerate() {
        let info = tracker.info(v.id.as_str()).expect("still registered");
        for dependency in info.depends_on.iter() {
            if let Some(&j) = position.get(dependency) {
                prop_assert!(
                    i < j,
                    "{} planned after its dependency {}",
                    v.id,
                    dependency
                );
            }
        }
        if let Reason::DependentOf { id } = &v.reason {
            prop_assert!(info.depends_on.contains(id));
        }
    }
    Ok(fast)
}

fn request(total: u64, u: u8, fraction: f64, of_kind: Option<u8>) -> Request {
    let mut request = Request::new(urgency(u), (total as f64 * fraction) as u64);
    if let Some(k) = of_kind {
        request = request.of_kind(kind(k));
    }
    request
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The fast path plans only what the reference would allow, never misses a due
    /// resource, covers what the reference can cover, and keeps dependents first.
    #[test]
    fn select_agrees_with_the_full_scan_on_eligibility(
        rows in rows(),
        accesses in prop::collection::vec((0usize..60, 0u64..8), 0..80),
        u in 0u8..4,
        fraction in 0.0f64..1.2,
        of_kind in prop::option::weighted(0.25, 0u8..4),
    ) {
        let (tracker, locked) = build(&rows, &accesses);
        let request = request(tracker.totals().bytes, u, fraction, of_kind);
        check(&tracker, &locked, &request)?;
    }

    /// The same, round after round of a cache under pressure: each round releases the
    /// plan's victims, registers newcomers (some of them ids released before), uses some
    /// resources, and plans again, so candidates, admissions and the adapting window are
    /// all exercised.
    #[test]
    fn select_agrees_with_the_full_scan_round_after_round(
        rows in rows(),
        rounds in prop::collection::vec(
            (0u8..4, 0.0f64..1.2, prop::option::weighted(0.2, 0u8..4), 1usize..12, prop::collection::vec(0usize..200, 0..30)),
            1..8,
        ),
    ) {
        let (tracker, locked) = build(&rows, &[]);
        let mut fresh = rows.len();
        for (u, fraction, of_kind, newcomers, uses) in rounds {
            let request = request(tracker.totals().bytes, u, fraction, of_kind);
            let plan = check(&tracker, &locked, &request)?;
            for victim in &plan.victims {
                // As the reaper does; a victim may have gained a dependent since.
                let _ = memwarden_tracker::release::detach(&tracker, victim.id.as_str());
            }
            for n in 0..newcomers {
                // Every third newcomer comes back under an id released before.
                let id = if n % 3 == 0 && fresh > 0 {
                    format!("r{:02}", (fresh * 7) % rows.len().max(1))
                } else {
                    fresh += 1;
                    format!("new{fresh:03}")
                };
                let spec = ResourceSpec::new(id.as_str(), kind((n % 4) as u8), 100 + (n as u64) * 37);
                let _ = tracker.register(spec, ());
            }
            for i in uses {
                tracker.touch(&format!("r{:02}", i % rows.len().max(1)));
                tracker.touch(&format!("new{:03}", i % fresh.max(1)));
            }
        }
    }

    /// The same registrations and accesses give the same plan, victim for victim.
    #[test]
    fn select_is_deterministic(
        rows in rows(),
        accesses in prop::collection::vec((0usize..60, 0u64..8), 0..80),
        u in 0u8..4,
        fraction in 0.0f64..1.0,
    ) {
        let plans: Vec<Vec<ResourceId>> = (0..2)
            .map(|_| {
                let (tracker, locked) = build(&rows, &accesses);
                let request = Request::new(urgency(u), (tracker.totals().bytes as f64 * fraction) as u64);
                select(&tracker, &Policy::default(), &request, &|id| locked.contains(id))
                    .victims
                    .into_iter()
                    .map(|v| v.id)
                    .collect()
            })
            .collect();
        prop_assert_eq!(&plans[0], &plans[1]);
    }
}

/// A scan of resources used once does not flush resources used often: the release order
/// offers the scan first.
#[test]
fn a_scan_goes_before_the_working_set() {
    let clock = ManualClock::new();
    let tracker = Tracker::with_clock(Arc::new(clock.clone()));
    for i in 0..50 {
        let spec = ResourceSpec::new(format!("hot-{i:02}"), ResourceKind::RenderCache, 100);
        tracker.register(spec, ()).unwrap();
    }
    for _ in 0..4 {
        for i in 0..50 {
            clock.advance(Duration::from_millis(10));
            tracker.touch(&format!("hot-{i:02}"));
        }
    }
    for i in 0..200 {
        let spec = ResourceSpec::new(format!("scan-{i:03}"), ResourceKind::RenderCache, 100);
        tracker.register(spec, ()).unwrap();
        clock.advance(Duration::from_millis(10));
    }
    let p = select(
        &tracker,
        &Policy::default(),
        &Request::new(Urgency::High, 150 * 100),
        &|_| false,
    );
    assert_eq!(p.victims.len(), 150);
    assert!(
        p.victims.iter().all(|v| v.id.as_str().starts_with("scan-")),
        "{p}"
    );
    let line = p.victims[0].to_string();
    assert!(
        line.contains("frequency") && line.contains("priority 3"),
        "{line}"
    );
}

/// Lower priorities go first; the urgency gates which priorities may go at all.
#[test]
fn priorities_are_released_in_order_and_gated_by_urgency() {
    let tracker = Tracker::with_clock(Arc::new(ManualClock::new()));
    for (id, kind) in [
        ("weights", ResourceKind::ModelShards),
        ("frame", ResourceKind::RenderCache),
        ("scratch", ResourceKind::TempBuffers),
    ] {
        tracker
            .register(ResourceSpec::new(id, kind, 10), ())
            .unwrap();
    }
    let ids = |u: Urgency| -> Vec<String> {
        select(
            &tracker,
            &Policy::default(),
            &Request::new(u, u64::MAX),
            &|_| false,
        )
        .victims
        .iter()
        .map(|v| v.id.to_string())
        .collect()
    };
    assert!(ids(Urgency::Low).is_empty());
    assert_eq!(ids(Urgency::Medium), ["scratch", "frame"]);
    assert_eq!(ids(Urgency::High), ["scratch", "frame"]);
    assert_eq!(ids(Urgency::Critical), ["scratch", "frame", "weights"]);
}
