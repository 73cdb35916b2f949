//! Shared helpers: the data files, `REFERENCE.txt`, and walks over nested graphs.

use std::collections::HashMap;
use std::path::PathBuf;

use memwarden_lifetime::ir::{Dim, Graph, Tensor, TensorKind};

/// The real graphs of `../shared/data/onnx`, copied into `tests/data`.
pub(crate) const SHARED: [&str; 12] = [
    "googlenet.onnx",
    "mobilenet_v2_dynamo.onnx",
    "mobilenet_v3_large.onnx",
    "onnxpkg_bvlc_alexnet.onnx",
    "onnxpkg_inception_v2.onnx",
    "onnxpkg_squeezenet.onnx",
    "onnxpkg_vgg19.onnx",
    "resnet18.onnx",
    "resnet50_dynamo.onnx",
    "shufflenet_v2_x1_0_dynamo.onnx",
    "squeezenet1_1.onnx",
    "vit_b_16_dynamo.onnx",
];

/// The control-flow and dynamic-shape graphs of `../shared/data/onnx_control_flow`.
pub(crate) const CONTROL_FLOW: [&str; 3] = [
    "branchy_if.onnx",
    "loopy_loop.onnx",
    "resnet18_dynamic_batch.onnx",
];

/// Where the copies live.
pub(crate) fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
}

/// The bytes of a data file.
pub(crate) fn read(name: &str) -> Vec<u8> {
    let path = data_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One line of `REFERENCE.txt`.
#[derive(Clone, Debug)]
#[allow(dead_code)] // every figure is parsed; each test reads the ones it checks
pub(crate) struct Reference {
    pub(crate) file: String,
    pub(crate) nodes: usize,
    pub(crate) steps: usize,
    pub(crate) tensors: usize,
    pub(crate) naive_bytes: u64,
    pub(crate) lower_bound_bytes: u64,
    /// The arena TFLite's greedy by size reaches (alignment 1).
    pub(crate) greedy_by_size_bytes: u64,
}

/// `REFERENCE.txt`, by file name.
pub(crate) fn reference() -> HashMap<String, Reference> {
    let text = String::from_utf8(read("REFERENCE.txt")).expect("REFERENCE.txt is UTF-8");
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let file = line
            .split_whitespace()
            .next()
            .expect("a file name")
            .to_owned();
        // `key= value` pairs; the byte figures come last and win over the MiB ones.
        let mut fields: HashMap<&str, &str> = HashMap::new();
        let mut toks = line.split_whitespace().peekable();
        while let Some(t) = toks.next() {
            if let Some((k, v)) = t.split_once('=') {
                let v = if v.is_empty() {
                    toks.next().unwrap_or("")
                } else {
                    v
                };
                fields.insert(k, v);
            }
        }
        let num = |k: &str| -> u64 {
            fields
                .get(k)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{file}: no integer `{k}` in REFERENCE.txt"))
        };
        out.insert(
            file.clone(),
            Reference {
                nodes: num("nodes") as usize,
                steps: num("steps") as usize,
                tensors: num("tensors") as usize,
                naive_bytes: num("naive"),
                lower_bound_bytes: num("LB"),
                greedy_by_size_bytes: num("GBS"),
                file,
            },
        );
    }
    out
}

/// Calls `f` on `g` and every graph nested in it, with a path naming the graph.
pub(crate) fn walk<'g>(g: &'g Graph, path: &str, f: &mut dyn FnMut(&str, &'g Graph)) {
    f(path, g);
    for n in &g.nodes {
        for (attr, body) in &n.subgraphs {
            walk(body, &format!("{path}/{}.{attr}", n.name), f);
        }
    }
}

/// A graph's tensors by name.
pub(crate) fn tensors_by_name(g: &Graph) -> HashMap<&str, &Tensor> {
    g.tensors.iter().map(|t| (t.name.as_str(), t)).collect()
}

/// Whether a tensor is an activation.
pub(crate) fn is_activation(t: &Tensor) -> bool {
    t.kind == TensorKind::Activation
}

/// A readable shape.
pub(crate) fn show(shape: &Option<Vec<Dim>>) -> String {
    match shape {
        None => "unknown".into(),
        Some(dims) => {
            let parts: Vec<String> = dims
                .iter()
                .map(|d| match d {
                    Dim::Known(v) => v.to_string(),
                    Dim::Sym(s) => s.clone(),
                })
                .collect();
            format!("[{}]", parts.join(", "))
        }
    }
}
