//! Release planning for memwarden: which resources to release, in what order, and why.
//!
//! [`select`] plans by walking the tracker's release order (see
//! [`memwarden_tracker::Selection`]): what is due first, then members superseded in their
//! mutual-exclusion group, then the lowest priority the [`Urgency`] allows, and within a
//! priority the tracker's W-TinyLFU order (recency, and how often each resource was used
//! lately, with aging). It returns a [`ReleasePlan`]: the victims in the order they must
//! be released, each with its [`Standing`] (segment, frequency estimate, priority, size,
//! idle time), which prints as one readable line saying why it was chosen, and the
//! resources it had to leave out because of their dependents ([`Blocked`]). It costs
//! O(victims): nothing scans the registry.
//!
//! ```
//! use memwarden_core::{ManualClock, ResourceKind};
//! use memwarden_prioritizer::{select, Policy, Request, Urgency};
//! use memwarden_tracker::{ResourceSpec, Tracker};
//! use std::{sync::Arc, time::Duration};
//!
//! let clock = ManualClock::new();
//! let tracker = Tracker::with_clock(Arc::new(clock.clone()));
//! tracker.register(ResourceSpec::new("frame-1", ResourceKind::RenderCache, 8 << 20), ())?;
//! tracker.register(ResourceSpec::new("scratch", ResourceKind::TempBuffers, 4 << 20), ())?;
//! clock.advance(Duration::from_secs(5));
//!
//! let request = Request::new(Urgency::High, 1 << 20);
//! let plan = select(&tracker, &Policy::default(), &request, &|_| false);
//! assert_eq!(plan.victims[0].id.as_str(), "scratch"); // temp buffers go first
//! assert!(plan.covers_target());
//! println!("{plan}");
//! # Ok::<(), memwarden_tracker::TrackerError>(())
//! ```
//!
//! [`plan`] is the full-scan planner `select` replaced, kept as its reference model: a
//! pure function of a [`CandidateSet`], a [`Policy`] and a [`Request`] that scores every
//! candidate ([`Score`]). Property tests check that `select` plans nothing `plan` would
//! not, misses nothing due, and covers what `plan` covers.
//!
//! The key design decision: **the prioritizer ranks, it never acts.** It releases
//! nothing; the same registrations, accesses and request give the same plan. That lets
//! the reaper re-check each victim at the moment it acts (the world may have moved on
//! since the plan was made).
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
