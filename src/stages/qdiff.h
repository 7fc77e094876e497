/* Stage qdiff: the discrepancy distribution of DEFT (Eq. 3),
 *     Q_diff[v] = C+[v] / sum(C+) - C-[v] / sum(C-),
 * from token counts of preferred (C+) and rejected (C-) responses, counted
 * by every rank over its share of the data and summed exactly (int64), so
 * the result does not depend on the rank count. Rank 0 writes the HDF5 file
 * described in docs/qdiff.md. */
#ifndef DEFT_STAGES_QDIFF_H
#define DEFT_STAGES_QDIFF_H

#include "data/records.h"
#include "mpi/comm.h"
#include "tok/tokenizer.h"
#include "util/common.h"

typedef struct {
    const data_source_t *src;  /* [nsrc] data files, in the run's order */
    int nsrc;
    const tokenizer_t *tok;
    const char *tok_path;      /* as given to tok_load: recorded with its checksum */
    double delta;              /* rankings with rewards: r' >= 1-delta positive, <= delta
                                  negative (0 <= delta < 0.5) */
    bool per_subset;           /* also one Q_diff per subset, under /subsets/<name> */
    bool strict;               /* an unusable record fails the run */
    bool keep_file_order;      /* PRO data: rank responses as in the file */
    int top;                   /* tokens printed each way at the end; 0: none */
    const char *out;           /* HDF5 file, written by rank 0 (atomically) */
    const char *version;       /* deft version, recorded in the file */
} qdiff_opts_t;

/* Which side each response of a record counts for: side[n_resp] gets +1
 * (positive), -1 (negative) or 0 (not counted). Pairs: best +1, other -1.
 * Longer rankings with rewards: min-max normalised r' >= 1-delta is +1,
 * r' <= delta is -1. Without rewards: first +1, last -1. */
void qdiff_sides(const pref_record_t *rec, double delta, int8_t *side);

/* q[v] = pos[v] / sum(pos) - neg[v] / sum(neg) for v < V (pos, neg, q: [V]).
 * A side with no tokens leaves q untouched and is DEFT_ERR_DATA, with a
 * message naming `what` ("the data", "subset helpful-base"). */
int qdiff_compute(const int64_t *pos, const int64_t *neg, int32_t V, double *q,
                  const char *what, deft_err_t *err);

/* The whole stage, collective over comm: read, tokenize and count, sum over
 * ranks, compute, report and write. Every rank returns the same code; a
 * failure's message is kept on one rank only (the others get an empty
 * err->msg), so that it is printed once. */
int qdiff_run(const qdiff_opts_t *o, comm_t *comm, deft_err_t *err);

/* Read a Q_diff written by qdiff_run: the global one (subset NULL) or one
 * subset's. *q is a new array of *V doubles. */
int qdiff_read(const char *path, const char *subset, double **q, int32_t *V,
               deft_err_t *err);

#endif
