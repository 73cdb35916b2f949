//! Tests of memwarden-lifetime: one binary, one module per subject.

mod analysis;
mod arena;
mod control_flow;
mod csv;
mod dynamic;
mod exact;
mod inplace;
mod json;
mod properties;
mod records;
mod util;
