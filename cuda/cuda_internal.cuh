/* Internals shared by the CUDA backend's files: the stream every op runs on,
 * sticky error recording (the op table returns nothing), launch helpers and
 * the op functions that cuda_backend.cu gathers into the table. */
#ifndef DEFT_CUDA_INTERNAL_CUH
#define DEFT_CUDA_INTERNAL_CUH

#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "backend/backend.h"
}

/* Every kernel, copy and GEMM is queued on this one stream, so ops run in
 * the order the model calls them without further synchronisation. */
extern cudaStream_t cuda_stream;

/* Records the first failure (file:line, what, CUDA's message) and prints it
 * once; later failures are counted only. backend_cuda_status reports it. */
void cuda_record_error(const char *file, int line, const char *what, const char *detail);

#define CUDA_TRY(call)                                                                \
    do {                                                                              \
        cudaError_t e_ = (call);                                                      \
        if (e_ != cudaSuccess)                                                        \
            cuda_record_error(__FILE__, __LINE__, #call, cudaGetErrorString(e_));     \
    } while (0)

/* After a kernel launch: a bad configuration shows up here, a fault later. */
#define CUDA_LAUNCHED(name) CUDA_TRY(cudaGetLastError())

/* Blocks for a grid-stride loop over n items: enough to fill the GPU, never
 * more than the items need. */
static inline unsigned cuda_blocks_for(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    if (b > 65535LL * 16)
        b = 65535LL * 16;
    return (unsigned)(b > 0 ? b : 1);
}

static inline bool cuda_aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* Temporary device memory, ordered on cuda_stream (the pool keeps it cached). */
void *cuda_scratch_alloc(size_t nbytes);
void cuda_scratch_free(void *p);

// ----------------------------------------------------------------------------
// ops (shapes and semantics: backend/backend.h)

void cuda_add(float *y, const float *x, int64_t n);
void cuda_scale(float *x, float a, int64_t n);
void cuda_scale_strided(float *C, int rows, int cols, int ldc, int64_t stride, int batch,
                        float beta);
void cuda_embed_fwd(float *out, const int32_t *ids, const float *table, int N, int d);
void cuda_embed_bwd(float *dtable, const int32_t *ids, const float *dout, int N, int d);
void cuda_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w,
                      int N, int d, float eps);
void cuda_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x,
                      const float *w, const float *rstd, int N, int d);
void cuda_rope_fwd(float *x, const float *inv_freq, int B, int T, int row_stride_b,
                   int H, int hd, int pos0);
void cuda_rope_bwd(float *dx, const float *inv_freq, int B, int T, int row_stride_b,
                   int H, int hd, int pos0);
void cuda_swiglu_fwd(float *out, const float *gate, const float *up, int64_t n);
void cuda_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, int64_t n);
void cuda_logsoftmax_gather_fwd(float *logp, const float *logits, const int32_t *tgt,
                                int N, int V);
void cuda_logsoftmax_gather_bwd(float *dlogits, const float *logits, const int32_t *tgt,
                                const float *g, int N, int V);
void cuda_attn_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                   const int32_t *klen, const attn_shape_t *s);
void cuda_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                   const float *lse, const float *q, const float *k, const float *v,
                   const int32_t *klen, const attn_shape_t *s);
/* Raises the attention kernels' shared-memory limits; called once by init. */
cudaError_t cuda_attn_setup(void);

#endif
