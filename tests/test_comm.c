/* Data-parallel training over MPI: run under `mpirun -np N test_comm` (ctest runs N = 2 and N = 3, an uneven split).
 * Every process runs every test; each compares its distributed trainer with a one-process trainer it runs itself on
 * the same model and data, so the reference is the library's own single-process path (tested against PyTorch in
 * test_train). The program owns MPI here, as a C caller would: it initialises MPI and hands MPI_COMM_WORLD over. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"
#include "internal.h"
#include "testutil.h"

static pissa_comm *comm;
static int rank, size;

typedef struct fixture {
    char *dir, *model, *data, *bad_ids, *other_data, *eval;
} fixture;
static fixture fx;

/* Rows of 6..17 tokens of a repetitive language; the first (i % 4) labels of row i are ignored (a prompt), so the
 * micro-batches and the processes' slices hold different numbers of targets and the token weighting matters. Row
 * BAD_ROW (if >= 0) gets the id BAD_ID at position 2. */
static void write_rows(const char *path, int rows, int offset, int bad_row, int bad_id) {
    FILE *f = fopen(path, "w");
    if (!f) exit(1);
    for (int i = 0; i < rows; i++) {
        int len = 6 + (i * 7 + offset) % 12, start = (i + offset) % 5, stride = 1 + (i + offset) % 3;
        fprintf(f, "{\"input_ids\": [");
        for (int t = 0; t < len; t++)
            fprintf(f, "%s%d", t ? ", " : "", i == bad_row && t == 2 ? bad_id : 3 + (start + stride * t) % 60);
        fprintf(f, "], \"labels\": [");
        for (int t = 0; t < len; t++)
            fprintf(f, "%s%d", t ? ", " : "", t < i % 4 ? -100 : i == bad_row && t == 2 ? bad_id
                                                                                       : 3 + (start + stride * t) % 60);
        fprintf(f, "]}\n");
    }
    fclose(f);
}

/* Each process writes its own copy (before MPI starts: no fork inside MPI); pissa-synth is deterministic. */
static void make_fixture(void) {
    fx.dir = tu_tempdir("comm");
    fx.model = tu_path(fx.dir, "base");
    fx.data = tu_path(fx.dir, "train.jsonl");
    fx.bad_ids = tu_path(fx.dir, "bad_ids.jsonl");
    fx.other_data = tu_path(fx.dir, "other.jsonl");
    fx.eval = tu_path(fx.dir, "eval.jsonl");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --out %s --layers 2 --dim 32 --hidden 48 --heads 4 --kv-heads 2 --vocab 64 --seq 64",
             PISSA_SYNTH_EXE, fx.model);
    if (tu_run(cmd, NULL) != 0) exit(1);
    write_rows(fx.data, 23, 0, -1, 0);
    write_rows(fx.bad_ids, 23, 0, 4, 70); /* row 4: last row of the first micro-batch of 5 without shuffling */
    write_rows(fx.other_data, 23, 1, -1, 0);
    write_rows(fx.eval, 13, 3, -1, 0);
}

typedef struct run {
    pissa_model *m;
    pissa_dataset *d;
    pissa_trainer *t;
} run;

static int64_t pack_len; /* > 0: the training rows packed into rows of this many tokens (pissa_dataset_pack) */

/* INIT: an adapter method, or "full". C: the communicator, or NULL for one process. */
static pissa_status run_open(const char *init, double dropout, const pissa_train_opts *o, const char *data,
                             int vocab, pissa_comm *c, run *r) {
    assert_ok(pissa_model_load(fx.model, &r->m));
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
    assert_ok(pissa_dataset_load_jsonl(data, vocab, &r->d));
    if (pack_len > 0) {
        pissa_dataset *packed;
        assert_ok(pissa_dataset_pack(r->d, pack_len, &packed));
        pissa_dataset_free(r->d);
        r->d = packed;
    }
    r->t = NULL;
    return pissa_trainer_create_comm(r->m, r->d, o, c, &r->t);
}

static void run_close(run *r) {
    pissa_trainer_free(r->t);
    pissa_dataset_free(r->d);
    pissa_model_free(r->m);
}

/* Every trainable tensor, concatenated (caller frees). */
static float *params(const pissa_model *m, size_t *n) {
    size_t total = 0, k = pissa_model_param_count(m);
    pissa_param_view v;
    for (size_t i = 0; i < k; i++) {
        assert_ok(pissa_model_param(m, i, &v));
        total += (size_t)(v.rows * v.cols);
    }
    float *x = malloc(sizeof(float) * total), *p = x;
    for (size_t i = 0; i < k; i++) {
        assert_ok(pissa_model_param(m, i, &v));
        memcpy(p, v.data, sizeof(float) * (size_t)(v.rows * v.cols)), p += v.rows * v.cols;
    }
    *n = total;
    return x;
}

/* 1 if every process holds the same N bytes at P. */
static int same_everywhere(const void *p, size_t n) {
    uint64_t h = pissa__fingerprint(PISSA__FP_SEED, p, n);
    int other = 0;
    assert_ok(pissa__comm_compare_u64(comm, &h, 1, &other));
    return other < 0;
}

static pissa_train_opts base_opts(int steps) {
    pissa_train_opts o = pissa_train_default_opts();
    o.optim.lr = 5e-3;
    o.optim.weight_decay = 0.01;
    o.total_steps = steps;
    o.batch = 5; /* 3 + 2 over two processes, 2 + 2 + 1 over three */
    o.accum = 2;
    o.max_grad_norm = 0.5;
    o.schedule = PISSA_SCHEDULE_COSINE;
    o.warmup = 2;
    o.seed = 11;
    return o;
}

/* ---- the collectives ---- */

static void agree_gives_every_process_the_failing_process_message(void **state) {
    (void)state;
    assert_int_equal(pissa_comm_agree(comm, PISSA_OK, NULL), PISSA_OK);
    /* the last process fails alone, with its own message */
    char msg[64];
    snprintf(msg, sizeof msg, "boom on %d", rank);
    pissa_status st = pissa_comm_agree(comm, rank == size - 1 ? PISSA_ERR_FORMAT : PISSA_OK, msg);
    assert_int_equal(st, PISSA_ERR_FORMAT);
    char want[128];
    snprintf(want, sizeof want, "rank %d of %d: boom on %d", size - 1, size, size - 1);
    assert_string_equal(pissa_last_error(), want);
    /* every process fails: the lowest rank's status and message (the library's own last error when MESSAGE is NULL) */
    pissa__fail(rank ? PISSA_ERR_IO : PISSA_ERR_SHAPE, "own error of %d", rank);
    st = pissa_comm_agree(comm, rank ? PISSA_ERR_IO : PISSA_ERR_SHAPE, NULL);
    assert_int_equal(st, PISSA_ERR_SHAPE);
    snprintf(want, sizeof want, "rank 0 of %d: own error of 0", size);
    assert_string_equal(pissa_last_error(), want);
}

static void sum_f32_is_the_sum_with_the_same_bits_everywhere(void **state) {
    (void)state;
    /* lengths below, at and past the process count, and one that does not divide by it */
    const size_t lens[] = {1, 2, 3, 7, 1000, 100003};
    for (size_t c = 0; c < sizeof lens / sizeof lens[0]; c++) {
        size_t n = lens[c];
        float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
        double *want = calloc(n, sizeof *want), *scale = calloc(n, sizeof *scale);
        for (int r = 0; r < size; r++) { /* every process's vector, as each process draws it */
            tu_gaussian(y, n, 100 + (uint64_t)r);
            for (size_t i = 0; i < n; i++) want[i] += y[i], scale[i] += fabs(y[i]);
            if (r == rank) memcpy(x, y, sizeof(float) * n);
        }
        assert_ok(pissa__comm_sum_f32(comm, x, n, "test"));
        /* P − 1 float additions in some order: |error| <= (P − 1)·2⁻²⁴·Σ|terms| */
        double worst = 0;
        for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(x[i] - want[i]) / scale[i]);
        if (worst > (size - 1) * 0x1p-24) fail_msg("n %zu: error %.3g of the terms' magnitude", n, worst);
        assert_true(same_everywhere(x, sizeof(float) * n));
        free(x);
        free(y);
        free(want);
        free(scale);
    }
}

/* ---- training ---- */

/* STEPS updates of a distributed and a one-process trainer, side by side: loss, tokens, gradient norm of every update
 * and the trainable tensors at the end. Returns the worst relative loss difference. */
static double compare_with_one_process(const char *init, double dropout, const pissa_train_opts *o, int steps,
                                       double tol) {
    run d, one;
    assert_ok(run_open(init, dropout, o, fx.data, 64, comm, &d));
    assert_ok(run_open(init, dropout, o, fx.data, 64, NULL, &one));
    double worst = 0, worst_norm = 0;
    for (int k = 0; k < steps; k++) {
        pissa_step_info a, b;
        assert_ok(pissa_trainer_step(d.t, &a));
        assert_ok(pissa_trainer_step(one.t, &b));
        assert_int_equal(a.tokens, b.tokens);
        assert_int_equal(a.epoch, b.epoch);
        assert_true(a.lr == b.lr);
        worst = fmax(worst, fabs(a.loss - b.loss) / b.loss);
        worst_norm = fmax(worst_norm, fabs(a.grad_norm - b.grad_norm) / b.grad_norm);
        assert_true(same_everywhere(&a, sizeof a)); /* every process reports the same update */
    }
    size_t n, n2;
    float *x = params(d.m, &n), *y = params(one.m, &n2);
    assert_int_equal(n, n2);
    double rel = tu_diff_norm(x, y, n) / tu_norm(y, n);
    if (rank == 0)
        printf("  %s, %d processes, %d updates: loss rel diff <= %.2e, grad norm %.2e, parameters %.2e\n", init, size,
               steps, worst, worst_norm, rel);
    assert_true(worst <= tol);
    assert_true(worst_norm <= 10 * tol);
    assert_true(rel <= tol);
    assert_true(same_everywhere(x, sizeof(float) * n)); /* the processes never drift apart */
    free(x);
    free(y);
    run_close(&d);
    run_close(&one);
    return worst;
}

static void adapters_with_dropout_train_as_one_process(void **state) {
    (void)state;
    pissa_train_opts o = base_opts(20);
    compare_with_one_process("pissa", 0.1, &o, 20, 1e-5);
    o.optim.kind = PISSA_OPTIM_SGD;
    o.optim.momentum = 0.9;
    o.optim.lr = 2e-2;
    compare_with_one_process("lora", 0.2, &o, 20, 1e-5);
}

static void fewer_rows_than_processes_still_trains_as_one_process(void **state) {
    (void)state;
    pissa_train_opts o = base_opts(6);
    o.batch = 1; /* the other processes hold no rows */
    o.accum = 3;
    compare_with_one_process("pissa", 0.1, &o, 6, 1e-5);
}

/* Packed rows carry their own positions: each process must take its slice of them with its slice of the ids. */
static void packed_rows_train_as_one_process(void **state) {
    (void)state;
    pissa_train_opts o = base_opts(6);
    o.batch = 3; /* 23 rows of 6..17 tokens packed into rows of 40: 2 + 1 over two processes, 1 + 1 + 1 over three */
    pack_len = 40;
    compare_with_one_process("pissa", 0.1, &o, 6, 1e-5);
    pack_len = 0;
}

static void full_finetuning_trains_as_one_process(void **state) {
    (void)state;
    pissa_train_opts o = base_opts(6);
    o.optim.lr = 1e-3;
    compare_with_one_process("full", 0.0, &o, 6, 1e-5);
}

static void evaluation_equals_one_process_bit_for_bit(void **state) {
    (void)state;
    pissa_train_opts o = base_opts(4);
    o.batch = 3; /* 13 rows: 5 batches, the last padded */
    run d, one;
    assert_ok(run_open("pissa", 0.0, &o, fx.data, 64, comm, &d));
    assert_ok(run_open("pissa", 0.0, &o, fx.data, 64, NULL, &one));
    pissa_dataset *ev;
    assert_ok(pissa_dataset_load_jsonl(fx.eval, 64, &ev));
    double a, b;
    int64_t ca, cb;
    assert_ok(pissa_trainer_evaluate(d.t, ev, &a, &ca));
    assert_ok(pissa_trainer_evaluate(one.t, ev, &b, &cb));
    assert_int_equal(ca, cb);
    assert_true(a == b);
    /* a process with another evaluation set is refused, everywhere */
    pissa_dataset *other;
    assert_ok(pissa_dataset_load_jsonl(rank == size - 1 ? fx.data : fx.eval, 64, &other));
    assert_int_equal(pissa_trainer_evaluate(d.t, other, &a, NULL), PISSA_ERR_INVALID_ARG);
    char want[128];
    snprintf(want, sizeof want, "evaluate: rank %d of %d has another data set than rank 0", size - 1, size);
    assert_string_equal(pissa_last_error(), want);
    pissa_dataset_free(other);
    pissa_dataset_free(ev);
    run_close(&d);
    run_close(&one);
}

/* ---- saving and resuming ---- */

static void train(run *r, int steps, double *losses) {
    for (int k = 0; k < steps; k++) {
        pissa_step_info s;
        assert_ok(pissa_trainer_step(r->t, &s));
        if (losses) losses[k] = s.loss;
    }
}

static void resume_continues_on_any_process_count(void **state) {
    (void)state;
    pissa_train_opts o = base_opts(8);
    /* a folder only process 0 writes and reads */
    char path[4096] = "";
    if (rank == 0) {
        char *d = tu_tempdir("comm-state");
        snprintf(path, sizeof path, "%s/state", d);
        free(d);
    }
    MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
    double whole[8], part[8], single[8];
    run a, b, c, s;
    assert_ok(run_open("pissa", 0.1, &o, fx.data, 64, comm, &a));
    train(&a, 8, whole);
    size_t n;
    float *x = params(a.m, &n);
    run_close(&a);

    assert_ok(run_open("pissa", 0.1, &o, fx.data, 64, comm, &b));
    train(&b, 3, part);
    assert_ok(pissa_comm_agree(comm, rank == 0 ? pissa_trainer_save_state(b.t, path) : PISSA_OK, NULL));
    run_close(&b);

    /* the same process count: process 0 reads, the others receive; bit for bit the uninterrupted run */
    assert_ok(run_open("pissa", 0.1, &o, fx.data, 64, comm, &c));
    assert_ok(pissa_trainer_load_state(c.t, path));
    assert_int_equal(pissa_trainer_steps(c.t), 3);
    train(&c, 5, part + 3);
    assert_memory_equal(whole, part, sizeof whole);
    size_t n2;
    float *y = params(c.m, &n2);
    assert_memory_equal(x, y, sizeof(float) * n);
    run_close(&c);

    /* one process continues the state of N: the same run up to summation order */
    if (rank == 0) {
        assert_ok(run_open("pissa", 0.1, &o, fx.data, 64, NULL, &s));
        assert_ok(pissa_trainer_load_state(s.t, path));
        train(&s, 5, single + 3);
        for (int k = 3; k < 8; k++) assert_true(fabs(single[k] - whole[k]) <= 1e-5 * whole[k]);
        run_close(&s);
    }
    /* a state process 0 cannot read fails on every process, with its message */
    char missing[4200];
    snprintf(missing, sizeof missing, "%s-missing", path);
    assert_ok(run_open("pissa", 0.1, &o, fx.data, 64, comm, &c));
    pissa_status st = pissa_trainer_load_state(c.t, missing);
    assert_int_not_equal(st, PISSA_OK);
    assert_non_null(strstr(pissa_last_error(), "rank 0 of"));
    assert_non_null(strstr(pissa_last_error(), "state.json"));
    run_close(&c);
    free(x);
    free(y);
}

/* ---- failures on one process ---- */

static void nan_on_one_process_stops_every_process_with_its_message(void **state) {
    (void)state;
    pissa_train_opts o = base_opts(8);
    run d;
    assert_ok(run_open("pissa", 0.0, &o, fx.data, 64, comm, &d));
    train(&d, 2, NULL);
    if (rank == size - 1) { /* a NaN only the last process sees */
        pissa_adapter_view a;
        assert_ok(pissa_model_adapter(d.m, 0, &a));
        a.A[0] = NAN;
    }
    size_t n;
    float *before = params(d.m, &n);
    pissa_step_info s;
    assert_int_equal(pissa_trainer_step(d.t, &s), PISSA_ERR_NUMERIC);
    char want[128];
    snprintf(want, sizeof want, "rank %d of %d: trainer: update 3: the loss of micro-batch 1 is nan", size - 1, size);
    assert_string_equal(pissa_last_error(), want);
    float *after = params(d.m, &n);
    assert_memory_equal(before, after, sizeof(float) * n); /* no process updated anything */
    assert_int_equal(pissa_trainer_step(d.t, &s), PISSA_ERR_NUMERIC); /* and the run stays stopped everywhere */
    assert_int_equal(pissa_trainer_steps(d.t), 2);
    free(before);
    free(after);
    run_close(&d);
}

static void bad_row_on_one_process_fails_every_process_with_its_message(void **state) {
    (void)state;
    pissa_train_opts o = base_opts(4);
    o.shuffle = 0;
    run d;
    /* the data set accepts ids below 100; the model's vocabulary is 64. Row 4 (id 70) is the last row of the first
     * micro-batch: the last process's slice. */
    assert_ok(run_open("pissa", 0.0, &o, fx.bad_ids, 100, comm, &d));
    pissa_step_info s;
    assert_int_equal(pissa_trainer_step(d.t, &s), PISSA_ERR_INVALID_ARG);
    char want[64];
    snprintf(want, sizeof want, "rank %d of %d: model: input_ids[", size - 1, size);
    assert_memory_equal(pissa_last_error(), want, strlen(want));
    assert_non_null(strstr(pissa_last_error(), "= 70 is outside [0, 64)"));
    run_close(&d);
}

static void processes_with_different_inputs_are_refused(void **state) {
    (void)state;
    pissa_train_opts o = base_opts(4);
    run d;
    /* data: the last process loads another file */
    assert_int_equal(run_open("pissa", 0.0, &o, rank == size - 1 ? fx.other_data : fx.data, 64, comm, &d),
                     PISSA_ERR_INVALID_ARG);
    assert_null(d.t);
    char want[128];
    snprintf(want, sizeof want, "trainer: rank %d of %d has other training data than rank 0", size - 1, size);
    assert_memory_equal(pissa_last_error(), want, strlen(want));
    run_close(&d);
    /* options: another seed */
    pissa_train_opts o2 = o;
    o2.seed = rank == size - 1 ? 12 : 11;
    assert_int_equal(run_open("pissa", 0.0, &o2, fx.data, 64, comm, &d), PISSA_ERR_INVALID_ARG);
    snprintf(want, sizeof want, "trainer: rank %d of %d has other training options than rank 0", size - 1, size);
    assert_memory_equal(pissa_last_error(), want, strlen(want));
    run_close(&d);
    /* initial adapters: another initialisation seed (LoRA's random A) */
    assert_ok(pissa_model_load(fx.model, &d.m));
    pissa_adapter_opts ao = pissa_adapter_default_opts();
    assert_ok(pissa_init_parse("lora", &ao.init));
    ao.init.seed = (uint64_t)(rank == size - 1);
    assert_ok(pissa_model_add_adapters(d.m, &ao));
    assert_ok(pissa_dataset_load_jsonl(fx.data, 64, &d.d));
    assert_int_equal(pissa_trainer_create_comm(d.m, d.d, &o, comm, &d.t), PISSA_ERR_INVALID_ARG);
    snprintf(want, sizeof want, "trainer: rank %d of %d starts from other trainable tensors", size - 1, size);
    assert_memory_equal(pissa_last_error(), want, strlen(want));
    run_close(&d);
    /* an option only one process rejects: its message everywhere */
    o2 = o;
    o2.batch = rank == size - 1 ? 0 : 5;
    assert_int_equal(run_open("pissa", 0.0, &o2, fx.data, 64, comm, &d), PISSA_ERR_INVALID_ARG);
    snprintf(want, sizeof want, "rank %d of %d: trainer: batch 0", size - 1, size);
    assert_memory_equal(pissa_last_error(), want, strlen(want));
    run_close(&d);
}

int main(void) {
    make_fixture();
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return 1;
    MPI_Comm world = MPI_COMM_WORLD;
    if (pissa_comm_create(&world, &comm) != PISSA_OK) {
        fprintf(stderr, "test_comm: %s\n", pissa_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    rank = pissa_comm_rank(comm);
    size = pissa_comm_size(comm);
    pissa_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(agree_gives_every_process_the_failing_process_message),
        cmocka_unit_test(sum_f32_is_the_sum_with_the_same_bits_everywhere),
        cmocka_unit_test(adapters_with_dropout_train_as_one_process),
        cmocka_unit_test(fewer_rows_than_processes_still_trains_as_one_process),
        cmocka_unit_test(packed_rows_train_as_one_process),
        cmocka_unit_test(full_finetuning_trains_as_one_process),
        cmocka_unit_test(evaluation_equals_one_process_bit_for_bit),
        cmocka_unit_test(resume_continues_on_any_process_count),
        cmocka_unit_test(nan_on_one_process_stops_every_process_with_its_message),
        cmocka_unit_test(bad_row_on_one_process_fails_every_process_with_its_message),
        cmocka_unit_test(processes_with_different_inputs_are_refused),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    /* a test that failed on one process only would leave the others in a collective: end them all */
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    pissa_comm_free(comm);
    tu_rmtree(fx.dir);
    MPI_Finalize();
    return any ? 1 : 0;
}
