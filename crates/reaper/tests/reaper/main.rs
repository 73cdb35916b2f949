//! Integration tests of release execution.

mod execution;
mod snapshots;
mod stress;
