/* The CUDA backend op by op against the CPU backend (the reference), on
 * random inputs of several shapes: odd sizes, unaligned views, GQA, right
 * padding, fully masked rows, a KV-cache offset and V = 128,256 for the
 * log-softmax; then a whole tiny Llama forward and backward on both
 * backends. Exits 77 (CTest "skipped") when no GPU is present. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "test_util.h"

#ifndef DEFT_HAVE_CUDA
int main(void)
{
    printf("SKIPPED: this build has no CUDA backend\n");
    return 77;
}
#else

#include "backend/backend.h"
#include "cuda/cuda_backend.h"
#include "io/safetensors.h"
#include "model/llama.h"

static const backend_t *cpu, *gpu;

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static float frand(void)   /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static float *rand_vec(int64_t n, float scale)
{
    float *x = malloc(sizeof(float) * (n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * frand();
    return x;
}

/* device copy of host x[n] (float or int32: 4-byte items) */
static void *up(const void *x, int64_t n)
{
    void *d = gpu->alloc(4 * (size_t)(n > 0 ? n : 1));
    gpu->to_device(d, x, 4 * (size_t)n);
    return d;
}

static void down(void *host, const void *dev, int64_t n) { gpu->to_host(host, dev, 4 * (size_t)n); }

/* Worst |got - want| / (atol + rtol |want|): <= 1 passes (tolerance 0: exact). */
static double close_ratio(const float *got, const float *want, int64_t n, double atol,
                          double rtol)
{
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double diff = fabs((double)got[i] - want[i]);
        double e = diff == 0 ? 0 : diff / (atol + rtol * fabs((double)want[i]));
        if (!(e <= worst))   /* NaN counts as the worst */
            worst = isnan(e) ? INFINITY : e;
    }
    return worst;
}

#define CHECK_CLOSE(what, got, want, n, atol, rtol)                                 \
    do {                                                                            \
        double r_ = close_ratio(got, want, n, atol, rtol);                          \
        CHECK_MSG(r_ <= 1.0, "%s: error %.3g x tolerance", what, r_);               \
    } while (0)

static void check_status(const char *what)
{
    deft_err_t err = {0};
    int rc = backend_cuda_status(&err);
    CHECK_MSG(rc == 0, "%s: %s", what, err.msg);
}

// ----------------------------------------------------------------------------
// GEMM

static void gemm_case(bool ta, bool tb, int M, int N, int K, int pad, int batch, bool shared_b,
                      int offset, float alpha, float beta)
{
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    int64_t sa = (int64_t)(ta ? K : M) * lda, sb = shared_b ? 0 : (int64_t)(tb ? N : K) * ldb;
    int64_t sc = (int64_t)M * ldc;
    int64_t na = sa * batch + offset, nb = (shared_b ? (int64_t)(tb ? N : K) * ldb : sb * batch)
                                           + offset, nc = sc * batch + offset;
    float *A = rand_vec(na, 1), *B = rand_vec(nb, 1), *C = rand_vec(nc, 1);
    float *C_gpu = malloc(sizeof(float) * nc);
    float *dA = up(A, na), *dB = up(B, nb), *dC = up(C, nc);
    cpu->gemm(ta, tb, M, N, K, alpha, A + offset, lda, sa, B + offset, ldb, sb, beta,
              C + offset, ldc, sc, batch);
    gpu->gemm(ta, tb, M, N, K, alpha, dA + offset, lda, sa, dB + offset, ldb, sb, beta,
              dC + offset, ldc, sc, batch);
    down(C_gpu, dC, nc);
    char what[128];
    snprintf(what, sizeof(what), "gemm ta=%d tb=%d %dx%dx%d pad %d batch %d%s off %d", ta, tb,
             M, N, K, pad, batch, shared_b ? " shared B" : "", offset);
    CHECK_CLOSE(what, C_gpu, C, nc, 1e-4 * sqrt((double)K + 1), 1e-4);
    gpu->free(dA), gpu->free(dB), gpu->free(dC);
    free(A), free(B), free(C), free(C_gpu);
}

static void test_gemm(void)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            gemm_case(ta, tb, 7, 5, 9, 0, 1, false, 0, 1.0f, 0.0f);
            gemm_case(ta, tb, 129, 257, 100, 3, 3, false, 0, 0.5f, 2.0f);
            gemm_case(ta, tb, 64, 48, 33, 0, 4, true, 1, 1.0f, 1.0f);   /* unaligned views */
        }
    gemm_case(false, true, 1, 1, 1, 0, 1, false, 0, 1.0f, 0.0f);
    gemm_case(false, true, 512, 1024, 768, 0, 1, false, 0, 1.0f, 0.0f);
    gemm_case(true, false, 96, 80, 2000, 0, 1, false, 0, 1.0f, 1.0f);   /* a weight gradient */
    gemm_case(false, false, 6, 7, 0, 0, 2, false, 0, 1.0f, 0.5f);       /* K = 0: C *= beta */
    check_status("gemm");
}

// ----------------------------------------------------------------------------
// element-wise ops

static void test_elementwise(void)
{
    int64_t sizes[] = {1, 7, 1000, 1000003};
    for (size_t s = 0; s < DEFT_ARRAY_LEN(sizes); s++)
        for (int off = 0; off < 2; off++) {
            int64_t n = sizes[s], tot = n + off;
            float *y = rand_vec(tot, 1), *x = rand_vec(tot, 1), *g = rand_vec(tot, 3);
            float *dy = up(y, tot), *dx = up(x, tot), *dg = up(g, tot);
            float *out = malloc(sizeof(float) * tot), *o2 = malloc(sizeof(float) * tot);
            char what[64];

            cpu->add(y + off, x + off, n), gpu->add(dy + off, dx + off, n);
            down(out, dy, tot);
            snprintf(what, sizeof(what), "add n=%lld off %d", (long long)n, off);
            CHECK_CLOSE(what, out, y, tot, 0, 0);
            cpu->scale(y + off, -0.37f, n), gpu->scale(dy + off, -0.37f, n);
            down(out, dy, tot);
            snprintf(what, sizeof(what), "scale n=%lld off %d", (long long)n, off);
            CHECK_CLOSE(what, out, y, tot, 0, 0);

            /* swiglu: out = silu(g) * x; backward into (y, x) as (dgate, dup) */
            float *d_out = gpu->alloc(sizeof(float) * tot), *h_out = calloc(tot, sizeof(float));
            cpu->swiglu_fwd(h_out + off, g + off, x + off, n);
            gpu->swiglu_fwd(d_out + off, dg + off, dx + off, n);
            down(out, d_out, tot);
            snprintf(what, sizeof(what), "swiglu_fwd n=%lld off %d", (long long)n, off);
            CHECK_CLOSE(what, out, h_out, tot, 1e-6, 1e-5);
            float *dgate = rand_vec(tot, 1), *dup = rand_vec(tot, 1);
            float *d_dgate = up(dgate, tot), *d_dup = up(dup, tot);
            cpu->swiglu_bwd(dgate + off, dup + off, y + off, g + off, x + off, n);
            gpu->swiglu_bwd(d_dgate + off, d_dup + off, dy + off, dg + off, dx + off, n);
            down(out, d_dgate, tot), down(o2, d_dup, tot);
            snprintf(what, sizeof(what), "swiglu_bwd n=%lld off %d", (long long)n, off);
            CHECK_CLOSE(what, out, dgate, tot, 1e-6, 1e-5);
            CHECK_CLOSE(what, o2, dup, tot, 1e-6, 1e-5);

            gpu->free(dy), gpu->free(dx), gpu->free(dg), gpu->free(d_out);
            gpu->free(d_dgate), gpu->free(d_dup);
            free(y), free(x), free(g), free(out), free(o2), free(h_out), free(dgate), free(dup);
        }
    /* copy with overlap keeps memmove semantics */
    float *x = rand_vec(1000, 1), *got = malloc(sizeof(float) * 1000);
    float *dx = up(x, 1000);
    cpu->copy(x + 3, x, sizeof(float) * 900), gpu->copy(dx + 3, dx, sizeof(float) * 900);
    cpu->copy(x, x + 7, sizeof(float) * 900), gpu->copy(dx, dx + 7, sizeof(float) * 900);
    down(got, dx, 1000);
    CHECK_CLOSE("copy (overlapping)", got, x, 1000, 0, 0);
    gpu->free(dx), free(x), free(got);
    check_status("element-wise");
}

// ----------------------------------------------------------------------------
// embedding, RMSNorm, RoPE

static void test_embedding(void)
{
    int shapes[][3] = {{11, 6, 8}, {50, 64, 300}, {1000, 37, 513}};   /* V, d, N */
    for (size_t s = 0; s < DEFT_ARRAY_LEN(shapes); s++) {
        int V = shapes[s][0], d = shapes[s][1], N = shapes[s][2];
        int32_t *ids = malloc(sizeof(int32_t) * N);
        for (int n = 0; n < N; n++)   /* many repeats: a small id range */
            ids[n] = (int32_t)((frand() + 1.0f) * 0.5f * (V < 40 ? V : 40)) % V;
        float *table = rand_vec((int64_t)V * d, 1), *g = rand_vec((int64_t)N * d, 1);
        float *dt = rand_vec((int64_t)V * d, 1);
        float *out = malloc(sizeof(float) * N * d), *got = malloc(sizeof(float) * V * d);
        int32_t *d_ids = up(ids, N);
        float *d_table = up(table, (int64_t)V * d), *d_g = up(g, (int64_t)N * d);
        float *d_dt = up(dt, (int64_t)V * d), *d_out = gpu->alloc(sizeof(float) * N * d);
        float *want = malloc(sizeof(float) * N * d);
        cpu->embed_fwd(want, ids, table, N, d), gpu->embed_fwd(d_out, d_ids, d_table, N, d);
        down(out, d_out, (int64_t)N * d);
        CHECK_CLOSE("embed_fwd", out, want, (int64_t)N * d, 0, 0);
        /* the backward adds in token order, as the CPU does: bit-identical */
        cpu->embed_bwd(dt, ids, g, N, d), gpu->embed_bwd(d_dt, d_ids, d_g, N, d);
        down(got, d_dt, (int64_t)V * d);
        CHECK_CLOSE("embed_bwd", got, dt, (int64_t)V * d, 0, 0);
        gpu->free(d_ids), gpu->free(d_table), gpu->free(d_g), gpu->free(d_dt), gpu->free(d_out);
        free(ids), free(table), free(g), free(dt), free(out), free(got), free(want);
    }
    check_status("embedding");
}

static void test_rmsnorm(void)
{
    int shapes[][2] = {{1, 7}, {5, 64}, {300, 2051}, {1000, 256}};   /* N, d */
    for (size_t s = 0; s < DEFT_ARRAY_LEN(shapes); s++) {
        int N = shapes[s][0], d = shapes[s][1];
        int64_t nd = (int64_t)N * d;
        float *x = rand_vec(nd, 2), *w = rand_vec(d, 1), *g = rand_vec(nd, 1);
        float *dx = rand_vec(nd, 1), *dw = rand_vec(d, 1);
        float *out = malloc(sizeof(float) * nd), *rstd = malloc(sizeof(float) * N);
        float *got = malloc(sizeof(float) * nd);
        float *d_x = up(x, nd), *d_w = up(w, d), *d_g = up(g, nd), *d_dx = up(dx, nd);
        float *d_dw = up(dw, d), *d_out = gpu->alloc(sizeof(float) * nd);
        float *d_rstd = gpu->alloc(sizeof(float) * N);
        char what[64];
        snprintf(what, sizeof(what), "rmsnorm N=%d d=%d", N, d);
        cpu->rmsnorm_fwd(out, rstd, x, w, N, d, 1e-5f);
        gpu->rmsnorm_fwd(d_out, d_rstd, d_x, d_w, N, d, 1e-5f);
        down(got, d_out, nd);
        CHECK_CLOSE(what, got, out, nd, 1e-6, 1e-5);
        down(got, d_rstd, N);
        CHECK_CLOSE(what, got, rstd, N, 0, 1e-5);
        cpu->rmsnorm_bwd(dx, dw, g, x, w, rstd, N, d);
        gpu->rmsnorm_bwd(d_dx, d_dw, d_g, d_x, d_w, d_rstd, N, d);
        down(got, d_dx, nd);
        CHECK_CLOSE(what, got, dx, nd, 1e-5, 1e-4);
        down(got, d_dw, d);
        CHECK_CLOSE(what, got, dw, d, 1e-4 * sqrt((double)N), 1e-4);
        gpu->free(d_x), gpu->free(d_w), gpu->free(d_g), gpu->free(d_dx), gpu->free(d_dw);
        gpu->free(d_out), gpu->free(d_rstd);
        free(x), free(w), free(g), free(dx), free(dw), free(out), free(rstd), free(got);
    }
    check_status("rmsnorm");
}

static void test_rope(void)
{
    int shapes[][6] = {{2, 5, 7, 3, 16, 0}, {1, 33, 33, 8, 128, 1000}, {3, 1, 50, 2, 64, 49}};
    for (size_t s = 0; s < DEFT_ARRAY_LEN(shapes); s++) {
        int B = shapes[s][0], T = shapes[s][1], stride = shapes[s][2], H = shapes[s][3];
        int hd = shapes[s][4], pos0 = shapes[s][5];
        int64_t n = (int64_t)B * stride * H * hd;
        float *x = rand_vec(n, 1), *freq = malloc(sizeof(float) * hd / 2);
        for (int i = 0; i < hd / 2; i++)
            freq[i] = 1.0f / powf(500000.0f, (float)(2 * i) / (float)hd);
        float *d_x = up(x, n), *d_f = up(freq, hd / 2), *got = malloc(sizeof(float) * n);
        char what[64];
        snprintf(what, sizeof(what), "rope B=%d T=%d H=%d hd=%d pos0=%d", B, T, H, hd, pos0);
        cpu->rope_fwd(x, freq, B, T, stride, H, hd, pos0);
        gpu->rope_fwd(d_x, d_f, B, T, stride, H, hd, pos0);
        down(got, d_x, n);
        CHECK_CLOSE(what, got, x, n, 1e-5, 1e-5);
        cpu->rope_bwd(x, freq, B, T, stride, H, hd, pos0);
        gpu->rope_bwd(d_x, d_f, B, T, stride, H, hd, pos0);
        down(got, d_x, n);
        CHECK_CLOSE(what, got, x, n, 1e-5, 1e-5);
        gpu->free(d_x), gpu->free(d_f), free(x), free(freq), free(got);
    }
    check_status("rope");
}

// ----------------------------------------------------------------------------
// log-softmax + gather

static void test_logsoftmax(void)
{
    int shapes[][2] = {{5, 128256}, {7, 1001}, {64, 512}};
    for (size_t s = 0; s < DEFT_ARRAY_LEN(shapes); s++) {
        int N = shapes[s][0], V = shapes[s][1];
        int64_t nv = (int64_t)N * V;
        float *z = rand_vec(nv, 8), *g = rand_vec(N, 1), *dz = rand_vec(nv, 1e-3f);
        int32_t *tgt = malloc(sizeof(int32_t) * N);
        for (int n = 0; n < N; n++)
            tgt[n] = n % 3 == 2 ? -1 : (int32_t)(((uint32_t)n * 2654435761u) % (uint32_t)V);
        g[0] = 0.0f;   /* no gradient for a zero weight */
        float *lp = malloc(sizeof(float) * N), *got = malloc(sizeof(float) * nv);
        float *d_z = up(z, nv), *d_g = up(g, N), *d_dz = up(dz, nv);
        int32_t *d_t = up(tgt, N);
        float *d_lp = gpu->alloc(sizeof(float) * N);
        char what[64];
        snprintf(what, sizeof(what), "logsoftmax_gather N=%d V=%d", N, V);
        cpu->logsoftmax_gather_fwd(lp, z, tgt, N, V);
        gpu->logsoftmax_gather_fwd(d_lp, d_z, d_t, N, V);
        down(got, d_lp, N);
        CHECK_CLOSE(what, got, lp, N, 1e-4, 1e-5);
        cpu->logsoftmax_gather_bwd(dz, z, tgt, g, N, V);
        gpu->logsoftmax_gather_bwd(d_dz, d_z, d_t, d_g, N, V);
        down(got, d_dz, nv);
        CHECK_CLOSE(what, got, dz, nv, 1e-7, 1e-4);
        gpu->free(d_z), gpu->free(d_g), gpu->free(d_dz), gpu->free(d_t), gpu->free(d_lp);
        free(z), free(g), free(dz), free(tgt), free(lp), free(got);
    }
    check_status("logsoftmax_gather");
}

// ----------------------------------------------------------------------------
// attention

static void attn_case(int B, int Tq, int kv_cap, int q_offset, int Hq, int Hkv, int hd,
                      const int32_t *klen)
{
    attn_shape_t s = {.B = B, .Tq = Tq, .kv_cap = kv_cap, .q_offset = q_offset, .n_heads = Hq,
                      .n_kv_heads = Hkv, .head_dim = hd, .scale = 1.0f / sqrtf((float)hd)};
    int64_t nq = (int64_t)B * Tq * Hq * hd, nk = (int64_t)B * kv_cap * Hkv * hd;
    int64_t nl = (int64_t)B * Hq * Tq;
    float *q = rand_vec(nq, 2), *k = rand_vec(nk, 2), *v = rand_vec(nk, 1);
    float *out = malloc(sizeof(float) * nq), *lse = malloc(sizeof(float) * nl);
    float *got = malloc(sizeof(float) * (nq > nk ? nq : nk));
    float *d_q = up(q, nq), *d_k = up(k, nk), *d_v = up(v, nk);
    int32_t *d_klen = up(klen, B);
    float *d_out = gpu->alloc(sizeof(float) * nq), *d_lse = gpu->alloc(sizeof(float) * nl);
    char what[128];
    snprintf(what, sizeof(what), "attn B=%d Tq=%d cap=%d off=%d H=%d/%d hd=%d", B, Tq, kv_cap,
             q_offset, Hq, Hkv, hd);
    cpu->attn_fwd(out, lse, q, k, v, klen, &s);
    gpu->attn_fwd(d_out, d_lse, d_q, d_k, d_v, d_klen, &s);
    down(got, d_out, nq);
    CHECK_CLOSE(what, got, out, nq, 1e-5, 1e-4);
    down(got, d_lse, nl);
    CHECK_CLOSE(what, got, lse, nl, 1e-5, 1e-5);

    if (q_offset == 0 && kv_cap == Tq) {
        float *g = rand_vec(nq, 1), *dq = rand_vec(nq, 1);
        float *dk = rand_vec(nk, 1), *dv = rand_vec(nk, 1);   /* += into nonzero */
        float *d_g = up(g, nq), *d_dq = up(dq, nq), *d_dk = up(dk, nk), *d_dv = up(dv, nk);
        cpu->attn_bwd(dq, dk, dv, g, out, lse, q, k, v, klen, &s);
        gpu->attn_bwd(d_dq, d_dk, d_dv, d_g, d_out, d_lse, d_q, d_k, d_v, d_klen, &s);
        char w2[160];
        snprintf(w2, sizeof(w2), "%s dq", what);
        down(got, d_dq, nq);
        CHECK_CLOSE(w2, got, dq, nq, 1e-4, 1e-3);
        snprintf(w2, sizeof(w2), "%s dk", what);
        down(got, d_dk, nk);
        CHECK_CLOSE(w2, got, dk, nk, 1e-4, 1e-3);
        snprintf(w2, sizeof(w2), "%s dv", what);
        down(got, d_dv, nk);
        CHECK_CLOSE(w2, got, dv, nk, 1e-4, 1e-3);
        gpu->free(d_g), gpu->free(d_dq), gpu->free(d_dk), gpu->free(d_dv);
        free(g), free(dq), free(dk), free(dv);
    }
    gpu->free(d_q), gpu->free(d_k), gpu->free(d_v), gpu->free(d_klen), gpu->free(d_out);
    gpu->free(d_lse);
    free(q), free(k), free(v), free(out), free(lse), free(got);
}

static void test_attention(void)
{
    attn_case(2, 37, 37, 0, 4, 2, 16, (int32_t[]){37, 20});
    attn_case(3, 130, 130, 0, 8, 1, 64, (int32_t[]){130, 0, 65});   /* a fully masked row */
    attn_case(1, 64, 64, 0, 2, 2, 128, (int32_t[]){64});
    attn_case(2, 200, 200, 0, 4, 4, 32, (int32_t[]){1, 200});
    attn_case(1, 300, 300, 0, 4, 1, 128, (int32_t[]){257});
    /* generation: new rows at an offset into a longer cache */
    attn_case(2, 1, 50, 30, 4, 2, 64, (int32_t[]){31, 31});
    attn_case(2, 5, 20, 10, 4, 2, 16, (int32_t[]){15, 12});
    attn_case(1, 70, 200, 100, 2, 1, 128, (int32_t[]){170});
    check_status("attention");
}

// ----------------------------------------------------------------------------
// the whole model: tiny Llama 3 (GQA, llama3 RoPE scaling) on both backends

#define TINY "tests/fixtures/model/tiny-llama3"

static void test_model(void)
{
    deft_err_t err = {0};
    llama_model_t mc, mg;
    int rc = llama_load(&mc, TINY, cpu, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc)
        return;
    rc = llama_load(&mg, TINY, gpu, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) {
        llama_free(&mc);
        return;
    }
    int B = 3, T = 23, V = mc.cfg.vocab_size;
    int32_t lens[3] = {23, 9, 1};
    int32_t *ids = malloc(sizeof(int32_t) * B * T);
    for (int i = 0; i < B * T; i++)
        ids[i] = (int32_t)((uint32_t)(i * 2654435761u) % (uint32_t)V);
    int64_t nl = (int64_t)B * T * V;
    float *lc = malloc(sizeof(float) * nl), *lg = malloc(sizeof(float) * nl);
    CHECK(llama_forward(&mc, ids, lens, B, T, NULL, lc, true, &err) == 0);
    CHECK(llama_forward(&mg, ids, lens, B, T, NULL, lg, true, &err) == 0);
    check_status("model forward");
    /* padded positions are "computed but meaningless"; compare real ones */
    double worst = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < lens[b]; t++) {
            int64_t o = ((int64_t)b * T + t) * V;
            double r = close_ratio(lg + o, lc + o, V, 1e-4, 1e-4);
            worst = r > worst ? r : worst;
        }
    CHECK_MSG(worst <= 1.0, "model logits: error %.3g x tolerance", worst);

    float *dl = rand_vec(nl, 1e-2f);
    for (int b = 0; b < B; b++)   /* no gradient from padded positions */
        for (int t = lens[b]; t < T; t++)
            memset(dl + ((int64_t)b * T + t) * V, 0, sizeof(float) * V);
    CHECK(llama_alloc_grads(&mc, &err) == 0 && llama_alloc_grads(&mg, &err) == 0);
    llama_zero_grads(&mc), llama_zero_grads(&mg);
    CHECK(llama_backward(&mc, dl, NULL, &err) == 0);
    CHECK(llama_backward(&mg, dl, NULL, &err) == 0);
    check_status("model backward");
    for (int i = 0; i < mc.n_params; i++) {
        llama_param_t *p = &mc.params[i];
        float *g = malloc(sizeof(float) * p->numel);
        down(g, mg.params[i].grad, p->numel);
        double gmax = 0;
        for (int64_t j = 0; j < p->numel; j++)
            gmax = fmax(gmax, fabs(p->grad[j]));
        char what[160];
        snprintf(what, sizeof(what), "model gradient %s", p->name);
        CHECK_CLOSE(what, g, p->grad, p->numel, 1e-4 * gmax + 1e-9, 1e-3);
        free(g);
    }
    llama_free(&mc), llama_free(&mg);
    free(ids), free(lc), free(lg), free(dl);
}

int main(void)
{
    deft_err_t err = {0};
    if (backend_cuda_init(&gpu, &err) != 0) {
        printf("SKIPPED: %s\n", err.msg);
        return 77;
    }
    cpu = backend_cpu();
    cuda_device_info_t info;
    if (backend_cuda_device_info(&info) == 0)
        printf("device: %s, %d SMs, compute capability %d.%d\n", info.name, info.sm_count,
               info.cc_major, info.cc_minor);
    test_gemm();
    test_elementwise();
    test_embedding();
    test_rmsnorm();
    test_rope();
    test_logsoftmax();
    test_attention();
    test_model();
    TEST_DONE();
}

#endif
