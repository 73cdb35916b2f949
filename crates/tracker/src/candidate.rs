//! What the tracker reports: [`Candidate`]s for release and byte [`Totals`].

use std::sync::Arc;
use std::time::Duration;

use memwarden_core::{Priority, ResourceId, ResourceKind, Timestamp};
use serde::Serialize;

/// One registered resource at one instant, as the prioritizer sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The resource's id.
    pub id: ResourceId,
    /// Its kind.
    pub kind: ResourceKind,
    /// Its size in bytes.
    pub bytes: u64,
    /// The priority of its kind.
    pub kind_priority: Priority,
    /// Its own priority override, if any.
    pub priority: Option<Priority>,
    /// Whether it is pinned (never released).
    pub pinned: bool,
    /// When it was registered.
    pub registered_at: Timestamp,
    /// When it was last accessed (registration counts as an access).
    pub last_access: Timestamp,
    /// How many times it was accessed, registration included.
    pub accesses: u64,
    /// Its effective time to live (own, else its kind's).
    pub ttl: Option<Duration>,
    /// Its effective idle limit (own, else its kind's).
    pub max_idle: Option<Duration>,
    /// The resources it depends on.
    pub depends_on: Arc<[ResourceId]>,
    /// Its mutual-exclusion group.
    pub group: Option<Arc<str>>,
}

impl Candidate {
    /// The priority that applies: the resource's own, else its kind's.
    pub fn effective_priority(&self) -> Priority {
        self.priority.unwrap_or(self.kind_priority)
    }
    /// Time since the last access.
    pub fn idle(&self, now: Timestamp) -> Duration {
        now.saturating_duration_since(self.last_access)
    }
    /// Time since registration.
    pub fn age(&self, now: Timestamp) -> Duration {
        now.saturating_duration_since(self.registered_at)
    }
    /// Whether its time to live has run out at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.ttl.is_some_and(|ttl| self.age(now) >= ttl)
    }
    /// Whether it has been idle for at least its idle limit at `now`.
    pub fn is_idle_past_limit(&self, now: Timestamp) -> bool {
        self.max_idle.is_some_and(|limit| self.idle(now) >= limit)
    }
}

/// Every registered resource at one instant: the input of a release plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateSet {
    /// The instant the set describes.
    pub now: Timestamp,
    /// One entry per registered resource, in no particular order.
    pub candidates: Vec<Candidate>,
}

/// A count of resources and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Totals {
    /// Number of resources.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
}
