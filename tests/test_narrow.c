/* Narrow products of the randomized SVD (src/narrow.c): Y = W·X and Z = Wᵀ·Y against cblas_sgemm on shapes that
 * are not multiples of any block size, for every ISA variant the CPU runs and 1–3 threads; bitwise determinism
 * across thread counts and calls. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "narrow.h"
#include "testutil.h"

#define SENTINEL 12345.0f

typedef struct shape {
    int64_t m, n, q;
} shape;

/* Odd sizes around the kernels' blocks (row groups of 12, panels of 8/16/24 columns, tiles of 256 columns), and
 * two large enough (m·n·q > 2e6) that the work is split between threads. */
static const shape shapes[] = {{1, 1, 1},     {7, 5, 3},     {13, 29, 8},    {37, 129, 13},  {200, 77, 24},
                               {25, 300, 17}, {130, 257, 65}, {517, 1031, 37}, {1003, 611, 24}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* max |a − b| / max |b| over the first rows of q columns of two col-major blocks with leading dimension ld. */
static double rel_diff(const float *a, const float *b, int64_t rows, int64_t q, int64_t ld) {
    double d = 0, s = 0;
    for (int64_t c = 0; c < q; c++)
        for (int64_t i = 0; i < rows; i++) {
            d = fmax(d, fabs((double)a[c * ld + i] - b[c * ld + i]));
            s = fmax(s, fabs((double)b[c * ld + i]));
        }
    return s > 0 ? d / s : d;
}

/* Rows past `rows` in each column (the leading-dimension gap) are left as they were. */
static void assert_gap_untouched(const float *a, int64_t rows, int64_t q, int64_t ld) {
    for (int64_t c = 0; c < q; c++)
        for (int64_t i = rows; i < ld; i++) assert_true(a[c * ld + i] == SENTINEL);
}

static float *filled(size_t n, float v) {
    float *p = malloc(sizeof(float) * n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = v;
    return p;
}

static void narrow_products_match_sgemm_on_odd_shapes_for_every_isa_and_thread_count(void **state) {
    (void)state;
    pissa__narrow_isa best = pissa__narrow_best_isa();
    for (size_t s = 0; s < N_SHAPES; s++) {
        int64_t m = shapes[s].m, n = shapes[s].n, q = shapes[s].q;
        int64_t ldx = n + 3, ldy = m + 5; /* leading dimensions larger than the blocks */
        float *W = malloc(sizeof(float) * (size_t)(m * n));
        float *X = filled((size_t)(ldx * q), SENTINEL), *Yref = filled((size_t)(ldy * q), SENTINEL);
        float *Zref = filled((size_t)(ldx * q), SENTINEL);
        float *work = malloc(sizeof(float) * pissa__narrow_work_floats(m, n, q));
        assert_non_null(W);
        assert_non_null(work);
        tu_gaussian(W, (size_t)(m * n), 100 + s);
        for (int64_t c = 0; c < q; c++) tu_gaussian(X + c * ldx, (size_t)n, 200 + s * 1000 + (uint64_t)c);
        /* W row-major (m, n) is the col-major Wᵀ (n, m) with leading dimension n. */
        cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)m, (int)q, (int)n, 1.0f, W, (int)n, X, (int)ldx, 0.0f,
                    Yref, (int)ldy);
        cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)q, (int)m, 1.0f, W, (int)n, Yref, (int)ldy,
                    0.0f, Zref, (int)ldx);
        for (int isa = PISSA__NARROW_GENERIC; isa <= (int)best; isa++)
            for (int threads = 1; threads <= 3; threads++) {
                float *Y = filled((size_t)(ldy * q), SENTINEL), *Z = filled((size_t)(ldx * q), SENTINEL);
                pissa__narrow_wx((pissa__narrow_isa)isa, threads, W, m, n, X, ldx, q, Y, ldy, work);
                pissa__narrow_wty((pissa__narrow_isa)isa, threads, W, m, n, Yref, ldy, q, Z, ldx, work);
                double ey = rel_diff(Y, Yref, m, q, ldy), ez = rel_diff(Z, Zref, n, q, ldx);
                if (ey > 1e-5 || ez > 1e-5)
                    print_error("W (%lld, %lld) q=%lld isa=%d threads=%d: rel. diff W·X %.2e, Wᵀ·Y %.2e\n",
                                (long long)m, (long long)n, (long long)q, isa, threads, ey, ez);
                assert_true(ey <= 1e-5);
                assert_true(ez <= 1e-5);
                assert_gap_untouched(Y, m, q, ldy);
                assert_gap_untouched(Z, n, q, ldx);
                free(Y);
                free(Z);
            }
        free(W);
        free(X);
        free(Yref);
        free(Zref);
        free(work);
    }
}

static void narrow_products_are_bitwise_identical_across_thread_counts_and_calls(void **state) {
    (void)state;
    const int64_t m = 611, n = 1003, q = 24; /* m·n·q large enough to be split between threads */
    float *W = malloc(sizeof(float) * (size_t)(m * n)), *X = malloc(sizeof(float) * (size_t)(n * q));
    float *Y[4], *Z[4];
    float *work = malloc(sizeof(float) * pissa__narrow_work_floats(m, n, q));
    assert_non_null(W);
    assert_non_null(X);
    assert_non_null(work);
    tu_gaussian(W, (size_t)(m * n), 7);
    tu_gaussian(X, (size_t)(n * q), 8);
    pissa__narrow_isa isa = pissa__narrow_best_isa();
    const int threads[4] = {1, 2, 3, 2}; /* the last repeats 2: a second call with the same count */
    for (int t = 0; t < 4; t++) {
        Y[t] = malloc(sizeof(float) * (size_t)(m * q));
        Z[t] = malloc(sizeof(float) * (size_t)(n * q));
        assert_non_null(Y[t]);
        assert_non_null(Z[t]);
        pissa__narrow_wx(isa, threads[t], W, m, n, X, n, q, Y[t], m, work);
        pissa__narrow_wty(isa, threads[t], W, m, n, Y[0], m, q, Z[t], n, work);
    }
    for (int t = 1; t < 4; t++) {
        assert_memory_equal(Y[t], Y[0], sizeof(float) * (size_t)(m * q));
        assert_memory_equal(Z[t], Z[0], sizeof(float) * (size_t)(n * q));
    }
    for (int t = 0; t < 4; t++) {
        free(Y[t]);
        free(Z[t]);
    }
    free(W);
    free(X);
    free(work);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(narrow_products_match_sgemm_on_odd_shapes_for_every_isa_and_thread_count),
        cmocka_unit_test(narrow_products_are_bitwise_identical_across_thread_counts_and_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
