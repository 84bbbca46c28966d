/* Statuses, per-thread error messages, the log callback, version, small allocation helpers. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_error[2048];

static pissa_log_fn log_fn;
static void *log_user;

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
    if (log_fn) log_fn(PISSA_LOG_DEBUG, last_error, log_user);
    return s;
}

void pissa_set_log_callback(pissa_log_fn fn, void *user) {
    log_fn = fn;
    log_user = user;
}

void pissa__log(pissa_log_level level, const char *fmt, ...) {
    if (!log_fn) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_fn(level, buf, log_user);
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
