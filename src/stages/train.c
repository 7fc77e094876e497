/* The training loop (stage train): SFT, DPO or PRO with the DEFT term
 * -omega * R_Q (DEFT paper Eq. 10) on a Llama model, on a tp x dp grid of MPI
 * ranks (tensor parallel within groups of tp, data parallel across them)
 * with gradient accumulation, evaluation on a held-out split,
 * metrics.jsonl, HDF5 checkpoints with exact resume, and clean stops on
 * SIGTERM/SIGUSR1. docs/training.md describes the loop. */
#include "stages/train.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/checkpoint.h"
#include "model/llama.h"
#include "mpi/comm_grid.h"
#include "stages/qdiff.h"
#include "stages/ref.h"
#include "util/log.h"
#include "util/rng.h"
#include "util/sha256.h"
#include "util/signals.h"

// ----------------------------------------------------------------------------
// sequences

void train_sample_free(train_sample_t *s)
{
    for (int k = 0; k < s->n_resp; k++)
        free(s->ids[k]);
    free(s->ids);
    free(s->len);
    free(s->reward);
    memset(s, 0, sizeof *s);
}

int train_tokenize(const tokenizer_t *tok, const pref_record_t *rec,
                   const train_seq_opts_t *so, train_sample_t *out, deft_err_t *err)
{
    memset(out, 0, sizeof *out);
    tok_ids_t prompt = {0}, resp = {0};
    int rc = tok_encode(tok, rec->prompt, rec->prompt_len, 0, &prompt, err);
    if (rc) {
        tok_ids_free(&prompt);
        return rc;
    }
    /* the prompt loses its oldest turns first: keep its last max_prompt_len tokens */
    size_t p_keep = prompt.n < (size_t)so->max_prompt_len ? prompt.n : (size_t)so->max_prompt_len;
    const int32_t *p_ids = prompt.ids + (prompt.n - p_keep);
    out->id = rec->id;
    out->n_resp = rec->n_resp;
    out->prompt_end = 1 + (int)p_keep;
    out->ids = xcalloc((size_t)rec->n_resp, sizeof(int32_t *));
    out->len = xcalloc((size_t)rec->n_resp, sizeof(int));
    if (rec->reward) {
        out->reward = xmalloc(sizeof(double) * (size_t)rec->n_resp);
        memcpy(out->reward, rec->reward, sizeof(double) * (size_t)rec->n_resp);
    }
    for (int k = 0; k < rec->n_resp && !rc; k++) {
        resp.n = 0;
        rc = tok_encode(tok, rec->resp[k], rec->resp_len[k], TOK_CONTINUATION, &resp, err);
        if (!rc && resp.n == 0)
            rc = deft_fail(err, DEFT_ERR_DATA, "file %d line %lld: response %d has no tokens",
                           rec->id.file, (long long)rec->id.line, k + 1);
        if (rc)
            break;
        /* room left after BOS + prompt and the terminator, but at least one token */
        int room = so->max_len - out->prompt_end - 1;
        int r_keep = (int)resp.n < room ? (int)resp.n : room;
        if (r_keep < 1)
            r_keep = 1;
        int len = out->prompt_end + r_keep + 1;
        int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)len);   /* (len,) one sequence */
        ids[0] = so->bos;
        memcpy(ids + 1, p_ids, sizeof(int32_t) * p_keep);
        memcpy(ids + out->prompt_end, resp.ids, sizeof(int32_t) * (size_t)r_keep);
        ids[len - 1] = so->eos;
        out->ids[k] = ids;
        out->len[k] = len;
    }
    tok_ids_free(&prompt);
    tok_ids_free(&resp);
    if (rc)
        train_sample_free(out);
    return rc;
}

bool train_is_eval_id(sample_id_t id, double fraction)
{
    if (fraction <= 0)
        return false;
    /* one splitmix64 output of the id: a hash, not a draw from the run's seed */
    rng_t h = {.seed = ((uint64_t)(uint32_t)id.file << 40) ^ (uint64_t)id.line, .counter = 0};
    return rng_uniform(&h) < fraction;
}

// ----------------------------------------------------------------------------
// the trainer's state

typedef struct {
    const train_opts_t *o;
    comm_t *comm;
    int rank, nranks;
    /* The grid: a tp group shares one model and takes the same samples; data
     * is dealt to, and gradients summed over, the dp_size groups. At tp 1
     * dp is comm itself and no grid is made. */
    comm_grid_t grid;
    comm_t *dp;
    int dp_rank, dp_size;
    const backend_t *be;
    llama_model_t model;
    int64_t n_weights;          /* parameters of the whole model, a tied matrix counted once */
    adamw_t opt;
    train_sample_t *samples;    /* (n_samples,) training samples, then evaluation ones */
    int64_t n_samples, n_train; /* training samples are [0, n_train) */
    ref_logps_t ref;            /* DPO: reference sums of every sample; else empty */
    float *qdiff;               /* (V,) model vocabulary, zero beyond the file's; NULL */
    char qdiff_hex[65];         /* sha256 of Q_diff as stored (fp64), or "" */
    int64_t *order;             /* (n_train,) this epoch's data order */
    int64_t step, epoch, epoch_pos, total_steps;
    int global_batch;           /* micro_batch * grad_accum * dp_size samples */
    char ckpt_dir[4096], metrics_path[4096];
    FILE *metrics;              /* rank 0 */
    double t_start;             /* wall clock when this process started training */
    int64_t steps_run;          /* steps taken by this process (for the ETA) */
} trainer_t;

/* Error agreement after work that may fail on some ranks only: every rank
 * returns the same code, and only the first failing rank keeps its message. */
static int agree(trainer_t *t, int rc, deft_err_t *err)
{
    int code = 0, first = -1;
    deft_err_t merr;
    if (comm_agree(t->comm, rc, &code, &first, &merr)) {
        *err = merr;
        return DEFT_ERR_MPI;
    }
    if (code && t->rank != first)
        err->msg[0] = '\0';
    return code;
}

/* Elements of the whole tensor of which p may hold a tensor-parallel shard. */
static int64_t param_full_numel(const llama_param_t *p)
{
    return p->full_shape[0] * (p->ndim == 2 ? p->full_shape[1] : 1);
}

static int mkdir_p(const char *path, deft_err_t *err)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) && errno != EEXIST)
                return deft_fail(err, DEFT_ERR_IO, "%s: cannot create folder: %s", buf,
                                 strerror(errno));
            *p = c;
            if (!c)
                break;
        }
    }
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// data: read, tokenize, split

static int tokenize_all(const tokenizer_t *tok, const pref_data_t *d, int file_offset,
                        const train_seq_opts_t *so, train_sample_t *out, deft_err_t *err)
{
    for (size_t i = 0; i < d->n; i++) {
        int rc = train_tokenize(tok, &d->rec[i], so, &out[i], err);
        if (rc)
            return rc;
        out[i].id.file += file_offset;
    }
    return DEFT_OK;
}

/* samples = training samples (in sample order), then evaluation samples. */
static int trainer_load_data(trainer_t *t, const tokenizer_t *tok, deft_err_t *err)
{
    const train_opts_t *o = t->o;
    read_opts_t ro = {.rank = 0, .nranks = 1, .strict = o->strict,
                      .keep_file_order = o->keep_file_order};
    pref_data_t d = {0}, e = {0};
    int rc = data_read(&d, o->src, o->nsrc, &ro, err);
    if (!rc && o->neval_src)
        rc = data_read(&e, o->eval_src, o->neval_src, &ro, err);
    if (rc) {
        data_free(&d);
        data_free(&e);
        return rc;
    }
    strbuf_t rep = {0};
    data_report(&d, o->src, &rep);
    if (rep.len)
        log_info("train: %.*s", (int)rep.len, rep.data);
    sb_free(&rep);

    size_t n_all = d.n + e.n, n_read = d.n;
    double frac = o->neval_src ? 0 : o->eval_fraction;
    train_sample_t *all = xcalloc(n_all + 1, sizeof *all);
    rc = tokenize_all(tok, &d, 0, &o->seq, all, err);
    /* evaluation files get ids after the training files', so ids stay unique */
    if (!rc)
        rc = tokenize_all(tok, &e, o->nsrc, &o->seq, all + d.n, err);
    data_free(&d);
    data_free(&e);
    if (rc) {
        for (size_t i = 0; i < n_all; i++)
            train_sample_free(&all[i]);
        free(all);
        return rc;
    }
    /* stable partition: held-out ids move behind the training ones */
    t->samples = xcalloc(n_all + 1, sizeof *t->samples);
    int64_t n_train = 0, j = 0;
    for (size_t i = 0; i < n_all; i++)
        if (i < n_read && !train_is_eval_id(all[i].id, frac))
            t->samples[n_train++] = all[i];
    j = n_train;
    for (size_t i = 0; i < n_all; i++)
        if (!(i < n_read && !train_is_eval_id(all[i].id, frac)))
            t->samples[j++] = all[i];
    free(all);
    t->n_samples = (int64_t)n_all;
    t->n_train = n_train;
    if (n_train == 0)
        return deft_fail(err, DEFT_ERR_DATA, "train: no training samples left (%zu read, "
                         "eval_fraction %g)", n_all, o->eval_fraction);
    int64_t tokens = 0;
    for (int64_t i = 0; i < t->n_samples; i++)
        for (int k = 0; k < t->samples[i].n_resp; k++)
            tokens += t->samples[i].len[k];
    log_info("train: %lld training samples, %lld evaluation samples, %lld tokens in all "
             "(max_len %d, prompt cut to %d)", (long long)n_train,
             (long long)(t->n_samples - n_train), (long long)tokens, o->seq.max_len,
             o->seq.max_prompt_len);
    return DEFT_OK;
}

/* tok_ids: ids of the tokenizer the data is tokenized with. Q_diff has one
 * value per id of the tokenizer it was counted with, so another count means
 * another tokenizer, whose token weights would land on the wrong ids. */
static int trainer_load_qdiff(trainer_t *t, int32_t tok_ids, deft_err_t *err)
{
    const train_opts_t *o = t->o;
    t->qdiff_hex[0] = '\0';
    if (!o->qdiff_path) {
        if (o->loss.omega != 0)
            return deft_fail(err, DEFT_ERR_USAGE, "train: omega is %g but no Q_diff was given: "
                             "add --qdiff FILE (from `deft qdiff`) or set omega 0",
                             o->loss.omega);
        return DEFT_OK;
    }
    double *q = NULL;
    int32_t V = 0;
    int rc = qdiff_read(o->qdiff_path, NULL, &q, &V, err);
    if (rc)
        return rc;
    int64_t Vm = t->model.cfg.vocab_size;
    if (V > Vm) {
        free(q);
        return deft_fail(err, DEFT_ERR_DATA, "%s: Q_diff has %d entries but the model's "
                         "vocabulary has %lld", o->qdiff_path, V, (long long)Vm);
    }
    if (V != tok_ids) {
        free(q);
        return deft_fail(err, DEFT_ERR_DATA, "%s: Q_diff has %d entries but the tokenizer "
                         "%s has %d ids: it was counted with another tokenizer (run deft "
                         "qdiff with this model's tokenizer)", o->qdiff_path, V,
                         o->tok_path ? o->tok_path : o->model_dir, tok_ids);
    }
    sha256_buf_hex(q, sizeof(double) * (size_t)V, t->qdiff_hex);
    /* ids the tokenizer never produces carry no weight: zero keeps sum(Q_diff) = 0 */
    t->qdiff = xcalloc((size_t)Vm, sizeof(float));
    for (int32_t v = 0; v < V; v++)
        t->qdiff[v] = (float)q[v];
    free(q);
    return DEFT_OK;
}

static void trainer_shuffle(trainer_t *t, rng_t *r)
{
    rng_init(r, rng_derive(t->o->seed, "data-order") ^ (0x9E3779B97F4A7C15ull *
                                                         (uint64_t)(t->epoch + 1)));
    for (int64_t i = 0; i < t->n_train; i++)
        t->order[i] = i;
    for (int64_t i = t->n_train - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(r, (uint64_t)i + 1);
        int64_t x = t->order[i];
        t->order[i] = t->order[j];
        t->order[j] = x;
    }
}

// ----------------------------------------------------------------------------
// one micro-batch: forward, losses, backward

/* A micro-batch as the model takes it: B sequences right-padded to T. */
typedef struct {
    int B, T;
    int32_t *ids;    /* [B, T] right-padded with id 0 */
    int32_t *lens;   /* [B] */
    int32_t *tgt;    /* [B, T] next token, -1: not scored */
    int *row0;       /* [ns] sequence of y_1 of each sample */
} micro_t;

static void micro_make(const trainer_t *t, const int64_t *idx, int ns, micro_t *mb,
                       int64_t *tokens)
{
    bool sft = t->o->loss.kind == LOSS_SFT;
    int B = 0, T = 0;
    for (int j = 0; j < ns; j++) {
        const train_sample_t *s = &t->samples[idx[j]];
        int nr = sft ? 1 : s->n_resp;
        for (int k = 0; k < nr; k++)
            T = s->len[k] > T ? s->len[k] : T;
        B += nr;
    }
    size_t N = (size_t)B * T;
    mb->B = B, mb->T = T;
    mb->ids = xcalloc(N, sizeof(int32_t));
    mb->lens = xcalloc((size_t)B, sizeof(int32_t));
    mb->tgt = xmalloc(N * sizeof(int32_t));
    mb->row0 = xcalloc((size_t)ns, sizeof(int));
    for (size_t i = 0; i < N; i++)
        mb->tgt[i] = -1;
    int b = 0;
    for (int j = 0; j < ns; j++) {
        const train_sample_t *s = &t->samples[idx[j]];
        int nr = sft ? 1 : s->n_resp;
        mb->row0[j] = b;
        for (int k = 0; k < nr; k++, b++) {
            int32_t *row = mb->ids + (size_t)b * T;
            mb->lens[b] = s->len[k];
            memcpy(row, s->ids[k], sizeof(int32_t) * (size_t)mb->lens[b]);
            for (int r = s->prompt_end - 1; r < mb->lens[b] - 1; r++)
                mb->tgt[(size_t)b * T + r] = row[r + 1];
            *tokens += mb->lens[b];
        }
    }
}

static void micro_free(micro_t *mb)
{
    free(mb->ids);
    free(mb->lens);
    free(mb->tgt);
    free(mb->row0);
}

/* The loss inputs of samples idx[ns] from log-probs lp [B, T]: ls[ns] over
 * lr[B], with gradients into dlp [B, T] when dlp is non-NULL. */
static void micro_losses(const trainer_t *t, const int64_t *idx, int ns, const micro_t *mb,
                         const float *lp, float *dlp, loss_sample_t *ls, loss_resp_t *lr)
{
    bool sft = t->o->loss.kind == LOSS_SFT;
    int b = 0, T = mb->T;
    for (int j = 0; j < ns; j++) {
        const train_sample_t *s = &t->samples[idx[j]];
        int nr = sft ? 1 : s->n_resp;
        ls[j].resp = &lr[b];
        ls[j].n_resp = nr;
        ls[j].has_rewards = s->reward != NULL;
        for (int k = 0; k < nr; k++, b++) {
            size_t at = (size_t)b * T + (size_t)(s->prompt_end - 1);
            lr[b].logp = lp + at;
            lr[b].dlogp = dlp ? dlp + at : NULL;
            lr[b].n_tok = s->len[k] - s->prompt_end;
            lr[b].ref_sum = t->ref.sum ? t->ref.sum[t->ref.off[idx[j]] + k] : 0.0;
            lr[b].reward = s->reward ? s->reward[k] : 0.0;
        }
    }
}

/* run_micro under tensor parallelism: the log-softmax over the vocabulary
 * shards and R_Q's partial dot products are completed over the tp group. */
static int run_micro_tp(trainer_t *t, const int64_t *idx, int ns, double n_global,
                        bool train, loss_stats_t *st, int64_t *tokens, deft_err_t *err)
{
    const train_opts_t *o = t->o;
    llama_model_t *m = &t->model;
    int64_t Vl = m->vocab_local;
    micro_t mb;
    micro_make(t, idx, ns, &mb, tokens);
    size_t N = (size_t)mb.B * mb.T;
    float *logits = xmalloc(N * Vl * sizeof(float));   /* [B, T, V/tp] this rank's columns */
    float *lp = xcalloc(N, sizeof(float));             /* [B, T] log-probs of tgt */
    float *lse = xcalloc(N, sizeof(float));            /* [B, T] full log-sum-exp */
    float *dlp = xcalloc(N, sizeof(float));            /* [B, T] d(loss)/d(lp) */
    double *rq = xcalloc((size_t)ns + 1, sizeof(double));   /* [ns] R_Q of each y_1 */
    loss_sample_t *ls = xcalloc((size_t)ns, sizeof *ls);
    loss_resp_t *lr = xcalloc((size_t)mb.B, sizeof *lr);
    float *dlogits = NULL;
    const float *qd = t->qdiff ? t->qdiff + m->vocab_start : NULL;   /* [V/tp] */
    int rc = llama_forward(m, mb.ids, mb.lens, mb.B, mb.T, NULL, logits, train, err);
    if (!rc)
        rc = llama_tp_logsoftmax_gather(m, logits, mb.tgt, (int64_t)N, lp, lse, err);
    if (rc)
        goto done;
    micro_losses(t, idx, ns, &mb, lp, train ? dlp : NULL, ls, lr);
    for (int j = 0; j < ns && qd; j++) {
        /* R_Q on y_1's response tokens: this shard's part of each dot product */
        const train_sample_t *s = &t->samples[idx[j]];
        size_t at = (size_t)mb.row0[j] * mb.T + (size_t)(s->prompt_end - 1);
        rq[j] = loss_rq_from_logits(logits + at * Vl, s->len[0] - s->prompt_end - 1, (int)Vl,
                                    qd);
    }
    if (qd && (rc = llama_tp_sum(m, rq, (size_t)ns, err)))
        goto done;
    for (int j = 0; j < ns; j++)
        ls[j].r_q = rq[j];
    rc = loss_batch(&o->loss, ls, ns, n_global, st, err);
    if (rc || !train)
        goto done;
    dlogits = xcalloc(N * Vl, sizeof(float));   /* [B, T, V/tp] */
    llama_tp_logsoftmax_gather_bwd(m, dlogits, logits, mb.tgt, lse, dlp, (int64_t)N);
    if (qd && o->loss.omega != 0)
        for (int j = 0; j < ns; j++) {
            const train_sample_t *s = &t->samples[idx[j]];
            size_t at = (size_t)mb.row0[j] * mb.T + (size_t)(s->prompt_end - 1);
            loss_deft_add_dlogits(dlogits + at * Vl, s->len[0] - s->prompt_end - 1, (int)Vl,
                                  qd, o->loss.omega, 1.0 / n_global);
        }
    rc = llama_backward(m, dlogits, NULL, err);
done:
    micro_free(&mb);
    free(logits);
    free(lp);
    free(lse);
    free(dlp);
    free(rq);
    free(ls);
    free(lr);
    free(dlogits);
    return rc;
}

/* Forward of samples idx[ns] (every response; y_1 only for SFT), the
 * objective's share with divisor n_global into *st, and with `train` the
 * gradients accumulated into the parameters. *tokens += tokens processed.
 * Under tensor parallelism every rank of the tp group calls it with the same
 * samples: logits are this rank's vocabulary shard, log-probs and the loss
 * come out whole on each. */
static int run_micro(trainer_t *t, const int64_t *idx, int ns, double n_global, bool train,
                     loss_stats_t *st, int64_t *tokens, deft_err_t *err)
{
    if (t->model.tp_size > 1)
        return run_micro_tp(t, idx, ns, n_global, train, st, tokens, err);
    const train_opts_t *o = t->o;
    const backend_t *be = t->be;
    int V = (int)t->model.cfg.vocab_size;
    micro_t mb;
    micro_make(t, idx, ns, &mb, tokens);
    int B = mb.B, T = mb.T;
    size_t N = (size_t)B * T;
    float *logits = xmalloc(N * V * sizeof(float));   /* [B, T, V] host */
    float *lp = xcalloc(N, sizeof(float));            /* [B, T] log-probs of tgt */
    float *dlp = xcalloc(N, sizeof(float));           /* [B, T] d(loss)/d(lp) */
    /* backend copies of the log-softmax inputs: [B, T, V], [B, T], [B, T] */
    float *logits_d = be->alloc(N * V * sizeof(float));
    int32_t *tgt_d = be->alloc(N * sizeof(int32_t));
    float *vec_d = be->alloc(N * sizeof(float));
    loss_sample_t *ls = xcalloc((size_t)ns, sizeof *ls);
    loss_resp_t *lr = xcalloc((size_t)B, sizeof *lr);
    int rc = DEFT_OK;
    if (!logits_d || !tgt_d || !vec_d) {
        rc = deft_fail(err, DEFT_ERR_NOMEM, "train: no memory for the logits of %d sequences "
                       "of %d tokens (%d ids each)", B, T, V);
        goto done;
    }
    rc = llama_forward(&t->model, mb.ids, mb.lens, B, T, NULL, logits, train, err);
    if (rc)
        goto done;
    be->to_device(logits_d, logits, N * V * sizeof(float));
    be->to_device(tgt_d, mb.tgt, N * sizeof(int32_t));
    be->logsoftmax_gather_fwd(vec_d, logits_d, tgt_d, (int)N, V);
    be->to_host(lp, vec_d, N * sizeof(float));

    micro_losses(t, idx, ns, &mb, lp, train ? dlp : NULL, ls, lr);
    for (int j = 0; j < ns && t->qdiff; j++) {
        /* R_Q on y_1's response tokens: the terminator's row is excluded */
        const train_sample_t *s = &t->samples[idx[j]];
        size_t at = (size_t)mb.row0[j] * T + (size_t)(s->prompt_end - 1);
        ls[j].r_q = loss_rq_from_logits(logits + at * V, s->len[0] - s->prompt_end - 1, V,
                                        t->qdiff);
    }
    rc = loss_batch(&o->loss, ls, ns, n_global, st, err);
    if (rc || !train)
        goto done;

    /* dL/dz = dL/dlp * (onehot - softmax) + the DEFT term's constant rows */
    be->to_device(vec_d, dlp, N * sizeof(float));
    float *dlogits = logits;   /* [B, T, V] host: the logits are no longer needed */
    float *scratch = be->alloc(N * V * sizeof(float));   /* [B, T, V] dlogits, zeroed */
    if (!scratch) {
        rc = deft_fail(err, DEFT_ERR_NOMEM, "train: no memory for dlogits [%d, %d, %d]", B, T,
                       V);
        goto done;
    }
    be->logsoftmax_gather_bwd(scratch, logits_d, tgt_d, vec_d, (int)N, V);
    be->to_host(dlogits, scratch, N * V * sizeof(float));
    be->free(scratch);
    if (t->qdiff && o->loss.omega != 0)
        for (int j = 0; j < ns; j++) {
            const train_sample_t *s = &t->samples[idx[j]];
            size_t at = (size_t)mb.row0[j] * T + (size_t)(s->prompt_end - 1);
            loss_deft_add_dlogits(dlogits + at * V, s->len[0] - s->prompt_end - 1, V, t->qdiff,
                                  o->loss.omega, 1.0 / n_global);
        }
    rc = llama_backward(&t->model, dlogits, NULL, err);
done:
    be->free(logits_d);
    be->free(tgt_d);
    be->free(vec_d);
    micro_free(&mb);
    free(logits);
    free(lp);
    free(dlp);
    free(ls);
    free(lr);
    return rc;
}

// ----------------------------------------------------------------------------
// reductions over ranks

/* Sums every parameter's gradient over the dp groups (each rank's shard
 * with the same shard of the other groups), one tensor at a time in fp64
 * (rank order, so every rank gets the same bits). */
static int allreduce_grads(trainer_t *t, deft_err_t *err)
{
    if (t->dp_size == 1)
        return DEFT_OK;
    int64_t cap = 0;
    for (int i = 0; i < t->model.n_params; i++)
        cap = t->model.params[i].numel > cap ? t->model.params[i].numel : cap;
    float *h = xmalloc(sizeof(float) * (size_t)cap);    /* (numel,) host gradient */
    double *w = xmalloc(sizeof(double) * (size_t)cap);  /* (numel,) fp64 for the sum */
    int rc = DEFT_OK;
    for (int i = 0; i < t->model.n_params && !rc; i++) {
        llama_param_t *p = &t->model.params[i];
        t->be->to_host(h, p->grad, sizeof(float) * (size_t)p->numel);
        for (int64_t k = 0; k < p->numel; k++)
            w[k] = h[k];
        rc = comm_allreduce_sum_f64(t->dp, w, (size_t)p->numel, err);
        for (int64_t k = 0; k < p->numel; k++)
            h[k] = (float)w[k];
        t->be->to_device(p->grad, h, sizeof(float) * (size_t)p->numel);
    }
    free(h);
    free(w);
    return rc;
}

enum { ST_TOTAL, ST_PREF, ST_SFT, ST_DEFT, ST_RQ, ST_NLL, ST_ACC, ST_MARGIN, ST_CHOSEN,
       ST_REJECTED, ST_SAMPLES, ST_TOKENS, ST_N };

static int allreduce_stats(trainer_t *t, loss_stats_t *st, int64_t *tokens, deft_err_t *err)
{
    double v[ST_N] = {st->total, st->pref, st->sft, st->deft, st->r_q, st->nll, st->acc,
                      st->margin, st->chosen_reward, st->rejected_reward,
                      (double)st->n_samples, (double)*tokens};
    /* every rank of a tp group holds the same whole statistics: sum over dp */
    int rc = comm_allreduce_sum_f64(t->dp, v, ST_N, err);
    *st = (loss_stats_t){v[ST_TOTAL], v[ST_PREF], v[ST_SFT], v[ST_DEFT], v[ST_RQ], v[ST_NLL],
                         v[ST_ACC], v[ST_MARGIN], v[ST_CHOSEN], v[ST_REJECTED],
                         (int64_t)v[ST_SAMPLES]};
    *tokens = (int64_t)v[ST_TOKENS];
    return rc;
}

// ----------------------------------------------------------------------------
// logging and metrics.jsonl

static void json_set_real(json_t *o, const char *key, double x)
{
    json_object_set_new(o, key, isfinite(x) ? json_real(x) : json_null());
}

/* One metrics.jsonl object: the losses of a step (split train) or of an
 * evaluation (split eval); timing fields sit under "time", so that runs can
 * be compared without them. */
static void metrics_write(trainer_t *t, const char *split, const loss_stats_t *st,
                          int64_t tokens, double grad_norm, double lr, double secs)
{
    if (t->rank != 0 || !t->metrics)
        return;
    const train_opts_t *o = t->o;
    json_t *j = json_object();
    json_object_set_new(j, "split", json_string(split));
    json_object_set_new(j, "step", json_integer(t->step));
    json_object_set_new(j, "epoch", json_integer(t->epoch));
    json_object_set_new(j, "samples", json_integer(st->n_samples));
    json_object_set_new(j, "tokens", json_integer(tokens));
    json_set_real(j, "loss", st->total);
    json_set_real(j, "pref", st->pref);
    json_set_real(j, "sft", st->sft);
    json_set_real(j, "deft", st->deft);
    json_set_real(j, "nll", st->nll);
    if (o->loss.kind != LOSS_SFT) {
        json_set_real(j, "acc", st->acc);
        json_set_real(j, "margin", st->margin);
    }
    if (o->loss.kind == LOSS_DPO) {
        json_set_real(j, "chosen_reward", st->chosen_reward);
        json_set_real(j, "rejected_reward", st->rejected_reward);
    }
    if (t->qdiff)
        json_set_real(j, "r_q", st->r_q);
    if (!strcmp(split, "train")) {
        json_set_real(j, "grad_norm", grad_norm);
        json_set_real(j, "lr", lr);
    }
    json_t *tm = json_object();
    json_set_real(tm, "seconds", secs);
    json_set_real(tm, "tokens_per_s", secs > 0 ? tokens / secs : 0);
    if (!strcmp(split, "train")) {
        double flops = 6.0 * (double)t->n_weights * (double)tokens;
        json_set_real(tm, "mfu", secs > 0 ? flops / secs / (o->peak_flops * t->nranks) : 0);
    }
    json_set_real(tm, "elapsed_s", wall_seconds() - t->t_start);
    json_object_set_new(j, "time", tm);
    char *line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
    fprintf(t->metrics, "%s\n", line);
    fflush(t->metrics);
    free(line);
    json_decref(j);
}

static void log_step(trainer_t *t, const loss_stats_t *st, int64_t tokens, double grad_norm,
                     double lr, double secs)
{
    const train_opts_t *o = t->o;
    char pref[96] = "", rq[48] = "", eta[32];
    if (o->loss.kind == LOSS_DPO)
        snprintf(pref, sizeof pref, " | reward acc %.3f margin %+.4f", st->acc, st->margin);
    else if (o->loss.kind == LOSS_PRO)
        snprintf(pref, sizeof pref, " | rank acc %.3f margin %+.4f", st->acc, st->margin);
    if (t->qdiff)
        snprintf(rq, sizeof rq, " | R_Q %+.5g", st->r_q);
    double per_step = (wall_seconds() - t->t_start) / (double)(t->steps_run ? t->steps_run : 1);
    format_duration(eta, sizeof eta, per_step * (double)(t->total_steps - t->step));
    double flops = 6.0 * (double)t->n_weights * (double)tokens;
    double mfu = secs > 0 ? flops / secs / (o->peak_flops * t->nranks) : 0;
    log_info("step %lld/%lld | loss %.5f (pref %.5f sft %.5f deft %+.3g)%s%s | gnorm %.4g | "
             "lr %.3g | %.0f tok/s | MFU %.2f%% | ETA %s",
             (long long)t->step, (long long)t->total_steps, st->total, st->pref, st->sft,
             st->deft, pref, rq, grad_norm, lr, secs > 0 ? tokens / secs : 0, 100 * mfu, eta);
}

// ----------------------------------------------------------------------------
// evaluation: the same losses on the held-out samples, no update

static int evaluate(trainer_t *t, deft_err_t *err)
{
    int64_t n_eval = t->n_samples - t->n_train;
    if (n_eval == 0)
        return DEFT_OK;
    double t0 = wall_seconds();
    loss_stats_t st = {0};
    int64_t tokens = 0;
    int mb = t->o->micro_batch;
    /* [min(mb, n_eval)] sample indices: micro_batch may exceed the data, and a
     * stack array of its size overflowed the stack */
    int64_t *idx = xmalloc(sizeof *idx * (size_t)(mb < n_eval ? mb : n_eval));
    int rc = DEFT_OK;
    /* sample i goes to dp group i % dp_size; every rank joins the reduction */
    int ns = 0;
    for (int64_t i = t->dp_rank; i < n_eval && !rc; i += t->dp_size) {
        idx[ns++] = t->n_train + i;
        if (ns == mb || i + t->dp_size >= n_eval) {
            rc = run_micro(t, idx, ns, (double)n_eval, false, &st, &tokens, err);
            ns = 0;
        }
    }
    free(idx);
    rc = agree(t, rc, err);
    if (rc || (rc = allreduce_stats(t, &st, &tokens, err)))
        return rc;
    double secs = wall_seconds() - t0;
    char pref[96] = "", rq[48] = "";
    if (t->o->loss.kind != LOSS_SFT)
        snprintf(pref, sizeof pref, " | acc %.3f margin %+.4f", st.acc, st.margin);
    if (t->qdiff)
        snprintf(rq, sizeof rq, " | R_Q %+.5g", st.r_q);
    log_info("eval at step %lld: %lld samples | loss %.5f (pref %.5f sft %.5f) | nll %.4f%s%s",
             (long long)t->step, (long long)st.n_samples, st.total, st.pref, st.sft, st.nll,
             pref, rq);
    metrics_write(t, "eval", &st, tokens, 0, 0, secs);
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// checkpoints

/* Tensors of the model and optimizer, whole (full_shape) whatever the tp:
 * host copies of the parameters (the backend's memory need not be host
 * memory); the moments in place at tp 1, gathered copies under tensor
 * parallelism. */
typedef struct {
    ckpt_tensor_t *p, *m, *v;   /* (n_params,) each */
    float *host;                /* (sum numel,) parameter copies, back to back; then the two
                                   moments' copies under tp: (3 * sum numel,) */
} ckpt_set_t;

static void ckpt_set_make(trainer_t *t, ckpt_set_t *c)
{
    int n = t->model.n_params;
    bool tp = t->model.tp_size > 1;
    c->p = xcalloc((size_t)n, sizeof(ckpt_tensor_t));
    c->m = xcalloc((size_t)n, sizeof(ckpt_tensor_t));
    c->v = xcalloc((size_t)n, sizeof(ckpt_tensor_t));
    c->host = xmalloc(sizeof(float) * (size_t)t->n_weights * (tp ? 3 : 1));
    float *h = c->host;
    for (int i = 0; i < n; i++) {
        const llama_param_t *p = &t->model.params[i];
        ckpt_tensor_t base = {.name = p->name, .ndim = p->ndim};
        for (int d = 0; d < p->ndim; d++)
            base.shape[d] = p->full_shape[d];
        c->p[i] = c->m[i] = c->v[i] = base;
        int64_t numel = param_full_numel(p);
        c->p[i].data = h;
        c->m[i].data = tp ? h + t->n_weights : t->opt.p[i].m;
        c->v[i].data = tp ? h + 2 * t->n_weights : t->opt.p[i].v;
        h += numel;
    }
}

/* Under tensor parallelism: the whole tensors from every rank's shards
 * into c on the group's tp rank 0 (a collective over the tp group; c is
 * NULL on the other ranks, which only send). */
static int ckpt_set_gather(trainer_t *t, ckpt_set_t *c, deft_err_t *err)
{
    int rc = DEFT_OK;
    for (int i = 0; i < t->model.n_params && !rc; i++) {
        rc = llama_param_gather(&t->model, i, false, c ? c->p[i].data : NULL, 0, err);
        if (!rc)
            rc = llama_shard_gather(&t->model, i, t->opt.p[i].m, c ? c->m[i].data : NULL, 0,
                                    err);
        if (!rc)
            rc = llama_shard_gather(&t->model, i, t->opt.p[i].v, c ? c->v[i].data : NULL, 0,
                                    err);
    }
    return rc;
}

static void ckpt_set_free(ckpt_set_t *c)
{
    free(c->p);
    free(c->m);
    free(c->v);
    free(c->host);
}

static int checkpoint_write(trainer_t *t, const rng_t *r, deft_err_t *err)
{
    int rc = DEFT_OK;
    ckpt_set_t c = {0};
    /* tp: the ranks of rank 0's group send their shards to rank 0, which
     * writes whole tensors (it holds the model and both moments in fp32) */
    if (t->model.tp_size > 1) {
        if (t->rank == 0)
            ckpt_set_make(t, &c);
        if (t->dp_rank == 0)
            rc = ckpt_set_gather(t, t->rank == 0 ? &c : NULL, err);
        if ((rc = agree(t, rc, err))) {
            if (c.p)
                ckpt_set_free(&c);
            return rc;
        }
    }
    if (t->rank == 0) {
        if (t->model.tp_size == 1) {
            ckpt_set_make(t, &c);
            for (int i = 0; i < t->model.n_params; i++)
                t->be->to_host(c.p[i].data, t->model.params[i].data,
                               sizeof(float) * (size_t)t->model.params[i].numel);
        }
        uint64_t words[3] = {r->seed, r->counter, (uint64_t)t->o->seed};
        ckpt_state_t st = {.step = t->step, .epoch = t->epoch, .epoch_pos = t->epoch_pos,
                           .rng = words, .n_rng = 3, .config_text = (char *)t->o->config_text,
                           .qdiff_checksum = t->qdiff_hex};
        ckpt_tensors_t ts = {c.p, c.m, c.v, t->model.n_params};
        char path[4096];
        rc = checkpoint_save(t->ckpt_dir, &st, &ts, t->o->keep_checkpoints, path, sizeof path,
                             err);
        if (!rc)
            log_info("checkpoint: wrote %s (step %lld, epoch %lld, %lld/%lld samples of it)",
                     path, (long long)t->step, (long long)t->epoch, (long long)t->epoch_pos,
                     (long long)t->n_train);
    }
    if (c.p)
        ckpt_set_free(&c);
    return agree(t, rc, err);
}

/* Keeps the metrics.jsonl lines of steps <= step: a resumed run rewrites
 * what followed its checkpoint, so the file reads as one uninterrupted run. */
static int metrics_truncate(const char *path, int64_t step, deft_err_t *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return DEFT_OK;
    strbuf_t keep = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        json_t *j = json_loadb(line, (size_t)n, 0, NULL);
        json_t *s = j ? json_object_get(j, "step") : NULL;
        if (s && json_is_integer(s) && json_integer_value(s) <= step)
            sb_append(&keep, line, (size_t)n);
        json_decref(j);
    }
    free(line);
    fclose(f);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    int rc = DEFT_OK;
    if (!f || (keep.len && fwrite(keep.data, 1, keep.len, f) != keep.len) || fclose(f)) {
        rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    } else if (rename(tmp, path)) {
        rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot rename to %s: %s", tmp, path,
                       strerror(errno));
    }
    sb_free(&keep);
    return rc;
}

/* Resolves o->resume ("auto": newest good checkpoint, none is a fresh start)
 * on rank 0 and shares the path; *path NULL: start fresh. */
static int resume_path(trainer_t *t, char **path, deft_err_t *err)
{
    *path = NULL;
    const char *want = t->o->resume;
    if (!want || !*want)
        return DEFT_OK;
    int rc = DEFT_OK;
    if (t->rank == 0) {
        if (!strcmp(want, "auto"))
            rc = checkpoint_find_latest(t->ckpt_dir, false, path, err);
        else
            *path = xstrdup(want);
    }
    if ((rc = agree(t, rc, err)))
        return rc;
    return comm_bcast_str(t->comm, path, 0, err);
}

static int checkpoint_restore(trainer_t *t, const char *path, deft_err_t *err)
{
    ckpt_set_t c;
    ckpt_set_make(t, &c);
    ckpt_state_t st = {0};
    ckpt_tensors_t ts = {c.p, c.m, c.v, t->model.n_params};
    int rc = checkpoint_load(path, &st, &ts, err);
    if (!rc && (st.n_rng != 3 || st.rng[2] != t->o->seed))
        rc = deft_fail(err, DEFT_ERR_USAGE, "%s: written with seed %llu, this run has seed "
                       "%llu: the data order would differ; use the same seed",
                       path, st.n_rng == 3 ? (unsigned long long)st.rng[2] : 0ull,
                       (unsigned long long)t->o->seed);
    if (!rc && strcmp(st.qdiff_checksum ? st.qdiff_checksum : "", t->qdiff_hex))
        rc = deft_fail(err, DEFT_ERR_USAGE, "%s: trained with Q_diff sha256 '%s', this run's "
                       "is '%s'", path, st.qdiff_checksum ? st.qdiff_checksum : "",
                       t->qdiff_hex);
    if (!rc && (st.epoch_pos > t->n_train || st.epoch_pos < 0))
        rc = deft_fail(err, DEFT_ERR_USAGE, "%s: position %lld in an epoch of %lld samples: "
                       "the training data changed", path, (long long)st.epoch_pos,
                       (long long)t->n_train);
    if (!rc) {
        for (int i = 0; i < t->model.n_params && t->model.tp_size == 1; i++)
            t->be->to_device(t->model.params[i].data, c.p[i].data,
                             sizeof(float) * (size_t)t->model.params[i].numel);
        /* tp: the checkpoint holds whole tensors; keep this rank's slices */
        for (int i = 0; i < t->model.n_params && t->model.tp_size > 1; i++) {
            llama_param_set_full(&t->model, i, c.p[i].data);
            llama_shard_take(&t->model, i, c.m[i].data, t->opt.p[i].m);
            llama_shard_take(&t->model, i, c.v[i].data, t->opt.p[i].v);
        }
        t->step = t->opt.step = st.step;
        t->epoch = st.epoch;
        t->epoch_pos = st.epoch_pos;
        if (st.config_text && t->o->config_text && strcmp(st.config_text, t->o->config_text))
            log_info("resume: the config differs from the checkpoint's; the new values apply");
        log_info("resume: %s at step %lld, epoch %lld, %lld samples into it", path,
                 (long long)st.step, (long long)st.epoch, (long long)st.epoch_pos);
    }
    checkpoint_state_free(&st);
    ckpt_set_free(&c);
    return rc;
}

// ----------------------------------------------------------------------------
// setup and the loop

static int trainer_setup(trainer_t *t, deft_err_t *err)
{
    const train_opts_t *o = t->o;
    t->be = backend_cpu();
    snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "%s/checkpoints", o->run_dir);
    snprintf(t->metrics_path, sizeof t->metrics_path, "%s/metrics.jsonl", o->run_dir);
    int rc = t->rank == 0 ? mkdir_p(t->ckpt_dir, err) : DEFT_OK;
    if ((rc = agree(t, rc, err)))
        return rc;

    if (o->tp > 1) {
        if ((rc = agree(t, comm_grid_create(t->comm, o->tp, &t->grid, err), err)))
            return rc;
        t->dp = t->grid.dp;
        t->dp_rank = t->grid.dp_rank, t->dp_size = t->grid.dp_size;
    }
    tokenizer_t *tok = NULL;
    const char *tok_path = o->tok_path ? o->tok_path : o->model_dir;
    rc = tok_load(&tok, tok_path, err);
    /* a model that tp cannot split fails here, on every rank alike */
    if (!rc)
        rc = llama_load_tp(&t->model, o->model_dir, t->be, o->tp > 1 ? t->grid.tp : NULL, err);
    if (!rc && tok_vocab_size(tok) > t->model.cfg.vocab_size)
        rc = deft_fail(err, DEFT_ERR_USAGE, "%s: the tokenizer has %d ids but the model %s has "
                       "a vocabulary of %lld", tok_path, tok_vocab_size(tok), o->model_dir,
                       (long long)t->model.cfg.vocab_size);
    train_seq_opts_t so = o->seq;
    if (!rc) {
        so.bos = tok_bos_id(tok);
        so.eos = tok_eos_id(tok);
        if (so.bos < 0 || so.eos < 0)
            rc = deft_fail(err, DEFT_ERR_USAGE, "%s: the tokenizer has no BOS or EOS token "
                           "(bos %d, eos %d)", tok_path, so.bos, so.eos);
    }
    if (!rc) {
        train_opts_t *mo = (train_opts_t *)o;   /* bos/eos are the stage's to fill */
        mo->seq.bos = so.bos;
        mo->seq.eos = so.eos;
        rc = trainer_load_data(t, tok, err);
    }
    int32_t tok_ids = tok ? tok_vocab_size(tok) : 0;
    tok_free(tok);
    if (!rc)
        rc = trainer_load_qdiff(t, tok_ids, err);
    if ((rc = agree(t, rc, err)))
        return rc;

    for (int i = 0; i < t->model.n_params; i++)
        t->n_weights += param_full_numel(&t->model.params[i]);
    if ((int64_t)o->micro_batch * o->grad_accum * t->dp_size > INT32_MAX)
        return deft_fail(err, DEFT_ERR_USAGE, "train: micro_batch %d x grad_accum %d x %d "
                         "data-parallel groups is past 2^31 samples a step", o->micro_batch,
                         o->grad_accum, t->dp_size);
    t->global_batch = o->micro_batch * o->grad_accum * t->dp_size;
    int64_t per_epoch = (t->n_train + t->global_batch - 1) / t->global_batch;
    t->total_steps = o->max_steps > 0 ? o->max_steps : per_epoch * o->epochs;
    log_info("train: %s, %lld steps (%lld per epoch) of %d samples (%d data-parallel groups "
             "x %d micro-batches x %d), tp %d, %lld parameters, %s backend",
             o->loss.kind == LOSS_DPO ? "DPO" : o->loss.kind == LOSS_PRO ? "PRO" : "SFT",
             (long long)t->total_steps, (long long)per_epoch, t->global_batch, t->dp_size,
             o->grad_accum, o->micro_batch, t->model.tp_size, (long long)t->n_weights,
             t->be->name);

    /* DPO's reference comes from the starting model, before any update */
    if (o->loss.kind == LOSS_DPO) {
        char ref_path[4096];
        snprintf(ref_path, sizeof ref_path, "%s", o->ref_path ? o->ref_path : "");
        if (!o->ref_path)
            snprintf(ref_path, sizeof ref_path, "%s/ref.h5", o->run_dir);
        bool reused = false;
        rc = ref_prepare(ref_path, &t->model, t->samples, t->n_samples, o->micro_batch,
                         t->comm, &t->ref, &reused, err);
        if (rc)
            return rc;
    }

    if ((rc = llama_alloc_grads(&t->model, err)))
        return agree(t, rc, err);
    adamw_config_t ac = o->adamw;
    ac.total_steps = t->total_steps;
    adamw_init(&t->opt, &ac);
    for (int i = 0; i < t->model.n_params; i++) {
        llama_param_t *p = &t->model.params[i];
        adamw_add(&t->opt, p->name, p->data, p->grad, p->numel, p->decay);
    }
    t->order = xcalloc((size_t)t->n_train, sizeof(int64_t));
    return DEFT_OK;
}

/* The samples of this rank's micro-batch a of the step that starts at
 * epoch_pos: the step's n samples of the epoch order are dealt in blocks of
 * micro_batch, block a * dp_size + dp_rank to this rank's dp group. */
static int micro_share(const trainer_t *t, int64_t n, int a, int64_t *idx)
{
    int mb = t->o->micro_batch;
    int64_t lo = ((int64_t)a * t->dp_size + t->dp_rank) * mb;
    int ns = 0;
    for (int64_t k = lo; k < lo + mb && k < n; k++)
        idx[ns++] = t->order[t->epoch_pos + k];
    return ns;
}

/* The global gradient norm under tensor parallelism: shards' squares summed
 * over the tp group, replicated tensors (the norms) counted once. */
static int grad_norm_tp(trainer_t *t, double *norm, deft_err_t *err)
{
    double sq[2] = {0, 0};   /* sharded, replicated */
    for (int i = 0; i < t->opt.np; i++) {
        const adamw_param_t *p = &t->opt.p[i];
        double s = 0;
        for (int64_t k = 0; k < p->n; k++)
            s += (double)p->grad[k] * p->grad[k];
        sq[t->model.params[i].shard_dim == LLAMA_SHARD_NONE] += s;
    }
    int rc = llama_tp_sum(&t->model, sq, 1, err);
    *norm = sqrt(sq[0] + sq[1]);
    return rc;
}

/* One optimizer step over the next global batch; stats of the step out. */
static int train_step(trainer_t *t, loss_stats_t *st, int64_t *tokens, double *gnorm,
                      double *lr, deft_err_t *err)
{
    int64_t n = t->n_train - t->epoch_pos;
    if (n > t->global_batch)
        n = t->global_batch;
    memset(st, 0, sizeof *st);
    *tokens = 0;
    llama_zero_grads(&t->model);
    /* [min(micro_batch, n)]: a micro-batch never holds more than the step's n */
    int64_t *idx = xmalloc(sizeof *idx * (size_t)(t->o->micro_batch < n ? t->o->micro_batch
                                                                         : n));
    int rc = DEFT_OK;
    for (int a = 0; a < t->o->grad_accum && !rc; a++) {
        int ns = micro_share(t, n, a, idx);
        if (ns)
            rc = run_micro(t, idx, ns, (double)n, true, st, tokens, err);
    }
    free(idx);
    if ((rc = agree(t, rc, err)) || (rc = allreduce_grads(t, err)) ||
        (rc = allreduce_stats(t, st, tokens, err)))
        return rc;
    *lr = lr_at(&t->opt.cfg, t->opt.step);
    if (t->model.tp_size == 1) {
        *gnorm = adamw_step(&t->opt);
    } else if ((rc = grad_norm_tp(t, gnorm, err))) {
        return rc;
    } else {
        if (t->opt.cfg.max_grad_norm > 0)
            adamw_clip(&t->opt, *gnorm);
        adamw_update(&t->opt);
    }
    t->step = t->opt.step;
    t->epoch_pos += n;
    return DEFT_OK;
}

static int train_loop(trainer_t *t, bool *stopped, deft_err_t *err)
{
    const train_opts_t *o = t->o;
    rng_t order_rng;
    trainer_shuffle(t, &order_rng);
    int rc = DEFT_OK;
    if (t->step == 0 && (rc = evaluate(t, err)))
        return rc;
    while (t->step < t->total_steps) {
        if (t->epoch_pos >= t->n_train) {
            t->epoch++;
            t->epoch_pos = 0;
            trainer_shuffle(t, &order_rng);
        }
        double t0 = wall_seconds(), gnorm = 0, lr = 0;
        loss_stats_t st;
        int64_t tokens;
        if ((rc = train_step(t, &st, &tokens, &gnorm, &lr, err)))
            return rc;
        t->steps_run++;
        /* a finished epoch is recorded as the start of the next */
        if (t->epoch_pos >= t->n_train) {
            t->epoch++;
            t->epoch_pos = 0;
            trainer_shuffle(t, &order_rng);
        }
        double secs = wall_seconds() - t0;
        metrics_write(t, "train", &st, tokens, gnorm, lr, secs);
        if (t->step == 1 || t->step % o->log_every == 0 || t->step == t->total_steps)
            log_step(t, &st, tokens, gnorm, lr, secs);
        if (!isfinite(st.total))
            return agree(t, deft_fail(err, DEFT_ERR_DATA, "train: the loss is %g at step %lld; "
                                      "lower lr or check the data", st.total,
                                      (long long)t->step), err);
        if (o->eval_every && t->step % o->eval_every == 0 && t->step < t->total_steps &&
            (rc = evaluate(t, err)))
            return rc;
        int64_t sig = signals_stop_requested();
        if ((rc = comm_allreduce_max_i64(t->comm, &sig, 1, err)))
            return rc;
        if (sig) {
            log_info("train: stop signal %d at step %lld: writing a checkpoint", (int)sig,
                     (long long)t->step);
            *stopped = true;
            return checkpoint_write(t, &order_rng, err);
        }
        bool last = t->step == t->total_steps;
        if ((last || (o->checkpoint_every && t->step % o->checkpoint_every == 0)) &&
            (rc = checkpoint_write(t, &order_rng, err)))
            return rc;
    }
    return evaluate(t, err);
}

int train_run(const train_opts_t *o, comm_t *comm, bool *stopped, deft_err_t *err)
{
    *stopped = false;
    if (o->seq.max_prompt_len > o->seq.max_len - 3)
        return deft_fail(err, DEFT_ERR_USAGE, "train: max_prompt_len %d leaves no room for a "
                         "response in max_len %d (needs max_prompt_len <= max_len - 3)",
                         o->seq.max_prompt_len, o->seq.max_len);
    trainer_t t = {.o = o, .comm = comm, .rank = comm_rank(comm), .nranks = comm_size(comm),
                   .dp = comm, .dp_rank = comm_rank(comm), .dp_size = comm_size(comm)};
    int rc = signals_install(err);
    if (!rc)
        rc = trainer_setup(&t, err);
    char *from = NULL;
    if (!rc)
        rc = resume_path(&t, &from, err);
    if (!rc && from) {
        rc = agree(&t, checkpoint_restore(&t, from, err), err);
    } else if (!rc && o->resume && !strcmp(o->resume, "auto")) {
        log_info("resume: no checkpoint in %s yet: starting from the model", t.ckpt_dir);
    }
    if (!rc && t.rank == 0) {
        /* a fresh run starts a fresh file; a resumed one keeps what led to its step */
        rc = from ? metrics_truncate(t.metrics_path, t.step, err)
                  : (remove(t.metrics_path), DEFT_OK);
        t.metrics = rc ? NULL : fopen(t.metrics_path, "a");
        if (!rc && !t.metrics)
            rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", t.metrics_path,
                           strerror(errno));
    }
    if (!rc)
        rc = agree(&t, rc, err);
    if (!rc) {
        t.t_start = wall_seconds();
        rc = train_loop(&t, stopped, err);
    }
    if (!rc && !*stopped)
        log_info("train: done, %lld steps in %.1f s; checkpoints in %s, metrics in %s",
                 (long long)t.step, wall_seconds() - t.t_start, t.ckpt_dir, t.metrics_path);
    free(from);
    if (t.metrics)
        fclose(t.metrics);
    signals_restore();
    for (int64_t i = 0; i < t.n_samples; i++)
        train_sample_free(&t.samples[i]);
    free(t.samples);
    free(t.order);
    free(t.qdiff);
    ref_logps_free(&t.ref);
    if (t.opt.p)
        adamw_free(&t.opt);
    llama_free(&t.model);
    comm_grid_free(&t.grid);
    return rc;
}
