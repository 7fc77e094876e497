#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds deft with the CUDA backend, prints
# the attention kernels' register and shared-memory use, runs the op-by-op
# tests of the CUDA backend against the CPU backend (a skip counts as a
# failure here), then the CUDA benchmark. Unattended; exits non-zero on any
# failure. Extra arguments go to bench_cuda (e.g. --layers 4 --seq 512).
#   bench/cuda_check.sh                  # sm_90 (H100/H200)
#   CUDA_ARCH=80 bench/cuda_check.sh     # another GPU
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DEFT_BUILD_DIR:-$root/build-cuda-check}
arch=${CUDA_ARCH:-90}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "== device"
nvidia-smi -L 2>/dev/null || echo "(nvidia-smi not found)"

echo "== build ($build, sm_$arch)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDEFT_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
cmake --build "$build" -j"$(nproc)" --target deft test_backend_cpu test_backend_cuda bench_cuda

echo "== attention kernels: registers, shared memory, spills"
obj=$(find "$build" -name 'cuda_attention.cu.o' | head -n 1)
if command -v cuobjdump >/dev/null && [ -n "$obj" ]; then
    cuobjdump --dump-resource-usage "$obj" | grep -E 'Function|REG' | sed 's/^ *//' || true
fi

echo "== op tests"
cd "$root"
"$build/test_backend_cpu"
set +e
"$build/test_backend_cuda"
rc=$?
set -e
if [ "$rc" -eq 77 ]; then
    echo "cuda_check: test_backend_cuda was skipped: no usable GPU" >&2
    exit 1
elif [ "$rc" -ne 0 ]; then
    echo "cuda_check: test_backend_cuda failed ($rc)" >&2
    exit 1
fi

echo "== benchmark"
"$build/bench_cuda" "$@"
