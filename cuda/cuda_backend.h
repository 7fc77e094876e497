/* The CUDA backend: the op table of backend/backend.h on one NVIDIA GPU
 * (cuBLASLt GEMM, hand-written kernels for everything else). Declared in C so
 * that the library and tests can call it; compiled only where nvcc is found
 * (DEFT_HAVE_CUDA). */
#ifndef DEFT_CUDA_BACKEND_H
#define DEFT_CUDA_BACKEND_H

#include "backend/backend.h"
#include "util/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Starts the backend on the current device (device 0 unless the caller chose
 * another with CUDA_VISIBLE_DEVICES): stream, cuBLASLt handle, GEMM workspace.
 * Fails with a message when no device is present or the driver is missing.
 * Idempotent: a second call returns the same table. */
int backend_cuda_init(const backend_t **be, deft_err_t *err);

/* The op table has no error returns, so the first CUDA or cuBLASLt failure of
 * any op (launch, fault, unsupported shape) is kept, printed once to stderr,
 * and reported here. Synchronises first so that asynchronous faults show up. */
int backend_cuda_status(deft_err_t *err);

/* The device's name, memory and clock, for logs and benchmarks (after init). */
typedef struct {
    char name[256];
    int sm_count;
    int cc_major, cc_minor;
    double mem_gib;
    double clock_ghz;       /* SM boost clock */
} cuda_device_info_t;
int backend_cuda_device_info(cuda_device_info_t *info);

#ifdef __cplusplus
}
#endif

#endif
