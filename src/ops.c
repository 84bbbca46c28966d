/* Training kernels (see ops.h): forward/backward pairs, dense products through cblas_sgemm. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "ops.h"

/* ---- embedding ---- */

void pissa__embedding_forward(float *out, const int32_t *ids, const float *wte, int N, int C) {
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, wte + (size_t)ids[n] * C, (size_t)C * sizeof(float));
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
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w, C, 0.0f, out, OC);
}

void pissa__matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int N,
                            int C, int OC) {
    if (dinp) /* (N, C) += (N, OC)·(OC, C) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
    if (dw) /* (OC, C) += (N, OC)ᵀ·(N, C) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
}

/* ---- LoRA / PiSSA linear ---- */

size_t pissa__lora_scratch_floats(int N, int C, int r, int has_mask) {
    return (size_t)N * r + (has_mask ? (size_t)N * C : 0);
}

/* inp_d (N, C) = inp ⊙ mask / (1 − p). */
static void apply_dropout(float *restrict out, const float *restrict inp, const uint8_t *restrict mask, float p,
                          size_t n) {
    float keep_scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) out[i] = mask[i] ? inp[i] * keep_scale : 0.0f;
}

void pissa__lora_forward(float *out, float *xa, float *scratch, const float *inp, const uint8_t *mask, float p,
                         const float *w_res, const float *A, const float *B, float s, int N, int C, int OC, int r) {
    const float *inp_d = inp; /* (N, C) */
    if (mask) {
        apply_dropout(scratch + (size_t)N * r, inp, mask, p, (size_t)N * C);
        inp_d = scratch + (size_t)N * r;
    }
    /* out = inp·W_resᵀ; xa = inp_d·Aᵀ; out += s·xa·Bᵀ */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w_res, C, 0.0f, out, OC);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, C, 1.0f, inp_d, C, A, C, 0.0f, xa, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, r, s, xa, r, B, r, 1.0f, out, OC);
}

void pissa__lora_backward(float *dinp, float *dA, float *dB, float *scratch, const float *dout, const float *inp,
                          const uint8_t *mask, float p, const float *w_res, const float *A, const float *B,
                          const float *xa, float s, int N, int C, int OC, int r) {
    float *dxa = scratch;                    /* (N, r) gradient of xa */
    float *tmp = scratch + (size_t)N * r;    /* (N, C) inp_d, then dinp_d; only with a mask */
    if (dB) /* (OC, r) += s·(N, OC)ᵀ·(N, r) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, r, N, s, dout, OC, xa, r, 1.0f, dB, r);
    if (dA || dinp) /* dxa (N, r) = s·dout·B */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, OC, s, dout, OC, B, r, 0.0f, dxa, r);
    if (dA) { /* (r, C) += dxaᵀ·inp_d */
        const float *inp_d = inp;
        if (mask) {
            apply_dropout(tmp, inp, mask, p, (size_t)N * C);
            inp_d = tmp;
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, C, N, 1.0f, dxa, r, inp_d, C, 1.0f, dA, C);
    }
    if (dinp) {
        /* frozen path: dinp += dout·W_res */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, w_res, C, 1.0f, dinp, C);
        if (!mask) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, r, 1.0f, dxa, r, A, C, 1.0f, dinp, C);
        } else { /* the adapter path went through the dropout: dinp += (dxa·A) ⊙ mask/(1 − p) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, r, 1.0f, dxa, r, A, C, 0.0f, tmp, C);
            float keep_scale = 1.0f / (1.0f - p);
            size_t n = (size_t)N * C;
            for (size_t i = 0; i < n; i++) dinp[i] += mask[i] ? tmp[i] * keep_scale : 0.0f;
        }
    }
}

void pissa__dropout_mask(uint8_t *mask, size_t n, float p, pissa_rng *rng) {
    for (size_t i = 0; i < n; i++) mask[i] = pissa__rng_uniform(rng) >= (double)p;
}

/* ---- RMSNorm ---- */

void pissa__rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, float eps, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *restrict x = inp + (size_t)n * C;
        float *restrict y = out + (size_t)n * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
        float rs = (float)(1.0 / sqrt(ss / C + eps));
        for (int c = 0; c < C; c++) y[c] = x[c] * rs * w[c];
        rstd[n] = rs;
    }
}

/* y_c = x_c·r·w_c with r = (mean(x²) + eps)^(−1/2), so ∂r/∂x_c = −r³·x_c/C:
 * dx_c = r·w_c·dy_c − (r³/C)·x_c·Σ_j dy_j·w_j·x_j;  dw_c = Σ_n dy_c·x_c·r. */
void pissa__rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                             const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *restrict x = inp + (size_t)n * C;
        const float *restrict dy = dout + (size_t)n * C;
        float rs = rstd[n];
        if (dw)
            for (int c = 0; c < C; c++) dw[c] += dy[c] * x[c] * rs;
        if (dinp) {
            float *restrict dx = dinp + (size_t)n * C;
            double dot = 0.0;
            for (int c = 0; c < C; c++) dot += (double)dy[c] * w[c] * x[c];
            float k = (float)(dot * rs * rs * rs / C);
            for (int c = 0; c < C; c++) dx[c] += rs * w[c] * dy[c] - k * x[c];
        }
    }
}

/* ---- RoPE ---- */

void pissa__rope_tables(float *cos_tab, float *sin_tab, const int32_t *pos, int start, int T, int hd, float theta) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        /* HF: inv_freq = 1 / theta^(arange(0, hd, 2) / hd), all in float32 */
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
        for (int t = 0; t < T; t++) {
            float p = (float)(pos ? pos[t] : start + t);
            float angle = p * inv_freq;
            cos_tab[(size_t)t * half + i] = (float)cos((double)angle);
            sin_tab[(size_t)t * half + i] = (float)sin((double)angle);
        }
    }
}

void pissa__rope_forward(float *out, const float *inp, const float *cos_tab, const float *sin_tab, int B, int T,
                         int nh, int hd) {
    int half = hd / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *cs = cos_tab + (size_t)t * half, *sn = sin_tab + (size_t)t * half;
            for (int h = 0; h < nh; h++) {
                size_t off = (((size_t)b * T + t) * nh + h) * hd;
                const float *x = inp + off;
                float *y = out + off;
                for (int i = 0; i < half; i++) { /* both halves read before either is written: in place is safe */
                    float x1 = x[i], x2 = x[i + half];
                    y[i] = x1 * cs[i] - x2 * sn[i];
                    y[i + half] = x2 * cs[i] + x1 * sn[i];
                }
            }
        }
}

void pissa__rope_backward(float *dinp, const float *dout, const float *cos_tab, const float *sin_tab, int B, int T,
                          int nh, int hd) {
    if (!dinp) return;
    int half = hd / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *cs = cos_tab + (size_t)t * half, *sn = sin_tab + (size_t)t * half;
            for (int h = 0; h < nh; h++) {
                size_t off = (((size_t)b * T + t) * nh + h) * hd;
                const float *restrict dy = dout + off;
                float *restrict dx = dinp + off;
                for (int i = 0; i < half; i++) { /* transpose of the rotation */
                    float d1 = dy[i], d2 = dy[i + half];
                    dx[i] += d1 * cs[i] + d2 * sn[i];
                    dx[i + half] += d2 * cs[i] - d1 * sn[i];
                }
            }
        }
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
    int32_t ni;
    memcpy(&ni, &big, sizeof ni);
    ni -= 0x4B400000; /* round(t); far below −127 for t < −2²² or −inf */
    ni = ni < -127 ? -127 : ni > 128 ? 128 : ni; /* NaN input gives garbage bits: keep the shift defined */
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

/* row[0..n) ← softmax(row[0..n)), row[n..T) ← 0 (the masked future positions). */
__attribute__((target_clones("avx2", "default"))) static void causal_softmax_row(float *row, int n, int T) {
    float acc[ROW_LANES];
    for (int u = 0; u < ROW_LANES; u++) acc[u] = row[0];
    int j = 0;
    for (; j + ROW_LANES <= n; j += ROW_LANES)
        for (int u = 0; u < ROW_LANES; u++) acc[u] = row[j + u] > acc[u] ? row[j + u] : acc[u];
    float mx = acc[0];
    for (int u = 1; u < ROW_LANES; u++) mx = acc[u] > mx ? acc[u] : mx;
    for (; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    for (j = 0; j < n; j++) row[j] = exp_nonpos(row[j] - mx);
    for (int u = 0; u < ROW_LANES; u++) acc[u] = 0.0f;
    for (j = 0; j + ROW_LANES <= n; j += ROW_LANES)
        for (int u = 0; u < ROW_LANES; u++) acc[u] += row[j + u];
    for (; j < n; j++) acc[0] += row[j];
    float sum = 0.0f;
    for (int u = 0; u < ROW_LANES; u++) sum += acc[u];
    float inv = 1.0f / sum;
    for (j = 0; j < n; j++) row[j] *= inv;
    for (j = n; j < T; j++) row[j] = 0.0f;
}

/* d[0..n) ← p·(d − Σ p·d), d[n..T) ← 0: the softmax backward of one causal row. */
__attribute__((target_clones("avx2", "default"))) static void causal_softmax_row_backward(float *d,
                                                                                                 const float *p, int n,
                                                                                                 int T) {
    float acc[ROW_LANES] = {0};
    int j = 0;
    for (; j + ROW_LANES <= n; j += ROW_LANES)
        for (int u = 0; u < ROW_LANES; u++) acc[u] += p[j + u] * d[j + u];
    for (; j < n; j++) acc[0] += p[j] * d[j];
    float dot = 0.0f;
    for (int u = 0; u < ROW_LANES; u++) dot += acc[u];
    for (j = 0; j < n; j++) d[j] = p[j] * (d[j] - dot);
    for (j = n; j < T; j++) d[j] = 0.0f;
}

size_t pissa__attention_scratch_floats(int T) { return (size_t)T * T; }

void pissa__attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                              int H, int KV, int hd) {
    int group = H / KV;
    int ldq = H * hd, ldkv = KV * hd;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / group;
            const float *qb = q + (size_t)b * T * ldq + (size_t)h * hd;   /* (T, hd), row stride H·hd */
            const float *kb = k + (size_t)b * T * ldkv + (size_t)g * hd;  /* (T, hd), row stride KV·hd */
            const float *vb = v + (size_t)b * T * ldkv + (size_t)g * hd;
            float *P = att + ((size_t)b * H + h) * T * T;                 /* (T, T) */
            /* scores for every (i, j); the j > i half is then overwritten with 0 */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, qb, ldq, kb, ldkv, 0.0f, P, T);
            for (int i = 0; i < T; i++) causal_softmax_row(P + (size_t)i * T, i + 1, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, P, T, vb, ldkv, 0.0f,
                        out + (size_t)b * T * ldq + (size_t)h * hd, ldq);
        }
}

/* With S = scale·q·kᵀ, P = softmax(S), O = P·v:
 * dv += Pᵀ·dO; dP = dO·vᵀ; dS_ij = P_ij·(dP_ij − Σ_j' P_ij'·dP_ij'); dq += scale·dS·k; dk += scale·dSᵀ·q. */
void pissa__attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *q,
                               const float *k, const float *v, const float *att, int B, int T, int H, int KV,
                               int hd) {
    if (!dq && !dk && !dv) return;
    int group = H / KV;
    int ldq = H * hd, ldkv = KV * hd;
    float scale = 1.0f / sqrtf((float)hd);
    float *dS = scratch; /* (T, T): dP, turned into dS in place */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / group;
            size_t qoff = (size_t)b * T * ldq + (size_t)h * hd, kvoff = (size_t)b * T * ldkv + (size_t)g * hd;
            const float *P = att + ((size_t)b * H + h) * T * T;
            const float *dob = dout + qoff;
            if (dv)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, P, T, dob, ldq, 1.0f,
                            dv + kvoff, ldkv);
            if (!dq && !dk) continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dob, ldq, v + kvoff, ldkv, 0.0f,
                        dS, T);
            for (int i = 0; i < T; i++) causal_softmax_row_backward(dS + (size_t)i * T, P + (size_t)i * T, i + 1, T);
            if (dq)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, scale, dS, T, k + kvoff, ldkv, 1.0f,
                            dq + qoff, ldq);
            if (dk)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, scale, dS, T, q + qoff, ldq, 1.0f,
                            dk + kvoff, ldkv);
        }
}

/* ---- elementwise ---- */

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

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

void pissa__add_forward(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void pissa__add_backward(float *da, float *db, const float *dout, size_t n) {
    if (da)
        for (size_t i = 0; i < n; i++) da[i] += dout[i];
    if (db)
        for (size_t i = 0; i < n; i++) db[i] += dout[i];
}

void pissa__swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = gate[i] * sigmoidf(gate[i]) * up[i];
}

void pissa__swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                            size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], sg = sigmoidf(g);
        if (dgate) dgate[i] += dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
        if (dup) dup[i] += dout[i] * g * sg;
    }
}

/* ---- cross-entropy ---- */

int pissa__cross_entropy_forward(float *loss, float *lse, const float *logits, const int32_t *targets, int N,
                                 int V) {
    double total = 0.0;
    int count = 0;
    for (int n = 0; n < N; n++) {
        lse[n] = 0.0f;
        if (targets[n] == PISSA_IGNORE_INDEX) continue;
        const float *x = logits + (size_t)n * V;
        float mx = x[0];
        for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        double sum = 0.0;
        for (int v = 0; v < V; v++) sum += expf(x[v] - mx);
        double l = mx + log(sum);
        lse[n] = (float)l;
        total += l - x[targets[n]];
        count++;
    }
    *loss = count ? (float)(total / count) : 0.0f;
    return count;
}

void pissa__cross_entropy_backward(float *dlogits, float dloss, const float *logits, const int32_t *targets,
                                   const float *lse, int N, int V) {
    if (!dlogits) return;
    int count = 0;
    for (int n = 0; n < N; n++) count += targets[n] != PISSA_IGNORE_INDEX;
    if (!count) return;
    float g = dloss / (float)count;
    for (int n = 0; n < N; n++) {
        if (targets[n] == PISSA_IGNORE_INDEX) continue;
        const float *restrict x = logits + (size_t)n * V;
        float *restrict d = dlogits + (size_t)n * V;
        float l = lse[n];
        for (int v = 0; v < V; v++) d[v] += g * expf(x[v] - l);
        d[targets[n]] -= g;
    }
}
