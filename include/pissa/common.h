/* libpissa — common definitions: export macro, version, status codes, errors, logging.
 *
 * Error model: every fallible function returns a pissa_status. When it is not PISSA_OK, a message naming
 * the file, field or tensor at fault is kept for the calling thread and read with pissa_last_error().
 * Nothing in the library exits, aborts or prints; diagnostics go through the log callback, if one is set. */
#ifndef PISSA_COMMON_H
#define PISSA_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(PISSA_STATIC_DEFINE)
#define PISSA_API
#elif defined(_WIN32)
#ifdef PISSA_BUILDING
#define PISSA_API __declspec(dllexport)
#else
#define PISSA_API __declspec(dllimport)
#endif
#else
#define PISSA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define PISSA_VERSION_MAJOR 0
#define PISSA_VERSION_MINOR 2
#define PISSA_VERSION_PATCH 0
#define PISSA_VERSION_NUMBER (PISSA_VERSION_MAJOR * 10000 + PISSA_VERSION_MINOR * 100 + PISSA_VERSION_PATCH)
#define PISSA_VERSION_STRING "0.2.0"

/* Runtime version of the library actually loaded (compare with PISSA_VERSION_NUMBER to detect a
 * header/library mismatch). */
PISSA_API unsigned pissa_version_number(void);
PISSA_API const char *pissa_version_string(void);

/* Status codes. Values are pinned: never renumbered, only appended. */
typedef enum pissa_status {
    PISSA_OK = 0,
    PISSA_ERR_INVALID_ARG = 1, /* a caller error: NULL pointer, bad option value, bad rank */
    PISSA_ERR_NOMEM = 2,       /* allocation failed */
    PISSA_ERR_IO = 3,          /* open/read/write/mmap/fsync/rename failed */
    PISSA_ERR_FORMAT = 4,      /* a file is malformed (truncated, bad header, bad JSON) */
    PISSA_ERR_UNSUPPORTED = 5, /* well-formed but uses a feature libpissa does not implement */
    PISSA_ERR_SHAPE = 6,       /* shapes do not agree */
    PISSA_ERR_NOT_FOUND = 7,   /* a named tensor, field or file is absent */
    PISSA_ERR_NUMERIC = 8,     /* LAPACK failed to converge, NaN/Inf met */
} pissa_status;

/* Stable name of a status ("PISSA_ERR_FORMAT"); never NULL. */
PISSA_API const char *pissa_status_name(pissa_status s);

/* Message of the last failure on the calling thread ("" if none). Borrowed; valid until the next
 * libpissa call on this thread. */
PISSA_API const char *pissa_last_error(void);
PISSA_API void pissa_clear_error(void);

/* Frees memory the library hands over ("caller frees *OUT with pissa_free"): strings such as a config's JSON text.
 * The library allocates with malloc, so free() works as well from C; pissa_free is for callers (e.g. a Python or a
 * Windows program) that cannot rely on sharing the C library's allocator. NULL is a no-op. */
PISSA_API void pissa_free(void *p);

/* Logging. level: 0 error, 1 warning, 2 info, 3 debug. With no callback (the default) the library is silent.
 * pissa_set_log_callback may be called at any time from any thread: FN and USER are replaced together, and every
 * message goes either to the old pair or to the new one, never to one's function with the other's pointer. The
 * callback runs on the thread that raised the message, possibly on several threads at once, so it must be
 * thread-safe; it may call libpissa (e.g. set another callback). When pissa_set_log_callback returns, other threads
 * may still be inside a call of the previous callback: keep its USER valid until their libpissa calls have returned
 * (simplest: set the callback before starting threads, and clear it after joining them). */
typedef enum pissa_log_level {
    PISSA_LOG_ERROR = 0,
    PISSA_LOG_WARN = 1,
    PISSA_LOG_INFO = 2,
    PISSA_LOG_DEBUG = 3
} pissa_log_level;
typedef void (*pissa_log_fn)(pissa_log_level level, const char *message, void *user);
PISSA_API void pissa_set_log_callback(pissa_log_fn fn, void *user);

/* Threads used by the BLAS/LAPACK calls (OpenBLAS) and by libpissa's own kernel pool (the training kernels and the
 * randomized SVD's products split their work over it, with OpenBLAS at one thread meanwhile). n <= 0 restores the
 * default (OPENBLAS_NUM_THREADS or the number of cores). The count is process-wide (OpenBLAS's is): set it before
 * starting concurrent work; changing it while other threads run libpissa is safe and changes how their next kernel
 * regions are split. See "Threads" below for what is deterministic. */
PISSA_API void pissa_set_num_threads(int n);
PISSA_API int pissa_get_num_threads(void);

/* Threads.
 * - Handles are not thread-safe: a model, trainer, optimizer, generator or PEFT adapter is used by one thread at a
 *   time. Different handles may be used by different threads at the same time (one model per thread). Handles that
 *   are read-only after creation may be shared by threads: a dataset, a tokenizer, a safetensors file or checkpoint
 *   opened for reading (pissa_st_*, pissa_checkpoint_* reads).
 * - Errors are per thread (pissa_last_error); the log callback, above, may be changed at any time.
 * - The kernel pool is one per process, of pissa_get_num_threads() - 1 workers plus the calling thread; it serves one
 *   kernel region at a time. A thread whose region finds it busy with another thread's region computes that region
 *   itself, on its own thread, instead of waiting: two models trained in two threads run at the same time (using up
 *   to n + 1 threads between them), and neither waits for the other's kernels.
 * - Bit for bit: the forward and backward passes, losses, evaluations and trainer updates (everything computed in
 *   kernel regions, with OpenBLAS single-threaded) are deterministic for a given pissa_set_num_threads, whatever
 *   other threads are doing (a region computed inline uses the same split as on the pool). Between thread counts
 *   they agree to float rounding, not bit for bit: each kernel splits rows or columns over the threads, never a sum,
 *   but OpenBLAS rounds a block whose width is not a multiple of its register tile differently (test_threads
 *   measures 1 vs 2 threads, and checks two models trained at once against each alone bit for bit).
 *   OpenBLAS/LAPACK work outside the kernel regions -- the SVDs of pissa_svd_* and of PiSSA initialisation
 *   (pissa_adapter_init, pissa_model_add_adapters, pissa_model_load_adapter of a PiSSA adapter), pissa_matmul,
 *   residual and merge products, the generator's products -- runs on OpenBLAS's own threads, whose count is
 *   process-wide: pissa_get_num_threads(), but 1 while any thread is inside a kernel region. Their results can
 *   differ in the last bits with that count, so they are deterministic for a given thread count when no other thread
 *   is training meanwhile; for bit-identical PiSSA initialisations, create adapters before starting concurrent
 *   training. */

#ifdef __cplusplus
}
#endif
#endif
