/* Training kernels (see ops.h): forward/backward pairs, dense products through cblas_sgemm, and products with a
 * narrow side (LoRA's rank r, small attention heads) through the narrow kernels (narrow.h). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "narrow.h"
#include "ops.h"
#include "parallel.h"

/* Loops compiled for AVX2 and for the baseline, picked at load time (an ifunc). ThreadSanitizer's runtime is not
 * started when the dynamic loader runs ifunc resolvers, and an instrumented resolver crashes there: a TSan build
 * (clang -fsanitize=thread, for the thread tests) keeps the baseline loops only. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PISSA_NO_CLONES
#endif
#endif
#ifdef PISSA_NO_CLONES
#define TC
#else
#define TC __attribute__((target_clones("avx2", "default")))
#endif

/* ---- products ---- */

/* C (M, N) = alpha·op(A)·op(B) + beta·C (cblas row-major), split across the kernel threads (parallel.h) into
 * contiguous blocks of rows of C, or of columns when C has fewer rows than columns (the adapters' r-row gradients).
 * Below ~1M multiply-adds one call on this thread is cheaper. */
typedef struct gemm_job {
    enum CBLAS_TRANSPOSE ta, tb;
    int M, N, K, lda, ldb, ldc, by_rows;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_job;

static void gemm_part(void *ctx, int part, int b, int e) {
    (void)part;
    const gemm_job *j = ctx;
    if (j->by_rows) { /* rows b..e of C: rows of A, or columns of Aᵀ */
        const float *A = j->ta == CblasNoTrans ? j->A + (size_t)b * j->lda : j->A + b;
        cblas_sgemm(CblasRowMajor, j->ta, j->tb, e - b, j->N, j->K, j->alpha, A, j->lda, j->B, j->ldb, j->beta,
                    j->C + (size_t)b * j->ldc, j->ldc);
    } else if (j->M == 1 && j->ta == CblasNoTrans && j->tb == CblasTrans) { /* one row: y = B·a, a matrix-vector */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, e - b, j->K, j->alpha, j->B + (size_t)b * j->ldb, j->ldb, j->A, 1,
                    j->beta, j->C + b, 1);
    } else { /* columns b..e of C: columns of B, or rows of Bᵀ */
        const float *B = j->tb == CblasNoTrans ? j->B + b : j->B + (size_t)b * j->ldb;
        cblas_sgemm(CblasRowMajor, j->ta, j->tb, j->M, e - b, j->K, j->alpha, j->A, j->lda, B, j->ldb, j->beta,
                    j->C + b, j->ldc);
    }
}

static void gemm(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    gemm_job j = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc, .by_rows = M >= N,
                  .alpha = alpha, .beta = beta, .A = A, .B = B, .C = C};
    int nt = (double)M * N * K < 1e6 ? 1 : pissa__par_threads();
    pissa__par_for(j.by_rows ? M : N, nt, gemm_part, &j);
}

/* ---- embedding ---- */

void pissa__embedding_forward(float *out, const int32_t *ids, const float *wte, int N, int C) {
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, wte + (size_t)ids[n] * C, (size_t)C * sizeof(float));
}

void pissa__embedding_forward_q(float *out, const int32_t *ids, const pissa__qweight *wte, int N) {
    for (int n = 0; n < N; n++) pissa__qweight_dequantize(wte, ids[n], ids[n] + 1, out + (size_t)n * wte->cols);
}

void pissa__embedding_backward(float *dwte, const float *dout, const int32_t *ids, int N, int C) {
    if (!dwte) return;
    for (int n = 0; n < N; n++) {
        float *restrict dw = dwte + (size_t)ids[n] * C;
        const float *restrict d = dout + (size_t)n * C;
        for (int c = 0; c < C; c++) dw[c] += d[c];
    }
}

/* ---- matmul ---- */

void pissa__matmul_forward(float *out, const float *inp, const float *w, int N, int C, int OC) {
    gemm(CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w, C, 0.0f, out, OC);
}

void pissa__matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int N,
                            int C, int OC, unsigned fresh) {
    if (dinp) /* (N, C) += (N, OC)·(OC, C) */
        gemm(CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, w, C, fresh & 1 ? 0.0f : 1.0f, dinp, C);
    if (dw) /* (OC, C) += (N, OC)ᵀ·(N, C) */
        gemm(CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
}

/* ---- frozen linear in any format ---- */

size_t pissa__frozen_scratch_floats(pissa_qtype type, int nthreads) {
    return type == PISSA_QTYPE_F32 ? 0 : pissa__qmatmul_scratch_floats(nthreads);
}

void pissa__frozen_forward(float *out, float *scratch, int nthreads, const float *inp, const pissa__qweight *w,
                           int N) {
    if (w->type == PISSA_QTYPE_F32)
        pissa__matmul_forward(out, inp, w->data, N, (int)w->cols, (int)w->rows);
    else pissa__qmatmul_forward(out, scratch, nthreads, inp, w, N);
}

void pissa__frozen_backward(float *dinp, float *scratch, int nthreads, const float *dout, const pissa__qweight *w,
                            int N, unsigned fresh) {
    if (w->type == PISSA_QTYPE_F32)
        pissa__matmul_backward(dinp, NULL, dout, NULL, w->data, N, (int)w->cols, (int)w->rows, fresh);
    else pissa__qmatmul_backward(dinp, scratch, nthreads, dout, w, N, fresh);
}

/* ---- LoRA / PiSSA linear ---- */

/* The four products with the rank-r side (xa = inp_d·Aᵀ, dxa = s·dout·B, dB, dA) stream a tall (N, C or OC) matrix
 * against a skinny one: they go to the narrow kernels (narrow.h), which run them faster than sgemm on these shapes
 * (sgemm packs the tall matrix on every call) and give the same bits for any thread count. Those keep their skinny
 * operands column-major, so xa and dxa are stored as (r, N). The two rank-r updates of a tall matrix
 * (out += s·xa·Bᵀ, dinp += dxa·A) stay with sgemm. */
static size_t lora_own_floats(int N, int C, int OC, int r, int has_mask) {
    size_t wide = (size_t)(C > OC ? C : OC);
    return (size_t)N * r + (has_mask ? (size_t)N * C : 0) + 2 * wide * r +
           pissa__narrow_work_floats(N, (int64_t)wide, r);
}

size_t pissa__lora_scratch_floats(int N, int C, int OC, int r, int has_mask, pissa_qtype wtype, int nthreads) {
    return lora_own_floats(N, C, OC, r, has_mask) + pissa__frozen_scratch_floats(wtype, nthreads);
}

/* Scratch: dxa (r, N) | inp_d or dinp_d (N, C), only with a mask | sBᵀ or a product (r, max(C, OC)) | the same
 * again | the narrow kernels' work | the frozen product's tiles. */
typedef struct lora_scratch {
    float *dxa, *tmp, *skinny, *prod, *work, *frozen;
} lora_scratch;

static lora_scratch lora_scratch_split(float *scratch, int N, int C, int OC, int r, int has_mask) {
    size_t wide = (size_t)(C > OC ? C : OC);
    lora_scratch ls;
    ls.dxa = scratch;
    ls.tmp = ls.dxa + (size_t)N * r;
    ls.skinny = ls.tmp + (has_mask ? (size_t)N * C : 0);
    ls.prod = ls.skinny + wide * r;
    ls.work = ls.prod + wide * r;
    ls.frozen = scratch + lora_own_floats(N, C, OC, r, has_mask);
    return ls;
}

/* inp_d (N, C) = inp ⊙ mask / (1 − p). */
static void apply_dropout(float *restrict out, const float *restrict inp, const uint8_t *restrict mask, float p,
                          size_t n) {
    float keep_scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) out[i] = mask[i] ? inp[i] * keep_scale : 0.0f;
}

/* Y (r, N) = (X·Mᵀ)ᵀ for X (N, K) and M (r, K) row-major: the narrow W·X with W = X and Mᵀ column-major. */
static void tall_times_skinny(float *Y, const float *X, const float *M, int N, int K, int r, float *work) {
    pissa__narrow_wx(pissa__narrow_best_isa(), pissa__par_threads(), X, N, K, M, K, r, Y, N, work);
}

/* G += alpha·Y·X for Y (r, N) and X (N, K), G (r, K); with TRANSPOSED, G is (K, r). PROD (r, K) holds the
 * product (the narrow Wᵀ·Y with W = X and Yᵀ column-major). */
static void skinny_gradient(float *G, int transposed, float alpha, const float *Y, const float *X, int N, int K, int r,
                            float *prod, float *work) {
    pissa__narrow_wty(pissa__narrow_best_isa(), pissa__par_threads(), X, N, K, Y, N, r, prod, K, work);
    for (int j = 0; j < r; j++)
        for (int k = 0; k < K; k++) {
            float *g = transposed ? &G[(size_t)k * r + j] : &G[(size_t)j * K + k];
            *g += alpha * prod[(size_t)j * K + k];
        }
}

void pissa__lora_forward(float *out, float *xa, float *scratch, int nthreads, const float *inp, const uint8_t *mask,
                         float p, const pissa__qweight *w_res, const float *A, const float *B, float s, int N, int C,
                         int OC, int r) {
    lora_scratch ls = lora_scratch_split(scratch, N, C, OC, r, mask != NULL);
    const float *inp_d = inp; /* (N, C) */
    if (mask) {
        apply_dropout(ls.tmp, inp, mask, p, (size_t)N * C);
        inp_d = ls.tmp;
    }
    /* out = inp·W_resᵀ; xa (r, N) = (inp_d·Aᵀ)ᵀ; out += s·xaᵀ·Bᵀ */
    pissa__frozen_forward(out, ls.frozen, nthreads, inp, w_res, N);
    tall_times_skinny(xa, inp_d, A, N, C, r, ls.work);
    gemm(CblasTrans, CblasTrans, N, OC, r, s, xa, N, B, r, 1.0f, out, OC);
}

void pissa__lora_backward(float *dinp, float *dA, float *dB, float *scratch, int nthreads, const float *dout,
                          const float *inp, const uint8_t *mask, float p, const pissa__qweight *w_res, const float *A,
                          const float *B, const float *xa, float s, int N, int C, int OC, int r, unsigned fresh) {
    lora_scratch ls = lora_scratch_split(scratch, N, C, OC, r, mask != NULL);
    float *dxa = ls.dxa; /* (r, N) gradient of xa, stored as xa is */
    if (dB) /* (OC, r) += s·doutᵀ·xaᵀ */
        skinny_gradient(dB, 1, s, xa, dout, N, OC, r, ls.prod, ls.work);
    if (dA || dinp) { /* dxa (r, N) = (s·dout·B)ᵀ = (dout·(s·Bᵀ)ᵀ)ᵀ */
        float *sBt = ls.skinny; /* (r, OC) */
        for (int o = 0; o < OC; o++)
            for (int j = 0; j < r; j++) sBt[(size_t)j * OC + o] = s * B[(size_t)o * r + j];
        tall_times_skinny(dxa, dout, sBt, N, OC, r, ls.work);
    }
    if (dA) { /* (r, C) += dxa·inp_d */
        const float *inp_d = inp;
        if (mask) {
            apply_dropout(ls.tmp, inp, mask, p, (size_t)N * C);
            inp_d = ls.tmp;
        }
        skinny_gradient(dA, 0, 1.0f, dxa, inp_d, N, C, r, ls.prod, ls.work);
    }
    if (dinp) {
        /* frozen path: dinp += dout·W_res */
        pissa__frozen_backward(dinp, ls.frozen, nthreads, dout, w_res, N, fresh);
        if (!mask) {
            gemm(CblasTrans, CblasNoTrans, N, C, r, 1.0f, dxa, N, A, C, 1.0f, dinp, C);
        } else { /* the adapter path went through the dropout: dinp += (dxaᵀ·A) ⊙ mask/(1 − p) */
            gemm(CblasTrans, CblasNoTrans, N, C, r, 1.0f, dxa, N, A, C, 0.0f, ls.tmp, C);
            float keep_scale = 1.0f / (1.0f - p);
            size_t n = (size_t)N * C;
            for (size_t i = 0; i < n; i++) dinp[i] += mask[i] ? ls.tmp[i] * keep_scale : 0.0f;
        }
    }
}

void pissa__dropout_mask(uint8_t *mask, size_t n, float p, pissa_rng *rng) {
    for (size_t i = 0; i < n; i++) mask[i] = pissa__rng_uniform(rng) >= (double)p;
}

/* ---- RMSNorm ---- */

/* Rows split across the kernel threads (parallel.h). */
typedef struct norm_job {
    float *out, *rstd, *dinp;
    const float *inp, *w, *dout, *crstd;
    float eps;
    int C, fresh;
} norm_job;

static void rmsnorm_forward_rows(void *ctx, int part, int n0, int n1) {
    (void)part;
    const norm_job *j = ctx;
    int C = j->C;
    for (int n = n0; n < n1; n++) {
        const float *restrict x = j->inp + (size_t)n * C;
        float *restrict y = j->out + (size_t)n * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
        float rs = (float)(1.0 / sqrt(ss / C + j->eps));
        for (int c = 0; c < C; c++) y[c] = x[c] * rs * j->w[c];
        j->rstd[n] = rs;
    }
}

void pissa__rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, float eps, int N, int C) {
    norm_job j = {.out = out, .rstd = rstd, .inp = inp, .w = w, .eps = eps, .C = C};
    pissa__par_for(N, pissa__par_threads(), rmsnorm_forward_rows, &j);
}

/* y_c = x_c·r·w_c with r = (mean(x²) + eps)^(−1/2), so ∂r/∂x_c = −r³·x_c/C:
 * dx_c = r·w_c·dy_c − (r³/C)·x_c·Σ_j dy_j·w_j·x_j;  dw_c = Σ_n dy_c·x_c·r. */
static void rmsnorm_backward_rows(void *ctx, int part, int n0, int n1) {
    (void)part;
    const norm_job *j = ctx;
    int C = j->C;
    const float *w = j->w;
    for (int n = n0; n < n1; n++) {
        const float *restrict x = j->inp + (size_t)n * C;
        const float *restrict dy = j->dout + (size_t)n * C;
        float *restrict dx = j->dinp + (size_t)n * C;
        float rs = j->crstd[n];
        double dot = 0.0;
        for (int c = 0; c < C; c++) dot += (double)dy[c] * w[c] * x[c];
        float k = (float)(dot * rs * rs * rs / C);
        if (j->fresh)
            for (int c = 0; c < C; c++) dx[c] = rs * w[c] * dy[c] - k * x[c];
        else
            for (int c = 0; c < C; c++) dx[c] += rs * w[c] * dy[c] - k * x[c];
    }
}

void pissa__rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                             const float *rstd, int N, int C, unsigned fresh) {
    if (dw) /* a sum over rows: one thread, in row order (full fine-tuning only) */
        for (int n = 0; n < N; n++) {
            const float *restrict x = inp + (size_t)n * C;
            const float *restrict dy = dout + (size_t)n * C;
            for (int c = 0; c < C; c++) dw[c] += dy[c] * x[c] * rstd[n];
        }
    if (!dinp) return;
    norm_job j = {.dinp = dinp, .inp = inp, .w = w, .dout = dout, .crstd = rstd, .C = C, .fresh = fresh & 1};
    pissa__par_for(N, pissa__par_threads(), rmsnorm_backward_rows, &j);
}

/* ---- bias ---- */

void pissa__bias_forward(float *out, const float *inp, const float *b, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        for (int c = 0; c < C; c++) y[c] = x[c] + b[c];
    }
}

void pissa__bias_backward(float *dinp, float *db, const float *dout, int N, int C, unsigned fresh) {
    if (dinp && fresh & 1) memcpy(dinp, dout, (size_t)N * C * sizeof(float));
    else if (dinp)
        for (size_t i = 0; i < (size_t)N * C; i++) dinp[i] += dout[i];
    if (db)
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) db[c] += dout[(size_t)n * C + c];
}

/* ---- RoPE ---- */

void pissa__rope_tables(float *cos_tab, float *sin_tab, const int32_t *pos, int start, int T, int half,
                        const float *inv_freq) {
    for (int i = 0; i < half; i++)
        for (int t = 0; t < T; t++) {
            float p = (float)(pos ? pos[t] : start + t);
            float angle = p * inv_freq[i]; /* HF: inv_freq @ position_ids, in float32 */
            cos_tab[(size_t)t * half + i] = (float)cos((double)angle);
            sin_tab[(size_t)t * half + i] = (float)sin((double)angle);
        }
}

typedef struct rope_job {
    float *out;
    const float *inp, *cos_tab, *sin_tab;
    const int32_t *pos;
    int T, nh, hd, backward, fresh;
} rope_job;

/* Rows (b, t) n0..n1: forward rotates each head's pairs (i, i + hd/2) by the angle of position t (or pos[b][t]);
 * backward adds the transposed rotation of dout into dinp. Forward may run in place: both halves are read before
 * either is written. */
static void rope_rows(void *ctx, int part, int n0, int n1) {
    (void)part;
    const rope_job *j = ctx;
    int half = j->hd / 2;
    for (int bt = n0; bt < n1; bt++) {
        int t = j->pos ? j->pos[bt] : bt % j->T;
        const float *cs = j->cos_tab + (size_t)t * half, *sn = j->sin_tab + (size_t)t * half;
        for (int h = 0; h < j->nh; h++) {
            size_t off = ((size_t)bt * j->nh + h) * j->hd;
            const float *x = j->inp + off;
            float *y = j->out + off;
            if (!j->backward)
                for (int i = 0; i < half; i++) {
                    float x1 = x[i], x2 = x[i + half];
                    y[i] = x1 * cs[i] - x2 * sn[i];
                    y[i + half] = x2 * cs[i] + x1 * sn[i];
                }
            else
                for (int i = 0; i < half; i++) {
                    float d1 = x[i], d2 = x[i + half];
                    float y1 = j->fresh ? 0.0f : y[i], y2 = j->fresh ? 0.0f : y[i + half];
                    y[i] = y1 + (d1 * cs[i] + d2 * sn[i]);
                    y[i + half] = y2 + (d2 * cs[i] - d1 * sn[i]);
                }
        }
    }
}

void pissa__rope_forward(float *out, const float *inp, const float *cos_tab, const float *sin_tab, const int32_t *pos,
                         int B, int T, int nh, int hd) {
    rope_job j = {.out = out, .inp = inp, .cos_tab = cos_tab, .sin_tab = sin_tab, .pos = pos, .T = T, .nh = nh,
                  .hd = hd};
    pissa__par_for(B * T, pissa__par_threads(), rope_rows, &j);
}

void pissa__rope_backward(float *dinp, const float *dout, const float *cos_tab, const float *sin_tab,
                          const int32_t *pos, int B, int T, int nh, int hd, unsigned fresh) {
    if (!dinp) return;
    rope_job j = {.out = dinp, .inp = dout, .cos_tab = cos_tab, .sin_tab = sin_tab, .pos = pos, .T = T, .nh = nh,
                  .hd = hd, .backward = 1, .fresh = fresh & 1};
    pissa__par_for(B * T, pissa__par_threads(), rope_rows, &j);
}

/* ---- causal grouped-query attention ---- */

/* The softmax rows are the hot loop of attention when head_dim is small (T²/2 exponentials per head against
 * 4·T²·hd flops of sgemm), so they are written to vectorise: a branch-free exp and 8 partial float maxima and
 * sums (a single running sum or maximum, or a sum in double, keeps the compiler scalar). Built for AVX2 and a
 * generic target, chosen at load time (cpuid); contraction stays off (-std=c11), so both give the same bits. */
#define ROW_LANES 8

/* e^x for x <= 0 (Cephes expf: n = round(x·log2 e), r = x − n·ln 2 in two parts, a degree-7 polynomial, ·2ⁿ by
 * the exponent bits; measured within 1 ulp on [−87, 0]). Written without a float-to-int conversion or a branch so
 * that the loop vectorises: adding 1.5·2²³ rounds t to an integer held in the low mantissa bits, read as bits.
 * Below −87 (e^x < 1.7e−38, negligible next to the row maximum's 1) the result is 0, as is e^−inf; NaN stays NaN. */
static inline float exp_nonpos(float x) {
    float t = x * 1.44269504088896341f;
    float big = t + 12582912.0f, n = big - 12582912.0f;
    uint32_t bi;
    memcpy(&bi, &big, sizeof bi);
    /* round(t) from the bits, in unsigned arithmetic: for x below about −1.5e7 (or NaN) the bits are far from
     * 0x4B400000 and a signed subtraction would overflow (undefined); the wrapped value is garbage that the clamp
     * keeps in range and the mask below replaces by 0 (a clamp of x itself would stop the loops vectorising) */
    int32_t ni = (int32_t)(bi - 0x4B400000u);
    ni = ni < -127 ? -127 : ni > 128 ? 128 : ni;
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)(ni + 127) << 23; /* 2ⁿ */
    float two_n, e;
    memcpy(&two_n, &bits, sizeof two_n);
    e = p * two_n;
    int32_t keep = -(int32_t)!(x < -87.0f), ebits; /* all ones unless x < −87 (NaN kept) */
    memcpy(&ebits, &e, sizeof ebits);
    ebits &= keep;
    memcpy(&e, &ebits, sizeof e);
    return e;
}

/* max of x[0..n) (n >= 1) in 8 partial maxima. Inlined into each target clone of its callers. */
static inline __attribute__((always_inline)) float row_max(const float *x, int n) {
    float acc[ROW_LANES];
    for (int u = 0; u < ROW_LANES; u++) acc[u] = x[0];
    int j = 0;
    for (; j + ROW_LANES <= n; j += ROW_LANES)
        for (int u = 0; u < ROW_LANES; u++) acc[u] = x[j + u] > acc[u] ? x[j + u] : acc[u];
    float mx = acc[0];
    for (int u = 1; u < ROW_LANES; u++) mx = acc[u] > mx ? acc[u] : mx;
    for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

/* Σ exp(x[0..n) − mx) in 8 partial sums; with OUT, each exponential is also stored in out[j] (out may be x). */
static inline __attribute__((always_inline)) float row_sum_exp(float *out, const float *x, int n, float mx) {
    float acc[ROW_LANES] = {0};
    int j = 0;
    for (; j + ROW_LANES <= n; j += ROW_LANES)
        for (int u = 0; u < ROW_LANES; u++) {
            float e = exp_nonpos(x[j + u] - mx);
            if (out) out[j + u] = e;
            acc[u] += e;
        }
    for (; j < n; j++) {
        float e = exp_nonpos(x[j] - mx);
        if (out) out[j] = e;
        acc[0] += e;
    }
    float sum = 0.0f;
    for (int u = 0; u < ROW_LANES; u++) sum += acc[u];
    return sum;
}

/* One row of scores row[0..T) of which the keys lo..n-1 are visible (before lo: outside a sliding window; from n:
 * the future). Visible entries ← softmax of them, the others ← 0; returns log Σ exp over the visible ones. */
TC static float causal_softmax_row(float *row, int lo, int n, int T) {
    float mx = row_max(row + lo, n - lo);
    float sum = row_sum_exp(row + lo, row + lo, n - lo, mx), inv = 1.0f / sum;
    for (int j = 0; j < lo; j++) row[j] = 0.0f;
    for (int j = lo; j < n; j++) row[j] *= inv;
    for (int j = n; j < T; j++) row[j] = 0.0f;
    return mx + logf(sum);
}

/* The same probabilities again from the scores and the saved lse: row[lo..n) ← exp(row − lse), the rest ← 0.
 * (lse >= every visible score of the row, so exp_nonpos applies.) */
TC static void causal_softmax_row_replay(float *row, float lse, int lo, int n, int T) {
    for (int j = 0; j < lo; j++) row[j] = 0.0f;
    for (int j = lo; j < n; j++) row[j] = exp_nonpos(row[j] - lse);
    for (int j = n; j < T; j++) row[j] = 0.0f;
}

/* d[lo..n) ← p·(d − Σ p·d), the rest ← 0: the softmax backward of one row (p is 0 outside lo..n-1). */
TC static void causal_softmax_row_backward(float *d, const float *p, int lo, int n, int T) {
    float acc[ROW_LANES] = {0};
    int j = lo;
    for (; j + ROW_LANES <= n; j += ROW_LANES)
        for (int u = 0; u < ROW_LANES; u++) acc[u] += p[j + u] * d[j + u];
    for (; j < n; j++) acc[0] += p[j] * d[j];
    float dot = 0.0f;
    for (int u = 0; u < ROW_LANES; u++) dot += acc[u];
    for (j = 0; j < lo; j++) d[j] = 0.0f;
    for (j = lo; j < n; j++) d[j] = p[j] * (d[j] - dot);
    for (j = n; j < T; j++) d[j] = 0.0f;
}

/* Attention runs one task per (batch row, kv head) (the query heads of a group share dk and dv, so a task owns
 * them), the tasks split across the kernel threads; inside a task, products are single-threaded sgemm calls.
 * Queries go in tiles of ATT_TILE rows, as in FlashAttention: tile [i0, i1) needs keys 0 .. i1-1 only, so most of
 * the causal half of the T×T products is skipped (at T = 256, 62% of the square is computed), and the tile's
 * scores and probabilities live in per-thread scratch. Only each row's log-sum-exp is saved; backward recomputes
 * the tile's probabilities from it, which costs one more product but saves B·H·T² floats of activations. */
#define ATT_TILE 64

size_t pissa__attention_scratch_floats(int T, int nthreads) {
    return (size_t)(nthreads < 1 ? 1 : nthreads) * 2 * ATT_TILE * T;
}

typedef struct att_job {
    float *out, *lse, *dq, *dk, *dv, *scratch;
    const float *q, *k, *v, *dout, *plse;
    const int32_t *pos;
    int T, H, KV, hd, window;
    unsigned fresh;
} att_job;

/* The first key query row I of a row with positions POS (T, or NULL) can see: 0, or i − W + 1 with a sliding window
 * W, and not before the start i − pos[i] of its own packed sequence. Never decreasing in i, so it is also the
 * first key of a tile starting at row I. */
static int first_key(const int32_t *pos, int i, int window) {
    int k = pos ? i - pos[i] : 0;
    return window && i - window + 1 > k ? i - window + 1 : k;
}

/* The kernel threads attention runs on: at most those its scratch was planned for. */
static int att_threads(int nthreads) {
    int nt = pissa__par_threads();
    return nt < nthreads ? nt : nthreads;
}

/* The tiles' products all have one dimension hd. Up to hd = 16 the small-product kernels (narrow.h) beat sgemm, which
 * packs both operands of every 64 × T × hd product: one layer's attention forward + backward, same-process A/B,
 * median of 40: hd 8 (stories260K) 9.7 → 8.0 ms, hd 16 12.8 → 10.6 ms; at hd 32 and 64 sgemm is 4 % and 15 %
 * faster and keeps them. */
static int att_small(int hd) { return hd <= 16 && pissa__small_supported(hd); }

static void att_ab(int small, int transposed, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                   int ldb, int accumulate, float *C, int ldc) {
    if (small)
        pissa__small_ab(pissa__narrow_best_isa(), transposed, M, N, K, alpha, A, lda, B, ldb, accumulate, C, ldc);
    else
        cblas_sgemm(CblasRowMajor, transposed ? CblasTrans : CblasNoTrans, CblasNoTrans, M, N, K, alpha, A, lda, B,
                    ldb, accumulate ? 1.0f : 0.0f, C, ldc);
}
static void att_abt(int small, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                    float *C, int ldc) {
    if (small)
        pissa__small_abt(pissa__narrow_best_isa(), M, N, K, alpha, A, lda, B, ldb, C, ldc);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, alpha, A, lda, B, ldb, 0.0f, C, ldc);
}

static void att_forward_part(void *ctx, int part, int begin, int end) {
    const att_job *j = ctx;
    int T = j->T, hd = j->hd, group = j->H / j->KV;
    int ldq = j->H * hd, ldkv = j->KV * hd;
    float scale = 1.0f / sqrtf((float)hd);
    int small = att_small(hd);
    float *P = j->scratch + (size_t)part * 2 * ATT_TILE * T; /* (rows, i1): scores, then probabilities */
    for (int task = begin; task < end; task++) {
        int b = task / j->KV, g = task % j->KV;
        const int32_t *pos = j->pos ? j->pos + (size_t)b * T : NULL;
        const float *kb = j->k + (size_t)b * T * ldkv + (size_t)g * hd; /* (T, hd), row stride KV·hd */
        const float *vb = j->v + (size_t)b * T * ldkv + (size_t)g * hd;
        for (int h = g * group; h < (g + 1) * group; h++) {
            const float *qb = j->q + (size_t)b * T * ldq + (size_t)h * hd; /* (T, hd), row stride H·hd */
            float *ob = j->out + (size_t)b * T * ldq + (size_t)h * hd;
            float *lse = j->lse + ((size_t)b * j->H + h) * T; /* (T) */
            for (int i0 = 0; i0 < T; i0 += ATT_TILE) { /* the tile's rows see keys k0 .. i1-1 at most */
                int i1 = i0 + ATT_TILE < T ? i0 + ATT_TILE : T, rows = i1 - i0, k0 = first_key(pos, i0, j->window);
                int w = i1 - k0;
                att_abt(small, rows, w, hd, scale, qb + (size_t)i0 * ldq, ldq, kb + (size_t)k0 * ldkv, ldkv, P, w);
                for (int i = i0; i < i1; i++)
                    lse[i] = causal_softmax_row(P + (size_t)(i - i0) * w, first_key(pos, i, j->window) - k0, i + 1 - k0,
                                                w);
                att_ab(small, 0, rows, hd, w, 1.0f, P, w, vb + (size_t)k0 * ldkv, ldkv, 0, ob + (size_t)i0 * ldq, ldq);
            }
        }
    }
}

void pissa__attention_forward(float *out, float *lse, float *scratch, int nthreads, const float *q, const float *k,
                              const float *v, const int32_t *pos, int B, int T, int H, int KV, int hd, int window) {
    att_job j = {.out = out, .lse = lse, .scratch = scratch, .q = q, .k = k, .v = v, .pos = pos, .T = T, .H = H,
                 .KV = KV, .hd = hd, .window = window};
    pissa__par_for(B * KV, att_threads(nthreads), att_forward_part, &j);
}

/* With S = scale·q·kᵀ, P = softmax(S), O = P·v, per query tile [i0, i1) over keys 0 .. i1-1:
 * P = exp(S − lse); dv += Pᵀ·dO; dP = dO·vᵀ; dS_ij = P_ij·(dP_ij − Σ_j' P_ij'·dP_ij'); dq += scale·dS·k;
 * dk += scale·dSᵀ·q. */
static void att_backward_part(void *ctx, int part, int begin, int end) {
    const att_job *j = ctx;
    int T = j->T, hd = j->hd, group = j->H / j->KV;
    int ldq = j->H * hd, ldkv = j->KV * hd;
    float scale = 1.0f / sqrtf((float)hd);
    int small = att_small(hd);
    float *P = j->scratch + (size_t)part * 2 * ATT_TILE * T; /* (rows, i1) */
    float *dS = P + (size_t)ATT_TILE * T;                    /* (rows, i1): dP, turned into dS in place */
    for (int task = begin; task < end; task++) {
        int b = task / j->KV, g = task % j->KV;
        const int32_t *pos = j->pos ? j->pos + (size_t)b * T : NULL;
        size_t kvoff = (size_t)b * T * ldkv + (size_t)g * hd;
        for (int t = 0; t < T; t++) { /* dk, dv: sums over the group's heads and tiles, which start from zero */
            if (j->dk && j->fresh & 2) memset(j->dk + kvoff + (size_t)t * ldkv, 0, (size_t)hd * sizeof(float));
            if (j->dv && j->fresh & 4) memset(j->dv + kvoff + (size_t)t * ldkv, 0, (size_t)hd * sizeof(float));
        }
        for (int h = g * group; h < (g + 1) * group; h++) {
            size_t qoff = (size_t)b * T * ldq + (size_t)h * hd;
            const float *lse = j->plse + ((size_t)b * j->H + h) * T;
            for (int i0 = 0; i0 < T; i0 += ATT_TILE) { /* keys k0 .. i1-1, as forward */
                int i1 = i0 + ATT_TILE < T ? i0 + ATT_TILE : T, rows = i1 - i0, k0 = first_key(pos, i0, j->window);
                int w = i1 - k0;
                size_t kv0 = kvoff + (size_t)k0 * ldkv;
                const float *qt = j->q + qoff + (size_t)i0 * ldq, *dot = j->dout + qoff + (size_t)i0 * ldq;
                att_abt(small, rows, w, hd, scale, qt, ldq, j->k + kv0, ldkv, P, w);
                for (int i = i0; i < i1; i++)
                    causal_softmax_row_replay(P + (size_t)(i - i0) * w, lse[i], first_key(pos, i, j->window) - k0,
                                              i + 1 - k0, w);
                if (j->dv) att_ab(small, 1, w, hd, rows, 1.0f, P, w, dot, ldq, 1, j->dv + kv0, ldkv);
                if (!j->dq && !j->dk) continue;
                att_abt(small, rows, w, hd, 1.0f, dot, ldq, j->v + kv0, ldkv, dS, w);
                for (int i = i0; i < i1; i++)
                    causal_softmax_row_backward(dS + (size_t)(i - i0) * w, P + (size_t)(i - i0) * w,
                                                first_key(pos, i, j->window) - k0, i + 1 - k0, w);
                if (j->dq) /* each row of dq is written by its own tile only */
                    att_ab(small, 0, rows, hd, w, scale, dS, w, j->k + kv0, ldkv, !(j->fresh & 1),
                           j->dq + qoff + (size_t)i0 * ldq, ldq);
                if (j->dk) att_ab(small, 1, w, hd, rows, scale, dS, w, qt, ldq, 1, j->dk + kv0, ldkv);
            }
        }
    }
}

void pissa__attention_backward(float *dq, float *dk, float *dv, float *scratch, int nthreads, const float *dout,
                               const float *q, const float *k, const float *v, const float *lse, const int32_t *pos,
                               int B, int T, int H, int KV, int hd, int window, unsigned fresh) {
    if (!dq && !dk && !dv) return;
    att_job j = {.dq = dq, .dk = dk, .dv = dv, .scratch = scratch, .dout = dout, .q = q, .k = k, .v = v,
                 .plse = lse, .pos = pos, .T = T, .H = H, .KV = KV, .hd = hd, .window = window, .fresh = fresh};
    pissa__par_for(B * KV, att_threads(nthreads), att_backward_part, &j);
}

/* ---- elementwise ---- */

#define EW_CHUNK 4096 /* elements per task of the elementwise kernels */

/* σ(x) from exp_nonpos(−|x|) (branch-free, so loops vectorise): 1/(1 + e) for x >= 0, e/(1 + e) below. */
static inline float sigmoidf(float x) {
    float e = exp_nonpos(-fabsf(x));
    return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}

/* Runs fn(ctx, i0, i1) over [0, n) in chunks of EW_CHUNK elements, split across the kernel threads. */
typedef struct ew_job {
    void (*fn)(void *ctx, size_t i0, size_t i1);
    void *ctx;
    size_t n;
} ew_job;

static void ew_part(void *ctx, int part, int b, int e) {
    (void)part;
    const ew_job *j = ctx;
    size_t i1 = (size_t)e * EW_CHUNK;
    j->fn(j->ctx, (size_t)b * EW_CHUNK, i1 < j->n ? i1 : j->n);
}

static void par_elements(size_t n, void (*fn)(void *ctx, size_t i0, size_t i1), void *ctx) {
    ew_job j = {fn, ctx, n};
    pissa__par_for((int)((n + EW_CHUNK - 1) / EW_CHUNK), pissa__par_threads(), ew_part, &j);
}

void pissa__silu_forward(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * sigmoidf(inp[i]);
}

/* d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x))) */
void pissa__silu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    if (!dinp) return;
    for (size_t i = 0; i < n; i++) {
        float sg = sigmoidf(inp[i]);
        dinp[i] += dout[i] * sg * (1.0f + inp[i] * (1.0f - sg));
    }
}

void pissa__mul_forward(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

void pissa__mul_backward(float *da, float *db, const float *dout, const float *a, const float *b, size_t n) {
    if (da)
        for (size_t i = 0; i < n; i++) da[i] += dout[i] * b[i];
    if (db)
        for (size_t i = 0; i < n; i++) db[i] += dout[i] * a[i];
}

typedef struct add_fwd_job {
    float *out;
    const float *a, *b;
} add_fwd_job;

static void add_forward_range(void *ctx, size_t i0, size_t i1) {
    const add_fwd_job *j = ctx;
    for (size_t i = i0; i < i1; i++) j->out[i] = j->a[i] + j->b[i];
}

void pissa__add_forward(float *out, const float *a, const float *b, size_t n) {
    add_fwd_job j = {out, a, b};
    par_elements(n, add_forward_range, &j);
}

typedef struct add_job {
    float *da, *db;
    const float *dout;
    unsigned fresh;
} add_job;

static void add_grad(float *restrict d, const float *restrict dout, size_t i0, size_t i1, int fresh) {
    if (fresh) memcpy(d + i0, dout + i0, (i1 - i0) * sizeof(float));
    else
        for (size_t i = i0; i < i1; i++) d[i] += dout[i];
}

static void add_backward_range(void *ctx, size_t i0, size_t i1) {
    const add_job *j = ctx;
    if (j->da) add_grad(j->da, j->dout, i0, i1, j->fresh & 1);
    if (j->db) add_grad(j->db, j->dout, i0, i1, j->fresh & 2);
}

void pissa__add_backward(float *da, float *db, const float *dout, size_t n, unsigned fresh) {
    if (!da && !db) return;
    add_job j = {da, db, dout, fresh};
    par_elements(n, add_backward_range, &j);
}

typedef struct swiglu_job {
    float *out, *dgate, *dup;
    const float *gate, *up, *dout;
    unsigned fresh;
} swiglu_job;

TC static void swiglu_forward_range(void *ctx, size_t i0, size_t i1) {
    const swiglu_job *j = ctx;
    float *restrict out = j->out;
    const float *restrict gate = j->gate, *restrict up = j->up;
    for (size_t i = i0; i < i1; i++) out[i] = gate[i] * sigmoidf(gate[i]) * up[i];
}

void pissa__swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
    swiglu_job j = {.out = out, .gate = gate, .up = up};
    par_elements(n, swiglu_forward_range, &j);
}

/* out = silu(g)·u: dg += dout·u·σ(g)·(1 + g·(1 − σ(g))), du += dout·g·σ(g). */
TC static void swiglu_backward_range(void *ctx, size_t i0, size_t i1) {
    const swiglu_job *j = ctx;
    float *restrict dgate = j->dgate, *restrict dup = j->dup;
    const float *restrict gate = j->gate, *restrict up = j->up, *restrict dout = j->dout;
    int fg = j->fresh & 1, fu = j->fresh & 2;
    if (dgate)
        for (size_t i = i0; i < i1; i++) {
            float g = gate[i], sg = sigmoidf(g);
            dgate[i] = (fg ? 0.0f : dgate[i]) + dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
        }
    if (dup)
        for (size_t i = i0; i < i1; i++) dup[i] = (fu ? 0.0f : dup[i]) + dout[i] * gate[i] * sigmoidf(gate[i]);
}

void pissa__swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                            size_t n, unsigned fresh) {
    if (!dgate && !dup) return;
    swiglu_job j = {.dgate = dgate, .dup = dup, .gate = gate, .up = up, .dout = dout, .fresh = fresh};
    par_elements(n, swiglu_backward_range, &j);
}

/* ---- cross-entropy ---- */

/* Rows split across the kernel threads; each part sums its rows' losses in double, and the parts are added in
 * order, so the loss is deterministic for a thread count. */

typedef struct xent_job {
    float *lse, *dlogits;
    const float *logits, *clse; /* clse: the lse saved by forward, read by backward */
    const int32_t *targets;
    int V, fresh;
    float g;
    double total[PISSA__PAR_MAX];
    int count[PISSA__PAR_MAX];
} xent_job;

/* log Σ exp(x) of one row (see row_max and row_sum_exp). */
TC static double row_logsumexp(const float *x, int V) {
    float mx = row_max(x, V);
    return mx + log((double)row_sum_exp(NULL, x, V, mx));
}

static void xent_forward_part(void *ctx, int part, int b, int e) {
    xent_job *j = ctx;
    double total = 0.0;
    int count = 0;
    for (int n = b; n < e; n++) {
        j->lse[n] = 0.0f;
        if (j->targets[n] == PISSA_IGNORE_INDEX) continue;
        const float *x = j->logits + (size_t)n * j->V;
        double l = row_logsumexp(x, j->V);
        j->lse[n] = (float)l;
        total += l - x[j->targets[n]];
        count++;
    }
    j->total[part] = total;
    j->count[part] = count;
}

int pissa__cross_entropy_forward(float *loss, float *lse, const float *logits, const int32_t *targets, int N,
                                 int V) {
    xent_job j = {.lse = lse, .logits = logits, .targets = targets, .V = V};
    pissa__par_for(N, pissa__par_threads(), xent_forward_part, &j);
    double total = 0.0;
    int count = 0;
    for (int p = 0; p < PISSA__PAR_MAX; p++) {
        total += j.total[p];
        count += j.count[p];
    }
    *loss = count ? (float)(total / count) : 0.0f;
    return count;
}

/* x − lse <= 0 for every logit (lse >= the row maximum), so exp_nonpos applies. */
TC static void xent_backward_rows(void *ctx, int part, int b, int e) {
    (void)part;
    const xent_job *j = ctx;
    int V = j->V;
    float g = j->g;
    for (int n = b; n < e; n++) {
        float *restrict d = j->dlogits + (size_t)n * V;
        if (j->targets[n] == PISSA_IGNORE_INDEX) {
            if (j->fresh) memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
        const float *restrict x = j->logits + (size_t)n * V;
        float l = j->clse[n];
        if (j->fresh)
            for (int v = 0; v < V; v++) d[v] = g * exp_nonpos(x[v] - l);
        else
            for (int v = 0; v < V; v++) d[v] += g * exp_nonpos(x[v] - l);
        d[j->targets[n]] -= g;
    }
}

void pissa__cross_entropy_backward(float *dlogits, float dloss, const float *logits, const int32_t *targets,
                                   const float *lse, int N, int V, unsigned fresh) {
    if (!dlogits) return;
    int count = 0;
    for (int n = 0; n < N; n++) count += targets[n] != PISSA_IGNORE_INDEX;
    if (!count) {
        if (fresh & 1) memset(dlogits, 0, (size_t)N * V * sizeof(float));
        return;
    }
    xent_job j = {.clse = lse, .dlogits = dlogits, .logits = logits, .targets = targets, .V = V,
                  .fresh = fresh & 1, .g = dloss / (float)count};
    pissa__par_for(N, pissa__par_threads(), xent_backward_rows, &j);
}
