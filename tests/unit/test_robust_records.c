/* Regression tests of the data reader on hostile files: a UTF-8 byte order
 * mark at the start (plain and gzip, one and two ranks), which must not cost
 * the first record. */
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

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_bom();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    TEST_DONE();
}
