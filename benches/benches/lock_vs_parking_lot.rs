//! memwarden's named locks against `parking_lot::RwLock<()>` and `std::sync::RwLock<()>`:
//! the cost of one uncontended acquire and release, and read-heavy throughput on two
//! threads.
//!
//! Run with `cargo bench -p memwarden-benches --bench lock_vs_parking_lot`. Under `cargo
//! test --benches` (criterion's test mode) every routine runs once and each throughput
//! round lasts a few milliseconds: every number is a smoke test, not a measurement.
//!
//! Part one is a criterion group, `uncontended`: a read and a write, each acquired and
//! released on one thread, through memwarden by name (`manager.read(name)`: a map lookup
//! on every acquire) and through a pre-resolved handle (`handle.read()`), both with leases
//! disabled; through a handle with the default 30 s lease (one clock read per grant; the
//! lease monitor thread exists and wakes once a second); and through the two peers. It
//! also times one `SystemClock::now()` called through `dyn Clock`, as a grant calls it,
//! so that the summary can set what a lease costs against one clock read.
//!
//! Part two is read-heavy throughput: two threads acquire and release in a loop for a
//! fixed time, one operation in twenty a write (drawn by a per-thread xorshift), through
//! a memwarden handle with leases off and through the peers. The critical section is
//! empty, so this measures the locks alone under contention. Rounds alternate between
//! the three; the best round of each counts.
//!
//! Every figure is ns per operation (for throughput, wall time over the operations of
//! both threads), so a ratio above 1 means memwarden is slower. The goals are a handle
//! path within 1.5x of parking_lot, a name path within 2.5x, read-heavy throughput within
//! 1.3x, and leases that cost no more than one clock read per acquire; the summary prints
//! each goal against the measured figures, then one `ratio` line per comparison,
//! memwarden first.

use memwarden_benches::report::{self, Goal, Rate, Ratios};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, measurement::WallTime};
use memwarden::core::{Clock, SystemClock};
use memwarden_lock::{LockConfig, LockManager};

/// The lock name every memwarden path takes.
const NAME: &str = "bench";
/// Threads of the throughput part.
const THREADS: usize = 2;
/// Writes per hundred operations in the throughput part.
const WRITE_PERCENT: u64 = 5;
/// Operations a throughput thread does between looks at the stop flag.
const BATCH: u64 = 256;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let started = Instant::now();
    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(10);
    let mut ratios = Ratios::default();
    let mut goals = Vec::new();
    uncontended(&mut criterion, &mut ratios, &mut goals);
    criterion.final_summary();
    read_heavy(full, &mut ratios, &mut goals);

    report::print_summary(full, started, &goals, &ratios);
}

/// Benchmarks `op` as `name` in `group`, adding every timed call to `rate`.
fn bench(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, rate: &Rate, mut op: impl FnMut()) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                op();
            }
            rate.record(iters, start.elapsed())
        });
    });
}

/// One acquire path: its read and write rates.
struct Path {
    label: &'static str,
    key: &'static str,
    read: Rate,
    write: Rate,
}

impl Path {
    fn new(label: &'static str, key: &'static str) -> Self {
        Path {
            label,
            key,
            read: Rate::default(),
            write: Rate::default(),
        }
    }
}

fn expect<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| panic!("an uncontended acquire failed: {e}"))
}

/// Part one: one acquire and release at a time, on one thread.
fn uncontended(c: &mut Criterion, ratios: &mut Ratios, goals: &mut Vec<Goal>) {
    let plain = LockManager::with_config(LockConfig::without_leases()).expect("valid config");
    let plain_handle = plain.handle(NAME).expect("a non-empty name");
    // The default config: 30 s leases, so a monitor thread runs beside the benchmark.
    let leased = LockManager::with_config(LockConfig::default()).expect("valid config");
    let leased_handle = leased.handle(NAME).expect("a non-empty name");
    let parking = parking_lot::RwLock::new(());
    let std_lock = std::sync::RwLock::new(());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());

    let [name, handle, lease, pl, std_rw] = [
        Path::new("memwarden by name", "memwarden-name"),
        Path::new("memwarden by handle", "memwarden-handle"),
        Path::new("memwarden handle, lease", "memwarden-handle-lease"),
        Path::new("parking_lot RwLock", "parking_lot"),
        Path::new("std RwLock", "std"),
    ];
    let clock_rate = Rate::default();

    let mut group = c.benchmark_group("uncontended");
    bench(&mut group, "memwarden_name_read", &name.read, || {
        drop(black_box(expect(plain.read(black_box(NAME)))));
    });
    bench(&mut group, "memwarden_name_write", &name.write, || {
        drop(black_box(expect(plain.write(black_box(NAME)))));
    });
    bench(&mut group, "memwarden_handle_read", &handle.read, || {
        drop(black_box(expect(plain_handle.read())));
    });
    bench(&mut group, "memwarden_handle_write", &handle.write, || {
        drop(black_box(expect(plain_handle.write())));
    });
    bench(&mut group, "memwarden_lease_read", &lease.read, || {
        drop(black_box(expect(leased_handle.read())));
    });
    bench(&mut group, "memwarden_lease_write", &lease.write, || {
        drop(black_box(expect(leased_handle.write())));
    });
    bench(&mut group, "parking_lot_read", &pl.read, || {
        drop(black_box(parking.read()));
    });
    bench(&mut group, "parking_lot_write", &pl.write, || {
        drop(black_box(parking.write()));
    });
    bench(&mut group, "std_read", &std_rw.read, || {
        drop(black_box(expect(std_lock.read())));
    });
    bench(&mut group, "std_write", &std_rw.write, || {
        drop(black_box(expect(std_lock.write())));
    });
    bench(&mut group, "system_clock_now", &clock_rate, || {
        black_box(black_box(&clock).now());
    });
    group.finish();
    assert_eq!(
        plain.inspect().locks.len(),
        0,
        "every memwarden guard was released"
    );
    assert_eq!(leased.stats().expiries, 0, "no hold outlived its lease");

    let paths = [&name, &handle, &lease, &pl, &std_rw];
    println!("\n### uncontended acquire + release, one thread (ns/op, mean of every timed call)");
    println!(
        "| path                     | read ns | / parking_lot |  / std | write ns | / parking_lot |  / std |"
    );
    println!(
        "|--------------------------|---------|---------------|--------|----------|---------------|--------|"
    );
    for path in paths {
        let (r, w) = (path.read.ns_per_op(), path.write.ns_per_op());
        println!(
            "| {:<24} | {r:>7.1} | {:>12.2}x | {:>5.2}x | {w:>8.1} | {:>12.2}x | {:>5.2}x |",
            path.label,
            r / pl.read.ns_per_op(),
            r / std_rw.read.ns_per_op(),
            w / pl.write.ns_per_op(),
            w / std_rw.write.ns_per_op(),
        );
    }
    let clock_ns = clock_rate.ns_per_op();
    println!("| SystemClock::now() (dyn) | {clock_ns:>7.1} |");

    for ours in [&name, &handle, &lease] {
        for theirs in [&pl, &std_rw] {
            for (mode, mine, other) in [
                ("read", &ours.read, &theirs.read),
                ("write", &ours.write, &theirs.write),
            ] {
                ratios.add(
                    &format!("uncontended-{mode}-ns/op"),
                    ours.key,
                    theirs.key,
                    mine.ns_per_op() / other.ns_per_op(),
                );
            }
        }
    }

    let extra_read = lease.read.ns_per_op() - handle.read.ns_per_op();
    let extra_write = lease.write.ns_per_op() - handle.write.ns_per_op();
    for (mode, extra) in [("read", extra_read), ("write", extra_write)] {
        ratios.add(
            &format!("uncontended-{mode}-lease-extra-ns/op"),
            "memwarden-lease-extra",
            "clock-read",
            extra / clock_ns,
        );
    }
    goals.push((
        format!(
            "lease: leases on cost {extra_read:+.1} ns per read acquire and {extra_write:+.1} ns \
             per write acquire (handle path) vs one clock read of {clock_ns:.1} ns"
        ),
        extra_read.max(extra_write) <= clock_ns,
    ));
    let ratio = |path: &Path| {
        (
            path.read.ns_per_op() / pl.read.ns_per_op(),
            path.write.ns_per_op() / pl.write.ns_per_op(),
        )
    };
    for (path, limit) in [(&handle, 1.5), (&name, 2.5)] {
        let (r, w) = ratio(path);
        goals.push((
            format!(
                "goal: {} <= {limit}x parking_lot uncontended: read {r:.2}x, write {w:.2}x",
                path.key
            ),
            r <= limit && w <= limit,
        ));
    }
}

/// Runs `op` on [`THREADS`] threads for `run_for`; returns wall-clock ns per operation
/// over the operations of all threads.
fn round(op: &(impl Fn(bool) + Sync), run_for: Duration) -> f64 {
    let stop = AtomicBool::new(false);
    let start = Barrier::new(THREADS + 1);
    let (ops, elapsed) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (stop, start) = (&stop, &start);
                s.spawn(move || {
                    let mut rng = 0x9E37_79B9_7F4A_7C15_u64 ^ (t as u64 + 1);
                    let mut ops = 0u64;
                    start.wait();
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..BATCH {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            op(rng % 100 < WRITE_PERCENT);
                        }
                        ops += BATCH;
                    }
                    ops
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        std::thread::sleep(run_for);
        stop.store(true, Ordering::Relaxed);
        let ops: u64 = workers
            .into_iter()
            .map(|w| w.join().expect("a throughput thread panicked"))
            .sum();
        (ops, began.elapsed())
    });
    elapsed.as_secs_f64() * 1e9 / ops.max(1) as f64
}

/// Part two: read-heavy (95/5) throughput on two threads.
fn read_heavy(full: bool, ratios: &mut Ratios, goals: &mut Vec<Goal>) {
    let (rounds, run_for) = if full {
        (3, Duration::from_secs(1))
    } else {
        (1, Duration::from_millis(5))
    };
    let manager = LockManager::with_config(LockConfig::without_leases()).expect("valid config");
    let handle = manager.handle(NAME).expect("a non-empty name");
    let parking = parking_lot::RwLock::new(());
    let std_lock = std::sync::RwLock::new(());

    let memwarden = |write: bool| {
        if write {
            drop(black_box(expect(handle.write())));
        } else {
            drop(black_box(expect(handle.read())));
        }
    };
    let pl = |write: bool| {
        if write {
            drop(black_box(parking.write()));
        } else {
            drop(black_box(parking.read()));
        }
    };
    let std_rw = |write: bool| {
        if write {
            drop(black_box(expect(std_lock.write())));
        } else {
            drop(black_box(expect(std_lock.read())));
        }
    };
    let mut best = [f64::INFINITY; 3];
    for _ in 0..rounds {
        best[0] = best[0].min(round(&memwarden, run_for));
        best[1] = best[1].min(round(&pl, run_for));
        best[2] = best[2].min(round(&std_rw, run_for));
    }
    let stats = manager.stats();
    assert_eq!(stats.timeouts + stats.deadlocks, 0, "nothing failed");

    println!(
        "\n### read-heavy: {THREADS} threads, {}% writes, empty critical section, best of {rounds} \
         rounds of {:?}",
        WRITE_PERCENT, run_for
    );
    println!("| lock                     | ns/op | Mops/s | / parking_lot |  / std |");
    println!("|--------------------------|-------|--------|---------------|--------|");
    for (label, ns) in [
        ("memwarden by handle", best[0]),
        ("parking_lot RwLock", best[1]),
        ("std RwLock", best[2]),
    ] {
        println!(
            "| {label:<24} | {ns:>5.1} | {:>6.2} | {:>12.2}x | {:>5.2}x |",
            1e3 / ns,
            ns / best[1],
            ns / best[2],
        );
    }
    println!(
        "memwarden: {} grants, {} of them after a wait",
        stats.grants, stats.contended
    );
    let what = format!("rw{}-{THREADS}threads-ns/op", 100 - WRITE_PERCENT);
    let ratio = best[0] / best[1];
    goals.push((
        format!("goal: memwarden-handle <= 1.3x parking_lot read-heavy: {ratio:.2}x"),
        ratio <= 1.3,
    ));
    ratios.add(&what, "memwarden-handle", "parking_lot", best[0] / best[1]);
    ratios.add(&what, "memwarden-handle", "std", best[0] / best[2]);
}
