/* deft init: a randomly initialised Llama model in Hugging Face layout
 * (config.json + model.safetensors, and the tokenizer files when
 * --tokenizer is given), initialised as transformers does for Llama:
 * normal(0, initializer_range) for projection and embedding matrices, ones
 * for RMSNorm weights. Each tensor draws from its own stream, seeded by
 * (seed, tensor name), so a seed always gives the same model. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "stages/export.h"
#include "config/config.h"
#include "io/safetensors.h"
#include "model/llama.h"
#include "util/log.h"
#include "util/rng.h"

/* transformers' LlamaConfig default, used when config.json does not say */
#define DEFAULT_INITIALIZER_RANGE 0.02

static int read_initializer_range(const char *path, double *out, deft_err_t *err)
{
    *out = DEFAULT_INITIALIZER_RANGE;
    json_t *root = json_load_file(path, 0, NULL);
    if (!root)
        return DEFT_OK;  /* llama_config_load has already reported a broken file */
    json_t *v = json_object_get(root, "initializer_range");
    int rc = DEFT_OK;
    if (v && !json_is_null(v)) {
        if (json_is_number(v) && json_number_value(v) > 0)
            *out = json_number_value(v);
        else
            rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: field 'initializer_range' must be a "
                           "positive number", path);
    }
    json_decref(root);
    return rc;
}

static st_dtype_t dtype_of(const llama_config_t *c)
{
    if (!strcmp(c->torch_dtype, "bfloat16"))
        return ST_BF16;
    if (!strcmp(c->torch_dtype, "float16"))
        return ST_F16;
    return ST_F32;
}

/* Fills m's parameters (CPU backend: host memory) and writes the folder. */
static int init_model(const cfg_t *cfg, deft_err_t *err)
{
    const char *cfg_path = cfg_str(cfg, "model_config"), *out = cfg_str(cfg, "out");
    if (!cfg_path || !out)
        return deft_fail(err, DEFT_ERR_USAGE, "init: give --model-config FILE and --out DIR");
    llama_config_t lc;
    double std;
    int rc = llama_config_load(&lc, cfg_path, err);
    if (rc || (rc = read_initializer_range(cfg_path, &std, err)))
        return rc;
    llama_model_t m;
    if ((rc = llama_create(&m, &lc, backend_cpu(), err)))
        return rc;
    uint64_t seed = (uint64_t)cfg_int(cfg, "seed");
    log_info("init: %lld parameters (%d tensors), normal(0, %g) matrices, seed %llu",
             (long long)llama_config_nparams(&lc), m.n_params, std, (unsigned long long)seed);
    st_write_tensor_t *w = xcalloc((size_t)m.n_params, sizeof *w);
    for (int i = 0; i < m.n_params; i++) {
        llama_param_t *p = &m.params[i];
        if (p->ndim == 2) {
            rng_t r;
            rng_init(&r, rng_derive(seed, p->name));
            rng_fill_normal(&r, p->data, p->numel, 0.0f, (float)std);
        } else {
            for (int64_t j = 0; j < p->numel; j++)
                p->data[j] = 1.0f;
        }
        w[i] = (st_write_tensor_t){p->name, p->ndim, {p->shape[0], p->shape[1]}, p->data};
    }
    strbuf_t st_path = {0};
    sb_printf(&st_path, "%s/model.safetensors", out);
    if (!(rc = export_make_dir(out, err)) && !(rc = llama_config_save(&lc, out, err)) &&
        !(rc = st_write(st_path.data, w, m.n_params, dtype_of(&lc), "{\"format\": \"pt\"}",
                        err)) &&
        cfg_str(cfg, "tokenizer"))
        rc = export_copy_tokenizer(cfg_str(cfg, "tokenizer"), out, err);
    if (!rc)
        log_info("init: wrote %s (config.json, model.safetensors as %s%s)", out,
                 lc.torch_dtype, cfg_str(cfg, "tokenizer") ? ", tokenizer" : "");
    sb_free(&st_path);
    free(w);
    llama_free(&m);
    return rc;
}

int cmd_init(int argc, char **argv)
{
    deft_err_t err = {0};
    cfg_t *cfg = NULL;
    int rc = cfg_parse(&cfg, "init", argc, argv, &err);
    if (rc == DEFT_OK)
        rc = init_model(cfg, &err);
    if (rc && rc != DEFT_HELP)
        log_error("deft init: %s", cli_message("init", err.msg));
    cfg_free(cfg);
    return deft_exit_status(rc);
}
