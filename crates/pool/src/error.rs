//! [`PoolError`]: every way an allocation from the pool can fail.

use std::io;

/// Why the pool could not hand out a block.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The allocation would take the pool's reserved bytes over its limit, even after
    /// the cached free memory that could make room was given back to the system (or the
    /// system itself had no memory left).
    #[error(
        "out of memory: {requested} bytes requested, pool limit {limit} bytes, \
         {reserved} bytes reserved of which {allocated} allocated"
    )]
    OutOfMemory {
        /// Bytes the caller asked for.
        requested: u64,
        /// The pool's byte limit (`u64::MAX` when the pool has none and the backend
        /// itself failed).
        limit: u64,
        /// Bytes the pool held from the system when it gave up.
        reserved: u64,
        /// Bytes of those in live blocks.
        allocated: u64,
    },
    /// The alignment is not a power of two.
    #[error("alignment {align} is not a power of two")]
    InvalidAlignment {
        /// The alignment asked for.
        align: usize,
    },
    /// The size, rounded and padded for its alignment, does not fit in the address space.
    #[error("{requested} bytes with alignment {align} is too large to allocate")]
    TooLarge {
        /// Bytes the caller asked for.
        requested: u64,
        /// The alignment asked for.
        align: usize,
    },
    /// Page-locked memory (a run of a reservation's pages, or a whole segment) could not
    /// be locked: the operating system refused `mlock` (on Linux usually because
    /// `RLIMIT_MEMLOCK` is smaller than the locked total).
    #[error(
        "cannot page-lock {bytes} bytes (RLIMIT_MEMLOCK {}): {source}",
        memlock_limit.map_or_else(|| "unknown".to_owned(), |l| format!("{l} bytes"))
    )]
    PinFailed {
        /// Size of the range that could not be locked.
        bytes: u64,
        /// The process's `RLIMIT_MEMLOCK` soft limit, where it can be read
        /// (`None` when unlimited or unknown).
        memlock_limit: Option<u64>,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}
