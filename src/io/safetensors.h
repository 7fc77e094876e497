/* safetensors files: reading (memory-mapped, single file or sharded with
 * model.safetensors.index.json) and writing. Format: 8-byte little-endian
 * header length N, N bytes of JSON header {name: {dtype, shape,
 * data_offsets: [begin, end]}, "__metadata__": {...}}, then the data. */
#ifndef DEFT_SAFETENSORS_H
#define DEFT_SAFETENSORS_H

#include "util/common.h"

typedef enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I32, ST_I64 } st_dtype_t;

typedef struct {
    char *name;
    st_dtype_t dtype;
    int ndim;
    int64_t shape[8];
    const void *data;     /* points into the mapped file */
    size_t nbytes;
    const char *file;     /* which shard, for messages */
} st_tensor_t;

typedef struct st_set st_set_t;

/* path: a folder (model.safetensors, or the index of a sharded model) or one
 * .safetensors file. Every shard is mapped read-only. A truncated file, a
 * malformed header, overlapping or out-of-range offsets are errors naming
 * the file and the byte offset or tensor. */
int st_open(st_set_t **out, const char *path, deft_err_t *err);
void st_close(st_set_t *s);
int st_count(const st_set_t *s);
const st_tensor_t *st_at(const st_set_t *s, int i);
const st_tensor_t *st_find(const st_set_t *s, const char *name);  /* NULL if absent */
/* A string of a file's __metadata__ (first shard that has the key), or NULL. */
const char *st_metadata(const st_set_t *s, const char *key);

/* Converts a tensor of any float dtype to float32 (n elements into dst). */
void st_to_f32(const st_tensor_t *t, float *dst);
int64_t st_numel(const st_tensor_t *t);

/* Parses a header from memory (the fuzzing entry point). The tensors' data
 * is NULL; release them with st_free_tensors. */
int st_parse_header(const char *json, size_t len, size_t data_len, const char *file,
                    st_tensor_t **tensors, int *n, deft_err_t *err);
void st_free_tensors(st_tensor_t *t, int n);

/* Writing: tensors are given as float32 and stored as dtype. The file is
 * written to PATH.tmp, flushed, synced and renamed. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[8];
    const float *data;
} st_write_tensor_t;

int st_write(const char *path, const st_write_tensor_t *t, int n, st_dtype_t dtype,
             const char *metadata_json, deft_err_t *err);

#endif
