//! memwarden-pool: a caching memory pool, its statistics and a memory profiler.

pub mod profiler;
