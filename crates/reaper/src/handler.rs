//! How one resource is released: [`ReleaseHandler`]s, [`Hooks`], [`ReleaseGuard`]s and the [`BeforeRelease`] hook.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use memwarden_core::{ResourceId, ResourceKind};
use memwarden_tracker::Detached;

/// The error a handler or hook reports; it is logged and counted, never fatal.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Kind-specific work around the release of one resource.
///
/// The reaper calls [`before_drop`](ReleaseHandler::before_drop) with the detached
/// resource, drops the registry's reference, then calls
/// [`after_drop`](ReleaseHandler::after_drop). Both run inside `catch_unwind`; whatever
/// they do, the drop happens.
pub trait ReleaseHandler: Send + Sync {
    /// Work that needs the value: persist it, offload it, snapshot it.
    fn before_drop(&self, _resource: &Detached) -> Result<(), HandlerError> {
        Ok(())
    }
    /// Work after the value is gone: clear a device cache, notify someone.
    fn after_drop(&self, _id: &ResourceId, _kind: &ResourceKind) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// The plain drop: no work before or after.
#[derive(Debug, Clone, Copy, Default)]
pub struct DropHandler;

impl ReleaseHandler for DropHandler {}

type BeforeHook = dyn Fn(&Detached) -> Result<(), HandlerError> + Send + Sync;
type AfterHook = dyn Fn(&ResourceId, &ResourceKind) -> Result<(), HandlerError> + Send + Sync;

/// A handler made of closures: the built-in kinds' hooks (persist frames, offload weights,
/// clear a device cache) are set this way.
///
/// ```
/// use memwarden_core::ResourceKind;
/// use memwarden_reaper::{Hooks, Reaper};
/// # let tracker = std::sync::Arc::new(memwarden_tracker::Tracker::new());
/// let reaper = Reaper::new(tracker);
/// reaper.set_handler(
///     ResourceKind::ModelShards,
///     Hooks::new().after_drop(|id, _| {
///         log::info!("clearing the device cache after releasing {id}");
///         Ok(())
///     }),
/// );
/// ```
#[derive(Clone, Default)]
pub struct Hooks {
    before: Option<Arc<BeforeHook>>,
    after: Option<Arc<AfterHook>>,
}

impl Hooks {
    /// No hooks: a plain drop.
    pub fn new() -> Self {
        Self::default()
    }
    /// Runs `f` with the value before it is dropped (persist, offload).
    pub fn before_drop(
        mut self,
        f: impl Fn(&Detached) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.before = Some(Arc::new(f));
        self
    }
    /// Runs `f` after the value is dropped (device cache clear).
    pub fn after_drop(
        mut self,
        f: impl Fn(&ResourceId, &ResourceKind) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.after = Some(Arc::new(f));
        self
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("before_drop", &self.before.is_some())
            .field("after_drop", &self.after.is_some())
            .finish()
    }
}

impl ReleaseHandler for Hooks {
    fn before_drop(&self, resource: &Detached) -> Result<(), HandlerError> {
        self.before.as_ref().map_or(Ok(()), |f| f(resource))
    }
    fn after_drop(&self, id: &ResourceId, kind: &ResourceKind) -> Result<(), HandlerError> {
        self.after.as_ref().map_or(Ok(()), |f| f(id, kind))
    }
}

/// Something that may forbid releasing a resource right now (a lock manager).
pub trait ReleaseGuard: Send + Sync {
    /// `Some(holder)` if `id` must not be released now, describing who holds it.
    fn protects(&self, id: &ResourceId) -> Option<String>;

    /// Runs `release` (which detaches `id` from the tracker) at a moment when `id` is not
    /// protected, keeping any new hold on `id` from starting until it returns; or, if `id`
    /// is protected now, returns who holds it without running `release`.
    ///
    /// The reaper calls this for the last check, so that "a protected resource is never
    /// released" holds with no window between the check and the detach. The default
    /// checks [`protects`](Self::protects) and then runs `release`, which leaves such a
    /// window: a guard whose holds can start at any moment (a lock manager) overrides it.
    /// `release` does not call back into the guard.
    fn hold_off(&self, id: &ResourceId, release: &mut dyn FnMut()) -> Option<String> {
        if let Some(holder) = self.protects(id) {
            return Some(holder);
        }
        release();
        None
    }
}

/// Work that must succeed before a resource is released in full: saving a copy of its
/// value (a snapshot) so that it can be restored instead of recomputed.
///
/// Unlike a [`ReleaseHandler`], this hook can keep a resource: the reaper calls it with
/// the value while the resource is still registered, before it is detached, and when it
/// fails the resource is not released (except at [`Urgency::Critical`], where the memory
/// matters more than the copy) and the victim is reported as
/// [`SkipReason::SnapshotFailed`]. A panic counts as a failure. Partial releases do not
/// call it.
///
/// [`Urgency::Critical`]: memwarden_prioritizer::Urgency::Critical
/// [`SkipReason::SnapshotFailed`]: crate::SkipReason::SnapshotFailed
pub trait BeforeRelease: Send + Sync {
    /// Saves what must outlive the release of `id`, of `kind`, holding `bytes` of memory
    /// (as tracked), whose value is `value`.
    ///
    /// `Ok(Some(saved))`: a copy of `saved` bytes was written. `Ok(None)`: there was
    /// nothing to save for this value (its kind or type is not saved); the resource is
    /// released. `Err(why)`: saving failed; the resource is kept.
    fn before_release(
        &self,
        id: &ResourceId,
        kind: &ResourceKind,
        bytes: u64,
        value: &(dyn Any + Send + Sync),
    ) -> Result<Option<u64>, HandlerError>;

    /// Forgets what was saved for `id`: the reaper calls this when the value saved is not
    /// the one that goes (the resource was replaced meanwhile), and when `id` is released
    /// without a copy, so that an older copy is never restored in place of a newer value.
    /// The default does nothing.
    fn discard(&self, _id: &ResourceId, _kind: &ResourceKind) {}
}
