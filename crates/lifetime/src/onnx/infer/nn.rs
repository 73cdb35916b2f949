//! Network operators: convolution and pooling windows, matrix products,
//! normalisations, reductions, `TopK` and `Resize`.

use super::{
    Ins, NodeCtx, axes_in, axis_in, broadcast, broadcast_dim, float_to_dim, one, pass_value,
    product,
};
use crate::onnx::OnnxError;
use crate::onnx::attrs::Attrs;
use crate::onnx::proto::data_type as dt;
use crate::onnx::value::{Info, SDim, Value};

/// Output spatial extent of a sliding window.
fn window_out(n: &SDim, k: i64, s: i64, d: i64, pads: (i64, i64), ceil: bool) -> SDim {
    if s <= 0 || d <= 0 || k <= 0 {
        return SDim::Unknown;
    }
    let Some(eff) = k
        .checked_sub(1)
        .and_then(|x| x.checked_mul(d))
        .and_then(|x| x.checked_add(1))
    else {
        return SDim::Unknown;
    };
    match n {
        SDim::Known(n) => {
            let (n, pb, pe, eff, s) = (
                i128::from(*n),
                i128::from(pads.0),
                i128::from(pads.1),
                i128::from(eff),
                i128::from(s),
            );
            let span = n + pb + pe - eff;
            if span < 0 {
                return SDim::Unknown;
            }
            let mut out = if ceil {
                (span + s - 1) / s + 1
            } else {
                span / s + 1
            };
            // A last window that would start in the end padding is dropped.
            if ceil && (out - 1) * s >= n + pb {
                out -= 1;
            }
            i64::try_from(out).map_or(SDim::Unknown, SDim::Known)
        }
        sym if eff == 1 && s == 1 && pads == (0, 0) => sym.clone(),
        _ => SDim::Unknown,
    }
}

/// Spatial output of a `Conv`/pooling node on `x` (rank ≥ 3) with kernel `kernel`.
fn sliding(
    a: &Attrs<'_>,
    x: &[SDim],
    kernel: &[i64],
    ceil: bool,
) -> Result<Option<Vec<SDim>>, OnnxError> {
    let sp = kernel.len();
    if x.len() != sp + 2 {
        return Ok(None);
    }
    let ones = vec![1i64; sp];
    let strides = a.ints("strides")?.unwrap_or(&ones);
    let dil = a.ints("dilations")?.unwrap_or(&ones);
    let zeros = vec![0i64; 2 * sp];
    let pads = a.ints("pads")?.unwrap_or(&zeros);
    let auto_pad = a.string("auto_pad")?.unwrap_or_default();
    if strides.len() != sp || dil.len() != sp || pads.len() != 2 * sp {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(sp);
    for i in 0..sp {
        let n = &x[i + 2];
        let d = match auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => match n {
                SDim::Known(v) if strides[i] > 0 => {
                    SDim::Known(v.div_euclid(strides[i]) + i64::from(v.rem_euclid(strides[i]) != 0))
                }
                sym if strides[i] == 1 => sym.clone(),
                _ => SDim::Unknown,
            },
            "VALID" => window_out(n, kernel[i], strides[i], dil[i], (0, 0), false),
            _ => window_out(
                n,
                kernel[i],
                strides[i],
                dil[i],
                (pads[i], pads[i + sp]),
                ceil,
            ),
        };
        out.push(d);
    }
    Ok(Some(out))
}

/// The shape of a numpy `matmul`.
fn matmul_shape(a: Option<&[SDim]>, b: Option<&[SDim]>) -> Option<Vec<SDim>> {
    let (a, b) = (a?, b?);
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let a2: Vec<SDim> = if a.len() == 1 {
        vec![SDim::Known(1), a[0].clone()]
    } else {
        a.to_vec()
    };
    let b2: Vec<SDim> = if b.len() == 1 {
        vec![b[0].clone(), SDim::Known(1)]
    } else {
        b.to_vec()
    };
    let (ab, am) = a2.split_at(a2.len() - 2);
    let (bb, bm) = b2.split_at(b2.len() - 2);
    let mut out = broadcast(&[ab, bb]);
    if a.len() > 1 {
        out.push(am[0].clone());
    }
    if b.len() > 1 {
        out.push(bm[1].clone());
    }
    Some(out)
}

/// The shape of an `Einsum` with equation `eq` over inputs of shapes `shapes`.
fn einsum_shape(eq: &str, shapes: &[&[SDim]]) -> Option<Vec<SDim>> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != shapes.len() {
        return None;
    }
    let mut letters: Vec<(char, SDim, usize)> = Vec::new();
    let mut ellipsis: Vec<SDim> = Vec::new();
    let mut any_ellipsis = false;
    for (term, shape) in terms.iter().zip(shapes) {
        let (pre, post, has_dots) = match term.split_once("...") {
            Some((p, q)) => (p, q, true),
            None => (*term, "", false),
        };
        let named = pre.chars().count() + post.chars().count();
        let n_dots = shape.len().checked_sub(named)?;
        if !has_dots && n_dots != 0 {
            return None;
        }
        any_ellipsis |= has_dots;
        let dots = &shape[pre.chars().count()..pre.chars().count() + n_dots];
        ellipsis = broadcast(&[&ellipsis, dots]);
        let dims = shape[..pre.chars().count()]
            .iter()
            .chain(&shape[pre.chars().count() + n_dots..]);
        for (c, d) in pre.chars().chain(post.chars()).zip(dims) {
            if !c.is_ascii_alphabetic() {
                return None;
            }
            match letters.iter_mut().find(|(l, _, _)| *l == c) {
                Some((_, dim, count)) => {
                    *dim = broadcast_dim(dim, d);
                    *count += 1;
                }
                None => letters.push((c, d.clone(), 1)),
            }
        }
    }
    let out_spec: String = match rhs {
        Some(r) => r.to_owned(),
        None => {
            let mut once: Vec<char> = letters
                .iter()
                .filter(|(_, _, n)| *n == 1)
                .map(|(c, _, _)| *c)
                .collect();
            once.sort_unstable();
            let mut s = if any_ellipsis {
                String::from("...")
            } else {
                String::new()
            };
            s.extend(once);
            s
        }
    };
    let (pre, post) = match out_spec.split_once("...") {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (out_spec.clone(), None),
    };
    let find = |c: char| {
        letters
            .iter()
            .find(|(l, _, _)| *l == c)
            .map(|(_, d, _)| d.clone())
    };
    let mut out: Vec<SDim> = pre.chars().map(find).collect::<Option<_>>()?;
    if let Some(post) = post {
        out.extend(ellipsis);
        out.extend(post.chars().map(find).collect::<Option<Vec<_>>>()?);
    }
    Some(out)
}

/// The output shape of a `ConvTranspose`.
pub(super) fn conv_transpose_shape(
    a: &Attrs<'_>,
    x: Option<&[SDim]>,
    w: Option<&[SDim]>,
) -> Result<Option<Vec<SDim>>, OnnxError> {
    let (Some(x), Some(w)) = (x, w) else {
        return Ok(None);
    };
    if x.len() < 3 || w.len() != x.len() {
        return Ok(None);
    }
    let sp = x.len() - 2;
    let group = a.int_or("group", 1)?;
    let kernel: Vec<i64> = match a.ints("kernel_shape")? {
        Some(k) => k.to_vec(),
        None => match w[2..].iter().map(SDim::known).collect::<Option<Vec<_>>>() {
            Some(k) => k,
            None => return Ok(None),
        },
    };
    let ones = vec![1i64; sp];
    let zeros = vec![0i64; 2 * sp];
    let strides = a.ints("strides")?.unwrap_or(&ones);
    let dil = a.ints("dilations")?.unwrap_or(&ones);
    let pads = a.ints("pads")?.unwrap_or(&zeros);
    let out_pad = a.ints("output_padding")?.unwrap_or(&zeros[..sp]);
    let auto_pad = a.string("auto_pad")?.unwrap_or_default();
    let mut out = vec![x[0].clone(), w[1].mul(&SDim::Known(group))];
    if let Some(os) = a.ints("output_shape")? {
        if os.len() != sp {
            return Ok(None);
        }
        out.extend(os.iter().map(|&v| SDim::Known(v)));
        return Ok(Some(out));
    }
    if kernel.len() != sp
        || strides.len() != sp
        || dil.len() != sp
        || pads.len() != 2 * sp
        || out_pad.len() != sp
    {
        return Ok(None);
    }
    for i in 0..sp {
        let d = match x[i + 2].known() {
            Some(n) => {
                let n = i128::from(n);
                let s = i128::from(strides[i]);
                let eff = (i128::from(kernel[i]) - 1) * i128::from(dil[i]) + 1;
                let v = if auto_pad.starts_with("SAME") {
                    n * s
                } else {
                    s * (n - 1) + i128::from(out_pad[i]) + eff
                        - i128::from(pads[i])
                        - i128::from(pads[i + sp])
                };
                i64::try_from(v)
                    .ok()
                    .filter(|&v| v >= 0)
                    .map_or(SDim::Unknown, SDim::Known)
            }
            None => SDim::Unknown,
        };
        out.push(d);
    }
    Ok(Some(out))
}

/// A shape with the axes `axes` (sorted) reduced.
fn reduce_dims(s: &[SDim], axes: &[usize], keep: bool) -> Vec<SDim> {
    s.iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.binary_search(&i).is_ok(), keep) {
            (true, true) => Some(SDim::Known(1)),
            (true, false) => None,
            (false, _) => Some(d.clone()),
        })
        .collect()
}

/// The output of a reduction.
pub(super) fn reduce(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>, x: &Info) -> Result<Info, OnnxError> {
    let a = &cx.attrs;
    let keep = a.int_or("keepdims", 1)? != 0;
    let noop = a.int_or("noop_with_empty_axes", 0)? != 0;
    let axes: Option<Vec<i64>> = match a.ints("axes")? {
        Some(v) => Some(v.to_vec()),
        None if ins.get(1).is_some() => ins.ints(1),
        None => Some(vec![]),
    };
    let Some(s) = x.shape.as_ref() else {
        return Ok(Info::new(x.dtype, None));
    };
    let Some(axes) = axes else {
        return Ok(Info::new(x.dtype, None));
    };
    if axes.is_empty() && noop {
        return Ok(pass_value(x.like(), x));
    }
    let axes = if axes.is_empty() {
        Some((0..s.len()).collect())
    } else {
        axes_in(&axes, s.len())
    };
    let Some(axes) = axes else {
        return Ok(Info::new(x.dtype, None));
    };
    let out = Info::new(x.dtype, Some(reduce_dims(s, &axes, keep)));
    // A full reduction of a known integer vector (element counts from shapes).
    let value = match (&x.value, cx.node.op_type.as_str()) {
        (Some(Value::Ints(v)), op) if s.len() == 1 && axes.len() == 1 => {
            let r = match op {
                "ReduceProd" => Some(product(v)),
                "ReduceSum" => Some(v.iter().fold(SDim::Known(0), |acc, d| acc.add(d))),
                "ReduceMin" => v
                    .iter()
                    .map(SDim::known)
                    .collect::<Option<Vec<_>>>()
                    .and_then(|k| k.into_iter().min())
                    .map(SDim::Known),
                "ReduceMax" => v
                    .iter()
                    .map(SDim::known)
                    .collect::<Option<Vec<_>>>()
                    .and_then(|k| k.into_iter().max())
                    .map(SDim::Known),
                _ => None,
            };
            r.map(|d| Value::Ints(vec![d]))
        }
        _ => None,
    };
    Ok(out.with_value(value))
}

/// The output shape of a `Resize` or `Upsample`.
pub(super) fn resize(
    cx: &NodeCtx<'_>,
    ins: &Ins<'_, '_>,
    x: &Info,
) -> Result<Option<Vec<SDim>>, OnnxError> {
    let a = &cx.attrs;
    let Some(s) = x.shape.as_ref() else {
        return Ok(None);
    };
    // Opset 10's Resize and Upsample take (X, scales); later Resize takes
    // (X, roi, scales, sizes).
    let two_inputs = cx.node.op_type == "Upsample" || cx.opset < 11;
    let (scales, sizes) = if let Some(sc) = a.floats("scales")? {
        (
            Some(sc.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()),
            None,
        )
    } else if two_inputs {
        (ins.value(1).and_then(Value::f64s), None)
    } else {
        let scales = ins.value(2).and_then(Value::f64s).filter(|v| !v.is_empty());
        let sizes = ins
            .value(3)
            .and_then(Value::dims)
            .map(<[SDim]>::to_vec)
            .filter(|v| !v.is_empty());
        (scales, sizes)
    };
    let axes: Vec<usize> = match a.ints("axes")? {
        Some(ax) => match axes_in(ax, s.len()) {
            Some(v) => v,
            None => return Ok(None),
        },
        None => (0..s.len()).collect(),
    };
    let policy = a
        .string("keep_aspect_ratio_policy")?
        .unwrap_or_else(|| "stretch".into());
    let mut out = s.clone();
    if let Some(sizes) = sizes {
        if sizes.len() != axes.len() {
            return Ok(None);
        }
        if policy == "stretch" {
            for (&i, d) in axes.iter().zip(sizes) {
                out[i] = d;
            }
            return Ok(Some(out));
        }
        // Keep the aspect ratio: one scale for all axes, the smaller or larger.
        let ratios: Option<Vec<f64>> = axes
            .iter()
            .zip(&sizes)
            .map(|(&i, d)| Some(d.known()? as f64 / s[i].known()? as f64))
            .collect();
        let Some(ratios) = ratios else {
            return Ok(None);
        };
        let scale = if policy == "not_larger" {
            ratios.iter().copied().fold(f64::INFINITY, f64::min)
        } else {
            ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        };
        for &i in &axes {
            out[i] = s[i].known().map_or(SDim::Unknown, |n| {
                float_to_dim((n as f64 * scale + 0.5).floor())
            });
        }
        return Ok(Some(out));
    }
    let Some(scales) = scales else {
        return Ok(None);
    };
    if scales.len() != axes.len() {
        return Ok(None);
    }
    for (&i, &f) in axes.iter().zip(&scales) {
        out[i] = match &s[i] {
            _ if f == 1.0 => s[i].clone(),
            SDim::Known(n) => float_to_dim((*n as f64 * f).floor()),
            _ => SDim::Unknown,
        };
        if out[i].known().is_some_and(|v| v < 0) {
            out[i] = SDim::Unknown;
        }
    }
    Ok(Some(out))
}

/// `Dropout` in inference mode: the output is the input; the mask has its shape.
pub(super) fn dropout(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let x = ins.info(0);
    // Inference mode: the output is the input; the mask has its shape.
    let mask_type = if cx.opset >= 10 { dt::BOOL } else { x.dtype };
    Ok(vec![
        pass_value(x.like(), &x),
        Info::new(mask_type, x.shape.clone()),
    ])
}

/// `BatchNormalization`: the input's shape; statistics shaped like the scale.
pub(super) fn batch_norm(ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let x = ins.info(0);
    let stats = ins.get(1).map(Info::like).unwrap_or_default();
    Ok(vec![
        x.like(),
        stats.clone(),
        stats.clone(),
        stats.clone(),
        stats,
    ])
}

/// `LayerNormalization`: the input's shape; mean and inverse deviation keep the leading axes.
pub(super) fn layer_norm(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let axis = a.int_or("axis", -1)?;
    let stash = a.int_or("stash_type", i64::from(dt::FLOAT))?;
    let stat_shape = x.shape.as_ref().and_then(|s| {
        let ax = axis_in(axis, s.len())?;
        Some(
            s.iter()
                .enumerate()
                .map(|(i, d)| if i < ax { d.clone() } else { SDim::Known(1) })
                .collect(),
        )
    });
    let stat = Info::new(i32::try_from(stash).unwrap_or(0), stat_shape);
    Ok(vec![x.like(), stat.clone(), stat])
}

/// `Gemm`.
pub(super) fn gemm(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let (Some(sa), Some(sb)) = (ins.shape(0), ins.shape(1)) else {
        return one(Info::new(x.dtype, None));
    };
    if sa.len() != 2 || sb.len() != 2 {
        return one(Info::new(x.dtype, None));
    }
    let m = if a.int_or("transA", 0)? != 0 {
        &sa[1]
    } else {
        &sa[0]
    };
    let n = if a.int_or("transB", 0)? != 0 {
        &sb[0]
    } else {
        &sb[1]
    };
    one(Info::new(x.dtype, Some(vec![m.clone(), n.clone()])))
}

/// `MatMul` and its integer and quantised forms.
pub(super) fn matmul(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let x = ins.info(0);
    let op = cx.node.op_type.as_str();
    let (ia, ib, dtype) = match op {
        "MatMul" => (0, 1, x.dtype),
        "MatMulInteger" => (0, 1, dt::INT32),
        _ => (0, 3, ins.dtype(7)),
    };
    one(Info::new(dtype, matmul_shape(ins.shape(ia), ins.shape(ib))))
}

/// `Einsum`.
pub(super) fn einsum(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let eq = a.string("equation")?.unwrap_or_default();
    let shapes: Option<Vec<&[SDim]>> = (0..ins.len()).map(|i| ins.shape(i)).collect();
    one(Info::new(
        x.dtype,
        shapes.and_then(|s| einsum_shape(&eq, &s)),
    ))
}

/// `Conv` and its integer and quantised forms.
pub(super) fn conv(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let op = cx.node.op_type.as_str();
    let (iw, dtype) = match op {
        "Conv" => (1, x.dtype),
        "ConvInteger" => (1, dt::INT32),
        _ => (3, ins.dtype(7)),
    };
    let (Some(xs), Some(ws)) = (x.shape.as_deref(), ins.shape(iw)) else {
        return one(Info::new(dtype, None));
    };
    let kernel: Option<Vec<i64>> = match a.ints("kernel_shape")? {
        Some(k) => Some(k.to_vec()),
        None => ws
            .get(2..)
            .and_then(|k| k.iter().map(SDim::known).collect()),
    };
    let Some(kernel) = kernel else {
        return one(Info::new(dtype, None));
    };
    let shape = sliding(a, xs, &kernel, false)?.and_then(|sp| {
        let mut s = vec![xs[0].clone(), ws.first()?.clone()];
        s.extend(sp);
        Some(s)
    });
    one(Info::new(dtype, shape))
}

/// `MaxPool`, `AveragePool`, `LpPool` (and `MaxPool`'s indices).
pub(super) fn pool(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let Some(kernel) = a.ints("kernel_shape")? else {
        return Ok(vec![Info::new(x.dtype, None)]);
    };
    let ceil = a.int_or("ceil_mode", 0)? != 0;
    let shape = match x.shape.as_deref() {
        Some(xs) => sliding(a, xs, kernel, ceil)?.map(|sp| {
            let mut s = xs[..2].to_vec();
            s.extend(sp);
            s
        }),
        None => None,
    };
    Ok(vec![
        Info::new(x.dtype, shape.clone()),
        Info::new(dt::INT64, shape),
    ])
}

/// Global pooling: spatial axes become 1.
pub(super) fn global_pool(ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let x = ins.info(0);
    let shape = x.shape.as_ref().filter(|s| s.len() >= 2).map(|s| {
        let mut o = s[..2].to_vec();
        o.resize(s.len(), SDim::Known(1));
        o
    });
    one(Info::new(x.dtype, shape))
}

/// `ArgMax`, `ArgMin`.
pub(super) fn arg_reduce(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let axis = a.int_or("axis", 0)?;
    let keep = a.int_or("keepdims", 1)? != 0;
    let shape = x.shape.as_ref().and_then(|s| {
        let ax = axis_in(axis, s.len())?;
        Some(reduce_dims(s, &[ax], keep))
    });
    one(Info::new(dt::INT64, shape))
}

/// `TopK`: values and indices.
pub(super) fn top_k(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let k = match a.int("k")? {
        Some(k) => Some(k),
        None => ins.value(1).and_then(Value::scalar_i64),
    };
    let axis = a.int_or("axis", -1)?;
    let shape = x.shape.as_ref().and_then(|s| {
        let ax = axis_in(axis, s.len())?;
        let mut o = s.clone();
        o[ax] = k.map_or(SDim::Unknown, SDim::Known);
        Some(o)
    });
    Ok(vec![
        Info::new(x.dtype, shape.clone()),
        Info::new(dt::INT64, shape),
    ])
}
