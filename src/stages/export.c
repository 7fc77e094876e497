/* Stage export: checkpoint -> Hugging Face folder (config.json,
 * model.safetensors, tokenizer files). The parameters pass through a model
 * of the starting model's shape, so the checkpoint is checked tensor by
 * tensor against the architecture before anything is written. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/llama.h"
#include "stages/export.h"
#include "util/log.h"

int export_make_dir(const char *path, deft_err_t *err)
{
    strbuf_t p = {0};
    sb_puts(&p, path);
    int rc = DEFT_OK;
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

static bool is_tokenizer_file(const char *name)
{
    static const char *exact[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                  "special_tokens_map.json", "generation_config.json",
                                  "NOTICE"};
    for (size_t i = 0; i < DEFT_ARRAY_LEN(exact); i++)
        if (!strcmp(name, exact[i]))
            return true;
    return !strncmp(name, "LICENSE", 7) || !strncmp(name, "USE_POLICY", 10);
}

int export_copy_tokenizer(const char *from, const char *out_dir, deft_err_t *err)
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
        copied += rc == DEFT_OK && strncmp(e->d_name, "tokenizer.", 10) == 0;
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

/* The model's parameters (CPU backend: host memory) as checkpoint tensors
 * that checkpoint_load fills in place: ck[n_params]. */
static ckpt_tensor_t *param_views(const llama_model_t *m)
{
    ckpt_tensor_t *ck = xcalloc((size_t)m->n_params, sizeof *ck);
    for (int i = 0; i < m->n_params; i++) {
        const llama_param_t *p = &m->params[i];
        ck[i] = (ckpt_tensor_t){.name = p->name, .ndim = p->ndim, .data = p->data};
        for (int j = 0; j < p->ndim; j++)
            ck[i].shape[j] = p->shape[j];
    }
    return ck;
}

static int write_folder(const export_opts_t *o, const llama_model_t *m, int64_t step,
                        deft_err_t *err)
{
    st_write_tensor_t *w = xcalloc((size_t)m->n_params, sizeof *w);
    for (int i = 0; i < m->n_params; i++) {
        const llama_param_t *p = &m->params[i];
        w[i] = (st_write_tensor_t){p->name, p->ndim, {p->shape[0], p->shape[1]}, p->data};
    }
    const char *base = strrchr(o->checkpoint, '/') ? strrchr(o->checkpoint, '/') + 1
                                                   : o->checkpoint;
    strbuf_t path = {0}, meta = {0};
    sb_printf(&path, "%s/model.safetensors", o->out_dir);
    /* Metadata values must be strings; the checkpoint's file name has no quote. */
    sb_printf(&meta, "{\"format\": \"pt\", \"deft_checkpoint\": \"%s\", \"deft_step\": "
              "\"%lld\"}", strchr(base, '"') ? "?" : base, (long long)step);
    int rc = export_make_dir(o->out_dir, err);
    if (!rc)
        rc = llama_config_save(&m->cfg, o->out_dir, err);
    if (!rc)
        rc = st_write(path.data, w, m->n_params, dtype_of(&m->cfg), meta.data, err);
    if (!rc)
        rc = export_copy_tokenizer(o->tokenizer ? o->tokenizer : o->model_dir, o->out_dir, err);
    sb_free(&path);
    sb_free(&meta);
    free(w);
    return rc;
}

int export_run(const export_opts_t *o, int64_t *step_out, deft_err_t *err)
{
    if (!o->checkpoint || !o->model_dir || !o->out_dir)
        return deft_fail(err, DEFT_ERR_USAGE, "export: needs a checkpoint, the starting "
                         "model's folder (--model DIR, for config.json and the tokenizer) "
                         "and --out DIR");
    llama_config_t lc;
    int rc = llama_config_load(&lc, o->model_dir, err);
    if (rc)
        return rc;
    llama_model_t m;
    if ((rc = llama_create(&m, &lc, backend_cpu(), err)))
        return rc;
    ckpt_tensor_t *ck = param_views(&m);
    ckpt_tensors_t t = {.params = ck, .n = m.n_params};
    ckpt_state_t st = {0};
    rc = checkpoint_load(o->checkpoint, &st, &t, err);
    if (!rc)
        rc = write_folder(o, &m, st.step, err);
    if (!rc) {
        log_info("export: %s (step %lld) -> %s (config.json, model.safetensors as %s, "
                 "tokenizer)", o->checkpoint, (long long)st.step, o->out_dir, lc.torch_dtype);
        if (step_out)
            *step_out = st.step;
    }
    checkpoint_state_free(&st);
    free(ck);
    llama_free(&m);
    return rc;
}
