/* deft plot RUN_DIR: draw the run's training metrics (metrics.jsonl) as PNG
 * files in RUN_DIR/plots with gnuplot. Reads the `plot` section; relative
 * paths are taken inside the run directory. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/commands.h"
#include "config/config.h"
#include "stages/plot.h"
#include "util/log.h"

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

static int plot_with_config(const cfg_t *cfg, deft_err_t *err)
{
    if (cfg_npositional(cfg) > 1)
        return deft_fail(err, DEFT_ERR_USAGE, "plot: one run directory, not %d "
                         "(usage: deft plot RUN_DIR)", cfg_npositional(cfg));
    const char *dir = cfg_npositional(cfg) ? cfg_positional(cfg, 0) : cfg_str(cfg, "run_dir");
    char *metrics = in_dir(dir, cfg_str(cfg, "metrics"));
    char *out = in_dir(dir, cfg_str(cfg, "out"));
    plot_metrics_t m;
    strbuf_t written = {0};
    int rc = plot_metrics_read(metrics, &m, err);
    if (!rc && m.n == 0)
        rc = deft_fail(err, DEFT_ERR_DATA, "%s: no metrics to plot (%lld records)", metrics,
                       (long long)m.records);
    if (!rc)
        rc = plot_draw(&m, out, &written, err);
    if (!rc)
        log_info("plot: %lld records of %s ->\n%s", (long long)m.records, metrics,
                 written.data ? written.data : "(nothing to draw)\n");
    plot_metrics_free(&m);
    sb_free(&written);
    free(metrics);
    free(out);
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
