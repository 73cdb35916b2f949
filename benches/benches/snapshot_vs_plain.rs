//! memwarden's snapshot store against plain files: write and restore throughput of 1 MiB,
//! 16 MiB and 256 MiB payloads.
//!
//! Run with `cargo bench -p memwarden-benches --bench snapshot_vs_plain`. Under `cargo
//! test --benches` (no `--bench` argument) only the 1 MiB payload runs, for two rounds:
//! every number is a smoke test, not a measurement.
//!
//! The peer is what a careful program does without memwarden. Its write is the same
//! durable sequence as [`SnapshotStore::put`]: write the bytes to a temporary name in the
//! same directory, `File::sync_all`, rename over the final name, `fsync` the directory.
//! Its restore is `std::fs::read` of the final name. memwarden's write adds the header and
//! an xxh3-64 checksum over the whole file; its restore reads the file, verifies that
//! checksum and the header against the index, and returns the payload. Both peers keep
//! their files in one temporary directory on one filesystem, and both write the same id
//! (the same name) every round, so each write also retires the previous round's file.
//!
//! **Restore is measured on the disk tier.** The store under test is opened with
//! `memory_bytes: 0` (no memory tier, which the store allows), and the bench checks after
//! the rounds that every restore was a disk hit. A second store with a memory tier large
//! enough for the payload is timed as well and reported as `memory-tier`: that is a
//! checksum check and a copy, no file read. Writes are timed on the disk-only store; the
//! memory tier does not change what a put writes.
//!
//! **Both restores read from the page cache.** The bench cannot drop the page cache (that
//! needs root), and the file was just written, so "disk" here means the read system call,
//! verification and copies, not the device. Writes do reach the device: both peers
//! `fsync` the file and the directory, which dominates at every size.
//!
//! Each size runs one untimed round of each peer, then timed rounds in which the two
//! peers alternate which goes first (so writeback drift hits both alike); a figure is the
//! median round, as MiB of payload per second. This is not a criterion group: a fsynced
//! 256 MiB write takes about a second, and criterion's warm-up and minimum of ten samples
//! per routine would not fit the bench's time budget, nor interleave the peers.
//!
//! The goal is memwarden at 0.8x of the plain path or better, in both directions,
//! checksum included. The summary prints each goal against the measured figures, then
//! one `ratio` line per comparison, memwarden first.

use memwarden_benches::report::{self, Ratios, times};
use std::fs::{self, File};
use std::hint::black_box;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memwarden::core::{ResourceId, ResourceKind, SystemClock};
use memwarden_snapshot::{SnapshotStore, StoreConfig, Tier};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

const MIB: usize = 1 << 20;
/// The codec version the payloads are stored under (the bench stores raw bytes).
const VERSION: u32 = 1;
/// The goal: memwarden's throughput over the plain path's, in each direction.
const GOAL: f64 = 0.8;

/// One payload size and how many timed rounds it gets.
struct Case {
    mib: usize,
    rounds: usize,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let started = Instant::now();
    let cases: &[Case] = if full {
        &[
            Case { mib: 1, rounds: 30 },
            Case {
                mib: 16,
                rounds: 12,
            },
            Case {
                mib: 256,
                rounds: 5,
            },
        ]
    } else {
        &[Case { mib: 1, rounds: 2 }]
    };
    let root = tempfile::Builder::new()
        .prefix("memwarden-snapshot-bench-")
        .tempdir()
        .expect("a temporary directory");
    println!(
        "snapshot_vs_plain in {} (both peers; restores read from the page cache)",
        root.path().display()
    );
    let mut ratios = Ratios::default();
    let mut goals = Vec::new();
    for case in cases {
        let figures = run_case(root.path(), case);
        figures.print(case);
        let size = format!("{}MiB", case.mib);
        let write = figures.mw_write / figures.plain_write;
        let restore = figures.mw_restore / figures.plain_restore;
        goals.push((
            format!("goal write {size} >= {GOAL}x plain: {}", times(write)),
            write >= GOAL,
        ));
        goals.push((
            format!(
                "goal restore {size} (disk tier) >= {GOAL}x plain: {}",
                times(restore)
            ),
            restore >= GOAL,
        ));
        ratios.add(&format!("write-MiB/s {size}"), "memwarden", "plain", write);
        ratios.add(
            &format!("restore-MiB/s {size}"),
            "memwarden-disk",
            "plain",
            restore,
        );
        ratios.add(
            &format!("restore-MiB/s {size}"),
            "memwarden-memory-tier",
            "plain",
            figures.mw_memory / figures.plain_restore,
        );
    }
    root.close().expect("the temporary directory is removable");

    report::print_summary(full, started, &goals, &ratios);
}

/// Median throughputs of one size, MiB of payload per second.
struct Figures {
    mw_write: f64,
    plain_write: f64,
    mw_restore: f64,
    mw_memory: f64,
    plain_restore: f64,
}

impl Figures {
    fn print(&self, case: &Case) {
        println!(
            "\n### {} MiB payload: median of {} rounds, peers alternating, MiB/s",
            case.mib, case.rounds
        );
        println!(
            "| path                                  |   write MiB/s |  restore MiB/s | restore / plain |"
        );
        println!(
            "|---------------------------------------|---------------|----------------|-----------------|"
        );
        let row = |name: &str, write: Option<f64>, restore: f64| {
            println!(
                "| {name:<37} | {:>13} | {restore:>14.0} | {:>15} |",
                write.map_or_else(|| "-".to_owned(), |w| format!("{w:.0}")),
                times(restore / self.plain_restore),
            );
        };
        row(
            "memwarden, disk tier (memory_bytes 0)",
            Some(self.mw_write),
            self.mw_restore,
        );
        row("memwarden, memory-tier hit", None, self.mw_memory);
        row(
            "plain (tmp+fsync+rename+fsync / read)",
            Some(self.plain_write),
            self.plain_restore,
        );
        println!(
            "write memwarden / plain: {}",
            times(self.mw_write / self.plain_write)
        );
    }
}

/// Times writes and restores of one payload size through both peers.
fn run_case(root: &Path, case: &Case) -> Figures {
    let bytes = case.mib * MIB;
    let mut payload = vec![0; bytes];
    // Incompressible bytes, the same on every run.
    StdRng::seed_from_u64(0x5eed ^ bytes as u64).fill_bytes(&mut payload);
    let id = ResourceId::from(format!("frame/{}MiB", case.mib));
    let kind = ResourceKind::RenderCache;

    let case_dir = root.join(format!("{}MiB", case.mib));
    let plain_dir = case_dir.join("plain");
    fs::create_dir_all(&plain_dir).expect("the plain directory");
    let plain_file = plain_dir.join("payload.bin");
    let disk = SnapshotStore::open(
        StoreConfig {
            memory_bytes: 0,
            ..StoreConfig::new(case_dir.join("memwarden-disk"))
        },
        Arc::new(SystemClock::new()),
    )
    .expect("the disk-tier store opens");

    // Writes. One untimed round each first: it creates the files the restores read.
    let mut mw_write = Vec::with_capacity(case.rounds);
    let mut plain_write = Vec::with_capacity(case.rounds);
    let put = || {
        let start = Instant::now();
        let info = disk.put(&id, &kind, VERSION, &payload).expect("put");
        let took = start.elapsed();
        assert_eq!(info.tier, Tier::Disk, "no memory tier in this store");
        took
    };
    let write = || {
        let start = Instant::now();
        write_plain(&plain_dir, &plain_file, &payload).expect("plain write");
        start.elapsed()
    };
    put();
    write();
    for round in 0..case.rounds {
        if round % 2 == 0 {
            mw_write.push(put());
            plain_write.push(write());
        } else {
            plain_write.push(write());
            mw_write.push(put());
        }
    }

    // Restores from the disk tier, checked once in full before the timed rounds.
    let (version, restored) = disk.get(&id, &kind).expect("the snapshot restores");
    assert_eq!(version, VERSION);
    assert!(restored == payload, "memwarden restored other bytes");
    assert!(
        fs::read(&plain_file).expect("plain read") == payload,
        "the plain file holds other bytes"
    );
    drop(restored);
    let mut mw_restore = Vec::with_capacity(case.rounds);
    let mut plain_restore = Vec::with_capacity(case.rounds);
    let get = |store: &SnapshotStore| {
        let start = Instant::now();
        let found = black_box(store.get(&id, &kind));
        let took = start.elapsed();
        let (_, restored) = found.expect("the snapshot restores");
        assert_eq!(restored.len(), bytes);
        took
    };
    let read = || {
        let start = Instant::now();
        let restored = black_box(fs::read(&plain_file).expect("plain read"));
        let took = start.elapsed();
        assert_eq!(restored.len(), bytes);
        took
    };
    for round in 0..case.rounds {
        if round % 2 == 0 {
            mw_restore.push(get(&disk));
            plain_restore.push(read());
        } else {
            plain_restore.push(read());
            mw_restore.push(get(&disk));
        }
    }
    let stats = disk.stats();
    assert_eq!(
        stats.memory_hits, 0,
        "the disk-tier store served from memory"
    );
    assert_eq!(
        stats.disk_hits,
        case.rounds as u64 + 1,
        "every restore read the file"
    );
    assert_eq!(stats.corrupt, 0);
    drop(disk);

    // Restores from a memory tier that holds the whole file.
    let memory = SnapshotStore::open(
        StoreConfig {
            memory_bytes: 2 * bytes as u64 + MIB as u64,
            ..StoreConfig::new(case_dir.join("memwarden-memory"))
        },
        Arc::new(SystemClock::new()),
    )
    .expect("the memory-tier store opens");
    let info = memory.put(&id, &kind, VERSION, &payload).expect("put");
    assert_eq!(info.tier, Tier::Memory, "the memory tier holds the payload");
    let mut mw_memory: Vec<Duration> = (0..case.rounds).map(|_| get(&memory)).collect();
    let stats = memory.stats();
    assert_eq!(stats.memory_hits, case.rounds as u64);
    assert_eq!(stats.disk_hits, 0);

    let mib = |times: &mut [Duration]| case.mib as f64 / median(times).as_secs_f64();
    Figures {
        mw_write: mib(&mut mw_write),
        plain_write: mib(&mut plain_write),
        mw_restore: mib(&mut mw_restore),
        mw_memory: mib(&mut mw_memory),
        plain_restore: mib(&mut plain_restore),
    }
}

/// The plain durable write: a temporary name in the same directory, the file synced,
/// renamed over `file`, the directory synced.
fn write_plain(dir: &Path, file: &Path, payload: &[u8]) -> std::io::Result<()> {
    let temp = file.with_extension("tmp");
    // `fs::write` followed by a sync: the same calls, without reopening the file to sync it.
    let mut out = File::create(&temp)?;
    out.write_all(payload)?;
    out.sync_all()?;
    drop(out);
    fs::rename(&temp, file)?;
    File::open(dir)?.sync_all()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}
