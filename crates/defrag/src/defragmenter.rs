//! [`Defragmenter`]: compaction runs, their triggers, their statistics, and the monitor
//! thread that fires the automatic ones.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memwarden_core::{Clock, SystemClock, Timestamp};
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use serde::{Deserialize, Serialize};

use crate::DefragError;
use crate::rss::RssReader;
use crate::trim::{TrimOutcome, trim};

/// How many recent runs [`DefragStats::recent`] keeps.
pub const HISTORY_LEN: usize = 32;

/// When and how the [`Defragmenter`] compacts by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DefragConfig {
    /// Compact once this many bytes were reported released
    /// ([`Defragmenter::notify_released`]) since the last run; 0 turns this trigger off.
    /// Default 500 MB (500,000,000 bytes).
    pub released_threshold: u64,
    /// Compact when this long has passed since the last run of any cause; `None` turns
    /// the timer off. Default one hour.
    pub interval: Option<Duration>,
    /// Trim in rounds until the resident set stops falling, and on Windows empty the
    /// working set as well (see [`trim`](crate::trim())). Default off.
    pub aggressive: bool,
    /// `false` turns both automatic triggers off; [`Defragmenter::compact`] still works
    /// and released bytes are still counted. Default on.
    pub enabled: bool,
    /// How often the monitor thread wakes to check the timer. The released-bytes trigger
    /// does not wait for it: crossing the threshold wakes the thread at once. Default 1 s.
    pub poll: Duration,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig {
            released_threshold: 500_000_000,
            interval: Some(Duration::from_secs(3600)),
            aggressive: false,
            enabled: true,
            poll: Duration::from_secs(1),
        }
    }
}

impl DefragConfig {
    /// Neither automatic trigger: compaction only when asked.
    pub fn manual() -> Self {
        DefragConfig {
            enabled: false,
            ..DefragConfig::default()
        }
    }

    fn validate(&self) -> Result<(), DefragError> {
        if self.poll.is_zero() {
            return Err(DefragError::ZeroDuration {
                what: "the poll interval",
            });
        }
        if self.interval == Some(Duration::ZERO) {
            return Err(DefragError::ZeroDuration {
                what: "the timer interval",
            });
        }
        Ok(())
    }

    /// The released-bytes count at which the trigger fires; [`OFF`] when it is off.
    fn trigger_at(&self) -> u64 {
        if self.enabled && self.released_threshold > 0 {
            self.released_threshold
        } else {
            OFF
        }
    }
}

/// `trigger_at` when the released-bytes trigger is off (a threshold of `u64::MAX` can
/// never be reached by a saturating counter that resets, so nothing is lost).
const OFF: u64 = u64::MAX;

/// Whether `released` bytes reach the trigger point `at`.
fn due(released: u64, at: u64) -> bool {
    at != OFF && released >= at
}

/// Why a compaction ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Trigger {
    /// A caller asked ([`Defragmenter::compact`]).
    Manual,
    /// The bytes reported released passed [`DefragConfig::released_threshold`].
    ReleasedBytes,
    /// [`DefragConfig::interval`] passed since the last run.
    Timer,
    /// The caller (the governor) is under memory pressure.
    Pressure,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Trigger::Manual => "manual",
            Trigger::ReleasedBytes => "released-bytes",
            Trigger::Timer => "timer",
            Trigger::Pressure => "pressure",
        })
    }
}

/// What one compaction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunReport {
    /// Why it ran.
    pub trigger: Trigger,
    /// When it started, on the defragmenter's clock.
    pub at: Timestamp,
    /// The resident set just before, from the OS; `None` where it cannot be read.
    pub rss_before: Option<u64>,
    /// The resident set just after.
    pub rss_after: Option<u64>,
    /// `rss_before - rss_after`, or 0 if the resident set grew (another thread
    /// allocated meanwhile) or cannot be read.
    pub returned_bytes: u64,
    /// Wall time of the trim.
    pub duration: Duration,
    /// Bytes reported released since the previous run (the counter this run reset).
    pub released_since_last: u64,
    /// Whether it trimmed aggressively.
    pub aggressive: bool,
    /// Which backends ran and what they reported.
    pub trim: TrimOutcome,
}

impl RunReport {
    /// The share of `freed` bytes this run handed back to the OS (`returned_bytes /
    /// freed`); 0 when nothing was freed.
    pub fn returned_fraction(&self, freed: u64) -> f64 {
        if freed == 0 {
            0.0
        } else {
            self.returned_bytes as f64 / freed as f64
        }
    }
}

/// Runs per [`Trigger`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TriggerCounts {
    /// [`Trigger::Manual`] runs.
    pub manual: u64,
    /// [`Trigger::ReleasedBytes`] runs.
    pub released_bytes: u64,
    /// [`Trigger::Timer`] runs.
    pub timer: u64,
    /// [`Trigger::Pressure`] runs.
    pub pressure: u64,
}

impl TriggerCounts {
    /// The count for `trigger`.
    pub fn get(&self, trigger: Trigger) -> u64 {
        match trigger {
            Trigger::Manual => self.manual,
            Trigger::ReleasedBytes => self.released_bytes,
            Trigger::Timer => self.timer,
            Trigger::Pressure => self.pressure,
        }
    }

    fn bump(&mut self, trigger: Trigger) {
        let count = match trigger {
            Trigger::Manual => &mut self.manual,
            Trigger::ReleasedBytes => &mut self.released_bytes,
            Trigger::Timer => &mut self.timer,
            Trigger::Pressure => &mut self.pressure,
        };
        *count += 1;
    }
}

/// Everything the [`Defragmenter`] has done, as of [`Defragmenter::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DefragStats {
    /// Compactions run.
    pub runs: u64,
    /// Of which, per trigger.
    pub by_trigger: TriggerCounts,
    /// Sum of [`RunReport::returned_bytes`].
    pub total_returned: u64,
    /// Sum of [`RunReport::duration`].
    pub total_duration: Duration,
    /// Bytes reported released since the last run: what the next run will reset.
    pub pending_released: u64,
    /// The last run.
    pub last: Option<RunReport>,
    /// The last [`HISTORY_LEN`] runs, oldest first.
    pub recent: Vec<RunReport>,
}

/// What the runs leave behind.
#[derive(Debug)]
struct Ledger {
    runs: u64,
    by_trigger: TriggerCounts,
    total_returned: u64,
    total_duration: Duration,
    /// The last run's start, or the defragmenter's creation: the timer counts from here.
    last_run_at: Timestamp,
    recent: VecDeque<RunReport>,
}

/// The monitor thread's wake-up state.
#[derive(Debug, Default)]
struct Signal {
    stop: bool,
    wake: bool,
}

/// What the defragmenter and its monitor thread share.
struct Shared {
    clock: Arc<dyn Clock>,
    config: RwLock<DefragConfig>,
    /// Bytes reported released since the last run.
    released: AtomicU64,
    /// `config.trigger_at()`, for the lock-free check in `notify_released`.
    trigger_at: AtomicU64,
    /// A wake-up is already on its way to the monitor thread.
    wake_pending: AtomicBool,
    /// A monitor thread is running (else `notify_released` compacts inline).
    monitored: AtomicBool,
    /// Held for the whole of a check and its run: runs happen one at a time.
    run_lock: Mutex<()>,
    /// Held only to read or record statistics, so that `stats` never waits for a trim.
    ledger: Mutex<Ledger>,
    rss: Option<RssReader>,
    signal: Mutex<Signal>,
    wakeup: Condvar,
}

/// The monitor thread, stopped and joined on drop.
struct Monitor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shared.monitored.store(false, Ordering::SeqCst);
        self.shared.signal.lock().stop = true;
        self.shared.wakeup.notify_all();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("the defragmenter's monitor thread panicked");
        }
    }
}

/// Returns freed heap to the operating system, on demand and on automatic triggers, and
/// keeps statistics of every run.
///
/// Made with [`Defragmenter::builder`]. `Send + Sync`: share it by reference or in an
/// `Arc`. A defragmenter made with [`DefragmenterBuilder::start`] owns a monitor thread
/// that fires the automatic triggers; it is stopped and joined by
/// [`shutdown`](Self::shutdown) or on drop. One made with [`DefragmenterBuilder::build`]
/// has no thread: [`notify_released`](Self::notify_released) then compacts inline when
/// the threshold is passed, and the timer fires only when someone calls
/// [`check_triggers`](Self::check_triggers).
pub struct Defragmenter {
    shared: Arc<Shared>,
    monitor: Mutex<Option<Monitor>>,
}

impl fmt::Debug for Defragmenter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Defragmenter")
            .field("config", &*self.shared.config.read())
            .field("released", &self.shared.released.load(Ordering::Relaxed))
            .field("clock", &self.shared.clock)
            .field("monitor", &self.monitor.lock().is_some())
            .finish_non_exhaustive()
    }
}

impl Defragmenter {
    /// Starts building a defragmenter with `config`: set a [`clock`](DefragmenterBuilder::clock)
    /// if tests need one, then [`start`](DefragmenterBuilder::start) it with its monitor
    /// thread or [`build`](DefragmenterBuilder::build) it without.
    ///
    /// ```
    /// use memwarden_defrag::{DefragConfig, Defragmenter};
    ///
    /// let threadless = Defragmenter::builder(DefragConfig::manual()).build()?;
    /// assert!(!threadless.is_monitored());
    /// let monitored = Defragmenter::builder(DefragConfig::default()).start()?;
    /// assert!(monitored.is_monitored());
    /// # Ok::<(), memwarden_defrag::DefragError>(())
    /// ```
    pub fn builder(config: DefragConfig) -> DefragmenterBuilder {
        DefragmenterBuilder {
            config,
            clock: None,
        }
    }

    /// Stops the monitor thread and waits for it (for the run in progress, if any, to
    /// end). Idempotent. Afterwards the defragmenter behaves as one made with
    /// [`DefragmenterBuilder::build`].
    pub fn shutdown(&self) {
        let monitor = self.monitor.lock().take();
        drop(monitor);
    }

    /// Whether a monitor thread is running.
    pub fn is_monitored(&self) -> bool {
        self.shared.monitored.load(Ordering::SeqCst)
    }

    /// Trims now, whatever the triggers say, waiting for a run in progress to end first.
    /// Resets the released-bytes counter and restarts the timer.
    pub fn compact(&self, trigger: Trigger) -> RunReport {
        let aggressive = self.shared.config.read().aggressive;
        self.compact_with(trigger, aggressive)
    }

    /// [`compact`](Self::compact), aggressive or not whatever the config says: the
    /// governor trims aggressively when a release did not show in the RSS, because it
    /// needs the memory back before the allocation it is making room for.
    pub fn compact_with(&self, trigger: Trigger, aggressive: bool) -> RunReport {
        let running = self.shared.run_lock.lock();
        self.shared.run_as(&running, trigger, aggressive)
    }

    /// Records that `bytes` were released (by the reaper, a cache, the governor). Cheap:
    /// a saturating compare-and-swap add and a load. When the total since the last run reaches
    /// [`DefragConfig::released_threshold`] (and triggers are enabled), wakes the monitor
    /// thread, or without one compacts on this thread. If a run is already in progress
    /// then, this call does not wait: bytes it missed stay counted, and the next call (or
    /// [`check_triggers`](Self::check_triggers)) runs once they still reach the threshold.
    pub fn notify_released(&self, bytes: u64) {
        let shared = &self.shared;
        // Saturating, so that a huge report cannot wrap the counter below the threshold.
        let add = |n: u64| Some(n.saturating_add(bytes));
        let total = match shared
            .released
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, add)
        {
            Ok(previous) | Err(previous) => previous.saturating_add(bytes),
        };
        if !due(total, shared.trigger_at.load(Ordering::Relaxed)) {
            return;
        }
        if shared.monitored.load(Ordering::SeqCst) {
            if !shared.wake_pending.swap(true, Ordering::AcqRel) {
                shared.signal.lock().wake = true;
                shared.wakeup.notify_one();
            }
        } else if let Some(running) = shared.run_lock.try_lock() {
            shared.check(&running);
        }
    }

    /// Checks both automatic triggers now and runs if one is due (released bytes first,
    /// then the timer), waiting for a run in progress to end first. `None` when nothing
    /// is due or triggers are disabled. The monitor thread calls this on every wake-up;
    /// tests and threadless users call it themselves.
    pub fn check_triggers(&self) -> Option<RunReport> {
        let running = self.shared.run_lock.lock();
        self.shared.check(&running)
    }

    /// Replaces the configuration; takes effect at once (the monitor thread is woken so
    /// that a lower threshold or a new poll interval applies now).
    pub fn set_config(&self, config: DefragConfig) -> Result<(), DefragError> {
        config.validate()?;
        let trigger_at = config.trigger_at();
        *self.shared.config.write() = config;
        self.shared.trigger_at.store(trigger_at, Ordering::Relaxed);
        if self.is_monitored() {
            self.shared.signal.lock().wake = true;
            self.shared.wakeup.notify_one();
        }
        Ok(())
    }

    /// The current configuration.
    pub fn config(&self) -> DefragConfig {
        self.shared.config.read().clone()
    }

    /// Bytes reported released since the last run.
    pub fn pending_released(&self) -> u64 {
        self.shared.released.load(Ordering::Relaxed)
    }

    /// A copy of the statistics. Does not wait for a run in progress (it is not in them
    /// yet).
    pub fn stats(&self) -> DefragStats {
        let ledger = self.shared.ledger.lock();
        DefragStats {
            runs: ledger.runs,
            by_trigger: ledger.by_trigger,
            total_returned: ledger.total_returned,
            total_duration: ledger.total_duration,
            pending_released: self.shared.released.load(Ordering::Relaxed),
            last: ledger.recent.back().cloned(),
            recent: ledger.recent.iter().cloned().collect(),
        }
    }

    /// The resident set size now, from the reader this defragmenter keeps open (see
    /// [`rss`](crate::rss)); `None` where it cannot be read.
    pub fn rss(&self) -> Option<u64> {
        self.shared.rss_now()
    }
}

/// Sets up a [`Defragmenter`]; from [`Defragmenter::builder`].
///
/// The two ways to finish differ in one thing: [`start`](Self::start) runs the monitor
/// thread that fires the automatic triggers, [`build`](Self::build) does not (then
/// [`notify_released`](Defragmenter::notify_released) compacts inline once the
/// threshold is passed, and the timer fires only when someone calls
/// [`check_triggers`](Defragmenter::check_triggers)).
#[must_use = "a builder does nothing until `build` or `start`"]
pub struct DefragmenterBuilder {
    config: DefragConfig,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for DefragmenterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefragmenterBuilder")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish()
    }
}

impl DefragmenterBuilder {
    /// The clock the timer runs on (default: the system clock). The monitor thread still
    /// wakes every [`DefragConfig::poll`] of real time to read it.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The defragmenter, without a monitor thread.
    ///
    /// # Errors
    ///
    /// [`DefragError::ZeroDuration`] when the poll or timer interval is zero.
    pub fn build(self) -> Result<Defragmenter, DefragError> {
        let DefragmenterBuilder { config, clock } = self;
        let clock = clock.unwrap_or_else(|| Arc::new(SystemClock::new()));
        config.validate()?;
        let rss = RssReader::open()
            .map_err(|e| log::debug!("run reports will have no RSS figures: {e}"))
            .ok();
        let now = clock.now();
        let shared = Arc::new(Shared {
            trigger_at: AtomicU64::new(config.trigger_at()),
            config: RwLock::new(config),
            clock,
            released: AtomicU64::new(0),
            wake_pending: AtomicBool::new(false),
            monitored: AtomicBool::new(false),
            run_lock: Mutex::new(()),
            ledger: Mutex::new(Ledger {
                runs: 0,
                by_trigger: TriggerCounts::default(),
                total_returned: 0,
                total_duration: Duration::ZERO,
                last_run_at: now,
                recent: VecDeque::with_capacity(HISTORY_LEN),
            }),
            rss,
            signal: Mutex::new(Signal::default()),
            wakeup: Condvar::new(),
        });
        Ok(Defragmenter {
            shared,
            monitor: Mutex::new(None),
        })
    }

    /// The defragmenter, with its monitor thread running; the thread is stopped and
    /// joined by [`Defragmenter::shutdown`] or on drop.
    ///
    /// # Errors
    ///
    /// Those of [`build`](Self::build), and [`DefragError::Spawn`] when the thread
    /// cannot be started.
    pub fn start(self) -> Result<Defragmenter, DefragError> {
        let defrag = self.build()?;
        let shared = Arc::clone(&defrag.shared);
        let thread = std::thread::Builder::new()
            .name("memwarden-defrag".into())
            .spawn(move || monitor(&shared))
            .map_err(|source| DefragError::Spawn { source })?;
        defrag.shared.monitored.store(true, Ordering::SeqCst);
        *defrag.monitor.lock() = Some(Monitor {
            shared: Arc::clone(&defrag.shared),
            thread: Some(thread),
        });
        Ok(defrag)
    }
}

impl Drop for Defragmenter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn rss_now(&self) -> Option<u64> {
        match &self.rss {
            Some(reader) => reader.read(),
            None => crate::rss::current(),
        }
    }

    /// Runs if a trigger is due. The caller holds the run lock (`running`), so the check
    /// and the run see the same counter and the same last-run time.
    fn check(&self, running: &MutexGuard<'_, ()>) -> Option<RunReport> {
        let (enabled, interval) = {
            let config = self.config.read();
            (config.enabled, config.interval)
        };
        if !enabled {
            return None;
        }
        let released = self.released.load(Ordering::Relaxed);
        let trigger = if due(released, self.trigger_at.load(Ordering::Relaxed)) {
            Trigger::ReleasedBytes
        } else if interval.is_some_and(|every| {
            self.clock
                .now()
                .saturating_duration_since(self.ledger.lock().last_run_at)
                >= every
        }) {
            Trigger::Timer
        } else {
            return None;
        };
        Some(self.run(running, trigger))
    }

    /// One compaction; the caller holds the run lock.
    fn run(&self, running: &MutexGuard<'_, ()>, trigger: Trigger) -> RunReport {
        let aggressive = self.config.read().aggressive;
        self.run_as(running, trigger, aggressive)
    }

    fn run_as(
        &self,
        _running: &MutexGuard<'_, ()>,
        trigger: Trigger,
        aggressive: bool,
    ) -> RunReport {
        let at = self.clock.now();
        let released_since_last = self.released.swap(0, Ordering::Relaxed);
        let rss_before = self.rss_now();
        let started = Instant::now();
        let outcome = trim(aggressive);
        let duration = started.elapsed();
        let rss_after = self.rss_now();
        let returned_bytes = match (rss_before, rss_after) {
            (Some(before), Some(after)) => before.saturating_sub(after),
            _ => 0,
        };
        let report = RunReport {
            trigger,
            at,
            rss_before,
            rss_after,
            returned_bytes,
            duration,
            released_since_last,
            aggressive,
            trim: outcome,
        };
        if !report.trim.supported() {
            log::debug!("no trim backend on this platform: the {trigger} run did nothing");
        }
        log::debug!(
            "{trigger} compaction returned {returned_bytes} bytes in {duration:?} \
             (RSS {rss_before:?} -> {rss_after:?}, {released_since_last} bytes released before)"
        );
        let mut ledger = self.ledger.lock();
        ledger.runs += 1;
        ledger.by_trigger.bump(trigger);
        ledger.total_returned = ledger.total_returned.saturating_add(returned_bytes);
        ledger.total_duration += duration;
        ledger.last_run_at = at;
        if ledger.recent.len() == HISTORY_LEN {
            ledger.recent.pop_front();
        }
        ledger.recent.push_back(report.clone());
        report
    }
}

/// The monitor thread: waits for a wake-up or the poll interval, then checks triggers,
/// until told to stop.
fn monitor(shared: &Shared) {
    loop {
        let poll = shared.config.read().poll;
        {
            let mut signal = shared.signal.lock();
            if !signal.stop && !signal.wake {
                shared.wakeup.wait_for(&mut signal, poll);
            }
            if signal.stop {
                return;
            }
            signal.wake = false;
        }
        shared.wake_pending.store(false, Ordering::Release);
        let running = shared.run_lock.lock();
        shared.check(&running);
    }
}
