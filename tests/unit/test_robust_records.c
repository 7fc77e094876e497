/* Regression tests of the data reader on hostile files: a UTF-8 byte order
 * mark at the start (plain and gzip, one and two ranks), which must not cost
 * the first record, and bytes after the end of a gzip stream (appended plain
 * lines, zero padding, more members), which must not vanish in silence,
 * a folder as a data file, and PRO rewards whose gaps overflow. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data/records.h"
#include "test_util.h"

#define BOM "\xef\xbb\xbf"
#define REC1 "{\"prompt\": \"\\n\\nHuman: hi\\n\\nAssistant:\", \"chosen\": \" a\", " \
             "\"rejected\": \" b\"}"
#define REC2 "{\"prompt\": \"\\n\\nHuman: yo\\n\\nAssistant:\", \"chosen\": \" c\", " \
             "\"rejected\": \" d\"}"

static char dir[] = "/tmp/deft_robust_records.XXXXXX";

static const char *write_file(const char *name, const char *text, size_t len, bool gz)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (gz) {
        gzFile g = gzopen(path, "wb");
        CHECK(g && gzwrite(g, text, (unsigned)len) == (int)len);
        gzclose(g);
    } else {
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(text, 1, len, f) == len);
        fclose(f);
    }
    return path;
}

/* Every record of the file over nranks ranks: the number used and skipped. */
static void read_all(const char *path, int nranks, int64_t *used, int64_t *skipped,
                     const char **raw1)
{
    *used = *skipped = 0;
    *raw1 = NULL;
    static char raw[512];
    for (int r = 0; r < nranks; r++) {
        data_source_t src = {.path = path, .format = "auto"};
        read_opts_t opts = {.rank = r, .nranks = nranks};
        pref_data_t d;
        deft_err_t err = {0};
        CHECK_MSG(data_read(&d, &src, 1, &opts, &err) == DEFT_OK, "%s", err.msg);
        *used += d.stats[0].records_used;
        *skipped += d.stats[0].records_read - d.stats[0].records_used;
        for (size_t i = 0; i < d.n; i++) {
            if (d.rec[i].id.line == 1 && d.rec[i].raw_len < sizeof raw) {
                memcpy(raw, d.rec[i].raw, d.rec[i].raw_len + 1);
                *raw1 = raw;
            }
        }
        data_free(&d);
    }
}

static void test_bom(void)
{
    const char text[] = BOM REC1 "\r\n" REC2 "\n";
    const char *names[] = {"bom.jsonl", "bom.jsonl.gz"};
    for (int gz = 0; gz < 2; gz++) {
        const char *path = write_file(names[gz], text, sizeof text - 1, gz);
        for (int nranks = 1; nranks <= 2; nranks++) {
            int64_t used, skipped;
            const char *raw1;
            read_all(path, nranks, &used, &skipped, &raw1);
            CHECK_MSG(used == 2 && skipped == 0, "%s, %d ranks: %lld used, %lld skipped",
                      path, nranks, (long long)used, (long long)skipped);
            CHECK_MSG(raw1 && !strcmp(raw1, REC1), "%s: raw line 1 is '%s'", path,
                      raw1 ? raw1 : "(none)");
        }
    }
    // A byte order mark alone is a blank file; one past the start is not skipped.
    int64_t used, skipped;
    const char *raw1;
    read_all(write_file("only.jsonl", BOM "\n", 4, false), 1, &used, &skipped, &raw1);
    CHECK(used == 0 && skipped == 0);
    const char mid[] = REC1 "\n" BOM REC2 "\n";
    read_all(write_file("mid.jsonl", mid, sizeof mid - 1, false), 1, &used, &skipped, &raw1);
    CHECK(used == 1 && skipped == 1);
}

/* The bytes of a gzip file of text. */
static char *gzip_bytes(const char *name, const char *text, size_t *len)
{
    const char *path = write_file(name, text, strlen(text), true);
    FILE *f = fopen(path, "rb");
    char *buf = xmalloc(1 << 20);
    *len = f ? fread(buf, 1, 1 << 20, f) : 0;
    if (f)
        fclose(f);
    return buf;
}

static void check_counts(const char *path, int64_t want_used, int64_t want_truncated)
{
    for (int nranks = 1; nranks <= 2; nranks++) {
        int64_t used = 0, truncated = 0, line = 0;
        for (int r = 0; r < nranks; r++) {
            data_source_t src = {.path = path, .format = "auto"};
            read_opts_t opts = {.rank = r, .nranks = nranks};
            pref_data_t d;
            deft_err_t err = {0};
            CHECK_MSG(data_read(&d, &src, 1, &opts, &err) == DEFT_OK, "%s", err.msg);
            used += d.stats[0].records_used;
            truncated += d.stats[0].count[SKIP_TRUNCATED];
            if (d.stats[0].count[SKIP_TRUNCATED])
                line = d.stats[0].first_line[SKIP_TRUNCATED][0];
            data_free(&d);
        }
        CHECK_MSG(used == want_used && truncated == want_truncated, "%s, %d ranks: %lld used, "
                  "%lld truncated", path, nranks, (long long)used, (long long)truncated);
        CHECK_MSG(!want_truncated || line == want_used + 1, "%s: truncated at line %lld",
                  path, (long long)line);
    }
}

static void test_gzip_tail(void)
{
    size_t n1, n2;
    char *m1 = gzip_bytes("m1.gz", REC1 "\n", &n1), *m2 = gzip_bytes("m2.gz", REC2 "\n", &n2);
    char *buf = xmalloc(n1 + n2 + 4096);
    memcpy(buf, m1, n1);
    // `cat more.jsonl >> data.jsonl.gz`: the appended line used to vanish.
    const char appended[] = REC2 "\n";
    memcpy(buf + n1, appended, sizeof appended - 1);
    check_counts(write_file("appended.jsonl.gz", buf, n1 + sizeof appended - 1, false), 1, 1);
    // Concatenated members are one stream; zero padding after them is no data.
    memcpy(buf + n1, m2, n2);
    check_counts(write_file("members.jsonl.gz", buf, n1 + n2, false), 2, 0);
    memset(buf + n1 + n2, 0, 4096);
    check_counts(write_file("padded.jsonl.gz", buf, n1 + n2 + 4096, false), 2, 0);
    // A second member that starts right but is corrupt.
    memcpy(buf + n1 + n2, "\x1f\x8b\x08\x00garbage", 12);
    check_counts(write_file("badmember.jsonl.gz", buf, n1 + n2 + 12, false), 2, 1);
    // A plain file with a .gz name is read as plain text.
    const char plain[] = REC1 "\n" REC2 "\n";
    check_counts(write_file("plain.jsonl.gz", plain, sizeof plain - 1, false), 2, 0);
    free(buf);
    free(m1);
    free(m2);

    // Many lines over many input and output chunks read the same, plain or gzip.
    strbuf_t big = {0};
    for (int i = 0; i < 6000; i++)
        sb_printf(&big, "{\"prompt\": \"p%d\", \"chosen\": \" a%d %0200d\", \"rejected\": "
                  "\" b\"}\n", i, i, i);
    check_counts(write_file("big.jsonl", big.data, big.len, false), 6000, 0);
    check_counts(write_file("big.jsonl.gz", big.data, big.len, true), 6000, 0);
    sb_free(&big);
}

/* Rewards whose spread overflows a double would make the PRO loss NaN at
 * train time; the reader counts such a ranking as wrong_type instead. */
static void test_reward_range(void)
{
    const char text[] =
        "{\"prefix\": [[\"<|prompter|>q\", \"<|assistant|>\"], [\"<|prompter|>q\", "
        "\"<|assistant|>\"]], \"suffix\": [\"a\", \"b\"], \"reward\": [1e308, -1e308]}\n"
        "{\"prefix\": [[\"<|prompter|>q\", \"<|assistant|>\"], [\"<|prompter|>q\", "
        "\"<|assistant|>\"]], \"suffix\": [\"a\", \"b\"], \"reward\": [1e308, 1e307]}\n";
    const char *path = write_file("rewards.jsonl", text, sizeof text - 1, false);
    data_source_t src = {.path = path, .format = "auto"};
    pref_data_t d;
    deft_err_t err = {0};
    CHECK_MSG(data_read(&d, &src, 1, NULL, &err) == DEFT_OK, "%s", err.msg);
    CHECK(d.n == 1 && d.rec[0].id.line == 2);
    CHECK(d.stats[0].count[SKIP_WRONG_TYPE] == 1 &&
          d.stats[0].first_line[SKIP_WRONG_TYPE][0] == 1);
    data_free(&d);
    read_opts_t strict = {.rank = 0, .nranks = 1, .strict = true};
    CHECK(data_read(&d, &src, 1, &strict, &err) == DEFT_ERR_DATA);
    CHECK_MSG(strstr(err.msg, ":1: reward: wrong_type") && strstr(err.msg, "range of a double"),
              "%s", err.msg);
}

/* A folder given as a data file is an I/O error that names it, on any rank. */
static void test_folder(void)
{
    for (int r = 0; r < 2; r++) {
        data_source_t src = {.path = dir, .format = "auto"};
        read_opts_t opts = {.rank = r, .nranks = 2};
        pref_data_t d;
        deft_err_t err = {0};
        CHECK(data_read(&d, &src, 1, &opts, &err) == DEFT_ERR_IO);
        CHECK_MSG(strstr(err.msg, dir) && strstr(err.msg, "cannot read"), "%s", err.msg);
    }
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_bom();
    test_gzip_tail();
    test_folder();
    test_reward_range();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    TEST_DONE();
}
