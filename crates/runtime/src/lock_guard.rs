//! [`LockGuard`]: the reaper never releases a resource whose name is locked.

use std::sync::Arc;

use memwarden_core::ResourceId;
use memwarden_lock::LockManager;
use memwarden_reaper::ReleaseGuard;

/// Protects every resource whose id is read- or write-locked in a [`LockManager`].
///
/// Add it to a reaper with [`Reaper::add_guard`](memwarden_reaper::Reaper::add_guard), or
/// give the manager to [`Lifecycle::set_locks`](crate::Lifecycle::set_locks), which also
/// keeps locked resources out of its plans.
///
/// The reaper consults the guard before a release and again right before detaching
/// (after any snapshot write). A lock taken in the microseconds between that last check
/// and the detach is not seen; the value stays valid for its holder either way (it is an
/// `Arc`), only the registry's reference goes.
#[derive(Debug, Clone)]
pub struct LockGuard(pub Arc<LockManager>);

impl ReleaseGuard for LockGuard {
    fn protects(&self, id: &ResourceId) -> Option<String> {
        self.0
            .is_locked(id.as_str())
            .map(|mode| format!("{mode}-locked"))
    }
}
