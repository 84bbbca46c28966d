/* What data-parallel training sends: the gradient sum of one update, from the model shapes, and its time here.
 *
 *   bench_comm --shapes                         the floats summed per update for known models (no MPI needed)
 *   mpirun -np P bench_comm [--reps 20]         + the time of each sum on this machine
 *
 * Per update the trainer sums every trainable gradient across the P processes once (src/comm.c
 * pissa__comm_sum_f32: one MPI_Allreduce), float32. The counts (LoRA rank r on all 7 projections: r·Σ(in + out) per
 * layer; full: every weight) are computed from each model's config. The sum is timed on buffers of those sizes
 * (median of --reps after 2 warm-up sums, each the slowest process's time), and the time an ideal ring all-reduce
 * needs on network links is printed beside:
 * each process sends and receives 2·(P − 1)/P of the bytes, so t = 2·(P − 1)/P · bytes / bandwidth (latency, a few
 * microseconds per message, ignored: these are megabytes). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "comm_internal.h"
#include "pissa.h"

typedef struct shape {
    const char *name;
    int64_t D, L, H, KV, hd, F, V;
    int tied;
} shape;

/* Hugging Face configs: Llama-3.2-1B, TinyLlama-1.1B, Llama-2-7b-hf; stories260K (llama2.c) and bench_train's d512. */
static const shape shapes[] = {
    {"stories260K", 64, 5, 8, 4, 8, 172, 512, 1},
    {"d512 (bench_train)", 512, 8, 8, 8, 64, 1376, 4096, 1},
    {"TinyLlama-1.1B", 2048, 22, 32, 4, 64, 5632, 32000, 0},
    {"Llama-3.2-1B", 2048, 16, 32, 8, 64, 8192, 128256, 1},
    {"Llama-2-7B", 4096, 32, 32, 32, 128, 11008, 32000, 0},
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])
#define N_LOCAL 2 /* the shapes small enough to time here */

/* Σ(in + out) over q, k, v, o, gate, up, down of one layer. */
static int64_t in_out(const shape *s) {
    int64_t q = s->H * s->hd, kv = s->KV * s->hd;
    return (s->D + q) + 2 * (s->D + kv) + (q + s->D) + 3 * (s->D + s->F);
}

static int64_t lora_floats(const shape *s, int64_t r) { return s->L * r * in_out(s); }

static int64_t full_floats(const shape *s) {
    int64_t q = s->H * s->hd, kv = s->KV * s->hd;
    int64_t layer = 2 * s->D + s->D * q + 2 * s->D * kv + q * s->D + 3 * s->D * s->F;
    return s->V * s->D * (s->tied ? 1 : 2) + s->D + s->L * layer;
}

static void print_shapes(void) {
    printf("floats summed per update (float32 gradients; MB = 10^6 bytes), and an ideal ring all-reduce over P = 8 "
           "processes: 2·(P−1)/P·bytes / link\n");
    printf("| model | LoRA r16 all-linear | full fine-tuning | r16 on 1 / 10 / 25 Gb/s | full on 10 Gb/s |\n");
    printf("|---|---|---|---|---|\n");
    for (size_t i = 0; i < N_SHAPES; i++) {
        const shape *s = &shapes[i];
        double lb = 4.0 * (double)lora_floats(s, 16), fb = 4.0 * (double)full_floats(s), ring = 2.0 * 7 / 8;
        printf("| %s | %lld (%.1f MB) | %lld (%.0f MB) | %.3g / %.3g / %.3g s | %.3g s |\n", s->name,
               (long long)lora_floats(s, 16), lb / 1e6, (long long)full_floats(s), fb / 1e6, ring * lb / 1.25e8,
               ring * lb / 1.25e9, ring * lb / 3.125e9, ring * fb / 1.25e9);
    }
}

/* Median over REPS (after 2 warm-up sums) of the slowest process's time to sum X (N floats of 1) across processes
 * as the trainer does. */
static double median_time(pissa_comm *c, int reps, float *x, size_t n, int P) {
    double *t = xmalloc(sizeof(double) * (size_t)reps);
    for (int k = -2; k < reps; k++) {
        for (size_t i = 0; i < n; i++) x[i] = 1.0f;
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        cli_check(pissa__comm_sum_f32(c, x, n, "sum"), "sum");
        double dt = MPI_Wtime() - t0, worst;
        MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (k >= 0) t[k] = worst;
        if (x[0] != (float)P || x[n - 1] != (float)P) cli_fail("the sum is %g, not %d", x[n - 1], P);
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    double m = t[reps / 2];
    free(t);
    return m;
}

int main(int argc, char **argv) {
    cli_prog = "bench_comm";
    int reps = 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shapes")) {
            print_shapes();
            return 0;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else cli_usage_error("usage: [mpirun -np P] bench_comm [--shapes] [--reps N]");
    }
    if (reps < 1) cli_usage_error("--reps must be >= 1");
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm world = MPI_COMM_WORLD;
    pissa_comm *c;
    cli_check(pissa_comm_create(&world, &c), "MPI");
    int rank = pissa_comm_rank(c), P = pissa_comm_size(c);
    if (rank == 0) {
        print_shapes();
        printf("\nthe sum here, %d processes (median of %d, the slowest process's time):\n", P, reps);
        printf("| model | gradients | floats | MB | ms (median) |\n|---|---|---|---|---|\n");
    }
    for (size_t i = 0; i < N_LOCAL; i++)
        for (int full = 0; full < 2; full++) {
            size_t n = (size_t)(full ? full_floats(&shapes[i]) : lora_floats(&shapes[i], 16));
            float *x = xmalloc(sizeof(float) * n);
            double t = median_time(c, reps, x, n, P);
            if (rank == 0)
                printf("| %s | %s | %zu | %.1f | %.3f |\n", shapes[i].name, full ? "full" : "LoRA r16 all-linear", n,
                       4e-6 * (double)n, 1e3 * t);
            free(x);
        }
    pissa_comm_free(c);
    MPI_Finalize();
    return 0;
}
