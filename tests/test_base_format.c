/* The frozen base in each format (pissa_model_opts.base_dtype): a model whose projections are BF16, F16, NF4 or INT8
 * gives the logits, loss and adapter gradients of a float32 model holding the same (dequantized) values; PiSSA on an
 * NF4/INT8 base is QPiSSA (pissa_qpissa_init, checked against the official recipe in test_qpissa.c); the generator
 * agrees with the model at every position; a BF16 checkpoint is used from the mapping, not copied; pissa_model_save
 * writes what no residual replaced from the checkpoint, never from its quantized copy. Checkpoints are written by
 * pissa-synth with D = 320 > 256, so the tiled products sum over more than one slab (src/quant.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "testutil.h"

#define B_ 2
#define T_ 12

static char *dir, *ck_llama, *ck_qwen3;

static int setup(void **state) {
    (void)state;
    dir = tu_tempdir("base_format");
    ck_llama = tu_path(dir, "llama");
    ck_qwen3 = tu_path(dir, "qwen3");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --out %s --family llama --dim 320 --hidden 704 --layers 2 --heads 5 --kv-heads 1 "
             "--vocab 300 --untied --mlp-bias --dtype bf16", PISSA_SYNTH_EXE, ck_llama);
    if (tu_run(cmd, NULL) != 0) return -1;
    snprintf(cmd, sizeof cmd, "%s --out %s --family qwen3 --dim 320 --hidden 576 --layers 2 --heads 4 --kv-heads 2 "
             "--head-dim 96 --vocab 300 --dtype bf16", PISSA_SYNTH_EXE, ck_qwen3);
    return tu_run(cmd, NULL) != 0 ? -1 : 0;
}

static int teardown(void **state) {
    (void)state;
    tu_rmtree(dir);
    free(dir), free(ck_llama), free(ck_qwen3);
    return 0;
}

static pissa_model *load(const char *path, int base) {
    pissa_model_opts o = pissa_model_default_opts();
    o.base_dtype = base;
    pissa_model *m;
    assert_ok(pissa_model_load_with_opts(path, &o, &m));
    return m;
}

/* The float32 twin of a model loaded with BASE: the same weights, every matrix dequantized to a float32 tensor. */
static pissa_model *float32_twin(const char *path, int base) {
    pissa__weights w;
    pissa__load_opts o = {.base = base};
    assert_ok(pissa__weights_load(path, &o, &w));
    for (size_t i = 0; i < w.n; i++) assert_ok(pissa__weights_to_f32(&w, i));
    pissa_model *m;
    assert_ok(pissa__model_from_weights(&w, path, &m));
    return m;
}

static void batch(int32_t *ids, int32_t *labels, int V) {
    for (int i = 0; i < B_ * T_; i++) ids[i] = labels[i] = (int32_t)((i * 37 + 11) % V);
}

/* LoRA on every projection with a random B (a fresh LoRA's B = 0 would leave A without gradient), the same in both. */
static void attach(pissa_model *m, pissa_init_kind kind, int qiter) {
    pissa_adapter_opts ao = pissa_adapter_default_opts();
    ao.targets = PISSA_PROJ_ALL;
    ao.init.kind = kind;
    ao.init.rank = 4;
    ao.init.alpha = 8;
    ao.init.niter = 2;
    ao.init.seed = 5;
    ao.qiter = qiter;
    assert_ok(pissa_model_add_adapters(m, &ao));
    if (kind != PISSA_INIT_LORA) return;
    for (size_t i = 0; i < pissa_model_adapter_count(m); i++) {
        pissa_adapter_view v;
        assert_ok(pissa_model_adapter(m, i, &v));
        tu_gaussian(v.B, (size_t)(v.out * v.r), 100 + i);
        for (int64_t k = 0; k < v.out * v.r; k++) v.B[k] *= 0.05f;
    }
}

/* max |x − y| / max |y| */
static double rel(const float *x, const float *y, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)x[i] - y[i])), m = fmax(m, fabs((double)y[i]));
    return m > 0 ? d / m : d;
}

/* Logits, loss and every adapter gradient of MODEL against TWIN. The products differ only in the order of float32
 * summation over the reduction (slabs of 256 against one sgemm's blocking): measured ≤ 1.5e-6 of the logits' scale,
 * ≤ 1e-5 of each gradient's (two layers of backward through the frozen products). */
static void compare(pissa_model *model, pissa_model *twin, const char *what) {
    const pissa_llama_config *c = pissa_model_config(model);
    int V = (int)c->vocab_size;
    int32_t ids[B_ * T_], labels[B_ * T_];
    batch(ids, labels, V);
    size_t nl = (size_t)B_ * T_ * (size_t)V;
    float *la = malloc(sizeof(float) * nl), *lb = malloc(sizeof(float) * nl);
    assert_ok(pissa_model_logits(model, ids, B_, T_, la));
    assert_ok(pissa_model_logits(twin, ids, B_, T_, lb));
    double d_logits = rel(la, lb, nl), loss_a, loss_b, d_grad = 0;
    pissa_model_zero_grad(model);
    pissa_model_zero_grad(twin);
    assert_ok(pissa_model_forward_backward(model, ids, labels, B_, T_, 1.0f, &loss_a, NULL));
    assert_ok(pissa_model_forward_backward(twin, ids, labels, B_, T_, 1.0f, &loss_b, NULL));
    for (size_t i = 0; i < pissa_model_param_count(model); i++) {
        pissa_param_view a, b;
        assert_ok(pissa_model_param(model, i, &a));
        assert_ok(pissa_model_param(twin, i, &b));
        assert_string_equal(a.name, b.name);
        assert_memory_equal(a.data, b.data, sizeof(float) * (size_t)(a.rows * a.cols));
        d_grad = fmax(d_grad, rel(a.grad, b.grad, (size_t)(a.rows * a.cols)));
    }
    print_message("%-18s logits %.1e  loss %.1e  gradients %.1e\n", what, d_logits, fabs(loss_a - loss_b) / loss_b,
                  d_grad);
    assert_true(d_logits <= 1e-5);
    assert_true(fabs(loss_a - loss_b) <= 1e-6 * loss_b);
    assert_true(d_grad <= 2e-5);
    free(la), free(lb);
}

static void every_format_equals_float32_on_the_same_values(void **state) {
    (void)state;
    const char *cks[] = {ck_llama, ck_qwen3};
    for (int k = 0; k < 2; k++)
        for (int base = -1; base < PISSA_QTYPE_COUNT; base++) {
            pissa_model *m = load(cks[k], base), *twin = float32_twin(cks[k], base);
            attach(m, PISSA_INIT_LORA, 1);
            attach(twin, PISSA_INIT_LORA, 1);
            char what[64];
            snprintf(what, sizeof what, "%s %s", k ? "qwen3" : "llama",
                     base < 0 ? "as stored" : pissa_qtype_name((pissa_qtype)base));
            compare(m, twin, what);
            pissa_model_free(twin);
            pissa_model_free(m);
        }
}

/* The formats are really used: NF4 and INT8 change the logits by far more than the summation order does. */
static void quantized_bases_change_the_logits(void **state) {
    (void)state;
    int32_t ids[B_ * T_], labels[B_ * T_];
    batch(ids, labels, 300);
    size_t nl = (size_t)B_ * T_ * 300;
    float *ref = malloc(sizeof(float) * nl), *got = malloc(sizeof(float) * nl);
    pissa_model *m = load(ck_llama, -1);
    assert_ok(pissa_model_logits(m, ids, B_, T_, ref));
    pissa_model_free(m);
    for (int base = PISSA_QTYPE_NF4; base <= PISSA_QTYPE_INT8; base++) {
        m = load(ck_llama, base);
        assert_ok(pissa_model_logits(m, ids, B_, T_, got));
        double d = rel(got, ref, nl);
        print_message("%s against bf16: logits differ by %.2e\n", pissa_qtype_name((pissa_qtype)base), d);
        assert_true(d > 1e-3);
        pissa_model_free(m);
    }
    free(ref), free(got);
}

/* PiSSA on a quantized base is QPiSSA: each module's A, B are pissa_qpissa_init's on W as stored (BF16 from the file,
 * not its quantization), and the residual the model computes with is deq(q(W − s·B·A)): the twin test above then
 * covers the products. pissa_model_save writes that residual (and nothing else changed). */
static void pissa_on_a_quantized_base_is_qpissa(void **state) {
    (void)state;
    for (int base = PISSA_QTYPE_NF4; base <= PISSA_QTYPE_INT8; base++) {
        const int qiter = 2;
        pissa_model *m = load(ck_qwen3, base);
        attach(m, PISSA_INIT_PISSA_NITER, qiter);
        pissa__weights src;
        assert_ok(pissa__weights_load(ck_qwen3, NULL, &src));
        char *saved = tu_path(dir, "saved");
        assert_ok(pissa_model_save(m, saved, PISSA_F32));
        pissa__weights out;
        assert_ok(pissa__weights_load(saved, NULL, &out));
        assert_int_equal(out.n, src.n);
        for (size_t i = 0; i < pissa_model_adapter_count(m); i++) {
            pissa_adapter_view v;
            assert_ok(pissa_model_adapter(m, i, &v));
            char name[128];
            snprintf(name, sizeof name, "%s.weight", v.module);
            size_t k = (size_t)pissa__weights_index(&src, name), n = (size_t)(v.out * v.in);
            float *W = malloc(sizeof(float) * n), *res = malloc(sizeof(float) * n);
            float *A = malloc(sizeof(float) * (size_t)(v.r * v.in)), *B = malloc(sizeof(float) * (size_t)(v.out * v.r));
            pissa__qweight q = pissa__weights_matrix(&src, k);
            pissa__qweight_dequantize(&q, 0, v.out, W);
            pissa_init_opts io = pissa_init_default_opts();
            io.kind = PISSA_INIT_PISSA_NITER, io.rank = 4, io.alpha = 8, io.niter = 2, io.seed = 5 + i;
            assert_ok(pissa_qpissa_init(W, v.out, v.in, &io, (pissa_qtype)base, qiter, PISSA_F32, A, B, res, NULL));
            assert_memory_equal(A, v.A, sizeof(float) * (size_t)(v.r * v.in));
            assert_memory_equal(B, v.B, sizeof(float) * (size_t)(v.out * v.r));
            assert_memory_equal(res, pissa_tensor_data(pissa__weights_get(&out, name)), sizeof(float) * n);
            free(W), free(res), free(A), free(B);
        }
        /* the rest as stored (BF16 values, here written as F32) */
        for (size_t i = 0; i < src.n; i++) {
            if (strstr(src.names[i], "_proj.weight")) continue;
            int64_t shape[2];
            int nd = pissa__weights_shape(&src, i, shape);
            size_t n = (size_t)(nd == 2 ? shape[0] * shape[1] : shape[0]);
            float *x = malloc(sizeof(float) * n);
            pissa__qweight q = pissa__weights_matrix(&src, i);
            pissa__qweight_dequantize(&q, 0, q.rows, x);
            assert_memory_equal(x, pissa_tensor_data(pissa__weights_get(&out, src.names[i])), sizeof(float) * n);
            free(x);
        }
        pissa__weights_free(&out);
        pissa__weights_free(&src);
        tu_rmtree(saved);
        free(saved);
        pissa_model_free(m);
    }
}

/* A PiSSA attach on a converted base frees each converted projection as its residual is made; when a later module
 * fails (rank 100 > 64 = min(out, in) of k_proj, after q_proj succeeded), the model is left exactly as loaded. */
static void failed_attach_leaves_a_quantized_base_as_loaded(void **state) {
    (void)state;
    int32_t ids[B_ * T_], labels[B_ * T_];
    batch(ids, labels, 300);
    size_t nl = (size_t)B_ * T_ * 300;
    float *want = malloc(sizeof(float) * nl), *got = malloc(sizeof(float) * nl);
    pissa_model *m = load(ck_llama, PISSA_QTYPE_NF4);
    assert_ok(pissa_model_logits(m, ids, B_, T_, want));
    pissa_adapter_opts ao = pissa_adapter_default_opts();
    ao.targets = PISSA_PROJ_Q | PISSA_PROJ_K;
    ao.init.kind = PISSA_INIT_PISSA;
    ao.init.rank = 100;
    assert_int_equal(pissa_model_add_adapters(m, &ao), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "k_proj"));
    assert_int_equal(pissa_model_adapter_count(m), 0);
    assert_ok(pissa_model_logits(m, ids, B_, T_, got));
    assert_memory_equal(got, want, sizeof(float) * nl);
    ao.init.rank = 8; /* and a good attach still works */
    assert_ok(pissa_model_add_adapters(m, &ao));
    pissa_model_free(m);
    free(want), free(got);
}

/* Without adapters, a model loaded in NF4 saves the checkpoint's own values, not its quantized copy. */
static void save_writes_unadapted_weights_as_stored(void **state) {
    (void)state;
    pissa_model *m = load(ck_llama, PISSA_QTYPE_NF4);
    char *saved = tu_path(dir, "saved_nf4");
    assert_ok(pissa_model_save(m, saved, -1)); /* -1: the checkpoint's torch_dtype, bfloat16 */
    char *a = tu_path(ck_llama, "model.safetensors"), *b = tu_path(saved, "model.safetensors");
    size_t na, nb;
    char *x = tu_slurp(a, &na), *y = tu_slurp(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(x, y, na); /* the same bytes: every tensor BF16 as stored, in the same order */
    free(x), free(y), free(a), free(b);
    tu_rmtree(saved);
    free(saved);
    pissa_model_free(m);
}

/* A BF16 checkpoint loaded as stored keeps every matrix in the file mapping: nothing is copied or converted. */
static void bf16_checkpoint_is_used_from_the_mapping(void **state) {
    (void)state;
    pissa__weights w;
    assert_ok(pissa__weights_load(ck_qwen3, NULL, &w));
    size_t matrices = 0;
    for (size_t i = 0; i < w.n; i++) {
        if (w.tensors[i]) { /* norms and biases: float32 */
            int64_t shape[2];
            assert_int_equal(pissa__weights_shape(&w, i, shape), 1);
            continue;
        }
        assert_int_equal(w.q[i].type, PISSA_QTYPE_BF16);
        assert_null(w.q[i].owned);
        assert_non_null(w.maps[i]);
        matrices++;
    }
    assert_int_equal(matrices, 1 + 2 * 7 + 0); /* the tied embedding and the projections of 2 layers */
    pissa__weights_free(&w);
}

/* The generator (one token at a time, the same kernels) agrees with the model at every position, for each format. */
static void generator_equals_model_for_every_format(void **state) {
    (void)state;
    int32_t ids[B_ * T_], labels[B_ * T_]; /* the first row is used */
    batch(ids, labels, 300);
    for (int base = -1; base < PISSA_QTYPE_COUNT; base++) {
        pissa_model_opts o = pissa_model_default_opts();
        o.base_dtype = base;
        pissa_model *m = load(ck_llama, base);
        pissa_generator *g;
        assert_ok(pissa_generator_create_with_opts(ck_llama, NULL, T_, &o, &g));
        float *want = malloc(sizeof(float) * T_ * 300), got[300];
        assert_ok(pissa_model_logits(m, ids, 1, T_, want));
        double worst = 0;
        for (int t = 0; t < T_; t++) {
            assert_ok(pissa_generator_forward(g, ids[t], t, got));
            worst = fmax(worst, rel(got, want + (size_t)t * 300, 300));
        }
        print_message("generator %-9s worst position %.1e\n", base < 0 ? "as stored" : pissa_qtype_name((pissa_qtype)base),
                      worst);
        assert_true(worst <= 1e-5);
        free(want);
        pissa_generator_free(g);
        pissa_model_free(m);
    }
}

/* Full fine-tuning trains float32 copies of the stored values, whatever the stored format. */
static void full_finetune_makes_float32_copies(void **state) {
    (void)state;
    pissa_model *m = load(ck_qwen3, -1);
    assert_ok(pissa_model_set_full_finetune(m));
    pissa__weights src;
    assert_ok(pissa__weights_load(ck_qwen3, NULL, &src));
    for (size_t i = 0; i < pissa_model_param_count(m); i++) {
        pissa_param_view v;
        assert_ok(pissa_model_param(m, i, &v));
        size_t k = (size_t)pissa__weights_index(&src, v.name), n = (size_t)(v.rows * v.cols);
        float *x = malloc(sizeof(float) * n);
        pissa__qweight q = pissa__weights_matrix(&src, k);
        pissa__qweight_dequantize(&q, 0, q.rows, x);
        assert_memory_equal(x, v.data, sizeof(float) * n);
        assert_non_null(v.grad);
        free(x);
    }
    pissa__weights_free(&src);
    pissa_model_free(m);
}

static void bad_base_format_is_refused(void **state) {
    (void)state;
    pissa_model_opts o = pissa_model_default_opts();
    o.base_dtype = 9;
    pissa_model *m;
    assert_int_equal(pissa_model_load_with_opts(ck_llama, &o, &m), PISSA_ERR_INVALID_ARG);
    assert_null(m);
    assert_non_null(strstr(pissa_last_error(), "base format 9"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_format_equals_float32_on_the_same_values),
        cmocka_unit_test(quantized_bases_change_the_logits),
        cmocka_unit_test(pissa_on_a_quantized_base_is_qpissa),
        cmocka_unit_test(failed_attach_leaves_a_quantized_base_as_loaded),
        cmocka_unit_test(save_writes_unadapted_weights_as_stored),
        cmocka_unit_test(bf16_checkpoint_is_used_from_the_mapping),
        cmocka_unit_test(generator_equals_model_for_every_format),
        cmocka_unit_test(full_finetune_makes_float32_copies),
        cmocka_unit_test(bad_base_format_is_refused),
    };
    return cmocka_run_group_tests_name("base_format", tests, setup, teardown);
}
