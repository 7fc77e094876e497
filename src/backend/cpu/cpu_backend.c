/* The CPU backend: memory, OpenBLAS GEMM, element-wise ops (residual add,
 * SwiGLU), embedding, and the op table that gathers every CPU op. Tensors are
 * plain host memory, so to_device/to_host are copies. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/cpu/cpu_ops.h"

// ----------------------------------------------------------------------------
// memory

static void *cpu_alloc(size_t nbytes)
{
    /* 64-byte alignment keeps rows on cache-line boundaries for the SIMD loops */
    size_t n = (nbytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, n ? n : 64);
    if (p)
        memset(p, 0, n);
    return p;
}

static void cpu_free(void *p) { free(p); }
static void cpu_copy(void *dst, const void *src, size_t n) { if (n) memmove(dst, src, n); }
static void cpu_zero(void *p, size_t n) { if (n) memset(p, 0, n); }
static void cpu_sync(void) {}

// ----------------------------------------------------------------------------
// linear algebra

static void cpu_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, int64_t stride_a,
                     const float *B, int ldb, int64_t stride_b, float beta,
                     float *C, int ldc, int64_t stride_c, int batch)
{
    /* One sgemm per batch item: OpenBLAS threads each call itself, and calling it
     * from inside an OpenMP region would oversubscribe the cores. */
    for (int b = 0; b < batch; b++)
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                    A + b * stride_a, lda, B + b * stride_b, ldb, beta,
                    C + b * stride_c, ldc);
}

static void cpu_add(float *y, const float *x, int64_t n)
{
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

static void cpu_scale(float *x, float a, int64_t n)
{
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++)
        x[i] *= a;
}

// ----------------------------------------------------------------------------
// embedding

static void cpu_embed_fwd(float *out, const int32_t *ids, const float *table, int N, int d)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        memcpy(out + (int64_t)n * d, table + (int64_t)ids[n] * d, sizeof(float) * d);
}

static void cpu_embed_bwd(float *dtable, const int32_t *ids, const float *dout, int N, int d)
{
    /* Threads split the columns, not the tokens: a token id repeated in the batch
     * then never has two threads adding into the same row. */
    #pragma omp parallel
    {
        int nt = 1, t = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads();
        t = omp_get_thread_num();
#endif
        int c0 = (int)((int64_t)d * t / nt), c1 = (int)((int64_t)d * (t + 1) / nt);
        for (int n = 0; n < N; n++) {
            float *row = dtable + (int64_t)ids[n] * d;
            const float *g = dout + (int64_t)n * d;
            for (int c = c0; c < c1; c++)
                row[c] += g[c];
        }
    }
}

// ----------------------------------------------------------------------------
// SwiGLU: silu(g) * u with silu(g) = g * sigmoid(g)

static void cpu_swiglu_fwd(float *out, const float *gate, const float *up, int64_t n)
{
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static void cpu_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, int64_t n)
{
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        float sg = 1.0f / (1.0f + expf(-g));
        float silu = g * sg;
        dup[i] = dout[i] * silu;
        /* d silu/dg = sigmoid(g) * (1 + g * (1 - sigmoid(g))) */
        dgate[i] = dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
    }
}

// ----------------------------------------------------------------------------
// the table

static const backend_t cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy = cpu_copy,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .gemm = cpu_gemm,
    .add = cpu_add,
    .scale = cpu_scale,
    .embed_fwd = cpu_embed_fwd,
    .embed_bwd = cpu_embed_bwd,
    .rmsnorm_fwd = cpu_rmsnorm_fwd,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .rope_fwd = cpu_rope_fwd,
    .rope_bwd = cpu_rope_bwd,
    .attn_fwd = cpu_attn_fwd,
    .attn_bwd = cpu_attn_bwd,
    .swiglu_fwd = cpu_swiglu_fwd,
    .swiglu_bwd = cpu_swiglu_bwd,
    .logsoftmax_gather_fwd = cpu_logsoftmax_gather_fwd,
    .logsoftmax_gather_bwd = cpu_logsoftmax_gather_bwd,
};

const backend_t *backend_cpu(void) { return &cpu_backend; }
