/* Internal layout of a loaded tokenizer, shared by the loaders (tok_load.c),
 * the BPE merge and its hash tables (tok_bpe.c), the pre-tokenizer regex
 * (tok_pretok.c) and the encode/decode driver (tokenizer.c). Not part of the
 * public API: code outside src/tok and its tests includes tokenizer.h only. */
#ifndef DEFT_TOK_INTERNAL_H
#define DEFT_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tok/tokenizer.h"

typedef enum {
    TOK_KIND_BYTELEVEL,      /* bytes are the alphabet (Llama 3, GPT-2 style) */
    TOK_KIND_SENTENCEPIECE,  /* Unicode characters are the alphabet, '▁' for space,
                                <0xNN> byte fallback (Llama 2, TinyLlama, Mistral) */
} tok_kind_t;

/* Piece bytes -> id, open addressing with linear probing; the keys live in
 * the tokenizer's piece pool, so a slot holds the id and 32 bits of the hash,
 * which rule out nearly every mismatch without touching the pool. */
typedef struct {
    int32_t id;       /* -1 when empty */
    uint32_t hash;
} tok_str_slot_t;

typedef struct {
    tok_str_slot_t *slots;  /* (mask + 1) */
    uint32_t mask;
} tok_strmap_t;

/* (left id, right id) -> merge rank and merged id. */
typedef struct {
    uint64_t key;     /* (uint64_t)left << 32 | right; UINT64_MAX when empty */
    int32_t rank;     /* merge priority: the lowest rank merges first */
    int32_t id;       /* the token the two merge into */
} tok_pair_slot_t;

typedef struct {
    tok_pair_slot_t *slots;  /* (mask + 1) */
    uint32_t mask;
    size_t n;
} tok_pairmap_t;

/* A token matched as a whole in the input text before any splitting
 * (Hugging Face "added tokens", tiktoken "special tokens"). */
typedef struct {
    int32_t id;
    char *name;       /* the token's content, as tok_special_id looks it up */
    char *text;       /* what is matched and decoded: the name, or for a normalized
                         token of a normalizer with a dummy prefix, the normalized name
                         ("<unk>" -> "▁<unk>"), as Hugging Face tokenizers does */
    size_t len;       /* of text */
    bool special;     /* matched only with TOK_SPECIAL; others always */
    bool normalized;  /* matched in the normalized text (SentencePiece); else in the raw text */
} tok_added_t;

typedef enum {
    TOK_PREPEND_NEVER,
    TOK_PREPEND_FIRST,   /* only the segment that starts the text */
    TOK_PREPEND_ALWAYS,  /* every segment between added tokens */
} tok_prepend_t;

struct tokenizer {
    tok_kind_t kind;
    int32_t n_ids;             /* max id + 1, added tokens included */
    int32_t ids_cap;           /* allocated length of the per-id arrays */

    /* The bytes of every id: byte-level, the raw bytes; SentencePiece, the
     * vocabulary string (UTF-8 with '▁'); added tokens, their text. */
    char *pool;                /* (pool_len) piece bytes, back to back */
    size_t pool_len, pool_cap;
    uint32_t *piece_off;       /* (n_ids) offset into pool */
    uint32_t *piece_len;       /* (n_ids) byte length; ids without a piece have 0 */

    tok_strmap_t vocab;        /* model vocabulary pieces -> id (added tokens excluded) */
    tok_pairmap_t merges;
    bool ignore_merges;        /* a pre-token that is itself in the vocabulary is one id */
    int32_t byte_id[256];      /* byte-level: id of each single byte; SentencePiece:
                                  id of <0xNN> when byte_fallback, else -1 */
    bool byte_fallback;
    int32_t unk_id;            /* -1 when none */
    bool fuse_unk;

    tok_added_t *added;        /* (n_added) */
    int n_added;
    int32_t *added_of;         /* (n_ids) index into added, or -1 */
    bool added_first[256];     /* first bytes of added-token texts, to skip fast */
    bool has_plain_added;      /* some added token is matched even without TOK_SPECIAL */

    pcre2_code *re;            /* pre-tokenizer split; NULL: a segment is one word */
    bool re_jit;               /* pcre2_jit_compile succeeded */

    /* SentencePiece normalization: ' ' -> space_repl, then the dummy prefix. */
    char *space_repl;          /* "▁", or NULL to leave spaces alone */
    char *prepend;             /* dummy prefix, "▁"; NULL when none */
    bool in_normalizer;        /* prepend/space_repl come from the normalizer (not the
                                  Metaspace pre-tokenizer), so they apply to added tokens */
    tok_prepend_t prepend_when;
    bool prepend_if_absent;    /* Metaspace: no prefix when the segment already starts with it */
    bool split_on_repl;        /* Metaspace split: each space_repl starts a new word */

    /* SentencePiece decoding: decode_from -> decode_to, then strip spaces. */
    char *decode_from, *decode_to;
    int decode_strip;          /* leading spaces removed from the decoded text */

    int32_t bos, eos;          /* -1 when none */
};

/* ---- piece pool and hash tables (tok_bpe.c) ---- */
void tok_set_piece(tokenizer_t *tok, int32_t id, const char *s, size_t n);
static inline const char *tok_piece_ptr(const tokenizer_t *tok, int32_t id)
{
    return tok->pool + tok->piece_off[id];
}
void tok_strmap_build(tokenizer_t *tok, int32_t n_model);  /* ids [0, n_model) with pieces */
int32_t tok_strmap_get(const tokenizer_t *tok, const char *s, size_t n);
void tok_pairmap_init(tok_pairmap_t *m, size_t n_expected);
void tok_pairmap_put(tok_pairmap_t *m, int32_t left, int32_t right, int32_t rank, int32_t id);
void tok_pairmap_free(tok_pairmap_t *m);

/* Per-call working memory of the merge loop, so that a tokenizer stays
 * read-only and tok_encode is thread-safe. */
typedef struct {
    void *sym;            /* heap path: (cap) symbols */
    void *heap;           /* heap path: (3 * cap) candidate merges */
    size_t cap;
} tok_scratch_t;

void tok_scratch_free(tok_scratch_t *s);

/* Merge ids[0..n) in place by rank order; returns the new length. Short
 * sequences use an O(n^2) scan, long ones a heap (O(n log n)). */
size_t tok_bpe_merge(const tokenizer_t *tok, int32_t *ids, size_t n, tok_scratch_t *s);
/* Exposed so tests can check that both paths agree; the scan takes at most
 * TOK_BPE_SCAN_MAX ids. */
size_t tok_bpe_merge_heap(const tokenizer_t *tok, int32_t *ids, size_t n, tok_scratch_t *s);
size_t tok_bpe_merge_scan(const tokenizer_t *tok, int32_t *ids, size_t n);
#define TOK_BPE_SCAN_MAX 64   /* longest sequence merged by the scan */

/* ---- pre-tokenizer regex (tok_pretok.c) ---- */
extern const char tok_llama3_pattern[];
int tok_regex_compile(tokenizer_t *tok, const char *pattern, const char *origin,
                      deft_err_t *err);

/* ---- loaders (tok_load.c) ---- */
int tok_load_tiktoken(tokenizer_t *tok, const char *path, deft_err_t *err);
int tok_load_hf_json(tokenizer_t *tok, const char *path, deft_err_t *err);
int tok_load_config(tokenizer_t *tok, const char *dir, bool tiktoken, deft_err_t *err);

#endif
