//! memwarden-pool: a caching memory pool, its statistics and a memory profiler.
//!
//! A process that allocates and frees the same large buffers over and over (tensors of
//! an inference, frames of an editor) pays the system allocator each time: page faults
//! on fresh mappings, `munmap`, heap trimming. A caching pool keeps freed memory and
//! hands it out again, and it can say exactly how much it holds and why.
//!
//! - [`MemoryPool`] is the thread-safe pool (a cheap-to-clone handle); it hands out
//!   RAII [`Block`]s ([`allocate`](MemoryPool::allocate), alignment any power of two)
//!   that return to the cache when dropped. [`LocalPool`] is the same allocator for one
//!   thread, without the mutex, with [`LocalBlock`]s that borrow it.
//! - [`PoolConfig`] sets a byte limit (an allocation over it first returns cached
//!   segments, then fails with [`PoolError::OutOfMemory`]), an automatic release
//!   threshold for cached bytes, the overhead cap, segment sizes, and the [`Backend`]
//!   segments come from ([`MmapBackend`], the default on Unix: anonymous `mmap`, zeroed
//!   for free until touched and unmapped on release; [`SystemBackend`]: zeroed
//!   `std::alloc`; a device backend can plug in without touching the allocator). Every
//!   backend hands out initialised memory, because safe code reads blocks as slices.
//! - [`PoolStats`] are the figures `torch.cuda.memory_stats` users know: allocated,
//!   reserved, active, inactive and requested bytes with their peaks, allocation and
//!   segment counts, reuses and the cache hit rate, fragmentation, the largest free
//!   block, retries and OOMs. [`MemoryPool::inspect`] lists every segment and block
//!   (with labels from [`allocate_labeled`](MemoryPool::allocate_labeled)) as a
//!   [`PoolState`].
//! - [`profiler::Profiler`] records a timeline of pool events once attached with
//!   [`MemoryPool::set_profiler`]; [`tracking`] counts the process's own allocations.
//!
//! ```
//! use memwarden_pool::{MemoryPool, PoolConfig, PoolError};
//!
//! let pool = MemoryPool::with_config(PoolConfig {
//!     limit: Some(64 << 20),
//!     ..PoolConfig::default()
//! });
//! let mut activations = pool.allocate_labeled(3 << 20, 64, "activations")?;
//! activations.as_mut_slice()[0] = 1;
//! drop(activations);
//! let again = pool.allocate(3 << 20, 64)?; // the cached block, no system call
//! assert_eq!(pool.stats().reuses, 1);
//! assert!(matches!(pool.allocate(100 << 20, 64), Err(PoolError::OutOfMemory { .. })));
//! drop(again);
//! pool.empty_cache();
//! assert_eq!(pool.stats().reserved.current, 0);
//! # Ok::<(), PoolError>(())
//! ```
//!
//! # Design: torch's caching allocator, and where this pool differs
//!
//! The model is PyTorch's `CUDACachingAllocator`. Taken as is:
//!
//! - **Rounding**: requests round up to a multiple of 512 bytes (512 at least), so every
//!   block starts at a 512-byte boundary of its segment and alignments up to 512 cost
//!   nothing; larger alignments take the first fitting block whose padding fits, the
//!   padding staying a free block.
//! - **Two classes**: requests up to 1 MiB come from 2 MiB segments, larger ones from
//!   20 MiB segments, or from a segment of their own rounded up to 2 MiB from 10 MiB on.
//! - **Best fit** over the free blocks of a class ordered by `(size, address)` (one
//!   `BTreeSet` range query), **splitting** the block found when the remainder is at
//!   least 512 bytes (small class) or more than 1 MiB (large class), and **merging** a
//!   freed block with its free neighbours of the same segment.
//! - **Release on pressure**: an allocation over the limit (or one the backend refuses)
//!   returns entirely free segments and retries before it fails; `empty_cache` returns
//!   them all.
//!
//! Different, and why:
//!
//! - **The overhead cap** ([`PoolConfig::max_overhead`], default 10 %). torch's fixed
//!   20 MiB segments hold 3–5x the bytes a small model needs (3.7x on the serving trace
//!   of the benchmark). Here a new segment may not take the reserved bytes over 1.1x the
//!   peak of requested bytes: the pool then asks for exactly the request (rounded to a
//!   page) and first returns entirely free segments, and before growing at all it uses
//!   a free block of the other size class. [`PoolConfig::torch`] turns this off.
//! - **Under the cap, a large block is a segment of its own**. Each large request gets a
//!   segment of exactly its page-rounded size, never split, and a cached one is reused
//!   only by a request it fits snugly: at most 10 % larger, or larger by what is left
//!   of the overhead budget (10 % of the peak of requested bytes, less the bytes live
//!   blocks already waste). torch's way, splitting a big free segment for a smaller
//!   tensor, strands the tail as soon as another block needs a new segment: on the
//!   serving trace two 36.75 MiB segments each held a 24.5 MiB tensor while a third
//!   needed a segment of its own, 4/3 of the peak. With snug segments every large byte
//!   reserved is either a live block within the budget or an entirely free segment
//!   that the cap can return. The price is segment churn when the sizes change (on the
//!   serving trace about one large allocation in twenty takes a new segment).
//! - **Deferred coalescing** ([`PoolConfig::defer_merge`], default on). A freed block
//!   first waits ("parked") in a bin of its exact request size, and the next request of
//!   that size takes it back without touching the best-fit index: the repeated shapes
//!   of an inference loop become O(1). A request its bin cannot serve takes the best fit
//!   among the free blocks and the parked ones (bins sorted by size; the parked block
//!   chosen is merged with its neighbours first), so one miss does not merge every
//!   parked block. All of them are merged only before the pool would grow, release or
//!   fail, so no allocation fails or grows because of them.
//! - **No streams or events**: host memory has no asynchronous users, so a freed block
//!   is reusable at once and `active` equals `allocated`.
//!
//! The pool is thread-safe through one `parking_lot` mutex around the allocator
//! (uncontended it costs about as much as the `LocalPool` difference the benchmark
//! prints); it does not keep per-thread caches.
//!
//! Page-locked ("pinned") blocks ([`MemoryPool::allocate_pinned`]) come from separate
//! segments that the backend `mlock`s whole; where the system refuses (on Linux usually
//! `RLIMIT_MEMLOCK`, 8 MiB by default for users) the allocation fails with
//! [`PoolError::PinFailed`] carrying the limit and the OS error.

#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod arena;
mod backend;
mod error;
mod pages;
mod pool;
pub mod profiler;
mod stats;
pub mod tracking;

pub use arena::{BlockInfo, PoolState, SegmentInfo};
#[cfg(unix)]
pub use backend::MmapBackend;
pub use backend::{Backend, SystemBackend};
pub use error::PoolError;
pub use pool::{Block, LocalBlock, LocalPool, MemoryPool, PoolConfig};
pub use stats::{PoolStats, Stat};
