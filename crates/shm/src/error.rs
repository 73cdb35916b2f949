//! [`ShmError`]: the crate's one error type, and [`NpyProblem`], what is wrong with a `.npy` file.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong in this crate: bad GAF parameters or input, a malformed
/// `.npy` file, a shared-memory segment that cannot be created, opened or reserved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// A series has fewer than the two timestamps a GAF needs.
    #[error("a series needs at least 2 timestamps to make a GAF image, got {len}")]
    SeriesTooShort {
        /// The series length that was given.
        len: usize,
    },

    /// A fixed image size of 0 or larger than the series.
    #[error("image_size must lie in 1..={series_len} (the series length), got {image_size}")]
    ImageSizeOutOfRange {
        /// The requested image size.
        image_size: usize,
        /// The series length.
        series_len: usize,
    },

    /// A fractional image size outside (0, 1].
    #[error("a fractional image_size must lie in (0, 1], got {fraction}")]
    ImageFractionOutOfRange {
        /// The requested fraction of the series length.
        fraction: f64,
    },

    /// A `sample_range` that is not `-1 <= min < max <= 1`.
    #[error("sample_range must satisfy -1 <= min < max <= 1, got ({min}, {max})")]
    InvalidSampleRange {
        /// The lower end that was given.
        min: f64,
        /// The upper end that was given.
        max: f64,
    },

    /// A NaN or an infinity in the input.
    #[error("sample {sample}, timestamp {timestamp}: the value {value} is not finite")]
    NonFinite {
        /// Index of the sample (row) in the whole input.
        sample: usize,
        /// Index of the timestamp (column) within the sample.
        timestamp: usize,
        /// The offending value.
        value: f64,
    },

    /// With `sample_range: None` the (PAA-reduced) values must already lie in [-1, 1].
    #[error(
        "sample {sample}: value {value} lies outside [-1, 1]; \
         without a sample_range the values must already be scaled"
    )]
    ValueOutOfUnitRange {
        /// Index of the sample (row) in the whole input.
        sample: usize,
        /// The first value found outside [-1, 1].
        value: f64,
    },

    /// A size computed from the parameters or the input (an image, an output, a
    /// segment) does not fit in the address space: `image_size` far too large, or a
    /// shape whose product overflows.
    #[error("{what} does not fit in the address space")]
    TooLarge {
        /// What was being sized, with its dimensions.
        what: String,
    },

    /// A buffer whose length does not fit the shape it is used with.
    #[error("{what} holds {actual} values, expected {expected}")]
    LengthMismatch {
        /// Which buffer: "input", "output", "data".
        what: &'static str,
        /// The length the shape calls for.
        expected: usize,
        /// The length that was given.
        actual: usize,
    },

    /// A `.npy` file (or segment) that cannot be read or written as asked.
    #[error("{}: {problem}", path.display())]
    Npy {
        /// The file, or the segment's name.
        path: PathBuf,
        /// What is wrong with it.
        problem: NpyProblem,
    },

    /// An I/O operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done ("create", "open", "map", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A segment name that POSIX shared memory would refuse.
    #[error("invalid shared-memory segment name {name:?}: {reason}")]
    InvalidSegmentName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A segment of zero bytes was asked for (nothing can map it).
    #[error("segment {name:?}: a segment must hold at least one byte")]
    EmptySegment {
        /// The segment's name.
        name: String,
    },

    /// A segment could not be placed anywhere the options allow.
    #[error("segment {name:?} ({len} bytes) could not be created: {reasons}")]
    NoBacking {
        /// The segment's name.
        name: String,
        /// The size asked for.
        len: usize,
        /// Why each allowed place failed, in the order they were tried.
        reasons: String,
    },

    /// Only a file-backed segment has a path to keep.
    #[error("segment {name:?} lives on the heap and has no file to persist")]
    NotFileBacked {
        /// The segment's name.
        name: String,
    },

    /// The segment or file is already mapped in this process, under this name or another
    /// (the check is on the file itself: its device and inode). A second mapping would let
    /// safe code borrow the same bytes mutably and immutably at once, so there is at most
    /// one [`SharedSegment`](crate::SharedSegment) per file in a process, and no
    /// [`NpyFile`](crate::npy::NpyFile) beside it. Use the existing handle, or drop it first.
    #[error(
        "{name:?} is already mapped in this process by {holder}; use that one or drop it \
         first (a second mapping could alias its memory)"
    )]
    AlreadyMapped {
        /// The segment's name, or the file's path, as given.
        name: String,
        /// What maps it: "a SharedSegment" or "an NpyFile".
        holder: &'static str,
    },

    /// The loader was asked for another batch while every slot of its ring was held.
    #[error(
        "all {slots} ring slots are held by live batches; drop a batch before asking \
         for the next one (or configure more slots)"
    )]
    RingExhausted {
        /// The ring's size.
        slots: usize,
    },

    /// The loader's worker pool could not be started.
    #[error("could not start {workers} worker threads: {message}")]
    WorkerPool {
        /// The number of workers asked for.
        workers: usize,
        /// rayon's explanation.
        message: String,
    },
}

/// What is wrong with a `.npy` header or file; carried by [`ShmError::Npy`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NpyProblem {
    /// The file does not start with `\x93NUMPY`.
    BadMagic,
    /// The file ends before the header does.
    Truncated,
    /// A format version this reader does not know.
    UnsupportedVersion {
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// A dtype other than little-endian `f4` / `f8`.
    UnsupportedDtype(String),
    /// `fortran_order: True` for an array of two or more dimensions.
    FortranOrder,
    /// The header dictionary could not be parsed.
    MalformedHeader(String),
    /// The data section is not as long as shape × item size says.
    SizeMismatch {
        /// Bytes the header's shape and dtype call for.
        expected: u64,
        /// Bytes actually present after the header.
        actual: u64,
    },
    /// The array does not have the shape or dtype the caller needs.
    WrongArray(String),
}

impl fmt::Display for NpyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => f.write_str("not a .npy file (bad magic)"),
            Self::Truncated => f.write_str("truncated .npy header"),
            Self::UnsupportedVersion { major, minor } => {
                write!(f, "unsupported .npy format version {major}.{minor}")
            }
            Self::UnsupportedDtype(d) => {
                write!(f, "unsupported dtype {d:?} (only '<f4' and '<f8' are read)")
            }
            Self::FortranOrder => f.write_str("Fortran-ordered arrays are not supported"),
            Self::MalformedHeader(why) => write!(f, "malformed .npy header: {why}"),
            Self::SizeMismatch { expected, actual } => write!(
                f,
                "data section holds {actual} bytes but the shape and dtype call for {expected}"
            ),
            Self::WrongArray(why) => f.write_str(why),
        }
    }
}

/// This crate's result type.
pub type Result<T, E = ShmError> = std::result::Result<T, E>;

impl ShmError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn npy(path: impl Into<PathBuf>, problem: NpyProblem) -> Self {
        Self::Npy {
            path: path.into(),
            problem,
        }
    }
}
