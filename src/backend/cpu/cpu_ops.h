/* The CPU backend's ops, one function per entry of backend_t (see
 * backend/backend.h for shapes and semantics), and the small kernels several
 * of them share: a vectorisable exp and the single BLAS entry point. Exposed
 * so that the op table in cpu_backend.c can be assembled from several files. */
#ifndef DEFT_CPU_OPS_H
#define DEFT_CPU_OPS_H

#include <stdint.h>
#include <string.h>

#include "backend/backend.h"

/* exp(x) in fp32 without a libm call, so that loops of it vectorise: x = n ln2 + r
 * with |r| <= ln2/2, exp(r) by a degree-7 polynomial (Cephes' expf
 * coefficients), 2^n put into the exponent bits. Within 1.5 ulp of exp over
 * [-87.3, 88]; below that it returns 0 (expf would return a denormal, at most
 * 1.2e-38) and above it exp(88) = 1.65e38, the largest it forms without the
 * exponent overflowing. Callers use it after max subtraction (x <= 0) or
 * inside a sigmoid, where neither end matters. The clamps are integer masks
 * on the bit pattern: a branch or a float compare here keeps GCC from
 * vectorising the caller's loop. */
static inline float cpu_expf(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof(u));
    /* -inf <= x < -87.33654 (0xC2AEAC4F) and 88 (0x42B00000) < x <= inf, as masks */
    uint32_t under = -(uint32_t)((u > 0xC2AEAC4Fu) & (u <= 0xFF800000u));
    uint32_t over = -(uint32_t)((u > 0x42B00000u) & (u <= 0x7F800000u));
    u = (u & ~(under | over)) | (0xC2AEAC4Fu & under) | (0x42B00000u & over);
    memcpy(&x, &u, sizeof(x));
    /* round x log2(e) to the nearest integer n by adding 1.5 * 2^23 */
    float t = x * 1.44269504f + 12582912.0f;
    float n = t - 12582912.0f;
    int32_t ti;
    memcpy(&ti, &t, sizeof(ti));
    float r = x - n * 0.693359375f;   /* ln 2 split high + low: n * high is exact */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* 2^n, n in [-126, 127]; 0 for the underflowed */
    uint32_t bits = ((uint32_t)(ti - 0x4B400000 + 127) << 23) & ~under;
    float scale;
    memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}

/* C[M,N] = alpha op(A) op(B) + beta C on the calling thread only (row-major,
 * strides as cblas). The backend runs OpenBLAS single-threaded and splits work
 * across OpenMP threads itself, so that one pool of threads owns the cores. */
void cpu_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb, float beta,
               float *C, int ldc);

void cpu_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w,
                     int N, int d, float eps);
void cpu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x,
                     const float *w, const float *rstd, int N, int d);
void cpu_rope_fwd(float *x, const float *inv_freq, int B, int T, int row_stride_b,
                  int H, int hd, int pos0);
void cpu_rope_bwd(float *dx, const float *inv_freq, int B, int T, int row_stride_b,
                  int H, int hd, int pos0);
void cpu_attn_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                  const int32_t *klen, const attn_shape_t *s);
void cpu_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                  const float *lse, const float *q, const float *k, const float *v,
                  const int32_t *klen, const attn_shape_t *s);
void cpu_logsoftmax_gather_fwd(float *logp, const float *logits, const int32_t *tgt,
                               int N, int V);
void cpu_logsoftmax_gather_bwd(float *dlogits, const float *logits, const int32_t *tgt,
                               const float *g, int N, int V);

#endif
