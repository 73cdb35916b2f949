//! Elementwise operators: unary maps, numpy-broadcast binary and variadic
//! operators (with their values computed when the inputs' are known), `Where`,
//! `Cast` and the quantisation pair.

use super::{Ins, NodeCtx, broadcast, float_to_dim, one, ushape};
use crate::onnx::OnnxError;
use crate::onnx::proto::data_type as dt;
use crate::onnx::value::{Info, MAX_VALUE_ELEMS, SDim, Value};

/// Operators whose output has the input's type and shape.
pub(super) const SAME_SHAPE: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Gelu",
    "Erf",
    "Exp",
    "Log",
    "Reciprocal",
    "Softmax",
    "LogSoftmax",
    "Hardmax",
    "Elu",
    "Selu",
    "Celu",
    "Softplus",
    "Softsign",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Asinh",
    "Acosh",
    "Atanh",
    "Round",
    "Sign",
    "Mish",
    "ThresholdedRelu",
    "Shrink",
    "LRN",
    "InstanceNormalization",
    "LpNormalization",
    "MeanVarianceNormalization",
    "CumSum",
    "Trilu",
    "Clip",
    "BitwiseNot",
    "GroupNormalization",
    "ReverseSequence",
    "Swish",
];

/// For an output of shape `out` broadcast from an input of shape `shape`, the
/// input's flat index of every output element (row-major). `None` when `shape`
/// does not broadcast to `out` or the output is too large.
fn broadcast_sources(out: &[usize], shape: &[usize]) -> Option<Vec<usize>> {
    let off = out.len().checked_sub(shape.len())?;
    let n = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if n > MAX_VALUE_ELEMS {
        return None;
    }
    let mut strides = vec![0usize; out.len()];
    let mut s = 1usize;
    for (i, &d) in shape.iter().enumerate().rev() {
        if d != out[off + i] && d != 1 {
            return None;
        }
        strides[off + i] = if d == 1 { 0 } else { s };
        s = s.checked_mul(d)?;
    }
    let mut res = Vec::with_capacity(n);
    let mut idx = vec![0usize; out.len()];
    for _ in 0..n {
        res.push(idx.iter().zip(&strides).map(|(a, b)| a * b).sum());
        for d in (0..out.len()).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Some(res)
}

/// An elementwise operation whose values inference computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ew {
    Add,
    Sub,
    Mul,
    Div,
    Mod { fmod: bool },
    Pow,
    Min,
    Max,
    Sum,
    Mean,
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    And,
    Or,
    Xor,
    Where,
}

impl Ew {
    /// Whether the result is boolean.
    fn is_bool(self) -> bool {
        matches!(
            self,
            Ew::Equal
                | Ew::Less
                | Ew::Greater
                | Ew::LessOrEqual
                | Ew::GreaterOrEqual
                | Ew::And
                | Ew::Or
                | Ew::Xor
        )
    }

    /// Applies the operation to integer (possibly symbolic) operands.
    fn ints(self, v: &[&SDim]) -> SDim {
        let b = |x: bool| SDim::Known(i64::from(x));
        let k2 = || Some((v.first()?.known()?, v.get(1)?.known()?));
        match self {
            Ew::Add => v[0].add(v[1]),
            Ew::Sub => v[0].sub(v[1]),
            Ew::Mul => v[0].mul(v[1]),
            Ew::Div => v[0].div(v[1]),
            Ew::Mod { fmod } => k2()
                .and_then(|(a, m)| {
                    let r = a.checked_rem(m)?;
                    // Integer Mod takes the divisor's sign unless fmod asks for C's.
                    Some(if !fmod && r != 0 && ((r < 0) != (m < 0)) {
                        r + m
                    } else {
                        r
                    })
                })
                .map_or(SDim::Unknown, SDim::Known),
            Ew::Pow => k2()
                .and_then(|(a, e)| a.checked_pow(u32::try_from(e).ok()?))
                .map_or(SDim::Unknown, SDim::Known),
            Ew::Min | Ew::Max => {
                if v.iter().all(|d| *d == v[0]) {
                    return v[0].clone();
                }
                let ks: Option<Vec<i64>> = v.iter().map(|d| d.known()).collect();
                match (ks, self) {
                    (Some(ks), Ew::Min) => ks.into_iter().min().map_or(SDim::Unknown, SDim::Known),
                    (Some(ks), _) => ks.into_iter().max().map_or(SDim::Unknown, SDim::Known),
                    _ => SDim::Unknown,
                }
            }
            Ew::Sum | Ew::Mean => {
                let sum = v.iter().skip(1).fold(v[0].clone(), |a, d| a.add(d));
                if self == Ew::Mean {
                    sum.div(&SDim::Known(v.len() as i64))
                } else {
                    sum
                }
            }
            Ew::Equal if v[0] == v[1] && *v[0] != SDim::Unknown => b(true),
            Ew::Where => match v[0].known() {
                Some(c) => v[if c != 0 { 1 } else { 2 }].clone(),
                None => SDim::Unknown,
            },
            _ => match k2() {
                Some((x, y)) => match self {
                    Ew::Equal => b(x == y),
                    Ew::Less => b(x < y),
                    Ew::Greater => b(x > y),
                    Ew::LessOrEqual => b(x <= y),
                    Ew::GreaterOrEqual => b(x >= y),
                    Ew::And => b(x != 0 && y != 0),
                    Ew::Or => b(x != 0 || y != 0),
                    Ew::Xor => b((x != 0) != (y != 0)),
                    _ => SDim::Unknown,
                },
                None => SDim::Unknown,
            },
        }
    }

    /// Applies the operation to float operands (booleans come back as 0/1).
    fn floats(self, v: &[f64]) -> f64 {
        let b = |x: bool| if x { 1.0 } else { 0.0 };
        match self {
            Ew::Add => v[0] + v[1],
            Ew::Sub => v[0] - v[1],
            Ew::Mul => v[0] * v[1],
            Ew::Div => v[0] / v[1],
            Ew::Mod { .. } => v[0] % v[1],
            Ew::Pow => v[0].powf(v[1]),
            Ew::Min => v.iter().copied().fold(f64::INFINITY, f64::min),
            Ew::Max => v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Ew::Sum => v.iter().sum(),
            Ew::Mean => v.iter().sum::<f64>() / v.len() as f64,
            Ew::Equal => b(v[0] == v[1]),
            Ew::Less => b(v[0] < v[1]),
            Ew::Greater => b(v[0] > v[1]),
            Ew::LessOrEqual => b(v[0] <= v[1]),
            Ew::GreaterOrEqual => b(v[0] >= v[1]),
            Ew::And => b(v[0] != 0.0 && v[1] != 0.0),
            Ew::Or => b(v[0] != 0.0 || v[1] != 0.0),
            Ew::Xor => b((v[0] != 0.0) != (v[1] != 0.0)),
            Ew::Where => {
                if v[0] != 0.0 {
                    v[1]
                } else {
                    v[2]
                }
            }
        }
    }
}

/// An elementwise node with numpy broadcasting: output type `dtype`, shape the
/// broadcast of the inputs', values computed when every input's are known.
fn elementwise(op: Ew, ins: &[&Info], dtype: i32) -> Info {
    let shapes: Option<Vec<&[SDim]>> = ins.iter().map(|i| i.shape.as_deref()).collect();
    let shape = shapes.map(|s| broadcast(&s));
    let out = Info::new(dtype, shape);
    let value = (|| {
        let out_shape = ushape(&out)?;
        let srcs: Vec<Vec<usize>> = ins
            .iter()
            .map(|i| broadcast_sources(&out_shape, &ushape(i)?))
            .collect::<Option<_>>()?;
        let n = srcs.first()?.len();
        let all_ints = ins.iter().all(|i| matches!(i.value, Some(Value::Ints(_))));
        if all_ints {
            let vals: Vec<&[SDim]> = ins
                .iter()
                .map(|i| i.value.as_ref()?.dims())
                .collect::<Option<_>>()?;
            let res = (0..n)
                .map(|k| {
                    let args: Option<Vec<&SDim>> =
                        vals.iter().zip(&srcs).map(|(v, s)| v.get(s[k])).collect();
                    Some(op.ints(&args?))
                })
                .collect::<Option<_>>()?;
            Some(Value::Ints(res))
        } else {
            let vals: Vec<Vec<f64>> = ins
                .iter()
                .map(|i| i.value.as_ref()?.f64s())
                .collect::<Option<_>>()?;
            let res: Vec<f64> = (0..n)
                .map(|k| {
                    let args: Option<Vec<f64>> = vals
                        .iter()
                        .zip(&srcs)
                        .map(|(v, s)| v.get(s[k]).copied())
                        .collect();
                    Some(op.floats(&args?))
                })
                .collect::<Option<_>>()?;
            if op.is_bool() || dt::is_integer(dtype) {
                Some(Value::Ints(res.into_iter().map(float_to_dim).collect()))
            } else {
                Some(Value::Floats(res))
            }
        }
    })();
    out.with_value(value)
}

/// Converts values for a `Cast` to `to`.
fn cast_value(v: &Value, to: i32) -> Option<Value> {
    match (v, to) {
        (Value::Ints(d), t) if t == dt::BOOL => Some(Value::Ints(
            d.iter()
                .map(|x| {
                    x.known()
                        .map_or(SDim::Unknown, |k| SDim::Known(i64::from(k != 0)))
                })
                .collect(),
        )),
        (Value::Ints(_), t) if dt::is_integer(t) => Some(v.clone()),
        (Value::Floats(f), t) if t == dt::BOOL => Some(Value::Ints(
            f.iter()
                .map(|&x| SDim::Known(i64::from(x != 0.0)))
                .collect(),
        )),
        (Value::Floats(f), t) if dt::is_integer(t) => {
            Some(Value::Ints(f.iter().map(|&x| float_to_dim(x)).collect()))
        }
        (_, dt::FLOAT | dt::DOUBLE | dt::FLOAT16 | dt::BFLOAT16) => v.f64s().map(Value::Floats),
        _ => None,
    }
}

/// `Neg`, `Abs`, `Ceil`, `Floor`, `Sqrt`: same shape, values mapped.
pub(super) fn unary_math(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let x = ins.info(0);
    let op = cx.node.op_type.as_str();
    let f = |v: f64| match op {
        "Neg" => -v,
        "Abs" => v.abs(),
        "Ceil" => v.ceil(),
        "Floor" => v.floor(),
        _ => v.sqrt(),
    };
    let value = match &x.value {
        Some(Value::Ints(v)) if op == "Neg" || op == "Abs" => {
            let mut out = Vec::with_capacity(v.len());
            for d in v {
                out.push(match d.known() {
                    Some(k) if op == "Neg" => k.checked_neg().map_or(SDim::Unknown, SDim::Known),
                    Some(k) => k.checked_abs().map_or(SDim::Unknown, SDim::Known),
                    None => SDim::Unknown,
                });
            }
            Some(Value::Ints(out))
        }
        Some(Value::Floats(v)) => Some(Value::Floats(v.iter().map(|&x| f(x)).collect())),
        _ => None,
    };
    one(x.like().with_value(value))
}

/// `IsNaN`, `IsInf`, `Not`: booleans of the input's shape.
pub(super) fn predicate(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let x = ins.info(0);
    let op = cx.node.op_type.as_str();
    let value = match (&x.value, op) {
        (Some(Value::Ints(v)), "Not") => Some(Value::Ints(
            v.iter()
                .map(|d| {
                    d.known()
                        .map_or(SDim::Unknown, |k| SDim::Known(i64::from(k == 0)))
                })
                .collect(),
        )),
        _ => None,
    };
    one(Info::new(dt::BOOL, x.shape.clone()).with_value(value))
}

/// Binary arithmetic and bitwise operators.
pub(super) fn arithmetic(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let op = cx.node.op_type.as_str();
    let ew = match op {
        "Add" => Some(Ew::Add),
        "Sub" => Some(Ew::Sub),
        "Mul" => Some(Ew::Mul),
        "Div" => Some(Ew::Div),
        "Pow" => Some(Ew::Pow),
        "Mod" => Some(Ew::Mod {
            fmod: a.int_or("fmod", 0)? != 0,
        }),
        _ => None,
    };
    let (Some(l), Some(r)) = (ins.get(0), ins.get(1)) else {
        return Ok(vec![]);
    };
    match ew {
        Some(ew) => one(elementwise(ew, &[l, r], l.dtype)),
        None => one(elementwise(Ew::Add, &[&l.like(), &r.like()], l.dtype)),
    }
}

/// Comparisons and logical operators: booleans.
pub(super) fn comparison(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let op = cx.node.op_type.as_str();
    let ew = match op {
        "Equal" => Ew::Equal,
        "Less" => Ew::Less,
        "Greater" => Ew::Greater,
        "LessOrEqual" => Ew::LessOrEqual,
        "GreaterOrEqual" => Ew::GreaterOrEqual,
        "And" => Ew::And,
        "Or" => Ew::Or,
        _ => Ew::Xor,
    };
    let (Some(l), Some(r)) = (ins.get(0), ins.get(1)) else {
        return Ok(vec![]);
    };
    one(elementwise(ew, &[l, r], dt::BOOL))
}

/// `Where`: the broadcast of condition and both branches.
pub(super) fn select(ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let (Some(c), Some(l), Some(r)) = (ins.get(0), ins.get(1), ins.get(2)) else {
        return Ok(vec![]);
    };
    one(elementwise(Ew::Where, &[c, l, r], l.dtype))
}

/// `Min`, `Max`, `Sum`, `Mean` over any number of inputs.
pub(super) fn variadic(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let op = cx.node.op_type.as_str();
    let all = ins.present();
    let ew = match op {
        "Min" => Ew::Min,
        "Max" => Ew::Max,
        "Sum" => Ew::Sum,
        _ => Ew::Mean,
    };
    if all.is_empty() {
        return Ok(vec![]);
    }
    one(elementwise(ew, &all, all[0].dtype))
}

/// `Cast` and `CastLike`.
pub(super) fn cast(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let op = cx.node.op_type.as_str();
    let to = if op == "Cast" {
        i32::try_from(a.int_or("to", 0)?).unwrap_or(0)
    } else {
        ins.dtype(1)
    };
    let value = x.value.as_ref().and_then(|v| cast_value(v, to));
    one(Info::new(to, x.shape.clone()).with_value(value))
}

/// `QuantizeLinear`: the zero point's type (or `output_dtype`, or uint8).
pub(super) fn quantize(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let dtype = if ins.get(2).is_some() {
        ins.dtype(2)
    } else {
        i32::try_from(a.int_or("output_dtype", 0)?)
            .ok()
            .filter(|&t| t != 0)
            .unwrap_or(dt::UINT8)
    };
    one(Info::new(dtype, x.shape.clone()))
}

/// `DequantizeLinear`: the scale's type.
pub(super) fn dequantize(ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let x = ins.info(0);
    let dtype = ins.get(1).map_or(dt::FLOAT, |s| s.dtype);
    one(Info::new(dtype, x.shape.clone()))
}
