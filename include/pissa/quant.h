/* libpissa — storage formats of a frozen base weight (see docs/quantization.md).
 *
 * A frozen linear weight W (out, in) can be kept in memory as
 *   F32   float32 as is;
 *   BF16  bfloat16, F16  IEEE half: 16-bit values (used straight from a file mapping when the checkpoint stores them);
 *   NF4   4-bit NormalFloat exactly as bitsandbytes stores it (quantize_4bit(W, blocksize=64, quant_type="nf4")):
 *         W flattened row-major, blocks of 64, a float32 absmax per block, each value mapped to the nearest of
 *         the 16 NF4 levels, two codes per byte (first element in the high nibble);
 *   INT8  symmetric per output row as bitsandbytes' int8_vectorwise_quant: q = round(x·127/absmax_row),
 *         round half to even.
 * Adapters, gradients and optimizer state stay float32 whatever the base format. */
#ifndef PISSA_QUANT_H
#define PISSA_QUANT_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pinned values. */
typedef enum pissa_qtype {
    PISSA_QTYPE_F32 = 0,
    PISSA_QTYPE_BF16 = 1,
    PISSA_QTYPE_F16 = 2,
    PISSA_QTYPE_NF4 = 3,
    PISSA_QTYPE_INT8 = 4,
} pissa_qtype;
#define PISSA_QTYPE_COUNT 5

/* "f32", "bf16", "f16", "nf4", "int8" (also float32, bfloat16, float16, half; case-insensitive). */
PISSA_API pissa_status pissa_qtype_parse(const char *s, pissa_qtype *out);
/* The lower-case spelling above ("?" for a value out of range). Static storage. */
PISSA_API const char *pissa_qtype_name(pissa_qtype t);
/* Whether the format is a quantization (NF4, INT8), as opposed to a float format. */
PISSA_API int pissa_qtype_is_quantized(pissa_qtype t);
/* OUT (rows, cols) = deq(q(W)): W stored in TYPE and read back as float32, the values a frozen base in TYPE holds (NF4
 * and INT8 refuse NaN and ±Inf, F16 a finite value that overflows). OUT may be W. */
PISSA_API pissa_status pissa_quant_roundtrip(pissa_qtype type, const float *W, int64_t rows, int64_t cols, float *out);

#ifdef __cplusplus
}
#endif
#endif
