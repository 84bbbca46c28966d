/* Frozen weights in F32, BF16, F16, NF4 or INT8 (see quant.h for the formats and the exact rules): quantization,
 * conversion of tiles to float32 (vectorised: AVX2 + F16C, chosen at run time, with a plain C fallback that gives
 * the same bits), and the re-quantization check of a written residual. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parallel.h"
#include "quant.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define QUANT_X86 1
#include <cpuid.h>
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,f16c")))
#endif

/* ---- pissa_qtype (public) -------------------------------------------------------------------------------------- */

static const char *const qtype_names[PISSA_QTYPE_COUNT] = {"f32", "bf16", "f16", "nf4", "int8"};

const char *pissa_qtype_name(pissa_qtype t) { return (unsigned)t < PISSA_QTYPE_COUNT ? qtype_names[t] : "?"; }

int pissa_qtype_is_quantized(pissa_qtype t) { return t == PISSA_QTYPE_NF4 || t == PISSA_QTYPE_INT8; }

pissa_status pissa_quant_roundtrip(pissa_qtype type, const float *W, int64_t rows, int64_t cols, float *out) {
    if (!W || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_quant_roundtrip: NULL argument");
    pissa__qweight q;
    PISSA_TRY(pissa__qweight_quantize(&q, type, W, rows, cols));
    pissa__qweight_dequantize(&q, 0, rows, out);
    pissa__qweight_release(&q);
    return PISSA_OK;
}

pissa_status pissa_qtype_parse(const char *s, pissa_qtype *out) {
    if (!s || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_qtype_parse: NULL argument");
    static const struct {
        const char *alias;
        pissa_qtype t;
    } aliases[] = {{"float32", PISSA_QTYPE_F32}, {"bfloat16", PISSA_QTYPE_BF16}, {"float16", PISSA_QTYPE_F16},
                   {"half", PISSA_QTYPE_F16}};
    for (int i = 0; i < PISSA_QTYPE_COUNT; i++)
        if (strcasecmp(s, qtype_names[i]) == 0) return *out = (pissa_qtype)i, PISSA_OK;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcasecmp(s, aliases[i].alias) == 0) return *out = aliases[i].t, PISSA_OK;
    return pissa__fail(PISSA_ERR_INVALID_ARG, "unknown base dtype '%s' (expected f32, bf16, f16, nf4 or int8)", s);
}

/* ---- the rules ------------------------------------------------------------------------------------------------- */

/* bitsandbytes get_4bit_type("nf4"): create_normal_map(offset=0.9677083, use_extra_value=True), as float32. */
const float pissa__nf4_levels[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

#define NF4_ZERO_CODE 7
#define NF4_MIN_ABSMAX 1e-38f            /* bitsandbytes' absmax.clamp(min=1e-38) (a float32 denormal) */
#define INT8_INV127 ((float)(1.0 / 127)) /* 7.874015718698502e-3 as float32, bitsandbytes' dequantization constant */

/* The decision thresholds: midpoints of adjacent levels in float32 (sum rounded, then halved exactly). */
static void nf4_thresholds(float thr[15]) {
    for (int j = 0; j < 15; j++) thr[j] = (pissa__nf4_levels[j] + pissa__nf4_levels[j + 1]) / 2.0f;
}

/* Number of thresholds strictly below s: the nearest level, ties to the lower one. Branch-free. */
static inline int nf4_code(const float thr[15], float s) {
    int c = 0;
    for (int j = 0; j < 15; j++) c += thr[j] < s;
    return c;
}

/* One NF4 block of n <= 64 values x, the first at an even flat index, into codes (⌈n/2⌉ bytes) and *absmax.
 * SHORT marks the matrix's last block when it has fewer than 64 values (bitsandbytes treats it differently). */
static void nf4_quantize_block(const float thr[15], const float *x, int n, int short_block, uint8_t *codes,
                               float *absmax) {
    float a = 0.0f;
    for (int k = 0; k < n; k++) a = fmaxf(a, fabsf(x[k]));
    float s[PISSA__NF4_BLOCK];
    if (!short_block) { /* x · (1 / max(a, 1e-38)), absmax stored unclamped */
        float inv = 1.0f / fmaxf(a, NF4_MIN_ABSMAX);
        for (int k = 0; k < n; k++) s[k] = x[k] * inv;
        *absmax = a;
    } else { /* x / max(a, 1e-38), absmax stored clamped */
        a = fmaxf(a, NF4_MIN_ABSMAX);
        for (int k = 0; k < n; k++) s[k] = x[k] / a;
        *absmax = a;
    }
    for (int k = 0; k < n; k += 2) {
        int hi = nf4_code(thr, s[k]), lo = k + 1 < n ? nf4_code(thr, s[k + 1]) : NF4_ZERO_CODE;
        codes[k / 2] = (uint8_t)(hi << 4 | lo);
    }
}

/* One INT8 row of n values: q = clamp(rint(x · (127 / a)), −127, 127), NaN → 0; *absmax = a. */
static void int8_quantize_row(const float *x, int64_t n, int8_t *q, float *absmax) {
    float a = 0.0f;
    for (int64_t k = 0; k < n; k++) a = fmaxf(a, fabsf(x[k]));
    float scale = 127.0f / a;
    for (int64_t k = 0; k < n; k++) {
        float v = x[k] * scale;
        v = isnan(v) ? 0.0f : rintf(fminf(fmaxf(v, -127.0f), 127.0f)); /* rint: round half to even */
        q[k] = (int8_t)v;
    }
    *absmax = a;
}

#ifdef QUANT_X86
/* The same rules 8 values at a time, with the same float32 operations (so the same bits): max of |x| is exact in
 * any order, x · inv and 127 / a are the scalar products, and vroundps rounds half to even as rintf. */
AVX2 static inline float hmax8(__m256 m) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_shuffle_ps(h, h, 1)));
}

/* nf4_quantize_block for a full block (64 values). */
AVX2 static void nf4_quantize_full_avx2(const float thr[15], const float *x, uint8_t *codes, float *absmax) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < PISSA__NF4_BLOCK; k += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
    float a = hmax8(m);
    __m256 inv = _mm256_set1_ps(1.0f / fmaxf(a, NF4_MIN_ABSMAX));
    int32_t c[PISSA__NF4_BLOCK];
    for (int k = 0; k < PISSA__NF4_BLOCK; k += 8) {
        __m256 sc = _mm256_mul_ps(_mm256_loadu_ps(x + k), inv);
        __m256i n = _mm256_setzero_si256();
        for (int j = 0; j < 15; j++) /* count the thresholds below: each true compare is −1 */
            n = _mm256_sub_epi32(n, _mm256_castps_si256(_mm256_cmp_ps(_mm256_set1_ps(thr[j]), sc, _CMP_LT_OQ)));
        _mm256_storeu_si256((__m256i *)(c + k), n);
    }
    for (int k = 0; k < PISSA__NF4_BLOCK; k += 2) codes[k / 2] = (uint8_t)(c[k] << 4 | c[k + 1]);
    *absmax = a;
}

AVX2 static void int8_quantize_row_avx2(const float *x, int64_t n, int8_t *q, float *absmax) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
    float a = hmax8(m);
    for (; k < n; k++) a = fmaxf(a, fabsf(x[k]));
    float scale = 127.0f / a;
    __m256 sv = _mm256_set1_ps(scale), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    for (k = 0; k + 8 <= n; k += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + k), sv);
        v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q)); /* NaN → 0 */
        v = _mm256_round_ps(_mm256_min_ps(_mm256_max_ps(v, lo), hi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        int32_t t[8];
        _mm256_storeu_si256((__m256i *)t, _mm256_cvtps_epi32(v));
        for (int i = 0; i < 8; i++) q[k + i] = (int8_t)t[i];
    }
    for (; k < n; k++) {
        float v = x[k] * scale;
        q[k] = (int8_t)(isnan(v) ? 0.0f : rintf(fminf(fmaxf(v, -127.0f), 127.0f)));
    }
    *absmax = a;
}
#endif

/* ---- layout ---------------------------------------------------------------------------------------------------- */

static int64_t nf4_blocks(int64_t numel) { return (numel + PISSA__NF4_BLOCK - 1) / PISSA__NF4_BLOCK; }

/* Bytes of data and number of scales of TYPE for NUMEL elements in ROWS rows. */
static void layout(pissa_qtype type, int64_t rows, int64_t numel, size_t *data_bytes, size_t *nscales) {
    *data_bytes = 0, *nscales = 0;
    switch (type) {
    case PISSA_QTYPE_F32: *data_bytes = (size_t)numel * 4, *nscales = 0; break;
    case PISSA_QTYPE_BF16:
    case PISSA_QTYPE_F16: *data_bytes = (size_t)numel * 2, *nscales = 0; break;
    case PISSA_QTYPE_NF4: *data_bytes = (size_t)(numel + 1) / 2, *nscales = (size_t)nf4_blocks(numel); break;
    case PISSA_QTYPE_INT8: *data_bytes = (size_t)numel, *nscales = (size_t)rows; break;
    }
}

static pissa_status check_shape(const char *fn, pissa_qtype type, int64_t rows, int64_t cols) {
    if ((unsigned)type >= PISSA_QTYPE_COUNT) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: unknown qtype %d", fn, (int)type);
    if (rows < 1 || cols < 1 || rows > INT32_MAX || cols > INT32_MAX || rows > (INT64_MAX / 8) / cols ||
        (uint64_t)(rows * cols) > SIZE_MAX / 8)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: bad matrix shape (%lld, %lld)", fn, (long long)rows,
                           (long long)cols);
    return PISSA_OK;
}

size_t pissa__qtype_bytes(pissa_qtype type, int64_t rows, int64_t cols) {
    if ((unsigned)type >= PISSA_QTYPE_COUNT || rows < 0 || cols < 0 || (cols && rows > (INT64_MAX / 8) / cols)) return 0;
    size_t db, ns;
    layout(type, rows, rows * cols, &db, &ns);
    return db + ns * sizeof(float);
}

size_t pissa__qweight_bytes(const pissa__qweight *q) { return pissa__qtype_bytes(q->type, q->rows, q->cols); }

/* Owned storage for TYPE (rows, cols): data first (its size rounded up to 64 bytes), then the scales. */
static pissa_status alloc_owned(const char *fn, pissa__qweight *q, pissa_qtype type, int64_t rows, int64_t cols,
                                void **data, float **scales) {
    size_t db, ns;
    layout(type, rows, rows * cols, &db, &ns);
    size_t off = (db + 63) / 64 * 64;
    unsigned char *p = pissa__alloc(off + ns * sizeof(float), 1);
    if (!p)
        return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory for a (%lld, %lld) %s weight", fn, (long long)rows,
                           (long long)cols, pissa_qtype_name(type));
    *q = (pissa__qweight){.type = type, .rows = rows, .cols = cols, .data = p, .scales = ns ? (float *)(p + off) : NULL,
                          .owned = p};
    *data = p;
    *scales = ns ? (float *)(p + off) : NULL;
    return PISSA_OK;
}

void pissa__qweight_release(pissa__qweight *q) {
    if (!q) return;
    free(q->owned);
    memset(q, 0, sizeof *q);
}

pissa_status pissa__qweight_wrap(pissa__qweight *q, pissa_qtype type, int64_t rows, int64_t cols, const void *data,
                                 const float *scales) {
    if (!q) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa__qweight_wrap: NULL weight");
    memset(q, 0, sizeof *q);
    PISSA_TRY(check_shape("pissa__qweight_wrap", type, rows, cols));
    if (!data || (pissa_qtype_is_quantized(type) != (scales != NULL)))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa__qweight_wrap: %s needs data%s", pissa_qtype_name(type),
                           pissa_qtype_is_quantized(type) ? " and scales" : " and no scales");
    if ((type == PISSA_QTYPE_F32 && (uintptr_t)data % sizeof(float)) || (uintptr_t)scales % sizeof(float))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa__qweight_wrap: %s must be 4-byte aligned",
                           type == PISSA_QTYPE_F32 ? "float32 data" : "the scales");
    *q = (pissa__qweight){.type = type, .rows = rows, .cols = cols, .data = data, .scales = scales, .owned = NULL};
    return PISSA_OK;
}

/* ---- conversion to float32 ------------------------------------------------------------------------------------- */

/* Each converter writes n consecutive elements of row r from column c into dst. The generic versions are the
 * definition; the AVX2 ones compute the same bits (the same products, no FMA). */

static void run_f32(const pissa__qweight *q, int64_t r, int64_t c, int64_t n, float *dst) {
    memcpy(dst, (const float *)q->data + r * q->cols + c, sizeof(float) * (size_t)n);
}

static inline uint16_t load_u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

static void run_16_generic(const pissa__qweight *q, int64_t r, int64_t c, int64_t n, float *dst) {
    const unsigned char *p = (const unsigned char *)q->data + 2 * (r * q->cols + c);
    if (q->type == PISSA_QTYPE_BF16)
        for (int64_t k = 0; k < n; k++) dst[k] = pissa_bf16_to_f32(load_u16(p + 2 * k));
    else
        for (int64_t k = 0; k < n; k++) dst[k] = pissa_f16_to_f32(load_u16(p + 2 * k));
}

static inline float nf4_value(const pissa__qweight *q, int64_t i) {
    uint8_t b = ((const uint8_t *)q->data)[i >> 1];
    return pissa__nf4_levels[i & 1 ? b & 15 : b >> 4] * q->scales[i / PISSA__NF4_BLOCK];
}

static void run_nf4_generic(const pissa__qweight *q, int64_t r, int64_t c, int64_t n, float *dst) {
    int64_t i = r * q->cols + c;
    for (int64_t k = 0; k < n; k++) dst[k] = nf4_value(q, i + k);
}

static void run_int8_generic(const pissa__qweight *q, int64_t r, int64_t c, int64_t n, float *dst) {
    const int8_t *p = (const int8_t *)q->data + r * q->cols + c;
    float a = q->scales[r];
    for (int64_t k = 0; k < n; k++) dst[k] = ((float)p[k] * a) * INT8_INV127;
}

#ifdef QUANT_X86
AVX2 static void run_16_avx2(const pissa__qweight *q, int64_t r, int64_t c, int64_t n, float *dst) {
    const unsigned char *p = (const unsigned char *)q->data + 2 * (r * q->cols + c);
    int64_t k = 0;
    if (q->type == PISSA_QTYPE_BF16) {
        for (; k + 8 <= n; k += 8) { /* bf16 → f32 is the 16 bits shifted into the high half */
            __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * k)));
            _mm256_storeu_ps(dst + k, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
        }
        for (; k < n; k++) dst[k] = pissa_bf16_to_f32(load_u16(p + 2 * k));
    } else {
        for (; k + 8 <= n; k += 8) _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * k))));
        for (; k < n; k++) dst[k] = pissa_f16_to_f32(load_u16(p + 2 * k));
    }
}

/* 16 codes (8 bytes, high nibble first) → levels·absmax: the 16-entry table as two 8-entry vpermps, chosen by
 * bit 3 of the code. */
AVX2 static inline void nf4_16(const uint8_t *bytes, __m256 lo_tab, __m256 hi_tab, __m256 scale, float *dst) {
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m128i raw = _mm_loadl_epi64((const __m128i *)bytes);
    __m128i idx = _mm_unpacklo_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
    __m256i i0 = _mm256_cvtepu8_epi32(idx), i1 = _mm256_cvtepu8_epi32(_mm_srli_si128(idx, 8));
    __m256 v0 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo_tab, i0), _mm256_permutevar8x32_ps(hi_tab, i0),
                                 _mm256_castsi256_ps(_mm256_slli_epi32(i0, 28)));
    __m256 v1 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo_tab, i1), _mm256_permutevar8x32_ps(hi_tab, i1),
                                 _mm256_castsi256_ps(_mm256_slli_epi32(i1, 28)));
    _mm256_storeu_ps(dst, _mm256_mul_ps(v0, scale));
    _mm256_storeu_ps(dst + 8, _mm256_mul_ps(v1, scale));
}

AVX2 static void run_nf4_avx2(const pissa__qweight *q, int64_t r, int64_t c, int64_t n, float *dst) {
    const uint8_t *codes = q->data;
    int64_t i = r * q->cols + c, k = 0;
    for (; k < n && (i + k) % 16; k++) dst[k] = nf4_value(q, i + k); /* to a multiple of 16: whole bytes, one block */
    __m256 lo_tab = _mm256_loadu_ps(pissa__nf4_levels), hi_tab = _mm256_loadu_ps(pissa__nf4_levels + 8);
    for (; k + 16 <= n; k += 16) {
        int64_t e = i + k;
        nf4_16(codes + e / 2, lo_tab, hi_tab, _mm256_set1_ps(q->scales[e / PISSA__NF4_BLOCK]), dst + k);
    }
    for (; k < n; k++) dst[k] = nf4_value(q, i + k);
}

AVX2 static void run_int8_avx2(const pissa__qweight *q, int64_t r, int64_t c, int64_t n, float *dst) {
    const int8_t *p = (const int8_t *)q->data + r * q->cols + c;
    __m256 a = _mm256_set1_ps(q->scales[r]), inv = _mm256_set1_ps(INT8_INV127);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + k))));
        _mm256_storeu_ps(dst + k, _mm256_mul_ps(_mm256_mul_ps(v, a), inv));
    }
    for (; k < n; k++) dst[k] = ((float)p[k] * q->scales[r]) * INT8_INV127;
}
#endif

typedef void (*run_fn)(const pissa__qweight *, int64_t, int64_t, int64_t, float *);

pissa__quant_isa pissa__quant_best_isa(void) {
#ifdef QUANT_X86
    static int avx2 = -1; /* a benign race: every thread computes the same value */
    if (avx2 < 0) { /* F16C from CPUID leaf 1 (clang's __builtin_cpu_supports does not know "f16c") */
        unsigned a, b, c, d;
        avx2 = __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    }
    if (avx2) return PISSA__QUANT_AVX2;
#endif
    return PISSA__QUANT_GENERIC;
}

/* The converter of q's format with the kernels of ISA. */
static run_fn converter_isa(pissa__quant_isa isa, const pissa__qweight *q) {
#ifdef QUANT_X86
    if (isa == PISSA__QUANT_AVX2 && pissa__quant_best_isa() == PISSA__QUANT_AVX2) switch (q->type) {
        case PISSA_QTYPE_F32: return run_f32;
        case PISSA_QTYPE_BF16:
        case PISSA_QTYPE_F16: return run_16_avx2;
        case PISSA_QTYPE_NF4: return run_nf4_avx2;
        case PISSA_QTYPE_INT8: return run_int8_avx2;
        }
#endif
    (void)isa;
    switch (q->type) {
    case PISSA_QTYPE_F32: return run_f32;
    case PISSA_QTYPE_BF16:
    case PISSA_QTYPE_F16: return run_16_generic;
    case PISSA_QTYPE_NF4: return run_nf4_generic;
    case PISSA_QTYPE_INT8: return run_int8_generic;
    }
    return run_f32;
}

static run_fn converter(const pissa__qweight *q) { return converter_isa(pissa__quant_best_isa(), q); }

void pissa__qweight_tile_isa(pissa__quant_isa isa, const pissa__qweight *q, int64_t r0, int64_t r1, int64_t c0,
                             int64_t c1, float *dst, int64_t ld) {
    run_fn run = converter_isa(isa, q);
    for (int64_t r = r0; r < r1; r++) run(q, r, c0, c1 - c0, dst + (r - r0) * ld);
}

void pissa__qweight_tile(const pissa__qweight *q, int64_t r0, int64_t r1, int64_t c0, int64_t c1, float *dst,
                         int64_t ld) {
    pissa__qweight_tile_isa(pissa__quant_best_isa(), q, r0, r1, c0, c1, dst, ld);
}

void pissa__qweight_dequantize(const pissa__qweight *q, int64_t r0, int64_t r1, float *dst) {
    pissa__qweight_tile(q, r0, r1, 0, q->cols, dst, q->cols);
}

/* Elements [i, i + n) of the flattened matrix into dst (across row ends). */
static void read_flat(const pissa__qweight *q, run_fn run, int64_t i, int64_t n, float *dst) {
    while (n > 0) {
        int64_t r = i / q->cols, c = i % q->cols, m = q->cols - c < n ? q->cols - c : n;
        run(q, r, c, m, dst);
        i += m, dst += m, n -= m;
    }
}

/* ---- quantization ---------------------------------------------------------------------------------------------- */

/* First index k < n with x[k] not finite, or -1. */
static int64_t first_nonfinite(const float *x, int64_t n) {
    for (int64_t k = 0; k < n; k++)
        if (!isfinite(x[k])) return k;
    return -1;
}

#define CHUNK 4096 /* elements a 16-bit or F32 target converts at a time */

/* One conversion, split over the kernel threads in contiguous ranges of units: NF4 blocks, INT8 rows, or CHUNKs of
 * elements. Each part records the first flat index it could not store (non-finite, or an F16 overflow). */
typedef struct quant_job {
    const pissa__qweight *src;
    pissa_qtype type;
    void *data;
    float *scales;
    run_fn run;
    int avx2;
    int64_t numel;
    float *rows;                  /* INT8: a row buffer (cols floats) per part */
    int64_t bad[PISSA__PAR_MAX];  /* per part: the first bad flat index, or -1 */
} quant_job;

static void quant_part(void *ctx, int part, int u0, int u1) {
    quant_job *j = ctx;
    const pissa__qweight *src = j->src;
    const int64_t cols = src->cols, numel = j->numel;
    if (j->type == PISSA_QTYPE_NF4) {
        float thr[15], x[PISSA__NF4_BLOCK];
        nf4_thresholds(thr);
        for (int64_t b = u0; b < u1; b++) {
            int64_t i = b * PISSA__NF4_BLOCK;
            int n = numel - i < PISSA__NF4_BLOCK ? (int)(numel - i) : PISSA__NF4_BLOCK;
            read_flat(src, j->run, i, n, x);
            int64_t bad = first_nonfinite(x, n);
            if (bad >= 0) {
                j->bad[part] = i + bad;
                return;
            }
            uint8_t *codes = (uint8_t *)j->data + i / 2;
#ifdef QUANT_X86
            if (j->avx2 && n == PISSA__NF4_BLOCK) {
                nf4_quantize_full_avx2(thr, x, codes, &j->scales[b]);
                continue;
            }
#endif
            nf4_quantize_block(thr, x, n, n < PISSA__NF4_BLOCK, codes, &j->scales[b]);
        }
    } else if (j->type == PISSA_QTYPE_INT8) {
        float *row = j->rows + (size_t)part * (size_t)cols;
        for (int64_t r = u0; r < u1; r++) {
            j->run(src, r, 0, cols, row);
            int64_t bad = first_nonfinite(row, cols);
            if (bad >= 0) {
                j->bad[part] = r * cols + bad;
                return;
            }
            int8_t *q = (int8_t *)j->data + r * cols;
#ifdef QUANT_X86
            if (j->avx2) {
                int8_quantize_row_avx2(row, cols, q, &j->scales[r]);
                continue;
            }
#endif
            int8_quantize_row(row, cols, q, &j->scales[r]);
        }
    } else if (j->type == PISSA_QTYPE_F32) {
        int64_t i0 = (int64_t)u0 * CHUNK, i1 = (int64_t)u1 * CHUNK < numel ? (int64_t)u1 * CHUNK : numel;
        read_flat(src, j->run, i0, i1 - i0, (float *)j->data + i0);
    } else { /* BF16, F16: round to nearest even; F16 refuses what overflows */
        float buf[CHUNK];
        uint16_t *out = j->data;
        for (int64_t i = (int64_t)u0 * CHUNK; i < (int64_t)u1 * CHUNK && i < numel; i += CHUNK) {
            int64_t n = numel - i < CHUNK ? numel - i : CHUNK;
            read_flat(src, j->run, i, n, buf);
            for (int64_t k = 0; k < n; k++) {
                if (j->type == PISSA_QTYPE_BF16) {
                    out[i + k] = pissa_f32_to_bf16(buf[k]);
                } else {
                    out[i + k] = pissa_f32_to_f16(buf[k]);
                    if (isfinite(buf[k]) && (out[i + k] & 0x7c00) == 0x7c00) {
                        j->bad[part] = i + k;
                        return;
                    }
                }
            }
        }
    }
}

pissa_status pissa__qweight_convert(pissa__qweight *q, pissa_qtype type, const pissa__qweight *src) {
    return pissa__qweight_convert_isa(pissa__quant_best_isa(), q, type, src);
}

pissa_status pissa__qweight_convert_isa(pissa__quant_isa isa, pissa__qweight *q, pissa_qtype type,
                                        const pissa__qweight *src) {
    static const char fn[] = "pissa__qweight_convert";
    if (!q || !src || !src->data) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: NULL argument", fn);
    memset(q, 0, sizeof *q);
    PISSA_TRY(check_shape(fn, type, src->rows, src->cols));
    const int64_t rows = src->rows, cols = src->cols, numel = rows * cols;
    int avx2 = isa == PISSA__QUANT_AVX2 && pissa__quant_best_isa() == PISSA__QUANT_AVX2;
    quant_job j = {.src = src, .type = type, .run = converter_isa(avx2 ? isa : PISSA__QUANT_GENERIC, src),
                   .numel = numel, .avx2 = avx2};
    for (int p = 0; p < PISSA__PAR_MAX; p++) j.bad[p] = -1;
    PISSA_TRY(alloc_owned(fn, q, type, rows, cols, &j.data, &j.scales));
    int64_t units = type == PISSA_QTYPE_NF4 ? nf4_blocks(numel) : type == PISSA_QTYPE_INT8 ? rows
                                                                 : (numel + CHUNK - 1) / CHUNK;
    int nthreads = numel < (1 << 16) ? 1 : pissa__par_threads();
    if (type == PISSA_QTYPE_INT8 && !(j.rows = pissa__alloc((size_t)nthreads * (size_t)cols, sizeof(float)))) {
        pissa__qweight_release(q);
        return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", fn);
    }
    pissa__par_for((int)units, nthreads, quant_part, &j);
    free(j.rows);
    int64_t bad = -1;
    for (int p = 0; p < PISSA__PAR_MAX; p++)
        if (j.bad[p] >= 0 && (bad < 0 || j.bad[p] < bad)) bad = j.bad[p];
    if (bad < 0) return PISSA_OK;
    pissa__qweight_release(q);
    float x;
    read_flat(src, j.run, bad, 1, &x);
    if (isfinite(x))
        return pissa__fail(PISSA_ERR_NUMERIC, "%s: element (%lld, %lld) = %g of the (%lld, %lld) weight overflows float16",
                           fn, (long long)(bad / cols), (long long)(bad % cols), (double)x, (long long)rows,
                           (long long)cols);
    return pissa__fail(PISSA_ERR_NUMERIC, "%s: element (%lld, %lld) of the (%lld, %lld) weight is %g: %s cannot store it",
                       fn, (long long)(bad / cols), (long long)(bad % cols), (long long)rows, (long long)cols, (double)x,
                       pissa_qtype_name(type));
}

pissa_status pissa__qweight_quantize(pissa__qweight *q, pissa_qtype type, const float *W, int64_t rows, int64_t cols) {
    pissa__qweight src;
    if (!q) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa__qweight_quantize: NULL weight");
    memset(q, 0, sizeof *q);
    PISSA_TRY(pissa__qweight_wrap(&src, PISSA_QTYPE_F32, rows, cols, W, NULL));
    return pissa__qweight_convert(q, type, &src);
}

/* ---- re-quantization check ------------------------------------------------------------------------------------- */

/* x rounded to STORE and back. */
static void round_to(pissa_dtype store, float *x, int64_t n) {
    if (store == PISSA_BF16)
        for (int64_t k = 0; k < n; k++) x[k] = pissa_bf16_to_f32(pissa_f32_to_bf16(x[k]));
    else if (store == PISSA_F16)
        for (int64_t k = 0; k < n; k++) x[k] = pissa_f16_to_f32(pissa_f32_to_f16(x[k]));
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

pissa_status pissa__qweight_requant_match(const pissa__qweight *q, pissa_dtype store, int64_t *codes_same,
                                          int64_t *codes_total, int64_t *scales_same, int64_t *scales_total) {
    static const char fn[] = "pissa__qweight_requant_match";
    if (!q || !q->data || !codes_same || !codes_total || !scales_same || !scales_total)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (!pissa_qtype_is_quantized(q->type))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: %s is not a quantized format", fn, pissa_qtype_name(q->type));
    if (store != PISSA_F32 && store != PISSA_BF16 && store != PISSA_F16)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: a residual is stored as F32, BF16 or F16, not %s", fn,
                           pissa_dtype_name(store));
    const int64_t rows = q->rows, cols = q->cols, numel = rows * cols;
    run_fn run = converter(q);
    int64_t cs = 0, ss = 0;
    if (q->type == PISSA_QTYPE_NF4) {
        float thr[15], x[PISSA__NF4_BLOCK], absmax;
        uint8_t codes[PISSA__NF4_BLOCK / 2];
        const uint8_t *orig = q->data;
        nf4_thresholds(thr);
        for (int64_t b = 0, i = 0; i < numel; b++, i += PISSA__NF4_BLOCK) {
            int n = numel - i < PISSA__NF4_BLOCK ? (int)(numel - i) : PISSA__NF4_BLOCK;
            read_flat(q, run, i, n, x);
            round_to(store, x, n);
            if (first_nonfinite(x, n) >= 0) continue; /* a value the store dtype cannot hold: nothing reproduced */
            nf4_quantize_block(thr, x, n, n < PISSA__NF4_BLOCK, codes, &absmax);
            for (int k = 0; k < n; k++) {
                int shift = k & 1 ? 0 : 4;
                cs += ((codes[k / 2] >> shift) & 15) == ((orig[(i + k) / 2] >> shift) & 15);
            }
            ss += same_bits(absmax, q->scales[b]);
        }
        *scales_total = nf4_blocks(numel);
    } else {
        float *row = pissa__alloc((size_t)cols, sizeof(float));
        int8_t *qr = pissa__alloc((size_t)cols, 1);
        if (!row || !qr) {
            free(row);
            free(qr);
            return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", fn);
        }
        for (int64_t r = 0; r < rows; r++) {
            float absmax;
            run(q, r, 0, cols, row);
            round_to(store, row, cols);
            if (first_nonfinite(row, cols) >= 0) continue;
            int8_quantize_row(row, cols, qr, &absmax);
            const int8_t *orig = (const int8_t *)q->data + r * cols;
            for (int64_t k = 0; k < cols; k++) cs += qr[k] == orig[k];
            ss += same_bits(absmax, q->scales[r]);
        }
        free(row);
        free(qr);
        *scales_total = rows;
    }
    *codes_same = cs, *codes_total = numel, *scales_same = ss;
    return PISSA_OK;
}
