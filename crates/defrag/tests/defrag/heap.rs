//! Fragmenting a heap on purpose: blocks allocated in order, some freed, some kept.

use std::ffi::c_void;
use std::ptr::NonNull;

/// An allocator reached through its C interface, so that a test can fragment a heap
/// other than the global allocator's.
#[derive(Debug)]
pub(crate) struct Heap {
    pub(crate) name: &'static str,
    malloc: unsafe extern "C" fn(usize) -> *mut c_void,
    free: unsafe extern "C" fn(*mut c_void),
}

/// The C library's `malloc`: glibc's heap, the one Rust's system allocator uses.
pub(crate) static SYSTEM: Heap = Heap {
    name: "system malloc",
    malloc: libc::malloc,
    free: libc::free,
};

/// mimalloc's heap.
#[cfg(feature = "mimalloc")]
pub(crate) static MIMALLOC: Heap = Heap {
    name: "mimalloc",
    malloc: libmimalloc_sys::mi_malloc,
    free: libmimalloc_sys::mi_free,
};

/// jemalloc's heap (its prefixed `malloc`, which is not the process's).
#[cfg(feature = "jemalloc")]
pub(crate) static JEMALLOC: Heap = Heap {
    name: "jemalloc",
    malloc: tikv_jemalloc_sys::malloc,
    free: tikv_jemalloc_sys::free,
};

/// Live blocks of one [`Heap`], in allocation order; freed on drop.
#[derive(Debug)]
pub(crate) struct Blocks {
    heap: &'static Heap,
    blocks: Vec<Option<(NonNull<c_void>, usize)>>,
}

impl Blocks {
    /// Allocates blocks of `size()` bytes until `total` bytes are allocated, writing to
    /// every byte so that each page is resident.
    pub(crate) fn allocate(
        heap: &'static Heap,
        total: usize,
        mut size: impl FnMut() -> usize,
    ) -> Self {
        let mut blocks = Vec::with_capacity(total / 256);
        let mut allocated = 0;
        while allocated < total {
            let bytes = size();
            // SAFETY: any size may be asked of `malloc`; the result is checked for null.
            let ptr = unsafe { (heap.malloc)(bytes) };
            let ptr = NonNull::new(ptr).expect("the heap has memory");
            // SAFETY: `ptr` points to `bytes` writable bytes that nothing else uses.
            unsafe { ptr.cast::<u8>().as_ptr().write_bytes(0xA5, bytes) };
            blocks.push(Some((ptr, bytes)));
            allocated += bytes;
        }
        Blocks { heap, blocks }
    }

    /// How many blocks were allocated.
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Frees every live block whose index `keep` rejects; returns the bytes freed.
    pub(crate) fn free_unless(&mut self, keep: impl Fn(usize) -> bool) -> u64 {
        let mut freed = 0;
        for (index, slot) in self.blocks.iter_mut().enumerate() {
            if keep(index) {
                continue;
            }
            if let Some((ptr, bytes)) = slot.take() {
                // SAFETY: `ptr` came from this heap's `malloc` and is freed once (the
                // slot is emptied).
                unsafe { (self.heap.free)(ptr.as_ptr()) };
                freed += bytes as u64;
            }
        }
        freed
    }
}

impl Drop for Blocks {
    fn drop(&mut self) {
        self.free_unless(|_| false);
    }
}

/// A deterministic xorshift, for block sizes.
#[derive(Debug)]
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    /// A size drawn uniformly from `min..=max`.
    pub(crate) fn size(&mut self, min: usize, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        min + (self.0 % (max - min + 1) as u64) as usize
    }
}
