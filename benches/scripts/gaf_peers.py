"""The Python peers of the GAF benchmark: pyts and a chunked float32 numpy version.

Usage: python gaf_peers.py INPUT.npy IMAGE_SIZE REPEATS

Reads the same random walks the Rust benchmark wrote, times pyts 0.14.1's
GramianAngularField.transform (imports and numba's JIT warm-up excluded: a small
transform runs first) and a chunked numpy implementation that writes float32 or
float64 images into a preallocated output, and prints one JSON object of best-of
times in seconds, keyed "pyts/summation", "numpy/summation/f32" and so on. The numpy
result is checked against pyts before it is timed.
"""

import json
import sys
import time

import numpy as np
from pyts.image import GramianAngularField


def paa_bounds(length, size):
    # pyts's non-overlapping segmentation: numpy.linspace bounds, truncated.
    bounds = np.linspace(0, length, size + 1).astype(np.int64)
    return bounds[:-1], bounds[1:]


def gaf_numpy(x, size, method, out, chunk=256):
    """GASF or GADF of every row of x into out (n, size, size), chunk rows at a time."""
    n, length = x.shape
    dtype = out.dtype
    if size < length:
        starts, ends = paa_bounds(length, size)
        widths = (ends - starts).astype(np.float64)
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        rows = x[lo:hi]
        if size < length:
            rows = np.add.reduceat(rows, starts, axis=1) / widths
        # scikit-learn's MinMaxScaler onto (-1, 1), in its order of operations.
        mn = rows.min(axis=1, keepdims=True)
        rng = rows.max(axis=1, keepdims=True) - mn
        rng[rng < 10 * np.finfo(np.float64).eps] = 1.0
        scale = 2.0 / rng
        cos = (rows * scale + (-1.0 - mn * scale)).astype(dtype)
        sin = np.sqrt(np.clip(1.0 - cos * cos, 0.0, 1.0)).astype(dtype)
        block = out[lo:hi]
        if method == "summation":
            np.multiply(cos[:, :, None], cos[:, None, :], out=block)
            block -= sin[:, :, None] * sin[:, None, :]
        else:
            np.multiply(sin[:, :, None], cos[:, None, :], out=block)
            block -= cos[:, :, None] * sin[:, None, :]
    return out


def best_of(repeats, fn):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    path, size, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    x = np.load(path).astype(np.float64)
    times = {}
    for method in ("summation", "difference"):
        gaf = GramianAngularField(image_size=size, method=method)
        gaf.transform(x[:4])  # numba compiles here, outside the timing
        expected = gaf.transform(x)
        times["pyts/" + method] = best_of(repeats, lambda: gaf.transform(x))
        for name, dtype, tol in (("f32", np.float32, 1e-5), ("f64", np.float64, 1e-9)):
            out = np.empty((x.shape[0], size, size), dtype=dtype)
            gaf_numpy(x, size, method, out)
            err = float(np.abs(out - expected).max())
            if err > tol:
                raise SystemExit(f"numpy {method} {name} differs from pyts by {err}")
            times["numpy/%s/%s" % (method, name)] = best_of(
                repeats, lambda: gaf_numpy(x, size, method, out)
            )
    print(json.dumps(times))


if __name__ == "__main__":
    main()
