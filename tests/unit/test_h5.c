/* HDF5 helpers: round trip of datasets and attributes, atomic creation
 * (nothing at PATH before commit, an old PATH survives a discarded write),
 * reproducible bytes, and error messages naming the file and object. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "io/h5.h"
#include "test_util.h"

static bool file_exists(const char *p) { return access(p, F_OK) == 0; }

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}

static int write_sample(const char *path, deft_err_t *err)
{
    h5_file_t *f;
    int code = h5_create(&f, path, err);
    if (code)
        return code;
    int64_t big[5] = {0, 1, -1, INT64_MAX, INT64_MIN};
    int32_t small[3] = {7, -8, 9};
    double d[4] = {0.1, -2.5e-300, 1e300, -0.0};
    const char *names[3] = {"alpha", "béta", ""};
    if ((code = h5_write_i64(f, "/counts/positive", big, 5, err)) ||
        (code = h5_write_i32(f, "/ids", small, 3, err)) ||
        (code = h5_write_f64(f, "/deep/er/values", d, 4, err)) ||
        (code = h5_write_f64(f, "/empty", NULL, 0, err)) ||
        (code = h5_set_attr_str(f, "/", "tool", "deft 0.1.0", err)) ||
        (code = h5_set_attr_i64(f, "/", "records", 2312, err)) ||
        (code = h5_set_attr_f64(f, "/", "delta", 0.1, err)) ||
        (code = h5_set_attr_str_list(f, "/", "names", names, 3, err)) ||
        (code = h5_set_attr_i64(f, "/counts/positive", "total", -5, err)) ||
        (code = h5_set_attr_i64(f, "/", "records", 2313, err))) {  /* replaces */
        h5_discard(f);
        return code;
    }
    return h5_commit(f, err);
}

static void test_round_trip(const char *path)
{
    deft_err_t err = {0};
    CHECK_MSG(write_sample(path, &err) == DEFT_OK, "%s", err.msg);
    h5_file_t *f;
    CHECK_MSG(h5_open(&f, path, &err) == DEFT_OK, "%s", err.msg);
    if (!f)
        return;
    int64_t *big;
    int32_t *small;
    double *d, *empty;
    size_t n;
    CHECK(h5_read_i64(f, "/counts/positive", &big, &n, &err) == DEFT_OK && n == 5);
    CHECK(big[3] == INT64_MAX && big[4] == INT64_MIN && big[2] == -1);
    CHECK(h5_read_i32(f, "/ids", &small, &n, &err) == DEFT_OK && n == 3 && small[1] == -8);
    CHECK(h5_read_f64(f, "/deep/er/values", &d, &n, &err) == DEFT_OK && n == 4);
    CHECK(d[0] == 0.1 && d[1] == -2.5e-300 && d[2] == 1e300);
    CHECK(h5_read_f64(f, "/empty", &empty, &n, &err) == DEFT_OK && n == 0);
    free(big);
    free(small);
    free(d);
    free(empty);
    /* int32 data read as int64 converts. */
    int64_t *wide;
    CHECK(h5_read_i64(f, "/ids", &wide, &n, &err) == DEFT_OK && n == 3 && wide[2] == 9);
    free(wide);

    char *s;
    int64_t i;
    double x;
    CHECK(h5_get_attr_str(f, "/", "tool", &s, &err) == DEFT_OK && !strcmp(s, "deft 0.1.0"));
    free(s);
    CHECK(h5_get_attr_i64(f, "/", "records", &i, &err) == DEFT_OK && i == 2313);
    CHECK(h5_get_attr_f64(f, "/", "delta", &x, &err) == DEFT_OK && x == 0.1);
    CHECK(h5_get_attr_i64(f, "/counts/positive", "total", &i, &err) == DEFT_OK && i == -5);
    char **list;
    CHECK(h5_get_attr_str_list(f, "/", "names", &list, &n, &err) == DEFT_OK && n == 3);
    if (n == 3)
        CHECK(!strcmp(list[0], "alpha") && !strcmp(list[1], "béta") && !list[2][0]);
    h5_free_str_list(list, n);

    CHECK(h5_exists(f, "/counts", NULL) && h5_exists(f, "/deep/er/values", NULL));
    CHECK(!h5_exists(f, "/nope/deeper", NULL) && !h5_exists(f, "/counts/negative", NULL));
    CHECK(h5_exists(f, "/", "delta") && !h5_exists(f, "/", "gamma"));

    /* Errors name the file and the object. */
    CHECK(h5_read_f64(f, "/counts/negative", &d, &n, &err) == DEFT_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, "/counts/negative"), "%s", err.msg);
    CHECK(h5_get_attr_i64(f, "/", "tool", &i, &err) == DEFT_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "tool") && strstr(err.msg, "number"), "%s", err.msg);
    CHECK(h5_get_attr_str(f, "/", "names", &s, &err) == DEFT_ERR_FORMAT);
    CHECK(h5_get_attr_f64(f, "/", "missing", &x, &err) == DEFT_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "missing") != NULL, "%s", err.msg);
    h5_close(f);
}

static void test_atomic(const char *path)
{
    deft_err_t err = {0};
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(path);
    h5_file_t *f;
    CHECK(h5_create(&f, path, &err) == DEFT_OK);
    CHECK(file_exists(tmp) && !file_exists(path));
    int64_t v[2] = {1, 2};
    CHECK(h5_write_i64(f, "/v", v, 2, &err) == DEFT_OK);
    CHECK(h5_commit(f, &err) == DEFT_OK);
    CHECK(file_exists(path) && !file_exists(tmp));

    /* A write that is abandoned leaves the committed file untouched. */
    size_t n0, n1;
    char *before = slurp(path, &n0);
    CHECK(h5_create(&f, path, &err) == DEFT_OK);
    CHECK(h5_write_i64(f, "/w", v, 1, &err) == DEFT_OK);
    h5_discard(f);
    CHECK(!file_exists(tmp));
    char *after = slurp(path, &n1);
    CHECK(before && after && n0 == n1 && !memcmp(before, after, n0));
    free(before);
    free(after);

    /* Writing the same content twice gives the same bytes (no timestamps). */
    char path2[600];
    snprintf(path2, sizeof path2, "%s.again", path);
    CHECK(write_sample(path, &err) == DEFT_OK);
    CHECK(write_sample(path2, &err) == DEFT_OK);
    before = slurp(path, &n0);
    after = slurp(path2, &n1);
    CHECK_MSG(before && after && n0 == n1 && !memcmp(before, after, n0),
              "sizes %zu %zu", n0, n1);
    free(before);
    free(after);
    unlink(path2);

    /* A folder that does not exist: the error names the temporary file. */
    CHECK(h5_create(&f, "/nonexistent/deft/out.h5", &err) == DEFT_ERR_IO);
    CHECK_MSG(strstr(err.msg, "/nonexistent/deft/out.h5.tmp") != NULL, "%s", err.msg);
}

static void test_open_errors(void)
{
    deft_err_t err = {0};
    h5_file_t *f;
    CHECK(h5_open(&f, "/nonexistent/q.h5", &err) == DEFT_ERR_IO && f == NULL);
    CHECK_MSG(strstr(err.msg, "/nonexistent/q.h5") != NULL, "%s", err.msg);
    char path[] = "/tmp/deft_test_h5_noth5_XXXXXX";
    int fd = mkstemp(path);
    CHECK(write(fd, "not hdf5 at all\n", 16) == 16);
    close(fd);
    CHECK(h5_open(&f, path, &err) == DEFT_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, "HDF5"), "%s", err.msg);
    unlink(path);
}

int main(void)
{
    char dir[] = "/tmp/deft_test_h5_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/sample.h5", dir);
    test_round_trip(path);
    test_atomic(path);
    test_open_errors();
    unlink(path);
    rmdir(dir);
    TEST_DONE();
}
