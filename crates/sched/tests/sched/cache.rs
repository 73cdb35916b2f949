//! Cache detection from a sysfs-like tree, clamped against misreports.

use std::fs;
use std::path::Path;

use memwarden_sched::{CacheInfo, available_jobs};

/// Writes one `indexN` directory.
fn index(root: &Path, n: usize, level: &str, kind: &str, size: &str, line: &str) {
    let dir = root.join(format!("index{n}"));
    fs::create_dir_all(&dir).expect("temp dir is writable");
    for (file, text) in [
        ("level", level),
        ("type", kind),
        ("size", size),
        ("coherency_line_size", line),
    ] {
        fs::write(dir.join(file), format!("{text}\n")).expect("temp dir is writable");
    }
}

/// Builds a tree from `(level, type, size, line)` rows and checks what is read.
fn check(rows: &[(&str, &str, &str, &str)], want: CacheInfo) {
    let root = tempfile::tempdir().expect("temp dir");
    for (n, (level, kind, size, line)) in rows.iter().enumerate() {
        index(root.path(), n, level, kind, size, line);
    }
    assert_eq!(CacheInfo::from_sysfs(root.path()), want, "{rows:?}");
}

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

#[test]
fn plausible_caches_are_read_as_reported() {
    check(
        &[
            ("1", "Data", "48K", "64"),
            ("1", "Instruction", "32K", "64"),
            ("2", "Unified", "2048K", "64"),
            ("3", "Unified", "32M", "64"),
        ],
        CacheInfo {
            l1d: 48 * KIB,
            l2: 2 * MIB,
            l3: Some(32 * MIB),
            line: 64,
        },
    );
    // Apple-like: 128-byte lines, no L3.
    check(
        &[("1", "Data", "128K", "128"), ("2", "Unified", "16M", "128")],
        CacheInfo {
            l1d: 128 * KIB,
            l2: 16 * MIB,
            l3: None,
            line: 128,
        },
    );
}

#[test]
fn nonsense_is_replaced_by_defaults() {
    let defaults = CacheInfo::DEFAULT;
    // An L1d of 0, a 4 KiB L2, a 1 MiB "line": all out of range.
    check(
        &[
            ("1", "Data", "0K", "1048576"),
            ("2", "Unified", "4K", "64"),
            ("3", "Unified", "64K", "64"),
        ],
        defaults,
    );
    // Too large: a 512 MiB L1d and a 1 GiB L2; a line that is not a power of two.
    check(
        &[("1", "Data", "512M", "96"), ("2", "Unified", "1G", "96")],
        defaults,
    );
    // Garbage text, and an instruction cache alone at level 1.
    check(
        &[
            ("1", "Instruction", "32K", "64"),
            ("2", "Unified", "lots", "sixty-four"),
        ],
        defaults,
    );
    // The edges of the accepted ranges are accepted.
    check(
        &[("1", "Data", "8K", "16"), ("2", "Unified", "64M", "1024")],
        CacheInfo {
            l1d: 8 * KIB,
            l2: 64 * MIB,
            l3: None,
            line: 16,
        },
    );
}

#[test]
fn a_missing_tree_gives_the_defaults() {
    let root = tempfile::tempdir().expect("temp dir");
    assert_eq!(
        CacheInfo::from_sysfs(&root.path().join("absent")),
        CacheInfo::DEFAULT
    );
    // An empty directory, and an index without level or type, too.
    assert_eq!(CacheInfo::from_sysfs(root.path()), CacheInfo::DEFAULT);
    fs::create_dir(root.path().join("index0")).expect("writable");
    assert_eq!(CacheInfo::from_sysfs(root.path()), CacheInfo::DEFAULT);
}

#[test]
fn this_machine_detects_something_plausible() {
    let info = CacheInfo::detect();
    assert!((8 * KIB..=MIB).contains(&info.l1d), "{info:?}");
    assert!((64 * KIB..=64 * MIB).contains(&info.l2), "{info:?}");
    assert!(info.line.is_power_of_two(), "{info:?}");
    assert_eq!(CacheInfo::detect(), info, "remembered");
    assert!(available_jobs() >= 1);
}
