#!/usr/bin/env bash
# Tensor parallelism: test_tp under mpirun. A model made by `deft init` from
# tests/fixtures/tp/tiny-tp.json (8 heads / 4 kv heads, vocabulary 256, tied
# embeddings) on 4 ranks runs tp x dp = 1x4, 2x2 and 4x1; the untied
# tiny-llama3 fixture (2 kv heads) on 2 ranks runs 1x2 and 2x1. Each must
# match the whole model on one rank.
set -euo pipefail
cd "${DEFT_SOURCE_DIR:?}"
bin="${DEFT_BUILD_DIR:?}/test_tp"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${DEFT_BIN:?}" init --model-config tests/fixtures/tp/tiny-tp.json --out "$work/tiny-tp" \
    --seed 7 2>"$work/init.log" || { cat "$work/init.log"; echo "FAIL: deft init"; exit 1; }
run() {  # NP MODEL_DIR
    out=$(timeout 120 mpirun --oversubscribe -np "$1" "$bin" "$2" 2>&1) || {
        echo "$out"; echo "FAIL: test_tp with $1 ranks on $2"; exit 1; }
    grep -q ", 0 failed" <<<"$out" || { echo "$out"; echo "FAIL: np=$1 $2"; exit 1; }
    grep "^test_tp" <<<"$out"
}
run 4 "$work/tiny-tp"
run 2 tests/fixtures/model/tiny-llama3
run 2 "$work/tiny-tp"
