/* Training kernels (src/ops.c) against independent float64 references written plainly below (naive loops, no
 * BLAS). For every op:
 *  - forward (and its saved values) vs the reference: max|f32 − f64| / max|f64| <= FWD_TOL;
 *  - backward vs central finite differences of the reference, h = 1e-6 in double, on L = Σ dout ⊙ out with a
 *    random dout: max|analytic − numeric| / max|numeric| <= BWD_TOL, starting from random gradient buffers so
 *    that the += contract is part of the check;
 *  - accumulation: two backward calls from zero give twice one call;
 *  - NULL gradient pointers: the other gradients are unchanged by the omission, and with every gradient NULL
 *    (and scratch NULL) nothing is touched.
 * Inputs, saved values and dout are compared byte for byte before and after every backward call; outputs, saved
 * buffers and scratch are filled with NaN first, so reading anything not written shows up. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "testutil.h"

#define FWD_TOL 1e-5
#define BWD_TOL 1e-4
#define ACC_TOL 1e-5
#define FD_H 1e-6
#define MAXIN 3
enum { ATT_THREADS = 4 }; /* the attention kernels' thread count, which also sizes their scratch */

typedef struct op_case op_case;
struct op_case {
    const char *name;
    int n_in;                /* float inputs that receive gradients */
    const char *in_name[MAXIN];
    size_t in_n[MAXIN];      /* element counts */
    size_t n_out, n_saved, n_scratch;
    void (*ref)(const op_case *c, double *const *in, double *out, double *saved);
    void (*fwd)(op_case *c, float *const *in, float *out, float *saved, float *scratch);
    void (*bwd)(const op_case *c, float *const *din, float *scratch, const float *dout, float *const *in,
                const float *saved);
    /* dimensions and non-differentiable data */
    int B, T, H, KV, hd, N, C, OC, r, V, window;
    float s, p, eps, theta;
    int start;
    const int32_t *ids;      /* embedding ids, cross-entropy targets, or rope positions */
    const int32_t *pos;      /* rope and attention: packed rows' per-token positions (B, T), or NULL */
    const uint8_t *mask;     /* lora dropout mask or NULL */
    float *frozen;           /* lora W_res (OC, C) */
    double *frozen_d;
    float *cos_tab, *sin_tab;
    int count;               /* cross-entropy: value returned by forward */
    unsigned fresh_slots;    /* gradients din[k] the kernel can overwrite (ops.h `fresh`), by bit k */
    unsigned fresh;          /* the `fresh` argument the bwd wrapper passes (0: accumulate) */
};

/* ---------------------------------------------------------------- float64 references */

static void ref_embedding(const op_case *c, double *const *in, double *out, double *saved) {
    (void)saved;
    for (int n = 0; n < c->N; n++)
        for (int j = 0; j < c->C; j++) out[n * c->C + j] = in[0][c->ids[n] * c->C + j];
}

static void ref_matmul(const op_case *c, double *const *in, double *out, double *saved) {
    (void)saved;
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->OC; o++) {
            double acc = 0;
            for (int j = 0; j < c->C; j++) acc += in[0][n * c->C + j] * in[1][o * c->C + j];
            out[n * c->OC + o] = acc;
        }
}

/* Without dropout, through the merged weight W_res + s·B·A (a different route from the kernel's); with
 * dropout, branch by branch. saved = xa, stored transposed (r, N). */
static void ref_lora(const op_case *c, double *const *in, double *out, double *saved) {
    const double *x = in[0], *A = in[1], *B = in[2], *W = c->frozen_d;
    int N = c->N, C = c->C, OC = c->OC, r = c->r;
    double *xd = malloc(sizeof(double) * N * C);
    for (int i = 0; i < N * C; i++) xd[i] = c->mask ? (c->mask[i] ? x[i] / (1.0 - c->p) : 0.0) : x[i];
    for (int n = 0; n < N; n++)
        for (int k = 0; k < r; k++) {
            double acc = 0;
            for (int j = 0; j < C; j++) acc += xd[n * C + j] * A[k * C + j];
            saved[k * N + n] = acc;
        }
    if (!c->mask) {
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) {
                double acc = 0;
                for (int j = 0; j < C; j++) {
                    double wm = W[o * C + j];
                    for (int k = 0; k < r; k++) wm += c->s * B[o * r + k] * A[k * C + j];
                    acc += x[n * C + j] * wm;
                }
                out[n * OC + o] = acc;
            }
    } else {
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) {
                double acc = 0;
                for (int j = 0; j < C; j++) acc += x[n * C + j] * W[o * C + j];
                for (int k = 0; k < r; k++) acc += c->s * saved[k * N + n] * B[o * r + k];
                out[n * OC + o] = acc;
            }
    }
    free(xd);
}

static void ref_rmsnorm(const op_case *c, double *const *in, double *out, double *saved) {
    for (int n = 0; n < c->N; n++) {
        const double *x = in[0] + n * c->C;
        double ms = 0;
        for (int j = 0; j < c->C; j++) ms += x[j] * x[j];
        ms /= c->C;
        double rstd = 1.0 / sqrt(ms + c->eps);
        for (int j = 0; j < c->C; j++) out[n * c->C + j] = x[j] * rstd * in[1][j];
        saved[n] = rstd;
    }
}

/* REFERENCE.md §5 rotate_half: pairs (i, i + hd/2), angle pos·theta^(−2i/hd); the position of token (b, t) is
 * c->pos[b][t] for packed rows, else the table's position of t. */
static double rope_angle(const op_case *c, int b, int t, int i) {
    double p = c->pos ? c->pos[b * c->T + t] : c->ids ? c->ids[t] : c->start + t;
    return p * pow((double)c->theta, -2.0 * i / c->hd);
}

static void ref_rope(const op_case *c, double *const *in, double *out, double *saved) {
    (void)saved;
    int half = c->hd / 2;
    for (int b = 0; b < c->B; b++)
        for (int t = 0; t < c->T; t++)
            for (int h = 0; h < c->H; h++) {
                const double *x = in[0] + ((b * c->T + t) * c->H + h) * c->hd;
                double *y = out + ((b * c->T + t) * c->H + h) * c->hd;
                for (int i = 0; i < half; i++) {
                    double a = rope_angle(c, b, t, i);
                    y[i] = x[i] * cos(a) - x[i + half] * sin(a);
                    y[i + half] = x[i + half] * cos(a) + x[i] * sin(a);
                }
            }
}

/* q (B, T, H, hd), k v (B, T, KV, hd); saved = lse (B, H, T): log Σ_j exp(s_ij) over the keys i − W < j <= i (every
 * j <= i without a window) that belong to query i's own packed sequence: j >= i − pos[b][i]. */
static void ref_attention(const op_case *c, double *const *in, double *out, double *saved) {
    int B = c->B, T = c->T, H = c->H, KV = c->KV, hd = c->hd;
    const double *q = in[0], *k = in[1], *v = in[2];
    double *p = malloc((size_t)T * sizeof *p); /* one row of probabilities */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / KV);
            for (int i = 0; i < T; i++) {
                double mx = -INFINITY, sum = 0;
                int lo = c->window && i - c->window + 1 > 0 ? i - c->window + 1 : 0;
                if (c->pos && i - c->pos[b * T + i] > lo) lo = i - c->pos[b * T + i];
                for (int j = 0; j < T; j++) {
                    if (j > i || j < lo) {
                        p[j] = 0;
                        continue;
                    }
                    double dot = 0;
                    for (int d = 0; d < hd; d++)
                        dot += q[((b * T + i) * H + h) * hd + d] * k[((b * T + j) * KV + g) * hd + d];
                    p[j] = dot / sqrt((double)hd);
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = lo; j <= i; j++) sum += (p[j] = exp(p[j] - mx));
                for (int j = lo; j <= i; j++) p[j] /= sum;
                saved[(b * H + h) * T + i] = mx + log(sum);
                for (int d = 0; d < hd; d++) {
                    double acc = 0;
                    for (int j = lo; j <= i; j++) acc += p[j] * v[((b * T + j) * KV + g) * hd + d];
                    out[((b * T + i) * H + h) * hd + d] = acc;
                }
            }
        }
    free(p);
}

static void ref_bias(const op_case *c, double *const *in, double *out, double *saved) {
    (void)saved;
    for (int n = 0; n < c->N; n++)
        for (int j = 0; j < c->C; j++) out[n * c->C + j] = in[0][n * c->C + j] + in[1][j];
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static void ref_silu(const op_case *c, double *const *in, double *out, double *saved) {
    (void)saved;
    for (size_t i = 0; i < c->n_out; i++) out[i] = in[0][i] * sigmoid(in[0][i]);
}
static void ref_mul(const op_case *c, double *const *in, double *out, double *saved) {
    (void)saved;
    for (size_t i = 0; i < c->n_out; i++) out[i] = in[0][i] * in[1][i];
}
static void ref_add(const op_case *c, double *const *in, double *out, double *saved) {
    (void)saved;
    for (size_t i = 0; i < c->n_out; i++) out[i] = in[0][i] + in[1][i];
}
static void ref_swiglu(const op_case *c, double *const *in, double *out, double *saved) {
    (void)saved;
    for (size_t i = 0; i < c->n_out; i++) out[i] = in[0][i] * sigmoid(in[0][i]) * in[1][i];
}

/* out = the scalar loss; saved = lse (N), 0 for ignored rows. */
static void ref_cross_entropy(const op_case *c, double *const *in, double *out, double *saved) {
    double total = 0;
    int count = 0;
    for (int n = 0; n < c->N; n++) {
        saved[n] = 0;
        if (c->ids[n] == -100) continue;
        const double *x = in[0] + n * c->V;
        double mx = x[0], sum = 0;
        for (int v = 1; v < c->V; v++) mx = fmax(mx, x[v]);
        for (int v = 0; v < c->V; v++) sum += exp(x[v] - mx);
        saved[n] = mx + log(sum);
        total += saved[n] - x[c->ids[n]];
        count++;
    }
    out[0] = count ? total / count : 0.0;
}

/* ---------------------------------------------------------------- kernel adapters */

static void fwd_embedding(op_case *c, float *const *in, float *out, float *saved, float *scratch) {
    (void)saved, (void)scratch;
    pissa__embedding_forward(out, c->ids, in[0], c->N, c->C);
}
static void bwd_embedding(const op_case *c, float *const *din, float *scratch, const float *dout, float *const *in,
                          const float *saved) {
    (void)scratch, (void)in, (void)saved;
    pissa__embedding_backward(din[0], dout, c->ids, c->N, c->C);
}

static void fwd_matmul(op_case *c, float *const *in, float *out, float *saved, float *scratch) {
    (void)saved, (void)scratch;
    pissa__matmul_forward(out, in[0], in[1], c->N, c->C, c->OC);
}
static void bwd_matmul(const op_case *c, float *const *din, float *scratch, const float *dout, float *const *in,
                       const float *saved) {
    (void)scratch, (void)saved;
    pissa__matmul_backward(din[0], din[1], dout, in[0], in[1], c->N, c->C, c->OC, c->fresh);
}

/* The frozen W_res (OC, C) as the float32 weight the lora op reads. */
static pissa__qweight frozen_w(const op_case *c) {
    pissa__qweight q;
    assert_ok(pissa__qweight_wrap(&q, PISSA_QTYPE_F32, c->OC, c->C, c->frozen, NULL));
    return q;
}
static void fwd_lora(op_case *c, float *const *in, float *out, float *saved, float *scratch) {
    pissa__qweight w = frozen_w(c);
    pissa__lora_forward(out, saved, scratch, 1, in[0], c->mask, c->p, &w, in[1], in[2], c->s, c->N, c->C, c->OC, c->r);
}
static void bwd_lora(const op_case *c, float *const *din, float *scratch, const float *dout, float *const *in,
                     const float *saved) {
    pissa__qweight w = frozen_w(c);
    pissa__lora_backward(din[0], din[1], din[2], scratch, 1, dout, in[0], c->mask, c->p, &w, in[1], in[2], saved, c->s,
                         c->N, c->C, c->OC, c->r, c->fresh);
}

static void fwd_rmsnorm(op_case *c, float *const *in, float *out, float *saved, float *scratch) {
    (void)scratch;
    pissa__rmsnorm_forward(out, saved, in[0], in[1], c->eps, c->N, c->C);
}
static void bwd_rmsnorm(const op_case *c, float *const *din, float *scratch, const float *dout, float *const *in,
                        const float *saved) {
    (void)scratch;
    pissa__rmsnorm_backward(din[0], din[1], dout, in[0], in[1], saved, c->N, c->C, c->fresh);
}

/* inv_freq = theta^(−2i/hd) in float32, as the default rope type (config.c) computes it. */
static void inv_freq_of(float theta, int hd, float *inv) {
    for (int i = 0; i < hd / 2; i++) inv[i] = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
}

static void fwd_bias(op_case *c, float *const *in, float *out, float *saved, float *scratch) {
    (void)saved, (void)scratch;
    pissa__bias_forward(out, in[0], in[1], c->N, c->C);
}
static void bwd_bias(const op_case *c, float *const *din, float *scratch, const float *dout, float *const *in,
                     const float *saved) {
    (void)scratch, (void)saved, (void)in;
    pissa__bias_backward(din[0], din[1], dout, c->N, c->C, c->fresh);
}

static void fwd_rope(op_case *c, float *const *in, float *out, float *saved, float *scratch) {
    (void)saved, (void)scratch;
    float inv[64];
    inv_freq_of(c->theta, c->hd, inv);
    pissa__rope_tables(c->cos_tab, c->sin_tab, c->ids, c->start, c->T, c->hd / 2, inv);
    pissa__rope_forward(out, in[0], c->cos_tab, c->sin_tab, c->pos, c->B, c->T, c->H, c->hd);
}
static void bwd_rope(const op_case *c, float *const *din, float *scratch, const float *dout, float *const *in,
                     const float *saved) {
    (void)scratch, (void)in, (void)saved;
    pissa__rope_backward(din[0], dout, c->cos_tab, c->sin_tab, c->pos, c->B, c->T, c->H, c->hd, c->fresh);
}

static void fwd_attention(op_case *c, float *const *in, float *out, float *saved, float *scratch) {
    pissa__attention_forward(out, saved, scratch, ATT_THREADS, in[0], in[1], in[2], c->pos, c->B, c->T, c->H, c->KV,
                             c->hd, c->window);
}
static void bwd_attention(const op_case *c, float *const *din, float *scratch, const float *dout, float *const *in,
                          const float *saved) {
    pissa__attention_backward(din[0], din[1], din[2], scratch, ATT_THREADS, dout, in[0], in[1], in[2], saved, c->pos,
                              c->B, c->T, c->H, c->KV, c->hd, c->window, c->fresh);
}

static void fwd_silu(op_case *c, float *const *in, float *out, float *saved, float *scratch) {
    (void)saved, (void)scratch;
    pissa__silu_forward(out, in[0], c->n_out);
}
static void bwd_silu(const op_case *c, float *const *din, float *scratch, const float *dout, float *const *in,
                     const float *saved) {
    (void)scratch, (void)saved;
    pissa__silu_backward(din[0], dout, in[0], c->n_out);
}
static void fwd_mul(op_case *c, float *const *in, float *out, float *saved, float *scratch) {
    (void)saved, (void)scratch;
    pissa__mul_forward(out, in[0], in[1], c->n_out);
}
static void bwd_mul(const op_case *c, float *const *din, float *scratch, const float *dout, float *const *in,
                    const float *saved) {
    (void)scratch, (void)saved;
    pissa__mul_backward(din[0], din[1], dout, in[0], in[1], c->n_out);
}
static void fwd_add(op_case *c, float *const *in, float *out, float *saved, float *scratch) {
    (void)saved, (void)scratch;
    pissa__add_forward(out, in[0], in[1], c->n_out);
}
static void bwd_add(const op_case *c, float *const *din, float *scratch, const float *dout, float *const *in,
                    const float *saved) {
    (void)scratch, (void)saved, (void)in;
    pissa__add_backward(din[0], din[1], dout, c->n_out, c->fresh);
}
static void fwd_swiglu(op_case *c, float *const *in, float *out, float *saved, float *scratch) {
    (void)saved, (void)scratch;
    pissa__swiglu_forward(out, in[0], in[1], c->n_out);
}
static void bwd_swiglu(const op_case *c, float *const *din, float *scratch, const float *dout, float *const *in,
                       const float *saved) {
    (void)scratch, (void)saved;
    pissa__swiglu_backward(din[0], din[1], dout, in[0], in[1], c->n_out, c->fresh);
}

static void fwd_cross_entropy(op_case *c, float *const *in, float *out, float *saved, float *scratch) {
    (void)scratch;
    c->count = pissa__cross_entropy_forward(out, saved, in[0], c->ids, c->N, c->V);
}
static void bwd_cross_entropy(const op_case *c, float *const *din, float *scratch, const float *dout,
                              float *const *in, const float *saved) {
    (void)scratch;
    pissa__cross_entropy_backward(din[0], dout[0], in[0], c->ids, saved, c->N, c->V, c->fresh);
}

/* ---------------------------------------------------------------- the cases (small, non-trivial shapes) */

enum { B_ = 2, T_ = 5, H_ = 4, KV_ = 2, HD_ = 8, N_ = B_ * T_, C_ = 12, OC_ = 7, R_ = 3, V_ = 11, E_ = 60 };

static const int32_t EMB_IDS[N_] = {3, 0, 10, 3, 7, 3, 1, 10, 5, 2}; /* repeats: rows of dwte accumulate */
static const int32_t CE_TARGETS[N_] = {3, -100, 0, 10, -100, 7, 7, 1, -100, 5};
static const int32_t ROPE_POS[T_] = {4, 0, 9, 1, 2}; /* not 0..T-1 on purpose */
/* Packed rows: row 0 holds sequences of 2 and 3 tokens, row 1 one of 4 and the first token of another. */
static const int32_t PACK_POS[N_] = {0, 1, 0, 1, 2, 0, 1, 2, 3, 0};
static float g_cos[T_ * HD_ / 2], g_sin[T_ * HD_ / 2];
static uint8_t g_mask[N_ * C_];

static op_case case_embedding(void) {
    return (op_case){.name = "embedding", .n_in = 1, .in_name = {"wte"}, .in_n = {V_ * C_}, .n_out = N_ * C_,
                     .ref = ref_embedding, .fwd = fwd_embedding, .bwd = bwd_embedding, .N = N_, .C = C_, .V = V_,
                     .ids = EMB_IDS};
}
static op_case case_matmul(void) {
    return (op_case){.name = "matmul", .n_in = 2, .in_name = {"inp", "w"}, .in_n = {N_ * C_, OC_ * C_},
                     .n_out = N_ * OC_, .ref = ref_matmul, .fwd = fwd_matmul, .bwd = bwd_matmul, .N = N_, .C = C_,
                     .OC = OC_, .fresh_slots = 1};
}
static op_case case_lora(int dropout) {
    op_case c = {.name = dropout ? "lora_dropout" : "lora", .n_in = 3, .in_name = {"inp", "A", "B"},
                 .in_n = {N_ * C_, R_ * C_, OC_ * R_}, .n_out = N_ * OC_, .n_saved = N_ * R_,
                 .n_scratch = pissa__lora_scratch_floats(N_, C_, OC_, R_, dropout, PISSA_QTYPE_F32, 1), .ref = ref_lora, .fwd = fwd_lora,
                 .bwd = bwd_lora, .N = N_, .C = C_, .OC = OC_, .r = R_, .s = 16.0f / R_, .fresh_slots = 1};
    if (dropout) { /* a fixed mask, about one element in four dropped */
        for (int i = 0; i < N_ * C_; i++) g_mask[i] = (i * 37 + i / 5) % 4 != 0;
        c.mask = g_mask;
        c.p = 0.25f;
    }
    return c;
}
static op_case case_rmsnorm(void) {
    return (op_case){.name = "rmsnorm", .n_in = 2, .in_name = {"inp", "w"}, .in_n = {N_ * C_, C_},
                     .n_out = N_ * C_, .n_saved = N_, .ref = ref_rmsnorm, .fwd = fwd_rmsnorm, .bwd = bwd_rmsnorm,
                     .N = N_, .C = C_, .eps = 1e-5f, .fresh_slots = 1};
}
static op_case case_rope(int explicit_positions) {
    return (op_case){.name = explicit_positions ? "rope_positions" : "rope_start", .n_in = 1, .in_name = {"x"},
                     .in_n = {B_ * T_ * H_ * HD_}, .n_out = B_ * T_ * H_ * HD_, .ref = ref_rope, .fwd = fwd_rope,
                     .bwd = bwd_rope, .B = B_, .T = T_, .H = H_, .hd = HD_, .theta = 10000.0f,
                     .ids = explicit_positions ? ROPE_POS : NULL, .start = 7, .cos_tab = g_cos, .sin_tab = g_sin,
                     .fresh_slots = 1};
}
/* Packed rows: each token rotated by its position in its own sequence (the tables hold positions 0..T-1). */
static op_case case_rope_packed(void) {
    op_case c = case_rope(0);
    c.name = "rope_packed";
    c.start = 0;
    c.pos = PACK_POS;
    return c;
}
static op_case case_attention(int KV) {
    return (op_case){.name = KV == H_ ? "attention_mha" : "attention_gqa", .n_in = 3, .in_name = {"q", "k", "v"},
                     .in_n = {B_ * T_ * H_ * HD_, B_ * T_ * KV * HD_, B_ * T_ * KV * HD_},
                     .n_out = B_ * T_ * H_ * HD_, .n_saved = B_ * H_ * T_,
                     .n_scratch = pissa__attention_scratch_floats(T_, ATT_THREADS), .ref = ref_attention,
                     .fwd = fwd_attention, .bwd = bwd_attention, .B = B_, .T = T_, .H = H_, .KV = KV, .hd = HD_,
                     .fresh_slots = 7};
}
/* A sliding window of 3 keys (Mistral's): query i sees keys i-2 .. i. */
static op_case case_attention_window(void) {
    op_case c = case_attention(KV_);
    c.name = "attention_window";
    c.window = 3;
    return c;
}
/* T spans three query tiles of the kernel (64, 64 and a partial 2), so keys cross tile boundaries; WINDOW 0 is full
 * causal attention, 70 a window longer than a tile that starts inside an earlier tile. */
static op_case case_attention_tiles(int window) {
    enum { B = 1, T = 130, H = 2, KV = 1, HD = 4 };
    return (op_case){.name = window ? "attention_window_tiles" : "attention_tiles", .n_in = 3,
                     .in_name = {"q", "k", "v"}, .in_n = {B * T * H * HD, B * T * KV * HD, B * T * KV * HD},
                     .n_out = B * T * H * HD, .n_saved = B * H * T,
                     .n_scratch = pissa__attention_scratch_floats(T, ATT_THREADS), .ref = ref_attention,
                     .fwd = fwd_attention, .bwd = bwd_attention, .B = B, .T = T, .H = H, .KV = KV, .hd = HD,
                     .window = window, .fresh_slots = 7};
}
/* Packed rows: each query sees only its own sequence's keys (PACK_POS). */
static op_case case_attention_packed(void) {
    op_case c = case_attention(KV_);
    c.name = "attention_packed";
    c.pos = PACK_POS;
    return c;
}
/* Sequences of 30, 60 and 40 tokens packed into one row of 130: the boundaries fall inside the first and second
 * query tiles; with WINDOW 20 the window, not the sequence start, bounds most queries. */
static int32_t g_pack_tiles[130];
static op_case case_attention_packed_tiles(int window) {
    op_case c = case_attention_tiles(window);
    c.name = window ? "attention_packed_window_tiles" : "attention_packed_tiles";
    for (int t = 0; t < 130; t++) g_pack_tiles[t] = t < 30 ? t : t < 90 ? t - 30 : t - 90;
    c.pos = g_pack_tiles;
    return c;
}
static op_case case_bias(void) {
    return (op_case){.name = "bias", .n_in = 2, .in_name = {"inp", "b"}, .in_n = {N_ * OC_, OC_}, .n_out = N_ * OC_,
                     .ref = ref_bias, .fwd = fwd_bias, .bwd = bwd_bias, .N = N_, .C = OC_, .fresh_slots = 1};
}
static op_case case_elementwise(const char *name) {
    op_case c = {.name = name, .n_in = 2, .in_name = {"a", "b"}, .in_n = {E_, E_}, .n_out = E_};
    if (!strcmp(name, "silu")) {
        c.n_in = 1, c.in_name[0] = "x", c.ref = ref_silu, c.fwd = fwd_silu, c.bwd = bwd_silu;
    } else if (!strcmp(name, "mul")) {
        c.ref = ref_mul, c.fwd = fwd_mul, c.bwd = bwd_mul;
    } else if (!strcmp(name, "add")) {
        c.ref = ref_add, c.fwd = fwd_add, c.bwd = bwd_add, c.fresh_slots = 3;
    } else {
        c.in_name[0] = "gate", c.in_name[1] = "up", c.ref = ref_swiglu, c.fwd = fwd_swiglu, c.bwd = bwd_swiglu;
        c.fresh_slots = 3;
    }
    return c;
}
static op_case case_cross_entropy(const int32_t *targets) {
    return (op_case){.name = "cross_entropy", .n_in = 1, .in_name = {"logits"}, .in_n = {N_ * V_}, .n_out = 1,
                     .n_saved = N_, .ref = ref_cross_entropy, .fwd = fwd_cross_entropy, .bwd = bwd_cross_entropy,
                     .N = N_, .V = V_, .ids = targets, .fresh_slots = 1};
}

/* ---------------------------------------------------------------- the harness */

typedef struct run {
    op_case *c;
    float *in[MAXIN], *in_copy[MAXIN];
    double *in_d[MAXIN];
    float *out, *saved, *saved_copy, *scratch, *dout, *dout_copy;
    double *out_d, *saved_d, *dout_d;
} run;

static float *nan_buffer(size_t n) {
    float *x = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}
static float *dup_floats(const float *x, size_t n) {
    float *y = malloc(sizeof(float) * (n ? n : 1));
    if (n) memcpy(y, x, sizeof(float) * n);
    return y;
}
static double *to_double(const float *x, size_t n) {
    double *y = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}
static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* Random inputs, forward through the kernel (outputs poisoned with NaN first) and through the reference. */
static void run_setup(run *R, op_case *c, uint64_t seed) {
    memset(R, 0, sizeof *R);
    R->c = c;
    for (int i = 0; i < c->n_in; i++) {
        R->in[i] = malloc(sizeof(float) * c->in_n[i]);
        tu_gaussian(R->in[i], c->in_n[i], seed + 17 * (uint64_t)i);
        R->in_copy[i] = dup_floats(R->in[i], c->in_n[i]);
        R->in_d[i] = to_double(R->in[i], c->in_n[i]);
    }
    if (c->ref == ref_lora) {
        c->frozen = malloc(sizeof(float) * c->OC * c->C);
        tu_gaussian(c->frozen, (size_t)c->OC * c->C, seed + 1000);
        c->frozen_d = to_double(c->frozen, (size_t)c->OC * c->C);
    }
    R->out = nan_buffer(c->n_out);
    R->saved = nan_buffer(c->n_saved);
    R->scratch = nan_buffer(c->n_scratch);
    c->fwd(c, R->in, R->out, R->saved, R->scratch);
    for (int i = 0; i < c->n_in; i++)
        assert_memory_equal(R->in[i], R->in_copy[i], sizeof(float) * c->in_n[i]); /* forward reads only */
    R->saved_copy = dup_floats(R->saved, c->n_saved);
    R->out_d = malloc(sizeof(double) * c->n_out);
    R->saved_d = malloc(sizeof(double) * (c->n_saved ? c->n_saved : 1));
    c->ref(c, R->in_d, R->out_d, R->saved_d);
    R->dout = malloc(sizeof(float) * c->n_out);
    tu_gaussian(R->dout, c->n_out, seed + 99);
    R->dout_copy = dup_floats(R->dout, c->n_out);
    R->dout_d = to_double(R->dout, c->n_out);
}

static void run_free(run *R) {
    for (int i = 0; i < R->c->n_in; i++) free(R->in[i]), free(R->in_copy[i]), free(R->in_d[i]);
    free(R->out), free(R->saved), free(R->saved_copy), free(R->scratch), free(R->dout), free(R->dout_copy);
    free(R->out_d), free(R->saved_d), free(R->dout_d);
    free(R->c->frozen), free(R->c->frozen_d);
    R->c->frozen = NULL, R->c->frozen_d = NULL;
}

/* max|a − b| / max|b| (b the float64 value); prints both. */
static double rel_err(const char *what, const float *a, const double *b, size_t n, double tol) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mb = fmax(mb, fabs(b[i]));
    }
    double rel = mb > 0 ? md / mb : md;
    printf("  %-34s max|diff| = %.3e  rel = %.3e  (tol %.0e)\n", what, md, rel, tol);
    return rel;
}

/* Gradient of L = Σ dout ⊙ ref(in) with respect to input WHICH, by central differences in double. */
static double *finite_difference(run *R, int which) {
    op_case *c = R->c;
    double *g = malloc(sizeof(double) * c->in_n[which]);
    double *o = malloc(sizeof(double) * c->n_out), *sv = malloc(sizeof(double) * (c->n_saved ? c->n_saved : 1));
    for (size_t j = 0; j < c->in_n[which]; j++) {
        double x0 = R->in_d[which][j], L[2];
        for (int side = 0; side < 2; side++) {
            R->in_d[which][j] = x0 + (side ? -FD_H : FD_H);
            c->ref(c, R->in_d, o, sv);
            L[side] = 0;
            for (size_t k = 0; k < c->n_out; k++) L[side] += R->dout_d[k] * o[k];
        }
        R->in_d[which][j] = x0;
        g[j] = (L[0] - L[1]) / (2 * FD_H);
    }
    free(o), free(sv);
    return g;
}

/* Runs backward with gradient buffers GRAD (entries may be NULL), then checks that nothing read-only moved. */
static void backward_checked(run *R, float **grad, float *scratch) {
    op_case *c = R->c;
    if (scratch) fill_nan(scratch, c->n_scratch);
    c->bwd(c, grad, scratch, R->dout, R->in, R->saved);
    for (int i = 0; i < c->n_in; i++) assert_memory_equal(R->in[i], R->in_copy[i], sizeof(float) * c->in_n[i]);
    if (c->n_saved) assert_memory_equal(R->saved, R->saved_copy, sizeof(float) * c->n_saved);
    assert_memory_equal(R->dout, R->dout_copy, sizeof(float) * c->n_out);
}

static void check_forward(op_case c) {
    run R;
    run_setup(&R, &c, 11);
    printf("%s forward:\n", c.name);
    assert_true(rel_err("out", R.out, R.out_d, c.n_out, FWD_TOL) <= FWD_TOL);
    if (c.n_saved) assert_true(rel_err("saved", R.saved, R.saved_d, c.n_saved, FWD_TOL) <= FWD_TOL);
    run_free(&R);
}

/* Gradient buffers start random (G0): the kernel must add, so grad − G0 is compared with the numeric gradient. */
static void check_backward_fd(op_case c) {
    run R;
    run_setup(&R, &c, 23);
    printf("%s backward vs finite differences:\n", c.name);
    float *g[MAXIN] = {0}, *g0[MAXIN] = {0};
    for (int i = 0; i < c.n_in; i++) {
        g[i] = malloc(sizeof(float) * c.in_n[i]);
        tu_gaussian(g[i], c.in_n[i], 500 + (uint64_t)i);
        g0[i] = dup_floats(g[i], c.in_n[i]);
    }
    backward_checked(&R, g, R.scratch);
    for (int i = 0; i < c.n_in; i++) {
        double *num = finite_difference(&R, i);
        for (size_t j = 0; j < c.in_n[i]; j++) g[i][j] -= g0[i][j];
        char what[64];
        snprintf(what, sizeof what, "d%s", c.in_name[i]);
        assert_true(rel_err(what, g[i], num, c.in_n[i], BWD_TOL) <= BWD_TOL);
        free(num), free(g[i]), free(g0[i]);
    }
    run_free(&R);
}

/* From zero, a second backward call doubles the gradient. */
static void check_backward_accumulates(op_case c) {
    run R;
    run_setup(&R, &c, 37);
    printf("%s backward accumulates:\n", c.name);
    float *g[MAXIN] = {0}, *g1[MAXIN] = {0};
    for (int i = 0; i < c.n_in; i++) g[i] = calloc(c.in_n[i], sizeof(float));
    backward_checked(&R, g, R.scratch);
    for (int i = 0; i < c.n_in; i++) g1[i] = dup_floats(g[i], c.in_n[i]);
    backward_checked(&R, g, R.scratch);
    for (int i = 0; i < c.n_in; i++) {
        double *twice = malloc(sizeof(double) * c.in_n[i]);
        double mx = 0;
        for (size_t j = 0; j < c.in_n[i]; j++) twice[j] = 2.0 * g1[i][j], mx = fmax(mx, fabs(g1[i][j]));
        assert_true(mx > 0); /* a zero gradient would make this check vacuous */
        char what[64];
        snprintf(what, sizeof what, "d%s after 2 calls vs 2x one", c.in_name[i]);
        assert_true(rel_err(what, g[i], twice, c.in_n[i], ACC_TOL) <= ACC_TOL);
        free(twice), free(g[i]), free(g1[i]);
    }
    run_free(&R);
}

/* Each gradient pointer NULL in turn: the others come out as in the full call; all NULL (scratch NULL too):
 * nothing is read from or written to any buffer. */
static void check_backward_null(op_case c) {
    run R;
    run_setup(&R, &c, 41);
    printf("%s backward with NULL gradients:\n", c.name);
    float *full[MAXIN] = {0}, *g[MAXIN] = {0};
    for (int i = 0; i < c.n_in; i++) full[i] = calloc(c.in_n[i], sizeof(float));
    backward_checked(&R, full, R.scratch);
    for (int skip = 0; skip < c.n_in; skip++) {
        for (int i = 0; i < c.n_in; i++) g[i] = i == skip ? NULL : calloc(c.in_n[i], sizeof(float));
        backward_checked(&R, g, R.scratch);
        for (int i = 0; i < c.n_in; i++) {
            if (i == skip) continue;
            double *want = to_double(full[i], c.in_n[i]);
            char what[64];
            snprintf(what, sizeof what, "d%s with d%s NULL", c.in_name[i], c.in_name[skip]);
            assert_true(rel_err(what, g[i], want, c.in_n[i], 1e-6) <= 1e-6);
            free(want), free(g[i]);
        }
    }
    float *none[MAXIN] = {0};
    backward_checked(&R, none, NULL);
    for (int i = 0; i < c.n_in; i++) free(full[i]);
    run_free(&R);
}

/* With `fresh` set for every gradient the kernel can overwrite, those start as NaN (stale contents must be ignored)
 * and the result equals the accumulation into zeroed buffers; the other gradients start from random values and
 * must still be added to. */
static void check_backward_fresh(op_case c) {
    run R;
    run_setup(&R, &c, 43);
    printf("%s backward overwriting (fresh 0x%x):\n", c.name, c.fresh_slots);
    assert_true(c.fresh_slots != 0);
    float *want[MAXIN] = {0}, *g[MAXIN] = {0};
    for (int i = 0; i < c.n_in; i++) {
        int fresh = c.fresh_slots >> i & 1;
        want[i] = calloc(c.in_n[i], sizeof(float));
        if (!fresh) tu_gaussian(want[i], c.in_n[i], (uint64_t)(100 + i));
        g[i] = fresh ? nan_buffer(c.in_n[i]) : dup_floats(want[i], c.in_n[i]);
    }
    backward_checked(&R, want, R.scratch);
    c.fresh = c.fresh_slots;
    backward_checked(&R, g, R.scratch);
    c.fresh = 0;
    for (int i = 0; i < c.n_in; i++) {
        double *w = to_double(want[i], c.in_n[i]);
        char what[64];
        snprintf(what, sizeof what, "d%s %s", c.in_name[i], c.fresh_slots >> i & 1 ? "overwritten" : "accumulated");
        assert_true(rel_err(what, g[i], w, c.in_n[i], 1e-6) <= 1e-6);
        free(w), free(want[i]), free(g[i]);
    }
    run_free(&R);
}

/* ---------------------------------------------------------------- one test per op and check */

/* Four checks for every op; a fifth (OVERWRITING_OP_TESTS) for the ops whose backward can overwrite a gradient
 * (embedding, silu and mul only ever add into theirs). */
#define OP_TESTS(prefix, make)                                                                    \
    static void prefix##_forward_matches_reference(void **s) { (void)s, check_forward(make); }   \
    static void prefix##_backward_matches_finite_differences(void **s) {                          \
        (void)s, check_backward_fd(make);                                                         \
    }                                                                                             \
    static void prefix##_backward_accumulates(void **s) { (void)s, check_backward_accumulates(make); } \
    static void prefix##_backward_skips_null_gradients(void **s) { (void)s, check_backward_null(make); }
#define OVERWRITING_OP_TESTS(prefix, make)                                                        \
    OP_TESTS(prefix, make)                                                                        \
    static void prefix##_backward_overwrites_fresh_gradients(void **s) { (void)s, check_backward_fresh(make); }

OP_TESTS(embedding, case_embedding())
OVERWRITING_OP_TESTS(matmul, case_matmul())
OVERWRITING_OP_TESTS(lora, case_lora(0))
OVERWRITING_OP_TESTS(lora_dropout, case_lora(1))
OVERWRITING_OP_TESTS(rmsnorm, case_rmsnorm())
OVERWRITING_OP_TESTS(rope_positions, case_rope(1))
OVERWRITING_OP_TESTS(rope_start_offset, case_rope(0))
OVERWRITING_OP_TESTS(attention_gqa, case_attention(KV_))
OVERWRITING_OP_TESTS(attention_mha, case_attention(H_))
OVERWRITING_OP_TESTS(attention_tiles, case_attention_tiles(0))
OVERWRITING_OP_TESTS(attention_window, case_attention_window())
OVERWRITING_OP_TESTS(attention_window_tiles, case_attention_tiles(70))
OVERWRITING_OP_TESTS(rope_packed, case_rope_packed())
OVERWRITING_OP_TESTS(attention_packed, case_attention_packed())
OVERWRITING_OP_TESTS(attention_packed_tiles, case_attention_packed_tiles(0))
OVERWRITING_OP_TESTS(attention_packed_window_tiles, case_attention_packed_tiles(20))
OVERWRITING_OP_TESTS(bias, case_bias())
OP_TESTS(silu, case_elementwise("silu"))
OP_TESTS(mul, case_elementwise("mul"))
OVERWRITING_OP_TESTS(add, case_elementwise("add"))
OVERWRITING_OP_TESTS(swiglu, case_elementwise("swiglu"))
OVERWRITING_OP_TESTS(cross_entropy_ignore_index, case_cross_entropy(CE_TARGETS))

#define OP_ENTRIES(prefix)                                                                              \
    cmocka_unit_test(prefix##_forward_matches_reference),                                               \
        cmocka_unit_test(prefix##_backward_matches_finite_differences),                                 \
        cmocka_unit_test(prefix##_backward_accumulates), cmocka_unit_test(prefix##_backward_skips_null_gradients)
#define OVERWRITING_OP_ENTRIES(prefix) OP_ENTRIES(prefix), cmocka_unit_test(prefix##_backward_overwrites_fresh_gradients)

/* ---------------------------------------------------------------- op-specific checks */

static void cross_entropy_counts_only_non_ignored_targets(void **state) {
    (void)state;
    op_case c = case_cross_entropy(CE_TARGETS);
    run R;
    run_setup(&R, &c, 5);
    assert_int_equal(c.count, 7);
    /* ignored rows get no gradient, even when the buffer already holds something */
    float *g = malloc(sizeof(float) * N_ * V_);
    for (int i = 0; i < N_ * V_; i++) g[i] = 0.5f;
    pissa__cross_entropy_backward(g, 1.0f, R.in[0], c.ids, R.saved, N_, V_, 0);
    for (int n = 0; n < N_; n++)
        if (CE_TARGETS[n] == -100)
            for (int v = 0; v < V_; v++) assert_true(g[n * V_ + v] == 0.5f);
    free(g);
    run_free(&R);
}

static void cross_entropy_all_ignored_gives_zero_loss_and_no_gradient(void **state) {
    (void)state;
    int32_t targets[N_];
    for (int n = 0; n < N_; n++) targets[n] = -100;
    float logits[N_ * V_], lse[N_], g[N_ * V_], loss = NAN;
    tu_gaussian(logits, N_ * V_, 3);
    assert_int_equal(pissa__cross_entropy_forward(&loss, lse, logits, targets, N_, V_), 0);
    assert_true(loss == 0.0f);
    for (int i = 0; i < N_ * V_; i++) g[i] = 1.25f;
    pissa__cross_entropy_backward(g, 1.0f, logits, targets, lse, N_, V_, 0);
    for (int i = 0; i < N_ * V_; i++) assert_true(g[i] == 1.25f);
}

/* Logits shifted by +200 overflow a naive float exp (e^88 is the float limit); the max-subtracted kernel must
 * give the same loss and gradient as the reference on the shifted values. */
static void cross_entropy_is_stable_for_large_logits(void **state) {
    (void)state;
    float logits[N_ * V_], lse[N_], g[N_ * V_] = {0}, loss;
    tu_gaussian(logits, N_ * V_, 8);
    for (int i = 0; i < N_ * V_; i++) logits[i] = logits[i] * 3.0f + 200.0f;
    int count = pissa__cross_entropy_forward(&loss, lse, logits, CE_TARGETS, N_, V_);
    assert_int_equal(count, 7);
    op_case c = case_cross_entropy(CE_TARGETS);
    double *x = to_double(logits, N_ * V_), want, lse_d[N_];
    double *in[1] = {x};
    ref_cross_entropy(&c, in, &want, lse_d);
    printf("large logits: loss %.7f reference %.7f\n", loss, want);
    assert_true(isfinite(loss) && fabs(loss - want) <= 1e-5 * fmax(1.0, fabs(want)));
    pissa__cross_entropy_backward(g, 1.0f, logits, CE_TARGETS, lse, N_, V_, 0);
    for (int i = 0; i < N_ * V_; i++) assert_true(isfinite(g[i]));
    /* each counted row of the gradient sums to 0 (softmax − onehot) */
    for (int n = 0; n < N_; n++) {
        double sum = 0;
        for (int v = 0; v < V_; v++) sum += g[n * V_ + v];
        assert_true(fabs(sum) < 1e-6);
    }
    free(x);
}

/* Scores and activations far below −87 (where e^x underflows) down to −FLT_MAX and −inf: the exponential is 0
 * without overflowing an integer on the way (run under UBSan in CI), so SiLU gives −0 and a softmax row puts its
 * mass on the finite values. */
static void exponentials_of_very_negative_inputs_are_zero_without_overflow(void **state) {
    (void)state;
    const float x[8] = {-1.6e7f, -1.0e7f, -2.0e7f, -1e30f, -FLT_MAX, -INFINITY, -87.5f, -50.0f};
    float y[8];
    pissa__silu_forward(y, x, 8);
    for (int i = 0; i < 8; i++) {
        if (isinf(x[i])) { /* −inf · σ(−inf) = −inf · 0: NaN, as torch.nn.functional.silu gives */
            assert_true(isnan(y[i]));
            continue;
        }
        double want = (double)x[i] / (1.0 + exp(-(double)x[i]));
        if (!(fabs(y[i] - want) <= 1e-6 * fabs(want) + 1e-30)) fail_msg("silu(%g) = %g, want %g", x[i], y[i], want);
    }
    float logits[8], lse[1], loss;
    memcpy(logits, x, sizeof logits);
    logits[3] = 2.0f; /* the row maximum */
    int32_t target[1] = {3};
    assert_int_equal(pissa__cross_entropy_forward(&loss, lse, logits, target, 1, 8), 1);
    double want_lse = 2.0 + log1p(exp(-52.0) + exp(-89.5));
    assert_true(fabs(lse[0] - want_lse) <= 1e-6 && fabs(loss - (want_lse - 2.0)) <= 1e-7);
}

/* Causality: changing the last position's key and value leaves every earlier output bit for bit; the first
 * query sees only the first key, so its output is that key's value row and its log-sum-exp its one score. */
static void attention_is_causal_and_saves_row_logsumexp(void **state) {
    (void)state;
    op_case c = case_attention_tiles(0);
    int T = c.T, H = c.H, hd = c.hd;
    run R;
    run_setup(&R, &c, 9);
    float *out2 = malloc(c.n_out * sizeof *out2), *saved2 = malloc(c.n_saved * sizeof *saved2);
    float *scratch = malloc(c.n_scratch * sizeof *scratch);
    for (int d = 0; d < hd; d++) R.in[1][(T - 1) * hd + d] += 1.0f, R.in[2][(T - 1) * hd + d] -= 2.0f;
    pissa__attention_forward(out2, saved2, scratch, ATT_THREADS, R.in[0], R.in[1], R.in[2], NULL, 1, T, H, 1, hd,
                             0);
    assert_memory_equal(out2, R.out, (size_t)(T - 1) * H * hd * sizeof(float));
    assert_memory_equal(saved2, R.saved, (size_t)(T - 1) * sizeof(float)); /* head 0's rows before the last */
    assert_true(memcmp(out2 + (size_t)(T - 1) * H * hd, R.out + (size_t)(T - 1) * H * hd, H * hd * sizeof(float)));
    for (int h = 0; h < H; h++) {
        double s00 = 0;
        for (int d = 0; d < hd; d++) {
            assert_true(fabsf(R.out[h * hd + d] - R.in[2][d]) < 1e-6f);
            s00 += (double)R.in[0][h * hd + d] * R.in[1][d];
        }
        assert_true(fabs(R.saved[h * T] - s00 / sqrt((double)hd)) < 1e-5);
    }
    free(out2);
    free(saved2);
    free(scratch);
    run_free(&R);
}

/* The three sequences of case_attention_packed_tiles, packed in one row, against each run as its own row: outputs,
 * log-sum-exps and the gradients of q, k and v agree. Not bit for bit: a query's visible scores and probabilities
 * are the same numbers (the softmax lanes start at the sequence's first key either way), but the products P·v and
 * dSᵀ·q run over tiles of keys that start elsewhere, so a sum of the same terms may be associated differently:
 * each value may move by a few float32 roundings of its terms' magnitude: within 1e-6 of the largest value
 * (measured: about 1e-7). */
static void attention_packed_rows_equal_separate_rows(void **state) {
    (void)state;
    op_case c = case_attention_packed_tiles(0);
    int T = c.T, H = c.H, hd = c.hd;
    run R;
    run_setup(&R, &c, 17);
    float *g[3], *sg[3];
    for (int i = 0; i < 3; i++) g[i] = calloc(c.in_n[i], sizeof(float)), sg[i] = calloc(c.in_n[i], sizeof(float));
    backward_checked(&R, g, R.scratch);
    float *out = nan_buffer(c.n_out), *lse = nan_buffer(c.n_saved), *scratch = nan_buffer(c.n_scratch);
    static const int starts[4] = {0, 30, 90, 130};
    for (int s = 0; s < 3; s++) { /* sequence s alone: rows starts[s] .. starts[s+1]-1 of q, k, v (KV = 1) */
        int t0 = starts[s], n = starts[s + 1] - t0;
        const float *q = R.in[0] + (size_t)t0 * H * hd, *k = R.in[1] + (size_t)t0 * hd, *v = R.in[2] + (size_t)t0 * hd;
        float *lse_s = nan_buffer((size_t)H * n);
        pissa__attention_forward(out + (size_t)t0 * H * hd, lse_s, scratch, ATT_THREADS, q, k, v, NULL, 1, n, H, 1, hd,
                                 0);
        pissa__attention_backward(sg[0] + (size_t)t0 * H * hd, sg[1] + (size_t)t0 * hd, sg[2] + (size_t)t0 * hd,
                                  scratch, ATT_THREADS, R.dout + (size_t)t0 * H * hd, q, k, v, lse_s, NULL, 1, n, H, 1,
                                  hd, 0, 0);
        for (int h = 0; h < H; h++) memcpy(lse + (size_t)h * T + t0, lse_s + (size_t)h * n, (size_t)n * sizeof(float));
        free(lse_s);
    }
    double *want = to_double(out, c.n_out);
    assert_true(rel_err("packed out vs separate", R.out, want, c.n_out, 1e-6) <= 1e-6);
    free(want);
    want = to_double(lse, c.n_saved);
    assert_true(rel_err("packed lse vs separate", R.saved, want, c.n_saved, 1e-6) <= 1e-6);
    free(want);
    for (int i = 0; i < 3; i++) {
        char what[64];
        snprintf(what, sizeof what, "packed d%s vs separate", c.in_name[i]);
        want = to_double(sg[i], c.in_n[i]);
        assert_true(rel_err(what, g[i], want, c.in_n[i], 1e-6) <= 1e-6);
        free(want), free(g[i]), free(sg[i]);
    }
    free(out), free(lse), free(scratch);
    run_free(&R);
}

/* HF pairs element i with i + hd/2: a unit vector e_0 at position p rotates to cos(p)·e_0 + sin(p)·e_{hd/2}
 * (inv_freq[0] = 1); llama2.c's adjacent pairs would put sin(p) in element 1 instead. */
static void rope_rotates_i_with_i_plus_half(void **state) {
    (void)state;
    int32_t pos[1] = {3};
    float cs[HD_ / 2], sn[HD_ / 2], x[HD_] = {1.0f}, inv[HD_ / 2];
    inv_freq_of(10000.0f, HD_, inv);
    pissa__rope_tables(cs, sn, pos, 0, 1, HD_ / 2, inv);
    pissa__rope_forward(x, x, cs, sn, NULL, 1, 1, 1, HD_);
    assert_true(fabsf(x[0] - (float)cos(3.0)) < 1e-6f);
    assert_true(fabsf(x[HD_ / 2] - (float)sin(3.0)) < 1e-6f);
    for (int i = 1; i < HD_; i++)
        if (i != HD_ / 2) assert_true(x[i] == 0.0f);
}

static void rope_tables_match_formula_and_start_offset(void **state) {
    (void)state;
    enum { T = 6, HD = 16 };
    float cs[T * HD / 2], sn[T * HD / 2], cs2[T * HD / 2], sn2[T * HD / 2];
    int32_t pos[T];
    for (int t = 0; t < T; t++) pos[t] = 5 + t;
    float inv[HD / 2];
    inv_freq_of(500000.0f, HD, inv);
    pissa__rope_tables(cs, sn, pos, 0, T, HD / 2, inv);
    pissa__rope_tables(cs2, sn2, NULL, 5, T, HD / 2, inv);
    assert_memory_equal(cs, cs2, sizeof cs);
    assert_memory_equal(sn, sn2, sizeof sn);
    double md = 0;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < HD / 2; i++) {
            double a = pos[t] * pow(500000.0, -2.0 * i / HD);
            md = fmax(md, fabs(cs[t * HD / 2 + i] - cos(a)));
            md = fmax(md, fabs(sn[t * HD / 2 + i] - sin(a)));
        }
    printf("rope tables: max|table − cos/sin(pos·theta^(−2i/hd))| = %.3e\n", md);
    assert_true(md < 2e-6);
}

static void rope_in_place_matches_out_of_place(void **state) {
    (void)state;
    enum { n = B_ * T_ * H_ * HD_ };
    float x[n], y[n], cs[T_ * HD_ / 2], sn[T_ * HD_ / 2];
    tu_gaussian(x, n, 4);
    float inv[HD_ / 2];
    inv_freq_of(10000.0f, HD_, inv);
    pissa__rope_tables(cs, sn, ROPE_POS, 0, T_, HD_ / 2, inv);
    pissa__rope_forward(y, x, cs, sn, NULL, B_, T_, H_, HD_);
    pissa__rope_forward(x, x, cs, sn, NULL, B_, T_, H_, HD_);
    assert_memory_equal(x, y, sizeof x);
}

/* Kept fraction within 5 sigma of 1 − p; the same seed gives the same mask; p = 0 keeps everything. */
static void dropout_mask_keeps_one_minus_p_and_is_seeded(void **state) {
    (void)state;
    enum { n = 100000 };
    uint8_t *m1 = malloc(n), *m2 = malloc(n);
    pissa_rng r1, r2;
    pissa__rng_seed(&r1, 42);
    pissa__rng_seed(&r2, 42);
    pissa__dropout_mask(m1, n, 0.3f, &r1);
    pissa__dropout_mask(m2, n, 0.3f, &r2);
    assert_memory_equal(m1, m2, n);
    size_t kept = 0;
    for (int i = 0; i < n; i++) assert_true(m1[i] <= 1), kept += m1[i];
    double frac = (double)kept / n, sigma = sqrt(0.3 * 0.7 / n);
    printf("dropout p = 0.3: kept %.4f (expected 0.7, sigma %.4f)\n", frac, sigma);
    assert_true(fabs(frac - 0.7) < 5 * sigma);
    pissa__rng_seed(&r2, 43);
    pissa__dropout_mask(m2, n, 0.3f, &r2);
    assert_true(memcmp(m1, m2, n) != 0);
    pissa__dropout_mask(m2, n, 0.0f, &r2);
    for (int i = 0; i < n; i++) assert_true(m2[i] == 1);
    free(m1), free(m2);
}

/* With a zero B (PEFT's LoRA init) the adapter contributes nothing: out equals the plain matmul with W_res. */
static void lora_with_zero_b_equals_frozen_matmul(void **state) {
    (void)state;
    float x[N_ * C_], W[OC_ * C_], A[R_ * C_], B[OC_ * R_] = {0}, out[N_ * OC_], ref[N_ * OC_], xa[N_ * R_];
    float *scratch = malloc(sizeof(float) * pissa__lora_scratch_floats(N_, C_, OC_, R_, 0, PISSA_QTYPE_F32, 1));
    tu_gaussian(x, N_ * C_, 1), tu_gaussian(W, OC_ * C_, 2), tu_gaussian(A, R_ * C_, 3);
    pissa__qweight w;
    assert_ok(pissa__qweight_wrap(&w, PISSA_QTYPE_F32, OC_, C_, W, NULL));
    pissa__lora_forward(out, xa, scratch, 1, x, NULL, 0.0f, &w, A, B, 2.0f, N_, C_, OC_, R_);
    pissa__matmul_forward(ref, x, W, N_, C_, OC_);
    assert_memory_equal(out, ref, sizeof out);
    free(scratch);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        OP_ENTRIES(embedding),
        OVERWRITING_OP_ENTRIES(matmul),
        OVERWRITING_OP_ENTRIES(lora),
        OVERWRITING_OP_ENTRIES(lora_dropout),
        cmocka_unit_test(lora_with_zero_b_equals_frozen_matmul),
        cmocka_unit_test(dropout_mask_keeps_one_minus_p_and_is_seeded),
        OVERWRITING_OP_ENTRIES(rmsnorm),
        OVERWRITING_OP_ENTRIES(rope_positions),
        OVERWRITING_OP_ENTRIES(rope_start_offset),
        cmocka_unit_test(rope_rotates_i_with_i_plus_half),
        cmocka_unit_test(exponentials_of_very_negative_inputs_are_zero_without_overflow),
        cmocka_unit_test(rope_tables_match_formula_and_start_offset),
        cmocka_unit_test(rope_in_place_matches_out_of_place),
        OVERWRITING_OP_ENTRIES(attention_gqa),
        OVERWRITING_OP_ENTRIES(attention_mha),
        OVERWRITING_OP_ENTRIES(attention_tiles),
        OVERWRITING_OP_ENTRIES(attention_window),
        OVERWRITING_OP_ENTRIES(attention_window_tiles),
        OVERWRITING_OP_ENTRIES(rope_packed),
        OVERWRITING_OP_ENTRIES(attention_packed),
        OVERWRITING_OP_ENTRIES(attention_packed_tiles),
        OVERWRITING_OP_ENTRIES(attention_packed_window_tiles),
        cmocka_unit_test(attention_packed_rows_equal_separate_rows),
        OVERWRITING_OP_ENTRIES(bias),
        cmocka_unit_test(attention_is_causal_and_saves_row_logsumexp),
        OP_ENTRIES(silu),
        OP_ENTRIES(mul),
        OVERWRITING_OP_ENTRIES(add),
        OVERWRITING_OP_ENTRIES(swiglu),
        OVERWRITING_OP_ENTRIES(cross_entropy_ignore_index),
        cmocka_unit_test(cross_entropy_counts_only_non_ignored_targets),
        cmocka_unit_test(cross_entropy_all_ignored_gives_zero_loss_and_no_gradient),
        cmocka_unit_test(cross_entropy_is_stable_for_large_logits),
    };
    return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
