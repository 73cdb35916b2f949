#!/usr/bin/env bash
# What memwarden's bookkeeping costs the demo session, in instructions rather than seconds:
# the same seeded steps without memwarden (`--mode plain`) and through tracker, registry,
# governor, defragmenter and sweeps with a budget they never reach (`--mode unbounded`),
# each counted by valgrind's callgrind (all threads, user space). Instruction counts repeat
# run to run, which wall time on a shared virtual machine does not (`memwarden demo
# --overhead` prints the wall and CPU ratios). Page faults, the same in both, are kernel
# work and not counted.
#
#   bash benches/scripts/demo_overhead_instructions.sh [STEPS]   (default 2000; ~3 min each)
set -euo pipefail
cd "$(dirname "$0")/../.."
steps="${1:-2000}"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
cargo build -q --release -p memwarden-cli
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# Generate the model files first, outside the measurement.
target/release/memwarden demo --steps 1 --format json >/dev/null
count() {
    valgrind --tool=callgrind --callgrind-out-file="$out/$1.out" \
        target/release/memwarden demo --mode "$1" --steps "$steps" --format json 2>&1 >/dev/null \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
plain="$(count plain)"
unbounded="$(count unbounded)"
python3 - "$plain" "$unbounded" "$steps" <<'PY'
import sys
plain, unbounded, steps = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
print(f"demo, {steps} steps: plain {plain:,} instructions, memwarden (unbounded) {unbounded:,}")
print(f"ratio instructions memwarden/plain = {unbounded / plain:.4f}x ({(unbounded / plain - 1) * 100:+.2f} %)")
print(f"goal tracking and governor overhead <= 3 %: {'met' if unbounded / plain <= 1.03 else 'NOT met'}")
PY
