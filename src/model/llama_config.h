/* The shape of a Llama model, as Hugging Face's config.json gives it
 * (LlamaForCausalLM), and its reader/writer. */
#ifndef DEFT_LLAMA_CONFIG_H
#define DEFT_LLAMA_CONFIG_H

#include "util/common.h"

typedef struct {
    int vocab_size;           /* V: 128256 for Llama 3 */
    int hidden_size;          /* d_model */
    int intermediate_size;    /* MLP width */
    int num_layers;           /* num_hidden_layers */
    int num_heads;            /* num_attention_heads (query heads) */
    int num_kv_heads;         /* num_key_value_heads; GQA group = num_heads / num_kv_heads */
    int head_dim;             /* hidden_size / num_heads unless config says otherwise */
    int max_position_embeddings;
    double rope_theta;        /* 500000 for Llama 3, 10000 for Llama 2 */
    double rms_norm_eps;
    bool tie_word_embeddings;
    /* rope_scaling {"rope_type": "llama3", ...} as in Llama 3.1; off when rope_llama3 is false */
    bool rope_llama3;
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    int bos_token_id;         /* -1 when absent */
    int eos_token_ids[4];     /* eos_token_id may be an int or a list */
    int n_eos;
    char torch_dtype[16];     /* "float32", "bfloat16", "float16" */
} llama_config_t;

/* Reads DIR/config.json (or a path to a config.json); a missing or
 * mistyped field is an error naming the file and field. */
int llama_config_load(llama_config_t *cfg, const char *path, deft_err_t *err);
/* Writes a config.json that transformers loads as LlamaForCausalLM. */
int llama_config_save(const llama_config_t *cfg, const char *path, deft_err_t *err);

/* Parameter count, tied embeddings counted once. */
int64_t llama_config_nparams(const llama_config_t *cfg);

#endif
