/* deft logprobs: per-token log-probabilities of token sequences under a
 * model. Reads JSON lines {"ids": [...]} on stdin and writes, in the same
 * order, {"logprobs": [...]} on stdout: log p(ids[t] | ids[<t]) for
 * t = 1 .. n-1 (the first token has no prediction and is left out).
 * Sequences are scored batch_size at a time, right-padded. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend_select.h"
#include "cli/commands.h"
#include "config/config.h"
#include "model/llama.h"
#include "util/log.h"

typedef struct {
    int32_t **ids;   /* [n][len[i]] token ids of each pending sequence */
    int32_t *len;    /* [n] */
    int n;
} batch_t;

/* One line {"ids": [...]}: ids must be integers in [0, V). */
static int parse_line(const char *text, size_t len, long lineno, int V, int max_len,
                      int32_t **ids, int32_t *n, deft_err_t *err)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    if (!root)
        return deft_fail(err, DEFT_ERR_FORMAT, "stdin:%ld:%d: malformed JSON: %s", lineno,
                         je.column, je.text);
    json_t *a = json_object_get(root, "ids");
    int rc = DEFT_OK;
    if (!json_is_array(a)) {
        rc = deft_fail(err, DEFT_ERR_FORMAT, "stdin:%ld: field 'ids' missing or not a list",
                       lineno);
    } else if ((int64_t)json_array_size(a) > max_len) {
        rc = deft_fail(err, DEFT_ERR_DATA, "stdin:%ld: field 'ids' has %zu tokens, more than "
                       "the model's %d positions", lineno, json_array_size(a), max_len);
    } else {
        *n = (int32_t)json_array_size(a);
        *ids = xmalloc(sizeof(int32_t) * (*n + 1));
        for (int32_t i = 0; i < *n && !rc; i++) {
            json_t *v = json_array_get(a, i);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= V)
                rc = deft_fail(err, DEFT_ERR_DATA, "stdin:%ld: ids[%d] is not a token id in "
                               "[0, %d)", lineno, i, V);
            else
                (*ids)[i] = (int32_t)json_integer_value(v);
        }
        if (rc) {
            free(*ids);
            *ids = NULL;
        }
    }
    json_decref(root);
    return rc;
}

/* Scores the pending sequences and prints one line each, in order. */
static int flush_batch(llama_model_t *m, batch_t *b, deft_err_t *err)
{
    int T = 1;
    for (int i = 0; i < b->n; i++)
        T = b->len[i] > T ? b->len[i] : T;
    /* ids: [n, T] right-padded with 0; out: [n, T] */
    int32_t *ids = xcalloc((size_t)b->n * T, sizeof(int32_t));
    float *out = xcalloc((size_t)b->n * T, sizeof(float));
    for (int i = 0; i < b->n; i++)
        memcpy(ids + (size_t)i * T, b->ids[i], sizeof(int32_t) * b->len[i]);
    int rc = llama_logprobs(m, ids, b->len, b->n, T, out, err);
    for (int i = 0; i < b->n && !rc; i++) {
        fputs("{\"logprobs\": [", stdout);
        for (int t = 1; t < b->len[i]; t++)
            printf(t > 1 ? ", %.9g" : "%.9g", out[(size_t)i * T + t]);
        fputs("]}\n", stdout);
    }
    if (!rc && fflush(stdout))
        rc = deft_fail(err, DEFT_ERR_IO, "stdout: write failed");
    for (int i = 0; i < b->n; i++)
        free(b->ids[i]);
    b->n = 0;
    free(ids);
    free(out);
    return rc;
}

static int score_stdin(llama_model_t *m, int batch_size, deft_err_t *err)
{
    batch_t b = {xcalloc((size_t)batch_size, sizeof(int32_t *)),
                 xcalloc((size_t)batch_size, sizeof(int32_t)), 0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, nseq = 0;
    int rc = DEFT_OK;
    progress_t prog;
    progress_start(&prog, "logprobs", "sequences", 0);
    while (!rc && (len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)len)
            continue;
        rc = parse_line(line, (size_t)len, lineno, m->cfg.vocab_size,
                        m->cfg.max_position_embeddings, &b.ids[b.n], &b.len[b.n], err);
        if (!rc && ++b.n == batch_size) {
            nseq += b.n;
            rc = flush_batch(m, &b, err);
            progress_update(&prog, nseq, 0);
        }
    }
    if (!rc && b.n > 0) {
        nseq += b.n;
        rc = flush_batch(m, &b, err);
    }
    for (int i = 0; i < b.n; i++)
        free(b.ids[i]);
    if (!rc)
        progress_end(&prog, nseq, 0);
    free(line);
    free(b.ids);
    free(b.len);
    return rc;
}

static int run_logprobs(const cfg_t *cfg, deft_err_t *err)
{
    const char *dir = cfg_str(cfg, "model");
    if (!dir)
        return deft_fail(err, DEFT_ERR_USAGE, "logprobs: give --model DIR (a Hugging Face "
                         "folder)");
    const backend_t *be = NULL;
    llama_model_t m;
    int rc = backend_select(cfg_str(cfg, "backend"), &be, err);
    if (rc || (rc = llama_load(&m, dir, be, err)))
        return rc;
    rc = score_stdin(&m, (int)cfg_int(cfg, "batch_size"), err);
    llama_free(&m);
    return rc;
}

int cmd_logprobs(int argc, char **argv)
{
    deft_err_t err = {0};
    cfg_t *cfg = NULL;
    int rc = cfg_parse(&cfg, "logprobs", argc, argv, &err);
    if (rc == DEFT_OK)
        rc = run_logprobs(cfg, &err);
    if (rc && rc != DEFT_HELP)
        log_error("deft logprobs: %s", cli_message("logprobs", err.msg));
    cfg_free(cfg);
    return deft_exit_status(rc);
}
