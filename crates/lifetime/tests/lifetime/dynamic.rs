//! Dynamic shapes: range tables, the plan for the maximum, and the bucket cache.

use std::collections::BTreeMap;

use memwarden_lifetime::{LifetimeError, Planner, Strategy, plan, plan_range};

use crate::util::{brute_check, build, opts};

const SPEC: &str = "in x\nout z\nshape x 4 N 64\nshape a 4 N 128\nshape b 4 N 64\nshape z 4 N 10\n\
                    n0 Conv x -> a\nn1 Relu a -> b\nn2 Add b x -> c\nshape c 4 N 64\nn3 Gemm c -> z";

#[test]
fn range_table_per_value() {
    let g = build(SPEC);
    let r = plan_range(&g, &opts(Strategy::Best), "N", 1..=8).unwrap();
    assert_eq!(
        r.rows.iter().map(|row| row.value).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    for row in &r.rows {
        let mut o = opts(Strategy::Best);
        o.dims.insert("N".to_owned(), row.value);
        let p = plan(&g, &o).unwrap();
        assert_eq!(
            (row.naive_bytes, row.lower_bound_bytes, row.arena_bytes),
            (p.naive_bytes, p.lower_bound_bytes, p.arena_bytes)
        );
        // Sizes scale with N here, so every figure is N times the figure at 1.
        assert_eq!(row.naive_bytes, row.value * r.rows[0].naive_bytes);
    }
    assert_eq!(r.plan.tensor("a").map(|t| t.bytes), Some(4 * 8 * 128));
    // The plan for the maximum is valid at every smaller value: shrink every tensor
    // to its size there and validate with the same offsets.
    for row in &r.rows {
        let mut o = opts(Strategy::Best);
        o.dims.insert("N".to_owned(), row.value);
        let small = plan(&g, &o).unwrap();
        let mut shrunk = r.plan.clone();
        for t in &mut shrunk.tensors {
            t.bytes = small.tensor(&t.name).unwrap().bytes;
        }
        shrunk.validate().unwrap();
        brute_check(&shrunk);
    }
}

#[test]
fn big_ranges_get_power_of_two_rows() {
    let r = plan_range(&build(SPEC), &opts(Strategy::GreedyBySize), "N", 3..=1000).unwrap();
    let values: Vec<u64> = r.rows.iter().map(|row| row.value).collect();
    assert_eq!(values, [3, 4, 8, 16, 32, 64, 128, 256, 512, 1000]);
    assert!(
        r.rows
            .windows(2)
            .all(|w| w[0].arena_bytes <= w[1].arena_bytes)
    );
}

#[test]
fn range_errors() {
    let g = build(SPEC);
    let (lo, hi) = (5, 2);
    assert!(
        matches!(plan_range(&g, &opts(Strategy::Best), "N", lo..=hi), Err(LifetimeError::BadRange { dim, .. }) if dim == "N")
    );
    let e = plan_range(&g, &opts(Strategy::Best), "S", 1..=2).unwrap_err();
    assert!(e.to_string().contains("its symbols: N"), "{e}");
}

#[test]
fn planner_caches_per_bucket() {
    let g = build(SPEC);
    let mut planner = Planner::new(&g, opts(Strategy::Best)).unwrap();
    assert_eq!(planner.symbols().collect::<Vec<_>>(), ["N"]);
    let dims = |n: u64| BTreeMap::from([("N".to_owned(), n)]);
    let first = planner.plan_for(&dims(5)).unwrap().clone();
    assert_eq!(
        first.tensor("a").map(|t| t.bytes),
        Some(4 * 8 * 128),
        "bucket 8"
    );
    assert_eq!(planner.plans_made(), 1);
    // 6, 7 and 8 are in the same bucket: lookups, the same plan.
    for n in [6, 7, 8, 5] {
        assert_eq!(planner.plan_for(&dims(n)).unwrap(), &first);
    }
    assert_eq!((planner.plans_made(), planner.cached()), (1, 1));
    planner.plan_for(&dims(9)).unwrap();
    planner.plan_for(&dims(1)).unwrap();
    assert_eq!((planner.plans_made(), planner.cached()), (3, 3));
    assert_eq!(planner.bucket(&dims(0)), dims(1));
}
