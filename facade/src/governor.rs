//! [`Governor`]: keeps the process's real resident memory under a budget.
//!
//! The [`Lifecycle`] keeps the bytes the tracker knows about under a budget; the governor
//! keeps what the operating system actually charges the process (its resident set, RSS)
//! under one. It reads the RSS from an [`RssSource`] (by default [`OsRss`], one `pread`
//! of `/proc/self/statm`) in two places:
//!
//! - **on a monitor thread**, every [`GovernorConfig::tick`], to catch growth nobody
//!   announced (pages of a mapped model touched by inference, a library's own caches);
//! - **before an allocation**, in [`Governor::make_room`], so that a load which would
//!   push the process over its budget frees memory first instead of afterwards. This is
//!   what keeps the *peak* under the budget: a monitor alone only sees a spike after it
//!   happened.
//!
//! Usage maps to a pressure level with the lifecycle's [`Thresholds`]: low up to the
//! warning line, medium up to the critical line, high up to the budget, critical above
//! it. Above the warning line the governor asks the prioritizer for a plan covering the
//! excess plus a margin (down to [`Thresholds::relief`] below the warning line) and runs it
//! through the reaper (which tells the defragmenter how many bytes were released), and,
//! when the RSS did not fall with them (the allocator kept the freed pages), compacts the
//! heap at once. If the process would still be over its budget, it plans again at
//! [`Urgency::Critical`], which may release anything that is not pinned or locked.
//!
//! Every tick and every release is recorded in a [`GovernorReport`] (bounded: samples are
//! thinned out as they accumulate), and listeners registered with
//! [`Governor::on_pressure`] hear each change of level. The monitor thread stops and is
//! joined on drop; [`Governor::shutdown`] does the same and returns the final report.
//!
//! ```
//! use memwarden::core::{ByteSize, ResourceKind};
//! use memwarden::governor::{Governor, GovernorConfig};
//! use memwarden::tracker::Tracker;
//! use memwarden::Lifecycle;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let tracker = Arc::new(Tracker::new());
//! let lifecycle = Arc::new(Lifecycle::new(tracker, ByteSize::gib(2)));
//! let config = GovernorConfig::new(ByteSize::gib(2)).tick(Duration::from_millis(20));
//! let governor = Governor::builder(lifecycle, config).start();
//! // Before each load: room for what is about to be allocated.
//! governor.make_room(&ResourceKind::RenderCache, 8 << 20);
//! let frame = vec![1u8; 8 << 20];
//! # drop(frame);
//! let report = governor.shutdown(); // stops and joins the monitor thread
//! assert_eq!(report.admissions, 1);
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use memwarden_core::{ByteSize, Clock, ResourceKind, Timestamp};
use memwarden_defrag::rss::RssReader;
use memwarden_defrag::{Defragmenter, Trigger};
use memwarden_prioritizer::{Request, Urgency};
use memwarden_reaper::ReleaseReport;
use parking_lot::{Condvar, Mutex, RwLock};
use serde::Serialize;

use crate::{Lifecycle, Thresholds};

/// Where the governor reads the process's resident memory.
///
/// Implemented for [`OsRss`] (the default) and for any `Fn() -> Option<u64>`, which is
/// how tests feed it a fake RSS.
pub trait RssSource: Send + Sync + 'static {
    /// Resident bytes now; `None` when the platform cannot say.
    fn resident_bytes(&self) -> Option<u64>;
}

/// The operating system's figure: `/proc/self/statm`, kept open and re-read with one
/// `pread` (the cheapest source the `rss_sources` benchmark found), else a fresh read.
#[derive(Debug)]
pub struct OsRss(Option<RssReader>);

impl OsRss {
    /// Opens the source; where there is no `/proc/self/statm` every reading is `None`.
    pub fn new() -> Self {
        OsRss(
            RssReader::open()
                .map_err(|e| log::warn!("the governor cannot read the RSS: {e}"))
                .ok(),
        )
    }
}

impl Default for OsRss {
    fn default() -> Self {
        OsRss::new()
    }
}

impl RssSource for OsRss {
    fn resident_bytes(&self) -> Option<u64> {
        match &self.0 {
            Some(reader) => reader.read(),
            None => memwarden_defrag::rss::current(),
        }
    }
}

impl<F: Fn() -> Option<u64> + Send + Sync + 'static> RssSource for F {
    fn resident_bytes(&self) -> Option<u64> {
        self()
    }
}

/// How the governor watches and acts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GovernorConfig {
    /// The most resident memory the whole process may use.
    pub budget: ByteSize,
    /// Where pressure starts, as fractions of the budget, and how far below the warning
    /// line a release frees.
    pub thresholds: Thresholds,
    /// How often the monitor thread reads the RSS.
    #[serde(serialize_with = "serialize_duration")]
    pub tick: Duration,
    /// The most samples a report keeps; past it, every other sample is dropped and the
    /// sampling stride doubles, so a long run keeps an even picture in bounded memory.
    pub max_samples: usize,
}

impl GovernorConfig {
    /// A budget with the default thresholds, a 100 ms tick and 4096 samples.
    pub fn new(budget: ByteSize) -> Self {
        GovernorConfig {
            budget,
            thresholds: Thresholds::default(),
            tick: Duration::from_millis(100),
            max_samples: 4096,
        }
    }

    /// From a loaded config: its budget (resolved against this machine's memory when
    /// given as a share of it), thresholds and tick.
    #[cfg(feature = "config")]
    pub fn from_config(config: &crate::config::Config) -> Self {
        GovernorConfig {
            thresholds: Thresholds {
                warning: config.monitor.warning_fraction,
                critical: config.monitor.critical_fraction,
                ..Thresholds::default()
            },
            tick: config.monitor.tick,
            ..GovernorConfig::new(config.monitor.budget)
        }
    }

    /// Replaces the tick.
    #[must_use]
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// Replaces the thresholds.
    #[must_use]
    pub fn thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = thresholds;
        self
    }
}

fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// What made the governor look at the RSS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The monitor thread's tick (or [`Governor::tick`]).
    Tick,
    /// [`Governor::make_room`], before an allocation.
    Admit,
}

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
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
pub struct GovernorReport {
    /// The configuration it ran with.
    pub config: GovernorConfig,
    /// Readings over time (thinned out evenly past [`GovernorConfig::max_samples`]).
    pub samples: Vec<Sample>,
    /// Every change of pressure level (the most recent [`GovernorConfig::max_samples`]).
    pub pressure_changes: Vec<PressureChange>,
    /// Every release, in order (the most recent [`GovernorConfig::max_samples`]).
    pub releases: Vec<ReleaseEvent>,
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
    /// The lowest and highest RSS read.
    pub rss_min: u64,
    /// The highest RSS read.
    pub rss_max: u64,
    /// The pressure level at the last reading.
    pub level: Urgency,
    /// Readings that failed (no RSS from the source).
    pub failed_reads: u64,
}

impl GovernorReport {
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

    /// Tells `defrag` of every byte the lifecycle's reaper releases (whoever asked for
    /// the release), and compacts through it at once when a release of the governor's
    /// does not show in the RSS.
    #[must_use]
    pub fn defrag(mut self, defrag: Arc<Defragmenter>) -> Self {
        let weak = Arc::downgrade(&defrag);
        self.lifecycle.reaper().on_released(move |report| {
            if let Some(defrag) = weak.upgrade() {
                defrag.notify_released(report.bytes_freed);
            }
        });
        self.defrag = Some(defrag);
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
    pub fn start(self) -> Governor {
        let clock = Arc::clone(self.lifecycle.tracker().clock());
        let source = self.source.unwrap_or_else(|| Box::new(OsRss::new()));
        let inner = Arc::new(Inner {
            started: clock.now(),
            clock,
            lifecycle: self.lifecycle,
            source,
            defrag: self.defrag,
            config: RwLock::new(self.config),
            act: Mutex::new(()),
            record: Mutex::new(Record::new(self.config)),
            level: AtomicU64::new(level_code(Urgency::Low)),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            listeners: RwLock::new(Vec::new()),
        });
        let monitor = self.monitor.then(|| {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("memwarden-governor".into())
                .spawn(move || inner.run_monitor())
                .expect("the OS can start a thread")
        });
        Governor { inner, monitor }
    }
}

type Listener = Box<dyn Fn(&PressureChange) + Send + Sync>;

struct Inner {
    clock: Arc<dyn Clock>,
    started: Timestamp,
    lifecycle: Arc<Lifecycle>,
    source: Box<dyn RssSource>,
    defrag: Option<Arc<Defragmenter>>,
    config: RwLock<GovernorConfig>,
    /// Held while reading and releasing, so the monitor and an admission never plan
    /// over the same bytes twice.
    act: Mutex<()>,
    record: Mutex<Record>,
    level: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
    listeners: RwLock<Vec<Listener>>,
}

/// The report under construction.
struct Record {
    report: GovernorReport,
    /// Readings so far.
    readings: u64,
    /// The reading number of each kept sample.
    kept: Vec<u64>,
    /// Keep the readings whose number is a multiple of this.
    stride: u64,
}

impl Record {
    fn new(config: GovernorConfig) -> Self {
        Record {
            report: GovernorReport {
                config,
                samples: Vec::new(),
                pressure_changes: Vec::new(),
                releases: Vec::new(),
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
            readings: 0,
            kept: Vec::new(),
            stride: 1,
        }
    }

    fn sample(&mut self, sample: Sample, max: usize) {
        let report = &mut self.report;
        report.rss_min = report.rss_min.min(sample.rss);
        report.rss_max = report.rss_max.max(sample.rss);
        report.level = sample.level;
        let n = self.readings;
        self.readings += 1;
        if !n.is_multiple_of(self.stride) {
            return;
        }
        report.samples.push(sample);
        self.kept.push(n);
        if report.samples.len() >= max.max(2) {
            // Keep every other kept reading, so the spacing stays even.
            self.stride *= 2;
            let stride = self.stride;
            let mut numbers = self.kept.iter();
            report
                .samples
                .retain(|_| numbers.next().is_some_and(|n| n.is_multiple_of(stride)));
            self.kept.retain(|n| n.is_multiple_of(stride));
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

    /// Replaces the budget (the next reading acts on it).
    pub fn set_budget(&self, budget: ByteSize) {
        self.inner.config.write().budget = budget;
    }

    /// The pressure level at the last reading.
    pub fn level(&self) -> Urgency {
        level_of(self.inner.level.load(Ordering::Relaxed))
    }

    /// Calls `listener` on every change of pressure level, on the thread that saw it,
    /// after that thread has acted on it.
    pub fn on_pressure(&self, listener: impl Fn(&PressureChange) + Send + Sync + 'static) {
        self.inner.listeners.write().push(Box::new(listener));
    }

    /// Reads the RSS now and releases if it is above the warning line: what the monitor
    /// thread does every tick.
    pub fn tick(&self) -> ReleaseReport {
        self.inner.check(Cause::Tick, None)
    }

    /// Makes room for `incoming` bytes of `kind` that are about to be allocated: first
    /// what [`Lifecycle::make_room`] does for the tracked bytes (per-kind caps, the
    /// tracked budget), then the same for the resident memory: if the RSS plus `incoming`
    /// would pass the warning line, releases until it would not.
    pub fn make_room(&self, kind: &ResourceKind, incoming: u64) -> ReleaseReport {
        let mut report = self.inner.lifecycle.make_room(kind, incoming);
        report.merge(self.inner.check(Cause::Admit, Some(incoming)));
        report
    }

    /// A copy of the report so far.
    pub fn report(&self) -> GovernorReport {
        let mut report = self.inner.record.lock().report.clone();
        report.rss_min = report.rss_min.min(report.rss_max);
        report
    }

    /// Stops and joins the monitor thread, and returns the final report.
    pub fn shutdown(mut self) -> GovernorReport {
        self.stop();
        self.report()
    }

    fn stop(&mut self) {
        *self.inner.stop.lock() = true;
        self.inner.wake.notify_all();
        if let Some(monitor) = self.monitor.take()
            && monitor.join().is_err()
        {
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
    fn run_monitor(&self) {
        let mut stop = self.stop.lock();
        while !*stop {
            drop(stop);
            self.check(Cause::Tick, None);
            let tick = self.config.read().tick;
            stop = self.stop.lock();
            if !*stop {
                self.wake.wait_for(&mut stop, tick);
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

    /// One reading, and a release when it calls for one. `incoming` is `Some` for an
    /// admission.
    fn check(&self, cause: Cause, incoming: Option<u64>) -> ReleaseReport {
        let act = self.act.lock();
        let config = *self.config.read();
        let budget = config.budget.as_u64();
        let extra = incoming.unwrap_or(0);
        let mut report = ReleaseReport::default();
        let Some(rss) = self.read() else {
            return report;
        };
        let level = config.thresholds.urgency(rss + extra, budget);
        let mut changes: Vec<PressureChange> =
            self.set_level(level, rss + extra).into_iter().collect();
        if level > Urgency::Low {
            let (released, event) = self.release(cause, &config, rss, extra, level);
            report = released;
            if event.released > 0 || event.compacted {
                let mut record = self.record.lock();
                record.report.release_count += 1;
                record.report.bytes_freed += event.bytes_freed;
                record.report.compactions += u64::from(event.compacted);
                if record.report.releases.len() >= config.max_samples.max(1) {
                    record.report.releases.remove(0);
                }
                record.report.releases.push(event);
            }
            // The level the process is left at, so listeners hear it fall too.
            let after = config.thresholds.urgency(event.rss_after + extra, budget);
            changes.extend(self.set_level(after, event.rss_after + extra));
        }
        let tracked = self.lifecycle.tracker().totals().bytes;
        {
            let mut record = self.record.lock();
            match cause {
                Cause::Tick => record.report.ticks += 1,
                Cause::Admit => record.report.admissions += 1,
            }
            let sample = Sample {
                at: self.since_start(),
                rss: self.source.resident_bytes().unwrap_or(rss),
                tracked,
                level: self.level_now(),
            };
            record.sample(sample, config.max_samples);
            let changes_kept = &mut record.report.pressure_changes;
            changes_kept.extend_from_slice(&changes);
            if changes_kept.len() > config.max_samples.max(2) {
                let excess = changes_kept.len() - config.max_samples.max(2);
                changes_kept.drain(..excess);
            }
        }
        drop(act);
        if !changes.is_empty() {
            let listeners = self.listeners.read();
            for change in &changes {
                for listener in listeners.iter() {
                    listener(change);
                }
            }
        }
        report
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

    /// Frees down to the relief line below the warning line: a plan at `level`, a
    /// compaction if the RSS did not follow, and a critical plan if the budget is still
    /// passed.
    fn release(
        &self,
        cause: Cause,
        config: &GovernorConfig,
        rss: u64,
        incoming: u64,
        mut level: Urgency,
    ) -> (ReleaseReport, ReleaseEvent) {
        let budget = config.budget.as_u64();
        let t = config.thresholds;
        let relief_line = (budget as f64 * (t.warning - t.relief).max(0.0)) as u64;
        let mut report = self.lifecycle.release(Request::new(
            level,
            (rss + incoming).saturating_sub(relief_line),
        ));
        let mut compacted = false;
        let mut after = self.source.resident_bytes().unwrap_or(rss);
        if report.bytes_freed > 0
            && let Some(defrag) = &self.defrag
        {
            // The allocator kept what was freed: hand it back now, not at the next
            // threshold, or the next reading would release more for nothing.
            if after + incoming > relief_line && after + report.bytes_freed / 2 > rss {
                defrag.compact(Trigger::Pressure);
                compacted = true;
                after = self.source.resident_bytes().unwrap_or(after);
            }
        }
        if after + incoming > budget && level < Urgency::Critical {
            level = Urgency::Critical;
            let more = self.lifecycle.release(Request::new(
                level,
                (after + incoming).saturating_sub(relief_line),
            ));
            if more.bytes_freed > 0 {
                after = self.source.resident_bytes().unwrap_or(after);
            }
            report.merge(more);
        }
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
