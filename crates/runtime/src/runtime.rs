//! [`Runtime`]: the governance crates wired against one budget, started and stopped as one.

use std::sync::Arc;

use memwarden_core::{ByteSize, Clock, ResourceKind, SystemClock};
use memwarden_defrag::{DefragConfig, DefragError, Defragmenter};
use memwarden_lock::LockManager;
use memwarden_reaper::ReleaseReport;
use memwarden_snapshot::{SnapshotError, SnapshotStore, StoreConfig};
use memwarden_tracker::Tracker;

use crate::config::Config;
use crate::governor::{GovernorConfig, GovernorError, GovernorStats, RssSource};
use crate::registry::RegistryConfig;
use crate::{
    Budget, BudgetError, Governor, Lifecycle, ModelRegistry, ResolvedBudget, SettingError,
};

/// The tracker, the lifecycle (prioritizer and reaper), the snapshot store, the lock
/// manager, the defragmenter, the governor and the model registry of one process, wired
/// the way the config says; from [`Runtime::builder`].
///
/// Each part but the tracker and the lifecycle is optional. Dropping the runtime (or
/// [`Runtime::shutdown`]) stops the governor's monitor thread, then the defragmenter's,
/// and joins both.
///
/// ```
/// use memwarden_core::ResourceKind;
/// use memwarden_runtime::{Runtime, config::Config};
/// use memwarden_tracker::ResourceSpec;
///
/// let runtime = Runtime::builder(&Config::shipped())
///     .budget("256MiB".parse()?)
///     .no_snapshots()
///     .start()?;
/// // Before each load: room for what is about to be allocated, under the real RSS.
/// runtime.make_room(&ResourceKind::RenderCache, 8 << 20);
/// let spec = ResourceSpec::new("frame-1", ResourceKind::RenderCache, 8 << 20);
/// runtime.tracker().register(spec, vec![0u8; 8 << 20])?;
/// let report = runtime.shutdown().expect("a governor ran");
/// assert_eq!(report.admissions, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Runtime {
    config: Config,
    // Declared in the order they stop: the registry (its preload thread) first, then
    // the governor, which calls into the defragmenter, then the defragmenter.
    registry: ModelRegistry,
    governor: Option<Governor>,
    defrag: Option<Arc<Defragmenter>>,
    lifecycle: Arc<Lifecycle>,
    snapshots: Option<Arc<SnapshotStore>>,
    locks: Option<Arc<LockManager>>,
}

/// Why a [`Runtime`] would not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The budget could not be resolved to bytes.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// A budget or thresholds out of range.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// The snapshot store could not be opened.
    #[error("cannot open the snapshot store")]
    Snapshots(#[from] SnapshotError),
    /// The defragmenter could not be started.
    #[error("cannot start the defragmenter")]
    Defrag(#[from] DefragError),
    /// The governor could not be started.
    #[error("cannot start the governor")]
    Governor(#[from] GovernorError),
}

/// Where the runtime's snapshots go.
#[derive(Debug)]
enum Snapshots {
    /// The config's `[snapshot]` table, when a kind is snapshotted on release.
    FromConfig,
    /// A store the caller configured.
    Store(StoreConfig),
    /// None: released resources are not snapshotted.
    Off,
}

/// Sets up a [`Runtime`]; from [`Runtime::builder`].
pub struct RuntimeBuilder {
    config: Config,
    budget: Option<Budget>,
    clock: Option<Arc<dyn Clock>>,
    snapshots: Snapshots,
    locks: Option<Arc<LockManager>>,
    defrag: bool,
    governor: bool,
    monitor: bool,
    source: Option<Box<dyn RssSource>>,
    registry: Option<RegistryConfig>,
    uncapped: bool,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("budget", &self.budget)
            .field("snapshots", &self.snapshots)
            .field("locks", &self.locks.is_some())
            .field("defrag", &self.defrag)
            .field("governor", &self.governor)
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Sets up a runtime from `config`: its budget and thresholds, its kinds' policies
    /// and caps, a snapshot store in its `[snapshot]` directory when a kind is
    /// snapshotted on release, a defragmenter with its `[defrag]` triggers, a governor
    /// watching the real RSS every `monitor.tick`, and a model registry capped at
    /// `model_shards.max_bytes` whose loads are admitted through the governor. No lock
    /// manager unless one is given ([`RuntimeBuilder::locks`]).
    pub fn builder(config: &Config) -> RuntimeBuilder {
        RuntimeBuilder {
            config: config.clone(),
            budget: None,
            clock: None,
            snapshots: Snapshots::FromConfig,
            locks: None,
            defrag: true,
            governor: true,
            monitor: true,
            source: None,
            registry: None,
            uncapped: false,
        }
    }

    /// The config it was built from (with the budget it was given, if one was).
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The budget it started with, and where it came from ("192 MiB = 75% of the cgroup
    /// limit 256 MiB (memory.max, /kubepods/…)"). An `auto` budget then follows the
    /// cgroup's limit on the governor's ticks ([`Lifecycle::budget`] is the one in force).
    pub fn budget(&self) -> ResolvedBudget {
        ResolvedBudget {
            bytes: self.config.monitor.budget_bytes,
            source: self.config.monitor.budget_source.clone(),
        }
    }
    /// The resource registry.
    pub fn tracker(&self) -> &Arc<Tracker> {
        self.lifecycle.tracker()
    }
    /// The lifecycle: budget, thresholds, caps, release and restore.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }
    /// The governor, unless it was left out.
    pub fn governor(&self) -> Option<&Governor> {
        self.governor.as_ref()
    }
    /// The model registry.
    pub fn registry(&self) -> &ModelRegistry {
        &self.registry
    }
    /// The snapshot store, if there is one.
    pub fn snapshot_store(&self) -> Option<&Arc<SnapshotStore>> {
        self.snapshots.as_ref()
    }
    /// The defragmenter, unless it was left out.
    pub fn defrag(&self) -> Option<&Arc<Defragmenter>> {
        self.defrag.as_ref()
    }
    /// The lock manager, if one was given.
    pub fn locks(&self) -> Option<&Arc<LockManager>> {
        self.locks.as_ref()
    }

    /// Makes room for `incoming` bytes of `kind` about to be allocated: through the
    /// governor ([`Governor::make_room`]: the tracked bytes, then the real RSS) when
    /// there is one, else through the lifecycle ([`Lifecycle::make_room`]).
    pub fn make_room(&self, kind: &ResourceKind, incoming: u64) -> ReleaseReport {
        match &self.governor {
            Some(governor) => governor.make_room(kind, incoming),
            None => self.lifecycle.make_room(kind, incoming),
        }
    }

    /// [`make_room`](Self::make_room), with the `incoming` bytes reserved until the
    /// returned guard is dropped ([`Governor::admit`], else [`Lifecycle::admit`]): loads
    /// admitted at the same time count each other's bytes. Drop it once the allocation
    /// is made.
    pub fn admit(&self, kind: &ResourceKind, incoming: u64) -> crate::Admission {
        match &self.governor {
            Some(governor) => governor.admit(kind, incoming),
            None => self.lifecycle.admit(kind, incoming),
        }
    }

    /// Stops the background work (a preload, the governor's monitor, the
    /// defragmenter's timer), joins the threads, and returns the governor's final report
    /// (`None` without a governor, or when already stopped). The tracker, lifecycle,
    /// registry, store and the defragmenter's figures stay readable.
    pub fn stop(&mut self) -> Option<GovernorStats> {
        self.registry.cancel_preload();
        let report = self.governor.take().map(Governor::shutdown);
        if let Some(defrag) = &self.defrag {
            defrag.shutdown();
        }
        report
    }

    /// [`stop`](Self::stop), then drops every part.
    pub fn shutdown(mut self) -> Option<GovernorStats> {
        self.stop()
    }
}

impl RuntimeBuilder {
    /// Replaces the config's budget.
    #[must_use]
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Times TTLs, idle limits, snapshots and reports on `clock` instead of the system's
    /// (a [`ManualClock`](memwarden_core::ManualClock) makes a run repeatable).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Opens the snapshot store with `config` instead of the config file's `[snapshot]`
    /// table.
    #[must_use]
    pub fn snapshots(mut self, config: StoreConfig) -> Self {
        self.snapshots = Snapshots::Store(config);
        self
    }

    /// Opens no snapshot store: released resources are gone.
    #[must_use]
    pub fn no_snapshots(mut self) -> Self {
        self.snapshots = Snapshots::Off;
        self
    }

    /// Never releases a resource whose id is locked in `locks`.
    #[must_use]
    pub fn locks(mut self, locks: Arc<LockManager>) -> Self {
        self.locks = Some(locks);
        self
    }

    /// Starts no defragmenter: freed heap stays with the allocator.
    #[must_use]
    pub fn no_defrag(mut self) -> Self {
        self.defrag = false;
        self
    }

    /// Starts no governor: only the tracked bytes are held to the budget.
    #[must_use]
    pub fn no_governor(mut self) -> Self {
        self.governor = false;
        self
    }

    /// Starts the governor without its monitor thread: it reads the RSS only in
    /// [`Runtime::make_room`] and [`Governor::tick`] (for tests, and loops that tick
    /// themselves).
    #[must_use]
    pub fn manual_governor(mut self) -> Self {
        self.monitor = false;
        self
    }

    /// The governor reads the RSS from `source` instead of the operating system.
    #[must_use]
    pub fn rss_source(mut self, source: impl RssSource) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Replaces the model registry's settings (by default, capped at the config's
    /// `model_shards.max_bytes`).
    #[must_use]
    pub fn registry(mut self, config: RegistryConfig) -> Self {
        self.registry = Some(config);
        self
    }

    /// Lifts every per-kind cap and the registry's cap, keeping the budget: what runs is
    /// the bookkeeping alone, for measuring what memwarden costs.
    #[must_use]
    pub fn uncapped(mut self) -> Self {
        self.uncapped = true;
        self
    }

    /// Builds and starts every part.
    pub fn start(self) -> Result<Runtime, RuntimeError> {
        let mut config = self.config;
        if let Some(budget) = self.budget {
            let resolved = budget.resolve_detailed()?;
            config.monitor.budget_bytes = resolved.bytes;
            config.monitor.budget_source = resolved.source;
            config.monitor.budget = budget;
        }
        if config.monitor.budget_bytes.as_u64() == 0 {
            return Err(SettingError::ZeroBudget.into());
        }
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(SystemClock::new()) as Arc<dyn Clock>);
        let tracker = Arc::new(Tracker::with_clock(Arc::clone(&clock)));
        let mut lifecycle = Lifecycle::from_config(Arc::clone(&tracker), &config);
        if self.uncapped {
            for kind in ResourceKind::BUILTIN {
                lifecycle.set_kind_cap(kind, ByteSize::b(u64::MAX));
            }
        }
        if let Some(locks) = &self.locks {
            lifecycle.set_locks(Arc::clone(locks));
        }
        let store_config = match self.snapshots {
            Snapshots::Off => None,
            Snapshots::Store(store) => Some(store),
            Snapshots::FromConfig => config
                .kinds
                .iter()
                .any(|(_, k)| k.snapshot_on_release)
                .then(|| StoreConfig {
                    disk_bytes: config.snapshot.max_bytes.as_u64(),
                    ..StoreConfig::new(config.snapshot.dir.clone())
                }),
        };
        let snapshots = match store_config {
            Some(store) => {
                let store = Arc::new(SnapshotStore::open(store, Arc::clone(&clock))?);
                lifecycle.set_snapshot_store(Arc::clone(&store));
                Some(store)
            }
            None => None,
        };
        let lifecycle = Arc::new(lifecycle);
        let defrag = if self.defrag {
            Some(Arc::new(
                Defragmenter::builder(DefragConfig::from(&config.defrag)).start()?,
            ))
        } else {
            None
        };
        let governor = if self.governor {
            let mut builder =
                Governor::builder(Arc::clone(&lifecycle), GovernorConfig::from_config(&config));
            if let Some(defrag) = &defrag {
                builder = builder.defrag(Arc::clone(defrag));
            }
            if let Some(source) = self.source {
                builder = builder.boxed_source(source);
            }
            if !self.monitor {
                builder = builder.manual();
            }
            builder = builder.follow(config.monitor.budget);
            Some(builder.start()?)
        } else {
            None
        };
        let registry_config = self.registry.unwrap_or_else(|| RegistryConfig {
            cap: config
                .kinds
                .get(&ResourceKind::ModelShards)
                .and_then(|k| k.max_bytes)
                .filter(|_| !self.uncapped),
            ..RegistryConfig::default()
        });
        let registry = ModelRegistry::new(Arc::clone(&lifecycle), registry_config);
        if let Some(governor) = &governor {
            let admission = governor.handle();
            registry.set_admission(move |kind, bytes| admission.admit(kind, bytes));
        }
        Ok(Runtime {
            config,
            registry,
            governor,
            defrag,
            lifecycle,
            snapshots,
            locks: self.locks,
        })
    }
}
