//! [`Snapshotter`]: values of snapshotted kinds saved into a [`SnapshotStore`] through their kind's codec, and restored.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use memwarden_core::{ResourceId, ResourceKind};
use parking_lot::RwLock;

use crate::{
    AudioClip, ErasedCodec, MappedWeights, RenderFrame, SnapshotError, SnapshotStore,
    SubtitleIndex, codec,
};

/// Saves and restores type-erased values by kind: a [`SnapshotStore`] and the codec
/// each snapshotted kind is written with.
///
/// The store deals in bytes; a snapshotter deals in values, which is what a registry of
/// `Arc<dyn Any + Send + Sync>` holds. A kind is snapshotted when it has a codec
/// ([`set_codec`](Self::set_codec), or [`with_builtin_codecs`](Self::with_builtin_codecs));
/// a value of another type than its kind's codec is not snapshotted.
///
/// ```
/// use std::sync::Arc;
/// use memwarden_core::{ResourceId, ResourceKind, SystemClock};
/// use memwarden_snapshot::{SnapshotStore, Snapshotter, StoreConfig, SubtitleEntry, SubtitleIndex};
///
/// let dir = std::env::temp_dir().join(format!("memwarden-snapshotter-doc-{}", std::process::id()));
/// let store = SnapshotStore::open(StoreConfig::new(&dir), Arc::new(SystemClock::new()))?;
/// let snapshotter = Snapshotter::new(Arc::new(store)).with_builtin_codecs([&ResourceKind::SubtitleIndex]);
///
/// let (id, kind) = (ResourceId::from("subs/en"), ResourceKind::SubtitleIndex);
/// let subs = SubtitleIndex {
///     entries: vec![SubtitleEntry { start_ms: 0, end_ms: 1_500, text: "Hello".into() }],
/// };
/// assert!(snapshotter.save(&id, &kind, 64, &subs)?.is_some());
/// assert_eq!(snapshotter.save(&id, &kind, 4, &7u32)?, None, "not a SubtitleIndex: nothing saved");
///
/// let back = snapshotter.restore(&id, &kind).expect("saved above");
/// assert_eq!(back.downcast_ref::<SubtitleIndex>(), Some(&subs));
/// # drop(snapshotter);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), memwarden_snapshot::SnapshotError>(())
/// ```
pub struct Snapshotter {
    store: Arc<SnapshotStore>,
    codecs: RwLock<HashMap<ResourceKind, Arc<dyn ErasedCodec>>>,
}

impl fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshotter")
            .field("store", &self.store)
            .field("codecs", &*self.codecs.read())
            .finish()
    }
}

impl Snapshotter {
    /// A snapshotter into `store` that snapshots no kind yet.
    pub fn new(store: Arc<SnapshotStore>) -> Self {
        Snapshotter {
            store,
            codecs: RwLock::new(HashMap::new()),
        }
    }

    /// Snapshots each of `kinds` that has a built-in codec with it:
    /// [`RenderFrame`] for `render_cache`, [`AudioClip`] for `audio_cache`,
    /// [`SubtitleIndex`] for `subtitle_index` and [`MappedWeights`] for `model_shards`
    /// and `model_weights_cache`. Other kinds are left out; give them a codec with
    /// [`set_codec`](Self::set_codec).
    pub fn with_builtin_codecs<'a>(
        self,
        kinds: impl IntoIterator<Item = &'a ResourceKind>,
    ) -> Self {
        {
            let mut codecs = self.codecs.write();
            for kind in kinds {
                match builtin_codec(kind) {
                    Some(codec) => {
                        codecs.insert(kind.clone(), codec);
                    }
                    None => log::debug!("{kind} has no built-in codec; it is not snapshotted"),
                }
            }
        }
        self
    }

    /// Snapshots every value of `kind` with `codec`, replacing the kind's codec if it had one.
    pub fn set_codec(&self, kind: ResourceKind, codec: Arc<dyn ErasedCodec>) {
        self.codecs.write().insert(kind, codec);
    }

    /// The codec `kind` is snapshotted with, if it is.
    pub fn codec(&self, kind: &ResourceKind) -> Option<Arc<dyn ErasedCodec>> {
        self.codecs.read().get(kind).cloned()
    }

    /// The store snapshots go to.
    pub fn store(&self) -> &Arc<SnapshotStore> {
        &self.store
    }

    /// Saves `value`, the value of `id`, holding `held_bytes` of memory, as `id`'s
    /// snapshot; the size of the snapshot written.
    ///
    /// `Ok(None)` when there is nothing to save: `kind` has no codec, or `value` is not of
    /// its codec's type (logged). A value whose `held_bytes` exceed the store's disk limit
    /// is refused with [`SnapshotError::TooLarge`] before it is encoded; an encoding or
    /// write error is returned as it is, and nothing of it is kept.
    pub fn save(
        &self,
        id: &ResourceId,
        kind: &ResourceKind,
        held_bytes: u64,
        value: &(dyn Any + Send + Sync),
    ) -> Result<Option<u64>, SnapshotError> {
        let Some(codec) = self.codec(kind) else {
            return Ok(None);
        };
        // Do not encode what the store would refuse anyway.
        let limit = self.store.config().disk_bytes;
        if held_bytes > limit {
            return Err(SnapshotError::TooLarge {
                id: id.clone(),
                bytes: held_bytes,
                limit,
            });
        }
        let mut payload = Vec::new();
        match codec.encode_any(value, &mut payload) {
            None => {
                log::debug!(
                    "{id} ({kind}) is not a {}; not snapshotted",
                    codec.type_name()
                );
                Ok(None)
            }
            Some(encoded) => {
                encoded?;
                let written = self.store.put(id, kind, codec.version(), &payload)?;
                Ok(Some(written.bytes))
            }
        }
    }

    /// The value saved as `id`'s snapshot of `kind`, decoded with the kind's codec.
    ///
    /// `None` when `kind` has no codec or the store has no sound snapshot of `id` as
    /// `kind` (see [`SnapshotStore::get`]), or when the codec cannot decode it (logged):
    /// a miss, never wrong data.
    pub fn restore(
        &self,
        id: &ResourceId,
        kind: &ResourceKind,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let codec = self.codec(kind)?;
        let (version, bytes) = self.store.get(id, kind)?;
        match codec.decode_any(&bytes, version) {
            Ok(value) => Some(value),
            Err(e) => {
                log::warn!("cannot restore {id} ({kind}) from its snapshot: {e}");
                None
            }
        }
    }
}

/// The codec a built-in kind is snapshotted with.
fn builtin_codec(kind: &ResourceKind) -> Option<Arc<dyn ErasedCodec>> {
    match kind {
        ResourceKind::RenderCache => Some(codec::<RenderFrame>()),
        ResourceKind::AudioCache => Some(codec::<AudioClip>()),
        ResourceKind::SubtitleIndex => Some(codec::<SubtitleIndex>()),
        ResourceKind::ModelShards | ResourceKind::ModelWeightsCache => {
            Some(codec::<MappedWeights>())
        }
        _ => None,
    }
}
