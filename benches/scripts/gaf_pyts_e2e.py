"""The Python side of the end-to-end GAF comparison: what a pyts user runs.

Usage: python gaf_pyts_e2e.py INPUT.npy OUTPUT.npy IMAGE_SIZE

Loads the series, runs pyts 0.14.1's GramianAngularField (GASF) over all of them and
saves the images as float32, timing the whole script body (the imports, which pull in
numba, are timed separately and printed).
"""

import sys
import time

started = time.perf_counter()
import numpy as np  # noqa: E402
from pyts.image import GramianAngularField  # noqa: E402

imported = time.perf_counter()
src, dst, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
x = np.load(src)
images = GramianAngularField(image_size=size, method="summation").transform(x)
np.save(dst, images.astype(np.float32))
done = time.perf_counter()
print(
    "pyts: imports %.2f s, load + transform + save %.2f s" % (imported - started, done - imported),
    file=sys.stderr,
)
