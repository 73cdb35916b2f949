//! Every shared graph imports, with the node count of `REFERENCE.txt`, its
//! initializers as constants, unique node names and fully known activations.

use std::collections::HashSet;

use memwarden_lifetime::ir::TensorKind;
use memwarden_lifetime::onnx;

use crate::common::{CONTROL_FLOW, SHARED, data_dir, read, reference, walk};

/// Initializers per shared file, counted in the files.
const INITIALIZERS: [(&str, usize); 12] = [
    ("googlenet.onnx", 76),
    ("mobilenet_v2_dynamo.onnx", 57),
    ("mobilenet_v3_large.onnx", 83),
    ("onnxpkg_bvlc_alexnet.onnx", 17),
    ("onnxpkg_inception_v2.onnx", 486),
    ("onnxpkg_squeezenet.onnx", 52),
    ("onnxpkg_vgg19.onnx", 39),
    ("resnet18.onnx", 26),
    ("resnet50_dynamo.onnx", 57),
    ("shufflenet_v2_x1_0_dynamo.onnx", 65),
    ("squeezenet1_1.onnx", 34),
    ("vit_b_16_dynamo.onnx", 103),
];

#[test]
fn every_shared_file_imports_with_the_reference_counts() {
    let refs = reference();
    assert_eq!(
        refs.len(),
        SHARED.len(),
        "REFERENCE.txt covers every shared file"
    );
    for (file, initializers) in INITIALIZERS {
        let g = onnx::import_file(&data_dir().join(file)).unwrap_or_else(|e| panic!("{e}"));
        let r = &refs[file];
        assert_eq!(g.nodes.len(), r.nodes, "{file}: nodes");
        let constants = g
            .tensors
            .iter()
            .filter(|t| t.kind == TensorKind::Constant)
            .count();
        assert_eq!(
            constants, initializers,
            "{file}: initializers are the constants"
        );
        assert_eq!(
            g.inputs.len(),
            1,
            "{file}: one activation input (initializers listed as inputs are constants)"
        );
        assert_eq!(g.outputs.len(), 1, "{file}: one output");
        assert!(
            g.captures.is_empty(),
            "{file}: a top-level graph captures nothing"
        );
        let mut names = HashSet::new();
        for n in &g.nodes {
            assert!(
                !n.name.is_empty() && names.insert(n.name.as_str()),
                "{file}: node name `{}` empty or repeated",
                n.name
            );
            for id in n.inputs.iter().flatten().chain(&n.outputs) {
                assert!(
                    id.index() < g.tensors.len(),
                    "{file}: node `{}` refers past the tensor table",
                    n.name
                );
            }
        }
        let mut tensor_names = HashSet::new();
        for t in &g.tensors {
            assert!(
                tensor_names.insert(t.name.as_str()),
                "{file}: tensor `{}` twice",
                t.name
            );
            assert!(t.elem_bytes > 0, "{file}: `{}` has no element size", t.name);
            assert!(
                t.shape.is_some(),
                "{file}: `{}` has an unknown shape",
                t.name
            );
        }
    }
}

#[test]
fn control_flow_files_import() {
    for file in CONTROL_FLOW {
        let g = onnx::import_bytes(file, &read(file)).unwrap_or_else(|e| panic!("{e}"));
        walk(&g, "", &mut |path, g| {
            for t in &g.tensors {
                assert!(
                    t.shape.is_some() && t.elem_bytes > 0,
                    "{file}{path}: `{}` is not sized",
                    t.name
                );
            }
        });
    }
}

#[test]
fn unnamed_nodes_are_named_after_op_and_position() {
    // The onnx-package graphs leave node names empty.
    let g = onnx::import_bytes("alexnet", &read("onnxpkg_bvlc_alexnet.onnx")).expect("imports");
    assert_eq!(g.nodes[0].name, "ConstantOfShape_0");
    assert_eq!(g.nodes[1].name, "ConstantOfShape_1");
}

#[test]
fn inputs_that_are_initializers_are_constants() {
    // alexnet lists its 17 initializers among its 18 graph inputs.
    let g = onnx::import_bytes("alexnet", &read("onnxpkg_bvlc_alexnet.onnx")).expect("imports");
    let input = &g.tensors[g.inputs[0].index()];
    assert_eq!(input.name, "data_0");
    let dummy = g
        .tensors
        .iter()
        .find(|t| t.name == "OC2_DUMMY_1")
        .expect("the reshape target");
    assert_eq!(dummy.kind, TensorKind::Constant);
}

#[test]
fn the_graph_is_named_after_the_model_or_the_file() {
    let g = onnx::import_bytes("x.onnx", &read("resnet18.onnx")).expect("imports");
    assert_eq!(g.name, "main_graph");
}
