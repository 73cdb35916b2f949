//! The in-place form touches every element exactly once, in chunks that tile the input.

use std::sync::Mutex;

use memwarden_sched::ScheduleExt;
use proptest::prelude::*;

use crate::sched;

/// Runs `for_each_chunk_mut` over `len` zeros, adding 1 to each element, and checks that
/// every element was touched once and that the chunks (first index, length) tile the
/// input with the right first indices.
fn check(jobs: usize, chunk: Option<usize>, dynamic: bool, len: usize) {
    let s = sched(jobs, chunk, dynamic);
    let mut data: Vec<(usize, u32)> = (0..len).map(|i| (i, 0)).collect();
    let seen = Mutex::new(Vec::new());
    s.for_each_chunk_mut(&mut data, |first, chunk| {
        assert!(!chunk.is_empty(), "no empty chunk");
        assert_eq!(chunk[0].0, first, "first_index is chunk[0]'s index");
        for item in chunk.iter_mut() {
            item.1 += 1;
        }
        seen.lock()
            .expect("no panic holds it")
            .push((first, chunk.len()));
    });
    assert!(
        data.iter().all(|&(_, touched)| touched == 1),
        "every element once: jobs {jobs}, chunk {chunk:?}, {len} items"
    );
    let mut seen = seen.into_inner().expect("no panic holds it");
    seen.sort_unstable();
    let mut next = 0;
    for (first, n) in seen {
        assert_eq!(first, next, "chunks tile the input");
        next += n;
    }
    assert_eq!(next, len);
    if let Some(c) = chunk {
        let run = s.last_run().expect("a call ran");
        assert_eq!(run.chunk, c, "a configured chunk size is used as is");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_element_is_touched_once(
        len in 0usize..5_000,
        jobs in 1usize..6,
        chunk in proptest::option::of(1usize..600),
        dynamic in any::<bool>(),
    ) {
        check(jobs, chunk, dynamic, len);
    }
}

#[test]
fn in_place_edge_cases() {
    for (jobs, chunk, dynamic, len) in [
        (4, None, true, 0),
        (4, Some(1), false, 0),
        (8, None, true, 2),
        (8, None, false, 2),
        (2, Some(50), true, 10),
        (2, Some(1), true, 257),
        (1, None, true, 1_000),
        (3, None, false, 200_000),
    ] {
        check(jobs, chunk, dynamic, len);
    }
}

#[test]
fn the_extension_trait_works_in_place() {
    let s = sched(3, None, true);
    let mut data: Vec<u64> = (0..10_000).collect();
    data.par_for_each_chunk_mut(&s, |_, chunk| chunk.iter_mut().for_each(|x| *x *= 2));
    assert!(data.iter().enumerate().all(|(i, &x)| x == 2 * i as u64));
    let sums = data.par_schedule_chunks(&s, |_, chunk| chunk.iter().sum::<u64>());
    assert_eq!(sums.iter().sum::<u64>(), 2 * (0..10_000u64).sum::<u64>());
}
