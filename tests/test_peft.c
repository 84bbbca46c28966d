/* PEFT adapter folders: adapter_config.json text against Python's json.dumps (tests/reference), parsing of
 * the configs PEFT writes, refusals that name the field, save -> load round trips in F32/BF16/F16, the exact
 * tensor names and shapes in adapter_model.safetensors, and the loader's pairing checks. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "peft_internal.h"
#include "testutil.h"

#define Q0 "model.layers.0.self_attn.q_proj"

/* ---- helpers ---- */

static char *config_text(const pissa_peft_config *c) {
    char *s = NULL;
    assert_ok(pissa_peft_config_to_json(c, &s));
    return s;
}

static pissa_status parse(const char *json, pissa_peft_config *c) {
    return pissa__peft_config_parse_into(json, strlen(json), "test.json", c);
}

/* Expects STATUS and an error message naming the source and FIELD. */
static void expect_refusal(const char *json, pissa_status status, const char *field) {
    pissa_peft_config c;
    pissa_status s = parse(json, &c);
    if (s != status) fail_msg("%s: got %s, want %s (%s)", json, pissa_status_name(s), pissa_status_name(status),
                              pissa_last_error());
    if (!strstr(pissa_last_error(), field) || !strstr(pissa_last_error(), "test.json"))
        fail_msg("%s: message '%s' does not name '%s' and the source", json, pissa_last_error(), field);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char *p = tu_path(dir, name);
    tu_write_bytes(p, text, strlen(text));
    free(p);
}

/* Round to the nearest bfloat16 (ties to even) on the bits, independently of the library. */
static float round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&x, &u, 4);
    return x;
}

#ifdef __FLT16_MAX__
__extension__ typedef _Float16 half; /* the compiler's IEEE binary16, rounding to nearest even */
static float round_f16(float x) { return (float)(half)x; }
#endif

/* A LoRA pair for module MOD with entries that are not representable in 16 bits. */
static void add_random(pissa_peft_adapter *a, const char *mod, int64_t r, int64_t in, int64_t out, uint64_t seed) {
    float *A = malloc(sizeof(float) * (size_t)(r * in)), *B = malloc(sizeof(float) * (size_t)(out * r));
    tu_gaussian(A, (size_t)(r * in), seed);
    tu_gaussian(B, (size_t)(out * r), seed + 1);
    assert_ok(pissa_peft_adapter_add(a, mod, r, in, out, A, B));
    free(A);
    free(B);
}

/* Three layers of q/v with r 4, and down_proj of layer 1 at rank 2 through rank_pattern. */
static pissa_peft_adapter *sample_adapter(void) {
    pissa_peft_config c = pissa__peft_config_default();
    c.r = 4;
    c.lora_alpha = 8;
    strcpy(c.rank_pattern[0].key, "layers.1.mlp.down_proj");
    c.rank_pattern[0].value = 2;
    c.n_rank_pattern = 1;
    strcpy(c.target_modules, "q_proj,v_proj,down_proj");
    pissa_peft_adapter *a;
    assert_ok(pissa_peft_adapter_create(&c, &a));
    add_random(a, "model.layers.1.mlp.down_proj", 2, 12, 8, 10);
    for (int l = 0; l < 3; l++) {
        char name[64];
        snprintf(name, sizeof name, "model.layers.%d.self_attn.q_proj", l);
        add_random(a, name, 4, 8, 8, 100 + 2 * (uint64_t)l);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.v_proj", l);
        add_random(a, name, 4, 8, 6, 200 + 2 * (uint64_t)l);
    }
    return a;
}

/* Loaded values equal ROUND(saved value) for every element of every module. */
static void assert_loaded_equal(const pissa_peft_adapter *saved, const pissa_peft_adapter *loaded,
                                float (*round)(float)) {
    assert_int_equal(pissa_peft_adapter_count(loaded), pissa_peft_adapter_count(saved));
    for (size_t i = 0; i < pissa_peft_adapter_count(saved); i++) {
        const char *m1, *m2;
        const pissa_tensor *A1, *B1, *A2, *B2;
        assert_ok(pissa_peft_adapter_module(saved, i, &m1, &A1, &B1));
        assert_ok(pissa_peft_adapter_module(loaded, i, &m2, &A2, &B2));
        assert_string_equal(m1, m2);
        const pissa_tensor *pairs[2][2] = {{A1, A2}, {B1, B2}};
        for (int k = 0; k < 2; k++) {
            const pissa_tensor *x = pairs[k][0], *y = pairs[k][1];
            assert_int_equal(pissa_tensor_ndim(y), 2);
            assert_int_equal(pissa_tensor_dim(y, 0), pissa_tensor_dim(x, 0));
            assert_int_equal(pissa_tensor_dim(y, 1), pissa_tensor_dim(x, 1));
            assert_int_equal(pissa_tensor_ownership(y), PISSA_OWNED);
            const float *xs = pissa_tensor_data(x), *ys = pissa_tensor_data(y);
            for (int64_t j = 0; j < pissa_tensor_numel(x); j++) {
                float want = round ? round(xs[j]) : xs[j];
                if (memcmp(&want, &ys[j], 4) != 0)
                    fail_msg("%s %s[%lld]: loaded %.9g, want %.9g", m1, k ? "B" : "A", (long long)j, ys[j], want);
            }
        }
    }
}

/* ---- config JSON ---- */

static void config_json_matches_python_json_dumps_byte_for_byte(void **state) {
    (void)state;
    pissa_peft_config c = pissa__peft_config_default();
    c.r = 16;
    c.lora_alpha = 16;
    c.lora_dropout = 0.0; /* a float field: written "0.0" as Python does */
    strcpy(c.target_modules, "v_proj,q_proj"); /* written sorted */
    strcpy(c.init_lora_weights, "true");
    strcpy(c.base_model_name_or_path, "stories260K");
    char *got = config_text(&c);
    size_t len;
    char *want = tu_slurp(PISSA_TEST_REFERENCE_DIR "/peft_config_pissa_init.json", &len);
    assert_non_null(want);
    assert_string_equal(got, want);
    free(got);
    free(want);
}

static void config_json_writes_booleans_integers_and_target_kinds(void **state) {
    (void)state;
    pissa_peft_config c = pissa__peft_config_default();
    strcpy(c.init_lora_weights, "false");
    c.lora_alpha = 32;
    c.target_kind = PISSA_TARGET_ALL_LINEAR;
    strcpy(c.target_modules, "all-linear");
    c.has_layers_to_transform = 1;
    c.n_layers_to_transform = 2;
    c.layers_to_transform[0] = 0;
    c.layers_to_transform[1] = 3;
    strcpy(c.alpha_pattern[0].key, "o_proj");
    c.alpha_pattern[0].value = 2.5;
    c.n_alpha_pattern = 1;
    char *s = config_text(&c);
    assert_non_null(strstr(s, "\"init_lora_weights\": false,"));
    assert_non_null(strstr(s, "\"lora_alpha\": 32,"));
    assert_non_null(strstr(s, "\"target_modules\": \"all-linear\","));
    assert_non_null(strstr(s, "\"layers_to_transform\": [\n    0,\n    3\n  ],"));
    assert_non_null(strstr(s, "\"alpha_pattern\": {\n    \"o_proj\": 2.5\n  },"));
    free(s);

    strcpy(c.init_lora_weights, "pissa_niter_4");
    c.target_kind = PISSA_TARGET_REGEX;
    strcpy(c.target_modules, ".*\\.(q|v)_proj$");
    s = config_text(&c);
    assert_non_null(strstr(s, "\"init_lora_weights\": \"pissa_niter_4\","));
    assert_non_null(strstr(s, "\"target_modules\": \".*\\\\.(q|v)_proj$\","));
    free(s);

    c.target_kind = PISSA_TARGET_LIST; /* LIST "" is PEFT's null */
    c.target_modules[0] = '\0';
    c.task_type[0] = '\0';
    s = config_text(&c);
    assert_non_null(strstr(s, "\"target_modules\": null,"));
    assert_non_null(strstr(s, "\"task_type\": null,"));
    free(s);

    c.has_modules_to_save = 1; /* names are not kept, so this cannot be written faithfully */
    char *none = NULL;
    assert_int_equal(pissa_peft_config_to_json(&c, &none), PISSA_ERR_UNSUPPORTED);
    assert_null(none);
}

static void config_json_parses_back_to_the_same_config(void **state) {
    (void)state;
    pissa_peft_config c = pissa__peft_config_default(), d;
    c.r = 12;
    c.lora_alpha = 24.5;
    c.lora_dropout = 0.1;
    c.use_rslora = 1;
    c.fan_in_fan_out = 1;
    strcpy(c.init_lora_weights, "pissa");
    strcpy(c.target_modules, "k_proj,o_proj,q_proj");
    strcpy(c.base_model_name_or_path, "/models/llama \"7b\"");
    strcpy(c.rank_pattern[0].key, "model.layers.3.self_attn.o_proj");
    c.rank_pattern[0].value = 4;
    c.n_rank_pattern = 1;
    char *s = config_text(&c);
    assert_ok(parse(s, &d));
    assert_int_equal(d.r, 12);
    assert_true(d.lora_alpha == 24.5 && d.lora_dropout == 0.1);
    assert_true(d.use_rslora && d.fan_in_fan_out && !d.use_dora);
    assert_string_equal(d.init_lora_weights, "pissa");
    assert_int_equal(d.target_kind, PISSA_TARGET_LIST);
    assert_string_equal(d.target_modules, "k_proj,o_proj,q_proj");
    assert_string_equal(d.base_model_name_or_path, c.base_model_name_or_path);
    assert_string_equal(d.task_type, "CAUSAL_LM");
    assert_int_equal(d.n_rank_pattern, 1);
    assert_string_equal(d.rank_pattern[0].key, "model.layers.3.self_attn.o_proj");
    assert_true(d.rank_pattern[0].value == 4);
    free(s);
}

/* ---- parsing what PEFT writes ---- */

static void parse_reads_peft_written_configs(void **state) {
    (void)state;
    pissa_peft_config c;
    /* A PEFT 0.13 config, with a key from a newer release that must be ignored. */
    assert_ok(parse("{\"alpha_pattern\": {\"down_proj\": 32}, \"auto_mapping\": null, "
                    "\"base_model_name_or_path\": \"meta-llama/Llama-2-7b-hf\", \"bias\": \"none\", "
                    "\"fan_in_fan_out\": false, \"inference_mode\": true, \"init_lora_weights\": \"pissa_niter_16\", "
                    "\"layer_replication\": null, \"layers_pattern\": null, \"layers_to_transform\": [0, 1, 5], "
                    "\"loftq_config\": {}, \"lora_alpha\": 16, \"lora_dropout\": 0.0, \"megatron_config\": null, "
                    "\"megatron_core\": \"megatron.core\", \"modules_to_save\": null, \"peft_type\": \"LORA\", "
                    "\"r\": 16, \"rank_pattern\": {\"down_proj\": 8, \"model.layers.0.self_attn.q_proj\": 4}, "
                    "\"revision\": null, \"target_modules\": [\"v_proj\", \"q_proj\", \"down_proj\"], "
                    "\"task_type\": \"CAUSAL_LM\", \"use_dora\": false, \"use_rslora\": true, "
                    "\"eva_config\": null, \"exclude_modules\": null}",
                    &c));
    assert_int_equal(c.r, 16);
    assert_true(c.lora_alpha == 16 && c.lora_dropout == 0);
    assert_true(c.use_rslora && !c.use_dora && !c.fan_in_fan_out && !c.has_modules_to_save && !c.has_lora_bias);
    assert_string_equal(c.init_lora_weights, "pissa_niter_16");
    assert_int_equal(c.target_kind, PISSA_TARGET_LIST);
    assert_string_equal(c.target_modules, "v_proj,q_proj,down_proj");
    assert_string_equal(c.base_model_name_or_path, "meta-llama/Llama-2-7b-hf");
    assert_int_equal(c.n_rank_pattern, 2);
    assert_string_equal(c.rank_pattern[0].key, "down_proj");
    assert_true(c.rank_pattern[0].value == 8);
    assert_string_equal(c.rank_pattern[1].key, "model.layers.0.self_attn.q_proj");
    assert_true(c.rank_pattern[1].value == 4);
    assert_int_equal(c.n_alpha_pattern, 1);
    assert_true(c.alpha_pattern[0].value == 32);
    assert_true(c.has_layers_to_transform);
    assert_int_equal(c.n_layers_to_transform, 3);
    assert_int_equal(c.layers_to_transform[2], 5);

    assert_ok(parse("{\"peft_type\": \"LORA\", \"target_modules\": \".*decoder.*(q|v)$\", \"init_lora_weights\": true,"
                    " \"layers_to_transform\": 7, \"modules_to_save\": [\"lm_head\"], \"lora_bias\": true}",
                    &c));
    assert_int_equal(c.target_kind, PISSA_TARGET_REGEX);
    assert_string_equal(c.target_modules, ".*decoder.*(q|v)$");
    assert_string_equal(c.init_lora_weights, "true");
    assert_true(c.has_layers_to_transform);
    assert_int_equal(c.n_layers_to_transform, 1);
    assert_int_equal(c.layers_to_transform[0], 7);
    assert_true(c.has_modules_to_save && c.has_lora_bias);

    assert_ok(parse("{\"peft_type\": \"LORA\", \"target_modules\": \"all-linear\", \"init_lora_weights\": false}", &c));
    assert_int_equal(c.target_kind, PISSA_TARGET_ALL_LINEAR);
    assert_string_equal(c.target_modules, "all-linear");
    assert_string_equal(c.init_lora_weights, "false");

    assert_ok(parse("{\"peft_type\": \"LORA\", \"init_lora_weights\": \"gaussian\"}", &c));
    assert_string_equal(c.init_lora_weights, "gaussian");
}

static void parse_defaults_follow_peft_lora_config(void **state) {
    (void)state;
    pissa_peft_config c;
    assert_ok(parse("{\"peft_type\": \"LORA\"}", &c));
    assert_int_equal(c.r, 8);
    assert_true(c.lora_alpha == 8 && c.lora_dropout == 0);
    assert_int_equal(c.target_kind, PISSA_TARGET_LIST);
    assert_string_equal(c.target_modules, ""); /* null */
    assert_string_equal(c.bias, "none");
    assert_string_equal(c.init_lora_weights, "true");
    assert_string_equal(c.task_type, "");
    assert_true(!c.use_rslora && !c.use_dora && !c.fan_in_fan_out);
    assert_int_equal(c.n_rank_pattern, 0);
    assert_int_equal(c.n_alpha_pattern, 0);
    assert_true(!c.has_layers_to_transform && !c.has_modules_to_save && !c.has_lora_bias);
}

static void parse_refuses_bad_configs_naming_the_field(void **state) {
    (void)state;
    expect_refusal("{\"r\": 8}", PISSA_ERR_FORMAT, "peft_type");
    expect_refusal("{\"peft_type\": \"ADALORA\"}", PISSA_ERR_UNSUPPORTED, "peft_type");
    /* text after the object: Python's json.load refuses it ("Extra data"); so does libpissa */
    expect_refusal("{\"peft_type\": \"LORA\"} {\"r\": 4}", PISSA_ERR_FORMAT, "trailing characters");
    expect_refusal("{\"peft_type\": 1}", PISSA_ERR_FORMAT, "peft_type");
    expect_refusal("{\"peft_type\": \"LORA\", \"r\": \"16\"}", PISSA_ERR_FORMAT, "'r'");
    expect_refusal("{\"peft_type\": \"LORA\", \"r\": 2.5}", PISSA_ERR_FORMAT, "'r'");
    expect_refusal("{\"peft_type\": \"LORA\", \"r\": 0}", PISSA_ERR_FORMAT, "'r'");
    expect_refusal("{\"peft_type\": \"LORA\", \"lora_alpha\": \"16\"}", PISSA_ERR_FORMAT, "lora_alpha");
    expect_refusal("{\"peft_type\": \"LORA\", \"lora_dropout\": null}", PISSA_ERR_FORMAT, "lora_dropout");
    expect_refusal("{\"peft_type\": \"LORA\", \"use_rslora\": 1}", PISSA_ERR_FORMAT, "use_rslora");
    expect_refusal("{\"peft_type\": \"LORA\", \"use_dora\": \"false\"}", PISSA_ERR_FORMAT, "use_dora");
    expect_refusal("{\"peft_type\": \"LORA\", \"fan_in_fan_out\": null}", PISSA_ERR_FORMAT, "fan_in_fan_out");
    expect_refusal("{\"peft_type\": \"LORA\", \"bias\": false}", PISSA_ERR_FORMAT, "bias");
    expect_refusal("{\"peft_type\": \"LORA\", \"target_modules\": 5}", PISSA_ERR_FORMAT, "target_modules");
    expect_refusal("{\"peft_type\": \"LORA\", \"target_modules\": [\"q\", 5]}", PISSA_ERR_FORMAT, "target_modules");
    expect_refusal("{\"peft_type\": \"LORA\", \"target_modules\": [\"a,b\"]}", PISSA_ERR_UNSUPPORTED, "target_modules");
    expect_refusal("{\"peft_type\": \"LORA\", \"init_lora_weights\": 3}", PISSA_ERR_FORMAT, "init_lora_weights");
    expect_refusal("{\"peft_type\": \"LORA\", \"rank_pattern\": []}", PISSA_ERR_FORMAT, "rank_pattern");
    expect_refusal("{\"peft_type\": \"LORA\", \"rank_pattern\": {\"q\": \"8\"}}", PISSA_ERR_FORMAT, "rank_pattern");
    expect_refusal("{\"peft_type\": \"LORA\", \"rank_pattern\": {\"q\": 1.5}}", PISSA_ERR_FORMAT, "rank_pattern");
    expect_refusal("{\"peft_type\": \"LORA\", \"alpha_pattern\": {\"q\": true}}", PISSA_ERR_FORMAT, "alpha_pattern");
    expect_refusal("{\"peft_type\": \"LORA\", \"layers_to_transform\": 1.5}", PISSA_ERR_FORMAT, "layers_to_transform");
    expect_refusal("{\"peft_type\": \"LORA\", \"layers_to_transform\": [0, \"1\"]}", PISSA_ERR_FORMAT,
                   "layers_to_transform");
    expect_refusal("{\"peft_type\": \"LORA\", \"modules_to_save\": \"lm_head\"}", PISSA_ERR_FORMAT, "modules_to_save");
    expect_refusal("{\"peft_type\": \"LORA\", \"task_type\": 3}", PISSA_ERR_FORMAT, "task_type");
    expect_refusal("{\"peft_type\": \"LORA\", \"bias\": \"a-bias-name-longer-than-the-buffer\"}", PISSA_ERR_UNSUPPORTED,
                   "bias");
    expect_refusal("[1, 2]", PISSA_ERR_FORMAT, "object");
    expect_refusal("{\"peft_type\": \"LORA\",", PISSA_ERR_FORMAT, "JSON");

    /* One pattern more than the struct holds. */
    char json[8192];
    size_t n = (size_t)snprintf(json, sizeof json, "{\"peft_type\": \"LORA\", \"alpha_pattern\": {");
    for (int i = 0; i <= PISSA_PEFT_MAX_PATTERNS; i++)
        n += (size_t)snprintf(json + n, sizeof json - n, "%s\"layers.%d.q_proj\": 4", i ? ", " : "", i);
    snprintf(json + n, sizeof json - n, "}}");
    expect_refusal(json, PISSA_ERR_UNSUPPORTED, "alpha_pattern");
}

/* ---- adapter handle ---- */

static void modules_are_sorted_with_numeric_layer_indices(void **state) {
    (void)state;
    pissa_peft_config c = pissa__peft_config_default();
    c.r = 1;
    pissa_peft_adapter *a;
    assert_ok(pissa_peft_adapter_create(&c, &a));
    const float A[2] = {1, 2}, B[2] = {3, 4};
    const char *order[] = {"model.layers.10.self_attn.q_proj", "model.layers.2.self_attn.v_proj",
                           "model.layers.2.self_attn.q_proj", "model.layers.1.self_attn.q_proj",
                           "model.layers.11.self_attn.q_proj", "lm_head"};
    for (int i = 0; i < 6; i++) assert_ok(pissa_peft_adapter_add(a, order[i], 1, 2, 2, A, B));
    const char *want[] = {"lm_head", "model.layers.1.self_attn.q_proj", "model.layers.2.self_attn.q_proj",
                          "model.layers.2.self_attn.v_proj", "model.layers.10.self_attn.q_proj",
                          "model.layers.11.self_attn.q_proj"};
    assert_int_equal(pissa_peft_adapter_count(a), 6);
    for (size_t i = 0; i < 6; i++) {
        const char *m;
        assert_ok(pissa_peft_adapter_module(a, i, &m, NULL, NULL));
        assert_string_equal(m, want[i]);
        size_t at;
        assert_ok(pissa_peft_adapter_find(a, want[i], &at));
        assert_int_equal(at, i);
    }
    size_t at;
    assert_int_equal(pissa_peft_adapter_find(a, "model.layers.3.self_attn.q_proj", &at), PISSA_ERR_NOT_FOUND);
    assert_int_equal(pissa_peft_adapter_module(a, 6, NULL, NULL, NULL), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa_peft_adapter_add(a, "lm_head", 1, 2, 2, A, B), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "lm_head"));
    assert_int_equal(pissa_peft_adapter_add(a, "x", 0, 2, 2, A, B), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa_peft_adapter_add(a, "", 1, 2, 2, A, B), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa_peft_adapter_count(a), 6);

    /* Copies, not views: changing the caller's arrays does not change the adapter. */
    const pissa_tensor *tA, *tB;
    assert_ok(pissa_peft_adapter_module(a, 0, NULL, &tA, &tB));
    assert_int_equal(pissa_tensor_ownership(tA), PISSA_OWNED);
    assert_ptr_not_equal(pissa_tensor_data(tA), A);
    assert_true(pissa_tensor_data(tB)[1] == 4.0f);
    assert_int_equal(pissa_tensor_dim(tB, 0), 2);
    assert_int_equal(pissa_tensor_dim(tB, 1), 1);
    pissa_peft_adapter_config_mut(a)->r = 7;
    assert_int_equal(pissa_peft_adapter_config(a)->r, 7);
    pissa_peft_adapter_free(a);
    pissa_peft_adapter_free(NULL);
}

/* ---- save and load ---- */

static void save_load_round_trip_f32_is_bit_exact(void **state) {
    (void)state;
    char *dir = tu_tempdir("peft_f32");
    char *sub = tu_path(dir, "a/b/pissa_init"); /* created with its parents */
    pissa_peft_adapter *a = sample_adapter(), *b;
    assert_ok(pissa_peft_adapter_save(a, sub, PISSA_F32));
    assert_ok(pissa_peft_adapter_load(sub, &b));
    assert_loaded_equal(a, b, NULL);
    const pissa_peft_config *c = pissa_peft_adapter_config(b);
    assert_int_equal(c->r, 4);
    assert_true(c->lora_alpha == 8);
    assert_int_equal(c->n_rank_pattern, 1);
    assert_string_equal(c->target_modules, "down_proj,q_proj,v_proj");
    /* The config file is exactly what config_to_json writes. */
    char *want = config_text(pissa_peft_adapter_config(a)), *cfg_path = tu_path(sub, "adapter_config.json");
    char *got = tu_slurp(cfg_path, NULL);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(want);
    free(got);
    free(cfg_path);
    pissa_peft_adapter_free(a);
    pissa_peft_adapter_free(b);
    free(sub);
    tu_rmtree(dir);
    free(dir);
}

static void save_load_round_trip_bf16_f16_gives_rounded_values(void **state) {
    (void)state;
    char *dir = tu_tempdir("peft_half");
    pissa_peft_adapter *a = sample_adapter(), *b;
    assert_ok(pissa_peft_adapter_save(a, dir, PISSA_BF16));
    assert_ok(pissa_peft_adapter_load(dir, &b));
    assert_loaded_equal(a, b, round_bf16);
    pissa_peft_adapter_free(b);
#ifdef __FLT16_MAX__
    assert_ok(pissa_peft_adapter_save(a, dir, PISSA_F16)); /* over the BF16 files */
    assert_ok(pissa_peft_adapter_load(dir, &b));
    assert_loaded_equal(a, b, round_f16);
    pissa_peft_adapter_free(b);
#endif
    assert_int_equal(pissa_peft_adapter_save(a, dir, PISSA_I8), PISSA_ERR_INVALID_ARG);
    pissa_peft_adapter_free(a);
    tu_rmtree(dir);
    free(dir);
}

static void saved_file_uses_peft_tensor_names_and_shapes(void **state) {
    (void)state;
    char *dir = tu_tempdir("peft_names");
    pissa_peft_adapter *a = sample_adapter();
    assert_ok(pissa_peft_adapter_save(a, dir, PISSA_BF16));
    char *path = tu_path(dir, "adapter_model.safetensors");
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    assert_int_equal(pissa_st_count(f), 2 * pissa_peft_adapter_count(a));
    assert_non_null(pissa_st_metadata(f, "format"));
    assert_string_equal(pissa_st_metadata(f, "format"), "pt");
    static const struct {
        const char *name;
        int64_t rows, cols;
    } want[] = {
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", 4, 8},
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", 8, 4},
        {"base_model.model.model.layers.2.self_attn.v_proj.lora_A.weight", 4, 8},
        {"base_model.model.model.layers.2.self_attn.v_proj.lora_B.weight", 6, 4},
        {"base_model.model.model.layers.1.mlp.down_proj.lora_A.weight", 2, 12},
        {"base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", 8, 2},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        pissa_st_info info;
        assert_ok(pissa_st_find(f, want[i].name, &info));
        assert_int_equal(info.dtype, PISSA_BF16);
        assert_int_equal(info.ndim, 2);
        assert_int_equal(info.shape[0], want[i].rows);
        assert_int_equal(info.shape[1], want[i].cols);
    }
    /* Values stored are the bfloat16 of A, read back independently of the adapter loader. */
    size_t at;
    const pissa_tensor *A;
    assert_ok(pissa_peft_adapter_find(a, Q0, &at));
    assert_ok(pissa_peft_adapter_module(a, at, NULL, &A, NULL));
    float got[32];
    assert_ok(pissa_st_read_f32(f, "base_model.model." Q0 ".lora_A.weight", got, 32));
    for (int i = 0; i < 32; i++) assert_true(got[i] == round_bf16(pissa_tensor_data(A)[i]));
    pissa_st_close(f);
    free(path);
    pissa_peft_adapter_free(a);
    tu_rmtree(dir);
    free(dir);
}

static void save_refuses_rank_that_disagrees_with_config(void **state) {
    (void)state;
    char *dir = tu_tempdir("peft_badsave");
    pissa_peft_adapter *a = sample_adapter();
    pissa_peft_adapter_config_mut(a)->n_rank_pattern = 0; /* down_proj (rank 2) now disagrees with r 4 */
    assert_int_equal(pissa_peft_adapter_save(a, dir, PISSA_F32), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "model.layers.1.mlp.down_proj"));
    char *p = tu_path(dir, "adapter_model.safetensors");
    assert_null(tu_slurp(p, NULL)); /* nothing written */
    free(p);
    pissa_peft_adapter_free(a);
    tu_rmtree(dir);
    free(dir);
}

/* ---- the loader's checks, on files written tensor by tensor ---- */

typedef struct fake_tensor {
    const char *name;
    int ndim;
    int64_t shape[3];
} fake_tensor;

/* DIR/adapter_model.safetensors with the given tensors (values irrelevant) and a config of rank R. */
static void write_fake_adapter(const char *dir, int64_t r, const fake_tensor *ts, int n) {
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    float *zeros = calloc(1024, sizeof(float));
    for (int i = 0; i < n; i++)
        assert_ok(pissa_st_writer_add_f32(w, ts[i].name, PISSA_F32, ts[i].ndim, ts[i].shape, zeros));
    char *p = tu_path(dir, "adapter_model.safetensors");
    assert_ok(pissa_st_writer_write(w, p));
    pissa_st_writer_free(w);
    free(p);
    free(zeros);
    char cfg[256];
    snprintf(cfg, sizeof cfg,
             "{\"peft_type\": \"LORA\", \"r\": %lld, \"rank_pattern\": {\"1.self_attn.q_proj\": 2}}",
             (long long)r);
    write_text(dir, "adapter_config.json", cfg);
}

static void expect_load_error(const char *dir, pissa_status status, const char *what) {
    static char sentinel;
    pissa_peft_adapter *a = (pissa_peft_adapter *)(void *)&sentinel; /* must be reset to NULL on failure */
    pissa_status s = pissa_peft_adapter_load(dir, &a);
    if (s != status)
        fail_msg("got %s, want %s (%s)", pissa_status_name(s), pissa_status_name(status), pissa_last_error());
    assert_null(a);
    if (!strstr(pissa_last_error(), what) || !strstr(pissa_last_error(), "adapter_model.safetensors"))
        fail_msg("message '%s' does not name '%s' and the file", pissa_last_error(), what);
}

#define QA(l) "base_model.model.model.layers." #l ".self_attn.q_proj.lora_A.weight"
#define QB(l) "base_model.model.model.layers." #l ".self_attn.q_proj.lora_B.weight"

static void load_accepts_keys_without_prefix_and_applies_rank_pattern(void **state) {
    (void)state;
    char *dir = tu_tempdir("peft_ok");
    const fake_tensor ts[] = {
        {QA(0), 2, {4, 8}},
        {QB(0), 2, {6, 4}},
        {"model.layers.1.self_attn.q_proj.lora_A.weight", 2, {2, 8}}, /* rank_pattern: 2 */
        {"model.layers.1.self_attn.q_proj.lora_B.weight", 2, {6, 2}},
        {QA(11), 2, {4, 8}}, /* "1.self_attn.q_proj" matches at a '.' boundary only: r 4 */
        {QB(11), 2, {6, 4}},
    };
    write_fake_adapter(dir, 4, ts, 6);
    pissa_peft_adapter *a;
    assert_ok(pissa_peft_adapter_load(dir, &a));
    assert_int_equal(pissa_peft_adapter_count(a), 3);
    const char *m;
    const pissa_tensor *A, *B;
    assert_ok(pissa_peft_adapter_module(a, 1, &m, &A, &B));
    assert_string_equal(m, "model.layers.1.self_attn.q_proj");
    assert_int_equal(pissa_tensor_dim(A, 0), 2);
    assert_int_equal(pissa_tensor_dim(B, 0), 6);
    pissa_peft_adapter_free(a);
    tu_rmtree(dir);
    free(dir);
}

static void load_rejects_unpaired_mismatched_and_extra_tensors(void **state) {
    (void)state;
    char *dir = tu_tempdir("peft_bad");
    const fake_tensor unpaired_a[] = {{QA(0), 2, {4, 8}}, {QB(0), 2, {6, 4}}, {QA(2), 2, {4, 8}}};
    write_fake_adapter(dir, 4, unpaired_a, 3);
    expect_load_error(dir, PISSA_ERR_FORMAT, QA(2));

    const fake_tensor unpaired_b[] = {{QB(3), 2, {6, 4}}};
    write_fake_adapter(dir, 4, unpaired_b, 1);
    expect_load_error(dir, PISSA_ERR_FORMAT, QB(3));

    const fake_tensor rank_mismatch[] = {{QA(0), 2, {4, 8}}, {QB(0), 2, {6, 3}}};
    write_fake_adapter(dir, 4, rank_mismatch, 2);
    expect_load_error(dir, PISSA_ERR_FORMAT, "rank mismatch");

    const fake_tensor not_config_r[] = {{QA(0), 2, {4, 8}}, {QB(0), 2, {6, 4}}};
    write_fake_adapter(dir, 8, not_config_r, 2);
    expect_load_error(dir, PISSA_ERR_FORMAT, QA(0));

    const fake_tensor not_pattern_r[] = {{QA(1), 2, {4, 8}}, {QB(1), 2, {6, 4}}}; /* rank_pattern says 2 */
    write_fake_adapter(dir, 4, not_pattern_r, 2);
    expect_load_error(dir, PISSA_ERR_FORMAT, "layers.1.self_attn.q_proj");

    const fake_tensor three_d[] = {{QA(0), 3, {4, 8, 1}}, {QB(0), 2, {6, 4}}};
    write_fake_adapter(dir, 4, three_d, 2);
    expect_load_error(dir, PISSA_ERR_FORMAT, QA(0));

    const fake_tensor dora[] = {{QA(0), 2, {4, 8}}, {QB(0), 2, {6, 4}},
                                {"base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", 1, {6}}};
    write_fake_adapter(dir, 4, dora, 3);
    expect_load_error(dir, PISSA_ERR_UNSUPPORTED, "lora_magnitude_vector");

    const fake_tensor saved_module[] = {{QA(0), 2, {4, 8}}, {QB(0), 2, {6, 4}},
                                        {"base_model.model.lm_head.weight", 2, {16, 8}}};
    write_fake_adapter(dir, 4, saved_module, 3);
    expect_load_error(dir, PISSA_ERR_FORMAT, "base_model.model.lm_head.weight");

    const fake_tensor twice[] = {{QA(0), 2, {4, 8}}, {QB(0), 2, {6, 4}},
                                 {"model.layers.0.self_attn.q_proj.lora_A.weight", 2, {4, 8}}};
    write_fake_adapter(dir, 4, twice, 3);
    expect_load_error(dir, PISSA_ERR_FORMAT, "same LoRA weight");

    /* A bad config is reported with its own path. */
    write_text(dir, "adapter_config.json", "{\"peft_type\": \"IA3\"}");
    pissa_peft_adapter *a = NULL;
    assert_int_equal(pissa_peft_adapter_load(dir, &a), PISSA_ERR_UNSUPPORTED);
    assert_non_null(strstr(pissa_last_error(), "adapter_config.json"));
    char *missing = tu_path(dir, "nope");
    assert_int_equal(pissa_peft_adapter_load(missing, &a), PISSA_ERR_NOT_FOUND);
    assert_null(a);
    free(missing);
    tu_rmtree(dir);
    free(dir);
}

/* Strings are written as Python's json.dumps writes them (tests/reference/make_json_strings_reference.py), read back
 * as the same bytes, and a second round trip gives the same text. Invalid UTF-8 has no JSON form: refused, naming the
 * field, instead of lone surrogate escapes that no reader accepts. */
static void json_strings_match_python_and_invalid_utf8_is_refused_by_field(void **state) {
    (void)state;
    size_t len;
    char *text = tu_slurp(PISSA_TEST_REFERENCE_DIR "/json_strings.json", &len);
    assert_non_null(text);
    cJSON *cases = cJSON_ParseWithLength(text, len);
    assert_non_null(cases);
    int n = 0;
    for (const cJSON *c = cases->child; c; c = c->next, n++) {
        const char *hex = cJSON_GetObjectItem(c, "utf8_hex")->valuestring;
        char s[1024];
        size_t k = 0;
        for (; hex[2 * k]; k++) {
            unsigned b;
            sscanf(hex + 2 * k, "%2x", &b);
            s[k] = (char)b;
        }
        s[k] = '\0';
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "base_model_name_or_path", s);
        char *out, *again;
        assert_ok(pissa__json_dump_sorted(o, &out));
        assert_string_equal(out, cJSON_GetObjectItem(c, "dumped")->valuestring);
        cJSON *back = cJSON_Parse(out);
        assert_non_null(back);
        assert_string_equal(cJSON_GetObjectItem(back, "base_model_name_or_path")->valuestring, s);
        assert_ok(pissa__json_dump_sorted(back, &again));
        assert_string_equal(again, out);
        free(out), free(again);
        cJSON_Delete(back);
        cJSON_Delete(o);
    }
    assert_true(n >= 7);
    static const char *invalid[] = {"ab\xff", "\xc0\xaf", "x\xed\xa0\x80", "\xe2\x82", "\xf5\x80\x80\x80",
                                    "\xf4\x90\x80\x80", "\x80"};
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "peft_type", "LORA");
        cJSON_AddStringToObject(o, "target_modules", invalid[i]);
        char *out = NULL;
        assert_int_equal(pissa__json_dump_sorted(o, &out), PISSA_ERR_INVALID_ARG);
        assert_null(out);
        if (!strstr(pissa_last_error(), "'target_modules' is not valid UTF-8"))
            fail_msg("case %zu: %s", i, pissa_last_error());
        cJSON_Delete(o);
    }
    cJSON_Delete(cases);
    free(text);
}

/* The public config is opaque: fields by their PEFT names as JSON text, checked as the parser checks the file. */
static void opaque_config_reads_and_writes_fields_by_name(void **state) {
    (void)state;
    pissa_peft_config *c, *d;
    assert_ok(pissa_peft_config_create(&c));
    assert_int_equal(pissa_peft_config_r(c), 8);
    assert_ok(pissa_peft_config_set(c, "r", "16"));
    assert_ok(pissa_peft_config_set(c, "lora_alpha", "32"));
    assert_ok(pissa_peft_config_set(c, "use_rslora", "true"));
    assert_ok(pissa_peft_config_set(c, "target_modules", "[\"v_proj\", \"q_proj\"]"));
    assert_ok(pissa_peft_config_set(c, "rank_pattern", "{\"down_proj\": 4}"));
    assert_int_equal(pissa_peft_config_r(c), 16);
    assert_true(pissa_peft_config_lora_alpha(c) == 32.0 && pissa_peft_config_use_rslora(c));
    char *v;
    assert_ok(pissa_peft_config_get(c, "target_modules", &v));
    assert_string_equal(v, "[\n  \"q_proj\",\n  \"v_proj\"\n]"); /* PEFT writes the set sorted */
    pissa_free(v);
    assert_ok(pissa_peft_config_get(c, "rank_pattern", &v));
    assert_string_equal(v, "{\n  \"down_proj\": 4\n}");
    pissa_free(v);
    /* refused values and fields leave the config unchanged */
    assert_int_equal(pissa_peft_config_set(c, "r", "\"many\""), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "'r'"));
    assert_int_equal(pissa_peft_config_set(c, "lora_dropout", "not json"), PISSA_ERR_FORMAT);
    assert_int_equal(pissa_peft_config_set(c, "no_such_field", "1"), PISSA_ERR_NOT_FOUND);
    assert_int_equal(pissa_peft_config_get(c, "no_such_field", &v), PISSA_ERR_NOT_FOUND);
    assert_int_equal(pissa_peft_config_r(c), 16);
    /* clone and parse round trips */
    char *j1, *j2;
    assert_ok(pissa_peft_config_clone(c, &d));
    assert_ok(pissa_peft_config_set(d, "r", "2"));
    assert_int_equal(pissa_peft_config_r(c), 16);
    assert_ok(pissa_peft_config_to_json(c, &j1));
    pissa_peft_config_free(d);
    assert_ok(pissa_peft_config_parse(j1, strlen(j1), "x.json", &d));
    assert_ok(pissa_peft_config_to_json(d, &j2));
    assert_string_equal(j1, j2);
    pissa_free(j1), pissa_free(j2);
    pissa_peft_config_free(d);
    pissa_peft_config_free(c);
    pissa_peft_config_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_json_matches_python_json_dumps_byte_for_byte),
        cmocka_unit_test(opaque_config_reads_and_writes_fields_by_name),
        cmocka_unit_test(json_strings_match_python_and_invalid_utf8_is_refused_by_field),
        cmocka_unit_test(config_json_writes_booleans_integers_and_target_kinds),
        cmocka_unit_test(config_json_parses_back_to_the_same_config),
        cmocka_unit_test(parse_reads_peft_written_configs),
        cmocka_unit_test(parse_defaults_follow_peft_lora_config),
        cmocka_unit_test(parse_refuses_bad_configs_naming_the_field),
        cmocka_unit_test(modules_are_sorted_with_numeric_layer_indices),
        cmocka_unit_test(save_load_round_trip_f32_is_bit_exact),
        cmocka_unit_test(save_load_round_trip_bf16_f16_gives_rounded_values),
        cmocka_unit_test(saved_file_uses_peft_tensor_names_and_shapes),
        cmocka_unit_test(save_refuses_rank_that_disagrees_with_config),
        cmocka_unit_test(load_accepts_keys_without_prefix_and_applies_rank_pattern),
        cmocka_unit_test(load_rejects_unpaired_mismatched_and_extra_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
