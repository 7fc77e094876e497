/* CUDA backend figures: GEMM TFLOP/s (fp32 compute through cuBLASLt),
 * causal attention forward/backward time, and a Llama forward+backward step
 * on a mid-size model as model FLOP utilisation (MFU) against the GPU's fp32
 * peak (--peak, TFLOP/s; 67 for an H200 SXM by its datasheet, CUDA cores
 * without tensor cores). Model FLOPs per step follow bench_model.c:
 * 6 * N * tokens + 12 * L * H * hd * T * tokens. Skips without a device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"

#ifndef DEFT_HAVE_CUDA
int main(void)
{
    printf("bench_cuda: skipped: this build has no CUDA backend\n");
    return 0;
}
#else

#include "cuda/cuda_backend.h"
#include "model/llama.h"
#include "util/rng.h"

static const backend_t *be;

static int arg_int(int argc, char **argv, const char *name, int def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return atoi(argv[i + 1]);
    return def;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static float *dev_random(int64_t n, float std, rng_t *r)
{
    float *h = malloc(sizeof(float) * n), *d = be->alloc(sizeof(float) * n);
    rng_fill_normal(r, h, n, 0.0f, std);
    be->to_device(d, h, sizeof(float) * n);
    free(h);
    return d;
}

// ----------------------------------------------------------------------------
// GEMM

static void bench_gemm(const char *label, bool ta, bool tb, int M, int N, int K, rng_t *r)
{
    float *A = dev_random((int64_t)M * K, 1, r), *B = dev_random((int64_t)K * N, 1, r);
    float *C = be->alloc(sizeof(float) * M * N);
    int lda = ta ? M : K, ldb = tb ? K : N;
    be->gemm(ta, tb, M, N, K, 1.0f, A, lda, 0, B, ldb, 0, 0.0f, C, N, 0, 1);   /* warm-up */
    be->sync();
    int iters = 0;
    double t0 = now_s(), t;
    do {
        be->gemm(ta, tb, M, N, K, 1.0f, A, lda, 0, B, ldb, 0, 0.0f, C, N, 0, 1);
        iters++;
        if (iters % 5 == 0)
            be->sync();
    } while ((t = now_s() - t0) < 0.5 || iters % 5);
    printf("gemm %-22s %5d x %5d x %5d  %8.3f ms  %6.1f TFLOP/s\n", label, M, N, K,
           1e3 * t / iters, 2.0 * M * N * K * iters / t / 1e12);
    be->free(A), be->free(B), be->free(C);
}

// ----------------------------------------------------------------------------
// attention

static void bench_attention(int B, int T, int Hq, int Hkv, int hd, rng_t *r)
{
    attn_shape_t s = {.B = B, .Tq = T, .kv_cap = T, .q_offset = 0, .n_heads = Hq,
                      .n_kv_heads = Hkv, .head_dim = hd, .scale = 1.0f / sqrtf((float)hd)};
    int64_t nq = (int64_t)B * T * Hq * hd, nk = (int64_t)B * T * Hkv * hd;
    float *q = dev_random(nq, 1, r), *k = dev_random(nk, 1, r), *v = dev_random(nk, 1, r);
    float *g = dev_random(nq, 1, r);
    float *out = be->alloc(sizeof(float) * nq), *lse = be->alloc(sizeof(float) * B * Hq * T);
    float *dq = be->alloc(sizeof(float) * nq), *dk = be->alloc(sizeof(float) * nk);
    float *dv = be->alloc(sizeof(float) * nk);
    int32_t *klen_h = malloc(sizeof(int32_t) * B), *klen = be->alloc(sizeof(int32_t) * B);
    for (int b = 0; b < B; b++)
        klen_h[b] = T;
    be->to_device(klen, klen_h, sizeof(int32_t) * B);
    int iters = 10;
    be->attn_fwd(out, lse, q, k, v, klen, &s);
    be->attn_bwd(dq, dk, dv, g, out, lse, q, k, v, klen, &s);
    be->sync();
    double t0 = now_s();
    for (int i = 0; i < iters; i++)
        be->attn_fwd(out, lse, q, k, v, klen, &s);
    be->sync();
    double tf = (now_s() - t0) / iters;
    t0 = now_s();
    for (int i = 0; i < iters; i++)
        be->attn_bwd(dq, dk, dv, g, out, lse, q, k, v, klen, &s);
    be->sync();
    double tb = (now_s() - t0) / iters;
    /* causal: half the T x T scores; forward 2 products, backward 5 (the
     * FlashAttention count; this backward recomputes two more) */
    double f = 2.0 * 2.0 * B * Hq * (double)T * T * hd / 2;
    printf("attention B=%d T=%d H=%d/%d hd=%d  fwd %7.3f ms (%5.1f TFLOP/s)  "
           "bwd %7.3f ms (%5.1f TFLOP/s)\n", B, T, Hq, Hkv, hd, 1e3 * tf, f / tf / 1e12,
           1e3 * tb, 2.5 * f / tb / 1e12);
    be->free(q), be->free(k), be->free(v), be->free(g), be->free(out), be->free(lse);
    be->free(dq), be->free(dk), be->free(dv), be->free(klen), free(klen_h);
}

// ----------------------------------------------------------------------------
// a Llama training step

static int bench_model(int argc, char **argv, double peak, rng_t *r)
{
    llama_config_t c = {
        .vocab_size = arg_int(argc, argv, "--vocab", 32768),
        .hidden_size = arg_int(argc, argv, "--hidden", 2048),
        .num_layers = arg_int(argc, argv, "--layers", 8),
        .num_heads = arg_int(argc, argv, "--heads", 16),
        .num_kv_heads = arg_int(argc, argv, "--kv-heads", 8),
        .max_position_embeddings = 8192,
        .rope_theta = 500000.0,   /* Llama 3 */
        .rms_norm_eps = 1e-5,
        .bos_token_id = -1,
        .torch_dtype = "float32",
    };
    c.intermediate_size = arg_int(argc, argv, "--intermediate", 8 * c.hidden_size / 3 / 64 * 64);
    c.head_dim = c.hidden_size / c.num_heads;
    int B = arg_int(argc, argv, "--batch", 4), T = arg_int(argc, argv, "--seq", 1024);
    int iters = arg_int(argc, argv, "--iters", 3);
    deft_err_t err = {0};
    llama_model_t m;
    if (llama_create(&m, &c, be, &err) || llama_alloc_grads(&m, &err)) {
        fprintf(stderr, "bench_cuda: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < m.n_params; i++) {
        llama_param_t *p = &m.params[i];
        float *h = malloc(sizeof(float) * p->numel);
        if (p->ndim == 2)
            rng_fill_normal(r, h, p->numel, 0.0f, 0.02f);
        else
            for (int64_t j = 0; j < p->numel; j++)
                h[j] = 1.0f;
        be->to_device(p->data, h, sizeof(float) * p->numel);
        free(h);
    }
    int64_t N = (int64_t)B * T, V = c.vocab_size, d = c.hidden_size;
    int32_t *ids = malloc(sizeof(int32_t) * N), *lens = malloc(sizeof(int32_t) * B);
    for (int64_t i = 0; i < N; i++)
        ids[i] = (int32_t)rng_below(r, (uint64_t)V);
    for (int b = 0; b < B; b++)
        lens[b] = T;
    float *logits = malloc(sizeof(float) * N * V), *dh = malloc(sizeof(float) * N * d);
    for (int64_t i = 0; i < N * d; i++)
        dh[i] = 1e-3f * (float)(rng_uniform(r) - 0.5);
    int64_t qd = (int64_t)c.num_heads * c.head_dim, kd = (int64_t)c.num_kv_heads * c.head_dim;
    int64_t n_body = c.num_layers * (d * (qd + 2 * kd) + qd * d + 3 * d * c.intermediate_size);
    double attn = 12.0 * c.num_layers * c.num_heads * c.head_dim * (double)T * N;
    printf("model d=%lld L=%d H=%d/%d F=%d V=%lld, batch %d x %d tokens\n", (long long)d,
           c.num_layers, c.num_heads, c.num_kv_heads, c.intermediate_size, (long long)V, B, T);
    /* body: hidden states out, their gradient in (no head, no V-wide copies);
     * head: logits copied to the host and their gradient back, as a loss
     * computed on the host needs */
    for (int with_head = 0; with_head < 2; with_head++) {
        double flops = 6.0 * (n_body + (with_head ? V * d : 0)) * N + attn, t = 0;
        for (int it = 0; it <= iters; it++) {   /* iteration 0 warms up */
            double t0 = now_s();
            int rc = llama_forward(&m, ids, lens, B, T, NULL, with_head ? logits : NULL, true,
                                   &err);
            if (!rc)
                rc = llama_backward(&m, with_head ? logits : NULL, with_head ? NULL : dh, &err);
            be->sync();
            if (rc || backend_cuda_status(&err)) {
                fprintf(stderr, "bench_cuda: %s\n", err.msg);
                return 1;
            }
            if (it)
                t += now_s() - t0;
        }
        t /= iters;
        printf("llama fwd+bwd %-5s %8.1f ms  %8.0f tok/s  %6.2f TFLOP/s  MFU %5.1f%% of %.0f\n",
               with_head ? "+head" : "body", 1e3 * t, N / t, flops / t / 1e12,
               100.0 * flops / t / 1e12 / peak, peak);
    }
    llama_free(&m);
    free(ids), free(lens), free(logits), free(dh);
    return 0;
}

int main(int argc, char **argv)
{
    deft_err_t err = {0};
    if (backend_cuda_init(&be, &err)) {
        printf("bench_cuda: skipped: %s\n", err.msg);
        return 0;
    }
    cuda_device_info_t info;
    backend_cuda_device_info(&info);
    double peak = arg_int(argc, argv, "--peak", 67);
    printf("device: %s, %d SMs at %.2f GHz, %.0f GiB, compute capability %d.%d\n", info.name,
           info.sm_count, info.clock_ghz, info.mem_gib, info.cc_major, info.cc_minor);
    rng_t r;
    rng_init(&r, 7);
    bench_gemm("NN square", false, false, 4096, 4096, 4096, &r);
    bench_gemm("NT (x W^T, forward)", false, true, 4096, 5440, 2048, &r);
    bench_gemm("NN (dy W, backward)", false, false, 4096, 2048, 5440, &r);
    bench_gemm("TN (dy^T x, dW)", true, false, 5440, 2048, 4096, &r);
    bench_attention(4, 1024, 16, 8, 128, &r);
    bench_attention(4, 2048, 16, 8, 128, &r);
    bench_attention(8, 1024, 32, 8, 64, &r);
    int rc = bench_model(argc, argv, peak, &r);
    if (!rc && backend_cuda_status(&err)) {
        fprintf(stderr, "bench_cuda: %s\n", err.msg);
        rc = 1;
    }
    return rc;
}

#endif
