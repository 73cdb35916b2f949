//! Named read-write locks for memwarden, with leases, fencing tokens and deadlock detection.
//!
//! A [`LockManager`] hands out shared ([`ReadGuard`]) and exclusive ([`WriteGuard`]) holds
//! on names (or [`ResourceId`](memwarden_core::ResourceId)s): writer preference by default
//! (a waiting writer holds back new readers) or first come, first served
//! ([`LockConfig::fair`]); timeouts; upgrade and downgrade; re-entry checks; deadlock
//! detection; cumulative statistics ([`LockManager::stats`]) and introspection of who
//! holds and waits for what ([`LockManager::inspect`]).
//!
//! ```
//! use memwarden_lock::{Held, LockConfig, LockManager};
//!
//! let locks = LockManager::with_config(LockConfig::default())?;
//! let timeline = locks.fenced("timeline", vec![0u32; 4])?;
//! {
//!     let a = locks.read("timeline")?;
//!     let b = locks.read("timeline")?; // readers share
//!     assert_eq!(timeline.with(&a, |t| t.len())?, 4);
//!     drop(b);
//!     let w = a.upgrade().map_err(|failed| failed.error)?; // the last reader upgrades
//!     timeline.with_mut(&w, |t| t[0] = 7)?;
//!     let r = w.downgrade()?; // and lets readers back in, no writer in between
//!     assert!(r.is_valid());
//! }
//! assert_eq!(locks.stats().grants, 4);
//! # Ok::<(), memwarden_lock::LockError>(())
//! ```
//!
//! # Why leases, not revocation
//!
//! The seed design released a lock "automatically" when it was held longer than a timeout.
//! In Rust a guard cannot be taken away from a running holder: the holder may be in the
//! middle of reading or writing what the lock protects, and handing the lock to someone
//! else then would alias that memory, which is undefined behaviour. So automatic release
//! is a **lease**. Every grant carries a deadline and a **fencing token**, a per-name
//! counter that grows on every grant and every expiry (a name that left the table and
//! comes back starts above every token handed out before). When a hold outlives its lease the
//! monitor thread marks it expired, logs it with the holder's thread and age, wakes the
//! waiters and lets the next holder in with a higher token. The stale holder keeps running
//! undisturbed and its guard still drops normally (doing nothing), but every check of its
//! token fails with [`LockError::LeaseExpired`]: [`Held::is_valid`], [`Held::check`], and
//! every access to [`Fenced`] data, which is reached only through a token check and sits
//! behind an internal lock so that a stale reader and a new writer never touch it at once.
//! The stale holder gets an error, never aliased memory. With leases disabled
//! ([`LockConfig::without_leases`]) there is no monitor thread and no clock read per acquire.
//!
//! # Deadlocks
//!
//! A thread asking for a name it already holds in a conflicting way (write after read,
//! anything after write) gets [`LockError::WouldDeadlock`] at once; recursive reads are
//! granted. Two readers asking to upgrade the same name cannot both wait: the second gets
//! [`LockError::UpgradeConflict`]. Beyond that, a waiter that has waited longer than the
//! check delay (default 1 s, like PostgreSQL's `deadlock_timeout`) builds the wait-for
//! graph and, if it is on a cycle, fails with [`LockError::Deadlock`] naming the threads and
//! names; it checks again after every further delay, so a cycle that forms later is found
//! by its last member; [`LockManager::check_deadlocks`] has every waiter search at once (a
//! watchdog's call, and how the loom models run the detector). A cycle is reported only if two successive reads of the graph agree on
//! every edge (tokens, tickets and wait numbers are never reused), so a graph that changed
//! while it was read is never mistaken for a deadlock. The graph's edges are not a second
//! statement of the grant rules: for each waiter they are what the grant function itself
//! reports as keeping it waiting (conflicting holds, an upgrade in progress, waiters that
//! go first by the fair queue or writer preference), so the two cannot drift apart.
//!
//! # Names come and go
//!
//! A name's lock is made on first use and removed from the table once nothing refers to
//! it but the table (no handle, waiter, lease, [`Fenced`] value, thread holding it, or
//! thread remembering it among the eight names it used last) and nothing holds or waits
//! for it: the table is swept when a shard has doubled since its last sweep (and after a
//! lease monitor pass lets go of names), so per-request names keep it at about twice the
//! names in use, and the monitor walks only names with leased holds. A thread's name is
//! kept only while the thread lives.
//!
//! # The uncontended path
//!
//! Like `parking_lot`, a name keeps its state in one atomic word (an exclusive bit, the
//! count of shared holds, a bit that sends everyone through the mutex while someone
//! waits, and the fencing token): a grant nobody contends is one compare-and-swap on it
//! and a release one fetch-and-subtract. Who holds what is written by the holder into a
//! slot of its own thread, without a lock, and read by other threads only when they need
//! it (introspection, the deadlock detector, the lease monitor). A guard keeps addresses,
//! not reference counts; an acquire by name finds the lock in its thread's cache of
//! recent names. An acquire that finds the name taken spins briefly before it sleeps.
//! The limits this sets: 8191 shared holds of one name at once and 2^48 fencing tokens
//! per name ([`LockError::Exhausted`] past either).
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod error;
mod guard;
mod holders;
mod manager;
mod name_lock;
mod owner;
mod registry;
mod sync;

use std::fmt;

pub use error::{CycleStep, LockError};
pub use guard::{Fenced, Held, LockHandle, ReadGuard, UpgradeFailed, WriteGuard};
pub use manager::{
    HolderInfo, LockConfig, LockInfo, LockManager, LockState, LockStats, MAX_CHECK_DELAY,
    WaiterInfo,
};
pub use name_lock::WaitKind;

/// Shared or exclusive.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Shared: any number of readers at once.
    Read,
    /// Exclusive: one writer, no readers.
    Write,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Read => "read",
            Mode::Write => "write",
        })
    }
}
