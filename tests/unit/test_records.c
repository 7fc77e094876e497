/* Tests of the preference data readers: hand-made fixtures for every skip
 * reason, gzip streams (whole, cut short, with a 5 MB line) and the bundled
 * HH-RLHF and PRO files, checked against tests/fixtures/data/expected.json,
 * which tools/make_data_fixtures.py computes independently in Python. */
#include <inttypes.h>
#include <jansson.h>
#include <string.h>

#include "data/records.h"
#include "test_util.h"
#include "util/sha256.h"

#define FIX "tests/fixtures/data/"

static const char *const reason_names[SKIP_NREASONS] = {
    "invalid_json", "invalid_utf8", "missing_field", "wrong_type", "truncated",
    "no_marker", "identical", "empty_response", "tied_rewards",
};

static int read_one(pref_data_t *d, const char *path, const char *format, const char *subset,
                    int rank, int nranks)
{
    data_source_t src = {.path = path, .subset = subset, .format = format};
    read_opts_t opts = {.rank = rank, .nranks = nranks};
    deft_err_t err = {0};
    int rc = data_read(d, &src, 1, &opts, &err);
    CHECK_MSG(rc == DEFT_OK, "%s: %s", path, err.msg);
    return rc;
}

static const pref_record_t *find_line(const pref_data_t *d, int64_t line)
{
    for (size_t i = 0; i < d->n; i++) {
        if (d->rec[i].id.line == line)
            return &d->rec[i];
    }
    return NULL;
}

static bool str_is(const char *s, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(s, want, len) == 0;
}

/* The same record hash as tools/make_data_fixtures.py. */
static void hash_records(const pref_data_t *d, char hex[65])
{
    sha256_t h;
    sha256_init(&h);
    strbuf_t sb = {0};
    for (size_t i = 0; i < d->n; i++) {
        const pref_record_t *r = &d->rec[i];
        sb.len = 0;
        sb_printf(&sb, "%" PRId64 " %d %s\n%zu:", r->id.line, r->n_resp,
                  d->subsets[r->subset], r->prompt_len);
        sha256_update(&h, sb.data, sb.len);
        sha256_update(&h, r->prompt, r->prompt_len);
        for (int k = 0; k < r->n_resp; k++) {
            sb.len = 0;
            sb_printf(&sb, "%zu:", r->resp_len[k]);
            sha256_update(&h, sb.data, sb.len);
            sha256_update(&h, r->resp[k], r->resp_len[k]);
        }
        for (int k = 0; r->reward && k < r->n_resp; k++) {
            sb.len = 0;
            sb_printf(&sb, "%.17g;", r->reward[k]);
            sha256_update(&h, sb.data, sb.len);
        }
    }
    sb_free(&sb);
    uint8_t digest[32];
    sha256_final(&h, digest);
    sha256_hex(digest, hex);
}

static bool json_str_is(const json_t *v, const char *s, size_t len)
{
    return json_is_string(v) && json_string_length(v) == len &&
           memcmp(json_string_value(v), s, len) == 0;
}

static void check_first_record(const pref_data_t *d, const json_t *want, const char *path)
{
    if (json_is_null(want)) {
        CHECK_MSG(d->n == 0, "%s: %zu records, expected none", path, d->n);
        return;
    }
    if (d->n == 0)
        return;
    const pref_record_t *r = &d->rec[0];
    const json_t *resp = json_object_get(want, "resp");
    const json_t *reward = json_object_get(want, "reward");
    CHECK_MSG(r->id.line == json_integer_value(json_object_get(want, "line")), "%s", path);
    CHECK_MSG(json_str_is(json_object_get(want, "prompt"), r->prompt, r->prompt_len),
              "%s: prompt of line %" PRId64, path, r->id.line);
    CHECK_MSG(r->n_resp == (int)json_array_size(resp), "%s", path);
    for (int k = 0; k < r->n_resp && k < (int)json_array_size(resp); k++) {
        CHECK_MSG(json_str_is(json_array_get(resp, k), r->resp[k], r->resp_len[k]),
                  "%s: response %d of line %" PRId64, path, k, r->id.line);
    }
    CHECK_MSG((r->reward == NULL) == json_is_null(reward), "%s", path);
    for (int k = 0; r->reward && k < r->n_resp && k < (int)json_array_size(reward); k++)
        CHECK_NEAR(r->reward[k], json_number_value(json_array_get(reward, k)), 0);
    CHECK_MSG(json_str_is(json_object_get(want, "subset"), d->subsets[r->subset],
                          strlen(d->subsets[r->subset])), "%s: subset %s", path,
              d->subsets[r->subset]);
}

/* Counts, first lines, record hash and first record of every file in
 * expected.json, each read alone with nranks = 1. */
static void test_expected(void)
{
    json_error_t jerr;
    json_t *root = json_load_file(FIX "expected.json", 0, &jerr);
    CHECK_MSG(root != NULL, "expected.json: %s", jerr.text);
    if (!root)
        return;
    const json_t *files = json_object_get(root, "files");
    CHECK(json_array_size(files) >= 10);
    for (size_t i = 0; i < json_array_size(files); i++) {
        const json_t *f = json_array_get(files, i);
        const char *path = json_string_value(json_object_get(f, "path"));
        const char *format = json_string_value(json_object_get(f, "format"));
        const char *subset = json_string_value(json_object_get(f, "subset"));
        pref_data_t d;
        if (read_one(&d, path, format, subset, 0, 1))
            continue;
        const skip_stats_t *st = &d.stats[0];
        int64_t want_read = json_integer_value(json_object_get(f, "read"));
        int64_t want_used = json_integer_value(json_object_get(f, "used"));
        CHECK_MSG(st->records_read == want_read, "%s: read %" PRId64 ", expected %" PRId64,
                  path, st->records_read, want_read);
        CHECK_MSG(st->records_used == want_used, "%s: used %" PRId64 ", expected %" PRId64,
                  path, st->records_used, want_used);
        CHECK((int64_t)d.n == st->records_used);
        int64_t skipped = 0;
        for (int r = 0; r < SKIP_NREASONS; r++) {
            const char *name = reason_names[r];
            CHECK(strcmp(skip_reason_name((skip_reason_t)r), name) == 0);
            int64_t want = json_integer_value(json_object_get(json_object_get(f, "count"), name));
            const json_t *lines = json_object_get(json_object_get(f, "first_lines"), name);
            CHECK_MSG(st->count[r] == want, "%s: %s %" PRId64 ", expected %" PRId64, path,
                      name, st->count[r], want);
            for (int k = 0; k < SKIP_FIRST_LINES; k++) {
                int64_t wl = k < (int)json_array_size(lines)
                                 ? json_integer_value(json_array_get(lines, k)) : 0;
                CHECK_MSG(st->first_line[r][k] == wl, "%s: %s first line %d: %" PRId64
                          ", expected %" PRId64, path, name, k, st->first_line[r][k], wl);
            }
            skipped += st->count[r];
        }
        CHECK(skipped + st->records_used == st->records_read);
        char hex[65];
        hash_records(&d, hex);
        CHECK_MSG(strcmp(hex, json_string_value(json_object_get(f, "sha256"))) == 0,
                  "%s: records hash %s differs from Python's", path, hex);
        check_first_record(&d, json_object_get(f, "first"), path);
        data_free(&d);
    }
    json_decref(root);
}

static bool records_equal(const pref_data_t *a, const pref_record_t *x, const pref_data_t *b,
                          const pref_record_t *y)
{
    if (sample_id_cmp(x->id, y->id) != 0 || x->n_resp != y->n_resp ||
        x->prompt_len != y->prompt_len || memcmp(x->prompt, y->prompt, x->prompt_len) ||
        x->raw_len != y->raw_len || memcmp(x->raw, y->raw, x->raw_len) ||
        strcmp(a->subsets[x->subset], b->subsets[y->subset]) != 0)
        return false;
    for (int k = 0; k < x->n_resp; k++) {
        if (x->resp_len[k] != y->resp_len[k] || memcmp(x->resp[k], y->resp[k], x->resp_len[k]))
            return false;
        if ((x->reward == NULL) != (y->reward == NULL) ||
            (x->reward && x->reward[k] != y->reward[k]))
            return false;
    }
    return true;
}

/* Shares over nranks = 2, 3, 4 are disjoint, follow the line rule, and
 * together give the nranks = 1 read: same ids, text and summed counts. */
static void test_sharding(void)
{
    data_source_t src[] = {
        {.path = "data/hh-rlhf/harmless-base-test.jsonl.gz"},
        {.path = FIX "mixed.jsonl"},
        {.path = FIX "pro.jsonl", .subset = "ranked"},
        {.path = "data/hh-rlhf-pro/sampled-dev.jsonl"},
        {.path = FIX "hh-truncated.jsonl.gz", .format = "hh"},
    };
    const int nsrc = (int)DEFT_ARRAY_LEN(src);
    deft_err_t err = {0};
    pref_data_t all;
    read_opts_t one = {.rank = 0, .nranks = 1};
    if (data_read(&all, src, nsrc, &one, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    CHECK(all.nfiles == nsrc);
    for (size_t i = 1; i < all.n; i++)
        CHECK(sample_id_cmp(all.rec[i - 1].id, all.rec[i].id) < 0);
    for (int nranks = 2; nranks <= 4; nranks++) {
        char *seen = xcalloc(all.n, 1);
        size_t total = 0;
        skip_stats_t sum[DEFT_ARRAY_LEN(src)];
        memset(sum, 0, sizeof sum);
        for (int rank = 0; rank < nranks; rank++) {
            pref_data_t part;
            read_opts_t opts = {.rank = rank, .nranks = nranks};
            if (data_read(&part, src, nsrc, &opts, &err)) {
                CHECK_MSG(0, "%s", err.msg);
                continue;
            }
            size_t j = 0;  /* both lists are in global order: merge */
            for (size_t i = 0; i < part.n; i++) {
                const pref_record_t *r = &part.rec[i];
                CHECK((r->id.line - 1) % nranks == rank);
                while (j < all.n && sample_id_cmp(all.rec[j].id, r->id) < 0)
                    j++;
                bool found = j < all.n && records_equal(&all, &all.rec[j], &part, r);
                CHECK_MSG(found, "nranks %d rank %d: record %d:%" PRId64 " differs", nranks,
                          rank, r->id.file, r->id.line);
                if (found) {
                    CHECK(!seen[j]);
                    seen[j] = 1;
                }
            }
            total += part.n;
            for (int f = 0; f < nsrc; f++) {
                sum[f].records_read += part.stats[f].records_read;
                sum[f].records_used += part.stats[f].records_used;
                for (int r = 0; r < SKIP_NREASONS; r++)
                    sum[f].count[r] += part.stats[f].count[r];
            }
            data_free(&part);
        }
        CHECK_MSG(total == all.n, "nranks %d: %zu records, expected %zu", nranks, total, all.n);
        for (int f = 0; f < nsrc; f++) {
            CHECK(sum[f].records_read == all.stats[f].records_read);
            CHECK(sum[f].records_used == all.stats[f].records_used);
            for (int r = 0; r < SKIP_NREASONS; r++)
                CHECK_MSG(sum[f].count[r] == all.stats[f].count[r], "nranks %d file %d %s",
                          nranks, f, reason_names[r]);
        }
        free(seen);
    }
    data_free(&all);
}

/* Ranking by reward (stable for ties), the file's order on request, rewards
 * kept in ranked order, and subset labels from meta.path or the file name. */
static void test_pro_ranking(void)
{
    pref_data_t d;
    if (read_one(&d, FIX "pro.jsonl", NULL, NULL, 0, 1))
        return;
    const pref_record_t *r = find_line(&d, 1);
    CHECK(r && r->n_resp == 4);
    if (r && r->n_resp == 4) {
        const char *want[] = {" two", " one", " three", " four"};
        const double rw[] = {2.0, 0.5, 0.5, -1.0};
        for (int k = 0; k < 4; k++) {
            CHECK(str_is(r->resp[k], r->resp_len[k], want[k]));
            CHECK(r->reward && r->reward[k] == rw[k]);
        }
        CHECK(str_is(r->prompt, r->prompt_len, "\n\nHuman: Rank these.\n\nAssistant: Sure, go on."
                     "\n\nHuman: Which is best?\n\nAssistant:"));
        CHECK(strcmp(d.subsets[r->subset], "harmless-base") == 0);
    }
    r = find_line(&d, 17);
    CHECK(r && r->n_resp == 3 && str_is(r->resp[0], r->resp_len[0], " y") &&
          str_is(r->resp[1], r->resp_len[1], " z") && str_is(r->resp[2], r->resp_len[2], " x"));
    r = find_line(&d, 7);  /* no rewards: the file's order, reward NULL */
    CHECK(r && r->reward == NULL && str_is(r->resp[0], r->resp_len[0], " a"));
    r = find_line(&d, 11);  /* meta.path without a folder: the file's name */
    CHECK(r && strcmp(d.subsets[r->subset], "pro") == 0);
    r = find_line(&d, 13);  /* turn lists differ: the first one is the prompt */
    CHECK(r && strcmp(d.subsets[r->subset], "helpful-base") == 0 &&
          r->prompt_len > 40);
    CHECK(d.nsubsets == 3);
    data_free(&d);

    data_source_t src = {.path = FIX "pro.jsonl"};
    read_opts_t opts = {.rank = 0, .nranks = 1, .keep_file_order = true};
    deft_err_t err = {0};
    CHECK(data_read(&d, &src, 1, &opts, &err) == DEFT_OK);
    r = find_line(&d, 1);
    if (r && r->n_resp == 4 && r->reward) {
        CHECK(str_is(r->resp[0], r->resp_len[0], " one"));
        CHECK(str_is(r->resp[1], r->resp_len[1], " two"));
        CHECK(r->reward[0] == 0.5 && r->reward[1] == 2.0 && r->reward[3] == -1.0);
    } else {
        CHECK(0);
    }
    CHECK(d.stats[0].count[SKIP_TIED_REWARDS] == 1);
    data_free(&d);
}

/* Dialogue and pair details: CRLF, NUL inside a string, a last line with no
 * newline, raw lines verbatim, a pair prompt without a marker, the 5 MB line. */
static void test_line_details(void)
{
    pref_data_t d;
    if (read_one(&d, FIX "mixed.jsonl", "auto", NULL, 0, 1))
        return;
    const pref_record_t *r = find_line(&d, 11);
    CHECK(r && str_is(r->resp[0], r->resp_len[0], " With CRLF."));
    CHECK(r && r->raw_len > 0 && r->raw[r->raw_len - 1] == '}');
    r = find_line(&d, 18);
    CHECK(r && r->resp_len[0] == strlen(" Nul ") + 1 + strlen(" inside.") &&
          memcmp(r->resp[0], " Nul \0 inside.", r->resp_len[0]) == 0);
    r = find_line(&d, 20);
    CHECK(r && str_is(r->prompt, r->prompt_len, "Say hi.") &&
          str_is(r->resp[0], r->resp_len[0], " Hi!"));
    r = find_line(&d, 26);  /* the answers differ after a second shared marker */
    CHECK(r && str_is(r->resp[0], r->resp_len[0], " yes") &&
          str_is(r->resp[1], r->resp_len[1], " no"));
    CHECK(find_line(&d, 29) != NULL);
    CHECK(d.nsubsets == 1 && strcmp(d.subsets[0], "mixed") == 0);

    /* raw is the file's line verbatim, without its newline (or "\r\n"). */
    FILE *f = fopen(FIX "mixed.jsonl", "rb");
    CHECK(f != NULL);
    if (f) {
        char buf[4096];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *line = buf;
        for (int64_t no = 1; line && *line; no++) {
            const char *nl = strchr(line, '\n');
            size_t len = nl ? (size_t)(nl - line) : strlen(line);
            if (len && line[len - 1] == '\r')
                len--;
            r = find_line(&d, no);
            if (r)
                CHECK_MSG(r->raw_len == len && memcmp(r->raw, line, len) == 0, "raw %" PRId64,
                          no);
            line = nl ? nl + 1 : NULL;
        }
    }
    data_free(&d);

    if (read_one(&d, FIX "long-line.jsonl.gz", NULL, NULL, 0, 1))
        return;
    r = find_line(&d, 2);
    CHECK(d.n == 3 && r && r->resp_len[0] > 5000000 && r->raw_len > 5000000);
    CHECK(find_line(&d, 3) != NULL);
    data_free(&d);
}

static void expect_fail(const data_source_t *src, int nsrc, const read_opts_t *opts,
                        deft_code_t code, const char *msg_start)
{
    pref_data_t d;
    deft_err_t err = {0};
    int rc = data_read(&d, src, nsrc, opts, &err);
    CHECK_MSG(rc == (int)code, "expected %s, got %d: %s", deft_code_name(code), rc, err.msg);
    CHECK_MSG(strncmp(err.msg, msg_start, strlen(msg_start)) == 0, "message: %s", err.msg);
    CHECK(d.n == 0 && d.rec == NULL && d.stats == NULL && d.subsets == NULL);
    data_free(&d);
}

/* Strict mode stops at the first unusable record, naming file, line, field
 * and reason; nothing is left allocated (ASan builds check that). */
static void test_strict_and_errors(void)
{
    read_opts_t strict = {.rank = 0, .nranks = 1, .strict = true};
    data_source_t clean = {.path = FIX "long-line.jsonl.gz"};
    data_source_t mixed[] = {clean, {.path = FIX "mixed.jsonl"}};
    expect_fail(mixed, 2, &strict, DEFT_ERR_DATA, FIX "mixed.jsonl:2: chosen: no_marker: ");
    data_source_t pro = {.path = FIX "pro.jsonl"};
    expect_fail(&pro, 1, &strict, DEFT_ERR_DATA, FIX "pro.jsonl:2: reward: tied_rewards: ");
    data_source_t utf8 = {.path = FIX "mixed.jsonl", .format = "pair"};
    read_opts_t strict3 = {.rank = 1, .nranks = 3, .strict = true};  /* lines 2, 5, 8, ... */
    expect_fail(&utf8, 1, &strict3, DEFT_ERR_DATA, FIX "mixed.jsonl:2: prompt: missing_field");
    /* A broken gzip stream fails every rank in strict mode, also those that
     * do not own the line where it broke. */
    data_source_t cut = {.path = FIX "clean-cut.jsonl.gz"};
    for (int rank = 0; rank < 3; rank++) {
        read_opts_t o = {.rank = rank, .nranks = 3, .strict = true};
        expect_fail(&cut, 1, &o, DEFT_ERR_DATA,
                    FIX "clean-cut.jsonl.gz:3: line: truncated: ");
    }
    pref_data_t d;
    deft_err_t err = {0};
    read_opts_t lenient = {.rank = 1, .nranks = 3};
    CHECK(data_read(&d, &cut, 1, &lenient, &err) == DEFT_OK && d.n == 1 &&
          d.stats[0].count[SKIP_TRUNCATED] == 0);
    data_free(&d);
    CHECK(data_read(&d, &clean, 1, &strict, &err) == DEFT_OK && d.n == 3);
    data_free(&d);

    read_opts_t one = {.rank = 0, .nranks = 1};
    data_source_t missing = {.path = FIX "no-such-file.jsonl"};
    expect_fail(&missing, 1, &one, DEFT_ERR_IO, FIX "no-such-file.jsonl: cannot open");
    data_source_t badfmt = {.path = FIX "mixed.jsonl", .format = "csv"};
    expect_fail(&badfmt, 1, &one, DEFT_ERR_USAGE, FIX "mixed.jsonl: format: unknown value");
    read_opts_t badrank = {.rank = 2, .nranks = 2};
    expect_fail(&clean, 1, &badrank, DEFT_ERR_USAGE, "data: rank 2 of 2");
}

static void test_report_and_ids(void)
{
    data_source_t src[] = {{.path = FIX "mixed.jsonl"}, {.path = FIX "small.jsonl.gz"}};
    pref_data_t d;
    deft_err_t err = {0};
    if (data_read(&d, src, 2, NULL, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    strbuf_t sb = {0};
    data_report(&d, src, &sb);
    CHECK(sb.data && strstr(sb.data, "data: 9 of 30 records usable in 2 files (21 skipped)"));
    CHECK(sb.data && strstr(sb.data, FIX "mixed.jsonl: read 27, used 7, skipped:"));
    CHECK(sb.data && strstr(sb.data, "invalid_utf8         3  lines 12, 13, 14\n"));
    CHECK(sb.data && strstr(sb.data, FIX "small.jsonl.gz: read 3, used 2, skipped:"));
    sb_free(&sb);
    CHECK(d.n == 9 && d.rec[7].id.file == 1 && d.rec[7].id.line == 1);
    CHECK(strcmp(d.subsets[d.rec[8].subset], "small") == 0);
    data_free(&d);

    CHECK(sample_id_cmp((sample_id_t){0, 9}, (sample_id_t){1, 1}) < 0);
    CHECK(sample_id_cmp((sample_id_t){1, 2}, (sample_id_t){1, 1}) > 0);
    CHECK(sample_id_cmp((sample_id_t){1, 2}, (sample_id_t){1, 2}) == 0);
}

int main(void)
{
    test_expected();
    test_sharding();
    test_pro_ranking();
    test_line_details();
    test_strict_and_errors();
    test_report_and_ids();
    TEST_DONE();
}
