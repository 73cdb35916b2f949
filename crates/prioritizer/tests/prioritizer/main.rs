//! Integration tests of release planning.

mod properties;
mod rules;
mod select;

use std::sync::Arc;
use std::time::Duration;

use memwarden_core::{Priority, ResourceId, ResourceKind, Timestamp};
use memwarden_prioritizer::{Candidate, CandidateSet};

/// A candidate with neutral defaults: registered at 0, accessed once, idle since.
pub(crate) fn cand(id: &str, kind: ResourceKind, bytes: u64, priority: u8) -> Candidate {
    Candidate {
        id: id.into(),
        kind,
        bytes,
        kind_priority: Priority::new(i64::from(priority)).unwrap(),
        priority: None,
        pinned: false,
        registered_at: Timestamp::ZERO,
        last_access: Timestamp::ZERO,
        accesses: 1,
        ttl: None,
        max_idle: None,
        depends_on: Arc::from(Vec::<ResourceId>::new()),
        group: None,
    }
}

pub(crate) fn set(now_secs: u64, candidates: Vec<Candidate>) -> CandidateSet {
    CandidateSet {
        now: Timestamp::ZERO + Duration::from_secs(now_secs),
        candidates,
    }
}

pub(crate) fn ids(plan: &memwarden_prioritizer::ReleasePlan) -> Vec<&str> {
    plan.victims.iter().map(|v| v.id.as_str()).collect()
}
