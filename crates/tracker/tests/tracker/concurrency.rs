//! Many threads registering, reading and detaching at once keep the books straight.

use std::sync::Arc;
use std::thread;

use memwarden_core::ResourceKind;
use memwarden_tracker::{ResourceSpec, Tracker, release};

#[test]
fn concurrent_register_get_detach_keeps_totals_exact() {
    let tracker = Arc::new(Tracker::new());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || {
                let mut kept = 0u64;
                for i in 0..2000u64 {
                    let id = format!("t{t}-{i}");
                    let kind = ResourceKind::BUILTIN[(i % 6) as usize].clone();
                    let value = tracker
                        .register(ResourceSpec::new(id.as_str(), kind, i + 1), i)
                        .unwrap();
                    assert_eq!(*tracker.get::<u64>(&id).unwrap().unwrap(), *value);
                    // Read a neighbour's resource, which may come and go under us.
                    let other = format!("t{}-{i}", (t + 1) % 4);
                    let _ = tracker.get::<u64>(&other);
                    if i % 3 == 0 {
                        assert_eq!(release::detach(&tracker, &id).unwrap().bytes, i + 1);
                    } else {
                        kept += i + 1;
                    }
                }
                kept
            })
        })
        .collect();
    let kept: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(tracker.totals().bytes, kept);
    assert_eq!(
        tracker
            .candidates()
            .candidates
            .iter()
            .map(|c| c.bytes)
            .sum::<u64>(),
        kept
    );
    let by_kind: u64 = tracker.kind_totals().values().map(|t| t.bytes).sum();
    assert_eq!(by_kind, kept);
    let stats = tracker.stats();
    assert_eq!(stats.registered - stats.detached, stats.live.count);
}
