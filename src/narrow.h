/* Products with a narrow side. Narrow products of a full row-major W (m, n) with a skinny block, the inner loop of
 * the randomized SVD and of LoRA's products with its rank-r side (ops.c):
 *   Y (m, q) = W·X,  X (n, q)        pissa__narrow_wx
 *   Z (n, q) = Wᵀ·Y, Y (m, q)        pissa__narrow_wty
 * X, Y and Z are column-major with leading dimensions, as LAPACK wants them. W is streamed once per product
 * (OpenBLAS packs all of W on every call instead); the skinny operand stays in L2.
 *
 * Every output element is the same left-to-right sum over W's row or column whatever the thread count or the
 * blocking, so results are bitwise identical for 1 or more threads; they depend on the ISA variant only (the
 * vector variants use FMA, the generic one may not). */
#ifndef PISSA_NARROW_H
#define PISSA_NARROW_H

#include <stddef.h>
#include <stdint.h>

typedef enum pissa__narrow_isa {
    PISSA__NARROW_GENERIC = 0, /* plain C, whatever the compiler makes of it */
    PISSA__NARROW_AVX2 = 1,    /* x86-64 AVX2 + FMA (also what AVX-512 machines run) */
} pissa__narrow_isa;

/* The fastest variant the running CPU supports. */
pissa__narrow_isa pissa__narrow_best_isa(void);

/* Whether the narrow kernels beat cblas_sgemm for W (m, n) and width q on this build and CPU (measured rule,
 * see narrow.c). */
int pissa__narrow_preferred(int64_t m, int64_t n, int64_t q);

/* Floats of scratch both products need for W (m, n) and width q (they share it). */
size_t pissa__narrow_work_floats(int64_t m, int64_t n, int64_t q);

/* Y (m, q) = W·X. X (n, q) col-major, ldx >= n; Y (m, q) col-major, ldy >= m; work as sized above.
 * nthreads <= 1 runs on the calling thread; thread creation failures fall back to it (same result). */
void pissa__narrow_wx(pissa__narrow_isa isa, int nthreads, const float *W, int64_t m, int64_t n, const float *X,
                      int64_t ldx, int64_t q, float *Y, int64_t ldy, float *work);

/* Z (n, q) = Wᵀ·Y. Y (m, q) col-major, ldy >= m; Z (n, q) col-major, ldz >= n. */
void pissa__narrow_wty(pissa__narrow_isa isa, int nthreads, const float *W, int64_t m, int64_t n, const float *Y,
                       int64_t ldy, int64_t q, float *Z, int64_t ldz, float *work);

/* ---- small products of attention: one dimension is a head's width d (a multiple of 8, at most 64) ----
 * Single-threaded (attention runs them inside its own tasks), row-major, fixed summation order (bitwise stable). */

/* Whether d is a width these products take. */
int pissa__small_supported(int64_t d);
/* C (M, N) = alpha·op(A)·B, plus C when ACCUMULATE, for N = d: op(A) (M, K) is A (M, K) with row stride lda, or
 * with TRANSPOSED the transpose of A (K, M); B (K, N) row stride ldb. */
void pissa__small_ab(pissa__narrow_isa isa, int transposed, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, int accumulate, float *C, int64_t ldc);
/* C (M, N) = alpha·A·Bᵀ for K = d: A (M, K), B (N, K). */
void pissa__small_abt(pissa__narrow_isa isa, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float *C, int64_t ldc);

#endif
