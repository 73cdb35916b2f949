//! Bad input gets an error that names the file and the problem, never a panic.

use memwarden_lifetime::onnx::{self, ImportOptions, OnnxError};

use crate::common::{data_dir, read};
use crate::encode::{
    GraphSpec, Msg, STRING, attr_float, fvalue, model, model_with, named_node, node, value,
};

/// Imports `bytes` as `name`, expecting an error whose message names the file.
fn expect_err(name: &str, bytes: &[u8]) -> OnnxError {
    match onnx::import_bytes(name, bytes) {
        Ok(_) => panic!("{name}: imported"),
        Err(e) => {
            assert!(e.to_string().contains(name), "`{e}` does not name {name}");
            e
        }
    }
}

/// A tiny valid model: x -> Relu -> y.
fn relu_graph() -> GraphSpec {
    GraphSpec {
        nodes: vec![named_node("relu", "Relu", &["x"], &["y"], &[])],
        inputs: vec![fvalue("x", &["1", "4"])],
        outputs: vec![fvalue("y", &["1", "4"])],
        ..GraphSpec::default()
    }
}

#[test]
fn the_tiny_model_imports() {
    let g = onnx::import_bytes("tiny.onnx", &model(&relu_graph().build("tiny"))).expect("imports");
    assert_eq!(g.nodes.len(), 1);
}

#[test]
fn random_bytes_are_refused() {
    // A fixed linear congruential sequence: varied bytes, same every run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for len in [1usize, 2, 7, 64, 1000, 65_536] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 56) as u8
            })
            .collect();
        expect_err(&format!("random-{len}.onnx"), &bytes);
    }
}

#[test]
fn an_empty_file_is_not_a_model() {
    let e = expect_err("empty.onnx", &[]);
    assert!(
        matches!(e, OnnxError::MissingGraph { ir_version: 0, .. }),
        "{e}"
    );
}

#[test]
fn truncated_files_fail_cleanly_at_every_cut() {
    let bytes = read("resnet18.onnx");
    let mut errors = 0;
    let cuts: Vec<usize> = (1..200).chain((200..bytes.len()).step_by(61)).collect();
    for &cut in &cuts {
        let name = format!("resnet18.onnx[..{cut}]");
        match onnx::import_bytes(&name, &bytes[..cut]) {
            Err(e) => {
                assert!(e.to_string().contains(&name), "`{e}` does not name {name}");
                errors += 1;
            }
            // A cut between two top-level fields leaves a shorter, valid message.
            Ok(g) => assert!(g.nodes.len() <= 91),
        }
    }
    assert!(
        errors > cuts.len() * 9 / 10,
        "{errors} of {} cuts refused",
        cuts.len()
    );
    let e = expect_err("cut.onnx", &bytes[..bytes.len() / 2]);
    assert!(matches!(e, OnnxError::Decode { .. }), "{e}");
    assert!(e.to_string().contains("not a valid ONNX file"), "{e}");
}

#[test]
fn a_protobuf_that_is_not_a_model_is_refused() {
    // A TensorProto: dims=[2, 3], data_type=1, name="w".
    let tensor = Msg::default().int(1, 2).int(1, 3).int(2, 1).str(8, "w");
    let e = expect_err("tensor.pb", &tensor.0);
    assert!(
        matches!(e, OnnxError::Decode { .. } | OnnxError::MissingGraph { .. }),
        "{e}"
    );
    // A bare GraphProto.
    let graph = relu_graph().build("g");
    expect_err("graph.pb", &graph.0);
}

#[test]
fn unsupported_ir_versions_are_refused() {
    for ir in [0, 1, 2, 12, 99, -1] {
        let e = expect_err("old.onnx", &model_with(ir, 17, &relu_graph().build("g")));
        assert!(
            matches!(e, OnnxError::UnsupportedIrVersion { ir_version, .. } if ir_version == ir),
            "{e}"
        );
        assert!(e.to_string().contains(&format!("IR version {ir}")), "{e}");
    }
    // A real file with its IR version (the first field) rewritten.
    let mut bytes = read("resnet18.onnx");
    assert_eq!(
        &bytes[..2],
        &[0x08, 0x08],
        "resnet18.onnx starts with ir_version = 8"
    );
    bytes[1] = 0x63;
    let e = expect_err("resnet18-ir99.onnx", &bytes);
    assert!(
        matches!(e, OnnxError::UnsupportedIrVersion { ir_version: 99, .. }),
        "{e}"
    );
}

#[test]
fn a_missing_input_names_the_tensor_and_the_node() {
    let mut g = relu_graph();
    g.nodes.push(node("Add", &["y", "nowhere"], &["z"], &[]));
    let e = expect_err("missing.onnx", &model(&g.build("g")));
    assert_eq!(
        e.to_string(),
        "`missing.onnx`: missing input `nowhere` of node `Add_1` (nothing defines it)"
    );
    // Also inside a body.
    let body = GraphSpec {
        nodes: vec![named_node("inner", "Relu", &["ghost"], &["o"], &[])],
        outputs: vec![fvalue("o", &["1"])],
        ..GraphSpec::default()
    }
    .build("then");
    let mut g = relu_graph();
    g.inputs.push(value("c", crate::encode::BOOL, Some(&[])));
    g.nodes.push(node(
        "If",
        &["c"],
        &["z"],
        &[
            crate::encode::attr_graph("then_branch", &body),
            crate::encode::attr_graph("else_branch", &body),
        ],
    ));
    let e = expect_err("missing-in-body.onnx", &model(&g.build("g")));
    assert!(
        matches!(&e, OnnxError::MissingInput { node, input, .. } if node == "inner" && input == "ghost"),
        "{e}"
    );
}

#[test]
fn a_missing_graph_output_is_refused() {
    let mut g = relu_graph();
    g.outputs.push(fvalue("nothing", &["1"]));
    let e = expect_err("out.onnx", &model(&g.build("g")));
    assert!(
        matches!(&e, OnnxError::MissingOutput { output, .. } if output == "nothing"),
        "{e}"
    );
}

#[test]
fn a_tensor_defined_twice_is_refused() {
    let mut g = relu_graph();
    g.nodes.push(node("Relu", &["x"], &["y"], &[]));
    let e = expect_err("dup.onnx", &model(&g.build("g")));
    assert!(
        matches!(&e, OnnxError::DuplicateTensor { tensor, .. } if tensor == "y"),
        "{e}"
    );
}

#[test]
fn an_attribute_of_the_wrong_kind_is_refused() {
    let mut g = relu_graph();
    g.nodes.push(named_node(
        "cat",
        "Concat",
        &["y", "y"],
        &["z"],
        &[attr_float("axis", 1.0)],
    ));
    let e = expect_err("attr.onnx", &model(&g.build("g")));
    assert_eq!(
        e.to_string(),
        "`attr.onnx`: attribute `axis` of node `cat` is float, expected int"
    );
    // Without shape inference the attribute is never read, and the file imports.
    let opts = ImportOptions::default().with_shape_inference(false);
    assert!(onnx::import_bytes_with("attr.onnx", &model(&g.build("g")), opts).is_ok());
}

#[test]
fn unsupported_data_types_are_refused() {
    let mut g = relu_graph();
    g.inputs.push(value("text", STRING, Some(&["3"])));
    let e = expect_err("strings.onnx", &model(&g.build("g")));
    assert!(
        matches!(&e, OnnxError::UnsupportedDataType { tensor, data_type: 8, .. } if tensor == "text"),
        "{e}"
    );
    assert!(e.to_string().contains("string"), "{e}");
    // An initializer of an unknown type code.
    let mut g = relu_graph();
    g.initializers
        .push(Msg::default().int(1, 2).int(2, 99).str(8, "odd"));
    let e = expect_err("odd.onnx", &model(&g.build("g")));
    assert!(
        matches!(&e, OnnxError::UnsupportedDataType { data_type: 99, .. }),
        "{e}"
    );
}

#[test]
fn negative_initializer_dims_are_refused() {
    let mut g = relu_graph();
    g.initializers
        .push(Msg::default().int(1, -2).int(2, 1).str(8, "neg"));
    let e = expect_err("neg.onnx", &model(&g.build("g")));
    assert!(
        matches!(&e, OnnxError::InvalidTensor { tensor, .. } if tensor == "neg"),
        "{e}"
    );
}

#[test]
fn an_unreadable_path_is_named() {
    let path = data_dir().join("no-such-file.onnx");
    let e = onnx::import_file(&path).expect_err("no such file");
    assert!(matches!(e, OnnxError::Read { .. }));
    assert!(e.to_string().contains("no-such-file.onnx"), "{e}");
}
