//! What all names share: settings, the clock, and the registry of waiters that deadlock
//! detection builds its wait-for graph from.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memwarden_core::Clock;

use crate::name_lock::{NameLock, WaitKind};
use crate::owner::Owner;
use crate::sync::Mutex;
use crate::{CycleStep, Mode};

/// A thread waiting on a name.
#[derive(Debug, Clone)]
pub(crate) struct WaitRecord {
    pub(crate) seq: u64,
    pub(crate) owner: Owner,
    pub(crate) lock: Arc<NameLock>,
    pub(crate) kind: WaitKind,
    pub(crate) since: Instant,
}

/// Why one thread waits for another: a grant it holds, or a wait ahead of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Because {
    Holds(u64),
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
}

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
        }
    }

    pub(crate) fn begin_wait(
        &self,
        owner: Owner,
        lock: Arc<NameLock>,
        kind: WaitKind,
        since: Instant,
    ) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        self.waits.lock().push(WaitRecord {
            seq,
            owner,
            lock,
            kind,
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
                        thread: w.owner.name.to_owned(),
                        waits_for: w.lock.name.to_string(),
                        mode: w.kind.mode(),
                    }
                })
                .collect(),
        )
    }

    fn graph(&self) -> Graph {
        let records = self.waiting();
        let mut holders: HashMap<*const NameLock, Vec<(u64, Mode, u64)>> = HashMap::new();
        for r in &records {
            holders.entry(Arc::as_ptr(&r.lock)).or_insert_with(|| {
                r.lock
                    .state
                    .lock()
                    .holds
                    .iter()
                    .map(|h| (h.owner.id, h.mode, h.token))
                    .collect()
            });
        }
        let mut edges: HashMap<u64, Vec<(u64, Because)>> = HashMap::new();
        for r in &records {
            let out = edges.entry(r.owner.id).or_default();
            for &(holder, mode, token) in &holders[&Arc::as_ptr(&r.lock)] {
                let conflicts = r.kind != WaitKind::Read || mode == Mode::Write;
                if holder != r.owner.id && conflicts {
                    out.push((holder, Because::Holds(token)));
                }
            }
            if r.kind == WaitKind::Read {
                // Writer preference: a reader also waits for the writers queued on its name.
                for w in &records {
                    // In fair mode only writers queued ahead (earlier waits) hold a reader back.
                    let ahead = !self.fair || w.seq < r.seq;
                    if Arc::ptr_eq(&w.lock, &r.lock)
                        && w.kind != WaitKind::Read
                        && w.owner.id != r.owner.id
                        && ahead
                    {
                        out.push((w.owner.id, Because::WaitsAhead(w.seq)));
                    }
                }
            }
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
