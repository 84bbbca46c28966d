/* Benchmark of the truncated SVDs behind PiSSA initialisation: time and relative error ‖W − U·S·Vᵀ‖_F / ‖W‖_F
 * of pissa_svd_randomized (p = 0 as PEFT, and the default p) and of the exact LAPACK SVD, on matrices with a
 * known spectrum so the optimal (Eckart–Young) error is known without any SVD.
 *
 * W (m, n) = C_m·diag(σ)·C_nᵀ with C_d the orthonormal DCT-IV basis, C_d[i, k] = √(2/d)·cos(π(i+½)(k+½)/d),
 * and σ_k = (k+1)^(−decay). Each W is written to OUT_DIR/W_<m>x<n>.bin (raw float32) so bench_svd_torch.py times
 * PyTorch on the very same matrices; results go to stdout and OUT_DIR/c_results.tsv.
 *
 *   bench_svd [--out-dir DIR] [--shapes 1024x1024,4096x4096,4096x11008] [--reps 3] [--decay 1.0] [--no-exact]
 * --no-exact skips the exact SVD of shapes larger than 4096×4096 (minutes for 4096×11008).
 * Threads: OPENBLAS_NUM_THREADS. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "benchutil.h"
#include "pissa.h"

static const struct {
    int64_t r;
    int niter;
} settings[] = {{16, 4}, {128, 16}};
#define N_SETTINGS 2

/* C (d, k) row-major, orthonormal columns (DCT-IV). */
static float *dct_basis(int64_t d, int64_t k) {
    float *C = xmalloc(sizeof(float) * (size_t)(d * k));
    const double pi = 3.14159265358979323846;
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < k; j++)
            C[i * k + j] = (float)(sqrt(2.0 / (double)d) * cos(pi * ((double)i + 0.5) * ((double)j + 0.5) / (double)d));
    return C;
}

static float *make_matrix(int64_t m, int64_t n, const double *sigma) {
    int64_t k = m < n ? m : n;
    float *L = dct_basis(m, k), *R = dct_basis(n, k); /* (m, k), (n, k) */
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < k; j++) L[i * k + j] *= (float)sigma[j];
    float *W = xmalloc(sizeof(float) * (size_t)(m * n));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, L, (int)k, R, (int)k, 0.0f, W,
                (int)n);
    free(L);
    free(R);
    return W;
}

/* ‖W − U[:, :r]·diag(S)·Vt[:r]‖_F / ‖W‖_F; U has row stride ldu. */
static double rel_error(const float *W, int64_t m, int64_t n, int64_t r, const float *U, int64_t ldu, const float *S,
                        const float *Vt) {
    float *US = xmalloc(sizeof(float) * (size_t)(m * r)), *R = xmalloc(sizeof(float) * (size_t)(m * n));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < r; j++) US[i * r + j] = U[i * ldu + j] * S[j];
    memcpy(R, W, sizeof(float) * (size_t)(m * n));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)r, -1.0f, US, (int)r, Vt, (int)n, 1.0f,
                R, (int)n);
    double e = 0, w = 0;
    for (int64_t i = 0; i < m * n; i++) {
        e += (double)R[i] * R[i];
        w += (double)W[i] * W[i];
    }
    free(US);
    free(R);
    return sqrt(e / w);
}

static FILE *tsv;

static void report(int64_t m, int64_t n, const char *method, int64_t r, int niter, double ms, double err) {
    printf("%5lldx%-6lld %-14s r=%-4lld N=%-3d %10.1f ms  rel.err %.6f\n", (long long)m, (long long)n, method,
           (long long)r, niter, ms, err);
    fprintf(tsv, "%lldx%lld\t%s\t%lld\t%d\t%.3f\t%.8f\n", (long long)m, (long long)n, method, (long long)r, niter, ms,
            err);
    fflush(stdout);
    fflush(tsv);
}

static void bench_rsvd(const float *W, int64_t m, int64_t n, int64_t r, int niter, int64_t p, int reps) {
    float *U = xmalloc(sizeof(float) * (size_t)(m * r)), *S = xmalloc(sizeof(float) * (size_t)r);
    float *Vt = xmalloc(sizeof(float) * (size_t)(r * n));
    pissa_rsvd_opts o = {.oversample = p, .niter = niter, .seed = 0};
    double *t = xmalloc(sizeof(double) * (size_t)reps);
    cli_check(pissa_svd_randomized(W, m, n, r, &o, U, S, Vt), "warm-up");
    for (int i = 0; i < reps; i++) {
        double t0 = cli_now();
        cli_check(pissa_svd_randomized(W, m, n, r, &o, U, S, Vt), "pissa_svd_randomized");
        t[i] = 1e3 * (cli_now() - t0);
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    char name[32];
    snprintf(name, sizeof name, "ours_rsvd_p%lld", (long long)p);
    report(m, n, name, r, niter, t[reps / 2], rel_error(W, m, n, r, U, r, S, Vt));
    free(U);
    free(S);
    free(Vt);
    free(t);
}

int main(int argc, char **argv) {
    cli_prog = "bench_svd";
    const char *out_dir = NULL, *shapes = "1024x1024,4096x4096,4096x11008";
    int reps = 3, no_exact = 0;
    double decay = 1.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out-dir") && i + 1 < argc) out_dir = argv[++i];
        else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) shapes = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decay") && i + 1 < argc) decay = atof(argv[++i]);
        else if (!strcmp(argv[i], "--no-exact")) no_exact = 1;
        else {
            fprintf(stderr, "usage: %s [--out-dir DIR] [--shapes MxN,...] [--reps K] [--decay D] [--no-exact]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    char dir[1024];
    if (!out_dir) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/pissa-bench-svd", tmp && *tmp ? tmp : "/tmp");
        out_dir = dir;
    }
    mkdir(out_dir, 0777);
    char path[1200];
    snprintf(path, sizeof path, "%s/c_results.tsv", out_dir);
    if (!(tsv = fopen(path, "w"))) {
        fprintf(stderr, "bench_svd: cannot write %s\n", path);
        return 1;
    }
    const char *threads = getenv("OPENBLAS_NUM_THREADS");
    printf("bench_svd: OPENBLAS_NUM_THREADS=%s, sigma_k = (k+1)^-%.2f, median of %d after a warm-up\n",
           threads ? threads : "(unset)", decay, reps);

    char *list = strdup(shapes);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        long long mm, nn;
        if (sscanf(tok, "%lldx%lld", &mm, &nn) != 2 || mm < 1 || nn < 1) {
            fprintf(stderr, "bench_svd: bad shape '%s'\n", tok);
            return 2;
        }
        int64_t m = mm, n = nn, k = m < n ? m : n;
        double *sigma = xmalloc(sizeof(double) * (size_t)k), total = 0;
        for (int64_t i = 0; i < k; i++) {
            sigma[i] = pow((double)(i + 1), -decay);
            total += sigma[i] * sigma[i];
        }
        float *W = make_matrix(m, n, sigma);
        snprintf(path, sizeof path, "%s/W_%lldx%lld.bin", out_dir, mm, nn);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(W, sizeof(float), (size_t)(m * n), f) != (size_t)(m * n) || fclose(f)) {
            fprintf(stderr, "bench_svd: cannot write %s\n", path);
            return 1;
        }
        for (int s = 0; s < N_SETTINGS; s++) {
            int64_t r = settings[s].r;
            double tail = 0;
            for (int64_t i = r; i < k; i++) tail += sigma[i] * sigma[i];
            report(m, n, "optimal", r, settings[s].niter, 0.0, sqrt(tail / total));
            bench_rsvd(W, m, n, r, settings[s].niter, 0, reps);
            bench_rsvd(W, m, n, r, settings[s].niter, PISSA_RSVD_DEFAULT_OVERSAMPLE, reps);
        }
        if (!(no_exact && m * n > 4096LL * 4096LL)) {
            /* one full SVD (rank-independent cost), truncated at each r */
            float *U = xmalloc(sizeof(float) * (size_t)(m * k)), *S = xmalloc(sizeof(float) * (size_t)k);
            float *Vt = xmalloc(sizeof(float) * (size_t)(k * n));
            double t0 = cli_now();
            cli_check(pissa_svd_exact(W, m, n, k, U, S, Vt), "pissa_svd_exact");
            double ms = 1e3 * (cli_now() - t0);
            for (int s = 0; s < N_SETTINGS; s++)
                report(m, n, "ours_exact", settings[s].r, 0, ms, rel_error(W, m, n, settings[s].r, U, k, S, Vt));
            free(U);
            free(S);
            free(Vt);
        }
        free(W);
        free(sigma);
    }
    free(list);
    fclose(tsv);
    return 0;
}
