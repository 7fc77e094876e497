/* Training metrics (metrics.jsonl) read into series and drawn as PNG files
 * with gnuplot: the loss and its terms, reward accuracy and margins, and the
 * mean distribution reward R_Q, each against the optimizer step, train and
 * eval records as separate lines; several runs can share one set of pictures. */
#ifndef DEFT_STAGES_PLOT_H
#define DEFT_STAGES_PLOT_H

#include <stdint.h>

#include "util/common.h"

/* One metric of one split ("train" or "eval") over the steps it was logged. */
typedef struct {
    char *key;       /* metric name as in the JSON record: "loss", "r_q", ... */
    char *split;     /* "train" or "eval" */
    double *step;    /* [n] x values (optimizer step) */
    double *value;   /* [n] */
    int64_t n, cap;
} plot_series_t;

typedef struct {
    plot_series_t *s;  /* [n] in order of first appearance */
    int n;
    int64_t records;   /* JSON lines read */
} plot_metrics_t;

/* Reads every line of path: a JSON object with a numeric "step" and any
 * numeric metrics; a string "split" (or "phase") names its split (default
 * "train"), and keys beginning "eval_" belong to the eval split under the
 * rest of their name. A line that is not a JSON object is an error naming
 * path:line. */
int plot_metrics_read(const char *path, plot_metrics_t *m, deft_err_t *err);
void plot_metrics_free(plot_metrics_t *m);

/* The series of key in split, or NULL. */
const plot_series_t *plot_metrics_find(const plot_metrics_t *m, const char *key,
                                       const char *split);

/* Draws out_dir/loss.png, accuracy.png and r_q.png (each only when the
 * metrics hold something for it) and appends the paths written to
 * written (one per line) when non-NULL. A missing gnuplot is DEFT_ERR_USAGE
 * saying how to install it. */
int plot_draw(const plot_metrics_t *m, const char *out_dir, strbuf_t *written,
              deft_err_t *err);

/* The same pictures for several runs on shared axes, out_dir/<prefix>loss.png
 * and so on: one line per run and metric, titled "label: metric (split)", a
 * colour per run and a dash type per metric, eval lines marked by points.
 * runs and labels are [nruns]; labels NULL draws one run as plot_draw does. */
int plot_draw_runs(const plot_metrics_t *runs, const char *const *labels, int nruns,
                   const char *out_dir, const char *prefix, strbuf_t *written,
                   deft_err_t *err);

#endif
