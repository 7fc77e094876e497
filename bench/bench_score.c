/* Scoring throughput of R_Q, the head-vector identity (u . h_t, no output
 * matmul, no softmax) against the literal form (full logits rows,
 * log-softmax, dot with Q_diff), on the same model, samples and batches, in
 * tokens/s, with the ratio and the largest disagreement of the two.
 * bench/score.sh runs it; flags: --model DIR --data FILE --samples N
 * --batch B --max-len L. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/records.h"
#include "model/losses.h"
#include "stages/qdiff.h"
#include "stages/score.h"
#include "util/log.h"

static const char *arg_str(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return def;
}

static int arg_int(int argc, char **argv, const char *name, int def)
{
    const char *s = arg_str(argc, argv, name, NULL);
    return s ? atoi(s) : def;
}

static void die(const deft_err_t *err)
{
    fprintf(stderr, "bench_score: %s\n", err->msg);
    exit(1);
}

/* Times scoring all batches with the fast (literal = false) or literal form. */
static double time_pass(llama_model_t *m, const score_batch_t *b, int nb, const double *const *u,
                        const double *const *q, bool literal, double *rq)
{
    deft_err_t err = {0};
    double t0 = wall_seconds();
    for (int k = 0; k < nb; k++) {
        const score_batch_t *bk = &b[k];
        int off = (int)(bk->ids - b[0].ids);
        int rc = literal ? score_forward_literal(m, bk, q + off, rq + off, &err)
                         : score_forward(m, bk, u + off, rq + off, NULL, &err);
        if (rc)
            die(&err);
    }
    return wall_seconds() - t0;
}

int main(int argc, char **argv)
{
    const char *model_dir = arg_str(argc, argv, "--model", "data/models/TinyStories-656K");
    const char *path = arg_str(argc, argv, "--data", "data/hh-rlhf/harmless-base-test.jsonl.gz");
    int n = arg_int(argc, argv, "--samples", 256), B = arg_int(argc, argv, "--batch", 8);
    int max_len = arg_int(argc, argv, "--max-len", 256);
    deft_err_t err = {0};
    llama_model_t m = {0};
    tokenizer_t *tok;
    pref_data_t d;
    data_source_t src = {path, NULL, NULL};
    read_opts_t ro = {.rank = 0, .nranks = 1};
    if (llama_load(&m, model_dir, backend_cpu(), &err) || tok_load(&tok, model_dir, &err) ||
        data_read(&d, &src, 1, &ro, &err))
        die(&err);
    n = (size_t)n < d.n ? n : (int)d.n;
    int V = m.cfg.vocab_size, dm = m.cfg.hidden_size;

    /* sequences and a Q_diff from the samples' own chosen / rejected tokens */
    score_seq_t *seq = calloc((size_t)n, sizeof *seq);
    const int32_t **ids = calloc((size_t)n, sizeof *ids);
    int32_t *len = calloc((size_t)n, sizeof *len), *start = calloc((size_t)n, sizeof *start);
    int64_t *cnt = calloc(2 * (size_t)V, sizeof *cnt);  /* [2, V] */
    int64_t tokens = 0, rows = 0;
    int used = 0;
    for (int i = 0; i < n; i++) {
        score_status_t st;
        if (score_make_sequence(tok, &d.rec[i], 0, max_len, &seq[used], &st, &err))
            die(&err);
        if (st)
            continue;
        for (int k = 0; k < 2; k++) {
            tok_ids_t r = {0};
            if (tok_encode(tok, d.rec[i].resp[k], d.rec[i].resp_len[k], TOK_CONTINUATION, &r,
                           &err))
                die(&err);
            for (size_t j = 0; j < r.n; j++)
                cnt[(size_t)k * V + r.ids[j]]++;
            tok_ids_free(&r);
        }
        ids[used] = seq[used].ids.ids;
        len[used] = (int32_t)seq[used].ids.n;
        start[used] = seq[used].resp_start;
        tokens += len[used];
        rows += len[used] - start[used];
        used++;
    }
    double *q = calloc((size_t)V, sizeof *q), *u = calloc((size_t)dm, sizeof *u);
    if (qdiff_compute(cnt, cnt + V, V, q, "the benchmark samples", &err))
        die(&err);
    loss_rq_head_vector_f64(m.lm_head, q, V, dm, u);
    const double **qs = calloc((size_t)used, sizeof *qs), **us = calloc((size_t)used, sizeof *us);
    for (int i = 0; i < used; i++)
        qs[i] = q, us[i] = u;

    int nb = (used + B - 1) / B;
    score_batch_t *b = calloc((size_t)nb, sizeof *b);
    for (int k = 0; k < nb; k++) {
        int lo = k * B, cnt_b = used - lo < B ? used - lo : B;
        b[k] = (score_batch_t){cnt_b, ids + lo, len + lo, start + lo};
    }
    double *fast = calloc((size_t)used, sizeof *fast), *lit = calloc((size_t)used, sizeof *lit);
    time_pass(&m, b, nb < 2 ? nb : 2, us, qs, false, fast);  /* warm-up */
    double t_fast = time_pass(&m, b, nb, us, qs, false, fast);
    double t_lit = time_pass(&m, b, nb, us, qs, true, lit);
    double worst = 0;
    for (int i = 0; i < used; i++)
        worst = fmax(worst, fabs(fast[i] - lit[i]) / (fmax(fabs(fast[i]), fabs(lit[i])) + 1e-12));
    printf("{\"model\": \"%s\", \"V\": %d, \"d\": %d, \"layers\": %d, \"samples\": %d, "
           "\"batch\": %d, \"max_len\": %d, \"tokens\": %lld, \"response_rows\": %lld, "
           "\"identity_tok_s\": %.1f, \"literal_tok_s\": %.1f, \"speedup\": %.3f, "
           "\"max_rel_diff\": %.3g}\n",
           model_dir, V, dm, m.cfg.num_layers, used, B, max_len, (long long)tokens,
           (long long)rows, tokens / t_fast, tokens / t_lit, t_lit / t_fast, worst);
    for (int i = 0; i < used; i++)
        tok_ids_free(&seq[i].ids);
    free(seq), free(ids), free(len), free(start), free(cnt), free(q), free(u), free(qs);
    free(us), free(b), free(fast), free(lit);
    data_free(&d);
    tok_free(tok);
    llama_free(&m);
    return 0;
}
