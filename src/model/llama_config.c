/* Reading and writing Hugging Face config.json for LlamaForCausalLM.
 * Absent optional fields take transformers' LlamaConfig defaults; both the
 * classic layout (rope_theta, rope_scaling) and the newer rope_parameters
 * object are understood. Anything the model cannot honour (biases, another
 * activation, a rope type other than default/llama3) is an error. */
#include "model/llama_config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *file;
    json_t *root;
    deft_err_t *err;
} reader_t;

/* Required or optional positive integer field; def < 0 means required. */
static int get_int(reader_t *r, json_t *obj, const char *key, int def, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (def < 0)
            return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: missing field '%s'", r->file, key);
        *out = def;
        return DEFT_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > INT32_MAX)
        return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: field '%s' must be a positive "
                         "integer", r->file, key);
    *out = (int)json_integer_value(v);
    return DEFT_OK;
}

static int get_num(reader_t *r, json_t *obj, const char *key, bool required, double def,
                   double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required)
            return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: missing field '%s'", r->file, key);
        *out = def;
        return DEFT_OK;
    }
    if (!json_is_number(v) || !(json_number_value(v) > 0))
        return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: field '%s' must be a positive "
                         "number", r->file, key);
    *out = json_number_value(v);
    return DEFT_OK;
}

static int get_bool(reader_t *r, const char *key, bool def, bool *out)
{
    json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return DEFT_OK;
    }
    if (!json_is_boolean(v))
        return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: field '%s' must be true or false",
                         r->file, key);
    *out = json_is_true(v);
    return DEFT_OK;
}

/* Fields whose other values would change the architecture we implement. */
static int check_supported(reader_t *r)
{
    json_t *v = json_object_get(r->root, "model_type");
    if (v && (!json_is_string(v) || strcmp(json_string_value(v), "llama")))
        return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: field 'model_type' is %s, expected "
                         "\"llama\"", r->file, json_is_string(v) ? json_string_value(v) :
                         "not a string");
    v = json_object_get(r->root, "hidden_act");
    if (v && (!json_is_string(v) || strcmp(json_string_value(v), "silu")))
        return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: field 'hidden_act' must be \"silu\" "
                         "(SwiGLU)", r->file);
    const char *biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        bool b = false;
        if (get_bool(r, biases[i], false, &b))
            return r->err->code;
        if (b)
            return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: field '%s' is true; Llama layers "
                             "here have no biases", r->file, biases[i]);
    }
    return DEFT_OK;
}

/* rope_scaling (or the newer rope_parameters): null, default or llama3. */
static int read_rope(reader_t *r, llama_config_t *c)
{
    json_t *params = json_object_get(r->root, "rope_parameters");
    json_t *theta_src = json_is_object(params) ? params : r->root;
    if (get_num(r, theta_src, "rope_theta", false, 10000.0, &c->rope_theta))
        return r->err->code;
    const char *field = json_is_object(params) ? "rope_parameters" : "rope_scaling";
    json_t *rs = json_is_object(params) ? params : json_object_get(r->root, "rope_scaling");
    c->rope_llama3 = false;
    if (!rs || json_is_null(rs))
        return DEFT_OK;
    if (!json_is_object(rs))
        return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: field '%s' must be null or an object",
                         r->file, field);
    json_t *type = json_object_get(rs, "rope_type");
    if (!type)
        type = json_object_get(rs, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : NULL;
    if (!t || !strcmp(t, "default"))
        return t ? DEFT_OK : deft_fail(r->err, DEFT_ERR_FORMAT, "%s: field '%s' lacks a "
                                       "string 'rope_type'", r->file, field);
    if (strcmp(t, "llama3"))
        return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: %s.rope_type '%s' is not supported "
                         "(only \"default\" and \"llama3\")", r->file, field, t);
    c->rope_llama3 = true;
    if (get_num(r, rs, "factor", true, 0, &c->rope_factor) ||
        get_num(r, rs, "low_freq_factor", true, 0, &c->rope_low_freq_factor) ||
        get_num(r, rs, "high_freq_factor", true, 0, &c->rope_high_freq_factor) ||
        get_int(r, rs, "original_max_position_embeddings", -1, &c->rope_original_max_pos))
        return r->err->code;
    return DEFT_OK;
}

static int read_tokens(reader_t *r, llama_config_t *c)
{
    json_t *bos = json_object_get(r->root, "bos_token_id");
    c->bos_token_id = -1;
    if (bos && !json_is_null(bos)) {
        if (!json_is_integer(bos) || json_integer_value(bos) < 0)
            return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: field 'bos_token_id' must be a "
                             "non-negative integer", r->file);
        c->bos_token_id = (int)json_integer_value(bos);
    }
    json_t *eos = json_object_get(r->root, "eos_token_id");
    c->n_eos = 0;
    if (!eos || json_is_null(eos))
        return DEFT_OK;
    size_t n = json_is_array(eos) ? json_array_size(eos) : 1;
    if (n > DEFT_ARRAY_LEN(c->eos_token_ids))
        return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: field 'eos_token_id' lists %zu ids; "
                         "at most %zu are supported", r->file, n,
                         DEFT_ARRAY_LEN(c->eos_token_ids));
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_is_array(eos) ? json_array_get(eos, i) : eos;
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: field 'eos_token_id' must be an "
                             "id or a list of ids", r->file);
        c->eos_token_ids[c->n_eos++] = (int)json_integer_value(v);
    }
    return DEFT_OK;
}

static int read_config(reader_t *r, llama_config_t *c)
{
    if (check_supported(r) ||
        get_int(r, r->root, "vocab_size", -1, &c->vocab_size) ||
        get_int(r, r->root, "hidden_size", -1, &c->hidden_size) ||
        get_int(r, r->root, "intermediate_size", -1, &c->intermediate_size) ||
        get_int(r, r->root, "num_hidden_layers", -1, &c->num_layers) ||
        get_int(r, r->root, "num_attention_heads", -1, &c->num_heads) ||
        get_int(r, r->root, "num_key_value_heads", c->num_heads, &c->num_kv_heads) ||
        get_int(r, r->root, "max_position_embeddings", 2048, &c->max_position_embeddings) ||
        get_num(r, r->root, "rms_norm_eps", false, 1e-6, &c->rms_norm_eps) ||
        get_bool(r, "tie_word_embeddings", false, &c->tie_word_embeddings) ||
        read_rope(r, c) || read_tokens(r, c))
        return r->err->code;
    if (c->num_heads % c->num_kv_heads)
        return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: num_attention_heads %d is not a "
                         "multiple of num_key_value_heads %d", r->file, c->num_heads,
                         c->num_kv_heads);
    if (!json_object_get(r->root, "head_dim") && c->hidden_size % c->num_heads)
        return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: hidden_size %d is not a multiple of "
                         "num_attention_heads %d and no head_dim is given", r->file,
                         c->hidden_size, c->num_heads);
    if (get_int(r, r->root, "head_dim", c->hidden_size / c->num_heads, &c->head_dim))
        return r->err->code;
    if (c->head_dim % 2)
        return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: head_dim %d must be even for rotary "
                         "embeddings", r->file, c->head_dim);
    /* transformers 5 writes "dtype", earlier versions "torch_dtype" */
    json_t *dt = json_object_get(r->root, "torch_dtype");
    if (!dt || json_is_null(dt))
        dt = json_object_get(r->root, "dtype");
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", "float32");
    if (dt && !json_is_null(dt)) {
        const char *s = json_is_string(dt) ? json_string_value(dt) : "";
        if (strcmp(s, "float32") && strcmp(s, "bfloat16") && strcmp(s, "float16"))
            return deft_fail(r->err, DEFT_ERR_FORMAT, "%s: field 'torch_dtype' must be "
                             "float32, bfloat16 or float16, got '%s'", r->file, s);
        snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", s);
    }
    return DEFT_OK;
}

static bool is_dir(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

int llama_config_load(llama_config_t *cfg, const char *path, deft_err_t *err)
{
    memset(cfg, 0, sizeof *cfg);
    strbuf_t file = {0};
    if (is_dir(path))
        sb_printf(&file, "%s/config.json", path);
    else
        sb_puts(&file, path);
    json_error_t je;
    json_t *root = json_load_file(file.data, JSON_REJECT_DUPLICATES, &je);
    int rc;
    if (!root) {
        bool missing = access(file.data, R_OK) != 0;
        rc = missing ? deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", file.data,
                                 strerror(errno))
                     : deft_fail(err, DEFT_ERR_FORMAT, "%s:%d:%d: malformed JSON: %s",
                                 file.data, je.line, je.column, je.text);
    } else if (!json_is_object(root)) {
        rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: not a JSON object", file.data);
    } else {
        reader_t r = {file.data, root, err};
        rc = read_config(&r, cfg);
    }
    json_decref(root);
    sb_free(&file);
    return rc;
}

// ----------------------------------------------------------------------------
// writing

static json_t *config_to_json(const llama_config_t *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "architectures", json_pack("[s]", "LlamaForCausalLM"));
    json_object_set_new(o, "model_type", json_string("llama"));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->num_layers));
    json_object_set_new(o, "num_attention_heads", json_integer(c->num_heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->num_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "max_position_embeddings",
                        json_integer(c->max_position_embeddings));
    json_object_set_new(o, "rms_norm_eps", json_real(c->rms_norm_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    if (c->rope_llama3)
        json_object_set_new(o, "rope_scaling",
                            json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3",
                                      "factor", c->rope_factor, "low_freq_factor",
                                      c->rope_low_freq_factor, "high_freq_factor",
                                      c->rope_high_freq_factor,
                                      "original_max_position_embeddings",
                                      c->rope_original_max_pos));
    else
        json_object_set_new(o, "rope_scaling", json_null());
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    json_object_set_new(o, "bos_token_id",
                        c->bos_token_id >= 0 ? json_integer(c->bos_token_id) : json_null());
    if (c->n_eos == 1) {
        json_object_set_new(o, "eos_token_id", json_integer(c->eos_token_ids[0]));
    } else if (c->n_eos > 1) {
        json_t *a = json_array();
        for (int i = 0; i < c->n_eos; i++)
            json_array_append_new(a, json_integer(c->eos_token_ids[i]));
        json_object_set_new(o, "eos_token_id", a);
    } else {
        json_object_set_new(o, "eos_token_id", json_null());
    }
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "attention_bias", json_false());
    json_object_set_new(o, "mlp_bias", json_false());
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    json_object_set_new(o, "initializer_range", json_real(0.02));
    json_object_set_new(o, "torch_dtype", json_string(c->torch_dtype[0] ? c->torch_dtype
                                                                        : "float32"));
    json_object_set_new(o, "use_cache", json_true());
    return o;
}

/* 15 significant digits when they give every real back exactly, so that
 * 1e-05 is written as 1e-05 and not 1.0000000000000001e-05. */
static int real_precision(const llama_config_t *c)
{
    double v[] = {c->rms_norm_eps, c->rope_theta, c->rope_factor, c->rope_low_freq_factor,
                  c->rope_high_freq_factor};
    for (size_t i = 0; i < DEFT_ARRAY_LEN(v); i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.15g", v[i]);
        if (strtod(buf, NULL) != v[i])
            return 17;
    }
    return 15;
}

int llama_config_save(const llama_config_t *cfg, const char *path, deft_err_t *err)
{
    strbuf_t file = {0}, tmp = {0};
    if (is_dir(path))
        sb_printf(&file, "%s/config.json", path);
    else
        sb_puts(&file, path);
    sb_printf(&tmp, "%s.tmp", file.data);
    json_t *o = config_to_json(cfg);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                            JSON_REAL_PRECISION(real_precision(cfg)));
    json_decref(o);
    int rc = DEFT_OK;
    FILE *f = fopen(tmp.data, "w");
    if (!f) {
        rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot create: %s", tmp.data, strerror(errno));
    } else {
        bool ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF && fflush(f) == 0 &&
                  fsync(fileno(f)) == 0;
        ok = (fclose(f) == 0) && ok;
        if (!ok || rename(tmp.data, file.data)) {
            rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot write: %s", file.data,
                           strerror(errno));
            unlink(tmp.data);
        }
    }
    free(text);
    sb_free(&file);
    sb_free(&tmp);
    return rc;
}

int64_t llama_config_nparams(const llama_config_t *c)
{
    int64_t d = c->hidden_size, hd = c->head_dim, v = c->vocab_size;
    int64_t attn = d * (c->num_heads * hd) * 2 + d * (c->num_kv_heads * hd) * 2;
    int64_t mlp = 3 * d * (int64_t)c->intermediate_size;
    int64_t layer = attn + mlp + 2 * d;  /* + the two RMSNorm weights */
    return v * d * (c->tie_word_embeddings ? 1 : 2) + c->num_layers * layer + d;
}
