/* Configuration values for one command: defaults from the key tables of
 * keys.c, then a YAML file (libyaml's document API), then command-line
 * flags. Every value remembers where it came from; every section of the
 * file is validated, not only the command's own. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config/config.h"
#include "config/config_text.h"

typedef struct {
    bool set;                 /* has a value; unset keys read as NULL/0/false */
    bool from_flag;           /* a list flag has replaced the file's list; more flags append */
    char *origin;             /* "run.yaml:12:7" or "--delta"; NULL: "default" */
    char *str;                /* CFG_STRING, CFG_ENUM */
    int64_t i;                /* CFG_INT */
    double f;                 /* CFG_FLOAT */
    bool b;                   /* CFG_BOOL */
    char **items;             /* CFG_LIST: [nitems] */
    int nitems;
    cfg_data_file_t *files;   /* CFG_DATA: [nfiles], strings owned */
    int nfiles;
} cfg_value_t;

struct cfg {
    const cfg_section_t *section;
    cfg_value_t *shared;      /* [cfg_shared.nkeys], same order as the table */
    cfg_value_t *own;         /* [section->nkeys] */
    char *file;               /* the -c file as given, or NULL */
    char **positional;        /* [npositional] */
    int npositional;
};

static const char *data_formats = "auto|hh|pro|pair";

// ----------------------------------------------------------------------------
// values

static void value_clear(cfg_value_t *v)
{
    free(v->str);
    for (int j = 0; j < v->nitems; j++)
        free(v->items[j]);
    free(v->items);
    for (int j = 0; j < v->nfiles; j++) {
        free((char *)v->files[j].path);
        free((char *)v->files[j].subset);
        free((char *)v->files[j].format);
    }
    free(v->files);
    bool from_flag = v->from_flag;
    char *origin = v->origin;
    *v = (cfg_value_t){.from_flag = from_flag, .origin = origin};
}

static void value_free(cfg_value_t *v)
{
    value_clear(v);
    free(v->origin);
    v->origin = NULL;
}

static void values_free(cfg_value_t *vals, int n)
{
    for (int j = 0; vals && j < n; j++)
        value_free(&vals[j]);
    free(vals);
}

static void value_set_origin(cfg_value_t *v, const char *origin)
{
    free(v->origin);
    v->origin = xstrdup(origin);
}

static void value_push_item(cfg_value_t *v, const char *s)
{
    v->items = xrealloc(v->items, (size_t)(v->nitems + 1) * sizeof *v->items);
    v->items[v->nitems++] = xstrdup(s);
    v->set = true;
}

static void value_push_file(cfg_value_t *v, const char *path, const char *subset,
                            const char *format)
{
    v->files = xrealloc(v->files, (size_t)(v->nfiles + 1) * sizeof *v->files);
    v->files[v->nfiles++] = (cfg_data_file_t){
        .path = xstrdup(path),
        .subset = subset ? xstrdup(subset) : NULL,
        .format = xstrdup(format ? format : "auto"),
    };
    v->set = true;
}

static int key_index(const cfg_section_t *sec, const char *name)
{
    for (int j = 0; j < sec->nkeys; j++)
        if (!strcmp(sec->keys[j].name, name))
            return j;
    return -1;
}

// ----------------------------------------------------------------------------
// scalar text -> typed value

static bool parse_int(const char *s, int64_t *out, bool *overflow)
{
    *overflow = false;
    const char *p = s + (*s == '+' || *s == '-');
    if (!*p)
        return false;
    for (; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    errno = 0;
    long long x = strtoll(s, NULL, 10);
    *overflow = errno == ERANGE;
    *out = x;
    return !*overflow;
}

/* YAML 1.2 core-schema decimal floats: 1, -2.5, .5, 1e-3, 5.0e-7. */
static bool parse_float(const char *s, double *out, bool *overflow)
{
    *overflow = false;
    const char *p = s + (*s == '+' || *s == '-');
    int digits = 0;
    while (isdigit((unsigned char)*p))
        p++, digits++;
    if (*p == '.')
        for (p++; isdigit((unsigned char)*p); p++)
            digits++;
    if (!digits)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        p += *p == '+' || *p == '-';
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p)
        return false;
    *out = strtod(s, NULL);
    *overflow = !isfinite(*out);
    return !*overflow;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"true", "True", "TRUE"}, *no[] = {"false", "False", "FALSE"};
    for (size_t j = 0; j < DEFT_ARRAY_LEN(yes); j++) {
        if (!strcmp(s, yes[j]))
            return *out = true, true;
        if (!strcmp(s, no[j]))
            return *out = false, true;
    }
    return false;
}

static bool enum_has(const char *choices, const char *s)
{
    size_t n = strlen(s);
    for (const char *c = choices; c; c = strchr(c, '|'), c = c ? c + 1 : NULL)
        if (!strncmp(c, s, n) && (c[n] == '|' || c[n] == '\0') && n > 0)
            return true;
    return false;
}

static int fail_expected(deft_err_t *err, const cfg_key_t *k, const char *what, bool range,
                         const char *got)
{
    strbuf_t exp = {0};
    cfg_describe_expected(k, range, &exp);
    deft_fail(err, DEFT_ERR_USAGE, "%s: expected %s, got '%s'", what, exp.data, got);
    sb_free(&exp);
    return DEFT_ERR_USAGE;
}

static bool outside_range(const cfg_key_t *k, double x)
{
    if (!cfg_key_has_range(k))
        return false;
    return x > k->max || (k->min_open ? x <= k->min : x < k->min);
}

/* Sets a scalar-typed key (string, int, float, bool, enum) from its text.
 * what: the error prefix, "run.yaml:4:7: seed" or "--seed". */
static int value_set_scalar(cfg_value_t *v, const cfg_key_t *k, const char *text,
                            const char *what, deft_err_t *err)
{
    cfg_value_t nv = {0};
    bool overflow = false;
    switch (k->type) {
    case CFG_STRING:
        nv.str = xstrdup(text);
        break;
    case CFG_ENUM:
        if (!enum_has(k->choices, text))
            return fail_expected(err, k, what, false, text);
        nv.str = xstrdup(text);
        break;
    case CFG_INT:
        if (!parse_int(text, &nv.i, &overflow)) {
            if (overflow)
                return deft_fail(err, DEFT_ERR_USAGE,
                                 "%s: expected an integer in the 64-bit range, got '%s'",
                                 what, text);
            return fail_expected(err, k, what, false, text);
        }
        if (outside_range(k, (double)nv.i))
            return fail_expected(err, k, what, true, text);
        break;
    case CFG_FLOAT:
        if (!parse_float(text, &nv.f, &overflow)) {
            if (overflow)
                return deft_fail(err, DEFT_ERR_USAGE,
                                 "%s: expected a finite number, got '%s'", what, text);
            return fail_expected(err, k, what, false, text);
        }
        if (outside_range(k, nv.f))
            return fail_expected(err, k, what, true, text);
        break;
    case CFG_BOOL:
        if (!parse_bool(text, &nv.b))
            return fail_expected(err, k, what, false, text);
        break;
    case CFG_LIST:
    case CFG_DATA:
        return deft_fail(err, DEFT_ERR_INTERNAL, "%s: a list is not a scalar", what);
    }
    value_clear(v);
    nv.set = true;
    nv.from_flag = v->from_flag;
    nv.origin = v->origin;
    *v = nv;
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// names: suggestions for misspelt keys

/* Optimal string alignment distance: a swap of two letters counts one edit. */
static int edit_distance(const char *a, const char *b)
{
    enum { MAXLEN = 48 };
    size_t n = strlen(a), m = strlen(b);
    if (n >= MAXLEN || m >= MAXLEN)
        return MAXLEN;
    int d[MAXLEN + 1][MAXLEN + 1];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

typedef struct {
    const char *best;
    int dist;
} suggestion_t;

static void suggest_consider(suggestion_t *s, const char *typed, const char *candidate)
{
    int dist = edit_distance(typed, candidate);
    int allowed = strlen(typed) <= 4 ? 1 : 2;
    if (dist <= allowed && (!s->best || dist < s->dist)) {
        s->best = candidate;
        s->dist = dist;
    }
}

static void suggest_in_table(suggestion_t *s, const char *typed, const cfg_section_t *sec)
{
    for (int j = 0; j < sec->nkeys; j++)
        suggest_consider(s, typed, sec->keys[j].name);
}

/* The first section (shared first) that has a key of this name, or NULL. */
static const cfg_section_t *section_owning(const char *name)
{
    if (key_index(&cfg_shared, name) >= 0)
        return &cfg_shared;
    for (int j = 0; j < cfg_nsections(); j++)
        if (key_index(cfg_section_at(j), name) >= 0)
            return cfg_section_at(j);
    return NULL;
}

static void dashed(strbuf_t *out, const char *name)
{
    for (; *name; name++)
        sb_append(out, *name == '_' ? "-" : name, 1);
}

// ----------------------------------------------------------------------------
// YAML file

typedef struct {
    const char *path;
    yaml_document_t *doc;
} yaml_src_t;

static bool node_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

static const char *node_kind(const yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    return node_is_null(n) ? "null" : "a value";
}

static void node_where(strbuf_t *out, const yaml_src_t *src, const yaml_node_t *n)
{
    sb_printf(out, "%s:%zu:%zu", src->path, n->start_mark.line + 1, n->start_mark.column + 1);
}

static yaml_node_t *node_at(const yaml_src_t *src, int index)
{
    return yaml_document_get_node(src->doc, index);
}

/* Error prefix "run.yaml:4:7: qdiff.delta" for a key at node n. */
static void node_what(strbuf_t *out, const yaml_src_t *src, const yaml_node_t *n,
                      const char *prefix, const char *name)
{
    node_where(out, src, n);
    sb_printf(out, ": %s%s%s", prefix ? prefix : "", prefix ? "." : "", name);
}

static int fail_at(deft_err_t *err, const yaml_src_t *src, const yaml_node_t *n,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail_at(deft_err_t *err, const yaml_src_t *src, const yaml_node_t *n,
                   const char *fmt, ...)
{
    char msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return deft_fail(err, DEFT_ERR_USAGE, "%s:%zu:%zu: %s", src->path,
                     n->start_mark.line + 1, n->start_mark.column + 1, msg);
}

/* Every key of a mapping must be a scalar and appear once. */
static int check_mapping_keys(const yaml_src_t *src, const yaml_node_t *map, deft_err_t *err)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(src, p->key);
        if (k->type != YAML_SCALAR_NODE)
            return fail_at(err, src, k, "expected a key name, got %s", node_kind(k));
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k0 = node_at(src, q->key);
            if (k0->type == YAML_SCALAR_NODE &&
                !strcmp((char *)k0->data.scalar.value, (char *)k->data.scalar.value)) {
                char first[64];
                snprintf(first, sizeof first, "line %zu, column %zu",
                         k0->start_mark.line + 1, k0->start_mark.column + 1);
                return fail_at(err, src, k, "%s: key given twice (first at %s)",
                               (char *)k->data.scalar.value, first);
            }
        }
    }
    return DEFT_OK;
}

static int data_entry_from_map(cfg_value_t *v, const yaml_src_t *src, const yaml_node_t *map,
                               const char *what, deft_err_t *err)
{
    int rc = check_mapping_keys(src, map, err);
    if (rc)
        return rc;
    const char *field_names[] = {"path", "subset", "format"};
    const char *fields[3] = {NULL, NULL, NULL};
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(src, p->key), *val = node_at(src, p->value);
        const char *name = (const char *)k->data.scalar.value;
        int f = -1;
        for (int j = 0; j < 3; j++)
            if (!strcmp(name, field_names[j]))
                f = j;
        if (f < 0)
            return fail_at(err, src, k, "%s: unknown field '%s' of a data entry "
                           "(expected path, subset or format)", what, name);
        if (node_is_null(val))
            continue;
        if (val->type != YAML_SCALAR_NODE)
            return fail_at(err, src, val, "%s.%s: expected a string, got %s", what, name,
                           node_kind(val));
        fields[f] = (const char *)val->data.scalar.value;
        if (f == 2 && !enum_has(data_formats, fields[f]))
            return fail_at(err, src, val, "%s.format: expected one of %s, got '%s'", what,
                           data_formats, fields[f]);
    }
    if (!fields[0] || !*fields[0])
        return fail_at(err, src, map, "%s: a data entry needs a path", what);
    value_push_file(v, fields[0], fields[1], fields[2]);
    return DEFT_OK;
}

/* One list item (or a lone scalar standing for a one-item list). */
static int list_item_from_node(cfg_value_t *v, const cfg_key_t *k, const yaml_src_t *src,
                               const yaml_node_t *n, const char *what, deft_err_t *err)
{
    if (k->type == CFG_DATA && n->type == YAML_MAPPING_NODE)
        return data_entry_from_map(v, src, n, what, err);
    if (n->type != YAML_SCALAR_NODE || node_is_null(n) || !*n->data.scalar.value)
        return fail_at(err, src, n, "%s: expected %s, got %s",
                       what, k->type == CFG_DATA ? "a path or {path, subset, format}"
                                                 : "a string",
                       n->type == YAML_SCALAR_NODE && !node_is_null(n) ? "an empty string"
                                                                      : node_kind(n));
    if (k->type == CFG_DATA)
        value_push_file(v, (const char *)n->data.scalar.value, NULL, NULL);
    else
        value_push_item(v, (const char *)n->data.scalar.value);
    return DEFT_OK;
}

/* Sets key k from the value node n of the file. prefix: section name, or NULL
 * for a shared key. */
static int value_from_node(cfg_value_t *v, const cfg_key_t *k, const yaml_src_t *src,
                           const yaml_node_t *n, const char *prefix, deft_err_t *err)
{
    strbuf_t what = {0}, name = {0}, origin = {0};
    node_what(&what, src, n, prefix, k->name);
    sb_printf(&name, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", k->name);
    node_where(&origin, src, n);
    int rc = DEFT_OK;
    bool is_list = k->type == CFG_LIST || k->type == CFG_DATA;
    if (node_is_null(n) && !k->def) {
        // Only a key without a default may be unset: callers of a key with a
        // default rely on it having a value.
        value_clear(v);
    } else if (is_list) {
        value_clear(v);
        v->set = true;
        if (n->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = n->data.sequence.items.start;
                 !rc && it < n->data.sequence.items.top; it++)
                rc = list_item_from_node(v, k, src, node_at(src, *it), name.data, err);
        } else {
            rc = list_item_from_node(v, k, src, n, name.data, err);
        }
    } else if (n->type != YAML_SCALAR_NODE || node_is_null(n)) {
        strbuf_t exp = {0};
        cfg_describe_expected(k, false, &exp);
        rc = deft_fail(err, DEFT_ERR_USAGE, "%s: expected %s, got %s", what.data, exp.data,
                       node_kind(n));
        sb_free(&exp);
    } else {
        rc = value_set_scalar(v, k, (const char *)n->data.scalar.value, what.data, err);
    }
    if (!rc)
        value_set_origin(v, origin.data);
    sb_free(&what);
    sb_free(&name);
    sb_free(&origin);
    return rc;
}

static int fail_unknown_key(deft_err_t *err, const yaml_src_t *src, const yaml_node_t *kn,
                            const cfg_section_t *sec)
{
    const char *name = (const char *)kn->data.scalar.value;
    strbuf_t hint = {0};
    suggestion_t s = {0};
    const cfg_section_t *owner = section_owning(name);
    if (sec) {
        suggest_in_table(&s, name, sec);
    } else {
        suggest_in_table(&s, name, &cfg_shared);
        for (int j = 0; j < cfg_nsections(); j++)
            suggest_consider(&s, name, cfg_section_at(j)->name);
    }
    // A key that exists elsewhere is more likely misplaced than misspelt.
    if (owner == &cfg_shared)
        sb_puts(&hint, "; it is a shared key: put it at the top level");
    else if (owner)
        sb_printf(&hint, "; it is a key of section '%s:'", owner->name);
    else if (s.best)
        sb_printf(&hint, "; did you mean %s?", s.best);
    int rc = sec ? fail_at(err, src, kn, "%s: unknown key in section '%s'%s", name, sec->name,
                           hint.data ? hint.data : "")
                 : fail_at(err, src, kn, "%s: unknown top-level key (neither a shared key "
                           "nor a section)%s", name, hint.data ? hint.data : "");
    sb_free(&hint);
    return rc;
}

/* A section mapping: every key checked against the section's table. */
static int section_from_node(cfg_value_t *vals, const cfg_section_t *sec, const yaml_src_t *src,
                             const yaml_node_t *n, deft_err_t *err)
{
    if (node_is_null(n))
        return DEFT_OK;
    if (n->type != YAML_MAPPING_NODE)
        return fail_at(err, src, n, "%s: expected a mapping of %s keys, got %s", sec->name,
                       sec->name, node_kind(n));
    int rc = check_mapping_keys(src, n, err);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
         !rc && p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = node_at(src, p->key);
        int j = key_index(sec, (const char *)kn->data.scalar.value);
        if (j < 0)
            return fail_unknown_key(err, src, kn, sec);
        rc = value_from_node(&vals[j], &sec->keys[j], src, node_at(src, p->value), sec->name,
                             err);
    }
    return rc;
}

static int document_apply(cfg_t *cfg, const yaml_src_t *src, deft_err_t *err)
{
    yaml_node_t *root = yaml_document_get_root_node(src->doc);
    if (!root || node_is_null(root))
        return DEFT_OK;
    if (root->type != YAML_MAPPING_NODE)
        return fail_at(err, src, root, "expected a mapping of keys at the top level "
                       "(data:, seed:, %s:, ...), got %s", cfg->section->name,
                       node_kind(root));
    int rc = check_mapping_keys(src, root, err);
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
         !rc && p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = node_at(src, p->key), *vn = node_at(src, p->value);
        const char *name = (const char *)kn->data.scalar.value;
        int j = key_index(&cfg_shared, name);
        const cfg_section_t *sec = cfg_find_section(name);
        if (j >= 0) {
            rc = value_from_node(&cfg->shared[j], &cfg_shared.keys[j], src, vn, NULL, err);
        } else if (sec == cfg->section) {
            rc = section_from_node(cfg->own, sec, src, vn, err);
        } else if (sec) {
            // Another command's section: checked now so that a typo there is not
            // found only when that command runs.
            cfg_value_t *scratch = xcalloc((size_t)sec->nkeys, sizeof *scratch);
            rc = section_from_node(scratch, sec, src, vn, err);
            values_free(scratch, sec->nkeys);
        } else {
            rc = fail_unknown_key(err, src, kn, NULL);
        }
    }
    return rc;
}

static int fail_yaml(const yaml_parser_t *p, const char *path, deft_err_t *err)
{
    if (p->error == YAML_MEMORY_ERROR)
        return deft_fail(err, DEFT_ERR_NOMEM, "%s: out of memory reading YAML", path);
    if (p->error == YAML_READER_ERROR)
        return deft_fail(err, DEFT_ERR_USAGE, "%s: byte %zu: invalid YAML input: %s", path,
                         p->problem_offset, p->problem ? p->problem : "unreadable");
    char context[160] = "";
    if (p->context)
        snprintf(context, sizeof context, " (%s at line %zu, column %zu)", p->context,
                 p->context_mark.line + 1, p->context_mark.column + 1);
    return deft_fail(err, DEFT_ERR_USAGE, "%s:%zu:%zu: invalid YAML: %s%s", path,
                     p->problem_mark.line + 1, p->problem_mark.column + 1,
                     p->problem ? p->problem : "syntax error", context);
}

static int file_load(cfg_t *cfg, const char *path, deft_err_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot open config file: %s", path,
                         strerror(errno));
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_src_t src = {path, &doc};
    int rc = DEFT_OK;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return deft_fail(err, DEFT_ERR_NOMEM, "%s: cannot start the YAML parser", path);
    }
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = fail_yaml(&parser, path, err);
    } else {
        rc = document_apply(cfg, &src, err);
        yaml_document_delete(&doc);
        // One document per file: a second one would be silently ignored otherwise.
        if (!rc && !yaml_parser_load(&parser, &doc)) {
            rc = fail_yaml(&parser, path, err);
        } else if (!rc) {
            yaml_node_t *root = yaml_document_get_root_node(&doc);
            if (root)
                rc = fail_at(err, &src, root, "a config file holds one YAML document; "
                             "remove this second one");
            yaml_document_delete(&doc);
        }
    }
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

// ----------------------------------------------------------------------------
// command line

typedef struct {
    const cfg_key_t *key;
    cfg_value_t *val;
    char *flag;           /* as typed, without "=value": "--per-subset" */
    const char **args;    /* [nargs] values, pointing into argv or at "true"/"false" */
    int nargs;
} flag_set_t;

typedef struct {
    flag_set_t *items;
    int n;
} flag_list_t;

static void flags_free(flag_list_t *fl)
{
    for (int j = 0; j < fl->n; j++) {
        free(fl->items[j].flag);
        free(fl->items[j].args);
    }
    free(fl->items);
}

static bool is_help(const char *a) { return !strcmp(a, "-h") || !strcmp(a, "--help"); }

/* Where a list flag's values stop: the next --flag, -c or -h. */
static bool ends_list(const char *a)
{
    return !strncmp(a, "--", 2) || !strcmp(a, "-c") || !strcmp(a, "-h");
}

/* "-5", "-0.5": a negative number is a positional argument, not an option. */
static bool looks_numeric(const char *a)
{
    double x;
    bool overflow;
    return a[0] == '-' && a[1] != '-' && (parse_float(a, &x, &overflow) || overflow);
}

static int fail_unknown_flag(deft_err_t *err, const cfg_t *cfg, const char *flag,
                             const char *name)
{
    suggestion_t s = {0};
    suggest_in_table(&s, name, &cfg_shared);
    suggest_in_table(&s, name, cfg->section);
    const cfg_section_t *owner = section_owning(name);
    strbuf_t hint = {0};
    if (owner) {
        sb_printf(&hint, " (it is a key of 'deft %s')", owner->name);
    } else if (s.best) {
        sb_puts(&hint, "; did you mean --");
        dashed(&hint, s.best);
        sb_puts(&hint, "?");
    }
    deft_fail(err, DEFT_ERR_USAGE, "%s: unknown key for 'deft %s'%s", flag,
              cfg->section->name, hint.data ? hint.data : "");
    sb_free(&hint);
    return DEFT_ERR_USAGE;
}

static const cfg_key_t *flag_key(cfg_t *cfg, const char *name, cfg_value_t **v)
{
    int j = key_index(&cfg_shared, name);
    if (j >= 0) {
        *v = &cfg->shared[j];
        return &cfg_shared.keys[j];
    }
    j = key_index(cfg->section, name);
    if (j >= 0) {
        *v = &cfg->own[j];
        return &cfg->section->keys[j];
    }
    return NULL;
}

/* One `--key[=value]` argument at argv[*i]; consumes its values. */
static int flag_scan(cfg_t *cfg, flag_list_t *fl, int argc, char **argv, int *i,
                     deft_err_t *err)
{
    const char *a = argv[*i], *eq = strchr(a, '=');
    size_t flag_len = eq ? (size_t)(eq - a) : strlen(a);
    char *name = xstrndup(a + 2, flag_len - 2);
    for (char *c = name; *c; c++)
        if (*c == '-')
            *c = '_';
    cfg_value_t *v = NULL;
    const cfg_key_t *k = flag_key(cfg, name, &v);
    bool negated = false;
    if (!k && !strncmp(name, "no_", 3)) {
        // `--no-key` sets a true/false key to false.
        k = flag_key(cfg, name + 3, &v);
        negated = true;
        if (k && k->type != CFG_BOOL)
            k = NULL;
    }
    flag_set_t fs = {.key = k, .val = v, .flag = xstrndup(a, flag_len)};
    int rc = DEFT_OK;
    if (!k) {
        rc = fail_unknown_flag(err, cfg, fs.flag, name);
    } else if (k->type == CFG_BOOL && negated && eq) {
        rc = deft_fail(err, DEFT_ERR_USAGE, "%s: takes no value (write --%s=false)",
                       fs.flag, fs.flag + strlen("--no-"));
    } else {
        fs.args = xmalloc((size_t)(argc + 1) * sizeof *fs.args);
        if (eq) {
            fs.args[fs.nargs++] = eq + 1;
        } else if (k->type == CFG_BOOL) {
            fs.args[fs.nargs++] = negated ? "false" : "true";
        } else if (k->type == CFG_LIST || k->type == CFG_DATA) {
            while (*i + 1 < argc && !ends_list(argv[*i + 1]))
                fs.args[fs.nargs++] = argv[++*i];
        } else if (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2)) {
            fs.args[fs.nargs++] = argv[++*i];
        }
        if (!fs.nargs || ((k->type == CFG_LIST || k->type == CFG_DATA) && !*fs.args[0])) {
            strbuf_t exp = {0};
            cfg_describe_expected(k, true, &exp);
            rc = deft_fail(err, DEFT_ERR_USAGE, "%s: missing value (expected %s)", fs.flag,
                           exp.data);
            sb_free(&exp);
        }
    }
    free(name);
    if (rc) {
        free(fs.flag);
        free(fs.args);
        return rc;
    }
    fl->items = xrealloc(fl->items, (size_t)(fl->n + 1) * sizeof *fl->items);
    fl->items[fl->n++] = fs;
    return DEFT_OK;
}

static int flag_apply(const flag_set_t *fs, deft_err_t *err)
{
    const cfg_key_t *k = fs->key;
    cfg_value_t *v = fs->val;
    if (k->type == CFG_LIST || k->type == CFG_DATA) {
        // The first list flag replaces the file's list; later ones append to it.
        if (!v->from_flag)
            value_clear(v);
        v->from_flag = true;
        v->set = true;
        for (int j = 0; j < fs->nargs; j++) {
            if (k->type == CFG_DATA)
                value_push_file(v, fs->args[j], NULL, NULL);
            else
                value_push_item(v, fs->args[j]);
        }
    } else {
        int rc = value_set_scalar(v, k, fs->args[0], fs->flag, err);
        if (rc)
            return rc;
    }
    value_set_origin(v, fs->flag);
    return DEFT_OK;
}

/* Refuses argv[i] when the command takes no more arguments: a word a command
 * never reads would be lost without a trace. After a true/false flag it is most
 * likely meant as the flag's value (`--strict false`), which would otherwise
 * run with the opposite setting. */
static int positional_check(cfg_t *cfg, char **argv, int i, deft_err_t *err)
{
    int max = cfg->section->max_positional;
    if (max < 0 || cfg->npositional < max)
        return DEFT_OK;
    const char *prev = argv[i - 1];
    bool b;
    if (i > 1 && !strncmp(prev, "--", 2) && !strchr(prev, '=') && parse_bool(argv[i], &b)) {
        char *name = xstrdup(prev + 2);
        for (char *c = name; *c; c++)
            if (*c == '-')
                *c = '_';
        cfg_value_t *v;
        const cfg_key_t *k = flag_key(cfg, name, &v);
        free(name);
        if (k && k->type == CFG_BOOL)
            return deft_fail(err, DEFT_ERR_USAGE, "%s %s: a true/false flag takes no separate "
                             "value: write %s=%s (or %s / --no-%s)", prev, argv[i], prev,
                             argv[i], prev, prev + 2);
    }
    const char *dot = strrchr(argv[i], '.');
    if (max == 0 && dot && (!strcmp(dot, ".yaml") || !strcmp(dot, ".yml")))
        return deft_fail(err, DEFT_ERR_USAGE, "'%s': unexpected argument: a config file is "
                         "loaded with -c %s", argv[i], argv[i]);
    if (max == 0)
        return deft_fail(err, DEFT_ERR_USAGE, "'%s': unexpected argument: 'deft %s' takes "
                         "none (keys are set with --key value; -c FILE loads a config file)",
                         argv[i], cfg->section->name);
    return deft_fail(err, DEFT_ERR_USAGE, "'%s': unexpected argument: 'deft %s' takes at most "
                     "%d", argv[i], cfg->section->name, max);
}

static int argv_scan(cfg_t *cfg, flag_list_t *fl, int argc, char **argv, deft_err_t *err)
{
    bool only_positional = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = DEFT_OK;
        if (only_positional || a[0] != '-' || !strcmp(a, "-") || looks_numeric(a)) {
            rc = positional_check(cfg, argv, i, err);
            if (rc)
                return rc;
            cfg->positional = xrealloc(cfg->positional,
                                       (size_t)(cfg->npositional + 1) * sizeof(char *));
            cfg->positional[cfg->npositional++] = xstrdup(a);
        } else if (!strcmp(a, "--")) {
            only_positional = true;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config") || !strncmp(a, "--config=", 9)) {
            const char *path = a[1] == 'c' ? (i + 1 < argc ? argv[++i] : NULL)
                               : a[8] == '=' ? a + 9
                               : (i + 1 < argc ? argv[++i] : NULL);
            if (!path || !*path)
                rc = deft_fail(err, DEFT_ERR_USAGE, "%s: missing the config file name", a);
            else if (cfg->file)
                rc = deft_fail(err, DEFT_ERR_USAGE, "%s %s: a config file was already given "
                               "(%s); give one", a, path, cfg->file);
            else
                cfg->file = xstrdup(path);
        } else if (a[1] == '-') {
            rc = flag_scan(cfg, fl, argc, argv, &i, err);
        } else {
            rc = deft_fail(err, DEFT_ERR_USAGE, "%s: unknown option for 'deft %s' (keys are "
                           "set with --key value; -c FILE loads a config file)", a,
                           cfg->section->name);
        }
        if (rc)
            return rc;
    }
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// cfg_parse

static int defaults_load(cfg_value_t *vals, const cfg_section_t *sec, deft_err_t *err)
{
    for (int j = 0; j < sec->nkeys; j++) {
        const cfg_key_t *k = &sec->keys[j];
        if (!k->def)
            continue;
        char what[160];
        snprintf(what, sizeof what, "default of %s.%s (src/config/keys.c)", sec->name, k->name);
        if (k->type == CFG_LIST || k->type == CFG_DATA)
            return deft_fail(err, DEFT_ERR_INTERNAL, "%s: list keys have no default", what);
        deft_err_t why;
        if (value_set_scalar(&vals[j], k, k->def, what, &why))
            return deft_fail(err, DEFT_ERR_INTERNAL, "%s", why.msg);
    }
    return DEFT_OK;
}

int cfg_parse(cfg_t **out, const char *section, int argc, char **argv, deft_err_t *err)
{
    *out = NULL;
    const cfg_section_t *sec = cfg_find_section(section);
    if (!sec)
        return deft_fail(err, DEFT_ERR_INTERNAL, "no config section for 'deft %s' in "
                         "src/config/keys.c", section);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (is_help(argv[i])) {
            cfg_write_help(sec, stdout);
            return DEFT_HELP;
        }
    }
    cfg_t *cfg = xcalloc(1, sizeof *cfg);
    cfg->section = sec;
    cfg->shared = xcalloc((size_t)cfg_shared.nkeys, sizeof *cfg->shared);
    cfg->own = xcalloc((size_t)sec->nkeys, sizeof *cfg->own);
    flag_list_t flags = {0};
    int rc = defaults_load(cfg->shared, &cfg_shared, err);
    if (!rc)
        rc = defaults_load(cfg->own, sec, err);
    if (!rc)
        rc = argv_scan(cfg, &flags, argc, argv, err);
    if (!rc && cfg->file)
        rc = file_load(cfg, cfg->file, err);
    for (int j = 0; !rc && j < flags.n; j++)
        rc = flag_apply(&flags.items[j], err);
    flags_free(&flags);
    if (rc) {
        cfg_free(cfg);
        return rc;
    }
    *out = cfg;
    return DEFT_OK;
}

void cfg_free(cfg_t *cfg)
{
    if (!cfg)
        return;
    values_free(cfg->shared, cfg_shared.nkeys);
    values_free(cfg->own, cfg->section->nkeys);
    for (int j = 0; j < cfg->npositional; j++)
        free(cfg->positional[j]);
    free(cfg->positional);
    free(cfg->file);
    free(cfg);
}

// ----------------------------------------------------------------------------
// accessors

static const char *type_name(cfg_type_t t)
{
    static const char *names[] = {"CFG_STRING", "CFG_INT", "CFG_FLOAT", "CFG_BOOL",
                                  "CFG_LIST", "CFG_DATA", "CFG_ENUM"};
    return names[t];
}

/* The value of key, or abort: asking for a key the command does not have, or
 * with the wrong accessor, is a bug in the caller, not a user error. */
static const cfg_value_t *value_lookup(const cfg_t *cfg, const char *key, const char *accessor,
                                       int ntypes, const cfg_type_t *types)
{
    const cfg_key_t *k = NULL;
    const cfg_value_t *v = NULL;
    int j = key_index(&cfg_shared, key);
    if (j >= 0) {
        k = &cfg_shared.keys[j], v = &cfg->shared[j];
    } else if ((j = key_index(cfg->section, key)) >= 0) {
        k = &cfg->section->keys[j], v = &cfg->own[j];
    } else {
        fprintf(stderr, "deft: bug: %s(\"%s\"): not a key of 'deft %s' (src/config/keys.c)\n",
                accessor, key, cfg->section->name);
        abort();
    }
    for (int t = 0; t < ntypes; t++)
        if (k->type == types[t])
            return v;
    if (ntypes == 0)
        return v;
    fprintf(stderr, "deft: bug: %s(\"%s\"): the key is %s\n", accessor, key,
            type_name(k->type));
    abort();
}

#define LOOKUP(cfg, key, ...)                                                             \
    value_lookup((cfg), (key), __func__, (int)DEFT_ARRAY_LEN(((cfg_type_t[]){__VA_ARGS__})), \
                 (cfg_type_t[]){__VA_ARGS__})

bool cfg_is_set(const cfg_t *cfg, const char *key)
{
    return value_lookup(cfg, key, __func__, 0, NULL)->set;
}

const char *cfg_str(const cfg_t *cfg, const char *key)
{
    return LOOKUP(cfg, key, CFG_STRING, CFG_ENUM)->str;
}

int64_t cfg_int(const cfg_t *cfg, const char *key) { return LOOKUP(cfg, key, CFG_INT)->i; }

double cfg_float(const cfg_t *cfg, const char *key) { return LOOKUP(cfg, key, CFG_FLOAT)->f; }

bool cfg_bool(const cfg_t *cfg, const char *key) { return LOOKUP(cfg, key, CFG_BOOL)->b; }

int cfg_list_len(const cfg_t *cfg, const char *key)
{
    return LOOKUP(cfg, key, CFG_LIST)->nitems;
}

const char *cfg_list_at(const cfg_t *cfg, const char *key, int i)
{
    const cfg_value_t *v = LOOKUP(cfg, key, CFG_LIST);
    return i >= 0 && i < v->nitems ? v->items[i] : NULL;
}

int cfg_data_len(const cfg_t *cfg) { return LOOKUP(cfg, "data", CFG_DATA)->nfiles; }

const cfg_data_file_t *cfg_data_at(const cfg_t *cfg, int i)
{
    const cfg_value_t *v = LOOKUP(cfg, "data", CFG_DATA);
    return i >= 0 && i < v->nfiles ? &v->files[i] : NULL;
}

const char *cfg_origin(const cfg_t *cfg, const char *key)
{
    const cfg_value_t *v = value_lookup(cfg, key, __func__, 0, NULL);
    return v->origin ? v->origin : "default";
}

int cfg_npositional(const cfg_t *cfg) { return cfg->npositional; }

const char *cfg_positional(const cfg_t *cfg, int i)
{
    return i >= 0 && i < cfg->npositional ? cfg->positional[i] : NULL;
}

const char *cfg_file(const cfg_t *cfg) { return cfg->file; }

// ----------------------------------------------------------------------------
// the config table at the start of a job

typedef struct {
    strbuf_t key, value, origin;
} table_row_t;

static void value_text(const cfg_key_t *k, const cfg_value_t *v, strbuf_t *out)
{
    char num[32];
    if (!v->set) {
        sb_puts(out, "-");
        return;
    }
    switch (k->type) {
    case CFG_STRING:
    case CFG_ENUM:
        sb_puts(out, *v->str ? v->str : "\"\"");
        break;
    case CFG_INT:
        sb_printf(out, "%lld", (long long)v->i);
        break;
    case CFG_FLOAT:
        cfg_format_double(v->f, num, sizeof num);
        sb_puts(out, num);
        break;
    case CFG_BOOL:
        sb_puts(out, v->b ? "true" : "false");
        break;
    case CFG_LIST:
        for (int j = 0; j < v->nitems; j++)
            sb_printf(out, "%s%s", j ? " " : "", v->items[j]);
        if (!v->nitems)
            sb_puts(out, "[]");
        break;
    case CFG_DATA:
        sb_puts(out, "[]");  // entries get a row each, see table_rows_add
        break;
    }
}

static void table_rows_add(table_row_t **rows, int *n, const cfg_section_t *sec,
                           const cfg_value_t *vals, const char *prefix)
{
    for (int j = 0; j < sec->nkeys; j++) {
        const cfg_key_t *k = &sec->keys[j];
        const cfg_value_t *v = &vals[j];
        const char *origin = v->origin ? v->origin : "default";
        int nrows = k->type == CFG_DATA && v->nfiles ? v->nfiles : 1;
        *rows = xrealloc(*rows, (size_t)(*n + nrows) * sizeof **rows);
        for (int r = 0; r < nrows; r++) {
            table_row_t *row = &(*rows)[(*n)++];
            *row = (table_row_t){0};
            sb_printf(&row->key, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", k->name);
            if (k->type == CFG_DATA && v->nfiles) {
                const cfg_data_file_t *df = &v->files[r];
                sb_printf(&row->key, "[%d]", r);
                sb_puts(&row->value, df->path);
                if (df->subset || strcmp(df->format, "auto"))
                    sb_printf(&row->value, " (subset %s, format %s)",
                              df->subset ? df->subset : "default", df->format);
            } else {
                value_text(k, v, &row->value);
            }
            sb_puts(&row->origin, origin);
        }
    }
}

static void table_rule(FILE *f, const size_t *w)
{
    for (int c = 0; c < 3; c++) {
        fputc('+', f);
        for (size_t j = 0; j < w[c] + 2; j++)
            fputc('-', f);
    }
    fputs("+\n", f);
}

static void table_line(FILE *f, const size_t *w, const char *a, const char *b, const char *c)
{
    fprintf(f, "| %-*s | %-*s | %-*s |\n", (int)w[0], a, (int)w[1], b, (int)w[2], c);
}

void cfg_print_table(const cfg_t *cfg, FILE *f)
{
    table_row_t *rows = NULL;
    int n = 0;
    table_rows_add(&rows, &n, &cfg_shared, cfg->shared, NULL);
    table_rows_add(&rows, &n, cfg->section, cfg->own, cfg->section->name);
    size_t w[3] = {strlen("key"), strlen("value"), strlen("origin")};
    for (int r = 0; r < n; r++) {
        const strbuf_t *cells[3] = {&rows[r].key, &rows[r].value, &rows[r].origin};
        for (int c = 0; c < 3; c++)
            if (cells[c]->len > w[c])
                w[c] = cells[c]->len;
    }
    table_rule(f, w);
    table_line(f, w, "key", "value", "origin");
    table_rule(f, w);
    for (int r = 0; r < n; r++) {
        table_line(f, w, rows[r].key.data, rows[r].value.data, rows[r].origin.data);
        sb_free(&rows[r].key);
        sb_free(&rows[r].value);
        sb_free(&rows[r].origin);
    }
    table_rule(f, w);
    free(rows);
}

// ----------------------------------------------------------------------------
// canonical YAML of the resolved values

static void yaml_quote(strbuf_t *out, const char *s)
{
    if (!s) {
        sb_puts(out, "null");
        return;
    }
    sb_puts(out, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            sb_printf(out, "\\%c", *c);
        else if (*c == '\n')
            sb_puts(out, "\\n");
        else if (*c == '\t')
            sb_puts(out, "\\t");
        else if (*c < 0x20 || *c == 0x7f)
            sb_printf(out, "\\x%02x", *c);
        else
            sb_append(out, (const char *)c, 1);
    }
    sb_puts(out, "\"");
}

static void dump_value(strbuf_t *out, const cfg_key_t *k, const cfg_value_t *v,
                       const char *indent)
{
    char num[40];
    sb_printf(out, "%s%s:", indent, k->name);
    if (!v->set) {
        sb_puts(out, " null\n");
        return;
    }
    switch (k->type) {
    case CFG_STRING:
    case CFG_ENUM:
        sb_puts(out, " ");
        yaml_quote(out, v->str);
        break;
    case CFG_INT:
        sb_printf(out, " %lld", (long long)v->i);
        break;
    case CFG_FLOAT:
        cfg_format_double(v->f, num, sizeof num);
        // Keep it a float to a YAML reader: "2" would read back as an integer.
        if (!strpbrk(num, ".e"))
            strcat(num, ".0");
        sb_printf(out, " %s", num);
        break;
    case CFG_BOOL:
        sb_puts(out, v->b ? " true" : " false");
        break;
    case CFG_LIST:
        if (!v->nitems)
            sb_puts(out, " []");
        for (int j = 0; j < v->nitems; j++) {
            sb_printf(out, "\n%s  - ", indent);
            yaml_quote(out, v->items[j]);
        }
        break;
    case CFG_DATA:
        if (!v->nfiles)
            sb_puts(out, " []");
        for (int j = 0; j < v->nfiles; j++) {
            sb_printf(out, "\n%s  - {path: ", indent);
            yaml_quote(out, v->files[j].path);
            sb_puts(out, ", subset: ");
            yaml_quote(out, v->files[j].subset);
            sb_puts(out, ", format: ");
            yaml_quote(out, v->files[j].format);
            sb_puts(out, "}");
        }
        break;
    }
    sb_puts(out, "\n");
}

void cfg_dump(const cfg_t *cfg, strbuf_t *out)
{
    for (int j = 0; j < cfg_shared.nkeys; j++)
        dump_value(out, &cfg_shared.keys[j], &cfg->shared[j], "");
    sb_printf(out, "%s:%s\n", cfg->section->name, cfg->section->nkeys ? "" : " {}");
    for (int j = 0; j < cfg->section->nkeys; j++)
        dump_value(out, &cfg->section->keys[j], &cfg->own[j], "  ");
}
