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
//! - [`PoolConfig`] sets a byte limit (an allocation over it first gives cached memory
//!   back, then fails with [`PoolError::OutOfMemory`]), an automatic release threshold
//!   for cached bytes, the overhead cap, and the [`Backend`] memory comes from
//!   ([`MmapBackend`], the default on Unix: address space reserved once, pages
//!   committed and decommitted inside it; [`SystemBackend`]: whole zeroed segments from
//!   `std::alloc`; a device backend can plug in without touching the allocator). Every
//!   backend hands out initialised memory, because safe code reads blocks as slices.
//! - [`PoolStats`] are the figures `torch.cuda.memory_stats` users know: allocated,
//!   reserved, active, inactive and requested bytes with their peaks, allocation and
//!   segment counts, reuses and the cache hit rate, fragmentation, the largest free
//!   block, retries and OOMs, and the system calls behind them (`maps`, `unmaps`,
//!   `commits`, `decommits`). [`MemoryPool::inspect`] lists every segment and block
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
//! # Design: one reservation, pages committed and decommitted in it
//!
//! The model is PyTorch's `CUDACachingAllocator` with its expandable segments. Taken
//! as is:
//!
//! - **Rounding**: requests round up to a multiple of 512 bytes (512 at least), so every
//!   block starts at a 512-byte boundary and alignments up to 512 cost nothing; larger
//!   alignments take the first fitting block whose padding fits, the padding staying a
//!   free block.
//! - **Best fit** over the free blocks ordered by `(size, address)`, **splitting** the
//!   block found, and **merging** a freed block with its free neighbours at once. The
//!   index is size classes (eight per doubling) of sorted vectors with a bitmap of the
//!   occupied ones: the same order as one sorted set, 1.4–2x the allocator's throughput
//!   of a `BTreeMap` where the index dominates.
//! - **Expandable segments**: the pool reserves a large range of address space once
//!   ([`PoolConfig::reservation`]; by default twice the machine's memory, or the limit),
//!   with `mmap(PROT_NONE, MAP_NORESERVE)`, which costs no memory. Blocks tile a prefix
//!   of it that grows on demand: a request no free block fits extends the last block
//!   (if free) or appends one, so every free block has real neighbours to merge with
//!   and no request ever needs a mapping of its own. Page-locked blocks have a
//!   reservation of their own.
//!
//! Memory is charged page by page: a page is *charged* from the moment a block handed
//! out covers it until the pool decommits it, and [`PoolStats::reserved`] counts
//! charged pages, the most the pool can add to the process's resident set. Pages are
//! committed (`mprotect` to read-write, address space only, in steps of up to 1 MiB
//! ahead) by the time a block first covers them, and given
//! back with `madvise(MADV_DONTNEED)`, which keeps the address space and the page
//! tables' protection: the next touch maps a fresh zeroed page, with no call to make.
//! `MADV_FREE` would be cheaper to take back, but the kernel frees such pages only
//! under pressure, so the process's RSS (what a budget watches) would not fall; a pool
//! that holds a memory budget needs the RSS to fall when it says it gave memory back.
//! A page is given back:
//!
//! - **under the overhead cap** ([`PoolConfig::max_overhead`], default 10 %): before a
//!   block is handed out on uncharged pages, if the charged bytes would pass
//!   `1.1 ×` the peak of requested bytes, free pages are decommitted to make room,
//!   just enough pages from the end of the free blocks free the longest (best fit
//!   carves from the start of a free block, so its end is taken last);
//! - **under the limit** and **over the release threshold**, the same way;
//! - by [`MemoryPool::empty_cache`]: every free page, so that the resident bytes fall
//!   to the bytes still allocated (checked with `mincore` by the tests and by the
//!   `alloc_replay` tool).
//!
//! After the first round of a repeated workload the pool makes no mapping and no
//! unmapping; where best fit lays a round's blocks over no more than `1.1 ×` the peak,
//! it makes no call at all. Where the layout needs more (on the shared ResNet-50 and
//! ViT-B/16 traces best fit spreads a round's blocks over 1.25 × the peak), the cap
//! costs a few decommits per round and the page faults that follow; `max_overhead:
//! None` trades that memory for none.
//!
//! Different from torch, and why:
//!
//! - **The overhead cap** (above). torch keeps everything until `empty_cache`: with its
//!   fixed 20 MiB segments that held 3–5x the bytes a small model needs (3.7x on the
//!   serving trace), and on a reservation without the cap the same policy holds
//!   1.24–1.25x on the ResNet-50, ViT-B/16 and serving traces.
//! - **One reservation for every size.** torch keeps small (≤ 1 MiB) and large
//!   blocks in separate pools. Here each pool would have its own high-water mark, and
//!   the two together cover more pages than one: on the GoogLeNet trace 1.56 × the
//!   peak against 1.09 × in one reservation.
//! - **No deferred merging by default, no size-class front, no per-thread caches.**
//!   Each keeps freed blocks unmerged to hand them back in O(1), and each scattered
//!   blocks that best fit would have packed: with 16 blocks left unmerged the GoogLeNet
//!   trace's blocks spread over 1.4–1.5 × the peak, and a front of exact-size lists for
//!   blocks up to 64 KiB took the small-object mix from 613 to 45 511 decommits under
//!   the cap. [`PoolConfig::defer_merge`] still offers the first. Per-thread caches
//!   would also make the statistics, and the peak the cap is computed from, depend on
//!   when threads flush. The price is that small objects go through the best-fit index
//!   (5–9 M operations per second on the 2-core test machine, where mimalloc does
//!   25–40 M).
//! - **No streams or events**: host memory has no asynchronous users, so a freed block
//!   is reusable at once and `active` equals `allocated`.
//!
//! A backend that cannot reserve ([`SystemBackend`], or any [`Backend`] whose
//! [`can_reserve`](Backend::can_reserve) is false), or a system that refuses a
//! reservation even of the request's size, gets whole segments instead, as torch
//! allocates them: requests up to 1 MiB from 2 MiB segments, larger ones from 20 MiB
//! segments or a segment of their own from 10 MiB on. Under the cap the pool keeps a
//! new segment from taking the reserved bytes over `1.1 ×` the peak of requested bytes
//! where it can: it asks for exactly the request (rounded to a page) and first returns
//! entirely free segments, and a large block is a segment of its own, reused only by a
//! request it fits snugly. Entirely free segments go back to the backend under the cap, the
//! limit, the threshold and `empty_cache`.
//!
//! ## A device backend, on paper
//!
//! The [`Backend`] calls map onto a GPU's virtual memory API the way torch's expandable
//! segments use CUDA's: `reserve` is `cuMemAddressReserve` (a virtual range, no
//! memory); `commit` creates physical chunks (`cuMemCreate`, 2 MiB granularity),
//! maps them into the range (`cuMemMap`) and grants access (`cuMemSetAccess`);
//! `decommit` unmaps and releases them (`cuMemUnmap`, `cuMemRelease`) and
//! `decommit_keeps_access` says false, so the pool commits again before it reuses the
//! range; `release` frees the range (`cuMemAddressFree`); `host_accessible` is false,
//! so the pool makes no slices of the blocks. Not built: the pool's page is the
//! system's page size, and such a backend would need the pool to take the chunk
//! granularity from the backend instead.
//!
//! ## After `fork`
//!
//! The child gets a copy-on-write copy of every reservation and the pool's state as it
//! was: blocks handed out before the fork stay valid in both, and each process's pool
//! then lives its own life (a decommit in one drops only its own pages). Page locks
//! are not inherited (`mlock`), so pinned blocks are not locked in the child. Only the
//! forking thread exists in the child; a pool whose lock another thread held at the
//! fork stays locked there, as with any mutex, so a child should only `exec` or use
//! pools no other thread was using.
//!
//! The pool is thread-safe through one `parking_lot` mutex around the allocator
//! (uncontended it costs about as much as the `LocalPool` difference the benchmark
//! prints).
//!
//! Page-locked ("pinned") blocks ([`MemoryPool::allocate_pinned`]) come from a separate
//! reservation whose pages the backend `mlock`s as they are committed (and unlocks
//! before decommitting them); where the system refuses (on Linux usually
//! `RLIMIT_MEMLOCK`, 8 MiB by default for users) the allocation fails with
//! [`PoolError::PinFailed`] carrying the limit and the OS error.

#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod arena;
mod backend;
mod error;
mod fit;
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
