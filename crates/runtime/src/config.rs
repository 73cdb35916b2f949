//! Loads and checks memwarden's configuration: `configs/releasable_resources.toml`.
//!
//! A [`Config`] holds the memory budget and its thresholds ([`MonitorConfig`]), a release
//! policy per [`ResourceKind`], built-in or custom ([`KindsConfig`], [`KindConfig`]), where snapshots go
//! ([`SnapshotConfig`]), how much to log ([`LoggingConfig`]) and when to return freed heap
//! to the operating system ([`DefragSettings`]). [`Config::shipped`] is the
//! file that ships with memwarden, whose budget is `auto`: three quarters of the memory
//! cgroup's limit in a container, a quarter of the machine's memory elsewhere (see
//! [`Budget`]).
//!
//! ```
//! use memwarden_runtime::config::{Config, ConfigError};
//! use memwarden_core::ResourceKind;
//! use std::time::Duration;
//!
//! let config = Config::shipped();
//! assert!(config.monitor.budget.is_auto());
//! let render = config.kinds.get(&ResourceKind::RenderCache).expect("a built-in kind");
//! assert!(render.snapshot_on_release);
//!
//! let text = memwarden_runtime::config::SHIPPED_TOML.replace(r#"tick = "100ms""#, "tick = 100");
//! let Err(ConfigError::Invalid { diagnostics, .. }) = Config::from_toml_str(&text, "edited.toml") else {
//!     panic!("a bare number is not a duration");
//! };
//! assert_eq!(diagnostics[0].key, "monitor.tick");
//! assert!(diagnostics[0].message.contains(r#"write "100s""#));
//! ```
//!
//! # File format
//!
//! Five tables. `[monitor]` is required. `[kinds]` holds one `[kinds.<name>]` table per
//! kind the file configures: a built-in kind (`model_shards`, `render_cache`, ...) or a
//! custom one such as `kv_cache` (a name of letters, digits, `_`, `-` and `.`); a kind
//! left out keeps the defaults its crates give it. `[snapshot]`, `[logging]` and
//! `[defrag]` may be left out, giving [`SnapshotConfig::default`],
//! [`LoggingConfig::default`] and [`DefragSettings::default`]. Every key of a table that
//! is present is required, except a kind's `ttl`, `max_idle` and `max_bytes`; a key the
//! loader does not know is an error.
//!
//! - Sizes are byte counts or strings with units: `1073741824`, `"1GiB"`, `"512 MiB"`
//!   (see [`ByteSize`]).
//! - Durations are strings: one or more `<number><unit>` parts with units `ms`, `s`, `m`,
//!   `h`, `d`, such as `"500ms"`, `"1.5h"` or `"1h30m"`. A bare number is an error, because
//!   it would not say whether it means seconds or milliseconds.
//! - Fractions are numbers in `0..=1`; `warning_fraction` and `critical_fraction` must also
//!   be above zero, and the warning must come before the critical threshold.
//!
//! # Errors
//!
//! The key design decision: a config error names the dotted key and the line, and the
//! loader reports every problem it finds rather than the first. It parses the file into a
//! TOML tree that remembers where each key and value sits, then reads each known key on its
//! own, so a bad priority does not hide a bad duration three tables later. The result is a
//! [`ConfigError::Invalid`] holding one [`Diagnostic`] per problem; its `Display` prints
//! them one a line, compiler style: `memwarden.toml:14:12: kinds.render_cache.priority:
//! priority 11 is out of range (expected 1..=10)`.
//!
//! # In code
//!
//! The types here are `#[non_exhaustive]`, so that a setting can be added without
//! breaking anyone: a config comes from the loader (or [`Config::shipped`]) and is edited
//! field by field, and [`KindConfig::new`] makes the policy of a kind configured in code.
//!
//! # Serialising
//!
//! Every type here implements [`serde::Serialize`] (for `memwarden config check --format
//! json`, say). Sizes serialise as byte counts, durations as strings in the file's own
//! notation (`"1h30m"`, `"500ms"`), the log level as its lowercase name, and absent optional
//! values are left out, so a serialised config written as TOML loads back unchanged.

mod duration;
mod error;
mod read;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use memwarden_core::{ByteSize, Priority, ResourceKind};

use crate::Budget;
use crate::budget::{AutoShares, BudgetSource};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};
use toml::de::DeTable;

use duration::DurationSetting;
use read::{Report, Table};

pub use error::{ConfigError, Diagnostic};

/// The text of the shipped config file, `configs/releasable_resources.toml`, comments and
/// all; [`Config::shipped`] is what it parses to. Write it out to give a user a file to edit.
pub const SHIPPED_TOML: &str = include_str!("../../../configs/releasable_resources.toml");

/// A whole, checked memwarden configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Config {
    /// The memory budget and when to act on it (`[monitor]`).
    pub monitor: MonitorConfig,
    /// The release policy of each built-in resource kind (`[kinds.*]`).
    pub kinds: KindsConfig,
    /// Where released resources are snapshotted (`[snapshot]`).
    pub snapshot: SnapshotConfig,
    /// How much memwarden logs (`[logging]`).
    pub logging: LoggingConfig,
    /// When freed heap is returned to the operating system (`[defrag]`).
    pub defrag: DefragSettings,
}

/// When the defragmenter returns freed heap to the operating system (`[defrag]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DefragSettings {
    /// Whether the automatic triggers run at all (a manual compaction always does).
    pub enabled: bool,
    /// Compact once this many bytes have been released since the last compaction.
    pub released_threshold: ByteSize,
    /// Compact at least this often; `None` for no timer.
    #[serde(
        serialize_with = "duration::serialize_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    /// Trim repeatedly and also release the allocator's caches (see `memwarden-defrag`).
    pub aggressive: bool,
}

impl From<&DefragSettings> for memwarden_defrag::DefragConfig {
    fn from(settings: &DefragSettings) -> Self {
        memwarden_defrag::DefragConfig {
            released_threshold: settings.released_threshold.as_u64(),
            interval: settings.interval,
            aggressive: settings.aggressive,
            enabled: settings.enabled,
            ..memwarden_defrag::DefragConfig::default()
        }
    }
}

impl Default for DefragSettings {
    /// The values used when a file has no `[defrag]` table: the defragmenter's own
    /// defaults ([`DefragConfig::default`](memwarden_defrag::DefragConfig::default): on,
    /// every 500 MB released and every hour, not aggressive).
    fn default() -> Self {
        let defaults = memwarden_defrag::DefragConfig::default();
        DefragSettings {
            enabled: defaults.enabled,
            released_threshold: ByteSize::b(defaults.released_threshold),
            interval: defaults.interval,
            aggressive: defaults.aggressive,
        }
    }
}

/// The memory budget and the thresholds at which memwarden starts releasing (`[monitor]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct MonitorConfig {
    /// The most memory the process may use (its resident set, as the governor watches it;
    /// the tracked resources share it), as written: a size, or a share of this machine's
    /// memory such as `"25%"`.
    pub budget: Budget,
    /// [`budget`](Self::budget) in bytes, resolved when the file was loaded.
    #[serde(skip)]
    pub budget_bytes: ByteSize,
    /// Where [`budget_bytes`](Self::budget_bytes) came from.
    #[serde(skip)]
    pub budget_source: BudgetSource,
    /// With `budget = "auto"`: the share of the tightest cgroup limit, in `(0, 1]`
    /// (`auto_cgroup_share`, 0.75 when left out).
    pub auto_cgroup_share: f64,
    /// With `budget = "auto"`: the share of the machine's memory where no cgroup limit
    /// applies, and the ceiling where one does, in `(0, 1]` (`auto_machine_share`, 0.25
    /// when left out).
    pub auto_machine_share: f64,
    /// The share of the budget, in `(0, 1]`, above which memwarden releases the most
    /// expendable resources.
    pub warning_fraction: f64,
    /// The share of the budget, in `(0, 1]` and above `warning_fraction`, above which
    /// memwarden also releases important resources (priority up to 7) to get back under
    /// the warning threshold; above the budget itself anything unpinned may go.
    pub critical_fraction: f64,
    /// How often usage is checked against the budget; greater than zero.
    #[serde(serialize_with = "duration::serialize")]
    pub tick: Duration,
}

/// The release policy of one resource kind (`[kinds.<name>]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct KindConfig {
    /// How important the kind is to keep: 1 is released first, 10 last.
    pub priority: Priority,
    /// Release a resource this long after it was created, used or not; `None` for never.
    #[serde(
        serialize_with = "duration::serialize_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<Duration>,
    /// Release a resource once it has gone unused this long; `None` for never.
    #[serde(
        serialize_with = "duration::serialize_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_idle: Option<Duration>,
    /// The most memory all resources of this kind may hold together; `None` for no cap
    /// beyond the budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<ByteSize>,
    /// The share of a resource, in `[0, 1]`, released in one step when it can be released
    /// in part; `0.0` releases it whole.
    pub incremental_fraction: f64,
    /// Whether to write a snapshot of a resource before releasing it, so it can be
    /// restored instead of rebuilt.
    pub snapshot_on_release: bool,
}

impl KindConfig {
    /// A policy with `priority` and nothing else: no TTL, idle limit or cap, released
    /// whole, no snapshot (for configuring a custom kind in code).
    pub fn new(priority: Priority) -> Self {
        KindConfig {
            priority,
            ttl: None,
            max_idle: None,
            max_bytes: None,
            incremental_fraction: 0.0,
            snapshot_on_release: false,
        }
    }
}

/// The release policies of the configured resource kinds (`[kinds.<name>]`), built-in
/// and custom alike, keyed by kind.
///
/// A kind the file leaves out keeps the policy its crates give it until told otherwise
/// ([`KindPolicy::default_for`](memwarden_tracker::KindPolicy::default_for) in the
/// tracker, the reaper's incremental fractions, no cap, no snapshot).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct KindsConfig(BTreeMap<ResourceKind, KindConfig>);

impl KindsConfig {
    /// The policy of `kind`, if the file configures it.
    pub fn get(&self, kind: &ResourceKind) -> Option<&KindConfig> {
        self.0.get(kind)
    }

    /// The policy of `kind`, to edit, if the file configures it.
    pub fn get_mut(&mut self, kind: &ResourceKind) -> Option<&mut KindConfig> {
        self.0.get_mut(kind)
    }

    /// Sets the policy of `kind`; returns the one it replaces.
    pub fn insert(&mut self, kind: ResourceKind, config: KindConfig) -> Option<KindConfig> {
        self.0.insert(kind, config)
    }

    /// Every configured kind with its policy: the built-in kinds in the order of
    /// [`ResourceKind::BUILTIN`], then custom kinds by name.
    pub fn iter(&self) -> impl Iterator<Item = (ResourceKind, &KindConfig)> {
        self.0.iter().map(|(kind, config)| (kind.clone(), config))
    }

    /// How many kinds are configured.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no kind is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where snapshots of released resources are written (`[snapshot]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SnapshotConfig {
    /// The snapshot directory. A relative path in a file loaded with [`Config::from_path`]
    /// is resolved against the file's directory; from [`Config::from_toml_str`] it is kept
    /// as written (so it is relative to the working directory).
    pub dir: PathBuf,
    /// The most disk space snapshots may take together.
    pub max_bytes: ByteSize,
}

impl Default for SnapshotConfig {
    /// The values used when a file has no `[snapshot]` table: `memwarden-snapshots`, 256 MiB.
    fn default() -> Self {
        SnapshotConfig {
            dir: PathBuf::from("memwarden-snapshots"),
            max_bytes: ByteSize::mib(256),
        }
    }
}

/// How much memwarden logs (`[logging]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LoggingConfig {
    /// The most verbose level logged: `off`, `error`, `warn`, `info`, `debug` or `trace`
    /// in the file (any case).
    #[serde(serialize_with = "serialize_level")]
    pub level: log::LevelFilter,
}

impl Default for LoggingConfig {
    /// The value used when a file has no `[logging]` table: `info`.
    fn default() -> Self {
        LoggingConfig {
            level: log::LevelFilter::Info,
        }
    }
}

/// The largest config file [`Config::from_path`] reads: 4 MiB. The shipped config is a
/// few KiB with its comments; a file this large is a mistake (or not a config at all),
/// and the whole of it is read into memory.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

impl Config {
    /// Reads and checks the config file at `path`, resolving a relative snapshot
    /// directory against the file's directory.
    ///
    /// Diagnostics name the file as `path` was given.
    ///
    /// Only a regular file of at most [`MAX_CONFIG_BYTES`] is read: a FIFO would block
    /// and a device such as `/dev/zero` would never end.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let io = |source| ConfigError::Io {
            path: path.to_owned(),
            source,
        };
        let bytes = memwarden_core::fs::read_regular(path, MAX_CONFIG_BYTES).map_err(io)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not UTF-8 text: {}", e.utf8_error()),
            ))
        })?;
        let mut config = Config::from_toml_str(&text, &path.display().to_string())?;
        if config.snapshot.dir.is_relative()
            && let Some(base) = path.parent()
        {
            config.snapshot.dir = base.join(&config.snapshot.dir);
        }
        Ok(config)
    }

    /// Checks config text; `origin` names it in diagnostics (a file name, `"<stdin>"`).
    ///
    /// Relative paths are kept as written.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut report = Report::new(text);
        // Only the first syntax error is reported: past it, the parser's view of the file
        // (and so every later message) cannot be trusted.
        let document = match DeTable::parse(text) {
            Ok(document) => document,
            Err(error) => {
                report.syntax_error(&error);
                return Err(invalid(origin, report));
            }
        };

        let mut root = Table::root(&document);
        let monitor = root
            .required_table(&mut report, "monitor")
            .and_then(|table| read_monitor(&mut report, table));
        let kinds = match root.optional_table(&mut report, "kinds") {
            Some(table) => read_kinds(&mut report, table),
            None => Some(KindsConfig::default()),
        };
        let snapshot = match root.optional_table(&mut report, "snapshot") {
            Some(table) => read_snapshot(&mut report, table),
            None => Some(SnapshotConfig::default()),
        };
        let logging = match root.optional_table(&mut report, "logging") {
            Some(table) => read_logging(&mut report, table),
            None => Some(LoggingConfig::default()),
        };
        let defrag = match root.optional_table(&mut report, "defrag") {
            Some(table) => read_defrag(&mut report, table),
            None => Some(DefragSettings::default()),
        };
        root.finish(&mut report, "top-level key");

        match (monitor, kinds, snapshot, logging, defrag) {
            (Some(monitor), Some(kinds), Some(snapshot), Some(logging), Some(defrag))
                if report.is_clean() =>
            {
                Ok(Config {
                    monitor,
                    kinds,
                    snapshot,
                    logging,
                    defrag,
                })
            }
            _ => {
                debug_assert!(!report.is_clean(), "every rejected value is reported");
                Err(invalid(origin, report))
            }
        }
    }

    /// The shipped configuration, [`SHIPPED_TOML`]: an `auto` budget (three quarters of the
    /// cgroup's limit, else a quarter of the machine: 1 GiB on a 4 GiB machine).
    pub fn shipped() -> Config {
        Config::from_toml_str(SHIPPED_TOML, "configs/releasable_resources.toml")
            .expect("the shipped config is valid (a unit test checks it)")
    }
}

impl Default for Config {
    /// [`Config::shipped`].
    fn default() -> Self {
        Config::shipped()
    }
}

fn invalid(origin: &str, report: Report<'_>) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_owned(),
        diagnostics: report.into_diagnostics(),
    }
}

fn read_monitor(report: &mut Report<'_>, mut table: Table<'_, '_>) -> Option<MonitorConfig> {
    let budget = table.required::<Budget>(report, "budget");
    let warning = fraction(report, &mut table, "warning_fraction", Zero::Rejected);
    let critical = fraction(report, &mut table, "critical_fraction", Zero::Rejected);
    let tick = positive_duration(report, &mut table, "tick", Presence::Required);
    let defaults = AutoShares::default();
    let cgroup_share =
        optional_fraction(report, &mut table, "auto_cgroup_share").unwrap_or(defaults.cgroup);
    let machine_share =
        optional_fraction(report, &mut table, "auto_machine_share").unwrap_or(defaults.machine);
    table.finish(report, "key");

    let budget = budget.and_then(|budget| {
        let span = budget.span();
        let budget = match budget.into_inner() {
            Budget::Auto(_) => Budget::Auto(AutoShares {
                cgroup: cgroup_share,
                machine: machine_share,
            }),
            other => other,
        };
        match budget.resolve_detailed() {
            Ok(resolved) => Some((budget, resolved)),
            Err(error) => {
                report.error(table.key("budget"), span, error.to_string());
                None
            }
        }
    });
    if let (Some(warning), Some(critical)) = (&warning, &critical)
        && warning.get_ref() >= critical.get_ref()
    {
        let message = format!(
            "{} must be greater than {} ({}, line {})",
            critical.get_ref(),
            table.key("warning_fraction"),
            warning.get_ref(),
            report.line_of(warning.span()),
        );
        report.error(table.key("critical_fraction"), critical.span(), message);
    }
    let (budget, resolved) = budget?;
    Some(MonitorConfig {
        budget,
        budget_bytes: resolved.bytes,
        budget_source: resolved.source,
        auto_cgroup_share: cgroup_share,
        auto_machine_share: machine_share,
        warning_fraction: warning?.into_inner(),
        critical_fraction: critical?.into_inner(),
        tick: tick?,
    })
}

fn read_kinds(report: &mut Report<'_>, mut table: Table<'_, '_>) -> Option<KindsConfig> {
    let mut kinds = KindsConfig::default();
    let mut clean = true;
    for (name, span, sub) in table.tables(report) {
        let kind = match name.parse::<ResourceKind>() {
            Ok(kind) => kind,
            Err(error) => {
                report.error(table.key(name), span, error.to_string());
                clean = false;
                continue;
            }
        };
        match sub.and_then(|sub| read_kind(report, sub)) {
            Some(config) => {
                kinds.insert(kind, config);
            }
            None => clean = false,
        }
    }
    clean.then_some(kinds)
}

fn read_kind(report: &mut Report<'_>, mut table: Table<'_, '_>) -> Option<KindConfig> {
    let priority = table.required::<PrioritySetting>(report, "priority");
    let ttl = positive_duration(report, &mut table, "ttl", Presence::Optional);
    let max_idle = positive_duration(report, &mut table, "max_idle", Presence::Optional);
    let max_bytes = table.optional::<ByteSize>(report, "max_bytes");
    let incremental_fraction = fraction(report, &mut table, "incremental_fraction", Zero::Allowed);
    let snapshot_on_release = table.required::<bool>(report, "snapshot_on_release");
    table.finish(report, "key");
    Some(KindConfig {
        priority: priority?.into_inner().0,
        ttl,
        max_idle,
        max_bytes: max_bytes.map(toml::Spanned::into_inner),
        incremental_fraction: incremental_fraction?.into_inner(),
        snapshot_on_release: snapshot_on_release?.into_inner(),
    })
}

fn read_snapshot(report: &mut Report<'_>, mut table: Table<'_, '_>) -> Option<SnapshotConfig> {
    let dir = table.required::<String>(report, "dir");
    let max_bytes = table.required::<ByteSize>(report, "max_bytes");
    table.finish(report, "key");
    let dir = dir?;
    if let Some(max) = &max_bytes
        && max.get_ref().as_u64() == 0
    {
        report.error(
            table.key("max_bytes"),
            max.span(),
            "the snapshot store needs more than 0 bytes",
        );
    }
    if dir.get_ref().trim().is_empty() {
        report.error(
            table.key("dir"),
            dir.span(),
            "the snapshot directory must not be empty",
        );
    }
    Some(SnapshotConfig {
        dir: PathBuf::from(dir.into_inner()),
        max_bytes: max_bytes?.into_inner(),
    })
}

fn read_logging(report: &mut Report<'_>, mut table: Table<'_, '_>) -> Option<LoggingConfig> {
    let level = table.required::<LevelSetting>(report, "level");
    table.finish(report, "key");
    Some(LoggingConfig {
        level: level?.into_inner().0,
    })
}

fn read_defrag(report: &mut Report<'_>, mut table: Table<'_, '_>) -> Option<DefragSettings> {
    let enabled = table.required::<bool>(report, "enabled");
    let threshold = table.required::<ByteSize>(report, "released_threshold");
    let interval = positive_duration(report, &mut table, "interval", Presence::Optional);
    let aggressive = table.required::<bool>(report, "aggressive");
    table.finish(report, "key");
    if let Some(threshold) = &threshold
        && threshold.get_ref().as_u64() == 0
    {
        report.error(
            table.key("released_threshold"),
            threshold.span(),
            "must be greater than zero (set enabled = false to turn the triggers off)",
        );
    }
    Some(DefragSettings {
        enabled: enabled?.into_inner(),
        released_threshold: threshold?.into_inner(),
        interval,
        aggressive: aggressive?.into_inner(),
    })
}

/// Whether a fraction may be zero.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Zero {
    Allowed,
    Rejected,
}

/// Reads a required fraction, checking it lies in `[0, 1]` (or `(0, 1]`).
fn fraction(
    report: &mut Report<'_>,
    table: &mut Table<'_, '_>,
    name: &'static str,
    zero: Zero,
) -> Option<toml::Spanned<f64>> {
    let value = table.required::<f64>(report, name)?;
    let v = *value.get_ref();
    let (in_range, expected) = match zero {
        Zero::Allowed => ((0.0..=1.0).contains(&v), "between 0 and 1"),
        Zero::Rejected => (v > 0.0 && v <= 1.0, "greater than 0 and at most 1"),
    };
    if in_range {
        Some(value)
    } else {
        report.error(
            table.key(name),
            value.span(),
            format!("{v} is out of range: a fraction must be {expected}"),
        );
        None
    }
}

/// Reads an optional fraction in `(0, 1]`; `None` when absent or rejected (reported).
fn optional_fraction(
    report: &mut Report<'_>,
    table: &mut Table<'_, '_>,
    name: &'static str,
) -> Option<f64> {
    let value = table.optional::<f64>(report, name)?;
    let v = *value.get_ref();
    if v > 0.0 && v <= 1.0 {
        Some(v)
    } else {
        report.error(
            table.key(name),
            value.span(),
            format!("{v} is out of range: a fraction must be greater than 0 and at most 1"),
        );
        None
    }
}

/// Whether a key must be present.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Presence {
    Required,
    Optional,
}

/// Reads a duration, checking it is greater than zero; `None` when it is absent or rejected.
fn positive_duration(
    report: &mut Report<'_>,
    table: &mut Table<'_, '_>,
    name: &'static str,
    presence: Presence,
) -> Option<Duration> {
    let value = match presence {
        Presence::Required => table.required::<DurationSetting>(report, name)?,
        Presence::Optional => table.optional::<DurationSetting>(report, name)?,
    };
    if value.get_ref().0.is_zero() {
        let hint = if presence == Presence::Optional {
            " (leave the key out for no limit)"
        } else {
            ""
        };
        report.error(
            table.key(name),
            value.span(),
            format!("must be greater than zero{hint}"),
        );
        return None;
    }
    Some(value.into_inner().0)
}

pub use crate::machine_memory;

/// A [`Priority`] read from an integer, with a message that speaks of priorities rather
/// than of Rust integer types.
struct PrioritySetting(Priority);

impl<'de> Deserialize<'de> for PrioritySetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PriorityVisitor;

        impl Visitor<'_> for PriorityVisitor {
            type Value = PrioritySetting;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number from 1 (released first) to 10 (released last)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PrioritySetting, E> {
                Priority::new(v).map(PrioritySetting).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PrioritySetting, E> {
                match i64::try_from(v) {
                    Ok(v) => self.visit_i64(v),
                    Err(_) => Err(E::custom(format!(
                        "priority {v} is out of range (expected 1..=10)"
                    ))),
                }
            }
        }

        deserializer.deserialize_any(PriorityVisitor)
    }
}

/// A [`log::LevelFilter`] read from its name; `log` is built without its `serde` feature.
struct LevelSetting(log::LevelFilter);

impl<'de> Deserialize<'de> for LevelSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LevelVisitor;

        impl Visitor<'_> for LevelVisitor {
            type Value = LevelSetting;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a log level: off, error, warn, info, debug or trace")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LevelSetting, E> {
                log::LevelFilter::from_str(v).map(LevelSetting).map_err(|_| {
                    E::custom(format!("unknown log level {v:?} (expected off, error, warn, info, debug or trace)"))
                })
            }
        }

        deserializer.deserialize_str(LevelVisitor)
    }
}

fn serialize_level<S: Serializer>(
    level: &log::LevelFilter,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&level.as_str().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_is_valid() {
        if let Err(error) = Config::from_toml_str(SHIPPED_TOML, "configs/releasable_resources.toml")
        {
            panic!("the shipped config is invalid:\n{error}");
        }
    }
}
