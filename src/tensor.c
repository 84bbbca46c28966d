/* float32 tensors, storage dtypes and their conversion, file mappings, matmul through cblas. */
#include <cblas.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "parallel.h"

/* ---------------------------------------------------------------------------------------------- */
/* dtypes                                                                                         */

static const struct {
    const char *name;
    size_t size;
} dtype_table[PISSA_DTYPE_COUNT] = {
    [PISSA_F32] = {"F32", 4},  [PISSA_F16] = {"F16", 2},  [PISSA_BF16] = {"BF16", 2},
    [PISSA_F64] = {"F64", 8},  [PISSA_I64] = {"I64", 8},  [PISSA_I32] = {"I32", 4},
    [PISSA_I16] = {"I16", 2},  [PISSA_I8] = {"I8", 1},    [PISSA_U64] = {"U64", 8},
    [PISSA_U32] = {"U32", 4},  [PISSA_U16] = {"U16", 2},  [PISSA_U8] = {"U8", 1},
    [PISSA_BOOL] = {"BOOL", 1}, [PISSA_F8_E4M3] = {"F8_E4M3", 1}, [PISSA_F8_E5M2] = {"F8_E5M2", 1},
};

size_t pissa_dtype_size(pissa_dtype dt) { return (unsigned)dt < PISSA_DTYPE_COUNT ? dtype_table[dt].size : 0; }
const char *pissa_dtype_name(pissa_dtype dt) { return (unsigned)dt < PISSA_DTYPE_COUNT ? dtype_table[dt].name : "?"; }
int pissa_dtype_is_float(pissa_dtype dt) { return dt == PISSA_F32 || dt == PISSA_F16 || dt == PISSA_BF16; }

pissa_status pissa_dtype_parse(const char *s, pissa_dtype *out) {
    if (!s || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dtype_parse: NULL argument");
    static const struct {
        const char *alias;
        pissa_dtype dt;
    } aliases[] = {{"float32", PISSA_F32}, {"float", PISSA_F32},  {"float16", PISSA_F16},
                   {"half", PISSA_F16},    {"bfloat16", PISSA_BF16}};
    for (int i = 0; i < PISSA_DTYPE_COUNT; i++)
        if (strcasecmp(s, dtype_table[i].name) == 0) return *out = (pissa_dtype)i, PISSA_OK;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcasecmp(s, aliases[i].alias) == 0) return *out = aliases[i].dt, PISSA_OK;
    return pissa__fail(PISSA_ERR_INVALID_ARG, "unknown dtype '%s' (expected f32, bf16 or f16)", s);
}

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE half <-> single, exact and round-to-nearest-even (after Maratyszcza's FP16 library). */
float pissa_f16_to_f32(uint16_t h) {
    uint32_t w = (uint32_t)h << 16, sign = w & 0x80000000u, two_w = w + w;
    float normalized = f32_from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    float denormalized = f32_from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
    uint32_t bits = two_w < (1u << 27) ? f32_bits(denormalized) : f32_bits(normalized);
    return f32_from_bits(sign | bits);
}

uint16_t pissa_f32_to_f16(float f) {
    float base = (fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
    uint32_t w = f32_bits(f), shl1_w = w + w, sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = f32_from_bits((bias >> 1) + 0x07800000u) + base;
    uint32_t bits = f32_bits(base);
    uint32_t nonsign = ((bits >> 13) & 0x7C00u) + (bits & 0x0FFFu);
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

float pissa_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t pissa_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

pissa_status pissa_convert_to_f32(float *dst, const void *src, pissa_dtype dt, size_t n) {
    const unsigned char *p = src;
    switch (dt) {
    case PISSA_F32: memcpy(dst, src, n * 4); return PISSA_OK;
    case PISSA_F16:
        for (size_t i = 0; i < n; i++) dst[i] = pissa_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return PISSA_OK;
    case PISSA_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = pissa_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return PISSA_OK;
    default:
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "cannot convert %s to float32", pissa_dtype_name(dt));
    }
}

pissa_status pissa_convert_from_f32(void *dst, const float *src, pissa_dtype dt, size_t n) {
    unsigned char *p = dst;
    uint16_t (*cvt)(float) = dt == PISSA_F16 ? pissa_f32_to_f16 : pissa_f32_to_bf16;
    switch (dt) {
    case PISSA_F32: memcpy(dst, src, n * 4); return PISSA_OK;
    case PISSA_F16:
    case PISSA_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = cvt(src[i]);
            p[2 * i] = (unsigned char)(h & 0xff);
            p[2 * i + 1] = (unsigned char)(h >> 8);
        }
        return PISSA_OK;
    default:
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "cannot convert float32 to %s", pissa_dtype_name(dt));
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* mappings                                                                                       */

void pissa__mapping_drop(const pissa_mapping *m, const void *p, size_t len) {
    if (!m || !m->base || !p || !len) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)p, b = a + len;
    uintptr_t lo = (a + page - 1) / page * page, hi = b / page * page;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

pissa_status pissa__mapping_open(const char *path, pissa_mapping **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pissa__fail(PISSA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return pissa__fail(PISSA_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pissa__fail(PISSA_ERR_IO, "%s: not a regular file", path);
    }
    pissa_mapping *m = calloc(1, sizeof *m);
    if (!m) {
        close(fd);
        return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(m);
            return pissa__fail(PISSA_ERR_IO, "%s: cannot mmap: %s", path, strerror(e));
        }
        m->base = p;
    }
    close(fd);
    atomic_init(&m->refs, 1);
    *out = m;
    return PISSA_OK;
}

void pissa__mapping_retain(pissa_mapping *m) { atomic_fetch_add(&m->refs, 1); }

void pissa__mapping_release(pissa_mapping *m) {
    if (!m) return;
    if (atomic_fetch_sub(&m->refs, 1) == 1) {
        if (m->base) munmap((void *)m->base, m->size);
        free(m);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* tensors                                                                                        */

int64_t pissa__numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] != 0 && n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

static pissa_status tensor_new(int ndim, const int64_t *shape, pissa_tensor **out) {
    if (!out) return pissa__fail(PISSA_ERR_INVALID_ARG, "tensor: NULL output");
    *out = NULL;
    if (ndim < 0 || ndim > PISSA_MAX_DIMS || (ndim > 0 && !shape))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "tensor: ndim %d outside 0..%d", ndim, PISSA_MAX_DIMS);
    int64_t n = pissa__numel(ndim, shape);
    if (n < 0) return pissa__fail(PISSA_ERR_INVALID_ARG, "tensor: negative or overflowing shape");
    pissa_tensor *t = calloc(1, sizeof *t);
    if (!t) return pissa__fail(PISSA_ERR_NOMEM, "tensor: out of memory");
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = n;
    *out = t;
    return PISSA_OK;
}

pissa_status pissa_tensor_create(int ndim, const int64_t *shape, pissa_tensor **out) {
    PISSA_TRY(tensor_new(ndim, shape, out));
    pissa_tensor *t = *out;
    if ((uint64_t)t->numel > SIZE_MAX / sizeof(float) || !(t->data = pissa__calloc((size_t)t->numel, sizeof(float)))) {
        long long n = (long long)t->numel;
        free(t);
        *out = NULL;
        return pissa__fail(PISSA_ERR_NOMEM, "tensor: cannot allocate %lld floats", n);
    }
    t->own = PISSA_OWNED;
    return PISSA_OK;
}

pissa_status pissa_tensor_wrap(float *data, int ndim, const int64_t *shape, pissa_tensor **out) {
    PISSA_TRY(tensor_new(ndim, shape, out));
    (*out)->data = data;
    (*out)->own = PISSA_VIEW;
    return PISSA_OK;
}

pissa_status pissa__tensor_mapped(pissa_mapping *m, const float *data, int ndim, const int64_t *shape,
                                  pissa_tensor **out) {
    PISSA_TRY(tensor_new(ndim, shape, out));
    (*out)->data = (float *)data; /* read-only by contract (header) */
    (*out)->own = PISSA_MAPPED;
    (*out)->map = m;
    pissa__mapping_retain(m);
    return PISSA_OK;
}

pissa_status pissa_tensor_clone(const pissa_tensor *t, pissa_tensor **out) {
    if (!t) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_tensor_clone: NULL tensor");
    PISSA_TRY(pissa_tensor_create(t->ndim, t->shape, out));
    if (t->numel) memcpy((*out)->data, t->data, (size_t)t->numel * sizeof(float));
    return PISSA_OK;
}

void pissa_tensor_free(pissa_tensor *t) {
    if (!t) return;
    if (t->own == PISSA_OWNED) free(t->data);
    if (t->own == PISSA_MAPPED) pissa__mapping_release(t->map);
    free(t);
}

float *pissa_tensor_data(const pissa_tensor *t) { return t ? t->data : NULL; }
int pissa_tensor_ndim(const pissa_tensor *t) { return t ? t->ndim : 0; }
int64_t pissa_tensor_numel(const pissa_tensor *t) { return t ? t->numel : 0; }
pissa_ownership pissa_tensor_ownership(const pissa_tensor *t) { return t ? t->own : PISSA_VIEW; }

int64_t pissa_tensor_dim(const pissa_tensor *t, int i) {
    if (!t) return 0;
    if (i < 0) i += t->ndim;
    return (i >= 0 && i < t->ndim) ? t->shape[i] : 1;
}

pissa_status pissa_tensor_reshape(pissa_tensor *t, int ndim, const int64_t *shape) {
    if (!t || ndim < 0 || ndim > PISSA_MAX_DIMS || (ndim > 0 && !shape))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_tensor_reshape: bad arguments");
    if (pissa__numel(ndim, shape) != t->numel)
        return pissa__fail(PISSA_ERR_SHAPE, "pissa_tensor_reshape: %lld elements cannot take the new shape",
                           (long long)t->numel);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    return PISSA_OK;
}

pissa_status pissa_matmul(pissa_tensor *C, const pissa_tensor *A, int trans_a, const pissa_tensor *B, int trans_b,
                          float alpha, float beta) {
    if (!C || !A || !B) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_matmul: NULL tensor");
    if (A->ndim != 2 || B->ndim != 2 || C->ndim != 2)
        return pissa__fail(PISSA_ERR_SHAPE, "pissa_matmul: tensors must be 2-D (got %d, %d, %d)", A->ndim,
                           B->ndim, C->ndim);
    if (C->own == PISSA_MAPPED) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_matmul: output is read-only (MAPPED)");
    int64_t m = trans_a ? A->shape[1] : A->shape[0], k = trans_a ? A->shape[0] : A->shape[1];
    int64_t kb = trans_b ? B->shape[1] : B->shape[0], n = trans_b ? B->shape[0] : B->shape[1];
    if (k != kb || C->shape[0] != m || C->shape[1] != n)
        return pissa__fail(PISSA_ERR_SHAPE,
                           "pissa_matmul: op(A) is (%lld, %lld), op(B) (%lld, %lld), C (%lld, %lld)", (long long)m,
                           (long long)k, (long long)kb, (long long)n, (long long)C->shape[0], (long long)C->shape[1]);
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX)
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "pissa_matmul: dimension above 2^31 - 1");
    if (m == 0 || n == 0) return PISSA_OK;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m,
                (int)n, (int)k, alpha, A->data, A->shape[1] > 1 ? (int)A->shape[1] : 1, B->data,
                B->shape[1] > 1 ? (int)B->shape[1] : 1, beta, C->data,
                (int)C->shape[1]);
    return PISSA_OK;
}

void pissa_set_num_threads(int n) {
    if (n <= 0) {
        const char *env = getenv("OPENBLAS_NUM_THREADS");
        n = env && atoi(env) > 0 ? atoi(env) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    }
    pissa__blas_set_threads(n > 0 ? n : 1);
}

int pissa_get_num_threads(void) { return pissa__par_threads(); }

double pissa_tensor_norm(const pissa_tensor *t) {
    double s = 0;
    if (t)
        for (int64_t i = 0; i < t->numel; i++) s += (double)t->data[i] * t->data[i];
    return sqrt(s);
}
