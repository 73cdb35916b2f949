//! The JSON graph format: [`Graph::from_json`] and [`Graph::to_json`].
//!
//! ```json
//! {
//!   "name": "tiny",
//!   "tensors": [
//!     {"name": "x", "shape": [1, "N", 224, 224], "dtype": "f32"},
//!     {"name": "w", "shape": [8, 3, 3, 3]},
//!     {"name": "y", "bytes": 1024},
//!     {"name": "z", "shape": [2, 512], "elem_bytes": 1}
//!   ],
//!   "nodes": [
//!     {"name": "conv", "op": "Conv", "inputs": ["x", "w"], "outputs": ["y"]},
//!     {"op": "Relu", "inputs": ["y"], "outputs": ["z"]}
//!   ],
//!   "inputs": ["x"],
//!   "outputs": ["z"],
//!   "constants": ["w"]
//! }
//! ```
//!
//! - `tensors`: every tensor, each with a `name` and either a `shape` (numbers and
//!   symbol names; `null` for unknown) with a `dtype` (default `f32`; `f16`, `bf16`,
//!   `f64`, `i8`/`u8`/`bool`, `i16`/`u16`, `i32`/`u32`, `i64`/`u64`, or the long
//!   names `float32`, `int64`, ...) or an `elem_bytes`, or a plain `bytes` count. A
//!   tensor with neither is of unknown size.
//! - `nodes`: `op`, `inputs` (`null` or `""` for an omitted optional input),
//!   `outputs`, an optional `name` (default `op_index`) and, for control flow,
//!   `subgraphs`: a list of `{"name": "then_branch", "graph": {...}}` (an object
//!   `{"then_branch": {...}, "else_branch": {...}}` is read too, `then_branch` first).
//! - A body graph may use the enclosing graphs' tensors by name without declaring
//!   them: they become captures. `captures: ["x", ["inner", "outer"]]` states them
//!   explicitly (the second form when the body's name differs).
//! - `inputs`, `outputs`, `constants`: tensor names. Constants are weights: never in
//!   the arena.
//!
//! Unknown keys, unknown tensor names and duplicate names are errors that say where.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::error::LifetimeError;
use crate::ir::{Dim, Graph, Node, Tensor, TensorId, TensorKind};

impl Graph {
    /// Reads a graph in the JSON graph format (see the [module docs](crate::json)).
    ///
    /// ```
    /// use memwarden_lifetime::ir::Graph;
    ///
    /// let g = Graph::from_json(r#"{"name": "g",
    ///     "tensors": [{"name": "x", "bytes": 64}, {"name": "y", "bytes": 64}],
    ///     "nodes": [{"op": "Relu", "inputs": ["x"], "outputs": ["y"]}],
    ///     "inputs": ["x"], "outputs": ["y"]}"#)?;
    /// assert_eq!(g.nodes[0].name, "Relu_0");
    /// assert!(Graph::from_json(r#"{"tensors": [], "nodes": [], "inptus": []}"#).is_err());
    /// # Ok::<(), memwarden_lifetime::LifetimeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`LifetimeError::Json`] (bad JSON, a bad or unknown key), [`LifetimeError::UnknownTensorName`],
    /// [`LifetimeError::DuplicateName`].
    pub fn from_json(text: &str) -> Result<Graph, LifetimeError> {
        let value: Value = serde_json::from_str(text).map_err(|e| LifetimeError::Json {
            at: format!("line {} column {}", e.line(), e.column()),
            problem: e.to_string(),
        })?;
        let (graph, free) = parse_graph(&value, "graph", &[])?;
        if let Some((_, name)) = free.first() {
            return Err(LifetimeError::UnknownTensorName {
                name: name.clone(),
                at: "graph".to_owned(),
            });
        }
        Ok(graph)
    }

    /// Writes the graph in the JSON graph format; [`Graph::from_json`] reads it back
    /// to an equal graph.
    pub fn to_json(&self) -> Value {
        let mut v = self.json_value();
        write_captures(self, &mut v);
        v
    }

    /// The graph as JSON, bodies' captures not yet written (they need the enclosing
    /// graph's names).
    fn json_value(&self) -> Value {
        let name = |id: &TensorId| {
            self.tensors
                .get(id.index())
                .map_or(Value::Null, |t| Value::String(t.name.clone()))
        };
        let tensors: Vec<Value> = self
            .tensors
            .iter()
            .map(|t| {
                let shape = t.shape.as_ref().map_or(Value::Null, |dims| {
                    dims.iter()
                        .map(|d| match d {
                            Dim::Known(k) => json!(k),
                            Dim::Sym(s) => json!(s),
                        })
                        .collect()
                });
                json!({"name": t.name, "shape": shape, "elem_bytes": t.elem_bytes})
            })
            .collect();
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .map(|n| {
                let mut node = json!({
                    "name": n.name,
                    "op": n.op,
                    "inputs": n.inputs.iter().map(|i| i.as_ref().map_or(Value::Null, name)).collect::<Vec<_>>(),
                    "outputs": n.outputs.iter().map(name).collect::<Vec<_>>(),
                });
                if !n.subgraphs.is_empty() {
                    node["subgraphs"] = n
                        .subgraphs
                        .iter()
                        .map(|(s, g)| json!({"name": s, "graph": g.json_value()}))
                        .collect();
                }
                node
            })
            .collect();
        let constants: Vec<Value> = self
            .tensors
            .iter()
            .filter(|t| t.kind == TensorKind::Constant)
            .map(|t| json!(t.name))
            .collect();
        json!({
            "name": self.name,
            "tensors": tensors,
            "nodes": nodes,
            "inputs": self.inputs.iter().map(name).collect::<Vec<_>>(),
            "outputs": self.outputs.iter().map(name).collect::<Vec<_>>(),
            "constants": constants,
        })
    }
}

/// Fills in the `captures` of every body in `value`: a name, or `[inner, outer]`
/// when the body's name for the tensor differs from the enclosing graph's.
fn write_captures(graph: &Graph, value: &mut Value) {
    let Some(nodes) = value.get_mut("nodes").and_then(Value::as_array_mut) else {
        return;
    };
    for (node, nv) in graph.nodes.iter().zip(nodes) {
        let Some(subs) = nv.get_mut("subgraphs").and_then(Value::as_array_mut) else {
            continue;
        };
        for ((_, body), sv) in node.subgraphs.iter().zip(subs) {
            let Some(bv) = sv.get_mut("graph") else {
                continue;
            };
            let caps: Vec<Value> = body
                .captures
                .iter()
                .map(|(inner, outer)| {
                    let i = body
                        .tensors
                        .get(inner.index())
                        .map_or("", |t| t.name.as_str());
                    let o = graph
                        .tensors
                        .get(outer.index())
                        .map_or("", |t| t.name.as_str());
                    if i == o { json!(i) } else { json!([i, o]) }
                })
                .collect();
            if !caps.is_empty() {
                bv["captures"] = Value::Array(caps);
            }
            write_captures(body, bv);
        }
    }
}

fn json_err(at: &str, problem: impl Into<String>) -> LifetimeError {
    LifetimeError::Json {
        at: at.to_owned(),
        problem: problem.into(),
    }
}

fn object<'a>(
    v: &'a Value,
    at: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, LifetimeError> {
    let map = v
        .as_object()
        .ok_or_else(|| json_err(at, "expected an object"))?;
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(json_err(
            &format!("{at}.{k}"),
            format!("unknown key {k:?} (expected one of {})", allowed.join(", ")),
        ));
    }
    Ok(map)
}

fn string<'a>(v: &'a Value, at: &str) -> Result<&'a str, LifetimeError> {
    v.as_str().ok_or_else(|| json_err(at, "expected a string"))
}

fn array<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<&'a [Value], LifetimeError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(json_err(&format!("{at}.{key}"), "expected a list")),
    }
}

fn dtype_bytes(name: &str) -> Option<u64> {
    Some(match name.to_ascii_lowercase().as_str() {
        "i8" | "u8" | "int8" | "uint8" | "bool" | "f8" | "float8" => 1,
        "f16" | "bf16" | "float16" | "bfloat16" | "half" | "i16" | "u16" | "int16" | "uint16" => 2,
        "f32" | "float" | "float32" | "i32" | "u32" | "int32" | "uint32" => 4,
        "f64" | "double" | "float64" | "i64" | "u64" | "int64" | "uint64" | "c64" | "complex64" => {
            8
        }
        "c128" | "complex128" => 16,
        _ => return None,
    })
}

fn parse_tensor(v: &Value, at: &str) -> Result<Tensor, LifetimeError> {
    let map = object(
        v,
        at,
        &["name", "shape", "dtype", "elem_bytes", "bytes", "constant"],
    )?;
    let name = string(
        map.get("name")
            .ok_or_else(|| json_err(at, "missing key \"name\""))?,
        &format!("{at}.name"),
    )?;
    let mut tensor = if let Some(bytes) = map.get("bytes") {
        if map.contains_key("shape") || map.contains_key("dtype") || map.contains_key("elem_bytes")
        {
            return Err(json_err(
                at,
                "\"bytes\" excludes \"shape\", \"dtype\" and \"elem_bytes\"",
            ));
        }
        let b = bytes
            .as_u64()
            .ok_or_else(|| json_err(&format!("{at}.bytes"), "expected a non-negative integer"))?;
        Tensor::with_bytes(name, b)
    } else {
        let elem_bytes = match (map.get("dtype"), map.get("elem_bytes")) {
            (Some(_), Some(_)) => {
                return Err(json_err(at, "give \"dtype\" or \"elem_bytes\", not both"));
            }
            (Some(d), None) => {
                let d = string(d, &format!("{at}.dtype"))?;
                dtype_bytes(d).ok_or_else(|| {
                    json_err(&format!("{at}.dtype"), format!("unknown dtype {d:?}"))
                })?
            }
            (None, Some(e)) => e.as_u64().ok_or_else(|| {
                json_err(
                    &format!("{at}.elem_bytes"),
                    "expected a non-negative integer",
                )
            })?,
            (None, None) => 4,
        };
        let shape = match map.get("shape") {
            None | Some(Value::Null) => None,
            Some(Value::Array(dims)) => Some(
                dims.iter()
                    .enumerate()
                    .map(|(k, d)| match d {
                        Value::String(s) if !s.is_empty() => Ok(Dim::Sym(s.clone())),
                        Value::Number(n) => n.as_u64().map(Dim::Known).ok_or_else(|| {
                            json_err(
                                &format!("{at}.shape[{k}]"),
                                "expected a non-negative integer",
                            )
                        }),
                        _ => Err(json_err(
                            &format!("{at}.shape[{k}]"),
                            "expected a number or a symbol name",
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(json_err(&format!("{at}.shape"), "expected a list or null")),
        };
        Tensor::new(name, elem_bytes, shape)
    };
    match map.get("constant") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => tensor.kind = TensorKind::Constant,
        Some(_) => {
            return Err(json_err(
                &format!("{at}.constant"),
                "expected true or false",
            ));
        }
    }
    Ok(tensor)
}

/// A graph being read: its tensors by name, and the enclosing graphs' declarations
/// (innermost last) that its free names are captured from.
struct Level<'o> {
    graph: Graph,
    names: HashMap<String, TensorId>,
    outer: &'o [&'o HashMap<String, Tensor>],
    /// Captured tensors: local id and the name to resolve in the parent.
    free: Vec<(TensorId, String)>,
}

impl Level<'_> {
    fn resolve(&mut self, name: &str, at: &str) -> Result<TensorId, LifetimeError> {
        if let Some(&id) = self.names.get(name) {
            return Ok(id);
        }
        for scope in self.outer.iter().rev() {
            if let Some(t) = scope.get(name) {
                let id = self.graph.add_tensor(t.clone());
                self.names.insert(name.to_owned(), id);
                self.free.push((id, name.to_owned()));
                return Ok(id);
            }
        }
        Err(LifetimeError::UnknownTensorName {
            name: name.to_owned(),
            at: at.to_owned(),
        })
    }

    fn names(&mut self, list: &[Value], at: &str) -> Result<Vec<TensorId>, LifetimeError> {
        list.iter()
            .enumerate()
            .map(|(k, v)| {
                let here = format!("{at}[{k}]");
                let name = string(v, &here)?;
                self.resolve(name, &here)
            })
            .collect()
    }
}

/// Reads one graph level; returns it with its captures left as names for the caller.
fn parse_graph(
    v: &Value,
    at: &str,
    outer: &[&HashMap<String, Tensor>],
) -> Result<(Graph, Vec<(TensorId, String)>), LifetimeError> {
    let map = object(
        v,
        at,
        &[
            "name",
            "tensors",
            "nodes",
            "inputs",
            "outputs",
            "constants",
            "captures",
        ],
    )?;
    let name = match map.get("name") {
        None | Some(Value::Null) => String::new(),
        Some(n) => string(n, &format!("{at}.name"))?.to_owned(),
    };
    let mut graph = Graph::new(name);
    let mut names = HashMap::new();
    let mut declared: HashMap<String, Tensor> = HashMap::new();
    for (k, tv) in array(map, "tensors", at)?.iter().enumerate() {
        let t = parse_tensor(tv, &format!("{at}.tensors[{k}]"))?;
        if names.contains_key(&t.name) {
            return Err(LifetimeError::DuplicateName {
                name: t.name,
                graph: graph.name,
            });
        }
        declared.insert(t.name.clone(), t.clone());
        let tname = t.name.clone();
        let id = graph.add_tensor(t);
        names.insert(tname, id);
    }
    let mut level = Level {
        graph,
        names,
        outer,
        free: Vec::new(),
    };
    for (k, cv) in array(map, "captures", at)?.iter().enumerate() {
        let here = format!("{at}.captures[{k}]");
        let (inner, from) = match cv {
            Value::String(s) => (s.as_str(), s.as_str()),
            Value::Array(pair) if pair.len() == 2 => {
                (string(&pair[0], &here)?, string(&pair[1], &here)?)
            }
            _ => return Err(json_err(&here, "expected a name or [inner, outer]")),
        };
        let id = match level.names.get(inner) {
            Some(&id) => id,
            None => {
                let t = outer
                    .iter()
                    .rev()
                    .find_map(|s| s.get(from))
                    .ok_or_else(|| LifetimeError::UnknownTensorName {
                        name: from.to_owned(),
                        at: here.clone(),
                    })?;
                let mut copy = t.clone();
                copy.name = inner.to_owned();
                let id = level.graph.add_tensor(copy);
                level.names.insert(inner.to_owned(), id);
                id
            }
        };
        level.free.push((id, from.to_owned()));
    }
    for (k, cv) in array(map, "constants", at)?.iter().enumerate() {
        let here = format!("{at}.constants[{k}]");
        let id = level.resolve(string(cv, &here)?, &here)?;
        level.graph.tensors[id.index()].kind = TensorKind::Constant;
    }
    let mut chain: Vec<&HashMap<String, Tensor>> = outer.to_vec();
    chain.push(&declared);
    for (k, nv) in array(map, "nodes", at)?.iter().enumerate() {
        let here = format!("{at}.nodes[{k}]");
        let node_map = object(nv, &here, &["name", "op", "inputs", "outputs", "subgraphs"])?;
        let op = string(
            node_map
                .get("op")
                .ok_or_else(|| json_err(&here, "missing key \"op\""))?,
            &format!("{here}.op"),
        )?
        .to_owned();
        let name = match node_map.get("name") {
            None | Some(Value::Null) => format!("{op}_{k}"),
            Some(n) => string(n, &format!("{here}.name"))?.to_owned(),
        };
        let mut inputs = Vec::new();
        for (j, iv) in array(node_map, "inputs", &here)?.iter().enumerate() {
            let at_in = format!("{here}.inputs[{j}]");
            match iv {
                Value::Null => inputs.push(None),
                Value::String(s) if s.is_empty() => inputs.push(None),
                Value::String(s) => inputs.push(Some(level.resolve(s, &at_in)?)),
                _ => return Err(json_err(&at_in, "expected a tensor name or null")),
            }
        }
        let outputs = level.names(
            array(node_map, "outputs", &here)?,
            &format!("{here}.outputs"),
        )?;
        let mut subgraphs = Vec::new();
        let bodies: Vec<(String, &Value, String)> = match node_map.get("subgraphs") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(j, sv)| {
                    let at_s = format!("{here}.subgraphs[{j}]");
                    let sm = object(sv, &at_s, &["name", "graph"])?;
                    let sname = string(
                        sm.get("name")
                            .ok_or_else(|| json_err(&at_s, "missing key \"name\""))?,
                        &format!("{at_s}.name"),
                    )?;
                    let g = sm
                        .get("graph")
                        .ok_or_else(|| json_err(&at_s, "missing key \"graph\""))?;
                    Ok((sname.to_owned(), g, format!("{at_s}.graph")))
                })
                .collect::<Result<_, LifetimeError>>()?,
            Some(Value::Object(m)) => {
                let mut keys: Vec<&String> = m.keys().collect();
                let rank = |k: &str| match k {
                    "then_branch" => 0,
                    "else_branch" => 1,
                    _ => 2,
                };
                keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
                keys.into_iter()
                    .map(|k| (k.clone(), &m[k], format!("{here}.subgraphs.{k}")))
                    .collect()
            }
            Some(_) => {
                return Err(json_err(
                    &format!("{here}.subgraphs"),
                    "expected a list or an object",
                ));
            }
        };
        for (sname, gv, at_s) in bodies {
            let (mut body, free) = parse_graph(gv, &at_s, &chain)?;
            for (inner, outer_name) in free {
                let outer_id = level.resolve(&outer_name, &at_s)?;
                body.captures.push((inner, outer_id));
            }
            subgraphs.push((sname, body));
        }
        level.graph.add_node(Node {
            name,
            op,
            inputs,
            outputs,
            subgraphs,
        });
    }
    level.graph.inputs = level.names(array(map, "inputs", at)?, &format!("{at}.inputs"))?;
    level.graph.outputs = level.names(array(map, "outputs", at)?, &format!("{at}.outputs"))?;
    Ok((level.graph, level.free))
}
