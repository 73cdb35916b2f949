//! Shape inference against the exporters' `value_info`: every file is imported
//! once with its declared shapes only (inference off) and once with inference only
//! (`value_info` and output types ignored), and every activation the file declares
//! a shape for must come out of inference with that shape and element size.

use memwarden_lifetime::ir::{Dim, Graph};
use memwarden_lifetime::onnx::{self, ImportOptions};

use crate::common::{CONTROL_FLOW, SHARED, is_activation, read, show, tensors_by_name, walk};

/// How inference fared on one file.
#[derive(Debug, Default)]
struct Comparison {
    /// Activations with a declared shape that inference reproduced.
    agreed: usize,
    /// Declared shapes inference got wrong or could not find.
    mismatches: Vec<String>,
    /// Declared symbolic placeholders that inference pinned to a number.
    refined: Vec<String>,
    /// Activations with no declared shape that inference sized.
    filled: usize,
    /// Activations with an unknown shape after inference.
    unknown: Vec<String>,
}

/// Whether `inferred` is `declared` with some symbolic dimensions made numbers.
fn refines(declared: &[Dim], inferred: &[Dim]) -> bool {
    declared.len() == inferred.len()
        && declared
            .iter()
            .zip(inferred)
            .all(|(d, i)| d == i || matches!((d, i), (Dim::Sym(_), Dim::Known(_))))
}

fn compare(file: &str) -> Comparison {
    let bytes = read(file);
    let declared = onnx::import_bytes_with(
        file,
        &bytes,
        ImportOptions::default().with_shape_inference(false),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let inferred = onnx::import_bytes_with(
        file,
        &bytes,
        ImportOptions::default().with_value_info(false),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut graphs_d: Vec<(String, &Graph)> = Vec::new();
    walk(&declared, "", &mut |p, g| graphs_d.push((p.to_owned(), g)));
    let mut graphs_i: Vec<(String, &Graph)> = Vec::new();
    walk(&inferred, "", &mut |p, g| graphs_i.push((p.to_owned(), g)));
    assert_eq!(
        graphs_d.len(),
        graphs_i.len(),
        "{file}: both imports nest the same graphs"
    );
    let mut c = Comparison::default();
    for ((path, gd), (_, gi)) in graphs_d.iter().zip(&graphs_i) {
        let inferred_by_name = tensors_by_name(gi);
        for td in gd.tensors.iter().filter(|t| is_activation(t)) {
            let ti = inferred_by_name[td.name.as_str()];
            let at = format!("{file}{path}: `{}`", td.name);
            if ti.shape.is_none() {
                c.unknown.push(at.clone());
            }
            let Some(ds) = &td.shape else {
                c.filled += usize::from(ti.shape.is_some());
                continue;
            };
            let same_size = td.elem_bytes == ti.elem_bytes;
            match &ti.shape {
                Some(is) if is == ds && same_size => c.agreed += 1,
                Some(is) if refines(ds, is) && same_size => {
                    c.refined.push(format!(
                        "{at}: declared {}, inferred {}",
                        show(&td.shape),
                        show(&ti.shape)
                    ));
                }
                _ => c.mismatches.push(format!(
                    "{at}: declared {} x {} B, inferred {} x {} B",
                    show(&td.shape),
                    td.elem_bytes,
                    show(&ti.shape),
                    ti.elem_bytes
                )),
            }
        }
    }
    c
}

#[test]
fn inference_reproduces_value_info_on_every_shared_file() {
    let mut failures = Vec::new();
    for file in SHARED.iter().chain(&CONTROL_FLOW) {
        let c = compare(file);
        eprintln!(
            "{file}: {} shapes agree, {} refined, {} filled, {} unknown, {} mismatches",
            c.agreed,
            c.refined.len(),
            c.filled,
            c.unknown.len(),
            c.mismatches.len()
        );
        assert!(c.agreed > 0, "{file}: nothing compared");
        failures.extend(c.mismatches);
        failures.extend(
            c.unknown
                .into_iter()
                .map(|u| format!("{u}: unknown after inference")),
        );
        // Only the loop's output carries exporter placeholders (`Convy_dim_0`, ...).
        if *file != "loopy_loop.onnx" {
            failures.extend(
                c.refined
                    .into_iter()
                    .map(|r| format!("unexpected refinement: {r}")),
            );
        } else {
            assert_eq!(c.refined.len(), 1, "{file}: {:?}", c.refined);
            assert!(c.refined[0].contains("`y`: declared [Convy_dim_0, 4, Convy_dim_2, Convy_dim_3], inferred [1, 4, 56, 56]"), "{}", c.refined[0]);
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
