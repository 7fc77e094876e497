/* Regression tests of reading a Q_diff back (qdiff_read, used by score and
 * train): a NaN, a value outside [-1, 1] or values that do not sum to 0 mean
 * a corrupt file or another dataset, and are refused with the file, the
 * dataset and the value, rather than turning R_Q and the loss into NaN. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "io/h5.h"
#include "stages/qdiff.h"
#include "test_util.h"

#define V 8

static char path[64];

static void write_qdiff(const double *q)
{
    h5_file_t *f;
    deft_err_t err = {0};
    int rc = h5_create(&f, path, &err);
    if (!rc)
        rc = h5_write_f64(f, "/qdiff", q, V, &err);
    if (!rc)
        rc = h5_set_attr_i64(f, "/", "vocab_size", V, &err);
    if (!rc)
        rc = h5_commit(f, &err);
    CHECK_MSG(rc == DEFT_OK, "%s", err.msg);
}

/* qdiff_read of q: the code, and the message holding `part` when it fails. */
static void expect(const double *q, int code, const char *part)
{
    write_qdiff(q);
    double *got = NULL;
    int32_t n = 0;
    deft_err_t err = {0};
    int rc = qdiff_read(path, NULL, &got, &n, &err);
    CHECK_MSG(rc == code, "rc %d, expected %d (%s)", rc, code, err.msg);
    if (code == DEFT_OK) {
        CHECK(n == V && got && got[0] == q[0]);
    } else {
        CHECK(got == NULL && n == 0);
        CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, part), "'%s' not in: %s", part,
                  err.msg);
    }
    free(got);
}

int main(void)
{
    snprintf(path, sizeof path, "/tmp/deft_robust_qdiff.%d.h5", (int)getpid());
    /* pos (4, 2, 2, 0, ...) / 8 minus neg (0, 2, 2, 4, ...) / 8 */
    double good[V] = {0.5, 0, 0, -0.5, 0, 0, 0, 0};
    expect(good, DEFT_OK, NULL);
    double q[V];
    memcpy(q, good, sizeof q);
    q[2] = NAN;
    expect(q, DEFT_ERR_FORMAT, "/qdiff[2] = nan");
    memcpy(q, good, sizeof q);
    q[0] = 1246, q[3] = -1246;   /* sums to 0, but counts, not frequencies */
    expect(q, DEFT_ERR_FORMAT, "/qdiff[0] = 1246, outside [-1, 1]");
    for (int v = 0; v < V; v++)
        q[v] = 1.0 / V;           /* one distribution, not a difference */
    expect(q, DEFT_ERR_FORMAT, "sums to 1, not 0");
    unlink(path);
    TEST_DONE();
}
