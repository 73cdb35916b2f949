//! Thread identity: who holds and who waits.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// The identity of one thread, as the lock manager records it: a number, never reused,
/// so that recording a holder copies eight bytes and counts no reference. The thread's
/// name is looked up with [`Owner::name`] when a person is to read it (introspection,
/// errors, logs), from a table the thread leaves when it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) id: u64,
}

impl Owner {
    /// `"name (#id)"`, `"thread #id"` for an unnamed thread, or `"thread #id (exited)"`
    /// once the thread is gone (its holds can outlive it: a guard it forgot, a lease).
    pub(crate) fn name(self) -> String {
        match NAMES.lock().get(&self.id) {
            Some(name) => name.to_string(),
            None => format!("thread #{} (exited)", self.id),
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The names of the threads that have an identity and are alive.
static NAMES: std::sync::LazyLock<Mutex<HashMap<u64, Arc<str>>>> =
    std::sync::LazyLock::new(Mutex::default);

/// A thread's identity, held in its thread-local storage: made on its first lock, and
/// its name removed from the table when the thread exits.
struct Current(Owner);

impl Current {
    fn new() -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = match std::thread::current().name() {
            Some(name) => format!("{name} (#{id})"),
            None => format!("thread #{id}"),
        };
        NAMES.lock().insert(id, Arc::from(name));
        Current(Owner { id })
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        NAMES.lock().remove(&self.0.id);
    }
}

#[cfg(not(loom))]
std::thread_local! {
    static CURRENT: Current = Current::new();
}

#[cfg(loom)]
loom::thread_local! {
    static CURRENT: Current = Current::new();
}

/// The calling thread's identity (made once per thread).
#[inline]
pub(crate) fn current() -> Owner {
    CURRENT.with(|current| current.0)
}

/// The calling thread's identity, if its thread-local storage is still there.
pub(crate) fn try_current() -> Option<Owner> {
    CURRENT.try_with(|current| current.0).ok()
}

/// How many threads with an identity are alive (for tests: identities do not pile up).
#[cfg(test)]
pub(crate) fn live() -> usize {
    NAMES.lock().len()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_that_exits_leaves_no_name_behind() {
        let before = super::live();
        for _ in 0..50 {
            std::thread::spawn(super::current)
                .join()
                .expect("the thread only takes its identity");
        }
        // Other tests' threads may come and go meanwhile; fifty exits leave no trace.
        assert!(super::live() < before + 50, "{} names", super::live());
    }
}
