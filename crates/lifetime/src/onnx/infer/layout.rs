//! Operators that create, inspect and rearrange tensors: constants, `Shape`,
//! reshaping, slicing, gathering, concatenation and splitting, padding. These are
//! where small integer values flow, so most compute values as well as shapes.

use std::rc::Rc;

use super::{Ins, NodeCtx, axes_in, axis_in, broadcast, one, pass_value, product, ushape};
use crate::onnx::OnnxError;
use crate::onnx::proto::data_type as dt;
use crate::onnx::value::{Info, MAX_VALUE_ELEMS, SDim, Value, tensor_info};

/// A `Concat` of `ins` along `axis`.
fn concat(ins: &[&Info], axis: i64, dtype: i32) -> Info {
    let shapes: Option<Vec<&[SDim]>> = ins.iter().map(|i| i.shape.as_deref()).collect();
    let shape = shapes.and_then(|shapes| {
        let rank = shapes.first()?.len();
        if shapes.iter().any(|s| s.len() != rank) {
            return None;
        }
        let ax = axis_in(axis, rank)?;
        let mut out: Vec<SDim> = shapes[0].to_vec();
        for (i, d) in out.iter_mut().enumerate() {
            if i == ax {
                *d = shapes
                    .iter()
                    .skip(1)
                    .fold(shapes[0][ax].clone(), |acc, s| acc.add(&s[ax]));
            } else {
                for s in &shapes[1..] {
                    *d = merge_dim(d, &s[i]);
                }
            }
        }
        Some(out)
    });
    let out = Info::new(dtype, shape);
    // Row-major concatenation along the first axis is concatenation of the flat values.
    let first_axis = out.rank().and_then(|r| axis_in(axis, r)) == Some(0);
    let value = if first_axis && ins.iter().all(|i| matches!(i.value, Some(Value::Ints(_)))) {
        let mut v = Vec::new();
        for i in ins {
            v.extend(
                i.value
                    .as_ref()
                    .and_then(Value::dims)
                    .unwrap_or_default()
                    .iter()
                    .cloned(),
            );
        }
        Some(Value::Ints(v))
    } else if first_axis {
        let parts: Option<Vec<Vec<f64>>> = ins.iter().map(|i| i.value.as_ref()?.f64s()).collect();
        parts.map(|p| Value::Floats(p.concat()))
    } else {
        None
    };
    out.with_value(value)
}

/// Two descriptions of one dimension: the more precise where they agree or one
/// knows nothing, unknown where they conflict.
fn merge_dim(a: &SDim, b: &SDim) -> SDim {
    match (a, b) {
        (x, y) if x == y => x.clone(),
        (SDim::Unknown, y) => y.clone(),
        (x, SDim::Unknown) => x.clone(),
        (SDim::Known(k), SDim::Sym(_)) | (SDim::Sym(_), SDim::Known(k)) => SDim::Known(*k),
        _ => SDim::Unknown,
    }
}

/// `Reshape` of a tensor of shape `x` to `target` (0 copies, -1 is inferred).
fn reshape_shape(x: Option<&[SDim]>, target: &[SDim], allow_zero: bool) -> Option<Vec<SDim>> {
    let mut out: Vec<SDim> = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, t) in target.iter().enumerate() {
        match t {
            SDim::Known(0) if !allow_zero => out.push(x?.get(i)?.clone()),
            SDim::Known(-1) => {
                if infer_at.replace(i).is_some() {
                    return None;
                }
                out.push(SDim::Unknown);
            }
            SDim::Known(v) if *v < 0 => return None,
            d => out.push(d.clone()),
        }
    }
    if let Some(i) = infer_at {
        out[i] = infer_missing(
            x?,
            out.iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, d)| d),
        )?;
    }
    Some(out)
}

/// The extent that makes `known` hold as many elements as `total`: the ratio of
/// the known parts when the symbols cancel.
fn infer_missing<'a>(total: &[SDim], known: impl Iterator<Item = &'a SDim>) -> Option<SDim> {
    let mut num: i128 = 1;
    let mut syms: Vec<Rc<str>> = Vec::new();
    for d in total {
        match d {
            SDim::Known(v) => num = num.checked_mul(i128::from(*v))?,
            SDim::Sym(s) => syms.push(s.clone()),
            SDim::Unknown => return None,
        }
    }
    let mut den: i128 = 1;
    for d in known {
        match d {
            SDim::Known(v) => den = den.checked_mul(i128::from(*v))?,
            SDim::Sym(s) => {
                let at = syms.iter().position(|x| x == s)?;
                syms.swap_remove(at);
            }
            SDim::Unknown => return None,
        }
    }
    if den == 0 || num % den != 0 {
        return None;
    }
    let ratio = i64::try_from(num / den).ok()?;
    match syms.as_slice() {
        [] => Some(SDim::Known(ratio)),
        [s] if ratio == 1 => Some(SDim::Sym(s.clone())),
        _ => None,
    }
}

/// The outputs of a `Split`.
pub(super) fn split(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>, x: &Info) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let n_out = cx.node.output.len();
    let axis = a.int_or("axis", 0)?;
    let sizes: Option<Vec<i64>> = match a.ints("split")? {
        Some(s) => Some(s.to_vec()),
        None if ins.get(1).is_some() => ins.ints(1),
        None => {
            let parts = a.int("num_outputs")?.unwrap_or(n_out as i64);
            let dim = x
                .shape
                .as_ref()
                .and_then(|s| s.get(axis_in(axis, s.len())?))
                .and_then(SDim::known);
            match dim {
                // Equal parts, the last one smaller when the extent does not divide.
                Some(d) if parts > 0 => {
                    let chunk = d.div_euclid(parts) + i64::from(d.rem_euclid(parts) != 0);
                    let shown = parts.min(n_out as i64);
                    Some(
                        (0..shown)
                            .map(|i| chunk.min(d.saturating_sub(chunk.saturating_mul(i))).max(0))
                            .collect(),
                    )
                }
                _ => None,
            }
        }
    };
    let Some(s) = x.shape.as_ref() else {
        return Ok(vec![Info::new(x.dtype, None); n_out]);
    };
    let Some(ax) = axis_in(axis, s.len()) else {
        return Ok(vec![Info::new(x.dtype, None); n_out]);
    };
    Ok((0..n_out)
        .map(|i| {
            let mut o = s.clone();
            o[ax] = sizes
                .as_ref()
                .and_then(|v| v.get(i))
                .map_or(SDim::Unknown, |&v| SDim::Known(v));
            Info::new(x.dtype, Some(o))
        })
        .collect())
}

/// The output of a `Slice`, with values for a sliced 1-D value.
pub(super) fn slice(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>, x: &Info) -> Result<Info, OnnxError> {
    let a = &cx.attrs;
    let from_attrs = a.has("starts");
    let (starts, ends, axes, steps) = if from_attrs {
        (
            a.ints("starts")?.map(<[i64]>::to_vec),
            a.ints("ends")?.map(<[i64]>::to_vec),
            a.ints("axes")?.map(<[i64]>::to_vec),
            None,
        )
    } else {
        let opt = |i: usize| {
            if ins.get(i).is_some() {
                ins.ints(i).map(Some)
            } else {
                Some(None)
            }
        };
        let (Some(axes), Some(steps)) = (opt(3), opt(4)) else {
            return Ok(Info::new(x.dtype, None));
        };
        (ins.ints(1), ins.ints(2), axes, steps)
    };
    let Some(s) = x.shape.as_ref() else {
        return Ok(Info::new(x.dtype, None));
    };
    let (Some(starts), Some(ends)) = (starts, ends) else {
        return Ok(Info::new(x.dtype, None));
    };
    let n = starts.len();
    let axes = axes.unwrap_or_else(|| (0..n as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; n]);
    if ends.len() != n || axes.len() != n || steps.len() != n {
        return Ok(Info::new(x.dtype, None));
    }
    let Some(ax) = axes
        .iter()
        .map(|&v| axis_in(v, s.len()))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(Info::new(x.dtype, None));
    };
    let mut out = s.clone();
    let mut picks: Option<Vec<usize>> = None;
    for i in 0..n {
        let (st, en, step) = (
            i128::from(starts[i]),
            i128::from(ends[i]),
            i128::from(steps[i]),
        );
        if step == 0 {
            return Ok(Info::new(x.dtype, None));
        }
        out[ax[i]] = match &s[ax[i]] {
            SDim::Known(d) => {
                let d = i128::from(*d).max(0);
                let st = if st < 0 { st + d } else { st };
                let en = if en < 0 { en + d } else { en };
                let (st, len) = if step > 0 {
                    let (st, en) = (st.clamp(0, d), en.clamp(0, d));
                    (st, ((en - st + step - 1) / step).max(0))
                } else if d == 0 {
                    (0, 0)
                } else {
                    let (st, en) = (st.clamp(0, d - 1), en.clamp(-1, d - 1));
                    (st, ((st - en + (-step) - 1) / (-step)).max(0))
                };
                if s.len() == 1 && len as usize <= MAX_VALUE_ELEMS {
                    picks = Some((0..len).map(|k| (st + k * step) as usize).collect());
                }
                i64::try_from(len).map_or(SDim::Unknown, SDim::Known)
            }
            // The whole of a symbolic extent.
            sym if st == 0 && step == 1 && en >= i128::from(i32::MAX) => sym.clone(),
            _ => SDim::Unknown,
        };
    }
    let value = match (&x.value, picks) {
        (Some(Value::Ints(v)), Some(p)) => p
            .iter()
            .map(|&i| v.get(i).cloned())
            .collect::<Option<_>>()
            .map(Value::Ints),
        (Some(Value::Floats(v)), Some(p)) => p
            .iter()
            .map(|&i| v.get(i).copied())
            .collect::<Option<_>>()
            .map(Value::Floats),
        _ => None,
    };
    Ok(Info::new(x.dtype, Some(out)).with_value(value))
}

/// The output of a `Gather`, with values when data and indices are known.
fn gather(data: &Info, idx: &Info, axis: i64) -> Info {
    let (Some(ds), Some(is)) = (data.shape.as_ref(), idx.shape.as_ref()) else {
        return Info::new(data.dtype, None);
    };
    let Some(ax) = axis_in(axis, ds.len()) else {
        return Info::new(data.dtype, None);
    };
    let mut shape = ds[..ax].to_vec();
    shape.extend(is.iter().cloned());
    shape.extend(ds[ax + 1..].iter().cloned());
    let out = Info::new(data.dtype, Some(shape));
    let value = (|| {
        let data_value = data.value.as_ref()?;
        let dshape = ushape(data)?;
        let indices = idx.value.as_ref()?.i64s()?;
        let prod = |d: &[usize]| d.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        let outer = prod(&dshape[..ax])?;
        let inner = prod(&dshape[ax + 1..])?;
        let n = dshape[ax];
        let total = outer.checked_mul(indices.len())?.checked_mul(inner)?;
        if total > MAX_VALUE_ELEMS || outer.checked_mul(n)?.checked_mul(inner)? != data_value.len()
        {
            return None;
        }
        let mut src = Vec::with_capacity(total);
        for o in 0..outer {
            for &i in &indices {
                let i = if i < 0 {
                    i.checked_add(i64::try_from(n).ok()?)?
                } else {
                    i
                };
                let i = usize::try_from(i).ok().filter(|&i| i < n)?;
                // In range: below outer * n * inner, the data's length.
                let base = (o * n + i) * inner;
                src.extend(base..base + inner);
            }
        }
        match data_value {
            Value::Ints(v) => src
                .iter()
                .map(|&k| v.get(k).cloned())
                .collect::<Option<_>>()
                .map(Value::Ints),
            Value::Floats(v) => src
                .iter()
                .map(|&k| v.get(k).copied())
                .collect::<Option<_>>()
                .map(Value::Floats),
        }
    })();
    out.with_value(value)
}

/// The output of a `Range`.
pub(super) fn range(ins: &Ins<'_, '_>) -> Info {
    let dtype = ins.dtype(0);
    let scalar = |i: usize| ins.value(i).filter(|v| v.len() == 1);
    let (Some(s), Some(l), Some(d)) = (scalar(0), scalar(1), scalar(2)) else {
        return Info::new(dtype, Some(vec![SDim::Unknown]));
    };
    if let (Some(s), Some(l), Some(d)) = (s.i64s(), l.i64s(), d.i64s()) {
        let (s, l, d) = (i128::from(s[0]), i128::from(l[0]), i128::from(d[0]));
        if d == 0 {
            return Info::new(dtype, Some(vec![SDim::Unknown]));
        }
        let n = ((l - s) + d - d.signum()).div_euclid(d).max(0);
        let Ok(n64) = i64::try_from(n) else {
            return Info::new(dtype, Some(vec![SDim::Unknown]));
        };
        let info = Info::new(dtype, Some(vec![SDim::Known(n64)]));
        let value = (n <= MAX_VALUE_ELEMS as i128)
            .then(|| Value::Ints((0..n).map(|k| SDim::Known((s + k * d) as i64)).collect()));
        return info.with_value(value);
    }
    let (Some(s), Some(l), Some(d)) = (s.f64s(), l.f64s(), d.f64s()) else {
        return Info::new(dtype, Some(vec![SDim::Unknown]));
    };
    let n = ((l[0] - s[0]) / d[0]).ceil().max(0.0);
    let dim = if n.is_finite() && n < 9.0e18 {
        SDim::Known(n as i64)
    } else {
        SDim::Unknown
    };
    let info = Info::new(dtype, Some(vec![dim]));
    let value = info
        .numel()
        .filter(|&n| n as usize <= MAX_VALUE_ELEMS)
        .map(|n| Value::Floats((0..n).map(|k| s[0] + k as f64 * d[0]).collect()));
    info.with_value(value)
}

/// `Constant`, in each of its attribute forms.
pub(super) fn constant(cx: &NodeCtx<'_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let name = cx.node.output.first().map_or("", String::as_str);
    if let Some(t) = a.tensor("value")? {
        return one(tensor_info(t, name, cx.file)?);
    }
    if let Some(v) = a.float("value_float")? {
        return one(
            Info::new(dt::FLOAT, Some(vec![])).with_value(Some(Value::Floats(vec![f64::from(v)])))
        );
    }
    if let Some(v) = a.floats("value_floats")? {
        let vals = v.iter().map(|&f| f64::from(f)).collect::<Vec<_>>();
        let info = Info::new(dt::FLOAT, Some(vec![SDim::Known(v.len() as i64)]));
        return one(info.with_value((vals.len() <= MAX_VALUE_ELEMS).then_some(Value::Floats(vals))));
    }
    if let Some(v) = a.int("value_int")? {
        return one(
            Info::new(dt::INT64, Some(vec![])).with_value(Some(Value::Ints(vec![SDim::Known(v)])))
        );
    }
    if let Some(v) = a.ints("value_ints")? {
        let info = Info::new(dt::INT64, Some(vec![SDim::Known(v.len() as i64)]));
        let vals = (v.len() <= MAX_VALUE_ELEMS)
            .then(|| Value::Ints(v.iter().map(|&k| SDim::Known(k)).collect()));
        return one(info.with_value(vals));
    }
    if a.has("value_string") || a.has("value_strings") {
        return Err(OnnxError::UnsupportedDataType {
            file: cx.file.to_owned(),
            tensor: name.to_owned(),
            data_type: dt::STRING,
            type_name: dt::name(dt::STRING),
        });
    }
    Ok(vec![])
}

/// `ConstantOfShape`: the shape is the input's values.
pub(super) fn constant_of_shape(
    cx: &NodeCtx<'_>,
    ins: &Ins<'_, '_>,
) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let (dtype, fill) = match a.tensor("value")? {
        Some(t) => {
            let name = cx.node.output.first().map_or("", String::as_str);
            let info = tensor_info(t, name, cx.file)?;
            (info.dtype, info.value)
        }
        None => (dt::FLOAT, Some(Value::Floats(vec![0.0]))),
    };
    let shape = ins.value(0).and_then(|v| v.dims().map(<[SDim]>::to_vec));
    let info = Info::new(dtype, shape);
    let value = info
        .numel()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= MAX_VALUE_ELEMS)
        .and_then(|n| match fill? {
            Value::Ints(v) if v.len() == 1 => Some(Value::Ints(vec![v[0].clone(); n])),
            Value::Floats(v) if v.len() == 1 => Some(Value::Floats(vec![v[0]; n])),
            _ => None,
        });
    one(info.with_value(value))
}

/// `Shape` (with `start` and `end`): values are the dimensions.
pub(super) fn shape(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let Some(s) = x.shape.as_ref() else {
        return one(Info::new(dt::INT64, None));
    };
    let r = s.len() as i64;
    let clamp = |v: i64| {
        if v < 0 {
            v.saturating_add(r).max(0)
        } else {
            v.min(r)
        }
    };
    let start = clamp(a.int_or("start", 0)?) as usize;
    let end = clamp(a.int_or("end", r)?) as usize;
    let dims = if start < end {
        s[start..end].to_vec()
    } else {
        vec![]
    };
    let info = Info::new(dt::INT64, Some(vec![SDim::Known(dims.len() as i64)]));
    one(info.with_value(Some(Value::Ints(dims))))
}

/// `Size`.
pub(super) fn size(ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let x = ins.info(0);
    let v = x.shape.as_deref().map(product);
    let info = Info::new(dt::INT64, Some(vec![]));
    one(info.with_value(v.map(|d| Value::Ints(vec![d]))))
}

/// `Flatten`.
pub(super) fn flatten(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let axis = a.int_or("axis", 1)?;
    let shape = x.shape.as_ref().and_then(|s| {
        let r = s.len() as i64;
        let ax = if axis < 0 { axis.checked_add(r)? } else { axis };
        if !(0..=r).contains(&ax) {
            return None;
        }
        let (l, h) = s.split_at(ax as usize);
        Some(vec![product(l), product(h)])
    });
    one(pass_value(Info::new(x.dtype, shape), &x))
}

/// `Reshape` (shape as an input, or an attribute before opset 5).
pub(super) fn reshape(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let target: Option<Vec<SDim>> = match a.ints("shape")? {
        Some(s) => Some(s.iter().map(|&v| SDim::Known(v)).collect()),
        None => ins.value(1).and_then(|v| v.dims().map(<[SDim]>::to_vec)),
    };
    let allow_zero = a.int_or("allowzero", 0)? != 0;
    let shape = target.and_then(|t| reshape_shape(x.shape.as_deref(), &t, allow_zero));
    one(pass_value(Info::new(x.dtype, shape), &x))
}

/// `Transpose`.
pub(super) fn transpose(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let perm = a.ints("perm")?;
    let shape = x.shape.as_ref().and_then(|s| {
        let perm: Vec<i64> = match perm {
            Some(p) => p.to_vec(),
            None => (0..s.len() as i64).rev().collect(),
        };
        let mut seen = vec![false; s.len()];
        let mut out = Vec::with_capacity(s.len());
        for &p in &perm {
            let p = usize::try_from(p)
                .ok()
                .filter(|&p| p < s.len() && !seen[p])?;
            seen[p] = true;
            out.push(s[p].clone());
        }
        (out.len() == s.len()).then_some(out)
    });
    let v = if x.rank().is_some_and(|r| r <= 1) {
        x.value.clone()
    } else {
        None
    };
    one(Info::new(x.dtype, shape).with_value(v))
}

/// `Squeeze` (axes as an attribute before opset 13, an input after).
pub(super) fn squeeze(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let axes: Option<Vec<i64>> = match a.ints("axes")? {
        Some(v) => Some(v.to_vec()),
        None if ins.get(1).is_some() => ins.ints(1),
        None => Some(vec![]),
    };
    let shape = match (x.shape.as_ref(), axes) {
        (Some(s), Some(ax)) if ax.is_empty() => {
            if s.iter().all(|d| d.known().is_some()) {
                Some(s.iter().filter(|d| !d.is(1)).cloned().collect())
            } else {
                None
            }
        }
        (Some(s), Some(ax)) => axes_in(&ax, s.len()).map(|ax| {
            s.iter()
                .enumerate()
                .filter(|(i, _)| ax.binary_search(i).is_err())
                .map(|(_, d)| d.clone())
                .collect()
        }),
        _ => None,
    };
    one(pass_value(Info::new(x.dtype, shape), &x))
}

/// `Unsqueeze` (axes as an attribute before opset 13, an input after).
pub(super) fn unsqueeze(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let axes: Option<Vec<i64>> = match a.ints("axes")? {
        Some(v) => Some(v.to_vec()),
        None => ins.ints(1),
    };
    let shape = match (x.shape.as_ref(), axes) {
        (Some(s), Some(ax)) => axes_in(&ax, s.len() + ax.len()).map(|ax| {
            let mut src = s.iter();
            (0..s.len() + ax.len())
                .map(|i| {
                    if ax.binary_search(&i).is_ok() {
                        SDim::Known(1)
                    } else {
                        src.next().cloned().unwrap_or(SDim::Unknown)
                    }
                })
                .collect()
        }),
        _ => None,
    };
    one(pass_value(Info::new(x.dtype, shape), &x))
}

/// `Concat`.
pub(super) fn concat_node(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let all = ins.present();
    let axis = a.int_or("axis", 0)?;
    one(concat(&all, axis, x.dtype))
}

/// `Gather`.
pub(super) fn gather_node(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let axis = a.int_or("axis", 0)?;
    one(gather(&x, &ins.info(1), axis))
}

/// `Expand`: the broadcast of the input and the target shape.
pub(super) fn expand(ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let x = ins.info(0);
    let target = ins.value(1).and_then(|v| v.dims().map(<[SDim]>::to_vec));
    let shape = match (x.shape.as_deref(), target) {
        (Some(s), Some(t)) => Some(broadcast(&[s, &t])),
        _ => None,
    };
    one(Info::new(x.dtype, shape))
}

/// `Tile`.
pub(super) fn tile(ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let x = ins.info(0);
    let shape = match (x.shape.as_ref(), ins.value(1).and_then(Value::dims)) {
        (Some(s), Some(r)) if r.len() == s.len() => {
            Some(s.iter().zip(r).map(|(d, r)| d.mul(r)).collect())
        }
        _ => None,
    };
    one(Info::new(x.dtype, shape))
}

/// `Pad` (pads as an attribute before opset 11, an input after; axes from 18).
pub(super) fn pad(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let pads: Option<Vec<i64>> = match a.ints("pads")? {
        Some(p) => Some(p.to_vec()),
        None => ins.ints(1),
    };
    let axes = if ins.get(3).is_some() {
        ins.ints(3).map(Some)
    } else {
        Some(None)
    };
    let shape = match (x.shape.as_ref(), pads, axes) {
        (Some(s), Some(p), Some(axes)) => {
            let axes = match axes {
                Some(ax) => axes_in(&ax, s.len()),
                None => Some((0..s.len()).collect()),
            };
            axes.filter(|ax| p.len() == 2 * ax.len()).map(|ax| {
                let mut o = s.clone();
                for (j, &i) in ax.iter().enumerate() {
                    o[i] = o[i]
                        .add(&SDim::Known(p[j]))
                        .add(&SDim::Known(p[j + ax.len()]));
                }
                o
            })
        }
        _ => None,
    };
    one(Info::new(x.dtype, shape))
}

/// `DepthToSpace`, `SpaceToDepth`.
pub(super) fn depth_to_space(cx: &NodeCtx<'_>, ins: &Ins<'_, '_>) -> Result<Vec<Info>, OnnxError> {
    let a = &cx.attrs;
    let x = ins.info(0);
    let op = cx.node.op_type.as_str();
    let b = SDim::Known(a.int_or("blocksize", 1)?);
    let bb = b.mul(&b);
    let shape = x.shape.as_ref().filter(|s| s.len() == 4).map(|s| {
        if op == "DepthToSpace" {
            vec![s[0].clone(), s[1].div(&bb), s[2].mul(&b), s[3].mul(&b)]
        } else {
            vec![s[0].clone(), s[1].mul(&bb), s[2].div(&b), s[3].div(&b)]
        }
    });
    one(Info::new(x.dtype, shape))
}
