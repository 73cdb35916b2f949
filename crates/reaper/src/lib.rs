//! Release execution for memwarden: the only place where resources are released.
//!
//! A [`Reaper`] takes a [`ReleasePlan`](memwarden_prioritizer::ReleasePlan) and releases
//! its victims front to back through per-kind [`ReleaseHandler`]s:
//!
//! | kind | built-in handling |
//! |---|---|
//! | `model_shards` | drop, then the device-cache-clear hook ([`Hooks::after_drop`]) |
//! | `model_weights_cache` | the offload hook ([`Hooks::before_drop`]), then drop |
//! | `render_cache` | the persist hook ([`Hooks::before_drop`]) if set, then drop |
//! | `temp_buffers` | immediate drop |
//! | `audio_cache`, `subtitle_index` | incremental: the configured fraction via [`Shrink`](memwarden_tracker::Shrink), else drop |
//!
//! Before any resource is released in full, the [`BeforeRelease`] hook set with
//! [`Reaper::set_before_release`] gets its value: how a snapshot is saved (the runtime
//! sets a hook that writes the snapshot-on-release kinds to a snapshot store). When the
//! hook fails the resource is kept and the victim reported as
//! [`SkipReason::SnapshotFailed`]. The reaper knows nothing of snapshot stores or codecs.
//!
//! ```
//! use memwarden_core::ResourceKind;
//! use memwarden_prioritizer::{plan, Policy, Request, Urgency};
//! use memwarden_reaper::Reaper;
//! use memwarden_tracker::{ResourceSpec, Tracker};
//! use std::sync::Arc;
//!
//! let tracker = Arc::new(Tracker::new());
//! let frame = tracker.register(ResourceSpec::new("frame-9", ResourceKind::RenderCache, 1 << 20), vec![0u8; 1 << 20])?;
//! let reaper = Reaper::new(Arc::clone(&tracker));
//!
//! let plan = plan(&tracker.candidates(), &Policy::default(), &Request::new(Urgency::Medium, 1));
//! let report = reaper.execute(&plan);
//! assert_eq!(report.bytes_freed, 1 << 20);
//! assert!(!tracker.contains("frame-9"));
//! assert_eq!(frame.len(), 1 << 20, "a clone still held stays valid");
//! # Ok::<(), memwarden_tracker::TrackerError>(())
//! ```
//!
//! The key design decision: **a handler cannot stop the memory from going.** The reaper
//! detaches the resource from the tracker first (which refuses pinned resources and
//! resources others depend on), then runs the handler's work on a borrowed view inside
//! `catch_unwind`, then drops the registry's reference itself. A handler that errors or
//! panics is counted, logged and reported, and the plain drop still runs; the reaper keeps
//! working. Re-checks happen at the moment of release: a victim pinned, locked
//! ([`ReleaseGuard`]) or gone since the plan was made is skipped and reported.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod handler;
mod reaper;
mod report;

pub use handler::{BeforeRelease, DropHandler, HandlerError, Hooks, ReleaseGuard, ReleaseHandler};
pub use reaper::{ObserverId, Reaper};
pub use report::{KindStats, ReaperStats, ReleaseReport, Released, SkipReason, Skipped};
