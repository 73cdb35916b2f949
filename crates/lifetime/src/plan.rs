//! [`plan`]: a graph in, a validated [`Plan`] out; the options and the JSON form.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::analysis::{Analysis, Step, Structure};
use crate::error::{LifetimeError, UnknownTensor};
use crate::ir::Graph;
use crate::place::{self, Layout, Record, SearchBudget};

/// How offsets are chosen.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[non_exhaustive]
pub enum Strategy {
    /// Every buffer its own range, one after the other (`naive`).
    Naive,
    /// TFLite's greedy by size for offset calculation (`greedy-size`).
    GreedyBySize,
    /// Greedy by breadth, adapted to offsets (`greedy-breadth`).
    GreedyByBreadth,
    /// The smallest of several orders, then the exact search, then a deterministic
    /// local search with whatever effort is left (`best`).
    #[default]
    Best,
    /// The smallest of several orders, then the exact branch and bound with the
    /// whole budget (`exact`): optimal when it finishes.
    Exact,
}

impl Strategy {
    /// Every strategy, baselines first.
    pub const ALL: [Strategy; 5] = [
        Strategy::Naive,
        Strategy::GreedyBySize,
        Strategy::GreedyByBreadth,
        Strategy::Best,
        Strategy::Exact,
    ];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Naive => "naive",
            Strategy::GreedyBySize => "greedy-size",
            Strategy::GreedyByBreadth => "greedy-breadth",
            Strategy::Best => "best",
            Strategy::Exact => "exact",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = LifetimeError;

    fn from_str(s: &str) -> Result<Self, LifetimeError> {
        Strategy::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| LifetimeError::UnknownStrategy { name: s.to_owned() })
    }
}

/// What to do with tensors whose size is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Unknown {
    /// Fail with [`LifetimeError::UnknownSizes`], which lists each with its producing op.
    #[default]
    Error,
    /// Leave them out of the arena and list them in [`Plan::skipped`].
    Skip,
}

/// Options for [`plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// The planner.
    pub strategy: Strategy,
    /// Every offset is a multiple of this (a power of two); sizes are not rounded.
    pub align: u64,
    /// Values of the symbolic dimensions (`N` = 8).
    pub dims: BTreeMap<String, u64>,
    /// Let elementwise ops write their output over an input that dies there.
    pub inplace: bool,
    /// Policy for tensors of unknown size.
    pub unknown: Unknown,
    /// Wall-clock cap on the search of `best` and `exact`: a safety net only (see
    /// [`SearchBudget`]).
    pub time_budget: Duration,
    /// The deterministic work bound of `best` and `exact` (see
    /// [`SearchBudget::effort`]).
    pub search_effort: u64,
    /// Ask for a layout within this many bytes instead of the smallest: the search
    /// stops at the first one found, and planning fails with
    /// [`LifetimeError::NoLayoutWithin`] when there is none (or none is found in the
    /// budget).
    pub capacity: Option<u64>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            strategy: Strategy::Best,
            align: 64,
            dims: BTreeMap::new(),
            inplace: false,
            unknown: Unknown::Error,
            time_budget: place::DEFAULT_TIME_CAP,
            search_effort: place::DEFAULT_EFFORT,
            capacity: None,
        }
    }
}

impl PlanOptions {
    pub(crate) fn budget(&self) -> SearchBudget {
        SearchBudget {
            effort: self.search_effort,
            time_cap: self.time_budget,
            capacity: self.capacity,
        }
    }
}

/// One tensor's place in the arena.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PlannedTensor {
    /// The name (body tensors carry their `node/subgraph/` prefix).
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// The step that produces it (0 for a graph input).
    pub first_step: usize,
    /// The last step it is live at.
    pub last_step: usize,
    /// Byte offset in the arena.
    pub offset: u64,
    /// The tensor whose buffer it shares (in-place or an `If` branch output).
    pub alias_of: Option<String>,
    /// The operator that produces it (`None` for a graph input).
    pub producer_op: Option<String>,
}

/// A validated arena plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The graph's name.
    pub model: String,
    /// Number of steps.
    pub steps: usize,
    /// The node run at each step.
    pub schedule: Vec<Step>,
    /// The alignment every offset honours.
    pub align: u64,
    /// The strategy asked for.
    pub strategy: Strategy,
    /// Which heuristic produced the offsets (see [`Layout::method`]).
    pub method: String,
    /// Sum of the buffer sizes.
    pub naive_bytes: u64,
    /// Max over steps of the bytes live at that step.
    pub lower_bound_bytes: u64,
    /// The arena size.
    pub arena_bytes: u64,
    /// No smaller arena exists: it equals the lower bound, or the exact search
    /// proved every smaller size impossible.
    pub optimal: bool,
    /// Every planned tensor, graph inputs first, then by producing step.
    pub tensors: Vec<PlannedTensor>,
    /// Tensors of unknown size left out ([`Unknown::Skip`]).
    pub skipped: Vec<UnknownTensor>,
    /// Time spent analysing and placing.
    pub planning_time: Duration,
}

impl Plan {
    /// The plan as JSON: `model`, `steps`, `align`, `strategy`, `naive_bytes`,
    /// `lower_bound_bytes`, `arena_bytes`, `optimal`, `tensors` (each with `name`, `bytes`,
    /// `first_step`, `last_step`, `offset`, `alias_of`), plus `method` and `skipped`.
    /// It holds no timings, so the same graph and options give the same document byte
    /// for byte ([`Plan::planning_time`] is in the struct for those who want it).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let tensors: Vec<serde_json::Value> = self
            .tensors
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "bytes": t.bytes,
                    "first_step": t.first_step,
                    "last_step": t.last_step,
                    "offset": t.offset,
                    "alias_of": t.alias_of,
                })
            })
            .collect();
        let skipped: Vec<serde_json::Value> = self
            .skipped
            .iter()
            .map(|u| json!({"name": u.name, "producer_op": u.producer_op, "reason": u.reason}))
            .collect();
        json!({
            "model": self.model,
            "steps": self.steps,
            "align": self.align,
            "strategy": self.strategy.name(),
            "method": self.method,
            "naive_bytes": self.naive_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "arena_bytes": self.arena_bytes,
            "optimal": self.optimal,
            "tensors": tensors,
            "skipped": skipped,
        })
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&PlannedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Checks the plan again: offsets aligned, the arena covers every tensor, and
    /// tensors live at the same step use disjoint bytes unless one aliases the
    /// other (directly or along a chain). [`plan`] has already done this; it is for
    /// plans that were edited or deserialised.
    ///
    /// # Errors
    ///
    /// [`LifetimeError::InvalidPlan`] naming the tensor(s) at fault.
    pub fn validate(&self) -> Result<(), LifetimeError> {
        place::check_align(self.align)?;
        let b = self.buffers()?;
        place::validate_layout(&b.records, &b.offsets, self.align, self.arena_bytes, |i| {
            self.tensors[b.owners[i]].name.clone()
        })
    }

    /// Groups the tensors into buffers: `(records, offsets, owner names)`.
    pub(crate) fn buffers(&self) -> Result<Buffers, LifetimeError> {
        if self.tensors.iter().all(|t| t.alias_of.is_none()) {
            // No aliases: one buffer per tensor.
            return Ok(Buffers {
                records: self
                    .tensors
                    .iter()
                    .map(|t| Record::new(t.bytes, t.first_step, t.last_step))
                    .collect(),
                offsets: self.tensors.iter().map(|t| t.offset).collect(),
                owners: (0..self.tensors.len()).collect(),
            });
        }
        let by_name: HashMap<&str, usize> = self
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        let mut owner_of = vec![usize::MAX; self.tensors.len()];
        for (i, owner) in owner_of.iter_mut().enumerate() {
            let mut cur = i;
            let mut hops = 0;
            while let Some(target) = &self.tensors[cur].alias_of {
                let Some(&next) = by_name.get(target.as_str()) else {
                    return Err(LifetimeError::InvalidPlan {
                        tensor: self.tensors[i].name.clone(),
                        other: Some(target.clone()),
                        problem: "aliases a tensor that is not in the plan".to_owned(),
                    });
                };
                hops += 1;
                if hops > self.tensors.len() {
                    return Err(LifetimeError::InvalidPlan {
                        tensor: self.tensors[i].name.clone(),
                        other: None,
                        problem: "alias chain loops".to_owned(),
                    });
                }
                cur = next;
            }
            *owner = cur;
        }
        let mut index_of_owner: BTreeMap<usize, usize> = BTreeMap::new();
        let mut records: Vec<Record> = Vec::new();
        let mut offsets = Vec::new();
        let mut owners = Vec::new();
        for (i, t) in self.tensors.iter().enumerate() {
            let owner = owner_of[i];
            let o = &self.tensors[owner];
            if t.offset != o.offset || t.bytes > o.bytes {
                return Err(LifetimeError::InvalidPlan {
                    tensor: t.name.clone(),
                    other: Some(o.name.clone()),
                    problem: format!(
                        "aliases a buffer at offset {} of {} bytes but has offset {} and {} bytes",
                        o.offset, o.bytes, t.offset, t.bytes
                    ),
                });
            }
            let k = *index_of_owner.entry(owner).or_insert_with(|| {
                records.push(Record::new(o.bytes, t.first_step, t.last_step));
                offsets.push(o.offset);
                owners.push(owner);
                records.len() - 1
            });
            let r = &mut records[k];
            r.first = r.first.min(t.first_step);
            r.last = r.last.max(t.last_step);
        }
        Ok(Buffers {
            records,
            offsets,
            owners,
        })
    }
}

/// A plan's tensors grouped into buffers (an owner and the tensors aliasing it).
pub(crate) struct Buffers {
    /// Size (the owner's) and the union of the members' lifetimes, per buffer.
    pub(crate) records: Vec<Record>,
    /// Offset per buffer.
    pub(crate) offsets: Vec<u64>,
    /// The owner's index in [`Plan::tensors`] per buffer.
    pub(crate) owners: Vec<usize>,
}

/// Analyses `graph` for the options' dimension values without planning: the steps,
/// each tensor's lifetime and size, aliases, and the skipped tensors.
///
/// # Errors
///
/// [`LifetimeError::Cycle`], [`LifetimeError::UndefinedTensor`], [`LifetimeError::DuplicateProducer`],
/// [`LifetimeError::BadTensorId`], [`LifetimeError::UnknownSizes`], [`LifetimeError::SizeOverflow`].
pub fn analyze(graph: &Graph, opts: &PlanOptions) -> Result<Analysis, LifetimeError> {
    Structure::new(graph)?.bind(&opts.dims, opts.unknown == Unknown::Skip, opts.inplace)
}

/// Analyses `graph` and places its activations into one arena.
///
/// ```
/// use memwarden_lifetime::ir::{Graph, Node, Tensor};
/// use memwarden_lifetime::{PlanOptions, Strategy, plan};
///
/// let mut g = Graph::new("chain");
/// let x = g.add_tensor(Tensor::with_bytes("x", 1000));
/// let y = g.add_tensor(Tensor::with_bytes("y", 1000));
/// let z = g.add_tensor(Tensor::with_bytes("z", 1000));
/// g.add_node(Node::new("a", "Relu", &[x], &[y]));
/// g.add_node(Node::new("b", "Relu", &[y], &[z]));
/// g.inputs = vec![x];
/// g.outputs = vec![z];
///
/// let plan = plan(&g, &PlanOptions { align: 1, ..PlanOptions::default() })?;
/// assert_eq!(plan.steps, 2);
/// assert_eq!(plan.naive_bytes, 3000);
/// assert_eq!(plan.lower_bound_bytes, 2000);
/// assert_eq!(plan.arena_bytes, 2000); // z reuses x's bytes
/// # Ok::<(), memwarden_lifetime::LifetimeError>(())
/// ```
///
/// # Errors
///
/// Those of [`analyze`], [`LifetimeError::InvalidAlignment`], and [`LifetimeError::InvalidPlan`]
/// when the plan fails validation (a bug: no unchecked plan is ever returned).
pub fn plan(graph: &Graph, opts: &PlanOptions) -> Result<Plan, LifetimeError> {
    let started = Instant::now();
    place::check_align(opts.align)?;
    let analysis = analyze(graph, opts)?;
    plan_analysis(analysis, opts, started)
}

/// Places an analysis (see [`plan`]).
pub(crate) fn plan_analysis(
    analysis: Analysis,
    opts: &PlanOptions,
    started: Instant,
) -> Result<Plan, LifetimeError> {
    place::check_align(opts.align)?;
    let buffers = analysis.buffers();
    let records: Vec<Record> = buffers.iter().map(|(_, r)| *r).collect();
    let layout: Layout =
        place::compute_layout(&records, opts.strategy, opts.align, &opts.budget())?;
    place::validate_layout(
        &records,
        &layout.offsets,
        opts.align,
        layout.arena_bytes,
        |i| analysis.tensors[buffers[i].0].name.clone(),
    )?;
    let mut offset_of_owner = vec![0u64; analysis.tensors.len()];
    for ((owner, _), &off) in buffers.iter().zip(&layout.offsets) {
        offset_of_owner[*owner] = off;
    }
    let Analysis {
        model,
        steps,
        tensors,
        skipped,
        root,
    } = analysis;
    let tensors = tensors
        .into_iter()
        .enumerate()
        .map(|(i, t)| PlannedTensor {
            name: t.name,
            bytes: t.bytes,
            first_step: t.first_step,
            last_step: t.last_step,
            offset: offset_of_owner[root[i]],
            alias_of: t.alias_of,
            producer_op: t.producer_op,
        })
        .collect();
    let plan = Plan {
        model,
        steps: steps.len(),
        schedule: steps,
        align: opts.align,
        strategy: opts.strategy,
        method: layout.method,
        naive_bytes: layout.naive_bytes,
        lower_bound_bytes: layout.lower_bound_bytes,
        arena_bytes: layout.arena_bytes,
        optimal: layout.optimal,
        tensors,
        skipped,
        planning_time: started.elapsed(),
    };
    // The layout was validated record by record; check the assembled plan too, so
    // that a mistake in grouping aliases cannot slip through.
    plan.validate()?;
    Ok(plan)
}
