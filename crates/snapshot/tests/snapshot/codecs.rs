//! Round trips of every codec with random content, and what decoders reject.

use std::io::Write;
use std::sync::Arc;

use memwarden_snapshot::{
    AudioClip, MappedWeights, PixelFormat, RenderFrame, Snapshot, SnapshotError, SubtitleEntry,
    SubtitleIndex, codec,
};
use proptest::prelude::*;

fn encoded<T: Snapshot>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode(&mut out).expect("encodes");
    out
}

fn frame() -> impl Strategy<Value = RenderFrame> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        0..PixelFormat::ALL.len(),
        any::<u64>(),
        any::<i64>(),
        proptest::collection::vec(any::<u8>(), 0..4096),
    )
        .prop_map(
            |(width, height, stride, f, index, pts_us, pixels)| RenderFrame {
                width,
                height,
                stride,
                format: PixelFormat::ALL[f],
                index,
                pts_us,
                pixels,
            },
        )
}

fn clip() -> impl Strategy<Value = AudioClip> {
    (any::<u32>(), 1u16..8, 0usize..512).prop_flat_map(|(sample_rate, channels, frames)| {
        proptest::collection::vec(any::<u32>(), frames * usize::from(channels)).prop_map(
            move |bits| AudioClip {
                sample_rate,
                channels,
                samples: bits.into_iter().map(f32::from_bits).collect(),
            },
        )
    })
}

fn subtitles() -> impl Strategy<Value = SubtitleIndex> {
    proptest::collection::vec(
        (any::<u64>(), any::<u64>(), ".{0,40}").prop_map(|(start_ms, end_ms, text)| {
            SubtitleEntry {
                start_ms,
                end_ms,
                text,
            }
        }),
        0..32,
    )
    .prop_map(|entries| SubtitleIndex { entries })
}

fn sample_bits(clip: &AudioClip) -> Vec<u32> {
    clip.samples.iter().map(|s| s.to_bits()).collect()
}

/// Every strict prefix and every extension by one byte of a valid encoding is rejected.
fn rejects_damage<T: Snapshot + std::fmt::Debug>(bytes: &[u8]) {
    for cut in 0..bytes.len() {
        assert!(
            T::decode(&bytes[..cut], T::VERSION).is_err(),
            "prefix of {cut} bytes decoded"
        );
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(
        T::decode(&longer, T::VERSION).is_err(),
        "trailing byte accepted"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn render_frames_round_trip(frame in frame()) {
        let bytes = encoded(&frame);
        prop_assert_eq!(RenderFrame::decode(&bytes, RenderFrame::VERSION).expect("decodes"), frame);
    }

    #[test]
    fn audio_clips_round_trip_bit_for_bit(clip in clip()) {
        let bytes = encoded(&clip);
        let back = AudioClip::decode(&bytes, AudioClip::VERSION).expect("decodes");
        prop_assert_eq!(back.sample_rate, clip.sample_rate);
        prop_assert_eq!(back.channels, clip.channels);
        prop_assert_eq!(sample_bits(&back), sample_bits(&clip));
    }

    #[test]
    fn subtitle_indexes_round_trip(subs in subtitles()) {
        let bytes = encoded(&subs);
        prop_assert_eq!(SubtitleIndex::decode(&bytes, SubtitleIndex::VERSION).expect("decodes"), subs);
    }

    #[test]
    fn mapped_weights_round_trip_by_reference(
        content in proptest::collection::vec(any::<u8>(), 1..8192),
        start in any::<prop::sample::Index>(),
        span in any::<prop::sample::Index>(),
    ) {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(&content).expect("writes");
        file.flush().expect("flushes");
        let offset = start.index(content.len());
        let len = span.index(content.len() - offset + 1);
        let weights = MappedWeights::open(file.path(), offset as u64, len as u64).expect("maps");
        prop_assert_eq!(weights.bytes(), &content[offset..offset + len]);
        let bytes = encoded(&weights);
        // Only the reference is written, never the weights themselves.
        prop_assert!(bytes.len() < file.path().as_os_str().len() + 48);
        let back = MappedWeights::decode(&bytes, MappedWeights::VERSION).expect("decodes");
        prop_assert_eq!(back.bytes(), &content[offset..offset + len]);
        prop_assert_eq!(back, weights);
    }

    #[test]
    fn damaged_frames_and_subtitles_are_rejected(frame in frame(), subs in subtitles()) {
        rejects_damage::<RenderFrame>(&encoded(&frame));
        rejects_damage::<SubtitleIndex>(&encoded(&subs));
    }
}

#[test]
fn damaged_audio_and_weights_are_rejected() {
    let clip = AudioClip {
        sample_rate: 48_000,
        channels: 2,
        samples: vec![0.25, -0.25, f32::NAN, -0.0],
    };
    rejects_damage::<AudioClip>(&encoded(&clip));
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(&[7; 100]).expect("writes");
    let weights = MappedWeights::open(file.path(), 10, 50).expect("maps");
    rejects_damage::<MappedWeights>(&encoded(&weights));
}

#[test]
fn decoders_reject_what_they_cannot_read() {
    let frame = RenderFrame {
        width: 2,
        height: 1,
        stride: 8,
        format: PixelFormat::Rgba8,
        index: 3,
        pts_us: -40,
        pixels: vec![1; 8],
    };
    let mut bytes = encoded(&frame);
    let err = RenderFrame::decode(&bytes, 2).expect_err("unknown version");
    assert!(
        matches!(
            err,
            SnapshotError::UnsupportedVersion {
                version: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    bytes[12] = 200; // the pixel format tag
    let err = RenderFrame::decode(&bytes, 1).expect_err("unknown format");
    assert!(
        err.to_string().contains("unknown pixel format 200"),
        "{err}"
    );

    let bad_channels = AudioClip {
        sample_rate: 1,
        channels: 2,
        samples: vec![0.0; 3],
    };
    assert!(bad_channels.encode(&mut Vec::new()).is_err());
    let no_channels = AudioClip {
        channels: 0,
        samples: Vec::new(),
        ..bad_channels
    };
    assert!(no_channels.encode(&mut Vec::new()).is_err());

    let subs = SubtitleIndex {
        entries: vec![SubtitleEntry {
            start_ms: 1,
            end_ms: 2,
            text: "é".into(),
        }],
    };
    let mut bytes = encoded(&subs);
    let last = bytes.len() - 1;
    bytes[last] = 0xff; // breaks the UTF-8 of the text
    let err = SubtitleIndex::decode(&bytes, 1).expect_err("invalid UTF-8");
    assert!(err.to_string().contains("entry 0"), "{err}");
    // A huge entry count is refused before anything is allocated for it.
    let err = SubtitleIndex::decode(&u64::MAX.to_le_bytes(), 1).expect_err("too many");
    assert!(err.to_string().contains("does not fit"), "{err}");
}

#[test]
fn mapped_weights_check_the_file_length() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weights.bin");
    std::fs::write(&path, [1u8; 64]).expect("writes");
    let err = MappedWeights::open(&path, 60, 8).expect_err("past the end");
    assert!(
        matches!(
            err,
            SnapshotError::WeightsLength {
                expected: 68,
                actual: 64,
                ..
            }
        ),
        "{err}"
    );
    let empty = MappedWeights::open(&path, 64, 0).expect("an empty range maps");
    assert_eq!(empty.bytes(), &[] as &[u8]);

    let weights = MappedWeights::open(&path, 0, 64).expect("maps");
    let bytes = encoded(&weights);
    drop(weights);
    // The file shrank after the snapshot: decode fails instead of mapping past the end.
    std::fs::write(&path, [1u8; 32]).expect("rewrites");
    let err = MappedWeights::decode(&bytes, MappedWeights::VERSION).expect_err("file shrank");
    assert!(
        matches!(err, SnapshotError::WeightsLength { actual: 32, .. }),
        "{err}"
    );
    std::fs::remove_file(&path).expect("removes");
    let err = MappedWeights::decode(&bytes, MappedWeights::VERSION).expect_err("file gone");
    assert!(matches!(err, SnapshotError::Io { op: "open", .. }), "{err}");
}

#[test]
fn erased_codecs_encode_only_their_type() {
    let subs = SubtitleIndex {
        entries: vec![SubtitleEntry {
            start_ms: 5,
            end_ms: 9,
            text: "hi".into(),
        }],
    };
    let erased = codec::<SubtitleIndex>();
    assert_eq!(erased.version(), SubtitleIndex::VERSION);
    assert!(erased.type_name().ends_with("SubtitleIndex"));
    let value: Arc<dyn std::any::Any + Send + Sync> = Arc::new(subs.clone());
    let mut bytes = Vec::new();
    erased
        .encode_any(value.as_ref(), &mut bytes)
        .expect("its own type")
        .expect("encodes");
    assert_eq!(bytes, encoded(&subs));
    assert!(
        codec::<AudioClip>()
            .encode_any(value.as_ref(), &mut Vec::new())
            .is_none()
    );
    let back = erased.decode_any(&bytes, 1).expect("decodes");
    assert_eq!(back.downcast_ref::<SubtitleIndex>(), Some(&subs));
    assert!(erased.decode_any(&bytes[1..], 1).is_err());
    assert!(format!("{erased:?}").contains("SubtitleIndex"));
}

#[test]
fn replaced_weights_files_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.bin");
    std::fs::write(&path, [1u8; 64]).expect("writes");
    let weights = MappedWeights::open(&path, 0, 64).expect("maps");
    let bytes = encoded(&weights);
    drop(weights);
    // Same length, other contents, replaced by rename as the docs recommend.
    let fresh = dir.path().join("model.bin.new");
    std::fs::write(&fresh, [2u8; 64]).expect("writes");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&fresh)
        .expect("opens")
        .set_modified(later)
        .expect("sets mtime");
    std::fs::rename(&fresh, &path).expect("renames");
    let err = MappedWeights::decode(&bytes, MappedWeights::VERSION).expect_err("replaced file");
    assert!(matches!(err, SnapshotError::WeightsChanged { .. }), "{err}");
}
