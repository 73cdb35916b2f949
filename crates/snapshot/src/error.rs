//! [`SnapshotError`]: every way encoding, decoding or storing a snapshot can fail.

use std::io;
use std::path::PathBuf;

use memwarden_core::ResourceId;

/// Why a snapshot could not be encoded, decoded, written or opened.
///
/// A snapshot that fails verification on restore is not an error of the caller's: the
/// store reports it as a miss (and counts, logs and quarantines the file); this type is
/// what codecs and writes return.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A file or directory operation failed.
    #[error("cannot {op} {path:?}: {source}")]
    Io {
        /// What was being done (`"write"`, `"rename"`, `"open"`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The snapshot is larger than the store's disk limit, so it could never be kept.
    #[error("snapshot of {id} is {bytes} bytes, more than the store's limit of {limit} bytes")]
    TooLarge {
        /// The resource.
        id: ResourceId,
        /// The snapshot's size on disk, header included; or, when the value was refused
        /// before it was encoded ([`Snapshotter::save`](crate::Snapshotter::save)), the
        /// bytes it holds in memory.
        bytes: u64,
        /// The store's disk limit.
        limit: u64,
    },
    /// A codec was asked to decode a version it does not know.
    #[error("{type_name} cannot decode version {version} (it writes version {supported})")]
    UnsupportedVersion {
        /// The codec's type.
        type_name: &'static str,
        /// The version found.
        version: u32,
        /// The version the codec writes.
        supported: u32,
    },
    /// Bytes handed to a codec are not a valid encoding, or a value cannot be encoded.
    #[error("malformed {type_name}: {reason}")]
    Malformed {
        /// The codec's type.
        type_name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A weights file is shorter than the range a [`MappedWeights`](crate::MappedWeights) refers to.
    #[error("weights file {path:?} is {actual} bytes; the snapshot needs {expected}")]
    WeightsLength {
        /// The weights file.
        path: PathBuf,
        /// The bytes needed: offset plus length.
        expected: u64,
        /// The file's length.
        actual: u64,
    },
    /// A weights file was replaced since its snapshot (its length or modification time
    /// differs), so the snapshot no longer describes it.
    #[error("the weights file {path:?} changed since it was snapshotted")]
    WeightsChanged {
        /// The file.
        path: std::path::PathBuf,
    },
    /// Another store already uses the directory.
    #[error("the snapshot directory {dir:?} is in use by another store")]
    InUse {
        /// The directory.
        dir: std::path::PathBuf,
    },
    /// Users other than the store's own could write to the store's directory: it is
    /// group- or world-writable (sticky or not), or it belongs to another user. They
    /// could plant or replace snapshot files, so the store refuses it.
    #[error(
        "refusing the snapshot directory {dir:?}: users other than this one can write to it \
         (mode {mode:04o}, owner uid {owner}); it must belong to this user and be writable by no one else"
    )]
    InsecureDir {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
        /// The user id that owns it.
        owner: u32,
    },
    /// The store's configuration cannot work.
    #[error("invalid snapshot store configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl SnapshotError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SnapshotError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(type_name: &'static str, reason: impl Into<String>) -> Self {
        SnapshotError::Malformed {
            type_name,
            reason: reason.into(),
        }
    }
}
