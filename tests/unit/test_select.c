/* Tests of the selection stage's pieces: exact k = ceil(f * n), the
 * order-preserving double -> uint64 map, the random-baseline hash, and the
 * radix select (one rank here; tests/cli/select_mpi.sh runs 1-4 ranks)
 * against a plain sort by (key, sample id). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "mpi/comm.h"
#include "stages/select.h"
#include "test_util.h"

static int64_t k_of(const char *text, int64_t n)
{
    select_fraction_t f;
    deft_err_t err;
    if (select_fraction_parse(text, &f, &err))
        return -1;
    return select_k(f, n);
}

static void test_exact_k(void)
{
    /* the paper's subset sizes (f = 0.05): only ceil gives these */
    CHECK(k_of("0.05", 52420) == 2621);
    CHECK(k_of("0.05", 42536) == 2127);
    CHECK(k_of("0.05", 43835) == 2192);
    CHECK(k_of("0.05", 22002) == 1101);
    CHECK(k_of("5e-2", 52420) == 2621);
    CHECK(k_of("0.050", 52420) == 2621);
    CHECK(k_of(".05", 20) == 1);
    CHECK(k_of("0.05", 21) == 2);
    CHECK(k_of("1", 7) == 7);
    CHECK(k_of("1.000", 7) == 7);
    CHECK(k_of("0.5", 7) == 4);
    CHECK(k_of("0.05", 0) == 0);
    CHECK(k_of("1e-30", 5) == 1);
    CHECK(k_of("0.3333333333333333333", 3) == 1);
    /* the binary double 0.05 is 0.05000000000000000277: a float ceil gives 2,622 */
    select_fraction_t f;
    deft_err_t err;
    char text[32];
    CHECK(select_fraction_from_double(0.05, &f, text, &err) == DEFT_OK);
    CHECK(f.mant == 5 && f.exp10 == -2 && !strcmp(text, "0.05"));
    CHECK(select_k(f, 52420) == 2621);
    CHECK(select_fraction_from_double(0.1, &f, text, &err) == DEFT_OK);
    CHECK(f.mant == 1 && f.exp10 == -1);
    CHECK(select_k(f, 30) == 3);
    CHECK(select_fraction_from_double(1.0 / 3.0, &f, text, &err) == DEFT_OK);
    CHECK(select_k(f, 3) == 1);
    CHECK(select_k(f, 4) == 2);

    const char *bad[] = {"0", "0.0", "1.5", "2", "-0.1", "abc", "", "0.05x", "1e1", "."};
    for (size_t i = 0; i < DEFT_ARRAY_LEN(bad); i++) {
        CHECK_MSG(select_fraction_parse(bad[i], &f, &err) == DEFT_ERR_USAGE, "'%s'", bad[i]);
        CHECK(strstr(err.msg, "fraction") != NULL);
    }
}

static void test_key_map(void)
{
    const double v[] = {-DBL_MAX, -1e300, -2.5, -1.0, -DBL_MIN, -4.9e-324, 0.0,
                        4.9e-324, DBL_MIN, 1e-10, 1.0, 2.5, 1e300, DBL_MAX};
    for (size_t i = 0; i + 1 < DEFT_ARRAY_LEN(v); i++)
        CHECK_MSG(select_key_from_double(v[i]) < select_key_from_double(v[i + 1]),
                  "%g < %g", v[i], v[i + 1]);
    for (size_t i = 0; i < DEFT_ARRAY_LEN(v); i++)
        CHECK(select_double_from_key(select_key_from_double(v[i])) == v[i]);
    CHECK(select_key_from_double(-0.0) == select_key_from_double(0.0));
    CHECK(!signbit(select_double_from_key(select_key_from_double(-0.0))));
    CHECK(select_key_from_double(-4.9e-324) < select_key_from_double(-0.0));
}

static void test_ids_and_hash(void)
{
    uint64_t a = select_sample_id(0, 99999), b = select_sample_id(1, 1);
    CHECK(a < b);
    CHECK(select_sample_id(2, 5) < select_sample_id(2, 6));
    int32_t file;
    int64_t line;
    select_sample_id_split(select_sample_id(7, 123456789012LL), &file, &line);
    CHECK(file == 7 && line == 123456789012LL);
    /* golden values from an independent Python implementation of splitmix64 */
    CHECK(select_random_key(0, 0, 1) == 0x2f32a78496c67c60ULL);
    CHECK(select_random_key(42, 3, 12345) == 0x2ec512c6e52fd423ULL);
    select_by_t by;
    CHECK(select_by_parse("ifd", &by) && by == SELECT_BY_IFD);
    CHECK(!select_by_parse("lowest", &by));
}

// ----------------------------------------------------------------------------
// radix select against a sort

typedef struct {
    uint64_t key, id;
    int32_t subset;
    int idx;
} ref_t;

static int ref_cmp(const void *pa, const void *pb)
{
    const ref_t *a = pa, *b = pb;
    if (a->subset != b->subset)
        return a->subset < b->subset ? -1 : 1;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* n samples in shuffled order, nsub subsets, keys from `nvalues` distinct
 * doubles (many ties), every 9th sample not eligible (a NaN score). */
static void check_random_case(int n, int nsub, int nvalues, const char *fraction,
                              uint64_t seed)
{
    uint64_t *key = xmalloc((size_t)n * sizeof *key), *id = xmalloc((size_t)n * sizeof *id);
    int32_t *subset = xmalloc((size_t)n * sizeof *subset);
    uint8_t *elig = xmalloc((size_t)n), *sel = xmalloc((size_t)n);
    ref_t *ref = xmalloc((size_t)n * sizeof *ref);
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        double x = ((double)(lcg(&s) % (uint64_t)nvalues) - nvalues / 2.0) * 0.25;
        key[i] = select_key_from_double(i % 13 == 5 ? -0.0 : x);
        id[i] = select_sample_id((int32_t)(lcg(&s) % 3), (int64_t)i + 1);
        subset[i] = (int32_t)(lcg(&s) % (uint64_t)nsub);
        elig[i] = i % 9 != 4;
    }
    select_local_t loc = {n, key, id, subset, elig, nsub};
    int64_t *count = xcalloc((size_t)nsub, sizeof *count), *k = xmalloc((size_t)nsub * 8);
    int nref = 0;
    for (int i = 0; i < n; i++)
        if (elig[i]) {
            count[subset[i]]++;
            ref[nref++] = (ref_t){key[i], id[i], subset[i], i};
        }
    qsort(ref, (size_t)nref, sizeof *ref, ref_cmp);
    select_fraction_t f;
    deft_err_t err;
    select_fraction_parse(fraction, &f, &err);
    for (int t = 0; t < nsub; t++)
        k[t] = select_k(f, count[t]);
    select_subset_stats_t *st = xcalloc((size_t)nsub, sizeof *st);
    CHECK(select_lowest_k(comm_world(), &loc, k, sel, st, &err) == DEFT_OK);

    uint8_t *want = xcalloc((size_t)n, 1);
    int base = 0;
    for (int t = 0; t < nsub; t++) {
        for (int64_t j = 0; j < k[t]; j++)
            want[ref[base + j].idx] = 1;
        CHECK(st[t].k == k[t] && st[t].n_eligible == count[t]);
        if (k[t] > 0) {
            CHECK(st[t].last.key == ref[base + k[t] - 1].key);
            CHECK(st[t].last.id == ref[base + k[t] - 1].id);
            CHECK(st[t].sel_key[0] == ref[base].key);
            CHECK(st[t].sel_key[1] == ref[base + (k[t] + 1) / 2 - 1].key);
            CHECK(st[t].sel_key[2] == ref[base + k[t] / 2].key);
        }
        if (count[t] > k[t]) {
            int64_t m = count[t] - k[t];
            CHECK(st[t].rej_key[0] == ref[base + k[t]].key);
            CHECK(st[t].rej_key[1] == ref[base + k[t] + (m + 1) / 2 - 1].key);
            CHECK(st[t].rej_key[3] == ref[base + count[t] - 1].key);
        }
        base += (int)count[t];
    }
    int mismatch = 0;
    for (int i = 0; i < n; i++)
        mismatch += sel[i] != want[i];
    CHECK_MSG(mismatch == 0, "n %d nsub %d f %s: %d samples differ", n, nsub, fraction,
              mismatch);
    free(key), free(id), free(subset), free(elig), free(sel), free(ref);
    free(count), free(k), free(st), free(want);
}

static void test_radix_select(void)
{
    check_random_case(1000, 3, 7, "0.05", 1);     /* heavy ties: 7 values */
    check_random_case(3000, 5, 1, "0.1", 2);      /* every key tied: ids decide */
    check_random_case(2000, 4, 100000, "0.5", 3);
    check_random_case(500, 2, 50, "1", 4);        /* all selected, nothing rejected */
    check_random_case(1, 1, 3, "0.05", 5);
    check_random_case(0, 2, 3, "0.05", 6);        /* no samples at all */
}

/* Keys all equal: the lowest sample ids win, whatever the array order. */
static void test_tie_break(void)
{
    uint64_t key[6], id[6];
    int32_t subset[6] = {0, 0, 0, 0, 0, 0};
    uint8_t elig[6] = {1, 1, 1, 1, 0, 1}, sel[6];
    const int64_t lines[6] = {50, 7, 300, 8, 1, 9};
    for (int i = 0; i < 6; i++) {
        key[i] = select_key_from_double(i % 2 ? -0.0 : 0.0);
        id[i] = select_sample_id(i == 2 ? 0 : 1, lines[i]);
    }
    select_local_t loc = {6, key, id, subset, elig, 1};
    int64_t k = 3;
    select_subset_stats_t st;
    deft_err_t err;
    CHECK(select_lowest_k(comm_world(), &loc, &k, sel, &st, &err) == DEFT_OK);
    /* (0,300) < (1,7) < (1,8); (1,1) is not eligible */
    const uint8_t want[6] = {0, 1, 1, 1, 0, 0};
    CHECK(memcmp(sel, want, 6) == 0);
    CHECK(st.last.id == select_sample_id(1, 8));

    /* a duplicated sample id makes the selection ill-defined: refused */
    id[5] = id[1];
    k = 2;
    CHECK(select_lowest_k(comm_world(), &loc, &k, sel, &st, &err) == DEFT_ERR_FORMAT);
}

static void test_report_path(void)
{
    char *p = select_report_path("run/selected.jsonl");
    CHECK(!strcmp(p, "run/selected.report.json"));
    free(p);
    p = select_report_path("out.txt");
    CHECK(!strcmp(p, "out.txt.report.json"));
    free(p);
}

int main(int argc, char **argv)
{
    deft_err_t err;
    if (comm_init(&argc, &argv, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    test_exact_k();
    test_key_map();
    test_ids_and_hash();
    test_radix_select();
    test_tie_break();
    test_report_path();
    comm_finalize();
    TEST_DONE();
}
