/* The communication layer: ranks and the few collectives the stages need,
 * over MPI. No other layer includes mpi.h; they call comm_*.
 *
 * Every rank must make every collective call, in the same order, with an
 * empty contribution when it has nothing to give. Errors inside a collective
 * are returned as DEFT_ERR_MPI; a caller that cannot agree on a way out with
 * the other ranks ends the job with comm_abort. */
#ifndef DEFT_COMM_H
#define DEFT_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "util/common.h"

typedef struct comm comm_t;

/* Initialise MPI (a singleton of one rank when started without mpirun) and
 * the log's rank. Safe to call again: later calls do nothing. */
int comm_init(int *argc, char ***argv, deft_err_t *err);

/* All ranks of the job; valid between comm_init and comm_finalize. */
comm_t *comm_world(void);

int comm_rank(const comm_t *c);
int comm_size(const comm_t *c);

/* Finalise MPI; every rank calls it once, at the end of a command. */
void comm_finalize(void);

/* Print the message on this rank and end every rank of the job with status.
 * For failures the other ranks cannot learn about through a collective. */
_Noreturn void comm_abort(comm_t *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

int comm_barrier(comm_t *c, deft_err_t *err);

/* Error agreement: each rank passes its status code (0 when it is fine).
 * On return, the same on every rank: *code is the largest code of any rank
 * and *first_rank the lowest rank that had it (-1 when every rank was fine),
 * so that one rank can speak for the failure and all exit the same way. */
int comm_agree(comm_t *c, int mine, int *code, int *first_rank, deft_err_t *err);

/* In-place sums over ranks, buf[n] on every rank. int64 sums are exact, so
 * the result does not depend on the rank count. Lengths beyond one MPI call's
 * int count are cut into chunks. */
int comm_allreduce_sum_i64(comm_t *c, int64_t *buf, size_t n, deft_err_t *err);

/* In-place maximum / minimum over ranks, buf[n] on every rank. */
int comm_allreduce_max_i64(comm_t *c, int64_t *buf, size_t n, deft_err_t *err);
int comm_allreduce_min_i64(comm_t *c, int64_t *buf, size_t n, deft_err_t *err);

/* In-place double sum, buf[n] on every rank, added in rank order
 * (((r0 + r1) + r2) + ...) on rank 0 and broadcast: the same bits on every
 * rank and on every run with this rank count. Note: it does not make a sum
 * independent of the rank count; a caller that needs that must reduce fixed
 * units of work, or exact integers. */
int comm_allreduce_sum_f64(comm_t *c, double *buf, size_t n, deft_err_t *err);

/* In-place float sum over ranks, buf[n] on every rank, with the same bits on
 * every rank: rank b adds block b of every rank's buffer in rank order
 * (((r0 + r1) + r2) + ...), then the blocks are shared (a reduce-scatter
 * and an allgather, so each rank moves about 2n floats whatever the size). */
int comm_allreduce_sum_f32(comm_t *c, float *buf, size_t n, deft_err_t *err);

/* In-place float maximum over ranks, buf[n]; exact, so the same everywhere. */
int comm_allreduce_max_f32(comm_t *c, float *buf, size_t n, deft_err_t *err);

/* Every rank's n floats, in rank order: out[size * n] on every rank. */
int comm_allgather_f32(comm_t *c, const float *mine, size_t n, float *out, deft_err_t *err);

/* The same on root only (out may be NULL elsewhere): the others need no
 * room for the whole. */
int comm_gather_f32(comm_t *c, const float *mine, size_t n, float *out, int root,
                    deft_err_t *err);

/* Broadcast n bytes from root into buf on every rank. */
int comm_bcast_bytes(comm_t *c, void *buf, size_t n, int root, deft_err_t *err);

/* Broadcast root's NUL-terminated string: on the other ranks *s is replaced
 * by a new allocation (freed by the caller; any old value is freed). A NULL
 * string on root arrives as NULL. */
int comm_bcast_str(comm_t *c, char **s, int root, deft_err_t *err);

/* Variable-length blobs from every rank, in rank order. */
typedef struct {
    char *data;       /* all blobs back to back, rank 0 first, [off[nranks]] bytes */
    size_t *off;      /* [nranks + 1]: blob of rank r is data[off[r] .. off[r+1]) */
    int nranks;
} comm_blobs_t;

int comm_allgather_blobs(comm_t *c, const void *mine, size_t n, comm_blobs_t *out,
                         deft_err_t *err);
void comm_blobs_free(comm_blobs_t *b);

/* The ranks of c with the same color, ordered by key (then by rank in c),
 * as a new communicator; errors come back as codes, as on comm_world().
 * Every rank of c calls it. Release with comm_free. */
int comm_split(comm_t *c, int color, int key, comm_t **out, deft_err_t *err);

/* Releases a communicator made by comm_split (NULL and comm_world(): nothing). */
void comm_free(comm_t *c);

/* Largest number of bytes one MPI call moves; bigger transfers are cut into
 * chunks of at most this size. Lowering it lets tests exercise the chunked
 * paths on small buffers. 0 restores the default (1 GiB). */
void comm_set_max_chunk_bytes(size_t bytes);

#endif
