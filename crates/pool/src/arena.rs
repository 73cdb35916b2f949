//! The unsynchronised allocator core shared by [`MemoryPool`](crate::MemoryPool) and
//! [`LocalPool`](crate::LocalPool): segments, blocks, best fit, splitting, merging,
//! limits and statistics.
//!
//! Blocks live in a slab (`nodes`) and are linked to their neighbours inside their
//! segment, so a free finds and merges its neighbours in O(1). Free blocks are indexed
//! per class in a [`FreeIndex`] in `(size, address)` order: best fit is the first block
//! of a range walk.
//! Parked blocks (deferred coalescing, off by default) wait per class in a short list,
//! oldest first and at most [`MAX_PARKED`] long, scanned for an exact hit or a best fit.
//! A reservation's pages are charged or not in an [`Uncharged`] bitmap.

use std::ptr::NonNull;
use std::sync::Arc;

use serde::Serialize;

use crate::backend::{self, Backend};
use crate::error::PoolError;
use crate::fit::FreeIndex;
use crate::pages::Uncharged;
use crate::profiler::{Event, EventKind, Profiler};
use crate::stats::PoolStats;

/// Every block size is a multiple of this, and so is every block address within its
/// segment (torch's `kMinBlockSize`).
pub(crate) const MIN_BLOCK: usize = 512;
/// The largest alignment a block may ask for (1 GiB): beyond it no backend can serve
/// the request, which is refused as [`PoolError::TooLarge`] before the cache is touched.
pub(crate) const MAX_ALIGN: usize = 1 << 30;
/// Requests up to this size (rounded) come from the small class (torch's `kSmallSize`).
pub(crate) const SMALL_SIZE: usize = 1 << 20;
/// Default segment size of the small class (torch's `kSmallBuffer`).
pub(crate) const SMALL_SEGMENT: usize = 2 << 20;
/// Default segment size of the large class for requests under [`MIN_LARGE_ALLOC`]
/// (torch's `kLargeBuffer`).
pub(crate) const LARGE_SEGMENT: usize = 20 << 20;
/// Large requests of at least this size get a segment of their own, rounded up to
/// [`ROUND_LARGE`] (torch's `kMinLargeAlloc`).
pub(crate) const MIN_LARGE_ALLOC: usize = 10 << 20;
/// Granularity of a large request's own segment (torch's `kRoundLarge`).
pub(crate) const ROUND_LARGE: usize = 2 << 20;

const NONE: u32 = u32::MAX;
/// How many freed blocks per class wait unmerged for a request of their size (deferred
/// coalescing, off by default); the oldest is merged when another is parked. Enough
/// for the sizes one operator of an inference frees and the next one asks for, and a
/// bound on how far the free blocks can drift from best fit's layout (even one parked
/// block spreads a trace's blocks over more pages: see the crate docs).
const MAX_PARKED: usize = 16;
/// How many candidates a fit search looks at before giving up (alignment padding, or
/// whole segments the overhead cap does not want split).
const MAX_CANDIDATES: usize = 64;

/// The pool's tunables, as the core sees them.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) limit: Option<u64>,
    pub(crate) release_threshold: Option<u64>,
    pub(crate) max_overhead: Option<f64>,
    pub(crate) defer_merge: bool,
    pub(crate) small_segment: usize,
    pub(crate) large_segment: usize,
    /// Address space each reservation asks for; `None` for the default (see
    /// [`Arena::reservation_size`]).
    pub(crate) reservation: Option<usize>,
}

/// One block: a range of a segment, free or handed out.
#[derive(Debug)]
struct Node {
    addr: usize,
    size: usize,
    requested: usize,
    seg: u32,
    prev: u32,
    next: u32,
    state: State,
    label: Option<Arc<str>>,
    /// When it was last freed (the arena's free count then): a merged block takes the
    /// later of its parts'. Pages free the longest are decommitted first.
    freed: u64,
}

/// Where a block stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Handed out.
    Used,
    /// Free, merged with its free neighbours and in the best-fit index.
    Free,
    /// Free, waiting unmerged in its class's parked list (deferred coalescing).
    Parked,
    /// A slab slot with no block.
    Vacant,
}

/// One region of memory from the backend: a reservation (`lazy`) whose blocks tile a
/// prefix that grows on demand and whose free pages are decommitted under pressure, or
/// a whole segment from [`Backend::allocate`], tiled and charged entirely.
#[derive(Debug)]
struct Seg {
    base: NonNull<u8>,
    /// Bytes of address space held from the backend.
    size: usize,
    align: usize,
    class: usize,
    /// Blocks handed out or parked in this segment.
    used: u32,
    /// The first block (its address is the segment's; it is never merged away), or
    /// `NONE` while a reservation has no block yet.
    head: u32,
    /// The last block.
    tail: u32,
    live: bool,
    /// A reservation, rather than a whole segment.
    lazy: bool,
    /// Bytes from `base` tiled by blocks: `size` for a whole segment.
    extent: usize,
    /// Pages from `base` committed at least once (a reservation whose backend keeps
    /// decommitted pages accessible does not commit them again).
    writable: usize,
    /// Bytes the system charges for: `size` for a whole segment, the charged pages of
    /// a reservation.
    charged: usize,
    /// A reservation's uncharged pages.
    uncharged: Uncharged,
}

/// A block handed out: where it is and the slab slot to return it by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Allocation {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) node: u32,
}

/// A pool at one moment, from [`inspect`](crate::MemoryPool::inspect): every segment
/// with its blocks, and the statistics read under the same lock.
///
/// The live blocks with their labels are a leak report, the large ones a
/// large-allocation report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PoolState {
    /// Every segment the pool holds, in address order.
    pub segments: Vec<SegmentInfo>,
    /// The statistics at the same moment.
    pub stats: PoolStats,
}

/// One segment in a [`PoolState`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The segment's address.
    pub addr: usize,
    /// Bytes its blocks cover: the whole segment, or the part of a reservation grown
    /// into so far.
    pub size: u64,
    /// Bytes of it the system charges for (pages handed out and not decommitted since;
    /// all of a whole segment).
    pub committed: u64,
    /// Address space it holds: its size, or the whole reservation.
    pub address_space: u64,
    /// Whether it belongs to the large class: a whole segment for requests over 1 MiB
    /// (a reservation holds every size and says `false`).
    pub large: bool,
    /// Whether it is page-locked.
    pub pinned: bool,
    /// Its blocks in address order; they tile the segment.
    pub blocks: Vec<BlockInfo>,
}

/// One block in a [`SegmentInfo`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BlockInfo {
    /// The block's address.
    pub addr: usize,
    /// Its rounded size in bytes.
    pub size: u64,
    /// Bytes its caller asked for (0 when free).
    pub requested: u64,
    /// Whether a caller holds it.
    pub allocated: bool,
    /// Whether it is free but parked (deferred coalescing), not merged yet.
    pub parked: bool,
    /// The caller's label, if any.
    pub label: Option<Arc<str>>,
}

/// The allocator state. Not synchronised: the pools wrap it in a mutex or a `RefCell`.
#[derive(Debug)]
pub(crate) struct Arena {
    nodes: Vec<Node>,
    vacant: Vec<u32>,
    segs: Vec<Seg>,
    vacant_segs: Vec<u32>,
    /// Free blocks per class (`pinned << 1 | large`), ordered by `(size, addr)`.
    free: [FreeIndex; 4],
    /// Parked blocks per class with their rounded request sizes, oldest first; at most
    /// [`MAX_PARKED`].
    parked: [Vec<(usize, u32)>; 4],
    /// Per class, the reservation that grows next.
    active: [u32; 4],
    /// Whether the backend reserves address space (else every segment is whole).
    reserving: bool,
    stats: PoolStats,
    pub(crate) limits: Limits,
    backend: Arc<dyn Backend>,
    pub(crate) profiler: Option<Arc<Profiler>>,
    page: usize,
}

// SAFETY: the raw segment pointers are owned by the arena alone (blocks handed out are
// reached through `Allocation`s whose owners synchronise through the pool); nothing in
// the arena is tied to a thread, and the backend is `Send + Sync`.
unsafe impl Send for Arena {}

fn round_size(size: usize) -> Option<usize> {
    if size < MIN_BLOCK {
        Some(MIN_BLOCK)
    } else {
        size.checked_next_multiple_of(MIN_BLOCK)
    }
}

impl Arena {
    pub(crate) fn new(limits: Limits, backend: Arc<dyn Backend>) -> Self {
        Self {
            nodes: Vec::new(),
            vacant: Vec::new(),
            segs: Vec::new(),
            vacant_segs: Vec::new(),
            free: Default::default(),
            parked: Default::default(),
            active: [NONE; 4],
            // Until the backend refuses a reservation.
            reserving: backend.can_reserve(),
            stats: PoolStats::default(),
            limits,
            backend,
            profiler: None,
            page: backend::page_size(),
        }
    }

    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Hands out a block of at least `size` bytes aligned to `align`.
    pub(crate) fn allocate(
        &mut self,
        size: usize,
        align: usize,
        pinned: bool,
        label: Option<Arc<str>>,
    ) -> Result<Allocation, PoolError> {
        if !align.is_power_of_two() {
            return Err(PoolError::InvalidAlignment { align });
        }
        if align > MAX_ALIGN {
            // No backend can serve it, and trying would empty the cache first.
            return Err(PoolError::TooLarge {
                requested: size as u64,
                align,
            });
        }
        let too_large = || PoolError::TooLarge {
            requested: size as u64,
            align,
        };
        let rounded = round_size(size)
            .filter(|r| {
                r.checked_add(align)
                    .is_some_and(|r| r <= isize::MAX as usize)
            })
            .ok_or_else(too_large)?;
        // A reservation holds blocks of every size: one address space whose best-fit
        // layout keeps the pages the blocks touch together. Whole segments keep torch's
        // two classes.
        let large = rounded > SMALL_SIZE && !self.reserving;
        let class = (usize::from(pinned) << 1) | usize::from(large);
        if let Some(limit) = self.limits.limit
            && rounded as u64 > limit
        {
            // Nothing given back could make room: fail before touching the cache.
            return Err(self.out_of_memory(size, limit));
        }
        let node = if let Some(node) = self.unpark(class, rounded, align) {
            self.stats.reuses += 1;
            node
        } else {
            let (node, from) = match self.find_cached(class, size, rounded, align) {
                Some(found) => {
                    self.stats.reuses += 1;
                    found
                }
                None => (self.grow(class, size, rounded, align)?, class),
            };
            let node = self.carve(node, from, rounded, align);
            self.segs[self.nodes[node as usize].seg as usize].used += 1;
            // Used before it is charged: making room may merge free blocks, never
            // this one.
            self.nodes[node as usize].state = State::Used;
            if let Err(err) = self.charge(node, size) {
                self.merge_free(node);
                return Err(err);
            }
            node
        };
        let n = &mut self.nodes[node as usize];
        n.state = State::Used;
        n.requested = size;
        n.label = label;
        let block = n.size as u64;
        let s = &mut self.stats;
        s.allocs += 1;
        s.allocated.add(block);
        s.active.add(block);
        s.requested.add(size as u64);
        s.active_blocks.add(1);
        self.sync_inactive();
        self.record_block(EventKind::Alloc, node);
        Ok(Allocation {
            ptr: self.ptr_of(node),
            node,
        })
    }

    /// Returns a block handed out by [`allocate`](Self::allocate).
    pub(crate) fn free(&mut self, node: u32) {
        let (size, requested) = {
            let n = &self.nodes[node as usize];
            debug_assert!(n.state == State::Used, "a block is freed once");
            (n.size, n.requested)
        };
        let s = &mut self.stats;
        s.frees += 1;
        s.allocated.sub(size as u64);
        s.active.sub(size as u64);
        s.requested.sub(requested as u64);
        s.active_blocks.sub(1);
        self.sync_inactive();
        self.record_block(EventKind::Free, node);
        let n = &mut self.nodes[node as usize];
        n.requested = 0;
        n.label = None;
        let over_threshold = self
            .limits
            .release_threshold
            .is_some_and(|t| self.stats.inactive.current > t);
        if self.limits.defer_merge && !over_threshold {
            n.state = State::Parked;
            let class = self.segs[n.seg as usize].class;
            let rounded = round_size(requested).expect("it was rounded when allocated");
            let parked = &mut self.parked[class];
            parked.push((rounded, node));
            if parked.len() > MAX_PARKED {
                let (_, oldest) = parked.remove(0);
                self.merge_free(oldest);
            }
            return;
        }
        self.merge_free(node);
        if let Some(threshold) = self.limits.release_threshold
            && self.stats.inactive.current > threshold
        {
            let excess = self.stats.inactive.current - threshold;
            let released = self.shed(excess);
            log::debug!("released {released} cached bytes over the release threshold");
        }
    }

    /// Marks a used or parked block free, merges it with its free neighbours and indexes
    /// the result, which it returns.
    fn merge_free(&mut self, node: u32) -> u32 {
        let seg = self.nodes[node as usize].seg;
        self.nodes[node as usize].state = State::Free;
        self.nodes[node as usize].freed = self.stats.frees;
        let class = self.segs[seg as usize].class;
        let mut node = node;
        let prev = self.nodes[node as usize].prev;
        if prev != NONE && self.nodes[prev as usize].state == State::Free {
            self.remove_free(class, prev);
            self.absorb_next(prev);
            node = prev;
        }
        let next = self.nodes[node as usize].next;
        if next != NONE && self.nodes[next as usize].state == State::Free {
            self.remove_free(class, next);
            self.absorb_next(node);
        }
        self.insert_free(class, node);
        self.segs[seg as usize].used -= 1;
        node
    }

    /// The parked block of this exact request size and class at the lowest address
    /// that suits `align`.
    fn unpark(&mut self, class: usize, rounded: usize, align: usize) -> Option<u32> {
        let parked = &mut self.parked[class];
        if parked.is_empty() {
            return None;
        }
        let nodes = &self.nodes;
        let (at, _) = parked
            .iter()
            .enumerate()
            .filter(|&(_, &(size, node))| {
                size == rounded && nodes[node as usize].addr.is_multiple_of(align)
            })
            .min_by_key(|&(_, &(_, node))| nodes[node as usize].addr)?;
        let (_, node) = parked.remove(at);
        Some(node)
    }

    /// Cached memory for a request no parked block of its exact size served, as a free
    /// block (merged, indexed) and the class it was found in; `None` when the pool must
    /// grow.
    ///
    /// In order: the best fit among the free blocks and the parked blocks of the class
    /// (a parked block is merged first, so its neighbours join it); for whole segments
    /// under the overhead cap, the same in the other class; then, only if all of that
    /// failed, every parked block is merged and the free index searched again. Parked
    /// blocks are thus merged all at once only before the pool would grow, not on every
    /// miss.
    fn find_cached(
        &mut self,
        class: usize,
        size: usize,
        rounded: usize,
        align: usize,
    ) -> Option<(u32, usize)> {
        // Under the cap a large block is a whole segment of its own, reused only by a
        // request it fits snugly (see `grow`); small blocks take any fit.
        let snug =
            self.limits
                .max_overhead
                .filter(|_| !self.reserving)
                .map_or(usize::MAX, |overhead| {
                    let exact = rounded.next_multiple_of(self.page);
                    let s = &self.stats;
                    let want = (s.requested.current + size as u64).max(s.requested.peak);
                    let budget = (want as f64 * overhead) as u64;
                    let waste = s.allocated.current - s.requested.current;
                    let slack = budget.saturating_sub(waste);
                    ((exact as f64 * (1.0 + overhead)) as usize)
                        .max(exact.saturating_add(usize::try_from(slack).unwrap_or(usize::MAX)))
                });
        let max_size = |class: usize| if class & 1 == 1 { snug } else { usize::MAX };
        let crossing = self.limits.max_overhead.is_some() && !self.reserving;
        let search = |arena: &mut Self| {
            arena
                .fit(class, rounded, align, max_size(class))
                .map(|node| (node, class))
                .or_else(|| {
                    crossing.then_some(())?;
                    let other = class ^ 1;
                    arena
                        .fit(other, rounded, align, max_size(other))
                        .map(|node| (node, other))
                })
        };
        if let Some(found) = search(self) {
            return Some(found);
        }
        if !self.any_parked() {
            return None;
        }
        self.flush_parked();
        search(self)
    }

    /// The best fit for `rounded` bytes at `align`, at most `max_size` large, among the
    /// free and the parked blocks of `class`, as a free indexed block: the smaller of the
    /// two candidates, a parked one merged with its free neighbours first.
    fn fit(&mut self, class: usize, rounded: usize, align: usize, max_size: usize) -> Option<u32> {
        let free = self.find_free(class, rounded, align, max_size);
        let parked = self.find_parked(class, rounded, align, max_size);
        match (free, parked) {
            (Some(f), Some(at))
                if self.nodes[f as usize].size
                    <= self.nodes[self.parked[class][at].1 as usize].size =>
            {
                Some(f)
            }
            (_, Some(at)) => {
                let (_, node) = self.parked[class].remove(at);
                Some(self.merge_free(node))
            }
            (free, None) => free,
        }
    }

    /// Best fit among the parked blocks of `class`: the smallest that holds `rounded`
    /// bytes at `align` and is at most `max_size` large, the most recently parked
    /// among equals; its position.
    fn find_parked(
        &self,
        class: usize,
        rounded: usize,
        align: usize,
        max_size: usize,
    ) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (at, &(_, node)) in self.parked[class].iter().enumerate().rev() {
            let size = self.nodes[node as usize].size;
            if best.is_none_or(|(b, _)| size < b) && self.fits(node, rounded, align, max_size) {
                best = Some((size, at));
            }
        }
        best.map(|(_, at)| at)
    }

    /// Whether free or parked block `node` holds `rounded` bytes at `align` and is at
    /// most `max_size` large.
    fn fits(&self, node: u32, rounded: usize, align: usize, max_size: usize) -> bool {
        let n = &self.nodes[node as usize];
        n.size <= max_size
            && n.addr
                .checked_next_multiple_of(align)
                .and_then(|start| start.checked_add(rounded))
                .is_some_and(|end| end <= n.addr + n.size)
    }

    /// Merges every parked block into the free index.
    pub(crate) fn flush_parked(&mut self) {
        for class in 0..self.parked.len() {
            let mut parked = std::mem::take(&mut self.parked[class]);
            for (_, node) in parked.drain(..) {
                self.merge_free(node);
            }
            // Keep the list's allocation for the next round of parking.
            self.parked[class] = parked;
        }
    }

    /// Whether any block is parked.
    fn any_parked(&self) -> bool {
        self.parked.iter().any(|p| !p.is_empty())
    }

    /// Returns every entirely free whole segment to the backend and decommits every free
    /// page of the reservations; the bytes given back.
    pub(crate) fn empty_cache(&mut self) -> u64 {
        self.flush_parked();
        let mut released = 0;
        for seg in 0..self.segs.len() as u32 {
            let s = &self.segs[seg as usize];
            if s.live && !s.lazy && s.used == 0 {
                released += s.size as u64;
                self.release_segment(seg);
            }
        }
        released + self.decommit_free(u64::MAX)
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let mut stats = self.stats.clone();
        stats.cache_hit_rate = if stats.allocs == 0 {
            0.0
        } else {
            stats.reuses as f64 / stats.allocs as f64
        };
        stats.fragmentation = if stats.reserved.current == 0 {
            0.0
        } else {
            1.0 - stats.allocated.current as f64 / stats.reserved.current as f64
        };
        stats.largest_free_block = self
            .free
            .iter()
            .filter_map(|index| index.largest().map(|size| size as u64))
            .chain(
                self.parked
                    .iter()
                    .flatten()
                    .map(|&(_, n)| self.nodes[n as usize].size as u64),
            )
            .max()
            .unwrap_or(0);
        stats
    }

    pub(crate) fn reset_peak(&mut self) {
        self.stats.reset_peak();
    }

    /// The segments with their blocks, and the statistics.
    pub(crate) fn inspect(&self) -> PoolState {
        PoolState {
            segments: self.segments(),
            stats: self.stats(),
        }
    }

    /// The segments and their blocks, in address order.
    fn segments(&self) -> Vec<SegmentInfo> {
        let mut segs: Vec<SegmentInfo> = self
            .segs
            .iter()
            .filter(|s| s.live)
            .map(|s| {
                let mut blocks = Vec::new();
                let mut at = s.head;
                while at != NONE {
                    let n = &self.nodes[at as usize];
                    blocks.push(BlockInfo {
                        addr: n.addr,
                        size: n.size as u64,
                        requested: n.requested as u64,
                        allocated: n.state == State::Used,
                        parked: n.state == State::Parked,
                        label: n.label.clone(),
                    });
                    at = n.next;
                }
                SegmentInfo {
                    addr: s.base.as_ptr() as usize,
                    size: s.extent as u64,
                    committed: s.charged as u64,
                    address_space: s.size as u64,
                    large: s.class & 1 == 1,
                    pinned: s.class & 2 == 2,
                    blocks,
                }
            })
            .collect();
        segs.sort_by_key(|s| s.addr);
        segs
    }

    /// Checks every structural invariant and that the statistics match the blocks.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let (mut allocated, mut requested, mut reserved, mut blocks, mut segments) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut pinned = 0u64;
        let (mut free_blocks, mut parked) = (0usize, 0usize);
        for (i, s) in self.segs.iter().enumerate() {
            if !s.live {
                continue;
            }
            segments += 1;
            reserved += s.charged as u64;
            if s.class & 2 == 2 {
                pinned += s.charged as u64;
            }
            let base = s.base.as_ptr() as usize;
            if s.lazy {
                let pages = s.extent / self.page;
                let charged = (pages - s.uncharged.count(0, pages)) * self.page;
                if charged != s.charged || !s.extent.is_multiple_of(self.page) {
                    return Err(format!(
                        "reservation {i}: {} bytes charged, its pages say {charged}",
                        s.charged
                    ));
                }
            } else if s.charged != s.size || s.extent != s.size {
                return Err(format!("segment {i}: not charged or tiled whole"));
            }
            if !base.is_multiple_of(s.align) {
                return Err(format!(
                    "segment {i} at {base:#x} not aligned to {}",
                    s.align
                ));
            }
            let (mut at, mut addr, mut prev, mut prev_free, mut used) =
                (s.head, base, NONE, false, 0u32);
            while at != NONE {
                let n = &self.nodes[at as usize];
                if n.state == State::Vacant
                    || n.seg as usize != i
                    || n.prev != prev
                    || n.addr != addr
                {
                    return Err(format!("segment {i}: broken block list at block {at}"));
                }
                if n.size == 0 || !n.size.is_multiple_of(MIN_BLOCK) {
                    return Err(format!("segment {i}: block {at} has size {}", n.size));
                }
                if s.lazy && n.state != State::Free {
                    let (first, end) = self.pages_of(at, false);
                    if s.uncharged.count(first, end) != 0 {
                        return Err(format!("segment {i}: block {at} is on uncharged pages"));
                    }
                }
                match n.state {
                    State::Used => {
                        used += 1;
                        allocated += n.size as u64;
                        requested += n.requested as u64;
                        blocks += 1;
                        prev_free = false;
                    }
                    State::Parked => {
                        used += 1;
                        parked += 1;
                        let listed = self.parked[s.class]
                            .iter()
                            .any(|&(size, node)| node == at && n.size >= size);
                        if !listed {
                            return Err(format!("segment {i}: parked block {at} not listed"));
                        }
                        prev_free = false;
                    }
                    State::Free => {
                        if prev_free {
                            return Err(format!(
                                "segment {i}: two adjacent free blocks at {addr:#x}"
                            ));
                        }
                        if self.free[s.class].get(n.size, n.addr) != Some(at) {
                            return Err(format!("segment {i}: free block {at} not indexed"));
                        }
                        free_blocks += 1;
                        prev_free = true;
                    }
                    State::Vacant => unreachable!("checked above"),
                }
                addr += n.size;
                prev = at;
                at = n.next;
            }
            if addr != base + s.extent || s.tail != prev || s.extent > s.size {
                return Err(format!(
                    "segment {i}: blocks cover {} of {} bytes, to block {prev} (tail {})",
                    addr - base,
                    s.extent,
                    s.tail
                ));
            }
            if used != s.used {
                return Err(format!(
                    "segment {i}: {used} blocks in use, counted {}",
                    s.used
                ));
            }
        }
        let listed: usize = self.parked.iter().map(Vec::len).sum();
        if listed != parked || self.parked.iter().any(|p| p.len() > MAX_PARKED) {
            return Err(format!(
                "{listed} blocks listed parked, {parked} parked blocks"
            ));
        }
        let indexed: usize = self.free.iter().map(FreeIndex::len).sum();
        if indexed != free_blocks {
            return Err(format!(
                "{indexed} free blocks indexed, {free_blocks} found"
            ));
        }
        let st = &self.stats;
        let checks = [
            ("allocated", st.allocated.current, allocated),
            ("active", st.active.current, allocated),
            ("requested", st.requested.current, requested),
            ("reserved", st.reserved.current, reserved),
            ("inactive", st.inactive.current, reserved - allocated),
            ("active_blocks", st.active_blocks.current, blocks),
            ("segments", st.segments.current, segments),
            ("pinned_reserved", st.pinned_reserved.current, pinned),
        ];
        for (name, counted, found) in checks {
            if counted != found {
                return Err(format!("stat {name} is {counted}, the blocks say {found}"));
            }
        }
        Ok(())
    }

    fn ptr_of(&self, node: u32) -> NonNull<u8> {
        let n = &self.nodes[node as usize];
        let seg = &self.segs[n.seg as usize];
        let offset = n.addr - seg.base.as_ptr() as usize;
        // SAFETY: every block lies inside its segment (`check_invariants`), so `offset`
        // is within the segment's allocation and the result is non-null.
        unsafe { seg.base.add(offset) }
    }

    /// Best fit: the smallest free block of the class that holds `rounded` bytes at
    /// `align`, lowest address first among equals, at most `max_size` large.
    fn find_free(
        &self,
        class: usize,
        rounded: usize,
        align: usize,
        max_size: usize,
    ) -> Option<u32> {
        let mut candidates = self.free[class].range(rounded, max_size);
        if align <= MIN_BLOCK {
            return candidates.next();
        }
        // Blocks start at multiples of 512 only: look for one with room for the padding.
        // Bounded, so a pathological cache cannot make one allocation scan it all.
        candidates
            .take(MAX_CANDIDATES)
            .find(|&node| self.fits(node, rounded, align, max_size))
    }

    /// Takes free block `node` out of the index and cuts it to `rounded` bytes at
    /// `align`: an unaligned head stays free, and a tail goes back to the cache when it
    /// is large enough to be worth keeping separately (torch's `should_split`).
    fn carve(&mut self, node: u32, class: usize, rounded: usize, align: usize) -> u32 {
        self.remove_free(class, node);
        let mut node = node;
        let addr = self.nodes[node as usize].addr;
        let head = addr.next_multiple_of(align) - addr;
        if head > 0 {
            let body = self.split(node, head);
            self.insert_free(class, node);
            node = body;
        }
        let remaining = self.nodes[node as usize].size - rounded;
        let lazy = self.segs[self.nodes[node as usize].seg as usize].lazy;
        let worth = if class & 1 == 0 || lazy {
            // A reservation's free neighbours merge back, so a tail is always worth
            // keeping apart.
            remaining >= MIN_BLOCK
        } else {
            // Under the cap a large block keeps its whole (snug) segment.
            self.limits.max_overhead.is_none() && remaining > SMALL_SIZE
        };
        if worth {
            let tail = self.split(node, rounded);
            self.insert_free(class, tail);
        }
        node
    }

    /// Splits `node` after `at` bytes; returns the new node holding the rest.
    fn split(&mut self, node: u32, at: usize) -> u32 {
        let (addr, size, seg, next, freed) = {
            let n = &self.nodes[node as usize];
            (n.addr, n.size, n.seg, n.next, n.freed)
        };
        let rest = self.new_node(Node {
            addr: addr + at,
            size: size - at,
            requested: 0,
            seg,
            prev: node,
            next,
            state: State::Free,
            label: None,
            freed,
        });
        if next != NONE {
            self.nodes[next as usize].prev = rest;
        } else {
            self.segs[seg as usize].tail = rest;
        }
        let n = &mut self.nodes[node as usize];
        n.size = at;
        n.next = rest;
        rest
    }

    /// Merges the (free, unindexed) block after `node` into `node`.
    fn absorb_next(&mut self, node: u32) {
        let next = self.nodes[node as usize].next;
        let (size, after) = {
            let n = &mut self.nodes[next as usize];
            n.state = State::Vacant;
            n.label = None;
            (n.size, n.next)
        };
        self.vacant.push(next);
        if after != NONE {
            self.nodes[after as usize].prev = node;
        } else {
            let seg = self.nodes[node as usize].seg;
            self.segs[seg as usize].tail = node;
        }
        let freed = self.nodes[next as usize].freed;
        let n = &mut self.nodes[node as usize];
        n.size += size;
        n.next = after;
        n.freed = n.freed.max(freed);
    }

    fn new_node(&mut self, node: Node) -> u32 {
        match self.vacant.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = node;
                slot
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn insert_free(&mut self, class: usize, node: u32) {
        let n = &self.nodes[node as usize];
        self.free[class].insert(n.size, n.addr, node);
    }

    fn remove_free(&mut self, class: usize, node: u32) {
        let n = &self.nodes[node as usize];
        let removed = self.free[class].remove(n.size, n.addr);
        debug_assert_eq!(removed, Some(node), "a free block is indexed");
    }

    /// Room for a request the cache could not serve: the class's reservation grown (or
    /// a new one), else a whole segment, sized as torch does (2 MiB small, 20 MiB large,
    /// or the request rounded to 2 MiB from 10 MiB on), as the request rounded to a page
    /// for a large request under the overhead cap, or when torch's size would take the
    /// reserved bytes over the cap or the limit.
    fn grow(
        &mut self,
        class: usize,
        size: usize,
        rounded: usize,
        align: usize,
    ) -> Result<u32, PoolError> {
        if self.reserving
            && let Some(node) = self.grow_reserved(class, rounded, align)
        {
            return Ok(node);
        }
        let seg_align = align.max(self.page);
        let exact = rounded.next_multiple_of(self.page);
        let mut seg_size = if class & 1 == 0 {
            self.limits.small_segment.max(exact)
        } else if self.limits.max_overhead.is_some() {
            exact
        } else if rounded < MIN_LARGE_ALLOC {
            self.limits.large_segment.max(exact)
        } else {
            rounded.next_multiple_of(ROUND_LARGE)
        };
        let reserved = |arena: &Self| arena.stats.reserved.current;
        if let Some(overhead) = self.limits.max_overhead {
            let want = (self.stats.requested.current + size as u64).max(self.stats.requested.peak);
            let cap = (want as f64 * (1.0 + overhead)) as u64;
            if reserved(self) + seg_size as u64 > cap {
                seg_size = exact;
                let over = (reserved(self) + seg_size as u64).saturating_sub(cap);
                if over > 0 {
                    self.shed(over);
                }
            }
        }
        if let Some(limit) = self.limits.limit {
            if reserved(self) + seg_size as u64 > limit {
                seg_size = exact;
            }
            if reserved(self) + seg_size as u64 > limit {
                self.stats.alloc_retries += 1;
                let over = reserved(self) + seg_size as u64 - limit;
                self.shed(over);
                if reserved(self) + seg_size as u64 > limit {
                    return Err(self.out_of_memory(size, limit));
                }
            }
        }
        let base = match self.backend.allocate(seg_size, seg_align) {
            Some(base) => base,
            None => {
                self.stats.alloc_retries += 1;
                self.empty_cache();
                match self.backend.allocate(seg_size, seg_align) {
                    Some(base) => base,
                    None => {
                        return Err(self.out_of_memory(size, self.limits.limit.unwrap_or(u64::MAX)));
                    }
                }
            }
        };
        self.stats.maps += 1;
        let pinned = class & 2 == 2;
        if pinned && let Err(source) = self.backend.lock(base, seg_size) {
            // SAFETY: `base` came from this backend's `allocate` with these arguments just
            // now and was handed to nobody.
            unsafe { self.backend.deallocate(base, seg_size, seg_align) };
            self.stats.unmaps += 1;
            return Err(PoolError::PinFailed {
                bytes: seg_size as u64,
                memlock_limit: backend::memlock_limit(),
                source,
            });
        }
        let seg = self.new_seg(Seg {
            base,
            size: seg_size,
            align: seg_align,
            class,
            used: 0,
            head: NONE,
            tail: NONE,
            live: true,
            lazy: false,
            extent: seg_size,
            writable: 0,
            charged: seg_size,
            uncharged: Uncharged::default(),
        });
        let head = self.new_node(Node {
            addr: base.as_ptr() as usize,
            size: seg_size,
            requested: 0,
            seg,
            prev: NONE,
            next: NONE,
            state: State::Free,
            label: None,
            freed: 0,
        });
        self.segs[seg as usize].head = head;
        self.segs[seg as usize].tail = head;
        self.insert_free(class, head);
        let s = &mut self.stats;
        s.segment_allocs += 1;
        s.reserved.add(seg_size as u64);
        s.segments.add(1);
        if pinned {
            s.pinned_reserved.add(seg_size as u64);
        }
        // No `sync_inactive` here: the new segment's bytes are about to be allocated, and
        // the caller syncs once they are, so the inactive peak never sees this moment.
        self.record_segment(EventKind::SegmentAlloc, seg);
        Ok(head)
    }

    /// Counts an allocation of `size` bytes that failed under `limit` (`u64::MAX` when
    /// the backend itself had no memory) and says so.
    fn out_of_memory(&mut self, size: usize, limit: u64) -> PoolError {
        self.stats.ooms += 1;
        log::debug!("pool out of memory: {size} bytes requested, limit {limit}");
        PoolError::OutOfMemory {
            requested: size as u64,
            limit,
            reserved: self.stats.reserved.current,
            allocated: self.stats.allocated.current,
        }
    }

    fn new_seg(&mut self, seg: Seg) -> u32 {
        match self.vacant_segs.pop() {
            Some(at) => {
                self.segs[at as usize] = seg;
                at
            }
            None => {
                self.segs.push(seg);
                (self.segs.len() - 1) as u32
            }
        }
    }

    /// Address space for one reservation: [`PoolConfig::reservation`](crate::PoolConfig),
    /// else the limit, else twice the machine's memory (between 1 GiB and 1 TiB), and
    /// never less than `need`.
    fn reservation_size(&self, need: usize) -> usize {
        const GIB: u64 = 1 << 30;
        let default = || {
            self.limits.limit.unwrap_or_else(|| {
                backend::physical_memory()
                    .unwrap_or(4 * GIB)
                    .saturating_mul(2)
                    .clamp(GIB, 1024 * GIB)
            })
        };
        let size = self
            .limits
            .reservation
            .unwrap_or_else(|| usize::try_from(default()).unwrap_or(usize::MAX / 2));
        size.max(need)
            .checked_next_multiple_of(self.page)
            .unwrap_or(need)
    }

    /// A free block of a reservation of `class` with room for `rounded` bytes at
    /// `align`: the class's growing reservation extended at its end (its last block if
    /// that is free, else a new one), or a new reservation. `None` when the backend
    /// reserves nothing; the caller then takes a whole segment.
    fn grow_reserved(&mut self, class: usize, rounded: usize, align: usize) -> Option<u32> {
        let active = self.active[class];
        if active != NONE
            && let Some(node) = self.extend(active, rounded, align)
        {
            return Some(node);
        }
        // Room for the request at any alignment, whole pages.
        let need = rounded
            .checked_add(align.saturating_sub(self.page))?
            .checked_next_multiple_of(self.page)?;
        let mut size = self.reservation_size(need);
        let base = loop {
            match self.backend.reserve(size, self.page) {
                Some(base) => break base,
                // The address space may be limited (`RLIMIT_AS`, a sanitiser): ask for
                // less, down to the request.
                None if size > need => {
                    size = (size / 2).next_multiple_of(self.page).max(need);
                }
                None => {
                    // Refused at the usual size: the system limits address space, and
                    // whole segments serve from now on. An outsized request alone
                    // changes nothing.
                    if need <= self.reservation_size(self.page) {
                        log::debug!(
                            "the {} backend reserves no address space",
                            self.backend.name()
                        );
                        self.reserving = false;
                    }
                    return None;
                }
            }
        };
        self.stats.maps += 1;
        let seg = self.new_seg(Seg {
            base,
            size,
            align: self.page,
            class,
            used: 0,
            head: NONE,
            tail: NONE,
            live: true,
            lazy: true,
            extent: 0,
            writable: 0,
            charged: 0,
            uncharged: Uncharged::default(),
        });
        self.active[class] = seg;
        let s = &mut self.stats;
        s.segment_allocs += 1;
        s.segments.add(1);
        self.record_segment(EventKind::SegmentAlloc, seg);
        self.extend(seg, rounded, align)
    }

    /// Extends reservation `seg` at its end so that its last block is free and holds
    /// `rounded` bytes at `align`; that block, or `None` when the reservation is full.
    /// The pages added are uncharged until a block on them is handed out.
    fn extend(&mut self, seg: u32, rounded: usize, align: usize) -> Option<u32> {
        let (base, size, extent, tail, class) = {
            let s = &self.segs[seg as usize];
            (s.base.as_ptr() as usize, s.size, s.extent, s.tail, s.class)
        };
        let tail_free = tail != NONE && self.nodes[tail as usize].state == State::Free;
        let start = if tail_free {
            self.nodes[tail as usize].addr
        } else {
            base + extent
        };
        // Never shorter than now: a free last block may already hold the request
        // (the fit search gives up after a bounded number of candidates).
        let end = start
            .checked_next_multiple_of(align)?
            .checked_add(rounded)?
            .checked_next_multiple_of(self.page)?
            .max(base + extent);
        if end - base > size {
            return None;
        }
        let s = &mut self.segs[seg as usize];
        s.extent = end - base;
        s.uncharged.grow_to(s.extent / self.page);
        if tail_free {
            self.remove_free(class, tail);
            self.nodes[tail as usize].size = end - start;
            self.insert_free(class, tail);
            return Some(tail);
        }
        let node = self.new_node(Node {
            addr: start,
            size: end - start,
            requested: 0,
            seg,
            prev: tail,
            next: NONE,
            state: State::Free,
            label: None,
            freed: 0,
        });
        let s = &mut self.segs[seg as usize];
        if tail == NONE {
            s.head = node;
        } else {
            self.nodes[tail as usize].next = node;
        }
        s.tail = node;
        self.insert_free(class, node);
        Some(node)
    }

    /// The pages of reservation `seg` that block `node` touches: `(first, end)`, or only
    /// the pages wholly inside it (`whole`).
    fn pages_of(&self, node: u32, whole: bool) -> (usize, usize) {
        let n = &self.nodes[node as usize];
        let start = n.addr - self.segs[n.seg as usize].base.as_ptr() as usize;
        let end = start + n.size;
        if whole {
            (start.div_ceil(self.page), end / self.page)
        } else {
            (start / self.page, end.div_ceil(self.page))
        }
    }

    /// Charges the uncharged pages under block `node` (just carved, about to be handed
    /// out for `size` bytes): first makes room under the overhead cap and the limit by
    /// decommitting other free pages, then commits what the backend needs committed.
    fn charge(&mut self, node: u32, size: usize) -> Result<(), PoolError> {
        let seg = self.nodes[node as usize].seg as usize;
        if !self.segs[seg].lazy {
            return Ok(());
        }
        let (first, end) = self.pages_of(node, false);
        let pages = self.segs[seg].uncharged.count(first, end);
        if pages == 0 {
            return Ok(());
        }
        let extra = (pages * self.page) as u64;
        if let Some(overhead) = self.limits.max_overhead {
            let want = (self.stats.requested.current + size as u64).max(self.stats.requested.peak);
            let cap = (want as f64 * (1.0 + overhead)) as u64;
            let over = (self.stats.reserved.current + extra).saturating_sub(cap);
            if over > 0 {
                self.shed(over);
            }
        }
        if let Some(limit) = self.limits.limit
            && self.stats.reserved.current + extra > limit
        {
            self.stats.alloc_retries += 1;
            self.shed(self.stats.reserved.current + extra - limit);
            if self.stats.reserved.current + extra > limit {
                return Err(self.out_of_memory(size, limit));
            }
        }
        let pinned = self.segs[seg].class & 2 == 2;
        let keeps = self.backend.decommit_keeps_access();
        let base = self.segs[seg].base;
        let mut locked: Vec<(usize, usize)> = Vec::new();
        for (a, b) in self.segs[seg].uncharged.runs(first, end, true) {
            let writable = self.segs[seg].writable;
            // Where the backend keeps decommitted pages accessible, every page below
            // `writable` has been committed, and the rest never was: commit from
            // `writable` (the gap below `a` included, so that this stays true) and ahead
            // of the end (up to 1 MiB, address space only) to save calls.
            let from = if keeps { writable } else { a };
            if from < b {
                let ahead = if keeps {
                    let limit = self.segs[seg].size / self.page;
                    b.max(from + (1 << 20) / self.page).min(limit)
                } else {
                    b
                };
                // SAFETY: pages `from..ahead` are page-aligned and inside the
                // reservation (`ahead` is at most its size in pages), which is live.
                let committed = unsafe {
                    self.backend
                        .commit(base.add(from * self.page), (ahead - from) * self.page)
                };
                if let Err(err) = committed {
                    log::debug!("committing {} pages failed: {err}", ahead - from);
                    self.unlock_runs(seg, &locked);
                    return Err(self.out_of_memory(size, self.limits.limit.unwrap_or(u64::MAX)));
                }
                self.stats.commits += 1;
                if keeps {
                    self.segs[seg].writable = writable.max(ahead);
                }
            }
            if pinned {
                // SAFETY: pages `a..b` of the live reservation are committed now.
                let range = unsafe { base.add(a * self.page) };
                if let Err(source) = self.backend.lock(range, (b - a) * self.page) {
                    // The block is not handed out: what this call locked goes back.
                    self.unlock_runs(seg, &locked);
                    return Err(PoolError::PinFailed {
                        bytes: ((b - a) * self.page) as u64,
                        memlock_limit: backend::memlock_limit(),
                        source,
                    });
                }
                locked.push((a, b));
            }
        }
        let s = &mut self.segs[seg];
        s.uncharged.set(first, end, true);
        s.charged += extra as usize;
        self.stats.reserved.add(extra);
        if pinned {
            self.stats.pinned_reserved.add(extra);
        }
        // SAFETY: page `first` lies in the live reservation.
        let at = unsafe { base.add(first * self.page) }.as_ptr() as usize;
        self.record_range(EventKind::Commit, at, extra);
        Ok(())
    }

    /// Unlocks page runs of reservation `seg` that a failed [`charge`](Self::charge)
    /// locked.
    fn unlock_runs(&self, seg: usize, runs: &[(usize, usize)]) {
        let base = self.segs[seg].base;
        for &(a, b) in runs {
            // SAFETY: page `a` lies in the live reservation.
            let range = unsafe { base.add(a * self.page) };
            self.backend.unlock(range, (b - a) * self.page);
        }
    }

    /// Gives back at least `need` cached bytes if it can: returns entirely free whole
    /// segments, then decommits free pages of reservations (least recently freed blocks
    /// first, from their ends), and only if that was not enough merges every parked
    /// block and tries both again. Returns the bytes given back.
    fn shed(&mut self, need: u64) -> u64 {
        let mut released = self.release_free(need);
        if released < need {
            released += self.decommit_free(need - released);
        }
        if released < need && self.any_parked() {
            // Parked blocks hold the repeated sizes' next allocations: merged only when
            // the free blocks did not suffice.
            self.flush_parked();
            released += self.release_free(need - released);
            if released < need {
                released += self.decommit_free(need - released);
            }
        }
        released
    }

    /// Decommits the whole charged pages inside free blocks of reservations, those
    /// free the longest first (the least likely to be taken again soon), until `need`
    /// bytes are given back or none is left; the bytes.
    fn decommit_free(&mut self, need: u64) -> u64 {
        let mut blocks: Vec<(u64, u32)> = self
            .free
            .iter()
            .flat_map(FreeIndex::nodes)
            .filter(|&node| {
                let n = &self.nodes[node as usize];
                n.size >= self.page && self.segs[n.seg as usize].lazy
            })
            .map(|node| (self.nodes[node as usize].freed, node))
            .collect();
        blocks.sort_unstable();
        let mut released = 0u64;
        for (_, node) in blocks {
            if released >= need {
                break;
            }
            released += self.decommit_block(node, need - released);
        }
        self.sync_inactive();
        released
    }

    /// Decommits charged pages wholly inside free block `node` of a reservation, from
    /// its end (best fit carves blocks from the start of a free block, so its end is
    /// taken last) until `want` bytes are given back or none is left; the bytes.
    fn decommit_block(&mut self, node: u32, want: u64) -> u64 {
        let (first, end) = self.pages_of(node, true);
        if first >= end {
            return 0;
        }
        let seg = self.nodes[node as usize].seg as usize;
        let pinned = self.segs[seg].class & 2 == 2;
        let base = self.segs[seg].base;
        let mut released = 0;
        let want_pages = usize::try_from(want.div_ceil(self.page as u64)).unwrap_or(usize::MAX);
        let mut left = want_pages;
        for (a, b) in self.segs[seg]
            .uncharged
            .runs(first, end, false)
            .into_iter()
            .rev()
        {
            if left == 0 {
                break;
            }
            let a = a.max(b.saturating_sub(left));
            // SAFETY: pages `a..b` lie wholly inside a free block of this live
            // reservation, so no block handed out overlaps them, and they are charged:
            // committed, or decommitted before and still accessible (the backend's
            // `decommit_keeps_access`), which the contract counts as committed.
            let (range, len) = (unsafe { base.add(a * self.page) }, (b - a) * self.page);
            if pinned {
                self.backend.unlock(range, len);
            }
            // SAFETY: as above.
            if let Err(err) = unsafe { self.backend.decommit(range, len) } {
                log::warn!("decommitting {len} bytes of a pool reservation failed: {err}");
                // The pages stay charged, so pinned ones stay locked.
                if pinned && let Err(err) = self.backend.lock(range, len) {
                    log::warn!("locking {len} bytes of a pool reservation again failed: {err}");
                }
                continue;
            }
            self.stats.decommits += 1;
            left -= b - a;
            self.segs[seg].uncharged.set(a, b, false);
            released += len;
            self.stats.reserved.sub(len as u64);
            self.record_range(EventKind::Decommit, range.as_ptr() as usize, len as u64);
        }
        let s = &mut self.segs[seg];
        s.charged -= released;
        if pinned {
            self.stats.pinned_reserved.sub(released as u64);
        }
        released as u64
    }

    /// Returns entirely free whole segments (never reservations) until `need` bytes are
    /// released or none is left: `first` if given and free, then the smallest single
    /// segment that covers the rest, else the largest ones first. Returns the bytes
    /// released.
    fn release_free(&mut self, need: u64) -> u64 {
        let mut released = 0u64;
        while released < need {
            let missing = need - released;
            let candidates = self
                .segs
                .iter()
                .enumerate()
                .filter(|(_, s)| s.live && !s.lazy && s.used == 0)
                .map(|(i, s)| (s.size as u64, i as u32));
            let mut covering = None;
            let mut largest = None;
            for (size, seg) in candidates {
                if size >= missing && covering.is_none_or(|(c, _)| size < c) {
                    covering = Some((size, seg));
                }
                if largest.is_none_or(|(l, _)| size > l) {
                    largest = Some((size, seg));
                }
            }
            let Some((size, seg)) = covering.or(largest) else {
                break;
            };
            released += size;
            self.release_segment(seg);
        }
        released
    }

    /// Returns a segment or reservation none of whose blocks is handed out or parked.
    fn release_segment(&mut self, seg: u32) {
        let (base, size, align, class, charged, lazy) = {
            let s = &self.segs[seg as usize];
            debug_assert!(s.live && s.used == 0, "only free segments are released");
            (s.base, s.size, s.align, s.class, s.charged, s.lazy)
        };
        let mut at = self.segs[seg as usize].head;
        while at != NONE {
            self.remove_free(class, at);
            self.nodes[at as usize].state = State::Vacant;
            self.vacant.push(at);
            at = self.nodes[at as usize].next;
        }
        self.segs[seg as usize].live = false;
        self.segs[seg as usize].uncharged = Uncharged::default();
        self.vacant_segs.push(seg);
        if self.active[class] == seg {
            self.active[class] = NONE;
        }
        let pinned = class & 2 == 2;
        if pinned && !lazy {
            self.backend.unlock(base, size);
        }
        if lazy {
            // SAFETY: the reservation came from this backend's `reserve` with this size
            // and alignment, no block of it is handed out (`used == 0`), and it is now
            // forgotten.
            unsafe { self.backend.release(base, size, align) };
        } else {
            // SAFETY: the segment came from this backend's `allocate` with this size and
            // alignment, no block of it is handed out (`used == 0`), and it is now
            // forgotten.
            unsafe { self.backend.deallocate(base, size, align) };
        }
        let s = &mut self.stats;
        s.unmaps += 1;
        s.segment_frees += 1;
        s.reserved.sub(charged as u64);
        s.segments.sub(1);
        if pinned {
            s.pinned_reserved.sub(charged as u64);
        }
        self.sync_inactive();
        self.record_segment(EventKind::SegmentFree, seg);
    }

    fn sync_inactive(&mut self) {
        let s = &mut self.stats;
        s.inactive.current = s.reserved.current - s.allocated.current;
        s.inactive.peak = s.inactive.peak.max(s.inactive.current);
    }

    fn record_block(&self, kind: EventKind, node: u32) {
        if let Some(profiler) = &self.profiler
            && profiler.is_recording()
        {
            let n = &self.nodes[node as usize];
            profiler.record(Event {
                kind,
                addr: n.addr,
                size: n.size as u64,
                requested: n.requested as u64,
                label: n.label.clone(),
                allocated: self.stats.allocated.current,
                reserved: self.stats.reserved.current,
            });
        }
    }

    /// Records an event on a range of memory: pages of a reservation charged or
    /// decommitted, or a segment or reservation made or returned.
    fn record_range(&self, kind: EventKind, addr: usize, bytes: u64) {
        if let Some(profiler) = &self.profiler
            && profiler.is_recording()
        {
            profiler.record(Event {
                kind,
                addr,
                size: bytes,
                requested: 0,
                label: None,
                allocated: self.stats.allocated.current,
                reserved: self.stats.reserved.current,
            });
        }
    }

    /// Records a segment or reservation made or returned, with the bytes it is
    /// charged for (none for a reservation made or decommitted whole).
    fn record_segment(&self, kind: EventKind, seg: u32) {
        let s = &self.segs[seg as usize];
        self.record_range(kind, s.base.as_ptr() as usize, s.charged as u64);
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // Blocks borrow or co-own the pool, so none is live when the arena drops.
        let released = self.empty_cache();
        for seg in 0..self.segs.len() as u32 {
            let s = &self.segs[seg as usize];
            if s.live && s.lazy && s.used == 0 {
                self.release_segment(seg);
            }
        }
        if self.stats.segments.current > 0 {
            log::error!(
                "memory pool dropped with {} live blocks; their segments are leaked",
                self.stats.active_blocks.current
            );
        }
        log::trace!("memory pool dropped, {released} bytes returned");
    }
}
