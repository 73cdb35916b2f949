#!/usr/bin/env bash
# The GAF figures of issue 6, against pyts in the same run:
#  1. the transform (4000 random walks x 128 -> 64, each method, f32 and f64, a reused
#     output buffer) against pyts, a chunked numpy version and a plain fill:
#     `cargo bench --bench gaf_vs_pyts` with the Python peers;
#  2. end to end, 4000 x 512 -> 512 float32: `memwarden gaf` against a Python script
#     running pyts on the same .npy, with wall time and peak RSS from /usr/bin/time -v.
# Installs pyts 0.14.1 and numpy into target/pyts-venv the first time. Needs about
# 12 GiB of memory for pyts's float64 output and 5 GiB of disk in $TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/pyts-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pyts' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'pyts==0.14.1' numpy
fi
export MEMWARDEN_PYTHON="$PWD/$venv/bin/python"

echo "==> 1. the transform, same process, reused output"
cargo bench -q -p memwarden-benches --bench gaf_vs_pyts

echo
echo "==> 2. end to end: 4000 x 512 -> 512 float32"
cargo build -q --release -p memwarden-cli
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$MEMWARDEN_PYTHON" -c "
import numpy as np
rng = np.random.default_rng(42)
np.save('$work/walks.npy', np.cumsum(rng.standard_normal((4000, 512)), axis=1).astype(np.float32))"
measure() { # label, command...: prints wall seconds and peak RSS in MiB
    local label=$1; shift
    /usr/bin/time -v "$@" 2> "$work/time.txt" >/dev/null || { cat "$work/time.txt"; exit 1; }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$work/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$work/time.txt")
    grep -E '^pyts:' "$work/time.txt" || true
    echo "$label: wall ${wall} s, peak RSS ${rss} MiB"
    eval "${label}_wall=$wall ${label}_rss=$rss"
}
measure memwarden target/release/memwarden gaf "$work/walks.npy" --out "$work/ours.npy" --image-size 512 --dtype f32
rm -f "$work/ours.npy"
measure pyts "$MEMWARDEN_PYTHON" benches/scripts/gaf_pyts_e2e.py "$work/walks.npy" "$work/theirs.npy" 512
awk -v a="$memwarden_wall" -v b="$pyts_wall" -v ra="$memwarden_rss" -v rb="$pyts_rss" 'BEGIN {
    printf "ratio gaf end-to-end speed memwarden/pyts = %.2fx (goal >= 5x: %s)\n", b / a, (b / a >= 5 ? "met" : "MISSED");
    printf "ratio gaf end-to-end peak RSS memwarden/pyts = %.3fx (%.0f MiB vs %.0f MiB; one output is 4000 MiB)\n", ra / rb, ra, rb }'
