//! [`Governor`]: keeps the process's real resident memory under a budget.
//!
//! The [`Lifecycle`] keeps the bytes the tracker knows about under its budget; the
//! governor keeps what the operating system actually charges the process (its resident
//! set, RSS) under the same one: the budget and the thresholds are the lifecycle's, and
//! [`Governor::set_budget`] changes both loops at once. It reads the RSS from an [`RssSource`] (by default [`OsRss`], one `pread`
//! of `/proc/self/statm`) in two places:
//!
//! - **on a monitor thread**, every [`GovernorConfig::tick`], to catch growth nobody
//!   announced (pages of a mapped model touched by inference, a library's own caches);
//! - **before an allocation**, in [`Governor::make_room`], so that a load which would
//!   push the process over its budget frees memory first instead of afterwards. This is
//!   what keeps the *peak* under the budget: a monitor alone only sees a spike after it
//!   happened.
//!
//! Usage maps to a pressure level with the lifecycle's [`Thresholds`]: low up to the warning line,
//! medium up to the critical line, high up to the budget, critical above it. When the
//! RSS plus the incoming bytes passes the warning line, the governor asks the
//! prioritizer for a plan covering the excess plus a margin (down to
//! [`Thresholds::relief`] below the warning line) and runs it through the reaper (which
//! tells the defragmenter how many bytes were released); when the RSS did not fall with
//! them (the allocator kept the freed pages), it compacts the heap at once, aggressively.
//! If the process would still pass its budget, it plans again at [`Urgency::Critical`],
//! which may release anything that is not pinned or locked. These two passes are the
//! lifecycle's relief step, the same function [`Lifecycle::make_room`] runs over the
//! tracked bytes; the governor only measures differently (the RSS, after a compaction). The pressure level itself,
//! and what listeners hear, follows the RSS the process really has.
//!
//! Every tick and every release is recorded in a [`GovernorStats`] (bounded: samples are
//! thinned out as they accumulate), and listeners registered with
//! [`Governor::on_pressure`] hear each change of level. The monitor thread stops and is
//! joined on drop; [`Governor::shutdown`] does the same and returns the final report.
//!
//! ```
//! use memwarden_core::{ByteSize, ResourceKind};
//! use memwarden_runtime::governor::{Governor, GovernorConfig};
//! use memwarden_tracker::Tracker;
//! use memwarden_runtime::Lifecycle;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let tracker = Arc::new(Tracker::new());
//! let lifecycle = Arc::new(Lifecycle::new(tracker, ByteSize::gib(2)));
//! let config = GovernorConfig::default().tick(Duration::from_millis(20));
//! let governor = Governor::builder(lifecycle, config).start()?;
//! // Before each load: room for what is about to be allocated.
//! governor.make_room(&ResourceKind::RenderCache, 8 << 20);
//! let frame = vec![1u8; 8 << 20];
//! # drop(frame);
//! let report = governor.shutdown(); // stops and joins the monitor thread
//! assert_eq!(report.admissions, 1);
//! # Ok::<(), memwarden_runtime::governor::GovernorError>(())
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memwarden_core::{ByteSize, Clock, ResourceKind, Timestamp};
use memwarden_defrag::rss::RssReader;
use memwarden_defrag::{Defragmenter, Trigger};
use memwarden_prioritizer::Urgency;
use memwarden_reaper::ReleaseReport;
use parking_lot::{Condvar, Mutex, RwLock};
use serde::Serialize;

use crate::Budget;
use crate::cgroup::MemoryCgroup;
use crate::lifecycle::Limits;
use crate::pressure::PressureWatch;
use crate::{Admission, Lifecycle, SettingError, Thinned, Thresholds};

/// Where the governor reads the process's resident memory.
///
/// Implemented for [`OsRss`] (the default) and for any `Fn() -> Option<u64>`, which is
/// how tests feed it a fake RSS.
pub trait RssSource: Send + Sync + 'static {
    /// Resident bytes now; `None` when the platform cannot say.
    fn resident_bytes(&self) -> Option<u64>;
}

/// The operating system's figure: the process's resident set, from `/proc/self/statm`
/// kept open and re-read with one `pread` (the cheapest source the `rss_sources`
/// benchmark found), else a fresh read; and, when the process's memory cgroup has a
/// limit, the larger of that and the cgroup's charge.
///
/// Why both: where a cgroup limit applies, the kernel kills by the cgroup's charge, which
/// counts more than the RSS: page cache of the files the process wrote (snapshots), tmpfs
/// and `/dev/shm` pages (shared-memory segments), other processes of the same container.
/// The charge used is [`MemoryCgroup::usage`]: less the inactive file pages, which the
/// kernel reclaims before it kills anyone. Without a limit the charge decides nothing (and
/// may count a whole session's processes), so only the RSS is read.
#[derive(Debug)]
pub struct OsRss {
    reader: Option<RssReader>,
    cgroup: Option<MemoryCgroup>,
}

impl OsRss {
    /// Opens the source; where there is no `/proc/self/statm` the RSS reading is `None`.
    /// Reads the cgroup's charge too when the process's memory cgroup has a limit now.
    pub fn new() -> Self {
        OsRss::in_cgroup(MemoryCgroup::detect())
    }

    /// [`new`](Self::new) with the memory cgroup already found: its charge is read when
    /// it has a limit now.
    fn in_cgroup(cgroup: Option<MemoryCgroup>) -> Self {
        OsRss {
            cgroup: cgroup.filter(|cgroup| cgroup.limit().is_some()),
            ..OsRss::rss_only()
        }
    }

    /// The resident set alone, whatever the cgroup.
    pub fn rss_only() -> Self {
        OsRss {
            reader: RssReader::open()
                .map_err(|e| log::warn!("the governor cannot read the RSS: {e}"))
                .ok(),
            cgroup: None,
        }
    }

    /// The memory cgroup whose charge is read, if any.
    pub fn cgroup(&self) -> Option<&MemoryCgroup> {
        self.cgroup.as_ref()
    }
}

impl Default for OsRss {
    fn default() -> Self {
        OsRss::new()
    }
}

impl RssSource for OsRss {
    fn resident_bytes(&self) -> Option<u64> {
        let rss = match &self.reader {
            Some(reader) => reader.read(),
            None => memwarden_defrag::rss::current(),
        };
        let charge = self.cgroup.as_ref().and_then(MemoryCgroup::usage);
        match (rss, charge) {
            (Some(rss), Some(charge)) => Some(rss.max(charge)),
            (rss, charge) => rss.or(charge),
        }
    }
}

impl<F: Fn() -> Option<u64> + Send + Sync + 'static> RssSource for F {
    fn resident_bytes(&self) -> Option<u64> {
        self()
    }
}

/// How the governor watches and records. The budget and the thresholds are the
/// [`Lifecycle`]'s: there is one budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GovernorConfig {
    /// How often the monitor thread reads the RSS.
    #[serde(serialize_with = "serialize_duration")]
    pub tick: Duration,
    /// The most samples a report keeps; past it, every other sample is dropped and the
    /// sampling stride doubles, so a long run keeps an even picture in bounded memory.
    pub max_samples: usize,
}

impl Default for GovernorConfig {
    /// A 100 ms tick and 4096 samples.
    fn default() -> Self {
        GovernorConfig {
            tick: Duration::from_millis(100),
            max_samples: 4096,
        }
    }
}

impl GovernorConfig {
    /// From a loaded config: its tick.
    pub fn from_config(config: &crate::config::Config) -> Self {
        GovernorConfig::default().tick(config.monitor.tick)
    }

    /// Checks the settings: a tick above zero.
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.tick.is_zero() {
            return Err(SettingError::ZeroTick);
        }
        Ok(())
    }

    /// Replaces the tick.
    #[must_use]
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// Replaces the most samples a report keeps.
    #[must_use]
    pub fn max_samples(mut self, max_samples: usize) -> Self {
        self.max_samples = max_samples;
        self
    }
}

fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// What made the governor look at the RSS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cause {
    /// The monitor thread's tick (or [`Governor::tick`]).
    Tick,
    /// [`Governor::make_room`], before an allocation.
    Admit,
}

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Sample {
    /// Time since the governor started, by the tracker's clock.
    #[serde(serialize_with = "serialize_duration")]
    pub at: Duration,
    /// Resident bytes.
    pub rss: u64,
    /// Bytes the tracker held.
    pub tracked: u64,
    /// The pressure level.
    pub level: Urgency,
}

/// A change of pressure level, as listeners hear it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PressureChange {
    /// Time since the governor started.
    #[serde(serialize_with = "serialize_duration")]
    pub at: Duration,
    /// The level before.
    pub from: Urgency,
    /// The level now.
    pub to: Urgency,
    /// The resident bytes (plus the bytes about to be allocated, for an admission) that
    /// put it there.
    pub rss: u64,
}

/// One release the governor ran.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ReleaseEvent {
    /// Time since the governor started.
    #[serde(serialize_with = "serialize_duration")]
    pub at: Duration,
    /// What made it look.
    pub cause: Cause,
    /// The level it planned at (the last one, when it had to plan twice).
    pub level: Urgency,
    /// Bytes about to be allocated (0 for a tick).
    pub incoming: u64,
    /// The RSS before.
    pub rss_before: u64,
    /// The RSS after the release (and the compaction, if one ran).
    pub rss_after: u64,
    /// Resources released.
    pub released: usize,
    /// Bytes the reaper freed.
    pub bytes_freed: u64,
    /// Whether the heap was compacted because the RSS did not fall with the release.
    pub compacted: bool,
}

/// What the governor saw and did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GovernorStats {
    /// The configuration it ran with.
    pub config: GovernorConfig,
    /// The budget at the last reading (the lifecycle's).
    pub budget: ByteSize,
    /// The thresholds at the last reading (the lifecycle's).
    pub thresholds: Thresholds,
    /// Times an `auto` budget moved with the cgroup's limit
    /// ([`GovernorBuilder::follow`]).
    pub budget_changes: u64,
    /// The kernel's memory-pressure notifications heard (each raises the level to high
    /// at once and frees a relief step's worth).
    pub kernel_pressure_events: u64,
    /// What the kernel's pressure notifications come from ("PSI memory.pressure of /x",
    /// "v1 medium memory pressure of /x"); `None` when the monitor only ticks.
    pub kernel_pressure_source: Option<String>,
    /// Readings over time (thinned out evenly past [`GovernorConfig::max_samples`]).
    pub samples: Vec<Sample>,
    /// The changes of pressure level, oldest first (the most recent
    /// [`GovernorConfig::max_samples`]).
    pub pressure_changes: VecDeque<PressureChange>,
    /// All changes of pressure level, including any no longer in `pressure_changes`.
    pub pressure_change_count: u64,
    /// The releases, oldest first (the most recent [`GovernorConfig::max_samples`]).
    pub releases: VecDeque<ReleaseEvent>,
    /// Monitor ticks.
    pub ticks: u64,
    /// Admission checks ([`Governor::make_room`] calls).
    pub admissions: u64,
    /// Releases run, including any no longer in `releases`.
    pub release_count: u64,
    /// Bytes the reaper freed at the governor's request.
    pub bytes_freed: u64,
    /// Compactions run because the RSS did not fall after a release.
    pub compactions: u64,
    /// The lowest RSS read (0 before the first reading).
    pub rss_min: u64,
    /// The highest RSS read, before or after a release.
    pub rss_max: u64,
    /// The pressure level at the last reading.
    pub level: Urgency,
    /// Readings that failed (no RSS from the source).
    pub failed_reads: u64,
}

impl GovernorStats {
    /// The median RSS over the kept samples; 0 without samples.
    pub fn rss_median(&self) -> u64 {
        let mut rss: Vec<u64> = self.samples.iter().map(|s| s.rss).collect();
        if rss.is_empty() {
            return 0;
        }
        let mid = rss.len() / 2;
        *rss.select_nth_unstable(mid).1
    }
}

/// Keeps the process's resident memory under a budget; see the [module docs](self).
pub struct Governor {
    inner: Arc<Inner>,
    monitor: Option<JoinHandle<()>>,
    /// The kernel's pressure notifications, with the monitor thread only.
    watch: Option<PressureWatch>,
    /// The reaper observer telling the defragmenter of releases, removed on stop.
    observer: Option<memwarden_reaper::ObserverId>,
    /// The lifecycle's admission step through this governor, cleared on stop.
    admission: Option<crate::lifecycle::RssAdmission>,
}

impl std::fmt::Debug for Governor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governor")
            .field("config", &*self.inner.config.read())
            .field("level", &self.level())
            .field("monitor", &self.monitor.is_some())
            .finish_non_exhaustive()
    }
}

/// Sets up a [`Governor`]; from [`Governor::builder`].
pub struct GovernorBuilder {
    lifecycle: Arc<Lifecycle>,
    config: GovernorConfig,
    source: Option<Box<dyn RssSource>>,
    defrag: Option<Arc<Defragmenter>>,
    monitor: bool,
    follow: Option<Budget>,
}

impl std::fmt::Debug for GovernorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovernorBuilder")
            .field("config", &self.config)
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

impl GovernorBuilder {
    /// Reads the RSS from `source` instead of the operating system.
    #[must_use]
    pub fn source(mut self, source: impl RssSource) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub(crate) fn boxed_source(mut self, source: Box<dyn RssSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// Tells `defrag` of every byte the lifecycle's reaper releases (whoever asked for
    /// the release), and compacts through it at once when a release of the governor's
    /// does not show in the RSS.
    #[must_use]
    pub fn defrag(mut self, defrag: Arc<Defragmenter>) -> Self {
        self.defrag = Some(defrag);
        self
    }

    /// Re-resolves `budget` on every tick when it is `auto`, and sets the lifecycle's
    /// budget when the result changes: a container resized in place is followed within a
    /// tick. Other budgets are fixed and this does nothing.
    #[must_use]
    pub fn follow(mut self, budget: Budget) -> Self {
        self.follow = Some(budget).filter(Budget::is_auto);
        self
    }

    /// Starts no monitor thread: readings happen only in [`Governor::tick`] and
    /// [`Governor::make_room`] (for tests, and for loops that tick themselves).
    #[must_use]
    pub fn manual(mut self) -> Self {
        self.monitor = false;
        self
    }

    /// Starts the governor (and its monitor thread, unless [`manual`](Self::manual)).
    ///
    /// Fails on a configuration [`GovernorConfig::validate`] rejects, a zero budget in
    /// the lifecycle, or when the OS cannot start the thread.
    pub fn start(self) -> Result<Governor, GovernorError> {
        self.config.validate()?;
        let limits = self.lifecycle.limits();
        if limits.budget == 0 {
            return Err(SettingError::ZeroBudget.into());
        }
        limits.thresholds.validate()?;
        // Removed when the governor stops, so a lifecycle governed again hears each
        // release once.
        let observer = self.defrag.as_ref().map(|defrag| {
            // Weak: the reaper outlives neither the defragmenter nor its thread.
            let weak = Arc::downgrade(defrag);
            self.lifecycle.reaper().on_released(move |report| {
                if let Some(defrag) = weak.upgrade() {
                    defrag.notify_released(report.bytes_freed);
                }
            })
        });
        let clock = Arc::clone(self.lifecycle.tracker().clock());
        // Found once: the default source, an `auto` budget and the pressure watch all
        // read the same cgroup.
        let cgroup = MemoryCgroup::detect();
        let source = match self.source {
            Some(source) => source,
            None => Box::new(OsRss::in_cgroup(cgroup.clone())),
        };
        let inner = Arc::new(Inner {
            started: clock.now(),
            clock,
            lifecycle: self.lifecycle,
            source,
            defrag: self.defrag,
            config: RwLock::new(self.config),
            record: Mutex::new(Record::new(self.config, limits)),
            level: AtomicU64::new(level_code(Urgency::Low)),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            listeners: RwLock::new(Vec::new()),
            kernel_pressure: AtomicBool::new(false),
            follow: self.follow.map(|budget| Follow {
                budget,
                cgroup: cgroup.clone(),
                machine: crate::machine_memory(),
            }),
        });
        // The lifecycle's own admissions (a restore, a registry without a hook) go
        // through this governor while it runs.
        let admission: crate::lifecycle::RssAdmission = {
            let weak = Arc::downgrade(&inner);
            crate::lifecycle::RssAdmission(Arc::new(move |kind: &ResourceKind, bytes: u64| {
                match weak.upgrade() {
                    Some(inner) => inner.check(Cause::Admit, Some((kind, bytes, true))),
                    None => ReleaseReport::default(),
                }
            }))
        };
        inner.lifecycle.set_governed(admission.clone());
        let monitor = if self.monitor {
            let monitored = Arc::clone(&inner);
            let thread = std::thread::Builder::new()
                .name("memwarden-governor".into())
                .spawn(move || monitored.run_monitor());
            let thread = match thread {
                Ok(thread) => thread,
                Err(e) => {
                    // Nothing of this governor stays behind.
                    if let Some(observer) = observer {
                        inner.lifecycle.reaper().remove_observer(observer);
                    }
                    inner.lifecycle.clear_governed(&admission);
                    return Err(GovernorError::Spawn(e));
                }
            };
            Some(thread)
        } else {
            None
        };
        // The kernel's word on pressure wakes the monitor at once; without a monitor
        // thread there is nothing to wake.
        let watch = if monitor.is_some() {
            let weak = Arc::downgrade(&inner);
            PressureWatch::start(cgroup.as_ref(), "medium", move || {
                if let Some(inner) = weak.upgrade() {
                    inner.kernel_pressure.store(true, Ordering::SeqCst);
                    let _stop = inner.stop.lock();
                    inner.wake.notify_all();
                }
            })
        } else {
            None
        };
        inner.record.lock().report.kernel_pressure_source =
            watch.as_ref().map(|w| w.what().to_owned());
        Ok(Governor {
            inner,
            monitor,
            watch,
            observer,
            admission: Some(admission),
        })
    }
}

/// Makes room through a [`Governor`] without keeping it alive; from [`Governor::handle`].
#[derive(Clone)]
pub struct GovernorHandle(Weak<Inner>);

impl std::fmt::Debug for GovernorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("GovernorHandle")
            .field(&(self.0.strong_count() > 0))
            .finish()
    }
}

impl GovernorHandle {
    /// [`Governor::make_room`], or nothing (an empty report) once the governor is gone.
    pub fn make_room(&self, kind: &ResourceKind, incoming: u64) -> ReleaseReport {
        match self.0.upgrade() {
            Some(inner) => inner.check(Cause::Admit, Some((kind, incoming, false))),
            None => ReleaseReport::default(),
        }
    }

    /// [`Governor::admit`], or an admission that reserves nothing once the governor is
    /// gone.
    pub fn admit(&self, kind: &ResourceKind, incoming: u64) -> Admission {
        match self.0.upgrade() {
            Some(inner) => inner.admit(kind, incoming),
            None => Admission::none(),
        }
    }
}

/// Why a governor would not start or take a setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GovernorError {
    /// A setting out of range.
    #[error("invalid governor setting: {0}")]
    Invalid(#[from] SettingError),
    /// The monitor thread could not be started.
    #[error("cannot start the governor's monitor thread")]
    Spawn(#[source] std::io::Error),
}

type Listener = Arc<dyn Fn(&PressureChange) + Send + Sync>;

struct Inner {
    clock: Arc<dyn Clock>,
    started: Timestamp,
    lifecycle: Arc<Lifecycle>,
    source: Box<dyn RssSource>,
    defrag: Option<Arc<Defragmenter>>,
    config: RwLock<GovernorConfig>,
    record: Mutex<Record>,
    level: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
    listeners: RwLock<Vec<Listener>>,
    follow: Option<Follow>,
    /// Set by the kernel's pressure notification, taken by the next check.
    kernel_pressure: AtomicBool,
}

/// An `auto` budget the governor keeps resolving.
struct Follow {
    budget: Budget,
    cgroup: Option<MemoryCgroup>,
    machine: Option<u64>,
}

/// The report under construction.
struct Record {
    /// The report, less its samples.
    report: GovernorStats,
    samples: Thinned<Sample>,
}

impl Record {
    fn new(config: GovernorConfig, limits: Limits) -> Self {
        Record {
            report: GovernorStats {
                config,
                budget: ByteSize::b(limits.budget),
                thresholds: limits.thresholds,
                budget_changes: 0,
                kernel_pressure_events: 0,
                kernel_pressure_source: None,
                samples: Vec::new(),
                pressure_changes: VecDeque::new(),
                pressure_change_count: 0,
                releases: VecDeque::new(),
                ticks: 0,
                admissions: 0,
                release_count: 0,
                bytes_freed: 0,
                compactions: 0,
                rss_min: u64::MAX,
                rss_max: 0,
                level: Urgency::Low,
                failed_reads: 0,
            },
            samples: Thinned::new(config.max_samples),
        }
    }
}

fn level_code(level: Urgency) -> u64 {
    match level {
        Urgency::Low => 0,
        Urgency::Medium => 1,
        Urgency::High => 2,
        Urgency::Critical => 3,
    }
}

/// The share of a scheduler's threads to use at `level` (see
/// [`Governor::scheduler_pressure`]).
#[cfg(feature = "sched")]
fn jobs_factor(level: Urgency) -> f64 {
    match level {
        Urgency::Low => 1.0,
        Urgency::Medium => 0.75,
        Urgency::High => 0.5,
        Urgency::Critical => 0.0,
    }
}

fn level_of(code: u64) -> Urgency {
    match code {
        0 => Urgency::Low,
        1 => Urgency::Medium,
        2 => Urgency::High,
        _ => Urgency::Critical,
    }
}

impl Governor {
    /// Sets up a governor over `lifecycle`: it reads the OS's RSS and starts a monitor
    /// thread unless told otherwise.
    pub fn builder(lifecycle: Arc<Lifecycle>, config: GovernorConfig) -> GovernorBuilder {
        GovernorBuilder {
            lifecycle,
            config,
            source: None,
            defrag: None,
            monitor: true,
            follow: None,
        }
    }

    /// The lifecycle it drives.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.inner.lifecycle
    }

    /// The configuration.
    pub fn config(&self) -> GovernorConfig {
        *self.inner.config.read()
    }

    /// The budget: the lifecycle's.
    pub fn budget(&self) -> ByteSize {
        self.inner.lifecycle.budget()
    }

    /// Replaces the budget, the lifecycle's and so the governor's (the next reading acts
    /// on it); a zero budget is refused.
    pub fn set_budget(&self, budget: ByteSize) -> Result<(), GovernorError> {
        self.inner.lifecycle.set_budget(budget)?;
        self.inner.record.lock().report.budget = budget;
        Ok(())
    }

    /// A handle that makes room through this governor without owning it (for a
    /// [`ModelRegistry`](crate::ModelRegistry)'s admission hook, say); it does nothing
    /// once the governor is gone.
    pub fn handle(&self) -> GovernorHandle {
        GovernorHandle(Arc::downgrade(&self.inner))
    }

    /// The pressure level at the last reading.
    pub fn level(&self) -> Urgency {
        level_of(self.inner.level.load(Ordering::Relaxed))
    }

    /// A [`PressureSource`](memwarden_sched::PressureSource) for a
    /// [`ParallelScheduler`](memwarden_sched::ParallelScheduler): at each call the scheduler
    /// uses all its threads at low pressure, three quarters at medium, half at high and
    /// one at critical, so a parallel stage does not multiply its per-worker buffers by
    /// the core count while the process is near its budget. It holds the governor
    /// weakly: once the governor is gone it reports no pressure.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use memwarden_runtime::governor::{Governor, GovernorConfig};
    /// # use memwarden_runtime::Lifecycle;
    /// # use memwarden_core::ByteSize;
    /// # use memwarden_tracker::Tracker;
    /// # let lifecycle = Arc::new(Lifecycle::new(Arc::new(Tracker::new()), ByteSize::gib(64)));
    /// # let governor = Governor::builder(lifecycle, GovernorConfig::default()).manual().start()?;
    /// use memwarden_sched::ParallelScheduler;
    /// let sched = ParallelScheduler::builder()
    ///     .jobs(4)
    ///     .pressure_source(governor.scheduler_pressure())
    ///     .build()?;
    /// assert_eq!(sched.jobs_now(), 4); // far below a 64 GiB budget
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "sched")]
    pub fn scheduler_pressure(&self) -> Arc<dyn memwarden_sched::PressureSource> {
        let inner = Arc::downgrade(&self.inner);
        Arc::new(move || match inner.upgrade() {
            Some(inner) => jobs_factor(level_of(inner.level.load(Ordering::Relaxed))),
            None => 1.0,
        })
    }

    /// Calls `listener` on every change of pressure level, on the thread that saw it,
    /// after that thread has acted on it.
    ///
    /// A listener may call back into the governor; one that panics is logged and
    /// skipped, and the governor goes on.
    pub fn on_pressure(&self, listener: impl Fn(&PressureChange) + Send + Sync + 'static) {
        self.inner.listeners.write().push(Arc::new(listener));
    }

    /// Reads the RSS now and releases if it is above the warning line: what the monitor
    /// thread does every tick.
    pub fn tick(&self) -> ReleaseReport {
        self.inner.check(Cause::Tick, None)
    }

    /// Makes room for `incoming` bytes of `kind` that are about to be allocated: first
    /// what [`Lifecycle::make_room`] does for the tracked bytes (per-kind caps, the
    /// tracked budget), then the same for the resident memory: if the RSS plus `incoming`
    /// would pass the warning line, releases until it would not. Both steps run under the
    /// lock the monitor takes, so the two never plan over the same bytes.
    ///
    /// The pressure level (and what listeners hear) follows the RSS itself, not the
    /// projection: an allocation that never happens is no pressure event.
    ///
    /// Nothing is reserved: use [`admit`](Self::admit) where admissions run at the same
    /// time, or they may each fit into the same headroom.
    pub fn make_room(&self, kind: &ResourceKind, incoming: u64) -> ReleaseReport {
        self.inner
            .check(Cause::Admit, Some((kind, incoming, false)))
    }

    /// [`make_room`](Self::make_room), with the `incoming` bytes reserved until the
    /// returned guard is dropped: every projection of this governor and of its
    /// lifecycle, the other admissions' included, counts them on top of the RSS. Drop
    /// the guard once the allocation is made, so that it shows in the RSS instead.
    pub fn admit(&self, kind: &ResourceKind, incoming: u64) -> Admission {
        self.inner.admit(kind, incoming)
    }

    /// A copy of the report so far.
    pub fn stats(&self) -> GovernorStats {
        let record = self.inner.record.lock();
        let mut report = record.report.clone();
        report.samples = record.samples.points().to_vec();
        drop(record);
        report.rss_min = report.rss_min.min(report.rss_max);
        report
    }

    /// Stops and joins the monitor thread, and returns the final report.
    pub fn shutdown(mut self) -> GovernorStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        if let Some(observer) = self.observer.take() {
            self.inner.lifecycle.reaper().remove_observer(observer);
        }
        if let Some(admission) = self.admission.take() {
            self.inner.lifecycle.clear_governed(&admission);
        }
        // First the watch, whose callback wakes the monitor.
        drop(self.watch.take());
        *self.inner.stop.lock() = true;
        self.inner.wake.notify_all();
        let Some(monitor) = self.monitor.take() else {
            return;
        };
        // Dropped on its own monitor thread (a release handler let go of the last
        // reference): it cannot join itself; it sees the stop flag and ends when this
        // check returns.
        if monitor.thread().id() == std::thread::current().id() {
            return;
        }
        if monitor.join().is_err() {
            log::error!("the governor's monitor thread panicked");
        }
    }
}

impl Drop for Governor {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    fn admit(&self, kind: &ResourceKind, incoming: u64) -> Admission {
        let admission = Admission::new(self.lifecycle.reservations(), incoming);
        let report = self.check(Cause::Admit, Some((kind, incoming, true)));
        admission.with_report(report)
    }

    fn run_monitor(&self) {
        // Ticks keep to their schedule, however long a check takes.
        let mut next = Some(Instant::now());
        let mut stop = self.stop.lock();
        while !*stop {
            drop(stop);
            // A panicking release handler or observer must not end the monitoring.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.check(Cause::Tick, None)
            }))
            .is_err()
            {
                log::error!("a governor tick panicked; the monitor goes on");
            }
            let tick = self.config.read().tick;
            let now = Instant::now();
            // A check that ran past its slot still leaves a quarter tick of rest; a tick
            // too long for the clock waits for a wake-up alone.
            next = next
                .and_then(|next| next.checked_add(tick))
                .zip(now.checked_add(tick / 4))
                .map(|(scheduled, rested)| scheduled.max(rested));
            stop = self.stop.lock();
            if !*stop && !self.kernel_pressure.load(Ordering::SeqCst) {
                match next {
                    Some(deadline) => {
                        self.wake.wait_until(&mut stop, deadline);
                    }
                    None => self.wake.wait(&mut stop),
                }
            }
        }
    }

    fn since_start(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.started)
    }

    fn read(&self) -> Option<u64> {
        let rss = self.source.resident_bytes();
        if rss.is_none() {
            self.record.lock().report.failed_reads += 1;
        }
        rss
    }

    /// One reading, and a release when it calls for one. `admit` is the kind and bytes
    /// about to be allocated, for an admission, and whether they are reserved already.
    ///
    /// No lock is held across the check: the lifecycle plans one release at a time and
    /// leaves out of each plan what other threads are releasing, so checks that run at
    /// once never free the same bytes twice, and handlers run with nothing locked (they
    /// may call back into the governor or a registry).
    fn check(&self, cause: Cause, admit: Option<(&ResourceKind, u64, bool)>) -> ReleaseReport {
        if cause == Cause::Tick {
            self.follow_budget();
        }
        let mut report = ReleaseReport::default();
        let mut kernel_change = None;
        if self.kernel_pressure.swap(false, Ordering::SeqCst) {
            // The kernel stalls on reclaim: free a relief step's worth of what high
            // urgency may take, whatever the reading says, and say so at once.
            let limits = self.lifecycle.limits();
            let bytes = (limits.budget as f64 * limits.thresholds.relief.max(0.01)) as u64;
            report = self
                .lifecycle
                .release(memwarden_prioritizer::Request::new(Urgency::High, bytes));
            let rss = self.source.resident_bytes().unwrap_or(0);
            kernel_change = self.set_level(Urgency::High, rss);
            let mut record = self.record.lock();
            record.report.kernel_pressure_events += 1;
            record.report.bytes_freed += report.bytes_freed;
            log::debug!(
                "kernel memory pressure: released {} in {} resources",
                ByteSize::b(report.bytes_freed),
                report.released.len()
            );
        }
        let config = *self.config.read();
        let limits = self.lifecycle.limits();
        let (budget, thresholds) = (limits.budget, limits.thresholds);
        // Others' reservations count as incoming too: admitted, not yet in the RSS.
        let (own, included) = admit.map_or((0, false), |(_, bytes, included)| (bytes, included));
        let reserved = if included {
            self.lifecycle.reserved_by_others(own)
        } else {
            self.lifecycle.reserved()
        };
        if let Some((kind, incoming, _)) = admit {
            report.merge(self.lifecycle.make_room_counting(kind, incoming, reserved));
        }
        let incoming = own.saturating_add(reserved);
        let Some(rss) = self.read() else {
            self.count(cause);
            return report;
        };
        let mut changes: Vec<PressureChange> = kernel_change
            .into_iter()
            .chain(self.set_level(thresholds.urgency(rss, budget), rss))
            .collect();
        let mut rss_now = rss;
        let wanted = thresholds.urgency(rss.saturating_add(incoming), budget);
        let mut event = None;
        if wanted > Urgency::Low {
            let prior_freed = report.bytes_freed;
            let (released, e) = self.release(cause, limits, (rss, incoming), prior_freed, wanted);
            report.merge(released);
            rss_now = e.rss_after;
            // The level the process is left at, so listeners hear it fall too.
            changes.extend(self.set_level(thresholds.urgency(rss_now, budget), rss_now));
            event = (e.released > 0 || e.compacted).then_some(e);
        }
        let tracked = self.lifecycle.tracker().totals().bytes;
        {
            let mut record = self.record.lock();
            let r = &mut record.report;
            r.budget = ByteSize::b(budget);
            r.thresholds = thresholds;
            match cause {
                Cause::Tick => r.ticks += 1,
                Cause::Admit => r.admissions += 1,
            }
            r.rss_min = r.rss_min.min(rss).min(rss_now);
            r.rss_max = r.rss_max.max(rss).max(rss_now);
            if let Some(e) = event {
                r.release_count += 1;
                r.bytes_freed += e.bytes_freed;
                r.compactions += u64::from(e.compacted);
                if r.releases.len() >= config.max_samples.max(1) {
                    r.releases.pop_front();
                }
                r.releases.push_back(e);
            }
            r.pressure_change_count += changes.len() as u64;
            r.pressure_changes.extend(changes.iter().copied());
            while r.pressure_changes.len() > config.max_samples.max(2) {
                r.pressure_changes.pop_front();
            }
            let sample = Sample {
                at: self.since_start(),
                rss: rss_now,
                tracked,
                level: self.level_now(),
            };
            record.report.level = sample.level;
            record.samples.push(sample);
        }
        if !changes.is_empty() {
            // Cloned out, so a listener may register another or call back in.
            let listeners = self.listeners.read().clone();
            for change in &changes {
                for listener in &listeners {
                    let heard = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        listener(change);
                    }));
                    if heard.is_err() {
                        log::error!("a pressure listener panicked on {change:?}");
                    }
                }
            }
        }
        report
    }

    /// Re-resolves an `auto` budget against the cgroup's limits now, and moves the
    /// lifecycle's budget when it changed.
    fn follow_budget(&self) {
        let Some(follow) = &self.follow else {
            return;
        };
        match follow
            .budget
            .resolve_in(follow.cgroup.as_ref(), || follow.machine)
        {
            Ok(resolved) if resolved.bytes != self.lifecycle.budget() => {
                if self.lifecycle.set_budget(resolved.bytes).is_ok() {
                    log::info!("the memory limit changed: the budget is now {resolved}");
                    // The check that called this records the budget in force.
                    self.record.lock().report.budget_changes += 1;
                }
            }
            Ok(_) => {}
            Err(e) => log::warn!("cannot follow the memory limit: {e}"),
        }
    }

    fn count(&self, cause: Cause) {
        let mut record = self.record.lock();
        match cause {
            Cause::Tick => record.report.ticks += 1,
            Cause::Admit => record.report.admissions += 1,
        }
    }

    fn level_now(&self) -> Urgency {
        level_of(self.level.load(Ordering::Relaxed))
    }

    /// Stores the level; the change, if it is one.
    fn set_level(&self, level: Urgency, rss: u64) -> Option<PressureChange> {
        let from = level_of(self.level.swap(level_code(level), Ordering::Relaxed));
        (from != level).then(|| PressureChange {
            at: self.since_start(),
            from,
            to: level,
            rss,
        })
    }

    /// Frees down to the relief line below the warning line through the lifecycle's
    /// relief step, measuring the RSS after each pass and compacting the heap when it did
    /// not follow the release.
    fn release(
        &self,
        cause: Cause,
        limits: Limits,
        (rss, incoming): (u64, u64),
        prior_freed: u64,
        level: Urgency,
    ) -> (ReleaseReport, ReleaseEvent) {
        let relief_line = limits.thresholds.relief_line(limits.budget);
        let mut compacted = false;
        // Bytes the admission's own `Lifecycle::make_room` freed just before count with
        // the first pass: the allocator may be keeping those too.
        let mut prior_freed = prior_freed;
        let relief = self.lifecycle.relieve_from(
            limits,
            (Some(rss), incoming),
            level,
            |released, before| {
                let freed = released.bytes_freed + std::mem::take(&mut prior_freed);
                if freed == 0 {
                    return before;
                }
                let mut after = self.source.resident_bytes().unwrap_or(before);
                // The allocator kept some of what was freed: hand it back now, not at the
                // next threshold, or the next reading would release more for nothing.
                if after.saturating_add(incoming) > relief_line
                    && let Some(defrag) = &self.defrag
                {
                    defrag.compact_with(Trigger::Pressure, true);
                    compacted = true;
                    after = self.source.resident_bytes().unwrap_or(after);
                }
                after
            },
        );
        let (report, level, after) = (relief.report, relief.level, relief.used);
        if report.bytes_freed > 0 {
            log::debug!(
                "governor ({cause:?}): RSS {} + {} incoming, released {} in {} resources at {level:?}; RSS now {}",
                ByteSize::b(rss),
                ByteSize::b(incoming),
                ByteSize::b(report.bytes_freed),
                report.released.len(),
                ByteSize::b(after),
            );
        }
        let event = ReleaseEvent {
            at: self.since_start(),
            cause,
            level,
            incoming,
            rss_before: rss,
            rss_after: after,
            released: report.released.len(),
            bytes_freed: report.bytes_freed,
            compacted,
        };
        (report, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memwarden_tracker::{ResourceSpec, Tracker};

    #[test]
    fn a_kernel_pressure_notification_raises_the_level_and_frees_a_relief_step() {
        let tracker = Arc::new(Tracker::new());
        let lifecycle = Arc::new(Lifecycle::new(Arc::clone(&tracker), ByteSize::mib(100)));
        for i in 0..10 {
            let spec = ResourceSpec::new(format!("frame-{i}"), ResourceKind::RenderCache, 1 << 20);
            tracker.register(spec, ()).expect("fresh id");
        }
        // Far below the warning line: a tick alone releases nothing.
        let governor = Governor::builder(lifecycle, GovernorConfig::default())
            .source(|| Some(20 << 20))
            .manual()
            .start()
            .expect("starts");
        assert_eq!(governor.tick().bytes_freed, 0);
        governor.inner.kernel_pressure.store(true, Ordering::SeqCst);
        let released = governor.tick();
        // 5 % of the 100 MiB budget: five 1 MiB frames.
        assert_eq!(released.bytes_freed, 5 << 20);
        let stats = governor.stats();
        assert_eq!(stats.kernel_pressure_events, 1);
        assert_eq!(stats.pressure_changes[0].to, Urgency::High);
        assert_eq!(
            governor.level(),
            Urgency::Low,
            "the next reading sets it from the RSS"
        );
        assert_eq!(stats.kernel_pressure_source, None, "no monitor, no watch");
    }
}
