//! Real compactions of a fragmented heap: what `free` leaves resident, what a trim
//! returns, and what no trim can return.

use memwarden_defrag::{Backend, DefragConfig, Effect, RunReport, Trigger};

use crate::heap::{Blocks, Heap, SYSTEM, XorShift};
use crate::{RSS_TESTS, manual};

const MIB: usize = 1 << 20;
/// The heap each test fragments.
const TOTAL: usize = 64 * MIB;

/// What fragmenting `heap` and compacting it gave.
struct Figures {
    freed: u64,
    /// RSS fallen between the allocation and the end of the frees, before any trim.
    by_free: u64,
    report: RunReport,
}

/// Allocates [`TOTAL`] bytes of blocks sized by `size`, frees those `keep` rejects, and
/// compacts (after an allocator-specific `settle`).
fn fragment_and_compact(
    heap: &'static Heap,
    size: impl FnMut() -> usize,
    keep: impl Fn(usize, usize) -> bool,
) -> Figures {
    let (defrag, _clock) = manual(DefragConfig::manual());
    let mut blocks = Blocks::allocate(heap, TOTAL, size);
    let count = blocks.len();
    let full = defrag.rss().expect("RSS is readable on Linux");
    let freed = blocks.free_unless(|i| keep(i, count));
    let after_free = defrag.rss().expect("RSS is readable on Linux");
    let report = defrag.compact(Trigger::Pressure);
    let stats = defrag.stats();
    assert_eq!(stats.runs, 1);
    assert_eq!(stats.by_trigger.pressure, 1);
    assert_eq!(stats.last.as_ref(), Some(&report));
    assert_eq!(stats.total_returned, report.returned_bytes);
    drop(blocks);
    Figures {
        freed,
        by_free: full.saturating_sub(after_free),
        report,
    }
}

/// Ten groups of 4–64 KiB blocks in allocation order; the last stays live, above the rest.
fn grouped(heap: &'static Heap) -> Figures {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    fragment_and_compact(
        heap,
        move || rng.size(4 << 10, 64 << 10),
        |i, n| i >= n * 9 / 10,
    )
}

/// 400-byte blocks with every tenth kept: every page keeps a live block.
fn interleaved(heap: &'static Heap) -> Figures {
    fragment_and_compact(heap, || 400, |i, _| i % 10 == 0)
}

fn check_returned(heap: &Heap, figures: &Figures) {
    let Figures {
        freed,
        by_free,
        report,
    } = figures;
    let (before, after) = (
        report.rss_before.expect("RSS before"),
        report.rss_after.expect("RSS after"),
    );
    assert_eq!(report.trigger, Trigger::Pressure);
    assert_eq!(report.returned_bytes, before.saturating_sub(after));
    assert!(
        by_free + report.returned_bytes > freed / 2,
        "{}: of {freed} freed bytes, free returned {by_free} and compact {}",
        heap.name,
        report.returned_bytes
    );
}

#[test]
fn compact_returns_what_free_cannot() {
    let _serial = RSS_TESTS.lock();
    let figures = grouped(&SYSTEM);
    check_returned(&SYSTEM, &figures);
    // glibc's `free` returns only the top of the heap, and the live group is there.
    assert!(
        figures.by_free < figures.freed / 10,
        "free alone returned {} of {}",
        figures.by_free,
        figures.freed
    );
    assert!(figures.report.returned_bytes > figures.freed / 2);
    assert_eq!(
        figures.report.trim.effect(Backend::GlibcMallocTrim),
        Some(Effect::Released)
    );
}

#[test]
fn fine_interleaving_cannot_be_returned() {
    let _serial = RSS_TESTS.lock();
    let figures = interleaved(&SYSTEM);
    // Nine tenths of the bytes are free, but no page is: the trim finds nothing whole.
    assert!(figures.freed > (TOTAL as u64) * 8 / 10);
    assert!(
        figures.report.returned_bytes < figures.freed / 10,
        "returned {} of {} freed bytes",
        figures.report.returned_bytes,
        figures.freed
    );
}

#[cfg(feature = "mimalloc")]
#[test]
fn mimalloc_heap_is_collected() {
    let _serial = RSS_TESTS.lock();
    let figures = grouped(&crate::heap::MIMALLOC);
    check_returned(&crate::heap::MIMALLOC, &figures);
    assert_eq!(
        figures.report.trim.effect(Backend::MimallocCollect),
        Some(Effect::Ran)
    );
}

#[cfg(feature = "jemalloc")]
#[test]
fn jemalloc_arenas_are_purged() {
    let _serial = RSS_TESTS.lock();
    let figures = grouped(&crate::heap::JEMALLOC);
    check_returned(&crate::heap::JEMALLOC, &figures);
    // jemalloc keeps freed pages dirty for its decay time (10 s by default): the purge
    // is what returns them.
    assert!(figures.report.returned_bytes > figures.freed / 2);
    assert_eq!(
        figures.report.trim.effect(Backend::JemallocPurge),
        Some(Effect::Ran)
    );
}
