//! The reaper's door into the registry: [`detach`] takes a resource out of a
//! [`Tracker`] and hands it over for release.
//!
//! memwarden's first invariant is that **only the reaper releases**: the tracker records,
//! the prioritizer ranks, the reaper acts, and it is the reaper that runs the kind's
//! handler, takes a snapshot first and skips what a lock holds. An application that
//! detached a resource itself would skip all of that. Rust has no friend crates, so this
//! door must be public for the reaper (another crate) to use; it is kept off
//! [`Tracker`]'s methods and in a module of its own so that a call reads
//! `memwarden_tracker::release::detach(&tracker, id)`, which no one writes by accident
//! and every reviewer notices. Applications release through the reaper
//! (`memwarden_reaper::Reaper`), never through this module.

use std::any::Any;
use std::sync::Arc;

use crate::{Detached, Tracker, TrackerError};

/// Removes `id` from `tracker` and hands it over for release. For the reaper only; see
/// the [module docs](self).
///
/// # Errors
///
/// [`TrackerError::NotFound`] when `id` is not registered, [`TrackerError::Pinned`] for
/// a pinned resource, and [`TrackerError::HasDependents`] while live resources depend on
/// it (release those first).
pub fn detach(tracker: &Tracker, id: &str) -> Result<Detached, TrackerError> {
    tracker.detach_entry(id, None)
}

/// [`detach`], only if `id` still holds `expected` (the same allocation, compared by
/// address): the value the caller looked at, say to save a snapshot of it. For the reaper
/// only; see the [module docs](self).
///
/// # Errors
///
/// Those of [`detach`], and [`TrackerError::Replaced`] when `id` now holds another value
/// (it was released and registered again meanwhile); that value is left registered.
pub fn detach_if(
    tracker: &Tracker,
    id: &str,
    expected: &Arc<dyn Any + Send + Sync>,
) -> Result<Detached, TrackerError> {
    tracker.detach_entry(id, Some(expected))
}
