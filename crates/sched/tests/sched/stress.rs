//! Several threads share one scheduler: every call's results stay its own, complete and
//! in order, while other callers' items panic, and nothing leaks.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicIsize, Ordering};

use crate::sched;

/// A result holding its item, counting how many results are alive.
struct Tagged<'a> {
    item: u64,
    live: &'a AtomicIsize,
}

impl<'a> Tagged<'a> {
    fn new(item: u64, live: &'a AtomicIsize) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Tagged { item, live }
    }
}

impl Drop for Tagged<'_> {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// SplitMix64: each caller's own sequence of lengths, offsets and panicking items.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn concurrent_callers_get_their_own_results_in_order() {
    for (jobs, chunk, dynamic) in [(2, None, true), (3, Some(7), false), (4, None, false)] {
        let s = sched(jobs, chunk, dynamic);
        let live = AtomicIsize::new(0);
        std::thread::scope(|scope| {
            for caller in 0..4u64 {
                let (s, live) = (&s, &live);
                scope.spawn(move || {
                    let mut rng = caller + 1;
                    for round in 0..200 {
                        let len = (next(&mut rng) % 3000) as usize;
                        let base = caller << 32 | round << 16;
                        let data: Vec<u64> = (0..len as u64).map(|i| base + i).collect();
                        // One call in four has an item that panics.
                        let bad = (len > 0 && next(&mut rng).is_multiple_of(4))
                            .then(|| data[(next(&mut rng) % len as u64) as usize]);
                        let got = catch_unwind(AssertUnwindSafe(|| {
                            s.schedule(
                                |&x| {
                                    assert!(Some(x) != bad, "item {x} fails");
                                    Tagged::new(x * 3, live)
                                },
                                &data,
                            )
                        }));
                        match (got, bad) {
                            (Ok(results), None) => {
                                assert_eq!(results.len(), data.len());
                                for (r, x) in results.iter().zip(&data) {
                                    assert_eq!(r.item, x * 3, "caller {caller} round {round}");
                                }
                            }
                            (Err(_), Some(_)) => {}
                            (Ok(_), Some(b)) => panic!("item {b} should have panicked"),
                            (Err(_), None) => panic!("caller {caller} round {round} panicked"),
                        }
                        // The in-place form, on the same scheduler, in between.
                        let mut values = data.clone();
                        s.for_each_chunk_mut(&mut values, |first, chunk| {
                            for (k, v) in chunk.iter_mut().enumerate() {
                                assert_eq!(*v, base + (first + k) as u64);
                                *v += 1;
                            }
                        });
                        assert!(values.iter().zip(&data).all(|(v, x)| *v == x + 1));
                    }
                });
            }
        });
        assert_eq!(
            live.load(Ordering::SeqCst),
            0,
            "results leaked or dropped twice"
        );
    }
}
