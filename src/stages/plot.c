/* metrics.jsonl -> series -> PNG files drawn by gnuplot (run through popen,
 * with the data sent inline as gnuplot datablocks, so no temporary files). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stages/export.h"
#include "stages/plot.h"

// ----------------------------------------------------------------------------
// reading

static plot_series_t *series_get(plot_metrics_t *m, const char *key, const char *split)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->s[i].key, key) && !strcmp(m->s[i].split, split))
            return &m->s[i];
    m->s = xrealloc(m->s, (size_t)(m->n + 1) * sizeof *m->s);
    plot_series_t *s = &m->s[m->n++];
    *s = (plot_series_t){.key = xstrdup(key), .split = xstrdup(split)};
    return s;
}

static void series_push(plot_series_t *s, double step, double value)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->step = xrealloc(s->step, (size_t)s->cap * sizeof *s->step);
        s->value = xrealloc(s->value, (size_t)s->cap * sizeof *s->value);
    }
    s->step[s->n] = step;
    s->value[s->n++] = value;
}

static bool is_axis_key(const char *k)
{
    return !strcmp(k, "step") || !strcmp(k, "split") || !strcmp(k, "phase");
}

static int add_record(plot_metrics_t *m, json_t *obj, const char *path, int64_t line,
                      deft_err_t *err)
{
    json_t *jstep = json_object_get(obj, "step");
    if (!json_is_number(jstep))
        return deft_fail(err, DEFT_ERR_FORMAT, "%s:%lld: field 'step' is missing or not a "
                         "number", path, (long long)line);
    json_t *jsplit = json_object_get(obj, "split");
    if (!jsplit)
        jsplit = json_object_get(obj, "phase");
    const char *split = json_is_string(jsplit) ? json_string_value(jsplit) : "train";
    double step = json_number_value(jstep);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (is_axis_key(key) || !json_is_number(v))
            continue;
        if (!strncmp(key, "eval_", 5))
            series_push(series_get(m, key + 5, "eval"), step, json_number_value(v));
        else
            series_push(series_get(m, key, split), step, json_number_value(v));
    }
    m->records++;
    return DEFT_OK;
}

int plot_metrics_read(const char *path, plot_metrics_t *m, deft_err_t *err)
{
    *m = (plot_metrics_t){0};
    FILE *f = fopen(path, "r");
    if (!f)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t line = 0;
    int rc = DEFT_OK;
    while (!rc && (len = getline(&buf, &cap, f)) >= 0) {
        line++;
        if (strspn(buf, " \t\r\n") == (size_t)len)
            continue;
        json_error_t je;
        json_t *obj = json_loadb(buf, (size_t)len, 0, &je);
        if (!json_is_object(obj))
            rc = deft_fail(err, DEFT_ERR_FORMAT, "%s:%lld: not a JSON object%s%s", path,
                           (long long)line, obj ? "" : ": ", obj ? "" : je.text);
        else
            rc = add_record(m, obj, path, line, err);
        json_decref(obj);
    }
    free(buf);
    fclose(f);
    if (rc)
        plot_metrics_free(m);
    return rc;
}

void plot_metrics_free(plot_metrics_t *m)
{
    for (int i = 0; i < m->n; i++) {
        free(m->s[i].key);
        free(m->s[i].split);
        free(m->s[i].step);
        free(m->s[i].value);
    }
    free(m->s);
    *m = (plot_metrics_t){0};
}

const plot_series_t *plot_metrics_find(const plot_metrics_t *m, const char *key,
                                       const char *split)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->s[i].key, key) && !strcmp(m->s[i].split, split))
            return &m->s[i];
    return NULL;
}

// ----------------------------------------------------------------------------
// drawing

/* Which metrics go on which picture, by name. */
typedef struct {
    const char *file;
    const char *title;
    const char *ylabel;
    bool (*takes)(const char *key);
} plot_panel_t;

static bool has(const char *key, const char *part) { return strstr(key, part) != NULL; }

static bool is_rq(const char *k) { return has(k, "r_q") || has(k, "rq"); }
/* train's terms: pref (DPO/PRO), sft (w_sft nll), deft (-omega R_Q); the bare nll is
 * left out: several times larger, it would flatten the terms that sum to the loss */
static bool is_loss(const char *k)
{
    return !is_rq(k) && (has(k, "loss") || !strcmp(k, "pref") || !strcmp(k, "sft") ||
                         !strcmp(k, "deft"));
}
static bool is_acc(const char *k) { return has(k, "acc"); }
static bool is_reward(const char *k)
{
    return !is_rq(k) && !is_acc(k) && (has(k, "reward") || has(k, "margin"));
}

static const plot_panel_t panels[] = {
    {"loss.png", "loss and its terms", "loss", is_loss},
    {"accuracy.png", "reward accuracy (pairs ranked as preferred)", "accuracy", is_acc},
    {"rewards.png", "implicit rewards beta (log pi - log pi_ref)", "reward", is_reward},
    {"r_q.png", "mean distribution reward R_Q of the best response", "R_Q", is_rq},
};

/* gnuplot on PATH (popen would only say "not found" on stderr). */
static bool gnuplot_found(void)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    char *dirs = xstrdup(path), *save = NULL;
    bool found = false;
    for (char *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        strbuf_t p = {0};
        sb_printf(&p, "%s/gnuplot", *d ? d : ".");
        found = access(p.data, X_OK) == 0;
        sb_free(&p);
    }
    free(dirs);
    return found;
}

/* Title text for gnuplot's enhanced mode: an underscore would subscript. */
static void sb_label(strbuf_t *sb, const char *s)
{
    for (; *s; s++) {
        if (*s == '_' || *s == '^' || *s == '{' || *s == '}' || *s == '@' || *s == '&')
            sb_append(sb, "\\\\", 2);
        if (*s == '"')
            sb_append(sb, "\\", 1);
        sb_append(sb, s, 1);
    }
}

/* Whether series j of run r is the first with data, over the runs in order, of
 * its metric. */
static bool key_first_seen(const plot_metrics_t *runs, int r, int j)
{
    const char *key = runs[r].s[j].key;
    for (int q = 0; q <= r; q++)
        for (int k = 0; k < (q < r ? runs[q].n : j); k++)
            if (runs[q].s[k].n > 0 && !strcmp(runs[q].s[k].key, key))
                return false;
    return true;
}

/* 1 + the number of other metrics of the panel that first appeared before key:
 * its colour (one run) or its dash type (several runs). */
static int key_index(const plot_metrics_t *runs, int nruns, const plot_panel_t *p,
                     const char *key)
{
    int c = 0;
    for (int r = 0; r < nruns; r++) {
        for (int j = 0; j < runs[r].n; j++) {
            const plot_series_t *s = &runs[r].s[j];
            if (!p->takes(s->key) || s->n == 0 || !key_first_seen(runs, r, j))
                continue;
            c++;
            if (!strcmp(s->key, key))
                return c;
        }
    }
    return c + 1;
}

/* The plot clause of series i of run r. One run: a colour per metric, so that
 * its train and eval lines pair up, eval dashed. Several: a colour per run and
 * a dash type per metric, eval marked by points, the run's label first. */
static void series_clause(const plot_metrics_t *runs, const char *const *labels, int nruns,
                          const plot_panel_t *p, int r, int i, strbuf_t *g)
{
    const plot_series_t *s = &runs[r].s[i];
    bool eval = !strcmp(s->split, "eval");
    int metric = key_index(runs, nruns, p, s->key);
    sb_printf(g, "$r%ds%d using 1:2 with ", r, i);
    if (!labels) {
        sb_printf(g, "%s lw 2 lc %d title \"",
                  eval ? "linespoints dt 2 pt 7 ps 0.8" : "lines", metric);
    } else {
        sb_printf(g, "%s lc %d dt %d title \"",
                  eval ? "linespoints lw 1 pt 7 ps 0.8" : "lines lw 2", r + 1, metric);
        sb_label(g, labels[r]);
        sb_puts(g, ": ");
    }
    sb_label(g, s->key);
    sb_printf(g, " (%s)\"", s->split);
}

static void panel_script(const plot_metrics_t *runs, const char *const *labels, int nruns,
                         const plot_panel_t *p, const char *png, strbuf_t *g)
{
    sb_printf(g, "set terminal pngcairo size 960,540 enhanced font \",11\"\n"
                 "set output \"%s\"\nset title \"", png);
    sb_label(g, p->title);
    sb_puts(g, "\"\nset xlabel \"optimizer step\"\nset ylabel \"");
    sb_label(g, p->ylabel);
    sb_puts(g, "\"\nset grid\nset key outside right top\n");
    for (int r = 0; r < nruns; r++) {
        for (int i = 0; i < runs[r].n; i++) {
            const plot_series_t *s = &runs[r].s[i];
            if (!p->takes(s->key) || s->n == 0)
                continue;
            sb_printf(g, "$r%ds%d << EOD\n", r, i);
            for (int64_t j = 0; j < s->n; j++)
                sb_printf(g, "%.17g %.9g\n", s->step[j], s->value[j]);
            sb_puts(g, "EOD\n");
        }
    }
    sb_puts(g, "plot ");
    const char *sep = "";
    for (int r = 0; r < nruns; r++) {
        for (int i = 0; i < runs[r].n; i++) {
            if (!p->takes(runs[r].s[i].key) || runs[r].s[i].n == 0)
                continue;
            sb_puts(g, sep);
            series_clause(runs, labels, nruns, p, r, i, g);
            sep = ", \\\n     ";
        }
    }
    sb_puts(g, "\n");
}

static bool panel_has_data(const plot_metrics_t *runs, int nruns, const plot_panel_t *p)
{
    for (int r = 0; r < nruns; r++)
        for (int i = 0; i < runs[r].n; i++)
            if (p->takes(runs[r].s[i].key) && runs[r].s[i].n > 0)
                return true;
    return false;
}

static int run_gnuplot(const char *script, const char *png, deft_err_t *err)
{
    FILE *gp = popen("gnuplot", "w");
    if (!gp)
        return deft_fail(err, DEFT_ERR_IO, "cannot start gnuplot: %s", strerror(errno));
    size_t n = strlen(script);
    bool ok = fwrite(script, 1, n, gp) == n;
    int status = pclose(gp);
    struct stat st;
    if (!ok || status != 0 || stat(png, &st) != 0 || st.st_size == 0)
        return deft_fail(err, DEFT_ERR_IO, "gnuplot failed to draw %s (exit status %d); "
                         "its messages are above", png, status);
    return DEFT_OK;
}

int plot_draw_runs(const plot_metrics_t *runs, const char *const *labels, int nruns,
                   const char *out_dir, const char *prefix, strbuf_t *written,
                   deft_err_t *err)
{
    if (!gnuplot_found())
        return deft_fail(err, DEFT_ERR_USAGE, "plot: gnuplot is not on PATH; install it "
                         "(Debian/Ubuntu: apt-get install gnuplot-nox)");
    int rc = export_make_dir(out_dir, err);
    for (size_t i = 0; !rc && i < DEFT_ARRAY_LEN(panels); i++) {
        if (!panel_has_data(runs, nruns, &panels[i]))
            continue;
        strbuf_t png = {0}, g = {0};
        sb_printf(&png, "%s/%s%s", out_dir, prefix, panels[i].file);
        panel_script(runs, labels, nruns, &panels[i], png.data, &g);
        rc = run_gnuplot(g.data, png.data, err);
        if (!rc && written)
            sb_printf(written, "%s\n", png.data);
        sb_free(&png);
        sb_free(&g);
    }
    return rc;
}

int plot_draw(const plot_metrics_t *m, const char *out_dir, strbuf_t *written,
              deft_err_t *err)
{
    return plot_draw_runs(m, NULL, 1, out_dir, "", written, err);
}
