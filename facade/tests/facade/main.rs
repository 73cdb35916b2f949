//! Integration tests of the `memwarden` facade, one module per subsystem.

#[cfg(feature = "config")]
mod config;
#[cfg(feature = "runtime")]
mod lifecycle;
