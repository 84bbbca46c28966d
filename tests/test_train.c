/* Training: AdamW and SGD against torch.optim with clip_grad_norm_ and transformers' schedules
 * (tests/reference/make_optim_reference.py), schedules against their formulas, gradient accumulation against one
 * large batch, determinism, exact resume, the NaN stop, loss going down on a synthesised model, full fine-tuning
 * (one AdamW update of every weight against torch, exact resume), and pissa-finetune end to end. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "testutil.h"

#define REF PISSA_TEST_REFERENCE_DIR

/* ---- optimizers against PyTorch ---- */

static void expect_word(FILE *f, const char *want) {
    char w[64];
    assert_int_equal(fscanf(f, "%63s", w), 1);
    assert_string_equal(w, want);
}

static void read_floats(FILE *f, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) assert_int_equal(fscanf(f, "%f", &x[i]), 1);
}

static void optimizers_match_torch_reference(void **state) {
    (void)state;
    FILE *f = fopen(PISSA_TEST_REFERENCE_DIR "/optim_reference.txt", "r");
    assert_non_null(f);
    char word[64], name[64], kind[16], sched[16];
    int cases = 0;
    while (fscanf(f, "%63s", word) == 1) {
        assert_string_equal(word, "case");
        assert_int_equal(fscanf(f, "%63s", name), 1);
        pissa_optim_opts o = pissa_optim_default_opts();
        int nesterov, warmup, total, n;
        double clip;
        expect_word(f, "opt");
        assert_int_equal(fscanf(f, "%15s %lf %lf %lf %lf %lf %lf %lf %d", kind, &o.lr, &o.weight_decay, &o.beta1,
                                &o.beta2, &o.eps, &o.momentum, &o.dampening, &nesterov), 9);
        o.nesterov = nesterov;
        assert_ok(pissa_optim_kind_parse(kind, &o.kind));
        expect_word(f, "sched");
        assert_int_equal(fscanf(f, "%15s %d %d %lf", sched, &warmup, &total, &clip), 4);
        pissa_schedule s;
        assert_ok(pissa_schedule_parse(sched, &s));
        expect_word(f, "sizes");
        assert_int_equal(fscanf(f, "%d", &n), 1);
        assert_int_equal(n, 2);
        size_t sizes[2], sum = 0;
        for (int i = 0; i < n; i++) assert_int_equal(fscanf(f, "%zu", &sizes[i]), 1), sum += sizes[i];
        float *p = malloc(sizeof(float) * sum), *g = malloc(sizeof(float) * sum), *want = malloc(sizeof(float) * sum);
        expect_word(f, "init");
        read_floats(f, p, sum);
        float *params[2] = {p, p + sizes[0]}, *grads[2] = {g, g + sizes[0]};
        pissa_optim *opt;
        assert_ok(pissa_optim_create(&o, 2, sizes, &opt));
        double worst = 0;
        for (int k = 1; k <= total; k++) {
            int kk;
            double lr_ref, norm_ref, norm;
            expect_word(f, "step");
            assert_int_equal(fscanf(f, "%d %lf %lf", &kk, &lr_ref, &norm_ref), 3);
            assert_int_equal(kk, k);
            expect_word(f, "grad");
            read_floats(f, g, sum);
            expect_word(f, "param");
            read_floats(f, want, sum);
            assert_ok(pissa_clip_grad_norm(grads, sizes, 2, clip, &norm));
            assert_true(fabs(norm - norm_ref) <= 1e-6 * norm_ref);
            double lr = o.lr * pissa_schedule_factor(s, k - 1, warmup, total);
            assert_true(fabs(lr - lr_ref) <= 1e-12);
            assert_ok(pissa_optim_step(opt, params, (const float *const *)grads, lr));
            double d = tu_max_abs_diff(p, want, sum);
            if (d > worst) worst = d;
        }
        assert_int_equal(pissa_optim_steps(opt), total);
        printf("  %-26s %d steps, max |param - torch| = %.2e\n", name, total, worst);
        assert_true(worst <= 1e-6);
        pissa_optim_free(opt);
        free(p);
        free(g);
        free(want);
        cases++;
    }
    fclose(f);
    assert_int_equal(cases, 7);
}

static void schedules_follow_their_formulas(void **state) {
    (void)state;
    const int64_t W = 4, N = 20;
    for (int s = 0; s < 3; s++)
        for (int64_t k = 0; k < W; k++) /* warm-up: k/W, so the very first update has lr 0 */
            assert_true(fabs(pissa_schedule_factor((pissa_schedule)s, k, W, N) - (double)k / W) < 1e-15);
    for (int64_t k = W; k <= N + 2; k++) {
        assert_true(pissa_schedule_factor(PISSA_SCHEDULE_CONSTANT, k, W, N) == 1.0);
        double lin = k >= N ? 0.0 : (double)(N - k) / (N - W);
        assert_true(fabs(pissa_schedule_factor(PISSA_SCHEDULE_LINEAR, k, W, N) - lin) < 1e-15);
        double x = (double)(k - W) / (N - W), cosv = 0.5 * (1 + cos(M_PI * x));
        if (k > N) cosv = 0.5 * (1 + cos(M_PI * x)); /* past the end the half cosine turns up again, as in HF */
        assert_true(fabs(pissa_schedule_factor(PISSA_SCHEDULE_COSINE, k, W, N) - fmax(0.0, cosv)) < 1e-15);
    }
    assert_true(fabs(pissa_schedule_factor(PISSA_SCHEDULE_COSINE, W + (N - W) / 2, W, N) - 0.5) < 1e-15);
    assert_true(pissa_schedule_factor(PISSA_SCHEDULE_LINEAR, 0, 0, N) == 1.0); /* no warm-up: full lr at once */
    pissa_schedule s;
    assert_int_equal(pissa_schedule_parse("exponential", &s), PISSA_ERR_INVALID_ARG);
}

static void clipping_scales_to_max_norm_and_rejects_nan(void **state) {
    (void)state;
    float a[2] = {3, 0}, b[1] = {4}; /* norm 5 */
    float *g[2] = {a, b};
    size_t sizes[2] = {2, 1};
    double norm;
    assert_ok(pissa_clip_grad_norm(g, sizes, 2, 10.0, &norm));
    assert_true(norm == 5.0 && a[0] == 3 && b[0] == 4); /* under the limit: untouched */
    assert_ok(pissa_clip_grad_norm(g, sizes, 2, 1.0, &norm));
    assert_true(fabs(sqrt(a[0] * a[0] + b[0] * b[0]) - 5.0 / (5.0 + 1e-6)) < 1e-6);
    b[0] = NAN;
    float before = a[0];
    assert_int_equal(pissa_clip_grad_norm(g, sizes, 2, 1.0, &norm), PISSA_ERR_NUMERIC);
    assert_true(a[0] == before);
    assert_non_null(strstr(pissa_last_error(), "nan"));
}

/* ---- the trainer on a synthesised model ---- */

typedef struct fixture {
    char *dir, *model, *data, *eval;
} fixture;

/* A repetitive language: row i counts up from 3 + i mod 5 by steps of 1 + i mod 2, modulo 60, plus 3. Every row
 * has 16 tokens, so every micro-batch has the same number of targets. */
static void write_jsonl(const char *path, int rows, int offset) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < rows; i++) {
        int start = (i + offset) % 5, stride = 1 + (i + offset) % 2;
        fprintf(f, "{\"input_ids\": [");
        for (int t = 0; t < 16; t++) fprintf(f, "%s%d", t ? ", " : "", 3 + (start + stride * t) % 60);
        fprintf(f, "]}\n");
    }
    fclose(f);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir("train");
    f->model = tu_path(f->dir, "base");
    f->data = tu_path(f->dir, "train.jsonl");
    f->eval = tu_path(f->dir, "eval.jsonl");
    char cmd[2048];
    /* --initializer-range 0.25, not transformers' 0.02: the tied embeddings stay frozen under adapters, and with
     * ‖e‖ = 0.02·√32 the logits could not exceed ≈ 0.6, so no adapter could fit any data */
    snprintf(cmd, sizeof cmd, "%s --out %s --layers 2 --dim 32 --hidden 48 --heads 4 --kv-heads 2 --vocab 64 --seq 64 "
             "--initializer-range 0.25", PISSA_SYNTH_EXE, f->model);
    if (tu_run(cmd, NULL) != 0) return -1;
    write_jsonl(f->data, 10, 0);
    write_jsonl(f->eval, 6, 3);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->model);
    free(f->data);
    free(f->eval);
    free(f);
    return 0;
}

typedef struct run {
    pissa_model *m;
    pissa_dataset *d;
    pissa_trainer *t;
} run;

static int base_dtype = -1; /* the frozen base's format for run_open (pissa_model_opts.base_dtype) */

/* INIT is an adapter method, or "full" for full fine-tuning (DROPOUT then unused). */
static void run_open(const fixture *f, const char *init, double dropout, const pissa_train_opts *o, run *r) {
    pissa_model_opts mo = pissa_model_default_opts();
    mo.base_dtype = base_dtype;
    assert_ok(pissa_model_load_with_opts(f->model, &mo, &r->m));
    if (!strcmp(init, "full")) {
        assert_ok(pissa_model_set_full_finetune(r->m));
    } else {
        pissa_adapter_opts ao = pissa_adapter_default_opts();
        assert_ok(pissa_init_parse(init, &ao.init));
        ao.init.rank = 4;
        ao.init.alpha = 8;
        ao.init.seed = 7;
        ao.targets = PISSA_PROJ_Q | PISSA_PROJ_V | PISSA_PROJ_DOWN;
        ao.dropout = dropout;
        assert_ok(pissa_model_add_adapters(r->m, &ao));
    }
    assert_ok(pissa_dataset_load_jsonl(f->data, 64, &r->d));
    assert_ok(pissa_trainer_create(r->m, r->d, o, &r->t));
}

static void run_close(run *r) {
    pissa_trainer_free(r->t);
    pissa_dataset_free(r->d);
    pissa_model_free(r->m);
}

/* Copies of every trainable tensor (each adapter's A then B), or of their gradients, concatenated. */
static float *param_snapshot(const pissa_model *m, int grads, size_t *n) {
    size_t total = 0, k = pissa_model_param_count(m);
    pissa_param_view v;
    for (size_t i = 0; i < k; i++) {
        assert_ok(pissa_model_param(m, i, &v));
        total += (size_t)(v.rows * v.cols);
    }
    float *x = malloc(sizeof(float) * total), *p = x;
    for (size_t i = 0; i < k; i++) {
        assert_ok(pissa_model_param(m, i, &v));
        memcpy(p, grads ? v.grad : v.data, sizeof(float) * (size_t)(v.rows * v.cols)), p += v.rows * v.cols;
    }
    *n = total;
    return x;
}

static pissa_train_opts base_opts(void) {
    pissa_train_opts o = pissa_train_default_opts();
    o.optim.lr = 1e-2;
    o.optim.weight_decay = 0.01;
    o.total_steps = 8;
    o.batch = 2;
    o.seed = 11;
    return o;
}

static void accumulating_k_microbatches_equals_one_batch_of_k_rows(void **state) {
    const fixture *f = *state;
    /* Compared update by update from equal parameters: the synthetic model's large random embeddings make its
     * logits large and its loss surface steep, so float32 rounding differences would grow over many updates. */
    pissa_train_opts o = base_opts();
    o.max_grad_norm = 0; /* the accumulated gradients stay in the model's buffers for comparison */
    o.accum = 3;
    run small, big;
    run_open(f, "pissa", 0.0, &o, &small);
    o.batch = 6;
    o.accum = 1;
    run_open(f, "pissa", 0.0, &o, &big);
    double worst_loss = 0, worst_grad = 0;
    for (int k = 0; k < 3; k++) {
        pissa_step_info a, b;
        assert_ok(pissa_trainer_step(small.t, &a));
        assert_ok(pissa_trainer_step(big.t, &b));
        assert_int_equal(a.tokens, 6 * 15);
        assert_int_equal(a.tokens, b.tokens);
        size_t n, n2;
        float *ga = param_snapshot(small.m, 1, &n), *gb = param_snapshot(big.m, 1, &n2);
        assert_int_equal(n, n2);
        double rel = tu_diff_norm(ga, gb, n) / tu_norm(gb, n);
        worst_grad = fmax(worst_grad, rel);
        worst_loss = fmax(worst_loss, fabs(a.loss - b.loss) / b.loss);
        /* The same parameters, so only float32 summation order differs, but these gradients cancel strongly:
         * measured 1.6e-7 with OpenBLAS's generic (Prescott) kernels and 6.3e-5 with its AVX-512 (SkylakeX) ones.
         * A wrong accumulation (a scale, a dropped or repeated micro-batch) is off by 1e-1 or more. */
        assert_true(rel <= 2e-4);
        assert_true(fabs(a.loss - b.loss) <= 1e-6 * b.loss);
        free(ga);
        free(gb);
        /* continue both from the same parameters */
        for (size_t i = 0; i < pissa_model_adapter_count(big.m); i++) {
            pissa_adapter_view x, y;
            assert_ok(pissa_model_adapter(small.m, i, &x));
            assert_ok(pissa_model_adapter(big.m, i, &y));
            memcpy(y.A, x.A, sizeof(float) * (size_t)(x.r * x.in));
            memcpy(y.B, x.B, sizeof(float) * (size_t)(x.out * x.r));
        }
    }
    printf("  3 x 2 rows vs 6 rows, 3 updates: max relative loss diff %.2e, gradient diff %.2e\n", worst_loss,
           worst_grad);
    run_close(&small);
    run_close(&big);
}

static void same_seed_gives_identical_losses(void **state) {
    const fixture *f = *state;
    pissa_train_opts o = base_opts();
    o.accum = 2;
    double losses[3][5];
    for (int r = 0; r < 3; r++) {
        o.seed = r < 2 ? 11 : 12;
        run x;
        run_open(f, "lora", 0.1, &o, &x);
        for (int k = 0; k < 5; k++) {
            pissa_step_info s;
            assert_ok(pissa_trainer_step(x.t, &s));
            losses[r][k] = s.loss;
        }
        run_close(&x);
    }
    assert_memory_equal(losses[0], losses[1], sizeof losses[0]);
    assert_memory_not_equal(losses[0], losses[2], sizeof losses[0]); /* the seed matters: order and dropout */
}

/* Runs STEPS updates, writing each loss into LOSSES. */
static void train_steps(run *r, int steps, double *losses) {
    for (int k = 0; k < steps; k++) {
        pissa_step_info s;
        assert_ok(pissa_trainer_step(r->t, &s));
        losses[k] = s.loss;
    }
}

/* TOTAL updates in one run, against SPLIT updates, a state saved to STATE_DIR (and one more update the state must
 * not follow), then a fresh run that loads the state and does the rest: the same losses and the same trainable
 * tensors, bit for bit. Returns the losses of the whole run in WHOLE (TOTAL <= 8). */
static void check_resume(const fixture *f, const char *init, double dropout, const pissa_train_opts *o, int total,
                         int split, const char *state_dir, double *whole) {
    double part[8];
    assert_true(total <= 8 && split < total);
    run a, b, c;
    run_open(f, init, dropout, o, &a);
    train_steps(&a, total, whole);
    size_t n, n2;
    float *x = param_snapshot(a.m, 0, &n);
    run_close(&a);
    run_open(f, init, dropout, o, &b);
    train_steps(&b, split, part);
    assert_ok(pissa_trainer_save_state(b.t, state_dir));
    train_steps(&b, 1, part + split); /* the state on disk must not follow the trainer */
    run_close(&b);
    run_open(f, init, dropout, o, &c);
    assert_ok(pissa_trainer_load_state(c.t, state_dir));
    assert_int_equal(pissa_trainer_steps(c.t), split);
    train_steps(&c, total - split, part + split);
    float *y = param_snapshot(c.m, 0, &n2);
    assert_memory_equal(whole, part, sizeof(double) * (size_t)total);
    assert_int_equal(n, n2);
    assert_memory_equal(x, y, sizeof(float) * n);
    run_close(&c);
    free(x);
    free(y);
}

/* The same with the frozen base in each format (PiSSA on NF4/INT8 is QPiSSA): the residual is recomputed the same way
 * on resume, and the runs differ from each other (the format is used). */
static void resumed_run_repeats_uninterrupted_run_with_every_base_format(void **state) {
    const fixture *f = *state;
    pissa_train_opts o = base_opts();
    double whole[PISSA_QTYPE_COUNT][8];
    char *state_dir = tu_path(f->dir, "state_base");
    for (int t = 0; t < PISSA_QTYPE_COUNT; t++) {
        base_dtype = t;
        check_resume(f, "pissa_niter_2", 0.1, &o, 5, 2, state_dir, whole[t]);
        printf("  base %s: losses %.6f .. %.6f; resumed after 2: identical\n", pissa_qtype_name((pissa_qtype)t),
               whole[t][0], whole[t][4]);
    }
    base_dtype = -1;
    for (int t = 1; t < PISSA_QTYPE_COUNT; t++) assert_memory_not_equal(whole[0], whole[t], sizeof whole[0]);
    free(state_dir);
}

static void resumed_run_repeats_uninterrupted_run_bit_for_bit(void **state) {
    const fixture *f = *state;
    pissa_train_opts o = base_opts(); /* 2 x 2 rows per update over 10 rows: updates cross epoch boundaries */
    o.accum = 2;
    o.schedule = PISSA_SCHEDULE_COSINE;
    o.warmup = 2;
    o.max_grad_norm = 0.5;
    for (int opt = 0; opt < 2; opt++) {
        o.optim.kind = opt ? PISSA_OPTIM_SGD : PISSA_OPTIM_ADAMW;
        o.optim.momentum = opt ? 0.9 : 0;
        o.optim.lr = opt ? 0.05 : 1e-2;
        double whole[8];
        char *state_dir = tu_path(f->dir, "state");
        check_resume(f, "pissa_niter_2", 0.1, &o, 8, 3, state_dir, whole);

        /* options that would change the run are refused, naming the option */
        pissa_train_opts o2 = o;
        o2.batch = 1;
        run d;
        run_open(f, "lora", 0.1, &o2, &d);
        assert_int_equal(pissa_trainer_load_state(d.t, state_dir), PISSA_ERR_INVALID_ARG);
        assert_non_null(strstr(pissa_last_error(), "batch"));
        run_close(&d);
        /* a count no integer type holds is refused, not cast (fuzz_state found the overflow: UBSan) */
        char *json = tu_path(state_dir, "state.json");
        tu_json_set_field(json, "step", "1e19");
        run_open(f, "pissa_niter_2", 0.1, &o, &d);
        assert_int_equal(pissa_trainer_load_state(d.t, state_dir), PISSA_ERR_FORMAT);
        assert_non_null(strstr(pissa_last_error(), "\"step\" is missing or not an integer in [0, 2^53]"));
        run_close(&d);
        free(json);
        tu_rmtree(state_dir);
        free(state_dir);
    }
}

static void nan_loss_stops_training_and_keeps_saved_adapter(void **state) {
    const fixture *f = *state;
    pissa_train_opts o = base_opts();
    run r;
    run_open(f, "pissa", 0.0, &o, &r);
    double losses[2];
    train_steps(&r, 2, losses);
    char *out = tu_path(f->dir, "nan_adapter"), *file = tu_path(out, "adapter_model.safetensors");
    assert_ok(pissa_trainer_save(r.t, out));
    size_t len0, len1;
    char *before = tu_slurp(file, &len0);
    pissa_adapter_view a;
    assert_ok(pissa_model_adapter(r.m, 0, &a));
    a.A[0] = NAN;
    size_t n;
    float *params = param_snapshot(r.m, 0, &n);
    pissa_step_info s;
    assert_int_equal(pissa_trainer_step(r.t, &s), PISSA_ERR_NUMERIC);
    assert_non_null(strstr(pissa_last_error(), "nan"));
    float *after = param_snapshot(r.m, 0, &n);
    assert_memory_equal(params + 1, after + 1, sizeof(float) * (n - 1)); /* no parameter was updated */
    assert_int_equal(pissa_trainer_step(r.t, &s), PISSA_ERR_NUMERIC);  /* and the run stays stopped */
    assert_int_equal(pissa_trainer_steps(r.t), 2);
    char *now = tu_slurp(file, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, now, len0);
    free(before);
    free(now);
    free(params);
    free(after);
    free(file);
    free(out);
    run_close(&r);
}

static void loss_decreases_on_repetitive_data(void **state) {
    const fixture *f = *state;
    pissa_train_opts o = base_opts();
    o.total_steps = 40;
    o.optim.lr = 2e-2;
    o.schedule = PISSA_SCHEDULE_LINEAR;
    o.warmup = 4;
    run r;
    run_open(f, "pissa", 0.0, &o, &r);
    pissa_dataset *ev;
    assert_ok(pissa_dataset_load_jsonl(f->eval, 64, &ev));
    double before, after;
    int64_t count;
    assert_ok(pissa_trainer_evaluate(r.t, ev, &before, &count));
    assert_int_equal(count, 6 * 15);
    double first = 0, last = 0;
    for (int k = 0; k < 40; k++) {
        pissa_step_info s;
        assert_ok(pissa_trainer_step(r.t, &s));
        if (k == 0) first = s.loss;
        last = s.loss;
    }
    assert_ok(pissa_trainer_evaluate(r.t, ev, &after, NULL));
    printf("  train loss %.3f -> %.3f; held-out loss %.3f -> %.3f\n", first, last, before, after);
    /* from about ln 64 + 1 (the fixture's large random weights) to about 3: a trainer that did not learn, or learnt
     * the training rows only, would not gain a nat on both */
    assert_true(last < first - 1.0);
    assert_true(after < before - 1.0);
    pissa_dataset_free(ev);
    run_close(&r);
}

/* ---- full fine-tuning ---- */

/* REF/FIXTURE/batch.json (input_ids and labels of B rows) as JSONL rows at PATH. */
static void write_fixture_jsonl(const char *fixture, const char *path) {
    char src[512];
    snprintf(src, sizeof src, "%s/%s/batch.json", REF, fixture);
    char *text = tu_slurp(src, NULL);
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text);
    const cJSON *ids = cJSON_GetObjectItem(root, "input_ids"), *labels = cJSON_GetObjectItem(root, "labels");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int b = 0; b < cJSON_GetArraySize(ids); b++) {
        char *i = cJSON_PrintUnformatted(cJSON_GetArrayItem(ids, b));
        char *l = cJSON_PrintUnformatted(cJSON_GetArrayItem(labels, b));
        fprintf(f, "{\"input_ids\": %s, \"labels\": %s}\n", i, l);
        free(i);
        free(l);
    }
    fclose(f);
    cJSON_Delete(root);
    free(text);
}

/* One trainer update of every weight (clipping, AdamW, weight decay on matrices only) against torch's
 * clip_grad_norm_ + AdamW with transformers' two parameter groups (tests/reference/make_full_reference.py). */
static void check_full_adamw_step(const fixture *fx, const char *fixture) {
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "%s/%s", REF, fixture);
    snprintf(path, sizeof path, "%s/full_expected.json", dir);
    char *text = tu_slurp(path, NULL);
    cJSON *ex = cJSON_Parse(text), *adamw = cJSON_GetObjectItem(ex, "adamw");
    pissa_train_opts o = pissa_train_default_opts();
    o.optim.lr = cJSON_GetObjectItem(adamw, "lr")->valuedouble;
    o.optim.weight_decay = cJSON_GetObjectItem(adamw, "weight_decay")->valuedouble;
    o.optim.eps = cJSON_GetObjectItem(adamw, "eps")->valuedouble;
    o.optim.beta1 = cJSON_GetArrayItem(cJSON_GetObjectItem(adamw, "betas"), 0)->valuedouble;
    o.optim.beta2 = cJSON_GetArrayItem(cJSON_GetObjectItem(adamw, "betas"), 1)->valuedouble;
    o.max_grad_norm = cJSON_GetObjectItem(adamw, "max_grad_norm")->valuedouble;
    o.total_steps = 1;
    o.batch = 2;
    o.shuffle = 0;
    char *rows = tu_path(fx->dir, "fixture_rows.jsonl");
    write_fixture_jsonl(fixture, rows);
    pissa_model *m;
    pissa_dataset *d;
    pissa_trainer *t;
    assert_ok(pissa_model_load(dir, &m));
    assert_ok(pissa_model_set_full_finetune(m));
    assert_ok(pissa_dataset_load_jsonl(rows, (int32_t)pissa_model_config(m)->vocab_size, &d));
    assert_ok(pissa_trainer_create(m, d, &o, &t));
    size_t n_all;
    float *before = param_snapshot(m, 0, &n_all);
    pissa_step_info s;
    assert_ok(pissa_trainer_step(t, &s));
    double want_loss = cJSON_GetObjectItem(ex, "loss")->valuedouble;
    double want_norm = cJSON_GetObjectItem(ex, "grad_norm")->valuedouble;
    assert_true(fabs(s.loss - want_loss) <= 1e-6 * want_loss);
    assert_true(fabs(s.grad_norm - want_norm) <= 1e-5 * want_norm);
    snprintf(path, sizeof path, "%s/full_step.safetensors", dir);
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    assert_int_equal(pissa_st_count(f), pissa_model_param_count(m));
    double worst = 0, moved = 0;
    for (size_t i = 0; i < pissa_model_param_count(m); i++) {
        pissa_param_view v;
        assert_ok(pissa_model_param(m, i, &v));
        size_t n = (size_t)(v.rows * v.cols);
        float *want = malloc(n * sizeof(float));
        assert_ok(pissa_st_read_f32(f, v.name, want, (int64_t)n));
        double dw = tu_max_abs_diff(v.data, want, n);
        /* an update moves a weight by up to lr; decaying a norm weight (≈ 1) would move it by lr·wd = 1e-3 */
        if (dw > 2e-6) fail_msg("%s: weight after one update max|diff| %.3g from torch", v.name, dw);
        worst = fmax(worst, dw);
        free(want);
    }
    /* and the update did move the weights */
    float *after = param_snapshot(m, 0, &n_all);
    moved = tu_max_abs_diff(after, before, n_all);
    free(after), free(before);
    printf("  %s: loss %.7f, |g| %.5f (torch %.5f); weights after one update max|diff| %.3g (largest move %.3g)\n",
           fixture, s.loss, s.grad_norm, want_norm, worst, moved);
    assert_true(moved > 5e-3);
    pissa_st_close(f);
    pissa_trainer_free(t);
    pissa_dataset_free(d);
    pissa_model_free(m);
    cJSON_Delete(ex);
    free(text);
    free(rows);
}

static void full_adamw_update_matches_torch_without_decay_on_norms(void **state) {
    check_full_adamw_step(*state, "llama_untied");
    check_full_adamw_step(*state, "llama_tied");
}

static void full_resumed_run_repeats_uninterrupted_run_bit_for_bit(void **state) {
    const fixture *f = *state;
    pissa_train_opts o = base_opts(); /* weight decay 0.01 */
    o.optim.lr = 1e-3;
    o.accum = 2;
    o.schedule = PISSA_SCHEDULE_COSINE;
    o.warmup = 1;
    o.max_grad_norm = 0.5;
    double whole[6];
    char *state_dir = tu_path(f->dir, "full_state");
    check_resume(f, "full", 0.0, &o, 6, 2, state_dir, whole); /* every weight, bit for bit */
    printf("  full: 6 updates, loss %.4f -> %.4f; resumed after 2: identical\n", whole[0], whole[5]);

    /* an adapter run cannot resume a full state */
    run d;
    run_open(f, "lora", 0.0, &o, &d);
    assert_int_equal(pissa_trainer_load_state(d.t, state_dir), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "mode full"));
    run_close(&d);
    tu_rmtree(state_dir);
    free(state_dir);
}

/* ---- pissa-finetune end to end ---- */

static int run_prog(const fixture *f, const char *cmd, char **output) {
    char *log = tu_path(f->dir, "prog.txt");
    int rc = tu_run(cmd, log);
    *output = tu_slurp(log, NULL);
    free(log);
    return rc;
}

static double json_number(const char *text, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(text, k);
    assert_non_null(p);
    return strtod(p + strlen(k), NULL);
}

/* OUT/log.csv, whole. */
static char *read_log(const char *out) {
    char *path = tu_path(out, "log.csv"), *text = tu_slurp(path, NULL);
    assert_non_null(text);
    free(path);
    return text;
}

/* LOG with only its train lines kept (in place). */
static char *train_lines(char *log) {
    char *w = log;
    for (char *r = log; *r;) {
        size_t len = strcspn(r, "\n");
        char end = r[len];
        r[len] = '\0';
        int keep = strstr(r, ",train,") != NULL;
        r[len] = end;
        len += end == '\n';
        if (keep) memmove(w, r, len), w += len;
        r += len;
    }
    *w = '\0';
    return log;
}

static void finetune_writes_adapter_residual_log_and_matches_pissa_eval(void **state) {
    const fixture *f = *state;
    char *out = tu_path(f->dir, "ft"), *output, cmd[4096];
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --eval-data %s --out %s --method pissa --rank 4 --alpha 8 "
             "--target q_proj,v_proj,down_proj --lr 1e-2 --steps 10 --batch 2 --accum 2 --schedule cosine --warmup 2 "
             "--eval-every 5 --save-every 4 --seed 3 --dropout 0.05 --convert-to-lora --json -q 2>&1",
             PISSA_FINETUNE_EXE, f->model, f->data, f->eval, out);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    double eval_loss = json_number(output, "eval_loss");
    assert_int_equal((int)json_number(output, "steps"), 10);
    free(output);
    static const char *files[] = {"adapter_config.json", "adapter_model.safetensors", "config.json",
                                  "model.safetensors", "log.csv", "pissa_init/adapter_config.json",
                                  "pissa_init/adapter_model.safetensors", "state/state.json", "state/state.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = tu_path(out, files[i]);
        char *text = tu_slurp(p, NULL);
        if (!text) fail_msg("pissa-finetune did not write %s", files[i]);
        free(text);
        free(p);
    }
    char *log = read_log(out);
    assert_non_null(strstr(log, "step,split,loss,lr,grad_norm,tokens\n1,train,"));
    assert_non_null(strstr(log, "\n5,eval,"));
    assert_non_null(strstr(log, "\n10,train,"));
    assert_non_null(strstr(log, "\n10,eval,"));
    free(log);
    /* OUT is usable on its own: its residual model plus its adapter give the loss the trainer reported */
    snprintf(cmd, sizeof cmd, "%s --model %s --adapter %s --data %s --batch 2 --json -q", PISSA_EVAL_EXE, out, out,
             f->eval);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    double evaluated = json_number(output, "loss");
    printf("  trainer eval loss %.8g, pissa-eval on OUT %.8g\n", eval_loss, evaluated);
    assert_true(fabs(evaluated - eval_loss) <= 1e-6 * eval_loss);
    free(output);
    /* the residual model plus pissa_init is the base model */
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --json -q", PISSA_EVAL_EXE, f->model, f->eval);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    double base = json_number(output, "loss");
    free(output);
    snprintf(cmd, sizeof cmd, "%s --model %s --adapter %s/pissa_init --data %s --json -q", PISSA_EVAL_EXE, out, out,
             f->eval);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    assert_true(fabs(json_number(output, "loss") - base) <= 1e-4 * base);
    free(output);
    /* --convert-to-lora: the ORIGINAL base plus OUT/lora gives the trained model's loss */
    snprintf(cmd, sizeof cmd, "%s --model %s --adapter %s/lora --data %s --batch 2 --json -q", PISSA_EVAL_EXE, f->model,
             out, f->eval);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    double converted = json_number(output, "loss");
    printf("  base + converted LoRA %.8g, residual + PiSSA %.8g\n", converted, evaluated);
    assert_true(fabs(converted - evaluated) <= 1e-4 * evaluated);
    free(output);
    char *cfgp = tu_path(out, "lora/adapter_config.json"), *cfg = tu_slurp(cfgp, NULL);
    assert_non_null(cfg);
    assert_non_null(strstr(cfg, "\"r\": 8,")); /* rank 2r */
    free(cfg);
    free(cfgp);
    tu_rmtree(out);
    free(out);
}

/* --adapter continues a saved PEFT adapter: with lr 0 it is written back unchanged (same loss); with lr > 0 the
 * held-out loss keeps falling from where the first run ended. */
static void finetune_continues_a_saved_peft_adapter(void **state) {
    const fixture *f = *state;
    char *a = tu_path(f->dir, "ft_first"), *b = tu_path(f->dir, "ft_same"), *c = tu_path(f->dir, "ft_more");
    char *output, cmd[4096];
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --eval-data %s --out %s --method lora --rank 4 --lr 1e-2 "
             "--steps 6 --batch 2 --seed 1 --json -q 2>&1", PISSA_FINETUNE_EXE, f->model, f->data, f->eval, a);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    double first = json_number(output, "eval_loss");
    free(output);
    snprintf(cmd, sizeof cmd, "%s --model %s --adapter %s --data %s --eval-data %s --out %s --lr 0 --steps 2 "
             "--batch 2 --json -q 2>&1", PISSA_FINETUNE_EXE, f->model, a, f->data, f->eval, b);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    assert_true(json_number(output, "eval_loss") == first);
    free(output);
    snprintf(cmd, sizeof cmd, "%s --model %s --adapter %s --data %s --eval-data %s --out %s --lr 1e-2 --steps 6 "
             "--batch 2 --seed 2 --json -q 2>&1", PISSA_FINETUNE_EXE, f->model, a, f->data, f->eval, c);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    double more = json_number(output, "eval_loss");
    printf("  eval loss after the first run %.6g, after continuing %.6g\n", first, more);
    assert_true(more < first);
    free(output);
    snprintf(cmd, sizeof cmd, "%s --model %s --adapter %s --rank 8 --data %s --out %s --steps 1 -q 2>&1",
             PISSA_FINETUNE_EXE, f->model, a, f->data, c);
    assert_int_not_equal(run_prog(f, cmd, &output), 0);
    assert_non_null(strstr(output, "--adapter"));
    free(output);
    tu_rmtree(a), tu_rmtree(b), tu_rmtree(c);
    free(a), free(b), free(c);
}

static void finetune_resumed_from_state_continues_the_run_exactly(void **state) {
    const fixture *f = *state;
    char *a = tu_path(f->dir, "ft_whole"), *b = tu_path(f->dir, "ft_part"), *output, cmd[4096];
    const char *common = "--method pissa_niter_2 --rank 4 --target q_proj,v_proj --lr 1e-2 --batch 2 --accum 2 "
                         "--schedule constant --warmup 2 --dropout 0.1 --seed 5 -q";
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --out %s --steps 9 %s 2>&1", PISSA_FINETUNE_EXE, f->model,
             f->data, a, common);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    free(output);
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --out %s --steps 4 %s 2>&1", PISSA_FINETUNE_EXE, f->model,
             f->data, b, common);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    free(output);
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --out %s --steps 9 --resume %s/state %s 2>&1",
             PISSA_FINETUNE_EXE, f->model, f->data, b, b, common);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    free(output);
    char *la = read_log(a), *lb = read_log(b);
    assert_string_equal(la, lb); /* every update's loss, learning rate and gradient norm, printed to 8 digits */
    free(la);
    free(lb);
    char *pa = tu_path(a, "adapter_model.safetensors"), *pb = tu_path(b, "adapter_model.safetensors");
    size_t na, nb;
    char *xa = tu_slurp(pa, &na), *xb = tu_slurp(pb, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(xa, xb, na); /* and the adapter bit for bit */
    free(xa);
    free(xb);
    free(pa);
    free(pb);
    /* refusals: no step count */
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --out %s 2>&1", PISSA_FINETUNE_EXE, f->model, f->data, a);
    assert_int_equal(run_prog(f, cmd, &output), 2);
    assert_non_null(strstr(output, "--steps"));
    free(output);
    tu_rmtree(a);
    tu_rmtree(b);
    free(a);
    free(b);
}

/* Every file under DIR with its bytes, as one string ("name\n<bytes>\n" in sorted order), to compare two states of
 * a folder. Caller frees. */
static char *folder_bytes(const fixture *f, const char *dir) {
    char cmd[2048], *out;
    snprintf(cmd, sizeof cmd, "cd '%s' && find . -type f | LC_ALL=C sort | while read -r p; do echo \"$p\"; "
             "cat \"$p\"; echo; done", dir);
    assert_int_equal(run_prog(f, cmd, &out), 0);
    return out;
}

/* Training or evaluating on nothing: a set without rows, one whose rows have no targets (every label after the first
 * position -100, or single-token rows), or one whose targets lie beyond seq. Each is a clear error naming what is
 * missing, never a crash, a division by zero or a loss of 0 reported for no tokens; pissa-finetune refuses such data
 * before writing anything. */
static void empty_and_targetless_data_sets_are_refused(void **state) {
    const fixture *f = *state;
    pissa_model *m;
    assert_ok(pissa_model_load(f->model, &m));
    pissa_adapter_opts ao = pissa_adapter_default_opts();
    ao.init.rank = 2;
    assert_ok(pissa_model_add_adapters(m, &ao));
    pissa_train_opts o = base_opts();
    pissa_trainer *t = (pissa_trainer *)1;
    double loss = -1;

    /* no rows: an empty JSONL file, and rows given in memory */
    char *path = tu_path(f->dir, "empty.jsonl");
    tu_write_bytes(path, "\n\n", 2);
    pissa_dataset *empty, *none, *cut;
    assert_ok(pissa_dataset_load_jsonl(path, 64, &empty));
    assert_int_equal(pissa_dataset_count(empty), 0);
    assert_int_equal(pissa_dataset_target_count(empty, 0), 0);
    assert_int_equal(pissa_trainer_create(m, empty, &o, &t), PISSA_ERR_INVALID_ARG);
    assert_null(t);
    assert_non_null(strstr(pissa_last_error(), "no rows"));

    /* rows without targets */
    const int32_t ids[] = {3, 4, 5, 6, 7, 8}, labels[] = {3, -100, -100, 6, 7, -100};
    const int64_t offsets[] = {0, 3, 4, 6}; /* [3 4 5] all ignored after the first; [6] one token; [7 8] ignored */
    assert_ok(pissa_dataset_from_rows(ids, labels, offsets, 3, 64, &none));
    assert_int_equal(pissa_dataset_target_count(none, 0), 0);
    assert_int_equal(pissa_trainer_create(m, none, &o, &t), PISSA_ERR_INVALID_ARG);
    assert_null(t);
    assert_non_null(strstr(pissa_last_error(), "no targets"));

    /* the only targets lie beyond seq: refused with seq 2, accepted with whole rows */
    const int32_t labels2[] = {3, -100, 5, 6, 7, -100};
    assert_ok(pissa_dataset_from_rows(ids, labels2, offsets, 3, 64, &cut));
    assert_int_equal(pissa_dataset_target_count(cut, 2), 0);
    assert_int_equal(pissa_dataset_target_count(cut, 0), 1);
    o.seq = 2;
    assert_int_equal(pissa_trainer_create(m, cut, &o, &t), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "no targets"));
    o.seq = 0;
    assert_ok(pissa_trainer_create(m, cut, &o, &t));
    pissa_step_info info;
    assert_ok(pissa_trainer_step(t, &info));
    assert_int_equal(info.tokens, 1);
    assert_true(isfinite(info.loss) && info.loss > 0);

    /* evaluation: no rows, no targets */
    assert_int_equal(pissa_trainer_evaluate(t, empty, &loss, NULL), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "no rows"));
    assert_int_equal(pissa_trainer_evaluate(t, none, &loss, NULL), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "no targets"));
    assert_true(loss == -1); /* nothing was reported */
    pissa_trainer_free(t);

    /* pissa-finetune: one line naming the file, exit 1, no OUT */
    char *rows = tu_path(f->dir, "targetless.jsonl"), *out = tu_path(f->dir, "ft_targetless"), *output, cmd[4096];
    const char *text = "{\"input_ids\": [3, 4, 5], \"labels\": [3, -100, -100]}\n{\"input_ids\": [6]}\n";
    tu_write_bytes(rows, text, strlen(text));
    const char *data[2] = {path, rows}, *needle[2] = {"no rows", "no targets"};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s --model %s --data %s --out %s --steps 2 -q", PISSA_FINETUNE_EXE, f->model,
                 data[k], out);
        assert_int_equal(run_prog(f, cmd, &output), 1);
        if (!strstr(output, data[k]) || !strstr(output, needle[k])) fail_msg("pissa-finetune said: %s", output);
        assert_false(tu_file_exists(out));
        free(output);
        snprintf(cmd, sizeof cmd, "%s --model %s --data %s --eval-data %s --out %s --steps 2 -q", PISSA_FINETUNE_EXE,
                 f->model, f->data, data[k], out);
        assert_int_equal(run_prog(f, cmd, &output), 1);
        if (!strstr(output, data[k]) || !strstr(output, needle[k])) fail_msg("pissa-finetune said: %s", output);
        assert_false(tu_file_exists(out));
        free(output);
    }
    free(rows);
    free(out);
    free(path);
    pissa_dataset_free(empty);
    pissa_dataset_free(none);
    pissa_dataset_free(cut);
    pissa_model_free(m);
}

/* pissa-finetune --model <base> INPUTS --out OUT is a usage error (exit 2) whose message holds NEEDLE. */
static void expect_out_refused(const fixture *f, const char *inputs, const char *out, const char *needle) {
    char cmd[4096], *output;
    snprintf(cmd, sizeof cmd, "%s --model %s %s --out %s --steps 1 -q 2>&1", PISSA_FINETUNE_EXE, f->model, inputs, out);
    assert_int_equal(run_prog(f, cmd, &output), 2);
    if (!strstr(output, needle)) fail_msg("--out %s: expected '%s', got: %s", out, needle, output);
    free(output);
}

/* --out must never be, or contain, an input: the base model (however the path is spelled), the data, the adapter
 * being continued. Refused before anything is read or written. */
static void finetune_refuses_an_output_that_is_or_contains_an_input(void **state) {
    const fixture *f = *state;
    char *base_link = tu_path(f->dir, "base_link"), inputs[4096];
    assert_int_equal(symlink(f->model, base_link), 0);
    char *before = folder_bytes(f, f->model);
    char spelled[3][1024];
    snprintf(spelled[0], sizeof spelled[0], "%s/", f->model);
    snprintf(spelled[1], sizeof spelled[1], "%s/./", f->model);
    snprintf(spelled[2], sizeof spelled[2], "%s", base_link);
    snprintf(inputs, sizeof inputs, "--data %s", f->data);
    for (int i = 0; i < 3; i++) expect_out_refused(f, inputs, spelled[i], "is the --model input");
    /* the data inside OUT, and OUT = the adapter to continue */
    char *dd = tu_path(f->dir, "dd"), *data = tu_path(f->dir, "dd/train.jsonl");
    mkdir(dd, 0755);
    write_jsonl(data, 4, 0);
    snprintf(inputs, sizeof inputs, "--data %s", data);
    expect_out_refused(f, inputs, dd, "contains the --data input");
    char *dd_link = tu_path(f->dir, "dd_link"); /* ... also through a symlink to that folder */
    assert_int_equal(symlink(dd, dd_link), 0);
    expect_out_refused(f, inputs, dd_link, "contains the --data input");
    unlink(dd_link);
    free(dd_link);
    char *hard = tu_path(f->dir, "train_hardlink"); /* ... and OUT that is the data file under another name */
    assert_int_equal(link(data, hard), 0);
    expect_out_refused(f, inputs, hard, "is the --data input");
    unlink(hard);
    free(hard);
    char *tmpl = tu_path(f->dir, "dd/chat.jinja"); /* the chat template too */
    tu_write_bytes(tmpl, "{{ messages }}", 14);
    snprintf(inputs, sizeof inputs, "--data %s --chat-template %s", f->data, tmpl);
    expect_out_refused(f, inputs, dd, "contains the --chat-template input");
    free(tmpl);
    tu_rmtree(dd);
    free(dd), free(data);
    char *ad = tu_path(f->dir, "ad"), *ad_slash = tu_path(ad, ""); /* OUT = the adapter being continued */
    mkdir(ad, 0755);
    snprintf(inputs, sizeof inputs, "--data %s --adapter %s", f->data, ad);
    expect_out_refused(f, inputs, ad_slash, "is the --adapter input");
    rmdir(ad);
    free(ad), free(ad_slash);
    char *after = folder_bytes(f, f->model);
    assert_string_equal(before, after);
    unlink(base_link);
    free(before);
    free(after);
    free(base_link);
}

/* --json is JSON whatever OUT is called: a quote, a backslash and a tab in the path come back from a JSON parser. */
static void finetune_json_line_parses_with_any_out_path(void **state) {
    const fixture *f = *state;
    char *out = tu_path(f->dir, "we\"ird\\na\tme"), *output, cmd[4096];
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --out '%s' --method lora --rank 2 --steps 1 --batch 2 --json -q",
             PISSA_FINETUNE_EXE, f->model, f->data, out); /* sh takes '...' literally */
    assert_int_equal(run_prog(f, cmd, &output), 0);
    cJSON *root = cJSON_Parse(output);
    if (!root) fail_msg("--json printed no JSON: %s", output);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(root, "out")), out);
    cJSON_Delete(root);
    free(output);
    tu_rmtree(out);
    free(out);
}

/* A rerun that fails (bad data, a bad --resume) leaves a good OUT exactly as it was, byte for byte; a first run that
 * fails leaves no OUT at all. */
static void finetune_failed_rerun_leaves_previous_out_untouched(void **state) {
    const fixture *f = *state;
    char *out = tu_path(f->dir, "ft_keep"), *bad = tu_path(f->dir, "bad.jsonl"), *output, cmd[4096];
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --out %s --method pissa --rank 2 --steps 2 --batch 2 "
             "--save-every 1 -q 2>&1", PISSA_FINETUNE_EXE, f->model, f->data, out);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    free(output);
    char *before = folder_bytes(f, out);
    tu_write_bytes(bad, "{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [1, 999]}\n", 46);
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --out %s --method pissa --rank 4 --steps 2 --batch 2 -q 2>&1",
             PISSA_FINETUNE_EXE, f->model, bad, out);
    assert_int_equal(run_prog(f, cmd, &output), 1);
    assert_non_null(strstr(output, "bad.jsonl:2"));
    free(output);
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --out %s --method pissa --rank 4 --steps 2 --batch 2 "
             "--resume %s -q 2>&1", PISSA_FINETUNE_EXE, f->model, f->data, out, f->model);
    assert_int_equal(run_prog(f, cmd, &output), 1);
    free(output);
    /* Valid inputs, but the save fails: with a file size limit of 0 (SIGXFSZ ignored) every write of the new OUT
     * fails with EFBIG. The program's output goes through a pipe, which the limit does not cover. */
    snprintf(cmd, sizeof cmd, "(ulimit -f 0; trap '' XFSZ; %s --model %s --data %s --out %s --method pissa --rank 4 "
             "--steps 2 --batch 2 -q 2>&1; echo \"exit $?\") | cat", PISSA_FINETUNE_EXE, f->model, f->data, out);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    if (!strstr(output, "exit 1") || !strstr(output, "too large"))
        fail_msg("a save over the file size limit: expected a failure (File too large, exit 1), got: %s", output);
    free(output);
    char *after = folder_bytes(f, out);
    assert_string_equal(before, after);
    snprintf(cmd, sizeof cmd, "(ls -a '%s' | grep -c '^ft_keep\\.' || true)", f->dir); /* no new version left over */
    assert_int_equal(run_prog(f, cmd, &output), 0);
    assert_string_equal(output, "0\n");
    free(output);
    char *fresh = tu_path(f->dir, "never/made");
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --out %s --steps 2 -q 2>&1", PISSA_FINETUNE_EXE, f->model, bad,
             fresh);
    assert_int_equal(run_prog(f, cmd, &output), 1);
    free(output);
    char *never = tu_path(f->dir, "never");
    struct stat sb;
    assert_int_not_equal(stat(never, &sb), 0);
    tu_rmtree(out);
    free(never), free(fresh), free(before), free(after), free(out), free(bad);
}

static void finetune_full_writes_a_checkpoint_pissa_eval_reads_and_resumes(void **state) {
    const fixture *f = *state;
    char *a = tu_path(f->dir, "ft_full"), *b = tu_path(f->dir, "ft_full_part"), *output, cmd[4096];
    const char *common = "--method full --lr 1e-3 --batch 2 --accum 2 --schedule constant --warmup 1 "
                         "--weight-decay 0.01 --seed 4 --json -q";
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --eval-data %s --out %s --steps 6 --save-every 4 %s 2>&1",
             PISSA_FINETUNE_EXE, f->model, f->data, f->eval, a, common);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    double eval_loss = json_number(output, "eval_loss");
    assert_int_equal((int)json_number(output, "steps"), 6);
    free(output);
    static const char *files[] = {"config.json", "model.safetensors", "log.csv", "state/state.json",
                                  "state/state.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = tu_path(a, files[i]), *text = tu_slurp(p, NULL);
        if (!text) fail_msg("pissa-finetune --method full did not write %s", files[i]);
        free(text);
        free(p);
    }
    char *p = tu_path(a, "adapter_config.json"), *text = tu_slurp(p, NULL);
    assert_null(text); /* a checkpoint, not an adapter */
    free(p);
    /* OUT is a Hugging Face checkpoint: pissa-eval reads it and finds the loss the trainer reported */
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --batch 2 --json -q", PISSA_EVAL_EXE, a, f->eval);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    double evaluated = json_number(output, "loss");
    free(output);
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --batch 2 --json -q", PISSA_EVAL_EXE, f->model, f->eval);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    double base = json_number(output, "loss");
    free(output);
    printf("  full: held-out loss %.6g -> %.8g (trainer), pissa-eval on OUT %.8g\n", base, eval_loss, evaluated);
    assert_true(fabs(evaluated - eval_loss) <= 1e-6 * eval_loss);
    assert_true(eval_loss < base);
    /* interrupted after 3 updates and resumed: the same log and the same checkpoint, byte for byte */
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --eval-data %s --out %s --steps 3 %s 2>&1", PISSA_FINETUNE_EXE,
             f->model, f->data, f->eval, b, common);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    free(output);
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --eval-data %s --out %s --steps 6 --resume %s/state %s 2>&1",
             PISSA_FINETUNE_EXE, f->model, f->data, f->eval, b, b, common);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    free(output);
    /* the same train lines (b also evaluated when it stopped at 3) */
    char *la = train_lines(read_log(a)), *lb = train_lines(read_log(b));
    assert_non_null(strstr(la, "\n6,train,"));
    assert_string_equal(la, lb);
    free(la);
    free(lb);
    char *pa = tu_path(a, "model.safetensors"), *pb = tu_path(b, "model.safetensors");
    size_t na, nb;
    char *xa = tu_slurp(pa, &na), *xb = tu_slurp(pb, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(xa, xb, na);
    free(xa), free(xb), free(pa), free(pb);
    /* options that shape an adapter are refused with one line naming them (exit 2) */
    static const char *bad[] = {"--rank 4", "--alpha 8", "--target q_proj", "--rslora", "--dropout 0.1",
                                "--convert-to-lora", "--adapter somewhere"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s --model %s --data %s --out %s --steps 1 --method full %s 2>&1",
                 PISSA_FINETUNE_EXE, f->model, f->data, b, bad[i]);
        assert_int_equal(run_prog(f, cmd, &output), 2);
        char opt[32];
        snprintf(opt, sizeof opt, "%.*s", (int)strcspn(bad[i], " "), bad[i]);
        size_t first = strcspn(output, "\n"); /* the error line; then only the usual "Try ... --help" */
        char *hit = strstr(output, opt);
        if (!hit || hit > output + first || strncmp(output + first, "\nTry ", 5) != 0)
            fail_msg("--method full %s: expected one line naming %s, got: %s", bad[i], opt, output);
        free(output);
    }
    tu_rmtree(a);
    tu_rmtree(b);
    free(a);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(optimizers_match_torch_reference),
        cmocka_unit_test(schedules_follow_their_formulas),
        cmocka_unit_test(clipping_scales_to_max_norm_and_rejects_nan),
        cmocka_unit_test(accumulating_k_microbatches_equals_one_batch_of_k_rows),
        cmocka_unit_test(same_seed_gives_identical_losses),
        cmocka_unit_test(resumed_run_repeats_uninterrupted_run_bit_for_bit),
        cmocka_unit_test(resumed_run_repeats_uninterrupted_run_with_every_base_format),
        cmocka_unit_test(nan_loss_stops_training_and_keeps_saved_adapter),
        cmocka_unit_test(loss_decreases_on_repetitive_data),
        cmocka_unit_test(empty_and_targetless_data_sets_are_refused),
        cmocka_unit_test(finetune_writes_adapter_residual_log_and_matches_pissa_eval),
        cmocka_unit_test(finetune_resumed_from_state_continues_the_run_exactly),
        cmocka_unit_test(finetune_continues_a_saved_peft_adapter),
        cmocka_unit_test(full_adamw_update_matches_torch_without_decay_on_norms),
        cmocka_unit_test(full_resumed_run_repeats_uninterrupted_run_bit_for_bit),
        cmocka_unit_test(finetune_full_writes_a_checkpoint_pissa_eval_reads_and_resumes),
        cmocka_unit_test(finetune_refuses_an_output_that_is_or_contains_an_input),
        cmocka_unit_test(finetune_json_line_parses_with_any_out_path),
        cmocka_unit_test(finetune_failed_rerun_leaves_previous_out_untouched),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
