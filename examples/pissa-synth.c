/* pissa-synth: writes a small random checkpoint of any supported family (pissa/config.h) in Hugging Face layout
 * (config.json + model.safetensors, or shards + model.safetensors.index.json), so that pissa-init, the tests, the
 * benchmarks and the quick start need no download. The tensors are the config's list (pissa_config_tensor), drawn at
 * the scale Hugging Face's initializer_range gives a new model (so a wide model starts near a loss of ln V, and
 * activations and quantization see realistic values), and linear weights get a decaying singular spectrum, like
 * trained weights, so that PiSSA's principal components mean something. */
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *usage =
    "usage: pissa-synth --out DIR [options]\n"
    "Writes a random checkpoint (config.json + model.safetensors) to DIR.\n"
    "  --family F       llama, mistral, qwen2 or qwen3 (default llama)\n"
    "  --dim D          hidden size (default 64)\n"
    "  --hidden F       intermediate size (default 172)\n"
    "  --layers L       number of layers (default 2)\n"
    "  --heads H        attention heads (default 8)\n"
    "  --kv-heads KV    key/value heads (default 4)\n"
    "  --head-dim HD    head dimension (default D / H)\n"
    "  --vocab V        vocabulary size (default 512)\n"
    "  --seq T          max_position_embeddings (default 512)\n"
    "  --rope-theta X   RoPE base (default 10000)\n"
    "  --rope-scaling S linear:FACTOR or llama3:FACTOR,LOW,HIGH,ORIGINAL_MAX (default: none)\n"
    "  --sliding-window W  mistral: attention window (default: none)\n"
    "  --attention-bias llama, qwen3: biases on q/k/v/o_proj (qwen2 always has them on q/k/v)\n"
    "  --mlp-bias       llama: biases on gate/up/down_proj\n"
    "  --untied         write a separate lm_head.weight (default: tied embeddings)\n"
    "  --dtype T        f32, bf16 or f16 (default f32)\n"
    "  --shards N       split the weights into N shards with an index (default 1: one file)\n"
    "  --initializer-range X  std of the weights (config.json initializer_range; default 0.02)\n"
    "  --seed S         random seed (default 1)\n";

typedef enum { NORM, EMBED, LINEAR, BIAS } kind;

typedef struct spec {
    char name[96];
    kind kind;
    int ndim;
    int64_t shape[2];
    uint64_t seed;
    double range; /* initializer_range */
} spec;

/* transformers' _init_weights draws every Linear and Embedding N(0, range²) (range = initializer_range, 0.02 for
 * Llama, Mistral, Qwen), norms 1 and biases 0. Here:
 *   EMBED  N(0, range²), as transformers: with a tied head the logits are ĥ·e with ‖ĥ‖ ≈ √D, of std range·√D
 *          (1.3 at D 4096), so a new model starts near a loss of ln V. (N(0, 1) gave logits of std √D: a loss of
 *          2063 at D 4096.)
 *   LINEAR (out, in): W = c·(G1·diag(σ)·G2 + ν·N), G1 (out, k), G2 (k, in), N (out, in) standard normal,
 *          σ_j = 1/(1 + j), ν = 0.05, k = min(out, in, 1024), c = range / √(Σ_j σ_j² + ν²): every element has
 *          variance c²·(Σ_j σ_j² + ν²) = range², transformers' scale, but the singular values decay like a
 *          trained weight's (about σ_j·c·√(out·in) for the leading ones) instead of a Gaussian matrix's flat
 *          spectrum, so PiSSA's principal components hold most of the energy. The noise's singular values are
 *          about ν·c·(√out + √in), which the spectrum meets near j = √(out·in) / (ν·(√out + √in)) (≈ 450 at
 *          2048², 800 at 11008 × 4096): components past 1024 would be buried in it anyway, and capping k keeps a
 *          7B model to minutes.
 *   NORM   1 + N(0, 0.05²) rather than exactly 1, so that a path that dropped a norm weight would show.
 *   BIAS   N(0, 0.1²) rather than transformers' 0, for the same reason; the families with biases (Qwen2, the
 *          bias options) are tested at small D, where 0.1 is comparable with a projection's output. */
enum { MAX_RANK = 1024 };
static const double NOISE = 0.05;

static pissa_status fill(void *user, const char *name, float *dst, int64_t numel) {
    const spec *s = user;
    uint64_t x = s->seed;
    for (const char *p = name; *p; p++) x = (x ^ (unsigned char)*p) * 1099511628211ULL;
    if (s->kind == NORM) {
        for (int64_t i = 0; i < numel; i++) dst[i] = (float)(1.0 + 0.05 * cli_normal(&x));
        return PISSA_OK;
    }
    if (s->kind == EMBED || s->kind == BIAS) {
        double std = s->kind == EMBED ? s->range : 0.1;
        for (int64_t i = 0; i < numel; i++) dst[i] = (float)(std * cli_normal(&x));
        return PISSA_OK;
    }
    int64_t out = s->shape[0], in = s->shape[1], k = out < in ? out : in;
    if (k > MAX_RANK) k = MAX_RANK;
    double energy = NOISE * NOISE; /* Σ_j σ_j² + ν² */
    for (int64_t j = 0; j < k; j++) energy += 1.0 / ((1.0 + j) * (1.0 + j));
    double c = s->range / sqrt(energy);
    float *g1 = malloc(sizeof(float) * (size_t)(out * k)), *g2 = malloc(sizeof(float) * (size_t)(k * in));
    if (!g1 || !g2) {
        free(g1);
        free(g2);
        return PISSA_ERR_NOMEM;
    }
    for (int64_t i = 0; i < out; i++) /* c·G1·diag(σ) */
        for (int64_t j = 0; j < k; j++) g1[i * k + j] = (float)(cli_normal(&x) * c / (1.0 + j));
    for (int64_t i = 0; i < k * in; i++) g2[i] = (float)cli_normal(&x);
    for (int64_t i = 0; i < numel; i++) dst[i] = (float)(NOISE * c * cli_normal(&x));
    int64_t s1[2] = {out, k}, s2[2] = {k, in};
    pissa_tensor *G1 = NULL, *G2 = NULL, *W = NULL;
    pissa_status st = pissa_tensor_wrap(g1, 2, s1, &G1);
    if (st == PISSA_OK) st = pissa_tensor_wrap(g2, 2, s2, &G2);
    if (st == PISSA_OK) st = pissa_tensor_wrap(dst, 2, s->shape, &W);
    if (st == PISSA_OK) st = pissa_matmul(W, G1, 0, G2, 0, 1.0f, 1.0f);
    pissa_tensor_free(G1);
    pissa_tensor_free(G2);
    pissa_tensor_free(W);
    free(g1);
    free(g2);
    return st;
}

/* X in the shortest form that reads back as X (as Python's json writes a float). */
static void shortest_double(double x, char *buf, size_t cap) {
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, cap, "%.*g", p, x);
        if (strtod(buf, NULL) == x) return;
    }
}

static int cmp_spec(const void *a, const void *b) { return strcmp(((const spec *)a)->name, ((const spec *)b)->name); }

/* "linear:F" or "llama3:F,LOW,HIGH,ORIG" as the rope_scaling object of config.json, into BUF. */
static void rope_scaling_json(const char *arg, char *buf, size_t cap) {
    double f, lo, hi;
    long long orig;
    char tail;
    if (sscanf(arg, "linear:%lf%c", &f, &tail) == 1 && f > 0)
        snprintf(buf, cap, "{\"factor\": %.17g, \"rope_type\": \"linear\"}", f);
    else if (sscanf(arg, "llama3:%lf,%lf,%lf,%lld%c", &f, &lo, &hi, &orig, &tail) == 4 && f > 0 && hi > lo && orig > 0)
        snprintf(buf, cap, "{\"factor\": %.17g, \"high_freq_factor\": %.17g, \"low_freq_factor\": %.17g, "
                 "\"original_max_position_embeddings\": %lld, \"rope_type\": \"llama3\"}", f, hi, lo, orig);
    else cli_usage_error("--rope-scaling: '%s' is not linear:FACTOR or llama3:FACTOR,LOW,HIGH,ORIGINAL_MAX", arg);
}

int main(int argc, char **argv) {
    cli_prog = "pissa-synth";
    const char *out = NULL, *family = "llama", *rope_scaling = NULL;
    int64_t D = 64, F = 172, L = 2, H = 8, KV = 4, V = 512, T = 512, shards = 1, hd = 0, window = 0;
    int tied = 1, attention_bias = 0, mlp_bias = 0;
    double theta = 10000.0, range = 0.02;
    uint64_t seed = 1;
    pissa_dtype dtype = PISSA_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--out")) out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--family")) family = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--dim")) D = cli_int(a, cli_value(argc, argv, &i), 1, 1 << 16);
        else if (!strcmp(a, "--hidden")) F = cli_int(a, cli_value(argc, argv, &i), 1, 1 << 18);
        else if (!strcmp(a, "--layers")) L = cli_int(a, cli_value(argc, argv, &i), 1, 1024);
        else if (!strcmp(a, "--heads")) H = cli_int(a, cli_value(argc, argv, &i), 1, 1024);
        else if (!strcmp(a, "--kv-heads")) KV = cli_int(a, cli_value(argc, argv, &i), 1, 1024);
        else if (!strcmp(a, "--head-dim")) hd = cli_int(a, cli_value(argc, argv, &i), 2, 1 << 12);
        else if (!strcmp(a, "--vocab")) V = cli_int(a, cli_value(argc, argv, &i), 1, 1 << 22);
        else if (!strcmp(a, "--seq")) T = cli_int(a, cli_value(argc, argv, &i), 1, 1 << 24);
        else if (!strcmp(a, "--rope-theta")) theta = cli_double(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--rope-scaling")) rope_scaling = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--sliding-window")) window = cli_int(a, cli_value(argc, argv, &i), 1, 1 << 24);
        else if (!strcmp(a, "--attention-bias")) attention_bias = 1;
        else if (!strcmp(a, "--mlp-bias")) mlp_bias = 1;
        else if (!strcmp(a, "--shards")) shards = cli_int(a, cli_value(argc, argv, &i), 1, 99999);
        else if (!strcmp(a, "--initializer-range")) {
            range = cli_double(a, cli_value(argc, argv, &i));
            if (!(range > 0) || !isfinite(range)) cli_usage_error("--initializer-range must be a positive number");
        } else if (!strcmp(a, "--seed")) seed = cli_u64(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--untied")) tied = 0;
        else if (!strcmp(a, "--dtype")) {
            cli_check(pissa_dtype_parse(cli_value(argc, argv, &i), &dtype), "--dtype");
            if (!pissa_dtype_is_float(dtype)) cli_usage_error("--dtype must be f32, bf16 or f16");
        } else cli_usage_error("unknown option '%s'", a);
    }
    if (!out) cli_usage_error("--out DIR is required");
    if (!hd && D % H) cli_usage_error("--heads must divide --dim (or give --head-dim)");
    if (!hd) hd = D / H;
    if (H % KV) cli_usage_error("--kv-heads must divide --heads");
    if (!(theta > 0)) cli_usage_error("--rope-theta must be positive");
    if (window && strcmp(family, "mistral") != 0) cli_usage_error("--sliding-window applies to --family mistral");
    if (mlp_bias && strcmp(family, "llama") != 0) cli_usage_error("--mlp-bias applies to --family llama");
    if (attention_bias && strcmp(family, "llama") && strcmp(family, "qwen3"))
        cli_usage_error("--attention-bias applies to --family llama and qwen3");

    /* config.json: what transformers writes for such a model; read back by the library, whose tensor list
     * (pissa_config_tensor) is then written */
    static const char *const arch[][2] = {{"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"},
                                          {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"}};
    const char *architecture = NULL;
    for (size_t k = 0; k < sizeof arch / sizeof *arch; k++)
        if (!strcmp(family, arch[k][0])) architecture = arch[k][1];
    if (!architecture) cli_usage_error("--family: '%s' is not llama, mistral, qwen2 or qwen3", family);
    char scaling[512] = "null", window_json[32] = "null", range_json[32];
    shortest_double(range, range_json, sizeof range_json);
    if (rope_scaling) rope_scaling_json(rope_scaling, scaling, sizeof scaling);
    if (window) snprintf(window_json, sizeof window_json, "%lld", (long long)window);
    char config[4096];
    int len = snprintf(config, sizeof config,
                       "{\n  \"architectures\": [\n    \"%s\"\n  ],\n  \"attention_bias\": %s,\n"
                       "  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n  \"head_dim\": %lld,\n"
                       "  \"hidden_act\": \"silu\",\n  \"hidden_size\": %lld,\n  \"initializer_range\": %s,\n"
                       "  \"intermediate_size\": %lld,\n  \"max_position_embeddings\": %lld,\n"
                       "  \"mlp_bias\": %s,\n  \"model_type\": \"%s\",\n  \"num_attention_heads\": %lld,\n"
                       "  \"num_hidden_layers\": %lld,\n  \"num_key_value_heads\": %lld,\n"
                       "  \"rms_norm_eps\": 1e-05,\n  \"rope_scaling\": %s,\n  \"rope_theta\": %.17g,\n"
                       "  \"sliding_window\": %s,\n  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"%s\",\n"
                       "  \"use_sliding_window\": false,\n  \"vocab_size\": %lld\n}\n",
                       architecture, attention_bias ? "true" : "false", (long long)hd, (long long)D, range_json,
                       (long long)F, (long long)T, mlp_bias ? "true" : "false", family, (long long)H, (long long)L,
                       (long long)KV, scaling, theta, window_json, tied ? "true" : "false",
                       dtype == PISSA_F32 ? "float32" : dtype == PISSA_BF16 ? "bfloat16" : "float16", (long long)V);
    pissa_llama_config cfg;
    cli_check(pissa_llama_config_parse(config, (size_t)len, "config.json", &cfg), "config.json");
    cli_check(pissa_llama_config_check_supported(&cfg), "config.json");

    int n = (int)pissa_config_tensor_count(&cfg);
    spec *specs = calloc((size_t)n, sizeof *specs);
    if (!specs) cli_fail("out of memory");
    for (int i = 0; i < n; i++) {
        pissa_tensor_spec ts;
        cli_check(pissa_config_tensor(&cfg, (size_t)i, &ts), "config");
        kind k = ts.role == PISSA_ROLE_EMBED ? EMBED : ts.role == PISSA_ROLE_BIAS ? BIAS
                 : ts.ndim == 2 ? LINEAR : NORM;
        spec *sp = &specs[i];
        *sp = (spec){.kind = k, .ndim = ts.ndim, .shape = {ts.shape[0], ts.ndim == 2 ? ts.shape[1] : 0}, .seed = seed,
                      .range = range};
        snprintf(sp->name, sizeof sp->name, "%s", ts.name);
    }
    qsort(specs, (size_t)n, sizeof *specs, cmp_spec);
    if (shards > n) shards = n;

    char path[4096];
    static const char *const mine[] = {CLI_CHECKPOINT_FILES, NULL};
    const char *dst = cli_out_begin(out, mine); /* OUT is replaced whole at the end */

    /* Shards hold contiguous runs of the sorted names, as Hugging Face's sharding does. */
    size_t idx_cap = 256 + (size_t)n * 200, idx_len = 0;
    char *index = malloc(idx_cap);
    if (!index) cli_fail("out of memory");
    int64_t total_bytes = 0;
    for (int64_t s = 0, first = 0; s < shards; s++) {
        int64_t last = (s + 1) * n / shards;
        char file[64];
        if (shards == 1) snprintf(file, sizeof file, "model.safetensors");
        else snprintf(file, sizeof file, "model-%05lld-of-%05lld.safetensors", (long long)s + 1, (long long)shards);
        pissa_st_writer *w;
        cli_check(pissa_st_writer_create(&w), "safetensors writer");
        for (int64_t i = first; i < last; i++) {
            cli_check(pissa_st_writer_add_fill(w, specs[i].name, dtype, specs[i].ndim, specs[i].shape, fill, &specs[i]),
                      specs[i].name);
            int64_t numel = specs[i].shape[0] * (specs[i].ndim == 2 ? specs[i].shape[1] : 1);
            total_bytes += numel * (int64_t)pissa_dtype_size(dtype);
            idx_len += (size_t)snprintf(index + idx_len, idx_cap - idx_len, "%s\n    \"%s\": \"%s\"",
                                        i ? "," : "", specs[i].name, file);
        }
        snprintf(path, sizeof path, "%s/%s", dst, file);
        cli_check(pissa_st_writer_write(w, path), path);
        pissa_st_writer_free(w);
        first = last;
    }
    if (shards > 1) {
        char *text = malloc(idx_len + 256);
        if (!text) cli_fail("out of memory");
        int len = sprintf(text, "{\n  \"metadata\": {\n    \"total_size\": %lld\n  },\n  \"weight_map\": {%s\n  }\n}\n",
                          (long long)total_bytes, index);
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dst);
        cli_check(pissa_write_file_atomic(path, text, (size_t)len), path);
        free(text);
    }
    free(index);

    snprintf(path, sizeof path, "%s/config.json", dst);
    cli_check(pissa_write_file_atomic(path, config, (size_t)len), path);
    cli_out_commit();
    fprintf(stderr, "pissa-synth: wrote %s (%d tensors, %lld shard%s, %s)\n", out, n, (long long)shards,
            shards > 1 ? "s" : "", pissa_dtype_name(dtype));
    free(specs);
    return 0;
}
