//! End to end with the planner: every shared file, imported and planned with
//! alignment 1, gives `REFERENCE.txt`'s figures exactly (steps, tensors, naive
//! bytes, lower bound, and greedy by size's arena), whether its shapes come from
//! `value_info` or from shape inference alone.

use memwarden_lifetime::onnx::{self, ImportOptions};
use memwarden_lifetime::{PlanOptions, Strategy, plan};

use crate::common::{SHARED, read, reference};

#[test]
fn planned_shared_files_match_the_reference_figures() {
    let refs = reference();
    let mut problems = Vec::new();
    for file in SHARED {
        let r = &refs[file];
        let bytes = read(file);
        for (how, opts) in [
            ("value_info", ImportOptions::default()),
            ("inference", ImportOptions::default().with_value_info(false)),
        ] {
            let g = onnx::import_bytes_with(file, &bytes, opts).unwrap_or_else(|e| panic!("{e}"));
            let options = PlanOptions {
                strategy: Strategy::GreedyBySize,
                align: 1,
                ..PlanOptions::default()
            };
            let p = plan(&g, &options).unwrap_or_else(|e| panic!("{file} ({how}): {e}"));
            let got = (
                p.steps,
                p.tensors.len(),
                p.naive_bytes,
                p.lower_bound_bytes,
                p.arena_bytes,
            );
            let want = (
                r.steps,
                r.tensors,
                r.naive_bytes,
                r.lower_bound_bytes,
                r.greedy_by_size_bytes,
            );
            if got != want {
                problems.push(format!(
                    "{file} ({how}): (steps, tensors, naive, LB, GBS) = {got:?}, REFERENCE.txt says {want:?}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
