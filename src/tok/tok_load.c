/* Loaders: Meta's tiktoken tokenizer.model ("base64(bytes) rank" lines),
 * Hugging Face tokenizer.json (BPE model, byte-level or SentencePiece
 * style), and tokenizer_config.json beside them for BOS/EOS and, for
 * tiktoken models, the special tokens. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tok/tok_internal.h"

// ----------------------------------------------------------------------------
// shared helpers

static int read_file(const char *path, char **out, size_t *len, deft_err_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    strbuf_t sb = {0};
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sb_append(&sb, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        sb_free(&sb);
        return deft_fail(err, DEFT_ERR_IO, "%s: read error", path);
    }
    if (!sb.data)
        sb_append(&sb, "", 0);
    *out = sb.data;
    *len = sb.len;
    return DEFT_OK;
}

/* Grow the per-id arrays to hold ids [0, n). */
/* The largest id a tokenizer file may name. Real vocabularies have at most a
 * few hundred thousand ids; a bound keeps a corrupt file from asking for
 * gigabytes of per-id arrays (or overflowing their growth). */
#define TOK_MAX_IDS (1 << 24)

static void reserve_ids(tokenizer_t *tok, int32_t n)
{
    if (n <= tok->n_ids)
        return;
    if (n > tok->ids_cap) {  // geometric: the tiktoken loader grows one rank at a time
        tok->ids_cap = n < 1024 ? 1024 : n + n / 2;
        tok->piece_off = xrealloc(tok->piece_off, (size_t)tok->ids_cap * sizeof *tok->piece_off);
        tok->piece_len = xrealloc(tok->piece_len, (size_t)tok->ids_cap * sizeof *tok->piece_len);
    }
    for (int32_t i = tok->n_ids; i < n; i++) {
        tok->piece_off[i] = 0;
        tok->piece_len[i] = 0;
    }
    tok->n_ids = n;
}

/* The normalized form of a normalized added token: Hugging Face tokenizers
 * runs the normalizer over the token's content and matches the result, so
 * with Prepend("▁") the token "<unk>" is matched (and decoded) as "▁<unk>". */
static char *normalized_text(const tokenizer_t *tok, const char *name, size_t *len)
{
    strbuf_t sb = {0};
    if (tok->prepend && tok->prepend_when == TOK_PREPEND_ALWAYS && *name)
        sb_puts(&sb, tok->prepend);
    for (const char *c = name; *c; c++)
        if (*c == ' ' && tok->space_repl)
            sb_puts(&sb, tok->space_repl);
        else
            sb_append(&sb, c, 1);
    sb_append(&sb, "", 1);
    *len = sb.len - 1;
    return sb.data;
}

static void add_token(tokenizer_t *tok, int32_t id, const char *name, bool special,
                      bool normalized)
{
    reserve_ids(tok, id + 1);
    size_t len = strlen(name);
    char *text = tok->in_normalizer && normalized ? normalized_text(tok, name, &len)
                                                  : xstrdup(name);
    if (!tok->piece_len[id])
        tok_set_piece(tok, id, name, strlen(name));
    tok->added = xrealloc(tok->added, (size_t)(tok->n_added + 1) * sizeof *tok->added);
    tok->added[tok->n_added++] = (tok_added_t){id, xstrdup(name), text, len, special, normalized};
    if (len)
        tok->added_first[(unsigned char)text[0]] = true;
}

static void set_byte_ids(tokenizer_t *tok)
{
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        tok->byte_id[b] = tok_strmap_get(tok, &c, 1);
    }
}

// ----------------------------------------------------------------------------
// tiktoken tokenizer.model

static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

static int base64_decode(const char *s, size_t n, char *out, size_t *out_len)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=')
            break;
        int v = base64_value((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[m++] = (char)(acc >> bits);
        }
    }
    *out_len = m;
    return 0;
}

int tok_load_tiktoken(tokenizer_t *tok, const char *path, deft_err_t *err)
{
    char *text;
    size_t len;
    int rc = read_file(path, &text, &len, err);
    if (rc)
        return rc;
    tok->kind = TOK_KIND_BYTELEVEL;
    tok->ignore_merges = true;  // tiktoken: a piece in the vocabulary is one token
    size_t line = 0;
    char tmp[1024];
    for (char *p = text, *end = text + len; p < end;) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        line++;
        char *sp = memchr(p, ' ', (size_t)(eol - p));
        if (eol == p) {  // blank line
            p = eol + 1;
            continue;
        }
        size_t n;
        char *rend;
        long rank = sp ? strtol(sp + 1, &rend, 10) : -1;
        if (!sp || (size_t)(sp - p) > 4 * sizeof tmp / 3 || rank < 0 || rank >= TOK_MAX_IDS ||
            (rend != eol && !(rend + 1 == eol && *rend == '\r')) ||
            base64_decode(p, (size_t)(sp - p), tmp, &n) || n == 0) {
            /* the message quotes the line, so it is made before the text is freed */
            deft_fail(err, DEFT_ERR_FORMAT,
                      "%s:%zu: expected 'base64(token bytes) rank' with a rank below %d, "
                      "got '%.*s'", path, line, TOK_MAX_IDS,
                      (int)(eol - p > 80 ? 80 : eol - p), p);
            free(text);
            return DEFT_ERR_FORMAT;
        }
        reserve_ids(tok, (int32_t)rank + 1);
        if (tok->piece_len[rank]) {
            free(text);
            return deft_fail(err, DEFT_ERR_FORMAT, "%s:%zu: rank %ld appears twice", path, line,
                             rank);
        }
        tok_set_piece(tok, (int32_t)rank, tmp, n);
        p = eol + 1;
    }
    free(text);
    int32_t n_model = tok->n_ids;
    if (n_model == 0)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: no tokens", path);
    tok_strmap_build(tok, n_model);
    set_byte_ids(tok);
    for (int b = 0; b < 256; b++)
        if (tok->byte_id[b] < 0)
            return deft_fail(err, DEFT_ERR_FORMAT,
                             "%s: byte 0x%02x has no token; a byte-level vocabulary needs all "
                             "256", path, b);
    /* tiktoken merges the adjacent pair whose concatenation has the lowest
     * rank. Enumerating every split of every token into two tokens gives the
     * same rule as a pair table, which the merge loop shares with
     * tokenizer.json. */
    tok_pairmap_init(&tok->merges, (size_t)n_model * 4);
    for (int32_t id = 0; id < n_model; id++) {
        const char *s = tok_piece_ptr(tok, id);
        uint32_t n = tok->piece_len[id];
        for (uint32_t k = 1; k < n; k++) {
            int32_t l = tok_strmap_get(tok, s, k), r = tok_strmap_get(tok, s + k, n - k);
            if (l >= 0 && r >= 0)
                tok_pairmap_put(&tok->merges, l, r, id, id);
        }
    }
    return tok_regex_compile(tok, tok_llama3_pattern, "Llama 3 split pattern", err);
}

/* The Llama 3 special tokens, appended after the base vocabulary, in the
 * order of the added_tokens of Meta-Llama-3's tokenizer.json (which matches
 * Meta's llama3 llama/tokenizer.py): used for a tiktoken model with no
 * tokenizer_config.json beside it. Llama 3.1 renamed four reserved slots
 * (finetune_right_pad_id, eom_id, python_tag); its releases ship the config. */
static void add_llama3_specials(tokenizer_t *tok)
{
    static const char *named[] = {
        "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
        "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
        "<|reserved_special_token_4|>", "<|eot_id|>",
    };
    const int n_special = 256;  // Llama 3: 128,000 + 256 = 128,256 ids
    int32_t base = tok->n_ids;
    char name[64];
    for (int i = 0; i < n_special; i++) {
        if (i < (int)DEFT_ARRAY_LEN(named))
            snprintf(name, sizeof name, "%s", named[i]);
        else
            snprintf(name, sizeof name, "<|reserved_special_token_%d|>",
                     i - (int)DEFT_ARRAY_LEN(named) + 5);
        add_token(tok, base + i, name, true, false);
    }
}

// ----------------------------------------------------------------------------
// Hugging Face tokenizer.json

/* GPT-2's byte-level alphabet: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes for code points 256.. in byte order. */
static void bytelevel_table(int16_t cp_to_byte[512])
{
    for (int i = 0; i < 512; i++)
        cp_to_byte[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        cp_to_byte[printable ? b : 256 + extra++] = (int16_t)b;
    }
}

/* Decode one UTF-8 code point of s[0..n); returns its length, 0 if invalid. */
static int utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    int len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (!len || (size_t)len > n)
        return 0;
    uint32_t c = s[0] & (0x7f >> len);
    for (int i = 1; i < len; i++)
        c = c << 6 | (s[i] & 0x3f);
    *cp = c;
    return len;
}

static int bytelevel_decode(const int16_t cp_to_byte[512], const char *s, char *out,
                            size_t *out_len)
{
    size_t n = strlen(s), m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (!k || cp >= 512 || cp_to_byte[cp] < 0)
            return -1;
        out[m++] = (char)cp_to_byte[cp];
        i += (size_t)k;
    }
    *out_len = m;
    return 0;
}

static const char *jstr(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static bool jtrue(json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key));
}

/* The Split + ByteLevel pre-tokenizer of byte-level BPE (Llama 3). */
static int parse_bytelevel_pretok(tokenizer_t *tok, json_t *pre, const char *path,
                                  deft_err_t *err)
{
    json_t *list = json_object_get(pre, "pretokenizers");
    const char *pattern = NULL;
    bool ok = json_is_array(list);
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p) {
        const char *type = jstr(p, "type");
        if (type && !strcmp(type, "Split")) {
            const char *behavior = jstr(p, "behavior");
            pattern = jstr(json_object_get(p, "pattern"), "Regex");
            ok = ok && pattern && behavior && !strcmp(behavior, "Isolated") &&
                 !jtrue(p, "invert");
        } else if (type && !strcmp(type, "ByteLevel")) {
            ok = ok && !jtrue(p, "add_prefix_space") && !jtrue(p, "use_regex");
        } else {
            ok = false;
        }
    }
    if (!ok || !pattern)
        return deft_fail(err, DEFT_ERR_FORMAT,
                         "%s: field pre_tokenizer: expected Sequence[Split(Regex, Isolated), "
                         "ByteLevel(add_prefix_space false, use_regex false)], as in Llama 3",
                         path);
    return tok_regex_compile(tok, pattern, path, err);
}

/* SentencePiece-style normalizer: Prepend("▁") and Replace(" " -> "▁"). */
static int parse_sp_normalizer(tokenizer_t *tok, json_t *norm, const char *path,
                               deft_err_t *err)
{
    if (!norm || json_is_null(norm))
        return DEFT_OK;
    const char *type = jstr(norm, "type");
    if (type && !strcmp(type, "Sequence")) {
        size_t i;
        json_t *n;
        json_array_foreach(json_object_get(norm, "normalizers"), i, n) {
            int rc = parse_sp_normalizer(tok, n, path, err);
            if (rc)
                return rc;
        }
        return DEFT_OK;
    }
    if (type && !strcmp(type, "Prepend") && jstr(norm, "prepend") && !tok->prepend) {
        tok->prepend = xstrdup(jstr(norm, "prepend"));
        tok->prepend_when = TOK_PREPEND_ALWAYS;
        tok->in_normalizer = true;
        return DEFT_OK;
    }
    const char *from = jstr(json_object_get(norm, "pattern"), "String");
    if (type && !strcmp(type, "Replace") && from && !strcmp(from, " ") &&
        jstr(norm, "content") && !tok->space_repl) {
        tok->space_repl = xstrdup(jstr(norm, "content"));
        tok->in_normalizer = true;
        return DEFT_OK;
    }
    char *dump = json_dumps(norm, JSON_COMPACT);
    deft_fail(err, DEFT_ERR_FORMAT,
              "%s: field normalizer: unsupported step %s (deft implements Prepend and "
              "Replace of \" \")", path, dump ? dump : "?");
    free(dump);
    return DEFT_ERR_FORMAT;
}

/* The Metaspace pre-tokenizer: the newer spelling of the same normalization. */
static int parse_sp_pretok(tokenizer_t *tok, json_t *pre, const char *path, deft_err_t *err)
{
    if (!pre || json_is_null(pre))
        return DEFT_OK;
    const char *type = jstr(pre, "type"), *repl = jstr(pre, "replacement");
    const char *scheme = jstr(pre, "prepend_scheme");
    if (!type || strcmp(type, "Metaspace") || !repl || tok->space_repl || tok->prepend)
        return deft_fail(err, DEFT_ERR_FORMAT,
                         "%s: field pre_tokenizer: expected null or Metaspace for a "
                         "SentencePiece-style BPE (got %s)", path, type ? type : "?");
    tok->space_repl = xstrdup(repl);
    tok->prepend = xstrdup(repl);
    tok->prepend_if_absent = true;
    if (scheme)
        tok->prepend_when = !strcmp(scheme, "first")    ? TOK_PREPEND_FIRST
                            : !strcmp(scheme, "always") ? TOK_PREPEND_ALWAYS
                                                        : TOK_PREPEND_NEVER;
    else  // older files: add_prefix_space
        tok->prepend_when = jtrue(pre, "add_prefix_space") ? TOK_PREPEND_ALWAYS
                                                           : TOK_PREPEND_NEVER;
    json_t *split = json_object_get(pre, "split");
    tok->split_on_repl = !split || json_is_true(split);
    return DEFT_OK;
}

/* SentencePiece-style decoder: Replace("▁" -> " "), ByteFallback, Fuse,
 * Strip(" ", 1, 0); or the Metaspace decoder, which does the same. */
static int parse_sp_decoder(tokenizer_t *tok, json_t *dec, const char *path, deft_err_t *err)
{
    const char *type = jstr(dec, "type");
    if (!dec || json_is_null(dec))
        return DEFT_OK;
    if (type && !strcmp(type, "Sequence")) {
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(dec, "decoders"), i, d) {
            int rc = parse_sp_decoder(tok, d, path, err);
            if (rc)
                return rc;
        }
        return DEFT_OK;
    }
    if (type && (!strcmp(type, "ByteFallback") || !strcmp(type, "Fuse")))
        return DEFT_OK;  // byte tokens always decode to their byte; ids always fuse
    const char *from = jstr(json_object_get(dec, "pattern"), "String"), *to = jstr(dec, "content");
    if (type && !strcmp(type, "Replace") && from && to && !tok->decode_from) {
        tok->decode_from = xstrdup(from);
        tok->decode_to = xstrdup(to);
        return DEFT_OK;
    }
    if (type && !strcmp(type, "Strip") && to && !strcmp(to, " ") &&
        json_integer_value(json_object_get(dec, "stop")) == 0) {
        tok->decode_strip = (int)json_integer_value(json_object_get(dec, "start"));
        return DEFT_OK;
    }
    const char *repl = jstr(dec, "replacement"), *scheme = jstr(dec, "prepend_scheme");
    if (type && !strcmp(type, "Metaspace") && repl && !tok->decode_from) {
        tok->decode_from = xstrdup(repl);
        tok->decode_to = xstrdup(" ");
        tok->decode_strip = scheme ? strcmp(scheme, "never") != 0 : jtrue(dec, "add_prefix_space");
        return DEFT_OK;
    }
    return deft_fail(err, DEFT_ERR_FORMAT, "%s: field decoder: unsupported type %s", path,
                     type ? type : "?");
}

static int load_vocab(tokenizer_t *tok, json_t *vocab, const char *path, deft_err_t *err)
{
    int16_t cp_to_byte[512];
    bytelevel_table(cp_to_byte);
    const char *key;
    json_t *v;
    int32_t n_model = 0;
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= TOK_MAX_IDS)
            return deft_fail(err, DEFT_ERR_FORMAT, "%s: field model.vocab[\"%s\"]: bad id", path,
                             key);
        if (id >= n_model)
            n_model = (int32_t)id + 1;
    }
    reserve_ids(tok, n_model);
    char *buf = xmalloc(4096);
    size_t cap = 4096;
    json_object_foreach(vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        size_t klen = strlen(key), n = klen;
        if (klen > cap) {
            cap = klen;
            buf = xrealloc(buf, cap);
        }
        if (tok->kind == TOK_KIND_BYTELEVEL) {
            if (bytelevel_decode(cp_to_byte, key, buf, &n)) {
                free(buf);
                return deft_fail(err, DEFT_ERR_FORMAT,
                                 "%s: field model.vocab: \"%s\" is not in the byte-level "
                                 "alphabet", path, key);
            }
        } else {
            memcpy(buf, key, klen);
        }
        if (tok->piece_len[id]) {
            free(buf);
            return deft_fail(err, DEFT_ERR_FORMAT, "%s: field model.vocab: id %d appears twice",
                             path, id);
        }
        tok_set_piece(tok, id, buf, n);
    }
    free(buf);
    tok_strmap_build(tok, n_model);
    return DEFT_OK;
}

/* The id of a vocabulary string: byte-level strings are decoded to the bytes
 * the piece table holds. buf holds at least strlen(s) bytes. */
static int32_t vocab_id(const tokenizer_t *tok, const int16_t cp_to_byte[512], const char *s,
                        char *buf)
{
    size_t n = strlen(s);
    if (tok->kind == TOK_KIND_BYTELEVEL && bytelevel_decode(cp_to_byte, s, buf, &n))
        return -1;
    return tok_strmap_get(tok, tok->kind == TOK_KIND_BYTELEVEL ? buf : s, n);
}

/* Merges as "left right" strings or [left, right] pairs; rank = position. */
static int load_merges(tokenizer_t *tok, json_t *model, const char *path, deft_err_t *err)
{
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_array(merges))
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: field model.merges: expected an array",
                         path);
    int16_t cp_to_byte[512];
    bytelevel_table(cp_to_byte);
    tok_pairmap_init(&tok->merges, json_array_size(merges));
    strbuf_t a = {0}, b = {0};
    char *buf = NULL;  // (buf_cap) bytes of a decoded byte-level string
    size_t buf_cap = 0, i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        bool ok = false;
        a.len = b.len = 0;
        if (json_is_string(m)) {
            const char *s = json_string_value(m), *sp = strchr(s, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                sb_append(&a, s, (size_t)(sp - s));
                sb_puts(&b, sp + 1);
                ok = true;
            }
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            sb_puts(&a, json_string_value(json_array_get(m, 0)));
            sb_puts(&b, json_string_value(json_array_get(m, 1)));
            ok = true;
        }
        int32_t ia = -1, ib = -1, im = -1;
        if (ok) {
            if (a.len + b.len + 1 > buf_cap) {
                buf_cap = 2 * (a.len + b.len + 1);
                buf = xrealloc(buf, buf_cap);
            }
            ia = vocab_id(tok, cp_to_byte, a.data, buf);
            ib = vocab_id(tok, cp_to_byte, b.data, buf);
            sb_append(&a, b.data, b.len);  // strbuf keeps a NUL after the text
            im = vocab_id(tok, cp_to_byte, a.data, buf);
        }
        if (ia < 0 || ib < 0 || im < 0) {
            char *dump = json_dumps(m, JSON_ENCODE_ANY);
            deft_fail(err, DEFT_ERR_FORMAT,
                      "%s: field model.merges[%zu]: %s: expected two vocabulary tokens whose "
                      "concatenation is one too", path, i, dump ? dump : "?");
            free(dump);
            sb_free(&a);
            sb_free(&b);
            free(buf);
            return DEFT_ERR_FORMAT;
        }
        tok_pairmap_put(&tok->merges, ia, ib, (int32_t)i, im);
    }
    sb_free(&a);
    sb_free(&b);
    free(buf);
    return DEFT_OK;
}

static int load_added(tokenizer_t *tok, json_t *added, const char *path, deft_err_t *err)
{
    size_t i;
    json_t *t;
    json_array_foreach(added, i, t) {
        const char *content = jstr(t, "content");
        json_t *jid = json_object_get(t, "id");
        if (!content || !json_is_integer(jid) || json_integer_value(jid) < 0 ||
            json_integer_value(jid) >= TOK_MAX_IDS)
            return deft_fail(err, DEFT_ERR_FORMAT,
                             "%s: field added_tokens[%zu]: needs \"id\" and \"content\"", path,
                             i);
        if (jtrue(t, "lstrip") || jtrue(t, "rstrip") || jtrue(t, "single_word"))
            return deft_fail(err, DEFT_ERR_FORMAT,
                             "%s: field added_tokens[%zu] (%s): lstrip, rstrip and single_word "
                             "are not implemented", path, i, content);
        add_token(tok, (int32_t)json_integer_value(jid), content, jtrue(t, "special"),
                  jtrue(t, "normalized"));
    }
    return DEFT_OK;
}

static int check_model(tokenizer_t *tok, json_t *model, const char *path, deft_err_t *err)
{
    const char *type = jstr(model, "type");
    if (!type || strcmp(type, "BPE"))
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: field model.type: '%s' (deft reads BPE)",
                         path, type ? type : "missing");
    if (jstr(model, "continuing_subword_prefix") || jstr(model, "end_of_word_suffix"))
        return deft_fail(err, DEFT_ERR_FORMAT,
                         "%s: field model: continuing_subword_prefix/end_of_word_suffix are "
                         "not implemented", path);
    double dropout = json_number_value(json_object_get(model, "dropout"));
    if (dropout > 0)
        return deft_fail(err, DEFT_ERR_FORMAT,
                         "%s: field model.dropout: %g (BPE dropout is for training only)", path,
                         dropout);
    if (!json_is_object(json_object_get(model, "vocab")))
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: field model.vocab: expected an object",
                         path);
    tok->ignore_merges = jtrue(model, "ignore_merges");
    tok->byte_fallback = jtrue(model, "byte_fallback");
    tok->fuse_unk = jtrue(model, "fuse_unk");
    return DEFT_OK;
}

/* Byte-level when a ByteLevel pre-tokenizer appears anywhere in it. */
static bool has_bytelevel(json_t *pre)
{
    const char *type = jstr(pre, "type");
    if (type && !strcmp(type, "ByteLevel"))
        return true;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(pre, "pretokenizers"), i, p)
        if (has_bytelevel(p))
            return true;
    return false;
}

static int load_hf(tokenizer_t *tok, json_t *root, const char *path, deft_err_t *err)
{
    json_t *model = json_object_get(root, "model"), *pre = json_object_get(root, "pre_tokenizer");
    int rc = check_model(tok, model, path, err);
    if (rc)
        return rc;
    tok->kind = has_bytelevel(pre) ? TOK_KIND_BYTELEVEL : TOK_KIND_SENTENCEPIECE;
    if (tok->kind == TOK_KIND_BYTELEVEL) {
        json_t *norm = json_object_get(root, "normalizer");
        if (norm && !json_is_null(norm))
            return deft_fail(err, DEFT_ERR_FORMAT,
                             "%s: field normalizer: byte-level BPE with a normalizer is not "
                             "implemented", path);
        rc = parse_bytelevel_pretok(tok, pre, path, err);
    } else {
        rc = parse_sp_normalizer(tok, json_object_get(root, "normalizer"), path, err);
        if (!rc)
            rc = parse_sp_pretok(tok, pre, path, err);
        if (!rc)
            rc = parse_sp_decoder(tok, json_object_get(root, "decoder"), path, err);
    }
    if (!rc)
        rc = load_vocab(tok, json_object_get(model, "vocab"), path, err);
    if (!rc)
        rc = load_merges(tok, model, path, err);
    if (!rc)
        rc = load_added(tok, json_object_get(root, "added_tokens"), path, err);
    if (rc)
        return rc;
    const char *unk = jstr(model, "unk_token");
    tok->unk_id = unk ? tok_strmap_get(tok, unk, strlen(unk)) : -1;
    if (unk && tok->unk_id < 0)
        return deft_fail(err, DEFT_ERR_FORMAT,
                         "%s: field model.unk_token: '%s' is not in the vocabulary", path, unk);
    if (tok->kind == TOK_KIND_BYTELEVEL) {
        set_byte_ids(tok);
        for (int b = 0; b < 256; b++)
            if (tok->byte_id[b] < 0)
                return deft_fail(err, DEFT_ERR_FORMAT,
                                 "%s: field model.vocab: byte 0x%02x has no token", path, b);
    } else {
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            tok->byte_id[b] = tok->byte_fallback ? tok_strmap_get(tok, name, 6) : -1;
        }
    }
    return DEFT_OK;
}

int tok_load_hf_json(tokenizer_t *tok, const char *path, deft_err_t *err)
{
    char *text;
    size_t len;
    int rc = read_file(path, &text, &len, err);  // one read: json_load_file reads by getc
    if (rc)
        return rc;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    free(text);
    if (!root)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s:%d:%d: %s", path, jerr.line, jerr.column,
                         jerr.text);
    rc = load_hf(tok, root, path, err);
    json_decref(root);
    return rc;
}

// ----------------------------------------------------------------------------
// tokenizer_config.json

static int32_t token_id_by_name(const tokenizer_t *tok, const char *name)
{
    int32_t id = tok_special_id(tok, name);
    return id >= 0 ? id : tok_strmap_get(tok, name, strlen(name));
}

/* bos_token / eos_token: a string or {"content": ...}. */
static int config_token(tokenizer_t *tok, json_t *cfg, const char *key, int32_t *out,
                        const char *path, deft_err_t *err)
{
    json_t *v = json_object_get(cfg, key);
    const char *name = json_is_string(v) ? json_string_value(v) : jstr(v, "content");
    if (!v || json_is_null(v))
        return DEFT_OK;
    if (!name)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: field %s: expected a string", path, key);
    *out = token_id_by_name(tok, name);
    if (*out < 0)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: field %s: '%s' is not a token", path, key,
                         name);
    return DEFT_OK;
}

/* added_tokens_decoder: {"128000": {"content": ..., "special": true}, ...} */
static int config_added(tokenizer_t *tok, json_t *dec, const char *path, deft_err_t *err)
{
    const char *key;
    json_t *t;
    json_object_foreach(dec, key, t) {
        char *end;
        long id = strtol(key, &end, 10);
        const char *content = jstr(t, "content");
        if (*end || id < 0 || id >= TOK_MAX_IDS || !content)
            return deft_fail(err, DEFT_ERR_FORMAT,
                             "%s: field added_tokens_decoder[\"%s\"]: needs a numeric id and "
                             "\"content\"", path, key);
        add_token(tok, (int32_t)id, content, jtrue(t, "special"), jtrue(t, "normalized"));
    }
    return DEFT_OK;
}

int tok_load_config(tokenizer_t *tok, const char *dir, bool tiktoken, deft_err_t *err)
{
    strbuf_t path = {0};
    sb_printf(&path, "%s/tokenizer_config.json", dir);
    json_error_t jerr;
    json_t *cfg = NULL;
    FILE *f = fopen(path.data, "rb");
    if (f) {
        cfg = json_loadf(f, JSON_DECODE_INT_AS_REAL, &jerr);  // model_max_length: 1e30
        fclose(f);
        if (!cfg) {
            deft_fail(err, DEFT_ERR_FORMAT, "%s:%d:%d: %s", path.data, jerr.line, jerr.column,
                      jerr.text);
            sb_free(&path);
            return DEFT_ERR_FORMAT;
        }
    }
    int rc = DEFT_OK;
    json_t *dec = json_object_get(cfg, "added_tokens_decoder");
    if (tiktoken && json_is_object(dec))
        rc = config_added(tok, dec, path.data, err);
    else if (tiktoken)
        add_llama3_specials(tok);
    if (tiktoken) {  // Meta's defaults, unless the config names others
        tok->bos = tok_special_id(tok, "<|begin_of_text|>");
        tok->eos = tok_special_id(tok, "<|end_of_text|>");
    }
    if (!rc && cfg)
        rc = config_token(tok, cfg, "bos_token", &tok->bos, path.data, err);
    if (!rc && cfg)
        rc = config_token(tok, cfg, "eos_token", &tok->eos, path.data, err);
    json_decref(cfg);
    sb_free(&path);
    return rc;
}
