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
/// The reaper consults the guard before a release and, after any snapshot write, detaches
/// the resource inside [`LockManager::while_unlocked`]: a lock on the id is either held
/// before that moment (and the resource is kept) or granted after the detach (and its
/// holder finds the resource gone). A locked resource is never released.
#[derive(Debug, Clone)]
pub struct LockGuard(pub Arc<LockManager>);

impl ReleaseGuard for LockGuard {
    fn protects(&self, id: &ResourceId) -> Option<String> {
        self.0
            .is_locked(id.as_str())
            .map(|mode| format!("{mode}-locked"))
    }

    fn hold_off(&self, id: &ResourceId, release: &mut dyn FnMut()) -> Option<String> {
        self.0
            .while_unlocked(id.as_str(), release)
            .err()
            .map(|mode| format!("{mode}-locked"))
    }
}
