//! memwarden keeps a memory-hungry process inside its memory budget.
//!
//! This crate is a facade: it re-exports the memwarden crates behind cargo features, so
//! an application takes only what it needs, and holds no code of its own. The runtime
//! bundle's integration layer, `memwarden-runtime`, is [`runtime`], and its principal
//! names are also here at the top level.
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
#[cfg(feature = "runtime")]
pub use memwarden_runtime as runtime;
#[cfg(feature = "sched")]
pub use memwarden_sched as sched;
#[cfg(feature = "shm")]
pub use memwarden_shm as shm;
#[cfg(feature = "snapshot")]
pub use memwarden_snapshot as snapshot;
#[cfg(feature = "tracker")]
pub use memwarden_tracker as tracker;

#[cfg(feature = "runtime")]
pub use memwarden_runtime::{
    Budget, Fetched, Governor, Lifecycle, LockGuard, ModelRegistry, Runtime, Thresholds, config,
    governor, machine_memory, registry,
};
