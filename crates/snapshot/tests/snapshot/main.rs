//! Integration tests of the snapshot codecs and store.

mod codecs;
mod crash;
mod faults;
#[cfg(unix)]
mod permissions;
mod snapshotter;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use memwarden_core::ManualClock;
use memwarden_snapshot::{SnapshotStore, StoreConfig};

/// A config in `dir` with small limits and no memory tier, so restores read the disk.
pub(crate) fn disk_only(dir: &Path) -> StoreConfig {
    StoreConfig {
        memory_bytes: 0,
        disk_bytes: 1 << 20,
        ..StoreConfig::new(dir)
    }
}

pub(crate) fn open(config: StoreConfig, clock: &ManualClock) -> SnapshotStore {
    SnapshotStore::open(config, Arc::new(clock.clone())).expect("store opens")
}

/// Files in `dir` (not subdirectories) whose name ends with `ext`, sorted.
pub(crate) fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir lists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}
