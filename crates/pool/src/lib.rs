//! memwarden-pool: a caching memory pool, its statistics and a memory profiler.

#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod arena;
mod backend;
mod error;
mod pool;
pub mod profiler;
mod stats;
pub mod tracking;

pub use arena::{BlockInfo, SegmentInfo};
#[cfg(unix)]
pub use backend::MmapBackend;
pub use backend::{Backend, SystemBackend};
pub use error::PoolError;
pub use pool::{Block, LocalBlock, LocalPool, MemoryPool, PoolConfig};
pub use stats::{PoolStats, Stat};
