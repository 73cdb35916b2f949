//! Tensor lifetime analysis and arena planning.

pub mod ir;

#[cfg(feature = "onnx")]
pub mod onnx;
