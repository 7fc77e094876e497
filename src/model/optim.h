/* AdamW (Loshchilov and Hutter, 2019) over a list of flat float32 parameter
 * tensors, with global gradient-norm clipping and warmup + decay learning
 * rate schedules. The arithmetic follows torch.optim.AdamW,
 * torch.nn.utils.clip_grad_norm_ and transformers' schedule functions, and
 * is tested against them step by step. */
#ifndef DEFT_OPTIM_H
#define DEFT_OPTIM_H

#include "util/common.h"

typedef enum { LR_CONSTANT, LR_LINEAR, LR_COSINE } lr_schedule_t;

typedef struct {
    double lr;             /* peak learning rate */
    double beta1, beta2;   /* 0.9, 0.95 are usual for Llama fine-tuning */
    double eps;            /* added to sqrt(v_hat); 1e-8 as in torch */
    double weight_decay;   /* decoupled, applied to parameters flagged `decay` */
    double max_grad_norm;  /* clip the global L2 norm to this; <= 0: no clipping */
    lr_schedule_t schedule;
    int64_t warmup_steps;  /* lr rises linearly from 0 over these steps */
    int64_t total_steps;   /* linear/cosine reach 0 here; unused by constant */
} adamw_config_t;

/* One parameter tensor; param, grad, m and v are flat arrays of n floats in
 * the same layout. m and v are owned by the optimizer (fp32 moments). */
typedef struct {
    char *name;
    float *param;          /* (n) updated in place */
    float *grad;           /* (n) scaled in place by clipping */
    float *m, *v;          /* (n) first and second moments */
    int64_t n;
    bool decay;            /* weight decay on; off for norms by default */
} adamw_param_t;

typedef struct {
    adamw_config_t cfg;
    adamw_param_t *p;
    int np;
    int64_t step;          /* optimizer steps taken; the next step uses lr_at(step) */
} adamw_t;

/* The schedule's learning rate for the step that follows `step` completed
 * steps (LambdaLR's convention):
 *   warmup (step < W):  lr * step / max(1, W)
 *   constant:           lr
 *   linear:             lr * max(0, (T - step) / max(1, T - W))
 *   cosine:             lr * max(0, 0.5 * (1 + cos(pi * (step - W) / max(1, T - W)))) */
double lr_at(const adamw_config_t *cfg, int64_t step);

/* Parses "constant", "linear" or "cosine". */
int lr_schedule_parse(const char *s, lr_schedule_t *out, deft_err_t *err);

void adamw_init(adamw_t *o, const adamw_config_t *cfg);
void adamw_free(adamw_t *o);

/* Adds a tensor; `decay` false for RMSNorm weights (and biases). Moments
 * start at zero. Returns the parameter's index. */
int adamw_add(adamw_t *o, const char *name, float *param, float *grad, int64_t n, bool decay);

/* Sum of squared gradients of this process's tensors, in double. With
 * sharded parameters the caller sums it over ranks before clipping. */
double adamw_grad_sqsum(const adamw_t *o);

/* Scales every gradient by min(1, max_norm / (norm + 1e-6)) as
 * clip_grad_norm_ does; returns that factor. */
double adamw_clip(adamw_t *o, double norm);

/* One AdamW update with lr_at(step); increments step. */
void adamw_update(adamw_t *o);

/* Clip (when max_grad_norm > 0) then update, for unsharded parameters.
 * Returns the gradient norm before clipping. */
double adamw_step(adamw_t *o);

#endif
