//! ONNX import: `.onnx` files to the IR [`Graph`], with shape inference.
//!
//! The file is decoded with prost-derived structs for the part of `onnx.proto` the
//! importer needs (no `protoc` at build time). Then, graph by graph:
//!
//! - initializers become [`TensorKind::Constant`] tensors (a graph input that is
//!   also an initializer is that constant, not an input); everything else is an
//!   [`TensorKind::Activation`] (the analysis folds constant subgraphs itself);
//! - unnamed nodes are named `{op}_{index}` (index in their graph), and names are
//!   made unique across the model with a `_k` suffix;
//! - an omitted optional input (empty name) is `None` in [`Node::inputs`]; an
//!   omitted optional output is left out of [`Node::outputs`];
//! - the bodies of `If` (`then_branch`, `else_branch`), `Loop` and `Scan` (`body`),
//!   and of any other graph attribute, become nested graphs in
//!   [`Node::subgraphs`]; a body that reads a tensor of an enclosing graph gets a
//!   tensor of its own listed in [`Graph::captures`], through every level between.
//!
//! **Shapes.** Graph inputs carry their declared types. Other tensors get theirs
//! from `value_info` and the graph outputs' types (the exporter's word) merged with
//! the importer's own shape inference, which runs over the nodes in topological
//! order and also tracks the values of small integer tensors, so shapes computed
//! by `Shape → Gather → Concat → Reshape` chains resolve. A declared dimension
//! wins, except that a symbolic placeholder gives way to a number inference
//! proves. [`ImportOptions`] can ignore `value_info` (inference alone, as for files
//! from exporters that write none) or switch inference off (declared types alone).
//! A tensor whose size stays unknown has `shape: None` (and `elem_bytes: 0` when
//! even its element type is unknown); the planner reports it with its producer.
//! Symbolic dimensions (`N`) stay [`Dim::Sym`](crate::ir::Dim::Sym).
//!
//! `Loop` bodies see the iteration number (int64 scalar), the condition (bool
//! scalar) and the carried values with the shapes they enter with; carried
//! outputs keep the dimensions that the body preserves, scan outputs get a leading
//! trip count (known only for a constant count without a condition). `If` outputs
//! keep the dimensions both branches agree on.
//!
//! **Errors.** Every failure is an [`OnnxError`] naming the file and the problem;
//! no input, however malformed, makes the importer panic (the test suite fuzzes
//! it). Supported IR versions are [`MIN_IR_VERSION`]..=[`MAX_IR_VERSION`] (ONNX 1.0
//! to 1.18); element types are every fixed-size one (not strings or 4-bit types).
//!
//! ```no_run
//! use memwarden_lifetime::onnx::{self, ImportOptions};
//!
//! let graph = onnx::import_file("resnet18.onnx".as_ref())?;
//! println!("{} nodes, {} tensors", graph.nodes.len(), graph.tensors.len());
//!
//! // Shape inference alone, as for a file without `value_info`.
//! let bytes = std::fs::read("resnet18.onnx")?;
//! let inferred = onnx::import_bytes_with(
//!     "resnet18.onnx",
//!     &bytes,
//!     ImportOptions::default().with_value_info(false),
//! )?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`TensorKind::Constant`]: crate::ir::TensorKind::Constant
//! [`TensorKind::Activation`]: crate::ir::TensorKind::Activation
//! [`Node::inputs`]: crate::ir::Node::inputs
//! [`Node::outputs`]: crate::ir::Node::outputs
//! [`Node::subgraphs`]: crate::ir::Node::subgraphs
//! [`Graph::captures`]: crate::ir::Graph::captures

mod attrs;
mod error;
mod import;
mod infer;
mod proto;
mod value;

use std::path::Path;

use prost::Message;

use crate::ir::Graph;

pub use error::OnnxError;

/// The oldest IR version imported (ONNX 1.0, opset 1 with operator-set imports).
pub const MIN_IR_VERSION: i64 = 3;
/// The newest IR version imported (ONNX 1.18).
pub const MAX_IR_VERSION: i64 = 11;

/// How to import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Take shapes from `value_info` and the graph outputs' types where present
    /// (default `true`). With `false`, only graph inputs keep their declared
    /// types and everything else comes from inference.
    pub use_value_info: bool,
    /// Run shape inference (default `true`). With `false`, shapes are what the file
    /// declares and nothing more.
    pub infer_shapes: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            use_value_info: true,
            infer_shapes: true,
        }
    }
}

impl ImportOptions {
    /// Sets [`use_value_info`](Self::use_value_info).
    #[must_use]
    pub fn with_value_info(mut self, on: bool) -> Self {
        self.use_value_info = on;
        self
    }

    /// Sets [`infer_shapes`](Self::infer_shapes).
    #[must_use]
    pub fn with_shape_inference(mut self, on: bool) -> Self {
        self.infer_shapes = on;
        self
    }
}

/// Imports the model in the file at `path` with the default options.
pub fn import_file(path: &Path) -> Result<Graph, OnnxError> {
    import_file_with(path, ImportOptions::default())
}

/// The largest ONNX file [`import_file`] reads: 2 GiB, protobuf's limit on one message,
/// so no valid model is larger (bigger models keep their weights in external data files,
/// which the importer never reads). The whole file is read into memory.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// Imports the model in the file at `path`, which must be a regular file of at most
/// [`MAX_FILE_BYTES`] (a FIFO would block the read, a device such as `/dev/zero` never
/// end it).
pub fn import_file_with(path: &Path, options: ImportOptions) -> Result<Graph, OnnxError> {
    let bytes = memwarden_core::fs::read_regular(path, MAX_FILE_BYTES).map_err(|source| {
        OnnxError::Read {
            file: path.to_owned(),
            source,
        }
    })?;
    import_bytes_with(&path.display().to_string(), &bytes, options)
}

/// Imports a model from its bytes with the default options; `name` stands for the
/// file in errors (and names the graph if the model does not).
pub fn import_bytes(name: &str, bytes: &[u8]) -> Result<Graph, OnnxError> {
    import_bytes_with(name, bytes, ImportOptions::default())
}

/// Imports a model from its bytes; `name` stands for the file in errors.
pub fn import_bytes_with(
    name: &str,
    bytes: &[u8],
    options: ImportOptions,
) -> Result<Graph, OnnxError> {
    let model = proto::ModelProto::decode(bytes).map_err(|e| OnnxError::Decode {
        file: name.to_owned(),
        reason: e.to_string(),
    })?;
    import::import_model(name, &model, options)
}
