/* Shared helpers for the CMocka tests. */
#ifndef PISSA_TESTUTIL_H
#define PISSA_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pissa.h"

/* Fails the test with the library's last error when EXPR is not PISSA_OK. */
#define assert_ok(expr)                                                                                  \
    do {                                                                                                 \
        pissa_status s_ = (expr);                                                                        \
        if (s_ != PISSA_OK) fail_msg("%s -> %s: %s", #expr, pissa_status_name(s_), pissa_last_error()); \
    } while (0)

/* New empty directory under $TMPDIR (or /tmp); caller frees the string (the directory is left for
 * inspection when a test fails; tu_rmtree removes it). */
char *tu_tempdir(const char *tag);
void tu_rmtree(const char *dir);
char *tu_path(const char *dir, const char *name); /* malloc'd "dir/name" */
void tu_write_bytes(const char *path, const void *data, size_t len);

/* Random matrices (row-major, float32), deterministic for a seed. */
void tu_gaussian(float *x, size_t n, uint64_t seed);
/* W (m, n) = U·diag(sigma)·Vᵀ with random orthonormal U (m, k), V (n, k), k = min(m, n), computed in
 * double and rounded to float. sigma has k values. */
void tu_matrix_with_spectrum(float *W, int64_t m, int64_t n, const double *sigma, uint64_t seed);

/* ‖X − Y‖_F and ‖X‖_F in double. */
double tu_diff_norm(const float *x, const float *y, size_t n);
double tu_norm(const float *x, size_t n);
/* max |X − Y|; NaN if any difference is NaN */
double tu_max_abs_diff(const float *x, const float *y, size_t n);
/* max |GOT − WANT| / max |WANT| (or the absolute difference when WANT is all zero): a difference relative to the
 * scale of the values, as logits are compared. */
double tu_max_rel_diff(const float *got, const float *want, size_t n);

/* Logits (and other activations) computed in float32 against a float64 reference, or along two float32 paths, agree
 * to a few 1e-7 of their largest magnitude; TU_LOGIT_TOL leaves room for other CPUs and BLAS builds while still
 * failing on a 3x rms_norm_eps (test_model's reference_comparisons_notice_a_tripled_rms_norm_eps). */
#define TU_LOGIT_TOL 5e-6

/* Runs a shell command, returns its exit status (or -1); output goes to OUT_PATH if not NULL. */
int tu_run(const char *cmd, const char *out_path);
/* Whole file as a malloc'd NUL-terminated string, or NULL. */
char *tu_slurp(const char *path, size_t *len);
/* The file NAME of tests/reference/ (a fixture written by a script there), which must hold exactly BYTES bytes;
 * fails the test naming the file and GENERATOR (the script that writes it) otherwise. Caller frees. */
void *tu_read_reference(const char *name, size_t bytes, const char *generator);
/* Rewrites the JSON object in the file PATH with FIELD set to the JSON text VALUE (added if absent; "null" is a
 * JSON null, not a removal). */
void tu_json_set_field(const char *path, const char *field, const char *value);

/* Optional pieces (../shared/data, node, torch, strace, ...): a test that needs one calls tu_skip_missing, which
 * prints "SKIPPED: WHAT is missing" and skips it, or, when the environment has PISSA_REQUIRE_ALL=1 (CI), fails it:
 * nothing skips silently there. Neither returns. tu_need_files does it for the first absent path of PATHS. */
int tu_require_all(void);
void tu_skip_missing(const char *what);
int tu_file_exists(const char *path);
void tu_need_files(const char *const *paths, int n);

#endif
