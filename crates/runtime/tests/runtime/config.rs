//! `memwarden_runtime::config`: loading the shipped file, values, paths, and diagnostics that name
//! the key and the line of every kind of mistake.

use std::path::Path;
use std::time::Duration;

use memwarden_core::{ByteSize, ResourceKind};
use memwarden_runtime::config::{Config, ConfigError, Diagnostic, SHIPPED_TOML};
use memwarden_runtime::{AutoShares, Budget};

/// A small valid config; the trailing comments are line numbers, so that the expected
/// lines below can be checked by eye.
const BASE: &str = r#"[monitor]                   # 1
budget = "1GiB"             # 2
warning_fraction = 0.75     # 3
critical_fraction = 0.9     # 4
tick = "500ms"              # 5
[kinds.model_shards]        # 6
priority = 8                # 7
ttl = "30m"                 # 8
max_idle = "10m"            # 9
max_bytes = "512MiB"        # 10
incremental_fraction = 0.0  # 11
snapshot_on_release = false # 12
[kinds.model_weights_cache] # 13
priority = 7                # 14
incremental_fraction = 0    # 15
snapshot_on_release = false # 16
[kinds.render_cache]        # 17
priority = 3                # 18
max_idle = "5m"             # 19
incremental_fraction = 0.0  # 20
snapshot_on_release = true  # 21
[kinds.temp_buffers]        # 22
priority = 1                # 23
max_idle = "30s"            # 24
incremental_fraction = 0.0  # 25
snapshot_on_release = false # 26
[kinds.audio_cache]         # 27
priority = 4                # 28
incremental_fraction = 0.0  # 29
snapshot_on_release = false # 30
[kinds.subtitle_index]      # 31
priority = 5                # 32
incremental_fraction = 0.5  # 33
snapshot_on_release = false # 34
[snapshot]                  # 35
dir = "snaps"               # 36
max_bytes = "256MiB"        # 37
[logging]                   # 38
level = "debug"             # 39
"#;

/// `BASE` with the one occurrence of `from` replaced by `to`.
fn edit(from: &str, to: &str) -> String {
    assert_eq!(
        BASE.matches(from).count(),
        1,
        "{from:?} must occur once in BASE"
    );
    BASE.replacen(from, to, 1)
}

fn diagnostics(toml: &str) -> Vec<Diagnostic> {
    match Config::from_toml_str(toml, "test.toml") {
        Ok(config) => panic!("accepted:\n{toml}\nas {config:#?}"),
        Err(ConfigError::Invalid {
            origin,
            diagnostics,
        }) => {
            assert_eq!(origin, "test.toml");
            assert!(!diagnostics.is_empty());
            diagnostics
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

/// `toml` is rejected with exactly one diagnostic, naming `key` on `line`, whose message
/// contains `message`.
fn check(toml: &str, key: &str, line: usize, message: &str) {
    let found = diagnostics(toml);
    let [diagnostic] = found.as_slice() else {
        panic!("expected one diagnostic for {key} on line {line}, got {found:#?}\nin:\n{toml}");
    };
    assert_eq!(
        (diagnostic.key.as_str(), diagnostic.line),
        (key, line),
        "{diagnostic:#?}\nin:\n{toml}"
    );
    assert!(diagnostic.column >= 1, "{diagnostic:?}");
    assert!(
        diagnostic.message.contains(message),
        "message {:?} lacks {message:?}",
        diagnostic.message
    );
}

#[test]
fn base_is_valid() {
    if let Err(error) = Config::from_toml_str(BASE, "base.toml") {
        panic!("{error}");
    }
}

#[test]
fn unknown_keys() {
    check(
        &edit("tick = \"500ms\"", "tick = \"500ms\"\nbudgit = 5"),
        "monitor.budgit",
        6,
        "unknown key `budgit`",
    );
    check(
        &edit("max_idle = \"5m\"", "max_idel = \"5m\""),
        "kinds.render_cache.max_idel",
        19,
        "unknown key `max_idel`",
    );
    check(
        &edit("[logging]  ", "[logging]\nlevel2 = 1"),
        "logging.level2",
        39,
        "unknown key",
    );
    check(
        &format!("{BASE}[kinds.\"video cache\"]\npriority = 2\n"),
        "kinds.video cache",
        40,
        "invalid resource kind",
    );
    check(
        &format!("{BASE}[monitr]\n"),
        "monitr",
        40,
        "unknown top-level key `monitr`",
    );
    check(
        &format!("top = 1\n{BASE}"),
        "top",
        1,
        "unknown top-level key",
    );
    // A dotted key inside a table is an unknown key of that table.
    check(
        &edit("priority = 5 ", "sub.x = 5    \npriority = 5"),
        "kinds.subtitle_index.sub",
        32,
        "unknown key",
    );
}

#[test]
fn wrong_types() {
    check(
        &edit("budget = \"1GiB\"", "budget = true"),
        "monitor.budget",
        2,
        "byte count",
    );
    check(
        &edit("priority = 8 ", "priority = \"8\""),
        "kinds.model_shards.priority",
        7,
        "expected a whole number from 1",
    );
    check(
        &edit("priority = 1 ", "priority = 1.5"),
        "kinds.temp_buffers.priority",
        23,
        "invalid type",
    );
    check(
        &edit("snapshot_on_release = true", "snapshot_on_release = 1   "),
        "kinds.render_cache.snapshot_on_release",
        21,
        "boolean",
    );
    check(
        &edit("warning_fraction = 0.75", "warning_fraction = \"75%\""),
        "monitor.warning_fraction",
        3,
        "invalid type",
    );
    check(
        &edit("dir = \"snaps\"", "dir = [\"snaps\"]"),
        "snapshot.dir",
        36,
        "invalid type",
    );
    let without_logging = BASE
        .split("[logging]")
        .next()
        .expect("BASE has a [logging] table");
    check(
        &format!("logging = 3\n{without_logging}"),
        "logging",
        1,
        "expected a table, found integer",
    );
    check(
        &edit("[kinds.audio_cache]", "[[kinds.audio_cache]]"),
        "kinds.audio_cache",
        27,
        "expected a table, found array",
    );
}

#[test]
fn missing_keys_are_reported_at_their_table_header() {
    check(
        &edit("priority = 3 ", "# no priority"),
        "kinds.render_cache.priority",
        17,
        "missing required key",
    );
    check(
        &edit("tick = \"500ms\"", "# tick"),
        "monitor.tick",
        1,
        "missing required key",
    );
    check(
        &edit("snapshot_on_release = false # 34", ""),
        "kinds.subtitle_index.snapshot_on_release",
        31,
        "missing",
    );
    check(
        &edit("max_bytes = \"256MiB\"", ""),
        "snapshot.max_bytes",
        35,
        "missing",
    );
    // A kind table is a custom kind when its name is not a built-in one, and a
    // built-in kind may be left out: it keeps its crates' defaults.
    let renamed = edit("[kinds.audio_cache]  ", "[kinds.audio_cachex] ");
    let config = Config::from_toml_str(&renamed, "t").unwrap_or_else(|e| panic!("{e}"));
    assert!(config.kinds.get(&ResourceKind::AudioCache).is_none());
    let custom: ResourceKind = "audio_cachex".parse().expect("a valid name");
    assert_eq!(config.kinds.get(&custom).map(|k| k.priority.get()), Some(4));
    let no_monitor = BASE.lines().skip(5).collect::<Vec<_>>().join("\n");
    check(&no_monitor, "monitor", 1, "missing required table");
}

#[test]
fn bad_values() {
    check(
        &edit("max_bytes = \"512MiB\"", "max_bytes = -5      "),
        "kinds.model_shards.max_bytes",
        10,
        "negative",
    );
    check(
        &edit("max_bytes = \"256MiB\"", "max_bytes = \"-1 MiB\""),
        "snapshot.max_bytes",
        37,
        "negative",
    );
    check(
        &edit("budget = \"1GiB\"", "budget = \"1 GiBi\""),
        "monitor.budget",
        2,
        "unknown unit",
    );
    check(
        &edit("budget = \"1GiB\"", "budget = 0"),
        "monitor.budget",
        2,
        "greater than zero",
    );
    check(
        &edit("priority = 8 ", "priority = 11"),
        "kinds.model_shards.priority",
        7,
        "out of range (expected 1..=10)",
    );
    check(
        &edit("priority = 1 ", "priority = 0 "),
        "kinds.temp_buffers.priority",
        23,
        "out of range",
    );
    check(
        &edit("dir = \"snaps\"", "dir = \"\""),
        "snapshot.dir",
        36,
        "must not be empty",
    );
    check(
        &edit("dir = \"snaps\"", "dir = \"   \""),
        "snapshot.dir",
        36,
        "must not be empty",
    );
    check(
        &edit("max_bytes = \"256MiB\"", "max_bytes = 0"),
        "snapshot.max_bytes",
        37,
        "more than 0 bytes",
    );
}

#[test]
fn fractions() {
    check(
        &edit("warning_fraction = 0.75", "warning_fraction = 1.5"),
        "monitor.warning_fraction",
        3,
        "out of range",
    );
    check(
        &edit("warning_fraction = 0.75", "warning_fraction = 0"),
        "monitor.warning_fraction",
        3,
        "greater than 0",
    );
    check(
        &edit("critical_fraction = 0.9", "critical_fraction = -0.1"),
        "monitor.critical_fraction",
        4,
        "out of range",
    );
    check(
        &edit("critical_fraction = 0.9", "critical_fraction = nan"),
        "monitor.critical_fraction",
        4,
        "out of range",
    );
    check(
        &edit("incremental_fraction = 0.5", "incremental_fraction = 2"),
        "kinds.subtitle_index.incremental_fraction",
        33,
        "between 0 and 1",
    );
    check(
        &edit("incremental_fraction = 0 ", "incremental_fraction = -1"),
        "kinds.model_weights_cache.incremental_fraction",
        15,
        "between 0 and 1",
    );
    // The thresholds must be in order; the diagnostic names both keys.
    for warning in ["0.9", "0.95"] {
        let toml = edit(
            "warning_fraction = 0.75",
            &format!("warning_fraction = {warning}"),
        );
        check(
            &toml,
            "monitor.critical_fraction",
            4,
            "must be greater than monitor.warning_fraction",
        );
        check(&toml, "monitor.critical_fraction", 4, "line 3");
    }
}

#[test]
fn durations() {
    check(
        &edit("tick = \"500ms\"", "tick = 500"),
        "monitor.tick",
        5,
        "needs a unit: write \"500s\"",
    );
    check(
        &edit("tick = \"500ms\"", "tick = 0.5"),
        "monitor.tick",
        5,
        "needs a unit",
    );
    check(
        &edit("tick = \"500ms\"", "tick = \"500\""),
        "monitor.tick",
        5,
        "500 has no unit",
    );
    check(
        &edit("tick = \"500ms\"", "tick = \"5 fortnights\""),
        "monitor.tick",
        5,
        "unknown unit",
    );
    check(
        &edit("tick = \"500ms\"", "tick = \"0ms\""),
        "monitor.tick",
        5,
        "greater than zero",
    );
    check(
        &edit("ttl = \"30m\"", "ttl = \"-30m\""),
        "kinds.model_shards.ttl",
        8,
        "negative",
    );
    check(
        &edit("max_idle = \"30s\"", "max_idle = \"1.2.3s\""),
        "kinds.temp_buffers.max_idle",
        24,
        "decimal point",
    );
    check(
        &edit("max_idle = \"5m\"", "max_idle = \"0s\""),
        "kinds.render_cache.max_idle",
        19,
        "leave the key out",
    );
    check(
        &edit("max_idle = \"10m\"", "max_idle = true"),
        "kinds.model_shards.max_idle",
        9,
        "a duration such as",
    );
}

#[test]
fn log_levels() {
    check(
        &edit("level = \"debug\"", "level = \"verbose\""),
        "logging.level",
        39,
        "unknown log level \"verbose\"",
    );
    check(
        &edit("level = \"debug\"", "level = 3"),
        "logging.level",
        39,
        "a log level",
    );
    let config = Config::from_toml_str(&edit("level = \"debug\"", "level = \"WARN\""), "t")
        .expect("any case");
    assert_eq!(config.logging.level, log::LevelFilter::Warn);
}

#[test]
fn syntax_errors() {
    check(
        &edit("budget = \"1GiB\"", "budget = \"1GiB "),
        "monitor.budget",
        2,
        "",
    );
    check(
        &edit("priority = 3 ", "priority = = 3"),
        "kinds.render_cache.priority",
        18,
        "",
    );
    check(
        &edit("[kinds.temp_buffers]", "[kinds.temp_buffers "),
        "kinds.temp_buffers",
        22,
        "",
    );
    check(
        &edit("priority = 4 ", "priority = 4 \npriority = 5"),
        "kinds.audio_cache.priority",
        29,
        "duplicate key",
    );
    check(&edit("[logging]  ", "[monitor]  "), "monitor", 38, "");
    check(&format!("{BASE}this is not toml\n"), "logging", 40, "");
    // The parser notices an unclosed array or multi-line string lines later; the key is
    // still the one whose value it is, and only the first error is reported.
    check(
        &edit("max_bytes = \"256MiB\"", "max_bytes = [1,"),
        "snapshot.max_bytes",
        39,
        "starts on line 37",
    );
    check(
        &edit("budget = \"1GiB\"", "budget = \"\"\"1GiB"),
        "monitor.budget",
        40,
        "starts on line 2",
    );
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let toml = edit("warning_fraction = 0.75", "warning_fraction = 0.95")
        .replacen("tick = \"500ms\"", "tick = 5      ", 1)
        .replacen("priority = 3 ", "priority = 30", 1)
        .replacen("level = \"debug\"", "level = \"loud\" ", 1)
        .replacen(
            "incremental_fraction = 0.5",
            "incremental_fraction = 1.5",
            1,
        );
    let found = diagnostics(&toml);
    let keys: Vec<(&str, usize)> = found.iter().map(|d| (d.key.as_str(), d.line)).collect();
    assert_eq!(
        keys,
        [
            ("monitor.critical_fraction", 4),
            ("monitor.tick", 5),
            ("kinds.render_cache.priority", 18),
            ("kinds.subtitle_index.incremental_fraction", 33),
            ("logging.level", 39),
        ]
    );
}

#[test]
fn invalid_error_displays_one_line_per_diagnostic() {
    let toml = edit("priority = 8 ", "priority = 11").replacen("tick = \"500ms\"", "tick = 5", 1);
    let error = Config::from_toml_str(&toml, "memwarden.toml").expect_err("two problems");
    assert_eq!(
        error.to_string(),
        "memwarden.toml:5:8: monitor.tick: a duration needs a unit: write \"5s\" (or ms, s, m, h or d) rather than the bare number 5\n\
         memwarden.toml:7:12: kinds.model_shards.priority: priority 11 is out of range (expected 1..=10)"
    );
}

#[test]
fn good_values_come_through() {
    let config = Config::from_toml_str(BASE, "base.toml").expect("BASE is valid");
    assert_eq!(config.monitor.budget_bytes, ByteSize::gib(1));
    assert_eq!(config.monitor.warning_fraction, 0.75);
    assert_eq!(config.monitor.critical_fraction, 0.9);
    assert_eq!(config.monitor.tick, Duration::from_millis(500));

    let shards = config
        .kinds
        .get(&ResourceKind::ModelShards)
        .expect("built-in");
    assert_eq!(shards.priority.get(), 8);
    assert_eq!(shards.ttl, Some(Duration::from_secs(30 * 60)));
    assert_eq!(shards.max_idle, Some(Duration::from_secs(10 * 60)));
    assert_eq!(shards.max_bytes, Some(ByteSize::mib(512)));
    let audio = config
        .kinds
        .get(&ResourceKind::AudioCache)
        .expect("built-in");
    assert_eq!(
        (audio.ttl, audio.max_idle, audio.max_bytes),
        (None, None, None)
    );
    assert_eq!(
        config
            .kinds
            .get(&ResourceKind::SubtitleIndex)
            .map(|k| k.incremental_fraction),
        Some(0.5)
    );
    assert!(
        config
            .kinds
            .get(&ResourceKind::RenderCache)
            .unwrap()
            .snapshot_on_release
    );
    assert_eq!(
        config
            .kinds
            .get(&ResourceKind::custom("gpu.textures").expect("valid name")),
        None
    );

    let kinds: Vec<ResourceKind> = config.kinds.iter().map(|(kind, _)| kind).collect();
    assert_eq!(kinds, ResourceKind::BUILTIN);
    for (kind, policy) in config.kinds.iter() {
        assert_eq!(config.kinds.get(&kind), Some(policy));
    }

    assert_eq!(
        config.snapshot.dir,
        Path::new("snaps"),
        "from_toml_str keeps relative paths"
    );
    assert_eq!(config.snapshot.max_bytes, ByteSize::mib(256));
    assert_eq!(config.logging.level, log::LevelFilter::Debug);
}

#[test]
fn alternative_spellings_are_accepted() {
    let toml = edit("budget = \"1GiB\"", "budget = 1073741824")
        .replacen("tick = \"500ms\"", "tick = \"1m 30.5s\"", 1)
        .replacen("[kinds.audio_cache]  ", "[kinds]\naudio_cache = { priority = 4, incremental_fraction = 0.0, snapshot_on_release = false }\n", 1)
        .replacen("priority = 4                # 28\nincremental_fraction = 0.0  # 29\nsnapshot_on_release = false # 30\n", "", 1);
    let config = Config::from_toml_str(&toml, "t").unwrap_or_else(|e| panic!("{e}\nin:\n{toml}"));
    assert_eq!(config.monitor.budget_bytes, ByteSize::gib(1));
    assert_eq!(config.monitor.tick, Duration::from_millis(90_500));
    assert_eq!(
        config
            .kinds
            .get(&ResourceKind::AudioCache)
            .unwrap()
            .priority
            .get(),
        4
    );
}

#[test]
fn snapshot_and_logging_may_be_left_out() {
    let toml = BASE
        .split("[snapshot]")
        .next()
        .expect("BASE has a [snapshot] table");
    let config = Config::from_toml_str(toml, "t").expect("optional tables");
    assert_eq!(config.snapshot.dir, Path::new("memwarden-snapshots"));
    assert_eq!(config.snapshot.max_bytes, ByteSize::mib(256));
    assert_eq!(config.logging.level, log::LevelFilter::Info);
    // The shipped file spells out the same defaults.
    let shipped = Config::shipped();
    assert_eq!(
        (shipped.snapshot, shipped.logging),
        (config.snapshot, config.logging)
    );
}

#[test]
fn shipped_config() {
    let config = Config::shipped();
    assert_eq!(config, Config::default());
    assert_eq!(config.monitor.budget, Budget::Auto(AutoShares::default()));
    assert_eq!(
        config.monitor.budget.resolve_against(4 << 30),
        ByteSize::gib(1),
        "a quarter of a 4 GiB machine outside a container"
    );
    assert_eq!(
        (
            config.monitor.auto_cgroup_share,
            config.monitor.auto_machine_share
        ),
        (0.75, 0.25)
    );
    assert!(config.monitor.warning_fraction < config.monitor.critical_fraction);
    let priorities: Vec<(ResourceKind, u8)> = config
        .kinds
        .iter()
        .map(|(kind, policy)| (kind, policy.priority.get()))
        .collect();
    assert_eq!(
        priorities,
        [
            (ResourceKind::ModelShards, 8),
            (ResourceKind::ModelWeightsCache, 7),
            (ResourceKind::RenderCache, 3),
            (ResourceKind::TempBuffers, 1),
            (ResourceKind::AudioCache, 4),
            (ResourceKind::SubtitleIndex, 5),
        ]
    );
    assert!(
        config
            .kinds
            .get(&ResourceKind::RenderCache)
            .unwrap()
            .snapshot_on_release
    );
    let kind = |kind| config.kinds.get(&kind).expect("a shipped kind");
    assert_eq!(
        kind(ResourceKind::TempBuffers).max_idle,
        Some(Duration::from_secs(30))
    );
    assert_eq!(kind(ResourceKind::SubtitleIndex).incremental_fraction, 0.5);
    assert!(SHIPPED_TOML.contains("budget = \"auto\""));
}

#[test]
fn serialised_config_loads_back_unchanged() {
    let mut config = Config::from_toml_str(BASE, "t").expect("BASE is valid");
    config
        .kinds
        .get_mut(&ResourceKind::AudioCache)
        .expect("configured")
        .ttl = Some(Duration::new(5_400, 1_500_000));
    let custom = config.kinds.get(&ResourceKind::TempBuffers).cloned();
    config.kinds.insert(
        "kv_cache".parse().expect("a valid name"),
        custom.expect("configured"),
    );
    let text = toml::to_string(&config).expect("a config serialises");
    let back =
        Config::from_toml_str(&text, "serialised").unwrap_or_else(|e| panic!("{e}\nin:\n{text}"));
    assert_eq!(back, config);
    assert!(text.contains("tick = \"500ms\""), "{text}");
    assert!(text.contains("ttl = \"1h30m1.5ms\""), "{text}");
    assert!(text.contains("level = \"debug\""), "{text}");
}

#[test]
fn from_path_resolves_the_snapshot_dir_against_the_file() {
    let temp = tempfile::tempdir().expect("a temp dir");
    let path = temp.path().join("memwarden.toml");
    std::fs::write(&path, BASE).expect("write the config");
    let config = Config::from_path(&path).expect("BASE is valid");
    assert_eq!(config.snapshot.dir, temp.path().join("snaps"));

    let absolute = temp.path().join("elsewhere");
    let toml = edit(
        "dir = \"snaps\"",
        &format!("dir = {:?}", absolute.display().to_string()),
    );
    std::fs::write(&path, toml).expect("write the config");
    assert_eq!(
        Config::from_path(&path).expect("valid").snapshot.dir,
        absolute
    );

    let defaults = BASE
        .split("[snapshot]")
        .next()
        .expect("BASE has a [snapshot] table");
    std::fs::write(&path, defaults).expect("write the config");
    assert_eq!(
        Config::from_path(&path).expect("valid").snapshot.dir,
        temp.path().join("memwarden-snapshots")
    );
}

#[test]
fn from_path_names_the_file_in_errors() {
    let temp = tempfile::tempdir().expect("a temp dir");
    let missing = temp.path().join("nope.toml");
    match Config::from_path(&missing) {
        Err(ConfigError::Io { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected an Io error, got {other:?}"),
    }
    let message = Config::from_path(&missing)
        .expect_err("missing")
        .to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );

    let path = temp.path().join("bad.toml");
    std::fs::write(&path, edit("priority = 8 ", "priority = 0 ")).expect("write the config");
    let message = Config::from_path(&path).expect_err("invalid").to_string();
    assert!(
        message.starts_with(&format!(
            "{}:7:12: kinds.model_shards.priority: ",
            path.display()
        )),
        "{message}"
    );
}

#[test]
fn diagnostics_serialise() {
    let diagnostic = Diagnostic {
        key: "monitor.tick".into(),
        line: 5,
        column: 8,
        message: "bad".into(),
    };
    assert_eq!(diagnostic.to_string(), "5:8: monitor.tick: bad");
    let json = toml::to_string(&diagnostic).expect("serialises");
    assert!(
        json.contains("key = \"monitor.tick\"") && json.contains("line = 5"),
        "{json}"
    );
}

#[test]
fn budget_as_a_share_of_the_machine() {
    let toml = edit("budget = \"1GiB\"", "budget = \"25%\"");
    let config = Config::from_toml_str(&toml, "t").unwrap_or_else(|e| panic!("{e}"));
    let total =
        memwarden_runtime::config::machine_memory().expect("this machine reports its memory");
    assert_eq!(config.monitor.budget_bytes.as_u64(), total / 4);
    assert_eq!(config.monitor.budget, Budget::Share(0.25));
    assert_eq!(
        Config::from_toml_str(BASE, "t").unwrap().monitor.budget,
        Budget::Bytes(ByteSize::gib(1))
    );
    check(
        &edit("budget = \"1GiB\"", "budget = \"150%\""),
        "monitor.budget",
        2,
        "150% is out of range",
    );
    check(
        &edit("budget = \"1GiB\"", "budget = \"0%\""),
        "monitor.budget",
        2,
        "greater than 0%",
    );
    check(
        &edit("budget = \"1GiB\"", "budget = \"lots%\""),
        "monitor.budget",
        2,
        "invalid budget \"lots%\"",
    );
}

#[test]
fn defrag_table() {
    let toml = format!(
        "{BASE}[defrag]\nenabled = false\nreleased_threshold = \"64MiB\"\ninterval = \"10m\"\naggressive = true\n"
    );
    let config = Config::from_toml_str(&toml, "t").unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.defrag.enabled);
    assert_eq!(config.defrag.released_threshold, ByteSize::mib(64));
    assert_eq!(config.defrag.interval, Some(Duration::from_secs(600)));
    assert!(config.defrag.aggressive);
    // Left out: the defaults, which the shipped file spells out.
    let defaults = Config::from_toml_str(BASE, "t").unwrap().defrag;
    assert_eq!(
        defaults,
        memwarden_runtime::config::DefragSettings::default()
    );
    assert_eq!(Config::shipped().defrag, defaults);
    assert_eq!(defaults.released_threshold.as_u64(), 500_000_000);
    assert_eq!(defaults.interval, Some(Duration::from_secs(3600)));

    let bad = format!(
        "{BASE}[defrag]\nenabled = true\nreleased_threshold = 0\ninterval = \"0s\"\naggressive = 1\nevery = \"1h\"\n"
    );
    let keys: Vec<(String, usize)> = diagnostics(&bad)
        .into_iter()
        .map(|d| (d.key, d.line))
        .collect();
    assert_eq!(
        keys,
        [
            ("defrag.released_threshold".to_owned(), 42),
            ("defrag.interval".to_owned(), 43),
            ("defrag.aggressive".to_owned(), 44),
            ("defrag.every".to_owned(), 45),
        ]
    );
}

#[test]
fn custom_kinds_are_configured_like_built_in_ones_and_kinds_may_be_left_out() {
    let kv = "[kinds.kv_cache]\npriority = 6\nmax_idle = \"2m\"\nmax_bytes = \"64MiB\"\nincremental_fraction = 0.25\nsnapshot_on_release = false\n";
    let config =
        Config::from_toml_str(&format!("{BASE}{kv}"), "t").unwrap_or_else(|e| panic!("{e}"));
    let kv_cache: ResourceKind = "kv_cache".parse().expect("a valid name");
    let policy = config.kinds.get(&kv_cache).expect("configured");
    assert_eq!(policy.priority.get(), 6);
    assert_eq!(policy.max_idle, Some(Duration::from_secs(120)));
    assert_eq!(policy.max_bytes, Some(ByteSize::mib(64)));
    assert_eq!(config.kinds.len(), 7);
    // The same checks as a built-in kind: a bad value names the custom kind's key.
    check(
        &format!("{BASE}{}", kv.replace("priority = 6", "priority = 0")),
        "kinds.kv_cache.priority",
        41,
        "out of range",
    );
    check(
        &format!("{BASE}{}", kv.replace("max_idle", "max_idel")),
        "kinds.kv_cache.max_idel",
        42,
        "unknown key",
    );
    // Only [monitor] is required: no kind at all is a valid config.
    let monitor_only: String = BASE.lines().take(5).collect::<Vec<_>>().join("\n");
    let config = Config::from_toml_str(&monitor_only, "t").unwrap_or_else(|e| panic!("{e}"));
    assert!(config.kinds.is_empty());
}

#[test]
fn auto_budget_shares_are_read_and_checked() {
    let toml = edit(
        "budget = \"1GiB\"",
        "budget = \"auto\"\nauto_machine_share = 0.5",
    );
    let config = Config::from_toml_str(&toml, "t").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.monitor.budget,
        Budget::Auto(AutoShares {
            cgroup: 0.75,
            machine: 0.5
        })
    );
    check(
        &edit(
            "budget = \"1GiB\"",
            "budget = \"auto\"\nauto_cgroup_share = 1.5",
        ),
        "monitor.auto_cgroup_share",
        3,
        "out of range",
    );
    // A round trip keeps the shares.
    let text = toml::to_string(&config).expect("a config serialises");
    let back = Config::from_toml_str(&text, "serialised").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.monitor.budget, config.monitor.budget);
}
