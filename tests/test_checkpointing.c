/* Activation checkpointing (pissa_model_set_grad_checkpoint): the loss and every gradient are bit-identical to the
 * plain plan's (the same kernels on the same inputs in the same order), with LoRA dropout drawn in training, PiSSA
 * adapters and full fine-tuning, for families with their features on (qwen3: q/k norms, biases on q/k/v/o,
 * head_dim·H != D; mistral: a sliding window shorter than the rows, untied, a BF16 base read from the mapping; llama:
 * llama3 RoPE, attention and MLP biases, an NF4 base, so QPiSSA's residuals). The
 * arena shrinks by exactly (L − 1) layers' inner activations, counted from the config below; switching the mode
 * between steps changes nothing but the memory; pissa-finetune --grad-checkpoint writes the same adapter bytes.
 * Checkpoints are written by pissa-synth. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { L = 3, B = 2, T = 12, STEPS = 3 };

typedef struct family {
    const char *name, *synth; /* pissa-synth options beyond the shared ones */
    int base_dtype;           /* pissa_model_opts.base_dtype */
} family;

static const family families[] = {
    {"qwen3", "--family qwen3 --head-dim 16 --attention-bias", -1},
    {"mistral", "--family mistral --sliding-window 5 --untied --dtype bf16", -1},
    {"llama", "--family llama --rope-scaling llama3:8,1,4,16 --attention-bias --mlp-bias", PISSA_QTYPE_NF4},
};
enum { N_FAMILIES = sizeof families / sizeof *families };

typedef enum mode { PISSA_DROPOUT, FULL } mode;
static const char *const mode_names[] = {"PiSSA all-linear, dropout 0.1", "full fine-tuning"};

static char *dir;
static char model_dir[N_FAMILIES][1024];
static int32_t ids[B * T], labels[B * T];

static int setup(void **state) {
    (void)state;
    dir = tu_tempdir("checkpointing");
    for (int f = 0; f < N_FAMILIES; f++) {
        char cmd[4096], *log = tu_path(dir, "synth.log");
        snprintf(model_dir[f], sizeof model_dir[f], "%s/%s", dir, families[f].name);
        snprintf(cmd, sizeof cmd, "%s --out %s --dim 32 --hidden 48 --layers %d --heads 4 --kv-heads 2 --vocab 96 "
                 "--seq 64 %s", PISSA_SYNTH_EXE, model_dir[f], L, families[f].synth);
        int rc = tu_run(cmd, log);
        free(log);
        if (rc != 0) return -1;
    }
    uint64_t x = 12345; /* a fixed batch: ids in [0, 96), some labels ignored */
    for (int i = 0; i < B * T; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % 96);
        labels[i] = i % 5 == 3 ? -100 : ids[i];
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

static pissa_model *load(int f, mode md, int checkpoint) {
    pissa_model *m;
    pissa_model_opts mo = pissa_model_default_opts();
    mo.base_dtype = families[f].base_dtype;
    assert_ok(pissa_model_load_with_opts(model_dir[f], &mo, &m));
    if (md == PISSA_DROPOUT) {
        pissa_adapter_opts o = pissa_adapter_default_opts();
        o.targets = PISSA_PROJ_ALL;
        o.init.kind = PISSA_INIT_PISSA;
        o.init.rank = 4;
        o.init.alpha = 8;
        o.dropout = 0.1;
        assert_ok(pissa_model_add_adapters(m, &o));
    } else {
        assert_ok(pissa_model_set_full_finetune(m));
    }
    pissa_model_set_grad_checkpoint(m, checkpoint);
    assert_int_equal(pissa_model_grad_checkpoint(m), checkpoint);
    pissa_model_set_training(m, 1, 7);
    return m;
}

/* Every trainable tensor of A and B holds the same bits, data and gradient; each gradient is nonzero somewhere. */
static void assert_same_parameters(const pissa_model *a, const pissa_model *b, const char *what) {
    assert_int_equal(pissa_model_param_count(a), pissa_model_param_count(b));
    for (size_t i = 0; i < pissa_model_param_count(a); i++) {
        pissa_param_view pa, pb;
        assert_ok(pissa_model_param(a, i, &pa));
        assert_ok(pissa_model_param(b, i, &pb));
        size_t n = (size_t)(pa.rows * pa.cols);
        if (memcmp(pa.data, pb.data, n * sizeof(float)))
            fail_msg("%s: %s: values differ, max|diff| %.3g", what, pa.name, tu_max_abs_diff(pa.data, pb.data, n));
        if (memcmp(pa.grad, pb.grad, n * sizeof(float)))
            fail_msg("%s: %s: gradients differ, max|diff| %.3g", what, pa.name,
                     tu_max_abs_diff(pa.grad, pb.grad, n));
        double gmax = 0;
        for (size_t k = 0; k < n; k++) gmax = fmax(gmax, fabs(pa.grad[k]));
        if (!(gmax > 0)) fail_msg("%s: %s: the gradient is zero: nothing was compared", what, pa.name);
    }
}

/* One step: zeroed gradients, forward and backward, then plain SGD so the next step sees new parameters. */
static double step(pissa_model *m) {
    double loss;
    pissa_model_zero_grad(m);
    assert_ok(pissa_model_forward_backward(m, ids, labels, B, T, 1.0f, &loss, NULL));
    return loss;
}

static void sgd(pissa_model *m) {
    for (size_t i = 0; i < pissa_model_param_count(m); i++) {
        pissa_param_view p;
        assert_ok(pissa_model_param(m, i, &p));
        for (int64_t k = 0; k < p.rows * p.cols; k++) p.data[k] -= 0.05f * p.grad[k];
    }
}

static void assert_same_loss(double a, double b, const char *what) {
    if (memcmp(&a, &b, sizeof a)) fail_msg("%s: loss %.9g vs %.9g", what, a, b);
}

/* Plain and checkpointed runs of STEPS steps agree bit for bit at every step, then in evaluation mode (logits and
 * loss, forward only). */
static void checkpointed_training_gives_bit_identical_losses_and_gradients(void **state) {
    (void)state;
    for (int f = 0; f < N_FAMILIES; f++)
        for (mode md = PISSA_DROPOUT; md <= FULL; md++) {
            char what[256];
            pissa_model *plain = load(f, md, 0), *ck = load(f, md, 1);
            for (int s = 0; s < STEPS; s++) {
                snprintf(what, sizeof what, "%s, %s, step %d", families[f].name, mode_names[md], s);
                assert_same_loss(step(plain), step(ck), what);
                assert_same_parameters(plain, ck, what);
                sgd(plain);
                sgd(ck);
            }
            pissa_model_set_training(plain, 0, 0);
            pissa_model_set_training(ck, 0, 0);
            size_t n = (size_t)(B * T) * 96;
            float *l0 = malloc(n * sizeof(float)), *l1 = malloc(n * sizeof(float));
            assert_ok(pissa_model_logits(plain, ids, B, T, l0));
            assert_ok(pissa_model_logits(ck, ids, B, T, l1));
            assert_true(memcmp(l0, l1, n * sizeof(float)) == 0);
            double e0, e1;
            assert_ok(pissa_model_loss(plain, ids, labels, B, T, &e0, NULL));
            assert_ok(pissa_model_loss(ck, ids, labels, B, T, &e1, NULL));
            assert_same_loss(e0, e1, "evaluation");
            printf("  %-8s %-30s %d steps bit-identical, eval loss %.6f; arena %zu -> %zu bytes\n",
                   families[f].name, mode_names[md], STEPS, e1, pissa_model_arena_bytes(plain),
                   pissa_model_arena_bytes(ck));
            free(l0);
            free(l1);
            pissa_model_free(plain);
            pissa_model_free(ck);
        }
}

/* Dropout is on in those runs: the same model in evaluation mode gives another loss, so the masks mattered. */
static void the_dropout_masks_matter(void **state) {
    (void)state;
    pissa_model *m = load(0, PISSA_DROPOUT, 1);
    double train = step(m), eval;
    pissa_model_set_training(m, 0, 0);
    assert_ok(pissa_model_loss(m, ids, labels, B, T, &eval, NULL));
    printf("  training loss %.6f, evaluation loss %.6f\n", train, eval);
    assert_true(fabs(train - eval) > 1e-4);
    pissa_model_free(m);
}

/* One layer's inner activations in floats, from the config: every value made inside the layer and read only there
 * (all but the layer's output) and the saved buffers their forward writes (RMSNorm rstd per group, LoRA's xa,
 * attention's log-sum-exp per query row; RoPE's tables are written once and kept apart). */
static size_t layer_floats(const pissa_llama_config *c, int rank) {
    size_t N = B * T, D = (size_t)c->hidden_size, F = (size_t)c->intermediate_size, H = (size_t)c->num_attention_heads,
           KV = (size_t)c->num_key_value_heads, hd = (size_t)c->head_dim;
    size_t width[7] = {H * hd, KV * hd, KV * hd, D, F, F, D}; /* q k v o gate up down */
    size_t cols = D /* h */ + D /* x + o */ + D /* h2 */ + F /* swiglu */ + H * hd + KV * hd /* rope */ + H * hd;
    size_t saved = 2 * N /* the two norms' rstd */ + N * H /* attention lse */;
    for (int j = 0; j < 7; j++) {
        cols += width[j] * (1 + (c->bias_mask >> j & 1)); /* the product, and the bias added to it */
        saved += N * (size_t)rank;                         /* xa of an adapter (rank 0: none) */
    }
    if (c->qk_norm) {
        cols += H * hd + KV * hd;
        saved += N * H + N * KV; /* rstd of every head */
    }
    return N * cols + saved;
}

static void the_arena_shrinks_by_all_layers_but_one(void **state) {
    (void)state;
    for (int f = 0; f < N_FAMILIES; f++)
        for (mode md = PISSA_DROPOUT; md <= FULL; md++) {
            pissa_model *plain = load(f, md, 0), *ck = load(f, md, 1);
            step(plain);
            step(ck);
            size_t want = (size_t)(L - 1) * layer_floats(pissa_model_config(ck), md == FULL ? 0 : 4) * sizeof(float);
            size_t got = pissa_model_arena_bytes(plain) - pissa_model_arena_bytes(ck);
            printf("  %-8s %-30s saves %zu bytes of %zu (%zu expected)\n", families[f].name, mode_names[md], got,
                   pissa_model_arena_bytes(plain), want);
            assert_true(pissa_model_arena_bytes(ck) < pissa_model_arena_bytes(plain));
            assert_int_equal(got, want);
            pissa_model_free(plain);
            pissa_model_free(ck);
        }
}

/* One model switching the mode at every step follows a plain one bit for bit; its arena follows the mode. */
static void switching_the_mode_between_steps_changes_only_the_memory(void **state) {
    (void)state;
    pissa_model *plain = load(1, PISSA_DROPOUT, 0), *sw = load(1, PISSA_DROPOUT, 0);
    size_t plain_bytes = 0, ck_bytes = 0;
    for (int s = 0; s < 4; s++) {
        char what[64];
        snprintf(what, sizeof what, "step %d, checkpointing %s", s, s % 2 ? "on" : "off");
        pissa_model_set_grad_checkpoint(sw, s % 2);
        assert_same_loss(step(plain), step(sw), what);
        assert_same_parameters(plain, sw, what);
        if (s % 2) ck_bytes = pissa_model_arena_bytes(sw);
        else assert_int_equal(pissa_model_arena_bytes(sw), pissa_model_arena_bytes(plain));
        plain_bytes = pissa_model_arena_bytes(plain);
        sgd(plain);
        sgd(sw);
    }
    assert_true(ck_bytes < plain_bytes);
    pissa_model_set_grad_checkpoint(sw, 1);
    pissa_model_set_grad_checkpoint(sw, 1); /* setting it again keeps the plan */
    assert_int_equal(pissa_model_grad_checkpoint(sw), 1);
    pissa_model_set_grad_checkpoint(NULL, 1); /* a no-op */
    assert_int_equal(pissa_model_grad_checkpoint(NULL), 0);
    pissa_model_free(plain);
    pissa_model_free(sw);
}

/* The program: a run with --grad-checkpoint writes the very adapter file and log of a run without. */
static void finetune_grad_checkpoint_writes_the_same_adapter(void **state) {
    (void)state;
    char *rows = tu_path(dir, "rows.jsonl");
    FILE *f = fopen(rows, "w");
    assert_non_null(f);
    for (int r = 0; r < 6; r++) {
        fprintf(f, "{\"input_ids\": [");
        for (int t = 0; t < 16; t++) fprintf(f, "%s%d", t ? ", " : "", (r * 7 + t * (r + 3)) % 96);
        fprintf(f, "]}\n");
    }
    fclose(f);
    char *file[2][2];
    for (int on = 0; on < 2; on++) {
        char out[1100], cmd[4096], *log = tu_path(dir, "finetune.log");
        snprintf(out, sizeof out, "%s/ft%d", dir, on);
        snprintf(cmd, sizeof cmd, "%s --model %s --data %s --out %s --method lora --target all-linear --rank 4 "
                 "--dropout 0.1 --steps 3 --batch 2 --lr 1e-2 --seed 3 -q%s", PISSA_FINETUNE_EXE, model_dir[0], rows,
                 out, on ? " --grad-checkpoint" : "");
        int rc = tu_run(cmd, log);
        if (rc != 0) fail_msg("%s exited %d:\n%s", cmd, rc, tu_slurp(log, NULL));
        free(log);
        file[on][0] = tu_path(out, "adapter_model.safetensors");
        file[on][1] = tu_path(out, "log.csv");
    }
    for (int k = 0; k < 2; k++) {
        size_t n0, n1;
        char *a = tu_slurp(file[0][k], &n0), *b = tu_slurp(file[1][k], &n1);
        assert_non_null(a);
        assert_non_null(b);
        if (n0 != n1 || memcmp(a, b, n0)) fail_msg("%s and %s differ", file[0][k], file[1][k]);
        free(a), free(b), free(file[0][k]), free(file[1][k]);
    }
    free(rows);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(checkpointed_training_gives_bit_identical_losses_and_gradients),
        cmocka_unit_test(the_dropout_masks_matter),
        cmocka_unit_test(the_arena_shrinks_by_all_layers_but_one),
        cmocka_unit_test(switching_the_mode_between_steps_changes_only_the_memory),
        cmocka_unit_test(finetune_grad_checkpoint_writes_the_same_adapter),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
