//! Integration tests of the `memwarden` facade, one module per subsystem.

#[cfg(feature = "config")]
mod config;
#[cfg(all(feature = "governor", feature = "config"))]
mod governor;
#[cfg(feature = "runtime")]
mod lifecycle;
#[cfg(feature = "registry")]
mod registry;
