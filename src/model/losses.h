/* Training objectives on top of per-token log-probs: SFT, DPO, PRO and the
 * DEFT distribution-reward term (paper Eq. 10), with exact gradients with
 * respect to every per-token log-prob, and R_Q with its logits gradient.
 * The chain from log-prob gradients to logits is the backend's
 * logsoftmax_gather_bwd. See docs/training.md for the formulas. */
#ifndef DEFT_LOSSES_H
#define DEFT_LOSSES_H

#include "util/common.h"

typedef enum { LOSS_SFT, LOSS_DPO, LOSS_PRO } loss_kind_t;

/* One response of a sample, as the model scored it. */
typedef struct {
    const float *logp;  /* (T,) log pi(y_t | x, y_<t): response tokens and terminator */
    float *dlogp;       /* (T,) d(loss)/d(logp_t), accumulated (+=); NULL: not wanted */
    int n_tok;          /* T >= 0 */
    double ref_sum;     /* DPO only: sum_t log pi_ref over the same T tokens */
    double reward;      /* reward-model score; read only when the sample has_rewards */
} loss_resp_t;

/* One sample: a prompt's ranked responses, best first. */
typedef struct {
    loss_resp_t *resp;  /* (l,) y_1 .. y_l, best first */
    int n_resp;         /* l >= 2 (SFT: >= 1) */
    bool has_rewards;   /* false: PRO uses rank rewards r_k = l - k */
    double r_q;         /* R_Q on y_1 under the policy (for the reported loss); 0 if omega 0 */
} loss_sample_t;

typedef struct {
    loss_kind_t kind;
    double beta;        /* DPO inverse temperature: 0.1 (paper A.2) */
    double w_sft;       /* SFT weight: 0.05 (paper A.2) */
    double omega;       /* DEFT weight: 1.2e-7 (DPO), 1.2e-6 (PRO) in the paper; 0 = off */
} loss_params_t;

/* Per-sample quantities, each already divided by the global sample count, so
 * that summing the stats of every micro-batch on every rank (an all-reduce)
 * gives global means. n_samples is a plain local count. */
typedef struct {
    double total;           /* pref + sft + deft: the objective being minimised */
    double pref;            /* L_DPO (mean of pair losses) or L_PRO (sum over k); 0 for SFT */
    double sft;             /* the SFT term as it enters total: w_sft * L_sft (DPO),
                               (l-1)^2 * w_sft * NLL sum (PRO), L_sft itself (SFT) */
    double deft;            /* -omega * R_Q */
    double r_q;             /* R_Q on y_1 */
    double nll;             /* token-mean NLL of y_1 (diagnostic for every kind) */
    double acc;             /* DPO: fraction of pairs with chosen reward > rejected;
                               PRO: 1 when s_1 > s_j for every j > 1 */
    double margin;          /* DPO: chosen - rejected implicit reward, mean over pairs;
                               PRO: s_1 - max_{j>1} s_j */
    double chosen_reward;   /* DPO: beta * (s_1 - s_1_ref) */
    double rejected_reward; /* DPO: beta * (s_j - s_j_ref), mean over j > 1 */
    int64_t n_samples;
} loss_stats_t;

// ----------------------------------------------------------------------------
// objectives on log-probs

/* Adds one micro-batch's share of the objective to *st and its gradient to
 * every resp[].dlogp. n_global is the number of samples in the GLOBAL batch
 * (all micro-batches, all ranks): every per-sample term is divided by it, so
 * micro-batches compose to exactly the global mean. Errors (l < 2, T < 0,
 * n_global <= 0, a non-finite log-prob) name the sample and field. */
int loss_batch(const loss_params_t *p, const loss_sample_t *samples, int n,
               double n_global, loss_stats_t *st, deft_err_t *err);

/* The single terms, per sample, scaled by `scale` (usually 1/n_global) for
 * the gradient; each returns the unscaled per-sample value. */
double loss_sft_term(const loss_resp_t *y1, double scale);            /* token-mean NLL */
double loss_dpo_term(const loss_sample_t *s, double beta, double scale,
                     loss_stats_t *st);  /* st (may be NULL): acc, margin, rewards, x scale */
double loss_pro_term(const loss_sample_t *s, double scale, loss_stats_t *st);
/* PRO's own SFT term, (l-1)^2 * w_sft * (-sum_t logp of y_1). */
double loss_pro_sft_term(const loss_sample_t *s, double w_sft, double scale);

/* Numerically stable log(1 + exp(x)). */
double loss_softplus(double x);

// ----------------------------------------------------------------------------
// R_Q and its gradient on the logits

/* The DEFT term's gradient on the logits of y_1: d(-omega R_Q)/dz_t is the
 * constant -omega * Q_diff / T for each of the T response positions, scaled
 * by `scale` (1/n_global). dlogits: (T, V) rows of the response positions
 * (a vocabulary shard: pass the matching qdiff slice); qdiff: (V,). */
void loss_deft_add_dlogits(float *dlogits, int T, int V, const float *qdiff,
                           double omega, double scale);

/* R_Q = (1/T) sum_t Q_diff . z_t from logits z: (T, V) (a shard gives a
 * partial sum to all-reduce). Exact only while sum_v Q_diff = 0. T = 0: 0. */
double loss_rq_from_logits(const float *z, int T, int V, const float *qdiff);

/* u = W_head^T Q_diff: W_head (V, d) row-major as in lm_head.weight, qdiff
 * (V,), u (d,) overwritten. With a vocabulary shard of W_head and qdiff the
 * result is a partial u to all-reduce. Accumulates in double. */
void loss_rq_head_vector(const float *w_head, const float *qdiff, int V, int d, float *u);

/* R_Q = (1/T) sum_t u . h_t from final normalised hidden states h: (T, d),
 * u: (d,). Needs neither the output matmul nor a softmax. T = 0: 0. */
double loss_rq_from_hidden(const float *h, int T, int d, const float *u);

/* The same two with Q_diff and u in double, as the score stage keeps them:
 * qdiff (V,), u (d,) overwritten. The float forms above widen and call these. */
void loss_rq_head_vector_f64(const float *w_head, const double *qdiff, int V, int d,
                             double *u);
double loss_rq_from_hidden_f64(const float *h, int T, int d, const double *u);

#endif
