/* Small helpers shared by the benchmark programs (header-only; benchmarks may exit on failure). */
#ifndef PISSA_BENCHUTIL_H
#define PISSA_BENCHUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "pissa.h"

/* Program name used in failure messages; each benchmark sets it first thing in main. */
static const char *bench_prog = "bench";

static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* qsort comparator for medians. */
static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "%s: out of memory (%zu bytes)\n", bench_prog, n);
        exit(1);
    }
    return p;
}

static inline void check(pissa_status st, const char *what) {
    if (st != PISSA_OK) {
        fprintf(stderr, "%s: %s: %s: %s\n", bench_prog, what, pissa_status_name(st), pissa_last_error());
        exit(1);
    }
}

#endif
