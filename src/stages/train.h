/* Stage train: preference training of a Llama model by SFT, DPO or PRO with
 * the DEFT term -omega * R_Q (paper Eq. 10), data parallel over MPI ranks,
 * with periodic evaluation, metrics.jsonl, checkpoints, exact resume and
 * clean stops on SIGTERM/SIGUSR1. The loop is described in docs/training.md. */
#ifndef DEFT_STAGES_TRAIN_H
#define DEFT_STAGES_TRAIN_H

#include "data/records.h"
#include "model/losses.h"
#include "model/optim.h"
#include "mpi/comm.h"
#include "tok/tokenizer.h"
#include "util/common.h"

// ----------------------------------------------------------------------------
// tokenized samples: the sequences the model is trained and evaluated on

/* One preference sample as token sequences. Response k is the sequence
 * BOS + prompt + y_k + EOS, ids[k] of len[k] tokens; the first `prompt_end`
 * tokens (BOS + prompt) are the same in every response. Logits row t
 * predicts token t + 1, so the scored tokens of y_k (its response tokens and
 * the terminator, len[k] - prompt_end of them) are predicted by rows
 * [prompt_end - 1, len[k] - 1), and R_Q covers the first len[k] - prompt_end
 * - 1 of those rows (the terminator excluded). */
typedef struct {
    sample_id_t id;
    int n_resp;            /* l >= 2 */
    int32_t **ids;         /* [n_resp] each (len[k],) token ids */
    int *len;              /* [n_resp] */
    int prompt_end;        /* 1 + prompt tokens kept */
    double *reward;        /* [n_resp] or NULL */
} train_sample_t;

/* How records become sequences. */
typedef struct {
    int max_len;           /* tokens per sequence, BOS and EOS included */
    int max_prompt_len;    /* prompt tokens kept, cut from the left; <= max_len - 3 */
    int32_t bos, eos;
} train_seq_opts_t;

/* Tokenizes prompt and responses separately and joins them: the prompt is
 * cut from the left to max_prompt_len, each response on its own to what the
 * sequence has room for, but never to zero tokens. */
int train_tokenize(const tokenizer_t *tok, const pref_record_t *rec,
                   const train_seq_opts_t *so, train_sample_t *out, deft_err_t *err);
void train_sample_free(train_sample_t *s);

/* Whether a sample id belongs to the held-out split: a hash of (file, line)
 * below `fraction`, the same for every seed, rank count and data order. */
bool train_is_eval_id(sample_id_t id, double fraction);

// ----------------------------------------------------------------------------
// the stage

typedef struct {
    const data_source_t *src;    /* [nsrc] training data */
    int nsrc;
    const data_source_t *eval_src;  /* [neval_src] separate evaluation files, or none */
    int neval_src;
    double eval_fraction;        /* used when there are no eval files */
    const char *model_dir;       /* Hugging Face folder of the starting model */
    const char *tok_path;        /* tokenizer; NULL: model_dir */
    const char *qdiff_path;      /* NULL: no R_Q (omega must be 0) */
    const char *ref_path;        /* NULL: RUN_DIR/ref.h5 */
    const char *run_dir;
    const char *resume;          /* NULL, a checkpoint path, or "auto" */
    loss_params_t loss;          /* kind, beta, w_sft, omega */
    adamw_config_t adamw;        /* total_steps is filled by the stage */
    int epochs;
    int64_t max_steps;           /* 0: every epoch */
    int micro_batch, grad_accum;
    int tp;                      /* tensor-parallel size: groups of tp consecutive ranks
                                    share one model; 1 = a full replica per rank */
    train_seq_opts_t seq;        /* bos/eos are filled by the stage */
    uint64_t seed;
    int64_t log_every, eval_every, checkpoint_every;
    int keep_checkpoints;
    double peak_flops;           /* per rank, for MFU */
    bool strict, keep_file_order;
    const char *config_text;     /* resolved config, stored in checkpoints */
} train_opts_t;

/* The whole stage, collective over comm. Returns DEFT_OK at the end of
 * training and also after a stop signal was honoured (a checkpoint was
 * written); *stopped tells which. */
int train_run(const train_opts_t *o, comm_t *comm, bool *stopped, deft_err_t *err);

#endif
