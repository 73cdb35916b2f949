//! The text form of a demo report.

use memwarden::core::ByteSize;

use super::report::Report;
use super::timeline::Point;

pub(crate) fn render(r: &Report) -> String {
    use std::fmt::Write;
    let b = ByteSize::b;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "memwarden demo: seed {}, {} steps ({:.0} s simulated, {:.2} s wall), budget {} (warning {:.0}%, critical {:.0}%){}",
        r.seed,
        r.steps,
        r.simulated_seconds,
        r.wall_seconds,
        r.budget_source,
        r.warning_fraction * 100.0,
        r.critical_fraction * 100.0,
        if r.small { ", small models" } else { "" }
    );
    let _ = writeln!(
        out,
        "\nprocess RSS: min {}, median {}, max {}; peak (VmHWM) {} = {:.1}% of budget{}",
        b(r.rss.min_bytes),
        b(r.rss.median_bytes),
        b(r.rss.max_bytes),
        b(r.rss.peak_bytes),
        r.rss.peak_over_budget * 100.0,
        if r.rss.within_budget {
            ""
        } else {
            "  <-- OVER BUDGET"
        }
    );
    let _ = writeln!(
        out,
        "over time:   {}",
        sparkline(&r.samples, r.budget_bytes)
    );
    let _ = writeln!(
        out,
        "             (RSS; a full bar is the budget)\ntracked bytes: min {}, max {}, final {}\n",
        b(r.tracked.min_bytes),
        b(r.tracked.max_bytes),
        b(r.tracked.final_bytes)
    );
    let _ = writeln!(
        out,
        "{:<20} {:>7} {:>8} {:>8} {:>9} {:>9} {:>8} {:>12} {:>10}",
        "kind",
        "hits",
        "restores",
        "reloads",
        "hit ratio",
        "releases",
        "partial",
        "freed",
        "snapshots"
    );
    for (kind, k) in &r.kinds {
        let _ = writeln!(
            out,
            "{:<20} {:>7} {:>8} {:>8} {:>8.1}% {:>9} {:>8} {:>12} {:>10}",
            kind,
            k.hits,
            k.restores,
            k.reloads,
            k.hit_ratio * 100.0,
            k.releases,
            k.partial_releases,
            b(k.bytes_freed).to_string(),
            k.snapshots_written
        );
    }
    let _ = writeln!(
        out,
        "{:<20} {:>7} {:>8} {:>8} {:>8.1}% {:>9} {:>8} {:>12} {:>10}",
        "all",
        r.hits,
        r.snapshots.restores,
        r.reloads,
        r.hit_ratio * 100.0,
        r.kinds.values().map(|k| k.releases).sum::<u64>(),
        r.kinds.values().map(|k| k.partial_releases).sum::<u64>(),
        b(r.bytes_freed).to_string(),
        r.snapshots.writes
    );
    let g = &r.governor;
    let _ = writeln!(
        out,
        "\ngovernor: {} ticks, {} admission checks, {} releases freeing {}, {} pressure changes, {} compactions",
        g.ticks,
        g.admissions,
        g.releases,
        b(g.bytes_freed),
        g.pressure_events,
        g.compactions
    );
    if let Some(source) = &g.kernel_pressure_source {
        let _ = writeln!(
            out,
            "kernel pressure: {} notifications ({source})",
            g.kernel_pressure_events
        );
    }
    let _ = writeln!(
        out,
        "defrag: {} runs returned {} to the OS in {:.0} ms",
        r.defrag.runs,
        b(r.defrag.bytes_returned),
        r.defrag.seconds * 1000.0
    );
    let _ = writeln!(
        out,
        "snapshots: {} written ({} failed), {} restored instead of re-rendered; {} files, {} on disk at the end",
        r.snapshots.writes,
        r.snapshots.write_failures,
        r.snapshots.restores,
        r.snapshots.files_on_disk,
        b(r.snapshots.bytes_on_disk)
    );
    let failures: u64 = r.kinds.values().map(|k| k.handler_failures).sum();
    let _ = writeln!(out, "release handler failures: {failures}");
    out
}

fn sparkline(samples: &[Point], budget: u64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let per_bar = samples.len().div_ceil(60).max(1);
    samples
        .chunks(per_bar)
        .map(|chunk| {
            let rss = chunk.iter().map(|p| p.rss).max().unwrap_or(0);
            let level = (rss as f64 / budget.max(1) as f64 * 8.0).ceil() as usize;
            BARS[level.clamp(1, 8) - 1]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::demo::report::{
        DefragSummary, GovernorSummary, KindReport, RssReport, SnapshotReport, Tracked,
    };

    fn report(peak: u64) -> Report {
        let budget = 100 << 20;
        let kind = KindReport {
            hits: 3,
            restores: 1,
            reloads: 0,
            hit_ratio: 0.75,
            snapshots_written: 2,
            releases: 2,
            partial_releases: 0,
            bytes_freed: 16 << 20,
            handler_failures: 0,
            skipped: 0,
        };
        Report {
            seed: 7,
            steps: 4,
            small: true,
            budget_bytes: budget,
            budget_source: "100 MiB = 75% of the cgroup limit 133 MiB (memory.max, /ci)".into(),
            warning_fraction: 0.75,
            critical_fraction: 0.9,
            simulated_seconds: 0.2,
            wall_seconds: 0.01,
            cpu_seconds: None,
            rss: RssReport {
                budget_bytes: budget,
                min_bytes: 20 << 20,
                median_bytes: 40 << 20,
                max_bytes: 80 << 20,
                peak_bytes: peak,
                peak_over_budget: peak as f64 / budget as f64,
                within_budget: peak as f64 / budget as f64 <= 1.05,
                final_bytes: 30 << 20,
            },
            tracked: Tracked {
                min_bytes: 0,
                max_bytes: 60 << 20,
                final_bytes: 10 << 20,
            },
            kinds: BTreeMap::from([("render_cache".to_owned(), kind)]),
            accesses: 4,
            hits: 3,
            restores: 1,
            reloads: 0,
            hit_ratio: 0.75,
            bytes_freed: 16 << 20,
            governor: GovernorSummary {
                ticks: 5,
                admissions: 4,
                releases: 1,
                bytes_freed: 16 << 20,
                compactions: 1,
                pressure_events: 2,
                kernel_pressure_events: 3,
                kernel_pressure_source: Some("v1 medium memory pressure of /ci".into()),
                pressure_changes: Vec::new(),
            },
            defrag: DefragSummary {
                runs: 1,
                bytes_returned: 8 << 20,
                seconds: 0.002,
            },
            models: serde_json::Value::Null,
            snapshots: SnapshotReport {
                dir: "/tmp/x".into(),
                writes: 2,
                write_failures: 0,
                restores: 1,
                files_on_disk: 1,
                bytes_on_disk: 8 << 20,
            },
            samples: (0..4)
                .map(|step| Point {
                    step,
                    at_s: step as f64 * 0.05,
                    rss: (step + 1) * (25 << 20),
                    tracked: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn the_text_names_every_figure_and_flags_a_peak_over_budget() {
        let text = render(&report(90 << 20));
        for expected in [
            "seed 7, 4 steps",
            "budget 100 MiB = 75% of the cgroup limit 133 MiB (memory.max, /ci) (warning 75%, critical 90%), small models",
            "peak (VmHWM) 90 MiB = 90.0% of budget\n",
            "render_cache",
            "75.0%",
            "governor: 5 ticks, 4 admission checks, 1 releases freeing 16 MiB",
            "defrag: 1 runs returned 8 MiB",
            "snapshots: 2 written (0 failed), 1 restored",
            "kernel pressure: 3 notifications (v1 medium memory pressure of /ci)",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        assert!(!text.contains("OVER BUDGET"));
        assert!(render(&report(120 << 20)).contains("<-- OVER BUDGET"));
    }

    #[test]
    fn the_sparkline_scales_to_the_budget() {
        let r = report(0);
        assert_eq!(sparkline(&r.samples, r.budget_bytes), "▂▄▆█");
        assert_eq!(sparkline(&[], 1), "");
    }
}
