/* Training checkpoints in HDF5 (DIR/step-NNNNNN.h5): every parameter at full
 * shape, the AdamW moments, the position in training (step, epoch, place in
 * the epoch's data order, RNG state), the config text, the Q_diff checksum
 * and the deft version. Written atomically and durably; the newest good one
 * is found after a crash. Layout and guarantees: docs/training.md. */
#ifndef DEFT_CHECKPOINT_H
#define DEFT_CHECKPOINT_H

#include "util/common.h"

#define CKPT_MAX_DIMS 8

/* A named fp32 tensor, independent of any model struct. */
typedef struct {
    const char *name;              /* "model.layers.0.mlp.up_proj.weight"; no '/' */
    int ndim;                      /* 1 .. CKPT_MAX_DIMS */
    int64_t shape[CKPT_MAX_DIMS];
    float *data;                   /* row-major, prod(shape) floats: read by save, */
                                   /* written by load */
} ckpt_tensor_t;

/* The tensors of one training state; m and v name their tensors like params. */
typedef struct {
    const ckpt_tensor_t *params;   /* (n,) model parameters */
    const ckpt_tensor_t *m, *v;    /* (n,) AdamW first and second moments; NULL: none */
    int n;
} ckpt_tensors_t;

/* Everything but the tensors. On save the caller owns every pointer; on
 * load the strings and rng are allocated: free with checkpoint_state_free. */
typedef struct {
    int64_t step;                  /* optimizer steps taken */
    int64_t epoch;                 /* epoch in progress, from 0 */
    int64_t epoch_pos;             /* samples of this epoch's data order consumed */
    uint64_t *rng;                 /* (n_rng,) RNG state words */
    int n_rng;
    char *config_text;             /* the run's resolved config (YAML) */
    char *qdiff_checksum;          /* checksum of the Q_diff trained with */
    char *deft_version;            /* load: the writer's version; ignored on save */
} ckpt_state_t;

/* DIR/step-NNNNNN.h5 (at least six digits) into buf[n]. */
void checkpoint_path(char *buf, size_t n, const char *dir, int64_t step);

/* Writes DIR/step-NNNNNN.h5 for st->step: the data goes to a .tmp name that
 * is flushed, closed, fsynced and renamed, and DIR is fsynced. Only after
 * that are older checkpoints deleted beyond the newest `keep` (keep <= 0:
 * keep all), together with stray *.tmp files left by a crash. One writer per
 * DIR. The path written goes to path_out[path_n] when path_out is set. */
int checkpoint_save(const char *dir, const ckpt_state_t *st, const ckpt_tensors_t *t,
                    int keep, char *path_out, size_t path_n, deft_err_t *err);

/* Restores a checkpoint: *st is filled (free with checkpoint_state_free) and
 * every tensor of *t whose data is set is read in place; a missing tensor, a
 * shape that differs from the one given, or a checksum mismatch is an error
 * naming the file and dataset. t may be NULL to read only the state. */
int checkpoint_load(const char *path, ckpt_state_t *st, const ckpt_tensors_t *t,
                    deft_err_t *err);
void checkpoint_state_free(ckpt_state_t *st);

/* Opens PATH and checks its format marker, attributes, RNG dataset and that
 * every tensor is 32-bit float with a checksum; deep also reads every tensor
 * and verifies its checksum (reading the whole file). */
int checkpoint_validate(const char *path, bool deep, deft_err_t *err);

/* The newest DIR/step-*.h5 that validates, as a new string in *path (freed by
 * the caller), or NULL when there is none (not an error). *.tmp files and
 * files that fail validation are skipped with a warning naming them. */
int checkpoint_find_latest(const char *dir, bool deep, char **path, deft_err_t *err);

#endif
