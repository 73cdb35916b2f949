//! Segment lifecycle: create, reopen, unlink on drop and on panic, fallbacks, stale sweep.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use memwarden_shm::{
    Backing, DEFAULT_SHM_DIR, SegmentOptions, SharedSegment, ShmError, sweep_stale, sweep_stale_in,
};

/// Options that keep every place inside `dir` (shared-memory and temp subfolders).
fn sandbox(dir: &Path) -> (SegmentOptions, PathBuf, PathBuf) {
    let shm = dir.join("shm");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&shm).expect("mkdir");
    std::fs::create_dir_all(&tmp).expect("mkdir");
    let options = SegmentOptions::new().with_shm_dir(&shm).with_temp_dir(&tmp);
    (options, shm, tmp)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_segment_in_dev_shm_is_shared_by_name_and_unlinked_by_its_owner() {
    if !Path::new(DEFAULT_SHM_DIR).is_dir() {
        println!(
            "note: no {DEFAULT_SHM_DIR} on this machine; lifecycle checked in the sandbox tests"
        );
        return;
    }
    let name = SharedSegment::unique_name("life");
    let path = Path::new(DEFAULT_SHM_DIR).join(&name);
    let mut owner = SharedSegment::create(&name, 10_000).expect("create");
    assert_eq!(owner.backing(), Backing::SharedMemory);
    assert_eq!(owner.path(), Some(path.as_path()));
    assert_eq!(owner.len(), 10_000);
    assert!(owner.is_owner());
    assert_eq!(std::fs::metadata(&path).expect("file").len(), 10_000);
    assert!(
        owner.as_bytes().iter().all(|&b| b == 0),
        "fresh segments are zeroed"
    );

    // In this process the owner is the only handle, however the name is spelled
    // (POSIX-style names with a leading slash name the same object).
    for spelling in [name.clone(), format!("/{name}")] {
        let err = SharedSegment::open(&spelling).expect_err("a second handle");
        assert!(
            matches!(&err, ShmError::AlreadyMapped { name: n, .. } if *n == name),
            "{err:?}"
        );
    }
    // The mapping is the file's pages, both ways.
    owner.as_bytes_mut()[1234] = 42;
    assert_eq!(std::fs::read(&path).expect("read")[1234], 42, "same pages");
    std::os::unix::fs::FileExt::write_at(
        &std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open"),
        &[7],
        9999,
    )
    .expect("write");
    assert_eq!(owner.as_bytes()[9999], 7);

    drop(owner);
    assert!(!path.exists(), "the owner unlinks on drop");
    let err = SharedSegment::open(&name).expect_err("gone");
    assert!(
        matches!(&err, ShmError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );

    // A handle from `open` (what another process makes) does not own the segment.
    std::fs::write(&path, [5u8; 100]).expect("write");
    let reader = SharedSegment::open(&format!("/{name}")).expect("open by name");
    assert!(!reader.is_owner());
    assert_eq!(reader.as_bytes(), &[5; 100]);
    drop(reader);
    assert!(path.exists(), "a non-owner leaves the segment in place");
    std::fs::remove_file(&path).expect("clean up");
}

#[test]
fn a_panicking_owner_still_unlinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (options, shm, _) = sandbox(dir.path());
    let name = SharedSegment::unique_name("panic");
    let path = shm.join(&name);
    let seen = path.clone();
    let outcome = std::panic::catch_unwind(move || {
        let segment = SharedSegment::create_with(&name, 4096, &options).expect("create");
        assert!(seen.exists());
        let _keep = &segment;
        panic!("worker failed while holding the segment");
    });
    assert!(outcome.is_err());
    assert!(!path.exists(), "segment leaked after a panic");
    assert!(listing(&shm).is_empty());
}

#[test]
fn names_are_checked() {
    for (name, reason) in [
        ("", "empty"),
        ("/", "empty"),
        ("a/b", "'/'"),
        ("..", "directories"),
        ("nul\0byte", "NUL"),
    ] {
        let err = SharedSegment::create(name, 16).expect_err(name);
        assert!(
            matches!(err, ShmError::InvalidSegmentName { .. }),
            "{name:?}: {err:?}"
        );
        assert!(err.to_string().contains(reason), "{err}");
    }
    let long = "x".repeat(255);
    assert!(matches!(
        SharedSegment::create(&long, 16),
        Err(ShmError::InvalidSegmentName { .. })
    ));
    let err = SharedSegment::create("zero-length", 0).expect_err("zero bytes");
    assert!(matches!(err, ShmError::EmptySegment { .. }), "{err:?}");
    let unique = SharedSegment::unique_name("my tag/with: odd chars");
    assert!(
        unique.starts_with(&format!("memwarden-shm-{}-", std::process::id())),
        "{unique}"
    );
    assert!(
        !unique.contains('/') && !unique.contains(' ') && !unique.contains(':'),
        "{unique}"
    );
    assert_ne!(
        SharedSegment::unique_name("t"),
        SharedSegment::unique_name("t")
    );
}

#[test]
fn an_existing_name_is_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (options, _, tmp) = sandbox(dir.path());
    let first = SharedSegment::create_with("taken", 64, &options).expect("first");
    let err = SharedSegment::create_with("taken", 64, &options).expect_err("clash");
    assert!(
        matches!(&err, ShmError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{err:?}"
    );
    assert!(listing(&tmp).is_empty(), "no fallback file");
    drop(first);
}

#[test]
fn a_full_shm_dir_falls_back_to_a_temp_file_then_to_the_heap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (options, shm, tmp) = sandbox(dir.path());

    // Injected ENOSPC at reservation: the half-made file is removed, the temp dir is used.
    let enospc = options.clone().with_simulated_enospc(true);
    let segment = SharedSegment::create_with("full", 8192, &enospc).expect("fallback");
    assert_eq!(segment.backing(), Backing::TempFile);
    assert_eq!(segment.path(), Some(tmp.join("full").as_path()));
    assert!(
        listing(&shm).is_empty(),
        "the half-made /dev/shm file was removed"
    );
    // A reader that looks by name (once the owner handed it over) finds it in the temp dir.
    let kept = segment.persist().expect("persist");
    assert_eq!(
        kept,
        tmp.join("full"),
        "a name of the caller's is kept as it is"
    );
    let reader = SharedSegment::open_with("full", &options).expect("open by name");
    assert_eq!(reader.backing(), Backing::TempFile);
    drop(reader);
    std::fs::remove_file(kept).expect("clean up");

    // Without fallback the same failure is an error that names the reason.
    let strict = enospc.clone().with_fallback(false);
    let err = SharedSegment::create_with("strict", 8192, &strict).expect_err("no fallback");
    assert!(matches!(err, ShmError::NoBacking { .. }), "{err:?}");
    assert!(err.to_string().contains("No space left"), "{err}");
    assert!(listing(&shm).is_empty());

    // Headroom that no filesystem has: both directories are skipped, the heap is used.
    let roomless = options.clone().with_headroom(u64::MAX / 2);
    let heap = SharedSegment::create_with("heap", 4096, &roomless).expect("heap");
    assert_eq!(heap.backing(), Backing::Heap);
    assert_eq!(heap.path(), None);
    let err = heap.persist().expect_err("nothing to persist");
    assert!(matches!(err, ShmError::NotFileBacked { .. }), "{err:?}");

    // A missing /dev/shm (some containers) goes straight to the temp dir.
    let missing = options.clone().with_shm_dir(dir.path().join("no-such-dir"));
    let segment = SharedSegment::create_with("nodir", 100, &missing).expect("fallback");
    assert_eq!(segment.backing(), Backing::TempFile);

    // Starting the chain at the heap skips the files entirely.
    let heap_only = options.with_start(Backing::Heap);
    assert_eq!(
        SharedSegment::create_with("h", 10, &heap_only)
            .expect("heap")
            .backing(),
        Backing::Heap
    );
}

/// A tmpfs of a few KiB mounted on a temp dir, unmounted on drop; `None` when this process
/// may not mount (not root, or no CAP_SYS_ADMIN in a container).
struct TinyTmpfs {
    dir: tempfile::TempDir,
}

impl TinyTmpfs {
    fn mount(kib: usize) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let target = CString::new(dir.path().as_os_str().as_bytes()).ok()?;
        let data = CString::new(format!("size={kib}k")).ok()?;
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        (rc == 0).then_some(Self { dir })
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.dir.path().as_os_str().as_bytes()) {
            // SAFETY: a valid NUL-terminated path; MNT_DETACH never blocks.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

#[test]
fn a_real_tiny_tmpfs_triggers_the_fallback() {
    let Some(tiny) = TinyTmpfs::mount(256) else {
        println!(
            "note: cannot mount a tmpfs here (needs root); the injected ENOSPC test covers the path"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SegmentOptions::new()
        .with_shm_dir(tiny.dir.path())
        .with_temp_dir(dir.path());
    let fits = SharedSegment::create_with("fits", 128 << 10, &options).expect("fits");
    assert_eq!(fits.backing(), Backing::SharedMemory);
    let spills = SharedSegment::create_with("spills", 512 << 10, &options).expect("falls back");
    assert_eq!(spills.backing(), Backing::TempFile);
    assert_eq!(
        listing(tiny.dir.path()),
        ["fits"],
        "nothing half-made is left behind"
    );
    // Every page of the fallback is writable: no SIGBUS.
    let mut spills = spills;
    spills.as_bytes_mut().fill(1);
    drop((fits, spills));
    assert!(listing(tiny.dir.path()).is_empty());
}

#[test]
fn persisted_segments_outlive_their_handle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (options, shm, _) = sandbox(dir.path());
    let mut segment = SharedSegment::create_with("kept", 32, &options).expect("create");
    segment.as_bytes_mut()[0] = 9;
    let path = segment.persist().expect("file-backed");
    assert_eq!(path, shm.join("kept"));
    assert_eq!(std::fs::read(&path).expect("still there")[0], 9);
}

#[test]
fn resize_keeps_the_contents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (options, shm, _) = sandbox(dir.path());
    for opts in [options.clone(), options.with_start(Backing::Heap)] {
        let mut segment = SharedSegment::create_with("grow", 100, &opts).expect("create");
        segment.as_bytes_mut()[..100].copy_from_slice(&[3; 100]);
        segment.resize(5000).expect("grow");
        assert_eq!(segment.len(), 5000);
        assert!(segment.as_bytes()[..100].iter().all(|&b| b == 3));
        assert!(segment.as_bytes()[100..].iter().all(|&b| b == 0));
        segment.resize(50).expect("shrink");
        assert_eq!(segment.as_bytes(), &[3; 50]);
        if let Some(path) = segment.path() {
            assert_eq!(std::fs::metadata(path).expect("file").len(), 50);
        }
    }
    assert!(listing(&shm).is_empty());
}

#[test]
fn a_segment_holds_a_complete_npy_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (options, shm, _) = sandbox(dir.path());
    let mut segment = SharedSegment::create_npy::<f32>("arr", &[3, 4], &options).expect("create");
    let data = segment.npy_data_mut::<f32>().expect("view");
    assert_eq!(data.len(), 12);
    for (i, v) in data.iter_mut().enumerate() {
        *v = i as f32 * 1.5;
    }
    let header = segment.npy_header().expect("header");
    assert_eq!(header.shape, [3, 4]);
    assert_eq!(header.data_offset % 64, 0);
    assert!(segment.npy_data::<f64>().is_err(), "dtype is checked");
    // The file itself is a valid .npy for any reader, once this process stopped writing.
    let err = memwarden_shm::npy::NpyFile::open(shm.join("arr")).expect_err("mapped");
    assert!(matches!(err, ShmError::AlreadyMapped { .. }), "{err:?}");
    assert_eq!(segment.persist().expect("persist"), shm.join("arr"));
    let file = memwarden_shm::npy::NpyFile::open(shm.join("arr")).expect("valid npy");
    assert_eq!(file.data_as::<f32>().expect("f32")[11], 16.5);
}

#[test]
fn a_segment_truncated_by_someone_else_is_an_error_not_a_fault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (options, _, _) = sandbox(dir.path());
    let owner = SharedSegment::create_npy::<f32>("cut", &[64, 64], &options).expect("create");
    let kept = SharedSegment::create_npy::<f32>("kept", &[64, 64], &options)
        .and_then(SharedSegment::persist)
        .expect("create and persist");
    let reader = SharedSegment::open_with("kept", &options).expect("open");
    for segment in [&owner, &reader] {
        assert_eq!(segment.npy_data::<f32>().expect("whole").len(), 64 * 64);
        // Another process cuts the file to its first page while it is mapped whole:
        // touching the rest of the mapping would now raise SIGBUS.
        std::fs::OpenOptions::new()
            .write(true)
            .open(segment.path().expect("file-backed"))
            .and_then(|f| f.set_len(4096))
            .expect("truncate");
        let err = segment.npy_data::<f32>().expect_err("truncated");
        assert!(err.to_string().contains(segment.name()), "{err}");
        assert!(segment.npy_header().is_err());
    }
    drop(reader);
    std::fs::remove_file(kept).expect("clean up");
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

#[test]
fn sweep_removes_only_segments_of_dead_owners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (options, shm, _) = sandbox(dir.path());
    let dead = dead_pid();
    let stale = format!("memwarden-shm-{dead}-someone-gaf-0");
    std::fs::write(shm.join(&stale), b"left behind").expect("write");
    for keep in [
        "memwarden-shm-0-zero-pid-0".to_owned(),
        "memwarden-shm-notapid-x-0".to_owned(),
        format!("other-{dead}-file"),
    ] {
        std::fs::write(shm.join(keep), b"not ours to judge").expect("write");
    }
    let live = SharedSegment::create_with(&SharedSegment::unique_name("live"), 64, &options)
        .expect("live segment");

    let removed = sweep_stale_in(&shm).expect("sweep");
    assert_eq!(removed, [shm.join(&stale)]);
    let left = listing(&shm);
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(left.contains(&live.name().to_owned()));
    assert!(
        sweep_stale_in(&dir.path().join("absent"))
            .expect("missing dir")
            .is_empty()
    );
}

#[test]
fn the_default_sweep_cleans_dev_shm() {
    if !Path::new(DEFAULT_SHM_DIR).is_dir() {
        println!("note: no {DEFAULT_SHM_DIR}; sweep checked in a sandbox only");
        return;
    }
    let stale =
        Path::new(DEFAULT_SHM_DIR).join(format!("memwarden-shm-{}-test-sweep-0", dead_pid()));
    std::fs::write(&stale, b"x").expect("write");
    let removed = sweep_stale().expect("sweep");
    assert!(removed.contains(&stale), "{removed:?}");
    assert!(!stale.exists());
}

// --- one handle per segment in a process (issue 14, defect 1) --------------------------

#[test]
fn a_segment_this_process_maps_cannot_be_mapped_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (options, shm, _) = sandbox(dir.path());
    let owner = SharedSegment::create_npy::<f32>("once", &[4], &options).expect("create");
    // The same name, and other names (a hard link, a symlink) for the same file: all
    // refused.
    std::fs::hard_link(shm.join("once"), shm.join("alias")).expect("link");
    std::os::unix::fs::symlink(shm.join("alias"), shm.join("symlink")).expect("symlink");
    for name in ["once", "/once", "alias", "symlink"] {
        let err = SharedSegment::open_with(name, &options).expect_err(name);
        assert!(
            matches!(&err, ShmError::AlreadyMapped { name: n, holder: "a SharedSegment" }
                if n == name.trim_start_matches('/')),
            "{name}: {err:?}"
        );
        assert!(
            err.to_string().contains("already mapped in this process"),
            "{err}"
        );
    }
    // A read-only map of it would alias the owner's writable one just the same.
    let err = memwarden_shm::npy::NpyFile::open(shm.join("alias")).expect_err("npy");
    assert!(
        matches!(
            &err,
            ShmError::AlreadyMapped {
                holder: "a SharedSegment",
                ..
            }
        ),
        "{err:?}"
    );

    // Once the handle is gone (the owner unlinks "once"; "alias" still names the file),
    // one new handle may map it, and again only one.
    drop(owner);
    let reader = SharedSegment::open_with("symlink", &options).expect("free again");
    let err = SharedSegment::open_with("alias", &options).expect_err("second handle");
    assert!(matches!(err, ShmError::AlreadyMapped { .. }), "{err:?}");
    drop(reader);
    let file = memwarden_shm::npy::NpyFile::open(shm.join("alias")).expect("readers only");
    let again = memwarden_shm::npy::NpyFile::open(shm.join("alias")).expect("many readers");
    assert_eq!(file.shape(), again.shape());
    let err = SharedSegment::open_with("alias", &options).expect_err("writer while read");
    assert!(
        matches!(
            &err,
            ShmError::AlreadyMapped {
                holder: "an NpyFile",
                ..
            }
        ),
        "{err:?}"
    );
    drop((file, again));
    SharedSegment::open_with("alias", &options).expect("free once the readers are gone");
}

// --- the stale sweep takes only what is provably stale (issue 14, defect 4) -------------

/// Set in the child that [`a_persisted_segment_survives_the_sweep_after_its_creator_exits`]
/// starts: the folder to create and persist a segment in.
const CREATOR_DIR: &str = "MEMWARDEN_SHM_TEST_CREATOR_DIR";

#[test]
fn a_persisted_segment_survives_the_sweep_after_its_creator_exits() {
    if let Some(dir) = std::env::var_os(CREATOR_DIR) {
        // The child: create a segment under a unique name, persist it, exit.
        let (options, _, _) = sandbox(Path::new(&dir));
        let name = SharedSegment::unique_name("kept");
        let mut segment = SharedSegment::create_with(&name, 64, &options).expect("create");
        segment.as_bytes_mut()[..5].copy_from_slice(b"kept!");
        let path = segment.persist().expect("persist");
        std::fs::write(
            Path::new(&dir).join("persisted"),
            path.as_os_str().as_bytes(),
        )
        .expect("report");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, shm, _) = sandbox(dir.path());
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "segment::a_persisted_segment_survives_the_sweep_after_its_creator_exits",
            "--test-threads=1",
        ])
        .env(CREATOR_DIR, dir.path())
        .output()
        .expect("run the creator");
    assert!(out.status.success(), "creator failed: {out:?}");
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(
        &std::fs::read(dir.path().join("persisted")).expect("the creator reported a path"),
    ));
    assert_eq!(path.parent(), Some(shm.as_path()));
    let name = path.file_name().expect("name").to_string_lossy();
    assert!(name.starts_with("memwarden-shm-kept-"), "{name}");
    // The creator has exited: its pid is dead and nobody holds the segment.
    let removed = sweep_stale_in(&shm).expect("sweep");
    assert!(removed.is_empty(), "swept a persisted segment: {removed:?}");
    assert_eq!(&std::fs::read(&path).expect("still there")[..5], b"kept!");
}

#[test]
fn a_live_owner_whose_pid_looks_dead_is_not_swept() {
    // An owner in another pid namespace sharing the folder: the pid in its segment's
    // name names no live process here.
    let dir = tempfile::tempdir().expect("tempdir");
    let (options, shm, _) = sandbox(dir.path());
    let name = format!("memwarden-shm-{}-elsewhere-live-0", dead_pid());
    let mut owner = SharedSegment::create_with(&name, 64, &options).expect("create");
    owner.as_bytes_mut()[0] = 1;
    let removed = sweep_stale_in(&shm).expect("sweep");
    assert!(
        removed.is_empty(),
        "swept a live owner's segment: {removed:?}"
    );
    assert!(shm.join(&name).exists());
    drop(owner);
    assert!(listing(&shm).is_empty(), "the owner still unlinks it");
}

#[test]
fn a_stale_segment_is_swept_only_once_nobody_holds_it() {
    // Left behind by a dead owner, but another process still has it open.
    let dir = tempfile::tempdir().expect("tempdir");
    let (options, shm, _) = sandbox(dir.path());
    let name = format!("memwarden-shm-{}-gone-left-0", dead_pid());
    std::fs::write(shm.join(&name), [7u8; 64]).expect("write");
    let reader = SharedSegment::open_with(&name, &options).expect("open");
    assert!(
        sweep_stale_in(&shm).expect("sweep").is_empty(),
        "swept a segment someone still holds"
    );
    assert_eq!(reader.as_bytes()[0], 7);
    drop(reader);
    assert_eq!(sweep_stale_in(&shm).expect("sweep"), [shm.join(&name)]);
    assert!(listing(&shm).is_empty());
}
