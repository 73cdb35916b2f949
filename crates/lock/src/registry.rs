//! What all names share: settings, the clock, and the registry of waiters that deadlock
//! detection builds its wait-for graph from.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memwarden_core::Clock;

use crate::CycleStep;
use crate::holders;
use crate::name_lock::{Blocker, HoldRef, NameLock, WaitKind};
use crate::owner::Owner;
use crate::sync::Mutex;

/// A thread waiting on a name.
#[derive(Debug, Clone)]
pub(crate) struct WaitRecord {
    pub(crate) seq: u64,
    pub(crate) owner: Owner,
    pub(crate) lock: Arc<NameLock>,
    pub(crate) kind: WaitKind,
    /// Its place among the name's readers and writers (upgrades have none).
    pub(crate) ticket: Option<u64>,
    pub(crate) since: Instant,
}

/// Why one thread waits for another: a grant it holds (its token), an upgrade it makes
/// (the token of the hold upgraded), or a wait that goes first (its ticket). Tokens and
/// tickets are never reused on a name, and a waiter waits on one name, so an edge keeps
/// its identity between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Because {
    Holds(u64),
    Upgrades(u64),
    WaitsAhead(u64),
}

/// The wait-for graph at one moment: for each waiting thread, its wait and whom it waits for.
struct Graph {
    waits: HashMap<u64, WaitRecord>,
    edges: HashMap<u64, Vec<(u64, Because)>>,
}

pub(crate) struct Registry {
    pub(crate) lease: Option<Duration>,
    pub(crate) check_delay: Duration,
    pub(crate) fair: bool,
    pub(crate) clock: Arc<dyn Clock>,
    waits: Mutex<Vec<WaitRecord>>,
    /// One deadlock search at a time, so that one cycle has one victim.
    detecting: Mutex<()>,
    next_seq: AtomicU64,
    /// Bumped by [`LockManager::check_deadlocks`](crate::LockManager::check_deadlocks):
    /// a waiter that sees it change looks for a cycle at once.
    check_epoch: AtomicU64,
    /// Names that have had a leased hold since the monitor last found them free, by
    /// address: all the monitor walks. Listed and delisted under the name's mutex.
    leased: Mutex<HashMap<usize, Arc<NameLock>>>,
    /// This manager's id, never reused: what the per-thread name caches key on.
    pub(crate) id: u64,
    /// Set when the manager drops: nothing is listed after.
    closed: AtomicBool,
}

/// The next manager's id.
static NEXT_MANAGER: AtomicU64 = AtomicU64::new(1);

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("lease", &self.lease)
            .field("check_delay", &self.check_delay)
            .field("fair", &self.fair)
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub(crate) fn new(
        lease: Option<Duration>,
        check_delay: Duration,
        fair: bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Registry {
            lease,
            check_delay,
            fair,
            clock,
            waits: Mutex::new(Vec::new()),
            detecting: Mutex::new(()),
            next_seq: AtomicU64::new(1),
            check_epoch: AtomicU64::new(0),
            leased: Mutex::new(HashMap::new()),
            id: NEXT_MANAGER.fetch_add(1, Ordering::Relaxed),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn check_epoch(&self) -> u64 {
        self.check_epoch.load(Ordering::SeqCst)
    }

    /// Has every waiter look for a deadlock now (each wakes and searches once).
    pub(crate) fn check_deadlocks(&self) {
        self.check_epoch.fetch_add(1, Ordering::SeqCst);
        for record in self.waiting() {
            record.lock.wake_waiters();
        }
    }

    /// Puts `lock` on the leased list (under its mutex), unless the manager is gone
    /// (no monitor walks the list then, and the list would keep the lock alive).
    pub(crate) fn list_leased(&self, lock: Arc<NameLock>) {
        if !self.closed.load(Ordering::Acquire) {
            self.leased.lock().insert(lock.addr(), lock);
        }
    }

    /// Takes the lock at `lock` off the leased list (under its mutex).
    pub(crate) fn delist(&self, lock: usize) {
        self.leased.lock().remove(&lock);
    }

    /// Takes every lock off the leased list (the manager is going away).
    pub(crate) fn clear_leased(&self) {
        self.closed.store(true, Ordering::Release);
        // The locks are dropped after the list's mutex is let go.
        drop(std::mem::take(&mut *self.leased.lock()));
    }

    /// Expires every overdue lease on the listed names and delists those left free;
    /// returns how many leases expired and how many names were delisted.
    pub(crate) fn expire_overdue(&self) -> (usize, usize) {
        let now = self.clock.now();
        let listed: Vec<Arc<NameLock>> = self.leased.lock().values().cloned().collect();
        if listed.is_empty() {
            return (0, 0);
        }
        let holds = holders::snapshot();
        listed
            .iter()
            .map(|lock| lock.expire(now, &holds))
            .fold((0, 0), |(e, d), (n, delisted)| {
                (e + n, d + usize::from(delisted))
            })
    }

    /// How many names are on the leased list.
    pub(crate) fn leased_len(&self) -> usize {
        self.leased.lock().len()
    }

    pub(crate) fn begin_wait(
        &self,
        owner: Owner,
        lock: Arc<NameLock>,
        kind: WaitKind,
        ticket: Option<u64>,
        since: Instant,
    ) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        self.waits.lock().push(WaitRecord {
            seq,
            owner,
            lock,
            kind,
            ticket,
            since,
        });
        seq
    }

    pub(crate) fn end_wait(&self, seq: u64) {
        self.waits.lock().retain(|w| w.seq != seq);
    }

    pub(crate) fn waiting(&self) -> Vec<WaitRecord> {
        self.waits.lock().clone()
    }

    /// The cycle of waits through `me`, if there is one.
    ///
    /// Two snapshots of the graph are taken, one after the other, locking one name at a
    /// time. A cycle counts only if every edge on it is in both, with the same wait
    /// sequence numbers and the same grant tokens. Tokens and sequence numbers are never
    /// reused, so an edge seen in both snapshots existed throughout the time between
    /// them; every edge of the cycle therefore existed at the moment the first snapshot
    /// ended, and the cycle was real then. A cycle of waits never resolves by itself
    /// (each member waits for the next), so none goes undetected: the next check of any
    /// member finds it.
    ///
    /// Searches run one at a time, and a waiter that finds itself on a cycle withdraws
    /// its wait (`seq`) before the next search starts, so a cycle found by two of its
    /// members at once still costs only one of them.
    pub(crate) fn find_cycle(&self, me: u64, seq: u64) -> Option<Vec<CycleStep>> {
        let _one_at_a_time = self.detecting.lock();
        let first = self.graph();
        let path = cycle_through(&first, me)?;
        let second = self.graph();
        let confirmed = path.iter().all(|&(from, to, because)| {
            second.waits.get(&from).map(|w| w.seq) == first.waits.get(&from).map(|w| w.seq)
                && second
                    .edges
                    .get(&from)
                    .is_some_and(|e| e.contains(&(to, because)))
        });
        if !confirmed {
            return None;
        }
        self.end_wait(seq); // the victim withdraws: the cycle is broken for everyone else
        Some(
            path.iter()
                .map(|(from, _, _)| {
                    let w = &first.waits[from];
                    CycleStep {
                        thread: w.owner.name(),
                        waits_for: w.lock.name.to_string(),
                        mode: w.kind.mode(),
                    }
                })
                .collect(),
        )
    }

    /// The wait-for graph now: for each waiter, what the grant rules say keeps it
    /// waiting ([`State::blockers`](crate::name_lock::State::blockers)), read under its
    /// name's lock, one name at a time.
    fn graph(&self) -> Graph {
        let records = self.waiting();
        let holds = holders::snapshot();
        let mut edges: HashMap<u64, Vec<(u64, Because)>> = HashMap::new();
        for r in &records {
            let out = edges.entry(r.owner.id).or_default();
            let of_name: Vec<HoldRef> = holds
                .of(r.lock.addr())
                .map(|h| HoldRef {
                    owner: h.owner.id,
                    mode: h.mode,
                    token: h.token,
                })
                .collect();
            let state = r.lock.state.lock();
            let _ = state.blockers(r.kind, r.owner.id, r.ticket, self.fair, &of_name, |b| {
                let edge = match b {
                    Blocker::Hold { owner, token } => (owner, Because::Holds(token)),
                    Blocker::Upgrade { owner, token } => (owner, Because::Upgrades(token)),
                    Blocker::Queued { owner, ticket } => (owner, Because::WaitsAhead(ticket)),
                };
                if edge.0 != r.owner.id {
                    out.push(edge);
                }
                ControlFlow::Continue(())
            });
        }
        Graph {
            waits: records.into_iter().map(|r| (r.owner.id, r)).collect(),
            edges,
        }
    }
}

/// A path of edges from `me` back to `me`, depth first.
fn cycle_through(graph: &Graph, me: u64) -> Option<Vec<(u64, u64, Because)>> {
    let mut path: Vec<(u64, u64, Because)> = Vec::new();
    let mut visited = HashSet::from([me]);
    let mut stack: Vec<(u64, usize)> = vec![(me, 0)];
    while let Some((node, next)) = stack.last_mut() {
        let out = graph.edges.get(node).map_or(&[][..], Vec::as_slice);
        let Some(&(to, because)) = out.get(*next) else {
            stack.pop();
            path.pop();
            continue;
        };
        *next += 1;
        let from = *node;
        if to == me {
            path.push((from, to, because));
            return Some(path);
        }
        if graph.waits.contains_key(&to) && visited.insert(to) {
            path.push((from, to, because));
            stack.push((to, 0));
        }
    }
    None
}
