//! The snapshot file format: a fixed little-endian header, the kind and id, then the payload, all under one xxh3-64 checksum.
//!
//! ```text
//! offset  size  field
//!      0     8  magic b"MWSNAP\r\n"
//!      8     4  format version (FORMAT_VERSION)
//!     12     4  codec version (the payload's Snapshot::VERSION)
//!     16     8  sequence (monotonic per store; the newest wins)
//!     24     8  payload length
//!     32     4  kind length
//!     36     4  id length
//!     40     8  xxh3-64 of bytes 0..40, then kind, id and payload
//!     48        kind (UTF-8), id (UTF-8), payload
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use memwarden_core::{ResourceId, ResourceKind};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::codec::len_u64;

/// The first eight bytes of every snapshot file.
pub(crate) const MAGIC: [u8; 8] = *b"MWSNAP\r\n";
/// The version of this file layout.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Length of the fixed part of the header.
pub(crate) const HEADER_LEN: usize = 48;
/// The checksum covers the header up to here.
const CHECKED_HEADER: usize = 40;

/// Why a snapshot file is not to be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Defect {
    BadMagic,
    UnsupportedFormat(u32),
    Truncated {
        expected: u64,
        actual: u64,
    },
    TrailingBytes {
        expected: u64,
        actual: u64,
    },
    Checksum {
        stored: u64,
        computed: u64,
    },
    BadName(&'static str),
    Mismatch {
        field: &'static str,
        expected: String,
        found: String,
    },
    Unreadable(String),
    /// Reading failed for a reason that says nothing about the file (out of file
    /// descriptors or memory, an I/O error): a miss, but the snapshot is kept.
    Transient(String),
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::BadMagic => f.write_str("not a snapshot file (bad magic)"),
            Defect::UnsupportedFormat(v) => {
                write!(f, "format version {v}, this build reads {FORMAT_VERSION}")
            }
            Defect::Truncated { expected, actual } => {
                write!(f, "truncated: {actual} bytes of {expected}")
            }
            Defect::TrailingBytes { expected, actual } => {
                write!(f, "{actual} bytes where the header says {expected}")
            }
            Defect::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:016x}, computed {computed:016x}"
            ),
            Defect::BadName(what) => write!(f, "invalid {what} in header"),
            Defect::Mismatch {
                field,
                expected,
                found,
            } => write!(f, "{field} is {found}, expected {expected}"),
            Defect::Unreadable(e) => write!(f, "unreadable: {e}"),
            Defect::Transient(e) => write!(f, "not read this time: {e}"),
        }
    }
}

/// What a verified header says.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) version: u32,
    pub(crate) sequence: u64,
    pub(crate) kind: ResourceKind,
    pub(crate) id: ResourceId,
}

/// What the index expects a file to hold.
#[derive(Debug, Clone)]
pub(crate) struct Expected<'a> {
    pub(crate) id: &'a ResourceId,
    pub(crate) kind: &'a ResourceKind,
    pub(crate) version: u32,
    pub(crate) sequence: u64,
}

impl Header {
    fn check(&self, expected: &Expected<'_>) -> Result<(), Defect> {
        fn mismatch(field: &'static str, e: impl fmt::Display, f: impl fmt::Display) -> Defect {
            Defect::Mismatch {
                field,
                expected: e.to_string(),
                found: f.to_string(),
            }
        }
        if self.kind != *expected.kind {
            return Err(mismatch("kind", expected.kind, &self.kind));
        }
        if self.id != *expected.id {
            return Err(mismatch("id", expected.id, &self.id));
        }
        if self.sequence != expected.sequence {
            return Err(mismatch("sequence", expected.sequence, self.sequence));
        }
        if self.version != expected.version {
            return Err(mismatch("codec version", expected.version, self.version));
        }
        Ok(())
    }
}

/// The length of the file holding a snapshot with these parts.
pub(crate) fn image_len(kind: &ResourceKind, id: &ResourceId, payload_len: usize) -> u64 {
    len_u64(HEADER_LEN)
        .saturating_add(len_u64(kind.as_str().len()))
        .saturating_add(len_u64(id.as_str().len()))
        .saturating_add(len_u64(payload_len))
}

/// Everything in a snapshot file before the payload: the fixed header (with the
/// checksum over all of the file) and the kind and id. The payload is not copied; the
/// file is this prefix followed by `payload`. `None` if the kind or id is longer than 4 GiB.
pub(crate) fn prefix(
    kind: &ResourceKind,
    id: &ResourceId,
    version: u32,
    sequence: u64,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let kind = kind.as_str().as_bytes();
    let id = id.as_str().as_bytes();
    let kind_len = u32::try_from(kind.len()).ok()?;
    let id_len = u32::try_from(id.len()).ok()?;
    let mut out = Vec::with_capacity(HEADER_LEN + kind.len() + id.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&len_u64(payload.len()).to_le_bytes());
    out.extend_from_slice(&kind_len.to_le_bytes());
    out.extend_from_slice(&id_len.to_le_bytes());
    let mut hasher = Xxh3::new();
    hasher.update(&out);
    hasher.update(kind);
    hasher.update(id);
    hasher.update(payload);
    out.extend_from_slice(&hasher.digest().to_le_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(id);
    Some(out)
}

struct Fixed {
    version: u32,
    sequence: u64,
    kind_len: u64,
    id_len: u64,
    checksum: u64,
    total: u64,
}

fn le<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// Parses the fixed header and checks the file's length against it.
fn parse_fixed(head: &[u8; HEADER_LEN], actual: u64) -> Result<Fixed, Defect> {
    if head[..8] != MAGIC {
        return Err(Defect::BadMagic);
    }
    let format = u32::from_le_bytes(le(head, 8));
    if format != FORMAT_VERSION {
        return Err(Defect::UnsupportedFormat(format));
    }
    let payload_len = u64::from_le_bytes(le(head, 24));
    let kind_len = u64::from(u32::from_le_bytes(le(head, 32)));
    let id_len = u64::from(u32::from_le_bytes(le(head, 36)));
    let expected = len_u64(HEADER_LEN)
        .checked_add(kind_len)
        .and_then(|n| n.checked_add(id_len))
        .and_then(|n| n.checked_add(payload_len))
        .unwrap_or(u64::MAX);
    if actual < expected {
        return Err(Defect::Truncated { expected, actual });
    }
    if actual > expected {
        return Err(Defect::TrailingBytes { expected, actual });
    }
    Ok(Fixed {
        version: u32::from_le_bytes(le(head, 12)),
        sequence: u64::from_le_bytes(le(head, 16)),
        kind_len,
        id_len,
        checksum: u64::from_le_bytes(le(head, 40)),
        total: expected,
    })
}

fn names(fixed: &Fixed, names: &[u8]) -> Result<(ResourceKind, ResourceId), Defect> {
    let split = usize::try_from(fixed.kind_len).map_err(|_| Defect::BadName("kind"))?;
    let (kind, id) = names.split_at(split);
    let kind = std::str::from_utf8(kind)
        .ok()
        .and_then(|k| k.parse().ok())
        .ok_or(Defect::BadName("kind"))?;
    let id = std::str::from_utf8(id)
        .ok()
        .and_then(|i| ResourceId::new(i).ok())
        .ok_or(Defect::BadName("id"))?;
    Ok((kind, id))
}

fn check_sum(stored: u64, computed: u64) -> Result<(), Defect> {
    if stored == computed {
        Ok(())
    } else {
        Err(Defect::Checksum { stored, computed })
    }
}

/// Verifies a whole file image against the index's expectations; returns the payload.
pub(crate) fn verify<'a>(image: &'a [u8], expected: &Expected<'_>) -> Result<&'a [u8], Defect> {
    let head: &[u8; HEADER_LEN] = image
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(Defect::Truncated {
            expected: len_u64(HEADER_LEN),
            actual: len_u64(image.len()),
        })?;
    let fixed = parse_fixed(head, len_u64(image.len()))?;
    // parse_fixed checked that the lengths add up to image.len(), so this fits in usize.
    let names_end = HEADER_LEN
        + usize::try_from(fixed.kind_len + fixed.id_len).map_err(|_| Defect::BadName("id"))?;
    let mut hasher = Xxh3::new();
    hasher.update(&image[..CHECKED_HEADER]);
    hasher.update(&image[HEADER_LEN..]);
    check_sum(fixed.checksum, hasher.digest())?;
    let (kind, id) = names(&fixed, &image[HEADER_LEN..names_end])?;
    let header = Header {
        version: fixed.version,
        sequence: fixed.sequence,
        kind,
        id,
    };
    header.check(expected)?;
    Ok(&image[names_end..])
}

/// A missing file is a defect of the snapshot; any other read error is transient.
pub(crate) fn read_error(e: io::Error) -> Defect {
    if e.kind() == io::ErrorKind::NotFound {
        Defect::Unreadable(e.to_string())
    } else {
        Defect::Transient(e.to_string())
    }
}

/// Reads the snapshot at `path` straight into a buffer for its payload alone (no copy
/// of the whole file), checking everything [`verify`] checks.
pub(crate) fn read_payload(path: &Path, expected: &Expected<'_>) -> Result<Vec<u8>, Defect> {
    let unreadable = read_error;
    let mut file = File::open(path).map_err(unreadable)?;
    let actual = file.metadata().map_err(unreadable)?.len();
    let mut head = [0u8; HEADER_LEN];
    if actual < len_u64(HEADER_LEN) {
        return Err(Defect::Truncated {
            expected: len_u64(HEADER_LEN),
            actual,
        });
    }
    file.read_exact(&mut head).map_err(unreadable)?;
    let fixed = parse_fixed(&head, actual)?;
    let names_len =
        usize::try_from(fixed.kind_len + fixed.id_len).map_err(|_| Defect::BadName("id"))?;
    let mut names_buf = vec![0u8; names_len];
    file.read_exact(&mut names_buf).map_err(unreadable)?;
    let payload_len = fixed.total - len_u64(HEADER_LEN) - len_u64(names_len);
    let mut payload =
        Vec::with_capacity(usize::try_from(payload_len).map_err(|_| Defect::BadName("id"))?);
    file.take(payload_len)
        .read_to_end(&mut payload)
        .map_err(unreadable)?;
    if len_u64(payload.len()) != payload_len {
        // The file shrank while it was read.
        return Err(Defect::Truncated {
            expected: fixed.total,
            actual: fixed.total - payload_len + len_u64(payload.len()),
        });
    }
    let mut hasher = Xxh3::new();
    hasher.update(&head[..CHECKED_HEADER]);
    hasher.update(&names_buf);
    hasher.update(&payload);
    check_sum(fixed.checksum, hasher.digest())?;
    let (kind, id) = names(&fixed, &names_buf)?;
    Header {
        version: fixed.version,
        sequence: fixed.sequence,
        kind,
        id,
    }
    .check(expected)?;
    Ok(payload)
}

/// Verifies a file on disk without holding it in memory; returns its header and length.
pub(crate) fn verify_file(path: &Path) -> Result<(Header, u64), Defect> {
    let unreadable = |e: io::Error| Defect::Unreadable(e.to_string());
    let mut file = File::open(path).map_err(unreadable)?;
    let actual = file.metadata().map_err(unreadable)?.len();
    let mut head = [0; HEADER_LEN];
    if actual < len_u64(HEADER_LEN) {
        return Err(Defect::Truncated {
            expected: len_u64(HEADER_LEN),
            actual,
        });
    }
    file.read_exact(&mut head).map_err(unreadable)?;
    let fixed = parse_fixed(&head, actual)?;
    let names_len =
        usize::try_from(fixed.kind_len + fixed.id_len).map_err(|_| Defect::Truncated {
            expected: fixed.total,
            actual,
        })?;
    let mut name_bytes = vec![0; names_len];
    file.read_exact(&mut name_bytes).map_err(unreadable)?;
    let mut hasher = Xxh3::new();
    hasher.update(&head[..CHECKED_HEADER]);
    hasher.update(&name_bytes);
    let mut buf = vec![0; 64 * 1024];
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        read += len_u64(n);
        hasher.update(&buf[..n]);
    }
    let payload_len = fixed.total - len_u64(HEADER_LEN) - len_u64(names_len);
    if read != payload_len {
        // The file changed length while it was read.
        return Err(Defect::Truncated {
            expected: fixed.total,
            actual: len_u64(HEADER_LEN + names_len) + read,
        });
    }
    check_sum(fixed.checksum, hasher.digest())?;
    let (kind, id) = names(&fixed, &name_bytes)?;
    Ok((
        Header {
            version: fixed.version,
            sequence: fixed.sequence,
            kind,
            id,
        },
        actual,
    ))
}

/// The file name of a snapshot: a hash of the id (ids may hold any character) and the sequence.
pub(crate) fn file_name(id: &ResourceId, sequence: u64) -> String {
    format!(
        "{:016x}-{sequence:016x}.{SNAPSHOT_EXT}",
        xxh3_64(id.as_str().as_bytes())
    )
}

/// Extension of a committed snapshot file.
pub(crate) const SNAPSHOT_EXT: &str = "snap";
/// Extension of a snapshot file being written.
pub(crate) const TEMP_EXT: &str = "tmp";
