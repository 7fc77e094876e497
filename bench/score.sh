#!/usr/bin/env bash
# R_Q scoring throughput: the head-vector identity against the literal
# log-softmax form, same model, samples and batches, in one run; prints a
# JSON line with both rates in tokens/s, their ratio (speedup) and the
# largest relative disagreement of the two.
#
# usage: bench/score.sh [BUILD_DIR] [THREADS] [bench_score flags, e.g. --samples 512
#        --model DIR] (run from the repository root)
set -euo pipefail
build=${1:-build}
threads=${2:-$(nproc)}
shift $(( $# > 2 ? 2 : $# ))
cmake --build "$build" --target bench_score >/dev/null
OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1 "$build/bench_score" "$@"
