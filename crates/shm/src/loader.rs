//! [`GafLoader`]: a dataset streamed as GAF images through a ring of reusable shared slots.
//!
//! Each slot is its own [`SharedSegment`] holding a complete `.npy` file of one batch, so
//! a batch can be handed to another process (Python included) by path. Slots are made
//! on first use and then reused: on these machines touching fresh pages costs more than
//! the GAF arithmetic, so after the first pass over the ring every batch rewrites pages
//! that are already mapped. A dataset whose length is not a multiple of the batch size
//! ends with a shorter batch; it gets a slot of its own, sized exactly, so that every
//! slot stays a valid `.npy` of its batch without ever being resized (shrinking a
//! tmpfs file frees its pages, and growing it back would fault them in afresh).
//!
//! # Compute on demand, no prefetch thread
//!
//! A batch is computed when it is asked for, by all workers of the loader's
//! [`ParallelScheduler`] at once, and handed out as a [`Batch`] guard that borrows its
//! slot; dropping the guard returns the slot to the ring. There is no background thread
//! computing ahead: the transform already keeps every worker busy, so a producer
//! running ahead would compete with them for the same cores, while computing on demand
//! lets the input be any borrowed slice (an mmap-ed `.npy`, say), keeps batches in order
//! by construction and re-raises a worker's panic on the caller's thread. The ring still
//! matters: a consumer may hold up to `ring_slots` batches at once (one being read by
//! another process while the next is computed), plus the final shorter batch; asking
//! for more is an error ([`ShmError::RingExhausted`]), never a deadlock.
//!
//! # Auto configuration
//!
//! - workers: [`memwarden_sched::available_jobs`];
//! - chunk size (samples per task): as many samples as fit, with their input row and
//!   image, in half the L2 cache ([`CacheInfo::detect`]), but small enough that a batch
//!   splits into at least four tasks per worker;
//! - batch size: the memory budget divided among the ring's slots. The default budget,
//!   16 MiB, is a quarter of a Docker container's default `/dev/shm` and about half a
//!   typical L3; measured on 4000 × 128 → 64 `f32`, budgets from 4 to 64 MiB run the
//!   steady state at the same speed, while the first pass (fresh pages) gets slower the
//!   larger the ring, so the smaller end wins.

use std::marker::PhantomData;
use std::ops::Range;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use memwarden_sched::{CacheInfo, ParallelScheduler};

use crate::error::{Result, ShmError};
use crate::float::{self, Float};
use crate::gaf::Gaf;
use crate::npy;
use crate::segment::{Backing, SegmentOptions, SharedSegment};

/// Default bytes for the whole ring of slots (16 MiB).
pub const DEFAULT_MEMORY_BUDGET: usize = 16 << 20;

/// Default number of slots in the ring.
pub const DEFAULT_RING_SLOTS: usize = 2;

/// How to run a [`GafLoader`]; every `None` is chosen automatically.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    workers: Option<usize>,
    chunk_size: Option<usize>,
    batch_size: Option<usize>,
    memory_budget: usize,
    ring_slots: usize,
    segment: SegmentOptions,
    tag: String,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            workers: None,
            chunk_size: None,
            batch_size: None,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            ring_slots: DEFAULT_RING_SLOTS,
            segment: SegmentOptions::default(),
            tag: "gaf".into(),
        }
    }
}

impl LoaderConfig {
    /// Everything automatic.
    pub fn new() -> Self {
        Self::default()
    }

    /// Worker threads (at least 1).
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers.max(1));
        self
    }

    /// Samples per parallel task (at least 1).
    pub fn with_chunk_size(mut self, samples: usize) -> Self {
        self.chunk_size = Some(samples.max(1));
        self
    }

    /// Samples per batch (at least 1), instead of deriving it from the memory budget.
    pub fn with_batch_size(mut self, samples: usize) -> Self {
        self.batch_size = Some(samples.max(1));
        self
    }

    /// Bytes the whole ring may take; the batch size is derived from it.
    pub fn with_memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Slots in the ring (at least 1): how many batches may be held at once.
    pub fn with_ring_slots(mut self, slots: usize) -> Self {
        self.ring_slots = slots.max(1);
        self
    }

    /// Where the slots' segments go.
    pub fn with_segment_options(mut self, options: SegmentOptions) -> Self {
        self.segment = options;
        self
    }

    /// A word put into the slots' segment names (default `gaf`).
    pub fn with_name_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }
}

/// The configuration a loader settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoaderPlan {
    /// Worker threads.
    pub workers: usize,
    /// Samples per parallel task.
    pub chunk_size: usize,
    /// Samples per batch (the last batch may be shorter).
    pub batch_size: usize,
    /// Slots in the ring.
    pub ring_slots: usize,
    /// Bytes of one full slot: `.npy` header plus `batch_size` images.
    pub slot_bytes: usize,
    /// Batches in one pass over the dataset.
    pub batches: usize,
}

type Hook<F> = Box<dyn Fn(usize, &mut [F]) + Send + Sync>;

/// Streams `n` series through a GAF transform in batches, each batch written by the
/// workers straight into a reusable shared slot.
///
/// ```
/// use memwarden_shm::{Gaf, GafConfig, GafLoader, ImageSize, LoaderConfig};
///
/// let (n, t) = (10, 32);
/// let series: Vec<f64> = (0..n * t).map(|i| (i as f64 * 0.37).sin()).collect();
/// let gaf = Gaf::new(GafConfig { image_size: ImageSize::Fixed(8), ..GafConfig::default() }, t)?;
/// let loader = GafLoader::<f64, f32>::new(gaf, &series, n, LoaderConfig::new().with_batch_size(4))?;
/// let mut seen = 0;
/// for batch in loader.batches() {
///     let batch = batch?;
///     assert_eq!(batch.samples().start, seen);
///     seen += batch.len();
///     assert_eq!(batch.images().len(), batch.len() * 64);
/// }
/// assert_eq!(seen, n);
/// # Ok::<(), memwarden_shm::ShmError>(())
/// ```
pub struct GafLoader<'a, I: Float, F: Float> {
    gaf: Gaf,
    input: &'a [I],
    n: usize,
    plan: LoaderPlan,
    sched: ParallelScheduler,
    options: SegmentOptions,
    tag: String,
    ring: Ring,
    hook: Option<Hook<F>>,
}

impl<I: Float, F: Float> std::fmt::Debug for GafLoader<'_, I, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GafLoader")
            .field("gaf", &self.gaf)
            .field("n", &self.n)
            .field("plan", &self.plan)
            .field("options", &self.options)
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

/// The slots not lent out, and how many exist in all.
#[derive(Debug, Default)]
struct Ring {
    state: Mutex<RingState>,
}

#[derive(Debug, Default)]
struct RingState {
    /// Free full-size slots.
    free: Vec<SharedSegment>,
    /// Full-size slots made so far (at most `ring_slots`).
    created: usize,
    /// The slot of the final, shorter batch, when free.
    tail: Option<SharedSegment>,
    /// Whether the tail slot was made.
    tail_created: bool,
    backing: Option<Backing>,
}

impl Ring {
    fn lock(&self) -> std::sync::MutexGuard<'_, RingState> {
        // A panic while holding this lock cannot leave the state inconsistent: every
        // critical section is a push, a pop or a counter update.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<'a, I: Float, F: Float> GafLoader<'a, I, F> {
    /// A loader over `n` series of `gaf.series_len()` values each, laid out row by row
    /// in `input`. No segment is created until the first batch is asked for.
    pub fn new(gaf: Gaf, input: &'a [I], n: usize, config: LoaderConfig) -> Result<Self> {
        let t = gaf.series_len();
        crate::gaf::check_len("input", n, t, input.len())?;
        // Cannot overflow: `Gaf::new` checked one image's bytes.
        let image_bytes = gaf.output_len_per_sample() * std::mem::size_of::<F>();
        let workers = config
            .workers
            .unwrap_or_else(memwarden_sched::available_jobs)
            .max(1);
        let ring_slots = config.ring_slots.max(1);
        let batch_size = config
            .batch_size
            .unwrap_or_else(|| config.memory_budget / ring_slots.saturating_mul(image_bytes))
            .clamp(1, n.max(1));
        let chunk_size = config.chunk_size.unwrap_or_else(|| {
            let cache = CacheInfo::detect();
            let per_sample = image_bytes.saturating_add(t.saturating_mul(size_of::<I>()));
            let fits = (cache.l2 / 2 / per_sample).max(1);
            let spread = batch_size.div_ceil(workers.saturating_mul(4)).max(1);
            fits.min(spread)
        });
        let header_len = npy::header_len(F::DTYPE, &gaf.output_shape(batch_size));
        // A batch is at most `batch_size` samples, so no slot is larger than this.
        let slot_bytes = batch_size
            .checked_mul(image_bytes)
            .and_then(|data| data.checked_add(header_len))
            .ok_or_else(|| ShmError::TooLarge {
                what: format!(
                    "a batch of {batch_size} images of {image_bytes} bytes (lower the batch size)"
                ),
            })?;
        let plan = LoaderPlan {
            workers,
            chunk_size,
            batch_size,
            ring_slots,
            slot_bytes,
            batches: n.div_ceil(batch_size),
        };
        let sched = ParallelScheduler::builder()
            .jobs(workers)
            .chunk_size(chunk_size)
            .dynamic_balance(false)
            .build()
            .map_err(|e| ShmError::WorkerPool {
                workers,
                message: e.to_string(),
            })?;
        log::debug!("GAF loader plan: {plan:?}");
        Ok(Self {
            gaf,
            input,
            n,
            plan,
            sched,
            options: config.segment,
            tag: config.tag,
            ring: Ring::default(),
            hook: None,
        })
    }

    /// Runs `hook(sample_index, image)` on the worker right after each image is written
    /// (to normalise or augment it in place). A panic in the hook propagates to the
    /// caller of [`GafLoader::batch`]; the slot goes back to the ring or, if the loader
    /// is dropped while unwinding, its segment is unlinked.
    pub fn with_hook(mut self, hook: impl Fn(usize, &mut [F]) + Send + Sync + 'static) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// The settled configuration.
    pub fn plan(&self) -> &LoaderPlan {
        &self.plan
    }

    /// The transform.
    pub fn gaf(&self) -> &Gaf {
        &self.gaf
    }

    /// Samples in the dataset.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the dataset has no samples.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Where the slots made so far live; `None` before the first batch.
    pub fn backing(&self) -> Option<Backing> {
        self.ring.lock().backing
    }

    /// All batches of one pass, in order.
    pub fn batches(&self) -> Batches<'_, 'a, I, F> {
        Batches {
            loader: self,
            next: 0,
        }
    }

    /// Computes batch `index` (samples `index × batch_size ..`) into a free slot.
    ///
    /// # Errors
    ///
    /// [`ShmError::RingExhausted`] when every slot is held by a live [`Batch`]; the input's
    /// errors ([`ShmError::NonFinite`], ...) naming the first bad sample of the batch;
    /// segment creation errors for a slot made on first use.
    ///
    /// # Panics
    ///
    /// When `index >= plan().batches`.
    pub fn batch(&self, index: usize) -> Result<Batch<'_, F>> {
        assert!(
            index < self.plan.batches,
            "batch {index} out of range: the dataset has {} batches",
            self.plan.batches
        );
        let start = index * self.plan.batch_size;
        let len = self.plan.batch_size.min(self.n - start);
        let header = npy::encode_header(F::DTYPE, &self.gaf.output_shape(len));
        let tail = len < self.plan.batch_size;
        // At most `plan.slot_bytes`, which `new` checked.
        let bytes = header.len() + len * self.gaf.output_len_per_sample() * size_of::<F>();
        let mut batch = Batch {
            index,
            start,
            len,
            data_offset: header.len(),
            slot: Some(self.checkout(tail, bytes)?),
            tail,
            ring: &self.ring,
            element: PhantomData,
        };
        // Dropping `batch` on an error or a panic below returns the slot to the ring.
        let slot = batch
            .slot
            .as_mut()
            .expect("a batch holds its slot until dropped");
        slot.as_bytes_mut()[..header.len()].copy_from_slice(&header);
        self.fill(&mut batch)?;
        Ok(batch)
    }

    fn checkout(&self, tail: bool, bytes: usize) -> Result<SharedSegment> {
        let mut state = self.ring.lock();
        let (reused, made) = if tail {
            (state.tail.take(), state.tail_created)
        } else {
            (state.free.pop(), state.created >= self.plan.ring_slots)
        };
        if let Some(slot) = reused {
            return Ok(slot);
        }
        if made {
            return Err(ShmError::RingExhausted {
                slots: self.plan.ring_slots,
            });
        }
        let name = SharedSegment::unique_name(&self.tag);
        let slot = SharedSegment::create_with(&name, bytes, &self.options)?;
        if tail {
            state.tail_created = true;
        } else {
            state.created += 1;
        }
        state.backing.get_or_insert(slot.backing());
        Ok(slot)
    }

    fn fill(&self, batch: &mut Batch<'_, F>) -> Result<()> {
        let slot = batch
            .slot
            .as_mut()
            .expect("a batch holds its slot until dropped");
        let out = float::from_bytes_mut::<F>(&mut slot.as_bytes_mut()[batch.data_offset..])
            .expect("slot data starts at a multiple of 64 bytes in a page-aligned map");
        let t = self.gaf.series_len();
        let input = &self.input[batch.start * t..(batch.start + batch.len) * t];
        let hook = self
            .hook
            .as_deref()
            .map(|h| h as &(dyn Fn(usize, &mut [F]) + Sync));
        self.gaf
            .run_scheduled(&self.sched, input, batch.len, out, batch.start, hook)
    }
}

/// The batches of one pass over a [`GafLoader`], in order.
#[derive(Debug)]
pub struct Batches<'l, 'a, I: Float, F: Float> {
    loader: &'l GafLoader<'a, I, F>,
    next: usize,
}

impl<'l, I: Float, F: Float> Iterator for Batches<'l, '_, I, F> {
    type Item = Result<Batch<'l, F>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.loader.plan.batches {
            return None;
        }
        let index = self.next;
        self.next += 1;
        Some(self.loader.batch(index))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.loader.plan.batches - self.next;
        (left, Some(left))
    }
}

/// One batch of images, living in a ring slot until dropped.
///
/// The slot is a complete `.npy` file of shape `(len, S, S)` (or the method's and
/// `flatten`'s shape), so [`path`](Batch::path) can be handed to another process.
#[derive(Debug)]
pub struct Batch<'l, F: Float> {
    index: usize,
    start: usize,
    len: usize,
    data_offset: usize,
    slot: Option<SharedSegment>,
    /// Whether the slot is the ring's tail slot.
    tail: bool,
    ring: &'l Ring,
    /// The slot is bytes; the element type lives in the methods' signatures.
    element: PhantomData<fn() -> F>,
}

impl<F: Float> Batch<'_, F> {
    fn slot(&self) -> &SharedSegment {
        self.slot
            .as_ref()
            .expect("a batch holds its slot until dropped")
    }

    /// Position of this batch in the pass.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The samples of the dataset in this batch.
    pub fn samples(&self) -> Range<usize> {
        self.start..self.start + self.len
    }

    /// Samples in this batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no samples (never, for batches a loader hands out).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All images of the batch, sample after sample.
    pub fn images(&self) -> &[F] {
        float::from_bytes(&self.slot().as_bytes()[self.data_offset..])
            .expect("slot data is aligned and a whole number of elements")
    }

    /// The image (all channels) of the `i`-th sample of the batch.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`, as slice indexing does.
    pub fn image(&self, i: usize) -> &[F] {
        let per = self.images().len() / self.len.max(1);
        &self.images()[i * per..(i + 1) * per]
    }

    /// The segment file holding this batch as `.npy`; `None` on the heap.
    pub fn path(&self) -> Option<&Path> {
        self.slot().path()
    }

    /// The slot segment's name.
    pub fn segment_name(&self) -> &str {
        self.slot().name()
    }

    /// Where the slot lives.
    pub fn backing(&self) -> Backing {
        self.slot().backing()
    }
}

impl<F: Float> Drop for Batch<'_, F> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let mut state = self.ring.lock();
            if self.tail {
                state.tail = Some(slot);
            } else {
                state.free.push(slot);
            }
        }
    }
}
