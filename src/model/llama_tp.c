/* Tensor parallelism around the Llama model (Megatron-style, docs/model.md):
 * gathering a parameter's shards into the whole tensor and back, the
 * log-softmax over a vocabulary split across ranks, and R_Q's head vector
 * u = W_head^T Q_diff from vocabulary shards. The sharded layers themselves
 * live in llama.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/llama.h"
#include "model/losses.h"

int llama_shard_gather(const llama_model_t *m, int i, const float *local, float *out,
                       int root, deft_err_t *err)
{
    const llama_param_t *p = &m->params[i];
    bool here = root < 0 || m->tp_rank == root;   /* this rank receives the whole */
    if (m->tp_size == 1 || p->shard_dim == LLAMA_SHARD_NONE) {
        if (here)
            memcpy(out, local, sizeof(float) * p->numel);
        return DEFT_OK;
    }
    size_t n = (size_t)p->numel;
    /* shards in rank order are the rows in order */
    if (p->shard_dim == LLAMA_SHARD_ROWS)
        return root < 0 ? comm_allgather_f32(m->tp, local, n, out, err)
                        : comm_gather_f32(m->tp, local, n, out, root, err);
    /* [tp, rows, cols]: every shard whole, then interleaved row by row */
    float *all = here ? xmalloc(sizeof(float) * n * m->tp_size) : NULL;
    int rc = root < 0 ? comm_allgather_f32(m->tp, local, n, all, err)
                      : comm_gather_f32(m->tp, local, n, all, root, err);
    int64_t rows = p->shape[0], cols = p->shape[1];
    for (int r = 0; r < m->tp_size && !rc && here; r++)
        for (int64_t y = 0; y < rows; y++)
            memcpy(out + y * p->full_shape[1] + r * cols, all + r * p->numel + y * cols,
                   sizeof(float) * cols);
    free(all);
    return rc;
}

void llama_shard_take(const llama_model_t *m, int i, const float *full, float *local)
{
    const llama_param_t *p = &m->params[i];
    if (p->shard_dim != LLAMA_SHARD_COLS) {
        int64_t first = p->shard_dim == LLAMA_SHARD_ROWS ? p->shard_offset * p->full_shape[1] : 0;
        memcpy(local, full + first, sizeof(float) * p->numel);
        return;
    }
    for (int64_t y = 0; y < p->shape[0]; y++)
        memcpy(local + y * p->shape[1], full + y * p->full_shape[1] + p->shard_offset,
               sizeof(float) * p->shape[1]);
}

int llama_param_gather(const llama_model_t *m, int i, bool grad, float *out, int root,
                       deft_err_t *err)
{
    const llama_param_t *p = &m->params[i];
    const float *src = grad ? p->grad : p->data;
    if (!src)
        return deft_fail(err, DEFT_ERR_INTERNAL, "llama: %s has no gradient to gather "
                         "(llama_alloc_grads first)", p->name);
    float *mine = xmalloc(sizeof(float) * p->numel);   /* [shape] this rank's shard */
    m->be->to_host(mine, src, sizeof(float) * p->numel);
    int rc = llama_shard_gather(m, i, mine, out, root, err);
    free(mine);
    return rc;
}

void llama_param_set_full(llama_model_t *m, int i, const float *full)
{
    llama_param_t *p = &m->params[i];
    float *mine = xmalloc(sizeof(float) * p->numel);   /* [shape] this rank's shard */
    llama_shard_take(m, i, full, mine);
    m->be->to_device(p->data, mine, sizeof(float) * p->numel);
    free(mine);
}

int llama_tp_sum(const llama_model_t *m, double *x, size_t n, deft_err_t *err)
{
    return m->tp_size == 1 ? DEFT_OK : comm_allreduce_sum_f64(m->tp, x, n, err);
}

// ----------------------------------------------------------------------------
// log-softmax over a sharded vocabulary

int llama_tp_logsoftmax_gather(const llama_model_t *m, const float *logits,
                               const int32_t *tgt, int64_t N, float *logp, float *lse,
                               deft_err_t *err)
{
    int64_t V = m->vocab_local, v0 = m->vocab_start;
    float *mx = xmalloc(sizeof(float) * (N ? N : 1));    /* [N] row max over all shards */
    float *zt = xmalloc(sizeof(float) * (N ? N : 1));    /* [N] target logit, from its owner */
    double *se = xmalloc(sizeof(double) * (N ? N : 1));  /* [N] sum of exp(z - max) */
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *z = logits + n * V;
        float best = -INFINITY;
        for (int64_t v = 0; v < V; v++)
            best = z[v] > best ? z[v] : best;
        mx[n] = best;
        int64_t t = (int64_t)tgt[n] - v0;
        zt[n] = tgt[n] >= 0 && t >= 0 && t < V ? z[t] : 0.0f;
    }
    int rc = DEFT_OK;
    if (m->tp_size > 1)
        rc = comm_allreduce_max_f32(m->tp, mx, (size_t)N, err);
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *z = logits + n * V;
        double sum = 0.0;   /* double, as the backend's op keeps it, for V = 128,256 */
        for (int64_t v = 0; v < V; v++)
            sum += expf(z[v] - mx[n]);
        se[n] = sum;
    }
    /* exactly one rank holds a nonzero target logit, so its sum is exact */
    if (!rc && m->tp_size > 1)
        rc = comm_allreduce_sum_f64(m->tp, se, (size_t)N, err);
    if (!rc && m->tp_size > 1)
        rc = comm_allreduce_sum_f32(m->tp, zt, (size_t)N, err);
    for (int64_t n = 0; n < N && !rc; n++) {
        float l = mx[n] + (float)log(se[n]);
        logp[n] = tgt[n] < 0 ? 0.0f : zt[n] - l;
        if (lse)
            lse[n] = l;
    }
    free(mx);
    free(zt);
    free(se);
    return rc;
}

void llama_tp_logsoftmax_gather_bwd(const llama_model_t *m, float *dlogits,
                                    const float *logits, const int32_t *tgt,
                                    const float *lse, const float *g, int64_t N)
{
    int64_t V = m->vocab_local, v0 = m->vocab_start;
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        if (tgt[n] < 0 || g[n] == 0.0f)
            continue;
        const float *z = logits + n * V;
        float *dz = dlogits + n * V;
        for (int64_t v = 0; v < V; v++)
            dz[v] -= g[n] * expf(z[v] - lse[n]);
        int64_t t = (int64_t)tgt[n] - v0;
        if (t >= 0 && t < V)
            dz[t] += g[n];
    }
}

// ----------------------------------------------------------------------------
// R_Q

int llama_rq_head_vector(const llama_model_t *m, const double *qdiff, double *u,
                         deft_err_t *err)
{
    const llama_param_t *p = &m->params[m->lm_head_param];
    int d = m->cfg.hidden_size;
    float *w = malloc(sizeof(float) * p->numel);   /* [V/tp, d] this rank's head rows */
    if (!w)
        return deft_fail(err, DEFT_ERR_NOMEM, "llama: cannot copy %s for R_Q", p->name);
    m->be->to_host(w, p->data, sizeof(float) * p->numel);
    /* the local rows meet their slice of Q_diff; the partial vectors add up */
    loss_rq_head_vector_f64(w, qdiff + m->vocab_start, (int)m->vocab_local, d, u);
    free(w);
    return llama_tp_sum(m, u, (size_t)d, err);
}
