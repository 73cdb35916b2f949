//! A panic in user code reaches the caller as a panic, without deadlock, and drops
//! exactly the results already produced.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicIsize, Ordering};

use crate::sched;

/// A result that counts how many of its kind are alive.
struct Counted<'a>(&'a AtomicIsize);

impl<'a> Counted<'a> {
    fn new(live: &'a AtomicIsize) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Counted(live)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn a_panicking_item_panics_the_caller_and_leaks_nothing() {
    // (jobs, chunk, dynamic, the item that panics): in the probe, in a parallel chunk,
    // at a chunk's start and end, inline.
    for (jobs, chunk, dynamic, bad) in [
        (4, None, true, 0),
        (4, None, true, 1),
        (4, None, true, 9_999),
        (4, Some(100), false, 5_000),
        (4, Some(100), false, 5_099),
        (4, Some(100), false, 5_100),
        (2, None, false, 123),
        (1, None, true, 777),
    ] {
        let s = sched(jobs, chunk, dynamic);
        let live = AtomicIsize::new(0);
        let data: Vec<usize> = (0..10_000).collect();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            s.schedule(
                |&i| {
                    assert!(i != bad, "item {i} fails");
                    Counted::new(&live)
                },
                &data,
            )
        }));
        assert!(caught.is_err(), "the panic reached the caller (item {bad})");
        assert_eq!(
            live.load(Ordering::SeqCst),
            0,
            "every result produced was dropped (jobs {jobs}, item {bad})"
        );

        // The scheduler is still usable, and its results are complete.
        let ok = s.schedule(|_| Counted::new(&live), &data);
        assert_eq!(ok.len(), data.len());
        assert_eq!(live.load(Ordering::SeqCst), 10_000);
        drop(ok);
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }
}

#[test]
fn panics_propagate_from_every_form() {
    let s = sched(3, Some(16), false);
    let mut data: Vec<u32> = (0..1_000).collect();

    let caught = catch_unwind(AssertUnwindSafe(|| {
        s.for_each_chunk_mut(&mut data, |first, _| assert!(first != 496, "chunk fails"));
    }));
    assert!(caught.is_err(), "for_each_chunk_mut");

    let caught = catch_unwind(AssertUnwindSafe(|| {
        s.schedule_chunks(
            |first, _: &[u32]| assert!(first != 992, "chunk fails"),
            &data,
        )
    }));
    assert!(caught.is_err(), "schedule_chunks");

    let wrapped = s.wrap(|x: &u32| {
        assert!(*x != 500, "item fails");
        *x
    });
    assert!(
        catch_unwind(AssertUnwindSafe(|| wrapped(&data))).is_err(),
        "wrap"
    );

    // And afterwards everything still runs.
    s.for_each_chunk_mut(&mut data, |_, chunk| chunk.iter_mut().for_each(|x| *x += 1));
    assert_eq!(data[999], 1_000);
}

#[test]
fn dropping_a_scheduler_joins_its_threads() {
    // Many schedulers built, used and dropped in turn: each drop joins its pool, so
    // this neither hangs nor accumulates threads.
    for jobs in 1..=4 {
        for _ in 0..8 {
            let s = sched(jobs, Some(1), false);
            assert_eq!(s.schedule(|x: &u8| x + 1, &[1u8; 64]).len(), 64);
        }
    }
}
