//! [`Score`]: the explained ranking of one candidate, and [`Reason`]: why it may go.

use std::fmt;
use std::time::Duration;

use memwarden_core::{ByteSize, ResourceId, Timestamp};
use memwarden_tracker::Candidate;
use serde::Serialize;

use crate::Policy;

/// Why a victim may be released at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// Its time to live has run out.
    Expired,
    /// It has been idle for longer than its limit.
    IdlePastLimit,
    /// Another member of its mutual-exclusion group is in use.
    Superseded {
        /// The group.
        group: String,
    },
    /// The urgency allows its priority.
    Pressure,
    /// A resource it depends on is being released, so it must go first.
    DependentOf {
        /// The resource it depends on.
        id: ResourceId,
    },
}

impl Reason {
    /// Whether the resource goes regardless of any byte target: past its TTL or idle
    /// limit. (A superseded group member goes first when bytes are needed, not before.)
    pub fn is_due(&self) -> bool {
        matches!(self, Reason::Expired | Reason::IdlePastLimit)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Expired => f.write_str("expired"),
            Reason::IdlePastLimit => f.write_str("idle past limit"),
            Reason::Superseded { group } => write!(f, "superseded in group {group}"),
            Reason::Pressure => f.write_str("pressure"),
            Reason::DependentOf { id } => write!(f, "depends on {id}"),
        }
    }
}

/// The score of one candidate, term by term (each term already weighted).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Score {
    /// From the kind's priority.
    pub kind: f64,
    /// From the resource's own importance.
    pub importance: f64,
    /// From its size.
    pub size: f64,
    /// From its idle time.
    pub idle: f64,
    /// From how rarely it is used.
    pub frequency: f64,
    /// Bonus for being due or superseded.
    pub bonus: f64,
    /// The sum: higher is released sooner.
    pub total: f64,
    /// Its size in bytes (context for the explanation).
    pub bytes: u64,
    /// Its idle time (context).
    pub idle_for: Duration,
    /// Its access count (context).
    pub accesses: u64,
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "score {:.3} = kind {:.3} + importance {:.3} + size {:.3} + idle {:.3} + frequency {:.3} + bonus {:.3} \
             ({}, idle {:.1}s, {} accesses)",
            self.total,
            self.kind,
            self.importance,
            self.size,
            self.idle,
            self.frequency,
            self.bonus,
            ByteSize::b(self.bytes),
            self.idle_for.as_secs_f64(),
            self.accesses,
        )
    }
}

/// Normalisers taken over the whole candidate set, so scores do not depend on input order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    ln_max_bytes: f64,
    ln_max_accesses: f64,
}

impl Scale {
    pub(crate) fn of<'a>(candidates: impl Iterator<Item = &'a Candidate>) -> Self {
        let (max_bytes, max_accesses) = candidates.fold((0u64, 0u64), |(b, a), c| {
            (b.max(c.bytes), a.max(c.accesses))
        });
        Scale {
            ln_max_bytes: (max_bytes as f64).ln_1p(),
            ln_max_accesses: (max_accesses as f64).ln_1p(),
        }
    }
}

fn ratio(value: f64, max: f64) -> f64 {
    if max > 0.0 {
        (value / max).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

pub(crate) fn score(
    c: &Candidate,
    now: Timestamp,
    policy: &Policy,
    scale: Scale,
    reason: &Reason,
) -> Score {
    let w = &policy.weights;
    let idle_for = c.idle(now);
    let idle_scale = c
        .max_idle
        .unwrap_or(policy.idle_scale)
        .as_secs_f64()
        .max(1e-9);
    let idle = idle_for.as_secs_f64() / (idle_for.as_secs_f64() + idle_scale);
    let bonus = match reason {
        Reason::Expired | Reason::IdlePastLimit => policy.due_bonus,
        Reason::Superseded { .. } => policy.superseded_bonus,
        Reason::Pressure | Reason::DependentOf { .. } => 0.0,
    };
    let mut s = Score {
        kind: w.kind * c.kind_priority.expendability(),
        importance: w.importance * c.effective_priority().expendability(),
        size: w.size * ratio((c.bytes as f64).ln_1p(), scale.ln_max_bytes),
        idle: w.idle * idle,
        frequency: w.frequency * (1.0 - ratio((c.accesses as f64).ln_1p(), scale.ln_max_accesses)),
        bonus,
        total: 0.0,
        bytes: c.bytes,
        idle_for,
        accesses: c.accesses,
    };
    s.total = s.kind + s.importance + s.size + s.idle + s.frequency + s.bonus;
    s
}
