/* pissa-synth: writes a small random Llama checkpoint in Hugging Face layout (config.json +
 * model.safetensors, or shards + model.safetensors.index.json), so that pissa-init, the tests and the
 * quick start need no download. Linear weights get a decaying singular spectrum, like trained weights,
 * so that PiSSA's principal components mean something. */
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *usage =
    "usage: pissa-synth --out DIR [options]\n"
    "Writes a random Llama-architecture checkpoint (config.json + model.safetensors) to DIR.\n"
    "  --dim D          hidden size (default 64)\n"
    "  --hidden F       intermediate size (default 172)\n"
    "  --layers L       number of layers (default 2)\n"
    "  --heads H        attention heads (default 8)\n"
    "  --kv-heads KV    key/value heads (default 4)\n"
    "  --vocab V        vocabulary size (default 512)\n"
    "  --seq T          max_position_embeddings (default 512)\n"
    "  --untied         write a separate lm_head.weight (default: tied embeddings)\n"
    "  --dtype T        f32, bf16 or f16 (default f32)\n"
    "  --shards N       split the weights into N shards with an index (default 1: one file)\n"
    "  --seed S         random seed (default 1)\n";

typedef enum { NORM, EMBED, LINEAR } kind;

typedef struct spec {
    char name[96];
    kind kind;
    int ndim;
    int64_t shape[2];
    uint64_t seed;
} spec;

/* NORM: 1 + N(0, 0.05²). EMBED: N(0, 1). LINEAR (out, in): W = G1·diag(σ)·G2/√in + 0.05·N/√in with
 * G1, G2 Gaussian and σ_j = 1/(1 + j): singular values decay like trained weights'. */
static pissa_status fill(void *user, const char *name, float *dst, int64_t numel) {
    const spec *s = user;
    uint64_t x = s->seed;
    for (const char *p = name; *p; p++) x = (x ^ (unsigned char)*p) * 1099511628211ULL;
    if (s->kind == NORM) {
        for (int64_t i = 0; i < numel; i++) dst[i] = (float)(1.0 + 0.05 * cli_normal(&x));
        return PISSA_OK;
    }
    if (s->kind == EMBED) {
        for (int64_t i = 0; i < numel; i++) dst[i] = (float)cli_normal(&x);
        return PISSA_OK;
    }
    int64_t out = s->shape[0], in = s->shape[1], k = out < in ? out : in;
    float *g1 = malloc(sizeof(float) * (size_t)(out * k)), *g2 = malloc(sizeof(float) * (size_t)(k * in));
    if (!g1 || !g2) {
        free(g1);
        free(g2);
        return PISSA_ERR_NOMEM;
    }
    double c = 1.0 / sqrt((double)in);
    for (int64_t i = 0; i < out; i++)
        for (int64_t j = 0; j < k; j++) g1[i * k + j] = (float)(cli_normal(&x) * c / (1.0 + j));
    for (int64_t i = 0; i < k * in; i++) g2[i] = (float)cli_normal(&x);
    for (int64_t i = 0; i < numel; i++) dst[i] = (float)(0.05 * c * cli_normal(&x));
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

static spec *add_spec(spec *v, int *n, const char *name, kind k, int ndim, int64_t d0, int64_t d1, uint64_t seed) {
    spec *s = &v[(*n)++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->kind = k;
    s->ndim = ndim;
    s->shape[0] = d0;
    s->shape[1] = d1;
    s->seed = seed;
    return s;
}

static int cmp_spec(const void *a, const void *b) { return strcmp(((const spec *)a)->name, ((const spec *)b)->name); }

int main(int argc, char **argv) {
    cli_prog = "pissa-synth";
    const char *out = NULL;
    int64_t D = 64, F = 172, L = 2, H = 8, KV = 4, V = 512, T = 512, shards = 1;
    int tied = 1;
    uint64_t seed = 1;
    pissa_dtype dtype = PISSA_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--out")) out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--dim")) D = cli_int(a, cli_value(argc, argv, &i), 1, 1 << 16);
        else if (!strcmp(a, "--hidden")) F = cli_int(a, cli_value(argc, argv, &i), 1, 1 << 18);
        else if (!strcmp(a, "--layers")) L = cli_int(a, cli_value(argc, argv, &i), 1, 1024);
        else if (!strcmp(a, "--heads")) H = cli_int(a, cli_value(argc, argv, &i), 1, 1024);
        else if (!strcmp(a, "--kv-heads")) KV = cli_int(a, cli_value(argc, argv, &i), 1, 1024);
        else if (!strcmp(a, "--vocab")) V = cli_int(a, cli_value(argc, argv, &i), 1, 1 << 22);
        else if (!strcmp(a, "--seq")) T = cli_int(a, cli_value(argc, argv, &i), 1, 1 << 24);
        else if (!strcmp(a, "--shards")) shards = cli_int(a, cli_value(argc, argv, &i), 1, 99999);
        else if (!strcmp(a, "--seed")) seed = cli_u64(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--untied")) tied = 0;
        else if (!strcmp(a, "--dtype")) {
            cli_check(pissa_dtype_parse(cli_value(argc, argv, &i), &dtype), "--dtype");
            if (!pissa_dtype_is_float(dtype)) cli_usage_error("--dtype must be f32, bf16 or f16");
        } else cli_usage_error("unknown option '%s'", a);
    }
    if (!out) cli_usage_error("--out DIR is required");
    if (D % H || H % KV) cli_usage_error("--heads must divide --dim, and --kv-heads must divide --heads");
    int64_t hd = D / H;

    int n = 0, cap = (int)(L * 9 + 3);
    spec *specs = calloc((size_t)cap, sizeof *specs);
    if (!specs) cli_fail("out of memory");
    char name[96];
    add_spec(specs, &n, "model.embed_tokens.weight", EMBED, 2, V, D, seed);
    add_spec(specs, &n, "model.norm.weight", NORM, 1, D, 0, seed);
    if (!tied) add_spec(specs, &n, "lm_head.weight", LINEAR, 2, V, D, seed);
    static const struct {
        const char *suffix;
        kind kind;
        int which; /* shape: 0 norm (D), 1 q/o, 2 k/v, 3 gate/up, 4 down */
    } layer[] = {{"input_layernorm.weight", NORM, 0},        {"post_attention_layernorm.weight", NORM, 0},
                 {"self_attn.q_proj.weight", LINEAR, 1},      {"self_attn.k_proj.weight", LINEAR, 2},
                 {"self_attn.v_proj.weight", LINEAR, 2},      {"self_attn.o_proj.weight", LINEAR, 5},
                 {"mlp.gate_proj.weight", LINEAR, 3},         {"mlp.up_proj.weight", LINEAR, 3},
                 {"mlp.down_proj.weight", LINEAR, 4}};
    for (int64_t l = 0; l < L; l++)
        for (size_t j = 0; j < sizeof layer / sizeof layer[0]; j++) {
            snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, layer[j].suffix);
            int64_t d0 = 0, d1 = 0;
            switch (layer[j].which) {
            case 0: d0 = D; break;
            case 1: d0 = H * hd, d1 = D; break;
            case 2: d0 = KV * hd, d1 = D; break;
            case 3: d0 = F, d1 = D; break;
            case 4: d0 = D, d1 = F; break;
            case 5: d0 = D, d1 = H * hd; break;
            }
            add_spec(specs, &n, name, layer[j].kind, layer[j].which ? 2 : 1, d0, d1, seed);
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

    char config[2048];
    int len = snprintf(config, sizeof config,
                       "{\n  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],\n  \"attention_bias\": false,\n"
                       "  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n  \"head_dim\": %lld,\n"
                       "  \"hidden_act\": \"silu\",\n  \"hidden_size\": %lld,\n  \"initializer_range\": 0.02,\n"
                       "  \"intermediate_size\": %lld,\n  \"max_position_embeddings\": %lld,\n"
                       "  \"mlp_bias\": false,\n  \"model_type\": \"llama\",\n  \"num_attention_heads\": %lld,\n"
                       "  \"num_hidden_layers\": %lld,\n  \"num_key_value_heads\": %lld,\n"
                       "  \"rms_norm_eps\": 1e-05,\n  \"rope_scaling\": null,\n  \"rope_theta\": 10000.0,\n"
                       "  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"%s\",\n  \"vocab_size\": %lld\n}\n",
                       (long long)hd, (long long)D, (long long)F, (long long)T, (long long)H, (long long)L,
                       (long long)KV, tied ? "true" : "false",
                       dtype == PISSA_F32 ? "float32" : dtype == PISSA_BF16 ? "bfloat16" : "float16", (long long)V);
    snprintf(path, sizeof path, "%s/config.json", dst);
    cli_check(pissa_write_file_atomic(path, config, (size_t)len), path);
    cli_out_commit();
    fprintf(stderr, "pissa-synth: wrote %s (%d tensors, %lld shard%s, %s)\n", out, n, (long long)shards,
            shards > 1 ? "s" : "", pissa_dtype_name(dtype));
    free(specs);
    return 0;
}
