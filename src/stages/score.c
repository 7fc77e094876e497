/* Stage score: R_Q of every sample by the head-vector identity
 * R_Q = (1/T) sum_t u . h_t, u = W_head^T Q_diff (DEFT Eq. 6-9 with the
 * log-sum-exp cancelled because sum_v Q_diff = 0), the response's mean
 * log-likelihood, optional IFD, and the scores.h5 that `deft select` reads
 * (layout in docs/scoring.md). */
#include "stages/score.h"

#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5.h"
#include "model/losses.h"
#include "stages/qdiff.h"
#include "util/log.h"
#include "util/sha256.h"
#include "util/signals.h"

const char *score_status_name(int status)
{
    static const char *const names[SCORE_NSTATUS] = {"ok", "empty_response", "non_finite"};
    return status >= 0 && status < SCORE_NSTATUS ? names[status] : "?";
}

// ----------------------------------------------------------------------------
// sequences

void score_join(int32_t bos, const int32_t *prompt, int np, const int32_t *resp, int nr,
                int max_len, score_seq_t *seq)
{
    int nbos = bos >= 0;
    /* a response alone may take all but BOS and one prompt token */
    int keep_r = nr < max_len - nbos - 1 ? nr : max_len - nbos - 1;
    int room = max_len - nbos - keep_r;
    int keep_p = np < room ? np : room;
    seq->ids.n = 0;
    if (nbos)
        tok_ids_push(&seq->ids, bos);
    for (int i = np - keep_p; i < np; i++)
        tok_ids_push(&seq->ids, prompt[i]);
    seq->resp_start = (int)seq->ids.n;
    for (int i = 0; i < keep_r; i++)
        tok_ids_push(&seq->ids, resp[i]);
    seq->prompt_tokens = np;
    seq->response_tokens = nr;
    seq->prompt_cut = keep_p < np;
    seq->response_cut = keep_r < nr;
}

int score_make_sequence(const tokenizer_t *tok, const pref_record_t *rec, int k, int max_len,
                        score_seq_t *seq, score_status_t *status, deft_err_t *err)
{
    tok_ids_t p = {0}, r = {0};
    int rc = tok_encode(tok, rec->prompt, rec->prompt_len, 0, &p, err);
    if (!rc)
        rc = tok_encode(tok, rec->resp[k], rec->resp_len[k], TOK_CONTINUATION, &r, err);
    seq->ids.n = 0;
    seq->resp_start = 0;
    *status = SCORE_OK;
    if (!rc && r.n == 0)
        *status = SCORE_EMPTY_RESPONSE;
    else if (!rc)
        score_join(tok_bos_id(tok), p.ids, (int)p.n, r.ids, (int)r.n, max_len, seq);
    tok_ids_free(&p);
    tok_ids_free(&r);
    return rc;
}

// ----------------------------------------------------------------------------
// batched scoring

/* Rows of logits made at once: ROWS x V floats (32 MiB for Llama 3). */
#define HEAD_ROWS 64

static int batch_shape(const llama_model_t *m, const score_batch_t *b, int *T,
                       deft_err_t *err)
{
    *T = 0;
    for (int i = 0; i < b->n; i++) {
        if (b->len[i] < 2 || b->start[i] < 1 || b->start[i] >= b->len[i])
            return deft_fail(err, DEFT_ERR_INTERNAL, "score batch: sequence %d has length %d "
                             "and response start %d", i, b->len[i], b->start[i]);
        for (int t = 0; t < b->len[i]; t++)
            if (b->ids[i][t] < 0 || b->ids[i][t] >= m->cfg.vocab_size)
                return deft_fail(err, DEFT_ERR_DATA, "token id %d is outside the model's "
                                 "vocabulary of %d: is the tokenizer the model's?",
                                 b->ids[i][t], m->cfg.vocab_size);
        if (b->len[i] > *T)
            *T = b->len[i];
    }
    return DEFT_OK;
}

/* Final normalised hidden states hidden[n, T, d] (host) of a right-padded batch. */
static int batch_hidden(llama_model_t *m, const score_batch_t *b, int T, float *hidden,
                        deft_err_t *err)
{
    int32_t *ids = xcalloc((size_t)b->n * T, sizeof *ids);  /* [n, T], padded with 0 */
    for (int i = 0; i < b->n; i++)
        memcpy(ids + (size_t)i * T, b->ids[i], (size_t)b->len[i] * sizeof *ids);
    int rc = llama_forward(m, ids, b->len, b->n, T, hidden, NULL, false, err);
    free(ids);
    return rc;
}

/* The rows that predict response tokens, in batch order: for sequence i,
 * hidden positions [p-1, L-1) with targets ids[p .. L). Fills row[R] (flat
 * index into hidden [n*T]) and tgt[R]; returns R. */
static int response_rows(const score_batch_t *b, int T, int64_t *row, int32_t *tgt)
{
    int R = 0;
    for (int i = 0; i < b->n; i++)
        for (int t = b->start[i] - 1; t < b->len[i] - 1; t++) {
            row[R] = (int64_t)i * T + t;
            tgt[R++] = b->ids[i][t + 1];
        }
    return R;
}

/* Logits of a chunk of response rows on the backend: z[rows, V] = h[rows, d] W^T. */
typedef struct {
    float *h;     /* backend [HEAD_ROWS, d] */
    float *z;     /* backend [HEAD_ROWS, V] */
    float *logp;  /* backend [HEAD_ROWS] */
    int32_t *tgt; /* backend [HEAD_ROWS] */
} head_buf_t;

static int head_alloc(const backend_t *be, int d, int V, head_buf_t *hb, deft_err_t *err)
{
    hb->h = be->alloc(sizeof(float) * HEAD_ROWS * (size_t)d);
    hb->z = be->alloc(sizeof(float) * HEAD_ROWS * (size_t)V);
    hb->logp = be->alloc(sizeof(float) * HEAD_ROWS);
    hb->tgt = be->alloc(sizeof(int32_t) * HEAD_ROWS);
    if (!hb->h || !hb->z || !hb->logp || !hb->tgt)
        return deft_fail(err, DEFT_ERR_NOMEM, "score: out of backend memory for %d rows of "
                         "%d logits", HEAD_ROWS, V);
    return DEFT_OK;
}

static void head_free(const backend_t *be, head_buf_t *hb)
{
    be->free(hb->h);
    be->free(hb->z);
    be->free(hb->logp);
    be->free(hb->tgt);
}

/* Logits of rows [r0, r0 + nr) of the response rows into hb->z. */
static void head_logits(llama_model_t *m, head_buf_t *hb, const float *hidden,
                        const int64_t *row, int r0, int nr)
{
    const backend_t *be = m->be;
    int d = m->cfg.hidden_size, V = m->cfg.vocab_size;
    for (int j = 0; j < nr; j++)
        be->to_device(hb->h + (size_t)j * d, hidden + (size_t)row[r0 + j] * d,
                      sizeof(float) * d);
    be->gemm(false, true, nr, V, d, 1.0f, hb->h, d, 0, m->lm_head, d, 0, 0.0f, hb->z, V, 0,
             1);
}

/* Sum of per-row values into per-sequence means over response rows. */
static void rows_to_means(const score_batch_t *b, const double *per_row, double *out)
{
    int r = 0;
    for (int i = 0; i < b->n; i++) {
        int T = b->len[i] - b->start[i];
        double s = 0;
        for (int t = 0; t < T; t++)
            s += per_row[r++];
        out[i] = s / T;
    }
}

int score_forward(llama_model_t *m, const score_batch_t *b, const double *const *u,
                  double *rq, double *loglik, deft_err_t *err)
{
    int T, d = m->cfg.hidden_size;
    int rc = batch_shape(m, b, &T, err);
    if (rc || b->n == 0)
        return rc;
    float *hidden = xmalloc(sizeof(float) * (size_t)b->n * T * d);  /* [n, T, d] */
    rc = batch_hidden(m, b, T, hidden, err);
    if (!rc && rq)
        /* the identity: no output matmul, no softmax */
        for (int i = 0; i < b->n; i++) {
            const float *h = hidden + ((size_t)i * T + b->start[i] - 1) * d;
            rq[i] = loss_rq_from_hidden_f64(h, b->len[i] - b->start[i], d, u[i]);
        }
    if (!rc && loglik) {
        size_t nrows = (size_t)b->n * T;
        int64_t *row = xmalloc(nrows * sizeof *row);  /* [R] */
        int32_t *tgt = xmalloc(nrows * sizeof *tgt);  /* [R] */
        double *lp = xmalloc(nrows * sizeof *lp);     /* [R] log p of each target */
        int R = response_rows(b, T, row, tgt);
        head_buf_t hb = {0};
        const backend_t *be = m->be;
        rc = head_alloc(be, d, m->cfg.vocab_size, &hb, err);
        float chunk[HEAD_ROWS];
        for (int r0 = 0; !rc && r0 < R; r0 += HEAD_ROWS) {
            int nr = R - r0 < HEAD_ROWS ? R - r0 : HEAD_ROWS;
            head_logits(m, &hb, hidden, row, r0, nr);
            be->to_device(hb.tgt, tgt + r0, sizeof(int32_t) * nr);
            be->logsoftmax_gather_fwd(hb.logp, hb.z, hb.tgt, nr, m->cfg.vocab_size);
            be->to_host(chunk, hb.logp, sizeof(float) * nr);
            for (int j = 0; j < nr; j++)
                lp[r0 + j] = chunk[j];
        }
        if (!rc)
            rows_to_means(b, lp, loglik);
        head_free(be, &hb);
        free(row), free(tgt), free(lp);
    }
    free(hidden);
    return rc;
}

/* sum_v q[v] * log_softmax(z)[v] for one row z[V], the softmax in fp32. */
static double row_literal(const float *z, const double *q, int V)
{
    float mx = z[0];
    for (int v = 1; v < V; v++)
        mx = z[v] > mx ? z[v] : mx;
    float se = 0;
    for (int v = 0; v < V; v++)
        se += expf(z[v] - mx);
    float lse = mx + logf(se);
    double s = 0;
    for (int v = 0; v < V; v++)
        s += q[v] * (double)(z[v] - lse);
    return s;
}

int score_forward_literal(llama_model_t *m, const score_batch_t *b,
                          const double *const *qdiff, double *rq, deft_err_t *err)
{
    int T, d = m->cfg.hidden_size, V = m->cfg.vocab_size;
    int rc = batch_shape(m, b, &T, err);
    if (rc || b->n == 0)
        return rc;
    float *hidden = xmalloc(sizeof(float) * (size_t)b->n * T * d);  /* [n, T, d] */
    rc = batch_hidden(m, b, T, hidden, err);
    size_t nrows = (size_t)b->n * T;
    int64_t *row = xmalloc(nrows * sizeof *row);  /* [R] */
    int32_t *tgt = xmalloc(nrows * sizeof *tgt);  /* [R] */
    int32_t *seq = xmalloc(nrows * sizeof *seq);  /* [R] sequence of each row */
    double *per_row = xmalloc(nrows * sizeof *per_row);
    float *z = xmalloc(sizeof(float) * HEAD_ROWS * (size_t)V);  /* [HEAD_ROWS, V] host */
    int R = response_rows(b, T, row, tgt);
    for (int r = 0; r < R; r++)
        seq[r] = (int32_t)(row[r] / T);
    head_buf_t hb = {0};
    const backend_t *be = m->be;
    if (!rc)
        rc = head_alloc(be, d, V, &hb, err);
    for (int r0 = 0; !rc && r0 < R; r0 += HEAD_ROWS) {
        int nr = R - r0 < HEAD_ROWS ? R - r0 : HEAD_ROWS;
        head_logits(m, &hb, hidden, row, r0, nr);
        be->to_host(z, hb.z, sizeof(float) * (size_t)nr * V);
        for (int j = 0; j < nr; j++)
            per_row[r0 + j] = row_literal(z + (size_t)j * V, qdiff[seq[r0 + j]], V);
    }
    if (!rc)
        rows_to_means(b, per_row, rq);
    head_free(be, &hb);
    free(hidden), free(row), free(tgt), free(seq), free(per_row), free(z);
    return rc;
}

// ----------------------------------------------------------------------------
// agreement between ranks

/* Every rank returns an error when any failed; the failing rank keeps its
 * message, rank 0 of the others names it, the rest stay quiet. */
static int agree(comm_t *c, int rc, deft_err_t *err)
{
    int code = 0, first = -1;
    deft_err_t cerr;
    if (comm_agree(c, rc, &code, &first, &cerr)) {
        *err = cerr;
        return DEFT_ERR_MPI;
    }
    if (rc || !code)
        return rc;
    err->code = (deft_code_t)code;
    if (comm_rank(c) == 0)
        snprintf(err->msg, sizeof err->msg, "rank %d failed (its message is above)", first);
    else
        err->msg[0] = '\0';
    return code;
}

// ----------------------------------------------------------------------------
// Q_diff and the head vectors

/* The head vector of each subset: u[s] (d,) for subset s of the data, from
 * the subset's own Q_diff when the qdiff file has one, else the global one. */
typedef struct {
    double *global;   /* (d,) */
    double **sub;     /* [nsubsets] pointers, each (d,) (may alias global) */
    double *q_global; /* (V_model,) Q_diff padded with zeros, for the literal form */
    int nsubsets;
    bool per_subset;  /* the file has /subsets */
} head_vectors_t;

static void head_vectors_free(head_vectors_t *hv)
{
    for (int s = 0; s < hv->nsubsets; s++)
        if (hv->sub[s] != hv->global)
            free(hv->sub[s]);
    free(hv->sub);
    free(hv->global);
    free(hv->q_global);
    memset(hv, 0, sizeof *hv);
}

/* u (d,) of one Q_diff of V_q values, checked against the tokenizer (V_q must
 * be its id count: a Q_diff of another tokenizer weights the wrong ids) and
 * the model. */
static int head_vector(const llama_model_t *m, int32_t tok_ids, const char *path,
                       const char *subset, double **u, double **q_out, deft_err_t *err)
{
    double *q;
    int32_t V;
    int rc = qdiff_read(path, subset, &q, &V, err);
    if (rc)
        return rc;
    if (V != tok_ids) {
        free(q);
        return deft_fail(err, DEFT_ERR_DATA, "%s: Q_diff has %d entries but the tokenizer has "
                         "%d ids: was it made with this model's tokenizer?", path, V, tok_ids);
    }
    if (V > m->cfg.vocab_size) {
        free(q);
        return deft_fail(err, DEFT_ERR_USAGE, "%s: Q_diff has %d entries, more than the "
                         "model's vocabulary of %d: was it made with this model's tokenizer?",
                         path, V, m->cfg.vocab_size);
    }
    int d = m->cfg.hidden_size;
    *u = xmalloc((size_t)d * sizeof **u);
    /* the head is host memory on the CPU backend; copy it out for any other */
    float *w = xmalloc(sizeof(float) * (size_t)V * d);  /* [V_q, d] rows of lm_head */
    m->be->to_host(w, m->lm_head, sizeof(float) * (size_t)V * d);
    loss_rq_head_vector_f64(w, q, V, d, *u);
    free(w);
    if (q_out) {
        *q_out = xcalloc((size_t)m->cfg.vocab_size, sizeof **q_out);
        memcpy(*q_out, q, (size_t)V * sizeof *q);
    }
    free(q);
    return DEFT_OK;
}

static int head_vectors_make(const llama_model_t *m, int32_t tok_ids, const char *path,
                             const pref_data_t *d, head_vectors_t *hv, deft_err_t *err)
{
    memset(hv, 0, sizeof *hv);
    hv->nsubsets = d->nsubsets;
    hv->sub = xcalloc((size_t)d->nsubsets + 1, sizeof *hv->sub);
    int rc = head_vector(m, tok_ids, path, NULL, &hv->global, &hv->q_global, err);
    if (rc)
        return rc;
    h5_file_t *f;
    if ((rc = h5_open(&f, path, err)))
        return rc;
    hv->per_subset = h5_exists(f, "/subsets", NULL);
    for (int s = 0; s < d->nsubsets; s++) {
        strbuf_t p = {0};
        sb_printf(&p, "/subsets/%s/qdiff", d->subsets[s]);
        bool have = hv->per_subset && h5_exists(f, p.data, NULL);
        sb_free(&p);
        hv->sub[s] = hv->global;
        if (have)
            rc = head_vector(m, tok_ids, path, d->subsets[s], &hv->sub[s], NULL, err);
        else if (hv->per_subset)
            log_warn("%s has no Q_diff of subset %s: its samples are scored with the "
                     "global Q_diff", path, d->subsets[s]);
        if (rc)
            break;
    }
    h5_close(f);
    return rc;
}

// ----------------------------------------------------------------------------
// scoring this rank's batches

/* Per-sample results, as gathered and written. */
typedef struct {
    double score, loglik, ifd;
    int32_t response_tokens;  /* response tokens scored (after any cut) */
    int32_t status;           /* score_status_t */
} sample_out_t;

typedef struct {
    llama_model_t *model, *ifd;
    const head_vectors_t *hv;
    const pref_data_t *data;
    const score_opts_t *o;
    int64_t prompts_cut, responses_cut, tokens;
} scorer_t;

static void batch_free_seqs(score_seq_t *seq, int n)
{
    for (int i = 0; i < n; i++)
        tok_ids_free(&seq[i].ids);
}

/* IFD = ppl(y | x) / ppl(y) = exp(loglik(y) - loglik(y | x)) under the IFD
 * model, on the same (possibly cut) response tokens. in: the scorable
 * sequences, out[i].ifd filled. */
static int batch_ifd(scorer_t *s, const score_batch_t *in, sample_out_t *const *out,
                     deft_err_t *err)
{
    int n = in->n;
    double *cond = xmalloc((size_t)(n + 1) * sizeof *cond);
    double *alone = xmalloc((size_t)(n + 1) * sizeof *alone);
    tok_ids_t *solo = xcalloc((size_t)n + 1, sizeof *solo);
    const int32_t **ids = xcalloc((size_t)n + 1, sizeof *ids);
    int32_t *len = xcalloc((size_t)n + 1, sizeof *len), *start = xcalloc((size_t)n + 1,
                                                                          sizeof *start);
    int32_t bos = tok_bos_id(s->o->tok);
    for (int i = 0; i < n; i++) {
        /* BOS + response; without a BOS the first response token has no
         * predictor, so the response-alone form keeps it as context */
        tok_ids_push(&solo[i], bos >= 0 ? bos : in->ids[i][in->start[i]]);
        for (int t = in->start[i] + (bos < 0); t < in->len[i]; t++)
            tok_ids_push(&solo[i], in->ids[i][t]);
        ids[i] = solo[i].ids;
        len[i] = (int32_t)solo[i].n;
        start[i] = 1;
    }
    score_batch_t b2 = {n, ids, len, start};
    int rc = score_forward(s->ifd, in, NULL, NULL, cond, err);
    if (!rc)
        rc = score_forward(s->ifd, &b2, NULL, NULL, alone, err);
    for (int i = 0; !rc && i < n; i++)
        out[i]->ifd = exp(alone[i] - cond[i]);
    for (int i = 0; i < n; i++)
        tok_ids_free(&solo[i]);
    free(solo), free(ids), free(len), free(start), free(cond), free(alone);
    return rc;
}

/* Score records [lo, hi) of the data (one global batch) into out[hi - lo]. */
static int score_batch_range(scorer_t *s, size_t lo, size_t hi, sample_out_t *out,
                             deft_err_t *err)
{
    int n = (int)(hi - lo), m = 0, rc = DEFT_OK;
    score_seq_t *seq = xcalloc((size_t)n, sizeof *seq);
    /* the scorable ones, compacted: ids[m], len[m], start[m], u[m], dst[m] */
    const int32_t **ids = xcalloc((size_t)n, sizeof *ids);
    int32_t *len = xcalloc((size_t)n, sizeof *len), *start = xcalloc((size_t)n, sizeof *start);
    const double **u = xcalloc((size_t)n, sizeof *u);
    sample_out_t **dst = xcalloc((size_t)n, sizeof *dst);
    double *rq = xcalloc((size_t)n, sizeof *rq), *ll = xcalloc((size_t)n, sizeof *ll);
    for (int i = 0; i < n && !rc; i++) {
        const pref_record_t *rec = &s->data->rec[lo + (size_t)i];
        score_status_t st;
        rc = score_make_sequence(s->o->tok, rec, 0, s->o->max_len, &seq[i], &st, err);
        if (rc) {
            char msg[sizeof err->msg];
            memcpy(msg, err->msg, sizeof msg);
            rc = deft_fail(err, (deft_code_t)rc, "%s: line %lld: response: %s",
                           s->o->src[rec->id.file].path, (long long)rec->id.line, msg);
            break;
        }
        out[i] = (sample_out_t){NAN, NAN, NAN, 0, st};
        if (st != SCORE_OK)
            continue;
        out[i].response_tokens = (int32_t)seq[i].ids.n - seq[i].resp_start;
        s->prompts_cut += seq[i].prompt_cut;
        s->responses_cut += seq[i].response_cut;
        s->tokens += (int64_t)seq[i].ids.n;
        ids[m] = seq[i].ids.ids;
        len[m] = (int32_t)seq[i].ids.n;
        start[m] = seq[i].resp_start;
        u[m] = s->hv->sub[rec->subset];
        dst[m++] = &out[i];
    }
    score_batch_t b = {m, ids, len, start};
    if (!rc)
        rc = score_forward(s->model, &b, u, rq, ll, err);
    if (!rc && s->ifd)
        rc = batch_ifd(s, &b, dst, err);
    for (int j = 0; !rc && j < m; j++) {
        dst[j]->score = rq[j];
        dst[j]->loglik = ll[j];
        if (!isfinite(rq[j]) || !isfinite(ll[j])) {
            dst[j]->score = dst[j]->loglik = dst[j]->ifd = NAN;
            dst[j]->status = SCORE_NONFINITE;
        }
    }
    batch_free_seqs(seq, n);
    free(seq), free(ids), free(len), free(start), free(u), free(dst), free(rq), free(ll);
    return rc;
}

/* This rank's global batches r, r + p, r + 2p, ..., their results back to
 * back in *mine (batch order). The batches go in rounds of p, batch
 * round * p + rank on each rank (ranks past the last batch idle), and before
 * every round and after the last one all ranks learn whether any failed or
 * got a stop signal: ranks hold different batch counts, so the rounds are
 * the points that every rank reaches. A failure returns the failing rank's
 * code (DEFT_OK on the others, for agree); a signal returns DEFT_STOPPED on
 * every rank with *stop_sig set. *scored: samples of the finished rounds. */
static int score_my_batches(scorer_t *s, comm_t *c, sample_out_t **mine, size_t *nmine,
                            size_t *scored, int *stop_sig, deft_err_t *err)
{
    int rank = comm_rank(c), p = comm_size(c);
    size_t n = s->data->n, B = (size_t)s->o->batch_size;
    size_t nbatch = (n + B - 1) / B, rounds = (nbatch + (size_t)p - 1) / (size_t)p;
    *nmine = 0;
    *scored = 0;
    *stop_sig = 0;
    for (size_t i = (size_t)rank; i < nbatch; i += (size_t)p)
        *nmine += (i + 1) * B < n ? B : n - i * B;
    *mine = xcalloc(*nmine + 1, sizeof **mine);
    progress_t prog;
    progress_start(&prog, "score", "samples", (int64_t)n);
    size_t done = 0;
    int rc = DEFT_OK;
    for (size_t round = 0;; round++) {
        /* {stop signal, failed}, a max over ranks */
        int64_t flags[2] = {signals_stop_requested(), rc != DEFT_OK};
        int mrc = comm_allreduce_max_i64(c, flags, 2, err);
        if (mrc)
            return mrc;
        *scored = round * (size_t)p * B < n ? round * (size_t)p * B : n;
        if (flags[1])
            return rc;
        if (flags[0]) {
            *stop_sig = (int)flags[0];
            return DEFT_STOPPED;
        }
        if (round == rounds)
            break;
        size_t i = round * (size_t)p + (size_t)rank;
        if (i >= nbatch)
            continue;
        size_t lo = i * B, hi = lo + B < n ? lo + B : n;
        rc = score_batch_range(s, lo, hi, *mine + done, err);
        done += hi - lo;
        /* rank 0 sees its own share: the global figures are estimated from it */
        size_t est = done * (size_t)p;
        progress_update(&prog, (int64_t)(est < n ? est : n), s->tokens * p);
    }
    progress_end(&prog, (int64_t)n, s->tokens * p);
    return DEFT_OK;
}

/* Every rank's results, in global sample order, into all[n]. Collective. */
static int gather_results(comm_t *c, const sample_out_t *mine, size_t nmine, size_t n,
                          size_t B, sample_out_t *all, deft_err_t *err)
{
    comm_blobs_t blobs;
    int rc = comm_allgather_blobs(c, mine, nmine * sizeof *mine, &blobs, err);
    if (rc)
        return rc;
    int p = comm_size(c);
    size_t nbatch = (n + B - 1) / B;
    size_t *pos = xcalloc((size_t)p, sizeof *pos);  /* [p] next result of each rank */
    for (size_t i = 0; i < nbatch; i++) {
        int r = (int)(i % (size_t)p);
        size_t cnt = (i + 1) * B < n ? B : n - i * B;
        size_t bytes = cnt * sizeof *all;
        if (blobs.off[r] + pos[r] + bytes > blobs.off[r + 1]) {
            rc = deft_fail(err, DEFT_ERR_INTERNAL, "score: rank %d sent too few results", r);
            break;
        }
        memcpy(all + i * B, blobs.data + blobs.off[r] + pos[r], bytes);
        pos[r] += bytes;
    }
    free(pos);
    comm_blobs_free(&blobs);
    return rc;
}

// ----------------------------------------------------------------------------
// the record of what was scored: checksums spread over ranks

/* The files that make up a model folder: config.json and every
 * *.safetensors / *.safetensors.index.json, sorted by name. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void model_files(const char *dir, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *dp = opendir(dir);
    if (!dp)
        return;
    struct dirent *e;
    size_t cap = 0;
    while ((e = readdir(dp))) {
        size_t l = strlen(e->d_name);
        bool want = !strcmp(e->d_name, "config.json") ||
                    (l > 12 && !strcmp(e->d_name + l - 12, ".safetensors")) ||
                    (l > 23 && !strcmp(e->d_name + l - 23, ".safetensors.index.json"));
        if (!want)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            *out = xrealloc(*out, cap * sizeof **out);
        }
        strbuf_t p = {0};
        sb_printf(&p, "%s/%s", dir, e->d_name);
        (*out)[(*n)++] = p.data;
    }
    closedir(dp);
    if (*n)
        qsort(*out, *n, sizeof **out, cmp_str);
}

/* hex[n][65] of every path, file i hashed on rank i % p. Collective. */
static int hash_files(comm_t *c, const char *const *paths, size_t n, char (*hex)[65],
                      deft_err_t *err)
{
    int rank = comm_rank(c), p = comm_size(c);
    strbuf_t mine = {0};
    int rc = DEFT_OK;
    for (size_t i = (size_t)rank; i < n && !rc; i += (size_t)p) {
        char h[65];
        rc = sha256_file(paths[i], h, err);
        sb_append(&mine, h, 64);
    }
    rc = agree(c, rc, err);
    comm_blobs_t all = {0};
    if (!rc)
        rc = comm_allgather_blobs(c, mine.data, mine.len, &all, err);
    sb_free(&mine);
    for (size_t i = 0; !rc && i < n; i++) {
        memcpy(hex[i], all.data + all.off[i % (size_t)p] + (i / (size_t)p) * 64, 64);
        hex[i][64] = '\0';
    }
    if (all.off)
        comm_blobs_free(&all);
    return rc;
}

// ----------------------------------------------------------------------------
// scores.h5

typedef struct {
    const score_opts_t *o;
    const pref_data_t *data;
    const sample_out_t *res;    /* [data->n] */
    const char *const *paths;   /* [npaths]: data files, model files, qdiff file */
    size_t nmodel;
    char (*hex)[65];            /* [npaths] */
    const head_vectors_t *hv;
    const scorer_t *s;
    int threads;
} score_output_t;

static int write_arrays(h5_file_t *f, const score_output_t *w, deft_err_t *err)
{
    size_t n = w->data->n, c = n ? n : 1;
    double *score = xmalloc(c * sizeof *score), *ll = xmalloc(c * sizeof *ll);
    double *ifd = xmalloc(c * sizeof *ifd);
    int32_t *file = xmalloc(c * sizeof *file), *subset = xmalloc(c * sizeof *subset);
    int32_t *rtok = xmalloc(c * sizeof *rtok), *status = xmalloc(c * sizeof *status);
    int64_t *line = xmalloc(c * sizeof *line);
    for (size_t i = 0; i < n; i++) {
        const sample_out_t *r = &w->res[i];
        score[i] = r->score, ll[i] = r->loglik, ifd[i] = r->ifd;
        rtok[i] = r->response_tokens, status[i] = r->status;
        file[i] = w->data->rec[i].id.file, line[i] = w->data->rec[i].id.line;
        subset[i] = w->data->rec[i].subset;
    }
    int rc;
    if (!(rc = h5_write_f64(f, "/score", score, n, err)) &&
        !(rc = h5_write_f64(f, "/loglik", ll, n, err)) &&
        !(rc = h5_write_i32(f, "/sample_file", file, n, err)) &&
        !(rc = h5_write_i64(f, "/sample_line", line, n, err)) &&
        !(rc = h5_write_i32(f, "/subset", subset, n, err)) &&
        !(rc = h5_write_i32(f, "/response_tokens", rtok, n, err)) &&
        !(rc = h5_write_i32(f, "/status", status, n, err)) && w->o->ifd_model)
        rc = h5_write_f64(f, "/ifd", ifd, n, err);
    free(score), free(ll), free(ifd), free(file), free(subset), free(rtok), free(status);
    free(line);
    return rc;
}

/* /subset_names: a 1-D dataset of variable-length UTF-8 strings. */
static int write_subset_names(h5_file_t *f, const pref_data_t *d, deft_err_t *err)
{
    hid_t fid = (hid_t)h5_file_id(f);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hsize_t dims[1] = {(hsize_t)d->nsubsets};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(fid, "/subset_names", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = ds < 0 ? -1 : d->nsubsets ? H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                                        d->subsets) : 0;
    if (ds >= 0)
        H5Dclose(ds);
    H5Sclose(sp);
    H5Tclose(t);
    if (st < 0)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot write /subset_names", h5_path(f));
    return DEFT_OK;
}

static int write_attrs(h5_file_t *f, const score_output_t *w, deft_err_t *err)
{
    const score_opts_t *o = w->o;
    size_t nd = (size_t)o->nsrc, nm = w->nmodel;
    const char **hex = xcalloc(nd + nm + 2, sizeof *hex);
    for (size_t i = 0; i < nd + nm + 1; i++)
        hex[i] = w->hex[i];
    const char *names[SCORE_NSTATUS];
    for (int s = 0; s < SCORE_NSTATUS; s++)
        names[s] = score_status_name(s);
    int rc;
    if (!(rc = h5_set_attr_str_list(f, "/", "data_files", w->paths, nd, err)) &&
        !(rc = h5_set_attr_str_list(f, "/", "data_sha256", hex, nd, err)) &&
        !(rc = h5_set_attr_str(f, "/", "model", o->model, err)) &&
        !(rc = h5_set_attr_str_list(f, "/", "model_files", w->paths + nd, nm, err)) &&
        !(rc = h5_set_attr_str_list(f, "/", "model_sha256", hex + nd, nm, err)) &&
        !(rc = h5_set_attr_str(f, "/", "qdiff", o->qdiff, err)) &&
        !(rc = h5_set_attr_str(f, "/", "qdiff_sha256", hex[nd + nm], err)) &&
        !(rc = h5_set_attr_i64(f, "/", "qdiff_per_subset", w->hv->per_subset, err)) &&
        !(rc = h5_set_attr_str(f, "/", "tokenizer", o->tok_path ? o->tok_path : "", err)) &&
        !(rc = h5_set_attr_i64(f, "/", "max_len", o->max_len, err)) &&
        !(rc = h5_set_attr_i64(f, "/", "batch_size", o->batch_size, err)) &&
        !(rc = h5_set_attr_i64(f, "/", "threads", w->threads, err)) &&
        !(rc = h5_set_attr_str(f, "/", "responses", "best", err)) &&
        !(rc = h5_set_attr_i64(f, "/", "prompts_cut", w->s->prompts_cut, err)) &&
        !(rc = h5_set_attr_i64(f, "/", "responses_cut", w->s->responses_cut, err)) &&
        !(rc = h5_set_attr_str_list(f, "/", "status_names", names, SCORE_NSTATUS, err)) &&
        !(rc = h5_set_attr_str(f, "/", "deft_version", o->version ? o->version : "", err)) &&
        o->ifd_model)
        rc = h5_set_attr_str(f, "/", "ifd_model", o->ifd_model, err);
    free(hex);
    return rc;
}

static int write_output(const score_output_t *w, deft_err_t *err)
{
    h5_file_t *f;
    int rc = h5_create(&f, w->o->out, err);
    if (rc)
        return rc;
    if (!(rc = write_arrays(f, w, err)) && !(rc = write_subset_names(f, w->data, err)))
        rc = write_attrs(f, w, err);
    if (rc) {
        h5_discard(f);
        return rc;
    }
    return h5_commit(f, err);
}

// ----------------------------------------------------------------------------
// the stage

/* DEFT_STOPPED on every rank when any rank got a stop signal (*sig: the
 * largest number), DEFT_OK when none did. Collective. */
static int stop_agreed(comm_t *c, int *sig, deft_err_t *err)
{
    int64_t v = signals_stop_requested();
    int rc = comm_allreduce_max_i64(c, &v, 1, err);
    *sig = (int)v;
    return rc ? rc : v ? DEFT_STOPPED : DEFT_OK;
}

/* A stop keeps nothing: scores.h5 is written whole or not at all, and an
 * earlier run killed while writing may have left OUT.tmp, removed here. */
static void log_stop(const score_opts_t *o, comm_t *c, int sig, size_t scored, size_t n,
                     deft_err_t *err)
{
    if (comm_rank(c) == 0) {
        strbuf_t tmp = {0};
        sb_printf(&tmp, "%s.tmp", o->out);
        if (remove(tmp.data) == 0)
            log_info("score: removed %s, left by an interrupted write", tmp.data);
        sb_free(&tmp);
    }
    log_info("score: stopped by signal %d after %zu of %zu samples; nothing written, run it "
             "again to redo it", sig, scored, n);
    /* the message is the log line above: the caller prints no error */
    err->code = DEFT_STOPPED;
    err->msg[0] = '\0';
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void log_summary(const pref_data_t *d, const sample_out_t *res, const scorer_t *s)
{
    int64_t status[SCORE_NSTATUS] = {0};
    for (size_t i = 0; i < d->n; i++)
        status[res[i].status]++;
    log_info("score: %lld samples scored, %lld empty responses, %lld non-finite; "
             "%lld prompts cut from the left, %lld responses cut at max_len",
             (long long)status[SCORE_OK], (long long)status[SCORE_EMPTY_RESPONSE],
             (long long)status[SCORE_NONFINITE], (long long)s->prompts_cut,
             (long long)s->responses_cut);
    double *v = xmalloc((d->n + 1) * sizeof *v);
    for (int sub = 0; sub < d->nsubsets; sub++) {
        size_t k = 0;
        for (size_t i = 0; i < d->n; i++)
            if (d->rec[i].subset == sub && res[i].status == SCORE_OK)
                v[k++] = res[i].score;
        if (!k)
            continue;
        qsort(v, k, sizeof *v, cmp_double);
        log_info("  %-28s %8zu scored   R_Q min %.6g  median %.6g  max %.6g", d->subsets[sub],
                 k, v[0], v[k / 2], v[k - 1]);
    }
    free(v);
}

static int load_models(const score_opts_t *o, comm_t *c, llama_model_t *m,
                       llama_model_t *ifd, deft_err_t *err)
{
    int rc = llama_load(m, o->model, backend_cpu(), err);
    if (!rc && o->ifd_model)
        rc = llama_load(ifd, o->ifd_model, backend_cpu(), err);
    if (!rc && tok_vocab_size(o->tok) > m->cfg.vocab_size)
        rc = deft_fail(err, DEFT_ERR_USAGE, "the tokenizer %s has %d ids, the model %s only %d",
                       o->tok_path, tok_vocab_size(o->tok), o->model, m->cfg.vocab_size);
    if (!rc && o->ifd_model && tok_vocab_size(o->tok) > ifd->cfg.vocab_size)
        rc = deft_fail(err, DEFT_ERR_USAGE, "the tokenizer %s has %d ids, the IFD model %s "
                       "only %d", o->tok_path, tok_vocab_size(o->tok), o->ifd_model,
                       ifd->cfg.vocab_size);
    if (!rc && o->max_len > m->cfg.max_position_embeddings)
        log_warn("max_len %d exceeds the model's max_position_embeddings %d", o->max_len,
                 m->cfg.max_position_embeddings);
    return agree(c, rc, err);
}

/* Record, model and Q_diff checks and loading; every rank the same. */
static int score_prepare(const score_opts_t *o, comm_t *c, pref_data_t *d, llama_model_t *m,
                         llama_model_t *ifd, head_vectors_t *hv, deft_err_t *err)
{
    if (o->max_len < 3 || o->batch_size < 1)
        return deft_fail(err, DEFT_ERR_USAGE, "score: max_len %d (at least 3: BOS, a prompt "
                         "token and a response token) and batch_size %d (at least 1)",
                         o->max_len, o->batch_size);
    read_opts_t ro = {.rank = 0, .nranks = 1, .strict = o->strict,
                      .keep_file_order = o->keep_file_order};
    int rc = agree(c, data_read(d, o->src, o->nsrc, &ro, err), err);
    if (rc)
        return rc;
    strbuf_t rep = {0};
    data_report(d, o->src, &rep);
    if (rep.len)
        log_info("%s", rep.data);
    sb_free(&rep);
    if ((rc = load_models(o, c, m, ifd, err)))
        return rc;
    return agree(c, head_vectors_make(m, tok_vocab_size(o->tok), o->qdiff, d, hv, err), err);
}

int score_run(const score_opts_t *o, comm_t *c, deft_err_t *err)
{
    double t0 = wall_seconds();
    pref_data_t d = {0};
    llama_model_t m = {0}, ifd = {0};
    head_vectors_t hv = {0};
    /* a signal while loading is honoured before the first batch */
    int rc = agree(c, signals_install_with_interrupt(err), err);
    if (!rc)
        rc = score_prepare(o, c, &d, &m, &ifd, &hv, err);
    size_t scored = 0;
    int sig = 0;
    sample_out_t *mine = NULL, *all = NULL;
    scorer_t s = {&m, o->ifd_model ? &ifd : NULL, &hv, &d, o, 0, 0, 0};
    if (!rc) {
        log_info("score: %zu samples in %d subset(s), %d rank(s), batches of %d, max_len %d, "
                 "model %s (d %d, V %d), Q_diff %s%s", d.n, d.nsubsets, comm_size(c),
                 o->batch_size, o->max_len, o->model, m.cfg.hidden_size, m.cfg.vocab_size,
                 o->qdiff, hv.per_subset ? " (per subset)" : "");
        size_t nmine = 0;
        rc = agree(c, score_my_batches(&s, c, &mine, &nmine, &scored, &sig, err), err);
        all = xcalloc(d.n + 1, sizeof *all);
        if (!rc)
            rc = gather_results(c, mine, nmine, d.n, (size_t)o->batch_size, all, err);
        rc = agree(c, rc, err);
    }
    /* prompts/responses cut and tokens are per rank: sum them */
    int64_t counts[2] = {s.prompts_cut, s.responses_cut};
    if (!rc && !(rc = comm_allreduce_sum_i64(c, counts, 2, err))) {
        s.prompts_cut = counts[0];
        s.responses_cut = counts[1];
    }
    /* data files, model files, qdiff file: hashed over ranks */
    char **mfiles = NULL;
    size_t nm = 0;
    model_files(o->model, &mfiles, &nm);
    size_t npaths = (size_t)o->nsrc + nm + 1;
    const char **paths = xcalloc(npaths, sizeof *paths);
    for (int i = 0; i < o->nsrc; i++)
        paths[i] = o->src[i].path;
    for (size_t i = 0; i < nm; i++)
        paths[o->nsrc + i] = mfiles[i];
    paths[npaths - 1] = o->qdiff;
    char (*hex)[65] = xcalloc(npaths, 65);
    if (!rc)
        rc = hash_files(c, paths, npaths, hex, err);
    /* the last point to stop: once rank 0 writes, the write is finished */
    if (!rc && (rc = stop_agreed(c, &sig, err)) == DEFT_STOPPED)
        scored = d.n;
    if (!rc && comm_rank(c) == 0) {
        score_output_t w = {o, &d, all, paths, nm, hex, &hv, &s, omp_get_max_threads()};
        rc = write_output(&w, err);
        if (!rc)
            log_summary(&d, all, &s);
    }
    rc = agree(c, rc, err);
    if (rc == DEFT_STOPPED)
        log_stop(o, c, sig, scored, d.n, err);
    signals_restore();
    if (!rc) {
        char took[32];
        format_duration(took, sizeof took, wall_seconds() - t0);
        log_info("score: wrote %s (%s)", o->out, took);
    }
    for (size_t i = 0; i < nm; i++)
        free(mfiles[i]);
    free(mfiles), free(paths), free(hex), free(mine), free(all);
    head_vectors_free(&hv);
    llama_free(&m);
    llama_free(&ifd);
    data_free(&d);
    return rc;
}
