//! One named lock: its holders, its waiters, and the acquire/release protocol.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use memwarden_core::Timestamp;

use crate::owner::Owner;
use crate::registry::Registry;
use crate::sync::{self, Condvar, Mutex, MutexGuard};
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

/// One grant that has not been released or expired.
#[derive(Debug, Clone)]
pub(crate) struct Hold {
    pub(crate) owner: Owner,
    pub(crate) mode: Mode,
    pub(crate) token: u64,
    pub(crate) since: Option<Timestamp>,
    pub(crate) deadline: Option<Timestamp>,
}

/// Counters kept per name under its mutex, so counting costs no shared cache line.
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

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) holds: Vec<Hold>,
    /// The latest fencing token: the last grant's, or later if a lease expired since. A
    /// name made again after it left the table starts above every token of the names
    /// removed before, so it never hands out a token it handed out in an earlier life.
    pub(crate) token: u64,
    /// On the registry's list of names with leased holds, which the monitor walks.
    listed: bool,
    waiters: usize,
    /// The owner waiting to upgrade its shared hold, and that hold's token, if any.
    upgrading: Option<(u64, u64)>,
    /// Readers and writers waiting, in the order they came (upgrades wait apart, in
    /// `upgrading`): fair mode serves them first come, first served; writer preference
    /// only needs to know which writers wait.
    queue: VecDeque<Queued>,
    next_ticket: u64,
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
    /// The strongest mode `owner` holds here.
    #[inline]
    pub(crate) fn held_by(&self, owner: u64) -> Option<Mode> {
        self.holds
            .iter()
            .filter(|h| h.owner.id == owner)
            .map(|h| h.mode)
            .max()
    }

    /// Calls `f` with each thing that keeps `owner` from being granted `kind` (queued
    /// with `ticket`, if it is), until `f` breaks; the grant rules.
    #[inline]
    pub(crate) fn blockers(
        &self,
        kind: WaitKind,
        owner: u64,
        ticket: Option<u64>,
        fair: bool,
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
        for h in &self.holds {
            let conflicts = match kind {
                WaitKind::Read => h.mode == Mode::Write,
                WaitKind::Write => true,
                WaitKind::Upgrade => h.owner.id != owner,
            };
            if conflicts {
                f(Blocker::Hold {
                    owner: h.owner.id,
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

    #[inline]
    fn can_grant(&self, kind: WaitKind, owner: u64, ticket: Option<u64>, fair: bool) -> bool {
        // Fast answers for the common cases, then the rules.
        if self.upgrading.is_none() && self.queue.is_empty() {
            match kind {
                WaitKind::Read if self.holds.iter().all(|h| h.mode == Mode::Read) => return true,
                WaitKind::Write if self.holds.is_empty() => return true,
                _ => {}
            }
        }
        self.blockers(kind, owner, ticket, fair, |_| ControlFlow::Break(()))
            .is_continue()
    }
}

/// A named lock; shared by the manager's map, handles and guards.
#[derive(Debug)]
pub(crate) struct NameLock {
    pub(crate) name: Arc<str>,
    pub(crate) state: Mutex<State>,
    cond: Condvar,
    pub(crate) registry: Arc<Registry>,
}

impl NameLock {
    /// A lock for `name` whose tokens start above `first_token - 1`.
    pub(crate) fn new(name: Arc<str>, registry: Arc<Registry>, first_token: u64) -> Self {
        NameLock {
            name,
            state: Mutex::new(State {
                token: first_token.saturating_sub(1),
                ..State::default()
            }),
            cond: Condvar::new(),
            registry,
        }
    }

    #[inline]
    fn grant(self: &Arc<Self>, st: &mut State, owner: Owner, mode: Mode) -> u64 {
        let (since, deadline) = match self.registry.lease {
            Some(lease) => {
                let now = self.registry.clock.now();
                if !st.listed {
                    st.listed = true;
                    self.registry.list_leased(Arc::clone(self));
                }
                (Some(now), Some(now + lease))
            }
            None => (None, None),
        };
        st.token += 1;
        st.counters.grants += 1;
        st.holds.push(Hold {
            owner,
            mode,
            token: st.token,
            since,
            deadline,
        });
        st.token
    }

    /// Acquires `mode` for `owner`, waiting at most `timeout` (`None`: as long as it takes).
    #[inline]
    pub(crate) fn acquire(
        self: &Arc<Self>,
        owner: Owner,
        mode: Mode,
        timeout: Option<Duration>,
    ) -> Result<u64, LockError> {
        let mut st = self.state.lock();
        if let Some(held) = st.held_by(owner.id) {
            if held == Mode::Read && mode == Mode::Read {
                // A recursive read is safe to grant at once: this thread already excludes writers.
                return Ok(self.grant(&mut st, owner, mode));
            }
            st.counters.would_deadlock += 1;
            return Err(LockError::WouldDeadlock {
                name: self.name.to_string(),
                held,
                requested: mode,
            });
        }
        self.wait(&mut st, owner, WaitKind::from(mode), timeout, None)?;
        Ok(self.grant(&mut st, owner, mode))
    }

    /// Turns `owner`'s shared hold `token` into an exclusive one; returns the new token.
    pub(crate) fn upgrade(
        self: &Arc<Self>,
        owner: Owner,
        token: u64,
        timeout: Option<Duration>,
    ) -> Result<u64, LockError> {
        let mut st = self.state.lock();
        if !st.holds.iter().any(|h| h.token == token) {
            return Err(self.expired(token));
        }
        if st.upgrading.is_some() {
            st.counters.upgrade_conflicts += 1;
            return Err(LockError::UpgradeConflict {
                name: self.name.to_string(),
            });
        }
        if st.holds.iter().filter(|h| h.owner.id == owner.id).count() > 1 {
            st.counters.would_deadlock += 1;
            return Err(LockError::WouldDeadlock {
                name: self.name.to_string(),
                held: Mode::Read,
                requested: Mode::Write,
            });
        }
        st.upgrading = Some((owner.id, token));
        let waited = self.wait(&mut st, owner, WaitKind::Upgrade, timeout, Some(token));
        st.upgrading = None;
        if let Err(e) = waited {
            self.cond.notify_all(); // readers held back by the upgrade may go on
            return Err(e);
        }
        st.holds.retain(|h| h.token != token);
        Ok(self.grant(&mut st, owner, Mode::Write))
    }

    /// Turns `owner`'s exclusive hold `token` into a shared one; returns the new token.
    pub(crate) fn downgrade(self: &Arc<Self>, owner: Owner, token: u64) -> Result<u64, LockError> {
        let mut st = self.state.lock();
        if !st.holds.iter().any(|h| h.token == token) {
            return Err(self.expired(token));
        }
        st.holds.retain(|h| h.token != token);
        let new = self.grant(&mut st, owner, Mode::Read);
        if st.waiters > 0 {
            self.cond.notify_all();
        }
        Ok(new)
    }

    /// Releases hold `token`; `false` if it is gone (released or expired).
    #[inline]
    pub(crate) fn release(&self, token: u64) -> bool {
        let mut st = self.state.lock();
        let Some(at) = st.holds.iter().position(|h| h.token == token) else {
            return false;
        };
        st.holds.swap_remove(at);
        if st.waiters > 0 {
            self.cond.notify_all();
        }
        true
    }

    /// Releases hold `token` only if `owner` holds it.
    pub(crate) fn release_owned(&self, owner: u64, token: u64) -> Result<(), LockError> {
        let mut st = self.state.lock();
        let Some(at) = st
            .holds
            .iter()
            .position(|h| h.token == token && h.owner.id == owner)
        else {
            return Err(LockError::NotOwner {
                name: self.name.to_string(),
                token,
            });
        };
        st.holds.swap_remove(at);
        if st.waiters > 0 {
            self.cond.notify_all();
        }
        Ok(())
    }

    pub(crate) fn is_valid(&self, token: u64) -> bool {
        self.state.lock().holds.iter().any(|h| h.token == token)
    }

    /// Wakes this name's waiters (under its lock, so none misses it): how a check for
    /// deadlocks asked for now reaches them.
    pub(crate) fn wake_waiters(&self) {
        let _st = self.state.lock();
        self.cond.notify_all();
    }

    pub(crate) fn expired(&self, token: u64) -> LockError {
        LockError::LeaseExpired {
            name: self.name.to_string(),
            token,
        }
    }

    /// Whether nothing holds, waits for or upgrades this name; its counters and its
    /// latest token if so.
    pub(crate) fn idle_counters(&self) -> Option<(NameCounters, u64)> {
        let st = self.state.lock();
        (st.holds.is_empty() && st.waiters == 0 && st.upgrading.is_none() && !st.listed)
            .then_some((st.counters, st.token))
    }

    /// Expires overdue holds ([`expire`](Self::expire)) and, when no hold is left, takes
    /// the name off the leased list (the caller removes its entry); returns how many
    /// expired and whether to delist.
    pub(crate) fn expire_and_delist(&self, now: Timestamp) -> (usize, bool) {
        let expired = self.expire(now);
        let mut st = self.state.lock();
        let delist = st.listed && st.holds.is_empty();
        if delist {
            st.listed = false;
        }
        (expired, delist)
    }

    /// Expires every hold whose lease ended before `now`; returns how many.
    pub(crate) fn expire(&self, now: Timestamp) -> usize {
        let mut st = self.state.lock();
        let mut expired = 0;
        let mut i = 0;
        while i < st.holds.len() {
            if st.holds[i].deadline.is_some_and(|d| d <= now) {
                let hold = st.holds.swap_remove(i);
                st.token += 1;
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
                    st.token
                );
            } else {
                i += 1;
            }
        }
        if expired > 0 {
            self.cond.notify_all();
        }
        expired
    }

    /// Waits until `kind` can be granted to `owner`; returns with the state locked either way.
    fn wait(
        self: &Arc<Self>,
        st: &mut MutexGuard<'_, State>,
        owner: Owner,
        kind: WaitKind,
        timeout: Option<Duration>,
        upgrading: Option<u64>,
    ) -> Result<(), LockError> {
        let fair = self.registry.fair;
        if st.can_grant(kind, owner.id, None, fair) {
            return Ok(());
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
            if upgrading.is_some_and(|token| !st.holds.iter().any(|h| h.token == token)) {
                break Err(self.expired(upgrading.unwrap_or_default()));
            }
            if st.can_grant(kind, owner.id, ticket, fair) {
                break Ok(());
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
        // Leaving the queue (granted or not) may let others go: readers held back by a
        // writer that gave up, or the next in a fair queue.
        if result.is_err() || fair {
            self.cond.notify_all();
        }
        result
    }
}
