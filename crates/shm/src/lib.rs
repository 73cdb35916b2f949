//! memwarden-shm: time series turned into Gramian Angular Field images by parallel
//! workers writing straight into shared memory that other processes open zero-copy.
//!
//! The Python original (DualGAF) serialised chunks of images between worker processes;
//! here the workers are threads and every image is written once, into its final place:
//! a named shared-memory segment holding a complete `.npy` file, which NumPy maps with
//! `numpy.load("/dev/shm/NAME", mmap_mode="r")`.
//!
//! - [`Gaf`] / [`GafConfig`]: the transform, matching pyts 0.14.1's
//!   `GramianAngularField` (PAA, min-max scaling, GASF / GADF, or both as two channels)
//!   to 1e-12 in `f64` and 1e-6 in `f32`, parallel over samples.
//! - [`SharedSegment`]: create, open, unlink named segments in `/dev/shm`, with space
//!   reserved up front and logged fallbacks to a temp file and to the heap; at most one
//!   handle per segment in a process, so its `&mut [u8]` aliases nothing here;
//!   [`sweep_stale`] removes segments that no process holds any more (never persisted
//!   ones).
//! - [`GafLoader`]: streams a dataset in [`Batch`]es through a small ring of reused
//!   shared slots, with workers, chunk size and batch size configured automatically.
//! - [`npy`]: `.npy` headers, writing, and memory-mapped reading of input arrays.
//!
//! ```
//! use memwarden_shm::{
//!     Gaf, GafConfig, ImageSize, Method, SegmentOptions, SharedSegment, ShmError,
//! };
//!
//! let (n, t) = (3, 50);
//! let series: Vec<f64> = (0..n * t).map(|i| (i as f64 * 0.1).sin() * (1 + i / t) as f64).collect();
//! let config = GafConfig { image_size: ImageSize::Fixed(7), method: Method::Both, ..GafConfig::default() };
//! let gaf = Gaf::new(config, t)?;
//! assert_eq!(gaf.output_shape(n), [3, 2, 7, 7]);
//!
//! // A segment holding a complete .npy file; Python can np.load(path, mmap_mode="r") it.
//! let name = SharedSegment::unique_name("doc");
//! let mut segment = SharedSegment::create_npy::<f32>(&name, &gaf.output_shape(n), &SegmentOptions::new())?;
//! gaf.transform_into(&series, n, segment.npy_data_mut::<f32>()?)?;
//!
//! let images = segment.npy_data::<f32>()?;
//! assert_eq!(images[1], images[7]); // GASF is symmetric: [0][1] == [1][0]
//! assert_eq!(images[49], 0.0); // the GADF channel's diagonal is zero
//!
//! // Another process opens it by name; in this one, the handle above is the only one.
//! let again = SharedSegment::open_with(&name, &SegmentOptions::new());
//! assert!(matches!(again, Err(ShmError::AlreadyMapped { .. })));
//! drop(segment); // the owner unlinks the segment
//! assert!(SharedSegment::open_with(&name, &SegmentOptions::new()).is_err());
//! # Ok::<(), memwarden_shm::ShmError>(())
//! ```
//!
//! # Design: reserve, then map; reuse, never re-fault
//!
//! Two costs dominate on the machines this runs on, and both are about memory, not
//! arithmetic. A write to a page of a mapped `/dev/shm` file that the filesystem cannot
//! back kills the process with `SIGBUS`, so every segment's full length is reserved with
//! `posix_fallocate` before it is mapped: a full `/dev/shm` becomes a logged fallback (to
//! a temp file, then to the heap) at creation time. And first-touching fresh pages runs
//! an order of magnitude slower than rewriting mapped ones, so the loader keeps a small
//! ring of slots that each batch rewrites, rather than a fresh buffer per batch. The
//! GAF's own inner loop is a contiguous row update that the compiler vectorises, which
//! keeps the transform close to the speed of filling the output memory.
//!
//! # Soundness: one mapping per file in a process, a contract between processes
//!
//! A segment hands out `&mut [u8]` over memory-mapped pages, so a second mapping of the
//! same file in the process would let safe code alias them. A process-wide table keyed
//! by the file's device and inode (not its name) therefore allows one
//! [`SharedSegment`] per file, or any number of read-only [`npy::NpyFile`]s, never both:
//! anything else is [`ShmError::AlreadyMapped`]. What other processes do to a shared
//! file is beyond any Rust code's control: they must not write bytes this process is
//! borrowing, nor truncate a mapped file (`SIGBUS`); [`SharedSegment`] and
//! [`npy::NpyFile`] spell out that contract.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

#[cfg(not(unix))]
compile_error!("memwarden-shm needs a Unix system (POSIX shared memory, mmap, statvfs)");

#[cfg(not(target_endian = "little"))]
compile_error!("memwarden-shm reads and writes little-endian .npy data in place");

mod error;
mod float;
mod gaf;
mod loader;
mod mapped;
pub mod npy;
mod segment;

pub use error::{NpyProblem, Result, ShmError};

pub use float::{Float, as_bytes};
pub use gaf::{Gaf, GafConfig, ImageSize, Method};
pub use loader::{
    Batch, Batches, DEFAULT_MEMORY_BUDGET, DEFAULT_RING_SLOTS, GafLoader, LoaderConfig, LoaderPlan,
};
pub use segment::{
    Backing, DEFAULT_SHM_DIR, MAX_NAME_LEN, NAME_PREFIX, SegmentOptions, SharedSegment,
    sweep_stale, sweep_stale_in,
};
