/* Stage qdiff: response sides, the Q_diff formula, counts of the real
 * HH-RLHF harmless-base test split against tiktoken's (fixture made by
 * tools/make_qdiff_fixture.py), malformed and strict input, per-subset
 * output, and a data set with no usable record. One rank here;
 * tests/cli/qdiff_mpi.sh covers several. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "io/h5.h"
#include "stages/qdiff.h"
#include "test_util.h"

static char g_dir[] = "/tmp/deft_test_qdiff_XXXXXX";

static void test_sides(void)
{
    int8_t s[4];
    char *resp[4] = {"a", "b", "c", "d"};
    size_t len[4] = {1, 1, 1, 1};
    pref_record_t r = {.n_resp = 2, .resp = resp, .resp_len = len};
    qdiff_sides(&r, 0.1, s);
    CHECK(s[0] == 1 && s[1] == -1);
    double pair_rw[2] = {-1.0, 2.0};  /* a pair counts by rank whatever its rewards */
    r.reward = pair_rw;
    qdiff_sides(&r, 0.1, s);
    CHECK(s[0] == 1 && s[1] == -1);

    r.n_resp = 4;
    r.reward = NULL;
    qdiff_sides(&r, 0.1, s);
    CHECK(s[0] == 1 && s[1] == 0 && s[2] == 0 && s[3] == -1);
    double rw[4] = {3.0, 2.95, 1.0, 0.0};  /* r' = 1, 0.983, 0.333, 0 */
    r.reward = rw;
    qdiff_sides(&r, 0.1, s);
    CHECK(s[0] == 1 && s[1] == 1 && s[2] == 0 && s[3] == -1);
    qdiff_sides(&r, 0.0, s);
    CHECK(s[0] == 1 && s[1] == 0 && s[2] == 0 && s[3] == -1);
    qdiff_sides(&r, 0.4, s);
    CHECK(s[0] == 1 && s[1] == 1 && s[2] == -1 && s[3] == -1);
    double unsorted[4] = {0.0, 3.0, 2.95, 1.0};  /* keep_file_order: min-max, not ends */
    r.reward = unsorted;
    qdiff_sides(&r, 0.1, s);
    CHECK(s[0] == -1 && s[1] == 1 && s[2] == 1 && s[3] == 0);
    double edge[3] = {10.0, 9.0, 1.0};  /* r' = 1, 8/9, 0 */
    double exact[3] = {10.0, 9.0, 0.0};  /* r' = 0.9 = 1 - delta: inclusive */
    r.n_resp = 3;
    r.reward = edge;
    qdiff_sides(&r, 0.1, s);
    CHECK(s[0] == 1 && s[1] == 0 && s[2] == -1);
    r.reward = exact;
    qdiff_sides(&r, 0.1, s);
    CHECK(s[0] == 1 && s[1] == 1 && s[2] == -1);
    double tie[3] = {1.0, 1.0, 1.0};
    r.reward = tie;
    qdiff_sides(&r, 0.1, s);
    CHECK(s[0] == 0 && s[1] == 0 && s[2] == 0);
}

static void test_compute(void)
{
    int64_t pos[4] = {2, 0, 1, 1}, neg[4] = {0, 3, 1, 0}, zero[4] = {0};
    double q[4] = {7, 7, 7, 7};
    deft_err_t err = {0};
    CHECK(qdiff_compute(pos, neg, 4, q, "x", &err) == DEFT_OK);
    CHECK(q[0] == 0.5 && q[1] == -0.75 && q[2] == 0.0 && q[3] == 0.25);
    CHECK(qdiff_compute(pos, zero, 4, q, "subset b", &err) == DEFT_ERR_DATA);
    CHECK_MSG(strstr(err.msg, "subset b") && strstr(err.msg, "negative"), "%s", err.msg);
    CHECK(qdiff_compute(zero, neg, 4, q, "x", &err) == DEFT_ERR_DATA);
    CHECK_MSG(strstr(err.msg, "no positive"), "%s", err.msg);
    CHECK(q[0] == 0.5);  /* untouched on error */
}

static json_t *load_gz_json(const char *path)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return NULL;
    strbuf_t sb = {0};
    char buf[65536];
    int n;
    while ((n = gzread(gz, buf, sizeof buf)) > 0)
        sb_append(&sb, buf, (size_t)n);
    gzclose(gz);
    json_t *j = json_loadb(sb.data, sb.len, 0, NULL);
    sb_free(&sb);
    return j;
}

/* Expected sparse counts [[id, n], ...] into a dense [V] array. */
static int64_t *dense_counts(const json_t *pairs, size_t V)
{
    int64_t *c = calloc(V, sizeof *c);
    size_t i;
    json_t *p;
    json_array_foreach(pairs, i, p) {
        json_int_t id = json_integer_value(json_array_get(p, 0));
        if (id >= 0 && (size_t)id < V)
            c[id] = json_integer_value(json_array_get(p, 1));
    }
    return c;
}

static int run(const data_source_t *src, int nsrc, const tokenizer_t *tok, const char *tok_path,
               bool per_subset, bool strict, const char *out, deft_err_t *err)
{
    qdiff_opts_t o = {.src = src, .nsrc = nsrc, .tok = tok, .tok_path = tok_path,
                      .delta = 0.1, .per_subset = per_subset, .strict = strict, .top = 5,
                      .out = out, .version = "test"};
    return qdiff_run(&o, comm_world(), err);
}

static void test_hh_reference(void)
{
    deft_err_t err = {0};
    tokenizer_t *tok = NULL;
    const char *tok_path = "data/llama3/tokenizer.model";
    CHECK_MSG(tok_load(&tok, tok_path, &err) == DEFT_OK, "%s", err.msg);
    json_t *want = load_gz_json("tests/fixtures/qdiff/hh_harmless_counts.json.gz");
    CHECK(want != NULL);
    if (!tok || !want) {
        tok_free(tok);
        json_decref(want);
        return;
    }
    char out[256];
    snprintf(out, sizeof out, "%s/hh.h5", g_dir);
    data_source_t src = {"data/hh-rlhf/harmless-base-test.jsonl.gz", NULL, NULL};
    CHECK_MSG(run(&src, 1, tok, tok_path, false, false, out, &err) == DEFT_OK, "%s", err.msg);

    h5_file_t *f = NULL;
    CHECK_MSG(h5_open(&f, out, &err) == DEFT_OK, "%s", err.msg);
    if (!f) {
        tok_free(tok);
        json_decref(want);
        return;
    }
    int64_t *pos = NULL, *neg = NULL, v = 0;
    double *q = NULL;
    size_t V = 0, n2 = 0, n3 = 0;
    CHECK(h5_read_i64(f, "/counts/positive", &pos, &V, &err) == DEFT_OK);
    CHECK(h5_read_i64(f, "/counts/negative", &neg, &n2, &err) == DEFT_OK);
    CHECK(h5_read_f64(f, "/qdiff", &q, &n3, &err) == DEFT_OK);
    CHECK(V == 128256 && n2 == V && n3 == V);
    CHECK((json_int_t)V == json_integer_value(json_object_get(want, "vocab_size")));
    int64_t *wpos = dense_counts(json_object_get(want, "positive"), V);
    int64_t *wneg = dense_counts(json_object_get(want, "negative"), V);
    size_t diff = 0, first = V;
    for (size_t i = 0; i < V && pos && neg; i++)
        if (pos[i] != wpos[i] || neg[i] != wneg[i]) {
            diff++;
            first = first < i ? first : i;
        }
    CHECK_MSG(diff == 0, "%zu ids differ from tiktoken's counts, first id %zu: deft %lld/%lld, "
              "tiktoken %lld/%lld", diff, first, first < V ? (long long)pos[first] : 0,
              first < V ? (long long)neg[first] : 0, first < V ? (long long)wpos[first] : 0,
              first < V ? (long long)wneg[first] : 0);

    CHECK(h5_get_attr_i64(f, "/", "records_used", &v, &err) == DEFT_OK &&
          v == json_integer_value(json_object_get(want, "records_used")));
    CHECK(h5_get_attr_i64(f, "/", "records_read", &v, &err) == DEFT_OK && v == 2312);
    CHECK(h5_get_attr_i64(f, "/", "skipped_empty_response", &v, &err) == DEFT_OK && v == 4);
    CHECK(h5_get_attr_i64(f, "/", "skipped_invalid_json", &v, &err) == DEFT_OK && v == 0);
    CHECK(h5_get_attr_i64(f, "/", "tokens_positive", &v, &err) == DEFT_OK &&
          v == json_integer_value(json_object_get(want, "tokens_positive")));
    CHECK(h5_get_attr_i64(f, "/", "tokens_negative", &v, &err) == DEFT_OK &&
          v == json_integer_value(json_object_get(want, "tokens_negative")));
    char *s = NULL;
    CHECK(h5_get_attr_str(f, "/", "tokenizer_sha256", &s, &err) == DEFT_OK && s &&
          strlen(s) == 64);
    free(s);

    /* sum(Q_diff) = 1 - 1 = 0: the identity scoring relies on. */
    double sum = 0, qmax = 0;
    for (size_t i = 0; i < V && q; i++) {
        sum += q[i];
        qmax = q[i] > qmax ? q[i] : qmax;
    }
    CHECK_MSG(fabs(sum) < 1e-12, "sum %.3g", sum);
    CHECK(qmax > 0);
    double *q2 = NULL;
    int32_t V2 = 0;
    CHECK(qdiff_read(out, NULL, &q2, &V2, &err) == DEFT_OK && V2 == (int32_t)V);
    CHECK(q2 && q && !memcmp(q, q2, V * sizeof *q));
    free(q2);
    CHECK(qdiff_read(out, "harmless-base", &q2, &V2, &err) == DEFT_ERR_DATA && !q2);
    free(q2);
    h5_close(f);
    unlink(out);
    free(pos);
    free(neg);
    free(q);
    free(wpos);
    free(wneg);
    json_decref(want);
    tok_free(tok);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

#define GOOD(h, a, b) "{\"chosen\": \"\\n\\nHuman: " h "\\n\\nAssistant: " a "\", " \
                      "\"rejected\": \"\\n\\nHuman: " h "\\n\\nAssistant: " b "\"}\n"

static void test_malformed_and_subsets(void)
{
    deft_err_t err = {0};
    tokenizer_t *tok = NULL;
    const char *tok_path = "data/llama3/small/tiktoken_small.model";
    CHECK_MSG(tok_load(&tok, tok_path, &err) == DEFT_OK, "%s", err.msg);
    if (!tok)
        return;
    char a[256], b[256], bad[256], out[256];
    snprintf(a, sizeof a, "%s/a.jsonl", g_dir);
    snprintf(b, sizeof b, "%s/b.jsonl", g_dir);
    snprintf(bad, sizeof bad, "%s/bad.jsonl", g_dir);
    snprintf(out, sizeof out, "%s/q.h5", g_dir);
    write_file(a, GOOD("hi", "I cannot help with that.", "Sure, here is how.")
                  "{not json\n"
                  GOOD("x", "same", "same")
                  "{\"chosen\": \"only one side\"}\n"
                  GOOD("y", "  ", "something")
                  GOOD("why", "Sorry, no.", "Yes, any time."));
    write_file(b, GOOD("q", "No, I won't.", "Yes.") GOOD("r", "I'm sorry.", "Sure thing!"));
    write_file(bad, "[1, 2]\n{\"chosen\": 1, \"rejected\": 2}\n");

    /* Unusable lines are counted by reason, the run goes on. */
    data_source_t src[3] = {{a, NULL, NULL}, {b, "second", NULL}, {bad, "broken", NULL}};
    CHECK_MSG(run(src, 2, tok, tok_path, true, false, out, &err) == DEFT_OK, "%s", err.msg);
    h5_file_t *f = NULL;
    CHECK(h5_open(&f, out, &err) == DEFT_OK);
    if (f) {
        int64_t v = -1, used = 0, sum_sub = 0, sum_glob = 0;
        CHECK(h5_get_attr_i64(f, "/", "records_read", &v, &err) == DEFT_OK && v == 8);
        CHECK(h5_get_attr_i64(f, "/", "records_used", &used, &err) == DEFT_OK && used == 4);
        CHECK(h5_get_attr_i64(f, "/", "skipped_invalid_json", &v, &err) == DEFT_OK && v == 1);
        CHECK(h5_get_attr_i64(f, "/", "skipped_identical", &v, &err) == DEFT_OK && v == 1);
        CHECK(h5_get_attr_i64(f, "/", "skipped_missing_field", &v, &err) == DEFT_OK && v == 1);
        CHECK(h5_get_attr_i64(f, "/", "skipped_empty_response", &v, &err) == DEFT_OK &&
              v == 1);
        CHECK(h5_exists(f, "/subsets/a/qdiff", NULL));
        CHECK(h5_exists(f, "/subsets/second/qdiff", NULL));
        CHECK(h5_get_attr_i64(f, "/subsets/second", "records_counted", &v, &err) == DEFT_OK &&
              v == 2);
        /* Per-subset counts add up to the global ones. */
        const char *sides[2] = {"positive", "negative"};
        for (int k = 0; k < 2; k++) {
            char p[128];
            int64_t *g = NULL, *x = NULL, *y = NULL;
            size_t n = 0, nx = 0, ny = 0;
            snprintf(p, sizeof p, "/counts/%s", sides[k]);
            h5_read_i64(f, p, &g, &n, &err);
            snprintf(p, sizeof p, "/subsets/a/counts/%s", sides[k]);
            h5_read_i64(f, p, &x, &nx, &err);
            snprintf(p, sizeof p, "/subsets/second/counts/%s", sides[k]);
            h5_read_i64(f, p, &y, &ny, &err);
            bool ok = g && x && y && n == nx && n == ny;
            for (size_t i = 0; ok && i < n; i++) {
                ok = g[i] == x[i] + y[i];
                sum_glob += g[i];
                sum_sub += x[i] + y[i];
            }
            CHECK(ok && sum_glob > 0 && sum_glob == sum_sub);
            free(g);
            free(x);
            free(y);
        }
        double *q = NULL;
        int32_t V = 0;
        CHECK(qdiff_read(out, "second", &q, &V, &err) == DEFT_OK && V == tok_vocab_size(tok));
        free(q);
        h5_close(f);
    }
    unlink(out);

    /* Strict: the first unusable line fails the run with file:line. */
    CHECK(run(src, 1, tok, tok_path, false, true, out, &err) == DEFT_ERR_DATA);
    char where[300];
    snprintf(where, sizeof where, "%s:2", a);
    CHECK_MSG(strstr(err.msg, where) != NULL, "%s", err.msg);
    CHECK(access(out, F_OK) != 0);

    /* Nothing usable at all: both sides empty, no Q_diff, no file. */
    CHECK(run(&src[2], 1, tok, tok_path, false, false, out, &err) == DEFT_ERR_DATA);
    CHECK_MSG(strstr(err.msg, "undefined") != NULL, "%s", err.msg);
    CHECK(access(out, F_OK) != 0);

    /* A subset with nothing usable next to good ones: no /qdiff there (the
     * readers name subsets from the records they keep, so it has no group). */
    CHECK_MSG(run(src, 3, tok, tok_path, true, false, out, &err) == DEFT_OK, "%s", err.msg);
    CHECK(h5_open(&f, out, &err) == DEFT_OK);
    if (f) {
        CHECK(!h5_exists(f, "/subsets/broken/qdiff", NULL));
        CHECK(h5_exists(f, "/qdiff", NULL) && h5_exists(f, "/subsets/second/qdiff", NULL));
        h5_close(f);
    }
    double *q = NULL;
    int32_t V = 0;
    CHECK(qdiff_read(out, "broken", &q, &V, &err) == DEFT_ERR_DATA);
    unlink(out);

    /* A missing file: a clear error naming it. */
    data_source_t missing = {"/nonexistent/deft/data.jsonl", NULL, NULL};
    int code = run(&missing, 1, tok, tok_path, false, false, out, &err);
    CHECK(code == DEFT_ERR_IO);
    CHECK_MSG(strstr(err.msg, "/nonexistent/deft/data.jsonl") != NULL, "%s", err.msg);

    unlink(a);
    unlink(b);
    unlink(bad);
    tok_free(tok);
}

int main(int argc, char **argv)
{
    deft_err_t err = {0};
    CHECK(comm_init(&argc, &argv, &err) == DEFT_OK);
    CHECK(mkdtemp(g_dir) != NULL);
    test_sides();
    test_compute();
    test_malformed_and_subsets();
    test_hh_reference();
    rmdir(g_dir);
    comm_finalize();
    TEST_DONE();
}
