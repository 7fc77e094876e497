/* Counter-based splitmix64 generator (Steele, Lea and Flood, "Fast
 * splittable pseudorandom number generators", 2014) with Box-Muller normals. */
#include "util/rng.h"

#include <math.h>

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Value k of stream `seed`: the golden-ratio increment of splitmix64, with
 * the seed itself mixed first so that nearby seeds give unrelated streams. */
static uint64_t value_at(uint64_t seed, uint64_t k)
{
    return mix(mix(seed) + (k + 1) * 0x9e3779b97f4a7c15ull);
}

static double to_unit(uint64_t u) { return (double)(u >> 11) * 0x1p-53; }

void rng_init(rng_t *r, uint64_t seed)
{
    r->seed = seed;
    r->counter = 0;
}

uint64_t rng_u64(rng_t *r) { return value_at(r->seed, r->counter++); }

double rng_uniform(rng_t *r) { return to_unit(rng_u64(r)); }

uint64_t rng_below(rng_t *r, uint64_t n)
{
    /* reject the top partial block so every residue is equally likely */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t u;
    do
        u = rng_u64(r);
    while (u >= limit);
    return u % n;
}

/* Box-Muller on draws a, b: 1 - u keeps the logarithm's argument in (0, 1]. */
static void box_muller(uint64_t a, uint64_t b, double *z0, double *z1)
{
    double rad = sqrt(-2.0 * log(1.0 - to_unit(a)));
    double ang = 2.0 * M_PI * to_unit(b);
    *z0 = rad * cos(ang);
    *z1 = rad * sin(ang);
}

double rng_normal(rng_t *r)
{
    uint64_t a = rng_u64(r), b = rng_u64(r);
    double z0, z1;
    box_muller(a, b, &z0, &z1);
    return z0;
}

void rng_fill_normal(rng_t *r, float *x, int64_t n, float mean, float std)
{
    int64_t pairs = (n + 1) / 2;
    uint64_t base = r->counter;
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < pairs; p++) {
        double z0, z1;
        box_muller(value_at(r->seed, base + 2 * (uint64_t)p),
                   value_at(r->seed, base + 2 * (uint64_t)p + 1), &z0, &z1);
        x[2 * p] = mean + std * (float)z0;
        if (2 * p + 1 < n)
            x[2 * p + 1] = mean + std * (float)z1;
    }
    r->counter += 2 * (uint64_t)pairs;
}

uint64_t rng_derive(uint64_t seed, const char *name)
{
    /* FNV-1a over the name, then mixed with the seed */
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return mix(seed ^ mix(h));
}
