/* HDF5 helpers: atomic file creation by temporary name + fsync + rename,
 * 1-D numeric datasets and attributes, with HDF5's error stack turned into
 * deft_err_t messages that name the file and object. */
#include "io/h5.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct h5_file {
    hid_t id;
    char *path;      /* the final name */
    char *tmp_path;  /* PATH.tmp while writing, NULL for a file opened to read */
};

// ----------------------------------------------------------------------------
// errors

/* The innermost entry of HDF5's error stack says what actually went wrong
 * ("unable to open file", "object not found"); the outer ones only repeat
 * which API call it was. */
static herr_t walk_innermost(unsigned n, const H5E_error2_t *e, void *data)
{
    if (n == 0 && e->desc)
        snprintf(data, 256, "%s", e->desc);
    return 0;
}

static int h5_fail(deft_err_t *err, deft_code_t code, const char *path, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));

static int h5_fail(deft_err_t *err, deft_code_t code, const char *path, const char *fmt, ...)
{
    char what[1024], detail[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_innermost, detail);
    H5Eclear2(H5E_DEFAULT);
    if (detail[0])
        return deft_fail(err, code, "%s: %s (HDF5: %s)", path, what, detail);
    return deft_fail(err, code, "%s: %s", path, what);
}

static void quiet_hdf5(void)
{
    /* We build our own messages; HDF5's stack dumps would interleave on stderr. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

// ----------------------------------------------------------------------------
// files

const char *h5_path(const h5_file_t *f) { return f->path; }

int64_t h5_file_id(const h5_file_t *f) { return f->id; }

int h5_create(h5_file_t **out, const char *path, deft_err_t *err)
{
    quiet_hdf5();
    *out = NULL;
    size_t n = strlen(path);
    char *tmp = xmalloc(n + 5);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    /* No modification times in object headers: the same content gives the
     * same bytes, so outputs can be compared with cmp and checksummed. */
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    hid_t id = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    if (id < 0) {
        int code = h5_fail(err, DEFT_ERR_IO, tmp, "cannot create HDF5 file");
        free(tmp);
        return code;
    }
    h5_file_t *f = xcalloc(1, sizeof *f);
    f->id = id;
    f->path = xstrdup(path);
    f->tmp_path = tmp;
    *out = f;
    return DEFT_OK;
}

static void h5_file_free(h5_file_t *f)
{
    free(f->path);
    free(f->tmp_path);
    free(f);
}

static int fsync_path(const char *path, int flags, deft_err_t *err)
{
    int fd = open(path, flags);
    if (fd < 0)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot open to fsync: %s", path,
                         strerror(errno));
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    /* Some file systems refuse fsync on a folder; the rename is still atomic. */
    if (rc != 0 && !(flags & O_DIRECTORY))
        return deft_fail(err, DEFT_ERR_IO, "%s: fsync failed: %s", path, strerror(saved));
    return DEFT_OK;
}

int h5_commit(h5_file_t *f, deft_err_t *err)
{
    int code = DEFT_OK;
    if (H5Fflush(f->id, H5F_SCOPE_GLOBAL) < 0)
        code = h5_fail(err, DEFT_ERR_IO, f->tmp_path, "cannot flush HDF5 file");
    if (H5Fclose(f->id) < 0 && !code)
        code = h5_fail(err, DEFT_ERR_IO, f->tmp_path, "cannot close HDF5 file");
    if (!code)
        code = fsync_path(f->tmp_path, O_RDONLY, err);
    if (!code && rename(f->tmp_path, f->path) != 0)
        code = deft_fail(err, DEFT_ERR_IO, "%s: cannot rename to %s: %s", f->tmp_path,
                         f->path, strerror(errno));
    if (!code) {
        char *dir = xstrdup(f->path);
        code = fsync_path(dirname(dir), O_RDONLY | O_DIRECTORY, err);
        free(dir);
    } else {
        unlink(f->tmp_path);
    }
    h5_file_free(f);
    return code;
}

void h5_discard(h5_file_t *f)
{
    if (!f)
        return;
    H5Fclose(f->id);
    H5Eclear2(H5E_DEFAULT);
    if (f->tmp_path)
        unlink(f->tmp_path);
    h5_file_free(f);
}

int h5_open(h5_file_t **out, const char *path, deft_err_t *err)
{
    quiet_hdf5();
    *out = NULL;
    if (access(path, R_OK) != 0)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    hid_t id = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (id < 0)
        return h5_fail(err, DEFT_ERR_FORMAT, path, "not a readable HDF5 file");
    h5_file_t *f = xcalloc(1, sizeof *f);
    f->id = id;
    f->path = xstrdup(path);
    *out = f;
    return DEFT_OK;
}

void h5_close(h5_file_t *f)
{
    if (!f)
        return;
    H5Fclose(f->id);
    h5_file_free(f);
}

// ----------------------------------------------------------------------------
// groups and datasets

bool h5_exists(h5_file_t *f, const char *obj, const char *attr)
{
    /* H5Lexists fails rather than answers when a parent is missing: walk down. */
    char *p = xstrdup(obj);
    bool ok = true;
    for (char *s = strchr(p + 1, '/'); ok; s = strchr(s + 1, '/')) {
        if (s)
            *s = '\0';
        if (p[1])
            ok = H5Lexists(f->id, p, H5P_DEFAULT) > 0;
        if (!s)
            break;
        *s = '/';
    }
    if (ok && attr)
        ok = H5Aexists_by_name(f->id, obj, attr, H5P_DEFAULT) > 0;
    H5Eclear2(H5E_DEFAULT);
    free(p);
    return ok;
}

static hid_t make_lcpl(void)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    return lcpl;
}

int h5_create_group(h5_file_t *f, const char *group, deft_err_t *err)
{
    if (h5_exists(f, group, NULL))
        return DEFT_OK;
    hid_t lcpl = make_lcpl();
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_obj_track_times(gcpl, 0);
    hid_t g = H5Gcreate2(f->id, group, lcpl, gcpl, H5P_DEFAULT);
    H5Pclose(gcpl);
    H5Pclose(lcpl);
    if (g < 0)
        return h5_fail(err, DEFT_ERR_IO, f->path, "cannot create group %s", group);
    H5Gclose(g);
    return DEFT_OK;
}

static int write_1d(h5_file_t *f, const char *dset, hid_t file_type, hid_t mem_type,
                    const void *data, size_t n, deft_err_t *err)
{
    /* Intermediate groups made here through the lcpl get the default gcpl
     * (with times), so make the parent explicitly first. */
    char *parent = xstrdup(dset);
    char *slash = strrchr(parent, '/');
    int code = DEFT_OK;
    if (slash && slash != parent) {
        *slash = '\0';
        code = h5_create_group(f, parent, err);
    }
    free(parent);
    if (code)
        return code;
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    hid_t d = H5Dcreate2(f->id, dset, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (d < 0)
        return h5_fail(err, DEFT_ERR_IO, f->path, "cannot create dataset %s", dset);
    herr_t rc = n ? H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : 0;
    H5Dclose(d);
    if (rc < 0)
        return h5_fail(err, DEFT_ERR_IO, f->path, "cannot write dataset %s (%zu values)",
                       dset, n);
    return DEFT_OK;
}

/* Little-endian in the file whatever the host: files move between machines. */
int h5_write_i64(h5_file_t *f, const char *dset, const int64_t *data, size_t n,
                 deft_err_t *err)
{
    return write_1d(f, dset, H5T_STD_I64LE, H5T_NATIVE_INT64, data, n, err);
}

int h5_write_i32(h5_file_t *f, const char *dset, const int32_t *data, size_t n,
                 deft_err_t *err)
{
    return write_1d(f, dset, H5T_STD_I32LE, H5T_NATIVE_INT32, data, n, err);
}

int h5_write_f64(h5_file_t *f, const char *dset, const double *data, size_t n,
                 deft_err_t *err)
{
    return write_1d(f, dset, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, data, n, err);
}

static int read_1d(h5_file_t *f, const char *dset, hid_t mem_type, size_t elem, void **data,
                   size_t *n, deft_err_t *err)
{
    *data = NULL;
    *n = 0;
    if (!h5_exists(f, dset, NULL))
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: dataset %s not found", f->path, dset);
    hid_t d = H5Dopen2(f->id, dset, H5P_DEFAULT);
    if (d < 0)
        return h5_fail(err, DEFT_ERR_FORMAT, f->path, "cannot open dataset %s", dset);
    hid_t space = H5Dget_space(d);
    hid_t type = H5Dget_type(d);
    H5T_class_t cls = H5Tget_class(type);
    H5Tclose(type);
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[1] = {0};
    if (rank == 1)
        H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    int code = DEFT_OK;
    if (rank != 1)
        code = deft_fail(err, DEFT_ERR_FORMAT, "%s: dataset %s has %d dimensions, expected 1",
                         f->path, dset, rank);
    else if (cls != H5T_INTEGER && cls != H5T_FLOAT)
        code = deft_fail(err, DEFT_ERR_FORMAT, "%s: dataset %s is not numeric", f->path,
                         dset);
    if (!code) {
        *data = xmalloc(elem * (size_t)dims[0]);
        if (dims[0] && H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0) {
            code = h5_fail(err, DEFT_ERR_FORMAT, f->path, "cannot read dataset %s", dset);
            free(*data);
            *data = NULL;
        } else {
            *n = (size_t)dims[0];
        }
    }
    H5Dclose(d);
    return code;
}

int h5_read_i64(h5_file_t *f, const char *dset, int64_t **data, size_t *n, deft_err_t *err)
{
    return read_1d(f, dset, H5T_NATIVE_INT64, sizeof **data, (void **)data, n, err);
}

int h5_read_i32(h5_file_t *f, const char *dset, int32_t **data, size_t *n, deft_err_t *err)
{
    return read_1d(f, dset, H5T_NATIVE_INT32, sizeof **data, (void **)data, n, err);
}

int h5_read_f64(h5_file_t *f, const char *dset, double **data, size_t *n, deft_err_t *err)
{
    return read_1d(f, dset, H5T_NATIVE_DOUBLE, sizeof **data, (void **)data, n, err);
}

// ----------------------------------------------------------------------------
// attributes

static hid_t vlen_utf8_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static int set_attr(h5_file_t *f, const char *obj, const char *name, hid_t type,
                    const void *value, size_t n, bool scalar, deft_err_t *err)
{
    if (!h5_exists(f, obj, NULL))
        return deft_fail(err, DEFT_ERR_INTERNAL, "%s: attribute %s on missing object %s",
                         f->path, name, obj);
    if (h5_exists(f, obj, name) && H5Adelete_by_name(f->id, obj, name, H5P_DEFAULT) < 0)
        return h5_fail(err, DEFT_ERR_IO, f->path, "cannot replace attribute %s of %s", name,
                       obj);
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL);
    hid_t a = H5Acreate_by_name(f->id, obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT,
                                H5P_DEFAULT);
    H5Sclose(space);
    if (a < 0)
        return h5_fail(err, DEFT_ERR_IO, f->path, "cannot create attribute %s of %s", name,
                       obj);
    herr_t rc = (scalar || n) ? H5Awrite(a, type, value) : 0;
    H5Aclose(a);
    if (rc < 0)
        return h5_fail(err, DEFT_ERR_IO, f->path, "cannot write attribute %s of %s", name,
                       obj);
    return DEFT_OK;
}

int h5_set_attr_str(h5_file_t *f, const char *obj, const char *name, const char *value,
                    deft_err_t *err)
{
    hid_t t = vlen_utf8_type();
    int code = set_attr(f, obj, name, t, &value, 1, true, err);
    H5Tclose(t);
    return code;
}

int h5_set_attr_str_list(h5_file_t *f, const char *obj, const char *name,
                         const char *const *values, size_t n, deft_err_t *err)
{
    hid_t t = vlen_utf8_type();
    int code = set_attr(f, obj, name, t, values, n, false, err);
    H5Tclose(t);
    return code;
}

int h5_set_attr_i64(h5_file_t *f, const char *obj, const char *name, int64_t value,
                    deft_err_t *err)
{
    return set_attr(f, obj, name, H5T_NATIVE_INT64, &value, 1, true, err);
}

int h5_set_attr_f64(h5_file_t *f, const char *obj, const char *name, double value,
                    deft_err_t *err)
{
    return set_attr(f, obj, name, H5T_NATIVE_DOUBLE, &value, 1, true, err);
}

/* Opens obj's attribute, checks its type class and returns its element count. */
static hid_t open_attr(h5_file_t *f, const char *obj, const char *name, H5T_class_t want,
                       size_t *n, deft_err_t *err)
{
    if (!h5_exists(f, obj, name)) {
        deft_fail(err, DEFT_ERR_FORMAT, "%s: attribute %s of %s not found", f->path, name,
                  obj);
        return -1;
    }
    hid_t a = H5Aopen_by_name(f->id, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) {
        h5_fail(err, DEFT_ERR_FORMAT, f->path, "cannot open attribute %s of %s", name, obj);
        return -1;
    }
    hid_t type = H5Aget_type(a);
    H5T_class_t cls = H5Tget_class(type);
    H5Tclose(type);
    bool numeric = want != H5T_STRING;
    if (numeric ? (cls != H5T_INTEGER && cls != H5T_FLOAT) : cls != H5T_STRING) {
        deft_fail(err, DEFT_ERR_FORMAT, "%s: attribute %s of %s is not %s", f->path, name,
                  obj, numeric ? "a number" : "a string");
        H5Aclose(a);
        return -1;
    }
    hid_t space = H5Aget_space(a);
    hssize_t count = H5Sget_simple_extent_npoints(space);
    H5Sclose(space);
    *n = count > 0 ? (size_t)count : 0;
    return a;
}

static int get_attr_number(h5_file_t *f, const char *obj, const char *name, hid_t mem_type,
                           void *value, deft_err_t *err)
{
    size_t n = 0;
    hid_t a = open_attr(f, obj, name, H5T_INTEGER, &n, err);
    if (a < 0)
        return err ? err->code : DEFT_ERR_FORMAT;
    int code = DEFT_OK;
    if (n != 1)
        code = deft_fail(err, DEFT_ERR_FORMAT, "%s: attribute %s of %s has %zu values, "
                         "expected 1", f->path, name, obj, n);
    else if (H5Aread(a, mem_type, value) < 0)
        code = h5_fail(err, DEFT_ERR_FORMAT, f->path, "cannot read attribute %s of %s",
                       name, obj);
    H5Aclose(a);
    return code;
}

int h5_get_attr_i64(h5_file_t *f, const char *obj, const char *name, int64_t *value,
                    deft_err_t *err)
{
    return get_attr_number(f, obj, name, H5T_NATIVE_INT64, value, err);
}

int h5_get_attr_f64(h5_file_t *f, const char *obj, const char *name, double *value,
                    deft_err_t *err)
{
    return get_attr_number(f, obj, name, H5T_NATIVE_DOUBLE, value, err);
}

int h5_get_attr_str_list(h5_file_t *f, const char *obj, const char *name, char ***values,
                         size_t *n, deft_err_t *err)
{
    *values = NULL;
    *n = 0;
    size_t count = 0;
    hid_t a = open_attr(f, obj, name, H5T_STRING, &count, err);
    if (a < 0)
        return err ? err->code : DEFT_ERR_FORMAT;
    /* Read as variable-length strings whatever is stored: HDF5 converts
     * fixed-length ones (as other tools may write them). */
    hid_t t = vlen_utf8_type();
    char **raw = xcalloc(count ? count : 1, sizeof *raw);
    int code = DEFT_OK;
    if (count && H5Aread(a, t, raw) < 0) {
        code = h5_fail(err, DEFT_ERR_FORMAT, f->path, "cannot read attribute %s of %s", name,
                       obj);
    } else {
        *values = xcalloc(count ? count : 1, sizeof **values);
        for (size_t i = 0; i < count; i++)
            (*values)[i] = xstrdup(raw[i] ? raw[i] : "");
        *n = count;
        if (count) {
            hid_t space = H5Aget_space(a);
#if H5_VERSION_GE(1, 12, 0)
            H5Treclaim(t, space, H5P_DEFAULT, raw);
#else
            H5Dvlen_reclaim(t, space, H5P_DEFAULT, raw);
#endif
            H5Sclose(space);
        }
    }
    free(raw);
    H5Tclose(t);
    H5Aclose(a);
    return code;
}

int h5_get_attr_str(h5_file_t *f, const char *obj, const char *name, char **value,
                    deft_err_t *err)
{
    char **list = NULL;
    size_t n = 0;
    *value = NULL;
    int code = h5_get_attr_str_list(f, obj, name, &list, &n, err);
    if (code)
        return code;
    if (n != 1)
        code = deft_fail(err, DEFT_ERR_FORMAT, "%s: attribute %s of %s has %zu strings, "
                         "expected 1", f->path, name, obj, n);
    else
        *value = xstrdup(list[0]);
    h5_free_str_list(list, n);
    return code;
}

void h5_free_str_list(char **values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(values[i]);
    free(values);
}
