/* Line formats of preference data (docs/data-formats.md): HH-RLHF dialogue
 * pairs, PRO ranked lists with rewards, and prompt/chosen/rejected pairs.
 * Each parser checks the whole line before it allocates anything. */
#include "data/formats.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSISTANT_MARKER "\n\nAssistant:"
#define PRO_PROMPTER "<|prompter|>"
#define PRO_ASSISTANT "<|assistant|>"

typedef struct {
    const char *s;
    size_t len;
} span_t;

bool format_from_name(const char *name, data_format_t *fmt)
{
    static const struct {
        const char *name;
        data_format_t fmt;
    } names[] = {{"auto", FORMAT_AUTO}, {"hh", FORMAT_HH}, {"pro", FORMAT_PRO},
                 {"pair", FORMAT_PAIR}};
    if (!name) {
        *fmt = FORMAT_AUTO;
        return true;
    }
    for (size_t i = 0; i < DEFT_ARRAY_LEN(names); i++) {
        if (strcmp(name, names[i].name) == 0) {
            *fmt = names[i].fmt;
            return true;
        }
    }
    return false;
}

bool skip_set(skip_info_t *why, skip_reason_t reason, const char *field, const char *fmt, ...)
{
    why->reason = reason;
    snprintf(why->field, sizeof why->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->detail, sizeof why->detail, fmt, ap);
    va_end(ap);
    return false;
}

void format_excerpt(char *dst, size_t n, const char *s, size_t len)
{
    const size_t max_chars = 48;
    size_t o = 0;
    if (n < 8) {
        if (n)
            dst[0] = '\0';
        return;
    }
    dst[o++] = '"';
    size_t i = 0;
    for (; i < len && i < max_chars && o + 6 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n' || c == '\r' || c == '\t' || c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(dst + o, n - o, "\\x%02x", c);
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o++] = '"';
    if (i < len && o + 4 < n) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "an unknown value";
}

static bool get_string(const json_t *obj, const char *key, span_t *out, skip_info_t *why)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return skip_set(why, SKIP_MISSING_FIELD, key, "field is missing");
    if (!json_is_string(v))
        return skip_set(why, SKIP_WRONG_TYPE, key, "expected a string, got %s",
                        json_type_name(v));
    out->s = json_string_value(v);
    out->len = json_string_length(v);
    return true;
}

// ----------------------------------------------------------------------------
// checks shared by every format

static bool is_blank(span_t t)
{
    for (size_t i = 0; i < t.len; i++) {
        if (!strchr(" \t\n\v\f\r", t.s[i]) || t.s[i] == '\0')
            return false;
    }
    return true;
}

static bool span_eq(span_t a, span_t b)
{
    return a.len == b.len && memcmp(a.s, b.s, a.len) == 0;
}

/* resp[n] are the responses as they will be stored; names[n] say where each came from. */
static bool check_responses(const span_t *resp, const char *const *names, int n,
                            skip_info_t *why)
{
    char ex[128];
    for (int k = 0; k < n; k++) {
        if (is_blank(resp[k])) {
            format_excerpt(ex, sizeof ex, resp[k].s, resp[k].len);
            return skip_set(why, SKIP_EMPTY_RESPONSE, names[k],
                            "response is empty or whitespace only: %s", ex);
        }
    }
    for (int a = 0; a < n; a++) {
        for (int b = a + 1; b < n; b++) {
            if (span_eq(resp[a], resp[b])) {
                format_excerpt(ex, sizeof ex, resp[a].s, resp[a].len);
                return skip_set(why, SKIP_IDENTICAL, names[b],
                                "same text as %s: %s", names[a], ex);
            }
        }
    }
    return true;
}

/* Copies the prompt and responses (in the order given by rank[n], or as
 * they are when rank is NULL) into rec. */
static void record_fill(pref_record_t *rec, span_t prompt, const span_t *resp,
                        const double *reward, const int *rank, int n)
{
    rec->prompt = xstrndup(prompt.s, prompt.len);
    rec->prompt_len = prompt.len;
    rec->n_resp = n;
    rec->resp = xmalloc((size_t)n * sizeof *rec->resp);
    rec->resp_len = xmalloc((size_t)n * sizeof *rec->resp_len);
    rec->reward = reward ? xmalloc((size_t)n * sizeof *rec->reward) : NULL;
    for (int k = 0; k < n; k++) {
        int src = rank ? rank[k] : k;
        rec->resp[k] = xstrndup(resp[src].s, resp[src].len);
        rec->resp_len[k] = resp[src].len;
        if (reward)
            rec->reward[k] = reward[src];
    }
}

// ----------------------------------------------------------------------------
// HH-RLHF: {"chosen": dialogue, "rejected": dialogue}

static bool parse_hh(const json_t *obj, pref_record_t *rec, skip_info_t *why)
{
    span_t chosen, rejected;
    if (!get_string(obj, "chosen", &chosen, why) || !get_string(obj, "rejected", &rejected, why))
        return false;
    size_t lcp = 0;
    size_t max = chosen.len < rejected.len ? chosen.len : rejected.len;
    while (lcp < max && chosen.s[lcp] == rejected.s[lcp])
        lcp++;
    /* The prompt ends at the last marker that lies wholly inside the common
     * prefix: the two dialogues may share the start of the answer itself. */
    const size_t mlen = strlen(ASSISTANT_MARKER);
    size_t end = 0;
    for (size_t at = lcp >= mlen ? lcp - mlen + 1 : 0; at-- > 0;) {
        if (memcmp(chosen.s + at, ASSISTANT_MARKER, mlen) == 0) {
            end = at + mlen;
            break;
        }
    }
    if (end == 0) {
        char ex[128];
        format_excerpt(ex, sizeof ex, chosen.s, chosen.len);
        return skip_set(why, SKIP_NO_MARKER, "chosen",
                        "no \"\\n\\nAssistant:\" in the %zu bytes chosen and rejected share: %s",
                        lcp, ex);
    }
    span_t prompt = {chosen.s, end};
    span_t resp[2] = {{chosen.s + end, chosen.len - end}, {rejected.s + end, rejected.len - end}};
    static const char *const names[2] = {"chosen", "rejected"};
    if (!check_responses(resp, names, 2, why))
        return false;
    record_fill(rec, prompt, resp, NULL, NULL, 2);
    return true;
}

// ----------------------------------------------------------------------------
// {"prompt", "chosen", "rejected"}: the prompt is taken as it is, marker or not

static bool parse_pair(const json_t *obj, pref_record_t *rec, skip_info_t *why)
{
    span_t prompt, resp[2];
    if (!get_string(obj, "prompt", &prompt, why) || !get_string(obj, "chosen", &resp[0], why) ||
        !get_string(obj, "rejected", &resp[1], why))
        return false;
    static const char *const names[2] = {"chosen", "rejected"};
    if (!check_responses(resp, names, 2, why))
        return false;
    record_fill(rec, prompt, resp, NULL, NULL, 2);
    return true;
}

// ----------------------------------------------------------------------------
// PRO: {"prefix": [[turn, ...] per response], "suffix": [...], "reward": [...],
//       "meta": {"path": ".../<subset>/dev.jsonl"}}

static bool get_array(const json_t *obj, const char *key, bool required, const json_t **out,
                      skip_info_t *why)
{
    *out = json_object_get(obj, key);
    if (!*out) {
        if (required)
            return skip_set(why, SKIP_MISSING_FIELD, key, "field is missing");
        return true;
    }
    if (!json_is_array(*out))
        return skip_set(why, SKIP_WRONG_TYPE, key, "expected an array, got %s",
                        json_type_name(*out));
    return true;
}

static bool check_pro_shapes(const json_t *prefix, const json_t *suffix, const json_t *reward,
                             skip_info_t *why)
{
    size_t n = json_array_size(suffix);
    if (n < 2)
        return skip_set(why, SKIP_WRONG_TYPE, "suffix",
                        "a ranking needs at least 2 responses, got %zu", n);
    if (json_array_size(prefix) != n)
        return skip_set(why, SKIP_WRONG_TYPE, "prefix", "%zu turn lists for %zu responses",
                        json_array_size(prefix), n);
    if (reward && json_array_size(reward) != n)
        return skip_set(why, SKIP_WRONG_TYPE, "reward", "%zu rewards for %zu responses",
                        json_array_size(reward), n);
    for (size_t k = 0; k < n; k++) {
        const json_t *s = json_array_get(suffix, k);
        if (!json_is_string(s))
            return skip_set(why, SKIP_WRONG_TYPE, "suffix", "element %zu is %s, not a string",
                            k, json_type_name(s));
    }
    for (size_t k = 0; k < n; k++) {
        const json_t *turns = json_array_get(prefix, k);
        if (!json_is_array(turns))
            return skip_set(why, SKIP_WRONG_TYPE, "prefix", "element %zu is %s, not a list",
                            k, json_type_name(turns));
        for (size_t t = 0; t < json_array_size(turns); t++) {
            if (!json_is_string(json_array_get(turns, t)))
                return skip_set(why, SKIP_WRONG_TYPE, "prefix",
                                "turn %zu of list %zu is %s, not a string", t, k,
                                json_type_name(json_array_get(turns, t)));
        }
    }
    for (size_t k = 0; reward && k < n; k++) {
        if (!json_is_number(json_array_get(reward, k)))
            return skip_set(why, SKIP_WRONG_TYPE, "reward", "element %zu is %s, not a number",
                            k, json_type_name(json_array_get(reward, k)));
    }
    /* The PRO loss weighs scores by reward gaps r_k - r_j: a gap past the
     * range of a double (rewards near +-1e308) would make the loss NaN. */
    double lo = INFINITY, hi = -INFINITY;
    for (size_t k = 0; reward && k < n; k++) {
        double r = json_number_value(json_array_get(reward, k));
        lo = fmin(lo, r), hi = fmax(hi, r);
    }
    if (reward && !isfinite(hi - lo))
        return skip_set(why, SKIP_WRONG_TYPE, "reward", "rewards from %g to %g: their "
                        "difference is past the range of a double", lo, hi);
    return true;
}

/* The subset folder in meta.path (".../harmless-base/dev.jsonl"), or NULL. */
static bool pro_meta_subset(const json_t *obj, char **subset, skip_info_t *why)
{
    *subset = NULL;
    const json_t *meta = json_object_get(obj, "meta");
    if (!meta)
        return true;
    if (!json_is_object(meta))
        return skip_set(why, SKIP_WRONG_TYPE, "meta", "expected an object, got %s",
                        json_type_name(meta));
    const json_t *path = json_object_get(meta, "path");
    if (!path)
        return true;
    if (!json_is_string(path))
        return skip_set(why, SKIP_WRONG_TYPE, "meta.path", "expected a string, got %s",
                        json_type_name(path));
    const char *p = json_string_value(path);
    const char *slash = strrchr(p, '/');
    if (!slash)
        return true;
    const char *start = slash;
    while (start > p && start[-1] != '/')
        start--;
    size_t len = (size_t)(slash - start);
    if (len == 0 || (len == 1 && start[0] == '.') || (len == 2 && !strncmp(start, "..", 2)))
        return true;
    *subset = xstrndup(start, len);
    return true;
}

/* Builds the dialogue text of a turn list. Returns false (wrong_type) on a
 * turn without a role tag. */
static bool pro_prompt(const json_t *turns, strbuf_t *sb, skip_info_t *why)
{
    const size_t np = strlen(PRO_PROMPTER), na = strlen(PRO_ASSISTANT);
    size_t nturns = json_array_size(turns);
    for (size_t t = 0; t < nturns; t++) {
        const json_t *v = json_array_get(turns, t);
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (len >= np && memcmp(s, PRO_PROMPTER, np) == 0) {
            sb_puts(sb, "\n\nHuman: ");
            sb_append(sb, s + np, len - np);
        } else if (len >= na && memcmp(s, PRO_ASSISTANT, na) == 0) {
            if (len == na && t == nturns - 1) {
                sb_puts(sb, ASSISTANT_MARKER);
            } else {
                sb_puts(sb, "\n\nAssistant: ");
                sb_append(sb, s + na, len - na);
            }
        } else {
            char ex[128];
            format_excerpt(ex, sizeof ex, s, len);
            return skip_set(why, SKIP_WRONG_TYPE, "prefix",
                            "turn %zu starts with neither <|prompter|> nor <|assistant|>: %s",
                            t, ex);
        }
    }
    return true;
}

static bool parse_pro(const json_t *obj, bool keep_file_order, pref_record_t *rec,
                      char **subset, bool *turns_differ, skip_info_t *why)
{
    const json_t *prefix, *suffix, *reward;
    if (!get_array(obj, "prefix", true, &prefix, why) ||
        !get_array(obj, "suffix", true, &suffix, why) ||
        !get_array(obj, "reward", false, &reward, why) ||
        !check_pro_shapes(prefix, suffix, reward, why))
        return false;
    char *sub = NULL;
    if (!pro_meta_subset(obj, &sub, why))
        return false;

    int n = (int)json_array_size(suffix);
    /* Every response of the real PRO files has the same turn list; where they
     * differ the first one is the prompt (docs/data-formats.md). */
    const json_t *turns = json_array_get(prefix, 0);
    size_t nturns = json_array_size(turns);
    for (size_t k = 1; k < json_array_size(prefix); k++)
        *turns_differ = *turns_differ || !json_equal(turns, json_array_get(prefix, k));
    strbuf_t prompt = {0};
    span_t *resp = xmalloc((size_t)n * sizeof *resp);       /* [n] views into suffix */
    char **spaced = xcalloc((size_t)n, sizeof *spaced);     /* [n] " " + suffix[k] */
    char **names = xmalloc((size_t)n * sizeof *names);      /* [n] "suffix[k]" */
    double *rw = reward ? xmalloc((size_t)n * sizeof *rw) : NULL;  /* [n] file order */
    int *rank = xmalloc((size_t)n * sizeof *rank);          /* [n] file index, best first */
    bool ok = pro_prompt(turns, &prompt, why);
    if (ok && (nturns == 0 || strcmp(json_string_value(json_array_get(turns, nturns - 1)),
                                     PRO_ASSISTANT) != 0)) {
        ok = skip_set(why, SKIP_NO_MARKER, "prefix",
                      "the last turn is not a bare <|assistant|>, so nothing asks for a reply");
    }
    for (int k = 0; k < n; k++) {
        const json_t *s = json_array_get(suffix, k);
        size_t len = json_string_length(s);
        spaced[k] = xmalloc(len + 2);
        spaced[k][0] = ' ';
        memcpy(spaced[k] + 1, json_string_value(s), len + 1);
        resp[k] = (span_t){spaced[k], len + 1};
        char name[32];
        snprintf(name, sizeof name, "suffix[%d]", k);
        names[k] = xstrdup(name);
        if (rw)
            rw[k] = json_number_value(json_array_get(reward, k));
        rank[k] = k;
    }
    if (ok)
        ok = check_responses(resp, (const char *const *)names, n, why);
    if (ok && rw) {
        bool tied = true;
        for (int k = 1; k < n; k++)
            tied = tied && rw[k] == rw[0];
        if (tied)
            ok = skip_set(why, SKIP_TIED_REWARDS, "reward",
                          "all %d rewards equal %g: the scores prefer no response", n, rw[0]);
    }
    if (ok && rw && !keep_file_order) {
        /* Stable insertion sort, best reward first: ties keep the file's order. */
        for (int k = 1; k < n; k++) {
            int v = rank[k], j = k;
            for (; j > 0 && rw[rank[j - 1]] < rw[v]; j--)
                rank[j] = rank[j - 1];
            rank[j] = v;
        }
    }
    if (ok) {
        span_t p = {prompt.data ? prompt.data : "", prompt.len};
        record_fill(rec, p, resp, rw, rank, n);
        *subset = sub;
    } else {
        free(sub);
    }
    for (int k = 0; k < n; k++) {
        free(spaced[k]);
        free(names[k]);
    }
    free(spaced);
    free(names);
    free(resp);
    free(rw);
    free(rank);
    sb_free(&prompt);
    return ok;
}

// ----------------------------------------------------------------------------

bool format_parse(const json_t *obj, data_format_t fmt, bool keep_file_order,
                  pref_record_t *rec, char **subset, bool *turns_differ, skip_info_t *why)
{
    *subset = NULL;
    *turns_differ = false;
    if (!json_is_object(obj))
        return skip_set(why, SKIP_WRONG_TYPE, "line", "expected a JSON object, got %s",
                        json_type_name(obj));
    if (fmt == FORMAT_AUTO) {
        if (json_object_get(obj, "prefix") || json_object_get(obj, "suffix"))
            fmt = FORMAT_PRO;
        else if (json_object_get(obj, "prompt"))
            fmt = FORMAT_PAIR;
        else if (json_object_get(obj, "chosen") || json_object_get(obj, "rejected"))
            fmt = FORMAT_HH;
        else
            return skip_set(why, SKIP_MISSING_FIELD, "chosen",
                            "none of the keys chosen/rejected, prompt/chosen/rejected or "
                            "prefix/suffix is present");
    }
    switch (fmt) {
    case FORMAT_HH: return parse_hh(obj, rec, why);
    case FORMAT_PAIR: return parse_pair(obj, rec, why);
    default: return parse_pro(obj, keep_file_order, rec, subset, turns_differ, why);
    }
}
