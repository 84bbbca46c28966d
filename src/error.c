/* Statuses, per-thread error messages, the log callback, version, small allocation helpers. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_error[2048];

/* The callback and its user pointer change together under log_mu, and are read together under it, so a thread
 * never calls one callback with another's user pointer; the call itself happens outside the lock (a callback may log,
 * or set another callback). log_set lets the common case, no callback, return without locking. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static pissa_log_fn log_fn;
static void *log_user;
static atomic_int log_set;

static pissa_log_fn log_get(void **user) {
    if (!atomic_load_explicit(&log_set, memory_order_acquire)) return NULL;
    pthread_mutex_lock(&log_mu);
    pissa_log_fn fn = log_fn;
    *user = log_user;
    pthread_mutex_unlock(&log_mu);
    return fn;
}

unsigned pissa_version_number(void) { return PISSA_VERSION_NUMBER; }
const char *pissa_version_string(void) { return PISSA_VERSION_STRING; }

const char *pissa_status_name(pissa_status s) {
    switch (s) {
    case PISSA_OK: return "PISSA_OK";
    case PISSA_ERR_INVALID_ARG: return "PISSA_ERR_INVALID_ARG";
    case PISSA_ERR_NOMEM: return "PISSA_ERR_NOMEM";
    case PISSA_ERR_IO: return "PISSA_ERR_IO";
    case PISSA_ERR_FORMAT: return "PISSA_ERR_FORMAT";
    case PISSA_ERR_UNSUPPORTED: return "PISSA_ERR_UNSUPPORTED";
    case PISSA_ERR_SHAPE: return "PISSA_ERR_SHAPE";
    case PISSA_ERR_NOT_FOUND: return "PISSA_ERR_NOT_FOUND";
    case PISSA_ERR_NUMERIC: return "PISSA_ERR_NUMERIC";
    }
    return "PISSA_ERR_UNKNOWN";
}

const char *pissa_last_error(void) { return last_error; }
void pissa_clear_error(void) { last_error[0] = '\0'; }

pissa_status pissa__fail(pissa_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    void *user;
    pissa_log_fn fn = log_get(&user);
    if (fn) fn(PISSA_LOG_DEBUG, last_error, user);
    return s;
}

/* A child of fork() may inherit log_mu locked by a thread that does not exist there. */
static void log_reset_in_child(void) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    log_mu = m;
}
static void log_register_atfork(void) { pthread_atfork(NULL, NULL, log_reset_in_child); }

void pissa_set_log_callback(pissa_log_fn fn, void *user) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, log_register_atfork);
    pthread_mutex_lock(&log_mu);
    log_fn = fn;
    log_user = fn ? user : NULL;
    atomic_store_explicit(&log_set, fn != NULL, memory_order_release);
    pthread_mutex_unlock(&log_mu);
}

void pissa__log(pissa_log_level level, const char *fmt, ...) {
    void *user;
    pissa_log_fn fn = log_get(&user);
    if (!fn) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fn(level, buf, user);
}

void *pissa__alloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) return NULL;
    size_t bytes = n * size;
    return malloc(bytes ? bytes : 1);
}

void *pissa__calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }

char *pissa__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void pissa_free(void *p) { free(p); }
