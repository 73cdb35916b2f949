//! `memwarden plan MODEL.onnx|GRAPH.json|BUFFERS.csv`: a tensor memory plan for one
//! inference graph, or for a buffer list in MiniMalloc's CSV format, as text, JSON,
//! CSV or an SVG picture of the arena.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use memwarden::core::ByteSize;
use memwarden::lifetime::csv::BufferSpec;
use memwarden::lifetime::ir::{Dim, Graph};
use memwarden::lifetime::{self, Plan, PlanOptions, RangePlan, Strategy, Unknown};
use plotters::prelude::*;

/// Arguments of `memwarden plan`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The graph: an `.onnx` model or a graph in memwarden's JSON format; or, by a
    /// `.csv` extension, a buffer list in MiniMalloc's CSV format (header
    /// `id,lower,upper,size`, each buffer live over `[lower, upper)`). A regular file
    /// of at most 2 GiB (ONNX), 256 MiB (JSON) or 64 MiB (CSV).
    model: PathBuf,
    /// The placement strategy: naive, greedy-size, greedy-breadth, best, or exact
    /// (the exact search with the whole budget).
    #[arg(long, default_value = "best", value_parser = parse_strategy)]
    strategy: Strategy,
    /// Every offset is a multiple of this many bytes (a power of two). Default: 64
    /// for a graph, 1 for a CSV buffer list (MiniMalloc's instances are in bytes,
    /// unaligned).
    #[arg(long)]
    align: Option<u64>,
    /// Find a layout within this many bytes ("1048576", "1MiB", "64 k") instead of
    /// the smallest: the search stops at the first layout that fits. When none
    /// exists (proved) or none is found in time, exit 2 saying which. Without
    /// --budget-ms and --effort, the search may run up to 60 s and 10^12 work units.
    #[arg(long, value_name = "BYTES", value_parser = parse_capacity)]
    capacity: Option<ByteSize>,
    /// Search work `best` and `exact` may spend, in placement work units: the same
    /// input and effort always give the same plan. Default: 4000000 (about 10 ms in a
    /// release build), or 10^12 with --capacity.
    #[arg(long, value_name = "UNITS")]
    effort: Option<u64>,
    /// Wall-clock cap on the search, in milliseconds: a safety net that stops it
    /// before --effort is spent on a slow machine (the plan then depends on the
    /// machine's speed; a warning says so). Default: 100, or 60000 with --capacity.
    #[arg(long, value_name = "MS")]
    budget_ms: Option<u64>,
    /// Binds a symbolic dimension: `N=8`, or a range `N=1..32` that plans for the
    /// largest value and prints the arena for each. Repeat for several names. Graphs
    /// only.
    #[arg(long = "dim", value_name = "NAME=VALUE|LO..HI", value_parser = parse_dim)]
    dims: Vec<DimArg>,
    /// Lets an elementwise op write its output over an input that dies at that step.
    /// Graphs only.
    #[arg(long)]
    inplace: bool,
    /// What to do with tensors whose size stays unknown: stop with an error naming
    /// them (the default), or plan without them and list them. Graphs only.
    #[arg(long, value_enum)]
    unknown: Option<UnknownArg>,
    /// How many of the largest tensors the text report lists.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
    /// Write to this file (through a temporary name) instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PlanFormat {
    /// A summary and the largest tensors, for people.
    Text,
    /// The whole plan as one JSON document.
    Json,
    /// MiniMalloc's output format: `id,lower,upper,size,offset`, one line per tensor.
    Csv,
    /// A picture of the arena: steps across, offsets up.
    Svg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum UnknownArg {
    Error,
    Skip,
}

/// One `--dim`: a fixed value or an inclusive range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DimArg {
    name: String,
    lo: u64,
    hi: u64,
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    s.parse::<Strategy>().map_err(|e| e.to_string())
}

fn parse_capacity(s: &str) -> Result<ByteSize, String> {
    s.parse::<ByteSize>().map_err(|e| e.to_string())
}

fn parse_dim(s: &str) -> Result<DimArg, String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE or NAME=LO..HI"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{s}` has no dimension name before `=`"));
    }
    let number = |text: &str| {
        text.trim()
            .parse::<u64>()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("`{text}` in `{s}` is not a positive whole number"))
    };
    let (lo, hi) = match value.split_once("..") {
        Some((lo, hi)) => (number(lo)?, number(hi.trim_start_matches('='))?),
        None => {
            let v = number(value)?;
            (v, v)
        }
    };
    if lo > hi {
        return Err(format!("the range in `{s}` is empty ({lo} > {hi})"));
    }
    Ok(DimArg {
        name: name.to_owned(),
        lo,
        hi,
    })
}

/// The largest ONNX model `plan` reads: the importer's limit, protobuf's on one message.
const MAX_ONNX_BYTES: u64 = memwarden::lifetime::onnx::MAX_FILE_BYTES;

/// The largest JSON graph `plan` reads: 256 MiB. A JSON graph holds names and shapes,
/// no weights: hundreds of thousands of tensors take a few MiB, and parsing takes
/// several times the file's size in memory.
const MAX_JSON_BYTES: u64 = 256 << 20;

/// The most a CSV buffer list may weigh: 64 MiB. MiniMalloc's largest instances are
/// well under a megabyte, and the whole file is read into memory.
const MAX_CSV_BYTES: u64 = 64 << 20;

/// Reads the whole of the input file, which must be a regular file of at most `limit`
/// bytes (a FIFO would block, a device such as `/dev/zero` never end).
fn read_input(path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    memwarden::core::fs::read_regular(path, limit)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Reads the graph: ONNX by its extension or magic, JSON when it starts with `{`.
fn load(path: &Path) -> anyhow::Result<Graph> {
    let by_extension = path.extension().is_some_and(|e| e == "json");
    let limit = if by_extension {
        MAX_JSON_BYTES
    } else {
        MAX_ONNX_BYTES
    };
    let bytes = read_input(path, limit)?;
    let json = by_extension || bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if json {
        if bytes.len() as u64 > MAX_JSON_BYTES {
            bail!(
                "cannot read {}: too large for a JSON graph: {} bytes, over the limit of {}",
                path.display(),
                bytes.len(),
                ByteSize::b(MAX_JSON_BYTES)
            );
        }
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
        return Graph::from_json(text).with_context(|| format!("bad graph in {}", path.display()));
    }
    // Errors name the file as given; the graph is named by the file's own name.
    let mut graph = lifetime::onnx::import_bytes(&path.display().to_string(), &bytes)?;
    // Exporters name nearly every graph "main_graph" or "torch_jit"; the file says more.
    graph.name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(graph)
}

/// Whether `path` names a CSV buffer list (by its extension, in any case).
fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Reads a buffer list in MiniMalloc's CSV format.
fn load_buffers(path: &Path) -> anyhow::Result<Vec<BufferSpec>> {
    let bytes = read_input(path, MAX_CSV_BYTES)?;
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    lifetime::csv::read_buffers(text)
        .with_context(|| format!("bad buffer list in {}", path.display()))
}

/// Every symbolic dimension named in the graph's shapes, bodies included.
fn symbols(graph: &Graph, out: &mut BTreeSet<String>) {
    for t in &graph.tensors {
        for d in t.shape.iter().flatten() {
            if let Dim::Sym(s) = d {
                out.insert(s.clone());
            }
        }
    }
    for node in &graph.nodes {
        for (_, body) in &node.subgraphs {
            symbols(body, out);
        }
    }
}

/// A planning error, named by the model file; unknown sizes get the options that
/// resolve them.
fn plan_error(model: &Path, e: lifetime::LifetimeError) -> anyhow::Error {
    if let lifetime::LifetimeError::UnknownSizes { tensors } = &e {
        let list: Vec<String> = tensors.iter().map(ToString::to_string).collect();
        return anyhow::anyhow!(
            "{}: {} tensor(s) of unknown size: {} (bind symbols with --dim NAME=VALUE, or \
             plan without these tensors with --unknown skip)",
            model.display(),
            tensors.len(),
            list.join(", ")
        );
    }
    anyhow::Error::from(e).context(format!("cannot plan {}", model.display()))
}

/// The plan, the per-value table when a `--dim` was a range, and the capacity
/// asked for.
struct Outcome {
    plan: Plan,
    range: Option<RangePlan>,
    capacity: Option<u64>,
}

/// The default `--effort` with `--capacity`: enough to run until a layout is found,
/// none is proved to exist, or the time cap trips.
const CAPACITY_EFFORT: u64 = 1_000_000_000_000;
/// The default `--budget-ms` with `--capacity`.
const CAPACITY_TIME_CAP: Duration = Duration::from_secs(60);

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let outcome = if is_csv(&args.model) {
        plan_csv(args)?
    } else {
        plan_graph(args)?
    };
    match args.format {
        PlanFormat::Text => emit(args, render_text(&outcome, args.top).as_bytes()),
        PlanFormat::Json => {
            let mut json = outcome.plan.to_json();
            if let Some(range) = &outcome.range {
                json["range"] = range_json(range);
            }
            let mut text = serde_json::to_string_pretty(&json)?;
            text.push('\n');
            emit(args, text.as_bytes())
        }
        PlanFormat::Csv => emit(args, lifetime::csv::write_plan(&outcome.plan).as_bytes()),
        PlanFormat::Svg => {
            let svg = render_svg(&outcome.plan)?;
            emit(args, svg.as_bytes())
        }
    }
}

/// The options every input takes: strategy, alignment, search budget, capacity.
fn options(args: &Args, default_align: u64) -> anyhow::Result<PlanOptions> {
    let capacity = args.capacity.map(u64::from);
    let (effort, time_cap) = match capacity {
        Some(_) => (CAPACITY_EFFORT, CAPACITY_TIME_CAP),
        None => (lifetime::DEFAULT_EFFORT, lifetime::DEFAULT_TIME_CAP),
    };
    let options = PlanOptions {
        strategy: args.strategy,
        align: args.align.unwrap_or(default_align),
        search_effort: args.effort.unwrap_or(effort),
        time_budget: args.budget_ms.map_or(time_cap, Duration::from_millis),
        capacity,
        ..PlanOptions::default()
    };
    if options.align == 0 {
        bail!("--align must be at least 1");
    }
    Ok(options)
}

/// Plans a buffer list in MiniMalloc's CSV format, named by the file's stem.
fn plan_csv(args: &Args) -> anyhow::Result<Outcome> {
    let path = &args.model;
    let graph_only: Vec<&str> = [
        ("--dim", !args.dims.is_empty()),
        ("--inplace", args.inplace),
        ("--unknown", args.unknown.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect();
    if !graph_only.is_empty() {
        bail!(
            "{}: {} {} not apply to a CSV buffer list (it has no graph: no symbols, no \
             ops, every size known)",
            path.display(),
            graph_only.join(" and "),
            if graph_only.len() == 1 { "does" } else { "do" }
        );
    }
    let options = options(args, 1)?;
    let buffers = load_buffers(path)?;
    let name = path.file_stem().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let plan =
        lifetime::csv::plan_buffers(&name, &buffers, &options).map_err(|e| plan_error(path, e))?;
    Ok(Outcome {
        plan,
        range: None,
        capacity: options.capacity,
    })
}

/// Plans an ONNX or JSON graph.
fn plan_graph(args: &Args) -> anyhow::Result<Outcome> {
    let graph = load(&args.model)?;
    let ranges: Vec<&DimArg> = args.dims.iter().filter(|d| d.lo != d.hi).collect();
    if ranges.len() > 1 {
        bail!(
            "only one --dim may be a range, got {}",
            ranges
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut known = BTreeSet::new();
    symbols(&graph, &mut known);
    let mut seen = BTreeMap::new();
    for d in &args.dims {
        if seen.insert(d.name.clone(), d.hi).is_some() {
            bail!("--dim {} is given twice", d.name);
        }
        // A typo (`n` for `N`) would otherwise be ignored, and the plan made without it.
        if !known.contains(&d.name) {
            let list = known.iter().cloned().collect::<Vec<_>>().join(", ");
            bail!(
                "{}: --dim {}: the graph has no dimension {} (its symbolic dimensions: {})",
                args.model.display(),
                d.name,
                d.name,
                if list.is_empty() { "none" } else { &list }
            );
        }
    }
    let mut options = PlanOptions {
        dims: seen,
        inplace: args.inplace,
        unknown: match args.unknown.unwrap_or(UnknownArg::Error) {
            UnknownArg::Error => Unknown::Error,
            UnknownArg::Skip => Unknown::Skip,
        },
        ..options(args, 64)?
    };
    Ok(match ranges.first() {
        Some(d) => {
            options.dims.remove(&d.name);
            let range = lifetime::plan_range(&graph, &options, &d.name, d.lo..=d.hi)
                .map_err(|e| plan_error(&args.model, e))?;
            Outcome {
                plan: range.plan.clone(),
                range: Some(range),
                capacity: options.capacity,
            }
        }
        None => Outcome {
            plan: lifetime::plan(&graph, &options).map_err(|e| plan_error(&args.model, e))?,
            range: None,
            capacity: options.capacity,
        },
    })
}

fn emit(args: &Args, bytes: &[u8]) -> anyhow::Result<()> {
    match &args.out {
        Some(path) => crate::output::write_bytes(path, bytes),
        None => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(bytes)?;
            stdout.flush()?;
            Ok(())
        }
    }
}

fn range_json(range: &RangePlan) -> serde_json::Value {
    serde_json::json!({
        "dim": range.dim,
        "rows": range.rows.iter().map(|r| serde_json::json!({
            "value": r.value,
            "naive_bytes": r.naive_bytes,
            "lower_bound_bytes": r.lower_bound_bytes,
            "arena_bytes": r.arena_bytes,
        })).collect::<Vec<_>>(),
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.3} MiB", bytes as f64 / f64::from(1 << 20))
}

fn render_text(outcome: &Outcome, top: usize) -> String {
    let p = &outcome.plan;
    let mut s = String::new();
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let _ = writeln!(s, "model            {}", p.model);
    let _ = writeln!(s, "steps            {}", p.steps);
    let _ = writeln!(s, "tensors          {}", p.tensors.len());
    let _ = writeln!(s, "strategy         {} (align {})", p.strategy, p.align);
    let _ = writeln!(s, "method           {}", p.method);
    let mut rows = vec![
        ("naive", p.naive_bytes),
        ("lower bound", p.lower_bound_bytes),
    ];
    rows.extend(outcome.capacity.map(|c| ("capacity", c)));
    rows.push(("arena", p.arena_bytes));
    for (label, bytes) in rows {
        let _ = writeln!(s, "{label:<16} {bytes:>14} B  {}", mib(bytes));
    }
    let optimal = if p.arena_bytes <= p.lower_bound_bytes {
        "yes (the arena is the lower bound)"
    } else if p.optimal {
        "yes (the exact search proved no smaller arena exists)"
    } else {
        "not proved"
    };
    let _ = writeln!(s, "optimal          {optimal}");
    let _ = writeln!(
        s,
        "arena / LB       {:.4}   (naive / arena {:.2}x)",
        ratio(p.arena_bytes, p.lower_bound_bytes),
        ratio(p.naive_bytes, p.arena_bytes)
    );
    let _ = writeln!(
        s,
        "planning time    {:.3} ms",
        p.planning_time.as_secs_f64() * 1e3
    );
    let aliased = p.tensors.iter().filter(|t| t.alias_of.is_some()).count();
    if aliased > 0 {
        let _ = writeln!(s, "in place         {aliased} tensors write over an input");
    }
    if !p.skipped.is_empty() {
        let _ = writeln!(
            s,
            "skipped          {} tensors of unknown size:",
            p.skipped.len()
        );
        for u in &p.skipped {
            let _ = writeln!(s, "  {u}");
        }
    }
    if let Some(range) = &outcome.range {
        let name = &range.dim;
        let _ = writeln!(s, "\narena per {name} (the plan above is for the largest):");
        let _ = writeln!(
            s,
            "  {name:>8}  {:>14}  {:>14}  {:>14}",
            "naive", "lower bound", "arena"
        );
        for r in &range.rows {
            let _ = writeln!(
                s,
                "  {:>8}  {:>14}  {:>14}  {:>14}",
                r.value, r.naive_bytes, r.lower_bound_bytes, r.arena_bytes
            );
        }
    }
    let mut largest: Vec<_> = p.tensors.iter().collect();
    largest.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    if top > 0 && !largest.is_empty() {
        let _ = writeln!(s, "\nlargest tensors:");
        let _ = writeln!(
            s,
            "  {:>12}  {:>11}  {:>12}  name",
            "bytes", "steps", "offset"
        );
        for t in largest.iter().take(top) {
            let _ = writeln!(
                s,
                "  {:>12}  {:>5}..{:<5}  {:>12}  {}{}",
                t.bytes,
                t.first_step,
                t.last_step,
                t.offset,
                t.name,
                t.alias_of
                    .as_ref()
                    .map_or_else(String::new, |a| format!(" (over {a})"))
            );
        }
    }
    s
}

/// The arena picture: steps across, offsets up, one rectangle per tensor.
fn render_svg(plan: &Plan) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 640)).into_drawing_area();
        let err =
            |e: DrawingAreaErrorKind<std::io::Error>| anyhow::anyhow!("cannot draw the arena: {e}");
        root.fill(&WHITE).map_err(err)?;
        // Steps may be timestamps (a CSV buffer list's `upper` up to 10^6 and more):
        // nothing below is per step, only per tensor.
        let steps = plan.steps.max(1) as f64;
        let peak = plan.arena_bytes.max(plan.lower_bound_bytes).max(1);
        // The offset axis in the largest unit the arena reaches: MiB for a network's
        // activations, bytes for MiniMalloc's small examples.
        let (unit, m) = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
            .into_iter()
            .find(|&(_, u)| peak >= u)
            .map_or(("B", 1.0), |(name, u)| (name, u as f64));
        let top = peak as f64 / m;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: {} arena {} (lower bound {}, naive {})",
                    plan.model,
                    plan.strategy,
                    ByteSize::b(plan.arena_bytes),
                    ByteSize::b(plan.lower_bound_bytes),
                    ByteSize::b(plan.naive_bytes)
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..steps, 0.0..top * 1.04)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc(format!("arena offset ({unit})"))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        let palette = [
            RGBColor(76, 114, 176),
            RGBColor(221, 132, 82),
            RGBColor(85, 168, 104),
            RGBColor(196, 78, 82),
            RGBColor(129, 114, 179),
            RGBColor(147, 120, 96),
            RGBColor(218, 139, 195),
            RGBColor(140, 140, 140),
        ];
        // Each tensor: a filled box with a thin outline, steps [first, last + 1) across.
        let corners = |t: &lifetime::PlannedTensor| {
            [
                (t.first_step as f64, t.offset as f64 / m),
                ((t.last_step + 1) as f64, (t.offset + t.bytes) as f64 / m),
            ]
        };
        chart
            .draw_series(plan.tensors.iter().enumerate().map(|(i, t)| {
                Rectangle::new(corners(t), palette[i % palette.len()].mix(0.75).filled())
            }))
            .map_err(err)?;
        chart
            .draw_series(
                plan.tensors
                    .iter()
                    .map(|t| Rectangle::new(corners(t), BLACK.mix(0.5).stroke_width(1))),
            )
            .map_err(err)?;
        let lb = plan.lower_bound_bytes as f64 / m;
        chart
            .draw_series(LineSeries::new(
                [(0.0, lb), (steps, lb)],
                RED.stroke_width(1),
            ))
            .map_err(err)?
            .label("lower bound")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
