//! `--timeline out.svg`: RSS, tracked bytes and the budget over the session, with the
//! governor's releases marked.

use std::path::Path;

use plotters::prelude::*;

/// One reading of the session, taken after a step.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Point {
    pub(crate) step: u64,
    /// Simulated seconds since the start.
    pub(crate) at_s: f64,
    pub(crate) rss: u64,
    pub(crate) tracked: u64,
}

/// A release to mark: when, and the RSS before and after.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    pub(crate) at_s: f64,
    pub(crate) rss_before: u64,
    pub(crate) rss_after: u64,
}

const MIB: f64 = (1 << 20) as f64;

/// Draws the picture into `path` (through a temporary file, renamed into place).
pub(crate) fn write(
    path: &Path,
    points: &[Point],
    marks: &[Mark],
    budget: u64,
    warning: f64,
) -> anyhow::Result<()> {
    crate::output::write_atomic(path, |tmp| draw(tmp, points, marks, budget, warning))
}

fn draw(
    path: &Path,
    points: &[Point],
    marks: &[Mark],
    budget: u64,
    warning: f64,
) -> anyhow::Result<()> {
    let plot_err = |e: DrawingAreaErrorKind<std::io::Error>| {
        anyhow::anyhow!("cannot draw the timeline into {}: {e}", path.display())
    };
    let root = SVGBackend::new(path, (1100, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let end = points.last().map_or(1.0, |p| p.at_s).max(1e-3);
    let top = points
        .iter()
        .map(|p| p.rss.max(p.tracked))
        .chain(marks.iter().map(|m| m.rss_before))
        .chain([budget])
        .max()
        .unwrap_or(1) as f64
        / MIB
        * 1.12;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "memwarden demo: resident memory under a {:.0} MiB budget",
                budget as f64 / MIB
            ),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("session time (simulated seconds)")
        .y_desc("MiB")
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_err)?;

    // The budget lines, then the two measured series, each with its legend entry.
    let level = |bytes: f64| vec![(0.0, bytes / MIB), (end, bytes / MIB)];
    let budget = budget as f64;
    let series = [
        (level(budget), RED.stroke_width(2), "budget"),
        (
            level(budget * 1.05),
            ShapeStyle::from(RED.mix(0.35)),
            "budget + 5 %",
        ),
        (
            level(budget * warning),
            ShapeStyle::from(RGBColor(230, 150, 0).mix(0.8)),
            "warning line",
        ),
        (
            points
                .iter()
                .map(|p| (p.at_s, p.tracked as f64 / MIB))
                .collect(),
            GREEN.mix(0.8).stroke_width(1),
            "tracked bytes",
        ),
        (
            points
                .iter()
                .map(|p| (p.at_s, p.rss as f64 / MIB))
                .collect(),
            BLUE.stroke_width(2),
            "process RSS",
        ),
    ];
    for (data, style, label) in series {
        chart
            .draw_series(LineSeries::new(data, style))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
    }
    chart
        .draw_series(marks.iter().map(|m| {
            PathElement::new(
                [
                    (m.at_s, m.rss_before as f64 / MIB),
                    (m.at_s, m.rss_after as f64 / MIB),
                ],
                BLACK.mix(0.5),
            )
        }))
        .map_err(plot_err)?;
    chart
        .draw_series(
            marks
                .iter()
                .map(|m| Circle::new((m.at_s, m.rss_after as f64 / MIB), 2, BLACK.filled())),
        )
        .map_err(plot_err)?
        .label("release (RSS before → after)")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, BLACK.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}
