/* Every path for every family, end to end through the programs, on checkpoints pissa-synth writes: pissa-init gives a
 * residual that with its pissa_init adapter is the base; pissa-merge of the two is the base again; pissa-finetune
 * (PiSSA with --convert-to-lora, and full) writes what pissa-eval reads back with the loss the trainer reported;
 * pissa-merge of the trained adapter equals the adapter applied unmerged; the converted LoRA adapter on the ORIGINAL
 * base equals the trained one on the residual; pissa-generate runs. Each family with its features on (llama: llama3
 * rope and biases; mistral: a sliding window shorter than the rows; qwen2: q/k/v biases; qwen3: q/k norms with
 * head_dim != D/H). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "testutil.h"

typedef struct family_case {
    const char *name, *synth; /* pissa-synth options beyond the shared ones */
} family_case;

static const family_case cases[] = {
    {"llama", "--family llama --rope-scaling llama3:8,1,4,16 --attention-bias --mlp-bias --untied"},
    {"mistral", "--family mistral --sliding-window 5 --untied"},
    {"qwen2", "--family qwen2 --rope-theta 1000000"},
    {"qwen3", "--family qwen3 --head-dim 16 --attention-bias"},
};

static char *dir;

static int setup(void **state) {
    (void)state;
    dir = tu_tempdir("families");
    char *path = tu_path(dir, "rows.jsonl");
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    for (int r = 0; r < 6; r++) { /* rows of 24 tokens: past the window and past llama3's original 16 positions */
        fprintf(f, "{\"input_ids\": [");
        for (int t = 0; t < 24; t++) fprintf(f, "%s%d", t ? ", " : "", 3 + (r * 7 + t * (r + 2)) % 500);
        fprintf(f, "]}\n");
    }
    fclose(f);
    free(path);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

/* Runs "EXE ARGS" (exit status must be 0) and returns its stdout + stderr. Caller frees. */
static char *run_ok(const char *exe, const char *args) {
    char cmd[12288], *log = tu_path(dir, "log.txt");
    snprintf(cmd, sizeof cmd, "%s %s", exe, args);
    int rc = tu_run(cmd, log);
    char *out = tu_slurp(log, NULL);
    free(log);
    if (rc != 0) fail_msg("%s exited %d:\n%s", cmd, rc, out ? out : "");
    return out;
}

/* The "loss" of pissa-eval --json on the rows, for MODEL (+ ADAPTER). */
static double eval_loss(const char *model, const char *adapter) {
    char args[4096];
    snprintf(args, sizeof args, "--model %s %s%s --data %s/rows.jsonl --batch 3 --json -q 2>/dev/null", model,
             adapter ? "--adapter " : "", adapter ? adapter : "", dir);
    char *out = run_ok(PISSA_EVAL_EXE, args);
    cJSON *j = cJSON_Parse(out);
    if (!j || !cJSON_IsNumber(cJSON_GetObjectItem(j, "loss"))) fail_msg("pissa-eval printed: %s", out);
    double loss = cJSON_GetObjectItem(j, "loss")->valuedouble;
    cJSON_Delete(j);
    free(out);
    return loss;
}

static void assert_same_loss(const char *what, double got, double want, double rel) {
    printf("    %-44s %.7f vs %.7f\n", what, got, want);
    if (!(fabs(got - want) <= rel * fabs(want))) fail_msg("%s: loss %.8g, expected %.8g", what, got, want);
}

static void check_family(const family_case *c) {
    char base[1024], res[1024], merged[1024], ft[1024], full[1024], args[8192], tmp[1100];
    snprintf(base, sizeof base, "%s/%s_base", dir, c->name);
    snprintf(res, sizeof res, "%s/%s_res", dir, c->name);
    snprintf(merged, sizeof merged, "%s/%s_merged", dir, c->name);
    snprintf(ft, sizeof ft, "%s/%s_ft", dir, c->name);
    snprintf(full, sizeof full, "%s/%s_full", dir, c->name);
    printf("  %s (%s)\n", c->name, c->synth);
    snprintf(args, sizeof args, "--out %s --dim 32 --hidden 48 --layers 2 --heads 4 --kv-heads 2 --vocab 512 --seq 64 %s",
             base, c->synth);
    free(run_ok(PISSA_SYNTH_EXE, args));
    double base_loss = eval_loss(base, NULL);

    /* pissa-init: the residual with its initial adapter is the base; merged, they are the base again */
    snprintf(args, sizeof args, "--model %s --out %s --rank 4 --target all-linear --init pissa -q", base, res);
    free(run_ok(PISSA_INIT_EXE, args));
    snprintf(tmp, sizeof tmp, "%s/pissa_init", res);
    assert_same_loss("residual + pissa_init vs base", eval_loss(res, tmp), base_loss, 2e-6);
    assert_true(fabs(eval_loss(res, NULL) - base_loss) > 1e-3); /* the residual alone is another model */
    snprintf(args, sizeof args, "--model %s --adapter %s --out %s", res, tmp, merged);
    free(run_ok(PISSA_MERGE_EXE, args));
    assert_same_loss("pissa-merge(residual, pissa_init) vs base", eval_loss(merged, NULL), base_loss, 2e-6);

    /* pissa-finetune with PiSSA: OUT holds the residual and the adapter; pissa-eval finds the trainer's loss */
    snprintf(args, sizeof args, "--model %s --data %s/rows.jsonl --eval-data %s/rows.jsonl --out %s --method pissa "
             "--rank 4 --target all-linear --steps 4 --batch 2 --lr 1e-2 --convert-to-lora --json -q", base, dir, dir,
             ft);
    char *out = run_ok(PISSA_FINETUNE_EXE, args);
    cJSON *j = cJSON_Parse(strrchr(out, '{'));
    assert_non_null(j);
    double trained = cJSON_GetObjectItem(j, "eval_loss")->valuedouble;
    cJSON_Delete(j);
    free(out);
    assert_same_loss("finetune OUT + adapter vs trainer's eval", eval_loss(ft, ft), trained, 2e-6);
    assert_true(trained < base_loss - 1e-3); /* it trained */
    snprintf(tmp, sizeof tmp, "%s/lora", ft);
    assert_same_loss("base + converted LoRA vs residual + trained", eval_loss(base, tmp), trained, 2e-6);
    snprintf(args, sizeof args, "--model %s --adapter %s --out %s", ft, ft, merged);
    free(run_ok(PISSA_MERGE_EXE, args));
    assert_same_loss("pissa-merge(OUT, trained) vs unmerged", eval_loss(merged, NULL), trained, 2e-6);

    /* full fine-tuning: a checkpoint (biases and norms trained too) that pissa-eval reads */
    snprintf(args, sizeof args, "--model %s --data %s/rows.jsonl --eval-data %s/rows.jsonl --out %s --method full "
             "--steps 3 --batch 2 --lr 1e-3 --json -q", base, dir, dir, full);
    out = run_ok(PISSA_FINETUNE_EXE, args);
    j = cJSON_Parse(strrchr(out, '{'));
    assert_non_null(j);
    trained = cJSON_GetObjectItem(j, "eval_loss")->valuedouble;
    cJSON_Delete(j);
    free(out);
    assert_same_loss("full fine-tune OUT vs trainer's eval", eval_loss(full, NULL), trained, 2e-6);

    /* pissa-generate with a tokenizer of the model's vocabulary size */
    const char *tok = PISSA_SHARED_DATA_DIR "/stories260K/tok512.bin";
    if (!tu_file_exists(tok)) tu_skip_missing(tok);
    snprintf(args, sizeof args, "--model %s --adapter %s --tokenizer %s --temperature 0 --steps 20 --prompt Once", ft,
             ft, tok);
    free(run_ok(PISSA_GENERATE_EXE, args));
}

static void every_path_works_for_every_family(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_family(&cases[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(every_path_works_for_every_family)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
