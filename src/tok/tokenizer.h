/* Tokenizers for the models deft trains: byte-level BPE (Llama 3, from
 * Hugging Face tokenizer.json or Meta's tiktoken tokenizer.model) and
 * SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, Mistral,
 * from tokenizer.json). A loaded tokenizer is read-only: encoding and
 * decoding are safe from many threads at once. */
#ifndef DEFT_TOKENIZER_H
#define DEFT_TOKENIZER_H

#include "util/common.h"

typedef struct tokenizer tokenizer_t;

/* Growable id vector; tok_encode appends to it. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} tok_ids_t;

void tok_ids_push(tok_ids_t *v, int32_t id);
void tok_ids_free(tok_ids_t *v);

enum {
    TOK_SPECIAL = 1u << 0,       /* recognise special-token strings (templates); else plain text */
    TOK_BOS = 1u << 1,           /* prepend the BOS id */
    TOK_EOS = 1u << 2,           /* append the EOS id */
    TOK_CONTINUATION = 1u << 3,  /* text continues earlier text: SentencePiece-style
                                    tokenizers add no dummy-prefix '▁' */
};

/* path: a model/tokenizer folder (tokenizer.json preferred, else
 * tokenizer.model), a tokenizer.json, or a tiktoken tokenizer.model.
 * BOS/EOS come from tokenizer_config.json beside the file when present. */
int tok_load(tokenizer_t **out, const char *path, deft_err_t *err);
void tok_free(tokenizer_t *tok);

int32_t tok_vocab_size(const tokenizer_t *tok);  /* max id + 1, special tokens included */
int32_t tok_bos_id(const tokenizer_t *tok);      /* -1 when the tokenizer has none */
int32_t tok_eos_id(const tokenizer_t *tok);
const char *tok_kind(const tokenizer_t *tok);    /* "bpe-bytelevel", "bpe-sentencepiece" */

/* Encode len bytes of UTF-8 text. Invalid UTF-8 is DEFT_ERR_FORMAT. */
int tok_encode(const tokenizer_t *tok, const char *text, size_t len, unsigned flags,
               tok_ids_t *out, deft_err_t *err);

/* Decode ids back to the original bytes (appended to out). An id out of
 * range is DEFT_ERR_FORMAT. */
int tok_decode(const tokenizer_t *tok, const int32_t *ids, size_t n, strbuf_t *out,
               deft_err_t *err);

/* The bytes one id stands for, for display (special tokens give their name). */
const char *tok_piece(const tokenizer_t *tok, int32_t id, size_t *len);

/* Special-token id by its string, or -1. */
int32_t tok_special_id(const tokenizer_t *tok, const char *name);

#endif
