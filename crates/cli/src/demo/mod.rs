//! `memwarden demo`: an editing-and-inference session that holds a real RSS budget.
//!
//! The session edits a video with machine help: it scrubs rendered frames, plays audio
//! clips, looks up subtitles and runs models. Which frame, clip, cue or model each step
//! touches follows a seeded Zipf law. Everything is real: frames and audio are heap
//! buffers that are read for real, subtitle indexes are maps, and the models are weight
//! files (generated once into a cache directory) that a
//! [`ModelRegistry`](memwarden::ModelRegistry) maps on first use, so inference makes their
//! pages resident.
//!
//! Everything is wired by [`Runtime::builder`] from the config, as a user's program
//! would: the module files split the work into the arguments (`args`), the session's
//! steps (`session`), the figures gathered at the end (`report`) and their text form
//! (`render`).
//!
//! The whole process is held to the budget by a [`Governor`](memwarden::Governor): before
//! each load it checks
//! the resident set plus the incoming bytes against the budget and releases (through the
//! prioritizer and the reaper) when they would pass the warning line; its monitor thread
//! reads the RSS every tick for growth nobody announced. Released frames are snapshotted
//! and restored on the next visit; the defragmenter returns what the allocator kept.
//! Time is a manual clock advanced 50 ms per step, so idle limits and TTLs from the config
//! play out the same on every machine.
//!
//! The run fails (exit code 1) if the peak RSS the OS recorded for the process passed the
//! budget by more than 5 %.

mod args;
mod models;
mod overhead;
mod render;
mod report;
mod session;
mod timeline;
mod workload;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use memwarden::core::{ByteSize, ManualClock};
use memwarden::runtime::{Budget, Runtime};
use memwarden::snapshot::StoreConfig;
use rand::SeedableRng;
use rand::rngs::StdRng;

pub(crate) use args::{Args, Mode};

use crate::Format;
use report::Report;
use session::Session;
use timeline::Mark;
use workload::Script;

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = crate::load_config(args.config.as_ref())?;
    crate::init_logging(config.logging.level);
    let budget = args.budget.unwrap_or(config.monitor.budget);
    let budget_bytes = budget.resolve()?;

    let models_dir = args.models_dir.clone().unwrap_or_else(models::default_dir);
    let written = models::ensure_files(&models_dir, args.small)?;
    if written > 0 && args.format == Format::Text {
        eprintln!(
            "wrote {written} model file(s) into {} (kept for the next run)",
            models_dir.display()
        );
    }

    if args.overhead {
        overhead::compare(args, &models_dir, budget_bytes)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.mode == Mode::Plain {
        let report = overhead::run_plain(args, &models_dir)?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }

    // Render frames are snapshotted before release (the config's snapshot_on_release)
    // into a store of the session's own, on disk only, so that the budget covers all
    // the memory the session holds; a fresh directory, removed when the session ends
    // however it ends.
    let scratch = tempfile::Builder::new()
        .prefix("memwarden-demo-")
        .tempdir()
        .context("cannot create a directory for the session's snapshots")?;
    let clock = ManualClock::new();
    let mut builder = Runtime::builder(&config)
        .budget(budget)
        .clock(Arc::new(clock.clone()))
        .snapshots(StoreConfig {
            memory_bytes: 0,
            disk_bytes: config.snapshot.max_bytes.as_u64(),
            ..StoreConfig::new(scratch.path())
        });
    if args.mode == Mode::Unbounded {
        // A budget and caps the session never reaches: only the bookkeeping runs.
        builder = builder
            .budget(Budget::Bytes(ByteSize::gib(1 << 20)))
            .uncapped();
    }
    let runtime = builder.start().with_context(|| {
        format!(
            "starting memwarden with its snapshots in {}",
            scratch.path().display()
        )
    })?;
    models::declare(runtime.registry(), &models_dir, args.small)?;

    let mut script = Script::new(StdRng::seed_from_u64(args.seed), models::MODELS.len())?;
    let session = Session::new(runtime, clock);
    let (mut runtime, outcome) =
        session.run(&mut script, args.steps, args.format != Format::Text)?;
    let governor = runtime.stop().context("the demo runs a governor")?;
    let report = Report::build(args, &runtime, &governor, outcome)?;
    drop(runtime);

    if let Some(path) = &args.timeline {
        let marks: Vec<Mark> = governor
            .releases
            .iter()
            .map(|e| Mark {
                at_s: e.at.as_secs_f64(),
                rss_before: e.rss_before,
                rss_after: e.rss_after,
            })
            .collect();
        timeline::write(
            path,
            &report.samples,
            &marks,
            report.budget_bytes,
            report.warning_fraction,
        )?;
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", render::render(&report)),
    }
    if let Some(path) = &args.timeline
        && args.format == Format::Text
    {
        println!("timeline written to {}", path.display());
    }
    if report.rss.within_budget {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: peak RSS {} passed the budget {} by more than 5 % ({:.3}x)",
            ByteSize::b(report.rss.peak_bytes),
            ByteSize::b(report.budget_bytes),
            report.rss.peak_over_budget
        );
        Ok(ExitCode::FAILURE)
    }
}
