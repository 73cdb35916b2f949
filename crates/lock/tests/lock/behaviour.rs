//! Modes, preference, upgrade, re-entry, leases, fencing, bad input, introspection.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use memwarden_core::{ManualClock, ResourceId};
use memwarden_lock::{Held, LockConfig, LockError, LockManager, Mode, WaitKind};

use crate::manager;

const SHORT: Duration = Duration::from_millis(30);

#[test]
fn readers_share_writers_exclude() {
    let m = manager();
    let a = m.read("x").unwrap();
    let b = thread::scope(|s| {
        s.spawn(|| m.try_read_for("x", SHORT).map(|g| g.token()))
            .join()
            .unwrap()
    });
    assert!(b.is_ok(), "a second reader is admitted");
    let w = thread::scope(|s| {
        s.spawn(|| m.try_write_for("x", SHORT).err())
            .join()
            .unwrap()
    });
    assert!(
        matches!(
            w,
            Some(LockError::Timeout {
                mode: Mode::Write,
                ..
            })
        ),
        "{w:?}"
    );
    drop(a);
    let w = m.try_write_for("x", SHORT).unwrap();
    let r = thread::scope(|s| s.spawn(|| m.try_read_for("x", SHORT).err()).join().unwrap());
    assert!(matches!(
        r,
        Some(LockError::Timeout {
            mode: Mode::Read,
            ..
        })
    ));
    assert_eq!(m.is_locked("x"), Some(Mode::Write));
    drop(w);
    assert_eq!(m.is_locked("x"), None);
}

#[test]
fn a_waiting_writer_holds_back_new_readers() {
    let m = manager();
    let reader = m.read("x").unwrap();
    let m = &m;
    thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let writer = s.spawn(move || {
            tx.send(()).unwrap();
            m.write("x").map(|g| g.token())
        });
        rx.recv().unwrap();
        // Wait until the writer is queued, then a new reader must not overtake it.
        while m.inspect().locks.iter().all(|l| l.waiters.is_empty()) {
            thread::yield_now();
        }
        let late = s.spawn(|| m.try_read_for("x", SHORT).err()).join().unwrap();
        assert!(
            matches!(late, Some(LockError::Timeout { .. })),
            "writer preference: {late:?}"
        );
        drop(reader);
        assert!(writer.join().unwrap().is_ok());
    });
}

#[test]
fn fair_mode_serves_in_arrival_order() {
    let m = LockManager::with_config(LockConfig {
        fair: true,
        ..LockConfig::without_leases()
    })
    .unwrap();
    let first = m.write("x").unwrap();
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    thread::scope(|s| {
        for i in 0..4 {
            let (m, order) = (&m, Arc::clone(&order));
            s.spawn(move || {
                let _g = m.write("x").unwrap();
                order.lock().push(i);
            });
            // Let thread i queue before thread i + 1 starts.
            while m.inspect().locks[0].waiters.len() <= i {
                thread::yield_now();
            }
        }
        drop(first);
    });
    assert_eq!(*order.lock(), [0, 1, 2, 3]);
}

#[test]
fn upgrade_downgrade_and_conflict() {
    let m = manager();
    let r = m.read("x").unwrap();
    let before = r.token();
    let w = r.upgrade().unwrap();
    assert!(w.token() > before, "every grant raises the token");
    assert_eq!(m.is_locked("x"), Some(Mode::Write));
    let r = w.downgrade().unwrap();
    assert_eq!(m.is_locked("x"), Some(Mode::Read));
    // Two readers: the first waits to upgrade, the second is refused at once.
    thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let m = &m;
        let upgrader = s.spawn(move || {
            let mine = m.read("x").unwrap();
            tx.send(()).unwrap();
            mine.upgrade().map(|w| w.token()).map_err(|f| f.error)
        });
        rx.recv().unwrap();
        while !m.inspect().locks[0]
            .waiters
            .iter()
            .any(|w| w.kind == WaitKind::Upgrade)
        {
            thread::yield_now();
        }
        let failed = r.upgrade().unwrap_err();
        assert!(
            matches!(failed.error, LockError::UpgradeConflict { .. }),
            "{}",
            failed.error
        );
        assert!(failed.guard.is_valid(), "the shared hold is given back");
        drop(failed);
        assert!(upgrader.join().unwrap().is_ok());
    });
    assert_eq!(m.stats().upgrade_conflicts, 1);
}

#[test]
fn re_entry_is_refused_not_hung() {
    let m = manager();
    let r = m.read("x").unwrap();
    let again = m.read("x").unwrap(); // recursive reads are fine
    assert!(matches!(
        m.write("x"),
        Err(LockError::WouldDeadlock {
            held: Mode::Read,
            requested: Mode::Write,
            ..
        })
    ));
    drop((r, again));
    let w = m.write("x").unwrap();
    assert!(matches!(
        m.read("x"),
        Err(LockError::WouldDeadlock {
            held: Mode::Write,
            ..
        })
    ));
    assert!(matches!(m.write("x"), Err(LockError::WouldDeadlock { .. })));
    // Upgrading while holding two reads would leave a reader beside the writer.
    drop(w);
    let (a, _b) = (m.read("y").unwrap(), m.read("y").unwrap());
    assert!(matches!(
        a.upgrade().unwrap_err().error,
        LockError::WouldDeadlock { .. }
    ));
    assert_eq!(m.stats().would_deadlock, 4);
}

#[test]
fn forged_releases_are_errors() {
    let m = manager();
    let w = m.write("x").unwrap();
    let token = w.token();
    let stranger = thread::scope(|s| s.spawn(|| m.release("x", token)).join().unwrap());
    assert_eq!(
        stranger,
        Err(LockError::NotOwner {
            name: "x".into(),
            token
        })
    );
    assert!(matches!(
        m.release("x", token + 100),
        Err(LockError::NotOwner { .. })
    ));
    assert!(matches!(
        m.release("nobody", 1),
        Err(LockError::NotOwner { .. })
    ));
    m.release("x", token).unwrap();
    assert!(!w.is_valid());
    drop(w); // a no-op now
    assert_eq!(m.is_locked("x"), None);
}

#[test]
fn leases_expire_fence_and_hand_over() {
    let clock = ManualClock::new();
    let config = LockConfig {
        lease: Some(Duration::from_secs(30)),
        ..LockConfig::default()
    };
    let m = LockManager::with_clock(config, Arc::new(clock.clone())).unwrap();
    let counter = m.fenced("counter", 0u64).unwrap();
    let stale = m.write("counter").unwrap();
    counter.with_mut(&stale, |c| *c += 1).unwrap();
    clock.advance(Duration::from_secs(29));
    assert_eq!(m.expire_overdue(), 0);
    let holder = &m.inspect().locks[0].holders[0];
    assert_eq!(holder.held_for, Some(Duration::from_secs(29)));
    assert_eq!(holder.lease_left, Some(Duration::from_secs(1)));
    clock.advance(Duration::from_secs(1));
    assert_eq!(m.expire_overdue(), 1);
    assert!(!stale.is_valid());
    let err = counter.with_mut(&stale, |c| *c += 1).unwrap_err();
    assert_eq!(
        err,
        LockError::LeaseExpired {
            name: "counter".into(),
            token: stale.token()
        }
    );
    // The next holder (another thread: this one's stale guard still exists) gets a higher token.
    let next = thread::scope(|s| {
        s.spawn(|| {
            let w = m.write("counter").unwrap();
            counter.with_mut(&w, |c| *c += 10).unwrap();
            w.token()
        })
        .join()
        .unwrap()
    });
    assert!(
        next > stale.token() + 1,
        "expiry and the new grant both raise the token"
    );
    drop(stale);
    assert_eq!(
        counter.into_inner(),
        11,
        "the stale write after expiry never landed"
    );
    assert_eq!(m.stats().expiries, 1);
}

#[test]
fn the_lease_monitor_expires_on_its_own_and_stops_on_drop() {
    let clock = ManualClock::new();
    let config = LockConfig {
        lease: Some(Duration::from_secs(1)),
        monitor_interval: Some(Duration::from_millis(5)),
        ..LockConfig::default()
    };
    let m = LockManager::with_clock(config, Arc::new(clock.clone())).unwrap();
    let g = m.read("x").unwrap();
    clock.advance(Duration::from_secs(2));
    // The monitor runs every 5 ms; wait (bounded) for it to notice.
    let started = std::time::Instant::now();
    while g.is_valid() && started.elapsed() < Duration::from_secs(5) {
        thread::yield_now();
    }
    assert!(!g.is_valid(), "the monitor thread expired the lease");
    drop(g);
    drop(m); // joins the monitor thread; a hang here fails the test by timeout
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let m = LockManager::new();
    assert_eq!(m.read("").unwrap_err(), LockError::EmptyName);
    assert!(matches!(
        m.try_read_for("x", Duration::ZERO),
        Err(LockError::ZeroDuration { .. })
    ));
    let err = m.try_write_for("x", Duration::from_secs(31)).unwrap_err();
    assert!(
        matches!(err, LockError::TimeoutExceedsLease { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("longer than the lease"));
    for config in [
        LockConfig {
            lease: Some(Duration::ZERO),
            ..LockConfig::default()
        },
        LockConfig {
            check_delay: Duration::ZERO,
            ..LockConfig::default()
        },
        LockConfig {
            monitor_interval: Some(Duration::ZERO),
            ..LockConfig::default()
        },
    ] {
        assert!(matches!(
            LockManager::with_config(config),
            Err(LockError::ZeroDuration { .. })
        ));
    }
    let w = m.write("a").unwrap();
    let other = m.fenced("b", 1).unwrap();
    assert!(matches!(
        other.with(&w, |v| *v),
        Err(LockError::WrongName { .. })
    ));
}

#[test]
fn resource_ids_name_locks_and_states_serialise() {
    let m = manager();
    let handle = m.resource(&ResourceId::from("frame-7")).unwrap();
    let _r = handle.read().unwrap();
    let state = m.inspect();
    assert_eq!(state.locks.len(), 1);
    assert_eq!(state.locks[0].name, "frame-7");
    assert_eq!(state.locks[0].holders[0].mode, Mode::Read);
    assert_eq!(
        state.locks[0].holders[0].held_for, None,
        "no clock is read without leases"
    );
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(json["locks"][0]["holders"][0]["mode"], "read");
    assert_eq!(json["stats"]["grants"], 1);
}

#[test]
fn fenced_data_checks_the_lock_not_just_the_name() {
    let a = manager();
    let b = manager();
    let data = a.fenced("x", 0).unwrap();
    let foreign = b.write("x").unwrap();
    assert!(matches!(
        data.with(&foreign, |v| *v),
        Err(LockError::WrongName { .. })
    ));
    let own = a.write("x").unwrap();
    data.with_mut(&own, |v| *v += 1).unwrap();
}

#[test]
fn a_writer_that_expired_while_waiting_for_the_data_never_writes() {
    let clock = ManualClock::new();
    let config = LockConfig {
        lease: Some(Duration::from_secs(30)),
        ..LockConfig::default()
    };
    let m = LockManager::with_clock(config, Arc::new(clock.clone())).unwrap();
    let data = m.fenced("x", Vec::<&str>::new()).unwrap();
    let (m, data, clock) = (&m, &data, &clock);
    thread::scope(|s| {
        let (inside_tx, inside_rx) = mpsc::channel();
        let (leave_tx, leave_rx) = mpsc::channel::<()>();
        // R reads and stays inside the data.
        let reader = s.spawn(move || {
            let r = m.read("x").unwrap();
            data.with(&r, |_| {
                inside_tx.send(()).unwrap();
                leave_rx.recv().unwrap();
            })
            .unwrap();
        });
        inside_rx.recv().unwrap();
        // R's lease runs out; writer A is granted and queues for the data behind R.
        clock.advance(Duration::from_secs(31));
        assert_eq!(m.expire_overdue(), 1);
        let (granted_tx, granted_rx) = mpsc::channel();
        let writer = s.spawn(move || {
            let w = m.write("x").unwrap();
            granted_tx.send(()).unwrap();
            data.with_mut(&w, |d| d.push("A"))
        });
        granted_rx.recv().unwrap();
        // A's lease runs out too before it reaches the data.
        clock.advance(Duration::from_secs(31));
        assert_eq!(m.expire_overdue(), 1);
        leave_tx.send(()).unwrap();
        reader.join().unwrap();
        assert!(matches!(
            writer.join().unwrap(),
            Err(LockError::LeaseExpired { .. })
        ));
    });
    let w = m.write("x").unwrap();
    assert!(
        data.with(&w, Vec::is_empty).unwrap(),
        "the stale write never landed"
    );
}

#[test]
fn huge_durations_are_errors_or_no_deadline_never_panics() {
    let config = LockConfig {
        check_delay: Duration::MAX,
        ..LockConfig::without_leases()
    };
    assert!(matches!(
        LockManager::with_config(config),
        Err(LockError::TooLong { .. })
    ));
    let m = manager();
    let held = m.write("x").unwrap();
    let timed = thread::scope(|s| {
        s.spawn(|| m.try_read_for("x", Duration::from_millis(20)).err())
            .join()
            .unwrap()
    });
    assert!(matches!(timed, Some(LockError::Timeout { .. })));
    drop(held);
    // Without leases a timeout of Duration::MAX is accepted and means "no deadline".
    assert!(m.try_read_for("x", Duration::MAX).is_ok());
}

#[test]
fn while_unlocked_runs_only_when_nobody_holds_the_name_and_holds_acquires_off() {
    let m = manager();
    assert_eq!(m.while_unlocked("never-made", || 1), Ok(1));
    let held = m.read("x").unwrap();
    assert_eq!(m.while_unlocked("x", || 2), Err(Mode::Read));
    drop(held);
    // An acquire that starts while `f` runs is granted only after it returns.
    let (started, wait) = mpsc::channel();
    let order = std::sync::Mutex::new(Vec::new());
    thread::scope(|s| {
        let ran = m.while_unlocked("x", || {
            s.spawn(|| {
                started.send(()).unwrap();
                let _g = m.write("x").unwrap();
                order.lock().unwrap().push("granted");
            });
            wait.recv().unwrap();
            thread::sleep(SHORT);
            order.lock().unwrap().push("f done");
        });
        assert_eq!(ran, Ok(()));
    });
    assert_eq!(*order.lock().unwrap(), ["f done", "granted"]);
    // Nested on one thread (two guards over one manager): no wait for itself.
    let nested = m.while_unlocked("x", || {
        assert_eq!(m.is_locked("x"), None);
        m.while_unlocked("x", || m.while_unlocked("y", || 3))
    });
    assert_eq!(nested, Ok(Ok(Ok(3))));
}

/// A waiter granted in the same pass of the lease monitor that expired the hold it waited
/// for still has its own lease enforced: the name stays on the leased list while anyone
/// waits for it.
#[test]
fn a_waiter_granted_after_an_expiry_still_has_a_lease() {
    let clock = ManualClock::new();
    let m = Arc::new(
        LockManager::with_clock(
            LockConfig {
                lease: Some(Duration::from_secs(1)),
                // The test expires by hand.
                monitor_interval: Some(Duration::from_secs(24 * 60 * 60)),
                ..LockConfig::default()
            },
            Arc::new(clock.clone()),
        )
        .unwrap(),
    );
    let stale = m.write("x").unwrap();
    let (granted_tx, granted_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let waiter = {
        let m = Arc::clone(&m);
        thread::spawn(move || {
            let w = m.write("x").unwrap();
            granted_tx.send(()).unwrap();
            done_rx.recv().unwrap();
            w.is_valid()
        })
    };
    while m.inspect().locks.iter().all(|l| l.waiters.is_empty()) {
        thread::sleep(Duration::from_millis(1));
    }
    clock.advance(Duration::from_secs(2));
    assert_eq!(m.expire_overdue(), 1);
    granted_rx.recv().unwrap();
    assert_eq!(m.leased_count(), 1, "the new hold is on the leased list");
    clock.advance(Duration::from_secs(2));
    assert_eq!(m.expire_overdue(), 1, "the new hold's lease runs out too");
    done_tx.send(()).unwrap();
    assert!(!waiter.join().unwrap());
    drop(stale);
}
