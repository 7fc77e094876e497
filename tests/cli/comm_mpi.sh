#!/usr/bin/env bash
# The comm layer's unit test under mpirun with 1, 2 and 3 ranks (the plain
# CTest run covers the singleton case).
set -euo pipefail
bin="${DEFT_BUILD_DIR:?}/test_comm"
for np in 1 2 3; do
    out=$(timeout 60 mpirun --oversubscribe -np "$np" "$bin" 2>&1) || {
        echo "$out"; echo "FAIL: test_comm with $np ranks"; exit 1; }
    grep -q ", 0 failed" <<<"$out" || { echo "$out"; echo "FAIL: np=$np"; exit 1; }
    echo "test_comm np=$np: ${out##*$'\n'}"
done
