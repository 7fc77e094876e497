/* HDF5 training checkpoints: save (atomic and durable through h5_create /
 * h5_commit, then retention), load with per-tensor CRC-32 checks, validation,
 * and finding the newest good checkpoint after a crash. */
#include "io/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "io/h5.h"
#include "util/log.h"

#ifndef DEFT_VERSION
#define DEFT_VERSION "unknown"
#endif

#define CKPT_FORMAT "deft-checkpoint"
#define CKPT_FORMAT_VERSION 1

static const char *const GROUPS[3] = {"/params", "/m", "/v"};

void checkpoint_path(char *buf, size_t n, const char *dir, int64_t step)
{
    snprintf(buf, n, "%s/step-%06lld.h5", dir, (long long)step);
}

static uint32_t crc_floats(const float *data, size_t count)
{
    /* zlib's length is an unsigned int: feed tensors over 4 GiB in pieces */
    const unsigned char *p = (const unsigned char *)data;
    size_t left = count * sizeof(float);
    uLong crc = crc32(0L, Z_NULL, 0);
    while (left) {
        uInt piece = left > (1u << 30) ? (1u << 30) : (uInt)left;
        crc = crc32(crc, p, piece);
        p += piece;
        left -= piece;
    }
    return (uint32_t)crc;
}

static int64_t tensor_numel(const ckpt_tensor_t *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t len = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, i ? ", %lld" : "%lld",
                                (long long)shape[i]);
    if (len < n)
        snprintf(buf + len, n - len, ")");
}

// ----------------------------------------------------------------------------
// writing

static int write_tensor(h5_file_t *f, const char *group, const ckpt_tensor_t *t,
                        deft_err_t *err)
{
    const char *path = h5_path(f);
    if (!t->name || !t->name[0] || strchr(t->name, '/') || !strcmp(t->name, ".") ||
        !strcmp(t->name, ".."))
        return deft_fail(err, DEFT_ERR_INTERNAL, "%s: tensor name \"%s\" in %s/ is not a "
                         "plain name", path, t->name ? t->name : "(null)", group);
    if (t->ndim < 1 || t->ndim > CKPT_MAX_DIMS)
        return deft_fail(err, DEFT_ERR_INTERNAL, "%s: %s/%s: ndim = %d", path, group,
                         t->name, t->ndim);
    hsize_t dims[CKPT_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0)
            return deft_fail(err, DEFT_ERR_INTERNAL, "%s: %s/%s: shape[%d] = %lld", path,
                             group, t->name, i, (long long)t->shape[i]);
        dims[i] = (hsize_t)t->shape[i];
    }
    int64_t numel = tensor_numel(t);
    if (numel > 0 && !t->data)
        return deft_fail(err, DEFT_ERR_INTERNAL, "%s: %s/%s: no data", path, group, t->name);
    char obj[1024];
    snprintf(obj, sizeof obj, "%s/%s", group, t->name);
    hid_t fid = (hid_t)h5_file_id(f);
    hid_t space = H5Screate_simple(t->ndim, dims, NULL);
    /* no modification times: the same state gives the same file bytes */
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    hid_t d = H5Dcreate2(fid, obj, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    herr_t rc = d < 0 ? -1 : numel ? H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL,
                                              H5P_DEFAULT, t->data) : 0;
    if (d >= 0)
        H5Dclose(d);
    if (rc < 0) {
        H5Eclear2(H5E_DEFAULT);
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot write dataset %s (%lld floats)",
                         path, obj, (long long)numel);
    }
    uint32_t crc = numel ? crc_floats(t->data, (size_t)numel) : crc32(0L, Z_NULL, 0);
    return h5_set_attr_i64(f, obj, "crc32", crc, err);
}

static int write_rng(h5_file_t *f, const ckpt_state_t *st, deft_err_t *err)
{
    hsize_t dims[1] = {(hsize_t)(st->n_rng > 0 ? st->n_rng : 0)};
    hid_t fid = (hid_t)h5_file_id(f);
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    hid_t d = H5Dcreate2(fid, "/rng", H5T_STD_U64LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    herr_t rc = d < 0 ? -1 : dims[0] ? H5Dwrite(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL,
                                                H5P_DEFAULT, st->rng) : 0;
    if (d >= 0)
        H5Dclose(d);
    if (rc < 0) {
        H5Eclear2(H5E_DEFAULT);
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot write dataset /rng", h5_path(f));
    }
    return DEFT_OK;
}

static int write_attrs(h5_file_t *f, const ckpt_state_t *st, const ckpt_tensors_t *t,
                       deft_err_t *err)
{
    int rc = h5_set_attr_str(f, "/", "format", CKPT_FORMAT, err);
    if (!rc)
        rc = h5_set_attr_i64(f, "/", "format_version", CKPT_FORMAT_VERSION, err);
    if (!rc)
        rc = h5_set_attr_str(f, "/", "deft_version", DEFT_VERSION, err);
    if (!rc)
        rc = h5_set_attr_i64(f, "/", "step", st->step, err);
    if (!rc)
        rc = h5_set_attr_i64(f, "/", "epoch", st->epoch, err);
    if (!rc)
        rc = h5_set_attr_i64(f, "/", "epoch_pos", st->epoch_pos, err);
    if (!rc)
        rc = h5_set_attr_str(f, "/", "config", st->config_text ? st->config_text : "", err);
    if (!rc)
        rc = h5_set_attr_str(f, "/", "qdiff_checksum",
                             st->qdiff_checksum ? st->qdiff_checksum : "", err);
    if (!rc)
        rc = h5_set_attr_i64(f, "/", "n_tensors", t->n, err);
    return rc;
}

/* Parses "step-<digits>.h5" (tmp: "step-<digits>.h5.tmp"); -1 if it is not one. */
static int64_t parse_step_name(const char *name, bool tmp)
{
    if (strncmp(name, "step-", 5))
        return -1;
    const char *p = name + 5, *q = p;
    while (*q >= '0' && *q <= '9')
        q++;
    if (q == p || q - p > 18 || strcmp(q, tmp ? ".h5.tmp" : ".h5"))
        return -1;
    return strtoll(p, NULL, 10);
}

typedef struct {
    int64_t step;
    char *name;
} step_file_t;

static int cmp_step_desc(const void *a, const void *b)
{
    int64_t x = ((const step_file_t *)a)->step, y = ((const step_file_t *)b)->step;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The step-*.h5 (or *.h5.tmp) names in dir, newest step first. */
static int list_steps(const char *dir, bool tmp, step_file_t **out, int *n, deft_err_t *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot list checkpoints: %s", dir,
                         strerror(errno));
    int cap = 16;
    *n = 0;
    *out = xmalloc(sizeof **out * cap);
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t step = parse_step_name(e->d_name, tmp);
        if (step < 0)
            continue;
        if (*n == cap)
            *out = xrealloc(*out, sizeof **out * (cap *= 2));
        (*out)[(*n)++] = (step_file_t){step, xstrdup(e->d_name)};
    }
    closedir(d);
    qsort(*out, *n, sizeof **out, cmp_step_desc);
    return DEFT_OK;
}

static void free_steps(step_file_t *s, int n)
{
    for (int i = 0; i < n; i++)
        free(s[i].name);
    free(s);
}

/* Deletes checkpoints beyond the newest `keep` (never `written`) and stray .tmp files. */
static int apply_retention(const char *dir, const char *written, int keep, deft_err_t *err)
{
    step_file_t *s;
    int n;
    char path[4096];
    int rc = list_steps(dir, true, &s, &n, err);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, s[i].name);
        if (unlink(path) == 0)
            log_info("checkpoint: removed %s, left by an interrupted write", path);
    }
    free_steps(s, n);
    if (keep <= 0)
        return DEFT_OK;
    rc = list_steps(dir, false, &s, &n, err);
    if (rc)
        return rc;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, s[i].name);
        if (!strcmp(path, written) || kept < keep) {
            kept++;
            continue;
        }
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot delete old checkpoint: %s", path,
                           strerror(errno));
            break;
        }
    }
    free_steps(s, n);
    return rc;
}

int checkpoint_save(const char *dir, const ckpt_state_t *st, const ckpt_tensors_t *t,
                    int keep, char *path_out, size_t path_n, deft_err_t *err)
{
    char path[4096];
    checkpoint_path(path, sizeof path, dir, st->step);
    h5_file_t *f;
    int rc = h5_create(&f, path, err);
    if (rc)
        return rc;
    rc = write_attrs(f, st, t, err);
    if (!rc)
        rc = write_rng(f, st, err);
    const ckpt_tensor_t *sets[3] = {t->params, t->m, t->v};
    for (int g = 0; g < 3 && !rc; g++) {
        if (!sets[g])
            continue;
        rc = h5_create_group(f, GROUPS[g], err);
        for (int i = 0; i < t->n && !rc; i++)
            rc = write_tensor(f, GROUPS[g], &sets[g][i], err);
    }
    if (rc) {
        h5_discard(f);
        return rc;
    }
    rc = h5_commit(f, err);
    if (rc)
        return rc;
    if (path_out)
        snprintf(path_out, path_n, "%s", path);
    return apply_retention(dir, path, keep, err);
}

// ----------------------------------------------------------------------------
// reading

/* Opens group/name and checks it is a 32-bit float dataset; returns its dims. */
static hid_t open_tensor(h5_file_t *f, const char *obj, int *ndim, hsize_t *dims,
                         deft_err_t *err)
{
    const char *path = h5_path(f);
    if (!h5_exists(f, obj, NULL)) {
        deft_fail(err, DEFT_ERR_FORMAT, "%s: dataset %s not found", path, obj);
        return -1;
    }
    hid_t d = H5Dopen2((hid_t)h5_file_id(f), obj, H5P_DEFAULT);
    if (d < 0) {
        H5Eclear2(H5E_DEFAULT);
        deft_fail(err, DEFT_ERR_FORMAT, "%s: cannot open dataset %s", path, obj);
        return -1;
    }
    hid_t type = H5Dget_type(d);
    bool f32 = H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 4;
    H5Tclose(type);
    hid_t space = H5Dget_space(d);
    *ndim = H5Sget_simple_extent_ndims(space);
    if (*ndim >= 1 && *ndim <= CKPT_MAX_DIMS)
        H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    if (!f32 || *ndim < 1 || *ndim > CKPT_MAX_DIMS) {
        deft_fail(err, DEFT_ERR_FORMAT, "%s: dataset %s is not a float32 tensor of 1..%d "
                  "dimensions", path, obj, CKPT_MAX_DIMS);
        H5Dclose(d);
        return -1;
    }
    if (!h5_exists(f, obj, "crc32")) {
        deft_fail(err, DEFT_ERR_FORMAT, "%s: dataset %s has no crc32 attribute", path, obj);
        H5Dclose(d);
        return -1;
    }
    return d;
}

/* Reads d into data[numel] and compares with the stored CRC-32. */
static int read_checked(h5_file_t *f, hid_t d, const char *obj, float *data, size_t numel,
                        deft_err_t *err)
{
    const char *path = h5_path(f);
    if (numel && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        H5Eclear2(H5E_DEFAULT);
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: cannot read dataset %s", path, obj);
    }
    int64_t want;
    int rc = h5_get_attr_i64(f, obj, "crc32", &want, err);
    if (rc)
        return rc;
    uint32_t got = numel ? crc_floats(data, numel) : crc32(0L, Z_NULL, 0);
    if ((int64_t)got != want)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: dataset %s: CRC-32 %08x, stored %08llx: "
                         "the data is corrupt", path, obj, got, (unsigned long long)want);
    return DEFT_OK;
}

static int load_tensor(h5_file_t *f, const char *group, const ckpt_tensor_t *t,
                       deft_err_t *err)
{
    char obj[1024];
    snprintf(obj, sizeof obj, "%s/%s", group, t->name);
    int ndim;
    hsize_t dims[CKPT_MAX_DIMS];
    hid_t d = open_tensor(f, obj, &ndim, dims, err);
    if (d < 0)
        return err ? err->code : DEFT_ERR_FORMAT;
    bool same = ndim == t->ndim;
    for (int i = 0; same && i < ndim; i++)
        same = (int64_t)dims[i] == t->shape[i];
    int rc = DEFT_OK;
    if (!same) {
        int64_t got[CKPT_MAX_DIMS];
        for (int i = 0; i < ndim; i++)
            got[i] = (int64_t)dims[i];
        char a[256], b[256];
        shape_str(a, sizeof a, ndim, got);
        shape_str(b, sizeof b, t->ndim, t->shape);
        rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: dataset %s has shape %s, the model "
                       "expects %s", h5_path(f), obj, a, b);
    } else {
        rc = read_checked(f, d, obj, t->data, (size_t)tensor_numel(t), err);
    }
    H5Dclose(d);
    return rc;
}

static int read_rng(h5_file_t *f, ckpt_state_t *st, deft_err_t *err)
{
    const char *path = h5_path(f);
    hid_t d = h5_exists(f, "/rng", NULL) ? H5Dopen2((hid_t)h5_file_id(f), "/rng",
                                                     H5P_DEFAULT) : -1;
    if (d < 0) {
        H5Eclear2(H5E_DEFAULT);
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: dataset /rng not found", path);
    }
    hid_t space = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    H5Sclose(space);
    st->n_rng = n > 0 ? (int)n : 0;
    st->rng = xcalloc((size_t)st->n_rng + 1, sizeof *st->rng);
    herr_t rc = st->n_rng ? H5Dread(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                    st->rng) : 0;
    H5Dclose(d);
    if (rc < 0) {
        H5Eclear2(H5E_DEFAULT);
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: cannot read dataset /rng", path);
    }
    return DEFT_OK;
}

static int read_state(h5_file_t *f, ckpt_state_t *st, deft_err_t *err)
{
    const char *path = h5_path(f);
    char *format = NULL;
    int64_t version = 0;
    int rc = h5_get_attr_str(f, "/", "format", &format, err);
    if (!rc && strcmp(format, CKPT_FORMAT))
        rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: attribute format = \"%s\", expected \"%s\"",
                       path, format, CKPT_FORMAT);
    free(format);
    if (!rc)
        rc = h5_get_attr_i64(f, "/", "format_version", &version, err);
    if (!rc && version != CKPT_FORMAT_VERSION)
        rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: format_version = %lld, this deft reads %d",
                       path, (long long)version, CKPT_FORMAT_VERSION);
    if (!rc)
        rc = h5_get_attr_i64(f, "/", "step", &st->step, err);
    if (!rc)
        rc = h5_get_attr_i64(f, "/", "epoch", &st->epoch, err);
    if (!rc)
        rc = h5_get_attr_i64(f, "/", "epoch_pos", &st->epoch_pos, err);
    if (!rc)
        rc = h5_get_attr_str(f, "/", "deft_version", &st->deft_version, err);
    if (!rc)
        rc = h5_get_attr_str(f, "/", "config", &st->config_text, err);
    if (!rc)
        rc = h5_get_attr_str(f, "/", "qdiff_checksum", &st->qdiff_checksum, err);
    if (!rc)
        rc = read_rng(f, st, err);
    return rc;
}

void checkpoint_state_free(ckpt_state_t *st)
{
    free(st->rng);
    free(st->config_text);
    free(st->qdiff_checksum);
    free(st->deft_version);
    memset(st, 0, sizeof *st);
}

int checkpoint_load(const char *path, ckpt_state_t *st, const ckpt_tensors_t *t,
                    deft_err_t *err)
{
    memset(st, 0, sizeof *st);
    h5_file_t *f;
    int rc = h5_open(&f, path, err);
    if (rc)
        return rc;
    rc = read_state(f, st, err);
    const ckpt_tensor_t *sets[3] = {t ? t->params : NULL, t ? t->m : NULL, t ? t->v : NULL};
    for (int g = 0; g < 3 && !rc; g++)
        for (int i = 0; sets[g] && i < t->n && !rc; i++)
            if (sets[g][i].data || tensor_numel(&sets[g][i]) == 0)
                rc = load_tensor(f, GROUPS[g], &sets[g][i], err);
    h5_close(f);
    if (rc)
        checkpoint_state_free(st);
    return rc;
}

// ----------------------------------------------------------------------------
// validation

typedef struct {
    h5_file_t *f;
    const char *group;
    bool deep;
    deft_err_t *err;
    int rc;
    int64_t count;
} walk_t;

static herr_t validate_one(hid_t gid, const char *name, const H5L_info_t *info, void *data)
{
    walk_t *w = data;
    char obj[1024];
    snprintf(obj, sizeof obj, "%s/%s", w->group, name);
    int ndim;
    hsize_t dims[CKPT_MAX_DIMS];
    hid_t d = open_tensor(w->f, obj, &ndim, dims, w->err);
    if (d < 0) {
        w->rc = w->err ? w->err->code : DEFT_ERR_FORMAT;
        return 1;
    }
    size_t numel = 1;
    for (int i = 0; i < ndim; i++)
        numel *= (size_t)dims[i];
    if (w->deep) {
        float *buf = xmalloc(numel * sizeof(float) + 1);  /* (numel,) scratch */
        w->rc = read_checked(w->f, d, obj, buf, numel, w->err);
        free(buf);
    }
    H5Dclose(d);
    w->count++;
    return w->rc ? 1 : 0;
}

int checkpoint_validate(const char *path, bool deep, deft_err_t *err)
{
    h5_file_t *f;
    int rc = h5_open(&f, path, err);
    if (rc)
        return rc;
    ckpt_state_t st = {0};
    rc = read_state(f, &st, err);
    checkpoint_state_free(&st);
    int64_t n_tensors = 0;
    if (!rc)
        rc = h5_get_attr_i64(f, "/", "n_tensors", &n_tensors, err);
    if (!rc && !h5_exists(f, "/params", NULL))
        rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: group /params not found", path);
    for (int g = 0; g < 3 && !rc; g++) {
        const char *gname = GROUPS[g];
        if (!h5_exists(f, gname, NULL))
            continue;
        walk_t w = {f, GROUPS[g], deep, err, DEFT_OK, 0};
        hid_t gid = H5Gopen2((hid_t)h5_file_id(f), gname, H5P_DEFAULT);
        herr_t it = gid < 0 ? -1 : H5Literate(gid, H5_INDEX_NAME, H5_ITER_INC, NULL,
                                               validate_one, &w);
        if (gid >= 0)
            H5Gclose(gid);
        if (w.rc)
            rc = w.rc;
        else if (it < 0)
            rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: cannot list group %s", path, gname);
        else if (w.count != n_tensors)
            rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: group %s holds %lld tensors, "
                           "n_tensors = %lld", path, gname, (long long)w.count,
                           (long long)n_tensors);
        H5Eclear2(H5E_DEFAULT);
    }
    h5_close(f);
    return rc;
}

int checkpoint_find_latest(const char *dir, bool deep, char **path, deft_err_t *err)
{
    *path = NULL;
    step_file_t *s;
    int n;
    int rc = list_steps(dir, true, &s, &n, err);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++)
        log_warn("checkpoint: skipping %s/%s: an unfinished write", dir, s[i].name);
    free_steps(s, n);
    rc = list_steps(dir, false, &s, &n, err);
    if (rc)
        return rc;
    char buf[4096];
    for (int i = 0; i < n && !*path; i++) {
        snprintf(buf, sizeof buf, "%s/%s", dir, s[i].name);
        deft_err_t why = {0};
        if (checkpoint_validate(buf, deep, &why) == DEFT_OK)
            *path = xstrdup(buf);
        else
            log_warn("checkpoint: skipping a damaged file: %s", why.msg);
    }
    free_steps(s, n);
    return DEFT_OK;
}
