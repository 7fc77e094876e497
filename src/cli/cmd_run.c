/* deft run CONFIG.yaml: every stage in order into one run directory, under
 * mpirun with any number of ranks: [sft] qdiff score select train export
 * generate. Each stage reads its own section of the config; the run fixes
 * the paths between stages (RUN_DIR/qdiff.h5, scores.h5, selected.jsonl,
 * checkpoints/, metrics.jsonl, export/, generations.jsonl). A stage whose
 * record (RUN_DIR/stages/<stage>.json) matches its config and inputs is
 * skipped; once one stage is redone, every later stage is redone too. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "config/config.h"
#include "io/checkpoint.h"
#include "mpi/comm.h"
#include "stages/export.h"
#include "stages/plot.h"
#include "stages/run.h"
#include "util/log.h"

#define STAGE_NAMES "sft qdiff score select train export generate"

typedef struct {
    comm_t *comm;
    const cfg_t *cfg;     /* the run section and the shared keys */
    const char *file;     /* the config file every stage section is read from */
    const char *dir;      /* run directory */
    char *start;          /* starting model: the config's, or the SFT model */
    bool redo;            /* --force, or an earlier stage was redone */
    bool stop;            /* training stopped on a signal: no later stage */
    strbuf_t ran, skipped;
    strbuf_t behind;      /* stages left out by `stages` that are out of date */
} run_ctx_t;

/* One stage as the run sees it. */
typedef struct step step_t;
struct step {
    const char *name;      /* record name and log label */
    const char *section;   /* config section read */
    const char *flags[16]; /* overrides of the section's keys, NULL-terminated */
    const char *inputs[8]; /* files and folders read besides the data, NULL-terminated */
    const char *outputs[4]; /* files written, NULL-terminated (after may add more) */
    bool reads_data;       /* the config's data files are inputs too */
    bool rank0_only;       /* serial stages: rank 0 works, the others wait */
    /* before: rank 0, after the start record (same_start: an interrupted
     * attempt of the same stage); exec: the stage; after: rank 0, adds the
     * outputs. Any may be NULL. */
    int (*before)(run_ctx_t *r, bool same_start, deft_err_t *err);
    int (*exec)(run_ctx_t *r, const cfg_t *cfg, deft_err_t *err);
    int (*after)(run_ctx_t *r, run_stage_io_t *io, deft_err_t *err);
};

static char *path_in(const char *dir, const char *name)
{
    strbuf_t p = {0};
    sb_printf(&p, "%s/%s", dir, name);
    return p.data;
}

static const char *tokenizer_of(const run_ctx_t *r)
{
    const char *t = cfg_str(r->cfg, "tokenizer");
    return t ? t : cfg_str(r->cfg, "model");
}

// ----------------------------------------------------------------------------
// stage bodies

static int exec_qdiff(run_ctx_t *r, const cfg_t *cfg, deft_err_t *err)
{
    return qdiff_with_config(r->comm, cfg, err);
}

static int exec_score(run_ctx_t *r, const cfg_t *cfg, deft_err_t *err)
{
    int rc = score_with_config(r->comm, cfg, err);
    /* the stage record stays unfinished, so the next run redoes the stage */
    if (rc == DEFT_STOPPED)
        log_info("run: score was stopped by a signal; the next `deft run` redoes it (and "
                 "every later stage)");
    return rc;
}

static int exec_select(run_ctx_t *r, const cfg_t *cfg, deft_err_t *err)
{
    return select_with_config(r->comm, cfg, err);
}

/* A fresh training must not resume checkpoints made from other inputs. */
static int clear_training(const char *dir, deft_err_t *err)
{
    char *ck = path_in(dir, "checkpoints"), *metrics = path_in(dir, "metrics.jsonl");
    DIR *d = opendir(ck);
    struct dirent *e;
    int rc = DEFT_OK, n = 0;
    while (d && !rc && (e = readdir(d))) {
        if (strncmp(e->d_name, "step-", 5))
            continue;
        char *p = path_in(ck, e->d_name);
        if (remove(p))
            rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
        n++;
        free(p);
    }
    if (d)
        closedir(d);
    if (!rc && remove(metrics) && errno != ENOENT)
        rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot remove: %s", metrics, strerror(errno));
    if (!rc && n)
        log_info("run: %d checkpoints of %s came from other inputs: removed, training starts "
                 "afresh", n, dir);
    free(ck);
    free(metrics);
    return rc;
}

static int before_train(run_ctx_t *r, bool same_start, deft_err_t *err)
{
    return same_start && !r->redo ? DEFT_OK : clear_training(r->dir, err);
}

static int before_sft(run_ctx_t *r, bool same_start, deft_err_t *err)
{
    char *dir = path_in(r->dir, "sft");
    int rc = same_start && !r->redo ? DEFT_OK : clear_training(dir, err);
    free(dir);
    return rc;
}

static int exec_train(run_ctx_t *r, const cfg_t *cfg, deft_err_t *err)
{
    bool stopped = false;
    int rc = train_with_config(r->comm, cfg, &stopped, err);
    if (!rc && stopped) {
        log_info("run: training stopped on a signal after writing a checkpoint; run the same "
                 "command again to resume it");
        r->stop = true;
    }
    return rc;
}

/* Newest checkpoint of dir/checkpoints into *path (NULL when none). */
static int newest_checkpoint(const char *dir, char **path, deft_err_t *err)
{
    char *ck = path_in(dir, "checkpoints");
    int rc = checkpoint_find_latest(ck, false, path, err);
    if (!rc && !*path)
        rc = deft_fail(err, DEFT_ERR_DATA, "%s: training left no checkpoint", ck);
    free(ck);
    return rc;
}

static int after_train(run_ctx_t *r, run_stage_io_t *io, deft_err_t *err)
{
    char *ck = NULL, *metrics = path_in(r->dir, "metrics.jsonl");
    int rc = newest_checkpoint(r->dir, &ck, err);
    if (!rc) {
        run_io_add_output(io, ck);
        run_io_add_output(io, metrics);
        plot_metrics_t m;
        strbuf_t written = {0};
        char *plots = path_in(r->dir, "plots");
        deft_err_t perr;
        /* plots are for people: a missing gnuplot is a warning, not a failed run */
        if (plot_metrics_read(metrics, &m, &perr) == DEFT_OK) {
            if (plot_draw(&m, plots, &written, &perr))
                log_warn("run: no plots: %s", perr.msg);
            plot_metrics_free(&m);
        }
        sb_free(&written);
        free(plots);
    }
    free(ck);
    free(metrics);
    return rc;
}

/* The SFT model, exported, becomes the starting model of every later stage. */
static int after_sft(run_ctx_t *r, run_stage_io_t *io, deft_err_t *err)
{
    char *dir = path_in(r->dir, "sft"), *ck = NULL, *out = path_in(dir, "model");
    int rc = newest_checkpoint(dir, &ck, err);
    if (!rc) {
        export_opts_t o = {ck, r->start, cfg_str(r->cfg, "tokenizer"), out};
        rc = export_run(&o, NULL, err);
    }
    if (!rc)
        run_io_add_output(io, out);
    free(dir);
    free(ck);
    free(out);
    return rc;
}

static int exec_export(run_ctx_t *r, const cfg_t *cfg, deft_err_t *err)
{
    return export_with_config(cfg, err);
}

static int after_export(run_ctx_t *r, run_stage_io_t *io, deft_err_t *err)
{
    char *out = path_in(r->dir, "export");
    run_io_add_output(io, out);
    free(out);
    return DEFT_OK;
}

static int exec_generate(run_ctx_t *r, const cfg_t *cfg, deft_err_t *err)
{
    int ndata = cfg_data_len(cfg);
    const char **data = xmalloc((size_t)(ndata + 1) * sizeof *data);
    for (int i = 0; i < ndata; i++)
        data[i] = cfg_data_at(cfg, i)->path;
    char *after = path_in(r->dir, "export"), *sel = path_in(r->dir, "selected.jsonl");
    char *out = path_in(r->dir, "generations.jsonl");
    run_gen_opts_t o = {
        .model_before = r->start,
        .model_after = after,
        .tokenizer = cfg_str(cfg, "tokenizer"),
        .data = data,
        .ndata = ndata,
        .selected = sel,
        .n_prompts = (int)cfg_int(cfg, "generate"),
        .max_prompt_tokens = (int)cfg_int(cfg, "generate_prompt_tokens"),
        .max_new_tokens = (int)cfg_int(cfg, "generate_tokens"),
        .out = out,
    };
    int rc = o.n_prompts > 0 ? run_generate(&o, err) : DEFT_OK;
    free(data);
    free(after);
    free(sel);
    free(out);
    return rc;
}

static int after_generate(run_ctx_t *r, run_stage_io_t *io, deft_err_t *err)
{
    char *out = path_in(r->dir, "generations.jsonl");
    if (cfg_int(r->cfg, "generate") > 0)
        run_io_add_output(io, out);
    free(out);
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// one step: parse its section, skip or run it, record it

static void add_inputs(const step_t *s, const cfg_t *cfg, run_stage_io_t *io)
{
    for (int i = 0; s->reads_data && i < cfg_data_len(cfg); i++)
        run_io_add_input(io, cfg_data_at(cfg, i)->path);
    for (int i = 0; s->inputs[i]; i++)
        run_io_add_input(io, s->inputs[i]);
}

static int parse_section(const run_ctx_t *r, const step_t *s, cfg_t **cfg, deft_err_t *err)
{
    const char *argv[24] = {s->section, "-c", r->file};
    int argc = 3;
    for (int i = 0; s->flags[i]; i++)
        argv[argc++] = s->flags[i];
    return cfg_parse(cfg, s->section, argc, (char **)argv, err);
}

static int run_step(run_ctx_t *r, const step_t *s, deft_err_t *err)
{
    cfg_t *cfg = NULL;
    run_stage_io_t io = {.stage = s->name};
    int rc = parse_section(r, s, &cfg, err);
    if (rc) {
        cfg_free(cfg);
        return rc;
    }
    strbuf_t text = {0};
    cfg_dump(cfg, &text);
    io.config_text = text.data;
    add_inputs(s, cfg, &io);
    int me = comm_rank(r->comm);
    bool current = false, same_start = false;
    char why[512] = "";
    if (me == 0 && !r->redo)
        rc = run_stage_current(r->dir, &io, &current, why, sizeof why, err);
    if (me == 0 && r->redo)
        snprintf(why, sizeof why, "%s", !run_stage_recorded(r->dir, s->name) ? "not done yet"
                 : r->ran.len ? "an earlier stage was redone" : "--force");
    int arc = run_agree(r->comm, &current, &rc, err);
    if (arc || rc || current) {
        if (!arc && !rc && current) {
            log_info("== %s: skipped, unchanged since its last run", s->name);
            sb_printf(&r->skipped, "%s%s", r->skipped.len ? " " : "", s->name);
        }
        run_io_free(&io);
        cfg_free(cfg);
        return arc ? arc : rc;
    }
    log_info("== %s: running (%s)", s->name, why);
    if (me == 0) {
        rc = run_stage_begin(r->dir, &io, &same_start, err);
        if (!rc && s->before)
            rc = s->before(r, same_start, err);
    }
    if (!(arc = run_agree(r->comm, &same_start, &rc, err)) && !rc) {
        if (!s->rank0_only)
            rc = s->exec(r, cfg, err);
        else if (me == 0)
            rc = s->exec(r, cfg, err);
        if (s->rank0_only)
            arc = run_agree(r->comm, &same_start, &rc, err);
    }
    if (!arc && !rc && !r->stop) {
        for (int i = 0; s->outputs[i]; i++)
            run_io_add_output(&io, s->outputs[i]);
        if (me == 0 && s->after)
            rc = s->after(r, &io, err);
        if (me == 0 && !rc)
            rc = run_stage_finish(r->dir, &io, err);
        arc = run_agree(r->comm, &same_start, &rc, err);
    }
    if (!arc && !rc && !r->stop) {
        r->redo = true;
        sb_printf(&r->ran, "%s%s", r->ran.len ? " " : "", s->name);
    }
    run_io_free(&io);
    cfg_free(cfg);
    return arc ? arc : rc;
}

// ----------------------------------------------------------------------------
// the run

/* Stages of the whole pipeline: all but sft, sft too with sft_first. */
static bool in_pipeline(const cfg_t *cfg, const char *stage)
{
    return strcmp(stage, "sft") || cfg_bool(cfg, "sft_first");
}

static bool wanted(const cfg_t *cfg, const char *stage)
{
    int n = cfg_list_len(cfg, "stages");
    if (!cfg_is_set(cfg, "stages") || n == 0)
        return in_pipeline(cfg, stage);
    for (int i = 0; i < n; i++)
        if (!strcmp(cfg_list_at(cfg, "stages", i), stage))
            return true;
    return false;
}

static bool listed(const strbuf_t *list, const char *stage)
{
    char pad[64];
    snprintf(pad, sizeof pad, " %s ", stage);
    strbuf_t sb = {0};
    sb_printf(&sb, " %s ", list->data ? list->data : "");
    bool found = strstr(sb.data, pad) != NULL;
    sb_free(&sb);
    return found;
}

/* A pipeline stage that `stages` leaves out: whether its outputs still
 * match their inputs, for the summary. Once a stage ran or is out of date,
 * every later one is out of date too (it would be redone). Rank 0. */
static void note_left_out(run_ctx_t *r, const step_t *s)
{
    if (comm_rank(r->comm) != 0 || !in_pipeline(r->cfg, s->name))
        return;
    bool current = false;
    char why[512];
    snprintf(why, sizeof why, "%s", r->redo ? "an earlier stage was redone"
                                            : "an earlier stage is out of date");
    if (!r->redo && !r->behind.len) {
        cfg_t *cfg = NULL;
        run_stage_io_t io = {.stage = s->name};
        deft_err_t ignored;
        if (parse_section(r, s, &cfg, &ignored) == DEFT_OK) {
            strbuf_t text = {0};
            cfg_dump(cfg, &text);
            io.config_text = text.data;
            add_inputs(s, cfg, &io);
            if (run_stage_current(r->dir, &io, &current, why, sizeof why, &ignored))
                current = false;
        }
        run_io_free(&io);
        cfg_free(cfg);
    }
    strbuf_t *list = current ? &r->skipped : &r->behind;
    sb_printf(list, "%s%s", list->len ? " " : "", s->name);
    if (current)
        log_info("== %s: not in `stages`, unchanged since its last run", s->name);
    else
        log_info("== %s: not in `stages`, out of date (%s)", s->name, why);
}

/* The stage if `stages` wants it, else a note of whether it is behind. */
static int take_step(run_ctx_t *r, const step_t *s, deft_err_t *err)
{
    if (wanted(r->cfg, s->name))
        return run_step(r, s, err);
    note_left_out(r, s);
    return DEFT_OK;
}

static int check_stages(const cfg_t *cfg, deft_err_t *err)
{
    for (int i = 0; i < cfg_list_len(cfg, "stages"); i++) {
        const char *s = cfg_list_at(cfg, "stages", i);
        char pad[64];
        snprintf(pad, sizeof pad, " %s ", s);
        if (!strstr(" " STAGE_NAMES " ", pad))
            return deft_fail(err, DEFT_ERR_USAGE, "run: stages: unknown stage '%s' (known: "
                             STAGE_NAMES ")", s);
    }
    return DEFT_OK;
}

/* Every data file opens for reading, before the first stage: a typo in the
 * config fails in a second, not after the stages before its first reader. */
static int check_data(const cfg_t *cfg, deft_err_t *err)
{
    for (int i = 0; i < cfg_data_len(cfg); i++) {
        const char *path = cfg_data_at(cfg, i)->path;
        FILE *f = fopen(path, "r");
        if (!f)
            return deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s (data, set at %s)", path,
                             strerror(errno), cfg_origin(cfg, "data"));
        fclose(f);
    }
    return DEFT_OK;
}

static int run_steps(run_ctx_t *r, deft_err_t *err)
{
    const char *d = r->dir;
    char *sft = path_in(d, "sft"), *sft_model = path_in(sft, "model");
    char *qd = path_in(d, "qdiff.h5"), *sc = path_in(d, "scores.h5");
    char *sel = path_in(d, "selected.jsonl"), *exp = path_in(d, "export");
    char *rep = path_in(d, "selected.report.json");
    const char *tok = tokenizer_of(r);
    int rc = DEFT_OK;
    {
        step_t s = {"sft", "train", {"--method", "sft", "--omega", "0", "--run-dir", sft,
                                     "--model", r->start, "--resume", "auto", NULL},
                    {r->start, tok, NULL}, .reads_data = true, .before = before_sft,
                    .exec = exec_train, .after = after_sft};
        rc = take_step(r, &s, err);
    }
    if (cfg_bool(r->cfg, "sft_first")) {
        free(r->start);
        r->start = xstrdup(sft_model);
    }
    if (!rc && !r->stop) {
        step_t s = {"qdiff", "qdiff", {"--out", qd, "--tokenizer", tok, NULL}, {tok, NULL},
                    {qd, NULL}, .reads_data = true, .exec = exec_qdiff};
        rc = take_step(r, &s, err);
    }
    if (!rc && !r->stop) {
        step_t s = {"score", "score", {"--qdiff", qd, "--out", sc, "--model", r->start,
                                       "--tokenizer", tok, NULL},
                    {qd, r->start, tok, NULL}, {sc, NULL}, .reads_data = true,
                    .exec = exec_score};
        rc = take_step(r, &s, err);
    }
    if (!rc && !r->stop) {
        step_t s = {"select", "select", {"--scores", sc, "--out", sel, NULL}, {sc, NULL},
                    {sel, rep, NULL}, .reads_data = true, .exec = exec_select};
        rc = take_step(r, &s, err);
    }
    if (!rc && !r->stop) {
        step_t s = {"train", "train", {"--data", sel, "--qdiff", qd, "--model", r->start,
                                       "--run-dir", d, "--resume", "auto", NULL},
                    {sel, qd, r->start, tok, NULL}, .before = before_train,
                    .exec = exec_train, .after = after_train};
        rc = take_step(r, &s, err);
    }
    char *ck = NULL;
    if (!rc && !r->stop) {
        bool want = wanted(r->cfg, "export");
        int arc = DEFT_OK;
        if (want) {
            if (comm_rank(r->comm) == 0)
                rc = newest_checkpoint(d, &ck, err);
            bool unused = false;
            arc = run_agree(r->comm, &unused, &rc, err);
        } else if (comm_rank(r->comm) == 0) {
            deft_err_t ignored;  /* no checkpoint: export is simply out of date */
            char *ckdir = path_in(d, "checkpoints");
            checkpoint_find_latest(ckdir, false, &ck, &ignored);
            free(ckdir);
        }
        if (!arc && !rc) {
            step_t s = {"export", "export", {"--checkpoint", ck ? ck : "", "--out", exp,
                                             "--model", r->start, NULL},
                        {ck ? ck : "", r->start, NULL}, .rank0_only = true,
                        .exec = exec_export, .after = after_export};
            rc = take_step(r, &s, err);
        }
        rc = arc ? arc : rc;
    }
    if (!rc && !r->stop) {
        step_t s = {"generate", "run", {NULL}, {r->start, exp, sel, tok, NULL},
                    .reads_data = true, .rank0_only = true, .exec = exec_generate,
                    .after = after_generate};
        rc = take_step(r, &s, err);
    }
    free(ck);
    free(sft);
    free(sft_model);
    free(qd);
    free(sc);
    free(sel);
    free(rep);
    free(exp);
    return rc;
}

static void print_summary(run_ctx_t *r, double t0)
{
    char *qd = path_in(r->dir, "qdiff.h5"), *rep = path_in(r->dir, "selected.report.json");
    char *metrics = path_in(r->dir, "metrics.jsonl"), *plots = path_in(r->dir, "plots");
    char *exp = path_in(r->dir, "export"), *gen = path_in(r->dir, "generations.jsonl");
    char *md = path_in(r->dir, "summary.md"), *ck = NULL;
    deft_err_t err;
    if (!listed(&r->behind, "train"))
        newest_checkpoint(r->dir, &ck, &err);
    int ndata = cfg_data_len(r->cfg);
    const char **data = xmalloc((size_t)(ndata + 1) * sizeof *data);
    for (int i = 0; i < ndata; i++)
        data[i] = cfg_data_at(r->cfg, i)->path;
    run_summary_opts_t o = {
        .run_dir = r->dir, .data = data, .ndata = ndata,
        .tokenizer = tokenizer_of(r), .start_model = r->start,
        /* the outputs of stages left out of date are stale: not shown */
        .qdiff = access(qd, R_OK) || listed(&r->behind, "qdiff") ? NULL : qd,
        .select_report = access(rep, R_OK) || listed(&r->behind, "select") ? NULL : rep,
        .metrics = access(metrics, R_OK) || listed(&r->behind, "train") ? NULL : metrics,
        .plots = access(plots, R_OK) || listed(&r->behind, "train") ? NULL : plots,
        .checkpoint = ck,
        .export_dir = access(exp, R_OK) || listed(&r->behind, "export") ? NULL : exp,
        .generations = access(gen, R_OK) || listed(&r->behind, "generate") ? NULL : gen,
        .skipped = r->skipped.data, .ran = r->ran.data, .behind = r->behind.data,
        .seconds = wall_seconds() - t0,
    };
    strbuf_t sb = {0};
    run_summary(&o, &sb, &err);
    /* line by line: the log has a line length limit, and run.log gets them too */
    for (char *line = sb.data, *nl; line && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl)
            nl = line + strlen(line) - 1;
        log_info("%.*s", (int)(nl - line), line);
    }
    FILE *f = fopen(md, "w");
    if (!f || fwrite(sb.data, 1, sb.len, f) != sb.len || fclose(f))
        log_warn("run: cannot write %s: %s", md, strerror(errno));
    else
        log_info("(also in %s)", md);
    sb_free(&sb);
    free(data);
    free(qd), free(rep), free(metrics), free(plots), free(exp), free(gen), free(md), free(ck);
}

static int run_with_config(comm_t *comm, const cfg_t *cfg, const char *file, deft_err_t *err)
{
    if (!cfg_str(cfg, "model"))
        return deft_fail(err, DEFT_ERR_USAGE, "run: no starting model: set `model:` in %s "
                         "(a Hugging Face folder)", file);
    int rc = check_stages(cfg, err);
    if (rc == DEFT_OK && comm_rank(comm) == 0)
        rc = check_data(cfg, err);
    bool unused = false;
    int arc = run_agree(comm, &unused, &rc, err);
    if (arc || rc)
        return arc ? arc : rc;
    run_ctx_t r = {.comm = comm, .cfg = cfg, .file = file, .dir = cfg_str(cfg, "run_dir"),
                   .start = xstrdup(cfg_str(cfg, "model")), .redo = cfg_bool(cfg, "force")};
    double t0 = wall_seconds();
    FILE *tee = NULL;
    if (comm_rank(comm) == 0) {
        rc = export_make_dir(r.dir, err);
        char *log = path_in(r.dir, "run.log");
        if (!rc && !(tee = fopen(log, "a")))
            rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", log, strerror(errno));
        free(log);
        if (tee)
            log_tee(tee);
    }
    arc = run_agree(comm, &unused, &rc, err);
    if (!arc && !rc) {
        log_info("run: %s -> %s, %d rank%s", file, r.dir, comm_size(comm),
                 comm_size(comm) == 1 ? "" : "s");
        rc = run_steps(&r, err);
    }
    if (!arc && !rc && !r.stop && comm_rank(comm) == 0)
        print_summary(&r, t0);
    if (tee) {
        log_tee(NULL);
        fclose(tee);
    }
    sb_free(&r.ran);
    sb_free(&r.skipped);
    sb_free(&r.behind);
    free(r.start);
    return arc ? arc : rc;
}

int cmd_run(int argc, char **argv)
{
    deft_err_t err = {0};
    cfg_t *cfg = NULL;
    int rc = comm_init(&argc, &argv, &err);
    if (rc) {
        fprintf(stderr, "deft run: %s\n", cli_message("run", err.msg));
        return deft_exit_status(rc);
    }
    comm_t *comm = comm_world();
    /* `deft run CONFIG.yaml [--key value ...]`: the file is the -c of every stage */
    char **args = xmalloc((size_t)(argc + 2) * sizeof *args);
    int n = 0;
    args[n++] = argv[0];
    if (argc > 1 && argv[1][0] != '-') {
        args[n++] = "-c";
        args[n++] = argv[1];
    }
    for (int i = n == 3 ? 2 : 1; i < argc; i++)
        args[n++] = argv[i];
    rc = cfg_parse(&cfg, "run", n, args, &err);
    if (rc == DEFT_OK && !cfg_file(cfg))
        rc = deft_fail(&err, DEFT_ERR_USAGE, "run: give the config file: deft run "
                       "CONFIG.yaml");
    if (rc == DEFT_OK) {
        if (comm_rank(comm) == 0)
            cfg_print_table(cfg, stderr);
        rc = run_with_config(comm, cfg, cfg_file(cfg), &err);
    }
    if (rc == DEFT_ERR_MPI)
        comm_abort(comm, deft_exit_status(rc), "deft run: %s", cli_message("run", err.msg));
    if (rc && rc != DEFT_HELP && err.msg[0] && comm_rank(comm) == 0)
        log_error("deft run: %s", cli_message("run", err.msg));
    else if (rc && rc != DEFT_HELP && err.msg[0] && rc != DEFT_ERR_USAGE)
        log_error("deft run: %s", cli_message("run", err.msg));
    free(args);
    cfg_free(cfg);
    comm_finalize();
    return deft_exit_status(rc);
}
