//! Who holds what: every thread's holds, in slots the thread fills and empties without a
//! lock and that other threads read (introspection, the deadlock detector, the lease
//! monitor).
//!
//! A grant is one read-modify-write of the name's state word (see `name_lock`) and then
//! plain stores into a slot of the granting thread; a release empties the slot (a store,
//! or a compare-and-swap when a lease monitor may take the hold away) and then gives the
//! hold back in the word. A slot is filled only after the word granted its hold and is
//! emptied before the word lets the hold go, so a slot seen held is a hold that exists at
//! that moment: the deadlock detector never sees a hold that is gone.
//!
//! A slot is read like a seqlock: its claim word, then its fields, then the claim again;
//! the claim carries a generation that grows with every fill, so equal claims mean the
//! fields belong to that fill.
//!
//! Each thread also keeps, in its thread-local storage, the `Arc` of every lock its slots
//! refer to (a guard holds only addresses, so that taking a lock counts no reference) and a
//! small cache of the names it used last, so that an acquire by name finds its lock
//! without touching the manager's table.

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use memwarden_core::Timestamp;

use crate::Mode;
use crate::name_lock::NameLock;
use crate::owner::{self, Owner};
use crate::sync::{AtomicU64, AtomicUsize, Mutex, fence};

/// A slot's claim when it holds nothing; otherwise `generation << 2 | state`.
const FREE: u64 = 0;
/// The hold is granted and not released.
const HELD: u64 = 1;
/// The lease monitor took the hold away; the slot stays its guard's until the guard drops.
const EXPIRED: u64 = 2;
/// Released without its guard ([`LockManager::release`](crate::LockManager::release));
/// the slot stays its guard's until the guard drops.
const RELEASED: u64 = 3;
const STATE: u64 = 3;

/// `since` and `deadline` of a hold without a lease.
const NO_TIME: u64 = u64::MAX;

/// Slots per chunk: a thread's slots grow a chunk at a time and never move.
const CHUNK: usize = if cfg!(loom) { 2 } else { 16 };

/// A slot's `grant` word: the token and whether the hold is exclusive.
#[inline(always)]
fn encode_grant(token: u64, mode: Mode) -> u64 {
    token << 1 | u64::from(mode == Mode::Write)
}

/// The mode a slot's `grant` word says.
#[inline(always)]
fn grant_mode(grant: u64) -> Mode {
    if grant & 1 == 1 {
        Mode::Write
    } else {
        Mode::Read
    }
}

/// Names each thread remembers (the lock of each, for acquires by name).
const NAME_CACHE: usize = 8;

/// One hold of one thread, on a cache line of its own (a slot is written by its thread
/// on every grant; no other thread's data may share its line).
#[repr(align(64))]
pub(crate) struct Slot {
    /// `FREE` or `generation << 2 | state`. Only the owning thread fills or empties the
    /// slot; the lease monitor only turns `HELD` into `EXPIRED`, under the name's mutex.
    claim: AtomicU64,
    /// The held name's lock, as an address: other threads compare it, never follow it.
    lock: AtomicUsize,
    /// `token << 1 | 1` for an exclusive hold, `token << 1` for a shared one.
    grant: AtomicU64,
    since: AtomicU64,
    deadline: AtomicU64,
}

impl Slot {
    fn new() -> Self {
        Slot {
            claim: AtomicU64::new(FREE),
            lock: AtomicUsize::new(0),
            grant: AtomicU64::new(0),
            since: AtomicU64::new(NO_TIME),
            deadline: AtomicU64::new(NO_TIME),
        }
    }

    /// The token of the hold last filled in (kept until the slot is emptied).
    pub(crate) fn token(&self) -> u64 {
        self.grant.load(Relaxed) >> 1
    }

    /// Whether the hold filled with `claim` is still held (not released or expired).
    #[inline]
    pub(crate) fn is_held(&self, claim: u64) -> bool {
        self.claim.load(Acquire) == claim
    }

    /// Empties the slot of the hold filled with `claim`; `true` if the hold was still
    /// held, in which case the caller gives it back in the name's word. `contested`: a
    /// lease monitor may take the hold away meanwhile (otherwise only this thread writes
    /// the claim, and a load and a store suffice).
    #[inline(always)]
    pub(crate) fn vacate(&self, claim: u64, contested: bool) -> bool {
        let now = if contested {
            match self.claim.compare_exchange(claim, FREE, AcqRel, Relaxed) {
                Ok(_) => return true,
                Err(now) => now,
            }
        } else {
            let now = self.claim.load(Relaxed);
            if now == claim {
                self.claim.store(FREE, Release);
                return true;
            }
            now
        };
        // Expired or released without the guard: the slot is still this guard's.
        if now & !STATE == claim & !STATE {
            self.claim.store(FREE, Release);
        }
        false
    }

    /// Marks the hold filled with `claim` released while its guard lives on; `true` if it
    /// was still held (the caller then gives it back in the word).
    pub(crate) fn mark_released(&self, claim: u64) -> bool {
        self.claim
            .compare_exchange(claim, claim & !STATE | RELEASED, AcqRel, Relaxed)
            .is_ok()
    }

    /// Takes the hold filled with `claim` away for the lease monitor; `true` if it was
    /// still held. Called under the name's mutex only.
    fn expire(&self, claim: u64) -> bool {
        self.claim
            .compare_exchange(claim, claim & !STATE | EXPIRED, AcqRel, Relaxed)
            .is_ok()
    }

    /// The hold in the slot, if the slot is held and read whole.
    fn read(&self, owner: Owner) -> Option<HoldView> {
        let claim = self.claim.load(Acquire);
        if claim & STATE != HELD {
            return None;
        }
        let lock = self.lock.load(Relaxed);
        let grant = self.grant.load(Relaxed);
        let since = self.since.load(Relaxed);
        let deadline = self.deadline.load(Relaxed);
        // Pairs with the fence in `Holds::prepare`: had any load above read a later
        // fill's store, the claim below would no longer be `claim`.
        fence(Acquire);
        if self.claim.load(Relaxed) != claim {
            return None;
        }
        let time = |t: u64| (t != NO_TIME).then(|| Timestamp::from_nanos(t));
        Some(HoldView {
            owner,
            lock,
            token: grant >> 1,
            mode: grant_mode(grant),
            since: time(since),
            deadline: time(deadline),
            claim,
            slot: NonNull::from(self),
        })
    }
}

/// One thread's slots, shared with the threads that read them.
pub(crate) struct ThreadHolds {
    owner: Owner,
    /// Chunks of slots; readers lock this to walk them, the owner only to add a chunk.
    chunks: Mutex<Vec<Box<[Slot]>>>,
    /// Set when the thread exits; its table is dropped once none of its slots is held.
    exited: AtomicU64,
}

impl ThreadHolds {
    fn all_free(&self) -> bool {
        self.chunks
            .lock()
            .iter()
            .flat_map(|c| c.iter())
            .all(|s| s.claim.load(Acquire) == FREE)
    }
}

#[cfg(not(loom))]
static THREADS: Mutex<Vec<Arc<ThreadHolds>>> = Mutex::new(Vec::new());

#[cfg(not(loom))]
fn threads() -> &'static Mutex<Vec<Arc<ThreadHolds>>> {
    &THREADS
}

#[cfg(loom)]
loom::lazy_static! {
    static ref THREADS: Mutex<Vec<Arc<ThreadHolds>>> = Mutex::new(Vec::new());
}

#[cfg(loom)]
fn threads() -> &'static Mutex<Vec<Arc<ThreadHolds>>> {
    &THREADS
}

/// A hold as another thread reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HoldView {
    pub(crate) owner: Owner,
    /// The lock's address.
    pub(crate) lock: usize,
    pub(crate) token: u64,
    pub(crate) mode: Mode,
    pub(crate) since: Option<Timestamp>,
    pub(crate) deadline: Option<Timestamp>,
    claim: u64,
    slot: NonNull<Slot>,
}

/// Every thread's holds at one moment (each slot read whole, one after the other).
pub(crate) struct Snapshot {
    /// Keeps the slots `holds` point to alive.
    _tables: Vec<Arc<ThreadHolds>>,
    pub(crate) holds: Vec<HoldView>,
}

impl Snapshot {
    /// The holds on the lock at `lock`.
    pub(crate) fn of(&self, lock: usize) -> impl Iterator<Item = &HoldView> {
        self.holds.iter().filter(move |h| h.lock == lock)
    }

    /// Takes `hold` away (its lease is over); `true` if it was still held. Called under
    /// the name's mutex.
    pub(crate) fn expire(&self, hold: &HoldView) -> bool {
        // SAFETY: the slot sits in a chunk of a table that `_tables` keeps alive, and a
        // chunk never moves or shrinks while its table lives.
        unsafe { hold.slot.as_ref() }.expire(hold.claim)
    }
}

/// Reads every thread's slots; drops the tables of exited threads that hold nothing.
pub(crate) fn snapshot() -> Snapshot {
    let tables: Vec<Arc<ThreadHolds>> = {
        let mut threads = threads().lock();
        threads.retain(|t| t.exited.load(Acquire) == 0 || !t.all_free());
        threads.clone()
    };
    let mut holds = Vec::new();
    for table in &tables {
        let chunks = table.chunks.lock();
        holds.extend(
            chunks
                .iter()
                .flat_map(|c| c.iter())
                .filter_map(|s| s.read(table.owner)),
        );
    }
    Snapshot {
        _tables: tables,
        holds,
    }
}

/// One of this thread's slots, mirrored: the lock it last held (kept alive for the
/// slot's guard) and its last generation. On a cache line of its own, as the slot.
#[repr(align(64))]
struct Entry {
    slot: NonNull<Slot>,
    lock: Option<Arc<NameLock>>,
    generation: u64,
    /// The slot's `since` and `deadline` are set (its last hold had a lease).
    timed: bool,
}

impl Entry {
    #[inline]
    fn slot(&self) -> &Slot {
        // SAFETY: the slot sits in a chunk of this thread's table, which `Holds` keeps
        // alive; a chunk never moves or shrinks while its table lives.
        unsafe { self.slot.as_ref() }
    }

    #[inline]
    fn addr(&self) -> usize {
        self.lock.as_ref().map_or(0, |l| l.addr())
    }
}

/// What this thread holds of one lock, and a slot to record a new hold of it in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scan {
    /// The strongest mode held.
    pub(crate) held: Option<Mode>,
    /// How many holds.
    pub(crate) count: usize,
    /// A free entry, one that last held this lock if there is one.
    pub(crate) free: Option<usize>,
}

/// A recorded hold: what its guard keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grant {
    pub(crate) slot: NonNull<Slot>,
    pub(crate) claim: u64,
}

/// This thread's holds.
pub(crate) struct Holds {
    table: Arc<ThreadHolds>,
    pub(crate) owner: Owner,
    entries: Vec<Entry>,
}

impl Holds {
    fn new() -> Self {
        let owner = owner::current();
        let table = Arc::new(ThreadHolds {
            owner,
            chunks: Mutex::new(Vec::new()),
            exited: AtomicU64::new(0),
        });
        threads().lock().push(Arc::clone(&table));
        Holds {
            table,
            owner,
            entries: Vec::new(),
        }
    }

    /// A free entry to record a new hold of the lock at `lock` in, one that last held it
    /// if there is one; `None` if this thread has anything of that lock in a slot (a
    /// re-entry, or a guard whose hold expired: the slow path sorts them out) or no free
    /// entry.
    #[inline(always)]
    pub(crate) fn entry_for_new(&self, lock: usize) -> Option<usize> {
        let mut free = None;
        let mut same_free = false;
        for (i, e) in self.entries.iter().enumerate() {
            let same = e.addr() == lock;
            if e.slot().claim.load(Relaxed) != FREE {
                if same {
                    return None;
                }
            } else if !same_free {
                free = Some(i);
                same_free = same;
            }
        }
        free
    }

    /// What this thread holds of the lock at `lock`.
    #[inline(always)]
    pub(crate) fn scan(&self, lock: usize) -> Scan {
        let mut scan = Scan {
            held: None,
            count: 0,
            free: None,
        };
        let mut other_free = None;
        for (i, e) in self.entries.iter().enumerate() {
            let claim = e.slot().claim.load(Relaxed);
            if claim == FREE {
                if e.addr() == lock {
                    scan.free = Some(i);
                } else if other_free.is_none() {
                    other_free = Some(i);
                }
            } else if claim & STATE == HELD && e.addr() == lock {
                let mode = grant_mode(e.slot().grant.load(Relaxed));
                scan.held = scan.held.max(Some(mode));
                scan.count += 1;
            }
        }
        scan.free = scan.free.or(other_free);
        scan
    }

    /// Records a hold of `lock` granted with `token`, in entry `at` (from [`scan`]) or a
    /// new one.
    #[inline(always)]
    pub(crate) fn record(
        &mut self,
        at: Option<usize>,
        lock: &Arc<NameLock>,
        mode: Mode,
        token: u64,
        lease: Option<(Timestamp, Timestamp)>,
    ) -> Grant {
        let at = match at {
            Some(at) => at,
            None => self.grow(),
        };
        self.prepare(at, lock);
        self.publish(at, mode, token, lease)
    }

    /// Writes which lock a hold in free entry `at` will be of: done before the grant, so
    /// that less is left between the grant and the release (on a contended name, the
    /// other threads wait for this one's release). The slot stays empty to readers until
    /// [`publish`](Self::publish).
    #[inline(always)]
    pub(crate) fn prepare(&mut self, at: usize, lock: &Arc<NameLock>) {
        let entry = &mut self.entries[at];
        if entry.addr() != lock.addr() {
            entry.lock = Some(Arc::clone(lock));
        }
        // Pairs with the fence in `Slot::read`: a reader that sees any store below (or in
        // `publish`) also sees that the slot was emptied since the claim it read.
        fence(Release);
        entry.slot().lock.store(entry.addr(), Relaxed);
    }

    /// Makes the hold prepared in entry `at` visible: granted in `mode` with `token`, with
    /// `lease` (its start and end) if it has one.
    #[inline(always)]
    pub(crate) fn publish(
        &mut self,
        at: usize,
        mode: Mode,
        token: u64,
        lease: Option<(Timestamp, Timestamp)>,
    ) -> Grant {
        let entry = &mut self.entries[at];
        entry.generation += 1;
        let claim = entry.generation << 2 | HELD;
        let timed = std::mem::replace(&mut entry.timed, lease.is_some());
        let slot = entry.slot();
        if lease.is_some() || timed {
            let (since, deadline) =
                lease.map_or((NO_TIME, NO_TIME), |(s, d)| (s.as_nanos(), d.as_nanos()));
            slot.since.store(since, Relaxed);
            slot.deadline.store(deadline, Relaxed);
        }
        slot.grant.store(encode_grant(token, mode), Relaxed);
        slot.claim.store(claim, Release);
        Grant {
            slot: entry.slot,
            claim,
        }
    }

    /// Replaces the hold in `slot` (filled with `claim`, still held) by one of `mode`
    /// with `token`: an upgrade or a downgrade.
    pub(crate) fn refill(
        &mut self,
        slot: NonNull<Slot>,
        mode: Mode,
        token: u64,
        lease: Option<(Timestamp, Timestamp)>,
    ) -> Grant {
        let at = self
            .entries
            .iter()
            .position(|e| e.slot == slot)
            .expect("a guard's slot is one of its thread's");
        let entry = &self.entries[at];
        entry.slot().claim.store(FREE, Relaxed);
        let lock = entry.lock.clone().expect("a held slot keeps its lock");
        self.prepare(at, &lock);
        self.publish(at, mode, token, lease)
    }

    /// The lock of the hold in `slot` (a guard's: its entry keeps the lock).
    pub(crate) fn lock_of(&self, slot: NonNull<Slot>) -> Arc<NameLock> {
        self.entries
            .iter()
            .find(|e| e.slot == slot)
            .and_then(|e| e.lock.clone())
            .expect("a guard's slot is one of its thread's, and keeps its lock")
    }

    /// The slot of this thread's hold `token` on the lock at `lock`, if it is held.
    pub(crate) fn find(&self, lock: usize, token: u64) -> Option<(NonNull<Slot>, u64, Mode)> {
        self.entries.iter().find_map(|e| {
            let s = e.slot();
            let claim = s.claim.load(Relaxed);
            let grant = s.grant.load(Relaxed);
            (claim & STATE == HELD && e.addr() == lock && grant >> 1 == token).then_some((
                e.slot,
                claim,
                grant_mode(grant),
            ))
        })
    }

    /// A new entry, on a new slot (from a new chunk when the last is full): the entries
    /// are as many as the most holds this thread had at once.
    #[cold]
    fn grow(&mut self) -> usize {
        let at = self.entries.len();
        let mut chunks = self.table.chunks.lock();
        if at.is_multiple_of(CHUNK) {
            chunks.push((0..CHUNK).map(|_| Slot::new()).collect());
        }
        let slot = &chunks[at / CHUNK][at % CHUNK];
        self.entries.push(Entry {
            slot: NonNull::from(slot),
            lock: None,
            generation: 0,
            timed: false,
        });
        at
    }
}

impl Drop for Holds {
    fn drop(&mut self) {
        if cfg!(loom) {
            // loom drops the main thread's storage after the execution's statics and
            // atomics are gone: touch none of them (each execution starts anew anyway).
            for e in &mut self.entries {
                std::mem::forget(e.lock.take());
            }
            return;
        }
        for e in &mut self.entries {
            if e.slot().claim.load(Relaxed) != FREE
                && let Some(lock) = e.lock.take()
            {
                // A guard that outlives its thread's storage (one dropped by a later
                // thread-local destructor, or forgotten) still refers to its lock.
                std::mem::forget(lock);
            }
        }
        self.table.exited.store(1, Release);
        if self.table.all_free() {
            threads().lock().retain(|t| !Arc::ptr_eq(t, &self.table));
        }
    }
}

/// The locks of the names this thread used last, for acquires by name.
#[derive(Default)]
pub(crate) struct NameCache {
    locks: Vec<Arc<NameLock>>,
    next: usize,
}

impl NameCache {
    /// The lock of `name` in manager `manager`, if remembered.
    #[inline]
    pub(crate) fn get(&self, manager: u64, name: &str) -> Option<&Arc<NameLock>> {
        self.locks
            .iter()
            .find(|l| l.manager == manager && *l.name == *name)
    }

    /// Remembers `lock`, forgetting the oldest remembered when full.
    pub(crate) fn insert(&mut self, lock: Arc<NameLock>) -> &Arc<NameLock> {
        let at = if self.locks.len() < NAME_CACHE {
            self.locks.push(lock);
            self.locks.len() - 1
        } else {
            let at = self.next;
            self.next = (self.next + 1) % NAME_CACHE;
            self.locks[at] = lock;
            at
        };
        &self.locks[at]
    }

    /// Forgets every lock of manager `manager` (it is going away).
    pub(crate) fn forget(&mut self, manager: u64) {
        self.locks.retain(|l| l.manager != manager);
        self.next = 0;
    }
}

/// This thread's holds and name cache.
pub(crate) struct Local {
    pub(crate) holds: Holds,
    pub(crate) names: NameCache,
}

#[cfg(not(loom))]
mod tls {
    //! This thread's [`Local`], reached through a constant-initialised pointer (the
    //! cheapest thread-local access there is) and owned by a second thread-local that
    //! frees it when the thread exits.

    use std::cell::{Cell, RefCell};
    use std::ptr;

    use super::{Holds, Local, NameCache};

    std::thread_local! {
        /// This thread's `Local` once made; null before and after.
        static PTR: Cell<*mut Local> = const { Cell::new(ptr::null_mut()) };
        /// Whether a `with` runs on this thread (a second would alias the first).
        static BUSY: Cell<bool> = const { Cell::new(false) };
        /// Owns the `Local`: dropped when the thread exits.
        static OWNED: RefCell<Option<Owned>> = const { RefCell::new(None) };
    }

    struct Owned(*mut Local);

    impl Drop for Owned {
        fn drop(&mut self) {
            PTR.with(|p| p.set(ptr::null_mut()));
            // SAFETY: made by `Box::into_raw` in `make`, dropped only here, and no `with`
            // runs (a thread's storage is destroyed after its last call returned).
            drop(unsafe { Box::from_raw(self.0) });
        }
    }

    #[cold]
    #[inline(never)]
    fn make() -> *mut Local {
        OWNED.with(|owned| {
            let mut owned = owned.borrow_mut();
            let local = Box::into_raw(Box::new(Local {
                holds: Holds::new(),
                names: NameCache::default(),
            }));
            *owned = Some(Owned(local));
            PTR.with(|p| p.set(local));
            local
        })
    }

    /// Clears `BUSY` however the call ends.
    struct Busy;

    impl Drop for Busy {
        #[inline(always)]
        fn drop(&mut self) {
            BUSY.with(|b| b.set(false));
        }
    }

    #[inline(always)]
    pub(crate) fn with<R>(f: impl FnOnce(&mut Local) -> R) -> R {
        assert!(
            !BUSY.with(Cell::get),
            "memwarden-lock's thread storage entered twice"
        );
        let mut local = PTR.with(Cell::get);
        if local.is_null() {
            local = make();
        }
        BUSY.with(|b| b.set(true));
        let _busy = Busy;
        // SAFETY: `local` is this thread's, alive until the thread's storage is destroyed
        // (after which `PTR` is null and `make` panics in `OWNED.with`), and `BUSY` makes
        // this the only reference to it.
        f(unsafe { &mut *local })
    }

    pub(crate) fn try_with(f: impl FnOnce(&mut Local)) {
        let local = PTR.try_with(Cell::get).unwrap_or(ptr::null_mut());
        if local.is_null() || BUSY.try_with(Cell::get).unwrap_or(true) {
            return;
        }
        BUSY.with(|b| b.set(true));
        let _busy = Busy;
        // SAFETY: as in `with`.
        f(unsafe { &mut *local });
    }
}

#[cfg(loom)]
mod tls {
    //! Under loom: a `RefCell` in loom's thread-local storage (loom runs each model
    //! thread's destructors itself).

    use std::cell::RefCell;

    use super::{Holds, Local, NameCache};

    loom::thread_local! {
        static LOCAL: RefCell<Local> = RefCell::new(Local {
            holds: Holds::new(),
            names: NameCache::default(),
        });
    }

    pub(crate) fn with<R>(f: impl FnOnce(&mut Local) -> R) -> R {
        LOCAL.with(|local| f(&mut local.borrow_mut()))
    }

    pub(crate) fn try_with(f: impl FnOnce(&mut Local)) {
        let _ = LOCAL.try_with(|local| {
            if let Ok(mut local) = local.try_borrow_mut() {
                f(&mut local);
            }
        });
    }
}

/// Runs `f` with this thread's holds and name cache. `f` must not call this again (it
/// would panic).
pub(crate) use tls::with;

/// Like [`with`], doing nothing once this thread's storage is gone (a manager dropped by
/// a thread-local destructor) or while a `with` runs.
pub(crate) use tls::try_with;
