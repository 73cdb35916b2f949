//! Returning a released cache's memory to the operating system, and where that stops.
//!
//! Two acts on the process's own heap, each measured by its resident set (RSS) as the
//! OS reports it, and checked as it goes on Linux with glibc (the demo fails if the heap
//! behaves otherwise):
//!
//! 1. **Groups.** A cache of 4–64 KiB blocks (below glibc's mmap threshold, so they come
//!    from the heap) is filled in ten groups, one after the other, so that the last group
//!    sits above the others. Nine groups are released, the way a reaper drops old cache
//!    generations, while the newest stays live. `free` gives the blocks back to malloc,
//!    but not to the OS: the heap's top is still in use, so the RSS does not move. The
//!    released bytes are reported to a [`Defragmenter`] with a threshold a quarter of the
//!    cache; its monitor thread sees the threshold passed and compacts (`malloc_trim`),
//!    and the RSS falls by about what was freed.
//! 2. **Fine interleaving.** The same amount of 400-byte blocks, with every tenth kept
//!    live across the whole range. Nine tenths of the bytes are free, but every 4 KiB
//!    page still holds a live block, and the OS takes memory back only by whole pages:
//!    a compaction returns next to nothing, and its report says so. Only moving the live
//!    blocks would help, which no allocator does. (The automatic triggers are switched
//!    off at runtime first, so this release is only counted, and the run is a manual one.)
//!
//! Then the defragmenter's statistics are printed as JSON. Run it with:
//!
//! ```text
//! cargo run --release -p memwarden-examples --example defragmentation_demo -- --mib 1024
//! ```
//!
//! `--mib N` sets the size of each act's heap (default 1024; `--mib 200` runs in a moment),
//! `--aggressive` trims in rounds (see the crate docs). Elsewhere than Linux the figures
//! print as "n/a" and nothing is checked.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use memwarden::core::ByteSize;
use memwarden_defrag::{DefragConfig, Defragmenter, RunReport, Trigger, rss};

const MIB: usize = 1 << 20;
/// Cache generations in act 1.
const GROUPS: usize = 10;
/// Block size in act 2: ten blocks, one kept, span a little more than a page.
const SMALL_BLOCK: usize = 400;
/// Act 2 keeps one block in this many.
const KEEP_EVERY: usize = 10;
/// Whether this platform's figures are checked.
const CHECKED: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let args = Args::parse()?;
    let total = args.mib * MIB;
    let defrag = Defragmenter::builder(DefragConfig {
        released_threshold: (total / 4) as u64,
        interval: None,
        aggressive: args.aggressive,
        poll: Duration::from_millis(100),
        ..DefragConfig::default()
    })
    .start()?;
    println!(
        "defragmentation demo: {} per act, RSS at start {}",
        size(Some(total as u64)),
        size(rss::current())
    );

    // Act 1: nine groups freed below a live one.
    println!("\n== act 1: ten cache groups of 4-64 KiB blocks, the newest kept live");
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut cache = Blocks::allocate(total, || rng.size(4 << 10, 64 << 10));
    let count = cache.len();
    let group_of = |index: usize| index * GROUPS / count;
    let full = defrag.rss();
    let freed = cache.free_where(|index| group_of(index) < GROUPS - 1);
    let after_free = defrag.rss();
    println!(
        "allocated {count} blocks; freed {} in nine groups",
        size(Some(freed))
    );
    defrag.notify_released(freed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while defrag.stats().runs == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = defrag.stats();
    let report = stats
        .last
        .context("the monitor thread did not compact within 30 s")?;
    ensure!(report.trigger == Trigger::ReleasedBytes, "{report:?}");
    let by_free = print_act(full, after_free, freed, &report);
    if CHECKED {
        ensure!(
            by_free < 0.1,
            "free alone returned {:.0}% of the freed bytes",
            by_free * 100.0
        );
        ensure!(
            report.returned_fraction(freed) > 0.9,
            "the compaction returned only {:.0}% of the freed bytes",
            report.returned_fraction(freed) * 100.0
        );
    }
    drop(cache);
    // The live group is gone too; the bare platform call hands it back without a run
    // in the statistics, so act 2 starts from a trimmed heap.
    memwarden_defrag::trim(false);

    // Act 2: every tenth small block kept across the whole range.
    println!(
        "\n== act 2: {SMALL_BLOCK}-byte blocks, one in {KEEP_EVERY} kept live across the range"
    );
    let mut scattered = Blocks::allocate(total, || SMALL_BLOCK);
    let full = defrag.rss();
    let freed = scattered.free_where(|index| index % KEEP_EVERY != 0);
    let after_free = defrag.rss();
    println!(
        "allocated {} blocks; freed {} ({:.0}% of the bytes)",
        scattered.len(),
        size(Some(freed)),
        freed as f64 / total as f64 * 100.0
    );
    // Automatic triggers off at runtime: the release is only counted, and act 2
    // compacts by hand.
    defrag.set_config(DefragConfig {
        enabled: false,
        ..defrag.config()
    })?;
    defrag.notify_released(freed);
    let report = defrag.compact(Trigger::Manual);
    print_act(full, after_free, freed, &report);
    println!(
        "every page still holds a live block: the OS takes memory back by whole pages, so \
         no trim can return it"
    );
    if CHECKED {
        ensure!(
            report.returned_fraction(freed) < 0.1,
            "a trim returned {:.0}% of finely interleaved free memory",
            report.returned_fraction(freed) * 100.0
        );
    }
    drop(scattered);

    println!("\n== statistics");
    let mut stats = defrag.stats();
    stats.recent.clear(); // `last` shows the shape; the history repeats it
    println!("{}", serde_json::to_string_pretty(&stats)?);
    println!("peak RSS of the demo: {}", size(rss::peak()));
    if !CHECKED {
        println!("(figures are not checked on this platform)");
    }
    Ok(())
}

/// Prints one act's table; returns the share of the freed bytes `free` alone returned.
fn print_act(full: Option<u64>, after_free: Option<u64>, freed: u64, report: &RunReport) -> f64 {
    let fraction = |returned: Option<u64>| match returned {
        Some(bytes) if freed > 0 => format!("{:5.1}%", bytes as f64 / freed as f64 * 100.0),
        _ => "  n/a".to_owned(),
    };
    let by_free = full.zip(after_free).map(|(f, a)| f.saturating_sub(a));
    println!("| step                           |        RSS | returned of freed |");
    println!("|--------------------------------|------------|-------------------|");
    println!(
        "| after allocating               | {:>10} |                   |",
        size(full)
    );
    println!(
        "| after free (no compact)        | {:>10} | {:>17} |",
        size(after_free),
        fraction(by_free)
    );
    println!(
        "| after compact ({:<14}) | {:>10} | {:>17} |",
        report.trigger,
        size(report.rss_after),
        fraction(full.zip(report.rss_after).map(|(f, a)| f.saturating_sub(a)))
    );
    println!(
        "compact: {} returned in {:.1} ms ({} reported released before it; backends: {})",
        size(Some(report.returned_bytes)),
        report.duration.as_secs_f64() * 1e3,
        size(Some(report.released_since_last)),
        report
            .trim
            .backends
            .iter()
            .map(|run| format!("{} {:?}", run.backend, run.effect))
            .collect::<Vec<_>>()
            .join(", ")
    );
    by_free.map_or(0.0, |bytes| bytes as f64 / freed.max(1) as f64)
}

fn size(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "n/a".to_owned(), |b| ByteSize::b(b).to_string())
}

/// The command line.
struct Args {
    mib: usize,
    aggressive: bool,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut args = Args {
            mib: 1024,
            aggressive: false,
        };
        let mut argv = std::env::args().skip(1);
        while let Some(arg) = argv.next() {
            match arg.as_str() {
                "--mib" => {
                    let value = argv.next().context("--mib needs a number")?;
                    args.mib = value
                        .parse()
                        .with_context(|| format!("--mib {value:?} is not a number"))?;
                    ensure!(args.mib >= 10, "--mib must be at least 10");
                }
                "--aggressive" => args.aggressive = true,
                other => bail!("unknown argument {other:?} (expected --mib N, --aggressive)"),
            }
        }
        Ok(args)
    }
}

/// Heap blocks in allocation order, each filled so that its pages are resident.
struct Blocks(Vec<Option<Box<[u8]>>>);

impl Blocks {
    fn allocate(total: usize, mut size: impl FnMut() -> usize) -> Self {
        // Sized up front: a growing vector would reallocate between the blocks.
        let mut blocks = Vec::with_capacity(total / SMALL_BLOCK + 1);
        let mut allocated = 0;
        while allocated < total {
            let bytes = size();
            blocks.push(Some(vec![0xA5u8; bytes].into_boxed_slice()));
            allocated += bytes;
        }
        Blocks(blocks)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Frees the blocks whose index `free` picks; returns the bytes freed.
    fn free_where(&mut self, free: impl Fn(usize) -> bool) -> u64 {
        let mut freed = 0;
        for (index, slot) in self.0.iter_mut().enumerate() {
            if free(index)
                && let Some(block) = slot.take()
            {
                freed += block.len() as u64;
            }
        }
        freed
    }
}

/// A deterministic xorshift, for block sizes.
struct XorShift(u64);

impl XorShift {
    fn size(&mut self, min: usize, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        min + (self.0 % (max - min + 1) as u64) as usize
    }
}
