/* Stage score: the distribution reward R_Q (DEFT Eq. 6-9) of every sample's
 * best response under the starting model, computed by the identity
 * R_Q = (1/T) sum_t u . h_t with u = W_head^T Q_diff, together with the
 * response's mean log-likelihood and, optionally, IFD under a second model.
 * Data parallel over ranks in fixed global batches (docs/scoring.md). */
#ifndef DEFT_STAGES_SCORE_H
#define DEFT_STAGES_SCORE_H

#include "data/records.h"
#include "model/llama.h"
#include "mpi/comm.h"
#include "tok/tokenizer.h"
#include "util/common.h"

/* Why a sample has no score (/status in scores.h5; NaN in /score). */
typedef enum {
    SCORE_OK,
    SCORE_EMPTY_RESPONSE,  /* the best response has no tokens */
    SCORE_NONFINITE,       /* the model gave a non-finite value */
    SCORE_NSTATUS
} score_status_t;

const char *score_status_name(int status);  /* "ok", "empty_response", "non_finite" */

// ----------------------------------------------------------------------------
// sequences

/* One scoring sequence: BOS + the kept prompt tokens + the kept response
 * tokens, no EOS. The response occupies positions [resp_start, len). */
typedef struct {
    tok_ids_t ids;        /* [len] token ids */
    int resp_start;       /* p >= 1: position of the first response token */
    int prompt_tokens;    /* of the whole prompt, before truncation */
    int response_tokens;  /* of the whole response, before truncation */
    bool prompt_cut;      /* prompt tokens were dropped from the left */
    bool response_cut;    /* response tokens were dropped from the end */
} score_seq_t;

/* Join BOS (bos < 0: none), prompt[np] and resp[nr] within max_len (>= 3)
 * tokens. The prompt is cut from the left; only a response longer than
 * max_len - 2 is cut, at its end, so that BOS and one prompt token stay (the
 * position that predicts the first response token is then a prompt token).
 * nr must be >= 1. seq->ids is reset and refilled. */
void score_join(int32_t bos, const int32_t *prompt, int np, const int32_t *resp, int nr,
                int max_len, score_seq_t *seq);

/* Tokenize a record's prompt (plain text) and its response k (plain text,
 * as a continuation) and join them with score_join. A response of no tokens
 * leaves seq->ids empty and *status = SCORE_EMPTY_RESPONSE. */
int score_make_sequence(const tokenizer_t *tok, const pref_record_t *rec, int k, int max_len,
                        score_seq_t *seq, score_status_t *status, deft_err_t *err);

// ----------------------------------------------------------------------------
// batched scoring

/* n sequences scored in one forward pass, right-padded to the longest. */
typedef struct {
    int n;
    const int32_t *const *ids;  /* [n] pointers, sequence i is ids[i][0 .. len[i]) */
    const int32_t *len;         /* [n] lengths, each in [2, max position] */
    const int32_t *start;       /* [n] first response position, in [1, len[i]) */
} score_batch_t;

/* One forward pass of m over the batch. For sequence i with response
 * positions [p, L), T = L - p:
 *   rq[i]     = (1/T) sum_{t=p-1}^{L-2} u[i] . h_t      (u[i]: (d,), double)
 *   loglik[i] = (1/T) sum_{t=p}^{L-1} log p(ids[t] | ids[<t])
 * where h_t is the final normalised hidden state. rq (with u) and loglik
 * may each be NULL when not wanted; logits are made only for response
 * positions, a few rows at a time. Every output depends only on the batch,
 * never on which rank runs it (see docs/scoring.md on threads). */
int score_forward(llama_model_t *m, const score_batch_t *b, const double *const *u,
                  double *rq, double *loglik, deft_err_t *err);

/* The literal form, for tests and the benchmark: full logits rows z_t,
 * l_t = log_softmax(z_t) in fp32, rq[i] = sum_v qdiff[i][v] * mean_t l_t[v]
 * (qdiff[i]: (V,) double, V = the model's vocabulary). */
int score_forward_literal(llama_model_t *m, const score_batch_t *b,
                          const double *const *qdiff, double *rq, deft_err_t *err);

// ----------------------------------------------------------------------------
// the stage

typedef struct {
    const data_source_t *src;  /* [nsrc] data files, in the run's order */
    int nsrc;
    const tokenizer_t *tok;    /* the model's tokenizer (also the IFD model's) */
    const char *tok_path;
    const char *model;         /* Hugging Face folder of the starting model */
    const char *qdiff;         /* qdiff.h5 of the qdiff stage */
    const char *ifd_model;     /* NULL: no /ifd */
    int batch_size;            /* samples per global batch (B) */
    int max_len;               /* tokens per sequence, BOS included (>= 3) */
    bool strict;               /* an unusable record fails the run */
    bool keep_file_order;      /* PRO data: rank responses as in the file */
    const char *out;           /* scores.h5, written by rank 0 (atomically) */
    const char *version;       /* deft version, recorded in the file */
} score_opts_t;

/* The whole stage, collective over comm. Every rank reads every record and
 * loads the whole model; global batch i (samples [iB, iB + B) in sample
 * order) is scored on rank i % nranks, and rank 0 writes the per-sample
 * arrays in sample order. Every rank returns the same code. */
int score_run(const score_opts_t *o, comm_t *comm, deft_err_t *err);

#endif
