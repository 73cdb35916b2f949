//! loom model tests: every interleaving of a few threads keeps the lock invariants.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p memwarden-lock --test loom --release`.
//! Checked: no two writers, no reader beside a writer, no lost wake-up (loom reports a
//! model in which a thread blocks forever), across acquire/release, upgrade/downgrade and
//! the hand-over when a lease expires.
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

#[test]
fn an_expired_lease_hands_over_to_the_waiter() {
    loom::model(|| {
        let clock = ManualClock::new();
        let config = LockConfig {
            lease: Some(Duration::from_secs(1)),
            ..LockConfig::default()
        };
        let manager =
            StdArc::new(LockManager::with_clock(config, StdArc::new(clock.clone())).unwrap());
        let handle = Arc::new(manager.handle("x").unwrap());
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
