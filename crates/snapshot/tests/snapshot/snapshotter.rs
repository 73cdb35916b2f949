//! The snapshotter: values saved through their kind's codec, restored, or refused.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use memwarden_core::{ManualClock, ResourceId, ResourceKind};
use memwarden_snapshot::{
    ErasedCodec, PixelFormat, RenderFrame, SnapshotError, SnapshotStore, Snapshotter, StoreConfig,
    WriteFault,
};

use crate::{disk_only, files, open};

const RENDER: ResourceKind = ResourceKind::RenderCache;

fn frame(index: u64) -> RenderFrame {
    RenderFrame {
        width: 8,
        height: 2,
        stride: 32,
        format: PixelFormat::Rgba8,
        index,
        pts_us: index as i64 * 40_000,
        pixels: (0..64).map(|i| (i as u64 * 7 + index) as u8).collect(),
    }
}

fn snapshotter(config: StoreConfig) -> Snapshotter {
    let store: SnapshotStore = open(config, &ManualClock::new());
    Snapshotter::new(Arc::new(store)).with_builtin_codecs([&RENDER])
}

/// A codec of `u64`s that counts its encodings and refuses to encode 0.
#[derive(Default)]
struct Counted(AtomicUsize);

impl ErasedCodec for Counted {
    fn version(&self) -> u32 {
        1
    }
    fn type_name(&self) -> &'static str {
        "u64"
    }
    fn encode_any(
        &self,
        value: &(dyn Any + Send + Sync),
        out: &mut Vec<u8>,
    ) -> Option<Result<(), SnapshotError>> {
        let value = value.downcast_ref::<u64>()?;
        self.0.fetch_add(1, Ordering::SeqCst);
        if *value == 0 {
            return Some(Err(SnapshotError::Malformed {
                type_name: "u64",
                reason: "zero".into(),
            }));
        }
        out.extend_from_slice(&value.to_le_bytes());
        Some(Ok(()))
    }
    fn decode_any(
        &self,
        bytes: &[u8],
        _version: u32,
    ) -> Result<Arc<dyn Any + Send + Sync>, SnapshotError> {
        let bytes: [u8; 8] = bytes.try_into().map_err(|_| SnapshotError::Malformed {
            type_name: "u64",
            reason: format!("{} bytes", bytes.len()),
        })?;
        Ok(Arc::new(u64::from_le_bytes(bytes)))
    }
}

#[test]
fn a_saved_value_is_restored_through_its_kinds_codec() {
    let dir = tempfile::tempdir().expect("temp dir");
    let snapshotter = snapshotter(disk_only(dir.path()));
    let id = ResourceId::from("frame-1");
    let written = snapshotter
        .save(&id, &RENDER, 64, &frame(1))
        .expect("saved")
        .expect("a RenderFrame is saved");
    let file = files(dir.path(), "snap").remove(0);
    assert_eq!(written, std::fs::metadata(file).expect("a file").len());
    let back = snapshotter.restore(&id, &RENDER).expect("restored");
    assert_eq!(back.downcast_ref::<RenderFrame>(), Some(&frame(1)));
    assert!(
        snapshotter
            .restore(&id, &ResourceKind::AudioCache)
            .is_none(),
        "asked as another kind: a miss"
    );
}

#[test]
fn kinds_without_a_codec_and_values_of_another_type_are_not_saved() {
    let dir = tempfile::tempdir().expect("temp dir");
    let snapshotter = snapshotter(disk_only(dir.path()));
    let id = ResourceId::from("x");
    let temp = ResourceKind::TempBuffers;
    assert_eq!(snapshotter.save(&id, &temp, 64, &frame(1)).ok(), Some(None));
    assert_eq!(snapshotter.save(&id, &RENDER, 4, &7u32).ok(), Some(None));
    assert!(files(dir.path(), "snap").is_empty());
    assert!(snapshotter.restore(&id, &temp).is_none());
}

#[test]
fn built_in_kinds_get_their_built_in_codecs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let custom: ResourceKind = "thumbnails".parse().expect("a custom kind");
    let mut kinds = ResourceKind::BUILTIN.to_vec();
    kinds.push(custom.clone());
    let store = open(disk_only(dir.path()), &ManualClock::new());
    let snapshotter = Snapshotter::new(Arc::new(store)).with_builtin_codecs(&kinds);
    let check = |kind: &ResourceKind, expected: Option<&str>| {
        let found = snapshotter.codec(kind).map(|c| c.type_name());
        assert_eq!(
            found.map(|name| name.rsplit("::").next().unwrap_or(name)),
            expected,
            "{kind}"
        );
    };
    check(&ResourceKind::RenderCache, Some("RenderFrame"));
    check(&ResourceKind::AudioCache, Some("AudioClip"));
    check(&ResourceKind::SubtitleIndex, Some("SubtitleIndex"));
    check(&ResourceKind::ModelShards, Some("MappedWeights"));
    check(&ResourceKind::ModelWeightsCache, Some("MappedWeights"));
    check(&ResourceKind::TempBuffers, None);
    check(&custom, None);

    snapshotter.set_codec(custom.clone(), Arc::new(Counted::default()));
    check(&custom, Some("u64"));
    let id = ResourceId::from("thumb-1");
    assert!(
        snapshotter
            .save(&id, &custom, 8, &42u64)
            .expect("saved")
            .is_some()
    );
    let back = snapshotter.restore(&id, &custom).expect("restored");
    assert_eq!(back.downcast_ref::<u64>(), Some(&42));
}

#[test]
fn a_value_larger_than_the_disk_limit_is_refused_before_it_is_encoded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let snapshotter = snapshotter(disk_only(dir.path()));
    let codec = Arc::new(Counted::default());
    snapshotter.set_codec(RENDER, Arc::clone(&codec) as Arc<dyn ErasedCodec>);
    let limit = snapshotter.store().config().disk_bytes;
    let id = ResourceId::from("huge");
    let error = snapshotter
        .save(&id, &RENDER, limit + 1, &42u64)
        .expect_err("too large");
    assert!(
        matches!(error, SnapshotError::TooLarge { bytes, limit: l, .. } if bytes == limit + 1 && l == limit),
        "{error}"
    );
    assert_eq!(codec.0.load(Ordering::SeqCst), 0, "not encoded");
    assert!(snapshotter.save(&id, &RENDER, limit, &42u64).is_ok());
    assert_eq!(codec.0.load(Ordering::SeqCst), 1);
}

#[test]
fn encoding_and_write_errors_are_returned_and_nothing_is_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = disk_only(dir.path());
    let fail = config.fail_point.clone();
    let snapshotter = snapshotter(config);
    let custom: ResourceKind = "counters".parse().expect("a custom kind");
    snapshotter.set_codec(custom.clone(), Arc::new(Counted::default()));
    let id = ResourceId::from("c");
    let error = snapshotter
        .save(&id, &custom, 8, &0u64)
        .expect_err("0 does not encode");
    assert!(matches!(error, SnapshotError::Malformed { .. }), "{error}");

    fail.arm(WriteFault::SyncFile);
    let error = snapshotter
        .save(&id, &RENDER, 64, &frame(2))
        .expect_err("the sync fails");
    assert!(
        matches!(error, SnapshotError::Io { op: "sync", .. }),
        "{error}"
    );
    fail.disarm();
    assert!(files(dir.path(), "snap").is_empty());
    assert!(files(dir.path(), "tmp").is_empty());
    assert!(snapshotter.restore(&id, &RENDER).is_none());
}

#[test]
fn a_snapshot_the_codec_cannot_decode_is_a_miss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let snapshotter = snapshotter(disk_only(dir.path()));
    let id = ResourceId::from("frame-9");
    let version = snapshotter.codec(&RENDER).expect("a codec").version();
    // Sound bytes, as far as the store can tell, that are no RenderFrame.
    snapshotter
        .store()
        .put(&id, &RENDER, version, b"not a frame")
        .expect("put");
    assert!(snapshotter.restore(&id, &RENDER).is_none());
    assert_eq!(snapshotter.store().stats().hits, 1, "the store found it");
}
