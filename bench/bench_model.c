/* Training-step throughput of the Llama model on the CPU backend: forward
 * to logits and backward from given logit gradients, in tokens/s and
 * GFLOP/s. bench/model.sh runs it beside PyTorch on the same shape.
 *
 * FLOPs per step (PaLM appendix B convention, no causal discount):
 *   6 * N * tokens + 12 * L * H * hd * T * tokens
 * N: parameters that enter a matrix product (every layer's projections and
 * the LM head; the embedding lookup does no arithmetic), L layers, H query
 * heads of size hd, T sequence length. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/llama.h"
#include "util/log.h"
#include "util/rng.h"

static int arg_int(int argc, char **argv, const char *name, int def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return atoi(argv[i + 1]);
    return def;
}

int main(int argc, char **argv)
{
    llama_config_t c = {
        .vocab_size = arg_int(argc, argv, "--vocab", 8192),
        .hidden_size = arg_int(argc, argv, "--hidden", 256),
        .num_layers = arg_int(argc, argv, "--layers", 4),
        .num_heads = arg_int(argc, argv, "--heads", 8),
        .num_kv_heads = arg_int(argc, argv, "--kv-heads", 4),
        .max_position_embeddings = 4096,
        .rope_theta = 500000.0,
        .rms_norm_eps = 1e-5,
        .bos_token_id = -1,
        .torch_dtype = "float32",
    };
    /* SwiGLU width: 2/3 of 4d, rounded down to a multiple of 64 */
    c.intermediate_size = arg_int(argc, argv, "--intermediate", 8 * c.hidden_size / 3 / 64 * 64);
    c.head_dim = c.hidden_size / c.num_heads;
    int B = arg_int(argc, argv, "--batch", 4), T = arg_int(argc, argv, "--seq", 256);
    int iters = arg_int(argc, argv, "--iters", 5);
    deft_err_t err = {0};
    llama_model_t m;
    if (llama_create(&m, &c, backend_cpu(), &err) || llama_alloc_grads(&m, &err)) {
        fprintf(stderr, "bench_model: %s\n", err.msg);
        return 1;
    }
    rng_t r;
    rng_init(&r, 1);
    for (int i = 0; i < m.n_params; i++) {
        if (m.params[i].ndim == 2)
            rng_fill_normal(&r, m.params[i].data, m.params[i].numel, 0.0f, 0.02f);
        else
            for (int64_t j = 0; j < m.params[i].numel; j++)
                m.params[i].data[j] = 1.0f;
    }
    int64_t N = (int64_t)B * T, V = c.vocab_size;
    /* ids, lens: [B, T], [B]; logits, dlogits: [B, T, V] */
    int32_t *ids = xmalloc(sizeof(int32_t) * N), *lens = xmalloc(sizeof(int32_t) * B);
    float *logits = xmalloc(sizeof(float) * N * V), *dlogits = xmalloc(sizeof(float) * N * V);
    for (int64_t i = 0; i < N; i++)
        ids[i] = (int32_t)rng_below(&r, (uint64_t)V);
    for (int b = 0; b < B; b++)
        lens[b] = T;
    rng_fill_normal(&r, dlogits, N * V, 0.0f, 1e-4f);

    int64_t n_mat = llama_config_nparams(&c) - (int64_t)V * c.hidden_size -
                    (int64_t)c.hidden_size * (2 * c.num_layers + 1);
    if (c.tie_word_embeddings)
        n_mat += (int64_t)V * c.hidden_size;
    double flops = 6.0 * n_mat * N + 12.0 * c.num_layers * c.num_heads * c.head_dim * T * N;

    /* best and mean over iters: on a shared machine the best is the steadier */
    double best = 1e30, total = 0;
    for (int it = -1; it < iters; it++) {  /* iteration -1 warms caches and allocations */
        double t0 = wall_seconds();
        llama_zero_grads(&m);
        if (llama_forward(&m, ids, lens, B, T, NULL, logits, true, &err) ||
            llama_backward(&m, dlogits, NULL, &err)) {
            fprintf(stderr, "bench_model: %s\n", err.msg);
            return 1;
        }
        double dt = wall_seconds() - t0;
        if (it >= 0) {
            total += dt;
            best = dt < best ? dt : best;
        }
    }
    double mean = total / iters;
    printf("{\"impl\": \"deft\", \"B\": %d, \"T\": %d, \"V\": %d, \"d\": %d, \"F\": %d, "
           "\"L\": %d, \"H\": %d, \"KV\": %d, ", B, T, c.vocab_size, c.hidden_size,
           c.intermediate_size, c.num_layers, c.num_heads, c.num_kv_heads);
    printf("\"params_matmul\": %lld, \"tokens\": %lld, "
           "\"gflop_per_step\": %.3f, \"mean_s\": %.4f, \"best_s\": %.4f, "
           "\"tokens_per_s\": %.1f, \"gflops\": %.2f}\n",
           (long long)n_mat, (long long)N, flops / 1e9, mean, best, N / mean,
           flops / mean / 1e9);
    free(ids);
    free(lens);
    free(logits);
    free(dlogits);
    llama_free(&m);
    return 0;
}
