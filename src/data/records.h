/* Preference records and the readers that make them.
 *
 * A record is a prompt and a ranked list of responses, best first, with
 * optional reward scores, a subset label and a stable sample id (index of
 * the file in the run's data list, line number). Readers accept HH-RLHF
 * dialogue pairs, PRO ranked lists and {"prompt","chosen","rejected"} JSONL,
 * plain or gzip-compressed, and count every record they cannot use by
 * reason, with the first line numbers of each (docs/data-formats.md). */
#ifndef DEFT_RECORDS_H
#define DEFT_RECORDS_H

#include "util/common.h"

typedef struct {
    int32_t file;  /* index in the run's data list */
    int64_t line;  /* 1-based line number in that file */
} sample_id_t;

/* Global sample order: by file, then line. */
int sample_id_cmp(sample_id_t a, sample_id_t b);

typedef struct {
    sample_id_t id;
    char *prompt;         /* dialogue up to and including the last "\n\nAssistant:" */
    size_t prompt_len;
    int n_resp;           /* >= 2 */
    char **resp;          /* [n_resp], best first, verbatim (usually starts with a space) */
    size_t *resp_len;     /* [n_resp] */
    double *reward;       /* [n_resp] in ranked order, or NULL when the input has none */
    int subset;           /* index into pref_data_t.subsets */
    char *raw;            /* the input line verbatim, without its newline */
    size_t raw_len;
} pref_record_t;

typedef enum {
    SKIP_INVALID_JSON,
    SKIP_INVALID_UTF8,
    SKIP_MISSING_FIELD,
    SKIP_WRONG_TYPE,
    SKIP_TRUNCATED,       /* truncated gzip stream or unterminated last line */
    SKIP_NO_MARKER,       /* no "\n\nAssistant:" in the common prefix */
    SKIP_IDENTICAL,       /* two responses are the same */
    SKIP_EMPTY_RESPONSE,  /* a response is empty or whitespace only */
    SKIP_TIED_REWARDS,    /* all rewards equal */
    SKIP_NREASONS
} skip_reason_t;

const char *skip_reason_name(skip_reason_t r);  /* "invalid_json", ... */

#define SKIP_FIRST_LINES 5

/* Per input file: how many records of each kind were not used, and the
 * first line numbers of each. */
typedef struct {
    int64_t records_read;   /* lines this reader looked at (its share) */
    int64_t records_used;
    int64_t count[SKIP_NREASONS];
    int64_t first_line[SKIP_NREASONS][SKIP_FIRST_LINES];  /* 0 = none */
} skip_stats_t;

typedef struct {
    const char *path;
    const char *subset;   /* NULL: default */
    const char *format;   /* NULL or "auto", "hh", "pro", "pair" */
} data_source_t;

typedef struct {
    int rank, nranks;     /* this reader keeps the lines with (line - 1) % nranks == rank */
    bool strict;          /* first unusable record fails with file, line and reason */
    bool keep_file_order; /* PRO: rank responses as in the file, not by reward */
} read_opts_t;

typedef struct {
    pref_record_t *rec;   /* [n] in global sample order */
    size_t n;
    char **subsets;       /* subset names seen by this reader, [nsubsets] */
    int nsubsets;
    int nfiles;
    skip_stats_t *stats;  /* [nfiles] */
} pref_data_t;

int data_read(pref_data_t *out, const data_source_t *src, int nsrc, const read_opts_t *opts,
              deft_err_t *err);
void data_free(pref_data_t *d);

/* A one-paragraph report of used and skipped records per file and reason,
 * with first line numbers, for the log. */
void data_report(const pref_data_t *d, const data_source_t *src, strbuf_t *out);

#endif
