//! What one reading of the process's resident set size costs, per source: the cheap
//! reader a governor polls every few milliseconds against the usual alternatives.
//!
//! Run with `cargo bench -p memwarden-benches --bench rss_sources`. Under `cargo test
//! --benches` (criterion's test mode) every routine runs once: every number is a smoke
//! test, not a measurement.
//!
//! A criterion group, `rss_read`, times one reading through each source:
//!
//! - `statm_pread`: memwarden's [`RssReader`], `/proc/self/statm` kept open and re-read
//!   with `pread` at offset 0 into a stack buffer (one system call);
//! - `statm_open`: memwarden's [`rss::current`], the same file opened, read and closed
//!   (three system calls);
//! - `status_parse`: `/proc/self/status` read into a `String` and its `VmRSS` line parsed,
//!   which is how RSS is most often read by hand (the kernel formats some fifty lines);
//! - `status_peak`: memwarden's [`rss::peak`], `VmHWM` from the same file into a stack
//!   buffer (the high-water mark, not the current RSS: listed for its cost);
//! - `sysinfo`: the `sysinfo` crate refreshing one process's memory
//!   (`refresh_processes_specifics` with only `with_memory`, then `Process::memory`).
//!
//! A counting global allocator also records the allocations each source makes per
//! reading, since the governor calls the reader before allocations and on every tick.
//! Every figure is ns per reading; the summary's `ratio` lines divide each source by the
//! pread reader (above 1: the reader is cheaper). The goal from the issue: the pread
//! reader is the cheapest source and allocates nothing.

use memwarden_benches::report::{self, Rate, Ratios, times};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use memwarden_defrag::rss::{self, RssReader};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System as SysinfoSystem};

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract;
// the counter is a relaxed atomic add with no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout, which satisfies `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation is).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout`; the caller upholds
        // `realloc`'s contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One RSS source: its name, how to read it, and its rate.
struct Source<'a> {
    key: &'static str,
    label: &'static str,
    read: Box<dyn FnMut() -> Option<u64> + 'a>,
    rate: Rate,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let started = Instant::now();
    let reader = match RssReader::open() {
        Ok(reader) => reader,
        Err(e) => {
            println!("rss_sources: {e}; nothing to measure");
            return;
        }
    };
    let pid = Pid::from_u32(std::process::id());
    let mut sysinfo = SysinfoSystem::new();
    let refresh = ProcessRefreshKind::nothing().with_memory();

    let mut sources = [
        Source {
            key: "statm-pread",
            label: "RssReader::read (statm, pread)",
            read: Box::new(|| reader.read()),
            rate: Rate::default(),
        },
        Source {
            key: "statm-open",
            label: "rss::current (statm, open+read)",
            read: Box::new(rss::current),
            rate: Rate::default(),
        },
        Source {
            key: "status-parse",
            label: "/proc/self/status to String, VmRSS",
            read: Box::new(status_vm_rss),
            rate: Rate::default(),
        },
        Source {
            key: "status-peak",
            label: "rss::peak (status, stack buffer)",
            read: Box::new(rss::peak),
            rate: Rate::default(),
        },
        Source {
            key: "sysinfo",
            label: "sysinfo, one process's memory",
            read: Box::new(move || {
                sysinfo.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, refresh);
                sysinfo.process(pid).map(sysinfo::Process::memory)
            }),
            rate: Rate::default(),
        },
    ];

    println!("rss_sources: one reading of the resident set size per source");
    let mut allocations = Vec::new();
    for source in &mut sources {
        let value = (source.read)().unwrap_or_else(|| panic!("{} gave no reading", source.key));
        // Allocations per reading, after that first (warm) one.
        const READS: u64 = 100;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..READS {
            black_box((source.read)());
        }
        let per_read = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / READS as f64;
        allocations.push(per_read);
        println!(
            "{:<36} {:>8.1} MiB now, {per_read:.1} allocations per reading",
            source.label,
            value as f64 / f64::from(1 << 20)
        );
    }

    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1000))
        .sample_size(10);
    let mut group = criterion.benchmark_group("rss_read");
    for source in &mut sources {
        let (read, rate) = (&mut source.read, &source.rate);
        group.bench_function(source.key, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(read());
                }
                rate.record(iters, start.elapsed())
            });
        });
    }
    group.finish();
    criterion.final_summary();

    println!("\n### ns per reading (mean over every timed call)");
    println!("| source                               |  ns/read | allocs/read | / statm-pread |");
    println!("|--------------------------------------|----------|-------------|---------------|");
    let base = sources[0].rate.ns_per_op();
    for (source, allocs) in sources.iter().zip(&allocations) {
        let ns = source.rate.ns_per_op();
        println!(
            "| {:<36} | {ns:>8.0} | {allocs:>11.1} | {:>13} |",
            source.label,
            times(ns / base)
        );
    }

    let mut ratios = Ratios::default();
    for source in &sources[1..] {
        ratios.add(
            "ns/read",
            source.key,
            "statm-pread",
            source.rate.ns_per_op() / base,
        );
    }
    let cheapest = sources[1..].iter().all(|s| s.rate.ns_per_op() > base);
    let goals = vec![
        (
            format!(
                "goal the pread reader is the cheapest source: {base:.0} ns, next {:.0} ns",
                sources[1..]
                    .iter()
                    .map(|s| s.rate.ns_per_op())
                    .fold(f64::INFINITY, f64::min)
            ),
            cheapest,
        ),
        (
            format!(
                "goal the pread reader allocates nothing: {:.1} allocations per reading",
                allocations[0]
            ),
            allocations[0] == 0.0,
        ),
    ];
    report::print_summary(full, started, &goals, &ratios);
}

/// `VmRSS` from `/proc/self/status`, the way it is usually read by hand.
fn status_vm_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
