//! [`plan`]: candidates in, an ordered and explained [`ReleasePlan`] out.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fmt;

use memwarden_core::{ByteSize, ResourceId, ResourceKind, Timestamp};
use memwarden_tracker::{Candidate, CandidateSet};
use serde::Serialize;

use crate::score::{Scale, score};
use crate::{Policy, Reason, Request, Score, Standing, Urgency};

/// One resource the plan releases.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Victim {
    /// Its id.
    pub id: ResourceId,
    /// Its kind.
    pub kind: ResourceKind,
    /// Its bytes.
    pub bytes: u64,
    /// Why it may go.
    pub reason: Reason,
    /// Why it went when it did.
    pub rank: Rank,
}

impl fmt::Display for Victim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}; {}",
            self.id, self.kind, self.reason, self.rank
        )
    }
}

/// How a victim ranked: by the full scan's score ([`plan`]) or by its standing in the
/// tracker's release order ([`select`](crate::select)).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rank {
    /// The weighted score of [`plan`].
    Score(Score),
    /// The release-order standing of [`select`](crate::select).
    Standing(Standing),
}

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rank::Score(score) => score.fmt(f),
            Rank::Standing(standing) => standing.fmt(f),
        }
    }
}

/// Why a releasable resource was blocked: left out of the plan because of a resource
/// that depends on it. (Not the reaper's `SkipReason`, which says why a victim was not
/// released when the plan was carried out.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BlockReason {
    /// A resource that depends on it is pinned, so it cannot go first.
    DependentPinned {
        /// The pinned dependent.
        dependent: ResourceId,
    },
    /// A resource that depends on it may not be released at this urgency.
    DependentProtected {
        /// The protected dependent.
        dependent: ResourceId,
    },
}

/// A releasable resource the plan had to leave out ([`ReleasePlan::blocked`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Blocked {
    /// Its id.
    pub id: ResourceId,
    /// Why.
    pub reason: BlockReason,
}

/// The ordered list of resources to release; release them front to back.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ReleasePlan {
    /// The urgency it was planned at.
    pub urgency: Urgency,
    /// Bytes asked for.
    pub target_bytes: u64,
    /// Bytes the victims hold.
    pub planned_bytes: u64,
    /// The victims, in release order: every resource comes after those that depend on it.
    pub victims: Vec<Victim>,
    /// Releasable resources left out because of their dependents.
    pub blocked: Vec<Blocked>,
    /// Candidates looked at ([`plan`]: all of them; [`select`](crate::select): those it
    /// walked to).
    pub considered: usize,
    /// Candidates left alone because they are pinned (or, for
    /// [`select`](crate::select), excluded), among those looked at.
    pub pinned: usize,
}

impl ReleasePlan {
    /// Whether the victims hold at least the bytes asked for.
    pub fn covers_target(&self) -> bool {
        self.planned_bytes >= self.target_bytes
    }

    /// Whether there is nothing to release.
    pub fn is_empty(&self) -> bool {
        self.victims.is_empty()
    }
}

impl fmt::Display for ReleasePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "release plan at {} urgency: {} of {} asked, {} victims; {} candidates looked at, {} held back",
            self.urgency,
            ByteSize::b(self.planned_bytes),
            ByteSize::b(self.target_bytes),
            self.victims.len(),
            self.considered,
            self.pinned,
        )?;
        for (n, victim) in self.victims.iter().enumerate() {
            writeln!(f, "  {:>3}. {victim}", n + 1)?;
        }
        for blocked in &self.blocked {
            match &blocked.reason {
                BlockReason::DependentPinned { dependent } => {
                    writeln!(
                        f,
                        "  kept {}: {dependent} depends on it and is pinned",
                        blocked.id
                    )?;
                }
                BlockReason::DependentProtected { dependent } => {
                    writeln!(
                        f,
                        "  kept {}: {dependent} depends on it and may not go at this urgency",
                        blocked.id
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// Plans which resources to release.
///
/// Rules, in order:
/// - pinned resources are never planned;
/// - resources that are *due* (past their TTL or idle limit) are always planned, whatever
///   the byte target;
/// - other resources are eligible if superseded in their mutual-exclusion group or if the
///   urgency allows their priority ([`Policy::allows`]); they are taken by descending
///   score until `bytes_to_free` is covered, scores within [`Policy::tie_band`] of each
///   other counting as tied and going to the larger resource (fewer, larger victims);
/// - a resource is planned only together with, and after, every live resource that
///   depends on it; if one of those may not go, the resource is blocked and reported.
///
/// The result depends only on the arguments, not on the order of the candidates.
pub fn plan(set: &CandidateSet, policy: &Policy, request: &Request) -> ReleasePlan {
    let candidates = &set.candidates;
    let now = set.now;
    let dependents = dependents_of(candidates);
    let active_in_group = active_group_members(candidates);
    let reasons: Vec<Option<Reason>> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| eligibility(i, c, now, policy, request.urgency, &active_in_group))
        .collect();
    let scale = Scale::of(candidates.iter());

    // Sort keys are computed once per candidate, not once per comparison.
    let order: Vec<(usize, Reason, Score, SortKey)> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| request.kind.as_ref().is_none_or(|k| *k == c.kind))
        .filter_map(|(i, _)| reasons[i].clone().map(|r| (i, r)))
        .map(|(i, r)| {
            let s = score(&candidates[i], now, policy, scale, &r);
            let band = (s.total / policy.tie_band).floor() as i64;
            let key = (
                Reverse(r.is_due()),
                Reverse(band),
                Reverse(candidates[i].bytes),
            );
            (i, r, s, key)
        })
        .collect();
    let mut order = SortedPrefix::new(order, |a, b| {
        a.3.cmp(&b.3)
            .then_with(|| candidates[a.0].id.cmp(&candidates[b.0].id))
    });

    let mut planned = vec![false; candidates.len()];
    let mut plan = ReleasePlan {
        urgency: request.urgency,
        target_bytes: request.bytes_to_free,
        planned_bytes: 0,
        victims: Vec::new(),
        blocked: Vec::new(),
        considered: candidates.len(),
        pinned: candidates.iter().filter(|c| c.pinned).count(),
    };
    while let Some((i, reason, s, _)) = order.next() {
        if planned[i] {
            continue;
        }
        if !reason.is_due() && plan.covers_target() {
            break;
        }
        let mut chain = Vec::new();
        // Most resources have no dependents, so this stays tiny; a set sized to the
        // candidates would make planning quadratic.
        let mut visiting = HashSet::new();
        if let Err(reason) = collect_dependents(
            i,
            &dependents,
            &reasons,
            candidates,
            &planned,
            &mut visiting,
            &mut chain,
        ) {
            plan.blocked.push(Blocked {
                id: candidates[i].id.clone(),
                reason,
            });
            continue;
        }
        for (d, parent) in chain {
            let reason = Reason::DependentOf {
                id: candidates[parent].id.clone(),
            };
            let s = score(&candidates[d], now, policy, scale, &reason);
            push(&mut plan, &mut planned, candidates, d, reason, s);
        }
        push(&mut plan, &mut planned, candidates, i, reason, s);
    }
    plan
}

fn push(
    plan: &mut ReleasePlan,
    planned: &mut [bool],
    candidates: &[Candidate],
    i: usize,
    reason: Reason,
    score: Score,
) {
    let c = &candidates[i];
    planned[i] = true;
    plan.planned_bytes = plan.planned_bytes.saturating_add(c.bytes);
    plan.victims.push(Victim {
        id: c.id.clone(),
        kind: c.kind.clone(),
        bytes: c.bytes,
        reason,
        rank: Rank::Score(score),
    });
}

/// The elements of a vector in the order of `cmp`, sorted only as far as they are taken.
///
/// A plan usually needs a few percent of the candidates, so sorting all of them is wasted
/// work: each step partitions the unsorted rest with `select_nth_unstable_by` and sorts
/// only the next chunk, doubling the chunk each time. `cmp` must be a total order (ties
/// broken by id), so the elements come out exactly as a full sort would give them.
struct SortedPrefix<T, F> {
    items: std::vec::IntoIter<T>,
    rest: Vec<T>,
    chunk: usize,
    cmp: F,
}

impl<T, F: FnMut(&T, &T) -> std::cmp::Ordering> SortedPrefix<T, F> {
    fn new(rest: Vec<T>, cmp: F) -> Self {
        SortedPrefix {
            items: Vec::new().into_iter(),
            rest,
            chunk: 32,
            cmp,
        }
    }

    fn next(&mut self) -> Option<T> {
        if let Some(item) = self.items.next() {
            return Some(item);
        }
        if self.rest.is_empty() {
            return None;
        }
        let take = self.chunk.min(self.rest.len());
        if take < self.rest.len() {
            self.rest.select_nth_unstable_by(take - 1, &mut self.cmp);
        }
        let mut head: Vec<T> = self.rest.drain(..take).collect();
        head.sort_unstable_by(&mut self.cmp);
        self.chunk = self.chunk.saturating_mul(2);
        self.items = head.into_iter();
        self.items.next()
    }
}

/// Release order: due first, then higher score band, then larger (ties then go by id).
type SortKey = (Reverse<bool>, Reverse<i64>, Reverse<u64>);

/// For each candidate, the candidates that depend on it, sorted by id.
fn dependents_of(candidates: &[Candidate]) -> Vec<Vec<usize>> {
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); candidates.len()];
    if candidates.iter().all(|c| c.depends_on.is_empty()) {
        return dependents;
    }
    let index: HashMap<&str, usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    for (i, c) in candidates.iter().enumerate() {
        for dependency in c.depends_on.iter() {
            if let Some(&j) = index.get(dependency.as_str()) {
                dependents[j].push(i);
            }
        }
    }
    for list in &mut dependents {
        list.sort_by(|&a, &b| candidates[a].id.cmp(&candidates[b].id));
    }
    dependents
}

/// For each mutual-exclusion group, the member in use: the most recently accessed one
/// (then the most accessed, then the smallest id).
fn active_group_members(candidates: &[Candidate]) -> HashMap<&str, usize> {
    let mut active: HashMap<&str, usize> = HashMap::new();
    for (i, c) in candidates.iter().enumerate() {
        let Some(group) = c.group.as_deref() else {
            continue;
        };
        let slot = active.entry(group).or_insert(i);
        let best = &candidates[*slot];
        let key = |c: &Candidate| (c.last_access, c.accesses, Reverse(c.id.clone()));
        if key(c) > key(best) {
            *slot = i;
        }
    }
    active
}

fn eligibility(
    i: usize,
    c: &Candidate,
    now: Timestamp,
    policy: &Policy,
    urgency: Urgency,
    active_in_group: &HashMap<&str, usize>,
) -> Option<Reason> {
    if c.pinned {
        None
    } else if c.is_expired(now) {
        Some(Reason::Expired)
    } else if c.is_idle_past_limit(now) {
        Some(Reason::IdlePastLimit)
    } else if let Some(group) = c
        .group
        .as_deref()
        .filter(|g| active_in_group.get(g) != Some(&i))
    {
        Some(Reason::Superseded {
            group: group.to_owned(),
        })
    } else {
        policy
            .allows(urgency, c.effective_priority())
            .then_some(Reason::Pressure)
    }
}

/// Collects, depth first, every unplanned resource that depends on `i`, each after its own
/// dependents, paired with the resource it depends on; fails if one of them may not go.
fn collect_dependents(
    i: usize,
    dependents: &[Vec<usize>],
    reasons: &[Option<Reason>],
    candidates: &[Candidate],
    planned: &[bool],
    visiting: &mut HashSet<usize>,
    chain: &mut Vec<(usize, usize)>,
) -> Result<(), BlockReason> {
    visiting.insert(i);
    for &d in &dependents[i] {
        if planned[d] || visiting.contains(&d) {
            continue;
        }
        let dependent = candidates[d].id.clone();
        if candidates[d].pinned {
            return Err(BlockReason::DependentPinned { dependent });
        }
        if reasons[d].is_none() {
            return Err(BlockReason::DependentProtected { dependent });
        }
        collect_dependents(d, dependents, reasons, candidates, planned, visiting, chain)?;
        chain.push((d, i));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::SortedPrefix;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sorted_prefix_yields_exactly_a_full_sort(mut items in prop::collection::vec(any::<(u8, u16)>(), 0..600)) {
            let mut prefix = SortedPrefix::new(items.clone(), |a: &(u8, u16), b: &(u8, u16)| a.cmp(b));
            let mut out = Vec::new();
            while let Some(item) = prefix.next() {
                out.push(item);
            }
            items.sort_unstable();
            prop_assert_eq!(out, items);
        }
    }
}
