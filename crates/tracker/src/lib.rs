//! The resource registry of memwarden: what is held, how big it is, how it is used.
//!
//! A [`Tracker`] records every releasable resource a process holds: its [`ResourceKind`](memwarden_core::ResourceKind),
//! its size in bytes, when it was registered and last used, how often it was used, and
//! the limits that apply to it (TTL, max idle time, priority, pinning, dependencies,
//! mutual-exclusion group). From that record it answers the questions a memory governor
//! asks on every tick: how many bytes are held, per kind and in total
//! ([`Tracker::totals`], [`Tracker::kind_totals`]), what has expired
//! ([`Tracker::expired`]), what should go next ([`Tracker::select`]), and every record
//! at once ([`Tracker::candidates`], a full snapshot).
//!
//! ```
//! use memwarden_core::{ResourceKind, ManualClock};
//! use memwarden_tracker::{ResourceSpec, Tracker};
//! use std::{collections::HashMap, sync::Arc, time::Duration};
//!
//! let clock = ManualClock::new();
//! let tracker = Tracker::with_clock(Arc::new(clock.clone()));
//! // Any `Send + Sync` value, weak-referenceable or not: here a plain map.
//! let index: HashMap<u32, String> = HashMap::from([(1, "Hello".into())]);
//! let spec = ResourceSpec::new("subs-en", ResourceKind::SubtitleIndex, 4096).ttl(Duration::from_secs(60));
//! let held = tracker.register(spec, index)?;
//!
//! clock.advance(Duration::from_secs(61));
//! assert_eq!(tracker.expired().len(), 1);
//! let again = tracker.get::<HashMap<u32, String>>("subs-en")?.expect("still registered");
//! assert!(Arc::ptr_eq(&held, &again));
//! assert_eq!(tracker.totals().bytes, 4096);
//! # Ok::<(), memwarden_tracker::TrackerError>(())
//! ```
//!
//! The key design decision: **the tracker records, it never releases.** Values are held
//! as `Arc<T>`; callers get clones. When the reaper releases a resource it
//! [`detaches`](release::detach) the registry's reference, so a caller still holding a
//! clone keeps a valid value and the memory goes when the last clone drops. The tracker
//! refuses to detach a pinned resource or one that a live resource depends on, which makes
//! "release never breaks a dependent" an invariant of the registry rather than a hope.
//!
//! Reads are cheap: `get`/`touch` take a shard's read lock, update two atomics and queue
//! the access in the shard's buffer, so many readers do not serialise on one lock.
//!
//! The tracker also keeps the **release order** a planner walks ([`Tracker::select`],
//! [`Selection`]): per tier (one kind at one priority) a W-TinyLFU order of window,
//! candidates, probation and protected LRUs ([`Segment`]), a frequency sketch that ages,
//! a window share that adapts to the workload, and a deadline set for TTL and idle limits.
//! Every registration, access and release moves it in O(1); finding each victim is O(1).
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod candidate;
mod error;
mod order;
mod registry;
pub mod release;
mod selection;
mod sketch;
mod spec;

pub use candidate::{Candidate, CandidateSet, Totals};
pub use error::TrackerError;
pub use order::Segment;
pub use registry::{Detached, Tracker, TrackerStats};
pub use selection::{Pick, Placement, Selection};
pub use spec::{KindPolicy, ResourceSpec, Shrink};
