//! The `alloc_replay` binary end to end: JSON for good traces (one process per trace),
//! exit status 2 naming the file and line for bad ones.

use std::path::PathBuf;
use std::process::Command;

fn replay(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_alloc_replay"))
        .args(args)
        .output()
        .expect("alloc_replay runs")
}

fn googlenet() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/googlenet.trace")
        .display()
        .to_string()
}

#[test]
fn reports_every_engine_for_each_trace() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let small = dir.path().join("small.trace");
    std::fs::write(&small, "# two tensors\na,x,4096\na,y,100000\nf,x,4096\n").expect("written");
    let small = small.display().to_string();
    let out = replay(&[&googlenet(), &small, "--rounds", "1", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["trace"], "googlenet");
    assert_eq!(lines[1]["trace"], "small");
    assert_eq!(
        lines[1]["ops"], 4,
        "the block left live is freed at the end"
    );
    for line in &lines {
        let pool = &line["engines"]["pool"];
        for key in [
            "mops",
            "peak_reserved_over_requested",
            "resident_after_empty_cache",
        ] {
            assert!(pool[key].as_f64().is_some(), "{key} in {line}");
        }
        for key in [
            "maps",
            "unmaps",
            "commits",
            "decommits",
            "warm_maps",
            "warm_unmaps",
        ] {
            assert!(pool[key].as_u64().is_some(), "{key} in {line}");
        }
        assert_eq!(pool["warm_maps"], 0, "{line}");
        assert!(pool["peak_reserved_over_requested"].as_f64().unwrap() >= 1.0);
        // After empty_cache the resident bytes are the allocated ones, give or take the
        // pages the last blocks share.
        let resident = pool["resident_after_empty_cache"].as_f64().unwrap();
        let allocated = pool["allocated_after_empty_cache"].as_f64().unwrap();
        assert!(resident <= allocated * 1.05 + 8192.0, "{line}");
        for peer in ["glibc", "mimalloc"] {
            assert!(line["engines"][peer]["mops"].as_f64().unwrap() > 0.0);
        }
    }
    let out = replay(&[&googlenet(), "--rounds", "1", "--format", "text"]);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.starts_with("| trace |"), "{text}");
    assert!(text.contains("| googlenet | 280 |"), "{text}");
}

#[test]
fn bad_traces_exit_2_naming_the_file_and_line() {
    let dir = tempfile::tempdir().expect("a temp dir");
    for (text, says) in [
        ("a,1,10\nf,2,10\n", "line 2: free of id 2"),
        ("a,1,10\nx\n", "line 2: expected op,id,bytes"),
        ("a,1,lots\n", "line 1: \"lots\" is not a byte count"),
    ] {
        let path = dir.path().join("bad.trace");
        std::fs::write(&path, text).expect("written");
        let path = path.display().to_string();
        // A good trace first: nothing is replayed before every trace is read.
        let out = replay(&[&googlenet(), &path]);
        assert_eq!(out.status.code(), Some(2), "{text:?}");
        assert!(out.stdout.is_empty(), "nothing replayed");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&path) && err.contains(says), "{err}");
    }
    let out = replay(&["/no/such.trace"]);
    assert_eq!(out.status.code(), Some(2));
    let out = replay(&[&googlenet(), "--rounds", "0"]);
    assert_eq!(out.status.code(), Some(2));
}
