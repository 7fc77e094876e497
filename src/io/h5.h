/* Thin helpers over HDF5 for the files deft writes (qdiff.h5, scores.h5):
 * atomic creation (write PATH.tmp, then flush, fsync and rename to PATH),
 * 1-D datasets of int64 / int32 / double, groups, and string, int64, double
 * and string-list attributes. HDF5's own error printing is switched off;
 * every failure comes back as a deft_err_t naming the file and object.
 *
 * These use the serial API (default property lists), which the parallel
 * HDF5 build also provides: one rank writes a whole file. Object paths are
 * absolute ("/counts/positive"); missing parent groups are created. */
#ifndef DEFT_H5_H
#define DEFT_H5_H

#include <stddef.h>
#include <stdint.h>

#include "util/common.h"

typedef struct h5_file h5_file_t;

/* Create PATH.tmp for writing (replacing any stale one). Nothing appears at
 * PATH until h5_commit succeeds. */
int h5_create(h5_file_t **out, const char *path, deft_err_t *err);

/* Flush and close the file, fsync it, rename PATH.tmp to PATH and fsync the
 * folder. The handle is freed whatever the outcome; on failure PATH.tmp is
 * removed and any old PATH is left as it was. */
int h5_commit(h5_file_t *f, deft_err_t *err);

/* Close without committing: PATH.tmp is removed (for error paths). */
void h5_discard(h5_file_t *f);

/* Open an existing file read-only; h5_close frees the handle. */
int h5_open(h5_file_t **out, const char *path, deft_err_t *err);
void h5_close(h5_file_t *f);

const char *h5_path(const h5_file_t *f);  /* PATH as given (not the .tmp name) */

/* The open file's hid_t (an int64_t since HDF5 1.10), for writers of objects
 * these helpers do not cover, such as N-D tensors in checkpoints. */
int64_t h5_file_id(const h5_file_t *f);

/* Whether a group, dataset or (when attr is non-NULL) attribute exists. */
bool h5_exists(h5_file_t *f, const char *obj, const char *attr);

int h5_create_group(h5_file_t *f, const char *group, deft_err_t *err);

/* 1-D datasets: data[n]. */
int h5_write_i64(h5_file_t *f, const char *dset, const int64_t *data, size_t n,
                 deft_err_t *err);
int h5_write_i32(h5_file_t *f, const char *dset, const int32_t *data, size_t n,
                 deft_err_t *err);
int h5_write_f64(h5_file_t *f, const char *dset, const double *data, size_t n,
                 deft_err_t *err);

/* Read a whole 1-D dataset into a new array *data[*n] (freed by the caller),
 * converting from whatever numeric type is stored. */
int h5_read_i64(h5_file_t *f, const char *dset, int64_t **data, size_t *n, deft_err_t *err);
int h5_read_i32(h5_file_t *f, const char *dset, int32_t **data, size_t *n, deft_err_t *err);
int h5_read_f64(h5_file_t *f, const char *dset, double **data, size_t *n, deft_err_t *err);

/* Attributes on a group or dataset ("/" for the file). Setting one that
 * exists replaces it. Strings are variable-length UTF-8 (h5py reads str). */
int h5_set_attr_str(h5_file_t *f, const char *obj, const char *name, const char *value,
                    deft_err_t *err);
int h5_set_attr_i64(h5_file_t *f, const char *obj, const char *name, int64_t value,
                    deft_err_t *err);
int h5_set_attr_f64(h5_file_t *f, const char *obj, const char *name, double value,
                    deft_err_t *err);
int h5_set_attr_str_list(h5_file_t *f, const char *obj, const char *name,
                         const char *const *values, size_t n, deft_err_t *err);

/* *value is a new string freed by the caller. */
int h5_get_attr_str(h5_file_t *f, const char *obj, const char *name, char **value,
                    deft_err_t *err);
int h5_get_attr_i64(h5_file_t *f, const char *obj, const char *name, int64_t *value,
                    deft_err_t *err);
int h5_get_attr_f64(h5_file_t *f, const char *obj, const char *name, double *value,
                    deft_err_t *err);
/* *values[*n] are new strings; free with h5_free_str_list. */
int h5_get_attr_str_list(h5_file_t *f, const char *obj, const char *name, char ***values,
                         size_t *n, deft_err_t *err);
void h5_free_str_list(char **values, size_t n);

#endif
