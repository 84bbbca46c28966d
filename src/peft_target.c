/* PEFT's target matching (peft.h pissa_peft_resolve, peft_target.h): which modules an adapter_config.json puts a
 * LoRA layer on, and with which rank and alpha, exactly as PEFT decides.
 *
 * Regular expressions: PEFT evaluates target_modules strings and rank_pattern / alpha_pattern keys with Python's
 * `re`. PCRE2 is used because its syntax is the one closest to Python's (\d, (?:...), (?P<name>...), lazy
 * quantifiers, lookarounds) and it is maintained and packaged everywhere; POSIX <regex.h> lacks most of that
 * syntax and would silently mismatch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "peft_target.h"

/* ---------------------------------------------------------------------------------------------- */
/* regular expressions                                                                            */

/* Compiles PATTERN with Python-like Unicode semantics for \d \w \s; FIELD names it in errors. */
static pissa_status re_compile(const char *pattern, uint32_t options, const char *field, pcre2_code **out) {
    int err = 0;
    PCRE2_SIZE at = 0;
    *out = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options | PCRE2_UTF | PCRE2_UCP, &err, &at,
                         NULL);
    if (*out) return PISSA_OK;
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return pissa__fail(PISSA_ERR_FORMAT, "adapter_config.json: %s: invalid regular expression '%s' at offset %zu: %s",
                       field, pattern, (size_t)at, (const char *)msg);
}

/* 1 on a match, 0 on none, -1 on an engine error (match limit, ...). */
static int re_match(const pcre2_code *re, const char *s, pcre2_match_data *md) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
    return rc >= 0 ? 1 : rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------------- */
/* target matching                                                                                */

void pissa__resolver_free(pissa__resolver *R) {
    pcre2_code_free(R->target);
    pcre2_code_free(R->layer);
    for (int i = 0; i < PISSA_PEFT_MAX_PATTERNS; i++) {
        pcre2_code_free(R->rank[i]);
        pcre2_code_free(R->alpha[i]);
    }
    pcre2_match_data_free(R->md);
    memset(R, 0, sizeof *R);
}

static pissa_status compile_pattern_key(const char *key, const char *field, pcre2_code **out) {
    size_t n = strlen(key) + 16;
    char *p = malloc(n);
    if (!p) return pissa__fail(PISSA_ERR_NOMEM, "adapter_config.json: out of memory");
    snprintf(p, n, "(.*\\.)?(%s)$", key);
    char what[160];
    snprintf(what, sizeof what, "%s key '%.120s'", field, key);
    pissa_status st = re_compile(p, PCRE2_ANCHORED, what, out);
    free(p);
    return st;
}

pissa_status pissa__resolver_init(pissa__resolver *R, const pissa_peft_config *cfg) {
    memset(R, 0, sizeof *R);
    R->cfg = cfg;
    R->kind = cfg->target_kind;
    /* PEFT lower-cases a string target before comparing it with "all-linear". */
    if (R->kind == PISSA_TARGET_REGEX && strcasecmp(cfg->target_modules, "all-linear") == 0)
        R->kind = PISSA_TARGET_ALL_LINEAR;
    pissa_status st = PISSA_OK;
    if (R->kind == PISSA_TARGET_REGEX)
        st = re_compile(cfg->target_modules, PCRE2_ANCHORED | PCRE2_ENDANCHORED, "target_modules", &R->target);
    /* Python's \d is ASCII here: int() of the group must parse, and module paths are ASCII. */
    if (st == PISSA_OK) {
        int err;
        PCRE2_SIZE at;
        R->layer = pcre2_compile((PCRE2_SPTR) ".*\\.[^.]*\\.([0-9]+)\\.", PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &err,
                                 &at, NULL);
        if (!R->layer) st = pissa__fail(PISSA_ERR_NOMEM, "adapter_config.json: out of memory");
    }
    for (int64_t i = 0; st == PISSA_OK && i < cfg->n_rank_pattern; i++)
        st = compile_pattern_key(cfg->rank_pattern[i].key, "rank_pattern", &R->rank[i]);
    for (int64_t i = 0; st == PISSA_OK && i < cfg->n_alpha_pattern; i++)
        st = compile_pattern_key(cfg->alpha_pattern[i].key, "alpha_pattern", &R->alpha[i]);
    if (st == PISSA_OK && !(R->md = pcre2_match_data_create(16, NULL)))
        st = pissa__fail(PISSA_ERR_NOMEM, "adapter_config.json: out of memory");
    if (st != PISSA_OK) pissa__resolver_free(R);
    return st;
}

static pissa_status engine_error(const char *field, const char *module) {
    return pissa__fail(PISSA_ERR_UNSUPPORTED, "adapter_config.json: %s: the regular expression engine gave up on '%s'",
                       field, module);
}

/* PEFT's layer filter: the index N of the last ".NAME.N." in MODULE must be in layers_to_transform. */
static pissa_status layer_selected(pissa__resolver *R, const char *module, int *ok) {
    const pissa_peft_config *c = R->cfg;
    *ok = 1;
    if (!c->has_layers_to_transform || c->n_layers_to_transform == 0) return PISSA_OK;
    int m = re_match(R->layer, module, R->md);
    if (m < 0) return engine_error("layers_to_transform", module);
    *ok = 0;
    if (!m) return PISSA_OK;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(R->md);
    size_t len = ov[3] - ov[2];
    if (len > 18) return PISSA_OK; /* beyond int64: in no list */
    int64_t n = 0;
    for (size_t k = 0; k < len; k++) n = n * 10 + (module[ov[2] + k] - '0');
    for (int64_t i = 0; i < c->n_layers_to_transform; i++)
        if (c->layers_to_transform[i] == n) *ok = 1;
    return PISSA_OK;
}

static int ends_with_component(const char *module, const char *name, size_t k) {
    size_t m = strlen(module);
    return m > k && module[m - k - 1] == '.' && memcmp(module + m - k, name, k) == 0;
}

static pissa_status is_targeted(pissa__resolver *R, const char *module, int *targeted) {
    const pissa_peft_config *c = R->cfg;
    *targeted = 0;
    if (R->kind == PISSA_TARGET_REGEX) {
        int m = re_match(R->target, module, R->md);
        if (m < 0) return engine_error("target_modules", module);
        *targeted = m;
        return PISSA_OK;
    }
    int suffix = 0;
    if (R->kind == PISSA_TARGET_ALL_LINEAR) {
        /* every nn.Linear but the output layer lm_head (PEFT excludes model.get_output_embeddings()): the seven
         * projections in each supported family */
        for (int j = 0; j < PISSA_N_PROJ; j++)
            if (ends_with_component(module, pissa_proj_name(j), strlen(pissa_proj_name(j)))) suffix = 1;
    } else {
        /* An empty list stands for null: PEFT then uses its default for the model type (Llama: q_proj, v_proj). */
        const char *list = c->target_modules[0] ? c->target_modules : "q_proj,v_proj";
        for (const char *p = list; *p;) {
            const char *e = strchr(p, ',');
            size_t k = e ? (size_t)(e - p) : strlen(p);
            if (strlen(module) == k && memcmp(module, p, k) == 0) {
                *targeted = 1; /* named exactly: PEFT skips the layer filter */
                return PISSA_OK;
            }
            if (ends_with_component(module, p, k)) suffix = 1;
            p += k + (e != NULL);
        }
    }
    if (!suffix) return PISSA_OK;
    return layer_selected(R, module, targeted);
}

/* First pattern (in file order) whose key matches, else -1. */
static pissa_status pattern_index(pissa__resolver *R, pcre2_code *const *res, int64_t n, const char *field,
                                  const char *module, int64_t *index) {
    *index = -1;
    for (int64_t i = 0; i < n; i++) {
        int m = re_match(res[i], module, R->md);
        if (m < 0) return engine_error(field, module);
        if (m) {
            *index = i;
            break;
        }
    }
    return PISSA_OK;
}

pissa_status pissa__resolve(pissa__resolver *R, const char *module, int *targeted, int64_t *r, double *alpha,
                            double *scale) {
    const pissa_peft_config *c = R->cfg;
    int t;
    int64_t ri, ai;
    PISSA_TRY(is_targeted(R, module, &t));
    PISSA_TRY(pattern_index(R, R->rank, c->n_rank_pattern, "rank_pattern", module, &ri));
    PISSA_TRY(pattern_index(R, R->alpha, c->n_alpha_pattern, "alpha_pattern", module, &ai));
    int64_t rank = ri >= 0 ? (int64_t)c->rank_pattern[ri].value : c->r;
    double a = ai >= 0 ? c->alpha_pattern[ai].value : c->lora_alpha;
    if (targeted) *targeted = t;
    if (r) *r = rank;
    if (alpha) *alpha = a;
    if (scale) *scale = pissa_lora_scale(a, rank, c->use_rslora);
    return PISSA_OK;
}

pissa_status pissa_peft_resolve(const pissa_peft_config *cfg, const char *module, int *targeted, int64_t *r,
                                double *alpha, double *scale) {
    if (!cfg || !module) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_peft_resolve: NULL argument");
    pissa__resolver R;
    PISSA_TRY(pissa__resolver_init(&R, cfg));
    pissa_status st = pissa__resolve(&R, module, targeted, r, alpha, scale);
    pissa__resolver_free(&R);
    return st;
}

