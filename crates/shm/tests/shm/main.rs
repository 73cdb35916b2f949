//! Integration tests of memwarden-shm: one binary, one module per area.

mod errors;
mod golden;
mod loader;
mod npy_format;
mod python;
mod segment;

use std::path::PathBuf;

/// The folder of golden fixtures written by `tests/fixtures/make_golden.py`.
fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A few random walks, deterministic per seed.
fn random_walks(n: usize, t: usize, seed: u64) -> Vec<f64> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * t);
    for _ in 0..n {
        let mut x = 0.0f64;
        for _ in 0..t {
            x += rng.random_range(-1.0..1.0);
            out.push(x);
        }
    }
    out
}
