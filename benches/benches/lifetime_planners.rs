//! memwarden-lifetime's planners against each other and against the lower bound:
//! TFLite's greedy by size and greedy by breadth (the peers, implemented in the crate
//! as published) and `best`, on seeded random graphs.
//!
//! Run with `cargo bench -p memwarden-benches --bench lifetime_planners`. Under `cargo
//! test --benches` (no `--bench` argument) the suite is 24 graphs and the timings run
//! a few times: the figures print, but are a smoke test, not a measurement.
//!
//! 1. **Random DAGs.** `synth::random_dag(seed, nodes)` for seeds `0..1000` and 20 to
//!    400 nodes: CNN-like graphs with DenseNet-style concatenation blocks, inception
//!    branches, residual blocks and long skips. Every graph is planned with each
//!    strategy at alignment 1 (so arena / lower bound measures the planner alone); the
//!    table gives mean and worst arena / LB, how often each reaches the bound, and how
//!    many graphs `best` beats greedy by size on.
//! 2. **Random records.** 200 sets of 300 records with random sizes and spans
//!    (`synth::random_records`): harder than graphs, since nothing ties sizes to
//!    lifetimes.
//! 3. **Timing** on the largest synthetic graph (about 500 tensors): `plan()` per
//!    strategy (analysis, placement, validation) and placement alone
//!    (`plan_records`), median of repeated runs.
//!
//! Goals from the issue: `best` strictly better than greedy by size on average over
//! the 1 000 graphs and never worse on any; greedy by size under 1 ms on a graph of
//! about 500 tensors. (The real ONNX graphs are measured by the `plan` CLI and the
//! lifetime crate's tests.)

use memwarden_benches::report::{self, Ratios};
use std::hint::black_box;
use std::time::{Duration, Instant};

use memwarden_lifetime::{
    PlanOptions, Record, SearchBudget, Strategy, plan, plan_records_budgeted, synth,
};

/// The strategies compared, peers first.
const COMPARED: [Strategy; 3] = [
    Strategy::GreedyBySize,
    Strategy::GreedyByBreadth,
    Strategy::Best,
];

/// Arena / LB over a suite, per strategy.
#[derive(Default, Clone, Copy)]
struct Quality {
    sum: f64,
    worst: f64,
    at_bound: usize,
    time: Duration,
    max_time: Duration,
}

impl Quality {
    fn add(&mut self, arena: u64, lower: u64, time: Duration) {
        let r = if lower == 0 {
            1.0
        } else {
            arena as f64 / lower as f64
        };
        self.sum += r;
        self.worst = self.worst.max(r);
        self.at_bound += usize::from(arena == lower);
        self.time += time;
        self.max_time = self.max_time.max(time);
    }
}

struct Suite {
    quality: [Quality; 3],
    count: usize,
    best_wins: usize,
    best_losses: usize,
}

fn print_suite(title: &str, s: &Suite) {
    println!("\n{title}");
    println!("| strategy | mean arena/LB | worst arena/LB | at LB | mean time | max time |");
    println!("|---|---|---|---|---|---|");
    for (strategy, q) in COMPARED.iter().zip(&s.quality) {
        println!(
            "| {strategy} | {:.4} | {:.4} | {}/{} | {:.3} ms | {:.3} ms |",
            q.sum / s.count as f64,
            q.worst,
            q.at_bound,
            s.count,
            q.time.as_secs_f64() * 1e3 / s.count as f64,
            q.max_time.as_secs_f64() * 1e3
        );
    }
    println!(
        "best beats greedy-size on {} of {} ({} worse)",
        s.best_wins, s.count, s.best_losses
    );
}

fn dag_suite(count: u64, max_nodes: usize) -> Suite {
    let mut suite = Suite {
        quality: [Quality::default(); 3],
        count: count as usize,
        best_wins: 0,
        best_losses: 0,
    };
    for seed in 0..count {
        let nodes = 20 + (seed as usize * 7919) % (max_nodes - 19);
        let g = synth::random_dag(seed, nodes);
        let mut arenas = [0u64; 3];
        for (k, strategy) in COMPARED.into_iter().enumerate() {
            let opts = PlanOptions {
                strategy,
                align: 1,
                ..PlanOptions::default()
            };
            let p = plan(&g, &opts).expect("synthetic graphs plan");
            suite.quality[k].add(p.arena_bytes, p.lower_bound_bytes, p.planning_time);
            arenas[k] = p.arena_bytes;
        }
        suite.best_wins += usize::from(arenas[2] < arenas[0]);
        suite.best_losses += usize::from(arenas[2] > arenas[0]);
    }
    suite
}

fn record_suite(count: u64, budget: &SearchBudget) -> Suite {
    let mut suite = Suite {
        quality: [Quality::default(); 3],
        count: count as usize,
        best_wins: 0,
        best_losses: 0,
    };
    for seed in 0..count {
        let recs = synth::random_records(seed, 300, 200);
        let mut arenas = [0u64; 3];
        for (k, strategy) in COMPARED.into_iter().enumerate() {
            let t = Instant::now();
            let l = plan_records_budgeted(&recs, strategy, 1, budget).expect("records plan");
            suite.quality[k].add(l.arena_bytes, l.lower_bound_bytes, t.elapsed());
            arenas[k] = l.arena_bytes;
        }
        suite.best_wins += usize::from(arenas[2] < arenas[0]);
        suite.best_losses += usize::from(arenas[2] > arenas[0]);
    }
    suite
}

/// Median time of `f` over `runs` runs.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let started = Instant::now();
    let (graphs, max_nodes, record_sets, runs) = if full {
        (1000, 400, 200, 51)
    } else {
        (24, 80, 4, 3)
    };
    println!(
        "lifetime_planners: {graphs} random DAGs (20..{max_nodes} nodes), {record_sets} random record sets, \
         alignment 1, best with the default budget"
    );

    let dags = dag_suite(graphs, max_nodes);
    print_suite(&format!("random DAGs ({graphs})"), &dags);
    let rec_suite = record_suite(record_sets, &SearchBudget::default());
    print_suite(
        &format!("random records ({record_sets} sets of 300)"),
        &rec_suite,
    );

    // Timing on the largest synthetic graph.
    let big = synth::random_dag(4242, if full { 480 } else { 120 });
    let probe = plan(&big, &PlanOptions::default()).expect("the big graph plans");
    println!(
        "\ntiming on {} ({} nodes, {} tensors, {} steps), median of {runs}:",
        big.name,
        big.nodes.len(),
        probe.tensors.len(),
        probe.steps
    );
    println!("| strategy | plan() | placement only | arena/LB |");
    println!("|---|---|---|---|");
    let records: Vec<Record> = probe
        .tensors
        .iter()
        .map(|t| Record::new(t.bytes, t.first_step, t.last_step))
        .collect();
    let mut gbs_placement = Duration::ZERO;
    for strategy in Strategy::ALL {
        let opts = PlanOptions {
            strategy,
            align: 1,
            ..PlanOptions::default()
        };
        let mut last = None;
        let whole = median(runs, || {
            last = Some(plan(black_box(&big), &opts).expect("plans"));
        });
        let placement = median(runs, || {
            black_box(
                plan_records_budgeted(black_box(&records), strategy, 1, &SearchBudget::default())
                    .expect("places"),
            );
        });
        if strategy == Strategy::GreedyBySize {
            gbs_placement = placement;
        }
        let p = last.expect("ran at least once");
        println!(
            "| {strategy} | {:.3} ms | {:.3} ms | {:.4} |",
            whole.as_secs_f64() * 1e3,
            placement.as_secs_f64() * 1e3,
            p.arena_bytes as f64 / p.lower_bound_bytes as f64
        );
    }

    let mean = |q: &Quality| q.sum / dags.count as f64;
    let (gbs, best) = (&dags.quality[0], &dags.quality[2]);
    let goals = vec![
        (
            format!(
                "goal best mean arena/LB below greedy-size's over the DAGs: {:.4} vs {:.4}",
                mean(best),
                mean(gbs)
            ),
            mean(best) < mean(gbs),
        ),
        (
            format!(
                "goal best never worse than greedy-size: worse on {} of {}",
                dags.best_losses, dags.count
            ),
            dags.best_losses == 0,
        ),
        (
            format!(
                "goal greedy-size placement < 1 ms on {} tensors: {:.3} ms",
                records.len(),
                gbs_placement.as_secs_f64() * 1e3
            ),
            gbs_placement < Duration::from_millis(1),
        ),
    ];
    let mut ratios = Ratios::default();
    ratios.add(
        "mean-arena/LB random-dags",
        "best",
        "greedy-size",
        mean(best) / mean(gbs),
    );
    ratios.add(
        "mean-arena/LB random-dags",
        "best",
        "greedy-breadth",
        mean(best) / mean(&dags.quality[1]),
    );
    ratios.add(
        "mean-arena/LB random-records",
        "best",
        "greedy-size",
        rec_suite.quality[2].sum / rec_suite.quality[0].sum,
    );
    report::print_summary(full, started, &goals, &ratios);
}
