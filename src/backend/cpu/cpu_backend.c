/* The CPU backend: memory, OpenBLAS GEMM, element-wise ops (residual add,
 * SwiGLU), embedding, and the op table that gathers every CPU op. Tensors are
 * plain host memory, so to_device/to_host are copies. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
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

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

/* OpenBLAS's own threads would spin beside the OpenMP team (two pools
 * fighting for the same cores) and would oversubscribe them when a GEMM is
 * called from inside an OpenMP region, as attention does: OpenBLAS runs
 * single-threaded and cpu_gemm splits the work over OpenMP threads. */
static void blas_single_thread(void) { openblas_set_num_threads(1); }

void cpu_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb, float beta,
               float *C, int ldc)
{
    pthread_once(&blas_once, blas_single_thread);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta,
                C, ldc);
}

/* Threads take slices of C: of its rows when it is taller than wide, else of
 * its columns, in multiples of 16 (the sgemm kernels' tile widths); every
 * thread then runs the whole K loop of its slice, so no sums are shared. */
static void cpu_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, int64_t stride_a,
                     const float *B, int ldb, int64_t stride_b, float beta,
                     float *C, int ldc, int64_t stride_c, int batch)
{
    int nt = 1;
#ifdef _OPENMP
    /* small products are not worth a fork: about 1 MFLOP per thread at least */
    if (!omp_in_parallel() && (double)M * N * K * batch > 5e5)
        nt = omp_get_max_threads();
#endif
    bool by_rows = M >= N;
    int extent = by_rows ? M : N;
    int chunk = ((extent + nt - 1) / nt + 15) / 16 * 16;
    #pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        int lo = t * chunk, hi = lo + chunk < extent ? lo + chunk : extent;
        if (lo >= hi)
            continue;
        /* where slice [lo, hi) of op(A)'s rows or op(B)'s columns is stored */
        int64_t a_off = by_rows ? (trans_a ? lo : (int64_t)lo * lda) : 0;
        int64_t b_off = by_rows ? 0 : (trans_b ? (int64_t)lo * ldb : lo);
        int64_t c_off = by_rows ? (int64_t)lo * ldc : lo;
        for (int b = 0; b < batch; b++)
            cpu_sgemm(trans_a, trans_b, by_rows ? hi - lo : M, by_rows ? N : hi - lo, K,
                      alpha, A + b * stride_a + a_off, lda, B + b * stride_b + b_off, ldb,
                      beta, C + b * stride_c + c_off, ldc);
    }
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
        out[i] = g / (1.0f + cpu_expf(-g)) * up[i];
    }
}

static void cpu_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, int64_t n)
{
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        float sg = 1.0f / (1.0f + cpu_expf(-g));
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
