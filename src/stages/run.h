/* The run directory of `deft run`: a record per stage of what it was made
 * from (RUN_DIR/stages/<stage>.json: the stage's resolved config text and
 * SHA-256 of every input and output), so that a stage whose record still
 * matches is skipped; greedy generations of held-out prompts before and
 * after training; and the end-of-run summary (summary.md). */
#ifndef DEFT_STAGES_RUN_H
#define DEFT_STAGES_RUN_H

#include "mpi/comm.h"
#include "util/common.h"

/* What one stage reads and writes. Paths are files or folders. */
typedef struct {
    const char *stage;    /* "qdiff", "score", ... : the record's file name */
    char *config_text;    /* cfg_dump of the stage's resolved config (owned) */
    char **inputs;        /* [n_inputs] owned paths */
    int n_inputs;
    char **outputs;       /* [n_outputs] owned paths */
    int n_outputs;
    char **in_sum;        /* [n_inputs] checksums, computed once when first needed */
} run_stage_io_t;

void run_io_add_input(run_stage_io_t *io, const char *path);
void run_io_add_output(run_stage_io_t *io, const char *path);
void run_io_free(run_stage_io_t *io);

/* SHA-256 of a file, or of a folder: of the sorted names and contents of
 * its regular files (subfolders included), as lowercase hex. */
int run_path_checksum(const char *path, char hex[65], deft_err_t *err);

/* Whether RUN_DIR/stages/<stage>.json records this config and these inputs
 * (checksums now), and the outputs it names are still there unchanged.
 * When not, why[] says what differs ("not done yet", "input X changed",
 * "config changed", "output X is missing"), inputs first. Rank-local: rank 0 asks, then
 * broadcasts (run_agree). */
int run_stage_current(const char *run_dir, const run_stage_io_t *io, bool *current,
                      char *why, size_t why_n, deft_err_t *err);

/* Whether RUN_DIR/stages/<stage>.json exists: the stage finished once. */
bool run_stage_recorded(const char *run_dir, const char *stage);

/* Before a stage runs: drops its finished record and writes
 * RUN_DIR/stages/<stage>.started.json (config and inputs). *same_start
 * (when non-NULL) is true when a started record of the same config and
 * inputs was already there: an interrupted attempt of this very stage,
 * whose checkpoints may be resumed. Rank 0 only. */
int run_stage_begin(const char *run_dir, const run_stage_io_t *io, bool *same_start,
                    deft_err_t *err);

/* After a stage succeeded: writes RUN_DIR/stages/<stage>.json with the
 * checksums of inputs and outputs and removes the started record. Rank 0. */
int run_stage_finish(const char *run_dir, const run_stage_io_t *io, deft_err_t *err);

/* Rank 0's decision and status broadcast to every rank: *flag and *rc on
 * return are rank 0's; a failure's message stays on rank 0. Collective. */
int run_agree(comm_t *comm, bool *flag, int *rc, deft_err_t *err);

// ----------------------------------------------------------------------------
// generations before and after training

typedef struct {
    const char *model_before;   /* starting model folder */
    const char *model_after;    /* exported trained model folder */
    const char *tokenizer;      /* tokenizer path (NULL: model_before) */
    const char *const *data;    /* [ndata] the run's data files */
    int ndata;
    const char *selected;       /* selected.jsonl: prompts trained on are not used */
    int n_prompts;              /* held-out prompts: the first ones not selected */
    int max_prompt_tokens;      /* prompt cut from the left to this many tokens */
    int max_new_tokens;
    const char *out;            /* generations.jsonl: {prompt, before, after} a line */
} run_gen_opts_t;

/* Greedy completions of the same held-out prompts by both models. Rank 0. */
int run_generate(const run_gen_opts_t *o, deft_err_t *err);

// ----------------------------------------------------------------------------
// summary

typedef struct {
    const char *run_dir;
    const char *const *data;    /* [ndata] */
    int ndata;
    const char *tokenizer;
    const char *start_model;    /* the model scored and trained from */
    const char *qdiff;          /* qdiff.h5 */
    const char *select_report;  /* selected.report.json */
    const char *metrics;        /* metrics.jsonl */
    const char *plots;          /* folder of the PNGs */
    const char *checkpoint;     /* newest checkpoint, or NULL */
    const char *export_dir;     /* exported model, or NULL */
    const char *generations;    /* generations.jsonl, or NULL */
    const char *skipped;        /* stages skipped this time, space separated */
    const char *ran;            /* stages run this time */
    const char *behind;         /* stages left out this time and out of date */
    double seconds;             /* wall time of this invocation */
} run_summary_opts_t;

/* The summary as Markdown, readable in ten seconds: data used and skipped,
 * top Q_diff tokens, the selection per subset, loss and R_Q first -> last,
 * where the checkpoint, model and plots are, and the generations. Parts
 * whose files are absent are left out. Rank 0. */
int run_summary(const run_summary_opts_t *o, strbuf_t *out, deft_err_t *err);

#endif
