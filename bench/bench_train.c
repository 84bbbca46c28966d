/* Training-step benchmark: forward + backward + AdamW on LoRA adapters (r 16, alpha 16) on all 7 projections of a
 * random-weight Llama, for the configurations of REFERENCE.md §7. bench/bench_train_torch.py runs the same step in
 * PyTorch and bench/run_train.sh prints both side by side.
 *
 *   bench_train --config stories260k|d512|d768|d2048|d4096 [--base-dtype f32|bf16|f16|nf4|int8] [--warmup 2]
 *               [--steps 5] [--threads 2] [--dir DIR] [--peak-n 2048] [--grad-checkpoint]
 *   bench_train --model DIR [--batch 4] [--seq 256] [...]: an existing checkpoint instead (e.g. one pissa-synth wrote),
 *               its dimensions read from its config (hd = D/H)
 *
 * d2048 and d4096 are not in REFERENCE.md §7: TinyLlama-1.1B's and Llama-2-7B's layer shapes (4 and 2 layers, so a
 * step takes seconds), at the batch of the memory goals (4 × 256 and 1 × 512), for the base-dtype axis of
 * run_train.sh: --base-dtype loads the frozen projections in that format (pissa_model_load_with_opts; the
 * checkpoint is F32, so bf16/f16 are converted and nf4/int8 quantized at load); default: as stored (a BF16
 * checkpoint from the mapping). --grad-checkpoint turns activation checkpointing on (pissa_model_set_grad_checkpoint).
 *
 * One configuration per process, so that the peak RSS (getrusage ru_maxrss) of one does not hide another's. The
 * checkpoint (tied embeddings, F32 safetensors) is written once to DIR/<config> (default
 * $TMPDIR/pissa-bench-train) by a forked child, so neither its writing buffers nor the sgemm-peak matrices count
 * in our RSS: the peak RSS printed is read right after the timed steps (model mapping + arena + optimizer state).
 *
 * A step: zero_grad, pissa_model_forward_backward (training mode, no dropout), pissa_optim_step (AdamW, lr 1e-4).
 * Median of --steps timed steps after --warmup untimed ones (the first step plans the arena).
 *
 * Matmul FLOPs of one step (N = B·T tokens, hd = D/H, per layer P = D·H·hd + 2·D·KV·hd + H·hd·D + 3·D·F base
 * weights, and Σ(in + out) over the 7 adapted projections):
 *   base projections   forward 2·N·P, backward dX only (frozen W) 2·N·P                  → 4·N·P per layer
 *   LoRA branches      forward x·Aᵀ, ·Bᵀ: 2·N·r·(in + out); backward dB, d(xAᵀ), dA, dX: 2× that
 *                                                                                       → 6·N·r·Σ(in + out)
 *   attention          per (b, h): S = q·kᵀ and P·v, full T×T as the sgemms compute them: 4·T²·hd forward;
 *                      dV, dP, dQ, dK: 8·T²·hd backward                                  → 12·B·H·T²·hd per layer
 *   lm_head            forward 2·N·D·V, backward dX 2·N·D·V (frozen)                     → 4·N·D·V
 * total = L·(4·N·P + 6·N·r·Σ(in + out) + 12·B·H·T²·hd) + 4·N·D·V. Elementwise work (norms, RoPE, softmax, SiLU,
 * cross-entropy, AdamW) is not counted. GFLOP/s is compared with the best of 5 square N×N cblas_sgemm products
 * (N = --peak-n) timed in the same process with the same thread count, after the steps.
 *
 * Output: human-readable lines, then one line "RESULT key=value ..." that run_train.sh parses. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "pissa.h"

typedef struct config {
    const char *name;
    int64_t D, L, H, KV, F, V;
    int B, T;
} config;

static const config configs[] = {
    {"stories260k", 64, 5, 8, 4, 172, 512, 8, 256},
    {"d512", 512, 8, 8, 8, 1376, 4096, 4, 256},
    {"d768", 768, 12, 12, 12, 2048, 32000, 4, 256},
    {"d2048", 2048, 4, 32, 4, 5632, 32000, 4, 256},
    {"d4096", 4096, 2, 32, 32, 11008, 32000, 1, 512},
};
#define N_CONFIGS 5
#define RANK 16

/* ---- the random checkpoint ---- */

/* Random draws: the examples' splitmix64 + Box–Muller (examples/cli.h); each tensor is seeded by its name. */

typedef struct tensor_spec {
    char name[96];
    int ndim;
    int64_t shape[2]; /* (out, in) for a linear weight */
} tensor_spec;

/* Norms 1; embeddings N(0, 0.02²) (HF initializer_range, so tied logits stay small); linear weights N(0, 1/in),
 * so activations keep their scale through the layers. */
static pissa_status fill(void *user, const char *name, float *dst, int64_t numel) {
    const tensor_spec *s = user;
    uint64_t x = 1;
    for (const char *p = name; *p; p++) x = (x ^ (unsigned char)*p) * 1099511628211ULL;
    double c = s->ndim == 1 ? 0.0 : strstr(name, "embed_tokens") ? 0.02 : 1.0 / sqrt((double)s->shape[1]);
    for (int64_t i = 0; i < numel; i++) dst[i] = s->ndim == 1 ? 1.0f : (float)(c * cli_normal(&x));
    return PISSA_OK;
}

static int cmp_spec(const void *a, const void *b) {
    return strcmp(((const tensor_spec *)a)->name, ((const tensor_spec *)b)->name);
}

static void write_checkpoint(const config *c, const char *dir) { /* DIR: under 4096 bytes */
    int64_t hd = c->D / c->H;
    size_t n = 0, cap = (size_t)(9 * c->L + 2);
    tensor_spec *specs = calloc(cap, sizeof *specs);
    if (!specs) exit(1);
#define ADD(nm, nd, d0, d1)                                                                                           \
    do {                                                                                                               \
        snprintf(specs[n].name, sizeof specs[n].name, "%s", nm);                                                       \
        specs[n].ndim = nd, specs[n].shape[0] = d0, specs[n].shape[1] = d1;                                            \
        n++;                                                                                                           \
    } while (0)
    ADD("model.embed_tokens.weight", 2, c->V, c->D);
    ADD("model.norm.weight", 1, c->D, 0);
    char nm[96];
    static const char *suffix[9] = {"input_layernorm",  "post_attention_layernorm", "self_attn.q_proj",
                                    "self_attn.k_proj", "self_attn.v_proj",         "self_attn.o_proj",
                                    "mlp.gate_proj",    "mlp.up_proj",              "mlp.down_proj"};
    for (int64_t l = 0; l < c->L; l++)
        for (int j = 0; j < 9; j++) {
            snprintf(nm, sizeof nm, "model.layers.%lld.%s.weight", (long long)l, suffix[j]);
            int64_t d0 = c->D, d1 = 0; /* norms (D) */
            if (j == 2) d0 = c->H * hd, d1 = c->D;
            if (j == 3 || j == 4) d0 = c->KV * hd, d1 = c->D;
            if (j == 5) d0 = c->D, d1 = c->H * hd;
            if (j == 6 || j == 7) d0 = c->F, d1 = c->D;
            if (j == 8) d0 = c->D, d1 = c->F;
            ADD(nm, j < 2 ? 1 : 2, d0, d1);
        }
#undef ADD
    qsort(specs, n, sizeof *specs, cmp_spec);
    pissa_st_writer *w;
    cli_check(pissa_st_writer_create(&w), "safetensors writer");
    for (size_t i = 0; i < n; i++)
        cli_check(pissa_st_writer_add_fill(w, specs[i].name, PISSA_F32, specs[i].ndim, specs[i].shape, fill, &specs[i]),
              specs[i].name);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cli_check(pissa_st_writer_write(w, path), path);
    pissa_st_writer_free(w);
    free(specs);

    /* config.json last: its presence marks a complete checkpoint */
    char text[2048];
    int len = snprintf(text, sizeof text,
                       "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"attention_bias\": false,\n"
                       "  \"head_dim\": %lld,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %lld,\n"
                       "  \"intermediate_size\": %lld,\n  \"max_position_embeddings\": %d,\n  \"mlp_bias\": false,\n"
                       "  \"model_type\": \"llama\",\n  \"num_attention_heads\": %lld,\n"
                       "  \"num_hidden_layers\": %lld,\n  \"num_key_value_heads\": %lld,\n"
                       "  \"rms_norm_eps\": 1e-05,\n  \"rope_scaling\": null,\n  \"rope_theta\": 10000.0,\n"
                       "  \"tie_word_embeddings\": true,\n  \"torch_dtype\": \"float32\",\n  \"vocab_size\": %lld\n}\n",
                       (long long)hd, (long long)c->D, (long long)c->F, c->T, (long long)c->H, (long long)c->L,
                       (long long)c->KV, (long long)c->V);
    snprintf(path, sizeof path, "%s/config.json", dir);
    cli_check(pissa_write_file_atomic(path, text, (size_t)len), path);
}

/* Runs FN(ARG) in a forked child and waits: its memory never counts in this process's ru_maxrss. */
static void in_child(void (*fn)(const void *, const char *), const void *arg, const char *dir) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "bench_train: fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid == 0) {
        fn(arg, dir);
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_train: writing the checkpoint in %s failed\n", dir);
        exit(1);
    }
}
static void write_checkpoint_fn(const void *c, const char *dir) { write_checkpoint(c, dir); }

/* ---- FLOPs and the sgemm peak ---- */

static double step_flops(const config *c) {
    double N = (double)c->B * c->T, hd = (double)(c->D / c->H), D = (double)c->D, F = (double)c->F;
    double P = D * c->H * hd + 2 * D * c->KV * hd + c->H * hd * D + 3 * D * F;
    double io = (D + c->H * hd) + 2 * (D + c->KV * hd) + (c->H * hd + D) + 3 * (D + F); /* Σ(in + out) */
    double layer = 4 * N * P + 6 * N * RANK * io + 12.0 * c->B * c->H * (double)c->T * c->T * hd;
    return (double)c->L * layer + 4 * N * D * (double)c->V;
}

/* Best of 5 products (N, N)·(N, N), in GFLOP/s. */
static double sgemm_peak(int n) {
    size_t nn = (size_t)n * (size_t)n;
    float *a = xmalloc(sizeof(float) * nn), *b = xmalloc(sizeof(float) * nn), *c = xmalloc(sizeof(float) * nn);
    uint64_t x = 7;
    for (size_t i = 0; i < nn; i++) a[i] = (float)cli_normal(&x), b[i] = (float)cli_normal(&x);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = cli_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double t = cli_now() - t0;
        best = t < best ? t : best;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * (double)n * n / best * 1e-9;
}

/* The random checkpoint of C in BASE_DIR/<name> (default $TMPDIR/pissa-bench-train/<name>), written once, loaded
 * with MO. */
static pissa_model *load_config(const config *c, const char *base_dir, const pissa_model_opts *mo) {
    char dir[4096], path[4200];
    const char *tmp = getenv("TMPDIR");
    if (base_dir) snprintf(dir, sizeof dir, "%s/%s", base_dir, c->name);
    else snprintf(dir, sizeof dir, "%s/pissa-bench-train/%s", tmp && *tmp ? tmp : "/tmp", c->name);
    for (char *p = dir + 1; *p; p++) /* mkdir -p */
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0777);
            *p = '/';
        }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "bench_train: cannot create %s: %s\n", dir, strerror(errno));
        exit(1);
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        printf("writing the random checkpoint to %s\n", dir);
        in_child(write_checkpoint_fn, c, dir);
    }

    pissa_model *m;
    cli_check(pissa_model_load_with_opts(dir, mo, &m), dir);
    return m;
}

/* ---- main ---- */

int main(int argc, char **argv) {
    cli_prog = "bench_train";
    const char *cname = NULL, *base_dir = NULL, *model_dir = NULL;
    int warmup = 2, steps = 5, threads = 2, peak_n = 2048, checkpoint = 0, batch = 4, seq = 256;
    pissa_model_opts mo = pissa_model_default_opts();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--config") && v) cname = v, i++;
        else if (!strcmp(a, "--dir") && v) base_dir = v, i++;
        else if (!strcmp(a, "--warmup") && v) warmup = atoi(v), i++;
        else if (!strcmp(a, "--steps") && v) steps = atoi(v), i++;
        else if (!strcmp(a, "--threads") && v) threads = atoi(v), i++;
        else if (!strcmp(a, "--peak-n") && v) peak_n = atoi(v), i++;
        else if (!strcmp(a, "--model") && v) model_dir = v, i++;
        else if (!strcmp(a, "--batch") && v) batch = atoi(v), i++;
        else if (!strcmp(a, "--seq") && v) seq = atoi(v), i++;
        else if (!strcmp(a, "--base-dtype") && v) mo.base_dtype = cli_qtype(a, v), i++;
        else if (!strcmp(a, "--grad-checkpoint")) checkpoint = 1;
        else {
            fprintf(stderr, "usage: bench_train (--config stories260k|d512|d768|d2048|d4096 | --model DIR [--batch 4] [--seq 256]) "
                            "[--base-dtype T] [--warmup 2] [--steps 5] [--threads 2] [--dir DIR] [--peak-n 2048] [--grad-checkpoint]\n");
            return 2;
        }
    }
    const config *c = NULL;
    for (int i = 0; cname && i < N_CONFIGS; i++)
        if (!strcmp(cname, configs[i].name)) c = &configs[i];
    if (!c == !model_dir || steps < 1 || warmup < 0 || threads < 1 || peak_n < 64 || batch < 1 || seq < 2) {
        fprintf(stderr, "bench_train: give --config stories260k, d512, d768, d2048 or d4096, or --model DIR (and positive counts)\n");
        return 2;
    }
    pissa_set_num_threads(threads);

    pissa_model *m;
    config from_model;
    if (model_dir) {
        cli_check(pissa_model_load_with_opts(model_dir, &mo, &m), model_dir);
        const pissa_llama_config *mc = pissa_model_config(m);
        from_model = (config){model_dir, mc->hidden_size, mc->num_hidden_layers, mc->num_attention_heads,
                              mc->num_key_value_heads, mc->intermediate_size, mc->vocab_size, batch, seq};
        c = &from_model;
    } else {
        m = load_config(c, base_dir, &mo);
    }
    const char *base = mo.base_dtype < 0 ? "stored" : pissa_qtype_name((pissa_qtype)mo.base_dtype);
    pissa_adapter_opts ao = pissa_adapter_default_opts();
    ao.targets = PISSA_PROJ_ALL;
    ao.init.kind = PISSA_INIT_LORA;
    ao.init.rank = RANK;
    ao.init.alpha = RANK;
    ao.init.seed = 1;
    cli_check(pissa_model_add_adapters(m, &ao), "adapters");
    pissa_model_set_training(m, 1, 1); /* dropout 0: as the trainer runs, without masks */
    pissa_model_set_grad_checkpoint(m, checkpoint);

    size_t na = pissa_model_adapter_count(m), nt = 2 * na;
    size_t *sizes = xmalloc(sizeof(size_t) * nt);
    float **params = xmalloc(sizeof(float *) * nt);
    const float **grads = xmalloc(sizeof(float *) * nt);
    int64_t trainable = 0;
    for (size_t i = 0; i < na; i++) {
        pissa_adapter_view v;
        cli_check(pissa_model_adapter(m, i, &v), "adapter view");
        sizes[2 * i] = (size_t)(v.r * v.in), sizes[2 * i + 1] = (size_t)(v.out * v.r);
        params[2 * i] = v.A, params[2 * i + 1] = v.B;
        grads[2 * i] = v.dA, grads[2 * i + 1] = v.dB;
        trainable += v.r * (v.in + v.out);
    }
    pissa_optim_opts oo = pissa_optim_default_opts(); /* AdamW, lr 1e-4, wd 0 */
    pissa_optim *opt;
    cli_check(pissa_optim_create(&oo, nt, sizes, &opt), "optimizer");

    size_t ntok = (size_t)c->B * (size_t)c->T;
    int32_t *ids = xmalloc(sizeof(int32_t) * ntok), *labels = xmalloc(sizeof(int32_t) * ntok);
    uint64_t x = 3;
    for (size_t i = 0; i < ntok; i++) ids[i] = labels[i] = (int32_t)(cli_mix(&x) % (uint64_t)c->V);

    double *times = xmalloc(sizeof(double) * (size_t)steps), loss = 0, loss0 = 0; /* loss0: B = 0, the base's */
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = cli_now();
        pissa_model_zero_grad(m);
        cli_check(pissa_model_forward_backward(m, ids, labels, c->B, c->T, 1.0f, &loss, NULL), "forward_backward");
        cli_check(pissa_optim_step(opt, params, grads, oo.lr), "AdamW step");
        double t = cli_now() - t0;
        if (s == 0) loss0 = loss;
        if (s >= warmup) times[s - warmup] = t;
        if (!isfinite(loss)) {
            fprintf(stderr, "bench_train: loss %g at step %d\n", loss, s);
            return 1;
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mib = (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
    size_t arena = pissa_model_arena_bytes(m);
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    double med = times[steps / 2], lo = times[0], hi = times[steps - 1];
    if (steps % 2 == 0) med = 0.5 * (times[steps / 2 - 1] + times[steps / 2]);

    double peak = sgemm_peak(peak_n), flops = step_flops(c), gflops = flops / med * 1e-9;
    printf("config %s: D %lld L %lld H %lld KV %lld F %lld V %lld, batch %d x %d, LoRA r %d on 7 projections "
           "(%lld trainable), base %s, %d threads, OpenBLAS core %s\n",
           c->name, (long long)c->D, (long long)c->L, (long long)c->H, (long long)c->KV, (long long)c->F,
           (long long)c->V, c->B, c->T, RANK, (long long)trainable, base, threads, openblas_get_corename());
    printf("step (median of %d after %d warm-up): %.1f ms (min %.1f, max %.1f), %.0f tokens/s, first loss %.6f\n",
           steps, warmup, 1e3 * med, 1e3 * lo, 1e3 * hi, (double)ntok / med, loss0);
    printf("matmul work %.2f GFLOP/step: %.1f GFLOP/s = %.0f%% of sgemm peak %.1f GFLOP/s (%d^3)\n", flops * 1e-9,
           gflops, 100 * gflops / peak, peak, peak_n);
    printf("peak RSS %.0f MiB (planned arena %.0f MiB%s)\n", rss_mib, (double)arena / (1024.0 * 1024.0),
           checkpoint ? ", activation checkpointing" : "");
    printf("RESULT config=%s base=%s ms=%.2f ms_min=%.2f ms_max=%.2f tokens_s=%.1f gflop_step=%.4f gflops=%.2f "
           "peak=%.2f rss_mib=%.1f arena_mib=%.1f loss0=%.6f checkpoint=%d\n",
           c->name, base, 1e3 * med, 1e3 * lo, 1e3 * hi, (double)ntok / med, flops * 1e-9, gflops, peak, rss_mib,
           (double)arena / (1024.0 * 1024.0), loss0, checkpoint);

    free(times);
    free(ids);
    free(labels);
    pissa_optim_free(opt);
    free(sizes);
    free(params);
    free(grads);
    pissa_model_free(m);
    return 0;
}
