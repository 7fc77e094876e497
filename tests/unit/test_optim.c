/* AdamW, clipping and schedules against torch.optim.AdamW,
 * clip_grad_norm_ and transformers' schedules
 * (tools/make_optim_fixtures.py): ten steps of three tensors, two of them
 * with weight decay, for each schedule; relative tolerance 1e-6. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "model/optim.h"
#include "test_util.h"

static double worst_rel;

/* Error relative to the tensor's largest value (norm-wise, infinity norm):
 * our gradient norm is summed in double, torch's in float32, so the
 * clipping factor may differ in its last bit, and a moment whose terms
 * nearly cancel magnifies that bit beyond 1e-6 of its own small size.
 * With clipping off the trajectories agree to the bit. */
static void compare(const char *what, int step, const float *x, json_t *want)
{
    int bad = 0;
    double big = 0;
    for (size_t i = 0; i < json_array_size(want); i++)
        big = fmax(big, fabs(json_number_value(json_array_get(want, i))));
    for (size_t i = 0; i < json_array_size(want); i++) {
        double w = json_number_value(json_array_get(want, i));
        double rel = fabs(x[i] - w) / fmax(big, 1e-30);
        if (rel > worst_rel)
            worst_rel = rel;
        if (rel > 1e-6 && bad++ < 3)
            fprintf(stderr, "%s step %d [%zu]: %.9g vs torch %.9g\n", what, step, i, x[i], w);
    }
    CHECK_MSG(bad == 0, "%s step %d: %d values off", what, step, bad);
}

static void run_case(json_t *c)
{
    bool clipped = json_number_value(json_object_get(c, "max_grad_norm")) > 0;
    worst_rel = 0;
    adamw_config_t cfg = {
        .lr = json_number_value(json_object_get(c, "lr")),
        .beta1 = json_number_value(json_object_get(c, "beta1")),
        .beta2 = json_number_value(json_object_get(c, "beta2")),
        .eps = json_number_value(json_object_get(c, "eps")),
        .weight_decay = json_number_value(json_object_get(c, "weight_decay")),
        .max_grad_norm = json_number_value(json_object_get(c, "max_grad_norm")),
        .warmup_steps = json_integer_value(json_object_get(c, "warmup_steps")),
        .total_steps = json_integer_value(json_object_get(c, "total_steps")),
    };
    const char *sched = json_string_value(json_object_get(c, "schedule"));
    CHECK(lr_schedule_parse(sched, &cfg.schedule, NULL) == DEFT_OK);
    json_t *init = json_object_get(c, "init"), *decay = json_object_get(c, "decay");
    int np = (int)json_array_size(init);
    float *param[8], *grad[8];
    adamw_t o;
    adamw_init(&o, &cfg);
    for (int i = 0; i < np; i++) {
        json_t *a = json_array_get(init, i);
        int64_t n = (int64_t)json_array_size(a);
        param[i] = malloc(sizeof(float) * n);
        grad[i] = malloc(sizeof(float) * n);
        for (int64_t j = 0; j < n; j++)
            param[i][j] = (float)json_number_value(json_array_get(a, j));
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        CHECK(adamw_add(&o, name, param[i], grad[i], n,
                        json_is_true(json_array_get(decay, i))) == i);
    }
    json_t *steps = json_object_get(c, "steps");
    for (size_t k = 0; k < json_array_size(steps); k++) {
        json_t *s = json_array_get(steps, k);
        json_t *g = json_object_get(s, "grads");
        for (int i = 0; i < np; i++)
            for (size_t j = 0; j < json_array_size(json_array_get(g, i)); j++)
                grad[i][j] = (float)json_number_value(json_array_get(json_array_get(g, i), j));
        double lr_want = json_number_value(json_object_get(s, "lr"));
        CHECK_MSG(fabs(lr_at(&cfg, o.step) - lr_want) <= 1e-12 * fmax(lr_want, 1e-30),
                  "%s step %zu: lr %.12g vs %.12g", sched, k, lr_at(&cfg, o.step), lr_want);
        double norm = adamw_step(&o);
        json_t *jn = json_object_get(s, "grad_norm");
        if (json_is_number(jn))
            CHECK_NEAR(norm / json_number_value(jn), 1.0, 1e-6);
        for (int i = 0; i < np; i++) {
            compare("param", (int)k, param[i], json_array_get(json_object_get(s, "params"), i));
            compare("m", (int)k, o.p[i].m, json_array_get(json_object_get(s, "m"), i));
            compare("v", (int)k, o.p[i].v, json_array_get(json_object_get(s, "v"), i));
        }
    }
    CHECK(o.step == (int64_t)json_array_size(steps));
    printf("%s: worst norm-wise relative difference from torch %.3g\n", sched, worst_rel);
    if (!clipped)
        CHECK(worst_rel == 0.0);
    adamw_free(&o);
    for (int i = 0; i < np; i++) {
        free(param[i]);
        free(grad[i]);
    }
}

/* Schedule shapes at their landmarks, independent of the fixture. */
static void test_schedules(void)
{
    adamw_config_t c = {.lr = 1.0, .warmup_steps = 10, .total_steps = 110};
    c.schedule = LR_COSINE;
    CHECK(lr_at(&c, 0) == 0.0 && lr_at(&c, 5) == 0.5 && lr_at(&c, 10) == 1.0);
    CHECK_NEAR(lr_at(&c, 60), 0.5, 1e-12);
    CHECK_NEAR(lr_at(&c, 110), 0.0, 1e-12);
    CHECK(lr_at(&c, 200) >= 0.0);
    c.schedule = LR_LINEAR;
    CHECK_NEAR(lr_at(&c, 60), 0.5, 1e-12);
    CHECK(lr_at(&c, 110) == 0.0 && lr_at(&c, 500) == 0.0);
    c.schedule = LR_CONSTANT;
    CHECK(lr_at(&c, 5) == 0.5 && lr_at(&c, 10000) == 1.0);
    c.warmup_steps = 0;
    CHECK(lr_at(&c, 0) == 1.0);
    deft_err_t err = {0};
    lr_schedule_t s;
    CHECK(lr_schedule_parse("cosine", &s, &err) == 0 && s == LR_COSINE);
    CHECK(lr_schedule_parse("exp", &s, &err) == DEFT_ERR_USAGE && strstr(err.msg, "'exp'"));
}

int main(void)
{
    json_error_t je;
    json_t *cases = json_load_file("tests/fixtures/optim/adamw.json", 0, &je);
    CHECK_MSG(cases != NULL, "%s", je.text);
    for (size_t i = 0; cases && i < json_array_size(cases); i++)
        run_case(json_array_get(cases, i));
    json_decref(cases);
    test_schedules();
    TEST_DONE();
}
