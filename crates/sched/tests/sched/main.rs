//! Integration tests of memwarden-sched: one binary, one module per concern.

mod cache;
mod chunks;
mod limits;
mod matmul;
mod order;
mod panics;
mod stress;

use memwarden_sched::ParallelScheduler;

/// A scheduler of `jobs` threads, with a fixed chunk size or calibrated chunks.
fn sched(jobs: usize, chunk: Option<usize>, dynamic: bool) -> ParallelScheduler {
    let builder = ParallelScheduler::builder()
        .jobs(jobs)
        .dynamic_balance(dynamic);
    match chunk {
        Some(c) => builder.chunk_size(c),
        None => builder,
    }
    .build()
    .expect("valid test configuration")
}
