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

/// Runs `memwarden demo --small` with its models in `dir`, checks the exit status and
/// returns the JSON report.
fn small_demo(dir: &std::path::Path, budget: &str, extra: &[&str]) -> serde_json::Value {
    let models = dir.join("models");
    let mut args = vec![
        "demo",
        "--small",
        "--steps",
        "600",
        "--budget",
        budget,
        "--seed",
        "7",
        "--format",
        "json",
        "--models-dir",
        models.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = memwarden(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

#[test]
fn demo_holds_a_real_rss_budget_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("timeline.svg");
    let report = small_demo(dir.path(), "192MiB", &["--timeline", svg.to_str().unwrap()]);
    let budget = 192u64 << 20;
    assert_eq!(report["budget_bytes"], budget);
    assert_eq!(report["steps"], 600);
    let rss = &report["rss"];
    let peak = rss["peak_bytes"].as_u64().unwrap();
    if cfg!(target_os = "linux") {
        assert!(
            peak as f64 <= budget as f64 * 1.05,
            "peak RSS {peak} over 192 MiB + 5 %"
        );
        assert_eq!(rss["within_budget"], true);
        assert!(rss["min_bytes"].as_u64().unwrap() <= rss["median_bytes"].as_u64().unwrap());
        assert!(rss["median_bytes"].as_u64().unwrap() <= rss["max_bytes"].as_u64().unwrap());
        assert!(rss["max_bytes"].as_u64().unwrap() <= peak);
    }
    let governor = &report["governor"];
    assert!(
        governor["releases"].as_u64().unwrap() > 0,
        "a 192 MiB budget forces releases: {governor}"
    );
    assert!(governor["admissions"].as_u64().unwrap() > 0);
    assert!(report["bytes_freed"].as_u64().unwrap() > 0);

    let accesses = report["accesses"].as_u64().unwrap();
    let restores = report["snapshots"]["restores"].as_u64().unwrap();
    assert_eq!(
        report["hits"].as_u64().unwrap() + restores + report["reloads"].as_u64().unwrap(),
        accesses
    );
    assert!(
        report["snapshots"]["writes"].as_u64().unwrap() > 0,
        "released frames are snapshotted"
    );
    assert!(
        restores > 0,
        "a re-visited frame comes back from its snapshot"
    );
    let dir_of_snapshots = report["snapshots"]["dir"].as_str().unwrap();
    assert!(
        !std::path::Path::new(dir_of_snapshots).exists(),
        "the session's snapshot store is removed"
    );

    // The models were generated into the directory, declared, and loaded on demand.
    let models = report["models"]["models"].as_array().unwrap();
    assert_eq!(models.len(), 4);
    assert!(models.iter().any(|m| m["loads"].as_u64().unwrap() > 0));
    let files = std::fs::read_dir(dir.path().join("models"))
        .unwrap()
        .count();
    assert_eq!(files, 4, "four model files and nothing half-written");

    let svg = std::fs::read_to_string(&svg).expect("the timeline was written");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("process RSS") && svg.contains("budget"));
    assert!(svg.contains("<polyline"), "the series are drawn");

    // The script is seeded: the same steps touch the same resources again (what was
    // released differs with the real RSS, but not what was asked for), and the model
    // files are reused, not written again.
    let again = small_demo(dir.path(), "192MiB", &[]);
    let asked = |r: &serde_json::Value| -> Vec<u64> {
        r["kinds"]
            .as_object()
            .unwrap()
            .values()
            .map(|k| {
                k["hits"].as_u64().unwrap()
                    + k["restores"].as_u64().unwrap()
                    + k["reloads"].as_u64().unwrap()
            })
            .collect()
    };
    assert_eq!(asked(&report), asked(&again));
}

#[test]
fn demo_names_a_bad_model_file_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    // Every model file present but not a weights file: the first model the session
    // uses fails to load.
    for name in [
        "detector-s-12MiB",
        "detector-m-24MiB",
        "transcriber-32MiB",
        "upscaler-16MiB",
    ] {
        std::fs::write(models.join(format!("{name}.safetensors")), b"not a model").unwrap();
    }
    let out = memwarden(&[
        "demo",
        "--small",
        "--steps",
        "300",
        "--models-dir",
        models.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(".safetensors"), "{stderr}");
    assert!(stderr.contains(models.to_str().unwrap()), "{stderr}");
}
