//! [`Tracker`]: the sharded registry itself.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use memwarden_core::{Clock, Priority, ResourceId, ResourceKind, SystemClock, Timestamp};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::order::{self, Order, Slot};
use crate::{Candidate, CandidateSet, KindPolicy, ResourceSpec, Shrink, Totals, TrackerError};

/// Number of independently locked shards; a power of two.
const SHARDS: usize = 16;
/// Access records a shard buffers before it tries to apply them to the release order.
const READS_DRAIN: usize = 64;
/// Access records a shard buffers at most; more are dropped until the next drain.
const READS_MAX: usize = 1024;

type AnyValue = Arc<dyn Any + Send + Sync>;

pub(crate) struct Entry {
    pub(crate) kind: ResourceKind,
    bytes: u64,
    value: AnyValue,
    shrink: Option<Arc<dyn Shrink>>,
    registered_at: Timestamp,
    pub(crate) last_access: AtomicU64,
    accesses: AtomicU64,
    ttl: Option<Duration>,
    max_idle: Option<Duration>,
    priority: Option<Priority>,
    pinned: AtomicBool,
    depends_on: Arc<[ResourceId]>,
    group: Option<Arc<str>>,
    /// Its node in the release order, and the node's generation.
    pub(crate) slot: Slot,
    generation: u32,
}

impl Entry {
    fn touch(&self, now: Timestamp) {
        self.last_access
            .fetch_max(now.as_nanos(), Ordering::Relaxed);
        self.accesses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn candidate(&self, id: &ResourceId, policy: &KindPolicy) -> Candidate {
        Candidate {
            id: id.clone(),
            kind: self.kind.clone(),
            bytes: self.bytes,
            kind_priority: policy.priority,
            priority: self.priority,
            pinned: self.pinned.load(Ordering::Relaxed),
            registered_at: self.registered_at,
            last_access: Timestamp::from_nanos(self.last_access.load(Ordering::Relaxed)),
            accesses: self.accesses.load(Ordering::Relaxed),
            ttl: self.ttl.or(policy.ttl),
            max_idle: self.max_idle.or(policy.max_idle),
            depends_on: Arc::clone(&self.depends_on),
            group: self.group.clone(),
        }
    }
}

/// One lock's worth of the registry, padded so that shards do not share cache lines.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Shard {
    pub(crate) map: RwLock<HashMap<ResourceId, Entry>>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Accesses not yet applied to the release order, as `slot << 32 | generation`:
    /// the striped buffer that keeps lookups off the order's lock.
    reads: Mutex<Vec<u64>>,
}

/// Bookkeeping that changes only on register, detach and resize; one lock, always taken
/// before any shard lock.
#[derive(Default)]
pub(crate) struct Books {
    /// For each resource, the live resources that depend on it.
    pub(crate) dependents: HashMap<ResourceId, Vec<ResourceId>>,
    kinds: HashMap<ResourceKind, Totals>,
    total: Totals,
    registered: u64,
    detached: u64,
    /// The release order of everything registered.
    pub(crate) order: Order,
    /// The members of each mutual-exclusion group.
    pub(crate) groups: HashMap<Arc<str>, Vec<ResourceId>>,
}

impl Books {
    /// Moves the totals of `kind` and the grand total by `count` resources, `added` bytes
    /// in and `removed` bytes out (unsigned both ways: sizes use all 64 bits).
    fn add(&mut self, kind: &ResourceKind, count: i64, added: u64, removed: u64) {
        for totals in [self.kinds.entry(kind.clone()).or_default(), &mut self.total] {
            totals.count = totals.count.saturating_add_signed(count);
            totals.bytes = totals.bytes.saturating_add(added).saturating_sub(removed);
        }
    }
}

/// A resource the tracker no longer holds, handed to whoever releases it
/// ([`release::detach`](crate::release::detach)).
///
/// Dropping a `Detached` drops the registry's reference to the value; the memory is freed
/// when the last clone held elsewhere drops.
#[non_exhaustive]
pub struct Detached {
    /// The resource's id.
    pub id: ResourceId,
    /// Its kind.
    pub kind: ResourceKind,
    /// The bytes it was accounted at.
    pub bytes: u64,
    /// The value itself.
    pub value: Arc<dyn Any + Send + Sync>,
    /// Its partial-release capability, if it was registered with one.
    pub shrink: Option<Arc<dyn Shrink>>,
    /// How many times it was accessed.
    pub accesses: u64,
}

impl fmt::Debug for Detached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detached")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("bytes", &self.bytes)
            .field("accesses", &self.accesses)
            .field("shrinkable", &self.shrink.is_some())
            .finish_non_exhaustive()
    }
}

/// Counters of the tracker's activity since it was made, from [`Tracker::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TrackerStats {
    /// Resources registered.
    pub registered: u64,
    /// Resources detached for release.
    pub detached: u64,
    /// `get`/`touch` calls that found their resource.
    pub hits: u64,
    /// `get`/`touch` calls that did not.
    pub misses: u64,
    /// What is registered now.
    pub live: Totals,
}

/// The resource registry. Thread-safe; share it as an `Arc<Tracker>`.
pub struct Tracker {
    pub(crate) shards: Box<[Shard]>,
    clock: Arc<dyn Clock>,
    pub(crate) policies: RwLock<HashMap<ResourceKind, KindPolicy>>,
    pub(crate) books: Mutex<Books>,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("clock", &self.clock)
            .field("live", &self.totals())
            .finish_non_exhaustive()
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

/// A fixed, cheap hasher for choosing a shard (the maps inside use std's keyed hasher).
#[derive(Default)]
struct ShardHasher(u64);

impl Hasher for ShardHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

#[derive(Default)]
struct ShardHasherBuilder;

/// Applies queued access records (`slot << 32 | generation`) to the release order.
fn apply_reads(order: &mut Order, records: impl Iterator<Item = u64>) {
    for record in records {
        order.access((record >> 32) as Slot, record as u32);
    }
}

impl BuildHasher for ShardHasherBuilder {
    type Hasher = ShardHasher;
    fn build_hasher(&self) -> ShardHasher {
        ShardHasher::default()
    }
}

impl Tracker {
    /// A tracker on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock::new()))
    }

    /// A tracker on the given clock (a [`memwarden_core::ManualClock`] in tests).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Tracker {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            clock,
            policies: RwLock::new(HashMap::new()),
            books: Mutex::new(Books::default()),
        }
    }

    /// The clock the tracker reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The current time on the tracker's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Sets the policy for every resource of `kind` that does not override it.
    ///
    /// Resources of the kind already registered move to the new priority's release order
    /// and get the new limits' deadlines (one pass over the registry: a configuration
    /// step, not something to do per request).
    pub fn set_kind_policy(&self, kind: ResourceKind, policy: KindPolicy) {
        let mut books = self.books.lock();
        self.policies.write().insert(kind.clone(), policy);
        for slot in books.order.slots_of(&kind) {
            let id = books.order.id(slot).clone();
            let map = self.shard(id.as_str()).map.read();
            let Some(entry) = map.get(&id) else {
                continue;
            };
            if entry.priority.is_none() {
                books.order.set_priority(slot, policy.priority);
            }
            let deadline = order::deadline_of(
                entry.registered_at,
                Timestamp::from_nanos(entry.last_access.load(Ordering::Relaxed)),
                entry.ttl.or(policy.ttl),
                entry.max_idle.or(policy.max_idle),
            );
            books.order.set_deadline(slot, deadline);
        }
    }

    /// The policy of `kind` ([`KindPolicy::default_for`] the kind if none was set).
    pub fn kind_policy(&self, kind: &ResourceKind) -> KindPolicy {
        self.policies
            .read()
            .get(kind)
            .copied()
            .unwrap_or_else(|| KindPolicy::default_for(kind))
    }

    pub(crate) fn shard(&self, id: &str) -> &Shard {
        &self.shards[ShardHasherBuilder.hash_one(id) as usize & (SHARDS - 1)]
    }

    /// Registers `value` under `spec`, returning the shared handle the caller keeps using.
    pub fn register<T: Send + Sync + 'static>(
        &self,
        spec: ResourceSpec,
        value: T,
    ) -> Result<Arc<T>, TrackerError> {
        let value = Arc::new(value);
        self.insert(spec, Arc::clone(&value) as AnyValue, None)?;
        Ok(value)
    }

    /// Registers a value that is already shared.
    pub fn register_arc<T: Send + Sync + 'static>(
        &self,
        spec: ResourceSpec,
        value: Arc<T>,
    ) -> Result<(), TrackerError> {
        self.insert(spec, value as AnyValue, None)
    }

    /// Registers a value that can release part of itself (see [`Shrink`]).
    pub fn register_shrinkable<T: Shrink + 'static>(
        &self,
        spec: ResourceSpec,
        value: T,
    ) -> Result<Arc<T>, TrackerError> {
        let value = Arc::new(value);
        self.insert(
            spec,
            Arc::clone(&value) as AnyValue,
            Some(Arc::clone(&value) as Arc<dyn Shrink>),
        )?;
        Ok(value)
    }

    fn insert(
        &self,
        spec: ResourceSpec,
        value: AnyValue,
        shrink: Option<Arc<dyn Shrink>>,
    ) -> Result<(), TrackerError> {
        let now = self.clock.now();
        let mut books = self.books.lock();
        for dependency in &spec.depends_on {
            if !self
                .shard(dependency.as_str())
                .map
                .read()
                .contains_key(dependency)
            {
                return Err(TrackerError::UnknownDependency {
                    id: spec.id,
                    dependency: dependency.clone(),
                });
            }
        }
        let policy = self.kind_policy(&spec.kind);
        let mut map = self.shard(spec.id.as_str()).map.write();
        if map.contains_key(&spec.id) {
            return Err(TrackerError::AlreadyRegistered { id: spec.id });
        }
        for dependency in &spec.depends_on {
            books
                .dependents
                .entry(dependency.clone())
                .or_default()
                .push(spec.id.clone());
        }
        if let Some(group) = &spec.group {
            books
                .groups
                .entry(Arc::clone(group))
                .or_default()
                .push(spec.id.clone());
        }
        books.add(&spec.kind, 1, spec.bytes, 0);
        books.registered += 1;
        let deadline = order::deadline_of(
            now,
            now,
            spec.ttl.or(policy.ttl),
            spec.max_idle.or(policy.max_idle),
        );
        let (slot, generation) = books.order.insert(
            spec.id.clone(),
            spec.kind.clone(),
            spec.bytes,
            spec.priority.unwrap_or(policy.priority),
            deadline,
            spec.pinned,
        );
        let entry = Entry {
            kind: spec.kind,
            bytes: spec.bytes,
            value,
            shrink,
            registered_at: now,
            last_access: AtomicU64::new(now.as_nanos()),
            accesses: AtomicU64::new(1),
            ttl: spec.ttl,
            max_idle: spec.max_idle,
            priority: spec.priority,
            pinned: AtomicBool::new(spec.pinned),
            depends_on: spec.depends_on.into(),
            group: spec.group,
            slot,
            generation,
        };
        map.insert(spec.id, entry);
        Ok(())
    }

    /// Queues an access to the release order: lossy when another thread holds the
    /// shard's buffer or the buffer is full, applied in batches when the order's lock is
    /// free, and always before a release is chosen.
    fn record(&self, shard: &Shard, slot: Slot, generation: u32) {
        let Some(mut reads) = shard.reads.try_lock() else {
            return;
        };
        if reads.len() < READS_MAX {
            reads.push(u64::from(slot) << 32 | u64::from(generation));
        }
        if reads.len() >= READS_DRAIN
            && let Some(mut books) = self.books.try_lock()
        {
            apply_reads(&mut books.order, reads.drain(..));
        }
    }

    /// Applies every shard's queued accesses to the release order.
    pub(crate) fn drain_reads(&self, books: &mut Books) {
        for shard in &self.shards {
            apply_reads(&mut books.order, shard.reads.lock().drain(..));
        }
    }

    /// The value of `id` as any type, counting an access; `None` if not registered.
    pub fn get_any(&self, id: &str) -> Option<Arc<dyn Any + Send + Sync>> {
        let now = self.clock.now();
        let shard = self.shard(id);
        let map = shard.map.read();
        match map.get(id) {
            Some(entry) => {
                entry.touch(now);
                shard.hits.fetch_add(1, Ordering::Relaxed);
                let (value, slot, generation) =
                    (Arc::clone(&entry.value), entry.slot, entry.generation);
                drop(map);
                self.record(shard, slot, generation);
                Some(value)
            }
            None => {
                shard.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The value of `id`, counting an access.
    ///
    /// `Ok(None)` if it is not registered (never was, or was released); an error if it
    /// holds another type than `T`.
    pub fn get<T: Send + Sync + 'static>(&self, id: &str) -> Result<Option<Arc<T>>, TrackerError> {
        match self.get_any(id) {
            None => Ok(None),
            Some(value) => {
                value
                    .downcast::<T>()
                    .map(Some)
                    .map_err(|_| TrackerError::TypeMismatch {
                        id: id.into(),
                        expected: std::any::type_name::<T>(),
                    })
            }
        }
    }

    /// Counts an access to `id` without returning it; `false` if it is not registered.
    pub fn touch(&self, id: &str) -> bool {
        let now = self.clock.now();
        let shard = self.shard(id);
        let found = shard.map.read().get(id).map(|entry| {
            entry.touch(now);
            (entry.slot, entry.generation)
        });
        match found {
            Some((slot, generation)) => {
                shard.hits.fetch_add(1, Ordering::Relaxed);
                self.record(shard, slot, generation);
                true
            }
            None => {
                shard.misses.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The value of `id` without counting an access (for snapshots and diagnostics).
    pub fn peek_any(&self, id: &str) -> Option<Arc<dyn Any + Send + Sync>> {
        self.shard(id)
            .map
            .read()
            .get(id)
            .map(|entry| Arc::clone(&entry.value))
    }

    /// Whether `id` is registered (not counted as an access).
    pub fn contains(&self, id: &str) -> bool {
        self.shard(id).map.read().contains_key(id)
    }

    /// `id`'s record now, as a release candidate (not counted as an access).
    pub fn info(&self, id: &str) -> Option<Candidate> {
        let map = self.shard(id).map.read();
        let (key, entry) = map.get_key_value(id)?;
        Some(entry.candidate(key, &self.kind_policy(&entry.kind)))
    }

    /// Pins or unpins `id`. A pinned resource is never detached.
    pub fn set_pinned(&self, id: &str, pinned: bool) -> Result<(), TrackerError> {
        let mut books = self.books.lock();
        let map = self.shard(id).map.read();
        let entry = map
            .get(id)
            .ok_or_else(|| TrackerError::NotFound { id: id.into() })?;
        entry.pinned.store(pinned, Ordering::Relaxed);
        books.order.set_queued(entry.slot, !pinned);
        Ok(())
    }

    /// Changes the bytes `id` is accounted at (after a partial release); returns the old size.
    pub fn set_bytes(&self, id: &str, bytes: u64) -> Result<u64, TrackerError> {
        let mut books = self.books.lock();
        let mut map = self.shard(id).map.write();
        let entry = map
            .get_mut(id)
            .ok_or_else(|| TrackerError::NotFound { id: id.into() })?;
        let old = std::mem::replace(&mut entry.bytes, bytes);
        books.add(&entry.kind, 0, bytes, old);
        books.order.set_bytes(entry.slot, bytes);
        Ok(old)
    }

    /// Lowers the bytes `id` is accounted at by `freed` (saturating at zero), as one step
    /// under the lock, so that concurrent partial releases add up; returns the new size.
    pub fn release_bytes(&self, id: &str, freed: u64) -> Result<u64, TrackerError> {
        let mut books = self.books.lock();
        let mut map = self.shard(id).map.write();
        let entry = map
            .get_mut(id)
            .ok_or_else(|| TrackerError::NotFound { id: id.into() })?;
        let freed = freed.min(entry.bytes);
        entry.bytes -= freed;
        books.add(&entry.kind, 0, 0, freed);
        books.order.set_bytes(entry.slot, entry.bytes);
        Ok(entry.bytes)
    }

    /// The partial-release capability of `id`, if it was registered with one.
    pub fn shrinker(&self, id: &str) -> Option<Arc<dyn Shrink>> {
        self.shard(id).map.read().get(id)?.shrink.clone()
    }

    /// Removes `id` from the registry and hands it over for release; see
    /// [`release::detach`](crate::release::detach).
    ///
    /// Refuses a pinned resource and one that live resources depend on.
    pub(crate) fn detach_entry(
        &self,
        id: &str,
        expected: Option<&AnyValue>,
    ) -> Result<Detached, TrackerError> {
        let mut books = self.books.lock();
        let mut map = self.shard(id).map.write();
        let entry = map
            .get(id)
            .ok_or_else(|| TrackerError::NotFound { id: id.into() })?;
        // The data addresses only: the same allocation behind two `Arc<dyn Any>`s may
        // carry vtable pointers from different codegen units.
        if expected.is_some_and(|v| !std::ptr::addr_eq(Arc::as_ptr(v), Arc::as_ptr(&entry.value))) {
            return Err(TrackerError::Replaced { id: id.into() });
        }
        if entry.pinned.load(Ordering::Relaxed) {
            return Err(TrackerError::Pinned { id: id.into() });
        }
        if let Some(dependents) = books.dependents.get(id).filter(|d| !d.is_empty()) {
            return Err(TrackerError::HasDependents {
                id: id.into(),
                dependents: dependents.clone(),
            });
        }
        let (id, entry) = map
            .remove_entry(id)
            .expect("the entry was found under the same write lock");
        drop(map);
        books.dependents.remove(&id);
        books.order.remove(entry.slot);
        if let Some(group) = &entry.group
            && let Some(members) = books.groups.get_mut(group)
        {
            members.retain(|m| *m != id);
            if members.is_empty() {
                books.groups.remove(group);
            }
        }
        for dependency in entry.depends_on.iter() {
            if let Some(list) = books.dependents.get_mut(dependency) {
                list.retain(|d| *d != id);
            }
        }
        books.add(&entry.kind, -1, 0, entry.bytes);
        books.detached += 1;
        Ok(Detached {
            id,
            kind: entry.kind,
            bytes: entry.bytes,
            value: entry.value,
            shrink: entry.shrink,
            accesses: entry.accesses.into_inner(),
        })
    }

    /// Every registered resource as a release candidate, at the clock's current time.
    pub fn candidates(&self) -> CandidateSet {
        self.candidates_at(self.clock.now())
    }

    /// Every registered resource as a release candidate, judged at `now`.
    pub fn candidates_at(&self, now: Timestamp) -> CandidateSet {
        let mut policies = self.policies.read().clone();
        for kind in ResourceKind::BUILTIN {
            policies
                .entry(kind.clone())
                .or_insert_with(|| KindPolicy::default_for(&kind));
        }
        let custom = KindPolicy::default();
        let mut candidates = Vec::with_capacity(self.books.lock().total.count as usize);
        for shard in &self.shards {
            let map = shard.map.read();
            candidates.extend(map.iter().map(|(id, entry)| {
                entry.candidate(id, policies.get(&entry.kind).unwrap_or(&custom))
            }));
        }
        CandidateSet { now, candidates }
    }

    /// Ids of resources past their TTL or idle limit at the clock's current time, sorted.
    ///
    /// Found through the deadline set, not by a scan of the registry.
    pub fn expired(&self) -> Vec<ResourceId> {
        let mut ids: Vec<ResourceId> = self.select().due().into_iter().map(|c| c.id).collect();
        ids.sort();
        ids
    }

    /// Count and bytes of everything registered.
    pub fn totals(&self) -> Totals {
        self.books.lock().total
    }

    /// Count and bytes per kind (kinds with nothing registered are left out).
    pub fn kind_totals(&self) -> BTreeMap<ResourceKind, Totals> {
        self.books
            .lock()
            .kinds
            .iter()
            .filter(|(_, t)| t.count > 0)
            .map(|(k, t)| (k.clone(), *t))
            .collect()
    }

    /// Count and bytes of one kind.
    pub fn kind_total(&self, kind: &ResourceKind) -> Totals {
        self.books
            .lock()
            .kinds
            .get(kind)
            .copied()
            .unwrap_or_default()
    }

    /// Number of registered resources.
    pub fn len(&self) -> usize {
        self.totals().count as usize
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Activity counters.
    pub fn stats(&self) -> TrackerStats {
        let books = self.books.lock();
        let (hits, misses) = self.shards.iter().fold((0, 0), |(h, m), s| {
            (
                h + s.hits.load(Ordering::Relaxed),
                m + s.misses.load(Ordering::Relaxed),
            )
        });
        TrackerStats {
            registered: books.registered,
            detached: books.detached,
            hits,
            misses,
            live: books.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread;

    use memwarden_core::{Priority, ResourceKind};

    use crate::{ResourceSpec, Tracker, release};

    /// Threads registering, reading, pinning, resizing, releasing and walking the release
    /// order at once leave the order whole and in step with the registry.
    #[test]
    fn the_release_order_stays_whole_under_concurrent_use() {
        let tracker = Arc::new(Tracker::new());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let tracker = Arc::clone(&tracker);
                thread::spawn(move || {
                    for i in 0..1500u64 {
                        let id = format!("t{t}-{i}");
                        let kind = ResourceKind::BUILTIN[(i % 6) as usize].clone();
                        let mut spec = ResourceSpec::new(id.as_str(), kind, 1 + i % 97);
                        if i % 11 == 0 {
                            spec = spec.priority(Priority::new(2).expect("in range"));
                        }
                        tracker.register(spec, i).expect("fresh id");
                        for back in [1, 7, 31] {
                            let other = format!("t{}-{}", (t + back) % 4, i.saturating_sub(back));
                            let _ = tracker.get::<u64>(&other);
                            tracker.touch(&other);
                        }
                        match i % 7 {
                            0 => {
                                let _ = release::detach(&tracker, &id);
                            }
                            1 => {
                                let _ = tracker.set_pinned(&id, true);
                            }
                            2 => {
                                let _ = tracker.set_bytes(&format!("t{t}-{}", i / 2), i);
                            }
                            3 => {
                                let mut selection = tracker.select();
                                let mut victims = Vec::new();
                                while let Some(pick) = selection.next(Priority::MAX, None) {
                                    victims.push(pick.candidate.id);
                                    if victims.len() == 3 {
                                        break;
                                    }
                                }
                                drop(selection);
                                for victim in victims {
                                    let _ = release::detach(&tracker, victim.as_str());
                                }
                            }
                            _ => {}
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no thread panicked");
        }
        let books = tracker.books.lock();
        books.order.check();
        assert_eq!(books.order.len() as u64, books.total.count);
        for shard in &tracker.shards {
            for (id, entry) in shard.map.read().iter() {
                assert_eq!(books.order.id(entry.slot), id);
            }
        }
    }
}
