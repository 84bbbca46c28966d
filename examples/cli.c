#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const char *cli_prog = "pissa";

static void vreport(const char *fmt, va_list ap) {
    fprintf(stderr, "%s: ", cli_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help'.\n", cli_prog);
    exit(2);
}

void cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
    exit(1);
}

void cli_check(pissa_status s, const char *what) {
    if (s != PISSA_OK) cli_fail("%s: %s", what, pissa_last_error());
}

int64_t cli_int(const char *opt, const char *val, int64_t min, int64_t max) {
    char *end;
    errno = 0;
    long long v = strtoll(val, &end, 10);
    if (errno || end == val || *end) cli_usage_error("%s: '%s' is not an integer", opt, val);
    if (v < min || v > max) cli_usage_error("%s: %lld is outside %lld..%lld", opt, v, (long long)min, (long long)max);
    return v;
}

uint64_t cli_u64(const char *opt, const char *val) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(val, &end, 10);
    if (errno || end == val || *end || *val == '-') cli_usage_error("%s: '%s' is not a non-negative integer", opt, val);
    return v;
}

double cli_double(const char *opt, const char *val) {
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end) cli_usage_error("%s: '%s' is not a number", opt, val);
    return v;
}

const char *cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) cli_usage_error("option %s needs a value", argv[*i]);
    return argv[++*i];
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cli_log_to_stderr(pissa_log_level level, const char *msg, void *user) {
    (void)user;
    if (level <= PISSA_LOG_WARN) fprintf(stderr, "%s: %s: %s\n", cli_prog, level == PISSA_LOG_ERROR ? "error" : "warning", msg);
}

void cli_mkdirs(const char *dir) {
    char *p = strdup(dir);
    if (!p) cli_fail("out of memory");
    for (char *q = p + 1;; q++) {
        char c = *q;
        if (c != '/' && c != '\0') continue;
        *q = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) cli_fail("%s: cannot create directory: %s", p, strerror(errno));
        *q = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) cli_fail("%s: not a directory", dir);
    free(p);
}
