/* Byte-pair-encoding merge by rank (Sennrich et al. 2016; the rank-ordered
 * form used by tiktoken and Hugging Face tokenizers), with the two hash
 * tables it needs: piece bytes -> id, and (left, right) -> merge. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

// ----------------------------------------------------------------------------
// piece pool

void tok_set_piece(tokenizer_t *tok, int32_t id, const char *s, size_t n)
{
    if (tok->pool_len + n > tok->pool_cap) {
        tok->pool_cap = (tok->pool_len + n) * 2 + 4096;
        tok->pool = xrealloc(tok->pool, tok->pool_cap);
    }
    memcpy(tok->pool + tok->pool_len, s, n);
    tok->piece_off[id] = (uint32_t)tok->pool_len;
    tok->piece_len[id] = (uint32_t)n;
    tok->pool_len += n;
}

// ----------------------------------------------------------------------------
// piece bytes -> id

/* FNV-1a over 8-byte words: pieces are short (median ~6 bytes), so one or
 * two multiply rounds hash most of them. */
static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 32;
    return h * 0x9e3779b97f4a7c15ull;
}

static uint32_t table_size(size_t n)
{
    uint32_t cap = 16;
    while (cap < n + n / 2 + 1)
        cap *= 2;
    return cap;
}

void tok_strmap_build(tokenizer_t *tok, int32_t n_model)
{
    tok_strmap_t *m = &tok->vocab;
    uint32_t cap = table_size((size_t)n_model);
    m->slots = xmalloc(cap * sizeof *m->slots);
    for (uint32_t i = 0; i < cap; i++)
        m->slots[i].id = -1;
    m->mask = cap - 1;
    for (int32_t id = 0; id < n_model; id++) {
        uint32_t len = tok->piece_len[id];
        if (!len || tok_strmap_get(tok, tok_piece_ptr(tok, id), len) >= 0)
            continue;  // a duplicate piece keeps its lowest id
        uint64_t h = hash_bytes(tok_piece_ptr(tok, id), len);
        uint32_t i = (uint32_t)(h >> 32) & m->mask;
        while (m->slots[i].id >= 0)
            i = (i + 1) & m->mask;
        m->slots[i] = (tok_str_slot_t){id, (uint32_t)h};
    }
}

int32_t tok_strmap_get(const tokenizer_t *tok, const char *s, size_t n)
{
    const tok_strmap_t *m = &tok->vocab;
    uint64_t h = hash_bytes(s, n);
    for (uint32_t i = (uint32_t)(h >> 32) & m->mask;; i = (i + 1) & m->mask) {
        const tok_str_slot_t *slot = &m->slots[i];
        if (slot->id < 0)
            return -1;
        if (slot->hash == (uint32_t)h && tok->piece_len[slot->id] == n &&
            !memcmp(tok->pool + tok->piece_off[slot->id], s, n))
            return slot->id;
    }
}

// ----------------------------------------------------------------------------
// (left, right) -> merge

static inline uint32_t pair_slot(const tok_pairmap_t *m, uint64_t key)
{
    return (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & m->mask;
}

void tok_pairmap_init(tok_pairmap_t *m, size_t n_expected)
{
    uint32_t cap = table_size(n_expected);
    m->slots = xmalloc(cap * sizeof *m->slots);
    for (uint32_t i = 0; i < cap; i++)
        m->slots[i].key = UINT64_MAX;
    m->mask = cap - 1;
    m->n = 0;
}

static void pairmap_grow(tok_pairmap_t *m)
{
    tok_pairmap_t big;
    tok_pairmap_init(&big, (m->mask + 1) * 2);
    for (uint32_t i = 0; i <= m->mask; i++) {
        tok_pair_slot_t *s = &m->slots[i];
        if (s->key != UINT64_MAX)
            tok_pairmap_put(&big, (int32_t)(s->key >> 32), (int32_t)(uint32_t)s->key, s->rank,
                            s->id);
    }
    free(m->slots);
    *m = big;
}

/* A pair already present keeps its first (lowest) rank, as Hugging Face does
 * when a merges list repeats a pair. */
void tok_pairmap_put(tok_pairmap_t *m, int32_t left, int32_t right, int32_t rank, int32_t id)
{
    if ((m->n + 1) * 3 > (size_t)(m->mask + 1) * 2)
        pairmap_grow(m);
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint32_t i = pair_slot(m, key);; i = (i + 1) & m->mask) {
        tok_pair_slot_t *s = &m->slots[i];
        if (s->key == key)
            return;
        if (s->key == UINT64_MAX) {
            s->key = key;
            s->rank = rank;
            s->id = id;
            m->n++;
            return;
        }
    }
}

static inline const tok_pair_slot_t *pair_get(const tok_pairmap_t *m, int32_t left,
                                              int32_t right)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint32_t i = pair_slot(m, key);; i = (i + 1) & m->mask) {
        const tok_pair_slot_t *s = &m->slots[i];
        if (s->key == key)
            return s;
        if (s->key == UINT64_MAX)
            return NULL;
    }
}

void tok_pairmap_free(tok_pairmap_t *m)
{
    free(m->slots);
    m->slots = NULL;
}

// ----------------------------------------------------------------------------
// merge: scan for short sequences

typedef struct {
    int32_t id, rank, merged;  // rank/merged: the pair (this, next); INT32_MAX: none
} cell_t;

static inline void scan_rank(const tokenizer_t *tok, cell_t *c, size_t n, size_t i)
{
    c[i].rank = INT32_MAX;
    if (i + 1 >= n)
        return;
    const tok_pair_slot_t *p = pair_get(&tok->merges, c[i].id, c[i + 1].id);
    if (p) {
        c[i].rank = p->rank;
        c[i].merged = p->id;
    }
}

/* Repeatedly merge the adjacent pair of lowest rank, leftmost on ties. The
 * rank of each pair is cached, so a merge costs one O(n) scan plus two
 * lookups; for the short pre-tokens of byte-level BPE this beats a heap. */
size_t tok_bpe_merge_scan(const tokenizer_t *tok, int32_t *ids, size_t n)
{
    cell_t c[TOK_BPE_SCAN_MAX];
    if (n < 2)
        return n;
    for (size_t i = 0; i < n; i++) {
        c[i].id = ids[i];
        c[i].rank = INT32_MAX;
    }
    for (size_t i = 0; i + 1 < n; i++)
        scan_rank(tok, c, n, i);
    for (;;) {
        size_t best = 0;
        int32_t best_rank = INT32_MAX;
        for (size_t i = 0; i + 1 < n; i++)
            if (c[i].rank < best_rank) {
                best_rank = c[i].rank;
                best = i;
            }
        if (best_rank == INT32_MAX)
            break;
        c[best].id = c[best].merged;
        memmove(&c[best + 1], &c[best + 2], (n - best - 2) * sizeof *c);
        n--;
        if (best > 0)
            scan_rank(tok, c, n, best - 1);
        scan_rank(tok, c, n, best);
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = c[i].id;
    return n;
}

// ----------------------------------------------------------------------------
// merge: heap for long sequences

typedef struct {
    int32_t id;          // -1 once merged into its left neighbour
    int32_t prev, next;  // linked list over the original positions; -1 at the ends
} sym_t;

typedef struct {
    int32_t rank;
    int32_t pos;         // left symbol of the pair; ties go to the leftmost
} cand_t;

static inline bool cand_less(cand_t a, cand_t b)
{
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(cand_t *h, size_t *n, cand_t c)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_less(c, h[parent]))
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = c;
}

static cand_t heap_pop(cand_t *h, size_t *n)
{
    cand_t top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= *n)
            break;
        size_t m = (l + 1 < *n && cand_less(h[l + 1], h[l])) ? l + 1 : l;
        if (!cand_less(h[m], last))
            break;
        h[i] = h[m];
        i = m;
    }
    if (*n)
        h[i] = last;
    return top;
}

static void push_pair(const tokenizer_t *tok, const sym_t *sym, int32_t pos, cand_t *h,
                      size_t *nh)
{
    int32_t nx = sym[pos].next;
    if (nx < 0)
        return;
    const tok_pair_slot_t *p = pair_get(&tok->merges, sym[pos].id, sym[nx].id);
    if (p)
        heap_push(h, nh, (cand_t){p->rank, pos});
}

/* Same result as the scan: candidates are ordered by (rank, position), and a
 * popped candidate is stale when the pair now at its position has another
 * rank (its left or right symbol was merged away meanwhile). Each merge adds
 * at most two candidates, so the heap holds fewer than 3n. */
size_t tok_bpe_merge_heap(const tokenizer_t *tok, int32_t *ids, size_t n,
                          tok_scratch_t *s)
{
    if (n < 2)
        return n;
    if (s->cap < n) {
        free(s->sym);
        free(s->heap);
        s->cap = n;
        s->sym = xmalloc(n * sizeof(sym_t));
        s->heap = xmalloc(3 * n * sizeof(cand_t));
    }
    sym_t *sym = s->sym;      // (n) symbols in text order
    cand_t *h = s->heap;      // (3n) binary min-heap
    size_t nh = 0;
    for (size_t i = 0; i < n; i++)
        sym[i] = (sym_t){ids[i], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(tok, sym, (int32_t)i, h, &nh);
    while (nh) {
        cand_t c = heap_pop(h, &nh);
        int32_t pos = c.pos, nx = sym[pos].next;
        if (sym[pos].id < 0 || nx < 0)
            continue;
        const tok_pair_slot_t *p = pair_get(&tok->merges, sym[pos].id, sym[nx].id);
        if (!p || p->rank != c.rank)
            continue;
        sym[pos].id = p->id;
        sym[pos].next = sym[nx].next;
        if (sym[nx].next >= 0)
            sym[sym[nx].next].prev = pos;
        sym[nx].id = -1;
        if (sym[pos].prev >= 0)
            push_pair(tok, sym, sym[pos].prev, h, &nh);
        push_pair(tok, sym, pos, h, &nh);
    }
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = sym[i].next)
        ids[m++] = sym[i].id;
    return m;
}

size_t tok_bpe_merge(const tokenizer_t *tok, int32_t *ids, size_t n, tok_scratch_t *s)
{
    if (n <= TOK_BPE_SCAN_MAX)
        return tok_bpe_merge_scan(tok, ids, n);
    return tok_bpe_merge_heap(tok, ids, n, s);
}

void tok_scratch_free(tok_scratch_t *s)
{
    free(s->sym);
    free(s->heap);
    s->sym = s->heap = NULL;
    s->cap = 0;
}
