//! [`select`]: a release plan walked off the tracker's release order, in time
//! proportional to the victims rather than to everything registered.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use memwarden_core::{ByteSize, Priority, ResourceId};
use memwarden_tracker::{Candidate, Placement, Selection, Tracker};
use serde::Serialize;

use crate::plan::{BlockReason, Blocked, Rank, ReleasePlan, Victim};
use crate::{Policy, Reason, Request, Urgency};

/// Why a victim of [`select`] came when it did: where it stood in the release order,
/// and the facts a reader weighs it by.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Standing {
    /// Its segment and frequency in the release order, and the duel that chose it.
    pub placement: Option<Placement>,
    /// The priority that applied (its own, else its kind's).
    pub priority: Priority,
    /// Its kind's priority.
    pub kind_priority: Priority,
    /// Its size in bytes.
    pub bytes: u64,
    /// Time since its last access.
    pub idle_for: Duration,
    /// Accesses since registration, registration included.
    pub accesses: u64,
}

impl fmt::Display for Standing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(placement) = &self.placement {
            write!(f, "{placement}; ")?;
        }
        write!(
            f,
            "priority {} (kind {}), {}, idle {:.1}s, {} accesses",
            self.priority.get(),
            self.kind_priority.get(),
            ByteSize::b(self.bytes),
            self.idle_for.as_secs_f64(),
            self.accesses,
        )
    }
}

/// The highest priority `urgency` lets go without being due (`None`: none).
fn max_priority(policy: &Policy, urgency: Urgency) -> Option<Priority> {
    match urgency {
        Urgency::Low => None,
        Urgency::Medium => Some(policy.medium_max_priority),
        Urgency::High => Some(policy.high_max_priority),
        Urgency::Critical => Some(Priority::MAX),
    }
}

/// Plans which resources to release by walking the tracker's release order: the fast
/// path the lifecycle and the governor use. [`plan`](crate::plan) is the full-scan
/// reference it is tested against.
///
/// The rules are [`plan`](crate::plan)'s; only the ranking differs:
/// - pinned resources, and those `exclude` names (locked, or being released by another
///   thread), are never planned;
/// - resources that are *due* (past their TTL or idle limit) are always planned, whatever
///   the byte target, earliest deadline first;
/// - then, while bytes are still needed, members superseded in their mutual-exclusion
///   group, least recently used first;
/// - then, while bytes are still needed, the release order among the priorities the
///   urgency allows ([`Policy::allows`]): the lowest priority first, and within one
///   priority the W-TinyLFU order of the tracker (see [`memwarden_tracker::Segment`]);
/// - a resource is planned only together with, and after, every live resource that
///   depends on it; if one of those may not go, the resource is blocked and reported.
///
/// Each victim carries its [`Standing`]. The cost is O(victims + blocked + skipped), plus
/// the due resources and the members of groups; never a pass over everything registered.
/// The same registrations and accesses, in the same order, give the same plan.
/// [`ReleasePlan::considered`] counts the resources looked at, and
/// [`ReleasePlan::pinned`] those of them held back (pinned or excluded), not every one
/// registered as [`plan`](crate::plan) counts.
///
/// The tracker's bookkeeping lock is held while `exclude` runs: it must not register,
/// release or read the tracker's totals (see [`Selection`]).
pub fn select(
    tracker: &Tracker,
    policy: &Policy,
    request: &Request,
    exclude: &dyn Fn(&ResourceId) -> bool,
) -> ReleasePlan {
    let mut selection = tracker.select();
    let now = selection.now();
    let mut walk = Walk {
        plan: ReleasePlan {
            urgency: request.urgency,
            target_bytes: request.bytes_to_free,
            planned_bytes: 0,
            victims: Vec::new(),
            blocked: Vec::new(),
            considered: 0,
            pinned: 0,
        },
        planned: HashSet::new(),
        offered: HashSet::new(),
        policy,
        exclude,
        now,
    };
    let of_kind = |c: &Candidate| request.kind.as_ref().is_none_or(|k| *k == c.kind);
    for candidate in selection.due() {
        if of_kind(&candidate) {
            let reason = if candidate.is_expired(now) {
                Reason::Expired
            } else {
                Reason::IdlePastLimit
            };
            walk.offer(&selection, candidate, reason, None);
        }
    }
    if !walk.plan.covers_target() {
        for candidate in selection.superseded() {
            if walk.plan.covers_target() {
                break;
            }
            if of_kind(&candidate) {
                let group = candidate.group.as_deref().unwrap_or_default().to_owned();
                walk.offer(&selection, candidate, Reason::Superseded { group }, None);
            }
        }
    }
    if let Some(max) = max_priority(policy, request.urgency) {
        while !walk.plan.covers_target() {
            let Some(pick) = selection.next(max, request.kind.as_ref()) else {
                break;
            };
            walk.offer(
                &selection,
                pick.candidate,
                Reason::Pressure,
                Some(pick.placement),
            );
        }
    }
    walk.plan
}

/// A plan being built.
struct Walk<'a> {
    plan: ReleasePlan,
    planned: HashSet<ResourceId>,
    /// Every resource looked at: one that is due may be offered again as superseded or
    /// in release order, and is judged once.
    offered: HashSet<ResourceId>,
    policy: &'a Policy,
    exclude: &'a dyn Fn(&ResourceId) -> bool,
    now: memwarden_core::Timestamp,
}

impl Walk<'_> {
    fn held_back(&self, c: &Candidate) -> bool {
        c.pinned || (self.exclude)(&c.id)
    }

    /// Plans `candidate` (after its dependents), or counts it pinned, or reports it blocked.
    fn offer(
        &mut self,
        selection: &Selection<'_>,
        candidate: Candidate,
        reason: Reason,
        placement: Option<Placement>,
    ) {
        if self.planned.contains(&candidate.id) || !self.offered.insert(candidate.id.clone()) {
            return;
        }
        self.plan.considered += 1;
        if self.held_back(&candidate) {
            self.plan.pinned += 1;
            return;
        }
        let mut chain = Vec::new();
        let mut visiting = HashSet::from([candidate.id.clone()]);
        if let Err(reason) = self.dependents(selection, &candidate.id, &mut visiting, &mut chain) {
            self.plan.blocked.push(Blocked {
                id: candidate.id,
                reason,
            });
            return;
        }
        for (dependent, of) in chain {
            let placement = selection.placement(dependent.id.as_str());
            self.push(dependent, Reason::DependentOf { id: of }, placement);
        }
        let placement = placement.or_else(|| selection.placement(candidate.id.as_str()));
        self.push(candidate, reason, placement);
    }

    /// Collects, depth first, every unplanned resource that depends on `id`, each after
    /// its own dependents, paired with the resource it depends on; fails if one of them
    /// may not go.
    fn dependents(
        &self,
        selection: &Selection<'_>,
        id: &ResourceId,
        visiting: &mut HashSet<ResourceId>,
        chain: &mut Vec<(Candidate, ResourceId)>,
    ) -> Result<(), BlockReason> {
        for dependent in selection.dependents(id.as_str()) {
            if self.planned.contains(&dependent) || !visiting.insert(dependent.clone()) {
                continue;
            }
            let Some(d) = selection.candidate(dependent.as_str()) else {
                continue;
            };
            if self.held_back(&d) {
                return Err(BlockReason::DependentPinned { dependent });
            }
            let eligible = d.is_expired(self.now)
                || d.is_idle_past_limit(self.now)
                || selection.is_superseded(&d)
                || self
                    .policy
                    .allows(self.plan.urgency, d.effective_priority());
            if !eligible {
                return Err(BlockReason::DependentProtected { dependent });
            }
            self.dependents(selection, &dependent, visiting, chain)?;
            chain.push((d, id.clone()));
        }
        Ok(())
    }

    fn push(&mut self, c: Candidate, reason: Reason, placement: Option<Placement>) {
        let standing = Standing {
            placement,
            priority: c.effective_priority(),
            kind_priority: c.kind_priority,
            bytes: c.bytes,
            idle_for: c.idle(self.now),
            accesses: c.accesses,
        };
        self.planned.insert(c.id.clone());
        self.plan.planned_bytes = self.plan.planned_bytes.saturating_add(c.bytes);
        self.plan.victims.push(Victim {
            id: c.id,
            kind: c.kind,
            bytes: c.bytes,
            reason,
            rank: Rank::Standing(standing),
        });
    }
}
