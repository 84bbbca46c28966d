/* Interoperability with Hugging Face PEFT: adapter validation against a base, PiSSA → LoRA conversion
 * (docs/interop.md), merged checkpoints and the llama2.c export. Which modules a config targets, and with which
 * rank and alpha, is peft_target.c's. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "peft_internal.h"
#include "interop_internal.h"
#include "peft_target.h"
#include "weights.h"

#define KEY_PREFIX "base_model.model."

/* ---------------------------------------------------------------------------------------------- */
/* an adapter against a base                                                                      */

/* Item I of a list of tensors: its name, and whether it is a float matrix and its (out, in). */
typedef pissa_status (*tensor_at_fn)(const void *src, size_t i, const char **name, int *matrix, int64_t *rows,
                                     int64_t *cols);

/* Every float matrix "X.weight" among the COUNT tensors of SRC as (X, out, in), in order: one allocation holding
 * the array and then the strings (first pass: sizes; second: fill). */
static pissa_status linear_shapes(const void *src, size_t count, tensor_at_fn at, pissa_linear_shape **out,
                                  size_t *n) {
    static const char suffix[] = ".weight";
    const size_t ls = sizeof suffix - 1;
    size_t k = 0, bytes = 0;
    *out = NULL;
    *n = 0;
    for (int pass = 0; pass < 2; pass++) {
        char *strings = pass ? (char *)(*out + k) : NULL;
        size_t m = 0;
        for (size_t i = 0; i < count; i++) {
            const char *name;
            int matrix;
            int64_t rows, cols;
            PISSA_TRY(at(src, i, &name, &matrix, &rows, &cols));
            size_t len = strlen(name);
            if (!matrix || len <= ls || strcmp(name + len - ls, suffix)) continue;
            if (!pass) {
                k++;
                bytes += len - ls + 1;
                continue;
            }
            memcpy(strings, name, len - ls);
            strings[len - ls] = '\0';
            (*out)[m++] = (pissa_linear_shape){strings, rows, cols};
            strings += len - ls + 1;
        }
        if (!pass && !(*out = pissa__alloc(1, k * sizeof **out + bytes + 1)))
            return pissa__fail(PISSA_ERR_NOMEM, "linear shapes: out of memory");
    }
    *n = k;
    return PISSA_OK;
}

static pissa_status checkpoint_tensor_at(const void *src, size_t i, const char **name, int *matrix, int64_t *rows,
                                         int64_t *cols) {
    const pissa_checkpoint *c = src;
    pissa_st_info info;
    *name = pissa_checkpoint_name(c, i);
    PISSA_TRY(pissa_checkpoint_find(c, *name, &info));
    *matrix = info.ndim == 2 && pissa_dtype_is_float(info.dtype);
    *rows = *matrix ? info.shape[0] : 0;
    *cols = *matrix ? info.shape[1] : 0;
    return PISSA_OK;
}

pissa_status pissa_checkpoint_linear_shapes(const pissa_checkpoint *c, pissa_linear_shape **out, size_t *n) {
    if (!c || !out || !n) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_checkpoint_linear_shapes: NULL argument");
    return linear_shapes(c, pissa_checkpoint_count(c), checkpoint_tensor_at, out, n);
}

/* init_lora_weights values PEFT would act on at load time by changing the base weights. */
static int init_transforms_base(const char *init) {
    static const char *const kinds[] = {"pissa", "olora", "corda", "eva", "loftq"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strncasecmp(init, kinds[i], strlen(kinds[i])) == 0) return 1;
    return 0;
}

static pissa_status check_config(const pissa_peft_config *c, int allow_pissa_init) {
    if (c->use_dora)
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "adapter_config.json: field 'use_dora' is true: DoRA adapters are "
                                                  "not supported");
    if (c->has_lora_bias)
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "adapter_config.json: field 'lora_bias' is true: LoRA biases are "
                                                  "not supported");
    if (c->has_modules_to_save)
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "adapter_config.json: field 'modules_to_save' is not null: fully "
                                                  "trained extra modules are not supported");
    if (c->fan_in_fan_out)
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "adapter_config.json: field 'fan_in_fan_out' is true: that is for "
                                                  "GPT-2 style Conv1D weights (in, out); Llama's are (out, in)");
    int redone_by_caller = allow_pissa_init && !strncasecmp(c->init_lora_weights, "pissa", 5);
    if (init_transforms_base(c->init_lora_weights) && !redone_by_caller)
        return pissa__fail(PISSA_ERR_UNSUPPORTED,
                           "adapter_config.json: field 'init_lora_weights' is '%s': PEFT would redo that "
                           "initialisation on the base when loading; save the initial adapter with "
                           "init_lora_weights true (as pissa-init does) or convert it with pissa-convert",
                           c->init_lora_weights);
    return PISSA_OK;
}

static const pissa_linear_shape *find_shape(const pissa_linear_shape *base, size_t n, const char *module) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(base[i].module, module) == 0) return &base[i];
    return NULL;
}

static pissa_status check_module(pissa__resolver *R, const char *module, const pissa_tensor *A, const pissa_tensor *B,
                                 const pissa_linear_shape *base, size_t n_base) {
    const pissa_linear_shape *s = find_shape(base, n_base, module);
    int64_t r = pissa_tensor_dim(A, 0), in = pissa_tensor_dim(A, 1), out = pissa_tensor_dim(B, 0), want;
    if (!s)
        return pissa__fail(PISSA_ERR_NOT_FOUND, "adapter tensor '" KEY_PREFIX "%s.lora_A.weight': module '%s' is not "
                           "a linear weight of the base model", module, module);
    int targeted;
    PISSA_TRY(pissa__resolve(R, module, &targeted, &want, NULL, NULL));
    if (!targeted)
        return pissa__fail(PISSA_ERR_FORMAT, "adapter tensor '" KEY_PREFIX "%s.lora_A.weight': module '%s' is not "
                           "targeted by adapter_config.json (target_modules '%s'%s)", module, module,
                           R->cfg->target_modules, R->cfg->has_layers_to_transform ? ", layers_to_transform" : "");
    if (r != want)
        return pissa__fail(PISSA_ERR_FORMAT, "adapter tensor '" KEY_PREFIX "%s.lora_A.weight' has rank %lld but "
                           "adapter_config.json assigns %lld (r / rank_pattern)", module, (long long)r,
                           (long long)want);
    if (in != s->in)
        return pissa__fail(PISSA_ERR_SHAPE, "adapter tensor '" KEY_PREFIX "%s.lora_A.weight' is (%lld, %lld) but the "
                           "base weight '%s.weight' is (%lld, %lld): expected (%lld, %lld)", module, (long long)r,
                           (long long)in, module, (long long)s->out, (long long)s->in, (long long)r, (long long)s->in);
    if (out != s->out)
        return pissa__fail(PISSA_ERR_SHAPE, "adapter tensor '" KEY_PREFIX "%s.lora_B.weight' is (%lld, %lld) but the "
                           "base weight '%s.weight' is (%lld, %lld): expected (%lld, %lld)", module, (long long)out,
                           (long long)r, module, (long long)s->out, (long long)s->in, (long long)s->out, (long long)r);
    return PISSA_OK;
}

static pissa_status check_adapter(const pissa_peft_adapter *a, const pissa_linear_shape *base, size_t n_base,
                                  int allow_pissa_init) {
    const pissa_peft_config *c = pissa_peft_adapter_config(a);
    PISSA_TRY(check_config(c, allow_pissa_init));
    pissa__resolver R;
    PISSA_TRY(pissa__resolver_init(&R, c));
    pissa_status st = PISSA_OK;
    for (size_t i = 0; st == PISSA_OK && i < pissa_peft_adapter_count(a); i++) {
        const char *module;
        const pissa_tensor *A, *B;
        st = pissa_peft_adapter_module(a, i, &module, &A, &B);
        if (st == PISSA_OK) st = check_module(&R, module, A, B, base, n_base);
    }
    size_t missing = 0;
    const char *first = NULL;
    for (size_t i = 0; st == PISSA_OK && i < n_base; i++) {
        int targeted;
        size_t at;
        st = pissa__resolve(&R, base[i].module, &targeted, NULL, NULL, NULL);
        if (st == PISSA_OK && targeted && pissa_peft_adapter_find(a, base[i].module, &at) != PISSA_OK) {
            if (!missing++) first = base[i].module;
        }
    }
    if (st == PISSA_OK) pissa_clear_error(); /* the misses of pissa_peft_adapter_find above */
    if (st == PISSA_OK && missing)
        pissa__log(PISSA_LOG_WARN, "adapter: %zu module(s) targeted by adapter_config.json have no tensors (first: "
                   "'%s'); they are left unchanged", missing, first);
    pissa__resolver_free(&R);
    return st;
}

pissa_status pissa_peft_adapter_check(const pissa_peft_adapter *a, const pissa_linear_shape *base, size_t n_base) {
    if (!a || (!base && n_base)) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_adapter_check: NULL argument");
    return check_adapter(a, base, n_base, 0);
}

/* ---------------------------------------------------------------------------------------------- */
/* an adapter on the projections of a Llama model (interop_internal.h)                            */

/* The weights of a loaded model (any format in memory) as a tensor list for linear_shapes. */
static pissa_status weights_tensor_at(const void *src, size_t i, const char **name, int *matrix, int64_t *rows,
                                      int64_t *cols) {
    const pissa__weights *w = src;
    int64_t shape[2];
    *name = w->names[i];
    *matrix = pissa__weights_shape(w, i, shape) == 2;
    *rows = *matrix ? shape[0] : 0;
    *cols = *matrix ? shape[1] : 0;
    return PISSA_OK;
}

/* Layer and projection of MODULE ("model.layers.L.<proj path>"), or -1 in *proj. */
static void llama_slot(const char *module, int64_t n_layers, int64_t *layer, int *proj) {
    long long l = -1;
    int used = 0;
    *proj = -1;
    if (sscanf(module, "model.layers.%lld.%n", &l, &used) != 1 || used == 0 || l < 0 || l >= n_layers) return;
    for (int j = 0; j < PISSA_N_PROJ; j++)
        if (!strcmp(module + used, pissa_proj_path(j))) *proj = j;
    *layer = l;
}

pissa_status pissa__peft_map_llama(const pissa_peft_adapter *a, const pissa__weights *w, int allow_pissa_init,
                                   pissa__peft_slot *slots) {
    const pissa_peft_config *c = pissa_peft_adapter_config(a);
    int64_t L = w->cfg.num_hidden_layers;
    if (strcmp(c->bias, "none") != 0) /* PEFT would train the biases too; the base's biases stay frozen here */
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "adapter_config.json: field 'bias' is '%s': only \"none\" is "
                           "supported", c->bias);
    pissa_linear_shape *base;
    size_t n_base = 0;
    PISSA_TRY(linear_shapes(w, w->n, weights_tensor_at, &base, &n_base)); /* the modules an adapter may name */
    pissa_status st = check_adapter(a, base, n_base, allow_pissa_init);
    free(base);
    PISSA_TRY(st);
    pissa__resolver R;
    PISSA_TRY(pissa__resolver_init(&R, c));
    char module[160];
    for (int64_t l = 0; st == PISSA_OK && l < L; l++)
        for (int j = 0; st == PISSA_OK && j < PISSA_N_PROJ; j++) {
            pissa__peft_slot *s = &slots[l * PISSA_N_PROJ + j];
            snprintf(module, sizeof module, "model.layers.%lld.%s", (long long)l, pissa_proj_path(j));
            s->module = -1;
            st = pissa__resolve(&R, module, NULL, &s->r, &s->alpha, &s->scale);
        }
    pissa__resolver_free(&R);
    for (size_t i = 0; st == PISSA_OK && i < pissa_peft_adapter_count(a); i++) {
        const char *module_i;
        const pissa_tensor *A, *B;
        st = pissa_peft_adapter_module(a, i, &module_i, &A, &B);
        int64_t l = -1;
        int j;
        if (st == PISSA_OK) llama_slot(module_i, L, &l, &j);
        if (st == PISSA_OK && j < 0)
            st = pissa__fail(PISSA_ERR_UNSUPPORTED, "adapter tensor '" KEY_PREFIX "%s.lora_A.weight': module '%s' is "
                             "not one of the projections libpissa adapts (q_proj, k_proj, v_proj, o_proj, gate_proj, "
                             "up_proj, down_proj of a layer)", module_i, module_i);
        if (st == PISSA_OK) slots[l * PISSA_N_PROJ + j].module = (int64_t)i;
    }
    return st;
}

/* ---------------------------------------------------------------------------------------------- */
/* PiSSA → LoRA                                                                                   */

static int patterns_equal(const pissa_peft_pattern *x, int64_t nx, const pissa_peft_pattern *y, int64_t ny) {
    if (nx != ny) return 0;
    for (int64_t i = 0; i < nx; i++)
        if (strcmp(x[i].key, y[i].key) != 0 || x[i].value != y[i].value) return 0;
    return 1;
}

static pissa_status same_setup(const pissa_peft_config *t, const pissa_peft_config *i) {
    const char *field = t->r != i->r                    ? "r"
                        : t->lora_alpha != i->lora_alpha ? "lora_alpha"
                        : t->use_rslora != i->use_rslora ? "use_rslora"
                        : !patterns_equal(t->rank_pattern, t->n_rank_pattern, i->rank_pattern, i->n_rank_pattern)
                            ? "rank_pattern"
                        : !patterns_equal(t->alpha_pattern, t->n_alpha_pattern, i->alpha_pattern, i->n_alpha_pattern)
                            ? "alpha_pattern"
                            : NULL;
    if (field)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "PiSSA to LoRA: the trained and the initial adapter differ in "
                           "adapter_config.json field '%s': the initial adapter must be the one training started from",
                           field);
    return PISSA_OK;
}

/* A' = concat_rows(A, A0) (2r, in); B' = concat_cols(B, −B0) (out, 2r). */
static void concat_pair(const pissa_tensor *A, const pissa_tensor *B, const pissa_tensor *A0, const pissa_tensor *B0,
                        float *A2, float *B2) {
    int64_t r = pissa_tensor_dim(A, 0), in = pissa_tensor_dim(A, 1), out = pissa_tensor_dim(B, 0);
    memcpy(A2, pissa_tensor_data(A), sizeof(float) * (size_t)(r * in));
    memcpy(A2 + r * in, pissa_tensor_data(A0), sizeof(float) * (size_t)(r * in));
    const float *b = pissa_tensor_data(B), *b0 = pissa_tensor_data(B0);
    for (int64_t o = 0; o < out; o++)
        for (int64_t k = 0; k < r; k++) {
            B2[o * 2 * r + k] = b[o * r + k];
            B2[o * 2 * r + r + k] = -b0[o * r + k];
        }
}

pissa_status pissa_peft_pissa_to_lora(const pissa_peft_adapter *trained, const pissa_peft_adapter *initial,
                                      const char *base_model, pissa_peft_adapter **out) {
    if (!trained || !initial || !out)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_pissa_to_lora: NULL argument");
    *out = NULL;
    const pissa_peft_config *ct = pissa_peft_adapter_config(trained);
    PISSA_TRY(same_setup(ct, pissa_peft_adapter_config(initial)));
    size_t n = pissa_peft_adapter_count(trained);
    if (pissa_peft_adapter_count(initial) != n)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "PiSSA to LoRA: the trained adapter has %zu modules but the initial "
                           "one has %zu", n, pissa_peft_adapter_count(initial));
    /* The scale s = α/r (or α/√r) is kept by doubling r and multiplying α by 2 (or √2). */
    pissa_peft_config c = *ct;
    double f = c.use_rslora ? sqrt(2.0) : 2.0;
    c.r *= 2;
    c.lora_alpha *= f;
    for (int64_t i = 0; i < c.n_rank_pattern; i++) c.rank_pattern[i].value *= 2;
    for (int64_t i = 0; i < c.n_alpha_pattern; i++) c.alpha_pattern[i].value *= f;
    snprintf(c.init_lora_weights, sizeof c.init_lora_weights, "true");
    if (base_model) {
        if (strlen(base_model) >= sizeof c.base_model_name_or_path)
            return pissa__fail(PISSA_ERR_INVALID_ARG, "PiSSA to LoRA: base model name is longer than %zu bytes",
                               sizeof c.base_model_name_or_path - 1);
        strcpy(c.base_model_name_or_path, base_model);
    }
    pissa_peft_adapter *res = NULL;
    PISSA_TRY(pissa_peft_adapter_create(&c, &res));
    float *A2 = NULL, *B2 = NULL;
    pissa_status st = PISSA_OK;
    for (size_t i = 0; st == PISSA_OK && i < n; i++) {
        const char *module;
        const pissa_tensor *A, *B, *A0, *B0;
        size_t j;
        st = pissa_peft_adapter_module(trained, i, &module, &A, &B);
        if (st == PISSA_OK && pissa_peft_adapter_find(initial, module, &j) != PISSA_OK)
            st = pissa__fail(PISSA_ERR_INVALID_ARG, "PiSSA to LoRA: module '%s' of the trained adapter is not in the "
                             "initial adapter", module);
        if (st == PISSA_OK) st = pissa_peft_adapter_module(initial, j, &module, &A0, &B0);
        if (st != PISSA_OK) break;
        int64_t r = pissa_tensor_dim(A, 0), in = pissa_tensor_dim(A, 1), out_dim = pissa_tensor_dim(B, 0);
        if (pissa_tensor_dim(A0, 0) != r || pissa_tensor_dim(A0, 1) != in || pissa_tensor_dim(B0, 0) != out_dim) {
            st = pissa__fail(PISSA_ERR_INVALID_ARG, "PiSSA to LoRA: module '%s': trained A (%lld, %lld), "
                             "B (%lld, %lld) but initial A (%lld, %lld), B (%lld, %lld)", module, (long long)r,
                             (long long)in, (long long)out_dim, (long long)r, (long long)pissa_tensor_dim(A0, 0),
                             (long long)pissa_tensor_dim(A0, 1), (long long)pissa_tensor_dim(B0, 0),
                             (long long)pissa_tensor_dim(B0, 1));
            break;
        }
        A2 = pissa__alloc((size_t)(2 * r * in), sizeof(float));
        B2 = pissa__alloc((size_t)(out_dim * 2 * r), sizeof(float));
        if (!A2 || !B2) st = pissa__fail(PISSA_ERR_NOMEM, "PiSSA to LoRA: out of memory for module '%s'", module);
        if (st == PISSA_OK) {
            concat_pair(A, B, A0, B0, A2, B2);
            st = pissa_peft_adapter_add(res, module, 2 * r, in, out_dim, A2, B2);
        }
        free(A2);
        free(B2);
        A2 = B2 = NULL;
    }
    if (st != PISSA_OK) {
        pissa_peft_adapter_free(res);
        return st;
    }
    *out = res;
    return PISSA_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* merge and unmerge                                                                              */

/* W ± s·B·A for MODULE with R's scale. */
static pissa_status merge_module(pissa__resolver *R, const pissa_peft_adapter *a, const char *module, float *W, int64_t out,
                                 int64_t in, int sign, int *merged) {
    size_t i;
    if (merged) *merged = 0;
    if (pissa_peft_adapter_find(a, module, &i) != PISSA_OK) {
        pissa_clear_error();
        return PISSA_OK;
    }
    const pissa_tensor *A, *B;
    PISSA_TRY(pissa_peft_adapter_module(a, i, &module, &A, &B));
    int64_t r = pissa_tensor_dim(A, 0);
    if (pissa_tensor_dim(A, 1) != in || pissa_tensor_dim(B, 0) != out)
        return pissa__fail(PISSA_ERR_SHAPE, "merge: module '%s': A (%lld, %lld), B (%lld, %lld) do not fit the weight "
                           "(%lld, %lld)", module, (long long)r, (long long)pissa_tensor_dim(A, 1),
                           (long long)pissa_tensor_dim(B, 0), (long long)r, (long long)out, (long long)in);
    double scale;
    PISSA_TRY(pissa__resolve(R, module, NULL, NULL, NULL, &scale));
    PISSA_TRY(pissa_lora_merge(W, out, in, r, pissa_tensor_data(A), pissa_tensor_data(B), sign * scale));
    if (merged) *merged = 1;
    return PISSA_OK;
}

static pissa_status merge_one(const pissa_peft_adapter *a, const char *module, float *W, int64_t out, int64_t in,
                              int sign, int *merged) {
    if (!a || !module || !W) return pissa__fail(PISSA_ERR_INVALID_ARG, "merge: NULL argument");
    pissa__resolver R;
    PISSA_TRY(pissa__resolver_init(&R, pissa_peft_adapter_config(a)));
    pissa_status st = merge_module(&R, a, module, W, out, in, sign, merged);
    pissa__resolver_free(&R);
    return st;
}

pissa_status pissa_peft_merge_module(const pissa_peft_adapter *a, const char *module, float *W, int64_t out,
                                     int64_t in, int *merged) {
    return merge_one(a, module, W, out, in, +1, merged);
}

pissa_status pissa_peft_unmerge_module(const pissa_peft_adapter *a, const char *module, float *W, int64_t out,
                                       int64_t in, int *merged) {
    return merge_one(a, module, W, out, in, -1, merged);
}

/* ---------------------------------------------------------------------------------------------- */
/* merged checkpoint                                                                              */

typedef struct merge_ctx {
    const pissa_checkpoint *base;
    const pissa_peft_adapter *adapter;
    pissa__resolver *R;
    int sign;
} merge_ctx;

/* Fills one tensor of the output: the base's values, the adapter merged in when it adapts this weight. */
static pissa_status fill_merged(void *user, const char *name, float *dst, int64_t numel) {
    merge_ctx *m = user;
    PISSA_TRY(pissa_checkpoint_read_f32(m->base, name, dst, numel));
    if (!m->adapter) return PISSA_OK;
    pissa_st_info info;
    PISSA_TRY(pissa_checkpoint_find(m->base, name, &info));
    size_t len = strlen(name);
    if (info.ndim != 2 || len <= 7 || strcmp(name + len - 7, ".weight") != 0) return PISSA_OK;
    char *module = pissa__strdup(name);
    if (!module) return pissa__fail(PISSA_ERR_NOMEM, "merge: out of memory");
    module[len - 7] = '\0';
    pissa_status st = merge_module(m->R, m->adapter, module, dst, info.shape[0], info.shape[1], m->sign, NULL);
    free(module);
    return st;
}

pissa_status pissa_peft_merge_checkpoint(const pissa_checkpoint *base, const pissa_peft_adapter *a, int unmerge,
                                         int dtype, const char *dir) {
    if (!base || !dir) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_merge_checkpoint: NULL argument");
    if (dtype != -1 && !pissa_dtype_is_float((pissa_dtype)dtype))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: output dtype must be F32, F16 or BF16", dir);
    pissa_status st = PISSA_OK;
    if (a) {
        pissa_linear_shape *shapes;
        size_t n;
        PISSA_TRY(pissa_checkpoint_linear_shapes(base, &shapes, &n));
        st = pissa_peft_adapter_check(a, shapes, n);
        free(shapes);
        PISSA_TRY(st);
    }
    pissa__resolver R;
    memset(&R, 0, sizeof R);
    if (a) PISSA_TRY(pissa__resolver_init(&R, pissa_peft_adapter_config(a)));
    merge_ctx ctx = {base, a, &R, unmerge ? -1 : +1};
    pissa_st_writer *w = NULL;
    char *config = NULL, *weights = NULL, *config_path = NULL;
    if (st == PISSA_OK) st = pissa_st_writer_create(&w);
    for (size_t i = 0; st == PISSA_OK && i < pissa_checkpoint_count(base); i++) {
        const char *name = pissa_checkpoint_name(base, i);
        pissa_st_info info;
        st = pissa_checkpoint_find(base, name, &info);
        if (st != PISSA_OK) break;
        int is_float = pissa_dtype_is_float(info.dtype);
        pissa_dtype out_dt = is_float && dtype != -1 ? (pissa_dtype)dtype : info.dtype;
        size_t at;
        int adapted = 0;
        if (a && info.ndim == 2 && strlen(name) > 7) {
            char *module = pissa__strdup(name);
            if (!module) {
                st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
                break;
            }
            module[strlen(module) - 7] = '\0';
            adapted = strcmp(name + strlen(name) - 7, ".weight") == 0 &&
                      pissa_peft_adapter_find(a, module, &at) == PISSA_OK;
            free(module);
        }
        if (adapted) st = pissa_st_writer_add_fill(w, name, out_dt, info.ndim, info.shape, fill_merged, &ctx);
        else st = pissa_st_writer_add_from_checkpoint(w, base, name, out_dt); /* the stored bytes, or converted */
    }
    if (st == PISSA_OK) pissa_clear_error(); /* misses of pissa_peft_adapter_find */
    const char *json = pissa_checkpoint_config_json(base);
    if (st == PISSA_OK && dtype != -1) st = pissa_config_json_set_dtype(json, dtype, &config);
    const char *text = config ? config : json;
    pissa_dir_txn *txn = NULL; /* the folder is replaced whole: never new weights beside an old config */
    if (st == PISSA_OK) st = pissa_dir_txn_begin(dir, pissa__checkpoint_files, &txn);
    if (st == PISSA_OK) {
        weights = pissa__path_join(pissa_dir_txn_path(txn), "model.safetensors");
        config_path = pissa__path_join(pissa_dir_txn_path(txn), "config.json");
        if (!weights || !config_path) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    }
    if (st == PISSA_OK) st = pissa_st_writer_write(w, weights);
    if (st == PISSA_OK) st = pissa_write_file_atomic(config_path, text, strlen(text));
    if (st == PISSA_OK) st = pissa_dir_txn_commit(txn);
    else pissa_dir_txn_abort(txn);
    pissa_st_writer_free(w);
    free(config);
    free(weights);
    free(config_path);
    if (a) pissa__resolver_free(&R);
    return st;
}

/* ---------------------------------------------------------------------------------------------- */
/* llama2.c → Hugging Face                                                                        */

/* Linear shapes of W: every 2-D "X.weight". Module strings point into W's names (modules are written
 * into MODS, (n) buffers the caller frees). */
static pissa_status weights_shapes(const pissa__weights *w, pissa_linear_shape *shapes, char **mods, size_t *n) {
    *n = 0;
    for (size_t i = 0; i < w->n; i++) {
        size_t len = strlen(w->names[i]);
        int64_t shape[2];
        if (pissa__weights_shape(w, i, shape) != 2 || len <= 7 || strcmp(w->names[i] + len - 7, ".weight") != 0)
            continue;
        char *m = pissa__strdup(w->names[i]);
        if (!m) return pissa__fail(PISSA_ERR_NOMEM, "llama2.c export: out of memory");
        m[len - 7] = '\0';
        mods[*n] = m;
        shapes[*n] = (pissa_linear_shape){m, shape[0], shape[1]};
        (*n)++;
    }
    return PISSA_OK;
}

/* Replaces each adapted tensor of W (float32: a llama2.c checkpoint) by an OWNED copy with the adapter merged in. */
static pissa_status merge_weights(pissa__weights *w, const pissa_peft_adapter *a, int sign) {
    pissa_linear_shape *shapes = pissa__calloc(w->n ? w->n : 1, sizeof *shapes);
    char **mods = pissa__calloc(w->n ? w->n : 1, sizeof *mods);
    size_t n = 0;
    pissa__resolver R;
    int have_resolver = 0;
    pissa_status st = shapes && mods ? PISSA_OK : pissa__fail(PISSA_ERR_NOMEM, "llama2.c export: out of memory");
    if (st == PISSA_OK) st = weights_shapes(w, shapes, mods, &n);
    if (st == PISSA_OK) st = pissa_peft_adapter_check(a, shapes, n);
    if (st == PISSA_OK && (st = pissa__resolver_init(&R, pissa_peft_adapter_config(a))) == PISSA_OK) have_resolver = 1;
    for (size_t i = 0; st == PISSA_OK && i < n; i++) {
        size_t at;
        if (pissa_peft_adapter_find(a, shapes[i].module, &at) != PISSA_OK) continue;
        size_t k = 0;
        while (k < w->n && !(strncmp(w->names[k], shapes[i].module, strlen(shapes[i].module)) == 0 &&
                             strcmp(w->names[k] + strlen(shapes[i].module), ".weight") == 0))
            k++;
        pissa_tensor *copy;
        st = pissa_tensor_clone(w->tensors[k], &copy);
        if (st == PISSA_OK) {
            pissa_tensor_free(w->tensors[k]);
            w->tensors[k] = copy;
            st = merge_module(&R, a, shapes[i].module, pissa_tensor_data(copy), shapes[i].out, shapes[i].in, sign,
                              NULL);
        }
    }
    if (st == PISSA_OK) pissa_clear_error(); /* misses of pissa_peft_adapter_find */
    if (have_resolver) pissa__resolver_free(&R);
    for (size_t i = 0; mods && i < n; i++) free(mods[i]);
    free(mods);
    free(shapes);
    return st;
}

pissa_status pissa_llama2c_export_hf(const char *path, const pissa_peft_adapter *a, int unmerge, int dtype,
                                     const char *dir) {
    if (!path || !dir) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_llama2c_export_hf: NULL argument");
    if (dtype != -1 && !pissa_dtype_is_float((pissa_dtype)dtype))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: output dtype must be F32, F16 or BF16", dir);
    pissa__weights w;
    memset(&w, 0, sizeof w);
    pissa_status st = pissa__weights_load_llama2c(path, NULL, &w);
    if (st == PISSA_OK && a) st = merge_weights(&w, a, unmerge ? -1 : +1);
    if (st == PISSA_OK) st = pissa__weights_save_hf(&w, dir, dtype == -1 ? PISSA_F32 : (pissa_dtype)dtype);
    pissa__weights_free(&w);
    return st;
}
