//! Dynamic shapes: planning over a range of a symbol's values ([`plan_range`]) and a
//! [`Planner`] that caches plans per shape bucket.
//!
//! Both analyse the graph's structure once (order, folding, lifetimes) and redo only
//! the sizes and the placement per value. Sizes grow with every symbol (a size is a
//! product of dimensions), so a plan made for values `v` is valid for any values
//! `<= v`: each tensor fits in the slot planned for its larger self, and slots of
//! tensors live together stay disjoint. In-place aliases need equal shapes, not just
//! equal sizes, so they hold for every value too.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::time::Instant;

use crate::analysis::Structure;
use crate::error::LifetimeError;
use crate::ir::Graph;
use crate::plan::{Plan, PlanOptions, Unknown, plan_analysis};

/// One row of a [`RangePlan`] table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RangeRow {
    /// The symbol's value.
    pub value: u64,
    /// Sum of the buffer sizes at that value.
    pub naive_bytes: u64,
    /// The lower bound at that value.
    pub lower_bound_bytes: u64,
    /// The arena the strategy reaches at that value.
    pub arena_bytes: u64,
}

/// What [`plan_range`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RangePlan {
    /// The symbol.
    pub dim: String,
    /// The plan for the range's maximum: valid for every value in the range.
    pub plan: Plan,
    /// Figures per value (see [`plan_range`] for which values).
    pub rows: Vec<RangeRow>,
}

/// Ranges with at most this many values get a table row per value.
pub const MAX_ROWS_PER_VALUE: u64 = 64;

/// Plans `graph` with symbol `dim` ranging over `range` (other symbols from
/// `opts.dims`): the plan for the maximum, valid for every value, and a table of
/// naive, lower bound and arena bytes per value. A range of more than
/// [`MAX_ROWS_PER_VALUE`] values gets rows for its ends and every power of two
/// between them instead (the power-of-two buckets a [`Planner`] uses).
///
/// # Errors
///
/// [`LifetimeError::BadRange`] when `lo > hi` or the graph has no dimension `dim`, and those
/// of [`plan`](crate::plan) at any value.
pub fn plan_range(
    graph: &Graph,
    opts: &PlanOptions,
    dim: &str,
    range: RangeInclusive<u64>,
) -> Result<RangePlan, LifetimeError> {
    let started = Instant::now();
    let (lo, hi) = (*range.start(), *range.end());
    if lo > hi {
        return Err(LifetimeError::BadRange {
            dim: dim.to_owned(),
            problem: format!("{lo} is above {hi}"),
        });
    }
    let structure = Structure::new(graph)?;
    if !structure.symbols().contains(dim) {
        return Err(LifetimeError::BadRange {
            dim: dim.to_owned(),
            problem: format!(
                "the graph has no such dimension (its symbols: {})",
                structure
                    .symbols()
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let values: Vec<u64> = if hi - lo < MAX_ROWS_PER_VALUE {
        (lo..=hi).collect()
    } else {
        let mut v = vec![lo];
        let mut p = lo.checked_next_power_of_two().unwrap_or(hi);
        while p < hi {
            if p > lo {
                v.push(p);
            }
            p = p.saturating_mul(2);
        }
        v.push(hi);
        v
    };
    let mut rows = Vec::with_capacity(values.len());
    let mut last = None;
    for value in values {
        let mut o = opts.clone();
        o.dims.insert(dim.to_owned(), value);
        let analysis = structure.bind(&o.dims, o.unknown == Unknown::Skip, o.inplace)?;
        let plan = plan_analysis(analysis, &o, Instant::now())?;
        rows.push(RangeRow {
            value,
            naive_bytes: plan.naive_bytes,
            lower_bound_bytes: plan.lower_bound_bytes,
            arena_bytes: plan.arena_bytes,
        });
        last = Some(plan);
    }
    let mut plan = last.ok_or_else(|| LifetimeError::BadRange {
        dim: dim.to_owned(),
        problem: "empty range".to_owned(),
    })?;
    plan.planning_time = started.elapsed();
    Ok(RangePlan {
        dim: dim.to_owned(),
        plan,
        rows,
    })
}

/// Plans a graph for many shapes, caching one plan per shape bucket.
///
/// A bucket rounds every symbol's value up to the next power of two; the plan made
/// for the bucket's values is valid for every smaller value (see the module docs), so
/// planning for a shape whose bucket was seen is a lookup.
///
/// ```
/// use std::collections::BTreeMap;
/// use memwarden_lifetime::ir::{Dim, Graph, Node, Tensor};
/// use memwarden_lifetime::{PlanOptions, Planner};
///
/// let mut g = Graph::new("batch");
/// let shape = Some(vec![Dim::from("N"), Dim::from(1024)]);
/// let x = g.add_tensor(Tensor::new("x", 4, shape.clone()));
/// let y = g.add_tensor(Tensor::new("y", 4, shape));
/// g.add_node(Node::new("relu", "Relu", &[x], &[y]));
/// g.inputs = vec![x];
/// g.outputs = vec![y];
///
/// let mut planner = Planner::new(&g, PlanOptions::default())?;
/// let n5 = BTreeMap::from([("N".to_owned(), 5)]);
/// let n7 = BTreeMap::from([("N".to_owned(), 7)]);
/// assert_eq!(planner.plan_for(&n5)?.tensors[0].bytes, 8 * 1024 * 4); // bucket N = 8
/// planner.plan_for(&n7)?; // same bucket: a lookup
/// assert_eq!(planner.plans_made(), 1);
/// # Ok::<(), memwarden_lifetime::LifetimeError>(())
/// ```
#[derive(Debug)]
pub struct Planner {
    structure: Structure,
    opts: PlanOptions,
    cache: HashMap<BTreeMap<String, u64>, Plan>,
    plans_made: u64,
}

impl Planner {
    /// Analyses the structure of `graph` once; plans come later per shape.
    ///
    /// # Errors
    ///
    /// The structural errors of [`plan`](crate::plan) (cycles, undefined tensors, ...).
    pub fn new(graph: &Graph, opts: PlanOptions) -> Result<Self, LifetimeError> {
        Ok(Self {
            structure: Structure::new(graph)?,
            opts,
            cache: HashMap::new(),
            plans_made: 0,
        })
    }

    /// The bucket of a binding: the graph's symbols (values from `dims`, else from the
    /// planner's options) each rounded up to a power of two. Unbound symbols stay out.
    pub fn bucket(&self, dims: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        self.structure
            .symbols()
            .iter()
            .filter_map(|s| {
                let v = dims.get(s).or_else(|| self.opts.dims.get(s))?;
                Some((s.clone(), v.checked_next_power_of_two().unwrap_or(*v)))
            })
            .collect()
    }

    /// The plan for the bucket of `dims`: from the cache, or planned and cached. Its
    /// sizes are the bucket's; it is valid for `dims`.
    ///
    /// # Errors
    ///
    /// Those of [`plan`](crate::plan).
    pub fn plan_for(&mut self, dims: &BTreeMap<String, u64>) -> Result<&Plan, LifetimeError> {
        let key = self.bucket(dims);
        match self.cache.entry(key) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(slot) => {
                let started = Instant::now();
                let mut all = self.opts.dims.clone();
                all.extend(slot.key().iter().map(|(k, v)| (k.clone(), *v)));
                let analysis = self.structure.bind(
                    &all,
                    self.opts.unknown == Unknown::Skip,
                    self.opts.inplace,
                )?;
                let plan = plan_analysis(analysis, &self.opts, started)?;
                self.plans_made += 1;
                Ok(slot.insert(plan))
            }
        }
    }

    /// How many plans were made (cache misses).
    pub fn plans_made(&self) -> u64 {
        self.plans_made
    }

    /// How many buckets are cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The graph's symbolic dimensions.
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.structure.symbols().iter().map(String::as_str)
    }
}
