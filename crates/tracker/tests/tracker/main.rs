//! Integration tests of the resource registry.

mod concurrency;
mod lifecycle;
