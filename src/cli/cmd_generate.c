/* deft generate: complete prompts with a model and its tokenizer. Greedy
 * unless a temperature is given; nucleus sampling with top_p; the seed
 * makes sampling repeatable. Prints each prompt and its completion, or
 * with --ids the prompt's and the new tokens' ids as a JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend_select.h"
#include "cli/commands.h"
#include "config/config.h"
#include "model/llama.h"
#include "tok/tokenizer.h"
#include "util/log.h"

static void print_ids(const char *key, const int32_t *ids, int n)
{
    printf("\"%s\": [", key);
    for (int i = 0; i < n; i++)
        printf(i ? ", %d" : "%d", ids[i]);
    putchar(']');
}

/* The model's end-of-sequence ids (config.json), else the tokenizer's. */
static int eos_ids(const llama_model_t *m, const tokenizer_t *tok, int32_t *eos)
{
    int n = 0;
    for (int i = 0; i < m->cfg.n_eos; i++)
        eos[n++] = m->cfg.eos_token_ids[i];
    if (n == 0 && tok_eos_id(tok) >= 0)
        eos[n++] = tok_eos_id(tok);
    return n;
}

static int complete_one(llama_model_t *m, const tokenizer_t *tok, const cfg_t *cfg,
                        const char *prompt, deft_err_t *err)
{
    tok_ids_t in = {0};
    /* BOS first, as Hugging Face tokenizers of Llama models add it */
    unsigned flags = tok_bos_id(tok) >= 0 ? TOK_BOS : 0;
    int rc = tok_encode(tok, prompt, strlen(prompt), flags, &in, err);
    int max_new = (int)cfg_int(cfg, "max_new_tokens");
    if (!rc && (int64_t)in.n + max_new > m->cfg.max_position_embeddings)
        rc = deft_fail(err, DEFT_ERR_USAGE, "generate: prompt of %zu tokens + %d new exceeds "
                       "the model's %d positions", in.n, max_new,
                       m->cfg.max_position_embeddings);
    for (size_t i = 0; !rc && i < in.n; i++)
        if (in.ids[i] >= m->cfg.vocab_size)
            rc = deft_fail(err, DEFT_ERR_DATA, "generate: token %d of the prompt is outside "
                           "the model's vocabulary of %d (tokenizer and model disagree)",
                           in.ids[i], m->cfg.vocab_size);
    int32_t eos[8];
    int n_eos = eos_ids(m, tok, eos), n_out = 0;
    /* out: [max_new] the new tokens only */
    int32_t *out = xmalloc(sizeof(int32_t) * (max_new + 1));
    if (!rc)
        rc = llama_generate(m, in.ids, (int)in.n, max_new, (float)cfg_float(cfg, "temperature"),
                            (float)cfg_float(cfg, "top_p"), (uint64_t)cfg_int(cfg, "seed"), eos,
                            n_eos, out, &n_out, err);
    if (!rc && cfg_bool(cfg, "ids")) {
        putchar('{');
        print_ids("prompt_ids", in.ids, (int)in.n);
        fputs(", ", stdout);
        print_ids("ids", out, n_out);
        puts("}");
    } else if (!rc) {
        /* decode prompt and completion together, so that a word split across
         * the boundary reads right; BOS and a final EOS are not text */
        tok_ids_t all = {0};
        for (size_t i = (flags & TOK_BOS) ? 1 : 0; i < in.n; i++)
            tok_ids_push(&all, in.ids[i]);
        int keep = n_out;
        for (int e = 0; keep > 0 && e < n_eos; e++)
            if (out[keep - 1] == eos[e])
                keep--;
        for (int i = 0; i < keep; i++)
            tok_ids_push(&all, out[i]);
        strbuf_t text = {0};
        rc = tok_decode(tok, all.ids, all.n, &text, err);
        if (!rc) {
            fwrite(text.data, 1, text.len, stdout);
            putchar('\n');
        }
        sb_free(&text);
        tok_ids_free(&all);
    }
    if (!rc && fflush(stdout))
        rc = deft_fail(err, DEFT_ERR_IO, "stdout: write failed");
    free(out);
    tok_ids_free(&in);
    return rc;
}

static int run_generate(const cfg_t *cfg, deft_err_t *err)
{
    const char *dir = cfg_str(cfg, "model");
    if (!dir)
        return deft_fail(err, DEFT_ERR_USAGE, "generate: give --model DIR (a Hugging Face "
                         "folder)");
    if (cfg_list_len(cfg, "prompt") < 1)
        return deft_fail(err, DEFT_ERR_USAGE, "generate: give --prompt TEXT");
    const char *tok_path = cfg_str(cfg, "tokenizer") ? cfg_str(cfg, "tokenizer") : dir;
    tokenizer_t *tok = NULL;
    const backend_t *be = NULL;
    llama_model_t m;
    int rc = backend_select(cfg_str(cfg, "backend"), &be, err);
    if (rc || (rc = tok_load(&tok, tok_path, err)))
        return rc;
    if ((rc = llama_load(&m, dir, be, err))) {
        tok_free(tok);
        return rc;
    }
    for (int i = 0; !rc && i < cfg_list_len(cfg, "prompt"); i++)
        rc = complete_one(&m, tok, cfg, cfg_list_at(cfg, "prompt", i), err);
    llama_free(&m);
    tok_free(tok);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    deft_err_t err = {0};
    cfg_t *cfg = NULL;
    int rc = cfg_parse(&cfg, "generate", argc, argv, &err);
    if (rc == DEFT_OK)
        rc = run_generate(cfg, &err);
    if (rc && rc != DEFT_HELP)
        log_error("deft generate: %s", cli_message("generate", err.msg));
    cfg_free(cfg);
    return deft_exit_status(rc);
}
