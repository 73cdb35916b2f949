//! Python (NumPy) opens our segments zero-copy. `MEMWARDEN_PYTHON` names the interpreter;
//! when it is set (CI sets it to a venv with NumPy) a missing NumPy fails the test. When
//! it is not set, `python3` is tried and the test is skipped with a note if it has no
//! NumPy.

use std::path::Path;
use std::process::Command;

use memwarden_shm::{
    Gaf, GafConfig, GafLoader, ImageSize, LoaderConfig, Method, SegmentOptions, SharedSegment, npy,
};

fn python() -> Option<String> {
    let named = std::env::var("MEMWARDEN_PYTHON").ok();
    let python = named.clone().unwrap_or_else(|| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || named.is_none(),
        "MEMWARDEN_PYTHON={python} cannot import numpy"
    );
    if ok {
        Some(python)
    } else {
        println!(
            "note: skipping the Python interop test: {python} with numpy not found (set MEMWARDEN_PYTHON)"
        );
        None
    }
}

fn run(python: &str, script: &str, args: &[&Path]) {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Recomputes both fields with NumPy from the input and compares with the memory-mapped
/// segment.
const CHECK_GAF: &str = r#"
import sys
import numpy as np
seg = np.load(sys.argv[1], mmap_mode="r")
assert isinstance(seg, np.memmap), type(seg)
x = np.load(sys.argv[2])
lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
rng = hi - lo
rng[rng < 10 * np.finfo(np.float64).eps] = 1.0
scale = 2.0 / rng
c = x * scale + (-1.0 - lo * scale)
s = np.sqrt(np.clip(1 - c**2, 0, 1))
gasf = c[:, :, None] * c[:, None, :] - s[:, :, None] * s[:, None, :]
gadf = s[:, :, None] * c[:, None, :] - c[:, :, None] * s[:, None, :]
want = np.stack([gasf, gadf], axis=1)
assert seg.dtype == np.float32 and seg.shape == want.shape, (seg.dtype, seg.shape)
err = float(np.abs(seg - want).max())
assert err < 1e-6, err
"#;

/// Compares a memory-mapped slot with a reference file bit for bit.
const CHECK_EQUAL: &str = r#"
import sys
import numpy as np
seg = np.load(sys.argv[1], mmap_mode="r")
ref = np.load(sys.argv[2])
assert seg.shape == ref.shape and seg.dtype == ref.dtype, (seg.shape, ref.shape)
assert np.array_equal(seg, ref)
"#;

#[test]
fn numpy_maps_a_segment_and_sees_our_images() {
    let Some(python) = python() else { return };
    let (n, t) = (5, 16);
    let x = crate::random_walks(n, t, 21);
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("x.npy");
    npy::write(&input, &[n, t], &x).expect("write input");

    let config = GafConfig {
        image_size: ImageSize::Fixed(t),
        method: Method::Both,
        ..GafConfig::default()
    };
    let gaf = Gaf::new(config, t).expect("valid");
    let name = SharedSegment::unique_name("pytest");
    let mut segment =
        SharedSegment::create_npy::<f32>(&name, &gaf.output_shape(n), &SegmentOptions::new())
            .expect("segment");
    gaf.transform_into(&x, n, segment.npy_data_mut::<f32>().expect("view"))
        .expect("transform");
    let path = segment.path().expect("file-backed").to_owned();
    run(&python, CHECK_GAF, &[&path, &input]);
    assert!(
        path.exists(),
        "reading from Python must not unlink the segment"
    );
    drop(segment);
    assert!(!path.exists());
}

#[test]
fn numpy_maps_a_loader_slot() {
    let Some(python) = python() else { return };
    let (n, t) = (11, 30);
    let x = crate::random_walks(n, t, 22);
    let gaf = Gaf::new(
        GafConfig {
            image_size: ImageSize::Fixed(9),
            ..GafConfig::default()
        },
        t,
    )
    .expect("valid");
    let dir = tempfile::tempdir().expect("tempdir");
    let loader =
        GafLoader::<f64, f32>::new(gaf.clone(), &x, n, LoaderConfig::new().with_batch_size(4))
            .expect("loader");
    for batch in loader.batches() {
        let batch = batch.expect("batch");
        let reference = dir.path().join(format!("ref{}.npy", batch.index()));
        npy::write(&reference, &gaf.output_shape(batch.len()), batch.images()).expect("write");
        run(
            &python,
            CHECK_EQUAL,
            &[batch.path().expect("file-backed"), &reference],
        );
    }
}
