/* Tests of the Llama model against transformers (fixtures made by
 * tools/make_model_fixtures.py): logits of a random Llama-3-style model with
 * GQA and llama3 RoPE scaling and of the real TinyStories-656K model, torch
 * autograd gradients of a next-token loss, greedy generation, padding
 * invariance, log-probabilities, a float finite-difference check, and the
 * loader's errors. */
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "model/llama.h"
#include "test_util.h"

#define TINY "tests/fixtures/model/tiny-llama3"
#define TINYSTORIES "data/models/TinyStories-656K"

static const st_tensor_t *need(st_set_t *st, const char *name)
{
    const st_tensor_t *t = st_find(st, name);
    if (!t) {
        fprintf(stderr, "fixture tensor %s missing\n", name);
        exit(1);
    }
    return t;
}

static float *read_f32(st_set_t *st, const char *name)
{
    const st_tensor_t *t = need(st, name);
    float *x = malloc(sizeof(float) * st_numel(t));
    st_to_f32(t, x);
    return x;
}

static int32_t *read_i32(st_set_t *st, const char *name)
{
    const st_tensor_t *t = need(st, name);
    CHECK(t->dtype == ST_I32);
    int32_t *x = malloc(sizeof(int32_t) * st_numel(t));
    memcpy(x, t->data, sizeof(int32_t) * st_numel(t));
    return x;
}

/* Max |a - b| over real positions of logits [B, T, V]. */
static double logits_err(const float *a, const float *b, const int32_t *lens, int B, int T,
                         int V)
{
    double m = 0;
    for (int bb = 0; bb < B; bb++)
        for (int t = 0; t < lens[bb]; t++)
            for (int v = 0; v < V; v++) {
                int64_t i = ((int64_t)bb * T + t) * V + v;
                m = fmax(m, fabs((double)a[i] - b[i]));
            }
    return m;
}

static void lens_from_mask(const int32_t *mask, int B, int T, int32_t *lens)
{
    for (int b = 0; b < B; b++) {
        lens[b] = 0;
        for (int t = 0; t < T; t++)
            lens[b] += mask[b * T + t];
    }
}

/* Token-mean next-token NLL over real positions and its gradient on the logits. */
static double nll_and_grad(const float *logits, const int32_t *ids, const int32_t *lens, int B,
                           int T, int V, float *dlogits)
{
    int count = 0;
    for (int b = 0; b < B; b++)
        count += lens[b] > 1 ? lens[b] - 1 : 0;
    double loss = 0;
    memset(dlogits, 0, sizeof(float) * B * T * V);
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < lens[b]; t++) {
            const float *z = logits + ((int64_t)b * T + t) * V;
            float *dz = dlogits + ((int64_t)b * T + t) * V;
            double mx = -INFINITY, s = 0;
            for (int v = 0; v < V; v++)
                mx = fmax(mx, z[v]);
            for (int v = 0; v < V; v++)
                s += exp(z[v] - mx);
            int y = ids[b * T + t + 1];
            loss -= z[y] - mx - log(s);
            for (int v = 0; v < V; v++)
                dz[v] = (float)(exp(z[v] - mx) / s / count);
            dz[y] -= 1.0f / count;
        }
    return loss / count;
}

// ----------------------------------------------------------------------------
// the random Llama-3-style model: logits, loss, gradients

static void test_tiny_llama3(void)
{
    deft_err_t err = {0};
    llama_model_t m;
    int rc = llama_load(&m, TINY, backend_cpu(), &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc)
        return;
    st_set_t *st = NULL;
    rc = st_open(&st, TINY "/expected.safetensors", &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc)
        return;
    const st_tensor_t *ti = need(st, "input_ids");
    int B = (int)ti->shape[0], T = (int)ti->shape[1], V = m.cfg.vocab_size;
    int32_t *ids = read_i32(st, "input_ids"), *mask = read_i32(st, "attention_mask");
    int32_t lens[8];
    lens_from_mask(mask, B, T, lens);

    /* RoPE frequencies with llama3 scaling, as transformers computed them */
    float *want_freq = read_f32(st, "inv_freq"), freq[64];
    llama_rope_inv_freq(&m.cfg, freq);
    double ferr = 0;
    for (int i = 0; i < m.cfg.head_dim / 2; i++)
        ferr = fmax(ferr, fabs(freq[i] - want_freq[i]) / want_freq[i]);
    CHECK_MSG(ferr < 1e-6, "inv_freq relative error %g", ferr);

    float *want = read_f32(st, "logits");
    float *logits = malloc(sizeof(float) * B * T * V);
    float *hidden = malloc(sizeof(float) * B * T * m.cfg.hidden_size);
    rc = llama_forward(&m, ids, lens, B, T, hidden, logits, true, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    double lerr = logits_err(logits, want, lens, B, T, V);
    CHECK_MSG(lerr < 1e-4, "tiny-llama3 logits max error %g", lerr);
    printf("tiny-llama3 logits: max abs error %.3g\n", lerr);

    float *dlogits = malloc(sizeof(float) * B * T * V);
    double loss = nll_and_grad(logits, ids, lens, B, T, V, dlogits);
    float *want_loss = read_f32(st, "loss");
    CHECK_NEAR(loss, want_loss[0], 1e-5);
    CHECK(llama_alloc_grads(&m, &err) == 0);
    llama_zero_grads(&m);
    rc = llama_backward(&m, dlogits, NULL, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    double worst = 0;
    for (int i = 0; i < m.n_params; i++) {
        llama_param_t *p = &m.params[i];
        char name[128];
        snprintf(name, sizeof(name), "grad.%s", p->name);
        float *g = read_f32(st, name);
        double gmax = 0, e = 0;
        for (int64_t j = 0; j < p->numel; j++) {
            gmax = fmax(gmax, fabs(g[j]));
            e = fmax(e, fabs((double)g[j] - p->grad[j]));
        }
        CHECK_MSG(gmax > 0 && e <= 1e-3 * gmax, "%s: gradient error %g of max %g", p->name, e,
                  gmax);
        worst = fmax(worst, e / gmax);
        free(g);
    }
    printf("tiny-llama3 gradients: worst error relative to max |grad| %.3g\n", worst);

    /* dhidden path: the head's gradient pushed through by hand must equal the
     * dlogits path's for every parameter but the head itself */
    int d = m.cfg.hidden_size, head = m.lm_head_param;
    float *dh = calloc((size_t)B * T * d, sizeof(float));
    for (int64_t n = 0; n < (int64_t)B * T; n++)
        for (int v = 0; v < V; v++)
            for (int c = 0; c < d; c++)
                dh[n * d + c] += dlogits[n * V + v] * m.params[head].data[(int64_t)v * d + c];
    float *g0 = malloc(sizeof(float) * m.params[1].numel);
    memcpy(g0, m.params[1].grad, sizeof(float) * m.params[1].numel);
    llama_zero_grads(&m);
    CHECK(llama_forward(&m, ids, lens, B, T, NULL, NULL, true, &err) == 0);
    CHECK(llama_backward(&m, NULL, dh, &err) == 0);
    double herr = 0, hmax = 0;
    for (int64_t j = 0; j < m.params[1].numel; j++) {
        herr = fmax(herr, fabs(g0[j] - m.params[1].grad[j]));
        hmax = fmax(hmax, fabs(g0[j]));
    }
    CHECK_MSG(herr <= 1e-4 * hmax, "dhidden path error %g of %g", herr, hmax);
    free(dh), free(g0);

    /* padding changes nothing at real positions: each sequence alone */
    double perr = 0;
    for (int b = 0; b < B; b++) {
        float *one = malloc(sizeof(float) * lens[b] * V);
        CHECK(llama_forward(&m, ids + b * T, &lens[b], 1, lens[b], NULL, one, false, &err) == 0);
        perr = fmax(perr, logits_err(one, logits + (int64_t)b * T * V, &lens[b], 1, lens[b], V));
        free(one);
    }
    CHECK_MSG(perr < 1e-5, "padding changed real positions by %g", perr);

    /* log-probs agree with the log-softmax of the logits */
    float *lp = malloc(sizeof(float) * B * T);
    CHECK(llama_logprobs(&m, ids, lens, B, T, lp, &err) == 0);
    double sum = 0;
    int n = 0;
    for (int b = 0; b < B; b++) {
        CHECK(lp[b * T] == 0.0f);
        for (int t = 1; t < T; t++) {
            sum += lp[b * T + t];
            n += t < lens[b];
            if (t >= lens[b])
                CHECK(lp[b * T + t] == 0.0f);
        }
    }
    CHECK_NEAR(-sum / n, want_loss[0], 1e-5);

    free(want_freq), free(want), free(logits), free(hidden), free(dlogits), free(want_loss);
    free(lp), free(ids), free(mask);
    st_close(st);
    llama_free(&m);
}

/* Central differences in float on the largest-gradient entry of every tensor.
 * In float (no double build of the backend), so h is large and the tolerance
 * loose (5%); the autograd comparison above is the precise check, this one is
 * independent of torch. */
static void test_finite_differences(void)
{
    deft_err_t err = {0};
    llama_model_t m;
    if (llama_load(&m, TINY, backend_cpu(), &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    int B = 2, T = 6;
    int32_t ids[12] = {5, 77, 301, 9, 450, 12, 8, 8, 200, 31, 0, 0}, lens[2] = {6, 4};
    float lp[12];
    CHECK(llama_alloc_grads(&m, &err) == 0);
    /* loss = -mean log p; its dlogits come from nll_and_grad */
    int V = m.cfg.vocab_size;
    float *logits = malloc(sizeof(float) * B * T * V), *dz = malloc(sizeof(float) * B * T * V);
    CHECK(llama_forward(&m, ids, lens, B, T, NULL, logits, true, &err) == 0);
    nll_and_grad(logits, ids, lens, B, T, V, dz);
    CHECK(llama_backward(&m, dz, NULL, &err) == 0);
    int bad = 0;
    for (int i = 0; i < m.n_params; i++) {
        llama_param_t *p = &m.params[i];
        int64_t j = 0;
        for (int64_t k = 1; k < p->numel; k++)
            if (fabsf(p->grad[k]) > fabsf(p->grad[j]))
                j = k;
        float x0 = p->data[j], h = 1e-2f * fmaxf(1.0f, fabsf(x0));
        double f[2];
        for (int s = 0; s < 2; s++) {
            p->data[j] = x0 + (s ? -h : h);
            CHECK(llama_logprobs(&m, ids, lens, B, T, lp, &err) == 0);
            double sum = 0;
            for (int k = 0; k < B * T; k++)
                sum += lp[k];
            f[s] = -sum / 8.0;   /* 5 + 3 predicted tokens */
        }
        p->data[j] = x0;
        double num = (f[0] - f[1]) / (2 * h);
        if (fabs(num - p->grad[j]) > 5e-2 * fabs(p->grad[j]) + 1e-4) {
            bad++;
            fprintf(stderr, "%s[%lld]: numeric %g analytic %g\n", p->name, (long long)j, num,
                    p->grad[j]);
        }
    }
    CHECK(bad == 0);
    free(logits), free(dz);
    llama_free(&m);
}

// ----------------------------------------------------------------------------
// the real TinyStories-656K model

static void test_tinystories(void)
{
    deft_err_t err = {0};
    llama_model_t m;
    int rc = llama_load(&m, TINYSTORIES, backend_cpu(), &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc)
        return;
    CHECK(m.cfg.tie_word_embeddings && m.lm_head == m.embed && m.n_params == 2 + 2 * 9);
    st_set_t *st = NULL;
    rc = st_open(&st, "tests/fixtures/model/tinystories.safetensors", &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc)
        return;
    const st_tensor_t *ti = need(st, "input_ids");
    int B = (int)ti->shape[0], T = (int)ti->shape[1], V = m.cfg.vocab_size;
    int32_t *ids = read_i32(st, "input_ids"), *mask = read_i32(st, "attention_mask");
    int32_t lens[8];
    lens_from_mask(mask, B, T, lens);
    float *want = read_f32(st, "logits"), *logits = malloc(sizeof(float) * B * T * V);
    CHECK(llama_forward(&m, ids, lens, B, T, NULL, logits, false, &err) == 0);
    double lerr = logits_err(logits, want, lens, B, T, V);
    CHECK_MSG(lerr < 1e-4, "TinyStories logits max error %g", lerr);
    printf("TinyStories-656K logits: max abs error %.3g\n", lerr);

    const st_tensor_t *tp = need(st, "prompt_ids"), *tg = need(st, "greedy_ids");
    int32_t *prompt = read_i32(st, "prompt_ids"), *greedy = read_i32(st, "greedy_ids");
    int np = (int)tp->shape[0], ng = (int)tg->shape[0], n_out = 0;
    int32_t out[64], eos = m.cfg.eos_token_ids[0];
    rc = llama_generate(&m, prompt, np, 64, 0.0f, 1.0f, 0, &eos, 1, out, &n_out, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    int same = n_out == ng;
    for (int i = 0; same && i < ng; i++)
        same = out[i] == greedy[i];
    CHECK_MSG(same, "greedy ids differ from transformers' (%d vs %d tokens)", n_out, ng);

    /* sampling: a seed reproduces, a tiny top_p is greedy, eos stops */
    int32_t s1[16], s2[16];
    int n1, n2;
    CHECK(llama_generate(&m, prompt, np, 16, 1.0f, 0.9f, 7, &eos, 1, s1, &n1, &err) == 0);
    CHECK(llama_generate(&m, prompt, np, 16, 1.0f, 0.9f, 7, &eos, 1, s2, &n2, &err) == 0);
    CHECK(n1 == n2 && !memcmp(s1, s2, sizeof(int32_t) * n1));
    CHECK(llama_generate(&m, prompt, np, 16, 1.0f, 1e-6f, 3, &eos, 1, s1, &n1, &err) == 0);
    CHECK(n1 == 16 && !memcmp(s1, greedy, sizeof(int32_t) * 16));
    int32_t stop = greedy[3];
    CHECK(llama_generate(&m, prompt, np, 64, 0.0f, 1.0f, 0, &stop, 1, s1, &n1, &err) == 0);
    CHECK(n1 == 4 && s1[3] == stop);

    free(ids), free(mask), free(want), free(logits), free(prompt), free(greedy);
    st_close(st);
    llama_free(&m);
}

// ----------------------------------------------------------------------------
// loader errors

/* Writes DIR with TinyStories' config and its tensors, less `drop`, plus a
 * small `extra`, with `reshape` given a wrong shape and lm_head.weight stored
 * as model.embed_tokens.weight when `rename_head`. */
static int write_variant(const char *dir, const char *drop, const char *extra,
                         const char *reshape, bool rename_head, deft_err_t *err)
{
    mkdir(dir, 0755);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp %s/config.json %s/", TINYSTORIES, dir);
    if (system(cmd) != 0)
        return 1;
    st_set_t *st;
    if (st_open(&st, TINYSTORIES, err))
        return 1;
    int n = st_count(st), k = 0;
    st_write_tensor_t *w = calloc(n + 1, sizeof(*w));
    float **bufs = calloc(n + 1, sizeof(float *));
    for (int i = 0; i < n; i++) {
        const st_tensor_t *t = st_at(st, i);
        if (drop && !strcmp(t->name, drop))
            continue;
        bufs[k] = malloc(sizeof(float) * st_numel(t));
        st_to_f32(t, bufs[k]);
        w[k] = (st_write_tensor_t){.name = t->name, .ndim = t->ndim, .data = bufs[k]};
        if (rename_head && !strcmp(t->name, "lm_head.weight"))
            w[k].name = "model.embed_tokens.weight";
        memcpy(w[k].shape, t->shape, sizeof(t->shape));
        if (reshape && !strcmp(t->name, reshape))
            w[k].shape[0] /= 2, w[k].shape[1] *= 2;
        k++;
    }
    if (extra) {
        static float one[4] = {1, 2, 3, 4};
        w[k++] = (st_write_tensor_t){.name = extra, .ndim = 1, .shape = {4}, .data = one};
    }
    char path[300];
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    int rc = st_write(path, w, k, ST_F32, NULL, err);
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs), free(w);
    st_close(st);
    return rc;
}

static void expect_load_error(const char *dir, const char *needle)
{
    deft_err_t err = {0};
    llama_model_t m;
    int rc = llama_load(&m, dir, backend_cpu(), &err);
    CHECK_MSG(rc == DEFT_ERR_FORMAT && strstr(err.msg, needle), "rc %d: %s", rc, err.msg);
    if (!rc)
        llama_free(&m);
}

static void test_load_errors(void)
{
    char base[] = "/tmp/deft-llama-XXXXXX";
    if (!mkdtemp(base)) {
        CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    char dir[300];
    deft_err_t err = {0};
    const char *q1 = "model.layers.1.self_attn.q_proj.weight";
    snprintf(dir, sizeof(dir), "%s/missing", base);
    CHECK(write_variant(dir, q1, NULL, NULL, false, &err) == 0);
    expect_load_error(dir, q1);
    snprintf(dir, sizeof(dir), "%s/extra", base);
    CHECK(write_variant(dir, NULL, "model.layers.2.mlp.bias", NULL, false, &err) == 0);
    expect_load_error(dir, "model.layers.2.mlp.bias");
    snprintf(dir, sizeof(dir), "%s/shape", base);
    CHECK(write_variant(dir, NULL, NULL, "model.layers.0.mlp.up_proj.weight", false, &err) == 0);
    expect_load_error(dir, "model.layers.0.mlp.up_proj.weight has shape [192, 256]");
    /* the tied matrix stored as model.embed_tokens.weight loads the same model */
    snprintf(dir, sizeof(dir), "%s/tied", base);
    CHECK(write_variant(dir, NULL, NULL, NULL, true, &err) == 0);
    llama_model_t a, b;
    int rc = llama_load(&a, dir, backend_cpu(), &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (!rc) {
        CHECK(llama_load(&b, TINYSTORIES, backend_cpu(), &err) == 0);
        CHECK(!memcmp(a.embed, b.embed, sizeof(float) * a.params[0].numel));
        llama_free(&a);
        llama_free(&b);
    }
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    test_tiny_llama3();
    test_finite_differences();
    test_tinystories();
    test_load_errors();
    TEST_DONE();
}
