/* Narrow products Y = W·X and Z = Wᵀ·Y for the randomized SVD (see narrow.h).
 *
 * Both kernels work on a zero-padded row-major copy of the skinny operand, qp = q rounded up to 8 floats (one
 * vector), in panels of 16 columns (two vectors; or 24 and 8, see FOR_EACH_PANEL), one vector load per 8 columns:
 *   W·X:  R rows of W at a time; acc[r][panel] += W[r][k]·X[k][panel] over k, the R×panel accumulators held in
 *         registers, X read from L2 (tiles of WX_KT rows, so GROUP rows of W are reused from L1 across panels).
 *   Wᵀ·Y: J columns of W at a time; Z[j][panel] += W[r][j]·Y[r][panel] over WTY_ROWS rows r, the J×panel block of Z
 *         held in registers (loaded and stored once per WTY_ROWS·J·panel FMAs), Y read from L1/L2.
 * Threads take chunks of W·X's rows of W and of Wᵀ·Y's columns of W: each output element is then computed by one
 * thread as the same left-to-right sum (over k, or over W's rows) whatever the thread count and blocking, so no partial
 * results need summing and the result does not depend on the thread count at all.
 *
 * The vector code is plain C on GCC vector extensions; the AVX2 variant is the same code compiled with
 * target("avx2,fma"), chosen at run time. Contraction of a·b + c into FMA needs -ffp-contract=fast, which
 * CMakeLists.txt sets for this file (ISO C mode turns it off). */
#include "narrow.h"
#include "parallel.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define NARROW_X86 1
#endif

#define GROUP 12 /* rows of W per group, a multiple of every row block */
#define WX_KT 256                  /* rows of X per tile: R rows of W (R·1 KB) stay in L1 across panels */
#define WTY_ROWS 32                 /* rows of W that update a block of Z held in registers */
#define WTY_TILE_FLOATS (32 * 1024) /* a tile of Z (128 KB) and WTY_ROWS rows of W over its columns stay in L2 */

typedef float v8 __attribute__((vector_size(32)));

/* Loads and stores through memcpy: no alignment or aliasing assumptions, compiled to vmovups. */
#define LOAD8(v, p) memcpy(&(v), (p), sizeof(v8))
#define STORE8(p, v) memcpy((p), &(v), sizeof(v8))
#define INLINE static inline __attribute__((always_inline))
/* R and NV are small constants: unrolled, accumulators become registers (GCC does not always do it unasked). */
#define UNROLL _Pragma("GCC unroll 16")

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- kernels (R is a constant at every call site, so acc/y live in registers) --------------------------------- */

/* Yp[0:R, c:c+8·NV] += Wr[0:R, k0:k1]·Xp[k0:k1, c:c+8·NV] (= instead of += when k0 = 0): one panel of NV vectors.
 * Wr: R rows of W (row stride n); Xp (n, qp) and Yp (R, qp) row-major. */
INLINE void wx_panel(const float *Wr, int64_t n, const float *Xp, int64_t qp, float *Yp, int64_t k0, int64_t k1,
                     int64_t c, const int R, const int NV) {
    v8 acc[GROUP][3];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int v = 0; v < NV; v++) {
            if (k0 == 0)
                acc[r][v] = (v8){0};
            else /* continue the sum of the previous tile: the order over k is unchanged */
                LOAD8(acc[r][v], Yp + r * qp + c + 8 * v);
        }
    for (int64_t k = k0; k < k1; k++) {
        v8 x[3];
        UNROLL
        for (int v = 0; v < NV; v++) LOAD8(x[v], Xp + k * qp + c + 8 * v);
        UNROLL
        for (int r = 0; r < R; r++) {
            float w = Wr[r * n + k];
            UNROLL
            for (int v = 0; v < NV; v++) acc[r][v] += w * x[v];
        }
    }
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int v = 0; v < NV; v++) STORE8(Yp + r * qp + c + 8 * v, acc[r][v]);
}

/* Zp[j:j+J, c:c+8·NV] += Wr[0:g, j:j+J]ᵀ·Yr[0:g, c:c+8·NV]: J rows of Z (NV vectors each) held in registers while
 * g rows of W update them. Wr: g rows of W (row stride n); Yr (g, qp) and Zp (n, qp) row-major. */
INLINE void wty_panel(const float *Wr, int64_t n, const float *Yr, int64_t qp, float *Zp, int64_t g, int64_t j,
                      int64_t c, const int J, const int NV) {
    v8 z[GROUP][3];
    UNROLL
    for (int t = 0; t < J; t++)
        UNROLL
        for (int v = 0; v < NV; v++) LOAD8(z[t][v], Zp + (j + t) * qp + c + 8 * v);
    for (int64_t r = 0; r < g; r++) { /* in row order: Z[j] is the sum over W's rows, left to right */
        v8 y[3];
        UNROLL
        for (int v = 0; v < NV; v++) LOAD8(y[v], Yr + r * qp + c + 8 * v);
        UNROLL
        for (int t = 0; t < J; t++) {
            float w = Wr[r * n + j + t];
            UNROLL
            for (int v = 0; v < NV; v++) z[t][v] += w * y[v];
        }
    }
    UNROLL
    for (int t = 0; t < J; t++)
        UNROLL
        for (int v = 0; v < NV; v++) STORE8(Zp + (j + t) * qp + c + 8 * v, z[t][v]);
}

/* The same panel for g <= GROUP rows: blocks of R rows, then single rows. */
INLINE void wx_panel_rows(const float *Wr, int64_t n, const float *Xp, int64_t qp, float *Yp, int64_t g, int64_t k0,
                          int64_t k1, int64_t c, const int R, const int NV) {
    int64_t i = 0;
    for (; i + R <= g; i += R) wx_panel(Wr + i * n, n, Xp, qp, Yp + i * qp, k0, k1, c, R, NV);
    for (; i < g; i++) wx_panel(Wr + i * n, n, Xp, qp, Yp + i * qp, k0, k1, c, 1, NV);
}
/* Zp[j0:j1, c:c+8·NV] += Wr[0:g, j0:j1]ᵀ·Yr[0:g, c:c+8·NV]: blocks of J rows of Z, then single rows. */
INLINE void wty_panel_cols(const float *Wr, int64_t n, const float *Yr, int64_t qp, float *Zp, int64_t g, int64_t j0,
                           int64_t j1, int64_t c, const int J, const int NV) {
    int64_t j = j0;
    for (; j + J <= j1; j += J) wty_panel(Wr, n, Yr, qp, Zp, g, j, c, J, NV);
    for (; j < j1; j++) wty_panel(Wr, n, Yr, qp, Zp, g, j, c, 1, NV);
}

/* Panels: 16 columns (NV = 2) throughout, but one of 24 (NV = 3) first when qp/8 is odd, or a single 8 when
 * qp = 8; so q = 24 (r = 16 with the default p = 8) is one panel and no FMA is spent on padding. Ri is the row
 * block for NV = i, chosen so that Ri·i accumulators fill the registers. */
#define FOR_EACH_PANEL(qp, PANEL_CALL)                 \
    do {                                               \
        int64_t nv_ = (qp) / 8, c_ = 0;                \
        if (nv_ == 1) {                                \
            PANEL_CALL(0, R1, 1);                      \
        } else {                                       \
            if (nv_ % 2) PANEL_CALL(0, R3, 3), c_ = 24; \
            for (; c_ < (qp); c_ += 16) PANEL_CALL(c_, R2, 2); \
        }                                              \
    } while (0)

/* Rows i0..i1 of Yp (m, qp) = W·Xp, GROUP rows of W at a time (GROUP·WX_KT floats of W stay in L1 across
 * panels). */
INLINE void wx_rows(const float *W, int64_t n, const float *Xp, int64_t qp, float *Yp, int64_t i0, int64_t i1,
                    const int R1, const int R2, const int R3) {
    for (int64_t i = i0; i < i1; i += GROUP) {
        int64_t g = min64(GROUP, i1 - i);
        for (int64_t k0 = 0; k0 < n; k0 += WX_KT) {
            int64_t k1 = min64(k0 + WX_KT, n);
#define WX_CALL(c, R, NV) wx_panel_rows(W + i * n, n, Xp, qp, Yp + i * qp, g, k0, k1, c, R, NV)
            FOR_EACH_PANEL(qp, WX_CALL);
#undef WX_CALL
        }
    }
}

/* Rows j0..j1 of Zp (n, qp) = Wᵀ·Yp, Yp (m, qp): tiles of Z kept in L2 while all of W's rows update them. */
INLINE void wty_cols(const float *W, int64_t m, int64_t n, const float *Yp, int64_t qp, float *Zp, int64_t j0,
                     int64_t j1, const int J1, const int J2, const int J3) {
    const int R1 = J1, R2 = J2, R3 = J3; /* FOR_EACH_PANEL's names */
    int64_t tile = min64(WTY_TILE_FLOATS / qp, WTY_TILE_FLOATS / WTY_ROWS);
    if (tile < 64) tile = 64;
    for (int64_t t0 = j0; t0 < j1; t0 += tile) {
        int64_t t1 = min64(t0 + tile, j1);
        memset(Zp + t0 * qp, 0, sizeof(float) * (size_t)((t1 - t0) * qp));
        for (int64_t i = 0; i < m; i += WTY_ROWS) {
            int64_t g = min64(WTY_ROWS, m - i);
#define WTY_CALL(c, J, NV) wty_panel_cols(W + i * n, n, Yp + i * qp, qp, Zp, g, t0, t1, c, J, NV)
            FOR_EACH_PANEL(qp, WTY_CALL);
#undef WTY_CALL
        }
    }
}

/* Register blocks: the AVX2 variant has 16 ymm registers; 12 hold accumulators (R rows of Y, or J rows of Z, by
 * NV vectors), leaving the X (or Y) vectors and a broadcast. The generic variant assumes 16 registers of 4 floats. */
static void wx_rows_generic(const float *W, int64_t n, const float *Xp, int64_t qp, float *Yp, int64_t i0,
                            int64_t i1) {
    wx_rows(W, n, Xp, qp, Yp, i0, i1, 4, 2, 1);
}
static void wty_cols_generic(const float *W, int64_t m, int64_t n, const float *Yp, int64_t qp, float *Zp, int64_t j0,
                             int64_t j1) {
    wty_cols(W, m, n, Yp, qp, Zp, j0, j1, 4, 2, 1);
}
#ifdef NARROW_X86
__attribute__((target("avx2,fma"))) static void wx_rows_avx2(const float *W, int64_t n, const float *Xp, int64_t qp,
                                                              float *Yp, int64_t i0, int64_t i1) {
    wx_rows(W, n, Xp, qp, Yp, i0, i1, 12, 6, 4);
}
__attribute__((target("avx2,fma"))) static void wty_cols_avx2(const float *W, int64_t m, int64_t n, const float *Yp,
                                                               int64_t qp, float *Zp, int64_t j0, int64_t j1) {
    wty_cols(W, m, n, Yp, qp, Zp, j0, j1, 12, 6, 4);
}
#endif

pissa__narrow_isa pissa__narrow_best_isa(void) {
#ifdef NARROW_X86
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return PISSA__NARROW_AVX2;
#endif
    return PISSA__NARROW_GENERIC;
}

/* ---- drivers -------------------------------------------------------------------------------------------------- */

static int64_t padded(int64_t q) { return (q + 7) / 8 * 8; }

size_t pissa__narrow_work_floats(int64_t m, int64_t n, int64_t q) {
    return (size_t)((m + n) * padded(q)) + 16; /* + 16: room to align to 64 bytes */
}

/* The padded operand and result in work, 64-byte aligned: in (rows_in, qp), out (rows_out, qp). */
static float *aligned_work(float *work) {
    uintptr_t p = (uintptr_t)work;
    return (float *)(p + ((64 - p % 64) % 64));
}

/* dst (rows, qp) row-major = src (rows, q) col-major (leading dimension ld), zero past column q. */
static void pack_rows(const float *src, int64_t ld, int64_t rows, int64_t q, int64_t qp, float *dst) {
    for (int64_t i0 = 0; i0 < rows; i0 += 64) { /* 64 rows at a time, so each column of src is read in runs */
        int64_t i1 = min64(i0 + 64, rows);
        for (int64_t c = 0; c < q; c++)
            for (int64_t i = i0; i < i1; i++) dst[i * qp + c] = src[c * ld + i];
        for (int64_t i = i0; i < i1; i++)
            for (int64_t c = q; c < qp; c++) dst[i * qp + c] = 0.0f;
    }
}

/* dst[lo:hi, :q] col-major (leading dimension ld) = src[lo:hi, :q], src (rows, qp) row-major. */
static void unpack_rows(const float *src, int64_t qp, int64_t lo, int64_t hi, int64_t q, float *dst, int64_t ld) {
    for (int64_t c = 0; c < q; c++)
        for (int64_t i = lo; i < hi; i++) dst[c * ld + i] = src[i * qp + c];
}

/* One product, shared by its threads: each takes the next chunk of output rows (rows of W for W·X, columns of W
 * for Wᵀ·Y) until none is left. Which thread computes a chunk does not change its value, and taking chunks on
 * demand keeps both cores busy when another process holds one of them for a while. */
typedef struct narrow_job {
    int transposed; /* 0: Yp = W·Xp by rows of W; 1: Zp = Wᵀ·Yp by columns of W */
    pissa__narrow_isa isa;
    const float *W;
    int64_t m, n, q, qp;
    const float *in;      /* (n, qp) or (m, qp) row-major */
    float *out;           /* (m, qp) or (n, qp) row-major */
    int64_t total, chunk; /* output rows, and how many a thread takes at a time */
    atomic_llong next;    /* first output row not yet taken */
    float *dst;           /* the caller's col-major result, leading dimension ld */
    int64_t ld;
} narrow_job;

static void run_job(void *arg, int part, int begin, int end) {
    (void)part, (void)begin, (void)end; /* one part per thread; each takes chunks on demand */
    narrow_job *j = arg;
    for (;;) {
        int64_t lo = (int64_t)atomic_fetch_add(&j->next, (long long)j->chunk);
        if (lo >= j->total) break;
        int64_t hi = min64(lo + j->chunk, j->total);
        if (!j->transposed) {
#ifdef NARROW_X86
            if (j->isa == PISSA__NARROW_AVX2)
                wx_rows_avx2(j->W, j->n, j->in, j->qp, j->out, lo, hi);
            else
#endif
                wx_rows_generic(j->W, j->n, j->in, j->qp, j->out, lo, hi);
        } else {
#ifdef NARROW_X86
            if (j->isa == PISSA__NARROW_AVX2)
                wty_cols_avx2(j->W, j->m, j->n, j->in, j->qp, j->out, lo, hi);
            else
#endif
                wty_cols_generic(j->W, j->m, j->n, j->in, j->qp, j->out, lo, hi);
        }
        unpack_rows(j->out, j->qp, lo, hi, j->q, j->dst, j->ld);
    }
}

/* Runs the job on nthreads threads of the kernel pool (parallel.h), the calling one included; if fewer run, the
 * ones that do take all the chunks: the same result. */
static void run_threads(narrow_job *job, int nthreads) {
    /* Below ~2M multiply-adds a thread costs more than it saves. */
    if ((double)job->m * (double)job->n * (double)job->qp < 2e6) nthreads = 1;
    atomic_init(&job->next, 0);
    pissa__par_for(nthreads, nthreads, run_job, job);
}

void pissa__narrow_wx(pissa__narrow_isa isa, int nthreads, const float *W, int64_t m, int64_t n, const float *X,
                      int64_t ldx, int64_t q, float *Y, int64_t ldy, float *work) {
    int64_t qp = padded(q);
    float *Xp = aligned_work(work); /* (n, qp) */
    float *Yp = Xp + n * qp;        /* (m, qp) */
    pack_rows(X, ldx, n, q, qp, Xp);
    narrow_job job = {.transposed = 0, .isa = isa, .W = W, .m = m, .n = n, .q = q, .qp = qp, .in = Xp, .out = Yp,
                      .total = m, .chunk = 4 * GROUP, .dst = Y, .ld = ldy};
    run_threads(&job, nthreads);
}

void pissa__narrow_wty(pissa__narrow_isa isa, int nthreads, const float *W, int64_t m, int64_t n, const float *Y,
                       int64_t ldy, int64_t q, float *Z, int64_t ldz, float *work) {
    int64_t qp = padded(q);
    float *Yp = aligned_work(work); /* (m, qp) */
    float *Zp = Yp + m * qp;        /* (n, qp) */
    pack_rows(Y, ldy, m, q, qp, Yp);
    /* Chunks of 256 columns: slices of W's rows start on cache lines (for 64-byte aligned W) and are 1 KB long. */
    narrow_job job = {.transposed = 1, .isa = isa, .W = W, .m = m, .n = n, .q = q, .qp = qp, .in = Yp, .out = Zp,
                      .total = n, .chunk = 256, .dst = Z, .ld = ldz};
    run_threads(&job, nthreads);
}

/* Measured rule (4096×4096, OpenBLAS 0.3.21 and these kernels on 2 threads, AMD EPYC Zen 3, AVX2), comparing the
 * narrow product of width q with sgemm of width q rounded up to 16 (what svd.c gives sgemm), W·X + Wᵀ·Y in ms:
 *   q = 16: 8 vs 16;  24: 14 vs 23 (sgemm at 32);  40: 40 vs 55;  48: 60 vs 56;  56: 76 vs 103;  64: 111 vs 103;
 *   q = 128: 170–220 vs 140–170, and sgemm keeps winning above (its packing is amortised over wide blocks).
 * (The machine was shared; the ratios held across repeats.) So: the narrow kernels up to q = 64, when the CPU has
 * AVX2 + FMA; the generic variant is correct but left to sgemm for speed. */
int pissa__narrow_preferred(int64_t m, int64_t n, int64_t q) {
    (void)m;
    (void)n;
    return pissa__narrow_best_isa() != PISSA__NARROW_GENERIC && q <= 64;
}

/* ---- small products of attention (see narrow.h) ---------------------------------------------------------------- */

/* C[0:R, c:c+8·CV] = alpha·Σ_k A(i+r, k)·B[k, c:c+8·CV] (+ C when acc): R rows by CV vectors of accumulators, A read
 * through strides (ars between rows, acs between k), B (K, ldb) row-major. */
INLINE void small_block(int64_t K, float alpha, const float *A, int64_t ars, int64_t acs, const float *B, int64_t ldb,
                        int acc, float *C, int64_t ldc, int64_t c, const int R, const int CV) {
    v8 s[12][4];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int v = 0; v < CV; v++) s[r][v] = (v8){0};
    for (int64_t k = 0; k < K; k++) {
        v8 b[4];
        UNROLL
        for (int v = 0; v < CV; v++) LOAD8(b[v], B + k * ldb + c + 8 * v);
        UNROLL
        for (int r = 0; r < R; r++) {
            float a = A[r * ars + k * acs];
            UNROLL
            for (int v = 0; v < CV; v++) s[r][v] += a * b[v];
        }
    }
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int v = 0; v < CV; v++) {
            v8 y = alpha * s[r][v];
            if (acc) {
                v8 old;
                LOAD8(old, C + r * ldc + c + 8 * v);
                y += old;
            }
            STORE8(C + r * ldc + c + 8 * v, y);
        }
}

/* C (M, N) = alpha·op(A)·B (+ C when acc) for N a multiple of 8: column chunks of up to 4 vectors, rows in blocks of
 * 12 / chunk (so the accumulators fill 12 registers), then single rows. */
INLINE void small_ab(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t ars, int64_t acs,
                     const float *B, int64_t ldb, int acc, float *C, int64_t ldc) {
    for (int64_t c = 0; c < N; c += 32) {
        int64_t i = 0;
#define SMALL_ROWS(R, CV)                                                                                         \
    for (; i + (R) <= M; i += (R))                                                                                \
        small_block(K, alpha, A + i * ars, ars, acs, B, ldb, acc, C + i * ldc, ldc, c, R, CV);                    \
    for (; i < M; i++) small_block(K, alpha, A + i * ars, ars, acs, B, ldb, acc, C + i * ldc, ldc, c, 1, CV)
        switch ((N - c) >= 32 ? 4 : (int)((N - c) / 8)) {
        case 4: SMALL_ROWS(3, 4); break;
        case 3: SMALL_ROWS(4, 3); break;
        case 2: SMALL_ROWS(6, 2); break;
        default: SMALL_ROWS(12, 1); break;
        }
#undef SMALL_ROWS
    }
}

/* C (M, N) = alpha·A·Bᵀ for A (M, K), B (N, K) with K a multiple of 8, K <= 64: B is transposed 16 rows at a time
 * into a (K, 16) panel (zero past N), and each panel's C columns come from small_ab with B = the panel. */
INLINE void small_abt(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                      int64_t ldb, float *C, int64_t ldc) {
    float panel[64 * 16] __attribute__((aligned(32)));
    float tail[12 * 16];
    for (int64_t j0 = 0; j0 < N; j0 += 16) {
        int64_t w = min64(16, N - j0);
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < 16; j++) panel[k * 16 + j] = j < w ? B[(j0 + j) * ldb + k] : 0.0f;
        if (w == 16) {
            small_ab(M, 16, K, alpha, A, lda, 1, panel, 16, 0, C + j0, ldc);
        } else { /* a partial panel: 12 rows at a time through a full-width buffer */
            for (int64_t i = 0; i < M; i += 12) {
                int64_t h = min64(12, M - i);
                small_ab(h, 16, K, alpha, A + i * lda, lda, 1, panel, 16, 0, tail, 16);
                for (int64_t r = 0; r < h; r++)
                    memcpy(C + (i + r) * ldc + j0, tail + r * 16, sizeof(float) * (size_t)w);
            }
        }
    }
}

static void small_ab_generic(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t ars, int64_t acs,
                             const float *B, int64_t ldb, int acc, float *C, int64_t ldc) {
    small_ab(M, N, K, alpha, A, ars, acs, B, ldb, acc, C, ldc);
}
static void small_abt_generic(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                              int64_t ldb, float *C, int64_t ldc) {
    small_abt(M, N, K, alpha, A, lda, B, ldb, C, ldc);
}
#ifdef NARROW_X86
__attribute__((target("avx2,fma"))) static void small_ab_avx2(int64_t M, int64_t N, int64_t K, float alpha,
                                                               const float *A, int64_t ars, int64_t acs,
                                                               const float *B, int64_t ldb, int acc, float *C,
                                                               int64_t ldc) {
    small_ab(M, N, K, alpha, A, ars, acs, B, ldb, acc, C, ldc);
}
__attribute__((target("avx2,fma"))) static void small_abt_avx2(int64_t M, int64_t N, int64_t K, float alpha,
                                                                const float *A, int64_t lda, const float *B,
                                                                int64_t ldb, float *C, int64_t ldc) {
    small_abt(M, N, K, alpha, A, lda, B, ldb, C, ldc);
}
#endif

int pissa__small_supported(int64_t d) { return d > 0 && d % 8 == 0 && d <= 64; }

void pissa__small_ab(pissa__narrow_isa isa, int transposed, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, int accumulate, float *C, int64_t ldc) {
    int64_t ars = transposed ? 1 : lda, acs = transposed ? lda : 1;
#ifdef NARROW_X86
    if (isa == PISSA__NARROW_AVX2) {
        small_ab_avx2(M, N, K, alpha, A, ars, acs, B, ldb, accumulate, C, ldc);
        return;
    }
#endif
    (void)isa;
    small_ab_generic(M, N, K, alpha, A, ars, acs, B, ldb, accumulate, C, ldc);
}

void pissa__small_abt(pissa__narrow_isa isa, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float *C, int64_t ldc) {
#ifdef NARROW_X86
    if (isa == PISSA__NARROW_AVX2) {
        small_abt_avx2(M, N, K, alpha, A, lda, B, ldb, C, ldc);
        return;
    }
#endif
    (void)isa;
    small_abt_generic(M, N, K, alpha, A, lda, B, ldb, C, ldc);
}
