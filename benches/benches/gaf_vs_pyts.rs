//! memwarden's GAF transform against pyts, a chunked numpy version and a plain fill of
//! the same output bytes.
//!
//! Run with `bash benches/scripts/gaf_vs_pyts.sh`, which installs pyts 0.14.1 and numpy
//! into a venv and runs this bench with `MEMWARDEN_PYTHON` pointing at it. Without
//! that variable (or without pyts in it) the Python peers are skipped and only the
//! fill ratio prints. Under `cargo test --benches` (no `--bench` argument) the data is
//! 64 series instead of 4000 and the Python peers never run: a smoke test.
//!
//! The workload is the issue's: 4000 seeded random walks of 128 steps, images of
//! 64 × 64, each method (GASF, GADF, both as two channels), f32 and f64 output. The
//! output buffer is allocated and faulted in once and then rewritten, as the loader's
//! ring of slots is: the time is the transform's, not the kernel's page faults. The
//! fresh-memory variant (a new zeroed buffer per run, first touched by the transform)
//! prints beside it, because on these machines the first touch of a page costs more than
//! the arithmetic written into it.
//!
//! Peers: pyts's `GramianAngularField.transform` (float64 out; numba compiled before
//! timing, imports excluded; pyts has no two-channel mode, so "both" is its GASF plus its
//! GADF time), a chunked numpy implementation writing into a preallocated output of the
//! same dtype (`benches/scripts/gaf_peers.py`, checked against pyts), and `fill` of the
//! output bytes with a constant: the memory-bandwidth limit. Goals: f32 ≥ 20× pyts,
//! ≥ 5× numpy, and within 2× of the fill.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use memwarden_benches::report::{self, Goal, Ratios, times};
use memwarden_shm::{Float, Gaf, GafConfig, ImageSize, Method};
use rand::{Rng, SeedableRng, rngs::StdRng};

const SERIES_LEN: usize = 128;
const IMAGE_SIZE: usize = 64;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let started = Instant::now();
    let (n, repeats) = if full { (4000, 15) } else { (64, 2) };
    let mut rng = StdRng::seed_from_u64(42);
    let mut walks = Vec::with_capacity(n * SERIES_LEN);
    for _ in 0..n {
        let mut x = 0.0f64;
        for _ in 0..SERIES_LEN {
            x += rng.random::<f64>() - 0.5;
            walks.push(x);
        }
    }
    println!(
        "gaf_vs_pyts: {n} random walks x {SERIES_LEN} -> {IMAGE_SIZE}x{IMAGE_SIZE}, best of {repeats}, {} threads",
        rayon::current_num_threads()
    );
    let peers = if full { python_peers(&walks, n) } else { None };

    let mut ratios = Ratios::default();
    let mut goals: Vec<Goal> = Vec::new();
    println!(
        "{:<12} {:>4}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>8}  {:>8}  {:>8}",
        "method",
        "out",
        "ours ms",
        "fresh ms",
        "fill ms",
        "pyts ms",
        "numpy ms",
        "vs pyts",
        "vs numpy",
        "vs fill"
    );
    for method in [Method::Summation, Method::Difference, Method::Both] {
        for dtype in ["f32", "f64"] {
            let (ours, fresh, fill) = match dtype {
                "f32" => measure::<f32>(&walks, n, method, repeats),
                _ => measure::<f64>(&walks, n, method, repeats),
            };
            let name = method_name(method);
            let peer = |key: &str| peers.as_ref().and_then(|p| p.get(key).copied());
            let pyts = match method {
                Method::Both => peer("pyts/summation")
                    .zip(peer("pyts/difference"))
                    .map(|(a, b)| a + b),
                _ => peer(&format!("pyts/{name}")),
            };
            let numpy = match method {
                Method::Both => peer(&format!("numpy/summation/{dtype}"))
                    .zip(peer(&format!("numpy/difference/{dtype}")))
                    .map(|(a, b)| a + b),
                _ => peer(&format!("numpy/{name}/{dtype}")),
            };
            let ms = |d: Option<Duration>| {
                d.map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
            };
            let ratio = |peer: Option<Duration>| peer.map(|p| p.as_secs_f64() / ours.as_secs_f64());
            let show = |r: Option<f64>| r.map_or("-".to_owned(), times);
            let (vs_pyts, vs_numpy) = (ratio(pyts), ratio(numpy));
            let vs_fill = ours.as_secs_f64() / fill.as_secs_f64();
            println!(
                "{name:<12} {dtype:>4}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>8}  {:>8}  {:>8}",
                ms(Some(ours)),
                ms(Some(fresh)),
                ms(Some(fill)),
                ms(pyts),
                ms(numpy),
                show(vs_pyts),
                show(vs_numpy),
                times(vs_fill)
            );
            let what = format!("gaf {name} {dtype}");
            if let Some(r) = vs_pyts {
                ratios.add(&format!("{what} speed"), "memwarden", "pyts", r);
            }
            if let Some(r) = vs_numpy {
                ratios.add(&format!("{what} speed"), "memwarden", "numpy", r);
            }
            ratios.add(&format!("{what} time"), "memwarden", "fill", vs_fill);
            ratios.add(
                &format!("{what} time"),
                "fresh memory",
                "reused memory",
                fresh.as_secs_f64() / ours.as_secs_f64(),
            );
            if dtype == "f32" {
                if let Some(r) = vs_pyts {
                    goals.push((format!("{what}: >= 20x pyts (got {})", times(r)), r >= 20.0));
                }
                if let Some(r) = vs_numpy {
                    goals.push((format!("{what}: >= 5x numpy (got {})", times(r)), r >= 5.0));
                }
                goals.push((
                    format!("{what}: within 2x of the fill (got {})", times(vs_fill)),
                    vs_fill <= 2.0,
                ));
            }
        }
    }
    if peers.is_none() {
        println!(
            "(pyts and numpy peers skipped: run benches/scripts/gaf_vs_pyts.sh, or set MEMWARDEN_PYTHON to a python with pyts 0.14.1)"
        );
    }
    report::print_summary(full, started, &goals, &ratios);
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Summation => "summation",
        Method::Difference => "difference",
        _ => "both",
    }
}

/// Best-of times: the transform into a reused, faulted-in buffer; into a fresh buffer;
/// and a fill of the reused buffer.
fn measure<F: Float>(
    walks: &[f64],
    n: usize,
    method: Method,
    repeats: usize,
) -> (Duration, Duration, Duration) {
    let gaf = Gaf::new(
        GafConfig {
            image_size: ImageSize::Fixed(IMAGE_SIZE),
            method,
            ..GafConfig::default()
        },
        SERIES_LEN,
    )
    .expect("a valid configuration");
    let len = n * gaf.output_len_per_sample();
    let mut out = vec![F::from_f64(0.25); len];
    let best = |f: &mut dyn FnMut()| {
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .expect("at least one repeat")
    };
    let ours = best(&mut || {
        gaf.transform_into(walks, n, &mut out)
            .expect("finite walks transform");
        std::hint::black_box(&out);
    });
    let fresh = best(&mut || {
        let mut fresh = vec![F::default(); len];
        gaf.transform_into(walks, n, &mut fresh)
            .expect("finite walks transform");
        std::hint::black_box(&fresh);
    });
    let value = F::from_f64(0.5);
    let fill = best(&mut || {
        // The same bytes written from the same number of threads, no arithmetic.
        use rayon::prelude::*;
        out.par_chunks_mut(gaf.output_len_per_sample() * 16)
            .for_each(|c| c.fill(value));
        std::hint::black_box(&out);
    });
    (ours, fresh, fill)
}

/// Runs `benches/scripts/gaf_peers.py` on the same walks; `None` when no Python with
/// pyts is set up.
fn python_peers(walks: &[f64], n: usize) -> Option<HashMap<String, Duration>> {
    let python = std::env::var_os("MEMWARDEN_PYTHON")?;
    let dir = tempfile::tempdir().ok()?;
    let input = dir.path().join("walks.npy");
    memwarden_shm::npy::write(&input, &[n, SERIES_LEN], walks).ok()?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/gaf_peers.py");
    println!(
        "running the Python peers ({}) ...",
        PathBuf::from(&python).display()
    );
    let out = Command::new(&python)
        .arg(&script)
        .arg(&input)
        .arg(IMAGE_SIZE.to_string())
        .arg("5")
        .output()
        .ok()?;
    if !out.status.success() {
        println!(
            "the Python peers failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let json: HashMap<String, f64> = serde_json::from_str(line.trim()).ok()?;
    Some(
        json.into_iter()
            .map(|(k, v)| (k, Duration::from_secs_f64(v)))
            .collect(),
    )
}
