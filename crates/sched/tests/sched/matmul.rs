//! `batched_matmul` against a naive triple loop.

use memwarden_sched::{CacheInfo, MatmulShape, ParallelScheduler, SchedError};
use proptest::prelude::*;

/// `out[b] = a[b] · b[b]` the obvious way, in f64.
fn naive(shape: MatmulShape, a: &[f32], b: &[f32], shared_b: bool) -> Vec<f32> {
    let MatmulShape { batch, m, k, n } = shape;
    let mut out = vec![0.0; batch * m * n];
    for bi in 0..batch {
        let b_off = if shared_b { 0 } else { bi * k * n };
        for i in 0..m {
            for j in 0..n {
                let mut sum = 0.0f64;
                for p in 0..k {
                    sum += f64::from(a[bi * m * k + i * k + p]) * f64::from(b[b_off + p * n + j]);
                }
                out[bi * m * n + i * n + j] = sum as f32;
            }
        }
    }
    out
}

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn check(s: &ParallelScheduler, shape: MatmulShape, shared_b: bool) {
    let MatmulShape { batch, m, k, n } = shape;
    let a = values(batch * m * k, 1);
    let b = values(if shared_b { k * n } else { batch * k * n }, 2);
    let want = naive(shape, &a, &b, shared_b);
    let mut out = vec![f32::NAN; batch * m * n];
    s.batched_matmul(shape, &a, &b, &mut out)
        .expect("consistent shape");
    for (i, (got, want)) in out.iter().zip(&want).enumerate() {
        let tolerance = 1e-5 * (k as f32).max(1.0);
        assert!(
            (got - want).abs() <= tolerance,
            "{shape} (shared b: {shared_b}) element {i}: {got} vs {want}"
        );
    }
}

#[test]
fn products_match_the_naive_loop() {
    let shape = |batch, m, k, n| MatmulShape { batch, m, k, n };
    // A small L1d and L2 force several k and n tiles on modest sizes.
    let tiny_cache = CacheInfo {
        l1d: 8 << 10,
        l2: 64 << 10,
        l3: None,
        line: 64,
    };
    let schedulers = [
        ParallelScheduler::builder().jobs(1).build().expect("valid"),
        ParallelScheduler::builder().jobs(3).build().expect("valid"),
        ParallelScheduler::builder()
            .jobs(4)
            .cache(tiny_cache)
            .build()
            .expect("valid"),
    ];
    for s in &schedulers {
        for (sh, shared) in [
            (shape(1, 1, 1, 1), false),
            (shape(3, 5, 7, 9), false),       // every edge path
            (shape(2, 64, 128, 64), false),   // batch below jobs: row blocks
            (shape(16, 33, 40, 17), false),   // batch above jobs
            (shape(1, 130, 300, 257), false), // several tiles of k and n
            (shape(5, 8, 16, 8), true),       // one b shared by the batch
            (shape(4, 3, 0, 5), false),       // k = 0: zeros
            (shape(0, 3, 4, 5), false),       // empty batch
        ] {
            check(s, sh, shared);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn random_shapes_match_the_naive_loop(
        batch in 1usize..6, m in 1usize..40, k in 1usize..40, n in 1usize..40,
        jobs in 1usize..5, shared in any::<bool>(),
    ) {
        let s = ParallelScheduler::builder().jobs(jobs).build().expect("valid");
        check(&s, MatmulShape { batch, m, k, n }, shared);
    }
}

#[test]
fn inconsistent_operands_are_refused() {
    let s = ParallelScheduler::builder().jobs(2).build().expect("valid");
    let shape = MatmulShape {
        batch: 2,
        m: 2,
        k: 3,
        n: 4,
    };
    let (a, b, mut out) = (vec![0.0; 12], vec![0.0; 24], vec![0.0; 16]);
    assert!(s.batched_matmul(shape, &a, &b, &mut out).is_ok());
    assert!(
        s.batched_matmul(shape, &a, &b[..12], &mut out).is_ok(),
        "shared b"
    );
    let refused = |e: Result<(), SchedError>| match e {
        Err(SchedError::ShapeMismatch { operand, .. }) => operand,
        other => panic!("expected a shape mismatch, got {other:?}"),
    };
    assert_eq!(
        refused(s.batched_matmul(shape, &a[..11], &b, &mut out)),
        "a"
    );
    assert_eq!(
        refused(s.batched_matmul(shape, &a, &b[..13], &mut out)),
        "b"
    );
    assert_eq!(
        refused(s.batched_matmul(shape, &a, &b, &mut out[..15])),
        "out"
    );
    let huge = MatmulShape {
        batch: usize::MAX,
        m: 2,
        k: 2,
        n: 2,
    };
    assert!(matches!(
        s.batched_matmul(huge, &a, &b, &mut out),
        Err(SchedError::ShapeOverflow { .. })
    ));

    // The function form on the global scheduler.
    let mut out = [0.0; 4];
    memwarden_sched::batched_matmul(
        &[1.0, 2.0, 3.0, 4.0],
        &[1.0, 0.0, 0.0, 1.0],
        &mut out,
        1,
        2,
        2,
        2,
    )
    .expect("consistent");
    assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
}
