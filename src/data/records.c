/* Reading preference data files into ranked records (docs/data-formats.md):
 * line sharding over ranks, UTF-8 and JSON checks, skip counting by reason,
 * subset labels, strict mode and the per-file report. */
#include "data/records.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/formats.h"
#include "data/line_reader.h"
#include "util/log.h"

static const char *const skip_names[SKIP_NREASONS] = {
    "invalid_json", "invalid_utf8", "missing_field", "wrong_type", "truncated",
    "no_marker", "identical", "empty_response", "tied_rewards",
};

const char *skip_reason_name(skip_reason_t r)
{
    return (unsigned)r < SKIP_NREASONS ? skip_names[r] : "unknown";
}

int sample_id_cmp(sample_id_t a, sample_id_t b)
{
    if (a.file != b.file)
        return a.file < b.file ? -1 : 1;
    if (a.line != b.line)
        return a.line < b.line ? -1 : 1;
    return 0;
}

// ----------------------------------------------------------------------------
// checks on the raw line

/* Offset of the first byte that breaks UTF-8 (overlong forms, surrogates and
 * code points past U+10FFFF included), or len when the text is valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xbf;  /* allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            if (c == 0xe0)
                lo = 0xa0;  /* overlong */
            if (c == 0xed)
                hi = 0x9f;  /* UTF-16 surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            if (c == 0xf0)
                lo = 0x90;  /* overlong */
            if (c == 0xf4)
                hi = 0x8f;  /* past U+10FFFF */
        } else {
            return i;
        }
        if (i + n > len || s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
        }
        i += n;
    }
    return len;
}

static bool line_is_blank(const strbuf_t *line)
{
    for (size_t i = 0; i < line->len; i++) {
        char c = line->data[i];
        if (c != ' ' && c != '\t' && c != '\r')
            return false;
    }
    return true;
}

/* Parses a raw line. The last line of a file that has no newline and does
 * not parse is taken for a file cut short (truncated), not for bad JSON. */
static json_t *line_parse(const strbuf_t *line, bool terminated, skip_info_t *why)
{
    size_t bad = utf8_invalid_at((const unsigned char *)line->data, line->len);
    if (bad < line->len) {
        skip_set(why, terminated ? SKIP_INVALID_UTF8 : SKIP_TRUNCATED, "line",
                 "invalid UTF-8 byte 0x%02x at column %zu%s",
                 (unsigned char)line->data[bad], bad + 1,
                 terminated ? "" : " of the last line, which has no newline: file cut short?");
        return NULL;
    }
    json_error_t jerr;
    json_t *obj = json_loadb(line->data, line->len,
                             JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!obj) {
        skip_set(why, terminated ? SKIP_INVALID_JSON : SKIP_TRUNCATED, "line",
                 "%s at column %d%s", jerr.text, jerr.column,
                 terminated ? "" : " of the last line, which has no newline: file cut short?");
    }
    return obj;
}

// ----------------------------------------------------------------------------
// accumulating records, subsets and statistics

typedef struct {
    pref_data_t *out;
    size_t cap;          /* capacity of out->rec */
    const read_opts_t *opts;
    int64_t turns_differ, turns_differ_line;  /* PRO records of this file whose turn
                                               * lists differ, and the first one */
} reader_t;

static int subset_index(pref_data_t *d, const char *name)
{
    for (int i = 0; i < d->nsubsets; i++) {
        if (strcmp(d->subsets[i], name) == 0)
            return i;
    }
    d->subsets = xrealloc(d->subsets, (size_t)(d->nsubsets + 1) * sizeof *d->subsets);
    d->subsets[d->nsubsets] = xstrdup(name);
    return d->nsubsets++;
}

/* The file's base name without .jsonl.gz or .jsonl. */
static char *default_subset(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    static const char *const exts[] = {".jsonl.gz", ".jsonl"};
    for (size_t i = 0; i < DEFT_ARRAY_LEN(exts); i++) {
        size_t n = strlen(exts[i]);
        if (len > n && strcmp(base + len - n, exts[i]) == 0)
            return xstrndup(base, len - n);
    }
    return xstrdup(base);
}

static void record_free(pref_record_t *r)
{
    free(r->prompt);
    for (int k = 0; k < r->n_resp; k++)
        free(r->resp[k]);
    free(r->resp);
    free(r->resp_len);
    free(r->reward);
    free(r->raw);
    memset(r, 0, sizeof *r);
}

/* Counts an unusable line; in strict mode turns it into the run's error. */
static int count_skip(skip_stats_t *st, const char *path, int64_t line, const skip_info_t *why,
                      bool strict, deft_err_t *err)
{
    int64_t *first = st->first_line[why->reason];
    if (st->count[why->reason] < SKIP_FIRST_LINES)
        first[st->count[why->reason]] = line;
    st->count[why->reason]++;
    if (strict) {
        return deft_fail(err, DEFT_ERR_DATA, "%s:%" PRId64 ": %s: %s: %s (strict mode stops "
                         "at the first unusable record; without it such records are counted "
                         "and skipped)", path, line, why->field,
                         skip_reason_name(why->reason), why->detail);
    }
    return DEFT_OK;
}

/* One kept, non-blank line: parse it and append a record or count a skip. */
static int read_line(reader_t *rd, const data_source_t *src, int file, data_format_t fmt,
                     const char *file_subset, const line_reader_t *lr, deft_err_t *err)
{
    pref_data_t *d = rd->out;
    skip_stats_t *st = &d->stats[file];
    skip_info_t why;
    st->records_read++;
    json_t *obj = line_parse(&lr->line, lr->terminated, &why);
    if (!obj)
        return count_skip(st, src->path, lr->lineno, &why, rd->opts->strict, err);
    pref_record_t rec = {0};
    char *meta_subset = NULL;
    bool differ = false;
    bool ok = format_parse(obj, fmt, rd->opts->keep_file_order, &rec, &meta_subset, &differ,
                           &why);
    json_decref(obj);
    if (ok && differ && rd->turns_differ++ == 0)
        rd->turns_differ_line = lr->lineno;
    if (!ok)
        return count_skip(st, src->path, lr->lineno, &why, rd->opts->strict, err);

    rec.id = (sample_id_t){file, lr->lineno};
    rec.subset = subset_index(d, src->subset ? src->subset
                                 : meta_subset ? meta_subset : file_subset);
    free(meta_subset);
    rec.raw = xstrndup(lr->line.data ? lr->line.data : "", lr->line.len);
    rec.raw_len = lr->line.len;
    if (d->n == rd->cap) {
        rd->cap = rd->cap ? 2 * rd->cap : 256;
        d->rec = xrealloc(d->rec, rd->cap * sizeof *d->rec);
    }
    d->rec[d->n++] = rec;
    st->records_used++;
    return DEFT_OK;
}

static int read_file(reader_t *rd, const data_source_t *src, int file, deft_err_t *err)
{
    const read_opts_t *opts = rd->opts;
    data_format_t fmt;
    if (!src->path)
        return deft_fail(err, DEFT_ERR_USAGE, "data file %d: no path", file);
    if (!format_from_name(src->format, &fmt))
        return deft_fail(err, DEFT_ERR_USAGE, "%s: format: unknown value \"%s\" "
                         "(expected auto, hh, pro or pair)", src->path, src->format);
    line_reader_t lr;
    int rc = line_reader_open(&lr, src->path, err);
    if (rc)
        return rc;
    char *file_subset = default_subset(src->path);
    skip_stats_t *st = &rd->out->stats[file];
    rd->turns_differ = 0;
    for (;;) {
        /* The next line is lr.lineno + 1; it is ours when lr.lineno % nranks == rank. */
        bool mine = lr.lineno % opts->nranks == opts->rank;
        line_status_t status;
        rc = line_reader_next(&lr, mine, &status, err);
        if (rc || status == LINE_EOF)
            break;
        if (status == LINE_TRUNCATED) {
            /* Every rank sees a broken stream; only the owner of the line counts
             * it, but in strict mode all fail so that no rank waits on the others. */
            skip_info_t why;
            if (lr.trailing)
                skip_set(&why, SKIP_TRUNCATED, "line", "after %" PRId64 " lines the gzip "
                         "stream is followed by bytes that are not gzip (lines appended to a "
                         "compressed file?); they are not read", lr.lineno - 1);
            else
                skip_set(&why, SKIP_TRUNCATED, "line", "the compressed stream ends early or "
                         "is corrupt after %" PRId64 " complete lines; the rest of the file "
                         "is lost", lr.lineno - 1);
            if (mine)
                st->records_read++;
            skip_stats_t scratch = {0};
            rc = count_skip(mine ? st : &scratch, src->path, lr.lineno, &why, opts->strict, err);
            break;
        }
        if (!mine || line_is_blank(&lr.line))
            continue;
        rc = read_line(rd, src, file, fmt, file_subset, &lr, err);
        if (rc)
            break;
    }
    if (rd->turns_differ) {
        log_warn("%s: %" PRId64 " records (first at line %" PRId64 ") give each response "
                 "its own turn list and the lists differ; the first list is the prompt",
                 src->path, rd->turns_differ, rd->turns_differ_line);
    }
    free(file_subset);
    line_reader_close(&lr);
    return rc;
}

int data_read(pref_data_t *out, const data_source_t *src, int nsrc, const read_opts_t *opts,
              deft_err_t *err)
{
    static const read_opts_t defaults = {.rank = 0, .nranks = 1};
    memset(out, 0, sizeof *out);
    if (!opts)
        opts = &defaults;
    if (opts->nranks < 1 || opts->rank < 0 || opts->rank >= opts->nranks)
        return deft_fail(err, DEFT_ERR_USAGE, "data: rank %d of %d is out of range",
                         opts->rank, opts->nranks);
    if (nsrc < 0 || (nsrc > 0 && !src))
        return deft_fail(err, DEFT_ERR_USAGE, "data: %d files listed", nsrc);
    out->nfiles = nsrc;
    out->stats = xcalloc((size_t)(nsrc > 0 ? nsrc : 1), sizeof *out->stats);
    reader_t rd = {.out = out, .opts = opts};
    for (int f = 0; f < nsrc; f++) {
        int rc = read_file(&rd, &src[f], f, err);
        if (rc) {
            data_free(out);
            return rc;
        }
    }
    return DEFT_OK;
}

void data_free(pref_data_t *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++)
        record_free(&d->rec[i]);
    free(d->rec);
    for (int i = 0; i < d->nsubsets; i++)
        free(d->subsets[i]);
    free(d->subsets);
    free(d->stats);
    memset(d, 0, sizeof *d);
}

// ----------------------------------------------------------------------------
// report

void data_report(const pref_data_t *d, const data_source_t *src, strbuf_t *out)
{
    int64_t read = 0, used = 0;
    for (int f = 0; f < d->nfiles; f++) {
        read += d->stats[f].records_read;
        used += d->stats[f].records_used;
    }
    sb_printf(out, "data: %" PRId64 " of %" PRId64 " records usable in %d file%s "
              "(%" PRId64 " skipped)\n", used, read, d->nfiles, d->nfiles == 1 ? "" : "s",
              read - used);
    for (int f = 0; f < d->nfiles; f++) {
        const skip_stats_t *st = &d->stats[f];
        sb_printf(out, "  %s: read %" PRId64 ", used %" PRId64, src ? src[f].path : "?",
                  st->records_read, st->records_used);
        int64_t skipped = st->records_read - st->records_used;
        sb_puts(out, skipped ? ", skipped:\n" : "\n");
        for (int r = 0; r < SKIP_NREASONS; r++) {
            if (!st->count[r])
                continue;
            sb_printf(out, "    %-15s %6" PRId64 "  line%s", skip_names[r], st->count[r],
                      st->count[r] == 1 ? "" : "s");
            for (int k = 0; k < SKIP_FIRST_LINES && st->first_line[r][k]; k++)
                sb_printf(out, "%s %" PRId64, k ? "," : "", st->first_line[r][k]);
            sb_puts(out, st->count[r] > SKIP_FIRST_LINES ? ", ...\n" : "\n");
        }
    }
}
