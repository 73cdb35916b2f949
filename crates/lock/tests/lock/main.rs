//! Integration tests of the lock manager.

mod behaviour;
mod deadlock;
mod stress;

use std::time::Duration;

use memwarden_lock::{LockConfig, LockManager};

/// A manager without leases and with a short deadlock check delay.
pub(crate) fn manager() -> LockManager {
    LockManager::with_config(LockConfig {
        check_delay: Duration::from_millis(50),
        ..LockConfig::without_leases()
    })
    .expect("valid config")
}
