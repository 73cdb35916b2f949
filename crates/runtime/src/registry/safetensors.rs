//! The safetensors format: the header parser and checker, dtypes, and tensor views.
//!
//! Tensor views borrow a memory map of the model file: a file truncated while mapped
//! makes reads of the lost pages raise `SIGBUS` (see [`TensorView`]).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// The largest JSON header a model file may have (100 MB, the reference implementation's
/// limit): a header length above it means the file is not a safetensors file.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// What is wrong with a model file that is not valid safetensors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The file is shorter than the 8-byte header length.
    #[error("the file is {file_len} bytes, too short for the 8-byte header length")]
    TooShort {
        /// The file's length.
        file_len: u64,
    },
    /// The header length runs past the end of the file (a truncated file, or not a
    /// safetensors file at all).
    #[error("the header length {header_len} runs past the end of the {file_len}-byte file")]
    HeaderPastEnd {
        /// The header length the file starts with.
        header_len: u64,
        /// The file's length.
        file_len: u64,
    },
    /// The header length is above [`MAX_HEADER_BYTES`].
    #[error("the header length {header_len} is above the limit of {limit} bytes")]
    HeaderTooLarge {
        /// The header length the file starts with.
        header_len: u64,
        /// The limit.
        limit: u64,
    },
    /// The header does not start with `{`.
    #[error("the header does not start with '{{'")]
    HeaderStart,
    /// The header is not JSON, or not the safetensors schema.
    #[error("the header is not a safetensors JSON header: {reason}")]
    HeaderJson {
        /// The JSON parser's message.
        reason: String,
    },
    /// Two tensors have the same name.
    #[error("tensor {tensor:?} is described twice")]
    DuplicateTensor {
        /// The name.
        tensor: String,
    },
    /// A tensor's dtype is not one the registry knows.
    #[error("tensor {tensor:?} has the unknown dtype {dtype:?}")]
    UnknownDtype {
        /// The tensor.
        tensor: String,
        /// The dtype found.
        dtype: String,
    },
    /// A tensor's `data_offsets` end before they begin.
    #[error("tensor {tensor:?} has data_offsets [{begin}, {end}], which end before they begin")]
    ReversedOffsets {
        /// The tensor.
        tensor: String,
        /// The first offset.
        begin: u64,
        /// The second offset.
        end: u64,
    },
    /// A tensor ends past the end of the data section.
    #[error("tensor {tensor:?} ends at byte {end} of a {data_len}-byte data section")]
    TensorPastEnd {
        /// The tensor.
        tensor: String,
        /// Where it ends, from the start of the data section.
        end: u64,
        /// The data section's length.
        data_len: u64,
    },
    /// A tensor's shape times its dtype's size is not its byte length.
    #[error(
        "tensor {tensor:?} of shape {shape:?} and dtype {dtype} does not fill its {bytes} bytes"
    )]
    ShapeMismatch {
        /// The tensor.
        tensor: String,
        /// Its shape.
        shape: Vec<u64>,
        /// Its dtype.
        dtype: Dtype,
        /// Its byte length from its offsets.
        bytes: u64,
    },
    /// Tensors overlap, or leave a gap between them.
    #[error(
        "tensor {tensor:?} starts at byte {begin} of the data section, not at {expected} where the previous one ends (tensors must not overlap or leave gaps)"
    )]
    NotContiguous {
        /// The tensor.
        tensor: String,
        /// Where it starts.
        begin: u64,
        /// Where the previous tensor ends.
        expected: u64,
    },
    /// The data section has bytes after the last tensor.
    #[error("the tensors cover {covered} bytes of the {data_len}-byte data section")]
    Uncovered {
        /// The bytes the tensors cover.
        covered: u64,
        /// The data section's length.
        data_len: u64,
    },
}

// ---------------------------------------------------------------------------------------
// Tensors and models
// ---------------------------------------------------------------------------------------

/// The element type of a tensor, as safetensors names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    /// `BOOL`: one byte.
    Bool,
    /// `U8`.
    U8,
    /// `I8`.
    I8,
    /// `F8_E5M2`: 8-bit float, 5 exponent bits.
    F8E5M2,
    /// `F8_E4M3`: 8-bit float, 4 exponent bits.
    F8E4M3,
    /// `F8_E8M0`: 8-bit scale (exponent only).
    F8E8M0,
    /// `I16`.
    I16,
    /// `U16`.
    U16,
    /// `F16`: IEEE half precision.
    F16,
    /// `BF16`: bfloat16.
    BF16,
    /// `I32`.
    I32,
    /// `U32`.
    U32,
    /// `F32`.
    F32,
    /// `C64`: complex of two `F32`.
    C64,
    /// `I64`.
    I64,
    /// `U64`.
    U64,
    /// `F64`.
    F64,
}

/// Every dtype with its name and size in bytes.
const DTYPES: [(Dtype, &str, usize); 17] = [
    (Dtype::Bool, "BOOL", 1),
    (Dtype::U8, "U8", 1),
    (Dtype::I8, "I8", 1),
    (Dtype::F8E5M2, "F8_E5M2", 1),
    (Dtype::F8E4M3, "F8_E4M3", 1),
    (Dtype::F8E8M0, "F8_E8M0", 1),
    (Dtype::I16, "I16", 2),
    (Dtype::U16, "U16", 2),
    (Dtype::F16, "F16", 2),
    (Dtype::BF16, "BF16", 2),
    (Dtype::I32, "I32", 4),
    (Dtype::U32, "U32", 4),
    (Dtype::F32, "F32", 4),
    (Dtype::C64, "C64", 8),
    (Dtype::I64, "I64", 8),
    (Dtype::U64, "U64", 8),
    (Dtype::F64, "F64", 8),
];

impl Dtype {
    fn entry(self) -> &'static (Dtype, &'static str, usize) {
        DTYPES
            .iter()
            .find(|(d, _, _)| *d == self)
            .expect("every dtype is listed in DTYPES")
    }
    /// The size of one element in bytes.
    pub fn size(self) -> usize {
        self.entry().2
    }
    /// The name safetensors gives it (`"F32"`, `"F8_E4M3"`).
    pub fn as_str(self) -> &'static str {
        self.entry().1
    }
    /// The dtype named `name`, if it is one the registry knows.
    pub fn from_name(name: &str) -> Option<Dtype> {
        DTYPES
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(d, _, _)| *d)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tensor of a [`Model`](super::Model): its description and its bytes, borrowed from the mapping.
///
/// `data` is row-major and little-endian, as safetensors stores it. Reading it pages the
/// tensor in; describing it (name, dtype, shape) does not.
///
/// `data` points into the model's read-only memory map of its file, so it is only as
/// stable as the file: if any process truncates the file while it is mapped, reading a
/// page past the new end raises `SIGBUS`, which kills the process (no Rust code can turn it
/// into an error; the size checks at load only catch a file that was already short), and
/// bytes rewritten in place change under this `&[u8]`. Replace a model file by renaming a
/// new one over its path, which leaves existing mappings on the old file; the registry's
/// module docs state this contract.
#[derive(Clone, Copy)]
pub struct TensorView<'a> {
    /// The tensor's name.
    pub name: &'a str,
    /// Its element type.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: &'a [usize],
    /// Its bytes.
    pub data: &'a [u8],
}

impl TensorView<'_> {
    /// The number of elements: the product of the shape.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

impl fmt::Debug for TensorView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorView")
            .field("name", &self.name)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// A tensor's description, with its byte range in the file.
#[derive(Debug)]
pub(super) struct TensorInfo {
    pub(super) name: Box<str>,
    pub(super) dtype: Dtype,
    pub(super) shape: Box<[usize]>,
    pub(super) begin: usize,
    pub(super) end: usize,
}

/// `len` as a `u64`.
pub(super) fn len_u64(len: usize) -> u64 {
    u64::try_from(len).expect("a usize fits in a u64 on every supported platform")
}

// ---------------------------------------------------------------------------------------
// Header parsing
// ---------------------------------------------------------------------------------------

/// One tensor as the JSON header describes it.
#[derive(serde::Deserialize)]
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// The JSON header, tensors in file order, duplicates kept (so that they can be refused).
struct RawHeader {
    tensors: Vec<(String, RawTensor)>,
    metadata: Option<BTreeMap<String, String>>,
}

impl<'de> serde::Deserialize<'de> for RawHeader {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawHeader;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of tensor names to tensor descriptions")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawHeader, A::Error> {
                let mut header = RawHeader {
                    tensors: Vec::new(),
                    metadata: None,
                };
                while let Some(key) = map.next_key::<String>()? {
                    if key == "__metadata__" {
                        if header.metadata.is_some() {
                            return Err(serde::de::Error::duplicate_field("__metadata__"));
                        }
                        header.metadata = Some(map.next_value::<Option<_>>()?.unwrap_or_default());
                    } else {
                        let tensor = map.next_value()?;
                        header.tensors.push((key, tensor));
                    }
                }
                Ok(header)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// A checked header: the tensors sorted by name, with absolute byte ranges.
pub(super) struct Parsed {
    pub(super) tensors: Vec<TensorInfo>,
    pub(super) metadata: BTreeMap<String, String>,
}

/// Parses and checks the safetensors header of `file`, reading only the header's bytes.
pub(super) fn parse(file: &[u8]) -> Result<Parsed, FormatError> {
    let file_len = len_u64(file.len());
    let Some(prefix) = file.first_chunk::<8>() else {
        return Err(FormatError::TooShort { file_len });
    };
    let header_len = u64::from_le_bytes(*prefix);
    if header_len > file_len - 8 {
        return Err(FormatError::HeaderPastEnd {
            header_len,
            file_len,
        });
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(FormatError::HeaderTooLarge {
            header_len,
            limit: MAX_HEADER_BYTES,
        });
    }
    // Both fit in usize: the header length is below the file's length, a usize.
    let data_start = 8 + header_len as usize;
    let header = &file[8..data_start];
    if header.first() != Some(&b'{') {
        return Err(FormatError::HeaderStart);
    }
    let raw: RawHeader = serde_json::from_slice(header).map_err(|e| FormatError::HeaderJson {
        reason: e.to_string(),
    })?;
    let data_len = file_len - 8 - header_len;
    let mut names = HashSet::with_capacity(raw.tensors.len());
    let mut tensors = Vec::with_capacity(raw.tensors.len());
    for (name, t) in raw.tensors {
        if !names.insert(name.clone()) {
            return Err(FormatError::DuplicateTensor { tensor: name });
        }
        let Some(dtype) = Dtype::from_name(&t.dtype) else {
            return Err(FormatError::UnknownDtype {
                tensor: name,
                dtype: t.dtype,
            });
        };
        let [begin, end] = t.data_offsets;
        if end < begin {
            return Err(FormatError::ReversedOffsets {
                tensor: name,
                begin,
                end,
            });
        }
        if end > data_len {
            return Err(FormatError::TensorPastEnd {
                tensor: name,
                end,
                data_len,
            });
        }
        let bytes = end - begin;
        let shape: Option<Vec<usize>> = t.shape.iter().map(|&d| usize::try_from(d).ok()).collect();
        let fills = shape.as_ref().is_some_and(|shape| {
            shape
                .iter()
                .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
                .is_some_and(|size| len_u64(size) == bytes)
        });
        let (true, Some(shape)) = (fills, shape) else {
            return Err(FormatError::ShapeMismatch {
                tensor: name,
                shape: t.shape,
                dtype,
                bytes,
            });
        };
        // Both below the file's length, a usize.
        tensors.push(TensorInfo {
            name: name.into(),
            dtype,
            shape: shape.into(),
            begin: data_start + begin as usize,
            end: data_start + end as usize,
        });
    }
    // The format's rule: the tensors cover the data section exactly, in offset order.
    tensors.sort_unstable_by_key(|t| (t.begin, t.end));
    let mut covered = data_start;
    for t in &tensors {
        if t.begin != covered {
            return Err(FormatError::NotContiguous {
                tensor: t.name.to_string(),
                begin: len_u64(t.begin - data_start),
                expected: len_u64(covered - data_start),
            });
        }
        covered = t.end;
    }
    if covered != file.len() {
        return Err(FormatError::Uncovered {
            covered: len_u64(covered - data_start),
            data_len,
        });
    }
    tensors.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(Parsed {
        tensors,
        metadata: raw.metadata.unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------------
// Declarations, configuration, status
// ---------------------------------------------------------------------------------------
