//! RAII guards, handles, and [`Fenced`] data reached through a token check.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use crate::holders::{self, Grant, Slot};
use crate::name_lock::NameLock;
use crate::{LockError, Mode};

/// A pre-resolved lock name: acquiring through it skips the manager's name lookup.
#[derive(Clone)]
pub struct LockHandle {
    lock: Arc<NameLock>,
}

impl fmt::Debug for LockHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LockHandle").field(&self.lock.name).finish()
    }
}

impl LockHandle {
    pub(crate) fn new(lock: Arc<NameLock>) -> Self {
        LockHandle { lock }
    }
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.lock.name
    }
    /// Waits as long as it takes for a shared lock.
    #[inline(always)]
    pub fn read(&self) -> Result<ReadGuard, LockError> {
        ReadGuard::acquire(&self.lock, None)
    }
    /// Waits as long as it takes for an exclusive lock.
    #[inline(always)]
    pub fn write(&self) -> Result<WriteGuard, LockError> {
        WriteGuard::acquire(&self.lock, None)
    }
    /// Waits at most `timeout` for a shared lock.
    pub fn try_read_for(&self, timeout: Duration) -> Result<ReadGuard, LockError> {
        check_timeout(&self.lock, timeout)?;
        ReadGuard::acquire(&self.lock, Some(timeout))
    }
    /// Waits at most `timeout` for an exclusive lock.
    pub fn try_write_for(&self, timeout: Duration) -> Result<WriteGuard, LockError> {
        check_timeout(&self.lock, timeout)?;
        WriteGuard::acquire(&self.lock, Some(timeout))
    }
}

/// Refuses a zero timeout and one longer than the lease.
pub(crate) fn check_timeout(lock: &NameLock, timeout: Duration) -> Result<(), LockError> {
    if timeout.is_zero() {
        return Err(LockError::ZeroDuration {
            what: "an acquire timeout",
        });
    }
    match lock.registry.lease {
        Some(lease) if timeout > lease => Err(LockError::TimeoutExceedsLease {
            name: lock.name.to_string(),
            timeout,
            lease,
        }),
        _ => Ok(()),
    }
}

mod sealed {
    /// Seals [`Held`](super::Held); also names the lock a guard belongs to, as an address.
    pub trait Sealed {
        fn lock_id(&self) -> *const ();
    }
}

/// What both guards share: a name, a fencing token, and a validity check.
pub trait Held: sealed::Sealed {
    /// The lock's name.
    fn name(&self) -> &str;
    /// The grant's fencing token.
    fn token(&self) -> u64;
    /// Whether the grant still holds (its lease has not expired).
    fn is_valid(&self) -> bool;
    /// `Ok` while the grant holds, [`LockError::LeaseExpired`] once it does not.
    fn check(&self) -> Result<(), LockError> {
        if self.is_valid() {
            Ok(())
        } else {
            Err(LockError::LeaseExpired {
                name: self.name().to_owned(),
                token: self.token(),
            })
        }
    }
}

/// What a guard keeps of its hold: addresses, so that taking a lock counts no reference.
///
/// The lock and the slot stay alive as long as the guard: the slot is emptied only by the
/// guard's drop (an expired or unguarded-released hold keeps it, marked), the holding
/// thread keeps the lock's `Arc` beside every slot that is not empty (and forgets it,
/// rather than drop it, if the thread's storage goes first), and a thread's slots outlive
/// the thread while any of them is not empty.
struct Hold {
    lock: NonNull<NameLock>,
    slot: NonNull<Slot>,
    claim: u64,
}

impl Hold {
    #[inline(always)]
    fn new(lock: &Arc<NameLock>, grant: Grant) -> Self {
        Hold {
            lock: NonNull::from(&**lock),
            slot: grant.slot,
            claim: grant.claim,
        }
    }

    #[inline]
    fn lock(&self) -> &NameLock {
        // SAFETY: see `Hold`: the lock lives as long as the guard.
        unsafe { self.lock.as_ref() }
    }

    #[inline]
    fn slot(&self) -> &Slot {
        // SAFETY: see `Hold`: the slot lives as long as the guard.
        unsafe { self.slot.as_ref() }
    }

    /// The hold's fencing token: the slot keeps it until the guard drops, even once the
    /// hold expired or was released.
    fn token(&self) -> u64 {
        self.slot().token()
    }

    /// The lock's `Arc`, from this thread's holds (an upgrade or downgrade needs it).
    fn with_lock<R>(&self, f: impl FnOnce(&Arc<NameLock>, &mut holders::Holds) -> R) -> R {
        holders::with(|local| {
            let lock = local.holds.lock_of(self.slot);
            f(&lock, &mut local.holds)
        })
    }
}

/// A shared hold; released on drop. Not `Send`: a hold belongs to its thread.
pub struct ReadGuard {
    hold: Hold,
    _not_send: PhantomData<*const ()>,
}

/// An exclusive hold; released on drop. Not `Send`: a hold belongs to its thread.
pub struct WriteGuard {
    hold: Hold,
    _not_send: PhantomData<*const ()>,
}

/// An upgrade that did not happen; the shared hold is given back.
#[derive(Debug)]
pub struct UpgradeFailed {
    /// The shared hold, still held (unless the error is a lease expiry).
    pub guard: ReadGuard,
    /// Why the upgrade failed.
    pub error: LockError,
}

impl fmt::Display for UpgradeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for UpgradeFailed {}

impl ReadGuard {
    /// Waits as long as it takes to turn this shared hold into an exclusive one.
    ///
    /// Only one reader of a name may wait to upgrade; a second gets
    /// [`LockError::UpgradeConflict`] at once (two waiting upgraders would wait for each
    /// other forever).
    pub fn upgrade(self) -> Result<WriteGuard, UpgradeFailed> {
        self.upgrade_within(None)
    }

    /// Like [`ReadGuard::upgrade`], waiting at most `timeout`.
    pub fn try_upgrade_for(self, timeout: Duration) -> Result<WriteGuard, UpgradeFailed> {
        if let Err(error) = check_timeout(self.hold.lock(), timeout) {
            return Err(UpgradeFailed { guard: self, error });
        }
        self.upgrade_within(Some(timeout))
    }

    fn upgrade_within(self, timeout: Option<Duration>) -> Result<WriteGuard, UpgradeFailed> {
        let h = &self.hold;
        let upgraded = h.with_lock(|lock, holds| {
            lock.upgrade(holds, h.slot, h.claim, h.token(), timeout)
                .map(|grant| Hold::new(lock, grant))
        });
        match upgraded {
            Ok(hold) => {
                // The slot now holds the exclusive hold: this guard must not release it.
                std::mem::forget(self);
                Ok(WriteGuard::from_hold(hold))
            }
            Err(error) => Err(UpgradeFailed { guard: self, error }),
        }
    }
}

impl WriteGuard {
    /// Turns this exclusive hold into a shared one without letting a writer in between.
    pub fn downgrade(self) -> Result<ReadGuard, LockError> {
        let h = &self.hold;
        let hold = h.with_lock(|lock, holds| {
            lock.downgrade(holds, h.slot, h.claim, h.token())
                .map(|grant| Hold::new(lock, grant))
        })?;
        // The slot now holds the shared hold: this guard must not release it (it owns
        // nothing else to drop).
        std::mem::forget(self);
        Ok(ReadGuard::from_hold(hold))
    }
}

macro_rules! guard_common {
    ($guard:ident, $mode:expr) => {
        impl $guard {
            #[inline(always)]
            fn from_hold(hold: Hold) -> Self {
                $guard {
                    hold,
                    _not_send: PhantomData,
                }
            }

            #[inline(always)]
            pub(crate) fn acquire(
                lock: &Arc<NameLock>,
                timeout: Option<Duration>,
            ) -> Result<Self, LockError> {
                holders::with(
                    #[inline(always)]
                    |local| Self::acquire_in(&mut local.holds, lock, timeout),
                )
            }

            /// Acquires with this thread's storage already borrowed (the acquire by name).
            #[inline(always)]
            pub(crate) fn acquire_in(
                holds: &mut holders::Holds,
                lock: &Arc<NameLock>,
                timeout: Option<Duration>,
            ) -> Result<Self, LockError> {
                let grant = match lock.acquire_fast(holds, $mode) {
                    Some(grant) => grant,
                    None => lock.acquire(holds, $mode, timeout)?,
                };
                Ok(Self::from_hold(Hold::new(lock, grant)))
            }
        }

        impl sealed::Sealed for $guard {
            fn lock_id(&self) -> *const () {
                self.hold.lock.as_ptr().cast_const().cast()
            }
        }

        impl Held for $guard {
            fn name(&self) -> &str {
                &self.hold.lock().name
            }
            fn token(&self) -> u64 {
                self.hold.token()
            }
            fn is_valid(&self) -> bool {
                self.hold.slot().is_held(self.hold.claim)
            }
        }

        impl Drop for $guard {
            #[inline]
            fn drop(&mut self) {
                let h = &self.hold;
                // Not the slot after the release: once emptied, it may go with its thread.
                if !h.lock().release(h.slot(), h.claim, $mode) {
                    log::debug!(
                        "dropped a {} guard on {:?} whose hold had expired or been released",
                        $mode,
                        h.lock().name,
                    );
                }
            }
        }

        impl fmt::Debug for $guard {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($guard))
                    .field("name", &self.hold.lock().name)
                    .field("token", &self.hold.token())
                    // A guard is not `Send`: its thread is the caller's.
                    .field("thread", &crate::owner::try_current().map(|o| o.name()))
                    .finish()
            }
        }
    };
}

guard_common!(ReadGuard, Mode::Read);
guard_common!(WriteGuard, Mode::Write);

/// Data guarded by a lock name and reached only through a guard whose token validates.
///
/// The data sits behind an internal read-write lock. [`Fenced::with`] and
/// [`Fenced::with_mut`] first take that lock, then check that the guard belongs to this
/// very lock (same manager, same name) and that its token still validates, and only then
/// run the closure. A holder whose lease expired, even one that was already waiting for
/// the data, gets [`LockError::LeaseExpired`] and never touches the data; a holder admitted
/// while valid finishes before any newer holder gets in. Data is never aliased.
pub struct Fenced<T> {
    lock: Arc<NameLock>,
    data: parking_lot::RwLock<T>,
}

impl<T> fmt::Debug for Fenced<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fenced")
            .field("name", &self.lock.name)
            .finish_non_exhaustive()
    }
}

impl<T> Fenced<T> {
    pub(crate) fn new(lock: Arc<NameLock>, value: T) -> Self {
        Fenced {
            lock,
            data: parking_lot::RwLock::new(value),
        }
    }

    /// The lock name guarding the data.
    pub fn name(&self) -> &str {
        &self.lock.name
    }

    fn admit(&self, guard: &impl Held) -> Result<(), LockError> {
        if guard.lock_id() != Arc::as_ptr(&self.lock).cast::<()>() {
            return Err(LockError::WrongName {
                fenced: self.lock.name.to_string(),
                guard: guard.name().to_owned(),
            });
        }
        guard.check()
    }

    /// Reads the data under a valid read or write guard of its lock.
    pub fn with<R>(&self, guard: &impl Held, f: impl FnOnce(&T) -> R) -> Result<R, LockError> {
        let data = self.data.read_recursive();
        self.admit(guard)?;
        Ok(f(&data))
    }

    /// Changes the data under a valid write guard of its lock.
    pub fn with_mut<R>(
        &self,
        guard: &WriteGuard,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, LockError> {
        let mut data = self.data.write();
        self.admit(guard)?;
        Ok(f(&mut data))
    }

    /// The data, once no guard can reach it any more.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}
