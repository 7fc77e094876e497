/* Tests of the export stage: a checkpoint of changed TinyStories weights,
 * exported and loaded back with llama_load, gives the same logits to the
 * bit; a checkpoint that does not fit the starting model's shape is an
 * error naming the tensor and writes nothing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "model/llama.h"
#include "stages/export.h"
#include "test_util.h"

#define MODEL "data/models/TinyStories-656K"

static bool exists(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0;
}

/* logits[B*T*V] of the same two sequences for any model of this vocabulary */
static float *run_logits(llama_model_t *m, int *n_out)
{
    enum { B = 2, T = 7 };
    int32_t ids[B * T] = {1, 403, 89, 312, 1200, 7, 2047, 1, 18, 900, 44, 3, 0, 0};
    int32_t lens[B] = {7, 5};
    int V = m->cfg.vocab_size;
    float *logits = malloc(sizeof(float) * B * T * V);
    deft_err_t err = {0};
    int rc = llama_forward(m, ids, lens, B, T, NULL, logits, false, &err);
    CHECK_MSG(rc == DEFT_OK, "%s", err.msg);
    *n_out = B * T * V;
    return logits;
}

static ckpt_tensor_t *views(llama_model_t *m)
{
    ckpt_tensor_t *ck = calloc((size_t)m->n_params, sizeof *ck);
    for (int i = 0; i < m->n_params; i++) {
        llama_param_t *p = &m->params[i];
        ck[i] = (ckpt_tensor_t){.name = p->name, .ndim = p->ndim, .data = p->data};
        for (int j = 0; j < p->ndim; j++)
            ck[i].shape[j] = p->shape[j];
    }
    return ck;
}

static void test_roundtrip(const char *tmp)
{
    deft_err_t err = {0};
    llama_model_t m;
    int rc = llama_load(&m, MODEL, backend_cpu(), &err);
    CHECK_MSG(rc == DEFT_OK, "%s", err.msg);
    if (rc)
        return;
    /* a trained model differs from the starting one in every tensor */
    for (int i = 0; i < m.n_params; i++)
        for (int64_t j = 0; j < m.params[i].numel; j++)
            m.params[i].data[j] += 1e-3f * sinf((float)(j % 977) + (float)i);
    ckpt_tensor_t *ck = views(&m);
    ckpt_tensors_t t = {.params = ck, .n = m.n_params};
    ckpt_state_t st = {.step = 42, .config_text = "seed: 1\n", .qdiff_checksum = "x"};
    char ckdir[512], ckpath[600], out[512];
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", tmp);
    snprintf(out, sizeof out, "%s/export", tmp);
    mkdir(ckdir, 0755);
    rc = checkpoint_save(ckdir, &st, &t, 0, ckpath, sizeof ckpath, &err);
    CHECK_MSG(rc == DEFT_OK, "%s", err.msg);

    export_opts_t o = {.checkpoint = ckpath, .model_dir = MODEL, .out_dir = out};
    int64_t step = -1;
    rc = export_run(&o, &step, &err);
    CHECK_MSG(rc == DEFT_OK, "%s", err.msg);
    CHECK(step == 42);
    CHECK(exists(out, "config.json") && exists(out, "model.safetensors"));
    CHECK(exists(out, "tokenizer.json") && exists(out, "tokenizer_config.json"));
    CHECK(exists(out, "LICENSE"));

    llama_model_t back;
    rc = llama_load(&back, out, backend_cpu(), &err);
    CHECK_MSG(rc == DEFT_OK, "%s", err.msg);
    if (!rc) {
        CHECK(back.n_params == m.n_params);
        CHECK(back.cfg.tie_word_embeddings == m.cfg.tie_word_embeddings);
        int n1, n2;
        float *a = run_logits(&m, &n1), *b = run_logits(&back, &n2);
        CHECK(n1 == n2 && memcmp(a, b, sizeof(float) * (size_t)n1) == 0);
        /* and the export is the trained model, not the starting one */
        llama_model_t start;
        if (llama_load(&start, MODEL, backend_cpu(), &err) == DEFT_OK) {
            float *c = run_logits(&start, &n2);
            CHECK(memcmp(a, c, sizeof(float) * (size_t)n1) != 0);
            free(c);
            llama_free(&start);
        }
        free(a);
        free(b);
        llama_free(&back);
    }
    free(ck);
    llama_free(&m);
}

/* A checkpoint made for another shape: the error names a tensor, and the
 * output folder is not created. */
static void test_wrong_shape(const char *tmp)
{
    deft_err_t err = {0};
    llama_config_t lc;
    int rc = llama_config_load(&lc, MODEL, &err);
    CHECK(rc == DEFT_OK);
    lc.intermediate_size = 256;
    llama_model_t m;
    rc = llama_create(&m, &lc, backend_cpu(), &err);
    CHECK_MSG(rc == DEFT_OK, "%s", err.msg);
    if (rc)
        return;
    ckpt_tensor_t *ck = views(&m);
    ckpt_tensors_t t = {.params = ck, .n = m.n_params};
    ckpt_state_t st = {.step = 3, .config_text = "", .qdiff_checksum = ""};
    char ckdir[512], ckpath[600], out[512];
    snprintf(ckdir, sizeof ckdir, "%s/other", tmp);
    snprintf(out, sizeof out, "%s/export-bad", tmp);
    mkdir(ckdir, 0755);
    rc = checkpoint_save(ckdir, &st, &t, 0, ckpath, sizeof ckpath, &err);
    CHECK_MSG(rc == DEFT_OK, "%s", err.msg);
    export_opts_t o = {.checkpoint = ckpath, .model_dir = MODEL, .out_dir = out};
    rc = export_run(&o, NULL, &err);
    CHECK(rc != DEFT_OK);
    CHECK_MSG(strstr(err.msg, "mlp") != NULL, "%s", err.msg);
    struct stat sb;
    CHECK(stat(out, &sb) != 0);

    export_opts_t none = {.checkpoint = ckpath, .out_dir = out};
    CHECK(export_run(&none, NULL, &err) == DEFT_ERR_USAGE);
    free(ck);
    llama_free(&m);
}

int main(void)
{
    char tmp[] = "/tmp/deft-test-export-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_roundtrip(tmp);
    test_wrong_shape(tmp);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    TEST_DONE();
}
