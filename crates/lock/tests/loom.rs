//! loom model tests: every interleaving of a few threads (with up to three preemptions)
//! keeps the lock invariants.
//!
//! Run with `LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" cargo test -p memwarden-lock
//! --test loom --release` (as `.ci/run` does: unbounded, some models run for minutes).
//! Checked: no two writers, no reader beside a writer, no lost wake-up (loom reports a
//! model in which a thread blocks forever), across acquire/release, upgrade/downgrade, the
//! hand-over when a lease expires, fair mode's queue, a waiter that times out (timed waits
//! run on a virtual clock under loom, moved to the deadline by the wait), two upgraders,
//! a lease that expires during an upgrade; and the uncontended path's races: a slot read
//! by introspection while its thread re-fills it, a release racing an expiry,
//! `while_unlocked` against fast readers, and a second read racing the first's expiry.
#![cfg(loom)]

use std::sync::Arc as StdArc;
use std::time::Duration;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use memwarden_core::ManualClock;
use memwarden_lock::{Held, LockConfig, LockHandle, LockManager};

/// Who is inside the critical section: writers count 1000, readers 1.
#[derive(Default)]
struct Inside(AtomicUsize);

impl Inside {
    fn enter_write(&self) {
        assert_eq!(
            self.0.fetch_add(1000, Ordering::SeqCst),
            0,
            "a writer beside someone"
        );
    }
    fn leave_write(&self) {
        self.0.fetch_sub(1000, Ordering::SeqCst);
    }
    fn enter_read(&self) {
        assert!(
            self.0.fetch_add(1, Ordering::SeqCst) < 1000,
            "a reader beside a writer"
        );
    }
    fn leave_read(&self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn setup() -> (Arc<LockHandle>, Arc<Inside>) {
    let manager = LockManager::with_config(LockConfig::without_leases()).unwrap();
    (
        Arc::new(manager.handle("x").unwrap()),
        Arc::new(Inside::default()),
    )
}

#[test]
fn writers_exclude_each_other_and_readers() {
    loom::model(|| {
        let (handle, inside) = setup();
        let (h, i) = (handle.clone(), inside.clone());
        let writer = thread::spawn(move || {
            let _w = h.write().unwrap();
            i.enter_write();
            i.leave_write();
        });
        let (h, i) = (handle.clone(), inside.clone());
        let reader = thread::spawn(move || {
            let _r = h.read().unwrap();
            i.enter_read();
            i.leave_read();
        });
        {
            let _w = handle.write().unwrap();
            inside.enter_write();
            inside.leave_write();
        }
        writer.join().unwrap();
        reader.join().unwrap();
    });
}

#[test]
fn upgrade_and_downgrade_keep_exclusion() {
    loom::model(|| {
        let (handle, inside) = setup();
        let (h, i) = (handle.clone(), inside.clone());
        let upgrader = thread::spawn(move || {
            let r = h.read().unwrap();
            i.enter_read();
            i.leave_read();
            let w = r.upgrade().map_err(|f| f.error).unwrap();
            i.enter_write();
            i.leave_write();
            let _r = w.downgrade().unwrap();
            i.enter_read();
            i.leave_read();
        });
        {
            let _w = handle.write().unwrap();
            inside.enter_write();
            inside.leave_write();
        }
        upgrader.join().unwrap();
    });
}

/// A manager with 1 s leases on a manual clock, and a handle to `x`.
fn leased() -> (ManualClock, StdArc<LockManager>, Arc<LockHandle>) {
    let clock = ManualClock::new();
    let config = LockConfig {
        lease: Some(Duration::from_secs(1)),
        ..LockConfig::default()
    };
    let manager = StdArc::new(LockManager::with_clock(config, StdArc::new(clock.clone())).unwrap());
    let handle = Arc::new(manager.handle("x").unwrap());
    (clock, manager, handle)
}

#[test]
fn an_expired_lease_hands_over_to_the_waiter() {
    loom::model(|| {
        let (clock, manager, handle) = leased();
        let stale = handle.write().unwrap();
        let h = handle.clone();
        let waiter = thread::spawn(move || {
            let w = h.write().unwrap();
            assert!(w.is_valid());
            w.token()
        });
        clock.advance(Duration::from_secs(2));
        assert_eq!(manager.expire_overdue(), 1);
        assert!(!stale.is_valid());
        let next = waiter.join().unwrap();
        assert!(next > stale.token());
        drop(stale);
    });
}

fn manager(config: LockConfig) -> Arc<LockManager> {
    Arc::new(LockManager::with_config(config).unwrap())
}

#[test]
fn fair_mode_serves_everyone_and_loses_no_wake_up() {
    loom::model(|| {
        let m = manager(LockConfig {
            fair: true,
            ..LockConfig::without_leases()
        });
        let inside = Arc::new(Inside::default());
        let held = m.write("x").unwrap();
        let (m1, i1) = (m.clone(), inside.clone());
        let reader = thread::spawn(move || {
            let _r = m1.read("x").unwrap();
            i1.enter_read();
            i1.leave_read();
        });
        let (m2, i2) = (m.clone(), inside.clone());
        let writer = thread::spawn(move || {
            let _w = m2.write("x").unwrap();
            i2.enter_write();
            i2.leave_write();
        });
        inside.enter_write();
        inside.leave_write();
        drop(held);
        reader.join().unwrap();
        writer.join().unwrap();
    });
}

#[test]
fn a_waiter_that_times_out_wakes_the_one_queued_behind_it() {
    use memwarden_lock::LockError;
    loom::model(|| {
        let m = manager(LockConfig {
            fair: true,
            ..LockConfig::without_leases()
        });
        let held = m.read("x").unwrap();
        let queued = Arc::new(AtomicUsize::new(0));
        let (m1, q1) = (m.clone(), queued.clone());
        // Queued first, behind the reader held here: a writer that gives up.
        let writer = thread::spawn(move || {
            q1.store(1, Ordering::SeqCst);
            m1.try_write_for("x", Duration::from_millis(1)).err()
        });
        let m2 = m.clone();
        // Then a reader: in fair mode it waits behind the writer, until the writer leaves.
        let reader = thread::spawn(move || {
            while queued.load(Ordering::SeqCst) == 0 {
                thread::yield_now();
            }
            m2.read("x").map(drop)
        });
        let timed_out = writer.join().unwrap();
        assert!(
            matches!(timed_out, Some(LockError::Timeout { .. })),
            "{timed_out:?}"
        );
        assert_eq!(reader.join().unwrap(), Ok(()));
        drop(held);
    });
}

#[test]
fn two_upgraders_never_both_wait_and_exclusion_holds() {
    use memwarden_lock::LockError;
    loom::model(|| {
        let (handle, inside) = setup();
        let upgrader = |h: Arc<LockHandle>, i: Arc<Inside>| {
            move || {
                let r = h.read().unwrap();
                match r.upgrade() {
                    Ok(w) => {
                        i.enter_write();
                        i.leave_write();
                        drop(w);
                        true
                    }
                    Err(failed) => {
                        assert!(
                            matches!(failed.error, LockError::UpgradeConflict { .. }),
                            "{}",
                            failed.error
                        );
                        drop(failed.guard); // lets the other upgrade finish
                        false
                    }
                }
            }
        };
        let a = thread::spawn(upgrader(handle.clone(), inside.clone()));
        let b = thread::spawn(upgrader(handle.clone(), inside.clone()));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(a || b, "at least one upgrade goes through");
    });
}

#[test]
fn a_lease_that_expires_during_an_upgrade_fails_the_upgrade() {
    use memwarden_lock::LockError;
    loom::model(|| {
        let (clock, manager, handle) = leased();
        // 1: the upgrader reads; 2: a later reader holds too; then the upgrade starts.
        let step = Arc::new(AtomicUsize::new(0));
        let (h, st) = (handle.clone(), step.clone());
        let upgrader = thread::spawn(move || {
            let guard = h.read().unwrap();
            st.store(1, Ordering::SeqCst);
            while st.load(Ordering::SeqCst) < 2 {
                thread::yield_now();
            }
            guard.upgrade().map(|w| w.token()).map_err(|f| f.error)
        });
        while step.load(Ordering::SeqCst) < 1 {
            thread::yield_now();
        }
        // A reader whose lease ends later keeps the upgrade waiting, then the
        // upgrader's own lease runs out (while it waits, or just before it asks).
        clock.advance(Duration::from_millis(600));
        let later = handle.read().unwrap();
        step.store(2, Ordering::SeqCst);
        clock.advance(Duration::from_millis(500));
        assert_eq!(manager.expire_overdue(), 1);
        let upgraded = upgrader.join().unwrap();
        assert!(
            matches!(upgraded, Err(LockError::LeaseExpired { .. })),
            "{upgraded:?}"
        );
        assert!(later.is_valid());
        drop(later);
    });
}

/// A thread's slot is read by others while the thread empties it and fills it again
/// for another name: introspection shows each hold whole (its name's mode) or not at all.
#[test]
fn introspection_never_sees_a_hold_torn_between_two_names() {
    use memwarden_lock::Mode;
    loom::model(|| {
        let m = manager(LockConfig::without_leases());
        // Both names exist before the threads start: the name table's own lock is not
        // one loom sees.
        drop(m.read("x").unwrap());
        drop(m.read("y").unwrap());
        let m1 = m.clone();
        let holder = thread::spawn(move || {
            drop(m1.read("x").unwrap());
            drop(m1.write("y").unwrap());
        });
        for lock in m.inspect().locks {
            let expected = if lock.name == "x" {
                Mode::Read
            } else {
                Mode::Write
            };
            for h in &lock.holders {
                assert_eq!(h.mode, expected, "{lock:?}");
            }
        }
        holder.join().unwrap();
    });
}

/// A holder releases while the lease monitor expires the same hold: the hold is given
/// back once, so the name ends up free (a write gets it at once) and is not held twice.
#[test]
fn a_release_racing_an_expiry_gives_the_hold_back_once() {
    loom::model(|| {
        let (clock, manager, handle) = leased();
        let granted = Arc::new(AtomicUsize::new(0));
        let (h, g) = (handle.clone(), granted.clone());
        let holder = thread::spawn(move || {
            let r = h.read().unwrap();
            g.store(1, Ordering::SeqCst);
            drop(r);
        });
        while granted.load(Ordering::SeqCst) == 0 {
            thread::yield_now();
        }
        // The lease is over: the monitor takes the hold while its guard drops.
        clock.advance(Duration::from_secs(2));
        let expired = manager.expire_overdue();
        holder.join().unwrap();
        assert!(expired <= 1);
        assert_eq!(manager.is_locked("x"), None);
        let w = handle.write().unwrap();
        assert!(w.is_valid());
        drop(w);
        assert_eq!(manager.is_locked("x"), None);
    });
}

/// `while_unlocked` runs only while nobody holds the name, and keeps the uncontended
/// path's readers out until it returns.
#[test]
fn while_unlocked_keeps_fast_readers_out() {
    loom::model(|| {
        let m = manager(LockConfig::without_leases());
        let inside = Arc::new(Inside::default());
        // The name exists before the reader comes (an acquire of a name not made yet
        // waits on the table instead).
        drop(m.read("x").unwrap());
        let (m1, i1) = (m.clone(), inside.clone());
        let reader = thread::spawn(move || {
            let _r = m1.read("x").unwrap();
            i1.enter_read();
            i1.leave_read();
        });
        let _ = m.while_unlocked("x", || {
            inside.enter_write();
            inside.leave_write();
        });
        reader.join().unwrap();
    });
}

/// A thread asks for a second shared hold while the lease monitor expires its first and
/// a writer waits: the second is either recursive (granted before the expiry, and then
/// counted, so the writer waits for it) or a new acquire that waits for the writer; never
/// a read beside the writer. (The second's lease ends after the pass: only the first
/// expires.)
#[test]
fn a_second_read_racing_the_expiry_of_the_first_never_joins_a_writer() {
    loom::model(|| {
        let (clock, manager, handle) = leased();
        let inside = Arc::new(Inside::default());
        let step = Arc::new(AtomicUsize::new(0));
        let (h, i, st) = (handle.clone(), inside.clone(), step.clone());
        let reader = thread::spawn(move || {
            let stale = h.read().unwrap();
            st.store(1, Ordering::SeqCst);
            while st.load(Ordering::SeqCst) < 2 {
                thread::yield_now();
            }
            let again = h.read().unwrap();
            i.enter_read();
            i.leave_read();
            drop(again);
            drop(stale);
        });
        while step.load(Ordering::SeqCst) < 1 {
            thread::yield_now();
        }
        let (h, i) = (handle.clone(), inside.clone());
        let writer = thread::spawn(move || {
            let _w = h.write().unwrap();
            i.enter_write();
            i.leave_write();
        });
        // The first hold's lease ends at 1 s, the second's at 1.6 s or later.
        clock.advance(Duration::from_millis(600));
        step.store(2, Ordering::SeqCst);
        clock.advance(Duration::from_millis(500));
        manager.expire_overdue();
        writer.join().unwrap();
        reader.join().unwrap();
    });
}
