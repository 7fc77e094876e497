/* Tensor-parallel training step: forward, sharded log-softmax and backward
 * of a Llama model (a token-mean NLL) on every tp that divides the rank
 * count (a tp x dp grid; every dp group runs the same step), best of S
 * steps in ms per step and tokens/s per group, averaged over ranks.
 * Run under mpirun: mpirun -np 2 bench_tp [--layers L --hidden D --ffn F
 * --heads H --kv-heads K --vocab V --batch B --len T --steps S]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/llama.h"
#include "mpi/comm_grid.h"

static int arg_int(int argc, char **argv, const char *name, int def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return atoi(argv[i + 1]);
    return def;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const deft_err_t *err)
{
    fprintf(stderr, "bench_tp: %s\n", err->msg);
    comm_abort(comm_world(), 1, "bench_tp failed");
}

/* Seconds per step of forward + log-softmax + backward on model m. */
static double time_steps(llama_model_t *m, const int32_t *ids, const int32_t *lens, int B,
                         int T, int steps)
{
    deft_err_t err = {0};
    int64_t N = (int64_t)B * T, Vl = m->vocab_local;
    float *logits = xmalloc(sizeof(float) * N * Vl);     /* [B, T, V/tp] */
    float *dlogits = xmalloc(sizeof(float) * N * Vl);    /* [B, T, V/tp] */
    float *lp = xmalloc(sizeof(float) * N), *lse = xmalloc(sizeof(float) * N);
    float *g = xmalloc(sizeof(float) * N);
    int32_t *tgt = xmalloc(sizeof(int32_t) * N);
    for (int64_t n = 0; n < N; n++) {
        tgt[n] = n % T + 1 < T ? ids[n + 1] : -1;
        g[n] = tgt[n] >= 0 ? -1.0f / (float)N : 0.0f;
    }
    if (llama_alloc_grads(m, &err))
        die(&err);
    double best = INFINITY;
    for (int s = 0; s <= steps; s++) {   /* step 0 warms up the buffers */
        double t0 = now();
        llama_zero_grads(m);
        if (llama_forward(m, ids, lens, B, T, NULL, logits, true, &err) ||
            llama_tp_logsoftmax_gather(m, logits, tgt, N, lp, lse, &err))
            die(&err);
        memset(dlogits, 0, sizeof(float) * N * Vl);
        llama_tp_logsoftmax_gather_bwd(m, dlogits, logits, tgt, lse, g, N);
        if (llama_backward(m, dlogits, NULL, &err))
            die(&err);
        double dt = now() - t0;
        if (s > 0 && dt < best)
            best = dt;
    }
    free(logits), free(dlogits), free(lp), free(lse), free(g), free(tgt);
    return best;
}

int main(int argc, char **argv)
{
    deft_err_t err = {0};
    if (comm_init(&argc, &argv, &err))
        die(&err);
    comm_t *world = comm_world();
    llama_config_t c = {
        .vocab_size = arg_int(argc, argv, "--vocab", 8192),
        .hidden_size = arg_int(argc, argv, "--hidden", 256),
        .intermediate_size = arg_int(argc, argv, "--ffn", 1024),
        .num_layers = arg_int(argc, argv, "--layers", 4),
        .num_heads = arg_int(argc, argv, "--heads", 8),
        .num_kv_heads = arg_int(argc, argv, "--kv-heads", 4),
        .max_position_embeddings = 4096, .rope_theta = 500000.0, .rms_norm_eps = 1e-5,
        .bos_token_id = -1,
    };
    c.head_dim = c.hidden_size / c.num_heads;
    int B = arg_int(argc, argv, "--batch", 4), T = arg_int(argc, argv, "--len", 128);
    int steps = arg_int(argc, argv, "--steps", 3);
    int32_t *ids = xmalloc(sizeof(int32_t) * B * T), *lens = xmalloc(sizeof(int32_t) * B);
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < B * T; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)c.vocab_size);
    }
    for (int b = 0; b < B; b++)
        lens[b] = T;
    int P = comm_size(world);
    if (comm_rank(world) == 0)
        printf("bench_tp: %d layers, hidden %d, MLP %d, heads %d/%d, vocab %d; %d x %d tokens "
               "per step, %d ranks\n", c.num_layers, c.hidden_size, c.intermediate_size,
               c.num_heads, c.num_kv_heads, c.vocab_size, B, T, P);
    for (int tp = 1; tp <= P; tp *= 2) {
        if (P % tp || llama_tp_check(&c, tp, &err))
            continue;
        comm_grid_t g;
        if (comm_grid_create(world, tp, &g, &err))
            die(&err);
        llama_model_t m;
        if (llama_create_tp(&m, &c, backend_cpu(), g.tp, &err))
            die(&err);
        /* any values will do for timing: a small deterministic pattern */
        for (int i = 0; i < m.n_params; i++) {
            float *h = xmalloc(sizeof(float) * m.params[i].numel);
            for (int64_t k = 0; k < m.params[i].numel; k++)
                h[k] = m.params[i].ndim == 1 ? 1.0f : 0.02f * (float)((k * 7919 + i) % 17 - 8);
            m.be->to_device(m.params[i].data, h, sizeof(float) * m.params[i].numel);
            free(h);
        }
        double s = time_steps(&m, ids, lens, B, T, steps);
        double sum = s;
        if (comm_allreduce_sum_f64(world, &sum, 1, &err))
            die(&err);
        if (comm_rank(world) == 0)
            printf("tp %d x dp %d: %8.1f ms per step per group, %8.0f tokens/s per group\n", tp,
                   g.dp_size, 1e3 * sum / P, (double)B * T / (sum / P));
        llama_free(&m);
        comm_grid_free(&g);
    }
    free(ids), free(lens);
    comm_finalize();
    return 0;
}
