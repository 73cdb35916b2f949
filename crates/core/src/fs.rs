//! Files written whole or not at all: a temporary file beside the target, renamed over it.
//!
//! Every crate that writes a file a reader may open meanwhile (snapshots, model files,
//! profiles, the CLI's outputs) writes it through [`AtomicFile`]: a reader sees the old
//! file or the new one, never half of one, and an error (or a panic while filling it)
//! leaves the target as it was and no temporary file behind.
//!
//! How durable the result is depends on the caller, and is said with [`Durability`]:
//! a report or a picture only has to survive the process, a snapshot the index trusts
//! has to survive a crash of the machine.
//!
//! The other way, [`read_regular`] reads a file a user named (a config, a model, a
//! buffer list) whole, but only a regular file and only up to a limit: a FIFO would
//! block and `/dev/zero` would never end.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How long a write must last once [`AtomicFile::commit`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Renamed into place: other processes see the whole file, but a power cut may
    /// lose it (or, on some file systems, leave it empty). For outputs a user can make
    /// again: reports, pictures, profiles.
    Process,
    /// The contents are synced before the rename and the directory after it, so the
    /// file survives a crash of the machine. For data something else will trust later:
    /// snapshots an index points at, model files kept between runs.
    Crash,
}

/// A step of [`AtomicFile::commit_with`], for callers that inject faults in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitStep {
    /// Syncing the temporary file's contents (only with [`Durability::Crash`]).
    SyncFile,
    /// Renaming the temporary file over the target.
    Rename,
    /// Syncing the directory (only with [`Durability::Crash`]).
    SyncDir,
}

/// An atomic write failed: what was being done, to which path, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}", path.display())]
#[non_exhaustive]
pub struct AtomicWriteError {
    /// What was being done: `"create"`, `"sync"`, `"rename"`, ...
    pub op: &'static str,
    /// The path it was done to.
    pub path: PathBuf,
    /// Whether the new file had already replaced the target (the directory sync failed
    /// after the rename): the target then holds the new contents, durably or not.
    pub renamed: bool,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}

impl From<AtomicWriteError> for io::Error {
    fn from(e: AtomicWriteError) -> Self {
        io::Error::new(e.source.kind(), e)
    }
}

/// A file being written under a temporary name beside its target; see the
/// [module docs](self).
///
/// Dropped without [`commit`](Self::commit), it removes the temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Starts a write of `target` under a hidden temporary name in the same directory,
    /// unique in this process (`.name.tmp-<pid>-<n>`).
    ///
    /// A `target` that exists must be a regular file: the rename would replace a
    /// directory entry such as `/dev/null`, a FIFO or a socket with a plain file.
    pub fn create(target: impl Into<PathBuf>) -> Result<Self, AtomicWriteError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let target = target.into();
        let fail = |source| AtomicWriteError {
            op: "write",
            path: target.clone(),
            renamed: false,
            source,
        };
        let Some(name) = target.file_name() else {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path does not name a file",
            )));
        };
        if let Ok(meta) = fs::metadata(&target)
            && !meta.is_file()
        {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                if meta.is_dir() {
                    "it is a directory"
                } else {
                    "it is not a regular file (a device, FIFO or socket), and an atomic write replaces its target"
                },
            )));
        }
        let temp = target.with_file_name(format!(
            ".{}.tmp-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        AtomicFile::with_temp(target, temp)
    }

    /// Starts a write of `target` under the temporary name `temp`, which must not exist
    /// (for stores that sweep their own temporary files by name after a crash).
    pub fn with_temp(
        target: impl Into<PathBuf>,
        temp: impl Into<PathBuf>,
    ) -> Result<Self, AtomicWriteError> {
        Self::with_temp_options(target.into(), temp.into(), OpenOptions::new())
    }

    /// [`with_temp`](Self::with_temp), the temporary file (and so the file renamed into
    /// place) created with permission bits `mode` (less the umask) where files have them:
    /// `0o600` for a file only its user may read, with no moment when others can open it.
    pub fn with_temp_mode(
        target: impl Into<PathBuf>,
        temp: impl Into<PathBuf>,
        mode: u32,
    ) -> Result<Self, AtomicWriteError> {
        let mut options = OpenOptions::new();
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        Self::with_temp_options(target.into(), temp.into(), options)
    }

    fn with_temp_options(
        target: PathBuf,
        temp: PathBuf,
        mut options: OpenOptions,
    ) -> Result<Self, AtomicWriteError> {
        let file = options
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|source| AtomicWriteError {
                op: "create",
                path: temp.clone(),
                renamed: false,
                source,
            })?;
        Ok(AtomicFile {
            target,
            temp,
            file: Some(file),
        })
    }

    /// The open temporary file, to write into.
    pub fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("the file is only taken by commit, which consumes self")
    }

    /// The temporary file's path, for writers that open files by name.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The path the file will have.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Moves the file into place with the given durability.
    pub fn commit(self, durability: Durability) -> Result<(), AtomicWriteError> {
        self.commit_with(durability, |_| Ok(()))
    }

    /// [`commit`](Self::commit), calling `before` ahead of each step; an error from it
    /// fails the step (how tests inject a full disk or a failed rename).
    pub fn commit_with(
        mut self,
        durability: Durability,
        mut before: impl FnMut(CommitStep) -> io::Result<()>,
    ) -> Result<(), AtomicWriteError> {
        let file = self.file.take().expect("commit runs once");
        let fail = |op, path: &Path, renamed, source| AtomicWriteError {
            op,
            path: path.to_path_buf(),
            renamed,
            source,
        };
        if durability == Durability::Crash {
            before(CommitStep::SyncFile)
                .and_then(|()| file.sync_all())
                .map_err(|e| fail("sync", &self.temp, false, e))?;
        }
        drop(file);
        before(CommitStep::Rename)
            .and_then(|()| fs::rename(&self.temp, &self.target))
            .map_err(|e| fail("rename", &self.temp, false, e))?;
        // Renamed: nothing is left to remove on drop.
        self.temp = PathBuf::new();
        if durability == Durability::Crash {
            let dir = match self.target.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            before(CommitStep::SyncDir)
                .and_then(|()| sync_dir(dir))
                .map_err(|e| fail("sync", dir, true, e))?;
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            drop(self.file.take());
            // Best effort: an error or a panic is already on its way to the caller.
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to `path` through an [`AtomicFile`].
pub fn write_atomic(
    path: impl Into<PathBuf>,
    bytes: &[u8],
    durability: Durability,
) -> Result<(), AtomicWriteError> {
    let mut out = AtomicFile::create(path)?;
    io::Write::write_all(out.file(), bytes).map_err(|source| AtomicWriteError {
        op: "write",
        path: out.temp_path().to_path_buf(),
        renamed: false,
        source,
    })?;
    out.commit(durability)
}

/// Makes renames and deletions in `dir` durable (a no-op where directories cannot be
/// synced).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Reads the whole of the regular file at `path`, of at most `limit` bytes.
///
/// Anything else is refused before a byte is read: a directory (error kind
/// [`io::ErrorKind::IsADirectory`]), a FIFO, socket or device
/// ([`io::ErrorKind::InvalidInput`]: opening a FIFO blocks until a writer appears, and
/// `/dev/zero` never ends), and a file over `limit` ([`io::ErrorKind::FileTooLarge`]).
/// Symbolic links are followed. The error's message says which, for a caller to wrap
/// with the path and what the file was for.
///
/// The type is checked on the path, then again on the opened file, and at most
/// `limit + 1` bytes are read, so a file replaced or grown in between is refused too. On
/// Unix the file is opened non-blocking (which changes nothing for a regular file), so a
/// FIFO swapped in between the two checks cannot block the open either.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    check_regular(&fs::metadata(path)?, limit)?;
    let file = open_nonblocking(path)?;
    let len = check_regular(&file.metadata()?, limit)?;
    // At most `limit` bytes: the size was checked.
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(None, limit));
    }
    Ok(bytes)
}

/// Opens `path` for reading without waiting for a writer, should it be a FIFO.
fn open_nonblocking(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Refuses what [`read_regular`] does not read; the file's length otherwise.
fn check_regular(meta: &fs::Metadata, limit: u64) -> io::Result<u64> {
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "not a regular file (a directory)",
        ));
    }
    if !kind.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file (a {})", special_kind(&kind)),
        ));
    }
    if meta.len() > limit {
        return Err(too_large(Some(meta.len()), limit));
    }
    Ok(meta.len())
}

fn special_kind(kind: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if kind.is_fifo() {
            return "FIFO";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "device";
        }
        if kind.is_socket() {
            return "socket";
        }
    }
    let _ = kind;
    "device, FIFO or socket"
}

fn too_large(len: Option<u64>, limit: u64) -> io::Error {
    let limit = crate::ByteSize::b(limit);
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        match len {
            Some(len) => format!("too large: {len} bytes, over the limit of {limit}"),
            None => format!("too large: over the limit of {limit} (more than its size said)"),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("readable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_commit_replaces_the_target_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("out.bin");
        fs::write(&path, b"old").expect("writable");
        for durability in [Durability::Process, Durability::Crash] {
            write_atomic(&path, b"new contents", durability).expect("written");
            assert_eq!(fs::read(&path).expect("readable"), b"new contents");
            assert_eq!(entries(dir.path()), ["out.bin"]);
        }
    }

    #[test]
    fn a_failed_or_abandoned_write_leaves_the_target_as_it_was() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("out.bin");
        fs::write(&path, b"old").expect("writable");
        // Abandoned half way (an error or a panic in the writer).
        let mut out = AtomicFile::create(&path).expect("created");
        io::Write::write_all(out.file(), b"half").expect("written");
        drop(out);
        assert_eq!(fs::read(&path).expect("readable"), b"old");
        assert_eq!(entries(dir.path()), ["out.bin"]);
        // A failed rename.
        let mut out = AtomicFile::create(&path).expect("created");
        io::Write::write_all(out.file(), b"new").expect("written");
        let error = out
            .commit_with(Durability::Crash, |step| match step {
                CommitStep::Rename => Err(io::Error::other("injected")),
                _ => Ok(()),
            })
            .expect_err("the rename fails");
        assert_eq!((error.op, error.renamed), ("rename", false));
        assert_eq!(fs::read(&path).expect("readable"), b"old");
        assert_eq!(entries(dir.path()), ["out.bin"]);
    }

    #[test]
    fn targets_that_are_not_regular_files_are_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let error = write_atomic(dir.path(), b"x", Durability::Process).expect_err("a dir");
        assert!(error.to_string().contains("directory"), "{error}");
        #[cfg(unix)]
        {
            let error = write_atomic("/dev/null", b"x", Durability::Process).expect_err("a device");
            assert!(error.to_string().contains("not a regular file"), "{error}");
        }
        assert!(write_atomic("", b"x", Durability::Process).is_err());
    }

    #[test]
    fn reads_regular_files_up_to_the_limit_and_refuses_the_rest() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("in.txt");
        fs::write(&path, b"12345").expect("writable");
        assert_eq!(read_regular(&path, 5).expect("at the limit"), b"12345");
        let kind = |path: &Path, limit| read_regular(path, limit).expect_err("refused").kind();
        assert_eq!(kind(&path, 4), io::ErrorKind::FileTooLarge);
        assert_eq!(kind(dir.path(), 1 << 20), io::ErrorKind::IsADirectory);
        assert_eq!(kind(&dir.path().join("none"), 1), io::ErrorKind::NotFound);
        #[cfg(unix)]
        {
            let error = read_regular(Path::new("/dev/zero"), 1 << 20).expect_err("a device");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            assert!(error.to_string().contains("device"), "{error}");
        }
        // A file whose size says nothing of its contents (as one that grows while read):
        // the read itself stops one byte past the limit.
        #[cfg(target_os = "linux")]
        {
            let error = read_regular(Path::new("/proc/self/status"), 8).expect_err("grown");
            assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
            assert!(
                error.to_string().contains("more than its size said"),
                "{error}"
            );
        }
    }
}
