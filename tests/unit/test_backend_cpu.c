/* Op-by-op tests of the CPU backend: forwards against naive double-precision
 * loops written from the definitions, backwards against central finite
 * differences of f = sum(out * r) for a random r.
 *
 * The finite differences run in float: the backend has no double build, so
 * steps are large (h = 1e-2 on O(1) inputs) and the tolerance (2e-3 abs + 2%
 * rel) covers both the O(h^2) truncation and float rounding of f divided by 2h;
 * an index or sign mistake in a backward gives errors of order 100%. */
#include <stdint.h>
#include <string.h>

#include "backend/backend.h"
#include "test_util.h"

static const backend_t *be;

static uint64_t rng_state = 88172645463325252ULL;
static float frand(void)   /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static float *rand_vec(int64_t n, float scale)
{
    float *x = malloc(sizeof(float) * (n ? n : 1));
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * frand();
    return x;
}

static double dot_d(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

static double max_abs_diff(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* Compares ana[n] with central differences of f over x[n]; returns the number
 * of entries out of tolerance and prints the first few. */
typedef double (*objective_fn)(void *ctx);
static int fd_check(const char *what, float *x, const float *ana, int64_t n, objective_fn f,
                    void *ctx, float h)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + h;
        double fp = f(ctx);
        x[i] = x0 - h;
        double fm = f(ctx);
        x[i] = x0;
        double num = (fp - fm) / (2.0 * h);
        if (fabs(num - ana[i]) > 2e-3 + 2e-2 * fabs(num)) {
            if (bad++ < 3)
                fprintf(stderr, "%s[%lld]: numeric %.6g analytic %.6g\n", what, (long long)i,
                        num, ana[i]);
        }
    }
    return bad;
}

// ----------------------------------------------------------------------------
// GEMM

/* Small shapes run on one thread; the larger ones (over the backend's fork
 * threshold) are split by rows (tall C) or by columns (wide C) over threads,
 * with extents that are not multiples of the split. */
static void test_gemm_shape(int M, int N, int K, int batch)
{
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            float *A = rand_vec((int64_t)batch * M * K, 1);
            float *B = rand_vec((int64_t)batch * K * N, 1);
            float *C = rand_vec((int64_t)batch * M * N, 1);
            float *C0 = malloc(sizeof(float) * batch * M * N);
            memcpy(C0, C, sizeof(float) * batch * M * N);
            int lda = ta ? M : K, ldb = tb ? K : N;
            be->gemm(ta, tb, M, N, K, 0.5f, A, lda, (int64_t)M * K, B, ldb, (int64_t)K * N, 2.0f,
                     C, N, (int64_t)M * N, batch);
            double err = 0;
            for (int b = 0; b < batch; b++)
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double s = 0;
                        for (int k = 0; k < K; k++) {
                            float a = ta ? A[b * M * K + k * M + i] : A[b * M * K + i * K + k];
                            float bb = tb ? B[b * K * N + j * K + k] : B[b * K * N + k * N + j];
                            s += (double)a * bb;
                        }
                        double want = 0.5 * s + 2.0 * C0[b * M * N + i * N + j];
                        err = fmax(err, fabs(want - C[b * M * N + i * N + j]));
                    }
            CHECK_MSG(err < 1e-5 * sqrt(K), "gemm %dx%dx%d ta=%d tb=%d: max error %g", M, N, K,
                      ta, tb, err);
            free(A), free(B), free(C), free(C0);
        }
    }
}

static void test_gemm(void)
{
    test_gemm_shape(7, 5, 9, 3);
    test_gemm_shape(133, 37, 150, 2);
    test_gemm_shape(37, 133, 150, 2);
}

// ----------------------------------------------------------------------------
// embedding

static void test_embedding(void)
{
    int V = 11, d = 6, N = 8;
    int32_t ids[8] = {3, 0, 10, 3, 7, 3, 0, 5};   /* repeats must add up */
    float *table = rand_vec(V * d, 1), *out = malloc(sizeof(float) * N * d);
    be->embed_fwd(out, ids, table, N, d);
    int bad = 0;
    for (int n = 0; n < N; n++)
        bad += memcmp(out + n * d, table + ids[n] * d, sizeof(float) * d) != 0;
    CHECK(bad == 0);
    float *g = rand_vec(N * d, 1), *dt = calloc(V * d, sizeof(float));
    be->embed_bwd(dt, ids, g, N, d);
    double err = 0;
    for (int v = 0; v < V; v++)
        for (int c = 0; c < d; c++) {
            double want = 0;
            for (int n = 0; n < N; n++)
                want += ids[n] == v ? g[n * d + c] : 0.0;
            err = fmax(err, fabs(want - dt[v * d + c]));
        }
    CHECK_MSG(err < 1e-6, "embedding backward error %g", err);
    free(table), free(out), free(g), free(dt);
}

// ----------------------------------------------------------------------------
// RMSNorm

typedef struct {
    float *x, *w, *r, *out, *rstd;
    int N, d;
    float eps;
} norm_ctx_t;

static double norm_obj(void *p)
{
    norm_ctx_t *c = p;
    be->rmsnorm_fwd(c->out, c->rstd, c->x, c->w, c->N, c->d, c->eps);
    return dot_d(c->out, c->r, (int64_t)c->N * c->d);
}

static void test_rmsnorm(void)
{
    norm_ctx_t c = {.N = 4, .d = 10, .eps = 1e-5f};
    c.x = rand_vec(c.N * c.d, 2), c.w = rand_vec(c.d, 1), c.r = rand_vec(c.N * c.d, 1);
    c.out = malloc(sizeof(float) * c.N * c.d), c.rstd = malloc(sizeof(float) * c.N);
    norm_obj(&c);
    double err = 0;
    for (int n = 0; n < c.N; n++) {
        double ss = 0;
        for (int i = 0; i < c.d; i++)
            ss += (double)c.x[n * c.d + i] * c.x[n * c.d + i];
        double r = 1.0 / sqrt(ss / c.d + c.eps);
        for (int i = 0; i < c.d; i++)
            err = fmax(err, fabs(c.w[i] * c.x[n * c.d + i] * r - c.out[n * c.d + i]));
    }
    CHECK_MSG(err < 1e-5, "rmsnorm forward error %g", err);
    float *dx = calloc(c.N * c.d, sizeof(float)), *dw = calloc(c.d, sizeof(float));
    be->rmsnorm_bwd(dx, dw, c.r, c.x, c.w, c.rstd, c.N, c.d);
    CHECK(fd_check("rmsnorm dx", c.x, dx, c.N * c.d, norm_obj, &c, 1e-2f) == 0);
    CHECK(fd_check("rmsnorm dw", c.w, dw, c.d, norm_obj, &c, 1e-2f) == 0);
    /* both gradients accumulate: a second call doubles them */
    float dx0 = dx[3], dw0 = dw[2];
    be->rmsnorm_bwd(dx, dw, c.r, c.x, c.w, c.rstd, c.N, c.d);
    CHECK_NEAR(dx[3], 2 * dx0, 1e-5);
    CHECK_NEAR(dw[2], 2 * dw0, 1e-5);
    free(c.x), free(c.w), free(c.r), free(c.out), free(c.rstd), free(dx), free(dw);
}

// ----------------------------------------------------------------------------
// RoPE

typedef struct {
    float *x, *y, *r, *freq;
    int B, T, stride, H, hd, pos0;
} rope_ctx_t;

static double rope_obj(void *p)
{
    rope_ctx_t *c = p;
    int64_t n = (int64_t)c->B * c->stride * c->H * c->hd;
    memcpy(c->y, c->x, sizeof(float) * n);
    be->rope_fwd(c->y, c->freq, c->B, c->T, c->stride, c->H, c->hd, c->pos0);
    return dot_d(c->y, c->r, n);
}

static void test_rope(void)
{
    /* stride 5 > T 3: rows 3, 4 of each sequence must stay untouched */
    rope_ctx_t c = {.B = 2, .T = 3, .stride = 5, .H = 3, .hd = 8, .pos0 = 4};
    int64_t n = (int64_t)c.B * c.stride * c.H * c.hd;
    float freq[4] = {1.0f, 0.3f, 0.05f, 0.001f};
    c.freq = freq;
    c.x = rand_vec(n, 1), c.y = malloc(sizeof(float) * n), c.r = rand_vec(n, 1);
    rope_obj(&c);
    int half = c.hd / 2;
    double err = 0;
    for (int b = 0; b < c.B; b++)
        for (int t = 0; t < c.stride; t++)
            for (int h = 0; h < c.H; h++)
                for (int i = 0; i < c.hd; i++) {
                    int64_t o = (((int64_t)b * c.stride + t) * c.H + h) * c.hd;
                    double want = c.x[o + i];
                    if (t < c.T) {
                        /* rotate_half layout: pair (i, i + hd/2) */
                        int j = i % half;
                        double a = (double)(c.pos0 + t) * freq[j];
                        double x1 = c.x[o + j], x2 = c.x[o + j + half];
                        want = i < half ? x1 * cos(a) - x2 * sin(a) : x2 * cos(a) + x1 * sin(a);
                    }
                    err = fmax(err, fabs(want - c.y[o + i]));
                }
    CHECK_MSG(err < 1e-5, "rope forward error %g", err);
    float *g = malloc(sizeof(float) * n);
    memcpy(g, c.r, sizeof(float) * n);
    be->rope_bwd(g, c.freq, c.B, c.T, c.stride, c.H, c.hd, c.pos0);
    CHECK(fd_check("rope dx", c.x, g, n, rope_obj, &c, 1e-2f) == 0);
    free(c.x), free(c.y), free(c.r), free(g);
}

// ----------------------------------------------------------------------------
// attention

/* Naive attention in double, straight from the definition in backend.h. */
static void attn_naive(float *out, const float *q, const float *k, const float *v,
                       const int32_t *klen, const attn_shape_t *s)
{
    int Hq = s->n_heads, Hkv = s->n_kv_heads, hd = s->head_dim;
    double *p = malloc(sizeof(double) * s->kv_cap);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < Hq; h++) {
            int kh = h / (Hq / Hkv);
            for (int i = 0; i < s->Tq; i++) {
                const float *qi = q + (((int64_t)b * s->Tq + i) * Hq + h) * hd;
                float *oi = out + (((int64_t)b * s->Tq + i) * Hq + h) * hd;
                double mx = -INFINITY, sum = 0;
                int nk = 0;
                for (int j = 0; j < s->kv_cap; j++) {
                    if (j > s->q_offset + i || j >= klen[b])
                        continue;
                    const float *kj = k + (((int64_t)b * s->kv_cap + j) * Hkv + kh) * hd;
                    p[j] = s->scale * dot_d(qi, kj, hd);
                    mx = fmax(mx, p[j]);
                    nk = j + 1;
                }
                for (int j = 0; j < nk; j++)
                    sum += (p[j] = exp(p[j] - mx));
                for (int c = 0; c < hd; c++) {
                    double acc = 0;
                    for (int j = 0; j < nk; j++)
                        acc += p[j] / sum * v[(((int64_t)b * s->kv_cap + j) * Hkv + kh) * hd + c];
                    oi[c] = nk ? (float)acc : 0.0f;
                }
            }
        }
    free(p);
}

typedef struct {
    float *q, *k, *v, *out, *lse, *r;
    int32_t *klen;
    attn_shape_t s;
} attn_ctx_t;

static double attn_obj(void *p)
{
    attn_ctx_t *c = p;
    be->attn_fwd(c->out, c->lse, c->q, c->k, c->v, c->klen, &c->s);
    return dot_d(c->out, c->r, (int64_t)c->s.B * c->s.Tq * c->s.n_heads * c->s.head_dim);
}

static void test_attention(void)
{
    int B = 3, T = 6, Hq = 4, Hkv = 2, hd = 4;
    int32_t klen[3] = {6, 4, 0};   /* full, right-padded, empty (fully masked) */
    attn_ctx_t c = {.klen = klen};
    c.s = (attn_shape_t){.B = B, .Tq = T, .kv_cap = T, .q_offset = 0, .n_heads = Hq,
                         .n_kv_heads = Hkv, .head_dim = hd, .scale = 1.0f / sqrtf(hd)};
    int64_t nq = (int64_t)B * T * Hq * hd, nk = (int64_t)B * T * Hkv * hd;
    c.q = rand_vec(nq, 1.5f), c.k = rand_vec(nk, 1.5f), c.v = rand_vec(nk, 1);
    c.r = rand_vec(nq, 1), c.out = malloc(sizeof(float) * nq);
    c.lse = malloc(sizeof(float) * B * Hq * T);
    float *want = malloc(sizeof(float) * nq);
    attn_obj(&c);
    attn_naive(want, c.q, c.k, c.v, klen, &c.s);
    CHECK_MSG(max_abs_diff(want, c.out, nq) < 1e-5, "attention forward error %g",
              max_abs_diff(want, c.out, nq));

    /* the fully masked sequence: finite, defined as zero output and zero lse */
    int finite = 1, zero = 1;
    for (int64_t i = 2LL * T * Hq * hd; i < nq; i++) {
        finite &= isfinite(c.out[i]);
        zero &= c.out[i] == 0.0f;
    }
    for (int i = 2 * Hq * T; i < 3 * Hq * T; i++)
        finite &= isfinite(c.lse[i]);
    CHECK(finite && zero);

    /* padded keys cannot leak into any row: change them, nothing moves */
    float *out1 = malloc(sizeof(float) * nq);
    memcpy(out1, c.out, sizeof(float) * nq);
    for (int j = 4; j < T; j++)
        for (int i = 0; i < Hkv * hd; i++) {
            c.k[((int64_t)1 * T + j) * Hkv * hd + i] += 3.0f;
            c.v[((int64_t)1 * T + j) * Hkv * hd + i] -= 2.0f;
        }
    attn_obj(&c);
    CHECK(max_abs_diff(out1, c.out, nq) == 0.0);

    float *dq = malloc(sizeof(float) * nq), *dk = calloc(nk, sizeof(float));
    float *dv = calloc(nk, sizeof(float));
    be->attn_bwd(dq, dk, dv, c.r, c.out, c.lse, c.q, c.k, c.v, klen, &c.s);
    CHECK(fd_check("attn dq", c.q, dq, nq, attn_obj, &c, 1e-2f) == 0);
    CHECK(fd_check("attn dk", c.k, dk, nk, attn_obj, &c, 1e-2f) == 0);
    CHECK(fd_check("attn dv", c.v, dv, nk, attn_obj, &c, 1e-2f) == 0);
    int zero_grad = 1;
    for (int64_t i = 2LL * T * Hq * hd; i < nq; i++)
        zero_grad &= dq[i] == 0.0f;
    for (int64_t i = 2LL * T * Hkv * hd; i < nk; i++)
        zero_grad &= dk[i] == 0.0f && dv[i] == 0.0f;
    CHECK(zero_grad);

    /* KV-cache decoding: the last 2 rows as queries at offset 4 over an 8-row
     * cache must give what the full causal pass gave for those rows */
    int cap = 8;
    attn_shape_t s2 = c.s;
    s2.B = 1, s2.Tq = 2, s2.kv_cap = cap, s2.q_offset = 4;
    float *kc = calloc((int64_t)cap * Hkv * hd, sizeof(float));
    float *vc = calloc((int64_t)cap * Hkv * hd, sizeof(float));
    memcpy(kc, c.k, sizeof(float) * T * Hkv * hd);
    memcpy(vc, c.v, sizeof(float) * T * Hkv * hd);
    int32_t len2 = 6;
    float *o2 = malloc(sizeof(float) * 2 * Hq * hd), lse2[8];
    be->attn_fwd(o2, lse2, c.q + 4 * Hq * hd, kc, vc, &len2, &s2);
    CHECK_MSG(max_abs_diff(o2, c.out + 4 * Hq * hd, 2 * Hq * hd) < 1e-6, "kv-cache %g",
              max_abs_diff(o2, c.out + 4 * Hq * hd, 2 * Hq * hd));
    free(kc), free(vc), free(o2);
    free(c.q), free(c.k), free(c.v), free(c.r), free(c.out), free(c.lse), free(want);
    free(out1), free(dq), free(dk), free(dv);
}

// ----------------------------------------------------------------------------
// SwiGLU

typedef struct {
    float *g, *u, *r, *out;
    int64_t n;
} swiglu_ctx_t;

static double swiglu_obj(void *p)
{
    swiglu_ctx_t *c = p;
    be->swiglu_fwd(c->out, c->g, c->u, c->n);
    return dot_d(c->out, c->r, c->n);
}

static void test_swiglu(void)
{
    swiglu_ctx_t c = {.n = 40};
    c.g = rand_vec(c.n, 4), c.u = rand_vec(c.n, 1), c.r = rand_vec(c.n, 1);
    c.out = malloc(sizeof(float) * c.n);
    swiglu_obj(&c);
    double err = 0;
    for (int64_t i = 0; i < c.n; i++)
        err = fmax(err, fabs(c.g[i] / (1 + exp(-(double)c.g[i])) * c.u[i] - c.out[i]));
    CHECK_MSG(err < 1e-6, "swiglu forward error %g", err);
    float *dg = malloc(sizeof(float) * c.n), *du = malloc(sizeof(float) * c.n);
    be->swiglu_bwd(dg, du, c.r, c.g, c.u, c.n);
    CHECK(fd_check("swiglu dgate", c.g, dg, c.n, swiglu_obj, &c, 1e-2f) == 0);
    CHECK(fd_check("swiglu dup", c.u, du, c.n, swiglu_obj, &c, 1e-2f) == 0);
    free(c.g), free(c.u), free(c.r), free(c.out), free(dg), free(du);
}

// ----------------------------------------------------------------------------
// log-softmax + gather

typedef struct {
    float *z, *g, *lp;
    int32_t *tgt;
    int N, V;
} lsm_ctx_t;

static double lsm_obj(void *p)
{
    lsm_ctx_t *c = p;
    be->logsoftmax_gather_fwd(c->lp, c->z, c->tgt, c->N, c->V);
    return dot_d(c->lp, c->g, c->N);
}

static void test_logsoftmax(void)
{
    int32_t tgt[4] = {2, -1, 0, 6};
    lsm_ctx_t c = {.N = 4, .V = 7, .tgt = tgt};
    c.z = rand_vec(c.N * c.V, 5), c.g = rand_vec(c.N, 1), c.lp = malloc(sizeof(float) * c.N);
    c.z[3 * c.V + 1] = 80.0f;   /* large logit: max subtraction keeps exp finite */
    lsm_obj(&c);
    double err = 0;
    for (int n = 0; n < c.N; n++) {
        double want = 0;
        if (tgt[n] >= 0) {
            double mx = -INFINITY, s = 0;
            for (int v = 0; v < c.V; v++)
                mx = fmax(mx, c.z[n * c.V + v]);
            for (int v = 0; v < c.V; v++)
                s += exp(c.z[n * c.V + v] - mx);
            want = c.z[n * c.V + tgt[n]] - mx - log(s);
        }
        err = fmax(err, fabs(want - c.lp[n]));
    }
    CHECK_MSG(err < 2e-5, "log-softmax forward error %g", err);
    float *dz = calloc(c.N * c.V, sizeof(float));
    be->logsoftmax_gather_bwd(dz, c.z, tgt, c.g, c.N, c.V);
    CHECK(fd_check("log-softmax dz", c.z, dz, c.N * c.V, lsm_obj, &c, 1e-2f) == 0);
    int untouched = 1;
    for (int v = 0; v < c.V; v++)
        untouched &= dz[1 * c.V + v] == 0.0f;
    CHECK(untouched);
    free(c.z), free(c.g), free(c.lp), free(dz);
}

// ----------------------------------------------------------------------------
// memory and element-wise

static void test_memory(void)
{
    float host[5] = {1, 2, 3, 4, 5}, back[5];
    float *d = be->alloc(sizeof(host));
    CHECK(d != NULL && d[0] == 0.0f && d[4] == 0.0f);
    be->to_device(d, host, sizeof(host));
    be->add(d, d, 5);
    be->scale(d, 0.5f, 5);
    be->to_host(back, d, sizeof(back));
    CHECK(memcmp(host, back, sizeof(host)) == 0);
    be->zero(d, sizeof(host));
    CHECK(d[2] == 0.0f);
    be->free(d);
}

/* Naive attention backward in double from the same definitions: dq, and
 * dk, dv accumulated (+=) as the op does. */
static void attn_naive_bwd(double *dq, double *dk, double *dv, const float *dout,
                           const float *q, const float *k, const float *v,
                           const int32_t *klen, const attn_shape_t *s)
{
    int Hq = s->n_heads, Hkv = s->n_kv_heads, hd = s->head_dim, T = s->Tq;
    double *p = malloc(sizeof(double) * T), *dp = malloc(sizeof(double) * T);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < Hq; h++) {
            int kh = h / (Hq / Hkv);
            for (int i = 0; i < T; i++) {
                int64_t qo = (((int64_t)b * T + i) * Hq + h) * hd;
                int nk = i + 1 < klen[b] ? i + 1 : klen[b];
                double mx = -INFINITY, sum = 0, D = 0;
                for (int j = 0; j < nk; j++) {
                    int64_t ko = (((int64_t)b * T + j) * Hkv + kh) * hd;
                    p[j] = s->scale * dot_d(q + qo, k + ko, hd);
                    dp[j] = dot_d(dout + qo, v + ko, hd);
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j < nk; j++)
                    sum += (p[j] = exp(p[j] - mx));
                for (int j = 0; j < nk; j++)
                    D += (p[j] /= sum) * dp[j];
                for (int c = 0; c < hd; c++)
                    dq[qo + c] = 0;
                for (int j = 0; j < nk; j++) {
                    int64_t ko = (((int64_t)b * T + j) * Hkv + kh) * hd;
                    double ds = p[j] * (dp[j] - D) * s->scale;
                    for (int c = 0; c < hd; c++) {
                        dq[qo + c] += ds * k[ko + c];
                        dk[ko + c] += ds * q[qo + c];
                        dv[ko + c] += p[j] * dout[qo + c];
                    }
                }
            }
        }
    free(p), free(dp);
}

static double max_abs_diff_d(const double *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

/* Sequences longer than one tile of query rows, with padding that ends inside
 * a tile, and a prefill at an offset into a cache whose tiles straddle it. */
static void test_attention_tiles(void)
{
    int B = 2, T = 150, Hq = 4, Hkv = 2, hd = 8;
    int32_t klen[2] = {150, 97};
    attn_shape_t s = {.B = B, .Tq = T, .kv_cap = T, .q_offset = 0, .n_heads = Hq,
                      .n_kv_heads = Hkv, .head_dim = hd, .scale = 1.0f / sqrtf(hd)};
    int64_t nq = (int64_t)B * T * Hq * hd, nk = (int64_t)B * T * Hkv * hd;
    float *q = rand_vec(nq, 1.5f), *k = rand_vec(nk, 1.5f), *v = rand_vec(nk, 1);
    float *g = rand_vec(nq, 1), *out = malloc(sizeof(float) * nq);
    float *want = malloc(sizeof(float) * nq);
    float *lse = malloc(sizeof(float) * B * Hq * T);
    be->attn_fwd(out, lse, q, k, v, klen, &s);
    attn_naive(want, q, k, v, klen, &s);
    CHECK_MSG(max_abs_diff(want, out, nq) < 1e-5, "tiled attention forward error %g",
              max_abs_diff(want, out, nq));

    float *dq = malloc(sizeof(float) * nq), *dk = rand_vec(nk, 1), *dv = rand_vec(nk, 1);
    double *wq = malloc(sizeof(double) * nq), *wk = malloc(sizeof(double) * nk);
    double *wv = malloc(sizeof(double) * nk);
    for (int64_t i = 0; i < nk; i++)
        wk[i] = dk[i], wv[i] = dv[i];
    be->attn_bwd(dq, dk, dv, g, out, lse, q, k, v, klen, &s);
    attn_naive_bwd(wq, wk, wv, g, q, k, v, klen, &s);
    double eq = max_abs_diff_d(wq, dq, nq), ek = max_abs_diff_d(wk, dk, nk);
    double ev = max_abs_diff_d(wv, dv, nk);
    CHECK_MSG(eq < 1e-4 && ek < 1e-4 && ev < 1e-4, "tiled attention backward errors: dq %g "
              "dk %g dv %g", eq, ek, ev);

    /* rows 80..149 of sequence 0 as a prefill at offset 80 of a 160-row cache */
    int cap = 160, Tq = T - 80;
    attn_shape_t s2 = s;
    s2.B = 1, s2.Tq = Tq, s2.kv_cap = cap, s2.q_offset = 80;
    float *kc = calloc((int64_t)cap * Hkv * hd, sizeof(float));
    float *vc = calloc((int64_t)cap * Hkv * hd, sizeof(float));
    memcpy(kc, k, sizeof(float) * T * Hkv * hd);
    memcpy(vc, v, sizeof(float) * T * Hkv * hd);
    int32_t len2 = T;
    float *o2 = malloc(sizeof(float) * Tq * Hq * hd), *lse2 = malloc(sizeof(float) * Tq * Hq);
    be->attn_fwd(o2, lse2, q + 80 * Hq * hd, kc, vc, &len2, &s2);
    CHECK_MSG(max_abs_diff(o2, out + 80 * Hq * hd, Tq * Hq * hd) < 1e-6, "tiled prefill %g",
              max_abs_diff(o2, out + 80 * Hq * hd, Tq * Hq * hd));
    free(q), free(k), free(v), free(g), free(out), free(want), free(lse);
    free(dq), free(dk), free(dv), free(wq), free(wk), free(wv);
    free(kc), free(vc), free(o2), free(lse2);
}

int main(void)
{
    be = backend_cpu();
    CHECK(be != NULL && !strcmp(be->name, "cpu"));
    test_memory();
    test_gemm();
    test_embedding();
    test_rmsnorm();
    test_rope();
    test_attention();
    test_attention_tiles();
    test_swiglu();
    test_logsoftmax();
    TEST_DONE();
}
