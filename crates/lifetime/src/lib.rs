//! Tensor lifetime analysis and arena planning for inference graphs.
//!
//! An inference runtime that allocates every intermediate tensor separately needs
//! the sum of their sizes; one that knows when each tensor is born and when it dies
//! can put all of them in one arena where tensors that never live together share
//! bytes. This crate finds the lifetimes ([`analyze`]), places the tensors
//! ([`plan`], or [`plan_records`] for bare `(bytes, first, last)` records), checks
//! the result, and materialises it ([`Arena`]).
//!
//! - [`ir::Graph`]: the graph IR (built by hand, read from the [JSON graph
//!   format](json) with [`ir::Graph::from_json`], or imported from ONNX with the
//!   `onnx` feature).
//! - [`PlanOptions`] / [`Strategy`]: `naive`, TFLite's `greedy-size` and
//!   `greedy-breadth`, `best` and `exact`; alignment, symbol values, in-place
//!   aliasing, the policy for tensors of unknown size, and a capacity to fit in
//!   ([`PlanOptions::capacity`]).
//! - [`Plan`]: offsets, the arena size, the lower bound, whether the arena is proved
//!   optimal, per-tensor lifetimes and aliases; [`Plan::to_json`] for other tools,
//!   [`csv`] for MiniMalloc's buffer lists in and any plan out.
//! - [`plan_range`] and [`Planner`]: dynamic shapes. [`Arena`] / [`StepView`]:
//!   the memory. [`synth`]: seeded random graphs.
//!
//! ```
//! use memwarden_lifetime::ir::{Graph, Node, Tensor};
//! use memwarden_lifetime::{Arena, PlanOptions, Strategy, plan};
//!
//! // x -> a -> b -> c, with x also read by c: a long skip.
//! let mut g = Graph::new("skip");
//! let [x, a, b, c] = ["x", "a", "b", "c"].map(|n| g.add_tensor(Tensor::with_bytes(n, 4096)));
//! g.add_node(Node::new("n0", "Relu", &[x], &[a]));
//! g.add_node(Node::new("n1", "Relu", &[a], &[b]));
//! g.add_node(Node::new("n2", "Add", &[b, x], &[c]));
//! g.inputs = vec![x];
//! g.outputs = vec![c];
//!
//! let p = plan(&g, &PlanOptions { strategy: Strategy::Best, ..PlanOptions::default() })?;
//! assert_eq!((p.steps, p.naive_bytes, p.lower_bound_bytes), (3, 16384, 12288));
//! assert_eq!(p.arena_bytes, p.lower_bound_bytes);
//! assert_eq!(p.tensor("x").map(|t| (t.first_step, t.last_step)), Some((0, 2)));
//!
//! let mut arena = Arena::new(&p)?;
//! for s in 0..p.steps {
//!     let mut view = arena.step(s)?;
//!     for (_, bytes) in view.iter_mut() {
//!         bytes.fill(s as u8); // every live tensor's own bytes
//!     }
//! }
//! # Ok::<(), memwarden_lifetime::LifetimeError>(())
//! ```
//!
//! # The key decision: every plan is checked, and the search is exact and deterministic
//!
//! A planner bug would corrupt tensors silently at run time, so no plan leaves this
//! crate unchecked: a sweep over the buffers by first step verifies that buffers live
//! at the same step occupy disjoint bytes, that offsets honour the alignment and that
//! the arena covers everything, and a failure is [`LifetimeError::InvalidPlan`], never a
//! plan. `best` and `exact` first try several cheap placement orders (greedy by size
//! first); on real graphs one of them nearly always reaches the lower bound and
//! planning stops there, in well under a millisecond. When none does, an exact branch
//! and bound takes over: it builds the arena bottom up one offset at a time, at each
//! level deciding first the section of time with the fewest buffers that can start
//! there, with MiniMalloc's floors, dominance rule and decomposition into independent
//! time windows to prune (the details are in the `exact` module's source). It proves
//! a layout optimal when it meets the lower bound or rules out every smaller height
//! ([`Plan::optimal`]); with [`PlanOptions::capacity`] it stops at the first layout
//! within the capacity or fails with [`LifetimeError::NoLayoutWithin`], saying whether
//! it proved there is none. `best` then hill-climbs over the placement order with
//! whatever effort is left. The budget is a count of work, not time, so the same input
//! always gives the same plan; the wall-clock cap ([`PlanOptions::time_budget`], 100 ms
//! by default) is only a safety net for slow machines, and a warning is logged when it
//! is what stopped the search. On MiniMalloc's production instances (154 to 454
//! buffers, `cargo bench --bench lifetime_planners`) it finds a layout within the
//! capacity in milliseconds to about two seconds.
//!
//! # Conventions
//!
//! - **Order**: Kahn's algorithm taking the lowest-indexed ready node first, so a
//!   graph whose nodes are already in a valid order keeps it. A cycle is
//!   [`LifetimeError::Cycle`], naming the nodes on it.
//! - **Constants**: initializers ([`ir::TensorKind::Constant`]), outputs of nodes
//!   with no inputs (`Constant`, ...), and outputs of nodes whose inputs are all
//!   constants, transitively, are weights: such nodes are not steps and their outputs
//!   are not in the arena.
//! - **Steps** are the other nodes in topological order, numbered from 0.
//!   **Lifetimes** are inclusive `[first_step, last_step]`: a tensor is born at the
//!   step that produces it (graph inputs at step 0) and dies at the last step that
//!   reads it; graph outputs live to the last step. An output that no step reads and
//!   that is not a graph output (an unused `Dropout` mask) is dead: not planned.
//! - **Sizes**: product of the dimensions times the element size, symbols bound from
//!   [`PlanOptions::dims`]. A tensor without a shape or with an unbound symbol is of
//!   unknown size: an error listing each with its producing op ([`Unknown::Error`],
//!   the default) or left out and listed in [`Plan::skipped`] ([`Unknown::Skip`]).
//! - `naive_bytes` is the sum of the buffer sizes, `lower_bound_bytes` the max over
//!   steps of the bytes live at that step. Offsets are multiples of the alignment (a
//!   power of two); sizes are not rounded.
//!
//! # In-place aliasing
//!
//! With [`PlanOptions::inplace`], an elementwise op (unary activations and math,
//! `Clip`, `Cast`, `Dropout`, `Identity`, inference `BatchNormalization`: the first
//! input; `Add`, `Sub`, `Mul`, `Div`, `Pow`, `Max`, `Min`, `Sum`, `Where`, ...: any
//! input) may write its first output over an input when that input's buffer dies at
//! this step and has the output's exact shape and element size (so the alias holds
//! for every value of the symbols). The output gets
//! [`alias_of`](PlannedTensor::alias_of) = the input's name and joins its buffer,
//! whose lifetime becomes the union; chains are allowed. Never overwritten: graph
//! inputs (the caller's data stays intact), graph outputs, `Loop`/`Scan` body inputs
//! and outputs, and tensors of an enclosing graph read from a body (a loop reads them
//! again next iteration). A graph output may itself be written in place over a dying
//! intermediate; its buffer then lives to the end and is protected from then on.
//!
//! # Control flow
//!
//! Bodies are linearised into the one step sequence, so that a checker that only
//! knows `[first_step, last_step]` intervals can verify the plan:
//!
//! - **`If`**: the then-branch's steps, then the else-branch's steps, in consecutive
//!   windows. A branch's internal tensors live inside its own window, so the two
//!   branches' tensors never live together and share memory naturally. The `If`'s
//!   inputs and every tensor the branches capture from the enclosing graph are read
//!   at the end of the whole window, so they live through both branches. The `If`'s
//!   outputs are born at the window's first step; a branch output computed inside
//!   the branch is written straight into the corresponding `If` output (its
//!   `alias_of` names it; same buffer, no copy), while a branch output that is a
//!   captured tensor or a constant is copied into it by the executor.
//! - **`Loop`** and **`Scan`**: the body is linearised once; that window is one
//!   iteration, and the executor reuses the body's tensors every iteration. Body
//!   inputs (iteration number, condition, loop-carried values, scan slices) live
//!   through the whole window; body outputs (carried values, scan slices) from where
//!   they are produced to the window's end. Between iterations the executor copies
//!   each carried output into its carried input (the two are distinct buffers, so a
//!   swap of offsets works too). The node's outputs (final carried values and the
//!   stacked scan outputs) are born at the window's first step, since scan outputs
//!   are written every iteration; their size needs the trip count, normally a
//!   symbolic dimension. Captured tensors and the node's inputs live to the window's
//!   end.
//! - A control-flow node whose bodies compute nothing takes one step of its own.
//!   Body tensors are named with their node and subgraph as a prefix:
//!   `If_3/then_branch/conv_out`. Nested bodies nest the rule.
//!
//! # Dynamic shapes
//!
//! [`plan_range`] plans over a range of one symbol's values and returns the plan for
//! the maximum (valid for every value: sizes only grow with a symbol) and a table of
//! naive, lower bound and arena per value (per power of two for ranges of more than
//! 64 values). A [`Planner`] analyses the graph once and caches one plan per bucket of
//! symbol values rounded up to powers of two.
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod analysis;
mod arena;
pub mod csv;
mod dynamic;
mod error;
mod exact;
pub mod ir;
pub mod json;
mod place;
mod plan;
mod rng;
pub mod synth;

#[cfg(feature = "onnx")]
pub mod onnx;

pub use analysis::{Analysis, Step, TensorLifetime};
pub use arena::{Arena, StepView};
pub use dynamic::{MAX_ROWS_PER_VALUE, Planner, RangePlan, RangeRow, plan_range};
pub use error::{LifetimeError, UnknownTensor};

pub use place::{
    DEFAULT_EFFORT, DEFAULT_TIME_CAP, Layout, Record, SearchBudget, lower_bound, plan_records,
    plan_records_budgeted,
};
pub use plan::{Plan, PlanOptions, PlannedTensor, Strategy, Unknown, analyze, plan};
