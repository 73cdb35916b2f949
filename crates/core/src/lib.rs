//! Shared vocabulary for the memwarden crates.
//!
//! This crate holds only the types that several memwarden crates speak in:
//!
//! - [`ResourceId`]: the name a resource is tracked, ranked, released and locked under;
//! - [`ResourceKind`]: the six built-in kinds of releasable resource plus [`ResourceKind::Custom`];
//! - [`ByteSize`]: a byte count that parses and prints human units (`"512MiB"`, `"1.5 GiB"`, `"4GB"`);
//! - [`Priority`]: how important a kind or a resource is to keep (1 = first to go, 10 = last);
//! - [`Clock`], [`SystemClock`] and [`ManualClock`]: time as a [`Timestamp`], so tests never sleep;
//! - [`ParseError`]: why a string is not a byte size, priority, kind or id.
//!
//! ```
//! use memwarden_core::{ByteSize, Clock, ManualClock, Priority, ResourceKind};
//! use std::time::Duration;
//!
//! let budget: ByteSize = "1.5 GiB".parse()?;
//! assert_eq!(budget.as_u64(), 1_610_612_736);
//! assert_eq!(budget.to_string(), "1.50 GiB");
//!
//! let kind: ResourceKind = "render_cache".parse()?;
//! assert_eq!(kind, ResourceKind::RenderCache);
//! assert!(Priority::new(11).is_err());
//!
//! let clock = ManualClock::new();
//! let t0 = clock.now();
//! clock.advance(Duration::from_secs(30));
//! assert_eq!(clock.now().saturating_duration_since(t0), Duration::from_secs(30));
//! # Ok::<(), memwarden_core::ParseError>(())
//! ```
//!
//! The key design decision is what is *not* here: nothing goes into this crate because it
//! "might be shared". Its dependencies are `serde` and `thiserror`, and its API changes
//! rarely, so every other crate can depend on it without cost.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod bytes;
mod clock;
mod error;
pub mod fs;
mod id;
mod priority;

pub use bytes::ByteSize;
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::ParseError;

pub use id::{ResourceId, ResourceKind};
pub use priority::Priority;
