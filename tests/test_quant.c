/* Frozen-weight formats (src/quant.h) and the frozen products computed from them (src/qmatmul.c):
 *  - NF4 and INT8 codes, scales and dequantized values against fixtures written by
 *    tests/reference/make_quant_reference.py (bitsandbytes' rules in numpy), bit for bit;
 *  - BF16/F16: every one of the 65536 bit patterns widened by both kernel sets (the AVX2 one uses the F16C
 *    instruction, the generic one tensor.c's scalar code) to the same bits, at any alignment of borrowed data;
 *  - every tile conversion, with both kernel sets, against the whole dequantization;
 *  - the re-quantization check, on a residual that reproduces its codes and on one that cannot;
 *  - the products and their gradients against a float64 product on the dequantized matrix, for every format, odd
 *    shapes across tile edges, N = 1 and larger, 1 and 2 threads, overwrite and accumulate. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "testutil.h"

#define GEN "make_quant_reference.py"

/* ---- fixtures ------------------------------------------------------------------------------------------------ */

typedef struct fixture {
    char name[64];
    int64_t rows, cols;
} fixture;

static int read_cases(fixture *f, int max) {
    char *path = tu_path(PISSA_TEST_REFERENCE_DIR, "quant_ref_cases.txt");
    char *text = tu_slurp(path, NULL);
    if (!text) fail_msg("cannot read %s (written by tests/reference/%s)", path, GEN);
    int n = 0, used;
    long long r, c;
    for (char *p = text; n < max && sscanf(p, "%63s %lld %lld%n", f[n].name, &r, &c, &used) == 3; p += used, n++)
        f[n].rows = r, f[n].cols = c;
    free(text);
    free(path);
    assert_true(n >= 6);
    return n;
}

static void *fixture_file(const fixture *f, const char *suffix, size_t bytes) {
    char name[160];
    snprintf(name, sizeof name, "quant_ref_%.63s_%.63s", f->name, suffix);
    return tu_read_reference(name, bytes, GEN);
}

/* Fails with the first differing element of two float arrays compared bit for bit. */
static void assert_same_floats(const float *got, const float *want, size_t n, const char *what, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
            fail_msg("%s %s: element %zu is %.9g, expected %.9g", name, what, i, (double)got[i], (double)want[i]);
}

static void assert_dequantizes_to(const pissa__qweight *q, const float *want, const char *name) {
    size_t n = (size_t)(q->rows * q->cols);
    float *deq = malloc(n * sizeof(float));
    for (int isa = PISSA__QUANT_GENERIC; isa <= PISSA__QUANT_AVX2; isa++) {
        memset(deq, 0xff, n * sizeof(float));
        pissa__qweight_tile_isa((pissa__quant_isa)isa, q, 0, q->rows, 0, q->cols, deq, q->cols);
        assert_same_floats(deq, want, n, isa ? "dequantized (AVX2)" : "dequantized (generic)", name);
    }
    free(deq);
}

/* pissa__qweight_quantize with the given kernels. */
static pissa_status quantize_isa(pissa__quant_isa isa, pissa__qweight *q, pissa_qtype type, const float *W,
                                 int64_t rows, int64_t cols) {
    pissa__qweight src;
    assert_ok(pissa__qweight_wrap(&src, PISSA_QTYPE_F32, rows, cols, W, NULL));
    return pissa__qweight_convert_isa(isa, q, type, &src);
}

static void nf4_codes_scales_and_values_match_bitsandbytes_fixtures(void **state) {
    (void)state;
    fixture f[16];
    int nc = read_cases(f, 16);
    for (int k = 0; k < nc; k++) {
        size_t n = (size_t)(f[k].rows * f[k].cols), nb = (n + 63) / 64;
        float *W = fixture_file(&f[k], "W.f32", n * 4), *absmax = fixture_file(&f[k], "nf4_absmax.f32", nb * 4);
        float *deq = fixture_file(&f[k], "nf4_deq.f32", n * 4);
        uint8_t *codes = fixture_file(&f[k], "nf4_codes.u8", (n + 1) / 2);
        for (int isa = PISSA__QUANT_GENERIC; isa <= PISSA__QUANT_AVX2; isa++) {
            pissa__qweight q;
            assert_ok(quantize_isa((pissa__quant_isa)isa, &q, PISSA_QTYPE_NF4, W, f[k].rows, f[k].cols));
            const uint8_t *got = q.data;
            for (size_t i = 0; i < (n + 1) / 2; i++)
                if (got[i] != codes[i])
                    fail_msg("%s (isa %d): byte %zu (elements %zu, %zu) is 0x%02x, expected 0x%02x", f[k].name, isa, i,
                             2 * i, 2 * i + 1, got[i], codes[i]);
            assert_same_floats(q.scales, absmax, nb, "absmax", f[k].name);
            assert_dequantizes_to(&q, deq, f[k].name);
            assert_int_equal(pissa__qweight_bytes(&q), (n + 1) / 2 + 4 * nb);
            pissa__qweight_release(&q);
        }
        free(W), free(absmax), free(deq), free(codes);
    }
}

static void int8_codes_scales_and_values_match_bitsandbytes_fixtures(void **state) {
    (void)state;
    fixture f[16];
    int nc = read_cases(f, 16);
    for (int k = 0; k < nc; k++) {
        size_t n = (size_t)(f[k].rows * f[k].cols), rows = (size_t)f[k].rows;
        float *W = fixture_file(&f[k], "W.f32", n * 4), *absmax = fixture_file(&f[k], "int8_absmax.f32", rows * 4);
        float *deq = fixture_file(&f[k], "int8_deq.f32", n * 4);
        int8_t *codes = fixture_file(&f[k], "int8_codes.i8", n);
        for (int isa = PISSA__QUANT_GENERIC; isa <= PISSA__QUANT_AVX2; isa++) {
            pissa__qweight q;
            assert_ok(quantize_isa((pissa__quant_isa)isa, &q, PISSA_QTYPE_INT8, W, f[k].rows, f[k].cols));
            const int8_t *got = q.data;
            for (size_t i = 0; i < n; i++)
                if (got[i] != codes[i])
                    fail_msg("%s (isa %d): element %zu (W = %.9g) is %d, expected %d", f[k].name, isa, i, (double)W[i],
                             got[i], codes[i]);
            assert_same_floats(q.scales, absmax, rows, "row absmax", f[k].name);
            assert_dequantizes_to(&q, deq, f[k].name);
            assert_int_equal(pissa__qweight_bytes(&q), n + 4 * rows);
            pissa__qweight_release(&q);
        }
        free(W), free(absmax), free(deq), free(codes);
    }
}

/* ---- 16-bit formats ------------------------------------------------------------------------------------------- */

static int same_or_both_nan(float a, float b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

/* Every 16-bit pattern, wrapped at byte offsets 0 and 1, widened by both kernel sets. */
static void sixteen_bit_patterns_widen_exactly_at_any_alignment(void **state) {
    (void)state;
    unsigned char *buf = malloc(2 * 65536 + 1);
    float *got = malloc(65536 * sizeof(float));
    for (int type = PISSA_QTYPE_BF16; type <= PISSA_QTYPE_F16; type++)
        for (int offset = 0; offset <= 1; offset++) {
            for (int i = 0; i < 65536; i++) buf[offset + 2 * i] = (unsigned char)(i & 0xff), buf[offset + 2 * i + 1] = (unsigned char)(i >> 8);
            pissa__qweight q;
            assert_ok(pissa__qweight_wrap(&q, (pissa_qtype)type, 256, 256, buf + offset, NULL));
            for (int isa = PISSA__QUANT_GENERIC; isa <= PISSA__QUANT_AVX2; isa++) {
                pissa__qweight_tile_isa((pissa__quant_isa)isa, &q, 0, 256, 0, 256, got, 256);
                for (int i = 0; i < 65536; i++) {
                    float want;
                    if (type == PISSA_QTYPE_BF16) { /* the definition: the 16 bits in the high half */
                        uint32_t u = (uint32_t)i << 16;
                        memcpy(&want, &u, 4);
                    } else {
                        want = pissa_f16_to_f32((uint16_t)i);
                    }
                    if (!same_or_both_nan(got[i], want))
                        fail_msg("%s 0x%04x (isa %d, offset %d): %.9g, expected %.9g", pissa_qtype_name(q.type), i, isa,
                                 offset, (double)got[i], (double)want);
                }
            }
            pissa__qweight_release(&q); /* borrowed: only empties q */
            assert_null(q.data);
        }
    free(buf);
    free(got);
}

static void sixteen_bit_formats_round_to_nearest_even(void **state) {
    (void)state;
    enum { R = 7, C = 45 };
    float W[R * C];
    tu_gaussian(W, R * C, 11);
    W[3] = 1.0f + 0x1p-8f;       /* a bf16 tie: to even (1.0) */
    W[4] = 1.0f + 3 * 0x1p-8f;   /* a bf16 tie: to even (1 + 2^-6) */
    W[5] = 1.0f + 0x1p-11f;      /* an f16 tie: to even (1.0) */
    W[6] = 65504.0f;             /* f16 max */
    W[7] = 1e-6f;                /* an f16 denormal */
    for (int type = PISSA_QTYPE_BF16; type <= PISSA_QTYPE_F16; type++) {
        pissa__qweight q;
        assert_ok(pissa__qweight_quantize(&q, (pissa_qtype)type, W, R, C));
        const uint16_t *h = q.data;
        for (int i = 0; i < R * C; i++)
            assert_int_equal(h[i], type == PISSA_QTYPE_BF16 ? pissa_f32_to_bf16(W[i]) : pissa_f32_to_f16(W[i]));
        assert_int_equal(pissa__qweight_bytes(&q), 2 * R * C);
        pissa__qweight_release(&q);
    }
    assert_int_equal(pissa_f32_to_bf16(W[3]), 0x3f80);
    assert_int_equal(pissa_f32_to_bf16(W[4]), 0x3f82);
    assert_int_equal(pissa_f32_to_f16(W[5]), 0x3c00);
}

/* ---- conversion of tiles and from other formats --------------------------------------------------------------- */

static void tiles_equal_the_whole_dequantization(void **state) {
    (void)state;
    enum { R = 37, C = 133 }; /* 4921 elements: odd, so odd rows start on a low nibble */
    float *W = malloc(R * C * sizeof(float)), *full = malloc(R * C * sizeof(float));
    float *tile = malloc(R * C * sizeof(float));
    tu_gaussian(W, R * C, 5);
    uint64_t seed = 99;
    for (int type = 0; type < PISSA_QTYPE_COUNT; type++) {
        pissa__qweight q;
        assert_ok(pissa__qweight_quantize(&q, (pissa_qtype)type, W, R, C));
        pissa__qweight_tile_isa(PISSA__QUANT_GENERIC, &q, 0, R, 0, C, full, C);
        for (int t = 0; t < 200; t++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            int64_t r0 = (int64_t)(seed >> 33) % R, c0 = (int64_t)(seed >> 17) % C;
            int64_t r1 = r0 + 1 + (int64_t)(seed >> 45) % (R - r0), c1 = c0 + 1 + (int64_t)(seed >> 7) % (C - c0);
            int64_t ld = c1 - c0 + 3;
            pissa__quant_isa isa = t % 2 ? PISSA__QUANT_AVX2 : PISSA__QUANT_GENERIC;
            pissa__qweight_tile_isa(isa, &q, r0, r1, c0, c1, tile, ld);
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++)
                    if (memcmp(&tile[(r - r0) * ld + (c - c0)], &full[r * C + c], 4) != 0)
                        fail_msg("%s tile [%lld:%lld, %lld:%lld] (isa %d): element (%lld, %lld) differs",
                                 pissa_qtype_name(q.type), (long long)r0, (long long)r1, (long long)c0, (long long)c1,
                                 (int)isa, (long long)r, (long long)c);
        }
        pissa__qweight_dequantize(&q, 3, 9, tile);
        assert_memory_equal(tile, full + 3 * C, 6 * C * sizeof(float));
        pissa__qweight_release(&q);
    }
    free(W), free(full), free(tile);
}

/* Quantizing from a borrowed BF16 (or F16) weight equals quantizing its float32 values. */
static void convert_from_16bit_equals_quantize_of_widened_values(void **state) {
    (void)state;
    enum { R = 19, C = 71 };
    float W[R * C], wide[R * C];
    tu_gaussian(W, R * C, 21);
    for (int src_type = PISSA_QTYPE_BF16; src_type <= PISSA_QTYPE_F16; src_type++) {
        pissa__qweight src;
        assert_ok(pissa__qweight_quantize(&src, (pissa_qtype)src_type, W, R, C));
        pissa__qweight_dequantize(&src, 0, R, wide);
        for (int type = 0; type < PISSA_QTYPE_COUNT; type++) {
            pissa__qweight a, b;
            assert_ok(pissa__qweight_convert(&a, (pissa_qtype)type, &src));
            assert_ok(pissa__qweight_quantize(&b, (pissa_qtype)type, wide, R, C));
            assert_int_equal(pissa__qweight_bytes(&a), pissa__qweight_bytes(&b));
            size_t ns = a.type == PISSA_QTYPE_NF4 ? (R * C + 63) / 64 : a.type == PISSA_QTYPE_INT8 ? R : 0;
            assert_memory_equal(a.data, b.data, pissa__qweight_bytes(&a) - 4 * ns);
            if (ns) assert_memory_equal(a.scales, b.scales, 4 * ns);
            pissa__qweight_release(&a), pissa__qweight_release(&b);
        }
        pissa__qweight_release(&src);
    }
}

/* Large enough to be split over threads: the same bytes from either kernel set and any thread count, and the
 * first element a format cannot store is the one named, wherever the split falls. */
static void quantization_is_the_same_for_every_kernel_and_thread_count(void **state) {
    (void)state;
    enum { R = 301, C = 1003 };
    float *W = malloc(sizeof(float) * R * C);
    tu_gaussian(W, (size_t)R * C, 77);
    for (int i = 0; i < R * C; i += 97) W[i] = 0; /* some exact zeros, and an all-zero row */
    memset(W + 150 * C, 0, sizeof(float) * C);
    int saved = pissa_get_num_threads();
    for (int type = 0; type < PISSA_QTYPE_COUNT; type++) {
        pissa__qweight ref, q;
        pissa_set_num_threads(1);
        assert_ok(quantize_isa(PISSA__QUANT_GENERIC, &ref, (pissa_qtype)type, W, R, C));
        for (int threads = 1; threads <= 2; threads++)
            for (int isa = PISSA__QUANT_GENERIC; isa <= PISSA__QUANT_AVX2; isa++) {
                pissa_set_num_threads(threads);
                assert_ok(quantize_isa((pissa__quant_isa)isa, &q, (pissa_qtype)type, W, R, C));
                size_t scale_bytes = type == PISSA_QTYPE_NF4 ? 4 * ((R * C + 63) / 64) : type == PISSA_QTYPE_INT8 ? 4 * R : 0;
                assert_memory_equal(q.data, ref.data, pissa__qweight_bytes(&q) - scale_bytes);
                if (scale_bytes) assert_memory_equal(q.scales, ref.scales, scale_bytes);
                pissa__qweight_release(&q);
            }
        pissa__qweight_release(&ref);
    }
    pissa_set_num_threads(2);
    W[20 * C + 7] = INFINITY, W[280 * C + 1] = NAN; /* one in each thread's half: the first is named */
    for (int type = PISSA_QTYPE_NF4; type <= PISSA_QTYPE_INT8; type++) {
        pissa__qweight q;
        assert_int_equal(pissa__qweight_quantize(&q, (pissa_qtype)type, W, R, C), PISSA_ERR_NUMERIC);
        assert_non_null(strstr(pissa_last_error(), "(20, 7)"));
        assert_null(q.data);
    }
    pissa_set_num_threads(saved);
    free(W);
}

/* ---- errors ---------------------------------------------------------------------------------------------------- */

static void quantize_refuses_what_the_format_cannot_store(void **state) {
    (void)state;
    enum { R = 4, C = 70 };
    float W[R * C];
    tu_gaussian(W, R * C, 3);
    pissa__qweight q;
    W[2 * C + 3] = NAN;
    assert_int_equal(pissa__qweight_quantize(&q, PISSA_QTYPE_NF4, W, R, C), PISSA_ERR_NUMERIC);
    assert_non_null(strstr(pissa_last_error(), "(2, 3)"));
    assert_null(q.data);
    W[2 * C + 3] = 0, W[3 * C + 69] = -INFINITY;
    assert_int_equal(pissa__qweight_quantize(&q, PISSA_QTYPE_INT8, W, R, C), PISSA_ERR_NUMERIC);
    assert_non_null(strstr(pissa_last_error(), "(3, 69)"));
    W[3 * C + 69] = 0, W[1 * C + 1] = 70000.0f;
    assert_int_equal(pissa__qweight_quantize(&q, PISSA_QTYPE_F16, W, R, C), PISSA_ERR_NUMERIC);
    assert_non_null(strstr(pissa_last_error(), "overflows float16"));
    assert_ok(pissa__qweight_quantize(&q, PISSA_QTYPE_BF16, W, R, C)); /* bf16 holds it */
    pissa__qweight_release(&q);
    pissa__qweight_release(&q); /* an empty weight: a no-op */

    float s[2] = {1, 1};
    uint8_t d[8] = {0};
    assert_int_equal(pissa__qweight_wrap(&q, PISSA_QTYPE_NF4, 1, 16, d, NULL), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa__qweight_wrap(&q, PISSA_QTYPE_BF16, 1, 4, d, s), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa__qweight_wrap(&q, PISSA_QTYPE_F32, 0, 4, d, NULL), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa__qweight_wrap(&q, (pissa_qtype)7, 1, 4, d, NULL), PISSA_ERR_INVALID_ARG);
    float fd[2] = {0};
    assert_int_equal(pissa__qweight_wrap(&q, PISSA_QTYPE_F32, 1, 1, (char *)fd + 1, NULL), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa__qweight_wrap(&q, PISSA_QTYPE_INT8, 1, 4, d + 1, (const float *)((char *)s + 1)),
                     PISSA_ERR_INVALID_ARG);
    assert_ok(pissa__qweight_wrap(&q, PISSA_QTYPE_INT8, 1, 4, d + 1, s)); /* int8 codes: any alignment */
    assert_int_equal(pissa__qweight_quantize(&q, PISSA_QTYPE_NF4, W, R, -1), PISSA_ERR_INVALID_ARG);
}

static void qtype_names_parse_back(void **state) {
    (void)state;
    for (int t = 0; t < PISSA_QTYPE_COUNT; t++) {
        pissa_qtype p;
        assert_ok(pissa_qtype_parse(pissa_qtype_name((pissa_qtype)t), &p));
        assert_int_equal(p, t);
    }
    pissa_qtype p;
    assert_ok(pissa_qtype_parse("BFloat16", &p));
    assert_int_equal(p, PISSA_QTYPE_BF16);
    assert_int_equal(pissa_qtype_parse("nf8", &p), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "nf8"));
    assert_true(pissa_qtype_is_quantized(PISSA_QTYPE_NF4) && !pissa_qtype_is_quantized(PISSA_QTYPE_BF16));
    assert_int_equal(pissa__qtype_bytes(PISSA_QTYPE_NF4, 4096, 11008), 4096ull * 11008 / 2 + 4 * (4096ull * 11008 / 64));
    assert_int_equal(pissa__qtype_bytes(PISSA_QTYPE_INT8, 3, 5), 15 + 12);
}

/* ---- re-quantization check ------------------------------------------------------------------------------------- */

static void requantizing_a_written_residual_is_counted(void **state) {
    (void)state;
    enum { R = 24, C = 50 };
    float W[R * C];
    tu_gaussian(W, R * C, 8);
    for (int i = 0; i < R * C; i++) W[i] *= 0.02f;
    for (int type = PISSA_QTYPE_NF4; type <= PISSA_QTYPE_INT8; type++) {
        pissa__qweight q;
        assert_ok(pissa__qweight_quantize(&q, (pissa_qtype)type, W, R, C));
        int64_t cs, ct, ss, st;
        /* stored in float32, deq(q) quantizes back to q's codes; NF4's absmax comes back exactly (the block's
         * extreme dequantizes to ±1·absmax), INT8's only to an ulp ((127·a)·(1/127) need not be a) */
        assert_ok(pissa__qweight_requant_match(&q, PISSA_F32, &cs, &ct, &ss, &st));
        assert_int_equal(ct, R * C);
        assert_int_equal(cs, ct);
        assert_int_equal(st, type == PISSA_QTYPE_NF4 ? (R * C + 63) / 64 : R);
        if (type == PISSA_QTYPE_NF4) assert_int_equal(ss, st);
        /* in bf16 the absmax itself is rounded (2^-9 relative): the scales change, the codes (far from a midpoint
         * for NF4, within half a step for INT8) stay */
        assert_ok(pissa__qweight_requant_match(&q, PISSA_BF16, &cs, &ct, &ss, &st));
        assert_true(cs >= ct - ct / 100);
        assert_true(ss < st);
        pissa__qweight_release(&q);
    }
    /* NF4 codes that never reach ±1: the dequantized block's max is below its absmax, so nothing comes back */
    uint8_t codes[32];
    memset(codes, 0xcc, sizeof codes); /* code 12 everywhere */
    float absmax = 1.0f;
    pissa__qweight q;
    assert_ok(pissa__qweight_wrap(&q, PISSA_QTYPE_NF4, 1, 64, codes, &absmax));
    int64_t cs, ct, ss, st;
    assert_ok(pissa__qweight_requant_match(&q, PISSA_F32, &cs, &ct, &ss, &st));
    assert_int_equal(cs, 0);
    assert_int_equal(ss, 0);
    assert_int_equal(ct, 64);
    assert_int_equal(pissa__qweight_requant_match(&q, PISSA_I8, &cs, &ct, &ss, &st), PISSA_ERR_INVALID_ARG);
}

/* ---- products -------------------------------------------------------------------------------------------------- */

/* y[n, j] = Σ_k x[n, k]·M(k, j) in double, with M(k, j) = W[k, j] (TRANSPOSED = 0: x (N, K), W (K, J)) or W[j, k]
 * (1: W (J, K)); bound[n, j] = Σ |x||M|. */
static void ref_product(const float *x, const float *W, int transposed, int N, int K, int J, double *y, double *bound) {
    for (int n = 0; n < N; n++)
        for (int j = 0; j < J; j++) {
            double s = 0, b = 0;
            for (int k = 0; k < K; k++) {
                double m = transposed ? W[(size_t)j * K + k] : W[(size_t)k * J + j];
                s += (double)x[(size_t)n * K + k] * m;
                b += fabs((double)x[(size_t)n * K + k] * m);
            }
            y[(size_t)n * J + j] = s, bound[(size_t)n * J + j] = b;
        }
}

/* |got − (base + ref)| <= K·u·(bound + |base|) for every element: the worst case of a float32 sum of K terms, so a
 * missing slab, a wrong code or a wrong scale anywhere shows up far above it. */
static void assert_product(const float *got, const float *base, const double *ref, const double *bound, size_t n, int K,
                           const char *what, const pissa__qweight *w, int N, int threads) {
    double u = 0x1p-24;
    for (size_t i = 0; i < n; i++) {
        double b = base ? base[i] : 0.0, tol = (K + 1) * u * (bound[i] + fabs(b)) + 1e-30;
        double err = fabs((double)got[i] - (b + ref[i]));
        if (!(err <= tol))
            fail_msg("%s %s (%lld, %lld) N=%d threads=%d: element %zu is %.9g, expected %.9g (tolerance %.3g)", what,
                     pissa_qtype_name(w->type), (long long)w->rows, (long long)w->cols, N, threads, i, (double)got[i],
                     b + ref[i], tol);
    }
}

static void check_products(int N, int OC, int C, uint64_t seed) {
    float *W = malloc(sizeof(float) * (size_t)OC * C), *deq = malloc(sizeof(float) * (size_t)OC * C);
    float *inp = malloc(sizeof(float) * (size_t)N * C), *dout = malloc(sizeof(float) * (size_t)N * OC);
    float *inp0 = malloc(sizeof(float) * (size_t)N * C), *dout0 = malloc(sizeof(float) * (size_t)N * OC);
    float *out = malloc(sizeof(float) * (size_t)N * OC), *dinp = malloc(sizeof(float) * (size_t)N * C);
    float *base = malloc(sizeof(float) * (size_t)N * C);
    double *ref_f = malloc(sizeof(double) * (size_t)N * OC), *bnd_f = malloc(sizeof(double) * (size_t)N * OC);
    double *ref_b = malloc(sizeof(double) * (size_t)N * C), *bnd_b = malloc(sizeof(double) * (size_t)N * C);
    tu_gaussian(W, (size_t)OC * C, seed);
    tu_gaussian(inp, (size_t)N * C, seed + 1);
    tu_gaussian(dout, (size_t)N * OC, seed + 2);
    tu_gaussian(base, (size_t)N * C, seed + 3);
    memcpy(inp0, inp, sizeof(float) * (size_t)N * C);
    memcpy(dout0, dout, sizeof(float) * (size_t)N * OC);
    for (int type = 0; type < PISSA_QTYPE_COUNT; type++) {
        pissa__qweight q;
        assert_ok(pissa__qweight_quantize(&q, (pissa_qtype)type, W, OC, C));
        pissa__qweight_dequantize(&q, 0, OC, deq);
        ref_product(inp, deq, 1, N, C, OC, ref_f, bnd_f);   /* inp·deqᵀ */
        ref_product(dout, deq, 0, N, OC, C, ref_b, bnd_b);  /* dout·deq */
        for (int threads = 1; threads <= 2; threads++) {
            size_t ns = pissa__qmatmul_scratch_floats(threads);
            float *scratch = malloc(sizeof(float) * ns);
            for (size_t i = 0; i < ns; i++) scratch[i] = NAN;
            for (size_t i = 0; i < (size_t)N * OC; i++) out[i] = NAN; /* overwritten, never read */
            pissa__qmatmul_forward(out, scratch, threads, inp, &q, N);
            assert_product(out, NULL, ref_f, bnd_f, (size_t)N * OC, C, "forward", &q, N, threads);
            for (size_t i = 0; i < (size_t)N * C; i++) dinp[i] = NAN; /* fresh: overwritten */
            pissa__qmatmul_backward(dinp, scratch, threads, dout, &q, N, 1);
            assert_product(dinp, NULL, ref_b, bnd_b, (size_t)N * C, OC, "backward (fresh)", &q, N, threads);
            memcpy(dinp, base, sizeof(float) * (size_t)N * C); /* accumulate: += */
            pissa__qmatmul_backward(dinp, scratch, threads, dout, &q, N, 0);
            assert_product(dinp, base, ref_b, bnd_b, (size_t)N * C, OC, "backward (+=)", &q, N, threads);
            free(scratch);
        }
        assert_memory_equal(inp, inp0, sizeof(float) * (size_t)N * C);
        assert_memory_equal(dout, dout0, sizeof(float) * (size_t)N * OC);
        pissa__qweight_release(&q);
    }
    free(W), free(deq), free(inp), free(dout), free(inp0), free(dout0), free(out), free(dinp), free(base);
    free(ref_f), free(bnd_f), free(ref_b), free(bnd_b);
}

static void products_equal_the_product_of_the_dequantized_weight_small(void **state) {
    (void)state;
    check_products(1, 37, 53, 100);  /* one token, everything inside one tile */
    check_products(5, 1, 3, 110);    /* a single output */
    check_products(33, 600, 300, 120); /* past a tile's 512 rows and 256-wide slab, in both directions */
}

static void products_equal_the_product_of_the_dequantized_weight_large(void **state) {
    (void)state;
    check_products(70, 1100, 530, 130); /* several tiles and slabs per thread; C and OC not multiples of 16 */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nf4_codes_scales_and_values_match_bitsandbytes_fixtures),
        cmocka_unit_test(int8_codes_scales_and_values_match_bitsandbytes_fixtures),
        cmocka_unit_test(sixteen_bit_patterns_widen_exactly_at_any_alignment),
        cmocka_unit_test(sixteen_bit_formats_round_to_nearest_even),
        cmocka_unit_test(tiles_equal_the_whole_dequantization),
        cmocka_unit_test(convert_from_16bit_equals_quantize_of_widened_values),
        cmocka_unit_test(quantization_is_the_same_for_every_kernel_and_thread_count),
        cmocka_unit_test(quantize_refuses_what_the_format_cannot_store),
        cmocka_unit_test(qtype_names_parse_back),
        cmocka_unit_test(requantizing_a_written_residual_is_counted),
        cmocka_unit_test(products_equal_the_product_of_the_dequantized_weight_small),
        cmocka_unit_test(products_equal_the_product_of_the_dequantized_weight_large),
    };
    return cmocka_run_group_tests_name("quant", tests, NULL, NULL);
}
