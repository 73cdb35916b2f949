//! Errors that say nothing about a snapshot (out of file descriptors, an unreadable
//! name) keep it; a bad file that cannot be moved to quarantine stays where it is.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use memwarden_core::{ManualClock, ResourceId, ResourceKind};
use memwarden_snapshot::{LeftFile, LeftReason, QUARANTINE_DIR, SnapshotStore};

use crate::{disk_only, files, open};

const RENDER: ResourceKind = ResourceKind::RenderCache;

fn id(name: &str) -> ResourceId {
    ResourceId::from(name)
}

/// Writes one snapshot of `id("a")` into `dir` and returns its file.
fn one_snapshot(dir: &Path, clock: &ManualClock) -> PathBuf {
    let store = open(disk_only(dir), clock);
    store.put(&id("a"), &RENDER, 1, b"kept").expect("put");
    files(dir, "snap").remove(0)
}

#[test]
fn a_read_error_at_open_keeps_a_sound_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new();
    let file = one_snapshot(dir.path(), &clock);

    let config = disk_only(dir.path());
    let fail = config.fail_point.clone();
    fail.arm_read(libc::EMFILE);
    let store = open(config, &clock);
    assert_eq!(
        store.get(&id("a"), &RENDER),
        None,
        "not read, so not indexed"
    );
    let stats = store.stats();
    assert_eq!(
        (stats.corrupt, stats.quarantined, stats.read_errors),
        (0, 0, 1)
    );
    assert!(file.exists(), "the snapshot stays where it was");
    assert!(!dir.path().join(QUARANTINE_DIR).exists());
    let left = store.left_files();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].path, file);
    let LeftReason::Unread { error } = &left[0].reason else {
        panic!("{left:?}")
    };
    assert_eq!(
        error,
        &std::io::Error::from_raw_os_error(libc::EMFILE).to_string()
    );
    drop(store);

    fail.disarm();
    let store = open(disk_only(dir.path()), &clock);
    assert_eq!(store.get(&id("a"), &RENDER), Some((1, b"kept".to_vec())));
}

#[test]
fn a_read_error_on_restore_keeps_the_entry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new();
    let config = disk_only(dir.path());
    let fail = config.fail_point.clone();
    let store = open(config, &clock);
    store.put(&id("a"), &RENDER, 1, b"kept").expect("put");
    fail.arm_read(libc::ENFILE);
    assert_eq!(store.get(&id("a"), &RENDER), None);
    assert!(store.contains(&id("a")), "the index keeps the entry");
    let stats = store.stats();
    assert_eq!(
        (
            stats.corrupt,
            stats.quarantined,
            stats.misses,
            stats.read_errors
        ),
        (0, 0, 1, 1)
    );
    fail.disarm();
    assert_eq!(store.get(&id("a"), &RENDER), Some((1, b"kept".to_vec())));
}

/// Names the store directory for [`fd_limit_child`].
const FD_CHILD_ENV: &str = "MEMWARDEN_SNAPSHOT_FD_LIMIT_CHILD";

/// Not a test of its own: the body of the child process of
/// [`a_file_descriptor_limit_at_open_keeps_a_sound_snapshot`] (a no-op unless
/// [`FD_CHILD_ENV`] is set). It opens the store with a descriptor limit that leaves room
/// for the lock file and the directory listing but not for reading a snapshot file.
#[cfg(target_os = "linux")]
#[test]
fn fd_limit_child() {
    use std::os::fd::AsRawFd as _;

    let Ok(dir) = std::env::var(FD_CHILD_ENV) else {
        return;
    };
    // The two lowest free descriptors are for the lock file and the listing; a limit at
    // the third leaves no other.
    let probes: Vec<fs::File> = (0..3)
        .map(|_| fs::File::open("/dev/null").expect("a descriptor"))
        .collect();
    let limit = libc::rlim_t::try_from(probes[2].as_raw_fd()).expect("a descriptor number");
    drop(probes);
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `old` is a valid rlimit for getrlimit to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let lowered = libc::rlimit {
        rlim_cur: limit,
        rlim_max: old.rlim_max,
    };
    // SAFETY: setrlimit reads the rlimit it is given; lowering the soft limit below the
    // hard one is always allowed, and this process runs this one test alone.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
    let opened = SnapshotStore::open(disk_only(Path::new(&dir)), Arc::new(ManualClock::new()));
    // SAFETY: as above; the soft limit goes back to what it was, under the hard one.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);
    let store = opened.expect("the store opens under the limit");
    let stats = store.stats();
    assert_eq!(
        (stats.corrupt, stats.quarantined, stats.read_errors),
        (0, 0, 1),
        "the limit was hit, and did not condemn the file: {stats:?}"
    );
    let left = store.left_files();
    assert!(
        matches!(
            &left[..],
            [LeftFile {
                reason: LeftReason::Unread { .. },
                ..
            }]
        ),
        "{left:?}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_file_descriptor_limit_at_open_keeps_a_sound_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new();
    let file = one_snapshot(dir.path(), &clock);
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "faults::fd_limit_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FD_CHILD_ENV, dir.path())
        .output()
        .expect("child runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{said}");
    assert!(said.contains("1 passed"), "the child ran:\n{said}");
    assert!(file.exists(), "the snapshot stays where it was");
    assert!(!dir.path().join(QUARANTINE_DIR).exists());
    let store = open(disk_only(dir.path()), &clock);
    assert_eq!(store.get(&id("a"), &RENDER), Some((1, b"kept".to_vec())));
}

/// The name of a newer snapshot file of the same id as `file`: same id hash, `ahead`
/// more in sequence.
#[cfg(unix)]
fn newer_name(file: &Path, ahead: u64) -> (PathBuf, u64) {
    let name = file.file_stem().and_then(|n| n.to_str()).expect("a name");
    let (hash, sequence) = name.split_once('-').expect("<hash>-<sequence>");
    let sequence = u64::from_str_radix(sequence, 16).expect("hex") + ahead;
    (
        file.with_file_name(format!("{hash}-{sequence:016x}.snap")),
        sequence,
    )
}

#[cfg(unix)]
#[test]
fn an_unread_newer_file_holds_back_an_older_snapshot_of_its_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new();
    let older = one_snapshot(dir.path(), &clock);
    // A link to itself: opening it fails (ELOOP), which says nothing of the snapshot it
    // stands for, so it must not be condemned; and the older file may be outdated.
    let (newer, sequence) = newer_name(&older, 10);
    std::os::unix::fs::symlink(&newer, &newer).expect("a link");

    let store = open(disk_only(dir.path()), &clock);
    assert_eq!(
        store.get(&id("a"), &RENDER),
        None,
        "the older snapshot may be outdated"
    );
    assert!(older.exists(), "held back, not deleted");
    assert!(newer.symlink_metadata().is_ok(), "left where it was");
    assert_eq!(store.stats().quarantined, 0);
    let left = store.left_files();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        matches!(&left[0], LeftFile { path, reason: LeftReason::Unread { .. }, .. } if *path == newer),
        "{left:?}"
    );
    assert_eq!(left[1].path, older);
    assert_eq!(left[1].reason, LeftReason::Shadowed { newer });
    // New snapshots never reuse the unread file's sequence, so they never replace it.
    let put = store.put(&id("b"), &RENDER, 1, b"b").expect("put");
    assert!(put.sequence > sequence, "{} <= {sequence}", put.sequence);
}

#[test]
fn a_bad_file_that_cannot_be_quarantined_stays_where_it_is() {
    for at_open in [false, true] {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new();
        let store = open(disk_only(dir.path()), &clock);
        store.put(&id("a"), &RENDER, 1, b"bad").expect("put");
        let file = files(dir.path(), "snap").remove(0);
        // A plain file where the quarantine directory would go: the move fails.
        fs::write(dir.path().join(QUARANTINE_DIR), b"in the way").expect("written");
        let mut damaged = fs::read(&file).expect("reads");
        *damaged.last_mut().expect("bytes") ^= 1;
        fs::write(&file, &damaged).expect("written");

        let store = if at_open {
            drop(store);
            open(disk_only(dir.path()), &clock)
        } else {
            store
        };
        assert_eq!(store.get(&id("a"), &RENDER), None, "at open: {at_open}");
        assert_eq!(
            fs::read(&file).ok().as_ref(),
            Some(&damaged),
            "never deleted (at open: {at_open})"
        );
        let stats = store.stats();
        assert_eq!(
            (
                stats.corrupt,
                stats.quarantined,
                stats.quarantine_failures,
                stats.count
            ),
            (1, 0, 1, 0),
            "at open: {at_open}"
        );
        let left = store.left_files();
        assert!(
            matches!(
                &left[..],
                [LeftFile { path, reason: LeftReason::NotQuarantined { defect, .. }, .. }]
                    if *path == file && defect.contains("checksum")
            ),
            "at open: {at_open}: {left:?}"
        );
        // The id is usable again; the bad file stays until it can be moved.
        store.put(&id("a"), &RENDER, 1, b"fresh").expect("put");
        assert_eq!(store.get(&id("a"), &RENDER), Some((1, b"fresh".to_vec())));
        assert!(file.exists());
    }
}
