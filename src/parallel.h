/* Internal: a persistent pool of worker threads for the training kernels, and the switch that keeps OpenBLAS
 * single-threaded inside it.
 *
 * Why: at the sizes of a training step's products (a few hundred rows by 64..4096 columns) OpenBLAS's own threads
 * spend more time handing work over (sched_yield loops) than computing, and attention is hundreds of tiny
 * products, one per (batch row, head). The kernels instead split their work into fixed, contiguous ranges, one
 * per thread, each computed with single-threaded BLAS calls. The split depends only on the thread count, so
 * results are deterministic for a given pissa_set_num_threads. */
#ifndef PISSA_PARALLEL_H
#define PISSA_PARALLEL_H

/* Most parts a region has (pissa__par_threads never returns more), so per-part results fit fixed arrays. */
#define PISSA__PAR_MAX 64

/* Threads the kernels use: pissa_get_num_threads(), as it was before any serial region began. */
int pissa__par_threads(void);

/* Calls fn(ctx, part, begin, end) on the ranges of [0, n) that split it into min(n, nthreads) contiguous parts of
 * equal size (the first n % parts one longer); part 0 runs on the calling thread, the others on pool workers.
 * PART (0 .. parts-1) lets fn pick per-thread scratch. Returns when all have finished. BLAS calls inside fn are
 * single-threaded (pissa__blas_serial_begin). If no worker can be started, or the workers are busy with another
 * thread's region, the calling thread runs every part in order: the same ranges, the same results.
 * Not re-entrant: fn must not call pissa__par_for (it runs everything inline if it does). Thread-safe: regions
 * of different threads run at the same time (one of them on the workers). */
void pissa__par_for(int n, int nthreads, void (*fn)(void *ctx, int part, int begin, int end), void *ctx);

/* OpenBLAS uses one thread between begin and end (nestable, and safe from several threads: the first begin
 * saves the thread count, the last end restores it; pissa_set_num_threads in between changes the saved value). */
void pissa__blas_serial_begin(void);
void pissa__blas_serial_end(void);
/* Sets or reads the BLAS thread count, through the serial state (used by pissa_set/get_num_threads). */
void pissa__blas_set_threads(int n);

#endif
