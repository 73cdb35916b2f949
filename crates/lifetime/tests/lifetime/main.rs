//! Tests of memwarden-lifetime: one binary, one module per subject.

mod analysis;
mod arena;
mod control_flow;
mod dynamic;
mod inplace;
mod json;
mod properties;
mod records;
mod util;
