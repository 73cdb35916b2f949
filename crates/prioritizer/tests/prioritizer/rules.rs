//! The planning rules, one case each.

use std::sync::Arc;
use std::time::Duration;

use memwarden_core::{Priority, ResourceId, ResourceKind, Timestamp};
use memwarden_prioritizer::{BlockReason, Policy, Rank, Reason, Request, Urgency, plan};

use crate::{cand, ids, set};

const MIB: u64 = 1 << 20;

fn mixed() -> memwarden_prioritizer::CandidateSet {
    set(
        100,
        vec![
            cand("tmp", ResourceKind::TempBuffers, 4 * MIB, 1),
            cand("frame", ResourceKind::RenderCache, 8 * MIB, 3),
            cand("subs", ResourceKind::SubtitleIndex, MIB, 5),
            cand("weights", ResourceKind::ModelWeightsCache, 32 * MIB, 7),
            cand("shard", ResourceKind::ModelShards, 64 * MIB, 8),
        ],
    )
}

#[test]
fn urgency_widens_what_may_go() {
    let policy = Policy::default();
    let everything = u64::MAX;
    let at = |u| {
        let mut v = ids(&plan(&mixed(), &policy, &Request::new(u, everything)))
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        v.sort();
        v
    };
    assert!(at(Urgency::Low).is_empty(), "nothing is due");
    assert_eq!(at(Urgency::Medium), ["frame", "tmp"]);
    assert_eq!(at(Urgency::High), ["frame", "subs", "tmp", "weights"]);
    assert_eq!(
        at(Urgency::Critical),
        ["frame", "shard", "subs", "tmp", "weights"]
    );
}

#[test]
fn due_resources_go_at_low_urgency_whatever_the_target() {
    let mut s = mixed();
    s.candidates[4].ttl = Some(Duration::from_secs(50)); // the shard expired
    s.candidates[3].max_idle = Some(Duration::from_secs(10)); // weights idle 100 s
    let p = plan(&s, &Policy::default(), &Request::new(Urgency::Low, 0));
    let reason = |id: &str| {
        p.victims
            .iter()
            .find(|v| v.id.as_str() == id)
            .map(|v| v.reason.clone())
    };
    assert_eq!(p.victims.len(), 2, "{p}");
    assert_eq!(reason("shard"), Some(Reason::Expired));
    assert_eq!(reason("weights"), Some(Reason::IdlePastLimit));
}

#[test]
fn pinned_is_never_planned() {
    let mut s = mixed();
    for c in &mut s.candidates {
        c.pinned = true;
        c.ttl = Some(Duration::ZERO);
    }
    let p = plan(
        &s,
        &Policy::default(),
        &Request::new(Urgency::Critical, u64::MAX),
    );
    assert!(p.is_empty());
    assert_eq!(p.pinned, 5);
}

#[test]
fn plan_stops_once_target_is_covered() {
    let p = plan(
        &mixed(),
        &Policy::default(),
        &Request::new(Urgency::Critical, 3 * MIB),
    );
    assert_eq!(ids(&p), ["tmp"], "{p}");
    assert!(p.covers_target());
    let p = plan(
        &mixed(),
        &Policy::default(),
        &Request::new(Urgency::Medium, 100 * MIB),
    );
    assert_eq!(p.planned_bytes, 12 * MIB);
    assert!(!p.covers_target(), "medium may only take tmp and frame");
}

#[test]
fn close_scores_prefer_fewer_larger_victims() {
    let s = set(
        10,
        (0..8)
            .map(|i| {
                cand(
                    &format!("f{i}"),
                    ResourceKind::RenderCache,
                    if i == 5 { 10 * MIB } else { MIB },
                    3,
                )
            })
            .collect(),
    );
    let mut policy = Policy::default();
    policy.weights.size = 0.0; // sizes differ, scores tie exactly
    let p = plan(&s, &policy, &Request::new(Urgency::Critical, 2 * MIB));
    assert_eq!(
        ids(&p),
        ["f5"],
        "one large victim instead of two small ones: {p}"
    );
}

#[test]
fn dependents_are_released_first_and_block_when_protected() {
    let mut s = mixed();
    s.candidates[4].depends_on = Arc::from(vec![ResourceId::from("tmp")]); // shard uses tmp
    s.candidates[1].depends_on = Arc::from(vec![ResourceId::from("tmp")]); // frame uses tmp
    // At medium the shard may not go, so tmp must stay.
    let p = plan(
        &s,
        &Policy::default(),
        &Request::new(Urgency::Medium, u64::MAX),
    );
    assert_eq!(ids(&p), ["frame"]);
    assert_eq!(p.blocked.len(), 1);
    assert_eq!(
        p.blocked[0].reason,
        BlockReason::DependentProtected {
            dependent: "shard".into()
        }
    );
    // At critical both dependents go before tmp.
    let p = plan(
        &s,
        &Policy::default(),
        &Request::new(Urgency::Critical, 4 * MIB),
    );
    let order = ids(&p);
    let pos = |id| order.iter().position(|v| *v == id).unwrap();
    assert!(
        pos("frame") < pos("tmp") && pos("shard") < pos("tmp"),
        "{p}"
    );
    assert_eq!(
        p.victims[pos("shard")].reason,
        Reason::DependentOf { id: "tmp".into() }
    );
    // A pinned dependent blocks at any urgency.
    s.candidates[4].pinned = true;
    let p = plan(
        &s,
        &Policy::default(),
        &Request::new(Urgency::Critical, u64::MAX),
    );
    assert!(!ids(&p).contains(&"tmp"));
    assert!(p.blocked.iter().any(|k| k.reason
        == BlockReason::DependentPinned {
            dependent: "shard".into()
        }));
}

#[test]
fn superseded_group_members_go_first() {
    let mut a = cand("yolo-s", ResourceKind::ModelShards, 64 * MIB, 8);
    let mut b = cand("yolo-m", ResourceKind::ModelShards, 64 * MIB, 8);
    a.group = Some("detector".into());
    b.group = Some("detector".into());
    b.last_access = Timestamp::ZERO + Duration::from_secs(5); // b was loaded last
    let p = plan(
        &set(10, vec![a, b]),
        &Policy::default(),
        &Request::new(Urgency::Low, MIB),
    );
    assert_eq!(ids(&p), ["yolo-s"]);
    assert_eq!(
        p.victims[0].reason,
        Reason::Superseded {
            group: "detector".into()
        }
    );
}

#[test]
fn priority_override_protects_a_resource() {
    let mut s = mixed();
    s.candidates[1].priority = Some(Priority::MAX); // this frame matters
    let p = plan(
        &s,
        &Policy::default(),
        &Request::new(Urgency::High, u64::MAX),
    );
    assert!(!ids(&p).contains(&"frame"));
}

#[test]
fn scoped_request_takes_one_kind() {
    let p = plan(
        &mixed(),
        &Policy::default(),
        &Request::new(Urgency::Critical, u64::MAX).of_kind(ResourceKind::RenderCache),
    );
    assert_eq!(ids(&p), ["frame"]);
}

#[test]
fn every_victim_explains_itself_on_one_line() {
    let p = plan(
        &mixed(),
        &Policy::default(),
        &Request::new(Urgency::Critical, u64::MAX),
    );
    for v in &p.victims {
        let line = v.to_string();
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with(v.id.as_str()) && line.contains("score") && line.contains("accesses"),
            "{line}"
        );
        let Rank::Score(s) = &v.rank else {
            panic!("plan ranks by score")
        };
        assert!(
            (s.kind + s.importance + s.size + s.idle + s.frequency + s.bonus - s.total).abs()
                < 1e-12
        );
    }
    let text = p.to_string();
    assert!(
        text.starts_with("release plan at critical urgency"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1 + p.victims.len());
}

#[test]
fn superseded_members_go_when_bytes_are_needed_not_before() {
    let mut a = cand("det-s", ResourceKind::ModelShards, 64 * MIB, 8);
    let mut b = cand("det-m", ResourceKind::ModelShards, 64 * MIB, 8);
    a.group = Some("detector".into());
    b.group = Some("detector".into());
    b.last_access = Timestamp::ZERO + Duration::from_secs(5);
    let sweep = plan(
        &set(10, vec![a.clone(), b.clone()]),
        &Policy::default(),
        &Request::new(Urgency::Low, 0),
    );
    assert!(
        sweep.is_empty(),
        "a sweep leaves the alternative loaded: {sweep}"
    );
    let needed = plan(
        &set(10, vec![a, b]),
        &Policy::default(),
        &Request::new(Urgency::Low, 1),
    );
    assert_eq!(
        ids(&needed),
        ["det-s"],
        "it is the first to go once bytes are needed"
    );
}
