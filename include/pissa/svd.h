/* libpissa — truncated SVD of a dense float32 matrix, exact (LAPACK gesdd) or randomized
 * (Halko, Martinsson & Tropp 2011, Alg. 4.4 with QR re-orthonormalisation after every product).
 *
 * All matrices are row-major float32. For W (m, n) and rank r <= min(m, n) both functions return the top r
 * singular triplets, singular values in descending order:
 *   U  (m, r)   left singular vectors (orthonormal columns)
 *   S  (r)      singular values
 *   Vt (r, n)   right singular vectors as rows (orthonormal rows)
 * so that U·diag(S)·Vt approximates W. Output buffers are caller-owned; any of U, Vt may be NULL when not
 * wanted (S is required). W is not modified. */
#ifndef PISSA_SVD_H
#define PISSA_SVD_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Exact truncated SVD: LAPACKE_sgesdd on a copy of W, the first r triplets kept. */
PISSA_API pissa_status pissa_svd_exact(const float *W, int64_t m, int64_t n, int64_t r, float *U, float *S, float *Vt);

/* Default oversampling p of the randomized SVD (the sketch has q = r + p columns). p = 0 is the setting
 * PEFT uses, torch.svd_lowrank(W, q=r, niter=N). */
#define PISSA_RSVD_DEFAULT_OVERSAMPLE 8

typedef struct pissa_rsvd_opts {
    int64_t oversample; /* p >= 0; q = min(r + p, min(m, n)) */
    int niter;          /* N >= 0 subspace (power) iterations */
    uint64_t seed;      /* seeds the Gaussian test matrix */
} pissa_rsvd_opts;

/* opts->oversample = PISSA_RSVD_DEFAULT_OVERSAMPLE, niter = 4, seed = 0. */
PISSA_API pissa_rsvd_opts pissa_rsvd_default_opts(void);

/* Randomized truncated SVD. Deterministic for a given seed and BLAS thread count.
 * Algorithm (for m >= n; for m < n it runs on Wᵀ and swaps the factors, as torch.svd_lowrank does):
 *   Ω (n, q) ~ N(0, 1) from the seed; Q = qr(W·Ω);
 *   N times: Q = qr(Wᵀ·Q); Q = qr(W·Q);
 *   B = Qᵀ·W (q, n); B = Ũ·diag(S)·Vt (gesdd); U = Q·Ũ; keep the top r. */
PISSA_API pissa_status pissa_svd_randomized(const float *W, int64_t m, int64_t n, int64_t r, const pissa_rsvd_opts *opts,
                                            float *U, float *S, float *Vt);

/* All min(m, n) singular values of W (descending), through gesdd without vectors. S has min(m, n) floats. */
PISSA_API pissa_status pissa_singular_values(const float *W, int64_t m, int64_t n, float *S);

#ifdef __cplusplus
}
#endif
#endif
