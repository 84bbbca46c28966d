/* The kernel thread pool (src/parallel.h): every index is visited exactly once, the split depends only on the
 * thread count, nested regions run inline, BLAS is single-threaded inside a region and restored after, and a
 * forked child can still run regions. */
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "parallel.h"
#include "testutil.h"

#include <cblas.h>

enum { N_ITEMS = 1000, MAX_PARTS = 8 };

typedef struct visit {
    atomic_int count[N_ITEMS];
    int part_of[N_ITEMS];
    int blas_threads[MAX_PARTS];
    int nested_ran;
} visit;

static void nested_fn(void *ctx, int part, int b, int e) {
    (void)part;
    atomic_fetch_add((atomic_int *)ctx, e - b);
}

static void visit_fn(void *ctx, int part, int b, int e) {
    visit *v = ctx;
    for (int i = b; i < e; i++) {
        atomic_fetch_add(&v->count[i], 1);
        v->part_of[i] = part;
    }
    v->blas_threads[part] = openblas_get_num_threads();
    if (part == 0) { /* a region inside a region runs on this thread */
        atomic_int n = 0;
        pissa__par_for(10, 4, nested_fn, &n);
        v->nested_ran = atomic_load(&n);
    }
}

static void run(visit *v, int n, int threads) {
    memset(v, 0, sizeof *v);
    pissa__par_for(n, threads, visit_fn, v);
}

static void every_index_once_in_contiguous_equal_parts(void **state) {
    (void)state;
    static visit v;
    for (int threads = 1; threads <= MAX_PARTS; threads++) {
        run(&v, N_ITEMS, threads);
        for (int i = 0; i < N_ITEMS; i++) assert_int_equal(atomic_load(&v.count[i]), 1);
        /* parts are contiguous, in order, and differ in length by at most one */
        int len[MAX_PARTS] = {0};
        for (int i = 0; i < N_ITEMS; i++) {
            if (i) assert_true(v.part_of[i] == v.part_of[i - 1] || v.part_of[i] == v.part_of[i - 1] + 1);
            len[v.part_of[i]]++;
        }
        assert_int_equal(v.part_of[N_ITEMS - 1], threads - 1);
        for (int p = 0; p < threads; p++) assert_true(len[p] == N_ITEMS / threads || len[p] == N_ITEMS / threads + 1);
        assert_int_equal(v.nested_ran, 10);
    }
    run(&v, 3, 8); /* fewer items than threads: one part per item */
    for (int i = 0; i < 3; i++) assert_int_equal(v.part_of[i], i);
    run(&v, 0, 4); /* nothing to do */
    for (int i = 0; i < N_ITEMS; i++) assert_int_equal(atomic_load(&v.count[i]), 0);
}

static void blas_is_serial_inside_and_restored_after(void **state) {
    (void)state;
    static visit v;
    pissa_set_num_threads(2);
    run(&v, N_ITEMS, 2);
    assert_int_equal(v.blas_threads[0], 1);
    assert_int_equal(v.blas_threads[1], 1);
    assert_int_equal(openblas_get_num_threads(), 2);
    /* the thread count asked for inside a serial region is the one restored */
    pissa__blas_serial_begin();
    pissa_set_num_threads(3);
    assert_int_equal(openblas_get_num_threads(), 1);
    assert_int_equal(pissa_get_num_threads(), 3);
    pissa__blas_serial_end();
    assert_int_equal(openblas_get_num_threads(), 3);
    pissa_set_num_threads(2);
}

static void a_forked_child_runs_regions(void **state) {
    (void)state;
    static visit v;
    run(&v, N_ITEMS, 2); /* the parent's worker exists */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        run(&v, N_ITEMS, 2);
        int ok = 1;
        for (int i = 0; i < N_ITEMS; i++) ok &= atomic_load(&v.count[i]) == 1;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_index_once_in_contiguous_equal_parts),
        cmocka_unit_test(blas_is_serial_inside_and_restored_after),
        cmocka_unit_test(a_forked_child_runs_regions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
