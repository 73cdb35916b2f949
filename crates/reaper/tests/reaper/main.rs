//! Integration tests of release execution.

mod execution;
mod stress;
