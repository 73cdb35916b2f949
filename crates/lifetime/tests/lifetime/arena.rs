//! Materialisation: one aligned arena, per-step slices that are disjoint and
//! writable, aliases sharing bytes.

use memwarden_lifetime::{Arena, LifetimeError, Plan, PlanOptions, Strategy, plan, synth};

use crate::util::build;

/// Fills every live tensor at every step with a pattern of its own, then checks that
/// each still holds it: if two live slices overlapped, one write would clobber the
/// other.
fn walk(plan: &Plan, arena: &mut Arena) {
    for s in 0..plan.steps {
        let mut view = arena.step(s).unwrap();
        assert_eq!(view.step(), s);
        let names: Vec<String> = view.names().map(str::to_owned).collect();
        let expected: Vec<&str> = plan
            .tensors
            .iter()
            .filter(|t| t.first_step <= s && s <= t.last_step)
            .map(|t| t.name.as_str())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        let mut want: Vec<&str> = expected.clone();
        want.sort_unstable();
        assert_eq!(sorted, want, "live at step {s}");
        let mut k = 0u8;
        for (_, bytes) in view.iter_mut() {
            k = k.wrapping_add(1);
            bytes.fill(k);
        }
        let mut k = 0u8;
        for (name, bytes) in view.iter_mut() {
            k = k.wrapping_add(1);
            assert!(
                bytes.iter().all(|&b| b == k),
                "{name} was overwritten at step {s}"
            );
        }
        for name in &names {
            let len = view.get(name).unwrap().len() as u64;
            assert_eq!(Some(len), plan.tensor(name).map(|t| t.bytes));
        }
    }
}

/// The synthetic graph with every tensor a thousandth of its size (odd sizes
/// included), so that filling every live tensor at every step stays quick.
fn shrink(mut g: memwarden_lifetime::ir::Graph) -> memwarden_lifetime::ir::Graph {
    for t in &mut g.tensors {
        let bytes = t.elem_bytes
            * t.shape
                .iter()
                .flatten()
                .map(|d| match d {
                    memwarden_lifetime::ir::Dim::Known(k) => *k,
                    memwarden_lifetime::ir::Dim::Sym(_) => 1,
                })
                .product::<u64>();
        let kind = t.kind;
        *t = memwarden_lifetime::ir::Tensor::with_bytes(t.name.clone(), bytes / 1000 + 1);
        t.kind = kind;
    }
    g
}

#[test]
fn live_slices_are_disjoint_and_writable() {
    for (seed, inplace) in [(1, false), (2, true), (3, false)] {
        let g = shrink(synth::random_dag(seed, 60));
        let p = plan(
            &g,
            &PlanOptions {
                inplace,
                search_effort: 200_000,
                ..PlanOptions::default()
            },
        )
        .unwrap();
        let mut arena = Arena::new(&p).unwrap();
        assert_eq!(arena.len() as u64, p.arena_bytes);
        assert_eq!(arena.as_slice().as_ptr() as usize % 64, 0);
        walk(&p, &mut arena);
    }
}

#[test]
fn in_place_tensors_share_their_bytes() {
    let g = build("in x\nout z\nn0 Conv x -> a\nn1 Relu a -> b\nn2 Conv b -> z");
    let p = plan(
        &g,
        &PlanOptions {
            inplace: true,
            ..PlanOptions::default()
        },
    )
    .unwrap();
    let mut arena = Arena::new(&p).unwrap();
    let mut step = arena.step(1).unwrap();
    step.get_mut("a").unwrap().fill(9);
    assert!(
        step.get("b").unwrap().iter().all(|&v| v == 9),
        "b is a's buffer"
    );
    assert_eq!(step.len(), 1);
    assert!(matches!(
        step.get_many_mut(["a", "b"]),
        Err(LifetimeError::Arena { .. })
    ));
    assert!(
        matches!(step.get_many_mut(["a", "x"]), Err(LifetimeError::Arena { problem }) if problem.contains("not live"))
    );
    let mut step = arena.step(2).unwrap();
    let [b, z] = step.get_many_mut(["b", "z"]).unwrap();
    z.copy_from_slice(b);
    assert!(matches!(arena.step(3), Err(LifetimeError::Arena { .. })));
}

#[test]
fn a_tampered_plan_is_refused() {
    let g = build("in x\nout z\nn0 Conv x -> a\nn1 Conv a -> z");
    let mut p = plan(&g, &PlanOptions::default()).unwrap();
    let a = p.tensors.iter().position(|t| t.name == "a").unwrap();
    let z = p.tensors.iter().position(|t| t.name == "z").unwrap();
    p.tensors[z].offset = p.tensors[a].offset;
    assert!(matches!(
        Arena::new(&p),
        Err(LifetimeError::InvalidPlan { .. })
    ));
}

#[cfg(feature = "pool")]
#[test]
fn arena_from_the_pool() {
    let pool = memwarden_pool::MemoryPool::new();
    let g = shrink(synth::random_dag(4, 40));
    let p = plan(
        &g,
        &PlanOptions {
            strategy: Strategy::GreedyBySize,
            align: 256,
            ..PlanOptions::default()
        },
    )
    .unwrap();
    let mut arena = Arena::from_pool(&p, &pool).unwrap();
    assert_eq!(arena.as_slice().as_ptr() as usize % 256, 0);
    walk(&p, &mut arena);
    assert_eq!(
        pool.stats().allocated.current,
        p.arena_bytes.next_multiple_of(512)
    );
    drop(arena);
    assert_eq!(pool.stats().allocated.current, 0);
}

#[test]
fn empty_graph_arena() {
    let g = build("in x\nout x");
    let p = plan(
        &g,
        &PlanOptions {
            strategy: Strategy::Naive,
            ..PlanOptions::default()
        },
    )
    .unwrap();
    assert_eq!(p.steps, 0);
    let mut arena = Arena::new(&p).unwrap();
    assert_eq!(arena.step(0).unwrap().names().collect::<Vec<_>>(), ["x"]);
}

#[test]
fn empty_tensors_get_empty_slices_beside_live_buffers() {
    // `e` holds no bytes; every planner may put it at the offset of `x`, which lives
    // at the same steps. That is a valid plan, and the arena must hand it out.
    let g = build("in x\nout y\nsize e 0\nn0 Shape x -> e\nn1 Add x e -> y");
    for strategy in Strategy::ALL {
        let p = plan(
            &g,
            &PlanOptions {
                strategy,
                ..PlanOptions::default()
            },
        )
        .unwrap();
        let mut arena = Arena::new(&p).unwrap();
        walk(&p, &mut arena);
        let mut step = arena.step(1).unwrap();
        let [x, e, y] = step.get_many_mut(["x", "e", "y"]).unwrap();
        assert_eq!((x.len(), e.len(), y.len()), (100, 0, 100), "{strategy}");
    }
}
