/* Optimizers (AdamW, SGD with momentum), learning-rate schedules and gradient clipping, as PyTorch and
 * transformers define them (include/pissa/train.h). Element-wise updates run in float32 in the same order of
 * operations as torch's single-tensor kernels; scalars (bias corrections, step sizes) in double, as Python does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pissa/train.h"

pissa_optim_opts pissa_optim_default_opts(void) {
    pissa_optim_opts o = {.kind = PISSA_OPTIM_ADAMW, .lr = 1e-4, .weight_decay = 0, .beta1 = 0.9, .beta2 = 0.999,
                          .eps = 1e-8, .momentum = 0, .dampening = 0, .nesterov = 0};
    return o;
}

pissa_status pissa_optim_kind_parse(const char *s, pissa_optim_kind *out) {
    if (!s || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_optim_kind_parse: NULL argument");
    if (!strcmp(s, "adamw")) return *out = PISSA_OPTIM_ADAMW, PISSA_OK;
    if (!strcmp(s, "sgd")) return *out = PISSA_OPTIM_SGD, PISSA_OK;
    return pissa__fail(PISSA_ERR_INVALID_ARG, "optimizer '%s' is not adamw or sgd", s);
}

struct pissa_optim {
    pissa_optim_opts o;
    size_t n;
    size_t *sizes; // (n)
    float **buf0;  // (n) AdamW exp_avg / SGD momentum buffer, each (sizes[i]); NULL entries for plain SGD
    float **buf1;  // (n) AdamW exp_avg_sq
    float *arena;  // one allocation carved into every buffer
    int64_t t;
};

static pissa_status check_opts(const pissa_optim_opts *o) {
    if (o->kind != PISSA_OPTIM_ADAMW && o->kind != PISSA_OPTIM_SGD)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "optimizer: unknown kind %d", (int)o->kind);
    if (!(o->lr >= 0) || !isfinite(o->lr)) return pissa__fail(PISSA_ERR_INVALID_ARG, "optimizer: lr %g < 0", o->lr);
    if (!(o->weight_decay >= 0) || !isfinite(o->weight_decay))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "optimizer: weight_decay %g < 0", o->weight_decay);
    if (o->kind == PISSA_OPTIM_ADAMW) {
        if (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1))
            return pissa__fail(PISSA_ERR_INVALID_ARG, "AdamW: betas (%g, %g) must lie in [0, 1)", o->beta1, o->beta2);
        if (!(o->eps >= 0)) return pissa__fail(PISSA_ERR_INVALID_ARG, "AdamW: eps %g < 0", o->eps);
    } else {
        if (!(o->momentum >= 0) || !isfinite(o->momentum))
            return pissa__fail(PISSA_ERR_INVALID_ARG, "SGD: momentum %g < 0", o->momentum);
        if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
            return pissa__fail(PISSA_ERR_INVALID_ARG, "SGD: nesterov needs momentum > 0 and dampening 0");
    }
    return PISSA_OK;
}

pissa_status pissa_optim_create(const pissa_optim_opts *opts, size_t n, const size_t *sizes, pissa_optim **out) {
    if (!opts || (!sizes && n) || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_optim_create: NULL argument");
    *out = NULL;
    PISSA_TRY(check_opts(opts));
    int nbuf = opts->kind == PISSA_OPTIM_ADAMW ? 2 : opts->momentum > 0 ? 1 : 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (sizes[i] > SIZE_MAX / 8 - total) return pissa__fail(PISSA_ERR_INVALID_ARG, "optimizer: sizes overflow");
        total += sizes[i];
    }
    pissa_optim *o = pissa__calloc(1, sizeof *o);
    if (o) {
        o->sizes = pissa__alloc(n ? n : 1, sizeof *o->sizes);
        o->buf0 = pissa__calloc(n ? n : 1, sizeof *o->buf0);
        o->buf1 = pissa__calloc(n ? n : 1, sizeof *o->buf1);
        o->arena = nbuf ? pissa__calloc(total * (size_t)nbuf + 1, sizeof(float)) : NULL;
    }
    if (!o || !o->sizes || !o->buf0 || !o->buf1 || (nbuf && !o->arena)) {
        pissa_optim_free(o);
        return pissa__fail(PISSA_ERR_NOMEM, "optimizer: out of memory for the state of %zu floats", total * nbuf);
    }
    o->o = *opts;
    o->n = n;
    float *p = o->arena;
    for (size_t i = 0; i < n; i++) {
        o->sizes[i] = sizes[i];
        if (nbuf >= 1) o->buf0[i] = p, p += sizes[i];
        if (nbuf >= 2) o->buf1[i] = p, p += sizes[i];
    }
    *out = o;
    return PISSA_OK;
}

void pissa_optim_free(pissa_optim *o) {
    if (!o) return;
    free(o->sizes);
    free(o->buf0);
    free(o->buf1);
    free(o->arena);
    free(o);
}

int64_t pissa_optim_steps(const pissa_optim *o) { return o ? o->t : 0; }
void pissa_optim_set_steps(pissa_optim *o, int64_t t) {
    if (o && t >= 0) o->t = t;
}

int pissa_optim_buffers(pissa_optim *o, size_t i, float **buf0, float **buf1) {
    if (!o || i >= o->n) return -1;
    if (buf0) *buf0 = o->buf0[i];
    if (buf1) *buf1 = o->buf1[i];
    return (o->buf0[i] != NULL) + (o->buf1[i] != NULL);
}

/* torch.optim.AdamW, one tensor: decay first (decoupled from the moments), then the bias-corrected step. */
static void adamw_update(float *p, const float *g, float *m, float *v, size_t n, const pissa_optim_opts *o, double lr,
                         int64_t t) {
    const float decay = (float)(1.0 - lr * o->weight_decay);
    const float b1 = (float)o->beta1, b2 = (float)o->beta2, c1 = (float)(1.0 - o->beta1), c2 = (float)(1.0 - o->beta2);
    const double bc1 = 1.0 - pow(o->beta1, (double)t), bc2 = 1.0 - pow(o->beta2, (double)t);
    const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)o->eps;
    for (size_t i = 0; i < n; i++) {
        p[i] *= decay;
        m[i] = m[i] * b1 + c1 * g[i];
        v[i] = v[i] * b2 + c2 * g[i] * g[i];
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] = p[i] - step_size * (m[i] / denom);
    }
}

/* torch.optim.SGD, one tensor: L2 weight decay enters the gradient; the momentum buffer starts as the gradient. */
static void sgd_update(float *p, const float *g, float *buf, size_t n, const pissa_optim_opts *o, double lr,
                       int64_t t) {
    const float wd = (float)o->weight_decay, mu = (float)o->momentum, damp = (float)(1.0 - o->dampening);
    const float nlr = (float)-lr;
    for (size_t i = 0; i < n; i++) {
        float d = o->weight_decay != 0 ? g[i] + wd * p[i] : g[i];
        if (buf) {
            buf[i] = t == 1 ? d : buf[i] * mu + damp * d;
            d = o->nesterov ? d + mu * buf[i] : buf[i];
        }
        p[i] = p[i] + nlr * d;
    }
}

pissa_status pissa_optim_step(pissa_optim *o, float *const *params, const float *const *grads, double lr) {
    if (!o || (o->n && (!params || !grads)))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_optim_step: NULL argument");
    if (!(lr >= 0) || !isfinite(lr)) return pissa__fail(PISSA_ERR_INVALID_ARG, "optimizer: learning rate %g", lr);
    for (size_t i = 0; i < o->n; i++)
        if (!params[i] || !grads[i]) return pissa__fail(PISSA_ERR_INVALID_ARG, "optimizer: tensor %zu is NULL", i);
    int64_t t = ++o->t;
    for (size_t i = 0; i < o->n; i++) {
        if (o->o.kind == PISSA_OPTIM_ADAMW)
            adamw_update(params[i], grads[i], o->buf0[i], o->buf1[i], o->sizes[i], &o->o, lr, t);
        else sgd_update(params[i], grads[i], o->buf0[i], o->sizes[i], &o->o, lr, t);
    }
    return PISSA_OK;
}

/* ---- schedules (transformers.optimization) ---- */

pissa_status pissa_schedule_parse(const char *s, pissa_schedule *out) {
    if (!s || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_schedule_parse: NULL argument");
    if (!strcmp(s, "constant")) return *out = PISSA_SCHEDULE_CONSTANT, PISSA_OK;
    if (!strcmp(s, "linear")) return *out = PISSA_SCHEDULE_LINEAR, PISSA_OK;
    if (!strcmp(s, "cosine")) return *out = PISSA_SCHEDULE_COSINE, PISSA_OK;
    return pissa__fail(PISSA_ERR_INVALID_ARG, "schedule '%s' is not constant, linear or cosine", s);
}

static double max1(int64_t x) { return x > 1 ? (double)x : 1.0; }

double pissa_schedule_factor(pissa_schedule s, int64_t k, int64_t warmup, int64_t total) {
    if (k < warmup) return (double)k / max1(warmup);
    switch (s) {
    case PISSA_SCHEDULE_CONSTANT: return 1.0;
    case PISSA_SCHEDULE_LINEAR: return fmax(0.0, (double)(total - k) / max1(total - warmup));
    case PISSA_SCHEDULE_COSINE: {
        double progress = (double)(k - warmup) / max1(total - warmup); /* num_cycles = 0.5: half a cosine */
        return fmax(0.0, 0.5 * (1.0 + cos(M_PI * 2.0 * 0.5 * progress)));
    }
    }
    return 1.0;
}

/* ---- clipping (torch.nn.utils.clip_grad_norm_) ---- */

pissa_status pissa_clip_grad_norm(float *const *grads, const size_t *sizes, size_t n, double max_norm, double *norm) {
    if ((!grads || !sizes) && n) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_clip_grad_norm: NULL argument");
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < sizes[i]; j++) ss += (double)grads[i][j] * grads[i][j];
    double total = sqrt(ss);
    if (norm) *norm = total;
    if (!isfinite(total)) return pissa__fail(PISSA_ERR_NUMERIC, "gradient norm is %s", isnan(total) ? "nan" : "inf");
    if (max_norm > 0) {
        double coef = max_norm / (total + 1e-6);
        if (coef < 1.0) {
            const float c = (float)coef;
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < sizes[i]; j++) grads[i][j] *= c;
        }
    }
    return PISSA_OK;
}
