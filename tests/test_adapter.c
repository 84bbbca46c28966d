/* Adapter initialisation: PiSSA against PEFT's own code run in PyTorch (tests/reference/make_pissa_reference.py)
 * and against a double-precision LAPACK truncation; LoRA/Gaussian against the distributions PEFT draws from. */
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- helpers -------------------------------------------------------------------------------------------------- */

static float *read_reference(const char *name, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/pissa_ref_%s.f32", PISSA_TEST_REFERENCE_DIR, name);
    size_t len = 0;
    char *buf = tu_slurp(path, &len);
    if (!buf) fail_msg("cannot read %s (run tests/reference/make_pissa_reference.py)", path);
    if (len != n * sizeof(float)) fail_msg("%s: %zu bytes, expected %zu", path, len, n * sizeof(float));
    float *x = malloc(len);
    memcpy(x, buf, len); /* little-endian float32 on disk, as on every platform we build for */
    free(buf);
    return x;
}

/* s·B·A (out, in) in double, rounded to float. */
static float *scaled_product(const float *B, const float *A, int64_t out, int64_t in, int64_t r, double s) {
    float *P = malloc(sizeof(float) * (size_t)(out * in));
    for (int64_t i = 0; i < out; i++)
        for (int64_t j = 0; j < in; j++) {
            double acc = 0;
            for (int64_t t = 0; t < r; t++) acc += (double)B[i * r + t] * A[t * in + j];
            P[i * in + j] = (float)(s * acc);
        }
    return P;
}

typedef struct adapter {
    float *A;    /* (r, in) */
    float *B;    /* (out, r) */
    float *Wres; /* (out, in) */
} adapter;

static adapter adapter_run(const float *W, int64_t out, int64_t in, const pissa_init_opts *o) {
    adapter a = {malloc(sizeof(float) * (size_t)(o->rank * in)), malloc(sizeof(float) * (size_t)(out * o->rank)),
                 malloc(sizeof(float) * (size_t)(out * in))};
    assert_ok(pissa_adapter_init(W, out, in, o, a.A, a.B, a.Wres));
    return a;
}

static void adapter_free(adapter *a) {
    free(a->A);
    free(a->B);
    free(a->Wres);
}

static pissa_init_opts pissa_opts(pissa_init_kind kind, int64_t r, double alpha, int rslora) {
    pissa_init_opts o = pissa_init_default_opts();
    o.kind = kind;
    o.rank = r;
    o.alpha = alpha;
    o.use_rslora = rslora;
    return o;
}

/* ---- PiSSA ---------------------------------------------------------------------------------------------------- */

/* PEFT computes the same maths with torch.linalg.svd (and torch.svd_lowrank for pissa_niter_4, whose random
 * test matrix differs from ours: W has a gap σ4/σ5 > 10, so after 4 iterations both find the same subspace).
 * Products and norms are compared, since singular vector signs are arbitrary. */
static void pissa_matches_peft_reference_computed_with_pytorch(void **state) {
    (void)state;
    const struct {
        const char *init;
        int64_t out, in;
        int rslora;
    } cases[] = {{"pissa", 24, 16, 0}, {"pissa", 24, 16, 1}, {"pissa", 12, 20, 0}, {"pissa", 12, 20, 1},
                 {"pissa_niter_4", 24, 16, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t out = cases[c].out, in = cases[c].in, r = 4, n = out * in;
        char name[128];
        snprintf(name, sizeof name, "W_%lldx%lld", (long long)out, (long long)in);
        float *W = read_reference(name, (size_t)n);
        snprintf(name, sizeof name, "%s_%lldx%lld_r4_a8%s", cases[c].init, (long long)out, (long long)in,
                 cases[c].rslora ? "_rslora" : "");
        char key[160];
        snprintf(key, sizeof key, "%s_sBA", name);
        float *ref_sBA = read_reference(key, (size_t)n);
        snprintf(key, sizeof key, "%s_Wres", name);
        float *ref_Wres = read_reference(key, (size_t)n);
        snprintf(key, sizeof key, "%s_Anorm2", name);
        float *ref_Anorm2 = read_reference(key, (size_t)r);

        pissa_init_opts o = pissa_opts(PISSA_INIT_PISSA, r, 8.0, cases[c].rslora);
        assert_ok(pissa_init_parse(cases[c].init, &o));
        o.oversample = 0; /* PEFT's torch.svd_lowrank(W, q=r) */
        adapter a = adapter_run(W, out, in, &o);
        double s = pissa_lora_scale(8.0, r, cases[c].rslora);
        float *sBA = scaled_product(a.B, a.A, out, in, r, s);
        double d_ba = tu_max_abs_diff(sBA, ref_sBA, (size_t)n), d_res = tu_max_abs_diff(a.Wres, ref_Wres, (size_t)n);
        print_message("%s: max|sBA - torch| %.2e  max|W_res - torch| %.2e\n", name, d_ba, d_res);
        assert_true(d_ba < 1e-5);
        assert_true(d_res < 1e-5);
        for (int64_t t = 0; t < r; t++) {
            double norm2 = 0;
            for (int64_t j = 0; j < in; j++) norm2 += (double)a.A[t * in + j] * a.A[t * in + j];
            assert_true(fabs(norm2 - ref_Anorm2[t]) < 1e-5 * ref_Anorm2[t]);
        }
        adapter_free(&a);
        free(sBA);
        free(W);
        free(ref_sBA);
        free(ref_Wres);
        free(ref_Anorm2);
    }
}

static void pissa_residual_plus_scaled_product_reconstructs_W(void **state) {
    (void)state;
    const int64_t out = 40, in = 30, r = 6, n = out * in;
    float *W = malloc(sizeof(float) * (size_t)n);
    tu_gaussian(W, (size_t)n, 21);
    for (int kind = PISSA_INIT_PISSA; kind <= PISSA_INIT_PISSA_NITER; kind++)
        for (int rslora = 0; rslora <= 1; rslora++) {
            pissa_init_opts o = pissa_opts((pissa_init_kind)kind, r, 16.0, rslora);
            o.niter = 2;
            adapter a = adapter_run(W, out, in, &o);
            double s = pissa_lora_scale(16.0, r, rslora), e = 0;
            for (int64_t i = 0; i < out; i++)
                for (int64_t j = 0; j < in; j++) {
                    double acc = a.Wres[i * in + j];
                    for (int64_t t = 0; t < r; t++) acc += s * a.B[i * r + t] * a.A[t * in + j];
                    e += (acc - W[i * in + j]) * (acc - W[i * in + j]);
                }
            assert_true(sqrt(e) < 1e-6 * tu_norm(W, (size_t)n));
            adapter_free(&a);
        }
    free(W);
}

/* s·B·A = U_r·diag(S_r)·V_rᵀ whatever s is: checked against a truncation computed independently in double. */
static void pissa_product_equals_exact_rank_r_truncation_from_double_lapack(void **state) {
    (void)state;
    const int64_t out = 48, in = 32, r = 7, k = 32;
    double sigma[32];
    for (int i = 0; i < 32; i++) sigma[i] = 2.0 / (1 + i);
    float *W = malloc(sizeof(float) * (size_t)(out * in));
    tu_matrix_with_spectrum(W, out, in, sigma, 31);
    double *Wd = malloc(sizeof(double) * (size_t)(out * in)), *U = malloc(sizeof(double) * (size_t)(out * k));
    double *S = malloc(sizeof(double) * (size_t)k), *Vt = malloc(sizeof(double) * (size_t)(k * in));
    double *superb = malloc(sizeof(double) * (size_t)k);
    for (int64_t i = 0; i < out * in; i++) Wd[i] = W[i];
    assert_int_equal(LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'S', 'S', (int)out, (int)in, Wd, (int)in, S, U, (int)k, Vt,
                                    (int)in, superb),
                     0);
    float *T = malloc(sizeof(float) * (size_t)(out * in)); /* U_r·diag(S_r)·V_rᵀ */
    for (int64_t i = 0; i < out; i++)
        for (int64_t j = 0; j < in; j++) {
            double acc = 0;
            for (int64_t t = 0; t < r; t++) acc += U[i * k + t] * S[t] * Vt[t * in + j];
            T[i * in + j] = (float)acc;
        }
    for (int rslora = 0; rslora <= 1; rslora++) {
        pissa_init_opts o = pissa_opts(PISSA_INIT_PISSA, r, 5.0, rslora);
        adapter a = adapter_run(W, out, in, &o);
        float *P = scaled_product(a.B, a.A, out, in, r, pissa_lora_scale(5.0, r, rslora));
        assert_true(tu_diff_norm(P, T, (size_t)(out * in)) < 1e-5 * tu_norm(W, (size_t)(out * in)));
        free(P);
        adapter_free(&a);
    }
    free(T);
    free(W);
    free(Wd);
    free(U);
    free(S);
    free(Vt);
    free(superb);
}

/* A = diag(√S_r)·V_rᵀ and B = U_r·diag(√S_r) with S_r = S[:r]/s: rows of A (columns of B) are orthogonal with
 * squared norms S_r/s; with rsLoRA s = α/√r. */
static void pissa_factors_are_orthogonal_with_squared_norms_S_over_scale(void **state) {
    (void)state;
    const int64_t out = 20, in = 36, r = 5;
    float *W = malloc(sizeof(float) * (size_t)(out * in));
    tu_gaussian(W, (size_t)(out * in), 5);
    float S[5];
    assert_ok(pissa_svd_exact(W, out, in, r, NULL, S, NULL));
    for (int rslora = 0; rslora <= 1; rslora++) {
        const double alpha = 12.0, s = rslora ? alpha / sqrt((double)r) : alpha / (double)r;
        assert_true(pissa_lora_scale(alpha, r, rslora) == s);
        pissa_init_opts o = pissa_opts(PISSA_INIT_PISSA, r, alpha, rslora);
        adapter a = adapter_run(W, out, in, &o);
        for (int64_t p = 0; p < r; p++)
            for (int64_t q = 0; q < r; q++) {
                double aa = 0, bb = 0;
                for (int64_t j = 0; j < in; j++) aa += (double)a.A[p * in + j] * a.A[q * in + j];
                for (int64_t i = 0; i < out; i++) bb += (double)a.B[i * r + p] * a.B[i * r + q];
                double want = p == q ? S[p] / s : 0.0;
                assert_true(fabs(aa - want) < 1e-5 * S[0] / s);
                assert_true(fabs(bb - want) < 1e-5 * S[0] / s);
            }
        adapter_free(&a);
    }
    free(W);
}

/* Singular vectors are defined up to sign; B·A is not. Two routes that pick signs independently (LAPACK's
 * exact SVD, a randomized SVD whose sketch spans everything) and the negated matrix must agree on s·B·A. */
static void pissa_product_is_independent_of_singular_vector_signs(void **state) {
    (void)state;
    const int64_t out = 30, in = 22, r = 4, n = out * in;
    double sigma[22];
    for (int i = 0; i < 22; i++) sigma[i] = exp(-0.3 * i);
    float *W = malloc(sizeof(float) * (size_t)n), *negW = malloc(sizeof(float) * (size_t)n);
    tu_matrix_with_spectrum(W, out, in, sigma, 44);
    for (int64_t i = 0; i < n; i++) negW[i] = -W[i];
    pissa_init_opts exact = pissa_opts(PISSA_INIT_PISSA, r, 8.0, 0), rnd = exact;
    rnd.kind = PISSA_INIT_PISSA_NITER;
    rnd.oversample = in; /* sketch of all min(out, in) columns */
    rnd.niter = 0;
    adapter a = adapter_run(W, out, in, &exact), b = adapter_run(W, out, in, &rnd),
            c = adapter_run(negW, out, in, &exact);
    double s = pissa_lora_scale(8.0, r, 0);
    float *Pa = scaled_product(a.B, a.A, out, in, r, s), *Pb = scaled_product(b.B, b.A, out, in, r, s);
    float *Pc = scaled_product(c.B, c.A, out, in, r, s);
    for (int64_t i = 0; i < n; i++) Pc[i] = -Pc[i];
    assert_true(tu_max_abs_diff(Pa, Pb, (size_t)n) < 1e-5);
    assert_true(tu_max_abs_diff(Pa, Pc, (size_t)n) < 1e-5);
    adapter_free(&a);
    adapter_free(&b);
    adapter_free(&c);
    free(Pa);
    free(Pb);
    free(Pc);
    free(W);
    free(negW);
}

static void pissa_in_place_residual_equals_separate_output(void **state) {
    (void)state;
    const int64_t out = 16, in = 24, r = 3, n = out * in;
    float *W = malloc(sizeof(float) * (size_t)n), *W2 = malloc(sizeof(float) * (size_t)n);
    tu_gaussian(W, (size_t)n, 8);
    memcpy(W2, W, sizeof(float) * (size_t)n);
    pissa_init_opts o = pissa_opts(PISSA_INIT_PISSA, r, 4.0, 0);
    adapter a = adapter_run(W, out, in, &o);
    float A[3 * 24], B[16 * 3];
    assert_ok(pissa_adapter_init(W2, out, in, &o, A, B, W2));
    assert_memory_equal(W2, a.Wres, sizeof(float) * (size_t)n);
    assert_memory_equal(A, a.A, sizeof A);
    /* W_res = NULL: only A and B */
    float A2[3 * 24], B2[16 * 3];
    assert_ok(pissa_adapter_init(W, out, in, &o, A2, B2, NULL));
    assert_memory_equal(A2, a.A, sizeof A2);
    assert_memory_equal(B2, a.B, sizeof B2);
    adapter_free(&a);
    free(W);
    free(W2);
}

static void adapter_residual_matches_naive_loop(void **state) {
    (void)state;
    const int64_t out = 9, in = 13, r = 3;
    float W[9 * 13], A[3 * 13], B[9 * 3], R[9 * 13];
    tu_gaussian(W, 9 * 13, 1);
    tu_gaussian(A, 3 * 13, 2);
    tu_gaussian(B, 9 * 3, 3);
    assert_ok(pissa_adapter_residual(W, out, in, r, A, B, 0.75, R));
    for (int64_t i = 0; i < out; i++)
        for (int64_t j = 0; j < in; j++) {
            double acc = W[i * in + j];
            for (int64_t t = 0; t < r; t++) acc -= 0.75 * B[i * r + t] * A[t * in + j];
            assert_true(fabs(acc - R[i * in + j]) < 1e-5);
        }
    assert_ok(pissa_adapter_residual(W, out, in, r, A, B, 0.75, W)); /* in place */
    assert_memory_equal(W, R, sizeof R);
    assert_int_equal(pissa_adapter_residual(W, out, in, 0, A, B, 0.75, R), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa_adapter_residual(W, out, in, r, NULL, B, 0.75, R), PISSA_ERR_INVALID_ARG);
}

/* ---- LoRA and Gaussian ---------------------------------------------------------------------------------------- */

/* Sample mean and variance of A, with the sampling tolerances for N draws. */
static void moments(const float *x, size_t n, double *mean, double *var) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *var = s2 / (double)(n - 1);
}

static void lora_init_is_kaiming_uniform_with_zero_B_and_untouched_W(void **state) {
    (void)state;
    const int64_t out = 12, in = 256, r = 64, n = r * in; /* 16384 draws */
    float *W = malloc(sizeof(float) * (size_t)(out * in)), *Wres = malloc(sizeof(float) * (size_t)(out * in));
    tu_gaussian(W, (size_t)(out * in), 3);
    float *A = malloc(sizeof(float) * (size_t)n), *B = malloc(sizeof(float) * (size_t)(out * r));
    memset(B, 0x7f, sizeof(float) * (size_t)(out * r)); /* garbage that must be overwritten */
    pissa_init_opts o = pissa_opts(PISSA_INIT_LORA, r, 16.0, 0);
    o.seed = 1234;
    assert_ok(pissa_adapter_init(W, out, in, &o, A, B, Wres));
    const double bound = 1.0 / sqrt((double)in); /* kaiming_uniform(a=√5): gain·√(3/in) with gain = √(1/3) */
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        assert_true(fabs(A[i]) <= bound);
        lo = fmin(lo, A[i]);
        hi = fmax(hi, A[i]);
    }
    assert_true(hi > 0.99 * bound && lo < -0.99 * bound); /* the whole interval is used */
    double mean, var;
    moments(A, (size_t)n, &mean, &var);
    /* U(−b, b): mean 0, sd b/√3; var b²/3 with sd of the sample variance b²·√(4/45)/√N. 5σ bounds. */
    assert_true(fabs(mean) < 5 * bound / sqrt(3.0 * n));
    assert_true(fabs(var - bound * bound / 3) < 5 * bound * bound * sqrt(4.0 / 45.0 / n));
    for (int64_t i = 0; i < out * r; i++) assert_true(B[i] == 0.0f && !signbit(B[i]));
    assert_memory_equal(Wres, W, sizeof(float) * (size_t)(out * in));
    /* same seed, same A; in place W stays W; rank above min(out, in) is fine for LoRA */
    float *A2 = malloc(sizeof(float) * (size_t)n);
    float *Wcopy = malloc(sizeof(float) * (size_t)(out * in));
    memcpy(Wcopy, W, sizeof(float) * (size_t)(out * in));
    assert_ok(pissa_adapter_init(W, out, in, &o, A2, B, W));
    assert_memory_equal(A2, A, sizeof(float) * (size_t)n);
    assert_memory_equal(W, Wcopy, sizeof(float) * (size_t)(out * in));
    o.seed = 1235;
    assert_ok(pissa_adapter_init(W, out, in, &o, A2, B, NULL));
    assert_true(memcmp(A2, A, sizeof(float) * (size_t)n) != 0);
    free(W);
    free(Wres);
    free(Wcopy);
    free(A);
    free(A2);
    free(B);
}

static void gaussian_init_has_std_one_over_rank(void **state) {
    (void)state;
    const int64_t out = 10, in = 2048, r = 8, n = r * in; /* 16384 draws */
    float *W = calloc((size_t)(out * in), sizeof(float)), *A = malloc(sizeof(float) * (size_t)n);
    float *A2 = malloc(sizeof(float) * (size_t)n), *B = malloc(sizeof(float) * (size_t)(out * r));
    pissa_init_opts o = pissa_opts(PISSA_INIT_GAUSSIAN, r, 8.0, 0);
    o.seed = 99;
    assert_ok(pissa_adapter_init(W, out, in, &o, A, B, NULL));
    double mean, var, sd = 1.0 / (double)r;
    moments(A, (size_t)n, &mean, &var);
    /* N(0, sd²): sd of the sample mean sd/√N, of the sample variance sd²·√(2/(N−1)). 5σ bounds. */
    assert_true(fabs(mean) < 5 * sd / sqrt((double)n));
    assert_true(fabs(var - sd * sd) < 5 * sd * sd * sqrt(2.0 / (double)(n - 1)));
    for (int64_t i = 0; i < out * r; i++) assert_true(B[i] == 0.0f);
    assert_ok(pissa_adapter_init(W, out, in, &o, A2, B, NULL));
    assert_memory_equal(A2, A, sizeof(float) * (size_t)n);
    free(W);
    free(A);
    free(A2);
    free(B);
}

/* ---- options -------------------------------------------------------------------------------------------------- */

static void init_parse_and_name_round_trip_peft_spellings(void **state) {
    (void)state;
    pissa_init_opts d = pissa_init_default_opts();
    assert_int_equal(d.kind, PISSA_INIT_LORA);
    assert_int_equal(d.rank, 8);
    assert_true(d.alpha == 8.0);
    assert_int_equal(d.niter, 4);
    assert_int_equal(d.oversample, PISSA_RSVD_DEFAULT_OVERSAMPLE);
    const struct {
        const char *in, *name;
        pissa_init_kind kind;
        int niter;
    } ok[] = {{"lora", "true", PISSA_INIT_LORA, 4},       {"true", "true", PISSA_INIT_LORA, 4},
              {"gaussian", "gaussian", PISSA_INIT_GAUSSIAN, 4}, {"pissa", "pissa", PISSA_INIT_PISSA, 4},
              {"pissa_niter_16", "pissa_niter_16", PISSA_INIT_PISSA_NITER, 16},
              {"pissa_niter_0", "pissa_niter_0", PISSA_INIT_PISSA_NITER, 0}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        pissa_init_opts o = pissa_init_default_opts();
        assert_ok(pissa_init_parse(ok[i].in, &o));
        assert_int_equal(o.kind, ok[i].kind);
        assert_int_equal(o.niter, ok[i].niter);
        char buf[32];
        assert_ok(pissa_init_name(&o, buf, sizeof buf));
        assert_string_equal(buf, ok[i].name);
        pissa_init_opts back = pissa_init_default_opts();
        assert_ok(pissa_init_parse(buf, &back));
        assert_int_equal(back.kind, o.kind);
        assert_int_equal(back.niter, o.niter);
    }
    const char *bad[] = {"pissa_niter_x", "pissa_niter_", "pissa_niter_-1", "pissa_niter_4x", "pissa_niter_ 4",
                         "pissa_niter_99999999999", "foo", "", "PISSA", "pissa "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pissa_init_opts o = pissa_init_default_opts();
        assert_int_equal(pissa_init_parse(bad[i], &o), PISSA_ERR_INVALID_ARG);
        assert_int_equal(o.kind, PISSA_INIT_LORA); /* untouched */
    }
    pissa_init_opts o = pissa_init_default_opts();
    assert_int_equal(pissa_init_parse("olora", &o), PISSA_ERR_UNSUPPORTED);
    assert_int_equal(pissa_init_parse(NULL, &o), PISSA_ERR_INVALID_ARG);
    o.kind = PISSA_INIT_PISSA_NITER;
    o.niter = 16;
    char small[8];
    assert_int_equal(pissa_init_name(&o, small, sizeof small), PISSA_ERR_INVALID_ARG);
    assert_true(pissa_lora_scale(8.0, 4, 0) == 2.0);
    assert_true(pissa_lora_scale(8.0, 4, 1) == 4.0);
}

static void rank_and_scale_are_checked(void **state) {
    (void)state;
    const int64_t out = 8, in = 12;
    float W[8 * 12] = {0}, A[20 * 12], B[8 * 20];
    tu_gaussian(W, 8 * 12, 2);
    for (int kind = PISSA_INIT_LORA; kind <= PISSA_INIT_PISSA_NITER; kind++) {
        pissa_init_opts o = pissa_opts((pissa_init_kind)kind, 0, 8.0, 0);
        assert_int_equal(pissa_adapter_init(W, out, in, &o, A, B, NULL), PISSA_ERR_INVALID_ARG);
        o.rank = 9;
        pissa_status st = pissa_adapter_init(W, out, in, &o, A, B, NULL);
        if (kind == PISSA_INIT_PISSA || kind == PISSA_INIT_PISSA_NITER) {
            assert_int_equal(st, PISSA_ERR_INVALID_ARG);
            assert_non_null(strstr(pissa_last_error(), "r=9"));
            assert_non_null(strstr(pissa_last_error(), "(8, 12)"));
        } else {
            assert_ok(st); /* LoRA's rank is not bounded by the shape */
        }
        o.rank = 8;
        assert_ok(pissa_adapter_init(W, out, in, &o, A, B, NULL)); /* r = min(out, in) is allowed */
    }
    pissa_init_opts o = pissa_opts(PISSA_INIT_PISSA, 4, 0.0, 0); /* S / s needs s > 0 */
    assert_int_equal(pissa_adapter_init(W, out, in, &o, A, B, NULL), PISSA_ERR_INVALID_ARG);
    o.alpha = 8.0;
    o.kind = (pissa_init_kind)7;
    assert_int_equal(pissa_adapter_init(W, out, in, &o, A, B, NULL), PISSA_ERR_INVALID_ARG);
    o.kind = PISSA_INIT_PISSA;
    assert_int_equal(pissa_adapter_init(NULL, out, in, &o, A, B, NULL), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa_adapter_init(W, out, in, NULL, A, B, NULL), PISSA_ERR_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pissa_matches_peft_reference_computed_with_pytorch),
        cmocka_unit_test(pissa_residual_plus_scaled_product_reconstructs_W),
        cmocka_unit_test(pissa_product_equals_exact_rank_r_truncation_from_double_lapack),
        cmocka_unit_test(pissa_factors_are_orthogonal_with_squared_norms_S_over_scale),
        cmocka_unit_test(pissa_product_is_independent_of_singular_vector_signs),
        cmocka_unit_test(pissa_in_place_residual_equals_separate_output),
        cmocka_unit_test(adapter_residual_matches_naive_loop),
        cmocka_unit_test(lora_init_is_kaiming_uniform_with_zero_B_and_untouched_W),
        cmocka_unit_test(gaussian_init_has_std_one_over_rank),
        cmocka_unit_test(init_parse_and_name_round_trip_peft_spellings),
        cmocka_unit_test(rank_and_scale_are_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
