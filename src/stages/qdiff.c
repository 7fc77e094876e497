/* Stage qdiff: token counts of positive and negative responses and the
 * discrepancy distribution Q_diff (DEFT, Eq. 3), counted per rank with
 * OpenMP threads, summed exactly over ranks, written by rank 0 to HDF5. */
#include "stages/qdiff.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/h5.h"
#include "util/log.h"
#include "util/sha256.h"

// ----------------------------------------------------------------------------
// sides and the formula

void qdiff_sides(const pref_record_t *rec, double delta, int8_t *side)
{
    int n = rec->n_resp;
    for (int k = 0; k < n; k++)
        side[k] = 0;
    if (n == 2 || !rec->reward) {
        side[0] = 1;
        side[n - 1] = -1;
        return;
    }
    /* Min-max, not first-last: with keep_file_order the best-ranked response
     * need not hold the highest reward. */
    double lo = rec->reward[0], hi = rec->reward[0];
    for (int k = 1; k < n; k++) {
        lo = rec->reward[k] < lo ? rec->reward[k] : lo;
        hi = rec->reward[k] > hi ? rec->reward[k] : hi;
    }
    if (!(hi > lo))
        return;  /* all rewards tie: no preference (readers skip these) */
    for (int k = 0; k < n; k++) {
        double r = (rec->reward[k] - lo) / (hi - lo);
        side[k] = r >= 1.0 - delta ? 1 : r <= delta ? -1 : 0;
    }
}

int qdiff_compute(const int64_t *pos, const int64_t *neg, int32_t V, double *q,
                  const char *what, deft_err_t *err)
{
    int64_t np = 0, nn = 0;
    for (int32_t v = 0; v < V; v++) {
        np += pos[v];
        nn += neg[v];
    }
    if (np == 0 || nn == 0)
        return deft_fail(err, DEFT_ERR_DATA,
                         "%s: no %s response has any token (%lld positive, %lld negative "
                         "tokens), so Q_diff is undefined; check the data files and delta",
                         what, np == 0 ? "positive" : "negative", (long long)np,
                         (long long)nn);
    /* Totals are exact int64 and each term one division: every rank, on any
     * rank count, gets the same bits. */
    double dp = (double)np, dn = (double)nn;
    for (int32_t v = 0; v < V; v++)
        q[v] = (double)pos[v] / dp - (double)neg[v] / dn;
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// agreement between ranks

/* Collective. Every rank returns the largest code of any rank; only the
 * lowest rank holding it keeps its message, so the failure is told once. */
static int agree(comm_t *c, int code, deft_err_t *err)
{
    int agreed = 0, first = -1;
    deft_err_t merr;
    if (comm_agree(c, code, &agreed, &first, &merr) != DEFT_OK) {
        *err = merr;
        return DEFT_ERR_MPI;
    }
    if (agreed && comm_rank(c) != first) {
        err->code = agreed;
        err->msg[0] = '\0';
    }
    return agreed;
}

// ----------------------------------------------------------------------------
// merging what each rank read: skip statistics and subset names

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sums the counts of every file over ranks and keeps the smallest first
 * lines of each reason (ranks read disjoint lines). Collective. */
static int merge_skip_stats(comm_t *c, skip_stats_t *st, int nfiles, deft_err_t *err)
{
    enum { PER_FILE = 2 + SKIP_NREASONS };
    int64_t *sums = xcalloc((size_t)nfiles * PER_FILE + 1, sizeof *sums);
    for (int f = 0; f < nfiles; f++) {
        sums[f * PER_FILE] = st[f].records_read;
        sums[f * PER_FILE + 1] = st[f].records_used;
        for (int r = 0; r < SKIP_NREASONS; r++)
            sums[f * PER_FILE + 2 + r] = st[f].count[r];
    }
    int code = comm_allreduce_sum_i64(c, sums, (size_t)nfiles * PER_FILE, err);
    size_t nlines = (size_t)nfiles * SKIP_NREASONS * SKIP_FIRST_LINES;
    int64_t *mine = xcalloc(nlines + 1, sizeof *mine);  /* [nfiles][reasons][first lines] */
    for (int f = 0; f < nfiles; f++)
        memcpy(mine + (size_t)f * SKIP_NREASONS * SKIP_FIRST_LINES, st[f].first_line,
               sizeof st[f].first_line);
    comm_blobs_t all = {0};
    if (!code)
        code = comm_allgather_blobs(c, mine, nlines * sizeof *mine, &all, err);
    if (!code) {
        int nr = comm_size(c);
        int64_t *cand = xmalloc(sizeof *cand * SKIP_FIRST_LINES * (size_t)nr);
        for (int f = 0; f < nfiles; f++) {
            st[f].records_read = sums[f * PER_FILE];
            st[f].records_used = sums[f * PER_FILE + 1];
            for (int r = 0; r < SKIP_NREASONS; r++) {
                st[f].count[r] = sums[f * PER_FILE + 2 + r];
                size_t at = ((size_t)f * SKIP_NREASONS + r) * SKIP_FIRST_LINES;
                int m = 0;
                for (int k = 0; k < nr; k++) {
                    const int64_t *lines = (const int64_t *)(all.data + all.off[k]) + at;
                    for (int j = 0; j < SKIP_FIRST_LINES; j++)
                        if (lines[j] > 0)
                            cand[m++] = lines[j];
                }
                qsort(cand, (size_t)m, sizeof *cand, cmp_i64);
                for (int j = 0; j < SKIP_FIRST_LINES; j++)
                    st[f].first_line[r][j] = j < m ? cand[j] : 0;
            }
        }
        free(cand);
    }
    comm_blobs_free(&all);
    free(mine);
    free(sums);
    return code;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Subset names seen by any rank, sorted and unique (*names[*n]), and for
 * each of this rank's subsets its index there (*map[d->nsubsets]). */
static int merge_subsets(comm_t *c, const pref_data_t *d, char ***names, int *n, int **map,
                         deft_err_t *err)
{
    strbuf_t mine = {0};
    for (int s = 0; s < d->nsubsets; s++)
        sb_append(&mine, d->subsets[s], strlen(d->subsets[s]) + 1);
    comm_blobs_t all = {0};
    int code = comm_allgather_blobs(c, mine.data ? mine.data : "", mine.len, &all, err);
    sb_free(&mine);
    if (code)
        return code;
    size_t total = all.off[all.nranks], cap = 0;
    for (size_t i = 0; i < total; i++)
        cap += all.data[i] == '\0';
    char **list = xmalloc(sizeof *list * (cap + 1));
    int m = 0;
    for (size_t i = 0; i < total; i += strlen(all.data + i) + 1)
        list[m++] = all.data + i;
    qsort(list, (size_t)m, sizeof *list, cmp_str);
    int u = 0;
    for (int i = 0; i < m; i++)
        if (u == 0 || strcmp(list[u - 1], list[i]))
            list[u++] = list[i];
    *names = xmalloc(sizeof **names * (size_t)(u + 1));
    for (int i = 0; i < u; i++)
        (*names)[i] = xstrdup(list[i]);
    *n = u;
    *map = xmalloc(sizeof **map * (size_t)(d->nsubsets + 1));
    for (int s = 0; s < d->nsubsets; s++) {
        char **hit = bsearch(&d->subsets[s], *names, (size_t)u, sizeof **names, cmp_str);
        (*map)[s] = (int)(hit - *names);
    }
    free(list);
    comm_blobs_free(&all);
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// counting

/* Counts of one rank, then (after the sum) of all ranks. A group is one
 * subset with per_subset, else the whole data. */
typedef struct {
    int ngroups;
    int32_t V;
    int64_t *counts;     /* [ngroups][2][V]: [g][0] positive, [g][1] negative token counts */
    int64_t *responses;  /* [ngroups][2]: responses counted on each side */
    int64_t *records;    /* [ngroups]: records read into the group */
} tally_t;

static size_t tally_len(const tally_t *t) { return (size_t)t->ngroups * 2 * (size_t)t->V; }

static void tally_init(tally_t *t, int ngroups, int32_t V)
{
    t->ngroups = ngroups;
    t->V = V;
    t->counts = xcalloc(tally_len(t), sizeof *t->counts);
    t->responses = xcalloc((size_t)ngroups * 2, sizeof *t->responses);
    t->records = xcalloc((size_t)ngroups, sizeof *t->records);
}

static void tally_free(tally_t *t)
{
    free(t->counts);
    free(t->responses);
    free(t->records);
}

static void tally_add(tally_t *dst, const tally_t *src)
{
    for (size_t i = 0; i < tally_len(dst); i++)
        dst->counts[i] += src->counts[i];
    for (int g = 0; g < dst->ngroups; g++) {
        dst->records[g] += src->records[g];
        dst->responses[2 * g] += src->responses[2 * g];
        dst->responses[2 * g + 1] += src->responses[2 * g + 1];
    }
}

static int tally_allreduce(comm_t *c, tally_t *t, deft_err_t *err)
{
    int code = comm_allreduce_sum_i64(c, t->counts, tally_len(t), err);
    if (!code)
        code = comm_allreduce_sum_i64(c, t->responses, (size_t)t->ngroups * 2, err);
    if (!code)
        code = comm_allreduce_sum_i64(c, t->records, (size_t)t->ngroups, err);
    return code;
}

/* Tokenize and count one record into t (a thread's own tally). */
static int count_record(const pref_record_t *rec, int g, const tokenizer_t *tok,
                        unsigned flags, double delta, tally_t *t, tok_ids_t *ids,
                        int64_t *ntok, deft_err_t *err)
{
    int8_t side[rec->n_resp];
    qdiff_sides(rec, delta, side);
    t->records[g]++;
    for (int k = 0; k < rec->n_resp; k++) {
        if (!side[k])
            continue;
        int s = side[k] > 0 ? 0 : 1;
        ids->n = 0;
        int code = tok_encode(tok, rec->resp[k], rec->resp_len[k], flags, ids, err);
        if (code)
            return code;
        int64_t *cnt = t->counts + ((size_t)g * 2 + (size_t)s) * (size_t)t->V;
        for (size_t j = 0; j < ids->n; j++) {
            int32_t id = ids->ids[j];
            if (id < 0 || id >= t->V)
                return deft_fail(err, DEFT_ERR_INTERNAL, "token id %d outside the "
                                 "vocabulary of %d", id, t->V);
            cnt[id]++;
        }
        t->responses[2 * g + s]++;
        *ntok += (int64_t)ids->n;
    }
    return DEFT_OK;
}

/* Counts this rank's records with OpenMP threads, each into its own tally,
 * summed at the end: integer sums, so the thread count changes nothing. On
 * failure the error of the earliest failing record (in sample order) wins. */
static int count_records(const pref_data_t *d, const int *group_of, const qdiff_opts_t *o,
                         tally_t *out, const char *const *src_paths, deft_err_t *err)
{
    /* Responses continue their prompt: SentencePiece-style tokenizers must
     * not add the dummy-prefix '▁' that starts a whole text. */
    unsigned flags = strcmp(tok_kind(o->tok), "bpe-sentencepiece") ? 0 : TOK_CONTINUATION;
    int nthreads = omp_get_max_threads();
    tally_t *th = xcalloc((size_t)nthreads, sizeof *th);
    size_t fail_at = (size_t)-1;
    int64_t done = 0, tokens = 0;
    progress_t prog;
    progress_start(&prog, "qdiff: counting, rank 0's share", "records", (int64_t)d->n);
#pragma omp parallel num_threads(nthreads)
    {
        int tid = omp_get_thread_num();
        tally_init(&th[tid], out->ngroups, out->V);
        tok_ids_t ids = {0};
        deft_err_t terr;
#pragma omp for schedule(dynamic, 16)
        for (size_t i = 0; i < d->n; i++) {
            size_t stop;
#pragma omp atomic read
            stop = fail_at;
            if (i > stop)
                continue;
            const pref_record_t *rec = &d->rec[i];
            int64_t ntok = 0;
            int code = count_record(rec, group_of[rec->subset], o->tok, flags, o->delta,
                                    &th[tid], &ids, &ntok, &terr);
            if (code) {
#pragma omp critical(qdiff_fail)
                if (i < fail_at) {
#pragma omp atomic write
                    fail_at = i;
                    deft_fail(err, (deft_code_t)code, "%s:%lld: %s",
                              src_paths[rec->id.file], (long long)rec->id.line, terr.msg);
                }
            }
#pragma omp atomic
            done++;
#pragma omp atomic
            tokens += ntok;
            if (tid == 0) {
                int64_t dn, tk;
#pragma omp atomic read
                dn = done;
#pragma omp atomic read
                tk = tokens;
                progress_update(&prog, dn, tk);
            }
        }
        tok_ids_free(&ids);
    }
    for (int t = 0; t < nthreads; t++) {
        tally_add(out, &th[t]);
        tally_free(&th[t]);
    }
    free(th);
    if (fail_at != (size_t)-1)
        return err->code;
    progress_end(&prog, done, tokens);
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// checksums of the inputs

/* Tokenizer file that tok_load reads for a path: the path itself, or in a
 * folder tokenizer.json, else tokenizer.model. */
static char *tokenizer_file(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return xstrdup(path);
    strbuf_t p = {0};
    sb_printf(&p, "%s/tokenizer.json", path);
    if (stat(p.data, &sb) != 0) {
        p.len = 0;
        sb_printf(&p, "%s/tokenizer.model", path);
    }
    return p.data;
}

/* SHA-256 of every data file and the tokenizer file (the last entry of
 * hex[nsrc + 1][65]); file i is hashed by rank i % nranks. Collective. */
static int hash_inputs(comm_t *c, const qdiff_opts_t *o, const char *tok_file,
                       char (*hex)[65], deft_err_t *err)
{
    int n = o->nsrc + 1, rank = comm_rank(c), size = comm_size(c);
    memset(hex, 0, (size_t)n * 65);
    int code = DEFT_OK;
    for (int i = rank; i < n && !code; i += size)
        code = sha256_file(i < o->nsrc ? o->src[i].path : tok_file, hex[i], err);
    if ((code = agree(c, code, err)))
        return code;
    comm_blobs_t all;
    if ((code = comm_allgather_blobs(c, hex, (size_t)n * 65, &all, err)))
        return code;
    for (int i = 0; i < n; i++)
        memcpy(hex[i], all.data + all.off[i % size] + (size_t)i * 65, 65);
    comm_blobs_free(&all);
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// the report at the end

static bool utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        int len = s[i] < 0x80 ? 1 : (s[i] >> 5) == 6 ? 2 : (s[i] >> 4) == 14 ? 3
                : (s[i] >> 3) == 30 ? 4 : 0;
        if (!len || i + (size_t)len > n)
            return false;
        for (int k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        i += (size_t)len;
    }
    return true;
}

/* A token's bytes for a terminal: controls escaped, and bytes of a piece
 * that is not whole UTF-8 (byte-level tokens split characters) as \xNN. */
static void escape_piece(const char *s, size_t n, strbuf_t *out)
{
    const unsigned char *u = (const unsigned char *)s;
    bool utf8 = utf8_valid(u, n);
    for (size_t i = 0; i < n; i++) {
        if (u[i] == '\n')
            sb_puts(out, "\\n");
        else if (u[i] == '\t')
            sb_puts(out, "\\t");
        else if (u[i] == '\r')
            sb_puts(out, "\\r");
        else if (u[i] == '\\' || u[i] == '"')
            sb_printf(out, "\\%c", u[i]);
        else if (u[i] < 0x20 || u[i] == 0x7f || (u[i] >= 0x80 && !utf8))
            sb_printf(out, "\\x%02x", u[i]);
        else
            sb_append(out, s + i, 1);
    }
}

typedef struct {
    double q;
    int32_t id;
} ranked_t;

static int cmp_ranked_desc(const void *a, const void *b)
{
    const ranked_t *x = a, *y = b;
    if (x->q != y->q)
        return x->q < y->q ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

static void print_top(const tokenizer_t *tok, const double *q, const int64_t *pos,
                      const int64_t *neg, int32_t V, int top)
{
    ranked_t *r = xmalloc(sizeof *r * (size_t)V);
    for (int32_t v = 0; v < V; v++)
        r[v] = (ranked_t){q[v], v};
    qsort(r, (size_t)V, sizeof *r, cmp_ranked_desc);
    strbuf_t line = {0};
    for (int pass = 0; pass < 2; pass++) {
        log_info("%s", pass == 0 ? "tokens most typical of preferred responses (Q_diff > 0):"
                                 : "tokens most typical of rejected responses (Q_diff < 0):");
        log_info("  %4s  %7s  %-24s  %12s  %10s  %10s", "rank", "id", "token", "Q_diff",
                 "C+", "C-");
        for (int k = 0; k < top && k < V; k++) {
            const ranked_t *e = pass == 0 ? &r[k] : &r[V - 1 - k];
            if (pass == 0 ? !(e->q > 0) : !(e->q < 0))
                break;
            size_t len = 0;
            const char *piece = tok_piece(tok, e->id, &len);
            line.len = 0;
            sb_puts(&line, "\"");
            if (piece)
                escape_piece(piece, len, &line);
            sb_puts(&line, "\"");
            /* Pad by characters, not bytes, so that UTF-8 tokens keep the columns. */
            size_t chars = 0;
            for (size_t i = 0; i < line.len; i++)
                chars += ((unsigned char)line.data[i] & 0xc0) != 0x80;
            for (; chars < 24; chars++)
                sb_puts(&line, " ");
            log_info("  %4d  %7d  %s  %+12.4e  %10lld  %10lld", k + 1, e->id, line.data,
                     e->q, (long long)pos[e->id], (long long)neg[e->id]);
        }
    }
    sb_free(&line);
    free(r);
}

// ----------------------------------------------------------------------------
// the HDF5 file

/* /counts/positive, /counts/negative (int64[V]) and /qdiff (float64[V], when
 * q is non-NULL) under `prefix` ("" for the file's root). */
static int write_group(h5_file_t *f, const char *prefix, const int64_t *pos,
                       const int64_t *neg, const double *q, int32_t V, deft_err_t *err)
{
    strbuf_t p = {0};
    int code;
    sb_printf(&p, "%s/counts/positive", prefix);
    code = h5_write_i64(f, p.data, pos, (size_t)V, err);
    p.len = 0;
    sb_printf(&p, "%s/counts/negative", prefix);
    if (!code)
        code = h5_write_i64(f, p.data, neg, (size_t)V, err);
    p.len = 0;
    sb_printf(&p, "%s/qdiff", prefix);
    if (!code && q)
        code = h5_write_f64(f, p.data, q, (size_t)V, err);
    sb_free(&p);
    return code;
}

static int64_t sum_i64(const int64_t *x, int32_t n)
{
    int64_t s = 0;
    for (int32_t i = 0; i < n; i++)
        s += x[i];
    return s;
}

/* Attributes that every group (root or subset) carries. */
static int write_group_attrs(h5_file_t *f, const char *obj, const int64_t *pos,
                             const int64_t *neg, int64_t records, const int64_t *responses,
                             int32_t V, deft_err_t *err)
{
    int code;
    if ((code = h5_set_attr_i64(f, obj, "tokens_positive", sum_i64(pos, V), err)) ||
        (code = h5_set_attr_i64(f, obj, "tokens_negative", sum_i64(neg, V), err)) ||
        (code = h5_set_attr_i64(f, obj, "responses_positive", responses[0], err)) ||
        (code = h5_set_attr_i64(f, obj, "responses_negative", responses[1], err)))
        return code;
    return h5_set_attr_i64(f, obj, "records_counted", records, err);
}

typedef struct {
    const qdiff_opts_t *o;
    const skip_stats_t *stats;   /* [nsrc], merged over ranks */
    const tally_t *t;            /* summed over ranks */
    const int64_t *pos, *neg;    /* [V] over all groups */
    const double *q;             /* [V] */
    char **subsets;              /* [nsubsets] (per_subset) */
    int nsubsets;
    double **q_sub;              /* [nsubsets], NULL where undefined */
    const char *tok_file;
    char (*hex)[65];             /* [nsrc + 1], tokenizer last */
} qdiff_output_t;

static int write_root_attrs(h5_file_t *f, const qdiff_output_t *w, deft_err_t *err)
{
    const qdiff_opts_t *o = w->o;
    int64_t read = 0, used = 0, skipped[SKIP_NREASONS] = {0};
    for (int i = 0; i < o->nsrc; i++) {
        read += w->stats[i].records_read;
        used += w->stats[i].records_used;
        for (int r = 0; r < SKIP_NREASONS; r++)
            skipped[r] += w->stats[i].count[r];
    }
    int code;
    if ((code = h5_set_attr_i64(f, "/", "records_read", read, err)) ||
        (code = h5_set_attr_i64(f, "/", "records_used", used, err)))
        return code;
    for (int r = 0; r < SKIP_NREASONS && !code; r++) {
        char name[64];
        snprintf(name, sizeof name, "skipped_%s", skip_reason_name((skip_reason_t)r));
        code = h5_set_attr_i64(f, "/", name, skipped[r], err);
    }
    const char **paths = xmalloc(sizeof *paths * (size_t)(o->nsrc + 1));
    const char **sums = xmalloc(sizeof *sums * (size_t)(o->nsrc + 1));
    for (int i = 0; i < o->nsrc; i++) {
        paths[i] = o->src[i].path;
        sums[i] = w->hex[i];
    }
    if (!code)
        code = h5_set_attr_str_list(f, "/", "data_files", paths, (size_t)o->nsrc, err);
    if (!code)
        code = h5_set_attr_str_list(f, "/", "data_sha256", sums, (size_t)o->nsrc, err);
    free(paths);
    free(sums);
    if (code ||
        (code = h5_set_attr_i64(f, "/", "vocab_size", w->t->V, err)) ||
        (code = h5_set_attr_f64(f, "/", "delta", o->delta, err)) ||
        (code = h5_set_attr_str(f, "/", "tokenizer", o->tok_path, err)) ||
        (code = h5_set_attr_str(f, "/", "tokenizer_file", w->tok_file, err)) ||
        (code = h5_set_attr_str(f, "/", "tokenizer_sha256", w->hex[o->nsrc], err)) ||
        (code = h5_set_attr_str(f, "/", "tokenizer_kind", tok_kind(o->tok), err)) ||
        (code = h5_set_attr_i64(f, "/", "per_subset", o->per_subset, err)) ||
        (code = h5_set_attr_str(f, "/", "deft_version", o->version, err)))
        return code;
    int64_t resp[2] = {0, 0}, records = 0;
    for (int g = 0; g < w->t->ngroups; g++) {
        resp[0] += w->t->responses[2 * g];
        resp[1] += w->t->responses[2 * g + 1];
        records += w->t->records[g];
    }
    return write_group_attrs(f, "/", w->pos, w->neg, records, resp, w->t->V, err);
}

static int write_output(const qdiff_output_t *w, deft_err_t *err)
{
    h5_file_t *f;
    int32_t V = w->t->V;
    int code = h5_create(&f, w->o->out, err);
    if (code)
        return code;
    code = write_group(f, "", w->pos, w->neg, w->q, V, err);
    if (!code)
        code = write_root_attrs(f, w, err);
    strbuf_t p = {0};
    for (int s = 0; s < w->nsubsets && !code; s++) {
        const int64_t *pos = w->t->counts + (size_t)s * 2 * (size_t)V;
        p.len = 0;
        sb_printf(&p, "/subsets/%s", w->subsets[s]);
        code = write_group(f, p.data, pos, pos + V, w->q_sub[s], V, err);
        if (!code)
            code = write_group_attrs(f, p.data, pos, pos + V, w->t->records[s],
                                     w->t->responses + 2 * s, V, err);
        if (!code)
            code = h5_set_attr_i64(f, p.data, "qdiff_defined", w->q_sub[s] != NULL, err);
    }
    sb_free(&p);
    if (code) {
        h5_discard(f);
        return code;
    }
    return h5_commit(f, err);
}

// ----------------------------------------------------------------------------
// the stage

static void log_start(const qdiff_opts_t *o, comm_t *c, const pref_data_t *d)
{
    log_info("qdiff: %d data file%s, tokenizer %s (%s, %d ids), delta %g, %s", o->nsrc,
             o->nsrc == 1 ? "" : "s", o->tok_path, tok_kind(o->tok), tok_vocab_size(o->tok),
             o->delta, o->per_subset ? "global and per-subset Q_diff" : "global Q_diff");
    log_info("qdiff: %d rank%s x %d thread%s; rank 0 counts %zu records", comm_size(c),
             comm_size(c) == 1 ? "" : "s", omp_get_max_threads(),
             omp_get_max_threads() == 1 ? "" : "s", d->n);
}

/* Reads this rank's share and merges the skip statistics; on return every
 * rank holds the same merged stats in d->stats. *have_data says whether d
 * holds this rank's records (to be freed), whatever the code. */
static int read_share(const qdiff_opts_t *o, comm_t *c, pref_data_t *d, bool *have_data,
                      deft_err_t *err)
{
    read_opts_t ro = {.rank = comm_rank(c), .nranks = comm_size(c), .strict = o->strict,
                      .keep_file_order = o->keep_file_order};
    memset(d, 0, sizeof *d);
    int code = deft_check_not_input(o->out, o->tok_path, "qdiff: out", err);
    for (int i = 0; i < o->nsrc && !code; i++)
        code = deft_check_not_input(o->out, o->src[i].path, "qdiff: out", err);
    if (!code) {
        code = data_read(d, o->src, o->nsrc, &ro, err);
        *have_data = code == DEFT_OK;
    }
    if (!code && d->nfiles != o->nsrc)
        code = deft_fail(err, DEFT_ERR_INTERNAL, "reader returned %d files for %d sources",
                         d->nfiles, o->nsrc);
    /* Agree before any other collective: a rank that failed to read must not
     * leave the others waiting in a sum. */
    if ((code = agree(c, code, err)))
        return code;
    code = merge_skip_stats(c, d->stats, d->nfiles, err);
    if (!code && comm_rank(c) == 0) {
        strbuf_t rep = {0};
        data_report(d, o->src, &rep);
        while (rep.len && rep.data[rep.len - 1] == '\n')
            rep.data[--rep.len] = '\0';
        if (rep.len)
            log_info("%s", rep.data);
        sb_free(&rep);
    }
    return code;
}

/* Per-subset Q_diff where both sides have tokens; a subset with an empty
 * side is reported and left without /qdiff (its counts are still written),
 * since the global Q_diff remains valid. */
static double **compute_subsets(const tally_t *t, char **names, int n)
{
    double **q = xcalloc((size_t)n + 1, sizeof *q);
    for (int s = 0; s < n; s++) {
        const int64_t *pos = t->counts + (size_t)s * 2 * (size_t)t->V;
        char what[300];
        snprintf(what, sizeof what, "subset %s", names[s]);
        deft_err_t e;
        q[s] = xmalloc(sizeof **q * (size_t)t->V);
        if (qdiff_compute(pos, pos + t->V, t->V, q[s], what, &e)) {
            log_info("warning: %s; /subsets/%s/qdiff is not written", e.msg, names[s]);
            free(q[s]);
            q[s] = NULL;
        }
    }
    return q;
}

static void log_summary(const qdiff_opts_t *o, const tally_t *t, char **subsets,
                        const int64_t *pos, const int64_t *neg, const double *q)
{
    int32_t V = t->V;
    double s = 0;
    for (int32_t v = 0; v < V; v++)
        s += q[v];
    for (int g = 0; g < t->ngroups && subsets; g++) {
        const int64_t *cg = t->counts + (size_t)g * 2 * (size_t)V;
        log_info("qdiff: subset %-28s %8lld records  %10lld + tokens  %10lld - tokens",
                 subsets[g], (long long)t->records[g], (long long)sum_i64(cg, V),
                 (long long)sum_i64(cg + V, V));
    }
    log_info("qdiff: %lld positive tokens, %lld negative tokens, %d ids; "
             "sum(Q_diff) = %.3g (should be ~0)",
             (long long)sum_i64(pos, V), (long long)sum_i64(neg, V), V, s);
    if (o->top > 0)
        print_top(o->tok, q, pos, neg, V, o->top);
}

int qdiff_run(const qdiff_opts_t *o, comm_t *c, deft_err_t *err)
{
    pref_data_t d;
    bool have_data = false;
    int code = read_share(o, c, &d, &have_data, err);
    if (code) {
        if (have_data)
            data_free(&d);
        return code;
    }
    log_start(o, c, &d);

    char **subsets = NULL;
    int nsub = 0, *sub_map = NULL, *group_of = xcalloc((size_t)d.nsubsets + 1, sizeof(int));
    if (o->per_subset) {
        code = merge_subsets(c, &d, &subsets, &nsub, &sub_map, err);
        for (int s = 0; s < d.nsubsets && !code; s++)
            group_of[s] = sub_map[s];
        for (int s = 0; s < nsub && !code; s++)
            if (strchr(subsets[s], '/') || !strcmp(subsets[s], ".") || !subsets[s][0])
                code = deft_fail(err, DEFT_ERR_DATA, "subset name \"%s\" cannot name an HDF5 "
                                 "group (no '/', not empty); rename it in the data list",
                                 subsets[s]);
    }
    int32_t V = tok_vocab_size(o->tok);
    tally_t t = {0};
    tally_init(&t, o->per_subset ? nsub : 1, V);
    const char **paths = xmalloc(sizeof *paths * (size_t)(o->nsrc + 1));
    for (int i = 0; i < o->nsrc; i++)
        paths[i] = o->src[i].path;
    if (!code)
        code = count_records(&d, group_of, o, &t, paths, err);
    free(paths);
    code = agree(c, code, err);
    if (!code)
        code = tally_allreduce(c, &t, err);

    /* Every rank holds the same sums now, so every rank decides the same. */
    int64_t *pos = xcalloc((size_t)V, sizeof *pos), *neg = xcalloc((size_t)V, sizeof *neg);
    double *q = xmalloc(sizeof *q * (size_t)V);  /* [V] global Q_diff */
    for (int g = 0; g < t.ngroups && !code; g++) {
        const int64_t *cg = t.counts + (size_t)g * 2 * (size_t)V;
        for (int32_t v = 0; v < V; v++) {
            pos[v] += cg[v];
            neg[v] += cg[V + v];
        }
    }
    if (!code)
        code = agree(c, qdiff_compute(pos, neg, V, q, "the data", err), err);
    double **q_sub = NULL;
    char (*hex)[65] = xmalloc((size_t)(o->nsrc + 1) * 65);  /* [nsrc + 1] sha256 hex */
    char *tok_file = tokenizer_file(o->tok_path);
    if (!code) {
        q_sub = o->per_subset ? compute_subsets(&t, subsets, nsub) : NULL;
        code = hash_inputs(c, o, tok_file, hex, err);
    }
    if (!code) {
        int wcode = DEFT_OK;
        if (comm_rank(c) == 0) {
            log_summary(o, &t, subsets, pos, neg, q);
            qdiff_output_t w = {o, d.stats, &t, pos, neg, q, subsets, nsub, q_sub, tok_file,
                                hex};
            wcode = write_output(&w, err);
            if (!wcode)
                log_info("qdiff: wrote %s", o->out);
        }
        code = agree(c, wcode, err);
    }

    for (int s = 0; s < nsub; s++) {
        free(subsets[s]);
        if (q_sub)
            free(q_sub[s]);
    }
    free(hex);
    free(tok_file);
    free(q_sub);
    free(subsets);
    free(sub_map);
    free(group_of);
    free(pos);
    free(neg);
    free(q);
    tally_free(&t);
    data_free(&d);
    return code;
}

// ----------------------------------------------------------------------------
// reading it back

/* A Q_diff is a difference of two frequency distributions: every value in
 * [-1, 1] and their sum 0 (up to rounding). A file that breaks this is
 * corrupt or is not a Q_diff, and would turn R_Q and the DEFT term into
 * NaN or nonsense far from the cause. */
static int check_values(const char *path, const char *name, const double *q, size_t n,
                        deft_err_t *err)
{
    double sum = 0;
    for (size_t v = 0; v < n; v++) {
        if (!(fabs(q[v]) <= 1.0))
            return deft_fail(err, DEFT_ERR_FORMAT, "%s: %s[%zu] = %g, outside [-1, 1]: the "
                             "file is corrupt or not a Q_diff from deft qdiff", path, name, v,
                             q[v]);
        sum += q[v];
    }
    if (fabs(sum) > 1e-6)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: %s sums to %g, not 0: the file is corrupt "
                         "or not a Q_diff from deft qdiff", path, name, sum);
    return DEFT_OK;
}

int qdiff_read(const char *path, const char *subset, double **q, int32_t *V,
               deft_err_t *err)
{
    *q = NULL;
    *V = 0;
    h5_file_t *f;
    int code = h5_open(&f, path, err);
    if (code)
        return code;
    strbuf_t p = {0};
    if (subset)
        sb_printf(&p, "/subsets/%s/qdiff", subset);
    else
        sb_puts(&p, "/qdiff");
    size_t n = 0;
    int64_t vocab = 0;
    if (subset && !h5_exists(f, p.data, NULL))
        code = deft_fail(err, DEFT_ERR_DATA, "%s: no Q_diff for subset %s (was qdiff run "
                         "with per_subset, and do both sides of that subset have tokens?)",
                         path, subset);
    if (!code)
        code = h5_read_f64(f, p.data, q, &n, err);
    if (!code)
        code = h5_get_attr_i64(f, "/", "vocab_size", &vocab, err);
    if (!code && vocab != (int64_t)n)
        code = deft_fail(err, DEFT_ERR_FORMAT, "%s: %s has %zu values but vocab_size is %lld",
                         path, p.data, n, (long long)vocab);
    if (!code)
        code = check_values(path, p.data, *q, n, err);
    if (code) {
        free(*q);
        *q = NULL;
    } else {
        *V = (int32_t)n;
    }
    sb_free(&p);
    h5_close(f);
    return code;
}
