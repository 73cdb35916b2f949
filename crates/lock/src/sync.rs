//! The synchronisation primitives the lock manager is built on: `parking_lot` normally,
//! `loom`'s model-checked ones under `cfg(loom)`, behind one parking_lot-shaped API.

#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, fence};

/// Runs `f` with the guard's mutex unlocked, relocking it afterwards.
#[cfg(not(loom))]
pub(crate) fn unlocked<T, R>(guard: &mut MutexGuard<'_, T>, f: impl FnOnce() -> R) -> R {
    MutexGuard::unlocked(guard, f)
}

/// Waits on `cond` until notified or `deadline` passes (`None`: no deadline).
#[cfg(not(loom))]
pub(crate) fn wait_until<T>(
    cond: &Condvar,
    guard: &mut MutexGuard<'_, T>,
    deadline: Option<std::time::Instant>,
) {
    match deadline {
        Some(deadline) => {
            cond.wait_until(guard, deadline);
        }
        None => cond.wait(guard),
    }
}

/// The time waits are measured in: the real clock.
#[cfg(not(loom))]
pub(crate) fn now() -> std::time::Instant {
    std::time::Instant::now()
}

#[cfg(loom)]
pub(crate) use loom_shim::{Condvar, Mutex, MutexGuard, now};

#[cfg(loom)]
pub(crate) fn unlocked<T, R>(guard: &mut MutexGuard<'_, T>, f: impl FnOnce() -> R) -> R {
    guard.unlocked(f)
}

/// Under loom, a timed wait is one in which nothing wakes the thread before its
/// deadline: it lets the other threads run, then its clock moves to the deadline. (loom
/// does not model time; a wait that a notification ends early is what the untimed waits
/// explore.)
#[cfg(loom)]
pub(crate) fn wait_until<T>(
    cond: &Condvar,
    guard: &mut MutexGuard<'_, T>,
    deadline: Option<std::time::Instant>,
) {
    match deadline {
        Some(deadline) => {
            guard.unlocked(loom::thread::yield_now);
            loom_shim::advance_to(deadline);
        }
        None => cond.wait(guard),
    }
}

#[cfg(loom)]
mod loom_shim {
    use std::cell::Cell;
    use std::ops::{Deref, DerefMut};
    use std::sync::LazyLock;
    use std::time::{Duration, Instant};

    /// Where every loom thread's clock starts.
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

    loom::thread_local! {
        /// How far this loom thread's clock has moved: only timed waits move it.
        static ELAPSED: Cell<Duration> = Cell::new(Duration::ZERO);
    }

    /// This thread's virtual time.
    pub(crate) fn now() -> Instant {
        *EPOCH + ELAPSED.with(Cell::get)
    }

    /// Moves this thread's virtual time to `deadline` (never back).
    pub(crate) fn advance_to(deadline: Instant) {
        let to = deadline.saturating_duration_since(*EPOCH);
        ELAPSED.with(|e| e.set(e.get().max(to)));
    }

    /// loom's mutex with parking_lot's non-poisoning API.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard {
                mutex: &self.0,
                inner: Some(self.0.lock().expect("loom mutexes are not poisoned")),
            }
        }
    }

    pub(crate) struct MutexGuard<'a, T> {
        mutex: &'a loom::sync::Mutex<T>,
        inner: Option<loom::sync::MutexGuard<'a, T>>,
    }

    impl<T> MutexGuard<'_, T> {
        pub(crate) fn unlocked<R>(&mut self, f: impl FnOnce() -> R) -> R {
            drop(self.inner.take());
            let result = f();
            self.inner = Some(self.mutex.lock().expect("loom mutexes are not poisoned"));
            result
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.inner
                .as_ref()
                .expect("the guard is locked outside `unlocked`")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.inner
                .as_mut()
                .expect("the guard is locked outside `unlocked`")
        }
    }

    /// loom's condition variable with parking_lot's `wait(&mut guard)` shape.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.inner.take().expect("the guard is locked");
            guard.inner = Some(self.0.wait(inner).expect("loom mutexes are not poisoned"));
        }
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
