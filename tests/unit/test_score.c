/* Tests of the score stage's parts: sequence joining and truncation, the fast
 * R_Q (head vector u . h_t) against the literal log-softmax form on real
 * HH-RLHF samples with the real TinyStories-656K model, batch-size
 * independence, and the log-likelihood against llama_logprobs. */
#include <string.h>

#include "data/records.h"
#include "model/llama.h"
#include "model/losses.h"
#include "stages/qdiff.h"
#include "stages/score.h"
#include "test_util.h"

#define MODEL_DIR "data/models/TinyStories-656K"
#define DATA_FILE "data/hh-rlhf/harmless-base-test.jsonl.gz"
#define NSAMPLES 40
#define MAX_LEN 256

static void test_join(void)
{
    int32_t p[6] = {10, 11, 12, 13, 14, 15}, r[5] = {20, 21, 22, 23, 24};
    score_seq_t s = {0};

    score_join(1, p, 6, r, 5, 64, &s);  /* fits */
    CHECK(s.ids.n == 12 && s.ids.ids[0] == 1 && s.ids.ids[1] == 10 && s.resp_start == 7);
    CHECK(s.ids.ids[7] == 20 && s.ids.ids[11] == 24 && !s.prompt_cut && !s.response_cut);

    score_join(1, p, 6, r, 5, 8, &s);  /* prompt cut from the left: BOS 14 15 | 20..24 */
    CHECK(s.ids.n == 8 && s.ids.ids[0] == 1 && s.ids.ids[1] == 14 && s.ids.ids[2] == 15);
    CHECK(s.resp_start == 3 && s.ids.ids[3] == 20 && s.prompt_cut && !s.response_cut);

    score_join(1, p, 6, r, 5, 6, &s);  /* response needs all: BOS 15 | 20..23, end cut */
    CHECK(s.ids.n == 6 && s.ids.ids[1] == 15 && s.resp_start == 2 && s.ids.ids[5] == 23);
    CHECK(s.prompt_cut && s.response_cut && s.response_tokens == 5 && s.prompt_tokens == 6);

    score_join(1, p, 6, r, 5, 3, &s);  /* the smallest max_len: BOS, 1 prompt, 1 response */
    CHECK(s.ids.n == 3 && s.ids.ids[1] == 15 && s.ids.ids[2] == 20 && s.resp_start == 2);

    score_join(-1, p, 6, r, 5, 7, &s);  /* no BOS: the room goes to the prompt */
    CHECK(s.ids.n == 7 && s.ids.ids[0] == 14 && s.ids.ids[1] == 15 && s.resp_start == 2);

    score_join(1, p, 0, r, 2, 8, &s);  /* an empty prompt still has BOS to predict from */
    CHECK(s.ids.n == 3 && s.resp_start == 1);
    tok_ids_free(&s.ids);
}

/* A real scoring setup: records, sequences, two Q_diffs and their u. */
typedef struct {
    llama_model_t m;
    tokenizer_t *tok;
    pref_data_t data;
    score_seq_t seq[NSAMPLES];
    const int32_t *ids[NSAMPLES];
    int32_t len[NSAMPLES], start[NSAMPLES];
    double *q[2];          /* (V,) each: from the samples' own counts, and sides swapped */
    double *u[2];          /* (d,) each */
    const double *qs[NSAMPLES], *us[NSAMPLES];  /* sample i uses pair i % 2 */
} setup_t;

static int setup_load(setup_t *s)
{
    deft_err_t err = {0};
    memset(s, 0, sizeof *s);
    data_source_t src = {DATA_FILE, NULL, NULL};
    read_opts_t ro = {.rank = 0, .nranks = 1};
    if (llama_load(&s->m, MODEL_DIR, backend_cpu(), &err) || tok_load(&s->tok, MODEL_DIR, &err) ||
        data_read(&s->data, &src, 1, &ro, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    int V = s->m.cfg.vocab_size, d = s->m.cfg.hidden_size;
    int64_t *cnt = xcalloc(2 * (size_t)V, sizeof *cnt);  /* [2, V]: chosen, rejected */
    for (int i = 0; i < NSAMPLES; i++) {
        const pref_record_t *rec = &s->data.rec[i];
        score_status_t st;
        if (score_make_sequence(s->tok, rec, 0, MAX_LEN, &s->seq[i], &st, &err) || st) {
            fprintf(stderr, "setup: sample %d: %s\n", i, err.msg);
            return 1;
        }
        s->ids[i] = s->seq[i].ids.ids;
        s->len[i] = (int32_t)s->seq[i].ids.n;
        s->start[i] = s->seq[i].resp_start;
        for (int k = 0; k < 2; k++) {
            tok_ids_t r = {0};
            tok_encode(s->tok, rec->resp[k], rec->resp_len[k], TOK_CONTINUATION, &r, &err);
            for (size_t j = 0; j < r.n; j++)
                cnt[(size_t)k * V + r.ids[j]]++;
            tok_ids_free(&r);
        }
    }
    for (int w = 0; w < 2; w++) {
        s->q[w] = xcalloc((size_t)V, sizeof *s->q[w]);
        s->u[w] = xcalloc((size_t)d, sizeof *s->u[w]);
        const int64_t *pos = cnt + (size_t)w * V, *neg = cnt + (size_t)(1 - w) * V;
        if (qdiff_compute(pos, neg, V, s->q[w], "test", &err))
            return 1;
        loss_rq_head_vector_f64(s->m.lm_head, s->q[w], V, d, s->u[w]);
    }
    for (int i = 0; i < NSAMPLES; i++) {
        s->qs[i] = s->q[i % 2];
        s->us[i] = s->u[i % 2];
    }
    free(cnt);
    return 0;
}

static void setup_free(setup_t *s)
{
    for (int i = 0; i < NSAMPLES; i++)
        tok_ids_free(&s->seq[i].ids);
    for (int w = 0; w < 2; w++)
        free(s->q[w]), free(s->u[w]);
    data_free(&s->data);
    tok_free(s->tok);
    llama_free(&s->m);
}

/* Samples [i0, i0 + n) as one batch. */
static score_batch_t batch_of(const setup_t *s, int i0, int n)
{
    return (score_batch_t){n, s->ids + i0, s->len + i0, s->start + i0};
}

static int forward_in_batches(setup_t *s, int B, double *rq, double *ll)
{
    deft_err_t err = {0};
    for (int i0 = 0; i0 < NSAMPLES; i0 += B) {
        int n = NSAMPLES - i0 < B ? NSAMPLES - i0 : B;
        score_batch_t b = batch_of(s, i0, n);
        if (score_forward(&s->m, &b, s->us + i0, rq + i0, ll + i0, &err)) {
            fprintf(stderr, "score_forward: %s\n", err.msg);
            return 1;
        }
    }
    return 0;
}

static void test_real(void)
{
    setup_t s;
    if (setup_load(&s)) {
        CHECK_MSG(0, "cannot load the model, tokenizer or data (run from the repository root)");
        return;
    }
    deft_err_t err = {0};
    double rq8[NSAMPLES], ll8[NSAMPLES], rq1[NSAMPLES], ll1[NSAMPLES], lit[NSAMPLES];
    CHECK(forward_in_batches(&s, 8, rq8, ll8) == 0);
    CHECK(forward_in_batches(&s, 1, rq1, ll1) == 0);
    for (int i0 = 0; i0 < NSAMPLES; i0 += 8) {
        score_batch_t b = batch_of(&s, i0, 8);
        CHECK(score_forward_literal(&s.m, &b, s.qs + i0, lit + i0, &err) == 0);
    }

    /* the identity: fast form against the literal log-softmax form */
    double maxabs = 0;
    int differ = 0;
    for (int i = 0; i < NSAMPLES; i++) {
        double a = rq8[i], b = lit[i];
        double tol = 1e-4 * fmax(fabs(a), fabs(b)) + 1e-6;
        CHECK_MSG(fabs(a - b) <= tol, "sample %d: fast %.9g literal %.9g", i, a, b);
        maxabs = fmax(maxabs, fabs(a));
        differ += i > 0 && rq8[i] != rq8[i - 1];
    }
    /* not a vacuous comparison: the scores are sizeable and vary */
    CHECK_MSG(maxabs > 1e-3, "largest |R_Q| %.3g", maxabs);
    CHECK(differ == NSAMPLES - 1);

    /* batching with padding changes nothing beyond 1e-5 */
    for (int i = 0; i < NSAMPLES; i++) {
        CHECK_NEAR(rq1[i], rq8[i], 1e-5);
        CHECK_NEAR(ll1[i], ll8[i], 1e-5);
    }

    /* log-likelihood against the model's own per-token log-probs, one sequence at a time */
    for (int i = 0; i < NSAMPLES; i++) {
        float *lp = xmalloc(sizeof(float) * (size_t)s.len[i]);
        int32_t one = s.len[i];
        CHECK(llama_logprobs(&s.m, s.ids[i], &one, 1, s.len[i], lp, &err) == 0);
        double sum = 0;
        for (int t = s.start[i]; t < s.len[i]; t++)
            sum += lp[t];
        double want = sum / (s.len[i] - s.start[i]);
        CHECK_MSG(fabs(ll8[i] - want) <= 1e-5 * fabs(want) + 1e-6, "sample %d: %.9g vs %.9g", i,
                  ll8[i], want);
        CHECK(ll8[i] < 0);
        free(lp);
    }

    /* same sample, swapped sides: Q_diff and so R_Q change sign */
    double rq_sw;
    const double *u_sw[1] = {s.u[1]};
    score_batch_t b0 = batch_of(&s, 0, 1);
    CHECK(score_forward(&s.m, &b0, u_sw, &rq_sw, NULL, &err) == 0);
    CHECK_NEAR(rq_sw, -rq8[0], 1e-12 + 1e-9 * fabs(rq8[0]));

    /* a vocabulary id outside the model is an error, not a read out of bounds */
    int32_t bad[3] = {1, 5, s.m.cfg.vocab_size}, blen = 3, bstart = 2;
    const int32_t *bids[1] = {bad};
    score_batch_t bb = {1, bids, &blen, &bstart};
    CHECK(score_forward(&s.m, &bb, u_sw, &rq_sw, NULL, &err) == DEFT_ERR_DATA);
    setup_free(&s);
}

int main(void)
{
    test_join();
    test_real();
    TEST_DONE();
}
