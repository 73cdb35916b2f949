//! ONNX import (placeholder, being written).
