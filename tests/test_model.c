/* The trainable Llama model: logits, loss and adapter gradients against an independent float64 PyTorch
 * implementation (tests/reference/make_llama_reference.py), finite differences, memory planning, refusals,
 * llama2.c vs Hugging Face forms, adapter initialisation and save/load, full fine-tuning (every weight's gradient
 * against PyTorch, pissa_model_save), and pissa-eval end to end. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"
#include "weights.h"

#define REF PISSA_TEST_REFERENCE_DIR
#define STORIES PISSA_SHARED_DATA_DIR "/stories260K/stories260K.bin"
#define TOK512 PISSA_SHARED_DATA_DIR "/stories260K/tok512.bin"
#define SHAKESPEARE PISSA_SHARED_DATA_DIR "/tinyshakespeare/input.txt"

/* ---- fixture: batch.json and expected.{json,safetensors} ---- */

typedef struct batch {
    int B, T;
    int32_t *ids, *labels; /* (B, T) */
} batch;

static void read_rows(const cJSON *rows, int32_t **out, int *B, int *T) {
    *B = cJSON_GetArraySize(rows);
    *T = cJSON_GetArraySize(cJSON_GetArrayItem(rows, 0));
    *out = malloc(sizeof(int32_t) * (size_t)(*B * *T));
    for (int b = 0; b < *B; b++)
        for (int t = 0; t < *T; t++)
            (*out)[b * *T + t] = (int32_t)cJSON_GetArrayItem(cJSON_GetArrayItem(rows, b), t)->valuedouble;
}

static batch load_batch(const char *fixture) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/batch.json", REF, fixture);
    char *text = tu_slurp(path, NULL);
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    batch bt;
    read_rows(cJSON_GetObjectItem(root, "input_ids"), &bt.ids, &bt.B, &bt.T);
    read_rows(cJSON_GetObjectItem(root, "labels"), &bt.labels, &bt.B, &bt.T);
    cJSON_Delete(root);
    free(text);
    return bt;
}

static void free_batch(batch *b) {
    free(b->ids);
    free(b->labels);
}

/* KEY of the fixture's FILE (expected.json or full_expected.json), written by the reference scripts. */
static double expected_number(const char *fixture, const char *file, const char *key) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", REF, fixture, file);
    char *text = tu_slurp(path, NULL);
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    assert_non_null(cJSON_GetObjectItem(root, key));
    double v = cJSON_GetObjectItem(root, key)->valuedouble;
    cJSON_Delete(root);
    free(text);
    return v;
}

static pissa_model *load_model_with_adapter(const char *dir, const char *adapter) {
    pissa_model *m;
    assert_ok(pissa_model_load(dir, &m));
    if (adapter) assert_ok(pissa_model_load_adapter(m, adapter));
    return m;
}

static pissa_model *load_fixture(const char *fixture, int with_adapter) {
    char dir[512], ad[512];
    snprintf(dir, sizeof dir, "%s/%s", REF, fixture);
    snprintf(ad, sizeof ad, "%s/%s/adapter", REF, fixture);
    return load_model_with_adapter(dir, with_adapter ? ad : NULL);
}

/* ---- agreement with PyTorch ---- */

/* max|logits − reference| / max|reference logit| of M on FIXTURE's batch (expected.safetensors). */
static double logits_vs_pytorch(pissa_model *m, const char *fixture) {
    batch bt = load_batch(fixture);
    size_t nl = (size_t)bt.B * bt.T * (size_t)pissa_model_config(m)->vocab_size;
    char path[512];
    snprintf(path, sizeof path, "%s/%s/expected.safetensors", REF, fixture);
    pissa_st_file *ex;
    assert_ok(pissa_st_open(path, &ex));
    float *logits = malloc(nl * sizeof(float)), *want = malloc(nl * sizeof(float));
    assert_ok(pissa_model_logits(m, bt.ids, bt.B, bt.T, logits));
    assert_ok(pissa_st_read_f32(ex, "logits", want, (int64_t)nl));
    double d = tu_max_rel_diff(logits, want, nl);
    pissa_st_close(ex);
    free(logits);
    free(want);
    free_batch(&bt);
    return d;
}

static void check_against_pytorch(const char *fixture, size_t n_adapters) {
    pissa_model *m = load_fixture(fixture, 1);
    assert_int_equal(pissa_model_adapter_count(m), n_adapters);
    batch bt = load_batch(fixture);
    char path[512];
    snprintf(path, sizeof path, "%s/%s/expected.safetensors", REF, fixture);
    pissa_st_file *ex;
    assert_ok(pissa_st_open(path, &ex));

    double dl = logits_vs_pytorch(m, fixture);
    printf("  %s: logits max|diff| / max|logit| %.3g\n", fixture, dl);
    assert_true(dl < TU_LOGIT_TOL);

    double loss;
    int64_t count;
    pissa_model_zero_grad(m);
    assert_ok(pissa_model_forward_backward(m, bt.ids, bt.labels, bt.B, bt.T, 1.0f, &loss, &count));
    double want_loss = expected_number(fixture, "expected.json", "loss");
    printf("  %s: loss %.7f vs %.7f (|diff| %.3g), %lld targets\n", fixture, loss, want_loss, fabs(loss - want_loss),
           (long long)count);
    assert_int_equal(count, (int64_t)expected_number(fixture, "expected.json", "count"));
    assert_true(fabs(loss - want_loss) < 1e-6 * want_loss);

    /* each gradient relative to its own tensor's scale */
    double worst = 0, gmax = 0;
    for (size_t i = 0; i < pissa_model_adapter_count(m); i++) {
        pissa_adapter_view a;
        assert_ok(pissa_model_adapter(m, i, &a));
        for (int which = 0; which < 2; which++) {
            size_t n = (size_t)(which ? a.out * a.r : a.r * a.in);
            float *g = malloc(n * sizeof(float));
            snprintf(path, sizeof path, "%s.lora_%c", a.module, which ? 'B' : 'A');
            assert_ok(pissa_st_read_f32(ex, path, g, (int64_t)n));
            double d = tu_max_rel_diff(which ? a.dB : a.dA, g, n);
            for (size_t k = 0; k < n; k++) gmax = fmax(gmax, fabs(g[k]));
            worst = fmax(worst, d);
            if (!(d < 1e-5)) fail_msg("%s: gradient max|diff| / max|grad| %.3g", path, d);
            free(g);
        }
    }
    printf("  %s: adapter gradients max|diff| / max|grad| %.3g (max|grad| %.3g) over %zu adapters\n", fixture, worst,
           gmax, pissa_model_adapter_count(m));
    assert_true(gmax > 1e-3); /* the reference gradients are not trivially zero */
    pissa_st_close(ex);
    free_batch(&bt);
    pissa_model_free(m);
}

static void untied_gqa_model_matches_pytorch(void **state) {
    (void)state;
    check_against_pytorch("llama_untied", 2 * 3);
}

static void tied_model_with_wide_heads_and_rslora_matches_pytorch(void **state) {
    (void)state;
    check_against_pytorch("llama_tied", 2 * 7);
}

/* ---- the families (tests/reference/make_llama_reference.py FIXTURES) ---- */

static void check_full_gradients(const char *fixture, size_t n_weights, int n_1d);

typedef struct family_fixture {
    const char *name;
    size_t adapters;       /* adapted modules */
    size_t weights, n_1d;  /* tensors of the checkpoint, and how many of them are 1-D (norms, biases) */
} family_fixture;

static const family_fixture families[] = {
    {"llama3_rope", 2 * 7, 3 + 2 * 9, 1 + 2 * 2},           /* rope llama3, positions past the original 32 */
    {"llama_bias_linear", 2 * 7, 2 + 2 * 16, 1 + 2 * 9},    /* rope linear, attention + mlp biases, tied */
    {"mistral_window", 2 * 4, 3 + 2 * 9, 1 + 2 * 2},        /* sliding window 5 over 12 positions */
    {"qwen2_bias", 2 * 7, 2 + 2 * 12, 1 + 2 * 5},           /* q/k/v biases, tied */
    {"qwen3_qknorm", 2 * 7, 2 + 2 * 15, 1 + 2 * 8},         /* q_norm/k_norm, head_dim 16 with H·hd != D */
};

/* Every family gives PyTorch's logits, loss and adapter gradients... */
static void every_family_matches_pytorch_logits_loss_and_adapter_gradients(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof families / sizeof *families; i++) check_against_pytorch(families[i].name,
                                                                                          families[i].adapters);
}

/* ... and, fully fine-tuned, the gradient of every weight, biases and q/k norms included. */
static void every_family_gives_pytorch_gradients_of_every_weight(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof families / sizeof *families; i++)
        check_full_gradients(families[i].name, families[i].weights, (int)families[i].n_1d);
}

/* ---- packed rows ---- */

/* Sequences packed into rows with position_ids (docs/data.md) give the loss and every weight's gradient of the same
 * sequences run as separate rows (the separate gradients added with weights count_k / total, as the trainer weights
 * micro-batches). Each family's two fixture rows make four sequences (both whole, and a 5- and a 4-token prefix),
 * packed two to a row with padding after them; Mistral's sliding window (5) is shorter than the sequences. The sums
 * differ only in order: a weight's gradient sums the same per-token terms in one product instead of four, a
 * query's attention the same keys over other tiles, the loss the same per-token values in other partial sums. So
 * each value may move by a few float32 roundings of the magnitude of its terms: 2e-6 of the tensor's largest
 * gradient (measured: at most about 3e-7) and 1e-6 of the loss. */
static void check_packed_equals_separate(const char *fixture) {
    pissa_model *m = load_fixture(fixture, 0);
    assert_ok(pissa_model_set_full_finetune(m));
    batch bt = load_batch(fixture);
    int T = bt.T;
    const int32_t *src[4] = {bt.ids, bt.ids + T, bt.ids + T, bt.ids}, *lsrc[4] = {bt.labels, bt.labels + T,
                                                                                 bt.labels + T, bt.labels};
    const int len[4] = {T, 5, T, 4}, P = T + 5 + 2; /* row 0: seqs 0 and 1, row 1: seqs 2 and 3, then padding */
    /* separately: sequence k alone, its gradient weighted by its share of the targets */
    int64_t c[4], total = 0;
    double l[4];
    for (int k = 0; k < 4; k++) {
        assert_ok(pissa_model_loss(m, src[k], lsrc[k], 1, len[k], &l[k], &c[k]));
        total += c[k];
    }
    pissa_model_zero_grad(m);
    double sep = 0;
    for (int k = 0; k < 4; k++) {
        assert_ok(pissa_model_forward_backward(m, src[k], lsrc[k], 1, len[k], (float)((double)c[k] / total), NULL,
                                               NULL));
        sep += l[k] * (double)c[k] / (double)total;
    }
    size_t n = pissa_model_param_count(m);
    float **want = malloc(n * sizeof *want);
    for (size_t i = 0; i < n; i++) {
        pissa_param_view v;
        assert_ok(pissa_model_param(m, i, &v));
        want[i] = malloc((size_t)(v.rows * v.cols) * sizeof(float));
        memcpy(want[i], v.grad, (size_t)(v.rows * v.cols) * sizeof(float));
    }
    /* packed */
    int32_t *ids = calloc((size_t)(2 * P), sizeof *ids), *labels = malloc((size_t)(2 * P) * sizeof *labels);
    int32_t *pos = malloc((size_t)(2 * P) * sizeof *pos);
    for (int r = 0; r < 2; r++) {
        int t = 0;
        for (int k = 2 * r; k < 2 * r + 2; k++)
            for (int j = 0; j < len[k]; j++, t++) {
                ids[r * P + t] = src[k][j];
                labels[r * P + t] = lsrc[k][j];
                pos[r * P + t] = j;
            }
        for (int j = len[2 * r + 1]; t < P; t++, j++) labels[r * P + t] = PISSA_IGNORE_INDEX, pos[r * P + t] = j;
    }
    double packed;
    int64_t count;
    pissa_model_zero_grad(m);
    assert_ok(pissa_model_forward_backward_packed(m, ids, labels, pos, 2, P, 1.0f, &packed, &count));
    assert_int_equal(count, total);
    printf("  %s: packed loss %.9f, separate %.9f", fixture, packed, sep);
    assert_true(fabs(packed - sep) <= 1e-6 * sep);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        pissa_param_view v;
        assert_ok(pissa_model_param(m, i, &v));
        size_t k = (size_t)(v.rows * v.cols);
        double gmax = 0;
        for (size_t j = 0; j < k; j++) gmax = fmax(gmax, fabs(want[i][j]));
        double d = tu_max_abs_diff(v.grad, want[i], k);
        /* float32 rounding of differently shaped products: measured 4.2e-6 with OpenBLAS's AVX-512 kernels */
        if (d > 1e-5 * gmax) fail_msg("%s: packed gradient max|diff| %.3g (max|grad| %.3g)", v.name, d, gmax);
        if (gmax > 0) worst = fmax(worst, d / gmax);
        free(want[i]);
    }
    printf(", gradients max|diff|/max|grad| %.3g\n", worst);
    /* with activation checkpointing, the same bits: the recomputed layers read the same positions */
    float **first = malloc(n * sizeof *first);
    for (size_t i = 0; i < n; i++) {
        pissa_param_view v;
        assert_ok(pissa_model_param(m, i, &v));
        first[i] = malloc((size_t)(v.rows * v.cols) * sizeof(float));
        memcpy(first[i], v.grad, (size_t)(v.rows * v.cols) * sizeof(float));
    }
    pissa_model_set_grad_checkpoint(m, 1);
    pissa_model_zero_grad(m);
    double again;
    assert_ok(pissa_model_forward_backward_packed(m, ids, labels, pos, 2, P, 1.0f, &again, NULL));
    assert_true(again == packed);
    for (size_t i = 0; i < n; i++) {
        pissa_param_view v;
        assert_ok(pissa_model_param(m, i, &v));
        assert_memory_equal(v.grad, first[i], (size_t)(v.rows * v.cols) * sizeof(float));
        free(first[i]);
    }
    free(first);
    pissa_model_set_grad_checkpoint(m, 0);
    /* positions that do not restart at 0 or skip are refused, naming the place */
    pos[P + 3] = 7;
    assert_int_equal(pissa_model_loss_packed(m, ids, labels, pos, 2, P, NULL, NULL), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "position_ids[1][3] = 7"));
    pos[P + 3] = 3;
    pos[P] = 1;
    assert_int_equal(pissa_model_loss_packed(m, ids, labels, pos, 2, P, NULL, NULL), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "position_ids[1][0] = 1"));
    free(want), free(ids), free(labels), free(pos);
    free_batch(&bt);
    pissa_model_free(m);
}

static void packed_rows_give_the_loss_and_gradients_of_separate_rows(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof families / sizeof *families; i++) check_packed_equals_separate(families[i].name);
}

/* ---- finite differences, gradient buffers, memory ---- */

/* Every adapter's A and B, about 9 entries of each, against the sixth-order central difference
 * f'(x) ≈ (−f(x−3h) + 9f(x−2h) − 45f(x−h) + 45f(x+h) − 9f(x+2h) + f(x+3h)) / 60h, to 1e-4 + 1e-3·|f'|. The model
 * computes in float32 only (no float64 path), so the loss carries rounding noise of about 1e-7 of its value, which
 * a central difference divides by h: the high-order stencil allows a step (s·h = 0.08) large enough to keep that
 * noise near 1e-5 while its truncation error (∝ h⁶) stays smaller still. Measured: the worst entry uses about a third
 * of the tolerance on either fixture. */
static void check_finite_differences(const char *fixture) {
    pissa_model *m = load_fixture(fixture, 1);
    batch bt = load_batch(fixture);
    double loss;
    pissa_model_zero_grad(m);
    assert_ok(pissa_model_forward_backward(m, bt.ids, bt.labels, bt.B, bt.T, 1.0f, &loss, NULL));
    const double weights[6] = {-1, 9, -45, 45, -9, 1};
    double worst = 0, gmax = 0;
    int checked = 0;
    for (size_t i = 0; i < pissa_model_adapter_count(m); i++) {
        pissa_adapter_view a;
        assert_ok(pissa_model_adapter(m, i, &a));
        const float h = 0.08f / (float)a.scale; /* the step of s·B·A, whatever the adapter's scale s */
        const float steps[6] = {-3 * h, -2 * h, -h, h, 2 * h, 3 * h};
        for (int which = 0; which < 2; which++) {
            float *p = which ? a.B : a.A, *g = which ? a.dB : a.dA;
            size_t n = (size_t)(which ? a.out * a.r : a.r * a.in);
            for (size_t k = (i * 7 + (size_t)which) % 5; k < n; k += n / 8 + 1) {
                float saved = p[k];
                double fd = 0;
                for (int j = 0; j < 6; j++) {
                    double l;
                    p[k] = saved + steps[j];
                    assert_ok(pissa_model_loss(m, bt.ids, bt.labels, bt.B, bt.T, &l, NULL));
                    fd += weights[j] * l;
                }
                p[k] = saved;
                fd /= 60.0 * h;
                double err = fabs(fd - g[k]);
                worst = fmax(worst, err / (1e-4 + 1e-3 * fabs(fd)));
                gmax = fmax(gmax, fabs(fd));
                checked++;
                if (!(err <= 1e-4 + 1e-3 * fabs(fd)))
                    fail_msg("%s lora_%c[%zu]: analytic %.7g, central difference %.7g", a.module, which ? 'B' : 'A',
                             k, g[k], fd);
            }
        }
    }
    printf("  %s: %d adapter entries, largest error %.2f of the tolerance 1e-4 + 1e-3·|fd| (max|fd| %.3g)\n", fixture,
           checked, worst, gmax);
    assert_true(gmax > 1e-2); /* the gradients checked are far from zero */
    free_batch(&bt);
    pissa_model_free(m);
}

static void adapter_gradients_match_finite_differences(void **state) {
    (void)state;
    check_finite_differences("llama_untied");
    check_finite_differences("llama_tied");
}

static void frozen_weights_get_no_gradient_buffers(void **state) {
    (void)state;
    pissa_model *m = load_fixture("llama_untied", 0);
    assert_int_equal(pissa_model_grad_tensor_count(m), 0);
    size_t base_bytes = pissa_model_arena_bytes(m);
    assert_int_equal(base_bytes, 0);
    pissa_adapter_opts o = pissa_adapter_default_opts(); /* q_proj, v_proj */
    o.init.rank = 2;
    assert_ok(pissa_model_add_adapters(m, &o));
    assert_int_equal(pissa_model_adapter_count(m), 2 * 2);
    assert_int_equal(pissa_model_grad_tensor_count(m), 2 * 4); /* A and B of each adapter, nothing else */
    /* parameter gradients = exactly the adapter sizes: (r·in + out·r) per adapter */
    size_t want = 0;
    for (size_t i = 0; i < pissa_model_adapter_count(m); i++) {
        pissa_adapter_view a;
        assert_ok(pissa_model_adapter(m, i, &a));
        want += (size_t)(a.r * a.in + a.out * a.r) * sizeof(float);
    }
    assert_int_equal(pissa_model_arena_bytes(m), want);
    pissa_model_free(m);
}

static void steps_of_one_shape_allocate_nothing_and_accumulate(void **state) {
    (void)state;
    pissa_model *m = load_fixture("llama_untied", 1);
    batch bt = load_batch("llama_untied");
    pissa_model_zero_grad(m);
    double l1, l2;
    assert_ok(pissa_model_forward_backward(m, bt.ids, bt.labels, bt.B, bt.T, 1.0f, &l1, NULL));
    size_t bytes = pissa_model_arena_bytes(m);
    assert_true(bytes > 0);
    pissa_adapter_view a;
    assert_ok(pissa_model_adapter(m, 0, &a));
    size_t n = (size_t)(a.r * a.in);
    float *g1 = malloc(n * sizeof(float));
    memcpy(g1, a.dA, n * sizeof(float));
    /* a second step adds the same gradient (+=), a third with dloss 0.5 adds half of it */
    assert_ok(pissa_model_forward_backward(m, bt.ids, bt.labels, bt.B, bt.T, 1.0f, &l2, NULL));
    assert_true(l1 == l2);
    assert_int_equal(pissa_model_arena_bytes(m), bytes);
    assert_ok(pissa_model_forward_backward(m, bt.ids, bt.labels, bt.B, bt.T, 0.5f, NULL, NULL));
    assert_int_equal(pissa_model_arena_bytes(m), bytes);
    for (size_t k = 0; k < n; k++) assert_true(fabs(a.dA[k] - 2.5f * g1[k]) <= 1e-5f * (1 + fabs(g1[k])));
    pissa_model_zero_grad(m);
    for (size_t k = 0; k < n; k++) assert_true(a.dA[k] == 0.0f);
    /* logits and loss calls of the same shape reuse the plan too */
    float *logits = malloc(sizeof(float) * (size_t)(bt.B * bt.T) * 48);
    assert_ok(pissa_model_logits(m, bt.ids, bt.B, bt.T, logits));
    assert_int_equal(pissa_model_arena_bytes(m), bytes);
    free(logits);
    free(g1);
    free_batch(&bt);
    pissa_model_free(m);
}

/* ---- refusals ---- */

static void bad_token_ids_and_long_sequences_are_refused(void **state) {
    (void)state;
    pissa_model *m = load_fixture("llama_untied", 0);
    batch bt = load_batch("llama_untied");
    float *logits = malloc(sizeof(float) * 64 * 48);
    bt.ids[1 * bt.T + 2] = 48; /* V = 48 */
    assert_int_equal(pissa_model_logits(m, bt.ids, bt.B, bt.T, logits), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "input_ids[1][2] = 48"));
    bt.ids[1 * bt.T + 2] = -1;
    assert_int_equal(pissa_model_loss(m, bt.ids, bt.labels, bt.B, bt.T, NULL, NULL), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "input_ids[1][2] = -1"));
    bt.ids[1 * bt.T + 2] = 0;
    bt.labels[4] = 99;
    assert_int_equal(pissa_model_loss(m, bt.ids, bt.labels, bt.B, bt.T, NULL, NULL), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "labels[0][4] = 99"));
    int32_t ids[17] = {0};
    assert_int_equal(pissa_model_logits(m, ids, 1, 17, logits), PISSA_ERR_INVALID_ARG); /* max_position 16 */
    assert_non_null(strstr(pissa_last_error(), "max_position_embeddings 16"));
    assert_ok(pissa_model_logits(m, ids, 1, 16, logits));
    free(logits);
    free_batch(&bt);
    pissa_model_free(m);
}

/* A copy of FIXTURE's base model whose config.json has KEY set to the JSON text RAW_VALUE. */
static char *fixture_copy_of(const char *fixture, const char *key, const char *raw_value) {
    char *dir = tu_tempdir("model_cfg");
    char src[512];
    snprintf(src, sizeof src, "%s/%s/model.safetensors", REF, fixture);
    size_t len;
    char *bytes = tu_slurp(src, &len);
    char *dst = tu_path(dir, "model.safetensors");
    tu_write_bytes(dst, bytes, len);
    free(dst);
    free(bytes);
    snprintf(src, sizeof src, "%s/%s/config.json", REF, fixture);
    bytes = tu_slurp(src, &len);
    assert_non_null(bytes);
    dst = tu_path(dir, "config.json");
    tu_write_bytes(dst, bytes, len);
    tu_json_set_field(dst, key, raw_value);
    free(dst);
    free(bytes);
    return dir;
}

static char *fixture_copy(const char *key, const char *raw_value) {
    return fixture_copy_of("llama_untied", key, raw_value);
}

/* The comparisons with PyTorch are sharp enough to see a small error in the maths: the same weights with
 * rms_norm_eps tripled (a plausible slip: the wrong default, or eps added outside the square root) must miss the
 * reference logits by more than TU_LOGIT_TOL. */
static void reference_comparisons_notice_a_tripled_rms_norm_eps(void **state) {
    (void)state;
    const char *fixtures[2] = {"llama_untied", "llama_tied"};
    for (int i = 0; i < 2; i++) {
        char cfg[512], ad[512], eps[64];
        snprintf(cfg, sizeof cfg, "%s/%s/config.json", REF, fixtures[i]);
        snprintf(ad, sizeof ad, "%s/%s/adapter", REF, fixtures[i]);
        char *text = tu_slurp(cfg, NULL);
        cJSON *root = cJSON_Parse(text);
        snprintf(eps, sizeof eps, "%.17g", 3 * cJSON_GetObjectItem(root, "rms_norm_eps")->valuedouble);
        cJSON_Delete(root);
        free(text);
        char *dir = fixture_copy_of(fixtures[i], "rms_norm_eps", eps);
        pissa_model *m = load_model_with_adapter(dir, ad);
        double d = logits_vs_pytorch(m, fixtures[i]);
        printf("  %s with rms_norm_eps %s: logits max|diff| / max|logit| %.3g (tolerance %.0e)\n", fixtures[i], eps,
               d, TU_LOGIT_TOL);
        assert_true(d > TU_LOGIT_TOL);
        pissa_model_free(m);
        tu_rmtree(dir);
        free(dir);
    }
}

static void unsupported_configs_are_refused_with_their_field(void **state) {
    (void)state;
    struct { const char *key, *value, *needle; } cases[] = {
        {"rope_scaling", "{\"type\": \"dynamic\", \"factor\": 2.0}", "rope_type 'dynamic'"},
        {"rope_scaling", "{\"rope_type\": \"longrope\", \"short_factor\": [1], \"long_factor\": [1]}",
         "rope_type 'longrope'"},
        {"partial_rotary_factor", "0.5", "partial_rotary_factor"},
        {"model_type", "\"gemma\"", "model_type 'gemma'"},
        {"architectures", "[\"LlamaForSequenceClassification\"]", "architectures"},
        {"hidden_act", "\"gelu\"", "hidden_act"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = fixture_copy(cases[i].key, cases[i].value);
        pissa_model *m = NULL;
        assert_int_equal(pissa_model_load(dir, &m), PISSA_ERR_UNSUPPORTED);
        assert_null(m);
        if (!strstr(pissa_last_error(), cases[i].needle)) fail_msg("message '%s'", pissa_last_error());
        tu_rmtree(dir);
        free(dir);
    }
}

static void unsupported_adapter_features_are_refused(void **state) {
    (void)state;
    struct { const char *key, *value, *needle; } cases[] = {
        {"target_modules", "\".*q_proj\"", "is not targeted"}, /* the file also has v_proj and down_proj */
        {"use_dora", "true", "use_dora"},
        {"fan_in_fan_out", "true", "fan_in_fan_out"},
        {"modules_to_save", "[\"lm_head\"]", "modules_to_save"},
        {"rank_pattern", "{\"q_proj\": 2}", "rank_pattern"}, /* the file's q_proj has rank 4 */
        {"target_modules", "[\"q_proj\"]", "is not targeted"},
    };
    char src[512];
    snprintf(src, sizeof src, "%s/llama_untied/adapter/adapter_model.safetensors", REF);
    size_t len;
    char *tensors = tu_slurp(src, &len);
    snprintf(src, sizeof src, "%s/llama_untied/adapter/adapter_config.json", REF);
    char *cfg_text = tu_slurp(src, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = tu_tempdir("model_adapter");
        char *p = tu_path(dir, "adapter_model.safetensors");
        tu_write_bytes(p, tensors, len);
        free(p);
        p = tu_path(dir, "adapter_config.json");
        tu_write_bytes(p, cfg_text, strlen(cfg_text));
        tu_json_set_field(p, cases[i].key, cases[i].value);
        free(p);
        pissa_model *m = load_fixture("llama_untied", 0);
        assert_int_not_equal(pissa_model_load_adapter(m, dir), PISSA_OK);
        if (!strstr(pissa_last_error(), cases[i].needle)) fail_msg("message '%s'", pissa_last_error());
        assert_int_equal(pissa_model_adapter_count(m), 0);
        pissa_model_free(m);
        tu_rmtree(dir);
        free(dir);
    }
    free(tensors);
    free(cfg_text);
}

/* ---- adapters initialised in memory, saved and loaded ---- */

static void base_logits(pissa_model *m, const batch *bt, float *out) {
    assert_ok(pissa_model_logits(m, bt->ids, bt->B, bt->T, out));
}

static void initialised_adapters_preserve_the_model_and_round_trip(void **state) {
    (void)state;
    batch bt = load_batch("llama_untied");
    size_t nl = (size_t)(bt.B * bt.T) * 48;
    float *ref = malloc(nl * sizeof(float)), *got = malloc(nl * sizeof(float)), *got2 = malloc(nl * sizeof(float));
    pissa_model *m = load_fixture("llama_untied", 0);
    base_logits(m, &bt, ref);
    pissa_model_free(m);
    const char *kinds[] = {"pissa", "pissa_niter_2", "lora", "gaussian"};
    for (int k = 0; k < 4; k++) {
        m = load_fixture("llama_untied", 0);
        pissa_adapter_opts o = pissa_adapter_default_opts();
        o.targets = PISSA_PROJ_ALL;
        assert_ok(pissa_init_parse(kinds[k], &o.init));
        o.init.rank = 4;
        o.init.alpha = 8;
        assert_ok(pissa_model_add_adapters(m, &o));
        assert_int_equal(pissa_model_adapter_count(m), 2 * 7);
        /* W_res + s·B·A = W (PiSSA) or B = 0 (LoRA): the adapted model computes the base model's logits */
        base_logits(m, &bt, got);
        double d = tu_max_rel_diff(got, ref, nl);
        printf("  %s init: logits vs base max|diff| / max|logit| %.3g\n", kinds[k], d);
        assert_true(d < TU_LOGIT_TOL);
        /* a trained-looking adapter survives save + load into a fresh model */
        pissa_adapter_view a;
        for (size_t i = 0; i < pissa_model_adapter_count(m); i++) {
            assert_ok(pissa_model_adapter(m, i, &a));
            for (int64_t j = 0; j < a.out * a.r; j++) a.B[j] += 0.01f * (float)((int)((j * 7 + (int64_t)i) % 5) - 2);
        }
        base_logits(m, &bt, got);
        char *dir = tu_tempdir("model_save");
        assert_ok(pissa_model_save_adapter(m, dir, PISSA_F32));
        pissa_model *m2 = load_fixture("llama_untied", 0);
        assert_ok(pissa_model_load_adapter(m2, dir));
        base_logits(m2, &bt, got2);
        /* bit for bit: A and B are saved as F32, and loading redoes the PiSSA initialisation (as PEFT does) with
         * the same module seeds, so the same SVD (exact, or pissa_niter's seeded randomized one) gives the same
         * residual; the forward pass is deterministic for a thread count */
        assert_memory_equal(got, got2, nl * sizeof(float));
        assert_true(tu_max_rel_diff(got, ref, nl) > 1e-3); /* the edit did change the model */
        pissa_model_free(m2);
        pissa_model_free(m);
        tu_rmtree(dir);
        free(dir);
    }
    free(ref);
    free(got);
    free(got2);
    free_batch(&bt);
}

/* ---- full fine-tuning ---- */

/* Every base weight's gradient (no adapter) against float64 PyTorch (tests/reference/make_full_reference.py). */
/* N_1D: the 1-D tensors (RMSNorm weights, biases, q/k norms), which the trainer keeps out of weight decay. */
static void check_full_gradients(const char *fixture, size_t n_weights, int n_1d) {
    pissa_model *m = load_fixture(fixture, 0);
    assert_int_equal(pissa_model_param_count(m), 0); /* frozen until full mode */
    assert_ok(pissa_model_set_full_finetune(m));
    assert_ok(pissa_model_set_full_finetune(m)); /* a second call changes nothing */
    assert_int_equal(pissa_model_full_finetune(m), 1);
    assert_int_equal(pissa_model_param_count(m), n_weights);
    assert_int_equal(pissa_model_grad_tensor_count(m), n_weights);
    batch bt = load_batch(fixture);
    double loss;
    int64_t count;
    pissa_model_zero_grad(m);
    assert_ok(pissa_model_forward_backward(m, bt.ids, bt.labels, bt.B, bt.T, 1.0f, &loss, &count));
    double want_loss = expected_number(fixture, "full_expected.json", "loss");
    assert_int_equal(count, (int64_t)expected_number(fixture, "full_expected.json", "count"));
    assert_true(fabs(loss - want_loss) < 1e-5 * want_loss);
    char path[512];
    snprintf(path, sizeof path, "%s/%s/full_grads.safetensors", REF, fixture);
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    assert_int_equal(pissa_st_count(f), n_weights); /* one gradient per tensor of the file: a tied head has none */
    double worst = 0;
    int norms = 0;
    for (size_t i = 0; i < n_weights; i++) {
        pissa_param_view v;
        assert_ok(pissa_model_param(m, i, &v));
        size_t n = (size_t)(v.rows * v.cols);
        float *want = malloc(n * sizeof(float));
        assert_ok(pissa_st_read_f32(f, v.name, want, (int64_t)n));
        double gmax = 0;
        for (size_t k = 0; k < n; k++) gmax = fmax(gmax, fabs(want[k]));
        double d = tu_max_abs_diff(v.grad, want, n);
        /* float32 forward and backward against float64: relative to the tensor's largest entry */
        if (d > 1e-6 + 2e-5 * gmax) fail_msg("%s: gradient max|diff| %.3g (max|grad| %.3g)", v.name, d, gmax);
        assert_true(gmax > 0);
        worst = fmax(worst, d / gmax);
        norms += v.ndim == 1;
        if (v.ndim == 1) assert_int_equal(v.rows, 1);
        free(want);
    }
    assert_int_equal(norms, n_1d);
    printf("  %s: loss %.7f vs %.7f; %zu weight gradients, max|diff|/max|grad| %.3g\n", fixture, loss, want_loss,
           n_weights, worst);
    pissa_st_close(f);
    free_batch(&bt);
    pissa_model_free(m);
}

static void full_finetune_gradients_of_every_weight_match_pytorch_untied(void **state) {
    (void)state;
    /* embed, norm, lm_head; per layer 2 norms + 7 projections; 1-D: two layers of two RMSNorms, and model.norm */
    check_full_gradients("llama_untied", 3 + 2 * 9, 2 * 2 + 1);
}

static void full_finetune_gradients_match_pytorch_tied_embedding_gets_both_uses(void **state) {
    (void)state;
    check_full_gradients("llama_tied", 2 + 2 * 9, 2 * 2 + 1);
}

static void full_finetune_and_adapters_exclude_each_other(void **state) {
    (void)state;
    pissa_adapter_opts o = pissa_adapter_default_opts();
    o.init.rank = 2;
    pissa_model *m = load_fixture("llama_untied", 0);
    assert_ok(pissa_model_set_full_finetune(m));
    assert_int_equal(pissa_model_add_adapters(m, &o), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "full fine-tuning"));
    assert_int_equal(pissa_model_load_adapter(m, REF "/llama_untied/adapter"), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "full fine-tuning"));
    pissa_model_free(m);
    m = load_fixture("llama_untied", 1);
    assert_int_equal(pissa_model_set_full_finetune(m), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "adapters"));
    assert_int_equal(pissa_model_full_finetune(m), 0);
    assert_int_equal(pissa_model_param_count(m), 2 * 6); /* the adapters' A and B stay the trainable tensors */
    pissa_param_view v;
    assert_ok(pissa_model_param(m, 1, &v));
    assert_non_null(strstr(v.name, ".lora_B"));
    assert_int_equal(pissa_model_param(m, 12, &v), PISSA_ERR_INVALID_ARG);
    pissa_model_free(m);
}

/* Full mode copies the mapped weights without changing the model; pissa_model_save writes the edited weights and
 * a fresh load computes the same logits bit for bit; with PiSSA adapters it writes the residual model. */
static void full_model_save_round_trips_exactly(void **state) {
    (void)state;
    batch bt = load_batch("llama_tied");
    size_t nl = (size_t)(bt.B * bt.T) * 40;
    float *ref = malloc(nl * sizeof(float)), *got = malloc(nl * sizeof(float));
    pissa_model *m = load_fixture("llama_tied", 0);
    base_logits(m, &bt, ref);
    assert_ok(pissa_model_set_full_finetune(m));
    base_logits(m, &bt, got);
    assert_memory_equal(ref, got, nl * sizeof(float));
    for (size_t i = 0; i < pissa_model_param_count(m); i++) { /* an edit of every weight, as training makes */
        pissa_param_view v;
        assert_ok(pissa_model_param(m, i, &v));
        for (int64_t k = 0; k < v.rows * v.cols; k++) v.data[k] *= 1.0f + 0.05f * (float)((k + (int64_t)i) % 3 - 1);
    }
    base_logits(m, &bt, ref);
    char *dir = tu_tempdir("full_save");
    assert_ok(pissa_model_save(m, dir, PISSA_F32));
    pissa_model *m2;
    assert_ok(pissa_model_load(dir, &m2));
    assert_int_equal(pissa_model_config(m2)->tie_word_embeddings, 1);
    base_logits(m2, &bt, got);
    assert_memory_equal(ref, got, nl * sizeof(float));
    pissa_model_free(m2);
    pissa_model_free(m);

    /* PiSSA adapters: the saved base is W_res = W − s·B·A, checked against a double product */
    m = load_fixture("llama_tied", 0);
    pissa_adapter_opts o = pissa_adapter_default_opts();
    assert_ok(pissa_init_parse("pissa", &o.init));
    o.init.rank = 2;
    o.init.alpha = 4;
    assert_ok(pissa_model_add_adapters(m, &o));
    assert_ok(pissa_model_save(m, dir, PISSA_F32));
    pissa_adapter_view a;
    assert_ok(pissa_model_adapter(m, 0, &a)); /* model.layers.0.self_attn.q_proj */
    pissa_checkpoint *ck;
    pissa_tensor *W, *R;
    assert_ok(pissa_checkpoint_open(REF "/llama_tied", &ck));
    assert_ok(pissa_checkpoint_load(ck, "model.layers.0.self_attn.q_proj.weight", &W));
    pissa_checkpoint_free(ck);
    assert_ok(pissa_checkpoint_open(dir, &ck));
    assert_ok(pissa_checkpoint_load(ck, "model.layers.0.self_attn.q_proj.weight", &R));
    double worst = 0;
    for (int64_t i = 0; i < a.out; i++)
        for (int64_t j = 0; j < a.in; j++) {
            double ba = 0;
            for (int64_t k = 0; k < a.r; k++) ba += (double)a.B[i * a.r + k] * a.A[k * a.in + j];
            double want = pissa_tensor_data(W)[i * a.in + j] - a.scale * ba;
            worst = fmax(worst, fabs(pissa_tensor_data(R)[i * a.in + j] - want));
        }
    assert_true(worst < 1e-5);
    assert_true(tu_max_abs_diff(pissa_tensor_data(R), pissa_tensor_data(W), (size_t)(a.out * a.in)) > 1e-2);
    pissa_tensor_free(W);
    pissa_tensor_free(R);
    pissa_checkpoint_free(ck);
    pissa_model_free(m);
    tu_rmtree(dir);
    free(dir);
    free(ref);
    free(got);
    free_batch(&bt);
}

/* ---- llama2.c and Hugging Face forms of one model ---- */

static void put_i32(FILE *f, int32_t v) { fwrite(&v, 4, 1, f); }

/* Writes W (Hugging Face form) as a llama2.c version-0 file: q/k rows back to adjacent-pair order. */
static void write_llama2c_v0(const pissa__weights *w, const char *path) {
    const pissa_llama_config *c = &w->cfg;
    int D = (int)c->hidden_size, F = (int)c->intermediate_size, L = (int)c->num_hidden_layers;
    int H = (int)c->num_attention_heads, KV = (int)c->num_key_value_heads, hd = D / H, V = (int)c->vocab_size;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    put_i32(f, D), put_i32(f, F), put_i32(f, L), put_i32(f, H), put_i32(f, KV);
    put_i32(f, c->tie_word_embeddings ? V : -V), put_i32(f, (int)c->max_position_embeddings);
    char name[160];
#define PUT(nm) fwrite(pissa_tensor_data(pissa__weights_get(w, nm)), 4, (size_t)pissa_tensor_numel(pissa__weights_get(w, nm)), f)
    PUT("model.embed_tokens.weight");
    for (int l = 0; l < L; l++) snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l), PUT(name);
    for (int which = 0; which < 2; which++)
        for (int l = 0; l < L; l++) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.weight", l, which ? "k_proj" : "q_proj");
            const float *src = pissa_tensor_data(pissa__weights_get(w, name));
            int nh = which ? KV : H;
            /* llama2.c row h·hd + 2i + j holds HF row h·hd + j·hd/2 + i */
            for (int h = 0; h < nh; h++)
                for (int i = 0; i < hd / 2; i++)
                    for (int j = 0; j < 2; j++) fwrite(src + (size_t)(h * hd + j * hd / 2 + i) * D, 4, (size_t)D, f);
        }
    const char *rest[] = {"self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj",
                          "mlp.down_proj", "mlp.up_proj"};
    for (int r = 0; r < 6; r++)
        for (int l = 0; l < L; l++) snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, rest[r]), PUT(name);
    PUT("model.norm.weight");
    float zero = 0;
    for (int i = 0; i < 2 * (int)c->max_position_embeddings * hd / 2; i++) fwrite(&zero, 4, 1, f);
    if (!c->tie_word_embeddings) PUT("lm_head.weight");
#undef PUT
    fclose(f);
}

static void compare_logits(const char *a, const char *b, int V, const int32_t *ids, int B, int T) {
    pissa_model *ma, *mb;
    assert_ok(pissa_model_load(a, &ma));
    assert_ok(pissa_model_load(b, &mb));
    size_t nl = (size_t)(B * T) * V;
    float *la = malloc(nl * sizeof(float)), *lb = malloc(nl * sizeof(float));
    assert_ok(pissa_model_logits(ma, ids, B, T, la));
    assert_ok(pissa_model_logits(mb, ids, B, T, lb));
    double d = tu_max_rel_diff(la, lb, nl);
    printf("  llama2.c vs Hugging Face form: logits max|diff| / max|logit| %.3g\n", d);
    assert_true(d < TU_LOGIT_TOL);
    free(la);
    free(lb);
    pissa_model_free(ma);
    pissa_model_free(mb);
}

static void llama2c_file_and_hf_folder_give_the_same_logits(void **state) {
    (void)state;
    char hf[512];
    snprintf(hf, sizeof hf, "%s/llama_untied", REF);
    pissa__weights w;
    assert_ok(pissa__weights_load(hf, NULL, &w));
    char *dir = tu_tempdir("model_l2c");
    char *bin = tu_path(dir, "model.bin");
    write_llama2c_v0(&w, bin);
    batch bt = load_batch("llama_untied");
    compare_logits(hf, bin, 48, bt.ids, bt.B, bt.T);
    free_batch(&bt);
    pissa__weights_free(&w);
    tu_rmtree(dir);
    free(dir);
    free(bin);
}

static void stories260k_bin_and_its_hf_form_give_the_same_logits(void **state) {
    (void)state;
    if (!tu_file_exists(STORIES)) tu_skip_missing(STORIES);
    pissa__weights w;
    assert_ok(pissa__weights_load(STORIES, NULL, &w));
    char *dir = tu_tempdir("model_stories");
    assert_ok(pissa__weights_save_hf(&w, dir, PISSA_F32));
    pissa__weights_free(&w);
    int32_t ids[2 * 64];
    for (int i = 0; i < 2 * 64; i++) ids[i] = (int32_t)((i * 37 + 11) % 512);
    ids[0] = ids[64] = 1;
    compare_logits(STORIES, dir, 512, ids, 2, 64);
    tu_rmtree(dir);
    free(dir);
}

/* ---- pissa-eval ---- */

static double json_field(const char *text, const char *key) {
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    const cJSON *v = cJSON_GetObjectItem(root, key);
    assert_non_null(v);
    double x = v->valuedouble;
    cJSON_Delete(root);
    return x;
}

static void pissa_eval_reports_the_token_weighted_loss(void **state) {
    (void)state;
    /* rows of different lengths: the loss is the mean over all targets, not a mean of per-batch means */
    char *dir = tu_tempdir("model_eval");
    char *data = tu_path(dir, "rows.jsonl"), *out = tu_path(dir, "out.json");
    const char *rows = "{\"input_ids\": [1, 5, 9, 13, 2, 7, 30], \"labels\": [1, 5, -100, 13, 2, 7, 30]}\n"
                       "{\"input_ids\": [4, 8, 15]}\n"
                       "\n"
                       "{\"input_ids\": [16, 23, 42, 47, 0], \"labels\": [-100, -100, 42, 47, 0]}\n";
    tu_write_bytes(data, rows, strlen(rows));
    /* the expected value from the model API, row by row (no padding), weighted by the counts */
    pissa_model *m = load_fixture("llama_untied", 1);
    int32_t r0[] = {1, 5, 9, 13, 2, 7, 30}, l0[] = {1, 5, -100, 13, 2, 7, 30}, r1[] = {4, 8, 15};
    int32_t r2[] = {16, 23, 42, 47, 0}, l2[] = {-100, -100, 42, 47, 0};
    double s = 0, loss;
    int64_t n = 0, c;
    const int32_t *rid[3] = {r0, r1, r2}, *rlb[3] = {l0, r1, l2};
    const int rlen[3] = {7, 3, 5};
    for (int i = 0; i < 3; i++) {
        assert_ok(pissa_model_loss(m, rid[i], rlb[i], 1, rlen[i], &loss, &c));
        s += loss * (double)c;
        n += c;
    }
    pissa_model_free(m);
    assert_int_equal(n, 5 + 2 + 3);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --model %s/llama_untied --adapter %s/llama_untied/adapter --data %s --batch 2 --json "
             ">%s 2>/dev/null", PISSA_EVAL_EXE, REF, REF, data, out);
    assert_int_equal(tu_run(cmd, NULL), 0); /* stdout only: progress goes to stderr */
    char *text = tu_slurp(out, NULL);
    assert_int_equal(strchr(text, '\n') - text + 1, (long)strlen(text)); /* exactly one line */
    double got = json_field(text, "loss");
    printf("  pissa-eval loss %.7f vs weighted per-row %.7f\n", got, s / n);
    assert_true(fabs(got - s / n) < 1e-5);
    assert_true(fabs(json_field(text, "ppl") - exp(got)) < 1e-4 * exp(got));
    assert_int_equal((int64_t)json_field(text, "tokens"), n);
    free(text);
    /* errors: one line, non-zero status */
    snprintf(cmd, sizeof cmd, "%s --model %s/llama_untied --data %s/missing.jsonl --json 2>%s", PISSA_EVAL_EXE, REF,
             dir, out);
    assert_int_not_equal(tu_run(cmd, NULL), 0);
    text = tu_slurp(out, NULL);
    assert_non_null(strstr(text, "missing.jsonl"));
    assert_int_equal(strchr(text, '\n') - text + 1, (long)strlen(text));
    free(text);
    snprintf(cmd, sizeof cmd, "%s --help", PISSA_EVAL_EXE);
    assert_int_equal(tu_run(cmd, out), 0);
    tu_rmtree(dir);
    free(dir);
    free(data);
    free(out);
}

/* A checkpoint with a NaN (or Inf) weight: the model's logits are not finite, so pissa-eval and the trainer's
 * evaluation end with a named error instead of reporting "nan" (which is not JSON either). */
static void non_finite_weights_give_a_named_error_not_a_nan_loss(void **state) {
    (void)state;
    char *dir = tu_tempdir("model_nan"), *data = tu_path(dir, "rows.jsonl"), *err = tu_path(dir, "err.txt");
    char *out = tu_path(dir, "out.txt");
    const char *rows = "{\"input_ids\": [1, 5, 9, 13, 2, 7, 30]}\n{\"input_ids\": [4, 8, 15]}\n";
    tu_write_bytes(data, rows, strlen(rows));
    const float bad[2] = {NAN, INFINITY};
    for (int k = 0; k < 2; k++) {
        pissa_model *m = load_fixture("llama_untied", 0);
        assert_ok(pissa_model_set_full_finetune(m));
        pissa_param_view v;
        for (size_t i = 0; i < pissa_model_param_count(m); i++) {
            assert_ok(pissa_model_param(m, i, &v));
            if (!strcmp(v.name, "model.layers.1.mlp.down_proj.weight")) v.data[3] = bad[k];
        }
        char *ck = tu_path(dir, k ? "inf" : "nan");
        assert_ok(pissa_model_save(m, ck, PISSA_F32));
        pissa_dataset *d;
        pissa_trainer *t;
        assert_ok(pissa_dataset_load_jsonl(data, 64, &d));
        pissa_train_opts o = pissa_train_default_opts();
        o.total_steps = 1;
        assert_ok(pissa_trainer_create(m, d, &o, &t));
        double loss;
        assert_int_equal(pissa_trainer_evaluate(t, d, &loss, NULL), PISSA_ERR_NUMERIC);
        assert_non_null(strstr(pissa_last_error(), "non-finite"));
        pissa_trainer_free(t);
        pissa_dataset_free(d);
        pissa_model_free(m);
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "%s --model %s --data %s --json -q >%s 2>%s", PISSA_EVAL_EXE, ck, data, out, err);
        assert_int_equal(tu_run(cmd, NULL), 1);
        char *o_text = tu_slurp(out, NULL), *e_text = tu_slurp(err, NULL);
        assert_string_equal(o_text, ""); /* nothing that a script would parse as a result */
        if (!strstr(e_text, "rows.jsonl") || !strstr(e_text, "non-finite"))
            fail_msg("pissa-eval on %s weights: %s", k ? "Inf" : "NaN", e_text);
        free(o_text), free(e_text), free(ck);
    }
    /* A finite loss whose perplexity overflows a double (lm_head scaled by 1e6: a loss of about 2e6) is reported,
     * with "ppl": null in --json, which stays JSON. */
    pissa_model *m = load_fixture("llama_untied", 0);
    assert_ok(pissa_model_set_full_finetune(m));
    pissa_param_view v;
    for (size_t i = 0; i < pissa_model_param_count(m); i++) {
        assert_ok(pissa_model_param(m, i, &v));
        if (!strcmp(v.name, "lm_head.weight"))
            for (int64_t k = 0; k < v.rows * v.cols; k++) v.data[k] *= 1e6f;
    }
    char *ck = tu_path(dir, "huge"), cmd[2048];
    assert_ok(pissa_model_save(m, ck, PISSA_F32));
    pissa_model_free(m);
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --json -q >%s 2>%s", PISSA_EVAL_EXE, ck, data, out, err);
    assert_int_equal(tu_run(cmd, NULL), 0);
    char *o_text = tu_slurp(out, NULL);
    cJSON *j = cJSON_Parse(o_text);
    if (!j) fail_msg("pissa-eval --json printed no JSON: %s", o_text);
    double loss = cJSON_GetObjectItem(j, "loss")->valuedouble;
    assert_true(loss > 710 && isfinite(loss)); /* exp(710) overflows */
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "ppl")));
    cJSON_Delete(j);
    free(o_text), free(ck);
    tu_rmtree(dir);
    free(dir), free(data), free(err), free(out);
}

/* pissa-eval end to end on a real model and text (tokenizer, windows, model, token-weighted loss) against the float64
 * transliteration of run.c and its tokenizer (tests/reference/llama2c_eval_ref.py, stories260K_eval.json). */
static void pissa_eval_on_stories260k_and_tinyshakespeare(void **state) {
    (void)state;
    const char *need[2] = {STORIES, SHAKESPEARE};
    tu_need_files(need, 2);
    char *ref = tu_slurp(REF "/stories260K_eval.json", NULL);
    assert_non_null(ref);
    double want_loss = json_field(ref, "loss"), want_tokens = json_field(ref, "tokens");
    int bytes = (int)json_field(ref, "bytes"), seq = (int)json_field(ref, "seq");
    free(ref);
    char *dir = tu_tempdir("model_eval_stories");
    char *data = tu_path(dir, "shakespeare.txt"), *out = tu_path(dir, "out.json");
    size_t len;
    char *text = tu_slurp(SHAKESPEARE, &len);
    assert_true(len >= (size_t)bytes);
    tu_write_bytes(data, text, (size_t)bytes);
    free(text);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --model %s --tokenizer %s --data %s --seq %d --batch 4 --json >%s 2>/dev/null",
             PISSA_EVAL_EXE, STORIES, TOK512, data, seq, out);
    assert_int_equal(tu_run(cmd, NULL), 0);
    text = tu_slurp(out, NULL);
    double loss = json_field(text, "loss"), tokens = json_field(text, "tokens");
    printf("  stories260K on tinyshakespeare[:%d]: loss %.7f vs reference %.7f (relative diff %.2g), %g tokens\n",
           bytes, loss, want_loss, fabs(loss - want_loss) / want_loss, tokens);
    assert_true(tokens == want_tokens);
    assert_true(fabs(loss - want_loss) <= 1e-6 * want_loss);
    free(text);
    tu_rmtree(dir);
    free(dir);
    free(data);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(untied_gqa_model_matches_pytorch),
        cmocka_unit_test(tied_model_with_wide_heads_and_rslora_matches_pytorch),
        cmocka_unit_test(reference_comparisons_notice_a_tripled_rms_norm_eps),
        cmocka_unit_test(every_family_matches_pytorch_logits_loss_and_adapter_gradients),
        cmocka_unit_test(every_family_gives_pytorch_gradients_of_every_weight),
        cmocka_unit_test(packed_rows_give_the_loss_and_gradients_of_separate_rows),
        cmocka_unit_test(adapter_gradients_match_finite_differences),
        cmocka_unit_test(frozen_weights_get_no_gradient_buffers),
        cmocka_unit_test(steps_of_one_shape_allocate_nothing_and_accumulate),
        cmocka_unit_test(bad_token_ids_and_long_sequences_are_refused),
        cmocka_unit_test(unsupported_configs_are_refused_with_their_field),
        cmocka_unit_test(unsupported_adapter_features_are_refused),
        cmocka_unit_test(initialised_adapters_preserve_the_model_and_round_trip),
        cmocka_unit_test(full_finetune_gradients_of_every_weight_match_pytorch_untied),
        cmocka_unit_test(full_finetune_gradients_match_pytorch_tied_embedding_gets_both_uses),
        cmocka_unit_test(full_finetune_and_adapters_exclude_each_other),
        cmocka_unit_test(full_model_save_round_trips_exactly),
        cmocka_unit_test(llama2c_file_and_hf_folder_give_the_same_logits),
        cmocka_unit_test(stories260k_bin_and_its_hf_form_give_the_same_logits),
        cmocka_unit_test(pissa_eval_reports_the_token_weighted_loss),
        cmocka_unit_test(non_finite_weights_give_a_named_error_not_a_nan_loss),
        cmocka_unit_test(pissa_eval_on_stories260k_and_tinyshakespeare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
