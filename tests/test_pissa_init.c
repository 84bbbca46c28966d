/* pissa-init end to end: a checkpoint written by pissa-synth is initialised, and its outputs are read back
 * and checked against the base: names, dtypes, W = W_res + s·B·A, the exact rank-r truncation (LAPACK in
 * double, independent of libpissa's SVD), the PEFT adapter files, and the one-line errors on bad input. */
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peft_internal.h"
#include "testutil.h"

typedef struct fixture {
    char *dir, *base, *sharded;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir("init");
    f->base = tu_path(f->dir, "base");
    f->sharded = tu_path(f->dir, "sharded");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --out %s --layers 2 --dim 64 --hidden 96 --heads 4 --kv-heads 2 --vocab 128 --untied",
             PISSA_SYNTH_EXE, f->base);
    if (tu_run(cmd, NULL) != 0) return -1;
    snprintf(cmd, sizeof cmd, "%s --out %s --layers 3 --dim 32 --hidden 48 --heads 4 --kv-heads 4 --vocab 64 "
             "--dtype bf16 --shards 3", PISSA_SYNTH_EXE, f->sharded);
    if (tu_run(cmd, NULL) != 0) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->base);
    free(f->sharded);
    free(f);
    return 0;
}

/* Runs pissa-init with ARGS; returns the exit status, output in DIR/log.txt (read with tu_slurp). */
static int run_init(const fixture *f, const char *args, char **log) {
    char cmd[4096], *logpath = tu_path(f->dir, "log.txt");
    snprintf(cmd, sizeof cmd, "%s %s", PISSA_INIT_EXE, args);
    int rc = tu_run(cmd, logpath);
    *log = tu_slurp(logpath, NULL);
    free(logpath);
    return rc;
}

/* ‖W − U_r·S_r·V_rᵀ‖ reference: the best rank-r approximation from LAPACK dgesvd in double. */
static void truncation_double(const float *W, int m, int n, int r, double *out) {
    int k = m < n ? m : n;
    double *a = malloc(sizeof(double) * (size_t)(m * n)), *u = malloc(sizeof(double) * (size_t)(m * k)),
           *vt = malloc(sizeof(double) * (size_t)(k * n)), *s = malloc(sizeof(double) * (size_t)k),
           *sup = malloc(sizeof(double) * (size_t)k);
    for (int i = 0; i < m * n; i++) a[i] = W[i];
    assert_int_equal(LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'S', 'S', m, n, a, n, s, u, k, vt, n, sup), 0);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0;
            for (int t = 0; t < r; t++) acc += u[i * k + t] * s[t] * vt[t * n + j];
            out[i * n + j] = acc;
        }
    free(a), free(u), free(vt), free(s), free(sup);
}

static void exact_pissa_outputs_reconstruct_base_and_match_truncation(void **state) {
    fixture *f = *state;
    char args[2048], *log;
    char *out = tu_path(f->dir, "out_exact");
    snprintf(args, sizeof args, "--model %s --out %s --rank 8 --alpha 16 --target all-linear --init pissa", f->base, out);
    int rc = run_init(f, args, &log);
    if (rc != 0) fail_msg("pissa-init failed (%d):\n%s", rc, log);
    assert_non_null(strstr(log, "layer 1/2"));
    assert_non_null(strstr(log, "layer 2/2"));
    assert_non_null(strstr(log, "relative error"));
    free(log);

    pissa_checkpoint *base, *res;
    assert_ok(pissa_checkpoint_open(f->base, &base));
    assert_ok(pissa_checkpoint_open(out, &res));
    assert_int_equal(pissa_checkpoint_count(base), pissa_checkpoint_count(res));
    char *adir = tu_path(out, "pissa_init");
    pissa_peft_adapter *ad;
    assert_ok(pissa_peft_adapter_load(adir, &ad));
    const pissa_peft_config *pc = pissa_peft_adapter_config(ad);
    assert_int_equal(pc->r, 8);
    assert_true(pc->lora_alpha == 16.0);
    assert_string_equal(pc->init_lora_weights, "true");
    assert_int_equal(pissa_peft_adapter_count(ad), 2 * 7);
    double s = 16.0 / 8.0;
    size_t checked = 0;
    for (size_t i = 0; i < pissa_checkpoint_count(base); i++) {
        const char *name = pissa_checkpoint_name(base, i);
        assert_string_equal(name, pissa_checkpoint_name(res, i));
        pissa_st_info bi, ri;
        assert_ok(pissa_checkpoint_find(base, name, &bi));
        assert_ok(pissa_checkpoint_find(res, name, &ri));
        assert_int_equal(bi.dtype, ri.dtype);
        assert_int_equal(bi.nbytes, ri.nbytes);
        char module[256];
        size_t len = strlen(name);
        snprintf(module, sizeof module, "%.*s", (int)(len - strlen(".weight")), name);
        size_t idx;
        if (pissa_peft_adapter_find(ad, module, &idx) != PISSA_OK) {
            assert_memory_equal(bi.data, ri.data, bi.nbytes); /* untargeted: byte for byte */
            continue;
        }
        const char *mod;
        const pissa_tensor *A, *B;
        assert_ok(pissa_peft_adapter_module(ad, idx, &mod, &A, &B));
        int m = (int)bi.shape[0], n = (int)bi.shape[1];
        float *W = malloc(sizeof(float) * (size_t)(m * n)), *Wr = malloc(sizeof(float) * (size_t)(m * n));
        double *trunc = malloc(sizeof(double) * (size_t)(m * n));
        assert_ok(pissa_checkpoint_read_f32(base, name, W, m * n));
        assert_ok(pissa_checkpoint_read_f32(res, name, Wr, m * n));
        truncation_double(W, m, n, 8, trunc);
        double e_rec = 0, e_trunc = 0, w2 = 0, t2 = 0;
        for (int i2 = 0; i2 < m; i2++)
            for (int j = 0; j < n; j++) {
                double ba = 0;
                for (int t = 0; t < 8; t++) ba += (double)pissa_tensor_data(B)[i2 * 8 + t] * pissa_tensor_data(A)[t * n + j];
                double w = W[i2 * n + j];
                e_rec += pow(w - Wr[i2 * n + j] - s * ba, 2);
                e_trunc += pow(s * ba - trunc[i2 * n + j], 2);
                w2 += w * w;
                t2 += trunc[i2 * n + j] * trunc[i2 * n + j];
            }
        assert_true(sqrt(e_rec / w2) < 1e-6);     /* W_res + s·B·A = W to float32 rounding */
        assert_true(sqrt(e_trunc / t2) < 1e-4);   /* s·B·A = best rank-r approximation */
        free(W), free(Wr), free(trunc);
        checked++;
    }
    assert_int_equal(checked, 14);
    /* config.json is copied verbatim */
    char *c1 = tu_path(f->base, "config.json"), *c2 = tu_path(out, "config.json");
    char *t1 = tu_slurp(c1, NULL), *t2 = tu_slurp(c2, NULL);
    assert_string_equal(t1, t2);
    free(c1), free(c2), free(t1), free(t2);
    pissa_peft_adapter_free(ad);
    pissa_checkpoint_free(base);
    pissa_checkpoint_free(res);
    free(adir);
    free(out);
}

static void randomized_init_of_sharded_bf16_base_with_f32_output(void **state) {
    fixture *f = *state;
    char args[2048], *log;
    char *out = tu_path(f->dir, "out_niter");
    snprintf(args, sizeof args, "--model %s --out %s --rank 4 --target q_proj,down_proj --init pissa_niter_2 "
             "--dtype f32 --seed 7", f->sharded, out);
    int rc = run_init(f, args, &log);
    if (rc != 0) fail_msg("pissa-init failed (%d):\n%s", rc, log);
    assert_non_null(strstr(log, "energy captured"));
    assert_non_null(strstr(log, "exact SVD on 6 of 6"));
    free(log);
    pissa_checkpoint *res;
    assert_ok(pissa_checkpoint_open(out, &res));
    pissa_st_info info;
    assert_ok(pissa_checkpoint_find(res, "model.layers.2.mlp.down_proj.weight", &info));
    assert_int_equal(info.dtype, PISSA_F32); /* --dtype overrides the base's BF16 */
    assert_ok(pissa_checkpoint_find(res, "model.norm.weight", &info));
    assert_int_equal(info.dtype, PISSA_F32);
    assert_string_equal(pissa_checkpoint_config(res)->torch_dtype, "float32");
    pissa_checkpoint_free(res);
    char *adir = tu_path(out, "pissa_init"), *st = tu_path(adir, "adapter_model.safetensors");
    pissa_st_file *sf;
    assert_ok(pissa_st_open(st, &sf));
    assert_int_equal(pissa_st_count(sf), 3 * 2 * 2);
    assert_ok(pissa_st_find(sf, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", &info));
    assert_int_equal(info.shape[0], 4);
    assert_int_equal(info.shape[1], 32);
    assert_ok(pissa_st_find(sf, "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", &info));
    assert_int_equal(info.shape[0], 32);
    assert_int_equal(info.shape[1], 4);
    assert_string_equal(pissa_st_metadata(sf, "format"), "pt");
    pissa_st_close(sf);
    free(adir), free(st), free(out);
}

static void lora_init_leaves_base_weights_untouched(void **state) {
    fixture *f = *state;
    char args[2048], *log;
    char *out = tu_path(f->dir, "out_lora");
    snprintf(args, sizeof args, "--model %s --out %s --rank 4 --init lora --dtype bf16 -q", f->base, out);
    int rc = run_init(f, args, &log);
    if (rc != 0) fail_msg("pissa-init failed (%d):\n%s", rc, log);
    free(log);
    pissa_checkpoint *base, *res;
    assert_ok(pissa_checkpoint_open(f->base, &base));
    assert_ok(pissa_checkpoint_open(out, &res));
    assert_string_equal(pissa_checkpoint_config(res)->torch_dtype, "bfloat16");
    const char *name = "model.layers.1.self_attn.v_proj.weight";
    pissa_st_info info;
    assert_ok(pissa_checkpoint_find(res, name, &info));
    assert_int_equal(info.dtype, PISSA_BF16);
    int64_t n = info.numel;
    float *w = malloc(sizeof(float) * (size_t)n), *wr = malloc(sizeof(float) * (size_t)n);
    assert_ok(pissa_checkpoint_read_f32(base, name, w, n));
    assert_ok(pissa_checkpoint_read_f32(res, name, wr, n));
    for (int64_t i = 0; i < n; i++) assert_true(wr[i] == pissa_bf16_to_f32(pissa_f32_to_bf16(w[i]))); /* B = 0 */
    free(w), free(wr);
    pissa_checkpoint_free(base);
    pissa_checkpoint_free(res);
    free(out);
}

/* Each bad invocation: one line on stderr naming the problem, a non-zero exit, nothing written. */
static void bad_input_gets_one_clear_line(void **state) {
    fixture *f = *state;
    char *out = tu_path(f->dir, "out_bad"), *gpt2 = tu_path(f->dir, "gpt2");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp -r %s %s && sed -i 's/\"llama\"/\"gpt2\"/' %s/config.json", f->base, gpt2, gpt2);
    assert_int_equal(tu_run(cmd, NULL), 0);
    struct {
        const char *args_fmt;
        const char *expect;
    } cases[] = {
        {"--model %s --out %s --rank 4 --frobnicate", "unknown option '--frobnicate'"},
        {"--model %s/missing --out %s --rank 4", "missing"},
        {"--model %s --out %s --rank 65", "larger than min(out, in)"},
        {"--model %s --out %s --rank 4 --target q_proj,qq_proj", "target module 'qq_proj' is not one of"},
        {"--model %s --out %s --rank 4 --init pissa_niter_x", "pissa_niter_x"},
        {"--model %s --out %s --rank 4 --dtype int8", "--dtype"},
        {"--model %s --out %s --rank zero", "not an integer"},
        {"--model %s --out %s", "--rank"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[2048], *log;
        snprintf(args, sizeof args, cases[i].args_fmt, f->base, out);
        int rc = run_init(f, args, &log);
        if (rc == 0 || !strstr(log, cases[i].expect))
            fail_msg("case %zu (%s): exit %d, expected '%s' in:\n%s", i, args, rc, cases[i].expect, log);
        assert_non_null(strstr(log, "pissa-init: "));
        free(log);
    }
    char args[2048], *log;
    snprintf(args, sizeof args, "--model %s --out %s --rank 4", gpt2, out);
    assert_int_not_equal(run_init(f, args, &log), 0);
    assert_non_null(strstr(log, "gpt2"));
    free(log);
    snprintf(args, sizeof args, "--model %s --out %s --rank 4", f->base, f->base);
    assert_int_not_equal(run_init(f, args, &log), 0);
    assert_non_null(strstr(log, "would be overwritten"));
    free(log);
    char *st = tu_path(out, "model.safetensors");
    assert_null(fopen(st, "rb"));
    free(st), free(out), free(gpt2);
}

static void help_describes_every_option(void **state) {
    fixture *f = *state;
    char *log;
    assert_int_equal(run_init(f, "--help", &log), 0);
    const char *opts[] = {"--model", "--out", "--rank", "--alpha", "--target", "--init", "--oversample", "--seed",
                          "--rslora", "--dtype"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) assert_non_null(strstr(log, opts[i]));
    free(log);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_pissa_outputs_reconstruct_base_and_match_truncation),
        cmocka_unit_test(randomized_init_of_sharded_bf16_base_with_f32_output),
        cmocka_unit_test(lora_init_leaves_base_weights_untouched),
        cmocka_unit_test(bad_input_gets_one_clear_line),
        cmocka_unit_test(help_describes_every_option),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
