//! The importer's error type: every variant names the file and what is wrong.

use std::path::PathBuf;

/// Why an ONNX file could not be imported.
///
/// `file` is the path given to [`import_file`](super::import_file) or the name given
/// to [`import_bytes`](super::import_bytes); `node` is the node's name as it
/// appears in the imported [`Graph`](crate::ir::Graph) (an unnamed node is called
/// `{op}_{index}`, its position in its graph).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The file could not be read.
    #[error("cannot read `{}`: {source}", file.display())]
    Read {
        /// The path.
        file: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The bytes are not a protobuf message of the ONNX model schema (not an ONNX
    /// file, or a truncated one).
    #[error("`{file}` is not a valid ONNX file (not protobuf, or truncated): {reason}")]
    Decode {
        /// The file.
        file: String,
        /// The protobuf decoder's message.
        reason: String,
    },
    /// The message decoded but holds no graph: it is some other protobuf, or an
    /// empty model.
    #[error("`{file}` holds no graph (IR version {ir_version}): not an ONNX model")]
    MissingGraph {
        /// The file.
        file: String,
        /// The IR version field as read (0 when absent).
        ir_version: i64,
    },
    /// The model's IR version is outside the supported range.
    #[error(
        "`{file}` has IR version {ir_version}, outside the supported {}..={}",
        super::MIN_IR_VERSION,
        super::MAX_IR_VERSION
    )]
    UnsupportedIrVersion {
        /// The file.
        file: String,
        /// The IR version the file declares.
        ir_version: i64,
    },
    /// A node reads a tensor that no node, input or initializer (of its graph or an
    /// enclosing one) defines.
    #[error("`{file}`: missing input `{input}` of node `{node}` (nothing defines it)")]
    MissingInput {
        /// The file.
        file: String,
        /// The node.
        node: String,
        /// The undefined tensor name.
        input: String,
    },
    /// A graph output names a tensor that nothing defines.
    #[error("`{file}`: output `{output}` of graph `{graph}` is not defined")]
    MissingOutput {
        /// The file.
        file: String,
        /// The graph (a body graph is named after its node and attribute).
        graph: String,
        /// The undefined tensor name.
        output: String,
    },
    /// Two definitions (initializers, inputs or node outputs) of one tensor name in
    /// a graph.
    #[error("`{file}`: tensor `{tensor}` is defined twice in graph `{graph}`")]
    DuplicateTensor {
        /// The file.
        file: String,
        /// The graph.
        graph: String,
        /// The tensor name.
        tensor: String,
    },
    /// A tensor has an element type without a fixed byte size (strings, 4-bit
    /// types) or an unknown type code.
    #[error("`{file}`: tensor `{tensor}` has unsupported data type {type_name} ({data_type})")]
    UnsupportedDataType {
        /// The file.
        file: String,
        /// The tensor name.
        tensor: String,
        /// The ONNX `TensorProto.DataType` code.
        data_type: i32,
        /// Its name (`string`, `int4`, `unknown`, ...).
        type_name: &'static str,
    },
    /// An attribute holds a different kind of value than the operator expects
    /// (`axis` given as a float, say).
    #[error("`{file}`: attribute `{attribute}` of node `{node}` is {found}, expected {expected}")]
    AttributeType {
        /// The file.
        file: String,
        /// The node.
        node: String,
        /// The attribute name.
        attribute: String,
        /// The kind the operator needs.
        expected: &'static str,
        /// The kind the file holds.
        found: &'static str,
    },
    /// A constant tensor is malformed (a negative dimension, say).
    #[error("`{file}`: tensor `{tensor}` is malformed: {reason}")]
    InvalidTensor {
        /// The file.
        file: String,
        /// The tensor name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
}
