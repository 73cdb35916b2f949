//! [`LockError`]: every way an acquire, an upgrade or a fenced access can fail.

use std::time::Duration;

use serde::Serialize;

use crate::Mode;

/// One step of a deadlock cycle: a thread and the name it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CycleStep {
    /// The waiting thread's name (or `thread-<id>` if it has none).
    pub thread: String,
    /// The lock name it waits for.
    pub waits_for: String,
    /// The mode it asked for.
    pub mode: Mode,
}

/// Why a lock operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock was not granted within the timeout.
    #[error("timed out after {waited:?} waiting for a {mode} lock on {name:?}")]
    Timeout {
        /// The lock name.
        name: String,
        /// The mode asked for.
        mode: Mode,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The calling thread already holds this name in a way that conflicts with the request.
    #[error("thread already holds a {held} lock on {name:?}; a {requested} lock would deadlock")]
    WouldDeadlock {
        /// The lock name.
        name: String,
        /// The mode already held.
        held: Mode,
        /// The mode asked for.
        requested: Mode,
    },
    /// The waiter is on a cycle of threads waiting for each other.
    #[error("deadlock: {}", describe(cycle))]
    Deadlock {
        /// The cycle, starting with the thread that detected it.
        cycle: Vec<CycleStep>,
    },
    /// Another reader is already waiting to upgrade this name.
    #[error("another reader is already upgrading {name:?}")]
    UpgradeConflict {
        /// The lock name.
        name: String,
    },
    /// The guard's lease ran out; its token no longer validates.
    #[error("the lease on {name:?} (token {token}) has expired")]
    LeaseExpired {
        /// The lock name.
        name: String,
        /// The stale token.
        token: u64,
    },
    /// A release through the manager named a hold the calling thread does not own.
    #[error("the calling thread holds no lock on {name:?} with token {token}")]
    NotOwner {
        /// The lock name.
        name: String,
        /// The token given.
        token: u64,
    },
    /// A fenced value was accessed with a guard for another name.
    #[error("a guard for {guard:?} cannot reach data fenced by {fenced:?}")]
    WrongName {
        /// The fenced value's lock name.
        fenced: String,
        /// The guard's lock name.
        guard: String,
    },
    /// A name ran out of fencing tokens (2^48 grants) or of room for shared holds
    /// (8191 at once).
    #[error("{name:?} has no more {what}")]
    Exhausted {
        /// The lock name.
        name: String,
        /// What ran out.
        what: &'static str,
    },
    /// A lock name was empty.
    #[error("a lock name must not be empty")]
    EmptyName,
    /// A timeout or a configured duration was zero.
    #[error("{what} must be more than zero")]
    ZeroDuration {
        /// Which duration.
        what: &'static str,
    },
    /// A configured duration was beyond its limit.
    #[error("{what} must be at most {limit:?}")]
    TooLong {
        /// Which duration.
        what: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// An acquire timeout was longer than the lease, so the lock could expire before use.
    #[error("a timeout of {timeout:?} on {name:?} is longer than the lease of {lease:?}")]
    TimeoutExceedsLease {
        /// The lock name.
        name: String,
        /// The timeout given.
        timeout: Duration,
        /// The manager's lease.
        lease: Duration,
    },
}

fn describe(cycle: &[CycleStep]) -> String {
    let mut parts: Vec<String> = cycle
        .iter()
        .map(|s| {
            format!(
                "{} waits for {} lock on {:?}",
                s.thread, s.mode, s.waits_for
            )
        })
        .collect();
    if let Some(first) = cycle.first() {
        parts.push(format!("held by {}", first.thread));
    }
    parts.join(" -> ")
}
