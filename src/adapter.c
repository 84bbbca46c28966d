/* Initialisation of one LoRA/PiSSA adapter, as Hugging Face PEFT does it (docs/api.md):
 *   V, S, Uh = svd(W); Sr = S[:r] / s; A = diag(√Sr)·Uh[:r]; B = V[:, :r]·diag(√Sr); W_res = W − s·B·A. */
#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

pissa_init_opts pissa_init_default_opts(void) {
    pissa_init_opts o = {.kind = PISSA_INIT_LORA,
                         .rank = 8,
                         .alpha = 8.0,
                         .use_rslora = 0,
                         .niter = 4,
                         .oversample = PISSA_RSVD_DEFAULT_OVERSAMPLE,
                         .seed = 0};
    return o;
}

/* ---- PEFT spellings of init_lora_weights ---------------------------------------------------------------------- */

static const char niter_prefix[] = "pissa_niter_";

pissa_status pissa_init_parse(const char *s, pissa_init_opts *opts) {
    if (!s || !opts) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_init_parse: NULL argument");
    if (strcmp(s, "lora") == 0 || strcmp(s, "true") == 0) return opts->kind = PISSA_INIT_LORA, PISSA_OK;
    if (strcmp(s, "gaussian") == 0) return opts->kind = PISSA_INIT_GAUSSIAN, PISSA_OK;
    if (strcmp(s, "pissa") == 0) return opts->kind = PISSA_INIT_PISSA, PISSA_OK;
    size_t np = sizeof niter_prefix - 1;
    if (strncmp(s, niter_prefix, np) == 0) {
        const char *digits = s + np;
        /* PEFT reads N with int(); we accept plain decimal digits only (no sign, spaces or suffix). */
        size_t nd = strspn(digits, "0123456789");
        errno = 0;
        long v = nd ? strtol(digits, NULL, 10) : -1;
        if (nd == 0 || digits[nd] != '\0' || errno == ERANGE || v > INT_MAX)
            return pissa__fail(PISSA_ERR_INVALID_ARG,
                               "init_lora_weights '%s': expected pissa_niter_N with N a non-negative integer", s);
        opts->kind = PISSA_INIT_PISSA_NITER;
        opts->niter = (int)v;
        return PISSA_OK;
    }
    static const char *peft_only[] = {"false", "olora", "loftq", "eva", "corda"};
    for (size_t i = 0; i < sizeof peft_only / sizeof peft_only[0]; i++)
        if (strcmp(s, peft_only[i]) == 0)
            return pissa__fail(PISSA_ERR_UNSUPPORTED,
                               "init_lora_weights '%s' is a PEFT option libpissa does not implement", s);
    return pissa__fail(PISSA_ERR_INVALID_ARG,
                       "init_lora_weights '%s': expected lora, true, gaussian, pissa or pissa_niter_N", s);
}

pissa_status pissa_init_name(const pissa_init_opts *opts, char *buf, size_t size) {
    if (!opts || !buf) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_init_name: NULL argument");
    int len;
    switch (opts->kind) {
    case PISSA_INIT_LORA: len = snprintf(buf, size, "true"); break;
    case PISSA_INIT_GAUSSIAN: len = snprintf(buf, size, "gaussian"); break;
    case PISSA_INIT_PISSA: len = snprintf(buf, size, "pissa"); break;
    case PISSA_INIT_PISSA_NITER:
        if (opts->niter < 0)
            return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_init_name: niter %d must be >= 0", opts->niter);
        len = snprintf(buf, size, "%s%d", niter_prefix, opts->niter);
        break;
    default: return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_init_name: unknown init kind %d", (int)opts->kind);
    }
    if (len < 0 || (size_t)len >= size)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_init_name: buffer of %zu bytes is too small", size);
    return PISSA_OK;
}

double pissa_lora_scale(double alpha, int64_t rank, int use_rslora) {
    return use_rslora ? alpha / sqrt((double)rank) : alpha / (double)rank;
}

/* ---- initialisation ------------------------------------------------------------------------------------------- */

/* W (out, in) += scale · B (out, r) · A (r, in) in float32, one sgemm: the residual, merge and unmerge. */
static pissa_status add_product(float *W, int64_t out, int64_t in, int64_t r, const float *A, const float *B,
                                double scale, const char *who) {
    if (!W || !A || !B) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: NULL argument", who);
    if (out < 1 || in < 1 || r < 1 || out > INT_MAX || in > INT_MAX || r > INT_MAX)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: bad shape W (%lld, %lld), r=%lld", who, (long long)out,
                           (long long)in, (long long)r);
    if (!isfinite(scale)) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: scale is not finite", who);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)out, (int)in, (int)r, (float)scale, B, (int)r, A,
                (int)in, 1.0f, W, (int)in);
    return PISSA_OK;
}

pissa_status pissa_adapter_residual(const float *W, int64_t out, int64_t in, int64_t r, const float *A,
                                    const float *B, double scale, float *W_res) {
    if (!W || !W_res) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_adapter_residual: NULL argument");
    if (W_res != W && out > 0 && in > 0) memmove(W_res, W, sizeof(float) * (size_t)out * (size_t)in);
    return add_product(W_res, out, in, r, A, B, -scale, "pissa_adapter_residual"); /* W_res = W − s·B·A */
}

pissa_status pissa_lora_merge(float *W, int64_t out, int64_t in, int64_t r, const float *A, const float *B,
                              double scale) {
    return add_product(W, out, in, r, A, B, scale, "pissa_lora_merge");
}

pissa_status pissa_lora_unmerge(float *W, int64_t out, int64_t in, int64_t r, const float *A, const float *B,
                                double scale) {
    return add_product(W, out, in, r, A, B, -scale, "pissa_lora_unmerge");
}

static const char *kind_name(pissa_init_kind k) {
    switch (k) {
    case PISSA_INIT_LORA: return "lora";
    case PISSA_INIT_GAUSSIAN: return "gaussian";
    case PISSA_INIT_PISSA: return "pissa";
    case PISSA_INIT_PISSA_NITER: return "pissa_niter";
    }
    return "?";
}

pissa_status pissa_adapter_init(const float *W, int64_t out, int64_t in, const pissa_init_opts *opts, float *A,
                                float *B, float *W_res) {
    if (!W || !opts || !A || !B) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_adapter_init: NULL argument");
    if (out < 1 || in < 1 || out > INT_MAX || in > INT_MAX)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_adapter_init: bad weight shape (%lld, %lld)", (long long)out,
                           (long long)in);
    const int64_t r = opts->rank;
    const int pissa = opts->kind == PISSA_INIT_PISSA || opts->kind == PISSA_INIT_PISSA_NITER;
    if ((int)opts->kind < (int)PISSA_INIT_LORA || (int)opts->kind > (int)PISSA_INIT_PISSA_NITER)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_adapter_init: unknown init kind %d", (int)opts->kind);
    if (r < 1 || r > INT_MAX || (pissa && r > (out < in ? out : in)))
        return pissa__fail(PISSA_ERR_INVALID_ARG,
                           "pissa_adapter_init (%s): rank r=%lld must be in 1..%s for W (%lld, %lld)",
                           kind_name(opts->kind), (long long)r, pissa ? "min(out, in)" : "INT_MAX", (long long)out,
                           (long long)in);
    const double s = pissa_lora_scale(opts->alpha, r, opts->use_rslora);
    if (!isfinite(s) || (pissa && !(s > 0)))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_adapter_init (%s): scale α=%g over r=%lld%s must be %s",
                           kind_name(opts->kind), opts->alpha, (long long)r, opts->use_rslora ? " (rsLoRA)" : "",
                           pissa ? "positive (PiSSA divides S by it)" : "finite");

    if (!pissa) {
        /* B = 0 and W_res = W: the adapter starts as a no-op. */
        pissa_rng rng;
        pissa__rng_seed(&rng, opts->seed);
        if (opts->kind == PISSA_INIT_LORA) {
            /* kaiming_uniform_(a=√5): gain √(2/(1+5)), bound gain·√(3/in) = 1/√in. */
            double bound = 1.0 / sqrt((double)in);
            for (int64_t i = 0; i < r * in; i++) A[i] = (float)((2.0 * pissa__rng_uniform(&rng) - 1.0) * bound);
        } else {
            for (int64_t i = 0; i < r * in; i++) A[i] = (float)(pissa__rng_normal(&rng) / (double)r);
        }
        memset(B, 0, sizeof(float) * (size_t)(out * r));
        if (W_res && W_res != W) memmove(W_res, W, sizeof(float) * (size_t)out * (size_t)in);
        return PISSA_OK;
    }

    /* The SVD writes U_r straight into B and V_rᵀ into A; only S_r needs a buffer. */
    float *S = pissa__alloc((size_t)r, sizeof(float)); /* (r) */
    if (!S) return pissa__fail(PISSA_ERR_NOMEM, "pissa_adapter_init: out of memory");
    pissa_status st;
    if (opts->kind == PISSA_INIT_PISSA) {
        st = pissa_svd_exact(W, out, in, r, B, S, A);
    } else {
        pissa_rsvd_opts ro = {.oversample = opts->oversample, .niter = opts->niter, .seed = opts->seed};
        st = pissa_svd_randomized(W, out, in, r, &ro, B, S, A);
    }
    if (st != PISSA_OK) {
        free(S);
        return st;
    }
    /* S_r = S[:r] / s in float32, as PEFT's `Sr /= scaling`; A = diag(√S_r)·V_rᵀ, B = U_r·diag(√S_r). */
    for (int64_t j = 0; j < r; j++) S[j] = sqrtf(S[j] / (float)s);
    for (int64_t j = 0; j < r; j++)
        for (int64_t i = 0; i < in; i++) A[j * in + i] *= S[j];
    for (int64_t i = 0; i < out; i++)
        for (int64_t j = 0; j < r; j++) B[i * r + j] *= S[j];
    free(S);
    return W_res ? pissa_adapter_residual(W, out, in, r, A, B, s, W_res) : PISSA_OK;
}
