//! The two element types the crate reads and writes: `f32` and `f64`.

use std::fmt::Debug;
use std::ops::{Mul, Sub};

use crate::npy::Dtype;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// An element type of input series and output images: `f32` or `f64`.
///
/// The trait is sealed: the `.npy` code views raw bytes as slices of these types, which
/// is sound because both have no padding and every bit pattern is a valid value.
pub trait Float:
    sealed::Sealed
    + Copy
    + Default
    + Debug
    + PartialOrd
    + Send
    + Sync
    + Mul<Output = Self>
    + Sub<Output = Self>
    + 'static
{
    /// The `.npy` dtype of this type.
    const DTYPE: Dtype;
    /// Rounds an `f64` to this type.
    fn from_f64(v: f64) -> Self;
    /// Widens (or copies) this value to `f64`.
    fn to_f64(self) -> f64;
}

impl Float for f32 {
    const DTYPE: Dtype = Dtype::F32;
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Float for f64 {
    const DTYPE: Dtype = Dtype::F64;
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
}

/// Views a slice of floats as its bytes (little-endian, as `.npy` stores them), e.g.
/// to write a [`Batch`](crate::Batch)'s images into a file.
pub fn as_bytes<F: Float>(data: &[F]) -> &[u8] {
    // SAFETY: `F` is f32 or f64 (the trait is sealed): no padding, no invalid bit patterns,
    // and u8 has alignment 1, so the same memory read as `size_of_val(data)` bytes is valid
    // for the lifetime of the borrow.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

/// Views bytes as floats when the pointer is suitably aligned and the length divides
/// evenly; `None` otherwise (the caller then copies).
pub(crate) fn from_bytes<F: Float>(bytes: &[u8]) -> Option<&[F]> {
    let size = std::mem::size_of::<F>();
    if !bytes.len().is_multiple_of(size)
        || bytes.as_ptr().align_offset(std::mem::align_of::<F>()) != 0
    {
        return None;
    }
    // SAFETY: the pointer is aligned for `F` (checked above), the length is a whole number
    // of `F`s, every bit pattern is a valid f32/f64, and the result borrows `bytes`, so the
    // memory outlives it.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<F>(), bytes.len() / size) })
}

/// Mutable form of [`from_bytes`].
pub(crate) fn from_bytes_mut<F: Float>(bytes: &mut [u8]) -> Option<&mut [F]> {
    let size = std::mem::size_of::<F>();
    if !bytes.len().is_multiple_of(size)
        || bytes.as_ptr().align_offset(std::mem::align_of::<F>()) != 0
    {
        return None;
    }
    // SAFETY: as in `from_bytes`; the exclusive borrow of `bytes` moves to the result, so
    // no other reference to this memory exists in this process while it lives.
    Some(unsafe {
        std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<F>(), bytes.len() / size)
    })
}

/// Decodes little-endian bytes into floats, for data that is not aligned in place.
pub(crate) fn decode<F: Float>(bytes: &[u8]) -> Vec<F> {
    match F::DTYPE {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| {
                F::from_f64(f64::from(f32::from_le_bytes(
                    c.try_into().expect("chunks_exact(4) yields 4 bytes"),
                )))
            })
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| {
                F::from_f64(f64::from_le_bytes(
                    c.try_into().expect("chunks_exact(8) yields 8 bytes"),
                ))
            })
            .collect(),
    }
}
