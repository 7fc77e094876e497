/* CPU causal self-attention with grouped-query heads (GQA) and right padding,
 * forward and backward. Scores and softmax are fp32 with max subtraction; the
 * backward recomputes probabilities from the saved log-sum-exp instead of
 * keeping the [B, Hq, T, T] probability tensor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"

static inline float dot(const float *a, const float *b, int n)
{
    float s = 0.0f;
    #pragma omp simd reduction(+:s)
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static inline void axpy(float *y, float a, const float *x, int n)
{
    #pragma omp simd
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
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

void cpu_attn_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                  const int32_t *klen, const attn_shape_t *s)
{
    int Hq = s->n_heads, Hkv = s->n_kv_heads, hd = s->head_dim, group = Hq / Hkv;
    int64_t q_row = (int64_t)Hq * hd, kv_row = (int64_t)Hkv * hd;
    #pragma omp parallel
    {
        float *p = malloc(sizeof(float) * (s->kv_cap > 0 ? s->kv_cap : 1));
        #pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < s->B; b++) {
            for (int h = 0; h < Hq; h++) {
                int kh = h / group;
                const float *kb = k + (int64_t)b * s->kv_cap * kv_row + kh * hd;
                const float *vb = v + (int64_t)b * s->kv_cap * kv_row + kh * hd;
                for (int i = 0; i < s->Tq; i++) {
                    const float *qi = q + ((int64_t)b * s->Tq + i) * q_row + h * hd;
                    float *oi = out + ((int64_t)b * s->Tq + i) * q_row + h * hd;
                    float *lse_i = lse + ((int64_t)b * Hq + h) * s->Tq + i;
                    int nk = keys_seen(s, klen, b, i);
                    memset(oi, 0, sizeof(float) * hd);
                    if (nk == 0) {   /* fully masked: defined as output 0 */
                        *lse_i = 0.0f;
                        continue;
                    }
                    float mx = -INFINITY;
                    for (int j = 0; j < nk; j++) {
                        p[j] = s->scale * dot(qi, kb + j * kv_row, hd);
                        mx = p[j] > mx ? p[j] : mx;
                    }
                    float sum = 0.0f;
                    for (int j = 0; j < nk; j++) {
                        p[j] = expf(p[j] - mx);
                        sum += p[j];
                    }
                    float inv = 1.0f / sum;
                    for (int j = 0; j < nk; j++)
                        axpy(oi, p[j] * inv, vb + j * kv_row, hd);
                    *lse_i = mx + logf(sum);
                }
            }
        }
        free(p);
    }
}

/* With p_ij = exp(s_ij - lse_i), D_i = dout_i . out_i:
 *   dv_j += p_ij dout_i,  ds_ij = p_ij (dout_i . v_j - D_i),
 *   dq_i = scale sum_j ds_ij k_j,  dk_j += scale ds_ij q_i.
 * Threads own one (sequence, kv head) each, so the dk/dv rows that a query
 * group shares are written by one thread only. */
void cpu_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                  const float *lse, const float *q, const float *k, const float *v,
                  const int32_t *klen, const attn_shape_t *s)
{
    int Hq = s->n_heads, Hkv = s->n_kv_heads, hd = s->head_dim, group = Hq / Hkv;
    int64_t q_row = (int64_t)Hq * hd, kv_row = (int64_t)Hkv * hd;
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < s->B; b++) {
        for (int kh = 0; kh < Hkv; kh++) {
            int64_t kv_off = (int64_t)b * s->kv_cap * kv_row + kh * hd;
            const float *kb = k + kv_off, *vb = v + kv_off;
            float *dkb = dk + kv_off, *dvb = dv + kv_off;
            for (int h = kh * group; h < (kh + 1) * group; h++) {
                for (int i = 0; i < s->Tq; i++) {
                    int64_t qo = ((int64_t)b * s->Tq + i) * q_row + h * hd;
                    const float *qi = q + qo, *gi = dout + qo, *oi = out + qo;
                    float *dqi = dq + qo;
                    float l = lse[((int64_t)b * Hq + h) * s->Tq + i];
                    int nk = keys_seen(s, klen, b, i);
                    memset(dqi, 0, sizeof(float) * hd);
                    float D = dot(gi, oi, hd);
                    for (int j = 0; j < nk; j++) {
                        float pij = expf(s->scale * dot(qi, kb + j * kv_row, hd) - l);
                        float ds = pij * (dot(gi, vb + j * kv_row, hd) - D);
                        axpy(dvb + j * kv_row, pij, gi, hd);
                        axpy(dqi, s->scale * ds, kb + j * kv_row, hd);
                        axpy(dkb + j * kv_row, s->scale * ds, qi, hd);
                    }
                }
            }
        }
    }
}
