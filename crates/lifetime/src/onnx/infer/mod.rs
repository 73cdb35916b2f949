//! Shape inference, one node at a time: from what is known of a node's inputs
//! ([`Info`]: type, shape, and for small integer tensors the values) and its
//! attributes, what is known of its outputs.
//!
//! Operators that take a setting as an attribute in early opsets and as an input
//! later (`Squeeze` axes, `Split` sizes, `Reshape` shape, `Pad` pads, `TopK` k,
//! reduction axes, ...) are read from whichever the node carries, so the rules do
//! not depend on the opset except where the inputs themselves moved (`Resize`,
//! `Dropout`'s mask type). Anything the rules cannot tell stays unknown
//! ([`SDim::Unknown`] or a `None` shape); nothing here fails on odd input except
//! an attribute of the wrong kind or a constant of an unsupported type.

use super::OnnxError;
use super::attrs::Attrs;
use super::proto::{NodeProto, data_type as dt};
use super::value::{Info, SDim, Value};

mod elementwise;
mod layout;
mod nn;

/// A node being inferred, with what the rules need besides its inputs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeCtx<'a> {
    /// The node.
    pub(crate) node: &'a NodeProto,
    /// Its attributes.
    pub(crate) attrs: Attrs<'a>,
    /// The default domain's opset version.
    pub(crate) opset: i64,
    /// The file, for errors.
    pub(crate) file: &'a str,
}

/// Output infos of `cx.node` (one per output slot, omitted ones included) given
/// its inputs' infos (`None` for an omitted input).
pub(crate) fn infer_node(cx: &NodeCtx<'_>, ins: &[Option<&Info>]) -> Result<Vec<Info>, OnnxError> {
    let n_out = cx.node.output.len();
    let domain = cx.node.domain.as_str();
    let mut outs = if domain.is_empty() || domain == "ai.onnx" {
        rule(cx, &Ins(ins))?
    } else {
        log::debug!(
            "`{}`: no shape rule for operator {}::{}",
            cx.file,
            domain,
            cx.node.op_type
        );
        Vec::new()
    };
    outs.resize_with(n_out, Info::default);
    outs.truncate(n_out);
    for o in &mut outs {
        sanitize(o);
    }
    Ok(outs)
}

/// Makes negative extents (from odd constants: negative pads, sizes) unknown, so
/// every later rule sees extents of at least 0, and drops values that no longer
/// fit the shape.
pub(crate) fn sanitize(info: &mut Info) {
    if let Some(s) = &mut info.shape {
        for d in s.iter_mut() {
            if d.known().is_some_and(|v| v < 0) {
                *d = SDim::Unknown;
            }
        }
    }
    if let Some(v) = &info.value
        && info.numel() != Some(v.len() as u64)
    {
        info.value = None;
    }
}

/// A node's inputs by position.
#[derive(Clone, Copy)]
struct Ins<'i, 'a>(&'i [Option<&'a Info>]);

impl<'a> Ins<'_, 'a> {
    /// Input `i`, when present.
    fn get(&self, i: usize) -> Option<&'a Info> {
        self.0.get(i).copied().flatten()
    }

    /// Input `i`, or an unknown info.
    fn info(&self, i: usize) -> Info {
        self.get(i).cloned().unwrap_or_default()
    }

    /// Input `i`'s shape.
    fn shape(&self, i: usize) -> Option<&'a [SDim]> {
        self.get(i)?.shape.as_deref()
    }

    /// Input `i`'s type (0 when unknown).
    fn dtype(&self, i: usize) -> i32 {
        self.get(i).map_or(0, |x| x.dtype)
    }

    /// Input `i`'s values.
    fn value(&self, i: usize) -> Option<&'a Value> {
        self.get(i)?.value.as_ref()
    }

    /// Input `i`'s values as known integers.
    fn ints(&self, i: usize) -> Option<Vec<i64>> {
        self.value(i)?.i64s()
    }

    /// The present inputs.
    fn present(&self) -> Vec<&'a Info> {
        self.0.iter().copied().flatten().collect()
    }

    /// The number of input slots.
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Normalises `axis` (negative counts from the end) for a rank-`rank` tensor.
pub(crate) fn axis_in(axis: i64, rank: usize) -> Option<usize> {
    let r = i64::try_from(rank).ok()?;
    let a = if axis < 0 { axis.checked_add(r)? } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// Normalises a list of axes; `None` when one is out of range or repeated.
pub(super) fn axes_in(axes: &[i64], rank: usize) -> Option<Vec<usize>> {
    let mut out: Vec<usize> = axes
        .iter()
        .map(|&a| axis_in(a, rank))
        .collect::<Option<_>>()?;
    out.sort_unstable();
    let before = out.len();
    out.dedup();
    (out.len() == before).then_some(out)
}

/// The numpy broadcast of two dimensions.
pub(super) fn broadcast_dim(a: &SDim, b: &SDim) -> SDim {
    match (a, b) {
        (x, y) if x == y && *x != SDim::Unknown => x.clone(),
        (SDim::Known(1), y) => y.clone(),
        (x, SDim::Known(1)) => x.clone(),
        // A symbol or unknown facing k != 1 must be k (or 1, which broadcasts to k).
        (SDim::Known(k), _) | (_, SDim::Known(k)) if *k != 1 => {
            if let (SDim::Known(x), SDim::Known(y)) = (a, b) {
                log::debug!("broadcast of incompatible dimensions {x} and {y}");
                SDim::Unknown
            } else {
                SDim::Known(*k)
            }
        }
        _ => SDim::Unknown,
    }
}

/// The numpy broadcast of several shapes (right-aligned).
pub(super) fn broadcast(shapes: &[&[SDim]]) -> Vec<SDim> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    (0..rank)
        .map(|i| {
            let mut acc = SDim::Known(1);
            for s in shapes {
                if let Some(d) = (i + s.len()).checked_sub(rank).and_then(|j| s.get(j)) {
                    acc = broadcast_dim(&acc, d);
                }
            }
            acc
        })
        .collect()
}

/// A known shape as `usize`s.
pub(super) fn ushape(info: &Info) -> Option<Vec<usize>> {
    info.shape
        .as_ref()?
        .iter()
        .map(|d| usize::try_from(d.known()?).ok())
        .collect()
}

/// A float as an integer element (truncating, like `Cast`); unknown when it does
/// not fit.
pub(super) fn float_to_dim(x: f64) -> SDim {
    if x.is_finite() && x.abs() < 9.0e18 {
        SDim::Known(x.trunc() as i64)
    } else {
        SDim::Unknown
    }
}

/// The product of some dimensions: known when all are, the symbol when exactly one
/// is symbolic and the rest are 1, else unknown.
pub(super) fn product(dims: &[SDim]) -> SDim {
    dims.iter().fold(SDim::Known(1), |acc, d| acc.mul(d))
}

/// A node's type and the values it passes through unchanged (`Identity`,
/// `Squeeze`, `Reshape`, ... keep the flat values).
pub(super) fn pass_value(out: Info, input: &Info) -> Info {
    let v = input.value.clone();
    out.with_value(v)
}

/// One output.
fn one(info: Info) -> Result<Vec<Info>, OnnxError> {
    Ok(vec![info])
}

/// The rules, by operator.
fn rule(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    match cx.node.op_type.as_str() {
        "Identity" => one(pass_value(x.like(), &x)),
        op if elementwise::SAME_SHAPE.contains(&op) => one(x.like()),
        "Neg" | "Abs" | "Ceil" | "Floor" | "Sqrt" => elementwise::unary_math(cx, ins),
        "IsNaN" | "IsInf" | "Not" => elementwise::predicate(cx, ins),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "BitShift" | "BitwiseAnd" | "BitwiseOr"
        | "BitwiseXor" => elementwise::arithmetic(cx, ins),
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" => {
            elementwise::comparison(cx, ins)
        }
        "Where" => elementwise::select(ins),
        "Min" | "Max" | "Sum" | "Mean" => elementwise::variadic(cx, ins),
        "Cast" | "CastLike" => elementwise::cast(cx, ins),
        "QuantizeLinear" => elementwise::quantize(cx, ins),
        "DequantizeLinear" => elementwise::dequantize(ins),
        "Dropout" => nn::dropout(cx, ins),
        "BatchNormalization" => nn::batch_norm(ins),
        "LayerNormalization" => nn::layer_norm(cx, ins),
        "Gemm" => nn::gemm(cx, ins),
        "MatMul" | "MatMulInteger" | "QLinearMatMul" => nn::matmul(cx, ins),
        "Einsum" => nn::einsum(cx, ins),
        "Conv" | "ConvInteger" | "QLinearConv" => nn::conv(cx, ins),
        "ConvTranspose" => {
            let shape = nn::conv_transpose_shape(a, x.shape.as_deref(), ins.shape(1))?;
            one(Info::new(x.dtype, shape))
        }
        "MaxPool" | "AveragePool" | "LpPool" => nn::pool(cx, ins),
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => nn::global_pool(ins),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => {
            one(nn::reduce(cx, ins, &x)?)
        }
        "ArgMax" | "ArgMin" => nn::arg_reduce(cx, ins),
        "TopK" => nn::top_k(cx, ins),
        "Resize" | "Upsample" => one(Info::new(x.dtype, nn::resize(cx, ins, &x)?)),
        "Constant" => layout::constant(cx),
        "ConstantOfShape" => layout::constant_of_shape(cx, ins),
        "Shape" => layout::shape(cx, ins),
        "Size" => layout::size(ins),
        "Flatten" => layout::flatten(cx, ins),
        "Reshape" => layout::reshape(cx, ins),
        "Transpose" => layout::transpose(cx, ins),
        "Squeeze" => layout::squeeze(cx, ins),
        "Unsqueeze" => layout::unsqueeze(cx, ins),
        "Concat" => layout::concat_node(cx, ins),
        "Split" => layout::split(cx, ins, &x),
        "Slice" => one(layout::slice(cx, ins, &x)?),
        "Gather" => layout::gather_node(cx, ins),
        "GatherElements" => one(Info::new(x.dtype, ins.shape(1).map(<[SDim]>::to_vec))),
        "Expand" => layout::expand(ins),
        "Tile" => layout::tile(ins),
        "Range" => one(layout::range(ins)),
        "Pad" => layout::pad(cx, ins),
        "DepthToSpace" | "SpaceToDepth" => layout::depth_to_space(cx, ins),
        "NonZero" => {
            let shape = x.rank().map(|r| vec![SDim::Known(r as i64), SDim::Unknown]);
            one(Info::new(dt::INT64, shape))
        }
        op => {
            log::debug!("`{}`: no shape rule for operator {op}", cx.file);
            Ok(vec![])
        }
    }
}
