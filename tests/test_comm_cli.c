/* pissa-finetune under mpirun, end to end: the real model (stories260K on tinyshakespeare) trained by 2 and by 3
 * processes against one process, resuming a 2-process run on 3 processes, and failures on one process (a bad data
 * file, a NaN, an unwritable OUT, different inputs) ending every process with its message, never a hang (each run is
 * bounded by `timeout`), with OUT left as it was. This binary runs as one ordinary process that launches mpirun. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

#define STORIES PISSA_SHARED_DATA_DIR "/stories260K/stories260K.bin"
#define TOK512 PISSA_SHARED_DATA_DIR "/stories260K/tok512.bin"
#define SHAKESPEARE PISSA_SHARED_DATA_DIR "/tinyshakespeare/input.txt"

/* Updates of the long runs: 20 (the tolerance is stated after 20 updates); the sanitizer build, some 20 times slower
 * and there to find memory errors, runs 4. */
#ifdef __SANITIZE_ADDRESS__
#define UPDATES 4
#else
#define UPDATES 20
#endif

/* mpirun with the flags the build found (Open MPI: --allow-run-as-root --oversubscribe), and a bound on every run */
#define MPIRUN "timeout 120 " PISSA_MPIEXEC

typedef struct fixture {
    char *dir, *train, *eval, *synth, *nan_model, *jsonl, *other_jsonl;
} fixture;

static void write_text_slice(const char *path, long from, long len) {
    size_t n;
    char *text = tu_slurp(SHAKESPEARE, &n);
    assert_non_null(text);
    assert_true((size_t)(from + len) <= n);
    tu_write_bytes(path, text + from, (size_t)len);
    free(text);
}

static void write_jsonl(const char *path, int rows, int offset) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < rows; i++) {
        fprintf(f, "{\"input_ids\": [");
        for (int t = 0, len = 6 + (i * 5 + offset) % 9; t < len; t++)
            fprintf(f, "%s%d", t ? ", " : "", 3 + ((i + offset) % 5 + (1 + i % 2) * t) % 60);
        fprintf(f, "]}\n");
    }
    fclose(f);
}

/* DST: a copy of the checkpoint SRC with model.norm.weight[0] = NaN. */
static void write_nan_copy(const char *src, const char *dst) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/config.json %s/", dst, src, dst);
    assert_int_equal(tu_run(cmd, NULL), 0);
    char *in = tu_path(src, "model.safetensors"), *out = tu_path(dst, "model.safetensors");
    pissa_st_file *f;
    pissa_st_writer *w;
    assert_ok(pissa_st_open(in, &f));
    assert_ok(pissa_st_writer_create(&w));
    float **keep = calloc(pissa_st_count(f), sizeof *keep);
    for (size_t i = 0; i < pissa_st_count(f); i++) {
        pissa_st_info info;
        assert_ok(pissa_st_info_at(f, i, &info));
        keep[i] = malloc(sizeof(float) * (size_t)info.numel);
        assert_ok(pissa_st_read_f32(f, info.name, keep[i], info.numel));
        if (!strcmp(info.name, "model.norm.weight")) keep[i][0] = NAN;
        assert_ok(pissa_st_writer_add_f32(w, info.name, PISSA_F32, info.ndim, info.shape, keep[i]));
    }
    assert_ok(pissa_st_writer_write(w, out));
    for (size_t i = 0; i < pissa_st_count(f); i++) free(keep[i]);
    free(keep);
    pissa_st_writer_free(w);
    pissa_st_close(f);
    free(in);
    free(out);
}

static const char *const shared[] = {STORIES, TOK512, SHAKESPEARE};

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir("comm-cli");
    f->train = tu_path(f->dir, "train.txt");
    f->eval = tu_path(f->dir, "eval.txt");
    f->synth = tu_path(f->dir, "synth");
    f->nan_model = tu_path(f->dir, "synth_nan");
    f->jsonl = tu_path(f->dir, "train.jsonl");
    f->other_jsonl = tu_path(f->dir, "other.jsonl");
    if (tu_file_exists(SHAKESPEARE)) { /* else the tests that need it say so */
        write_text_slice(f->train, 0, 3000 * UPDATES);
        write_text_slice(f->eval, 100000, 6000);
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --out %s --layers 2 --dim 32 --hidden 48 --heads 4 --kv-heads 2 --vocab 64 --seq 32",
             PISSA_SYNTH_EXE, f->synth);
    if (tu_run(cmd, NULL) != 0) return -1;
    write_nan_copy(f->synth, f->nan_model);
    write_jsonl(f->jsonl, 12, 0);
    write_jsonl(f->other_jsonl, 12, 1);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tu_rmtree(f->dir);
    free(f->dir), free(f->train), free(f->eval), free(f->synth), free(f->nan_model), free(f->jsonl);
    free(f->other_jsonl);
    free(f);
    return 0;
}

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
    if (!p) fail_msg("no \"%s\" in: %s", key, text);
    return strtod(p + strlen(k), NULL);
}

/* One line of OUT/log.csv: step, split, loss, lr, grad_norm, tokens. */
typedef struct entry {
    int step, eval;
    double loss, lr, norm;
    long tokens;
} entry;

static int read_log(const char *out, entry *e, int max) {
    char *path = tu_path(out, "log.csv");
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("no %s", path);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        if (!strncmp(line, "step,", 5)) continue;
        entry x = {0};
        char split[16];
        if (sscanf(line, "%d,%15[a-z],%lf", &x.step, split, &x.loss) != 3) fail_msg("%s: bad line %s", path, line);
        x.eval = !strcmp(split, "eval");
        if (!x.eval && sscanf(line, "%*d,%*[a-z],%*f,%lf,%lf,%ld", &x.lr, &x.norm, &x.tokens) != 3)
            fail_msg("%s: bad line %s", path, line);
        e[n++] = x;
    }
    fclose(f);
    free(path);
    return n;
}

/* The logs of two runs: the same updates and evaluations, every loss (training and held-out) within TOL (relative);
 * returns the worst. */
static double compare_logs(const char *a, const char *b, double tol) {
    entry x[128], y[128];
    int n = read_log(a, x, 128), m = read_log(b, y, 128);
    assert_int_equal(n, m);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(x[i].step, y[i].step);
        assert_int_equal(x[i].eval, y[i].eval);
        assert_int_equal(x[i].tokens, y[i].tokens);
        assert_true(x[i].lr == y[i].lr);
        double rel = fabs(x[i].loss - y[i].loss) / x[i].loss;
        if (rel > tol) fail_msg("step %d: loss %.9g vs %.9g (%.2e)", x[i].step, x[i].loss, y[i].loss, rel);
        worst = fmax(worst, rel);
    }
    return worst;
}

/* ‖A − B‖ / ‖B‖ over every tensor of the safetensors files A and B (the same names). */
static double tensors_rel_diff(const char *a, const char *b) {
    pissa_st_file *fa, *fb;
    assert_ok(pissa_st_open(a, &fa));
    assert_ok(pissa_st_open(b, &fb));
    assert_int_equal(pissa_st_count(fa), pissa_st_count(fb));
    double d = 0, s = 0;
    for (size_t i = 0; i < pissa_st_count(fa); i++) {
        pissa_st_info ia, ib;
        assert_ok(pissa_st_info_at(fa, i, &ia));
        assert_ok(pissa_st_find(fb, ia.name, &ib));
        assert_int_equal(ia.numel, ib.numel);
        float *x = malloc(sizeof(float) * (size_t)ia.numel), *y = malloc(sizeof(float) * (size_t)ia.numel);
        assert_ok(pissa_st_read_f32(fa, ia.name, x, ia.numel));
        assert_ok(pissa_st_read_f32(fb, ia.name, y, ia.numel));
        double dn = tu_diff_norm(x, y, (size_t)ia.numel), yn = tu_norm(y, (size_t)ia.numel);
        d += dn * dn, s += yn * yn;
        free(x), free(y);
    }
    pissa_st_close(fa);
    pissa_st_close(fb);
    return sqrt(d / s);
}

/* pissa-finetune on stories260K with ARGS by NP processes (0: without mpirun) into OUT; returns its --json line. */
static char *finetune(const fixture *f, int np, const char *out, const char *args) {
    char cmd[4096], *output;
    char launch[512] = "";
    if (np) snprintf(launch, sizeof launch, "%s -np %d ", MPIRUN, np);
    snprintf(cmd, sizeof cmd, "%s%s --model %s --tokenizer %s --data %s --out %s --seq 64 --threads 1 --json -q %s "
             "2>&1", launch, PISSA_FINETUNE_EXE, STORIES, TOK512, f->train, out, args);
    int rc = run_prog(f, cmd, &output);
    if (rc != 0) fail_msg("%s\nexited with %d:\n%s", cmd, rc, output);
    return output;
}

static void finetune_over_2_and_3_processes_reproduces_one_process(void **state) {
    const fixture *f = *state;
    tu_need_files(shared, 3);
    char args[1024];
    snprintf(args, sizeof args, "--method pissa_niter_4 --rank 8 --target all-linear --dropout 0.1 --lr 2e-3 "
             "--steps %d --batch 5 --accum 2 --warmup 2 --clip 0.5 --eval-data %s --eval-every %d --seed 3", UPDATES,
             f->eval, UPDATES / 2);
    char *one = tu_path(f->dir, "one"), *out = tu_path(f->dir, "many");
    char *json = finetune(f, 0, one, args), *adapter_one = tu_path(one, "adapter_model.safetensors");
    assert_int_equal((int)json_number(json, "processes"), 1);
    free(json);
    for (int np = 2; np <= 3; np++) { /* batch 5: 3 + 2 rows, then 2 + 2 + 1 */
        json = finetune(f, np, out, args);
        assert_int_equal((int)json_number(json, "processes"), np);
        assert_int_equal((int)json_number(json, "steps"), UPDATES);
        char *line = strchr(json, '{');
        assert_true(line && !strchr(line + 1, '{')); /* one --json line, from process 0 only */
        free(json);
        /* the same curve, and the same held-out losses, up to summation order */
        double worst = compare_logs(one, out, 1e-5);
        char *adapter = tu_path(out, "adapter_model.safetensors");
        double rel = tensors_rel_diff(adapter, adapter_one);
        printf("  %d processes: loss of every update within %.2e (relative) of one process; adapter within %.2e\n", np,
               worst, rel);
        assert_true(rel <= 1e-5);
        free(adapter);
        tu_rmtree(out);
    }
    /* full fine-tuning */
    char full[256];
    snprintf(full, sizeof full, "--method full --lr 1e-3 --steps %d --batch 5 --seed 3", UPDATES / 4 + 1);
    json = finetune(f, 0, one, full);
    free(json);
    json = finetune(f, 2, out, full);
    free(json);
    double worst = compare_logs(one, out, 1e-5);
    char *mo = tu_path(one, "model.safetensors"), *mm = tu_path(out, "model.safetensors");
    double rel = tensors_rel_diff(mm, mo);
    printf("  full fine-tuning, 2 processes: losses within %.2e, weights within %.2e\n", worst, rel);
    assert_true(rel <= 1e-6);
    tu_rmtree(one), tu_rmtree(out);
    free(mo), free(mm), free(adapter_one), free(one), free(out);
}

/* A run of 2 processes stopped after its save halfway continues on 3 processes as one process would run it. */
static void finetune_resumes_a_2_process_run_on_3_processes(void **state) {
    const fixture *f = *state;
    tu_need_files(shared, 3);
    const char *common = "--method pissa_niter_4 --rank 4 --lr 2e-3 --batch 4 --accum 2 --schedule constant "
                         "--warmup 2 --dropout 0.1 --seed 5";
    char *whole = tu_path(f->dir, "whole"), *part = tu_path(f->dir, "part"), args[1024];
    const int total = UPDATES / 4 + 3, split = total / 2;
    snprintf(args, sizeof args, "--steps %d %s", total, common);
    free(finetune(f, 0, whole, args));
    snprintf(args, sizeof args, "--steps %d %s", split, common);
    free(finetune(f, 2, part, args));
    snprintf(args, sizeof args, "--steps %d --resume %s/state %s", total, part, common);
    char *json = finetune(f, 3, part, args);
    assert_int_equal((int)json_number(json, "steps"), total);
    free(json);
    double worst = compare_logs(whole, part, 1e-5); /* log.csv kept updates 1..4 of the first run */
    printf("  2 processes, then 3 from the state: within %.2e of one process\n", worst);
    tu_rmtree(whole), tu_rmtree(part);
    free(whole), free(part);
}

/* Every file under DIR with its bytes, as one string, to compare two states of a folder. Caller frees. */
static char *folder_bytes(const fixture *f, const char *dir) {
    char cmd[2048], *out;
    snprintf(cmd, sizeof cmd, "cd '%s' && find . -type f | LC_ALL=C sort | while read -r p; do echo \"$p\"; "
             "cat \"$p\"; echo; done", dir);
    assert_int_equal(run_prog(f, cmd, &out), 0);
    return out;
}

/* Runs pissa-finetune on the synthetic model with 2 processes, where process 1 gets OPT1 and process 0 OPT0
 * (different files on different nodes, say); expects a failure whose message starts with WHO (the process) and has
 * WHAT. */
static void expect_failure(const fixture *f, const char *out, const char *opt0, const char *opt1, const char *who,
                           const char *what) {
    char cmd[4096], *output;
    snprintf(cmd, sizeof cmd, "%s -np 2 sh -c 'if [ \"${OMPI_COMM_WORLD_RANK:-$PMI_RANK}\" = 1 ]; then o=\"%s\"; "
             "else o=\"%s\"; fi; exec %s --out %s --method lora --rank 2 --batch 4 --steps 3 --save-every 1 --threads "
             "1 -q $o' 2>&1", MPIRUN, opt1, opt0, PISSA_FINETUNE_EXE, out);
    int rc = run_prog(f, cmd, &output);
    const char *line = strstr(output, "pissa-finetune: ");
    if (rc == 0 || rc == 124 || !line || strncmp(line + 16, who, strlen(who)) || !strstr(line, what))
        fail_msg("expected a failure \"%s...%s\"; exit %d%s:\n%s", who, what, rc, rc == 124 ? " (a hang)" : "",
                 output);
    free(output);
}

static void failure_on_one_process_ends_every_process_with_its_message(void **state) {
    const fixture *f = *state;
    char *out = tu_path(f->dir, "keep"), *bad = tu_path(f->dir, "bad.jsonl"), good[1024], opt[1024];
    snprintf(good, sizeof good, "--model %s --data %s", f->synth, f->jsonl);
    /* a good OUT first: failures after it must leave it byte for byte */
    char cmd[4096], *output;
    snprintf(cmd, sizeof cmd, "%s -np 2 %s %s --out %s --method lora --rank 2 --batch 4 --steps 2 --threads 1 -q 2>&1",
             MPIRUN, PISSA_FINETUNE_EXE, good, out);
    assert_int_equal(run_prog(f, cmd, &output), 0);
    free(output);
    char *before = folder_bytes(f, out);

    /* process 1 reads a bad data file: it fails before training, every process ends with its message */
    tu_write_bytes(bad, "{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [1, \"x\"]}\n", 48);
    snprintf(opt, sizeof opt, "--model %s --data %s", f->synth, bad);
    expect_failure(f, out, good, opt, "rank 1 of 2: ", "bad.jsonl:2: input_ids[1] is not an integer");
    /* process 1's data differ (both valid): refused before the first update */
    snprintf(opt, sizeof opt, "--model %s --data %s", f->synth, f->other_jsonl);
    expect_failure(f, out, good, opt, "trainer: trainer: rank 1 of 2 ", "has other training data than rank 0");
    /* process 1 computes NaN in update 1 (its copy of the model has a NaN weight) */
    snprintf(opt, sizeof opt, "--model %s --data %s", f->nan_model, f->jsonl);
    expect_failure(f, out, good, opt, "update 1: rank 1 of 2: ", "trainer: update 1: the loss of micro-batch 1 is nan");
    char *after = folder_bytes(f, out);
    assert_string_equal(before, after);

    /* process 0 cannot write OUT (a path under a regular file): its message, from its first save */
    char *blocked = tu_path(bad, "out");
    snprintf(cmd, sizeof cmd, "%s -np 2 %s %s --out %s --method lora --rank 2 --batch 4 --steps 3 --threads 1 -q 2>&1",
             MPIRUN, PISSA_FINETUNE_EXE, good, blocked);
    int rc = run_prog(f, cmd, &output);
    if (rc == 0 || rc == 124 || !strstr(output, "rank 0 of 2: "))
        fail_msg("expected a failure of rank 0; exit %d:\n%s", rc, output);
    free(output);
    tu_rmtree(out);
    free(blocked), free(before), free(after), free(out), free(bad);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(finetune_over_2_and_3_processes_reproduces_one_process),
        cmocka_unit_test(finetune_resumes_a_2_process_run_on_3_processes),
        cmocka_unit_test(failure_on_one_process_ends_every_process_with_its_message),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
