//! Lifetime analysis: topological order, constant folding, the step sequence (with
//! control-flow bodies linearised into it), lifetimes, and then, for one binding of
//! the symbolic dimensions, byte sizes, aliases and the buffers to place.
//!
//! The work is split in two so that re-planning for new symbol values (dynamic
//! shapes) redoes only the cheap half: [`Structure`] depends on the graph alone;
//! [`Structure::bind`] turns it into an [`Analysis`] for one set of values.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use crate::error::{LifetimeError, UnknownTensor};
use crate::ir::{Dim, Graph, TensorId, TensorKind};
use crate::place::Record;

/// One step of the linearised schedule: the node that runs there.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Step {
    /// The node's name; body nodes carry their `If_3/then_branch/` prefix. A
    /// control-flow node whose bodies compute nothing gets a step of its own, under
    /// its own name.
    pub node: String,
    /// The operator.
    pub op: String,
}

/// A tensor's lifetime and size, as the analysis found them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TensorLifetime {
    /// The name (body tensors carry their `node/subgraph/` prefix).
    pub name: String,
    /// Size in bytes for the bound dimensions.
    pub bytes: u64,
    /// The step that produces it (0 for a graph input).
    pub first_step: usize,
    /// The last step that reads it (the last step for a graph output).
    pub last_step: usize,
    /// The tensor whose buffer it shares: the input it overwrites in place, or for an
    /// `If` branch output the `If` output it is written into.
    pub alias_of: Option<String>,
    /// The operator that produces it (`None` for a graph or body input).
    pub producer_op: Option<String>,
}

/// The lifetimes of a graph's activations for one binding of its symbols.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Analysis {
    /// The graph's name.
    pub model: String,
    /// The schedule: one entry per step.
    pub steps: Vec<Step>,
    /// Every live activation of known size: graph inputs first, then the outputs of
    /// each step in step order.
    pub tensors: Vec<TensorLifetime>,
    /// Tensors of unknown size, left out under [`Unknown::Skip`](crate::Unknown::Skip).
    pub skipped: Vec<UnknownTensor>,
    /// For each tensor, the index of the tensor that owns its buffer (itself when it
    /// aliases nothing).
    pub(crate) root: Vec<usize>,
}

impl Analysis {
    /// The buffers to place, one per tensor that aliases nothing, in tensor order:
    /// `(tensor index of the owner, record)`. A buffer lives from its first member's
    /// birth to its last member's death and has its owner's size.
    pub(crate) fn buffers(&self) -> Vec<(usize, Record)> {
        let mut span: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for (i, t) in self.tensors.iter().enumerate() {
            let e = span
                .entry(self.root[i])
                .or_insert((t.first_step, t.last_step));
            e.0 = e.0.min(t.first_step);
            e.1 = e.1.max(t.last_step);
        }
        span.into_iter()
            .map(|(r, (first, last))| (r, Record::new(self.tensors[r].bytes, first, last)))
            .collect()
    }

    /// Sum of the buffer sizes (each tensor counted once, aliases not at all),
    /// saturating at `u64::MAX` (which [`plan`](crate::plan) refuses as
    /// [`LifetimeError::SizeOverflow`]).
    pub fn naive_bytes(&self) -> u64 {
        self.buffers()
            .iter()
            .fold(0u64, |sum, (_, r)| sum.saturating_add(r.bytes))
    }

    /// Max over steps of the bytes of the buffers live at that step.
    pub fn lower_bound_bytes(&self) -> u64 {
        let records: Vec<Record> = self.buffers().into_iter().map(|(_, r)| r).collect();
        crate::place::lower_bound(&records)
    }
}

/// Operators whose output may overwrite their first input.
const UNARY_ELEMENTWISE: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Celu",
    "Clip",
    "Cos",
    "Cosh",
    "Dropout",
    "Elu",
    "Erf",
    "Exp",
    "Floor",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "Log",
    "Mish",
    "Neg",
    "Not",
    "Reciprocal",
    "Relu",
    "Round",
    "Selu",
    "Shrink",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Softplus",
    "Softsign",
    "Sqrt",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
];

/// Operators whose output may overwrite any one of their inputs of the same shape.
const NARY_ELEMENTWISE: &[&str] = &[
    "Add", "And", "Div", "Max", "Mean", "Min", "Mod", "Mul", "Or", "Pow", "PRelu", "Sub", "Sum",
    "Where", "Xor",
];

/// Whether an operator is elementwise in the sense of in-place aliasing, and which
/// of its inputs its output may overwrite (`Some(1)`: the first only; `None`: any).
fn inplace_inputs(op: &str) -> Option<Option<usize>> {
    if UNARY_ELEMENTWISE.contains(&op) {
        Some(Some(1))
    } else if NARY_ELEMENTWISE.contains(&op) {
        Some(None)
    } else {
        None
    }
}

/// What a flattened tensor is, which decides what may happen to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// An input of the top-level graph: caller data, never overwritten.
    GraphInput,
    /// An input of a `Loop`/`Scan` body (iteration number, condition, carried
    /// values, scan slices): written by the executor, live through the whole window.
    BodyInput,
    /// The output of a step.
    Produced,
    /// The output of a control-flow node, written while its window runs.
    ControlOutput,
}

/// A tensor of the linearised graph.
#[derive(Clone, Debug)]
struct Flat {
    name: String,
    elem_bytes: u64,
    shape: Option<Vec<Dim>>,
    producer_op: Option<String>,
    role: Role,
    /// The graph instance (top level or one body) it belongs to.
    scope: u32,
    born: usize,
    last_read: Option<usize>,
    /// Lives at least to this step (graph and body outputs, body inputs).
    keep_to: Option<usize>,
    /// A graph or body output: must stay intact, so it is never overwritten in place.
    output: bool,
    /// An `If` branch output is written into the `If`'s output buffer.
    alias_to: Option<usize>,
}

impl Flat {
    fn last(&self) -> Option<usize> {
        match (self.last_read, self.keep_to) {
            (None, None) => match self.role {
                // A graph input nobody reads still arrives at step 0.
                Role::GraphInput | Role::BodyInput => Some(self.born),
                Role::Produced | Role::ControlOutput => None,
            },
            (a, b) => Some(self.born.max(a.unwrap_or(0)).max(b.unwrap_or(0))),
        }
    }

    fn read(&mut self, step: usize) {
        self.last_read = Some(self.last_read.map_or(step, |l| l.max(step)));
    }

    fn keep(&mut self, step: usize) {
        self.keep_to = Some(self.keep_to.map_or(step, |l| l.max(step)));
    }
}

/// One step of the flattened schedule, with what in-place aliasing needs.
#[derive(Clone, Debug)]
struct FlatStep {
    step: Step,
    scope: u32,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
}

/// What a tensor of one graph level stands for in the flattened graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Not yet produced.
    Undefined,
    /// A weight or constant-folded value: outside the arena.
    Const,
    /// A flattened tensor.
    Flat(usize),
}

/// The binding-independent half of the analysis.
#[derive(Clone, Debug)]
pub(crate) struct Structure {
    model: String,
    steps: Vec<FlatStep>,
    flats: Vec<Flat>,
    symbols: BTreeSet<String>,
}

impl Structure {
    /// Orders, folds and linearises `graph`.
    pub(crate) fn new(graph: &Graph) -> Result<Self, LifetimeError> {
        let mut b = Builder {
            steps: Vec::with_capacity(graph.nodes.len()),
            flats: Vec::with_capacity(graph.tensors.len()),
            next_scope: 0,
        };
        let result = b.graph(graph, "", None)?;
        let last = b.steps.len().saturating_sub(1);
        for f in result.pending_keep {
            b.flats[f].keep(last);
        }
        let mut symbols = BTreeSet::new();
        for f in &b.flats {
            for d in f.shape.iter().flatten() {
                if let Dim::Sym(s) = d {
                    symbols.insert(s.clone());
                }
            }
        }
        Ok(Self {
            model: graph.name.clone(),
            steps: b.steps,
            flats: b.flats,
            symbols,
        })
    }

    /// The symbols the sizes of the live tensors depend on.
    pub(crate) fn symbols(&self) -> &BTreeSet<String> {
        &self.symbols
    }

    /// Sizes, aliases and buffers for one binding.
    pub(crate) fn bind(
        &self,
        dims: &BTreeMap<String, u64>,
        skip_unknown: bool,
        inplace: bool,
    ) -> Result<Analysis, LifetimeError> {
        // Live flats get a tensor index; dead ones (never read, not an output) none.
        let mut index: Vec<Option<usize>> = vec![None; self.flats.len()];
        let mut tensors = Vec::new();
        let mut skipped = Vec::new();
        let mut kept: Vec<usize> = Vec::new();
        for (fi, f) in self.flats.iter().enumerate() {
            let Some(last) = f.last() else { continue };
            match size_of(f, dims)? {
                Ok(bytes) => {
                    index[fi] = Some(tensors.len());
                    kept.push(fi);
                    tensors.push(TensorLifetime {
                        name: f.name.clone(),
                        bytes,
                        first_step: f.born,
                        last_step: last,
                        alias_of: None,
                        producer_op: f.producer_op.clone(),
                    });
                }
                Err(reason) => skipped.push(UnknownTensor {
                    name: f.name.clone(),
                    producer_op: f.producer_op.clone(),
                    reason,
                }),
            }
        }
        if !skipped.is_empty() && !skip_unknown {
            return Err(LifetimeError::UnknownSizes { tensors: skipped });
        }
        let n = tensors.len();
        let mut root: Vec<usize> = (0..n).collect();
        // Per buffer owner: last step of the union, and whether it must stay intact.
        let mut buf_last: Vec<usize> = tensors.iter().map(|t| t.last_step).collect();
        let mut protected: Vec<bool> = kept
            .iter()
            .map(|&fi| {
                let f = &self.flats[fi];
                f.output || matches!(f.role, Role::GraphInput | Role::BodyInput)
            })
            .collect();

        // `If` branch outputs written straight into the `If` output's buffer. The
        // branch output's need to stay intact ends with the window, which the `If`
        // output's own lifetime covers, so its protection does not carry over.
        for (ti, &fi) in kept.iter().enumerate() {
            let Some(target) = self.flats[fi].alias_to else {
                continue;
            };
            let Some(tj) = index[target] else { continue };
            let owner = find(&root, tj);
            if tensors[ti].bytes <= tensors[owner].bytes && owner != ti {
                root[ti] = tj;
                tensors[ti].alias_of = Some(tensors[tj].name.clone());
                buf_last[owner] = buf_last[owner].max(buf_last[ti]);
            }
        }

        if inplace {
            for (s, st) in self.steps.iter().enumerate() {
                let Some(which) = inplace_inputs(&st.step.op) else {
                    continue;
                };
                let Some(&out_f) = st.outputs.first() else {
                    continue;
                };
                let Some(to) = index[out_f] else { continue };
                if root[to] != to {
                    continue;
                }
                let candidates = match which {
                    Some(k) => &st.inputs[..k.min(st.inputs.len())],
                    None => &st.inputs[..],
                };
                for &in_f in candidates {
                    let Some(ti) = index[in_f] else { continue };
                    let owner = find(&root, ti);
                    let (fi_in, fi_out) = (&self.flats[in_f], &self.flats[out_f]);
                    let fits = fi_in.scope == st.scope
                        && fi_in.shape.is_some()
                        && fi_in.shape == fi_out.shape
                        && fi_in.elem_bytes == fi_out.elem_bytes
                        && tensors[ti].bytes == tensors[to].bytes
                        && tensors[owner].bytes == tensors[to].bytes
                        && buf_last[owner] == s
                        && !protected[owner];
                    if fits {
                        root[to] = ti;
                        tensors[to].alias_of = Some(tensors[ti].name.clone());
                        buf_last[owner] = buf_last[owner].max(buf_last[to]);
                        // An output that must outlive the graph keeps the whole buffer.
                        protected[owner] |= protected[to];
                        break;
                    }
                }
            }
        }
        // Point every member at its buffer's owner.
        let root: Vec<usize> = (0..n).map(|i| find(&root, i)).collect();
        Ok(Analysis {
            model: self.model.clone(),
            steps: self.steps.iter().map(|s| s.step.clone()).collect(),
            tensors,
            skipped,
            root,
        })
    }
}

/// The owner of `i`'s buffer: the end of its alias chain.
fn find(parent: &[usize], mut i: usize) -> usize {
    while parent[i] != i {
        i = parent[i];
    }
    i
}

/// Byte size of a flat tensor: `Ok(Ok(bytes))`, `Ok(Err(why unknown))`, or an
/// overflow error.
fn size_of(f: &Flat, dims: &BTreeMap<String, u64>) -> Result<Result<u64, String>, LifetimeError> {
    let Some(shape) = &f.shape else {
        return Ok(Err("no shape".to_owned()));
    };
    let mut bytes = f.elem_bytes;
    for d in shape {
        let extent = match d {
            Dim::Known(k) => *k,
            Dim::Sym(s) => match dims.get(s) {
                Some(v) => *v,
                None => return Ok(Err(format!("unbound symbol {s}"))),
            },
        };
        bytes = bytes
            .checked_mul(extent)
            .ok_or_else(|| LifetimeError::SizeOverflow {
                tensor: f.name.clone(),
            })?;
    }
    Ok(Ok(bytes))
}

/// What linearising one graph level leaves for its caller.
struct Linearised {
    /// Slots of the graph's outputs, in order.
    outputs: Vec<Slot>,
    /// Flats that live to the end of the window the caller gives this graph (its
    /// outputs, and a body's inputs).
    pending_keep: Vec<usize>,
}

struct Builder {
    steps: Vec<FlatStep>,
    flats: Vec<Flat>,
    next_scope: u32,
}

/// A node's label in prefixes: its name, or `op_index` when it has none.
fn node_label(g: &Graph, i: usize) -> Cow<'_, str> {
    let n = &g.nodes[i];
    if n.name.is_empty() {
        Cow::Owned(format!("{}_{i}", n.op))
    } else {
        Cow::Borrowed(&n.name)
    }
}

/// What defines a tensor of one graph level, for duplicate detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Def {
    Capture,
    Input,
    Node(usize),
}

impl Def {
    fn describe(self, g: &Graph) -> String {
        match self {
            Def::Capture => "a capture".to_owned(),
            Def::Input => "graph input".to_owned(),
            Def::Node(i) => node_label(g, i).into_owned(),
        }
    }
}

impl Builder {
    fn new_flat(
        &mut self,
        g: &Graph,
        t: TensorId,
        prefix: &str,
        producer_op: Option<String>,
        role: Role,
        scope: u32,
    ) -> usize {
        let tensor = &g.tensors[t.index()];
        self.flats.push(Flat {
            name: format!("{prefix}{}", tensor.name),
            elem_bytes: tensor.elem_bytes,
            shape: tensor.shape.clone(),
            producer_op,
            role,
            scope,
            born: self.steps.len(),
            last_read: None,
            keep_to: None,
            output: false,
            alias_to: None,
        });
        self.flats.len() - 1
    }

    /// Linearises graph `g` (the top level when `outer` is `None`, else a body whose
    /// captures index `outer`), appending its steps.
    fn graph(
        &mut self,
        g: &Graph,
        prefix: &str,
        outer: Option<&[Slot]>,
    ) -> Result<Linearised, LifetimeError> {
        let scope = self.next_scope;
        self.next_scope += 1;
        let graph_name = if g.name.is_empty() {
            prefix.trim_end_matches('/').to_owned()
        } else {
            g.name.clone()
        };
        check_ids(g, &graph_name, outer.map(<[Slot]>::len))?;
        let mut slots = vec![Slot::Undefined; g.tensors.len()];
        for (i, t) in g.tensors.iter().enumerate() {
            if t.kind == TensorKind::Constant {
                slots[i] = Slot::Const;
            }
        }
        // Which graph-level fact defines each tensor, for duplicate detection.
        let mut defined_by: Vec<Option<Def>> = vec![None; g.tensors.len()];
        if let Some(outer) = outer {
            for &(inner, from) in &g.captures {
                slots[inner.index()] = match outer[from.index()] {
                    Slot::Undefined => {
                        return Err(LifetimeError::UndefinedTensor {
                            tensor: g.tensors[inner.index()].name.clone(),
                            node: format!("{graph_name} (capture)"),
                        });
                    }
                    s => s,
                };
                defined_by[inner.index()] = Some(Def::Capture);
            }
        }
        let mut pending_keep = Vec::new();
        let input_role = if outer.is_some() {
            Role::BodyInput
        } else {
            Role::GraphInput
        };
        for &t in &g.inputs {
            if let Some(first) = defined_by[t.index()] {
                return Err(LifetimeError::DuplicateProducer {
                    tensor: g.tensors[t.index()].name.clone(),
                    first: first.describe(g),
                    second: "graph input".to_owned(),
                });
            }
            defined_by[t.index()] = Some(Def::Input);
            if slots[t.index()] == Slot::Const {
                continue;
            }
            let f = self.new_flat(g, t, prefix, None, input_role, scope);
            if outer.is_some() {
                pending_keep.push(f);
            }
            slots[t.index()] = Slot::Flat(f);
        }

        // Producers and the dependency edges between nodes.
        let mut producer: Vec<Option<usize>> = vec![None; g.tensors.len()];
        for (ni, node) in g.nodes.iter().enumerate() {
            for &o in &node.outputs {
                if let Some(first) = defined_by[o.index()] {
                    return Err(LifetimeError::DuplicateProducer {
                        tensor: g.tensors[o.index()].name.clone(),
                        first: first.describe(g),
                        second: node_label(g, ni).into_owned(),
                    });
                }
                defined_by[o.index()] = Some(Def::Node(ni));
                producer[o.index()] = Some(ni);
            }
        }
        let order = topo_order(g, &producer)?;

        for ni in order {
            let node = &g.nodes[ni];
            let label = node_label(g, ni);
            let mut in_flats = Vec::new();
            let mut all_const = true;
            for t in effective_inputs(node) {
                match slots[t.index()] {
                    Slot::Undefined => {
                        return Err(LifetimeError::UndefinedTensor {
                            tensor: format!("{prefix}{}", g.tensors[t.index()].name),
                            node: format!("{prefix}{label}"),
                        });
                    }
                    Slot::Const => {}
                    Slot::Flat(f) => {
                        all_const = false;
                        if !in_flats.contains(&f) {
                            in_flats.push(f);
                        }
                    }
                }
            }
            if all_const {
                for &o in &node.outputs {
                    slots[o.index()] = Slot::Const;
                }
                continue;
            }
            if node.subgraphs.is_empty() {
                let s = self.steps.len();
                let explicit: Vec<usize> = node
                    .inputs
                    .iter()
                    .flatten()
                    .filter_map(|t| match slots[t.index()] {
                        Slot::Flat(f) => Some(f),
                        _ => None,
                    })
                    .collect();
                for &f in &in_flats {
                    self.flats[f].read(s);
                }
                let mut outs = Vec::new();
                for &o in &node.outputs {
                    let f =
                        self.new_flat(g, o, prefix, Some(node.op.clone()), Role::Produced, scope);
                    slots[o.index()] = Slot::Flat(f);
                    outs.push(f);
                }
                self.steps.push(FlatStep {
                    step: Step {
                        node: format!("{prefix}{label}"),
                        op: node.op.clone(),
                    },
                    scope,
                    inputs: explicit,
                    outputs: outs,
                });
            } else {
                self.control(g, ni, &label, prefix, scope, &mut slots, &in_flats)?;
            }
        }

        let mut outputs = Vec::new();
        for &t in &g.outputs {
            let slot = slots[t.index()];
            match slot {
                Slot::Undefined => {
                    return Err(LifetimeError::UndefinedTensor {
                        tensor: format!("{prefix}{}", g.tensors[t.index()].name),
                        node: "graph output".to_owned(),
                    });
                }
                Slot::Const => {}
                Slot::Flat(f) => {
                    // A capture passed straight through belongs to the outer scope: the
                    // executor copies it; only this scope's tensors are kept here.
                    if self.flats[f].scope == scope {
                        self.flats[f].output = true;
                        pending_keep.push(f);
                    }
                }
            }
            outputs.push(slot);
        }
        Ok(Linearised {
            outputs,
            pending_keep,
        })
    }

    /// Linearises an `If`, `Loop` or `Scan` node: its bodies' steps in order, one
    /// window after the other (see the crate docs for the rule).
    #[allow(clippy::too_many_arguments)] // the state of the enclosing level, passed down once
    fn control(
        &mut self,
        g: &Graph,
        ni: usize,
        label: &str,
        prefix: &str,
        scope: u32,
        slots: &mut [Slot],
        in_flats: &[usize],
    ) -> Result<(), LifetimeError> {
        let node = &g.nodes[ni];
        let start = self.steps.len();
        let mut outs = Vec::new();
        for &o in &node.outputs {
            let f = self.new_flat(
                g,
                o,
                prefix,
                Some(node.op.clone()),
                Role::ControlOutput,
                scope,
            );
            slots[o.index()] = Slot::Flat(f);
            outs.push(f);
        }
        let is_if = node.op == "If";
        for (sub_name, body) in &node.subgraphs {
            let sub_prefix = format!("{prefix}{label}/{sub_name}/");
            let body_start = self.steps.len();
            let body_scope = self.next_scope;
            let lin = self.graph(body, &sub_prefix, Some(slots))?;
            let body_end = self.steps.len().max(body_start + 1) - 1;
            for f in lin.pending_keep {
                self.flats[f].keep(body_end);
            }
            if is_if {
                for (k, slot) in lin.outputs.iter().enumerate() {
                    let (Slot::Flat(f), Some(&target)) = (slot, outs.get(k)) else {
                        continue;
                    };
                    let flat = &self.flats[*f];
                    if matches!(flat.role, Role::Produced | Role::ControlOutput)
                        && flat.scope == body_scope
                        && flat.alias_to.is_none()
                    {
                        self.flats[*f].alias_to = Some(target);
                    }
                }
            }
        }
        if self.steps.len() == start {
            // Bodies that compute nothing: the node takes one step itself.
            self.steps.push(FlatStep {
                step: Step {
                    node: format!("{prefix}{label}"),
                    op: node.op.clone(),
                },
                scope,
                inputs: Vec::new(),
                outputs: Vec::new(),
            });
        }
        let end = self.steps.len() - 1;
        for &f in in_flats {
            self.flats[f].read(end);
        }
        Ok(())
    }
}

/// A node's inputs plus the enclosing-graph tensors its bodies capture: everything
/// that must exist before it runs.
fn effective_inputs(node: &crate::ir::Node) -> impl Iterator<Item = TensorId> + '_ {
    node.inputs.iter().flatten().copied().chain(
        node.subgraphs
            .iter()
            .flat_map(|(_, body)| body.captures.iter().map(|&(_, outer)| outer)),
    )
}

fn check_ids(g: &Graph, graph_name: &str, outer_len: Option<usize>) -> Result<(), LifetimeError> {
    let len = g.tensors.len();
    let bad = |id: TensorId, context: String, len: usize, graph: &str| LifetimeError::BadTensorId {
        id: id.0,
        context,
        graph: graph.to_owned(),
        len,
    };
    for &t in g.inputs.iter().chain(&g.outputs) {
        if t.index() >= len {
            return Err(bad(t, "inputs/outputs".to_owned(), len, graph_name));
        }
    }
    for (i, n) in g.nodes.iter().enumerate() {
        for &t in n.inputs.iter().flatten().chain(&n.outputs) {
            if t.index() >= len {
                return Err(bad(
                    t,
                    format!("node {}", node_label(g, i)),
                    len,
                    graph_name,
                ));
            }
        }
        // The bodies' captures index this graph: they order the node (a capture is
        // one of its inputs), which happens before the bodies themselves are checked.
        for (sub, body) in &n.subgraphs {
            for &(_, from) in &body.captures {
                if from.index() >= len {
                    return Err(bad(
                        from,
                        format!("captures of {}/{sub}", node_label(g, i)),
                        len,
                        graph_name,
                    ));
                }
            }
        }
    }
    for &(inner, from) in &g.captures {
        if inner.index() >= len {
            return Err(bad(inner, "captures".to_owned(), len, graph_name));
        }
        match outer_len {
            Some(ol) if from.index() < ol => {}
            Some(ol) => {
                return Err(bad(
                    from,
                    "captures (enclosing graph)".to_owned(),
                    ol,
                    graph_name,
                ));
            }
            None => {
                return Err(LifetimeError::BadTensorId {
                    id: from.0,
                    context: "captures of a top-level graph".to_owned(),
                    graph: graph_name.to_owned(),
                    len: 0,
                });
            }
        }
    }
    Ok(())
}

/// Kahn's algorithm taking the ready node with the smallest index first: when the
/// nodes are already in a valid order, that order is kept exactly.
fn topo_order(g: &Graph, producer: &[Option<usize>]) -> Result<Vec<usize>, LifetimeError> {
    let n = g.nodes.len();
    let mut indegree = vec![0usize; n];
    // Edges (producer, consumer), each once, then grouped by producer.
    let mut edges: Vec<(usize, usize)> = Vec::new();
    let mut preds: Vec<usize> = Vec::new();
    for (ni, node) in g.nodes.iter().enumerate() {
        preds.clear();
        preds.extend(effective_inputs(node).filter_map(|t| producer[t.index()]));
        preds.sort_unstable();
        preds.dedup();
        indegree[ni] = preds.len();
        edges.extend(preds.iter().map(|&p| (p, ni)));
    }
    edges.sort_unstable();
    let mut starts = vec![0usize; n + 1];
    for &(p, _) in &edges {
        starts[p + 1] += 1;
    }
    for i in 0..n {
        starts[i + 1] += starts[i];
    }
    let users = |p: usize| edges[starts[p]..starts[p + 1]].iter().map(|&(_, u)| u);
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for u in users(i) {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.push(Reverse(u));
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Every node left over waits on another left-over node; walking back along such
    // predecessors must revisit a node, and the walk from there is a cycle.
    let left: Vec<bool> = (0..n).map(|i| indegree[i] > 0).collect();
    let pred_left = |i: usize| {
        effective_inputs(&g.nodes[i])
            .filter_map(|t| producer[t.index()])
            .find(|&p| left[p])
    };
    let start = (0..n).find(|&i| left[i]).unwrap_or(0);
    let mut seen = vec![usize::MAX; n];
    let mut path = Vec::new();
    let mut cur = start;
    while seen[cur] == usize::MAX {
        seen[cur] = path.len();
        path.push(cur);
        match pred_left(cur) {
            Some(p) => cur = p,
            None => break,
        }
    }
    let from = if seen[cur] == usize::MAX {
        0
    } else {
        seen[cur]
    };
    // The walk went against the edges; reverse it so each node feeds the next.
    let mut cycle: Vec<String> = path[from..]
        .iter()
        .map(|&i| node_label(g, i).into_owned())
        .collect();
    cycle.reverse();
    Err(LifetimeError::Cycle { nodes: cycle })
}
