/* The trainer: deterministic, resumable fine-tuning of a model's trainable parameters — its adapters, or every
 * weight in full mode (include/pissa/train.h).
 *
 * Everything random is a function of the seed and a position, never of history: epoch e visits the rows in the
 * order pissa_shuffle_indices(seed + e), and micro-batch j of the whole run draws its dropout masks from a
 * generator seeded with dropout_seed(seed) + j. So the training state is just (updates, epoch, position in the
 * permutation) plus the tensors, and a resumed run repeats the uninterrupted one bit for bit.
 *
 * Weight decay follows transformers' Trainer: every matrix decays, the 1-D RMSNorm weights do not. As there, the
 * tensors form two torch-style parameter groups, each with its own optimizer (group 1 with weight_decay 0); the
 * adapters' A and B are all matrices, so adapter training has one group.
 *
 * Data parallelism (a communicator of P processes): every process reads the same rows of the run (so the data
 * position and the target counts need no messages) and runs forward and backward on its slice of each micro-batch,
 * its mean loss weighted by its slice's share of the update's targets; the sum of the processes' gradients is then
 * the one-process gradient, and every process applies the same update to the same parameters. Dropout masks are
 * drawn per row as in the whole micro-batch (model_internal.h pissa__model_set_slice). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "comm_internal.h"
#include "internal.h"
#include "model_internal.h"
#include "peft_internal.h"
#include "pissa/safetensors.h"
#include "pissa/train.h"

#define STATE_TENSORS "state.safetensors"
#define STATE_JSON "state.json"
#define STATE_FORMAT "pissa-train-state"

pissa_train_opts pissa_train_default_opts(void) {
    pissa_train_opts o = {.optim = pissa_optim_default_opts(), .schedule = PISSA_SCHEDULE_CONSTANT, .warmup = 0,
                          .total_steps = 0, .batch = 8, .accum = 1, .seq = 0, .max_grad_norm = 1.0, .seed = 0,
                          .shuffle = 1};
    return o;
}

struct pissa_trainer {
    pissa_model *m;           // borrowed
    const pissa_dataset *data; // borrowed
    pissa_train_opts o;
    int T;                    // tokens per micro-batch row
    size_t rows;              // rows in data
    size_t *perm;             // (rows) order of the current epoch
    int64_t epoch;            // epoch of the next row
    size_t pos;               // index into perm of the next row
    int64_t step;             // updates done
    size_t n;                 // trainable tensors: A and B of every adapter, or every weight (full)
    size_t n_decay;           // the first n_decay of them decay (matrices), the rest do not (1-D norm weights)
    float **params, **grads;  // (n) borrowed from the model, in that order
    size_t *sizes;            // (n)
    char **names;             // (n) "<module>.lora_A" / "<module>.lora_B", or the weights' names
    int full;                 // the model is in full fine-tuning mode
    pissa_optim *opt[2];      // one optimizer per group: tensors [0, n_decay), then [n_decay, n)
    int32_t *ids, *labels;    // (accum, batch, T)
    int32_t *positions;       // (accum, batch, T) position_ids of packed rows, or NULL (the data set is not packed)
    int64_t *counts;          // (accum) targets per micro-batch
    int64_t *mine;            // (accum) ... in this process's slice of it
    int failed;               // a numeric failure stops the run
    pissa_comm *comm;         // borrowed; NULL: one process
    int rank, size;           // this process among the communicator's
    float **spans;            // (n_spans) the gradients as contiguous runs of memory, summed across processes
    size_t *span_len, n_spans; // (n_spans) floats in each
};

static uint64_t dropout_seed(uint64_t seed) { return seed ^ 0xd1b54a32d192ed03ULL; }

static void new_epoch_order(pissa_trainer *t) {
    if (t->o.shuffle) pissa_shuffle_indices(t->perm, t->rows, t->o.seed + (uint64_t)t->epoch);
    else
        for (size_t i = 0; i < t->rows; i++) t->perm[i] = i;
}

void pissa_trainer_free(pissa_trainer *t) {
    if (!t) return;
    for (size_t i = 0; t->names && i < t->n; i++) free(t->names[i]);
    free(t->names);
    free(t->perm);
    free(t->params);
    free(t->grads);
    free(t->sizes);
    pissa_optim_free(t->opt[0]);
    pissa_optim_free(t->opt[1]);
    free(t->ids);
    free(t->labels);
    free(t->positions);
    free(t->counts);
    free(t->mine);
    free(t->spans);
    free(t->span_len);
    free(t);
}

static pissa_status check_opts(const pissa_train_opts *o, const pissa_model *m) {
    if (o->total_steps < 1)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: total_steps %lld must be >= 1", (long long)o->total_steps);
    if (o->warmup < 0) return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: warmup %lld < 0", (long long)o->warmup);
    if (o->batch < 1 || o->accum < 1)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: batch %d and accum %d must be >= 1", o->batch, o->accum);
    if (o->seq < 0 || o->seq == 1 || o->seq > pissa_model_config(m)->max_position_embeddings)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: seq %lld must be 0 or in [2, max_position_embeddings %lld]",
                           (long long)o->seq, (long long)pissa_model_config(m)->max_position_embeddings);
    if (!(o->max_grad_norm >= 0))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: max_grad_norm %g < 0", o->max_grad_norm);
    if (o->schedule != PISSA_SCHEDULE_CONSTANT && o->schedule != PISSA_SCHEDULE_LINEAR &&
        o->schedule != PISSA_SCHEDULE_COSINE)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: unknown schedule %d", (int)o->schedule);
    return PISSA_OK;
}

typedef struct span {
    float *p;
    size_t n;
} span;

static int span_cmp(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const span *)a)->p, y = (uintptr_t)((const span *)b)->p;
    return x < y ? -1 : x > y;
}

/* The gradients as contiguous runs of memory, what is summed across processes: the model keeps them in one arena,
 * so normally one run, one message per update. */
static pissa_status gradient_spans(pissa_trainer *t) {
    span *s = pissa__alloc(t->n, sizeof *s);
    t->spans = pissa__alloc(t->n, sizeof *t->spans);
    t->span_len = pissa__alloc(t->n, sizeof *t->span_len);
    if (!s || !t->spans || !t->span_len) {
        free(s);
        return pissa__fail(PISSA_ERR_NOMEM, "trainer: out of memory");
    }
    for (size_t i = 0; i < t->n; i++) s[i] = (span){t->grads[i], t->sizes[i]};
    qsort(s, t->n, sizeof *s, span_cmp);
    t->n_spans = 0;
    for (size_t i = 0; i < t->n; i++) {
        size_t j = t->n_spans;
        if (j && t->spans[j - 1] + t->span_len[j - 1] == s[i].p) t->span_len[j - 1] += s[i].n;
        else t->spans[j] = s[i].p, t->span_len[j] = s[i].n, t->n_spans++;
    }
    free(s);
    return PISSA_OK;
}

static pissa_status create_local(pissa_model *m, const pissa_dataset *data, const pissa_train_opts *opts,
                                 pissa_trainer **out) {
    PISSA_TRY(check_opts(opts, m));
    size_t n = pissa_model_param_count(m), rows = pissa_dataset_count(data);
    if (!n)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: the model has nothing to train (add adapters, or set "
                           "full fine-tuning)");
    if (!rows) return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: the training set has no rows");
    int64_t T = opts->seq ? opts->seq : pissa_dataset_max_len(data);
    if (T > pissa_model_config(m)->max_position_embeddings)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: rows of %lld tokens exceed max_position_embeddings %lld "
                           "(set seq to cut them)", (long long)T,
                           (long long)pissa_model_config(m)->max_position_embeddings);
    if (T < 2) return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: rows of one token have no targets");
    if (!pissa_dataset_target_count(data, T))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: the training set's %zu rows have no targets (every label "
                           "after a row's first position is -100): nothing to learn", rows);
    pissa_trainer *t = pissa__calloc(1, sizeof *t);
    if (!t) return pissa__fail(PISSA_ERR_NOMEM, "trainer: out of memory");
    t->m = m;
    t->data = data;
    t->o = *opts;
    t->T = (int)T;
    t->rows = rows;
    t->n = n;
    t->full = pissa_model_full_finetune(m);
    size_t cells = (size_t)opts->accum * (size_t)opts->batch * (size_t)T;
    t->perm = pissa__alloc(rows, sizeof *t->perm);
    t->params = pissa__calloc(t->n, sizeof *t->params);
    t->grads = pissa__calloc(t->n, sizeof *t->grads);
    t->sizes = pissa__calloc(t->n, sizeof *t->sizes);
    t->names = pissa__calloc(t->n, sizeof *t->names);
    t->ids = pissa__alloc(cells, sizeof *t->ids);
    t->labels = pissa__alloc(cells, sizeof *t->labels);
    t->positions = pissa_dataset_is_packed(data) ? pissa__alloc(cells, sizeof *t->positions) : NULL;
    t->counts = pissa__calloc((size_t)opts->accum, sizeof *t->counts);
    t->mine = pissa__calloc((size_t)opts->accum, sizeof *t->mine);
    t->size = 1;
    pissa_status st = PISSA_OK;
    if (!t->perm || !t->params || !t->grads || !t->sizes || !t->names || !t->ids || !t->labels || !t->counts ||
        !t->mine || (pissa_dataset_is_packed(data) && !t->positions))
        st = pissa__fail(PISSA_ERR_NOMEM, "trainer: out of memory for batches of %zu tokens", cells);
    size_t k = 0; /* the model's parameters, matrices first (pass 0), then the 1-D ones (pass 1) */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) t->n_decay = k;
        for (size_t i = 0; st == PISSA_OK && i < n; i++) {
            pissa_param_view v;
            if ((st = pissa_model_param(m, i, &v)) != PISSA_OK) break;
            if ((v.ndim == 1) != pass) continue;
            if (!(t->names[k] = pissa__strdup(v.name))) {
                st = pissa__fail(PISSA_ERR_NOMEM, "trainer: out of memory");
                break;
            }
            if (!v.grad) st = pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: parameter %s has no gradient", v.name);
            t->params[k] = v.data, t->grads[k] = v.grad, t->sizes[k] = (size_t)(v.rows * v.cols);
            k++;
        }
    }
    pissa_optim_opts no_decay = opts->optim;
    no_decay.weight_decay = 0;
    size_t nd = t->n_decay;
    if (st == PISSA_OK) st = pissa_optim_create(&opts->optim, nd, t->sizes, &t->opt[0]);
    if (st == PISSA_OK) st = pissa_optim_create(&no_decay, n - nd, t->sizes + nd, &t->opt[1]);
    if (st == PISSA_OK) st = gradient_spans(t);
    if (st != PISSA_OK) {
        pissa_trainer_free(t);
        return st;
    }
    new_epoch_order(t);
    *out = t;
    return PISSA_OK;
}

/* Fingerprint of every row of D (lengths, ids, labels, packed positions). */
static uint64_t data_fingerprint(const pissa_dataset *d) {
    size_t rows = pissa_dataset_count(d);
    uint64_t h = pissa__fingerprint(PISSA__FP_SEED, &rows, sizeof rows);
    for (size_t i = 0; i < rows; i++) {
        pissa_row r;
        if (pissa_dataset_row(d, i, &r) != PISSA_OK) continue;
        h = pissa__fingerprint(h, &r.len, sizeof r.len);
        h = pissa__fingerprint(h, r.input_ids, sizeof *r.input_ids * (size_t)r.len);
        h = pissa__fingerprint(h, r.labels, sizeof *r.labels * (size_t)r.len);
        if (r.position_ids) h = pissa__fingerprint(h, r.position_ids, sizeof *r.position_ids * (size_t)r.len);
    }
    return h;
}

/* Every process must run the same training: options, data and initial trainable tensors. A mistake there (one node
 * with another data file, another seed) would not fail, it would train something else; compare fingerprints. */
static pissa_status check_same_run(const pissa_trainer *t) {
    const pissa_train_opts *o = &t->o;
    const double real[] = {o->optim.lr,        o->optim.weight_decay, o->optim.beta1, o->optim.beta2,
                           o->optim.eps,       o->optim.momentum,     o->optim.dampening, o->max_grad_norm};
    const int64_t whole[] = {o->optim.kind, o->optim.nesterov, o->schedule, o->warmup,  o->total_steps, o->batch,
                             o->accum,      t->T,              (int64_t)o->seed, o->shuffle, t->full, (int64_t)t->n};
    uint64_t h[3];
    h[0] = pissa__fingerprint(pissa__fingerprint(PISSA__FP_SEED, real, sizeof real), whole, sizeof whole);
    h[0] = pissa__fingerprint(h[0], t->sizes, sizeof *t->sizes * t->n);
    h[1] = data_fingerprint(t->data);
    h[2] = PISSA__FP_SEED;
    for (size_t i = 0; i < t->n; i++) h[2] = pissa__fingerprint(h[2], t->params[i], sizeof(float) * t->sizes[i]);
    int other[3];
    PISSA_TRY(pissa__comm_compare_u64(t->comm, h, 3, other));
    if (other[0] >= 0)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: rank %d of %d has other training options than rank 0 "
                           "(every process must pass the same pissa_train_opts, and the same mode: adapters or full)",
                           other[0], t->size);
    if (other[1] >= 0)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: rank %d of %d has other training data than rank 0 (rows, "
                           "token ids or labels): every process must load the same data set", other[1], t->size);
    if (other[2] >= 0)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "trainer: rank %d of %d starts from other trainable tensors than "
                           "rank 0 (adapters, or the weights in full mode): every process must load the same model and "
                           "adapters, with the same seed", other[2], t->size);
    return PISSA_OK;
}

pissa_status pissa_trainer_create(pissa_model *m, const pissa_dataset *data, const pissa_train_opts *opts,
                                  pissa_trainer **out) {
    return pissa_trainer_create_comm(m, data, opts, NULL, out);
}

pissa_status pissa_trainer_create_comm(pissa_model *m, const pissa_dataset *data, const pissa_train_opts *opts,
                                       pissa_comm *comm, pissa_trainer **out) {
    if (!out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_trainer_create: NULL argument");
    *out = NULL;
    pissa_trainer *t = NULL;
    pissa_status st = m && data && opts ? create_local(m, data, opts, &t)
                                        : pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_trainer_create: NULL argument");
    st = pissa_comm_agree(comm, st, NULL); /* one process's bad option or lack of memory ends every one */
    if (st == PISSA_OK && comm) {
        t->comm = comm;
        t->rank = pissa_comm_rank(comm);
        t->size = pissa_comm_size(comm);
        st = check_same_run(t);
    }
    if (st != PISSA_OK) {
        pissa_trainer_free(t);
        return st;
    }
    *out = t;
    return PISSA_OK;
}

int64_t pissa_trainer_steps(const pissa_trainer *t) { return t ? t->step : 0; }

/* Row R into one (T) slot: cut to T, padded with ignored labels (and, for a packed row into POS, positions that go
 * on counting); returns the targets it holds under the HF shift (labels at positions 1..T-1 that are not ignored,
 * and in a packed row not at the start of one of its sequences, which the model ignores). */
static int64_t fill_row(const pissa_row *r, int T, int32_t *ids, int32_t *labels, int32_t *pos) {
    int64_t len = r->len < T ? r->len : T, count = 0;
    if (len > 0) { /* a padding row past the end has no arrays (memcpy from NULL is undefined even for 0 bytes) */
        memcpy(ids, r->input_ids, sizeof *ids * (size_t)len);
        memcpy(labels, r->labels, sizeof *labels * (size_t)len);
    }
    for (int64_t i = len; i < T; i++) ids[i] = 0, labels[i] = PISSA_IGNORE_INDEX;
    if (pos) {
        for (int64_t i = 0; i < T; i++)
            pos[i] = i < len && r->position_ids ? r->position_ids[i] : i == 0 ? 0 : pos[i - 1] + 1;
        for (int64_t i = 1; i < len; i++) count += labels[i] != PISSA_IGNORE_INDEX && pos[i] != 0;
        return count;
    }
    for (int64_t i = 1; i < len; i++) count += labels[i] != PISSA_IGNORE_INDEX;
    return count;
}

/* Items [lo, hi) of N are process RANK's of SIZE: N split into SIZE contiguous slices, the first N % SIZE one longer
 * (8 rows over 3 processes: 3, 3, 2; fewer items than processes leave the last ones none). */
static void my_slice(int64_t n, int rank, int size, int64_t *lo, int64_t *hi) {
    int64_t q = n / size, r = n % size;
    *lo = rank * q + (rank < r ? rank : r);
    *hi = *lo + q + (rank < r);
}

/* The next ROWS rows of the run into IDS/LABELS (/POS), advancing the data position (and the epoch); COUNT gets their
 * targets, MINE those of rows [LO, HI), this process's. */
static pissa_status next_rows(pissa_trainer *t, int rows, int64_t lo, int64_t hi, int32_t *ids, int32_t *labels,
                              int32_t *pos, int64_t *count, int64_t *mine) {
    *count = *mine = 0;
    for (int b = 0; b < rows; b++) {
        if (t->pos == t->rows) {
            t->epoch++;
            t->pos = 0;
            new_epoch_order(t);
        }
        pissa_row r;
        PISSA_TRY(pissa_dataset_row(t->data, t->perm[t->pos++], &r));
        int64_t c = fill_row(&r, t->T, ids + (size_t)b * t->T, labels + (size_t)b * t->T,
                             pos ? pos + (size_t)b * t->T : NULL);
        *count += c;
        if (b >= lo && b < hi) *mine += c;
    }
    return PISSA_OK;
}

/* SUM := the sum of every process's share of the loss, in rank order. Every process also computed the norm of the
 * summed gradients: the norms must agree bit for bit, as the sums do (MPI gives every process the same result) —
 * else the processes' parameters would drift apart, which is refused rather than trained on. */
static pissa_status share_loss_check_norm(pissa_trainer *t, double *sum, double norm) {
    double mine[2] = {*sum, norm}, *all = pissa__alloc(2 * (size_t)t->size, sizeof *all);
    if (!all) return pissa__fail(PISSA_ERR_NOMEM, "trainer: out of memory");
    pissa_status st = pissa__comm_gather_f64(t->comm, mine, 2, all, "trainer: gathering the losses");
    *sum = 0;
    for (int r = 0; st == PISSA_OK && r < t->size; r++) {
        *sum += all[2 * r];
        if (memcmp(&all[2 * r + 1], &all[1], sizeof norm) != 0)
            st = pissa__fail(PISSA_ERR_NUMERIC, "trainer: update %lld: rank %d of %d computed the gradient norm %.17g, "
                             "rank 0 %.17g: the MPI library gave the processes different gradient sums",
                             (long long)t->step + 1, r, t->size, all[2 * r + 1], all[1]);
    }
    free(all);
    return st;
}

pissa_status pissa_trainer_step(pissa_trainer *t, pissa_step_info *info) {
    if (!t) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_trainer_step: NULL argument");
    if (t->failed)
        return pissa__fail(PISSA_ERR_NUMERIC, "trainer: stopped at update %lld by a NaN/Inf loss or gradient",
                           (long long)t->step + 1);
    const int K = t->o.accum, B = t->o.batch, T = t->T;
    const size_t mb = (size_t)B * (size_t)T;
    int64_t total = 0, lo, hi;
    my_slice(B, t->rank, t->size, &lo, &hi);
    pissa_status st = PISSA_OK;
    for (int k = 0; k < K && st == PISSA_OK; k++) {
        st = next_rows(t, B, lo, hi, t->ids + k * mb, t->labels + k * mb, t->positions ? t->positions + k * mb : NULL,
                       &t->counts[k], &t->mine[k]);
        total += t->counts[k];
    }
    /* Each micro-batch's mean loss (over this process's slice of it) weighted by the slice's share of the update's
     * targets: the sum over micro-batches and processes is the mean over all K·B rows, so its gradient is that of
     * one batch of K·B rows whatever the padding and the split. */
    pissa_model_zero_grad(t->m);
    double sum = 0;
    for (int k = 0; k < K && st == PISSA_OK && hi > lo; k++) {
        pissa_model_set_training(t->m, 1, dropout_seed(t->o.seed) + (uint64_t)(t->step * K + k));
        pissa__model_set_slice(t->m, (int)lo, (int)(B - hi));
        float dloss = total ? (float)((double)t->mine[k] / (double)total) : 0.0f;
        double loss;
        int64_t c;
        st = pissa_model_forward_backward_packed(t->m, t->ids + k * mb + lo * T, t->labels + k * mb + lo * T,
                                                 t->positions ? t->positions + k * mb + lo * T : NULL, (int)(hi - lo),
                                                 T, dloss, &loss, &c);
        if (st == PISSA_OK && !isfinite(loss))
            st = pissa__fail(PISSA_ERR_NUMERIC, "trainer: update %lld: the loss of micro-batch %d is %s",
                             (long long)t->step + 1, k + 1, isnan(loss) ? "nan" : "inf");
        if (st == PISSA_OK) sum += loss * (double)c;
    }
    pissa_model_set_training(t->m, 0, 0);
    /* No process changes its parameters unless every one succeeded; then each gets the sum of the gradients. */
    st = pissa_comm_agree(t->comm, st, NULL);
    for (size_t i = 0; i < t->n_spans && st == PISSA_OK; i++)
        st = pissa__comm_sum_f32(t->comm, t->spans[i], t->span_len[i], "trainer: summing the gradients");
    double norm = 0;
    pissa_status clip = PISSA_OK;
    if (st == PISSA_OK) clip = pissa_clip_grad_norm(t->grads, t->sizes, t->n, t->o.max_grad_norm, &norm);
    if (st == PISSA_OK && t->comm) st = share_loss_check_norm(t, &sum, norm);
    if (st == PISSA_OK && clip == PISSA_ERR_NUMERIC)
        st = pissa__fail(PISSA_ERR_NUMERIC, "trainer: update %lld: the gradient norm is %s", (long long)t->step + 1,
                         isnan(norm) ? "nan" : "inf");
    if (st != PISSA_OK) {
        if (st == PISSA_ERR_NUMERIC) t->failed = 1;
        return st;
    }
    double lr = t->o.optim.lr * pissa_schedule_factor(t->o.schedule, t->step, t->o.warmup, t->o.total_steps);
    size_t nd = t->n_decay;
    PISSA_TRY(pissa_optim_step(t->opt[0], t->params, (const float *const *)t->grads, lr));
    PISSA_TRY(pissa_optim_step(t->opt[1], t->params + nd, (const float *const *)t->grads + nd, lr));
    t->step++;
    if (info)
        *info = (pissa_step_info){.step = t->step, .loss = total ? sum / (double)total : 0.0, .lr = lr,
                                  .grad_norm = norm, .tokens = total, .epoch = t->epoch};
    return PISSA_OK;
}

/* The checks of pissa_trainer_evaluate on this process. */
static pissa_status check_eval(const pissa_trainer *t, const pissa_dataset *d) {
    size_t rows = pissa_dataset_count(d);
    if (!rows) return pissa__fail(PISSA_ERR_INVALID_ARG, "evaluate: the data set has no rows");
    int64_t T = pissa_dataset_max_len(d);
    if (T > pissa_model_config(t->m)->max_position_embeddings)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "evaluate: rows of %lld tokens exceed max_position_embeddings %lld",
                           (long long)T, (long long)pissa_model_config(t->m)->max_position_embeddings);
    return PISSA_OK;
}

pissa_status pissa_trainer_evaluate(pissa_trainer *t, const pissa_dataset *d, double *loss, int64_t *count) {
    if (!t) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_trainer_evaluate: NULL argument");
    pissa_status st = d && loss ? PISSA_OK : pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_trainer_evaluate: NULL argument");
    if (st == PISSA_OK) st = check_eval(t, d);
    PISSA_TRY(pissa_comm_agree(t->comm, st, NULL));
    if (t->comm) {
        uint64_t h = data_fingerprint(d);
        int other;
        PISSA_TRY(pissa__comm_compare_u64(t->comm, &h, 1, &other));
        if (other >= 0)
            return pissa__fail(PISSA_ERR_INVALID_ARG, "evaluate: rank %d of %d has another data set than rank 0",
                               other, t->size);
    }
    /* Batches of B rows in order, the last one padded; each process computes a contiguous share of the batches and
     * keeps their (loss · count, count) in its place, zero elsewhere: the sum over processes is exact, and adding
     * the batches in order gives the one-process result bit for bit (for the same thread count). */
    size_t rows = pissa_dataset_count(d);
    int64_t T = pissa_dataset_max_len(d), B = (size_t)t->o.batch < rows ? t->o.batch : (int64_t)rows;
    size_t nb = (rows + (size_t)B - 1) / (size_t)B;
    int64_t jlo, jhi;
    my_slice((int64_t)nb, t->rank, t->size, &jlo, &jhi);
    int32_t *ids = pissa__alloc((size_t)(B * T), sizeof *ids), *labels = pissa__alloc((size_t)(B * T), sizeof *labels);
    int32_t *pos = pissa_dataset_is_packed(d) ? pissa__alloc((size_t)(B * T), sizeof *pos) : NULL;
    double *part = pissa__calloc(2 * nb, sizeof *part); /* (2, nb): loss · count, count */
    if (!ids || !labels || !part || (pissa_dataset_is_packed(d) && !pos))
        st = pissa__fail(PISSA_ERR_NOMEM, "evaluate: out of memory");
    for (int64_t j = jlo; st == PISSA_OK && j < jhi; j++) {
        size_t r0 = (size_t)j * (size_t)B;
        for (int64_t b = 0; b < B; b++) {
            pissa_row r = {.len = 0};
            if (r0 + (size_t)b < rows && (st = pissa_dataset_row(d, r0 + (size_t)b, &r)) != PISSA_OK) break;
            /* an empty row past the end is all padding */
            fill_row(&r, (int)T, ids + b * T, labels + b * T, pos ? pos + b * T : NULL);
        }
        double l;
        int64_t c;
        if (st == PISSA_OK) st = pissa_model_loss_packed(t->m, ids, labels, pos, (int)B, (int)T, &l, &c);
        if (st == PISSA_OK && !isfinite(l))
            st = pissa__fail(PISSA_ERR_NUMERIC, "evaluate: the loss of rows %zu..%zu is %s: the model computes "
                             "non-finite values (NaN or Inf weights?)", r0, r0 + (size_t)B - 1, isnan(l) ? "nan" : "inf");
        if (st == PISSA_OK) part[j] = l * (double)c, part[nb + (size_t)j] = (double)c;
    }
    free(ids);
    free(labels);
    free(pos);
    st = pissa_comm_agree(t->comm, st, NULL);
    if (st == PISSA_OK) st = pissa__comm_sum_f64(t->comm, part, 2 * nb, "evaluate: summing the losses");
    double sum = 0, total = 0;
    for (size_t j = 0; st == PISSA_OK && j < nb; j++) sum += part[j], total += part[nb + j]; /* token-weighted */
    free(part);
    if (st != PISSA_OK) return st;
    if (!total)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "evaluate: the data set's %zu rows have no targets (every label "
                           "after a row's first position is -100): no loss to report", rows);
    *loss = sum / total;
    if (count) *count = (int64_t)total;
    return PISSA_OK;
}

pissa_status pissa_trainer_save(const pissa_trainer *t, const char *dir) {
    if (!t || !dir) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_trainer_save: NULL argument");
    if (t->full) return pissa_model_save(t->m, dir, PISSA_F32);
    return pissa_model_save_adapter(t->m, dir, PISSA_F32);
}

pissa_status pissa_trainer_save_peft(const pissa_trainer *t, const pissa_peft_config *cfg, const char *dir) {
    if (!t || !cfg || !dir) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_trainer_save_peft: NULL argument");
    if (t->full) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: full fine-tuning has no adapter to save", dir);
    pissa_peft_adapter *pa;
    PISSA_TRY(pissa_peft_adapter_create(cfg, &pa));
    pissa_status st = PISSA_OK;
    for (size_t i = 0; st == PISSA_OK && i < t->n / 2; i++) {
        pissa_adapter_view a;
        st = pissa_model_adapter(t->m, i, &a);
        if (st == PISSA_OK) st = pissa_peft_adapter_add(pa, a.module, a.r, a.in, a.out, a.A, a.B);
    }
    if (st == PISSA_OK) st = pissa_peft_adapter_save(pa, dir, PISSA_F32);
    pissa_peft_adapter_free(pa);
    return st;
}

/* ---- training state ---- */

static const char *buffer_suffix(pissa_optim_kind k, int j) {
    if (k == PISSA_OPTIM_SGD) return ".momentum_buffer";
    return j == 0 ? ".exp_avg" : ".exp_avg_sq";
}

/* Every state tensor: NAME of tensor I (j = -1: the parameter, else optimizer buffer j) and its data. */
static float *state_tensor(const pissa_trainer *t, size_t i, int j, char *name, size_t size) {
    float *b[2] = {NULL, NULL};
    if (i < t->n_decay) pissa_optim_buffers(t->opt[0], i, &b[0], &b[1]);
    else pissa_optim_buffers(t->opt[1], i - t->n_decay, &b[0], &b[1]);
    if (j < 0) {
        snprintf(name, size, "%s", t->names[i]);
        return t->params[i];
    }
    snprintf(name, size, "%s%s", t->names[i], buffer_suffix(t->o.optim.kind, j));
    return b[j];
}

static cJSON *state_json(const pissa_trainer *t) {
    cJSON *j = cJSON_CreateObject();
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->o.seed);
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "format", STATE_FORMAT);
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddNumberToObject(j, "step", (double)t->step);
    cJSON_AddNumberToObject(j, "optimizer_steps", (double)pissa_optim_steps(t->opt[0]));
    cJSON_AddNumberToObject(j, "epoch", (double)t->epoch);
    cJSON_AddNumberToObject(j, "position", (double)t->pos);
    cJSON_AddStringToObject(j, "seed", seed); /* a string: a u64 does not fit a JSON double */
    cJSON_AddNumberToObject(j, "rows", (double)t->rows);
    cJSON_AddNumberToObject(j, "batch", t->o.batch);
    cJSON_AddNumberToObject(j, "accum", t->o.accum);
    cJSON_AddNumberToObject(j, "seq", t->T);
    cJSON_AddBoolToObject(j, "shuffle", t->o.shuffle != 0);
    cJSON_AddStringToObject(j, "optimizer", t->o.optim.kind == PISSA_OPTIM_ADAMW ? "adamw" : "sgd");
    cJSON_AddNumberToObject(j, "tensors", (double)t->n);
    cJSON_AddStringToObject(j, "mode", t->full ? "full" : "adapters");
    return j;
}

pissa_status pissa_trainer_save_state(const pissa_trainer *t, const char *dir) {
    if (!t || !dir) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_trainer_save_state: NULL argument");
    /* A new state folder is built aside and switched in whole: a state is complete or absent, and the previous
     * one stays until the new one is complete. */
    static const char *const everything[] = {"*", NULL};
    pissa_dir_txn *txn;
    PISSA_TRY(pissa_dir_txn_begin(dir, everything, &txn));
    pissa_st_writer *w = NULL;
    char name[256], step[32];
    snprintf(step, sizeof step, "%lld", (long long)t->step);
    pissa_status st = pissa_st_writer_create(&w);
    if (st == PISSA_OK) st = pissa_st_writer_set_metadata(w, "step", step);
    for (size_t i = 0; st == PISSA_OK && i < t->n; i++)
        for (int j = -1; st == PISSA_OK && j < 2; j++) {
            float *data = state_tensor(t, i, j, name, sizeof name);
            int64_t shape[1] = {(int64_t)t->sizes[i]};
            if (data) st = pissa_st_writer_add_f32(w, name, PISSA_F32, 1, shape, data);
        }
    const char *out = pissa_dir_txn_path(txn);
    char *tpath = pissa__path_join(out, STATE_TENSORS), *jpath = pissa__path_join(out, STATE_JSON), *text = NULL;
    cJSON *j = state_json(t);
    if (st == PISSA_OK && (!tpath || !jpath || !j)) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    if (st == PISSA_OK) st = pissa__json_dump_sorted(j, &text);
    if (st == PISSA_OK) st = pissa_st_writer_write(w, tpath);
    if (st == PISSA_OK) st = pissa_write_file_atomic(jpath, text, strlen(text));
    if (st == PISSA_OK) st = pissa_dir_txn_commit(txn);
    else pissa_dir_txn_abort(txn);
    pissa_st_writer_free(w);
    cJSON_Delete(j);
    free(text);
    free(tpath);
    free(jpath);
    return st;
}

static pissa_status json_int(const cJSON *root, const char *key, const char *path, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 9007199254740992.0) ||
        v->valuedouble != floor(v->valuedouble)) /* 2^53: the integers a JSON number holds exactly */
        return pissa__fail(PISSA_ERR_FORMAT, "%s: \"%s\" is missing or not an integer in [0, 2^53]", path, key);
    *out = (int64_t)v->valuedouble;
    return PISSA_OK;
}

/* Checks the scalars of state.json against this trainer; fills the position. */
static pissa_status check_state_json(const pissa_trainer *t, const cJSON *j, const char *path, int64_t *step,
                                     int64_t *opt_steps, int64_t *epoch, int64_t *pos) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
    if (!cJSON_IsString(f) || strcmp(f->valuestring, STATE_FORMAT) != 0)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: not a libpissa training state (format \"%s\")", path, STATE_FORMAT);
    int64_t rows = 0, batch = 0, accum = 0, seq = 0, n = 0;
    PISSA_TRY(json_int(j, "step", path, step));
    PISSA_TRY(json_int(j, "optimizer_steps", path, opt_steps));
    PISSA_TRY(json_int(j, "epoch", path, epoch));
    PISSA_TRY(json_int(j, "position", path, pos));
    PISSA_TRY(json_int(j, "rows", path, &rows));
    PISSA_TRY(json_int(j, "batch", path, &batch));
    PISSA_TRY(json_int(j, "accum", path, &accum));
    PISSA_TRY(json_int(j, "seq", path, &seq));
    PISSA_TRY(json_int(j, "tensors", path, &n));
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    const cJSON *opt = cJSON_GetObjectItemCaseSensitive(j, "optimizer");
    const cJSON *shuffle = cJSON_GetObjectItemCaseSensitive(j, "shuffle");
    if (!cJSON_IsString(seed) || !cJSON_IsString(opt) || !cJSON_IsBool(shuffle))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: \"seed\", \"optimizer\" or \"shuffle\" is missing", path);
    char want_seed[32];
    snprintf(want_seed, sizeof want_seed, "%llu", (unsigned long long)t->o.seed);
    const char *want_opt = t->o.optim.kind == PISSA_OPTIM_ADAMW ? "adamw" : "sgd";
#define DIFFERS(what, a, b)                                                                                     \
    return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: the state was saved with %s %s, this run has %s", path, what, \
                       a, b)
    char a[32], b[32];
    if (strcmp(seed->valuestring, want_seed) != 0) DIFFERS("seed", seed->valuestring, want_seed);
    if (strcmp(opt->valuestring, want_opt) != 0) DIFFERS("optimizer", opt->valuestring, want_opt);
    if (cJSON_IsTrue(shuffle) != (t->o.shuffle != 0))
        DIFFERS("shuffle", cJSON_IsTrue(shuffle) ? "on" : "off", t->o.shuffle ? "on" : "off");
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(j, "mode"); /* absent before full fine-tuning existed */
    const char *have = cJSON_IsString(mode) ? mode->valuestring : "adapters";
    const char *want_mode = t->full ? "full" : "adapters";
    if (strcmp(have, want_mode) != 0) DIFFERS("mode", have, want_mode);
    const int64_t got[5] = {rows, batch, accum, seq, n};
    const int64_t want[5] = {(int64_t)t->rows, t->o.batch, t->o.accum, t->T, (int64_t)t->n};
    static const char *what[5] = {"data rows", "batch", "accum", "seq", "trainable tensors"};
    for (int i = 0; i < 5; i++)
        if (got[i] != want[i]) {
            snprintf(a, sizeof a, "%lld", (long long)got[i]);
            snprintf(b, sizeof b, "%lld", (long long)want[i]);
            DIFFERS(what[i], a, b);
        }
#undef DIFFERS
    if ((size_t)*pos > t->rows) return pissa__fail(PISSA_ERR_FORMAT, "%s: position %lld > rows", path, (long long)*pos);
    return PISSA_OK;
}

/* The position after STEP updates: the update count, the optimizers' (equal) count, the epoch and the position in
 * its permutation. */
static void set_position(pissa_trainer *t, int64_t step, int64_t opt_steps, int64_t epoch, int64_t pos) {
    t->step = step;
    pissa_optim_set_steps(t->opt[0], opt_steps);
    pissa_optim_set_steps(t->opt[1], opt_steps);
    t->epoch = epoch;
    t->pos = (size_t)pos;
    t->failed = 0;
    new_epoch_order(t);
}

static pissa_status load_state_files(pissa_trainer *t, const char *dir) {
    char *tpath = pissa__path_join(dir, STATE_TENSORS), *jpath = pissa__path_join(dir, STATE_JSON), *text = NULL;
    cJSON *j = NULL;
    pissa_st_file *f = NULL;
    size_t len;
    int64_t step = 0, opt_steps = 0, epoch = 0, pos = 0;
    pissa_status st = tpath && jpath ? PISSA_OK : pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    if (st == PISSA_OK) st = pissa__read_file(jpath, &text, &len);
    if (st == PISSA_OK && !(j = cJSON_ParseWithLength(text, len)))
        st = pissa__fail(PISSA_ERR_FORMAT, "%s: not valid JSON", jpath);
    if (st == PISSA_OK) st = check_state_json(t, j, jpath, &step, &opt_steps, &epoch, &pos);
    if (st == PISSA_OK) st = pissa_st_open(tpath, &f);
    if (st == PISSA_OK) {
        const char *s = pissa_st_metadata(f, "step");
        char want[32];
        snprintf(want, sizeof want, "%lld", (long long)step);
        if (!s || strcmp(s, want) != 0)
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: tensors of step %s but %s says step %s (an interrupted save?)",
                             tpath, s ? s : "?", jpath, want);
    }
    /* Read everything into place only after the scalars checked out; a failure midway leaves the trainer
     * unusable for resuming but says so. */
    char name[256];
    for (size_t i = 0; st == PISSA_OK && i < t->n; i++)
        for (int k = -1; st == PISSA_OK && k < 2; k++) {
            float *data = state_tensor(t, i, k, name, sizeof name);
            pissa_st_info info;
            if (!data) continue;
            st = pissa_st_find(f, name, &info);
            if (st == PISSA_OK && (info.ndim != 1 || info.shape[0] != (int64_t)t->sizes[i]))
                st = pissa__fail(PISSA_ERR_SHAPE, "%s: tensor '%s' does not have %zu elements", tpath, name,
                                 t->sizes[i]);
            if (st == PISSA_OK) st = pissa_st_read_f32(f, name, data, (int64_t)t->sizes[i]);
        }
    if (st == PISSA_OK) set_position(t, step, opt_steps, epoch, pos);
    pissa_st_close(f);
    cJSON_Delete(j);
    free(text);
    free(tpath);
    free(jpath);
    return st;
}

/* With a communicator, process 0 reads DIR (the processes may not share a file system: OUT is written by process 0)
 * and sends the position and every state tensor to the others. */
pissa_status pissa_trainer_load_state(pissa_trainer *t, const char *dir) {
    if (!t) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_trainer_load_state: NULL argument");
    pissa_status st = dir ? PISSA_OK : pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_trainer_load_state: NULL argument");
    if (st == PISSA_OK && t->rank == 0) st = load_state_files(t, dir);
    PISSA_TRY(pissa_comm_agree(t->comm, st, NULL));
    if (!t->comm) return PISSA_OK;
    int64_t pos[4] = {t->step, pissa_optim_steps(t->opt[0]), t->epoch, (int64_t)t->pos};
    char name[256];
    st = pissa__comm_bcast(t->comm, pos, sizeof pos, 0, "trainer: sending the training state");
    for (size_t i = 0; st == PISSA_OK && i < t->n; i++)
        for (int j = -1; st == PISSA_OK && j < 2; j++) {
            float *data = state_tensor(t, i, j, name, sizeof name);
            if (data) st = pissa__comm_bcast(t->comm, data, sizeof(float) * t->sizes[i], 0, "trainer: sending the "
                                             "training state");
        }
    if (st == PISSA_OK && t->rank != 0) set_position(t, pos[0], pos[1], pos[2], pos[3]);
    return pissa_comm_agree(t->comm, st, NULL);
}
