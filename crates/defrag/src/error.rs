//! [`DefragError`]: every way configuring the defragmenter or opening an RSS source can fail.

use std::io;
use std::path::PathBuf;

/// Why a [`Defragmenter`](crate::Defragmenter) or an [`RssReader`](crate::rss::RssReader)
/// could not be set up.
///
/// Trimming itself never fails as a whole: a backend that reports an error is recorded
/// in the run's [`TrimOutcome`](crate::TrimOutcome) and logged, and the run goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DefragError {
    /// The configuration cannot work.
    #[error("invalid defragmenter configuration: {what} must not be zero")]
    ZeroDuration {
        /// The setting that was zero (`"the poll interval"`, `"the timer interval"`).
        what: &'static str,
    },
    /// The monitor thread could not be started.
    #[error("cannot start the defragmenter's monitor thread: {source}")]
    Spawn {
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A file the RSS reader needs could not be opened.
    #[error("cannot open {path:?}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// This platform has no cheap RSS source that this crate knows how to read.
    #[error("reading {what} is not supported on this platform")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
    },
}
