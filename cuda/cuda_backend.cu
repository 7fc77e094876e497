/* The CUDA backend's core: device start-up, memory, sticky error reporting,
 * GEMM through cuBLASLt (fp32 compute, row-major by operand swap, strided
 * batches) and the op table that gathers the kernels of cuda_ops.cu and
 * cuda_attention.cu. */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cuda/cuda_internal.cuh"

extern "C" {
#include "cuda/cuda_backend.h"
}

cudaStream_t cuda_stream;

static cublasLtHandle_t lt_handle;
static void *lt_workspace;                          /* [LT_WORKSPACE_BYTES] bytes */
static const size_t LT_WORKSPACE_BYTES = 32u << 20; /* 32 MiB: what Hopper kernels ask */
static bool cuda_ready;
static backend_t cuda_table;

// ----------------------------------------------------------------------------
// errors: the first failure is kept; ops cannot return it

static char first_error[1024];
static long n_errors;

void cuda_record_error(const char *file, int line, const char *what, const char *detail)
{
    if (n_errors++ == 0) {
        snprintf(first_error, sizeof(first_error), "%s:%d: %s: %s", file, line, what,
                 detail);
        fprintf(stderr, "deft: CUDA backend error: %s\n", first_error);
    }
}

/* deft_err_t is filled here directly: calling deft_fail from this library
 * would make the CUDA objects depend back on the C library's objects. */
static int cuda_fail(deft_err_t *err, deft_code_t code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

extern "C" int backend_cuda_status(deft_err_t *err)
{
    if (cuda_ready) {
        cudaError_t e = cudaStreamSynchronize(cuda_stream);
        if (e != cudaSuccess)
            cuda_record_error(__FILE__, __LINE__, "cudaStreamSynchronize", cudaGetErrorString(e));
    }
    if (n_errors == 0)
        return DEFT_OK;
    return cuda_fail(err, DEFT_ERR_INTERNAL, "CUDA backend: %s (%ld failure%s in all)",
                     first_error, n_errors, n_errors == 1 ? "" : "s");
}

// ----------------------------------------------------------------------------
// memory: everything on cuda_stream

static void *cuda_alloc(size_t nbytes)
{
    void *p = NULL;
    if (cudaMalloc(&p, nbytes ? nbytes : 256) != cudaSuccess) {
        cudaGetLastError();   /* exhaustion is reported by the NULL, not kept */
        return NULL;
    }
    CUDA_TRY(cudaMemsetAsync(p, 0, nbytes ? nbytes : 256, cuda_stream));
    return p;
}

static void cuda_free(void *p)
{
    if (p)
        CUDA_TRY(cudaFree(p));   /* waits for the work that may still use p */
}

/* Both directions wait: the caller may reuse (or read) its host buffer as soon
 * as the call returns, whatever kind of host memory it is. */
static void cuda_to_device(void *dst, const void *host_src, size_t n)
{
    if (!n)
        return;
    CUDA_TRY(cudaMemcpyAsync(dst, host_src, n, cudaMemcpyHostToDevice, cuda_stream));
    CUDA_TRY(cudaStreamSynchronize(cuda_stream));
}

static void cuda_to_host(void *host_dst, const void *src, size_t n)
{
    if (!n)
        return;
    CUDA_TRY(cudaMemcpyAsync(host_dst, src, n, cudaMemcpyDeviceToHost, cuda_stream));
    CUDA_TRY(cudaStreamSynchronize(cuda_stream));
}

/* memmove semantics, as on the CPU: overlapping ranges go through scratch. */
static void cuda_copy(void *dst, const void *src, size_t n)
{
    if (!n || dst == src)
        return;
    const char *d = (const char *)dst, *s = (const char *)src;
    if (d + n <= s || s + n <= d) {
        CUDA_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, cuda_stream));
        return;
    }
    void *tmp = cuda_scratch_alloc(n);
    if (!tmp)
        return;
    CUDA_TRY(cudaMemcpyAsync(tmp, src, n, cudaMemcpyDeviceToDevice, cuda_stream));
    CUDA_TRY(cudaMemcpyAsync(dst, tmp, n, cudaMemcpyDeviceToDevice, cuda_stream));
    cuda_scratch_free(tmp);
}

static void cuda_zero(void *p, size_t n)
{
    if (n)
        CUDA_TRY(cudaMemsetAsync(p, 0, n, cuda_stream));
}

static void cuda_sync(void) { CUDA_TRY(cudaStreamSynchronize(cuda_stream)); }

void *cuda_scratch_alloc(size_t nbytes)
{
    void *p = NULL;
    cudaError_t e = cudaMallocAsync(&p, nbytes ? nbytes : 256, cuda_stream);
    if (e != cudaSuccess) {
        cuda_record_error(__FILE__, __LINE__, "cudaMallocAsync (scratch)", cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

void cuda_scratch_free(void *p)
{
    if (p)
        CUDA_TRY(cudaFreeAsync(p, cuda_stream));
}

// ----------------------------------------------------------------------------
// GEMM: cuBLASLt is column-major, and a row-major X[r, c] with row stride ld
// is the column-major X^T with leading dimension ld. So row-major
// C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T:
// cuBLASLt's first operand is our B, its second our A, its output [N, M].

typedef struct {
    /* key */
    bool ta, tb;
    int M, N, K, lda, ldb, ldc, batch;
    int64_t sa, sb, sc;
    uint32_t align_a, align_b, align_c;
    /* value */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;   /* cuBLASLt's A (our B), B (our A), C/D */
    cublasLtMatmulAlgo_t algo;
    bool used;
} gemm_plan_t;

#define GEMM_PLANS 64
static gemm_plan_t gemm_plans[GEMM_PLANS];
static int gemm_next_victim;

#define LT_TRY(call, what)                                                            \
    do {                                                                              \
        cublasStatus_t s_ = (call);                                                   \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                            \
            cuda_record_error(__FILE__, __LINE__, what, cublasLtGetStatusString(s_)); \
            return false;                                                             \
        }                                                                             \
    } while (0)

/* Largest power of two (<= 256 bytes) dividing the address of every batch item. */
static uint32_t gemm_align(const void *p, int64_t stride, int batch)
{
    uint64_t bits = (uint64_t)(uintptr_t)p | 256u;
    if (batch > 1)
        bits |= (uint64_t)(stride * (int64_t)sizeof(float));
    return (uint32_t)(bits & (~bits + 1));
}

static bool layout_make(cublasLtMatrixLayout_t *l, int rows, int cols, int ld, int batch,
                        int64_t stride)
{
    LT_TRY(cublasLtMatrixLayoutCreate(l, CUDA_R_32F, (uint64_t)rows, (uint64_t)cols, ld),
           "cublasLtMatrixLayoutCreate");
    if (batch > 1) {
        int32_t bc = batch;
        LT_TRY(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc,
                                                sizeof(bc)), "layout batch count");
        LT_TRY(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                &stride, sizeof(stride)), "layout batch stride");
    }
    return true;
}

static void plan_release(gemm_plan_t *p)
{
    if (!p->used)
        return;
    cublasLtMatmulDescDestroy(p->op);
    cublasLtMatrixLayoutDestroy(p->la);
    cublasLtMatrixLayoutDestroy(p->lb);
    cublasLtMatrixLayoutDestroy(p->lc);
    p->used = false;
}

/* Descriptors and the heuristic's first algorithm for the plan's key. */
static bool plan_build(gemm_plan_t *p)
{
    cublasOperation_t op_first = p->tb ? CUBLAS_OP_T : CUBLAS_OP_N;   /* our B */
    cublasOperation_t op_second = p->ta ? CUBLAS_OP_T : CUBLAS_OP_N;  /* our A */
    LT_TRY(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
           "cublasLtMatmulDescCreate");
    LT_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                          sizeof(op_first)), "matmul transa");
    LT_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                          sizeof(op_second)), "matmul transb");
    /* stored (untransposed) column-major shapes */
    bool ok = layout_make(&p->la, p->tb ? p->K : p->N, p->tb ? p->N : p->K, p->ldb, p->batch,
                          p->sb)
           && layout_make(&p->lb, p->ta ? p->M : p->K, p->ta ? p->K : p->M, p->lda, p->batch,
                          p->sa)
           && layout_make(&p->lc, p->N, p->M, p->ldc, p->batch, p->sc);
    if (!ok)
        return false;
    cublasLtMatmulPreference_t pref;
    LT_TRY(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    uint64_t ws = LT_WORKSPACE_BYTES;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                         sizeof(ws));
    /* cuBLASLt's A is our B and so on; unaligned views (a KV-cache row offset)
     * must not get a kernel that assumes 16-byte rows */
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                         &p->align_b, sizeof(uint32_t));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                         &p->align_a, sizeof(uint32_t));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                         &p->align_c, sizeof(uint32_t));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                         &p->align_c, sizeof(uint32_t));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_handle, p->op, p->la, p->lb, p->lc,
                                                       p->lc, pref, 1, &heur, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
        char what[160];
        snprintf(what, sizeof(what), "no cuBLASLt algorithm for gemm M=%d N=%d K=%d batch=%d",
                 p->M, p->N, p->K, p->batch);
        cuda_record_error(__FILE__, __LINE__, what, cublasLtGetStatusString(st));
        return false;
    }
    p->algo = heur.algo;
    return true;
}

static gemm_plan_t *plan_get(const gemm_plan_t *key)
{
    for (int i = 0; i < GEMM_PLANS; i++) {
        gemm_plan_t *p = &gemm_plans[i];
        if (p->used && p->ta == key->ta && p->tb == key->tb && p->M == key->M
            && p->N == key->N && p->K == key->K && p->lda == key->lda && p->ldb == key->ldb
            && p->ldc == key->ldc && p->batch == key->batch && p->sa == key->sa
            && p->sb == key->sb && p->sc == key->sc && p->align_a == key->align_a
            && p->align_b == key->align_b && p->align_c == key->align_c)
            return p;
    }
    gemm_plan_t *p = &gemm_plans[gemm_next_victim];
    gemm_next_victim = (gemm_next_victim + 1) % GEMM_PLANS;
    plan_release(p);
    *p = *key;
    p->used = true;
    if (!plan_build(p)) {
        /* a half-built plan is not cached: destroy what was created (zeroed
         * handles are ignored by the destroy calls) */
        plan_release(p);
        memset(p, 0, sizeof(*p));
        return NULL;
    }
    return p;
}

static void gemm_one(bool ta, bool tb, int M, int N, int K, float alpha, const float *A,
                     int lda, int64_t sa, const float *B, int ldb, int64_t sb, float beta,
                     float *C, int ldc, int64_t sc, int batch)
{
    gemm_plan_t key;
    memset(&key, 0, sizeof(key));
    key.ta = ta, key.tb = tb, key.M = M, key.N = N, key.K = K;
    key.lda = lda, key.ldb = ldb, key.ldc = ldc, key.batch = batch;
    key.sa = batch > 1 ? sa : 0, key.sb = batch > 1 ? sb : 0, key.sc = batch > 1 ? sc : 0;
    key.align_a = gemm_align(A, sa, batch);
    key.align_b = gemm_align(B, sb, batch);
    key.align_c = gemm_align(C, sc, batch);
    gemm_plan_t *p = plan_get(&key);
    if (!p)
        return;
    cublasStatus_t st = cublasLtMatmul(lt_handle, p->op, &alpha, B, p->la, A, p->lb, &beta, C,
                                       p->lc, C, p->lc, &p->algo, lt_workspace,
                                       LT_WORKSPACE_BYTES, cuda_stream);
    if (st != CUBLAS_STATUS_SUCCESS)
        cuda_record_error(__FILE__, __LINE__, "cublasLtMatmul", cublasLtGetStatusString(st));
}

static void cuda_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, int64_t stride_a,
                      const float *B, int ldb, int64_t stride_b, float beta,
                      float *C, int ldc, int64_t stride_c, int batch)
{
    if (M <= 0 || N <= 0 || batch <= 0)
        return;
    if (K <= 0) {   /* an empty sum: C = beta * C, as BLAS defines it */
        cuda_scale_strided(C, M, N, ldc, stride_c, batch, beta);
        return;
    }
    /* A shared operand (stride 0, e.g. one weight for every sequence) runs
     * item by item: one batched call with a zero stride is not a layout that
     * cuBLASLt documents. */
    if (batch > 1 && (stride_a == 0 || stride_b == 0 || stride_c == 0)) {
        for (int b = 0; b < batch; b++)
            gemm_one(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, 0,
                     B + b * stride_b, ldb, 0, beta, C + b * stride_c, ldc, 0, 1);
        return;
    }
    gemm_one(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C,
             ldc, stride_c, batch);
}

// ----------------------------------------------------------------------------
// start-up and the table

extern "C" int backend_cuda_init(const backend_t **be, deft_err_t *err)
{
    if (cuda_ready) {
        *be = &cuda_table;
        return DEFT_OK;
    }
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        return cuda_fail(err, DEFT_ERR_USAGE, "CUDA backend: no usable GPU (%s)",
                         e != cudaSuccess ? cudaGetErrorString(e) : "no device found");
    int dev = 0;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess || (e = cudaFree(0)) != cudaSuccess)
        return cuda_fail(err, DEFT_ERR_INTERNAL, "CUDA backend: cannot start device %d: %s",
                         dev, cudaGetErrorString(e));
    if ((e = cudaStreamCreate(&cuda_stream)) != cudaSuccess)
        return cuda_fail(err, DEFT_ERR_INTERNAL, "CUDA backend: cudaStreamCreate: %s",
                         cudaGetErrorString(e));
    /* keep freed scratch in the pool instead of returning it at every sync */
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess) {
        uint64_t keep = UINT64_MAX;
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    cublasStatus_t st = cublasLtCreate(&lt_handle);
    if (st != CUBLAS_STATUS_SUCCESS)
        return cuda_fail(err, DEFT_ERR_INTERNAL, "CUDA backend: cublasLtCreate: %s",
                         cublasLtGetStatusString(st));
    if ((e = cudaMalloc(&lt_workspace, LT_WORKSPACE_BYTES)) != cudaSuccess)
        return cuda_fail(err, DEFT_ERR_NOMEM, "CUDA backend: cannot allocate the %zu MiB "
                         "cuBLASLt workspace: %s", LT_WORKSPACE_BYTES >> 20,
                         cudaGetErrorString(e));
    if ((e = cuda_attn_setup()) != cudaSuccess)
        return cuda_fail(err, DEFT_ERR_INTERNAL, "CUDA backend: attention kernels need more "
                         "shared memory than device %d allows: %s", dev, cudaGetErrorString(e));

    backend_t t;
    memset(&t, 0, sizeof(t));
    t.name = "cuda";
    t.alloc = cuda_alloc;
    t.free = cuda_free;
    t.to_device = cuda_to_device;
    t.to_host = cuda_to_host;
    t.copy = cuda_copy;
    t.zero = cuda_zero;
    t.sync = cuda_sync;
    t.gemm = cuda_gemm;
    t.add = cuda_add;
    t.scale = cuda_scale;
    t.embed_fwd = cuda_embed_fwd;
    t.embed_bwd = cuda_embed_bwd;
    t.rmsnorm_fwd = cuda_rmsnorm_fwd;
    t.rmsnorm_bwd = cuda_rmsnorm_bwd;
    t.rope_fwd = cuda_rope_fwd;
    t.rope_bwd = cuda_rope_bwd;
    t.attn_fwd = cuda_attn_fwd;
    t.attn_bwd = cuda_attn_bwd;
    t.swiglu_fwd = cuda_swiglu_fwd;
    t.swiglu_bwd = cuda_swiglu_bwd;
    t.logsoftmax_gather_fwd = cuda_logsoftmax_gather_fwd;
    t.logsoftmax_gather_bwd = cuda_logsoftmax_gather_bwd;
    cuda_table = t;
    cuda_ready = true;
    *be = &cuda_table;
    return DEFT_OK;
}

extern "C" int backend_cuda_device_info(cuda_device_info_t *info)
{
    memset(info, 0, sizeof(*info));
    int dev = 0, khz = 0;
    cudaDeviceProp prop;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess)
        return DEFT_ERR_INTERNAL;
    snprintf(info->name, sizeof(info->name), "%s", prop.name);
    info->sm_count = prop.multiProcessorCount;
    info->cc_major = prop.major;
    info->cc_minor = prop.minor;
    info->mem_gib = (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0);
    cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev);
    info->clock_ghz = khz / 1e6;
    return DEFT_OK;
}
