/* libpissa — initialisation of one LoRA/PiSSA adapter for one linear weight, exactly as Hugging Face PEFT
 * does it (see docs/api.md and docs/api.md).
 *
 * Weight W (out, in) row-major, y = x·Wᵀ. Rank r, alpha α, scale s = α/r (or α/√r with rsLoRA).
 * The adapted layer computes y = x·W_resᵀ + s·(x·Aᵀ)·Bᵀ with A (r, in), B (out, r).
 *   LORA      A ~ U(−1/√in, 1/√in) (kaiming_uniform, a = √5), B = 0, W_res = W
 *   GAUSSIAN  A ~ N(0, (1/r)²), B = 0, W_res = W
 *   PISSA     exact SVD W = U·S·Vᵀ; S_r = S[:r]/s; A = diag(√S_r)·Vᵀ[:r]; B = U[:, :r]·diag(√S_r)
 *   PISSA_NITER  the same from the randomized SVD with niter iterations and the given oversampling
 * For every kind W_res = W − s·B·A is computed in float32 from the A and B produced. */
#ifndef PISSA_ADAPTER_H
#define PISSA_ADAPTER_H

#include "common.h"
#include "quant.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pinned values. */
typedef enum pissa_init_kind {
    PISSA_INIT_LORA = 0,
    PISSA_INIT_GAUSSIAN = 1,
    PISSA_INIT_PISSA = 2,
    PISSA_INIT_PISSA_NITER = 3,
} pissa_init_kind;

typedef struct pissa_init_opts {
    pissa_init_kind kind;
    int64_t rank;       /* r >= 1, r <= min(out, in) for the PiSSA kinds */
    double alpha;       /* lora_alpha */
    int use_rslora;     /* scale α/√r instead of α/r */
    int niter;          /* PISSA_NITER only */
    int64_t oversample; /* PISSA_NITER only; 0 reproduces PEFT's torch.svd_lowrank(q=r) */
    uint64_t seed;      /* LORA, GAUSSIAN, PISSA_NITER */
} pissa_init_opts;

/* kind LORA, rank 8, alpha 8, no rsLoRA, niter 4, oversample PISSA_RSVD_DEFAULT_OVERSAMPLE, seed 0. */
PISSA_API pissa_init_opts pissa_init_default_opts(void);

/* Parses PEFT's init_lora_weights spelling: "lora" or "true" (LORA), "gaussian", "pissa",
 * "pissa_niter_N" (N >= 0). Sets kind and niter only. */
PISSA_API pissa_status pissa_init_parse(const char *s, pissa_init_opts *opts);
/* Writes the PEFT spelling of opts (true is written as "true") into buf. */
PISSA_API pissa_status pissa_init_name(const pissa_init_opts *opts, char *buf, size_t size);

/* s = α/r or α/√r. */
PISSA_API double pissa_lora_scale(double alpha, int64_t rank, int use_rslora);

/* Initialise the adapter of W (out, in).
 * A (r, in) and B (out, r) are written. W_res (out, in) receives W − s·B·A; it may alias W (in place) or be
 * NULL when not wanted. Caller owns all buffers. */
PISSA_API pissa_status pissa_adapter_init(const float *W, int64_t out, int64_t in, const pissa_init_opts *opts, float *A,
                                          float *B, float *W_res);

/* W_res = W − s·B·A in float32 (one sgemm). W_res may alias W. */
PISSA_API pissa_status pissa_adapter_residual(const float *W, int64_t out, int64_t in, int64_t r, const float *A,
                                              const float *B, double scale, float *W_res);

/* ---- merge and unmerge ---- */

/* W (out, in) += scale·B·A (merge) or −= scale·B·A (unmerge), in float32 (one sgemm); A (r, in), B (out, r). */
PISSA_API pissa_status pissa_lora_merge(float *W, int64_t out, int64_t in, int64_t r, const float *A, const float *B,
                                        double scale);
PISSA_API pissa_status pissa_lora_unmerge(float *W, int64_t out, int64_t in, int64_t r, const float *A,
                                          const float *B, double scale);

/* ---- QPiSSA: PiSSA on a quantized base, as the official GraphPKU/PiSSA utils/init_qpissa.py does it ----
 * With q the quantization to QTYPE and deq its dequantization (pissa/quant.h, docs/quantization.md), s the scale:
 *   res = W;
 *   T = qiter times:  A, B = the PiSSA adapter of res (the SVD of res, exact or randomized as opts->kind says, with
 *                     S_r / s as pissa_adapter_init; the script's lora_alpha = r gives s = 1 and
 *                     B = U_r·√S_r, A = √S_r·V_rᵀ);
 *                     Q = q(W − s·B·A);  res = W − deq(Q);
 *   W_res = deq(Q) of the last round, and the A, B of the last round.
 * T = 1 quantizes the residual of plain PiSSA. The official recipe writes W_res in the base checkpoint's dtype
 * STORE (F32, BF16 or F16), and loading that checkpoint with a quantized base quantizes it again.
 * opts->kind must be PISSA_INIT_PISSA or PISSA_INIT_PISSA_NITER; QTYPE any pissa_qtype (F32 gives plain PiSSA);
 * qiter >= 1. A (r, in), B (out, r) and W_res (out, in) are caller buffers (W_res may be NULL when not wanted,
 * and must not alias W);
 * STATS may be NULL. With STATS, two more SVDs (singular values only) measure the PiSSA repo's quantization error
 * (calculate_quantization_error.py) of W_res as stored, and how many codes re-quantizing it reproduces. */
typedef struct pissa_qpissa_stats {
    double nuc_qpissa;    /* ‖W − (deq(q(W_res as stored)) + s·B·A)‖_* */
    double nuc_qlora;     /* ‖W − deq(q(W))‖_*: the base error of QLoRA (LoRA on q(W), B = 0) */
    double err_reduction; /* 1 − nuc_qpissa / nuc_qlora: the error reduction against QLoRA (0 when nuc_qlora = 0) */
    int64_t codes_same;   /* codes of q(W_res as stored) equal to Q's, of codes_total (out·in) */
    int64_t codes_total;
    int64_t scales_same;  /* scales (NF4 block absmax, INT8 row absmax) bitwise equal to Q's, of scales_total */
    int64_t scales_total;
} pissa_qpissa_stats;

PISSA_API pissa_status pissa_qpissa_init(const float *W, int64_t out, int64_t in, const pissa_init_opts *opts,
                                         pissa_qtype qtype, int qiter, pissa_dtype store, float *A, float *B,
                                         float *W_res, pissa_qpissa_stats *stats);

/* The PiSSA repo's quantization error of a base W (out, in) replaced by a residual W_res plus an adapter:
 *   *nuc_adapted = ‖W − (deq(q(W_res)) + scale·B·A)‖_*   (A (r, in), B (out, r); r = 0 or A = B = NULL: no adapter)
 *   *nuc_base    = ‖W − deq(q(W))‖_*                       (NULL to skip: it costs one more SVD)
 * nuclear norms from LAPACK's singular values (float32 gesdd), summed in double. W_res is the residual as loaded
 * (the stored values); the reduction against QLoRA is 1 − nuc_adapted / nuc_base. */
PISSA_API pissa_status pissa_quant_error(const float *W, const float *W_res, int64_t out, int64_t in, pissa_qtype qtype,
                                         int64_t r, const float *A, const float *B, double scale, double *nuc_adapted,
                                         double *nuc_base);

#ifdef __cplusplus
}
#endif
#endif
