/* xoshiro256** (Blackman & Vigna), seeded through splitmix64; Box–Muller normals.
 * One generator per use, so results depend only on the seed, never on threads. */
#include <math.h>

#include "internal.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void pissa__rng_seed(pissa_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pissa__rng_u64(pissa_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void pissa__rng_skip(pissa_rng *r, uint64_t n) {
    while (n--) (void)pissa__rng_u64(r);
}

double pissa__rng_uniform(pissa_rng *r) { return (double)(pissa__rng_u64(r) >> 11) * 0x1.0p-53; }

double pissa__rng_normal(pissa_rng *r) {
    double u1 = 1.0 - pissa__rng_uniform(r); /* (0, 1]: log is finite */
    double u2 = pissa__rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
