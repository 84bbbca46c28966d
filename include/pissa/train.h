/* libpissa — training: optimizers (AdamW, SGD with momentum), learning-rate schedules with warm-up, gradient
 * clipping by global norm, and a trainer that runs deterministic, resumable fine-tuning of a model's adapters, or
 * of all its weights (full fine-tuning, pissa_model_set_full_finetune).
 *
 * The optimizers and schedules follow PyTorch and transformers exactly (checked against them in test_train):
 *   AdamW    torch.optim.AdamW: p ← p·(1 − lr·wd); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
 *            p ← p − lr/(1 − β1^t) · m / (√v/√(1 − β2^t) + eps)            (t = 1, 2, ... the update count)
 *   SGD      torch.optim.SGD: g ← g + wd·p; b ← g at t = 1, else μ·b + (1 − dampening)·g;
 *            g ← g + μ·b (nesterov) or b; p ← p − lr·g                      (μ = 0: plain SGD, no buffer)
 *   schedule transformers' get_{constant,linear,cosine}_schedule_with_warmup: lr(k) = lr·λ(k) for the k-th update
 *            (k = 0, 1, ...): λ = k/warmup during warm-up (so the first update has lr 0 when warmup > 0), then
 *            1 (constant), (total − k)/(total − warmup) (linear, floored at 0) or
 *            ½(1 + cos(π·(k − warmup)/(total − warmup))) (cosine, floored at 0).
 *   clipping torch.nn.utils.clip_grad_norm_: n = ‖all gradients‖₂; c = max/(n + 1e-6); if c < 1, every gradient ×= c.
 * See docs/training.md. */
#ifndef PISSA_TRAIN_H
#define PISSA_TRAIN_H

#include "common.h"
#include "data.h"
#include "model.h"
#include "peft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- optimizers ---- */

/* Pinned values. */
typedef enum pissa_optim_kind { PISSA_OPTIM_ADAMW = 0, PISSA_OPTIM_SGD = 1 } pissa_optim_kind;

typedef struct pissa_optim_opts {
    pissa_optim_kind kind; /* default ADAMW */
    double lr;             /* peak learning rate (default 1e-4) */
    double weight_decay;   /* default 0 (transformers' Trainer default; torch's AdamW default is 0.01) */
    double beta1, beta2, eps; /* AdamW: 0.9, 0.999, 1e-8 */
    double momentum, dampening; /* SGD: 0, 0 */
    int nesterov;               /* SGD: 0 */
} pissa_optim_opts;

PISSA_API pissa_optim_opts pissa_optim_default_opts(void);
/* "adamw" or "sgd". */
PISSA_API pissa_status pissa_optim_kind_parse(const char *s, pissa_optim_kind *out);

/* Optimizer state for N parameter tensors of SIZES[i] floats: AdamW's exp_avg and exp_avg_sq, or SGD's momentum
 * buffer (none when momentum is 0), all float32 and zero at creation. Caller frees with pissa_optim_free. */
typedef struct pissa_optim pissa_optim;
PISSA_API pissa_status pissa_optim_create(const pissa_optim_opts *opts, size_t n, const size_t *sizes,
                                          pissa_optim **out);
PISSA_API void pissa_optim_free(pissa_optim *o); /* NULL is a no-op */
/* One update of every tensor with learning rate LR: PARAMS[i] (SIZES[i]) updated in place from GRADS[i]. */
PISSA_API pissa_status pissa_optim_step(pissa_optim *o, float *const *params, const float *const *grads, double lr);
/* Updates done so far (t). */
PISSA_API int64_t pissa_optim_steps(const pissa_optim *o);
/* State buffers of tensor I (SIZES[I] floats each), borrowed and writable (to restore a saved state):
 * AdamW: buf0 = exp_avg, buf1 = exp_avg_sq; SGD: buf0 = momentum buffer (NULL without momentum), buf1 = NULL.
 * Returns the number of buffers (0, 1 or 2), or -1 if I is out of range. */
PISSA_API int pissa_optim_buffers(pissa_optim *o, size_t i, float **buf0, float **buf1);
/* Sets the update count t (restoring a saved state). */
PISSA_API void pissa_optim_set_steps(pissa_optim *o, int64_t t);

/* ---- schedules ---- */

typedef enum pissa_schedule { PISSA_SCHEDULE_CONSTANT = 0, PISSA_SCHEDULE_LINEAR = 1, PISSA_SCHEDULE_COSINE = 2 }
    pissa_schedule;
/* "constant", "linear" or "cosine". */
PISSA_API pissa_status pissa_schedule_parse(const char *s, pissa_schedule *out);
/* λ(k) of the k-th update (k from 0) for WARMUP warm-up updates out of TOTAL (see the top of this file). */
PISSA_API double pissa_schedule_factor(pissa_schedule s, int64_t k, int64_t warmup, int64_t total);

/* ---- gradient clipping ---- */

/* Global L2 norm of the N gradients GRADS[i] (SIZES[i] floats), computed in double, into *NORM (may be NULL).
 * If MAX_NORM > 0 and c = MAX_NORM / (norm + 1e-6) < 1, scales every gradient by c. A NaN or Inf norm
 * returns PISSA_ERR_NUMERIC and leaves the gradients untouched. */
PISSA_API pissa_status pissa_clip_grad_norm(float *const *grads, const size_t *sizes, size_t n, double max_norm,
                                            double *norm);

/* ---- the trainer ---- */

typedef struct pissa_train_opts {
    pissa_optim_opts optim;
    pissa_schedule schedule; /* default CONSTANT */
    int64_t warmup;          /* warm-up updates (default 0) */
    int64_t total_steps;     /* updates the schedule spans (required, >= 1) */
    int batch;               /* rows per micro-batch (default 8) */
    int accum;               /* micro-batches per update (default 1) */
    int64_t seq;             /* T of every micro-batch: rows are padded (ignored labels) or cut to T;
                                0 (default) = the longest row of the training set */
    double max_grad_norm;    /* clip the global gradient norm to this; 0 = no clipping (default 1.0, as HF) */
    uint64_t seed;           /* row order (a permutation per epoch) and dropout masks (default 0) */
    int shuffle;             /* 1 (default): a new permutation each epoch; 0: rows in file order */
} pissa_train_opts;

PISSA_API pissa_train_opts pissa_train_default_opts(void);

/* What one update did. */
typedef struct pissa_step_info {
    int64_t step;     /* updates done, including this one (1 for the first) */
    double loss;      /* mean cross-entropy over the update's targets (all K micro-batches) */
    double lr;        /* learning rate used */
    double grad_norm; /* global gradient norm before clipping */
    int64_t tokens;   /* targets (non-ignored labels) in the update */
    int64_t epoch;    /* epoch of the next row to be read (0-based) */
} pissa_step_info;

typedef struct pissa_trainer pissa_trainer;

/* A trainer for the trainable parameters of M (pissa_model_param: its adapters' A and B, or every weight after
 * pissa_model_set_full_finetune; PISSA_ERR_INVALID_ARG if there are none) on the rows of DATA. A DATA with no rows,
 * or with no targets (every label after a row's first position -100), is refused (PISSA_ERR_INVALID_ARG). M and DATA
 * are borrowed and must outlive the trainer; M's adapters or mode must not change meanwhile.
 * Weight decay (opts->optim.weight_decay) applies, as in transformers' Trainer, to every matrix but not to the
 * 1-D RMSNorm weights (two torch-style parameter groups; adapters are all matrices). Caller frees with
 * pissa_trainer_free. */
PISSA_API pissa_status pissa_trainer_create(pissa_model *m, const pissa_dataset *data, const pissa_train_opts *opts,
                                            pissa_trainer **out);
PISSA_API void pissa_trainer_free(pissa_trainer *t); /* NULL is a no-op */

/* One update: K = accum micro-batches of `batch` rows (the next rows of the current permutation, continuing into
 * the next epoch when one ends), forward and backward in training mode, gradients weighted by each micro-batch's
 * share of the targets (so K micro-batches give the gradient of one batch of K·batch rows), clipping, one
 * optimizer update at the scheduled learning rate. A NaN or Inf loss or gradient norm returns PISSA_ERR_NUMERIC
 * before any parameter changes; the trainer then refuses further steps. INFO may be NULL. */
PISSA_API pissa_status pissa_trainer_step(pissa_trainer *t, pissa_step_info *info);
/* Updates done so far. */
PISSA_API int64_t pissa_trainer_steps(const pissa_trainer *t);

/* Mean cross-entropy over every non-ignored target of D (token-weighted over the whole set), in evaluation mode
 * (no dropout), `batch` rows at a time with T = the longest row of D (as pissa-eval does). COUNT may be NULL.
 * A D with no rows or no targets is refused (PISSA_ERR_INVALID_ARG): there is no loss to report. */
PISSA_API pissa_status pissa_trainer_evaluate(pissa_trainer *t, const pissa_dataset *d, double *loss,
                                              int64_t *count);

/* Writes the model's adapters as a PEFT folder (pissa_model_save_adapter, float32; each file replaced atomically,
 * and the config does not change during a run, so the folder is always a consistent adapter). In full mode,
 * writes the whole model instead: pissa_model_save in float32 (config.json + model.safetensors). */
PISSA_API pissa_status pissa_trainer_save(const pissa_trainer *t, const char *dir);
/* The same with an explicit adapter config (r, lora_alpha, target_modules, ... from CFG): e.g. a PiSSA adapter
 * saved next to its residual model, with init_lora_weights "true". Refused in full mode. */
PISSA_API pissa_status pissa_trainer_save_peft(const pissa_trainer *t, const pissa_peft_config *cfg, const char *dir);

/* Training state in DIR (created): DIR/state.safetensors (every trainable tensor — each adapter's A and B, or in
 * full mode every weight — and the optimizer buffers: 3x the model in full mode) and
 * DIR/state.json (update count, epoch, position in the epoch's permutation, seed, and the options that must agree
 * on resume), each written atomically, the tensors first; both record the update count, so a torn pair is
 * detected on load. */
PISSA_API pissa_status pissa_trainer_save_state(const pissa_trainer *t, const char *dir);
/* Restores a state written by pissa_trainer_save_state for the same model, adapters (or full mode), data set size
 * and options (batch, accum, seq, seed, shuffle, optimizer kind; PISSA_ERR_INVALID_ARG naming the one that
 * differs). The run
 * then continues exactly as the uninterrupted one would: same rows, dropout masks, learning rates and updates. */
PISSA_API pissa_status pissa_trainer_load_state(pissa_trainer *t, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
