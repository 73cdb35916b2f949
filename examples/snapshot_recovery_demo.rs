//! Snapshot before release, restore on access, and a store that never returns wrong data.
//!
//! Five acts on a [`SnapshotStore`] in a temporary directory, each checked as it goes (the
//! demo fails if the store behaves otherwise):
//!
//! 1. a render frame, an audio clip, a subtitle index and model weights are snapshotted.
//!    The weights are a small real file written here; their snapshot is only a reference
//!    to it ([`MappedWeights`]: path, offset, length), mapped again on restore. The
//!    memory tier is too small for the frame, so the frame lives on disk only;
//! 2. the values are released (dropped), then each is restored and compared with a fresh
//!    copy built by the same generator; the store's statistics are printed as JSON;
//! 3. one byte of the frame's file is flipped on disk: the next restore is a miss, the
//!    file is moved to `quarantine/`, and no wrong frame is ever returned;
//! 4. a crash is staged: a leftover temporary file, and the subtitle index's previous
//!    snapshot put back beside its newer one (as if the process died after the new file
//!    was durable but before the old one was deleted). Reopening the store removes the
//!    temporary file, keeps the snapshot with the higher sequence and deletes the other;
//! 5. time runs on a [`ManualClock`] with a ten-minute TTL: a snapshot written later
//!    survives a [`gc`](SnapshotStore::gc) pass that removes the ones that ran out.
//!
//! File names, sequences and statistics are the same on every run. The store also logs,
//! on stderr: the wrong-kind request in act 2 at `warn`, the bad file at `error` (with the
//! temporary path), and the recovery at `info` (hidden by default). The temporary
//! directory is removed at the end.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p memwarden-examples --example snapshot_recovery_demo
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use memwarden::core::{ManualClock, ResourceId, ResourceKind};
use memwarden_snapshot::{
    AudioClip, MappedWeights, PixelFormat, QUARANTINE_DIR, RenderFrame, SnapshotStore, StoreConfig,
    SubtitleEntry, SubtitleIndex, Tier,
};

const KIB: usize = 1 << 10;
/// How long a snapshot lives after it is written.
const TTL: Duration = Duration::from_secs(600);
/// The fake header in front of the weights in the weights file.
const WEIGHTS_HEADER: usize = 64;
/// Number of `f32` weights in the file.
const WEIGHTS: usize = 16 * KIB;

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();

    let root = tempfile::Builder::new()
        .prefix("memwarden-snapshot-demo-")
        .tempdir()?;
    let dir = root.path().join("store");
    let weights_path = write_weights_file(root.path())?;
    let clock = ManualClock::new();
    let config = StoreConfig {
        // Room for the clip, the subtitles and the weights reference, not for the frame.
        memory_bytes: (128 * KIB) as u64,
        disk_bytes: 16 << 20,
        ttl: Some(TTL),
        ..StoreConfig::new(&dir)
    };
    let store = SnapshotStore::open(config.clone(), Arc::new(clock.clone()))?;

    let frame_id = ResourceId::from("render/shot-12/frame-0042");
    let clip_id = ResourceId::from("audio/intro-theme");
    let subs_id = ResourceId::from("subs/en");
    let weights_id = ResourceId::from("model/tiny/layer-0");

    println!("== 1. snapshot four resources before releasing them ==");
    let frame = render_frame();
    let clip = audio_clip();
    let subs = subtitle_index(1);
    let weights = MappedWeights::open(&weights_path, WEIGHTS_HEADER as u64, (WEIGHTS * 4) as u64)?;
    println!(
        "render frame {}x{} {:?}: {} pixel bytes",
        frame.width,
        frame.height,
        frame.format,
        frame.pixels.len()
    );
    println!(
        "audio clip {} Hz x {} channels: {} samples",
        clip.sample_rate,
        clip.channels,
        clip.samples.len()
    );
    println!("subtitle index: {} entries", subs.entries.len());
    println!(
        "weights: {} bytes mapped from {} at offset {}",
        weights.len,
        file_name(&weights_path),
        weights.offset
    );
    let frame_info = store.save(&frame_id, &ResourceKind::RenderCache, &frame)?;
    let clip_info = store.save(&clip_id, &ResourceKind::AudioCache, &clip)?;
    let subs_info = store.save(&subs_id, &ResourceKind::SubtitleIndex, &subs)?;
    let weights_info = store.save(&weights_id, &ResourceKind::ModelWeightsCache, &weights)?;
    for (id, info) in [
        (&frame_id, frame_info),
        (&clip_id, clip_info),
        (&subs_id, subs_info),
        (&weights_id, weights_info),
    ] {
        println!(
            "  {:<26} sequence {} {:>7} bytes on disk, tier {:?}",
            id.as_str(),
            info.sequence,
            info.bytes,
            info.tier
        );
    }
    ensure!(
        frame_info.tier == Tier::Disk,
        "the frame is too big for the memory tier"
    );
    ensure!(
        weights_info.bytes < 256,
        "a weights snapshot is a reference, not a copy of the weights"
    );
    list_dir(&dir)?;

    println!("\n== 2. release them, then restore each and compare ==");
    drop((frame, clip, subs, weights));
    let frame = store
        .load::<RenderFrame>(&frame_id, &ResourceKind::RenderCache)
        .context("the frame restores")?;
    ensure!(frame == render_frame(), "the restored frame differs");
    println!(
        "render frame: restored from disk, {} pixel bytes, equal",
        frame.pixels.len()
    );
    let clip = store
        .load::<AudioClip>(&clip_id, &ResourceKind::AudioCache)
        .context("the clip restores")?;
    ensure!(clip == audio_clip(), "the restored clip differs");
    println!("audio clip: {} samples, equal", clip.samples.len());
    let subs = store
        .load::<SubtitleIndex>(&subs_id, &ResourceKind::SubtitleIndex)
        .context("the subtitles restore")?;
    ensure!(subs == subtitle_index(1), "the restored subtitles differ");
    println!(
        "subtitle index: {} entries, equal; first {:?}",
        subs.entries.len(),
        subs.entries[0].text
    );
    let weights = store
        .load::<MappedWeights>(&weights_id, &ResourceKind::ModelWeightsCache)
        .context("the weights restore")?;
    let on_disk = fs::read(&weights_path)?;
    ensure!(
        weights.bytes() == &on_disk[WEIGHTS_HEADER..],
        "the mapped weights differ from the file"
    );
    let first = f32::from_le_bytes(weights.bytes()[..4].try_into()?);
    println!(
        "weights: mapped again, {} bytes equal to the file, first weight {first}",
        weights.bytes().len()
    );
    // Asked for as the wrong kind: a miss, not a misread.
    ensure!(
        store
            .load::<AudioClip>(&subs_id, &ResourceKind::AudioCache)
            .is_none(),
        "a wrong-kind restore is a miss"
    );
    println!("subs/en asked for as audio_cache: a miss");
    drop((frame, clip, subs, weights));
    println!("stats: {}", serde_json::to_string_pretty(&store.stats())?);

    println!("\n== 3. flip one byte of the frame's file on disk ==");
    let frame_file = snapshot_file(&dir, frame_info.sequence)?;
    let mut image = fs::read(&frame_file)?;
    let at = image.len() / 2;
    image[at] ^= 0x01;
    fs::write(&frame_file, &image)?;
    println!("flipped byte {at} of {}", file_name(&frame_file));
    let restored = store.load::<RenderFrame>(&frame_id, &ResourceKind::RenderCache);
    ensure!(restored.is_none(), "a corrupt snapshot must be a miss");
    let stats = store.stats();
    ensure!(
        stats.corrupt == 1 && stats.quarantined == 1,
        "the bad file is quarantined"
    );
    println!(
        "restore of {frame_id}: a miss (corrupt {}, quarantined {}); the reaper would recompute it",
        stats.corrupt, stats.quarantined
    );
    ensure!(
        !store.contains(&frame_id),
        "the bad snapshot left the index"
    );
    list_dir(&dir)?;

    println!("\n== 4. stage a crash, then reopen ==");
    let old_subs = snapshot_file(&dir, subs_info.sequence)?;
    let kept_copy = fs::read(&old_subs)?;
    let new_info = store.save(&subs_id, &ResourceKind::SubtitleIndex, &subtitle_index(2))?;
    ensure!(
        !old_subs.exists(),
        "a new snapshot deletes the old file once it is durable"
    );
    // The crash: the old file is still there, and so is a half-written temporary file.
    fs::write(&old_subs, kept_copy)?;
    fs::write(
        dir.join("0000000000000000-00000000000000ff.tmp"),
        b"half a snapshot",
    )?;
    println!(
        "subs/en: sequence {} written over sequence {}; the old file put back, a .tmp left",
        new_info.sequence, subs_info.sequence
    );
    drop(store);
    list_dir(&dir)?;
    let store = SnapshotStore::open(config, Arc::new(clock.clone()))?;
    let stats = store.stats();
    ensure!(
        stats.temp_files_removed == 1,
        "recovery removes the temporary file"
    );
    ensure!(
        !old_subs.exists(),
        "recovery deletes the superseded snapshot"
    );
    let subs = store
        .load::<SubtitleIndex>(&subs_id, &ResourceKind::SubtitleIndex)
        .context("the subtitles restore after reopening")?;
    ensure!(subs == subtitle_index(2), "the newest subtitles win");
    println!(
        "reopened: {} snapshots recovered, {} temporary file removed, subs/en is version 2 ({} entries, first {:?})",
        stats.count,
        stats.temp_files_removed,
        subs.entries.len(),
        subs.entries[0].text
    );
    list_dir(&dir)?;

    println!("\n== 5. time passes: TTL {} s, then gc ==", TTL.as_secs());
    clock.advance(Duration::from_secs(300));
    let late_id = ResourceId::from("audio/outro-theme");
    let late = store.save(&late_id, &ResourceKind::AudioCache, &audio_clip())?;
    println!(
        "at +300 s: {late_id} snapshotted (sequence {})",
        late.sequence
    );
    clock.advance(Duration::from_secs(360));
    let report = store.gc();
    println!("at +660 s: gc {}", serde_json::to_string(&report)?);
    ensure!(
        report.expired == 3 && report.remaining == 1,
        "the three recovered snapshots ran out, the late one did not"
    );
    ensure!(
        store
            .load::<AudioClip>(&late_id, &ResourceKind::AudioCache)
            .is_some_and(|c| c == audio_clip()),
        "the late snapshot restores"
    );
    println!("{late_id} still restores; the others are gone");
    list_dir(&dir)?;
    let stats = store.stats();
    println!(
        "stats since reopening: writes {}, hits {} ({} memory, {} disk), misses {}, corrupt {}, expired {}",
        stats.writes,
        stats.hits,
        stats.memory_hits,
        stats.disk_hits,
        stats.misses,
        stats.corrupt,
        stats.expired
    );

    drop(store);
    root.close()?;
    Ok(())
}

/// A 320x180 RGBA frame with a gradient, the same on every call.
fn render_frame() -> RenderFrame {
    let (width, height) = (320u32, 180u32);
    let pixels = (0..height)
        .flat_map(|y| {
            (0..width).flat_map(move |x| {
                [
                    (x * 255 / width) as u8,
                    (y * 255 / height) as u8,
                    0x80,
                    0xff,
                ]
            })
        })
        .collect();
    RenderFrame {
        width,
        height,
        stride: width * 4,
        format: PixelFormat::Rgba8,
        index: 42,
        pts_us: 1_750_000,
        pixels,
    }
}

/// A quarter second of a 440 Hz tone, stereo at 48 kHz.
fn audio_clip() -> AudioClip {
    let rate = 48_000u32;
    let frames = rate / 4;
    let samples = (0..frames)
        .flat_map(|i| {
            let s = (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 0.5;
            [s, -s]
        })
        .collect();
    AudioClip {
        sample_rate: rate,
        channels: 2,
        samples,
    }
}

/// Twenty cues; `version` changes their text.
fn subtitle_index(version: u32) -> SubtitleIndex {
    SubtitleIndex {
        entries: (0..20u64)
            .map(|i| SubtitleEntry {
                start_ms: i * 2_000,
                end_ms: i * 2_000 + 1_500,
                text: format!("v{version} cue {i}"),
            })
            .collect(),
    }
}

/// Writes `weights/tiny-model.bin`: a 64-byte header, then the weights as little-endian `f32`.
fn write_weights_file(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join("weights");
    fs::create_dir_all(&dir)?;
    let path = dir.join("tiny-model.bin");
    let mut bytes = vec![0u8; WEIGHTS_HEADER];
    let tag = b"TINYMODEL v1 f32 le";
    bytes[..tag.len()].copy_from_slice(tag);
    for i in 0..WEIGHTS {
        let w = (i as f32 / WEIGHTS as f32) - 0.5;
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    fs::write(&path, bytes)?;
    Ok(path)
}

/// The snapshot file holding `sequence`: file names end with the sequence in hex.
fn snapshot_file(dir: &Path, sequence: u64) -> anyhow::Result<PathBuf> {
    let suffix = format!("-{sequence:016x}.snap");
    for item in fs::read_dir(dir)? {
        let path = item?.path();
        if file_name(&path).ends_with(&suffix) {
            return Ok(path);
        }
    }
    anyhow::bail!("no snapshot file with sequence {sequence}")
}

/// Prints the store directory and its quarantine, sorted, with sizes.
fn list_dir(dir: &Path) -> anyhow::Result<()> {
    for (label, dir) in [
        ("store", dir.to_owned()),
        ("quarantine", dir.join(QUARANTINE_DIR)),
    ] {
        if !dir.exists() {
            continue;
        }
        let mut files = Vec::new();
        for item in fs::read_dir(&dir)? {
            let item = item?;
            if item.file_type()?.is_file() {
                files.push((file_name(&item.path()), item.metadata()?.len()));
            }
        }
        files.sort();
        println!(
            "  {label}/ ({} file{})",
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
        for (name, len) in files {
            println!("    {name}  {len:>7} bytes");
        }
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
