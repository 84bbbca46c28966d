/* The model a config.json describes (pissa/config.h): families as transformers reads them, the list of their tensors,
 * the projections, and RoPE's inverse frequencies. Every other part of libpissa reads the model from here. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- projections ---- */

static const char *const proj_names[PISSA_N_PROJ] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                     "gate_proj", "up_proj", "down_proj"};
static const char *const proj_paths[PISSA_N_PROJ] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                     "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                                     "mlp.down_proj"};

const char *pissa_proj_name(int j) { return j >= 0 && j < PISSA_N_PROJ ? proj_names[j] : NULL; }
const char *pissa_proj_path(int j) { return j >= 0 && j < PISSA_N_PROJ ? proj_paths[j] : NULL; }

pissa_status pissa_proj_parse(const char *list, unsigned *mask) {
    if (!list || !mask) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_proj_parse: NULL argument");
    if (!strcmp(list, "all-linear")) return *mask = PISSA_PROJ_ALL, PISSA_OK;
    unsigned m = 0;
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        int found = -1;
        for (int j = 0; j < PISSA_N_PROJ; j++)
            if (strlen(proj_names[j]) == n && !strncmp(p, proj_names[j], n)) found = j;
        if (found < 0)
            return pissa__fail(PISSA_ERR_INVALID_ARG,
                               "target module '%.*s' is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, "
                               "up_proj, down_proj",
                               (int)n, p);
        m |= 1u << found;
        p += n;
        if (*p == ',') p++;
    }
    if (!m) return pissa__fail(PISSA_ERR_INVALID_ARG, "empty list of target modules");
    *mask = m;
    return PISSA_OK;
}

pissa_status pissa_proj_names(unsigned mask, char *buf, size_t size) {
    if (!buf || !size) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_proj_names: no buffer");
    size_t len = 0;
    buf[0] = '\0';
    for (int j = 0; j < PISSA_N_PROJ; j++) {
        if (!(mask & (1u << j))) continue;
        int k = snprintf(buf + len, size - len, "%s%s", len ? "," : "", proj_names[j]);
        if (k < 0 || (size_t)k >= size - len)
            return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_proj_names: buffer too small");
        len += (size_t)k;
    }
    return PISSA_OK;
}

/* ---- config.json ---- */

/* The families: model_type, the architecture class transformers instantiates, and the class defaults that differ
 * from Llama's. */
typedef struct family {
    const char *model_type, *architecture;
    int64_t intermediate_size, num_key_value_heads, head_dim, vocab_size, max_position_embeddings, sliding_window;
    unsigned bias_mask; /* biases the family always has */
    int qk_norm;
} family;

#define QKV (PISSA_PROJ_Q | PISSA_PROJ_K | PISSA_PROJ_V)
static const family families[] = {
    /* LlamaConfig: num_key_value_heads None → H; head_dim None → D / H */
    {"llama", "LlamaForCausalLM", 11008, 0, 0, 32000, 2048, 0, 0, 0},
    /* MistralConfig: sliding_window 4096 when the field is absent */
    {"mistral", "MistralForCausalLM", 14336, 8, 0, 32000, 4096 * 32, 4096, 0, 0},
    /* Qwen2Config; Qwen2Attention has bias=True on q, k, v */
    {"qwen2", "Qwen2ForCausalLM", 22016, 32, 0, 151936, 32768, 0, QKV, 0},
    /* Qwen3Config: head_dim 128; q_norm and k_norm */
    {"qwen3", "Qwen3ForCausalLM", 22016, 32, 128, 151936, 32768, 0, 0, 1},
};

/* Families that transformers has and libpissa refuses, with why (the message names model_type and its value). */
static const struct {
    const char *prefix, *why;
} refused_types[] = {
    {"gemma", "Gemma's embedding scale, (1 + w) RMSNorm and GeGLU MLP are not implemented"},
    {"phi3", "phi3 fuses q, k and v into one qkv_proj (and gate and up into gate_up_proj)"},
    {"phi", "Phi's partial rotary embedding, LayerNorm and dense MLP are not implemented"},
    {"mixtral", "mixture-of-experts models are not implemented"},
    {"qwen2_moe", "mixture-of-experts models are not implemented"},
    {"qwen3_moe", "mixture-of-experts models are not implemented"},
    {"deepseek", "DeepSeek's MLA attention and mixture of experts are not implemented"},
};

/* A field that may be absent; null counts as absent only where transformers treats None as "default". */
static const cJSON *field(const cJSON *root, const char *name, int null_is_absent) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    return v && null_is_absent && cJSON_IsNull(v) ? NULL : v;
}

static pissa_status get_size(const cJSON *root, const char *name, int null_is_absent, const char *source,
                             int64_t *out) {
    const cJSON *v = field(root, name, null_is_absent);
    if (!v) return PISSA_OK;
    double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
    if (!cJSON_IsNumber(v) || d != floor(d) || !(d >= 1 && d < 9007199254740992.0))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: %s must be a positive integer", source, name);
    *out = (int64_t)d;
    return PISSA_OK;
}

static pissa_status get_positive(const cJSON *root, const char *name, const char *source, double *out) {
    const cJSON *v = field(root, name, 1);
    if (!v) return PISSA_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite(v->valuedouble))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: %s must be a positive number", source, name);
    *out = v->valuedouble;
    return PISSA_OK;
}

static pissa_status get_bool(const cJSON *root, const char *name, const char *source, int *out) {
    const cJSON *v = field(root, name, 0);
    if (!v) return PISSA_OK;
    if (!cJSON_IsBool(v)) return pissa__fail(PISSA_ERR_FORMAT, "%s: %s must be true or false", source, name);
    *out = cJSON_IsTrue(v);
    return PISSA_OK;
}

static pissa_status get_string(const cJSON *root, const char *name, int null_is_absent, const char *source,
                               char *out, size_t cap) {
    const cJSON *v = field(root, name, null_is_absent);
    if (!v) return PISSA_OK;
    if (!cJSON_IsString(v)) return pissa__fail(PISSA_ERR_FORMAT, "%s: %s must be a string", source, name);
    if (strlen(v->valuestring) >= cap)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: %s '%.40s...' is too long", source, name, v->valuestring);
    strcpy(out, v->valuestring);
    return PISSA_OK;
}

/* rope_scaling (or transformers 5's rope_parameters, which also carries rope_theta): the rope type and its
 * parameters. "type" is the old spelling of "rope_type". Parameters of a type are required as transformers requires
 * them; a type libpissa does not implement is kept, to be refused by check_supported. */
static pissa_status rope_from_json(const cJSON *rs, const char *key, const char *source, pissa_llama_config *c) {
    if (!cJSON_IsObject(rs)) return pissa__fail(PISSA_ERR_FORMAT, "%s: %s must be an object or null", source, key);
    char name[64];
    snprintf(name, sizeof name, "%s.rope_theta", key);
    const cJSON *theta = field(rs, "rope_theta", 1);
    if (theta && (!cJSON_IsNumber(theta) || !(theta->valuedouble > 0)))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: %s must be a positive number", source, name);
    if (theta) c->rope_theta = theta->valuedouble;
    const char *tkey = field(rs, "rope_type", 1) ? "rope_type" : "type";
    const cJSON *t = field(rs, tkey, 1);
    if (t && !cJSON_IsString(t)) return pissa__fail(PISSA_ERR_FORMAT, "%s: %s.%s must be a string", source, key, tkey);
    snprintf(c->rope_type, sizeof c->rope_type, "%s", t ? t->valuestring : "default");
    int linear = !strcmp(c->rope_type, "linear"), llama3 = !strcmp(c->rope_type, "llama3");
    c->has_rope_scaling = strcmp(c->rope_type, "default") != 0;
    static const char *const params[3] = {"factor", "low_freq_factor", "high_freq_factor"};
    double *dst[3] = {&c->rope_factor, &c->rope_low_freq_factor, &c->rope_high_freq_factor};
    for (int i = 0; i < (llama3 ? 3 : linear ? 1 : 0); i++) {
        const cJSON *v = field(rs, params[i], 0);
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite(v->valuedouble))
            return pissa__fail(PISSA_ERR_FORMAT, "%s: %s.%s (rope_type %s) must be a positive number", source, key,
                               params[i], c->rope_type);
        *dst[i] = v->valuedouble;
    }
    if (llama3) {
        snprintf(name, sizeof name, "%s.original_max_position_embeddings", key);
        c->rope_original_max_position_embeddings = 0;
        PISSA_TRY(get_size(rs, "original_max_position_embeddings", 0, source, &c->rope_original_max_position_embeddings));
        if (!c->rope_original_max_position_embeddings)
            return pissa__fail(PISSA_ERR_FORMAT, "%s: %s is missing (rope_type llama3)", source, name);
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
            return pissa__fail(PISSA_ERR_FORMAT, "%s: %s.high_freq_factor %g must exceed low_freq_factor %g", source,
                               key, c->rope_high_freq_factor, c->rope_low_freq_factor);
    }
    const cJSON *prf = field(rs, "partial_rotary_factor", 1);
    if (prf && cJSON_IsNumber(prf)) c->partial_rotary_factor = prf->valuedouble;
    return PISSA_OK;
}

static pissa_status config_from_json(const cJSON *root, const char *source, pissa_llama_config *c) {
    memset(c, 0, sizeof *c);
    const cJSON *mt = field(root, "model_type", 0);
    if (!mt) return pissa__fail(PISSA_ERR_FORMAT, "%s: model_type is missing (expected one of llama, mistral, qwen2, "
                                "qwen3)", source);
    PISSA_TRY(get_string(root, "model_type", 0, source, c->model_type, sizeof c->model_type));
    const family *f = NULL;
    for (size_t i = 0; i < sizeof families / sizeof *families; i++)
        if (!strcmp(c->model_type, families[i].model_type)) f = &families[i];
    if (!f) {
        for (size_t i = 0; i < sizeof refused_types / sizeof *refused_types; i++)
            if (!strncmp(c->model_type, refused_types[i].prefix, strlen(refused_types[i].prefix)))
                return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: model_type '%s' is not supported: %s", source,
                                   c->model_type, refused_types[i].why);
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: model_type '%s' is not supported (llama, mistral, qwen2 and "
                           "qwen3 are)", source, c->model_type);
    }
    /* architectures: what AutoModelForCausalLM would build must be this family's causal LM */
    const cJSON *arch = field(root, "architectures", 1);
    if (arch && !cJSON_IsArray(arch)) return pissa__fail(PISSA_ERR_FORMAT, "%s: architectures must be a list", source);
    for (const cJSON *a = arch ? arch->child : NULL; a; a = a->next)
        if (!cJSON_IsString(a) || strcmp(a->valuestring, f->architecture) != 0)
            return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: architectures lists '%s'; a %s checkpoint must be a %s",
                               source, cJSON_IsString(a) ? a->valuestring : "(not a string)", c->model_type,
                               f->architecture);

    /* the family's transformers config defaults */
    c->hidden_size = 4096;
    c->intermediate_size = f->intermediate_size;
    c->num_hidden_layers = 32;
    c->num_attention_heads = 32;
    c->vocab_size = f->vocab_size;
    c->max_position_embeddings = f->max_position_embeddings;
    c->rms_norm_eps = 1e-6;
    c->rope_theta = 10000.0;
    c->partial_rotary_factor = 1.0;
    strcpy(c->hidden_act, "silu");
    strcpy(c->rope_type, "default");
    PISSA_TRY(get_size(root, "hidden_size", 0, source, &c->hidden_size));
    PISSA_TRY(get_size(root, "intermediate_size", 0, source, &c->intermediate_size));
    PISSA_TRY(get_size(root, "num_hidden_layers", 0, source, &c->num_hidden_layers));
    PISSA_TRY(get_size(root, "num_attention_heads", 0, source, &c->num_attention_heads));
    PISSA_TRY(get_size(root, "vocab_size", 0, source, &c->vocab_size));
    PISSA_TRY(get_size(root, "max_position_embeddings", 0, source, &c->max_position_embeddings));
    c->num_key_value_heads = f->num_key_value_heads ? f->num_key_value_heads : c->num_attention_heads;
    if (field(root, "num_key_value_heads", 0) && cJSON_IsNull(field(root, "num_key_value_heads", 0)))
        c->num_key_value_heads = c->num_attention_heads; /* None means "same as heads" in every family */
    PISSA_TRY(get_size(root, "num_key_value_heads", 1, source, &c->num_key_value_heads));
    /* head_dim defaults to D / H; when H does not divide D it is left 0 for check_supported to refuse. */
    c->head_dim = f->head_dim ? f->head_dim
                  : c->hidden_size % c->num_attention_heads == 0 ? c->hidden_size / c->num_attention_heads : 0;
    PISSA_TRY(get_size(root, "head_dim", 1, source, &c->head_dim));
    PISSA_TRY(get_positive(root, "rms_norm_eps", source, &c->rms_norm_eps));
    PISSA_TRY(get_positive(root, "rope_theta", source, &c->rope_theta));
    PISSA_TRY(get_bool(root, "tie_word_embeddings", source, &c->tie_word_embeddings));
    PISSA_TRY(get_bool(root, "attention_bias", source, &c->attention_bias));
    PISSA_TRY(get_bool(root, "mlp_bias", source, &c->mlp_bias));
    PISSA_TRY(get_bool(root, "use_sliding_window", source, &c->use_sliding_window));
    PISSA_TRY(get_string(root, "hidden_act", 0, source, c->hidden_act, sizeof c->hidden_act));
    const cJSON *prf = field(root, "partial_rotary_factor", 1);
    if (prf && !cJSON_IsNumber(prf))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: partial_rotary_factor must be a number", source);
    if (prf) c->partial_rotary_factor = prf->valuedouble;
    const cJSON *rp = field(root, "rope_parameters", 1), *rs = field(root, "rope_scaling", 1);
    if (rp) PISSA_TRY(rope_from_json(rp, "rope_parameters", source, c));
    else if (rs) PISSA_TRY(rope_from_json(rs, "rope_scaling", source, c));

    /* biases, per-head norms and the sliding window, as each family's modeling file builds them */
    int llama_like = !strcmp(f->model_type, "llama") || !strcmp(f->model_type, "qwen3");
    c->bias_mask = f->bias_mask;
    if (llama_like && c->attention_bias) c->bias_mask |= QKV | PISSA_PROJ_O;
    if (!strcmp(f->model_type, "llama") && c->mlp_bias) c->bias_mask |= PISSA_PROJ_GATE | PISSA_PROJ_UP | PISSA_PROJ_DOWN;
    c->qk_norm = f->qk_norm;
    if (!strcmp(f->model_type, "mistral")) {
        c->sliding_window = f->sliding_window;
        const cJSON *sw = field(root, "sliding_window", 0);
        if (sw && cJSON_IsNull(sw)) c->sliding_window = 0;
        else PISSA_TRY(get_size(root, "sliding_window", 0, source, &c->sliding_window));
    }
    /* newer transformers write "dtype" where older ones wrote "torch_dtype" */
    const char *dtype_key = field(root, "torch_dtype", 1) ? "torch_dtype" : "dtype";
    PISSA_TRY(get_string(root, dtype_key, 1, source, c->torch_dtype, sizeof c->torch_dtype));
    return PISSA_OK;
}

pissa_status pissa_llama_config_parse(const char *json, size_t len, const char *source, pissa_llama_config *out) {
    if (!json || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_llama_config_parse: NULL argument");
    if (!source) source = "config.json";
    cJSON *root;
    PISSA_TRY(pissa__json_parse_object(json, len, source, &root));
    pissa_llama_config c;
    pissa_status st = config_from_json(root, source, &c);
    cJSON_Delete(root);
    if (st == PISSA_OK) *out = c;
    return st;
}

pissa_status pissa_llama_config_load(const char *path, pissa_llama_config *out) {
    if (!path || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_llama_config_load: NULL argument");
    char *text;
    size_t len;
    PISSA_TRY(pissa__read_file(path, &text, &len));
    pissa_status st = pissa_llama_config_parse(text, len, path, out);
    free(text);
    return st;
}

pissa_status pissa_llama_config_check_supported(const pissa_llama_config *c) {
    if (!c) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_llama_config_check_supported: NULL config");
    if (strcmp(c->rope_type, "default") && strcmp(c->rope_type, "linear") && strcmp(c->rope_type, "llama3"))
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "config: rope_type '%s' is not implemented (default, linear and "
                           "llama3 are)", c->rope_type);
    if (c->partial_rotary_factor != 1.0)
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "config: partial_rotary_factor %g is not implemented (RoPE on the "
                           "whole head only)", c->partial_rotary_factor);
    if (c->use_sliding_window)
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "config: use_sliding_window is true; sliding-window attention is "
                           "implemented for mistral only");
    if (strcmp(c->hidden_act, "silu") != 0)
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "config: hidden_act '%s' is not supported (only silu)",
                           c->hidden_act);
    if (c->hidden_size <= 0 || c->num_attention_heads <= 0 || c->num_key_value_heads <= 0 || c->head_dim < 0)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "config: sizes must be positive");
    if (c->head_dim == 0)
        return pissa__fail(PISSA_ERR_UNSUPPORTED,
                           "config: num_attention_heads %lld does not divide hidden_size %lld and head_dim is absent",
                           (long long)c->num_attention_heads, (long long)c->hidden_size);
    if (c->num_attention_heads % c->num_key_value_heads != 0)
        return pissa__fail(PISSA_ERR_UNSUPPORTED,
                           "config: num_key_value_heads %lld does not divide num_attention_heads %lld",
                           (long long)c->num_key_value_heads, (long long)c->num_attention_heads);
    if (c->head_dim % 2 != 0)
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "config: head_dim %lld is odd; RoPE rotates pairs of halves",
                           (long long)c->head_dim);
    return PISSA_OK;
}

pissa_status pissa_config_json_set_dtype(const char *json, int dtype, char **out) {
    if (!json || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_config_json_set_dtype: NULL argument");
    *out = NULL;
    if (!pissa_dtype_is_float((pissa_dtype)dtype))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "config.json: dtype %s is not F32, F16 or BF16",
                           pissa_dtype_name((pissa_dtype)dtype));
    cJSON *root;
    PISSA_TRY(pissa__json_parse_object(json, strlen(json), "config.json", &root));
    const char *value = dtype == PISSA_F32 ? "float32" : dtype == PISSA_BF16 ? "bfloat16" : "float16";
    const char *key = cJSON_GetObjectItemCaseSensitive(root, "dtype") &&
                              !cJSON_GetObjectItemCaseSensitive(root, "torch_dtype") ? "dtype" : "torch_dtype";
    cJSON *item = cJSON_CreateString(value);
    pissa_status st = PISSA_OK;
    if (!item) st = pissa__fail(PISSA_ERR_NOMEM, "config.json: out of memory");
    else if (cJSON_GetObjectItemCaseSensitive(root, key)) cJSON_ReplaceItemInObjectCaseSensitive(root, key, item);
    else cJSON_AddItemToObject(root, key, item);
    if (st == PISSA_OK) st = pissa__json_dump_sorted(root, out);
    cJSON_Delete(root);
    return st;
}

/* ---- the tensors of a model ---- */

/* The tensors of one layer, in checkpoint order; returns their number (at most LAYER_MAX). */
#define LAYER_MAX (4 + 2 * PISSA_N_PROJ)
static int layer_specs(const pissa_llama_config *c, int64_t l, pissa_tensor_spec *s) {
    int64_t D = c->hidden_size, F = c->intermediate_size, hd = c->head_dim, q = c->num_attention_heads * hd,
            kv = c->num_key_value_heads * hd;
    const int64_t outs[PISSA_N_PROJ] = {q, kv, kv, D, F, F, D}, ins[PISSA_N_PROJ] = {D, D, D, q, D, D, F};
    int n = 0;
    s[n++] = (pissa_tensor_spec){.role = PISSA_ROLE_INPUT_NORM, .ndim = 1, .shape = {D}};
    for (int j = 0; j < PISSA_N_PROJ; j++) {
        s[n++] = (pissa_tensor_spec){.role = PISSA_ROLE_PROJ, .proj = j, .ndim = 2, .shape = {outs[j], ins[j]}};
        if (c->bias_mask >> j & 1) s[n++] = (pissa_tensor_spec){.role = PISSA_ROLE_BIAS, .proj = j, .ndim = 1,
                                                                .shape = {outs[j]}};
        if (j == 3 && c->qk_norm) {
            s[n++] = (pissa_tensor_spec){.role = PISSA_ROLE_Q_NORM, .ndim = 1, .shape = {hd}};
            s[n++] = (pissa_tensor_spec){.role = PISSA_ROLE_K_NORM, .ndim = 1, .shape = {hd}};
        }
    }
    s[n++] = (pissa_tensor_spec){.role = PISSA_ROLE_POST_NORM, .ndim = 1, .shape = {D}};
    for (int i = 0; i < n; i++) {
        s[i].layer = l;
        if (s[i].role != PISSA_ROLE_PROJ && s[i].role != PISSA_ROLE_BIAS) s[i].proj = -1;
    }
    return n;
}

static void spec_name(pissa_tensor_spec *s) {
    static const char *const norm_suffix[] = {
        [PISSA_ROLE_INPUT_NORM] = "input_layernorm.weight", [PISSA_ROLE_POST_NORM] = "post_attention_layernorm.weight",
        [PISSA_ROLE_Q_NORM] = "self_attn.q_norm.weight", [PISSA_ROLE_K_NORM] = "self_attn.k_norm.weight"};
    switch (s->role) {
    case PISSA_ROLE_EMBED: snprintf(s->name, sizeof s->name, "model.embed_tokens.weight"); break;
    case PISSA_ROLE_NORM: snprintf(s->name, sizeof s->name, "model.norm.weight"); break;
    case PISSA_ROLE_HEAD: snprintf(s->name, sizeof s->name, "lm_head.weight"); break;
    case PISSA_ROLE_PROJ:
    case PISSA_ROLE_BIAS:
        snprintf(s->name, sizeof s->name, "model.layers.%lld.%s.%s", (long long)s->layer, proj_paths[s->proj],
                 s->role == PISSA_ROLE_PROJ ? "weight" : "bias");
        break;
    default: snprintf(s->name, sizeof s->name, "model.layers.%lld.%s", (long long)s->layer, norm_suffix[s->role]);
    }
}

static size_t per_layer(const pissa_llama_config *c) {
    pissa_tensor_spec s[LAYER_MAX];
    return (size_t)layer_specs(c, 0, s);
}

size_t pissa_config_tensor_count(const pissa_llama_config *c) {
    if (!c || c->num_hidden_layers < 0) return 0;
    return 2 + !c->tie_word_embeddings + (size_t)c->num_hidden_layers * per_layer(c);
}

pissa_status pissa_config_tensor(const pissa_llama_config *c, size_t i, pissa_tensor_spec *out) {
    if (!c || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_config_tensor: NULL argument");
    size_t n = pissa_config_tensor_count(c), k = per_layer(c);
    if (i >= n) return pissa__fail(PISSA_ERR_INVALID_ARG, "config: tensor index %zu out of range (%zu)", i, n);
    memset(out, 0, sizeof *out);
    if (i == 0) *out = (pissa_tensor_spec){.role = PISSA_ROLE_EMBED, .layer = -1, .proj = -1, .ndim = 2,
                                           .shape = {c->vocab_size, c->hidden_size}};
    else if (i == n - 1 - !c->tie_word_embeddings)
        *out = (pissa_tensor_spec){.role = PISSA_ROLE_NORM, .layer = -1, .proj = -1, .ndim = 1,
                                   .shape = {c->hidden_size}};
    else if (i == n - 1)
        *out = (pissa_tensor_spec){.role = PISSA_ROLE_HEAD, .layer = -1, .proj = -1, .ndim = 2,
                                   .shape = {c->vocab_size, c->hidden_size}};
    else {
        pissa_tensor_spec s[LAYER_MAX];
        layer_specs(c, (int64_t)((i - 1) / k), s);
        *out = s[(i - 1) % k];
    }
    spec_name(out);
    return PISSA_OK;
}

pissa_status pissa_config_tensor_find(const pissa_llama_config *c, const char *name, pissa_tensor_spec *out) {
    if (!c || !name || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_config_tensor_find: NULL argument");
    size_t n = pissa_config_tensor_count(c);
    if (!strcmp(name, "model.embed_tokens.weight")) return pissa_config_tensor(c, 0, out);
    if (!strcmp(name, "model.norm.weight")) return pissa_config_tensor(c, n - 1 - !c->tie_word_embeddings, out);
    if (!strcmp(name, "lm_head.weight") && !c->tie_word_embeddings) return pissa_config_tensor(c, n - 1, out);
    long long l;
    int used = 0;
    if (sscanf(name, "model.layers.%lld.%n", &l, &used) != 1 || !used || l < 0 || l >= c->num_hidden_layers)
        return PISSA_ERR_NOT_FOUND;
    pissa_tensor_spec s[LAYER_MAX];
    int k = layer_specs(c, l, s);
    for (int i = 0; i < k; i++) {
        spec_name(&s[i]);
        if (!strcmp(s[i].name, name)) return *out = s[i], PISSA_OK; /* also rules out "model.layers.01." */
    }
    return PISSA_ERR_NOT_FOUND;
}

/* ---- RoPE frequencies ---- */

void pissa__rope_inv_freq(const pissa_llama_config *c, float *inv_freq) {
    int hd = (int)c->head_dim, half = hd / 2;
    /* transformers' _compute_default_rope_parameters, in float32 */
    for (int i = 0; i < half; i++) inv_freq[i] = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)hd);
    if (!strcmp(c->rope_type, "linear"))
        for (int i = 0; i < half; i++) inv_freq[i] /= (float)c->rope_factor;
    if (strcmp(c->rope_type, "llama3") != 0) return;
    /* _compute_llama3_parameters, operation for operation in float32 (python scalars become float32) */
    float factor = (float)c->rope_factor, lo = (float)c->rope_low_freq_factor;
    float old = (float)c->rope_original_max_position_embeddings;
    float lo_wavelen = (float)((double)c->rope_original_max_position_embeddings / c->rope_low_freq_factor);
    float hi_wavelen = (float)((double)c->rope_original_max_position_embeddings / c->rope_high_freq_factor);
    float span = (float)(c->rope_high_freq_factor - c->rope_low_freq_factor);
    for (int i = 0; i < half; i++) {
        float f = inv_freq[i], wavelen = (float)(2 * M_PI) / f;
        float scaled = wavelen > lo_wavelen ? f / factor : f;
        float smooth = (old / wavelen - lo) / span;
        float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
        inv_freq[i] = !(wavelen < hi_wavelen) && !(wavelen > lo_wavelen) ? smoothed : scaled;
    }
}
