//! [`PoolStats`]: the statistics users know from `torch.cuda.memory_stats`.

use serde::Serialize;

/// A quantity with its current value and its peak since creation or the last
/// [`reset_peak`](crate::MemoryPool::reset_peak).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stat {
    /// The value now.
    pub current: u64,
    /// The highest value seen.
    pub peak: u64,
}

impl Stat {
    pub(crate) fn add(&mut self, n: u64) {
        self.current += n;
        self.peak = self.peak.max(self.current);
    }

    pub(crate) fn sub(&mut self, n: u64) {
        self.current -= n;
    }

    pub(crate) fn reset_peak(&mut self) {
        self.peak = self.current;
    }
}

/// A pool's statistics, from [`stats`](crate::MemoryPool::stats): current figures with
/// their peaks, and cumulative counts. Byte figures count the pool's own rounded sizes
/// except [`requested`](PoolStats::requested), which counts what callers asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PoolStats {
    /// Bytes in live blocks (rounded sizes, including a remainder too small to split).
    pub allocated: Stat,
    /// Bytes the system charges the pool for: the charged pages of its reservations
    /// (pages a block handed out has covered since they were last decommitted, the most
    /// the pool can add to the resident set) plus its whole segments.
    pub reserved: Stat,
    /// Bytes in blocks in use. torch counts here also blocks freed but still waiting on
    /// a stream; this pool has no streams, so `active` equals `allocated`.
    pub active: Stat,
    /// Bytes free but cached: `reserved - allocated`.
    pub inactive: Stat,
    /// Bytes callers asked for in live blocks, before rounding.
    pub requested: Stat,
    /// Live blocks.
    pub active_blocks: Stat,
    /// Segments held from the backend.
    pub segments: Stat,
    /// Page-locked bytes held from the backend (part of `reserved`).
    pub pinned_reserved: Stat,
    /// Blocks handed out.
    pub allocs: u64,
    /// Blocks returned.
    pub frees: u64,
    /// Segments taken from the backend.
    pub segment_allocs: u64,
    /// Segments returned to the backend.
    pub segment_frees: u64,
    /// Calls that mapped memory or address space (a segment or a reservation).
    pub maps: u64,
    /// Calls that unmapped a segment or a reservation.
    pub unmaps: u64,
    /// Calls that committed pages of a reservation (`mprotect` for the mmap backend).
    pub commits: u64,
    /// Calls that decommitted free pages of a reservation (`madvise(MADV_DONTNEED)`).
    pub decommits: u64,
    /// Allocations served from cached free memory, without a new segment.
    pub reuses: u64,
    /// `reuses / allocs` (0 before the first allocation).
    pub cache_hit_rate: f64,
    /// `1 - allocated / reserved` (0 when nothing is reserved): the share of reserved
    /// bytes not handed out, entirely free cached segments included, so it measures
    /// cache overhead as much as fragmentation.
    pub fragmentation: f64,
    /// The largest free block in the cache, bytes. Parked blocks (freed, not yet merged
    /// with their neighbours) count as they are, so the contiguous free space after a
    /// merge may be larger.
    pub largest_free_block: u64,
    /// Allocations that had to give cached memory back to the system and try again
    /// (limit reached or backend exhausted).
    pub alloc_retries: u64,
    /// Allocations that failed with [`PoolError::OutOfMemory`](crate::PoolError).
    pub ooms: u64,
}

impl PoolStats {
    pub(crate) fn reset_peak(&mut self) {
        for stat in [
            &mut self.allocated,
            &mut self.reserved,
            &mut self.active,
            &mut self.inactive,
            &mut self.requested,
            &mut self.active_blocks,
            &mut self.segments,
            &mut self.pinned_reserved,
        ] {
            stat.reset_peak();
        }
    }
}
