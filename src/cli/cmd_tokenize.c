/* deft tokenize: JSONL {"text": ...} on stdin -> {"ids": [...]} on stdout,
 * one output line per input line, in order. Reads the shared `tokenizer` (else the `model`
 * folder) and the `tokenize` section (special, bos, eos). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/commands.h"
#include "config/config.h"
#include "tok/tokenizer.h"

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* snprintf per id would dominate the run time of a fast tokenizer. */
static void append_id(strbuf_t *out, int32_t id, bool comma)
{
    char buf[16], *p = buf + sizeof buf;
    uint32_t v = (uint32_t)id;  // ids are never negative
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (comma) {
        *--p = ' ';
        *--p = ',';
    }
    sb_append(out, p, (size_t)(buf + sizeof buf - p));
}

/* One input line -> one output line appended to out. */
static int tokenize_line(const tokenizer_t *tok, const char *line, size_t len, size_t lineno,
                         unsigned flags, tok_ids_t *ids, strbuf_t *out, deft_err_t *err)
{
    json_error_t jerr;
    json_t *rec = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
    if (!rec)
        return deft_fail(err, DEFT_ERR_FORMAT, "stdin:%zu:%d: %s", lineno, jerr.column,
                         jerr.text);
    json_t *text = json_object_get(rec, "text");
    int rc = DEFT_OK;
    if (!json_is_string(text)) {
        rc = deft_fail(err, DEFT_ERR_FORMAT, "stdin:%zu: field text: %s", lineno,
                       !json_is_object(rec) ? "the line is not a JSON object"
                       : text               ? "expected a string"
                                            : "missing");
    } else {
        ids->n = 0;
        rc = tok_encode(tok, json_string_value(text), json_string_length(text), flags, ids,
                        err);
        if (rc) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            deft_fail(err, rc, "stdin:%zu: field text: %s", lineno, msg);
        }
    }
    json_decref(rec);
    if (rc)
        return rc;
    sb_puts(out, "{\"ids\": [");
    for (size_t i = 0; i < ids->n; i++)
        append_id(out, ids->ids[i], i > 0);
    sb_puts(out, "]}\n");
    return DEFT_OK;
}

static int tokenize_stream(const tokenizer_t *tok, unsigned flags, FILE *in, FILE *outf,
                           deft_err_t *err)
{
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    tok_ids_t ids = {0};
    strbuf_t out = {0};
    int rc = DEFT_OK;
    while (!rc && (n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (is_blank(line, (size_t)n))
            continue;
        rc = tokenize_line(tok, line, (size_t)n, lineno, flags, &ids, &out, err);
        if (out.len && (out.len >= (1 << 16) || rc)) {  // lines before a bad one are written
            fwrite(out.data, 1, out.len, outf);
            out.len = 0;
        }
    }
    if (out.len)
        fwrite(out.data, 1, out.len, outf);
    if (!rc && ferror(in))
        rc = deft_fail(err, DEFT_ERR_IO, "stdin: read error after line %zu", lineno);
    if (fflush(outf) != 0 && !rc)
        rc = deft_fail(err, DEFT_ERR_IO, "stdout: write error");
    free(line);
    tok_ids_free(&ids);
    sb_free(&out);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    deft_err_t err = {0};
    cfg_t *cfg = NULL;
    tokenizer_t *tok = NULL;
    int rc = cfg_parse(&cfg, "tokenize", argc, argv, &err);
    if (rc == DEFT_HELP)
        return 0;
    if (!rc && cfg_npositional(cfg) > 0)
        rc = deft_fail(&err, DEFT_ERR_USAGE, "unexpected argument '%s': the texts come on "
                       "stdin as JSONL {\"text\": ...}", cfg_positional(cfg, 0));
    /* the model folder holds its tokenizer unless one is named */
    const char *tok_path = rc ? NULL : cfg_str(cfg, "tokenizer") ? cfg_str(cfg, "tokenizer")
                                                                 : cfg_str(cfg, "model");
    if (!rc && !tok_path)
        rc = deft_fail(&err, DEFT_ERR_USAGE,
                       "no tokenizer: give --tokenizer PATH (a model folder, tokenizer.json "
                       "or tokenizer.model), --model DIR or `tokenizer:` in the config");
    if (!rc)
        rc = tok_load(&tok, tok_path, &err);
    if (!rc) {
        unsigned flags = (cfg_bool(cfg, "special") ? TOK_SPECIAL : 0) |
                         (cfg_bool(cfg, "bos") ? TOK_BOS : 0) |
                         (cfg_bool(cfg, "eos") ? TOK_EOS : 0);
        rc = tokenize_stream(tok, flags, stdin, stdout, &err);
    }
    if (rc)
        fprintf(stderr, "deft tokenize: %s\n", cli_message("tokenize", err.msg));
    tok_free(tok);
    cfg_free(cfg);
    return deft_exit_status(rc);
}
