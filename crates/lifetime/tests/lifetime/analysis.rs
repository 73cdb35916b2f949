//! Lifetime analysis: order, constant folding, dead outputs, sizes, errors, and the
//! shared reference figures.

use memwarden_lifetime::ir::{Graph, Node, Tensor, TensorId};
use memwarden_lifetime::{LifetimeError, PlanOptions, Strategy, Unknown, plan};

use crate::util::{build, lifetimes, opts};

/// Plans `spec` (greedy by size, alignment 1) and compares the lifetimes and
/// `steps naive LB arena`.
fn check(spec: &str, expected_lifetimes: &str, expected_figures: [u64; 4]) {
    let p = plan(&build(spec), &opts(Strategy::GreedyBySize)).unwrap();
    assert_eq!(lifetimes(&p), expected_lifetimes, "{spec}");
    assert_eq!(
        [
            p.steps as u64,
            p.naive_bytes,
            p.lower_bound_bytes,
            p.arena_bytes
        ],
        expected_figures,
        "{spec}"
    );
}

#[test]
fn lifetimes_and_figures() {
    // A chain: each tensor dies where the next is made.
    check(
        "in x\nout c\nn0 Relu x -> a\nn1 Relu a -> b\nn2 Relu b -> c",
        "x[0,0] a[0,1] b[1,2] c[2,2]",
        [3, 400, 200, 200],
    );
    // A long skip keeps x to the Add.
    check(
        "in x\nout c\nn0 Relu x -> a\nn1 Relu a -> b\nn2 Add b x -> c",
        "x[0,2] a[0,1] b[1,2] c[2,2]",
        [3, 400, 300, 300],
    );
    // A graph output produced early lives to the last step.
    check(
        "in x\nout a c\nn0 Relu x -> a\nn1 Relu a -> b\nn2 Relu b -> c",
        "x[0,0] a[0,2] b[1,2] c[2,2]",
        [3, 400, 300, 300],
    );
    // Constant folding: Constant, ConstantOfShape on an initializer, and nodes fed
    // only by those are weights, not steps; w is an initializer.
    check(
        "const w shp\nin x\nout y\nk Constant -> c\ncs ConstantOfShape shp -> z\nr Reshape z c -> wz\n\
         m Mul w wz -> w2\nconv Conv x w2 _ -> y",
        "x[0,0] y[0,0]",
        [1, 200, 200, 200],
    );
    // Dead outputs: the Dropout mask is read by nobody and is not a graph output.
    check(
        "in x\nout z\nd Dropout x -> y mask\nn Relu y -> z",
        "x[0,0] y[0,1] z[1,1]",
        [2, 300, 200, 200],
    );
    // Multi-output ops (Split): each output has its own lifetime.
    check(
        "in x\nout z\ns Split x -> a b\nn1 Relu b -> c\nn2 Add a c -> z",
        "x[0,0] a[0,2] b[0,1] c[1,2] z[2,2]",
        [3, 500, 300, 300],
    );
    // Sizes from shapes: 4-byte elements times the dims.
    check(
        "in x\nout y\nshape x 4 2 3\nshape y 2 5\nn Relu x -> y",
        "x[0,0] y[0,0]",
        [1, 34, 34, 34],
    );
}

#[test]
fn topological_order_is_stable() {
    // Already valid: kept as is even though n1 could run first.
    let p = plan(
        &build("in x\nout a b\nn0 Relu x -> a\nn1 Sigmoid x -> b"),
        &opts(Strategy::Naive),
    )
    .unwrap();
    let order: Vec<&str> = p.schedule.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(order, ["n0", "n1"]);
    // Out of order: producers first, otherwise the original order.
    let p = plan(
        &build("in x\nout d\nn3 Add b c -> d\nn2 Relu a -> c\nn0 Relu x -> a\nn1 Tanh a -> b"),
        &opts(Strategy::Naive),
    )
    .unwrap();
    let order: Vec<&str> = p.schedule.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(order, ["n0", "n2", "n1", "n3"]);
}

#[test]
fn structural_errors_name_what_is_wrong() {
    let err = |spec: &str| plan(&build(spec), &opts(Strategy::Naive)).unwrap_err();
    match err("in x\nout d\nn0 Relu x -> a\nn1 Add a c -> b\nn2 Relu b -> c\nn3 Relu c -> d") {
        LifetimeError::Cycle { nodes } => {
            let mut sorted = nodes.clone();
            sorted.sort();
            assert_eq!(sorted, ["n1", "n2"], "{nodes:?}");
        }
        e => panic!("expected a cycle, got {e}"),
    }
    match err("in x\nout a\nn0 Add a x -> a") {
        LifetimeError::Cycle { nodes } => assert_eq!(nodes, ["n0"]),
        e => panic!("expected a cycle, got {e}"),
    }
    let e = err("in x\nout b\nn0 Add x ghost -> b");
    assert!(
        matches!(&e, LifetimeError::UndefinedTensor { tensor, node } if tensor == "ghost" && node == "n0"),
        "{e}"
    );
    let e = err("in x\nout b\nn0 Relu x -> b\nn1 Relu x -> b");
    assert!(
        matches!(&e, LifetimeError::DuplicateProducer { tensor, first, second } if tensor == "b" && first == "n0" && second == "n1"),
        "{e}"
    );
    let e = err("in x\nout x2\nn0 Relu x -> x");
    assert!(
        matches!(&e, LifetimeError::DuplicateProducer { tensor, .. } if tensor == "x"),
        "{e}"
    );
    let e = err("in x\nout nothing\nn0 Relu x -> y");
    assert!(
        matches!(&e, LifetimeError::UndefinedTensor { tensor, .. } if tensor == "nothing"),
        "{e}"
    );
    let mut g = build("in x\nout y\nn0 Relu x -> y");
    g.nodes[0]
        .inputs
        .push(Some(memwarden_lifetime::ir::TensorId(99)));
    assert!(matches!(
        plan(&g, &opts(Strategy::Naive)),
        Err(LifetimeError::BadTensorId { id: 99, .. })
    ));
    // A body capturing a tensor id the enclosing graph does not have.
    let mut body = build("out o\nn Relu i -> o");
    let i = body.find_tensor("i").unwrap();
    body.captures = vec![(i, TensorId(99))];
    let mut g = build("in c\nout y");
    let (c, y) = (TensorId(0), TensorId(1));
    g.add_node(Node {
        name: "if".to_owned(),
        op: "If".to_owned(),
        inputs: vec![Some(c)],
        outputs: vec![y],
        subgraphs: vec![
            ("then_branch".to_owned(), body.clone()),
            ("else_branch".to_owned(), body),
        ],
    });
    let e = plan(&g, &opts(Strategy::Naive)).unwrap_err();
    assert!(
        matches!(&e, LifetimeError::BadTensorId { id: 99, context, .. } if context.contains("then_branch")),
        "{e}"
    );
}

#[test]
fn unknown_sizes_error_or_skip() {
    let spec = "in x\nout z\nunknown y\nshape z 4 N 16\nn0 Relu x -> y\nn1 Relu y -> z";
    let g = build(spec);
    let e = plan(&g, &opts(Strategy::Best)).unwrap_err();
    let LifetimeError::UnknownSizes { tensors } = &e else {
        panic!("{e}")
    };
    let listed: Vec<(&str, Option<&str>)> = tensors
        .iter()
        .map(|t| (t.name.as_str(), t.producer_op.as_deref()))
        .collect();
    assert_eq!(listed, [("y", Some("Relu")), ("z", Some("Relu"))]);
    assert!(e.to_string().contains("unbound symbol N"), "{e}");

    let skip = PlanOptions {
        unknown: Unknown::Skip,
        ..opts(Strategy::Best)
    };
    let p = plan(&g, &skip).unwrap();
    assert_eq!(lifetimes(&p), "x[0,0]");
    assert_eq!(p.skipped.len(), 2);

    let mut bound = skip.clone();
    bound.dims.insert("N".to_owned(), 3);
    let p = plan(&g, &bound).unwrap();
    assert_eq!(p.tensor("z").map(|t| t.bytes), Some(4 * 3 * 16));
}

#[test]
fn sizes_that_overflow_are_errors() {
    let g = build("in x\nout y\nshape y 8 4294967296 4294967296\nn Relu x -> y");
    assert!(
        matches!(plan(&g, &opts(Strategy::Naive)), Err(LifetimeError::SizeOverflow { tensor }) if tensor == "y")
    );
}

#[test]
fn alignment_rounds_offsets_not_sizes() {
    let g = build(
        "in x\nout d\nsize x 10\nsize a 30\nsize b 50\nn0 Relu x -> a\nn1 Add a x -> b\nn2 Relu b -> d",
    );
    for s in Strategy::ALL {
        let p = plan(
            &g,
            &PlanOptions {
                strategy: s,
                align: 64,
                ..PlanOptions::default()
            },
        )
        .unwrap();
        assert!(p.tensors.iter().all(|t| t.offset % 64 == 0), "{s}");
        assert_eq!(p.tensor("a").map(|t| t.bytes), Some(30));
        crate::util::brute_check(&p);
    }
    let e = plan(
        &g,
        &PlanOptions {
            align: 48,
            ..PlanOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, LifetimeError::InvalidAlignment { align: 48 }));
}

#[test]
fn json_output_has_the_documented_shape() {
    let p = plan(&build("in x\nout y\nn Relu x -> y"), &opts(Strategy::Best)).unwrap();
    let v = p.to_json();
    for key in [
        "model",
        "steps",
        "align",
        "strategy",
        "naive_bytes",
        "lower_bound_bytes",
        "arena_bytes",
        "tensors",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    assert_eq!(v["strategy"], "best");
    let t = &v["tensors"][1];
    assert_eq!(t["name"], "y");
    for key in ["bytes", "first_step", "last_step", "offset"] {
        assert!(t[key].is_u64(), "{key}");
    }
    assert!(t["alias_of"].is_null());
}

#[test]
fn strategy_names_round_trip() {
    for s in Strategy::ALL {
        assert_eq!(s.to_string().parse::<Strategy>().unwrap(), s);
    }
    assert_eq!(
        "greedy-size".parse::<Strategy>().unwrap(),
        Strategy::GreedyBySize
    );
    assert!(
        matches!("greedy".parse::<Strategy>(), Err(LifetimeError::UnknownStrategy { name }) if name == "greedy")
    );
}

/// The shared conventions on real graphs (converted from `../shared/data/onnx` with
/// `tests/data/onnx_to_json.py`): steps, tensors, naive, lower bound and greedy by
/// size equal the independent reference exactly, and best reaches the bound.
#[test]
fn reference_figures_of_real_graphs() {
    // name, steps, tensors, naive, LB, GBS (REFERENCE.txt, bytes, alignment 1).
    let cases = [
        (
            "onnxpkg_bvlc_alexnet",
            24,
            25,
            7_804_736,
            2_239_488,
            2_239_488,
        ),
        ("resnet18", 49, 50, 23_590_816, 6_422_528, 6_422_528),
        ("squeezenet1_1", 65, 66, 28_447_616, 6_308_352, 6_308_352),
        (
            "shufflenet_v2_x1_0_dynamo",
            173,
            187,
            30_397_504,
            2_408_448,
            2_408_448,
        ),
    ];
    for (name, steps, tensors, naive, lb, gbs) in cases {
        let path = format!("{}/tests/data/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let g = Graph::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let p = plan(&g, &opts(Strategy::GreedyBySize)).unwrap();
        assert_eq!(
            (
                p.steps,
                p.tensors.len(),
                p.naive_bytes,
                p.lower_bound_bytes,
                p.arena_bytes
            ),
            (steps, tensors, naive, lb, gbs),
            "{name}"
        );
        let best = plan(&g, &opts(Strategy::Best)).unwrap();
        assert_eq!(best.arena_bytes, lb, "{name}");
        crate::util::brute_check(&best);
    }
}

#[test]
fn analysis_without_planning() {
    let mut g = Graph::new("a");
    let x = g.add_tensor(Tensor::with_bytes("x", 8));
    let y = g.add_tensor(Tensor::with_bytes("y", 8));
    g.add_node(Node::new("", "Relu", &[x], &[y]));
    g.inputs = vec![x];
    g.outputs = vec![y];
    let a = memwarden_lifetime::analyze(&g, &PlanOptions::default()).unwrap();
    assert_eq!(a.steps[0].node, "Relu_0");
    assert_eq!((a.naive_bytes(), a.lower_bound_bytes()), (16, 16));

    // Each size fits 64 bits, their sum does not: the figures saturate (plan refuses).
    let huge = format!(
        "in x\nout y\nsize x {0}\nsize y {0}\nn Relu x -> y",
        u64::MAX / 2 + 1
    );
    let g = build(&huge);
    let a = memwarden_lifetime::analyze(&g, &PlanOptions::default()).unwrap();
    assert_eq!(
        (a.naive_bytes(), a.lower_bound_bytes()),
        (u64::MAX, u64::MAX)
    );
    assert!(matches!(
        plan(&g, &opts(Strategy::Naive)),
        Err(LifetimeError::SizeOverflow { .. })
    ));
}
