//! The loader hands out batches in order, equal to a direct transform, through reused slots.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use memwarden_shm::npy::{self, NpyFile};
use memwarden_shm::{
    Backing, Float, Gaf, GafConfig, GafLoader, ImageSize, LoaderConfig, Method, SegmentOptions,
    ShmError,
};

fn gaf(t: usize, s: usize, method: Method) -> Gaf {
    let config = GafConfig {
        image_size: ImageSize::Fixed(s),
        method,
        ..GafConfig::default()
    };
    Gaf::new(config, t).expect("valid")
}

fn sandbox(dir: &Path) -> SegmentOptions {
    SegmentOptions::new()
        .with_shm_dir(dir)
        .with_temp_dir(dir)
        .with_fallback(false)
}

fn check_matches_direct<F: Float>(method: Method, n: usize, batch: usize, workers: usize) {
    let (t, s) = (40, 12);
    let x = crate::random_walks(n, t, 7);
    let gaf = gaf(t, s, method);
    let direct: Vec<F> = gaf.transform(&x, n).expect("direct");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LoaderConfig::new()
        .with_batch_size(batch)
        .with_workers(workers)
        .with_chunk_size(2)
        .with_segment_options(sandbox(dir.path()));
    let loader = GafLoader::<f64, F>::new(gaf.clone(), &x, n, config).expect("loader");
    let per = gaf.output_len_per_sample();
    let mut next = 0;
    for (k, batch) in loader.batches().enumerate() {
        let batch = batch.expect("batch");
        assert_eq!(batch.index(), k);
        assert_eq!(batch.samples().start, next, "in order");
        next = batch.samples().end;
        let want = &direct[batch.samples().start * per..batch.samples().end * per];
        assert!(
            batch.images() == want,
            "{method:?} batch {k} differs from the direct transform"
        );
        assert!(batch.image(batch.len() - 1) == &want[want.len() - per..]);
        // The slot is a valid .npy of exactly this batch. (Read, not mapped: this process
        // maps it already, through the batch.)
        let path = batch.path().expect("file-backed");
        let bytes = std::fs::read(path).expect("read the slot");
        let header = npy::parse_header(&bytes, path).expect("slot npy");
        npy::check_size(&header, bytes.len() as u64, path).expect("exact size");
        assert_eq!(header.shape, gaf.output_shape(batch.len()));
        assert!(bytes[header.data_offset..] == *memwarden_shm::as_bytes(batch.images()));
        let err = NpyFile::open(path).expect_err("a second mapping");
        assert!(matches!(err, ShmError::AlreadyMapped { .. }), "{err:?}");
    }
    assert_eq!(next, n);
    assert!(loader.plan().ring_slots >= 1);
    drop(loader);
    assert!(
        std::fs::read_dir(dir.path())
            .expect("list")
            .next()
            .is_none(),
        "slots unlinked"
    );
}

#[test]
fn batches_come_in_order_and_equal_the_direct_transform() {
    for (n, batch) in [(1, 1), (10, 3), (10, 10), (10, 64), (23, 4)] {
        for workers in [1, 2] {
            check_matches_direct::<f32>(Method::Summation, n, batch, workers);
            check_matches_direct::<f64>(Method::Difference, n, batch, workers);
        }
    }
    check_matches_direct::<f32>(Method::Both, 9, 4, 2);
}

#[test]
fn slots_are_reused_and_the_ring_is_bounded() {
    let (n, t) = (12, 16);
    let x = crate::random_walks(n, t, 11);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LoaderConfig::new()
        .with_batch_size(3)
        .with_ring_slots(2)
        .with_segment_options(sandbox(dir.path()));
    let loader =
        GafLoader::<f64, f32>::new(gaf(t, 8, Method::Summation), &x, n, config).expect("loader");
    assert_eq!(loader.plan().batches, 4);
    assert_eq!(
        loader.backing(),
        None,
        "nothing made before the first batch"
    );

    let mut names = std::collections::BTreeSet::new();
    for batch in loader.batches() {
        names.insert(batch.expect("batch").segment_name().to_owned());
    }
    assert_eq!(names.len(), 1, "one slot serves batches dropped one by one");
    assert_eq!(loader.backing(), Some(Backing::SharedMemory));

    let first = loader.batch(0).expect("slot 1");
    let second = loader.batch(1).expect("slot 2");
    assert_ne!(first.segment_name(), second.segment_name());
    let err = loader.batch(2).expect_err("ring exhausted");
    assert!(
        matches!(err, ShmError::RingExhausted { slots: 2 }),
        "{err:?}"
    );
    drop(first);
    let third = loader.batch(2).expect("a slot came back");
    assert_eq!(third.samples(), 6..9);
    drop((second, third));
    // Random access recomputes any batch.
    let again = loader.batch(3).expect("batch 3");
    assert_eq!(again.samples(), 9..12);
}

#[test]
fn a_shorter_final_batch_has_its_own_slot_and_nothing_is_remade() {
    let (n, t) = (10, 16);
    let x = crate::random_walks(n, t, 12);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LoaderConfig::new()
        .with_batch_size(4)
        .with_ring_slots(1)
        .with_segment_options(sandbox(dir.path()));
    let loader =
        GafLoader::<f64, f32>::new(gaf(t, 8, Method::Summation), &x, n, config).expect("loader");
    let pass = || -> Vec<(String, usize)> {
        loader
            .batches()
            .map(|b| {
                let b = b.expect("batch");
                (b.segment_name().to_owned(), b.len())
            })
            .collect()
    };
    let first = pass();
    assert_eq!(
        first.iter().map(|(_, len)| *len).collect::<Vec<_>>(),
        [4, 4, 2]
    );
    assert_eq!(first[0].0, first[1].0, "the full slot is reused");
    assert_ne!(first[0].0, first[2].0, "the tail has its own slot");
    assert_eq!(pass(), first, "a second pass reuses the same segments");
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 2);
    // With the one full slot held, the tail is still available, and a second full batch is not.
    let held = loader.batch(0).expect("full");
    let tail = loader.batch(2).expect("tail");
    assert_eq!(tail.len(), 2);
    assert!(matches!(
        loader.batch(1),
        Err(ShmError::RingExhausted { slots: 1 })
    ));
    assert!(
        matches!(loader.batch(2), Err(ShmError::RingExhausted { .. })),
        "tail held"
    );
    drop((held, tail));
}

#[test]
fn input_errors_name_the_global_sample() {
    let (n, t) = (20, 16);
    let mut x = crate::random_walks(n, t, 5);
    x[13 * t + 2] = f64::NAN;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LoaderConfig::new()
        .with_batch_size(5)
        .with_workers(2)
        .with_chunk_size(1)
        .with_segment_options(sandbox(dir.path()));
    let loader =
        GafLoader::<f64, f32>::new(gaf(t, 4, Method::Summation), &x, n, config).expect("loader");
    let results: Vec<_> = loader.batches().map(|b| b.map(|b| b.len())).collect();
    assert!(results[..2].iter().all(Result::is_ok));
    assert!(
        matches!(
            results[2],
            Err(ShmError::NonFinite {
                sample: 13,
                timestamp: 2,
                ..
            })
        ),
        "{:?}",
        results[2]
    );
    assert!(results[3].is_ok(), "later batches still work");
    let err = GafLoader::<f64, f32>::new(
        gaf(t, 4, Method::Summation),
        &x[1..],
        n,
        LoaderConfig::new(),
    )
    .expect_err("input length");
    assert!(
        matches!(err, ShmError::LengthMismatch { what: "input", .. }),
        "{err:?}"
    );
}

#[test]
fn a_worker_panic_does_not_leak_the_slots() {
    let (n, t) = (16, 16);
    let x = crate::random_walks(n, t, 9);
    let dir = tempfile::tempdir().expect("tempdir");
    let options = sandbox(dir.path());
    let make = |fail_at: usize| {
        let config = LoaderConfig::new()
            .with_batch_size(4)
            .with_workers(2)
            .with_chunk_size(1)
            .with_segment_options(options.clone());
        GafLoader::<f64, f32>::new(gaf(t, 8, Method::Summation), &x, n, config)
            .expect("loader")
            .with_hook(move |sample, _image| {
                assert!(sample != fail_at, "injected failure at sample {sample}");
            })
    };
    let empty = || {
        std::fs::read_dir(dir.path())
            .expect("list")
            .next()
            .is_none()
    };

    // The loader dies with the panic: every slot, lent or free, is unlinked.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let loader = make(6);
        for batch in loader.batches() {
            drop(batch.expect("batch"));
        }
    }));
    assert!(outcome.is_err(), "the worker's panic reaches the caller");
    assert!(empty(), "segment leaked after a worker panic");

    // The loader survives the panic: the slot went back to the ring and is reused.
    let loader = make(6);
    let hit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        loader.batch(1).map(|b| b.len())
    }));
    assert!(hit.is_err());
    assert_eq!(loader.batch(0).expect("still usable").len(), 4);
    drop(loader);
    assert!(empty(), "segment leaked after the loader outlived a panic");
}

#[test]
fn the_auto_configuration_respects_the_budget() {
    let (n, t) = (1000, 128);
    let x = vec![0.0f64; n * t];
    let g = gaf(t, 64, Method::Summation); // 16 KiB per f32 image
    let loader = GafLoader::<f64, f32>::new(
        g.clone(),
        &x,
        n,
        LoaderConfig::new()
            .with_memory_budget(4 << 20)
            .with_ring_slots(2),
    )
    .expect("loader");
    let plan = *loader.plan();
    assert_eq!(plan.batch_size, 128, "2 MiB per slot / 16 KiB per image");
    assert_eq!(plan.batches, 8);
    assert!(plan.slot_bytes <= (2 << 20) + 128);
    assert!(plan.workers >= 1 && plan.chunk_size >= 1);
    assert!(plan.chunk_size <= plan.batch_size.div_ceil(plan.workers * 4));

    // A budget smaller than one image still makes batches of one.
    let tiny =
        GafLoader::<f64, f32>::new(g.clone(), &x, n, LoaderConfig::new().with_memory_budget(1))
            .expect("loader");
    assert_eq!(tiny.plan().batch_size, 1);

    // Absurd settings are planned without overflowing (nothing runs until a batch)...
    let absurd = GafLoader::<f64, f32>::new(
        g.clone(),
        &x,
        n,
        LoaderConfig::new()
            .with_workers(memwarden_sched::MAX_JOBS)
            .with_ring_slots(usize::MAX),
    )
    .expect("loader");
    assert_eq!((absurd.plan().chunk_size, absurd.plan().batch_size), (1, 1));
    // ...and more workers than a scheduler takes are an error, not a panic later.
    let refused = GafLoader::<f64, f32>::new(
        g.clone(),
        &x,
        n,
        LoaderConfig::new().with_workers(usize::MAX),
    );
    assert!(
        matches!(refused, Err(memwarden_shm::ShmError::WorkerPool { .. })),
        "{refused:?}"
    );

    // Hooks run once per sample, with the global index.
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let hooked = GafLoader::<f64, f32>::new(
        gaf(t, 8, Method::Summation),
        &x[..10 * t],
        10,
        LoaderConfig::new()
            .with_batch_size(4)
            .with_segment_options(sandbox(dir.path())),
    )
    .expect("loader")
    .with_hook(move |sample, image| {
        count.fetch_add(sample, Ordering::Relaxed);
        image.fill(1.0);
    });
    for batch in hooked.batches() {
        assert!(batch.expect("batch").images().iter().all(|&v| v == 1.0));
    }
    assert_eq!(seen.load(Ordering::Relaxed), (0..10).sum::<usize>());
}
