//! End-to-end tests of the `memwarden` binary.

use std::process::{Command, Output};

fn memwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_check_accepts_the_shipped_config() {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/releasable_resources.toml"
    );
    for args in [vec!["config", "check"], vec!["config", "check", shipped]] {
        let out = memwarden(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "ok");
    }
}

#[test]
fn config_check_names_key_and_line_and_exits_2() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/releasable_resources.toml"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "priority = 8",
            "priority = 42",
            "kinds.model_shards.priority",
        ),
        (
            "warning_fraction = 0.75",
            "warning_fraction = 0.95",
            "monitor.critical_fraction",
        ),
        ("budget = \"1GiB\"", "budget = \"-1GiB\"", "monitor.budget"),
        (
            "budget = \"1GiB\"",
            "budget = \"1GiB\"\nbudgett = 3",
            "monitor.budgett",
        ),
    ];
    for (from, to, key) in cases {
        assert!(shipped.contains(from), "the shipped config has {from:?}");
        let edited = shipped.replacen(from, to, 1);
        let line = edited
            .lines()
            .position(|l| l.starts_with(key.rsplit('.').next().unwrap()))
            .unwrap()
            + 1;
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, &edited).unwrap();
        let out = memwarden(&["config", "check", path.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(key), "{key} not named in {err}");
        assert!(
            err.contains(&format!("bad.toml:{line}:")),
            "line {line} not named in {err}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn missing_config_is_named_and_exits_2() {
    let out = memwarden(&["config", "check", "/nonexistent/memwarden.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/memwarden.toml"));
    let out = memwarden(&[
        "demo",
        "--steps",
        "1",
        "--config",
        "/nonexistent/memwarden.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/memwarden.toml"));
}

#[test]
fn bad_budget_is_quoted_and_exits_2() {
    let out = memwarden(&["demo", "--budget", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("\"lots\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn demo_holds_its_budget_and_reports_json() {
    let out = memwarden(&[
        "demo", "--steps", "400", "--budget", "128MiB", "--seed", "7", "--format", "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(report["budget_bytes"], 128u64 << 20);
    assert_eq!(report["steps"], 400);
    assert_eq!(report["tracked"]["steps_over_budget"], 0);
    assert!(report["tracked"]["max_bytes"].as_u64().unwrap() <= 128 << 20);
    assert!(
        report["bytes_freed"].as_u64().unwrap() > 0,
        "a 128 MiB budget forces releases"
    );
    let accesses = report["accesses"].as_u64().unwrap();
    let restores = report["snapshots"]["restores"].as_u64().unwrap();
    assert_eq!(
        report["hits"].as_u64().unwrap() + restores + report["reloads"].as_u64().unwrap(),
        accesses
    );
    let count = |k: &serde_json::Value, field: &str| k[field].as_u64().unwrap();
    let per_kind: u64 = report["kinds"]
        .as_object()
        .unwrap()
        .values()
        .map(|k| count(k, "hits") + count(k, "restores") + count(k, "reloads"))
        .sum();
    assert!(
        report["snapshots"]["writes"].as_u64().unwrap() > 0,
        "released frames are snapshotted"
    );
    assert!(
        restores > 0,
        "a re-visited frame comes back from its snapshot"
    );
    let dir = report["snapshots"]["dir"].as_str().unwrap();
    assert!(
        !std::path::Path::new(dir).exists(),
        "the session's snapshot store is removed"
    );
    assert_eq!(per_kind, accesses);
    if cfg!(target_os = "linux") {
        assert!(
            report["rss"]["peak_bytes"].as_u64().unwrap()
                >= report["rss"]["current_bytes"].as_u64().unwrap()
        );
    }
    // Same seed, same session.
    let again = memwarden(&[
        "demo", "--steps", "400", "--budget", "128MiB", "--seed", "7", "--format", "json",
    ]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["kinds"], again["kinds"]);
    assert_eq!(report["tracked"]["samples"], again["tracked"]["samples"]);
}
