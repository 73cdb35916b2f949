//! [`Lifecycle`]: tracker, prioritizer and reaper driven against a byte budget.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memwarden_core::{ByteSize, ResourceId, ResourceKind};
use memwarden_prioritizer::{Policy, Request, Urgency, select};
use memwarden_reaper::{Reaper, ReleaseReport};
use memwarden_tracker::Tracker;
use parking_lot::{Mutex, RwLock};

/// Where pressure starts, as fractions of the budget.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Thresholds {
    /// Above this fraction the urgency is [`Urgency::Medium`].
    pub warning: f64,
    /// Above this fraction the urgency is [`Urgency::High`].
    pub critical: f64,
    /// How far below the warning line a release frees, as a fraction of the budget: the
    /// hysteresis that keeps a process hovering at the line from planning on every
    /// allocation (0.05 by default; 0 frees exactly to the line).
    pub relief: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warning: 0.75,
            critical: 0.90,
            relief: 0.05,
        }
    }
}

impl Thresholds {
    /// The thresholds a loaded config sets: its warning and critical fractions, with the
    /// default relief.
    pub fn from_config(monitor: &crate::config::MonitorConfig) -> Self {
        Thresholds {
            warning: monitor.warning_fraction,
            critical: monitor.critical_fraction,
            ..Thresholds::default()
        }
    }

    /// Checks `0 < warning < critical <= 1` and a relief in `[0, warning)`.
    pub fn validate(&self) -> Result<(), SettingError> {
        if !(self.warning > 0.0 && self.warning < self.critical && self.critical <= 1.0) {
            return Err(SettingError::Thresholds {
                warning: self.warning,
                critical: self.critical,
            });
        }
        if !(self.relief >= 0.0 && self.relief < self.warning) {
            return Err(SettingError::Relief(self.relief));
        }
        Ok(())
    }

    /// The line a release frees down to: [`relief`](Self::relief) below the warning line.
    pub fn relief_line(&self, budget: u64) -> u64 {
        (budget as f64 * (self.warning - self.relief).max(0.0)) as u64
    }

    /// The urgency for `used` bytes against `budget`: low up to the warning line, medium
    /// up to the critical line, high up to the budget, critical above it.
    pub fn urgency(&self, used: u64, budget: u64) -> Urgency {
        let fraction = used as f64 / budget.max(1) as f64;
        if fraction <= self.warning {
            Urgency::Low
        } else if fraction <= self.critical {
            Urgency::Medium
        } else if used <= budget {
            Urgency::High
        } else {
            Urgency::Critical
        }
    }
}

/// A budget or thresholds the lifecycle or the governor refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingError {
    /// A budget of zero bytes.
    #[error("the budget must be greater than zero")]
    ZeroBudget,
    /// Thresholds out of order or out of range.
    #[error(
        "thresholds need 0 < warning < critical <= 1, not warning {warning} and critical {critical}"
    )]
    Thresholds {
        /// The warning fraction given.
        warning: f64,
        /// The critical fraction given.
        critical: f64,
    },
    /// A relief outside `[0, warning)`.
    #[error("the relief must be in [0, warning), not {0}")]
    Relief(f64),
    /// A monitor tick of zero.
    #[error("the tick must be greater than zero")]
    ZeroTick,
}

/// The budget and the thresholds, read together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limits {
    pub(crate) budget: u64,
    pub(crate) thresholds: Thresholds,
}

/// What [`Lifecycle::relieve_from`] did.
pub(crate) struct Relief {
    /// Everything released, both passes together.
    pub(crate) report: ReleaseReport,
    /// The urgency of the last plan.
    pub(crate) level: Urgency,
    /// The usage after the last pass, as `measure` gave it.
    pub(crate) used: u64,
}

/// The runtime loop's one step, as a library: keeps the tracked bytes under a budget.
///
/// Before a new resource is registered, [`Lifecycle::make_room`] brings the new
/// resource's kind under its cap and, when the total would pass the warning line, frees
/// down to [`Thresholds::relief`] of the budget below it (so that the next registrations do not
/// each trigger a plan): first at the urgency the projected usage calls for, then, if the budget
/// itself would still be exceeded, at [`Urgency::Critical`]. It costs one read of the
/// totals when there is room, and O(victims) per plan when there is not (victims are
/// walked off the tracker's release order; nothing scans the registry).
/// [`Lifecycle::sweep`] releases what is due (past TTL or idle limit); call it on a timer.
/// Pinned and protected resources are never released, so a budget smaller than what is
/// pinned cannot be held; `make_room` then reports what it could free.
///
/// The governor (which watches the real RSS) drives the same plan-and-execute step.
#[derive(Debug)]
pub struct Lifecycle {
    tracker: Arc<Tracker>,
    reaper: Reaper,
    policy: Policy,
    /// The one budget: the governor reads it too.
    limits: RwLock<Limits>,
    caps: HashMap<ResourceKind, u64>,
    locks: Option<Arc<memwarden_lock::LockManager>>,
    /// Kinds snapshotted before release once a store is set.
    snapshot_kinds: Vec<ResourceKind>,
    /// Saves and restores snapshots once a store is set; the reaper saves through it.
    snapshotter: parking_lot::RwLock<Option<Arc<memwarden_snapshot::Snapshotter>>>,
    restores: AtomicU64,
    /// Victims planned and not yet released, by any thread: left out of other plans, and
    /// their bytes counted as on their way out. Held only to plan, never while a handler
    /// runs.
    releasing: Mutex<InFlight>,
    /// Bytes admitted by [`Lifecycle::admit`] whose guards are still alive.
    reserved: Arc<AtomicU64>,
    /// How a governor over this lifecycle admits bytes already reserved (against the
    /// RSS as well as the tracked bytes); set while it runs.
    governed: RwLock<Option<RssAdmission>>,
}

/// Makes room for bytes of a kind already reserved; what it released.
type AdmitStep = dyn Fn(&ResourceKind, u64) -> ReleaseReport + Send + Sync;

/// A governor's admission step, for bytes already reserved.
#[derive(Clone)]
pub(crate) struct RssAdmission(pub(crate) Arc<AdmitStep>);

impl std::fmt::Debug for RssAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RssAdmission")
    }
}

/// The victims of the plans being executed now.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    victims: HashMap<ResourceId, (ResourceKind, u64)>,
}

impl InFlight {
    /// The bytes of the victims in flight that `tracker` still holds (those detached
    /// already are out of its totals), of `kind` or of every kind.
    fn pending(&self, tracker: &Tracker, kind: Option<&ResourceKind>) -> u64 {
        self.victims
            .iter()
            .filter(|(id, (k, _))| {
                kind.is_none_or(|kind| k == kind) && tracker.contains(id.as_str())
            })
            .map(|(_, (_, b))| b)
            .sum()
    }
}

/// Bytes about to be allocated, counted by every projection of the lifecycle and of a
/// governor over it until this guard is dropped: from [`Lifecycle::admit`] and
/// [`Governor::admit`](crate::Governor::admit).
///
/// Drop it once the allocation is made (and so shows in the tracked bytes or the RSS):
/// until then, admissions running at the same time count these bytes and make room for
/// them too, instead of each fitting into the same headroom.
#[derive(Debug)]
#[must_use = "the bytes stay reserved only while the admission is held"]
pub struct Admission {
    reserved: Option<Arc<AtomicU64>>,
    bytes: u64,
    /// What was added to the reservations (less than `bytes` only where the sum
    /// saturated).
    added: u64,
    report: ReleaseReport,
}

impl Admission {
    pub(crate) fn new(reserved: &Arc<AtomicU64>, bytes: u64) -> Self {
        let mut added = 0;
        // Saturating: a huge admission must not wrap the others' reservations to little.
        let _ = reserved.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
            added = u64::MAX - r.max(u64::MAX - bytes);
            Some(r + added)
        });
        Admission {
            reserved: Some(Arc::clone(reserved)),
            bytes,
            added,
            report: ReleaseReport::default(),
        }
    }
    /// An admission that reserves nothing (a governor that is gone).
    pub(crate) fn none() -> Self {
        Admission {
            reserved: None,
            bytes: 0,
            added: 0,
            report: ReleaseReport::default(),
        }
    }
    pub(crate) fn with_report(mut self, report: ReleaseReport) -> Self {
        self.report = report;
        self
    }
    /// What was released to make room.
    pub fn report(&self) -> &ReleaseReport {
        &self.report
    }
    /// The bytes reserved.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// Ends the reservation, returning what was released to make room.
    pub fn done(mut self) -> ReleaseReport {
        std::mem::take(&mut self.report)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(reserved) = self.reserved.take() {
            reserved.fetch_sub(self.added, Ordering::AcqRel);
        }
    }
}

/// A value [`Lifecycle::get_or_restore`] found.
#[derive(Debug)]
pub enum Fetched<T> {
    /// It was still held.
    Held(Arc<T>),
    /// It had been released and was restored from its snapshot (and registered again).
    Restored(Arc<T>),
}

impl<T> Fetched<T> {
    /// The value, however it was found.
    pub fn value(&self) -> &Arc<T> {
        match self {
            Fetched::Held(v) | Fetched::Restored(v) => v,
        }
    }
}

/// The reaper's before-release hook: saves the value through the lifecycle's snapshotter.
#[derive(Debug)]
struct SnapshotBeforeRelease(Arc<memwarden_snapshot::Snapshotter>);

impl memwarden_reaper::BeforeRelease for SnapshotBeforeRelease {
    fn before_release(
        &self,
        id: &memwarden_core::ResourceId,
        kind: &ResourceKind,
        bytes: u64,
        value: &(dyn std::any::Any + Send + Sync),
    ) -> Result<Option<u64>, memwarden_reaper::HandlerError> {
        Ok(self.0.save(id, kind, bytes, value)?)
    }

    fn discard(&self, id: &memwarden_core::ResourceId, _kind: &ResourceKind) {
        if self.0.store().remove(id) {
            log::debug!("the snapshot of {id} is out of date and was dropped");
        }
    }
}

impl Lifecycle {
    /// A lifecycle over `tracker` with the default policy and thresholds.
    pub fn new(tracker: Arc<Tracker>, budget: ByteSize) -> Self {
        Lifecycle {
            reaper: Reaper::new(Arc::clone(&tracker)),
            tracker,
            policy: Policy::default(),
            limits: RwLock::new(Limits {
                budget: budget.as_u64(),
                thresholds: Thresholds::default(),
            }),
            caps: HashMap::new(),
            locks: None,
            snapshot_kinds: vec![ResourceKind::RenderCache],
            snapshotter: parking_lot::RwLock::new(None),
            restores: AtomicU64::new(0),
            releasing: Mutex::new(InFlight::default()),
            reserved: Arc::new(AtomicU64::new(0)),
            governed: RwLock::new(None),
        }
    }

    /// A lifecycle set up from a loaded config: kind policies, caps, incremental
    /// fractions, thresholds and budget.
    pub fn from_config(tracker: Arc<Tracker>, config: &crate::config::Config) -> Self {
        let mut lifecycle = Lifecycle::new(tracker, config.monitor.budget_bytes);
        lifecycle.limits.get_mut().thresholds = Thresholds::from_config(&config.monitor);
        for (kind, k) in config.kinds.iter() {
            lifecycle.tracker.set_kind_policy(
                kind.clone(),
                memwarden_tracker::KindPolicy {
                    priority: k.priority,
                    ttl: k.ttl,
                    max_idle: k.max_idle,
                },
            );
            lifecycle
                .reaper
                .set_incremental_fraction(kind.clone(), k.incremental_fraction);
            if let Some(cap) = k.max_bytes {
                lifecycle.caps.insert(kind.clone(), cap.as_u64());
            }
        }
        {
            lifecycle.snapshot_kinds = config
                .kinds
                .iter()
                .filter(|(_, k)| k.snapshot_on_release)
                .map(|(kind, _)| kind)
                .collect();
        }
        lifecycle
    }

    /// The tracker.
    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }
    /// The reaper (set handlers and guards here).
    pub fn reaper(&self) -> &Reaper {
        &self.reaper
    }
    /// The ranking policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    /// Replaces the ranking policy.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }
    /// The budget: of the tracked bytes here, and of the resident memory in a
    /// [`Governor`](crate::Governor) over this lifecycle.
    pub fn budget(&self) -> ByteSize {
        ByteSize::b(self.limits.read().budget)
    }
    /// Replaces the budget (the next check acts on it); zero is refused.
    pub fn set_budget(&self, budget: ByteSize) -> Result<(), SettingError> {
        if budget.as_u64() == 0 {
            return Err(SettingError::ZeroBudget);
        }
        self.limits.write().budget = budget.as_u64();
        Ok(())
    }
    /// The pressure thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.limits.read().thresholds
    }
    /// Replaces the pressure thresholds; ones [`Thresholds::validate`] rejects are refused.
    pub fn set_thresholds(&self, thresholds: Thresholds) -> Result<(), SettingError> {
        thresholds.validate()?;
        self.limits.write().thresholds = thresholds;
        Ok(())
    }
    pub(crate) fn limits(&self) -> Limits {
        *self.limits.read()
    }
    /// Never releases a resource whose id is locked in `locks`: such resources are left
    /// out of plans (as if pinned) and the reaper re-checks at the moment of release.
    pub fn set_locks(&mut self, locks: Arc<memwarden_lock::LockManager>) {
        self.reaper
            .add_guard(Arc::new(crate::LockGuard(Arc::clone(&locks))));
        self.locks = Some(locks);
    }

    /// Snapshots the snapshot-on-release kinds (from the config; `render_cache` without
    /// one) into `store` before releasing them, with the built-in codec of each kind:
    /// [`RenderFrame`](memwarden_snapshot::RenderFrame) for `render_cache`,
    /// [`AudioClip`](memwarden_snapshot::AudioClip) for `audio_cache`,
    /// [`SubtitleIndex`](memwarden_snapshot::SubtitleIndex) for `subtitle_index` and
    /// [`MappedWeights`](memwarden_snapshot::MappedWeights) for the two model kinds. Values
    /// of other types are released without a snapshot; other kinds take a codec through
    /// [`Lifecycle::snapshotter`]. Replaces the store set before, and the codecs given then.
    pub fn set_snapshot_store(&self, store: Arc<memwarden_snapshot::SnapshotStore>) {
        let snapshotter = Arc::new(
            memwarden_snapshot::Snapshotter::new(store).with_builtin_codecs(&self.snapshot_kinds),
        );
        self.reaper
            .set_before_release(Arc::new(SnapshotBeforeRelease(Arc::clone(&snapshotter))));
        *self.snapshotter.write() = Some(snapshotter);
    }

    /// What saves snapshots before release and restores them, once
    /// [`Lifecycle::set_snapshot_store`] has set a store: give a kind a codec here
    /// ([`Snapshotter::set_codec`](memwarden_snapshot::Snapshotter::set_codec)).
    pub fn snapshotter(&self) -> Option<Arc<memwarden_snapshot::Snapshotter>> {
        self.snapshotter.read().clone()
    }

    /// The value of `spec.id`: held, or restored from its snapshot (after making room,
    /// registered again under `spec`), or `None` when the caller must load it anew.
    ///
    /// A snapshot that fails verification, cannot be decoded or holds another type is a
    /// miss (and logged), never wrong data.
    pub fn get_or_restore<T: Send + Sync + 'static>(
        &self,
        spec: &memwarden_tracker::ResourceSpec,
    ) -> Result<Option<Fetched<T>>, memwarden_tracker::TrackerError> {
        if let Some(value) = self.tracker.get::<T>(spec.id.as_str())? {
            return Ok(Some(Fetched::Held(value)));
        }
        let Some(snapshotter) = self.snapshotter().filter(|s| s.store().contains(&spec.id)) else {
            return Ok(None);
        };
        // Room before the decode allocates the value, reserved until it is registered.
        let admission = self.admit(&spec.kind, spec.bytes);
        let Some(value) = snapshotter.restore(&spec.id, &spec.kind) else {
            return Ok(None);
        };
        let Ok(value) = value.downcast::<T>() else {
            log::warn!(
                "the snapshot of {} is not a {}, the type asked for",
                spec.id,
                std::any::type_name::<T>()
            );
            return Ok(None);
        };
        let registered = self.tracker.register_arc(spec.clone(), Arc::clone(&value));
        drop(admission);
        match registered {
            Ok(()) => {}
            // Restored by another thread meanwhile: use that one.
            Err(memwarden_tracker::TrackerError::AlreadyRegistered { .. }) => {
                return Ok(self.tracker.get::<T>(spec.id.as_str())?.map(Fetched::Held));
            }
            Err(e) => return Err(e),
        }
        self.restores.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Fetched::Restored(value)))
    }

    /// How many resources [`Lifecycle::get_or_restore`] restored from snapshots.
    pub fn restores(&self) -> u64 {
        self.restores.load(Ordering::Relaxed)
    }

    /// Caps the bytes of one kind.
    pub fn set_kind_cap(&mut self, kind: ResourceKind, bytes: ByteSize) {
        self.caps.insert(kind, bytes.as_u64());
    }

    /// Makes room for `incoming` bytes of `kind`; see the type's docs for the steps.
    ///
    /// Nothing is reserved: threads that make room at the same time may each fit into the
    /// same headroom. Use [`admit`](Self::admit) where admissions run concurrently.
    /// An `incoming` beyond what could ever fit releases whatever may go.
    pub fn make_room(&self, kind: &ResourceKind, incoming: u64) -> ReleaseReport {
        self.make_room_counting(kind, incoming, self.reserved())
    }

    /// [`make_room`](Self::make_room), with the `incoming` bytes reserved until the
    /// returned guard is dropped: admissions running at the same time count them.
    ///
    /// While a [`Governor`](crate::Governor) runs over this lifecycle, this is
    /// [`Governor::admit`](crate::Governor::admit): room is made under the real RSS too.
    pub fn admit(&self, kind: &ResourceKind, incoming: u64) -> Admission {
        let admission = Admission::new(&self.reserved, incoming);
        let governed = self.governed.read().clone();
        let report = match governed {
            Some(governor) => (governor.0)(kind, incoming),
            None => self.make_room_counting(kind, incoming, self.reserved_by_others(incoming)),
        };
        admission.with_report(report)
    }

    /// Routes [`admit`](Self::admit) through a governor's admission step.
    pub(crate) fn set_governed(&self, admission: RssAdmission) {
        *self.governed.write() = Some(admission);
    }

    /// Stops routing through `ours`, unless another governor has taken its place.
    pub(crate) fn clear_governed(&self, ours: &RssAdmission) {
        let mut governed = self.governed.write();
        if governed
            .as_ref()
            .is_some_and(|g| Arc::ptr_eq(&g.0, &ours.0))
        {
            *governed = None;
        }
    }

    /// The bytes reserved by admissions other than one of `own` bytes that is live.
    pub(crate) fn reserved_by_others(&self, own: u64) -> u64 {
        self.reserved().saturating_sub(own)
    }

    /// Bytes reserved by live [`Admission`]s.
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Acquire)
    }

    pub(crate) fn reservations(&self) -> &Arc<AtomicU64> {
        &self.reserved
    }

    pub(crate) fn make_room_counting(
        &self,
        kind: &ResourceKind,
        incoming: u64,
        reserved: u64,
    ) -> ReleaseReport {
        let mut report = ReleaseReport::default();
        if let Some(&cap) = self.caps.get(kind) {
            report.merge(self.run(|in_flight| {
                let projected = self
                    .tracker
                    .kind_total(kind)
                    .bytes
                    .saturating_sub(in_flight.pending(&self.tracker, Some(kind)))
                    .saturating_add(incoming);
                (projected > cap)
                    .then(|| Request::new(Urgency::Critical, projected - cap).of_kind(kind.clone()))
            }));
        }
        report.merge(self.relieve(incoming.saturating_add(reserved)));
        report
    }

    /// If the tracked total (plus `incoming`) is above the warning line, frees down to
    /// [`Thresholds::relief`] below it; returns what was released.
    pub fn relieve(&self, incoming: u64) -> ReleaseReport {
        let limits = self.limits();
        let used = self.tracker.totals().bytes;
        let level = limits
            .thresholds
            .urgency(used.saturating_add(incoming), limits.budget);
        if level == Urgency::Low {
            return ReleaseReport::default();
        }
        self.relieve_from(limits, (None, incoming), level, |_, _| {
            self.tracker.totals().bytes
        })
        .report
    }

    /// The relief step both loops share, the tracked bytes here and the resident memory
    /// in the governor: a plan at `level` for what `used + incoming` passes the relief
    /// line by; then, if the budget itself would still be passed, a plan at
    /// [`Urgency::Critical`] over what is left. `used` is the governor's reading, or `None`
    /// for the tracked bytes, read when the plan is made. Victims other threads are
    /// releasing at that moment are left out of the plan and their bytes counted as gone.
    /// `measure(released, used)` gives the usage after a pass (and may act on it first:
    /// the governor compacts the heap there).
    pub(crate) fn relieve_from(
        &self,
        limits: Limits,
        (used, incoming): (Option<u64>, u64),
        mut level: Urgency,
        mut measure: impl FnMut(&ReleaseReport, u64) -> u64,
    ) -> Relief {
        let relief_line = limits.thresholds.relief_line(limits.budget);
        let mut report = ReleaseReport::default();
        let mut used = used;
        for pass in 0..2 {
            let mut raw = 0;
            let released = self.run(|in_flight| {
                raw = used.unwrap_or_else(|| self.tracker.totals().bytes);
                let seen = raw.saturating_sub(in_flight.pending(&self.tracker, None));
                if pass == 1 {
                    if seen.saturating_add(incoming) <= limits.budget {
                        return None;
                    }
                    level = Urgency::Critical;
                }
                Some(Request::new(
                    level,
                    seen.saturating_add(incoming).saturating_sub(relief_line),
                ))
            });
            if pass == 1 && released.released.is_empty() && released.skipped.is_empty() {
                break;
            }
            used = Some(measure(&released, raw));
            report.merge(released);
        }
        Relief {
            report,
            level,
            used: used.unwrap_or_else(|| self.tracker.totals().bytes),
        }
    }

    /// Releases every resource that is due: past its TTL or idle limit, whatever the usage.
    pub fn sweep(&self) -> ReleaseReport {
        self.release(Request::new(Urgency::Low, 0))
    }

    /// Plans for `request` with [`select`] over the tracker's release order (locked
    /// resources and those other threads are releasing are held back) and executes the
    /// plan: the one step every other method here is made of.
    pub fn release(&self, request: Request) -> ReleaseReport {
        self.run(|_| Some(request))
    }

    /// Plans the request `request` makes of what is in flight now (none: nothing to do),
    /// leaving out victims other threads are releasing; then, with no lock held, has the
    /// reaper execute it: handlers run unlocked and may call back into the lifecycle.
    fn run(&self, request: impl FnOnce(&InFlight) -> Option<Request>) -> ReleaseReport {
        let plan = {
            let mut releasing = self.releasing.lock();
            let Some(request) = request(&releasing) else {
                return ReleaseReport::default();
            };
            let exclude = |id: &ResourceId| {
                releasing.victims.contains_key(id)
                    || self
                        .locks
                        .as_ref()
                        .is_some_and(|locks| locks.is_locked(id.as_str()).is_some())
            };
            let plan = select(&self.tracker, &self.policy, &request, &exclude);
            for victim in &plan.victims {
                releasing
                    .victims
                    .insert(victim.id.clone(), (victim.kind.clone(), victim.bytes));
            }
            plan
        };
        if plan.is_empty() {
            return ReleaseReport::default();
        }
        // Taken off the books however the execution ends (a panicking observer included).
        let _landed = Landed {
            releasing: &self.releasing,
            plan: &plan,
        };
        self.reaper.execute(&plan)
    }
}

/// Takes a plan's victims off the in-flight books when dropped.
struct Landed<'a> {
    releasing: &'a Mutex<InFlight>,
    plan: &'a memwarden_prioritizer::ReleasePlan,
}

impl Drop for Landed<'_> {
    fn drop(&mut self) {
        let mut releasing = self.releasing.lock();
        for victim in &self.plan.victims {
            releasing.victims.remove(&victim.id);
        }
    }
}
