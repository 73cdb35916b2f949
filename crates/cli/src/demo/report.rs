//! What `memwarden demo` reports: the figures of one session, gathered once at its end.

use std::collections::BTreeMap;

use memwarden::core::ResourceKind;
use memwarden::defrag::rss;
use memwarden::governor::GovernorStats;
use memwarden::runtime::{Runtime, Thinned};
use serde::Serialize;

use super::args::Args;
use super::timeline::Point;

/// How far past the budget the peak RSS may go before the run fails.
pub(crate) const TOLERANCE: f64 = 1.05;

/// Lookups of one kind: found held, restored from a snapshot, or loaded anew.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(crate) struct Access {
    pub(crate) hits: u64,
    pub(crate) restores: u64,
    pub(crate) reloads: u64,
}

/// RSS and tracked bytes after each step, thinned evenly past [`Series::MAX`] points,
/// with the exact extremes kept aside.
#[derive(Debug)]
pub(crate) struct Series {
    points: Thinned<Point>,
    pub(crate) min_rss: u64,
    pub(crate) max_rss: u64,
    pub(crate) min_tracked: u64,
    pub(crate) max_tracked: u64,
}

impl Series {
    pub(crate) const MAX: usize = 4000;

    pub(crate) fn new() -> Self {
        Series {
            points: Thinned::new(Self::MAX),
            min_rss: u64::MAX,
            max_rss: 0,
            min_tracked: u64::MAX,
            max_tracked: 0,
        }
    }

    pub(crate) fn push(&mut self, point: Point) {
        self.min_rss = self.min_rss.min(point.rss);
        self.max_rss = self.max_rss.max(point.rss);
        self.min_tracked = self.min_tracked.min(point.tracked);
        self.max_tracked = self.max_tracked.max(point.tracked);
        self.points.push(point);
    }

    pub(crate) fn points(&self) -> &[Point] {
        self.points.points()
    }
}

/// What the session itself saw, beside what the runtime counted.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) access: BTreeMap<ResourceKind, Access>,
    pub(crate) series: Series,
    pub(crate) tracked_final: u64,
    pub(crate) simulated_seconds: f64,
    pub(crate) wall_seconds: f64,
    pub(crate) cpu_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct KindReport {
    pub(crate) hits: u64,
    pub(crate) restores: u64,
    pub(crate) reloads: u64,
    pub(crate) hit_ratio: f64,
    pub(crate) snapshots_written: u64,
    pub(crate) releases: u64,
    pub(crate) partial_releases: u64,
    pub(crate) bytes_freed: u64,
    pub(crate) handler_failures: u64,
    pub(crate) skipped: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct RssReport {
    pub(crate) budget_bytes: u64,
    /// Lowest and highest RSS read after a step, and the median of the kept samples.
    pub(crate) min_bytes: u64,
    pub(crate) median_bytes: u64,
    pub(crate) max_bytes: u64,
    /// The OS's high-water mark for the whole run (`VmHWM`, what `time -v` reports).
    pub(crate) peak_bytes: u64,
    /// `peak_bytes / budget_bytes`.
    pub(crate) peak_over_budget: f64,
    /// Whether the peak stayed within the budget plus 5 %.
    pub(crate) within_budget: bool,
    /// RSS at the end.
    pub(crate) final_bytes: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Tracked {
    pub(crate) min_bytes: u64,
    pub(crate) max_bytes: u64,
    pub(crate) final_bytes: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct GovernorSummary {
    pub(crate) ticks: u64,
    pub(crate) admissions: u64,
    pub(crate) releases: u64,
    pub(crate) bytes_freed: u64,
    pub(crate) compactions: u64,
    pub(crate) pressure_events: u64,
    /// The kernel's memory-pressure notifications the governor heard, and their source.
    pub(crate) kernel_pressure_events: u64,
    pub(crate) kernel_pressure_source: Option<String>,
    /// Each change of pressure level: (simulated seconds, from, to).
    pub(crate) pressure_changes: Vec<(f64, String, String)>,
}

#[derive(Debug, Serialize)]
pub(crate) struct DefragSummary {
    pub(crate) runs: u64,
    pub(crate) bytes_returned: u64,
    /// Time spent compacting, all runs together.
    pub(crate) seconds: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct SnapshotReport {
    /// Where the session's snapshot store lived (removed at the end).
    pub(crate) dir: String,
    pub(crate) writes: u64,
    pub(crate) write_failures: u64,
    pub(crate) restores: u64,
    pub(crate) files_on_disk: u64,
    pub(crate) bytes_on_disk: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) seed: u64,
    pub(crate) steps: u64,
    pub(crate) small: bool,
    pub(crate) budget_bytes: u64,
    /// Where the budget came from: "192 MiB = 75% of the cgroup limit 256 MiB (...)".
    pub(crate) budget_source: String,
    pub(crate) warning_fraction: f64,
    pub(crate) critical_fraction: f64,
    pub(crate) simulated_seconds: f64,
    pub(crate) wall_seconds: f64,
    /// CPU time of the session's steps, all threads (the governor's monitor included).
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) rss: RssReport,
    pub(crate) tracked: Tracked,
    pub(crate) kinds: BTreeMap<String, KindReport>,
    pub(crate) accesses: u64,
    pub(crate) hits: u64,
    pub(crate) restores: u64,
    pub(crate) reloads: u64,
    pub(crate) hit_ratio: f64,
    pub(crate) bytes_freed: u64,
    pub(crate) governor: GovernorSummary,
    pub(crate) defrag: DefragSummary,
    pub(crate) models: serde_json::Value,
    pub(crate) snapshots: SnapshotReport,
    /// RSS and tracked bytes after each step (thinned evenly to under 4000 points).
    pub(crate) samples: Vec<Point>,
}

impl Report {
    /// The report of a session that ran on `runtime` (stopped, so its figures are
    /// final) and left `outcome`; `governor` is the governor's final report.
    pub(crate) fn build(
        args: &Args,
        runtime: &Runtime,
        governor: &GovernorStats,
        outcome: Outcome,
    ) -> anyhow::Result<Report> {
        let stats = runtime.lifecycle().reaper().stats();
        let access = &outcome.access;
        let mut kinds = BTreeMap::new();
        for kind in ResourceKind::BUILTIN {
            let a = access.get(&kind).copied().unwrap_or_default();
            let r = stats.kinds.get(&kind).copied().unwrap_or_default();
            kinds.insert(
                kind.to_string(),
                KindReport {
                    hits: a.hits,
                    restores: a.restores,
                    reloads: a.reloads,
                    hit_ratio: ratio(a.hits, a.hits + a.restores + a.reloads),
                    snapshots_written: r.snapshots,
                    releases: r.releases,
                    partial_releases: r.partial_releases,
                    bytes_freed: r.bytes_freed,
                    handler_failures: r.failures,
                    skipped: r.skipped,
                },
            );
        }
        let (hits, restores, reloads) = access.values().fold((0, 0, 0), |(h, s, r), a| {
            (h + a.hits, s + a.restores, r + a.reloads)
        });
        let store = runtime.snapshot_store();
        let store_stats = store.map(|s| s.stats());
        let snapshots = SnapshotReport {
            dir: store.map_or_else(String::new, |s| s.config().dir.display().to_string()),
            writes: stats.total.snapshots,
            write_failures: stats.total.snapshot_failures,
            restores,
            files_on_disk: store_stats.as_ref().map_or(0, |s| s.count),
            bytes_on_disk: store_stats.as_ref().map_or(0, |s| s.disk_bytes),
        };
        let budget = governor.budget.as_u64();
        let series = &outcome.series;
        let final_rss = rss::current().unwrap_or(0);
        let peak = rss::peak().unwrap_or(0).max(series.max_rss);
        let defrag = runtime.defrag().map(|d| d.stats()).unwrap_or_default();
        Ok(Report {
            seed: args.seed,
            steps: args.steps,
            small: args.small,
            budget_bytes: budget,
            budget_source: runtime.budget().to_string(),
            warning_fraction: governor.thresholds.warning,
            critical_fraction: governor.thresholds.critical,
            simulated_seconds: outcome.simulated_seconds,
            wall_seconds: outcome.wall_seconds,
            cpu_seconds: outcome.cpu_seconds,
            rss: rss_report(series, budget, peak, final_rss),
            tracked: Tracked {
                min_bytes: if series.points().is_empty() {
                    0
                } else {
                    series.min_tracked
                },
                max_bytes: series.max_tracked,
                final_bytes: outcome.tracked_final,
            },
            kinds,
            accesses: hits + restores + reloads,
            hits,
            restores,
            reloads,
            hit_ratio: ratio(hits, hits + restores + reloads),
            bytes_freed: stats.total.bytes_freed,
            governor: GovernorSummary {
                ticks: governor.ticks,
                admissions: governor.admissions,
                releases: governor.release_count,
                bytes_freed: governor.bytes_freed,
                compactions: governor.compactions,
                pressure_events: governor.pressure_change_count,
                kernel_pressure_events: governor.kernel_pressure_events,
                kernel_pressure_source: governor.kernel_pressure_source.clone(),
                pressure_changes: governor
                    .pressure_changes
                    .iter()
                    .map(|c| {
                        (
                            c.at.as_secs_f64(),
                            format!("{:?}", c.from).to_lowercase(),
                            format!("{:?}", c.to).to_lowercase(),
                        )
                    })
                    .collect(),
            },
            defrag: DefragSummary {
                runs: defrag.runs,
                bytes_returned: defrag.total_returned,
                seconds: defrag.total_duration.as_secs_f64(),
            },
            models: serde_json::to_value(runtime.registry().inspect())?,
            snapshots,
            samples: outcome.series.points().to_vec(),
        })
    }
}

/// The RSS figures: the extremes and median of the steps' readings (the final reading
/// when no step ran), and the OS's peak against the budget.
fn rss_report(series: &Series, budget: u64, peak: u64, final_rss: u64) -> RssReport {
    let mut rss_values: Vec<u64> = series.points().iter().map(|p| p.rss).collect();
    rss_values.sort_unstable();
    let steps_seen = !rss_values.is_empty();
    let peak_over_budget = peak as f64 / budget.max(1) as f64;
    RssReport {
        budget_bytes: budget,
        min_bytes: if steps_seen {
            series.min_rss
        } else {
            final_rss
        },
        median_bytes: rss_values
            .get(rss_values.len() / 2)
            .copied()
            .unwrap_or(final_rss),
        max_bytes: if steps_seen {
            series.max_rss
        } else {
            final_rss
        },
        peak_bytes: peak,
        peak_over_budget,
        within_budget: peak_over_budget <= TOLERANCE,
        final_bytes: final_rss,
    }
}

pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: u64, rss: u64) -> Point {
        Point {
            step,
            at_s: step as f64,
            rss,
            tracked: rss / 2,
        }
    }

    #[test]
    fn the_rss_figures_come_from_the_steps_and_the_peak_decides() {
        let mut series = Series::new();
        for (step, rss) in [(0, 30), (1, 90), (2, 50), (3, 70)] {
            series.push(point(step, rss));
        }
        let r = rss_report(&series, 100, 104, 40);
        assert_eq!((r.min_bytes, r.median_bytes, r.max_bytes), (30, 70, 90));
        assert!(r.within_budget, "4 % over is within the 5 % tolerance");
        assert!(!rss_report(&series, 100, 106, 40).within_budget);
        let empty = rss_report(&Series::new(), 100, 50, 40);
        assert_eq!(
            (empty.min_bytes, empty.median_bytes, empty.max_bytes),
            (40, 40, 40)
        );
    }

    #[test]
    fn a_long_session_keeps_its_extremes_and_a_bounded_series() {
        let mut series = Series::new();
        for step in 0..20_000 {
            series.push(point(step, 1000 + step % 7));
        }
        series.push(point(20_000, 5));
        assert!(series.points().len() < Series::MAX);
        assert_eq!((series.min_rss, series.max_rss), (5, 1006));
        assert_eq!(ratio(1, 4), 0.25);
        assert_eq!(ratio(0, 0), 0.0);
    }
}
