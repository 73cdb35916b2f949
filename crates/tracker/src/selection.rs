//! [`Selection`]: the release order read under one lock, for a planner to walk.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt;

use memwarden_core::{Priority, ResourceId, ResourceKind, Timestamp};
use parking_lot::MutexGuard;
use serde::Serialize;

use crate::order::{self, Segment, Slot, Walks};
use crate::registry::{Books, Entry};
use crate::{Candidate, KindPolicy, Tracker};

/// Where a resource stood in the release order when it was offered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Placement {
    /// Its segment (`None`: pinned, in no segment).
    pub segment: Option<Segment>,
    /// How often it was used lately, as the frequency sketch estimates it (0 to 15).
    pub frequency: u8,
    /// The sketch's estimate for the resource it was weighed against, if any: a
    /// [`Segment::Candidate`] goes when it was used no more often than the oldest main
    /// resource; a main resource goes when a candidate was used more often than it.
    pub rival_frequency: Option<u8>,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.segment {
            None => f.write_str("pinned")?,
            Some(segment) => write!(f, "{segment}")?,
        }
        write!(f, ", frequency {}", self.frequency)?;
        match self.rival_frequency {
            Some(rival) if self.segment == Some(Segment::Candidate) => {
                write!(f, " (not admitted: the oldest main resource has {rival})")
            }
            Some(rival) => write!(f, " (a window candidate with {rival} took its place)"),
            None => Ok(()),
        }
    }
}

/// A resource the release order offers next, with where it stood.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Pick {
    /// The resource, as a release candidate.
    pub candidate: Candidate,
    /// Where it stood.
    pub placement: Placement,
}

/// The tracker's release order under its lock: what a planner walks to choose victims
/// without scanning the registry. From [`Tracker::select`].
///
/// Taking one applies every access recorded since the last (so the order is up to date),
/// starts a release walk in each tier, and holds the registry's bookkeeping lock until it
/// is dropped: registrations and releases wait, lookups do not. Keep it for one plan.
///
/// While a thread holds one, that thread must not call the tracker's methods that take
/// the lock (registering, releasing, pinning, resizing, `totals`, `stats`, `select`,
/// `expired`, `candidates`, or formatting the tracker with `{:?}`): the lock is not
/// reentrant, and the thread would wait on itself. `get`, `touch`, `peek_any`,
/// `contains` and `info` are fine.
///
/// Each step costs O(1) plus a lookup of the resource's record;
/// [`superseded`](Selection::superseded) is O(members of the groups) and
/// [`due`](Selection::due) O(resources whose deadline has passed), both independent of
/// how much is registered.
pub struct Selection<'a> {
    tracker: &'a Tracker,
    books: MutexGuard<'a, Books>,
    walks: Walks,
    now: Timestamp,
    policies: HashMap<ResourceKind, KindPolicy>,
}

impl fmt::Debug for Selection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selection")
            .field("now", &self.now)
            .field("registered", &self.books.order.len())
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// Locks the release order for one plan; see [`Selection`].
    pub fn select(&self) -> Selection<'_> {
        let mut books = self.books.lock();
        self.drain_reads(&mut books);
        let walks = books.order.walks();
        let policies = self.policies.read().clone();
        Selection {
            tracker: self,
            books,
            walks,
            now: self.now(),
            policies,
        }
    }
}

impl Selection<'_> {
    /// The instant the selection judges expiry at.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Resources registered.
    pub fn len(&self) -> usize {
        self.books.order.len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn policy(&self, kind: &ResourceKind) -> KindPolicy {
        self.policies
            .get(kind)
            .copied()
            .unwrap_or_else(|| KindPolicy::default_for(kind))
    }

    fn with_entry<R>(&self, id: &str, f: impl FnOnce(&ResourceId, &Entry) -> R) -> Option<R> {
        let map = self.tracker.shard(id).map.read();
        let (key, entry) = map.get_key_value(id)?;
        Some(f(key, entry))
    }

    /// `id`'s record now, as a release candidate.
    pub fn candidate(&self, id: &str) -> Option<Candidate> {
        self.with_entry(id, |key, entry| {
            entry.candidate(key, &self.policy(&entry.kind))
        })
    }

    fn slot(&self, id: &str) -> Option<Slot> {
        self.with_entry(id, |_, entry| entry.slot)
    }

    /// Where `id` stands in the release order now.
    pub fn placement(&self, id: &str) -> Option<Placement> {
        let slot = self.slot(id)?;
        Some(Placement {
            segment: self.books.order.segment(slot),
            frequency: self.books.order.frequency(slot),
            rival_frequency: None,
        })
    }

    /// The live resources that depend on `id`, sorted by id.
    pub fn dependents(&self, id: &str) -> Vec<ResourceId> {
        let mut dependents = self.books.dependents.get(id).cloned().unwrap_or_default();
        dependents.sort();
        dependents
    }

    /// Every resource past its TTL or idle limit now, earliest deadline first, pinned
    /// ones included (a planner skips them; they stay in the deadline set, so each
    /// selection looks at them again).
    ///
    /// A resource whose recorded deadline passed but that was used since is put back at
    /// its new deadline.
    pub fn due(&mut self) -> Vec<Candidate> {
        let now = self.now.as_nanos();
        let mut due = Vec::new();
        for slot in self.books.order.deadlines_until(now) {
            let id = self.books.order.id(slot).clone();
            let Some(candidate) = self.candidate(id.as_str()) else {
                continue;
            };
            let deadline = order::deadline_of(
                candidate.registered_at,
                candidate.last_access,
                candidate.ttl,
                candidate.max_idle,
            );
            match deadline {
                Some(at) if at <= now => due.push(candidate),
                later => self.books.order.set_deadline(slot, later),
            }
        }
        due
    }

    /// The members of each mutual-exclusion group other than the one in use (the most
    /// recently accessed, then the most accessed, then the smallest id), least recently
    /// used first (then by id).
    pub fn superseded(&self) -> Vec<Candidate> {
        let mut superseded = Vec::new();
        for members in self.books.groups.values().filter(|m| m.len() > 1) {
            let mut candidates: Vec<Candidate> = members
                .iter()
                .filter_map(|id| self.candidate(id.as_str()))
                .collect();
            let Some(active) = candidates
                .iter()
                .enumerate()
                .max_by_key(|(_, c)| (c.last_access, c.accesses, Reverse(c.id.clone())))
                .map(|(i, _)| i)
            else {
                continue;
            };
            candidates.swap_remove(active);
            superseded.extend(candidates);
        }
        superseded.sort_by(|a, b| (a.last_access, &a.id).cmp(&(b.last_access, &b.id)));
        superseded
    }

    /// Whether `candidate` is a member of a group that another member is using.
    pub fn is_superseded(&self, candidate: &Candidate) -> bool {
        let Some(group) = candidate.group.as_deref() else {
            return false;
        };
        let Some(members) = self.books.groups.get(group) else {
            return false;
        };
        let key = |c: &Candidate| (c.last_access, c.accesses, Reverse(c.id.clone()));
        members
            .iter()
            .filter(|id| **id != candidate.id)
            .filter_map(|id| self.candidate(id.as_str()))
            .any(|other| key(&other) > key(candidate))
    }

    /// The next resource in release order among those of priority up to `max` (and of
    /// `kind`, if given): the lowest priority first, then the W-TinyLFU order of its tier
    /// (see the crate docs). Each resource is offered at most once per selection;
    /// `None` once every one has been.
    pub fn next(&mut self, max: Priority, kind: Option<&ResourceKind>) -> Option<Pick> {
        loop {
            let step = self.books.order.next(&mut self.walks, max, kind)?;
            let order = &self.books.order;
            let id = order.id(step.slot).clone();
            let placement = Placement {
                segment: order.segment(step.slot),
                frequency: order.frequency(step.slot),
                rival_frequency: step.rival.map(|r| order.frequency(r)),
            };
            // The record is always there under the lock; skipped defensively otherwise.
            if let Some(candidate) = self.candidate(id.as_str()) {
                return Some(Pick {
                    candidate,
                    placement,
                });
            }
        }
    }
}
