/* libpissa — float32 tensors and storage dtypes.
 *
 * A pissa_tensor is a row-major float32 array with up to PISSA_MAX_DIMS dimensions and one of three
 * ownerships:
 *   OWNED   the tensor allocated its buffer and frees it;
 *   VIEW    the buffer belongs to the caller (or to another tensor) and must outlive the view;
 *   MAPPED  the buffer lies inside a read-only file mapping (F32 safetensors data, zero copy); the
 *           tensor holds a reference to the mapping, so it stays valid after the file handle is freed.
 * MAPPED tensors are read-only: writing through pissa_tensor_data() of one is undefined. */
#ifndef PISSA_TENSOR_H
#define PISSA_TENSOR_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Storage dtypes: every safetensors dtype, so any checkpoint can be read and copied. Only F32, F16 and
 * BF16 convert to and from float32. Pinned values. */
typedef enum pissa_dtype {
    PISSA_F32 = 0, PISSA_F16 = 1, PISSA_BF16 = 2, PISSA_F64 = 3,
    PISSA_I64 = 4, PISSA_I32 = 5, PISSA_I16 = 6, PISSA_I8 = 7,
    PISSA_U64 = 8, PISSA_U32 = 9, PISSA_U16 = 10, PISSA_U8 = 11,
    PISSA_BOOL = 12, PISSA_F8_E4M3 = 13, PISSA_F8_E5M2 = 14,
    PISSA_DTYPE_COUNT = 15
} pissa_dtype;

PISSA_API size_t pissa_dtype_size(pissa_dtype dt);      /* bytes per element (0 for an invalid value) */
PISSA_API const char *pissa_dtype_name(pissa_dtype dt); /* safetensors spelling: "F32", "BF16", "I64", ... */
PISSA_API int pissa_dtype_is_float(pissa_dtype dt);     /* 1 for F32, F16, BF16: the dtypes weights may use */
/* Accepts the safetensors names and, for the float dtypes, the usual aliases:
 * f32/float32/float, f16/float16/half, bf16/bfloat16 (case-insensitive). */
PISSA_API pissa_status pissa_dtype_parse(const char *s, pissa_dtype *out);

/* Element conversion. to_f32 is exact; from_f32 rounds to nearest even (NaN stays NaN, overflow to Inf). */
PISSA_API float pissa_f16_to_f32(uint16_t h);
PISSA_API uint16_t pissa_f32_to_f16(float f);
PISSA_API float pissa_bf16_to_f32(uint16_t h);
PISSA_API uint16_t pissa_f32_to_bf16(float f);
/* n elements of F32, F16 or BF16 (else PISSA_ERR_UNSUPPORTED); the stored side need not be aligned
 * (little-endian byte order, as on disk). */
PISSA_API pissa_status pissa_convert_to_f32(float *dst, const void *src, pissa_dtype src_dtype, size_t n);
PISSA_API pissa_status pissa_convert_from_f32(void *dst, const float *src, pissa_dtype dst_dtype, size_t n);

#define PISSA_MAX_DIMS 4

typedef enum pissa_ownership { PISSA_OWNED = 0, PISSA_VIEW = 1, PISSA_MAPPED = 2 } pissa_ownership;

typedef struct pissa_tensor pissa_tensor;

/* New zero-filled OWNED tensor. Caller frees with pissa_tensor_free. */
PISSA_API pissa_status pissa_tensor_create(int ndim, const int64_t *shape, pissa_tensor **out);
/* New VIEW of caller memory (n = product of shape floats). The memory must outlive the tensor.
 * Caller frees the handle with pissa_tensor_free (the memory is not touched). */
PISSA_API pissa_status pissa_tensor_wrap(float *data, int ndim, const int64_t *shape, pissa_tensor **out);
/* New OWNED copy of any tensor. */
PISSA_API pissa_status pissa_tensor_clone(const pissa_tensor *t, pissa_tensor **out);
/* Frees the handle (and the buffer if OWNED; drops the mapping reference if MAPPED). NULL is a no-op. */
PISSA_API void pissa_tensor_free(pissa_tensor *t);

PISSA_API float *pissa_tensor_data(const pissa_tensor *t); /* borrowed, valid while t lives */
PISSA_API int pissa_tensor_ndim(const pissa_tensor *t);
PISSA_API int64_t pissa_tensor_dim(const pissa_tensor *t, int i); /* i < 0 counts from the end */
PISSA_API int64_t pissa_tensor_numel(const pissa_tensor *t);
PISSA_API pissa_ownership pissa_tensor_ownership(const pissa_tensor *t);
/* Reinterpret the shape (same number of elements). */
PISSA_API pissa_status pissa_tensor_reshape(pissa_tensor *t, int ndim, const int64_t *shape);

/* C = alpha * op(A) * op(B) + beta * C for 2-D tensors, op(X) = X or Xᵀ, through cblas_sgemm.
 * Shapes: op(A) (m, k), op(B) (k, n), C (m, n); C must not be MAPPED. */
PISSA_API pissa_status pissa_matmul(pissa_tensor *C, const pissa_tensor *A, int trans_a, const pissa_tensor *B,
                                    int trans_b, float alpha, float beta);

/* Frobenius norm, accumulated in double. */
PISSA_API double pissa_tensor_norm(const pissa_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
