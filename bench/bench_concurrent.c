/* Two trainings in two threads of one process, against the same two one after the other: do two models really run
 * at the same time (include/pissa/common.h, "Threads")?
 *
 *   bench_concurrent [--model PATH] [--threads 1,2] [--steps 10] [--batch 8] [--seq 256] [--repeats 3]
 *
 * Each training: the model at PATH (default ../shared/data/stories260K/stories260K.bin) with LoRA r 16 on all 7
 * projections, STEPS AdamW updates of BATCH rows of SEQ pseudo-random tokens (different rows for the two). The
 * models, data and trainers are made first; only the updates are timed. For each thread count (pissa_set_num_threads,
 * process-wide) it prints the wall time of A then B, of A and B at once in two threads, and their ratio: 0.5 is
 * perfect overlap, 1.0 none. Median of REPEATS. Results of the concurrent runs are checked against the sequential
 * ones bit for bit (a mismatch exits 1).
 *
 * Output: one line per thread count, then "RESULT threads=N sequential=S concurrent=C ratio=R" lines. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "pissa.h"

typedef struct run {
    pissa_model *m;
    pissa_dataset *d;
    pissa_trainer *t;
    int steps;
    double last_loss;
    pissa_status st;
} run;

static void open_run(run *r, const char *model, int which, int steps, int batch, int seq) {
    cli_check(pissa_model_load(model, &r->m), model);
    pissa_adapter_opts ao = pissa_adapter_default_opts();
    ao.targets = PISSA_PROJ_ALL;
    ao.init.rank = 16;
    ao.init.alpha = 16;
    ao.init.seed = (uint64_t)which;
    cli_check(pissa_init_parse("lora", &ao.init), "lora");
    cli_check(pissa_model_add_adapters(r->m, &ao), "adapters");
    int32_t V = (int32_t)pissa_model_config(r->m)->vocab_size;
    size_t rows = (size_t)batch * 4, n = rows * (size_t)seq;
    int32_t *ids = xmalloc(n * sizeof *ids);
    int64_t *offsets = xmalloc((rows + 1) * sizeof *offsets);
    uint64_t x = 88172645463325252ULL + (uint64_t)which;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)V);
    }
    for (size_t i = 0; i <= rows; i++) offsets[i] = (int64_t)(i * (size_t)seq);
    cli_check(pissa_dataset_from_rows(ids, NULL, offsets, rows, V, &r->d), "rows");
    free(ids);
    free(offsets);
    pissa_train_opts o = pissa_train_default_opts();
    o.total_steps = steps;
    o.batch = batch;
    o.seed = (uint64_t)which;
    cli_check(pissa_trainer_create(r->m, r->d, &o, &r->t), "trainer");
    r->steps = steps;
}

static void close_run(run *r) {
    pissa_trainer_free(r->t);
    pissa_dataset_free(r->d);
    pissa_model_free(r->m);
}

static void *train(void *arg) {
    run *r = arg;
    pissa_step_info s = {0};
    r->st = PISSA_OK;
    for (int k = 0; k < r->steps && r->st == PISSA_OK; k++) r->st = pissa_trainer_step(r->t, &s);
    r->last_loss = s.loss;
    return NULL;
}

int main(int argc, char **argv) {
    cli_prog = "bench_concurrent";
    const char *model = "../shared/data/stories260K/stories260K.bin", *threads = "1,2";
    int steps = 10, batch = 8, seq = 256, repeats = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--model")) model = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--threads")) threads = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--steps")) steps = (int)cli_int(a, cli_value(argc, argv, &i), 1, 100000);
        else if (!strcmp(a, "--batch")) batch = (int)cli_int(a, cli_value(argc, argv, &i), 1, 4096);
        else if (!strcmp(a, "--seq")) seq = (int)cli_int(a, cli_value(argc, argv, &i), 2, 1 << 20);
        else if (!strcmp(a, "--repeats")) repeats = (int)cli_int(a, cli_value(argc, argv, &i), 1, 100);
        else cli_fail("unknown option '%s'", a);
    }
    char list[64];
    snprintf(list, sizeof list, "%s", threads);
    for (char *tk = strtok(list, ","); tk; tk = strtok(NULL, ",")) {
        int nt = atoi(tk);
        if (nt < 1) cli_fail("--threads: '%s' is not a thread count", tk);
        pissa_set_num_threads(nt);
        double seq_t[100], con_t[100], want[2] = {0, 0};
        for (int rep = 0; rep < repeats; rep++) {
            run r[2];
            for (int w = 0; w < 2; w++) open_run(&r[w], model, w, steps, batch, seq);
            double t0 = cli_now();
            for (int w = 0; w < 2; w++) train(&r[w]);
            seq_t[rep] = cli_now() - t0;
            for (int w = 0; w < 2; w++) {
                cli_check(r[w].st, "sequential training");
                want[w] = r[w].last_loss;
                close_run(&r[w]);
            }
            for (int w = 0; w < 2; w++) open_run(&r[w], model, w, steps, batch, seq);
            pthread_t th[2];
            t0 = cli_now();
            for (int w = 0; w < 2; w++)
                if (pthread_create(&th[w], NULL, train, &r[w])) cli_fail("pthread_create failed");
            for (int w = 0; w < 2; w++) pthread_join(th[w], NULL);
            con_t[rep] = cli_now() - t0;
            for (int w = 0; w < 2; w++) {
                cli_check(r[w].st, "concurrent training");
                if (memcmp(&r[w].last_loss, &want[w], sizeof want[w]))
                    cli_fail("training %d: loss %.9g in two threads, %.9g alone", w, r[w].last_loss, want[w]);
                close_run(&r[w]);
            }
        }
        qsort(seq_t, (size_t)repeats, sizeof *seq_t, cmp_double);
        qsort(con_t, (size_t)repeats, sizeof *con_t, cmp_double);
        double s = seq_t[repeats / 2], c = con_t[repeats / 2];
        printf("threads %d: A then B %.3f s, A and B at once %.3f s: ratio %.2f (0.5 = full overlap, 1 = none)\n",
               nt, s, c, c / s);
        printf("RESULT threads=%d sequential=%.4f concurrent=%.4f ratio=%.3f\n", nt, s, c, c / s);
    }
    return 0;
}
