//! The [`Snapshot`] codec trait, its type-erased form [`ErasedCodec`], and the little-endian wire helpers the codecs share.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::SnapshotError;

/// A value that can be written to bytes and read back: one implementation per kind of resource.
///
/// `encode` appends to `out`; `decode` gets exactly the bytes that `encode` wrote and the
/// [`VERSION`](Snapshot::VERSION) they were written with, so a codec can keep reading old
/// versions after its format changes. A decoder must reject anything it cannot read in full
/// (trailing bytes included) with an error rather than guess.
pub trait Snapshot: Sized + Send + Sync + 'static {
    /// The version of the encoding this type writes.
    const VERSION: u32;

    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError>;

    /// Reads a value back from `bytes`, written with encoding version `version`.
    fn decode(bytes: &[u8], version: u32) -> Result<Self, SnapshotError>;
}

/// A [`Snapshot`] codec behind a trait object, so that a registry can snapshot an
/// `Arc<dyn Any + Send + Sync>` whose concrete type it only knows at run time.
pub trait ErasedCodec: Send + Sync {
    /// The version the codec writes.
    fn version(&self) -> u32;

    /// The name of the type this codec handles, for logs.
    fn type_name(&self) -> &'static str;

    /// Encodes `value` if it is this codec's type; `None` if it is not.
    fn encode_any(
        &self,
        value: &(dyn Any + Send + Sync),
        out: &mut Vec<u8>,
    ) -> Option<Result<(), SnapshotError>>;

    /// Decodes bytes written with `version` into a shared value of this codec's type.
    fn decode_any(
        &self,
        bytes: &[u8],
        version: u32,
    ) -> Result<Arc<dyn Any + Send + Sync>, SnapshotError>;
}

impl fmt::Debug for dyn ErasedCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErasedCodec")
            .field("type", &self.type_name())
            .field("version", &self.version())
            .finish()
    }
}

/// The [`ErasedCodec`] of a [`Snapshot`] type.
///
/// ```
/// use memwarden_snapshot::{codec, AudioClip};
/// use std::sync::Arc;
///
/// let clip = AudioClip { sample_rate: 8_000, channels: 1, samples: vec![0.5, -0.5] };
/// let audio = codec::<AudioClip>();
/// let mut bytes = Vec::new();
/// audio.encode_any(&clip, &mut bytes).expect("an AudioClip")?;
/// assert!(audio.encode_any(&7u32, &mut Vec::new()).is_none()); // not its type
/// let back = audio.decode_any(&bytes, audio.version())?;
/// assert_eq!(back.downcast_ref::<AudioClip>(), Some(&clip));
/// # Ok::<(), memwarden_snapshot::SnapshotError>(())
/// ```
pub fn codec<T: Snapshot>() -> Arc<dyn ErasedCodec> {
    Arc::new(TypedCodec::<T>(PhantomData))
}

struct TypedCodec<T>(PhantomData<fn() -> T>);

impl<T: Snapshot> ErasedCodec for TypedCodec<T> {
    fn version(&self) -> u32 {
        T::VERSION
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn encode_any(
        &self,
        value: &(dyn Any + Send + Sync),
        out: &mut Vec<u8>,
    ) -> Option<Result<(), SnapshotError>> {
        let value = value.downcast_ref::<T>()?;
        Some(value.encode(out))
    }

    fn decode_any(
        &self,
        bytes: &[u8],
        version: u32,
    ) -> Result<Arc<dyn Any + Send + Sync>, SnapshotError> {
        Ok(Arc::new(T::decode(bytes, version)?))
    }
}

/// Fails with [`SnapshotError::UnsupportedVersion`] unless `version` is `T::VERSION`.
pub(crate) fn check_version<T: Snapshot>(
    type_name: &'static str,
    version: u32,
) -> Result<(), SnapshotError> {
    if version == T::VERSION {
        Ok(())
    } else {
        Err(SnapshotError::UnsupportedVersion {
            type_name,
            version,
            supported: T::VERSION,
        })
    }
}

/// Reads little-endian fields from a byte slice, failing cleanly at the end of the input.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    type_name: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], type_name: &'static str) -> Self {
        Reader { bytes, type_name }
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], SnapshotError> {
        if self.bytes.len() < n {
            return Err(SnapshotError::malformed(
                self.type_name,
                format!(
                    "{what}: needs {n} bytes, {} left (truncated)",
                    self.bytes.len()
                ),
            ));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], SnapshotError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn i64(&mut self, what: &str) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// A `u64` length that must fit in what is left of the input, counted in `unit`-byte items.
    pub(crate) fn len(&mut self, what: &str, unit: usize) -> Result<usize, SnapshotError> {
        let n = self.u64(what)?;
        match usize::try_from(n) {
            Ok(n) if n.checked_mul(unit).is_some_and(|b| b <= self.bytes.len()) => Ok(n),
            _ => Err(SnapshotError::malformed(
                self.type_name,
                format!(
                    "{what} of {n} items does not fit in the {} bytes left",
                    self.bytes.len()
                ),
            )),
        }
    }

    /// Fails unless every byte has been read.
    pub(crate) fn finish(self) -> Result<(), SnapshotError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(SnapshotError::malformed(
                self.type_name,
                format!("{} trailing bytes", self.bytes.len()),
            ))
        }
    }
}

/// `usize` to `u64`; lossless on every platform Rust supports.
pub(crate) fn len_u64(n: usize) -> u64 {
    u64::try_from(n).expect("usize fits in u64")
}
