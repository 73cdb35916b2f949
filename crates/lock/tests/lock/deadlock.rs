//! Cycles of waits are found within the check delay; long waits without a cycle are not.

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use memwarden_lock::{LockError, LockManager};

use crate::manager;

const CHECK_DELAY: Duration = Duration::from_millis(50);

/// Runs `n` threads; thread i holds `n{i}` then asks for `n{i+1 mod n}`. Returns, per
/// thread, the error it got (if any) and when, measured from the moment all held.
fn ring(m: &LockManager, n: usize) -> Vec<(Option<LockError>, Duration)> {
    let held = Barrier::new(n);
    let started = parking_lot::Mutex::new(None::<Instant>);
    thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (held, started) = (&held, &started);
                thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn_scoped(s, move || {
                        let mine = m.write(&format!("n{i}")).unwrap();
                        if held.wait().is_leader() {
                            *started.lock() = Some(Instant::now());
                        }
                        let result = m.write(&format!("n{}", (i + 1) % n));
                        let at = started.lock().expect("set by the barrier leader").elapsed();
                        drop(mine);
                        (result.err(), at)
                    })
                    .unwrap()
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn check_ring(n: usize) {
    let m = manager();
    let outcomes = ring(&m, n);
    let deadlocks: Vec<_> = outcomes
        .iter()
        .filter(|(e, _)| matches!(e, Some(LockError::Deadlock { .. })))
        .collect();
    assert!(
        !deadlocks.is_empty(),
        "the cycle of {n} was not detected: {outcomes:?}"
    );
    let others: Vec<_> = outcomes
        .iter()
        .filter(|(e, _)| !matches!(e, None | Some(LockError::Deadlock { .. })))
        .collect();
    assert!(others.is_empty(), "{others:?}");
    for (error, at) in &deadlocks {
        assert!(
            *at <= CHECK_DELAY + Duration::from_millis(100),
            "detected after {at:?}"
        );
        let Some(LockError::Deadlock { cycle }) = error else {
            unreachable!()
        };
        assert_eq!(cycle.len(), n, "{cycle:?}");
        let text = error.as_ref().unwrap().to_string();
        assert!(text.contains("worker-") && text.contains("\"n"), "{text}");
    }
    assert_eq!(deadlocks.len(), 1, "one cycle, one victim: {outcomes:?}");
    assert_eq!(m.stats().deadlocks, 1);
}

/// Returns once `n` threads wait on `m`'s names, in all.
fn wait_for_waiters(m: &LockManager, n: usize) {
    while m
        .inspect()
        .locks
        .iter()
        .map(|l| l.waiters.len())
        .sum::<usize>()
        < n
    {
        thread::yield_now();
    }
}

#[test]
fn two_thread_cycle_is_detected() {
    check_ring(2);
}

#[test]
fn three_thread_cycle_is_detected() {
    check_ring(3);
}

#[test]
fn a_long_wait_without_a_cycle_is_not_a_deadlock() {
    let m = manager();
    let holder = m.write("busy").unwrap();
    thread::scope(|s| {
        let waiter = s.spawn(|| m.write("busy").map(drop));
        // Let the waiter run several deadlock checks against a holder that waits for nothing.
        let started = Instant::now();
        while started.elapsed() < CHECK_DELAY * 5 {
            thread::yield_now();
        }
        drop(holder);
        assert_eq!(waiter.join().unwrap(), Ok(()));
    });
    assert_eq!(m.stats().deadlocks, 0);
}

#[test]
fn a_reader_behind_a_queued_writer_is_on_the_cycle() {
    // T1 holds `a` (read), T2 holds `b` (read), T3 queues to write `b`. T1 then asks to
    // read `b`: writer preference puts it behind T3, which waits for T2. T2 asks to write
    // `a`, which T1 holds. The cycle T1 -> T3 -> T2 -> T1 runs through a queued writer.
    let m = manager();
    let m = &m;
    let waiting = |n: usize| wait_for_waiters(m, n);
    let (a_held, b_held) = (Barrier::new(3), Barrier::new(2));
    let outcomes: Vec<Option<LockError>> = thread::scope(|s| {
        let t1 = s.spawn(|| {
            let _a = m.read("a").unwrap();
            a_held.wait();
            b_held.wait(); // T3 is queued on b by now
            m.read("b").err()
        });
        let t2 = s.spawn(|| {
            let _b = m.read("b").unwrap();
            a_held.wait();
            waiting(2); // T3 and T1 wait on b
            m.write("a").err()
        });
        a_held.wait();
        let t3 = s.spawn(|| m.write("b").err());
        waiting(1);
        b_held.wait();
        vec![t1.join().unwrap(), t2.join().unwrap(), t3.join().unwrap()]
    });
    assert!(
        outcomes
            .iter()
            .any(|e| matches!(e, Some(LockError::Deadlock { .. }))),
        "{outcomes:?}"
    );
}

#[test]
fn in_fair_mode_a_reader_held_back_by_a_later_upgrade_is_on_the_cycle() {
    // H and U hold `x` (read); W queues a write on `x` with a timeout; R holds `y`
    // (write) and queues a read on `x` behind W; U starts an upgrade of `x` (after R
    // queued); H asks for `y`; W gives up. Nothing can move: R waits for U's upgrade
    // (readers never pass an upgrade), U for H's read of `x`, H for R's write of `y`.
    // Every step is handed over explicitly; each wait but W's is long, so a missed
    // cycle shows as timeouts, not a hang. W gives up long before anyone's first
    // deadlock check (while it waits, W is on a cycle of its own with H and R).
    use memwarden_lock::{LockConfig, WaitKind};
    let m = LockManager::with_config(LockConfig {
        check_delay: Duration::from_secs(2),
        fair: true,
        ..LockConfig::without_leases()
    })
    .unwrap();
    let m = &m;
    let long = Duration::from_secs(10);
    // Waits until `name` has `n` waiters, the last of them waiting for `kind`.
    let queued = |name: &str, n: usize, kind: WaitKind| loop {
        let state = m.inspect();
        if state
            .locks
            .iter()
            .find(|l| l.name == name)
            .is_some_and(|l| l.waiters.len() == n && l.waiters.iter().any(|w| w.kind == kind))
        {
            return;
        }
        thread::yield_now();
    };
    let (x_read, y_held) = (Barrier::new(3), Barrier::new(2));
    let (r_queued, u_queued) = (Barrier::new(2), Barrier::new(2));
    let outcomes: Vec<(&str, Option<LockError>)> = thread::scope(|s| {
        let h = s.spawn(|| {
            let x = m.read("x").unwrap();
            x_read.wait();
            u_queued.wait();
            let y = m.try_write_for("y", long);
            drop(x);
            ("H", y.err())
        });
        let u = s.spawn(|| {
            let x = m.read("x").unwrap();
            x_read.wait();
            r_queued.wait();
            let upgraded = x.try_upgrade_for(long);
            ("U", upgraded.err().map(|failed| failed.error))
        });
        x_read.wait();
        let w = s.spawn(|| ("W", m.try_write_for("x", Duration::from_millis(500)).err()));
        queued("x", 1, WaitKind::Write);
        let r = s.spawn(|| {
            let y = m.write("y").unwrap();
            y_held.wait();
            let x = m.try_read_for("x", long);
            drop(y);
            ("R", x.err())
        });
        y_held.wait();
        queued("x", 2, WaitKind::Read);
        r_queued.wait();
        queued("x", 3, WaitKind::Upgrade);
        u_queued.wait();
        [w, h, u, r].map(|t| t.join().unwrap()).to_vec()
    });
    let deadlocks = outcomes
        .iter()
        .filter(|(_, e)| matches!(e, Some(LockError::Deadlock { .. })))
        .count();
    assert_eq!(deadlocks, 1, "{outcomes:?}");
    assert!(
        matches!(outcomes[0].1, Some(LockError::Timeout { .. })),
        "W gives up: {outcomes:?}"
    );
    let others: Vec<_> = outcomes[1..]
        .iter()
        .filter(|(_, e)| !matches!(e, None | Some(LockError::Deadlock { .. })))
        .collect();
    assert!(others.is_empty(), "{others:?}");
}

#[test]
fn a_check_asked_for_finds_a_cycle_without_waiting_for_the_delay() {
    // A delay no test would wait out: only the explicit check can find the cycle.
    let m = LockManager::with_config(memwarden_lock::LockConfig {
        check_delay: Duration::from_secs(3600),
        ..memwarden_lock::LockConfig::without_leases()
    })
    .unwrap();
    let m = &m;
    let held = Barrier::new(3);
    let outcomes: Vec<Option<LockError>> = thread::scope(|s| {
        let cross = |first: &'static str, second: &'static str| {
            let held = &held;
            s.spawn(move || {
                let mine = m.write(first).unwrap();
                held.wait();
                let result = m.write(second).err();
                drop(mine);
                result
            })
        };
        let (a, b) = (cross("a", "b"), cross("b", "a"));
        held.wait();
        wait_for_waiters(m, 2);
        m.check_deadlocks();
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    let deadlocks = outcomes
        .iter()
        .filter(|e| matches!(e, Some(LockError::Deadlock { .. })))
        .count();
    assert_eq!(deadlocks, 1, "{outcomes:?}");
}
