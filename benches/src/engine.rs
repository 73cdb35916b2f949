//! The two cache engines a [`Trace`] is replayed through, and [`replay`] itself.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memwarden::core::{ByteSize, ManualClock, ResourceId, ResourceKind};
use memwarden::prioritizer::Policy;
use memwarden::tracker::{ResourceSpec, Tracker};
use memwarden::{Lifecycle, Thresholds};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use crate::Trace;

/// The value every engine holds per key: its accounted size (the bytes are not allocated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// The bytes the item is accounted at.
    pub bytes: u32,
}

/// A cache a trace can be replayed through.
pub trait Engine {
    /// Requests `id`, of `bytes`: `true` on a hit; on a miss the engine inserts it.
    fn access(&mut self, id: &ResourceId, bytes: u32) -> bool;
    /// The most bytes the engine held at once, as far as it can tell (see the engines).
    fn peak_bytes(&self) -> u64;
    /// The bytes the engine holds now.
    fn resident_bytes(&mut self) -> u64;
}

/// What one replay of a trace through one engine gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Requests that hit.
    pub hits: u64,
    /// Requests that missed (and inserted).
    pub misses: u64,
    /// Bytes of the requests that hit.
    pub hit_bytes: u64,
    /// Bytes of the requests that missed.
    pub miss_bytes: u64,
    /// Wall time of the whole replay.
    pub elapsed: Duration,
    /// The engine's [`Engine::peak_bytes`] after the replay.
    pub peak_bytes: u64,
}

impl Outcome {
    /// Hits over requests.
    pub fn hit_ratio(&self) -> f64 {
        self.hits as f64 / (self.hits + self.misses).max(1) as f64
    }

    /// Bytes of the hits over bytes requested: the share of bytes not reloaded.
    pub fn byte_hit_ratio(&self) -> f64 {
        self.hit_bytes as f64 / (self.hit_bytes + self.miss_bytes).max(1) as f64
    }

    /// Requests per second of wall time.
    pub fn ops_per_sec(&self) -> f64 {
        (self.hits + self.misses) as f64 / self.elapsed.as_secs_f64().max(1e-12)
    }
}

/// Replays every request of `trace` through `engine`, timing the whole replay.
pub fn replay(engine: &mut impl Engine, trace: &Trace) -> Outcome {
    replay_requests(engine, trace.iter())
}

/// Replays `requests` (id, bytes) through `engine`, timing the whole replay.
pub fn replay_requests<'a>(
    engine: &mut impl Engine,
    requests: impl Iterator<Item = (&'a ResourceId, u32)>,
) -> Outcome {
    let (mut hits, mut misses, mut hit_bytes, mut miss_bytes) = (0, 0, 0, 0);
    let start = Instant::now();
    for (id, bytes) in requests {
        if engine.access(id, bytes) {
            hits += 1;
            hit_bytes += u64::from(bytes);
        } else {
            misses += 1;
            miss_bytes += u64::from(bytes);
        }
    }
    let elapsed = start.elapsed();
    Outcome {
        hits,
        misses,
        hit_bytes,
        miss_bytes,
        elapsed,
        peak_bytes: engine.peak_bytes(),
    }
}

/// How the memwarden engine is set up.
#[derive(Debug, Clone)]
pub struct MemwardenConfig {
    /// The prioritizer's policy.
    pub policy: Policy,
    /// Pressure thresholds as fractions of the capacity. `make_room` frees down to the
    /// warning line; the default, 0.9999 / 1.0 with no relief, frees what the incoming
    /// item needs and no more (at most one item beyond it), as a cache does: victims are
    /// found in O(1) each, so there is nothing to amortise by freeing more per round.
    pub thresholds: Thresholds,
    /// Virtual time between two requests (the tracker runs on a [`ManualClock`], so
    /// hit ratios do not depend on the machine's speed).
    pub tick: Duration,
    /// The kind every item is registered as.
    pub kind: ResourceKind,
}

impl Default for MemwardenConfig {
    fn default() -> Self {
        MemwardenConfig {
            policy: Policy::default(),
            thresholds: Thresholds {
                warning: 0.9999,
                critical: 1.0,
                // The replay calls make_room only when an insert would pass the capacity.
                relief: 0.0,
            },
            tick: Duration::from_millis(1),
            kind: ResourceKind::TempBuffers,
        }
    }
}

/// memwarden as a cache: a [`Tracker`] and a [`Lifecycle`] (prioritizer and reaper)
/// held to a byte capacity.
///
/// A hit is a `tracker.get`. On a miss the engine calls `lifecycle.make_room(kind,
/// bytes)` when registering the item would pass the capacity, then registers it: the
/// path a governor's admission takes (the lifecycle plans with
/// [`memwarden::prioritizer::select`] over the tracker's release order, and the reaper
/// detaches the victims).
#[derive(Debug)]
pub struct MemwardenEngine {
    tracker: Arc<Tracker>,
    lifecycle: Lifecycle,
    clock: ManualClock,
    capacity: u64,
    tick: Duration,
    kind: ResourceKind,
    peak: u64,
    rounds: u64,
}

impl MemwardenEngine {
    /// An empty engine holding at most `capacity` bytes.
    pub fn new(capacity: u64, config: MemwardenConfig) -> Self {
        let clock = ManualClock::new();
        let tracker = Arc::new(Tracker::with_clock(Arc::new(clock.clone())));
        let mut lifecycle = Lifecycle::new(Arc::clone(&tracker), ByteSize::b(capacity));
        lifecycle
            .set_thresholds(config.thresholds)
            .expect("the engine's thresholds are in order");
        lifecycle.set_policy(config.policy);
        MemwardenEngine {
            tracker,
            lifecycle,
            clock,
            capacity,
            tick: config.tick,
            kind: config.kind,
            peak: 0,
            rounds: 0,
        }
    }

    /// The tracker.
    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    /// Eviction rounds (`make_room` calls) so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }
}

impl Engine for MemwardenEngine {
    fn access(&mut self, id: &ResourceId, bytes: u32) -> bool {
        self.clock.advance(self.tick);
        let found = self
            .tracker
            .get::<Payload>(id.as_str())
            .expect("the engine registers only payloads");
        if found.is_some() {
            return true;
        }
        let incoming = u64::from(bytes);
        if self.tracker.totals().bytes + incoming > self.capacity {
            self.lifecycle.make_room(&self.kind, incoming);
            self.rounds += 1;
        }
        self.tracker
            .register(
                ResourceSpec::new(id.clone(), self.kind.clone(), incoming),
                Payload { bytes },
            )
            .expect("a missed id is not registered, and there are no dependencies");
        self.peak = self.peak.max(self.tracker.totals().bytes);
        false
    }

    fn peak_bytes(&self) -> u64 {
        self.peak
    }

    fn resident_bytes(&mut self) -> u64 {
        self.tracker.totals().bytes
    }
}

/// moka's two eviction policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MokaPolicy {
    /// `EvictionPolicy::lru()`.
    Lru,
    /// `EvictionPolicy::tiny_lfu()`, moka's default: LRU plus TinyLFU admission.
    TinyLfu,
}

impl fmt::Display for MokaPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MokaPolicy::Lru => "moka-lru",
            MokaPolicy::TinyLfu => "moka-tinylfu",
        })
    }
}

/// `moka::sync::Cache` weighed by item size, with `max_capacity` the byte capacity.
///
/// moka applies inserts and evictions in batches: by itself it runs its pending tasks
/// once 64 writes or reads are queued, so its weighted size can run over the capacity in
/// between. This engine calls `run_pending_tasks` after every `sync_every` inserts and
/// records the weighted size then, so the peak it reports is the size right after
/// maintenance (what moka has to honour), and the overshoot in between is bounded by
/// `sync_every` items.
#[derive(Debug)]
pub struct MokaEngine {
    cache: Cache<ResourceId, Arc<Payload>>,
    sync_every: u64,
    inserts: u64,
    peak: u64,
}

impl MokaEngine {
    /// An empty cache of `capacity` bytes under `policy`.
    pub fn new(capacity: u64, policy: MokaPolicy, sync_every: u64) -> Self {
        let policy = match policy {
            MokaPolicy::Lru => EvictionPolicy::lru(),
            MokaPolicy::TinyLfu => EvictionPolicy::tiny_lfu(),
        };
        let cache = Cache::builder()
            .max_capacity(capacity)
            .weigher(|_: &ResourceId, v: &Arc<Payload>| v.bytes)
            .eviction_policy(policy)
            .build();
        MokaEngine {
            cache,
            sync_every: sync_every.max(1),
            inserts: 0,
            peak: 0,
        }
    }

    /// The cache.
    pub fn cache(&self) -> &Cache<ResourceId, Arc<Payload>> {
        &self.cache
    }
}

impl Engine for MokaEngine {
    fn access(&mut self, id: &ResourceId, bytes: u32) -> bool {
        if self.cache.get(id.as_str()).is_some() {
            return true;
        }
        self.cache.insert(id.clone(), Arc::new(Payload { bytes }));
        self.inserts += 1;
        if self.inserts.is_multiple_of(self.sync_every) {
            self.cache.run_pending_tasks();
            self.peak = self.peak.max(self.cache.weighted_size());
        }
        false
    }

    fn peak_bytes(&self) -> u64 {
        self.peak
    }

    fn resident_bytes(&mut self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

/// `quick_cache::sync::Cache` weighed by item size, with the byte capacity as its weight
/// capacity (as it ships: sharded, each shard holding its share of the capacity).
pub struct QuickCacheEngine {
    cache: quick_cache::sync::Cache<ResourceId, Payload, PayloadWeighter>,
    peak: u64,
}

impl fmt::Debug for QuickCacheEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuickCacheEngine")
            .field("weight", &self.cache.weight())
            .field("peak", &self.peak)
            .finish()
    }
}

/// Weighs a [`Payload`] by its bytes.
#[derive(Debug, Clone, Copy)]
pub struct PayloadWeighter;

impl quick_cache::Weighter<ResourceId, Payload> for PayloadWeighter {
    fn weight(&self, _: &ResourceId, value: &Payload) -> u64 {
        u64::from(value.bytes)
    }
}

impl QuickCacheEngine {
    /// An empty cache of `capacity` bytes for items of at most `largest` bytes over
    /// `keys` distinct keys. It is told to expect as many items as the capacity holds
    /// of the largest, and at least a quarter of the keys.
    pub fn new(capacity: u64, largest: u32, keys: usize) -> Self {
        let items = (capacity / u64::from(largest.max(1))).max(keys as u64 / 4);
        let items = usize::try_from(items).unwrap_or(usize::MAX).max(1);
        QuickCacheEngine {
            cache: quick_cache::sync::Cache::with_weighter(items, capacity, PayloadWeighter),
            peak: 0,
        }
    }
}

impl Engine for QuickCacheEngine {
    fn access(&mut self, id: &ResourceId, bytes: u32) -> bool {
        if self.cache.get(id.as_str()).is_some() {
            return true;
        }
        self.cache.insert(id.clone(), Payload { bytes });
        self.peak = self.peak.max(self.cache.weight());
        false
    }

    fn peak_bytes(&self) -> u64 {
        self.peak
    }

    fn resident_bytes(&mut self) -> u64 {
        self.cache.weight()
    }
}
