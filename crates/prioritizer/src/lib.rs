//! Release planning for memwarden: which resources to release, in what order, and why.
//!
//! [`plan`] is a pure function of its input: a [`CandidateSet`] from the tracker, a
//! [`Policy`], and a [`Request`] (an [`Urgency`] and a byte target). It returns a
//! [`ReleasePlan`]: the victims in the order they must be released, each with a
//! [`Score`] breakdown that prints as one readable line saying why it was chosen, and
//! the resources it had to leave out because of their dependents ([`Blocked`]).
//!
//! ```
//! use memwarden_core::{ManualClock, ResourceKind};
//! use memwarden_prioritizer::{plan, Policy, Request, Urgency};
//! use memwarden_tracker::{ResourceSpec, Tracker};
//! use std::{sync::Arc, time::Duration};
//!
//! let clock = ManualClock::new();
//! let tracker = Tracker::with_clock(Arc::new(clock.clone()));
//! tracker.register(ResourceSpec::new("frame-1", ResourceKind::RenderCache, 8 << 20), ())?;
//! tracker.register(ResourceSpec::new("scratch", ResourceKind::TempBuffers, 4 << 20), ())?;
//! clock.advance(Duration::from_secs(5));
//!
//! let plan = plan(&tracker.candidates(), &Policy::default(), &Request::new(Urgency::High, 1 << 20));
//! assert_eq!(plan.victims[0].id.as_str(), "scratch"); // temp buffers go first
//! assert!(plan.covers_target());
//! println!("{plan}");
//! # Ok::<(), memwarden_tracker::TrackerError>(())
//! ```
//!
//! The key design decision: **the prioritizer ranks, it never acts.** It holds no state
//! and touches nothing; the same candidates, policy and request give the same plan, in
//! whatever order the candidates arrive. That makes every release decision reproducible
//! from a logged candidate set, and lets the reaper re-check each victim at the moment it
//! acts (the world may have moved on since the candidates were read).
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod plan;
mod policy;
mod score;
mod select;

pub use memwarden_tracker::{Candidate, CandidateSet};
pub use plan::{BlockReason, Blocked, Rank, ReleasePlan, Victim, plan};
pub use select::{Standing, select};

pub use policy::{Policy, Request, Urgency, Weights};
pub use score::{Reason, Score};
