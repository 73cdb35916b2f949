//! Return freed heap to the operating system: allocator trimming, automatic triggers and
//! RSS accounting for memwarden.
//!
//! When a long-running process drops a large cache, `free` gives the memory back to the
//! allocator, not to the operating system: the resident set (RSS) stays where it was,
//! and a governor that watches RSS keeps seeing the process over budget. This crate
//! closes that gap.
//!
//! - [`Defragmenter`] (made with [`Defragmenter::builder`]) runs compactions ([`Defragmenter::compact`]) and fires them by
//!   itself when the bytes reported released ([`Defragmenter::notify_released`]) pass a
//!   threshold (500 MB by default) or when a timer runs out (hourly by default). Each run
//!   measures the RSS before and after, from the OS, and lands in [`DefragStats`] with its
//!   [`Trigger`]; the configuration ([`DefragConfig`]) can change at runtime.
//! - [`trim()`] is the platform call alone, saying in a [`TrimOutcome`] which
//!   [`Backend`]s ran.
//! - [`rss`] reads the resident set: [`rss::current`], [`rss::peak`], and
//!   [`rss::RssReader`], cheap enough to poll every few milliseconds.
//!
//! ```
//! use memwarden_defrag::{DefragConfig, Defragmenter, Trigger};
//!
//! // A monitor thread fires the automatic triggers; it is joined when `defrag` drops.
//! let defrag = Defragmenter::builder(DefragConfig {
//!     released_threshold: 256 << 20,
//!     ..DefragConfig::default()
//! })
//! .start()?;
//!
//! let cache: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 16 << 10]).collect();
//! let bytes = cache.iter().map(Vec::len).sum::<usize>() as u64;
//! drop(cache);
//! defrag.notify_released(bytes); // under the threshold: only counted
//!
//! let report = defrag.compact(Trigger::Manual);
//! assert_eq!(report.released_since_last, bytes);
//! assert_eq!(defrag.stats().by_trigger.manual, 1);
//! # Ok::<(), memwarden_defrag::DefragError>(())
//! ```
//!
//! # What each platform does
//!
//! | platform | [`compact`](Defragmenter::compact) calls | tested here |
//! |---|---|---|
//! | Linux, glibc | `malloc_trim(0)` | yes |
//! | `mimalloc` feature | `mi_collect(true)`, before the system allocator's call | yes |
//! | `jemalloc` feature | `mallctl("arena.4096.purge")` (4096 = `MALLCTL_ARENAS_ALL`) | yes |
//! | macOS | `malloc_zone_pressure_relief(NULL, 0)` | compiled only |
//! | Windows | `HeapCompact(GetProcessHeap(), 0)`; aggressive adds `SetProcessWorkingSetSize(GetCurrentProcess(), -1, -1)` | compiled only |
//! | Linux, musl; others | nothing ([`TrimOutcome::supported`] is `false`) | - |
//!
//! The allocator features add a backend; they do not replace the system allocator's:
//! memory a C library `malloc`s is still glibc's. Calling them when that allocator is
//! linked but not the global allocator is harmless (its heaps are empty). jemalloc's
//! purge goes through `tikv-jemalloc-sys` because the control reads and writes nothing,
//! and `tikv-jemalloc-ctl`'s raw calls always pass a value, which jemalloc refuses.
//! RSS figures exist on Linux only (see [`rss`]); elsewhere a run's
//! [`RunReport::returned_bytes`] is 0.
//!
//! **Aggressive mode** ([`DefragConfig::aggressive`]) repeats the allocator calls while
//! each round lowers the RSS by at least 1 MiB (at most four rounds), which catches
//! memory other threads free during the first round; on Windows it also empties the
//! working set. It does **not** call glibc's `mallopt` to lower `M_TRIM_THRESHOLD` or
//! `M_MMAP_THRESHOLD`: those change how every later `malloc` and `free` of the whole
//! process behaves (more system calls, more page faults), which is a decision for the
//! application at start-up, not a side effect of a trim. The Windows working-set trim is
//! aggressive-only for a similar reason: it pages out live memory too, so the RSS drop it
//! shows is not memory given back, and the pages fault back in on next use.
//!
//! # What no trim can return
//!
//! The OS takes memory back by whole pages (4 KiB here). `malloc_trim` returns every page
//! of a free range, wherever it sits in the heap: nine freed cache groups below one live
//! group come back in full, although `free` alone returns nothing because the heap's top
//! is still in use. But when live blocks are scattered finely, say one small block in
//! ten kept across the whole range, every page still holds a live block, and no
//! allocator can return a page it still uses: the RSS stays, and the run's
//! `returned_bytes` says so. Only moving the live objects (a copying cache, an arena per
//! cache generation) helps then; this crate does not move anything.
//!
//! # Key design decision
//!
//! Every run measures the RSS before and after from the OS, not from allocator
//! statistics, because the RSS is what the budget is about and what the OS will kill
//! for. Runs are serialised (one lock held for the whole run), so two triggers at once
//! make one run and then a check that finds nothing due, and the statistics never
//! interleave. The hot path, [`Defragmenter::notify_released`], is an atomic update and a
//! load; the monitor thread is woken only when the threshold is reached.
//!
//! # Features
#![doc = document_features::document_features!()]
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod defragmenter;
mod error;
pub mod rss;
mod trim;

pub use defragmenter::{
    DefragConfig, DefragStats, Defragmenter, DefragmenterBuilder, HISTORY_LEN, RunReport, Trigger,
    TriggerCounts,
};
pub use error::DefragError;
pub use trim::{
    AGGRESSIVE_PROGRESS, Backend, BackendRun, Effect, MAX_AGGRESSIVE_ROUNDS, TrimOutcome, trim,
};
