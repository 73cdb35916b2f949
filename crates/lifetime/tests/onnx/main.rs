//! Integration tests of the ONNX importer (feature `onnx`): the shared real graphs,
//! shape inference against their `value_info`, control flow, bad files, operator
//! rules on hand-built graphs, and a fuzzer.

mod bad_files;
mod common;
mod control_flow;
mod encode;
mod fuzz;
mod ops;
mod real_files;
mod reference;
mod shapes;
