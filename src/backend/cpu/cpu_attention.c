/* CPU causal self-attention with grouped-query heads (GQA) and right padding,
 * forward and backward, built from per-(sequence, head) tiles of QB query rows:
 * scores, probabilities and their gradients are small matrix products (sgemm)
 * over only the keys the tile's last row sees, so the causal mask skips the
 * blocks above the diagonal. Softmax in fp32 with max subtraction; the backward
 * recomputes probabilities from the saved log-sum-exp instead of keeping the
 * [B, Hq, T, T] probability tensor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"

/* Query rows per tile: smaller skips more of the masked triangle (at T = 256,
 * 64 computes 62% of the full square against the 50% the mask needs), larger
 * makes fewer, better-shaped sgemm calls. */
#define QB 64

static inline float dot(const float *a, const float *b, int n)
{
    float s = 0.0f;
    #pragma omp simd reduction(+:s)
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Number of keys query row i of sequence b sees (causal and padding limits). */
static inline int keys_seen(const attn_shape_t *s, const int32_t *klen, int b, int i)
{
    int n = s->q_offset + i + 1;
    if (klen[b] < n)
        n = klen[b];
    if (s->kv_cap < n)
        n = s->kv_cap;
    return n > 0 ? n : 0;
}

/* Softmax of one score row p[nk] over its first n entries in place, the rest
 * zeroed (masked keys); returns the log-sum-exp. */
static float softmax_row(float *p, int n, int nk)
{
    float mx = -INFINITY;
    for (int j = 0; j < n; j++)
        mx = p[j] > mx ? p[j] : mx;
    float sum = 0.0f;
    #pragma omp simd reduction(+:sum)
    for (int j = 0; j < n; j++) {
        p[j] = cpu_expf(p[j] - mx);
        sum += p[j];
    }
    float inv = 1.0f / sum;
    #pragma omp simd
    for (int j = 0; j < n; j++)
        p[j] *= inv;
    memset(p + n, 0, sizeof(float) * (nk - n));
    return mx + logf(sum);
}

/* Scratch of one thread: a tile of probabilities and one of their gradients,
 * [QB, kv_cap] each. */
static float *tile_alloc(const attn_shape_t *s, int n_tiles)
{
    size_t n = (size_t)QB * (s->kv_cap > 0 ? s->kv_cap : 1) * n_tiles;
    float *p = malloc(sizeof(float) * n);
    if (!p)
        abort();   /* a few hundred KB per thread; the op has no error path */
    return p;
}

void cpu_attn_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                  const int32_t *klen, const attn_shape_t *s)
{
    int Hq = s->n_heads, Hkv = s->n_kv_heads, hd = s->head_dim, group = Hq / Hkv;
    int q_row = Hq * hd, kv_row = Hkv * hd;
    int n_qt = (s->Tq + QB - 1) / QB;
    #pragma omp parallel
    {
        float *p = tile_alloc(s, 1);   /* [QB, nk] probabilities, row stride nk */
        #pragma omp for collapse(3) schedule(dynamic, 1)
        for (int b = 0; b < s->B; b++) {
            for (int h = 0; h < Hq; h++) {
                for (int qt = 0; qt < n_qt; qt++) {
                    int i0 = qt * QB, rows = s->Tq - i0 < QB ? s->Tq - i0 : QB;
                    int64_t kv_off = (int64_t)b * s->kv_cap * kv_row + (h / group) * hd;
                    int64_t q_off = ((int64_t)b * s->Tq + i0) * q_row + h * hd;
                    float *lse_t = lse + ((int64_t)b * Hq + h) * s->Tq + i0;
                    int nk = keys_seen(s, klen, b, i0 + rows - 1);
                    if (nk == 0) {   /* fully masked rows: output 0, lse 0 */
                        for (int r = 0; r < rows; r++) {
                            memset(out + q_off + (int64_t)r * q_row, 0, sizeof(float) * hd);
                            lse_t[r] = 0.0f;
                        }
                        continue;
                    }
                    cpu_sgemm(false, true, rows, nk, hd, s->scale, q + q_off, q_row,
                              k + kv_off, kv_row, 0.0f, p, nk);
                    for (int r = 0; r < rows; r++) {
                        int n = keys_seen(s, klen, b, i0 + r);
                        if (n == 0) {
                            memset(p + (int64_t)r * nk, 0, sizeof(float) * nk);
                            lse_t[r] = 0.0f;
                        } else {
                            lse_t[r] = softmax_row(p + (int64_t)r * nk, n, nk);
                        }
                    }
                    cpu_sgemm(false, false, rows, hd, nk, 1.0f, p, nk, v + kv_off, kv_row,
                              0.0f, out + q_off, q_row);
                }
            }
        }
        free(p);
    }
}

/* With p_ij = exp(s_ij - lse_i), D_i = dout_i . out_i, per tile of query rows:
 *   dP = dout V^T,  dS = P * (dP - D) (row-wise D),
 *   dq = scale dS K,  dK += scale dS^T q,  dV += P^T dout.
 * Threads own one (sequence, kv head) each, so the dk/dv rows that a query
 * group shares are written by one thread only. */
void cpu_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                  const float *lse, const float *q, const float *k, const float *v,
                  const int32_t *klen, const attn_shape_t *s)
{
    int Hq = s->n_heads, Hkv = s->n_kv_heads, hd = s->head_dim, group = Hq / Hkv;
    int q_row = Hq * hd, kv_row = Hkv * hd;
    int n_qt = (s->Tq + QB - 1) / QB;
    #pragma omp parallel
    {
        float *p = tile_alloc(s, 2);        /* [QB, nk] probabilities */
        float *ds = p + (size_t)QB * s->kv_cap;   /* [QB, nk] score gradients */
        #pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < s->B; b++) {
            for (int kh = 0; kh < Hkv; kh++) {
                int64_t kv_off = (int64_t)b * s->kv_cap * kv_row + kh * hd;
                for (int h = kh * group; h < (kh + 1) * group; h++) {
                    for (int qt = 0; qt < n_qt; qt++) {
                        int i0 = qt * QB, rows = s->Tq - i0 < QB ? s->Tq - i0 : QB;
                        int64_t q_off = ((int64_t)b * s->Tq + i0) * q_row + h * hd;
                        const float *lse_t = lse + ((int64_t)b * Hq + h) * s->Tq + i0;
                        int nk = keys_seen(s, klen, b, i0 + rows - 1);
                        if (nk == 0) {
                            for (int r = 0; r < rows; r++)
                                memset(dq + q_off + (int64_t)r * q_row, 0, sizeof(float) * hd);
                            continue;
                        }
                        cpu_sgemm(false, true, rows, nk, hd, s->scale, q + q_off, q_row,
                                  k + kv_off, kv_row, 0.0f, p, nk);
                        cpu_sgemm(false, true, rows, nk, hd, 1.0f, dout + q_off, q_row,
                                  v + kv_off, kv_row, 0.0f, ds, nk);
                        for (int r = 0; r < rows; r++) {
                            int n = keys_seen(s, klen, b, i0 + r);
                            int64_t ro = (int64_t)r * q_row;
                            float *pr = p + (int64_t)r * nk, *dr = ds + (int64_t)r * nk;
                            float l = lse_t[r], sc = s->scale;
                            float D = dot(dout + q_off + ro, out + q_off + ro, hd);
                            #pragma omp simd
                            for (int j = 0; j < n; j++) {
                                pr[j] = cpu_expf(pr[j] - l);
                                dr[j] = sc * pr[j] * (dr[j] - D);
                            }
                            memset(pr + n, 0, sizeof(float) * (nk - n));
                            memset(dr + n, 0, sizeof(float) * (nk - n));
                        }
                        cpu_sgemm(false, false, rows, hd, nk, 1.0f, ds, nk, k + kv_off, kv_row,
                                  0.0f, dq + q_off, q_row);
                        cpu_sgemm(true, false, nk, hd, rows, 1.0f, ds, nk, q + q_off, q_row,
                                  1.0f, dk + kv_off, kv_row);
                        cpu_sgemm(true, false, nk, hd, rows, 1.0f, p, nk, dout + q_off, q_row,
                                  1.0f, dv + kv_off, kv_row);
                    }
                }
            }
        }
        free(p);
    }
}
