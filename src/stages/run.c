/* The run directory of `deft run`: stage records and skip decisions,
 * generations of held-out prompts before and after training, and the
 * summary. The order of the stages is the CLI's (src/cli/cmd_run.c). */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/records.h"
#include "model/llama.h"
#include "stages/export.h"
#include "stages/plot.h"
#include "stages/qdiff.h"
#include "stages/run.h"
#include "tok/tokenizer.h"
#include "util/log.h"
#include "util/sha256.h"

#ifndef DEFT_VERSION
#define DEFT_VERSION "0.1.0"
#endif

// ----------------------------------------------------------------------------
// stage inputs and outputs

static void push_path(char ***list, int *n, const char *path)
{
    *list = xrealloc(*list, (size_t)(*n + 1) * sizeof **list);
    (*list)[(*n)++] = xstrdup(path);
}

void run_io_add_input(run_stage_io_t *io, const char *path)
{
    push_path(&io->inputs, &io->n_inputs, path);
    io->in_sum = xrealloc(io->in_sum, (size_t)io->n_inputs * sizeof *io->in_sum);
    io->in_sum[io->n_inputs - 1] = NULL;
}

void run_io_add_output(run_stage_io_t *io, const char *path)
{
    push_path(&io->outputs, &io->n_outputs, path);
}

void run_io_free(run_stage_io_t *io)
{
    for (int i = 0; i < io->n_inputs; i++) {
        free(io->inputs[i]);
        free(io->in_sum[i]);
    }
    for (int i = 0; i < io->n_outputs; i++)
        free(io->outputs[i]);
    free(io->inputs);
    free(io->in_sum);
    free(io->outputs);
    free(io->config_text);
    *io = (run_stage_io_t){0};
}

/* Folder contents into the hash: "name\0" + the file's own digest, for every
 * regular file in name order, recursing into folders ("name/"). */
static int hash_dir(sha256_t *h, const char *dir, const char *rel, deft_err_t *err)
{
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    int rc = DEFT_OK;
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        if (!rc && strcmp(name, ".") && strcmp(name, "..")) {
            strbuf_t p = {0}, r = {0};
            sb_printf(&p, "%s/%s", dir, name);
            sb_printf(&r, "%s%s", rel, name);
            struct stat st;
            if (stat(p.data, &st)) {
                rc = deft_fail(err, DEFT_ERR_IO, "%s: %s", p.data, strerror(errno));
            } else if (S_ISDIR(st.st_mode)) {
                sb_puts(&r, "/");
                sha256_update(h, r.data, r.len + 1);
                rc = hash_dir(h, p.data, r.data, err);
            } else if (S_ISREG(st.st_mode)) {
                char hex[65];
                rc = sha256_file(p.data, hex, err);
                sha256_update(h, r.data, r.len + 1);
                sha256_update(h, hex, 64);
            }
            sb_free(&p);
            sb_free(&r);
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}

int run_path_checksum(const char *path, char hex[65], deft_err_t *err)
{
    struct stat st;
    if (stat(path, &st))
        return deft_fail(err, DEFT_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return sha256_file(path, hex, err);
    sha256_t h;
    sha256_init(&h);
    int rc = hash_dir(&h, path, "", err);
    uint8_t d[32];
    sha256_final(&h, d);
    sha256_hex(d, hex);
    return rc;
}

static int input_sum(run_stage_io_t *io, int i, const char **hex, deft_err_t *err)
{
    if (!io->in_sum[i]) {
        char h[65];
        int rc = run_path_checksum(io->inputs[i], h, err);
        if (rc)
            return rc;
        io->in_sum[i] = xstrdup(h);
    }
    *hex = io->in_sum[i];
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// stage records

static char *record_path(const char *run_dir, const char *stage, const char *suffix)
{
    strbuf_t p = {0};
    sb_printf(&p, "%s/stages/%s%s", run_dir, stage, suffix);
    return p.data;
}

/* [{"path", "sha256"}] of paths; outputs are hashed now, inputs once. */
static int sums_json(run_stage_io_t *io, bool inputs, json_t **out, deft_err_t *err)
{
    json_t *a = json_array();
    int n = inputs ? io->n_inputs : io->n_outputs;
    int rc = DEFT_OK;
    for (int i = 0; !rc && i < n; i++) {
        char h[65];
        const char *hex = h;
        if (inputs)
            rc = input_sum(io, i, &hex, err);
        else
            rc = run_path_checksum(io->outputs[i], h, err);
        if (!rc)
            json_array_append_new(a, json_pack("{s:s, s:s}", "path",
                                               inputs ? io->inputs[i] : io->outputs[i],
                                               "sha256", hex));
    }
    if (rc)
        json_decref(a);
    else
        *out = a;
    return rc;
}

static int write_json(const char *path, json_t *root, deft_err_t *err)
{
    strbuf_t tmp = {0};
    sb_printf(&tmp, "%s.tmp", path);
    int rc = DEFT_OK;
    if (json_dump_file(root, tmp.data, JSON_INDENT(2) | JSON_PRESERVE_ORDER) ||
        rename(tmp.data, path))
        rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    sb_free(&tmp);
    return rc;
}

/* Whether rec holds this config and these inputs; why[] says what differs. */
static int record_matches(json_t *rec, run_stage_io_t *io, bool *same, char *why,
                          size_t why_n, deft_err_t *err)
{
    *same = false;
    json_t *in = json_object_get(rec, "inputs");
    if (json_array_size(in) != (size_t)io->n_inputs) {
        snprintf(why, why_n, "inputs changed");
        return DEFT_OK;
    }
    for (int i = 0; i < io->n_inputs; i++) {
        json_t *e = json_array_get(in, (size_t)i);
        const char *p = json_string_value(json_object_get(e, "path"));
        const char *h = json_string_value(json_object_get(e, "sha256"));
        const char *now;
        if (!p || strcmp(p, io->inputs[i])) {
            snprintf(why, why_n, "input %s changed (was %s)", io->inputs[i], p ? p : "?");
            return DEFT_OK;
        }
        if (access(io->inputs[i], F_OK)) {
            snprintf(why, why_n, "input %s is missing", io->inputs[i]);
            return DEFT_OK;
        }
        int rc = input_sum(io, i, &now, err);
        if (rc)
            return rc;
        if (!h || strcmp(h, now)) {
            snprintf(why, why_n, "input %s changed", io->inputs[i]);
            return DEFT_OK;
        }
    }
    /* after the inputs: a stage's config names its input paths, and a changed
     * input is the reason to give */
    const char *cfg = json_string_value(json_object_get(rec, "config"));
    if (!cfg || strcmp(cfg, io->config_text)) {
        snprintf(why, why_n, "config changed");
        return DEFT_OK;
    }
    *same = true;
    return DEFT_OK;
}

int run_stage_current(const char *run_dir, const run_stage_io_t *cio, bool *current,
                      char *why, size_t why_n, deft_err_t *err)
{
    run_stage_io_t *io = (run_stage_io_t *)cio;  /* only its checksum cache changes */
    *current = false;
    char *path = record_path(run_dir, io->stage, ".json");
    json_t *rec = json_load_file(path, 0, NULL);
    int rc = DEFT_OK;
    if (!rec)
        snprintf(why, why_n, "not done yet");
    else
        rc = record_matches(rec, io, current, why, why_n, err);
    json_t *outs = json_object_get(rec, "outputs");
    for (size_t i = 0; !rc && *current && i < json_array_size(outs); i++) {
        json_t *e = json_array_get(outs, i);
        const char *p = json_string_value(json_object_get(e, "path"));
        const char *h = json_string_value(json_object_get(e, "sha256"));
        char now[65];
        deft_err_t ignored;
        if (!p || !h || run_path_checksum(p, now, &ignored)) {
            snprintf(why, why_n, "output %s is missing", p ? p : "?");
            *current = false;
        } else if (strcmp(now, h)) {
            snprintf(why, why_n, "output %s changed since", p);
            *current = false;
        }
    }
    json_decref(rec);
    free(path);
    return rc;
}

bool run_stage_recorded(const char *run_dir, const char *stage)
{
    char *path = record_path(run_dir, stage, ".json");
    bool have = access(path, F_OK) == 0;
    free(path);
    return have;
}

int run_stage_begin(const char *run_dir, const run_stage_io_t *cio, bool *same_start,
                    deft_err_t *err)
{
    run_stage_io_t *io = (run_stage_io_t *)cio;
    strbuf_t dir = {0};
    sb_printf(&dir, "%s/stages", run_dir);
    int rc = export_make_dir(dir.data, err);
    sb_free(&dir);
    char *done = record_path(run_dir, io->stage, ".json");
    char *started = record_path(run_dir, io->stage, ".started.json");
    if (!rc && remove(done) && errno != ENOENT)
        rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot remove: %s", done, strerror(errno));
    if (same_start)
        *same_start = false;
    json_t *old = rc ? NULL : json_load_file(started, 0, NULL);
    if (old && same_start) {
        char why[256];
        rc = record_matches(old, io, same_start, why, sizeof why, err);
    }
    json_decref(old);
    json_t *ins = NULL;
    if (!rc)
        rc = sums_json(io, true, &ins, err);
    if (!rc) {
        json_t *root = json_pack("{s:s, s:s, s:s, s:o}", "stage", io->stage, "deft_version",
                                 DEFT_VERSION, "config", io->config_text, "inputs", ins);
        rc = write_json(started, root, err);
        json_decref(root);
    }
    free(done);
    free(started);
    return rc;
}

int run_stage_finish(const char *run_dir, const run_stage_io_t *cio, deft_err_t *err)
{
    run_stage_io_t *io = (run_stage_io_t *)cio;
    json_t *ins = NULL, *outs = NULL;
    int rc = sums_json(io, true, &ins, err);
    if (!rc)
        rc = sums_json(io, false, &outs, err);
    char *done = record_path(run_dir, io->stage, ".json");
    char *started = record_path(run_dir, io->stage, ".started.json");
    if (!rc) {
        json_t *root = json_pack("{s:s, s:s, s:s, s:o, s:o}", "stage", io->stage,
                                 "deft_version", DEFT_VERSION, "config", io->config_text,
                                 "inputs", ins, "outputs", outs);
        ins = outs = NULL;
        rc = write_json(done, root, err);
        json_decref(root);
    }
    if (!rc)
        remove(started);
    json_decref(ins);
    json_decref(outs);
    free(done);
    free(started);
    return rc;
}

int run_agree(comm_t *comm, bool *flag, int *rc, deft_err_t *err)
{
    int32_t v[2] = {*flag ? 1 : 0, *rc};
    deft_err_t merr;
    if (comm_bcast_bytes(comm, v, sizeof v, 0, &merr)) {
        *err = merr;
        return DEFT_ERR_MPI;
    }
    *flag = v[0] != 0;
    *rc = v[1];
    if (comm_rank(comm) != 0 && *rc)
        err->msg[0] = '\0';  /* rank 0 speaks for the failure */
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// generations

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The lines of a JSONL file, sorted for bsearch: *lines[*n]. */
static int read_lines_sorted(const char *path, char ***lines, size_t *n, deft_err_t *err)
{
    *lines = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, have = 0;
    ssize_t len;
    while ((len = getline(&buf, &cap, f)) >= 0) {
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = '\0';
        if (*n == have) {
            have = have ? 2 * have : 256;
            *lines = xrealloc(*lines, have * sizeof **lines);
        }
        (*lines)[(*n)++] = xstrndup(buf, (size_t)len);
    }
    free(buf);
    fclose(f);
    qsort(*lines, *n, sizeof **lines, cmp_str);
    return DEFT_OK;
}

static void free_lines(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

/* BOS + the last max_tokens prompt tokens. */
static int prompt_ids(const tokenizer_t *tok, const pref_record_t *r, int max_tokens,
                      tok_ids_t *ids, deft_err_t *err)
{
    tok_ids_t p = {0};
    int rc = tok_encode(tok, r->prompt, r->prompt_len, 0, &p, err);
    ids->n = 0;
    if (!rc) {
        if (tok_bos_id(tok) >= 0)
            tok_ids_push(ids, tok_bos_id(tok));
        size_t from = p.n > (size_t)max_tokens ? p.n - (size_t)max_tokens : 0;
        for (size_t i = from; i < p.n; i++)
            tok_ids_push(ids, p.ids[i]);
    }
    tok_ids_free(&p);
    return rc;
}

static int complete(llama_model_t *m, const tokenizer_t *tok, const tok_ids_t *prompt,
                    int max_new, char **text, deft_err_t *err)
{
    int32_t eos = tok_eos_id(tok);
    int32_t *out = xmalloc((size_t)max_new * sizeof *out);
    int n = 0;
    int rc = llama_generate(m, prompt->ids, (int)prompt->n, max_new, 0.0f, 1.0f, 0, &eos,
                            eos >= 0 ? 1 : 0, out, &n, err);
    if (!rc && n > 0 && out[n - 1] == eos)
        n--;  /* the terminator is not text */
    strbuf_t sb = {0};
    sb_puts(&sb, "");
    if (!rc)
        rc = tok_decode(tok, out, (size_t)n, &sb, err);
    free(out);
    *text = sb.data;
    return rc;
}

int run_generate(const run_gen_opts_t *o, deft_err_t *err)
{
    tokenizer_t *tok = NULL;
    llama_model_t before = {0}, after = {0};
    bool have_before = false, have_after = false;
    pref_data_t d = {0};
    char **sel = NULL;
    size_t nsel = 0;
    json_t *lines = json_array();
    data_source_t *src = xcalloc((size_t)o->ndata, sizeof *src);
    for (int i = 0; i < o->ndata; i++)
        src[i] = (data_source_t){o->data[i], NULL, NULL};
    read_opts_t ro = {.rank = 0, .nranks = 1};
    int rc = tok_load(&tok, o->tokenizer ? o->tokenizer : o->model_before, err);
    if (!rc && !(rc = llama_load(&before, o->model_before, backend_cpu(), err)))
        have_before = true;
    if (!rc && !(rc = llama_load(&after, o->model_after, backend_cpu(), err)))
        have_after = true;
    if (!rc)
        rc = read_lines_sorted(o->selected, &sel, &nsel, err);
    if (!rc)
        rc = data_read(&d, src, o->ndata, &ro, err);
    int made = 0;
    for (size_t i = 0; !rc && i < d.n && made < o->n_prompts; i++) {
        const pref_record_t *r = &d.rec[i];
        const char *raw = r->raw;
        if (bsearch(&raw, sel, nsel, sizeof *sel, cmp_str))
            continue;  /* trained on: not a held-out prompt */
        tok_ids_t ids = {0};
        char *t0 = NULL, *t1 = NULL;
        rc = prompt_ids(tok, r, o->max_prompt_tokens, &ids, err);
        if (!rc)
            rc = complete(&before, tok, &ids, o->max_new_tokens, &t0, err);
        if (!rc)
            rc = complete(&after, tok, &ids, o->max_new_tokens, &t1, err);
        if (!rc) {
            char id[64];
            snprintf(id, sizeof id, "%s:%lld", o->data[r->id.file], (long long)r->id.line);
            json_array_append_new(lines, json_pack("{s:s, s:s%, s:s, s:s}", "sample", id,
                                                   "prompt", r->prompt, r->prompt_len,
                                                   "before", t0, "after", t1));
            made++;
        }
        tok_ids_free(&ids);
        free(t0);
        free(t1);
    }
    if (!rc) {
        strbuf_t sb = {0};
        for (size_t i = 0; i < json_array_size(lines); i++) {
            char *s = json_dumps(json_array_get(lines, i), JSON_COMPACT | JSON_PRESERVE_ORDER);
            sb_printf(&sb, "%s\n", s);
            free(s);
        }
        strbuf_t tmp = {0};
        sb_printf(&tmp, "%s.tmp", o->out);
        FILE *f = fopen(tmp.data, "w");
        bool ok = f && fwrite(sb.data ? sb.data : "", 1, sb.len, f) == sb.len;
        ok = f && fclose(f) == 0 && ok;
        if (!ok || rename(tmp.data, o->out))
            rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot write: %s", o->out, strerror(errno));
        sb_free(&tmp);
        sb_free(&sb);
        log_info("generate: %d held-out prompts, greedy, up to %d tokens, before and after "
                 "training -> %s", made, o->max_new_tokens, o->out);
    }
    json_decref(lines);
    free_lines(sel, nsel);
    data_free(&d);
    free(src);
    if (have_before)
        llama_free(&before);
    if (have_after)
        llama_free(&after);
    tok_free(tok);
    return rc;
}

// ----------------------------------------------------------------------------
// summary

static void sb_group(strbuf_t *sb, int64_t v)
{
    char raw[32], out[48];
    snprintf(raw, sizeof raw, "%lld", (long long)(v < 0 ? -v : v));
    size_t n = strlen(raw), j = 0;
    if (v < 0)
        out[j++] = '-';
    for (size_t i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0)
            out[j++] = ',';
        out[j++] = raw[i];
    }
    out[j] = '\0';
    sb_puts(sb, out);
}

/* Text of at most max bytes on one line: newlines shown as "⏎", cut with "…"
 * at a UTF-8 character boundary. */
static void sb_oneline(strbuf_t *sb, const char *s, size_t len, size_t max)
{
    size_t cut = len < max ? len : max;
    while (cut > 0 && cut < len && ((unsigned char)s[cut] & 0xC0) == 0x80)
        cut--;
    for (size_t i = 0; i < cut; i++) {
        if (s[i] == '\n')
            sb_puts(sb, "⏎");
        else if (s[i] != '\r')
            sb_append(sb, &s[i], 1);
    }
    if (cut < len)
        sb_puts(sb, "…");
}

static const char *str_or(const char *s, const char *dflt) { return s ? s : dflt; }

static void summary_data(const run_summary_opts_t *o, strbuf_t *out)
{
    data_source_t *src = xcalloc((size_t)o->ndata, sizeof *src);
    for (int i = 0; i < o->ndata; i++)
        src[i] = (data_source_t){o->data[i], NULL, NULL};
    read_opts_t ro = {.rank = 0, .nranks = 1};
    pref_data_t d = {0};
    deft_err_t err;
    if (data_read(&d, src, o->ndata, &ro, &err) == DEFT_OK) {
        for (int f = 0; f < d.nfiles; f++) {
            const skip_stats_t *s = &d.stats[f];
            sb_printf(out, "- data: `%s`: ", o->data[f]);
            sb_group(out, s->records_read);
            sb_puts(out, " records, ");
            sb_group(out, s->records_used);
            sb_puts(out, " used, ");
            sb_group(out, s->records_read - s->records_used);
            sb_puts(out, " skipped");
            const char *sep = " (";
            for (int r = 0; r < SKIP_NREASONS; r++)
                if (s->count[r]) {
                    sb_printf(out, "%s%s %lld", sep, skip_reason_name((skip_reason_t)r),
                              (long long)s->count[r]);
                    sep = ", ";
                }
            sb_puts(out, *sep == ',' ? ")\n" : "\n");
        }
    }
    data_free(&d);
    free(src);
}

static int cmp_desc(const void *a, const void *b, const double *q)
{
    double x = q[*(const int32_t *)a], y = q[*(const int32_t *)b];
    return (x < y) - (x > y);
}

static const double *g_q;  /* qsort has no context argument in C11 */
static int cmp_q(const void *a, const void *b) { return cmp_desc(a, b, g_q); }

static void summary_qdiff(const run_summary_opts_t *o, strbuf_t *out)
{
    double *q = NULL;
    int32_t V = 0;
    tokenizer_t *tok = NULL;
    deft_err_t err;
    if (!o->qdiff || qdiff_read(o->qdiff, NULL, &q, &V, &err) ||
        tok_load(&tok, o->tokenizer ? o->tokenizer : o->start_model, &err)) {
        free(q);
        return;
    }
    int32_t *idx = xmalloc((size_t)V * sizeof *idx);
    for (int32_t v = 0; v < V; v++)
        idx[v] = v;
    g_q = q;
    qsort(idx, (size_t)V, sizeof *idx, cmp_q);
    enum { TOP = 8 };
    for (int side = 0; side < 2; side++) {
        sb_puts(out, side ? "- Q_diff most negative (rejected): " :
                            "- Q_diff most positive (chosen): ");
        for (int j = 0; j < TOP && j < V; j++) {
            int32_t v = side ? idx[V - 1 - j] : idx[j];
            size_t len = 0;
            const char *piece = tok_piece(tok, v, &len);
            sb_puts(out, j ? ", `" : "`");
            sb_oneline(out, piece ? piece : "?", piece ? len : 1, 24);
            sb_printf(out, "` %+.2e", q[v]);
        }
        sb_puts(out, "\n");
    }
    free(idx);
    free(q);
    tok_free(tok);
}

static void summary_select(const run_summary_opts_t *o, strbuf_t *out)
{
    json_t *root = o->select_report ? json_load_file(o->select_report, 0, NULL) : NULL;
    json_t *subsets = json_object_get(root, "subsets");
    if (!root)
        return;
    sb_printf(out, "- selected (lowest %s, fraction %s): ",
              str_or(json_string_value(json_object_get(root, "value")), "?"),
              str_or(json_string_value(json_object_get(root, "fraction")), "?"));
    for (size_t i = 0; i < json_array_size(subsets); i++) {
        json_t *s = json_array_get(subsets, i);
        json_t *thr = json_object_get(json_object_get(s, "threshold"), "value");
        sb_printf(out, "%s%s k = %lld of n = %lld", i ? "; " : "",
                  str_or(json_string_value(json_object_get(s, "name")), "?"),
                  (long long)json_integer_value(json_object_get(s, "k")),
                  (long long)json_integer_value(json_object_get(s, "scored")));
        if (json_is_number(thr))
            sb_printf(out, ", threshold %.4g", json_number_value(thr));
    }
    sb_puts(out, "\n");
    json_decref(root);
}

static void first_last(strbuf_t *out, const plot_metrics_t *m, const char *key,
                       const char *label)
{
    for (int e = 0; e < 2; e++) {
        const plot_series_t *s = plot_metrics_find(m, key, e ? "eval" : "train");
        if (!s || s->n == 0)
            continue;
        sb_printf(out, "- %s (%s): %.4g -> %.4g (step %.0f -> %.0f)\n", label,
                  e ? "eval" : "train", s->value[0], s->value[s->n - 1], s->step[0],
                  s->step[s->n - 1]);
    }
}

static void summary_train(const run_summary_opts_t *o, strbuf_t *out)
{
    plot_metrics_t m;
    deft_err_t err;
    if (!o->metrics || plot_metrics_read(o->metrics, &m, &err))
        return;
    first_last(out, &m, "loss", "loss");
    first_last(out, &m, "r_q", "R_Q");
    first_last(out, &m, "acc", "reward accuracy");
    plot_metrics_free(&m);
    static const char *const png[] = {"loss.png", "accuracy.png", "rewards.png", "r_q.png"};
    const char *sep = "- plots: ";
    for (size_t i = 0; o->plots && i < DEFT_ARRAY_LEN(png); i++) {
        strbuf_t p = {0};
        sb_printf(&p, "%s/%s", o->plots, png[i]);
        if (access(p.data, R_OK) == 0) {
            sb_printf(out, "%s`%s`", sep, p.data);
            sep = ", ";
        }
        sb_free(&p);
    }
    if (*sep == ',')
        sb_puts(out, "\n");
}

static void summary_generations(const run_summary_opts_t *o, strbuf_t *out)
{
    FILE *f = o->generations ? fopen(o->generations, "r") : NULL;
    if (!f)
        return;
    sb_puts(out, "\n## Generations (greedy, held-out prompts)\n\n");
    char *buf = NULL;
    size_t cap = 0;
    while (getline(&buf, &cap, f) >= 0) {
        json_t *j = json_loads(buf, 0, NULL);
        const char *p = json_string_value(json_object_get(j, "prompt"));
        const char *b = json_string_value(json_object_get(j, "before"));
        const char *a = json_string_value(json_object_get(j, "after"));
        if (p && b && a) {
            /* the end of the prompt is what the model answers */
            size_t pl = strlen(p), keep = 120;
            const char *tail = pl > keep ? p + pl - keep : p;
            while (tail > p && (*tail & 0xC0) == 0x80)
                tail++;
            sb_printf(out, "- prompt: %s", tail > p ? "…" : "");
            sb_oneline(out, tail, strlen(tail), keep + 4);
            sb_puts(out, "\n  - before: ");
            sb_oneline(out, b, strlen(b), 200);
            sb_puts(out, "\n  - after:  ");
            sb_oneline(out, a, strlen(a), 200);
            sb_puts(out, "\n");
        }
        json_decref(j);
    }
    free(buf);
    fclose(f);
}

int run_summary(const run_summary_opts_t *o, strbuf_t *out, deft_err_t *err)
{
    char dur[32];
    format_duration(dur, sizeof dur, o->seconds);
    sb_printf(out, "# deft run: %s\n\n", o->run_dir);
    sb_printf(out, "- stages run: %s; skipped (unchanged): %s; ",
              o->ran && *o->ran ? o->ran : "none", o->skipped && *o->skipped ? o->skipped
                                                                             : "none");
    if (o->behind && *o->behind)
        sb_printf(out, "out of date (not run): %s; ", o->behind);
    sb_printf(out, "time %s\n", dur);
    summary_data(o, out);
    summary_qdiff(o, out);
    summary_select(o, out);
    summary_train(o, out);
    if (o->checkpoint)
        sb_printf(out, "- checkpoint: `%s`\n", o->checkpoint);
    if (o->export_dir)
        sb_printf(out, "- exported model: `%s` (from `%s`)\n", o->export_dir, o->start_model);
    summary_generations(o, out);
    return DEFT_OK;
}
