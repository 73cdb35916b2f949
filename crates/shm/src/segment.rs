//! Named shared-memory segments with space reservation, fallbacks and a stale sweep.
//!
//! On Linux a POSIX shared-memory object named `NAME` is the file `/dev/shm/NAME` (that is
//! what `shm_open` opens), so a [`SharedSegment`] is a memory map over such a file. Before
//! mapping, the free space of the directory is checked (`statvfs`) and the whole length is
//! reserved with `posix_fallocate`, so a full `/dev/shm` shows up as an error here and not
//! as a `SIGBUS` on some later write. When `/dev/shm` is missing or too small the segment
//! falls back, with a logged warning per step, to a file of the same name in the temp
//! directory and then to anonymous heap memory (which other processes cannot open).
//!
//! # Reading a segment from Python
//!
//! A segment created with [`SharedSegment::create_npy`] is a complete `.npy` file, so
//! NumPy maps it without a copy:
//!
//! ```python
//! import numpy as np
//! images = np.load("/dev/shm/NAME", mmap_mode="r")
//! ```
//!
//! Prefer that over `multiprocessing.shared_memory.SharedMemory(name=...)`: on Python 3.12
//! and older, attaching with `SharedMemory` registers the segment with the resource
//! tracker, which *unlinks* it when the attaching process exits, even though that process
//! never created it (the owner then finds its segment gone, and a later reader fails).
//! Python 3.13 added `SharedMemory(name, track=False)`, which is safe; on older versions
//! `numpy.load(..., mmap_mode="r")` on the `/dev/shm` path is the safe way (or unregister
//! with `resource_tracker.unregister(shm._name, "shared_memory")` right after attaching).
//!
//! # Ownership
//!
//! The process that creates a segment owns it and unlinks it when the value drops,
//! including during unwinding and on every error path after the file was created.
//! Every handle, the owner's and those from [`SharedSegment::open`], holds a shared
//! `flock` on the segment's file for as long as it lives; the kernel drops it when the
//! process dies, however it dies. [`sweep_stale`] removes a segment named by
//! [`SharedSegment::unique_name`] only when it can take an exclusive lock on it, that is
//! when no process anywhere holds a handle (a pid in the name is only a hint: a process
//! in another pid namespace sharing `/dev/shm` has pids that mean nothing here).
//! [`SharedSegment::persist`] hands a segment over to outlive its creator, under a name
//! the sweep never takes.
//!
//! Within one process there is at most one handle per segment; other processes may map
//! it too, and [`SharedSegment`]'s "Sharing the memory" section says what that asks of
//! them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapMut;

use crate::error::{NpyProblem, Result, ShmError};
use crate::float::{self, Float};
use crate::mapped::{Claim, FileId};
use crate::npy::{self, NpyHeader};

/// Where Linux keeps POSIX shared-memory objects.
pub const DEFAULT_SHM_DIR: &str = "/dev/shm";

/// Prefix of every name made by [`SharedSegment::unique_name`]; [`sweep_stale`] only
/// considers names that start with it and a pid.
pub const NAME_PREFIX: &str = "memwarden-shm-";

/// What [`SharedSegment::persist`] puts after [`NAME_PREFIX`] in a unique name to keep the
/// segment from [`sweep_stale`]: no pid starts with it.
const KEPT: &str = "kept-";

/// How many times a new segment file is made again when a stale sweep in another pid
/// namespace removed it between its creation and its lock (see `create_locked`).
const CREATE_TRIES: usize = 3;

/// Longest accepted segment name (the usual `NAME_MAX` of 255, less one for the `/` that
/// `shm_open` names carry).
pub const MAX_NAME_LEN: usize = 254;

/// What memory a segment lives in, in fallback order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Backing {
    /// A file in the shared-memory directory (`/dev/shm`): other processes can open it by
    /// name, and it never touches a disk.
    SharedMemory,
    /// A file of the same name in the temp directory: still shareable by path, but backed
    /// by whatever filesystem holds the temp directory.
    TempFile,
    /// Anonymous memory of this process only.
    Heap,
}

impl Backing {
    /// A short lowercase name: `shared-memory`, `temp-file`, `heap`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SharedMemory => "shared-memory",
            Self::TempFile => "temp-file",
            Self::Heap => "heap",
        }
    }
}

impl std::fmt::Display for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where segments may be placed and how hard to try.
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    shm_dir: PathBuf,
    temp_dir: PathBuf,
    start: Backing,
    fallback: bool,
    headroom: u64,
    simulate_enospc: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self {
            shm_dir: PathBuf::from(DEFAULT_SHM_DIR),
            temp_dir: std::env::temp_dir(),
            start: Backing::SharedMemory,
            fallback: true,
            headroom: 0,
            simulate_enospc: false,
        }
    }
}

impl SegmentOptions {
    /// `/dev/shm`, then the temp directory, then the heap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `dir` in place of `/dev/shm` (another tmpfs mount, say).
    pub fn with_shm_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.shm_dir = dir.into();
        self
    }

    /// Uses `dir` for the file fallback in place of [`std::env::temp_dir`].
    pub fn with_temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_dir = dir.into();
        self
    }

    /// Starts the fallback chain at `backing` (`Backing::Heap` skips shared memory).
    pub fn with_start(mut self, backing: Backing) -> Self {
        self.start = backing;
        self
    }

    /// With `false`, failing at the first place is an error instead of a fallback.
    pub fn with_fallback(mut self, fallback: bool) -> Self {
        self.fallback = fallback;
        self
    }

    /// Leaves at least `bytes` free in a directory after reserving a segment there;
    /// a directory with less room is skipped. Default 0.
    pub fn with_headroom(mut self, bytes: u64) -> Self {
        self.headroom = bytes;
        self
    }

    /// Testing aid: makes the reservation in the shared-memory directory fail with
    /// `ENOSPC` after the file was created, to exercise the fallback and the clean-up of
    /// the half-made file exactly as a full `/dev/shm` would.
    pub fn with_simulated_enospc(mut self, simulate: bool) -> Self {
        self.simulate_enospc = simulate;
        self
    }

    /// The shared-memory directory.
    pub fn shm_dir(&self) -> &Path {
        &self.shm_dir
    }

    /// The temp directory used by the file fallback.
    pub fn temp_dir(&self) -> &Path {
        &self.temp_dir
    }

    fn chain(&self) -> impl Iterator<Item = Backing> + '_ {
        [Backing::SharedMemory, Backing::TempFile, Backing::Heap]
            .into_iter()
            .filter(move |&b| b >= self.start)
            .take(if self.fallback { 3 } else { 1 })
    }

    fn dir_of(&self, backing: Backing) -> Option<&Path> {
        match backing {
            Backing::SharedMemory => Some(&self.shm_dir),
            Backing::TempFile => Some(&self.temp_dir),
            Backing::Heap => None,
        }
    }
}

/// A named, memory-mapped region of shared memory (or of its fallbacks).
///
/// Dereferences to nothing on purpose: use [`as_bytes`](Self::as_bytes) or the `.npy`
/// views.
///
/// # One handle per segment in a process
///
/// A process holds at most one handle to a segment. [`open`](Self::open) of a segment
/// this process already maps, by its name or any other (a hard link, another path to the
/// same file: the check is on the file's device and inode), is
/// [`ShmError::AlreadyMapped`], and so is an [`NpyFile`](crate::npy::NpyFile) of it; the
/// check lasts until the handle drops. So within this process the `&mut [u8]` of
/// [`as_bytes_mut`](Self::as_bytes_mut) is exclusive and the `&[u8]` of
/// [`as_bytes`](Self::as_bytes) cannot change under it, as for any Rust value; a second
/// view in this process goes through the one handle.
///
/// # Sharing the memory
///
/// Other processes can map the segment too, and nothing in this process can stop them
/// writing it or shrinking it. That is outside what Rust's rules can promise, so it is
/// the contract of every process that shares a segment, the caller's to keep, as with
/// any shared memory-mapped file (it is why `memmap2`'s map functions are `unsafe`).
/// The same goes for this process writing the file other than through the handle (with
/// `write(2)`, say):
///
/// - **Writers must take turns.** Another process must not write the bytes behind a
///   view (a borrow from [`as_bytes`](Self::as_bytes), [`as_bytes_mut`](Self::as_bytes_mut)
///   or the `.npy` views) while this process holds it, nor this process write bytes
///   another process is reading. If it happens anyway, it is a data race, which Rust's
///   memory model does not define, and this crate does not claim otherwise. What it
///   gives in practice is stale or torn values, never invalid ones (the views are bytes,
///   `f32` or `f64`, which have no invalid bit patterns), but the compiler may assume
///   that memory behind a view does not change while the view lives, so code that reads
///   a value twice may act on two different values. Hand a segment over instead: finish
///   writing, then tell the reader, as `memwarden gaf --shm` and the loader's batches do.
/// - **Nobody may shrink a segment someone else has mapped.** A file truncated under
///   a mapping makes every access past its new end fault with `SIGBUS`, which kills
///   the process. Segments are created with mode `0600`, so only the same user can,
///   and [`npy_header`](Self::npy_header) (and the `.npy` views) check the file's length
///   first, so a segment that was already cut short is an error; a truncation racing
///   with an access cannot be caught. [`resize`](Self::resize) truncates when it
///   shrinks: only the segment's only user should call it.
#[derive(Debug)]
pub struct SharedSegment {
    name: String,
    path: Option<PathBuf>,
    backing: Backing,
    map: MmapMut,
    /// Open for the handle's life: it carries the shared `flock` that keeps
    /// [`sweep_stale`] away.
    file: Option<File>,
    owner: bool,
    /// This process's only mapping of the file; `None` on the heap. Declared last so
    /// that it is released after the map is gone.
    _claim: Option<Claim>,
}

/// A path that is removed on drop unless disarmed: the clean-up for half-made segments.
struct RemoveOnDrop<'a>(Option<&'a Path>);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0
            && let Err(e) = fs::remove_file(path)
        {
            log::warn!("could not remove half-made segment {}: {e}", path.display());
        }
    }
}

/// Why one place in the fallback chain did not work.
enum Refusal {
    /// Try the next place.
    Soft(String),
    /// Stop: trying elsewhere would hide a real problem (a name clash, say).
    Hard(ShmError),
}

impl SharedSegment {
    /// Creates an owned segment of `len` zeroed bytes named `name`, with default options.
    pub fn create(name: &str, len: usize) -> Result<Self> {
        Self::create_with(name, len, &SegmentOptions::default())
    }

    /// Creates an owned segment of `len` zeroed bytes, trying the places `options` allows
    /// in order and logging a warning for each fallback. An existing segment of the same
    /// name is an error, not a reason to fall back.
    pub fn create_with(name: &str, len: usize, options: &SegmentOptions) -> Result<Self> {
        let name = validate_name(name)?;
        if len == 0 {
            return Err(ShmError::EmptySegment { name: name.into() });
        }
        let mut reasons = Vec::new();
        let mut chain = options.chain().peekable();
        while let Some(backing) = chain.next() {
            let attempt = match options.dir_of(backing) {
                Some(dir) => Self::create_file(name, len, dir, backing, options),
                None => MmapMut::map_anon(len)
                    .map(|map| Self {
                        name: name.to_owned(),
                        path: None,
                        backing,
                        map,
                        file: None,
                        owner: true,
                        _claim: None,
                    })
                    .map_err(|e| Refusal::Soft(format!("anonymous map: {e}"))),
            };
            match attempt {
                Ok(segment) => {
                    if backing == Backing::Heap {
                        log::warn!(
                            "segment {name:?}: using heap memory; other processes cannot open it"
                        );
                    }
                    return Ok(segment);
                }
                Err(Refusal::Hard(err)) => return Err(err),
                Err(Refusal::Soft(reason)) => {
                    match chain.peek() {
                        Some(next) => log::warn!(
                            "segment {name:?} ({len} bytes): {} unusable ({reason}); \
                             falling back to {next}",
                            backing
                        ),
                        None => log::warn!(
                            "segment {name:?} ({len} bytes): {backing} unusable ({reason})"
                        ),
                    }
                    reasons.push(format!("{backing}: {reason}"));
                }
            }
        }
        Err(ShmError::NoBacking {
            name: name.into(),
            len,
            reasons: reasons.join("; "),
        })
    }

    fn create_file(
        name: &str,
        len: usize,
        dir: &Path,
        backing: Backing,
        options: &SegmentOptions,
    ) -> std::result::Result<Self, Refusal> {
        if !dir.is_dir() {
            return Err(Refusal::Soft(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let free = free_bytes(dir)
            .map_err(|e| Refusal::Soft(format!("statvfs {}: {e}", dir.display())))?;
        let needed = (len as u64).saturating_add(options.headroom);
        if free < needed {
            return Err(Refusal::Soft(format!(
                "{} has {free} bytes free, {needed} needed",
                dir.display()
            )));
        }
        let path = dir.join(name);
        let file = create_locked(&path)?;
        let mut cleanup = RemoveOnDrop(Some(&path));
        let meta = file
            .metadata()
            .map_err(|e| Refusal::Soft(format!("stat {}: {e}", path.display())))?;
        // A file just created cannot be mapped anywhere in this process yet (a mapping
        // keeps its inode, and so its number, alive): this cannot fail, but if it did,
        // refusing is the sound answer.
        let claim = Claim::exclusive(FileId::of(&meta)).map_err(|holder| {
            Refusal::Hard(ShmError::AlreadyMapped {
                name: name.to_owned(),
                holder,
            })
        })?;
        let simulate = options.simulate_enospc && backing == Backing::SharedMemory;
        reserve(&file, len, simulate)
            .map_err(|e| Refusal::Soft(format!("reserve {len} bytes in {}: {e}", dir.display())))?;
        // SAFETY: we created this file (create_new, mode 0600) and reserved all `len` bytes
        // with posix_fallocate, so every mapped page is backed and, as long as nobody
        // truncates the file, no access can fault. No other mapping of the file exists in
        // this process, or can while the handle lives: `claim` holds its device and inode
        // exclusively, so the handle's `&mut [u8]` aliases nothing this process can reach.
        // What other processes may do to the memory while this one borrows it, and the
        // SIGBUS a truncation by someone else would cause, is the documented contract of
        // `SharedSegment` ("Sharing the memory"), which no code here can enforce.
        let map = unsafe { MmapMut::map_mut(&file) }
            .map_err(|e| Refusal::Soft(format!("map {}: {e}", path.display())))?;
        cleanup.0 = None;
        Ok(Self {
            name: name.to_owned(),
            path: Some(path.clone()),
            backing,
            map,
            file: Some(file),
            owner: true,
            _claim: Some(claim),
        })
    }

    /// Creates an owned segment holding a complete `.npy` file of zeros with this dtype
    /// and shape; fill it through [`npy_data_mut`](Self::npy_data_mut).
    pub fn create_npy<F: Float>(
        name: &str,
        shape: &[usize],
        options: &SegmentOptions,
    ) -> Result<Self> {
        let header = npy::encode_header(F::DTYPE, shape);
        let data = npy::data_len(F::DTYPE, shape).ok_or_else(|| {
            ShmError::npy(
                name,
                NpyProblem::MalformedHeader(format!("shape {shape:?} is too large")),
            )
        })?;
        let len = header.len().checked_add(data).ok_or_else(|| {
            ShmError::npy(
                name,
                NpyProblem::MalformedHeader(format!("shape {shape:?} is too large")),
            )
        })?;
        let mut segment = Self::create_with(name, len, options)?;
        segment.map[..header.len()].copy_from_slice(&header);
        Ok(segment)
    }

    /// Opens an existing segment by name, looking in `/dev/shm` and then in the temp
    /// directory. The handle does not own the segment: dropping it leaves it in place.
    ///
    /// A segment this process already maps (through a handle, under any name, or an
    /// [`NpyFile`](crate::npy::NpyFile)) is [`ShmError::AlreadyMapped`]: this is for
    /// another process, or for after the first handle dropped.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &SegmentOptions::default())
    }

    /// Opens an existing segment by name in the places `options` allows (the heap aside),
    /// in their order.
    pub fn open_with(name: &str, options: &SegmentOptions) -> Result<Self> {
        let name = validate_name(name)?;
        let mut last = None;
        for backing in options.chain() {
            let Some(dir) = options.dir_of(backing) else {
                continue;
            };
            let path = dir.join(name);
            match Self::open_path(&path, backing) {
                Ok(segment) => return Ok(segment),
                Err(ShmError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    last = Some(ShmError::io("open", path, source));
                }
                Err(other) => return Err(other),
            }
        }
        Err(last.unwrap_or_else(|| {
            ShmError::io(
                "open",
                options.shm_dir.join(name),
                io::Error::from(io::ErrorKind::NotFound),
            )
        }))
    }

    fn open_path(path: &Path, backing: Backing) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| ShmError::io("open", path, e))?;
        let meta = file.metadata().map_err(|e| ShmError::io("stat", path, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if meta.len() == 0 {
            return Err(ShmError::EmptySegment { name });
        }
        let claim =
            Claim::exclusive(FileId::of(&meta)).map_err(|holder| ShmError::AlreadyMapped {
                name: name.clone(),
                holder,
            })?;
        // The lock only keeps a sweep from removing a segment in use: without it (a
        // filesystem without flock) the segment is still sound to use, so go on.
        if let Err(e) = flock(&file, libc::LOCK_SH) {
            log::warn!(
                "segment {}: cannot lock it ({e}); a stale sweep may remove it while open",
                path.display()
            );
        } else if !names_file(path, &meta) {
            // A sweep took it between our open and our lock: it is gone.
            return Err(ShmError::io(
                "open",
                path,
                io::Error::new(io::ErrorKind::NotFound, "removed by a stale sweep"),
            ));
        }
        // SAFETY: maps an existing segment file for reading and writing, exactly its
        // current size, so every page is inside the file when mapped (its creator reserved
        // them; a foreign sparse file may still hit ENOSPC on a write, a SIGBUS, not UB).
        // No other mapping of the file exists in this process, or can while the handle
        // lives: `claim` holds its device and inode exclusively, whatever name or path the
        // other mapping used. Concurrent writers and truncation by another process are
        // `SharedSegment`'s documented contract ("Sharing the memory"): nothing here can
        // prevent them.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| ShmError::io("map", path, e))?;
        Ok(Self {
            name,
            path: Some(path.to_owned()),
            backing,
            map,
            file: Some(file),
            owner: false,
            _claim: Some(claim),
        })
    }

    /// Removes the segment `name` from `/dev/shm` (what `shm_unlink` does). Processes that
    /// have it mapped keep their mapping.
    pub fn unlink(name: &str) -> Result<()> {
        let path = Path::new(DEFAULT_SHM_DIR).join(validate_name(name)?);
        fs::remove_file(&path).map_err(|e| ShmError::io("unlink", path, e))
    }

    /// A fresh name `memwarden-shm-{pid}-{user}-{tag}-{n}`, unique within this process and,
    /// through the pid, among live processes; `tag` is reduced to `[A-Za-z0-9_]`.
    pub fn unique_name(tag: &str) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .map(|u| sanitize(&u))
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                // SAFETY: geteuid has no preconditions and cannot fail.
                format!("uid{}", unsafe { libc::geteuid() })
            });
        format!(
            "{NAME_PREFIX}{}-{user}-{}-{n}",
            std::process::id(),
            sanitize(tag)
        )
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file behind the segment; `None` on the heap.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Where the segment ended up.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: segments hold at least one byte.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether dropping this handle unlinks the segment.
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// The whole segment as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.map
    }

    /// The whole segment as mutable bytes.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// Parses the `.npy` header at the start of the segment and checks that the segment
    /// is exactly header plus data, and that its file was not cut short since it was
    /// mapped (which would make reading the data fault).
    pub fn npy_header(&self) -> Result<NpyHeader> {
        self.check_not_truncated()?;
        let header = npy::parse_header(&self.map, Path::new(&self.name))?;
        npy::check_size(&header, self.map.len() as u64, Path::new(&self.name))?;
        Ok(header)
    }

    /// An error when the file behind the mapping is now shorter than the mapping: some
    /// other process truncated it, and touching the pages past its end would `SIGBUS`.
    fn check_not_truncated(&self) -> Result<()> {
        let (Some(file), Some(path)) = (&self.file, &self.path) else {
            return Ok(());
        };
        let now = file
            .metadata()
            .map_err(|e| ShmError::io("stat", path, e))?
            .len();
        if now < self.map.len() as u64 {
            return Err(ShmError::io(
                "read",
                path,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the segment was truncated to {now} bytes by someone else while \
                         mapped with {} bytes",
                        self.map.len()
                    ),
                ),
            ));
        }
        Ok(())
    }

    fn npy_range<F: Float>(&self) -> Result<std::ops::Range<usize>> {
        let header = self.npy_header()?;
        if header.dtype != F::DTYPE {
            return Err(ShmError::npy(
                &self.name,
                NpyProblem::WrongArray(format!(
                    "segment holds {} data, {} was asked for",
                    header.dtype.descr(),
                    F::DTYPE.descr()
                )),
            ));
        }
        Ok(header.data_offset..self.map.len())
    }

    fn misaligned(&self) -> ShmError {
        ShmError::npy(
            &self.name,
            NpyProblem::WrongArray("data section is not aligned for in-place access".into()),
        )
    }

    /// The `.npy` data held by the segment, in place.
    pub fn npy_data<F: Float>(&self) -> Result<&[F]> {
        let range = self.npy_range::<F>()?;
        float::from_bytes(&self.map[range]).ok_or_else(|| self.misaligned())
    }

    /// The `.npy` data held by the segment, in place and writable.
    pub fn npy_data_mut<F: Float>(&mut self) -> Result<&mut [F]> {
        let range = self.npy_range::<F>()?;
        if float::from_bytes::<F>(&self.map[range.clone()]).is_none() {
            return Err(self.misaligned());
        }
        Ok(float::from_bytes_mut(&mut self.map[range]).expect("alignment checked just above"))
    }

    /// Changes the size to `len` bytes (reserving the new space first when growing);
    /// contents up to the smaller size are kept. A failure leaves the segment as it was.
    ///
    /// Shrinking truncates the file: every mapping of it in other processes faults past
    /// the new end, so only the segment's sole user should shrink it.
    pub fn resize(&mut self, len: usize) -> Result<()> {
        if len == 0 {
            return Err(ShmError::EmptySegment {
                name: self.name.clone(),
            });
        }
        if len == self.map.len() {
            return Ok(());
        }
        match (&self.file, &self.path) {
            (Some(file), Some(path)) => {
                let old = self.map.len();
                if len > old {
                    reserve(file, len, false).map_err(|e| ShmError::io("reserve", path, e))?;
                }
                // Map the new length before any truncation: if mapping fails, the old
                // mapping is still over a file at least as long as itself.
                // SAFETY: the file holds at least `len` bytes (grown and reserved with
                // posix_fallocate above, or already longer when shrinking), so every page
                // of the new mapping lies inside it. The handle's claim on the file covers
                // the new mapping too (same file), and the old one is never used again once
                // replaced; the sharing contract of `SharedSegment` holds as at creation.
                let mapped = unsafe { memmap2::MmapOptions::new().len(len).map_mut(file) };
                let map = match mapped {
                    Ok(map) => map,
                    Err(e) => {
                        if len > old {
                            // Give back the space reserved above (best effort).
                            let _ = file.set_len(old as u64);
                        }
                        return Err(ShmError::io("map", path, e));
                    }
                };
                if len < old {
                    // On failure the new mapping drops and the old one still covers an
                    // unchanged file. On success the old one is replaced below without
                    // being touched past the new end (`&mut self` excludes any view).
                    file.set_len(len as u64)
                        .map_err(|e| ShmError::io("truncate", path, e))?;
                }
                self.map = map;
            }
            _ => {
                let mut map = MmapMut::map_anon(len)
                    .map_err(|e| ShmError::io("map", PathBuf::from(&self.name), e))?;
                let keep = len.min(self.map.len());
                map[..keep].copy_from_slice(&self.map[..keep]);
                self.map = map;
            }
        }
        Ok(())
    }

    /// Keeps the segment after this handle drops (for another process to read after this
    /// one exits) and returns its path. Heap segments have none: an error.
    ///
    /// [`sweep_stale`] never removes a persisted segment. Names other than
    /// [`unique_name`](Self::unique_name)'s are never swept and stay as they are. An owned
    /// segment with a unique name is renamed first, to the same name with `kept-` after
    /// [`NAME_PREFIX`] (`memwarden-shm-kept-{pid}-…`), which the sweep does not take;
    /// the returned path is the new one, and whoever reads the segment later should be
    /// given that. The rename never replaces an existing file (it links the new name, then
    /// unlinks the old), and a failure is an error after which the handle drops as the
    /// owner it still is, removing the segment. Persisting a handle from
    /// [`open`](Self::open), which never removes the segment anyway, changes nothing.
    pub fn persist(mut self) -> Result<PathBuf> {
        let Some(path) = self.path.clone() else {
            return Err(ShmError::NotFileBacked {
                name: self.name.clone(),
            });
        };
        let rest = self.name.strip_prefix(NAME_PREFIX).unwrap_or_default();
        if !self.owner || owner_pid(&self.name).is_none() {
            self.owner = false;
            return Ok(path);
        }
        let kept = path.with_file_name(format!("{NAME_PREFIX}{KEPT}{rest}"));
        fs::hard_link(&path, &kept).map_err(|e| ShmError::io("persist", &kept, e))?;
        // The segment is safe from the sweep under its new name; the old one goes.
        self.owner = false;
        if let Err(e) = fs::remove_file(&path) {
            // A second name of the same file: the sweep removes it once this handle
            // drops, leaving the kept one.
            log::warn!(
                "segment {}: could not remove the old name: {e}",
                path.display()
            );
        }
        Ok(kept)
    }
}

impl Drop for SharedSegment {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        if let Some(path) = &self.path {
            match fs::remove_file(path) {
                Ok(()) => log::debug!("unlinked segment {}", path.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("could not unlink segment {}: {e}", path.display()),
            }
        }
    }
}

/// Removes the segments left in `/dev/shm` and the temp directory by memwarden processes
/// that no longer run; returns the paths removed. See [`sweep_stale_in`].
pub fn sweep_stale() -> Result<Vec<PathBuf>> {
    let mut removed = sweep_stale_in(Path::new(DEFAULT_SHM_DIR))?;
    removed.extend(sweep_stale_in(&std::env::temp_dir())?);
    Ok(removed)
}

/// Removes, from `dir`, the segments it can prove stale; returns the paths removed.
///
/// A file is removed only when all of these hold: it is named like
/// [`SharedSegment::unique_name`] (so not persisted, see [`SharedSegment::persist`], and
/// not named by a user); it is a regular file of this user; the pid in its name is not
/// alive here; and no process holds a handle to it, which the sweep proves by taking an
/// exclusive `flock` without waiting (every handle holds a shared one until it drops, and
/// the kernel releases it when its process dies). The pid alone would not do: in a
/// container sharing `/dev/shm` with another pid namespace, a live owner's pid can look
/// dead. Everything else is left alone. A missing directory sweeps nothing.
///
/// Files made by a memwarden older than these locks carry none, so for them the pid is
/// all there is, as it used to be.
pub fn sweep_stale_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ShmError::io("list", dir, e)),
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ShmError::io("list", dir, e))?;
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(owner_pid) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        let path = entry.path();
        match entry.metadata() {
            Ok(meta) if meta.is_file() && meta.uid() == me => {}
            _ => continue,
        }
        match remove_if_unheld(&path, me) {
            Ok(true) => {
                log::warn!(
                    "removed stale segment {} (owner pid {pid} is gone, nobody holds it)",
                    path.display()
                );
                removed.push(path);
            }
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("could not remove stale segment {}: {e}", path.display()),
        }
    }
    Ok(removed)
}

/// Removes `path` if it is a regular file of user `me` on which no process holds a lock;
/// `Ok(false)` when one does (or the file changed under us).
fn remove_if_unheld(path: &Path, me: libc::uid_t) -> io::Result<bool> {
    // O_NONBLOCK: should the name have become a FIFO since it was listed, opening it must
    // not wait for a writer. O_NOFOLLOW: nor a symlink to something else.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != me {
        return Ok(false);
    }
    match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => {}
        // A handle is alive somewhere: not stale.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
        // Cannot tell (a filesystem without flock): not provably stale.
        Err(e) => {
            log::debug!(
                "segment {}: cannot lock it ({e}); left alone",
                path.display()
            );
            return Ok(false);
        }
    }
    // Holding the lock, check that the name still is this file, then unlink it; a new
    // handle to it would first have to take a shared lock, which waits for ours.
    if !names_file(path, &meta) {
        return Ok(false);
    }
    fs::remove_file(path)?;
    Ok(true)
}

/// Creates the segment file `path` (mode 0600, which must not exist yet) and takes the
/// shared lock every handle holds.
///
/// Between the creation and the lock, a sweep in another pid namespace (where our pid
/// may look dead) could find the file unlocked and remove it; we then hold a file no
/// name leads to. So after locking, the name is checked to still lead to our file, and
/// the file is made again if it does not (the name is free again then).
fn create_locked(path: &Path) -> std::result::Result<File, Refusal> {
    for _ in 0..CREATE_TRIES {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => Refusal::Hard(ShmError::io("create", path, e)),
                _ => Refusal::Soft(format!("create {}: {e}", path.display())),
            })?;
        let mut cleanup = RemoveOnDrop(Some(path));
        // Blocking: only a sweep takes the exclusive lock, and only for as long as it
        // takes to check the name and unlink it.
        flock(&file, libc::LOCK_SH)
            .map_err(|e| Refusal::Soft(format!("lock {}: {e}", path.display())))?;
        let meta = file
            .metadata()
            .map_err(|e| Refusal::Soft(format!("stat {}: {e}", path.display())))?;
        if names_file(path, &meta) {
            cleanup.0 = None;
            return Ok(file);
        }
        // The name is no longer ours to remove.
        cleanup.0 = None;
        log::warn!(
            "segment {}: removed by a stale sweep as it was created; creating it again",
            path.display()
        );
    }
    Err(Refusal::Hard(ShmError::io(
        "create",
        path,
        io::Error::other(format!(
            "removed by a stale sweep {CREATE_TRIES} times as it was created"
        )),
    )))
}

/// Whether `path` (following symlinks, as opening it does) leads to the file `meta`
/// describes.
fn names_file(path: &Path, meta: &fs::Metadata) -> bool {
    fs::metadata(path).is_ok_and(|now| FileId::of(&now) == FileId::of(meta))
}

/// `flock(file, operation)`, retried when a signal interrupts a blocking wait.
fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock takes a descriptor number and an operation and touches no memory;
        // `file` keeps the descriptor open for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The owner pid encoded in a name made by `unique_name`.
fn owner_pid(name: &str) -> Option<libc::pid_t> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let pid = rest.split('-').next()?.parse::<libc::pid_t>().ok()?;
    (pid > 0).then_some(pid)
}

/// Whether a process with this pid exists (a process of another user counts as alive).
fn pid_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 sends nothing; kill only checks that the pid exists and that we may
    // signal it.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn validate_name(name: &str) -> Result<&str> {
    let refuse = |reason| ShmError::InvalidSegmentName {
        name: name.to_owned(),
        reason,
    };
    // `shm_open` names are written with a leading slash; the file has none.
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() {
        return Err(refuse("the name is empty"));
    }
    if bare.len() > MAX_NAME_LEN {
        return Err(refuse("the name is longer than 254 bytes"));
    }
    if bare.contains('/') {
        return Err(refuse(
            "a name may not contain '/' (except one leading slash)",
        ));
    }
    if bare.contains('\0') {
        return Err(refuse("a name may not contain a NUL byte"));
    }
    if bare == "." || bare == ".." {
        return Err(refuse("'.' and '..' name directories"));
    }
    Ok(bare)
}

fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(32)
        .collect()
}

/// Free bytes for unprivileged users in the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable
    // memory of the right type, which statvfs fills on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the whole struct.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Makes the file `len` bytes long with every block allocated, so writes through a
/// mapping cannot fail for lack of space.
fn reserve(file: &File, len: usize, simulate_enospc: bool) -> io::Result<()> {
    if simulate_enospc {
        return Err(io::Error::from_raw_os_error(libc::ENOSPC));
    }
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the descriptor is open for writing for the duration of the call;
        // posix_fallocate touches nothing else.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        // No posix_fallocate (macOS): size the file; the space check above is all the
        // protection there is.
        file.set_len(len as u64)
    }
}
