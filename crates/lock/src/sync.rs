//! The synchronisation primitives the lock manager is built on: `parking_lot` normally,
//! `loom`'s model-checked ones under `cfg(loom)`, behind one parking_lot-shaped API.

#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};

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

#[cfg(loom)]
pub(crate) use loom_shim::{Condvar, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) fn unlocked<T, R>(guard: &mut MutexGuard<'_, T>, f: impl FnOnce() -> R) -> R {
    guard.unlocked(f)
}

#[cfg(loom)]
pub(crate) fn wait_until<T>(
    cond: &Condvar,
    guard: &mut MutexGuard<'_, T>,
    _deadline: Option<std::time::Instant>,
) {
    // loom does not model time; a timed wait is a wait that may also wake spuriously,
    // which every caller already tolerates by re-checking its condition.
    cond.wait(guard);
}

#[cfg(loom)]
mod loom_shim {
    use std::ops::{Deref, DerefMut};

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
