//! [`ParseError`]: `memwarden-core`'s parse failures, each quoting its input.
//!
//! Core is vocabulary, not a subsystem, so it names its errors for what failed rather
//! than `CoreError`: [`ParseError`] here, [`AtomicWriteError`](crate::fs::AtomicWriteError)
//! for the file helper.

/// A value could not be parsed (a byte size, a priority, a kind, an id); every variant
/// quotes the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A byte size string was malformed, negative, or too large for 64 bits.
    #[error("invalid byte size {input:?}: {reason}")]
    ByteSize {
        /// The string as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A priority was outside `1..=10`.
    #[error("priority {value} is out of range (expected {min}..={max})")]
    PriorityOutOfRange {
        /// The value given.
        value: i64,
        /// The smallest allowed priority.
        min: u8,
        /// The largest allowed priority.
        max: u8,
    },
    /// A resource kind name was empty or held characters other than `[A-Za-z0-9_.-]`.
    #[error(
        "invalid resource kind {input:?}: expected a name made of letters, digits, '_', '-' or '.'"
    )]
    Kind {
        /// The string as given.
        input: String,
    },
    /// A resource id was empty.
    #[error("a resource id must not be empty")]
    EmptyId,
}
