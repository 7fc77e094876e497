/* deft init: the folder it writes holds every tensor of the model's shape,
 * matrices with the statistics of normal(0, 0.02), norms at one, a
 * config.json that reads back equal, and the same bytes for the same seed.
 * (tools/check_init_model.py checks such a folder with transformers.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "model/llama.h"
#include "test_util.h"

static char tmpdir[] = "/tmp/deft-init-XXXXXX";

static int run_init(const char *config, int seed, const char *out, const char *extra)
{
    const char *bin = getenv("DEFT_BIN");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' init --model-config '%s' --seed %d --out '%s/%s' %s "
             "2>/dev/null", bin ? bin : "build/deft", config, seed, tmpdir, out, extra);
    return system(cmd);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    char *b = malloc(*n);
    if (fread(b, 1, *n, f) != *n)
        *n = 0;
    fclose(f);
    return b;
}

static void check_folder(const char *config, const char *sub)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, sub);
    llama_config_t want, got;
    deft_err_t err = {0};
    CHECK(llama_config_load(&want, config, &err) == 0);
    CHECK_MSG(llama_config_load(&got, dir, &err) == 0, "%s", err.msg);
    CHECK(memcmp(&want, &got, sizeof want) == 0);
    llama_model_t m;
    CHECK(llama_create(&m, &want, backend_cpu(), &err) == 0);
    st_set_t *s;
    CHECK_MSG(st_open(&s, dir, &err) == 0, "%s", err.msg);
    if (!s)
        return;
    CHECK(st_count(s) == m.n_params);
    for (int i = 0; i < m.n_params; i++) {
        const llama_param_t *p = &m.params[i];
        const st_tensor_t *t = st_find(s, p->name);
        CHECK_MSG(t != NULL, "%s missing", p->name);
        if (!t)
            continue;
        CHECK(t->ndim == p->ndim && t->shape[0] == p->shape[0]);
        CHECK(p->ndim == 1 || t->shape[1] == p->shape[1]);
        float *x = malloc(sizeof(float) * st_numel(t));
        st_to_f32(t, x);
        double s1 = 0, s2 = 0;
        int64_t n = st_numel(t);
        for (int64_t j = 0; j < n; j++) {
            s1 += x[j];
            s2 += (double)x[j] * x[j];
        }
        double mean = s1 / n, sd = sqrt(s2 / n - mean * mean);
        if (p->ndim == 2) {
            /* six standard errors of the sample mean and standard deviation */
            CHECK_MSG(fabs(mean) < 6 * 0.02 / sqrt(n), "%s mean %g", p->name, mean);
            CHECK_MSG(fabs(sd - 0.02) < 6 * 0.02 / sqrt(2.0 * n), "%s std %g", p->name, sd);
        } else {
            CHECK_MSG(mean == 1.0 && sd == 0.0, "%s is not all ones", p->name);
        }
        free(x);
    }
    /* streams are per tensor: no two matrices share values */
    const st_tensor_t *q = st_find(s, "model.layers.0.self_attn.q_proj.weight");
    const st_tensor_t *o = st_find(s, "model.layers.0.self_attn.o_proj.weight");
    CHECK(q && o && memcmp(q->data, o->data, 64) != 0);
    st_close(s);
    llama_free(&m);
}

int main(void)
{
    if (!mkdtemp(tmpdir))
        return 1;
    const char *ts = "data/models/TinyStories-656K/config.json";
    CHECK(run_init(ts, 5, "a", "--tokenizer data/models/TinyStories-656K") == 0);
    CHECK(run_init(ts, 5, "b", "") == 0);
    CHECK(run_init(ts, 6, "c", "") == 0);
    CHECK(run_init("conf/models/tiny-llama3.json", 5, "tiny", "") == 0);
    check_folder(ts, "a");
    check_folder("conf/models/tiny-llama3.json", "tiny");
    char pa[512], pb[512], pc[512];
    snprintf(pa, sizeof pa, "%s/a/model.safetensors", tmpdir);
    snprintf(pb, sizeof pb, "%s/b/model.safetensors", tmpdir);
    snprintf(pc, sizeof pc, "%s/c/model.safetensors", tmpdir);
    size_t na, nb, nc;
    char *a = slurp(pa, &na), *b = slurp(pb, &nb), *c = slurp(pc, &nc);
    CHECK(a && b && c && na == nb && na == nc);
    CHECK(a && b && memcmp(a, b, na) == 0);   /* same seed: same bytes */
    CHECK(a && c && memcmp(a, c, na) != 0);   /* another seed: another model */
    free(a);
    free(b);
    free(c);
    snprintf(pa, sizeof pa, "%s/a/tokenizer.json", tmpdir);
    CHECK(access(pa, R_OK) == 0);
    snprintf(pa, sizeof pa, "%s/a/LICENSE", tmpdir);
    CHECK(access(pa, R_OK) == 0);
    /* errors: exit status 2 for usage, 3 for a broken config */
    CHECK(WEXITSTATUS(run_init(ts, 1, "d", "--model-config")) == 2);
    CHECK(WEXITSTATUS(run_init("tests/fixtures/optim/adamw.json", 1, "e", "")) == 3);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
    TEST_DONE();
}
