//! Recording a window of pool events, and what it tells: a timeline plot, the blocks
//! still held at the end, and the large allocations.
//!
//! A [`Profiler`] is attached to a [`MemoryPool`] and records a simulated inference
//! session of 40 steps. Each step allocates activations (16-64 KiB, labelled
//! `"activations"`) and frees them again; every fifth step appends a 256 KiB block to a
//! key-value cache (`"kv-cache"`) that is kept; once a 6 MiB weight buffer is loaded and
//! kept (`"weights"`); halfway a 3 MiB scratch buffer comes and goes (`"scratch"`); and
//! a few small unlabelled blocks are left behind. At the end the cache is emptied, so the
//! plot shows the reserved bytes falling. The window closes before anything kept is
//! freed, so the leak report lists the cache, the weights and the unlabelled blocks, but
//! not the activations, the scratch buffer, or a block allocated before the window and
//! freed inside it. The demo checks that and fails otherwise.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p memwarden-examples --example memory_profiler_demo [-- --svg PATH] [--json PATH]
//! ```
//!
//! `--svg` sets where the timeline plot goes (default: `memwarden_profiler_timeline.svg`
//! in the system's temporary directory); `--json` also writes the timeline as JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use memwarden::core::ByteSize;
use memwarden_pool::profiler::Profiler;
use memwarden_pool::{Block, MemoryPool};

/// Steps of the simulated session.
const STEPS: usize = 40;
/// Blocks at or above this size are reported as large.
const LARGE: u64 = 1 << 20;
const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// Alignment asked for every block.
const ALIGN: usize = 64;

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let args = Args::parse()?;
    let pool = MemoryPool::new();
    let profiler = Arc::new(Profiler::new());
    pool.set_profiler(Some(Arc::clone(&profiler)));

    // Allocated before the window: its free inside the window is not a leak's opposite.
    let early = pool.allocate_labeled(512 * KIB, ALIGN, "before the window")?;

    profiler.start();
    let kept = session(&pool, early)?;
    pool.empty_cache();
    let timeline = profiler.stop();
    println!(
        "memory profiler demo: {} events in {:.1} ms ({} dropped), peak allocated {}, \
         peak reserved {}",
        timeline.events().len(),
        timeline.duration_ns() as f64 / 1e6,
        timeline.dropped(),
        ByteSize::b(timeline.peak_allocated()),
        ByteSize::b(timeline.peak_reserved())
    );

    timeline
        .write_svg(&args.svg)
        .with_context(|| format!("cannot write the timeline to {}", args.svg.display()))?;
    println!("timeline plot: {}", args.svg.display());
    if let Some(path) = &args.json {
        std::fs::write(path, timeline.to_json())
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("timeline JSON: {}", path.display());
    }

    let leaks = timeline.leaks();
    println!("\n== blocks allocated in the window and still live at its end");
    print!("{leaks}");
    let large = timeline.large_allocations(LARGE);
    println!(
        "\n== allocations of {} or more ({})",
        ByteSize::b(LARGE),
        large.len()
    );
    for allocation in &large {
        println!("{allocation}");
    }

    // What the session kept is exactly what the report found.
    let labels: Vec<Option<&str>> = leaks.groups.iter().map(|g| g.label.as_deref()).collect();
    ensure!(
        labels == [Some("weights"), Some("kv-cache"), None],
        "leak groups {labels:?}"
    );
    ensure!(leaks.blocks == kept.len(), "{} kept, {leaks}", kept.len());
    let kept_bytes: usize = kept.iter().map(Block::len).sum();
    ensure!(
        leaks.groups.iter().map(|g| g.requested).sum::<u64>() == kept_bytes as u64,
        "{leaks}"
    );
    let large_labels: Vec<Option<&str>> = large.iter().map(|l| l.label.as_deref()).collect();
    ensure!(
        large_labels == [Some("weights"), Some("scratch")],
        "large allocations {large_labels:?}"
    );
    ensure!(large[1].freed_at_ns.is_some() && large[0].freed_at_ns.is_none());
    drop(kept);
    Ok(())
}

/// The simulated session; returns the blocks it keeps.
fn session(pool: &MemoryPool, early: Block) -> anyhow::Result<Vec<Block>> {
    let mut kept = Vec::new();
    let mut early = Some(early);
    let mut scratch = None;
    for step in 0..STEPS {
        if step == 2 {
            kept.push(pool.allocate_labeled(6 * MIB, ALIGN, "weights")?);
        }
        if step % 5 == 0 {
            kept.push(pool.allocate_labeled(256 * KIB, ALIGN, "kv-cache")?);
        }
        if step == STEPS / 2 {
            scratch = Some(pool.allocate_labeled(3 * MIB, ALIGN, "scratch")?);
            drop(early.take());
        }
        if step == STEPS / 2 + 5 {
            scratch = None;
        }
        if step % 13 == 7 {
            kept.push(pool.allocate(200 + step, ALIGN)?);
        }
        let mut activations = Vec::new();
        for layer in 0..8 {
            let size = (16 + 6 * ((step + layer) % 8)) * KIB;
            let mut block = pool.allocate_labeled(size, ALIGN, "activations")?;
            block.as_mut_slice()[0] = layer as u8;
            activations.push(block);
        }
        std::thread::sleep(Duration::from_millis(1));
        drop(activations);
    }
    ensure!(scratch.is_none());
    Ok(kept)
}

struct Args {
    svg: PathBuf,
    json: Option<PathBuf>,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut args = Args {
            svg: std::env::temp_dir().join("memwarden_profiler_timeline.svg"),
            json: None,
        };
        let mut argv = std::env::args().skip(1);
        while let Some(arg) = argv.next() {
            match arg.as_str() {
                "--svg" => args.svg = argv.next().context("--svg needs a path")?.into(),
                "--json" => args.json = Some(argv.next().context("--json needs a path")?.into()),
                other => bail!("unknown argument {other:?} (expected --svg PATH, --json PATH)"),
            }
        }
        Ok(args)
    }
}
