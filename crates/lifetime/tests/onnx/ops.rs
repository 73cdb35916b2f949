//! Shape rules one operator at a time, on hand-built graphs: `check` imports a
//! graph with inference only and compares the named tensors' shapes and element
//! sizes, over a table of cases covering the operators (and the attribute or
//! input forms of their settings) that the shared graphs do not exercise.

use memwarden_lifetime::onnx::{self, ImportOptions};

use crate::common::show;
use crate::encode::{
    BOOL, FLOAT, GraphSpec, INT64, Msg, attr_float, attr_floats, attr_int, attr_ints, attr_str,
    attr_tensor, fvalue, model_with, node, tensor_f32, tensor_i64, value,
};

/// One graph and what inference must find in it.
struct Case {
    label: &'static str,
    opset: i64,
    inputs: Vec<Msg>,
    initializers: Vec<Msg>,
    nodes: Vec<Msg>,
    /// (tensor, shape as `show` writes it, element bytes).
    expect: Vec<(&'static str, &'static str, u64)>,
}

fn case(
    label: &'static str,
    inputs: Vec<Msg>,
    nodes: Vec<Msg>,
    expect: &[(&'static str, &'static str, u64)],
) -> Case {
    Case {
        label,
        opset: 17,
        inputs,
        initializers: Vec::new(),
        nodes,
        expect: expect.to_vec(),
    }
}

impl Case {
    fn init(mut self, t: Msg) -> Self {
        self.initializers.push(t);
        self
    }

    fn opset(mut self, v: i64) -> Self {
        self.opset = v;
        self
    }
}

/// A 1-D int64 constant.
fn ints(name: &str, v: &[i64]) -> Msg {
    tensor_i64(name, &[v.len() as i64], v)
}

/// An int64 scalar constant.
fn scalar(name: &str, v: i64) -> Msg {
    tensor_i64(name, &[], &[v])
}

impl Case {
    /// The case's model file.
    fn bytes(&self) -> Vec<u8> {
        let graph = GraphSpec {
            nodes: self.nodes.clone(),
            initializers: self.initializers.clone(),
            inputs: self.inputs.clone(),
            ..GraphSpec::default()
        }
        .build(self.label);
        model_with(8, self.opset, &graph)
    }
}

/// Every case's model, as seeds for the fuzzer.
pub(crate) fn sample_models() -> Vec<Vec<u8>> {
    cases().iter().map(Case::bytes).collect()
}

/// Problems with one case, as readable lines.
fn check(c: &Case) -> Vec<String> {
    let bytes = c.bytes();
    let opts = ImportOptions::default().with_value_info(false);
    let g = match onnx::import_bytes_with(c.label, &bytes, opts) {
        Ok(g) => g,
        Err(e) => return vec![format!("{}: {e}", c.label)],
    };
    let mut problems = Vec::new();
    for &(name, shape, elem) in &c.expect {
        match g.tensors.iter().find(|t| t.name == name) {
            None => problems.push(format!("{}: no tensor `{name}`", c.label)),
            Some(t) if show(&t.shape) != shape || t.elem_bytes != elem => problems.push(format!(
                "{}: `{name}` is {} x {} B, expected {shape} x {elem} B",
                c.label,
                show(&t.shape),
                t.elem_bytes
            )),
            Some(_) => {}
        }
    }
    problems
}

fn cases() -> Vec<Case> {
    let x4 = || vec![fvalue("x", &["2", "3", "4", "5"])];
    vec![
        case(
            "reshape from a Shape-Gather-Unsqueeze-Concat chain keeps the batch symbol",
            vec![fvalue("x", &["N", "3", "4", "5"])],
            vec![
                node("Shape", &["x"], &["s"], &[]),
                node("Gather", &["s", "zero"], &["n"], &[attr_int("axis", 0)]),
                node("Unsqueeze", &["n", "axes0"], &["n1"], &[]),
                node(
                    "Concat",
                    &["n1", "minus1"],
                    &["target"],
                    &[attr_int("axis", 0)],
                ),
                node("Reshape", &["x", "target"], &["y"], &[]),
            ],
            &[
                ("s", "[4]", 8),
                ("n", "[]", 8),
                ("target", "[2]", 8),
                ("y", "[N, 60]", 4),
            ],
        )
        .init(scalar("zero", 0))
        .init(ints("axes0", &[0]))
        .init(ints("minus1", &[-1])),
        case(
            "reshape with 0 and -1",
            x4(),
            vec![node("Reshape", &["x", "t"], &["y"], &[])],
            &[("y", "[2, 60]", 4)],
        )
        .init(ints("t", &[0, -1])),
        case(
            "reshape to a symbolic -1",
            vec![fvalue("x", &["N", "6"])],
            vec![node("Reshape", &["x", "t"], &["y"], &[])],
            &[("y", "[N, 2, 3]", 4)],
        )
        .init(ints("t", &[-1, 2, 3])),
        case(
            "reshape as an attribute (opset 1)",
            x4(),
            vec![node(
                "Reshape",
                &["x"],
                &["y"],
                &[attr_ints("shape", &[6, 20])],
            )],
            &[("y", "[6, 20]", 4)],
        )
        .opset(4),
        case(
            "flatten",
            x4(),
            vec![node("Flatten", &["x"], &["y"], &[attr_int("axis", 2)])],
            &[("y", "[6, 20]", 4)],
        ),
        case(
            "flatten at 0",
            x4(),
            vec![node("Flatten", &["x"], &["y"], &[attr_int("axis", 0)])],
            &[("y", "[1, 120]", 4)],
        ),
        case(
            "slice with inputs, steps and clamped ends",
            vec![fvalue("x", &["10", "20"])],
            vec![node("Slice", &["x", "st", "en", "ax", "sp"], &["y"], &[])],
            &[("y", "[5, 5]", 4)],
        )
        .init(ints("st", &[1, -5]))
        .init(ints("en", &[100, 1000]))
        .init(ints("ax", &[0, 1]))
        .init(ints("sp", &[2, 1])),
        case(
            "slice backwards",
            vec![fvalue("x", &["10"])],
            vec![node("Slice", &["x", "st", "en", "", "sp"], &["y"], &[])],
            &[("y", "[10]", 4)],
        )
        .init(ints("st", &[-1]))
        .init(ints("en", &[i64::MIN]))
        .init(ints("sp", &[-1])),
        case(
            "slice as attributes (opset 9)",
            vec![fvalue("x", &["8", "8"])],
            vec![node(
                "Slice",
                &["x"],
                &["y"],
                &[
                    attr_ints("starts", &[2]),
                    attr_ints("ends", &[-2]),
                    attr_ints("axes", &[1]),
                ],
            )],
            &[("y", "[8, 4]", 4)],
        )
        .opset(9),
        case(
            "slice of a whole symbolic axis",
            vec![fvalue("x", &["N", "10"])],
            vec![node("Slice", &["x", "st", "en", "ax"], &["y"], &[])],
            &[("y", "[N, 3]", 4)],
        )
        .init(ints("st", &[0, 7]))
        .init(ints("en", &[i64::MAX, 10]))
        .init(ints("ax", &[0, 1])),
        case(
            "slice of a shape value feeds a reshape",
            vec![fvalue("x", &["2", "3", "4"])],
            vec![
                node("Shape", &["x"], &["s"], &[]),
                node("Slice", &["s", "st", "en"], &["tail"], &[]),
                node("Concat", &["m1", "tail"], &["t"], &[attr_int("axis", 0)]),
                node("Reshape", &["x", "t"], &["y"], &[]),
            ],
            &[("tail", "[1]", 8), ("y", "[6, 4]", 4)],
        )
        .init(ints("st", &[2]))
        .init(ints("en", &[i64::MAX]))
        .init(ints("m1", &[-1])),
        case(
            "squeeze with an axes input (opset 13) and without axes",
            vec![fvalue("x", &["1", "3", "1", "5"])],
            vec![
                node("Squeeze", &["x", "ax"], &["y"], &[]),
                node("Squeeze", &["x"], &["z"], &[]),
            ],
            &[("y", "[3, 5]", 4), ("z", "[3, 5]", 4)],
        )
        .init(ints("ax", &[0, -2])),
        case(
            "unsqueeze with an axes attribute (opset 11)",
            vec![fvalue("x", &["3", "5"])],
            vec![node(
                "Unsqueeze",
                &["x"],
                &["y"],
                &[attr_ints("axes", &[0, 3])],
            )],
            &[("y", "[1, 3, 5, 1]", 4)],
        )
        .opset(11),
        case(
            "split by an input, by an attribute and into equal parts",
            vec![fvalue("x", &["2", "10"])],
            vec![
                node(
                    "Split",
                    &["x", "sizes"],
                    &["a", "b"],
                    &[attr_int("axis", 1)],
                ),
                node("Split", &["x"], &["c", "d"], &[attr_int("axis", 1)]),
                node(
                    "Split",
                    &["x"],
                    &["e", "f", "g"],
                    &[attr_int("axis", -1), attr_int("num_outputs", 3)],
                ),
            ],
            &[
                ("a", "[2, 3]", 4),
                ("b", "[2, 7]", 4),
                ("c", "[2, 5]", 4),
                ("d", "[2, 5]", 4),
                ("e", "[2, 4]", 4),
                ("g", "[2, 2]", 4),
            ],
        )
        .init(ints("sizes", &[3, 7])),
        case(
            "split sizes as an attribute (opset 11)",
            vec![fvalue("x", &["6"])],
            vec![node(
                "Split",
                &["x"],
                &["a", "b"],
                &[attr_ints("split", &[1, 5])],
            )],
            &[("a", "[1]", 4), ("b", "[5]", 4)],
        )
        .opset(11),
        case(
            "concat on a negative axis",
            vec![fvalue("a", &["2", "3"]), fvalue("b", &["2", "5"])],
            vec![node("Concat", &["a", "b"], &["y"], &[attr_int("axis", -1)])],
            &[("y", "[2, 8]", 4)],
        ),
        case(
            "transpose",
            vec![fvalue("x", &["2", "3", "4"])],
            vec![
                node(
                    "Transpose",
                    &["x"],
                    &["y"],
                    &[attr_ints("perm", &[0, 2, 1])],
                ),
                node("Transpose", &["x"], &["z"], &[]),
            ],
            &[("y", "[2, 4, 3]", 4), ("z", "[4, 3, 2]", 4)],
        ),
        case(
            "matmul broadcasts batches and promotes vectors",
            vec![
                fvalue("a", &["2", "1", "3", "4"]),
                fvalue("b", &["5", "4", "6"]),
                fvalue("v", &["4"]),
            ],
            vec![
                node("MatMul", &["a", "b"], &["y"], &[]),
                node("MatMul", &["v", "b"], &["z"], &[]),
                node("MatMul", &["a", "v"], &["w"], &[]),
            ],
            &[
                ("y", "[2, 5, 3, 6]", 4),
                ("z", "[5, 6]", 4),
                ("w", "[2, 1, 3]", 4),
            ],
        ),
        case(
            "gemm with transposes",
            vec![fvalue("a", &["3", "2"]), fvalue("b", &["5", "3"])],
            vec![node(
                "Gemm",
                &["a", "b"],
                &["y"],
                &[attr_int("transA", 1), attr_int("transB", 1)],
            )],
            &[("y", "[2, 5]", 4)],
        ),
        case(
            "conv with strides, pads, dilations and groups",
            vec![
                fvalue("x", &["N", "4", "32", "32"]),
                fvalue("w", &["8", "2", "3", "3"]),
            ],
            vec![
                node(
                    "Conv",
                    &["x", "w"],
                    &["y"],
                    &[
                        attr_ints("strides", &[2, 2]),
                        attr_ints("pads", &[1, 1, 1, 1]),
                        attr_int("group", 2),
                    ],
                ),
                node(
                    "Conv",
                    &["x", "w"],
                    &["z"],
                    &[attr_ints("dilations", &[2, 2]), attr_int("group", 2)],
                ),
                node(
                    "Conv",
                    &["x", "w"],
                    &["s"],
                    &[
                        attr_str("auto_pad", "SAME_UPPER"),
                        attr_ints("strides", &[3, 3]),
                        attr_int("group", 2),
                    ],
                ),
            ],
            &[
                ("y", "[N, 8, 16, 16]", 4),
                ("z", "[N, 8, 28, 28]", 4),
                ("s", "[N, 8, 11, 11]", 4),
            ],
        ),
        case(
            "conv transpose",
            vec![
                fvalue("x", &["1", "4", "8", "8"]),
                fvalue("w", &["4", "2", "3", "3"]),
            ],
            vec![node(
                "ConvTranspose",
                &["x", "w"],
                &["y"],
                &[
                    attr_ints("strides", &[2, 2]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                    attr_ints("output_padding", &[1, 1]),
                ],
            )],
            &[("y", "[1, 2, 16, 16]", 4)],
        ),
        case(
            "pools, ceil mode dropping a window that starts in the padding",
            vec![fvalue("x", &["1", "1", "5", "5"])],
            vec![
                node(
                    "MaxPool",
                    &["x"],
                    &["y", "idx"],
                    &[
                        attr_ints("kernel_shape", &[2, 2]),
                        attr_ints("strides", &[2, 2]),
                        attr_ints("pads", &[1, 1, 1, 1]),
                        attr_int("ceil_mode", 1),
                    ],
                ),
                node(
                    "AveragePool",
                    &["x"],
                    &["a"],
                    &[
                        attr_ints("kernel_shape", &[3, 3]),
                        attr_ints("strides", &[2, 2]),
                        attr_int("ceil_mode", 1),
                    ],
                ),
                node(
                    "AveragePool",
                    &["x"],
                    &["f"],
                    &[
                        attr_ints("kernel_shape", &[2, 2]),
                        attr_ints("strides", &[2, 2]),
                    ],
                ),
                node("GlobalMaxPool", &["x"], &["g"], &[]),
            ],
            &[
                ("y", "[1, 1, 3, 3]", 4),
                ("idx", "[1, 1, 3, 3]", 8),
                ("a", "[1, 1, 2, 2]", 4),
                ("f", "[1, 1, 2, 2]", 4),
                ("g", "[1, 1, 1, 1]", 4),
            ],
        ),
        case(
            "reductions with attribute and input axes",
            vec![fvalue("x", &["2", "3", "4"])],
            vec![
                node(
                    "ReduceMean",
                    &["x", "ax"],
                    &["y"],
                    &[attr_int("keepdims", 0)],
                ),
                node("ReduceSum", &["x"], &["z"], &[]),
                node("ReduceMax", &["x"], &["w"], &[attr_ints("axes", &[-1])]),
                node(
                    "ArgMax",
                    &["x"],
                    &["am"],
                    &[attr_int("axis", 1), attr_int("keepdims", 0)],
                ),
            ],
            &[
                ("y", "[2, 4]", 4),
                ("z", "[1, 1, 1]", 4),
                ("w", "[2, 3, 1]", 4),
                ("am", "[2, 4]", 8),
            ],
        )
        .init(ints("ax", &[1])),
        case(
            "gather along an axis with matrix indices",
            vec![fvalue("x", &["3", "5", "7"])],
            vec![node(
                "Gather",
                &["x", "idx"],
                &["y"],
                &[attr_int("axis", 1)],
            )],
            &[("y", "[3, 2, 2, 7]", 4)],
        )
        .init(tensor_i64("idx", &[2, 2], &[0, 1, 2, 3])),
        case(
            "expand, tile, range, constant of shape",
            vec![fvalue("x", &["3", "1"]), fvalue("m", &["2", "3"])],
            vec![
                node("Expand", &["x", "shape"], &["e"], &[]),
                node("Tile", &["m", "reps"], &["t"], &[]),
                node("Range", &["r0", "r1", "r2"], &["r"], &[]),
                node(
                    "ConstantOfShape",
                    &["shape"],
                    &["c"],
                    &[attr_tensor("value", &tensor_i64("", &[1], &[0]))],
                ),
                node("ConstantOfShape", &["reps"], &["cf"], &[]),
            ],
            &[
                ("e", "[2, 3, 4]", 4),
                ("t", "[4, 6]", 4),
                ("r", "[4]", 8),
                ("c", "[2, 1, 4]", 8),
                ("cf", "[2, 2]", 4),
            ],
        )
        .init(ints("shape", &[2, 1, 4]))
        .init(ints("reps", &[2, 2]))
        .init(scalar("r0", 0))
        .init(scalar("r1", 10))
        .init(scalar("r2", 3)),
        case(
            "range over a dimension read from a shape",
            vec![fvalue("x", &["7", "2"])],
            vec![
                node("Shape", &["x"], &["s"], &[]),
                node("Gather", &["s", "zero"], &["n"], &[]),
                node("Range", &["zero", "n", "one"], &["r"], &[]),
                node("Cast", &["n"], &["nf"], &[attr_int("to", 1)]),
            ],
            &[("r", "[7]", 8), ("nf", "[]", 4)],
        )
        .init(scalar("zero", 0))
        .init(scalar("one", 1)),
        case(
            "pads as an input (opset 13) and an attribute (opset 2)",
            vec![fvalue("x", &["1", "3", "4", "4"])],
            vec![node("Pad", &["x", "pads"], &["y"], &[])],
            &[("y", "[1, 3, 6, 8]", 4)],
        )
        .init(ints("pads", &[0, 0, 1, 2, 0, 0, 1, 2])),
        case(
            "pads as an attribute",
            vec![fvalue("x", &["4", "4"])],
            vec![node(
                "Pad",
                &["x"],
                &["y"],
                &[attr_ints("pads", &[1, 0, 1, 0])],
            )],
            &[("y", "[6, 4]", 4)],
        )
        .opset(2),
        case(
            "resize by sizes and by scales",
            vec![fvalue("x", &["1", "3", "10", "10"])],
            vec![
                node("Resize", &["x", "", "", "sizes"], &["a"], &[]),
                node("Resize", &["x", "", "scales"], &["b"], &[]),
            ],
            &[("a", "[1, 3, 20, 30]", 4), ("b", "[1, 3, 20, 5]", 4)],
        )
        .init(ints("sizes", &[1, 3, 20, 30]))
        .init(tensor_f32("scales", &[4], &[1.0, 1.0, 2.0, 0.5])),
        case(
            "resize keeping the aspect ratio",
            vec![fvalue("x", &["1", "3", "10", "20"])],
            vec![node(
                "Resize",
                &["x", "", "", "sizes"],
                &["a"],
                &[
                    attr_str("keep_aspect_ratio_policy", "not_larger"),
                    attr_ints("axes", &[2, 3]),
                ],
            )],
            &[("a", "[1, 3, 15, 30]", 4)],
        )
        .opset(18)
        .init(ints("sizes", &[15, 40])),
        case(
            "upsample (opset 9) and opset-10 resize take scales second",
            vec![fvalue("x", &["1", "2", "4", "4"])],
            vec![
                node("Upsample", &["x", "scales"], &["u"], &[]),
                node("Resize", &["x", "scales"], &["r"], &[]),
            ],
            &[("u", "[1, 2, 8, 8]", 4), ("r", "[1, 2, 8, 8]", 4)],
        )
        .opset(10)
        .init(tensor_f32("scales", &[4], &[1.0, 1.0, 2.0, 2.0])),
        case(
            "einsum, explicit and implicit",
            vec![
                fvalue("a", &["2", "3", "4"]),
                fvalue("b", &["2", "4", "5"]),
                fvalue("m", &["3", "4"]),
                fvalue("n", &["4", "5"]),
            ],
            vec![
                node(
                    "Einsum",
                    &["a", "b"],
                    &["y"],
                    &[attr_str("equation", "bij,bjk->bik")],
                ),
                node(
                    "Einsum",
                    &["m", "n"],
                    &["z"],
                    &[attr_str("equation", "ij,jk")],
                ),
                node(
                    "Einsum",
                    &["a", "b"],
                    &["e"],
                    &[attr_str("equation", "...ij,...jk->...ik")],
                ),
                node("Einsum", &["m"], &["t"], &[attr_str("equation", "ij->ji")]),
            ],
            &[
                ("y", "[2, 3, 5]", 4),
                ("z", "[3, 5]", 4),
                ("e", "[2, 3, 5]", 4),
                ("t", "[4, 3]", 4),
            ],
        ),
        case(
            "topk with k as an input",
            vec![fvalue("x", &["2", "10"])],
            vec![node("TopK", &["x", "k"], &["v", "i"], &[])],
            &[("v", "[2, 3]", 4), ("i", "[2, 3]", 8)],
        )
        .init(ints("k", &[3])),
        case(
            "where and comparisons broadcast to booleans",
            vec![
                value("c", BOOL, Some(&["3", "1"])),
                fvalue("a", &["1", "4"]),
                fvalue("b", &[]),
            ],
            vec![
                node("Where", &["c", "a", "b"], &["y"], &[]),
                node("Less", &["a", "b"], &["l"], &[]),
                node("Not", &["c"], &["n"], &[]),
                node("Max", &["a", "c", "b"], &["mx"], &[]),
            ],
            &[
                ("y", "[3, 4]", 4),
                ("l", "[1, 4]", 1),
                ("n", "[3, 1]", 1),
                ("mx", "[3, 4]", 4),
            ],
        ),
        case(
            "cast, size, shape with start and end",
            x4(),
            vec![
                node("Cast", &["x"], &["c"], &[attr_int("to", INT64)]),
                node("Size", &["x"], &["s"], &[]),
                node(
                    "Shape",
                    &["x"],
                    &["mid"],
                    &[attr_int("start", 1), attr_int("end", -1)],
                ),
                node("ConstantOfShape", &["mid"], &["z"], &[]),
            ],
            &[
                ("c", "[2, 3, 4, 5]", 8),
                ("s", "[]", 8),
                ("mid", "[2]", 8),
                ("z", "[3, 4]", 4),
            ],
        ),
        case(
            "normalisations and their statistics",
            vec![fvalue("x", &["2", "5", "8"]), fvalue("g", &["8"])],
            vec![
                node(
                    "LayerNormalization",
                    &["x", "g", "g"],
                    &["y", "mean", "istd"],
                    &[attr_int("axis", -1), attr_float("epsilon", 1e-5)],
                ),
                node("InstanceNormalization", &["x", "g", "g"], &["i"], &[]),
                node("Softmax", &["x"], &["s"], &[attr_int("axis", 1)]),
            ],
            &[
                ("y", "[2, 5, 8]", 4),
                ("mean", "[2, 5, 1]", 4),
                ("i", "[2, 5, 8]", 4),
                ("s", "[2, 5, 8]", 4),
            ],
        ),
        case(
            "dropout's mask is boolean from opset 10, the input's type before",
            x4(),
            vec![node("Dropout", &["x"], &["y", "mask"], &[])],
            &[("y", "[2, 3, 4, 5]", 4), ("mask", "[2, 3, 4, 5]", 1)],
        ),
        case(
            "dropout mask in opset 9",
            x4(),
            vec![node(
                "Dropout",
                &["x"],
                &["y", "mask"],
                &[attr_float("ratio", 0.5)],
            )],
            &[("mask", "[2, 3, 4, 5]", 4)],
        )
        .opset(9),
        case(
            "depth to space and space to depth",
            vec![fvalue("x", &["1", "8", "3", "3"])],
            vec![
                node("DepthToSpace", &["x"], &["d"], &[attr_int("blocksize", 2)]),
                node("SpaceToDepth", &["d"], &["s"], &[attr_int("blocksize", 2)]),
            ],
            &[("d", "[1, 2, 6, 6]", 4), ("s", "[1, 8, 3, 3]", 4)],
        ),
        case(
            "constants of every attribute form",
            vec![],
            vec![
                node(
                    "Constant",
                    &[],
                    &["a"],
                    &[attr_tensor("value", &tensor_f32("", &[2, 2], &[0.0; 4]))],
                ),
                node("Constant", &[], &["b"], &[attr_float("value_float", 1.0)]),
                node(
                    "Constant",
                    &[],
                    &["c"],
                    &[attr_floats("value_floats", &[1.0, 2.0, 3.0])],
                ),
                node("Constant", &[], &["d"], &[attr_int("value_int", 4)]),
                node("Constant", &[], &["e"], &[attr_ints("value_ints", &[1, 2])]),
                node("Reshape", &["a", "e"], &["f"], &[]),
            ],
            &[
                ("a", "[2, 2]", 4),
                ("b", "[]", 4),
                ("c", "[3]", 4),
                ("d", "[]", 8),
                ("e", "[2]", 8),
                ("f", "[1, 2]", 4),
            ],
        ),
        case(
            "integer arithmetic on shape values",
            vec![fvalue("x", &["4", "6"])],
            vec![
                node("Shape", &["x"], &["s"], &[]),
                node("Div", &["s", "two"], &["h"], &[]),
                node("Mul", &["h", "three"], &["t"], &[]),
                node("Sub", &["t", "one"], &["u"], &[]),
                node("ConstantOfShape", &["u"], &["y"], &[]),
            ],
            &[("y", "[5, 8]", 4)],
        )
        .init(scalar("two", 2))
        .init(scalar("three", 3))
        .init(scalar("one", 1)),
        case(
            "an operator without a rule, and a custom domain, stay unknown",
            vec![fvalue("x", &["2"])],
            vec![
                node("NoSuchOp", &["x"], &["y"], &[]),
                node("Relu", &["x"], &["z"], &[]).str(7, "com.example"),
            ],
            &[("y", "unknown", 0), ("z", "unknown", 0)],
        ),
        case(
            "unknowns propagate without failing",
            vec![value("x", FLOAT, None)],
            vec![
                node("Relu", &["x"], &["r"], &[]),
                node("Shape", &["r"], &["s"], &[]),
                node("Reshape", &["r", "s"], &["y"], &[]),
                node("Conv", &["y", "y"], &["c"], &[]),
            ],
            &[
                ("r", "unknown", 4),
                ("s", "unknown", 8),
                ("y", "unknown", 4),
                ("c", "unknown", 4),
            ],
        ),
    ]
}

#[test]
fn operator_shape_rules() {
    let all = cases();
    let problems: Vec<String> = all.iter().flat_map(check).collect();
    assert!(
        problems.is_empty(),
        "{} of {} cases failed:\n{}",
        problems.len(),
        all.len(),
        problems.join("\n")
    );
}
