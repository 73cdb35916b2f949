//! Allocation traces: [`AllocTrace`], parsed from lines `a,ID,BYTES` (allocate) and
//! `f,ID,BYTES` (free), `#` comments and blank lines ignored, as in
//! `shared/data/traces/*.trace`; and timed replays of them through memwarden's pool
//! ([`replay_pool`]) and the system allocators ([`Malloc`]), each touching the first
//! byte of every block (a peer that hands out fresh pages pays for faulting one in).

use std::collections::HashMap;
use std::fmt;
use std::hint::black_box;
use std::time::{Duration, Instant};

use memwarden_pool::Block;

/// Alignment every engine allocates with (glibc's `malloc` guarantees 16).
pub const ALIGN: usize = 16;

/// One operation; `slot` is a dense index standing for the allocation's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocOp {
    /// An allocation (else a free).
    pub alloc: bool,
    /// Dense index of the id: an id allocated again after its free reuses it.
    pub slot: u32,
    /// Bytes (at least 1 for an allocation).
    pub size: usize,
}

/// A parsed trace. Allocations still live at the end get frees appended, so every
/// replay starts and ends with nothing live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocTrace {
    /// The trace's name (a file stem).
    pub name: String,
    /// The operations.
    pub ops: Vec<AllocOp>,
    /// How many slots the operations use.
    pub slots: usize,
}

/// Why a trace could not be parsed: the line (1-based) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for TraceError {}

impl AllocTrace {
    /// Parses a trace. Refused: a line that is not `a|f,ID,BYTES`, a byte count that is
    /// not a number, an allocation of an id already live, a free of an id not live.
    pub fn parse(name: impl Into<String>, text: &str) -> Result<Self, TraceError> {
        // id -> (slot, live size)
        let mut ids: HashMap<&str, (u32, Option<usize>)> = HashMap::new();
        let mut ops = Vec::new();
        let mut live = 0usize;
        for (no, line) in text.lines().enumerate() {
            let err = |message: String| TraceError {
                line: no + 1,
                message,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [kind, id, bytes] = fields[..] else {
                return Err(err(format!("expected op,id,bytes, found {line:?}")));
            };
            let size: usize = bytes
                .parse()
                .map_err(|_| err(format!("{bytes:?} is not a byte count")))?;
            let next = ids.len() as u32;
            let entry = ids.entry(id).or_insert((next, None));
            let slot = entry.0;
            let alloc = match kind {
                "a" => {
                    if entry.1.is_some() {
                        return Err(err(format!("id {id} allocated again while live")));
                    }
                    entry.1 = Some(size);
                    live += 1;
                    true
                }
                "f" => {
                    if entry.1.take().is_none() {
                        return Err(err(format!("free of id {id}, which is not allocated")));
                    }
                    live -= 1;
                    false
                }
                other => return Err(err(format!("unknown op {other:?} (a or f)"))),
            };
            ops.push(AllocOp {
                alloc,
                slot,
                size: size.max(1),
            });
        }
        let mut left: Vec<(u32, usize)> = ids
            .values()
            .filter_map(|&(slot, size)| size.map(|s| (slot, s)))
            .collect();
        debug_assert_eq!(left.len(), live);
        left.sort_unstable();
        ops.extend(left.into_iter().map(|(slot, size)| AllocOp {
            alloc: false,
            slot,
            size,
        }));
        Ok(Self {
            name: name.into(),
            slots: ids.len(),
            ops,
        })
    }

    /// The most bytes live at once.
    pub fn peak_bytes(&self) -> u64 {
        let mut sizes = vec![0usize; self.slots];
        let (mut live, mut peak) = (0u64, 0u64);
        for op in &self.ops {
            if op.alloc {
                sizes[op.slot as usize] = op.size;
                live += op.size as u64;
                peak = peak.max(live);
            } else {
                live -= sizes[op.slot as usize] as u64;
            }
        }
        peak
    }
}

/// Writes the first byte of a block, as every replay does.
///
/// # Safety
///
/// `ptr` is the first byte of a live allocation of at least one byte.
pub unsafe fn touch(ptr: *mut u8) {
    // SAFETY: the caller's promise.
    unsafe { ptr.write_volatile(1) };
}

/// Replays `ops` through a pool's `allocate` (sizes at [`ALIGN`]), keeping block `i` in
/// `slots[i]`; the time it took.
pub fn replay_pool(
    ops: &[AllocOp],
    slots: &mut [Option<Block>],
    allocate: impl Fn(usize) -> Block,
) -> Duration {
    let start = Instant::now();
    for op in ops {
        let slot = &mut slots[op.slot as usize];
        if op.alloc {
            let mut block = allocate(op.size);
            // SAFETY: the block is live and holds at least one byte (sizes are >= 1).
            unsafe { touch(block.as_mut_ptr()) };
            *slot = Some(block);
        } else {
            drop(black_box(slot.take()));
        }
    }
    start.elapsed()
}

/// A system allocator, called directly (not as the global allocator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malloc {
    /// glibc's `malloc` / `free`.
    Glibc,
    /// `mi_malloc_aligned(size, ALIGN)` / `mi_free`.
    Mimalloc,
}

impl Malloc {
    /// Replays `ops`, keeping allocation `i` in `slots[i]` (null when free); the time it
    /// took.
    ///
    /// # Panics
    ///
    /// When the allocator returns null.
    pub fn replay(self, ops: &[AllocOp], slots: &mut [*mut u8]) -> Duration {
        let start = Instant::now();
        for op in ops {
            let slot = &mut slots[op.slot as usize];
            if op.alloc {
                let ptr = self.alloc(op.size);
                assert!(!ptr.is_null(), "{self:?} ran out of memory");
                // SAFETY: a live allocation of at least one byte (sizes are >= 1).
                unsafe { touch(ptr) };
                *slot = ptr;
            } else {
                self.free(black_box(*slot));
                *slot = std::ptr::null_mut();
            }
        }
        start.elapsed()
    }

    fn alloc(self, size: usize) -> *mut u8 {
        match self {
            // SAFETY: plain allocation; the caller checks the result for null.
            Self::Glibc => unsafe { libc::malloc(size).cast() },
            // SAFETY: as above.
            Self::Mimalloc => unsafe { libmimalloc_sys::mi_malloc_aligned(size, ALIGN).cast() },
        }
    }

    fn free(self, ptr: *mut u8) {
        match self {
            // SAFETY: `ptr` came from this allocator's `alloc` and is freed once (its
            // slot is cleared).
            Self::Glibc => unsafe { libc::free(ptr.cast()) },
            // SAFETY: as above.
            Self::Mimalloc => unsafe { libmimalloc_sys::mi_free(ptr.cast()) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_closes_what_is_left_live() {
        let t = AllocTrace::parse("t", "# c\na,x,100\n\na,y,50\nf,x,100\na,x,10\n")
            .expect("a well-formed trace");
        assert_eq!(t.slots, 2);
        assert_eq!(t.ops.len(), 6);
        assert_eq!(
            t.ops[3],
            AllocOp {
                alloc: true,
                slot: 0,
                size: 10
            }
        );
        assert!(t.ops[4..].iter().all(|op| !op.alloc));
        assert_eq!(t.peak_bytes(), 150);
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, line, what) in [
            ("a,1,10\nx,1,10\n", 2, "unknown op"),
            ("a,1\n", 1, "expected op,id,bytes"),
            ("a,1,ten\n", 1, "not a byte count"),
            ("a,1,10\nf,2,10\n", 2, "not allocated"),
            ("a,1,10\nf,1,10\nf,1,10\n", 3, "not allocated"),
            ("a,1,10\na,1,10\n", 2, "allocated again"),
        ] {
            let err = AllocTrace::parse("t", text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}");
            assert!(err.message.contains(what), "{text:?}: {err}");
        }
    }
}
