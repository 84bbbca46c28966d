/* Generation against an independent reference: tests/reference/llama2c_generate_ref.py, a numpy transliteration
 * of llama2.c run.c (original wq/wk, run.c's adjacent-pair RoPE) on the real stories260K model: logits, greedy
 * tokens and text. PEFT adapters against the merged weights W + s·B·A; top-p sampling against its definition;
 * pissa-generate end to end. Tests that need ../shared/data skip with a message when it is absent. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate_internal.h"
#include "model_internal.h"
#include "peft_internal.h"
#include "testutil.h"

#define MODEL PISSA_SHARED_DATA_DIR "/stories260K/stories260K.bin"
#define TOKENIZER PISSA_SHARED_DATA_DIR "/stories260K/tok512.bin"
#define REFERENCE PISSA_TEST_REFERENCE_DIR "/stories260K_greedy.json"

/* Skips (or fails under PISSA_REQUIRE_ALL=1) unless stories260K and its tokenizer are present. */
static void need_data(void) {
    const char *files[] = {MODEL, TOKENIZER};
    tu_need_files(files, 2);
}

static cJSON *load_reference(void) {
    size_t len;
    char *text = tu_slurp(REFERENCE, &len);
    if (!text) fail_msg("cannot read %s", REFERENCE);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) fail_msg("%s is not JSON", REFERENCE);
    return root;
}

/* Tokens and text a generation produced, collected by the callback. */
typedef struct collected {
    int32_t tokens[1024];
    size_t n;
    char text[8192];
    size_t len;
    size_t stop_after; /* stop generating after this many tokens (0: never) */
} collected;

static int collect(void *user, int32_t token, const char *piece, size_t len) {
    collected *c = user;
    if (c->n < 1024) c->tokens[c->n++] = token;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, piece, len);
        c->len += len;
        c->text[c->len] = '\0';
    }
    return c->stop_after && c->n >= c->stop_after;
}

/* Greedy generations of GEN (reference entries) with G, token for token and byte for byte. */
static void check_greedy(pissa_generator *g, const pissa_tokenizer *tok, const cJSON *gens, const char *only) {
    const cJSON *e;
    cJSON_ArrayForEach(e, gens) {
        const char *prompt = cJSON_GetObjectItem(e, "prompt")->valuestring;
        if (only && strcmp(prompt, only) != 0) continue;
        int64_t steps = (int64_t)cJSON_GetObjectItem(e, "steps")->valuedouble;
        const cJSON *want = cJSON_GetObjectItem(e, "tokens");
        collected c = {0};
        int64_t positions;
        assert_ok(pissa_generate(g, tok, prompt, steps, 0.0f, 0.9f, 1, collect, &c, &positions));
        /* reference tokens: BOS, then every token emitted */
        assert_int_equal(c.n + 1, cJSON_GetArraySize(want));
        assert_int_equal(cJSON_GetArrayItem(want, 0)->valueint, PISSA_TOKEN_BOS);
        for (size_t i = 0; i < c.n; i++)
            if (c.tokens[i] != cJSON_GetArrayItem(want, (int)i + 1)->valueint)
                fail_msg("prompt '%s': token %zu is %d, reference %d", prompt, i + 1, c.tokens[i],
                         cJSON_GetArrayItem(want, (int)i + 1)->valueint);
        assert_string_equal(c.text, cJSON_GetObjectItem(e, "text")->valuestring);
        assert_int_equal(positions, steps); /* these stories run to STEPS without a BOS */
        print_message("  '%s': %zu tokens match (smallest top-2 margin %.3g)\n", prompt, c.n,
                      cJSON_GetObjectItem(e, "min_margin")->valuedouble);
    }
}

/* The full logit rows at positions from the first to the last the model supports (seq_len 512), each row against
 * the reference's float64 row relative to that row's largest logit. */
static void forward_logits_match_llama2c_reference(void **state) {
    (void)state;
    need_data();
    cJSON *ref = load_reference();
    const cJSON *lg = cJSON_GetObjectItem(ref, "logits");
    const cJSON *tokens = cJSON_GetObjectItem(lg, "tokens"), *positions = cJSON_GetObjectItem(lg, "positions");
    pissa_generator *g;
    assert_ok(pissa_generator_create(MODEL, NULL, 0, &g));
    assert_int_equal(pissa_generator_vocab_size(g), 512);
    assert_int_equal(pissa_generator_max_seq_len(g), 512);
    assert_int_equal(cJSON_GetArraySize(tokens), 512);
    int n_rows = cJSON_GetArraySize(positions);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", PISSA_TEST_REFERENCE_DIR, cJSON_GetObjectItem(lg, "file")->valuestring);
    size_t bytes;
    float *want = (float *)tu_slurp(path, &bytes);
    if (!want) fail_msg("cannot read %s", path);
    assert_int_equal(bytes, (size_t)n_rows * 512 * sizeof(float));
    assert_int_equal(cJSON_GetArrayItem(positions, n_rows - 1)->valueint, 511); /* the last position is checked */
    float logits[512];
    double max_diff = 0;
    int row = 0;
    for (int p = 0; p < 512; p++) {
        assert_ok(pissa_generator_forward(g, cJSON_GetArrayItem(tokens, p)->valueint, p, logits));
        if (row < n_rows && cJSON_GetArrayItem(positions, row)->valueint == p) {
            double d = tu_max_rel_diff(logits, want + (size_t)row * 512, 512);
            if (!(d < TU_LOGIT_TOL)) fail_msg("position %d: logits max|diff| / max|logit| %.3g", p, d);
            max_diff = fmax(max_diff, d);
            row++;
        }
    }
    assert_int_equal(row, n_rows);
    print_message("  %d full rows of 512 logits up to position 511: max|diff| / max|logit| %.3g\n", n_rows, max_diff);
    /* restarting at position 0 overwrites the cache: the same logits again */
    float again[512];
    assert_ok(pissa_generator_forward(g, cJSON_GetArrayItem(tokens, 0)->valueint, 0, again));
    assert_ok(pissa_generator_forward(g, cJSON_GetArrayItem(tokens, 0)->valueint, 0, logits));
    assert_memory_equal(again, logits, sizeof logits);
    /* bad arguments */
    assert_int_equal(pissa_generator_forward(g, 512, 0, logits), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "token 512"));
    assert_int_equal(pissa_generator_forward(g, 1, 512, logits), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "position 512"));
    pissa_generator_free(g);
    pissa_generator_free(NULL);
    free(want);
    cJSON_Delete(ref);
}

static void greedy_generation_matches_llama2c_reference(void **state) {
    (void)state;
    need_data();
    cJSON *ref = load_reference();
    pissa_generator *g;
    pissa_tokenizer *tok;
    assert_ok(pissa_generator_create(MODEL, NULL, 0, &g));
    assert_ok(pissa_tokenizer_load(TOKENIZER, 512, &tok));
    check_greedy(g, tok, cJSON_GetObjectItem(ref, "generations"), NULL);
    /* the callback can stop early; positions counts what ran */
    collected c = {.stop_after = 5};
    int64_t positions;
    assert_ok(pissa_generate(g, tok, "", 100, 0.0f, 0.9f, 1, collect, &c, &positions));
    assert_int_equal(c.n, 5);
    assert_int_equal(positions, 5);
    pissa_tokenizer_free(tok);
    pissa_generator_free(g);
    cJSON_Delete(ref);
}

/* The same model as a Hugging Face folder (written by save_hf, tied head) generates the same text. */
static void hf_folder_of_the_model_generates_the_same_text(void **state) {
    (void)state;
    need_data();
    cJSON *ref = load_reference();
    char *dir = tu_tempdir("generate");
    pissa__weights w;
    assert_ok(pissa__weights_load(MODEL, NULL, &w));
    assert_ok(pissa__weights_save_hf(&w, dir, PISSA_F32));
    pissa__weights_free(&w);
    pissa_generator *g;
    pissa_tokenizer *tok;
    assert_ok(pissa_generator_create(dir, NULL, 128, &g));
    assert_int_equal(pissa_generator_max_seq_len(g), 128);
    assert_ok(pissa_tokenizer_load(TOKENIZER, 512, &tok));
    check_greedy(g, tok, cJSON_GetObjectItem(ref, "generations"), "Once upon a time");
    pissa_tokenizer_free(tok);
    pissa_generator_free(g);
    tu_rmtree(dir);
    free(dir);
    cJSON_Delete(ref);
}

/* ---- adapters ---- */

static const char *proj[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};

/* Replaces tensor NAME of W by W + s·B·A, computed in double. */
static void merge(pissa__weights *w, const char *name, const float *A, const float *B, int64_t r, double s) {
    size_t i = 0;
    while (i < w->n && strcmp(w->names[i], name) != 0) i++;
    assert_true(i < w->n);
    pissa_tensor *t;
    assert_ok(pissa_tensor_clone(w->tensors[i], &t));
    int64_t out = pissa_tensor_dim(t, 0), in = pissa_tensor_dim(t, 1);
    float *W = pissa_tensor_data(t);
    for (int64_t o = 0; o < out; o++)
        for (int64_t k = 0; k < in; k++) {
            double acc = W[o * in + k];
            for (int64_t j = 0; j < r; j++) acc += s * (double)B[o * r + j] * A[j * in + k];
            W[o * in + k] = (float)acc;
        }
    pissa_tensor_free(w->tensors[i]);
    w->tensors[i] = t;
}

/* An adapter with random A and B on layers 1 and 3 of TARGETS (indices into proj), saved in DIR; the same update
 * merged into *MERGED. B_ZERO gives B = 0. */
static void make_adapter(const char *dir, const int *targets, int n_targets, int64_t r, double alpha, int rslora,
                         int b_zero, pissa__weights *merged) {
    pissa_peft_config pc = pissa__peft_config_default();
    pc.r = r;
    pc.lora_alpha = alpha;
    pc.use_rslora = rslora;
    pc.target_modules[0] = '\0';
    for (int t = 0; t < n_targets; t++) {
        if (t) strcat(pc.target_modules, ",");
        strcat(pc.target_modules, strchr(proj[targets[t]], '.') + 1);
    }
    double s = rslora ? alpha / sqrt((double)r) : alpha / (double)r;
    pissa_peft_adapter *a;
    assert_ok(pissa_peft_adapter_create(&pc, &a));
    for (int l = 1; l <= 3; l += 2)
        for (int t = 0; t < n_targets; t++) {
            char module[128], name[160];
            snprintf(module, sizeof module, "model.layers.%d.%s", l, proj[targets[t]]);
            snprintf(name, sizeof name, "%s.weight", module);
            pissa_tensor *W = pissa__weights_get(merged, name);
            int64_t out = pissa_tensor_dim(W, 0), in = pissa_tensor_dim(W, 1);
            float *A = malloc(sizeof(float) * (size_t)(r * in)), *B = calloc((size_t)(out * r), sizeof(float));
            tu_gaussian(A, (size_t)(r * in), 77 + (uint64_t)(l * 7 + t));
            if (!b_zero) {
                tu_gaussian(B, (size_t)(out * r), 99 + (uint64_t)(l * 7 + t));
                for (int64_t i = 0; i < out * r; i++) B[i] *= 0.05f;
            }
            assert_ok(pissa_peft_adapter_add(a, module, r, in, out, A, B));
            merge(merged, name, A, B, r, s);
            free(A);
            free(B);
        }
    assert_ok(pissa_peft_adapter_save(a, dir, PISSA_F32));
    pissa_peft_adapter_free(a);
}

/* Logits of the adapter applied unmerged equal those of the merged weights, over a few positions. */
static void check_adapter_equals_merged(const int *targets, int n_targets, int rslora) {
    char *dir = tu_tempdir("generate");
    pissa__weights merged;
    assert_ok(pissa__weights_load(MODEL, NULL, &merged));
    make_adapter(dir, targets, n_targets, 4, 8.0, rslora, 0, &merged);
    pissa_generator *ga, *gm, *gb;
    assert_ok(pissa_generator_create(MODEL, dir, 16, &ga));
    pissa_model *mm;
    assert_ok(pissa__model_from_weights(&merged, MODEL, &mm));
    assert_int_equal(merged.n, 0); /* taken over */
    assert_ok(pissa__generator_create_from_model(mm, 16, &gm));
    assert_ok(pissa_generator_create(MODEL, NULL, 16, &gb));
    float la[512], lm[512], lb[512];
    const int32_t seq[] = {1, 403, 407, 261, 89, 500};
    double max_diff = 0, max_change = 0;
    for (int p = 0; p < 6; p++) {
        assert_ok(pissa_generator_forward(ga, seq[p], p, la));
        assert_ok(pissa_generator_forward(gm, seq[p], p, lm));
        assert_ok(pissa_generator_forward(gb, seq[p], p, lb));
        max_diff = fmax(max_diff, tu_max_rel_diff(la, lm, 512));
        max_change = fmax(max_change, tu_max_rel_diff(la, lb, 512));
    }
    print_message("  %d targets%s: max |adapter - merged| / max|logit| %.3g; the adapter moves them by up to %.3g\n",
                  n_targets, rslora ? " (rslora)" : "", max_diff, max_change);
    assert_true(max_diff < TU_LOGIT_TOL);
    assert_true(max_change > 1e-3); /* the comparison is not vacuous */
    pissa_generator_free(ga);
    pissa_generator_free(gm);
    pissa_generator_free(gb);
    tu_rmtree(dir);
    free(dir);
}

static void adapter_applied_unmerged_equals_merged_weights(void **state) {
    (void)state;
    need_data();
    const int all[7] = {0, 1, 2, 3, 4, 5, 6}, qv[2] = {0, 2};
    check_adapter_equals_merged(all, 7, 0);
    check_adapter_equals_merged(qv, 2, 1);
}

static void expect_adapter_refused(const char *dir, pissa_status want, const char *needle) {
    pissa_generator *g = (pissa_generator *)1;
    pissa_status s = pissa_generator_create(MODEL, dir, 16, &g);
    if (s != want) fail_msg("got %s (%s), want %s", pissa_status_name(s), pissa_last_error(), pissa_status_name(want));
    if (!strstr(pissa_last_error(), needle)) fail_msg("message '%s' lacks '%s'", pissa_last_error(), needle);
    if (!strstr(pissa_last_error(), dir)) fail_msg("message '%s' does not name the adapter", pissa_last_error());
    assert_null(g);
}

/* Rewrites DIR/adapter_config.json with FIELD's JSON value replaced. */
static void set_config_field(const char *dir, const char *field, const char *json_value) {
    char *path = tu_path(dir, "adapter_config.json");
    tu_json_set_field(path, field, json_value);
    free(path);
}

static void adapter_features_not_implemented_are_refused_by_name(void **state) {
    (void)state;
    need_data();
    char *dir = tu_tempdir("generate");
    pissa__weights w;
    const int qv[2] = {0, 2};
    assert_ok(pissa__weights_load(MODEL, NULL, &w));
    make_adapter(dir, qv, 2, 4, 8.0, 0, 0, &w);
    pissa__weights_free(&w);
    set_config_field(dir, "target_modules", "\".*q_proj\"");
    expect_adapter_refused(dir, PISSA_ERR_FORMAT, "v_proj' is not targeted");
    set_config_field(dir, "target_modules", "[\"q_proj\"]");
    expect_adapter_refused(dir, PISSA_ERR_FORMAT, "v_proj' is not targeted");
    set_config_field(dir, "target_modules", "[\"q_proj\", \"v_proj\"]");
    set_config_field(dir, "use_dora", "true");
    expect_adapter_refused(dir, PISSA_ERR_UNSUPPORTED, "use_dora");
    set_config_field(dir, "use_dora", "false");
    set_config_field(dir, "layers_to_transform", "[1]"); /* the file also has layers 0, 2, 3, 4 */
    expect_adapter_refused(dir, PISSA_ERR_FORMAT, "layers_to_transform");
    set_config_field(dir, "layers_to_transform", "null");
    set_config_field(dir, "fan_in_fan_out", "true");
    expect_adapter_refused(dir, PISSA_ERR_UNSUPPORTED, "fan_in_fan_out");
    set_config_field(dir, "fan_in_fan_out", "false");
    set_config_field(dir, "init_lora_weights", "\"olora\""); /* PEFT would transform the base in a way libpissa lacks */
    expect_adapter_refused(dir, PISSA_ERR_UNSUPPORTED, "init_lora_weights");
    set_config_field(dir, "init_lora_weights", "true");
    pissa_generator *g;
    assert_ok(pissa_generator_create(MODEL, dir, 16, &g)); /* restored: accepted again */
    pissa_generator_free(g);
    tu_rmtree(dir);
    free(dir);
}

/* ---- the generator is the model ---- */

/* The generator's one-token logits equal the trainable model's logits of the whole sequence at every position up to
 * the model's maximum, within TU_LOGIT_TOL of the logits' scale: one definition of the maths (and RoPE tables that agree at
 * far positions). With ADAPTER (may be NULL) on both. */
static void check_generator_equals_model(const char *path, const char *adapter) {
    pissa_model *m;
    assert_ok(pissa_model_load(path, &m));
    if (adapter) assert_ok(pissa_model_load_adapter(m, adapter));
    int V = (int)pissa_model_config(m)->vocab_size, T = (int)pissa_model_config(m)->max_position_embeddings;
    assert_true(T >= 512);
    T = 512;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
    uint64_t x = 12345;
    for (int t = 0; t < T; t++) x = x * 6364136223846793005ULL + 1442695040888963407ULL, ids[t] = (int32_t)(x >> 33) % V;
    float *want = malloc(sizeof(float) * (size_t)T * V), *got = malloc(sizeof(float) * (size_t)V);
    assert_ok(pissa_model_logits(m, ids, 1, T, want));
    double scale = 0, worst = 0;
    for (size_t i = 0; i < (size_t)T * V; i++) scale = fmax(scale, fabs(want[i]));
    pissa_generator *g;
    assert_ok(pissa_generator_create(path, adapter, T, &g));
    int worst_at = 0;
    for (int t = 0; t < T; t++) {
        assert_ok(pissa_generator_forward(g, ids[t], t, got));
        double d = tu_max_abs_diff(got, want + (size_t)t * V, (size_t)V);
        if (!(d <= worst)) worst = d, worst_at = t; /* a NaN difference is kept */
    }
    print_message("  %s%s: generator vs model over %d positions: max|diff| %.3g at position %d (logit scale %.3g)\n",
                  path, adapter ? " + adapter" : "", T, worst, worst_at, scale);
    assert_true(worst <= TU_LOGIT_TOL * scale);
    pissa_generator_free(g);
    pissa_model_free(m);
    free(ids), free(want), free(got);
}

static void generator_equals_model_at_every_position_for_every_family(void **state) {
    (void)state;
    static const char *const fixtures[] = {"llama3_rope", "llama_bias_linear", "mistral_window", "qwen2_bias",
                                           "qwen3_qknorm"};
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
        char *dir = tu_path(PISSA_TEST_REFERENCE_DIR, fixtures[i]), *ad = tu_path(dir, "adapter");
        check_generator_equals_model(dir, ad);
        free(dir), free(ad);
    }
    need_data();
    check_generator_equals_model(MODEL, NULL);
}

/* ---- sampling ---- */

/* Sampled tokens are reproducible for a seed, and each lies in the nucleus: the smallest set of most likely tokens
 * (under softmax(logits / T), recomputed here in double by replaying the text) whose probability exceeds top-p.
 * A vanishing top-p keeps only the argmax, so it must reproduce the greedy text. */
static void top_p_sampling_stays_in_the_nucleus_and_is_seeded(void **state) {
    (void)state;
    need_data();
    pissa_generator *g, *replay;
    pissa_tokenizer *tok;
    assert_ok(pissa_generator_create(MODEL, NULL, 0, &g));
    assert_ok(pissa_generator_create(MODEL, NULL, 0, &replay));
    assert_ok(pissa_tokenizer_load(TOKENIZER, 512, &tok));
    const float T = 0.8f, topp = 0.5f;
    collected a = {0}, b = {0}, c = {0};
    assert_ok(pissa_generate(g, tok, "", 200, T, topp, 42, collect, &a, NULL));
    assert_ok(pissa_generate(g, tok, "", 200, T, topp, 42, collect, &b, NULL));
    assert_ok(pissa_generate(g, tok, "", 200, T, topp, 43, collect, &c, NULL));
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.tokens, b.tokens, a.n * sizeof(int32_t));
    assert_true(c.n != a.n || memcmp(a.tokens, c.tokens, a.n * sizeof(int32_t)) != 0);

    float logits[512];
    int32_t prev = PISSA_TOKEN_BOS;
    int beyond_argmax = 0;
    for (size_t i = 0; i < a.n; i++) {
        assert_ok(pissa_generator_forward(replay, prev, (int64_t)i, logits));
        double p[512], mx = logits[0], sum = 0;
        for (int k = 1; k < 512; k++) mx = fmax(mx, logits[k]);
        for (int k = 0; k < 512; k++) sum += p[k] = exp((logits[k] - mx) / T);
        double mass_above = 0; /* probability of tokens strictly more likely than the sampled one */
        for (int k = 0; k < 512; k++)
            if (p[k] > p[a.tokens[i]]) mass_above += p[k] / sum;
        if (mass_above > topp + 1e-5) fail_msg("token %zu (%d) lies outside the top-p %.2f nucleus (mass above %.4f)",
                                               i, a.tokens[i], (double)topp, mass_above);
        beyond_argmax += mass_above > 0;
        prev = a.tokens[i];
    }
    print_message("  %zu sampled tokens in the nucleus, %d of them not the argmax\n", a.n, beyond_argmax);
    assert_true(beyond_argmax > 0); /* it did sample */

    collected gr = {0}, tiny = {0};
    assert_ok(pissa_generate(g, tok, "Once upon a time", 80, 0.0f, 0.9f, 1, collect, &gr, NULL));
    assert_ok(pissa_generate(g, tok, "Once upon a time", 80, 1.0f, 1e-6f, 7, collect, &tiny, NULL));
    assert_string_equal(gr.text, tiny.text);
    assert_int_equal(pissa_generate(g, tok, "", 10, -1.0f, 0.9f, 1, NULL, NULL, NULL), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "temperature"));
    pissa_tokenizer_free(tok);
    pissa_generator_free(g);
    pissa_generator_free(replay);
}

/* stories260K's weights with every element of NAME set to VALUE (owned copies in place of the mapped ones). */
static void weights_with(pissa__weights *w, const char *name, float value) {
    assert_ok(pissa__weights_load(MODEL, NULL, w));
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->names[i], name)) {
            pissa_tensor *c;
            assert_ok(pissa_tensor_clone(w->tensors[i], &c));
            for (int64_t k = 0; k < pissa_tensor_numel(c); k++) pissa_tensor_data(c)[k] = value;
            pissa_tensor_free(w->tensors[i]);
            w->tensors[i] = c;
            return;
        }
    fail_msg("no tensor %s", name);
}

/* NaN weights give NaN logits: sampling them is a named error (it once read before the top-p buffer), at any
 * temperature and top-p. A nearly flat distribution with a top-p below 1/V has an empty nucleus: the mode is taken. */
static void non_finite_logits_are_an_error_and_an_empty_nucleus_takes_the_mode(void **state) {
    (void)state;
    need_data();
    pissa_tokenizer *tok;
    assert_ok(pissa_tokenizer_load(TOKENIZER, 512, &tok));
    pissa__weights w;
    pissa_generator *g;
    pissa_model *m;
    weights_with(&w, "model.norm.weight", NAN);
    assert_ok(pissa__model_from_weights(&w, MODEL, &m));
    assert_ok(pissa__generator_create_from_model(m, 64, &g));
    const float temps[3] = {0.0f, 1.0f, 0.8f}, topps[3] = {0.9f, 0.0f, 0.9f};
    for (int i = 0; i < 3; i++) {
        collected c = {0};
        assert_int_equal(pissa_generate(g, tok, "", 20, temps[i], topps[i], 1, collect, &c, NULL),
                         PISSA_ERR_NUMERIC);
        assert_non_null(strstr(pissa_last_error(), "not finite"));
        assert_int_equal(c.n, 0);
    }
    pissa_generator_free(g);
    /* Logits are linear in the final norm's weight: at weight 1 find the mode after BOS and the logits' span, then
     * scale the weight so that they span 1e-3. Every probability is then below (1 - top-p)/(V - 1) for top-p 1e-6.
     * The mode is not id 0, which is what a read before the buffer returns on glibc (its size field's high half). */
    float logits[512];
    weights_with(&w, "model.norm.weight", 1.0f);
    assert_ok(pissa__model_from_weights(&w, MODEL, &m));
    assert_ok(pissa__generator_create_from_model(m, 64, &g));
    assert_ok(pissa_generator_forward(g, 1, 0, logits));
    pissa_generator_free(g);
    int32_t mode = 0;
    float lo = logits[0], second = -INFINITY;
    for (int32_t i = 1; i < 512; i++) {
        if (logits[i] > logits[mode]) {
            second = logits[mode];
            mode = i;
        } else if (logits[i] > second) {
            second = logits[i];
        }
        if (logits[i] < lo) lo = logits[i];
    }
    const float scale = 1e-3f / (logits[mode] - lo);
    assert_int_not_equal(mode, 0);
    assert_true((logits[mode] - second) * scale > 1e-5f); /* the mode stays the mode in float32 probabilities */
    weights_with(&w, "model.norm.weight", scale);
    assert_ok(pissa__model_from_weights(&w, MODEL, &m));
    assert_ok(pissa__generator_create_from_model(m, 64, &g));
    collected c = {0};
    assert_ok(pissa_generate(g, tok, "", 2, 1.0f, 1e-6f, 1, collect, &c, NULL));
    assert_int_equal(c.n, 2);
    assert_int_equal(c.tokens[0], mode);
    pissa_generator_free(g);
    pissa_tokenizer_free(tok);
}

/* ---- pissa-generate ---- */

static int run_generate(const char *args, const char *dir, char **out, char **err) {
    char *o = tu_path(dir, "stdout.txt"), *e = tu_path(dir, "stderr.txt");
    size_t cap = strlen(args) + strlen(o) + strlen(e) + 512;
    char *cmd = malloc(cap);
    snprintf(cmd, cap, "'%s' %s >'%s' 2>'%s'", PISSA_GENERATE_EXE, args, o, e);
    int rc = tu_run(cmd, NULL);
    size_t len;
    *out = tu_slurp(o, &len);
    *err = tu_slurp(e, &len);
    assert_non_null(*out);
    assert_non_null(*err);
    free(cmd);
    free(o);
    free(e);
    return rc;
}

static void expect_one_line_error(const char *args, const char *dir, const char *needle) {
    char *out, *err;
    int rc = run_generate(args, dir, &out, &err);
    if (rc == 0) fail_msg("pissa-generate %s succeeded", args);
    if (strncmp(err, "pissa-generate: ", 16) != 0 || !strstr(err, needle))
        fail_msg("pissa-generate %s: stderr '%s' lacks 'pissa-generate: ...%s'", args, err, needle);
    char *nl = strchr(err, '\n');
    assert_non_null(nl);
    assert_true(nl[1] == '\0' || !strncmp(nl + 1, "Try '", 5)); /* one line (plus the usage hint) */
    assert_string_equal(out, "");
    free(out);
    free(err);
}

static void pissa_generate_program_prints_the_reference_text(void **state) {
    (void)state;
    need_data();
    cJSON *ref = load_reference();
    const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "generations"), 0);
    char *want = malloc(strlen(cJSON_GetObjectItem(e, "text")->valuestring) + 2);
    sprintf(want, "%s\n", cJSON_GetObjectItem(e, "text")->valuestring);
    char *dir = tu_tempdir("generate");
    char args[2048], *out, *err;
    snprintf(args, sizeof args, "--model '%s' --tokenizer '%s' --temperature 0 --steps 100 --threads 1", MODEL,
             TOKENIZER);
    assert_int_equal(run_generate(args, dir, &out, &err), 0);
    assert_string_equal(out, want);
    assert_non_null(strstr(err, "tokens/s"));
    free(out);
    free(err);

    /* a PEFT adapter with B = 0 on all 7 projections changes nothing */
    char *adir = tu_path(dir, "adapter");
    pissa__weights w;
    const int all[7] = {0, 1, 2, 3, 4, 5, 6};
    assert_ok(pissa__weights_load(MODEL, NULL, &w));
    make_adapter(adir, all, 7, 4, 8.0, 0, 1, &w);
    pissa__weights_free(&w);
    snprintf(args, sizeof args, "--model '%s' --adapter '%s' --tokenizer '%s' --temperature 0 --steps 100", MODEL,
             adir, TOKENIZER);
    assert_int_equal(run_generate(args, dir, &out, &err), 0);
    assert_string_equal(out, want);
    free(out);
    free(err);

    /* --help on stdout, exit 0 */
    assert_int_equal(run_generate("--help", dir, &out, &err), 0);
    assert_non_null(strstr(out, "usage: pissa-generate"));
    free(out);
    free(err);

    /* bad input: one line naming the problem, non-zero exit, nothing on stdout */
    snprintf(args, sizeof args, "--model '%s' --tokenizer '%s' --steps ten", MODEL, TOKENIZER);
    expect_one_line_error(args, dir, "--steps");
    snprintf(args, sizeof args, "--model '%s' --tokenizer '%s' --top-p 1.5", MODEL, TOKENIZER);
    expect_one_line_error(args, dir, "--top-p");
    snprintf(args, sizeof args, "--model '%s' --tokenizer '%s' --temperature -1", MODEL, TOKENIZER);
    expect_one_line_error(args, dir, "--temperature");
    snprintf(args, sizeof args, "--model '%s' --tokenizer '%s' --frobnicate", MODEL, TOKENIZER);
    expect_one_line_error(args, dir, "unknown option '--frobnicate'");
    snprintf(args, sizeof args, "--tokenizer '%s'", TOKENIZER);
    expect_one_line_error(args, dir, "--model");
    snprintf(args, sizeof args, "--model '%s'", MODEL);
    expect_one_line_error(args, dir, "--tokenizer");
    snprintf(args, sizeof args, "--model '%s/missing.bin' --tokenizer '%s'", dir, TOKENIZER);
    expect_one_line_error(args, dir, "missing.bin");
    snprintf(args, sizeof args, "--model '%s' --tokenizer '%s/missing.bin'", MODEL, dir);
    expect_one_line_error(args, dir, "missing.bin");
    snprintf(args, sizeof args, "--model '%s' --tokenizer '%s' --adapter '%s'", MODEL, TOKENIZER, dir);
    expect_one_line_error(args, dir, "adapter");

    free(adir);
    free(want);
    tu_rmtree(dir);
    free(dir);
    cJSON_Delete(ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_logits_match_llama2c_reference),
        cmocka_unit_test(greedy_generation_matches_llama2c_reference),
        cmocka_unit_test(hf_folder_of_the_model_generates_the_same_text),
        cmocka_unit_test(adapter_applied_unmerged_equals_merged_weights),
        cmocka_unit_test(generator_equals_model_at_every_position_for_every_family),
        cmocka_unit_test(adapter_features_not_implemented_are_refused_by_name),
        cmocka_unit_test(top_p_sampling_stays_in_the_nucleus_and_is_seeded),
        cmocka_unit_test(non_finite_logits_are_an_error_and_an_empty_nucleus_takes_the_mode),
        cmocka_unit_test(pissa_generate_program_prints_the_reference_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
