/* Stage select: exact k = ceil(f * n), order-preserving keys, and the
 * distributed radix select that finds, per subset, the k-th lowest
 * (key, sample id) pair with 16 all-reduces of byte histograms, without any
 * rank holding more than its slice of the scores (docs/selection.md). */
#include "stages/select.h"

#include <errno.h>
#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/line_reader.h"
#include "io/h5.h"
#include "util/log.h"
#include "util/sha256.h"

bool select_by_parse(const char *text, select_by_t *out)
{
    static const struct {
        const char *name;
        select_by_t by;
    } names[] = {{"rq", SELECT_BY_RQ},
                 {"likelihood", SELECT_BY_LIKELIHOOD},
                 {"random", SELECT_BY_RANDOM},
                 {"ifd", SELECT_BY_IFD}};
    for (size_t i = 0; text && i < DEFT_ARRAY_LEN(names); i++)
        if (!strcmp(text, names[i].name)) {
            *out = names[i].by;
            return true;
        }
    return false;
}

const char *select_by_name(select_by_t by)
{
    switch (by) {
    case SELECT_BY_RQ: return "rq";
    case SELECT_BY_LIKELIHOOD: return "likelihood";
    case SELECT_BY_RANDOM: return "random";
    case SELECT_BY_IFD: return "ifd";
    }
    return "?";
}

// ----------------------------------------------------------------------------
// exact k

/* Significand digits kept exactly: 19 decimal digits always fit in uint64. */
#define FRACTION_MAX_DIGITS 19

int select_fraction_parse(const char *text, select_fraction_t *out, deft_err_t *err)
{
    const char *p = text ? text : "";
    uint64_t mant = 0;
    int ndigits = 0, exp10 = 0;
    bool any_digit = false, seen_point = false;
    if (*p == '+')
        p++;
    for (;; p++) {
        if (*p == '.' && !seen_point) {
            seen_point = true;
        } else if (*p >= '0' && *p <= '9') {
            any_digit = true;
            if (mant == 0 && *p == '0') {  /* a leading zero carries no digit */
                if (seen_point)
                    exp10--;
                continue;
            }
            if (++ndigits > FRACTION_MAX_DIGITS)
                return deft_fail(err, DEFT_ERR_USAGE,
                                 "fraction '%s': more than %d significant digits", text,
                                 FRACTION_MAX_DIGITS);
            mant = mant * 10 + (uint64_t)(*p - '0');
            if (seen_point)
                exp10--;
        } else {
            break;
        }
    }
    if (any_digit && (*p == 'e' || *p == 'E')) {
        char *end = NULL;
        errno = 0;
        long e = strtol(p + 1, &end, 10);
        if (end == p + 1 || errno || e < -100000 || e > 100000)
            any_digit = false;
        else
            exp10 += (int)e;
        p = end;
    }
    if (!any_digit || *p != '\0')
        return deft_fail(err, DEFT_ERR_USAGE, "fraction '%s' is not a decimal number", text);
    while (mant && mant % 10 == 0) {
        mant /= 10;
        exp10++;
        ndigits--;
    }
    /* f <= 1 iff f < 10^(ndigits + exp10) <= 1, or f is exactly 1 */
    bool le_one = ndigits + exp10 <= 0 || (mant == 1 && exp10 == 0);
    if (mant == 0 || !le_one)
        return deft_fail(err, DEFT_ERR_USAGE, "fraction '%s' must be in (0, 1]", text);
    out->mant = mant;
    out->exp10 = exp10;
    return DEFT_OK;
}

int select_fraction_from_double(double f, select_fraction_t *out, char text[32],
                                deft_err_t *err)
{
    char buf[32];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, f);
        if (strtod(buf, NULL) == f)
            break;
    }
    if (text)
        memcpy(text, buf, sizeof buf);
    return select_fraction_parse(buf, out, err);
}

int64_t select_k(select_fraction_t f, int64_t n)
{
    if (n <= 0 || f.mant == 0)
        return 0;
    if (f.exp10 >= 0)  /* only f = 1 parses with a non-negative exponent */
        return n;
    unsigned __int128 num = (unsigned __int128)f.mant * (uint64_t)n;
    /* mant * n < 10^19 * 2^63 < 10^39: a larger denominator leaves ceil = 1 */
    if (-f.exp10 >= 39)
        return 1;
    unsigned __int128 den = 1;
    for (int i = 0; i < -f.exp10; i++)
        den *= 10;
    return (int64_t)(num / den + (num % den != 0));
}

// ----------------------------------------------------------------------------
// order keys

#define SIGN_BIT ((uint64_t)1 << 63)

uint64_t select_key_from_double(double x)
{
    uint64_t b;
    if (x == 0)
        x = 0.0;  /* -0.0 == +0.0: one key, so the tie goes to the sample id */
    memcpy(&b, &x, sizeof b);
    /* negatives: flip all bits (larger magnitude is smaller); positives: set the sign bit */
    return (b & SIGN_BIT) ? ~b : (b | SIGN_BIT);
}

double select_double_from_key(uint64_t key)
{
    uint64_t b = (key & SIGN_BIT) ? (key & ~SIGN_BIT) : ~key;
    double x;
    memcpy(&x, &b, sizeof x);
    return x;
}

uint64_t select_sample_id(int32_t file, int64_t line)
{
    return ((uint64_t)(uint32_t)file << SELECT_LINE_BITS) | (uint64_t)line;
}

void select_sample_id_split(uint64_t id, int32_t *file, int64_t *line)
{
    *file = (int32_t)(id >> SELECT_LINE_BITS);
    *line = (int64_t)(id & (((uint64_t)1 << SELECT_LINE_BITS) - 1));
}

static uint64_t splitmix64_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t select_random_key(uint64_t seed, int32_t file, int64_t line)
{
    uint64_t h = splitmix64_mix(seed);
    h = splitmix64_mix(h ^ (uint64_t)(uint32_t)file);
    return splitmix64_mix(h ^ (uint64_t)line);
}

// ----------------------------------------------------------------------------
// distributed order statistics

#define RADIX_BITS 8
#define RADIX_BINS 256
#define RADIX_ROUNDS 16  /* 128-bit (key, id) pairs, 8 bits a round */

/* Byte `round` of the 128-bit pair, most significant first. */
static unsigned pair_byte(uint64_t key, uint64_t id, int round)
{
    uint64_t word = round < 8 ? key : id;
    int shift = 56 - RADIX_BITS * (round % 8);
    return (unsigned)((word >> shift) & (RADIX_BINS - 1));
}

static void pair_set_byte(select_pair_t *p, int round, unsigned byte)
{
    int shift = 56 - RADIX_BITS * (round % 8);
    if (round < 8)
        p->key |= (uint64_t)byte << shift;
    else
        p->id |= (uint64_t)byte << shift;
}

int select_count_eligible(comm_t *comm, const select_local_t *loc, int64_t *count,
                          deft_err_t *err)
{
    memset(count, 0, (size_t)loc->nsubsets * sizeof *count);
    for (int64_t i = 0; i < loc->n; i++)
        if (loc->eligible[i])
            count[loc->subset[i]]++;
    return comm_allreduce_sum_i64(comm, count, (size_t)loc->nsubsets, err);
}

int select_order_stats(comm_t *comm, const select_local_t *loc, int nq, const int64_t *ranks,
                       select_pair_t *out, bool *found, deft_err_t *err)
{
    int nsub = loc->nsubsets;
    size_t nquery = (size_t)nsub * (size_t)nq;
    int64_t *count = xmalloc((size_t)nsub * sizeof *count);
    int rc = select_count_eligible(comm, loc, count, err);
    if (rc) {
        free(count);
        return rc;
    }

    /* Local eligible samples grouped by subset (counting sort):
     * by_subset[off[s] .. off[s+1]) are the indices of subset s. */
    int64_t *off = xcalloc((size_t)nsub + 1, sizeof *off);
    for (int64_t i = 0; i < loc->n; i++)
        if (loc->eligible[i])
            off[loc->subset[i] + 1]++;
    for (int s = 0; s < nsub; s++)
        off[s + 1] += off[s];
    int64_t *by_subset = xmalloc((size_t)off[nsub] * sizeof *by_subset);
    int64_t *fill = xmalloc((size_t)nsub * sizeof *fill);
    memcpy(fill, off, (size_t)nsub * sizeof *fill);
    for (int64_t i = 0; i < loc->n; i++)
        if (loc->eligible[i])
            by_subset[fill[loc->subset[i]]++] = i;
    free(fill);

    /* Each query narrows its own candidate list: cand[q][0 .. ncand[q]) are
     * the local samples whose leading bytes equal the prefix found so far.
     * Together they hold at most nq * (local eligible) indices. */
    int64_t **cand = xcalloc(nquery, sizeof *cand);
    int64_t *ncand = xcalloc(nquery, sizeof *ncand);
    int64_t *remaining = xmalloc(nquery * sizeof *remaining);
    for (size_t q = 0; q < nquery; q++) {
        int s = (int)(q / (size_t)nq);
        found[q] = ranks[q] >= 1 && ranks[q] <= count[s];
        remaining[q] = ranks[q];
        out[q] = (select_pair_t){0, 0};
        if (!found[q])
            continue;
        ncand[q] = off[s + 1] - off[s];
        cand[q] = xmalloc((size_t)(ncand[q] ? ncand[q] : 1) * sizeof **cand);
        memcpy(cand[q], by_subset + off[s], (size_t)ncand[q] * sizeof **cand);
    }

    /* hist: [nquery][RADIX_BINS] global counts of the next byte among candidates */
    int64_t *hist = xmalloc(nquery * RADIX_BINS * sizeof *hist);
    for (int round = 0; round < RADIX_ROUNDS && rc == DEFT_OK; round++) {
        memset(hist, 0, nquery * RADIX_BINS * sizeof *hist);
        for (size_t q = 0; q < nquery; q++)
            for (int64_t c = 0; c < ncand[q]; c++) {
                int64_t i = cand[q][c];
                hist[q * RADIX_BINS + pair_byte(loc->key[i], loc->id[i], round)]++;
            }
        rc = comm_allreduce_sum_i64(comm, hist, nquery * RADIX_BINS, err);
        if (rc)
            break;
        for (size_t q = 0; q < nquery; q++) {
            if (!found[q])
                continue;
            /* Every rank sees the same global histogram, so every rank picks
             * the same byte: the bin where the running count reaches the rank. */
            const int64_t *h = hist + q * RADIX_BINS;
            unsigned bin = 0;
            while (remaining[q] > h[bin]) {
                remaining[q] -= h[bin];
                bin++;
            }
            pair_set_byte(&out[q], round, bin);
            int64_t kept = 0;
            for (int64_t c = 0; c < ncand[q]; c++) {
                int64_t i = cand[q][c];
                if (pair_byte(loc->key[i], loc->id[i], round) == bin)
                    cand[q][kept++] = i;
            }
            ncand[q] = kept;
        }
    }

    for (size_t q = 0; q < nquery; q++)
        free(cand[q]);
    free(cand);
    free(ncand);
    free(remaining);
    free(hist);
    free(by_subset);
    free(off);
    free(count);
    return rc;
}

static bool pair_le(uint64_t key, uint64_t id, select_pair_t t)
{
    return key < t.key || (key == t.key && id <= t.id);
}

/* Queries per subset for select_lowest_k: the threshold (the k-th pair), then
 * min and the two middle ranks of the selected keys, then the same and the
 * max of the rejected ones. */
enum { Q_LAST, Q_SEL_MIN, Q_SEL_MID_LO, Q_SEL_MID_HI, Q_REJ_MIN, Q_REJ_MID_LO, Q_REJ_MID_HI,
       Q_REJ_MAX, Q_COUNT };

int select_lowest_k(comm_t *comm, const select_local_t *loc, const int64_t *k,
                    uint8_t *selected, select_subset_stats_t *stats, deft_err_t *err)
{
    int nsub = loc->nsubsets;
    int64_t *count = xmalloc((size_t)nsub * sizeof *count);
    int rc = select_count_eligible(comm, loc, count, err);
    if (rc) {
        free(count);
        return rc;
    }
    int64_t *ranks = xmalloc((size_t)nsub * Q_COUNT * sizeof *ranks);
    for (int s = 0; s < nsub; s++) {
        if (k[s] < 0 || k[s] > count[s]) {
            rc = deft_fail(err, DEFT_ERR_INTERNAL, "subset %d: k = %lld of %lld samples", s,
                           (long long)k[s], (long long)count[s]);
            break;
        }
        /* Rank r of m values after o of them: the middle ranks are
         * o + (m+1)/2 and o + m/2 + 1 (equal when m is odd). Ranks outside
         * [1, count] (an empty side) come back not found. */
        int64_t m_sel = k[s], m_rej = count[s] - k[s], *r = ranks + (size_t)s * Q_COUNT;
        r[Q_LAST] = k[s];
        r[Q_SEL_MIN] = m_sel ? 1 : 0;
        r[Q_SEL_MID_LO] = m_sel ? (m_sel + 1) / 2 : 0;
        r[Q_SEL_MID_HI] = m_sel ? m_sel / 2 + 1 : 0;
        r[Q_REJ_MIN] = m_rej ? k[s] + 1 : 0;
        r[Q_REJ_MID_LO] = m_rej ? k[s] + (m_rej + 1) / 2 : 0;
        r[Q_REJ_MID_HI] = m_rej ? k[s] + m_rej / 2 + 1 : 0;
        r[Q_REJ_MAX] = m_rej ? count[s] : 0;
    }
    select_pair_t *pairs = xmalloc((size_t)nsub * Q_COUNT * sizeof *pairs);
    bool *found = xmalloc((size_t)nsub * Q_COUNT * sizeof *found);
    if (!rc)
        rc = select_order_stats(comm, loc, Q_COUNT, ranks, pairs, found, err);

    int64_t *marked = xcalloc((size_t)nsub, sizeof *marked);
    if (!rc) {
        for (int64_t i = 0; i < loc->n; i++) {
            int s = loc->subset[i];
            selected[i] = loc->eligible[i] && k[s] > 0 &&
                          pair_le(loc->key[i], loc->id[i], pairs[(size_t)s * Q_COUNT + Q_LAST]);
            marked[s] += selected[i];
        }
        rc = comm_allreduce_sum_i64(comm, marked, (size_t)nsub, err);
    }
    for (int s = 0; s < nsub && !rc; s++) {
        /* The pairs below the threshold number exactly k unless two samples
         * share an id, which makes the selection ill-defined. */
        if (marked[s] != k[s]) {
            rc = deft_fail(err, DEFT_ERR_FORMAT,
                           "subset %d: %lld samples at or below the k-th of %lld: the scores "
                           "file holds a sample id (file, line) more than once", s,
                           (long long)marked[s], (long long)k[s]);
            break;
        }
        const select_pair_t *p = pairs + (size_t)s * Q_COUNT;
        select_subset_stats_t *st = &stats[s];
        st->n_eligible = count[s];
        st->k = k[s];
        st->has_sel = k[s] > 0;
        st->has_rej = count[s] > k[s];
        st->last = st->has_sel ? p[Q_LAST] : (select_pair_t){0, 0};
        for (int j = 0; j < 4; j++) {
            st->sel_key[j] = st->has_sel ? p[(j < 3 ? Q_SEL_MIN + j : Q_LAST)].key : 0;
            st->rej_key[j] = st->has_rej ? p[Q_REJ_MIN + j].key : 0;
        }
    }
    free(marked);
    free(found);
    free(pairs);
    free(ranks);
    free(count);
    return rc;
}

// ----------------------------------------------------------------------------
// the scores file (scores.h5 of the score stage)

/* Attributes of scores.h5 naming the data it was scored from. */
#define ATTR_DATA_FILES "data_files"
#define ATTR_DATA_SHA256 "data_sha256"

/* This rank's contiguous slice [lo, lo + count) of the per-sample datasets. */
typedef struct {
    int64_t n;             /* samples in the file */
    int64_t lo, count;
    double *value;         /* [count] the criterion's value: score, loglik or ifd */
    double *score;         /* [count] R_Q; NaN = not scored */
    int32_t *file;         /* [count] index in the data list */
    int64_t *line;         /* [count] 1-based line in that file */
    int32_t *subset;       /* [count] index into subset_names */
    char **subset_names;   /* [nsubsets] */
    size_t nsubsets;
    char **data_files;     /* [ndata_files] as recorded, or NULL */
    size_t ndata_files;
    char **data_sha256;    /* [ndata_sha256] lowercase hex, or NULL */
    size_t ndata_sha256;
} scores_slice_t;

static void free_strings(char **s, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        free(s[i]);
    free(s);
}

static void scores_slice_free(scores_slice_t *sc)
{
    if (sc->value != sc->score)
        free(sc->value);
    free(sc->score);
    free(sc->file);
    free(sc->line);
    free(sc->subset);
    free_strings(sc->subset_names, sc->nsubsets);
    free_strings(sc->data_files, sc->ndata_files);
    free_strings(sc->data_sha256, sc->ndata_sha256);
    memset(sc, 0, sizeof *sc);
}

static int dset_length(hid_t fid, const char *path, const char *name, int64_t *n,
                       deft_err_t *err)
{
    if (H5Lexists(fid, name, H5P_DEFAULT) <= 0)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: no dataset %s", path, name);
    hid_t d = H5Dopen2(fid, name, H5P_DEFAULT);
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    hsize_t dims[1] = {0};
    int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    if (nd == 1)
        H5Sget_simple_extent_dims(sp, dims, NULL);
    if (sp >= 0)
        H5Sclose(sp);
    if (d >= 0)
        H5Dclose(d);
    if (nd != 1)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: dataset %s: expected 1 dimension, not %d",
                         path, name, nd);
    *n = (int64_t)dims[0];
    return DEFT_OK;
}

/* Rows [lo, lo + count) of a 1-D dataset of n rows, converted to mem_type. */
static int read_slice(hid_t fid, const char *path, const char *name, int64_t n,
                      hid_t mem_type, int64_t lo, int64_t count, void *buf, deft_err_t *err)
{
    int64_t len = 0;
    int rc = dset_length(fid, path, name, &len, err);
    if (rc)
        return rc;
    if (len != n)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: dataset %s has %lld rows, /score has %lld",
                         path, name, (long long)len, (long long)n);
    if (count == 0)
        return DEFT_OK;
    hid_t d = H5Dopen2(fid, name, H5P_DEFAULT);
    hid_t fsp = H5Dget_space(d);
    hsize_t start[1] = {(hsize_t)lo}, cnt[1] = {(hsize_t)count};
    hid_t msp = H5Screate_simple(1, cnt, NULL);
    herr_t st = H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, cnt, NULL);
    if (st >= 0)
        st = H5Dread(d, mem_type, msp, fsp, H5P_DEFAULT, buf);
    H5Sclose(msp);
    H5Sclose(fsp);
    H5Dclose(d);
    if (st < 0)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: cannot read rows %lld..%lld of %s", path,
                         (long long)lo, (long long)(lo + count - 1), name);
    return DEFT_OK;
}

/* Strings of a dataset `obj` of type `ftype` over space `sp`,
 * variable-length or fixed-length, as new C strings *out[*n]. */
static int read_strings(hid_t obj, hid_t ftype, hid_t sp, char ***out, size_t *n)
{
    hssize_t count = H5Sget_simple_extent_npoints(sp);
    if (count < 0 || H5Tget_class(ftype) != H5T_STRING)
        return -1;
    char **s = xcalloc((size_t)count + 1, sizeof *s);
    herr_t st;
    if (H5Tis_variable_str(ftype) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ftype));
        char **raw = xcalloc((size_t)count + 1, sizeof *raw);
        st = H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
        for (hssize_t i = 0; st >= 0 && i < count; i++)
            s[i] = xstrdup(raw[i] ? raw[i] : "");
        if (st >= 0)
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, raw);
        free(raw);
        H5Tclose(mt);
    } else {
        size_t w = H5Tget_size(ftype);
        hid_t mt = H5Tcopy(ftype);
        char *raw = xcalloc((size_t)count * w + 1, 1);
        st = H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
        for (hssize_t i = 0; st >= 0 && i < count; i++)
            s[i] = xstrndup(raw + (size_t)i * w, w);  /* stops at a NUL pad */
        free(raw);
        H5Tclose(mt);
    }
    if (st < 0) {
        free_strings(s, (size_t)count);
        return -1;
    }
    *out = s;
    *n = (size_t)count;
    return 0;
}

static int read_string_dset(hid_t fid, const char *path, const char *name, char ***out,
                            size_t *n, deft_err_t *err)
{
    if (H5Lexists(fid, name, H5P_DEFAULT) <= 0)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: no dataset %s", path, name);
    hid_t d = H5Dopen2(fid, name, H5P_DEFAULT);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    int st = read_strings(d, t, sp, out, n);
    H5Sclose(sp);
    H5Tclose(t);
    H5Dclose(d);
    if (st)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: %s is not a list of strings", path, name);
    return DEFT_OK;
}

/* A string-list attribute of the file root; absent gives *out = NULL. */
static int read_string_attr(h5_file_t *f, const char *name, char ***out, size_t *n,
                            deft_err_t *err)
{
    *out = NULL;
    *n = 0;
    if (!h5_exists(f, "/", name))
        return DEFT_OK;
    return h5_get_attr_str_list(f, "/", name, out, n, err);
}

static const char *value_dset(select_by_t by)
{
    switch (by) {
    case SELECT_BY_LIKELIHOOD: return "/loglik";
    case SELECT_BY_IFD: return "/ifd";
    default: return "/score";
    }
}

/* Each rank opens the file read-only on its own (no MPI-IO needed to read)
 * and reads rows [n * rank / p, n * (rank + 1) / p). */
static int scores_read_slice(const char *path, select_by_t by, int rank, int nranks,
                             scores_slice_t *sc, deft_err_t *err)
{
    memset(sc, 0, sizeof *sc);
    h5_file_t *h5;
    int rc = h5_open(&h5, path, err);
    if (rc)
        return rc;
    hid_t fid = (hid_t)h5_file_id(h5);
    rc = dset_length(fid, path, "/score", &sc->n, err);
    if (!rc && by == SELECT_BY_IFD && H5Lexists(fid, "/ifd", H5P_DEFAULT) <= 0)
        rc = deft_fail(err, DEFT_ERR_USAGE,
                       "%s: no /ifd dataset: --by ifd needs scores made with IFD enabled", path);
    if (!rc) {
        sc->lo = sc->n * rank / nranks;
        sc->count = sc->n * (rank + 1) / nranks - sc->lo;
        size_t c = (size_t)(sc->count ? sc->count : 1);
        sc->score = xmalloc(c * sizeof *sc->score);
        sc->value = by == SELECT_BY_LIKELIHOOD || by == SELECT_BY_IFD
                        ? xmalloc(c * sizeof *sc->value) : sc->score;
        sc->file = xmalloc(c * sizeof *sc->file);
        sc->line = xmalloc(c * sizeof *sc->line);
        sc->subset = xmalloc(c * sizeof *sc->subset);
        rc = read_slice(fid, path, "/score", sc->n, H5T_NATIVE_DOUBLE, sc->lo, sc->count,
                        sc->score, err);
    }
    if (!rc && sc->value != sc->score)
        rc = read_slice(fid, path, value_dset(by), sc->n, H5T_NATIVE_DOUBLE, sc->lo, sc->count,
                        sc->value, err);
    if (!rc)
        rc = read_slice(fid, path, "/sample_file", sc->n, H5T_NATIVE_INT32, sc->lo, sc->count,
                        sc->file, err);
    if (!rc)
        rc = read_slice(fid, path, "/sample_line", sc->n, H5T_NATIVE_INT64, sc->lo, sc->count,
                        sc->line, err);
    if (!rc)
        rc = read_slice(fid, path, "/subset", sc->n, H5T_NATIVE_INT32, sc->lo, sc->count,
                        sc->subset, err);
    if (!rc)
        rc = read_string_dset(fid, path, "/subset_names", &sc->subset_names, &sc->nsubsets,
                              err);
    if (!rc)
        rc = read_string_attr(h5, ATTR_DATA_FILES, &sc->data_files, &sc->ndata_files, err);
    if (!rc)
        rc = read_string_attr(h5, ATTR_DATA_SHA256, &sc->data_sha256, &sc->ndata_sha256, err);
    h5_close(h5);
    return rc;
}

/* Row-level checks: every sample names a data file, line and subset that exist. */
static int scores_check_rows(const scores_slice_t *sc, const char *path, int ndata,
                             deft_err_t *err)
{
    for (int64_t i = 0; i < sc->count; i++) {
        long long row = (long long)(sc->lo + i);
        if (sc->file[i] < 0 || sc->file[i] >= ndata)
            return deft_fail(err, DEFT_ERR_USAGE,
                             "%s: row %lld: /sample_file = %d, but %d data file(s) were given",
                             path, row, sc->file[i], ndata);
        if (sc->line[i] < 1 || sc->line[i] >= ((int64_t)1 << SELECT_LINE_BITS))
            return deft_fail(err, DEFT_ERR_FORMAT, "%s: row %lld: /sample_line = %lld", path,
                             row, (long long)sc->line[i]);
        if (sc->subset[i] < 0 || (size_t)sc->subset[i] >= sc->nsubsets)
            return deft_fail(err, DEFT_ERR_FORMAT,
                             "%s: row %lld: /subset = %d, but /subset_names has %zu", path,
                             row, sc->subset[i], sc->nsubsets);
    }
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// agreement between ranks

/* Agree on each rank's outcome: every rank returns an error when any failed.
 * A rank that failed keeps its own message; of the others rank 0 names the
 * rank that speaks for the failure and the rest stay quiet (empty message). */
static int agree(comm_t *comm, int rc, deft_err_t *err)
{
    int code = 0, first = -1;
    deft_err_t cerr;
    int arc = comm_agree(comm, rc, &code, &first, &cerr);
    if (rc)
        return rc;
    if (arc) {
        *err = cerr;
        return arc;
    }
    if (!code)
        return DEFT_OK;
    err->code = (deft_code_t)code;
    if (comm_rank(comm) == 0)
        snprintf(err->msg, sizeof err->msg, "rank %d failed (its message is above)", first);
    else
        err->msg[0] = '\0';
    return code;
}

// ----------------------------------------------------------------------------
// the data files must be the ones that were scored

static const char *path_base(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Hashes are spread over ranks (file f on rank f % p) and shared. Collective. */
static int check_data_files(comm_t *comm, const select_opts_t *o, const scores_slice_t *sc,
                            deft_err_t *err)
{
    int rank = comm_rank(comm), p = comm_size(comm);
    if (!sc->data_sha256 || (int)sc->ndata_sha256 != o->ndata) {
        if (sc->data_files)
            for (int f = 0; f < o->ndata; f++)
                if (strcmp(path_base(o->data[f]), path_base(sc->data_files[f])))
                    log_warn("data file %d is %s, but %s was scored from %s", f, o->data[f],
                             o->scores_path, sc->data_files[f]);
        log_info("%s records no data checksums: the data files are not verified",
                 o->scores_path);
        return DEFT_OK;
    }
    strbuf_t mine = {0};
    int rc = DEFT_OK;
    for (int f = rank; f < o->ndata && !rc; f += p) {
        char hex[65];
        rc = sha256_file(o->data[f], hex, err);
        sb_append(&mine, hex, 64);
    }
    rc = agree(comm, rc, err);
    if (rc) {
        sb_free(&mine);
        return rc;
    }
    comm_blobs_t all;
    rc = comm_allgather_blobs(comm, mine.data, mine.len, &all, err);
    sb_free(&mine);
    if (rc)
        return rc;
    for (int f = 0; f < o->ndata && !rc; f++) {
        const char *hex = all.data + all.off[f % p] + (size_t)(f / p) * 64;
        if (strncmp(hex, sc->data_sha256[f], 64))
            rc = deft_fail(err, DEFT_ERR_USAGE,
                           "%s: sha256 %.64s, but %s was scored from a file with sha256 %s "
                           "(%s): give the data files the scores were made from, in order",
                           o->data[f], hex, o->scores_path, sc->data_sha256[f],
                           sc->data_files ? sc->data_files[f] : "data file");
    }
    comm_blobs_free(&all);
    return rc;
}

// ----------------------------------------------------------------------------
// the selected lines, verbatim

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Append this rank's share of the selected input lines of one file, those
 * with (line - 1) % p == rank, as records {u64 id, u64 len, bytes}.
 * ids[n] are sorted; lines are verbatim, without their newline. */
static int collect_lines(const char *path, const uint64_t *ids, size_t n, int rank, int p,
                         strbuf_t *out, deft_err_t *err)
{
    line_reader_t lr;
    int rc = line_reader_open(&lr, path, err);
    if (rc)
        return rc;
    size_t next = 0;
    while (next < n) {
        int32_t file;
        int64_t want;
        select_sample_id_split(ids[next], &file, &want);
        int64_t lineno = lr.lineno + 1;  /* the line line_reader_next moves to */
        bool keep = lineno == want && (lineno - 1) % p == rank;
        line_status_t status;
        rc = line_reader_next(&lr, keep, &status, err);
        if (rc)
            break;
        if (status == LINE_TRUNCATED) {
            rc = deft_fail(err, DEFT_ERR_DATA, "%s: line %lld: the gzip stream is truncated",
                           path, (long long)lineno);
            break;
        }
        if (status == LINE_EOF) {
            rc = deft_fail(err, DEFT_ERR_DATA,
                           "%s has %lld lines, but the scores select its line %lld: the data "
                           "files do not match the scores file", path, (long long)(lineno - 1),
                           (long long)want);
            break;
        }
        if (keep) {
            uint64_t hdr[2] = {ids[next], lr.line.len};
            sb_append(out, (const char *)hdr, sizeof hdr);
            sb_append(out, lr.line.data ? lr.line.data : "", lr.line.len);
        }
        if (lineno == want)
            next++;
    }
    line_reader_close(&lr);
    return rc;
}

/* Write pieces to PATH.tmp, flush, fsync, rename over PATH. */
static int write_atomic(const char *path, const strbuf_t *text, deft_err_t *err)
{
    strbuf_t tmp = {0};
    sb_printf(&tmp, "%s.tmp", path);
    FILE *f = fopen(tmp.data, "wb");
    int rc = DEFT_OK;
    if (!f)
        rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot create: %s", tmp.data, strerror(errno));
    else {
        bool ok = fwrite(text->data ? text->data : "", 1, text->len, f) == text->len;
        ok = fflush(f) == 0 && ok;
        ok = fsync(fileno(f)) == 0 && ok;
        ok = fclose(f) == 0 && ok;
        if (!ok || rename(tmp.data, path))
            rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        if (rc)
            remove(tmp.data);
    }
    sb_free(&tmp);
    return rc;
}

/* Every rank reads the data files and keeps its share of the selected lines;
 * the shares are gathered and rank 0 writes them in global sample order.
 * sel[nsel] are the sorted selected ids of all ranks. Collective. */
static int write_selected(comm_t *comm, const select_opts_t *o, const uint64_t *sel,
                          size_t nsel, deft_err_t *err)
{
    int rank = comm_rank(comm), p = comm_size(comm);
    strbuf_t mine = {0};
    int rc = DEFT_OK;
    size_t lo = 0;
    for (int32_t f = 0; f < o->ndata && !rc; f++) {
        size_t hi = lo;
        while (hi < nsel && (int32_t)(sel[hi] >> SELECT_LINE_BITS) == f)
            hi++;
        if (hi > lo)
            rc = collect_lines(o->data[f], sel + lo, hi - lo, rank, p, &mine, err);
        lo = hi;
    }
    rc = agree(comm, rc, err);
    if (rc) {
        sb_free(&mine);
        return rc;
    }
    comm_blobs_t all;
    rc = comm_allgather_blobs(comm, mine.data, mine.len, &all, err);
    sb_free(&mine);
    if (rc)
        return rc;
    if (rank == 0) {
        /* line[i]: where the line of sel[i] lies in the gathered blobs */
        const char **text = xcalloc(nsel ? nsel : 1, sizeof *text);
        uint64_t *len = xcalloc(nsel ? nsel : 1, sizeof *len);
        size_t pos = 0, end = all.off[all.nranks];
        while (pos < end) {
            uint64_t hdr[2];
            memcpy(hdr, all.data + pos, sizeof hdr);
            const uint64_t *at = bsearch(&hdr[0], sel, nsel, sizeof *sel, u64_cmp);
            text[at - sel] = all.data + pos + sizeof hdr;
            len[at - sel] = hdr[1];
            pos += sizeof hdr + hdr[1];
        }
        strbuf_t out = {0};
        for (size_t i = 0; i < nsel; i++) {
            sb_append(&out, text[i], len[i]);
            sb_append(&out, "\n", 1);
        }
        rc = write_atomic(o->out_path, &out, err);
        sb_free(&out);
        free(text);
        free(len);
    }
    comm_blobs_free(&all);
    return agree(comm, rc, err);
}

// ----------------------------------------------------------------------------
// report

char *select_report_path(const char *out_path)
{
    strbuf_t sb = {0};
    size_t n = strlen(out_path);
    if (n > 6 && !strcmp(out_path + n - 6, ".jsonl"))
        n -= 6;
    sb_append(&sb, out_path, n);
    sb_puts(&sb, ".report.json");
    return sb.data;
}

/* The criterion's value of a key: the score, loglik or IFD it came from, or
 * the random key as a number in [0, 1). */
static double key_value(select_by_t by, uint64_t key)
{
    switch (by) {
    case SELECT_BY_LIKELIHOOD:
    case SELECT_BY_IFD: return -select_double_from_key(key);
    case SELECT_BY_RANDOM: return ldexp((double)key, -64);
    default: return select_double_from_key(key);
    }
}

/* min, median, max in the value's own order (keys of negated values reverse). */
static void key_summary(select_by_t by, const uint64_t key[4], double out[3])
{
    bool neg = by == SELECT_BY_LIKELIHOOD || by == SELECT_BY_IFD;
    double lo = key_value(by, key[0]), hi = key_value(by, key[3]);
    out[0] = neg ? hi : lo;
    out[1] = 0.5 * (key_value(by, key[1]) + key_value(by, key[2]));
    out[2] = neg ? lo : hi;
}

static json_t *summary_json(select_by_t by, bool has, const uint64_t key[4])
{
    if (!has)
        return json_null();
    double v[3];
    key_summary(by, key, v);
    return json_pack("{s:f, s:f, s:f}", "min", v[0], "median", v[1], "max", v[2]);
}

static const char *value_name(select_by_t by)
{
    switch (by) {
    case SELECT_BY_LIKELIHOOD: return "loglik";
    case SELECT_BY_IFD: return "ifd";
    case SELECT_BY_RANDOM: return "random key / 2^64";
    default: return "R_Q";
    }
}

static int write_report(const select_opts_t *o, const char *ftext, const scores_slice_t *sc,
                        const select_subset_stats_t *st, deft_err_t *err)
{
    json_t *subsets = json_array();
    int64_t total = 0;
    for (size_t s = 0; s < sc->nsubsets; s++) {
        const select_subset_stats_t *t = &st[s];
        total += t->k;
        json_t *thr = json_null();
        if (t->has_sel) {
            int32_t f;
            int64_t line;
            select_sample_id_split(t->last.id, &f, &line);
            thr = json_pack("{s:f, s:s, s:I}", "value", key_value(o->by, t->last.key),
                            "file", o->data[f], "line", (json_int_t)line);
        }
        json_array_append_new(subsets, json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o}", "name", sc->subset_names[s],
            "samples", (json_int_t)t->n_rows, "scored", (json_int_t)t->n_scored,
            "not_scored", (json_int_t)(t->n_rows - t->n_scored), "eligible",
            (json_int_t)t->n_eligible, "k", (json_int_t)t->k, "threshold", thr,
            "selected", summary_json(o->by, t->has_sel, t->sel_key),
            "rejected", summary_json(o->by, t->has_rej, t->rej_key)));
    }
    json_t *data = json_array();
    for (int f = 0; f < o->ndata; f++)
        json_array_append_new(data, json_string(o->data[f]));
    json_t *root = json_pack("{s:s, s:o, s:s, s:s, s:s, s:s, s:I, s:o}", "scores",
                             o->scores_path, "data", data, "by", select_by_name(o->by),
                             "value", value_name(o->by), "fraction", ftext, "output",
                             o->out_path, "selected", (json_int_t)total, "subsets", subsets);
    if (o->by == SELECT_BY_RANDOM)
        json_object_set_new(root, "seed", json_integer((json_int_t)o->seed));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(root);
    strbuf_t sb = {0};
    sb_puts(&sb, text);
    sb_puts(&sb, "\n");
    free(text);
    char *path = select_report_path(o->out_path);
    int rc = write_atomic(path, &sb, err);
    free(path);
    sb_free(&sb);
    return rc;
}

static void log_table(const select_opts_t *o, const scores_slice_t *sc,
                      const select_subset_stats_t *st)
{
    log_info("%-26s %8s %8s %7s %7s  %-34s %s", "subset", "samples", "scored", "unsc.", "k",
             "selected min / median / max", "rejected min / median / max");
    for (size_t s = 0; s < sc->nsubsets; s++) {
        const select_subset_stats_t *t = &st[s];
        char sel[64] = "-", rej[64] = "-";
        double v[3];
        if (t->has_sel) {
            key_summary(o->by, t->sel_key, v);
            snprintf(sel, sizeof sel, "%.4g / %.4g / %.4g", v[0], v[1], v[2]);
        }
        if (t->has_rej) {
            key_summary(o->by, t->rej_key, v);
            snprintf(rej, sizeof rej, "%.4g / %.4g / %.4g", v[0], v[1], v[2]);
        }
        log_info("%-26s %8lld %8lld %7lld %7lld  %-34s %s", sc->subset_names[s],
                 (long long)t->n_rows, (long long)t->n_scored,
                 (long long)(t->n_rows - t->n_scored), (long long)t->k, sel, rej);
    }
}

// ----------------------------------------------------------------------------
// the stage

/* Keys of this rank's slice for the criterion. counted[i]: the sample is in
 * the n of k = ceil(f * n) (a finite value); eligible[i]: it may be chosen.
 * They differ only for IFD, where a sample with IFD >= 1 counts but is never
 * chosen (docs/selection.md). */
static void make_keys(const select_opts_t *o, const scores_slice_t *sc, uint64_t *key,
                      uint64_t *id, uint8_t *counted, uint8_t *eligible)
{
    for (int64_t i = 0; i < sc->count; i++) {
        double v = sc->value[i];
        counted[i] = isfinite(v);
        eligible[i] = counted[i] && (o->by != SELECT_BY_IFD || v < 1.0);
        id[i] = select_sample_id(sc->file[i], sc->line[i]);
        switch (o->by) {
        case SELECT_BY_RQ: key[i] = counted[i] ? select_key_from_double(v) : 0; break;
        case SELECT_BY_LIKELIHOOD:
        case SELECT_BY_IFD: key[i] = counted[i] ? select_key_from_double(-v) : 0; break;
        case SELECT_BY_RANDOM: key[i] = select_random_key(o->seed, sc->file[i], sc->line[i]);
        }
    }
}

int select_run(comm_t *comm, const select_opts_t *o, deft_err_t *err)
{
    int rank = comm_rank(comm), p = comm_size(comm);
    double t0 = wall_seconds();
    select_fraction_t frac;
    char ftext[32];
    int rc = select_fraction_from_double(o->fraction, &frac, ftext, err);
    if (rc)
        return rc;
    /* The selection and its report are written last: refuse up front to
     * write either over an input, where it would replace the data. */
    char *report = o->out_path ? select_report_path(o->out_path) : NULL;
    const char *outs[2] = {o->out_path, report};
    for (int j = 0; j < 2 && !rc; j++) {
        rc = deft_check_not_input(outs[j], o->scores_path, "select: out", err);
        for (int i = 0; i < o->ndata && !rc; i++)
            rc = deft_check_not_input(outs[j], o->data[i], "select: out", err);
    }
    free(report);
    scores_slice_t sc = {0};
    if (!rc)
        rc = scores_read_slice(o->scores_path, o->by, rank, p, &sc, err);
    if (!rc && sc.data_files && (int)sc.ndata_files != o->ndata)
        rc = deft_fail(err, DEFT_ERR_USAGE, "%s was scored from %zu data file(s), %d given",
                       o->scores_path, sc.ndata_files, o->ndata);
    if (!rc)
        rc = scores_check_rows(&sc, o->scores_path, o->ndata, err);
    rc = agree(comm, rc, err);
    if (!rc)
        rc = check_data_files(comm, o, &sc, err);
    if (rc) {
        scores_slice_free(&sc);
        return rc;
    }
    log_info("select: %lld samples in %zu subset(s) from %s, %d rank(s), by %s, fraction %s",
             (long long)sc.n, sc.nsubsets, o->scores_path, p, select_by_name(o->by), ftext);

    /* Per-sample arrays of the slice, [sc.count] each. */
    size_t c = (size_t)(sc.count ? sc.count : 1);
    int nsub = (int)sc.nsubsets;
    uint64_t *key = xmalloc(c * sizeof *key), *id = xmalloc(c * sizeof *id);
    uint8_t *counted = xmalloc(c), *eligible = xmalloc(c), *selected = xmalloc(c);
    make_keys(o, &sc, key, id, counted, eligible);

    /* Per-subset counts [3][nsub]: rows, counted, eligible, summed over ranks. */
    int64_t *cnt = xcalloc(3 * (size_t)nsub + 1, sizeof *cnt);
    for (int64_t i = 0; i < sc.count; i++) {
        cnt[sc.subset[i]]++;
        cnt[nsub + sc.subset[i]] += counted[i];
        cnt[2 * nsub + sc.subset[i]] += eligible[i];
    }
    rc = comm_allreduce_sum_i64(comm, cnt, 3 * (size_t)nsub, err);
    int64_t *k = xcalloc((size_t)nsub + 1, sizeof *k);
    for (int s = 0; s < nsub && !rc; s++) {
        k[s] = select_k(frac, cnt[nsub + s]);
        if (k[s] > cnt[2 * nsub + s]) {
            log_info("subset %s: only %lld samples have IFD < 1; keeping all of them, not %lld",
                     sc.subset_names[s], (long long)cnt[2 * nsub + s], (long long)k[s]);
            k[s] = cnt[2 * nsub + s];
        }
    }

    select_subset_stats_t *st = xcalloc((size_t)nsub + 1, sizeof *st);
    select_local_t loc = {sc.count, key, id, sc.subset, eligible, nsub};
    if (!rc)
        rc = select_lowest_k(comm, &loc, k, selected, st, err);
    for (int s = 0; s < nsub; s++) {
        st[s].n_rows = cnt[s];
        st[s].n_scored = cnt[nsub + s];
    }
    double t_select = wall_seconds();

    /* The selected ids of every rank, sorted: small (k of n) by design. */
    comm_blobs_t all = {0};
    if (!rc) {
        strbuf_t mine = {0};
        for (int64_t i = 0; i < sc.count; i++)
            if (selected[i])
                sb_append(&mine, (const char *)&id[i], sizeof id[i]);
        rc = comm_allgather_blobs(comm, mine.data, mine.len, &all, err);
        sb_free(&mine);
    }
    if (!rc) {
        size_t nsel = all.off[all.nranks] / sizeof(uint64_t);
        uint64_t *sel = xmalloc((nsel ? nsel : 1) * sizeof *sel);
        memcpy(sel, all.data, nsel * sizeof *sel);
        comm_blobs_free(&all);
        qsort(sel, nsel, sizeof *sel, u64_cmp);
        rc = write_selected(comm, o, sel, nsel, err);
        free(sel);
        if (!rc && rank == 0) {
            log_table(o, &sc, st);
            rc = write_report(o, ftext, &sc, st, err);
        }
        rc = agree(comm, rc, err);
        if (!rc) {
            char took[32];
            format_duration(took, sizeof took, wall_seconds() - t0);
            log_info("select: wrote %zu samples to %s (selection %.3f s, total %s)", nsel,
                     o->out_path, t_select - t0, took);
        }
    }
    free(st);
    free(k);
    free(cnt);
    free(key), free(id), free(counted), free(eligible), free(selected);
    scores_slice_free(&sc);
    return rc;
}
