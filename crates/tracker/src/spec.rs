//! What a resource is registered with: [`ResourceSpec`], [`KindPolicy`], [`Shrink`].

use std::sync::Arc;
use std::time::Duration;

use memwarden_core::{Priority, ResourceId, ResourceKind};

/// The description a resource is registered with; built with chained setters.
///
/// ```
/// # use memwarden_core::{Priority, ResourceKind};
/// # use memwarden_tracker::ResourceSpec;
/// # use std::time::Duration;
/// let spec = ResourceSpec::new("yolo/shard-0", ResourceKind::ModelShards, 64 << 20)
///     .max_idle(Duration::from_secs(600))
///     .priority(Priority::new(9).unwrap())
///     .depends_on(["yolo/weights"])
///     .group("detector");
/// assert_eq!(spec.id.as_str(), "yolo/shard-0");
/// ```
#[derive(Debug, Clone)]
pub struct ResourceSpec {
    /// The resource's id.
    pub id: ResourceId,
    /// Its kind, which selects the kind policy and the release handler.
    pub kind: ResourceKind,
    /// Its size in bytes, as the caller accounts it.
    pub bytes: u64,
    /// Time to live from registration; overrides the kind's TTL.
    pub ttl: Option<Duration>,
    /// Longest time without access before the resource counts as idle; overrides the kind's.
    pub max_idle: Option<Duration>,
    /// Importance of this resource; overrides the kind's priority.
    pub priority: Option<Priority>,
    /// A pinned resource is never released, at any pressure.
    pub pinned: bool,
    /// Resources this one uses; they are never released before it.
    pub depends_on: Vec<ResourceId>,
    /// A mutual-exclusion group: when one member is in use, the others are released first.
    pub group: Option<Arc<str>>,
}

impl ResourceSpec {
    /// A spec with no overrides, unpinned, with no dependencies or group.
    pub fn new(id: impl Into<ResourceId>, kind: ResourceKind, bytes: u64) -> Self {
        ResourceSpec {
            id: id.into(),
            kind,
            bytes,
            ttl: None,
            max_idle: None,
            priority: None,
            pinned: false,
            depends_on: Vec::new(),
            group: None,
        }
    }
    /// Sets the time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Sets the idle limit.
    pub fn max_idle(mut self, max_idle: Duration) -> Self {
        self.max_idle = Some(max_idle);
        self
    }
    /// Sets the priority override.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }
    /// Pins (or unpins) the resource.
    pub fn pinned(mut self, pinned: bool) -> Self {
        self.pinned = pinned;
        self
    }
    /// Adds dependencies: resources this one uses.
    pub fn depends_on<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<ResourceId>,
    {
        self.depends_on.extend(ids.into_iter().map(Into::into));
        self
    }
    /// Puts the resource in a mutual-exclusion group.
    pub fn group(mut self, group: &str) -> Self {
        self.group = Some(group.into());
        self
    }
}

/// The limits every resource of one kind gets unless its spec overrides them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KindPolicy {
    /// Importance of the kind (1 = released first).
    pub priority: Priority,
    /// Time to live from registration.
    pub ttl: Option<Duration>,
    /// Longest time without access before a resource counts as idle.
    pub max_idle: Option<Duration>,
}

impl Default for KindPolicy {
    fn default() -> Self {
        KindPolicy {
            priority: Priority::NORMAL,
            ttl: None,
            max_idle: None,
        }
    }
}

impl KindPolicy {
    /// The policy a kind has until one is set: no TTL or idle limit, and a priority that
    /// keeps costly-to-reload kinds longest (the shipped config's priorities):
    /// model_shards 8, model_weights_cache 7, subtitle_index 5, audio_cache 4,
    /// render_cache 3, temp_buffers 1, custom kinds 5.
    pub fn default_for(kind: &ResourceKind) -> Self {
        let priority = match kind {
            ResourceKind::ModelShards => 8,
            ResourceKind::ModelWeightsCache => 7,
            ResourceKind::AudioCache => 4,
            ResourceKind::RenderCache => 3,
            ResourceKind::TempBuffers => 1,
            _ => 5,
        };
        KindPolicy {
            priority: Priority::new(priority).expect("listed priorities are in range"),
            ..Self::default()
        }
    }
}

/// A value that can give back part of its memory while staying usable.
///
/// Implemented by values of kinds released incrementally (a subtitle index, an audio
/// cache): the reaper asks them to drop about `fraction` of their releasable content,
/// keeping the most recently or most often used part, and they say how many bytes they
/// actually freed. Interior mutability is the implementor's business (the value is
/// shared as an `Arc`).
pub trait Shrink: Send + Sync {
    /// Releases about `fraction` (in `0.0..=1.0`) of the content; returns the bytes freed.
    fn shrink(&self, fraction: f64) -> u64;
}
