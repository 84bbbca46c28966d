/* The trainable model (pissa/model.h) on the autograd engine: one forward for every family of pissa/config.h, the
 * family's features (biases, per-head q/k norms, the RoPE type, a sliding window) read from the config. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "interop_internal.h"
#include "model_internal.h"
#include "peft_internal.h"
#include "pissa/model.h"
#include "weights.h"

enum { Q, K, V, O, GATE, UP, DOWN, N_PROJ = PISSA_N_PROJ };

typedef struct adapter {
    char module[96];   /* model.layers.3.self_attn.q_proj */
    char name_A[112], name_B[112];
    int layer, proj;
    int64_t r, in, out;
    double scale;
    float *A;          /* (r, in) owned */
    float *B;          /* (out, r) owned */
    pissa__qweight res; /* the PiSSA residual (out, in) in the base's format while being attached (OWNED; then moved
                         * into the weights in place of the base); empty for the LoRA kinds */
    int pA, pB, pW;    /* parameter ids (pW: the frozen base weight, or the residual that replaced it) */
    int replaced;      /* the residual has replaced the base weight */
    int released;      /* the converted base weight was freed while attaching (restore_bases puts it back) */
} adapter;

typedef struct layer_params {
    int in_norm, post_norm; /* (1, D) */
    int q_norm, k_norm;     /* (1, hd) with qk_norm, else -1 */
    int proj[N_PROJ];       /* frozen base weights (out, in) */
    int bias[N_PROJ];       /* (1, out) where the family has one, else -1 */
} layer_params;

struct pissa_model {
    char *path;
    int base;             /* pissa_qtype the load put the projections in, or -1: as stored */
    pissa__weights w;     /* the frozen base; PiSSA residuals replace their base weights when attached */
    pissa__params params; /* the base's parameters (the first n_base), then the adapters' */
    size_t n_base;
    int p_embed, p_norm, p_head;
    layer_params *layers; /* (L) */
    adapter *ad;          /* (n_ad) in layer order, then projection order */
    size_t n_ad;
    int *ad_index;        /* (L·7) index into ad, or -1 */
    pissa_peft_config peft; /* written by save */
    double dropout;
    float *inv_freq;      /* (hd/2) RoPE's inverse frequencies for the config's rope type */
    pissa__graph *g;      /* for the last batch shape */
    int logits_value;     /* value id of the logits in g */
    int training;
    int full;             /* full fine-tuning: every base weight is an owned, trainable copy */
    int checkpoint;       /* activation checkpointing: each layer a segment of the graph, recomputed in backward */
    pissa_rng rng;
    int mask_rows[2];     /* batch rows before and after the next batch's, in the batch they are a slice of */
};

/* ---- loading ---- */

static pissa_status base_param(pissa_model *m, const char *name, int trainable, int *id) {
    ptrdiff_t i = pissa__weights_index(&m->w, name);
    if (i < 0) return pissa__fail(PISSA_ERR_NOT_FOUND, "model: tensor '%s' is missing", name);
    pissa__qweight q = pissa__weights_matrix(&m->w, (size_t)i); /* a view; the stored name outlives the parameter */
    if (q.type == PISSA_QTYPE_F32)
        return pissa__params_add(&m->params, m->w.names[i], (float *)q.data, q.rows, q.cols, trainable, id);
    if (trainable) return pissa__fail(PISSA_ERR_INVALID_ARG, "model: '%s' is not float32: not trainable", name);
    return pissa__params_add_frozen(&m->params, m->w.names[i], &q, id);
}

/* Registers every base weight (trainable or frozen) and plans the gradients: embed_tokens, model.norm, lm_head, then
 * each layer's tensors in the config's order (pissa_config_tensor). A tied head is the embedding's parameter, so its
 * two uses add into one gradient. */
static pissa_status register_base(pissa_model *m, int trainable) {
    const pissa_llama_config *c = &m->w.cfg;
    const int tr = trainable;
    PISSA_TRY(base_param(m, "model.embed_tokens.weight", tr, &m->p_embed));
    PISSA_TRY(base_param(m, "model.norm.weight", tr, &m->p_norm));
    if (c->tie_word_embeddings) m->p_head = m->p_embed;
    else PISSA_TRY(base_param(m, "lm_head.weight", tr, &m->p_head));
    size_t n = pissa_config_tensor_count(c);
    for (size_t i = 0; i < n; i++) {
        pissa_tensor_spec s;
        PISSA_TRY(pissa_config_tensor(c, i, &s));
        if (s.layer < 0) continue;
        layer_params *lp = &m->layers[s.layer];
        int *slot = s.role == PISSA_ROLE_INPUT_NORM ? &lp->in_norm
                    : s.role == PISSA_ROLE_POST_NORM ? &lp->post_norm
                    : s.role == PISSA_ROLE_Q_NORM    ? &lp->q_norm
                    : s.role == PISSA_ROLE_K_NORM    ? &lp->k_norm
                    : s.role == PISSA_ROLE_PROJ      ? &lp->proj[s.proj]
                                                     : &lp->bias[s.proj];
        PISSA_TRY(base_param(m, s.name, tr, slot));
    }
    m->n_base = m->params.n;
    return pissa__params_plan(&m->params);
}

/* Takes ownership of *W (zeroed on return), on success and on failure alike. */
static pissa_status model_from_weights(pissa__weights *w, const char *path, int base, pissa_model **out) {
    *out = NULL;
    pissa_model *m = pissa__calloc(1, sizeof *m);
    if (!m) {
        pissa__weights_free(w);
        return pissa__fail(PISSA_ERR_NOMEM, "out of memory for a model");
    }
    m->w = *w;
    m->base = base;
    memset(w, 0, sizeof *w);
    pissa_status st = pissa_llama_config_check_supported(&m->w.cfg);
    if (st == PISSA_OK) {
        const pissa_llama_config *c = &m->w.cfg;
        size_t L = (size_t)c->num_hidden_layers;
        m->path = pissa__strdup(path);
        m->layers = pissa__calloc(L, sizeof *m->layers);
        m->ad_index = pissa__alloc(L * N_PROJ, sizeof *m->ad_index);
        m->inv_freq = pissa__alloc((size_t)c->head_dim / 2, sizeof *m->inv_freq);
        if (!m->path || !m->layers || !m->ad_index || !m->inv_freq)
            st = pissa__fail(PISSA_ERR_NOMEM, "out of memory for a model");
        for (size_t i = 0; st == PISSA_OK && i < L * N_PROJ; i++) m->ad_index[i] = -1;
        for (size_t l = 0; st == PISSA_OK && l < L; l++) {
            layer_params *lp = &m->layers[l];
            lp->q_norm = lp->k_norm = -1;
            for (int j = 0; j < N_PROJ; j++) lp->bias[j] = -1;
        }
        if (st == PISSA_OK) pissa__rope_inv_freq(c, m->inv_freq);
    }
    if (st == PISSA_OK) st = register_base(m, 0);
    if (st != PISSA_OK) {
        pissa_model_free(m);
        return st;
    }
    pissa__rng_seed(&m->rng, 0);
    *out = m;
    return PISSA_OK;
}

pissa_status pissa__model_from_weights(pissa__weights *w, const char *path, pissa_model **out) {
    return model_from_weights(w, path, -1, out);
}

pissa_model_opts pissa_model_default_opts(void) { return (pissa_model_opts){.base_dtype = -1}; }

pissa_status pissa_model_load_with_opts(const char *path, const pissa_model_opts *opts, pissa_model **out) {
    if (!path || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_model_load: NULL argument");
    *out = NULL;
    pissa__load_opts lo = {.base = opts ? opts->base_dtype : -1};
    pissa__weights w;
    PISSA_TRY(pissa__weights_load(path, &lo, &w));
    return model_from_weights(&w, path, lo.base, out);
}

pissa_status pissa_model_load(const char *path, pissa_model **out) { return pissa_model_load_with_opts(path, NULL, out); }

static void free_adapters(pissa_model *m) {
    for (size_t i = 0; i < m->n_ad; i++) {
        free(m->ad[i].A);
        free(m->ad[i].B);
        pissa__qweight_release(&m->ad[i].res);
    }
    free(m->ad);
    m->ad = NULL;
    m->n_ad = 0;
}

void pissa_model_free(pissa_model *m) {
    if (!m) return;
    pissa__graph_free(m->g);
    free_adapters(m);
    pissa__params_free(&m->params);
    free(m->layers);
    free(m->ad_index);
    free(m->inv_freq);
    free(m->path);
    pissa__weights_free(&m->w);
    free(m);
}

const pissa_llama_config *pissa_model_config(const pissa_model *m) { return m ? &m->w.cfg : NULL; }

/* ---- adapters ---- */

pissa_adapter_opts pissa_adapter_default_opts(void) {
    pissa_adapter_opts o = {
        .targets = PISSA_PROJ_Q | PISSA_PROJ_V, .init = pissa_init_default_opts(), .dropout = 0, .qiter = 1};
    return o;
}

/* Sets up adapter slot A for projection J of layer L (A, B uninitialised), with its name and shape from the base. */
static pissa_status alloc_adapter(pissa_model *m, adapter *a, int l, int j, int64_t r, double scale) {
    const pissa__param *W = &m->params.p[m->layers[l].proj[j]];
    snprintf(a->module, sizeof a->module, "model.layers.%d.%s", l, pissa_proj_path(j));
    snprintf(a->name_A, sizeof a->name_A, "%s.lora_A", a->module);
    snprintf(a->name_B, sizeof a->name_B, "%s.lora_B", a->module);
    a->layer = l;
    a->proj = j;
    a->r = r;
    a->out = W->rows;
    a->in = W->cols;
    a->scale = scale;
    a->pW = m->layers[l].proj[j];
    a->A = pissa__alloc((size_t)(r * a->in), sizeof(float));
    a->B = pissa__alloc((size_t)(a->out * r), sizeof(float));
    if (!a->A || !a->B) return pissa__fail(PISSA_ERR_NOMEM, "out of memory for the adapter of %s", a->module);
    return PISSA_OK;
}

/* Allocates the adapter slots for MASK (A, B uninitialised), with module names and shapes from the base. */
static pissa_status alloc_adapters(pissa_model *m, unsigned mask, int64_t r, double scale) {
    const pissa_llama_config *c = &m->w.cfg;
    size_t n = 0;
    for (int j = 0; j < N_PROJ; j++) n += (mask >> j) & 1u;
    n *= (size_t)c->num_hidden_layers;
    m->ad = pissa__calloc(n, sizeof *m->ad);
    if (!m->ad) return pissa__fail(PISSA_ERR_NOMEM, "out of memory for %zu adapters", n);
    m->n_ad = n;
    size_t i = 0;
    for (int64_t l = 0; l < c->num_hidden_layers; l++)
        for (int j = 0; j < N_PROJ; j++)
            if (mask & (1u << j)) PISSA_TRY(alloc_adapter(m, &m->ad[i++], (int)l, j, r, scale));
    return PISSA_OK;
}

/* Puts *Q (taken, zeroed) in the weights in place of adapter A's base weight, and binds its parameter to it. */
static void set_base(pissa_model *m, const adapter *a, pissa__qweight *q) {
    size_t k = (size_t)pissa__weights_index(&m->w, m->params.p[a->pW].name);
    pissa__weights_replace(&m->w, k, q);
    pissa__qweight view = pissa__weights_matrix(&m->w, k);
    pissa__params_rebind(&m->params, a->pW, &view);
}

/* Registers the adapters' parameters, indexes them and plans the gradients; then (nothing can fail any more) puts each
 * PiSSA residual in place of its base weight, whose pages or memory go back. */
static pissa_status register_adapters(pissa_model *m) {
    for (size_t i = 0; i < m->n_ad; i++) {
        adapter *a = &m->ad[i];
        PISSA_TRY(pissa__params_add(&m->params, a->name_A, a->A, a->r, a->in, 1, &a->pA));
        PISSA_TRY(pissa__params_add(&m->params, a->name_B, a->B, a->out, a->r, 1, &a->pB));
        m->ad_index[a->layer * N_PROJ + a->proj] = (int)i;
    }
    pissa__graph_free(m->g); /* the graph's structure changes */
    m->g = NULL;
    PISSA_TRY(pissa__params_plan(&m->params));
    for (size_t i = 0; i < m->n_ad; i++) {
        adapter *a = &m->ad[i];
        if (!a->res.owned) continue;
        set_base(m, a, &a->res);
        a->replaced = 1;
    }
    return PISSA_OK;
}

static void restore_bases(pissa_model *m);

/* Leaves the model without adapters after a failed attach, its base as it was. */
static pissa_status attach_failed(pissa_model *m, pissa_status st) {
    restore_bases(m);
    size_t L = (size_t)m->w.cfg.num_hidden_layers;
    for (size_t i = 0; i < L * N_PROJ; i++) m->ad_index[i] = -1;
    free_adapters(m);
    m->params.n = m->n_base; /* the adapters' parameters go; the base's keep their ids */
    pissa__graph_free(m->g);
    m->g = NULL;
    if (pissa__params_plan(&m->params) != PISSA_OK) pissa_clear_error(); /* frozen: nothing to allocate */
    return st;
}

/* Prefixes the current error message with the failing module or folder (copied first: pissa__fail overwrites it). */
static pissa_status refail(pissa_status st, const char *where) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", pissa_last_error());
    return pissa__fail(st, "%s: %s", where, msg);
}

static int is_pissa_kind(pissa_init_kind k) { return k == PISSA_INIT_PISSA || k == PISSA_INIT_PISSA_NITER; }

/* What PiSSA splits: each W as the checkpoint stores it (the recipe splits the full-precision weight, never a quantized
 * one). When the load converted the base, the checkpoint is opened again as stored (its matrices mapped, not read);
 * otherwise the model's own weights are the source. */
typedef struct split_source {
    pissa__weights reopened; /* or empty */
    const pissa__weights *w;
    float *buf;              /* (max out·in) for a matrix not stored as float32 */
} split_source;

static pissa_status source_open(const pissa_model *m, split_source *src) {
    memset(src, 0, sizeof *src);
    src->w = &m->w;
    int64_t most = 0;
    for (size_t i = 0; i < m->n_ad; i++)
        if (m->ad[i].out * m->ad[i].in > most) most = m->ad[i].out * m->ad[i].in;
    if (!(src->buf = pissa__alloc((size_t)most, sizeof(float))))
        return pissa__fail(PISSA_ERR_NOMEM, "out of memory for a (%lld) weight", (long long)most);
    if (m->base < 0) return PISSA_OK;
    src->w = &src->reopened;
    return pissa__weights_load(m->path, NULL, &src->reopened);
}

static void source_close(split_source *src) {
    pissa__weights_free(&src->reopened);
    free(src->buf);
}

/* Adapter A's PiSSA initialisation IO from its source W: A, B and the residual W − s·B·A in the format of the base it
 * replaces (a->res), which for NF4 and INT8 is QPiSSA with QITER rounds (pissa__qpissa). */
static pissa_status split(pissa_model *m, adapter *a, const pissa_init_opts *io, int qiter, split_source *src) {
    const pissa__param *P = &m->params.p[a->pW];
    ptrdiff_t k = pissa__weights_index(src->w, P->name);
    if (k < 0) return pissa__fail(PISSA_ERR_NOT_FOUND, "%s: '%s' is not in the checkpoint", m->path, P->name);
    pissa__qweight q = pissa__weights_matrix(src->w, (size_t)k);
    if (q.rows != a->out || q.cols != a->in)
        return pissa__fail(PISSA_ERR_SHAPE, "%s: '%s' changed shape since the model was loaded", m->path, P->name);
    const float *W = q.data;
    if (q.type != PISSA_QTYPE_F32) {
        pissa__qweight_dequantize(&q, 0, q.rows, src->buf);
        W = src->buf;
    }
    pissa_qtype type = P->q.type;
    int rounds = pissa_qtype_is_quantized(type) && qiter > 1 ? qiter : 1;
    pissa_status st = pissa__qpissa(W, a->out, a->in, io, type, rounds, a->A, a->B, &a->res);
    pissa__weights_drop(src->w, (size_t)k); /* read once */
    if (st == PISSA_OK && m->base >= 0) {
        /* The base was converted at load: the converted copy the residual will replace is not the source, so it can
         * go now and memory holds one copy of each projection, not two (restore_bases rebuilds it on failure). */
        pissa__qweight empty = {0};
        pissa__weights_replace(&m->w, (size_t)pissa__weights_index(&m->w, P->name), &empty);
        a->released = 1;
    }
    return st;
}

/* After a failed attach: each released base weight converted again from the checkpoint, as the load did. */
static void restore_bases(pissa_model *m) {
    int any = 0;
    for (size_t i = 0; i < m->n_ad; i++) any |= m->ad[i].released;
    if (!any) return;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", pissa_last_error()); /* the attach's own error is the one to report */
    pissa__weights src;
    pissa_status st = pissa__weights_load(m->path, NULL, &src);
    for (size_t i = 0; st == PISSA_OK && i < m->n_ad; i++) {
        adapter *a = &m->ad[i];
        if (!a->released) continue;
        pissa__param *P = &m->params.p[a->pW];
        pissa__qweight from = pissa__weights_matrix(&src, (size_t)pissa__weights_index(&src, P->name)), q = {0};
        if ((st = pissa__qweight_convert(&q, P->q.type, &from)) != PISSA_OK) break;
        set_base(m, a, &q);
        a->released = 0;
    }
    pissa__weights_free(&src);
    (void)pissa__fail(st, "%s%s", msg, st == PISSA_OK ? "" : " (and the base could not be restored: free the model)");
}

pissa_status pissa_model_add_adapters(pissa_model *m, const pissa_adapter_opts *opts) {
    if (!m || !opts) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_model_add_adapters: NULL argument");
    if (m->n_ad) return pissa__fail(PISSA_ERR_INVALID_ARG, "model already has adapters");
    if (m->full) return pissa__fail(PISSA_ERR_INVALID_ARG, "model is set for full fine-tuning: no adapters");
    if (!(opts->targets & PISSA_PROJ_ALL) || (opts->targets & ~(unsigned)PISSA_PROJ_ALL))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "adapter targets: bad projection mask 0x%x", opts->targets);
    if (!(opts->dropout >= 0 && opts->dropout < 1))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "adapter dropout %g is not in [0, 1)", opts->dropout);
    if (opts->init.rank < 1 || opts->init.rank > INT32_MAX)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "adapter rank %lld must be >= 1", (long long)opts->init.rank);
    if (opts->qiter < 0) return pissa__fail(PISSA_ERR_INVALID_ARG, "adapter qiter %d must be >= 0", opts->qiter);
    double scale = pissa_lora_scale(opts->init.alpha, opts->init.rank, opts->init.use_rslora);
    pissa_status st = alloc_adapters(m, opts->targets, opts->init.rank, scale);
    const int pissa = is_pissa_kind(opts->init.kind);
    split_source src = {0};
    if (st == PISSA_OK && pissa) st = source_open(m, &src);
    for (size_t i = 0; st == PISSA_OK && i < m->n_ad; i++) {
        adapter *a = &m->ad[i];
        pissa_init_opts io = opts->init;
        io.seed = opts->init.seed + i; /* distinct draws per module, reproducible from one seed */
        if (pissa) st = split(m, a, &io, opts->qiter, &src);
        else st = pissa_adapter_init(a->B, a->out, a->in, &io, a->A, a->B, NULL); /* W is not read: only its shape */
        if (st != PISSA_OK && st != PISSA_ERR_NOMEM) st = refail(st, a->module);
    }
    source_close(&src);
    if (st == PISSA_OK) st = register_adapters(m);
    if (st != PISSA_OK) return attach_failed(m, st);
    m->dropout = opts->dropout;
    m->peft = pissa__peft_config_default();
    m->peft.r = opts->init.rank;
    m->peft.lora_alpha = opts->init.alpha;
    m->peft.lora_dropout = opts->dropout;
    m->peft.use_rslora = opts->init.use_rslora;
    pissa_init_name(&opts->init, m->peft.init_lora_weights, sizeof m->peft.init_lora_weights);
    pissa_proj_names(opts->targets, m->peft.target_modules, sizeof m->peft.target_modules);
    snprintf(m->peft.base_model_name_or_path, sizeof m->peft.base_model_name_or_path, "%s", m->path);
    return PISSA_OK;
}

/* Attaches the adapter modules of PA to the projections SLOTS (L·7, from pissa__peft_map_llama) gives them, each
 * with its own rank and scale. With a PiSSA INIT, as PEFT does, the base weight is first replaced by its residual
 * W − s·B0·A0 (the initialisation redone with that module's r and alpha), then the saved A and B are used. */
static pissa_status load_adapter_tensors(pissa_model *m, const pissa_peft_adapter *pa, const pissa__peft_slot *slots,
                                         const pissa_init_opts *init) {
    size_t L = (size_t)m->w.cfg.num_hidden_layers, n = 0;
    for (size_t k = 0; k < L * N_PROJ; k++) n += slots[k].module >= 0;
    if (!n) return pissa__fail(PISSA_ERR_FORMAT, "adapter_model.safetensors holds no lora_A/lora_B tensors");
    m->ad = pissa__calloc(n, sizeof *m->ad);
    if (!m->ad) return pissa__fail(PISSA_ERR_NOMEM, "out of memory for %zu adapters", n);
    m->n_ad = n;
    for (size_t k = 0, i = 0; k < L * N_PROJ; k++) {
        const pissa__peft_slot *s = &slots[k];
        if (s->module < 0) continue; /* targeted but absent: PEFT's fresh B = 0 would change nothing */
        PISSA_TRY(alloc_adapter(m, &m->ad[i++], (int)(k / N_PROJ), (int)(k % N_PROJ), s->r, s->scale));
    }
    split_source src = {0};
    pissa_status st = is_pissa_kind(init->kind) ? source_open(m, &src) : PISSA_OK;
    for (size_t k = 0, i = 0; st == PISSA_OK && k < L * N_PROJ; k++) {
        const pissa__peft_slot *s = &slots[k];
        if (s->module < 0) continue;
        adapter *a = &m->ad[i];
        const char *name;
        const pissa_tensor *A, *B;
        if ((st = pissa_peft_adapter_module(pa, (size_t)s->module, &name, &A, &B)) != PISSA_OK) break;
        if (is_pissa_kind(init->kind)) {
            pissa_init_opts io = *init;
            io.rank = s->r;
            io.alpha = s->alpha;
            io.seed = init->seed + i; /* as pissa_model_add_adapters seeds module i */
            if ((st = split(m, a, &io, 1, &src)) != PISSA_OK) {
                st = refail(st, a->module);
                break;
            }
        }
        memcpy(a->A, pissa_tensor_data(A), sizeof(float) * (size_t)(a->r * a->in));
        memcpy(a->B, pissa_tensor_data(B), sizeof(float) * (size_t)(a->out * a->r));
        i++;
    }
    source_close(&src);
    return st;
}

pissa_status pissa_model_load_adapter(pissa_model *m, const char *dir) {
    if (!m || !dir) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_model_load_adapter: NULL argument");
    if (m->n_ad) return pissa__fail(PISSA_ERR_INVALID_ARG, "model already has adapters");
    if (m->full) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: model is set for full fine-tuning: no adapters", dir);
    pissa_peft_adapter *pa;
    PISSA_TRY(pissa_peft_adapter_load(dir, &pa));
    const pissa_peft_config *c = pissa_peft_adapter_config(pa);
    pissa_init_opts init = pissa_init_default_opts();
    size_t L = (size_t)m->w.cfg.num_hidden_layers;
    pissa__peft_slot *slots = pissa__calloc(L * N_PROJ, sizeof *slots);
    pissa_status st = slots ? PISSA_OK : pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    /* PEFT's targeting rules and refusals, shared with the generator and pissa-merge */
    if (st == PISSA_OK && (st = pissa__peft_map_llama(pa, &m->w, 1, slots)) != PISSA_OK) st = refail(st, dir);
    if (st == PISSA_OK && !(c->lora_dropout >= 0 && c->lora_dropout < 1))
        st = pissa__fail(PISSA_ERR_FORMAT, "%s: adapter_config.json: field 'lora_dropout' is %g, not in [0, 1)", dir,
                         c->lora_dropout);
    if (st == PISSA_OK && strcmp(c->init_lora_weights, "false") != 0 &&
        pissa_init_parse(c->init_lora_weights, &init) != PISSA_OK)
        st = refail(PISSA_ERR_UNSUPPORTED, dir);
    init.use_rslora = c->use_rslora;
    if (st == PISSA_OK) {
        st = load_adapter_tensors(m, pa, slots, &init);
        if (st != PISSA_OK && st != PISSA_ERR_NOMEM) st = refail(st, dir);
        if (st == PISSA_OK) st = register_adapters(m);
        if (st != PISSA_OK) attach_failed(m, st);
    }
    if (st == PISSA_OK) {
        m->peft = *c;
        m->dropout = c->lora_dropout;
    }
    free(slots);
    pissa_peft_adapter_free(pa);
    return st;
}

pissa_status pissa_model_save_adapter(const pissa_model *m, const char *dir, pissa_dtype dtype) {
    if (!m || !dir) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_model_save_adapter: NULL argument");
    if (!m->n_ad) return pissa__fail(PISSA_ERR_INVALID_ARG, "model has no adapters to save");
    pissa_peft_adapter *pa;
    PISSA_TRY(pissa_peft_adapter_create(&m->peft, &pa));
    pissa_status st = PISSA_OK;
    for (size_t i = 0; st == PISSA_OK && i < m->n_ad; i++) {
        const adapter *a = &m->ad[i];
        st = pissa_peft_adapter_add(pa, a->module, a->r, a->in, a->out, a->A, a->B);
    }
    if (st == PISSA_OK) st = pissa_peft_adapter_save(pa, dir, dtype);
    pissa_peft_adapter_free(pa);
    return st;
}

size_t pissa_model_adapter_count(const pissa_model *m) { return m ? m->n_ad : 0; }

const char *pissa_model_adapter_name(const pissa_model *m, size_t i) {
    return m && i < m->n_ad ? m->ad[i].module : NULL;
}

pissa_status pissa_model_adapter_find(const pissa_model *m, const char *module, size_t *i) {
    if (!m || !module || !i) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_model_adapter_find: NULL argument");
    for (size_t k = 0; k < m->n_ad; k++)
        if (!strcmp(m->ad[k].module, module)) return *i = k, PISSA_OK;
    return pissa__fail(PISSA_ERR_NOT_FOUND, "model has no adapter on '%s'", module);
}

pissa_status pissa_model_adapter(const pissa_model *m, size_t i, pissa_adapter_view *out) {
    if (!m || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_model_adapter: NULL argument");
    if (i >= m->n_ad)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "adapter index %zu out of range (%zu adapters)", i, m->n_ad);
    const adapter *a = &m->ad[i];
    *out = (pissa_adapter_view){.module = a->module, .r = a->r, .in = a->in, .out = a->out, .scale = a->scale,
                                .A = a->A, .B = a->B, .dA = m->params.p[a->pA].grad, .dB = m->params.p[a->pB].grad};
    return PISSA_OK;
}

/* ---- full fine-tuning, the trainable parameters, saving the base ---- */

pissa_status pissa_model_set_full_finetune(pissa_model *m) {
    if (!m) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_model_set_full_finetune: NULL argument");
    if (m->full) return PISSA_OK;
    if (m->n_ad)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "model has adapters: full fine-tuning trains the base weights "
                           "themselves, so it needs a model without adapters");
    /* Mapped weights are read-only and the other formats are not float32: each becomes an owned float32 tensor. The
     * replaced forms are kept until the new parameters are registered, so a failure restores the model. */
    size_t n = m->w.n;
    pissa__weights old = m->w; /* the arrays are copied below; this keeps the old entries */
    old.tensors = pissa__calloc(n ? n : 1, sizeof *old.tensors);
    old.q = pissa__calloc(n ? n : 1, sizeof *old.q);
    old.maps = pissa__calloc(n ? n : 1, sizeof *old.maps);
    pissa_status st = old.tensors && old.q && old.maps ? PISSA_OK
                                                     : pissa__fail(PISSA_ERR_NOMEM, "out of memory for full fine-tuning");
    for (size_t i = 0; i < n && st == PISSA_OK; i++) {
        if (m->w.tensors[i] && pissa_tensor_ownership(m->w.tensors[i]) == PISSA_OWNED) continue;
        pissa_tensor *copy = NULL;
        if (m->w.tensors[i]) st = pissa_tensor_clone(m->w.tensors[i], &copy);
        else {
            int64_t shape[2] = {m->w.q[i].rows, m->w.q[i].cols};
            if ((st = pissa_tensor_create(2, shape, &copy)) == PISSA_OK)
                pissa__qweight_dequantize(&m->w.q[i], 0, shape[0], pissa_tensor_data(copy));
        }
        if (st != PISSA_OK) {
            st = pissa__fail(st, "full fine-tuning: out of memory for a float32 copy of '%s'", m->w.names[i]);
            break;
        }
        old.tensors[i] = m->w.tensors[i], old.q[i] = m->w.q[i], old.maps[i] = m->w.maps[i];
        m->w.tensors[i] = copy, m->w.q[i] = (pissa__qweight){0}, m->w.maps[i] = NULL;
    }
    pissa__params frozen = m->params;
    int registered = 0;
    if (st == PISSA_OK) {
        memset(&m->params, 0, sizeof m->params);
        registered = 1;
        st = register_base(m, 1); /* same order as at load, so the parameter ids do not change */
    }
    for (size_t i = 0; old.tensors && old.q && old.maps && i < n; i++) {
        int swapped = old.tensors[i] || old.q[i].data;
        if (!swapped) continue;
        if (st != PISSA_OK) { /* put the old form back */
            pissa_tensor_free(m->w.tensors[i]);
            m->w.tensors[i] = old.tensors[i], m->w.q[i] = old.q[i], m->w.maps[i] = old.maps[i];
        } else {
            pissa_tensor_free(old.tensors[i]);
            pissa__qweight_release(&old.q[i]);
            pissa__mapping_release(old.maps[i]);
        }
    }
    free(old.tensors);
    free(old.q);
    free(old.maps);
    if (st != PISSA_OK) {
        if (registered) {
            pissa__params_free(&m->params);
            m->params = frozen;
        }
        return st;
    }
    pissa__params_free(&frozen);
    pissa__graph_free(m->g); /* every value now needs a gradient */
    m->g = NULL;
    m->full = 1;
    return PISSA_OK;
}

int pissa_model_full_finetune(const pissa_model *m) { return m ? m->full : 0; }

size_t pissa_model_param_count(const pissa_model *m) {
    if (!m) return 0;
    return m->full ? m->params.n : 2 * m->n_ad; /* full: every base parameter; else A and B of each adapter */
}

pissa_status pissa_model_param(const pissa_model *m, size_t i, pissa_param_view *out) {
    if (!m || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_model_param: NULL argument");
    size_t n = pissa_model_param_count(m);
    if (i >= n) return pissa__fail(PISSA_ERR_INVALID_ARG, "parameter index %zu out of range (%zu parameters)", i, n);
    const pissa__param *p;
    int ndim = 2;
    if (m->full) {
        p = &m->params.p[i];
        int64_t shape[2];
        ndim = pissa__weights_shape(&m->w, (size_t)pissa__weights_index(&m->w, p->name), shape);
    } else {
        const adapter *a = &m->ad[i / 2];
        p = &m->params.p[i % 2 ? a->pB : a->pA];
    }
    *out = (pissa_param_view){.name = p->name, .ndim = ndim, .rows = p->rows, .cols = p->cols, .data = p->data,
                              .grad = p->grad};
    return PISSA_OK;
}

pissa_status pissa_model_save(const pissa_model *m, const char *dir, int dtype) {
    if (!m || !dir) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_model_save: NULL argument");
    if (m->base < 0 || m->full) return pissa__weights_save_hf(&m->w, dir, dtype); /* residuals are in m->w already */
    /* The load converted the base: what no residual replaced is written from the checkpoint as it stores it (a
     * quantized copy is not the model), each residual from memory. */
    pissa__weights src, w;
    PISSA_TRY(pissa__weights_load(m->path, NULL, &src));
    w = src;
    w.tensors = pissa__alloc(src.n ? src.n : 1, sizeof *w.tensors);
    w.q = pissa__alloc(src.n ? src.n : 1, sizeof *w.q);
    pissa_status st = w.tensors && w.q ? PISSA_OK : pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    if (st == PISSA_OK) {
        memcpy(w.tensors, src.tensors, src.n * sizeof *w.tensors);
        memcpy(w.q, src.q, src.n * sizeof *w.q);
    }
    for (size_t i = 0; st == PISSA_OK && i < m->n_ad; i++) {
        if (!m->ad[i].replaced) continue;
        const char *name = m->params.p[m->ad[i].pW].name;
        ptrdiff_t k = pissa__weights_index(&src, name), j = pissa__weights_index(&m->w, name);
        if (k < 0 || j < 0) st = pissa__fail(PISSA_ERR_NOT_FOUND, "%s: '%s' is not in the checkpoint", m->path, name);
        else w.tensors[k] = m->w.tensors[j], w.q[k] = pissa__weights_matrix(&m->w, (size_t)j);
        if (st == PISSA_OK && w.tensors[k]) w.q[k] = (pissa__qweight){0};
    }
    if (st == PISSA_OK) st = pissa__weights_save_hf(&w, dir, dtype);
    free(w.tensors);
    free(w.q);
    pissa__weights_free(&src);
    return st;
}

void pissa_model_zero_grad(pissa_model *m) {
    if (m) pissa__params_zero_grad(&m->params);
}

void pissa_model_set_training(pissa_model *m, int training, uint64_t seed) {
    if (!m) return;
    m->training = training != 0;
    pissa__rng_seed(&m->rng, seed);
    m->mask_rows[0] = m->mask_rows[1] = 0;
}

void pissa__model_set_slice(pissa_model *m, int rows_before, int rows_after) {
    m->mask_rows[0] = rows_before;
    m->mask_rows[1] = rows_after;
}

void pissa_model_set_grad_checkpoint(pissa_model *m, int on) {
    if (!m || m->checkpoint == (on != 0)) return;
    m->checkpoint = on != 0;
    pissa__graph_free(m->g); /* planned again, the other way, at the next call */
    m->g = NULL;
}

int pissa_model_grad_checkpoint(const pissa_model *m) { return m ? m->checkpoint : 0; }

size_t pissa_model_arena_bytes(const pissa_model *m) {
    if (!m) return 0;
    return (m->g ? pissa__graph_bytes(m->g) : 0) + m->params.grad_floats * sizeof(float);
}

size_t pissa_model_grad_tensor_count(const pissa_model *m) {
    size_t n = 0;
    for (size_t i = 0; m && i < m->params.n; i++) n += m->params.p[i].grad != NULL;
    return n;
}

/* ---- the graph of LlamaForCausalLM for one batch shape ---- */

/* y = x·Wᵀ (+ b), or the adapter linear when projection J of layer L has one. */
static pissa_status linear(pissa_model *m, pissa__graph *g, int l, int j, int x, int *y) {
    int k = m->ad_index[l * N_PROJ + j], bias = m->layers[l].bias[j];
    if (k < 0) PISSA_TRY(pissa__g_matmul(g, x, m->layers[l].proj[j], y));
    else {
        const adapter *a = &m->ad[k];
        PISSA_TRY(pissa__g_lora(g, x, a->pW, a->pA, a->pB, (float)a->scale, (float)m->dropout, y));
    }
    return bias < 0 ? PISSA_OK : pissa__g_bias(g, *y, bias, y);
}

static pissa_status build(pissa_model *m, pissa__graph *g) {
    const pissa_llama_config *c = &m->w.cfg;
    int H = (int)c->num_attention_heads, KV = (int)c->num_key_value_heads, hd = (int)c->head_dim;
    int window = (int)(c->sliding_window < g->T ? c->sliding_window : 0); /* a window as long as T changes nothing */
    float eps = (float)c->rms_norm_eps;
    int x, h, q, k, v, qr, kr, att, o, gt, up, sw, dn;
    PISSA_TRY(pissa__g_embedding(g, m->p_embed, &x));
    for (int l = 0; l < (int)c->num_hidden_layers; l++) {
        const layer_params *lp = &m->layers[l];
        PISSA_TRY(pissa__graph_segment_begin(g)); /* a layer: with checkpointing only its input x is kept */
        /* x += o_proj(attention(rope(q), rope(k), v)) with q, k, v from RMSNorm(x)·w_in (Qwen3: q and k normalised
         * per head first) */
        PISSA_TRY(pissa__g_rmsnorm(g, x, lp->in_norm, eps, &h));
        PISSA_TRY(linear(m, g, l, Q, h, &q));
        PISSA_TRY(linear(m, g, l, K, h, &k));
        PISSA_TRY(linear(m, g, l, V, h, &v));
        if (lp->q_norm >= 0) PISSA_TRY(pissa__g_rmsnorm(g, q, lp->q_norm, eps, &q));
        if (lp->k_norm >= 0) PISSA_TRY(pissa__g_rmsnorm(g, k, lp->k_norm, eps, &k));
        PISSA_TRY(pissa__g_rope(g, q, H, hd, m->inv_freq, &qr));
        PISSA_TRY(pissa__g_rope(g, k, KV, hd, m->inv_freq, &kr));
        PISSA_TRY(pissa__g_attention(g, qr, kr, v, H, KV, hd, window, &att));
        PISSA_TRY(linear(m, g, l, O, att, &o));
        PISSA_TRY(pissa__g_add(g, x, o, &x));
        /* x += down_proj(silu(gate_proj(h)) ⊙ up_proj(h)) with h = RMSNorm(x)·w_post */
        PISSA_TRY(pissa__g_rmsnorm(g, x, lp->post_norm, eps, &h));
        PISSA_TRY(linear(m, g, l, GATE, h, &gt));
        PISSA_TRY(linear(m, g, l, UP, h, &up));
        PISSA_TRY(pissa__g_swiglu(g, gt, up, &sw));
        PISSA_TRY(linear(m, g, l, DOWN, sw, &dn));
        PISSA_TRY(pissa__g_add(g, x, dn, &x));
        PISSA_TRY(pissa__graph_segment_end(g));
    }
    PISSA_TRY(pissa__g_rmsnorm(g, x, m->p_norm, eps, &h));
    PISSA_TRY(pissa__g_matmul(g, h, m->p_head, &m->logits_value));
    PISSA_TRY(pissa__g_cross_entropy(g, m->logits_value));
    g->checkpoint = m->checkpoint;
    return pissa__graph_plan(g);
}

static pissa_status ensure_graph(pissa_model *m, int B, int T) {
    if (m->g && m->g->B == B && m->g->T == T) return PISSA_OK;
    pissa__graph_free(m->g);
    m->g = NULL;
    pissa__graph *g;
    PISSA_TRY(pissa__graph_create(&m->params, B, T, &g));
    pissa_status st = build(m, g);
    if (st != PISSA_OK) {
        pissa__graph_free(g);
        return st;
    }
    m->g = g;
    return PISSA_OK;
}

/* Checks the batch, plans the graph and loads ids, shifted targets and the positions of packed rows (POS, or NULL). */
static pissa_status prepare(pissa_model *m, const int32_t *ids, const int32_t *labels, const int32_t *pos, int B,
                            int T) {
    const pissa_llama_config *c = &m->w.cfg;
    if (!ids) return pissa__fail(PISSA_ERR_INVALID_ARG, "model: input_ids is NULL");
    if (B <= 0 || T <= 0) return pissa__fail(PISSA_ERR_INVALID_ARG, "model: batch shape (%d, %d) is empty", B, T);
    if (T > c->max_position_embeddings)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "model: sequence length T = %d exceeds max_position_embeddings %lld",
                           T, (long long)c->max_position_embeddings);
    int64_t Vv = c->vocab_size;
    for (int64_t i = 0; i < (int64_t)B * T; i++) {
        if (ids[i] < 0 || ids[i] >= Vv)
            return pissa__fail(PISSA_ERR_INVALID_ARG, "model: input_ids[%lld][%lld] = %d is outside [0, %lld)",
                               (long long)(i / T), (long long)(i % T), ids[i], (long long)Vv);
        if (labels && labels[i] != PISSA_IGNORE_INDEX && (labels[i] < 0 || labels[i] >= Vv))
            return pissa__fail(PISSA_ERR_INVALID_ARG, "model: labels[%lld][%lld] = %d is neither -100 nor in [0, %lld)",
                               (long long)(i / T), (long long)(i % T), labels[i], (long long)Vv);
        if (pos && pos[i] != 0 && (i % T == 0 || pos[i] != pos[i - 1] + 1))
            return pissa__fail(PISSA_ERR_INVALID_ARG, "model: position_ids[%lld][%lld] = %d: packed positions start "
                               "at 0 and go up by one within each sequence", (long long)(i / T), (long long)(i % T),
                               pos[i]);
    }
    PISSA_TRY(ensure_graph(m, B, T));
    pissa__graph *g = m->g;
    memcpy(g->ids, ids, sizeof(int32_t) * (size_t)B * T);
    g->packed = pos != NULL;
    if (pos) memcpy(g->pos, pos, sizeof(int32_t) * (size_t)B * T);
    /* HF shift: position t predicts labels[t + 1]; the last position of a row predicts nothing, nor does the last
     * of a packed sequence (the next token starts another: TRL masks the label at each position_ids == 0) */
    if (labels)
        for (int b = 0; b < B; b++) {
            const int32_t *lb = labels + (size_t)b * T, *pb = pos ? pos + (size_t)b * T : NULL;
            int32_t *tg = g->targets + (size_t)b * T;
            for (int t = 0; t + 1 < T; t++) tg[t] = pb && pb[t + 1] == 0 ? PISSA_IGNORE_INDEX : lb[t + 1];
            tg[T - 1] = PISSA_IGNORE_INDEX;
        }
    g->training = m->training;
    g->rng = m->rng;
    g->mask_rows_before = (int64_t)m->mask_rows[0] * T;
    g->mask_rows_after = (int64_t)m->mask_rows[1] * T;
    return PISSA_OK;
}

pissa_status pissa_model_logits(pissa_model *m, const int32_t *ids, int B, int T, float *logits) {
    if (!m || !logits) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_model_logits: NULL argument");
    PISSA_TRY(prepare(m, ids, NULL, NULL, B, T));
    pissa__graph *g = m->g;
    pissa__graph_forward(g, g->n_nodes - 1); /* all but the loss */
    m->rng = g->rng;
    memcpy(logits, g->values[m->logits_value].data, sizeof(float) * (size_t)g->N * (size_t)m->w.cfg.vocab_size);
    return PISSA_OK;
}

pissa_status pissa_model_loss_packed(pissa_model *m, const int32_t *ids, const int32_t *labels,
                                     const int32_t *position_ids, int B, int T, double *loss, int64_t *count) {
    if (!m || !labels) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_model_loss: NULL argument");
    PISSA_TRY(prepare(m, ids, labels, position_ids, B, T));
    pissa__graph_forward(m->g, -1);
    m->rng = m->g->rng;
    if (loss) *loss = m->g->loss;
    if (count) *count = m->g->count;
    return PISSA_OK;
}

pissa_status pissa_model_forward_backward_packed(pissa_model *m, const int32_t *ids, const int32_t *labels,
                                                 const int32_t *position_ids, int B, int T, float dloss, double *loss,
                                                 int64_t *count) {
    PISSA_TRY(pissa_model_loss_packed(m, ids, labels, position_ids, B, T, loss, count));
    pissa__graph_backward(m->g, dloss);
    return PISSA_OK;
}

pissa_status pissa_model_loss(pissa_model *m, const int32_t *ids, const int32_t *labels, int B, int T,
                              double *loss, int64_t *count) {
    return pissa_model_loss_packed(m, ids, labels, NULL, B, T, loss, count);
}

pissa_status pissa_model_forward_backward(pissa_model *m, const int32_t *ids, const int32_t *labels, int B, int T,
                                          float dloss, double *loss, int64_t *count) {
    return pissa_model_forward_backward_packed(m, ids, labels, NULL, B, T, dloss, loss, count);
}

/* ---- the model's pieces, for the one-token forward of the generator (model_internal.h) ---- */

static pissa__linear linear_view(const pissa_model *m, int l, int j) {
    const layer_params *lp = &m->layers[l];
    const pissa__param *W = &m->params.p[lp->proj[j]]; /* the PiSSA residual where one replaced the base */
    pissa__linear v = {.W = W->q, .out = W->rows, .in = W->cols,
                       .bias = lp->bias[j] >= 0 ? m->params.p[lp->bias[j]].data : NULL};
    int k = m->ad_index[l * N_PROJ + j];
    if (k >= 0) {
        const adapter *a = &m->ad[k];
        v.A = a->A, v.B = a->B, v.r = a->r, v.scale = (float)a->scale;
    }
    return v;
}

void pissa__model_layer(const pissa_model *m, int l, pissa__layer_view *out) {
    const layer_params *lp = &m->layers[l];
    const pissa__param *p = m->params.p;
    out->in_norm = p[lp->in_norm].data;
    out->post_norm = p[lp->post_norm].data;
    out->q_norm = lp->q_norm >= 0 ? p[lp->q_norm].data : NULL;
    out->k_norm = lp->k_norm >= 0 ? p[lp->k_norm].data : NULL;
    for (int j = 0; j < N_PROJ; j++) out->proj[j] = linear_view(m, l, j);
}

void pissa__model_ends(const pissa_model *m, pissa__qweight *embed, const float **norm, pissa__qweight *head) {
    *embed = m->params.p[m->p_embed].q;
    *norm = m->params.p[m->p_norm].data;
    *head = m->params.p[m->p_head].q;
}

const float *pissa__model_inv_freq(const pissa_model *m) { return m->inv_freq; }
