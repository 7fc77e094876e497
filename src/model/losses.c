/* Training objectives (DEFT paper Eq. 10): SFT, DPO, PRO and the DEFT term
 * -omega * R_Q, with gradients on per-token log-probs and on logits. Inputs
 * are fp32; sums and exponentials are taken in double so that long
 * responses and large vocabularies lose no precision. */
#include "model/losses.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double loss_softplus(double x)
{
    /* log(1 + e^x) = max(x, 0) + log1p(e^-|x|): never overflows */
    return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x)));
}

static double sigmoid(double x)
{
    if (x >= 0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static double resp_sum(const loss_resp_t *r)
{
    double s = 0;
    for (int t = 0; t < r->n_tok; t++)
        s += r->logp[t];
    return s;
}

/* Adds the same value to every token's gradient: what d(sum_t logp)/d(logp_t) = 1 gives. */
static void resp_add_grad(const loss_resp_t *r, double g)
{
    if (!r->dlogp || g == 0)
        return;
    for (int t = 0; t < r->n_tok; t++)
        r->dlogp[t] += (float)g;
}

// ----------------------------------------------------------------------------
// the terms

double loss_sft_term(const loss_resp_t *y1, double scale)
{
    /* an empty mask contributes nothing rather than 0/0 */
    if (y1->n_tok == 0)
        return 0.0;
    double T = y1->n_tok;
    resp_add_grad(y1, -scale / T);
    return -resp_sum(y1) / T;
}

double loss_dpo_term(const loss_sample_t *s, double beta, double scale, loss_stats_t *st)
{
    /* pair (y_1, y_j): delta = (s_1 - ref_1) - (s_j - ref_j); loss softplus(-beta delta),
     * averaged over the l - 1 pairs; d/d delta = -beta sigmoid(-beta delta) */
    const loss_resp_t *w = &s->resp[0];
    int npair = s->n_resp - 1;
    double ratio_w = resp_sum(w) - w->ref_sum;
    double loss = 0, g_w = 0, acc = 0, rej = 0;
    for (int j = 1; j < s->n_resp; j++) {
        const loss_resp_t *l = &s->resp[j];
        double ratio_l = resp_sum(l) - l->ref_sum;
        double z = beta * (ratio_w - ratio_l);
        loss += loss_softplus(-z);
        double g = -beta * sigmoid(-z) / npair;
        g_w += g;
        resp_add_grad(l, -g * scale);
        acc += z > 0;
        rej += beta * ratio_l;
    }
    resp_add_grad(w, g_w * scale);
    if (st) {
        double chosen = beta * ratio_w;
        st->acc += acc / npair * scale;
        st->chosen_reward += chosen * scale;
        st->rejected_reward += rej / npair * scale;
        st->margin += (chosen - rej / npair) * scale;
    }
    return loss / npair;
}

/* Length-normalised score s_k = (1/T_k) sum_t logp; an empty response scores 0. */
static double pro_score(const loss_resp_t *r)
{
    return r->n_tok ? resp_sum(r) / r->n_tok : 0.0;
}

static double pro_reward(const loss_sample_t *s, int k)
{
    return s->has_rewards ? s->resp[k].reward : (double)(s->n_resp - 1 - k);
}

double loss_pro_term(const loss_sample_t *s, double scale, loss_stats_t *st)
{
    int l = s->n_resp;
    double *sc = xmalloc(sizeof(double) * 3 * l);  /* (3, l): scores, their grads, logits */
    double *dsc = sc + l, *a = sc + 2 * l;
    for (int k = 0; k < l; k++) {
        sc[k] = pro_score(&s->resp[k]);
        dsc[k] = 0;
    }
    double loss = 0;
    for (int k = 0; k < l - 1; k++) {
        /* logits of position k's softmax: a[0] = s_k g_kk, a[j-k] = s_j g_kj (j > k),
         * with g_kj = r_k - r_j and g_kk = max_j g_kj */
        double gkk = -INFINITY;
        for (int j = k + 1; j < l; j++)
            gkk = fmax(gkk, pro_reward(s, k) - pro_reward(s, j));
        int n = l - k;
        a[0] = sc[k] * gkk;
        for (int j = k + 1; j < l; j++)
            a[j - k] = sc[j] * (pro_reward(s, k) - pro_reward(s, j));
        double mx = a[0];
        for (int i = 1; i < n; i++)
            mx = fmax(mx, a[i]);
        double z = 0;
        for (int i = 0; i < n; i++)
            z += exp(a[i] - mx);
        double lse = mx + log(z);
        loss += lse - a[0];
        /* d loss_k / d a_i = softmax_i - 1[i == 0] */
        dsc[k] += gkk * (exp(a[0] - lse) - 1.0);
        for (int j = k + 1; j < l; j++)
            dsc[j] += (pro_reward(s, k) - pro_reward(s, j)) * exp(a[j - k] - lse);
    }
    for (int k = 0; k < l; k++)
        if (s->resp[k].n_tok)
            resp_add_grad(&s->resp[k], dsc[k] * scale / s->resp[k].n_tok);
    if (st) {
        double best_other = -INFINITY;
        for (int j = 1; j < l; j++)
            best_other = fmax(best_other, sc[j]);
        st->acc += (sc[0] > best_other) * scale;
        st->margin += (sc[0] - best_other) * scale;
    }
    free(sc);
    return loss;
}

double loss_pro_sft_term(const loss_sample_t *s, double w_sft, double scale)
{
    double c = (double)(s->n_resp - 1) * (s->n_resp - 1) * w_sft;
    resp_add_grad(&s->resp[0], -c * scale);
    return -c * resp_sum(&s->resp[0]);
}

// ----------------------------------------------------------------------------
// a batch

static int check_sample(const loss_params_t *p, const loss_sample_t *s, int i, deft_err_t *err)
{
    int need = p->kind == LOSS_SFT ? 1 : 2;
    if (s->n_resp < need)
        return deft_fail(err, DEFT_ERR_DATA, "losses: sample %d: n_resp = %d, need >= %d",
                         i, s->n_resp, need);
    int nr = p->kind == LOSS_SFT ? 1 : s->n_resp;
    for (int k = 0; k < nr; k++) {
        const loss_resp_t *r = &s->resp[k];
        if (r->n_tok < 0 || (r->n_tok > 0 && !r->logp))
            return deft_fail(err, DEFT_ERR_INTERNAL,
                             "losses: sample %d response %d: n_tok = %d, logp %s", i, k,
                             r->n_tok, r->logp ? "set" : "NULL");
        for (int t = 0; t < r->n_tok; t++)
            if (!isfinite(r->logp[t]))
                return deft_fail(err, DEFT_ERR_DATA,
                                 "losses: sample %d response %d token %d: logp = %g", i, k,
                                 t, r->logp[t]);
        if (p->kind == LOSS_DPO && !isfinite(r->ref_sum))
            return deft_fail(err, DEFT_ERR_DATA, "losses: sample %d response %d: ref_sum = %g",
                             i, k, r->ref_sum);
        if (p->kind == LOSS_PRO && s->has_rewards && !isfinite(r->reward))
            return deft_fail(err, DEFT_ERR_DATA, "losses: sample %d response %d: reward = %g",
                             i, k, r->reward);
    }
    return DEFT_OK;
}

int loss_batch(const loss_params_t *p, const loss_sample_t *samples, int n,
               double n_global, loss_stats_t *st, deft_err_t *err)
{
    if (!(n_global > 0) || n_global < n)
        return deft_fail(err, DEFT_ERR_INTERNAL,
                         "losses: global sample count %g for a micro-batch of %d", n_global, n);
    double scale = 1.0 / n_global;
    for (int i = 0; i < n; i++) {
        const loss_sample_t *s = &samples[i];
        int rc = check_sample(p, s, i, err);
        if (rc)
            return rc;
        /* the diagnostic NLL takes no gradient: pass a copy without dlogp */
        loss_resp_t probe = s->resp[0];
        probe.dlogp = NULL;
        double nll = loss_sft_term(&probe, 0.0);
        double pref = 0, sft = 0;
        switch (p->kind) {
        case LOSS_SFT:
            sft = loss_sft_term(&s->resp[0], scale);
            break;
        case LOSS_DPO:
            pref = loss_dpo_term(s, p->beta, scale, st);
            sft = p->w_sft ? p->w_sft * loss_sft_term(&s->resp[0], p->w_sft * scale) : 0.0;
            break;
        case LOSS_PRO:
            pref = loss_pro_term(s, scale, st);
            sft = p->w_sft ? loss_pro_sft_term(s, p->w_sft, scale) : 0.0;
            break;
        }
        double deft = -p->omega * s->r_q;
        st->pref += pref * scale;
        st->sft += sft * scale;
        st->deft += deft * scale;
        st->total += (pref + sft + deft) * scale;
        st->r_q += s->r_q * scale;
        st->nll += nll * scale;
        st->n_samples++;
    }
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// logits

void loss_deft_add_dlogits(float *dlogits, int T, int V, const float *qdiff,
                           double omega, double scale)
{
    if (T == 0 || omega == 0)
        return;
    double c = -omega * scale / T;
    for (int t = 0; t < T; t++) {
        float *dt = dlogits + (size_t)t * V;
        for (int v = 0; v < V; v++)
            dt[v] += (float)(c * qdiff[v]);
    }
}

double loss_rq_from_logits(const float *z, int T, int V, const float *qdiff)
{
    if (T == 0)
        return 0.0;
    double s = 0;
    for (int t = 0; t < T; t++) {
        const float *zt = z + (size_t)t * V;
        for (int v = 0; v < V; v++)
            s += (double)qdiff[v] * zt[v];
    }
    return s / T;
}

void loss_rq_head_vector_f64(const float *w_head, const double *qdiff, int V, int d,
                             double *u)
{
    memset(u, 0, (size_t)d * sizeof *u);
    for (int v = 0; v < V; v++) {
        double q = qdiff[v];
        if (q == 0)
            continue;
        const float *row = w_head + (size_t)v * d;
        for (int j = 0; j < d; j++)
            u[j] += q * row[j];
    }
}

void loss_rq_head_vector(const float *w_head, const float *qdiff, int V, int d, float *u)
{
    double *q = xmalloc((size_t)V * sizeof *q);    /* (V,) qdiff widened */
    double *acc = xmalloc((size_t)d * sizeof *acc);  /* (d,) */
    for (int v = 0; v < V; v++)
        q[v] = qdiff[v];
    loss_rq_head_vector_f64(w_head, q, V, d, acc);
    for (int j = 0; j < d; j++)
        u[j] = (float)acc[j];
    free(acc);
    free(q);
}

double loss_rq_from_hidden_f64(const float *h, int T, int d, const double *u)
{
    if (T == 0)
        return 0.0;
    double s = 0;
    for (int t = 0; t < T; t++) {
        const float *ht = h + (size_t)t * d;
        for (int j = 0; j < d; j++)
            s += u[j] * ht[j];
    }
    return s / T;
}

double loss_rq_from_hidden(const float *h, int T, int d, const float *u)
{
    double *ud = xmalloc((size_t)d * sizeof *ud);  /* (d,) u widened */
    for (int j = 0; j < d; j++)
        ud[j] = u[j];
    double r = loss_rq_from_hidden_f64(h, T, d, ud);
    free(ud);
    return r;
}
