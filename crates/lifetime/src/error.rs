//! [`LifetimeError`]: every way analysing, planning or materialising a graph can fail.

use std::fmt;

/// A tensor whose byte size cannot be computed: its shape is unknown or names a
/// symbol that no binding gives a value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct UnknownTensor {
    /// The tensor's name (body tensors carry their `node/subgraph/` prefix).
    pub name: String,
    /// The operator that produces it (`None` for a graph input).
    pub producer_op: Option<String>,
    /// Why its size is unknown: `"no shape"` or `"unbound symbol N"`.
    pub reason: String,
}

impl fmt::Display for UnknownTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.producer_op {
            Some(op) => write!(f, "{} (from {op}: {})", self.name, self.reason),
            None => write!(f, "{} (graph input: {})", self.name, self.reason),
        }
    }
}

/// Why a graph could not be analysed, planned or materialised.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LifetimeError {
    /// The nodes depend on each other in a cycle; `nodes` lists the cycle in order.
    #[error("the graph has a cycle through nodes {}", .nodes.join(" -> "))]
    Cycle {
        /// Names of the nodes on the cycle, each feeding the next (and the last the first).
        nodes: Vec<String>,
    },
    /// A node reads a tensor that nothing produces: not a graph input, not a constant,
    /// not the output of any node, not captured from an enclosing graph.
    #[error("node {node} reads tensor {tensor}, which nothing produces")]
    UndefinedTensor {
        /// The tensor read.
        tensor: String,
        /// The node that reads it (or `graph output` for an output nobody produces).
        node: String,
    },
    /// Two producers write the same tensor (two nodes, or a node and the graph inputs).
    #[error("tensor {tensor} is produced twice: by {first} and by {second}")]
    DuplicateProducer {
        /// The tensor.
        tensor: String,
        /// The first producer (a node name, or `graph input`).
        first: String,
        /// The second producer.
        second: String,
    },
    /// A tensor id points outside the graph's tensor table.
    #[error("{context} refers to tensor id {id}, but graph {graph} has {len} tensors")]
    BadTensorId {
        /// The id.
        id: u32,
        /// Where it was found (a node name, `inputs`, `outputs`, `captures`).
        context: String,
        /// The graph (or body) name.
        graph: String,
        /// The number of tensors in that graph.
        len: usize,
    },
    /// Sizes of some tensors are unknown and the policy is [`Unknown::Error`](crate::Unknown::Error).
    #[error(
        "{} tensor(s) of unknown size (bind their symbols with dims, or use Unknown::Skip): {}",
        .tensors.len(),
        .tensors.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    UnknownSizes {
        /// Each tensor with its producing operator.
        tensors: Vec<UnknownTensor>,
    },
    /// A tensor's byte size does not fit in 64 bits.
    #[error("tensor {tensor}: byte size overflows 64 bits")]
    SizeOverflow {
        /// The tensor.
        tensor: String,
    },
    /// The alignment is zero or not a power of two.
    #[error("alignment {align} is not a power of two")]
    InvalidAlignment {
        /// The alignment asked for.
        align: u64,
    },
    /// A record's lifetime is empty (`first > last`).
    #[error("record {index}: first step {first} is after last step {last}")]
    BadRecord {
        /// Index of the record.
        index: usize,
        /// Its first step.
        first: usize,
        /// Its last step.
        last: usize,
    },
    /// A plan failed validation. This is a bug in a planner (or a hand-made plan):
    /// no plan is returned rather than a wrong one.
    #[error("invalid plan: {tensor}{}: {problem}", .other.as_ref().map(|o| format!(" and {o}")).unwrap_or_default())]
    InvalidPlan {
        /// The tensor at fault.
        tensor: String,
        /// The second tensor, for an overlap.
        other: Option<String>,
        /// What is wrong.
        problem: String,
    },
    /// No layout within the capacity asked for ([`PlanOptions::capacity`]): proved
    /// impossible, or not found within the search budget.
    ///
    /// [`PlanOptions::capacity`]: crate::PlanOptions::capacity
    #[error("{}", no_layout_message(*capacity, *best_bytes, *lower_bound_bytes, *proved))]
    NoLayoutWithin {
        /// The capacity asked for, in bytes.
        capacity: u64,
        /// The smallest arena found.
        best_bytes: u64,
        /// The lower bound (max bytes live at one step).
        lower_bound_bytes: u64,
        /// True when no layout within the capacity exists (the lower bound passes
        /// it, or the exact search was exhausted); false when the budget ran out.
        proved: bool,
    },
    /// A strategy name that is not `naive`, `greedy-size`, `greedy-breadth`, `best`
    /// or `exact`.
    #[error(
        "unknown strategy {name:?} (expected naive, greedy-size, greedy-breadth, best or exact)"
    )]
    UnknownStrategy {
        /// The name given.
        name: String,
    },
    /// A range of symbol values with `lo > hi`, or a dimension the graph does not use.
    #[error("bad range for dimension {dim}: {problem}")]
    BadRange {
        /// The symbol.
        dim: String,
        /// What is wrong.
        problem: String,
    },
    /// The JSON graph text is not valid JSON, or a key holds the wrong kind of value.
    #[error("JSON graph: at {at}: {problem}")]
    Json {
        /// Where: a path like `nodes[3].inputs[1]`.
        at: String,
        /// What is wrong.
        problem: String,
    },
    /// The JSON graph names a tensor nobody declared.
    #[error("JSON graph: at {at}: unknown tensor {name:?}")]
    UnknownTensorName {
        /// The name.
        name: String,
        /// Where it was used.
        at: String,
    },
    /// The JSON graph declares a tensor twice.
    #[error("JSON graph: tensor {name:?} declared twice in graph {graph:?}")]
    DuplicateName {
        /// The name.
        name: String,
        /// The graph (or body) that declares it.
        graph: String,
    },
    /// A buffer list in MiniMalloc's CSV format is malformed (see [`csv`](crate::csv)).
    #[error("line {line}: {problem}")]
    Csv {
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A buffer given to [`plan_buffers`](crate::csv::plan_buffers) has an empty
    /// interval, a step that does not fit in `usize`, or an id used before.
    #[error("buffer {id:?}: {problem}")]
    BadBuffer {
        /// The buffer's id.
        id: String,
        /// What is wrong.
        problem: String,
    },
    /// A step outside the plan, or a tensor that is not live at the step asked for.
    #[error("arena: {problem}")]
    Arena {
        /// What is wrong.
        problem: String,
    },
    /// The arena could not be allocated.
    #[error("cannot allocate a {bytes}-byte arena aligned to {align}: {reason}")]
    Allocation {
        /// Bytes asked for.
        bytes: u64,
        /// Alignment asked for.
        align: u64,
        /// What the allocator said.
        reason: String,
    },
}

fn no_layout_message(capacity: u64, best: u64, lower: u64, proved: bool) -> String {
    if lower > capacity {
        format!("proved infeasible: the lower bound is {lower} > {capacity}")
    } else if proved {
        format!(
            "proved infeasible: no layout within {capacity} bytes exists (the exact search \
             was exhausted; the best layout found needs {best} bytes)"
        )
    } else {
        format!(
            "no layout within {capacity} bytes found in the budget (the best found needs \
             {best} bytes, the lower bound is {lower})"
        )
    }
}
