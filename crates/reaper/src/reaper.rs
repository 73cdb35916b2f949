//! [`Reaper`]: executes release plans.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use memwarden_core::{ResourceId, ResourceKind};
use memwarden_prioritizer::{ReleasePlan, Urgency};
use memwarden_tracker::{Tracker, TrackerError};
use parking_lot::{Mutex, RwLock};

use crate::{
    BeforeRelease, DropHandler, HandlerError, KindStats, ReaperStats, ReleaseGuard, ReleaseHandler,
    ReleaseReport, Released, SkipReason, Skipped,
};

/// Releases resources from a [`Tracker`] through per-kind and per-resource handlers.
pub struct Reaper {
    tracker: Arc<Tracker>,
    handlers: RwLock<HashMap<ResourceKind, Arc<dyn ReleaseHandler>>>,
    resource_handlers: RwLock<HashMap<ResourceId, Arc<dyn ReleaseHandler>>>,
    incremental: RwLock<HashMap<ResourceKind, f64>>,
    guards: RwLock<Vec<Arc<dyn ReleaseGuard>>>,
    before_release: RwLock<Option<Arc<dyn BeforeRelease>>>,
    stats: Mutex<BTreeMap<ResourceKind, KindStats>>,
    observers: RwLock<Vec<(ObserverId, Observer)>>,
    next_observer: std::sync::atomic::AtomicU64,
    /// Ids being released now, by any thread: a second release of the same id waits for
    /// nothing and is skipped, so two releases never interleave their snapshot and detach.
    in_release: Mutex<HashSet<ResourceId>>,
}

/// Called with the report of every execution that released something.
type Observer = Arc<dyn Fn(&ReleaseReport) + Send + Sync>;

/// Names an observer added with [`Reaper::on_released`], to remove it with
/// [`Reaper::remove_observer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObserverId(u64);

/// Marks an id as being released for as long as it lives.
struct InRelease<'a> {
    set: &'a Mutex<HashSet<ResourceId>>,
    id: &'a ResourceId,
}

impl Drop for InRelease<'_> {
    fn drop(&mut self) {
        self.set.lock().remove(self.id);
    }
}

impl fmt::Debug for Reaper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reaper")
            .field("handlers", &self.handlers.read().keys().collect::<Vec<_>>())
            .field("incremental", &*self.incremental.read())
            .field("guards", &self.guards.read().len())
            .field("before_release", &self.before_release.read().is_some())
            .finish_non_exhaustive()
    }
}

/// The fraction of a `subtitle_index` released per partial release, until configured.
const DEFAULT_SUBTITLE_FRACTION: f64 = 0.5;

impl Reaper {
    /// A reaper over `tracker` with the built-in handlers: plain drops (set hooks with
    /// [`Reaper::set_handler`]) and incremental release of half a `subtitle_index`.
    pub fn new(tracker: Arc<Tracker>) -> Self {
        Reaper {
            tracker,
            handlers: RwLock::new(HashMap::new()),
            resource_handlers: RwLock::new(HashMap::new()),
            incremental: RwLock::new(HashMap::from([(
                ResourceKind::SubtitleIndex,
                DEFAULT_SUBTITLE_FRACTION,
            )])),
            guards: RwLock::new(Vec::new()),
            before_release: RwLock::new(None),
            stats: Mutex::new(BTreeMap::new()),
            observers: RwLock::new(Vec::new()),
            next_observer: std::sync::atomic::AtomicU64::new(0),
            in_release: Mutex::new(HashSet::new()),
        }
    }

    /// The tracker released from.
    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    /// Sets the handler for every resource of `kind` (without a handler of its own).
    pub fn set_handler(&self, kind: ResourceKind, handler: impl ReleaseHandler + 'static) {
        self.handlers.write().insert(kind, Arc::new(handler));
    }

    /// Sets the handler for one resource, taking precedence over its kind's.
    pub fn set_resource_handler(
        &self,
        id: impl Into<ResourceId>,
        handler: impl ReleaseHandler + 'static,
    ) {
        self.resource_handlers
            .write()
            .insert(id.into(), Arc::new(handler));
    }

    /// Sets the fraction of a shrinkable resource of `kind` released per partial release
    /// (below [`Urgency::Critical`]); `0` releases such resources in full. Clamped to `0..=1`.
    pub fn set_incremental_fraction(&self, kind: ResourceKind, fraction: f64) {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self.incremental.write().insert(kind, fraction);
    }

    /// Calls `hook` before every full release (a snapshot, say), replacing the hook set
    /// before, if any: one hook, so that what a released resource reports as saved
    /// ([`Released::snapshot_bytes`]) comes from one place. To run several, set one hook
    /// that calls them.
    ///
    /// If the hook fails, the resource is not released and the victim is reported as
    /// [`SkipReason::SnapshotFailed`], except at [`Urgency::Critical`]; see
    /// [`BeforeRelease`].
    pub fn set_before_release(&self, hook: Arc<dyn BeforeRelease>) {
        *self.before_release.write() = Some(hook);
    }

    /// Adds a guard consulted before every release (a lock manager, say).
    pub fn add_guard(&self, guard: Arc<dyn ReleaseGuard>) {
        self.guards.write().push(guard);
    }

    /// Calls `observer` after every [`execute`](Self::execute), [`release`](Self::release)
    /// or [`release_batch`](Self::release_batch) that released anything, with its report:
    /// how a defragmenter hears of released bytes. Observers run on the releasing thread,
    /// outside the reaper's locks; one that releases through this reaper again is heard
    /// of again. Remove it with [`remove_observer`](Self::remove_observer) when its owner
    /// goes (a governor does on shutdown).
    pub fn on_released(
        &self,
        observer: impl Fn(&ReleaseReport) + Send + Sync + 'static,
    ) -> ObserverId {
        let id = ObserverId(
            self.next_observer
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        self.observers.write().push((id, Arc::new(observer)));
        id
    }

    /// Removes an observer [`on_released`](Self::on_released) added; `false` if it was
    /// removed before.
    pub fn remove_observer(&self, id: ObserverId) -> bool {
        let mut observers = self.observers.write();
        let before = observers.len();
        observers.retain(|(i, _)| *i != id);
        observers.len() != before
    }

    /// How many observers are set.
    pub fn observer_count(&self) -> usize {
        self.observers.read().len()
    }

    fn notify(&self, report: &ReleaseReport) {
        if report.released.is_empty() {
            return;
        }
        let observers: Vec<Observer> = self
            .observers
            .read()
            .iter()
            .map(|(_, o)| Arc::clone(o))
            .collect();
        for observer in observers {
            observer(report);
        }
    }

    /// Releases a plan's victims front to back. Below [`Urgency::Critical`], shrinkable
    /// resources of incremental kinds are released in part.
    pub fn execute(&self, plan: &ReleasePlan) -> ReleaseReport {
        let mut report = ReleaseReport::default();
        let critical = plan.urgency == Urgency::Critical;
        for victim in &plan.victims {
            self.release_one(
                &victim.id,
                Some(&victim.kind),
                !critical,
                critical,
                &mut report,
            );
        }
        if !report.released.is_empty() || !report.skipped.is_empty() {
            log::debug!(
                "released {} resources ({} bytes), skipped {}, {} handler failures",
                report.released.len(),
                report.bytes_freed,
                report.skipped.len(),
                report.failures
            );
        }
        self.notify(&report);
        report
    }

    /// Releases one resource in full.
    pub fn release(&self, id: &str) -> ReleaseReport {
        self.release_batch([id])
    }

    /// Releases several resources in full, in the order given.
    pub fn release_batch<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> ReleaseReport {
        let mut report = ReleaseReport::default();
        for id in ids {
            self.release_one(&ResourceId::from(id), None, false, false, &mut report);
        }
        self.notify(&report);
        report
    }

    /// Counters per kind and in total.
    pub fn stats(&self) -> ReaperStats {
        let kinds = self.stats.lock().clone();
        let mut total = KindStats::default();
        for stats in kinds.values() {
            total.add(stats);
        }
        ReaperStats { kinds, total }
    }

    fn record(&self, kind: &ResourceKind, update: impl FnOnce(&mut KindStats)) {
        update(self.stats.lock().entry(kind.clone()).or_default());
    }

    fn skip(
        &self,
        id: &ResourceId,
        kind: Option<&ResourceKind>,
        reason: SkipReason,
        report: &mut ReleaseReport,
    ) {
        // A release by id does not know the kind; a resource that is gone has none.
        let looked_up = kind
            .is_none()
            .then(|| self.tracker.info(id.as_str()))
            .flatten();
        if let Some(kind) = kind.or(looked_up.as_ref().map(|c| &c.kind)) {
            self.record(kind, |s| s.skipped += 1);
        }
        log::debug!("not releasing {id}: {reason:?}");
        report.skipped.push(Skipped {
            id: id.clone(),
            reason,
        });
    }

    fn release_one(
        &self,
        id: &ResourceId,
        kind: Option<&ResourceKind>,
        allow_partial: bool,
        critical: bool,
        report: &mut ReleaseReport,
    ) {
        let start = Instant::now();
        if !self.in_release.lock().insert(id.clone()) {
            return self.skip(id, kind, SkipReason::InRelease, report);
        }
        let _in_release = InRelease {
            set: &self.in_release,
            id,
        };
        if let Some(holder) = self.protected(id) {
            return self.skip(id, kind, SkipReason::Locked { holder }, report);
        }
        // A plan names a resource by id; if the id now holds another kind (released and
        // registered again meanwhile), it is not the planned victim.
        if let Some(planned) = kind
            && self
                .tracker
                .info(id.as_str())
                .is_some_and(|c| c.kind != *planned)
        {
            return self.skip(id, kind, SkipReason::Gone, report);
        }
        if allow_partial && self.try_partial(id, kind, start, report) {
            return;
        }
        let hook = self.before_release.read().clone();
        let saved = match self.snapshot(hook.as_deref(), id, kind) {
            Ok(saved) => saved,
            // Above the budget the memory matters more than the snapshot.
            Err(SkipReason::SnapshotFailed { error }) if critical => {
                log::warn!("releasing {id} without a snapshot at critical urgency: {error}");
                Saved {
                    kind: self.tracker.info(id.as_str()).map(|c| c.kind),
                    ..Saved::default()
                }
            }
            Err(reason) => return self.skip(id, kind, reason, report),
        };
        let discard = || {
            if let (Some(hook), Some(kind)) = (&hook, &saved.kind)
                && let Err(e) = contain(|| {
                    hook.discard(id, kind);
                    Ok(())
                })
            {
                log::warn!("discarding the snapshot of {id} failed: {e}");
            }
        };
        let snapshot = saved.bytes;
        if snapshot.is_none() && saved.kind.is_some() {
            // Going without a copy: an older copy must not come back in its place, not
            // even in the moment between the detach and now (a restore would register
            // it as current). Dropped first; if the release then does not happen, the
            // copy was out of date beside the live value anyway.
            discard();
        }
        // The snapshot took time (an fsync), and a lock may be taken at any moment: the
        // guards check again and keep new holds off until the detach is done.
        let mut detached = None;
        let guards = self.guards.read().clone();
        let holder = hold_all(&guards, id, &mut || {
            detached = Some(match &saved.value {
                // Only the value the snapshot was taken of.
                Some(value) => {
                    memwarden_tracker::release::detach_if(&self.tracker, id.as_str(), value)
                }
                None => memwarden_tracker::release::detach(&self.tracker, id.as_str()),
            });
        });
        let detached = match (holder, detached) {
            (Some(holder), _) => {
                return self.skip(id, kind, SkipReason::Locked { holder }, report);
            }
            // A guard that neither protects the resource nor runs the release.
            (None, None) => {
                let holder = "a guard that did not run the release".to_owned();
                return self.skip(id, kind, SkipReason::Locked { holder }, report);
            }
            (None, Some(Ok(detached))) => detached,
            (None, Some(Err(TrackerError::Pinned { .. }))) => {
                return self.skip(id, kind, SkipReason::Pinned, report);
            }
            (None, Some(Err(TrackerError::HasDependents { dependents, .. }))) => {
                return self.skip(id, kind, SkipReason::NeededBy { dependents }, report);
            }
            (None, Some(Err(TrackerError::Replaced { .. }))) => {
                // The copy just saved is of a value that is gone: never restore it in
                // place of the new one.
                if snapshot.is_some() {
                    discard();
                }
                return self.skip(id, kind, SkipReason::Replaced, report);
            }
            (None, Some(Err(_))) => return self.skip(id, kind, SkipReason::Gone, report),
        };
        let handler = self.handler_for(id, &detached.kind);
        let mut error = contain(|| handler.before_drop(&detached)).err();
        let (id, kind, bytes) = (detached.id.clone(), detached.kind.clone(), detached.bytes);
        drop(detached);
        if let Err(e) = contain(|| handler.after_drop(&id, &kind)) {
            error.get_or_insert(e);
        }
        let elapsed = start.elapsed();
        if let Some(e) = &error {
            log::warn!(
                "release handler for {id} ({kind}) failed, the resource was dropped anyway: {e}"
            );
        }
        let failed = u64::from(error.is_some());
        self.record(&kind, |s| {
            s.releases += 1;
            s.bytes_freed += bytes;
            s.failures += failed;
            s.time_spent += elapsed;
            if let Some(written) = snapshot {
                s.snapshots += 1;
                s.snapshot_bytes += written;
            }
        });
        report.bytes_freed += bytes;
        report.failures += failed;
        report.released.push(Released {
            id,
            kind,
            bytes_freed: bytes,
            partial: false,
            snapshot_bytes: snapshot,
            handler_error: error,
            elapsed,
        });
    }

    /// Runs the before-release hook on the value of `id`: what it saved, and the value it
    /// saw (to detach only that one), or why the resource must not be released.
    fn snapshot(
        &self,
        hook: Option<&dyn BeforeRelease>,
        id: &ResourceId,
        kind: Option<&ResourceKind>,
    ) -> Result<Saved, SkipReason> {
        let Some(hook) = hook else {
            return Ok(Saved::default());
        };
        // With a hook, only the value looked at here may be detached (`detach_if`): a
        // resource absent now may be registered anew before the detach, and detaching
        // that one would release it with no copy while an older copy stays restorable.
        let Some(info) = self.tracker.info(id.as_str()) else {
            return Err(SkipReason::Gone);
        };
        if kind.is_some_and(|k| *k != info.kind) {
            return Err(SkipReason::Gone);
        }
        if info.pinned {
            return Err(SkipReason::Pinned);
        }
        let Some(value) = self.tracker.peek_any(id.as_str()) else {
            return Err(SkipReason::Gone);
        };
        let bytes = contain(|| hook.before_release(id, &info.kind, info.bytes, &*value)).map_err(
            |error| {
                log::warn!("the snapshot of {id} ({}) failed: {error}", info.kind);
                self.record(&info.kind, |s| s.snapshot_failures += 1);
                SkipReason::SnapshotFailed { error }
            },
        )?;
        Ok(Saved {
            bytes,
            value: Some(value),
            kind: Some(info.kind),
        })
    }

    fn protected(&self, id: &ResourceId) -> Option<String> {
        self.guards
            .read()
            .iter()
            .find_map(|guard| guard.protects(id))
    }

    /// Releases part of a shrinkable resource of an incremental kind; `false` if that does
    /// not apply or freed nothing (the caller then releases it in full).
    fn try_partial(
        &self,
        id: &ResourceId,
        kind: Option<&ResourceKind>,
        start: Instant,
        report: &mut ReleaseReport,
    ) -> bool {
        let Some(info) = self.tracker.info(id.as_str()) else {
            return false;
        };
        if kind.is_some_and(|k| *k != info.kind) || info.pinned {
            return false;
        }
        let fraction = self
            .incremental
            .read()
            .get(&info.kind)
            .copied()
            .unwrap_or(0.0);
        if fraction <= 0.0 || fraction >= 1.0 {
            return false;
        }
        let Some(shrink) = self.tracker.shrinker(id.as_str()) else {
            return false;
        };
        let freed = match contain(|| Ok(shrink.shrink(fraction))) {
            Ok(freed) => freed.min(info.bytes),
            Err(e) => {
                log::warn!(
                    "partial release of {id} ({}) failed, releasing it in full: {e}",
                    info.kind
                );
                self.record(&info.kind, |s| s.failures += 1);
                report.failures += 1;
                return false;
            }
        };
        if freed == 0 || self.tracker.release_bytes(id.as_str(), freed).is_err() {
            return false;
        }
        let elapsed = start.elapsed();
        self.record(&info.kind, |s| {
            s.partial_releases += 1;
            s.bytes_freed += freed;
            s.time_spent += elapsed;
        });
        report.bytes_freed += freed;
        report.released.push(Released {
            id: id.clone(),
            kind: info.kind,
            bytes_freed: freed,
            partial: true,
            snapshot_bytes: None,
            handler_error: None,
            elapsed,
        });
        true
    }

    fn handler_for(&self, id: &ResourceId, kind: &ResourceKind) -> Arc<dyn ReleaseHandler> {
        if let Some(handler) = self.resource_handlers.read().get(id) {
            return Arc::clone(handler);
        }
        self.handlers
            .read()
            .get(kind)
            .cloned()
            .unwrap_or_else(|| Arc::new(DropHandler))
    }
}

/// What the before-release hook did for one resource.
#[derive(Default)]
struct Saved {
    /// The bytes it wrote, if it wrote a copy.
    bytes: Option<u64>,
    /// The value it was given, when it ran: the one value that may then be detached.
    value: Option<Arc<dyn Any + Send + Sync>>,
    /// The kind of the value it was given (or, when it failed at critical urgency, of
    /// the resource then); `None` when it did not run.
    kind: Option<ResourceKind>,
}

/// Runs `release` under every guard's [`ReleaseGuard::hold_off`], the first outermost;
/// the holder of the first guard that protects the resource, if one does (and then
/// `release` has not run).
fn hold_all(
    guards: &[Arc<dyn ReleaseGuard>],
    id: &ResourceId,
    release: &mut dyn FnMut(),
) -> Option<String> {
    match guards.split_first() {
        None => {
            release();
            None
        }
        Some((first, rest)) => {
            let mut inner = None;
            let outer = first.hold_off(id, &mut || inner = hold_all(rest, id, &mut *release));
            outer.or(inner)
        }
    }
}

/// Runs `f`, turning a panic into an error carrying the panic message.
fn contain<T>(f: impl FnOnce() -> Result<T, HandlerError>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(payload) => Err(format!("panicked: {}", panic_message(payload.as_ref()))),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string payload")
}
