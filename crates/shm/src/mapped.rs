//! The files this process maps, so that safe code cannot map one file twice where a
//! writable view of one mapping could alias a view of the other.
//!
//! A [`SharedSegment`](crate::SharedSegment) hands out `&mut [u8]` over its mapping and an
//! [`NpyFile`](crate::npy::NpyFile) hands out `&[u8]`. Two mappings of the same file are
//! the same physical pages, so a second handle to a segment (or a read-only map of it)
//! would let safe code hold a `&mut` and a `&` to the same bytes. Every such mapping
//! therefore first takes a [`Claim`] on the file's identity (device and inode, which
//! different names, paths and hard links of one file share): a segment claims its file
//! alone, `.npy` readers share theirs with other readers only.
//!
//! The identity stays valid for the claim's life: the claim lives no longer than the
//! mapping, and a mapped file's inode cannot be freed (and its number reused) while the
//! mapping exists.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, PoisonError};

/// A file's identity within the system: its device and inode numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of the file `meta` describes (from `fstat` of an open descriptor, so
    /// that it names the file actually opened, not whatever a path names by now).
    pub(crate) fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Who maps a file in this process.
#[derive(Debug, Clone, Copy)]
enum Holders {
    /// One [`SharedSegment`](crate::SharedSegment), which may write.
    Segment,
    /// This many read-only [`NpyFile`](crate::npy::NpyFile)s.
    Readers(usize),
}

impl Holders {
    fn describe(self) -> &'static str {
        match self {
            Self::Segment => "a SharedSegment",
            Self::Readers(_) => "an NpyFile",
        }
    }
}

/// Every file mapped in this process through this crate. A `BTreeMap` because its `new`
/// is `const`; the map holds one entry per mapped file, a handful.
static MAPPED: Mutex<BTreeMap<FileId, Holders>> = Mutex::new(BTreeMap::new());

/// Locks the table. No code that can panic runs while it is held (only map operations),
/// so a poisoned lock cannot hold a half-updated table: its contents are used as they are.
fn table() -> std::sync::MutexGuard<'static, BTreeMap<FileId, Holders>> {
    MAPPED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The right to map one file, held for as long as the mapping lives; released on drop.
#[derive(Debug)]
pub(crate) struct Claim {
    id: FileId,
}

impl Claim {
    /// Claims `id` for a writable mapping: refused, with a description of the holder
    /// ("a SharedSegment", "an NpyFile"), while anything else in this process maps it.
    pub(crate) fn exclusive(id: FileId) -> Result<Self, &'static str> {
        let mut table = table();
        if let Some(holders) = table.get(&id) {
            return Err(holders.describe());
        }
        table.insert(id, Holders::Segment);
        Ok(Self { id })
    }

    /// Claims `id` for a read-only mapping: refused while a segment maps it.
    pub(crate) fn shared(id: FileId) -> Result<Self, &'static str> {
        let mut table = table();
        match table.get_mut(&id) {
            Some(Holders::Segment) => return Err(Holders::Segment.describe()),
            Some(Holders::Readers(n)) => *n += 1,
            None => {
                table.insert(id, Holders::Readers(1));
            }
        }
        Ok(Self { id })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut table = table();
        match table.get_mut(&self.id) {
            Some(Holders::Readers(n)) if *n > 1 => *n -= 1,
            Some(_) => {
                table.remove(&self.id);
            }
            None => debug_assert!(false, "a claim on {:?} was not in the table", self.id),
        }
    }
}
