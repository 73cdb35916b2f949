//! The snapshot store: tiers, limits, TTL, fault injection, verification and recovery.

use std::fs;
use std::path::Path;
use std::time::Duration;

use memwarden_core::{ManualClock, ResourceId, ResourceKind};
use memwarden_snapshot::{
    PixelFormat, QUARANTINE_DIR, RenderFrame, Snapshot, SnapshotError, StoreConfig, StoreStats,
    Tier, WriteFault,
};
use proptest::prelude::*;

use crate::{disk_only, files, open};

const RENDER: ResourceKind = ResourceKind::RenderCache;
const AUDIO: ResourceKind = ResourceKind::AudioCache;

fn id(name: &str) -> ResourceId {
    ResourceId::from(name)
}

#[test]
fn put_and_get_through_both_tiers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new();
    let store = open(StoreConfig::new(dir.path()), &clock);
    let a = id("frame/1");
    let info = store.put(&a, &RENDER, 3, b"pixels").expect("put");
    assert_eq!(info.tier, Tier::Memory);
    assert_eq!(
        info.bytes,
        fs::metadata(&files(dir.path(), "snap")[0])
            .expect("file")
            .len()
    );
    assert_eq!(store.get(&a, &RENDER), Some((3, b"pixels".to_vec())));
    assert_eq!(store.kind_of(&a), Some(RENDER));
    assert!(store.contains(&a));

    // Asking for the wrong kind is a miss that leaves the snapshot alone.
    assert_eq!(store.get(&a, &AUDIO), None);
    assert!(store.contains(&a));
    assert_eq!(store.get(&id("absent"), &RENDER), None);

    // A newer snapshot replaces the old file.
    let newer = store.put(&a, &RENDER, 4, b"newer").expect("put");
    assert!(newer.sequence > info.sequence);
    assert_eq!(files(dir.path(), "snap").len(), 1);
    drop(store);

    // After reopening, the first restore reads the disk, the second the memory copy.
    let store = open(StoreConfig::new(dir.path()), &clock);
    assert_eq!(store.get(&a, &RENDER), Some((4, b"newer".to_vec())));
    assert_eq!(store.get(&a, &RENDER), Some((4, b"newer".to_vec())));
    let stats = store.stats();
    assert_eq!((stats.hits, stats.disk_hits, stats.memory_hits), (2, 1, 1));
    assert_eq!((stats.count, stats.memory_count), (1, 1));
    assert_eq!(stats.memory_bytes, stats.disk_bytes);
    let json = serde_json::to_string(&stats).expect("serialises");
    assert_eq!(
        serde_json::from_str::<StoreStats>(&json).expect("parses"),
        stats
    );

    assert!(store.remove(&a));
    assert!(!store.remove(&a));
    assert!(files(dir.path(), "snap").is_empty());
    assert_eq!(store.stats().disk_bytes, 0);
}

#[test]
fn ttl_expires_snapshots_by_the_clock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new();
    let config = StoreConfig {
        ttl: Some(Duration::from_secs(10)),
        ..StoreConfig::new(dir.path())
    };
    let store = open(config.clone(), &clock);
    store.put(&id("a"), &RENDER, 1, b"a").expect("put");
    clock.advance(Duration::from_secs(5));
    store.put(&id("b"), &RENDER, 1, b"b").expect("put");
    clock.advance(Duration::from_secs(4));
    assert!(store.get(&id("a"), &RENDER).is_some(), "9 s old: alive");
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.get(&id("a"), &RENDER), None, "10 s old: expired");
    assert!(store.contains(&id("b")));
    assert_eq!(files(dir.path(), "snap").len(), 1);

    clock.advance(Duration::from_secs(5));
    let report = store.gc();
    assert_eq!(
        (report.expired, report.evicted, report.remaining),
        (1, 0, 0)
    );
    assert!(report.bytes_freed > 0);
    assert!(files(dir.path(), "snap").is_empty());
    let stats = store.stats();
    assert_eq!((stats.expired, stats.count, stats.misses), (2, 0, 1));
}

#[test]
fn disk_limit_evicts_the_least_recently_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new();
    let probe = open(disk_only(dir.path()), &clock);
    let size = probe
        .put(&id("a"), &RENDER, 1, &[0; 100])
        .expect("put")
        .bytes;
    drop(probe);
    let store = open(
        StoreConfig {
            disk_bytes: 3 * size,
            ..disk_only(dir.path())
        },
        &clock,
    );
    for name in ["b", "c"] {
        store.put(&id(name), &RENDER, 1, &[0; 100]).expect("put");
    }
    assert!(store.get(&id("a"), &RENDER).is_some()); // a is now more recent than b
    store.put(&id("d"), &RENDER, 1, &[1; 100]).expect("put");
    assert!(!store.contains(&id("b")), "b was least recently used");
    for name in ["a", "c", "d"] {
        assert!(store.contains(&id(name)), "{name} kept");
    }
    let stats = store.stats();
    assert_eq!(
        (stats.evictions, stats.count, stats.disk_bytes),
        (1, 3, 3 * size)
    );
    assert_eq!(files(dir.path(), "snap").len(), 3);

    let err = store.put(&id("huge"), &RENDER, 1, &vec![0; 4 * size as usize]);
    assert!(
        matches!(err, Err(SnapshotError::TooLarge { .. })),
        "{err:?}"
    );
    assert_eq!(store.stats().count, 3, "a refused put evicts nothing");
}

#[test]
fn memory_limit_drops_copies_but_keeps_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new();
    let probe = open(disk_only(dir.path()), &clock);
    let size = probe
        .put(&id("a"), &RENDER, 1, &[0; 100])
        .expect("put")
        .bytes;
    drop(probe);
    let store = open(
        StoreConfig {
            memory_bytes: 2 * size,
            ..disk_only(dir.path())
        },
        &clock,
    );
    assert_eq!(
        store
            .put(&id("b"), &RENDER, 1, &[0; 100])
            .expect("put")
            .tier,
        Tier::Memory
    );
    assert_eq!(
        store
            .put(&id("c"), &RENDER, 1, &[0; 100])
            .expect("put")
            .tier,
        Tier::Memory
    );
    // Reading a (recovered, disk only) caches it and drops b's copy, the least recently used.
    assert!(store.get(&id("a"), &RENDER).is_some());
    assert!(store.get(&id("c"), &RENDER).is_some());
    assert!(store.get(&id("b"), &RENDER).is_some());
    let stats = store.stats();
    assert_eq!((stats.disk_hits, stats.memory_hits), (2, 1));
    assert_eq!((stats.memory_count, stats.memory_bytes), (2, 2 * size));
    assert_eq!(stats.memory_evictions, 2);
    assert_eq!((stats.count, stats.evictions), (3, 0));
    let big = store.put(&id("big"), &RENDER, 1, &[0; 1000]).expect("put");
    assert_eq!(big.tier, Tier::Disk, "larger than the memory tier");
}

#[test]
fn failed_writes_leave_nothing_behind() {
    for fault in [
        WriteFault::Write { after_bytes: 0 },
        WriteFault::Write { after_bytes: 30 },
        WriteFault::SyncFile,
        WriteFault::Rename,
        WriteFault::SyncDir,
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new();
        let config = disk_only(dir.path());
        let fail = config.fail_point.clone();
        let store = open(config, &clock);
        let a = id("a");
        store.put(&a, &RENDER, 1, b"old").expect("put");
        let before = files(dir.path(), "snap");

        fail.arm(fault);
        let err = store.put(&a, &RENDER, 2, b"new").expect_err("write fails");
        assert!(matches!(err, SnapshotError::Io { .. }), "{fault:?}: {err}");
        if let WriteFault::Write { .. } = fault {
            let SnapshotError::Io { source, .. } = &err else {
                unreachable!()
            };
            assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
        }
        assert!(store.put(&id("b"), &RENDER, 1, b"b").is_err());
        assert_eq!(files(dir.path(), "snap"), before, "{fault:?}");
        assert!(files(dir.path(), "tmp").is_empty(), "{fault:?}");
        assert_eq!(
            store.get(&a, &RENDER),
            Some((1, b"old".to_vec())),
            "{fault:?}"
        );
        assert!(!store.contains(&id("b")));
        let stats = store.stats();
        assert_eq!((stats.writes, stats.write_errors, stats.count), (1, 2, 1));

        fail.disarm();
        store
            .put(&a, &RENDER, 2, b"new")
            .expect("put after the disk recovers");
        assert_eq!(store.get(&a, &RENDER), Some((2, b"new".to_vec())));
        drop(store);
        let store = open(disk_only(dir.path()), &clock);
        assert_eq!(
            store.get(&a, &RENDER),
            Some((2, b"new".to_vec())),
            "{fault:?}"
        );
    }
}

/// Damages the one snapshot file in a store and checks that it is a miss, counted and
/// quarantined, when restored and (if `at_open`) when found at open.
fn check_damage(name: &str, damage: impl Fn(&Path)) {
    check_damage_when(name, &[false, true], damage);
}

fn check_damage_when(name: &str, when: &[bool], damage: impl Fn(&Path)) {
    for &at_open in when {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new();
        let store = open(disk_only(dir.path()), &clock);
        let a = id("victim");
        store.put(&a, &RENDER, 1, &[42; 200]).expect("put");
        let file = files(dir.path(), "snap").remove(0);
        damage(&file);
        let store = if at_open {
            drop(store);
            let store = open(disk_only(dir.path()), &clock);
            assert!(!store.contains(&a), "{name}: bad file indexed");
            store
        } else {
            store
        };
        assert_eq!(store.get(&a, &RENDER), None, "{name} (at open: {at_open})");
        let stats = store.stats();
        assert_eq!(
            (stats.corrupt, stats.quarantined, stats.misses, stats.count),
            (1, 1, 1, 0),
            "{name} (at open: {at_open})"
        );
        assert!(files(dir.path(), "snap").is_empty(), "{name}");
        assert_eq!(
            files(&dir.path().join(QUARANTINE_DIR), "snap").len(),
            1,
            "{name}"
        );
        // The id is usable again.
        store.put(&a, &RENDER, 1, b"fresh").expect("put");
        assert_eq!(
            store.get(&a, &RENDER),
            Some((1, b"fresh".to_vec())),
            "{name}"
        );
    }
}

fn rewrite(path: &Path, change: impl Fn(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).expect("reads");
    change(&mut bytes);
    fs::write(path, bytes).expect("writes");
}

/// A change to a snapshot file's bytes.
type Damage = fn(&mut Vec<u8>);

#[test]
fn damaged_files_are_misses_counted_and_quarantined() {
    let cases: [(&str, Damage); 9] = [
        ("truncated payload", |b| b.truncate(b.len() - 1)),
        ("truncated header", |b| b.truncate(20)),
        ("empty file", Vec::clear),
        ("trailing byte", |b| b.push(0)),
        ("flipped payload byte", |b| {
            *b.last_mut().expect("bytes") ^= 1;
        }),
        ("flipped sequence byte", |b| b[16] ^= 0x80),
        ("flipped checksum byte", |b| b[40] ^= 1),
        ("bad magic", |b| b[0] = b'X'),
        ("wrong format version", |b| {
            b[8..12].copy_from_slice(&2u32.to_le_bytes());
        }),
    ];
    for (name, change) in cases {
        check_damage(name, |p| rewrite(p, change));
    }
    // A well-formed file with a valid checksum, but of another kind than the index says.
    // (Found at open, such a file is simply a snapshot of that other kind.)
    check_damage_when("wrong kind", &[false], |p| {
        let other = tempfile::tempdir().expect("temp dir");
        let store = open(disk_only(other.path()), &ManualClock::new());
        store
            .put(&id("victim"), &AUDIO, 1, &[42; 200])
            .expect("put");
        fs::copy(&files(other.path(), "snap")[0], p).expect("copies");
    });
}

#[test]
fn recovery_removes_temp_files_and_keeps_the_newest_sequence() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new();
    let store = open(disk_only(dir.path()), &clock);
    let (a, b) = (id("a"), id("b"));
    store.put(&a, &RENDER, 1, b"a-old").expect("put");
    let old_file = files(dir.path(), "snap").remove(0);
    let old_bytes = fs::read(&old_file).expect("reads");
    let newest = store.put(&a, &RENDER, 2, b"a-new").expect("put").sequence;
    store.put(&b, &AUDIO, 1, b"b").expect("put");
    drop(store);

    // A crash between the rename and the delete leaves both files of `a`; another left a temp
    // file; someone left an unrelated file.
    fs::write(dir.path().join("zzzz-old-copy.snap"), &old_bytes).expect("writes");
    fs::write(dir.path().join("0000-partial.tmp"), b"MWSNAP half").expect("writes");
    fs::write(dir.path().join("README"), b"not a snapshot").expect("writes");

    let store = open(disk_only(dir.path()), &clock);
    assert!(files(dir.path(), "tmp").is_empty());
    assert_eq!(
        files(dir.path(), "snap").len(),
        2,
        "the older copy of a is deleted"
    );
    assert!(dir.path().join("README").exists());
    assert_eq!(store.get(&a, &RENDER), Some((2, b"a-new".to_vec())));
    assert_eq!(store.get(&b, &AUDIO), Some((1, b"b".to_vec())));
    assert_eq!(store.kind_of(&b), Some(AUDIO));
    let stats = store.stats();
    assert_eq!(
        (stats.count, stats.temp_files_removed, stats.corrupt),
        (2, 1, 0)
    );
    // Sequences keep growing across reopening.
    assert!(store.put(&b, &AUDIO, 1, b"b2").expect("put").sequence > newest + 1);
}

#[test]
fn concurrent_puts_and_gets_stay_consistent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new();
    let store = open(
        StoreConfig {
            memory_bytes: 4096,
            ..disk_only(dir.path())
        },
        &clock,
    );
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let store = &store;
            s.spawn(move || {
                for i in 0..40u8 {
                    let name = id(&format!("r{}", i % 3));
                    store
                        .put(&name, &RENDER, u32::from(t), &[t; 300])
                        .expect("put");
                    if let Some((version, bytes)) = store.get(&name, &RENDER) {
                        assert_eq!(bytes, vec![u8::try_from(version).expect("small"); 300]);
                    }
                }
            });
        }
    });
    let stats = store.stats();
    assert_eq!(stats.count, 3);
    assert_eq!((stats.corrupt, stats.write_errors), (0, 0));
    assert_eq!(files(dir.path(), "snap").len(), 3);
    assert_eq!(stats.writes, 160);
}

#[test]
fn a_store_needs_disk_room() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig {
        disk_bytes: 0,
        ..StoreConfig::new(dir.path())
    };
    let err =
        memwarden_snapshot::SnapshotStore::open(config, std::sync::Arc::new(ManualClock::new()))
            .expect_err("no room");
    assert!(matches!(err, SnapshotError::Config { .. }), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn frames_survive_the_store_and_a_reopen(
        pixels in proptest::collection::vec(any::<u8>(), 0..20_000),
        index in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new();
        let frame = RenderFrame {
            width: 64,
            height: 48,
            stride: 256,
            format: PixelFormat::Bgra8,
            index,
            pts_us: 40_000,
            pixels,
        };
        let store = open(StoreConfig::new(dir.path()), &clock);
        store.save(&id("f"), &RENDER, &frame).expect("saves");
        let first = store.load::<RenderFrame>(&id("f"), &RENDER);
        prop_assert_eq!(first.as_ref(), Some(&frame));
        drop(store);
        let store = open(StoreConfig::new(dir.path()), &clock);
        prop_assert_eq!(store.load::<RenderFrame>(&id("f"), &RENDER), Some(frame));
        // Bytes that are sound but not a RenderFrame are a decode error, not data.
        store.put(&id("g"), &RENDER, RenderFrame::VERSION, b"short").expect("put");
        prop_assert_eq!(store.load::<RenderFrame>(&id("g"), &RENDER), None);
        prop_assert_eq!(store.stats().decode_errors, 1);
    }
}

#[test]
fn damage_is_caught_on_both_read_paths() {
    // Disk reads take one of two paths: a snapshot small enough for the memory tier is
    // read whole and cached; a bigger one is read straight into its payload buffer.
    for memory_bytes in [0, 1 << 20] {
        let cases: [(&str, Damage); 3] = [
            ("truncated payload", |b| b.truncate(b.len() - 1)),
            ("flipped payload byte", |b| {
                *b.last_mut().expect("bytes") ^= 1;
            }),
            ("flipped checksum byte", |b| b[40] ^= 1),
        ];
        for (name, change) in cases {
            let dir = tempfile::tempdir().expect("temp dir");
            let clock = ManualClock::new();
            let config = || StoreConfig {
                memory_bytes,
                ..disk_only(dir.path())
            };
            let a = id("victim");
            open(config(), &clock)
                .put(&a, &RENDER, 1, &[7; 300])
                .expect("put");
            // Reopened, the file is indexed (it was sound) but not cached; then damaged.
            let store = open(config(), &clock);
            rewrite(&files(dir.path(), "snap")[0], change);
            assert_eq!(
                store.get(&a, &RENDER),
                None,
                "{name} (memory tier {memory_bytes})"
            );
            assert_eq!(
                store.stats().quarantined,
                1,
                "{name} (memory tier {memory_bytes})"
            );
        }
    }
}

#[test]
fn one_store_per_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new();
    let first = open(disk_only(dir.path()), &clock);
    let second = memwarden_snapshot::SnapshotStore::open(
        disk_only(dir.path()),
        std::sync::Arc::new(clock.clone()),
    );
    assert!(
        matches!(second, Err(memwarden_snapshot::SnapshotError::InUse { .. })),
        "{second:?}"
    );
    drop(first);
    assert!(
        memwarden_snapshot::SnapshotStore::open(disk_only(dir.path()), std::sync::Arc::new(clock))
            .is_ok(),
        "free again once dropped"
    );
}

/// Pages of `path` in the page cache, counted with `mincore` over a fresh mapping
/// (mapping a file faults nothing in).
#[cfg(target_os = "linux")]
fn cached_pages(path: &Path) -> usize {
    let file = fs::File::open(path).expect("the snapshot file");
    // SAFETY: the mapping is read-only, private to this function, and the test writes no
    // snapshot while it lives.
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("mapped");
    // SAFETY: sysconf takes no pointers.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).expect("a page size");
    let mut resident = vec![0u8; map.len().div_ceil(page)];
    // SAFETY: the range is the live mapping and `resident` holds one byte per page of it.
    let done = unsafe { libc::mincore(map.as_ptr() as *mut _, map.len(), resident.as_mut_ptr()) };
    assert_eq!(done, 0, "mincore: {}", std::io::Error::last_os_error());
    resident.iter().filter(|&&r| r & 1 == 1).count()
}

#[cfg(target_os = "linux")]
#[test]
fn written_snapshots_leave_no_page_cache_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new();
    let config = StoreConfig {
        disk_bytes: 64 << 20,
        ..disk_only(dir.path())
    };
    let store = open(config, &clock);
    let payload = vec![7u8; 4 << 20];
    store
        .put(&id("frame/big"), &RENDER, 1, &payload)
        .expect("put");
    let file = &files(dir.path(), "snap")[0];
    // Reading the file back through the page cache fills it, so the check can fail.
    let control = dir.path().join("control");
    fs::write(&control, &payload).expect("written");
    assert!(cached_pages(&control) > 0, "a plain write stays cached");
    assert_eq!(
        cached_pages(file),
        0,
        "the snapshot's pages were dropped after the sync"
    );
    assert_eq!(store.get(&id("frame/big"), &RENDER), Some((1, payload)));
}
