//! End-to-end tests of the `memwarden` binary.

use std::process::{Command, Output};

mod bad_input;

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
        ("budget = \"auto\"", "budget = \"-1GiB\"", "monitor.budget"),
        (
            "budget = \"auto\"",
            "budget = \"auto\"\nbudgett = 3",
            "monitor.budgett",
        ),
        (
            "auto_cgroup_share = 0.75",
            "auto_cgroup_share = 0",
            "monitor.auto_cgroup_share",
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

/// Runs `memwarden args`: it must exit 2, name every needle on stderr, and leave no
/// `output`.
fn assert_refused(args: &[&str], needles: &[&str], output: &std::path::Path) {
    let out = memwarden(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
    }
    assert!(!output.exists(), "{args:?} left an output");
}

/// Output files go through hidden temporary names; none may be left behind.
fn assert_no_temp_files(dir: &std::path::Path) {
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Random walks written as a float64 `.npy`.
fn walks(path: &std::path::Path, n: usize, t: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    let mut next = move || {
        // splitmix64, mapped to [-0.5, 0.5)
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let mut data = Vec::with_capacity(n * t);
    for _ in 0..n {
        let mut x = 0.0;
        for _ in 0..t {
            x += next();
            data.push(x);
        }
    }
    memwarden::shm::npy::write(path, &[n, t], &data).unwrap();
    data
}

fn read_npy_f32(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    let file = memwarden::shm::npy::NpyFile::open(path).unwrap();
    let shape = file.shape().to_vec();
    (shape, file.data_as::<f32>().unwrap().into_owned())
}

#[test]
fn gaf_writes_the_library_transform_and_shards_concatenate_to_it() {
    use memwarden::shm::{Gaf, GafConfig, ImageSize, Method};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("walks.npy");
    let (n, t, s) = (301, 50, 7);
    let data = walks(&input, n, t, 7);
    let gaf = Gaf::new(
        GafConfig {
            image_size: ImageSize::Fixed(s),
            method: Method::Both,
            ..GafConfig::default()
        },
        t,
    )
    .unwrap();
    let expected: Vec<f32> = gaf.transform(&data, n).unwrap();

    let whole = dir.path().join("whole.npy");
    let args = [
        "gaf",
        input.to_str().unwrap(),
        "--out",
        whole.to_str().unwrap(),
    ];
    let out = memwarden(
        &[
            &args[..],
            &[
                "--image-size",
                "7",
                "--method",
                "both",
                "--batch-size",
                "16",
            ],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (shape, images) = read_npy_f32(&whole);
    assert_eq!(shape, vec![n, 2, s, s]);
    assert_eq!(images, expected);

    // Three shards, one of them on heap slots, concatenate to the same images.
    let mut joined = Vec::new();
    for i in 0..3 {
        let part = dir.path().join(format!("part{i}.npy"));
        let shard = format!("{i}/3");
        let mut args = vec![
            "gaf",
            input.to_str().unwrap(),
            "--out",
            part.to_str().unwrap(),
            "--image-size",
            "7",
            "--method",
            "both",
            "--shard",
            &shard,
            "--jobs",
            "2",
        ];
        if i == 1 {
            args.push("--no-shared-memory");
        }
        let out = memwarden(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        joined.extend(read_npy_f32(&part).1);
    }
    assert_eq!(joined, expected);
    assert_no_temp_files(dir.path());
}

#[test]
fn gaf_into_a_named_segment_keeps_it_for_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("walks.npy");
    walks(&input, 20, 16, 3);
    let name = format!("memwarden-cli-test-{}", std::process::id());
    let out = memwarden(&[
        "gaf",
        input.to_str().unwrap(),
        "--shm",
        &name,
        "--dtype",
        "f32",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = std::path::Path::new("/dev/shm").join(&name);
    let (shape, images) = read_npy_f32(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(shape, vec![20, 16, 16]);
    // GASF diagonal is cos(2φ) ∈ [-1, 1]; the series' minimum maps to 1 there.
    assert!(images.iter().all(|v| (-1.0..=1.0).contains(v)));
}

#[test]
fn gaf_bad_input_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("walks.npy");
    walks(&input, 10, 16, 5);
    let nan = dir.path().join("nan.npy");
    let mut data = vec![0.5f64; 3 * 8];
    data[2 * 8 + 5] = f64::NAN;
    memwarden::shm::npy::write(&nan, &[3, 8], &data).unwrap();
    let garbage = dir.path().join("garbage.npy");
    std::fs::write(&garbage, b"not an npy file at all").unwrap();
    let out_path = dir.path().join("out.npy");
    let out_arg = out_path.to_str().unwrap();
    let cases: [(Vec<&str>, &str); 7] = [
        (vec![garbage.to_str().unwrap()], "garbage.npy"),
        (vec!["/no/such/file.npy"], "/no/such/file.npy"),
        (
            vec![input.to_str().unwrap(), "--image-size", "17"],
            "image_size",
        ),
        (
            vec![input.to_str().unwrap(), "--sample-range", "1,-1"],
            "sample_range",
        ),
        (vec![input.to_str().unwrap(), "--shard", "3/3"], "shard"),
        (
            vec![input.to_str().unwrap(), "--jobs", "18446744073709551615"],
            "1..=4096",
        ),
        (vec![nan.to_str().unwrap()], "sample 2"),
    ];
    for (args, needle) in cases {
        let full = [&["gaf"][..], &args, &["--out", out_arg]].concat();
        assert_refused(&full, &[needle], &out_path);
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        3,
        "no temp files"
    );
}

#[test]
fn gaf_absurd_shapes_exit_2_without_panicking() {
    use memwarden::shm::npy::{Dtype, encode_header};
    let dir = tempfile::tempdir().unwrap();
    let huge = 1usize << 62;
    // Headers alone: 128-byte files that claim enormous arrays.
    let cases: [(&str, Vec<usize>, &str); 3] = [
        // No samples, but series of 2^62 timestamps: the default image is 2^62 square.
        ("long.npy", vec![0, huge], "address space"),
        // The data the shape calls for overflows 64 bits.
        ("wide.npy", vec![huge, huge], "too large"),
        // Mismatched with the (empty) data section.
        ("short.npy", vec![3, 10], "data section"),
    ];
    let out_path = dir.path().join("out.npy");
    for (name, shape, needle) in cases {
        let input = dir.path().join(name);
        std::fs::write(&input, encode_header(Dtype::F32, &shape)).unwrap();
        let args = [
            "gaf",
            input.to_str().unwrap(),
            "--out",
            out_path.to_str().unwrap(),
        ];
        assert_refused(&args, &[input.to_str().unwrap(), needle], &out_path);
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        3,
        "no temp files"
    );
}

#[test]
fn output_never_replaces_what_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("walks.npy");
    walks(&input, 4, 16, 1);
    let graph = dir.path().join("g.json");
    std::fs::write(
        &graph,
        r#"{"tensors": [{"name": "x", "bytes": 8}, {"name": "y", "bytes": 8}],
            "nodes": [{"op": "Relu", "inputs": ["x"], "outputs": ["y"]}],
            "inputs": ["x"], "outputs": ["y"]}"#,
    )
    .unwrap();
    // A socket stands for `/dev/null` and friends: a rename would put a plain file in
    // its place (as root, over the device itself).
    let socket = dir.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let subdir = dir.path().join("sub");
    std::fs::create_dir(&subdir).unwrap();
    for target in [&socket, &subdir] {
        let t = target.to_str().unwrap();
        for args in [
            vec!["gaf", input.to_str().unwrap(), "--out", t],
            vec!["plan", graph.to_str().unwrap(), "--out", t],
        ] {
            let out = memwarden(&args);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{args:?}: {}",
                text(&out.stderr)
            );
            assert!(text(&out.stderr).contains(t), "{}", text(&out.stderr));
        }
    }
    use std::os::unix::fs::FileTypeExt as _;
    assert!(
        std::fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert!(subdir.is_dir());
    assert_no_temp_files(dir.path());
}

#[test]
fn gaf_never_overwrites_an_existing_segment() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("walks.npy");
    walks(&input, 4, 16, 2);
    let name = format!("memwarden-cli-test-exists-{}", std::process::id());
    let path = std::path::Path::new("/dev/shm").join(&name);
    std::fs::write(&path, b"someone else's data").unwrap();
    let out = memwarden(&["gaf", input.to_str().unwrap(), "--shm", &name]);
    let kept = std::fs::read(&path);
    std::fs::remove_file(&path).unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("already exists") && err.contains(&name),
        "{err}"
    );
    assert_eq!(kept.unwrap(), b"someone else's data");
}

fn shared_onnx(name: &str) -> String {
    format!(
        "{}/../lifetime/tests/data/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn plan_reaches_the_reference_figures_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let model = shared_onnx("resnet18.onnx");
    let out = memwarden(&["plan", &model, "--align", "1", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // REFERENCE.txt: resnet18.onnx steps=49 tensors=50 naive=23590816 LB=6422528.
    assert_eq!(plan["steps"], 49);
    assert_eq!(plan["tensors"].as_array().unwrap().len(), 50);
    assert_eq!(plan["naive_bytes"], 23_590_816);
    assert_eq!(plan["lower_bound_bytes"], 6_422_528);
    assert_eq!(plan["arena_bytes"], 6_422_528);
    assert_eq!(plan["strategy"], "best");

    // Deterministic: a second run prints the same document, byte for byte.
    let again = memwarden(&["plan", &model, "--align", "1", "--format", "json"]);
    assert_eq!(again.stdout, out.stdout);

    let txt = memwarden(&["plan", &model]);
    assert!(txt.status.success(), "{}", text(&txt.stderr));
    let report = text(&txt.stdout);
    for needle in [
        "lower bound",
        "arena / LB",
        "largest tensors",
        "planning time",
    ] {
        assert!(report.contains(needle), "{needle} missing from\n{report}");
    }

    let svg = dir.path().join("arena.svg");
    let out = memwarden(&[
        "plan",
        &model,
        "--format",
        "svg",
        "--out",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg"));
    assert!(
        picture.matches("<rect").count() >= 50,
        "one rectangle per tensor"
    );
}

#[test]
fn plan_binds_a_dimension_range_and_tabulates_it() {
    let model = shared_onnx("resnet18_dynamic_batch.onnx");
    let out = memwarden(&["plan", &model, "--dim", "N=1..8", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = plan["range"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    let arena = |i: usize| rows[i]["arena_bytes"].as_u64().unwrap();
    assert_eq!(arena(7), plan["arena_bytes"].as_u64().unwrap());
    assert!(arena(0) < arena(7));
    // Unbound, the symbol is an error that names it.
    let out = memwarden(&["plan", &model]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains('N'), "{}", text(&out.stderr));
}

#[test]
fn plan_bad_input_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, b"\x08\x07\x12\xff\xff\xff garbage").unwrap();
    let json = dir.path().join("g.json");
    std::fs::write(&json, r#"{"tensors": [], "nodes": [], "inptus": []}"#).unwrap();
    let cycle = dir.path().join("cycle.json");
    std::fs::write(
        &cycle,
        r#"{"tensors": [{"name": "a", "bytes": 4}, {"name": "b", "bytes": 4}],
            "nodes": [{"name": "n0", "op": "Relu", "inputs": ["a"], "outputs": ["b"]},
                      {"name": "n1", "op": "Relu", "inputs": ["b"], "outputs": ["a"]}],
            "outputs": ["b"]}"#,
    )
    .unwrap();
    let batch = shared_onnx("resnet18_dynamic_batch.onnx");
    let out_file = dir.path().join("plan.json");
    for (args, needle) in [
        // Errors name the file as given, whatever stage they come from.
        (vec![bad.to_str().unwrap()], bad.to_str().unwrap()),
        (vec![cycle.to_str().unwrap()], cycle.to_str().unwrap()),
        (vec![cycle.to_str().unwrap()], "cycle through nodes"),
        (vec![&batch[..]], "--dim NAME=VALUE"),
        (vec![&batch[..]], "resnet18_dynamic_batch.onnx"),
        // A dimension the graph does not have is a typo, not something to ignore.
        (vec![&batch[..], "--dim", "n=8"], "no dimension n"),
        (vec![&batch[..], "--dim", "M=1..4"], "no dimension M"),
        (vec![json.to_str().unwrap()], "inptus"),
        (vec!["/no/such/model.onnx"], "/no/such/model.onnx"),
        (vec![json.to_str().unwrap(), "--dim", "N=0"], "N=0"),
        (
            vec![json.to_str().unwrap(), "--strategy", "fastest"],
            "fastest",
        ),
    ] {
        let full = [
            &["plan"][..],
            &args,
            &["--format", "json", "--out", out_file.to_str().unwrap()],
        ]
        .concat();
        assert_refused(&full, &[needle], &out_file);
    }
}

/// MiniMalloc's five-buffer example, whose optimal arena is 12 bytes.
fn minimalloc_example() -> String {
    format!(
        "{}/../lifetime/tests/data/minimalloc/input.12.csv",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn plan_reads_minimallocs_csv_and_reaches_its_optimum() {
    let csv = minimalloc_example();
    let out = memwarden(&["plan", &csv]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for needle in [
        "model            input.12",
        "strategy         best (align 1)",
        "method           ",
        "arena                        12 B",
        "optimal          yes",
    ] {
        assert!(report.contains(needle), "{needle:?} missing from\n{report}");
    }

    let out = memwarden(&["plan", &csv, "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&plan["arena_bytes"], &plan["optimal"], &plan["align"]),
        (&12.into(), &true.into(), &1.into())
    );
    assert!(text(&out.stdout).contains("\"optimal\": true"));

    // MiniMalloc's output format, in input order; the offsets are a valid layout.
    let out = memwarden(&["plan", &csv, "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = text(&out.stdout);
    let mut lines = written.lines();
    assert_eq!(lines.next(), Some("id,lower,upper,size,offset"));
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    let input = std::fs::read_to_string(&csv).unwrap();
    for (row, given) in rows.iter().zip(input.lines().skip(1)) {
        assert_eq!(row.len(), 5);
        assert_eq!(row[..4].join(","), given, "id, lower, upper, size as given");
    }
    assert_eq!(rows.len(), 5);
    let num = |r: &Vec<String>, k: usize| r[k].parse::<u64>().unwrap();
    for (i, a) in rows.iter().enumerate() {
        assert!(num(a, 4) + num(a, 3) <= 12, "{a:?} within the arena");
        for b in &rows[i + 1..] {
            let live_together = num(a, 1) < num(b, 2) && num(b, 1) < num(a, 2);
            let apart = num(a, 4) + num(a, 3) <= num(b, 4) || num(b, 4) + num(b, 3) <= num(a, 4);
            assert!(!live_together || apart, "{a:?} and {b:?} overlap");
        }
    }

    // The written plan plans again (its offset column is read and ignored), and an
    // upper-case extension is CSV too.
    let dir = tempfile::tempdir().unwrap();
    let again = dir.path().join("again.CSV");
    std::fs::write(&again, &written).unwrap();
    let out = memwarden(&["plan", again.to_str().unwrap(), "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), written);
}

#[test]
fn plan_capacity_proves_the_example_infeasible_below_its_optimum() {
    let csv = minimalloc_example();
    let out = memwarden(&["plan", &csv, "--capacity", "11"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("proved infeasible: the lower bound is 12 > 11"),
        "{err}"
    );
    assert!(err.contains("input.12.csv"), "{err}");
    assert!(out.stdout.is_empty());

    for capacity in ["12", "12B", "1KiB"] {
        let out = memwarden(&["plan", &csv, "--capacity", capacity, "--format", "json"]);
        assert!(out.status.success(), "{capacity}: {}", text(&out.stderr));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(plan["arena_bytes"].as_u64().unwrap() <= 12);
    }
    let out = memwarden(&["plan", &csv, "--capacity", "12", "--effort", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("capacity                     12 B"));

    let out = memwarden(&["plan", &csv, "--capacity", "twelve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("twelve"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn plan_bad_csv_exits_2_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("plan.csv");
    let csv = minimalloc_example();
    let cases: [(&str, &str, &[&str]); 5] = [
        (
            "dup.csv",
            "id,lower,upper,size\nb1,0,3,4\nb1,3,9,4\n",
            &["line 3", "duplicate id \"b1\" (first on line 2)"],
        ),
        (
            "empty_interval.csv",
            "id,lower,upper,size\nb1,0,3,4\n\nb2,9,9,4\n",
            &["line 4", "upper 9 is not above lower 9"],
        ),
        (
            "no_size.csv",
            "id,lower,upper\nb1,0,3\n",
            &["line 1", "no size column"],
        ),
        (
            "nan.csv",
            "id,lower,upper,size\nb1,0,3,four\n",
            &["line 2", "size is not a whole number: \"four\""],
        ),
        ("blank.csv", "\n\n", &["line 1", "no header"]),
    ];
    for (name, body, needles) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let p = path.to_str().unwrap();
        assert_refused(
            &[
                "plan",
                p,
                "--format",
                "csv",
                "--out",
                out_file.to_str().unwrap(),
            ],
            &[&[p][..], needles].concat(),
            &out_file,
        );
    }
    // Options for graphs have no meaning for a buffer list.
    for flag in [
        &["--dim", "N=8"][..],
        &["--inplace"],
        &["--unknown", "skip"],
    ] {
        let args = [
            &["plan", &csv[..]][..],
            flag,
            &["--out", out_file.to_str().unwrap()],
        ]
        .concat();
        assert_refused(&args, &[&csv, flag[0], "does not apply"], &out_file);
    }
    // Only a regular file is read.
    let sub = dir.path().join("dir.csv");
    std::fs::create_dir(&sub).unwrap();
    assert_refused(
        &[
            "plan",
            sub.to_str().unwrap(),
            "--out",
            out_file.to_str().unwrap(),
        ],
        &[sub.to_str().unwrap(), "not a regular file"],
        &out_file,
    );
    assert_refused(
        &[
            "plan",
            "/no/such/buffers.csv",
            "--out",
            out_file.to_str().unwrap(),
        ],
        &["/no/such/buffers.csv"],
        &out_file,
    );
}

#[test]
fn plan_writes_a_graphs_plan_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let graph = shared_onnx("resnet18.json");
    let out_file = dir.path().join("resnet18.csv");
    let out = memwarden(&[
        "plan",
        &graph,
        "--format",
        "csv",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = memwarden(&["plan", &graph, "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let written = std::fs::read_to_string(&out_file).unwrap();
    let mut lines = written.lines();
    assert_eq!(lines.next(), Some("id,lower,upper,size,offset"));
    let tensors = plan["tensors"].as_array().unwrap();
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), tensors.len());
    for (row, t) in rows.iter().zip(tensors) {
        let expected = format!(
            "{},{},{},{},{}",
            t["name"].as_str().unwrap(),
            t["first_step"],
            t["last_step"].as_u64().unwrap() + 1,
            t["bytes"],
            t["offset"]
        );
        assert_eq!(*row, expected);
    }
}
