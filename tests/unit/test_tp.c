/* Tensor parallelism of the Llama model against the whole model on one rank:
 * for every tp that divides the rank count and the model's heads, vocabulary
 * and MLP width, a tp x dp grid (each dp group a slice of the batch) must
 * reproduce logits, hidden states, log-probs, the loss, every gathered
 * parameter gradient (summed over dp) and greedy generation of the tp 1 model.
 * Usage: test_tp [MODEL_DIR]; tests/cli/tp_mpi.sh runs it with 1, 2, 4 ranks. */
#include <string.h>

#include "model/llama.h"
#include "model/losses.h"
#include "mpi/comm_grid.h"
#include "test_util.h"

#define TOL 1e-5   /* relative to a tensor's largest magnitude: fp32 sums in another order */

enum { B = 4, T = 9, N_GEN = 12 };

static const int32_t lens[B] = {9, 6, 8, 1};

/* What one model computes on a slice of the batch; host memory. */
typedef struct {
    float *hidden;   /* [b, T, d] */
    float *logits;   /* [b, T, V] whole rows, gathered from the shards */
    float *logp;     /* [b, T] llama_logprobs */
    double loss;     /* this slice's share of the global loss, summed over dp */
    float **grads;   /* per parameter, full shape, summed over dp */
    int32_t gen[N_GEN];
    int n_gen;
} result_t;

static double worst_seen;   /* largest relative difference of any comparison, for the log */

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static double uniform(void)
{
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* max |a - b| <= TOL * max |b| */
static bool close_rel(const float *a, const float *b, int64_t n, double *worst)
{
    double dmax = 0.0, bmax = 0.0;
    for (int64_t i = 0; i < n; i++) {
        dmax = fmax(dmax, fabs((double)a[i] - (double)b[i]));
        bmax = fmax(bmax, fabs((double)b[i]));
    }
    *worst = bmax > 0 ? dmax / bmax : dmax;
    worst_seen = fmax(worst_seen, *worst);
    return dmax <= TOL * bmax;
}

/* The test objective on sequences [s0, s0 + nb) of the global batch: the
 * token-mean NLL over the whole batch plus a term linear in the hidden
 * states (the path R_Q takes), 0.1 * sum_n r . h_n / (B*T). Gradients go into
 * m's parameters; returns the slice's loss. */
static int run_loss(llama_model_t *m, const int32_t *ids, int s0, int nb, const float *r,
                    double *loss, float *logits_out, float *hidden, deft_err_t *err)
{
    const backend_t *be = m->be;
    int d = m->cfg.hidden_size;
    int64_t N = (int64_t)nb * T, V = m->vocab_local;
    int n_tok = 0;
    for (int b = 0; b < B; b++)
        n_tok += lens[b] > 1 ? lens[b] - 1 : 0;
    float *logits = xmalloc(sizeof(float) * N * V);   /* [nb, T, V/tp] */
    int rc = llama_forward(m, ids + (int64_t)s0 * T, lens + s0, nb, T, hidden, logits, true,
                           err);
    if (rc) {
        free(logits);
        return rc;
    }
    int32_t *tgt = xmalloc(sizeof(int32_t) * N);
    float *lp = xmalloc(sizeof(float) * N), *g = xmalloc(sizeof(float) * N);
    float *lse = xmalloc(sizeof(float) * N);
    for (int64_t n = 0; n < N; n++) {
        int b = s0 + (int)(n / T), t = (int)(n % T);
        tgt[n] = t + 1 < lens[b] ? ids[(int64_t)b * T + t + 1] : -1;
        g[n] = tgt[n] >= 0 ? -1.0f / (float)n_tok : 0.0f;
    }
    float *dlogits = xcalloc((size_t)(N * V), sizeof(float));   /* [nb, T, V/tp] */
    float *dhidden = xmalloc(sizeof(float) * N * d);            /* [nb, T, d] */
    if (m->tp_size == 1) {
        /* the backend's own op, as the train stage uses it */
        float *z_d = be->alloc(sizeof(float) * N * V), *lp_d = be->alloc(sizeof(float) * N);
        float *g_d = be->alloc(sizeof(float) * N), *dz_d = be->alloc(sizeof(float) * N * V);
        int32_t *t_d = be->alloc(sizeof(int32_t) * N);
        be->to_device(z_d, logits, sizeof(float) * N * V);
        be->to_device(t_d, tgt, sizeof(int32_t) * N);
        be->to_device(g_d, g, sizeof(float) * N);
        be->logsoftmax_gather_fwd(lp_d, z_d, t_d, (int)N, (int)V);
        be->logsoftmax_gather_bwd(dz_d, z_d, t_d, g_d, (int)N, (int)V);
        be->to_host(lp, lp_d, sizeof(float) * N);
        be->to_host(dlogits, dz_d, sizeof(float) * N * V);
        be->free(z_d), be->free(lp_d), be->free(g_d), be->free(dz_d), be->free(t_d);
    } else {
        rc = llama_tp_logsoftmax_gather(m, logits, tgt, N, lp, lse, err);
        llama_tp_logsoftmax_gather_bwd(m, dlogits, logits, tgt, lse, g, N);
    }
    double l = 0.0;
    for (int64_t n = 0; n < N; n++) {
        l += -(double)lp[n] / n_tok;
        for (int k = 0; k < d; k++) {
            dhidden[n * d + k] = 0.1f * r[k] / (float)(B * T);
            l += 0.1 * r[k] * hidden[n * d + k] / (B * T);
        }
    }
    *loss = l;
    if (!rc)
        rc = llama_backward(m, dlogits, dhidden, err);
    if (logits_out)
        memcpy(logits_out, logits, sizeof(float) * N * V);
    free(logits), free(tgt), free(lp), free(g), free(lse), free(dlogits), free(dhidden);
    return rc;
}

/* Everything of result_t for sequences [s0, s0 + nb) on model m (its tp group
 * is m->tp), with gradients and the loss summed over dp. */
static int run_all(llama_model_t *m, comm_t *dp, const int32_t *ids, int s0, int nb,
                   const float *r, result_t *out, deft_err_t *err)
{
    int d = m->cfg.hidden_size, V = m->cfg.vocab_size;
    int64_t N = (int64_t)nb * T, Vl = m->vocab_local;
    out->hidden = xmalloc(sizeof(float) * N * d);
    out->logits = xmalloc(sizeof(float) * N * V);
    out->logp = xmalloc(sizeof(float) * N);
    out->grads = xcalloc((size_t)m->n_params, sizeof(float *));
    int rc = llama_alloc_grads(m, err);
    if (rc)
        return rc;
    llama_zero_grads(m);
    float *local = xmalloc(sizeof(float) * N * Vl);   /* [nb, T, V/tp] */
    rc = run_loss(m, ids, s0, nb, r, &out->loss, local, out->hidden, err);
    /* whole logit rows: shard r holds columns [r*V/tp, (r+1)*V/tp) */
    float *all = xmalloc(sizeof(float) * N * V);   /* [tp, nb, T, V/tp] */
    if (m->tp_size == 1)
        memcpy(all, local, sizeof(float) * N * V);
    else if (!rc)
        rc = comm_allgather_f32(m->tp, local, (size_t)(N * Vl), all, err);
    for (int p = 0; p < m->tp_size; p++)
        for (int64_t n = 0; n < N; n++)
            memcpy(out->logits + n * V + p * Vl, all + (p * N + n) * Vl, sizeof(float) * Vl);
    free(all), free(local);
    double loss = out->loss;
    if (!rc && dp)
        rc = comm_allreduce_sum_f64(dp, &loss, 1, err);
    out->loss = loss;
    for (int i = 0; i < m->n_params && !rc; i++) {
        const llama_param_t *p = &m->params[i];
        int64_t n = p->full_shape[0] * (p->ndim == 2 ? p->full_shape[1] : 1);
        out->grads[i] = xmalloc(sizeof(float) * n);
        rc = llama_param_gather(m, i, true, out->grads[i], -1, err);
        if (!rc && dp)
            rc = comm_allreduce_sum_f32(dp, out->grads[i], (size_t)n, err);
    }
    if (!rc)
        rc = llama_logprobs(m, ids + (int64_t)s0 * T, lens + s0, nb, T, out->logp, err);
    int32_t eos = -1;
    if (!rc)
        rc = llama_generate(m, ids, 5, N_GEN, 0.0f, 1.0f, 0, &eos, 1, out->gen, &out->n_gen,
                            err);
    return rc;
}

static void result_free(const llama_model_t *m, result_t *r)
{
    for (int i = 0; r->grads && i < m->n_params; i++)
        free(r->grads[i]);
    free(r->grads), free(r->hidden), free(r->logits), free(r->logp);
    memset(r, 0, sizeof(*r));
}

/* Bits of parameter i's gradient on every rank of the tp group equal rank 0's. */
static bool same_on_group(const llama_model_t *m, int i)
{
    const llama_param_t *p = &m->params[i];
    float *mine = xmalloc(sizeof(float) * p->numel);
    float *all = xmalloc(sizeof(float) * p->numel * m->tp_size);
    m->be->to_host(mine, p->grad, sizeof(float) * p->numel);
    deft_err_t err = {0};
    bool same = comm_allgather_f32(m->tp, mine, (size_t)p->numel, all, &err) == DEFT_OK;
    for (int r = 1; r < m->tp_size && same; r++)
        same = !memcmp(all, all + r * p->numel, sizeof(float) * p->numel);
    free(mine), free(all);
    return same;
}

static void compare(const char *dir, int tp, const llama_model_t *ref_m, const result_t *ref,
                    const float *r, const int32_t *ids)
{
    comm_t *world = comm_world();
    deft_err_t err = {0};
    comm_grid_t g;
    if (comm_grid_create(world, tp, &g, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    llama_model_t m;
    int rc = llama_load_tp(&m, dir, backend_cpu(), g.tp, &err);
    CHECK_MSG(rc == DEFT_OK, "tp %d: %s", tp, err.msg);
    if (rc) {
        comm_grid_free(&g);
        return;
    }
    int nb = B / g.dp_size, s0 = g.dp_rank * nb;
    const llama_config_t *c = &m.cfg;
    CHECK(m.tp_size == tp && m.vocab_local * tp == c->vocab_size);
    CHECK(m.params[llama_layer_param(0, LLAMA_K)].shape[0] * tp ==
          (int64_t)c->num_kv_heads * c->head_dim);
    result_t got = {0};
    rc = run_all(&m, g.dp_size > 1 ? g.dp : NULL, ids, s0, nb, r, &got, &err);
    CHECK_MSG(rc == DEFT_OK, "tp %d: %s", tp, err.msg);
    int64_t N = (int64_t)nb * T, d = c->hidden_size, V = c->vocab_size, off = (int64_t)s0 * T;
    double w;
    if (!rc) {
        CHECK_MSG(close_rel(got.hidden, ref->hidden + off * d, N * d, &w),
                  "tp %d x dp %d: hidden states off by %.3g", tp, g.dp_size, w);
        CHECK_MSG(close_rel(got.logits, ref->logits + off * V, N * V, &w),
                  "tp %d x dp %d: logits off by %.3g", tp, g.dp_size, w);
        CHECK_MSG(close_rel(got.logp, ref->logp + off, N, &w),
                  "tp %d x dp %d: log-probs off by %.3g", tp, g.dp_size, w);
        CHECK_MSG(fabs(got.loss - ref->loss) <= TOL * fabs(ref->loss),
                  "tp %d x dp %d: loss %.9g vs %.9g", tp, g.dp_size, got.loss, ref->loss);
        int bad = 0;
        for (int i = 0; i < m.n_params; i++) {
            const llama_param_t *p = &m.params[i];
            int64_t n = p->full_shape[0] * (p->ndim == 2 ? p->full_shape[1] : 1);
            if (!close_rel(got.grads[i], ref->grads[i], n, &w)) {
                fprintf(stderr, "tp %d x dp %d: gradient of %s off by %.3g\n", tp, g.dp_size,
                        p->name, w);
                bad++;
            }
            /* replicated weights must stay replicated: the same update everywhere */
            if (p->shard_dim == LLAMA_SHARD_NONE && tp > 1 && !same_on_group(&m, i)) {
                fprintf(stderr, "tp %d: gradient of %s differs between tp ranks\n", tp,
                        p->name);
                bad++;
            }
        }
        CHECK_MSG(bad == 0, "tp %d x dp %d: %d gradients differ", tp, g.dp_size, bad);
        CHECK(got.n_gen == ref->n_gen &&
              !memcmp(got.gen, ref->gen, sizeof(int32_t) * (size_t)ref->n_gen));
    }
    /* a gather to one rank (as checkpoints do) equals the gather to all */
    int tests[] = {0, llama_layer_param(0, LLAMA_Q), llama_layer_param(1, LLAMA_DOWN),
                   llama_layer_param(1, LLAMA_MLP_NORM)};
    for (int k = 0; k < (int)DEFT_ARRAY_LEN(tests) && !rc; k++) {
        const llama_param_t *p = &m.params[tests[k]];
        int64_t n = p->full_shape[0] * (p->ndim == 2 ? p->full_shape[1] : 1);
        float *all = xmalloc(sizeof(float) * n);
        float *one = m.tp_rank == tp - 1 ? xmalloc(sizeof(float) * n) : NULL;
        CHECK(llama_param_gather(&m, tests[k], false, all, -1, &err) == DEFT_OK);
        CHECK(llama_param_gather(&m, tests[k], false, one, tp - 1, &err) == DEFT_OK);
        if (one)
            CHECK_MSG(!memcmp(all, one, sizeof(float) * n), "tp %d: gather of %s to rank %d",
                      tp, p->name, tp - 1);
        free(all), free(one);
    }
    /* R_Q's head vector from vocabulary shards */
    double *q = xmalloc(sizeof(double) * V), *u = xmalloc(sizeof(double) * d);
    double *u_ref = xmalloc(sizeof(double) * d);
    float *head = xmalloc(sizeof(float) * V * d);
    double qs = 0.0;
    for (int64_t v = 0; v < V; v++)
        qs += q[v] = (double)((v * 37) % 11) - 5.0;
    ref_m->be->to_host(head, ref_m->lm_head, sizeof(float) * V * d);
    loss_rq_head_vector_f64(head, q, (int)V, (int)d, u_ref);
    CHECK(llama_rq_head_vector(&m, q, u, &err) == DEFT_OK);
    double du = 0.0, um = 0.0;
    for (int k = 0; k < d; k++)
        du = fmax(du, fabs(u[k] - u_ref[k])), um = fmax(um, fabs(u_ref[k]));
    CHECK_MSG(du <= 1e-12 * um + 1e-12, "tp %d: head vector off by %.3g (sum q %g)", tp, du,
              qs);
    free(q), free(u), free(u_ref), free(head);
    result_free(&m, &got);
    llama_free(&m);
    comm_grid_free(&g);
}

/* The float collectives tensor parallelism rests on: the ordered sum gives
 * the rank-order additions' bits on every rank (also across chunk borders and
 * blocks of unequal size), max and allgather are exact. */
static void test_float_collectives(comm_t *c)
{
    enum { N = 1001 };
    int rank = comm_rank(c), size = comm_size(c);
    float x[N], mx[N], all[N * 4];
    for (int i = 0; i < N; i++)
        x[i] = mx[i] = 0.1f * (float)(rank + 1) + (float)i / 3.0f;
    deft_err_t err = {0};
    comm_set_max_chunk_bytes(40);
    CHECK(comm_allreduce_sum_f32(c, x, N, &err) == DEFT_OK);
    CHECK(comm_allreduce_max_f32(c, mx, N, &err) == DEFT_OK);
    comm_set_max_chunk_bytes(0);
    bool sum_ok = true, max_ok = true;
    for (int i = 0; i < N; i++) {
        float s = 0.1f * 1.0f + (float)i / 3.0f;
        for (int r = 1; r < size; r++)
            s += 0.1f * (float)(r + 1) + (float)i / 3.0f;
        sum_ok &= x[i] == s;
        max_ok &= mx[i] == 0.1f * (float)size + (float)i / 3.0f;
    }
    CHECK(sum_ok);
    CHECK(max_ok);
    if (size <= 4) {
        float mine[N];
        for (int i = 0; i < N; i++)
            mine[i] = (float)(rank * N + i);
        CHECK(comm_allgather_f32(c, mine, N, all, &err) == DEFT_OK);
        bool ok = true;
        for (int i = 0; i < N * size; i++)
            ok &= all[i] == (float)i;
        CHECK(ok);
    }
}

/* At tp 1 the sharded log-softmax must agree with the backend's op. */
static void test_logsoftmax_tp1(llama_model_t *m)
{
    enum { NR = 5 };
    int V = m->cfg.vocab_size;
    float *z = xmalloc(sizeof(float) * NR * V), *dz = xcalloc((size_t)NR * V, sizeof(float));
    float *dz_ref = xmalloc(sizeof(float) * NR * V);
    int32_t tgt[NR] = {0, V - 1, -1, 7, 3};
    float lp[NR], lse[NR], lp_ref[NR], g[NR] = {0.5f, -1.0f, 2.0f, 1.0f, 0.0f};
    for (int i = 0; i < NR * V; i++)
        z[i] = (float)(8.0 * uniform() - 4.0);
    const backend_t *be = m->be;
    float *z_d = be->alloc(sizeof(float) * NR * V), *dz_d = be->alloc(sizeof(float) * NR * V);
    float *lp_d = be->alloc(sizeof(float) * NR), *g_d = be->alloc(sizeof(float) * NR);
    int32_t *t_d = be->alloc(sizeof(int32_t) * NR);
    be->to_device(z_d, z, sizeof(float) * NR * V);
    be->to_device(t_d, tgt, sizeof(tgt));
    be->to_device(g_d, g, sizeof(g));
    be->logsoftmax_gather_fwd(lp_d, z_d, t_d, NR, V);
    be->logsoftmax_gather_bwd(dz_d, z_d, t_d, g_d, NR, V);
    be->to_host(lp_ref, lp_d, sizeof(lp_ref));
    be->to_host(dz_ref, dz_d, sizeof(float) * NR * V);
    deft_err_t err = {0};
    CHECK(llama_tp_logsoftmax_gather(m, z, tgt, NR, lp, lse, &err) == DEFT_OK);
    llama_tp_logsoftmax_gather_bwd(m, dz, z, tgt, lse, g, NR);
    double w;
    CHECK(close_rel(lp, lp_ref, NR, &w));
    CHECK(lp[2] == 0.0f);
    CHECK(close_rel(dz, dz_ref, (int64_t)NR * V, &w));
    be->free(z_d), be->free(dz_d), be->free(lp_d), be->free(g_d), be->free(t_d);
    free(z), free(dz), free(dz_ref);
}

/* Gathering and setting whole tensors round-trips, and sizes that cannot be
 * split are refused with the count in the message. */
static void test_shapes(llama_model_t *m)
{
    deft_err_t err = {0};
    llama_config_t c = m->cfg;
    c.num_kv_heads = 3, c.num_heads = 6;
    CHECK(llama_tp_check(&c, 2, &err) == DEFT_ERR_USAGE);
    CHECK(strstr(err.msg, "num_key_value_heads = 3") != NULL);
    c = m->cfg;
    c.vocab_size = 1001;
    CHECK(llama_tp_check(&c, 1, &err) == DEFT_OK);
    CHECK(llama_tp_check(&c, 2, &err) == DEFT_ERR_USAGE && strstr(err.msg, "vocab_size = 1001"));
    c = m->cfg;
    c.num_kv_heads = 4, c.num_heads = 8, c.vocab_size = 512, c.intermediate_size = 66;
    CHECK(llama_tp_check(&c, 4, &err) == DEFT_ERR_USAGE &&
          strstr(err.msg, "intermediate_size = 66"));
    int i = llama_layer_param(1, LLAMA_O);
    llama_param_t *p = &m->params[i];
    CHECK(p->shard_dim == LLAMA_SHARD_COLS && p->shard_offset == 0 &&
          p->full_shape[1] == p->shape[1]);
    float *full = xmalloc(sizeof(float) * p->numel), *back = xmalloc(sizeof(float) * p->numel);
    for (int64_t k = 0; k < p->numel; k++)
        full[k] = (float)k;
    llama_param_set_full(m, i, full);
    CHECK(llama_param_gather(m, i, false, back, -1, &err) == DEFT_OK);
    CHECK(!memcmp(full, back, sizeof(float) * p->numel));
    free(full), free(back);
}

int main(int argc, char **argv)
{
    deft_err_t err = {0};
    if (comm_init(&argc, &argv, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const char *dir = argc > 1 ? argv[1] : "tests/fixtures/model/tiny-llama3";
    comm_t *world = comm_world();
    llama_model_t ref_m;
    if (llama_load(&ref_m, dir, backend_cpu(), &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const llama_config_t *c = &ref_m.cfg;
    int32_t ids[B * T];
    float *r = xmalloc(sizeof(float) * c->hidden_size);
    for (int i = 0; i < B * T; i++)
        ids[i] = (int32_t)(uniform() * c->vocab_size);
    for (int k = 0; k < c->hidden_size; k++)
        r[k] = (float)(2.0 * uniform() - 1.0);

    /* the reference: the whole batch on one rank, tp 1 */
    result_t ref = {0};
    CHECK_MSG(run_all(&ref_m, NULL, ids, 0, B, r, &ref, &err) == DEFT_OK, "%s", err.msg);
    int n_tp = 0;
    for (int tp = 1; tp <= comm_size(world); tp *= 2) {
        if (comm_size(world) % tp || B % (comm_size(world) / tp) ||
            llama_tp_check(c, tp, &err))
            continue;
        compare(dir, tp, &ref_m, &ref, r, ids);
        n_tp++;
    }
    CHECK(n_tp >= 1);
    test_float_collectives(world);
    test_logsoftmax_tp1(&ref_m);
    test_shapes(&ref_m);
    result_free(&ref_m, &ref);
    llama_free(&ref_m);
    free(r);
    if (comm_rank(world) == 0)
        printf("test_tp %s: %d ranks, %d tp sizes, largest relative difference %.3g\n", dir,
               comm_size(world), n_tp, worst_seen);
    /* one rank's failure fails every rank */
    int64_t f = test_failed;
    comm_allreduce_max_i64(world, &f, 1, &err);
    if (f > 0 && test_failed == 0)
        test_failed = 1;
    comm_finalize();
    TEST_DONE();
}
