/* Truncated SVD of a row-major float32 matrix: exact (LAPACK gesdd) and randomized (Halko, Martinsson & Tropp).
 *
 * Layout: a row-major W (m, n) is, byte for byte, the column-major matrix Wᵀ (n, m) with leading dimension n.
 * Everything here talks to LAPACK in column-major order on buffers we own, so LAPACKE never makes the hidden
 * transposed copies its row-major wrappers do, and W itself is never transposed or copied by the randomized path. */
#include <cblas.h>
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "narrow.h"

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static pissa_status check_args(const char *fn, const float *W, int64_t m, int64_t n, int64_t r, const float *S) {
    if (!W || !S) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: W and S must not be NULL", fn);
    if (m < 1 || n < 1)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: matrix shape (%lld, %lld) must be positive", fn, (long long)m,
                           (long long)n);
    if (m > INT_MAX || n > INT_MAX)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: matrix shape (%lld, %lld) exceeds LAPACK's int range", fn,
                           (long long)m, (long long)n);
    if ((uint64_t)m * (uint64_t)n > SIZE_MAX / sizeof(float))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: matrix (%lld, %lld) is too large", fn, (long long)m,
                           (long long)n);
    if (r < 1 || r > min64(m, n))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: rank r=%lld must be in 1..min(m, n)=%lld for W (%lld, %lld)", fn,
                           (long long)r, (long long)min64(m, n), (long long)m, (long long)n);
    return PISSA_OK;
}

static pissa_status lapack_fail(const char *fn, const char *routine, lapack_int info) {
    if (info == LAPACK_WORK_MEMORY_ERROR || info == LAPACK_TRANSPOSE_MEMORY_ERROR)
        return pissa__fail(PISSA_ERR_NOMEM, "%s: %s could not allocate its workspace", fn, routine);
    if (info < 0) /* LAPACKE reports NaN in the input as a bad argument */
        return pissa__fail(PISSA_ERR_NUMERIC, "%s: %s rejected argument %d (info=%d; NaN/Inf in the matrix?)", fn,
                           routine, (int)-info, (int)info);
    return pissa__fail(PISSA_ERR_NUMERIC, "%s: %s did not converge (info=%d)", fn, routine, (int)info);
}

/* ---- exact ---------------------------------------------------------------------------------------------------- */

/* gesdd on the column-major view Wᵀ (n, m) = V·S·Uᵀ: its "U" (n, k) holds W's right singular vectors as
 * columns, i.e. Vt's rows contiguously, and its "VT" (k, m) column-major is W's U (m, k) row-major. */
pissa_status pissa_svd_exact(const float *W, int64_t m, int64_t n, int64_t r, float *U, float *S, float *Vt) {
    PISSA_TRY(check_args("pissa_svd_exact", W, m, n, r, S));
    int64_t k = min64(m, n);
    int vectors = U || Vt;
    float *A = pissa__alloc((size_t)(m * n), sizeof(float)); /* (n, m) col-major copy, destroyed by gesdd */
    float *sv = pissa__alloc((size_t)k, sizeof(float));      /* (k) */
    float *lu = vectors ? pissa__alloc((size_t)(n * k), sizeof(float)) : NULL;  /* (n, k) col-major: V of W */
    float *lvt = vectors ? pissa__alloc((size_t)(k * m), sizeof(float)) : NULL; /* (k, m) col-major: U of W */
    pissa_status st = PISSA_OK;
    if (!A || !sv || (vectors && (!lu || !lvt))) {
        st = pissa__fail(PISSA_ERR_NOMEM, "pissa_svd_exact: out of memory for W (%lld, %lld)", (long long)m,
                         (long long)n);
        goto done;
    }
    memcpy(A, W, sizeof(float) * (size_t)(m * n));
    lapack_int info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, vectors ? 'S' : 'N', (lapack_int)n, (lapack_int)m, A,
                                     (lapack_int)n, sv, lu, (lapack_int)n, lvt, (lapack_int)k);
    if (info != 0) {
        st = lapack_fail("pissa_svd_exact", "sgesdd", info);
        goto done;
    }
    memcpy(S, sv, sizeof(float) * (size_t)r);
    if (Vt) memcpy(Vt, lu, sizeof(float) * (size_t)(r * n));
    if (U)
        for (int64_t i = 0; i < m; i++) memcpy(U + i * r, lvt + i * k, sizeof(float) * (size_t)r);
done:
    free(A);
    free(sv);
    free(lu);
    free(lvt);
    return st;
}

pissa_status pissa_singular_values(const float *W, int64_t m, int64_t n, float *S) {
    PISSA_TRY(check_args("pissa_singular_values", W, m, n, 1, S));
    float *A = pissa__alloc((size_t)(m * n), sizeof(float)); /* (n, m) col-major copy */
    if (!A)
        return pissa__fail(PISSA_ERR_NOMEM, "pissa_singular_values: out of memory for W (%lld, %lld)", (long long)m,
                           (long long)n);
    memcpy(A, W, sizeof(float) * (size_t)(m * n));
    float dummy = 0; /* U, VT are not referenced with jobz 'N' */
    lapack_int info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)n, (lapack_int)m, A, (lapack_int)n, S, &dummy,
                                     1, &dummy, 1);
    free(A);
    return info ? lapack_fail("pissa_singular_values", "sgesdd", info) : PISSA_OK;
}

/* ---- randomized ----------------------------------------------------------------------------------------------- */

/* Why p = PISSA_RSVD_DEFAULT_OVERSAMPLE = 8: HMT 2011 (Thm 10.5/10.6) bound the expected error of a q = r + p
 * sketch by (1 + sqrt(r/(p−1)))·σ_{r+1} + e·sqrt(r+p)/p·(Σ_{j>r} σ_j²)^{1/2} before power iterations (which raise
 * the σ ratios to the power 2N+1); the bound needs p >= 2 and its factors fall steeply until p ≈ 5–10, after
 * which extra columns buy little. HMT §4.2 recommend p = 5 or 10; torch's docs say q = k + 5..10. p = 0 (PEFT's
 * setting) leaves the r-th singular pair poorly resolved. The cost grows with q, but less than (r+p)/r since
 * every product streams all of W whatever q is (r = 16 on 4096×4096: ≈1.5× the time of p = 0). */

pissa_rsvd_opts pissa_rsvd_default_opts(void) {
    pissa_rsvd_opts o = {.oversample = PISSA_RSVD_DEFAULT_OVERSAMPLE, .niter = 4, .seed = 0};
    return o;
}

/* The sketch runs on M = W (a = m rows, b = n columns) when m >= n and on M = Wᵀ otherwise, so that b = min(m, n)
 * >= q and the small SVD is of a (q, b) matrix. (torch 1.13 also takes the transpose when n > q; sketching the
 * row or the column space costs the same 2N+2 passes over W and has the same error distribution.)
 * In memory W is the column-major A = Wᵀ (n, m), lda = n, so M = Aᵀ (W) or M = A (Wᵀ): only the cblas transpose
 * flags differ. Tall-skinny blocks are column-major. */
typedef struct rsvd_ctx {
    const float *W;
    int64_t lda;       /* n */
    int64_t a, b, q;   /* M (a, b); sketch width q */
    int64_t qg;        /* width of the products: q rounded up to a multiple of 16, zero columns past q */
    int transposed;    /* M = Wᵀ */
    int64_t m, n;      /* W (m, n) */
    int narrow;        /* products by pissa__narrow_* rather than sgemm */
    pissa__narrow_isa isa;
    int nthreads;
    float *nwork;      /* pissa__narrow_work_floats(m, n, q) */
    float *tau;        /* (q) Householder scalars */
    float *work;       /* QR workspace, sized once for both block shapes */
    lapack_int lwork;
} rsvd_ctx;

/* Y (a, qg) = M·X, X (b, qg): one pass over the whole of W. The narrow kernels write the first q columns only;
 * the others stay zero. */
static void apply_M(const rsvd_ctx *c, const float *X, float *Y) {
    if (c->narrow) {
        if (c->transposed)
            pissa__narrow_wty(c->isa, c->nthreads, c->W, c->m, c->n, X, c->b, c->q, Y, c->a, c->nwork);
        else
            pissa__narrow_wx(c->isa, c->nthreads, c->W, c->m, c->n, X, c->b, c->q, Y, c->a, c->nwork);
        return;
    }
    cblas_sgemm(CblasColMajor, c->transposed ? CblasNoTrans : CblasTrans, CblasNoTrans, (int)c->a, (int)c->qg,
                (int)c->b, 1.0f, c->W, (int)c->lda, X, (int)c->b, 0.0f, Y, (int)c->a);
}

/* Z (b, qg) = Mᵀ·Y, Y (a, qg). */
static void apply_Mt(const rsvd_ctx *c, const float *Y, float *Z) {
    if (c->narrow) {
        if (c->transposed)
            pissa__narrow_wx(c->isa, c->nthreads, c->W, c->m, c->n, Y, c->a, c->q, Z, c->b, c->nwork);
        else
            pissa__narrow_wty(c->isa, c->nthreads, c->W, c->m, c->n, Y, c->a, c->q, Z, c->b, c->nwork);
        return;
    }
    cblas_sgemm(CblasColMajor, c->transposed ? CblasTrans : CblasNoTrans, CblasNoTrans, (int)c->b, (int)c->qg,
                (int)c->a, 1.0f, c->W, (int)c->lda, Y, (int)c->a, 0.0f, Z, (int)c->b);
}

/* Y (rows, q) col-major ← the Q factor of its thin QR (Householder: geqrf then orgqr, as torch.linalg.qr). */
static lapack_int orthonormalise(rsvd_ctx *c, float *Y, int64_t rows) {
    lapack_int info = LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)rows, (lapack_int)c->q, Y, (lapack_int)rows,
                                          c->tau, c->work, c->lwork);
    if (info) return info;
    return LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, (lapack_int)rows, (lapack_int)c->q, (lapack_int)c->q, Y,
                               (lapack_int)rows, c->tau, c->work, c->lwork);
}

/* Largest workspace geqrf/orgqr want for a (rows, q) block; -1 on failure. */
static lapack_int qr_lwork(int64_t rows, int64_t q) {
    float w1 = 0, w2 = 0, dummy = 0;
    if (LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)rows, (lapack_int)q, &dummy, (lapack_int)rows, &dummy, &w1,
                            -1) ||
        LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, (lapack_int)rows, (lapack_int)q, (lapack_int)q, &dummy, (lapack_int)rows,
                            &dummy, &w2, -1))
        return -1;
    return (lapack_int)fmaxf(w1, w2);
}

pissa_status pissa_svd_randomized(const float *W, int64_t m, int64_t n, int64_t r, const pissa_rsvd_opts *opts,
                                  float *U, float *S, float *Vt) {
    static const char *fn = "pissa_svd_randomized";
    PISSA_TRY(check_args(fn, W, m, n, r, S));
    if (!opts) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: opts must not be NULL", fn);
    if (opts->oversample < 0 || opts->niter < 0)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: oversample (%lld) and niter (%d) must be >= 0", fn,
                           (long long)opts->oversample, opts->niter);
    int64_t k = min64(m, n);
    rsvd_ctx c = {.W = W, .lda = n, .transposed = m < n, .m = m, .n = n};
    c.a = c.transposed ? n : m;
    c.b = k;
    c.q = opts->oversample > k - r ? k : r + opts->oversample;
    /* OpenBLAS 0.3.21 (2 threads) is slow on skinny products whose width is not a multiple of 16, presumably
     * from edge kernels after its thread split: on 4096×4096, q = 24 took 14.7 ms per product and q = 32 11.9 ms
     * (q = 136: 40.7 ms, 144: 36.4 ms). Columns past q start at zero and stay zero through every product (for
     * finite W); QR and the small SVD never see them, so the padding changes the time only. */
    c.qg = (c.q + 15) / 16 * 16;
    const int64_t a = c.a, b = c.b, q = c.q, qg = c.qg;
    /* OpenBLAS packs all of W on every product and reaches 60–95 GFLOP/s on these shapes; the narrow kernels
     * stream W once (see narrow.c for the rule that picks them). */
    c.narrow = pissa__narrow_preferred(m, n, q);
    c.isa = pissa__narrow_best_isa();
    c.nthreads = pissa_get_num_threads();
    c.nwork = c.narrow ? pissa__alloc(pissa__narrow_work_floats(m, n, q), sizeof(float)) : NULL;

    float *Y = pissa__calloc((size_t)(a * qg), sizeof(float)); /* (a, qg) col-major: M·X, then Q */
    float *X = pissa__calloc((size_t)(b * qg), sizeof(float)); /* (b, qg) col-major: Ω, Mᵀ·Q, then Bᵀ, then V */
    float *Rt = pissa__alloc((size_t)(q * q), sizeof(float)); /* (q, q) col-major: Ũᵀ of B = Ũ·S·Vᵀ */
    float *sv = pissa__alloc((size_t)q, sizeof(float));
    lapack_int *iwork = pissa__alloc((size_t)(8 * q), sizeof(lapack_int));
    float *svd_work = NULL;
    c.tau = pissa__alloc((size_t)q, sizeof(float));
    lapack_int lw_a = qr_lwork(a, q), lw_b = qr_lwork(b, q);
    c.lwork = lw_a > lw_b ? lw_a : lw_b;
    c.work = c.lwork > 0 ? pissa__alloc((size_t)c.lwork, sizeof(float)) : NULL;
    pissa_status st = PISSA_OK;
    lapack_int info = 0;
    if (!Y || !X || !Rt || !sv || !iwork || !c.tau || !c.work || (c.narrow && !c.nwork)) {
        st = c.lwork <= 0 ? pissa__fail(PISSA_ERR_NUMERIC, "%s: QR workspace query failed", fn)
                          : pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory for W (%lld, %lld), q=%lld", fn,
                                        (long long)m, (long long)n, (long long)q);
        goto done;
    }

    /* Ω (b, q) ~ N(0, 1), drawn serially so the sketch depends on the seed only; column by column, so a larger
     * p extends the same sketch (the error is then non-increasing in p). */
    pissa_rng rng;
    pissa__rng_seed(&rng, opts->seed);
    for (int64_t i = 0; i < b * q; i++) X[i] = (float)pissa__rng_normal(&rng);

    /* Range finder (HMT Alg. 4.4): Q = qr(M·Ω); N times Q = qr(Mᵀ·Q), Q = qr(M·Q). */
    apply_M(&c, X, Y);
    if ((info = orthonormalise(&c, Y, a))) goto lapack_error;
    for (int it = 0; it < opts->niter; it++) {
        apply_Mt(&c, Y, X);
        if ((info = orthonormalise(&c, X, b))) goto lapack_error;
        apply_M(&c, X, Y);
        if ((info = orthonormalise(&c, Y, a))) goto lapack_error;
    }

    /* B = Qᵀ·M (q, b), held as Bᵀ = Mᵀ·Q (b, q). Bᵀ = V·S·Ũᵀ; gesdd 'O' writes V over Bᵀ and Ũᵀ into Rt. */
    apply_Mt(&c, Y, X);
    float wq = 0, dummy_u = 0; /* U is not referenced with jobz 'O' when b >= q */
    info = LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, 'O', (lapack_int)b, (lapack_int)q, X, (lapack_int)b, sv, &dummy_u, 1,
                               Rt, (lapack_int)q, &wq, -1, iwork);
    if (info) goto lapack_error;
    lapack_int svd_lwork = (lapack_int)wq;
    if (!(svd_work = pissa__alloc((size_t)svd_lwork, sizeof(float)))) {
        st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory for the SVD workspace", fn);
        goto done;
    }
    info = LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, 'O', (lapack_int)b, (lapack_int)q, X, (lapack_int)b, sv, &dummy_u, 1,
                               Rt, (lapack_int)q, svd_work, svd_lwork, iwork);
    if (info) goto lapack_error;
    for (int64_t i = 0; i < r; i++)
        if (!isfinite(sv[i])) {
            st = pissa__fail(PISSA_ERR_NUMERIC, "%s: singular value %lld is not finite (NaN/Inf in W?)", fn,
                             (long long)i);
            goto done;
        }
    memcpy(S, sv, sizeof(float) * (size_t)r);

    /* M ≈ (Q·Ũ)·S·Vᵀ. Q·Ũ[:, :r] = Q·(Rt[:r, :])ᵀ; V[:, :r] is the first r columns of X. */
    if (!c.transposed) {
        /* U (m, r) row-major is the col-major (r, m) Rt[:r, :]·Qᵀ; Vt (r, n) row-major is V (n, r) col-major. */
        if (U)
            cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)r, (int)a, (int)q, 1.0f, Rt, (int)q, Y, (int)a,
                        0.0f, U, (int)r);
        if (Vt) memcpy(Vt, X, sizeof(float) * (size_t)(r * b));
    } else {
        /* W = Mᵀ ≈ V·S·(Q·Ũ)ᵀ: Vt (r, n) row-major is the col-major (n, r) Q·Ũ[:, :r]; U (m, r) is V transposed. */
        if (Vt)
            cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)a, (int)r, (int)q, 1.0f, Y, (int)a, Rt, (int)q,
                        0.0f, Vt, (int)a);
        if (U)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < r; j++) U[i * r + j] = X[j * b + i];
    }
    goto done;

lapack_error:
    st = lapack_fail(fn, "LAPACK (sgeqrf/sorgqr/sgesdd)", info);
done:
    free(Y);
    free(X);
    free(Rt);
    free(sv);
    free(iwork);
    free(svd_work);
    free(c.tau);
    free(c.work);
    free(c.nwork);
    return st;
}
