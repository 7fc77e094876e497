/* Training objectives against PyTorch autograd golden values
 * (tests/fixtures/losses/losses.json, made by tools/make_loss_fixtures.py):
 * values and per-token gradients of DPO, PRO, SFT and the DEFT term, the
 * backend's chain to logits, R_Q's fast forms, and micro-batch composition. */
#include "backend/backend.h"
#include "model/losses.h"
#include "test_util.h"

#include <jansson.h>
#include <string.h>

#define FIXTURE "tests/fixtures/losses/losses.json"

static int near_rel(double a, double b)
{
    return fabs(a - b) <= 1e-5 * fabs(b) + 1e-9;
}

#define CHECK_REL(a, b, what)                                                   \
    CHECK_MSG(near_rel((a), (b)), "%s: %.9g vs golden %.9g", (what), (double)(a), \
              (double)(b))

static float *json_floats(json_t *arr, size_t *n)
{
    *n = json_array_size(arr);
    float *out = xmalloc(*n * sizeof *out + 1);
    for (size_t i = 0; i < *n; i++)
        out[i] = (float)json_number_value(json_array_get(arr, i));
    return out;
}

// ----------------------------------------------------------------------------
// objectives

typedef struct {
    loss_sample_t *samples;  /* (n,) */
    int n;
    float **grads;           /* per response, golden (T,) */
    int nresp_total;
} case_t;

static void case_load(json_t *c, case_t *cs)
{
    json_t *samples = json_object_get(c, "samples");
    cs->n = (int)json_array_size(samples);
    cs->samples = xcalloc(cs->n, sizeof *cs->samples);
    cs->grads = xcalloc(64, sizeof *cs->grads);
    cs->nresp_total = 0;
    for (int i = 0; i < cs->n; i++) {
        json_t *s = json_array_get(samples, i);
        json_t *resp = json_object_get(s, "resp");
        json_t *rewards = json_object_get(s, "rewards");
        loss_sample_t *ls = &cs->samples[i];
        ls->n_resp = (int)json_array_size(resp);
        ls->resp = xcalloc(ls->n_resp, sizeof *ls->resp);
        ls->has_rewards = rewards != NULL;
        ls->r_q = json_number_value(json_object_get(s, "r_q"));
        for (int k = 0; k < ls->n_resp; k++) {
            json_t *r = json_array_get(resp, k);
            size_t nt, ng;
            loss_resp_t *lr = &ls->resp[k];
            lr->logp = json_floats(json_object_get(r, "logp"), &nt);
            lr->n_tok = (int)nt;
            lr->dlogp = xcalloc(nt + 1, sizeof(float));
            lr->ref_sum = json_number_value(json_object_get(r, "ref_sum"));
            if (rewards)
                lr->reward = json_number_value(json_array_get(rewards, k));
            cs->grads[cs->nresp_total++] = json_floats(json_object_get(r, "grad"), &ng);
        }
    }
}

static void case_zero_grads(case_t *cs)
{
    for (int i = 0; i < cs->n; i++)
        for (int k = 0; k < cs->samples[i].n_resp; k++)
            memset(cs->samples[i].resp[k].dlogp, 0,
                   sizeof(float) * (cs->samples[i].resp[k].n_tok + 1));
}

static void case_check_grads(case_t *cs, const char *name)
{
    int g = 0;
    char what[128];
    for (int i = 0; i < cs->n; i++)
        for (int k = 0; k < cs->samples[i].n_resp; k++, g++)
            for (int t = 0; t < cs->samples[i].resp[k].n_tok; t++) {
                snprintf(what, sizeof what, "%s sample %d resp %d dlogp[%d]", name, i, k, t);
                CHECK_REL(cs->samples[i].resp[k].dlogp[t], cs->grads[g][t], what);
            }
}

static void case_free(case_t *cs)
{
    for (int i = 0; i < cs->n; i++) {
        for (int k = 0; k < cs->samples[i].n_resp; k++) {
            free((void *)cs->samples[i].resp[k].logp);
            free(cs->samples[i].resp[k].dlogp);
        }
        free(cs->samples[i].resp);
    }
    for (int g = 0; g < cs->nresp_total; g++)
        free(cs->grads[g]);
    free(cs->grads);
    free(cs->samples);
}

static void check_stats(const loss_stats_t *st, json_t *ex, const char *name)
{
    struct { const char *key; double got; } f[] = {
        {"total", st->total}, {"pref", st->pref}, {"sft", st->sft}, {"deft", st->deft},
        {"r_q", st->r_q}, {"nll", st->nll}, {"acc", st->acc}, {"margin", st->margin},
        {"chosen_reward", st->chosen_reward}, {"rejected_reward", st->rejected_reward},
    };
    char what[128];
    for (size_t i = 0; i < DEFT_ARRAY_LEN(f); i++) {
        snprintf(what, sizeof what, "%s %s", name, f[i].key);
        CHECK_REL(f[i].got, json_number_value(json_object_get(ex, f[i].key)), what);
    }
}

static void test_case(json_t *c)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    const char *kind = json_string_value(json_object_get(c, "kind"));
    loss_params_t p = {
        .kind = !strcmp(kind, "dpo") ? LOSS_DPO : !strcmp(kind, "pro") ? LOSS_PRO : LOSS_SFT,
        .beta = json_number_value(json_object_get(c, "beta")),
        .w_sft = json_number_value(json_object_get(c, "w_sft")),
        .omega = json_number_value(json_object_get(c, "omega")),
    };
    double n_global = json_number_value(json_object_get(c, "n_global"));
    json_t *ex = json_object_get(c, "expect");
    case_t cs;
    case_load(c, &cs);

    /* the whole micro-batch in one call */
    loss_stats_t st = {0};
    deft_err_t err = {0};
    CHECK_MSG(loss_batch(&p, cs.samples, cs.n, n_global, &st, &err) == DEFT_OK, "%s: %s",
              name, err.msg);
    CHECK(st.n_samples == cs.n);
    check_stats(&st, ex, name);
    case_check_grads(&cs, name);

    /* one sample per micro-batch, same global count: the same objective and gradient */
    loss_stats_t st1 = {0};
    case_zero_grads(&cs);
    for (int i = 0; i < cs.n; i++)
        CHECK(loss_batch(&p, &cs.samples[i], 1, n_global, &st1, &err) == DEFT_OK);
    char split[160];
    snprintf(split, sizeof split, "%s (split)", name);
    check_stats(&st1, ex, split);
    case_check_grads(&cs, split);
    case_free(&cs);
}

// ----------------------------------------------------------------------------
// logits side

static void test_logits(json_t *lg)
{
    int T = (int)json_integer_value(json_object_get(lg, "T"));
    int V = (int)json_integer_value(json_object_get(lg, "V"));
    int d = (int)json_integer_value(json_object_get(lg, "d"));
    size_t n;
    float *z = json_floats(json_object_get(lg, "z"), &n);               /* (T, V) */
    float *q = json_floats(json_object_get(lg, "qdiff"), &n);           /* (V,) */
    float *want_deft = json_floats(json_object_get(lg, "dlogits_deft"), &n);
    float *want_logp = json_floats(json_object_get(lg, "dlogits_logp"), &n);
    float *g = json_floats(json_object_get(lg, "g"), &n);               /* (T,) */
    float *h = json_floats(json_object_get(lg, "h"), &n);               /* (T, d) */
    float *w = json_floats(json_object_get(lg, "w_head"), &n);          /* (V, d) */
    int32_t *y = xmalloc(sizeof(int32_t) * T);
    for (int t = 0; t < T; t++)
        y[t] = (int32_t)json_integer_value(json_array_get(json_object_get(lg, "y"), t));
    double omega = json_number_value(json_object_get(lg, "omega"));
    double scale = json_number_value(json_object_get(lg, "scale"));
    float *dl = xcalloc((size_t)T * V, sizeof(float));                  /* (T, V) */

    /* the DEFT term's constant logits gradient equals autograd through log_softmax */
    loss_deft_add_dlogits(dl, T, V, q, omega, scale);
    for (int i = 0; i < T * V; i++)
        CHECK_REL(dl[i], want_deft[i], "dlogits_deft");

    /* the chain from log-prob gradients to logits is the backend's op: check it here
     * against autograd too, since every objective above reaches the model through it */
    memset(dl, 0, sizeof(float) * T * V);
    backend_cpu()->logsoftmax_gather_bwd(dl, z, y, g, T, V);
    for (int i = 0; i < T * V; i++)
        CHECK_REL(dl[i], want_logp[i], "dlogits_logp");

    /* R_Q: fast logits form and hidden-state form against the literal log-softmax form */
    double rq_lit = json_number_value(json_object_get(lg, "rq_literal"));
    CHECK_REL(loss_rq_from_logits(z, T, V, q), rq_lit, "rq from logits");
    float *u = xmalloc(sizeof(float) * d);
    loss_rq_head_vector(w, q, V, d, u);
    double rq_h = json_number_value(json_object_get(lg, "rq_hidden_literal"));
    CHECK_REL(loss_rq_from_hidden(h, T, d, u), rq_h, "rq from hidden");
    CHECK(loss_rq_from_hidden(h, 0, d, u) == 0.0);
    CHECK(loss_rq_from_logits(z, 0, V, q) == 0.0);

    free(z); free(q); free(want_deft); free(want_logp); free(g); free(h); free(w); free(y);
    free(dl); free(u);
}

// ----------------------------------------------------------------------------
// edges

static void test_errors(void)
{
    float lp[2] = {-1.0f, -2.0f}, dlp[2] = {0};
    loss_resp_t r[2] = {{.logp = lp, .dlogp = dlp, .n_tok = 2},
                        {.logp = lp, .dlogp = dlp, .n_tok = 2}};
    loss_sample_t s = {.resp = r, .n_resp = 1};
    loss_params_t p = {.kind = LOSS_DPO, .beta = 0.1};
    loss_stats_t st = {0};
    deft_err_t err = {0};
    CHECK(loss_batch(&p, &s, 1, 1, &st, &err) == DEFT_ERR_DATA);
    CHECK(strstr(err.msg, "n_resp = 1") != NULL);
    s.n_resp = 2;
    CHECK(loss_batch(&p, &s, 1, 0, &st, &err) == DEFT_ERR_INTERNAL);
    lp[1] = NAN;
    CHECK(loss_batch(&p, &s, 1, 1, &st, &err) == DEFT_ERR_DATA);
    CHECK(strstr(err.msg, "token 1") != NULL);
    lp[1] = -2.0f;
    r[1].ref_sum = INFINITY;
    CHECK(loss_batch(&p, &s, 1, 1, &st, &err) == DEFT_ERR_DATA);
    CHECK(strstr(err.msg, "ref_sum") != NULL);

    CHECK(loss_softplus(1000.0) == 1000.0);
    CHECK(isfinite(loss_softplus(-1000.0)) && loss_softplus(-1000.0) >= 0.0);
    CHECK_NEAR(loss_softplus(0.0), log(2.0), 1e-15);
}

int main(void)
{
    json_error_t jerr;
    json_t *doc = json_load_file(FIXTURE, 0, &jerr);
    CHECK_MSG(doc != NULL, "%s:%d: %s", FIXTURE, jerr.line, jerr.text);
    if (!doc)
        TEST_DONE();
    json_t *cases = json_object_get(doc, "cases");
    CHECK(json_array_size(cases) >= 6);
    for (size_t i = 0; i < json_array_size(cases); i++)
        test_case(json_array_get(cases, i));
    test_logits(json_object_get(doc, "logits"));
    test_errors();
    json_decref(doc);
    TEST_DONE();
}
