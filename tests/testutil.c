#include "testutil.h"

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>

#include "internal.h"

char *tu_tempdir(const char *tag) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    char *p = malloc(strlen(base) + strlen(tag) + 32);
    sprintf(p, "%s/pissa-%s-XXXXXX", base, tag);
    if (!mkdtemp(p)) fail_msg("mkdtemp(%s) failed", p);
    return p;
}

void tu_rmtree(const char *dir) {
    char *cmd = malloc(strlen(dir) + 16);
    sprintf(cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(cmd);
}

char *tu_path(const char *dir, const char *name) { return pissa__path_join(dir, name); }

void tu_write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot write %s", path);
    if (len && fwrite(data, 1, len, f) != len) fail_msg("short write %s", path);
    fclose(f);
}

void tu_gaussian(float *x, size_t n, uint64_t seed) {
    pissa_rng r;
    pissa__rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)pissa__rng_normal(&r);
}

/* Q (rows, k) with orthonormal columns: Householder QR of a Gaussian matrix, in double. */
static double *random_orthonormal(int64_t rows, int64_t k, pissa_rng *r) {
    double *q = malloc(sizeof(double) * (size_t)(rows * k));
    double *tau = malloc(sizeof(double) * (size_t)k);
    for (int64_t i = 0; i < rows * k; i++) q[i] = pissa__rng_normal(r);
    if (LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, (int)rows, (int)k, q, (int)k, tau) != 0 ||
        LAPACKE_dorgqr(LAPACK_ROW_MAJOR, (int)rows, (int)k, (int)k, q, (int)k, tau) != 0)
        fail_msg("LAPACK QR failed");
    free(tau);
    return q;
}

void tu_matrix_with_spectrum(float *W, int64_t m, int64_t n, const double *sigma, uint64_t seed) {
    int64_t k = m < n ? m : n;
    pissa_rng r;
    pissa__rng_seed(&r, seed);
    double *U = random_orthonormal(m, k, &r), *V = random_orthonormal(n, k, &r);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t t = 0; t < k; t++) s += U[i * k + t] * sigma[t] * V[j * k + t];
            W[i * n + j] = (float)s;
        }
    free(U);
    free(V);
}

double tu_diff_norm(const float *x, const float *y, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return sqrt(s);
}

double tu_norm(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

double tu_max_abs_diff(const float *x, const float *y, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - y[i]);
        if (!(d <= m)) m = d; /* a NaN difference is kept (fmax would drop it), so no comparison passes on NaN */
    }
    return m;
}

double tu_max_rel_diff(const float *got, const float *want, size_t n) {
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)want[i]));
    double d = tu_max_abs_diff(got, want, n);
    return scale > 0 ? d / scale : d;
}

int tu_run(const char *cmd, const char *out_path) {
    char *full = malloc(strlen(cmd) + (out_path ? strlen(out_path) : 0) + 32);
    if (out_path)
        sprintf(full, "%s >'%s' 2>&1", cmd, out_path);
    else
        sprintf(full, "%s", cmd);
    int st = system(full);
    free(full);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

char *tu_slurp(const char *path, size_t *len) {
    char *buf;
    if (pissa__read_file(path, &buf, len) != PISSA_OK) return NULL;
    return buf;
}

void *tu_read_reference(const char *name, size_t bytes, const char *generator) {
    char *path = tu_path(PISSA_TEST_REFERENCE_DIR, name);
    size_t len = 0;
    char *buf = tu_slurp(path, &len);
    if (!buf) fail_msg("cannot read %s (written by tests/reference/%s)", path, generator);
    if (len != bytes) fail_msg("%s: %zu bytes, expected %zu (rerun tests/reference/%s)", path, len, bytes, generator);
    free(path);
    return buf;
}

void tu_json_set_field(const char *path, const char *field, const char *value) {
    char *text = tu_slurp(path, NULL);
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text), *v = cJSON_Parse(value);
    assert_non_null(root);
    assert_non_null(v);
    cJSON_DeleteItemFromObject(root, field);
    cJSON_AddItemToObject(root, field, v);
    char *out = cJSON_Print(root);
    tu_write_bytes(path, out, strlen(out));
    free(out);
    cJSON_Delete(root);
    free(text);
}

int tu_require_all(void) {
    const char *v = getenv("PISSA_REQUIRE_ALL");
    return v && *v && strcmp(v, "0") != 0;
}

void tu_skip_missing(const char *what) {
    if (tu_require_all()) fail_msg("%s is missing, and PISSA_REQUIRE_ALL=1 forbids skipping", what);
    print_message("SKIPPED: %s is missing\n", what);
    skip();
}

int tu_file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

void tu_need_files(const char *const *paths, int n) {
    for (int i = 0; i < n; i++)
        if (!tu_file_exists(paths[i])) tu_skip_missing(paths[i]);
}
