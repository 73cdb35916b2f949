//! `If`, `Loop` and `Scan` bodies as nested graphs, captures through several
//! levels, symbolic batch dimensions.

use memwarden_lifetime::ir::{Dim, Graph, Node, TensorKind};
use memwarden_lifetime::onnx::{self, ImportOptions};

use crate::common::{is_activation, read, show, walk};
use crate::encode::{
    BOOL, FLOAT, GraphSpec, INT64, attr_graph, attr_int, attr_tensor, fvalue, model, model_with,
    node, tensor_f32, tensor_i64, value,
};

fn op<'g>(g: &'g Graph, op: &str) -> &'g Node {
    g.nodes
        .iter()
        .find(|n| n.op == op)
        .unwrap_or_else(|| panic!("no {op} node"))
}

fn shape_of(g: &Graph, name: &str) -> String {
    show(
        &g.tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tensor `{name}`"))
            .shape,
    )
}

/// Each capture names, in the body, the enclosing tensor of the same name and kind.
fn assert_captures_resolve(parent: &Graph, body: &Graph) {
    for &(inner, outer) in &body.captures {
        let (i, o) = (&body.tensors[inner.index()], &parent.tensors[outer.index()]);
        assert_eq!(i.name, o.name);
        assert_eq!(i.kind, o.kind);
        assert_eq!(i.shape, o.shape);
    }
}

fn captured_names(body: &Graph) -> Vec<&str> {
    let mut v: Vec<&str> = body
        .captures
        .iter()
        .map(|(i, _)| body.tensors[i.index()].name.as_str())
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn if_has_two_branches_that_capture_the_input_and_their_weights() {
    let g = onnx::import_bytes("branchy_if.onnx", &read("branchy_if.onnx")).expect("imports");
    let node = op(&g, "If");
    let names: Vec<&str> = node.subgraphs.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(names, ["then_branch", "else_branch"]);
    let (then, els) = (&node.subgraphs[0].1, &node.subgraphs[1].1);
    assert_eq!(captured_names(then), ["a.bias", "a.weight", "x"]);
    assert_eq!(
        captured_names(els),
        ["b.0.bias", "b.0.weight", "b.2.bias", "b.2.weight", "x"]
    );
    assert_captures_resolve(&g, then);
    assert_captures_resolve(&g, els);
    assert_eq!(then.nodes.len(), 2);
    assert_eq!(els.nodes.len(), 3);
    let out = &g.tensors[node.outputs[0].index()];
    assert_eq!(show(&out.shape), "[1, 32, 56, 56]");
}

#[test]
fn loop_body_sees_carried_shapes_and_captures_weights() {
    let bytes = read("loopy_loop.onnx");
    for opts in [
        ImportOptions::default(),
        ImportOptions::default().with_value_info(false),
    ] {
        let g = onnx::import_bytes_with("loopy_loop.onnx", &bytes, opts).expect("imports");
        let node = op(&g, "Loop");
        assert_eq!(node.subgraphs.len(), 1);
        let (attr, body) = &node.subgraphs[0];
        assert_eq!(attr, "body");
        assert_eq!(body.inputs.len(), 3, "iteration, condition, carried value");
        assert_eq!(body.outputs.len(), 2, "condition, carried value");
        assert_eq!(
            captured_names(body),
            ["/Constant_output_0", "conv.bias", "conv.weight"]
        );
        assert_captures_resolve(&g, body);
        let carried = &body.tensors[body.inputs[2].index()];
        assert_eq!(show(&carried.shape), "[1, 16, 56, 56]");
        assert_eq!(show(&body.tensors[body.inputs[0].index()].shape), "[]");
        for t in body.tensors.iter().filter(|t| is_activation(t)) {
            assert!(t.shape.is_some(), "body tensor `{}` unsized", t.name);
        }
        // The file declares the loop output without a shape: inference sizes it.
        assert_eq!(shape_of(&g, "/Loop_output_0"), "[1, 16, 56, 56]");
        assert_eq!(shape_of(&g, "y"), "[1, 4, 56, 56]");
    }
}

#[test]
fn dynamic_batch_stays_symbolic() {
    let bytes = read("resnet18_dynamic_batch.onnx");
    for opts in [
        ImportOptions::default(),
        ImportOptions::default().with_value_info(false),
    ] {
        let g =
            onnx::import_bytes_with("resnet18_dynamic_batch.onnx", &bytes, opts).expect("imports");
        let mut activations = 0;
        for t in g.tensors.iter().filter(|t| is_activation(t)) {
            // ConstantOfShape outputs are weights the analysis folds; they have no batch.
            if g.nodes.iter().any(|n| {
                n.op == "ConstantOfShape"
                    && n.outputs
                        .iter()
                        .any(|o| g.tensors[o.index()].name == t.name)
            }) {
                continue;
            }
            if g.nodes.iter().any(|n| {
                n.op == "Identity"
                    && n.outputs
                        .iter()
                        .any(|o| g.tensors[o.index()].name == t.name)
            }) {
                continue;
            }
            activations += 1;
            let shape = t
                .shape
                .as_ref()
                .unwrap_or_else(|| panic!("`{}` unsized", t.name));
            assert_eq!(
                shape[0],
                Dim::Sym("N".into()),
                "`{}`: {}",
                t.name,
                show(&t.shape)
            );
        }
        assert_eq!(activations, 50, "input and the outputs of the 49 steps");
    }
}

/// A Loop whose body holds an If whose branch reads the top-level `w`.
pub(crate) fn nested_model() -> Vec<u8> {
    let then_branch = GraphSpec {
        nodes: vec![node("Add", &["h", "w"], &["t_out"], &[])],
        outputs: vec![fvalue("t_out", &["2", "3"])],
        ..GraphSpec::default()
    }
    .build("then");
    let else_branch = GraphSpec {
        nodes: vec![node("Identity", &["h"], &["e_out"], &[])],
        outputs: vec![fvalue("e_out", &["2", "3"])],
        ..GraphSpec::default()
    }
    .build("else");
    let body = GraphSpec {
        nodes: vec![
            node("Identity", &["cond_in"], &["cond_out"], &[]),
            node(
                "If",
                &["cond_in"],
                &["h_out"],
                &[
                    attr_graph("then_branch", &then_branch),
                    attr_graph("else_branch", &else_branch),
                ],
            ),
        ],
        inputs: vec![
            value("iter", INT64, Some(&[])),
            value("cond_in", BOOL, Some(&[])),
            value("h", FLOAT, None),
        ],
        outputs: vec![value("cond_out", BOOL, None), value("h_out", FLOAT, None)],
        ..GraphSpec::default()
    }
    .build("body");
    let top = GraphSpec {
        nodes: vec![node(
            "Loop",
            &["n", "", "x"],
            &["y"],
            &[attr_graph("body", &body)],
        )],
        initializers: vec![
            tensor_f32("w", &[2, 3], &[0.0; 6]),
            tensor_i64("n", &[], &[4]),
        ],
        inputs: vec![fvalue("x", &["2", "3"])],
        outputs: vec![value("y", FLOAT, None)],
        ..GraphSpec::default()
    }
    .build("top");
    model(&top)
}

#[test]
fn captures_resolve_through_two_levels() {
    let g = onnx::import_bytes("nested", &nested_model()).expect("imports");
    let body = &op(&g, "Loop").subgraphs[0].1;
    let branch = &op(body, "If").subgraphs[0].1;
    // The branch reads `w` from the body, which reads it from the top level.
    assert_eq!(captured_names(branch), ["h", "w"]);
    assert_eq!(captured_names(body), ["w"]);
    assert_captures_resolve(&g, body);
    assert_captures_resolve(body, branch);
    let w_in_body = body.captures[0].0;
    let w_in_branch = branch
        .captures
        .iter()
        .find(|(i, _)| branch.tensors[i.index()].name == "w")
        .expect("w")
        .1;
    assert_eq!(
        w_in_branch, w_in_body,
        "the branch's capture points at the body's tensor"
    );
    assert_eq!(
        g.tensors[body.captures[0].1.index()].kind,
        TensorKind::Constant
    );
    // The carried value keeps its shape through the loop and both branches.
    assert_eq!(shape_of(&g, "y"), "[2, 3]");
    assert_eq!(shape_of(body, "h"), "[2, 3]");
}

#[test]
fn if_outputs_keep_only_what_both_branches_agree_on() {
    let branch = |out: &str, cols: usize| {
        let zeros = tensor_f32("", &[1, cols as i64], &vec![0.0; cols]);
        GraphSpec {
            nodes: vec![node(
                "Constant",
                &[],
                &[out],
                &[attr_tensor("value", &zeros)],
            )],
            outputs: vec![value(out, FLOAT, None)],
            ..GraphSpec::default()
        }
        .build(out)
    };
    let top = GraphSpec {
        nodes: vec![node(
            "If",
            &["c"],
            &["y"],
            &[
                attr_graph("then_branch", &branch("a", 4)),
                attr_graph("else_branch", &branch("b", 8)),
            ],
        )],
        inputs: vec![value("c", BOOL, Some(&[]))],
        outputs: vec![value("y", FLOAT, None)],
        ..GraphSpec::default()
    }
    .build("top");
    let g = onnx::import_bytes("if", &model(&top)).expect("imports");
    assert_eq!(
        shape_of(&g, "y"),
        "unknown",
        "the column count depends on the branch"
    );
    let then = &op(&g, "If").subgraphs[0].1;
    assert_eq!(shape_of(then, "a"), "[1, 4]");
}

#[test]
fn scan_outputs_stack_the_body_outputs() {
    let body = GraphSpec {
        nodes: vec![
            node("Add", &["s_in", "x_t"], &["s_out"], &[]),
            node("Relu", &["s_out"], &["y_t"], &[]),
        ],
        inputs: vec![value("s_in", FLOAT, None), value("x_t", FLOAT, None)],
        outputs: vec![value("s_out", FLOAT, None), value("y_t", FLOAT, None)],
        ..GraphSpec::default()
    }
    .build("body");
    let top = GraphSpec {
        nodes: vec![node(
            "Scan",
            &["s0", "xs"],
            &["s_final", "ys"],
            &[attr_graph("body", &body), attr_int("num_scan_inputs", 1)],
        )],
        inputs: vec![fvalue("s0", &["3"]), fvalue("xs", &["5", "3"])],
        outputs: vec![value("s_final", FLOAT, None), value("ys", FLOAT, None)],
        ..GraphSpec::default()
    }
    .build("top");
    let g = onnx::import_bytes("scan", &model_with(8, 11, &top)).expect("imports");
    assert_eq!(shape_of(&g, "s_final"), "[3]");
    assert_eq!(shape_of(&g, "ys"), "[5, 3]");
    let body = &op(&g, "Scan").subgraphs[0].1;
    assert_eq!(shape_of(body, "x_t"), "[3]", "a slice along the scan axis");
}

#[test]
fn loop_scan_outputs_know_a_constant_trip_count() {
    let body = GraphSpec {
        nodes: vec![
            node("Identity", &["c"], &["c_out"], &[]),
            node("Relu", &["x"], &["x_t"], &[]),
        ],
        inputs: vec![value("i", INT64, Some(&[])), value("c", BOOL, Some(&[]))],
        outputs: vec![value("c_out", BOOL, None), value("x_t", FLOAT, None)],
        ..GraphSpec::default()
    }
    .build("body");
    let top = GraphSpec {
        nodes: vec![node(
            "Loop",
            &["n", ""],
            &["stacked"],
            &[attr_graph("body", &body)],
        )],
        initializers: vec![tensor_i64("n", &[], &[6])],
        inputs: vec![fvalue("x", &["2", "2"])],
        outputs: vec![value("stacked", FLOAT, None)],
        ..GraphSpec::default()
    }
    .build("top");
    let g = onnx::import_bytes("loop", &model(&top)).expect("imports");
    assert_eq!(shape_of(&g, "stacked"), "[6, 2, 2]");
    walk(&g, "", &mut |_, g| {
        assert!(g.tensors.iter().all(|t| t.shape.is_some()));
    });
}

/// `depth` nested `If`s whose innermost branches read the top-level `x`.
fn nested_ifs(depth: usize) -> Vec<u8> {
    let mut inner = GraphSpec {
        nodes: vec![node("Relu", &["x"], &[&format!("o{depth}")], &[])],
        outputs: vec![value(&format!("o{depth}"), FLOAT, None)],
        ..GraphSpec::default()
    }
    .build("leaf");
    for level in (0..depth).rev() {
        let out = format!("o{level}");
        // A small else branch: sharing `inner` would double the file at every level.
        let other = format!("e{level}");
        let els = GraphSpec {
            nodes: vec![node("Relu", &["x"], &[&other], &[])],
            outputs: vec![value(&other, FLOAT, None)],
            ..GraphSpec::default()
        }
        .build("else");
        let g = GraphSpec {
            nodes: vec![node(
                "If",
                &["c"],
                &[&out],
                &[
                    attr_graph("then_branch", &inner),
                    attr_graph("else_branch", &els),
                ],
            )],
            inputs: if level == 0 {
                vec![value("c", BOOL, Some(&[])), fvalue("x", &["2", "2"])]
            } else {
                vec![]
            },
            outputs: vec![value(&out, FLOAT, None)],
            ..GraphSpec::default()
        };
        inner = g.build(&format!("level{level}"));
    }
    model(&inner)
}

#[test]
fn deep_nesting_resolves_captures_or_fails_cleanly() {
    let g = onnx::import_bytes("deep", &nested_ifs(30)).expect("30 levels import");
    let mut graph = &g;
    let mut levels = 0;
    while let Some(n) = graph.nodes.iter().find(|n| n.op == "If") {
        let branch = &n.subgraphs[0].1;
        assert_captures_resolve(graph, branch);
        assert!(captured_names(branch).contains(&"x"));
        graph = branch;
        levels += 1;
    }
    assert_eq!(levels, 30);
    assert_eq!(
        shape_of(&g, "o0"),
        "[2, 2]",
        "the leaf's shape comes back up through every If"
    );
    // Past the decoder's nesting limit: an error, not a stack overflow.
    let e = onnx::import_bytes("deeper", &nested_ifs(40)).expect_err("too deep");
    assert!(e.to_string().contains("deeper"), "{e}");
}
