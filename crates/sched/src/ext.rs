//! [`ScheduleExt`]: the scheduler's calls as methods of slices.

use crate::ParallelScheduler;

/// `data.par_schedule(&sched, op)` for `sched.schedule(op, &data)`, and the same for
/// the chunked forms; implemented for every slice (and so, through deref, for `Vec`).
///
/// ```
/// use memwarden_sched::{ParallelScheduler, ScheduleExt};
///
/// let sched = ParallelScheduler::new();
/// let words = vec!["a", "bb", "ccc"];
/// assert_eq!(words.par_schedule(&sched, |w| w.len()), [1, 2, 3]);
///
/// let mut counts = vec![1u32; 100];
/// counts.par_for_each_chunk_mut(&sched, |_, chunk| chunk.iter_mut().for_each(|c| *c *= 2));
/// assert_eq!(counts.iter().sum::<u32>(), 200);
/// ```
pub trait ScheduleExt<T> {
    /// [`ParallelScheduler::schedule`] over this slice: results in order.
    fn par_schedule<R, F>(&self, sched: &ParallelScheduler, op: F) -> Vec<R>
    where
        T: Sync,
        R: Send,
        F: Fn(&T) -> R + Sync;

    /// [`ParallelScheduler::schedule_chunks`] over this slice: one result per chunk.
    fn par_schedule_chunks<R, F>(&self, sched: &ParallelScheduler, op: F) -> Vec<R>
    where
        T: Sync,
        R: Send,
        F: Fn(usize, &[T]) -> R + Sync;

    /// [`ParallelScheduler::for_each_chunk_mut`] over this slice, in place.
    fn par_for_each_chunk_mut<F>(&mut self, sched: &ParallelScheduler, op: F)
    where
        T: Send,
        F: Fn(usize, &mut [T]) + Sync;
}

impl<T> ScheduleExt<T> for [T] {
    fn par_schedule<R, F>(&self, sched: &ParallelScheduler, op: F) -> Vec<R>
    where
        T: Sync,
        R: Send,
        F: Fn(&T) -> R + Sync,
    {
        sched.schedule(op, self)
    }

    fn par_schedule_chunks<R, F>(&self, sched: &ParallelScheduler, op: F) -> Vec<R>
    where
        T: Sync,
        R: Send,
        F: Fn(usize, &[T]) -> R + Sync,
    {
        sched.schedule_chunks(op, self)
    }

    fn par_for_each_chunk_mut<F>(&mut self, sched: &ParallelScheduler, op: F)
    where
        T: Send,
        F: Fn(usize, &mut [T]) + Sync,
    {
        sched.for_each_chunk_mut(self, op);
    }
}
