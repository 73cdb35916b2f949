//! Offset planners over [`Record`]s: naive, TFLite's greedy by size and greedy by
//! breadth, and `best` / `exact` (several orders, the exact search of
//! [`crate::exact`], and for `best` a deterministic local search).
//!
//! Every planner here except naive is the same placement rule applied to a different
//! order of the records: take the records one by one; for each, look at the records
//! already placed whose lifetimes overlap it, sorted by offset, and put it in the
//! smallest gap between them that is large enough (the first such gap on a tie),
//! or, when none is, just above the highest of them. That is TFLite's
//! `GreedyBySizeAssignment` rule; greedy by size feeds it the records by size
//! descending (ties in record order), greedy by breadth by step breadth.

use std::time::{Duration, Instant};

use crate::Strategy;
use crate::error::LifetimeError;
use crate::rng::SplitMix64;

/// One buffer to place: its size and its inclusive lifetime in steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// Size in bytes.
    pub bytes: u64,
    /// The first step at which it is live.
    pub first: usize,
    /// The last step at which it is live (inclusive).
    pub last: usize,
}

impl Record {
    /// A record of `bytes` bytes live over `first..=last`.
    pub fn new(bytes: u64, first: usize, last: usize) -> Self {
        Self { bytes, first, last }
    }

    /// Whether the two lifetimes share a step.
    pub fn overlaps(&self, other: &Record) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Offsets for a list of records, as [`plan_records`] returns them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Layout {
    /// One offset per record, in record order; each a multiple of the alignment.
    pub offsets: Vec<u64>,
    /// The arena size: the highest `offset + bytes`.
    pub arena_bytes: u64,
    /// Max over steps of the bytes live at that step: no plan can use less.
    pub lower_bound_bytes: u64,
    /// Sum of the record sizes (what giving every record its own range costs at
    /// alignment 1).
    pub naive_bytes: u64,
    /// Which heuristic produced the offsets: the strategy's own name, or for `best`
    /// the order that won (`greedy-size`, `area`, ...) with `+search` when the local
    /// search improved it.
    pub method: String,
    /// Placements the search evaluated (0 for the baselines).
    pub evaluations: u64,
    /// No layout is smaller: the arena equals the lower bound, or the exact search
    /// proved every smaller height impossible.
    pub optimal: bool,
}

/// How much work [`Strategy::Best`] and [`Strategy::Exact`] may spend, and when they
/// may stop early.
///
/// The search is bounded by `effort`, a count of work units (one unit is one
/// overlapping neighbour or one section looked at while placing a record, or one
/// node of the exact search), so a plan depends only on its input: the same records
/// always give the same offsets. `time_cap` is a safety net for slow machines and
/// huge inputs only: when it trips first the result depends on the machine's speed,
/// and a `log::warn!` says so. The default
/// effort takes about 10 ms in a release build, well inside the default 100 ms cap;
/// a debug build is 10 to 20 times slower, so tests that check determinism there
/// should raise the cap (or lower the effort).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchBudget {
    /// Work units the exact and local searches may spend (the initial orders are
    /// always evaluated).
    pub effort: u64,
    /// Wall-clock limit on the search (the safety net).
    pub time_cap: Duration,
    /// Stop at the first layout within this many bytes; when there is none (or none
    /// is found in the budget) planning fails with
    /// [`LifetimeError::NoLayoutWithin`]. `None`: search for the smallest.
    pub capacity: Option<u64>,
}

/// Default [`SearchBudget::effort`]: about 10 ms of search in a release build (40 ms
/// at worst on a loaded two-core machine), whatever the number of tensors: the unit
/// is placement work, not evaluations.
pub const DEFAULT_EFFORT: u64 = 4_000_000;
/// Default [`SearchBudget::time_cap`].
pub const DEFAULT_TIME_CAP: Duration = Duration::from_millis(100);

impl Default for SearchBudget {
    fn default() -> Self {
        Self {
            effort: DEFAULT_EFFORT,
            time_cap: DEFAULT_TIME_CAP,
            capacity: None,
        }
    }
}

/// Places `records` into one arena with the given strategy and alignment (a power of
/// two), with the default [`SearchBudget`], and validates the result.
///
/// ```
/// use memwarden_lifetime::{Record, Strategy, plan_records};
///
/// let records = [Record::new(32, 0, 1), Record::new(32, 1, 4), Record::new(8, 2, 5)];
/// let layout = plan_records(&records, Strategy::GreedyBySize, 1)?;
/// assert_eq!(layout.offsets, [0, 32, 0]);
/// assert_eq!(layout.arena_bytes, 64);
/// # Ok::<(), memwarden_lifetime::LifetimeError>(())
/// ```
///
/// # Errors
///
/// [`LifetimeError::InvalidAlignment`], [`LifetimeError::BadRecord`] for `first > last`,
/// [`LifetimeError::SizeOverflow`] when offsets pass `u64::MAX`, and [`LifetimeError::InvalidPlan`]
/// (a bug) when the result fails validation.
pub fn plan_records(
    records: &[Record],
    strategy: Strategy,
    align: u64,
) -> Result<Layout, LifetimeError> {
    plan_records_budgeted(records, strategy, align, &SearchBudget::default())
}

/// As [`plan_records`], with an explicit search budget for [`Strategy::Best`].
///
/// # Errors
///
/// As [`plan_records`].
pub fn plan_records_budgeted(
    records: &[Record],
    strategy: Strategy,
    align: u64,
    budget: &SearchBudget,
) -> Result<Layout, LifetimeError> {
    let layout = compute_layout(records, strategy, align, budget)?;
    validate_layout(records, &layout.offsets, align, layout.arena_bytes, |i| {
        format!("record {i}")
    })?;
    Ok(layout)
}

/// As [`plan_records_budgeted`] without the validation, which the caller does with
/// its own names for the records.
pub(crate) fn compute_layout(
    records: &[Record],
    strategy: Strategy,
    align: u64,
    budget: &SearchBudget,
) -> Result<Layout, LifetimeError> {
    check_align(align)?;
    for (index, r) in records.iter().enumerate() {
        if r.first > r.last {
            return Err(LifetimeError::BadRecord {
                index,
                first: r.first,
                last: r.last,
            });
        }
    }
    let mut total: u64 = 0;
    for r in records {
        // Every planner places a record at most at the aligned sum of all sizes; if
        // that sum fits, no offset arithmetic below can overflow.
        total = total
            .checked_add(r.bytes)
            .and_then(|t| t.checked_add(align))
            .ok_or_else(|| LifetimeError::SizeOverflow {
                tensor: "sum of all records".to_owned(),
            })?;
    }
    // Planners index arrays by step: renumber the steps densely first (the order of
    // every first and last step is kept, so overlaps and the bound are unchanged).
    let original = records;
    let compressed = compress_steps(records);
    let records = &compressed[..];
    let lower = dense_lower_bound(records);
    let naive_bytes = records.iter().map(|r| r.bytes).sum();
    let searched = match strategy {
        Strategy::Naive => Searched::heuristic(naive(records, align), "naive"),
        Strategy::GreedyBySize => {
            let p = Problem::new(records, align);
            Searched::heuristic(p.place(&p.size_order()), "greedy-size")
        }
        Strategy::GreedyByBreadth => {
            let p = Problem::new(records, align);
            Searched::heuristic(p.place(&p.breadth_order()), "greedy-breadth")
        }
        Strategy::Best | Strategy::Exact => {
            // The exact search ranks records by area in the caller's own time units.
            let spans: Vec<u64> = original
                .iter()
                .map(|r| ((r.last - r.first) as u64).saturating_add(1))
                .collect();
            best(records, &spans, align, lower, budget, strategy)
        }
    };
    let arena_bytes = arena_of(records, &searched.offsets);
    if let Some(capacity) = budget.capacity
        && arena_bytes > capacity
    {
        return Err(LifetimeError::NoLayoutWithin {
            capacity,
            best_bytes: arena_bytes,
            lower_bound_bytes: lower,
            proved: lower > capacity || searched.infeasible,
        });
    }
    Ok(Layout {
        offsets: searched.offsets,
        arena_bytes,
        lower_bound_bytes: lower,
        naive_bytes,
        method: searched.method,
        evaluations: searched.evaluations,
        optimal: arena_bytes <= lower || searched.optimal,
    })
}

/// What a planner returns to [`compute_layout`].
struct Searched {
    offsets: Vec<u64>,
    method: String,
    evaluations: u64,
    /// The exact search proved no smaller layout exists.
    optimal: bool,
    /// The exact search proved no layout within the capacity exists.
    infeasible: bool,
}

impl Searched {
    fn heuristic(offsets: Vec<u64>, method: &str) -> Self {
        Self {
            offsets,
            method: method.to_owned(),
            evaluations: 0,
            optimal: false,
            infeasible: false,
        }
    }
}

pub(crate) fn check_align(align: u64) -> Result<(), LifetimeError> {
    if align.is_power_of_two() {
        Ok(())
    } else {
        Err(LifetimeError::InvalidAlignment { align })
    }
}

fn align_up(x: u64, align: u64) -> u64 {
    // `align` is a power of two and callers keep `x + align` in range.
    (x + align - 1) & !(align - 1)
}

pub(crate) fn arena_of(records: &[Record], offsets: &[u64]) -> u64 {
    records
        .iter()
        .zip(offsets)
        .map(|(r, &o)| o + r.bytes)
        .max()
        .unwrap_or(0)
}

/// The records with their steps renumbered `0, 1, 2, ...` in the order of the
/// distinct first and last steps, so that step numbers stay below `2 * len` whatever
/// the caller used (timestamps, say).
fn compress_steps(records: &[Record]) -> Vec<Record> {
    let mut points: Vec<usize> = records.iter().flat_map(|r| [r.first, r.last]).collect();
    points.sort_unstable();
    points.dedup();
    let rank = |s: usize| points.partition_point(|&p| p < s);
    records
        .iter()
        .map(|r| Record::new(r.bytes, rank(r.first), rank(r.last)))
        .collect()
}

/// Max over steps of the bytes live at that step (records with `first <= last`).
pub fn lower_bound(records: &[Record]) -> u64 {
    dense_lower_bound(&compress_steps(records))
}

/// [`lower_bound`] for records whose steps are already dense.
fn dense_lower_bound(records: &[Record]) -> u64 {
    let Some(steps) = records.iter().map(|r| r.last + 1).max() else {
        return 0;
    };
    let mut delta = vec![0i128; steps + 1];
    for r in records {
        delta[r.first] += i128::from(r.bytes);
        delta[r.last + 1] -= i128::from(r.bytes);
    }
    let mut live = 0i128;
    let mut best = 0i128;
    for d in delta {
        live += d;
        best = best.max(live);
    }
    u64::try_from(best).unwrap_or(u64::MAX)
}

/// A lower bound that accounts for alignment: below the top record of a step, every
/// record live at the step takes its size rounded up to the alignment. The search
/// stops when it reaches this.
fn aligned_lower_bound(records: &[Record], align: u64) -> u64 {
    if align == 1 {
        return dense_lower_bound(records);
    }
    let rounded: Vec<Record> = records
        .iter()
        .map(|r| Record {
            bytes: align_up(r.bytes, align),
            ..*r
        })
        .collect();
    dense_lower_bound(&rounded)
        .saturating_sub(align - 1)
        .max(dense_lower_bound(records))
}

fn naive(records: &[Record], align: u64) -> Vec<u64> {
    let mut cursor = 0;
    records
        .iter()
        .map(|r| {
            let offset = align_up(cursor, align);
            cursor = offset + r.bytes;
            offset
        })
        .collect()
}

/// Checks a layout: offsets aligned, the arena covers every record, and records
/// with overlapping lifetimes have disjoint byte ranges. A sweep over the records by
/// first step keeps the live ones in an offset-ordered map, so each record is checked
/// against its two neighbours in that map only: O(n log n).
pub(crate) fn validate_layout(
    records: &[Record],
    offsets: &[u64],
    align: u64,
    arena_bytes: u64,
    name: impl Fn(usize) -> String,
) -> Result<(), LifetimeError> {
    use std::cmp::Reverse;
    use std::collections::{BTreeMap, BinaryHeap};

    let bad = |i: usize, other: Option<usize>, problem: String| LifetimeError::InvalidPlan {
        tensor: name(i),
        other: other.map(&name),
        problem,
    };
    if offsets.len() != records.len() {
        return Err(LifetimeError::InvalidPlan {
            tensor: "layout".to_owned(),
            other: None,
            problem: format!("{} offsets for {} records", offsets.len(), records.len()),
        });
    }
    for (i, (r, &o)) in records.iter().zip(offsets).enumerate() {
        if align == 0 || o % align != 0 {
            return Err(bad(
                i,
                None,
                format!("offset {o} is not a multiple of {align}"),
            ));
        }
        match o.checked_add(r.bytes) {
            Some(end) if end <= arena_bytes => {}
            _ => {
                return Err(bad(
                    i,
                    None,
                    format!(
                        "range {o}+{} passes the arena's {arena_bytes} bytes",
                        r.bytes
                    ),
                ));
            }
        }
    }
    let mut by_first: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].bytes > 0)
        .collect();
    by_first.sort_by_key(|&i| (records[i].first, i));
    // Live records: offset -> record index; expiry heap of (last step, offset).
    let mut live: BTreeMap<u64, usize> = BTreeMap::new();
    let mut expiry: BinaryHeap<Reverse<(usize, u64)>> = BinaryHeap::new();
    for i in by_first {
        let r = records[i];
        while let Some(&Reverse((last, offset))) = expiry.peek() {
            if last >= r.first {
                break;
            }
            expiry.pop();
            live.remove(&offset);
        }
        let (start, end) = (offsets[i], offsets[i] + r.bytes);
        let overlap = |j: usize| {
            bad(
                i,
                Some(j),
                format!(
                    "live together (steps {}..={} and {}..={}) in overlapping bytes {}..{} and {}..{}",
                    r.first,
                    r.last,
                    records[j].first,
                    records[j].last,
                    start,
                    end,
                    offsets[j],
                    offsets[j] + records[j].bytes
                ),
            )
        };
        if let Some((_, &j)) = live.range(..=start).next_back()
            && offsets[j] + records[j].bytes > start
        {
            return Err(overlap(j));
        }
        if let Some((_, &j)) = live.range(start..).next()
            && offsets[j] < end
        {
            return Err(overlap(j));
        }
        live.insert(start, i);
        expiry.push(Reverse((r.last, start)));
    }
    Ok(())
}

/// The interval-overlap graph of the non-empty records, as adjacency lists: the
/// neighbours of record `i` are `adjacency[starts[i]..starts[i + 1]]` (empty records
/// have none). A sweep over the records by first step: O(n log n + edges).
pub(crate) fn overlap_lists(records: &[Record]) -> (Vec<usize>, Vec<u32>) {
    let n = records.len();
    let mut by_first: Vec<u32> = (0..n as u32)
        .filter(|&i| records[i as usize].bytes > 0)
        .collect();
    by_first.sort_by_key(|&i| (records[i as usize].first, i));
    let mut degree = vec![0usize; n];
    let mut edges: Vec<(u32, u32)> = Vec::new();
    let mut active: Vec<u32> = Vec::new();
    for &i in &by_first {
        let r = records[i as usize];
        active.retain(|&j| records[j as usize].last >= r.first);
        for &j in &active {
            edges.push((i, j));
            degree[i as usize] += 1;
            degree[j as usize] += 1;
        }
        active.push(i);
    }
    let mut starts = vec![0usize; n + 1];
    for i in 0..n {
        starts[i + 1] = starts[i] + degree[i];
    }
    let mut fill = starts.clone();
    let mut adjacency = vec![0u32; starts[n]];
    for (a, b) in edges {
        adjacency[fill[a as usize]] = b;
        fill[a as usize] += 1;
        adjacency[fill[b as usize]] = a;
        fill[b as usize] += 1;
    }
    (starts, adjacency)
}

/// The records with their interval-overlap graph, for the greedy placement rule.
struct Problem<'a> {
    records: &'a [Record],
    align: u64,
    /// Neighbours of record `i` are `adjacency[starts[i]..starts[i + 1]]`: the
    /// non-empty records whose lifetimes overlap its own (empty records have none).
    starts: Vec<usize>,
    adjacency: Vec<u32>,
}

impl<'a> Problem<'a> {
    fn new(records: &'a [Record], align: u64) -> Self {
        let (starts, adjacency) = overlap_lists(records);
        Self {
            records,
            align,
            starts,
            adjacency,
        }
    }

    fn neighbours(&self, i: usize) -> &[u32] {
        &self.adjacency[self.starts[i]..self.starts[i + 1]]
    }

    /// Record indices by size descending, ties in record order (TFLite's stable sort).
    fn size_order(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.records.len() as u32).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.records[i as usize].bytes));
        order
    }

    /// Greedy by breadth: steps by breadth (bytes live) descending, ties by step;
    /// at each step its records not yet ordered, largest first.
    fn breadth_order(&self) -> Vec<u32> {
        let records = self.records;
        let steps = records.iter().map(|r| r.last + 1).max().unwrap_or(0);
        let mut breadth = vec![0u64; steps];
        let mut live_at: Vec<Vec<u32>> = vec![Vec::new(); steps];
        for (i, r) in records.iter().enumerate() {
            for s in r.first..=r.last {
                breadth[s] += r.bytes;
                live_at[s].push(i as u32);
            }
        }
        let mut step_order: Vec<usize> = (0..steps).collect();
        step_order.sort_by_key(|&s| std::cmp::Reverse(breadth[s]));
        let mut taken = vec![false; records.len()];
        let mut order = Vec::with_capacity(records.len());
        for s in step_order {
            let mut here: Vec<u32> = live_at[s]
                .iter()
                .copied()
                .filter(|&i| !taken[i as usize])
                .collect();
            here.sort_by_key(|&i| std::cmp::Reverse(records[i as usize].bytes));
            for i in here {
                taken[i as usize] = true;
                order.push(i);
            }
        }
        order
    }

    /// Places every record in `order` (a permutation of the records) and returns the
    /// offsets by record.
    fn place(&self, order: &[u32]) -> Vec<u64> {
        let mut state = State::new(self.records.len());
        let mut scratch = Vec::new();
        for (pos, &t) in order.iter().enumerate() {
            state.rank[t as usize] = pos as u32;
        }
        for (pos, &t) in order.iter().enumerate() {
            let (off, _) = self.fit(
                t as usize,
                pos as u32,
                &state.rank,
                &state.offsets,
                &mut scratch,
            );
            state.offsets[t as usize] = off;
        }
        state.offsets
    }

    /// The offset for record `t`, placed at position `pos` of an order whose ranks are
    /// `rank` (neighbours with a smaller rank are already placed at `offsets`), and the
    /// work units spent.
    fn fit(
        &self,
        t: usize,
        pos: u32,
        rank: &[u32],
        offsets: &[u64],
        scratch: &mut Vec<(u64, u64)>,
    ) -> (u64, u64) {
        let size = self.records[t].bytes;
        if size == 0 {
            return (0, 1);
        }
        scratch.clear();
        let nbrs = self.neighbours(t);
        for &u in nbrs {
            if rank[u as usize] < pos {
                let o = offsets[u as usize];
                scratch.push((o, o + self.records[u as usize].bytes));
            }
        }
        scratch.sort_unstable();
        let mut prev = 0u64;
        let mut best_gap = u64::MAX;
        let mut best = None;
        for &(off, end) in scratch.iter() {
            if off >= prev {
                let gap = off - prev;
                if gap >= size && gap < best_gap {
                    best_gap = gap;
                    best = Some(prev);
                }
            }
            prev = prev.max(align_up(end, self.align));
        }
        (
            best.unwrap_or(prev),
            1 + nbrs.len() as u64 + scratch.len() as u64,
        )
    }
}

/// A placement in progress: the order, each record's position in it, the offsets,
/// and the arena top after each position.
#[derive(Clone)]
struct State {
    order: Vec<u32>,
    rank: Vec<u32>,
    offsets: Vec<u64>,
    top: Vec<u64>,
}

impl State {
    fn new(n: usize) -> Self {
        Self {
            order: (0..n as u32).collect(),
            rank: vec![0; n],
            offsets: vec![0; n],
            top: vec![0; n],
        }
    }

    fn total(&self) -> u64 {
        self.top.last().copied().unwrap_or(0)
    }
}

/// The search for [`Strategy::Best`].
struct Search<'p, 'a> {
    problem: &'p Problem<'a>,
    scratch: Vec<(u64, u64)>,
    work: u64,
    evaluations: u64,
}

impl Search<'_, '_> {
    /// Re-places `state.order[from..]` given that positions before `from` hold the
    /// same records at the same offsets as before, and returns the arena top. Gives up
    /// (returning the position reached) once the top passes `bound`.
    fn evaluate(&mut self, state: &mut State, from: usize, bound: u64) -> Result<u64, usize> {
        self.evaluations += 1;
        let n = state.order.len();
        for pos in from..n {
            state.rank[state.order[pos] as usize] = pos as u32;
        }
        let mut top = if from == 0 { 0 } else { state.top[from - 1] };
        for pos in from..n {
            let t = state.order[pos] as usize;
            let (off, work) = self.problem.fit(
                t,
                pos as u32,
                &state.rank,
                &state.offsets,
                &mut self.scratch,
            );
            self.work += work;
            state.offsets[t] = off;
            top = top.max(off + self.problem.records[t].bytes);
            state.top[pos] = top;
            if top > bound {
                return Err(pos);
            }
        }
        Ok(top)
    }
}

/// Copies positions `range` of `src` (order, ranks, offsets, tops) into `dst`.
fn copy_positions(dst: &mut State, src: &State, range: std::ops::Range<usize>) {
    for pos in range {
        let t = src.order[pos];
        dst.order[pos] = t;
        dst.rank[t as usize] = pos as u32;
        dst.offsets[t as usize] = src.offsets[t as usize];
        dst.top[pos] = src.top[pos];
    }
}

/// `best` and `exact`: the baselines and other orders, the minimum kept; then, while
/// above the goal (the alignment-aware lower bound, or the capacity asked for), the
/// exact search ([`crate::exact`]) with the effort; then, for `best` without a
/// capacity and short of a proved optimum, a hill climb over the order of the
/// winning cheap order with whatever effort the exact search left.
fn best(
    records: &[Record],
    spans: &[u64],
    align: u64,
    lower: u64,
    budget: &SearchBudget,
    strategy: Strategy,
) -> Searched {
    let started = Instant::now();
    let n = records.len();
    let naive_offsets = naive(records, align);
    let naive_total = arena_of(records, &naive_offsets);
    if n == 0 {
        return Searched::heuristic(naive_offsets, "naive");
    }
    let target = aligned_lower_bound(records, align).max(lower);
    let goal = budget.capacity.unwrap_or(target).max(target);
    let problem = Problem::new(records, align);
    let mut search = Search {
        problem: &problem,
        scratch: Vec::new(),
        work: 0,
        evaluations: 0,
    };
    let mut best_state: Option<(State, &'static str)> = None;
    for k in 0..INITIAL_ORDERS {
        let (name, order) = initial_order(&problem, k);
        let mut state = State::new(n);
        state.order = order;
        let bound = best_state.as_ref().map_or(u64::MAX, |(s, _)| s.total());
        // Ties keep the earlier order, so `best` equals greedy by size whenever that
        // is already optimal among the candidates.
        if let Ok(total) = search.evaluate(&mut state, 0, bound.saturating_sub(1)) {
            best_state = Some((state, name));
            if total <= goal {
                break;
            }
        }
    }
    let Some((mut cur, name)) = best_state else {
        return Searched::heuristic(naive_offsets, "naive");
    };
    let infeasible = budget.capacity.is_some_and(|c| c < target);
    let mut top = cur.total();
    let mut out = Searched {
        offsets: cur.offsets.clone(),
        method: name.to_owned(),
        evaluations: search.evaluations,
        optimal: false,
        infeasible,
    };
    if top <= goal || infeasible {
        out.optimal = top <= target;
        return out;
    }
    // The exact search first: it may prove the incumbent optimal, or find a layout
    // within the capacity, where the local search never could.
    let mut exact_work = 0;
    let incumbent = &out.offsets;
    let ran = crate::exact::with_stack(records.len(), || {
        let mut meter = crate::exact::Meter::new(budget.effort, started, budget.time_cap);
        let improved = crate::exact::improve(
            records,
            spans,
            align,
            budget.capacity,
            (incumbent, top),
            target,
            &mut meter,
        );
        (improved, meter)
    });
    if let Some((improved, meter)) = ran {
        if let Some(offsets) = improved.offsets {
            out.offsets = offsets;
            out.method = "exact".to_owned();
            top = arena_of(records, &out.offsets);
        }
        out.optimal = improved.optimal;
        out.infeasible |= improved.infeasible;
        out.evaluations += meter.work;
        exact_work = meter.work;
        if meter.timed_out {
            log::warn!(
                "{strategy}: the {:?} time cap stopped the exact search; this plan may \
                 differ on a faster machine",
                budget.time_cap
            );
        }
    }
    if strategy == Strategy::Best && budget.capacity.is_none() && !out.optimal && top > goal {
        // The local search over the best cheap order, with what effort is left.
        let rest = SearchBudget {
            effort: budget.effort.saturating_sub(exact_work),
            ..*budget
        };
        let before = search.evaluations;
        hill_climb(&mut search, &mut cur, goal, &rest, started);
        out.evaluations += search.evaluations - before;
        if cur.total() < top {
            top = cur.total();
            out.offsets = cur.offsets;
            out.method = format!("{name}+search");
        }
    }
    if naive_total < top {
        // What the search proved still holds for the naive layout.
        out.offsets = naive_offsets;
        out.method = "naive".to_owned();
        top = naive_total;
    }
    // The alignment-aware bound is a proven bound too.
    out.optimal |= top <= target;
    out
}

/// Number of candidate orders [`initial_order`] knows.
const INITIAL_ORDERS: usize = 7;

/// Candidate order `k` that `best` starts from (greedy by size first), made only
/// when asked, since the search stops at the first one that reaches the bound.
fn initial_order(p: &Problem<'_>, k: usize) -> (&'static str, Vec<u32>) {
    let records = p.records;
    let n = records.len();
    let bytes = |i: u32| records[i as usize].bytes;
    let duration = |i: u32| (records[i as usize].last - records[i as usize].first + 1) as u64;
    let by_key = |key: &dyn Fn(u32) -> (u64, u64)| {
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(key(i)));
        order
    };
    match k {
        0 => ("greedy-size", p.size_order()),
        1 => ("greedy-breadth", p.breadth_order()),
        2 => {
            // The peak pressure a record takes part in: max breadth over its steps.
            let steps = records.iter().map(|r| r.last + 1).max().unwrap_or(0);
            let mut delta = vec![0i128; steps + 1];
            for r in records {
                delta[r.first] += i128::from(r.bytes);
                delta[r.last + 1] -= i128::from(r.bytes);
            }
            let mut live = 0i128;
            let breadth: Vec<u64> = delta
                .iter()
                .map(|d| {
                    live += d;
                    u64::try_from(live).unwrap_or(0)
                })
                .collect();
            let peak: Vec<u64> = records
                .iter()
                .map(|r| breadth[r.first..=r.last].iter().copied().max().unwrap_or(0))
                .collect();
            ("peak", by_key(&|i| (peak[i as usize], bytes(i))))
        }
        3 => (
            "area",
            by_key(&|i| (bytes(i).saturating_mul(duration(i)), 0)),
        ),
        4 => ("duration", by_key(&|i| (duration(i), bytes(i)))),
        5 => {
            // Bytes of the record and everything that overlaps it.
            let conflict: Vec<u64> = (0..n)
                .map(|i| {
                    p.neighbours(i)
                        .iter()
                        .map(|&u| records[u as usize].bytes)
                        .fold(records[i].bytes, u64::saturating_add)
                })
                .collect();
            ("conflict", by_key(&|i| (conflict[i as usize], bytes(i))))
        }
        _ => {
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.sort_by_key(|&i| (records[i as usize].first, std::cmp::Reverse(bytes(i))));
            ("first-step", order)
        }
    }
}

/// Hill climbing over the placement order. Each move changes the order from some
/// position on (a record moved earlier, or two records swapped; half the moves take
/// a record that reaches the current top and move it earlier); only that suffix is
/// re-placed, and a candidate is dropped as soon as its top passes the current one.
/// Moves that keep the total are accepted, so the climb walks across plateaus.
fn hill_climb(
    search: &mut Search<'_, '_>,
    cur: &mut State,
    target: u64,
    budget: &SearchBudget,
    started: Instant,
) {
    let n = cur.order.len();
    let records = search.problem.records;
    let mut rng = SplitMix64::new(0x6D65_6D77_6172_6465 ^ n as u64);
    let mut cand = cur.clone();
    let mut tops: Vec<u32> = Vec::new();
    while cur.total() > target && search.work < budget.effort {
        // Reading the clock costs far less than one evaluation.
        if started.elapsed() > budget.time_cap {
            log::warn!(
                "best: the {:?} time cap stopped the search after {} evaluations; \
                 this plan may differ on a faster machine",
                budget.time_cap,
                search.evaluations
            );
            break;
        }
        let total = cur.total();
        let from = if rng.chance(0.5) {
            // Move a record that touches the top to an earlier position.
            tops.clear();
            tops.extend(
                (0..n as u32)
                    .filter(|&t| cur.offsets[t as usize] + records[t as usize].bytes == total),
            );
            let t = *rng.pick(&tops);
            let j = cur.rank[t as usize] as usize;
            if j == 0 {
                continue;
            }
            let i = rng.below(j);
            cand.order[i..=j].rotate_right(1);
            i
        } else {
            let a = rng.below(n);
            let b = rng.below(n);
            if a == b {
                continue;
            }
            let (i, j) = (a.min(b), a.max(b));
            if rng.chance(0.5) {
                cand.order.swap(i, j);
            } else {
                cand.order[i..=j].rotate_right(1);
            }
            i
        };
        // Accepted: the candidate becomes current. Rejected: undo the move and what
        // the evaluation wrote (ranks, offsets and tops from `from` on).
        match search.evaluate(&mut cand, from, total) {
            Ok(_) => copy_positions(cur, &cand, from..n),
            Err(_) => copy_positions(&mut cand, cur, from..n),
        }
    }
}
