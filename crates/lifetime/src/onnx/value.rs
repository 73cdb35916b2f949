//! What shape inference knows about a tensor ([`Info`]): element type, shape with
//! possibly unknown dimensions ([`SDim`]), and for small tensors the values
//! themselves ([`Value`]), which is what lets `Shape → Gather → Concat → Reshape`
//! chains resolve. Also the decoding of constant [`TensorProto`]s into an `Info`.

use std::rc::Rc;

use super::OnnxError;
use super::proto::{TensorProto, data_type};
use crate::ir::Dim;

/// Tensors with more elements than this carry no [`Value`]: shape arithmetic
/// only ever needs a handful, and the bound keeps memory use proportional to the
/// file whatever the file says.
pub(crate) const MAX_VALUE_ELEMS: usize = 4096;

/// One dimension during inference, or one element of an integer [`Value`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SDim {
    /// A number.
    Known(i64),
    /// A named unknown (`N`) that stays the same wherever it appears.
    Sym(Rc<str>),
    /// Nothing known.
    Unknown,
}

impl SDim {
    /// The number, if known.
    pub(crate) fn known(&self) -> Option<i64> {
        match self {
            SDim::Known(v) => Some(*v),
            _ => None,
        }
    }

    /// Whether this is the number `v`.
    pub(crate) fn is(&self, v: i64) -> bool {
        self.known() == Some(v)
    }

    /// Converts a finished dimension to the IR's form (`None` when unknown or
    /// negative).
    pub(crate) fn to_dim(&self) -> Option<Dim> {
        match self {
            SDim::Known(v) => u64::try_from(*v).ok().map(Dim::Known),
            SDim::Sym(s) => Some(Dim::Sym(s.to_string())),
            SDim::Unknown => None,
        }
    }

    /// `self + other`, symbolic where one side is 0.
    pub(crate) fn add(&self, other: &SDim) -> SDim {
        match (self, other) {
            (SDim::Known(a), SDim::Known(b)) => {
                a.checked_add(*b).map_or(SDim::Unknown, SDim::Known)
            }
            (s, SDim::Known(0)) | (SDim::Known(0), s) => s.clone(),
            _ => SDim::Unknown,
        }
    }

    /// `self - other`.
    pub(crate) fn sub(&self, other: &SDim) -> SDim {
        match (self, other) {
            (SDim::Known(a), SDim::Known(b)) => {
                a.checked_sub(*b).map_or(SDim::Unknown, SDim::Known)
            }
            (s, SDim::Known(0)) => s.clone(),
            (SDim::Sym(a), SDim::Sym(b)) if a == b => SDim::Known(0),
            _ => SDim::Unknown,
        }
    }

    /// `self * other`, symbolic where one side is 1.
    pub(crate) fn mul(&self, other: &SDim) -> SDim {
        match (self, other) {
            (SDim::Known(a), SDim::Known(b)) => {
                a.checked_mul(*b).map_or(SDim::Unknown, SDim::Known)
            }
            (SDim::Known(0), _) | (_, SDim::Known(0)) => SDim::Known(0),
            (s, SDim::Known(1)) | (SDim::Known(1), s) => s.clone(),
            _ => SDim::Unknown,
        }
    }

    /// `self / other`, truncating like C (ONNX integer `Div`).
    pub(crate) fn div(&self, other: &SDim) -> SDim {
        match (self, other) {
            (SDim::Known(a), SDim::Known(b)) => {
                a.checked_div(*b).map_or(SDim::Unknown, SDim::Known)
            }
            (s, SDim::Known(1)) => s.clone(),
            (SDim::Sym(a), SDim::Sym(b)) if a == b => SDim::Known(1),
            _ => SDim::Unknown,
        }
    }
}

/// The values of a small tensor, flattened in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// Integers and booleans (0/1); elements taken from shapes may be symbolic.
    Ints(Vec<SDim>),
    /// Floating-point numbers.
    Floats(Vec<f64>),
}

impl Value {
    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        match self {
            Value::Ints(v) => v.len(),
            Value::Floats(v) => v.len(),
        }
    }

    /// The elements as dimensions (integers only).
    pub(crate) fn dims(&self) -> Option<&[SDim]> {
        match self {
            Value::Ints(v) => Some(v),
            Value::Floats(_) => None,
        }
    }

    /// The elements as numbers, when every one is a known integer.
    pub(crate) fn i64s(&self) -> Option<Vec<i64>> {
        match self {
            Value::Ints(v) => v.iter().map(SDim::known).collect(),
            Value::Floats(_) => None,
        }
    }

    /// The elements as floats (known integers convert).
    pub(crate) fn f64s(&self) -> Option<Vec<f64>> {
        match self {
            Value::Ints(v) => v.iter().map(|d| d.known().map(|x| x as f64)).collect(),
            Value::Floats(v) => Some(v.clone()),
        }
    }

    /// The single element of a scalar or one-element tensor, as an integer.
    pub(crate) fn scalar_i64(&self) -> Option<i64> {
        match self {
            Value::Ints(v) if v.len() == 1 => v[0].known(),
            Value::Floats(v) if v.len() == 1 && v[0].is_finite() => Some(v[0] as i64),
            _ => None,
        }
    }
}

/// What inference knows about one tensor.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Info {
    /// ONNX data type code; 0 when unknown.
    pub(crate) dtype: i32,
    /// The shape, `None` when not even the rank is known.
    pub(crate) shape: Option<Vec<SDim>>,
    /// The values, for small tensors whose values are known.
    pub(crate) value: Option<Value>,
}

impl Info {
    /// A tensor of type `dtype` and shape `shape`, values unknown.
    pub(crate) fn new(dtype: i32, shape: Option<Vec<SDim>>) -> Info {
        Info {
            dtype,
            shape,
            value: None,
        }
    }

    /// This tensor's type and shape without its values.
    pub(crate) fn like(&self) -> Info {
        Info::new(self.dtype, self.shape.clone())
    }

    /// Adds `value` when it fits the shape (the element count agrees).
    pub(crate) fn with_value(mut self, value: Option<Value>) -> Info {
        if let (Some(v), Some(n)) = (&value, self.numel())
            && v.len() as u64 == n
        {
            self.value = value;
        }
        self
    }

    /// The rank, if known.
    pub(crate) fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(Vec::len)
    }

    /// The number of elements, when every dimension is known.
    pub(crate) fn numel(&self) -> Option<u64> {
        known_numel(self.shape.as_deref()?)
    }
}

/// The element count of a shape whose dimensions are all known and non-negative.
pub(crate) fn known_numel(shape: &[SDim]) -> Option<u64> {
    shape.iter().try_fold(1u64, |acc, d| {
        let v = u64::try_from(d.known()?).ok()?;
        acc.checked_mul(v)
    })
}

/// Decodes a constant tensor (an initializer, a `Constant`'s value): its type and
/// shape always, its values when it is small and its data is in the file.
/// `name` names it in errors.
pub(crate) fn tensor_info(t: &TensorProto, name: &str, file: &str) -> Result<Info, OnnxError> {
    if data_type::elem_bytes(t.data_type).is_none() {
        return Err(OnnxError::UnsupportedDataType {
            file: file.to_owned(),
            tensor: name.to_owned(),
            data_type: t.data_type,
            type_name: data_type::name(t.data_type),
        });
    }
    if let Some(d) = t.dims.iter().find(|d| **d < 0) {
        return Err(OnnxError::InvalidTensor {
            file: file.to_owned(),
            tensor: name.to_owned(),
            reason: format!("negative dimension {d} in {:?}", t.dims),
        });
    }
    let shape: Vec<SDim> = t.dims.iter().map(|&d| SDim::Known(d)).collect();
    let value = known_numel(&shape)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= MAX_VALUE_ELEMS)
        .and_then(|n| decode_values(t, n));
    if value.is_none() && t.data_location != 1 {
        log::trace!("`{file}`: values of `{name}` not decoded");
    }
    Ok(Info {
        dtype: t.data_type,
        shape: Some(shape),
        value,
    })
}

/// Reads `n` elements of `t`, from `raw_data` or the typed field its type uses;
/// `None` when the data is elsewhere (external) or its length disagrees with `n`.
fn decode_values(t: &TensorProto, n: usize) -> Option<Value> {
    use data_type as dt;
    if t.data_location == 1 {
        return None;
    }
    let raw = &t.raw_data;
    let from_raw = !raw.is_empty() || n == 0;
    let ints = |v: Vec<i64>| Some(Value::Ints(v.into_iter().map(SDim::Known).collect()));
    match t.data_type {
        dt::FLOAT if from_raw => floats_from_raw::<4>(raw, n, |b| f64::from(f32::from_le_bytes(b))),
        dt::FLOAT => (t.float_data.len() == n)
            .then(|| Value::Floats(t.float_data.iter().map(|&x| f64::from(x)).collect())),
        dt::DOUBLE if from_raw => floats_from_raw::<8>(raw, n, f64::from_le_bytes),
        dt::DOUBLE => (t.double_data.len() == n).then(|| Value::Floats(t.double_data.clone())),
        dt::FLOAT16 if from_raw => {
            floats_from_raw::<2>(raw, n, |b| f16_to_f64(u16::from_le_bytes(b)))
        }
        dt::BFLOAT16 if from_raw => {
            floats_from_raw::<2>(raw, n, |b| bf16_to_f64(u16::from_le_bytes(b)))
        }
        dt::FLOAT16 | dt::BFLOAT16 => {
            let conv = if t.data_type == dt::FLOAT16 {
                f16_to_f64
            } else {
                bf16_to_f64
            };
            (t.int32_data.len() == n).then(|| {
                // The bits of each half sit in the low 16 bits of an int32.
                Value::Floats(t.int32_data.iter().map(|&x| conv(x as u16)).collect())
            })
        }
        dt::INT64 if from_raw => ints(ints_from_raw::<8>(raw, n, i64::from_le_bytes)?),
        dt::INT64 => {
            (t.int64_data.len() == n).then_some(())?;
            ints(t.int64_data.clone())
        }
        dt::INT32 if from_raw => ints(ints_from_raw::<4>(raw, n, |b| {
            i64::from(i32::from_le_bytes(b))
        })?),
        dt::INT16 if from_raw => ints(ints_from_raw::<2>(raw, n, |b| {
            i64::from(i16::from_le_bytes(b))
        })?),
        dt::UINT16 if from_raw => ints(ints_from_raw::<2>(raw, n, |b| {
            i64::from(u16::from_le_bytes(b))
        })?),
        dt::INT8 if from_raw => ints(ints_from_raw::<1>(raw, n, |b| {
            i64::from(i8::from_le_bytes(b))
        })?),
        dt::UINT8 | dt::BOOL if from_raw => ints(ints_from_raw::<1>(raw, n, |b| i64::from(b[0]))?),
        dt::INT32 | dt::INT16 | dt::UINT16 | dt::INT8 | dt::UINT8 | dt::BOOL => {
            (t.int32_data.len() == n).then_some(())?;
            ints(t.int32_data.iter().map(|&x| i64::from(x)).collect())
        }
        dt::UINT32 if from_raw => ints(ints_from_raw::<4>(raw, n, |b| {
            i64::from(u32::from_le_bytes(b))
        })?),
        dt::UINT64 if from_raw => {
            let v = ints_from_raw::<8>(raw, n, |b| {
                i64::try_from(u64::from_le_bytes(b)).unwrap_or(-1)
            })?;
            // Values past i64::MAX are not shape material: mark them unknown.
            Some(Value::Ints(
                v.into_iter()
                    .map(|x| if x < 0 { SDim::Unknown } else { SDim::Known(x) })
                    .collect(),
            ))
        }
        dt::UINT32 | dt::UINT64 => {
            (t.uint64_data.len() == n).then_some(())?;
            Some(Value::Ints(
                t.uint64_data
                    .iter()
                    .map(|&x| i64::try_from(x).map_or(SDim::Unknown, SDim::Known))
                    .collect(),
            ))
        }
        _ => None,
    }
}

/// Splits `raw` into `n` little-endian `W`-byte integers.
fn ints_from_raw<const W: usize>(
    raw: &[u8],
    n: usize,
    f: impl Fn([u8; W]) -> i64,
) -> Option<Vec<i64>> {
    if raw.len() != n.checked_mul(W)? {
        return None;
    }
    Some(
        raw.chunks_exact(W)
            .map(|c| {
                let mut b = [0u8; W];
                b.copy_from_slice(c);
                f(b)
            })
            .collect(),
    )
}

/// Splits `raw` into `n` little-endian `W`-byte floats.
fn floats_from_raw<const W: usize>(
    raw: &[u8],
    n: usize,
    f: impl Fn([u8; W]) -> f64,
) -> Option<Value> {
    if raw.len() != n.checked_mul(W)? {
        return None;
    }
    Some(Value::Floats(
        raw.chunks_exact(W)
            .map(|c| {
                let mut b = [0u8; W];
                b.copy_from_slice(c);
                f(b)
            })
            .collect(),
    ))
}

/// IEEE 754 half precision bits to a double.
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f64::from(bits & 0x3ff);
    let mag = match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    };
    sign * mag
}

/// bfloat16 bits (the top half of an f32) to a double.
fn bf16_to_f64(bits: u16) -> f64 {
    f64::from(f32::from_bits(u32::from(bits) << 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_decode() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert!(f16_to_f64(0x7c00).is_infinite());
        assert_eq!(bf16_to_f64(0x3f80), 1.0);
    }

    #[test]
    fn symbolic_arithmetic_keeps_names_where_it_can() {
        let n = SDim::Sym(Rc::from("N"));
        assert_eq!(n.mul(&SDim::Known(1)), n);
        assert_eq!(n.add(&SDim::Known(0)), n);
        assert_eq!(n.div(&n), SDim::Known(1));
        assert_eq!(n.mul(&SDim::Known(2)), SDim::Unknown);
        assert_eq!(SDim::Known(i64::MAX).add(&SDim::Known(1)), SDim::Unknown);
        assert_eq!(SDim::Known(i64::MIN).div(&SDim::Known(-1)), SDim::Unknown);
    }
}
