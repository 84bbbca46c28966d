/* Weights loaders: llama2.c checkpoints (version 0 and 1, tied and untied) written here from known values and read
 * back by Hugging Face name, with wq/wk rows permuted as REFERENCE §6 specifies; save_hf → load_hf round trips;
 * rejection of malformed files and of Hugging Face folders the forward cannot run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weights.h"

/* A tiny model: head size 8, so the q/k row permutation moves rows; grouped-query attention (2 heads, 1 KV). */
enum { DIM = 16, HIDDEN = 24, LAYERS = 2, HEADS = 2, KV_HEADS = 1, VOCAB = 12, SEQ = 5 };
enum { HD = DIM / HEADS, KV_DIM = KV_HEADS * HD };

/* The arrays of a llama2.c file, named as REFERENCE §6 lists them. */
enum { EMB, RMS_ATT, WQ, WK, WV, WO, RMS_FFN, W1, W2, W3, RMS_FINAL, FREQ, WCLS, N_ARRAYS };
static const int64_t array_floats[N_ARRAYS] = {
    [EMB] = VOCAB * DIM,     [RMS_ATT] = LAYERS * DIM,         [WQ] = LAYERS * DIM * DIM,
    [WK] = LAYERS * KV_DIM * DIM, [WV] = LAYERS * KV_DIM * DIM, [WO] = LAYERS * DIM * DIM,
    [RMS_FFN] = LAYERS * DIM, [W1] = LAYERS * HIDDEN * DIM,     [W2] = LAYERS * DIM * HIDDEN,
    [W3] = LAYERS * HIDDEN * DIM, [RMS_FINAL] = DIM,           [FREQ] = SEQ * HD, /* real + imag */
    [WCLS] = VOCAB * DIM};
static const int v0_order[] = {EMB, RMS_ATT, WQ, WK, WV, WO, RMS_FFN, W1, W2, W3, RMS_FINAL, FREQ, WCLS};
static const int v1_order[] = {RMS_ATT, RMS_FFN, RMS_FINAL, EMB, WQ, WK, WV, WO, W1, W2, W3, WCLS};

typedef struct l2c_file {
    float *data;            /* all floats after the header, in file order */
    int64_t n;
    int64_t off[N_ARRAYS];  /* float offset of each array inside data */
    size_t header;
    char *path;
} l2c_file;

static void put_i32(unsigned char *p, int32_t v) { memcpy(p, &v, 4); } /* the test machine is little-endian */

/* Writes a llama2.c file of VERSION (0 or 1), with random floats, plus EXTRA bytes (negative: cut). */
static l2c_file write_l2c(const char *dir, const char *name, int version, int tied, int64_t extra) {
    l2c_file f = {0};
    const int *order = version == 0 ? v0_order : v1_order;
    int n_order = version == 0 ? 13 : 12;
    for (int i = 0; i < n_order; i++) {
        if (order[i] == WCLS && tied) continue;
        f.off[order[i]] = f.n;
        f.n += array_floats[order[i]];
    }
    f.data = malloc(sizeof(float) * (size_t)f.n);
    tu_gaussian(f.data, (size_t)f.n, 1000 + (uint64_t)version * 10 + (uint64_t)tied);
    f.header = version == 0 ? 28 : 256;
    size_t size = f.header + sizeof(float) * (size_t)f.n;
    unsigned char *buf = calloc(1, size + (extra > 0 ? (size_t)extra : 0));
    int32_t h[7] = {DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, SEQ};
    if (version == 0) {
        if (!tied) h[5] = -VOCAB;
        for (int i = 0; i < 7; i++) put_i32(buf + 4 * i, h[i]);
    } else {
        put_i32(buf, 0x616b3432);
        put_i32(buf + 4, 1);
        for (int i = 0; i < 7; i++) put_i32(buf + 8 + 4 * i, h[i]);
        buf[36] = (unsigned char)tied;
    }
    memcpy(buf + f.header, f.data, sizeof(float) * (size_t)f.n);
    f.path = tu_path(dir, name);
    tu_write_bytes(f.path, buf, (size_t)((int64_t)size + extra));
    free(buf);
    return f;
}

static void l2c_free(l2c_file *f) {
    free(f->data);
    free(f->path);
}

static const float *layer_array(const l2c_file *f, int a, int64_t l) {
    return f->data + f->off[a] + l * (array_floats[a] / LAYERS);
}

static const float *get(const pissa__weights *w, const char *fmt, int64_t l) {
    char name[128];
    snprintf(name, sizeof name, fmt, (long long)l);
    pissa_tensor *t = pissa__weights_get(w, name);
    if (!t) fail_msg("tensor '%s' is missing", name);
    return pissa_tensor_data(t);
}

static void assert_floats_equal(const float *a, const float *b, size_t n, const char *what) {
    if (memcmp(a, b, n * sizeof(float)) != 0) fail_msg("%s differs from the values written", what);
}

/* Every tensor of W against the arrays of F: names, shapes, values, q/k permutation, tied/untied head. */
static void check_llama2c_weights(const pissa__weights *w, const l2c_file *f, int tied) {
    assert_int_equal(w->cfg.hidden_size, DIM);
    assert_int_equal(w->cfg.intermediate_size, HIDDEN);
    assert_int_equal(w->cfg.num_hidden_layers, LAYERS);
    assert_int_equal(w->cfg.num_attention_heads, HEADS);
    assert_int_equal(w->cfg.num_key_value_heads, KV_HEADS);
    assert_int_equal(w->cfg.head_dim, HD);
    assert_int_equal(w->cfg.vocab_size, VOCAB);
    assert_int_equal(w->cfg.max_position_embeddings, SEQ);
    assert_int_equal(w->cfg.tie_word_embeddings, tied);
    assert_true(w->cfg.rms_norm_eps == 1e-5);
    assert_true(w->cfg.rope_theta == 10000.0);
    assert_int_equal(w->n, 1 + 9 * LAYERS + 1 + (tied ? 0 : 1));
    for (size_t i = 1; i < w->n; i++) assert_true(strcmp(w->names[i - 1], w->names[i]) < 0);

    /* the synthesised config.json parses to the same config and names the architecture and dtype */
    pissa_llama_config c;
    assert_ok(pissa_llama_config_parse(w->config_json, strlen(w->config_json), "synthesised", &c));
    assert_int_equal(c.hidden_size, DIM);
    assert_int_equal(c.tie_word_embeddings, tied);
    assert_non_null(strstr(w->config_json, "\"LlamaForCausalLM\""));
    assert_non_null(strstr(w->config_json, "\"float32\""));

    pissa_tensor *emb = pissa__weights_get(w, "model.embed_tokens.weight");
    assert_non_null(emb);
    assert_int_equal(pissa_tensor_dim(emb, 0), VOCAB);
    assert_int_equal(pissa_tensor_dim(emb, 1), DIM);
    assert_int_equal(pissa_tensor_ownership(emb), PISSA_MAPPED); /* zero copy */
    assert_floats_equal(pissa_tensor_data(emb), f->data + f->off[EMB], VOCAB * DIM, "embedding");
    assert_floats_equal(get(w, "model.norm.weight", 0), f->data + f->off[RMS_FINAL], DIM, "rms_final");
    pissa_tensor *head = pissa__weights_get(w, "lm_head.weight");
    if (tied) assert_null(head);
    else {
        assert_non_null(head);
        assert_floats_equal(pissa_tensor_data(head), f->data + f->off[WCLS], VOCAB * DIM, "wcls");
    }
    for (int64_t l = 0; l < LAYERS; l++) {
        assert_floats_equal(get(w, "model.layers.%lld.input_layernorm.weight", l), layer_array(f, RMS_ATT, l), DIM,
                            "rms_att");
        assert_floats_equal(get(w, "model.layers.%lld.post_attention_layernorm.weight", l),
                            layer_array(f, RMS_FFN, l), DIM, "rms_ffn");
        assert_floats_equal(get(w, "model.layers.%lld.self_attn.v_proj.weight", l), layer_array(f, WV, l),
                            KV_DIM * DIM, "wv");
        assert_floats_equal(get(w, "model.layers.%lld.self_attn.o_proj.weight", l), layer_array(f, WO, l),
                            DIM * DIM, "wo");
        assert_floats_equal(get(w, "model.layers.%lld.mlp.gate_proj.weight", l), layer_array(f, W1, l),
                            HIDDEN * DIM, "w1 as gate_proj");
        assert_floats_equal(get(w, "model.layers.%lld.mlp.down_proj.weight", l), layer_array(f, W2, l),
                            DIM * HIDDEN, "w2 as down_proj");
        assert_floats_equal(get(w, "model.layers.%lld.mlp.up_proj.weight", l), layer_array(f, W3, l),
                            HIDDEN * DIM, "w3 as up_proj");
        /* HF row h·hd + j·hd/2 + i = llama2.c row h·hd + 2i + j */
        const float *q = get(w, "model.layers.%lld.self_attn.q_proj.weight", l);
        const float *k = get(w, "model.layers.%lld.self_attn.k_proj.weight", l);
        for (int h = 0; h < HEADS; h++)
            for (int j = 0; j < 2; j++)
                for (int i = 0; i < HD / 2; i++) {
                    int hf = h * HD + j * HD / 2 + i, src = h * HD + 2 * i + j;
                    assert_floats_equal(q + hf * DIM, layer_array(f, WQ, l) + src * DIM, DIM, "permuted wq row");
                    if (h < KV_HEADS)
                        assert_floats_equal(k + hf * DIM, layer_array(f, WK, l) + src * DIM, DIM, "permuted wk row");
                }
        /* and the permutation really moves rows: HF row 1 is llama2.c row 2 */
        assert_floats_equal(q + 1 * DIM, layer_array(f, WQ, l) + 2 * DIM, DIM, "wq row 1");
        assert_true(memcmp(q + 1 * DIM, layer_array(f, WQ, l) + 1 * DIM, DIM * sizeof(float)) != 0);
    }
}

static void load_and_check(int version, int tied) {
    char *dir = tu_tempdir("weights");
    l2c_file f = write_l2c(dir, "model.bin", version, tied, 0);
    pissa__weights w;
    assert_ok(pissa__weights_load(f.path, NULL, &w)); /* a regular file goes to the llama2.c loader */
    check_llama2c_weights(&w, &f, tied);
    pissa__weights_free(&w);
    assert_int_equal(w.n, 0);
    l2c_free(&f);
    tu_rmtree(dir);
    free(dir);
}

static void llama2c_v0_untied_loads_by_hf_name_with_qk_permuted(void **state) {
    (void)state;
    load_and_check(0, 0);
}
static void llama2c_v0_tied_has_no_lm_head(void **state) {
    (void)state;
    load_and_check(0, 1);
}
static void llama2c_v1_untied_loads_in_its_own_array_order(void **state) {
    (void)state;
    load_and_check(1, 0);
}
static void llama2c_v1_tied_has_no_lm_head(void **state) {
    (void)state;
    load_and_check(1, 1);
}

static void same_weights(const pissa__weights *a, const pissa__weights *b) {
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_string_equal(a->names[i], b->names[i]);
        assert_int_equal(pissa_tensor_ndim(a->tensors[i]), pissa_tensor_ndim(b->tensors[i]));
        for (int d = 0; d < pissa_tensor_ndim(a->tensors[i]); d++)
            assert_int_equal(pissa_tensor_dim(a->tensors[i], d), pissa_tensor_dim(b->tensors[i], d));
        assert_floats_equal(pissa_tensor_data(a->tensors[i]), pissa_tensor_data(b->tensors[i]),
                            (size_t)pissa_tensor_numel(a->tensors[i]), a->names[i]);
    }
    assert_memory_equal(&a->cfg, &b->cfg, sizeof a->cfg);
}

static void save_hf_then_load_hf_gives_identical_tensors(void **state) {
    (void)state;
    char *dir = tu_tempdir("weights");
    for (int tied = 0; tied < 2; tied++) {
        l2c_file f = write_l2c(dir, "model.bin", 0, tied, 0);
        char *hf = tu_path(dir, tied ? "hf_tied" : "hf_untied");
        pissa__weights a, b;
        assert_ok(pissa__weights_load_llama2c(f.path, NULL, &a));
        assert_ok(pissa__weights_save_hf(&a, hf, PISSA_F32));
        assert_ok(pissa__weights_load(hf, NULL, &b)); /* a directory goes to the Hugging Face loader */
        same_weights(&a, &b);
        assert_int_equal(pissa_tensor_ownership(pissa__weights_get(&b, "model.norm.weight")), PISSA_MAPPED);
        pissa__weights_free(&b);
        /* bf16: config.json says so, values are the bf16 roundings */
        assert_ok(pissa__weights_save_hf(&a, hf, PISSA_BF16));
        assert_ok(pissa__weights_load_hf(hf, NULL, &b));
        assert_string_equal(b.cfg.torch_dtype, "bfloat16");
        const float *x = pissa_tensor_data(pissa__weights_get(&a, "model.embed_tokens.weight"));
        /* a BF16 matrix is used from the file mapping as it is stored, not converted */
        ptrdiff_t k = pissa__weights_index(&b, "model.embed_tokens.weight");
        assert_true(k >= 0);
        assert_null(b.tensors[k]);
        assert_int_equal(b.q[k].type, PISSA_QTYPE_BF16);
        assert_null(b.q[k].owned);
        assert_non_null(b.maps[k]);
        const uint16_t *y = b.q[k].data;
        for (int i = 0; i < VOCAB * DIM; i++) assert_int_equal(y[i], pissa_f32_to_bf16(x[i]));
        /* saved again in the dtype its config names (-1), BF16, read from the mapping: the same bits */
        char *hf2 = tu_path(dir, "hf_again");
        assert_ok(pissa__weights_save_hf(&b, hf2, -1));
        pissa__weights c;
        assert_ok(pissa__weights_load_hf(hf2, NULL, &c));
        assert_string_equal(c.cfg.torch_dtype, "bfloat16");
        ptrdiff_t k2 = pissa__weights_index(&c, "model.embed_tokens.weight");
        assert_memory_equal(c.q[k2].data, y, sizeof(uint16_t) * VOCAB * DIM);
        pissa__weights_free(&c);
        free(hf2);
        pissa__weights_free(&b);
        pissa__weights_free(&a);
        l2c_free(&f);
        free(hf);
    }
    tu_rmtree(dir);
    free(dir);
}

static void expect_llama2c_error(const char *path, pissa_status want, const char *needle) {
    pissa__weights w;
    pissa_status s = pissa__weights_load_llama2c(path, NULL, &w);
    if (s != want) fail_msg("%s: got %s (%s), want %s", path, pissa_status_name(s), pissa_last_error(),
                            pissa_status_name(want));
    if (!strstr(pissa_last_error(), needle)) fail_msg("message '%s' does not mention '%s'", pissa_last_error(), needle);
    if (!strstr(pissa_last_error(), path)) fail_msg("message '%s' does not name the file", pissa_last_error());
    assert_int_equal(w.n, 0);
}

static void llama2c_rejects_truncated_oversized_bad_version_and_bad_header(void **state) {
    (void)state;
    char *dir = tu_tempdir("weights");
    for (int version = 0; version < 2; version++) {
        l2c_file f = write_l2c(dir, "short.bin", version, 0, -4);
        expect_llama2c_error(f.path, PISSA_ERR_FORMAT, "truncated by 4 bytes");
        expect_llama2c_error(f.path, PISSA_ERR_FORMAT, "ends inside wcls");
        l2c_free(&f);
        f = write_l2c(dir, "long.bin", version, 1, 8);
        expect_llama2c_error(f.path, PISSA_ERR_FORMAT, "too long by 8 bytes");
        l2c_free(&f);
    }
    /* a tied legacy file cut inside the arrays names the array it ends in */
    int64_t cut = (int64_t)sizeof(float) * (array_floats[RMS_FINAL] + array_floats[FREQ] + 1);
    l2c_file f = write_l2c(dir, "cut.bin", 0, 1, -cut);
    expect_llama2c_error(f.path, PISSA_ERR_FORMAT, "ends inside w3");
    l2c_free(&f);

    char *path = tu_path(dir, "hdr.bin");
    unsigned char hdr[256] = {0};
    put_i32(hdr, 0x616b3432);
    put_i32(hdr + 4, 2);
    tu_write_bytes(path, hdr, sizeof hdr);
    expect_llama2c_error(path, PISSA_ERR_UNSUPPORTED, "version 2");
    put_i32(hdr + 4, 7);
    tu_write_bytes(path, hdr, sizeof hdr);
    expect_llama2c_error(path, PISSA_ERR_FORMAT, "version 7");
    tu_write_bytes(path, hdr, 10);
    expect_llama2c_error(path, PISSA_ERR_FORMAT, "too short");
    int32_t h[7] = {DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, SEQ};
    h[0] = 0;
    tu_write_bytes(path, h, sizeof h);
    expect_llama2c_error(path, PISSA_ERR_FORMAT, "dim is 0");
    h[0] = DIM, h[3] = 3;
    tu_write_bytes(path, h, sizeof h);
    expect_llama2c_error(path, PISSA_ERR_FORMAT, "n_heads 3 does not divide dim 16");
    h[3] = HEADS, h[4] = 3;
    tu_write_bytes(path, h, sizeof h);
    expect_llama2c_error(path, PISSA_ERR_FORMAT, "n_kv_heads 3 does not divide n_heads 2");
    h[4] = KV_HEADS, h[2] = 1 << 30, h[0] = 1 << 30;
    tu_write_bytes(path, h, sizeof h);
    expect_llama2c_error(path, PISSA_ERR_FORMAT, "not a plausible checkpoint");
    free(path);
    tu_rmtree(dir);
    free(dir);
}

/* ---- Hugging Face folders ---- */

/* Writes DIR with W's tensors and CONFIG, leaving out SKIP, giving RESHAPE a wrong shape, and adding EXTRA. */
static void write_hf(const char *dir, const pissa__weights *w, const char *config, const char *skip,
                     const char *reshape, const char *extra) {
    char *cfg_path = tu_path(dir, "config.json"), *st_path = tu_path(dir, "model.safetensors");
    tu_write_bytes(cfg_path, config, strlen(config));
    pissa_st_writer *wr;
    assert_ok(pissa_st_writer_create(&wr));
    for (size_t i = 0; i < w->n; i++) {
        if (skip && !strcmp(w->names[i], skip)) continue;
        pissa_tensor *t = w->tensors[i];
        int64_t shape[2] = {pissa_tensor_dim(t, 0), pissa_tensor_ndim(t) > 1 ? pissa_tensor_dim(t, 1) : 0};
        if (reshape && !strcmp(w->names[i], reshape)) { /* same element count, transposed shape */
            int64_t tmp = shape[0];
            shape[0] = shape[1];
            shape[1] = tmp;
        }
        assert_ok(pissa_st_writer_add_f32(wr, w->names[i], PISSA_F32, pissa_tensor_ndim(t), shape,
                                          pissa_tensor_data(t)));
    }
    static const float zeros[HD / 2] = {0};
    int64_t n = HD / 2;
    if (extra) assert_ok(pissa_st_writer_add_f32(wr, extra, PISSA_F32, 1, &n, zeros));
    assert_ok(pissa_st_writer_write(wr, st_path));
    pissa_st_writer_free(wr);
    free(cfg_path);
    free(st_path);
}

static void expect_hf_error(const char *dir, pissa_status want, const char *needle1, const char *needle2) {
    pissa__weights w;
    pissa_status s = pissa__weights_load_hf(dir, NULL, &w);
    if (s != want) fail_msg("got %s (%s), want %s", pissa_status_name(s), pissa_last_error(), pissa_status_name(want));
    if (!strstr(pissa_last_error(), needle1)) fail_msg("message '%s' lacks '%s'", pissa_last_error(), needle1);
    if (needle2 && !strstr(pissa_last_error(), needle2))
        fail_msg("message '%s' lacks '%s'", pissa_last_error(), needle2);
    assert_int_equal(w.n, 0);
}

static char *replace(const char *s, const char *from, const char *to) {
    const char *p = strstr(s, from);
    if (!p) fail_msg("'%s' not found in config", from);
    char *out = malloc(strlen(s) + strlen(to) + 1);
    sprintf(out, "%.*s%s%s", (int)(p - s), s, to, p + strlen(from));
    return out;
}

static void hf_folder_refuses_missing_misshapen_extra_tensors_and_rope_scaling(void **state) {
    (void)state;
    char *dir = tu_tempdir("weights");
    l2c_file f = write_l2c(dir, "model.bin", 0, 0, 0);
    pissa__weights w;
    assert_ok(pissa__weights_load_llama2c(f.path, NULL, &w));
    char *hf = tu_path(dir, "hf");
    assert_ok(pissa__mkdir_p(hf));

    write_hf(hf, &w, w.config_json, "model.layers.1.mlp.up_proj.weight", NULL, NULL);
    expect_hf_error(hf, PISSA_ERR_NOT_FOUND, "'model.layers.1.mlp.up_proj.weight' (24, 16) is missing", NULL);

    write_hf(hf, &w, w.config_json, NULL, "model.layers.0.mlp.down_proj.weight", NULL);
    expect_hf_error(hf, PISSA_ERR_SHAPE, "'model.layers.0.mlp.down_proj.weight' has shape (24, 16), expected (16, 24)",
                    NULL);

    write_hf(hf, &w, w.config_json, NULL, NULL, "model.layers.0.self_attn.q_proj.bias");
    expect_hf_error(hf, PISSA_ERR_UNSUPPORTED, "model.layers.0.self_attn.q_proj.bias", "bias");

    write_hf(hf, &w, w.config_json, NULL, NULL, "model.layers.0.mlp.experts.0.weight");
    expect_hf_error(hf, PISSA_ERR_UNSUPPORTED, "model.layers.0.mlp.experts.0.weight", NULL);

    char *cfg = replace(w.config_json, "\"rope_scaling\": null",
                        "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 2.0}");
    write_hf(hf, &w, cfg, NULL, NULL, NULL);
    expect_hf_error(hf, PISSA_ERR_UNSUPPORTED, "rope_type 'yarn'", hf);
    free(cfg);

    /* rotary_emb.inv_freq (older transformers saved it) is recomputed, not refused */
    write_hf(hf, &w, w.config_json, NULL, NULL, "model.layers.0.self_attn.rotary_emb.inv_freq");
    pissa__weights b;
    assert_ok(pissa__weights_load_hf(hf, NULL, &b));
    assert_null(pissa__weights_get(&b, "model.layers.0.self_attn.rotary_emb.inv_freq"));
    same_weights(&w, &b);
    pissa__weights_free(&b);

    /* tied config: a stored lm_head is the embedding's copy in transformers and is not needed */
    cfg = replace(w.config_json, "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true");
    write_hf(hf, &w, cfg, NULL, NULL, NULL);
    assert_ok(pissa__weights_load_hf(hf, NULL, &b));
    assert_int_equal(b.cfg.tie_word_embeddings, 1);
    assert_null(pissa__weights_get(&b, "lm_head.weight"));
    pissa__weights_free(&b);
    /* untied config without lm_head: missing */
    write_hf(hf, &w, w.config_json, "lm_head.weight", NULL, NULL);
    expect_hf_error(hf, PISSA_ERR_NOT_FOUND, "'lm_head.weight' (12, 16) is missing", NULL);
    free(cfg);

    pissa__weights_free(&w);
    pissa__weights_free(&w); /* safe on a zeroed struct */
    l2c_free(&f);
    free(hf);
    tu_rmtree(dir);
    free(dir);
}

static void load_dispatches_on_path_kind_and_reports_missing_path(void **state) {
    (void)state;
    pissa__weights w;
    assert_int_equal(pissa__weights_load("/nonexistent/model.bin", NULL, &w), PISSA_ERR_IO);
    assert_non_null(strstr(pissa_last_error(), "/nonexistent/model.bin"));
    char *dir = tu_tempdir("weights");
    assert_int_not_equal(pissa__weights_load(dir, NULL, &w), PISSA_OK); /* a directory without config.json */
    assert_non_null(strstr(pissa_last_error(), "config.json"));
    tu_rmtree(dir);
    free(dir);
}

/* The base format asked for at load: the projections converted (their values the conversion of the stored ones), the
 * embedding and lm_head as stored unless the base is F32 (then every matrix is float32), norms always float32. */
static void base_format_converts_the_projections_only(void **state) {
    (void)state;
    char *dir = tu_tempdir("weights_base");
    l2c_file f = write_l2c(dir, "model.bin", 0, 0, 0);
    char *hf = tu_path(dir, "hf_bf16");
    pissa__weights a;
    assert_ok(pissa__weights_load_llama2c(f.path, NULL, &a));
    assert_ok(pissa__weights_save_hf(&a, hf, PISSA_BF16));
    const char *proj = "model.layers.1.mlp.down_proj.weight", *embed = "model.embed_tokens.weight";
    for (int base = 0; base < PISSA_QTYPE_COUNT; base++) {
        pissa__weights b;
        pissa__load_opts o = {.base = base};
        assert_ok(pissa__weights_load_hf(hf, &o, &b));
        ptrdiff_t kp = pissa__weights_index(&b, proj), ke = pissa__weights_index(&b, embed);
        pissa__qweight qp = pissa__weights_matrix(&b, (size_t)kp), qe = pissa__weights_matrix(&b, (size_t)ke);
        assert_int_equal(qp.type, base);
        assert_int_equal(qe.type, base == PISSA_QTYPE_F32 ? PISSA_QTYPE_F32 : PISSA_QTYPE_BF16);
        assert_non_null(pissa__weights_get(&b, "model.norm.weight"));
        /* the projection's values: the base format's conversion of the stored BF16 values */
        pissa__qweight stored, want;
        pissa__weights c;
        assert_ok(pissa__weights_load_hf(hf, NULL, &c));
        stored = pissa__weights_matrix(&c, (size_t)pissa__weights_index(&c, proj));
        assert_ok(pissa__qweight_convert(&want, base, &stored));
        assert_int_equal(pissa__qweight_bytes(&want), pissa__qweight_bytes(&qp));
        size_t n = (size_t)(qp.rows * qp.cols);
        float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
        pissa__qweight_dequantize(&want, 0, want.rows, x);
        pissa__qweight_dequantize(&qp, 0, qp.rows, y);
        assert_memory_equal(x, y, sizeof(float) * n);
        free(x), free(y);
        pissa__qweight_release(&want);
        pissa__weights_free(&c);
        pissa__weights_free(&b);
    }
    pissa__weights b;
    pissa__load_opts bad = {.base = 7};
    assert_int_equal(pissa__weights_load(hf, &bad, &b), PISSA_ERR_INVALID_ARG);
    pissa__weights_free(&a);
    l2c_free(&f);
    free(hf);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama2c_v0_untied_loads_by_hf_name_with_qk_permuted),
        cmocka_unit_test(llama2c_v0_tied_has_no_lm_head),
        cmocka_unit_test(llama2c_v1_untied_loads_in_its_own_array_order),
        cmocka_unit_test(llama2c_v1_tied_has_no_lm_head),
        cmocka_unit_test(save_hf_then_load_hf_gives_identical_tensors),
        cmocka_unit_test(base_format_converts_the_projections_only),
        cmocka_unit_test(llama2c_rejects_truncated_oversized_bad_version_and_bad_header),
        cmocka_unit_test(hf_folder_refuses_missing_misshapen_extra_tensors_and_rope_scaling),
        cmocka_unit_test(load_dispatches_on_path_kind_and_reports_missing_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
