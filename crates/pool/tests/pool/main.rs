//! Integration tests of the memory pool: random alloc/free sequences against a shadow
//! model (proptest), limits and the release threshold, page-locked blocks, the profiler
//! hook and threads.
//!
//! The property tests also run under valgrind memcheck in CI; their case count is
//! `PROPTEST_CASES` (default 64).

mod behaviour;
mod properties;
#[cfg(unix)]
mod reservation;

use memwarden_pool::PoolConfig;

/// Proptest cases: `PROPTEST_CASES` or 64.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// A configuration with small segments, so that tests exercise many segments cheaply.
fn small_segments() -> PoolConfig {
    PoolConfig {
        small_segment: 64 << 10,
        large_segment: 4 << 20,
        ..PoolConfig::default()
    }
}
