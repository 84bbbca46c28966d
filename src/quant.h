/* Internal: a frozen weight matrix in one of the pissa_qtype formats, its conversion to float32, and the frozen
 * products of a linear layer computed from it (docs/quantization.md has the formats and the rules in full).
 *
 * Formats of a (rows, cols) row-major matrix W; element i = r·cols + c of the flattened matrix:
 *   F32   data: float (rows, cols).
 *   BF16  data: uint16 (rows, cols), bfloat16 bits; to float32 is exact (a 16-bit shift).
 *   F16   data: uint16 (rows, cols), IEEE binary16 bits; to float32 is exact.
 *   NF4   data: uint8 (⌈rows·cols / 2⌉): element i's code in byte i/2, the HIGH nibble for even i, the low one for
 *         odd i (with an odd count the last low nibble is padding, code 7); scales: float (⌈rows·cols / 64⌉), the
 *         absmax of each block of 64 consecutive elements (the last block may be shorter).
 *         dequantized: pissa__nf4_levels[code] · absmax[i / 64], one float32 multiplication.
 *   INT8  data: int8 (rows, cols); scales: float (rows), each row's absmax.
 *         dequantized: (q · absmax[r]) · (float)(1/127), two float32 multiplications, as bitsandbytes'
 *         int8_vectorwise_dequant (A · stats · 7.874015718698502e-3).
 * Quantization (pissa__qweight_quantize), exactly the rules of bitsandbytes' own CPU kernels (bitsandbytes/backends/
 * default/ops.py, quantize_4bit and int8_vectorwise_quant, at commit 95f9af30); all arithmetic float32:
 *   NF4   block b of 64 (a full block): a = max|x|, stored as is; s = x · (1 / max(a, 1e-38f)).
 *         The last block when rows·cols % 64 != 0: a = max(max|x|, 1e-38f), stored CLAMPED; s = x / a (a
 *         division, not the reciprocal's product: bitsandbytes computes the short block so).
 *         code = the number of thresholds t_j < s, t_j = (level_j + level_{j+1}) / 2 in float32 (j = 0..14): the
 *         nearest level, a tie (s exactly on a midpoint) going to the LOWER level. These midpoints are
 *         bitsandbytes' dQuantizeNF4 decision constants (csrc/kernels.cu), which also send ties down.
 *         An all-zero block gets codes 7 (level 0) and absmax 0 (1e-38f if it is the short last block).
 *   INT8  a = max|x| over the row, stored as is; k = 127 / a (float32 division); q = rint(x · k) with round half to
 *         EVEN (torch.round; CUDA's __float2int_rn), clamped to [-127, 127]; x · k NaN (a zero row: 0 · ∞) gives 0.
 *         A row whose absmax is below 127/FLT_MAX (k = ∞, only denormal rows) thus maps its nonzero values to ±127,
 *         where bitsandbytes' conversion of ±∞ to int8 is undefined.
 *   NF4 and INT8 refuse NaN and ±Inf (PISSA_ERR_NUMERIC naming the element). BF16 and F16 round to nearest even
 *   (pissa_f32_to_bf16 / pissa_f32_to_f16); F16 refuses a finite value that overflows to ±Inf.
 * bitsandbytes' CUDA kernel quantizes the same way except that it multiplies by a fast-math reciprocal (so a value
 * within an ulp of a midpoint may land on the other side), flushes denormals, and codes an all-zero block 0
 * (level −1, dequantized to −0); both dequantize to the same values otherwise. */
#ifndef PISSA_QUANT_INTERNAL_H
#define PISSA_QUANT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define PISSA__NF4_BLOCK 64

/* The 16 NF4 levels, ascending (bitsandbytes get_4bit_type("nf4"); level 7 is 0, level 15 is 1). */
extern const float pissa__nf4_levels[16];

/* A frozen (rows, cols) matrix. A zeroed struct is empty (release is a no-op on it). The fields are read by the
 * kernels directly; treat them as read-only. */
typedef struct pissa__qweight {
    pissa_qtype type;
    int64_t rows, cols;
    const void *data;     /* see the formats above */
    const float *scales;  /* NF4 (⌈rows·cols/64⌉) or INT8 (rows); NULL for F32, BF16, F16 */
    void *owned;          /* the single allocation holding data and scales when owned; NULL when borrowed */
} pissa__qweight;

/* Quantizes W (rows, cols) float32 into the format TYPE (any of the five; F32 copies). q is OWNED: release it with
 * pissa__qweight_release. On failure q is left empty. */
pissa_status pissa__qweight_quantize(pissa__qweight *q, pissa_qtype type, const float *W, int64_t rows, int64_t cols);
/* The same from any pissa__qweight SRC (e.g. a borrowed BF16 one over a file mapping), an NF4 block, an INT8 row or
 * a chunk at a time, split over the kernel threads (the same bytes for any thread count): no float32 copy of the
 * whole matrix is made. q is OWNED. */
pissa_status pissa__qweight_convert(pissa__qweight *q, pissa_qtype type, const pissa__qweight *src);
/* BORROWED: q describes DATA (and SCALES for NF4/INT8, else NULL) laid out as above, which must outlive q and stay
 * unchanged (e.g. 16-bit weights inside a file mapping). 16-bit and 8-bit data may have any alignment; float32 data
 * and scales must be 4-byte aligned. Release is then a no-op apart from emptying q. */
pissa_status pissa__qweight_wrap(pissa__qweight *q, pissa_qtype type, int64_t rows, int64_t cols, const void *data,
                                 const float *scales);
/* Frees what q owns and empties q. An empty q is a no-op. */
void pissa__qweight_release(pissa__qweight *q);

/* Bytes of data + scales (what the format costs in memory, owned or not). */
size_t pissa__qweight_bytes(const pissa__qweight *q);
/* Bytes of data + scales for a (rows, cols) matrix in TYPE (0 on overflow). */
size_t pissa__qtype_bytes(pissa_qtype type, int64_t rows, int64_t cols);

/* The conversion kernels: PISSA__QUANT_GENERIC (plain C, the definition) or PISSA__QUANT_AVX2 (AVX2 + F16C, the
 * same bits), the best the CPU runs being used unless a test asks for another. */
typedef enum pissa__quant_isa { PISSA__QUANT_GENERIC = 0, PISSA__QUANT_AVX2 = 1 } pissa__quant_isa;
pissa__quant_isa pissa__quant_best_isa(void);
/* pissa__qweight_tile with the given kernels (an ISA the CPU lacks falls back to GENERIC). */
void pissa__qweight_tile_isa(pissa__quant_isa isa, const pissa__qweight *q, int64_t r0, int64_t r1, int64_t c0,
                             int64_t c1, float *dst, int64_t ld);

/* pissa__qweight_convert with the given kernels (tests). */
pissa_status pissa__qweight_convert_isa(pissa__quant_isa isa, pissa__qweight *q, pissa_qtype type,
                                        const pissa__qweight *src);

/* Rows [r0, r1) dequantized into dst (r1 − r0, cols) float32. 0 <= r0 <= r1 <= rows (not checked). */
void pissa__qweight_dequantize(const pissa__qweight *q, int64_t r0, int64_t r1, float *dst);
/* The tile rows [r0, r1) × columns [c0, c1) into dst (r1 − r0, c1 − c0) with row stride ld (not checked). */
void pissa__qweight_tile(const pissa__qweight *q, int64_t r0, int64_t r1, int64_t c0, int64_t c1, float *dst,
                         int64_t ld);

/* Re-quantization check of a written residual. The official QPiSSA recipe writes deq(q) in the checkpoint's dtype
 * STORE (F32, BF16 or F16); loading it back into q's format quantizes it again. Counts, over every code and every
 * scale of q (NF4 or INT8), how many that second quantization reproduces exactly (codes equal; scales bitwise
 * equal). *codes_total and *scales_total receive the counts compared (rows·cols and the number of scales). */
pissa_status pissa__qweight_requant_match(const pissa__qweight *q, pissa_dtype store, int64_t *codes_same,
                                          int64_t *codes_total, int64_t *scales_same, int64_t *scales_total);

/* ---- frozen products of a linear layer from a pissa__qweight W (OC, C) ----
 * As src/ops.h: no allocation, float32 row-major activations, N rows of tokens. W is converted to float32 a tile
 * (at most PISSA__QTILE_ROWS × PISSA__QTILE_K floats) at a time into per-thread scratch, right before the sgemm that
 * reads it, so the tile is still in L2 when OpenBLAS packs it; F32 weights are read in place (one sgemm per thread,
 * no tiles). Work is split over at most NTHREADS threads of the kernel pool (parallel.h): forward by rows of W
 * (columns of out), backward by columns of W (columns of dinp), so no two threads write the same element. The
 * result differs from one sgemm on the dequantized W only by the order of float32 summation over C (forward) or OC
 * (backward), which runs in slabs of PISSA__QTILE_K. scratch may be NULL for an F32 weight. */
#define PISSA__QTILE_K 256      /* the reduction slab (columns of W forward, rows of W backward) */
#define PISSA__QTILE_ROWS 512   /* output columns per tile: a tile is 512 × 256 floats = 512 KB */

size_t pissa__qmatmul_scratch_floats(int nthreads);
/* out = inp·Wᵀ (overwritten). */
void pissa__qmatmul_forward(float *out,                 /* (N, OC) */
                            float *scratch,             /* pissa__qmatmul_scratch_floats(nthreads) */
                            int nthreads,               /* at most this many threads (scratch is sized for them) */
                            const float *inp,           /* (N, C) */
                            const pissa__qweight *w,    /* (OC, C) */
                            int N);
/* dinp += dout·W, or dinp = dout·W when bit 0 of fresh is set (ops.h's convention). */
void pissa__qmatmul_backward(float *dinp,               /* (N, C) */
                             float *scratch,            /* pissa__qmatmul_scratch_floats(nthreads) */
                             int nthreads,
                             const float *dout,         /* (N, OC) */
                             const pissa__qweight *w,   /* (OC, C) */
                             int N, unsigned fresh);

/* QPiSSA (pissa_qpissa_init's rounds) with the last round's Q = q(W − s·B·A) kept in QTYPE's format (OWNED, empty
 * on failure): the frozen residual of a model whose base is QTYPE. A (r, in), B (out, r) as pissa_qpissa_init. */
pissa_status pissa__qpissa(const float *W, int64_t out, int64_t in, const pissa_init_opts *opts, pissa_qtype qtype,
                           int qiter, float *A, float *B, pissa__qweight *Q);

#endif
