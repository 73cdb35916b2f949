//! Fuzzing the importer: no byte string may make it panic.
//!
//! Two generators, both run by proptest: a byte mutator over the real files and
//! the hand-built models (bit flips, byte writes, varint writes, insertions,
//! deletions, truncations and splices between files), and a structure-aware one
//! that writes well-formed models of random operators with extreme attribute
//! values, constants and shapes, which reach the shape rules far more often than
//! mutated bytes do. Each case is imported with and without `value_info`.
//!
//! The default case counts keep CI fast; `PROPTEST_CASES` raises both, e.g.
//! `PROPTEST_CASES=2000000 cargo test --release -p memwarden-lifetime --features onnx --test onnx fuzz`.

use std::sync::OnceLock;

use memwarden_lifetime::onnx::{self, ImportOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::read;
use crate::encode::{
    BOOL, FLOAT, GraphSpec, INT64, Msg, attr_float, attr_graph, attr_int, attr_ints, attr_str,
    attr_tensor, model_with, node, tensor_f32, tensor_i64, value,
};

/// The runner's configuration: `PROPTEST_CASES` or `default_cases`, no files written.
fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Imports `bytes` every way; only a panic fails.
fn import_every_way(bytes: &[u8]) {
    let _ = onnx::import_bytes("fuzz.onnx", bytes);
    let _ = onnx::import_bytes_with(
        "fuzz.onnx",
        bytes,
        ImportOptions::default().with_value_info(false),
    );
}

/// The files mutations start from: the smaller real graphs and the hand-built ones.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut v: Vec<Vec<u8>> = [
            "onnxpkg_bvlc_alexnet.onnx",
            "onnxpkg_vgg19.onnx",
            "onnxpkg_squeezenet.onnx",
            "resnet18.onnx",
            "squeezenet1_1.onnx",
            "googlenet.onnx",
            "mobilenet_v3_large.onnx",
            "branchy_if.onnx",
            "loopy_loop.onnx",
            "resnet18_dynamic_batch.onnx",
        ]
        .iter()
        .map(|f| read(f))
        .collect();
        v.extend(crate::ops::sample_models());
        v.push(crate::control_flow::nested_model());
        v
    })
}

/// One edit of a byte string; positions wrap around its length.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        byte: u8,
    },
    /// Writes a varint over the bytes at `at` (lengths, tags, values).
    Varint {
        at: usize,
        value: u64,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// Copies `len` bytes from seed `from` at `src` over position `at`.
    Splice {
        from: usize,
        src: usize,
        len: usize,
        at: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(0u64),
        Just(1),
        Just(0x7f),
        Just(0x80),
        Just(u64::from(u32::MAX)),
        Just(i64::MAX as u64),
        Just(u64::MAX),
        any::<u64>()
    ];
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        2 => (any::<usize>(), interesting).prop_map(|(at, value)| Mutation::Varint { at, value }),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<usize>(), any::<usize>(), 1usize..512, any::<usize>())
            .prop_map(|(from, src, len, at)| Mutation::Splice { from, src, len, at }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    let pos = |at: usize| if n == 0 { 0 } else { at % n };
    match m {
        Mutation::FlipBit { at, bit } if n > 0 => bytes[pos(*at)] ^= 1 << bit,
        Mutation::SetByte { at, byte } if n > 0 => bytes[pos(*at)] = *byte,
        Mutation::Varint { at, value } => {
            let mut v = *value;
            let mut enc = Vec::new();
            while v >= 0x80 {
                enc.push((v as u8) | 0x80);
                v >>= 7;
            }
            enc.push(v as u8);
            let start = pos(*at);
            let end = (start + enc.len()).min(n);
            bytes.splice(start..end, enc);
        }
        Mutation::Insert { at, bytes: b } => {
            let at = if n == 0 { 0 } else { at % (n + 1) };
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Delete { at, len } if n > 0 => {
            let start = pos(*at);
            bytes.drain(start..(start + len).min(n));
        }
        Mutation::Truncate { at } => bytes.truncate(if n == 0 { 0 } else { at % n }),
        Mutation::Splice { from, src, len, at } => {
            let s = &seeds()[from % seeds().len()];
            let src = src % s.len().max(1);
            let chunk = &s[src..(src + len).min(s.len())];
            let start = pos(*at);
            let end = (start + chunk.len()).min(n);
            bytes.splice(start..end, chunk.iter().copied());
        }
        _ => {}
    }
}

#[test]
fn fuzz_mutated_files_never_panic() {
    let mut runner = TestRunner::new(config(256));
    let strategy = (any::<usize>(), prop::collection::vec(mutation(), 1..8));
    runner
        .run(&strategy, |(seed, mutations)| {
            let mut bytes = seeds()[seed % seeds().len()].clone();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            import_every_way(&bytes);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Operators the structured generator draws from.
const OPS: &[&str] = &[
    "Reshape",
    "Slice",
    "Squeeze",
    "Unsqueeze",
    "Split",
    "Concat",
    "Gather",
    "Transpose",
    "Flatten",
    "Expand",
    "Tile",
    "Range",
    "Pad",
    "ConstantOfShape",
    "Resize",
    "Upsample",
    "TopK",
    "ReduceSum",
    "ReduceMean",
    "ArgMax",
    "Conv",
    "MaxPool",
    "AveragePool",
    "ConvTranspose",
    "GlobalAveragePool",
    "MatMul",
    "Gemm",
    "Einsum",
    "Add",
    "Mul",
    "Div",
    "Sub",
    "Mod",
    "Pow",
    "Where",
    "Equal",
    "Less",
    "Not",
    "Shape",
    "Size",
    "Cast",
    "DepthToSpace",
    "SpaceToDepth",
    "LayerNormalization",
    "BatchNormalization",
    "Dropout",
    "Identity",
    "Max",
    "Sum",
    "Neg",
    "Abs",
    "Constant",
    "GatherElements",
    "NonZero",
    "CumSum",
    "Softmax",
    "If",
    "Loop",
    "Scan",
    "Unknown",
];

const ATTRS: &[&str] = &[
    "axis",
    "axes",
    "perm",
    "kernel_shape",
    "strides",
    "pads",
    "dilations",
    "group",
    "keepdims",
    "split",
    "num_outputs",
    "to",
    "starts",
    "ends",
    "shape",
    "blocksize",
    "transA",
    "transB",
    "ceil_mode",
    "auto_pad",
    "equation",
    "k",
    "allowzero",
    "start",
    "end",
    "noop_with_empty_axes",
    "scales",
    "value",
    "value_int",
    "value_ints",
    "value_float",
    "output_shape",
    "output_padding",
    "num_scan_inputs",
    "scan_input_axes",
    "scan_output_axes",
    "fmod",
    "keep_aspect_ratio_policy",
    "stash_type",
];

/// An integer that is often small and sometimes extreme.
fn int(rng: &mut StdRng) -> i64 {
    match rng.random_range(0..10) {
        0 => [
            i64::MIN,
            i64::MAX,
            i64::MIN + 1,
            i64::MAX - 1,
            1 << 40,
            -(1 << 40),
            1 << 62,
        ][rng.random_range(0..7)],
        1 => rng.random(),
        _ => rng.random_range(-4..8),
    }
}

fn ints(rng: &mut StdRng) -> Vec<i64> {
    let n = rng.random_range(0..7);
    (0..n).map(|_| int(rng)).collect()
}

fn dim(rng: &mut StdRng) -> String {
    match rng.random_range(0..12) {
        0 => "N".into(),
        1 => "?".into(),
        2 => "0".into(),
        3 => (1i64 << 40).to_string(),
        4 => i64::MAX.to_string(),
        _ => rng.random_range(1..9).to_string(),
    }
}

fn attribute(rng: &mut StdRng, depth: u32) -> Msg {
    let name = ATTRS[rng.random_range(0..ATTRS.len())];
    match rng.random_range(0..8) {
        0 | 1 => attr_int(name, int(rng)),
        2 | 3 => attr_ints(name, &ints(rng)),
        4 => attr_float(
            name,
            [0.0, -1.0, 0.5, 2.0, f32::NAN, f32::INFINITY, 1e30][rng.random_range(0..7)],
        ),
        5 => attr_str(
            name,
            [
                "SAME_UPPER",
                "VALID",
                "ij,jk->ik",
                "...i,...i",
                "a->",
                "not_larger",
                "",
                "->",
                "ab,b",
            ][rng.random_range(0..9)],
        ),
        6 => {
            let dims: Vec<i64> = (0..rng.random_range(0..3))
                .map(|_| rng.random_range(0..4))
                .collect();
            let n: i64 = dims.iter().product();
            let t = if rng.random() {
                tensor_i64("", &dims, &(0..n).map(|_| int(rng)).collect::<Vec<_>>())
            } else {
                tensor_f32("", &dims, &vec![1.5; n as usize])
            };
            attr_tensor(name, &t)
        }
        _ if depth < 2 => attr_graph(name, &graph(rng, depth + 1).build("body")),
        _ => attr_int(name, 0),
    }
}

/// A random graph: typed inputs, int64 constants, and nodes over them.
fn graph(rng: &mut StdRng, depth: u32) -> GraphSpec {
    let mut g = GraphSpec::default();
    let mut names: Vec<String> = Vec::new();
    for i in 0..rng.random_range(0..4) {
        let name = format!("in{depth}_{i}");
        let rank = rng.random_range(0..5);
        let dims: Vec<String> = (0..rank).map(|_| dim(rng)).collect();
        let dims: Vec<&str> = dims.iter().map(String::as_str).collect();
        let ty = [FLOAT, FLOAT, INT64, BOOL][rng.random_range(0..4)];
        g.inputs.push(value(
            &name,
            ty,
            if rng.random_range(0..8) == 0 {
                None
            } else {
                Some(&dims)
            },
        ));
        names.push(name);
    }
    for i in 0..rng.random_range(0..5) {
        let name = format!("c{depth}_{i}");
        let vals = ints(rng);
        let dims: &[i64] = if vals.len() == 1 && rng.random() {
            &[]
        } else {
            &[vals.len() as i64]
        };
        g.initializers.push(tensor_i64(&name, dims, &vals));
        names.push(name);
    }
    for i in 0..rng.random_range(1..12) {
        let op = OPS[rng.random_range(0..OPS.len())];
        let inputs: Vec<String> = (0..rng.random_range(0..5))
            .map(|_| match rng.random_range(0..12) {
                0 => String::new(),
                _ if names.is_empty() => String::new(),
                _ => names[rng.random_range(0..names.len())].clone(),
            })
            .collect();
        let outputs: Vec<String> = (0..rng.random_range(1..4))
            .map(|k| format!("t{depth}_{i}_{k}"))
            .collect();
        let attrs: Vec<Msg> = (0..rng.random_range(0..5))
            .map(|_| attribute(rng, depth))
            .collect();
        let ins: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let outs: Vec<&str> = outputs.iter().map(String::as_str).collect();
        g.nodes.push(node(op, &ins, &outs, &attrs));
        names.extend(outputs);
    }
    if let Some(last) = names.last() {
        g.outputs.push(value(last, FLOAT, None));
    }
    g
}

/// The model the structured generator makes from `seed`.
fn generated(seed: u64, opset: i64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    model_with(8, opset, &graph(&mut rng, 0).build("fuzz"))
}

#[test]
fn fuzz_generated_models_never_panic() {
    let mut runner = TestRunner::new(config(256));
    runner
        .run(&(any::<u64>(), 1i64..22), |(seed, opset)| {
            import_every_way(&generated(seed, opset));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Inputs that once made the importer panic, with what was wrong.
#[test]
fn fuzz_regressions() {
    // Gather computed source indices of a constant without values: overflow.
    import_every_way(&generated(8_155_188_233_433_608_950, 1));
    // Scan sized a vector by its `num_scan_inputs` attribute (1 << 62).
    import_every_way(&generated(2_893_469_561_047_207_774, 9));
}
