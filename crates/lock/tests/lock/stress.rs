//! 8 threads x 1 000 000 mixed operations on 64 names, checked against shadow counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use memwarden_lock::{Fenced, Held, LockError};

use crate::manager;

const THREADS: u64 = 8;
const OPS: u64 = 1_000_000;
const NAMES: usize = 64;

#[test]
fn mixed_operations_lose_no_update() {
    let m = manager();
    let handles: Vec<_> = (0..NAMES)
        .map(|i| m.handle(&format!("name-{i}")).unwrap())
        .collect();
    let data: Vec<Fenced<u64>> = (0..NAMES)
        .map(|i| m.fenced(&format!("name-{i}"), 0).unwrap())
        .collect();
    let shadow: Vec<AtomicU64> = (0..NAMES).map(|_| AtomicU64::new(0)).collect();
    let grants = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (handles, data, shadow, grants, refused) =
                (&handles, &data, &shadow, &grants, &refused);
            s.spawn(move || {
                let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let (mut my_grants, mut my_refused) = (0u64, 0u64);
                for _ in 0..OPS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let n = (x >> 8) as usize % NAMES;
                    match x % 100 {
                        0..=69 => {
                            let g = handles[n].read().unwrap();
                            data[n].with(&g, |v| std::hint::black_box(*v)).unwrap();
                            my_grants += 1;
                        }
                        70..=89 => {
                            let g = handles[n].write().unwrap();
                            data[n].with_mut(&g, |v| *v += 1).unwrap();
                            shadow[n].fetch_add(1, Ordering::Relaxed);
                            my_grants += 1;
                        }
                        90..=94 => {
                            let g = handles[n].read().unwrap();
                            my_grants += 1;
                            match g.upgrade() {
                                Ok(w) => {
                                    my_grants += 1;
                                    data[n].with_mut(&w, |v| *v += 1).unwrap();
                                    shadow[n].fetch_add(1, Ordering::Relaxed);
                                    let _r = w.downgrade().unwrap();
                                    my_grants += 1;
                                }
                                Err(failed) => {
                                    assert!(
                                        matches!(failed.error, LockError::UpgradeConflict { .. }),
                                        "{}",
                                        failed.error
                                    );
                                    my_refused += 1;
                                }
                            }
                        }
                        _ => match handles[n].try_write_for(Duration::from_millis(50)) {
                            Ok(g) => {
                                data[n].with_mut(&g, |v| *v += 1).unwrap();
                                shadow[n].fetch_add(1, Ordering::Relaxed);
                                my_grants += 1;
                            }
                            Err(LockError::Timeout { .. }) => {}
                            Err(e) => panic!("{e}"),
                        },
                    }
                }
                grants.fetch_add(my_grants, Ordering::Relaxed);
                refused.fetch_add(my_refused, Ordering::Relaxed);
            });
        }
    });
    for n in 0..NAMES {
        let g = handles[n].read().unwrap();
        assert_eq!(
            data[n].with(&g, |v| *v).unwrap(),
            shadow[n].load(Ordering::Relaxed),
            "name-{n}"
        );
    }
    let stats = m.stats();
    assert_eq!(
        stats.grants,
        grants.load(Ordering::Relaxed) + NAMES as u64,
        "grants (plus the final reads)"
    );
    assert_eq!(stats.upgrade_conflicts, refused.load(Ordering::Relaxed));
    assert_eq!(stats.deadlocks, 0);
}

#[test]
fn a_million_distinct_names_leave_the_table_near_empty() {
    const NAMES: usize = 1_000_000;
    let m = crate::manager();
    let first = m.write("again").unwrap().token();
    for i in 0..NAMES {
        drop(m.write(&format!("request-{i}")).unwrap());
    }
    // "again" left the table long ago; made again, its tokens still only grow.
    assert!(m.write("again").unwrap().token() > first);
    println!(
        "{NAMES} distinct names acquired and released: {} left in the table",
        m.name_count()
    );
    assert!(
        m.name_count() < 1024,
        "{} names left in the table",
        m.name_count()
    );
    assert_eq!(
        m.stats().grants,
        NAMES as u64 + 2,
        "the counters of removed names are kept"
    );
    // A name in use is never removed: its holder and a later acquirer exclude each other.
    let held = m.write("kept").unwrap();
    for i in 0..10_000 {
        drop(m.read(&format!("churn-{i}")).unwrap());
    }
    let other = thread::scope(|s| {
        s.spawn(|| m.try_write_for("kept", Duration::from_millis(1)).err())
            .join()
            .unwrap()
    });
    assert!(
        matches!(other, Some(LockError::Timeout { .. })),
        "{other:?}"
    );
    drop(held);
}

#[test]
fn the_lease_monitor_walks_only_names_with_leases() {
    use memwarden_core::ManualClock;
    use memwarden_lock::{LockConfig, LockManager};
    use std::sync::Arc;
    use std::time::Duration;
    let clock = ManualClock::new();
    let m = LockManager::with_clock(
        LockConfig {
            lease: Some(Duration::from_secs(30)),
            // The test expires by hand.
            monitor_interval: Some(Duration::from_secs(24 * 60 * 60)),
            ..LockConfig::default()
        },
        Arc::new(clock.clone()),
    )
    .unwrap();
    let kept = m.read("long-read").unwrap();
    for i in 0..5_000 {
        drop(m.write(&format!("short-{i}")).unwrap());
    }
    assert_eq!(
        m.leased_count(),
        5_001,
        "every name leased since the last pass"
    );
    assert_eq!(m.expire_overdue(), 0);
    assert_eq!(
        m.leased_count(),
        1,
        "only the name still held stays on the list"
    );
    for i in 0..5_000 {
        drop(m.read(&format!("next-{i}")).unwrap());
    }
    m.expire_overdue();
    clock.advance(Duration::from_secs(31));
    assert_eq!(m.expire_overdue(), 1, "the held lease expires");
    assert!(!kept.is_valid());
    assert_eq!(m.leased_count(), 0);
    drop(kept);
    // A pass of the monitor that lets go of names sweeps the table: what is left are
    // the names used since the last pass (none here) and those this thread's name cache
    // remembers (the eight it used last).
    m.expire_overdue();
    assert!(
        m.name_count() <= 1 + 8,
        "only the expired name and the cached ones: {} names",
        m.name_count()
    );
    for i in 0..300 {
        drop(m.read(&format!("last-{i}")).unwrap());
    }
    m.expire_overdue();
    assert!(m.name_count() < 1024, "{} names", m.name_count());
}
