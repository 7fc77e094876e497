/* Stage export: a training checkpoint (HDF5) written as a Hugging Face model
 * folder that transformers and `llama_load` read: config.json,
 * model.safetensors and the tokenizer files. A checkpoint holds the
 * parameters and the run's config text but not the model's shape, so the
 * shape (config.json) and tokenizer come from the starting model's folder. */
#ifndef DEFT_STAGES_EXPORT_H
#define DEFT_STAGES_EXPORT_H

#include "util/common.h"

typedef struct {
    const char *checkpoint;  /* deft checkpoint, DIR/step-NNNNNN.h5 */
    const char *model_dir;   /* starting model folder: its config.json gives the shape */
    const char *tokenizer;   /* tokenizer folder or file to copy; NULL: from model_dir */
    const char *out_dir;     /* folder to write (created; files in it are replaced) */
} export_opts_t;

/* Loads the checkpoint's parameters into a model of model_dir's shape (a
 * missing or mis-shaped tensor is an error naming it) and writes out_dir in
 * the starting model's torch_dtype. *step_out (when non-NULL) receives the
 * checkpoint's optimizer step. Serial: one process writes. */
int export_run(const export_opts_t *o, int64_t *step_out, deft_err_t *err);

/* mkdir -p. */
int export_make_dir(const char *path, deft_err_t *err);

/* Copies the tokenizer files of a folder (tokenizer.json/.model, its config,
 * special-token map, generation_config.json and any LICENSE/NOTICE/
 * USE_POLICY file, which a licence may require to travel with it), or one
 * tokenizer file, into out_dir. */
int export_copy_tokenizer(const char *from, const char *out_dir, deft_err_t *err);

#endif
