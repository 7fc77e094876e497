/* CPU log-softmax over the vocabulary with a gather of the target token, and
 * its backward: the quantity every DEFT loss is built from. fp32 with max
 * subtraction and the vectorised cpu_expf; the exponential sum is kept in
 * double for V = 128,256. */
#include <math.h>

#include "backend/cpu/cpu_ops.h"

static float row_lse(const float *z, int V)
{
    float mx = -INFINITY;
    #pragma omp simd reduction(max:mx)
    for (int v = 0; v < V; v++)
        mx = z[v] > mx ? z[v] : mx;
    double sum = 0.0;
    #pragma omp simd reduction(+:sum)
    for (int v = 0; v < V; v++)
        sum += cpu_expf(z[v] - mx);
    return mx + (float)log(sum);
}

void cpu_logsoftmax_gather_fwd(float *logp, const float *logits, const int32_t *tgt,
                               int N, int V)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (tgt[n] < 0) {
            logp[n] = 0.0f;
            continue;
        }
        const float *z = logits + (int64_t)n * V;
        logp[n] = z[tgt[n]] - row_lse(z, V);
    }
}

void cpu_logsoftmax_gather_bwd(float *dlogits, const float *logits, const int32_t *tgt,
                               const float *g, int N, int V)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (tgt[n] < 0 || g[n] == 0.0f)
            continue;
        const float *z = logits + (int64_t)n * V;
        float *dz = dlogits + (int64_t)n * V;
        float l = row_lse(z, V), gn = g[n];
        #pragma omp simd
        for (int v = 0; v < V; v++)
            dz[v] -= gn * cpu_expf(z[v] - l);
        dz[tgt[n]] += gn;
    }
}
