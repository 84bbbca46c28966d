/* Frozen products from a pissa__qweight (see quant.h): W is converted to float32 one tile at a time into per-thread
 * scratch right before the sgemm that reads it.
 *
 *   forward   out (N, OC) = inp (N, C)·Wᵀ: thread t owns rows [o0, o1) of W (columns of out); for each tile of
 *             PISSA__QTILE_ROWS rows × PISSA__QTILE_K columns of W: out[:, rows] (+)= inp[:, cols]·tileᵀ.
 *   backward  dinp (N, C) += dout (N, OC)·W: thread t owns columns [c0, c1) of W (columns of dinp); for each tile of
 *             PISSA__QTILE_K rows × PISSA__QTILE_ROWS columns of W: dinp[:, cols] += dout[:, rows]·tile.
 * The reduction runs in slabs of PISSA__QTILE_K (sgemm's own K blocking is of the same order, so the output's
 * extra read-modify-write per slab costs little), and the tile (512 KB) stays in L2 between its conversion and
 * sgemm's packing of it. F32 weights need no conversion: one sgemm per thread over its range, as ops.c.
 * Measured choice: docs/benchmarks.md, "Frozen products from a quantized or 16-bit base". */
#include <cblas.h>
#include <stdint.h>

#include "parallel.h"
#include "quant.h"

#define TILE_FLOATS ((size_t)PISSA__QTILE_ROWS * PISSA__QTILE_K)
/* Work is split in units of this many rows (or columns) of W, so threads' ranges start on cache lines. */
#define UNIT 16

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

size_t pissa__qmatmul_scratch_floats(int nthreads) {
    if (nthreads < 1) nthreads = 1;
    return (size_t)nthreads * TILE_FLOATS + 16; /* + 16: room to align to 64 bytes */
}

typedef struct qmm_job {
    float *y;                /* out (N, OC) or dinp (N, C) */
    const float *x;          /* inp (N, C) or dout (N, OC) */
    const pissa__qweight *w; /* (OC, C) */
    float *scratch;          /* 64-byte aligned, TILE_FLOATS per part */
    int N;
    int overwrite;           /* backward: the first slab overwrites dinp */
} qmm_job;

static void forward_part(void *ctx, int part, int u0, int u1) {
    const qmm_job *j = ctx;
    const pissa__qweight *w = j->w;
    const int64_t OC = w->rows, C = w->cols;
    float *buf = j->scratch + (size_t)part * TILE_FLOATS;
    int64_t o_end = min64((int64_t)u1 * UNIT, OC);
    if (w->type == PISSA_QTYPE_F32) { /* nothing to convert: one sgemm over the thread's rows, as ops.c */
        int64_t o = (int64_t)u0 * UNIT;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->N, (int)(o_end - o), (int)C, 1.0f, j->x, (int)C,
                    (const float *)w->data + o * C, (int)C, 0.0f, j->y + o, (int)OC);
        return;
    }
    for (int64_t o = (int64_t)u0 * UNIT; o < o_end; o += PISSA__QTILE_ROWS) {
        int64_t ow = min64(PISSA__QTILE_ROWS, o_end - o);
        for (int64_t k = 0; k < C; k += PISSA__QTILE_K) {
            int64_t kw = min64(PISSA__QTILE_K, C - k);
            pissa__qweight_tile(w, o, o + ow, k, k + kw, buf, kw); /* (ow, kw) */
            /* out[:, o:o+ow] (+)= inp[:, k:k+kw]·tileᵀ */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->N, (int)ow, (int)kw, 1.0f, j->x + k, (int)C, buf,
                        (int)kw, k == 0 ? 0.0f : 1.0f, j->y + o, (int)OC);
        }
    }
}

static void backward_part(void *ctx, int part, int u0, int u1) {
    const qmm_job *j = ctx;
    const pissa__qweight *w = j->w;
    const int64_t OC = w->rows, C = w->cols;
    float *buf = j->scratch + (size_t)part * TILE_FLOATS;
    int64_t c_end = min64((int64_t)u1 * UNIT, C);
    if (w->type == PISSA_QTYPE_F32) {
        int64_t c = (int64_t)u0 * UNIT;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->N, (int)(c_end - c), (int)OC, 1.0f, j->x, (int)OC,
                    (const float *)w->data + c, (int)C, j->overwrite ? 0.0f : 1.0f, j->y + c, (int)C);
        return;
    }
    for (int64_t c = (int64_t)u0 * UNIT; c < c_end; c += PISSA__QTILE_ROWS) {
        int64_t cw = min64(PISSA__QTILE_ROWS, c_end - c);
        for (int64_t k = 0; k < OC; k += PISSA__QTILE_K) {
            int64_t kw = min64(PISSA__QTILE_K, OC - k);
            pissa__qweight_tile(w, k, k + kw, c, c + cw, buf, cw); /* (kw, cw) */
            /* dinp[:, c:c+cw] (+)= dout[:, k:k+kw]·tile */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->N, (int)cw, (int)kw, 1.0f, j->x + k, (int)OC, buf,
                        (int)cw, k == 0 && j->overwrite ? 0.0f : 1.0f, j->y + c, (int)C);
        }
    }
}

static float *aligned(float *p) {
    uintptr_t a = (uintptr_t)p;
    return (float *)(a + (64 - a % 64) % 64);
}

/* Runs FN over the units of W's output dimension (OUT_DIM rows or columns) on at most NTHREADS threads; below
 * ~1M multiply-adds, one thread (as ops.c's gemm). */
static void run(void (*fn)(void *, int, int, int), qmm_job *j, int nthreads, int64_t out_dim) {
    const pissa__qweight *w = j->w;
    if (nthreads < 1 || (double)j->N * (double)w->rows * (double)w->cols < 1e6) nthreads = 1;
    j->scratch = aligned(j->scratch);
    pissa__par_for((int)((out_dim + UNIT - 1) / UNIT), nthreads, fn, j);
}

void pissa__qmatmul_forward(float *out, float *scratch, int nthreads, const float *inp, const pissa__qweight *w,
                            int N) {
    if (N <= 0) return;
    qmm_job j = {.y = out, .x = inp, .w = w, .scratch = scratch, .N = N, .overwrite = 1};
    run(forward_part, &j, nthreads, w->rows);
}

void pissa__qmatmul_backward(float *dinp, float *scratch, int nthreads, const float *dout, const pissa__qweight *w,
                             int N, unsigned fresh) {
    if (N <= 0) return;
    qmm_job j = {.y = dinp, .x = dout, .w = w, .scratch = scratch, .N = N, .overwrite = fresh & 1};
    run(backward_part, &j, nthreads, w->cols);
}
