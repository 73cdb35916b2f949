//! Thread identity: who holds and who waits.

use std::sync::atomic::{AtomicU64, Ordering};

/// The identity of one thread, as the lock manager records it.
///
/// The name is leaked once per thread that ever takes a lock (a few dozen bytes), so that
/// recording a holder costs no reference count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    pub(crate) id: u64,
    pub(crate) name: &'static str,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn new_owner() -> Owner {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let name = match std::thread::current().name() {
        Some(name) => format!("{name} (#{id})"),
        None => format!("thread #{id}"),
    };
    Owner {
        id,
        name: Box::leak(name.into_boxed_str()),
    }
}

#[cfg(not(loom))]
std::thread_local! {
    static CURRENT: Owner = new_owner();
}

#[cfg(loom)]
loom::thread_local! {
    static CURRENT: Owner = new_owner();
}

/// The calling thread's identity (made once per thread).
#[inline]
pub(crate) fn current() -> Owner {
    CURRENT.with(|owner| *owner)
}
