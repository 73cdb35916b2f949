//! The parallel scheduler the way the Python original was used: a function, a
//! configured object, a wrapped function, and a matrix helper, with results in input
//! order every time.
//!
//! 1. **Function.** `memwarden_sched::schedule(op, &data)` on the process-wide
//!    scheduler: a per-sample feature (mean and spread of a window) over 20 000 windows.
//! 2. **Object.** A [`ParallelScheduler`] built with a memory budget (each worker holds
//!    a 64 MiB buffer, the budget allows as many as there are CPUs, at most 4) runs the
//!    same map, then an in-place pass over a mutable buffer with
//!    [`for_each_chunk_mut`](ParallelScheduler::for_each_chunk_mut).
//! 3. **Wrapper.** [`ParallelScheduler::wrap`] lifts a per-item function to slices, in
//!    place of the original's `@parallelize` decorator; the [`ScheduleExt`] trait puts
//!    the same call on slices.
//! 4. **Pressure.** A pressure source at 0.5 halves the workers of the next call.
//! 5. **Matrices.** [`batched_matmul`](ParallelScheduler::batched_matmul): 64 products
//!    of 96 × 128 by 128 × 64, checked against a naive loop.
//!
//! Along the way it prints the caches it detected, the jobs it chose, how each call was
//! cut (probe, chunk size, chunks, workers) and a timing against a sequential loop. It
//! checks every result and fails if one is wrong.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release -p memwarden-examples --example parallel_scheduler_demo
//! ```

use std::sync::Arc;
use std::time::Instant;

use anyhow::ensure;
use memwarden_sched::{CacheInfo, MatmulShape, ParallelScheduler, ScheduleExt, available_jobs};

/// Values per window of the feature map.
const WINDOW: usize = 256;

fn main() -> anyhow::Result<()> {
    env_logger::init();
    let cache = CacheInfo::detect();
    println!(
        "caches: L1d {} KiB, L2 {} KiB, L3 {}, line {} B; available jobs: {}",
        cache.l1d >> 10,
        cache.l2 >> 10,
        cache
            .l3
            .map_or_else(|| "none".to_owned(), |b| format!("{} MiB", b >> 20)),
        cache.line,
        available_jobs()
    );

    // Windows of a synthetic signal, and the per-window feature both APIs compute.
    let windows: Vec<[f32; WINDOW]> = (0..20_000)
        .map(|w| std::array::from_fn(|i| ((w * WINDOW + i) as f32 * 0.001).sin()))
        .collect();
    let start = Instant::now();
    let expected: Vec<(f32, f32)> = windows.iter().map(mean_and_spread).collect();
    let sequential = start.elapsed();

    // 1. The function form, on the global scheduler. The first call starts its threads;
    // the second is the one timed.
    let start = Instant::now();
    let features = memwarden_sched::schedule(mean_and_spread, &windows);
    let first_call = start.elapsed();
    ensure!(features == expected, "the function form keeps input order");
    let start = Instant::now();
    let features = memwarden_sched::schedule(mean_and_spread, &windows);
    let parallel = start.elapsed();
    ensure!(features == expected, "the function form keeps input order");
    println!(
        "\n1. schedule(op, &data): {} windows, {:.2} ms vs {:.2} ms sequential ({:.2}x), on {} jobs \
         (first call, starting the threads: {:.2} ms)",
        windows.len(),
        parallel.as_secs_f64() * 1e3,
        sequential.as_secs_f64() * 1e3,
        sequential.as_secs_f64() / parallel.as_secs_f64(),
        memwarden_sched::global().jobs(),
        first_call.as_secs_f64() * 1e3,
    );
    print_run(memwarden_sched::global());

    // 2. The object form, its thread count bounded by a memory budget.
    let per_worker = 64u64 << 20;
    let sched = ParallelScheduler::builder()
        .per_worker_bytes(per_worker)
        .memory_budget(per_worker * available_jobs().min(4) as u64)
        .build()?;
    println!(
        "\n2. ParallelScheduler: {} jobs ({} MiB per worker, budget {} MiB)",
        sched.jobs(),
        per_worker >> 20,
        sched.memory_budget().unwrap_or(0) >> 20
    );
    let features = sched.schedule(mean_and_spread, &windows);
    ensure!(features == expected, "the object form keeps input order");
    print_run(&sched);

    let mut signal: Vec<f32> = windows.iter().flatten().copied().collect();
    sched.for_each_chunk_mut(&mut signal, |first, chunk| {
        for (i, x) in chunk.iter_mut().enumerate() {
            // Index-dependent, so a misplaced chunk would show.
            *x = *x * 0.5 + (first + i) as f32 * 1e-6;
        }
    });
    let check = windows.iter().flatten().enumerate().take(1000);
    for (i, &x) in check {
        ensure!(
            signal[i] == x * 0.5 + i as f32 * 1e-6,
            "element {i} in place"
        );
    }
    println!("   in place over {} values:", signal.len());
    print_run(&sched);

    // 3. The wrapper (the decorator's replacement) and the slice extension.
    let spread_of = sched.wrap(|w: &[f32; WINDOW]| mean_and_spread(w).1);
    let spreads = spread_of(&windows);
    ensure!(
        spreads.iter().zip(&expected).all(|(s, e)| *s == e.1),
        "the wrapper keeps input order"
    );
    let means = windows.par_schedule(&sched, |w| mean_and_spread(w).0);
    ensure!(
        means.iter().zip(&expected).all(|(m, e)| *m == e.0),
        "the extension keeps input order"
    );
    println!(
        "\n3. sched.wrap(f)(&data) and data.par_schedule(&sched, f): {} results each, in order",
        spreads.len()
    );

    // 4. Memory pressure halves the workers of the next call.
    let pressured = ParallelScheduler::builder()
        .jobs(sched.jobs())
        .build()?
        .with_pressure(Arc::new(|| 0.5));
    let _ = pressured.schedule(mean_and_spread, &windows);
    println!(
        "\n4. under pressure 0.5: {} of {} jobs",
        pressured.jobs_now(),
        pressured.jobs()
    );
    print_run(&pressured);

    // 5. Batched matrix products.
    let shape = MatmulShape {
        batch: 64,
        m: 96,
        k: 128,
        n: 64,
    };
    let a: Vec<f32> = (0..shape.batch * shape.m * shape.k)
        .map(|i| ((i % 17) as f32 - 8.0) * 0.125)
        .collect();
    let b: Vec<f32> = (0..shape.batch * shape.k * shape.n)
        .map(|i| ((i % 13) as f32 - 6.0) * 0.25)
        .collect();
    let mut out = vec![0.0; shape.batch * shape.m * shape.n];
    let start = Instant::now();
    sched.batched_matmul(shape, &a, &b, &mut out)?;
    let parallel = start.elapsed();
    let start = Instant::now();
    let naive = naive_matmul(shape, &a, &b);
    let sequential = start.elapsed();
    let worst = out
        .iter()
        .zip(&naive)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    ensure!(
        worst < 1e-3,
        "matmul differs from the naive loop by {worst}"
    );
    let flops = 2.0 * (shape.batch * shape.m * shape.k * shape.n) as f64;
    println!(
        "\n5. batched_matmul {shape}: {:.2} ms ({:.1} GFLOP/s) vs naive sequential {:.2} ms; \
         largest difference {worst:.1e}",
        parallel.as_secs_f64() * 1e3,
        flops / parallel.as_secs_f64() / 1e9,
        sequential.as_secs_f64() * 1e3,
    );
    println!("\nall results checked");
    Ok(())
}

/// Mean and standard deviation of one window.
fn mean_and_spread(window: &[f32; WINDOW]) -> (f32, f32) {
    let mean = window.iter().sum::<f32>() / WINDOW as f32;
    let var = window.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / WINDOW as f32;
    (mean, var.sqrt())
}

/// How the scheduler's last call cut its input.
fn print_run(sched: &ParallelScheduler) {
    if let Some(run) = sched.last_run() {
        let cost = run
            .item_cost
            .map_or_else(|| "not measured".to_owned(), |c| format!("{c:?}"));
        println!(
            "   {} items: probe {} (item cost {cost}), first chunk {} items, {} chunks, {} workers{}",
            run.items,
            run.probed,
            run.chunk,
            run.chunks,
            run.workers,
            if run.ran_inline() { " (inline)" } else { "" }
        );
    }
}

/// The textbook triple loop.
fn naive_matmul(shape: MatmulShape, a: &[f32], b: &[f32]) -> Vec<f32> {
    let MatmulShape { batch, m, k, n } = shape;
    let mut out = vec![0.0; batch * m * n];
    for t in 0..batch {
        for i in 0..m {
            for j in 0..n {
                out[t * m * n + i * n + j] = (0..k)
                    .map(|p| a[t * m * k + i * k + p] * b[t * k * n + p * n + j])
                    .sum();
            }
        }
    }
    out
}
