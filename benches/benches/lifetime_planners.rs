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
//! 4. **Real graphs.** Every `.onnx` file in `../shared/data/onnx` (or, on a clone
//!    without it, the copies in `crates/lifetime/tests/data`): import with shape
//!    inference, then each strategy at alignment 1, with times (median of repeated
//!    runs) and arena / LB.
//!
//! Goals from the issue: `best` strictly better than greedy by size on average over
//! the 1 000 graphs and never worse on any; greedy by size under 1 ms on a graph of
//! about 500 tensors and on the largest real graph; import + shape inference of the
//! largest real graph under 20 ms; `best` at the lower bound on every real graph.

use memwarden_benches::report::{self, Ratios};
use std::hint::black_box;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use memwarden_benches::report::Goal;
use memwarden_lifetime::{
    PlanOptions, Record, SearchBudget, Strategy, onnx, plan, plan_records_budgeted, synth,
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

impl Suite {
    /// An empty suite of `count` cases.
    fn new(count: u64) -> Self {
        Suite {
            quality: [Quality::default(); 3],
            count: count as usize,
            best_wins: 0,
            best_losses: 0,
        }
    }
}

fn dag_suite(count: u64, max_nodes: usize) -> Suite {
    let mut suite = Suite::new(count);
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
    let mut suite = Suite::new(count);
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

    let real_goals = real_graphs(runs);

    let mean = |q: &Quality| q.sum / dags.count as f64;
    let (gbs, best) = (&dags.quality[0], &dags.quality[2]);
    let mut goals = vec![
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
    goals.extend(real_goals);
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

/// The folder of real graphs: the shared data beside the checkout, else the test copies.
fn real_graph_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = root.join("../shared/data/onnx");
    if shared.is_dir() {
        shared
    } else {
        root.join("crates/lifetime/tests/data")
    }
}

/// Section 4: import and plan every real graph; returns the goals it judges.
fn real_graphs(runs: usize) -> Vec<Goal> {
    let dir = real_graph_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    println!(
        "\nreal graphs in {} (alignment 1, median of {runs}):",
        dir.display()
    );
    println!(
        "| graph | tensors | import | greedy-size | greedy-breadth | best | arena/LB gs | gb | best |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut all_at_bound = true;
    let mut best_never_worse = true;
    let mut largest: Option<(u64, String, Duration, Duration, Duration)> = None;
    for path in &files {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let graph = match onnx::import_bytes(&name, &bytes) {
            Ok(g) => g,
            Err(e) => {
                println!("| {name} | import failed: {e} |");
                all_at_bound = false;
                continue;
            }
        };
        let import = median(runs, || {
            black_box(onnx::import_bytes(&name, black_box(&bytes)).expect("imported once"));
        });
        let mut times = Vec::new();
        let mut ratios = Vec::new();
        let mut arenas = Vec::new();
        let mut tensors = 0;
        for strategy in COMPARED {
            let opts = PlanOptions {
                strategy,
                align: 1,
                ..PlanOptions::default()
            };
            let Ok(p) = plan(&graph, &opts) else {
                // Symbolic dimensions (the dynamic-batch file): not part of this table.
                break;
            };
            tensors = p.tensors.len();
            times.push(median(runs, || {
                black_box(plan(black_box(&graph), &opts).expect("planned once"));
            }));
            ratios.push(p.arena_bytes as f64 / p.lower_bound_bytes.max(1) as f64);
            arenas.push(p.arena_bytes);
        }
        if times.len() < COMPARED.len() {
            println!("| {name} | symbolic dimensions: see `memwarden plan --dim` |");
            continue;
        }
        all_at_bound &= ratios[2] == 1.0;
        best_never_worse &= arenas[2] <= arenas[0] && arenas[2] <= arenas[1];
        let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
        println!(
            "| {name} | {tensors} | {} | {} | {} | {} | {:.4} | {:.4} | {:.4} |",
            ms(import),
            ms(times[0]),
            ms(times[1]),
            ms(times[2]),
            ratios[0],
            ratios[1],
            ratios[2]
        );
        let size = bytes.len() as u64;
        if largest.as_ref().is_none_or(|l| size > l.0) {
            largest = Some((size, name, import, times[0], times[2]));
        }
    }
    let mut goals = vec![
        (
            format!(
                "goal best at the lower bound on every real graph ({} files)",
                files.len()
            ),
            all_at_bound && !files.is_empty(),
        ),
        (
            "goal best never worse than either greedy on the real graphs".to_owned(),
            best_never_worse,
        ),
    ];
    if let Some((_, name, import, gbs, best)) = largest {
        println!(
            "largest real graph {name}: import + shape inference {:.3} ms, greedy-size plan() {:.3} ms, best plan() {:.3} ms",
            import.as_secs_f64() * 1e3,
            gbs.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e3
        );
        goals.push((
            format!(
                "goal import + shape inference of {name} < 20 ms: {:.3} ms",
                import.as_secs_f64() * 1e3
            ),
            import < Duration::from_millis(20),
        ));
        goals.push((
            format!(
                "goal greedy-size plan() of {name} < 1 ms: {:.3} ms",
                gbs.as_secs_f64() * 1e3
            ),
            gbs < Duration::from_millis(1),
        ));
    }
    goals
}
