//! [`SnapshotStore`]: durable snapshot files in a directory, a bounded in-memory cache in front, verified on every restore.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use memwarden_core::fs::{AtomicFile, AtomicWriteError, CommitStep, Durability, sync_dir};
use memwarden_core::{Clock, ResourceId, ResourceKind, Timestamp};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::codec::len_u64;
use crate::failpoint::{FailPoint, WriteFault};
use crate::format::{self, Defect, Expected, SNAPSHOT_EXT, TEMP_EXT};
use crate::{Snapshot, SnapshotError};

/// Name of the subdirectory bad files are moved to.
pub const QUARANTINE_DIR: &str = "quarantine";

/// How often `open` retries a busy directory lock, 5 ms apart.
const LOCK_ATTEMPTS: u32 = 40;

/// The file a store locks to keep a second store out of its directory.
pub const LOCK_FILE: &str = ".lock";

/// The mode of every file the store creates: its user's alone.
const FILE_MODE: u32 = 0o600;
/// The mode of every directory the store creates.
const DIR_MODE: u32 = 0o700;

/// Where a snapshot store keeps its files and how much it may hold.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The directory of snapshot files; created (mode 0700) if missing, recovered if not
    /// empty. An existing one must belong to this user and not be group- or
    /// world-writable ([`SnapshotError::InsecureDir`]).
    pub dir: PathBuf,
    /// Most bytes of snapshot files kept cached in memory (0: no memory tier).
    pub memory_bytes: u64,
    /// Most bytes of snapshot files kept on disk; the least recently used go first.
    pub disk_bytes: u64,
    /// How long a snapshot lives after it was written; `None`: until evicted or removed.
    pub ttl: Option<Duration>,
    /// Fault injection for tests; disarmed by default.
    pub fail_point: FailPoint,
}

impl StoreConfig {
    /// A store in `dir` with 64 MiB of memory tier, 1 GiB of disk tier and no TTL.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            memory_bytes: 64 << 20,
            disk_bytes: 1 << 30,
            ttl: None,
            fail_point: FailPoint::new(),
        }
    }
}

/// Where [`SnapshotStore::get`] finds a snapshot first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Cached in memory (and on disk).
    Memory,
    /// On disk only.
    Disk,
}

/// What [`SnapshotStore::put`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The snapshot's sequence number: larger is newer, across the store's whole life.
    pub sequence: u64,
    /// The size of its file, header included.
    pub bytes: u64,
    /// [`Tier::Memory`] if a copy is also cached in memory, else [`Tier::Disk`].
    pub tier: Tier,
}

/// What a [`SnapshotStore::gc`] pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Snapshots removed because their TTL ran out.
    pub expired: u64,
    /// Snapshots removed to get back under the disk limit.
    pub evicted: u64,
    /// Bytes of files deleted.
    pub bytes_freed: u64,
    /// Snapshots left.
    pub remaining: u64,
}

/// Counters and sizes of a [`SnapshotStore`]; serialisable for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreStats {
    /// Snapshots held (every one is on disk).
    pub count: u64,
    /// Snapshots also cached in memory.
    pub memory_count: u64,
    /// Bytes cached in memory.
    pub memory_bytes: u64,
    /// Bytes of snapshot files on disk.
    pub disk_bytes: u64,
    /// Successful puts.
    pub writes: u64,
    /// Puts that failed while writing (full disk, I/O error); nothing of them was kept.
    pub write_errors: u64,
    /// Restores that returned data.
    pub hits: u64,
    /// Hits served from the memory tier.
    pub memory_hits: u64,
    /// Hits read from disk.
    pub disk_hits: u64,
    /// Restores that returned nothing (absent, expired, wrong kind asked, bad file, undecodable).
    pub misses: u64,
    /// Snapshot files found bad: truncated, corrupt, wrong format version, or not matching the index.
    pub corrupt: u64,
    /// Bad files moved to the quarantine directory.
    pub quarantined: u64,
    /// Bad files that could not be moved to the quarantine directory: they are left where
    /// they were, out of the index, and listed by [`SnapshotStore::left_files`].
    pub quarantine_failures: u64,
    /// Snapshot files that could not be read for a reason that says nothing about them
    /// (out of file descriptors or memory, an I/O error): on restore a miss that keeps the
    /// snapshot; at open a file left where it was, out of the index, and listed by
    /// [`SnapshotStore::left_files`].
    pub read_errors: u64,
    /// Snapshots removed to stay under the disk limit.
    pub evictions: u64,
    /// Memory copies dropped to stay under the memory limit (the disk copy stays).
    pub memory_evictions: u64,
    /// Snapshots removed because their TTL ran out.
    pub expired: u64,
    /// Restores whose bytes were sound but that the codec could not decode (`load`).
    pub decode_errors: u64,
    /// Leftover temporary files removed when the directory was opened.
    pub temp_files_removed: u64,
}

/// A file the store left in its directory without indexing it or moving it away; see
/// [`SnapshotStore::left_files`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LeftFile {
    /// The file.
    pub path: PathBuf,
    /// Why it was left.
    pub reason: LeftReason,
}

/// Why the store left a file where it was; see [`LeftFile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LeftReason {
    /// Reading it at open failed for a reason that says nothing about the file (out of
    /// file descriptors or memory, an I/O error), so it may well be sound.
    Unread {
        /// The operating system's error.
        error: String,
    },
    /// It is bad, but moving it to the quarantine directory failed.
    NotQuarantined {
        /// What is wrong with it.
        defect: String,
        /// Why it could not be moved.
        error: String,
    },
    /// It is sound, but a newer file that by its name holds the same id could not be
    /// read ([`Unread`](LeftReason::Unread)): restoring this one could restore an
    /// outdated snapshot.
    Shadowed {
        /// The unread newer file.
        newer: PathBuf,
    },
}

#[derive(Debug)]
struct Entry {
    kind: ResourceKind,
    version: u32,
    sequence: u64,
    file: PathBuf,
    file_len: u64,
    written: Timestamp,
    tick: u64,
    image: Option<Arc<[u8]>>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<ResourceId, Entry>,
    /// Every entry by last use.
    lru: BTreeMap<u64, ResourceId>,
    /// Entries with a memory copy, by last use.
    memory_lru: BTreeMap<u64, ResourceId>,
    next_tick: u64,
    next_sequence: u64,
    stats: StoreStats,
    /// Files left in the directory, out of the index.
    left: Vec<LeftFile>,
}

impl State {
    fn touch(&mut self, id: &ResourceId) {
        let tick = self.next_tick;
        self.next_tick += 1;
        if let Some(entry) = self.entries.get_mut(id) {
            self.lru.remove(&entry.tick);
            self.lru.insert(tick, id.clone());
            if entry.image.is_some() {
                self.memory_lru.remove(&entry.tick);
                self.memory_lru.insert(tick, id.clone());
            }
            entry.tick = tick;
        }
    }

    fn insert(&mut self, id: ResourceId, mut entry: Entry) {
        entry.tick = self.next_tick;
        self.next_tick += 1;
        self.stats.disk_bytes += entry.file_len;
        self.stats.count += 1;
        self.lru.insert(entry.tick, id.clone());
        if let Some(image) = &entry.image {
            self.stats.memory_bytes += len_u64(image.len());
            self.stats.memory_count += 1;
            self.memory_lru.insert(entry.tick, id.clone());
        }
        self.entries.insert(id, entry);
    }

    /// Takes an entry out of the index; the caller deals with its file.
    fn take(&mut self, id: &ResourceId) -> Option<Entry> {
        let mut entry = self.entries.remove(id)?;
        self.lru.remove(&entry.tick);
        self.drop_image(&mut entry);
        self.stats.disk_bytes -= entry.file_len;
        self.stats.count -= 1;
        Some(entry)
    }

    fn drop_image(&mut self, entry: &mut Entry) {
        if let Some(image) = entry.image.take() {
            self.memory_lru.remove(&entry.tick);
            self.stats.memory_bytes -= len_u64(image.len());
            self.stats.memory_count -= 1;
        }
    }

    fn cache(&mut self, id: &ResourceId, image: Arc<[u8]>, limit: u64) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        if entry.image.is_some() || len_u64(image.len()) > limit {
            return;
        }
        self.stats.memory_bytes += len_u64(image.len());
        self.stats.memory_count += 1;
        self.memory_lru.insert(entry.tick, id.clone());
        entry.image = Some(image);
        self.shrink_memory(limit);
    }

    fn shrink_memory(&mut self, limit: u64) {
        while self.stats.memory_bytes > limit {
            let Some((_, id)) = self.memory_lru.pop_first() else {
                break;
            };
            if self.uncache(&id) {
                self.stats.memory_evictions += 1;
            }
        }
    }

    /// Drops `id`'s memory copy; whether it had one.
    fn uncache(&mut self, id: &ResourceId) -> bool {
        let Some(entry) = self.entries.get_mut(id) else {
            return false;
        };
        let Some(image) = entry.image.take() else {
            return false;
        };
        self.memory_lru.remove(&entry.tick);
        self.stats.memory_bytes -= len_u64(image.len());
        self.stats.memory_count -= 1;
        true
    }

    fn is_expired(&self, entry: &Entry, ttl: Option<Duration>, now: Timestamp) -> bool {
        ttl.is_some_and(|ttl| now.saturating_duration_since(entry.written) >= ttl)
    }
}

/// A two-tier store of verified snapshots: every snapshot is a file on disk, recent ones
/// are also cached in memory.
///
/// See the [crate documentation](crate) for the tier policy, the file format and what a
/// restore verifies.
pub struct SnapshotStore {
    config: StoreConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// `<dir>/.lock`, exclusively locked for the store's lifetime: one store per directory.
    _dir_lock: File,
}

impl fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotStore")
            .field("dir", &self.config.dir)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

enum Source {
    Memory(Arc<[u8]>),
    /// The file, and whether the memory tier could hold it.
    Disk(PathBuf, bool),
}

impl SnapshotStore {
    /// Opens (creating if needed) the store directory and recovers what it holds.
    ///
    /// A missing directory is created with mode 0700; an existing one that users other
    /// than this one can write to is refused with [`SnapshotError::InsecureDir`].
    /// Leftover temporary files are deleted; every snapshot file is made private to this
    /// user (mode 0600), verified in full and indexed, and bad ones are quarantined; when
    /// several files hold the same id the one with the highest sequence wins and the
    /// others are deleted. A file that cannot be read for a reason that says nothing about
    /// it (such as running out of file descriptors) is left as it is, out of the index, for
    /// the next open; see [`left_files`](Self::left_files). Recovered snapshots count
    /// their TTL from now, since [`Clock`] time does not survive a restart.
    pub fn open(config: StoreConfig, clock: Arc<dyn Clock>) -> Result<Self, SnapshotError> {
        if config.disk_bytes == 0 {
            return Err(SnapshotError::Config {
                reason: "disk_bytes is 0, so every snapshot would be refused".into(),
            });
        }
        let dir = &config.dir;
        private_dir(dir).map_err(|e| SnapshotError::io("create", dir, e))?;
        check_private(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let dir_lock = private_file()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| SnapshotError::io("create", &lock_path, e))?;
        // A lock just released can stay held for a moment by a child process forked (and
        // not yet exec'ed) while it was held, so a busy lock is retried briefly.
        let mut attempts = 0;
        loop {
            match dir_lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if attempts < LOCK_ATTEMPTS => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(SnapshotError::InUse { dir: dir.clone() });
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(SnapshotError::io("lock", &lock_path, e));
                }
            }
        }
        let store = SnapshotStore {
            clock,
            state: Mutex::new(State::default()),
            config,
            _dir_lock: dir_lock,
        };
        store.recover()?;
        Ok(store)
    }

    fn recover(&self) -> Result<(), SnapshotError> {
        let dir = &self.config.dir;
        let listing = fs::read_dir(dir).map_err(|e| SnapshotError::io("list", dir, e))?;
        let mut state = self.state.lock();
        let mut newest: HashMap<ResourceId, (format::Header, u64, PathBuf)> = HashMap::new();
        // Id hash and sequence of each file that could not be read, by its name.
        let mut unread: HashMap<u64, (u64, PathBuf)> = HashMap::new();
        let mut changed = false;
        for item in listing {
            let item = item.map_err(|e| SnapshotError::io("list", dir, e))?;
            let path = item.path();
            let file_type = item.file_type();
            if file_type.as_ref().is_ok_and(fs::FileType::is_dir) {
                if item.file_name() == QUARANTINE_DIR {
                    make_private(&path);
                }
                continue;
            }
            let named = item.file_name().to_str().and_then(format::parse_file_name);
            if let Some((_, sequence)) = named {
                // Even a file left unread or bad in place keeps its sequence: a new
                // snapshot never takes its name.
                state.next_sequence = state.next_sequence.max(sequence.saturating_add(1));
            }
            let extension = path.extension().and_then(|e| e.to_str());
            if extension == Some(SNAPSHOT_EXT) && file_type.is_ok_and(|t| t.is_file()) {
                // Earlier versions created snapshot files with the default mode.
                make_private(&path);
            }
            match extension {
                Some(TEMP_EXT) => {
                    match fs::remove_file(&path) {
                        Ok(()) => state.stats.temp_files_removed += 1,
                        Err(e) => log::warn!("cannot remove leftover temp file {path:?}: {e}"),
                    }
                    changed = true;
                }
                Some(SNAPSHOT_EXT) => match format::verify_file(&path, &self.config.fail_point) {
                    Ok((header, len)) => {
                        state.next_sequence =
                            state.next_sequence.max(header.sequence.saturating_add(1));
                        let superseded = match newest.entry(header.id.clone()) {
                            MapEntry::Vacant(slot) => {
                                slot.insert((header, len, path));
                                None
                            }
                            MapEntry::Occupied(mut slot) => {
                                if slot.get().0.sequence < header.sequence {
                                    Some(slot.insert((header, len, path)).2)
                                } else {
                                    Some(path)
                                }
                            }
                        };
                        if let Some(old) = superseded {
                            log::info!(
                                "snapshot {old:?} is superseded by a newer one; deleting it"
                            );
                            remove_quietly(&old);
                            changed = true;
                        }
                    }
                    Err(Defect::Transient(error)) => {
                        log::warn!(
                            "snapshot file {path:?} not read ({error}); left as it is, out of the index until the store is opened again"
                        );
                        state.stats.read_errors += 1;
                        if let Some((hash, sequence)) = named {
                            let newest_unread = unread
                                .entry(hash)
                                .or_insert_with(|| (sequence, path.clone()));
                            if newest_unread.0 < sequence {
                                *newest_unread = (sequence, path.clone());
                            }
                        }
                        state.left.push(LeftFile {
                            path,
                            reason: LeftReason::Unread { error },
                        });
                    }
                    Err(defect) => {
                        self.condemn(&mut state, &path, &defect);
                        changed = true;
                    }
                },
                _ => log::debug!("ignoring {path:?} in the snapshot directory"),
            }
        }
        // A sound snapshot with an unread newer file of its id may be outdated: it is held
        // back (and kept) until a later open can read both.
        newest.retain(|id, (header, _, path)| {
            let newer = unread
                .get(&format::id_hash(id))
                .filter(|(sequence, _)| *sequence > header.sequence);
            let Some((_, newer)) = newer else {
                return true;
            };
            log::warn!(
                "snapshot file {path:?} of {id} is held back: the newer {newer:?} could not be read"
            );
            state.left.push(LeftFile {
                path: path.clone(),
                reason: LeftReason::Shadowed {
                    newer: newer.clone(),
                },
            });
            false
        });
        if changed {
            sync_dir(dir).map_err(|e| SnapshotError::io("sync", dir, e))?;
        }
        let mut found: Vec<_> = newest.into_values().collect();
        // Oldest first, so that the least recently written is the first evicted.
        found.sort_by_key(|(h, _, _)| h.sequence);
        let now = self.clock.now();
        for (header, len, path) in found {
            state.insert(
                header.id,
                Entry {
                    kind: header.kind,
                    version: header.version,
                    sequence: header.sequence,
                    file: path,
                    file_len: len,
                    written: now,
                    tick: 0,
                    image: None,
                },
            );
        }
        log::debug!(
            "snapshot store {dir:?} recovered {} snapshots ({} bytes)",
            state.stats.count,
            state.stats.disk_bytes
        );
        self.enforce_disk_limit(&mut state, None);
        Ok(())
    }

    /// Stores `payload` (written by codec version `version`) as the snapshot of `id`.
    ///
    /// The file is written under a temporary name, synced, renamed into place and the
    /// directory synced before the index changes; only then is an older snapshot of `id`
    /// deleted. On any error nothing is kept, no file is left behind, and an older
    /// snapshot of `id` stays restorable. May evict least recently used snapshots to stay
    /// under the disk limit.
    pub fn put(
        &self,
        id: &ResourceId,
        kind: &ResourceKind,
        version: u32,
        payload: &[u8],
    ) -> Result<SnapshotInfo, SnapshotError> {
        let bytes = format::image_len(kind, id, payload.len());
        if bytes > self.config.disk_bytes {
            return Err(SnapshotError::TooLarge {
                id: id.clone(),
                bytes,
                limit: self.config.disk_bytes,
            });
        }
        let sequence = {
            let mut state = self.state.lock();
            let s = state.next_sequence;
            state.next_sequence += 1;
            s
        };
        let prefix = format::prefix(kind, id, version, sequence, payload).ok_or_else(|| {
            SnapshotError::TooLarge {
                id: id.clone(),
                bytes,
                limit: u64::from(u32::MAX),
            }
        })?;
        let file = self.config.dir.join(format::file_name(id, sequence));
        if let Err(e) = write_atomically(&file, &[&prefix, payload], &self.config.fail_point) {
            log::warn!("snapshot of {id} ({kind}) not written: {e}");
            self.state.lock().stats.write_errors += 1;
            return Err(e);
        }
        // The memory tier gets a copy of the file image only if it can hold it.
        let image: Option<Arc<[u8]>> =
            (bytes <= self.config.memory_bytes).then(|| [&prefix[..], payload].concat().into());
        let mut state = self.state.lock();
        if state.entries.get(id).is_some_and(|e| e.sequence > sequence) {
            // A concurrent put of the same id finished first with a newer sequence.
            state.stats.writes += 1;
            drop(state);
            remove_quietly(&file);
            return Ok(SnapshotInfo {
                sequence,
                bytes,
                tier: Tier::Disk,
            });
        }
        if let Some(old) = state.take(id) {
            remove_quietly(&old.file);
        }
        state.insert(
            id.clone(),
            Entry {
                kind: kind.clone(),
                version,
                sequence,
                file,
                file_len: bytes,
                written: self.clock.now(),
                tick: 0,
                image: None,
            },
        );
        state.stats.writes += 1;
        if let Some(image) = image {
            state.cache(id, image, self.config.memory_bytes);
        }
        self.enforce_disk_limit(&mut state, Some(id));
        let tier = match state.entries.get(id) {
            Some(e) if e.image.is_some() => Tier::Memory,
            _ => Tier::Disk,
        };
        Ok(SnapshotInfo {
            sequence,
            bytes,
            tier,
        })
    }

    /// The verified payload and codec version of `id`'s snapshot, if it holds one of `kind`.
    ///
    /// Anything wrong is a miss, never wrong data: an absent or expired snapshot, a
    /// snapshot of another kind (logged; the snapshot stays), a file that cannot be read
    /// this time for a reason that says nothing about it (counted in
    /// [`StoreStats::read_errors`], logged; the snapshot stays), or a file that fails
    /// verification (truncated, corrupt, wrong format version, not what the index says:
    /// counted, logged and quarantined, or left where it is if it cannot be moved).
    pub fn get(&self, id: &ResourceId, kind: &ResourceKind) -> Option<(u32, Vec<u8>)> {
        let found = self.fetch(id, kind);
        let mut state = self.state.lock();
        match &found {
            Some((_, _, Tier::Memory)) => {
                state.stats.hits += 1;
                state.stats.memory_hits += 1;
            }
            Some((_, _, Tier::Disk)) => {
                state.stats.hits += 1;
                state.stats.disk_hits += 1;
            }
            None => state.stats.misses += 1,
        }
        found.map(|(version, payload, _)| (version, payload))
    }

    /// Stores `value` encoded with its [`Snapshot`] codec; see [`put`](Self::put).
    pub fn save<T: Snapshot>(
        &self,
        id: &ResourceId,
        kind: &ResourceKind,
        value: &T,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let mut payload = Vec::new();
        value.encode(&mut payload)?;
        self.put(id, kind, T::VERSION, &payload)
    }

    /// Restores and decodes `id`'s snapshot; see [`get`](Self::get). A snapshot the codec
    /// cannot decode is a miss (counted in [`StoreStats::decode_errors`] and logged).
    pub fn load<T: Snapshot>(&self, id: &ResourceId, kind: &ResourceKind) -> Option<T> {
        let found = self.fetch(id, kind);
        let decoded = found.map(|(version, payload, tier)| {
            (
                T::decode(&payload, version).map_err(|e| {
                    log::error!("snapshot of {id} ({kind}) does not decode: {e}");
                }),
                tier,
            )
        });
        let mut state = self.state.lock();
        match decoded {
            Some((Ok(value), tier)) => {
                state.stats.hits += 1;
                match tier {
                    Tier::Memory => state.stats.memory_hits += 1,
                    Tier::Disk => state.stats.disk_hits += 1,
                }
                Some(value)
            }
            Some((Err(()), _)) => {
                state.stats.decode_errors += 1;
                state.stats.misses += 1;
                None
            }
            None => {
                state.stats.misses += 1;
                None
            }
        }
    }

    /// The kind of the snapshot held for `id`, if any (expired ones are dropped first).
    pub fn kind_of(&self, id: &ResourceId) -> Option<ResourceKind> {
        let mut state = self.state.lock();
        let now = self.clock.now();
        let entry = state.entries.get(id)?;
        if state.is_expired(entry, self.config.ttl, now) {
            self.expire(&mut state, id);
            return None;
        }
        Some(entry.kind.clone())
    }

    /// Whether a (not yet expired) snapshot of `id` is held.
    pub fn contains(&self, id: &ResourceId) -> bool {
        self.kind_of(id).is_some()
    }

    /// Deletes `id`'s snapshot; whether there was one.
    pub fn remove(&self, id: &ResourceId) -> bool {
        let mut state = self.state.lock();
        match state.take(id) {
            Some(entry) => {
                remove_quietly(&entry.file);
                // Durable, so that a removed snapshot cannot come back after a crash.
                sync_dir_quietly(&self.config.dir);
                true
            }
            None => false,
        }
    }

    /// Removes expired snapshots and trims both tiers to their limits.
    pub fn gc(&self) -> GcReport {
        let mut state = self.state.lock();
        let before = state.stats.clone();
        self.expire_all(&mut state);
        state.shrink_memory(self.config.memory_bytes);
        self.enforce_disk_limit(&mut state, None);
        if state.stats.disk_bytes != before.disk_bytes {
            sync_dir_quietly(&self.config.dir);
        }
        GcReport {
            expired: state.stats.expired - before.expired,
            evicted: state.stats.evictions - before.evictions,
            bytes_freed: before.disk_bytes - state.stats.disk_bytes,
            remaining: state.stats.count,
        }
    }

    /// A copy of the store's counters and sizes.
    pub fn stats(&self) -> StoreStats {
        self.state.lock().stats.clone()
    }

    /// The files this store left in its directory without indexing them or moving them
    /// away, in the order it met them: snapshot files it could not read at open, bad files
    /// it could not quarantine, and sound ones held back because a newer file of their id
    /// could not be read. Nothing of them is restored; the next open looks at them again.
    pub fn left_files(&self) -> Vec<LeftFile> {
        self.state.lock().left.clone()
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Looks `id` up and verifies its bytes; counts bad files but not hits or misses.
    fn fetch(&self, id: &ResourceId, kind: &ResourceKind) -> Option<(u32, Vec<u8>, Tier)> {
        // A concurrent put may replace the file between the lookup and the read; retry then.
        for _ in 0..4 {
            let (version, sequence, source) = {
                let mut state = self.state.lock();
                let now = self.clock.now();
                let entry = state.entries.get(id)?;
                if state.is_expired(entry, self.config.ttl, now) {
                    self.expire(&mut state, id);
                    return None;
                }
                if entry.kind != *kind {
                    log::warn!(
                        "snapshot of {id} asked for as {kind} but stored as {}; a miss",
                        entry.kind
                    );
                    return None;
                }
                let found = (
                    entry.version,
                    entry.sequence,
                    match &entry.image {
                        Some(image) => Source::Memory(Arc::clone(image)),
                        None => Source::Disk(
                            entry.file.clone(),
                            entry.file_len <= self.config.memory_bytes,
                        ),
                    },
                );
                state.touch(id);
                found
            };
            let expected = Expected {
                id,
                kind,
                version,
                sequence,
            };
            match source {
                Source::Memory(image) => match format::verify(&image, &expected) {
                    Ok(payload) => return Some((version, payload.to_vec(), Tier::Memory)),
                    Err(defect) => {
                        log::error!("memory copy of snapshot {id} is bad ({defect}); dropping it");
                        let mut state = self.state.lock();
                        state.stats.corrupt += 1;
                        state.uncache(id);
                    }
                },
                Source::Disk(path, cacheable) => {
                    // A file the memory tier can hold is read whole (and cached); a bigger
                    // one has its payload read straight into its own buffer, no copy.
                    let read = if cacheable {
                        self.config
                            .fail_point
                            .check_read()
                            .and_then(|()| fs::read(&path))
                            .map_err(format::read_error)
                            .and_then(|image| {
                                let payload_len = format::verify(&image, &expected)?.len();
                                let payload = image[image.len() - payload_len..].to_vec();
                                Ok((payload, Some(image)))
                            })
                    } else {
                        format::read_payload(&path, &expected, &self.config.fail_point)
                            .map(|payload| (payload, None))
                    };
                    let mut state = self.state.lock();
                    if !same_snapshot(&state, id, sequence) {
                        continue;
                    }
                    return match read {
                        Ok((payload, image)) => {
                            if let Some(image) = image {
                                state.cache(id, image.into(), self.config.memory_bytes);
                            }
                            Some((version, payload, Tier::Disk))
                        }
                        Err(Defect::Transient(e)) => {
                            log::warn!("snapshot of {id} not read this time, kept: {e}");
                            state.stats.read_errors += 1;
                            None
                        }
                        Err(defect) => {
                            self.condemn_entry(&mut state, id, &defect);
                            None
                        }
                    };
                }
            }
        }
        None
    }

    fn expire(&self, state: &mut State, id: &ResourceId) {
        if let Some(entry) = state.take(id) {
            log::debug!("snapshot of {id} expired");
            remove_quietly(&entry.file);
            state.stats.expired += 1;
        }
    }

    /// Drops a bad snapshot from the index and quarantines its file.
    fn condemn_entry(&self, state: &mut State, id: &ResourceId, defect: &Defect) {
        if let Some(entry) = state.take(id) {
            self.condemn(state, &entry.file, defect);
        }
    }

    /// Counts, logs and quarantines a bad snapshot file; one that cannot be moved is left
    /// where it is, never deleted.
    fn condemn(&self, state: &mut State, path: &Path, defect: &Defect) {
        log::error!("snapshot file {path:?} is bad ({defect}); quarantining it");
        state.stats.corrupt += 1;
        match quarantine(&self.config.dir, path) {
            Quarantined::Moved => state.stats.quarantined += 1,
            Quarantined::Gone => {}
            Quarantined::Failed(e) => {
                log::error!("cannot quarantine {path:?} ({e}); leaving it where it is");
                state.stats.quarantine_failures += 1;
                state.left.push(LeftFile {
                    path: path.to_path_buf(),
                    reason: LeftReason::NotQuarantined {
                        defect: defect.to_string(),
                        error: e.to_string(),
                    },
                });
            }
        }
    }

    /// Expires every snapshot past its TTL.
    fn expire_all(&self, state: &mut State) {
        let now = self.clock.now();
        let expired: Vec<ResourceId> = state
            .entries
            .iter()
            .filter(|(_, e)| state.is_expired(e, self.config.ttl, now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.expire(state, id);
        }
    }

    /// Evicts least recently used snapshots (after expired ones) until under the disk
    /// limit, never `keep`.
    fn enforce_disk_limit(&self, state: &mut State, keep: Option<&ResourceId>) {
        if state.stats.disk_bytes <= self.config.disk_bytes {
            return;
        }
        self.expire_all(state);
        let mut kept = None;
        while state.stats.disk_bytes > self.config.disk_bytes {
            let Some((tick, id)) = state.lru.pop_first() else {
                break;
            };
            if Some(&id) == keep {
                kept = Some((tick, id));
                continue;
            }
            state.lru.insert(tick, id.clone());
            if let Some(entry) = state.take(&id) {
                log::debug!("evicting snapshot of {id} to stay under the disk limit");
                remove_quietly(&entry.file);
                state.stats.evictions += 1;
            }
        }
        if let Some((tick, id)) = kept {
            state.lru.insert(tick, id);
        }
    }
}

fn same_snapshot(state: &State, id: &ResourceId, sequence: u64) -> bool {
    state
        .entries
        .get(id)
        .is_some_and(|e| e.sequence == sequence)
}

/// Writes `parts` to `file` through [`AtomicFile`] with [`Durability::Crash`], so that it
/// is whole or absent, and durable once this returns: a temporary file named for the
/// recovery sweep (`<file>.tmp`) and created with mode 0600 (a snapshot is never readable
/// by other users, not even for a moment), synced, renamed into place, the directory
/// synced. On error nothing is left: not the temporary file, nor the final one if the
/// directory sync failed after the rename (the index never learns of it).
fn write_atomically(file: &Path, parts: &[&[u8]], fail: &FailPoint) -> Result<(), SnapshotError> {
    let failed = |e: AtomicWriteError| {
        if e.renamed {
            remove_quietly(file);
        }
        SnapshotError::io(e.op, e.path, e.source)
    };
    let temp = file.with_extension(TEMP_EXT);
    // Private from the start: no moment when another user could open the temporary file.
    let mut out = AtomicFile::with_temp_mode(file, &temp, FILE_MODE).map_err(failed)?;
    let write = match fail.write_limit() {
        // An armed fault writes its first `limit` bytes, then fails as a full disk would.
        Some(limit) => {
            let mut left = usize::try_from(limit).unwrap_or(usize::MAX);
            parts
                .iter()
                .try_for_each(|part| {
                    let n = left.min(part.len());
                    left -= n;
                    out.file().write_all(&part[..n])
                })
                .and_then(|()| {
                    Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        "injected: no space left on device",
                    ))
                })
        }
        None => parts.iter().try_for_each(|part| out.file().write_all(part)),
    };
    // Dropping `out` removes the temporary file.
    write.map_err(|e| SnapshotError::io("write", &temp, e))?;
    out.commit_with(Durability::Crash, |step| match step {
        CommitStep::SyncFile => fail.check(WriteFault::SyncFile),
        CommitStep::Rename => fail.check(WriteFault::Rename),
        CommitStep::SyncDir => fail.check(WriteFault::SyncDir),
        _ => Ok(()),
    })
    .map_err(failed)?;
    if let Ok(written) = File::open(file) {
        drop_cached_pages(&written);
    }
    Ok(())
}

/// Asks the kernel to drop `file`'s pages from the page cache. The file was synced, so
/// its pages are clean and can go at once. Under a memory cgroup, page cache counts
/// against the container's limit until it is reclaimed; a snapshot is read back rarely
/// (and then through the store's memory tier, when it has one), so it should not hold
/// memory the process is budgeted for. Advice only: a failure changes nothing.
fn drop_cached_pages(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        // SAFETY: posix_fadvise takes a descriptor `file` holds open and no pointers; it
        // only advises the kernel about the file's cached pages.
        let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

fn sync_dir_quietly(dir: &Path) {
    if let Err(e) = sync_dir(dir) {
        log::warn!("cannot sync snapshot directory {dir:?}: {e}");
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        log::warn!("cannot delete snapshot file {path:?}: {e}");
    }
}

/// What became of a bad file [`quarantine`] was asked to move.
enum Quarantined {
    /// It is in `<dir>/quarantine/`.
    Moved,
    /// It was already gone.
    Gone,
    /// It could not be moved, and is left where it was.
    Failed(io::Error),
}

/// Moves a bad file to `<dir>/quarantine/` (created with mode 0700). A file that cannot
/// be moved is left where it is: it is never deleted.
fn quarantine(dir: &Path, path: &Path) -> Quarantined {
    let target_dir = dir.join(QUARANTINE_DIR);
    let moved = private_dir(&target_dir).and_then(|()| {
        let name = path
            .file_name()
            .map(std::ffi::OsStr::to_os_string)
            .unwrap_or_default();
        let mut target = target_dir.join(&name);
        let mut n = 1;
        while target.exists() {
            let mut numbered = name.clone();
            numbered.push(format!(".{n}"));
            target = target_dir.join(numbered);
            n += 1;
        }
        fs::rename(path, &target)
    });
    match moved {
        Ok(()) => Quarantined::Moved,
        Err(e) if e.kind() == io::ErrorKind::NotFound && fs::symlink_metadata(path).is_err() => {
            Quarantined::Gone
        }
        Err(e) => Quarantined::Failed(e),
    }
}

/// Options that create a file with mode 0600 (where modes exist).
fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options
}

/// Creates `dir` and any missing parent with mode 0700 (where modes exist); an existing
/// directory is left as it is.
fn private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir)
}

/// Takes the group's and others' permissions off `path`, if it has any; a failure is
/// logged, the file stays usable.
fn make_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let Ok(mode) = fs::metadata(path).map(|m| m.permissions().mode()) else {
            return;
        };
        if mode & 0o077 != 0
            && let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700))
        {
            log::warn!("cannot make {path:?} private to this user: {e}");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Refuses a store directory that users other than this one can write to: group- or
/// world-writable (the sticky bit does not help: others could still add files), or
/// owned by another user (who can change its mode at will).
fn check_private(dir: &Path) -> Result<(), SnapshotError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let meta = fs::metadata(dir).map_err(|e| SnapshotError::io("inspect", dir, e))?;
        // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
        let me = unsafe { libc::geteuid() };
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 || meta.uid() != me {
            return Err(SnapshotError::InsecureDir {
                dir: dir.to_path_buf(),
                mode,
                owner: meta.uid(),
            });
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
