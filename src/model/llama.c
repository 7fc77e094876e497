/* The Llama model over the backend interface: parameters (Hugging Face names
 * and layout), loading from safetensors, the forward pass (RMSNorm, GQA
 * attention with RoPE, SwiGLU MLP, residuals), the backward pass into
 * parameter gradients, per-token log-probabilities and generation; under
 * tensor parallelism each rank holds a shard and the partial results are
 * summed over its tp group (docs/model.md, "Tensor parallelism"). */
#include "model/llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

/* Activations of the forward pass, all in backend memory. With N = B*T rows,
 * D = hidden_size, and this rank's shares F = intermediate_size/tp,
 * QD = Hq/tp*hd, KD = Hkv/tp*hd, Hq = heads/tp, per layer l:
 *   xs[l]     [N, D]            residual stream entering layer l (xs[L]: leaving the last)
 *   xn1, xn2  [N, D]            RMSNorm outputs before attention / before the MLP
 *   rstd1, rstd2 [N]            their 1/rms
 *   q         [N, QD]           queries after RoPE
 *   k, v      [B, kv_cap, KD]   keys (after RoPE) and values: the KV cache when generating
 *   att       [N, QD]           attention output before o_proj
 *   lse       [B, Hq, T]        attention log-sum-exp
 *   xmid      [N, D]            residual stream after attention
 *   gate, up, act [N, F]        MLP: act = silu(gate) * up
 * Training ("full") keeps one set per layer: per token and layer
 * 4D + 2QD + 2KD + 3F + Hq + 2 floats. Inference keeps one set shared by all
 * layers except k, v, which every layer needs for its cache. */
struct llama_acts {
    int n_layers;
    bool full;
    int64_t rows_cap, kv_rows_cap, b_cap;  /* capacities: N, B*kv_cap, B */
    int B, T, kv_cap;                      /* shape of the last forward */
    bool have_acts;                        /* the last forward kept everything */
    float **xs, **xn1, **xn2, **rstd1, **rstd2, **q, **k, **v, **att, **lse, **xmid;
    float **gate, **up, **act;
    float *hidden;     /* [N, D] final-normalised hidden states */
    float *rstd_f;     /* [N] */
    int32_t *ids;      /* [N] token ids */
    int32_t *klen;     /* [B] keys per sequence */
    /* backward scratch, allocated on the first backward */
    float *dx, *dn, *dq, *dk, *dv, *datt, *dact, *dgate, *dup;
    /* tensor parallelism only (host memory): ids [N] as given, so that rows
     * whose token lies outside this rank's vocabulary shard can be masked, and
     * [N, D] staging for the sums over the tp group */
    int32_t *ids_host;
    float *tp_buf;
    /* [rows, V/tp] logits scratch and its row capacity */
    float *logits;
    int64_t logits_rows;
    /* every allocation, for llama_free */
    void **owned;
    int n_owned, cap_owned;
};

// ----------------------------------------------------------------------------
// parameters

static const char *layer_names[LLAMA_PER_LAYER] = {
    "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
    "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
    "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
};

int llama_layer_param(int layer, int which) { return 1 + layer * LLAMA_PER_LAYER + which; }

static void param_set(llama_param_t *p, const char *name, int64_t d0, int64_t d1, bool decay)
{
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->ndim = d1 > 0 ? 2 : 1;
    p->shape[0] = d0;
    p->shape[1] = d1 > 0 ? d1 : 0;
    p->numel = d1 > 0 ? d0 * d1 : d0;
    p->decay = decay;
    p->full_shape[0] = p->shape[0], p->full_shape[1] = p->shape[1];
    p->shard_dim = LLAMA_SHARD_NONE;
    p->shard_offset = 0;
}

/* Keeps slice tp_rank of tp along dim (rows or columns) of a full-shaped p. */
static void param_shard(llama_param_t *p, int dim, int tp, int tp_rank)
{
    p->shard_dim = dim;
    if (dim == LLAMA_SHARD_NONE)
        return;
    p->shape[dim] = p->full_shape[dim] / tp;
    p->shard_offset = p->shape[dim] * tp_rank;
    p->numel = p->ndim == 2 ? p->shape[0] * p->shape[1] : p->shape[0];
}

int llama_tp_check(const llama_config_t *c, int tp, deft_err_t *err)
{
    /* kv heads first: whole query groups must live with their kv head */
    struct { const char *what; int n; } counts[] = {
        {"num_key_value_heads", c->num_kv_heads}, {"num_attention_heads", c->num_heads},
        {"vocab_size", c->vocab_size}, {"intermediate_size", c->intermediate_size},
    };
    if (tp < 1)
        return deft_fail(err, DEFT_ERR_USAGE, "llama: tensor-parallel size %d is not >= 1", tp);
    for (int i = 0; i < (int)DEFT_ARRAY_LEN(counts); i++)
        if (counts[i].n % tp != 0)
            return deft_fail(err, DEFT_ERR_USAGE,
                             "llama: tensor-parallel size %d does not divide %s = %d "
                             "(tp must divide the kv heads, the vocabulary and the MLP width)",
                             tp, counts[i].what, counts[i].n);
    return DEFT_OK;
}

void llama_rope_inv_freq(const llama_config_t *cfg, float *inv_freq)
{
    int hd = cfg->head_dim, half = hd / 2;
    /* fp32 throughout, the order of operations transformers uses, so the
     * frequencies (and through them the logits) agree to the last bits */
    for (int i = 0; i < half; i++)
        inv_freq[i] = 1.0f / powf((float)cfg->rope_theta, (float)(2 * i) / (float)hd);
    if (!cfg->rope_llama3)
        return;
    /* Llama 3.1 scaling: long wavelengths are slowed by `factor`, short ones
     * kept, and the band between is interpolated smoothly. */
    float factor = (float)cfg->rope_factor;
    double old_len = cfg->rope_original_max_pos;
    double low_wl = old_len / cfg->rope_low_freq_factor;
    double high_wl = old_len / cfg->rope_high_freq_factor;
    float lo = (float)cfg->rope_low_freq_factor, hi = (float)cfg->rope_high_freq_factor;
    for (int i = 0; i < half; i++) {
        float f = inv_freq[i];
        float wl = (float)(2.0 * M_PI) / f;
        float scaled = wl > low_wl ? f / factor : f;
        if (!(wl < high_wl) && !(wl > low_wl)) {
            float smooth = ((float)old_len / wl - lo) / (hi - lo);
            scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
        }
        inv_freq[i] = scaled;
    }
}

static void *own(llama_acts_t *a, void *p)
{
    if (a->n_owned == a->cap_owned) {
        a->cap_owned = a->cap_owned ? 2 * a->cap_owned : 64;
        a->owned = xrealloc(a->owned, sizeof(void *) * a->cap_owned);
    }
    a->owned[a->n_owned++] = p;
    return p;
}

int llama_create(llama_model_t *m, const llama_config_t *cfg, const backend_t *be,
                 deft_err_t *err)
{
    return llama_create_tp(m, cfg, be, NULL, err);
}

int llama_create_tp(llama_model_t *m, const llama_config_t *cfg, const backend_t *be,
                    comm_t *tp, deft_err_t *err)
{
    memset(m, 0, sizeof(*m));
    const llama_config_t *c = cfg;
    if (c->hidden_size <= 0 || c->num_layers <= 0 || c->num_heads <= 0 ||
        c->num_kv_heads <= 0 || c->num_heads % c->num_kv_heads != 0 || c->head_dim <= 0 ||
        c->head_dim % 2 != 0 || c->vocab_size <= 0 || c->intermediate_size <= 0)
        return deft_fail(err, DEFT_ERR_USAGE,
                         "llama: unusable shape: hidden_size %d, layers %d, heads %d, "
                         "kv_heads %d, head_dim %d, vocab %d, intermediate %d",
                         c->hidden_size, c->num_layers, c->num_heads, c->num_kv_heads,
                         c->head_dim, c->vocab_size, c->intermediate_size);
    int tp_size = tp ? comm_size(tp) : 1, tp_rank = tp ? comm_rank(tp) : 0;
    int rc = llama_tp_check(c, tp_size, err);
    if (rc)
        return rc;
    m->cfg = *cfg;
    m->be = be;
    m->tp = tp_size > 1 ? tp : NULL;
    m->tp_rank = tp_rank, m->tp_size = tp_size;
    m->n_heads_local = c->num_heads / tp_size;
    m->n_kv_heads_local = c->num_kv_heads / tp_size;
    m->ffn_local = c->intermediate_size / tp_size;
    m->vocab_local = c->vocab_size / tp_size;
    m->vocab_start = m->vocab_local * tp_rank;
    int64_t d = c->hidden_size, V = c->vocab_size, F = c->intermediate_size;
    int64_t qd = (int64_t)c->num_heads * c->head_dim, kd = (int64_t)c->num_kv_heads * c->head_dim;
    int L = c->num_layers;
    m->n_params = 2 + L * LLAMA_PER_LAYER + (c->tie_word_embeddings ? 0 : 1);
    m->params = xcalloc(m->n_params, sizeof(llama_param_t));
    /* Megatron-style split: projections into heads or MLP columns by output
     * rows, projections out of them by input columns, the vocabulary by rows */
    static const int shard_of[LLAMA_PER_LAYER] = {
        LLAMA_SHARD_NONE, LLAMA_SHARD_ROWS, LLAMA_SHARD_ROWS, LLAMA_SHARD_ROWS,
        LLAMA_SHARD_COLS, LLAMA_SHARD_NONE, LLAMA_SHARD_ROWS, LLAMA_SHARD_ROWS,
        LLAMA_SHARD_COLS,
    };
    param_set(&m->params[0], "model.embed_tokens.weight", V, d, true);
    param_shard(&m->params[0], LLAMA_SHARD_ROWS, tp_size, tp_rank);
    for (int l = 0; l < L; l++) {
        int64_t shapes[LLAMA_PER_LAYER][2] = {
            {d, 0}, {qd, d}, {kd, d}, {kd, d}, {d, qd}, {d, 0}, {F, d}, {F, d}, {d, F},
        };
        for (int w = 0; w < LLAMA_PER_LAYER; w++) {
            char name[96];
            snprintf(name, sizeof(name), "model.layers.%d.%s", l, layer_names[w]);
            llama_param_t *p = &m->params[llama_layer_param(l, w)];
            param_set(p, name, shapes[w][0], shapes[w][1], shapes[w][1] > 0);
            param_shard(p, shard_of[w], tp_size, tp_rank);
        }
    }
    int i_norm = 1 + L * LLAMA_PER_LAYER;
    param_set(&m->params[i_norm], "model.norm.weight", d, 0, false);
    if (!c->tie_word_embeddings) {
        param_set(&m->params[i_norm + 1], "lm_head.weight", V, d, true);
        param_shard(&m->params[i_norm + 1], LLAMA_SHARD_ROWS, tp_size, tp_rank);
    }
    for (int i = 0; i < m->n_params; i++) {
        /* layout: row-major with the Hugging Face shape ([out, in] for projections),
         * or this rank's rows / columns of it */
        m->params[i].data = be->alloc(sizeof(float) * m->params[i].numel);
        if (!m->params[i].data) {
            deft_fail(err, DEFT_ERR_NOMEM, "llama: cannot allocate %s (%lld floats)",
                      m->params[i].name, (long long)m->params[i].numel);
            llama_free(m);
            return DEFT_ERR_NOMEM;
        }
    }
    m->embed = m->params[0].data;
    m->final_norm = m->params[i_norm].data;
    m->lm_head_param = c->tie_word_embeddings ? 0 : i_norm + 1;
    m->lm_head = m->params[m->lm_head_param].data;
    float *freq = xmalloc(sizeof(float) * (c->head_dim / 2));
    llama_rope_inv_freq(c, freq);
    m->inv_freq = be->alloc(sizeof(float) * (c->head_dim / 2));   /* [hd/2] */
    be->to_device(m->inv_freq, freq, sizeof(float) * (c->head_dim / 2));
    free(freq);
    return DEFT_OK;
}

static void acts_free(const backend_t *be, llama_acts_t *a)
{
    if (!a)
        return;
    for (int i = 0; i < a->n_owned; i++)
        be->free(a->owned[i]);
    free(a->owned);
    free(a->xs);
    free(a->ids_host);
    free(a->tp_buf);
    free(a);
}

void llama_free(llama_model_t *m)
{
    if (!m->be)
        return;
    for (int i = 0; i < m->n_params; i++) {
        m->be->free(m->params[i].data);
        m->be->free(m->params[i].grad);
    }
    free(m->params);
    m->be->free(m->inv_freq);
    acts_free(m->be, m->acts);
    memset(m, 0, sizeof(*m));
}

int llama_alloc_grads(llama_model_t *m, deft_err_t *err)
{
    for (int i = 0; i < m->n_params; i++) {
        if (m->params[i].grad)
            continue;
        m->params[i].grad = m->be->alloc(sizeof(float) * m->params[i].numel);  /* as data */
        if (!m->params[i].grad)
            return deft_fail(err, DEFT_ERR_NOMEM, "llama: cannot allocate the gradient of %s",
                             m->params[i].name);
    }
    return DEFT_OK;
}

void llama_zero_grads(llama_model_t *m)
{
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].grad)
            m->be->zero(m->params[i].grad, sizeof(float) * m->params[i].numel);
}

// ----------------------------------------------------------------------------
// loading

/* Older exports carry the RoPE table as a buffer; it is recomputed here. */
static bool is_ignorable(const char *name)
{
    const char *s = strstr(name, "rotary_emb.inv_freq");
    return s && s[strlen("rotary_emb.inv_freq")] == '\0';
}

static int load_tensor(llama_model_t *m, llama_param_t *p, const st_tensor_t *t,
                       deft_err_t *err)
{
    bool ok = t->ndim == p->ndim && t->shape[0] == p->full_shape[0] &&
              (p->ndim == 1 || t->shape[1] == p->full_shape[1]);
    if (!ok) {
        char got[96] = "";
        for (int i = 0; i < t->ndim && i < 4; i++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld", i ? ", " : "",
                     (long long)t->shape[i]);
        return deft_fail(err, DEFT_ERR_FORMAT,
                         "%s: tensor %s has shape [%s], config.json implies [%lld%s%.0lld]",
                         t->file, t->name, got, (long long)p->full_shape[0],
                         p->ndim == 2 ? ", " : "",
                         p->ndim == 2 ? (long long)p->full_shape[1] : 0LL);
    }
    float *host = malloc(sizeof(float) * p->numel);
    if (!host)
        return deft_fail(err, DEFT_ERR_NOMEM, "%s: cannot convert %s", t->file, t->name);
    if (p->shard_dim == LLAMA_SHARD_NONE || p->numel == st_numel(t)) {
        st_to_f32(t, host);
    } else {
        /* only this rank's slice is converted (and, the file being mapped, read):
         * a run of whole rows, or the same columns of every row */
        size_t es = t->nbytes / (size_t)st_numel(t);
        int64_t rows = p->shard_dim == LLAMA_SHARD_ROWS ? 1 : p->shape[0];
        int64_t run = p->shard_dim == LLAMA_SHARD_ROWS ? p->numel : p->shape[1];
        for (int64_t r = 0; r < rows; r++) {
            int64_t first = p->shard_dim == LLAMA_SHARD_ROWS
                                ? p->shard_offset * p->full_shape[1]
                                : r * p->full_shape[1] + p->shard_offset;
            st_tensor_t view = *t;
            view.ndim = 1;
            view.shape[0] = run;
            view.data = (const char *)t->data + (size_t)first * es;
            view.nbytes = (size_t)run * es;
            st_to_f32(&view, host + r * run);
        }
    }
    m->be->to_device(p->data, host, sizeof(float) * p->numel);
    free(host);
    return DEFT_OK;
}

int llama_load(llama_model_t *m, const char *dir, const backend_t *be, deft_err_t *err)
{
    return llama_load_tp(m, dir, be, NULL, err);
}

int llama_load_tp(llama_model_t *m, const char *dir, const backend_t *be, comm_t *tp,
                  deft_err_t *err)
{
    llama_config_t cfg;
    int rc = llama_config_load(&cfg, dir, err);
    if (rc)
        return rc;
    if ((rc = llama_tp_check(&cfg, tp ? comm_size(tp) : 1, err))) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return deft_fail(err, rc, "%s/config.json: %s", dir, why);
    }
    if ((rc = llama_create_tp(m, &cfg, be, tp, err)))
        return rc;
    st_set_t *st = NULL;
    if ((rc = st_open(&st, dir, err))) {
        llama_free(m);
        return rc;
    }
    for (int i = 0; i < m->n_params && !rc; i++) {
        llama_param_t *p = &m->params[i];
        const st_tensor_t *t = st_find(st, p->name);
        /* a tied matrix may be stored under the head's name only */
        if (!t && i == 0 && cfg.tie_word_embeddings)
            t = st_find(st, "lm_head.weight");
        if (!t)
            rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: tensor %s is missing%s", dir, p->name,
                           i == 0 && cfg.tie_word_embeddings ? " (nor lm_head.weight)" : "");
        else
            rc = load_tensor(m, p, t, err);
    }
    for (int i = 0; i < st_count(st) && !rc; i++) {
        const st_tensor_t *t = st_at(st, i);
        bool known = is_ignorable(t->name) ||
                     (cfg.tie_word_embeddings && !strcmp(t->name, "lm_head.weight"));
        for (int j = 0; j < m->n_params && !known; j++)
            known = !strcmp(t->name, m->params[j].name);
        if (!known)
            rc = deft_fail(err, DEFT_ERR_FORMAT,
                           "%s: tensor %s is not a parameter of a Llama model with this "
                           "config.json (%d layers, tie_word_embeddings %s)", t->file, t->name,
                           cfg.num_layers, cfg.tie_word_embeddings ? "true" : "false");
    }
    st_close(st);
    if (rc)
        llama_free(m);
    return rc;
}

// ----------------------------------------------------------------------------
// activations

static float *alloc_f(llama_model_t *m, int64_t n, bool *ok)
{
    float *p = m->be->alloc(sizeof(float) * (n > 0 ? n : 1));
    if (!p) {
        *ok = false;
        return NULL;
    }
    return own(m->acts, p);
}

/* Makes sure m->acts can hold a forward of B sequences of T new rows with a
 * kv_cap-row cache; full: one set of activations per layer (for backward). */
static int acts_ensure(llama_model_t *m, int B, int T, int kv_cap, bool full, deft_err_t *err)
{
    const llama_config_t *c = &m->cfg;
    llama_acts_t *a = m->acts;
    int64_t N = (int64_t)B * T;
    if (a && a->rows_cap >= N && a->kv_rows_cap >= (int64_t)B * kv_cap && a->b_cap >= B &&
        (a->full || !full))
        return DEFT_OK;
    acts_free(m->be, a);
    int L = c->num_layers;
    a = m->acts = xcalloc(1, sizeof(*a));
    a->n_layers = L;
    a->full = full;
    a->rows_cap = N;
    a->kv_rows_cap = (int64_t)B * kv_cap;
    a->b_cap = B;
    float ***sets[] = {&a->xn1, &a->xn2, &a->rstd1, &a->rstd2, &a->q, &a->k, &a->v, &a->att,
                       &a->lse, &a->xmid, &a->gate, &a->up, &a->act};
    int nsets = (int)DEFT_ARRAY_LEN(sets);
    /* one array of L+1 pointers per set, carved from a single block */
    a->xs = xcalloc((size_t)(nsets + 1) * (L + 1), sizeof(float *));
    for (int s = 0; s < nsets; s++)
        *sets[s] = a->xs + (size_t)(s + 1) * (L + 1);
    int64_t d = c->hidden_size, F = m->ffn_local, Hq = m->n_heads_local;
    int64_t qd = Hq * c->head_dim, kd = (int64_t)m->n_kv_heads_local * c->head_dim;
    bool ok = true;
    for (int l = 0; l <= L; l++) {
        bool own_set = full || l == 0;
        a->xs[l] = own_set ? alloc_f(m, N * d, &ok) : a->xs[0];
        if (l == L)
            break;
        /* K/V are the cache: every layer has its own, in either mode */
        a->k[l] = alloc_f(m, a->kv_rows_cap * kd, &ok);
        a->v[l] = alloc_f(m, a->kv_rows_cap * kd, &ok);
        if (!own_set) {
            a->xn1[l] = a->xn1[0], a->xn2[l] = a->xn2[0], a->rstd1[l] = a->rstd1[0];
            a->rstd2[l] = a->rstd2[0], a->q[l] = a->q[0], a->att[l] = a->att[0];
            a->lse[l] = a->lse[0], a->xmid[l] = a->xmid[0], a->gate[l] = a->gate[0];
            a->up[l] = a->up[0], a->act[l] = a->act[0];
            continue;
        }
        a->xn1[l] = alloc_f(m, N * d, &ok);
        a->xn2[l] = alloc_f(m, N * d, &ok);
        a->rstd1[l] = alloc_f(m, N, &ok);
        a->rstd2[l] = alloc_f(m, N, &ok);
        a->q[l] = alloc_f(m, N * qd, &ok);
        a->att[l] = alloc_f(m, N * qd, &ok);
        a->lse[l] = alloc_f(m, N * Hq, &ok);
        a->xmid[l] = alloc_f(m, N * d, &ok);
        a->gate[l] = alloc_f(m, N * F, &ok);
        a->up[l] = alloc_f(m, N * F, &ok);
        a->act[l] = alloc_f(m, N * F, &ok);
    }
    a->hidden = alloc_f(m, N * d, &ok);
    a->rstd_f = alloc_f(m, N, &ok);
    a->ids = (int32_t *)alloc_f(m, N, &ok);
    a->klen = (int32_t *)alloc_f(m, B, &ok);
    if (m->tp_size > 1) {
        a->ids_host = xmalloc(sizeof(int32_t) * (N > 0 ? N : 1));   /* [N] */
        a->tp_buf = xmalloc(sizeof(float) * (N * d > 0 ? N * d : 1));   /* [N, D] */
    }
    if (!ok) {
        acts_free(m->be, a);
        m->acts = NULL;
        return deft_fail(err, DEFT_ERR_NOMEM,
                         "llama: cannot allocate activations for %d x %d tokens%s", B, T,
                         full ? " (training keeps every layer's: use a smaller batch)" : "");
    }
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// forward

/* y[rows, out] = x[rows, in] @ W[out, in]^T + beta * y */
static void linear(const backend_t *be, float *y, const float *x, const float *W, int64_t rows,
                   int64_t in, int64_t out, float beta)
{
    be->gemm(false, true, (int)rows, (int)out, (int)in, 1.0f, x, (int)in, 0, W, (int)in, 0,
             beta, y, (int)out, 0, 1);
}

/* Sum of x[n] (backend memory) over the tp group, the same bits on every
 * rank: the partial outputs of a layer split by input columns, or the
 * gradients into the input of a layer split by output rows. */
static int tp_allreduce(llama_model_t *m, float *x, int64_t n, deft_err_t *err)
{
    if (m->tp_size == 1)
        return DEFT_OK;
    float *h = m->acts->tp_buf;
    m->be->to_host(h, x, sizeof(float) * n);
    int rc = comm_allreduce_sum_f32(m->tp, h, (size_t)n, err);
    if (!rc)
        m->be->to_device(x, h, sizeof(float) * n);
    return rc;
}

/* y[rows, out] = residual + x @ W^T for W [out, in] split by input columns:
 * each rank's partial product is summed over the tp group before the
 * residual is added (at tp 1: one GEMM accumulating onto the residual). */
static int linear_sum(llama_model_t *m, float *y, const float *x, const float *W,
                      const float *residual, int64_t rows, int64_t in, int64_t out,
                      deft_err_t *err)
{
    const backend_t *be = m->be;
    if (m->tp_size == 1) {
        be->copy(y, residual, sizeof(float) * rows * out);
        linear(be, y, x, W, rows, in, out, 1.0f);
        return DEFT_OK;
    }
    linear(be, y, x, W, rows, in, out, 0.0f);
    int rc = tp_allreduce(m, y, rows * out, err);
    if (!rc)
        be->add(y, residual, rows * out);
    return rc;
}

/* Zeroes rows n of x[N, d] whose token ids_host[n] lies outside this rank's
 * vocabulary shard (their embedding comes from another rank). */
static void zero_foreign_rows(llama_model_t *m, float *x, const int32_t *ids_host, int64_t N,
                              int64_t d)
{
    int64_t lo = m->vocab_start, hi = m->vocab_start + m->vocab_local;
    for (int64_t n = 0; n < N;) {
        int64_t e = n;
        while (e < N && (ids_host[e] < lo || ids_host[e] >= hi))
            e++;
        if (e > n)
            m->be->zero(x + n * d, sizeof(float) * (e - n) * d);
        n = e + 1;
    }
}

static attn_shape_t attn_shape(const llama_model_t *m, int B, int T, int kv_cap, int offset)
{
    const llama_config_t *c = &m->cfg;
    return (attn_shape_t){.B = B, .Tq = T, .kv_cap = kv_cap, .q_offset = offset,
                          .n_heads = m->n_heads_local, .n_kv_heads = m->n_kv_heads_local,
                          .head_dim = c->head_dim,
                          .scale = 1.0f / sqrtf((float)c->head_dim)};
}

/* One decoder layer on B x T new rows at positions offset.. of a kv_cap cache:
 * x_out = h + MLP(norm(h)), h = x_in + Attn(norm(x_in)). */
static int layer_forward(llama_model_t *m, int l, const float *x_in, float *x_out, int B,
                         int T, int kv_cap, int offset, deft_err_t *err)
{
    const backend_t *be = m->be;
    const llama_config_t *c = &m->cfg;
    llama_acts_t *a = m->acts;
    llama_param_t *P = m->params;
    int64_t N = (int64_t)B * T, d = c->hidden_size, F = m->ffn_local;
    int64_t qd = (int64_t)m->n_heads_local * c->head_dim;
    int64_t kd = (int64_t)m->n_kv_heads_local * c->head_dim;
    float eps = (float)c->rms_norm_eps;
#define W(which) (P[llama_layer_param(l, which)].data)

    be->rmsnorm_fwd(a->xn1[l], a->rstd1[l], x_in, W(LLAMA_ATTN_NORM), (int)N, (int)d, eps);
    linear(be, a->q[l], a->xn1[l], W(LLAMA_Q), N, d, qd, 0.0f);
    /* new keys/values go to rows offset.. of each sequence's cache */
    float *k_new = a->k[l] + (int64_t)offset * kd, *v_new = a->v[l] + (int64_t)offset * kd;
    be->gemm(false, true, T, (int)kd, (int)d, 1.0f, a->xn1[l], (int)d, T * d, W(LLAMA_K),
             (int)d, 0, 0.0f, k_new, (int)kd, (int64_t)kv_cap * kd, B);
    be->gemm(false, true, T, (int)kd, (int)d, 1.0f, a->xn1[l], (int)d, T * d, W(LLAMA_V),
             (int)d, 0, 0.0f, v_new, (int)kd, (int64_t)kv_cap * kd, B);
    be->rope_fwd(a->q[l], m->inv_freq, B, T, T, m->n_heads_local, c->head_dim, offset);
    be->rope_fwd(k_new, m->inv_freq, B, T, kv_cap, m->n_kv_heads_local, c->head_dim, offset);
    attn_shape_t s = attn_shape(m, B, T, kv_cap, offset);
    be->attn_fwd(a->att[l], a->lse[l], a->q[l], a->k[l], a->v[l], a->klen, &s);
    int rc = linear_sum(m, a->xmid[l], a->att[l], W(LLAMA_O), x_in, N, qd, d, err);
    if (rc)
        return rc;

    be->rmsnorm_fwd(a->xn2[l], a->rstd2[l], a->xmid[l], W(LLAMA_MLP_NORM), (int)N, (int)d,
                    eps);
    linear(be, a->gate[l], a->xn2[l], W(LLAMA_GATE), N, d, F, 0.0f);
    linear(be, a->up[l], a->xn2[l], W(LLAMA_UP), N, d, F, 0.0f);
    be->swiglu_fwd(a->act[l], a->gate[l], a->up[l], N * F);
    return linear_sum(m, x_out, a->act[l], W(LLAMA_DOWN), a->xmid[l], N, F, d, err);
#undef W
}

/* ids (host) [B, T] at positions offset..offset+T-1; klen (host) [B]. Leaves the
 * final-normalised hidden states in m->acts->hidden. */
static int forward_rows(llama_model_t *m, const int32_t *ids, const int32_t *klen, int B,
                        int T, int kv_cap, int offset, bool full, deft_err_t *err)
{
    const llama_config_t *c = &m->cfg;
    int64_t N = (int64_t)B * T;
    for (int64_t n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= c->vocab_size)
            return deft_fail(err, DEFT_ERR_DATA,
                             "llama: token id %d at sequence %lld, position %lld is outside "
                             "the vocabulary [0, %d)", ids[n], (long long)(n / T),
                             (long long)(n % T), c->vocab_size);
    int rc = acts_ensure(m, B, T, kv_cap, full, err);
    if (rc)
        return rc;
    llama_acts_t *a = m->acts;
    const backend_t *be = m->be;
    a->B = B, a->T = T, a->kv_cap = kv_cap, a->have_acts = full;
    be->to_device(a->klen, klen, sizeof(int32_t) * B);
    if (m->tp_size == 1) {
        be->to_device(a->ids, ids, sizeof(int32_t) * N);
        be->embed_fwd(a->xs[0], a->ids, m->embed, (int)N, c->hidden_size);
    } else {
        /* vocabulary-parallel lookup: ids of this shard index it, the others
         * read row 0 and are zeroed, and the sum over ranks fills every row */
        memcpy(a->ids_host, ids, sizeof(int32_t) * N);
        int32_t *local = xmalloc(sizeof(int32_t) * N);
        for (int64_t n = 0; n < N; n++) {
            int64_t v = ids[n] - m->vocab_start;
            local[n] = v >= 0 && v < m->vocab_local ? (int32_t)v : 0;
        }
        be->to_device(a->ids, local, sizeof(int32_t) * N);
        free(local);
        be->embed_fwd(a->xs[0], a->ids, m->embed, (int)N, c->hidden_size);
        zero_foreign_rows(m, a->xs[0], a->ids_host, N, c->hidden_size);
        if ((rc = tp_allreduce(m, a->xs[0], N * c->hidden_size, err)))
            return rc;
    }
    int L = c->num_layers;
    for (int l = 0; l < L && !rc; l++)
        rc = layer_forward(m, l, a->xs[full ? l : 0], a->xs[full ? l + 1 : 0], B, T, kv_cap,
                           offset, err);
    if (rc)
        return rc;
    be->rmsnorm_fwd(a->hidden, a->rstd_f, a->xs[full ? L : 0], m->final_norm, (int)N,
                    c->hidden_size, (float)c->rms_norm_eps);
    return DEFT_OK;
}

static int logits_ensure(llama_model_t *m, int64_t rows, deft_err_t *err)
{
    llama_acts_t *a = m->acts;
    if (a->logits_rows >= rows)
        return DEFT_OK;
    /* drop the smaller buffer rather than keep both until llama_free */
    for (int i = 0; a->logits && i < a->n_owned; i++)
        if (a->owned[i] == a->logits) {
            m->be->free(a->logits);
            a->owned[i] = a->owned[--a->n_owned];
            a->logits = NULL;
            a->logits_rows = 0;
        }
    bool ok = true;
    a->logits = alloc_f(m, rows * m->vocab_local, &ok);   /* [rows, V/tp] */
    if (!ok)
        return deft_fail(err, DEFT_ERR_NOMEM, "llama: cannot allocate logits for %lld rows "
                         "of %lld", (long long)rows, (long long)m->vocab_local);
    a->logits_rows = rows;
    return DEFT_OK;
}

static int check_batch(const llama_model_t *m, const int32_t *lens, int B, int T,
                       deft_err_t *err)
{
    if (B <= 0 || T <= 0)
        return deft_fail(err, DEFT_ERR_USAGE, "llama: empty batch (%d x %d)", B, T);
    for (int b = 0; b < B; b++)
        if (lens[b] < 0 || lens[b] > T)
            return deft_fail(err, DEFT_ERR_USAGE,
                             "llama: sequence %d has length %d, outside [0, %d]", b, lens[b], T);
    return DEFT_OK;
}

int llama_forward(llama_model_t *m, const int32_t *ids, const int32_t *lens, int B, int T,
                  float *hidden, float *logits, bool keep_acts, deft_err_t *err)
{
    int rc = check_batch(m, lens, B, T, err);
    if (!rc)
        rc = forward_rows(m, ids, lens, B, T, T, 0, keep_acts, err);
    if (rc)
        return rc;
    const backend_t *be = m->be;
    int64_t N = (int64_t)B * T, d = m->cfg.hidden_size, V = m->vocab_local;
    if (hidden)
        be->to_host(hidden, m->acts->hidden, sizeof(float) * N * d);
    if (logits) {
        if ((rc = logits_ensure(m, N, err)))
            return rc;
        linear(be, m->acts->logits, m->acts->hidden, m->lm_head, N, d, V, 0.0f);
        be->to_host(logits, m->acts->logits, sizeof(float) * N * V);
    }
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// backward

/* dW[out, in] += dy[rows, out]^T @ x[rows, in] */
static void linear_dw(const backend_t *be, float *dW, const float *dy, const float *x,
                      int64_t rows, int64_t in, int64_t out)
{
    be->gemm(true, false, (int)out, (int)in, (int)rows, 1.0f, dy, (int)out, 0, x, (int)in, 0,
             1.0f, dW, (int)in, 0, 1);
}

/* dx[rows, in] = dy[rows, out] @ W[out, in] + beta * dx */
static void linear_dx(const backend_t *be, float *dx, const float *dy, const float *W,
                      int64_t rows, int64_t in, int64_t out, float beta)
{
    be->gemm(false, false, (int)rows, (int)in, (int)out, 1.0f, dy, (int)out, 0, W, (int)in, 0,
             beta, dx, (int)in, 0, 1);
}

static int grads_scratch(llama_model_t *m, deft_err_t *err)
{
    llama_acts_t *a = m->acts;
    if (a->dx)
        return DEFT_OK;
    const llama_config_t *c = &m->cfg;
    int64_t N = a->rows_cap, d = c->hidden_size, F = m->ffn_local;
    int64_t qd = (int64_t)m->n_heads_local * c->head_dim;
    int64_t kd = (int64_t)m->n_kv_heads_local * c->head_dim;
    bool ok = true;
    a->dx = alloc_f(m, N * d, &ok);      /* [N, D] gradient of the residual stream */
    a->dn = alloc_f(m, N * d, &ok);      /* [N, D] gradient of a norm's output */
    a->dq = alloc_f(m, N * qd, &ok);     /* [N, QD] */
    a->datt = alloc_f(m, N * qd, &ok);   /* [N, QD] */
    a->dk = alloc_f(m, a->kv_rows_cap * kd, &ok);   /* [B, T, KD] */
    a->dv = alloc_f(m, a->kv_rows_cap * kd, &ok);
    a->dact = alloc_f(m, N * F, &ok);    /* [N, F] each */
    a->dgate = alloc_f(m, N * F, &ok);
    a->dup = alloc_f(m, N * F, &ok);
    if (!ok)
        return deft_fail(err, DEFT_ERR_NOMEM, "llama: cannot allocate backward buffers for "
                         "%lld tokens", (long long)N);
    return DEFT_OK;
}

static int layer_backward(llama_model_t *m, int l, deft_err_t *err)
{
    const backend_t *be = m->be;
    const llama_config_t *c = &m->cfg;
    llama_acts_t *a = m->acts;
    llama_param_t *P = m->params;
    int B = a->B, T = a->T;
    int64_t N = (int64_t)B * T, d = c->hidden_size, F = m->ffn_local;
    int64_t qd = (int64_t)m->n_heads_local * c->head_dim;
    int64_t kd = (int64_t)m->n_kv_heads_local * c->head_dim;
#define W(which) (P[llama_layer_param(l, which)].data)
#define G(which) (P[llama_layer_param(l, which)].grad)

    /* a->dx holds d loss / d x_out; the residual passes it through unchanged */
    linear_dx(be, a->dact, a->dx, W(LLAMA_DOWN), N, F, d, 0.0f);
    linear_dw(be, G(LLAMA_DOWN), a->dx, a->act[l], N, F, d);
    be->swiglu_bwd(a->dgate, a->dup, a->dact, a->gate[l], a->up[l], N * F);
    linear_dx(be, a->dn, a->dgate, W(LLAMA_GATE), N, d, F, 0.0f);
    linear_dx(be, a->dn, a->dup, W(LLAMA_UP), N, d, F, 1.0f);
    linear_dw(be, G(LLAMA_GATE), a->dgate, a->xn2[l], N, d, F);
    linear_dw(be, G(LLAMA_UP), a->dup, a->xn2[l], N, d, F);
    int rc = tp_allreduce(m, a->dn, N * d, err);   /* gate/up are split by output rows */
    if (rc)
        return rc;
    be->rmsnorm_bwd(a->dx, G(LLAMA_MLP_NORM), a->dn, a->xmid[l], W(LLAMA_MLP_NORM),
                    a->rstd2[l], (int)N, (int)d);

    /* now d loss / d xmid */
    linear_dx(be, a->datt, a->dx, W(LLAMA_O), N, qd, d, 0.0f);
    linear_dw(be, G(LLAMA_O), a->dx, a->att[l], N, qd, d);
    attn_shape_t s = attn_shape(m, B, T, T, 0);
    be->zero(a->dk, sizeof(float) * N * kd);
    be->zero(a->dv, sizeof(float) * N * kd);
    be->attn_bwd(a->dq, a->dk, a->dv, a->datt, a->att[l], a->lse[l], a->q[l], a->k[l],
                 a->v[l], a->klen, &s);
    be->rope_bwd(a->dq, m->inv_freq, B, T, T, m->n_heads_local, c->head_dim, 0);
    be->rope_bwd(a->dk, m->inv_freq, B, T, T, m->n_kv_heads_local, c->head_dim, 0);
    linear_dx(be, a->dn, a->dq, W(LLAMA_Q), N, d, qd, 0.0f);
    linear_dx(be, a->dn, a->dk, W(LLAMA_K), N, d, kd, 1.0f);
    linear_dx(be, a->dn, a->dv, W(LLAMA_V), N, d, kd, 1.0f);
    linear_dw(be, G(LLAMA_Q), a->dq, a->xn1[l], N, d, qd);
    linear_dw(be, G(LLAMA_K), a->dk, a->xn1[l], N, d, kd);
    linear_dw(be, G(LLAMA_V), a->dv, a->xn1[l], N, d, kd);
    if ((rc = tp_allreduce(m, a->dn, N * d, err)))   /* q/k/v: split by output rows */
        return rc;
    be->rmsnorm_bwd(a->dx, G(LLAMA_ATTN_NORM), a->dn, a->xs[l], W(LLAMA_ATTN_NORM),
                    a->rstd1[l], (int)N, (int)d);
    return DEFT_OK;
#undef W
#undef G
}

int llama_backward(llama_model_t *m, const float *dlogits, const float *dhidden,
                   deft_err_t *err)
{
    llama_acts_t *a = m->acts;
    if (!a || !a->have_acts)
        return deft_fail(err, DEFT_ERR_INTERNAL,
                         "llama: backward without a forward that kept its activations");
    if (!m->params[0].grad)
        return deft_fail(err, DEFT_ERR_INTERNAL, "llama: backward before llama_alloc_grads");
    int rc = grads_scratch(m, err);
    if (rc)
        return rc;
    const backend_t *be = m->be;
    const llama_config_t *c = &m->cfg;
    int64_t N = (int64_t)a->B * a->T, d = c->hidden_size, V = m->vocab_local;
    int L = c->num_layers;
    /* a->dn: d loss / d hidden (final-normalised) */
    be->zero(a->dn, sizeof(float) * N * d);
    if (dlogits) {
        if ((rc = logits_ensure(m, N, err)))
            return rc;
        be->to_device(a->logits, dlogits, sizeof(float) * N * V);
        linear_dx(be, a->dn, a->logits, m->lm_head, N, d, V, 0.0f);
        linear_dw(be, m->params[m->lm_head_param].grad, a->logits, a->hidden, N, d, V);
        /* the head is split by vocabulary rows; dhidden, given whole on every
         * rank, joins after the sum */
        if ((rc = tp_allreduce(m, a->dn, N * d, err)))
            return rc;
    }
    if (dhidden) {
        be->to_device(a->dx, dhidden, sizeof(float) * N * d);
        be->add(a->dn, a->dx, N * d);
    }
    be->zero(a->dx, sizeof(float) * N * d);
    be->rmsnorm_bwd(a->dx, m->params[1 + L * LLAMA_PER_LAYER].grad, a->dn, a->xs[L],
                    m->final_norm, a->rstd_f, (int)N, (int)d);
    for (int l = L - 1; l >= 0 && !rc; l--)
        rc = layer_backward(m, l, err);
    if (rc)
        return rc;
    if (m->tp_size == 1) {
        be->embed_bwd(m->params[0].grad, a->ids, a->dx, (int)N, (int)d);
        return DEFT_OK;
    }
    /* rows of other shards' tokens were looked up as local row 0: they must
     * scatter nothing */
    be->copy(a->dn, a->dx, sizeof(float) * N * d);
    zero_foreign_rows(m, a->dn, a->ids_host, N, d);
    be->embed_bwd(m->params[0].grad, a->ids, a->dn, (int)N, (int)d);
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// log-probabilities

int llama_logprobs(llama_model_t *m, const int32_t *ids, const int32_t *lens, int B, int T,
                   float *out, deft_err_t *err)
{
    int rc = check_batch(m, lens, B, T, err);
    if (!rc)
        rc = forward_rows(m, ids, lens, B, T, T, 0, false, err);
    if (rc)
        return rc;
    const backend_t *be = m->be;
    int64_t N = (int64_t)B * T, d = m->cfg.hidden_size, V = m->vocab_local;
    /* rows per chunk: about 16M logits (64 MB) at a time */
    int64_t chunk = (16 << 20) / V;
    chunk = chunk < 1 ? 1 : chunk > N ? N : chunk;
    if ((rc = logits_ensure(m, chunk, err)))
        return rc;
    /* row n = (b, t) predicts token t+1 of its sequence; -1 where there is none */
    int32_t *tgt = xmalloc(sizeof(int32_t) * N);
    float *lp = xmalloc(sizeof(float) * N);
    for (int64_t n = 0; n < N; n++) {
        int b = (int)(n / T), t = (int)(n % T);
        tgt[n] = t + 1 < lens[b] ? ids[n + 1] : -1;
    }
    int32_t *tgt_dev = be->alloc(sizeof(int32_t) * chunk);   /* [chunk] */
    float *lp_dev = be->alloc(sizeof(float) * chunk);        /* [chunk] */
    /* tensor parallelism: the vocabulary shard of a chunk's logits, on the host
     * where the softmax over all shards is put together [chunk, V/tp] */
    float *zh = m->tp_size > 1 ? malloc(sizeof(float) * chunk * V) : NULL;
    if (!tgt_dev || !lp_dev || (m->tp_size > 1 && !zh)) {
        rc = deft_fail(err, DEFT_ERR_NOMEM, "llama: cannot allocate log-prob buffers");
    } else {
        for (int64_t r0 = 0; r0 < N && !rc; r0 += chunk) {
            int64_t rows = N - r0 < chunk ? N - r0 : chunk;
            linear(be, m->acts->logits, m->acts->hidden + r0 * d, m->lm_head, rows, d, V, 0.0f);
            if (m->tp_size > 1) {
                be->to_host(zh, m->acts->logits, sizeof(float) * rows * V);
                rc = llama_tp_logsoftmax_gather(m, zh, tgt + r0, rows, lp + r0, NULL, err);
                continue;
            }
            be->to_device(tgt_dev, tgt + r0, sizeof(int32_t) * rows);
            be->logsoftmax_gather_fwd(lp_dev, m->acts->logits, tgt_dev, (int)rows, (int)V);
            be->to_host(lp + r0, lp_dev, sizeof(float) * rows);
        }
        for (int b = 0; b < B; b++) {
            out[(int64_t)b * T] = 0.0f;
            for (int t = 1; t < T; t++)
                out[(int64_t)b * T + t] = t < lens[b] ? lp[(int64_t)b * T + t - 1] : 0.0f;
        }
    }
    be->free(tgt_dev);
    be->free(lp_dev);
    free(zh);
    free(tgt);
    free(lp);
    return rc;
}

// ----------------------------------------------------------------------------
// generation

/* splitmix64: a small, well-mixed generator; sampling only needs uniforms */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct {
    double p;
    int id;
} cand_t;

static int cand_cmp(const void *x, const void *y)
{
    const cand_t *a = x, *b = y;
    if (a->p != b->p)
        return a->p > b->p ? -1 : 1;
    return a->id - b->id;
}

/* Picks the next token from logits z[V] (host). */
static int32_t pick_token(const float *z, int V, float temperature, float top_p,
                          uint64_t *rng, cand_t *cand)
{
    if (temperature <= 0.0f) {
        int best = 0;
        for (int v = 1; v < V; v++)
            if (z[v] > z[best])
                best = v;
        return best;
    }
    double mx = -INFINITY, sum = 0.0;
    for (int v = 0; v < V; v++)
        mx = z[v] / temperature > mx ? z[v] / temperature : mx;
    for (int v = 0; v < V; v++) {
        cand[v] = (cand_t){exp(z[v] / temperature - mx), v};
        sum += cand[v].p;
    }
    int n = V;
    if (top_p < 1.0f) {
        /* nucleus: the smallest set of most likely tokens holding top_p of the mass */
        qsort(cand, V, sizeof(cand_t), cand_cmp);
        double acc = 0.0;
        for (n = 0; n < V;) {
            acc += cand[n++].p;
            if (acc >= top_p * sum)
                break;
        }
        sum = acc;
    }
    double u = (double)(rng_next(rng) >> 11) / 9007199254740992.0 * sum;
    double acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += cand[i].p;
        if (u < acc)
            return cand[i].id;
    }
    return cand[n - 1].id;
}

int llama_generate(llama_model_t *m, const int32_t *prompt, int n_prompt, int max_new,
                   float temperature, float top_p, uint64_t seed, const int32_t *eos,
                   int n_eos, int32_t *out, int *n_out, deft_err_t *err)
{
    *n_out = 0;
    if (n_prompt <= 0)
        return deft_fail(err, DEFT_ERR_USAGE, "llama: generation needs a non-empty prompt");
    if (max_new <= 0)
        return DEFT_OK;
    const backend_t *be = m->be;
    int V = m->cfg.vocab_size, d = m->cfg.hidden_size, Vl = (int)m->vocab_local;
    /* the last generated token is never fed back, hence - 1 */
    int kv_cap = n_prompt + max_new - 1;
    float *z = xmalloc(sizeof(float) * V);                 /* [V] the next token's logits */
    float *zl = m->tp_size > 1 ? xmalloc(sizeof(float) * Vl) : NULL;   /* [V/tp] */
    cand_t *cand = xmalloc(sizeof(cand_t) * V);
    uint64_t rng = seed;
    int rc = DEFT_OK, pos = 0, T = n_prompt;
    const int32_t *feed = prompt;
    int32_t tok;
    /* prefill the prompt, then one token at a time into the cache */
    while (!rc) {
        int32_t klen = pos + T;
        rc = forward_rows(m, feed, &klen, 1, T, kv_cap, pos, false, err);
        if (!rc)
            rc = logits_ensure(m, 1, err);
        if (rc)
            break;
        linear(be, m->acts->logits, m->acts->hidden + (int64_t)(T - 1) * d, m->lm_head, 1, d,
               Vl, 0.0f);
        if (m->tp_size == 1) {
            be->to_host(z, m->acts->logits, sizeof(float) * V);
        } else {
            /* every rank picks from the same full row, so all pick the same token */
            be->to_host(zl, m->acts->logits, sizeof(float) * Vl);
            if ((rc = comm_allgather_f32(m->tp, zl, (size_t)Vl, z, err)))
                break;
        }
        tok = pick_token(z, V, temperature, top_p, &rng, cand);
        out[(*n_out)++] = tok;
        bool stop = *n_out >= max_new;
        for (int e = 0; e < n_eos; e++)
            stop = stop || tok == eos[e];
        if (stop)
            break;
        pos += T;
        T = 1;
        feed = &out[*n_out - 1];
    }
    free(z);
    free(zl);
    free(cand);
    return rc;
}
