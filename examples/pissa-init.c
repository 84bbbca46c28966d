/* pissa-init: PiSSA/LoRA initialisation of a Hugging Face checkpoint, as the official PiSSA workflow does it: OUT/
 * gets the residual model (config.json + model.safetensors, the targeted weights replaced by W_res = W − s·B·A),
 * OUT/pissa_init/ the initial adapter in PEFT's format with init_lora_weights: true, so loading it never redoes the
 * SVD. With --quantize, QPiSSA as the official utils/init_qpissa.py: T rounds of SVD and quantization, the residual
 * written as deq(q(W − s·B·A)) in the checkpoint's dtype, and the PiSSA repo's quantization error reported. Every
 * weight is read, split and written one at a time from the mapped checkpoint (phase 2 recomputes each residual from
 * its adapter), so memory holds a few matrices, not the model. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *usage =
    "usage: pissa-init --model DIR --out DIR --rank R [options]\n"
    "Splits each targeted weight W of a Hugging Face Llama checkpoint into a trainable adapter (A, B) and a\n"
    "frozen residual W_res = W - s*B*A. Writes OUT/config.json + OUT/model.safetensors (the residual model)\n"
    "and OUT/pissa_init/ (adapter_model.safetensors + adapter_config.json, a PEFT LoRA adapter).\n"
    "\n"
    "  --model DIR        checkpoint folder: config.json + model.safetensors (or a sharded index)\n"
    "  --out DIR          output folder (created; must differ from --model)\n"
    "  --rank R           adapter rank r (1 <= r <= min(out, in) of every targeted weight)\n"
    "  --alpha A          lora_alpha (default: R, so the scale alpha/r is 1)\n"
    "  --target LIST      comma-separated q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,\n"
    "                     or all-linear (default: q_proj,v_proj, PEFT's default for Llama)\n"
    "  --init KIND        pissa (exact SVD), pissa_niter_N (randomized SVD, N subspace iterations),\n"
    "                     lora (kaiming-uniform A, B = 0) or gaussian (default: pissa_niter_4)\n"
    "  --oversample P     randomized-SVD oversampling (default 8; 0 = PEFT's torch.svd_lowrank(q=r))\n"
    "  --seed S           seed of the random test matrix / LoRA init (default 0)\n"
    "  --rslora           scale alpha/sqrt(r) instead of alpha/r (use_rslora)\n"
    "  --dtype T          f32, bf16 or f16 for the residual model and adapter (default: the base's)\n"
    "  --quantize Q       QPiSSA for a base that will be trained quantized (--base-dtype Q): nf4 or int8. The\n"
    "                     residual is written dequantized, deq(q(W - s*B*A)), as the official init_qpissa.py\n"
    "  --qiter T          QPiSSA's alternating rounds (default 1): res = W - deq(q(W - s*B*A)) is split again\n"
    "  --no-quant-error   skip the error report of --quantize (two full SVDs per matrix: slow for 7B models)\n"
    "  --exact-energy     always compute the exact top-r energy for randomized SVD (default: only when cheap)\n"
    "  --threads N        BLAS threads (default: OPENBLAS_NUM_THREADS or all cores)\n"
    "  -q, --quiet        no progress lines\n"
    "  -h, --help         this text\n";


typedef struct target {
    char module[128]; /* model.layers.3.self_attn.q_proj */
    char tensor[160]; /* module + ".weight" */
    int64_t layer, out, in;
    pissa_dtype dtype; /* stored dtype of W in the base */
    float *A;          /* (r, in) */
    float *B;          /* (out, r) */
    double seconds, energy, exact_energy, rel_err;
    pissa_qpissa_stats q; /* --quantize: the error against QLoRA and the re-quantized codes */
} target;

typedef struct run {
    pissa_checkpoint *ckpt;
    pissa_init_opts opts;
    double scale;
    int quantize;      /* a pissa_qtype (NF4, INT8), or -1 */
    int qiter, quant_error;
    int have_dtype;
    pissa_dtype dtype;
    float *W, *sBA; /* scratch, (max out·in) */
} run;

typedef struct fill_ctx {
    run *run;
    target *t;
    pissa_dtype out_dtype;
} fill_ctx;

/* Parses --target into a projection mask (pissa_proj_parse), or exits naming the option. */
static unsigned parse_targets(const char *list) {
    unsigned mask;
    if (pissa_proj_parse(list, &mask) != PISSA_OK) cli_usage_error("--target: %s", pissa_last_error());
    return mask;
}

/* Σ S_i² / ‖W‖² for S_i = s·‖A_i‖² (A = diag(√(S/s))·Vᵀ has rows of squared norm S_i/s). */
static double captured_energy(const float *A, int64_t r, int64_t in, double scale, double w2) {
    double e = 0;
    for (int64_t i = 0; i < r; i++) {
        double n2 = 0;
        for (int64_t j = 0; j < in; j++) n2 += (double)A[i * in + j] * A[i * in + j];
        e += (scale * n2) * (scale * n2);
    }
    return w2 > 0 ? e / w2 : 0;
}

static double sumsq(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

/* Residual weight of a target: W − s·B·A in float32, rounded to the stored dtype; records
 * ‖W − W_res − s·B·A‖/‖W‖ with W_res as stored and s·B·A recomputed independently by sgemm. */
static pissa_status fill_residual(void *user, const char *name, float *dst, int64_t numel) {
    fill_ctx *c = user;
    target *t = c->t;
    run *R = c->run;
    int64_t r = R->opts.rank;
    pissa_status st = pissa_checkpoint_read_f32(R->ckpt, name, R->W, numel);
    if (st != PISSA_OK) return st;
    st = pissa_adapter_residual(R->W, t->out, t->in, r, t->A, t->B, R->scale, dst);
    if (st == PISSA_OK && R->quantize >= 0) /* QPiSSA: the last round's Q = q(W − s·B·A), written as deq(Q) */
        st = pissa_quant_roundtrip((pissa_qtype)R->quantize, dst, t->out, t->in, dst);
    if (st != PISSA_OK) return st;
    if (c->out_dtype != PISSA_F32) { /* round as the file will store it: the writer's conversion is then exact */
        uint16_t *tmp = malloc(sizeof(uint16_t) * (size_t)numel);
        if (!tmp) return PISSA_ERR_NOMEM;
        pissa_convert_from_f32(tmp, dst, c->out_dtype, (size_t)numel);
        pissa_convert_to_f32(dst, tmp, c->out_dtype, (size_t)numel);
        free(tmp);
    }
    int64_t sa[2] = {r, t->in}, sb[2] = {t->out, r}, sw[2] = {t->out, t->in};
    pissa_tensor *A = NULL, *B = NULL, *P = NULL;
    if ((st = pissa_tensor_wrap(t->A, 2, sa, &A)) == PISSA_OK && (st = pissa_tensor_wrap(t->B, 2, sb, &B)) == PISSA_OK &&
        (st = pissa_tensor_wrap(R->sBA, 2, sw, &P)) == PISSA_OK)
        st = pissa_matmul(P, B, 0, A, 0, (float)R->scale, 0.0f);
    pissa_tensor_free(A);
    pissa_tensor_free(B);
    pissa_tensor_free(P);
    if (st != PISSA_OK) return st;
    double e = 0;
    for (int64_t i = 0; i < numel; i++) {
        double d = (double)R->W[i] - dst[i] - R->sBA[i];
        e += d * d;
    }
    double w2 = sumsq(R->W, numel);
    t->rel_err = w2 > 0 ? sqrt(e / w2) : sqrt(e);
    return PISSA_OK;
}

/* QPiSSA's report: per matrix and on average, the PiSSA repo's error reduction against QLoRA,
 * 1 − ‖W − (deq(q(W_res)) + s·B·A)‖_* / ‖W − deq(q(W))‖_*, and how many codes the written residual re-quantizes to. */
static void report_qpissa(const run *R, const target *targets, int64_t n) {
    const char *q = pissa_qtype_name((pissa_qtype)R->quantize);
    printf("  QPiSSA: %s, %d round%s; the residual is written as deq(q(W - s*B*A))\n", q, R->qiter,
           R->qiter == 1 ? "" : "s");
    if (!R->quant_error) {
        printf("  (quantization error not computed: --no-quant-error)\n");
        return;
    }
    double sum_red = 0, sum_qpissa = 0, sum_qlora = 0;
    int64_t same = 0, total = 0, sc_same = 0, sc_total = 0;
    printf("  %-44s %16s %16s %10s %10s\n", "matrix", "|E| QLoRA", "|E| QPiSSA", "reduction", "codes kept");
    for (int64_t i = 0; i < n; i++) {
        const pissa_qpissa_stats *st = &targets[i].q;
        printf("  %-44s %16.9g %16.9g %9.4f%% %9.4f%%\n", targets[i].module, st->nuc_qlora, st->nuc_qpissa,
               100 * st->err_reduction, st->codes_total ? 100.0 * (double)st->codes_same / (double)st->codes_total : 0);
        sum_red += st->err_reduction;
        sum_qpissa += st->nuc_qpissa;
        sum_qlora += st->nuc_qlora;
        same += st->codes_same, total += st->codes_total;
        sc_same += st->scales_same, sc_total += st->scales_total;
    }
    printf("  quantization error reduction against QLoRA (nuclear norms, %s): mean %.2f%% over %lld matrices, "
           "pooled %.2f%%\n",
           q, 100 * sum_red / (double)n, (long long)n, sum_qlora > 0 ? 100 * (1 - sum_qpissa / sum_qlora) : 0.0);
    printf("  the written residual re-quantized (--base-dtype %s): %.4f%% of %lld codes and %.4f%% of %lld scales as "
           "QPiSSA's\n",
           q, total ? 100.0 * (double)same / (double)total : 0, (long long)total,
           sc_total ? 100.0 * (double)sc_same / (double)sc_total : 0, (long long)sc_total);
}

/* config.json for OUT: the base's text, with its dtype field set when --dtype changes it. */
static char *output_config(const char *json, int have_dtype, pissa_dtype dtype) {
    if (!have_dtype) return strdup(json);
    char *out;
    cli_check(pissa_config_json_set_dtype(json, dtype, &out), "config.json");
    return out;
}

int main(int argc, char **argv) {
    cli_prog = "pissa-init";
    pissa_set_log_callback(cli_log_to_stderr, NULL);
    const char *model_dir = NULL, *out_dir = NULL, *target_list = "q_proj,v_proj", *init = "pissa_niter_4";
    int64_t rank = 0, oversample = PISSA_RSVD_DEFAULT_OVERSAMPLE;
    double alpha = NAN;
    uint64_t seed = 0;
    int rslora = 0, quiet = 0, exact_energy = 0, threads = 0;
    run R = {.quantize = -1, .qiter = 1, .quant_error = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--model")) model_dir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--out")) out_dir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--rank")) rank = cli_int(a, cli_value(argc, argv, &i), 1, INT32_MAX);
        else if (!strcmp(a, "--alpha")) {
            alpha = cli_double(a, cli_value(argc, argv, &i));
            if (!(alpha > 0) || !isfinite(alpha)) cli_usage_error("--alpha must be a positive number");
        } else if (!strcmp(a, "--target")) target_list = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--init")) init = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--oversample")) oversample = cli_int(a, cli_value(argc, argv, &i), 0, INT32_MAX);
        else if (!strcmp(a, "--seed")) seed = cli_u64(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--rslora")) rslora = 1;
        else if (!strcmp(a, "--exact-energy")) exact_energy = 1;
        else if (!strcmp(a, "--quantize")) {
            R.quantize = cli_qtype(a, cli_value(argc, argv, &i));
            if (!pissa_qtype_is_quantized((pissa_qtype)R.quantize)) cli_usage_error("--quantize: nf4 or int8");
        } else if (!strcmp(a, "--qiter")) R.qiter = (int)cli_int(a, cli_value(argc, argv, &i), 1, 1000);
        else if (!strcmp(a, "--no-quant-error")) R.quant_error = 0;
        else if (!strcmp(a, "--threads")) threads = (int)cli_int(a, cli_value(argc, argv, &i), 1, 1024);
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) quiet = 1;
        else if (!strcmp(a, "--dtype")) {
            if (pissa_dtype_parse(cli_value(argc, argv, &i), &R.dtype) != PISSA_OK || !pissa_dtype_is_float(R.dtype))
                cli_usage_error("--dtype: '%s' is not f32, bf16 or f16", argv[i]);
            R.have_dtype = 1;
        } else cli_usage_error("unknown option '%s'", a);
    }
    if (!model_dir) cli_usage_error("--model DIR is required");
    if (!out_dir) cli_usage_error("--out DIR is required");
    if (!rank) cli_usage_error("--rank R is required");
    unsigned mask = parse_targets(target_list);
    R.opts = pissa_init_default_opts();
    if (pissa_init_parse(init, &R.opts) != PISSA_OK) cli_usage_error("--init: %s", pissa_last_error());
    R.opts.rank = rank;
    R.opts.alpha = isnan(alpha) ? (double)rank : alpha;
    R.opts.use_rslora = rslora;
    R.opts.oversample = oversample;
    R.opts.seed = seed;
    R.scale = pissa_lora_scale(R.opts.alpha, rank, rslora);
    int principal = R.opts.kind >= PISSA_INIT_PISSA;
    if (R.quantize >= 0 && !principal)
        cli_usage_error("--quantize is QPiSSA: it needs --init pissa or pissa_niter_N (QLoRA needs no init step: train "
                        "the base with --base-dtype %s)", pissa_qtype_name((pissa_qtype)R.quantize));
    if (R.quantize < 0 && R.qiter != 1) cli_usage_error("--qiter applies to --quantize only");
    if (threads) pissa_set_num_threads(threads);

    cli_check_output("--out", out_dir, "--model", model_dir);

    double t0 = cli_now();
    cli_check(pissa_checkpoint_open(model_dir, &R.ckpt), "--model");
    const pissa_llama_config *cfg = pissa_checkpoint_config(R.ckpt);

    /* Targets in layer order; every one must exist, be a 2-D float weight, and admit rank r. */
    int64_t L = cfg->num_hidden_layers, n_targets = 0, max_numel = 0;
    target *targets = calloc((size_t)(L * PISSA_N_PROJ), sizeof *targets);
    if (!targets) cli_fail("out of memory");
    for (int64_t l = 0; l < L; l++)
        for (int j = 0; j < PISSA_N_PROJ; j++) {
            if (!(mask & (1u << j))) continue;
            target *t = &targets[n_targets++];
            snprintf(t->module, sizeof t->module, "model.layers.%lld.%s", (long long)l, pissa_proj_path(j));
            snprintf(t->tensor, sizeof t->tensor, "%s.weight", t->module);
            t->layer = l;
            pissa_st_info info;
            cli_check(pissa_checkpoint_find(R.ckpt, t->tensor, &info), model_dir);
            if (info.ndim != 2 || !pissa_dtype_is_float(info.dtype))
                cli_fail("%s: tensor '%s' is not a 2-D F32/F16/BF16 weight", model_dir, t->tensor);
            t->out = info.shape[0];
            t->in = info.shape[1];
            t->dtype = info.dtype;
            int64_t mn = t->out < t->in ? t->out : t->in;
            if (rank > mn)
                cli_usage_error("--rank %lld is larger than min(out, in) = %lld of '%s' (%lld x %lld)",
                                (long long)rank, (long long)mn, t->tensor, (long long)t->out, (long long)t->in);
            if (t->out * t->in > max_numel) max_numel = t->out * t->in;
        }
    R.W = malloc(sizeof(float) * (size_t)max_numel);
    R.sBA = malloc(sizeof(float) * (size_t)max_numel);
    if (!R.W || !R.sBA) cli_fail("out of memory for a %lld-element weight", (long long)max_numel);

    char init_name[64];
    pissa_init_name(&R.opts, init_name, sizeof init_name);
    int randomized = R.opts.kind == PISSA_INIT_PISSA_NITER;
    if (!quiet)
        fprintf(stderr, "pissa-init: %s: %lld layers, %lld matrices, init %s, rank %lld, alpha %g (scale %g)\n",
                model_dir, (long long)L, (long long)n_targets, init_name, (long long)rank, R.opts.alpha, R.scale);

    /* Phase 1: adapters, layer by layer. W_res is recomputed from (A, B) when the residual is written. */
    double init_seconds = 0;
    for (int64_t i = 0; i < n_targets;) {
        int64_t l = targets[i].layer;
        double tl = cli_now();
        char line[512];
        int len = snprintf(line, sizeof line, "layer %lld/%lld", (long long)l + 1, (long long)L);
        for (; i < n_targets && targets[i].layer == l; i++) {
            target *t = &targets[i];
            int64_t numel = t->out * t->in;
            t->A = malloc(sizeof(float) * (size_t)(rank * t->in));
            t->B = malloc(sizeof(float) * (size_t)(t->out * rank));
            if (!t->A || !t->B) cli_fail("out of memory");
            cli_check(pissa_checkpoint_read_f32(R.ckpt, t->tensor, R.W, numel), t->tensor);
            double ts = cli_now();
            if (R.quantize < 0) cli_check(pissa_adapter_init(R.W, t->out, t->in, &R.opts, t->A, t->B, NULL), t->tensor);
            else /* QPiSSA; the residual is recomputed from A and B when written (fill_residual) */
                cli_check(pissa_qpissa_init(R.W, t->out, t->in, &R.opts, (pissa_qtype)R.quantize, R.qiter,
                                            R.have_dtype ? R.dtype : t->dtype, t->A, t->B, NULL,
                                            R.quant_error ? &t->q : NULL),
                          t->tensor);
            t->seconds = cli_now() - ts;
            init_seconds += t->seconds;
            double w2 = sumsq(R.W, numel);
            t->energy = principal ? captured_energy(t->A, rank, t->in, R.scale, w2) : 0;
            t->exact_energy = NAN;
            int64_t mn = t->out < t->in ? t->out : t->in;
            if (R.opts.kind == PISSA_INIT_PISSA) t->exact_energy = t->energy;
            else if (randomized && (exact_energy || (double)t->out * t->in * mn <= 2147483648.0)) {
                float *S = malloc(sizeof(float) * (size_t)mn);
                if (!S) cli_fail("out of memory");
                cli_check(pissa_singular_values(R.W, t->out, t->in, S), t->tensor);
                double e = 0;
                for (int64_t k = 0; k < rank; k++) e += (double)S[k] * S[k];
                t->exact_energy = w2 > 0 ? e / w2 : 0;
                free(S);
            }
            const char *short_name = strrchr(t->module, '.') + 1;
            if (principal && !isnan(t->exact_energy) && randomized)
                len += snprintf(line + len, sizeof line - (size_t)len, "  %s %.4f/%.4f", short_name, t->energy,
                                t->exact_energy);
            else if (principal)
                len += snprintf(line + len, sizeof line - (size_t)len, "  %s %.4f", short_name, t->energy);
            else
                len += snprintf(line + len, sizeof line - (size_t)len, "  %s", short_name);
            if (len >= (int)sizeof line) len = (int)sizeof line - 1;
            if (R.quantize >= 0 && R.quant_error)
                len += snprintf(line + len, sizeof line - (size_t)len, " (err -%.1f%%)", 100 * t->q.err_reduction);
            if (len >= (int)sizeof line) len = (int)sizeof line - 1;
        }
        if (!quiet) fprintf(stderr, "%s  (%.2f s)\n", line, cli_now() - tl);
    }

    /* Phase 2: the residual model, every tensor of the base under its own name, into a new version of OUT that
     * replaces the old one whole at the end. */
    static const char *const mine[] = {CLI_CHECKPOINT_FILES, "pissa_init", NULL};
    const char *dst = cli_out_begin(out_dir, mine);
    pissa_st_writer *w;
    cli_check(pissa_st_writer_create(&w), "safetensors writer");
    size_t n_tensors = pissa_checkpoint_count(R.ckpt);
    fill_ctx *ctx = calloc(n_tensors, sizeof *ctx);
    if (!ctx) cli_fail("out of memory");
    pissa_dtype adapter_dtype = R.have_dtype ? R.dtype : targets[0].dtype;
    for (size_t k = 0; k < n_tensors; k++) {
        const char *name = pissa_checkpoint_name(R.ckpt, k);
        pissa_st_info info;
        cli_check(pissa_checkpoint_find(R.ckpt, name, &info), name);
        ctx[k].run = &R;
        ctx[k].out_dtype = R.have_dtype && pissa_dtype_is_float(info.dtype) ? R.dtype : info.dtype;
        target *t = NULL;
        for (int64_t ti = 0; ti < n_targets && !t; ti++)
            if (!strcmp(targets[ti].tensor, name)) t = &targets[ti];
        ctx[k].t = t;
        pissa_status st;
        if (t) st = pissa_st_writer_add_fill(w, name, ctx[k].out_dtype, 2, info.shape, fill_residual, &ctx[k]);
        else st = pissa_st_writer_add_from_checkpoint(w, R.ckpt, name, ctx[k].out_dtype); /* pages given back */
        cli_check(st, name);
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/model.safetensors", dst);
    cli_check(pissa_st_writer_write(w, path), path);
    pissa_st_writer_free(w);
    free(ctx);
    char *config = output_config(pissa_checkpoint_config_json(R.ckpt), R.have_dtype, R.dtype);
    if (!config) cli_fail("out of memory");
    snprintf(path, sizeof path, "%s/config.json", dst);
    cli_check(pissa_write_file_atomic(path, config, strlen(config)), path);
    free(config);
    cli_copy_companions(model_dir, dst);

    /* Phase 3: the initial adapter, as PEFT saves it after PiSSA initialisation. */
    pissa_peft_config *pc = cli_residual_adapter_config(rank, R.opts.alpha, rslora, 0.0, mask, out_dir);
    pissa_peft_adapter *ad;
    cli_check(pissa_peft_adapter_create(pc, &ad), "adapter");
    pissa_peft_config_free(pc);
    for (int64_t i = 0; i < n_targets; i++)
        cli_check(pissa_peft_adapter_add(ad, targets[i].module, rank, targets[i].in, targets[i].out, targets[i].A,
                                         targets[i].B),
                  targets[i].module);
    snprintf(path, sizeof path, "%s/pissa_init", dst);
    cli_check(pissa_peft_adapter_save(ad, path, adapter_dtype), path);
    pissa_peft_adapter_free(ad);
    cli_out_commit();

    /* Summary. */
    double max_err = 0, sum_err = 0, sum_e = 0, sum_x = 0, worst = INFINITY;
    int64_t n_exact = 0;
    for (int64_t i = 0; i < n_targets; i++) {
        target *t = &targets[i];
        max_err = fmax(max_err, t->rel_err);
        sum_err += t->rel_err;
        sum_e += t->energy;
        if (!isnan(t->exact_energy)) {
            n_exact++;
            sum_x += t->exact_energy;
            if (t->exact_energy > 0) worst = fmin(worst, t->energy / t->exact_energy);
        }
    }
    printf("pissa-init: %lld matrices in %.2f s (initialisation %.2f s), init %s, rank %lld, alpha %g, scale %g\n",
           (long long)n_targets, cli_now() - t0, init_seconds, init_name, (long long)rank, R.opts.alpha, R.scale);
    if (randomized) printf("  randomized SVD: %d iterations, oversampling %lld, seed %llu\n", R.opts.niter,
                           (long long)oversample, (unsigned long long)seed);
    printf("  relative error |W - W_res - s*B*A| / |W| (W_res as stored, %s): max %.3g, mean %.3g\n",
           pissa_dtype_name(adapter_dtype), max_err, sum_err / (double)n_targets);
    if (principal) {
        printf("  energy captured by the top %lld components, |s*B*A|^2/|W|^2: mean %.4f", (long long)rank,
               sum_e / (double)n_targets);
        if (randomized && n_exact)
            printf(" (exact SVD on %lld of %lld matrices: %.4f; worst ratio %.4f)", (long long)n_exact,
                   (long long)n_targets, sum_x / (double)n_exact, worst);
        printf("\n");
    }
    if (R.quantize >= 0) report_qpissa(&R, targets, n_targets);
    printf("  wrote %s/model.safetensors, %s/config.json and %s/pissa_init/\n", out_dir, out_dir, out_dir);
    for (int64_t i = 0; i < n_targets; i++) {
        free(targets[i].A);
        free(targets[i].B);
    }
    free(targets);
    free(R.W);
    free(R.sBA);
    pissa_checkpoint_free(R.ckpt);
    return 0;
}
