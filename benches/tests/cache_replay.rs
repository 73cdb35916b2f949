//! The `cache_replay` binary end to end: one JSON object per capacity with every engine,
//! no engine over its capacity, and exit status 2 naming the file and line for bad input.

use std::path::PathBuf;
use std::process::Command;

fn replay(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cache_replay"))
        .args(args)
        .output()
        .expect("cache_replay runs")
}

/// The first 30 000 lines of the ARC paper's OLTP trace (Megiddo and Modha, FAST 2003).
fn oltp_head() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/OLTP-head30k.lis.zst")
        .display()
        .to_string()
}

#[test]
fn a_block_trace_reports_every_engine_at_every_capacity() {
    let out = replay(&[&oltp_head(), "--capacity", "1024,4096", "--limit", "20000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    for (line, blocks) in lines.iter().zip([1024u64, 4096]) {
        assert_eq!(line["trace"], "OLTP-head30k.lis.zst");
        assert_eq!(line["requests"], 20000);
        assert_eq!(line["capacity_blocks"], blocks);
        assert_eq!(line["capacity_bytes"], blocks * 512);
        for engine in ["memwarden", "moka-lru", "moka-tinylfu", "quick_cache"] {
            let e = &line["engines"][engine];
            let hit = e["hit_ratio"].as_f64().expect("a hit ratio");
            assert!(hit > 0.05 && hit < 1.0, "{engine}: {e}");
            assert_eq!(e["byte_hit_ratio"].as_f64(), Some(hit), "equal sizes");
            assert!(e["ops_per_sec"].as_f64().is_some_and(|x| x > 0.0));
            assert_eq!(e["over_capacity"], false, "{engine}: {e}");
            assert!(e["peak_bytes"].as_u64().is_some_and(|p| p <= blocks * 512));
        }
    }
}

#[test]
fn a_csv_trace_takes_byte_capacities_and_prints_a_table() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let csv = dir.path().join("requests.csv");
    let mut text = String::from("# key,bytes\n");
    for i in 0..3000u32 {
        let key = (i * 7919) % 97;
        text.push_str(&format!("k{key},{}\n", 1000 + key * 100));
    }
    std::fs::write(&csv, text).expect("written");
    let out = replay(&[
        csv.to_str().expect("utf-8 path"),
        "--capacity",
        "64KiB",
        "--format",
        "text",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).expect("utf-8");
    assert!(table.contains("3000 requests over 97 keys"), "{table}");
    for engine in ["memwarden", "moka-lru", "moka-tinylfu", "quick_cache"] {
        assert!(table.contains(&format!("| {engine} |")), "{table}");
    }
    assert!(!table.contains("OVER"), "{table}");
}

#[test]
fn bad_input_exits_2_naming_the_file_and_line() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let lis = dir.path().join("bad.lis");
    std::fs::write(&lis, "1 2 0 0\n5 x 0 1\n").expect("written");
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "a,10\nb,-3\n").expect("written");
    for (path, needle) in [(&lis, "bad.lis:2"), (&csv, "bad.csv:2")] {
        let out = replay(&[path.to_str().expect("utf-8"), "--capacity", "10"]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
        assert!(out.stdout.is_empty());
    }
    let missing = dir.path().join("missing.lis");
    for args in [
        vec![missing.to_str().expect("utf-8"), "--capacity", "10"],
        vec![lis.to_str().expect("utf-8")],
        vec![lis.to_str().expect("utf-8"), "--capacity", "0"],
        vec![
            lis.to_str().expect("utf-8"),
            "--capacity",
            "10",
            "--engines",
            "lru",
        ],
    ] {
        let out = replay(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
