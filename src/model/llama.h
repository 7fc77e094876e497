/* The Llama model (LlamaForCausalLM as Hugging Face defines it), written once
 * against the backend interface: parameters, forward to hidden states and
 * logits, backward into parameter gradients, per-token log-probabilities and
 * generation with a KV cache. */
#ifndef DEFT_LLAMA_H
#define DEFT_LLAMA_H

#include "backend/backend.h"
#include "model/llama_config.h"
#include "mpi/comm.h"
#include "util/common.h"

/* One parameter tensor, named exactly as in a Hugging Face checkpoint. Under
 * tensor parallelism it is this rank's shard of the named tensor. */
typedef struct {
    char name[96];        /* "model.layers.3.self_attn.q_proj.weight" */
    int ndim;             /* 1 or 2 */
    int64_t shape[2];     /* [out, in] for projections, [V, d] for embeddings, [d] for norms:
                             the shard held here (the whole tensor at tp 1) */
    int64_t numel;        /* of the shard */
    int64_t full_shape[2];/* the whole tensor's shape, as in a checkpoint */
    int shard_dim;        /* LLAMA_SHARD_ROWS, _COLS or _NONE (replicated on every tp rank) */
    int64_t shard_offset; /* first row (ROWS) or column (COLS) of the whole tensor held here */
    float *data;          /* backend memory, row-major with that shape */
    float *grad;          /* backend memory, same shape; NULL until llama_alloc_grads */
    bool decay;           /* weight decay applies (false for norm weights) */
} llama_param_t;

enum { LLAMA_SHARD_NONE = -1, LLAMA_SHARD_ROWS = 0, LLAMA_SHARD_COLS = 1 };

typedef struct llama_acts llama_acts_t;   /* activations kept for backward (llama.c) */

typedef struct {
    llama_config_t cfg;
    const backend_t *be;
    llama_param_t *params;    /* n_params entries, in checkpoint order */
    int n_params;
    /* Views into params[] (backend memory). Shapes: d = hidden_size,
     * F = intermediate_size, Hq/Hkv heads of head_dim hd. */
    float *embed;             /* [V, d] model.embed_tokens.weight */
    float *final_norm;        /* [d] model.norm.weight */
    float *lm_head;           /* [V, d]; == embed when tied */
    int lm_head_param;        /* index in params[] of lm_head's storage (embed's when tied) */
    float *inv_freq;          /* [hd/2] RoPE inverse frequencies (llama3 scaling applied) */
    llama_acts_t *acts;       /* NULL until the first forward */
    /* Tensor parallelism (docs/model.md): this rank's share of the heads, the
     * MLP width and the vocabulary. With tp_size 1 it is everything. */
    comm_t *tp;               /* the tp group (not owned); NULL at tp 1 */
    int tp_rank, tp_size;
    int n_heads_local;        /* Hq / tp: query heads [tp_rank * Hq/tp, ...) */
    int n_kv_heads_local;     /* Hkv / tp: kv heads [tp_rank * Hkv/tp, ...) */
    int64_t ffn_local;        /* F / tp: MLP columns [tp_rank * F/tp, ...) */
    int64_t vocab_local;      /* V / tp: vocabulary ids [vocab_start, vocab_start + V/tp) */
    int64_t vocab_start;
} llama_model_t;

/* Parameter indices of layer l: params[llama_layer_param(l, LLAMA_Q)] etc. */
enum {
    LLAMA_ATTN_NORM, LLAMA_Q, LLAMA_K, LLAMA_V, LLAMA_O,
    LLAMA_MLP_NORM, LLAMA_GATE, LLAMA_UP, LLAMA_DOWN,
    LLAMA_PER_LAYER
};
int llama_layer_param(int layer, int which);

/* Builds a model of this shape with zeroed parameters on backend be. */
int llama_create(llama_model_t *m, const llama_config_t *cfg, const backend_t *be,
                 deft_err_t *err);
/* The same, holding only this rank's shard for the tensor-parallel group tp
 * (NULL or a group of one: the whole model, exactly as llama_create). Every
 * rank of tp calls it. tp must divide Hkv (so query groups stay whole), the
 * vocabulary and the MLP width; otherwise a usage error names the count. */
int llama_create_tp(llama_model_t *m, const llama_config_t *cfg, const backend_t *be,
                    comm_t *tp, deft_err_t *err);
/* Whether a tp group of this size can hold the model: DEFT_OK or the usage
 * error llama_create_tp would give. */
int llama_tp_check(const llama_config_t *cfg, int tp, deft_err_t *err);
/* Loads a Hugging Face folder (config.json + model.safetensors or a sharded
 * index). A missing, extra or mis-shaped tensor is an error naming it; a tied
 * matrix may be stored as model.embed_tokens.weight or lm_head.weight. */
int llama_load(llama_model_t *m, const char *dir, const backend_t *be, deft_err_t *err);
/* llama_load for a tp group: each rank converts only its slice of each tensor. */
int llama_load_tp(llama_model_t *m, const char *dir, const backend_t *be, comm_t *tp,
                  deft_err_t *err);
void llama_free(llama_model_t *m);

/* RoPE inverse frequencies [hd/2] as transformers computes them in fp32,
 * including rope_scaling type "llama3". Host memory. */
void llama_rope_inv_freq(const llama_config_t *cfg, float *inv_freq);

/* Gradients: allocated once (zeroed), zeroed on request. */
int llama_alloc_grads(llama_model_t *m, deft_err_t *err);
void llama_zero_grads(llama_model_t *m);

/* Forward on a batch. ids[B,T] int32 (host), lens[B] (host): sequence b is
 * ids[b, 0:lens[b]], right-padded; padded positions are computed but their
 * values are meaningless. Fills hidden[B,T,d] (host, final-normalised hidden
 * states) when non-NULL and logits[B,T,V] (host) when non-NULL: under tensor
 * parallelism, this rank's vocabulary shard [B,T,V/tp] (ids vocab_start..). With
 * keep_acts, every activation backward needs is kept in m->acts (memory per
 * token and layer: 4d + 2*Hq*hd + 2*Hkv*hd + 3F + Hq + 2 floats). */
int llama_forward(llama_model_t *m, const int32_t *ids, const int32_t *lens, int B, int T,
                  float *hidden, float *logits, bool keep_acts, deft_err_t *err);

/* Backward through the last forward (which must have had keep_acts):
 * dlogits[B,T,V] (host, or NULL; [B,T,V/tp], the local vocabulary shard,
 * under tensor parallelism) and/or dhidden[B,T,d] (host, or NULL; the
 * gradient on the final-normalised hidden states, the same on every tp rank).
 * Parameter gradients (of the local shards) are
 * accumulated (+=) into params[i].grad; call llama_alloc_grads first. */
int llama_backward(llama_model_t *m, const float *dlogits, const float *dhidden,
                   deft_err_t *err);

/* Per-token log-probabilities, fp32: out[b,t] = log p(ids[b,t] | ids[b,<t]) for
 * 1 <= t < lens[b]; out[b,0] = 0 and out[b,t] = 0 for t >= lens[b]. ids, lens,
 * out are host memory, out is [B,T]. The V-wide logits are made a few rows at
 * a time, so memory does not grow with B*T*V. Under tensor parallelism every
 * rank of the group gets the full result (the same bits on each). */
int llama_logprobs(llama_model_t *m, const int32_t *ids, const int32_t *lens, int B, int T,
                   float *out, deft_err_t *err);

/* Generation for one prompt with a KV cache. temperature <= 0 is greedy
 * (argmax, lowest id on ties); otherwise samples from softmax(z / temperature)
 * restricted to the smallest set of top tokens whose mass reaches top_p
 * (top_p >= 1: no restriction), with a generator seeded by seed. Stops after
 * max_new tokens or after emitting any of eos[n_eos] (the EOS token is kept in
 * out). out (host) receives the new tokens only; *n_out their count. Under
 * tensor parallelism every rank of the group calls it and gets the same tokens. */
int llama_generate(llama_model_t *m, const int32_t *prompt, int n_prompt, int max_new,
                   float temperature, float top_p, uint64_t seed, const int32_t *eos,
                   int n_eos, int32_t *out, int *n_out, deft_err_t *err);

// ----------------------------------------------------------------------------
// tensor parallelism (llama_tp.c)

/* Parameter i in full (full_shape, row-major) on tp rank root of the group,
 * or on every rank when root is -1: its data, or its gradient when grad.
 * out is host memory [full numel] (unused, may be NULL, on other ranks). */
int llama_param_gather(const llama_model_t *m, int i, bool grad, float *out, int root,
                       deft_err_t *err);
/* Sets parameter i's local shard from the whole tensor full (host,
 * full_shape); no communication. */
void llama_param_set_full(llama_model_t *m, int i, const float *full);
/* The same two for any host array laid out like parameter i (optimizer
 * moments): local [shape] this rank's shard, out / full [full_shape]. */
int llama_shard_gather(const llama_model_t *m, int i, const float *local, float *out,
                       int root, deft_err_t *err);
void llama_shard_take(const llama_model_t *m, int i, const float *full, float *local);

/* In-place sum over the tp group of x[n] (host), the same bits on every rank
 * (nothing at tp 1). For losses and statistics made of per-shard parts. */
int llama_tp_sum(const llama_model_t *m, double *x, size_t n, deft_err_t *err);

/* Log-softmax + gather over a vocabulary split across the tp group.
 * logits (host) [N, V/tp] this rank's columns; tgt [N] full vocabulary ids
 * (< 0: no target, logp 0). logp [N] and lse [N] (the full log-sum-exp per
 * row, for the backward; NULL if not wanted) come out the same on every
 * rank. A row's max and exponential sum are reduced over the group; the
 * target logit comes from the rank that holds it. */
int llama_tp_logsoftmax_gather(const llama_model_t *m, const float *logits,
                               const int32_t *tgt, int64_t N, float *logp, float *lse,
                               deft_err_t *err);
/* Its backward on this rank's columns: dlogits[N, V/tp] += g[n] * (onehot(tgt[n])
 * - softmax(logits[n,:])), with lse from the forward. */
void llama_tp_logsoftmax_gather_bwd(const llama_model_t *m, float *dlogits,
                                    const float *logits, const int32_t *tgt,
                                    const float *lse, const float *g, int64_t N);

/* u = W_head^T Q_diff (R_Q's head vector) from this rank's vocabulary rows:
 * qdiff (host) [V] the whole vector, u (host) [d] the same on every rank. */
int llama_rq_head_vector(const llama_model_t *m, const double *qdiff, double *u,
                         deft_err_t *err);

#endif
