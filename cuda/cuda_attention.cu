/* CUDA causal attention with GQA and right padding, forward and backward, in
 * fp32 on the CUDA cores, tiled in shared memory as FlashAttention-2 does:
 * the forward streams key tiles past a query tile with an online softmax and
 * saves the log-sum-exp; the backward recomputes probabilities from it, one
 * kernel owning key tiles (dK, dV) and one owning query tiles (dQ), so that
 * no two blocks ever write the same row and no atomics are needed. */
#include <math.h>
#include <stdio.h>

#include "cuda/cuda_internal.cuh"

/* Tiles: BR query rows x BC keys; 256 threads seen as 16 x 16 (ty, tx). A
 * thread owns rows ty + 16i (i < 4) and columns tx + 16j (j < 4) of a score
 * tile, and head-dim columns tx + 16c (c < HD/16) of an output tile: the
 * strided ownership makes consecutive lanes touch consecutive shared-memory
 * words. Row-major tiles are padded to HD + 4 floats (16-byte rows, and two
 * rows read by one warp fall in different banks); transposed tiles [HD][65]
 * are padded by one word so that both their rows and columns read without
 * bank conflicts. */
#define BR 64
#define BC 64
#define ATT_THREADS 256
#define TLD (BC + 1)   /* row length of transposed and score tiles */

__device__ __forceinline__ int keys_seen(const attn_shape_t &s, int klen_b, int row)
{
    int n = min(min(s.q_offset + row + 1, klen_b), s.kv_cap);
    return n > 0 ? n : 0;
}

/* Loads rows [0, valid) of a 64 x HD tile (global row stride gstride floats),
 * zeros for rows >= valid, into dst row-major (dst[r * ld + c], ld % 4 == 0)
 * or transposed (dst[c * ld + r]). */
template <int HD, bool TRANSPOSE>
__device__ __forceinline__ void tile_load(float *dst, int ld, const float *src, int64_t gstride,
                                          int valid, bool vec)
{
    constexpr int C4 = HD / 4;
    for (int idx = threadIdx.x; idx < 64 * C4; idx += ATT_THREADS) {
        int r = idx / C4, c = idx % C4 * 4;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (r < valid) {
            const float *p = src + r * gstride + c;
            v = vec ? *(const float4 *)p : make_float4(p[0], p[1], p[2], p[3]);
        }
        if (TRANSPOSE) {
            dst[(c + 0) * ld + r] = v.x;
            dst[(c + 1) * ld + r] = v.y;
            dst[(c + 2) * ld + r] = v.z;
            dst[(c + 3) * ld + r] = v.w;
        } else {
            *(float4 *)&dst[r * ld + c] = v;
        }
    }
}

__device__ __forceinline__ void f4_split(float4 v, float *a)
{
    a[0] = v.x, a[1] = v.y, a[2] = v.z, a[3] = v.w;
}

/* max / sum over the 16 lanes of a half-warp (the threads sharing ty) */
__device__ __forceinline__ float half_warp_max(float v)
{
    for (int o = 8; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float half_warp_sum(float v)
{
    for (int o = 8; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// ----------------------------------------------------------------------------
// forward: grid (query tiles, Hq, B)

template <int HD>
constexpr size_t fwd_smem_floats()
{
    return BR * (HD + 4) + HD * TLD + BC * HD + BR * TLD;
}

template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attn_fwd_kernel(float *out, float *lse, const float *q, const float *k, const float *v,
                const int32_t *klen, attn_shape_t s, bool vec)
{
    constexpr int CPT = HD / 16, QLD = HD + 4;
    extern __shared__ float4 smem4[];
    float *Qs = (float *)smem4;      /* [BR][QLD]  queries, row-major */
    float *Kt = Qs + BR * QLD;       /* [HD][TLD]  keys, transposed */
    float *Vs = Kt + HD * TLD;       /* [BC][HD]   values, row-major */
    float *Ps = Vs + BC * HD;        /* [BR][TLD]  probabilities of this key tile */

    int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    int q0 = (gridDim.x - 1 - blockIdx.x) * BR;   /* longest (last) tiles start first */
    int h = blockIdx.y, b = blockIdx.z;
    int Hq = s.n_heads, kh = h / (Hq / s.n_kv_heads);
    int64_t q_row = (int64_t)Hq * HD, kv_row = (int64_t)s.n_kv_heads * HD;
    const float *qb = q + ((int64_t)b * s.Tq + q0) * q_row + h * HD;
    const float *kb = k + (int64_t)b * s.kv_cap * kv_row + kh * HD;
    const float *vb = v + (int64_t)b * s.kv_cap * kv_row + kh * HD;
    int kl = klen[b];
    int q_valid = min(BR, s.Tq - q0);
    int n_keys = keys_seen(s, kl, q0 + q_valid - 1);   /* what the tile's last row sees */

    tile_load<HD, false>(Qs, QLD, qb, q_row, q_valid, vec);

    float o[4][CPT], m[4], l[4];
    int seen[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int row = q0 + ty + 16 * i;
        seen[i] = row < s.Tq ? keys_seen(s, kl, row) : 0;
        m[i] = -INFINITY, l[i] = 0.0f;
#pragma unroll
        for (int c = 0; c < CPT; c++)
            o[i][c] = 0.0f;
    }

    for (int k0 = 0; k0 < n_keys; k0 += BC) {
        int kv_valid = min(BC, n_keys - k0);
        __syncthreads();   /* the last tile's reads are done; Qs is visible */
        tile_load<HD, true>(Kt, TLD, kb + (int64_t)k0 * kv_row, kv_row, kv_valid, vec);
        tile_load<HD, false>(Vs, HD, vb + (int64_t)k0 * kv_row, kv_row, kv_valid, vec);
        __syncthreads();

        float sc[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                sc[i][j] = 0.0f;
#pragma unroll 2
        for (int d = 0; d < HD; d += 4) {
            float qa[4][4];
#pragma unroll
            for (int i = 0; i < 4; i++)
                f4_split(*(const float4 *)&Qs[(ty + 16 * i) * QLD + d], qa[i]);
#pragma unroll
            for (int dd = 0; dd < 4; dd++) {
                float kv[4];
#pragma unroll
                for (int j = 0; j < 4; j++)
                    kv[j] = Kt[(d + dd) * TLD + tx + 16 * j];
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++)
                        sc[i][j] += qa[i][dd] * kv[j];
            }
        }

        /* online softmax: rescale what was summed so far to the new row max;
         * a row with no visible key yet keeps max -inf, sum 0, output 0 */
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float mt = -INFINITY;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int key = k0 + tx + 16 * j;
                sc[i][j] = key < seen[i] ? sc[i][j] * s.scale : -INFINITY;
                mt = fmaxf(mt, sc[i][j]);
            }
            float mn = fmaxf(m[i], half_warp_max(mt));
            float alpha = mn == -INFINITY ? 1.0f : expf(m[i] - mn);
            float ls = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float p = sc[i][j] == -INFINITY ? 0.0f : expf(sc[i][j] - mn);
                Ps[(ty + 16 * i) * TLD + tx + 16 * j] = p;
                ls += p;
            }
            l[i] = l[i] * alpha + half_warp_sum(ls);
            m[i] = mn;
#pragma unroll
            for (int c = 0; c < CPT; c++)
                o[i][c] *= alpha;
        }
        __syncthreads();

#pragma unroll 4
        for (int j = 0; j < kv_valid; j++) {
            float vv[CPT];
#pragma unroll
            for (int c = 0; c < CPT; c++)
                vv[c] = Vs[j * HD + tx + 16 * c];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float p = Ps[(ty + 16 * i) * TLD + j];
#pragma unroll
                for (int c = 0; c < CPT; c++)
                    o[i][c] += p * vv[c];
            }
        }
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        int row = q0 + ty + 16 * i;
        if (row >= s.Tq)
            continue;
        float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;   /* fully masked: output 0 */
        float *orow = out + ((int64_t)b * s.Tq + row) * q_row + h * HD;
#pragma unroll
        for (int c = 0; c < CPT; c++)
            orow[tx + 16 * c] = o[i][c] * inv;
        if (tx == 0)
            lse[((int64_t)b * Hq + h) * s.Tq + row] = l[i] > 0.0f ? m[i] + logf(l[i]) : 0.0f;
    }
}

// ----------------------------------------------------------------------------
// backward, step 1: D[b, h, i] = dout_i . out_i, one warp per query row

__global__ void attn_bwd_dot_kernel(float *D, const float *dout, const float *out,
                                    attn_shape_t s)
{
    int hd = s.head_dim, Hq = s.n_heads;
    int64_t rows = (int64_t)s.B * s.Tq * Hq;
    int lane = threadIdx.x & 31;
    int64_t warp = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    int64_t n_warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t r = warp; r < rows; r += n_warps) {
        /* r walks [B, Tq, Hq], the layout of dout and out */
        const float *g = dout + r * hd, *o = out + r * hd;
        float acc = 0.0f;
        for (int c = lane; c < hd; c += 32)
            acc += g[c] * o[c];
        for (int off = 16; off > 0; off >>= 1)
            acc += __shfl_xor_sync(0xffffffffu, acc, off);
        int h = (int)(r % Hq);
        int64_t bt = r / Hq;
        int b = (int)(bt / s.Tq), i = (int)(bt % s.Tq);
        if (lane == 0)
            D[((int64_t)b * Hq + h) * s.Tq + i] = acc;
    }
}

// ----------------------------------------------------------------------------
// backward, step 2: dK, dV for one key tile of one (sequence, kv head), over
// every query head of its group and every query tile that sees the keys.
// With p = exp(scale q.k - lse), ds = p (dout.v - D):
//   dv_j += sum_i p_ij dout_i,   dk_j += scale sum_i ds_ij q_i.
// Grid (key tiles, Hkv, B).

template <int HD>
constexpr size_t bwd_kv_smem_floats()
{
    return 2 * BC * (HD + 4) + 2 * HD * TLD + 2 * BC * TLD + 3 * BR;
}

template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attn_bwd_kv_kernel(float *dk, float *dv, const float *dout, const float *lse, const float *D,
                   const float *q, const float *k, const float *v, const int32_t *klen,
                   attn_shape_t s, bool vec)
{
    constexpr int CPT = HD / 16, KLD = HD + 4;
    extern __shared__ float4 smem4[];
    float *Ks = (float *)smem4;      /* [BC][KLD]  keys, row-major */
    float *Vs = Ks + BC * KLD;       /* [BC][KLD]  values, row-major */
    float *Qt = Vs + BC * KLD;       /* [HD][TLD]  queries, transposed */
    float *Gt = Qt + HD * TLD;       /* [HD][TLD]  dout, transposed */
    float *Pt = Gt + HD * TLD;       /* [BC][TLD]  p, key-major */
    float *St = Pt + BC * TLD;       /* [BC][TLD]  ds, key-major */
    float *lse_s = St + BC * TLD;    /* [BR] */
    float *D_s = lse_s + BR;         /* [BR] */
    int *seen_s = (int *)(D_s + BR); /* [BR] keys each query row sees (0: none / past Tq) */

    int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    int k0 = blockIdx.x * BC, kh = blockIdx.y, b = blockIdx.z;
    int Hq = s.n_heads, group = Hq / s.n_kv_heads;
    int kl = klen[b];
    int key_lim = min(kl, s.kv_cap);   /* keys at or past this are seen by no query */
    if (k0 >= key_lim)
        return;
    int kv_valid = min(BC, key_lim - k0);
    int64_t q_row = (int64_t)Hq * HD, kv_row = (int64_t)s.n_kv_heads * HD;
    int64_t kv_off = ((int64_t)b * s.kv_cap + k0) * kv_row + kh * HD;
    tile_load<HD, false>(Ks, KLD, k + kv_off, kv_row, kv_valid, vec);
    tile_load<HD, false>(Vs, KLD, v + kv_off, kv_row, kv_valid, vec);

    float dka[4][CPT], dva[4][CPT];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int c = 0; c < CPT; c++)
            dka[i][c] = 0.0f, dva[i][c] = 0.0f;

    /* query row i sees key k0 only from absolute position k0 on */
    int q_start = max(0, k0 - s.q_offset) / BR * BR;
    for (int h = kh * group; h < (kh + 1) * group; h++) {
        for (int q0 = q_start; q0 < s.Tq; q0 += BR) {
            int q_valid = min(BR, s.Tq - q0);
            int64_t q_off = ((int64_t)b * s.Tq + q0) * q_row + h * HD;
            __syncthreads();   /* the last tile's reads are done (and Ks, Vs visible) */
            tile_load<HD, true>(Qt, TLD, q + q_off, q_row, q_valid, vec);
            tile_load<HD, true>(Gt, TLD, dout + q_off, q_row, q_valid, vec);
            if (threadIdx.x < BR) {
                int r = threadIdx.x;
                bool ok = r < q_valid;
                int64_t li = ((int64_t)b * Hq + h) * s.Tq + q0 + r;
                lse_s[r] = ok ? lse[li] : 0.0f;
                D_s[r] = ok ? D[li] : 0.0f;
                seen_s[r] = ok ? keys_seen(s, kl, q0 + r) : 0;
            }
            __syncthreads();

            /* st[i][j]: key ty + 16i against query tx + 16j */
            float st[4][4], dpt[4][4];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    st[i][j] = 0.0f, dpt[i][j] = 0.0f;
#pragma unroll 2
            for (int d = 0; d < HD; d += 4) {
                float ka[4][4], va[4][4];
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    f4_split(*(const float4 *)&Ks[(ty + 16 * i) * KLD + d], ka[i]);
                    f4_split(*(const float4 *)&Vs[(ty + 16 * i) * KLD + d], va[i]);
                }
#pragma unroll
                for (int dd = 0; dd < 4; dd++) {
                    float qv[4], gv[4];
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        qv[j] = Qt[(d + dd) * TLD + tx + 16 * j];
                        gv[j] = Gt[(d + dd) * TLD + tx + 16 * j];
                    }
#pragma unroll
                    for (int i = 0; i < 4; i++)
#pragma unroll
                        for (int j = 0; j < 4; j++) {
                            st[i][j] += ka[i][dd] * qv[j];
                            dpt[i][j] += va[i][dd] * gv[j];
                        }
                }
            }
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int key = k0 + ty + 16 * i;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    int r = tx + 16 * j;
                    float p = key < seen_s[r] ? expf(st[i][j] * s.scale - lse_s[r]) : 0.0f;
                    Pt[(ty + 16 * i) * TLD + r] = p;
                    St[(ty + 16 * i) * TLD + r] = p * (dpt[i][j] - D_s[r]);
                }
            }
            __syncthreads();

#pragma unroll 4
            for (int r = 0; r < q_valid; r++) {
                float gq[CPT], qq[CPT];
#pragma unroll
                for (int c = 0; c < CPT; c++) {
                    gq[c] = Gt[(tx + 16 * c) * TLD + r];
                    qq[c] = Qt[(tx + 16 * c) * TLD + r];
                }
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    float p = Pt[(ty + 16 * i) * TLD + r], ds = St[(ty + 16 * i) * TLD + r];
#pragma unroll
                    for (int c = 0; c < CPT; c++) {
                        dva[i][c] += p * gq[c];
                        dka[i][c] += ds * qq[c];
                    }
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        int key = k0 + ty + 16 * i;
        if (key >= key_lim)
            continue;
        int64_t off = ((int64_t)b * s.kv_cap + key) * kv_row + kh * HD;
#pragma unroll
        for (int c = 0; c < CPT; c++) {
            dk[off + tx + 16 * c] += s.scale * dka[i][c];
            dv[off + tx + 16 * c] += dva[i][c];
        }
    }
}

// ----------------------------------------------------------------------------
// backward, step 3: dq_i = scale sum_j ds_ij k_j for one query tile, over
// the key tiles it sees (written, not accumulated). Grid (query tiles, Hq, B).

template <int HD>
constexpr size_t bwd_q_smem_floats()
{
    return 2 * BR * (HD + 4) + 2 * HD * TLD + BR * TLD;
}

template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attn_bwd_q_kernel(float *dq, const float *dout, const float *lse, const float *D,
                  const float *q, const float *k, const float *v, const int32_t *klen,
                  attn_shape_t s, bool vec)
{
    constexpr int CPT = HD / 16, QLD = HD + 4;
    extern __shared__ float4 smem4[];
    float *Qs = (float *)smem4;      /* [BR][QLD]  queries, row-major */
    float *Gs = Qs + BR * QLD;       /* [BR][QLD]  dout, row-major */
    float *Kt = Gs + BR * QLD;       /* [HD][TLD]  keys, transposed */
    float *Vt = Kt + HD * TLD;       /* [HD][TLD]  values, transposed */
    float *Ss = Vt + HD * TLD;       /* [BR][TLD]  ds of this key tile */

    int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    int q0 = (gridDim.x - 1 - blockIdx.x) * BR;
    int h = blockIdx.y, b = blockIdx.z;
    int Hq = s.n_heads, kh = h / (Hq / s.n_kv_heads);
    int64_t q_row = (int64_t)Hq * HD, kv_row = (int64_t)s.n_kv_heads * HD;
    int64_t q_off = ((int64_t)b * s.Tq + q0) * q_row + h * HD;
    const float *kb = k + (int64_t)b * s.kv_cap * kv_row + kh * HD;
    const float *vb = v + (int64_t)b * s.kv_cap * kv_row + kh * HD;
    int kl = klen[b];
    int q_valid = min(BR, s.Tq - q0);
    int n_keys = keys_seen(s, kl, q0 + q_valid - 1);

    tile_load<HD, false>(Qs, QLD, q + q_off, q_row, q_valid, vec);
    tile_load<HD, false>(Gs, QLD, dout + q_off, q_row, q_valid, vec);

    float dqa[4][CPT], lse_r[4], D_r[4];
    int seen[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int row = q0 + ty + 16 * i;
        bool ok = row < s.Tq;
        int64_t li = ((int64_t)b * Hq + h) * s.Tq + row;
        seen[i] = ok ? keys_seen(s, kl, row) : 0;
        lse_r[i] = ok ? lse[li] : 0.0f;
        D_r[i] = ok ? D[li] : 0.0f;
#pragma unroll
        for (int c = 0; c < CPT; c++)
            dqa[i][c] = 0.0f;
    }

    for (int k0 = 0; k0 < n_keys; k0 += BC) {
        int kv_valid = min(BC, n_keys - k0);
        __syncthreads();
        tile_load<HD, true>(Kt, TLD, kb + (int64_t)k0 * kv_row, kv_row, kv_valid, vec);
        tile_load<HD, true>(Vt, TLD, vb + (int64_t)k0 * kv_row, kv_row, kv_valid, vec);
        __syncthreads();

        float sc[4][4], dp[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                sc[i][j] = 0.0f, dp[i][j] = 0.0f;
#pragma unroll 2
        for (int d = 0; d < HD; d += 4) {
            float qa[4][4], ga[4][4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                f4_split(*(const float4 *)&Qs[(ty + 16 * i) * QLD + d], qa[i]);
                f4_split(*(const float4 *)&Gs[(ty + 16 * i) * QLD + d], ga[i]);
            }
#pragma unroll
            for (int dd = 0; dd < 4; dd++) {
                float kv[4], vv[4];
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    kv[j] = Kt[(d + dd) * TLD + tx + 16 * j];
                    vv[j] = Vt[(d + dd) * TLD + tx + 16 * j];
                }
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        sc[i][j] += qa[i][dd] * kv[j];
                        dp[i][j] += ga[i][dd] * vv[j];
                    }
            }
        }
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int key = k0 + tx + 16 * j;
                float p = key < seen[i] ? expf(sc[i][j] * s.scale - lse_r[i]) : 0.0f;
                Ss[(ty + 16 * i) * TLD + tx + 16 * j] = p * (dp[i][j] - D_r[i]);
            }
        __syncthreads();

#pragma unroll 4
        for (int j = 0; j < kv_valid; j++) {
            float kc[CPT];
#pragma unroll
            for (int c = 0; c < CPT; c++)
                kc[c] = Kt[(tx + 16 * c) * TLD + j];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float ds = Ss[(ty + 16 * i) * TLD + j];
#pragma unroll
                for (int c = 0; c < CPT; c++)
                    dqa[i][c] += ds * kc[c];
            }
        }
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        int row = q0 + ty + 16 * i;
        if (row >= s.Tq)
            continue;
        float *dqr = dq + ((int64_t)b * s.Tq + row) * q_row + h * HD;
#pragma unroll
        for (int c = 0; c < CPT; c++)
            dqr[tx + 16 * c] = s.scale * dqa[i][c];
    }
}

// ----------------------------------------------------------------------------
// launches: one instantiation per supported head size

#define ATT_FOR_EACH_HD(X) X(16) X(32) X(64) X(128)

static bool hd_supported(int hd) { return hd == 16 || hd == 32 || hd == 64 || hd == 128; }

static bool shape_ok(const attn_shape_t *s, const char *op)
{
    if (!hd_supported(s->head_dim) || s->n_kv_heads <= 0 || s->n_heads % s->n_kv_heads) {
        char what[160];
        snprintf(what, sizeof(what), "%s: head_dim %d with %d/%d heads", op, s->head_dim,
                 s->n_heads, s->n_kv_heads);
        cuda_record_error(__FILE__, __LINE__, what,
                          "unsupported (head_dim must be 16, 32, 64 or 128 and the query "
                          "heads a multiple of the kv heads)");
        return false;
    }
    return true;
}

cudaError_t cuda_attn_setup(void)
{
    cudaError_t e = cudaSuccess, r;
#define SETUP(HD)                                                                        \
    r = cudaFuncSetAttribute(attn_fwd_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, \
                             (int)(sizeof(float) * fwd_smem_floats<HD>()));               \
    e = e == cudaSuccess ? r : e;                                                         \
    r = cudaFuncSetAttribute(attn_bwd_kv_kernel<HD>,                                      \
                             cudaFuncAttributeMaxDynamicSharedMemorySize,                 \
                             (int)(sizeof(float) * bwd_kv_smem_floats<HD>()));            \
    e = e == cudaSuccess ? r : e;                                                         \
    r = cudaFuncSetAttribute(attn_bwd_q_kernel<HD>,                                       \
                             cudaFuncAttributeMaxDynamicSharedMemorySize,                 \
                             (int)(sizeof(float) * bwd_q_smem_floats<HD>()));             \
    e = e == cudaSuccess ? r : e;
    ATT_FOR_EACH_HD(SETUP)
#undef SETUP
    return e;
}

void cuda_attn_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                   const int32_t *klen, const attn_shape_t *s)
{
    if (s->B <= 0 || s->Tq <= 0 || s->n_heads <= 0 || !shape_ok(s, "attn_fwd"))
        return;
    bool vec = cuda_aligned16(q) && cuda_aligned16(k) && cuda_aligned16(v);
    dim3 grid((s->Tq + BR - 1) / BR, s->n_heads, s->B);
    switch (s->head_dim) {
#define LAUNCH(HD)                                                                       \
    case HD:                                                                             \
        attn_fwd_kernel<HD><<<grid, ATT_THREADS, sizeof(float) * fwd_smem_floats<HD>(),    \
                              cuda_stream>>>(out, lse, q, k, v, klen, *s, vec);           \
        break;
        ATT_FOR_EACH_HD(LAUNCH)
#undef LAUNCH
    }
    CUDA_LAUNCHED("attn_fwd");
}

void cuda_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                   const float *lse, const float *q, const float *k, const float *v,
                   const int32_t *klen, const attn_shape_t *s)
{
    if (s->B <= 0 || s->Tq <= 0 || s->n_heads <= 0 || !shape_ok(s, "attn_bwd"))
        return;
    int64_t rows = (int64_t)s->B * s->Tq * s->n_heads;
    float *D = (float *)cuda_scratch_alloc(sizeof(float) * rows);   /* [B, Hq, Tq] */
    if (!D)
        return;
    attn_bwd_dot_kernel<<<cuda_blocks_for(rows * 32, 256), 256, 0, cuda_stream>>>(D, dout, out,
                                                                                  *s);
    CUDA_LAUNCHED("attn_bwd dot");
    bool vec = cuda_aligned16(q) && cuda_aligned16(k) && cuda_aligned16(v)
            && cuda_aligned16(dout);
    dim3 grid_kv((s->kv_cap + BC - 1) / BC, s->n_kv_heads, s->B);
    dim3 grid_q((s->Tq + BR - 1) / BR, s->n_heads, s->B);
    switch (s->head_dim) {
#define LAUNCH(HD)                                                                       \
    case HD:                                                                             \
        attn_bwd_kv_kernel<HD><<<grid_kv, ATT_THREADS,                                    \
                                 sizeof(float) * bwd_kv_smem_floats<HD>(), cuda_stream>>>( \
            dk, dv, dout, lse, D, q, k, v, klen, *s, vec);                                \
        attn_bwd_q_kernel<HD><<<grid_q, ATT_THREADS,                                      \
                                sizeof(float) * bwd_q_smem_floats<HD>(), cuda_stream>>>(   \
            dq, dout, lse, D, q, k, v, klen, *s, vec);                                    \
        break;
        ATT_FOR_EACH_HD(LAUNCH)
#undef LAUNCH
    }
    CUDA_LAUNCHED("attn_bwd");
    cuda_scratch_free(D);
}
