/* deft init: a randomly initialised Llama model in Hugging Face layout
 * (config.json + model.safetensors, and the tokenizer files when
 * --tokenizer is given), initialised as transformers does for Llama:
 * normal(0, initializer_range) for projection and embedding matrices, ones
 * for RMSNorm weights. Each tensor draws from its own stream, seeded by
 * (seed, tensor name), so a seed always gives the same model. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
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

static int make_dir(const char *path, deft_err_t *err)
{
    strbuf_t p = {0};
    sb_puts(&p, path);
    int rc = DEFT_OK;
    /* create each missing parent in turn, like mkdir -p */
    for (char *s = p.data + 1; ; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p.data, 0755) && errno != EEXIST)
            rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot create folder: %s", p.data,
                           strerror(errno));
        *s = c;
        if (rc || c == '\0')
            break;
    }
    sb_free(&p);
    return rc;
}

static int copy_file(const char *src, const char *dst, deft_err_t *err)
{
    FILE *in = fopen(src, "rb");
    if (!in)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot create: %s", dst, strerror(errno));
    }
    char buf[1 << 16];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in);
    ok = (fclose(out) == 0) && ok;
    fclose(in);
    return ok ? DEFT_OK : deft_fail(err, DEFT_ERR_IO, "%s: cannot copy to %s", src, dst);
}

/* Files that travel with a tokenizer: the tokenizer itself and, since a
 * licence may require it, the licence and notice files beside it. */
static bool is_tokenizer_file(const char *name)
{
    static const char *exact[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                  "special_tokens_map.json", "NOTICE"};
    for (size_t i = 0; i < DEFT_ARRAY_LEN(exact); i++)
        if (!strcmp(name, exact[i]))
            return true;
    return !strncmp(name, "LICENSE", 7) || !strncmp(name, "USE_POLICY", 10);
}

static int copy_tokenizer(const char *from, const char *out_dir, deft_err_t *err)
{
    struct stat st;
    if (stat(from, &st))
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot open tokenizer: %s", from,
                         strerror(errno));
    strbuf_t src = {0}, dst = {0};
    int rc = DEFT_OK, copied = 0;
    if (!S_ISDIR(st.st_mode)) {
        const char *base = strrchr(from, '/') ? strrchr(from, '/') + 1 : from;
        sb_printf(&dst, "%s/%s", out_dir, base);
        rc = copy_file(from, dst.data, err);
        sb_free(&dst);
        return rc;
    }
    DIR *d = opendir(from);
    if (!d)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot list: %s", from, strerror(errno));
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (!is_tokenizer_file(e->d_name))
            continue;
        src.len = dst.len = 0;
        sb_printf(&src, "%s/%s", from, e->d_name);
        sb_printf(&dst, "%s/%s", out_dir, e->d_name);
        rc = copy_file(src.data, dst.data, err);
        copied += rc == DEFT_OK;
    }
    closedir(d);
    sb_free(&src);
    sb_free(&dst);
    if (!rc && copied == 0)
        rc = deft_fail(err, DEFT_ERR_USAGE, "%s: holds no tokenizer.json or tokenizer.model",
                       from);
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
    if (!(rc = make_dir(out, err)) && !(rc = llama_config_save(&lc, out, err)) &&
        !(rc = st_write(st_path.data, w, m.n_params, dtype_of(&lc), "{\"format\": \"pt\"}",
                        err)) &&
        cfg_str(cfg, "tokenizer"))
        rc = copy_tokenizer(cfg_str(cfg, "tokenizer"), out, err);
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
