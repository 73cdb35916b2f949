//! placeholder
#![deny(missing_docs)]
pub use memwarden_core as core;
#[cfg(feature = "config")]
pub mod config;
