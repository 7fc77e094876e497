/* The counter-based generator: reproducible from (seed, counter), fills
 * that do not depend on the thread count, and the first moments and tails
 * of its uniforms and normals. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "util/rng.h"

static void test_reproducible(void)
{
    rng_t a, b;
    rng_init(&a, 42);
    rng_init(&b, 42);
    for (int i = 0; i < 100; i++)
        CHECK(rng_u64(&a) == rng_u64(&b));
    /* a saved (seed, counter) resumes the stream */
    rng_t saved = a, resumed;
    uint64_t next = rng_u64(&a);
    rng_init(&resumed, saved.seed);
    resumed.counter = saved.counter;
    CHECK(rng_u64(&resumed) == next);
    /* different seeds, even adjacent ones, give different streams */
    rng_t c;
    rng_init(&c, 43);
    rng_init(&a, 42);
    int same = 0;
    for (int i = 0; i < 100; i++)
        same += rng_u64(&a) == rng_u64(&c);
    CHECK(same == 0);
    CHECK(rng_derive(1, "a") != rng_derive(1, "b") && rng_derive(1, "a") != rng_derive(2, "a"));
    CHECK(rng_derive(7, "model.norm.weight") == rng_derive(7, "model.norm.weight"));
}

static void test_fill_threads(void)
{
    enum { N = 100001 };
    float *x1 = malloc(sizeof(float) * N), *x4 = malloc(sizeof(float) * N);
    rng_t a, b;
    rng_init(&a, 7);
    rng_init(&b, 7);
    omp_set_num_threads(1);
    rng_fill_normal(&a, x1, N, 0.0f, 1.0f);
    omp_set_num_threads(4);
    rng_fill_normal(&b, x4, N, 0.0f, 1.0f);
    CHECK(memcmp(x1, x4, sizeof(float) * N) == 0);
    CHECK(a.counter == N + 1 && b.counter == a.counter);
    /* the fill continues the same stream as single draws */
    rng_t c;
    rng_init(&c, 7);
    CHECK((float)rng_normal(&c) == x1[0]);
    free(x1);
    free(x4);
}

static void test_moments(void)
{
    enum { N = 1 << 20 };
    float *x = malloc(sizeof(float) * N);
    rng_t r;
    rng_init(&r, 2024);
    rng_fill_normal(&r, x, N, 0.5f, 0.02f);
    double s = 0, s2 = 0, s4 = 0;
    int beyond3 = 0;
    for (int i = 0; i < N; i++) {
        double z = (x[i] - 0.5) / 0.02;
        s += z;
        s2 += z * z;
        s4 += z * z * z * z;
        beyond3 += fabs(z) > 3;
    }
    double mean = s / N, var = s2 / N - mean * mean;
    /* standard errors at N = 2^20: mean 0.001, variance 0.0014, kurtosis 0.005 */
    CHECK_NEAR(mean, 0.0, 0.005);
    CHECK_NEAR(var, 1.0, 0.007);
    CHECK_NEAR(s4 / N, 3.0, 0.03);
    CHECK_NEAR((double)beyond3 / N, 0.0026998, 0.0003);
    double u = 0;
    int buckets[10] = {0}, outside = 0;
    for (int i = 0; i < N; i++) {
        double v = rng_uniform(&r);
        if (!(v >= 0 && v < 1)) {
            outside++;
            continue;
        }
        u += v;
        buckets[(int)(v * 10)]++;
    }
    CHECK(outside == 0);
    CHECK_NEAR(u / N, 0.5, 0.002);
    for (int i = 0; i < 10; i++)
        CHECK_NEAR(buckets[i] / (double)N, 0.1, 0.002);
    int hist[3] = {0};
    for (int i = 0; i < 30000; i++)
        hist[rng_below(&r, 3)]++;
    for (int i = 0; i < 3; i++)
        CHECK(hist[i] > 9500 && hist[i] < 10500);
    free(x);
}

int main(void)
{
    test_reproducible();
    test_fill_threads();
    test_moments();
    TEST_DONE();
}
