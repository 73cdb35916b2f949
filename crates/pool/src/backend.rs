//! [`Backend`]: where the pool's segments come from, and the two host backends.
//!
//! The allocator logic only sees addresses and sizes; everything that touches a real
//! memory system (the heap, `mmap`, `mlock`, and later a device driver) lives behind
//! this trait.

use std::alloc::Layout;
use std::fmt;
use std::io;
use std::ptr::NonNull;

/// Where a [`MemoryPool`](crate::MemoryPool)'s memory comes from.
///
/// A backend that reserves gets one large reservation per pool (one more for pinned
/// blocks) and calls to commit and decommit page ranges in it; one that cannot gets
/// requests for a few whole segments (2 MiB, 20 MiB or the exact size of a large
/// request). The pool carves blocks out itself: a backend never sees single blocks.
///
/// # Safety
///
/// The pool hands out blocks of this memory to safe code, which reads and writes them
/// as slices, so an implementation must keep these promises:
///
/// - [`allocate`](Backend::allocate) returns either `None` or a pointer to `size`
///   **initialised** bytes (zeroed, say) aligned to `align`, valid for reads and writes
///   from this process and used by nothing else until the pool hands it back through
///   [`deallocate`](Backend::deallocate).
/// - [`reserve`](Backend::reserve) returns either `None` or `size` bytes of address
///   space aligned to `align` that nothing else uses until
///   [`release`](Backend::release).
/// - After a successful [`commit`](Backend::commit) the range is valid for reads and
///   writes and holds initialised bytes.
/// - After [`decommit`](Backend::decommit) the range's memory may be gone; if
///   [`decommit_keeps_access`](Backend::decommit_keeps_access) says true, the range
///   stays valid for reads and writes and reads as initialised bytes (the pool then
///   hands it out again without committing it).
///
/// A backend whose memory the host cannot address (a GPU's) must say so in
/// [`host_accessible`](Backend::host_accessible); the pool then refuses to make slices
/// of its blocks. "Page" below means the system's page size (`sysconf(_SC_PAGESIZE)`).
///
pub unsafe trait Backend: Send + Sync + fmt::Debug {
    /// A short name for logs and reports (`"system"`, `"mmap"`).
    fn name(&self) -> &'static str;

    /// Allocates one segment of `size` bytes aligned to `align` (a power of two, at least
    /// 4096); `None` when the memory system has none left.
    fn allocate(&self, size: usize, align: usize) -> Option<NonNull<u8>>;

    /// Returns a segment.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`allocate`](Backend::allocate) of this backend with the same
    /// `size` and `align`, and has not been returned yet.
    unsafe fn deallocate(&self, ptr: NonNull<u8>, size: usize, align: usize);

    /// Whether the process can read and write the memory directly (slices of blocks).
    fn host_accessible(&self) -> bool {
        true
    }

    /// Whether this backend reserves address space ([`reserve`](Backend::reserve) and
    /// the calls after it); the default says no, and the pool takes whole segments.
    fn can_reserve(&self) -> bool {
        false
    }

    /// Reserves `size` bytes of address space aligned to `align` (a power of two, at
    /// least a page) with no memory behind it: nothing is charged until
    /// [`commit`](Backend::commit). `None` when the backend cannot reserve (the default;
    /// the pool then takes whole segments from [`allocate`](Backend::allocate)) or the
    /// system refused.
    fn reserve(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let _ = (size, align);
        None
    }

    /// Backs `[ptr, ptr + len)` of a reservation with memory: afterwards it is readable
    /// and writable and holds initialised bytes (zero where never written).
    ///
    /// # Safety
    ///
    /// The range is page-aligned and lies in a reservation of this backend that is not
    /// released yet.
    unsafe fn commit(&self, ptr: NonNull<u8>, len: usize) -> io::Result<()> {
        let _ = (ptr, len);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// Gives the memory behind `[ptr, ptr + len)` back to the system, keeping the
    /// address space. The pool commits the range again before it hands any of it out,
    /// unless [`decommit_keeps_access`](Backend::decommit_keeps_access) says the range
    /// stays readable and writable (reading initialised bytes) after a decommit.
    ///
    /// # Safety
    ///
    /// The range is page-aligned, lies in a reservation of this backend and has been
    /// committed (where [`decommit_keeps_access`](Backend::decommit_keeps_access) is
    /// true, a range decommitted before still counts as committed); no block handed out
    /// overlaps it.
    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> io::Result<()> {
        let _ = (ptr, len);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// Whether a decommitted range stays readable and writable, so that the pool may
    /// hand it out again without committing it first (the system then supplies fresh
    /// zeroed pages on first touch, as Linux does after `MADV_DONTNEED`).
    fn decommit_keeps_access(&self) -> bool {
        false
    }

    /// Returns a whole reservation, committed or not.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`reserve`](Backend::reserve) of this backend with the same
    /// `size` and `align`, and has not been released yet.
    unsafe fn release(&self, ptr: NonNull<u8>, size: usize, align: usize) {
        let _ = (ptr, size, align);
    }

    /// Page-locks a range so that it is never swapped out ("pinned" memory): a whole
    /// segment, or pages of a reservation as they are charged (then unlocked page
    /// range by page range before they are decommitted, in ranges that need not match
    /// the ones locked; a released reservation is not unlocked first, as `munmap`
    /// unlocks). The default calls `mlock` on Unix and reports `Unsupported` elsewhere.
    fn lock(&self, ptr: NonNull<u8>, size: usize) -> io::Result<()> {
        mlock(ptr, size)
    }

    /// Undoes [`lock`](Backend::lock) for a range: before a whole segment is returned,
    /// or before pages of a reservation are decommitted.
    fn unlock(&self, ptr: NonNull<u8>, size: usize) {
        munlock(ptr, size);
    }
}

/// Segments from the process heap through [`std::alloc`] (the global allocator).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemBackend;

// SAFETY: `std::alloc::alloc_zeroed` returns null or `size` zeroed (so initialised)
// bytes with the layout's alignment, owned by the caller until `dealloc` with the same
// layout.
unsafe impl Backend for SystemBackend {
    fn name(&self) -> &'static str {
        "system"
    }

    fn allocate(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let layout = Layout::from_size_align(size, align).ok()?;
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: the layout has a non-zero size (checked above). Zeroed, because blocks
        // are readable from safe code; for segments this large the allocator gets fresh
        // pages from the OS, which come zeroed anyway.
        NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, size: usize, align: usize) {
        let layout =
            Layout::from_size_align(size, align).expect("the layout was valid at allocation");
        // SAFETY: the caller guarantees `ptr` came from `allocate` with this very layout.
        unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
    }
}

/// Memory mapped straight from the kernel with anonymous `mmap` (Unix only), whatever
/// the heap allocator would do. It reserves address space with `PROT_NONE` and
/// `MAP_NORESERVE` (nothing charged), commits with `mprotect`, decommits with
/// `madvise(MADV_DONTNEED)` and releases with `munmap`; a whole segment is one
/// read-write mapping.
#[cfg(unix)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MmapBackend;

#[cfg(unix)]
// SAFETY: a successful anonymous private `mmap` returns fresh, zeroed, readable and
// writable pages owned by nobody else (or, reserved with `PROT_NONE`, address space
// that `mprotect` makes so); alignments above a page are obtained by mapping more and
// unmapping the unaligned head and tail; after `MADV_DONTNEED` a private anonymous
// page reads as zero.
unsafe impl Backend for MmapBackend {
    fn name(&self) -> &'static str {
        "mmap"
    }

    fn allocate(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        map_aligned(size, align, libc::PROT_READ | libc::PROT_WRITE, 0)
    }

    fn can_reserve(&self) -> bool {
        true
    }

    fn reserve(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        map_aligned(size, align, libc::PROT_NONE, libc::MAP_NORESERVE)
    }

    unsafe fn commit(&self, ptr: NonNull<u8>, len: usize) -> io::Result<()> {
        // SAFETY: the caller guarantees the range is page-aligned inside one of our
        // reservations; changing its protection affects nothing else.
        let rc =
            unsafe { libc::mprotect(ptr.as_ptr().cast(), len, libc::PROT_READ | libc::PROT_WRITE) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> io::Result<()> {
        // SAFETY: the caller guarantees the range is page-aligned, committed, in one of
        // our private anonymous reservations, and handed out to nobody: dropping its
        // pages loses no data anyone may read, and the next touch maps zeroed pages.
        let rc = unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTNEED) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn decommit_keeps_access(&self) -> bool {
        // `MADV_DONTNEED` on a private anonymous mapping keeps its protection: the next
        // touch of a page maps a fresh zeroed one.
        true
    }

    unsafe fn release(&self, ptr: NonNull<u8>, size: usize, align: usize) {
        // SAFETY: the caller guarantees this is a reservation `reserve` made with this
        // size and alignment; unmapping it is the same as unmapping a segment.
        unsafe { self.deallocate(ptr, size, align) }
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, size: usize, _align: usize) {
        let size = size.next_multiple_of(page_size());
        // SAFETY: the caller guarantees this is a mapping `allocate` made of this size
        // (rounded the same way), not unmapped yet.
        let rc = unsafe { libc::munmap(ptr.as_ptr().cast(), size) };
        if rc != 0 {
            log::error!(
                "munmap of a {size}-byte pool segment failed: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// An anonymous private mapping of `size` bytes (rounded up to pages) aligned to
/// `align`, with protection `prot` and extra `flags`: maps more and unmaps the unaligned
/// head and tail.
#[cfg(unix)]
fn map_aligned(
    size: usize,
    align: usize,
    prot: libc::c_int,
    flags: libc::c_int,
) -> Option<NonNull<u8>> {
    if size == 0 || !align.is_power_of_two() {
        return None;
    }
    let page = page_size();
    let size = size.checked_next_multiple_of(page)?;
    let extra = align.saturating_sub(page);
    let map_len = size.checked_add(extra)?;
    // SAFETY: an anonymous private mapping of `map_len` bytes at an address the kernel
    // chooses; no existing memory is affected.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    let start = (base as usize).next_multiple_of(align);
    let head = start - base as usize;
    let tail = map_len - head - size;
    if head > 0 {
        // SAFETY: `[base, base + head)` is the page-aligned head of our own mapping.
        unsafe { libc::munmap(base, head) };
    }
    if tail > 0 {
        // SAFETY: `[start + size, start + size + tail)` is the page-aligned tail of our
        // own mapping (start and size are multiples of the page size).
        unsafe { libc::munmap((start + size) as *mut libc::c_void, tail) };
    }
    NonNull::new(start as *mut u8)
}

/// The system's page size (4096 where it cannot be read).
pub(crate) fn page_size() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: `sysconf` only reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            return page as usize;
        }
    }
    4096
}

#[cfg(unix)]
fn mlock(ptr: NonNull<u8>, size: usize) -> io::Result<()> {
    // SAFETY: `mlock` only changes the residency of the pages of `[ptr, ptr + size)`,
    // which the pool owns; it never touches their contents.
    if unsafe { libc::mlock(ptr.as_ptr().cast(), size) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn mlock(_ptr: NonNull<u8>, _size: usize) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "page-locking is implemented for Unix only",
    ))
}

#[cfg(unix)]
fn munlock(ptr: NonNull<u8>, size: usize) {
    // SAFETY: as for `mlock`: residency only, of pages the pool owns.
    if unsafe { libc::munlock(ptr.as_ptr().cast(), size) } != 0 {
        log::warn!(
            "munlock of a {size}-byte pool segment failed: {}",
            io::Error::last_os_error()
        );
    }
}

#[cfg(not(unix))]
fn munlock(_ptr: NonNull<u8>, _size: usize) {}

/// The machine's physical memory in bytes, where it can be read.
pub(crate) fn physical_memory() -> Option<u64> {
    #[cfg(unix)]
    {
        // SAFETY: `sysconf` only reads a system constant.
        let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
        if pages > 0 {
            return Some(pages as u64 * page_size() as u64);
        }
    }
    None
}

/// The `RLIMIT_MEMLOCK` soft limit in bytes; `None` when unlimited or unknown.
pub(crate) fn memlock_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` writes one `rlimit` into the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0
            && limit.rlim_cur != libc::RLIM_INFINITY
        {
            // `rlim_t` is `u64` on Linux but not on every Unix.
            #[allow(clippy::unnecessary_cast)]
            return Some(limit.rlim_cur as u64);
        }
    }
    None
}
