/* The worker pool of parallel.h. Workers are started on first use and live until the process exits. A region is
 * published under a mutex with a generation count; workers spin briefly on the count (regions come back to back
 * during a step: a sleep and wake-up per product would cost more than the product), then sleep on a condition.
 * One region at a time uses the workers; a region that finds them busy (another thread's) runs inline. */
#include "parallel.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>

#define SPIN 20000 /* polls of the generation count before a worker sleeps (tens of microseconds) */

/* ---- OpenBLAS thread count ---- */

static pthread_mutex_t blas_mu = PTHREAD_MUTEX_INITIALIZER;
static int serial_depth; /* open serial regions */
static int saved_threads; /* the count to restore (and the one the kernels use) while serial_depth > 0 */

void pissa__blas_serial_begin(void) {
    pthread_mutex_lock(&blas_mu);
    if (serial_depth++ == 0) {
        saved_threads = openblas_get_num_threads();
        openblas_set_num_threads(1);
    }
    pthread_mutex_unlock(&blas_mu);
}

void pissa__blas_serial_end(void) {
    pthread_mutex_lock(&blas_mu);
    if (serial_depth > 0 && --serial_depth == 0) openblas_set_num_threads(saved_threads);
    pthread_mutex_unlock(&blas_mu);
}

void pissa__blas_set_threads(int n) {
    pthread_mutex_lock(&blas_mu);
    if (serial_depth) saved_threads = n;
    else openblas_set_num_threads(n);
    pthread_mutex_unlock(&blas_mu);
}

int pissa__par_threads(void) {
    pthread_mutex_lock(&blas_mu);
    int n = serial_depth ? saved_threads : openblas_get_num_threads();
    pthread_mutex_unlock(&blas_mu);
    return n < 1 ? 1 : n > PISSA__PAR_MAX ? PISSA__PAR_MAX : n;
}

/* ---- the pool ---- */

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER; /* held by the one region using the workers; guards
                                                                  the job below (other callers run inline) */
static pthread_mutex_t wake_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cv = PTHREAD_COND_INITIALIZER, done_cv = PTHREAD_COND_INITIALIZER;
static atomic_uint generation;
static atomic_int pending; /* workers that have not finished the current region */
static int n_workers;      /* started workers: worker w runs part w + 1, if there is one */
static unsigned start_gen[PISSA__PAR_MAX]; /* the generation when worker w started: it waits for the next */
static struct {
    void (*fn)(void *, int, int, int);
    void *ctx;
    int n, parts;
} job;
static _Thread_local int in_region; /* the calling thread is inside a region (no nesting) */

static void part_range(int n, int parts, int p, int *begin, int *end) {
    int q = n / parts, r = n % parts;
    *begin = p * q + (p < r ? p : r);
    *end = *begin + q + (p < r);
}

static void run_part(int p) {
    int b, e;
    part_range(job.n, job.parts, p, &b, &e);
    if (b < e) job.fn(job.ctx, p, b, e);
}

static void *worker(void *arg) {
    int w = (int)(intptr_t)arg;
    unsigned seen = start_gen[w];
    in_region = 1;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&generation, memory_order_acquire)) == seen && spins < SPIN) spins++;
        if (g == seen) {
            pthread_mutex_lock(&wake_mu);
            while ((g = atomic_load(&generation)) == seen) pthread_cond_wait(&wake_cv, &wake_mu);
            pthread_mutex_unlock(&wake_mu);
        }
        seen = g;
        if (w + 1 < job.parts) run_part(w + 1);
        /* every worker acknowledges every region, so none can lag into the next one's job */
        if (atomic_fetch_sub_explicit(&pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&wake_mu);
            pthread_cond_broadcast(&done_cv);
            pthread_mutex_unlock(&wake_mu);
        }
    }
    return NULL;
}

/* A child of fork() has none of the parent's workers (and may inherit locked mutexes): start afresh. */
static void reset_in_child(void) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    pool_mu = wake_mu = blas_mu = m;
    wake_cv = done_cv = c;
    n_workers = 0;
    in_region = 0;
}

/* Starts workers up to WANT (under pool_mu); returns how many exist. */
static int ensure_workers(int want) {
    static int atfork_registered;
    if (!atfork_registered) atfork_registered = pthread_atfork(NULL, NULL, reset_in_child) == 0;
    while (n_workers < want && n_workers < PISSA__PAR_MAX - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        start_gen[n_workers] = atomic_load(&generation);
        int err = pthread_create(&t, &attr, worker, (void *)(intptr_t)n_workers);
        pthread_attr_destroy(&attr);
        if (err) break;
        n_workers++;
    }
    return n_workers;
}

void pissa__par_for(int n, int nthreads, void (*fn)(void *ctx, int part, int begin, int end), void *ctx) {
    if (n <= 0) return;
    int parts = nthreads < n ? nthreads : n;
    if (parts > PISSA__PAR_MAX) parts = PISSA__PAR_MAX;
    pissa__blas_serial_begin();
    if (parts < 1) parts = 1;
    /* Inline, every part on this thread in order (the same ranges, so the same results): one part, a nested call,
     * or the pool busy with another thread's region. That thread keeps the workers; this one computes its region
     * beside it instead of waiting for the pool, so two models in two threads run at once. */
    if (parts == 1 || in_region || pthread_mutex_trylock(&pool_mu) != 0) {
        for (int p = 0; p < parts; p++) {
            int b, e;
            part_range(n, parts, p, &b, &e);
            if (b < e) fn(ctx, p, b, e);
        }
        pissa__blas_serial_end();
        return;
    }
    int workers = ensure_workers(parts - 1);
    job.fn = fn;
    job.ctx = ctx;
    job.n = n;
    job.parts = parts;
    int helpers = workers < parts - 1 ? workers : parts - 1; /* parts 1..helpers run on workers */
    atomic_store(&pending, workers);
    in_region = 1;
    if (workers) {
        pthread_mutex_lock(&wake_mu);
        atomic_fetch_add_explicit(&generation, 1, memory_order_release);
        pthread_cond_broadcast(&wake_cv);
        pthread_mutex_unlock(&wake_mu);
    }
    run_part(0);
    for (int p = helpers + 1; p < parts; p++) run_part(p); /* parts no worker could take */
    int spins = 0;
    while (atomic_load_explicit(&pending, memory_order_acquire) > 0 && spins < SPIN) spins++;
    if (atomic_load(&pending) > 0) {
        pthread_mutex_lock(&wake_mu);
        while (atomic_load(&pending) > 0) pthread_cond_wait(&done_cv, &wake_mu);
        pthread_mutex_unlock(&wake_mu);
    }
    in_region = 0;
    pthread_mutex_unlock(&pool_mu);
    pissa__blas_serial_end();
}
