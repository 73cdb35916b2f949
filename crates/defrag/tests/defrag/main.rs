//! Integration tests of the defragmenter: trigger logic on a manual clock, the monitor
//! thread's lifecycle, and (on Linux with glibc) real compactions of a fragmented heap.

// Only Linux has an RSS to measure a compaction by, and only glibc a trim to measure
// (the allocator features' tests run there too).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod compact;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod heap;
mod triggers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use memwarden_core::ManualClock;
use memwarden_defrag::{DefragConfig, Defragmenter};

#[cfg(all(target_os = "linux", target_env = "gnu"))]
/// Tests that measure the process's RSS take this lock, so that no other such test
/// allocates or frees a large heap meanwhile.
pub(crate) static RSS_TESTS: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// A config with only the triggers a test sets: no released-bytes threshold, no timer,
/// and a short poll so that a monitor thread reacts within milliseconds.
pub(crate) fn quiet() -> DefragConfig {
    DefragConfig {
        released_threshold: 0,
        interval: None,
        poll: Duration::from_millis(5),
        ..DefragConfig::default()
    }
}

/// A defragmenter without a monitor thread, on a manual clock.
pub(crate) fn manual(config: DefragConfig) -> (Defragmenter, ManualClock) {
    let clock = ManualClock::new();
    let defrag = Defragmenter::builder(config)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("a valid config");
    (defrag, clock)
}

/// Waits (a few milliseconds at a time, at most ten seconds) until `done` holds; `false`
/// if it never did. For what a monitor thread does on its own.
pub(crate) fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    done()
}
