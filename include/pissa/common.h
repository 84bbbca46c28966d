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

/* Logging. level: 0 error, 1 warning, 2 info, 3 debug. The callback may be called from any thread
 * that calls into libpissa. With no callback (the default) the library is silent. */
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
 * default (OPENBLAS_NUM_THREADS or the number of cores). Results of every libpissa function are deterministic for
 * a given thread count. */
PISSA_API void pissa_set_num_threads(int n);
PISSA_API int pissa_get_num_threads(void);

#ifdef __cplusplus
}
#endif
#endif
