/* PEFT adapter folders applied by the trainable model (pissa_model_load_adapter) and by the generator
 * (pissa_generator_create): logits against tests/reference/make_peft_apply_reference.py, which applies the same
 * files in float64 torch with PEFT's targeting rules run in Python `re` (regex targets with rank/alpha patterns,
 * all-linear with layers_to_transform and rsLoRA, BF16 tensors); and the refusals, which must name the field or
 * the tensor at fault. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define REF PISSA_TEST_REFERENCE_DIR "/peft_apply"
#define BASE REF "/base"

typedef struct fixture {
    const char *name;
    size_t modules; /* adapted projections, as the reference script counts them */
} fixture;

static const fixture fixtures[] = {{"regex_patterns", 9}, {"all_linear", 7}, {"bf16_list", 15}};

typedef struct batch {
    int32_t *ids; /* (B, T) */
    int B, T;
} batch;

static batch load_batch(void) {
    char *text = tu_slurp(BASE "/batch.json", NULL);
    cJSON *root = cJSON_Parse(text), *rows = cJSON_GetObjectItem(root, "input_ids");
    batch b = {NULL, cJSON_GetArraySize(rows), cJSON_GetArraySize(cJSON_GetArrayItem(rows, 0))};
    b.ids = malloc(sizeof(int32_t) * (size_t)(b.B * b.T));
    for (int i = 0; i < b.B; i++)
        for (int t = 0; t < b.T; t++)
            b.ids[i * b.T + t] = (int32_t)cJSON_GetArrayItem(cJSON_GetArrayItem(rows, i), t)->valueint;
    cJSON_Delete(root);
    free(text);
    return b;
}

/* The reference logits (B, T, V) of fixture NAME. */
static float *expected_logits(const char *name, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/expected.safetensors", REF, name);
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    float *want = malloc(n * sizeof(float));
    assert_ok(pissa_st_read_f32(f, "logits", want, (int64_t)n));
    pissa_st_close(f);
    return want;
}

/* ---- agreement with PyTorch ---- */

static void model_logits_match_pytorch_for_each_adapter_and_survive_save_load(void **state) {
    (void)state;
    batch bt = load_batch();
    for (size_t k = 0; k < sizeof fixtures / sizeof fixtures[0]; k++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", REF, fixtures[k].name);
        pissa_model *m;
        assert_ok(pissa_model_load(BASE, &m));
        assert_ok(pissa_model_load_adapter(m, dir));
        assert_int_equal(pissa_model_adapter_count(m), fixtures[k].modules);
        size_t n = (size_t)(bt.B * bt.T) * (size_t)pissa_model_config(m)->vocab_size;
        float *got = malloc(n * sizeof(float)), *again = malloc(n * sizeof(float)), *want = expected_logits(
                                                                                    fixtures[k].name, n);
        assert_ok(pissa_model_logits(m, bt.ids, bt.B, bt.T, got));
        double d = tu_max_rel_diff(got, want, n);
        printf("  model + %s: logits max|diff| / max|logit| %.3g vs PyTorch\n", fixtures[k].name, d);
        assert_true(d < TU_LOGIT_TOL);

        /* saved with the same config (regex, patterns, layers_to_transform), it loads back to the same model */
        char *tmp = tu_tempdir("peft_apply_save");
        assert_ok(pissa_model_save_adapter(m, tmp, PISSA_F32));
        pissa_model *m2;
        assert_ok(pissa_model_load(BASE, &m2));
        assert_ok(pissa_model_load_adapter(m2, tmp));
        assert_ok(pissa_model_logits(m2, bt.ids, bt.B, bt.T, again));
        assert_memory_equal(got, again, n * sizeof(float)); /* F32 tensors, the same targets: the same model */
        pissa_model_free(m2);
        tu_rmtree(tmp);
        free(tmp);
        free(got);
        free(again);
        free(want);
        pissa_model_free(m);
    }
    free(bt.ids);
}

static void generator_logits_match_pytorch_at_every_position(void **state) {
    (void)state;
    batch bt = load_batch();
    for (size_t k = 0; k < sizeof fixtures / sizeof fixtures[0]; k++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", REF, fixtures[k].name);
        pissa_generator *g;
        assert_ok(pissa_generator_create(BASE, dir, 0, &g));
        int64_t V = pissa_generator_vocab_size(g);
        size_t n = (size_t)(bt.B * bt.T * V);
        float *want = expected_logits(fixtures[k].name, n), *got = malloc((size_t)V * sizeof(float));
        double d = 0, first = 0;
        for (int i = 0; i < bt.B; i++)
            for (int t = 0; t < bt.T; t++) { /* position 0 is the first token's logits; later ones use the cache */
                assert_ok(pissa_generator_forward(g, bt.ids[i * bt.T + t], t, got));
                double dt = tu_max_rel_diff(got, want + (size_t)((i * bt.T + t) * V), (size_t)V); /* per row */
                d = fmax(d, dt);
                if (t == 0) first = fmax(first, dt);
            }
        printf("  generator + %s: first-token logits max|diff| / max|logit| %.3g, all positions %.3g\n",
               fixtures[k].name, first, d);
        assert_true(d < TU_LOGIT_TOL);
        free(want);
        free(got);
        pissa_generator_free(g);
    }
    free(bt.ids);
}

/* ---- refusals ---- */

/* A copy of fixture regex_patterns in a temp dir; the caller edits it. */
static char *copy_fixture(void) {
    char *dir = tu_tempdir("peft_apply");
    const char *files[] = {"adapter_config.json", "adapter_model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char src[512];
        snprintf(src, sizeof src, "%s/regex_patterns/%s", REF, files[i]);
        size_t len;
        char *bytes = tu_slurp(src, &len);
        char *dst = tu_path(dir, files[i]);
        tu_write_bytes(dst, bytes, len);
        free(dst);
        free(bytes);
    }
    return dir;
}

static void set_config_field(const char *dir, const char *field, const char *json_value) {
    char *path = tu_path(dir, "adapter_config.json");
    tu_json_set_field(path, field, json_value);
    free(path);
}

/* Rewrites DIR's tensors: every module as it is except RESHAPE (its A gets one more input column, so it disagrees
 * with the base), plus an extra module EXTRA (r 4) of shape (out, in) if not NULL. */
static void rewrite_tensors(const char *dir, const char *reshape, const char *extra, int64_t out, int64_t in) {
    pissa_peft_adapter *a, *b;
    assert_ok(pissa_peft_adapter_load(dir, &a));
    assert_ok(pissa_peft_adapter_create(pissa_peft_adapter_config(a), &b));
    for (size_t i = 0; i < pissa_peft_adapter_count(a); i++) {
        const char *mod;
        const pissa_tensor *A, *B;
        assert_ok(pissa_peft_adapter_module(a, i, &mod, &A, &B));
        int64_t r = pissa_tensor_dim(A, 0), n_in = pissa_tensor_dim(A, 1), n_out = pissa_tensor_dim(B, 0);
        int grow = reshape && !strcmp(mod, reshape);
        float *A2 = calloc((size_t)(r * (n_in + 1)), sizeof(float));
        for (int64_t j = 0; j < r; j++)
            memcpy(A2 + j * (n_in + grow), pissa_tensor_data(A) + j * n_in, sizeof(float) * (size_t)n_in);
        assert_ok(pissa_peft_adapter_add(b, mod, r, n_in + grow, n_out, A2, pissa_tensor_data(B)));
        free(A2);
    }
    if (extra) {
        float *A = calloc((size_t)(4 * in), sizeof(float)), *B = calloc((size_t)(out * 4), sizeof(float));
        assert_ok(pissa_peft_adapter_add(b, extra, 4, in, out, A, B));
        free(A);
        free(B);
    }
    assert_ok(pissa_peft_adapter_save(b, dir, PISSA_F32));
    pissa_peft_adapter_free(a);
    pissa_peft_adapter_free(b);
}

/* Both loaders refuse DIR with status WANT and a message containing NEEDLE, and leave nothing behind. */
static void expect_refused(const char *dir, pissa_status want, const char *needle) {
    pissa_model *m;
    assert_ok(pissa_model_load(BASE, &m));
    pissa_status s = pissa_model_load_adapter(m, dir);
    printf("  model: %s\n", pissa_last_error());
    if (s != want) fail_msg("model: got %s, want %s", pissa_status_name(s), pissa_status_name(want));
    if (!strstr(pissa_last_error(), needle)) fail_msg("model: message lacks '%s'", needle);
    assert_int_equal(pissa_model_adapter_count(m), 0);
    pissa_model_free(m);
    pissa_generator *g = (pissa_generator *)1;
    s = pissa_generator_create(BASE, dir, 0, &g);
    if (s != want) fail_msg("generator: got %s (%s), want %s", pissa_status_name(s), pissa_last_error(),
                            pissa_status_name(want));
    if (!strstr(pissa_last_error(), needle)) fail_msg("generator: message '%s' lacks '%s'", pissa_last_error(), needle);
    assert_null(g);
}

static void unsupported_fields_are_refused_by_name(void **state) {
    (void)state;
    struct { const char *field, *value, *needle; } cases[] = {
        {"use_dora", "true", "'use_dora'"},
        {"fan_in_fan_out", "true", "'fan_in_fan_out'"},
        {"modules_to_save", "[\"lm_head\"]", "'modules_to_save'"},
        {"lora_bias", "true", "'lora_bias'"},
        {"bias", "\"all\"", "'bias'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = copy_fixture();
        set_config_field(dir, cases[i].field, cases[i].value);
        expect_refused(dir, PISSA_ERR_UNSUPPORTED, cases[i].needle);
        tu_rmtree(dir);
        free(dir);
    }
}

static void tensors_that_fit_no_module_are_refused_by_name(void **state) {
    (void)state;
    /* a module the base does not have (layer 7 of 3) */
    char *dir = copy_fixture();
    rewrite_tensors(dir, NULL, "model.layers.7.self_attn.q_proj", 32, 32);
    expect_refused(dir, PISSA_ERR_NOT_FOUND, "'base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight'");
    tu_rmtree(dir);
    free(dir);
    /* a module of the base that the regex does not target */
    dir = copy_fixture();
    rewrite_tensors(dir, NULL, "model.layers.0.self_attn.k_proj", 16, 32);
    expect_refused(dir, PISSA_ERR_FORMAT, "'base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight'");
    tu_rmtree(dir);
    free(dir);
    /* lm_head targeted and present: a linear of the base, but not one libpissa adapts */
    dir = copy_fixture();
    set_config_field(dir, "target_modules", "\"model\\\\.layers\\\\.\\\\d+\\\\.(self_attn\\\\.(q|v)_proj|mlp\\\\."
                                            "down_proj)|lm_head\"");
    rewrite_tensors(dir, NULL, "lm_head", 48, 32);
    expect_refused(dir, PISSA_ERR_UNSUPPORTED, "'base_model.model.lm_head.lora_A.weight'");
    tu_rmtree(dir);
    free(dir);
    /* a shape that disagrees with the base weight (32, 32) */
    dir = copy_fixture();
    rewrite_tensors(dir, "model.layers.2.self_attn.q_proj", NULL, 0, 0);
    expect_refused(dir, PISSA_ERR_SHAPE, "'base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight' is (4, 33)");
    tu_rmtree(dir);
    free(dir);
    /* a rank that disagrees with the regex rank_pattern key (layer 1 gets 2) */
    dir = copy_fixture();
    set_config_field(dir, "rank_pattern", "{\"layers\\\\.2\\\\..*\": 2, \"model.layers.0.self_attn.q_proj\": 6}");
    expect_refused(dir, PISSA_ERR_FORMAT, "rank_pattern");
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(model_logits_match_pytorch_for_each_adapter_and_survive_save_load),
        cmocka_unit_test(generator_logits_match_pytorch_at_every_position),
        cmocka_unit_test(unsupported_fields_are_refused_by_name),
        cmocka_unit_test(tensors_that_fit_no_module_are_refused_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
