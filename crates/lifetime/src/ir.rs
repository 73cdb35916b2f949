//! The graph IR the analysis and the planners work on.
//!
//! A [`Graph`] is a list of [`Node`]s over a table of [`Tensor`]s, addressed by
//! [`TensorId`]. Shapes may carry symbolic dimensions ([`Dim::Sym`]) that are bound
//! when a plan is made. Control-flow nodes (`If`, `Loop`, `Scan`) carry their bodies
//! as nested graphs in [`Node::subgraphs`]; a body reads tensors of the enclosing
//! graph through [`Graph::captures`].
//!
//! The IR does no I/O. The ONNX importer (feature `onnx`) and the JSON format
//! ([`Graph::from_json`]) both produce it.

use serde::{Deserialize, Serialize};

/// Index of a tensor in [`Graph::tensors`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TensorId(pub u32);

impl TensorId {
    /// The index into [`Graph::tensors`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Index of a node in [`Graph::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The index into [`Graph::nodes`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One dimension of a shape: a number, or a name bound at plan time (`N`, `S`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    /// A known extent.
    Known(u64),
    /// A symbolic extent, bound with `--dim NAME=VALUE` when planning.
    Sym(String),
}

/// What a tensor holds, which decides whether it is planned into the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TensorKind {
    /// Produced or consumed while the graph runs: planned into the arena.
    #[default]
    Activation,
    /// Weights and constants (initializers, `Constant`, and anything computed only
    /// from constants): they live outside the arena.
    Constant,
}

/// A tensor: a name, an element size and a shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tensor {
    /// Unique name within its graph.
    pub name: String,
    /// Bytes per element (4 for f32).
    pub elem_bytes: u64,
    /// The shape, or `None` when it is unknown (the planner reports such tensors
    /// and handles them per its `unknown` policy).
    pub shape: Option<Vec<Dim>>,
    /// Activation or constant.
    #[serde(default)]
    pub kind: TensorKind,
}

/// One operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The node's name (may be empty in ONNX; the importer fills a unique one).
    pub name: String,
    /// The operator (`Conv`, `Relu`, `If`, ...).
    pub op: String,
    /// Inputs; `None` stands for an omitted optional input.
    pub inputs: Vec<Option<TensorId>>,
    /// Outputs.
    pub outputs: Vec<TensorId>,
    /// Bodies of control-flow nodes: `If` has `then_branch` and `else_branch`,
    /// `Loop` and `Scan` have `body`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subgraphs: Vec<(String, Graph)>,
}

/// A computation graph.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// The graph's (or model's) name.
    pub name: String,
    /// Every tensor, indexed by [`TensorId`].
    pub tensors: Vec<Tensor>,
    /// Nodes, in any order (the analysis sorts them topologically).
    pub nodes: Vec<Node>,
    /// Graph inputs that are not constants.
    pub inputs: Vec<TensorId>,
    /// Graph outputs; they live until the last step.
    pub outputs: Vec<TensorId>,
    /// For a body graph: the tensors of the enclosing graph it reads, as
    /// `(tensor in this graph, tensor in the enclosing graph)`. Empty for a
    /// top-level graph. Captures go one level up only: a body nested two levels
    /// deep that reads a top-level tensor captures it from its parent body, which
    /// captures it from the top level in turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captures: Vec<(TensorId, TensorId)>,
}

impl From<u64> for Dim {
    fn from(extent: u64) -> Self {
        Dim::Known(extent)
    }
}

impl From<&str> for Dim {
    fn from(symbol: &str) -> Self {
        Dim::Sym(symbol.to_owned())
    }
}

impl Tensor {
    /// An activation of `elem_bytes`-byte elements with the given shape.
    pub fn new(name: impl Into<String>, elem_bytes: u64, shape: Option<Vec<Dim>>) -> Self {
        Self {
            name: name.into(),
            elem_bytes,
            shape,
            kind: TensorKind::Activation,
        }
    }

    /// An activation of exactly `bytes` bytes (shape `[bytes]`, one-byte elements).
    pub fn with_bytes(name: impl Into<String>, bytes: u64) -> Self {
        Self::new(name, 1, Some(vec![Dim::Known(bytes)]))
    }

    /// The same tensor marked [`TensorKind::Constant`].
    #[must_use]
    pub fn constant(mut self) -> Self {
        self.kind = TensorKind::Constant;
        self
    }
}

impl Node {
    /// A node without bodies.
    pub fn new(
        name: impl Into<String>,
        op: impl Into<String>,
        inputs: &[TensorId],
        outputs: &[TensorId],
    ) -> Self {
        Self {
            name: name.into(),
            op: op.into(),
            inputs: inputs.iter().copied().map(Some).collect(),
            outputs: outputs.to_vec(),
            subgraphs: Vec::new(),
        }
    }
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Appends a tensor and returns its id.
    pub fn add_tensor(&mut self, tensor: Tensor) -> TensorId {
        self.tensors.push(tensor);
        TensorId((self.tensors.len() - 1) as u32)
    }

    /// Appends a node and returns its id.
    pub fn add_node(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        NodeId((self.nodes.len() - 1) as u32)
    }

    /// The id of the first tensor called `name`.
    pub fn find_tensor(&self, name: &str) -> Option<TensorId> {
        self.tensors
            .iter()
            .position(|t| t.name == name)
            .map(|i| TensorId(i as u32))
    }

    /// The tensor with this id, if it is in range.
    pub fn tensor(&self, id: TensorId) -> Option<&Tensor> {
        self.tensors.get(id.index())
    }
}
