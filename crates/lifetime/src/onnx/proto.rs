//! The subset of the ONNX protobuf schema (`onnx.proto`, IR versions 3 to 11)
//! that the importer reads, as prost-derived structs, so no `protoc` is needed.
//!
//! Field numbers follow `onnx.proto`. Fields the importer never looks at (doc
//! strings, metadata, training info, functions, ...) are left out: prost skips
//! unknown fields while decoding. Repeated numeric fields decode from both the
//! packed and the unpacked wire form (prost accepts either), which matters because
//! `onnx.proto` is proto2 and packs only some of them (`float_data`, `int64_data`,
//! ...) while `dims` and `ints` stay unpacked.

/// A model: the top-level message of an `.onnx` file.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ModelProto {
    /// The IR version the file was written with.
    #[prost(int64, tag = "1")]
    pub(crate) ir_version: i64,
    /// The operator sets the model uses (domain and version).
    #[prost(message, repeated, tag = "8")]
    pub(crate) opset_import: Vec<OperatorSetIdProto>,
    /// The tool that wrote the file.
    #[prost(string, tag = "2")]
    pub(crate) producer_name: String,
    /// The main graph.
    #[prost(message, optional, tag = "7")]
    pub(crate) graph: Option<GraphProto>,
}

/// An operator set id: a domain (`""` or `ai.onnx` for the default one) and a version.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct OperatorSetIdProto {
    /// The domain.
    #[prost(string, tag = "1")]
    pub(crate) domain: String,
    /// The opset version.
    #[prost(int64, tag = "2")]
    pub(crate) version: i64,
}

/// A graph: nodes, initializers, inputs, outputs and shape annotations.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GraphProto {
    /// Nodes (topologically sorted in a valid file, which the importer does not rely on).
    #[prost(message, repeated, tag = "1")]
    pub(crate) node: Vec<NodeProto>,
    /// The graph's name.
    #[prost(string, tag = "2")]
    pub(crate) name: String,
    /// Constant tensors (weights).
    #[prost(message, repeated, tag = "5")]
    pub(crate) initializer: Vec<TensorProto>,
    /// Sparse constant tensors.
    #[prost(message, repeated, tag = "15")]
    pub(crate) sparse_initializer: Vec<SparseTensorProto>,
    /// Graph inputs (may also name initializers, which makes them overridable constants).
    #[prost(message, repeated, tag = "11")]
    pub(crate) input: Vec<ValueInfoProto>,
    /// Graph outputs.
    #[prost(message, repeated, tag = "12")]
    pub(crate) output: Vec<ValueInfoProto>,
    /// Types and shapes of intermediate values.
    #[prost(message, repeated, tag = "13")]
    pub(crate) value_info: Vec<ValueInfoProto>,
}

/// One operator call.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NodeProto {
    /// Input names; an empty name is an omitted optional input.
    #[prost(string, repeated, tag = "1")]
    pub(crate) input: Vec<String>,
    /// Output names; an empty name is an omitted optional output.
    #[prost(string, repeated, tag = "2")]
    pub(crate) output: Vec<String>,
    /// The node's name (optional in ONNX).
    #[prost(string, tag = "3")]
    pub(crate) name: String,
    /// The operator.
    #[prost(string, tag = "4")]
    pub(crate) op_type: String,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub(crate) attribute: Vec<AttributeProto>,
    /// The operator's domain (`""` for the default ONNX one).
    #[prost(string, tag = "7")]
    pub(crate) domain: String,
}

/// A named attribute holding one value of the kind `type` says.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AttributeProto {
    /// The attribute's name.
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    /// Set in function bodies only: the attribute refers to one of the caller's.
    #[prost(string, tag = "21")]
    pub(crate) ref_attr_name: String,
    /// Which of the value fields is in use (see [`attr_type`]); 0 in IR version 1 files.
    #[prost(int32, tag = "20")]
    pub(crate) r#type: i32,
    /// A float.
    #[prost(float, optional, tag = "2")]
    pub(crate) f: Option<f32>,
    /// An integer.
    #[prost(int64, optional, tag = "3")]
    pub(crate) i: Option<i64>,
    /// A byte string.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub(crate) s: Option<Vec<u8>>,
    /// A tensor.
    #[prost(message, optional, tag = "5")]
    pub(crate) t: Option<TensorProto>,
    /// A graph (the body of `If`, `Loop`, `Scan`).
    #[prost(message, optional, tag = "6")]
    pub(crate) g: Option<GraphProto>,
    /// Floats.
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub(crate) floats: Vec<f32>,
    /// Integers.
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub(crate) ints: Vec<i64>,
    /// Byte strings.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub(crate) strings: Vec<Vec<u8>>,
    /// Tensors.
    #[prost(message, repeated, tag = "10")]
    pub(crate) tensors: Vec<TensorProto>,
    /// Graphs.
    #[prost(message, repeated, tag = "11")]
    pub(crate) graphs: Vec<GraphProto>,
}

/// The values of [`AttributeProto::type`].
pub(crate) mod attr_type {
    /// Not set (IR version 1 files): the importer looks at which field is present.
    pub(crate) const UNDEFINED: i32 = 0;
    /// `f`.
    pub(crate) const FLOAT: i32 = 1;
    /// `i`.
    pub(crate) const INT: i32 = 2;
    /// `s`.
    pub(crate) const STRING: i32 = 3;
    /// `t`.
    pub(crate) const TENSOR: i32 = 4;
    /// `g`.
    pub(crate) const GRAPH: i32 = 5;
    /// `floats`.
    pub(crate) const FLOATS: i32 = 6;
    /// `ints`.
    pub(crate) const INTS: i32 = 7;
    /// `strings`.
    pub(crate) const STRINGS: i32 = 8;
    /// `tensors`.
    pub(crate) const TENSORS: i32 = 9;
    /// `graphs`.
    pub(crate) const GRAPHS: i32 = 10;
    /// `sparse_tensor`.
    pub(crate) const SPARSE_TENSOR: i32 = 11;
    /// `sparse_tensors`.
    pub(crate) const SPARSE_TENSORS: i32 = 12;
    /// `tp`.
    pub(crate) const TYPE_PROTO: i32 = 13;
    /// `type_protos`.
    pub(crate) const TYPE_PROTOS: i32 = 14;

    /// A readable name for an attribute type, for error messages.
    pub(crate) fn name(t: i32) -> &'static str {
        match t {
            UNDEFINED => "undefined",
            FLOAT => "float",
            INT => "int",
            STRING => "string",
            TENSOR => "tensor",
            GRAPH => "graph",
            FLOATS => "floats",
            INTS => "ints",
            STRINGS => "strings",
            TENSORS => "tensors",
            GRAPHS => "graphs",
            SPARSE_TENSOR => "sparse tensor",
            SPARSE_TENSORS => "sparse tensors",
            TYPE_PROTO => "type",
            TYPE_PROTOS => "types",
            _ => "unknown",
        }
    }
}

/// A dense tensor: a constant's dims, element type and data.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorProto {
    /// The shape.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub(crate) dims: Vec<i64>,
    /// The element type (see [`data_type`]).
    #[prost(int32, tag = "2")]
    pub(crate) data_type: i32,
    /// Float (and complex64) data.
    #[prost(float, repeated, tag = "4")]
    pub(crate) float_data: Vec<f32>,
    /// Data of int32 and the smaller integer, bool and 16-bit float types.
    #[prost(int32, repeated, tag = "5")]
    pub(crate) int32_data: Vec<i32>,
    /// String data.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub(crate) string_data: Vec<Vec<u8>>,
    /// Int64 data.
    #[prost(int64, repeated, tag = "7")]
    pub(crate) int64_data: Vec<i64>,
    /// The tensor's name (initializers are referred to by it).
    #[prost(string, tag = "8")]
    pub(crate) name: String,
    /// Little-endian raw data; when set, the typed fields are empty.
    #[prost(bytes = "vec", tag = "9")]
    pub(crate) raw_data: Vec<u8>,
    /// Where the data lives when it is in a separate file.
    #[prost(message, repeated, tag = "13")]
    pub(crate) external_data: Vec<StringStringEntryProto>,
    /// 0: in this message, 1: external.
    #[prost(int32, tag = "14")]
    pub(crate) data_location: i32,
    /// Double (and complex128) data.
    #[prost(double, repeated, tag = "10")]
    pub(crate) double_data: Vec<f64>,
    /// Data of uint32 and uint64.
    #[prost(uint64, repeated, tag = "11")]
    pub(crate) uint64_data: Vec<u64>,
}

/// `TensorProto.DataType` values.
pub(crate) mod data_type {
    /// Not set.
    pub(crate) const UNDEFINED: i32 = 0;
    /// f32.
    pub(crate) const FLOAT: i32 = 1;
    /// u8.
    pub(crate) const UINT8: i32 = 2;
    /// i8.
    pub(crate) const INT8: i32 = 3;
    /// u16.
    pub(crate) const UINT16: i32 = 4;
    /// i16.
    pub(crate) const INT16: i32 = 5;
    /// i32.
    pub(crate) const INT32: i32 = 6;
    /// i64.
    pub(crate) const INT64: i32 = 7;
    /// Strings (not supported: no fixed element size).
    pub(crate) const STRING: i32 = 8;
    /// bool, one byte.
    pub(crate) const BOOL: i32 = 9;
    /// IEEE half.
    pub(crate) const FLOAT16: i32 = 10;
    /// f64.
    pub(crate) const DOUBLE: i32 = 11;
    /// u32.
    pub(crate) const UINT32: i32 = 12;
    /// u64.
    pub(crate) const UINT64: i32 = 13;
    /// Two f32.
    pub(crate) const COMPLEX64: i32 = 14;
    /// Two f64.
    pub(crate) const COMPLEX128: i32 = 15;
    /// bfloat16.
    pub(crate) const BFLOAT16: i32 = 16;
    /// The 8-bit float types (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz) are 17 to 20.
    pub(crate) const FLOAT8_FIRST: i32 = 17;
    /// See [`FLOAT8_FIRST`].
    pub(crate) const FLOAT8_LAST: i32 = 20;

    /// Bytes per element, or `None` for types without a whole-byte size
    /// (strings, 4-bit types) and unknown codes.
    pub(crate) fn elem_bytes(t: i32) -> Option<u64> {
        match t {
            UINT8 | INT8 | BOOL => Some(1),
            FLOAT8_FIRST..=FLOAT8_LAST => Some(1),
            UINT16 | INT16 | FLOAT16 | BFLOAT16 => Some(2),
            FLOAT | INT32 | UINT32 => Some(4),
            INT64 | DOUBLE | UINT64 | COMPLEX64 => Some(8),
            COMPLEX128 => Some(16),
            _ => None,
        }
    }

    /// A readable name, for error messages.
    pub(crate) fn name(t: i32) -> &'static str {
        match t {
            UNDEFINED => "undefined",
            FLOAT => "float",
            UINT8 => "uint8",
            INT8 => "int8",
            UINT16 => "uint16",
            INT16 => "int16",
            INT32 => "int32",
            INT64 => "int64",
            STRING => "string",
            BOOL => "bool",
            FLOAT16 => "float16",
            DOUBLE => "double",
            UINT32 => "uint32",
            UINT64 => "uint64",
            COMPLEX64 => "complex64",
            COMPLEX128 => "complex128",
            BFLOAT16 => "bfloat16",
            FLOAT8_FIRST..=FLOAT8_LAST => "float8",
            21 => "uint4",
            22 => "int4",
            23 => "float4e2m1",
            _ => "unknown",
        }
    }

    /// Whether the type holds integers (including bool), whose values shape
    /// inference tracks.
    pub(crate) fn is_integer(t: i32) -> bool {
        matches!(
            t,
            UINT8 | INT8 | UINT16 | INT16 | INT32 | INT64 | BOOL | UINT32 | UINT64
        )
    }
}

/// A sparse tensor: its values (which carry the name), indices and dense shape.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SparseTensorProto {
    /// The non-zero values; their `name` names the sparse tensor.
    #[prost(message, optional, tag = "1")]
    pub(crate) values: Option<TensorProto>,
    /// The dense shape.
    #[prost(int64, repeated, packed = "false", tag = "3")]
    pub(crate) dims: Vec<i64>,
}

/// A key-value pair (external data locations).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StringStringEntryProto {
    /// The key.
    #[prost(string, tag = "1")]
    pub(crate) key: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub(crate) value: String,
}

/// A name with a type: graph inputs, outputs and `value_info` entries.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ValueInfoProto {
    /// The value's name.
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    /// Its type (absent when unknown).
    #[prost(message, optional, tag = "2")]
    pub(crate) r#type: Option<TypeProto>,
}

/// A value's type. Only tensor types are read; sequences, maps, optionals and
/// sparse tensors are left as unknown.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TypeProto {
    /// Set when the value is a dense tensor.
    #[prost(message, optional, tag = "1")]
    pub(crate) tensor_type: Option<TensorTypeProto>,
}

/// A tensor type: element type and (optional) shape.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorTypeProto {
    /// The element type (see [`data_type`]).
    #[prost(int32, tag = "1")]
    pub(crate) elem_type: i32,
    /// The shape; absent when not even the rank is known.
    #[prost(message, optional, tag = "2")]
    pub(crate) shape: Option<TensorShapeProto>,
}

/// A shape: one entry per dimension.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorShapeProto {
    /// The dimensions.
    #[prost(message, repeated, tag = "1")]
    pub(crate) dim: Vec<Dimension>,
}

/// One dimension: a number, a symbol, or nothing (unknown).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Dimension {
    /// Which of the two forms, if either.
    #[prost(oneof = "DimensionValue", tags = "1, 2")]
    pub(crate) value: Option<DimensionValue>,
}

/// The two forms of a [`Dimension`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum DimensionValue {
    /// A number.
    #[prost(int64, tag = "1")]
    DimValue(i64),
    /// A symbol such as `N` or `batch_size`.
    #[prost(string, tag = "2")]
    DimParam(String),
}
