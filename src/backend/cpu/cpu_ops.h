/* The CPU backend's ops, one function per entry of backend_t (see
 * backend/backend.h for shapes and semantics). Exposed so that the op table in
 * cpu_backend.c can be assembled from several files. */
#ifndef DEFT_CPU_OPS_H
#define DEFT_CPU_OPS_H

#include "backend/backend.h"

void cpu_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w,
                     int N, int d, float eps);
void cpu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x,
                     const float *w, const float *rstd, int N, int d);
void cpu_rope_fwd(float *x, const float *inv_freq, int B, int T, int row_stride_b,
                  int H, int hd, int pos0);
void cpu_rope_bwd(float *dx, const float *inv_freq, int B, int T, int row_stride_b,
                  int H, int hd, int pos0);
void cpu_attn_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                  const int32_t *klen, const attn_shape_t *s);
void cpu_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                  const float *lse, const float *q, const float *k, const float *v,
                  const int32_t *klen, const attn_shape_t *s);
void cpu_logsoftmax_gather_fwd(float *logp, const float *logits, const int32_t *tgt,
                               int N, int V);
void cpu_logsoftmax_gather_bwd(float *dlogits, const float *logits, const int32_t *tgt,
                               const float *g, int N, int V);

#endif
