/* Tokenizer throughput on one core: every chosen and rejected dialogue of
 * HH-RLHF harmless-base test, encoded as plain text one dialogue per call
 * (the granularity of the stages), best of several passes. bench/tokenizer.sh
 * runs it beside tiktoken on the same strings and prints the ratio.
 *
 * usage: bench_tokenizer [TOKENIZER [DATA.jsonl.gz [PASSES]]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <zlib.h>

#include "tok/tokenizer.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    char **text;
    size_t *len;
    size_t n, bytes;
} texts_t;

static void texts_add(texts_t *t, json_t *v)
{
    t->text = xrealloc(t->text, (t->n + 1) * sizeof *t->text);
    t->len = xrealloc(t->len, (t->n + 1) * sizeof *t->len);
    t->len[t->n] = json_string_length(v);
    t->text[t->n++] = xstrndup(json_string_value(v), json_string_length(v));
    t->bytes += json_string_length(v);
}

static int texts_load(texts_t *t, const char *path)
{
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_tokenizer: cannot open %s\n", path);
        return 1;
    }
    strbuf_t sb = {0};
    char buf[1 << 16];
    int n;
    while ((n = gzread(f, buf, sizeof buf)) > 0)
        sb_append(&sb, buf, (size_t)n);
    gzclose(f);
    sb_append(&sb, "", 1);
    for (char *p = sb.data, *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl)
            nl = p + strlen(p);
        json_error_t jerr;
        json_t *rec = json_loadb(p, (size_t)(nl - p), 0, &jerr);
        if (rec) {
            texts_add(t, json_object_get(rec, "chosen"));
            texts_add(t, json_object_get(rec, "rejected"));
            json_decref(rec);
        }
        if (!*nl)
            break;
    }
    sb_free(&sb);
    return 0;
}

int main(int argc, char **argv)
{
    const char *tok_path = argc > 1 ? argv[1] : "data/llama3/tokenizer.model";
    const char *data = argc > 2 ? argv[2] : "data/hh-rlhf/harmless-base-test.jsonl.gz";
    int passes = argc > 3 ? atoi(argv[3]) : 5;
    tokenizer_t *tok;
    deft_err_t err;
    double t0 = now_s();
    if (tok_load(&tok, tok_path, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    double t_load = now_s() - t0;
    texts_t t = {0};
    if (texts_load(&t, data))
        return 1;
    tok_ids_t ids = {0};
    double best = 1e30;
    size_t n_tokens = 0;
    for (int p = 0; p < passes; p++) {
        n_tokens = 0;
        double s = now_s();
        for (size_t i = 0; i < t.n; i++) {
            ids.n = 0;
            if (tok_encode(tok, t.text[i], t.len[i], 0, &ids, &err)) {
                fprintf(stderr, "bench_tokenizer: text %zu: %s\n", i, err.msg);
                return 1;
            }
            n_tokens += ids.n;
        }
        double dt = now_s() - s;
        if (dt < best)
            best = dt;
    }
    printf("deft      %s: load %.2f s; %zu texts, %.2f MB, %zu tokens; best of %d: %.3f s, "
           "%.2f MB/s, %.2f M tokens/s\n", tok_kind(tok), t_load, t.n, t.bytes / 1e6, n_tokens,
           passes, best, t.bytes / 1e6 / best, n_tokens / 1e6 / best);
    for (size_t i = 0; i < t.n; i++)
        free(t.text[i]);
    free(t.text);
    free(t.len);
    tok_ids_free(&ids);
    tok_free(tok);
    return 0;
}
