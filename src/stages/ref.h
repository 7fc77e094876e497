/* Stage ref: reference log-probs for DPO. The frozen starting model scores
 * every response of every training and evaluation sample once, before
 * training; the sums are kept in RUN_DIR/ref.h5 with checksums of the model
 * and of the token sequences, and reused when both match, so that training
 * holds one model only. */
#ifndef DEFT_STAGES_REF_H
#define DEFT_STAGES_REF_H

#include "model/llama.h"
#include "mpi/comm.h"
#include "stages/train.h"
#include "util/common.h"

/* Reference log-probs of n samples, in the order given. */
typedef struct {
    int64_t n;             /* samples */
    int64_t *off;          /* (n + 1,) response k of sample i is entry off[i] + k */
    double *sum;           /* (off[n],) sum_t log pi_ref over the scored tokens */
    int64_t *n_tok;        /* (off[n],) scored tokens: response + terminator */
} ref_logps_t;

/* SHA-256 of every parameter's name, shape and fp32 bytes, in order. */
void ref_model_checksum(const llama_model_t *m, char hex[65]);

/* SHA-256 of the sequences: every sample's id, prompt_end and token ids. */
void ref_data_checksum(const train_sample_t *s, int64_t n, char hex[65]);

/* Loads `path` when it was made from this model and these sequences
 * (checksums), else computes the log-probs with m, `batch` samples per
 * forward, every rank a share, and rank 0 writes `path` atomically.
 * *reused says which. Collective over comm. */
int ref_prepare(const char *path, llama_model_t *m, const train_sample_t *s, int64_t n,
                int batch, comm_t *comm, ref_logps_t *out, bool *reused, deft_err_t *err);

void ref_logps_free(ref_logps_t *r);

#endif
