//! Integration tests of `memwarden-runtime`, one module per part.

mod config;
mod governor;
mod lifecycle;
mod registry;
mod runtime;
mod soundness;
