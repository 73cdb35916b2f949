//! Random walks turned into Gramian Angular Field images through shared memory.
//!
//! The loader streams the dataset in batches through a small ring of `/dev/shm` slots
//! (or a temp-file / heap fallback, which it reports), each batch a complete `.npy`
//! file that NumPy can map without copying.
//!
//! ```text
//! cargo run --release -p memwarden-examples --example shared_memory_gaf -- [N] [--keep]
//! ```
//!
//! With `--keep` the first batch is also copied into a segment that outlives the
//! program, so the printed Python one-liner can be run afterwards.

use std::time::Instant;

use anyhow::Context;
use memwarden_shm::{
    Backing, Gaf, GafConfig, GafLoader, ImageSize, LoaderConfig, Method, SegmentOptions,
    SharedSegment, sweep_stale,
};

const SERIES_LEN: usize = 128;
const IMAGE_SIZE: usize = 64;

/// `n` random walks of `len` steps in [-1, 1], from a small xorshift generator (the
/// examples crate has no `rand`).
fn random_walks(n: usize, len: usize) -> Vec<f32> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut step = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    let mut out = Vec::with_capacity(n * len);
    for _ in 0..n {
        let mut x = 0.0f32;
        for _ in 0..len {
            x += step();
            out.push(x);
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut n = 4000usize;
    let mut keep = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--keep" => keep = true,
            other => {
                n = other
                    .parse()
                    .context("usage: shared_memory_gaf [N] [--keep]")?;
            }
        }
    }

    let swept = sweep_stale()?;
    if !swept.is_empty() {
        println!("removed {} stale segment(s) of dead processes", swept.len());
    }

    let series = random_walks(n, SERIES_LEN);
    let config = GafConfig {
        image_size: ImageSize::Fixed(IMAGE_SIZE),
        method: Method::Summation,
        ..GafConfig::default()
    };
    let gaf = Gaf::new(config, SERIES_LEN)?;
    let loader = GafLoader::<f32, f32>::new(gaf.clone(), &series, n, LoaderConfig::new())?;
    let plan = *loader.plan();
    println!(
        "{n} series x {SERIES_LEN} -> {IMAGE_SIZE}x{IMAGE_SIZE} GASF, f32: {} workers, \
         {} samples per task, batches of {} in a ring of {} slots ({:.1} MiB each)",
        plan.workers,
        plan.chunk_size,
        plan.batch_size,
        plan.ring_slots,
        plan.slot_bytes as f64 / f64::from(1u32 << 20)
    );

    // Two passes: the first faults the ring's pages in, the second only rewrites them.
    for pass in ["first pass (fresh pages)", "second pass (reused slots)"] {
        let start = Instant::now();
        let mut checksum = 0.0f64;
        for batch in loader.batches() {
            let batch = batch?;
            checksum += batch.image(0).iter().map(|&v| f64::from(v)).sum::<f64>();
            if batch.index() == 0 && pass.starts_with("first") {
                match batch.path() {
                    Some(path) => println!(
                        "batch 0 lives in {} ({}); while it is held, Python reads it with:\n  \
                         python3 -c \"import numpy as np; a = np.load('{}', mmap_mode='r'); \
                         print(a.shape, a.dtype, a[0, 0, :4])\"",
                        path.display(),
                        batch.backing(),
                        path.display()
                    ),
                    None => println!("batch 0 lives on the heap (no shared memory available)"),
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let bytes = (n * gaf.output_len_per_sample() * 4) as f64;
        println!(
            "{pass}: {:.3} s, {:.0} samples/s, {:.2} GB/s of images (checksum {checksum:.3})",
            secs,
            n as f64 / secs,
            bytes / secs / 1e9
        );
    }

    let backing = loader.backing().unwrap_or(Backing::Heap);
    println!(
        "fallback used: {}",
        match backing {
            Backing::SharedMemory => "none (/dev/shm)".to_owned(),
            other => format!("{other} (see the warnings above for why)"),
        }
    );

    if keep && n > 0 {
        let batch = loader.batch(0)?;
        let shape = gaf.output_shape(batch.len());
        let mut kept = SharedSegment::create_npy::<f32>(
            "memwarden-example-gaf",
            &shape,
            &SegmentOptions::new(),
        )?;
        kept.npy_data_mut::<f32>()?.copy_from_slice(batch.images());
        let path = kept.persist()?;
        println!(
            "kept batch 0 in {}; read it after this program exits with:\n  \
             python3 -c \"import numpy as np; a = np.load('{}', mmap_mode='r'); print(a.shape, a[0, 0, :4])\"\n\
             and remove it with: rm {}",
            path.display(),
            path.display(),
            path.display()
        );
    }
    Ok(())
}
