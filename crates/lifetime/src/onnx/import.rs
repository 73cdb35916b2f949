//! From a decoded [`ModelProto`] to the IR [`Graph`]: tensor tables per graph,
//! name resolution through enclosing graphs (captures), a topological pass that
//! runs shape inference and merges `value_info`, and the bodies of `If`, `Loop` and
//! `Scan` as nested graphs.
//!
//! Bodies are imported when the pass reaches their node, so everything a body
//! reads from enclosing graphs is already inferred: a node's dependencies include
//! the names its bodies (at any depth) read from outside.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::rc::Rc;

use super::attrs::Attrs;
use super::infer::{NodeCtx, axis_in, infer_node, sanitize};
use super::proto::{DimensionValue, GraphProto, ModelProto, NodeProto, ValueInfoProto, data_type};
use super::value::{Info, SDim, Value, tensor_info};
use super::{ImportOptions, MAX_IR_VERSION, MIN_IR_VERSION, OnnxError};
use crate::ir::{Graph, Node, Tensor, TensorId, TensorKind};

/// The opset assumed when a model names none for the default domain.
const DEFAULT_OPSET: i64 = 21;

/// Imports `model`, read from `file`.
pub(crate) fn import_model(
    file: &str,
    model: &ModelProto,
    opts: ImportOptions,
) -> Result<Graph, OnnxError> {
    let Some(graph) = model.graph.as_ref() else {
        return Err(OnnxError::MissingGraph {
            file: file.to_owned(),
            ir_version: model.ir_version,
        });
    };
    if !(MIN_IR_VERSION..=MAX_IR_VERSION).contains(&model.ir_version) {
        return Err(OnnxError::UnsupportedIrVersion {
            file: file.to_owned(),
            ir_version: model.ir_version,
        });
    }
    let opset = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .unwrap_or_else(|| {
            log::debug!("`{file}` names no default opset; assuming {DEFAULT_OPSET}");
            DEFAULT_OPSET
        });
    let mut importer = Importer {
        file,
        opts,
        opset,
        stack: Vec::new(),
        node_names: HashMap::new(),
    };
    let name = if graph.name.is_empty() {
        file.to_owned()
    } else {
        graph.name.clone()
    };
    let (g, _) = importer.import_graph(graph, name, &[])?;
    Ok(g)
}

/// One tensor of a graph being built.
#[derive(Debug)]
struct Slot {
    name: String,
    kind: TensorKind,
    info: Info,
}

/// A graph being built: its tensors, name table and captures.
#[derive(Debug)]
struct Scope {
    name: String,
    slots: Vec<Slot>,
    names: HashMap<String, TensorId>,
    captures: Vec<(TensorId, TensorId)>,
    /// `value_info` (and output types) of node outputs not yet inferred.
    declared: HashMap<TensorId, Info>,
}

impl Scope {
    /// Adds a tensor; the caller made sure the name is free.
    fn add(&mut self, name: &str, kind: TensorKind, info: Info) -> TensorId {
        let id = TensorId(u32::try_from(self.slots.len()).unwrap_or(u32::MAX));
        self.slots.push(Slot {
            name: name.to_owned(),
            kind,
            info,
        });
        self.names.insert(name.to_owned(), id);
        id
    }

    /// A tensor's slot (ids come from this scope).
    fn slot(&self, id: TensorId) -> &Slot {
        &self.slots[id.index()]
    }
}

/// The import of one model.
#[derive(Debug)]
struct Importer<'f> {
    file: &'f str,
    opts: ImportOptions,
    opset: i64,
    /// The graph being built and those enclosing it, outermost first.
    stack: Vec<Scope>,
    /// Node names handed out so far, with the next suffix to try for each.
    node_names: HashMap<String, u32>,
}

/// What a node's bodies and outputs came to.
type CfResult = (Vec<(String, Graph)>, Vec<Info>);

impl<'f> Importer<'f> {
    fn top(&mut self) -> &mut Scope {
        self.stack
            .last_mut()
            .expect("a scope is pushed while a graph is built")
    }

    /// Defines `name` in the current graph, refusing a second definition.
    fn define(&mut self, name: &str, kind: TensorKind, info: Info) -> Result<TensorId, OnnxError> {
        let file = self.file;
        let top = self.top();
        if top.names.contains_key(name) {
            return Err(OnnxError::DuplicateTensor {
                file: file.to_owned(),
                graph: top.name.clone(),
                tensor: name.to_owned(),
            });
        }
        Ok(top.add(name, kind, info))
    }

    /// Resolves `name` from the current graph outwards. A tensor of an enclosing
    /// graph gets a tensor in every graph between (a capture), so each body lists
    /// what it reads from its parent.
    fn lookup(&mut self, name: &str) -> Option<TensorId> {
        let depth = self.stack.len();
        let k = (0..depth)
            .rev()
            .find(|&k| self.stack[k].names.contains_key(name))?;
        let mut id = *self.stack[k].names.get(name)?;
        for j in k + 1..depth {
            let outer = self.stack[j - 1].slot(id);
            let (kind, info) = (outer.kind, outer.info.clone());
            let inner = self.stack[j].add(name, kind, info);
            self.stack[j].captures.push((inner, id));
            id = inner;
        }
        Some(id)
    }

    /// A unique node name: the file's, or `{op}_{index}` for an unnamed node,
    /// with a `_k` suffix when taken.
    fn node_name(&mut self, node: &NodeProto, index: usize) -> String {
        let base = if node.name.is_empty() {
            format!("{}_{index}", node.op_type)
        } else {
            node.name.clone()
        };
        if !self.node_names.contains_key(&base) {
            self.node_names.insert(base.clone(), 1);
            return base;
        }
        loop {
            let k = self.node_names.get(&base).copied().unwrap_or(1);
            self.node_names.insert(base.clone(), k.saturating_add(1));
            let candidate = format!("{base}_{k}");
            if !self.node_names.contains_key(&candidate) {
                self.node_names.insert(candidate.clone(), 1);
                return candidate;
            }
        }
    }

    /// The type a `ValueInfoProto` declares, `None` for non-tensor or untyped values.
    fn declared(&self, vi: &ValueInfoProto) -> Result<Option<Info>, OnnxError> {
        let Some(tt) = vi.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) else {
            return Ok(None);
        };
        if tt.elem_type != data_type::UNDEFINED && data_type::elem_bytes(tt.elem_type).is_none() {
            return Err(OnnxError::UnsupportedDataType {
                file: self.file.to_owned(),
                tensor: vi.name.clone(),
                data_type: tt.elem_type,
                type_name: data_type::name(tt.elem_type),
            });
        }
        let shape = tt.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(DimensionValue::DimValue(v)) if *v >= 0 => SDim::Known(*v),
                    Some(DimensionValue::DimParam(p)) if !p.is_empty() => {
                        SDim::Sym(Rc::from(p.as_str()))
                    }
                    _ => SDim::Unknown,
                })
                .collect()
        });
        Ok(Some(Info::new(tt.elem_type, shape)))
    }

    /// Imports `g` as a graph called `name`; `hints` are what the enclosing node
    /// says of the body's inputs, by position. Returns the graph and what is known
    /// of its outputs.
    fn import_graph(
        &mut self,
        g: &GraphProto,
        name: String,
        hints: &[Option<Info>],
    ) -> Result<(Graph, Vec<Info>), OnnxError> {
        self.stack.push(Scope {
            name: name.clone(),
            slots: Vec::new(),
            names: HashMap::new(),
            captures: Vec::new(),
            declared: HashMap::new(),
        });
        let built = self.build(g, hints);
        let scope = self.stack.pop().expect("pushed above");
        let (nodes, inputs, outputs) = built?;
        let out_infos = outputs
            .iter()
            .map(|&id| scope.slot(id).info.clone())
            .collect();
        let tensors = scope
            .slots
            .into_iter()
            .map(|s| self.finish_tensor(s))
            .collect::<Result<_, _>>()?;
        let graph = Graph {
            name,
            tensors,
            nodes,
            inputs,
            outputs,
            captures: scope.captures,
        };
        Ok((graph, out_infos))
    }

    /// The IR form of a finished tensor.
    fn finish_tensor(&self, s: Slot) -> Result<Tensor, OnnxError> {
        let dtype = s.info.dtype;
        let elem = data_type::elem_bytes(dtype);
        if dtype != data_type::UNDEFINED && elem.is_none() {
            return Err(OnnxError::UnsupportedDataType {
                file: self.file.to_owned(),
                tensor: s.name,
                data_type: dtype,
                type_name: data_type::name(dtype),
            });
        }
        // A size needs both: an unknown element type makes the shape unknown too.
        let shape = match (elem, &s.info.shape) {
            (Some(_), Some(dims)) => dims.iter().map(SDim::to_dim).collect(),
            _ => None,
        };
        Ok(Tensor {
            name: s.name,
            elem_bytes: elem.unwrap_or(0),
            shape,
            kind: s.kind,
        })
    }

    /// Fills the current scope from `g`; returns nodes, inputs and outputs.
    #[allow(clippy::type_complexity)] // a private triple read right where it is made
    fn build(
        &mut self,
        g: &GraphProto,
        hints: &[Option<Info>],
    ) -> Result<(Vec<Node>, Vec<TensorId>, Vec<TensorId>), OnnxError> {
        let file = self.file;
        // Constants.
        for t in &g.initializer {
            if t.name.is_empty() {
                log::debug!("`{file}`: skipping an unnamed initializer");
                continue;
            }
            let info = tensor_info(t, &t.name, file)?;
            self.define(&t.name, TensorKind::Constant, info)?;
        }
        for sp in &g.sparse_initializer {
            let Some(v) = sp.values.as_ref().filter(|v| !v.name.is_empty()) else {
                continue;
            };
            if data_type::elem_bytes(v.data_type).is_none() {
                return Err(OnnxError::UnsupportedDataType {
                    file: file.to_owned(),
                    tensor: v.name.clone(),
                    data_type: v.data_type,
                    type_name: data_type::name(v.data_type),
                });
            }
            if sp.dims.iter().any(|&d| d < 0) {
                return Err(OnnxError::InvalidTensor {
                    file: file.to_owned(),
                    tensor: v.name.clone(),
                    reason: format!("negative dimension in {:?}", sp.dims),
                });
            }
            let shape = sp.dims.iter().map(|&d| SDim::Known(d)).collect();
            self.define(
                &v.name,
                TensorKind::Constant,
                Info::new(v.data_type, Some(shape)),
            )?;
        }
        // Inputs (an input that names an initializer is that constant).
        let mut inputs = Vec::with_capacity(g.input.len());
        for (k, vi) in g.input.iter().enumerate() {
            if let Some(&id) = self.top().names.get(&vi.name)
                && self.top().slot(id).kind == TensorKind::Constant
            {
                continue;
            }
            let declared = self.declared(vi)?;
            let hint = hints.get(k).cloned().flatten();
            let info = if self.opts.use_value_info || hint.is_none() {
                combine(declared, hint)
            } else {
                combine(hint, declared)
            };
            inputs.push(self.define(&vi.name, TensorKind::Activation, info)?);
        }
        // Node names and outputs.
        let names: Vec<String> = g
            .node
            .iter()
            .enumerate()
            .map(|(i, n)| self.node_name(n, i))
            .collect();
        let first_output = self.top().slots.len();
        let mut out_ids: Vec<Vec<Option<TensorId>>> = Vec::with_capacity(g.node.len());
        for n in &g.node {
            let mut ids = Vec::with_capacity(n.output.len());
            for o in &n.output {
                ids.push(if o.is_empty() {
                    None
                } else {
                    Some(self.define(o, TensorKind::Activation, Info::default())?)
                });
            }
            out_ids.push(ids);
        }
        // Declared types of node outputs.
        if self.opts.use_value_info {
            for vi in g.value_info.iter().chain(&g.output) {
                let Some(&id) = self.top().names.get(&vi.name) else {
                    continue;
                };
                if id.index() < first_output {
                    continue;
                }
                if let Some(info) = self.declared(vi)? {
                    self.top().declared.insert(id, info);
                }
            }
        }
        // Node inputs, and the names bodies read from outside.
        let mut in_ids: Vec<Vec<Option<TensorId>>> = Vec::with_capacity(g.node.len());
        let mut body_reads: Vec<Vec<TensorId>> = Vec::with_capacity(g.node.len());
        for (i, n) in g.node.iter().enumerate() {
            let mut ids = Vec::with_capacity(n.input.len());
            for name in &n.input {
                if name.is_empty() {
                    ids.push(None);
                    continue;
                }
                match self.lookup(name) {
                    Some(id) => ids.push(Some(id)),
                    None => {
                        return Err(OnnxError::MissingInput {
                            file: file.to_owned(),
                            node: names[i].clone(),
                            input: name.clone(),
                        });
                    }
                }
            }
            in_ids.push(ids);
            let mut reads = Vec::new();
            if has_graphs(n) {
                let mut free = Vec::new();
                for a in &n.attribute {
                    for body in a.g.iter().chain(&a.graphs) {
                        free_names(body, &mut free);
                    }
                }
                let top = self.top();
                reads.extend(
                    free.iter()
                        .filter_map(|f| top.names.get(f.as_str()).copied()),
                );
            }
            body_reads.push(reads);
        }
        let order = topo_order(&out_ids, &in_ids, &body_reads, self.top().slots.len());
        if order.len() < g.node.len() {
            log::warn!(
                "`{file}`: graph `{}` has a cycle; shapes on it stay unknown",
                self.top().name
            );
        }
        // The pass: infer each node's outputs, merge their declared types.
        let mut subgraphs: Vec<Vec<(String, Graph)>> =
            (0..g.node.len()).map(|_| Vec::new()).collect();
        let mut done = vec![false; g.node.len()];
        // Nodes on a cycle come last, in file order.
        for i in order.into_iter().chain(0..g.node.len()) {
            if std::mem::replace(&mut done[i], true) {
                continue;
            }
            let node = &g.node[i];
            let attrs = Attrs::new(node, &names[i], file);
            let bodies = attrs.graphs()?;
            let inferred = if bodies.is_empty() {
                if self.opts.infer_shapes {
                    let cx = NodeCtx {
                        node,
                        attrs,
                        opset: self.opset,
                        file,
                    };
                    let top = self.top();
                    let ins: Vec<Option<&Info>> = in_ids[i]
                        .iter()
                        .map(|id| id.map(|id| &top.slot(id).info))
                        .collect();
                    infer_node(&cx, &ins)?
                } else {
                    Vec::new()
                }
            } else {
                let ins: Vec<Option<Info>> = {
                    let top = self.top();
                    in_ids[i]
                        .iter()
                        .map(|id| id.map(|id| top.slot(id).info.clone()))
                        .collect()
                };
                let (graphs, outs) = self.control_flow(node, &names[i], &attrs, &bodies, &ins)?;
                subgraphs[i] = graphs;
                if self.opts.infer_shapes {
                    outs
                } else {
                    Vec::new()
                }
            };
            let use_vi = self.opts.use_value_info;
            let top = self.top();
            for (k, id) in out_ids[i].iter().enumerate() {
                let Some(id) = *id else { continue };
                let inferred = inferred.get(k).cloned();
                let info = match top.declared.remove(&id) {
                    Some(d) if use_vi => combine(Some(d), inferred),
                    _ => combine(inferred, None),
                };
                top.slots[id.index()].info = info;
            }
        }
        // Outputs.
        let mut outputs = Vec::with_capacity(g.output.len());
        for vi in &g.output {
            match self.lookup(&vi.name) {
                Some(id) => outputs.push(id),
                None => {
                    return Err(OnnxError::MissingOutput {
                        file: file.to_owned(),
                        graph: self.top().name.clone(),
                        output: vi.name.clone(),
                    });
                }
            }
        }
        let nodes = g
            .node
            .iter()
            .zip(names)
            .zip(in_ids.into_iter().zip(out_ids))
            .zip(subgraphs)
            .map(|(((n, name), (inputs, outs)), subgraphs)| Node {
                name,
                op: n.op_type.clone(),
                inputs,
                outputs: outs.into_iter().flatten().collect(),
                subgraphs,
            })
            .collect();
        Ok((nodes, inputs, outputs))
    }

    /// Imports the bodies of a node with graph attributes and infers its outputs:
    /// `If` from its branches, `Loop` and `Scan` from their bodies; other
    /// operators' bodies are imported with no hints and their outputs left unknown.
    fn control_flow(
        &mut self,
        node: &NodeProto,
        name: &str,
        attrs: &Attrs<'_>,
        bodies: &[(String, &GraphProto)],
        ins: &[Option<Info>],
    ) -> Result<CfResult, OnnxError> {
        let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
        let op = if default_domain {
            node.op_type.as_str()
        } else {
            ""
        };
        let n_out = node.output.len();
        let mut hints: HashMap<&str, Vec<Option<Info>>> = HashMap::new();
        // Loop: (iteration, condition, carried...); Scan: (states..., slices...).
        let mut scan_layout = None;
        match op {
            "Loop" => {
                let mut h = vec![
                    Some(Info::new(data_type::INT64, Some(vec![]))),
                    Some(Info::new(data_type::BOOL, Some(vec![]))),
                ];
                h.extend(ins.iter().skip(2).map(|i| i.as_ref().map(Info::like)));
                hints.insert("body", h);
            }
            "Scan" if self.opset >= 9 => {
                // Scan inputs are among the node's inputs, whatever the attribute says.
                let m = usize::try_from(attrs.int("num_scan_inputs")?.unwrap_or(0))
                    .unwrap_or(0)
                    .min(ins.len());
                let n_states = ins.len().saturating_sub(m);
                let in_axes = attrs
                    .ints("scan_input_axes")?
                    .map(<[i64]>::to_vec)
                    .unwrap_or_else(|| vec![0; m]);
                let out_axes = attrs.ints("scan_output_axes")?.map(<[i64]>::to_vec);
                let mut h: Vec<Option<Info>> = ins[..n_states]
                    .iter()
                    .map(|i| i.as_ref().map(Info::like))
                    .collect();
                let mut seq = SDim::Unknown;
                for (j, inp) in ins[n_states..].iter().enumerate() {
                    let slice = inp.as_ref().map(|i| {
                        let shape = i.shape.as_ref().and_then(|s| {
                            let ax = axis_in(*in_axes.get(j)?, s.len())?;
                            if j == 0 {
                                seq = s[ax].clone();
                            }
                            let mut s = s.clone();
                            s.remove(ax);
                            Some(s)
                        });
                        Info::new(i.dtype, shape)
                    });
                    h.push(slice);
                }
                hints.insert("body", h);
                scan_layout = Some((n_states, out_axes, seq));
            }
            _ => {}
        }
        let mut graphs = Vec::with_capacity(bodies.len());
        let mut body_outs: HashMap<String, Vec<Info>> = HashMap::new();
        for (attr, body) in bodies {
            let gname = if body.name.is_empty() {
                format!("{name}.{attr}")
            } else {
                body.name.clone()
            };
            let h = hints.get(attr.as_str()).map_or(&[][..], Vec::as_slice);
            let (graph, outs) = self.import_graph(body, gname, h)?;
            body_outs.insert(attr.clone(), outs);
            graphs.push((attr.clone(), graph));
        }
        let mut outs = vec![Info::default(); n_out];
        match op {
            "If" => {
                if let (Some(t), Some(e)) =
                    (body_outs.get("then_branch"), body_outs.get("else_branch"))
                {
                    for (k, o) in outs.iter_mut().enumerate() {
                        if let (Some(a), Some(b)) = (t.get(k), e.get(k)) {
                            *o = agree(Some(a), Some(b));
                        }
                    }
                }
            }
            "Loop" => {
                if let Some(b) = body_outs.get("body") {
                    let carried = ins.len().saturating_sub(2);
                    // A trip count is known when the count is and no condition can stop early.
                    let trips = match (
                        ins.first().and_then(Option::as_ref),
                        ins.get(1).and_then(Option::as_ref),
                    ) {
                        (Some(m), None) => m
                            .value
                            .as_ref()
                            .and_then(Value::scalar_i64)
                            .map_or(SDim::Unknown, SDim::Known),
                        _ => SDim::Unknown,
                    };
                    for (k, o) in outs.iter_mut().enumerate() {
                        *o = if k < carried {
                            agree(ins.get(2 + k).and_then(Option::as_ref), b.get(1 + k))
                        } else {
                            stacked(b.get(1 + k), 0, &trips)
                        };
                    }
                }
            }
            "Scan" => {
                if let (Some(b), Some((n_states, out_axes, seq))) =
                    (body_outs.get("body"), scan_layout)
                {
                    for (k, o) in outs.iter_mut().enumerate() {
                        *o = if k < n_states {
                            agree(ins.get(k).and_then(Option::as_ref), b.get(k))
                        } else {
                            let axis = out_axes
                                .as_ref()
                                .and_then(|a| a.get(k - n_states).copied())
                                .unwrap_or(0);
                            stacked(b.get(k), axis, &seq)
                        };
                    }
                }
            }
            _ => {}
        }
        for o in &mut outs {
            sanitize(o);
        }
        Ok((graphs, outs))
    }
}

/// What two descriptions of one value (two branches, a carried value before and
/// after an iteration) agree on: dimensions that differ become unknown; a side
/// that knows nothing defers to the other.
fn agree(a: Option<&Info>, b: Option<&Info>) -> Info {
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (Some(x), None) | (None, Some(x)) => return x.like(),
        (None, None) => return Info::default(),
    };
    let dtype = if a.dtype != 0 { a.dtype } else { b.dtype };
    let shape = match (&a.shape, &b.shape) {
        (Some(x), Some(y)) if x.len() == y.len() => Some(
            x.iter()
                .zip(y)
                .map(|(p, q)| if p == q { p.clone() } else { SDim::Unknown })
                .collect(),
        ),
        (Some(_), Some(_)) => None,
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    };
    Info::new(dtype, shape)
}

/// A per-iteration output stacked along `axis` over `count` iterations.
fn stacked(per_iter: Option<&Info>, axis: i64, count: &SDim) -> Info {
    let Some(p) = per_iter else {
        return Info::default();
    };
    let shape = p.shape.as_ref().and_then(|s| {
        let ax = axis_in(axis, s.len() + 1)?;
        let mut s = s.clone();
        s.insert(ax, count.clone());
        Some(s)
    });
    Info::new(p.dtype, shape)
}

/// Merges two descriptions of one tensor, `primary` first: its element type and
/// known dimensions win; its symbolic dimensions give way to a number from
/// `secondary` (an exporter's placeholder that inference pinned down); its
/// unknown dimensions are filled from `secondary`. Values come from whichever
/// side has them and matches the merged shape.
fn combine(primary: Option<Info>, secondary: Option<Info>) -> Info {
    let (p, s) = match (primary, secondary) {
        (Some(p), Some(s)) => (p, s),
        (Some(x), None) | (None, Some(x)) => {
            let mut x = x;
            sanitize(&mut x);
            return x;
        }
        (None, None) => return Info::default(),
    };
    let dtype = if p.dtype != 0 { p.dtype } else { s.dtype };
    let shape = match (&p.shape, &s.shape) {
        (Some(a), Some(b)) if a.len() == b.len() => Some(
            a.iter()
                .zip(b)
                .map(|(x, y)| match (x, y) {
                    (SDim::Known(_), _) => x.clone(),
                    (SDim::Sym(_), SDim::Known(_)) | (SDim::Unknown, _) => y.clone(),
                    (SDim::Sym(_), _) => x.clone(),
                })
                .collect(),
        ),
        (Some(a), Some(b)) => {
            log::debug!(
                "declared rank {} disagrees with inferred rank {}",
                a.len(),
                b.len()
            );
            Some(a.clone())
        }
        (Some(a), None) => Some(a.clone()),
        (None, b) => b.clone(),
    };
    let value = [&s, &p]
        .into_iter()
        .find(|i| i.value.is_some() && i.shape == shape)
        .and_then(|i| i.value.clone());
    let mut out = Info {
        dtype,
        shape,
        value,
    };
    sanitize(&mut out);
    out
}

/// Whether a node carries graph attributes.
fn has_graphs(n: &NodeProto) -> bool {
    n.attribute
        .iter()
        .any(|a| a.g.is_some() || !a.graphs.is_empty())
}

/// Appends to `out` the names `g` (and the bodies inside it) reads without
/// defining them: what it takes from enclosing graphs.
fn free_names(g: &GraphProto, out: &mut Vec<String>) {
    let mut defined: HashSet<&str> = HashSet::new();
    defined.extend(g.input.iter().map(|v| v.name.as_str()));
    defined.extend(g.initializer.iter().map(|t| t.name.as_str()));
    defined.extend(
        g.sparse_initializer
            .iter()
            .filter_map(|s| s.values.as_ref().map(|v| v.name.as_str())),
    );
    defined.extend(
        g.node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str)),
    );
    for n in &g.node {
        out.extend(
            n.input
                .iter()
                .filter(|i| !i.is_empty() && !defined.contains(i.as_str()))
                .cloned(),
        );
        for a in &n.attribute {
            for body in a.g.iter().chain(&a.graphs) {
                let mut inner = Vec::new();
                free_names(body, &mut inner);
                out.extend(inner.into_iter().filter(|i| !defined.contains(i.as_str())));
            }
        }
    }
    out.extend(
        g.output
            .iter()
            .filter(|o| !defined.contains(o.name.as_str()))
            .map(|o| o.name.clone()),
    );
}

/// A topological order of the nodes (file order among ready nodes, so a sorted
/// file keeps its order). Nodes on a cycle are left out.
fn topo_order(
    out_ids: &[Vec<Option<TensorId>>],
    in_ids: &[Vec<Option<TensorId>>],
    body_reads: &[Vec<TensorId>],
    n_tensors: usize,
) -> Vec<usize> {
    let n = out_ids.len();
    let mut producer: Vec<Option<usize>> = vec![None; n_tensors];
    for (i, outs) in out_ids.iter().enumerate() {
        for id in outs.iter().flatten() {
            if let Some(p) = producer.get_mut(id.index()) {
                *p = Some(i);
            }
        }
    }
    let mut indeg = vec![0usize; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        let reads = in_ids[i].iter().flatten().chain(&body_reads[i]);
        for id in reads {
            if let Some(&Some(p)) = producer.get(id.index()) {
                users[p].push(i);
                indeg[i] += 1;
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indeg[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.push(Reverse(u));
            }
        }
    }
    order
}
