/* deft plot RUN_DIR [RUN_DIR ...]: draw a run's training metrics (metrics.jsonl)
 * as PNG files in RUN_DIR/plots with gnuplot, or several runs on shared axes
 * (compare-*.png) to set them side by side, e.g. omega 0 against a large omega.
 * Reads the `plot` section; relative paths are taken inside the (first) run
 * directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "config/config.h"
#include "stages/plot.h"
#include "util/log.h"

/* file names of the pictures of several runs, kept apart from a run's own */
#define PLOT_COMPARE_PREFIX "compare-"

/* dir/rel, or rel itself when it is absolute. */
static char *in_dir(const char *dir, const char *rel)
{
    strbuf_t p = {0};
    if (rel[0] == '/')
        sb_puts(&p, rel);
    else
        sb_printf(&p, "%s/%s", dir, rel);
    return p.data;
}

/* The last component of dir ("runs/omega3/" -> "omega3"). */
static char *base_name(const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/')
        b--;
    if (b == n)  /* "/" itself */
        b = 0;
    strbuf_t s = {0};
    sb_append(&s, dir + b, n - b);
    return s.data;
}

/* The legend names of the runs: their folders' base names, or the paths as
 * given when two base names are the same (a/run and b/run). labels [n]. */
static void run_labels(const char *const *dirs, int n, char **labels)
{
    bool same = false;
    for (int r = 0; r < n; r++) {
        labels[r] = base_name(dirs[r]);
        for (int q = 0; q < r; q++)
            same |= !strcmp(labels[q], labels[r]);
    }
    for (int r = 0; same && r < n; r++) {
        free(labels[r]);
        labels[r] = xstrdup(dirs[r]);
    }
}

/* Reads the metrics of every run (runs [n]); a run with none is an error. */
static int read_runs(const cfg_t *cfg, const char *const *dirs, int n, plot_metrics_t *runs,
                     strbuf_t *counts, deft_err_t *err)
{
    int rc = DEFT_OK;
    for (int r = 0; !rc && r < n; r++) {
        char *metrics = in_dir(dirs[r], cfg_str(cfg, "metrics"));
        rc = plot_metrics_read(metrics, &runs[r], err);
        if (!rc && runs[r].n == 0)
            rc = deft_fail(err, DEFT_ERR_DATA, "%s: no metrics to plot (%lld records)",
                           metrics, (long long)runs[r].records);
        if (!rc)
            sb_printf(counts, "%s%lld records of %s", r ? ", " : "",
                      (long long)runs[r].records, metrics);
        free(metrics);
    }
    return rc;
}

static int plot_with_config(const cfg_t *cfg, deft_err_t *err)
{
    int n = cfg_npositional(cfg) ? cfg_npositional(cfg) : 1;
    const char **dirs = xcalloc((size_t)n, sizeof *dirs);
    for (int r = 0; r < n; r++)
        dirs[r] = cfg_npositional(cfg) ? cfg_positional(cfg, r) : cfg_str(cfg, "run_dir");
    plot_metrics_t *runs = xcalloc((size_t)n, sizeof *runs);
    char **labels = xcalloc((size_t)n, sizeof *labels);
    char *out = in_dir(dirs[0], cfg_str(cfg, "out"));
    strbuf_t counts = {0}, written = {0};
    int rc = read_runs(cfg, dirs, n, runs, &counts, err);
    if (!rc && n == 1) {
        rc = plot_draw(&runs[0], out, &written, err);
    } else if (!rc) {
        run_labels(dirs, n, labels);
        rc = plot_draw_runs(runs, (const char *const *)labels, n, out, PLOT_COMPARE_PREFIX,
                            &written, err);
    }
    if (!rc)
        log_info("plot: %s ->\n%s", counts.data,
                 written.data ? written.data : "(nothing to draw)\n");
    for (int r = 0; r < n; r++) {
        plot_metrics_free(&runs[r]);
        free(labels[r]);
    }
    free(runs);
    free(labels);
    free(dirs);
    free(out);
    sb_free(&counts);
    sb_free(&written);
    return rc;
}

int cmd_plot(int argc, char **argv)
{
    deft_err_t err = {0};
    cfg_t *cfg = NULL;
    int rc = cfg_parse(&cfg, "plot", argc, argv, &err);
    if (rc == DEFT_OK)
        rc = plot_with_config(cfg, &err);
    if (rc && rc != DEFT_HELP)
        log_error("deft plot: %s", cli_message("plot", err.msg));
    cfg_free(cfg);
    return deft_exit_status(rc);
}
