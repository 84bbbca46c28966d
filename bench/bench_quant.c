/* Frozen products from a quantized or 16-bit base (src/quant.h) against the float32 sgemm of ops.c.
 *
 * For each shape W (OC, C) and each base format, one "step" is the frozen part of a linear layer in training:
 * forward out (N, OC) = inp·Wᵀ and backward dinp (N, C) = dout·W (fresh, as the engine's first writer).
 *   F32 sgemm  pissa__matmul_forward + pissa__matmul_backward(dw = NULL) on the float32 W (what the model runs today)
 *   <format>   pissa__qmatmul_forward + pissa__qmatmul_backward on W stored in that format (f32: one sgemm per
 *              thread on the float32 W, no tiles: the same work as the reference, split by output columns)
 * Each step is timed --reps times, the formats interleaved so that load from other processes hits all alike; the
 * table gives medians in ms, the ratio of the medians, and the median of the per-repetition ratios (each format's
 * time over the F32 sgemm time measured just before it: the figure least moved by a shared machine). Also: the ms
 * to dequantize all of W once (single thread), and the MB W takes in each format.
 *
 *   bench_quant [--shapes 2048x2048,5632x2048,2048x5632] [--n 1024] [--reps 7] [--threads 2]
 * Shapes are OC x C (rows x columns of W). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "ops.h"
#include "pissa.h"
#include "quant.h"

#define MAX_REPS 64

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fill(float *x, size_t n, uint64_t seed, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * cli_normal(&seed));
}

int main(int argc, char **argv) {
    cli_prog = "bench_quant";
    const char *shapes = "2048x2048,5632x2048,2048x5632";
    int N = 1024, reps = 7, threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shapes")) shapes = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--n")) N = (int)cli_int("--n", cli_value(argc, argv, &i), 1, 1 << 20);
        else if (!strcmp(argv[i], "--reps")) reps = (int)cli_int("--reps", cli_value(argc, argv, &i), 1, MAX_REPS);
        else if (!strcmp(argv[i], "--threads")) threads = (int)cli_int("--threads", cli_value(argc, argv, &i), 1, 64);
        else cli_usage_error("unknown option %s", argv[i]);
    }
    pissa_set_num_threads(threads);
    printf("frozen forward + backward (dX) at N = %d, %d threads, median of %d (ms); ratio to the F32 sgemm\n", N,
           threads, reps);
    printf("%-11s %-6s %9s %9s %7s %7s %11s %9s\n", "W (OC, C)", "format", "fwd+bwd", "F32 sgemm", "ratio", "paired",
           "dequant ms", "MB");
    const char *p = shapes;
    while (*p) {
        int OC, C, used;
        if (sscanf(p, "%dx%d%n", &OC, &C, &used) != 2 || OC < 1 || C < 1) cli_usage_error("bad --shapes at '%s'", p);
        p += used;
        if (*p == ',') p++;
        size_t nw = (size_t)OC * C;
        float *W = xmalloc(nw * 4), *inp = xmalloc((size_t)N * C * 4), *dout = xmalloc((size_t)N * OC * 4);
        float *out = xmalloc((size_t)N * OC * 4), *dinp = xmalloc((size_t)N * C * 4), *deq = xmalloc(nw * 4);
        float *scratch = xmalloc(pissa__qmatmul_scratch_floats(threads) * 4);
        fill(W, nw, 1, 0.02);
        fill(inp, (size_t)N * C, 2, 1.0);
        fill(dout, (size_t)N * OC, 3, 1.0);
        pissa__qweight q[PISSA_QTYPE_COUNT];
        for (int t = 0; t < PISSA_QTYPE_COUNT; t++) cli_check(pissa__qweight_quantize(&q[t], (pissa_qtype)t, W, OC, C), "quantize");
        double t_ref[MAX_REPS * PISSA_QTYPE_COUNT], t_q[PISSA_QTYPE_COUNT][MAX_REPS], t_deq[PISSA_QTYPE_COUNT][MAX_REPS];
        double pair[PISSA_QTYPE_COUNT][MAX_REPS];
        for (int rep = -1; rep < reps; rep++) { /* rep -1: warm-up */
            for (int t = 0; t < PISSA_QTYPE_COUNT; t++) {
                double r0 = cli_now();
                pissa__matmul_forward(out, inp, W, N, C, OC);
                pissa__matmul_backward(dinp, NULL, dout, inp, W, N, C, OC, 1);
                double t0 = cli_now();
                if (rep >= 0) t_ref[rep * PISSA_QTYPE_COUNT + t] = t0 - r0;
                pissa__qmatmul_forward(out, scratch, threads, inp, &q[t], N);
                pissa__qmatmul_backward(dinp, scratch, threads, dout, &q[t], N, 1);
                double t1 = cli_now();
                pissa__qweight_dequantize(&q[t], 0, OC, deq);
                if (rep >= 0) t_q[t][rep] = t1 - t0, t_deq[t][rep] = cli_now() - t1, pair[t][rep] = (t1 - t0) / (t0 - r0);
            }
        }
        double ref = median(t_ref, reps * PISSA_QTYPE_COUNT);
        for (int t = 0; t < PISSA_QTYPE_COUNT; t++) {
            double m = median(t_q[t], reps), d = median(t_deq[t], reps), pr = median(pair[t], reps);
            printf("%5dx%-5d %-6s %9.1f %9.1f %7.3f %7.3f %11.2f %9.1f\n", OC, C, pissa_qtype_name((pissa_qtype)t),
                   1e3 * m, 1e3 * ref, m / ref, pr, 1e3 * d, (double)pissa__qweight_bytes(&q[t]) / 1e6);
            pissa__qweight_release(&q[t]);
        }
        fflush(stdout);
        free(W), free(inp), free(dout), free(out), free(dinp), free(deq), free(scratch);
    }
    return 0;
}
