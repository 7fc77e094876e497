/* Stage select: keep, within each data subset, the k = ceil(f * n) samples
 * with the lowest selection key (DEFT section 3.3: lowest R_Q), found by a
 * distributed radix select over (key, sample id) that never gathers the
 * scores on one rank. The algorithm and its cost are in docs/selection.md. */
#ifndef DEFT_SELECT_H
#define DEFT_SELECT_H

#include <stdbool.h>
#include <stdint.h>

#include "mpi/comm.h"
#include "util/common.h"

/* What orders the samples; every criterion keeps the k lowest keys. */
typedef enum {
    SELECT_BY_RQ,          /* key = R_Q (/score): DEFT's rule */
    SELECT_BY_LIKELIHOOD,  /* key = -loglik: the most likely responses first */
    SELECT_BY_RANDOM,      /* key = select_random_key(seed, file, line) */
    SELECT_BY_IFD,         /* key = -IFD over samples with IFD < 1 (Superfiltering) */
} select_by_t;

/* "rq", "likelihood", "random", "ifd"; returns false for any other text. */
bool select_by_parse(const char *text, select_by_t *out);
const char *select_by_name(select_by_t by);

// ----------------------------------------------------------------------------
// exact k = ceil(f * n)

/* A fraction as an exact decimal rational: f = mant * 10^exp10. */
typedef struct {
    uint64_t mant;   /* decimal significand, trailing zeros removed; 0 for f = 0 */
    int exp10;
} select_fraction_t;

/* Parse decimal text ("0.05", "5e-2", "1") exactly; f must lie in (0, 1].
 * DEFT_ERR_USAGE naming the text otherwise. */
int select_fraction_parse(const char *text, select_fraction_t *out, deft_err_t *err);

/* The same from a double, through its shortest round-trip decimal text, so
 * that 0.05 is 5/100 and not the binary value 0.05000000000000000277.
 * text (when non-NULL) receives that text. */
int select_fraction_from_double(double f, select_fraction_t *out, char text[32],
                                deft_err_t *err);

/* ceil(f * n) in integer arithmetic: no binary rounding error. */
int64_t select_k(select_fraction_t f, int64_t n);

// ----------------------------------------------------------------------------
// order keys

/* Order-preserving map of a finite double to uint64: a < b iff
 * key(a) < key(b). -0.0 maps to the key of +0.0 (they compare equal, so they
 * tie and the sample id decides). Only finite values may be passed. */
uint64_t select_key_from_double(double x);
double select_double_from_key(uint64_t key);

/* Sample id as one ordered integer: (file << 40) | line. Global sample order
 * (by file, then line) is the order of these integers. */
#define SELECT_LINE_BITS 40
uint64_t select_sample_id(int32_t file, int64_t line);
void select_sample_id_split(uint64_t id, int32_t *file, int64_t *line);

/* Key of the random baseline: a hash of (seed, file, line) only, so the same
 * for any rank count. splitmix64's finaliser applied three times:
 *   h = mix(mix(mix(seed) ^ file) ^ line),
 *   mix(z): z += 0x9e3779b97f4a7c15; z = (z ^ z>>30) * 0xbf58476d1ce4e5b9;
 *           z = (z ^ z>>27) * 0x94d049bb133111eb; return z ^ z>>31. */
uint64_t select_random_key(uint64_t seed, int32_t file, int64_t line);

// ----------------------------------------------------------------------------
// distributed order statistics

/* This rank's share of the samples. Arrays are [n], in any order. */
typedef struct {
    int64_t n;
    const uint64_t *key;      /* [n] order key, meaningful where eligible */
    const uint64_t *id;       /* [n] select_sample_id(file, line), unique over ranks */
    const int32_t *subset;    /* [n] in [0, nsubsets) */
    const uint8_t *eligible;  /* [n] 1: the sample takes part (a finite key) */
    int nsubsets;
} select_local_t;

/* A (key, id) pair: pairs order by key, then id. */
typedef struct {
    uint64_t key, id;
} select_pair_t;

/* For every subset s and query j, the pair of global 1-based rank
 * ranks[s * nq + j] among the eligible pairs of subset s, into
 * out[s * nq + j]; found[s * nq + j] = false when that rank is outside
 * [1, count of the subset]. Collective: every rank calls it with the same
 * nsubsets, nq and ranks. 16 rounds, each one all-reduce of
 * nsubsets * nq * 256 int64 counts (docs/selection.md). */
int select_order_stats(comm_t *comm, const select_local_t *loc, int nq, const int64_t *ranks,
                       select_pair_t *out, bool *found, deft_err_t *err);

/* Per-subset eligible counts summed over ranks: count[nsubsets]. Collective. */
int select_count_eligible(comm_t *comm, const select_local_t *loc, int64_t *count,
                          deft_err_t *err);

/* Key statistics of one subset's selection, in the order of the key. */
typedef struct {
    int64_t n_rows;          /* samples of the subset in the scores file */
    int64_t n_scored;        /* with a finite value: the n of k = ceil(f * n) */
    int64_t n_eligible;      /* that may be chosen (n_scored but for IFD >= 1) */
    int64_t k;               /* selected */
    select_pair_t last;      /* the k-th (largest selected) pair: the threshold */
    /* order statistics of the keys: min, the two middle ones, max */
    uint64_t sel_key[4], rej_key[4];
    bool has_sel, has_rej;
} select_subset_stats_t;

/* Mark selected[i] = 1 for this rank's samples among the k[s] lowest
 * eligible pairs of their subset s, and fill stats[nsubsets] (the same on
 * every rank). Checks that exactly k[s] samples were marked over all ranks.
 * Collective. */
int select_lowest_k(comm_t *comm, const select_local_t *loc, const int64_t *k,
                    uint8_t *selected, select_subset_stats_t *stats, deft_err_t *err);

// ----------------------------------------------------------------------------
// the stage

typedef struct {
    const char *scores_path;   /* scores.h5 of the score stage */
    const char *const *data;   /* [ndata] data files, in the run's order */
    int ndata;
    double fraction;           /* in (0, 1]; taken as its shortest decimal text */
    select_by_t by;
    uint64_t seed;             /* SELECT_BY_RANDOM only */
    const char *out_path;      /* selected.jsonl; the report goes beside it */
} select_opts_t;

/* Read this rank's slice of the scores, select, and write the chosen input
 * lines verbatim to out_path (global sample order, atomically) and the
 * per-subset report to the .report.json beside it. Collective. */
int select_run(comm_t *comm, const select_opts_t *opts, deft_err_t *err);

/* "dir/selected.jsonl" -> "dir/selected.report.json" (caller frees). */
char *select_report_path(const char *out_path);

#endif
