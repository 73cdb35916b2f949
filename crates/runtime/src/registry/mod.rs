//! [`ModelRegistry`]: models declared up front, mapped from disk on first use, and unloaded
//! least recently used first.
//!
//! A model is declared with [`ModelRegistry::declare`] by id and path ([`ModelDecl`]); that
//! records metadata and touches no file, so declaring a hundred models costs a hundred small
//! structs. The first [`ModelRegistry::get`] of a model opens its file, maps it read-only
//! with `memmap2`, parses and checks the [safetensors] header (reading only the header's
//! pages), and registers the [`Model`] in the [`Lifecycle`]'s tracker as a
//! `model_weights_cache` resource (or `model_shards`, per declaration) accounted at the
//! file's length. The weights themselves are paged in by the kernel when they are first
//! read, so a model that is mapped but unused costs address space, not memory. Later `get`s
//! are hits: one tracker lookup, which also tells the prioritizer the model is in use.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use memwarden_core::ByteSize;
//! use memwarden_runtime::registry::{ModelDecl, ModelRegistry, RegistryConfig, write_model_file};
//! use memwarden_tracker::Tracker;
//! use memwarden_runtime::Lifecycle;
//! use std::sync::Arc;
//!
//! let dir = tempfile::tempdir()?;
//! let lifecycle = Arc::new(Lifecycle::new(Arc::new(Tracker::new()), ByteSize::mib(64)));
//! // Room for one 1 MiB model at a time.
//! let config = RegistryConfig { cap: Some(ByteSize::mib(1)), ..RegistryConfig::default() };
//! let registry = ModelRegistry::new(Arc::clone(&lifecycle), config);
//! for (i, name) in ["detector", "segmenter"].into_iter().enumerate() {
//!     let path = dir.path().join(format!("{name}.safetensors"));
//!     write_model_file(&path, 1 << 20, i as u64)?;
//!     registry.declare(ModelDecl::new(name, path))?; // no I/O yet
//! }
//!
//! let detector = registry.get("detector")?; // mapped and checked now
//! let embed = detector.tensor("embed.weight").expect("write_model_file writes one");
//! assert_eq!(embed.data.len(), embed.elements() * embed.dtype.size());
//!
//! registry.get("segmenter")?; // over the cap: the reaper releases the detector
//! assert!(!registry.is_loaded("detector") && registry.is_loaded("segmenter"));
//! assert_eq!(embed.shape[1], 256, "a model still held stays mapped and valid");
//!
//! let status = registry.inspect();
//! assert_eq!(status.loaded_bytes, 1 << 20);
//! assert_eq!((status.models[0].loads, status.models[0].unloads), (1, 0));
//! drop(detector); // the last handle: now the detector's pages go
//! assert_eq!(registry.inspect().models[0].unloads, 1);
//! # Ok(()) }
//! ```
//!
//! # Unloading
//!
//! **Only the reaper releases.** The registry never drops a model from the tracker itself:
//!
//! - under its own [`RegistryConfig::cap`], before admitting a model it picks victims among
//!   its loaded, unpinned models, lowest priority first and, within a priority, least
//!   recently used first (by a registry-wide counter bumped on every `get`, so the order is
//!   exact whatever the clock's resolution), and has the reaper release each
//!   ([`Reaper::release`](memwarden_reaper::Reaper::release));
//! - before admitting a model it asks [`Lifecycle::make_room`] for the file's length, so the
//!   lifecycle's budget and kind caps hold;
//! - under pressure (the lifecycle's budget, a governor watching the RSS) models are ordinary
//!   tracker resources: the prioritizer ranks them with everything else and the reaper
//!   releases them through the normal plan path. The registry notices on the next `get`.
//!
//! Releasing drops the tracker's reference only. A caller holding an `Arc<Model>` keeps a
//! valid mapping, and a `get` while it is still held registers that same mapping again
//! rather than mapping the file twice. A model is **unloaded** when its mapping is actually
//! unmapped, that is when the last `Arc<Model>` drops; [`ModelInfo::unloads`] counts those
//! (a `Drop` on [`Model`] bumps it), so `loads - unloads` is the number of live mappings.
//!
//! A model that cannot fit under the cap because the rest is pinned (or the model alone is
//! larger than the cap) is loaded anyway, with a warning: like [`Lifecycle::make_room`], the
//! registry frees what it may and does not refuse work.
//!
//! # Concurrency
//!
//! Concurrent first `get`s of one model load it once: one thread loads, the others wait
//! for it and then hit, while `get`s of other models proceed. A load maps and checks the
//! file first (so a bad file evicts nothing), then makes room (cap eviction, then the
//! admission hook or the lifecycle's admission) with no registry lock held, then
//! registers. Release handlers and admission hooks may therefore call back into the
//! registry: a `get` made on a thread that is itself loading a model does not wait for
//! another thread's load of the same model (that could wait in a circle); it maps its
//! own, and the first registration wins. Bytes being loaded count under the cap until
//! they are registered. [`ModelRegistry::preload`] loads a list in the background on a
//! thread that the registry joins on drop; it checks for cancellation between models, so
//! dropping the registry mid-preload waits for at most the one load in progress.
//!
//! # Model files
//!
//! Models are [safetensors] files, so real weight files work as they are: 8 bytes of
//! little-endian header length `N`, `N` bytes of JSON header
//! `{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//! "__metadata__": {"key": "value"}}` (trailing spaces allowed), then the data, tensors
//! row-major and little-endian. A file is refused, with an error naming its path, unless:
//! the header length fits in the file and under [`MAX_HEADER_BYTES`]; the header starts
//! with `{` and parses; every dtype is known; each tensor's shape times its dtype's size is
//! its byte length; and the tensors cover the data section exactly, without gaps or
//! overlaps (the format's own rule, which rejects truncated files and files with bytes no
//! tensor describes). A failed load leaves nothing behind: the error is returned (and kept
//! as [`ModelInfo::last_error`]), and the next `get` tries the file again.
//!
//! **Model files must not be truncated or rewritten in place while mapped**; replace a
//! model by renaming a new file over its path (existing mappings keep the old file), as
//! `write_model_file` (feature `fixtures`) does. This is the contract of every memory-mapped weights loader:
//! a truncated mapping raises `SIGBUS` when a lost page is read.
//!
//! [safetensors]: https://github.com/huggingface/safetensors

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use memmap2::Mmap;
use memwarden_core::{ByteSize, Priority, ResourceId, ResourceKind};
use memwarden_reaper::ReleaseReport;
use memwarden_tracker::{Candidate, ResourceSpec, TrackerError};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::Lifecycle;

#[cfg(any(test, feature = "fixtures"))]
mod fixture;
mod safetensors;

#[cfg(any(test, feature = "fixtures"))]
pub use fixture::write_model_file;
pub use safetensors::{Dtype, FormatError, MAX_HEADER_BYTES, TensorView};
use safetensors::{TensorInfo, len_u64, parse};

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why the registry refused a request or could not load a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No model with this id is declared.
    #[error("no model {id} is declared")]
    Unknown {
        /// The id asked for.
        id: ResourceId,
    },
    /// A model with this id is already declared.
    #[error("model {id} is already declared")]
    AlreadyDeclared {
        /// The id declared twice.
        id: ResourceId,
    },
    /// A file operation on a model file failed (it is missing, unreadable, ...).
    #[error("cannot {op} model file {path:?}: {source}")]
    Io {
        /// What was being done (`"open"`, `"map"`, `"write"`, `"rename"`, ...).
        op: &'static str,
        /// The model file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A model file is not a valid safetensors file.
    #[error("model file {path:?} is not a valid safetensors file: {problem}")]
    Format {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        problem: FormatError,
    },
    /// The model's id is registered in the tracker by something other than this registry.
    #[error("resource {id} is registered in the tracker, but not as this registry's model")]
    IdTaken {
        /// The model's id.
        id: ResourceId,
    },
    /// The tracker refused to register the model.
    #[error("the tracker refused model {id}: {source}")]
    Tracker {
        /// The model's id.
        id: ResourceId,
        /// The tracker's reason.
        #[source]
        source: TrackerError,
    },
    /// The preload thread could not be started.
    #[error("cannot start the preload thread: {source}")]
    Spawn {
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl RegistryError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RegistryError {
        let path = path.to_path_buf();
        move |source| RegistryError::Io { op, path, source }
    }
}

/// A loaded model: a read-only mapping of its file and its parsed header.
///
/// Shared as `Arc<Model>`. The mapping lives until the last `Arc` drops, whether or not the
/// registry still holds the model; dropping the last one unmaps the file and counts an
/// unload.
pub struct Model {
    id: ResourceId,
    path: PathBuf,
    kind: ResourceKind,
    map: Mmap,
    /// Sorted by name.
    tensors: Vec<TensorInfo>,
    metadata: BTreeMap<String, String>,
    counters: Arc<Counters>,
    /// Whether this mapping was ever registered: only those count as loads and unloads
    /// (a mapping that lost a race to a concurrent first `get` is dropped unseen).
    counted: AtomicBool,
}

impl Model {
    /// The model's id.
    pub fn id(&self) -> &ResourceId {
        &self.id
    }
    /// The model file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The kind it is tracked as.
    pub fn kind(&self) -> &ResourceKind {
        &self.kind
    }
    /// The file's length in bytes: what the model is accounted at.
    pub fn bytes(&self) -> u64 {
        len_u64(self.map.len())
    }
    /// The whole file, mapped (header included).
    pub fn as_bytes(&self) -> &[u8] {
        &self.map
    }
    /// The tensor called `name`, if there is one.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        let i = self
            .tensors
            .binary_search_by(|t| (*t.name).cmp(name))
            .ok()?;
        Some(self.view(&self.tensors[i]))
    }
    /// Every tensor, in name order.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = TensorView<'_>> + '_ {
        self.tensors.iter().map(|t| self.view(t))
    }
    /// The header's `__metadata__` (empty if it has none).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
    /// Asks the kernel to read the whole file ahead, in the background (`madvise(WILLNEED)`;
    /// a no-op where the platform has no such call). The pages land in the page cache and
    /// are mapped in as they are read, so this saves the first reader the disk's latency.
    pub fn prefetch(&self) {
        #[cfg(unix)]
        if let Err(e) = self.map.advise(memmap2::Advice::WillNeed) {
            log::debug!("cannot prefetch model {} ({:?}): {e}", self.id, self.path);
        }
    }

    fn view<'a>(&'a self, t: &'a TensorInfo) -> TensorView<'a> {
        TensorView {
            name: &t.name,
            dtype: t.dtype,
            shape: &t.shape,
            data: &self.map[t.begin..t.end],
        }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        if *self.counted.get_mut() {
            self.counters.unloads.fetch_add(1, Ordering::Relaxed);
        }
        log::debug!("model {} unmapped ({:?})", self.id, self.path);
    }
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("bytes", &self.map.len())
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

/// A model as declared: an id, a file, and how it is tracked. Built with chained setters.
///
/// ```
/// # use memwarden_core::{Priority, ResourceKind};
/// # use memwarden_runtime::registry::ModelDecl;
/// let decl = ModelDecl::new("yolo-v8", "/models/yolo-v8.safetensors")
///     .kind(ResourceKind::ModelShards)
///     .priority(Priority::new(9).unwrap())
///     .pinned(true);
/// assert_eq!(decl.id.as_str(), "yolo-v8");
/// ```
#[derive(Debug, Clone)]
pub struct ModelDecl {
    /// The model's id; it is also its id in the tracker.
    pub id: ResourceId,
    /// The safetensors file.
    pub path: PathBuf,
    /// The kind it is tracked as: `model_weights_cache` unless set.
    pub kind: ResourceKind,
    /// Its priority; the kind's policy applies when `None`.
    pub priority: Option<Priority>,
    /// A pinned model is never unloaded while loaded.
    pub pinned: bool,
    /// Unloaded by [`Lifecycle::sweep`] after this long without a `get`.
    pub max_idle: Option<Duration>,
}

impl ModelDecl {
    /// A `model_weights_cache` model with its kind's priority, unpinned, with no idle limit.
    pub fn new(id: impl Into<ResourceId>, path: impl Into<PathBuf>) -> Self {
        ModelDecl {
            id: id.into(),
            path: path.into(),
            kind: ResourceKind::ModelWeightsCache,
            priority: None,
            pinned: false,
            max_idle: None,
        }
    }
    /// Sets the kind (`model_shards` for weights resident for inference).
    pub fn kind(mut self, kind: ResourceKind) -> Self {
        self.kind = kind;
        self
    }
    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }
    /// Pins (or unpins) the model.
    pub fn pinned(mut self, pinned: bool) -> Self {
        self.pinned = pinned;
        self
    }
    /// Sets the idle limit.
    pub fn max_idle(mut self, max_idle: Duration) -> Self {
        self.max_idle = Some(max_idle);
        self
    }
}

/// How a [`ModelRegistry`] behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryConfig {
    /// The most bytes (file lengths) of models the registry keeps loaded; `None` leaves it
    /// to the lifecycle's budget. Pinned models count against it.
    pub cap: Option<ByteSize>,
    /// Whether [`ModelRegistry::preload`] also reads each model ahead
    /// ([`Model::prefetch`]); on by default.
    pub prefetch_preloaded: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            cap: None,
            prefetch_preloaded: true,
        }
    }
}

/// One declared model in a [`RegistryState`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ModelInfo {
    /// Its id.
    pub id: ResourceId,
    /// Its file (lossily converted to UTF-8 when serialised).
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    /// The kind it is tracked as.
    pub kind: ResourceKind,
    /// Its priority: declared, else its kind's.
    pub priority: Priority,
    /// Whether it is pinned.
    pub pinned: bool,
    /// Whether the tracker holds it (it counts against the budget and the cap).
    pub loaded: bool,
    /// Whether it is mapped: loaded, or released but still held by a caller.
    pub mapped: bool,
    /// The file's length when it was last loaded; `None` until the first load.
    pub bytes: Option<u64>,
    /// `get`s served without mapping the file.
    pub hits: u64,
    /// Times the file was mapped.
    pub loads: u64,
    /// Times a mapping was unmapped (its last `Arc<Model>` dropped).
    pub unloads: u64,
    /// The error of the last failed load, cleared by the next successful one.
    pub last_error: Option<String>,
}

/// What a [`ModelRegistry`] holds: every declared model, in declaration order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RegistryState {
    /// Every declared model.
    pub models: Vec<ModelInfo>,
    /// Bytes of the models the tracker holds.
    pub loaded_bytes: u64,
    /// The registry's cap.
    pub cap: Option<ByteSize>,
}

fn lossy_path<S: serde::Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

/// What a preload did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct PreloadReport {
    /// Models loaded (or found already loaded), in order.
    pub loaded: Vec<ResourceId>,
    /// Models that failed to load, with why.
    pub failed: Vec<(ResourceId, RegistryError)>,
    /// Models not tried because the preload was cancelled.
    pub skipped: Vec<ResourceId>,
}

impl PreloadReport {
    fn merge(&mut self, other: PreloadReport) {
        self.loaded.extend(other.loaded);
        self.failed.extend(other.failed);
        self.skipped.extend(other.skipped);
    }
}

// ---------------------------------------------------------------------------------------
// The registry
// ---------------------------------------------------------------------------------------

/// Per-model counters, shared by the slot and every mapping of the model.
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    loads: AtomicU64,
    unloads: AtomicU64,
    /// The registry's use counter at the last `get`: the LRU order.
    last_used: AtomicU64,
}

/// What changes about a model besides its counters.
#[derive(Debug, Default)]
struct SlotState {
    /// A thread is loading the model (the others wait on [`Slot::loaded`]).
    loading: bool,
    /// The last mapping, so that a mapping still held elsewhere is reused.
    mapping: Weak<Model>,
    bytes: Option<u64>,
    last_error: Option<String>,
}

/// One declared model.
#[derive(Debug)]
struct Slot {
    decl: ModelDecl,
    pinned: AtomicBool,
    counters: Arc<Counters>,
    /// Held while the model is loaded, so that concurrent first `get`s load it once.
    load: Mutex<()>,
    state: Mutex<SlotState>,
    /// Signalled when a load ends, with `state`.
    loaded: parking_lot::Condvar,
}

/// The load of one model in progress: ends it and wakes the waiters when dropped.
struct Lead<'a>(&'a Slot);

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.0.state.lock().loading = false;
        self.0.loaded.notify_all();
    }
}

/// How many loads the current thread is inside (a `get` from a release handler or an
/// admission hook runs inside one).
mod loading {
    use std::cell::Cell;

    thread_local! {
        static DEPTH: Cell<u32> = const { Cell::new(0) };
    }

    pub(super) fn depth() -> u32 {
        DEPTH.with(Cell::get)
    }

    /// Counts a load on this thread until dropped.
    pub(super) fn enter() -> Leave {
        DEPTH.with(|d| d.set(d.get() + 1));
        Leave
    }

    pub(super) struct Leave;

    impl Drop for Leave {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
}

impl Slot {
    fn id(&self) -> &str {
        self.decl.id.as_str()
    }
    /// Whether `model` is a mapping of this slot (and not another registry's of the same id).
    fn owns(&self, model: &Model) -> bool {
        Arc::ptr_eq(&self.counters, &model.counters)
    }
}

#[derive(Debug, Default)]
struct Models {
    index: HashMap<ResourceId, usize>,
    slots: Vec<Arc<Slot>>,
}

/// How a `get` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// A caller's `get`: a hit if loaded, and an access in the tracker.
    Use,
    /// A preload: loads if needed, counts nothing if loaded.
    Preload,
}

/// Makes room for a model's bytes before it is loaded, returning what must live until it
/// is registered; see [`ModelRegistry::set_admission`].
type AdmissionHook = Arc<dyn Fn(&ResourceKind, u64) -> Box<dyn Send> + Send + Sync>;

struct Inner {
    lifecycle: Arc<Lifecycle>,
    config: RegistryConfig,
    models: RwLock<Models>,
    /// Bytes of loads in progress that cap eviction has made room for: counted under the
    /// cap until the model is registered. Held only to decide, never while releasing.
    cap_reserved: Mutex<u64>,
    /// What makes room before a load; `Lifecycle::make_room` when `None`.
    admit_hook: RwLock<Option<AdmissionHook>>,
    /// Bumped on every `get`: the LRU clock.
    uses: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .field("models", &self.models)
            .field("admit_hook", &self.admit_hook.read().is_some())
            .finish_non_exhaustive()
    }
}

/// Bytes counted under the registry's cap for a load in progress, until dropped.
struct CapReservation<'a> {
    reserved: &'a Mutex<u64>,
    bytes: u64,
}

impl Drop for CapReservation<'_> {
    fn drop(&mut self) {
        *self.reserved.lock() -= self.bytes;
    }
}

/// A background preload.
#[derive(Debug)]
struct Preload {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<PreloadReport>,
}

/// Models declared up front and loaded on first use; see the [module docs](self).
///
/// Thread-safe: share it by reference or as an `Arc<ModelRegistry>`. Dropping it cancels
/// and joins its preloads, then has the reaper release the models it loaded (pinned ones
/// are unpinned first), so that a dropped registry leaves nothing in the tracker.
#[derive(Debug)]
pub struct ModelRegistry {
    inner: Arc<Inner>,
    preloads: Mutex<Vec<Preload>>,
}

impl ModelRegistry {
    /// A registry with no models, admitting them into `lifecycle`'s tracker.
    pub fn new(lifecycle: Arc<Lifecycle>, config: RegistryConfig) -> Self {
        ModelRegistry {
            inner: Arc::new(Inner {
                lifecycle,
                config,
                models: RwLock::new(Models::default()),
                cap_reserved: Mutex::new(0),
                admit_hook: RwLock::new(None),
                uses: AtomicU64::new(0),
            }),
            preloads: Mutex::new(Vec::new()),
        }
    }

    /// Makes room for each model through `hook` (kind and file length) instead of
    /// [`Lifecycle::make_room`]: give it a [`Governor`](crate::Governor)'s
    /// [`handle`](crate::Governor::handle) so that loads — preloads included — are
    /// admitted against the process's RSS, not just the tracked bytes. What the hook
    /// returns is kept until the model is registered (an
    /// [`Admission`](crate::Admission) from [`GovernorHandle::admit`](crate::governor::GovernorHandle::admit)
    /// keeps the bytes reserved meanwhile). The hook runs with no registry lock held, so
    /// it, and the release handlers it runs, may call back into the registry.
    pub fn set_admission<R: Send + 'static>(
        &self,
        hook: impl Fn(&ResourceKind, u64) -> R + Send + Sync + 'static,
    ) {
        *self.inner.admit_hook.write() = Some(Arc::new(
            move |kind: &ResourceKind, bytes: u64| -> Box<dyn Send> { Box::new(hook(kind, bytes)) },
        ));
    }

    /// The lifecycle models are admitted into.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.inner.lifecycle
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// Declares a model. Records the declaration only: the file is not opened, mapped or
    /// even looked at until the first [`get`](Self::get).
    pub fn declare(&self, decl: ModelDecl) -> Result<(), RegistryError> {
        let mut models = self.inner.models.write();
        if models.index.contains_key(&decl.id) {
            return Err(RegistryError::AlreadyDeclared { id: decl.id });
        }
        let index = models.slots.len();
        models.index.insert(decl.id.clone(), index);
        models.slots.push(Arc::new(Slot {
            pinned: AtomicBool::new(decl.pinned),
            decl,
            counters: Arc::default(),
            load: Mutex::new(()),
            state: Mutex::new(SlotState::default()),
            loaded: parking_lot::Condvar::new(),
        }));
        Ok(())
    }

    /// The model `id`, loaded if it is not: mapped, checked, and admitted into the tracker
    /// after the cap and the lifecycle's budget have made room for it.
    ///
    /// An error names the path of a model file that is missing or invalid; nothing is kept
    /// of a failed load, so the next `get` tries again.
    pub fn get(&self, id: &str) -> Result<Arc<Model>, RegistryError> {
        let slot = self.inner.slot(id)?;
        self.inner.get(&slot, Access::Use)
    }

    /// Whether the tracker holds the model `id` (it counts against the budget and the cap).
    pub fn is_loaded(&self, id: &str) -> bool {
        self.inner
            .slot(id)
            .is_ok_and(|slot| self.inner.tracked(&slot).is_some())
    }

    /// Has the reaper release the model `id` now; an empty report if it is not loaded.
    ///
    /// Callers still holding the model keep it mapped until they drop it.
    pub fn unload(&self, id: &str) -> Result<ReleaseReport, RegistryError> {
        let slot = self.inner.slot(id)?;
        if self.inner.tracked(&slot).is_none() {
            return Ok(ReleaseReport::default());
        }
        Ok(self.inner.lifecycle.reaper().release(slot.id()))
    }

    /// Pins or unpins the model `id`, now and for its future loads.
    pub fn set_pinned(&self, id: &str, pinned: bool) -> Result<(), RegistryError> {
        let slot = self.inner.slot(id)?;
        // Under the slot's state lock, which a load holds while it registers: the load
        // registers the new value, or registered before and is updated here.
        let _state = slot.state.lock();
        slot.pinned.store(pinned, Ordering::Relaxed);
        if self.inner.tracked(&slot).is_some() {
            self.inner
                .lifecycle
                .tracker()
                .set_pinned(slot.id(), pinned)
                .map_err(|source| RegistryError::Tracker {
                    id: slot.decl.id.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Loads `ids` in the background, in order, on a thread of its own; models already
    /// loaded are left as they are (and counted as neither hit nor load). With
    /// [`RegistryConfig::prefetch_preloaded`], each model is also read ahead.
    ///
    /// Fails without starting anything if an id is not declared. Collect the outcome with
    /// [`wait_preload`](Self::wait_preload); failures are also logged and kept as each
    /// model's [`ModelInfo::last_error`].
    pub fn preload<I, S>(&self, ids: I) -> Result<(), RegistryError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let slots = ids
            .into_iter()
            .map(|id| self.inner.slot(id.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let inner = Arc::clone(&self.inner);
        let thread_stop = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("memwarden-preload".into())
            .spawn(move || inner.preload(&slots, &thread_stop))
            .map_err(|source| RegistryError::Spawn { source })?;
        self.preloads.lock().push(Preload { stop, handle });
        Ok(())
    }

    /// Asks running preloads to stop after the model each is loading; does not wait.
    pub fn cancel_preload(&self) {
        for preload in self.preloads.lock().iter() {
            preload.stop.store(true, Ordering::Release);
        }
    }

    /// Waits for every preload started so far and returns what they did, together.
    pub fn wait_preload(&self) -> PreloadReport {
        let preloads = std::mem::take(&mut *self.preloads.lock());
        let mut report = PreloadReport::default();
        for preload in preloads {
            // Dropped on its own preload thread (a release handler let go of the last
            // reference): it cannot join itself; it was told to stop and ends after the
            // model it is loading.
            if preload.handle.thread().id() == std::thread::current().id() {
                preload.stop.store(true, Ordering::Release);
                continue;
            }
            match preload.handle.join() {
                Ok(done) => report.merge(done),
                Err(_) => log::error!("a model preload thread panicked"),
            }
        }
        report
    }

    /// Every declared model, in declaration order, with the registry's totals.
    pub fn inspect(&self) -> RegistryState {
        let slots = self.inner.models.read().slots.clone();
        let tracker = self.inner.lifecycle.tracker();
        let mut loaded_bytes = 0;
        let models = slots
            .iter()
            .map(|slot| {
                let info = self.inner.tracked(slot);
                if let Some(info) = &info {
                    loaded_bytes += info.bytes;
                }
                let state = slot.state.lock();
                ModelInfo {
                    id: slot.decl.id.clone(),
                    path: slot.decl.path.clone(),
                    kind: slot.decl.kind.clone(),
                    priority: info.as_ref().map_or_else(
                        || {
                            slot.decl
                                .priority
                                .unwrap_or_else(|| tracker.kind_policy(&slot.decl.kind).priority)
                        },
                        Candidate::effective_priority,
                    ),
                    pinned: info
                        .as_ref()
                        .map_or_else(|| slot.pinned.load(Ordering::Relaxed), |i| i.pinned),
                    loaded: info.is_some(),
                    mapped: state.mapping.strong_count() > 0,
                    bytes: state.bytes,
                    hits: slot.counters.hits.load(Ordering::Relaxed),
                    loads: slot.counters.loads.load(Ordering::Relaxed),
                    unloads: slot.counters.unloads.load(Ordering::Relaxed),
                    last_error: state.last_error.clone(),
                }
            })
            .collect();
        RegistryState {
            models,
            loaded_bytes,
            cap: self.inner.config.cap,
        }
    }
}

impl Drop for ModelRegistry {
    fn drop(&mut self) {
        self.cancel_preload();
        let report = self.wait_preload();
        if !report.skipped.is_empty() {
            log::debug!(
                "registry dropped: {} preloads not started",
                report.skipped.len()
            );
        }
        let slots = self.inner.models.read().slots.clone();
        let tracker = self.inner.lifecycle.tracker();
        for slot in slots {
            let Some(info) = self.inner.tracked(&slot) else {
                continue;
            };
            // Pinned by its declaration, `set_pinned`, or straight in the tracker.
            if info.pinned {
                // Fails only if the model was released meanwhile: nothing left to unpin.
                let _ = tracker.set_pinned(slot.id(), false);
            }
            let report = self.inner.lifecycle.reaper().release(slot.id());
            if report.released.is_empty() {
                log::warn!(
                    "model {} stays in the tracker after its registry was dropped: {:?}",
                    slot.id(),
                    report.skipped
                );
            }
        }
    }
}

impl Inner {
    fn slot(&self, id: &str) -> Result<Arc<Slot>, RegistryError> {
        let models = self.models.read();
        models
            .index
            .get(id)
            .map(|&i| Arc::clone(&models.slots[i]))
            .ok_or_else(|| RegistryError::Unknown { id: id.into() })
    }

    /// The tracker's record of the slot's model, if the tracker holds a mapping of it.
    fn tracked(&self, slot: &Slot) -> Option<Candidate> {
        let tracker = self.lifecycle.tracker();
        let value = tracker.peek_any(slot.id())?;
        if !value.downcast_ref::<Model>().is_some_and(|m| slot.owns(m)) {
            return None;
        }
        tracker.info(slot.id())
    }

    /// The slot's model if the tracker holds it, counted as a hit and an access.
    fn hit(&self, slot: &Slot, access: Access) -> Result<Option<Arc<Model>>, RegistryError> {
        let tracker = self.lifecycle.tracker();
        let value = match access {
            Access::Use => tracker.get_any(slot.id()),
            Access::Preload => tracker.peek_any(slot.id()),
        };
        let Some(value) = value else {
            return Ok(None);
        };
        match value.downcast::<Model>() {
            Ok(model) if slot.owns(&model) => {
                if access == Access::Use {
                    slot.counters.hits.fetch_add(1, Ordering::Relaxed);
                    self.used(slot);
                }
                Ok(Some(model))
            }
            _ => Err(RegistryError::IdTaken {
                id: slot.decl.id.clone(),
            }),
        }
    }

    fn used(&self, slot: &Slot) {
        let now = self.uses.fetch_add(1, Ordering::Relaxed) + 1;
        slot.counters.last_used.fetch_max(now, Ordering::Relaxed);
    }

    fn get(&self, slot: &Slot, access: Access) -> Result<Arc<Model>, RegistryError> {
        if let Some(model) = self.hit(slot, access)? {
            return Ok(model);
        }
        // One load per model: a thread that is loading nothing waits for another's load
        // of this model; one that is (this `get` runs in a handler or hook of its load)
        // never waits, so no two loads wait on each other.
        let leads = {
            let mut state = slot.state.lock();
            loop {
                if !state.loading {
                    state.loading = true;
                    break true;
                }
                if loading::depth() > 0 {
                    break false;
                }
                slot.loaded.wait(&mut state);
                let hit = parking_lot::MutexGuard::unlocked(&mut state, || self.hit(slot, access));
                if let Some(model) = hit? {
                    return Ok(model);
                }
            }
        };
        let _lead = leads.then(|| Lead(slot));
        let _depth = loading::enter();
        // The file is mapped and checked first (a bad file must not cost other models
        // their place), then room is made with no registry lock held: release handlers
        // (and an admission hook) may call back into the registry, even for the model
        // being loaded, without waiting on this thread. The load lock only covers the
        // last check and the registration, so two first `get`s register one mapping.
        let result = (|| -> Result<Arc<Model>, RegistryError> {
            let held = slot.state.lock().mapping.upgrade();
            let (model, fresh) = match held {
                // Released, but a caller still holds the mapping: admit that one again.
                Some(model) => (model, false),
                None => (Arc::new(self.map(slot)?), true),
            };
            let room = self.make_room(slot, model.bytes());
            let _loading = slot.load.lock();
            // Another thread may have loaded it meanwhile.
            if let Some(model) = self.hit(slot, access)? {
                return Ok(model);
            }
            self.register(slot, &model)?;
            // Registered: the bytes count in the tracker (and the cap) from now on.
            drop(room);
            if fresh {
                model.counted.store(true, Ordering::Relaxed);
                slot.counters.loads.fetch_add(1, Ordering::Relaxed);
            } else if access == Access::Use {
                slot.counters.hits.fetch_add(1, Ordering::Relaxed);
            }
            Ok(model)
        })();
        let mut state = slot.state.lock();
        match &result {
            Ok(model) => {
                state.mapping = Arc::downgrade(model);
                state.bytes = Some(model.bytes());
                state.last_error = None;
                drop(state);
                // A preload is not a use: it must not make the model look recently used.
                if access == Access::Use {
                    self.used(slot);
                }
            }
            Err(e) => {
                // The caller gets the error; a preload logs it at `warn`.
                log::debug!("cannot load model {}: {e}", slot.id());
                state.last_error = Some(e.to_string());
            }
        }
        result
    }

    /// Opens, maps and checks the slot's file.
    fn map(&self, slot: &Slot) -> Result<Model, RegistryError> {
        let path = &slot.decl.path;
        // Not a regular file (a FIFO would block the open forever, a directory cannot be
        // mapped): refuse before opening.
        let meta = std::fs::metadata(path).map_err(RegistryError::io("open", path))?;
        if !meta.is_file() {
            return Err(RegistryError::Io {
                op: "open",
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
            });
        }
        // Non-blocking and checked again on the opened file: a FIFO swapped in for the
        // file since the check neither blocks the open nor gets mapped.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(RegistryError::io("open", path))?;
        let meta = file.metadata().map_err(RegistryError::io("stat", path))?;
        if !meta.is_file() {
            return Err(RegistryError::Io {
                op: "open",
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
            });
        }
        let file_len = meta.len();
        if file_len < 8 {
            // Too short to map usefully (and an empty file cannot be mapped at all).
            return Err(RegistryError::Format {
                path: path.clone(),
                problem: FormatError::TooShort { file_len },
            });
        }
        // SAFETY: `Mmap::map` is unsafe because the mapping is shared with the file: if
        // the file is truncated while mapped, reading a lost page raises SIGBUS, and if it
        // is written, the bytes behind our `&[u8]` change. The mapping is read-only and the
        // registry never writes model files; the module documents that model files must
        // not be truncated or rewritten in place while mapped, only replaced by renaming a
        // new file over them (which leaves existing mappings on the old file). That is the
        // contract of every memory-mapped weights loader, and of `MappedWeights`.
        let map = unsafe { Mmap::map(&file) }.map_err(RegistryError::io("map", path))?;
        let parsed = parse(&map).map_err(|problem| RegistryError::Format {
            path: path.clone(),
            problem,
        })?;
        log::debug!(
            "model {} mapped: {} bytes, {} tensors ({:?})",
            slot.id(),
            map.len(),
            parsed.tensors.len(),
            path
        );
        Ok(Model {
            id: slot.decl.id.clone(),
            path: path.clone(),
            kind: slot.decl.kind.clone(),
            map,
            tensors: parsed.tensors,
            metadata: parsed.metadata,
            counters: Arc::clone(&slot.counters),
            counted: AtomicBool::new(false),
        })
    }

    /// Makes room for `bytes` of the slot's model under the cap and the budget, and
    /// reserves them; the reservations end when the returned value is dropped.
    fn make_room(&self, slot: &Slot, bytes: u64) -> (Option<CapReservation<'_>>, Box<dyn Send>) {
        let cap = self
            .config
            .cap
            .map(|cap| self.evict_for(slot, bytes, cap.as_u64()));
        let hook = self.admit_hook.read().clone();
        let admission = match hook {
            Some(hook) => hook(&slot.decl.kind, bytes),
            None => Box::new(self.lifecycle.admit(&slot.decl.kind, bytes)),
        };
        (cap, admission)
    }

    /// Registers `model`, pinned as the slot is now.
    fn register(&self, slot: &Slot, model: &Arc<Model>) -> Result<(), RegistryError> {
        let decl = &slot.decl;
        // Held across the registration: `set_pinned` then sees the model registered, or
        // this sees its new value.
        let _state = slot.state.lock();
        let mut spec = ResourceSpec::new(decl.id.clone(), decl.kind.clone(), model.bytes())
            .pinned(slot.pinned.load(Ordering::Relaxed));
        if let Some(priority) = decl.priority {
            spec = spec.priority(priority);
        }
        if let Some(max_idle) = decl.max_idle {
            spec = spec.max_idle(max_idle);
        }
        match self
            .lifecycle
            .tracker()
            .register_arc(spec, Arc::clone(model))
        {
            Ok(()) => Ok(()),
            Err(TrackerError::AlreadyRegistered { .. }) => Err(RegistryError::IdTaken {
                id: decl.id.clone(),
            }),
            Err(source) => Err(RegistryError::Tracker {
                id: decl.id.clone(),
                source,
            }),
        }
    }

    /// Has the reaper release loaded models, lowest priority and least recently used
    /// first, until `incoming` more bytes fit under `cap` beside the loads in progress,
    /// and reserves them. The victims are chosen under the reservation lock and released
    /// after it is let go.
    fn evict_for(&self, incoming_slot: &Slot, incoming: u64, cap: u64) -> CapReservation<'_> {
        let slots = self.models.read().slots.clone();
        let mut refused: HashSet<ResourceId> = HashSet::new();
        loop {
            let victim = {
                let mut reserved = self.cap_reserved.lock();
                let loaded: Vec<(&Arc<Slot>, Candidate)> = slots
                    .iter()
                    .filter(|s| !std::ptr::eq(s.as_ref(), incoming_slot))
                    .filter_map(|s| Some((s, self.tracked(s)?)))
                    .collect();
                let used: u64 = loaded
                    .iter()
                    .map(|(_, c)| c.bytes)
                    .sum::<u64>()
                    .saturating_add(*reserved);
                let victim = loaded
                    .iter()
                    .filter(|(_, c)| !c.pinned && !refused.contains(&c.id))
                    .min_by_key(|(s, c)| {
                        (
                            c.effective_priority(),
                            s.counters.last_used.load(Ordering::Relaxed),
                        )
                    });
                let victim = match victim {
                    _ if used.saturating_add(incoming) <= cap => None,
                    Some((_, victim)) => Some(victim.id.clone()),
                    None => {
                        log::warn!(
                            "model {} ({incoming} bytes) goes over the registry's cap of {cap} \
                             bytes: the {used} bytes loaded or loading are pinned or protected",
                            incoming_slot.id()
                        );
                        None
                    }
                };
                if victim.is_none() {
                    // Room made (or none to make): the bytes count from now on.
                    *reserved += incoming;
                }
                victim
            };
            let Some(victim) = victim else {
                return CapReservation {
                    reserved: &self.cap_reserved,
                    bytes: incoming,
                };
            };
            let report = self.lifecycle.reaper().release(victim.as_str());
            if report.released.is_empty() {
                refused.insert(victim);
            } else {
                log::debug!(
                    "model {victim} released to make room for {} under the cap",
                    incoming_slot.id()
                );
            }
        }
    }

    fn preload(&self, slots: &[Arc<Slot>], stop: &AtomicBool) -> PreloadReport {
        let mut report = PreloadReport::default();
        for (i, slot) in slots.iter().enumerate() {
            if stop.load(Ordering::Acquire) {
                report
                    .skipped
                    .extend(slots[i..].iter().map(|s| s.decl.id.clone()));
                break;
            }
            match self.get(slot, Access::Preload) {
                Ok(model) => {
                    if self.config.prefetch_preloaded {
                        model.prefetch();
                    }
                    report.loaded.push(slot.decl.id.clone());
                }
                Err(e) => {
                    log::warn!("cannot preload model {}: {e}", slot.id());
                    report.failed.push((slot.decl.id.clone(), e));
                }
            }
        }
        report
    }
}
