/* AdamW with decoupled weight decay, bias correction as in
 * torch.optim.AdamW, global-norm clipping and learning-rate schedules. */
#include "model/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double lr_at(const adamw_config_t *c, int64_t step)
{
    int64_t w = c->warmup_steps, t = c->total_steps;
    if (step < w)
        return c->lr * (double)step / (double)(w > 1 ? w : 1);
    double rest = (double)(t - w > 1 ? t - w : 1);
    switch (c->schedule) {
    case LR_CONSTANT:
        return c->lr;
    case LR_LINEAR:
        return c->lr * fmax(0.0, (double)(t - step) / rest);
    case LR_COSINE: {
        double progress = (double)(step - w) / rest;
        return c->lr * fmax(0.0, 0.5 * (1.0 + cos(M_PI * progress)));
    }
    }
    return c->lr;
}

int lr_schedule_parse(const char *s, lr_schedule_t *out, deft_err_t *err)
{
    static const char *names[] = {"constant", "linear", "cosine"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) {
            *out = (lr_schedule_t)i;
            return DEFT_OK;
        }
    return deft_fail(err, DEFT_ERR_USAGE, "lr schedule '%s' unknown: expected constant, "
                     "linear or cosine", s);
}

void adamw_init(adamw_t *o, const adamw_config_t *cfg)
{
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
}

void adamw_free(adamw_t *o)
{
    for (int i = 0; i < o->np; i++) {
        free(o->p[i].name);
        free(o->p[i].m);
        free(o->p[i].v);
    }
    free(o->p);
    memset(o, 0, sizeof *o);
}

int adamw_add(adamw_t *o, const char *name, float *param, float *grad, int64_t n, bool decay)
{
    o->p = xrealloc(o->p, (size_t)(o->np + 1) * sizeof *o->p);
    adamw_param_t *p = &o->p[o->np];
    p->name = xstrdup(name);
    p->param = param;
    p->grad = grad;
    p->n = n;
    p->decay = decay;
    /* m, v: (n) float32, same layout as param */
    p->m = xcalloc((size_t)n, sizeof(float));
    p->v = xcalloc((size_t)n, sizeof(float));
    return o->np++;
}

double adamw_grad_sqsum(const adamw_t *o)
{
    double total = 0;
    for (int i = 0; i < o->np; i++) {
        const float *g = o->p[i].grad;
        double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
        for (int64_t j = 0; j < o->p[i].n; j++)
            s += (double)g[j] * g[j];
        total += s;
    }
    return total;
}

double adamw_clip(adamw_t *o, double norm)
{
    /* in float32, as torch computes the factor from a float32 norm */
    float c = (float)o->cfg.max_grad_norm / ((float)norm + 1e-6f);
    if (c >= 1.0f)
        return 1.0;
    for (int i = 0; i < o->np; i++) {
        float *g = o->p[i].grad;
#pragma omp parallel for schedule(static)
        for (int64_t j = 0; j < o->p[i].n; j++)
            g[j] *= c;
    }
    return c;
}

void adamw_update(adamw_t *o)
{
    const adamw_config_t *c = &o->cfg;
    double lr = lr_at(c, o->step);
    o->step++;
    /* bias corrections of the moments after `step` updates */
    double bc1 = 1.0 - pow(c->beta1, (double)o->step);
    double bc2 = 1.0 - pow(c->beta2, (double)o->step);
    float step_size = (float)(lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    /* 1 - beta rounded once from double, as torch passes it to its kernels */
    float one_b1 = (float)(1.0 - c->beta1), b2 = (float)c->beta2;
    float one_b2 = (float)(1.0 - c->beta2), eps = (float)c->eps;
    for (int i = 0; i < o->np; i++) {
        adamw_param_t *p = &o->p[i];
        float keep = p->decay ? (float)(1.0 - lr * c->weight_decay) : 1.0f;
#pragma omp parallel for schedule(static)
        for (int64_t j = 0; j < p->n; j++) {
            float g = p->grad[j];
            /* the same roundings as torch's lerp_ and mul_/addcmul_ kernels,
             * which fuse the last multiply-add */
            float m = fmaf(one_b1, g - p->m[j], p->m[j]);
            float v = fmaf(one_b2 * g, g, p->v[j] * b2);
            p->m[j] = m;
            p->v[j] = v;
            float denom = sqrtf(v) * inv_sqrt_bc2 + eps;
            p->param[j] = p->param[j] * keep - step_size * m / denom;
        }
    }
}

double adamw_step(adamw_t *o)
{
    double norm = sqrt(adamw_grad_sqsum(o));
    if (o->cfg.max_grad_norm > 0)
        adamw_clip(o, norm);
    adamw_update(o);
    return norm;
}
