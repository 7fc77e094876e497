/* The backend interface: a fixed table of tensor ops over float32 buffers that
 * the backend allocates. The model (src/model/llama.c) is written once against
 * this table; the CPU backend (backend/cpu) is the exact reference and any
 * other backend is tested op by op against it. */
#ifndef DEFT_BACKEND_H
#define DEFT_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Conventions for every op below:
 * - all tensors are row-major and dense unless a stride is given; shapes are
 *   written [outer, ..., inner];
 * - pointers are backend memory (from alloc), never host memory, except where
 *   an argument says "host";
 * - "+=" in a description means the op accumulates into its output (gradients
 *   of a tensor used twice, residual streams), "=" means it overwrites;
 * - N is a count of rows (tokens), usually B * T. */

/* Shape of one attention call. Queries are Tq new tokens of each of B
 * sequences; keys/values live in a cache of kv_cap rows per sequence of which
 * rows [0, q_offset + Tq) are filled. Query row i of sequence b sits at
 * absolute position q_offset + i and sees key j iff
 *     j <= q_offset + i   (causal)   and   j < klen[b]   (right padding).
 * A query row that sees no key at all (klen[b] == 0) is "fully masked": its
 * output is defined as 0, its lse as 0, and it contributes no gradient. */
typedef struct {
    int B, Tq;
    int kv_cap;          /* rows per sequence in the K/V tensors (== Tq in training) */
    int q_offset;        /* absolute position of query row 0 (0 in training) */
    int n_heads;         /* query heads Hq */
    int n_kv_heads;      /* Hkv; query head h reads kv head h / (Hq / Hkv) (GQA) */
    int head_dim;        /* hd */
    float scale;         /* 1 / sqrt(hd) */
} attn_shape_t;

typedef struct backend backend_t;

struct backend {
    const char *name;

    /* ---- memory. alloc returns zeroed memory or NULL on exhaustion. */
    void *(*alloc)(size_t nbytes);
    void (*free)(void *p);
    void (*to_device)(void *dst, const void *host_src, size_t nbytes);
    void (*to_host)(void *host_dst, const void *src, size_t nbytes);
    void (*copy)(void *dst, const void *src, size_t nbytes);
    void (*zero)(void *p, size_t nbytes);
    void (*sync)(void);   /* waits for queued work; a no-op on the CPU */

    /* ---- linear algebra.
     * C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b], for b < batch, with
     * op(X) = X or X^T (trans_a/trans_b), row-major: op(A) is [M,K], op(B) is
     * [K,N], C is [M,N]; lda/ldb/ldc are row strides of A, B, C as stored;
     * stride_a/b/c are element offsets between batch items (0 = shared). */
    void (*gemm)(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                 const float *A, int lda, int64_t stride_a,
                 const float *B, int ldb, int64_t stride_b, float beta,
                 float *C, int ldc, int64_t stride_c, int batch);

    /* y[n] += x[n] (residual add, gradient accumulation). */
    void (*add)(float *y, const float *x, int64_t n);
    /* x[n] *= a */
    void (*scale)(float *x, float a, int64_t n);

    /* ---- embedding. out[N,d] = table[ids[n], :]; dtable[V,d] += scatter of dout[N,d].
     * ids[N] int32, each in [0, V) (the caller validates). */
    void (*embed_fwd)(float *out, const int32_t *ids, const float *table, int N, int d);
    void (*embed_bwd)(float *dtable, const int32_t *ids, const float *dout, int N, int d);

    /* ---- RMSNorm in fp32: out[N,d] = w[d] * x * rstd, rstd[N] = 1/sqrt(mean(x^2) + eps).
     * Backward: dx[N,d] += ..., dw[d] += ...; rstd is the forward's. */
    void (*rmsnorm_fwd)(float *out, float *rstd, const float *x, const float *w,
                        int N, int d, float eps);
    void (*rmsnorm_bwd)(float *dx, float *dw, const float *dout, const float *x,
                        const float *w, const float *rstd, int N, int d);

    /* ---- RoPE, Hugging Face half-rotation layout (rotate_half): for pair
     * i < hd/2 of each head, (x[i], x[i+hd/2]) is rotated by angle
     * pos * inv_freq[i] with pos = pos0 + t. In place on x viewed as
     * [B, T, H, hd] where sequence b starts at row b * row_stride_b
     * (row_stride_b >= T; rows are H*hd floats). inv_freq[hd/2].
     * rope_bwd applies the inverse rotation (the transpose) to a gradient. */
    void (*rope_fwd)(float *x, const float *inv_freq, int B, int T, int row_stride_b,
                     int H, int hd, int pos0);
    void (*rope_bwd)(float *dx, const float *inv_freq, int B, int T, int row_stride_b,
                     int H, int hd, int pos0);

    /* ---- causal attention with GQA and right padding (see attn_shape_t).
     * q[B,Tq,Hq,hd], k,v[B,kv_cap,Hkv,hd], klen[B] int32 -> out[B,Tq,Hq,hd] and
     * lse[B,Hq,Tq] (log-sum-exp of the scaled scores, kept for backward).
     * Scores and softmax in fp32 with max subtraction.
     * Backward: dq = (overwritten), dk, dv += (shapes as q, k, v). Training
     * only: requires q_offset == 0 and kv_cap == Tq. */
    void (*attn_fwd)(float *out, float *lse, const float *q, const float *k, const float *v,
                     const int32_t *klen, const attn_shape_t *s);
    void (*attn_bwd)(float *dq, float *dk, float *dv, const float *dout, const float *out,
                     const float *lse, const float *q, const float *k, const float *v,
                     const int32_t *klen, const attn_shape_t *s);

    /* ---- SwiGLU: out[n] = silu(gate[n]) * up[n] over n elements;
     * backward overwrites dgate[n], dup[n]. */
    void (*swiglu_fwd)(float *out, const float *gate, const float *up, int64_t n);
    void (*swiglu_bwd)(float *dgate, float *dup, const float *dout, const float *gate,
                       const float *up, int64_t n);

    /* ---- log-softmax + gather over logits[N,V] (fp32, max subtraction):
     * logp[n] = logits[n, tgt[n]] - logsumexp(logits[n, :]); tgt[n] < 0 means
     * "no target": logp[n] = 0 and no gradient.
     * Backward: dlogits[n,:] += g[n] * (onehot(tgt[n]) - softmax(logits[n,:])). */
    void (*logsoftmax_gather_fwd)(float *logp, const float *logits, const int32_t *tgt,
                                  int N, int V);
    void (*logsoftmax_gather_bwd)(float *dlogits, const float *logits, const int32_t *tgt,
                                  const float *g, int N, int V);
};

/* The CPU backend: OpenMP threads, OpenBLAS sgemm. Always available. */
const backend_t *backend_cpu(void);

#endif
