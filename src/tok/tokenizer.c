/* Encoding and decoding with a loaded tokenizer: UTF-8 validation, added
 * (special) tokens, SentencePiece normalization, the regex pre-tokenizer,
 * BPE, and the way back from ids to bytes. Loading picks the file format. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tok/tok_internal.h"

// ----------------------------------------------------------------------------
// id vectors

void tok_ids_push(tok_ids_t *v, int32_t id)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->ids = xrealloc(v->ids, v->cap * sizeof *v->ids);
    }
    v->ids[v->n++] = id;
}

void tok_ids_free(tok_ids_t *v)
{
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

// ----------------------------------------------------------------------------
// loading

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* A tokenizer.json starts with '{'; a tiktoken file with base64. */
static int sniff_json(const char *path, bool *json, deft_err_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\r' || c == '\t')
        ;
    fclose(f);
    *json = c == '{';
    return DEFT_OK;
}

int tok_load(tokenizer_t **out, const char *path, deft_err_t *err)
{
    *out = NULL;
    strbuf_t file = {0}, dir = {0};
    if (is_dir(path)) {
        sb_printf(&dir, "%s", path);
        sb_printf(&file, "%s/tokenizer.json", path);
        if (!exists(file.data)) {
            file.len = 0;
            sb_printf(&file, "%s/tokenizer.model", path);
        }
        if (!exists(file.data)) {
            sb_free(&file);
            sb_free(&dir);
            return deft_fail(err, DEFT_ERR_IO, "%s: no tokenizer.json or tokenizer.model in "
                             "this folder", path);
        }
    } else {
        sb_puts(&file, path);
        const char *slash = strrchr(path, '/');
        if (slash)
            sb_append(&dir, path, (size_t)(slash - path));
        else
            sb_puts(&dir, ".");
    }
    bool json = false;
    int rc = sniff_json(file.data, &json, err);
    tokenizer_t *tok = xcalloc(1, sizeof *tok);
    tok->bos = tok->eos = tok->unk_id = -1;
    if (!rc)
        rc = json ? tok_load_hf_json(tok, file.data, err) : tok_load_tiktoken(tok, file.data, err);
    if (!rc)
        rc = tok_load_config(tok, dir.data, !json, err);
    sb_free(&file);
    sb_free(&dir);
    if (rc) {
        tok_free(tok);
        return rc;
    }
    tok->added_of = xmalloc((size_t)tok->n_ids * sizeof *tok->added_of);
    for (int32_t id = 0; id < tok->n_ids; id++)
        tok->added_of[id] = -1;
    for (int i = 0; i < tok->n_added; i++) {
        tok->has_plain_added |= !tok->added[i].special;
        tok->added_of[tok->added[i].id] = i;
    }
    *out = tok;
    return DEFT_OK;
}

void tok_free(tokenizer_t *tok)
{
    if (!tok)
        return;
    free(tok->pool);
    free(tok->piece_off);
    free(tok->piece_len);
    free(tok->vocab.slots);
    tok_pairmap_free(&tok->merges);
    for (int i = 0; i < tok->n_added; i++) {
        free(tok->added[i].name);
        free(tok->added[i].text);
    }
    free(tok->added);
    free(tok->added_of);
    pcre2_code_free(tok->re);
    free(tok->space_repl);
    free(tok->prepend);
    free(tok->decode_from);
    free(tok->decode_to);
    free(tok);
}

int32_t tok_vocab_size(const tokenizer_t *tok) { return tok->n_ids; }
int32_t tok_bos_id(const tokenizer_t *tok) { return tok->bos; }
int32_t tok_eos_id(const tokenizer_t *tok) { return tok->eos; }

const char *tok_kind(const tokenizer_t *tok)
{
    return tok->kind == TOK_KIND_BYTELEVEL ? "bpe-bytelevel" : "bpe-sentencepiece";
}

const char *tok_piece(const tokenizer_t *tok, int32_t id, size_t *len)
{
    if (id < 0 || id >= tok->n_ids || !tok->piece_len[id]) {
        *len = 0;
        return NULL;
    }
    if (tok->added_of[id] >= 0) {
        *len = tok->added[tok->added_of[id]].len;
        return tok->added[tok->added_of[id]].text;
    }
    *len = tok->piece_len[id];
    return tok_piece_ptr(tok, id);
}

int32_t tok_special_id(const tokenizer_t *tok, const char *name)
{
    for (int i = 0; i < tok->n_added; i++)
        if (!strcmp(tok->added[i].name, name))
            return tok->added[i].id;
    return -1;
}

// ----------------------------------------------------------------------------
// UTF-8

/* Length of the valid UTF-8 sequence at s (1-4), or 0: rejects overlong
 * forms, surrogates and code points above U+10FFFF. */
static int utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xc2 || c > 0xf4)
        return 0;
    int len = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if ((size_t)len > n)
        return 0;
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0) ||
        (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))
        return 0;
    return len;
}

static int utf8_check(const char *text, size_t n, deft_err_t *err)
{
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        if (i + 8 <= n) {  // ASCII runs, 8 bytes at a time
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        int k = utf8_len(s + i, n - i);
        if (!k)
            return deft_fail(err, DEFT_ERR_FORMAT, "invalid UTF-8 at byte offset %zu (0x%02x)",
                             i, s[i]);
        i += (size_t)k;
    }
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// encoding

typedef struct {
    const tokenizer_t *tok;
    unsigned flags;
    tok_ids_t *out;
    pcre2_match_data *md;   // per call: a tokenizer is shared read-only
    tok_scratch_t scratch;
    int32_t *sym;           // (sym_cap) initial symbols of the word being merged
    size_t sym_cap;
    strbuf_t norm;          // the normalized segment (SentencePiece)
    deft_err_t *err;
} enc_t;

static int32_t *enc_symbols(enc_t *e, size_t n)
{
    if (n > e->sym_cap) {
        e->sym_cap = n + n / 2;
        e->sym = xrealloc(e->sym, e->sym_cap * sizeof *e->sym);
    }
    return e->sym;
}

static void enc_merge_push(enc_t *e, size_t n)
{
    n = tok_bpe_merge(e->tok, e->sym, n, &e->scratch);
    for (size_t i = 0; i < n; i++)
        tok_ids_push(e->out, e->sym[i]);
}

static bool added_active(const tokenizer_t *tok, const tok_added_t *t, unsigned flags,
                         bool normalized)
{
    if (t->special && !(flags & TOK_SPECIAL))
        return false;
    // byte-level text is never normalized, so every added token matches the raw text
    return tok->kind == TOK_KIND_BYTELEVEL ? !normalized : t->normalized == normalized;
}

/* The leftmost active added token in s[0..n), the longest one on ties;
 * returns its index (and *at) or -1. */
static int find_added(const tokenizer_t *tok, const char *s, size_t n, unsigned flags,
                      bool normalized, size_t *at)
{
    if (!tok->n_added || (!(flags & TOK_SPECIAL) && !tok->has_plain_added))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!tok->added_first[(unsigned char)s[i]])
            continue;
        int best = -1;
        for (int k = 0; k < tok->n_added; k++) {
            const tok_added_t *t = &tok->added[k];
            if (t->len <= n - i && (best < 0 || t->len > tok->added[best].len) &&
                !memcmp(s + i, t->text, t->len) && added_active(tok, t, flags, normalized))
                best = k;
        }
        if (best >= 0) {
            *at = i;
            return best;
        }
    }
    return -1;
}

/* One pre-token of byte-level BPE. */
static void encode_bytes_piece(enc_t *e, const char *p, size_t n)
{
    const tokenizer_t *tok = e->tok;
    if (tok->ignore_merges || n == 1) {
        int32_t id = tok_strmap_get(tok, p, n);
        if (id >= 0) {
            tok_ids_push(e->out, id);
            return;
        }
    }
    int32_t *sym = enc_symbols(e, n);
    for (size_t i = 0; i < n; i++)
        sym[i] = tok->byte_id[(unsigned char)p[i]];
    enc_merge_push(e, n);
}

/* Split s[0..n) with the pre-tokenizer regex (text the pattern does not
 * match is a piece of its own, as in Hugging Face's Split "Isolated"). */
static int encode_bytelevel_segment(enc_t *e, const char *s, size_t n)
{
    const tokenizer_t *tok = e->tok;
    size_t pos = 0, gap = 0;  // gap: start of text not yet covered by a match
    while (pos < n) {
        int rc = tok->re_jit ? pcre2_jit_match(tok->re, (PCRE2_SPTR)s, n, pos, 0, e->md, NULL)
                             : pcre2_match(tok->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK,
                                           e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return deft_fail(e->err, DEFT_ERR_INTERNAL,
                             "pre-tokenizer regex failed at byte offset %zu: %s", pos,
                             (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t a = ov[0], b = ov[1];
        if (a == b) {  // empty match: step over one character
            pos = a + (size_t)utf8_len((const unsigned char *)s + a, n - a);
            continue;
        }
        if (a > gap)
            encode_bytes_piece(e, s + gap, a - gap);
        encode_bytes_piece(e, s + a, b - a);
        pos = gap = b;
    }
    if (gap < n)
        encode_bytes_piece(e, s + gap, n - gap);
    return DEFT_OK;
}

/* One word of SentencePiece-style BPE: characters, byte fallback or unk,
 * then merges. */
static int encode_sp_word(enc_t *e, const char *s, size_t n, size_t offset)
{
    const tokenizer_t *tok = e->tok;
    if (!n)
        return DEFT_OK;
    if (tok->ignore_merges) {
        int32_t id = tok_strmap_get(tok, s, n);
        if (id >= 0) {
            tok_ids_push(e->out, id);
            return DEFT_OK;
        }
    }
    int32_t *sym = enc_symbols(e, n);
    size_t m = 0;
    /* An unk is held back until a known character (or the end) follows, and
     * fuse_unk extends it over the next unknown characters. Byte-fallback
     * tokens do not release it: Hugging Face tokenizers puts them before a
     * pending unk ("xé" with no "x" -> <0xC3> <0xA9> <unk>), so deft does too. */
    bool pending_unk = false;
    for (size_t i = 0; i < n;) {
        int k = utf8_len((const unsigned char *)s + i, n - i);
        int32_t id = tok_strmap_get(tok, s + i, (size_t)k);
        bool bytes = id < 0 && tok->byte_fallback;
        for (int j = 0; bytes && j < k; j++)
            bytes = tok->byte_id[(unsigned char)s[i + j]] >= 0;
        if (id >= 0) {
            if (pending_unk)
                sym[m++] = tok->unk_id;
            pending_unk = false;
            sym[m++] = id;
        } else if (bytes) {
            for (int j = 0; j < k; j++)
                sym[m++] = tok->byte_id[(unsigned char)s[i + j]];
        } else if (tok->unk_id >= 0) {
            if (pending_unk && !tok->fuse_unk)
                sym[m++] = tok->unk_id;
            pending_unk = true;
        } else {
            return deft_fail(e->err, DEFT_ERR_DATA,
                             "character '%.*s' near byte offset %zu has no token, and the "
                             "tokenizer has no unk token", k, s + i, offset);
        }
        i += (size_t)k;
    }
    if (pending_unk)
        sym[m++] = tok->unk_id;
    enc_merge_push(e, m);
    return DEFT_OK;
}

static void sp_normalize(enc_t *e, const char *s, size_t n, size_t offset)
{
    const tokenizer_t *tok = e->tok;
    strbuf_t *out = &e->norm;
    out->len = 0;
    bool first = offset == 0;
    bool prepend = tok->prepend && n > 0 && !(first && (e->flags & TOK_CONTINUATION)) &&
                   (tok->prepend_when == TOK_PREPEND_ALWAYS ||
                    (tok->prepend_when == TOK_PREPEND_FIRST && first));
    if (prepend && tok->prepend_if_absent) {
        size_t pl = strlen(tok->prepend);
        bool starts = (tok->space_repl && s[0] == ' ') ||
                      (n >= pl && !memcmp(s, tok->prepend, pl));
        prepend = !starts;
    }
    if (prepend)
        sb_puts(out, tok->prepend);
    if (!tok->space_repl) {
        sb_append(out, s, n);
        return;
    }
    size_t run = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ' ') {
            sb_append(out, s + run, i - run);
            sb_puts(out, tok->space_repl);
            run = i + 1;
        }
    sb_append(out, s + run, n - run);
}

/* A piece between added tokens: one word, or with the Metaspace split, one
 * word per replacement character that starts it. The Metaspace
 * pre-tokenizer normalizes each piece here, after the added tokens are cut
 * out; a Prepend/Replace normalizer has already run over the whole segment. */
static int encode_sp_piece(enc_t *e, const char *s, size_t n, size_t offset)
{
    const tokenizer_t *tok = e->tok;
    if (!tok->in_normalizer) {
        sp_normalize(e, s, n, offset);
        s = e->norm.data;
        n = e->norm.len;
    }
    if (!tok->split_on_repl)
        return encode_sp_word(e, s, n, offset);
    size_t rl = strlen(tok->space_repl), start = 0;
    for (size_t i = 1; i + rl <= n; i++)
        if (!memcmp(s + i, tok->space_repl, rl)) {
            int rc = encode_sp_word(e, s + start, i - start, offset);
            if (rc)
                return rc;
            start = i;
        }
    return encode_sp_word(e, s + start, n - start, offset);
}

/* A raw segment between added tokens matched in the raw text; then the
 * added tokens matched in the normalized text. */
static int encode_sp_segment(enc_t *e, const char *s, size_t n, size_t offset)
{
    const tokenizer_t *tok = e->tok;
    const char *t = s;
    size_t len = n, at;
    if (tok->in_normalizer) {
        sp_normalize(e, s, n, offset);
        t = e->norm.data;
        len = e->norm.len;
    }
    int k;
    while (len && (k = find_added(tok, t, len, e->flags, true, &at)) >= 0) {
        int rc = encode_sp_piece(e, t, at, offset);
        if (rc)
            return rc;
        tok_ids_push(e->out, tok->added[k].id);
        size_t skip = at + tok->added[k].len;
        t += skip;
        len -= skip;
        offset += skip;  // exact in raw text, which is all a Metaspace tokenizer has here
    }
    return encode_sp_piece(e, t, len, offset);
}

static int encode_segment(enc_t *e, const char *s, size_t n, size_t offset)
{
    if (e->tok->kind == TOK_KIND_BYTELEVEL)
        return encode_bytelevel_segment(e, s, n);
    return encode_sp_segment(e, s, n, offset);
}

int tok_encode(const tokenizer_t *tok, const char *text, size_t len, unsigned flags,
               tok_ids_t *out, deft_err_t *err)
{
    int rc = utf8_check(text, len, err);
    if (rc)
        return rc;
    if ((flags & TOK_BOS) && tok->bos < 0)
        return deft_fail(err, DEFT_ERR_USAGE, "this tokenizer has no BOS token");
    if ((flags & TOK_EOS) && tok->eos < 0)
        return deft_fail(err, DEFT_ERR_USAGE, "this tokenizer has no EOS token");
    enc_t e = {.tok = tok, .flags = flags, .out = out, .err = err};
    if (tok->re) {
        e.md = pcre2_match_data_create(1, NULL);
        if (!e.md)
            return deft_fail(err, DEFT_ERR_NOMEM, "cannot allocate regex match data");
    }
    if (flags & TOK_BOS)
        tok_ids_push(out, tok->bos);
    size_t pos = 0, at;
    int k;
    while (!rc && (k = find_added(tok, text + pos, len - pos, flags, false, &at)) >= 0) {
        if (at)
            rc = encode_segment(&e, text + pos, at, pos);
        tok_ids_push(out, tok->added[k].id);
        pos += at + tok->added[k].len;
    }
    if (!rc && pos < len)
        rc = encode_segment(&e, text + pos, len - pos, pos);
    if (!rc && (flags & TOK_EOS))
        tok_ids_push(out, tok->eos);
    pcre2_match_data_free(e.md);
    tok_scratch_free(&e.scratch);
    free(e.sym);
    sb_free(&e.norm);
    return rc;
}

// ----------------------------------------------------------------------------
// decoding

/* The byte a SentencePiece <0xNN> token stands for, or -1. */
static int byte_token_value(const tokenizer_t *tok, int32_t id)
{
    if (!tok->byte_fallback || tok->piece_len[id] != 6)
        return -1;
    const char *p = tok_piece_ptr(tok, id);
    if (memcmp(p, "<0x", 3) || p[5] != '>')
        return -1;
    unsigned v;
    char hex[3] = {p[3], p[4], 0};
    if (sscanf(hex, "%2X", &v) != 1 || tok->byte_id[v] != id)
        return -1;
    return (int)v;
}

static void append_replaced(strbuf_t *out, const char *s, size_t n, const char *from,
                            const char *to)
{
    size_t fl = strlen(from), run = 0;
    for (size_t i = 0; i + fl <= n;)
        if (!memcmp(s + i, from, fl)) {
            sb_append(out, s + run, i - run);
            sb_puts(out, to);
            i += fl;
            run = i;
        } else {
            i++;
        }
    sb_append(out, s + run, n - run);
}

int tok_decode(const tokenizer_t *tok, const int32_t *ids, size_t n, strbuf_t *out,
               deft_err_t *err)
{
    size_t start = out->len;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_ids || !tok->piece_len[id])
            return deft_fail(err, DEFT_ERR_FORMAT, "ids[%zu]: %d is not a token id (vocabulary "
                             "size %d)", i, id, tok->n_ids);
        size_t len;
        const char *p = tok_piece(tok, id, &len);
        int byte = tok->kind == TOK_KIND_SENTENCEPIECE ? byte_token_value(tok, id) : -1;
        if (byte >= 0) {
            char c = (char)byte;
            sb_append(out, &c, 1);
        } else if (tok->decode_from) {
            append_replaced(out, p, len, tok->decode_from, tok->decode_to);
        } else {
            sb_append(out, p, len);
        }
    }
    // SentencePiece: the dummy prefix comes back as a leading space
    int strip = 0;
    while (strip < tok->decode_strip && out->len > start + (size_t)strip &&
           out->data[start + (size_t)strip] == ' ')
        strip++;
    if (strip) {
        memmove(out->data + start, out->data + start + strip, out->len - start - (size_t)strip);
        out->len -= (size_t)strip;
    }
    return DEFT_OK;
}
