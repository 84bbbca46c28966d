/* Small helpers shared by the benchmark programs, on top of the examples' cli.h (cli_prog, cli_check, cli_now),
 * which every benchmark links. Header-only; benchmarks may exit on failure. */
#ifndef PISSA_BENCHUTIL_H
#define PISSA_BENCHUTIL_H

#include <stdlib.h>

#include "cli.h"

/* qsort comparator for medians. */
static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) cli_fail("out of memory (%zu bytes)", n);
    return p;
}

#endif
