//! memwarden keeps a memory-hungry process inside its memory budget.
//!
//! This facade re-exports the memwarden crates behind cargo features, so an application
//! takes only what it needs, and adds [`Lifecycle`], which drives tracker, prioritizer
//! and reaper against a byte budget.
//!
//! ```
//! # #[cfg(feature = "runtime")] {
//! use memwarden::core::{ByteSize, ResourceKind};
//! use memwarden::tracker::{ResourceSpec, Tracker};
//! use memwarden::Lifecycle;
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
//! # }
//! ```
//!
//! # Features
#![doc = document_features::document_features!()]
//!
//! Features are additive: every one compiles alone and with every other.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

pub use memwarden_core as core;

#[cfg(feature = "config")]
pub mod config;
#[cfg(feature = "defrag")]
pub use memwarden_defrag as defrag;
#[cfg(feature = "lifetime")]
pub use memwarden_lifetime as lifetime;
#[cfg(feature = "lock")]
pub use memwarden_lock as lock;
#[cfg(feature = "pool")]
pub use memwarden_pool as pool;
#[cfg(feature = "prioritizer")]
pub use memwarden_prioritizer as prioritizer;
#[cfg(feature = "reaper")]
pub use memwarden_reaper as reaper;
#[cfg(feature = "sched")]
pub use memwarden_sched as sched;
#[cfg(feature = "shm")]
pub use memwarden_shm as shm;
#[cfg(feature = "snapshot")]
pub use memwarden_snapshot as snapshot;
#[cfg(feature = "tracker")]
pub use memwarden_tracker as tracker;

#[cfg(feature = "reaper")]
mod lifecycle;
#[cfg(all(feature = "reaper", feature = "snapshot"))]
pub use lifecycle::Fetched;
#[cfg(feature = "reaper")]
pub use lifecycle::{Lifecycle, Thresholds};

#[cfg(all(feature = "reaper", feature = "lock"))]
mod lock_guard;
#[cfg(all(feature = "reaper", feature = "lock"))]
pub use lock_guard::LockGuard;

#[cfg(feature = "registry")]
pub mod registry;
#[cfg(feature = "registry")]
pub use registry::ModelRegistry;

#[cfg(feature = "governor")]
pub mod governor;
#[cfg(feature = "governor")]
pub use governor::Governor;

/// The total memory of this machine, as the operating system reports it (through
/// sysinfo); `None` where it cannot say. A budget given as a share of the machine is a
/// share of this.
#[cfg(any(feature = "config", feature = "governor"))]
pub fn machine_memory() -> Option<u64> {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    Some(system.total_memory()).filter(|&total| total > 0)
}
