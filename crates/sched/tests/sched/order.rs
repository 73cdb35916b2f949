//! `schedule` and its forms return results in input order, whatever the cut.

use memwarden_sched::{ParallelScheduler, ScheduleExt};
use proptest::prelude::*;

use crate::sched;

/// Runs every mapping form over `0..len` and checks each against the sequential result.
fn check(s: &ParallelScheduler, len: usize) {
    let data: Vec<u64> = (0..len as u64).collect();
    let want: Vec<u64> = data.iter().map(|x| x * 3 + 1).collect();
    assert_eq!(
        s.schedule(|x| x * 3 + 1, &data),
        want,
        "schedule, {len} items"
    );
    assert_eq!(data.par_schedule(s, |x| x * 3 + 1), want, "par_schedule");
    let wrapped = s.wrap(|x: &u64| x * 3 + 1);
    assert_eq!(wrapped(&data), want, "wrap");

    // One result per chunk: (first index, the chunk's items); together they must be the
    // input, in order, each chunk non-empty.
    let chunks = s.schedule_chunks(|first, chunk: &[u64]| (first, chunk.to_vec()), &data);
    let mut next = 0;
    for (first, items) in &chunks {
        assert_eq!(*first, next, "chunks follow each other");
        assert!(!items.is_empty(), "no empty chunk");
        next += items.len();
    }
    let flat: Vec<u64> = chunks.into_iter().flat_map(|(_, c)| c).collect();
    assert_eq!(flat, data, "schedule_chunks, {len} items");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn results_come_back_in_input_order(
        len in 0usize..3_000,
        jobs in 1usize..6,
        chunk in proptest::option::of(1usize..400),
        dynamic in any::<bool>(),
    ) {
        check(&sched(jobs, chunk, dynamic), len);
    }
}

#[test]
fn edge_cases_of_the_cut() {
    // (jobs, chunk, dynamic, len): empty input, fewer items than workers, a chunk larger
    // than the input, chunks of one, a single item, one worker.
    for (jobs, chunk, dynamic, len) in [
        (4, None, true, 0),
        (4, None, false, 0),
        (4, Some(1), true, 0),
        (8, None, true, 3),
        (8, None, false, 3),
        (8, Some(1), false, 3),
        (3, Some(10_000), true, 500),
        (3, Some(1), true, 500),
        (2, Some(1), false, 1),
        (1, None, true, 1_000),
        (1, Some(7), true, 1_000),
        (2, None, false, 100_000),
        (2, None, true, 100_000),
    ] {
        check(&sched(jobs, chunk, dynamic), len);
    }
}

#[test]
fn order_holds_when_items_finish_out_of_order() {
    // Early items are the slowest, so later chunks finish first.
    let s = sched(4, Some(3), false);
    let data: Vec<u32> = (0..200).collect();
    let out = s.schedule(
        |&x| {
            let spins = (200 - x) * 2_000;
            let mut acc = x;
            for i in 0..spins {
                acc = std::hint::black_box(acc.wrapping_add(i));
            }
            (x, acc)
        },
        &data,
    );
    assert!(out.iter().map(|(x, _)| *x).eq(data.iter().copied()));
}

#[test]
fn the_function_form_and_the_global_scheduler_agree() {
    let data: Vec<i32> = (-500..500).collect();
    let want: Vec<i32> = data.iter().map(|x| x.abs()).collect();
    assert_eq!(memwarden_sched::schedule(|x: &i32| x.abs(), &data), want);
    assert!(memwarden_sched::global().jobs() >= 1);
}

#[test]
fn last_run_reports_the_cut() {
    let s = sched(2, Some(10), true);
    let _ = s.schedule(|x: &u8| *x, &[0u8; 95]);
    let run = s.last_run().expect("a call ran");
    assert_eq!(
        (run.items, run.probed, run.chunk, run.chunks),
        (95, 0, 10, 10)
    );
    assert_eq!(run.workers, 2);

    let s = sched(1, None, true);
    assert_eq!(s.last_run(), None);
    let _ = s.schedule(|x: &u8| *x, &[0u8; 95]);
    assert!(
        s.last_run().expect("a call ran").ran_inline(),
        "jobs 1 runs inline"
    );
}

#[test]
fn nested_calls_on_the_same_scheduler_finish() {
    let s = sched(2, Some(1), false);
    let rows: Vec<u64> = (0..16).collect();
    let sums = s.schedule(
        |&r| {
            let cols: Vec<u64> = (0..100).collect();
            s.schedule(|c| r * c, &cols).iter().sum::<u64>()
        },
        &rows,
    );
    assert!(sums.iter().enumerate().all(|(r, &x)| x == r as u64 * 4_950));
}
