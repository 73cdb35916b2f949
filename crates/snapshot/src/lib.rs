//! Snapshot-before-release for memwarden: per-kind codecs and a verified, crash-safe spill store.
//!
//! When the reaper releases a costly resource it can first write a snapshot of it here,
//! and restore it on the next access instead of recomputing it. The crate has three parts:
//!
//! - **Codecs.** [`Snapshot`] turns a value into bytes and back, with a version number.
//!   Ready codecs: [`RenderFrame`] (render_cache), [`AudioClip`] (audio_cache),
//!   [`SubtitleIndex`] (subtitle_index) and [`MappedWeights`] (model weights, stored as a
//!   reference to the file they already live in, mapped again on restore). [`codec`]
//!   gives a type-erased [`ErasedCodec`] for registries that hold `dyn Any` values.
//! - **Store.** [`SnapshotStore`] keeps snapshots as files in a directory with a bounded
//!   memory cache in front, TTL and byte limits with least-recently-used eviction,
//!   [`gc`](SnapshotStore::gc), and serialisable [`StoreStats`].
//! - **Values.** [`Snapshotter`] joins the two for a registry of type-erased values: it
//!   holds a store and the codec of each snapshotted kind, saves a value through its
//!   kind's codec and restores it. The reaper calls it through its before-release hook
//!   (wired by `memwarden-runtime`); this crate knows nothing of the reaper.
//!
//! ```
//! use std::sync::Arc;
//! use memwarden_core::{ResourceId, ResourceKind, SystemClock};
//! use memwarden_snapshot::{SnapshotStore, StoreConfig, SubtitleEntry, SubtitleIndex};
//!
//! let dir = std::env::temp_dir().join(format!("memwarden-snapshot-doc-{}", std::process::id()));
//! let store = SnapshotStore::open(StoreConfig::new(&dir), Arc::new(SystemClock::new()))?;
//! let id = ResourceId::from("subs/en");
//! let subs = SubtitleIndex {
//!     entries: vec![SubtitleEntry { start_ms: 0, end_ms: 1_500, text: "Hello".into() }],
//! };
//! store.save(&id, &ResourceKind::SubtitleIndex, &subs)?;
//! drop(store);
//!
//! // Reopening recovers the directory; the snapshot is verified before it is returned.
//! let store = SnapshotStore::open(StoreConfig::new(&dir), Arc::new(SystemClock::new()))?;
//! assert_eq!(store.load::<SubtitleIndex>(&id, &ResourceKind::SubtitleIndex), Some(subs));
//! assert_eq!(store.load::<SubtitleIndex>(&id, &ResourceKind::AudioCache), None); // wrong kind: a miss
//! assert_eq!(store.stats().hits, 1);
//! # drop(store);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), memwarden_snapshot::SnapshotError>(())
//! ```
//!
//! # Tier policy
//!
//! **Every put goes to disk; memory is a cache.** A snapshot exists so that memory can
//! be given back, so [`SnapshotStore::put`] returns only once the snapshot is durable:
//! written to a temporary file, `fsync`ed, renamed to its final name and the directory
//! `fsync`ed. A copy of the file image is then kept in the memory tier if it fits in
//! [`StoreConfig::memory_bytes`] (least recently used copies are dropped first; the disk
//! copy stays), and a restore from disk is cached the same way. Disk holds at most
//! [`StoreConfig::disk_bytes`]: beyond it, expired snapshots and then least recently used
//! ones are deleted. A snapshot larger than the disk limit is refused with
//! [`SnapshotError::TooLarge`]. The TTL counts from the put (or from reopening, for
//! recovered snapshots: clock time does not survive a restart) and is enforced lazily on
//! access and by [`SnapshotStore::gc`].
//!
//! # Never wrong data
//!
//! Each file carries a header (magic, format version, codec version, kind, resource id,
//! payload length, a store-wide monotonic sequence) and an xxh3-64 checksum over all of
//! it. Every restore, from disk or memory, checks all of these against the index; a
//! truncated, corrupt, wrong-version or wrong-kind file is a miss, counted in
//! [`StoreStats::corrupt`], logged, and moved to `<dir>/quarantine/`. Each snapshot has
//! its own file name (id hash and sequence), so a new snapshot of an id never overwrites
//! the old one in place: the old file is deleted only after the new one is durable, and
//! if a crash leaves both, reopening keeps the higher sequence. Leftover temporary files
//! are deleted on open.
//!
//! Only what reading a file proves condemns it. An error that says nothing about its
//! bytes (out of file descriptors or memory, an interrupted or failing read) is counted
//! in [`StoreStats::read_errors`] and keeps the file: on restore it is a miss and the
//! index keeps the snapshot; at open the file is left where it is, out of the index until
//! the next open, and so is a sound older snapshot of the same id, which could be
//! outdated. A bad file that cannot be moved to quarantine is left where it is, never
//! deleted. [`SnapshotStore::left_files`] lists the files left, and why.
//!
//! # Permissions
//!
//! A snapshot holds its user's data, so the store keeps it to that user (on Unix). It
//! creates its directory (and the quarantine directory) with mode 0700 and every file
//! (temporary files, snapshots, the lock file) with mode 0600, from the start rather than
//! by a later `chmod`; snapshot files an earlier version left readable by others are made
//! 0600 on open. It refuses, with [`SnapshotError::InsecureDir`], an existing directory
//! that other users could write to, since they could plant or replace snapshots: one that
//! is group- or world-writable (sticky or not) or owned by another user. An existing
//! directory that others may only read (0755) is accepted and left as it is.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod codec;
mod codecs;
mod error;
mod failpoint;
mod format;
mod snapshotter;
mod store;
mod weights;

pub use codec::{ErasedCodec, Snapshot, codec};
pub use codecs::{AudioClip, PixelFormat, RenderFrame, SubtitleEntry, SubtitleIndex};
pub use error::SnapshotError;
pub use failpoint::{FailPoint, WriteFault};
pub use snapshotter::Snapshotter;
pub use store::{
    GcReport, LOCK_FILE, LeftFile, LeftReason, QUARANTINE_DIR, SnapshotInfo, SnapshotStore,
    StoreConfig, StoreStats, Tier,
};
pub use weights::MappedWeights;
