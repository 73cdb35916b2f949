//! [`LockManager`]: names to locks, the lease monitor, statistics ([`LockStats`]) and
//! introspection ([`LockState`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use memwarden_core::{Clock, ResourceId, SystemClock};
use parking_lot::RwLock;
use serde::Serialize;

use crate::guard::check_timeout;
use crate::holders::{self, Holds, Local};
use crate::name_lock::{NameCounters, NameLock, WaitKind};
use crate::registry::Registry;
use crate::{Fenced, LockError, LockHandle, Mode, ReadGuard, WriteGuard};

/// The longest deadlock check delay accepted (a day): longer is a configuration mistake.
pub const MAX_CHECK_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// How a [`LockManager`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockConfig {
    /// How long a grant stays valid; `None` disables leases (no monitor thread, no clock
    /// read per acquire).
    pub lease: Option<Duration>,
    /// How long a waiter waits before it looks for a deadlock (and again after each such
    /// delay). Like PostgreSQL's `deadlock_timeout`.
    pub check_delay: Duration,
    /// First come, first served instead of writer preference.
    pub fair: bool,
    /// How often the lease monitor looks for expired grants; a tenth of the lease
    /// (between 10 ms and 1 s) when `None`.
    pub monitor_interval: Option<Duration>,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            lease: Some(Duration::from_secs(30)),
            check_delay: Duration::from_secs(1),
            fair: false,
            monitor_interval: None,
        }
    }
}

impl LockConfig {
    /// The default config with leases disabled.
    pub fn without_leases() -> Self {
        LockConfig {
            lease: None,
            ..Self::default()
        }
    }
}

/// Cumulative counters over every name since the manager was made, from
/// [`LockManager::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LockStats {
    /// Locks granted (acquires, upgrades, downgrades).
    pub grants: u64,
    /// Acquires that timed out.
    pub timeouts: u64,
    /// Grants whose lease expired.
    pub expiries: u64,
    /// Deadlocks detected.
    pub deadlocks: u64,
    /// Upgrades refused because another reader was upgrading.
    pub upgrade_conflicts: u64,
    /// Requests refused because the thread already held the name in a conflicting way.
    pub would_deadlock: u64,
    /// Acquires that had to wait.
    pub contended: u64,
}

impl LockStats {
    fn add(&mut self, c: &NameCounters) {
        self.grants += c.grants;
        self.timeouts += c.timeouts;
        self.expiries += c.expiries;
        self.deadlocks += c.deadlocks;
        self.upgrade_conflicts += c.upgrade_conflicts;
        self.would_deadlock += c.would_deadlock;
        self.contended += c.contended;
    }
}

/// One grant, as [`LockManager::inspect`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HolderInfo {
    /// The holding thread.
    pub thread: String,
    /// Shared or exclusive.
    pub mode: Mode,
    /// Its fencing token.
    pub token: u64,
    /// How long it has been held (leases enabled only).
    pub held_for: Option<Duration>,
    /// Time left on its lease (leases enabled only).
    pub lease_left: Option<Duration>,
}

/// One waiter, as [`LockManager::inspect`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WaiterInfo {
    /// The waiting thread.
    pub thread: String,
    /// What it waits for.
    pub kind: WaitKind,
    /// How long it has waited, in real time (waits and their timeouts are real time;
    /// only leases run on the manager's clock).
    pub waited: Duration,
}

/// One name with holders or waiters, as [`LockManager::inspect`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LockInfo {
    /// The name.
    pub name: String,
    /// Its current fencing token.
    pub token: u64,
    /// Who holds it.
    pub holders: Vec<HolderInfo>,
    /// Who waits for it.
    pub waiters: Vec<WaiterInfo>,
}

/// Everything the manager knows at one moment, from [`LockManager::inspect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LockState {
    /// Names that are held or waited for, sorted by name.
    pub locks: Vec<LockInfo>,
    /// The cumulative counters, read in the same pass.
    pub stats: LockStats,
}

/// The lease monitor thread, stopped and joined on drop.
struct Monitor {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        drop(self.stop.take()); // disconnects the channel: the thread's wait ends at once
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("the lock lease monitor panicked");
        }
    }
}

/// The table of names: each name's lock, made on first use and removed once nothing but
/// the table refers to it. Sharded by the name's hash, so that acquires of different
/// names that miss their thread's name cache do not meet on one lock.
struct Names {
    shards: Box<[Shard]>,
    hasher: Hasher,
    /// The counters of names removed from the table, so that [`LockManager::stats`]
    /// stays cumulative.
    retired: parking_lot::Mutex<LockStats>,
    /// Above every token a removed name handed out: where a name made again starts.
    first_token: AtomicU64,
}

/// The table's hasher: keyed at random, so that names from outside cannot be chosen to
/// collide; fixed under loom, whose executions must each do the same thing.
#[cfg(not(loom))]
type Hasher = std::hash::RandomState;
#[cfg(loom)]
type Hasher = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

type Map = HashMap<Arc<str>, Arc<NameLock>, Hasher>;

#[derive(Default)]
struct Shard {
    map: RwLock<Map>,
    /// The shard size at which the next insertion first removes idle names (0: the
    /// minimum).
    sweep_at: AtomicUsize,
}

/// Shards of the name table.
const SHARDS: usize = 16;

impl Default for Names {
    fn default() -> Self {
        Names {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: Hasher::default(),
            retired: parking_lot::Mutex::default(),
            first_token: AtomicU64::new(0),
        }
    }
}

impl Names {
    fn shard(&self, name: &str) -> &Shard {
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, name);
        &self.shards[(hash % SHARDS as u64) as usize]
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.map.read().len()).sum()
    }

    /// Every lock in the table now.
    fn all(&self) -> Vec<Arc<NameLock>> {
        self.shards
            .iter()
            .flat_map(|s| s.map.read().values().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// The lock of `name`, if it is in the table.
    fn get(&self, name: &str) -> Option<Arc<NameLock>> {
        self.shard(name).map.read_recursive().get(name).cloned()
    }

    /// The lock of `name`, made if it is not in the table.
    fn lock_for(&self, name: &str, registry: &Arc<Registry>) -> Arc<NameLock> {
        let shard = self.shard(name);
        if let Some(lock) = shard.map.read().get(name) {
            return Arc::clone(lock);
        }
        let mut map = shard.map.write();
        let due = shard.sweep_at.load(Ordering::Relaxed).max(MIN_SWEEP);
        if map.len() >= due {
            self.sweep(shard, &mut map);
        }
        let first = self.first_token.load(Ordering::Relaxed);
        let lock = map.entry(Arc::from(name)).or_insert_with_key(|key| {
            Arc::new(NameLock::new(Arc::clone(key), Arc::clone(registry), first))
        });
        Arc::clone(lock)
    }

    /// Removes every name of `shard` nobody can reach but the table: no handle, thread
    /// (a hold's slot or the thread's name cache), waiter, lease or [`Fenced`] refers to it
    /// (all of them hold a reference), and nothing holds or waits for it. An acquire takes
    /// its reference under the shard's read lock (or has one already), so it never races
    /// this (which holds the write lock). A name made again later is a new lock that
    /// behaves the same: its tokens start above every token a removed name handed out,
    /// and its counters were kept in `retired`.
    fn sweep(&self, shard: &Shard, map: &mut Map) {
        let mut retired = self.retired.lock();
        let mut first = self.first_token.load(Ordering::Relaxed);
        map.retain(|_, lock| {
            if Arc::strong_count(lock) > 1 {
                return true;
            }
            // Pairs with the release in the last other `Arc`'s drop: what its owner did
            // to the lock is seen below.
            std::sync::atomic::fence(Ordering::Acquire);
            match lock.idle_counters() {
                Some((counters, token)) => {
                    retired.add(&counters);
                    first = first.max(token + 1);
                    false
                }
                None => true,
            }
        });
        self.first_token.fetch_max(first, Ordering::Relaxed);
        shard.sweep_at.store(map.len() * 2, Ordering::Relaxed);
    }

    /// A sweep now of every shard past the minimum: after the lease monitor let go of
    /// names, which the last sweep had to keep.
    fn sweep_if_large(&self) {
        for shard in &self.shards {
            if shard.map.read().len() >= MIN_SWEEP {
                self.sweep(shard, &mut shard.map.write());
            }
        }
    }
}

/// Named read-write locks with leases, fencing tokens and deadlock detection.
///
/// See the [crate docs](crate) for the design. Cheap to share by reference; the lease
/// monitor thread (when leases are on) stops and is joined when the manager drops.
pub struct LockManager {
    names: Arc<Names>,
    registry: Arc<Registry>,
    _monitor: Option<Monitor>,
}

/// A shard is swept of idle names once it holds this many, and then whenever it has
/// doubled since the last sweep: amortised O(1) per new name, and a table at most about
/// twice the names in use.
const MIN_SWEEP: usize = 32;

impl fmt::Debug for LockManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockManager")
            .field("names", &self.names.len())
            .field("registry", &self.registry)
            .field("monitor", &self._monitor.is_some())
            .finish()
    }
}

impl Drop for LockManager {
    fn drop(&mut self) {
        // The leased list and the names refer to each other through the registry.
        self.registry.clear_leased();
        holders::try_with(|local| local.names.forget(self.registry.id));
    }
}

impl Default for LockManager {
    fn default() -> Self {
        Self::new()
    }
}

impl LockManager {
    /// A manager with the default config (30 s leases, 1 s deadlock check delay, writer
    /// preference) on the system clock.
    pub fn new() -> Self {
        Self::with_config(LockConfig::default()).expect("the default config is valid")
    }

    /// A manager with `config` on the system clock.
    pub fn with_config(config: LockConfig) -> Result<Self, LockError> {
        Self::with_clock(config, Arc::new(SystemClock::new()))
    }

    /// A manager with `config` whose leases run on `clock`.
    pub fn with_clock(config: LockConfig, clock: Arc<dyn Clock>) -> Result<Self, LockError> {
        if config.lease == Some(Duration::ZERO) {
            return Err(LockError::ZeroDuration { what: "the lease" });
        }
        if config.check_delay.is_zero() {
            return Err(LockError::ZeroDuration {
                what: "the deadlock check delay",
            });
        }
        if config.check_delay > MAX_CHECK_DELAY {
            return Err(LockError::TooLong {
                what: "the deadlock check delay",
                limit: MAX_CHECK_DELAY,
            });
        }
        if config.monitor_interval == Some(Duration::ZERO) {
            return Err(LockError::ZeroDuration {
                what: "the monitor interval",
            });
        }
        let registry = Arc::new(Registry::new(
            config.lease,
            config.check_delay,
            config.fair,
            clock,
        ));
        let names: Arc<Names> = Arc::default();
        // Under loom the model drives expiry itself through `expire_overdue`.
        let monitor = config.lease.filter(|_| cfg!(not(loom))).map(|lease| {
            let interval = config
                .monitor_interval
                .unwrap_or((lease / 10).clamp(Duration::from_millis(10), Duration::from_secs(1)));
            let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
            let (names, registry) = (Arc::clone(&names), Arc::clone(&registry));
            let thread = std::thread::Builder::new()
                .name("memwarden-lease-monitor".into())
                .spawn(move || {
                    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(interval)
                    {
                        expire_overdue(&names, &registry);
                    }
                })
                .map_err(|e| {
                    log::error!("cannot start the lease monitor, leases will not expire: {e}");
                })
                .ok();
            Monitor {
                stop: Some(stop),
                thread,
            }
        });
        Ok(LockManager {
            names,
            registry,
            _monitor: monitor,
        })
    }

    fn lock_for(&self, name: &str) -> Result<Arc<NameLock>, LockError> {
        if name.is_empty() {
            return Err(LockError::EmptyName);
        }
        Ok(self.names.lock_for(name, &self.registry))
    }

    /// How many names the table holds now: those in use, and at most about as many
    /// again that were used since the last sweep.
    pub fn name_count(&self) -> usize {
        self.names.len()
    }

    /// How many names have leased holds the lease monitor will look at (those held
    /// since it last found them free).
    pub fn leased_count(&self) -> usize {
        self.registry.leased_len()
    }

    /// A handle to `name` that skips the name lookup on every acquire.
    pub fn handle(&self, name: &str) -> Result<LockHandle, LockError> {
        self.lock_for(name).map(LockHandle::new)
    }

    /// A handle to the lock named by a resource id.
    pub fn resource(&self, id: &ResourceId) -> Result<LockHandle, LockError> {
        self.handle(id.as_str())
    }

    /// Runs `f` with the lock of `name` and this thread's holds: the lock from the
    /// thread's cache of the names it used last, or from the table (and then cached).
    #[inline]
    fn by_name<R>(
        &self,
        name: &str,
        f: impl FnOnce(&Arc<NameLock>, &mut Holds) -> Result<R, LockError>,
    ) -> Result<R, LockError> {
        if name.is_empty() {
            return Err(LockError::EmptyName);
        }
        holders::with(|local| {
            let Local { holds, names } = local;
            let lock = match names.get(self.registry.id, name) {
                Some(lock) => lock,
                None => names.insert(self.names.lock_for(name, &self.registry)),
            };
            f(lock, holds)
        })
    }

    /// Waits as long as it takes for a shared lock on `name`.
    #[inline]
    pub fn read(&self, name: &str) -> Result<ReadGuard, LockError> {
        self.by_name(name, |lock, holds| ReadGuard::acquire_in(holds, lock, None))
    }

    /// Waits as long as it takes for an exclusive lock on `name`.
    #[inline]
    pub fn write(&self, name: &str) -> Result<WriteGuard, LockError> {
        self.by_name(name, |lock, holds| {
            WriteGuard::acquire_in(holds, lock, None)
        })
    }

    /// Waits at most `timeout` for a shared lock on `name`.
    pub fn try_read_for(&self, name: &str, timeout: Duration) -> Result<ReadGuard, LockError> {
        self.by_name(name, |lock, holds| {
            check_timeout(lock, timeout)?;
            ReadGuard::acquire_in(holds, lock, Some(timeout))
        })
    }

    /// Waits at most `timeout` for an exclusive lock on `name`.
    pub fn try_write_for(&self, name: &str, timeout: Duration) -> Result<WriteGuard, LockError> {
        self.by_name(name, |lock, holds| {
            check_timeout(lock, timeout)?;
            WriteGuard::acquire_in(holds, lock, Some(timeout))
        })
    }

    /// The strongest mode in which `name` is held, if it is.
    pub fn is_locked(&self, name: &str) -> Option<Mode> {
        if holding_off::contains(self, name) {
            return None; // this thread keeps every hold off it
        }
        self.names.get(name)?.held_mode()
    }

    /// Runs `f` at a moment when nobody holds `name`, keeping every acquire of `name`
    /// waiting until `f` returns; or, if `name` is held, returns the strongest mode it is
    /// held in without running `f`. How a check ("is it locked?") and the action it allows
    /// (releasing the resource of that name) happen with no window between them.
    ///
    /// `f` must be short and must not acquire locks of this manager: every acquire of
    /// `name`, and of any name not made yet, waits for it. Inside `f`, the same thread
    /// may call `while_unlocked` again (for `name` it runs at once) and
    /// [`is_locked`](Self::is_locked) (which sees `name` unheld).
    pub fn while_unlocked<R>(&self, name: &str, f: impl FnOnce() -> R) -> Result<R, Mode> {
        if holding_off::contains(self, name) {
            return Ok(f());
        }
        // Held throughout: a first acquire of a name not in the table inserts it under
        // the shard's write lock, so it waits; a sweep removes names under the write lock
        // too, so the lock found stays the name's. Recursive, so that a nested call on
        // this thread never queues behind a writer.
        let shard = self.names.shard(name).map.read_recursive();
        match shard.get(name) {
            Some(lock) => lock.while_unlocked(|| holding_off::during(self, name, f)),
            None => Ok(holding_off::during(self, name, f)),
        }
    }

    /// Releases the calling thread's hold `token` on `name` without its guard (whose drop
    /// then does nothing). A hold of another thread, or one that is gone, is an error.
    pub fn release(&self, name: &str, token: u64) -> Result<(), LockError> {
        let not_owner = || LockError::NotOwner {
            name: name.to_owned(),
            token,
        };
        let lock = self.names.get(name).ok_or_else(not_owner)?;
        let found = holders::with(|local| local.holds.find(lock.addr(), token));
        let (slot, claim, mode) = found.ok_or_else(not_owner)?;
        // SAFETY: the slot is one of this thread's, alive while its thread's storage is.
        if lock.release_unguarded(unsafe { slot.as_ref() }, claim, mode) {
            Ok(())
        } else {
            Err(not_owner())
        }
    }

    /// Expires every grant whose lease has ended; returns how many. The monitor thread
    /// calls this on its interval; tests on a manual clock call it directly.
    pub fn expire_overdue(&self) -> usize {
        expire_overdue(&self.names, &self.registry)
    }

    /// Has every waiting thread look for a deadlock now instead of at its next check
    /// delay: a program that knows its threads are stuck (a watchdog) gets the cycle
    /// reported at once, and tests and model checkers run the detector without waiting
    /// for real time to pass. Returns at once; each waiter on a cycle finds it in its own
    /// thread, and one of them fails with [`LockError::Deadlock`].
    pub fn check_deadlocks(&self) {
        self.registry.check_deadlocks();
    }

    /// A value reachable only through a valid guard on `name` (see [`Fenced`]).
    pub fn fenced<T>(&self, name: &str, value: T) -> Result<Fenced<T>, LockError> {
        Ok(Fenced::new(self.lock_for(name)?, value))
    }

    /// Cumulative counters over every name since the manager was made.
    pub fn stats(&self) -> LockStats {
        let mut stats = *self.names.retired.lock();
        for lock in self.names.all() {
            stats.add(&lock.counters());
        }
        stats
    }

    /// The state now: who holds what, in which mode, for how long, with which token;
    /// who waits; and the [`stats`](Self::stats).
    pub fn inspect(&self) -> LockState {
        let now = self.registry.lease.map(|_| self.registry.clock.now());
        let waiting = self.registry.waiting();
        // The locks first: held here, none of them goes and leaves its address to a
        // new lock while the holders are read.
        let all = self.names.all();
        let holds = holders::snapshot();
        let mut locks = Vec::new();
        let mut stats = *self.names.retired.lock();
        for lock in all {
            stats.add(&lock.counters());
            let waiters: Vec<WaiterInfo> = waiting
                .iter()
                .filter(|w| Arc::ptr_eq(&w.lock, &lock))
                .map(|w| WaiterInfo {
                    thread: w.owner.name(),
                    kind: w.kind,
                    waited: w.since.elapsed(),
                })
                .collect();
            let holders: Vec<HolderInfo> = holds
                .of(lock.addr())
                .map(|h| HolderInfo {
                    thread: h.owner.name(),
                    mode: h.mode,
                    token: h.token,
                    held_for: now
                        .zip(h.since)
                        .map(|(now, since)| now.saturating_duration_since(since)),
                    lease_left: now
                        .zip(h.deadline)
                        .map(|(now, end)| end.saturating_duration_since(now)),
                })
                .collect();
            if holders.is_empty() && waiters.is_empty() {
                continue;
            }
            locks.push(LockInfo {
                name: lock.name.to_string(),
                token: lock.token(),
                holders,
                waiters,
            });
        }
        locks.sort_by(|a, b| a.name.cmp(&b.name));
        LockState { locks, stats }
    }
}

/// Expires overdue leases on the names that have any, then sweeps the table if that let
/// go of names; returns how many leases expired.
fn expire_overdue(names: &Names, registry: &Registry) -> usize {
    let (expired, delisted) = registry.expire_overdue();
    if delisted > 0 {
        names.sweep_if_large();
    }
    expired
}

/// The names each thread is inside [`LockManager::while_unlocked`] for, so that a nested
/// call on the same thread neither locks the name's state twice nor waits for itself.
mod holding_off {
    use std::cell::RefCell;

    use super::LockManager;

    thread_local! {
        static HOLDING: RefCell<Vec<(usize, Box<str>)>> = const { RefCell::new(Vec::new()) };
    }

    fn key(manager: &LockManager) -> usize {
        std::ptr::from_ref(manager) as usize
    }

    pub(super) fn contains(manager: &LockManager, name: &str) -> bool {
        let key = key(manager);
        HOLDING.with(|h| h.borrow().iter().any(|(m, n)| *m == key && **n == *name))
    }

    /// Runs `f` with `name` marked as held off by this thread.
    pub(super) fn during<R>(manager: &LockManager, name: &str, f: impl FnOnce() -> R) -> R {
        struct Unmark;
        impl Drop for Unmark {
            fn drop(&mut self) {
                HOLDING.with(|h| h.borrow_mut().pop());
            }
        }
        HOLDING.with(|h| h.borrow_mut().push((key(manager), name.into())));
        let _unmark = Unmark;
        f()
    }
}
