//! memwarden's integration layer: the pieces that drive the governance crates against a
//! memory budget.
//!
//! The crates below this one are each one idea: the tracker records, the prioritizer
//! ranks, the reaper releases, the snapshot store spills, the lock manager guards and the
//! defragmenter hands freed heap back. This crate wires them:
//!
//! - [`Lifecycle`] keeps the tracked bytes under a budget: per-kind caps, a relief step
//!   below the warning line, due-resource sweeps, restore-on-access from snapshots.
//! - [`Governor`] keeps the process's real resident memory under the same budget, on a
//!   monitor thread and before each allocation, through the same relief step.
//! - [`ModelRegistry`] holds models declared up front, maps them on first use and unloads
//!   the least recently used under a cap.
//! - [`config`] loads and checks `configs/releasable_resources.toml`; [`Budget`] is the
//!   one parser of a budget (`"512MiB"`, `"25%"`).
//! - [`Runtime`] builds all of it from a config (or from code), starts it as one and
//!   stops it as one.
//!
//! ```
//! use memwarden_core::{ByteSize, ResourceKind};
//! use memwarden_tracker::{ResourceSpec, Tracker};
//! use memwarden_runtime::Lifecycle;
//! use std::sync::Arc;
//!
//! let tracker = Arc::new(Tracker::new());
//! let lifecycle = Lifecycle::new(Arc::clone(&tracker), ByteSize::mib(64));
//! for i in 0..32 {
//!     let bytes = 4 << 20;
//!     lifecycle.make_room(&ResourceKind::RenderCache, bytes);
//!     tracker.register(ResourceSpec::new(format!("frame-{i}"), ResourceKind::RenderCache, bytes), vec![0u8; 16])
//!         .expect("fresh id");
//! }
//! assert!(tracker.totals().bytes <= 64 << 20);
//! ```
//!
//! The key design decision: one budget and one relief step. The tracked-bytes loop
//! ([`Lifecycle::make_room`]) and the resident-memory loop ([`Governor::make_room`] and its
//! monitor) measure different things, but both free down to the same relief line through
//! the same function, so they cannot drift apart.
//!
//! # Features
#![doc = document_features::document_features!()]
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod budget;
pub mod cgroup;
pub mod config;
pub mod governor;
mod lifecycle;
mod lock_guard;
mod pressure;
pub mod registry;
mod runtime;
mod series;

pub use budget::{AutoShares, Budget, BudgetError, BudgetSource, ResolvedBudget};
pub use governor::Governor;
pub use lifecycle::{Admission, Fetched, Lifecycle, SettingError, Thresholds};
pub use lock_guard::LockGuard;
pub use registry::ModelRegistry;
pub use runtime::{Runtime, RuntimeBuilder, RuntimeError};
pub use series::Thinned;

/// The total memory of this machine, as the operating system reports it (through
/// sysinfo); `None` where it cannot say. A budget given as a share of the machine is a
/// share of this.
pub fn machine_memory() -> Option<u64> {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    Some(system.total_memory()).filter(|&total| total > 0)
}
