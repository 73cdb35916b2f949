//! Planners and readers racing on one tracker never double-release or lose bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use memwarden_core::ResourceKind;
use memwarden_prioritizer::{Policy, Request, Urgency, plan};
use memwarden_reaper::Reaper;
use memwarden_tracker::{ResourceSpec, Tracker};

struct Counted(u64, Arc<AtomicU64>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(self.0, Ordering::SeqCst);
    }
}

#[test]
fn concurrent_plans_release_each_resource_once() {
    let tracker = Arc::new(Tracker::new());
    let reaper = Arc::new(Reaper::new(Arc::clone(&tracker)));
    let dropped = Arc::new(AtomicU64::new(0));
    let registered = Arc::new(AtomicU64::new(0));
    let freed_by_reports = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let (tracker, reaper) = (Arc::clone(&tracker), Arc::clone(&reaper));
            let (dropped, registered, freed) = (
                Arc::clone(&dropped),
                Arc::clone(&registered),
                Arc::clone(&freed_by_reports),
            );
            thread::spawn(move || {
                for i in 0..500u64 {
                    let bytes = 1 + (i * 7919 + w) % 1000;
                    let kind = ResourceKind::BUILTIN[(i % 4) as usize].clone();
                    let id = format!("w{w}-{i}");
                    let value = Counted(bytes, Arc::clone(&dropped));
                    tracker
                        .register(ResourceSpec::new(id.as_str(), kind, bytes), value)
                        .unwrap();
                    registered.fetch_add(bytes, Ordering::SeqCst);
                    let _ = tracker.get::<Counted>(&format!("w{}-{}", (w + 1) % 4, i / 2));
                    if i % 10 == 9 {
                        let p = plan(
                            &tracker.candidates(),
                            &Policy::default(),
                            &Request::new(Urgency::Critical, 20_000),
                        );
                        freed.fetch_add(reaper.execute(&p).bytes_freed, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let freed = freed_by_reports.load(Ordering::SeqCst);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        freed,
        "every reported byte was really dropped, once"
    );
    assert_eq!(
        tracker.totals().bytes + freed,
        registered.load(Ordering::SeqCst)
    );
    assert_eq!(reaper.stats().total.bytes_freed, freed);
}
