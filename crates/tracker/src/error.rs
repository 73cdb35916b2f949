//! [`TrackerError`]: everything the tracker can refuse, naming the resource.

use memwarden_core::ResourceId;

/// Why the tracker refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// A resource with this id is already registered.
    #[error("resource {id} is already registered")]
    AlreadyRegistered {
        /// The id asked for.
        id: ResourceId,
    },
    /// No resource with this id is registered.
    #[error("resource {id} is not registered")]
    NotFound {
        /// The id asked for.
        id: ResourceId,
    },
    /// A dependency named at registration is not registered.
    #[error("resource {id} depends on {dependency}, which is not registered")]
    UnknownDependency {
        /// The resource being registered.
        id: ResourceId,
        /// The missing dependency.
        dependency: ResourceId,
    },
    /// The resource holds a value of another type than the one asked for.
    #[error("resource {id} does not hold a {expected}")]
    TypeMismatch {
        /// The resource asked for.
        id: ResourceId,
        /// The type the caller asked for.
        expected: &'static str,
    },
    /// The resource is pinned and cannot be detached.
    #[error("resource {id} is pinned")]
    Pinned {
        /// The pinned resource.
        id: ResourceId,
    },
    /// The id now holds another value than the one expected: the resource was released
    /// and registered again meanwhile.
    #[error("resource {id} was replaced by a new value")]
    Replaced {
        /// The resource asked for.
        id: ResourceId,
    },
    /// Live resources depend on this one, so it cannot be detached before them.
    #[error("resource {id} is still needed by {}", join(dependents))]
    HasDependents {
        /// The resource asked for.
        id: ResourceId,
        /// The live resources that depend on it.
        dependents: Vec<ResourceId>,
    },
}

fn join(ids: &[ResourceId]) -> String {
    ids.iter()
        .map(ResourceId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
