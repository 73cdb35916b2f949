//! [`trim`]: the platform and allocator calls that hand free heap pages back to the OS.
//!
//! Each call is a *backend*; [`trim`] runs every one compiled in for this target and
//! these features, and says in a [`TrimOutcome`] which ran and what each reported.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The most trim rounds an aggressive [`trim`] makes.
pub const MAX_AGGRESSIVE_ROUNDS: u32 = 4;
/// An aggressive [`trim`] makes another round only while the last one lowered the
/// resident set by at least this much.
pub const AGGRESSIVE_PROGRESS: u64 = 1 << 20;

/// One way of returning memory to the operating system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Backend {
    /// glibc's `malloc_trim(0)`: releases the top of every arena and `madvise`s
    /// (`MADV_DONTNEED`) every whole free page inside them. Linux with glibc.
    GlibcMallocTrim,
    /// mimalloc's `mi_collect(true)`: frees its thread caches and decommits free
    /// segments. With the `mimalloc` feature.
    MimallocCollect,
    /// jemalloc's `arena.<MALLCTL_ARENAS_ALL>.purge`: purges the dirty and muzzy pages
    /// of every arena at once. With the `jemalloc` feature.
    JemallocPurge,
    /// Windows' `HeapCompact(GetProcessHeap(), 0)`: coalesces free blocks of the process
    /// heap (which Rust's system allocator uses) and decommits large free ranges.
    WindowsHeapCompact,
    /// Windows' `SetProcessWorkingSetSize(GetCurrentProcess(), -1, -1)`: empties the
    /// working set. Aggressive mode only (see the crate docs).
    WindowsWorkingSet,
    /// macOS's `malloc_zone_pressure_relief(NULL, 0)`: every malloc zone gives back
    /// what it can.
    MacosPressureRelief,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Backend::GlibcMallocTrim => "glibc malloc_trim",
            Backend::MimallocCollect => "mimalloc mi_collect",
            Backend::JemallocPurge => "jemalloc arena purge",
            Backend::WindowsHeapCompact => "Windows HeapCompact",
            Backend::WindowsWorkingSet => "Windows SetProcessWorkingSetSize",
            Backend::MacosPressureRelief => "macOS malloc_zone_pressure_relief",
        })
    }
}

/// What one backend reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Effect {
    /// The backend says it released memory (`malloc_trim` returned 1, the pressure
    /// relief released bytes).
    Released,
    /// The backend says there was nothing to release.
    NothingReleased,
    /// The backend ran and does not say what it did (`mi_collect`, jemalloc's purge,
    /// `HeapCompact`, the working-set trim).
    Ran,
    /// The backend failed with this error code (jemalloc's return value, Windows'
    /// `GetLastError`); the failure is logged at `warn`.
    Failed {
        /// The error code.
        code: i64,
    },
}

/// One backend and what it reported; over several rounds, the most telling report
/// (released beats ran beats nothing released; a failure sticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BackendRun {
    /// The backend.
    pub backend: Backend,
    /// What it reported.
    pub effect: Effect,
}

/// What one [`trim`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrimOutcome {
    /// Every backend that ran, in the order they run.
    pub backends: Vec<BackendRun>,
    /// How many rounds ran: 1, or up to [`MAX_AGGRESSIVE_ROUNDS`] when aggressive.
    pub rounds: u32,
}

impl TrimOutcome {
    /// `false` when no backend exists for this platform and these features (musl, for
    /// instance): nothing was asked of the allocator.
    pub fn supported(&self) -> bool {
        !self.backends.is_empty()
    }

    /// What `backend` reported, if it ran.
    pub fn effect(&self, backend: Backend) -> Option<Effect> {
        self.backends
            .iter()
            .find(|run| run.backend == backend)
            .map(|run| run.effect)
    }

    // Unused where no backend exists for the target (musl, the BSDs, ...).
    #[cfg_attr(
        not(any(
            all(target_os = "linux", target_env = "gnu"),
            target_vendor = "apple",
            windows,
            feature = "mimalloc",
            feature = "jemalloc"
        )),
        allow(dead_code)
    )]
    fn record(&mut self, backend: Backend, effect: Effect) {
        match self.backends.iter_mut().find(|run| run.backend == backend) {
            None => self.backends.push(BackendRun { backend, effect }),
            Some(run) => {
                let rank = |e: Effect| match e {
                    Effect::NothingReleased => 0,
                    Effect::Ran => 1,
                    Effect::Released => 2,
                    Effect::Failed { .. } => 3,
                };
                if rank(effect) > rank(run.effect) {
                    run.effect = effect;
                }
            }
        }
    }
}

/// Runs every trim backend compiled in for this platform and these features, once; when
/// `aggressive`, repeats the allocator backends while each round lowers the resident set
/// by at least [`AGGRESSIVE_PROGRESS`], up to [`MAX_AGGRESSIVE_ROUNDS`] rounds, and adds
/// the Windows working-set trim.
///
/// This is the platform call alone: no statistics, no serialisation with other callers.
/// [`Defragmenter::compact`](crate::Defragmenter::compact) wraps it with both.
pub fn trim(aggressive: bool) -> TrimOutcome {
    let mut outcome = TrimOutcome::default();
    let mut before = if aggressive {
        crate::rss::current()
    } else {
        None
    };
    loop {
        trim_round(&mut outcome);
        outcome.rounds += 1;
        if !aggressive || outcome.rounds >= MAX_AGGRESSIVE_ROUNDS {
            break;
        }
        let after = crate::rss::current();
        match (before, after) {
            (Some(b), Some(a)) if b.saturating_sub(a) >= AGGRESSIVE_PROGRESS => before = after,
            _ => break,
        }
    }
    if aggressive {
        os::working_set(&mut outcome);
    }
    outcome
}

/// One call of each allocator backend.
fn trim_round(outcome: &mut TrimOutcome) {
    // The allocators that sit on top of the system's go first, so that the pages they
    // hand back to the system allocator can be trimmed by it in the same round.
    #[cfg(feature = "mimalloc")]
    allocators::mimalloc(outcome);
    #[cfg(feature = "jemalloc")]
    allocators::jemalloc(outcome);
    os::heap(outcome);
}

#[cfg(any(feature = "mimalloc", feature = "jemalloc"))]
mod allocators {
    use super::{Backend, Effect, TrimOutcome};

    /// `mi_collect(true)`. Harmless when mimalloc is linked but is not the global
    /// allocator: its heaps are then empty.
    #[cfg(feature = "mimalloc")]
    pub(super) fn mimalloc(outcome: &mut TrimOutcome) {
        // SAFETY: `mi_collect` takes a plain bool and may be called from any thread at
        // any time; it only frees memory mimalloc itself holds unused.
        unsafe { libmimalloc_sys::mi_collect(true) };
        outcome.record(Backend::MimallocCollect, Effect::Ran);
    }

    /// `mallctl("arena.4096.purge", NULL, NULL, NULL, 0)`, 4096 being
    /// `MALLCTL_ARENAS_ALL`. Called through `tikv-jemalloc-sys` because the purge
    /// control takes neither an old nor a new value, and `tikv-jemalloc-ctl`'s raw
    /// calls always pass one (jemalloc then answers `EPERM`).
    #[cfg(feature = "jemalloc")]
    pub(super) fn jemalloc(outcome: &mut TrimOutcome) {
        const PURGE_ALL: &[u8] = b"arena.4096.purge\0";
        // SAFETY: the name is NUL-terminated; `arena.<i>.purge` reads and writes
        // nothing, so every pointer is null and the length zero, as it requires.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                PURGE_ALL.as_ptr().cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
        if rc == 0 {
            outcome.record(Backend::JemallocPurge, Effect::Ran);
        } else {
            log::warn!("jemalloc's arena.4096.purge failed with error {rc}");
            outcome.record(Backend::JemallocPurge, Effect::Failed { code: rc.into() });
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod os {
    use super::{Backend, Effect, TrimOutcome};

    pub(super) fn heap(outcome: &mut TrimOutcome) {
        // SAFETY: `malloc_trim` takes a byte count to leave untrimmed at the top of the
        // main arena and locks each arena itself; it may be called from any thread.
        let released = unsafe { libc::malloc_trim(0) };
        let effect = if released == 1 {
            Effect::Released
        } else {
            Effect::NothingReleased
        };
        outcome.record(Backend::GlibcMallocTrim, effect);
    }

    pub(super) fn working_set(_: &mut TrimOutcome) {}
}

#[cfg(target_vendor = "apple")]
mod os {
    use std::ffi::c_void;

    use super::{Backend, Effect, TrimOutcome};

    // <malloc/malloc.h>: `size_t malloc_zone_pressure_relief(malloc_zone_t *zone, size_t goal)`.
    unsafe extern "C" {
        fn malloc_zone_pressure_relief(zone: *mut c_void, goal: usize) -> usize;
    }

    pub(super) fn heap(outcome: &mut TrimOutcome) {
        // SAFETY: a null zone asks every registered zone, and a goal of 0 means "as much
        // as possible"; the call locks each zone itself.
        let released = unsafe { malloc_zone_pressure_relief(std::ptr::null_mut(), 0) };
        let effect = if released > 0 {
            Effect::Released
        } else {
            Effect::NothingReleased
        };
        outcome.record(Backend::MacosPressureRelief, effect);
    }

    pub(super) fn working_set(_: &mut TrimOutcome) {}
}

#[cfg(windows)]
mod os {
    use std::ffi::c_void;

    use super::{Backend, Effect, TrimOutcome};

    type Handle = *mut c_void;

    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn GetCurrentProcess() -> Handle;
        fn GetProcessHeap() -> Handle;
        fn HeapCompact(heap: Handle, flags: u32) -> usize;
        fn SetProcessWorkingSetSize(process: Handle, minimum: usize, maximum: usize) -> i32;
        fn GetLastError() -> u32;
    }

    pub(super) fn heap(outcome: &mut TrimOutcome) {
        // SAFETY: `GetProcessHeap` has no preconditions and returns the default heap
        // (null on failure, checked below).
        let heap = unsafe { GetProcessHeap() };
        if heap.is_null() {
            // SAFETY: `GetLastError` has no preconditions.
            let code = unsafe { GetLastError() };
            log::warn!("GetProcessHeap failed with error {code}");
            outcome.record(
                Backend::WindowsHeapCompact,
                Effect::Failed { code: code.into() },
            );
            return;
        }
        // SAFETY: `heap` is the process heap, valid for the life of the process; flags
        // 0 means serialized access, which the process heap uses.
        let largest_free = unsafe { HeapCompact(heap, 0) };
        if largest_free == 0 {
            // SAFETY: `GetLastError` has no preconditions.
            let code = unsafe { GetLastError() };
            if code != 0 {
                log::warn!("HeapCompact failed with error {code}");
                outcome.record(
                    Backend::WindowsHeapCompact,
                    Effect::Failed { code: code.into() },
                );
                return;
            }
        }
        outcome.record(Backend::WindowsHeapCompact, Effect::Ran);
    }

    pub(super) fn working_set(outcome: &mut TrimOutcome) {
        // SAFETY: `GetCurrentProcess` returns a pseudo-handle that needs no closing;
        // (SIZE_T)-1 for both sizes asks Windows to remove as many pages as it can.
        let ok = unsafe { SetProcessWorkingSetSize(GetCurrentProcess(), usize::MAX, usize::MAX) };
        if ok != 0 {
            outcome.record(Backend::WindowsWorkingSet, Effect::Ran);
        } else {
            // SAFETY: `GetLastError` has no preconditions.
            let code = unsafe { GetLastError() };
            log::warn!("SetProcessWorkingSetSize failed with error {code}");
            outcome.record(
                Backend::WindowsWorkingSet,
                Effect::Failed { code: code.into() },
            );
        }
    }
}

#[cfg(not(any(
    all(target_os = "linux", target_env = "gnu"),
    target_vendor = "apple",
    windows
)))]
mod os {
    use super::TrimOutcome;

    pub(super) fn heap(_: &mut TrimOutcome) {}

    pub(super) fn working_set(_: &mut TrimOutcome) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_keep_the_most_telling_effect() {
        let mut outcome = TrimOutcome::default();
        outcome.record(Backend::GlibcMallocTrim, Effect::Released);
        outcome.record(Backend::GlibcMallocTrim, Effect::NothingReleased);
        outcome.record(Backend::MimallocCollect, Effect::Ran);
        outcome.record(Backend::MimallocCollect, Effect::Failed { code: 12 });
        outcome.record(Backend::MimallocCollect, Effect::Released);
        assert_eq!(
            outcome.effect(Backend::GlibcMallocTrim),
            Some(Effect::Released)
        );
        assert_eq!(
            outcome.effect(Backend::MimallocCollect),
            Some(Effect::Failed { code: 12 })
        );
        assert_eq!(outcome.effect(Backend::JemallocPurge), None);
        assert_eq!(outcome.backends.len(), 2);
        assert!(outcome.supported());
        assert!(!TrimOutcome::default().supported());
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_trim_runs_once_or_in_rounds() {
        let once = trim(false);
        assert_eq!(once.rounds, 1);
        assert!(once.effect(Backend::GlibcMallocTrim).is_some());
        let aggressive = trim(true);
        assert!((1..=MAX_AGGRESSIVE_ROUNDS).contains(&aggressive.rounds));
        assert!(aggressive.effect(Backend::GlibcMallocTrim).is_some());
    }
}
