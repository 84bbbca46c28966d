/* QPiSSA initialisation (GraphPKU/PiSSA utils/init_qpissa.py) and the PiSSA repo's quantization error metric
 * (calculate_quantization_error.py); see include/pissa/adapter.h for the recurrence. The SVDs and the adapter
 * factors come from pissa_adapter_init, the residual from pissa_adapter_residual, the quantization from quant.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

/* Σ of W's singular values (out, in), in double. */
static pissa_status nuclear_norm(const float *E, int64_t out, int64_t in, double *nuc) {
    int64_t k = out < in ? out : in;
    float *S = pissa__alloc((size_t)k, sizeof(float));
    if (!S) return pissa__fail(PISSA_ERR_NOMEM, "nuclear norm: out of memory");
    pissa_status st = pissa_singular_values(E, out, in, S);
    double sum = 0.0;
    for (int64_t i = 0; st == PISSA_OK && i < k; i++) sum += (double)S[i];
    free(S);
    if (st == PISSA_OK) *nuc = sum;
    return st;
}

/* E = W − deq(q(X)) (X may be W), then E −= scale·B·A when r > 0. */
static pissa_status quant_error_matrix(const float *W, const float *X, int64_t out, int64_t in, pissa_qtype qtype,
                                       int64_t r, const float *A, const float *B, double scale, float *E) {
    pissa__qweight q;
    PISSA_TRY(pissa__qweight_quantize(&q, qtype, X, out, in));
    pissa__qweight_dequantize(&q, 0, out, E);
    pissa__qweight_release(&q);
    size_t n = (size_t)(out * in);
    for (size_t i = 0; i < n; i++) E[i] = W[i] - E[i];
    return r > 0 ? pissa_adapter_residual(E, out, in, r, A, B, scale, E) : PISSA_OK;
}

pissa_status pissa_quant_error(const float *W, const float *W_res, int64_t out, int64_t in, pissa_qtype qtype,
                               int64_t r, const float *A, const float *B, double scale, double *nuc_adapted,
                               double *nuc_base) {
    static const char fn[] = "pissa_quant_error";
    if (!W || !W_res || !nuc_adapted) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (!A || !B) r = 0;
    if (out < 1 || in < 1 || r < 0 || (uint64_t)out * (uint64_t)in > SIZE_MAX / sizeof(float))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: bad shape W (%lld, %lld), r=%lld", fn, (long long)out,
                           (long long)in, (long long)r);
    float *E = pissa__alloc((size_t)(out * in), sizeof(float)); /* (out, in) */
    if (!E) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory for W (%lld, %lld)", fn, (long long)out, (long long)in);
    pissa_status st = quant_error_matrix(W, W_res, out, in, qtype, r, A, B, scale, E);
    if (st == PISSA_OK) st = nuclear_norm(E, out, in, nuc_adapted);
    if (st == PISSA_OK && nuc_base) st = quant_error_matrix(W, W, out, in, qtype, 0, NULL, NULL, 0.0, E);
    if (st == PISSA_OK && nuc_base) st = nuclear_norm(E, out, in, nuc_base);
    free(E);
    return st;
}

static pissa_status stats_of(const float *W, const float *W_res, int64_t out, int64_t in, const pissa__qweight *Q,
                             pissa_dtype store, int64_t r, const float *A, const float *B, double s,
                             pissa_qpissa_stats *stats) {
    size_t n = (size_t)(out * in);
    float *stored = pissa__alloc(n, sizeof(float)); /* (out, in): W_res as the checkpoint holds it */
    if (!stored) return pissa__fail(PISSA_ERR_NOMEM, "pissa_qpissa_init: out of memory for the statistics");
    pissa_status st = PISSA_OK;
    if (store == PISSA_F32) {
        memcpy(stored, W_res, n * sizeof(float));
    } else {
        uint16_t *h = (uint16_t *)stored; /* rounded into the first half, then widened in place from the end: */
                                          /* stored[i] overwrites h[2i], h[2i + 1], already read */
        st = pissa_convert_from_f32(h, W_res, store, n);
        for (size_t i = n; st == PISSA_OK && i-- > 0;)
            stored[i] = store == PISSA_BF16 ? pissa_bf16_to_f32(h[i]) : pissa_f16_to_f32(h[i]);
    }
    memset(stats, 0, sizeof *stats);
    if (st == PISSA_OK)
        st = pissa_quant_error(W, stored, out, in, Q->type, r, A, B, s, &stats->nuc_qpissa, &stats->nuc_qlora);
    free(stored);
    if (st != PISSA_OK) return st;
    stats->err_reduction = stats->nuc_qlora > 0 ? 1.0 - stats->nuc_qpissa / stats->nuc_qlora : 0.0;
    if (!pissa_qtype_is_quantized(Q->type)) { /* a float format: its "codes" are its values */
        stats->codes_same = stats->codes_total = (int64_t)n;
        return PISSA_OK;
    }
    return pissa__qweight_requant_match(Q, store, &stats->codes_same, &stats->codes_total, &stats->scales_same,
                                        &stats->scales_total);
}

static pissa_status check_args(const char *fn, const float *W, int64_t out, int64_t in, const pissa_init_opts *opts,
                               pissa_qtype qtype, int qiter, const float *A, const float *B) {
    if (!W || !opts || !A || !B) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (opts->kind != PISSA_INIT_PISSA && opts->kind != PISSA_INIT_PISSA_NITER)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: init kind %d is not pissa or pissa_niter_N", fn, (int)opts->kind);
    if ((unsigned)qtype >= PISSA_QTYPE_COUNT)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: unknown qtype %d", fn, (int)qtype);
    if (qiter < 1) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: qiter %d must be >= 1", fn, qiter);
    if (out < 1 || in < 1 || (uint64_t)out * (uint64_t)in > SIZE_MAX / sizeof(float))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: bad weight shape (%lld, %lld)", fn, (long long)out,
                           (long long)in);
    return PISSA_OK;
}

/* The rounds: RES (out, in) ends as deq(Q), Q (owned) as q(W − s·B·A) of the last round. */
static pissa_status rounds(const float *W, int64_t out, int64_t in, const pissa_init_opts *opts, pissa_qtype qtype,
                           int qiter, float *A, float *B, float *res, pissa__qweight *Q) {
    const int64_t r = opts->rank;
    const double s = pissa_lora_scale(opts->alpha, r, opts->use_rslora);
    const size_t n = (size_t)(out * in);
    pissa_status st = PISSA_OK;
    memmove(res, W, n * sizeof(float));
    for (int t = 0; t < qiter && st == PISSA_OK; t++) {
        st = pissa_adapter_init(res, out, in, opts, A, B, NULL); /* SVD of res: s·B·A = U_r·S_r·V_rᵀ */
        if (st == PISSA_OK) st = pissa_adapter_residual(W, out, in, r, A, B, s, res); /* res = W − s·B·A */
        pissa__qweight_release(Q);
        if (st == PISSA_OK) st = pissa__qweight_quantize(Q, qtype, res, out, in); /* Q = q(W − s·B·A) */
        if (st != PISSA_OK) break;
        pissa__qweight_dequantize(Q, 0, out, res); /* res = deq(Q) */
        if (t + 1 < qiter)
            for (size_t i = 0; i < n; i++) res[i] = W[i] - res[i]; /* what the next SVD sees */
    }
    if (st != PISSA_OK) pissa__qweight_release(Q);
    return st;
}

pissa_status pissa__qpissa(const float *W, int64_t out, int64_t in, const pissa_init_opts *opts, pissa_qtype qtype,
                           int qiter, float *A, float *B, pissa__qweight *Q) {
    static const char fn[] = "QPiSSA";
    if (Q) memset(Q, 0, sizeof *Q);
    PISSA_TRY(check_args(fn, W, out, in, opts, qtype, qiter, A, B));
    if (!Q) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: NULL argument", fn);
    float *res = pissa__alloc((size_t)(out * in), sizeof(float)); /* (out, in) */
    if (!res) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory for W (%lld, %lld)", fn, (long long)out, (long long)in);
    pissa_status st = rounds(W, out, in, opts, qtype, qiter, A, B, res, Q);
    free(res);
    return st;
}

pissa_status pissa_qpissa_init(const float *W, int64_t out, int64_t in, const pissa_init_opts *opts, pissa_qtype qtype,
                               int qiter, pissa_dtype store, float *A, float *B, float *W_res,
                               pissa_qpissa_stats *stats) {
    static const char fn[] = "pissa_qpissa_init";
    PISSA_TRY(check_args(fn, W, out, in, opts, qtype, qiter, A, B));
    if (W_res == W) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: W_res must not alias W (every round reads W)", fn);
    if (store != PISSA_F32 && store != PISSA_BF16 && store != PISSA_F16)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: the residual is stored as F32, BF16 or F16, not %s", fn,
                           pissa_dtype_name(store));
    float *res = W_res ? W_res : pissa__alloc((size_t)(out * in), sizeof(float)); /* (out, in) */
    if (!res) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory for W (%lld, %lld)", fn, (long long)out, (long long)in);
    pissa__qweight Q = {0};
    pissa_status st = rounds(W, out, in, opts, qtype, qiter, A, B, res, &Q);
    if (st == PISSA_OK && stats)
        st = stats_of(W, res, out, in, &Q, store, opts->rank, A, B,
                      pissa_lora_scale(opts->alpha, opts->rank, opts->use_rslora), stats);
    pissa__qweight_release(&Q);
    if (res != W_res) free(res);
    return st;
}
