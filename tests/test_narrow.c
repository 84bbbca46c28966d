/* Narrow products of the randomized SVD (src/narrow.c): Y = W·X and Z = Wᵀ·Y against cblas_sgemm on shapes that
 * are not multiples of any block size, for every ISA variant the CPU runs and 1–3 threads; bitwise determinism
 * across thread counts and calls. Attention's small products (pissa__small_ab, pissa__small_abt) against
 * cblas_sgemm for every supported width, transposed or not, overwriting or accumulating. */
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

/* op(A)·B and A·Bᵀ with the small dimension d = 8..64 and the others around the kernels' blocks (rows in blocks of
 * 3, 4, 6 or 12, panels of 16 keys, chunks of 32 columns); row strides wider than the rows, with sentinels between,
 * as attention's strided head slices are. */
static void small_products_match_sgemm_for_every_width_isa_and_mode(void **state) {
    (void)state;
    static const int64_t dims[] = {1, 5, 12, 13, 16, 31, 64, 130};
    pissa__narrow_isa best = pissa__narrow_best_isa();
    assert_false(pissa__small_supported(0) || pissa__small_supported(4) || pissa__small_supported(72));
    for (int isa = PISSA__NARROW_GENERIC; isa <= (int)best; isa++)
        for (int64_t d = 8; d <= 64; d += 8) {
            assert_true(pissa__small_supported(d));
            for (size_t a = 0; a < sizeof dims / sizeof dims[0]; a++)
                for (size_t b = 0; b < sizeof dims / sizeof dims[0]; b++) {
                    int64_t M = dims[a], L = dims[b], pad = 3; /* L: the long dimension that is not d */
                    int64_t lo = (M > L ? M : L) + pad, ld = (lo > d ? lo : d) + pad;
                    size_t size = (size_t)(lo * ld);
                    float *A = malloc(sizeof(float) * size), *B = malloc(sizeof(float) * size);
                    float *C = filled(size, SENTINEL), *R = filled(size, SENTINEL);
                    tu_gaussian(A, size, (uint64_t)(7 * a + b + 1));
                    tu_gaussian(B, size, (uint64_t)(11 * b + a + 2));
                    /* C (M, L) = 0.5·A (M, d)·B (L, d)ᵀ */
                    pissa__small_abt((pissa__narrow_isa)isa, M, L, d, 0.5f, A, ld, B, ld, C, ld);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)L, (int)d, 0.5f, A, (int)ld, B,
                                (int)ld, 0.0f, R, (int)ld);
                    assert_true(rel_diff(C, R, L, M, ld) < 1e-5); /* row-major (M, L) read as col-major (L, M) */
                    for (int tr = 0; tr <= 1; tr++)
                        for (int acc = 0; acc <= 1; acc++) {
                            /* C (M, d) = 1.5·op(A)·B (L, d) (+ C); op(A) (M, L) is A or the transpose of A (L, M) */
                            memcpy(C, R, sizeof(float) * size); /* so that the gaps must stay equal */
                            for (int64_t i = 0; i < M; i++)
                                for (int64_t j = 0; j < d; j++) C[i * ld + j] = R[i * ld + j] = (float)(i - j) / 7;
                            pissa__small_ab((pissa__narrow_isa)isa, tr, M, d, L, 1.5f, A, ld, B, ld, acc, C, ld);
                            cblas_sgemm(CblasRowMajor, tr ? CblasTrans : CblasNoTrans, CblasNoTrans, (int)M, (int)d,
                                        (int)L, 1.5f, A, (int)ld, B, (int)ld, acc ? 1.0f : 0.0f, R, (int)ld);
                            assert_true(rel_diff(C, R, d, M, ld) < 1e-5);
                            for (int64_t i = 0; i < M; i++)
                                for (int64_t j = d; j < ld; j++) assert_true(C[i * ld + j] == R[i * ld + j]);
                        }
                    free(A), free(B), free(C), free(R);
                }
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(narrow_products_match_sgemm_on_odd_shapes_for_every_isa_and_thread_count),
        cmocka_unit_test(narrow_products_are_bitwise_identical_across_thread_counts_and_calls),
        cmocka_unit_test(small_products_match_sgemm_for_every_width_isa_and_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
