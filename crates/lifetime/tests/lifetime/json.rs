//! The JSON graph format: round trips and errors that say where.

use memwarden_lifetime::LifetimeError;
use memwarden_lifetime::ir::{Dim, Graph, TensorKind};
use memwarden_lifetime::synth;

use crate::control_flow::{IF_GRAPH, LOOP_GRAPH};

#[test]
fn round_trips() {
    let mut graphs = vec![
        synth::random_dag(11, 80),
        Graph::from_json(IF_GRAPH).unwrap(),
        Graph::from_json(LOOP_GRAPH).unwrap(),
    ];
    graphs.push(crate::util::build(
        "in x\nout y\nshape x 2 N 3\nn0 Foo x _ -> y",
    ));
    for g in graphs {
        let text = serde_json::to_string(&g.to_json()).unwrap();
        assert_eq!(Graph::from_json(&text).unwrap(), g, "{}", g.name);
    }
}

#[test]
fn reads_every_tensor_form() {
    let g = Graph::from_json(
        r#"{"name": "forms", "tensors": [
        {"name": "a", "shape": [1, "N", 2], "dtype": "f16"},
        {"name": "b", "bytes": 10},
        {"name": "c", "shape": [3], "elem_bytes": 3},
        {"name": "d", "shape": null},
        {"name": "e", "shape": [2], "dtype": "int64", "constant": true}
      ], "nodes": [], "inputs": ["a"], "constants": ["c"]}"#,
    )
    .unwrap();
    assert_eq!(
        g.tensors[0].shape,
        Some(vec![Dim::Known(1), Dim::from("N"), Dim::Known(2)])
    );
    assert_eq!(g.tensors[0].elem_bytes, 2);
    assert_eq!(
        (g.tensors[1].elem_bytes, g.tensors[1].shape.clone()),
        (1, Some(vec![Dim::Known(10)]))
    );
    assert_eq!(g.tensors[2].kind, TensorKind::Constant);
    assert_eq!(g.tensors[3].shape, None);
    assert_eq!(
        (g.tensors[4].elem_bytes, g.tensors[4].kind),
        (8, TensorKind::Constant)
    );
}

#[test]
fn errors_name_the_problem() {
    let cases: [(&str, &str); 9] = [
        (
            r#"{"tensors": [], "nodes": [], "inptus": []}"#,
            "at graph.inptus: unknown key \"inptus\"",
        ),
        (
            r#"{"tensors": [{"name": "x", "bytes": 1}], "nodes": [{"op": "Relu", "inputs": ["x"], "outputs": ["y"]}]}"#,
            "at graph.nodes[0].outputs[0]: unknown tensor \"y\"",
        ),
        (
            r#"{"tensors": [{"name": "x", "bytes": 1}, {"name": "x", "bytes": 2}]}"#,
            "tensor \"x\" declared twice",
        ),
        (
            r#"{"tensors": [{"name": "x", "bytes": 1, "shape": [1]}]}"#,
            "at graph.tensors[0]: \"bytes\" excludes",
        ),
        (
            r#"{"tensors": [{"name": "x", "dtype": "f24"}]}"#,
            "at graph.tensors[0].dtype: unknown dtype \"f24\"",
        ),
        (
            r#"{"tensors": [{"name": "x", "shape": [1, -2]}]}"#,
            "at graph.tensors[0].shape[1]",
        ),
        (r#"{"tensors": [{"bytes": 3}]}"#, "missing key \"name\""),
        (
            r#"{"tensors": [], "nodes": [{"inputs": []}]}"#,
            "at graph.nodes[0]: missing key \"op\"",
        ),
        (r#"{"tensors": [}"#, "line 1 column"),
    ];
    for (text, expected) in cases {
        let e = Graph::from_json(text).unwrap_err();
        assert!(e.to_string().contains(expected), "{text}: {e}");
    }
    let e = Graph::from_json(r#"{"inputs": ["ghost"]}"#).unwrap_err();
    assert!(
        matches!(&e, LifetimeError::UnknownTensorName { name, at } if name == "ghost" && at == "graph.inputs[0]"),
        "{e}"
    );
    // A body may only capture what an enclosing graph declares.
    let e = Graph::from_json(r#"{"tensors": [{"name": "c", "bytes": 1}], "nodes": [{"op": "If", "inputs": ["c"], "outputs": [],
        "subgraphs": {"then_branch": {"nodes": [{"op": "Relu", "inputs": ["nowhere"], "outputs": []}]}}}]}"#).unwrap_err();
    assert!(
        e.to_string().contains(
            "graph.nodes[0].subgraphs.then_branch.nodes[0].inputs[0]: unknown tensor \"nowhere\""
        ),
        "{e}"
    );
}
