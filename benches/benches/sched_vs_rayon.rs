//! memwarden's `ParallelScheduler` against rayon on four kinds of data-parallel work,
//! and its speedup on two threads over one.
//!
//! Run with `cargo bench -p memwarden-benches --bench sched_vs_rayon`. Under `cargo test
//! --benches` (no `--bench` argument) every workload runs once at a tiny size: the
//! figures print, but are a smoke test, not a measurement.
//!
//! Workloads (full size; the kernels are written here, not taken from other crates):
//! - `cheap`: sum of squares over 10⁸ `f32` (memory-bound; a reduction, so the peers
//!   use `.sum()` and the scheduler `schedule_chunks`, each summing its chunk with the
//!   same `iter().map(square).sum()` loop; squares are summed as `f64`, since an `f32`
//!   running sum of millions of terms stops growing);
//! - `heavy`: a Gramian-Angular-Field-like kernel per sample, 4 000 samples of 128
//!   values: PAA to 64, min-max scaling, then both 64 × 64 images (summation and
//!   difference) into a stack buffer; each item returns a checksum;
//! - `irregular`: 8 000 items, item `i` spinning `4 i` steps of a dependent
//!   multiply-add chain (triangular cost);
//! - `fine`: 10⁶ items of about 50 ns each (40 steps of the same chain).
//!
//! Peers, all in this process, over the same input: `sched` (`ParallelScheduler::new()`:
//! calibrated chunks, results in order), `static` (the same with `dynamic_balance(false)`:
//! chunks from the cache sizes alone), `rayon` (the default `par_iter().map().collect()`
//! on rayon's global pool) and `min_len` (the same with a hand-tuned `with_min_len`).
//! Every scheduler has as many threads as rayon's global pool. Each round runs every
//! peer once, in an order that rotates per round; a figure is the median round after
//! an untimed warm-up. Every result is checked against the sequential one.
//!
//! Then the scaling figure: `heavy` and `irregular` on a one-thread and a two-thread
//! scheduler.
//!
//! The run ends with the machine's load average before and after: on a machine shared
//! with other work the parallel figures, the two-thread speedup first, mean little.
//!
//! Goals from the issue: `sched` at least 1.0x rayon's default on every workload, 1.2x
//! on `fine`, and a two-thread speedup of at least 1.8x on compute-bound work (`heavy`).
//! A ratio is rayon's time over ours: above 1 means the scheduler is faster.

use memwarden_benches::report::{self, Goal, Ratios, times};
use std::hint::black_box;
use std::time::{Duration, Instant};

use memwarden_sched::ParallelScheduler;
use rayon::prelude::*;

/// Samples of the GAF-like kernel, values per sample, and image side.
const SERIES: usize = 128;
const SIDE: usize = 64;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let started = Instant::now();
    let threads = rayon::current_num_threads();
    let sched = ParallelScheduler::builder()
        .jobs(threads)
        .build()
        .expect("valid configuration");
    let fixed = ParallelScheduler::builder()
        .jobs(threads)
        .dynamic_balance(false)
        .build()
        .expect("valid configuration");
    let cache = sched.cache();
    println!(
        "sched_vs_rayon: {threads} threads (rayon's global pool and each scheduler), \
         available_jobs {}, caches L1d {} KiB, L2 {} KiB, L3 {}, line {} B",
        memwarden_sched::available_jobs(),
        cache.l1d >> 10,
        cache.l2 >> 10,
        cache
            .l3
            .map_or_else(|| "none".to_owned(), |b| format!("{} KiB", b >> 10)),
        cache.line
    );
    let load_before = load_average();
    let size = |big: usize, small: usize| if full { big } else { small };
    let rounds = |r: usize| if full { r } else { 1 };

    println!(
        "\n| workload | items | sched ms | static ms | rayon ms | min_len ms | sched/rayon | sched/min_len | sched plan |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut ratios = Ratios::default();
    let mut goals: Vec<Goal> = Vec::new();
    let peers = Peers {
        sched: &sched,
        fixed: &fixed,
    };

    // cheap: sum of squares.
    let n = size(100_000_000, 100_000);
    let data: Vec<f32> = (0..n).map(|i| (i % 1_000) as f32 * 1e-3).collect();
    let want: f64 = data.iter().map(|&x| f64::from(x * x)).sum();
    let square = |x: &f32| f64::from(x * x);
    let sum_chunk = |_: usize, c: &[f32]| c.iter().map(square).sum::<f64>();
    let check_sum = |got: f64| {
        let rel = (got - want).abs() / want.max(1e-30);
        assert!(rel < 1e-9, "sum of squares {got} vs {want}");
    };
    let row = peers.compare(
        "cheap",
        n,
        rounds(15),
        |s| check_sum(s.schedule_chunks(sum_chunk, &data).iter().sum()),
        || check_sum(data.par_iter().map(square).sum()),
        || check_sum(data.par_iter().with_min_len(1 << 16).map(square).sum()),
    );
    row.report(&mut ratios, &mut goals, 1.0);
    drop(data);

    // heavy: a GAF-like image pair per sample.
    let samples = random_walks(size(4_000, 64));
    let want: Vec<f32> = samples.iter().map(gaf_checksum).collect();
    let row = peers.compare(
        "heavy",
        samples.len(),
        rounds(41),
        |s| assert_eq!(s.schedule(gaf_checksum, &samples), want),
        || {
            assert_eq!(
                samples.par_iter().map(gaf_checksum).collect::<Vec<_>>(),
                want
            );
        },
        || {
            let got: Vec<_> = samples
                .par_iter()
                .with_min_len(16)
                .map(gaf_checksum)
                .collect();
            assert_eq!(got, want);
        },
    );
    row.report(&mut ratios, &mut goals, 1.0);

    // irregular: item i costs ~i.
    let items: Vec<u64> = (0..size(8_000, 200) as u64).collect();
    let want_irregular: Vec<u64> = items.iter().map(|&i| spin(4 * i, i)).collect();
    let triangular = |&i: &u64| spin(4 * i, i);
    let row = peers.compare(
        "irregular",
        items.len(),
        rounds(15),
        |s| assert_eq!(s.schedule(triangular, &items), want_irregular),
        || {
            assert_eq!(
                items.par_iter().map(triangular).collect::<Vec<_>>(),
                want_irregular
            );
        },
        || {
            let got: Vec<_> = items.par_iter().with_min_len(16).map(triangular).collect();
            assert_eq!(got, want_irregular);
        },
    );
    row.report(&mut ratios, &mut goals, 1.0);

    // fine: a million items of ~50 ns.
    let tiny: Vec<u64> = (0..size(1_000_000, 10_000) as u64).collect();
    let fine = |&i: &u64| spin(40, i);
    let want_fine: Vec<u64> = tiny.iter().map(fine).collect();
    let single = {
        let t = Instant::now();
        black_box(tiny.iter().map(fine).collect::<Vec<_>>());
        t.elapsed()
    };
    let row = peers.compare(
        "fine",
        tiny.len(),
        rounds(21),
        |s| assert_eq!(s.schedule(fine, &tiny), want_fine),
        || assert_eq!(tiny.par_iter().map(fine).collect::<Vec<_>>(), want_fine),
        || {
            let got: Vec<_> = tiny.par_iter().with_min_len(1 << 12).map(fine).collect();
            assert_eq!(got, want_fine);
        },
    );
    println!(
        "(fine: one item costs {:.0} ns sequentially)",
        single.as_secs_f64() * 1e9 / tiny.len() as f64
    );
    row.report(&mut ratios, &mut goals, 1.2);

    // Scaling: one thread against two, same scheduler configuration.
    println!("\n| workload | 1 thread ms | 2 threads ms | speedup |");
    println!("|---|---|---|---|");
    let one = ParallelScheduler::builder().jobs(1).build().expect("valid");
    let two = ParallelScheduler::builder().jobs(2).build().expect("valid");
    for (name, work) in [
        (
            "heavy",
            Box::new(|s: &ParallelScheduler| assert_eq!(s.schedule(gaf_checksum, &samples), want))
                as Box<dyn Fn(&ParallelScheduler)>,
        ),
        (
            "irregular",
            Box::new(|s: &ParallelScheduler| {
                assert_eq!(s.schedule(triangular, &items), want_irregular);
            }),
        ),
    ] {
        let [t1, t2] = medians(rounds(21), [&|| work(&one), &|| work(&two)]);
        let speedup = t1.as_secs_f64() / t2.as_secs_f64();
        println!("| {name} | {} | {} | {} |", ms(t1), ms(t2), times(speedup));
        ratios.add(&format!("time {name}"), "2 threads", "1 thread", speedup);
        if name == "heavy" {
            goals.push((
                format!("goal 2-thread speedup on heavy >= 1.8x: {}", times(speedup)),
                speedup >= 1.8,
            ));
        }
    }
    if threads < 2 {
        println!("(only {threads} CPU available: the two-thread figure means nothing here)");
    }
    // Other processes on the machine skew every parallel figure: say how busy it was.
    println!(
        "\nload average (1 min) before: {load_before}, after: {} on {} CPUs",
        load_average(),
        memwarden_sched::available_jobs()
    );
    report::print_summary(full, started, &goals, &ratios);
}

/// The two schedulers under test.
struct Peers<'a> {
    sched: &'a ParallelScheduler,
    fixed: &'a ParallelScheduler,
}

/// One workload's medians.
struct Row {
    name: &'static str,
    sched: Duration,
    rayon: Duration,
    min_len: Duration,
}

impl Peers<'_> {
    /// Times the four peers over `rounds` rotating rounds and prints the row.
    fn compare(
        &self,
        name: &'static str,
        items: usize,
        rounds: usize,
        ours: impl Fn(&ParallelScheduler),
        rayon: impl Fn(),
        min_len: impl Fn(),
    ) -> Row {
        let [sched, fixed, rayon, min_len] = medians(
            rounds,
            [&|| ours(self.sched), &|| ours(self.fixed), &rayon, &min_len],
        );
        // The plan of the last timed call (a chunked call's plan differs in kind from
        // a per-item one, but both show how the input was cut).
        ours(self.sched);
        let plan = self.sched.last_run().map_or_else(String::new, |r| {
            format!(
                "probe {}, {} chunks of {}, {} workers",
                r.probed, r.chunks, r.chunk, r.workers
            )
        });
        println!(
            "| {name} | {items} | {} | {} | {} | {} | {} | {} | {plan} |",
            ms(sched),
            ms(fixed),
            ms(rayon),
            ms(min_len),
            times(rayon.as_secs_f64() / sched.as_secs_f64()),
            times(min_len.as_secs_f64() / sched.as_secs_f64()),
        );
        Row {
            name,
            sched,
            rayon,
            min_len,
        }
    }
}

impl Row {
    fn report(&self, ratios: &mut Ratios, goals: &mut Vec<Goal>, goal: f64) {
        let vs_rayon = self.rayon.as_secs_f64() / self.sched.as_secs_f64();
        let vs_min_len = self.min_len.as_secs_f64() / self.sched.as_secs_f64();
        let what = format!("speed {}", self.name);
        ratios.add(&what, "sched", "rayon", vs_rayon);
        ratios.add(&what, "sched", "min_len", vs_min_len);
        goals.push((
            format!(
                "goal {} sched >= {goal:.1}x rayon default: {}",
                self.name,
                times(vs_rayon)
            ),
            vs_rayon >= goal,
        ));
    }
}

/// Runs each closure once per round (untimed round 0 first), rotating the order, and
/// returns each one's median time.
fn medians<const N: usize>(rounds: usize, runs: [&dyn Fn(); N]) -> [Duration; N] {
    let mut times: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::with_capacity(rounds));
    for round in 0..=rounds {
        for k in 0..N {
            let peer = (k + round) % N;
            let t = Instant::now();
            runs[peer]();
            let took = t.elapsed();
            if round > 0 {
                times[peer].push(took);
            }
        }
    }
    times.map(|mut t| {
        t.sort_unstable();
        t[t.len() / 2]
    })
}

/// The one-minute load average, from `/proc/loadavg` (`?` where there is none).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// `steps` of a dependent multiply-add chain seeded by `seed`: about 1.3 ns a step.
fn spin(steps: u64, seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..steps {
        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
    x
}

/// Seeded random walks of `SERIES` values.
fn random_walks(count: usize) -> Vec<[f32; SERIES]> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..count)
        .map(|_| {
            let mut walk = [0f32; SERIES];
            let mut level = 0f32;
            for v in &mut walk {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                level += (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                *v = level;
            }
            walk
        })
        .collect()
}

/// PAA 128 -> 64, min-max scaling to [-1, 1], then the summation and difference images
/// (64 x 64 each) into a stack buffer; returns a checksum of both.
fn gaf_checksum(series: &[f32; SERIES]) -> f32 {
    let mut paa = [0f32; SIDE];
    for (j, p) in paa.iter_mut().enumerate() {
        *p = (series[2 * j] + series[2 * j + 1]) * 0.5;
    }
    let (lo, hi) = paa
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    let range = hi - lo;
    let scale = if range > 10.0 * f32::EPSILON {
        2.0 / range
    } else {
        0.0
    };
    let cos = paa.map(|x| (x - lo) * scale - 1.0);
    let sin = cos.map(|c| (1.0 - c * c).clamp(0.0, 1.0).sqrt());
    let mut images = [[0f32; SIDE * SIDE]; 2];
    let [gasf, gadf] = &mut images;
    for i in 0..SIDE {
        let (ci, si) = (cos[i], sin[i]);
        let row_s = &mut gasf[i * SIDE..][..SIDE];
        let row_d = &mut gadf[i * SIDE..][..SIDE];
        for j in 0..SIDE {
            row_s[j] = ci * cos[j] - si * sin[j];
            row_d[j] = si * cos[j] - ci * sin[j];
        }
    }
    let images = black_box(&images);
    images[0][0] + images[0][SIDE * SIDE - 1] + images[1][SIDE + 1]
}
