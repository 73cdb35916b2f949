//! memwarden's `compact()` against `free` alone: how much of a released cache's memory
//! goes back to the operating system.
//!
//! Run with `cargo bench -p memwarden-benches --bench defrag_vs_free`. Under `cargo test
//! --benches` (no `--bench` argument) the heap is ten 4 MiB groups instead of ten
//! 100 MiB ones: the figures print, but are a smoke test, not a measurement.
//!
//! One process, one heap, measured by its resident set (RSS, `/proc/self/statm`) at each
//! step, so the peer and memwarden are the same run: the peer is the state right after
//! `free`, memwarden the state after `compact()` on top of it.
//!
//! 1. **Grouped.** Ten groups of 4–64 KiB blocks (below glibc's mmap threshold: they
//!    come from the heap) are allocated one after the other and written, so that each
//!    page is resident; the first nine are freed while the tenth stays live above them,
//!    as when a reaper drops nine old generations of a cache. The RSS is read after the
//!    frees (`free` alone) and after `Defragmenter::compact` (one `malloc_trim(0)` on
//!    glibc). The fraction returned is the RSS fall from the full heap over the bytes
//!    freed.
//! 2. **Interleaved.** The same amount in 400-byte blocks with every tenth kept live
//!    across the whole range: nine tenths of the bytes are free, but every 4 KiB page
//!    still holds a live block, so no trim can return anything. This is the limit of
//!    trimming, printed beside the grouped case.
//!
//! The goal: after releasing nine of ten 100 MiB groups, `compact()` returns at
//! least 90% of the freed bytes. The summary prints it against the measured figure,
//! then one `ratio` line per comparison, memwarden first (for RSS a ratio below 1 is
//! better).

use memwarden_benches::report::{self, Ratios, times};
use std::time::Instant;

use memwarden_defrag::{DefragConfig, Defragmenter, RunReport, Trigger};

const MIB: usize = 1 << 20;
/// Cache generations in the grouped case.
const GROUPS: usize = 10;
/// Block size of the interleaved case.
const SMALL_BLOCK: usize = 400;
/// The interleaved case keeps one block in this many.
const KEEP_EVERY: usize = 10;
/// The goal: the share of the freed bytes `compact()` returns in the grouped case.
const GOAL: f64 = 0.9;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let started = Instant::now();
    let group_mib = if full { 100 } else { 4 };
    let total = GROUPS * group_mib * MIB;
    let defrag = Defragmenter::builder(DefragConfig::manual())
        .build()
        .expect("the manual config is valid");
    if defrag.rss().is_none() {
        println!("defrag_vs_free: no RSS source on this platform, nothing to measure");
        return;
    }
    println!(
        "defrag_vs_free: {GROUPS} groups of {group_mib} MiB per case, RSS from /proc/self/statm"
    );

    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let grouped = measure(
        &defrag,
        total,
        || rng.size(4 << 10, 64 << 10),
        |i, n| i * GROUPS / n < GROUPS - 1,
    );
    grouped.print("grouped: nine groups of 4-64 KiB blocks freed below a live one");
    let interleaved = measure(&defrag, total, || SMALL_BLOCK, |i, _| i % KEEP_EVERY != 0);
    interleaved.print(&format!(
        "interleaved: {SMALL_BLOCK}-byte blocks, one in {KEEP_EVERY} kept across the range"
    ));

    let returned = grouped.with_compact();
    let goals = vec![(
        format!(
            "goal compact returns >= {:.0}% of the freed bytes (grouped): {:.1}%",
            GOAL * 100.0,
            returned * 100.0
        ),
        returned >= GOAL,
    )];
    println!(
        "\nreturned of freed, grouped: free alone {:.1}%, with compact {:.1}%; interleaved: \
         free alone {:.1}%, with compact {:.1}%",
        grouped.free_alone() * 100.0,
        returned * 100.0,
        interleaved.free_alone() * 100.0,
        interleaved.with_compact() * 100.0
    );
    let mut ratios = Ratios::default();
    ratios.add(
        "rss-after-release grouped",
        "compact",
        "free-alone",
        grouped.after_compact as f64 / grouped.after_free as f64,
    );
    ratios.add(
        "rss-after-release interleaved",
        "compact",
        "free-alone",
        interleaved.after_compact as f64 / interleaved.after_free as f64,
    );
    report::print_summary(full, started, &goals, &ratios);
}

/// The RSS at each step of one case.
struct Figures {
    blocks: usize,
    allocated: u64,
    freed: u64,
    full: u64,
    after_free: u64,
    after_compact: u64,
    report: RunReport,
}

impl Figures {
    /// The share of the freed bytes `free` alone gave back to the OS.
    fn free_alone(&self) -> f64 {
        self.full.saturating_sub(self.after_free) as f64 / self.freed as f64
    }

    /// The share of the freed bytes given back once `compact()` ran too.
    fn with_compact(&self) -> f64 {
        self.full.saturating_sub(self.after_compact) as f64 / self.freed as f64
    }

    fn print(&self, title: &str) {
        let mib = |bytes: u64| bytes as f64 / MIB as f64;
        println!("\n### {title}");
        println!(
            "{} blocks, {:.1} MiB freed ({:.0}% of the bytes)",
            self.blocks,
            mib(self.freed),
            self.freed as f64 / self.allocated as f64 * 100.0
        );
        println!("| step                  |   RSS MiB | returned of freed |");
        println!("|-----------------------|-----------|-------------------|");
        println!(
            "| full heap             | {:>9.1} |                   |",
            mib(self.full)
        );
        println!(
            "| free alone (peer)     | {:>9.1} | {:>16.1}% |",
            mib(self.after_free),
            self.free_alone() * 100.0
        );
        println!(
            "| free + compact()      | {:>9.1} | {:>16.1}% |",
            mib(self.after_compact),
            self.with_compact() * 100.0
        );
        println!(
            "compact(): {:.1} MiB in {:.1} ms, backends {:?}; RSS after / free alone: {}",
            mib(self.report.returned_bytes),
            self.report.duration.as_secs_f64() * 1e3,
            self.report
                .trim
                .backends
                .iter()
                .map(|run| run.backend.to_string())
                .collect::<Vec<_>>(),
            times(self.after_compact as f64 / self.after_free as f64)
        );
    }
}

/// Allocates `total` bytes of blocks sized by `size`, frees those `free` picks (given the
/// index and the count), and compacts; the heap is released and trimmed again after.
fn measure(
    defrag: &Defragmenter,
    total: usize,
    size: impl FnMut() -> usize,
    free: impl Fn(usize, usize) -> bool,
) -> Figures {
    let rss = || defrag.rss().expect("RSS was readable at start");
    let mut blocks = Blocks::allocate(total, size);
    let count = blocks.0.len();
    let allocated = blocks.0.iter().flatten().map(|b| b.len() as u64).sum();
    let full = rss();
    let freed = blocks.free_where(|i| free(i, count));
    let after_free = rss();
    let report = defrag.compact(Trigger::Manual);
    let after_compact = rss();
    drop(blocks);
    memwarden_defrag::trim(false);
    Figures {
        blocks: count,
        allocated,
        freed,
        full,
        after_free,
        after_compact,
        report,
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
