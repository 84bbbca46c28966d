/* Hugging Face PEFT LoRA adapter folders (docs/formats.md): adapter_config.json in and out, and the pairing of
 * lora_A / lora_B tensors of adapter_model.safetensors by module path. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "peft_internal.h"
#include "pissa/interop.h"

#define KEY_PREFIX "base_model.model."
#define SUFFIX_A ".lora_A.weight"
#define SUFFIX_B ".lora_B.weight"
#define CONFIG_NAME "adapter_config.json"
#define WEIGHTS_NAME "adapter_model.safetensors"
/* The PEFT release whose adapter_config.json layout we write (its field set, plus peft_version). */
#define PEFT_FORMAT_VERSION "0.13.0"

/* ---------------------------------------------------------------------------------------------- */
/* config defaults                                                                                */

/* What PEFT's LoraConfig() holds before any field is set: no targets, no task. */
static pissa_peft_config peft_defaults(void) {
    pissa_peft_config c;
    memset(&c, 0, sizeof c);
    c.r = 8;
    c.lora_alpha = 8;
    c.lora_dropout = 0;
    strcpy(c.bias, "none");
    strcpy(c.init_lora_weights, "true");
    c.target_kind = PISSA_TARGET_LIST;
    return c;
}

pissa_peft_config pissa__peft_config_default(void) {
    pissa_peft_config c = peft_defaults();
    strcpy(c.target_modules, "q_proj,v_proj");
    strcpy(c.task_type, "CAUSAL_LM");
    return c;
}

/* ---------------------------------------------------------------------------------------------- */
/* config parsing                                                                                 */

static pissa_status copy_bounded(char *dst, size_t cap, const char *s, const char *field, const char *src) {
    size_t n = strlen(s);
    if (n >= cap)
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: field '%s' is too long (%zu bytes, at most %zu)", src, field, n,
                           cap - 1);
    memcpy(dst, s, n + 1);
    return PISSA_OK;
}

static int is_integral(const cJSON *it) {
    return cJSON_IsNumber(it) && isfinite(it->valuedouble) && it->valuedouble == floor(it->valuedouble) &&
           fabs(it->valuedouble) < 9e15;
}

static pissa_status get_bool(const cJSON *root, const char *key, const char *src, int *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it) return PISSA_OK;
    if (!cJSON_IsBool(it)) return pissa__fail(PISSA_ERR_FORMAT, "%s: field '%s' must be true or false", src, key);
    *out = cJSON_IsTrue(it);
    return PISSA_OK;
}

static pissa_status get_number(const cJSON *root, const char *key, const char *src, double *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it) return PISSA_OK;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: field '%s' must be a number", src, key);
    *out = it->valuedouble;
    return PISSA_OK;
}

/* A string field; NULLABLE lets JSON null keep the default (PEFT's Optional[str] fields). */
static pissa_status get_string(const cJSON *root, const char *key, const char *src, int nullable, char *dst,
                               size_t cap) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || (nullable && cJSON_IsNull(it))) return PISSA_OK;
    if (!cJSON_IsString(it))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: field '%s' must be a string%s", src, key, nullable ? " or null" : "");
    return copy_bounded(dst, cap, it->valuestring, key, src);
}

static pissa_status parse_targets(const cJSON *root, const char *src, pissa_peft_config *c) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    if (!it || cJSON_IsNull(it)) return PISSA_OK; /* LIST with "" stands for null */
    if (cJSON_IsString(it)) {
        c->target_kind = strcmp(it->valuestring, "all-linear") == 0 ? PISSA_TARGET_ALL_LINEAR : PISSA_TARGET_REGEX;
        return copy_bounded(c->target_modules, sizeof c->target_modules, it->valuestring, "target_modules", src);
    }
    if (!cJSON_IsArray(it))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: field 'target_modules' must be a list of strings, a string or null",
                           src);
    c->target_kind = PISSA_TARGET_LIST;
    size_t n = 0;
    c->target_modules[0] = '\0';
    for (const cJSON *e = it->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0])
            return pissa__fail(PISSA_ERR_FORMAT, "%s: field 'target_modules' must hold non-empty strings", src);
        if (strchr(e->valuestring, ','))
            return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: target_modules entry '%s' contains ','", src,
                               e->valuestring);
        size_t k = strlen(e->valuestring);
        if (n + (n > 0) + k >= sizeof c->target_modules)
            return pissa__fail(PISSA_ERR_UNSUPPORTED,
                               "%s: field 'target_modules' is too long (at most %zu bytes joined)", src,
                               sizeof c->target_modules - 1);
        if (n > 0) c->target_modules[n++] = ',';
        memcpy(c->target_modules + n, e->valuestring, k + 1);
        n += k;
    }
    return PISSA_OK;
}

static pissa_status parse_init(const cJSON *root, const char *src, pissa_peft_config *c) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "init_lora_weights");
    if (!it) return PISSA_OK;
    if (cJSON_IsBool(it)) {
        strcpy(c->init_lora_weights, cJSON_IsTrue(it) ? "true" : "false");
        return PISSA_OK;
    }
    if (!cJSON_IsString(it))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: field 'init_lora_weights' must be true, false or a string", src);
    return copy_bounded(c->init_lora_weights, sizeof c->init_lora_weights, it->valuestring, "init_lora_weights", src);
}

/* rank_pattern / alpha_pattern: {module pattern: number}. Ranks must be positive integers. */
static pissa_status parse_patterns(const cJSON *root, const char *key, int ranks, const char *src,
                                   pissa_peft_pattern *pats, int64_t *n) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    *n = 0;
    if (!it || cJSON_IsNull(it)) return PISSA_OK;
    if (!cJSON_IsObject(it)) return pissa__fail(PISSA_ERR_FORMAT, "%s: field '%s' must be an object", src, key);
    for (const cJSON *e = it->child; e; e = e->next) {
        if (*n == PISSA_PEFT_MAX_PATTERNS)
            return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: field '%s' has more than %d entries", src, key,
                               PISSA_PEFT_MAX_PATTERNS);
        if (ranks ? !is_integral(e) || e->valuedouble < 1 : !cJSON_IsNumber(e) || !isfinite(e->valuedouble))
            return pissa__fail(PISSA_ERR_FORMAT, "%s: field '%s' entry '%s' must be a %s", src, key, e->string,
                               ranks ? "positive integer" : "number");
        if (strlen(e->string) >= sizeof pats[0].key)
            return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: field '%s' key '%s' is too long (at most %zu bytes)", src,
                               key, e->string, sizeof pats[0].key - 1);
        strcpy(pats[*n].key, e->string);
        pats[*n].value = e->valuedouble;
        (*n)++;
    }
    return PISSA_OK;
}

static pissa_status parse_layers(const cJSON *root, const char *src, pissa_peft_config *c) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "layers_to_transform");
    if (!it || cJSON_IsNull(it)) return PISSA_OK;
    const int64_t cap = (int64_t)(sizeof c->layers_to_transform / sizeof c->layers_to_transform[0]);
    if (is_integral(it)) {
        c->layers_to_transform[0] = (int64_t)it->valuedouble;
        c->n_layers_to_transform = 1;
    } else if (cJSON_IsArray(it)) {
        for (const cJSON *e = it->child; e; e = e->next) {
            if (!is_integral(e))
                return pissa__fail(PISSA_ERR_FORMAT, "%s: field 'layers_to_transform' must hold integers", src);
            if (c->n_layers_to_transform == cap)
                return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: field 'layers_to_transform' has more than %lld entries",
                                   src, (long long)cap);
            c->layers_to_transform[c->n_layers_to_transform++] = (int64_t)e->valuedouble;
        }
    } else {
        return pissa__fail(PISSA_ERR_FORMAT, "%s: field 'layers_to_transform' must be an integer, a list of integers "
                                             "or null", src);
    }
    c->has_layers_to_transform = 1;
    return PISSA_OK;
}

static pissa_status parse_fields(const cJSON *root, const char *src, pissa_peft_config *c) {
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    if (!pt) return pissa__fail(PISSA_ERR_FORMAT, "%s: field 'peft_type' is missing", src);
    if (!cJSON_IsString(pt)) return pissa__fail(PISSA_ERR_FORMAT, "%s: field 'peft_type' must be a string", src);
    if (strcmp(pt->valuestring, "LORA") != 0)
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: field 'peft_type' is '%s'; only \"LORA\" is supported", src,
                           pt->valuestring);

    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
    if (r) {
        if (!is_integral(r) || r->valuedouble < 1)
            return pissa__fail(PISSA_ERR_FORMAT, "%s: field 'r' must be a positive integer", src);
        c->r = (int64_t)r->valuedouble;
    }
    PISSA_TRY(get_number(root, "lora_alpha", src, &c->lora_alpha));
    PISSA_TRY(get_number(root, "lora_dropout", src, &c->lora_dropout));
    PISSA_TRY(get_bool(root, "use_rslora", src, &c->use_rslora));
    PISSA_TRY(get_bool(root, "use_dora", src, &c->use_dora));
    PISSA_TRY(get_bool(root, "fan_in_fan_out", src, &c->fan_in_fan_out));
    PISSA_TRY(get_bool(root, "lora_bias", src, &c->has_lora_bias));
    PISSA_TRY(get_string(root, "bias", src, 0, c->bias, sizeof c->bias));
    PISSA_TRY(get_string(root, "task_type", src, 1, c->task_type, sizeof c->task_type));
    PISSA_TRY(get_string(root, "base_model_name_or_path", src, 1, c->base_model_name_or_path,
                         sizeof c->base_model_name_or_path));
    PISSA_TRY(parse_init(root, src, c));
    PISSA_TRY(parse_targets(root, src, c));
    PISSA_TRY(parse_patterns(root, "rank_pattern", 1, src, c->rank_pattern, &c->n_rank_pattern));
    PISSA_TRY(parse_patterns(root, "alpha_pattern", 0, src, c->alpha_pattern, &c->n_alpha_pattern));
    PISSA_TRY(parse_layers(root, src, c));

    const cJSON *mts = cJSON_GetObjectItemCaseSensitive(root, "modules_to_save");
    if (mts && !cJSON_IsNull(mts)) {
        if (!cJSON_IsArray(mts))
            return pissa__fail(PISSA_ERR_FORMAT, "%s: field 'modules_to_save' must be a list of strings or null", src);
        for (const cJSON *e = mts->child; e; e = e->next)
            if (!cJSON_IsString(e))
                return pissa__fail(PISSA_ERR_FORMAT, "%s: field 'modules_to_save' must hold strings", src);
        c->has_modules_to_save = cJSON_GetArraySize(mts) > 0; /* an empty list saves nothing */
    }
    return PISSA_OK;
}

pissa_status pissa__peft_config_parse_into(const char *json, size_t len, const char *source, pissa_peft_config *out) {
    const char *src = source ? source : "adapter_config.json";
    if (!json || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_config_parse: NULL argument");
    cJSON *root;
    PISSA_TRY(pissa__json_parse_object(json, len, src, &root)); /* one object, nothing after it */
    pissa_peft_config c = peft_defaults();
    pissa_status st = parse_fields(root, src, &c);
    cJSON_Delete(root);
    if (st == PISSA_OK) *out = c;
    return st;
}

/* ---------------------------------------------------------------------------------------------- */
/* config output                                                                                  */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* target_modules LIST -> sorted JSON list without duplicates (PEFT keeps a set; sorting makes output
 * deterministic). "" -> null. */
static cJSON *targets_json(const pissa_peft_config *c) {
    if (c->target_kind != PISSA_TARGET_LIST) return cJSON_CreateString(c->target_modules);
    if (!c->target_modules[0]) return cJSON_CreateNull();
    char buf[sizeof c->target_modules];
    char *names[sizeof c->target_modules / 2 + 1];
    size_t n = 0;
    memcpy(buf, c->target_modules, sizeof buf);
    buf[sizeof buf - 1] = '\0';
    for (char *p = buf;;) {
        names[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma) break;
        *comma = '\0';
        p = comma + 1;
    }
    qsort(names, n, sizeof names[0], cmp_str);
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++) {
        if (!names[i][0] || (i > 0 && strcmp(names[i], names[i - 1]) == 0)) continue;
        if (!cJSON_AddItemToArray(arr, cJSON_CreateString(names[i]))) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

static cJSON *patterns_json(const pissa_peft_pattern *p, int64_t n) {
    cJSON *obj = cJSON_CreateObject();
    for (int64_t i = 0; obj && i < n; i++)
        if (!cJSON_AddNumberToObject(obj, p[i].key, p[i].value)) {
            cJSON_Delete(obj);
            return NULL;
        }
    return obj;
}

static cJSON *str_or_null(const char *s) { return s[0] ? cJSON_CreateString(s) : cJSON_CreateNull(); }

/* Adds ITEM under KEY; a NULL item (failed allocation) marks the tree as failed. */
static void put(cJSON *obj, const char *key, cJSON *item, int *oom) {
    if (!item || !cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        *oom = 1;
    }
}

pissa_status pissa_peft_config_to_json(const pissa_peft_config *c, char **out) {
    if (!c || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_config_to_json: NULL argument");
    *out = NULL;
    if (c->has_modules_to_save) /* only the flag is kept, not the names */
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "adapter config: modules_to_save cannot be written by libpissa");
    if (c->r < 1)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "adapter config: r = %lld must be positive", (long long)c->r);

    cJSON *root = cJSON_CreateObject();
    if (!root) return pissa__fail(PISSA_ERR_NOMEM, "adapter config: out of memory");
    int oom = 0;
    const char *init = c->init_lora_weights;
    put(root, "alpha_pattern", patterns_json(c->alpha_pattern, c->n_alpha_pattern), &oom);
    put(root, "auto_mapping", cJSON_CreateNull(), &oom);
    put(root, "base_model_name_or_path", str_or_null(c->base_model_name_or_path), &oom);
    put(root, "bias", cJSON_CreateString(c->bias), &oom);
    put(root, "fan_in_fan_out", cJSON_CreateBool(c->fan_in_fan_out), &oom);
    put(root, "inference_mode", cJSON_CreateTrue(), &oom); /* as PEFT's save_pretrained writes it */
    put(root, "init_lora_weights",
        strcmp(init, "true") == 0    ? cJSON_CreateTrue()
        : strcmp(init, "false") == 0 ? cJSON_CreateFalse()
                                     : cJSON_CreateString(init),
        &oom);
    put(root, "layer_replication", cJSON_CreateNull(), &oom);
    put(root, "layers_pattern", cJSON_CreateNull(), &oom);
    if (c->has_layers_to_transform) {
        cJSON *arr = cJSON_CreateArray();
        for (int64_t i = 0; arr && i < c->n_layers_to_transform; i++)
            if (!cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)c->layers_to_transform[i]))) oom = 1;
        put(root, "layers_to_transform", arr, &oom);
    } else {
        put(root, "layers_to_transform", cJSON_CreateNull(), &oom);
    }
    put(root, "loftq_config", cJSON_CreateObject(), &oom);
    if (c->has_lora_bias) put(root, "lora_bias", cJSON_CreateTrue(), &oom); /* PEFT >= 0.14 field */
    put(root, "lora_alpha", cJSON_CreateNumber(c->lora_alpha), &oom);
    put(root, "lora_dropout", pissa__json_float(c->lora_dropout), &oom);
    put(root, "megatron_config", cJSON_CreateNull(), &oom);
    put(root, "megatron_core", cJSON_CreateString("megatron.core"), &oom);
    put(root, "modules_to_save", cJSON_CreateNull(), &oom);
    put(root, "peft_type", cJSON_CreateString("LORA"), &oom);
    put(root, "peft_version", cJSON_CreateString(PEFT_FORMAT_VERSION), &oom);
    put(root, "r", cJSON_CreateNumber((double)c->r), &oom);
    put(root, "rank_pattern", patterns_json(c->rank_pattern, c->n_rank_pattern), &oom);
    put(root, "revision", cJSON_CreateNull(), &oom);
    put(root, "target_modules", targets_json(c), &oom);
    put(root, "task_type", str_or_null(c->task_type), &oom);
    put(root, "use_dora", cJSON_CreateBool(c->use_dora), &oom);
    put(root, "use_rslora", cJSON_CreateBool(c->use_rslora), &oom);

    pissa_status st = oom ? pissa__fail(PISSA_ERR_NOMEM, "adapter config: out of memory")
                          : pissa__json_dump_sorted(root, out);
    cJSON_Delete(root);
    return st;
}

/* ---------------------------------------------------------------------------------------------- */
/* the opaque config of the public API                                                            */

static pissa_status new_config(const pissa_peft_config *from, pissa_peft_config **out) {
    if (!out) return pissa__fail(PISSA_ERR_INVALID_ARG, "peft config: NULL argument");
    *out = pissa__alloc(1, sizeof **out);
    if (!*out) return pissa__fail(PISSA_ERR_NOMEM, "out of memory for a PEFT config");
    **out = *from;
    return PISSA_OK;
}

pissa_status pissa_peft_config_create(pissa_peft_config **out) {
    pissa_peft_config c = pissa__peft_config_default();
    return new_config(&c, out);
}

pissa_status pissa_peft_config_parse(const char *json, size_t len, const char *source, pissa_peft_config **out) {
    if (out) *out = NULL;
    pissa_peft_config c;
    PISSA_TRY(pissa__peft_config_parse_into(json, len, source, &c));
    return new_config(&c, out);
}

pissa_status pissa_peft_config_clone(const pissa_peft_config *cfg, pissa_peft_config **out) {
    if (!cfg) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_config_clone: NULL argument");
    return new_config(cfg, out);
}

void pissa_peft_config_free(pissa_peft_config *cfg) { free(cfg); }

int64_t pissa_peft_config_r(const pissa_peft_config *cfg) { return cfg ? cfg->r : 0; }
double pissa_peft_config_lora_alpha(const pissa_peft_config *cfg) { return cfg ? cfg->lora_alpha : 0; }
int pissa_peft_config_use_rslora(const pissa_peft_config *cfg) { return cfg ? cfg->use_rslora : 0; }

/* CFG as the JSON object PEFT would write. Caller deletes. */
static pissa_status config_object(const pissa_peft_config *cfg, cJSON **out) {
    char *text;
    PISSA_TRY(pissa_peft_config_to_json(cfg, &text));
    *out = cJSON_Parse(text);
    free(text);
    return *out ? PISSA_OK : pissa__fail(PISSA_ERR_NOMEM, "peft config: out of memory");
}

pissa_status pissa_peft_config_get(const pissa_peft_config *cfg, const char *field, char **out) {
    if (!cfg || !field || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_config_get: NULL argument");
    *out = NULL;
    cJSON *root;
    PISSA_TRY(config_object(cfg, &root));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    pissa_status st = v ? pissa__json_dump_sorted(v, out)
                        : pissa__fail(PISSA_ERR_NOT_FOUND, "adapter_config.json: no field '%s'", field);
    cJSON_Delete(root);
    return st;
}

pissa_status pissa_peft_config_set(pissa_peft_config *cfg, const char *field, const char *json_value) {
    if (!cfg || !field || !json_value)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_config_set: NULL argument");
    cJSON *root, *v = cJSON_Parse(json_value);
    if (!v) return pissa__fail(PISSA_ERR_FORMAT, "adapter_config.json: field '%s': '%.60s' is not JSON", field,
                               json_value);
    pissa_status st = config_object(cfg, &root);
    if (st != PISSA_OK) {
        cJSON_Delete(v);
        return st;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, field)) cJSON_ReplaceItemInObjectCaseSensitive(root, field, v);
    else cJSON_AddItemToObject(root, field, v); /* a field PEFT 0.13 does not write: kept only if the parser knows it */
    char *text = NULL;
    pissa_peft_config c;
    st = pissa__json_dump_sorted(root, &text);
    if (st == PISSA_OK) st = pissa__peft_config_parse_into(text, strlen(text), "adapter_config.json", &c);
    if (st == PISSA_OK) {
        char *check = NULL; /* a field the config does not keep would vanish: refuse it instead */
        if (pissa_peft_config_get(&c, field, &check) != PISSA_OK)
            st = pissa__fail(PISSA_ERR_NOT_FOUND, "adapter_config.json: libpissa does not keep a field '%s'", field);
        free(check);
    }
    if (st == PISSA_OK) *cfg = c;
    free(text);
    cJSON_Delete(root);
    return st;
}

/* ---------------------------------------------------------------------------------------------- */
/* adapter handle                                                                                 */

typedef struct peft_module {
    char *name;      /* module path in the base model, e.g. "model.layers.0.self_attn.q_proj" */
    pissa_tensor *A; // (r, in)
    pissa_tensor *B; // (out, r)
} peft_module;

struct pissa_peft_adapter {
    pissa_peft_config cfg;
    peft_module *mods; /* sorted by natural_cmp of name */
    size_t n, cap;
};

/* strcmp, except that runs of digits compare as numbers: "layers.2" < "layers.10". Ties between equal
 * numbers spelled differently ("01" vs "1") fall back to strcmp, so 0 means equal strings. */
static int natural_cmp(const char *a, const char *b) {
    const char *p = a, *q = b;
    while (*p && *q) {
        if (isdigit((unsigned char)*p) && isdigit((unsigned char)*q)) {
            while (*p == '0' && isdigit((unsigned char)p[1])) p++;
            while (*q == '0' && isdigit((unsigned char)q[1])) q++;
            size_t lp = 0, lq = 0;
            while (isdigit((unsigned char)p[lp])) lp++;
            while (isdigit((unsigned char)q[lq])) lq++;
            if (lp != lq) return lp < lq ? -1 : 1;
            int c = memcmp(p, q, lp);
            if (c) return c;
            p += lp;
            q += lq;
        } else {
            if (*p != *q) return (unsigned char)*p < (unsigned char)*q ? -1 : 1;
            p++;
            q++;
        }
    }
    if (*p || *q) return *p ? 1 : -1;
    return strcmp(a, b);
}

/* First index whose name is >= NAME in natural order. */
static size_t lower_bound(const pissa_peft_adapter *a, const char *name) {
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (natural_cmp(a->mods[mid].name, name) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

pissa_status pissa_peft_adapter_create(const pissa_peft_config *cfg, pissa_peft_adapter **out) {
    if (!cfg || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_adapter_create: NULL argument");
    pissa_peft_adapter *a = pissa__calloc(1, sizeof *a);
    if (!a) return pissa__fail(PISSA_ERR_NOMEM, "pissa_peft_adapter_create: out of memory");
    a->cfg = *cfg;
    *out = a;
    return PISSA_OK;
}

void pissa_peft_adapter_free(pissa_peft_adapter *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->mods[i].name);
        pissa_tensor_free(a->mods[i].A);
        pissa_tensor_free(a->mods[i].B);
    }
    free(a->mods);
    free(a);
}

const pissa_peft_config *pissa_peft_adapter_config(const pissa_peft_adapter *a) { return a ? &a->cfg : NULL; }
pissa_peft_config *pissa_peft_adapter_config_mut(pissa_peft_adapter *a) { return a ? &a->cfg : NULL; }
size_t pissa_peft_adapter_count(const pissa_peft_adapter *a) { return a ? a->n : 0; }

/* Inserts MODULE with tensors it takes ownership of (on success only). */
static pissa_status insert_module(pissa_peft_adapter *a, const char *module, pissa_tensor *A, pissa_tensor *B) {
    size_t at = lower_bound(a, module);
    if (at < a->n && strcmp(a->mods[at].name, module) == 0)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "adapter: module '%s' added twice", module);
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        peft_module *m = cap <= SIZE_MAX / sizeof *m ? realloc(a->mods, cap * sizeof *m) : NULL;
        if (!m) return pissa__fail(PISSA_ERR_NOMEM, "adapter: out of memory adding '%s'", module);
        a->mods = m;
        a->cap = cap;
    }
    char *name = pissa__strdup(module);
    if (!name) return pissa__fail(PISSA_ERR_NOMEM, "adapter: out of memory adding '%s'", module);
    memmove(a->mods + at + 1, a->mods + at, (a->n - at) * sizeof *a->mods);
    a->mods[at] = (peft_module){name, A, B};
    a->n++;
    return PISSA_OK;
}

/* New OWNED (r, in) and (out, r) tensors, zero-filled. */
static pissa_status new_pair(int64_t r, int64_t in, int64_t out, pissa_tensor **A, pissa_tensor **B) {
    const int64_t shape_a[2] = {r, in}, shape_b[2] = {out, r};
    *A = *B = NULL;
    pissa_status st = pissa_tensor_create(2, shape_a, A);
    if (st == PISSA_OK) st = pissa_tensor_create(2, shape_b, B);
    if (st != PISSA_OK) {
        pissa_tensor_free(*A);
        *A = NULL;
    }
    return st;
}

pissa_status pissa_peft_adapter_add(pissa_peft_adapter *a, const char *module, int64_t r, int64_t in, int64_t out,
                                    const float *A, const float *B) {
    if (!a || !module || !A || !B) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_adapter_add: NULL argument");
    if (!module[0]) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_adapter_add: empty module name");
    if (r < 1 || in < 1 || out < 1)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "adapter: module '%s': bad dims r=%lld in=%lld out=%lld", module,
                           (long long)r, (long long)in, (long long)out);
    pissa_tensor *tA, *tB;
    PISSA_TRY(new_pair(r, in, out, &tA, &tB));
    memcpy(pissa_tensor_data(tA), A, (size_t)(r * in) * sizeof(float));
    memcpy(pissa_tensor_data(tB), B, (size_t)(out * r) * sizeof(float));
    pissa_status st = insert_module(a, module, tA, tB);
    if (st != PISSA_OK) {
        pissa_tensor_free(tA);
        pissa_tensor_free(tB);
    }
    return st;
}

pissa_status pissa_peft_adapter_module(const pissa_peft_adapter *a, size_t i, const char **module,
                                       const pissa_tensor **A, const pissa_tensor **B) {
    if (!a) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_adapter_module: NULL adapter");
    if (i >= a->n)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "adapter: module index %zu out of range (%zu modules)", i, a->n);
    if (module) *module = a->mods[i].name;
    if (A) *A = a->mods[i].A;
    if (B) *B = a->mods[i].B;
    return PISSA_OK;
}

pissa_status pissa_peft_adapter_find(const pissa_peft_adapter *a, const char *module, size_t *index) {
    if (!a || !module || !index) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_adapter_find: NULL argument");
    size_t at = lower_bound(a, module);
    if (at == a->n || strcmp(a->mods[at].name, module) != 0)
        return pissa__fail(PISSA_ERR_NOT_FOUND, "adapter: no module '%s'", module);
    *index = at;
    return PISSA_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* rank of a module                                                                               */

/* The rank the config assigns to MODULE, by PEFT's rules (pissa_peft_resolve: the first rank_pattern key, in
 * file order, with re.match("(.*\.)?(KEY)$", MODULE), regex keys included, else r). An invalid key is
 * PISSA_ERR_FORMAT naming it. */
static pissa_status expected_rank(const pissa_peft_config *c, const char *module, int64_t *rank) {
    return pissa_peft_resolve(c, module, NULL, rank, NULL, NULL);
}

/* ---------------------------------------------------------------------------------------------- */
/* save                                                                                           */

static char *tensor_key(const char *module, const char *suffix) {
    size_t n = strlen(KEY_PREFIX) + strlen(module) + strlen(suffix) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s%s", KEY_PREFIX, module, suffix);
    return s;
}

static pissa_status add_tensor(pissa_st_writer *w, const char *module, const char *suffix, pissa_dtype dtype,
                               const pissa_tensor *t) {
    char *key = tensor_key(module, suffix);
    if (!key) return pissa__fail(PISSA_ERR_NOMEM, "adapter: out of memory");
    const int64_t shape[2] = {pissa_tensor_dim(t, 0), pissa_tensor_dim(t, 1)};
    pissa_status st = pissa_st_writer_add_f32(w, key, dtype, 2, shape, pissa_tensor_data(t));
    free(key);
    return st;
}

pissa_status pissa_peft_adapter_save(const pissa_peft_adapter *a, const char *dir, pissa_dtype dtype) {
    if (!a || !dir) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_adapter_save: NULL argument");
    if (!pissa_dtype_is_float(dtype))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: adapter dtype %s is not F32, F16 or BF16", dir,
                           pissa_dtype_name(dtype));
    /* Refuse what the loader would refuse, so every saved adapter loads back. */
    for (size_t i = 0; i < a->n; i++) {
        int64_t want, r = pissa_tensor_dim(a->mods[i].A, 0);
        PISSA_TRY(expected_rank(&a->cfg, a->mods[i].name, &want));
        if (r != want)
            return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: module '%s' has rank %lld but the config says %lld "
                               "(r / rank_pattern)", dir, a->mods[i].name, (long long)r, (long long)want);
    }
    char *json = NULL;
    PISSA_TRY(pissa_peft_config_to_json(&a->cfg, &json));
    pissa_dir_txn *txn = NULL; /* the folder is replaced whole: config and tensors always of one adapter */
    static const char *const mine[] = {WEIGHTS_NAME, CONFIG_NAME, "adapter_model.bin", NULL};
    pissa_status st = pissa_dir_txn_begin(dir, mine, &txn);
    pissa_st_writer *w = NULL;
    if (st == PISSA_OK) st = pissa_st_writer_create(&w);
    for (size_t i = 0; st == PISSA_OK && i < a->n; i++) {
        st = add_tensor(w, a->mods[i].name, SUFFIX_A, dtype, a->mods[i].A);
        if (st == PISSA_OK) st = add_tensor(w, a->mods[i].name, SUFFIX_B, dtype, a->mods[i].B);
    }
    char *weights = txn ? pissa__path_join(pissa_dir_txn_path(txn), WEIGHTS_NAME) : NULL;
    char *config = txn ? pissa__path_join(pissa_dir_txn_path(txn), CONFIG_NAME) : NULL;
    if (st == PISSA_OK && (!weights || !config)) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    if (st == PISSA_OK) st = pissa_st_writer_write(w, weights);
    if (st == PISSA_OK) st = pissa_write_file_atomic(config, json, strlen(json));
    if (st == PISSA_OK) st = pissa_dir_txn_commit(txn);
    else pissa_dir_txn_abort(txn);
    pissa_st_writer_free(w);
    free(weights);
    free(config);
    free(json);
    return st;
}

/* ---------------------------------------------------------------------------------------------- */
/* load                                                                                           */

typedef struct lora_key {
    char *module;      /* malloc'd */
    int is_b;          /* 0 lora_A, 1 lora_B */
    pissa_st_info info; /* borrowed from the open file */
} lora_key;

static int cmp_key(const void *x, const void *y) {
    const lora_key *a = x, *b = y;
    int c = natural_cmp(a->module, b->module);
    return c ? c : a->is_b - b->is_b;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Splits a tensor name into module path and A/B. Keys may lack the "base_model.model." prefix. */
static pissa_status classify(const char *name, const char *path, lora_key *k) {
    const char *s = strncmp(name, KEY_PREFIX, strlen(KEY_PREFIX)) == 0 ? name + strlen(KEY_PREFIX) : name;
    int is_a = ends_with(s, SUFFIX_A), is_b = ends_with(s, SUFFIX_B);
    if (!is_a && !is_b) {
        /* PEFT features libpissa does not implement, as opposed to a file that is no adapter at all */
        if (strstr(name, "lora_magnitude_vector") || strstr(name, "modules_to_save") ||
            strstr(name, "lora_embedding") || strstr(name, ".lora_A.") || strstr(name, ".lora_B."))
            return pissa__fail(PISSA_ERR_UNSUPPORTED,
                               "%s: tensor '%s' is not a lora_A/lora_B weight (DoRA magnitudes, LoRA biases, "
                               "embeddings and modules_to_save are not supported)", path, name);
        return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s' is not a LoRA adapter tensor", path, name);
    }
    size_t len = strlen(s) - strlen(SUFFIX_A); /* both suffixes have the same length */
    if (len == 0) return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s' names no module", path, name);
    k->module = malloc(len + 1);
    if (!k->module) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    memcpy(k->module, s, len);
    k->module[len] = '\0';
    k->is_b = is_b;
    return PISSA_OK;
}

/* Checks one A/B pair against each other and the config, then reads it into the adapter. */
static pissa_status load_pair(pissa_peft_adapter *a, const pissa_st_file *f, const lora_key *ka, const lora_key *kb) {
    const char *path = pissa_st_path(f);
    const pissa_st_info *A = &ka->info, *B = &kb->info;
    for (int i = 0; i < 2; i++) {
        const pissa_st_info *t = i ? B : A;
        if (t->ndim != 2)
            return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s' has %d dims, expected 2", path, t->name, t->ndim);
        if (!pissa_dtype_is_float(t->dtype))
            return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)", path,
                               t->name, pissa_dtype_name(t->dtype));
    }
    int64_t r = A->shape[0], in = A->shape[1], out = B->shape[0];
    if (B->shape[1] != r)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: rank mismatch: '%s' is (%lld, %lld) but '%s' is (%lld, %lld)", path,
                           A->name, (long long)r, (long long)in, B->name, (long long)out, (long long)B->shape[1]);
    int64_t want;
    PISSA_TRY(expected_rank(&a->cfg, ka->module, &want));
    if (r != want)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s' has rank %lld but adapter_config.json says %lld "
                           "(r / rank_pattern)", path, A->name, (long long)r, (long long)want);
    if (r < 1 || in < 1 || out < 1)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s' or '%s' is empty", path, A->name, B->name);
    pissa_tensor *tA, *tB;
    PISSA_TRY(new_pair(r, in, out, &tA, &tB));
    pissa_status st = pissa_st_read_f32(f, A->name, pissa_tensor_data(tA), r * in);
    if (st == PISSA_OK) st = pissa_st_read_f32(f, B->name, pissa_tensor_data(tB), out * r);
    if (st == PISSA_OK) st = insert_module(a, ka->module, tA, tB);
    if (st != PISSA_OK) {
        pissa_tensor_free(tA);
        pissa_tensor_free(tB);
    }
    return st;
}

static pissa_status load_tensors(pissa_peft_adapter *a, const pissa_st_file *f) {
    const char *path = pissa_st_path(f);
    size_t n = pissa_st_count(f);
    lora_key *keys = pissa__calloc(n, sizeof *keys);
    if (!keys) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    pissa_status st = PISSA_OK;
    size_t got = 0;
    for (; st == PISSA_OK && got < n; got++) {
        st = pissa_st_info_at(f, got, &keys[got].info);
        if (st == PISSA_OK) st = classify(keys[got].info.name, path, &keys[got]);
    }
    if (st == PISSA_OK) qsort(keys, n, sizeof *keys, cmp_key);
    for (size_t i = 0; st == PISSA_OK && i < n;) {
        const lora_key *k = &keys[i];
        if (i + 1 < n && cmp_key(k, &keys[i + 1]) == 0) { /* "X.lora_A.weight" beside "base_model.model.X..." */
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: tensors '%s' and '%s' are the same LoRA weight", path,
                             k->info.name, keys[i + 1].info.name);
        } else if (k->is_b || i + 1 == n || keys[i + 1].is_b == 0 || strcmp(keys[i + 1].module, k->module) != 0) {
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s' has no matching %s", path, k->info.name,
                             k->is_b ? "lora_A" : "lora_B");
        } else {
            st = load_pair(a, f, k, &keys[i + 1]);
            i += 2;
        }
    }
    for (size_t i = 0; i < n; i++) free(keys[i].module);
    free(keys);
    return st;
}

pissa_status pissa_peft_adapter_load(const char *dir, pissa_peft_adapter **out) {
    if (!dir || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_adapter_load: NULL argument");
    *out = NULL;
    char *config = pissa__path_join(dir, CONFIG_NAME), *weights = pissa__path_join(dir, WEIGHTS_NAME), *json = NULL;
    size_t len = 0;
    pissa_peft_config cfg;
    pissa_peft_adapter *a = NULL;
    pissa_st_file *f = NULL;
    pissa_status st = config && weights ? PISSA_OK : pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    if (st == PISSA_OK) st = pissa__read_file(config, &json, &len);
    if (st == PISSA_OK) st = pissa__peft_config_parse_into(json, len, config, &cfg);
    if (st == PISSA_OK) st = pissa_peft_adapter_create(&cfg, &a);
    if (st == PISSA_OK) st = pissa_st_open(weights, &f);
    if (st == PISSA_OK) st = load_tensors(a, f);
    pissa_st_close(f);
    free(json);
    free(config);
    free(weights);
    if (st != PISSA_OK) {
        pissa_peft_adapter_free(a);
        return st;
    }
    *out = a;
    return PISSA_OK;
}
