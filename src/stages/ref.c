/* Reference log-probs for DPO (stage ref): computed once with the frozen
 * starting model, stored in HDF5 with checksums of the model and of the
 * token sequences, and reused while both match. File layout:
 * docs/training.md, "Reference log-probs". */
#include "stages/ref.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/h5.h"
#include "util/log.h"
#include "util/sha256.h"

#define REF_FORMAT "deft-ref"

void ref_logps_free(ref_logps_t *r)
{
    free(r->off);
    free(r->sum);
    free(r->n_tok);
    memset(r, 0, sizeof *r);
}

void ref_model_checksum(const llama_model_t *m, char hex[65])
{
    sha256_t h;
    sha256_init(&h);
    size_t cap = 0;
    float *host = NULL;   /* (numel,) one parameter at a time, host copy */
    /* whole tensors, so that every tp size gives the same checksum (under
     * tensor parallelism this is a collective over the tp group) */
    for (int i = 0; i < m->n_params; i++) {
        const llama_param_t *p = &m->params[i];
        size_t numel = (size_t)(p->full_shape[0] * (p->ndim == 2 ? p->full_shape[1] : 1));
        sha256_update(&h, p->name, strlen(p->name) + 1);
        sha256_update(&h, p->full_shape, sizeof p->full_shape);
        if (numel > cap) {
            cap = numel;
            host = xrealloc(host, cap * sizeof(float));
        }
        deft_err_t gerr = {0};
        if (m->tp_size == 1)
            m->be->to_host(host, p->data, numel * sizeof(float));
        else if (llama_param_gather(m, i, false, host, -1, &gerr))
            /* the hash is then of no file: the reference is computed anew */
            log_warn("ref: %s; the reference file will not be reused", gerr.msg);
        sha256_update(&h, host, numel * sizeof(float));
    }
    free(host);
    uint8_t d[32];
    sha256_final(&h, d);
    sha256_hex(d, hex);
}

void ref_data_checksum(const train_sample_t *s, int64_t n, char hex[65])
{
    sha256_t h;
    sha256_init(&h);
    for (int64_t i = 0; i < n; i++) {
        int64_t head[4] = {s[i].id.file, s[i].id.line, s[i].n_resp, s[i].prompt_end};
        sha256_update(&h, head, sizeof head);
        for (int k = 0; k < s[i].n_resp; k++) {
            int32_t len = s[i].len[k];
            sha256_update(&h, &len, sizeof len);
            sha256_update(&h, s[i].ids[k], (size_t)len * sizeof(int32_t));
        }
    }
    uint8_t d[32];
    sha256_final(&h, d);
    sha256_hex(d, hex);
}

static void ref_alloc(ref_logps_t *r, const train_sample_t *s, int64_t n)
{
    r->n = n;
    r->off = xcalloc((size_t)n + 1, sizeof(int64_t));
    for (int64_t i = 0; i < n; i++)
        r->off[i + 1] = r->off[i] + s[i].n_resp;
    r->sum = xcalloc((size_t)r->off[n] + 1, sizeof(double));
    r->n_tok = xcalloc((size_t)r->off[n] + 1, sizeof(int64_t));
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < s[i].n_resp; k++)
            r->n_tok[r->off[i] + k] = s[i].len[k] - s[i].prompt_end;
}

// ----------------------------------------------------------------------------
// the file

/* 0 and *match when the file holds log-probs of these checksums and counts. */
static int ref_read(const char *path, const char *model_hex, const char *data_hex,
                    ref_logps_t *r, bool *match, deft_err_t *err)
{
    *match = false;
    h5_file_t *f = NULL;
    int rc = h5_open(&f, path, err);
    if (rc)
        return rc;
    char *fmt = NULL, *mh = NULL, *dh = NULL;
    double *sum = NULL;
    size_t nsum = 0;
    rc = h5_get_attr_str(f, "/", "format", &fmt, err);
    if (!rc && strcmp(fmt, REF_FORMAT))
        rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: attribute format is '%s', expected '%s'",
                       path, fmt, REF_FORMAT);
    if (!rc)
        rc = h5_get_attr_str(f, "/", "model_sha256", &mh, err);
    if (!rc)
        rc = h5_get_attr_str(f, "/", "data_sha256", &dh, err);
    if (!rc && !strcmp(mh, model_hex) && !strcmp(dh, data_hex)) {
        rc = h5_read_f64(f, "/logp_sum", &sum, &nsum, err);
        if (!rc && nsum != (size_t)r->off[r->n])
            rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: /logp_sum has %zu entries, expected %lld",
                           path, nsum, (long long)r->off[r->n]);
        if (!rc) {
            memcpy(r->sum, sum, nsum * sizeof(double));
            *match = true;
        }
    }
    free(fmt);
    free(mh);
    free(dh);
    free(sum);
    h5_close(f);
    return rc;
}

static int ref_write(const char *path, const train_sample_t *s, const ref_logps_t *r,
                     const char *model_hex, const char *data_hex, deft_err_t *err)
{
    int64_t n = r->n;
    int32_t *file = xmalloc((size_t)n * sizeof(int32_t) + 1);
    int64_t *line = xmalloc((size_t)n * sizeof(int64_t) + 1);
    for (int64_t i = 0; i < n; i++) {
        file[i] = s[i].id.file;
        line[i] = s[i].id.line;
    }
    h5_file_t *f = NULL;
    int rc = h5_create(&f, path, err);
    if (!rc) {
        size_t m = (size_t)r->off[n];
        rc = h5_set_attr_str(f, "/", "format", REF_FORMAT, err) ||
             h5_set_attr_str(f, "/", "model_sha256", model_hex, err) ||
             h5_set_attr_str(f, "/", "data_sha256", data_hex, err) ||
             h5_set_attr_i64(f, "/", "n_samples", n, err) ||
             h5_write_i32(f, "/sample_file", file, (size_t)n, err) ||
             h5_write_i64(f, "/sample_line", line, (size_t)n, err) ||
             h5_write_i64(f, "/resp_offset", r->off, (size_t)n + 1, err) ||
             h5_write_f64(f, "/logp_sum", r->sum, m, err) ||
             h5_write_i64(f, "/n_tok", r->n_tok, m, err);
        if (rc) {
            rc = err->code ? (int)err->code : DEFT_ERR_IO;
            h5_discard(f);
        } else {
            rc = h5_commit(f, err);
        }
    }
    free(file);
    free(line);
    return rc;
}

// ----------------------------------------------------------------------------
// computing

/* Sums of log-probs over the scored tokens of samples [i0, i1) with
 * i % nranks == rank, `batch` samples per forward. */
static int ref_compute(llama_model_t *m, const train_sample_t *s, int64_t n, int batch,
                       int rank, int nranks, ref_logps_t *r, deft_err_t *err)
{
    int rc = DEFT_OK;
    progress_t prog;
    progress_start(&prog, "ref: reference log-probs, rank 0's share", "samples",
                   (n - rank + nranks - 1) / nranks);
    int64_t done = 0, tokens = 0;
    for (int64_t i0 = rank; i0 < n && !rc; i0 += (int64_t)batch * nranks) {
        int B = 0, T = 0, ns = 0;
        int64_t mine[64];
        for (int64_t i = i0; i < n && ns < batch && ns < 64; i += nranks) {
            mine[ns++] = i;
            for (int k = 0; k < s[i].n_resp; k++)
                T = s[i].len[k] > T ? s[i].len[k] : T;
            B += s[i].n_resp;
        }
        int32_t *ids = xcalloc((size_t)B * T, sizeof(int32_t));   /* [B, T] right-padded */
        int32_t *lens = xcalloc((size_t)B, sizeof(int32_t));      /* [B] */
        float *lp = xcalloc((size_t)B * T, sizeof(float));         /* [B, T] log-probs */
        int b = 0;
        for (int j = 0; j < ns; j++)
            for (int k = 0; k < s[mine[j]].n_resp; k++, b++) {
                lens[b] = s[mine[j]].len[k];
                memcpy(ids + (size_t)b * T, s[mine[j]].ids[k], sizeof(int32_t) * lens[b]);
                tokens += lens[b];
            }
        rc = llama_logprobs(m, ids, lens, B, T, lp, err);
        b = 0;
        for (int j = 0; j < ns && !rc; j++) {
            const train_sample_t *x = &s[mine[j]];
            for (int k = 0; k < x->n_resp; k++, b++) {
                double sum = 0;   /* rows [prompt_end, len): response tokens and EOS */
                for (int t = x->prompt_end; t < x->len[k]; t++)
                    sum += lp[(size_t)b * T + t];
                r->sum[r->off[mine[j]] + k] = sum;
            }
        }
        free(ids);
        free(lens);
        free(lp);
        done += ns;
        progress_update(&prog, done, tokens);
    }
    progress_end(&prog, done, tokens);
    return rc;
}

int ref_prepare(const char *path, llama_model_t *m, const train_sample_t *s, int64_t n,
                int batch, comm_t *comm, ref_logps_t *out, bool *reused, deft_err_t *err)
{
    int rank = comm_rank(comm), nranks = comm_size(comm);
    char model_hex[65], data_hex[65];
    ref_model_checksum(m, model_hex);
    ref_data_checksum(s, n, data_hex);
    ref_alloc(out, s, n);
    if (batch > 64)
        batch = 64;

    /* rank 0 looks at the file and tells the others what it found */
    int64_t found = 0;
    if (rank == 0 && access(path, F_OK) == 0) {
        bool match = false;
        deft_err_t rerr = {0};
        if (ref_read(path, model_hex, data_hex, out, &match, &rerr))
            log_warn("ref: %s cannot be used (%s); computing it again", path, rerr.msg);
        else if (!match)
            log_info("ref: %s was made from another model or other data; computing it again",
                     path);
        found = match;
    }
    int rc = comm_allreduce_max_i64(comm, &found, 1, err);
    if (rc)
        return rc;
    *reused = found;
    if (found) {
        log_info("ref: reusing %s (same model and sequences)", path);
        return comm_bcast_bytes(comm, out->sum, sizeof(double) * (size_t)out->off[n], 0, err);
    }

    memset(out->sum, 0, sizeof(double) * (size_t)out->off[n]);
    /* under tensor parallelism the m->tp_size consecutive ranks of a group
     * compute one share together, and its first rank contributes it */
    rc = ref_compute(m, s, n, batch, rank / m->tp_size, nranks / m->tp_size, out, err);
    if (m->tp_rank != 0)
        memset(out->sum, 0, sizeof(double) * (size_t)out->off[n]);
    int agreed = 0, first = -1;
    deft_err_t merr;
    if (comm_agree(comm, rc, &agreed, &first, &merr)) {
        *err = merr;
        return DEFT_ERR_MPI;
    }
    if (agreed)
        return agreed;
    /* every entry is computed by one rank and zero on the others: the sum is exact */
    rc = comm_allreduce_sum_f64(comm, out->sum, (size_t)out->off[n], err);
    if (rc)
        return rc;
    if (rank == 0)
        rc = ref_write(path, s, out, model_hex, data_hex, err);
    if (comm_agree(comm, rc, &agreed, &first, &merr)) {
        *err = merr;
        return DEFT_ERR_MPI;
    }
    if (!agreed && rank == 0)
        log_info("ref: wrote %s (%lld samples, %lld responses)", path, (long long)n,
                 (long long)out->off[n]);
    return agreed;
}
