/* CPU RMSNorm and rotary position embedding (RoPE), forward and backward, in
 * fp32 as transformers' LlamaRMSNorm and apply_rotary_pos_emb compute them. */
#include <math.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/cpu/cpu_ops.h"

// ----------------------------------------------------------------------------
// RMSNorm: y = w * x * r, r = 1 / sqrt(mean(x^2) + eps)

void cpu_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w,
                     int N, int d, float eps)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (int64_t)n * d;
        float *yr = out + (int64_t)n * d;
        /* a double sum keeps the mean accurate for d in the thousands */
        double ss = 0.0;
        #pragma omp simd reduction(+:ss)
        for (int i = 0; i < d; i++)
            ss += (double)xr[i] * xr[i];
        float r = 1.0f / sqrtf((float)(ss / d) + eps);
        rstd[n] = r;
        for (int i = 0; i < d; i++)
            yr[i] = w[i] * (xr[i] * r);
    }
}

/* dx = r * (w * dy) - x * r^3 / d * sum(w * dy * x);   dw = sum_n dy * x * r */
void cpu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x,
                     const float *w, const float *rstd, int N, int d)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (int64_t)n * d, *gr = dout + (int64_t)n * d;
        float *dxr = dx + (int64_t)n * d;
        float r = rstd[n];
        double dot = 0.0;
        #pragma omp simd reduction(+:dot)
        for (int i = 0; i < d; i++)
            dot += (double)w[i] * gr[i] * xr[i];
        float c = (float)(dot * r * r * r / d);
        for (int i = 0; i < d; i++)
            dxr[i] += r * w[i] * gr[i] - c * xr[i];
    }
    /* dw reduces over tokens: threads split the columns so none share a sum,
     * and walk the rows in order so the reads stay sequential */
    #pragma omp parallel
    {
        int nt = 1, t = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads();
        t = omp_get_thread_num();
#endif
        int c0 = (int)((int64_t)d * t / nt), c1 = (int)((int64_t)d * (t + 1) / nt);
        double *acc = calloc(c1 > c0 ? c1 - c0 : 1, sizeof(double));   /* [c1 - c0] */
        if (!acc)
            abort();   /* d doubles; the op has no error path */
        for (int n = 0; n < N; n++) {
            const float *xr = x + (int64_t)n * d, *gr = dout + (int64_t)n * d;
            double r = rstd[n];
            #pragma omp simd
            for (int i = c0; i < c1; i++)
                acc[i - c0] += (double)gr[i] * xr[i] * r;
        }
        for (int i = c0; i < c1; i++)
            dw[i] += (float)acc[i - c0];
        free(acc);
    }
}

// ----------------------------------------------------------------------------
// RoPE, half-rotation layout: the pair (x[i], x[i + hd/2]) turns by pos * inv_freq[i]

static void rope_apply(float *x, const float *inv_freq, int B, int T, int row_stride_b,
                       int H, int hd, int pos0, float sign)
{
    int half = hd / 2;
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float cs[half], sn[half];
        for (int i = 0; i < half; i++) {
            /* the angle is a float product, as transformers forms it */
            float ang = (float)(pos0 + t) * inv_freq[i];
            cs[i] = cosf(ang);
            sn[i] = sign * sinf(ang);
        }
        for (int b = 0; b < B; b++) {
            float *row = x + ((int64_t)b * row_stride_b + t) * H * hd;
            for (int h = 0; h < H; h++) {
                float *x1 = row + h * hd, *x2 = x1 + half;
                for (int i = 0; i < half; i++) {
                    float a = x1[i], c = x2[i];
                    x1[i] = a * cs[i] - c * sn[i];
                    x2[i] = c * cs[i] + a * sn[i];
                }
            }
        }
    }
}

void cpu_rope_fwd(float *x, const float *inv_freq, int B, int T, int row_stride_b,
                  int H, int hd, int pos0)
{
    rope_apply(x, inv_freq, B, T, row_stride_b, H, hd, pos0, 1.0f);
}

/* A rotation's transpose is the rotation by the opposite angle. */
void cpu_rope_bwd(float *dx, const float *inv_freq, int B, int T, int row_stride_b,
                  int H, int hd, int pos0)
{
    rope_apply(dx, inv_freq, B, T, row_stride_b, H, hd, pos0, -1.0f);
}
