/* PEFT interoperability: target matching against a transliteration of PEFT's own code run with Python's `re`
 * (tests/reference/make_interop_match_reference.py), adapter validation, PiSSA → LoRA conversion at the weight
 * level, merge/unmerge against products computed here in double, and pissa-merge / pissa-convert end to end on
 * checkpoints written by pissa-synth and adapters written by pissa-init. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peft_internal.h"
#include "testutil.h"

static const char *proj[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

/* ---------------------------------------------------------------------------------------------- */
/* helpers                                                                                        */

static pissa_peft_config parse_config(const char *json) {
    pissa_peft_config c;
    assert_ok(pissa__peft_config_parse_into(json, strlen(json), "test config", &c));
    return c;
}

/* max |X − Y| / max(1, max |Y|) with X float and Y double. */
static double rel_err(const float *x, const double *y, size_t n) {
    double m = 0, ymax = 1;
    for (size_t i = 0; i < n; i++) {
        m = fmax(m, fabs((double)x[i] - y[i]));
        ymax = fmax(ymax, fabs(y[i]));
    }
    return m / ymax;
}

/* Y (out, in) = W + s·B·A in double. */
static void merged_double(const float *W, const float *A, const float *B, int64_t out, int64_t in, int64_t r,
                          double s, double *Y) {
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++) {
            double acc = 0;
            for (int64_t k = 0; k < r; k++) acc += (double)B[o * r + k] * A[k * in + i];
            Y[o * in + i] = W[o * in + i] + s * acc;
        }
}

static int run_prog(const char *exe, const char *args, const char *log_path, char **log) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s", exe, args);
    int rc = tu_run(cmd, log_path);
    *log = tu_slurp(log_path, NULL);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* target matching                                                                                */

static void resolve_matches_peft_reference_on_llama_modules(void **state) {
    (void)state;
    char *path = tu_path(PISSA_TEST_REFERENCE_DIR, "interop_match_cases.json");
    size_t len;
    char *text = tu_slurp(path, &len);
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    int n_configs = 0, n_decisions = 0, n_targeted = 0;
    for (cJSON *c = root->child; c; c = c->next, n_configs++) {
        const char *json = cJSON_GetObjectItem(c, "config")->valuestring;
        pissa_peft_config cfg = parse_config(json);
        cJSON *mods = cJSON_GetObjectItem(c, "modules [name, targeted, r, alpha, scale]");
        for (cJSON *m = mods->child; m; m = m->next, n_decisions++) {
            const char *module = cJSON_GetArrayItem(m, 0)->valuestring;
            int want_t = cJSON_GetArrayItem(m, 1)->valueint, targeted = -1;
            int64_t want_r = (int64_t)cJSON_GetArrayItem(m, 2)->valuedouble, r = -1;
            double want_a = cJSON_GetArrayItem(m, 3)->valuedouble, want_s = cJSON_GetArrayItem(m, 4)->valuedouble;
            double alpha = NAN, scale = NAN;
            assert_ok(pissa_peft_resolve(&cfg, module, &targeted, &r, &alpha, &scale));
            if (targeted != want_t || r != want_r || alpha != want_a || fabs(scale - want_s) > 1e-12 * want_s)
                fail_msg("%s\n  module %s: got targeted %d r %lld alpha %g scale %.17g; PEFT: %d %lld %g %.17g", json,
                         module, targeted, (long long)r, alpha, scale, want_t, (long long)want_r, want_a, want_s);
            n_targeted += targeted;
        }
    }
    assert_int_equal(n_configs, 14);
    assert_true(n_decisions > 700);
    assert_true(n_targeted > 100); /* the reference is not all "no" */
    cJSON_Delete(root);
    free(text);
    free(path);
}

static void resolve_refuses_invalid_regex_naming_the_field(void **state) {
    (void)state;
    pissa_peft_config c = parse_config("{\"peft_type\": \"LORA\", \"target_modules\": \".*(q_proj\"}");
    assert_int_equal(pissa_peft_resolve(&c, "model.layers.0.self_attn.q_proj", NULL, NULL, NULL, NULL),
                     PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "target_modules"));
    c = parse_config("{\"peft_type\": \"LORA\", \"rank_pattern\": {\"q_proj[\": 4}}");
    assert_int_equal(pissa_peft_resolve(&c, "model.layers.0.self_attn.q_proj", NULL, NULL, NULL, NULL),
                     PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "rank_pattern key 'q_proj['"));
}

/* ---------------------------------------------------------------------------------------------- */
/* adapter checks                                                                                 */

/* A 2-layer base: every projection, D = 16, F = 24; plus the embedding and lm_head. */
typedef struct base_shapes {
    char names[16][64];
    pissa_linear_shape s[16];
    size_t n;
} base_shapes;

static void make_base(base_shapes *b) {
    b->n = 0;
    for (int l = 0; l < 2; l++)
        for (int j = 0; j < 7; j++) {
            snprintf(b->names[b->n], 64, "model.layers.%d.%s.%s", l, j < 4 ? "self_attn" : "mlp", proj[j]);
            int64_t out = j == 4 || j == 5 ? 24 : 16, in = j == 6 ? 24 : 16;
            b->s[b->n] = (pissa_linear_shape){b->names[b->n], out, in};
            b->n++;
        }
    strcpy(b->names[b->n], "lm_head");
    b->s[b->n] = (pissa_linear_shape){b->names[b->n], 32, 16};
    b->n++;
}

/* q_proj and v_proj of both layers, r 4 (v_proj of layer 1: rank_pattern 2). */
static pissa_peft_adapter *make_adapter(const base_shapes *b, const char *extra_json) {
    char json[1024];
    snprintf(json, sizeof json,
             "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\", \"v_proj\"], "
             "\"rank_pattern\": {\"layers.1.self_attn.v_proj\": 2}%s}",
             extra_json);
    pissa_peft_config c = parse_config(json);
    pissa_peft_adapter *a;
    assert_ok(pissa_peft_adapter_create(&c, &a));
    float buf[4 * 24 * 2];
    tu_gaussian(buf, sizeof buf / sizeof buf[0], 7);
    for (size_t i = 0; i < b->n; i++) {
        const char *m = b->s[i].module;
        if (!strstr(m, "q_proj") && !strstr(m, "v_proj")) continue;
        int64_t r = strcmp(m, "model.layers.1.self_attn.v_proj") == 0 ? 2 : 4;
        assert_ok(pissa_peft_adapter_add(a, m, r, b->s[i].in, b->s[i].out, buf, buf + 96));
    }
    return a;
}

static void check_refused(const pissa_peft_adapter *a, const base_shapes *b, pissa_status want, const char *needle) {
    pissa_status s = pissa_peft_adapter_check(a, b->s, b->n);
    if (s != want || !strstr(pissa_last_error(), needle))
        fail_msg("expected %s with '%s', got %s: %s", pissa_status_name(want), needle, pissa_status_name(s),
                 pissa_last_error());
}

static void adapter_check_accepts_a_matching_adapter(void **state) {
    (void)state;
    base_shapes b;
    make_base(&b);
    pissa_peft_adapter *a = make_adapter(&b, "");
    assert_int_equal(pissa_peft_adapter_count(a), 4);
    assert_ok(pissa_peft_adapter_check(a, b.s, b.n));
    pissa_peft_adapter_free(a);
}

static void adapter_check_refuses_unsupported_config_fields(void **state) {
    (void)state;
    base_shapes b;
    make_base(&b);
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {", \"use_dora\": true", "'use_dora'"},
        {", \"lora_bias\": true", "'lora_bias'"},
        {", \"modules_to_save\": [\"lm_head\"]", "'modules_to_save'"},
        {", \"fan_in_fan_out\": true", "'fan_in_fan_out'"},
        {", \"init_lora_weights\": \"pissa_niter_4\"", "'init_lora_weights'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pissa_peft_adapter *a = make_adapter(&b, cases[i].json);
        check_refused(a, &b, PISSA_ERR_UNSUPPORTED, cases[i].needle);
        pissa_peft_adapter_free(a);
    }
}

static void adapter_check_refuses_unmatched_untargeted_and_misshapen_tensors(void **state) {
    (void)state;
    base_shapes b;
    make_base(&b);
    float buf[32 * 8] = {0};
    /* a module the base does not have */
    pissa_peft_adapter *a = make_adapter(&b, "");
    assert_ok(pissa_peft_adapter_add(a, "model.layers.7.self_attn.q_proj", 4, 16, 16, buf, buf));
    check_refused(a, &b, PISSA_ERR_NOT_FOUND, "'base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight'");
    pissa_peft_adapter_free(a);
    /* a base module the config does not target */
    a = make_adapter(&b, "");
    assert_ok(pissa_peft_adapter_add(a, "model.layers.0.self_attn.k_proj", 4, 16, 16, buf, buf));
    check_refused(a, &b, PISSA_ERR_FORMAT, "module 'model.layers.0.self_attn.k_proj' is not targeted");
    pissa_peft_adapter_free(a);
    /* a layer outside layers_to_transform */
    a = make_adapter(&b, ", \"layers_to_transform\": [1]");
    check_refused(a, &b, PISSA_ERR_FORMAT, "module 'model.layers.0.self_attn.q_proj' is not targeted");
    pissa_peft_adapter_free(a);
    /* the rank the config assigns */
    a = make_adapter(&b, "");
    pissa_peft_adapter_config_mut(a)->n_rank_pattern = 0;
    check_refused(a, &b, PISSA_ERR_FORMAT, "has rank 2 but adapter_config.json assigns 4");
    pissa_peft_adapter_free(a);
    /* A (r, in) and B (out, r) against the base weight (out, in) */
    base_shapes wrong = b;
    wrong.s[0].in = 20; /* layer 0 q_proj */
    a = make_adapter(&b, "");
    check_refused(a, &wrong, PISSA_ERR_SHAPE,
                  "'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' is (4, 16)");
    wrong = b;
    wrong.s[2].out = 8; /* layer 0 v_proj */
    check_refused(a, &wrong, PISSA_ERR_SHAPE,
                  "'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight' is (16, 4)");
    pissa_peft_adapter_free(a);
}

/* ---------------------------------------------------------------------------------------------- */
/* PiSSA → LoRA                                                                                   */

typedef struct conv_module {
    const char *name;
    int64_t out, in, r;
    float *W, *W_res, *A0, *B0, *A, *B;
} conv_module;

/* PiSSA-initialises W of each module, then "trains" (A0, B0) into (A, B) by a random perturbation. */
static void conv_setup(conv_module *m, size_t n, const pissa_peft_config *cfg, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        int64_t r;
        double alpha;
        assert_ok(pissa_peft_resolve(cfg, m[i].name, NULL, &r, &alpha, NULL));
        m[i].r = r;
        size_t nw = (size_t)(m[i].out * m[i].in), na = (size_t)(r * m[i].in), nb = (size_t)(m[i].out * r);
        m[i].W = malloc(sizeof(float) * nw), m[i].W_res = malloc(sizeof(float) * nw);
        m[i].A0 = malloc(sizeof(float) * na), m[i].A = malloc(sizeof(float) * na);
        m[i].B0 = malloc(sizeof(float) * nb), m[i].B = malloc(sizeof(float) * nb);
        tu_gaussian(m[i].W, nw, seed + i);
        pissa_init_opts o = pissa_init_default_opts();
        o.kind = PISSA_INIT_PISSA;
        o.rank = r;
        o.alpha = alpha;
        o.use_rslora = cfg->use_rslora;
        assert_ok(pissa_adapter_init(m[i].W, m[i].out, m[i].in, &o, m[i].A0, m[i].B0, m[i].W_res));
        float *noise = malloc(sizeof(float) * (na > nb ? na : nb));
        tu_gaussian(noise, na, seed + 100 + i);
        for (size_t k = 0; k < na; k++) m[i].A[k] = m[i].A0[k] + 0.1f * noise[k];
        tu_gaussian(noise, nb, seed + 200 + i);
        for (size_t k = 0; k < nb; k++) m[i].B[k] = m[i].B0[k] + 0.1f * noise[k];
        free(noise);
    }
}

static void conv_free(conv_module *m, size_t n) {
    for (size_t i = 0; i < n; i++) free(m[i].W), free(m[i].W_res), free(m[i].A0), free(m[i].B0), free(m[i].A),
        free(m[i].B);
}

/* W_res + s·B·A (the trained PiSSA model) == W + s'·B'·A' (the original base with the converted adapter). */
static void check_conversion(const char *config_json, double alpha_factor) {
    pissa_peft_config cfg = parse_config(config_json);
    conv_module m[3] = {{"model.layers.0.self_attn.q_proj", 24, 16, 0, 0, 0, 0, 0, 0, 0},
                        {"model.layers.0.self_attn.v_proj", 8, 16, 0, 0, 0, 0, 0, 0, 0},
                        {"model.layers.1.mlp.down_proj", 16, 40, 0, 0, 0, 0, 0, 0, 0}};
    conv_setup(m, 3, &cfg, 11);
    pissa_peft_adapter *trained, *initial, *lora;
    assert_ok(pissa_peft_adapter_create(&cfg, &trained));
    assert_ok(pissa_peft_adapter_create(&cfg, &initial));
    for (int i = 0; i < 3; i++) {
        assert_ok(pissa_peft_adapter_add(trained, m[i].name, m[i].r, m[i].in, m[i].out, m[i].A, m[i].B));
        assert_ok(pissa_peft_adapter_add(initial, m[i].name, m[i].r, m[i].in, m[i].out, m[i].A0, m[i].B0));
    }
    assert_ok(pissa_peft_pissa_to_lora(trained, initial, "original/base", &lora));
    const pissa_peft_config *o = pissa_peft_adapter_config(lora);
    assert_int_equal(o->r, 2 * cfg.r);
    assert_true(fabs(o->lora_alpha - alpha_factor * cfg.lora_alpha) < 1e-12 * o->lora_alpha);
    assert_string_equal(o->init_lora_weights, "true");
    assert_string_equal(o->base_model_name_or_path, "original/base");
    assert_int_equal(o->n_rank_pattern, cfg.n_rank_pattern);
    for (int64_t i = 0; i < cfg.n_rank_pattern; i++)
        assert_true(o->rank_pattern[i].value == 2 * cfg.rank_pattern[i].value);
    for (int64_t i = 0; i < cfg.n_alpha_pattern; i++)
        assert_true(fabs(o->alpha_pattern[i].value - alpha_factor * cfg.alpha_pattern[i].value) < 1e-12);
    for (int i = 0; i < 3; i++) {
        size_t at;
        const char *name;
        const pissa_tensor *A2, *B2;
        assert_ok(pissa_peft_adapter_find(lora, m[i].name, &at));
        assert_ok(pissa_peft_adapter_module(lora, at, &name, &A2, &B2));
        assert_int_equal(pissa_tensor_dim(A2, 0), 2 * m[i].r);
        assert_int_equal(pissa_tensor_dim(B2, 1), 2 * m[i].r);
        double s, s2;
        int64_t r2;
        assert_ok(pissa_peft_resolve(&cfg, m[i].name, NULL, NULL, NULL, &s));
        assert_ok(pissa_peft_resolve(o, m[i].name, NULL, &r2, NULL, &s2));
        assert_int_equal(r2, 2 * m[i].r);
        size_t nw = (size_t)(m[i].out * m[i].in);
        double *want = malloc(sizeof(double) * nw), *got = malloc(sizeof(double) * nw);
        merged_double(m[i].W_res, m[i].A, m[i].B, m[i].out, m[i].in, m[i].r, s, want);
        merged_double(m[i].W, pissa_tensor_data(A2), pissa_tensor_data(B2), m[i].out, m[i].in, r2, s2, got);
        double e = 0, w = 0;
        for (size_t k = 0; k < nw; k++) e = fmax(e, fabs(got[k] - want[k])), w = fmax(w, fabs(want[k]));
        if (e > 1e-5 * w) fail_msg("%s: %s: max |difference| %.3g (max |W| %.3g)", config_json, m[i].name, e, w);
        free(want);
        free(got);
    }
    /* the converted adapter saves and loads back (ranks consistent with its doubled rank_pattern) */
    char *dir = tu_tempdir("conv");
    pissa_peft_adapter *back;
    assert_ok(pissa_peft_adapter_save(lora, dir, PISSA_F32));
    assert_ok(pissa_peft_adapter_load(dir, &back));
    assert_int_equal(pissa_peft_adapter_count(back), 3);
    pissa_peft_adapter_free(back);
    tu_rmtree(dir);
    free(dir);
    pissa_peft_adapter_free(trained);
    pissa_peft_adapter_free(initial);
    pissa_peft_adapter_free(lora);
    conv_free(m, 3);
}

static void pissa_to_lora_preserves_the_adapted_weights(void **state) {
    (void)state;
    check_conversion("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": \"all-linear\"}", 2);
}

static void pissa_to_lora_preserves_the_adapted_weights_with_rslora(void **state) {
    (void)state;
    check_conversion("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 6, \"use_rslora\": true, "
                     "\"target_modules\": \"all-linear\"}",
                     sqrt(2.0));
}

static void pissa_to_lora_preserves_the_adapted_weights_with_rank_and_alpha_patterns(void **state) {
    (void)state;
    check_conversion("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": \"all-linear\", "
                     "\"rank_pattern\": {\"v_proj\": 2, \"layers.1.mlp.down_proj\": 6}, "
                     "\"alpha_pattern\": {\"q_proj\": 3}}",
                     2);
    check_conversion("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"use_rslora\": true, "
                     "\"target_modules\": \"all-linear\", \"rank_pattern\": {\"v_proj\": 2}, "
                     "\"alpha_pattern\": {\"q_proj\": 3, \"down_proj\": 5}}",
                     sqrt(2.0));
}

static void pissa_to_lora_refuses_adapters_that_do_not_pair(void **state) {
    (void)state;
    pissa_peft_config c = parse_config("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4}");
    pissa_peft_config c2 = c;
    c2.lora_alpha = 8;
    float buf[64] = {0};
    pissa_peft_adapter *t, *i, *out = NULL;
    assert_ok(pissa_peft_adapter_create(&c, &t));
    assert_ok(pissa_peft_adapter_create(&c2, &i));
    assert_ok(pissa_peft_adapter_add(t, "model.layers.0.self_attn.q_proj", 2, 8, 8, buf, buf));
    assert_int_equal(pissa_peft_pissa_to_lora(t, i, NULL, &out), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "'lora_alpha'"));
    pissa_peft_adapter_free(i);
    assert_ok(pissa_peft_adapter_create(&c, &i));
    assert_ok(pissa_peft_adapter_add(i, "model.layers.0.self_attn.v_proj", 2, 8, 8, buf, buf));
    assert_int_equal(pissa_peft_pissa_to_lora(t, i, NULL, &out), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "'model.layers.0.self_attn.q_proj'"));
    assert_null(out);
    pissa_peft_adapter_free(t);
    pissa_peft_adapter_free(i);
}

/* ---------------------------------------------------------------------------------------------- */
/* merge and unmerge                                                                              */

static void merge_then_unmerge_returns_the_weight(void **state) {
    (void)state;
    enum { OUT = 48, IN = 40, R = 6 };
    float W[OUT * IN], W0[OUT * IN], A[R * IN], B[OUT * R];
    double want[OUT * IN];
    tu_gaussian(W, OUT * IN, 1);
    tu_gaussian(A, R * IN, 2);
    tu_gaussian(B, OUT * R, 3);
    memcpy(W0, W, sizeof W);
    assert_ok(pissa_lora_merge(W, OUT, IN, R, A, B, 0.75));
    merged_double(W0, A, B, OUT, IN, R, 0.75, want);
    assert_true(rel_err(W, want, OUT * IN) < 1e-6);
    assert_ok(pissa_lora_unmerge(W, OUT, IN, R, A, B, 0.75));
    for (int k = 0; k < OUT * IN; k++) want[k] = W0[k];
    assert_true(rel_err(W, want, OUT * IN) < 1e-6);
    /* through an adapter: the config's scale (rank_pattern 3, alpha 9: s = 3), absent modules untouched */
    pissa_peft_config c = parse_config("{\"peft_type\": \"LORA\", \"r\": 6, \"lora_alpha\": 9, "
                                       "\"rank_pattern\": {\"q_proj\": 3}}");
    pissa_peft_adapter *a;
    assert_ok(pissa_peft_adapter_create(&c, &a));
    assert_ok(pissa_peft_adapter_add(a, "model.layers.0.self_attn.q_proj", 3, IN, OUT, A, B));
    memcpy(W, W0, sizeof W);
    int merged = -1;
    assert_ok(pissa_peft_merge_module(a, "model.layers.0.self_attn.v_proj", W, OUT, IN, &merged));
    assert_int_equal(merged, 0);
    assert_memory_equal(W, W0, sizeof W);
    assert_ok(pissa_peft_merge_module(a, "model.layers.0.self_attn.q_proj", W, OUT, IN, &merged));
    assert_int_equal(merged, 1);
    merged_double(W0, A, B, OUT, IN, 3, 3.0, want);
    assert_true(rel_err(W, want, OUT * IN) < 1e-6);
    assert_ok(pissa_peft_unmerge_module(a, "model.layers.0.self_attn.q_proj", W, OUT, IN, &merged));
    for (int k = 0; k < OUT * IN; k++) want[k] = W0[k];
    assert_true(rel_err(W, want, OUT * IN) < 1e-6);
    assert_int_equal(pissa_peft_merge_module(a, "model.layers.0.self_attn.q_proj", W, OUT, IN + 1, &merged),
                     PISSA_ERR_SHAPE);
    pissa_peft_adapter_free(a);
}

/* ---------------------------------------------------------------------------------------------- */
/* checkpoints and programs                                                                       */

typedef struct fixture {
    char *dir, *base, *log;
} fixture;

enum { L = 3, D = 32, F = 48, V = 64 };

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir("interop");
    f->base = tu_path(f->dir, "base");
    f->log = tu_path(f->dir, "log.txt");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --out %s --layers %d --dim %d --hidden %d --heads 4 --kv-heads 2 --vocab %d --untied",
             PISSA_SYNTH_EXE, f->base, L, D, F, V);
    if (tu_run(cmd, NULL) != 0) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tu_rmtree(f->dir);
    free(f->dir), free(f->base), free(f->log), free(f);
    return 0;
}

static void checkpoint_linear_shapes_lists_every_2d_weight(void **state) {
    fixture *f = *state;
    pissa_checkpoint *c;
    assert_ok(pissa_checkpoint_open(f->base, &c));
    pissa_linear_shape *s;
    size_t n;
    assert_ok(pissa_checkpoint_linear_shapes(c, &s, &n));
    assert_int_equal(n, 7 * L + 2); /* projections, embed_tokens, lm_head */
    int seen_q = 0, seen_head = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(s[i].module, "model.layers.2.self_attn.k_proj")) {
            seen_q = 1;
            assert_int_equal(s[i].out, 2 * (D / 4));
            assert_int_equal(s[i].in, D);
        }
        if (!strcmp(s[i].module, "lm_head")) seen_head = 1, assert_int_equal(s[i].out, V);
        assert_null(strstr(s[i].module, "norm"));
    }
    assert_true(seen_q && seen_head);
    free(s);
    pissa_checkpoint_free(c);
}

/* A LoRA adapter with random A, B on every projection of layers 0 and 2 (layers_to_transform), rank_pattern
 * for down_proj, alpha_pattern for q_proj. */
static pissa_peft_adapter *random_adapter(const pissa_checkpoint *c) {
    pissa_peft_config cfg = parse_config("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 6, \"target_modules\": "
                                         "\"all-linear\", \"layers_to_transform\": [0, 2], \"rank_pattern\": "
                                         "{\"down_proj\": 2}, \"alpha_pattern\": {\"q_proj\": 20}}");
    pissa_peft_adapter *a;
    assert_ok(pissa_peft_adapter_create(&cfg, &a));
    pissa_linear_shape *s;
    size_t n;
    assert_ok(pissa_checkpoint_linear_shapes(c, &s, &n));
    for (size_t i = 0; i < n; i++) {
        int t;
        int64_t r;
        assert_ok(pissa_peft_resolve(&cfg, s[i].module, &t, &r, NULL, NULL));
        if (!t) continue;
        float *A = malloc(sizeof(float) * (size_t)(r * s[i].in)), *B = malloc(sizeof(float) * (size_t)(s[i].out * r));
        tu_gaussian(A, (size_t)(r * s[i].in), 40 + i);
        tu_gaussian(B, (size_t)(s[i].out * r), 80 + i);
        for (int64_t k = 0; k < s[i].out * r; k++) B[k] *= 0.05f;
        assert_ok(pissa_peft_adapter_add(a, s[i].module, r, s[i].in, s[i].out, A, B));
        free(A), free(B);
    }
    free(s);
    assert_int_equal(pissa_peft_adapter_count(a), 14);
    return a;
}

/* Every tensor of OUT against BASE: adapted weights equal W ± s·B·A computed here in double (within TOL
 * relative), the others the base's exact bytes (SAME_BYTES) or values. */
static void compare_merged(const pissa_checkpoint *base, const pissa_checkpoint *out, const pissa_peft_adapter *a,
                           int sign, double tol, int same_bytes) {
    assert_int_equal(pissa_checkpoint_count(out), pissa_checkpoint_count(base));
    const pissa_peft_config *cfg = pissa_peft_adapter_config(a);
    int n_adapted = 0;
    for (size_t i = 0; i < pissa_checkpoint_count(base); i++) {
        const char *name = pissa_checkpoint_name(base, i);
        pissa_st_info bi, oi;
        assert_ok(pissa_checkpoint_find(base, name, &bi));
        assert_ok(pissa_checkpoint_find(out, name, &oi));
        assert_int_equal(oi.ndim, bi.ndim);
        assert_memory_equal(oi.shape, bi.shape, sizeof(int64_t) * (size_t)bi.ndim);
        char module[256];
        snprintf(module, sizeof module, "%s", name);
        if (strlen(module) > 7) module[strlen(module) - 7] = '\0';
        size_t at;
        int adapted = pissa_peft_adapter_find(a, module, &at) == PISSA_OK;
        float *W = malloc(sizeof(float) * (size_t)bi.numel), *M = malloc(sizeof(float) * (size_t)bi.numel);
        double *want = malloc(sizeof(double) * (size_t)bi.numel);
        assert_ok(pissa_checkpoint_read_f32(base, name, W, bi.numel));
        assert_ok(pissa_checkpoint_read_f32(out, name, M, bi.numel));
        if (adapted) {
            const char *m;
            const pissa_tensor *A, *B;
            double s;
            assert_ok(pissa_peft_adapter_module(a, at, &m, &A, &B));
            assert_ok(pissa_peft_resolve(cfg, module, NULL, NULL, NULL, &s));
            merged_double(W, pissa_tensor_data(A), pissa_tensor_data(B), bi.shape[0], bi.shape[1],
                          pissa_tensor_dim(A, 0), sign * s, want);
            double e = rel_err(M, want, (size_t)bi.numel);
            if (e > tol) fail_msg("%s: merged weight differs from W + s*B*A by %.3g (tolerance %.3g)", name, e, tol);
            n_adapted++;
        } else if (same_bytes) {
            assert_int_equal(oi.dtype, bi.dtype);
            assert_memory_equal(oi.data, bi.data, bi.nbytes);
        } else {
            for (int64_t k = 0; k < bi.numel; k++) want[k] = W[k];
            assert_true(rel_err(M, want, (size_t)bi.numel) <= tol);
        }
        free(W), free(M), free(want);
    }
    assert_int_equal(n_adapted, (int)pissa_peft_adapter_count(a));
}

static void merged_checkpoint_equals_base_plus_scaled_product(void **state) {
    fixture *f = *state;
    pissa_checkpoint *base, *out, *back;
    assert_ok(pissa_checkpoint_open(f->base, &base));
    pissa_peft_adapter *a = random_adapter(base);
    char *dir = tu_path(f->dir, "merged"), *dir16 = tu_path(f->dir, "merged_bf16"),
         *undir = tu_path(f->dir, "unmerged");
    assert_ok(pissa_peft_merge_checkpoint(base, a, 0, -1, dir));
    assert_ok(pissa_checkpoint_open(dir, &out));
    assert_string_equal(pissa_checkpoint_config_json(out), pissa_checkpoint_config_json(base));
    compare_merged(base, out, a, +1, 1e-6, 1);
    /* unmerging the merged checkpoint gives the base back */
    assert_ok(pissa_peft_merge_checkpoint(out, a, 1, -1, undir));
    assert_ok(pissa_checkpoint_open(undir, &back));
    compare_merged(out, back, a, -1, 1e-6, 1);
    for (size_t i = 0; i < pissa_checkpoint_count(base); i++) {
        pissa_st_info bi;
        const char *name = pissa_checkpoint_name(base, i);
        assert_ok(pissa_checkpoint_find(base, name, &bi));
        float *W = malloc(sizeof(float) * (size_t)bi.numel), *U = malloc(sizeof(float) * (size_t)bi.numel);
        double *w = malloc(sizeof(double) * (size_t)bi.numel);
        assert_ok(pissa_checkpoint_read_f32(base, name, W, bi.numel));
        assert_ok(pissa_checkpoint_read_f32(back, name, U, bi.numel));
        for (int64_t k = 0; k < bi.numel; k++) w[k] = W[k];
        assert_true(rel_err(U, w, (size_t)bi.numel) < 1e-6);
        free(W), free(U), free(w);
    }
    /* bf16 output: every float tensor stored as BF16, torch_dtype updated, values within bf16 rounding */
    pissa_checkpoint *o16;
    assert_ok(pissa_peft_merge_checkpoint(base, a, 0, PISSA_BF16, dir16));
    assert_ok(pissa_checkpoint_open(dir16, &o16));
    assert_string_equal(pissa_checkpoint_config(o16)->torch_dtype, "bfloat16");
    pissa_st_info info;
    assert_ok(pissa_checkpoint_find(o16, "model.layers.1.mlp.up_proj.weight", &info));
    assert_int_equal(info.dtype, PISSA_BF16);
    compare_merged(base, o16, a, +1, 1.0 / 128, 0);
    pissa_checkpoint_free(o16);
    pissa_checkpoint_free(back);
    pissa_checkpoint_free(out);
    pissa_checkpoint_free(base);
    pissa_peft_adapter_free(a);
    free(dir), free(dir16), free(undir);
}

/* residual (pissa-init) + its pissa_init adapter, merged by pissa-merge, gives the original base back. */
static void pissa_merge_of_residual_and_initial_adapter_is_the_base(void **state) {
    fixture *f = *state;
    char args[4096], *log, *res = tu_path(f->dir, "res"), *merged = tu_path(f->dir, "res_merged");
    snprintf(args, sizeof args, "--model %s --out %s --rank 4 --alpha 8 --target all-linear --init pissa -q", f->base,
             res);
    int rc = run_prog(PISSA_INIT_EXE, args, f->log, &log);
    if (rc) fail_msg("pissa-init: %s", log);
    free(log);
    snprintf(args, sizeof args, "--model %s --adapter %s/pissa_init --out %s", res, res, merged);
    rc = run_prog(PISSA_MERGE_EXE, args, f->log, &log);
    if (rc) fail_msg("pissa-merge: %s", log);
    assert_non_null(strstr(log, "merged 21 adapted weights"));
    free(log);
    pissa_checkpoint *b, *m;
    assert_ok(pissa_checkpoint_open(f->base, &b));
    assert_ok(pissa_checkpoint_open(merged, &m));
    assert_int_equal(pissa_checkpoint_count(m), pissa_checkpoint_count(b));
    double worst = 0;
    for (size_t i = 0; i < pissa_checkpoint_count(b); i++) {
        const char *name = pissa_checkpoint_name(b, i);
        pissa_st_info bi;
        assert_ok(pissa_checkpoint_find(b, name, &bi));
        float *W = malloc(sizeof(float) * (size_t)bi.numel), *M = malloc(sizeof(float) * (size_t)bi.numel);
        assert_ok(pissa_checkpoint_read_f32(b, name, W, bi.numel));
        assert_ok(pissa_checkpoint_read_f32(m, name, M, bi.numel));
        double e = tu_diff_norm(M, W, (size_t)bi.numel) / tu_norm(W, (size_t)bi.numel);
        worst = fmax(worst, e);
        free(W), free(M);
    }
    print_message("    residual + pissa_init merged vs base: worst relative Frobenius error %.3g\n", worst);
    assert_true(worst < 1e-6);
    pissa_checkpoint_free(b);
    pissa_checkpoint_free(m);
    free(res), free(merged);
}

/* pissa-convert end to end: base merged with the converted adapter == residual merged with the trained one. */
static void pissa_convert_output_on_base_equals_trained_adapter_on_residual(void **state) {
    fixture *f = *state;
    char args[4096], *log, *res = tu_path(f->dir, "res2"), *trained = tu_path(f->dir, "trained"),
                         *conv = tu_path(f->dir, "converted"), *m1 = tu_path(f->dir, "m_base_conv"),
                         *m2 = tu_path(f->dir, "m_res_trained");
    snprintf(args, sizeof args, "--model %s --out %s --rank 4 --alpha 4 --rslora --target q_proj,v_proj,down_proj "
             "--init pissa_niter_2 -q", f->base, res);
    int rc = run_prog(PISSA_INIT_EXE, args, f->log, &log);
    if (rc) fail_msg("pissa-init: %s", log);
    free(log);
    /* "train": perturb every A and B of the initial adapter */
    char *init_dir = tu_path(res, "pissa_init");
    pissa_peft_adapter *a;
    assert_ok(pissa_peft_adapter_load(init_dir, &a));
    for (size_t i = 0; i < pissa_peft_adapter_count(a); i++) {
        const char *m;
        const pissa_tensor *A, *B;
        assert_ok(pissa_peft_adapter_module(a, i, &m, &A, &B));
        int64_t na = pissa_tensor_numel(A), nb = pissa_tensor_numel(B);
        float *noise = malloc(sizeof(float) * (size_t)(na > nb ? na : nb));
        tu_gaussian(noise, (size_t)pissa_tensor_numel(A), 500 + i);
        for (int64_t k = 0; k < pissa_tensor_numel(A); k++) pissa_tensor_data(A)[k] += 0.05f * noise[k];
        tu_gaussian(noise, (size_t)pissa_tensor_numel(B), 900 + i);
        for (int64_t k = 0; k < pissa_tensor_numel(B); k++) pissa_tensor_data(B)[k] += 0.05f * noise[k];
        free(noise);
    }
    assert_ok(pissa_peft_adapter_save(a, trained, PISSA_F32));
    pissa_peft_adapter_free(a);
    snprintf(args, sizeof args, "--adapter %s --initial %s --out %s --base %s", trained, init_dir, conv, f->base);
    rc = run_prog(PISSA_CONVERT_EXE, args, f->log, &log);
    if (rc) fail_msg("pissa-convert: %s", log);
    assert_non_null(strstr(log, "rank 4 -> 8"));
    free(log);
    pissa_peft_adapter *c;
    assert_ok(pissa_peft_adapter_load(conv, &c));
    assert_int_equal(pissa_peft_adapter_config(c)->r, 8);
    assert_true(fabs(pissa_peft_adapter_config(c)->lora_alpha - 4 * sqrt(2.0)) < 1e-12);
    assert_string_equal(pissa_peft_adapter_config(c)->base_model_name_or_path, f->base);
    pissa_peft_adapter_free(c);
    snprintf(args, sizeof args, "--model %s --adapter %s --out %s", f->base, conv, m1);
    rc = run_prog(PISSA_MERGE_EXE, args, f->log, &log);
    if (rc) fail_msg("pissa-merge (base + converted): %s", log);
    free(log);
    snprintf(args, sizeof args, "--model %s --adapter %s --out %s", res, trained, m2);
    rc = run_prog(PISSA_MERGE_EXE, args, f->log, &log);
    if (rc) fail_msg("pissa-merge (residual + trained): %s", log);
    free(log);
    pissa_checkpoint *c1, *c2;
    assert_ok(pissa_checkpoint_open(m1, &c1));
    assert_ok(pissa_checkpoint_open(m2, &c2));
    double worst = 0;
    for (size_t i = 0; i < pissa_checkpoint_count(c1); i++) {
        const char *name = pissa_checkpoint_name(c1, i);
        pissa_st_info info;
        assert_ok(pissa_checkpoint_find(c1, name, &info));
        float *x = malloc(sizeof(float) * (size_t)info.numel), *y = malloc(sizeof(float) * (size_t)info.numel);
        assert_ok(pissa_checkpoint_read_f32(c1, name, x, info.numel));
        assert_ok(pissa_checkpoint_read_f32(c2, name, y, info.numel));
        worst = fmax(worst, tu_diff_norm(x, y, (size_t)info.numel) / tu_norm(y, (size_t)info.numel));
        free(x), free(y);
    }
    print_message("    base + converted vs residual + trained: worst relative Frobenius error %.3g\n", worst);
    assert_true(worst < 1e-6);
    pissa_checkpoint_free(c1);
    pissa_checkpoint_free(c2);
    /* --out equal to an input (however spelled) is refused, the input untouched */
    char *ta = tu_path(trained, "adapter_model.safetensors");
    size_t n0, n1;
    char *before = tu_slurp(ta, &n0);
    const char *outs[2] = {trained, init_dir};
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "--adapter %s --initial %s --out %s/.", trained, init_dir, outs[i]);
        rc = run_prog(PISSA_CONVERT_EXE, args, f->log, &log);
        if (rc != 2 || !strstr(log, "would be overwritten")) fail_msg("pissa-convert --out %s: %d %s", outs[i], rc, log);
        free(log);
    }
    char *after = tu_slurp(ta, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before), free(after), free(ta);
    free(res), free(trained), free(conv), free(m1), free(m2), free(init_dir);
}

/* pissa-merge --to-hf on stories260K (llama2.c v0): q/k rows permuted as REFERENCE §6 says, checked against the
 * raw file read here; with an adapter, the export equals the plain export + s·B·A (double). */
static void pissa_merge_to_hf_exports_llama2c_with_qk_permuted(void **state) {
    fixture *f = *state;
    char *bin = tu_path(PISSA_SHARED_DATA_DIR, "stories260K/stories260K.bin");
    size_t len;
    char *raw = tu_slurp(bin, &len);
    if (!raw) {
        tu_skip_missing(bin);
        free(bin);
    }
    int32_t h[7];
    memcpy(h, raw, sizeof h);
    int64_t dim = h[0], hidden = h[1], nl = h[2], nh = h[3], nkv = h[4], vocab = h[5] < 0 ? -h[5] : h[5];
    int64_t hd = dim / nh, kv_dim = dim * nkv / nh;
    const float *p = (const float *)(raw + sizeof h); /* 28-byte header: copy before use (alignment) */
    int64_t off_wq = vocab * dim + nl * dim, off_wk = off_wq + nl * dim * dim;
    int64_t off_w1 = off_wk + 2 * nl * kv_dim * dim + nl * dim * dim + nl * dim;
    char args[4096], *log, *out = tu_path(f->dir, "hf"), *out2 = tu_path(f->dir, "hf_adapted"),
                         *ad = tu_path(f->dir, "l2c_adapter");
    snprintf(args, sizeof args, "--model %s --to-hf --out %s", bin, out);
    int rc = run_prog(PISSA_MERGE_EXE, args, f->log, &log);
    if (rc) fail_msg("pissa-merge --to-hf: %s", log);
    free(log);
    pissa_checkpoint *c;
    assert_ok(pissa_checkpoint_open(out, &c));
    assert_int_equal(pissa_checkpoint_config(c)->hidden_size, dim);
    assert_int_equal(pissa_checkpoint_config(c)->num_key_value_heads, nkv);
    int64_t l = nl - 1;
    float *q = malloc(sizeof(float) * (size_t)(dim * dim)), *k = malloc(sizeof(float) * (size_t)(kv_dim * dim)),
          *g = malloc(sizeof(float) * (size_t)(hidden * dim)), x;
    char name[128];
    snprintf(name, sizeof name, "model.layers.%lld.self_attn.q_proj.weight", (long long)l);
    assert_ok(pissa_checkpoint_read_f32(c, name, q, dim * dim));
    snprintf(name, sizeof name, "model.layers.%lld.self_attn.k_proj.weight", (long long)l);
    assert_ok(pissa_checkpoint_read_f32(c, name, k, kv_dim * dim));
    snprintf(name, sizeof name, "model.layers.%lld.mlp.gate_proj.weight", (long long)l);
    assert_ok(pissa_checkpoint_read_f32(c, name, g, hidden * dim));
    /* HF row hh·hd + j·hd/2 + i = llama2.c row hh·hd + 2i + j */
    for (int64_t hh = 0; hh < nh; hh++)
        for (int j = 0; j < 2; j++)
            for (int64_t i = 0; i < hd / 2; i++)
                for (int64_t col = 0; col < dim; col++) {
                    int64_t hf_row = hh * hd + j * hd / 2 + i, l2_row = hh * hd + 2 * i + j;
                    memcpy(&x, p + off_wq + l * dim * dim + l2_row * dim + col, sizeof x);
                    assert_true(q[hf_row * dim + col] == x);
                    if (hh < nkv) {
                        memcpy(&x, p + off_wk + l * kv_dim * dim + l2_row * dim + col, sizeof x);
                        assert_true(k[hf_row * dim + col] == x);
                    }
                }
    for (int64_t i = 0; i < hidden * dim; i++) {
        memcpy(&x, p + off_w1 + l * hidden * dim + i, sizeof x);
        assert_true(g[i] == x);
    }
    /* with an adapter on q_proj and down_proj */
    pissa_peft_config cfg = parse_config("{\"peft_type\": \"LORA\", \"r\": 3, \"lora_alpha\": 5, "
                                         "\"target_modules\": [\"q_proj\", \"down_proj\"]}");
    pissa_peft_adapter *a;
    assert_ok(pissa_peft_adapter_create(&cfg, &a));
    float *A = malloc(sizeof(float) * (size_t)(3 * hidden)), *B = malloc(sizeof(float) * (size_t)(dim * 3));
    tu_gaussian(A, (size_t)(3 * hidden), 3);
    tu_gaussian(B, (size_t)(dim * 3), 4);
    snprintf(name, sizeof name, "model.layers.%lld.self_attn.q_proj", (long long)l);
    assert_ok(pissa_peft_adapter_add(a, name, 3, dim, dim, A, B));
    snprintf(name, sizeof name, "model.layers.0.mlp.down_proj");
    assert_ok(pissa_peft_adapter_add(a, name, 3, hidden, dim, A, B));
    assert_ok(pissa_peft_adapter_save(a, ad, PISSA_F32));
    snprintf(args, sizeof args, "--model %s --to-hf --adapter %s --out %s", bin, ad, out2);
    rc = run_prog(PISSA_MERGE_EXE, args, f->log, &log);
    if (rc) fail_msg("pissa-merge --to-hf --adapter: %s", log);
    free(log);
    pissa_checkpoint *c2;
    assert_ok(pissa_checkpoint_open(out2, &c2));
    compare_merged(c, c2, a, +1, 1e-6, 0);
    pissa_checkpoint_free(c2);
    pissa_checkpoint_free(c);
    pissa_peft_adapter_free(a);
    free(A), free(B), free(q), free(k), free(g), free(raw), free(bin), free(out), free(out2), free(ad);
}

/* Replaces the first occurrence of FROM in DIR/adapter_config.json by TO. */
static void edit_config(const char *dir, const char *from, const char *to) {
    char *path = tu_path(dir, "adapter_config.json");
    size_t len;
    char *text = tu_slurp(path, &len), *at = strstr(text, from);
    assert_non_null(at);
    char *out = malloc(len + strlen(to) + 1);
    sprintf(out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    tu_write_bytes(path, out, strlen(out));
    free(text), free(out), free(path);
}

static void expect_merge_error(const fixture *f, const char *adapter, const char *needle) {
    char args[4096], *log, *out = tu_path(f->dir, "refused");
    snprintf(args, sizeof args, "--model %s --adapter %s --out %s", f->base, adapter, out);
    int rc = run_prog(PISSA_MERGE_EXE, args, f->log, &log);
    if (rc != 1 || !strstr(log, needle) || strchr(log, '\n') != log + strlen(log) - 1)
        fail_msg("expected exit 1 and one line with '%s', got %d: %s", needle, rc, log);
    free(log), free(out);
}

static void pissa_merge_refuses_unsupported_and_mismatched_adapters(void **state) {
    fixture *f = *state;
    pissa_checkpoint *base;
    assert_ok(pissa_checkpoint_open(f->base, &base));
    pissa_peft_adapter *a = random_adapter(base);
    char *dir = tu_path(f->dir, "bad");
    assert_ok(pissa_peft_adapter_save(a, dir, PISSA_F32));
    edit_config(dir, "\"use_dora\": false", "\"use_dora\": true");
    expect_merge_error(f, dir, "'use_dora' is true");
    edit_config(dir, "\"use_dora\": true", "\"use_dora\": false");
    edit_config(dir, "\"fan_in_fan_out\": false", "\"fan_in_fan_out\": true");
    expect_merge_error(f, dir, "'fan_in_fan_out' is true");
    edit_config(dir, "\"fan_in_fan_out\": true", "\"fan_in_fan_out\": false");
    edit_config(dir, "\"layers_to_transform\": [", "\"layers_to_transform\": [1, ");
    /* layer 1 now targeted but without tensors: merged anyway (PEFT would add B = 0 there), with a warning */
    char args[4096], *log, *out = tu_path(f->dir, "warned");
    snprintf(args, sizeof args, "--model %s --adapter %s --out %s", f->base, dir, out);
    int rc = run_prog(PISSA_MERGE_EXE, args, f->log, &log);
    if (rc != 0 || !strstr(log, "warning: adapter: 7 module(s) targeted by adapter_config.json have no tensors"))
        fail_msg("expected success with a warning, got %d: %s", rc, log);
    free(log), free(out);
    pissa_peft_adapter_free(a);
    /* a tensor for a module the base lacks, and one whose shape disagrees with the base */
    pissa_peft_config cfg = parse_config("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 2, "
                                         "\"target_modules\": [\"q_proj\"]}");
    float buf[2 * 64] = {0};
    assert_ok(pissa_peft_adapter_create(&cfg, &a));
    assert_ok(pissa_peft_adapter_add(a, "model.layers.9.self_attn.q_proj", 2, D, D, buf, buf));
    assert_ok(pissa_peft_adapter_save(a, dir, PISSA_F32));
    expect_merge_error(f, dir, "module 'model.layers.9.self_attn.q_proj' is not a linear weight of the base");
    pissa_peft_adapter_free(a);
    assert_ok(pissa_peft_adapter_create(&cfg, &a));
    assert_ok(pissa_peft_adapter_add(a, "model.layers.0.self_attn.q_proj", 2, D + 1, D, buf, buf));
    assert_ok(pissa_peft_adapter_save(a, dir, PISSA_F32));
    expect_merge_error(f, dir, "lora_A.weight' is (2, 33) but the base weight");
    pissa_peft_adapter_free(a);
    pissa_checkpoint_free(base);
    free(dir);
}

int main(void) {
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(resolve_matches_peft_reference_on_llama_modules),
        cmocka_unit_test(resolve_refuses_invalid_regex_naming_the_field),
        cmocka_unit_test(adapter_check_accepts_a_matching_adapter),
        cmocka_unit_test(adapter_check_refuses_unsupported_config_fields),
        cmocka_unit_test(adapter_check_refuses_unmatched_untargeted_and_misshapen_tensors),
        cmocka_unit_test(pissa_to_lora_preserves_the_adapted_weights),
        cmocka_unit_test(pissa_to_lora_preserves_the_adapted_weights_with_rslora),
        cmocka_unit_test(pissa_to_lora_preserves_the_adapted_weights_with_rank_and_alpha_patterns),
        cmocka_unit_test(pissa_to_lora_refuses_adapters_that_do_not_pair),
        cmocka_unit_test(merge_then_unmerge_returns_the_weight),
    };
    const struct CMUnitTest e2e[] = {
        cmocka_unit_test(checkpoint_linear_shapes_lists_every_2d_weight),
        cmocka_unit_test(merged_checkpoint_equals_base_plus_scaled_product),
        cmocka_unit_test(pissa_merge_of_residual_and_initial_adapter_is_the_base),
        cmocka_unit_test(pissa_convert_output_on_base_equals_trained_adapter_on_residual),
        cmocka_unit_test(pissa_merge_refuses_unsupported_and_mismatched_adapters),
        cmocka_unit_test(pissa_merge_to_hf_exports_llama2c_with_qk_permuted),
    };
    int failed = cmocka_run_group_tests_name("interop", unit, NULL, NULL);
    return failed + cmocka_run_group_tests_name("interop_checkpoints", e2e, setup, teardown);
}
