//! A store's directory and files are its user's alone.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use memwarden_core::{ManualClock, ResourceId, ResourceKind};
use memwarden_snapshot::{LOCK_FILE, QUARANTINE_DIR, SnapshotError, SnapshotStore};

use crate::{disk_only, files, open};

const RENDER: ResourceKind = ResourceKind::RenderCache;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("exists").permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_new_store_keeps_its_files_to_its_user() {
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("snapshots");
    let clock = ManualClock::new();
    let store = open(disk_only(&dir), &clock);
    assert_eq!(mode(&dir), 0o700, "the directory");
    assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600, "the lock file");
    let a = ResourceId::from("a");
    store.put(&a, &RENDER, 1, b"private").expect("put");
    let file = files(&dir, "snap").remove(0);
    assert_eq!(mode(&file), 0o600, "a snapshot file");

    // A bad file goes to a quarantine directory of the same kind.
    fs::write(&file, b"garbage").expect("written");
    assert_eq!(store.get(&a, &RENDER), None);
    let quarantine = dir.join(QUARANTINE_DIR);
    assert_eq!(mode(&quarantine), 0o700, "the quarantine directory");
    assert_eq!(mode(&files(&quarantine, "snap")[0]), 0o600);
}

#[test]
fn reopening_makes_older_snapshot_files_private() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new();
    let a = ResourceId::from("a");
    open(disk_only(dir.path()), &clock)
        .put(&a, &RENDER, 1, b"older")
        .expect("put");
    // As an earlier version left them.
    let file = files(dir.path(), "snap").remove(0);
    chmod(&file, 0o644);
    chmod(dir.path(), 0o755);
    let store = open(disk_only(dir.path()), &clock);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(
        mode(dir.path()),
        0o755,
        "a directory others cannot write is kept as is"
    );
    assert_eq!(store.get(&a, &RENDER), Some((1, b"older".to_vec())));
}

#[test]
fn a_directory_other_users_can_write_is_refused() {
    let cases = [
        (0o700, false),
        (0o750, false),
        (0o755, false),
        (0o720, true),
        (0o770, true),
        (0o702, true),
        (0o777, true),
        (0o1777, true),
    ];
    for (dir_mode, refused) in cases {
        let parent = tempfile::tempdir().expect("temp dir");
        let dir = parent.path().join("snapshots");
        fs::create_dir(&dir).expect("created");
        chmod(&dir, dir_mode);
        let opened = SnapshotStore::open(disk_only(&dir), Arc::new(ManualClock::new()));
        match opened {
            Err(err @ SnapshotError::InsecureDir { .. }) if refused => {
                let SnapshotError::InsecureDir {
                    dir: named,
                    mode: found,
                    ..
                } = &err
                else {
                    unreachable!()
                };
                assert_eq!((named, *found), (&dir, dir_mode), "{dir_mode:o}");
                assert!(
                    err.to_string().contains(&dir.display().to_string()),
                    "{err}"
                );
                assert!(
                    !dir.join(LOCK_FILE).exists(),
                    "a refused directory is left alone"
                );
                assert_eq!(mode(&dir), dir_mode, "left as it was");
            }
            Ok(_) if !refused => {}
            other => panic!("mode {dir_mode:o}: {other:?}"),
        }
    }
}

#[test]
fn a_directory_of_another_user_is_refused() {
    // SAFETY: geteuid takes nothing and cannot fail.
    let me = unsafe { libc::geteuid() };
    let parent = tempfile::tempdir().expect("temp dir");
    let (dir, owner) = if me == 0 {
        let dir = parent.path().join("theirs");
        fs::create_dir(&dir).expect("created");
        chmod(&dir, 0o755);
        std::os::unix::fs::chown(&dir, Some(65_534), Some(65_534)).expect("chown as root");
        (dir, 65_534)
    } else {
        // Not root: the root directory belongs to someone else.
        (Path::new("/").to_path_buf(), 0)
    };
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(fs::metadata(&dir).expect("exists").uid(), owner);
    assert_ne!(owner, me);
    match SnapshotStore::open(disk_only(&dir), Arc::new(ManualClock::new())) {
        Err(SnapshotError::InsecureDir {
            dir: named,
            owner: found,
            ..
        }) => assert_eq!((named, found), (dir, owner)),
        other => panic!("{other:?}"),
    }
}
