//! The unsynchronised allocator core shared by [`MemoryPool`](crate::MemoryPool) and
//! [`LocalPool`](crate::LocalPool): segments, blocks, best fit, splitting, merging,
//! limits and statistics.
//!
//! Blocks live in a slab (`nodes`) and are linked to their neighbours inside their
//! segment, so a free finds and merges its neighbours in O(1). Free blocks are indexed
//! per class in a `BTreeSet` ordered by `(size, address)`: best fit is one range query.
//! Parked blocks (deferred coalescing) sit per class in bins of their rounded request
//! size, kept sorted by size: an exact hit is a binary search and a pop, and a best
//! fit among them is a scan from the first bin large enough.

use std::collections::BTreeSet;
use std::ptr::NonNull;
use std::sync::Arc;

use serde::Serialize;

use crate::backend::{self, Backend};
use crate::error::PoolError;
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
/// Above this many bins per class, the (then empty) bins are dropped when parked blocks
/// are merged, so a workload of ever new sizes cannot grow the bin list without bound.
const MAX_BINS: usize = 256;
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
}

/// Where a block stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Handed out.
    Used,
    /// Free, merged with its free neighbours and in the best-fit index.
    Free,
    /// Free, waiting in its exact-size bin; merged later (deferred coalescing).
    Parked,
    /// A slab slot with no block.
    Vacant,
}

/// One segment from the backend.
#[derive(Debug)]
struct Seg {
    base: NonNull<u8>,
    size: usize,
    align: usize,
    class: usize,
    /// Blocks handed out or parked in this segment.
    used: u32,
    /// The first block (its address is the segment's; it is never merged away).
    head: u32,
    live: bool,
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
    /// Its size in bytes.
    pub size: u64,
    /// Whether it belongs to the large class (requests over 1 MiB).
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
    /// Whether it is free but waiting in its exact-size bin, not merged yet.
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
    free: [BTreeSet<(usize, usize, u32)>; 4],
    /// Parked blocks per class in bins of their rounded request size, sorted by size;
    /// in a bin, most recently freed last.
    parked: [Vec<Bin>; 4],
    /// How many blocks are parked.
    parked_count: usize,
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

/// Parked blocks freed with one rounded request size. Every block in it is at least
/// that large (a large block keeps a remainder of up to 1 MiB unsplit).
#[derive(Debug)]
struct Bin {
    size: usize,
    nodes: Vec<u32>,
}

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
            parked_count: 0,
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
        let class = (usize::from(pinned) << 1) | usize::from(rounded > SMALL_SIZE);
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
            let bins = &mut self.parked[class];
            let at = match bins.binary_search_by_key(&rounded, |b| b.size) {
                Ok(at) => at,
                Err(at) => {
                    bins.insert(
                        at,
                        Bin {
                            size: rounded,
                            nodes: Vec::new(),
                        },
                    );
                    at
                }
            };
            bins[at].nodes.push(node);
            self.parked_count += 1;
            return;
        }
        self.merge_free(node);
        if let Some(threshold) = self.limits.release_threshold
            && self.stats.inactive.current > threshold
        {
            self.flush_parked();
            let excess = self.stats.inactive.current - threshold;
            let released = self.release_free(excess, None);
            log::debug!("released {released} cached bytes over the release threshold");
        }
    }

    /// Marks a used or parked block free, merges it with its free neighbours and indexes
    /// the result, which it returns.
    fn merge_free(&mut self, node: u32) -> u32 {
        let seg = self.nodes[node as usize].seg;
        self.nodes[node as usize].state = State::Free;
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

    /// The most recently parked block of this exact request size and class, if its
    /// address suits `align`.
    fn unpark(&mut self, class: usize, rounded: usize, align: usize) -> Option<u32> {
        if self.parked_count == 0 {
            return None;
        }
        let bins = &mut self.parked[class];
        let at = bins.binary_search_by_key(&rounded, |b| b.size).ok()?;
        let bin = &mut bins[at].nodes;
        let &node = bin.last()?;
        if !self.nodes[node as usize].addr.is_multiple_of(align) {
            return None;
        }
        bin.pop();
        self.parked_count -= 1;
        Some(node)
    }

    /// Cached memory for a request its exact-size bin could not serve, as a free block
    /// (merged, indexed) and the class it was found in; `None` when the pool must grow.
    ///
    /// In order: the best fit among the free blocks and the parked blocks of the class
    /// (a parked block is merged first, so its neighbours join it); under the overhead
    /// cap the same in the other class; then, only if all of that failed, every parked
    /// block is merged and the free index searched again. Parked blocks are thus merged
    /// all at once only before the pool would grow, not on every miss.
    fn find_cached(
        &mut self,
        class: usize,
        size: usize,
        rounded: usize,
        align: usize,
    ) -> Option<(u32, usize)> {
        // Under the cap a large block is a whole segment of its own, reused only by a
        // request it fits snugly (see `grow`); small blocks take any fit.
        let snug = self.limits.max_overhead.map_or(usize::MAX, |overhead| {
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
        let crossing = self.limits.max_overhead.is_some();
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
        if self.parked_count == 0 {
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
            (Some(f), Some((bin, at)))
                if self.nodes[f as usize].size
                    <= self.nodes[self.parked[class][bin].nodes[at] as usize].size =>
            {
                Some(f)
            }
            (_, Some((bin, at))) => {
                let node = self.parked[class][bin].nodes.remove(at);
                self.parked_count -= 1;
                Some(self.merge_free(node))
            }
            (free, None) => free,
        }
    }

    /// Best fit among the parked blocks of `class`: the first block, most recently
    /// parked first, of the smallest bin at least `rounded` large that holds `rounded`
    /// bytes at `align` and is at most `max_size` large; its bin and position.
    fn find_parked(
        &self,
        class: usize,
        rounded: usize,
        align: usize,
        max_size: usize,
    ) -> Option<(usize, usize)> {
        if self.parked_count == 0 {
            return None;
        }
        let bins = &self.parked[class];
        let from = bins.partition_point(|b| b.size < rounded);
        let mut budget = MAX_CANDIDATES;
        for (i, bin) in bins.iter().enumerate().skip(from) {
            if bin.size > max_size {
                return None;
            }
            for (at, &node) in bin.nodes.iter().enumerate().rev() {
                if self.fits(node, rounded, align, max_size) {
                    return Some((i, at));
                }
                budget -= 1;
                if budget == 0 {
                    return None;
                }
            }
        }
        None
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
        if self.parked_count == 0 {
            return;
        }
        for class in 0..self.parked.len() {
            let mut bins = std::mem::take(&mut self.parked[class]);
            for bin in &mut bins {
                for node in bin.nodes.drain(..) {
                    self.merge_free(node);
                }
            }
            if bins.len() > MAX_BINS {
                bins.clear();
            }
            // Keep the bins' allocations for the next round of parking.
            self.parked[class] = bins;
        }
        self.parked_count = 0;
    }

    /// Returns every entirely free segment to the backend; the bytes released.
    pub(crate) fn empty_cache(&mut self) -> u64 {
        self.flush_parked();
        let mut released = 0;
        for seg in 0..self.segs.len() as u32 {
            let s = &self.segs[seg as usize];
            if s.live && s.used == 0 {
                released += s.size as u64;
                self.release_segment(seg);
            }
        }
        released
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
            .filter_map(|set| set.last().map(|&(size, _, _)| size as u64))
            .chain(
                self.parked
                    .iter()
                    .flatten()
                    .flat_map(|bin| &bin.nodes)
                    .map(|&n| self.nodes[n as usize].size as u64),
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
                    size: s.size as u64,
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
        let (mut free_blocks, mut parked) = (0usize, 0usize);
        for (i, s) in self.segs.iter().enumerate() {
            if !s.live {
                continue;
            }
            segments += 1;
            reserved += s.size as u64;
            let base = s.base.as_ptr() as usize;
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
                        let in_bin = self.parked[s.class]
                            .iter()
                            .any(|bin| bin.nodes.contains(&at) && n.size >= bin.size);
                        if !in_bin {
                            return Err(format!("segment {i}: parked block {at} in no bin"));
                        }
                        prev_free = false;
                    }
                    State::Free => {
                        if prev_free {
                            return Err(format!(
                                "segment {i}: two adjacent free blocks at {addr:#x}"
                            ));
                        }
                        if !self.free[s.class].contains(&(n.size, n.addr, at)) {
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
            if addr != base + s.size {
                return Err(format!(
                    "segment {i}: blocks cover {} of {} bytes",
                    addr - base,
                    s.size
                ));
            }
            if used != s.used {
                return Err(format!(
                    "segment {i}: {used} blocks in use, counted {}",
                    s.used
                ));
            }
        }
        for bins in &self.parked {
            if !bins.is_sorted_by(|a, b| a.size < b.size) {
                return Err("parked bins out of order".to_owned());
            }
        }
        let binned: usize = self.parked.iter().flatten().map(|b| b.nodes.len()).sum();
        if binned != parked || binned != self.parked_count {
            return Err(format!(
                "{binned} blocks in bins, {parked} parked blocks, {} counted",
                self.parked_count
            ));
        }
        let indexed: usize = self.free.iter().map(BTreeSet::len).sum();
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
        let mut candidates = self.free[class].range((rounded, 0, 0)..=(max_size, usize::MAX, NONE));
        if align <= MIN_BLOCK {
            return candidates.next().map(|&(_, _, node)| node);
        }
        // Blocks start at multiples of 512 only: look for one with room for the padding.
        // Bounded, so a pathological cache cannot make one allocation scan it all.
        candidates
            .take(MAX_CANDIDATES)
            .find(|&&(_, _, node)| self.fits(node, rounded, align, max_size))
            .map(|&(_, _, node)| node)
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
        let worth = if class & 1 == 0 {
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
        let (addr, size, seg, next) = {
            let n = &self.nodes[node as usize];
            (n.addr, n.size, n.seg, n.next)
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
        });
        if next != NONE {
            self.nodes[next as usize].prev = rest;
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
        }
        let n = &mut self.nodes[node as usize];
        n.size += size;
        n.next = after;
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
        self.free[class].insert((n.size, n.addr, node));
    }

    fn remove_free(&mut self, class: usize, node: u32) {
        let n = &self.nodes[node as usize];
        let removed = self.free[class].remove(&(n.size, n.addr, node));
        debug_assert!(removed, "a free block is indexed");
    }

    /// The segment size for a request: torch's choice (2 MiB small, 20 MiB large, or
    /// the request rounded to 2 MiB from 10 MiB on), or the request rounded to a page
    /// when that would take the reservation over the overhead cap or the limit.
    fn grow(
        &mut self,
        class: usize,
        size: usize,
        rounded: usize,
        align: usize,
    ) -> Result<u32, PoolError> {
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
                    self.release_free(over, None);
                }
            }
        }
        let oom = |arena: &mut Self, limit: u64| {
            arena.stats.ooms += 1;
            log::debug!("pool out of memory: {size} bytes requested, limit {limit}");
            PoolError::OutOfMemory {
                requested: size as u64,
                limit,
                reserved: arena.stats.reserved.current,
                allocated: arena.stats.allocated.current,
            }
        };
        if let Some(limit) = self.limits.limit {
            if reserved(self) + seg_size as u64 > limit {
                seg_size = exact;
            }
            if reserved(self) + seg_size as u64 > limit {
                self.stats.alloc_retries += 1;
                let over = reserved(self) + seg_size as u64 - limit;
                self.release_free(over, None);
                if reserved(self) + seg_size as u64 > limit {
                    return Err(oom(self, limit));
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
                    None => return Err(oom(self, self.limits.limit.unwrap_or(u64::MAX))),
                }
            }
        };
        let pinned = class & 2 == 2;
        if pinned && let Err(source) = self.backend.lock(base, seg_size) {
            // SAFETY: `base` came from this backend's `allocate` with these arguments just
            // now and was handed to nobody.
            unsafe { self.backend.deallocate(base, seg_size, seg_align) };
            return Err(PoolError::PinFailed {
                bytes: seg_size as u64,
                memlock_limit: backend::memlock_limit(),
                source,
            });
        }
        let seg = match self.vacant_segs.pop() {
            Some(seg) => seg,
            None => {
                self.segs.push(Seg {
                    base,
                    size: 0,
                    align: 0,
                    class: 0,
                    used: 0,
                    head: NONE,
                    live: false,
                });
                (self.segs.len() - 1) as u32
            }
        };
        let head = self.new_node(Node {
            addr: base.as_ptr() as usize,
            size: seg_size,
            requested: 0,
            seg,
            prev: NONE,
            next: NONE,
            state: State::Free,
            label: None,
        });
        self.segs[seg as usize] = Seg {
            base,
            size: seg_size,
            align: seg_align,
            class,
            used: 0,
            head,
            live: true,
        };
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

    /// Returns entirely free segments until `need` bytes are released or none is left:
    /// `first` if given and free, then the smallest single segment that covers the rest,
    /// else the largest ones first. Returns the bytes released.
    fn release_free(&mut self, need: u64, first: Option<u32>) -> u64 {
        let mut released = 0u64;
        if let Some(seg) = first
            && self.segs[seg as usize].live
            && self.segs[seg as usize].used == 0
        {
            released += self.segs[seg as usize].size as u64;
            self.release_segment(seg);
        }
        while released < need {
            let missing = need - released;
            let candidates = self
                .segs
                .iter()
                .enumerate()
                .filter(|(_, s)| s.live && s.used == 0)
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

    fn release_segment(&mut self, seg: u32) {
        let (base, size, align, class, head) = {
            let s = &self.segs[seg as usize];
            debug_assert!(s.live && s.used == 0, "only free segments are released");
            (s.base, s.size, s.align, s.class, s.head)
        };
        self.remove_free(class, head);
        self.nodes[head as usize].state = State::Vacant;
        self.vacant.push(head);
        self.segs[seg as usize].live = false;
        self.vacant_segs.push(seg);
        let pinned = class & 2 == 2;
        if pinned {
            self.backend.unlock(base, size);
        }
        // SAFETY: the segment came from this backend's `allocate` with this size and
        // alignment, no block of it is handed out (`used == 0`), and it is now forgotten.
        unsafe { self.backend.deallocate(base, size, align) };
        let s = &mut self.stats;
        s.segment_frees += 1;
        s.reserved.sub(size as u64);
        s.segments.sub(1);
        if pinned {
            s.pinned_reserved.sub(size as u64);
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

    fn record_segment(&self, kind: EventKind, seg: u32) {
        if let Some(profiler) = &self.profiler
            && profiler.is_recording()
        {
            let s = &self.segs[seg as usize];
            profiler.record(Event {
                kind,
                addr: s.base.as_ptr() as usize,
                size: s.size as u64,
                requested: 0,
                label: None,
                allocated: self.stats.allocated.current,
                reserved: self.stats.reserved.current,
            });
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // Blocks borrow or co-own the pool, so none is live when the arena drops.
        let released = self.empty_cache();
        if self.stats.segments.current > 0 {
            log::error!(
                "memory pool dropped with {} live blocks; their segments are leaked",
                self.stats.active_blocks.current
            );
        }
        log::trace!("memory pool dropped, {released} bytes returned");
    }
}
