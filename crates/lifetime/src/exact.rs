//! The exact placement search: branch and bound over canonical layouts.
//!
//! The question it answers is a decision: given a capacity, is there a layout of
//! every record whose top stays within it? [`decide`] answers it with a layout, a
//! proof that none exists, or "out of budget"; [`minimize`] turns a series of such
//! questions into an anytime optimisation.
//!
//! # Canonical layouts
//!
//! Drop every buffer of a valid layout as far down as it goes: each then rests on
//! offset 0 or on the top of a buffer it overlaps in time, and the layout is still
//! valid and no taller. In such a layout a buffer's offset is its *minimum offset*:
//! the highest top among the buffers below it that it overlaps. The search builds
//! layouts bottom up, one offset *level* at a time, and only ever puts a buffer at
//! its minimum offset, so it only meets layouts of this kind.
//!
//! # Branching: one level at a time, the tightest section first
//!
//! Buffers that start at the same offset never overlap in time, so what has to be
//! decided at a level is a set, not an order, and a set is an exact-cover question
//! over time: for each section (a maximal run of steps over which the set of live
//! buffers does not change) whose floor is at this level, which buffer starts
//! there, if any? The search decides the open section with the fewest buffers that
//! can start there (a section with no byte to spare first, since it must be
//! covered), branching on each of them and, where the section can spare the bytes,
//! on leaving it empty at this level. When nothing more can start at the level it
//! moves up to the next minimum offset. Each layout is reached on exactly one path.
//! Choosing the most constrained section first is what exact-cover solvers do
//! (Knuth's Algorithm X); it is what lets the search fit a compiler's instance at
//! its lower bound in milliseconds where trying buffers in a fixed order takes
//! seconds.
//!
//! # Pruning
//!
//! Each section keeps a *floor* (nothing more can go below it: the top of the
//! highest buffer placed there, raised to the lowest minimum offset of the buffers
//! still waiting there) and the total size of the buffers still waiting there,
//! which all have to be stacked above the floor and above the current level (one
//! byte above it where the section was left empty at this level). A partial layout
//! whose floor plus waiting total passes the capacity in any section is dropped.
//!
//! - **Dominance.** No level at or above the top that a waiting buffer would have at
//!   its own minimum offset: that buffer would fit in the gap underneath and could be
//!   moved down into it, a layout with smaller offsets that another path reaches.
//! - **Decomposition.** When no waiting buffer spans the boundary between two
//!   sections, the two sides no longer interact: each is solved on its own, so the
//!   search is a sum over the sides instead of a product.
//! - **Twins.** Buffers of the same size over the same sections are interchangeable;
//!   they go in rank order.
//! - **Stuck buffers.** A candidate that no waiting buffer overlaps can never be
//!   lifted, so its section cannot be left empty.
//!
//! The floors and waiting totals per section, the dominance rule and the
//! decomposition into time windows are from MiniMalloc (Moffitt, ASPLOS 2023),
//! which branches on the next buffer in a fixed order instead. The level
//! formulation with the most constrained section first, the restart schedule and
//! the optimisation driver are ours.
//!
//! # Candidate order and restarts
//!
//! Within a section, candidates are tried in a static rank order (the buffers of
//! the most crowded sections first, then by area, then by length: MiniMalloc's
//! three orders and two of ours). A wrong early choice in a depth-first search can
//! cost exponential time, so the search runs as a series of restarts with node
//! limits following the Luby sequence, each with the next rank order, and from the
//! sixth on with its first key perturbed by a seeded factor. The budget is counted
//! in work units (nodes and the sections and neighbours they touch), never in time,
//! so the outcome depends only on the input; a wall-clock cap is a safety net.

use std::time::{Duration, Instant};

use crate::place::{Record, arena_of, overlap_lists};
use crate::rng::SplitMix64;

/// No offset yet.
const UNPLACED: u64 = u64::MAX;

/// No section left empty (in `Solver::empty`).
const NO_LEVEL: u64 = u64::MAX;

/// A record without twins (in `Instance::twin_group`).
const NO_GROUP: u32 = u32::MAX;

/// Work accounting for the exact stage of one planning call.
#[derive(Debug)]
pub(crate) struct Meter {
    /// Work units spent.
    pub(crate) work: u64,
    /// Work units allowed.
    pub(crate) limit: u64,
    started: Instant,
    time_cap: Duration,
    /// Set once the time cap stopped a search.
    pub(crate) timed_out: bool,
    polls: u32,
}

impl Meter {
    pub(crate) fn new(limit: u64, started: Instant, time_cap: Duration) -> Self {
        Self {
            work: 0,
            limit,
            started,
            time_cap,
            timed_out: false,
            polls: 0,
        }
    }

    /// Spends `units`; false once the budget or the time cap is exhausted.
    fn spend(&mut self, units: u64) -> bool {
        self.work = self.work.saturating_add(units);
        if self.work >= self.limit || self.timed_out {
            return false;
        }
        self.polls += 1;
        if self.polls >= 256 {
            self.polls = 0;
            if self.started.elapsed() > self.time_cap {
                self.timed_out = true;
                return false;
            }
        }
        true
    }

    pub(crate) fn left(&self) -> u64 {
        self.limit.saturating_sub(self.work)
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.timed_out || self.work >= self.limit
    }
}

/// The answer to "is there a layout within this capacity?".
#[derive(Debug)]
pub(crate) enum Decision {
    /// A layout within the capacity: one offset per record.
    Found(Vec<u64>),
    /// The search was exhausted: no layout fits.
    Infeasible,
    /// The budget ran out first.
    Unknown,
}

/// The records as the search sees them: sections, overlap lists, static ranks.
struct Instance<'a> {
    records: &'a [Record],
    align: u64,
    /// Buffers with a size, the only ones the search places.
    active: Vec<u32>,
    /// Sections each record covers: `[sec_lo, sec_hi)`.
    sec_lo: Vec<u32>,
    sec_hi: Vec<u32>,
    /// Overlapping non-empty records of record `i`: `nbr[nbr_start[i]..nbr_start[i+1]]`.
    nbr_start: Vec<usize>,
    nbr: Vec<u32>,
    /// Records covering section `s`: `members[mem_start[s]..mem_start[s+1]]`.
    mem_start: Vec<usize>,
    members: Vec<u32>,
    sections: usize,
    /// Per record, the keys rank orders sort by (see [`Instance::rank_keys`]).
    keys: Vec<[u64; 5]>,
    /// Twins (records of the same size over the same sections): record `i`'s group
    /// in `twins`, or [`NO_GROUP`] when it has no twin.
    twin_group: Vec<u32>,
    twins: Vec<Vec<u32>>,
}

impl<'a> Instance<'a> {
    /// `records` have dense steps (see `compress_steps`).
    /// `spans[i]` is record `i`'s length in the caller's time units (for the area).
    fn new(records: &'a [Record], spans: &[u64], align: u64) -> Self {
        let n = records.len();
        let active: Vec<u32> = (0..n as u32)
            .filter(|&i| records[i as usize].bytes > 0)
            .collect();
        // Section boundaries: every first step and every step after a last step.
        let mut bounds: Vec<usize> = active
            .iter()
            .flat_map(|&i| {
                let r = records[i as usize];
                [r.first, r.last + 1]
            })
            .collect();
        bounds.sort_unstable();
        bounds.dedup();
        let index = |step: usize| bounds.partition_point(|&b| b < step) as u32;
        let mut sec_lo = vec![0u32; n];
        let mut sec_hi = vec![0u32; n];
        for &i in &active {
            let r = records[i as usize];
            sec_lo[i as usize] = index(r.first);
            sec_hi[i as usize] = index(r.last + 1);
        }
        let sections = bounds.len().saturating_sub(1);

        let mut count = vec![0usize; sections + 1];
        for &i in &active {
            for s in sec_lo[i as usize]..sec_hi[i as usize] {
                count[s as usize] += 1;
            }
        }
        let mut mem_start = vec![0usize; sections + 1];
        for s in 0..sections {
            mem_start[s + 1] = mem_start[s] + count[s];
        }
        let mut fill = mem_start.clone();
        let mut members = vec![0u32; mem_start[sections]];
        for &i in &active {
            for s in sec_lo[i as usize]..sec_hi[i as usize] {
                members[fill[s as usize]] = i;
                fill[s as usize] += 1;
            }
        }

        let (nbr_start, nbr) = overlap_lists(records);

        let mut inst = Self {
            records,
            align,
            active,
            sec_lo,
            sec_hi,
            nbr_start,
            nbr,
            mem_start,
            members,
            sections,
            keys: Vec::new(),
            twin_group: Vec::new(),
            twins: Vec::new(),
        };
        inst.keys = inst.rank_keys(spans);
        (inst.twin_group, inst.twins) = inst.twin_groups();
        inst
    }

    /// Groups of two or more records of the same size over the same sections.
    fn twin_groups(&self) -> (Vec<u32>, Vec<Vec<u32>>) {
        let key = |i: u32| {
            let i = i as usize;
            (self.sec_lo[i], self.sec_hi[i], self.records[i].bytes)
        };
        let mut sorted = self.active.clone();
        sorted.sort_unstable_by_key(|&i| (key(i), i));
        let mut group = vec![NO_GROUP; self.records.len()];
        let mut twins = Vec::new();
        for members in sorted.chunk_by(|&a, &b| key(a) == key(b)) {
            if members.len() > 1 {
                for &i in members {
                    group[i as usize] = twins.len() as u32;
                }
                twins.push(members.to_vec());
            }
        }
        (group, twins)
    }

    fn neighbours(&self, i: usize) -> &[u32] {
        &self.nbr[self.nbr_start[i]..self.nbr_start[i + 1]]
    }

    fn section(&self, s: usize) -> &[u32] {
        &self.members[self.mem_start[s]..self.mem_start[s + 1]]
    }

    /// The keys the rank orders sort by, per record, all descending: the largest
    /// total of any section the record is in (`T`), its area in the caller's time
    /// units (`A`), its length in those units (`W`), the number of sections it spans
    /// (`C`), its size (`Z`).
    fn rank_keys(&self, spans: &[u64]) -> Vec<[u64; 5]> {
        let mut total = vec![0u64; self.sections];
        for &i in &self.active {
            for s in self.sec_lo[i as usize]..self.sec_hi[i as usize] {
                total[s as usize] += self.records[i as usize].bytes;
            }
        }
        (0..self.records.len())
            .map(|i| {
                let r = self.records[i];
                let t = (self.sec_lo[i]..self.sec_hi[i])
                    .map(|s| total[s as usize])
                    .max()
                    .unwrap_or(0);
                [
                    t,
                    r.bytes.saturating_mul(spans[i]),
                    spans[i],
                    u64::from(self.sec_hi[i] - self.sec_lo[i]),
                    r.bytes,
                ]
            })
            .collect()
    }

    /// The rank of every record (0 first) for restart `restart`. The first
    /// [`ORDERS`] restarts use the orders as they are; later ones perturb each
    /// record's first key by up to a quarter, seeded by the restart, so each restart
    /// explores a different part of the tree (the classic cure for the heavy tail
    /// of depth-first search).
    fn rank(&self, restart: u64) -> Vec<u32> {
        let keys = ORDERS[(restart % ORDERS.len() as u64) as usize];
        let mut rng = SplitMix64::new(restart.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let first: Vec<u64> = self
            .keys
            .iter()
            .map(|k| {
                let key = k[keys[0]];
                if restart < ORDERS.len() as u64 {
                    key
                } else {
                    let factor = 768 + rng.below(513) as u128;
                    u64::try_from((u128::from(key) * factor) >> 10).unwrap_or(u64::MAX)
                }
            })
            .collect();
        let mut order = self.active.clone();
        order.sort_by(|&a, &b| {
            let (ka, kb) = (&self.keys[a as usize], &self.keys[b as usize]);
            first[b as usize]
                .cmp(&first[a as usize])
                .then(kb[keys[1]].cmp(&ka[keys[1]]))
                .then(kb[keys[2]].cmp(&ka[keys[2]]))
                .then(a.cmp(&b))
        });
        let mut rank = vec![u32::MAX; self.records.len()];
        for (pos, &i) in order.iter().enumerate() {
            rank[i as usize] = pos as u32;
        }
        rank
    }
}

/// Key indices into [`Instance::rank_keys`]: `T`, `A`, `W`, `C`, `Z`.
const T: usize = 0;
const A: usize = 1;
const W: usize = 2;
const C: usize = 3;
const Z: usize = 4;

/// The rank orders restarts cycle through: MiniMalloc's three (`WAT`, `TAW`, `TWA`)
/// and two of ours.
const ORDERS: [[usize; 3]; 5] = [[W, A, T], [T, A, W], [T, W, A], [T, A, C], [Z, T, C]];

/// The Luby sequence (1, 1, 2, 1, 1, 2, 4, ...) at `i` (from 1): restart `i` gets
/// this many times the base node limit.
fn luby(mut i: u64) -> u64 {
    loop {
        let mut k = 1u32;
        while (1u64 << k) - 1 < i {
            k += 1;
        }
        if (1u64 << k) - 1 == i {
            return 1u64 << (k - 1);
        }
        i -= (1u64 << (k - 1)) - 1;
    }
}

/// A time window solved on its own: sections `[lo, hi)` and the waiting records in it.
struct Partition {
    lo: u32,
    hi: u32,
    buffers: Vec<u32>,
}

/// Why a search stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Found,
    NotFound,
    /// The restart's node limit.
    NodeLimit,
    /// The whole budget or the time cap.
    Budget,
}

struct Solver<'i, 'a, 'm> {
    inst: &'i Instance<'a>,
    capacity: u64,
    rank: Vec<u32>,
    /// Offsets on the current path ([`UNPLACED`] for waiting records).
    offset: Vec<u64>,
    /// Every placement's offset as it is made, never undone: when the search
    /// succeeds, the successful path was the last to write each of its records.
    solution: Vec<u64>,
    min_off: Vec<u64>,
    floor: Vec<u64>,
    waiting: Vec<u64>,
    /// Waiting records spanning the boundary after section `s`.
    cuts: Vec<u32>,
    trail_min: Vec<(u32, u64)>,
    trail_floor: Vec<(u32, u64)>,
    /// Sections whose waiting records' minimum offsets changed (stamp == epoch).
    stamp: Vec<u64>,
    epoch: u64,
    touched: Vec<u32>,
    /// `empty[s] == level`: no record starts at `level` in section `s` (a branch's
    /// decision).
    empty: Vec<u64>,
    /// Scratch: eligible covers per section.
    covers: Vec<u32>,
    /// Each twin group in rank order, and how many of it are placed.
    twin_order: Vec<Vec<u32>>,
    twin_next: Vec<u32>,
    nodes_left: u64,
    meter: &'m mut Meter,
}

impl Solver<'_, '_, '_> {
    fn align_up(&self, x: u64) -> u64 {
        let a = self.inst.align;
        x.div_ceil(a) * a
    }

    /// Solves one window on its own: its records no longer interact with the rest.
    /// It starts again from its lowest minimum offset, so records the enclosing
    /// search had passed over may start below its level here. That relaxes the one
    /// path per layout rule (a layout may be reached twice) but loses none, and in
    /// practice finds layouts sooner: on the planner's random graphs, restarting at
    /// the enclosing level instead missed the lower bound on one graph in a
    /// thousand within the default budget.
    fn solve(&mut self, part: &Partition) -> Outcome {
        let level = part
            .buffers
            .iter()
            .filter(|&&b| self.offset[b as usize] == UNPLACED)
            .map(|&b| self.min_off[b as usize])
            .min()
            .unwrap_or(0);
        self.search_level(part, level)
    }

    /// The search one offset at a time. At `level`, the records that can start
    /// there are those whose minimum offset is `level` (none of whose sections was
    /// left empty at this level). Records at the same offset never overlap in time,
    /// so what is decided at a level is a set, not an order: the search picks the
    /// open section with the fewest such records (sections with no room to skip
    /// this level first) and branches on which of them starts there, or, where the
    /// section has the room, on leaving it empty at this level. When no record can
    /// start at `level`, it moves up to the next minimum offset. Within a window
    /// levels only rise, and every layout pushed down as far as it goes is reached
    /// on exactly one path. Recursion is once per placement: moving up a level and
    /// leaving a section empty loop here.
    fn search_level(&mut self, part: &Partition, mut level: u64) -> Outcome {
        // Sections left empty on this frame, with what `empty` held before.
        let mut emptied: Vec<(u32, u64)> = Vec::new();
        let outcome = 'node: loop {
            if self.nodes_left == 0 {
                break Outcome::NodeLimit;
            }
            self.nodes_left -= 1;
            if !self.meter.spend(1 + part.buffers.len() as u64) {
                break Outcome::Budget;
            }
            let mut eligible: Vec<u32> = Vec::new();
            let mut any = false;
            let mut min_height = u64::MAX;
            let mut next = u64::MAX;
            for &b in &part.buffers {
                let bi = b as usize;
                if self.offset[bi] != UNPLACED {
                    continue;
                }
                any = true;
                let m = self.min_off[bi];
                min_height = min_height.min(m + self.inst.records[bi].bytes);
                if m == level {
                    let (lo, hi) = (self.inst.sec_lo[bi], self.inst.sec_hi[bi]);
                    if (lo..hi).all(|s| self.empty[s as usize] != level) && self.twin_turn(b) {
                        eligible.push(b);
                    }
                } else if m > level {
                    next = next.min(m);
                }
            }
            if !any {
                break Outcome::Found;
            }
            if min_height <= level {
                // A waiting record fits wholly below this level, where it could be
                // moved down to: the layouts of this branch are dominated.
                break Outcome::NotFound;
            }
            if eligible.is_empty() {
                if next == u64::MAX || !self.fits(part, next) {
                    break Outcome::NotFound;
                }
                level = next;
                continue;
            }
            // Eligible covers per section; the open section to decide.
            for &b in &eligible {
                for s in self.inst.sec_lo[b as usize]..self.inst.sec_hi[b as usize] {
                    self.covers[s as usize] += 1;
                }
            }
            let skip = level.saturating_add(self.inst.align);
            let mut choice: Option<(bool, u32, u32)> = None;
            let mut dead = false;
            for s in part.lo..part.hi {
                let si = s as usize;
                let c = self.covers[si];
                self.covers[si] = 0;
                if dead
                    || self.waiting[si] == 0
                    || self.floor[si] > level
                    || self.empty[si] == level
                {
                    continue;
                }
                // No room to skip this level: something must start here.
                let tight = skip.saturating_add(self.waiting[si]) > self.capacity;
                if c == 0 {
                    dead |= tight;
                    continue;
                }
                let key = (!tight, c, s);
                if choice.is_none_or(|k| key < k) {
                    choice = Some(key);
                }
            }
            self.meter.work = self.meter.work.saturating_add(u64::from(part.hi - part.lo));
            if dead {
                break Outcome::NotFound;
            }
            let Some((loose, _, s)) = choice else {
                break Outcome::NotFound;
            };
            let mut cands: Vec<(u32, u32)> = eligible
                .iter()
                .copied()
                .filter(|&b| self.inst.sec_lo[b as usize] <= s && s < self.inst.sec_hi[b as usize])
                .map(|b| (self.rank[b as usize], b))
                .collect();
            cands.sort_unstable();
            // A candidate that no waiting record overlaps can never be lifted, so it
            // goes here or nowhere: then the section cannot be left empty.
            let mut stuck = false;
            for &(_, b) in &cands {
                let size = self.inst.records[b as usize].bytes;
                if level + size > self.capacity {
                    continue;
                }
                let marks = (self.trail_min.len(), self.trail_floor.len());
                stuck |= self.place(b, level);
                let mut outcome = Outcome::NotFound;
                if self.fits(part, level) {
                    outcome = self.split_or_descend(part, b, level);
                }
                self.unplace(b, marks);
                if outcome != Outcome::NotFound {
                    break 'node outcome;
                }
            }
            if !loose || stuck {
                break Outcome::NotFound;
            }
            // Leave section `s` empty at this level, and decide the next one.
            emptied.push((s, self.empty[s as usize]));
            self.empty[s as usize] = level;
            if !self.fits(part, level) {
                break Outcome::NotFound;
            }
        };
        for &(s, before) in emptied.iter().rev() {
            self.empty[s as usize] = before;
        }
        outcome
    }

    /// Every section of the window can take what waits there above its floor, and
    /// above `level` (levels only rise within a window), and above the next aligned
    /// offset where the section was left empty at `level`.
    fn fits(&mut self, part: &Partition, level: u64) -> bool {
        self.meter.work = self.meter.work.saturating_add(u64::from(part.hi - part.lo));
        (part.lo..part.hi).all(|s| {
            let s = s as usize;
            let waiting = self.waiting[s];
            if waiting == 0 {
                return true;
            }
            let mut floor = self.floor[s].max(level);
            if self.empty[s] == level && self.floor[s] <= level {
                floor = level.saturating_add(self.inst.align);
            }
            floor.saturating_add(waiting) <= self.capacity
        })
    }

    /// Whether it is `b`'s turn among its twins. Twins are interchangeable, so a
    /// layout with them in one order has a twin layout with them in another; the
    /// search keeps the one where they are placed in rank order, which makes the
    /// placed twins of a group a prefix of its rank order (`twin_next` long).
    fn twin_turn(&self, b: u32) -> bool {
        let g = self.inst.twin_group[b as usize];
        g == NO_GROUP || self.twin_order[g as usize][self.twin_next[g as usize] as usize] == b
    }

    /// After placing `b`: go on in this partition, or, when `b` was the last
    /// waiting record over some boundary, solve the sides one by one.
    fn split_or_descend(&mut self, part: &Partition, b: u32, level: u64) -> Outcome {
        let (lo, hi) = (self.inst.sec_lo[b as usize], self.inst.sec_hi[b as usize]);
        let mut cutpoints = Vec::new();
        for s in lo..hi.saturating_sub(1) {
            self.cuts[s as usize] -= 1;
            if self.cuts[s as usize] == 0 && s >= part.lo && s + 1 < part.hi {
                cutpoints.push(s + 1);
            }
        }
        let outcome = if cutpoints.is_empty() {
            self.search_level(part, level)
        } else {
            let mut outcome = Outcome::Found;
            let mut start = part.lo;
            cutpoints.push(part.hi);
            for &end in &cutpoints {
                let buffers: Vec<u32> = part
                    .buffers
                    .iter()
                    .copied()
                    .filter(|&x| {
                        self.offset[x as usize] == UNPLACED
                            && self.inst.sec_lo[x as usize] < end
                            && start < self.inst.sec_hi[x as usize]
                    })
                    .collect();
                let sub = Partition {
                    lo: start,
                    hi: end,
                    buffers,
                };
                start = end;
                if sub.buffers.is_empty() {
                    continue;
                }
                outcome = self.solve(&sub);
                if outcome != Outcome::Found {
                    break;
                }
            }
            outcome
        };
        for s in lo..hi.saturating_sub(1) {
            self.cuts[s as usize] += 1;
        }
        outcome
    }

    /// Places `b` at `o` and propagates; true when no waiting record overlaps `b`.
    fn place(&mut self, b: u32, o: u64) -> bool {
        let inst = self.inst;
        let bi = b as usize;
        let size = inst.records[bi].bytes;
        self.offset[bi] = o;
        self.solution[bi] = o;
        let group = inst.twin_group[bi];
        if group != NO_GROUP {
            self.twin_next[group as usize] += 1;
        }
        let top = o + size;
        let raised = self.align_up(top);
        self.epoch += 1;
        self.touched.clear();
        for s in inst.sec_lo[bi]..inst.sec_hi[bi] {
            let si = s as usize;
            self.trail_floor.push((s, self.floor[si]));
            self.floor[si] = top;
            self.waiting[si] -= size;
            self.stamp[si] = self.epoch;
            self.touched.push(s);
        }
        let nbrs = inst.neighbours(bi);
        let mut hatless = true;
        for &u in nbrs {
            let ui = u as usize;
            if self.offset[ui] != UNPLACED {
                continue;
            }
            hatless = false;
            let old = self.min_off[ui];
            if old >= raised {
                continue;
            }
            self.trail_min.push((u, old));
            self.min_off[ui] = raised;
            // A section's floor is the lowest minimum offset waiting there: only a
            // section where `u` was at that lowest value can see its floor rise.
            for s in inst.sec_lo[ui]..inst.sec_hi[ui] {
                let si = s as usize;
                if old <= self.floor[si] && self.stamp[si] != self.epoch {
                    self.stamp[si] = self.epoch;
                    self.touched.push(s);
                }
            }
        }
        // A section's floor is at least the lowest minimum offset of what waits there.
        let mut units = nbrs.len() as u64 + u64::from(inst.sec_hi[bi] - inst.sec_lo[bi]);
        for k in 0..self.touched.len() {
            let si = self.touched[k] as usize;
            let members = inst.section(si);
            units += members.len() as u64;
            let lowest = members
                .iter()
                .filter(|&&x| self.offset[x as usize] == UNPLACED)
                .map(|&x| self.min_off[x as usize])
                .min();
            if let Some(lowest) = lowest
                && self.floor[si] < lowest
            {
                self.trail_floor.push((si as u32, self.floor[si]));
                self.floor[si] = lowest;
            }
        }
        self.meter.work = self.meter.work.saturating_add(units);
        hatless
    }

    fn unplace(&mut self, b: u32, (min_mark, floor_mark): (usize, usize)) {
        let bi = b as usize;
        let size = self.inst.records[bi].bytes;
        let group = self.inst.twin_group[bi];
        if group != NO_GROUP {
            self.twin_next[group as usize] -= 1;
        }
        while self.trail_floor.len() > floor_mark {
            let (s, f) = self.trail_floor.pop().expect("above the mark");
            self.floor[s as usize] = f;
        }
        while self.trail_min.len() > min_mark {
            let (u, m) = self.trail_min.pop().expect("above the mark");
            self.min_off[u as usize] = m;
        }
        for s in self.inst.sec_lo[bi]..self.inst.sec_hi[bi] {
            self.waiting[s as usize] += size;
        }

        self.offset[bi] = UNPLACED;
    }
}

/// Runs `f` on a thread whose stack fits a search `depth` placements deep (the
/// search recurses once per placement). `None` when the thread cannot be made; a
/// panic in `f` is resumed here.
pub(crate) fn with_stack<R: Send>(depth: usize, f: impl FnOnce() -> R + Send) -> Option<R> {
    // About 200 bytes per frame in a release build, ten times that in a debug one.
    let size = (8 << 20).max(depth.saturating_mul(4 << 10));
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("memwarden-exact".to_owned())
            .stack_size(size)
            .spawn_scoped(scope, f)
        {
            Ok(handle) => match handle.join() {
                Ok(r) => Some(r),
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(e) => {
                log::warn!("exact search: cannot start its thread ({e}); skipped");
                None
            }
        }
    })
}

/// Is there a layout of `records` (dense steps) within `capacity` bytes? Offsets are
/// multiples of `align`.
fn decide(
    records: &[Record],
    spans: &[u64],
    align: u64,
    capacity: u64,
    meter: &mut Meter,
) -> Decision {
    let inst = Instance::new(records, spans, align);
    decide_on(&inst, capacity, meter)
}

fn decide_on(inst: &Instance<'_>, capacity: u64, meter: &mut Meter) -> Decision {
    let n = inst.records.len();
    if inst.active.is_empty() {
        return Decision::Found(vec![0; n]);
    }
    let mut waiting = vec![0u64; inst.sections];
    for &i in &inst.active {
        for s in inst.sec_lo[i as usize]..inst.sec_hi[i as usize] {
            waiting[s as usize] += inst.records[i as usize].bytes;
        }
    }
    if waiting.iter().any(|&w| w > capacity) {
        return Decision::Infeasible;
    }
    let mut cuts = vec![0u32; inst.sections];
    for &i in &inst.active {
        for s in inst.sec_lo[i as usize]..inst.sec_hi[i as usize].saturating_sub(1) {
            cuts[s as usize] += 1;
        }
    }
    // The independent windows to begin with.
    let mut parts = Vec::new();
    let mut start = 0u32;
    for s in 0..inst.sections as u32 {
        if s + 1 == inst.sections as u32 || cuts[s as usize] == 0 {
            parts.push((start, s + 1));
            start = s + 1;
        }
    }
    let parts: Vec<Partition> = parts
        .into_iter()
        .map(|(lo, hi)| Partition {
            lo,
            hi,
            buffers: inst
                .active
                .iter()
                .copied()
                .filter(|&x| inst.sec_lo[x as usize] < hi && lo < inst.sec_hi[x as usize])
                .collect(),
        })
        .filter(|p| !p.buffers.is_empty())
        .collect();

    let base = 2 * (inst.active.len() as u64).max(8);
    let mut restart = 0u64;
    loop {
        let rank = inst.rank(restart);
        let twin_order = inst
            .twins
            .iter()
            .map(|g| {
                let mut g = g.clone();
                g.sort_unstable_by_key(|&i| rank[i as usize]);
                g
            })
            .collect();
        let mut solver = Solver {
            inst,
            capacity,
            rank,
            offset: vec![UNPLACED; n],
            solution: vec![0; n],
            min_off: vec![0; n],
            floor: vec![0; inst.sections],
            waiting: waiting.clone(),
            cuts: cuts.clone(),
            trail_min: Vec::new(),
            trail_floor: Vec::new(),
            stamp: vec![0; inst.sections],
            epoch: 0,
            touched: Vec::new(),
            empty: vec![NO_LEVEL; inst.sections],
            covers: vec![0; inst.sections],
            twin_order,
            twin_next: vec![0; inst.twins.len()],
            nodes_left: base.saturating_mul(luby(restart + 1)),
            meter,
        };
        let mut outcome = Outcome::Found;
        for part in &parts {
            outcome = solver.solve(part);
            if outcome != Outcome::Found {
                break;
            }
        }
        match outcome {
            // Records without bytes were never placed: their offset stays 0.
            Outcome::Found => return Decision::Found(solver.solution),
            Outcome::NotFound => return Decision::Infeasible,
            Outcome::Budget => return Decision::Unknown,
            Outcome::NodeLimit => restart += 1,
        }
    }
}

/// What [`improve`] found.
#[derive(Debug)]
pub(crate) struct Improved {
    /// A better layout than the incumbent (within the capacity, when one was given).
    pub(crate) offsets: Option<Vec<u64>>,
    /// The search proved that no layout is smaller than the best one (the
    /// incumbent or `offsets`).
    pub(crate) optimal: bool,
    /// No layout within the capacity exists.
    pub(crate) infeasible: bool,
}

/// The exact stage of a planner: with a capacity, [`decide`] it; without one,
/// [`minimize`] from the incumbent `(offsets, top)` towards `lower`, a proven lower
/// bound.
pub(crate) fn improve(
    records: &[Record],
    spans: &[u64],
    align: u64,
    capacity: Option<u64>,
    (incumbent, top): (&[u64], u64),
    lower: u64,
    meter: &mut Meter,
) -> Improved {
    match capacity {
        Some(capacity) => match decide(records, spans, align, capacity, meter) {
            // Whether it meets the lower bound is the caller's to see.
            Decision::Found(offsets) => Improved {
                offsets: Some(offsets),
                optimal: false,
                infeasible: false,
            },
            Decision::Infeasible => Improved {
                offsets: None,
                optimal: false,
                infeasible: true,
            },
            Decision::Unknown => Improved {
                offsets: None,
                optimal: false,
                infeasible: false,
            },
        },
        None => {
            let m = minimize(records, spans, align, incumbent.to_vec(), top, lower, meter);
            Improved {
                offsets: (m.top < top).then_some(m.offsets),
                optimal: m.optimal,
                infeasible: false,
            }
        }
    }
}

/// The outcome of [`minimize`].
#[derive(Debug)]
pub(crate) struct Minimized {
    pub(crate) offsets: Vec<u64>,
    pub(crate) top: u64,
    /// No layout is lower than `top` (it met the lower bound, or every lower
    /// capacity was proved infeasible).
    pub(crate) optimal: bool,
}

/// Improves `incumbent` (offsets of height `top`) towards `lower`, a proven lower
/// bound, while the meter allows: first asks for a layout at the bound itself (a
/// quarter of the effort: on compiler-made instances the optimum is usually there),
/// then walks down from the best layout found, asking each time for one a step
/// lower, the step a quarter of the gap to what is proved impossible, halved when
/// a probe runs out of effort.
fn minimize(
    records: &[Record],
    spans: &[u64],
    align: u64,
    incumbent: Vec<u64>,
    top: u64,
    lower: u64,
    meter: &mut Meter,
) -> Minimized {
    let mut best = Minimized {
        offsets: incumbent,
        top,
        optimal: top <= lower,
    };
    if best.optimal {
        return best;
    }
    let inst = Instance::new(records, spans, align);
    let mut proven = lower;
    let probe = |target: u64, share: u64, meter: &mut Meter| {
        let limit = meter.limit;
        meter.limit = meter.work.saturating_add(share.max(1)).min(limit);
        let decision = decide_on(&inst, target, meter);
        meter.limit = limit;
        decision
    };
    let mut step: Option<u64> = None;
    while proven < best.top && !meter.exhausted() {
        let (target, share) = match step {
            None => (proven, meter.left() / 4),
            Some(step) => (best.top.saturating_sub(step).max(proven), meter.left() / 2),
        };
        match probe(target, share, meter) {
            Decision::Found(offsets) => {
                best.top = arena_of(records, &offsets);
                best.offsets = offsets;
            }
            // Nothing fits within `target`: every lower height is ruled out too.
            Decision::Infeasible => proven = proven.max(target + 1),
            Decision::Unknown => {
                if step == Some(1) {
                    break;
                }
                step = step.map(|s| s / 2);
            }
        }
        if step.is_none() || best.top.saturating_sub(proven) / 4 < step.unwrap_or(0) {
            step = Some((best.top.saturating_sub(proven) / 4).max(1));
        }
    }
    best.optimal = best.top <= proven;
    best
}
