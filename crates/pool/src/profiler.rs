//! The memory profiler.
