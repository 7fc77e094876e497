/* A counter-based random number generator: value k of a stream is
 * splitmix64(seed, k), so the whole state is (seed, counter), it can be
 * saved in a checkpoint as two integers, and a fill of n values gives the
 * same numbers whatever the number of threads. Normals use Box-Muller. */
#ifndef DEFT_RNG_H
#define DEFT_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t seed;
    uint64_t counter;  /* how many 64-bit values were drawn so far */
} rng_t;

void rng_init(rng_t *r, uint64_t seed);
uint64_t rng_u64(rng_t *r);
double rng_uniform(rng_t *r);          /* [0, 1), 53 random bits */
uint64_t rng_below(rng_t *r, uint64_t n);  /* uniform on [0, n), no modulo bias; n > 0 */
double rng_normal(rng_t *r);           /* standard normal; draws two values */

/* x (n): independent normal(mean, std) values; draws 2 * ceil(n / 2)
 * values, in parallel with OpenMP. */
void rng_fill_normal(rng_t *r, float *x, int64_t n, float mean, float std);

/* A seed for a named sub-stream (e.g. one per tensor), so adding a stream
 * never shifts the numbers of another. */
uint64_t rng_derive(uint64_t seed, const char *name);

#endif
