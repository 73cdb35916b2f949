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
use crate::failpoint::FailPoint;

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

/// The fixed header of a snapshot file, read and checked against the file's length.
///
/// [`Layout::read`] is the only reader of the fixed header: the in-memory check
/// ([`verify`]), the restore from disk ([`read_payload`]) and the recovery at open
/// ([`verify_file`]) all go through it, so a header means the same to each of them.
struct Layout {
    version: u32,
    sequence: u64,
    checksum: u64,
    kind_len: usize,
    /// The kind and the id.
    names_len: usize,
    payload_len: usize,
    /// The file's length: the header, the names and the payload.
    total: u64,
}

fn le<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

impl Layout {
    /// Reads the fixed header at the start of `head`, the first bytes of a file of
    /// `actual` bytes, and checks the file's length against it.
    ///
    /// Lengths that add up to more than a `u64` (or than this platform can address) claim
    /// more bytes than any file holds, so they are [`Defect::Truncated`] with an expected
    /// length of `u64::MAX`, whichever path reads the header.
    fn read(head: &[u8], actual: u64) -> Result<Layout, Defect> {
        let Some(head) = head.get(..HEADER_LEN) else {
            return Err(Defect::Truncated {
                expected: len_u64(HEADER_LEN),
                actual,
            });
        };
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
        let overflow = Defect::Truncated {
            expected: u64::MAX,
            actual,
        };
        let names_len = kind_len + id_len; // two u32s: no overflow
        let total = len_u64(HEADER_LEN)
            .checked_add(names_len)
            .and_then(|n| n.checked_add(payload_len))
            .ok_or_else(|| overflow.clone())?;
        if actual < total {
            return Err(Defect::Truncated {
                expected: total,
                actual,
            });
        }
        if actual > total {
            return Err(Defect::TrailingBytes {
                expected: total,
                actual,
            });
        }
        let addressable = |n: u64| usize::try_from(n).map_err(|_| overflow.clone());
        Ok(Layout {
            version: u32::from_le_bytes(le(head, 12)),
            sequence: u64::from_le_bytes(le(head, 16)),
            checksum: u64::from_le_bytes(le(head, 40)),
            kind_len: addressable(kind_len)?,
            names_len: addressable(names_len)?,
            payload_len: addressable(payload_len)?,
            total,
        })
    }

    /// Checks the checksum `computed` over the file and reads the kind and id from
    /// `names` (the bytes after the fixed header): the header, once the file is trusted.
    fn header(&self, names: &[u8], computed: u64) -> Result<Header, Defect> {
        if self.checksum != computed {
            return Err(Defect::Checksum {
                stored: self.checksum,
                computed,
            });
        }
        let (kind, id) = names.split_at(self.kind_len);
        let kind = std::str::from_utf8(kind)
            .ok()
            .and_then(|k| k.parse().ok())
            .ok_or(Defect::BadName("kind"))?;
        let id = std::str::from_utf8(id)
            .ok()
            .and_then(|i| ResourceId::new(i).ok())
            .ok_or(Defect::BadName("id"))?;
        Ok(Header {
            version: self.version,
            sequence: self.sequence,
            kind,
            id,
        })
    }
}

/// Verifies a whole file image against the index's expectations; returns the payload.
pub(crate) fn verify<'a>(image: &'a [u8], expected: &Expected<'_>) -> Result<&'a [u8], Defect> {
    let layout = Layout::read(image, len_u64(image.len()))?;
    let names_end = HEADER_LEN + layout.names_len;
    let mut hasher = Xxh3::new();
    hasher.update(&image[..CHECKED_HEADER]);
    hasher.update(&image[HEADER_LEN..]);
    let header = layout.header(&image[HEADER_LEN..names_end], hasher.digest())?;
    header.check(expected)?;
    Ok(&image[names_end..])
}

/// A missing file is a defect of the snapshot; any other read error is transient: out
/// of file descriptors or memory, interrupted, a failing disk or a link that cannot be
/// followed say nothing about the bytes the file holds.
pub(crate) fn read_error(e: io::Error) -> Defect {
    if e.kind() == io::ErrorKind::NotFound {
        Defect::Unreadable(e.to_string())
    } else {
        Defect::Transient(e.to_string())
    }
}

/// A snapshot file opened for reading, its fixed header and names read: the payload is next.
struct Opened {
    file: File,
    layout: Layout,
    /// The checksum over the header and names so far.
    hasher: Xxh3,
    names: Vec<u8>,
}

impl Opened {
    /// Opens `path` and reads everything before the payload; `unreadable` says what an
    /// I/O error means. An armed read fault of `fail` fails the open.
    fn open(
        path: &Path,
        fail: &FailPoint,
        unreadable: fn(io::Error) -> Defect,
    ) -> Result<Opened, Defect> {
        fail.check_read().map_err(unreadable)?;
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
        let layout = Layout::read(&head, actual)?;
        let mut names = vec![0u8; layout.names_len];
        file.read_exact(&mut names).map_err(unreadable)?;
        let mut hasher = Xxh3::new();
        hasher.update(&head[..CHECKED_HEADER]);
        hasher.update(&names);
        Ok(Opened {
            file,
            layout,
            hasher,
            names,
        })
    }

    /// Fails unless `read` payload bytes were all the header says: the file changed
    /// length while it was read.
    fn check_payload_read(&self, read: u64) -> Result<(), Defect> {
        let payload_len = len_u64(self.layout.payload_len);
        if read == payload_len {
            Ok(())
        } else {
            Err(Defect::Truncated {
                expected: self.layout.total,
                actual: self.layout.total - payload_len + read,
            })
        }
    }

    /// The verified header, once the payload has gone through the hasher.
    fn header(&self) -> Result<Header, Defect> {
        self.layout.header(&self.names, self.hasher.digest())
    }
}

/// Reads the snapshot at `path` straight into a buffer for its payload alone (no copy
/// of the whole file), checking everything [`verify`] checks.
pub(crate) fn read_payload(
    path: &Path,
    expected: &Expected<'_>,
    fail: &FailPoint,
) -> Result<Vec<u8>, Defect> {
    let mut opened = Opened::open(path, fail, read_error)?;
    let mut payload = Vec::with_capacity(opened.layout.payload_len);
    (&mut opened.file)
        .take(len_u64(opened.layout.payload_len))
        .read_to_end(&mut payload)
        .map_err(read_error)?;
    opened.check_payload_read(len_u64(payload.len()))?;
    opened.hasher.update(&payload);
    opened.header()?.check(expected)?;
    Ok(payload)
}

/// Verifies a file on disk without holding it in memory; returns its header and length.
///
/// Only what reading proves is a defect (see [`read_error`]): an error opening or reading
/// the file, such as running out of file descriptors, is [`Defect::Transient`].
pub(crate) fn verify_file(path: &Path, fail: &FailPoint) -> Result<(Header, u64), Defect> {
    let mut opened = Opened::open(path, fail, read_error)?;
    let mut buf = vec![0; 64 * 1024];
    let mut read = 0u64;
    loop {
        let n = opened.file.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            break;
        }
        read += len_u64(n);
        opened.hasher.update(&buf[..n]);
    }
    opened.check_payload_read(read)?;
    Ok((opened.header()?, opened.layout.total))
}

/// The file name of a snapshot: a hash of the id (ids may hold any character) and the sequence.
pub(crate) fn file_name(id: &ResourceId, sequence: u64) -> String {
    format!("{:016x}-{sequence:016x}.{SNAPSHOT_EXT}", id_hash(id))
}

/// The hash of `id` that names its snapshot files.
pub(crate) fn id_hash(id: &ResourceId) -> u64 {
    xxh3_64(id.as_str().as_bytes())
}

/// The id hash and sequence in a name [`file_name`] made, for files that cannot be read.
pub(crate) fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SNAPSHOT_EXT)?.strip_suffix('.')?;
    let (hash, sequence) = stem.split_once('-')?;
    let hex = |s: &str| {
        (s.len() == 16)
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    Some((hex(hash)?, hex(sequence)?))
}

/// Extension of a committed snapshot file.
pub(crate) const SNAPSHOT_EXT: &str = "snap";
/// Extension of a snapshot file being written.
pub(crate) const TEMP_EXT: &str = "tmp";

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: ResourceKind = ResourceKind::RenderCache;

    fn image(payload: &[u8]) -> Vec<u8> {
        let id = ResourceId::from("frame-1");
        let mut image = prefix(&KIND, &id, 3, 7, payload).expect("short names");
        image.extend_from_slice(payload);
        image
    }

    /// Checks that the in-memory check, the restore from disk and the recovery at open
    /// all find `defect` in `image`.
    fn check(image: &[u8], defect: &Defect) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("x.snap");
        std::fs::write(&path, image).expect("written");
        let id = ResourceId::from("frame-1");
        let expected = Expected {
            id: &id,
            kind: &KIND,
            version: 3,
            sequence: 7,
        };
        assert_eq!(
            verify(image, &expected).err().as_ref(),
            Some(defect),
            "verify"
        );
        assert_eq!(
            read_payload(&path, &expected, &FailPoint::new())
                .err()
                .as_ref(),
            Some(defect),
            "read_payload"
        );
        assert_eq!(
            verify_file(&path, &FailPoint::new()).err().as_ref(),
            Some(defect),
            "verify_file"
        );
    }

    #[test]
    fn every_reader_finds_the_same_defect_in_a_header() {
        let sound = image(b"payload");
        let len = len_u64(sound.len());

        // Lengths that overflow: a payload length near u64::MAX.
        let mut overflowing = sound.clone();
        overflowing[24..32].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
        check(
            &overflowing,
            &Defect::Truncated {
                expected: u64::MAX,
                actual: len,
            },
        );

        check(
            &sound[..HEADER_LEN - 1],
            &Defect::Truncated {
                expected: len_u64(HEADER_LEN),
                actual: len_u64(HEADER_LEN - 1),
            },
        );
        check(
            &sound[..sound.len() - 1],
            &Defect::Truncated {
                expected: len,
                actual: len - 1,
            },
        );
        let mut trailing = sound.clone();
        trailing.push(0);
        check(
            &trailing,
            &Defect::TrailingBytes {
                expected: len,
                actual: len + 1,
            },
        );
        let mut bad_magic = sound.clone();
        bad_magic[0] ^= 1;
        check(&bad_magic, &Defect::BadMagic);
        let mut future = sound.clone();
        future[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        check(&future, &Defect::UnsupportedFormat(FORMAT_VERSION + 1));
    }

    #[test]
    fn file_names_parse_back() {
        let id = ResourceId::from("any/id with spaces");
        let name = file_name(&id, 0x1234);
        assert_eq!(parse_file_name(&name), Some((id_hash(&id), 0x1234)));
        for bad in [
            "x.snap",
            "1-2.snap",
            "0000000000000000-0000000000000001.tmp",
            "",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_reader_rejects_a_flipped_payload_byte_by_its_checksum() {
        let mut image = image(b"payload");
        let stored = u64::from_le_bytes(le(&image, 40));
        let last = image.len() - 1;
        image[last] ^= 0x40;
        let mut hasher = Xxh3::new();
        hasher.update(&image[..CHECKED_HEADER]);
        hasher.update(&image[HEADER_LEN..]);
        let computed = hasher.digest();
        check(&image, &Defect::Checksum { stored, computed });
    }
}
