//! [`SchedError`]: every way a scheduler configuration or a matrix call can be refused.

use std::time::Duration;

/// Why a [`ParallelScheduler`](crate::ParallelScheduler) could not be built, or why
/// [`batched_matmul`](crate::batched_matmul) refused its operands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchedError {
    /// `jobs(0)`: a scheduler needs at least one thread (the caller's, when it is one).
    #[error("jobs must be at least 1, got 0")]
    ZeroJobs,
    /// More threads than [`MAX_JOBS`](crate::MAX_JOBS): a typo or an overflow, not a
    /// machine.
    #[error("jobs must be at most {max}, got {jobs}")]
    TooManyJobs {
        /// The thread count asked for.
        jobs: usize,
        /// The most a scheduler takes.
        max: usize,
    },
    /// `chunk_size(0)`: a chunk holds at least one item.
    #[error("chunk size must be at least 1 item, got 0")]
    ZeroChunkSize,
    /// `chunk_time` was zero: calibration could not size a chunk from it.
    #[error("target chunk time must be positive, got {chunk_time:?}")]
    ZeroChunkTime {
        /// The target time per chunk that was asked for.
        chunk_time: Duration,
    },
    /// The memory budget does not cover a single worker's bytes.
    #[error(
        "memory budget of {budget} bytes is smaller than one worker's \
         {per_worker_bytes} bytes: not even one thread fits"
    )]
    BudgetTooSmall {
        /// The budget asked for, in bytes.
        budget: u64,
        /// The bytes one worker is accounted at.
        per_worker_bytes: u64,
    },
    /// A memory budget was set but `per_worker_bytes` is 0, so it could bound nothing.
    #[error(
        "memory budget of {budget} bytes set, but per_worker_bytes is 0: set what one worker uses"
    )]
    BudgetWithoutWorkerBytes {
        /// The budget asked for, in bytes.
        budget: u64,
    },
    /// A matrix operand's length does not match the shape.
    #[error("matmul operand `{operand}` has {actual} elements, expected {expected} for {shape}")]
    ShapeMismatch {
        /// Which operand: `a`, `b` or `out`.
        operand: &'static str,
        /// Elements the shape calls for (for `b`, per batch item or shared).
        expected: usize,
        /// Elements the slice holds.
        actual: usize,
        /// The shape, as `batch x m x k x n`.
        shape: String,
    },
    /// `batch × m × k` (or another product of the shape) does not fit in `usize`.
    #[error("matmul shape {shape} overflows usize")]
    ShapeOverflow {
        /// The shape, as `batch x m x k x n`.
        shape: String,
    },
}
