//! [`MappedWeights`] (kind `model_weights_cache` / `model_shards`): a reference to a byte range of a weights file, mapped read-only.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapOptions};

use crate::codec::{Reader, check_version, len_u64};
use crate::{Snapshot, SnapshotError};

/// Model weights that already live on disk: a file, an offset and a length, mapped read-only.
///
/// Its snapshot is only the reference (path, offset, length, and the file's length and
/// modification time when it was mapped), never a copy of the bytes: restoring maps the
/// file again and refuses it if it is shorter or if its length or modification time
/// changed (the file was replaced), so a restore never hands out other weights. The weights
/// file must not be truncated or rewritten in place while a mapping of it is alive (the
/// same contract as every memory-mapped model loader); replace it by renaming a new file
/// over it instead. This cannot be enforced from inside the process: if another process
/// truncates the file, reading a page past the new end raises `SIGBUS` and kills this
/// one, and a rewrite changes the bytes behind a `&[u8]`.
pub struct MappedWeights {
    /// The weights file.
    pub path: PathBuf,
    /// Where the range starts in the file.
    pub offset: u64,
    /// The range's length in bytes.
    pub len: u64,
    /// The whole file's length when it was mapped.
    file_len: u64,
    /// The file's modification time when it was mapped, in nanoseconds since the Unix
    /// epoch (0 where the platform does not say).
    modified_ns: u64,
    map: Option<Mmap>,
}

impl MappedWeights {
    /// Maps `len` bytes of `path` starting at `offset`, read-only.
    ///
    /// Fails with [`SnapshotError::WeightsLength`] if the file is shorter than `offset + len`.
    pub fn open(path: impl Into<PathBuf>, offset: u64, len: u64) -> Result<Self, SnapshotError> {
        let path = path.into();
        let file = File::open(&path).map_err(|e| SnapshotError::io("open", &path, e))?;
        let metadata = file
            .metadata()
            .map_err(|e| SnapshotError::io("stat", &path, e))?;
        let actual = metadata.len();
        let modified_ns = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| u64::try_from(d.as_nanos()).ok())
            .unwrap_or(0);
        let expected = offset.saturating_add(len);
        if actual < expected {
            return Err(SnapshotError::WeightsLength {
                path,
                expected,
                actual,
            });
        }
        let map = if len == 0 {
            None
        } else {
            let map_len = usize::try_from(len).map_err(|_| SnapshotError::WeightsLength {
                path: path.clone(),
                expected,
                actual,
            })?;
            // SAFETY: the mapping is read-only and the range lies within the file (checked
            // just above). It is a shared mapping of a file other processes can reach, so it
            // is sound only while nobody truncates or rewrites that file in place (a
            // truncation would raise SIGBUS on access, a rewrite would change bytes under a
            // `&[u8]`). That is the type's documented contract, the same as every
            // memory-mapped model loader's: weights files are immutable while mapped and are
            // replaced by renaming a new file over them.
            let map = unsafe { MmapOptions::new().offset(offset).len(map_len).map(&file) }
                .map_err(|e| SnapshotError::io("map", &path, e))?;
            if len_u64(map.len()) != len {
                return Err(SnapshotError::WeightsLength {
                    path,
                    expected,
                    actual: offset.saturating_add(len_u64(map.len())),
                });
            }
            Some(map)
        };
        Ok(MappedWeights {
            path,
            offset,
            len,
            file_len: actual,
            modified_ns,
            map,
        })
    }

    /// The mapped bytes: `len` bytes of the file from `offset`.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The weights file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for MappedWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedWeights")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl PartialEq for MappedWeights {
    /// Same file, same range, same bytes.
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
            && self.offset == other.offset
            && self.len == other.len
            && self.bytes() == other.bytes()
    }
}

#[cfg(unix)]
fn path_bytes(path: &Path) -> Result<&[u8], SnapshotError> {
    use std::os::unix::ffi::OsStrExt;
    Ok(path.as_os_str().as_bytes())
}

#[cfg(not(unix))]
fn path_bytes(path: &Path) -> Result<&[u8], SnapshotError> {
    path.to_str().map(str::as_bytes).ok_or_else(|| {
        SnapshotError::malformed("MappedWeights", format!("path {path:?} is not UTF-8"))
    })
}

#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf, SnapshotError> {
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf, SnapshotError> {
    std::str::from_utf8(bytes)
        .map(PathBuf::from)
        .map_err(|e| SnapshotError::malformed("MappedWeights", format!("path: {e}")))
}

impl Snapshot for MappedWeights {
    const VERSION: u32 = 2;

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        let path = path_bytes(&self.path)?;
        out.extend_from_slice(&len_u64(path.len()).to_le_bytes());
        out.extend_from_slice(path);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.file_len.to_le_bytes());
        out.extend_from_slice(&self.modified_ns.to_le_bytes());
        Ok(())
    }

    /// Maps the file again; fails if it is missing or shorter than `offset + len`.
    fn decode(bytes: &[u8], version: u32) -> Result<Self, SnapshotError> {
        const NAME: &str = "MappedWeights";
        check_version::<Self>(NAME, version)?;
        let mut r = Reader::new(bytes, NAME);
        let n = r.len("path", 1)?;
        let path = path_from_bytes(r.take(n, "path")?)?;
        let offset = r.u64("offset")?;
        let len = r.u64("length")?;
        let file_len = r.u64("file length")?;
        let modified_ns = r.u64("modification time")?;
        r.finish()?;
        let weights = MappedWeights::open(path, offset, len)?;
        if weights.file_len != file_len || weights.modified_ns != modified_ns {
            return Err(SnapshotError::WeightsChanged { path: weights.path });
        }
        Ok(weights)
    }
}
