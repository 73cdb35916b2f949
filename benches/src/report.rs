//! What every bench prints the same way: ratio lines, goal verdicts and the summary, and
//! a throughput accumulator for criterion's custom-timed routines.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// A ratio as `1.234x`, or `inf (no hits)` when the peer scored zero.
pub fn times(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.3}x")
    } else {
        "inf (no hits)".to_owned()
    }
}

/// Lines of the final summary, one per ratio, memwarden first.
#[derive(Debug, Default)]
pub struct Ratios(pub Vec<String>);

impl Ratios {
    /// Adds `ratio {what} {ours}/{theirs} = 1.234x`.
    pub fn add(&mut self, what: &str, ours: &str, theirs: &str, ratio: f64) {
        self.0
            .push(format!("ratio {what} {ours}/{theirs} = {}", times(ratio)));
    }
}

/// A goal from an issue and whether this run met it.
pub type Goal = (String, bool);

/// Prints `== summary`, each goal's verdict (not judged under `cargo test`), and the ratios.
pub fn print_summary(full: bool, started: Instant, goals: &[Goal], ratios: &Ratios) {
    println!();
    println!(
        "== summary ({} mode, {:.0} s)",
        if full { "bench" } else { "test" },
        started.elapsed().as_secs_f64()
    );
    for (line, met) in goals {
        let verdict = match (full, met) {
            (false, _) => "not judged in test mode",
            (true, true) => "met",
            (true, false) => "MISSED",
        };
        println!("{line}: {verdict}");
    }
    for line in &ratios.0 {
        println!("{line}");
    }
}

/// Operations and time accumulated over every call of one benchmark routine.
#[derive(Debug, Default)]
pub struct Rate {
    ops: Cell<u64>,
    time: Cell<Duration>,
}

impl Rate {
    /// Adds `ops` operations that took `time`; returns `time` (for `iter_custom`).
    pub fn record(&self, ops: u64, time: Duration) -> Duration {
        self.ops.set(self.ops.get() + ops);
        self.time.set(self.time.get() + time);
        time
    }

    /// Mean nanoseconds per operation.
    pub fn ns_per_op(&self) -> f64 {
        self.time.get().as_secs_f64() * 1e9 / self.ops.get().max(1) as f64
    }

    /// Operations per second.
    pub fn per_sec(&self) -> f64 {
        self.ops.get() as f64 / self.time.get().as_secs_f64().max(1e-12)
    }
}
