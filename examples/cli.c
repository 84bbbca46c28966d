#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const char *cli_prog = "pissa";

void (*cli_fail_hook)(int code, const char *msg);

void cli_report(int code, const char *msg) {
    fprintf(stderr, "%s: %s\n", cli_prog, msg);
    if (code == 2) fprintf(stderr, "Try '%s --help'.\n", cli_prog);
}

__attribute__((noreturn)) static void vdie(int code, const char *fmt, va_list ap) {
    char msg[8192];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (cli_fail_hook) cli_fail_hook(code, msg);
    cli_report(code, msg);
    exit(code);
}

void cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdie(2, fmt, ap);
    va_end(ap);
}

void cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdie(1, fmt, ap);
    va_end(ap);
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

int cli_qtype(const char *opt, const char *val) {
    pissa_qtype t;
    if (pissa_qtype_parse(val, &t) != PISSA_OK) cli_usage_error("%s: %s", opt, pissa_last_error());
    return (int)t;
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

static void copy_if_present(const char *src_dir, const char *dst_dir, const char *name) {
    char src[PATH_MAX], dst[PATH_MAX];
    snprintf(src, sizeof src, "%s/%s", src_dir, name);
    snprintf(dst, sizeof dst, "%s/%s", dst_dir, name);
    FILE *f = fopen(src, "rb");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) cli_check(pissa_write_file_atomic(dst, buf, (size_t)n), dst);
    free(buf);
    fclose(f);
}

char *cli_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) cli_fail("%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t k; buf && (k = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += k;
        if (n + 1 == cap) {
            char *p = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!p) free(buf);
            buf = p;
            cap *= 2;
        }
    }
    if (!buf) cli_fail("%s: out of memory", path);
    if (ferror(f)) cli_fail("%s: cannot read: %s", path, strerror(errno));
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

pissa_tokenizer *cli_tokenizer(const char *path, const char *model, int32_t vocab_size) {
    char *own = NULL;
    if (!path && model) { /* a Hugging Face folder brings its own tokenizer */
        struct stat st;
        own = malloc(strlen(model) + sizeof "/tokenizer.json");
        if (!own) cli_fail("out of memory");
        sprintf(own, "%s/tokenizer.json", model);
        if (stat(own, &st) == 0 && S_ISREG(st.st_mode)) path = own;
    }
    pissa_tokenizer *tok = NULL;
    if (path) cli_check(pissa_tokenizer_load(path, vocab_size, &tok), path);
    free(own);
    return tok;
}

void cli_copy_companions(const char *src_dir, const char *dst_dir) {
    static const char *names[] = {"generation_config.json", "tokenizer.json", "tokenizer.model",
                                  "tokenizer_config.json", "special_tokens_map.json"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) copy_if_present(src_dir, dst_dir, names[k]);
}

/* PATH made absolute with symlinks, ".", ".." and repeated slashes resolved; a path that does not exist yet is
 * resolved through its nearest existing ancestor. Caller frees; NULL on failure. */
static char *canonical(const char *path) {
    char *real = realpath(path, NULL);
    if (real) return real;
    if (errno != ENOENT) return NULL;
    char *copy = strdup(path), *rest = NULL;
    if (!copy) return NULL;
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') copy[--n] = '\0';
    char *slash = strrchr(copy, '/');
    const char *leaf = slash ? slash + 1 : copy;
    char *head = slash ? (slash == copy ? strdup("/") : strndup(copy, (size_t)(slash - copy))) : strdup(".");
    char *parent = head ? canonical(head) : NULL;
    if (parent && strcmp(leaf, ".") && strcmp(leaf, "..")) {
        rest = malloc(strlen(parent) + strlen(leaf) + 2);
        if (rest) sprintf(rest, "%s%s%s", parent, strcmp(parent, "/") ? "/" : "", leaf);
    } else if (parent && !strcmp(leaf, "..")) { /* an absent folder's parent: lexically */
        char *s = strrchr(parent, '/');
        rest = s && s != parent ? strndup(parent, (size_t)(s - parent)) : strdup("/");
    } else if (parent) rest = strdup(parent);
    free(parent);
    free(head);
    free(copy);
    return rest;
}

void cli_check_output(const char *out_opt, const char *out, const char *in_opt, const char *in) {
    if (!out || !in) return;
    char *o = canonical(out), *i = canonical(in);
    if (!o || !i) cli_fail("cannot resolve '%s' or '%s': %s", out, in, strerror(errno));
    size_t n = strlen(o);
    int same = !strcmp(o, i), inside = !strncmp(o, i, n) && (i[n] == '/' || !strcmp(o, "/"));
    struct stat so, si; /* hard links and bind mounts of one folder too */
    if (!same && stat(o, &so) == 0 && stat(in, &si) == 0) same = so.st_dev == si.st_dev && so.st_ino == si.st_ino;
    free(o);
    free(i);
    if (same) cli_usage_error("%s '%s' is the %s input: it would be overwritten; choose another %s", out_opt, out,
                              in_opt, out_opt);
    if (inside) cli_usage_error("%s '%s' contains the %s input '%s': it could be overwritten; choose another %s",
                                out_opt, out, in_opt, in, out_opt);
}

static pissa_dir_txn *pending;   /* the output transaction of this run, dropped at exit unless committed */
static const char *pending_out;

static void drop_pending(void) {
    pissa_dir_txn_abort(pending);
    pending = NULL;
}

const char *cli_out_begin(const char *out, const char *const *drop) {
    static int registered;
    if (pending) cli_fail("%s: an output transaction is already open", out);
    if (!registered && atexit(drop_pending) == 0) registered = 1;
    cli_check(pissa_dir_txn_begin(out, drop, &pending), out);
    pending_out = out;
    return pissa_dir_txn_path(pending);
}

void cli_out_commit(void) {
    pissa_dir_txn *t = pending;
    pending = NULL;
    cli_check(pissa_dir_txn_commit(t), pending_out);
}

/* FIELD := the JSON text VALUE, or exit naming the field. */
static void set_field(pissa_peft_config *c, const char *field, const char *value) {
    cli_check(pissa_peft_config_set(c, field, value), field);
}

pissa_peft_config *cli_residual_adapter_config(int64_t r, double alpha, int rslora, double dropout, unsigned mask,
                                               const char *base) {
    pissa_peft_config *c;
    cli_check(pissa_peft_config_create(&c), "adapter config");
    char v[1024], names[256];
    snprintf(v, sizeof v, "%lld", (long long)r);
    set_field(c, "r", v);
    snprintf(v, sizeof v, "%.17g", alpha);
    set_field(c, "lora_alpha", v);
    snprintf(v, sizeof v, "%.17g", dropout);
    set_field(c, "lora_dropout", v);
    set_field(c, "use_rslora", rslora ? "true" : "false");
    set_field(c, "init_lora_weights", "true");
    cli_check(pissa_proj_names(mask, names, sizeof names), "--target");
    size_t n = (size_t)snprintf(v, sizeof v, "[");
    for (char *tok = strtok(names, ","); tok; tok = strtok(NULL, ","))
        n += (size_t)snprintf(v + n, sizeof v - n, "%s\"%s\"", n > 1 ? ", " : "", tok);
    snprintf(v + n, sizeof v - n, "]");
    set_field(c, "target_modules", v);
    char *quoted = cli_json_quote(base);
    set_field(c, "base_model_name_or_path", quoted);
    free(quoted);
    return c;
}

uint64_t cli_mix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double cli_uniform(uint64_t *x) { return (double)(cli_mix(x) >> 11) * 0x1.0p-53; }

double cli_normal(uint64_t *x) {
    double u1 = ((double)(cli_mix(x) >> 11) + 1.0) * 0x1.0p-53, u2 = (double)(cli_mix(x) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

char *cli_json_quote(const char *s) {
    char *out = malloc(6 * strlen(s) + 3), *q = out;
    if (!out) cli_fail("out of memory");
    *q++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *e = *p == '"' ? "\\\"" : *p == '\\' ? "\\\\" : *p == '\n' ? "\\n" : *p == '\r' ? "\\r"
                      : *p == '\t' ? "\\t" : *p == '\b' ? "\\b" : *p == '\f' ? "\\f" : NULL;
        if (e) q += sprintf(q, "%s", e);
        else if (*p < 0x20) q += sprintf(q, "\\u%04x", *p);
        else *q++ = (char)*p;
    }
    *q++ = '"', *q = '\0';
    return out;
}

void cli_json_string(FILE *f, const char *s) {
    char *q = cli_json_quote(s);
    fputs(q, f);
    free(q);
}
