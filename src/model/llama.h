/* The Llama model (LlamaForCausalLM as Hugging Face defines it), written once
 * against the backend interface: parameters, forward to hidden states and
 * logits, backward into parameter gradients, per-token log-probabilities and
 * generation with a KV cache. */
#ifndef DEFT_LLAMA_H
#define DEFT_LLAMA_H

#include "backend/backend.h"
#include "model/llama_config.h"
#include "util/common.h"

/* One parameter tensor, named exactly as in a Hugging Face checkpoint. */
typedef struct {
    char name[96];        /* "model.layers.3.self_attn.q_proj.weight" */
    int ndim;             /* 1 or 2 */
    int64_t shape[2];     /* [out, in] for projections, [V, d] for embeddings, [d] for norms */
    int64_t numel;
    float *data;          /* backend memory, row-major with that shape */
    float *grad;          /* backend memory, same shape; NULL until llama_alloc_grads */
    bool decay;           /* weight decay applies (false for norm weights) */
} llama_param_t;

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
/* Loads a Hugging Face folder (config.json + model.safetensors or a sharded
 * index). A missing, extra or mis-shaped tensor is an error naming it; a tied
 * matrix may be stored as model.embed_tokens.weight or lm_head.weight. */
int llama_load(llama_model_t *m, const char *dir, const backend_t *be, deft_err_t *err);
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
 * states) when non-NULL and logits[B,T,V] (host) when non-NULL. With
 * keep_acts, every activation backward needs is kept in m->acts (memory per
 * token and layer: 4d + 2*Hq*hd + 2*Hkv*hd + 3F + Hq + 2 floats). */
int llama_forward(llama_model_t *m, const int32_t *ids, const int32_t *lens, int B, int T,
                  float *hidden, float *logits, bool keep_acts, deft_err_t *err);

/* Backward through the last forward (which must have had keep_acts):
 * dlogits[B,T,V] (host, or NULL) and/or dhidden[B,T,d] (host, or NULL; the
 * gradient on the final-normalised hidden states). Parameter gradients are
 * accumulated (+=) into params[i].grad; call llama_alloc_grads first. */
int llama_backward(llama_model_t *m, const float *dlogits, const float *dhidden,
                   deft_err_t *err);

/* Per-token log-probabilities, fp32: out[b,t] = log p(ids[b,t] | ids[b,<t]) for
 * 1 <= t < lens[b]; out[b,0] = 0 and out[b,t] = 0 for t >= lens[b]. ids, lens,
 * out are host memory, out is [B,T]. The V-wide logits are made a few rows at
 * a time, so memory does not grow with B*T*V. */
int llama_logprobs(llama_model_t *m, const int32_t *ids, const int32_t *lens, int B, int T,
                   float *out, deft_err_t *err);

/* Generation for one prompt with a KV cache. temperature <= 0 is greedy
 * (argmax, lowest id on ties); otherwise samples from softmax(z / temperature)
 * restricted to the smallest set of top tokens whose mass reaches top_p
 * (top_p >= 1: no restriction), with a generator seeded by seed. Stops after
 * max_new tokens or after emitting any of eos[n_eos] (the EOS token is kept in
 * out). out (host) receives the new tokens only; *n_out their count. */
int llama_generate(llama_model_t *m, const int32_t *prompt, int n_prompt, int max_new,
                   float temperature, float top_p, uint64_t seed, const int32_t *eos,
                   int n_eos, int32_t *out, int *n_out, deft_err_t *err);

#endif
