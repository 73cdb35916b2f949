//! One named lock: its holders, its waiters, and the acquire/release protocol.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::time::Duration;

use memwarden_core::Timestamp;

use crate::holders::{Grant, Holds, Scan, Slot, Snapshot};
use crate::owner::Owner;
use crate::registry::Registry;
use crate::sync::{self, AtomicU64, Condvar, Mutex, MutexGuard};
use crate::{LockError, Mode};

/// What a waiter waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    /// A shared lock.
    Read,
    /// An exclusive lock.
    Write,
    /// Turning a held shared lock into an exclusive one.
    Upgrade,
}

impl From<Mode> for WaitKind {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Read => WaitKind::Read,
            Mode::Write => WaitKind::Write,
        }
    }
}

impl WaitKind {
    pub(crate) fn mode(self) -> Mode {
        if self == WaitKind::Read {
            Mode::Read
        } else {
            Mode::Write
        }
    }
}

/// A hold as the grant rules see it: whose, and in which mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HoldRef {
    pub(crate) owner: u64,
    pub(crate) mode: Mode,
    pub(crate) token: u64,
}

/// The owner of the holds a state word summarises: no thread's.
const SOMEONE: u64 = u64::MAX;

/// Counters kept per name under its mutex, so counting costs no shared cache line.
/// Grants are not counted: every grant takes one fencing token, so they are the tokens
/// handed out less the expiries.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NameCounters {
    pub(crate) grants: u64,
    pub(crate) timeouts: u64,
    pub(crate) expiries: u64,
    pub(crate) deadlocks: u64,
    pub(crate) upgrade_conflicts: u64,
    pub(crate) would_deadlock: u64,
    pub(crate) contended: u64,
}

/// What a name's mutex guards: its waiters. Its holds are in its state word (how many,
/// of which mode) and in the holders' slots (whose; see `holders`).
#[derive(Debug, Default)]
pub(crate) struct State {
    waiters: usize,
    /// The owner waiting to upgrade its shared hold, and that hold's token, if any.
    upgrading: Option<(u64, u64)>,
    /// Readers and writers waiting, in the order they came (upgrades wait apart, in
    /// `upgrading`): fair mode serves them first come, first served; writer preference
    /// only needs to know which writers wait.
    queue: VecDeque<Queued>,
    next_ticket: u64,
    /// [`LockManager::while_unlocked`](crate::LockManager::while_unlocked) runs: every
    /// acquire waits for the mutex.
    holding_off: bool,
    pub(crate) counters: NameCounters,
}

/// A reader or writer waiting on a name.
#[derive(Debug, Clone, Copy)]
struct Queued {
    ticket: u64,
    kind: WaitKind,
    owner: u64,
}

/// What keeps a waiter from being granted, by the grant rules: the one statement of
/// them, read both by the grant (nothing blocks) and by the deadlock detector (whom the
/// waiter waits for), so that the wait-for graph cannot drift from what is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocker {
    /// A conflicting grant of another owner (the grant's token).
    Hold { owner: u64, token: u64 },
    /// Another owner's upgrade in progress (the token of the hold it upgrades): readers
    /// and writers never pass an upgrade.
    Upgrade { owner: u64, token: u64 },
    /// A waiter that goes first (its ticket): in fair mode, a writer ahead of a reader
    /// or anyone ahead of a writer; with writer preference, any writer waiting holds
    /// back a reader.
    Queued { owner: u64, ticket: u64 },
}

impl State {
    /// Calls `f` with each thing that keeps `owner` from being granted `kind` (queued
    /// with `ticket`, if it is), given the name's `holds`, until `f` breaks; the grant
    /// rules. The grant reads the holds from the state word (a summary: at most one hold
    /// of another owner); the deadlock detector from the holders' slots.
    #[inline]
    pub(crate) fn blockers(
        &self,
        kind: WaitKind,
        owner: u64,
        ticket: Option<u64>,
        fair: bool,
        holds: &[HoldRef],
        mut f: impl FnMut(Blocker) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if kind != WaitKind::Upgrade
            && let Some((upgrader, token)) = self.upgrading
        {
            f(Blocker::Upgrade {
                owner: upgrader,
                token,
            })?;
        }
        for h in holds {
            let conflicts = match kind {
                WaitKind::Read => h.mode == Mode::Write,
                WaitKind::Write => true,
                WaitKind::Upgrade => h.owner != owner,
            };
            if conflicts {
                f(Blocker::Hold {
                    owner: h.owner,
                    token: h.token,
                })?;
            }
        }
        if kind == WaitKind::Upgrade {
            return ControlFlow::Continue(());
        }
        if fair {
            // First come, first served: only readers may be ahead of a reader, nobody
            // ahead of a writer.
            for q in self.queue.iter().take_while(|q| Some(q.ticket) != ticket) {
                if kind != WaitKind::Read || q.kind != WaitKind::Read {
                    f(Blocker::Queued {
                        owner: q.owner,
                        ticket: q.ticket,
                    })?;
                }
            }
        } else if kind == WaitKind::Read {
            // Writer preference: every waiting writer holds back new readers.
            for q in self.queue.iter().filter(|q| q.kind == WaitKind::Write) {
                f(Blocker::Queued {
                    owner: q.owner,
                    ticket: q.ticket,
                })?;
            }
        }
        ControlFlow::Continue(())
    }
}

// The state word of a name: bit 0 an exclusive hold, bit 1 "take the slow path" (someone
// waits or upgrades, or `while_unlocked` runs), bit 2 "on the leased list", bits 3-15 the
// shared holds, bits 16-63 the latest fencing token.
const WRITER: u64 = 1;
const PARKED: u64 = 1 << 1;
const LISTED: u64 = 1 << 2;
const READER: u64 = 1 << 3;
const READERS: u64 = 0x1FFF << 3;
const TOKEN_SHIFT: u32 = 16;
const TOKEN: u64 = 1 << TOKEN_SHIFT;
/// Tries of the uncontended grant before an acquire sleeps (three short spins, then
/// yields of the processor), as `parking_lot`'s `SpinWait`.
const SPINS: u32 = 10;
/// The last fencing token a name can hand out (2^48 - 1).
const LAST_TOKEN: u64 = u64::MAX >> TOKEN_SHIFT;

#[inline]
fn token_of(word: u64) -> u64 {
    word >> TOKEN_SHIFT
}

/// What a hold of `mode` counts for in the word.
#[inline]
fn hold_bit(mode: Mode) -> u64 {
    match mode {
        Mode::Read => READER,
        Mode::Write => WRITER,
    }
}

#[inline]
fn readers_of(word: u64) -> u64 {
    (word & READERS) / READER
}

/// The strongest mode a state word says the name is held in.
fn mode_of(word: u64) -> Option<Mode> {
    if word & WRITER != 0 {
        Some(Mode::Write)
    } else if word & READERS != 0 {
        Some(Mode::Read)
    } else {
        None
    }
}

/// A named lock; shared by the manager's table, handles, and the slots of its holders.
///
/// Uncontended, a grant is one compare-and-swap on `word` and a release one
/// fetch-and-subtract, as in `parking_lot`; the mutex and the condition variable are taken
/// only when someone has to wait (the word's `PARKED` bit sends everyone through them),
/// and for upgrades, downgrades and expiries.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct NameLock {
    word: AtomicU64,
    /// `LISTED` when holds carry leases: a name is on the leased list before any leased
    /// hold is granted on it without the mutex.
    listed_bit: u64,
    /// The manager's id (for the per-thread name cache).
    pub(crate) manager: u64,
    /// The token before the first this name handed out.
    base: u64,
    pub(crate) name: Arc<str>,
    pub(crate) state: Mutex<State>,
    cond: Condvar,
    pub(crate) registry: Arc<Registry>,
}

impl NameLock {
    /// A lock for `name` whose tokens start at `first_token`.
    pub(crate) fn new(name: Arc<str>, registry: Arc<Registry>, first_token: u64) -> Self {
        let base = first_token.saturating_sub(1).min(LAST_TOKEN);
        NameLock {
            word: AtomicU64::new(base << TOKEN_SHIFT),
            listed_bit: if registry.lease.is_some() { LISTED } else { 0 },
            manager: registry.id,
            base,
            name,
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            registry,
        }
    }

    /// The lock's address: how slots and the leased list name it.
    #[inline]
    pub(crate) fn addr(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// The lease of a hold granted now: one clock read.
    #[inline(always)]
    fn lease(&self) -> Option<(Timestamp, Timestamp)> {
        if self.listed_bit == 0 {
            return None; // no leases: the registry is not even looked at
        }
        self.registry.lease.map(|lease| {
            let now = self.registry.clock.now();
            (now, now + lease)
        })
    }

    /// The strongest mode in which the name is held now.
    pub(crate) fn held_mode(&self) -> Option<Mode> {
        mode_of(self.word.load(Acquire))
    }

    /// The latest fencing token.
    pub(crate) fn token(&self) -> u64 {
        token_of(self.word.load(Acquire))
    }

    /// Grants `mode` without the mutex if nobody waits and nothing conflicts; the token.
    #[inline(always)]
    fn try_fast(&self, mode: Mode) -> Option<u64> {
        let (blocking, add) = match mode {
            Mode::Read => (WRITER | PARKED | LISTED, READER + TOKEN),
            Mode::Write => (WRITER | PARKED | LISTED | READERS, WRITER + TOKEN),
        };
        let mut word = self.word.load(Relaxed);
        loop {
            if word & blocking != self.listed_bit
                || word & READERS == READERS
                || token_of(word) == LAST_TOKEN
            {
                return None;
            }
            match self
                .word
                .compare_exchange_weak(word, word + add, Acquire, Relaxed)
            {
                Ok(_) => return Some(token_of(word) + 1),
                Err(now) => word = now,
            }
        }
    }

    /// Grants `mode` to this thread if nothing waits or conflicts and the thread holds
    /// nothing of this name (a re-entry takes the slow path), without the mutex: one
    /// compare-and-swap on the word and the stores of the hold into a slot.
    #[inline(always)]
    pub(crate) fn acquire_fast(self: &Arc<Self>, holds: &mut Holds, mode: Mode) -> Option<Grant> {
        let at = holds.entry_for_new(self.addr())?;
        holds.prepare(at, self);
        let token = self.try_fast(mode)?;
        Some(holds.publish(at, mode, token, self.lease()))
    }

    /// Acquires `mode` for this thread, waiting at most `timeout` (`None`: as long as it
    /// takes); records the hold in `holds`.
    #[cold]
    #[inline(never)]
    pub(crate) fn acquire(
        self: &Arc<Self>,
        holds: &mut Holds,
        mode: Mode,
        timeout: Option<Duration>,
    ) -> Result<Grant, LockError> {
        let scan = holds.scan(self.addr());
        if scan.held.is_none()
            && timeout != Some(Duration::ZERO)
            && let Some(token) = self.spin(mode)
        {
            return Ok(holds.record(scan.free, self, mode, token, self.lease()));
        }
        self.acquire_slow(holds, scan, mode, timeout)
    }

    /// Tries the uncontended grant again for a moment before the caller sleeps, as
    /// `parking_lot` does: a hold on a short critical section is often gone within
    /// microseconds, and sleeping and waking cost more than that. Gives up at once when
    /// someone already sleeps (the grant then goes through the queue).
    fn spin(&self, mode: Mode) -> Option<u64> {
        if cfg!(loom) {
            return self.try_fast(mode);
        }
        for round in 0..SPINS {
            if let Some(token) = self.try_fast(mode) {
                return Some(token);
            }
            if self.word.load(Relaxed) & PARKED != 0 {
                return None;
            }
            if round < 3 {
                for _ in 0..(2 << round) {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
        }
        self.try_fast(mode)
    }

    fn acquire_slow(
        self: &Arc<Self>,
        holds: &mut Holds,
        scan: Scan,
        mode: Mode,
        timeout: Option<Duration>,
    ) -> Result<Grant, LockError> {
        let mut st = self.state.lock();
        // Looked at again under the mutex: the lease monitor expires holds only under it,
        // so what this thread holds cannot change until the grant is recorded.
        let scan = if scan.held.is_some() {
            holds.scan(self.addr())
        } else {
            scan
        };
        if let Some(held) = scan.held {
            if held == Mode::Read && mode == Mode::Read {
                // A recursive read is safe to grant at once, past any waiter: this thread
                // already excludes writers (its hold is counted in the word, so no writer
                // holds, and the name stays on the leased list).
                let token = self.add_reader()?;
                let grant = holds.record(scan.free, self, mode, token, self.lease());
                drop(st);
                return Ok(grant);
            }
            st.counters.would_deadlock += 1;
            return Err(LockError::WouldDeadlock {
                name: self.name.to_string(),
                held,
                requested: mode,
            });
        }
        if self.listed_bit != 0 && self.word.load(Acquire) & LISTED == 0 {
            // Listed before the grant, under the mutex (the monitor delists under it too).
            self.registry.list_leased(Arc::clone(self));
            self.word.fetch_or(LISTED, AcqRel);
        }
        let token = self.wait(&mut st, holds.owner, WaitKind::from(mode), timeout, None)?;
        drop(st);
        Ok(holds.record(scan.free, self, mode, token, self.lease()))
    }

    /// One more shared hold for a thread that has one; the token.
    fn add_reader(&self) -> Result<u64, LockError> {
        let mut word = self.word.load(Relaxed);
        loop {
            self.check_room(word, WaitKind::Read)?;
            match self
                .word
                .compare_exchange_weak(word, word + READER + TOKEN, Acquire, Relaxed)
            {
                Ok(_) => return Ok(token_of(word) + 1),
                Err(now) => word = now,
            }
        }
    }

    /// An error if granting `kind` now would run out of tokens or shared holds.
    fn check_room(&self, word: u64, kind: WaitKind) -> Result<(), LockError> {
        let what = if token_of(word) == LAST_TOKEN {
            "fencing tokens"
        } else if kind == WaitKind::Read && word & READERS == READERS {
            "shared holds at once"
        } else {
            return Ok(());
        };
        Err(LockError::Exhausted {
            name: self.name.to_string(),
            what,
        })
    }

    /// Grants `kind` under the mutex if the grant rules allow it now: the token.
    fn try_grant(
        &self,
        st: &State,
        kind: WaitKind,
        owner: u64,
        ticket: Option<u64>,
    ) -> Result<Option<u64>, LockError> {
        let mut word = self.word.load(Acquire);
        loop {
            // The holds of other owners, as the word tells them: an upgrader holds one of
            // the shared holds itself.
            let others = if word & WRITER != 0 {
                Some(Mode::Write)
            } else if readers_of(word) > u64::from(kind == WaitKind::Upgrade) {
                Some(Mode::Read)
            } else {
                None
            };
            let holds = others.map(|mode| HoldRef {
                owner: SOMEONE,
                mode,
                token: 0,
            });
            let fair = self.registry.fair;
            let blocked = st
                .blockers(kind, owner, ticket, fair, holds.as_slice(), |_| {
                    ControlFlow::Break(())
                })
                .is_break();
            if blocked {
                return Ok(None);
            }
            self.check_room(word, kind)?;
            let new = match kind {
                WaitKind::Read => word + READER + TOKEN,
                WaitKind::Write => word + WRITER + TOKEN,
                WaitKind::Upgrade => word - READER + WRITER + TOKEN,
            };
            match self.word.compare_exchange(word, new, AcqRel, Acquire) {
                Ok(_) => return Ok(Some(token_of(new))),
                Err(now) => word = now,
            }
        }
    }

    /// Turns this thread's shared hold in `slot` (filled with `claim`, token `token`) into
    /// an exclusive one.
    pub(crate) fn upgrade(
        self: &Arc<Self>,
        holds: &mut Holds,
        slot: NonNull<Slot>,
        claim: u64,
        token: u64,
        timeout: Option<Duration>,
    ) -> Result<Grant, LockError> {
        let mut st = self.state.lock();
        // SAFETY: a guard's slot lives as long as the guard (see `holders`).
        if !unsafe { slot.as_ref() }.is_held(claim) {
            return Err(self.expired(token));
        }
        if st.upgrading.is_some() {
            st.counters.upgrade_conflicts += 1;
            return Err(LockError::UpgradeConflict {
                name: self.name.to_string(),
            });
        }
        if holds.scan(self.addr()).count > 1 {
            st.counters.would_deadlock += 1;
            return Err(LockError::WouldDeadlock {
                name: self.name.to_string(),
                held: Mode::Read,
                requested: Mode::Write,
            });
        }
        st.upgrading = Some((holds.owner.id, token));
        let waited = self.wait(
            &mut st,
            holds.owner,
            WaitKind::Upgrade,
            timeout,
            Some((slot, claim, token)),
        );
        st.upgrading = None;
        self.settle(&st);
        match waited {
            Ok(token) => Ok(holds.refill(slot, Mode::Write, token, self.lease())),
            Err(e) => {
                self.cond.notify_all(); // readers held back by the upgrade may go on
                Err(e)
            }
        }
    }

    /// Turns this thread's exclusive hold in `slot` into a shared one.
    pub(crate) fn downgrade(
        &self,
        holds: &mut Holds,
        slot: NonNull<Slot>,
        claim: u64,
        token: u64,
    ) -> Result<Grant, LockError> {
        let st = self.state.lock();
        // SAFETY: a guard's slot lives as long as the guard (see `holders`).
        if !unsafe { slot.as_ref() }.is_held(claim) {
            return Err(self.expired(token));
        }
        let mut word = self.word.load(Acquire);
        let token = loop {
            self.check_room(word, WaitKind::Read)?;
            let new = word - WRITER + READER + TOKEN;
            match self.word.compare_exchange(word, new, AcqRel, Acquire) {
                Ok(_) => break token_of(new),
                Err(now) => word = now,
            }
        };
        // The slot changes under the mutex too: the lease monitor, which expires holds
        // under it, must never see the old exclusive hold beside the new word.
        let grant = holds.refill(slot, Mode::Read, token, self.lease());
        if st.waiters > 0 {
            self.cond.notify_all();
        }
        drop(st);
        Ok(grant)
    }

    /// Releases the hold in `slot` filled with `claim`; `false` if it is gone (released
    /// or expired).
    #[inline(always)]
    pub(crate) fn release(&self, slot: &Slot, claim: u64, mode: Mode) -> bool {
        if !slot.vacate(claim, self.listed_bit != 0) {
            return false;
        }
        self.let_go(mode);
        true
    }

    /// Releases this thread's hold in `slot` without its guard (whose drop then does nothing).
    pub(crate) fn release_unguarded(&self, slot: &Slot, claim: u64, mode: Mode) -> bool {
        if !slot.mark_released(claim) {
            return false;
        }
        self.let_go(mode);
        true
    }

    /// Gives a hold of `mode` back in the word; wakes the waiters if any.
    #[inline(always)]
    fn let_go(&self, mode: Mode) {
        if self.word.fetch_sub(hold_bit(mode), Release) & PARKED != 0 {
            self.wake_waiters();
        }
    }

    /// Wakes this name's waiters (under its lock, so none misses it): after a release
    /// the slow path is to hear of, and how a check for deadlocks asked for now reaches
    /// them.
    #[cold]
    #[inline(never)]
    pub(crate) fn wake_waiters(&self) {
        let _st = self.state.lock();
        self.cond.notify_all();
    }

    /// Clears `PARKED` once nobody waits, upgrades or holds acquires off.
    fn settle(&self, st: &State) {
        if st.waiters == 0 && st.upgrading.is_none() && !st.holding_off {
            self.word.fetch_and(!PARKED, AcqRel);
        }
    }

    /// Runs `f` while nobody holds the name, every acquire waiting until it returns; the
    /// mode the name is held in instead, without running `f`, if it is held.
    pub(crate) fn while_unlocked<R>(&self, f: impl FnOnce() -> R) -> Result<R, Mode> {
        let mut st = self.state.lock();
        if let Err(word) = self.word.fetch_update(AcqRel, Acquire, |word| {
            mode_of(word).is_none().then_some(word | PARKED)
        }) {
            return Err(mode_of(word).expect("refused only while held"));
        }
        st.holding_off = true;
        struct Settle<'a>(&'a NameLock, MutexGuard<'a, State>);
        impl Drop for Settle<'_> {
            fn drop(&mut self) {
                self.1.holding_off = false;
                self.0.settle(&self.1);
            }
        }
        let _settle = Settle(self, st);
        Ok(f())
    }

    pub(crate) fn expired(&self, token: u64) -> LockError {
        LockError::LeaseExpired {
            name: self.name.to_string(),
            token,
        }
    }

    /// The name's counters (grants counted from its tokens).
    pub(crate) fn counters(&self) -> NameCounters {
        let st = self.state.lock();
        self.counters_of(&st)
    }

    fn counters_of(&self, st: &State) -> NameCounters {
        let mut counters = st.counters;
        counters.grants = (self.token() - self.base).saturating_sub(counters.expiries);
        counters
    }

    /// Whether nothing holds, waits for or upgrades this name and it is off the leased
    /// list; its counters and its latest token if so.
    pub(crate) fn idle_counters(&self) -> Option<(NameCounters, u64)> {
        let st = self.state.lock();
        let word = self.word.load(Acquire);
        (word & (WRITER | READERS | PARKED | LISTED) == 0 && st.waiters == 0)
            .then(|| (self.counters_of(&st), token_of(word)))
    }

    /// Expires this name's holds in `holds` whose lease ended before `now` and, when no
    /// hold is left, takes the name off the leased list; returns how many expired and
    /// whether it was delisted.
    pub(crate) fn expire(&self, now: Timestamp, holds: &Snapshot) -> (usize, bool) {
        let mut st = self.state.lock();
        let mut expired = 0;
        for hold in holds.of(self.addr()) {
            if hold.deadline.is_none_or(|d| d > now) || !holds.expire(hold) {
                continue;
            }
            // The hold goes and the token moves on, so that the stale holder's token
            // is below every later grant's.
            let bit = hold_bit(hold.mode);
            let _ = self.word.fetch_update(AcqRel, Acquire, |word| {
                let next = if token_of(word) < LAST_TOKEN {
                    TOKEN
                } else {
                    0
                };
                Some(word - bit + next)
            });
            st.counters.expiries += 1;
            expired += 1;
            let age = hold
                .since
                .map(|s| now.saturating_duration_since(s))
                .unwrap_or_default();
            log::warn!(
                "lease expired: {} lock on {:?} held by {} for {age:?}; token {} is stale, fencing token now {}",
                hold.mode,
                self.name,
                hold.owner.name(),
                hold.token,
                self.token()
            );
        }
        if expired > 0 {
            self.cond.notify_all();
        }
        // Off the leased list once nothing holds or waits for the name: a later leased
        // acquire lists it again (under this mutex) before it is granted, and a waiter was
        // listed when it began to wait.
        let waited_for = st.waiters > 0 || st.upgrading.is_some();
        let delisted = !waited_for
            && self
                .word
                .fetch_update(AcqRel, Acquire, |word| {
                    (word & LISTED != 0 && word & (WRITER | READERS) == 0).then_some(word & !LISTED)
                })
                .is_ok();
        if delisted {
            self.registry.delist(self.addr());
        }
        drop(st);
        (expired, delisted)
    }

    /// Waits until `kind` can be granted to `owner`, then grants it; returns with the
    /// state locked either way. `upgrading`: the slot, claim and token of the hold an
    /// upgrade turns exclusive.
    fn wait(
        self: &Arc<Self>,
        st: &mut MutexGuard<'_, State>,
        owner: Owner,
        kind: WaitKind,
        timeout: Option<Duration>,
        upgrading: Option<(NonNull<Slot>, u64, u64)>,
    ) -> Result<u64, LockError> {
        if let Some(token) = self.try_grant(st, kind, owner.id, None)? {
            return Ok(token);
        }
        let started = sync::now();
        if timeout == Some(Duration::ZERO) {
            st.counters.timeouts += 1;
            return Err(LockError::Timeout {
                name: self.name.to_string(),
                mode: kind.mode(),
                waited: Duration::ZERO,
            });
        }
        st.counters.contended += 1;
        // A deadline beyond what Instant can hold is no deadline.
        let deadline = timeout.and_then(|t| started.checked_add(t));
        let ticket = (kind != WaitKind::Upgrade).then(|| {
            let t = st.next_ticket;
            st.next_ticket += 1;
            st.queue.push_back(Queued {
                ticket: t,
                kind,
                owner: owner.id,
            });
            t
        });
        let seq = self
            .registry
            .begin_wait(owner, Arc::clone(self), kind, ticket, started);
        st.waiters += 1;
        // From here every acquire takes the mutex and every release that lets a hold go
        // wakes the waiters.
        self.word.fetch_or(PARKED, AcqRel);
        let check_delay = self.registry.check_delay;
        // Under loom, time does not pass on its own: only a check asked for with
        // `LockManager::check_deadlocks` runs the detector there.
        let mut next_check = if cfg!(loom) {
            None
        } else {
            Some(started.checked_add(check_delay).unwrap_or(started))
        };
        let mut checked_epoch = self.registry.check_epoch();
        let result = loop {
            if let Some((slot, claim, token)) = upgrading {
                // SAFETY: a guard's slot lives as long as the guard (see `holders`).
                if !unsafe { slot.as_ref() }.is_held(claim) {
                    break Err(self.expired(token));
                }
            }
            match self.try_grant(st, kind, owner.id, ticket) {
                Ok(Some(token)) => break Ok(token),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            let now = sync::now();
            if deadline.is_some_and(|d| now >= d) {
                st.counters.timeouts += 1;
                break Err(LockError::Timeout {
                    name: self.name.to_string(),
                    mode: kind.mode(),
                    waited: now.saturating_duration_since(started),
                });
            }
            let epoch = self.registry.check_epoch();
            if next_check.is_some_and(|c| now >= c) || epoch != checked_epoch {
                checked_epoch = epoch;
                if let Some(cycle) = sync::unlocked(st, || self.registry.find_cycle(owner.id, seq))
                {
                    st.counters.deadlocks += 1;
                    break Err(LockError::Deadlock { cycle });
                }
                if next_check.is_some() {
                    let now = sync::now();
                    next_check = Some(now.checked_add(check_delay).unwrap_or(now));
                }
                continue;
            }
            let wake = match (deadline, next_check) {
                (Some(d), Some(c)) => Some(d.min(c)),
                (d, c) => d.or(c),
            };
            sync::wait_until(&self.cond, st, wake);
        };
        st.waiters -= 1;
        if let Some(t) = ticket {
            st.queue.retain(|q| q.ticket != t);
        }
        self.registry.end_wait(seq);
        self.settle(st);
        // Leaving the queue (granted or not) may let others go: readers held back by a
        // writer that gave up, or the next in a fair queue.
        if result.is_err() || self.registry.fair {
            self.cond.notify_all();
        }
        result
    }
}
