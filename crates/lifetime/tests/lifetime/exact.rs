//! The exact search (`Strategy::Exact`, and `best` past its cheap orders): optimal
//! against a brute force, capacity mode, generated perfect packings, determinism.

use std::time::Duration;

use memwarden_lifetime::{
    LifetimeError, Record, SearchBudget, Strategy, lower_bound, plan_records_budgeted, synth,
};
use proptest::prelude::{ProptestConfig, prop, prop_assert, prop_assert_eq, proptest};
use proptest::strategy::Strategy as _;

/// Enough effort that small instances finish, and a time cap that never trips first
/// (a debug build is slow).
fn budget(capacity: Option<u64>) -> SearchBudget {
    SearchBudget {
        effort: 2_000_000_000,
        time_cap: Duration::from_secs(120),
        capacity,
    }
}

/// The smallest height over every order of stacking each record on the highest top
/// of the records placed before it that it overlaps, offsets rounded up to `align`.
/// Every layout can be pushed down into one of these, so this is the optimum.
fn brute_force(records: &[Record], align: u64) -> u64 {
    fn go(
        records: &[Record],
        align: u64,
        offsets: &mut Vec<Option<u64>>,
        top: u64,
        best: &mut u64,
    ) {
        if top >= *best {
            return;
        }
        let Some(_) = offsets.iter().position(Option::is_none) else {
            *best = top;
            return;
        };
        for i in 0..records.len() {
            if offsets[i].is_some() {
                continue;
            }
            let at = records
                .iter()
                .zip(offsets.iter())
                .filter(|(r, o)| o.is_some() && r.overlaps(&records[i]) && r.bytes > 0)
                .map(|(r, o)| o.unwrap() + r.bytes)
                .max()
                .unwrap_or(0);
            let at = at.div_ceil(align) * align;
            offsets[i] = Some(at);
            go(
                records,
                align,
                offsets,
                top.max(at + records[i].bytes),
                best,
            );
            offsets[i] = None;
        }
    }
    let mut best = u64::MAX;
    go(records, align, &mut vec![None; records.len()], 0, &mut best);
    best
}

fn arb_small() -> impl proptest::strategy::Strategy<Value = Vec<Record>> {
    prop::collection::vec((0u64..40, 0usize..6, 0usize..4), 1..=7).prop_map(|v| {
        v.into_iter()
            .map(|(bytes, first, len)| Record::new(bytes, first, first + len))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn exact_is_optimal_on_small_instances(recs in arb_small(), align_pow in 0u32..3) {
        let align = 1u64 << align_pow;
        let optimum = brute_force(&recs, align);
        for strategy in [Strategy::Exact, Strategy::Best] {
            let l = plan_records_budgeted(&recs, strategy, align, &budget(None)).unwrap();
            prop_assert_eq!(l.arena_bytes, optimum, "{} on {:?}", strategy, recs);
            prop_assert!(l.optimal, "{} did not prove {} optimal on {:?}", strategy, optimum, recs);
        }
        // Capacity mode: the optimum is found, one byte less is proved impossible.
        let within = plan_records_budgeted(&recs, Strategy::Exact, align, &budget(Some(optimum))).unwrap();
        prop_assert!(within.arena_bytes <= optimum);
        if optimum > 0 {
            let below = plan_records_budgeted(&recs, Strategy::Exact, align, &budget(Some(optimum - 1)));
            let proved = matches!(below, Err(LifetimeError::NoLayoutWithin { proved: true, .. }));
            prop_assert!(proved, "capacity {} on {:?}: {:?}", optimum - 1, recs, below);
        }
    }
}

#[test]
fn minimalloc_example_has_height_twelve() {
    // MiniMalloc's five-buffer example: `[lower, upper)` as inclusive steps.
    let recs = [(0, 3, 4), (3, 9, 4), (0, 9, 4), (9, 21, 4), (0, 21, 4)]
        .map(|(lo, hi, size)| Record::new(size, lo, hi - 1));
    for strategy in [Strategy::Exact, Strategy::Best] {
        let l = plan_records_budgeted(&recs, strategy, 1, &budget(None)).unwrap();
        assert_eq!((l.arena_bytes, l.optimal), (12, true), "{strategy}");
    }
}

#[test]
fn perfect_packings_are_solved_exactly() {
    // A rectangle cut into pieces: the pieces fit back into the rectangle's height
    // exactly, with no byte to spare at any step.
    for pieces in [20, 40, 60] {
        for seed in 0..10 {
            let (recs, offsets) = synth::perfect_packing(seed, pieces, pieces / 4, 1 << 20);
            assert_eq!(recs.len(), pieces);
            assert_eq!(lower_bound(&recs), 1 << 20);
            assert!(
                recs.iter()
                    .zip(&offsets)
                    .all(|(r, &o)| o + r.bytes <= 1 << 20)
            );
            for capacity in [Some(1 << 20), None] {
                let l = plan_records_budgeted(&recs, Strategy::Exact, 1, &budget(capacity))
                    .unwrap_or_else(|e| panic!("{pieces} pieces, seed {seed}: {e}"));
                assert_eq!(l.arena_bytes, 1 << 20, "{pieces} pieces, seed {seed}");
                assert!(l.optimal);
            }
        }
    }
}

#[test]
fn a_capacity_below_the_lower_bound_is_refused_with_both_figures() {
    let recs = [Record::new(8, 0, 1), Record::new(8, 1, 2)];
    let err = plan_records_budgeted(&recs, Strategy::Best, 1, &budget(Some(15))).unwrap_err();
    assert!(matches!(
        err,
        LifetimeError::NoLayoutWithin {
            capacity: 15,
            lower_bound_bytes: 16,
            proved: true,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "proved infeasible: the lower bound is 16 > 15"
    );
    // The cheap baselines honour a capacity too.
    let apart = [Record::new(8, 0, 0), Record::new(8, 1, 1)];
    let err = plan_records_budgeted(&apart, Strategy::Naive, 1, &budget(Some(10))).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("no layout within 10 bytes found"),
        "{err}"
    );
}

#[test]
fn an_out_of_budget_search_says_so() {
    // A perfect packing the cheap orders miss, with almost no effort for the search.
    let (recs, _) = synth::perfect_packing(3, 120, 30, 1 << 20);
    let tiny = SearchBudget {
        effort: 1_000,
        ..budget(Some(1 << 20))
    };
    match plan_records_budgeted(&recs, Strategy::Exact, 1, &tiny) {
        Err(LifetimeError::NoLayoutWithin {
            proved: false,
            capacity,
            ..
        }) => {
            assert_eq!(capacity, 1 << 20);
        }
        Ok(l) => assert!(l.arena_bytes <= 1 << 20),
        Err(e) => panic!("unexpected {e}"),
    }
}

#[test]
fn exact_is_deterministic() {
    for seed in 0..5 {
        let recs = synth::random_records(seed, 60, 40);
        let b = SearchBudget {
            effort: 3_000_000,
            ..budget(None)
        };
        let one = plan_records_budgeted(&recs, Strategy::Exact, 8, &b).unwrap();
        let two = plan_records_budgeted(&recs, Strategy::Exact, 8, &b).unwrap();
        assert_eq!(one.offsets, two.offsets);
        assert_eq!(one.optimal, two.optimal);
        assert!(one.arena_bytes >= one.lower_bound_bytes);
    }
}
