/* CUDA kernels for every op but GEMM and attention: residual add and scale,
 * embedding (deterministic backward), RMSNorm, RoPE (half rotation), SwiGLU,
 * and log-softmax + gather over a large vocabulary. All fp32; the formulas and
 * their order follow the CPU reference (backend/cpu). */
#include <math.h>

#include "cuda/cuda_internal.cuh"

// ----------------------------------------------------------------------------
// reductions

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every
 * thread gets the result. red[32] is shared scratch, free again on return. */
__device__ float block_sum(float v, float *red)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nw ? red[lane] : 0.0f;
        v = warp_sum(v);
        if (lane == 0)
            red[0] = v;
    }
    __syncthreads();
    float r = red[0];
    __syncthreads();
    return r;
}

/* A running (max, sum of exp(x - max)) pair: log-sum-exp in one pass. An
 * empty pair is (-inf, 0); -inf inputs add nothing. */
struct lse_pair {
    float m, s;
};

__device__ __forceinline__ void lse_push(lse_pair &p, float x)
{
    if (x > p.m) {
        p.s = p.s * expf(p.m - x) + 1.0f;
        p.m = x;
    } else if (x != -INFINITY) {
        p.s += expf(x - p.m);
    }
}

__device__ __forceinline__ lse_pair lse_merge(lse_pair a, lse_pair b)
{
    float m = fmaxf(a.m, b.m);
    lse_pair r;
    r.m = m;
    r.s = (a.s == 0.0f ? 0.0f : a.s * expf(a.m - m)) + (b.s == 0.0f ? 0.0f : b.s * expf(b.m - m));
    return r;
}

__device__ lse_pair block_lse(lse_pair p, float *red_m, float *red_s)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        lse_pair q = {__shfl_xor_sync(0xffffffffu, p.m, o), __shfl_xor_sync(0xffffffffu, p.s, o)};
        p = lse_merge(p, q);
    }
    if (lane == 0)
        red_m[warp] = p.m, red_s[warp] = p.s;
    __syncthreads();
    if (warp == 0) {
        lse_pair q = {-INFINITY, 0.0f};
        if (lane < nw)
            q.m = red_m[lane], q.s = red_s[lane];
        for (int o = 16; o > 0; o >>= 1) {
            lse_pair t = {__shfl_xor_sync(0xffffffffu, q.m, o),
                          __shfl_xor_sync(0xffffffffu, q.s, o)};
            q = lse_merge(q, t);
        }
        if (lane == 0)
            red_m[0] = q.m, red_s[0] = q.s;
    }
    __syncthreads();
    lse_pair r = {red_m[0], red_s[0]};
    __syncthreads();
    return r;
}

// ----------------------------------------------------------------------------
// element-wise: a float4 body where every pointer is 16-byte aligned, then a
// scalar tail (and the whole range when not aligned)

#define GRID_STRIDE(i, start, n)                                                       \
    for (int64_t i = (start) + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)gridDim.x * blockDim.x)

__global__ void add_kernel(float *y, const float *x, int64_t n, bool vec)
{
    int64_t done = 0;
    if (vec) {
        float4 *y4 = (float4 *)y;
        const float4 *x4 = (const float4 *)x;
        GRID_STRIDE(i, 0, n / 4) {
            float4 a = y4[i], b = x4[i];
            a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
            y4[i] = a;
        }
        done = n / 4 * 4;
    }
    GRID_STRIDE(i, done, n)
        y[i] += x[i];
}

__global__ void scale_kernel(float *x, float a, int64_t n, bool vec)
{
    int64_t done = 0;
    if (vec) {
        float4 *x4 = (float4 *)x;
        GRID_STRIDE(i, 0, n / 4) {
            float4 v = x4[i];
            v.x *= a, v.y *= a, v.z *= a, v.w *= a;
            x4[i] = v;
        }
        done = n / 4 * 4;
    }
    GRID_STRIDE(i, done, n)
        x[i] *= a;
}

void cuda_add(float *y, const float *x, int64_t n)
{
    if (n <= 0)
        return;
    bool vec = cuda_aligned16(y) && cuda_aligned16(x);
    add_kernel<<<cuda_blocks_for(vec ? n / 4 + 1 : n, 256), 256, 0, cuda_stream>>>(y, x, n, vec);
    CUDA_LAUNCHED("add");
}

void cuda_scale(float *x, float a, int64_t n)
{
    if (n <= 0)
        return;
    bool vec = cuda_aligned16(x);
    scale_kernel<<<cuda_blocks_for(vec ? n / 4 + 1 : n, 256), 256, 0, cuda_stream>>>(x, a, n,
                                                                                     vec);
    CUDA_LAUNCHED("scale");
}

/* C[b, i, j] (row stride ldc, batch stride stride) *= beta; beta == 0 writes
 * zeros whatever C held, as BLAS does. */
__global__ void scale_strided_kernel(float *C, int rows, int cols, int ldc, int64_t stride,
                                     int batch, float beta)
{
    int64_t n = (int64_t)batch * rows * cols;
    GRID_STRIDE(i, 0, n) {
        int j = (int)(i % cols);
        int64_t r = i / cols;
        int b = (int)(r / rows), row = (int)(r % rows);
        float *c = C + b * stride + (int64_t)row * ldc + j;
        *c = beta == 0.0f ? 0.0f : beta * *c;
    }
}

void cuda_scale_strided(float *C, int rows, int cols, int ldc, int64_t stride, int batch,
                        float beta)
{
    int64_t n = (int64_t)batch * rows * cols;
    if (n <= 0 || beta == 1.0f)
        return;
    scale_strided_kernel<<<cuda_blocks_for(n, 256), 256, 0, cuda_stream>>>(C, rows, cols, ldc,
                                                                           stride, batch, beta);
    CUDA_LAUNCHED("scale_strided");
}

// ----------------------------------------------------------------------------
// embedding

/* One block per token row: out[n, :] = table[ids[n], :]. */
__global__ void embed_fwd_kernel(float *out, const int32_t *ids, const float *table, int d,
                                 bool vec)
{
    int n = blockIdx.x;
    const float *src = table + (int64_t)ids[n] * d;
    float *dst = out + (int64_t)n * d;
    if (vec) {
        for (int c = threadIdx.x; c < d / 4; c += blockDim.x)
            ((float4 *)dst)[c] = ((const float4 *)src)[c];
    } else {
        for (int c = threadIdx.x; c < d; c += blockDim.x)
            dst[c] = src[c];
    }
}

void cuda_embed_fwd(float *out, const int32_t *ids, const float *table, int N, int d)
{
    if (N <= 0 || d <= 0)
        return;
    bool vec = d % 4 == 0 && cuda_aligned16(out) && cuda_aligned16(table);
    embed_fwd_kernel<<<N, 128, 0, cuda_stream>>>(out, ids, table, d, vec);
    CUDA_LAUNCHED("embed_fwd");
}

#define EMBED_BWD_THREADS 256

/* Deterministic scatter without atomics or sorting: the block of the first
 * token carrying id v owns row v and adds the gradients of every token with
 * that id in token order, exactly the order (and so the rounding) of the CPU
 * loop. Other blocks exit after finding an earlier token with their id. The
 * cost is O(N^2) id comparisons, which at N = B*T of a few thousand is small
 * beside the model's GEMMs. */
__global__ void __launch_bounds__(EMBED_BWD_THREADS)
embed_bwd_kernel(float *dtable, const int32_t *ids, const float *dout, int N, int d)
{
    __shared__ int match[EMBED_BWD_THREADS];         /* token indices, in order */
    __shared__ int warp_hits[EMBED_BWD_THREADS / 32];
    int n = blockIdx.x, v = ids[n];
    int earlier = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        earlier |= ids[i] == v;
    if (__syncthreads_or(earlier))
        return;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *row = dtable + (int64_t)v * d;
    for (int base = n; base < N; base += EMBED_BWD_THREADS) {
        int i = base + threadIdx.x;
        bool hit = i < N && ids[i] == v;
        unsigned ballot = __ballot_sync(0xffffffffu, hit);
        if (lane == 0)
            warp_hits[warp] = __popc(ballot);
        __syncthreads();
        int before = 0, total = 0;
        for (int w = 0; w < EMBED_BWD_THREADS / 32; w++) {
            before += w < warp ? warp_hits[w] : 0;
            total += warp_hits[w];
        }
        if (hit)
            match[before + __popc(ballot & ((1u << lane) - 1u))] = i;
        __syncthreads();
        for (int c = threadIdx.x; c < d; c += blockDim.x) {
            float acc = row[c];
            for (int m = 0; m < total; m++)
                acc += dout[(int64_t)match[m] * d + c];
            row[c] = acc;
        }
        __syncthreads();   /* match[] and warp_hits[] are refilled next round */
    }
}

void cuda_embed_bwd(float *dtable, const int32_t *ids, const float *dout, int N, int d)
{
    if (N <= 0 || d <= 0)
        return;
    embed_bwd_kernel<<<N, EMBED_BWD_THREADS, 0, cuda_stream>>>(dtable, ids, dout, N, d);
    CUDA_LAUNCHED("embed_bwd");
}

// ----------------------------------------------------------------------------
// RMSNorm: y = w * x * r, r = 1 / sqrt(mean(x^2) + eps); one block per row

#define NORM_THREADS 256

__global__ void __launch_bounds__(NORM_THREADS)
rmsnorm_fwd_kernel(float *out, float *rstd, const float *x, const float *w, int d, float eps)
{
    __shared__ float red[32];
    int64_t n = blockIdx.x;
    const float *xr = x + n * d;
    float *yr = out + n * d;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        ss += xr[i] * xr[i];
    ss = block_sum(ss, red);
    float r = 1.0f / sqrtf(ss / (float)d + eps);
    if (threadIdx.x == 0)
        rstd[n] = r;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        yr[i] = w[i] * (xr[i] * r);
}

/* dx[n, :] += r * w * dy - x * r^3 / d * sum(w * dy * x) */
__global__ void __launch_bounds__(NORM_THREADS)
rmsnorm_bwd_dx_kernel(float *dx, const float *dout, const float *x, const float *w,
                      const float *rstd, int d)
{
    __shared__ float red[32];
    int64_t n = blockIdx.x;
    const float *xr = x + n * d, *gr = dout + n * d;
    float *dxr = dx + n * d;
    float r = rstd[n];
    float dot = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        dot += w[i] * gr[i] * xr[i];
    dot = block_sum(dot, red);
    float c = dot * r * r * r / (float)d;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        dxr[i] += r * w[i] * gr[i] - c * xr[i];
}

/* dw reduces over tokens in two deterministic stages: partial[chunk, i] sums
 * NORM_DW_ROWS rows (a 32-column x 8-row block, coalesced along columns), then
 * one thread per column adds the chunks in order. */
#define NORM_DW_ROWS 256

__global__ void rmsnorm_dw_partial_kernel(float *partial, const float *dout, const float *x,
                                          const float *rstd, int N, int d)
{
    __shared__ float acc[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * NORM_DW_ROWS, r1 = min(N, r0 + NORM_DW_ROWS);
    float s = 0.0f;
    if (col < d)
        for (int r = r0 + threadIdx.y; r < r1; r += 8)
            s += dout[(int64_t)r * d + col] * x[(int64_t)r * d + col] * rstd[r];
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && col < d) {
        float t = 0.0f;
        for (int k = 0; k < 8; k++)
            t += acc[k][threadIdx.x];
        partial[(int64_t)blockIdx.y * d + col] = t;
    }
}

__global__ void rmsnorm_dw_finish_kernel(float *dw, const float *partial, int chunks, int d)
{
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= d)
        return;
    float t = 0.0f;
    for (int c = 0; c < chunks; c++)
        t += partial[(int64_t)c * d + col];
    dw[col] += t;
}

void cuda_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w,
                      int N, int d, float eps)
{
    if (N <= 0 || d <= 0)
        return;
    rmsnorm_fwd_kernel<<<N, NORM_THREADS, 0, cuda_stream>>>(out, rstd, x, w, d, eps);
    CUDA_LAUNCHED("rmsnorm_fwd");
}

void cuda_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x,
                      const float *w, const float *rstd, int N, int d)
{
    if (N <= 0 || d <= 0)
        return;
    rmsnorm_bwd_dx_kernel<<<N, NORM_THREADS, 0, cuda_stream>>>(dx, dout, x, w, rstd, d);
    CUDA_LAUNCHED("rmsnorm_bwd dx");
    int chunks = (N + NORM_DW_ROWS - 1) / NORM_DW_ROWS;
    float *partial = (float *)cuda_scratch_alloc(sizeof(float) * chunks * (size_t)d);
    if (!partial)                                    /* [chunks, d] */
        return;
    dim3 grid((d + 31) / 32, chunks), block(32, 8);
    rmsnorm_dw_partial_kernel<<<grid, block, 0, cuda_stream>>>(partial, dout, x, rstd, N, d);
    CUDA_LAUNCHED("rmsnorm_bwd dw partial");
    rmsnorm_dw_finish_kernel<<<(d + 255) / 256, 256, 0, cuda_stream>>>(dw, partial, chunks, d);
    CUDA_LAUNCHED("rmsnorm_bwd dw finish");
    cuda_scratch_free(partial);
}

// ----------------------------------------------------------------------------
// RoPE, half rotation: pair (x[i], x[i + hd/2]) of each head turns by
// (pos0 + t) * inv_freq[i]; sign -1 turns back (the transpose, for backward)

__global__ void rope_kernel(float *x, const float *inv_freq, int B, int T, int row_stride_b,
                            int H, int hd, int pos0, float sign)
{
    int half = hd / 2;
    int64_t n = (int64_t)B * T * H * half;
    GRID_STRIDE(idx, 0, n) {
        int i = (int)(idx % half);
        int64_t rest = idx / half;
        int h = (int)(rest % H);
        rest /= H;
        int t = (int)(rest % T), b = (int)(rest / T);
        float *x1 = x + (((int64_t)b * row_stride_b + t) * H + h) * hd + i, *x2 = x1 + half;
        float ang = (float)(pos0 + t) * inv_freq[i];   /* a float product, as on the CPU */
        float cs = cosf(ang), sn = sign * sinf(ang);
        float a = *x1, c = *x2;
        *x1 = a * cs - c * sn;
        *x2 = c * cs + a * sn;
    }
}

static void rope_launch(float *x, const float *inv_freq, int B, int T, int row_stride_b, int H,
                        int hd, int pos0, float sign)
{
    int64_t n = (int64_t)B * T * H * (hd / 2);
    if (n <= 0)
        return;
    rope_kernel<<<cuda_blocks_for(n, 256), 256, 0, cuda_stream>>>(x, inv_freq, B, T,
                                                                  row_stride_b, H, hd, pos0,
                                                                  sign);
    CUDA_LAUNCHED("rope");
}

void cuda_rope_fwd(float *x, const float *inv_freq, int B, int T, int row_stride_b,
                   int H, int hd, int pos0)
{
    rope_launch(x, inv_freq, B, T, row_stride_b, H, hd, pos0, 1.0f);
}

void cuda_rope_bwd(float *dx, const float *inv_freq, int B, int T, int row_stride_b,
                   int H, int hd, int pos0)
{
    rope_launch(dx, inv_freq, B, T, row_stride_b, H, hd, pos0, -1.0f);
}

// ----------------------------------------------------------------------------
// SwiGLU: out = silu(g) * u, silu(g) = g * sigmoid(g)

__device__ __forceinline__ float swiglu1(float g, float u) { return g / (1.0f + expf(-g)) * u; }

/* d/dg = dy * u * s * (1 + g * (1 - s)), d/du = dy * silu(g), s = sigmoid(g) */
__device__ __forceinline__ void swiglu1_bwd(float dy, float g, float u, float &dg, float &du)
{
    float s = 1.0f / (1.0f + expf(-g));
    du = dy * (g * s);
    dg = dy * u * s * (1.0f + g * (1.0f - s));
}

__global__ void swiglu_fwd_kernel(float *out, const float *gate, const float *up, int64_t n,
                                  bool vec)
{
    int64_t done = 0;
    if (vec) {
        GRID_STRIDE(i, 0, n / 4) {
            float4 g = ((const float4 *)gate)[i], u = ((const float4 *)up)[i], y;
            y.x = swiglu1(g.x, u.x), y.y = swiglu1(g.y, u.y);
            y.z = swiglu1(g.z, u.z), y.w = swiglu1(g.w, u.w);
            ((float4 *)out)[i] = y;
        }
        done = n / 4 * 4;
    }
    GRID_STRIDE(i, done, n)
        out[i] = swiglu1(gate[i], up[i]);
}

__global__ void swiglu_bwd_kernel(float *dgate, float *dup, const float *dout, const float *gate,
                                  const float *up, int64_t n, bool vec)
{
    int64_t done = 0;
    if (vec) {
        GRID_STRIDE(i, 0, n / 4) {
            float4 dy = ((const float4 *)dout)[i], g = ((const float4 *)gate)[i];
            float4 u = ((const float4 *)up)[i], dg, du;
            swiglu1_bwd(dy.x, g.x, u.x, dg.x, du.x);
            swiglu1_bwd(dy.y, g.y, u.y, dg.y, du.y);
            swiglu1_bwd(dy.z, g.z, u.z, dg.z, du.z);
            swiglu1_bwd(dy.w, g.w, u.w, dg.w, du.w);
            ((float4 *)dgate)[i] = dg;
            ((float4 *)dup)[i] = du;
        }
        done = n / 4 * 4;
    }
    GRID_STRIDE(i, done, n)
        swiglu1_bwd(dout[i], gate[i], up[i], dgate[i], dup[i]);
}

void cuda_swiglu_fwd(float *out, const float *gate, const float *up, int64_t n)
{
    if (n <= 0)
        return;
    bool vec = cuda_aligned16(out) && cuda_aligned16(gate) && cuda_aligned16(up);
    swiglu_fwd_kernel<<<cuda_blocks_for(vec ? n / 4 + 1 : n, 256), 256, 0, cuda_stream>>>(
        out, gate, up, n, vec);
    CUDA_LAUNCHED("swiglu_fwd");
}

void cuda_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, int64_t n)
{
    if (n <= 0)
        return;
    bool vec = cuda_aligned16(dgate) && cuda_aligned16(dup) && cuda_aligned16(dout)
            && cuda_aligned16(gate) && cuda_aligned16(up);
    swiglu_bwd_kernel<<<cuda_blocks_for(vec ? n / 4 + 1 : n, 256), 256, 0, cuda_stream>>>(
        dgate, dup, dout, gate, up, n, vec);
    CUDA_LAUNCHED("swiglu_bwd");
}

// ----------------------------------------------------------------------------
// log-softmax + gather: one block per row of V logits, one pass for the
// log-sum-exp (running max and sum), float4 loads when rows are aligned

#define LSM_THREADS 512

__device__ float row_logsumexp(const float *z, int V, bool vec, float *red_m, float *red_s)
{
    lse_pair p = {-INFINITY, 0.0f};
    int done = 0;
    if (vec) {
        for (int i = threadIdx.x; i < V / 4; i += blockDim.x) {
            float4 q = ((const float4 *)z)[i];
            lse_push(p, q.x), lse_push(p, q.y), lse_push(p, q.z), lse_push(p, q.w);
        }
        done = V / 4 * 4;
    }
    for (int i = done + threadIdx.x; i < V; i += blockDim.x)
        lse_push(p, z[i]);
    p = block_lse(p, red_m, red_s);
    return p.m + logf(p.s);
}

__global__ void __launch_bounds__(LSM_THREADS)
logsoftmax_gather_fwd_kernel(float *logp, const float *logits, const int32_t *tgt, int V,
                             bool vec)
{
    __shared__ float red_m[32], red_s[32];
    int64_t n = blockIdx.x;
    int t = tgt[n];
    if (t < 0) {   /* uniform across the block, so the early exit is safe */
        if (threadIdx.x == 0)
            logp[n] = 0.0f;
        return;
    }
    const float *z = logits + n * V;
    float l = row_logsumexp(z, V, vec, red_m, red_s);
    if (threadIdx.x == 0)
        logp[n] = z[t] - l;
}

/* dz[v] -= g * softmax(z)[v]; then dz[t] += g. dlogits may be logits itself:
 * each element is read before it is written, by the same thread. */
__global__ void __launch_bounds__(LSM_THREADS)
logsoftmax_gather_bwd_kernel(float *dlogits, const float *logits, const int32_t *tgt,
                             const float *g, int V, bool vec)
{
    __shared__ float red_m[32], red_s[32];
    int64_t n = blockIdx.x;
    int t = tgt[n];
    float gn = g[n];
    if (t < 0 || gn == 0.0f)
        return;
    const float *z = logits + n * V;
    float *dz = dlogits + n * V;
    float l = row_logsumexp(z, V, vec, red_m, red_s);
    int done = 0;
    if (vec) {
        for (int i = threadIdx.x; i < V / 4; i += blockDim.x) {
            float4 q = ((const float4 *)z)[i], d = ((float4 *)dz)[i];
            d.x -= gn * expf(q.x - l), d.y -= gn * expf(q.y - l);
            d.z -= gn * expf(q.z - l), d.w -= gn * expf(q.w - l);
            ((float4 *)dz)[i] = d;
        }
        done = V / 4 * 4;
    }
    for (int i = done + threadIdx.x; i < V; i += blockDim.x)
        dz[i] -= gn * expf(z[i] - l);
    __syncthreads();   /* the target's element was written by some thread above */
    if (threadIdx.x == 0)
        dz[t] += gn;
}

void cuda_logsoftmax_gather_fwd(float *logp, const float *logits, const int32_t *tgt,
                                int N, int V)
{
    if (N <= 0)
        return;
    bool vec = V % 4 == 0 && cuda_aligned16(logits);
    logsoftmax_gather_fwd_kernel<<<N, LSM_THREADS, 0, cuda_stream>>>(logp, logits, tgt, V, vec);
    CUDA_LAUNCHED("logsoftmax_gather_fwd");
}

void cuda_logsoftmax_gather_bwd(float *dlogits, const float *logits, const int32_t *tgt,
                                const float *g, int N, int V)
{
    if (N <= 0)
        return;
    bool vec = V % 4 == 0 && cuda_aligned16(logits) && cuda_aligned16(dlogits);
    logsoftmax_gather_bwd_kernel<<<N, LSM_THREADS, 0, cuda_stream>>>(dlogits, logits, tgt, g,
                                                                      V, vec);
    CUDA_LAUNCHED("logsoftmax_gather_bwd");
}
