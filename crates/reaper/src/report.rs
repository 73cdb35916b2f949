//! What a release run did ([`ReleaseReport`]) and what the reaper has done ([`ReaperStats`]).

use std::collections::BTreeMap;
use std::time::Duration;

use memwarden_core::{ResourceId, ResourceKind};
use serde::Serialize;

/// One resource released, in full or in part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Released {
    /// Its id.
    pub id: ResourceId,
    /// Its kind.
    pub kind: ResourceKind,
    /// Bytes freed (for a partial release, what the value reported).
    pub bytes_freed: u64,
    /// Whether only part of it was released; it stays registered at its smaller size.
    pub partial: bool,
    /// Bytes the [`BeforeRelease`](crate::BeforeRelease) hook saved before the release
    /// (a snapshot), if it saved any.
    pub snapshot_bytes: Option<u64>,
    /// The handler's error or panic message, if it failed (the drop still ran).
    pub handler_error: Option<String>,
    /// Time the release took.
    pub elapsed: Duration,
}

/// Why a planned victim was not released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// It is pinned.
    Pinned,
    /// A [`ReleaseGuard`](crate::ReleaseGuard) protects it.
    Locked {
        /// Who holds it, as the guard described.
        holder: String,
    },
    /// Live resources depend on it.
    NeededBy {
        /// Those resources.
        dependents: Vec<ResourceId>,
    },
    /// It is no longer registered.
    Gone,
    /// Another thread is releasing it right now.
    InRelease,
    /// It was released and registered again while this release was in flight: the new
    /// value is kept, and the snapshot just saved of the old one is discarded.
    Replaced,
    /// The [`BeforeRelease`](crate::BeforeRelease) hook could not save it (the snapshot
    /// could not be written).
    SnapshotFailed {
        /// Why.
        error: String,
    },
}

/// A planned victim that was left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Its id.
    pub id: ResourceId,
    /// Why.
    pub reason: SkipReason,
}

/// The result of one release run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReleaseReport {
    /// What was released, in order.
    pub released: Vec<Released>,
    /// What was left alone.
    pub skipped: Vec<Skipped>,
    /// Bytes freed in all.
    pub bytes_freed: u64,
    /// Handlers that failed (their resources were still dropped).
    pub failures: u64,
}

impl ReleaseReport {
    /// Adds another report's results to this one.
    pub fn merge(&mut self, other: ReleaseReport) {
        self.released.extend(other.released);
        self.skipped.extend(other.skipped);
        self.bytes_freed += other.bytes_freed;
        self.failures += other.failures;
    }
}

/// Counters for one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KindStats {
    /// Full releases.
    pub releases: u64,
    /// Partial releases.
    pub partial_releases: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Handler failures (errors and panics).
    pub failures: u64,
    /// Victims skipped (pinned, locked, needed, gone).
    pub skipped: u64,
    /// Time spent releasing.
    pub time_spent: Duration,
    /// Snapshots written before releases by the [`BeforeRelease`](crate::BeforeRelease) hook.
    pub snapshots: u64,
    /// Bytes of those snapshots.
    pub snapshot_bytes: u64,
    /// Snapshots that failed (their resources were kept).
    pub snapshot_failures: u64,
}

impl KindStats {
    pub(crate) fn add(&mut self, other: &KindStats) {
        self.releases += other.releases;
        self.partial_releases += other.partial_releases;
        self.bytes_freed += other.bytes_freed;
        self.failures += other.failures;
        self.skipped += other.skipped;
        self.time_spent += other.time_spent;
        self.snapshots += other.snapshots;
        self.snapshot_bytes += other.snapshot_bytes;
        self.snapshot_failures += other.snapshot_failures;
    }
}

/// The reaper's counters, per kind and in total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReaperStats {
    /// Per kind.
    pub kinds: BTreeMap<ResourceKind, KindStats>,
    /// All kinds together.
    pub total: KindStats,
}
