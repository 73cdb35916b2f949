//! [`MemoryPool`] (thread-safe) and [`LocalPool`] (one thread, no lock), the blocks they
//! hand out, and their [`PoolConfig`].

use std::cell::RefCell;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::arena::{self, Allocation, Arena, Limits, PoolState};
use crate::backend::Backend;
use crate::error::PoolError;
use crate::profiler::Profiler;
use crate::stats::PoolStats;

/// How a pool behaves. `PoolConfig::default()` reserves address space once, commits it
/// as blocks first touch it, and holds the bytes the system charges under 1.1 times the
/// peak of requested bytes by decommitting free pages (see the crate docs).
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The most bytes the pool may hold from the system (its `reserved` figure); `None`
    /// for no limit. An allocation over it first gives cached memory back, then fails
    /// with [`PoolError::OutOfMemory`](crate::PoolError).
    pub limit: Option<u64>,
    /// Cached free bytes above this go back to the system at the next free (free pages
    /// decommitted, entirely free whole segments returned); `None` keeps them until
    /// [`MemoryPool::empty_cache`] or memory pressure (the cap, the limit).
    pub release_threshold: Option<u64>,
    /// The overhead cap: the bytes the system charges the pool for never exceed
    /// `(1 + max_overhead)` times the peak of requested bytes (this request included)
    /// while cached free memory could be given back: before a block is handed out on
    /// pages not charged yet, free pages are decommitted to make room, those free the
    /// longest first. Default 10 %. `None` keeps every page until
    /// [`MemoryPool::empty_cache`], as torch does. For whole segments the cap chooses
    /// segment sizes instead (see the crate docs).
    pub max_overhead: Option<f64>,
    /// Deferred coalescing: up to 16 freed blocks per class (pinned blocks apart) wait
    /// unmerged, and a request of one's
    /// exact size takes it back without touching the best-fit index. It is faster on
    /// exactly repeated sizes but scatters blocks that best fit would pack, which costs
    /// decommits under the overhead cap; `false` (the default) merges on every free, as
    /// torch does.
    pub defer_merge: bool,
    /// Address space each reservation holds, where the backend reserves (the mmap
    /// backend does): blocks of every size grow into one reservation (one more for
    /// page-locked blocks), and another is made only when it is full. `None` (the
    /// default) reserves the limit when there is one, else twice the machine's physical
    /// memory (at least 1 GiB, at most 1 TiB); where the system refuses that much (a
    /// small `RLIMIT_AS`) the pool asks for less, and for whole segments if even the
    /// request's size is refused.
    pub reservation: Option<usize>,
    /// Whole segments only: segment size of the small class (requests up to 1 MiB);
    /// default 2 MiB.
    pub small_segment: usize,
    /// Whole segments only: segment size of the large class for requests under 10 MiB;
    /// default 20 MiB.
    pub large_segment: usize,
    /// Where memory comes from; by default [`MmapBackend`](crate::MmapBackend) on Unix
    /// (reservations: address space mapped once, pages committed with `mprotect` and
    /// given back with `madvise`) and [`SystemBackend`](crate::SystemBackend) elsewhere
    /// (whole zeroed segments from the heap).
    pub backend: Arc<dyn Backend>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            limit: None,
            release_threshold: None,
            max_overhead: Some(0.10),
            defer_merge: false,
            reservation: None,
            small_segment: arena::SMALL_SEGMENT,
            large_segment: arena::LARGE_SEGMENT,
            backend: default_backend(),
        }
    }
}

impl PoolConfig {
    /// torch's CUDACachingAllocator policy: no overhead cap (nothing given back until
    /// [`MemoryPool::empty_cache`]), no limit, no threshold, merging on every free.
    pub fn torch() -> Self {
        Self {
            max_overhead: None,
            defer_merge: false,
            ..Self::default()
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            limit: self.limit,
            release_threshold: self.release_threshold,
            // A cap that is not a finite, non-negative fraction is no cap.
            max_overhead: self.max_overhead.filter(|o| o.is_finite() && *o >= 0.0),
            defer_merge: self.defer_merge,
            // Whole pages, so every block stays a multiple of the 512-byte unit.
            small_segment: whole_pages(self.small_segment),
            large_segment: whole_pages(self.large_segment),
            reservation: self.reservation.map(whole_pages),
        }
    }
}

/// The default [`Backend`]: anonymous `mmap` on Unix, the system allocator elsewhere.
fn default_backend() -> Arc<dyn Backend> {
    #[cfg(unix)]
    {
        Arc::new(crate::backend::MmapBackend)
    }
    #[cfg(not(unix))]
    {
        Arc::new(crate::backend::SystemBackend)
    }
}

/// `bytes` rounded up to whole 4 KiB pages (at least one), saturating.
fn whole_pages(bytes: usize) -> usize {
    bytes
        .max(1)
        .checked_next_multiple_of(4096)
        .unwrap_or(usize::MAX - 4095)
}

/// The methods both pools share, spelled once.
macro_rules! pool_common {
    ($lock:ident) => {
        /// Gives every cached free byte back to the system (torch's `empty_cache`): free
        /// pages of the reservations decommitted, entirely free whole segments returned;
        /// the bytes given back.
        pub fn empty_cache(&self) -> u64 {
            self.$lock().empty_cache()
        }

        /// The same as [`empty_cache`](Self::empty_cache).
        pub fn release_unused(&self) -> u64 {
            self.empty_cache()
        }

        /// The statistics now: current figures with their peaks, and cumulative counts.
        pub fn stats(&self) -> PoolStats {
            self.$lock().stats()
        }

        /// Sets every peak to its current value.
        pub fn reset_peak(&self) {
            self.$lock().reset_peak();
        }

        /// Changes the byte limit; a lower limit does not release anything by itself.
        pub fn set_limit(&self, limit: Option<u64>) {
            self.$lock().limits.limit = limit;
        }

        /// Changes the automatic release threshold (checked at the next free).
        pub fn set_release_threshold(&self, threshold: Option<u64>) {
            self.$lock().limits.release_threshold = threshold;
        }

        /// Attaches a profiler (or detaches it with `None`). Events are built only while
        /// it [records](Profiler::is_recording).
        pub fn set_profiler(&self, profiler: Option<Arc<Profiler>>) {
            self.$lock().profiler = profiler;
        }

        /// The name of the backend segments come from.
        pub fn backend_name(&self) -> &'static str {
            self.$lock().backend().name()
        }

        /// The state now: every segment with its blocks, in address order, and the
        /// statistics at the same moment. The live blocks with their labels are a leak
        /// report, the large ones a large-allocation report.
        pub fn inspect(&self) -> PoolState {
            self.$lock().inspect()
        }

        /// Checks the allocator's invariants: blocks tile their segments, no two free
        /// neighbours, every free block indexed, statistics equal to a recount.
        #[doc(hidden)]
        pub fn check_invariants(&self) -> Result<(), String> {
            self.$lock().check_invariants()
        }
    };
}

/// The state a [`MemoryPool`] and its [`Block`]s share.
struct Shared {
    arena: Mutex<Arena>,
    host: bool,
}

/// A thread-safe caching memory pool. Cloning gives another handle to the same pool.
///
/// ```
/// use memwarden_pool::MemoryPool;
///
/// let pool = MemoryPool::new();
/// let mut block = pool.allocate(1000, 64)?;
/// block.as_mut_slice().fill(7);
/// assert_eq!(block.as_ptr() as usize % 64, 0);
/// drop(block); // back to the pool's cache
/// assert_eq!(pool.stats().allocated.current, 0);
/// assert_eq!(pool.allocate(900, 16)?.len(), 900); // served from the cache
/// assert_eq!(pool.stats().reuses, 1);
/// # Ok::<(), memwarden_pool::PoolError>(())
/// ```
#[derive(Clone)]
pub struct MemoryPool {
    shared: Arc<Shared>,
}

impl fmt::Debug for MemoryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryPool {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryPool {
    /// A pool with [`PoolConfig::default`].
    pub fn new() -> Self {
        Self::with_config(PoolConfig::default())
    }

    /// A pool with the given configuration.
    pub fn with_config(config: PoolConfig) -> Self {
        let host = config.backend.host_accessible();
        Self {
            shared: Arc::new(Shared {
                arena: Mutex::new(Arena::new(config.limits(), config.backend)),
                host,
            }),
        }
    }

    fn arena(&self) -> parking_lot::MutexGuard<'_, Arena> {
        self.shared.arena.lock()
    }

    /// A block of `size` bytes aligned to `align` (a power of two).
    ///
    /// # Errors
    ///
    /// [`PoolError::OutOfMemory`] past the limit, [`PoolError::InvalidAlignment`],
    /// [`PoolError::TooLarge`].
    pub fn allocate(&self, size: usize, align: usize) -> Result<Block, PoolError> {
        self.allocate_with(size, align, false, None)
    }

    /// As [`allocate`](Self::allocate), with a label the profiler and
    /// [`inspect`](Self::inspect) show.
    ///
    /// # Errors
    ///
    /// As [`allocate`](Self::allocate).
    pub fn allocate_labeled(
        &self,
        size: usize,
        align: usize,
        label: &str,
    ) -> Result<Block, PoolError> {
        self.allocate_with(size, align, false, Some(Arc::from(label)))
    }

    /// A page-locked block: it comes from a reservation of its own whose pages are
    /// `mlock`ed as they are charged (or from whole segments locked as a whole), so it
    /// is never swapped out.
    ///
    /// # Errors
    ///
    /// [`PoolError::PinFailed`] when the system refuses to lock the pages or segment the
    /// block needs (on Linux usually `RLIMIT_MEMLOCK`, 8 MiB by default for users), and
    /// those of [`allocate`](Self::allocate).
    pub fn allocate_pinned(&self, size: usize, align: usize) -> Result<Block, PoolError> {
        self.allocate_with(size, align, true, None)
    }

    fn allocate_with(
        &self,
        size: usize,
        align: usize,
        pinned: bool,
        label: Option<Arc<str>>,
    ) -> Result<Block, PoolError> {
        let Allocation { ptr, node } = self.arena().allocate(size, align, pinned, label)?;
        Ok(Block {
            ptr,
            len: size,
            node,
            pool: Arc::clone(&self.shared),
        })
    }

    pool_common!(arena);
}

/// A block from a [`MemoryPool`]; it goes back to the pool's cache when dropped. It
/// keeps the pool alive.
pub struct Block {
    ptr: NonNull<u8>,
    len: usize,
    node: u32,
    pool: Arc<Shared>,
}

// SAFETY: a block is the unique owner of its byte range (the pool never hands out
// overlapping live ranges), like a `Box<[u8]>`; returning it locks the pool's mutex.
unsafe impl Send for Block {}
// SAFETY: shared access only reads through `&self` (`as_slice`), as for `&[u8]`.
unsafe impl Sync for Block {}

impl Drop for Block {
    fn drop(&mut self) {
        self.pool.arena.lock().free(self.node);
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

/// A block from a [`LocalPool`]; it goes back to the pool's cache when dropped.
pub struct LocalBlock<'pool> {
    ptr: NonNull<u8>,
    len: usize,
    node: u32,
    pool: &'pool LocalPool,
}

impl Drop for LocalBlock<'_> {
    fn drop(&mut self) {
        self.pool.arena.borrow_mut().free(self.node);
    }
}

impl fmt::Debug for LocalBlock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalBlock")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

/// The accessors both block types share.
macro_rules! block_common {
    ($host:expr) => {
        /// The first byte.
        pub fn as_ptr(&self) -> *const u8 {
            self.ptr.as_ptr()
        }

        /// The first byte, for writing.
        pub fn as_mut_ptr(&mut self) -> *mut u8 {
            self.ptr.as_ptr()
        }

        /// Bytes asked for (the block may be larger).
        pub fn len(&self) -> usize {
            self.len
        }

        /// Whether zero bytes were asked for.
        pub fn is_empty(&self) -> bool {
            self.len == 0
        }

        /// The bytes. A fresh segment is zeroed; a reused block holds what its last
        /// user left.
        ///
        /// # Panics
        ///
        /// When the backend's memory is not host-accessible.
        pub fn as_slice(&self) -> &[u8] {
            assert!(
                $host(self),
                "the pool's backend memory is not host-accessible"
            );
            // SAFETY: the block owns `len` initialised bytes (backends hand out zeroed or
            // previously written memory) at `ptr`, readable from the host (checked).
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
        }

        /// The bytes, for writing.
        ///
        /// # Panics
        ///
        /// When the backend's memory is not host-accessible.
        pub fn as_mut_slice(&mut self) -> &mut [u8] {
            assert!(
                $host(self),
                "the pool's backend memory is not host-accessible"
            );
            // SAFETY: as in `as_slice`; `&mut self` makes the access unique, and no other
            // live block overlaps this one.
            unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
        }
    };
}

impl Block {
    block_common!(|b: &Self| b.pool.host);
}

impl LocalBlock<'_> {
    block_common!(|b: &Self| b.pool.host);
}

/// A pool for one thread: the same allocator as [`MemoryPool`] behind a `RefCell`
/// instead of a mutex. It is `Send` but not `Sync`; its blocks borrow it.
///
/// ```
/// use memwarden_pool::{LocalPool, PoolConfig};
///
/// let pool = LocalPool::with_config(PoolConfig::torch());
/// let a = pool.allocate(4096, 4096)?;
/// let b = pool.allocate(4096, 4096)?;
/// assert_ne!(a.as_ptr(), b.as_ptr());
/// drop((a, b));
/// assert!(pool.empty_cache() > 0);
/// # Ok::<(), memwarden_pool::PoolError>(())
/// ```
pub struct LocalPool {
    arena: RefCell<Arena>,
    host: bool,
}

impl fmt::Debug for LocalPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for LocalPool {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalPool {
    /// A pool with [`PoolConfig::default`].
    pub fn new() -> Self {
        Self::with_config(PoolConfig::default())
    }

    /// A pool with the given configuration.
    pub fn with_config(config: PoolConfig) -> Self {
        let host = config.backend.host_accessible();
        Self {
            arena: RefCell::new(Arena::new(config.limits(), config.backend)),
            host,
        }
    }

    fn arena(&self) -> std::cell::RefMut<'_, Arena> {
        self.arena.borrow_mut()
    }

    /// As [`MemoryPool::allocate`].
    ///
    /// # Errors
    ///
    /// As [`MemoryPool::allocate`].
    pub fn allocate(&self, size: usize, align: usize) -> Result<LocalBlock<'_>, PoolError> {
        self.allocate_with(size, align, false, None)
    }

    /// As [`MemoryPool::allocate_labeled`].
    ///
    /// # Errors
    ///
    /// As [`MemoryPool::allocate`].
    pub fn allocate_labeled(
        &self,
        size: usize,
        align: usize,
        label: &str,
    ) -> Result<LocalBlock<'_>, PoolError> {
        self.allocate_with(size, align, false, Some(Arc::from(label)))
    }

    /// As [`MemoryPool::allocate_pinned`].
    ///
    /// # Errors
    ///
    /// As [`MemoryPool::allocate_pinned`].
    pub fn allocate_pinned(&self, size: usize, align: usize) -> Result<LocalBlock<'_>, PoolError> {
        self.allocate_with(size, align, true, None)
    }

    fn allocate_with(
        &self,
        size: usize,
        align: usize,
        pinned: bool,
        label: Option<Arc<str>>,
    ) -> Result<LocalBlock<'_>, PoolError> {
        let Allocation { ptr, node } = self.arena().allocate(size, align, pinned, label)?;
        Ok(LocalBlock {
            ptr,
            len: size,
            node,
            pool: self,
        })
    }

    pool_common!(arena);
}
