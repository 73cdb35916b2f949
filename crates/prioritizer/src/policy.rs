//! What a plan is asked for ([`Request`], [`Urgency`]) and how it ranks ([`Policy`]).

use std::fmt;
use std::time::Duration;

use memwarden_core::{Priority, ResourceKind};
use serde::{Deserialize, Serialize};

/// How hard the process is pressed for memory; decides which resources may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Only resources that are due (past their TTL or idle limit, planned whatever the
    /// target) and, when bytes are needed, members superseded in their mutual-exclusion
    /// group.
    Low,
    /// Also resources of priority up to [`Policy::medium_max_priority`].
    Medium,
    /// Also resources of priority up to [`Policy::high_max_priority`].
    High,
    /// Anything that is not pinned.
    Critical,
}

impl fmt::Display for Urgency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Urgency::Low => "low",
            Urgency::Medium => "medium",
            Urgency::High => "high",
            Urgency::Critical => "critical",
        })
    }
}

/// One plan request: how urgent, how many bytes, and optionally which kind to take from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    /// Which resources may be chosen.
    pub urgency: Urgency,
    /// Bytes to free; the plan stops once they are covered (due resources go regardless).
    pub bytes_to_free: u64,
    /// Take only resources of this kind (plus whatever depends on them), e.g. to bring
    /// one kind under its byte cap.
    pub kind: Option<ResourceKind>,
}

impl Request {
    /// A request over all kinds.
    pub fn new(urgency: Urgency, bytes_to_free: u64) -> Self {
        Request {
            urgency,
            bytes_to_free,
            kind: None,
        }
    }

    /// Restricts the request to one kind.
    pub fn of_kind(mut self, kind: ResourceKind) -> Self {
        self.kind = Some(kind);
        self
    }
}

/// Weights of the score terms; each term lies in `0.0..=1.0`, higher meaning "release sooner".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    /// The kind's priority (low priority kinds go first).
    pub kind: f64,
    /// The resource's own importance (its priority override, else its kind's).
    pub importance: f64,
    /// Size, log-scaled against the largest candidate (large ones free more per release).
    pub size: f64,
    /// Time since last access, saturating against the idle limit.
    pub idle: f64,
    /// Rarity of access, log-scaled against the most accessed candidate.
    pub frequency: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            kind: 1.0,
            importance: 0.5,
            size: 0.6,
            idle: 0.4,
            frequency: 1.0,
        }
    }
}

/// How the prioritizer ranks; [`Policy::default`] is the tuned default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Score weights.
    pub weights: Weights,
    /// At [`Urgency::Medium`], resources up to this priority may be released.
    pub medium_max_priority: Priority,
    /// At [`Urgency::High`], resources up to this priority may be released.
    pub high_max_priority: Priority,
    /// Scores closer than this count as tied; ties go to the larger resource.
    pub tie_band: f64,
    /// Idle time at which the idle term reaches one half, for resources without an idle limit.
    pub idle_scale: Duration,
    /// Added to the score of resources past their TTL or idle limit.
    pub due_bonus: f64,
    /// Added to the score of group members superseded by a more recently used member.
    pub superseded_bonus: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            weights: Weights::default(),
            medium_max_priority: Priority::new(4).expect("4 is in range"),
            high_max_priority: Priority::new(7).expect("7 is in range"),
            tie_band: 0.02,
            idle_scale: Duration::from_secs(60),
            due_bonus: 1.0,
            superseded_bonus: 0.5,
        }
    }
}

impl Policy {
    /// Whether a resource of `priority` may be released at `urgency` without being due.
    pub fn allows(&self, urgency: Urgency, priority: Priority) -> bool {
        match urgency {
            Urgency::Low => false,
            Urgency::Medium => priority <= self.medium_max_priority,
            Urgency::High => priority <= self.high_max_priority,
            Urgency::Critical => true,
        }
    }
}
