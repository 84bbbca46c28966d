/* Llama weights by Hugging Face name, from a Hugging Face folder or a llama2.c checkpoint (weights.h). */
#include "weights.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the tensor set every loader fills ---- */

/* Appends tensor NAME: T (float32), or Q with the mapping it borrows (a reference is taken). Takes T or Q. */
static pissa_status add_entry(pissa__weights *w, const char *name, pissa_tensor *t, pissa__qweight q,
                              pissa_mapping *map) {
    size_t k = w->n + 1;
    char **names = realloc(w->names, k * sizeof *names);
    if (names) w->names = names;
    pissa_tensor **tensors = realloc(w->tensors, k * sizeof *tensors);
    if (tensors) w->tensors = tensors;
    pissa__qweight *qs = realloc(w->q, k * sizeof *qs);
    if (qs) w->q = qs;
    pissa_mapping **maps = realloc(w->maps, k * sizeof *maps);
    if (maps) w->maps = maps;
    char *copy = pissa__strdup(name);
    if (!names || !tensors || !qs || !maps || !copy) {
        free(copy);
        pissa_tensor_free(t);
        pissa__qweight_release(&q);
        return pissa__fail(PISSA_ERR_NOMEM, "weights: out of memory adding '%s'", name);
    }
    if (map) pissa__mapping_retain(map);
    w->names[w->n] = copy;
    w->tensors[w->n] = t;
    w->q[w->n] = q;
    w->maps[w->n++] = map;
    return PISSA_OK;
}

static pissa_status add_tensor(pissa__weights *w, const char *name, pissa_tensor *t) {
    return add_entry(w, name, t, (pissa__qweight){0}, NULL);
}

/* Sorts the entries by name (pissa__weights_index bisects the names). */
typedef struct named {
    char *name;
    pissa_tensor *t;
    pissa__qweight q;
    pissa_mapping *map;
} named;

static int cmp_named(const void *a, const void *b) {
    return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

static pissa_status sort_tensors(pissa__weights *w) {
    if (w->n < 2) return PISSA_OK;
    named *tmp = pissa__alloc(w->n, sizeof *tmp);
    if (!tmp) return pissa__fail(PISSA_ERR_NOMEM, "weights: out of memory");
    for (size_t i = 0; i < w->n; i++) tmp[i] = (named){w->names[i], w->tensors[i], w->q[i], w->maps[i]};
    qsort(tmp, w->n, sizeof *tmp, cmp_named);
    for (size_t i = 0; i < w->n; i++) {
        w->names[i] = tmp[i].name;
        w->tensors[i] = tmp[i].t;
        w->q[i] = tmp[i].q;
        w->maps[i] = tmp[i].map;
    }
    free(tmp);
    return PISSA_OK;
}

void pissa__weights_free(pissa__weights *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->names[i]);
        pissa_tensor_free(w->tensors[i]);
        pissa__qweight_release(&w->q[i]);
        pissa__mapping_release(w->maps[i]);
    }
    free(w->names);
    free(w->tensors);
    free(w->q);
    free(w->maps);
    free(w->config_json);
    memset(w, 0, sizeof *w);
}

ptrdiff_t pissa__weights_index(const pissa__weights *w, const char *name) {
    if (!w || !name) return -1;
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(w->names[mid], name);
        if (c == 0) return (ptrdiff_t)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

pissa_tensor *pissa__weights_get(const pissa__weights *w, const char *name) {
    ptrdiff_t i = pissa__weights_index(w, name);
    return i < 0 ? NULL : w->tensors[i];
}

int pissa__weights_shape(const pissa__weights *w, size_t i, int64_t shape[2]) {
    const pissa_tensor *t = w->tensors[i];
    if (!t) {
        shape[0] = w->q[i].rows, shape[1] = w->q[i].cols;
        return 2;
    }
    int nd = pissa_tensor_ndim(t);
    shape[0] = pissa_tensor_dim(t, 0);
    shape[1] = nd > 1 ? pissa_tensor_dim(t, 1) : 0;
    return nd;
}

pissa__qweight pissa__weights_matrix(const pissa__weights *w, size_t i) {
    if (!w->tensors[i]) {
        pissa__qweight v = w->q[i];
        v.owned = NULL; /* a view */
        return v;
    }
    int64_t shape[2];
    int nd = pissa__weights_shape(w, i, shape);
    pissa__qweight q = {0};
    pissa__qweight_wrap(&q, PISSA_QTYPE_F32, nd == 2 ? shape[0] : 1, nd == 2 ? shape[1] : shape[0],
                        pissa_tensor_data(w->tensors[i]), NULL); /* float32 data is 4-byte aligned: cannot fail */
    return q;
}

/* Empties entry I: its mapped pages given back, its tensor, format and mapping reference released. */
static void clear_entry(pissa__weights *w, size_t i) {
    pissa__weights_drop(w, i);
    pissa_tensor_free(w->tensors[i]);
    pissa__qweight_release(&w->q[i]);
    pissa__mapping_release(w->maps[i]);
    w->tensors[i] = NULL;
    w->maps[i] = NULL;
}

pissa_status pissa__weights_to_f32(pissa__weights *w, size_t i) {
    if (w->tensors[i]) return PISSA_OK;
    pissa_tensor *t;
    int64_t shape[2] = {w->q[i].rows, w->q[i].cols};
    PISSA_TRY(pissa_tensor_create(2, shape, &t));
    pissa__qweight_dequantize(&w->q[i], 0, shape[0], pissa_tensor_data(t));
    clear_entry(w, i);
    w->tensors[i] = t;
    return PISSA_OK;
}

size_t pissa__weights_bytes(const pissa__weights *w) {
    size_t total = 0;
    for (size_t i = 0; i < w->n; i++)
        total += w->tensors[i] ? (size_t)pissa_tensor_numel(w->tensors[i]) * sizeof(float)
                               : pissa__qweight_bytes(&w->q[i]);
    return total;
}

void pissa__weights_drop(const pissa__weights *w, size_t i) {
    const pissa_tensor *t = w->tensors[i];
    if (t && pissa_tensor_ownership(t) == PISSA_MAPPED)
        pissa__mapping_drop(t->map, t->data, (size_t)t->numel * sizeof(float));
    else if (!t && w->maps[i])
        pissa__mapping_drop(w->maps[i], w->q[i].data, pissa__qweight_bytes(&w->q[i]));
}

void pissa__weights_replace(pissa__weights *w, size_t i, pissa__qweight *q) {
    clear_entry(w, i);
    w->q[i] = *q;
    memset(q, 0, sizeof *q);
}

/* Puts the projections into the format BASE (a pissa_qtype, or -1: as loaded), and, for BASE F32, every other
 * matrix into float32 too. A converted source mapped from a file gives its pages back: the resident set holds the
 * new form only. */
static pissa_status apply_base_format(pissa__weights *w, int base, const char *source) {
    if (base < 0) return PISSA_OK;
    for (size_t i = 0; i < w->n; i++) {
        pissa_tensor_spec s;
        if (pissa_config_tensor_find(&w->cfg, w->names[i], &s) != PISSA_OK || s.ndim != 2) continue;
        pissa_qtype have = w->tensors[i] ? PISSA_QTYPE_F32 : w->q[i].type;
        pissa_qtype want = s.role == PISSA_ROLE_PROJ || base == PISSA_QTYPE_F32 ? (pissa_qtype)base : have;
        if (have == want) continue;
        pissa__qweight src = pissa__weights_matrix(w, i), q = {0};
        pissa_status st = want == PISSA_QTYPE_F32 ? pissa__weights_to_f32(w, i) : pissa__qweight_convert(&q, want, &src);
        if (st == PISSA_OK && want != PISSA_QTYPE_F32) pissa__weights_replace(w, i, &q);
        if (st != PISSA_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", pissa_last_error());
            return pissa__fail(st, "%s: tensor '%s' to %s: %s", source, w->names[i], pissa_qtype_name(want), msg);
        }
    }
    return PISSA_OK;
}

/* ---- the tensors the forward needs (the config's list, pissa/config.h) ---- */

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t len = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, ")");
}

/* Every tensor of the config's list is present with its shape (the message names the tensor, the expected and the
 * found shape). */
static pissa_status check_shapes(const pissa__weights *w, const char *source) {
    size_t n = pissa_config_tensor_count(&w->cfg);
    for (size_t i = 0; i < n; i++) {
        pissa_tensor_spec s;
        PISSA_TRY(pissa_config_tensor(&w->cfg, i, &s));
        char want[96], got[96];
        ptrdiff_t k = pissa__weights_index(w, s.name);
        shape_str(want, sizeof want, s.ndim, s.shape);
        if (k < 0) return pissa__fail(PISSA_ERR_NOT_FOUND, "%s: tensor '%s' %s is missing", source, s.name, want);
        int64_t shape[2];
        int nd = pissa__weights_shape(w, (size_t)k, shape);
        int same = nd == s.ndim;
        for (int d = 0; same && d < s.ndim; d++) same = shape[d] == s.shape[d];
        if (!same) {
            shape_str(got, sizeof got, nd, shape);
            return pissa__fail(PISSA_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", source, s.name, got,
                               want);
        }
    }
    return PISSA_OK;
}

static int is_expected(const pissa_llama_config *c, const char *name) {
    pissa_tensor_spec s;
    return pissa_config_tensor_find(c, name, &s) == PISSA_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* Prefixes the calling thread's last error with PREFIX (the message is copied first: it is the argument). */
static pissa_status with_prefix(pissa_status st, const char *prefix) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pissa_last_error());
    return pissa__fail(st, "%s: %s", prefix, msg);
}

/* ---- Hugging Face folder ---- */

/* Tensor NAME of CK, with spec S: a BF16/F16 matrix (a projection, the embedding, lm_head) is borrowed from the
 * mapping as is; anything else is read as float32 (mapped when stored F32, converted otherwise). */
static pissa_status load_hf_tensor(pissa__weights *w, const pissa_checkpoint *ck, const char *name,
                                   const pissa_tensor_spec *s) {
    pissa_st_info info;
    PISSA_TRY(pissa_checkpoint_find(ck, name, &info));
    if (s->ndim == 2 && info.ndim == 2 && (info.dtype == PISSA_BF16 || info.dtype == PISSA_F16)) {
        pissa__qweight q = {0};
        PISSA_TRY(pissa__qweight_wrap(&q, info.dtype == PISSA_BF16 ? PISSA_QTYPE_BF16 : PISSA_QTYPE_F16,
                                      info.shape[0], info.shape[1], info.data, NULL));
        return add_entry(w, name, NULL, q, pissa__checkpoint_mapping(ck, name));
    }
    pissa_tensor *t;
    PISSA_TRY(pissa_checkpoint_load(ck, name, &t));
    return add_tensor(w, name, t);
}

pissa_status pissa__weights_load_hf(const char *dir, const pissa__load_opts *opts, pissa__weights *out) {
    if (!dir || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa__weights_load_hf: NULL argument");
    memset(out, 0, sizeof *out);
    pissa_checkpoint *ck;
    PISSA_TRY(pissa_checkpoint_open(dir, &ck));
    pissa__weights w = {0};
    w.cfg = *pissa_checkpoint_config(ck);
    pissa_status st = pissa_llama_config_check_supported(&w.cfg);
    if (st != PISSA_OK) st = with_prefix(st, dir);
    if (st == PISSA_OK && !(w.config_json = pissa__strdup(pissa_checkpoint_config_json(ck))))
        st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    size_t n = pissa_checkpoint_count(ck);
    for (size_t i = 0; i < n && st == PISSA_OK; i++) {
        const char *name = pissa_checkpoint_name(ck, i);
        if (ends_with(name, "rotary_emb.inv_freq")) continue; /* recomputed from rope_theta, as transformers does */
        if (!is_expected(&w.cfg, name)) {
            /* tied: transformers ties lm_head to the embedding whatever the file holds */
            if (w.cfg.tie_word_embeddings && !strcmp(name, "lm_head.weight")) continue;
            st = pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: tensor '%s' is not part of a %s model with this config.json%s; "
                             "refusing rather than ignoring it", dir, name, w.cfg.model_type,
                             ends_with(name, ".bias") ? " (which has no bias there)" : "");
            break;
        }
        pissa_tensor_spec spec;
        pissa_config_tensor_find(&w.cfg, name, &spec);
        st = load_hf_tensor(&w, ck, name, &spec);
    }
    pissa_checkpoint_free(ck); /* MAPPED tensors and borrowed matrices keep their mapping */
    if (st == PISSA_OK) st = sort_tensors(&w);
    if (st == PISSA_OK) st = check_shapes(&w, dir);
    if (st == PISSA_OK) st = apply_base_format(&w, opts ? opts->base : -1, dir);
    if (st != PISSA_OK) {
        pissa__weights_free(&w);
        return st;
    }
    *out = w;
    return PISSA_OK;
}

/* ---- llama2.c checkpoint (docs/formats.md) ---- */

#define LLAMA2C_MAGIC 0x616b3432u /* "ak42" */

static int32_t read_i32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t r;
    memcpy(&r, &v, sizeof r);
    return r;
}

/* Synthesises config.json for a llama2.c model and parses it back, so cfg and the text always agree. */
static pissa_status llama2c_config(const char *path, const int32_t *h, int tied, pissa__weights *w) {
    cJSON *root = cJSON_CreateObject(), *arch = cJSON_CreateArray();
    int ok = root && arch && cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    if (ok) ok = cJSON_AddItemToObject(root, "architectures", arch);
    else cJSON_Delete(arch);
    ok = ok && cJSON_AddStringToObject(root, "model_type", "llama") &&
         cJSON_AddNumberToObject(root, "hidden_size", h[0]) &&
         cJSON_AddNumberToObject(root, "intermediate_size", h[1]) &&
         cJSON_AddNumberToObject(root, "num_hidden_layers", h[2]) &&
         cJSON_AddNumberToObject(root, "num_attention_heads", h[3]) &&
         cJSON_AddNumberToObject(root, "num_key_value_heads", h[4]) &&
         cJSON_AddNumberToObject(root, "head_dim", h[0] / h[3]) && cJSON_AddNumberToObject(root, "vocab_size", h[5]) &&
         cJSON_AddNumberToObject(root, "max_position_embeddings", h[6]) &&
         cJSON_AddNumberToObject(root, "rms_norm_eps", 1e-5) && cJSON_AddNumberToObject(root, "rope_theta", 10000.0) &&
         cJSON_AddNullToObject(root, "rope_scaling") && cJSON_AddBoolToObject(root, "tie_word_embeddings", tied) &&
         cJSON_AddStringToObject(root, "hidden_act", "silu") && cJSON_AddBoolToObject(root, "attention_bias", 0) &&
         cJSON_AddBoolToObject(root, "mlp_bias", 0) && cJSON_AddNumberToObject(root, "bos_token_id", 1) &&
         cJSON_AddNumberToObject(root, "eos_token_id", 2) && cJSON_AddStringToObject(root, "torch_dtype", "float32");
    pissa_status st = ok ? pissa__json_dump_sorted(root, &w->config_json)
                         : pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    cJSON_Delete(root);
    if (st == PISSA_OK) st = pissa_llama_config_parse(w->config_json, strlen(w->config_json), path, &w->cfg);
    if (st == PISSA_OK && (st = pissa_llama_config_check_supported(&w->cfg)) != PISSA_OK)
        st = with_prefix(st, path);
    return st;
}

/* The arrays of a llama2.c file, in the order each version stores them. */
enum { A_EMB, A_RMS_ATT, A_WQ, A_WK, A_WV, A_WO, A_RMS_FFN, A_W1, A_W2, A_W3, A_RMS_FINAL, A_FREQ, A_WCLS, A_COUNT };
static const char *array_names[A_COUNT] = {"token_embedding", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn",
                                           "w1", "w2", "w3", "rms_final", "freq_cis", "wcls"};
static const int order_v0[] = {A_EMB, A_RMS_ATT, A_WQ, A_WK, A_WV, A_WO, A_RMS_FFN, A_W1, A_W2, A_W3,
                               A_RMS_FINAL, A_FREQ, A_WCLS};
static const int order_v1[] = {A_RMS_ATT, A_RMS_FFN, A_RMS_FINAL, A_EMB, A_WQ, A_WK, A_WV, A_WO, A_W1, A_W2, A_W3,
                               A_WCLS};

typedef struct l2c {
    const char *path;
    pissa_mapping *map;
    int64_t dim, hidden, L, H, KV, V, seq, hd, kv_dim;
    int tied;
    int64_t count[A_COUNT]; /* floats in each array (0 if absent) */
    int64_t off[A_COUNT];   /* byte offset of each array */
} l2c;

/* A MAPPED tensor over FLOATS starting at byte OFF, or an OWNED copy if the data is not 4-byte aligned. */
static pissa_status view(l2c *f, int64_t off, int ndim, const int64_t *shape, pissa_tensor **out) {
    const unsigned char *p = f->map->base + off;
    if (((uintptr_t)p & 3u) == 0) return pissa__tensor_mapped(f->map, (const float *)(const void *)p, ndim, shape, out);
    PISSA_TRY(pissa_tensor_create(ndim, shape, out));
    memcpy((*out)->data, p, (size_t)(*out)->numel * sizeof(float));
    return PISSA_OK;
}

/* wq/wk of layer L into Hugging Face row order: HF row h·hd + j·hd/2 + i = llama2.c row h·hd + 2i + j. */
static pissa_status permuted(l2c *f, int64_t off, int64_t heads, pissa_tensor **out) {
    int64_t shape[2] = {heads * f->hd, f->dim}, half = f->hd / 2;
    PISSA_TRY(pissa_tensor_create(2, shape, out));
    const unsigned char *src = f->map->base + off;
    float *dst = (*out)->data;
    size_t row = (size_t)f->dim * sizeof(float);
    for (int64_t h = 0; h < heads; h++)
        for (int64_t j = 0; j < 2; j++)
            for (int64_t i = 0; i < half; i++)
                memcpy(dst + (h * f->hd + j * half + i) * f->dim, src + (size_t)(h * f->hd + 2 * i + j) * row, row);
    return PISSA_OK;
}

static pissa_status layer_tensor(l2c *f, pissa__weights *w, int64_t l, const char *suffix, int a, int64_t rows,
                                 int64_t cols) {
    char name[128];
    snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, suffix);
    int64_t per = rows * (cols ? cols : 1), off = f->off[a] + l * per * (int64_t)sizeof(float);
    int64_t shape[2] = {rows, cols};
    pissa_tensor *t;
    if (a == A_WQ) PISSA_TRY(permuted(f, off, f->H, &t));
    else if (a == A_WK) PISSA_TRY(permuted(f, off, f->KV, &t));
    else PISSA_TRY(view(f, off, cols ? 2 : 1, shape, &t));
    return add_tensor(w, name, t);
}

static pissa_status llama2c_tensors(l2c *f, pissa__weights *w) {
    int64_t s[2] = {f->V, f->dim};
    pissa_tensor *t;
    PISSA_TRY(view(f, f->off[A_EMB], 2, s, &t));
    PISSA_TRY(add_tensor(w, "model.embed_tokens.weight", t));
    for (int64_t l = 0; l < f->L; l++) {
        PISSA_TRY(layer_tensor(f, w, l, "input_layernorm.weight", A_RMS_ATT, f->dim, 0));
        PISSA_TRY(layer_tensor(f, w, l, "self_attn.q_proj.weight", A_WQ, f->dim, f->dim));
        PISSA_TRY(layer_tensor(f, w, l, "self_attn.k_proj.weight", A_WK, f->kv_dim, f->dim));
        PISSA_TRY(layer_tensor(f, w, l, "self_attn.v_proj.weight", A_WV, f->kv_dim, f->dim));
        PISSA_TRY(layer_tensor(f, w, l, "self_attn.o_proj.weight", A_WO, f->dim, f->dim));
        PISSA_TRY(layer_tensor(f, w, l, "post_attention_layernorm.weight", A_RMS_FFN, f->dim, 0));
        PISSA_TRY(layer_tensor(f, w, l, "mlp.gate_proj.weight", A_W1, f->hidden, f->dim));
        PISSA_TRY(layer_tensor(f, w, l, "mlp.down_proj.weight", A_W2, f->dim, f->hidden));
        PISSA_TRY(layer_tensor(f, w, l, "mlp.up_proj.weight", A_W3, f->hidden, f->dim));
    }
    PISSA_TRY(view(f, f->off[A_RMS_FINAL], 1, &f->dim, &t));
    PISSA_TRY(add_tensor(w, "model.norm.weight", t));
    if (!f->tied) {
        PISSA_TRY(view(f, f->off[A_WCLS], 2, s, &t));
        PISSA_TRY(add_tensor(w, "lm_head.weight", t));
    }
    return PISSA_OK;
}

/* Sizes from the 7 header ints; array offsets from HEADER bytes on in ORDER; the file size must match exactly. */
static pissa_status llama2c_layout(l2c *f, const int32_t *h, int64_t header, const int *order, int n_order) {
    static const char *fields[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++)
        if (h[i] <= 0)
            return pissa__fail(PISSA_ERR_FORMAT, "%s: header field %s is %d; it must be positive", f->path, fields[i],
                               (int)h[i]);
    f->dim = h[0], f->hidden = h[1], f->L = h[2], f->H = h[3], f->KV = h[4], f->V = h[5], f->seq = h[6];
    if (f->dim % f->H != 0)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: n_heads %lld does not divide dim %lld", f->path, (long long)f->H,
                           (long long)f->dim);
    if (f->H % f->KV != 0)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: n_kv_heads %lld does not divide n_heads %lld", f->path,
                           (long long)f->KV, (long long)f->H);
    f->hd = f->dim / f->H;
    f->kv_dim = f->KV * f->hd;
    if (f->hd % 2 != 0)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: head size %lld is odd; RoPE rotates pairs", f->path,
                           (long long)f->hd);
    /* The int64 products below cannot overflow once the total is known (in double) to be far below 2^63. */
    double total = (double)f->V * f->dim * 2 + (double)f->seq * f->hd +
                   (double)f->L * f->dim * (2.0 * f->dim + 2.0 * f->kv_dim + 3.0 * f->hidden + 2);
    if (total > 1e17)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: header sizes imply %.3g floats; not a plausible checkpoint", f->path,
                           total);
    f->count[A_EMB] = f->V * f->dim;
    f->count[A_RMS_ATT] = f->count[A_RMS_FFN] = f->L * f->dim;
    f->count[A_WQ] = f->count[A_WO] = f->L * f->dim * f->dim;
    f->count[A_WK] = f->count[A_WV] = f->L * f->kv_dim * f->dim;
    f->count[A_W1] = f->count[A_W2] = f->count[A_W3] = f->L * f->hidden * f->dim;
    f->count[A_RMS_FINAL] = f->dim;
    f->count[A_FREQ] = f->seq * f->hd; /* freq_cis_real and freq_cis_imag, seq_len·hd/2 floats each (unused) */
    f->count[A_WCLS] = f->tied ? 0 : f->V * f->dim;
    int64_t off = header;
    for (int i = 0; i < n_order; i++) {
        f->off[order[i]] = off;
        off += f->count[order[i]] * (int64_t)sizeof(float);
    }
    int64_t size = (int64_t)f->map->size;
    if (size != off) {
        int64_t diff = size < off ? off - size : size - off;
        const char *where = "the header";
        for (int i = 0; i < n_order; i++)
            if (f->count[order[i]] && size >= f->off[order[i]]) where = array_names[order[i]];
        return pissa__fail(PISSA_ERR_FORMAT,
                           "%s: file is %lld bytes but the header (dim %lld, hidden %lld, %lld layers, %lld heads, "
                           "%lld kv heads, vocab %lld, seq_len %lld, %s classifier) implies %lld: %s by %lld bytes "
                           "(%s%s)",
                           f->path, (long long)size, (long long)f->dim, (long long)f->hidden, (long long)f->L,
                           (long long)f->H, (long long)f->KV, (long long)f->V, (long long)f->seq,
                           f->tied ? "shared" : "separate", (long long)off, size < off ? "truncated" : "too long",
                           (long long)diff, size < off ? "the file ends inside " : "",
                           size < off ? where : "extra data after the last array");
    }
    return PISSA_OK;
}

pissa_status pissa__weights_load_llama2c(const char *path, const pissa__load_opts *opts, pissa__weights *out) {
    if (!path || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa__weights_load_llama2c: NULL argument");
    memset(out, 0, sizeof *out);
    l2c f = {.path = path};
    PISSA_TRY(pissa__mapping_open(path, &f.map));
    pissa__weights w = {0};
    pissa_status st = PISSA_OK;
    const unsigned char *b = f.map->base;
    int32_t h[7];
    if (f.map->size < 28) {
        st = pissa__fail(PISSA_ERR_FORMAT, "%s: %zu bytes is too short for a llama2.c header", path, f.map->size);
    } else if ((uint32_t)read_i32(b) == LLAMA2C_MAGIC) {
        int32_t version = read_i32(b + 4);
        if (version == 2)
            st = pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: llama2.c version 2 (int8 Q8_0 quantized) checkpoints are not "
                             "supported; export float32 (version 0 or 1)", path);
        else if (version != 1)
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: unknown llama2.c checkpoint version %d (expected 0, 1 or 2)", path,
                             (int)version);
        else if (f.map->size < 256)
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: %zu bytes is too short for a version 1 header of 256 bytes", path,
                             f.map->size);
        else {
            for (int i = 0; i < 7; i++) h[i] = read_i32(b + 8 + 4 * i);
            f.tied = b[36] != 0;
            st = llama2c_layout(&f, h, 256, order_v1, (int)(sizeof order_v1 / sizeof *order_v1));
        }
    } else {
        for (int i = 0; i < 7; i++) h[i] = read_i32(b + 4 * i);
        f.tied = h[5] > 0; /* a negative vocab_size means an untied classifier follows */
        if (h[5] < 0 && h[5] != INT32_MIN) h[5] = -h[5];
        st = llama2c_layout(&f, h, 28, order_v0, (int)(sizeof order_v0 / sizeof *order_v0));
    }
    if (st == PISSA_OK) st = llama2c_config(path, h, f.tied, &w);
    if (st == PISSA_OK) st = llama2c_tensors(&f, &w);
    pissa__mapping_release(f.map); /* the MAPPED tensors hold their own references */
    if (st == PISSA_OK) st = sort_tensors(&w);
    if (st == PISSA_OK) st = check_shapes(&w, path);
    if (st == PISSA_OK) st = apply_base_format(&w, opts ? opts->base : -1, path);
    if (st != PISSA_OK) {
        pissa__weights_free(&w);
        return st;
    }
    *out = w;
    return PISSA_OK;
}

/* ---- dispatch and save ---- */

pissa_status pissa__weights_load(const char *path, const pissa__load_opts *opts, pissa__weights *out) {
    if (!path || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa__weights_load: NULL argument");
    memset(out, 0, sizeof *out);
    struct stat s;
    if (stat(path, &s) != 0) return pissa__fail(PISSA_ERR_IO, "%s: cannot open model: %s", path, strerror(errno));
    if (opts && opts->base != -1 && (opts->base < 0 || opts->base >= PISSA_QTYPE_COUNT))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: base format %d is not a pissa_qtype", path, opts->base);
    if (S_ISDIR(s.st_mode)) return pissa__weights_load_hf(path, opts, out);
    if (S_ISREG(s.st_mode)) return pissa__weights_load_llama2c(path, opts, out);
    return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: neither a directory (Hugging Face) nor a file (llama2.c)", path);
}

/* The writer's fill callback for a matrix kept in another format: its float32 values. */
static pissa_status fill_matrix(void *user, const char *name, float *dst, int64_t numel) {
    (void)name, (void)numel;
    const pissa__qweight *q = user;
    pissa__qweight_dequantize(q, 0, q->rows, dst);
    return PISSA_OK;
}

pissa_status pissa__weights_save_hf(const pissa__weights *w, const char *dir, int dtype_or_stored) {
    if (!w || !dir || !w->config_json)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa__weights_save_hf: NULL argument");
    pissa_dtype dtype = (pissa_dtype)dtype_or_stored;
    if (dtype_or_stored == -1 && (!w->cfg.torch_dtype[0] || pissa_dtype_parse(w->cfg.torch_dtype, &dtype) != PISSA_OK ||
                                  !pissa_dtype_is_float(dtype))) {
        pissa_clear_error();
        dtype = PISSA_F32; /* no (or no float) torch_dtype: as llama2.c stores weights */
    }
    if (!pissa_dtype_is_float(dtype))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: weights are saved as F32, F16 or BF16, not %s", dir,
                           pissa_dtype_name(dtype));
    pissa_dir_txn *txn; /* the folder is replaced whole: never new weights beside an old config */
    PISSA_TRY(pissa_dir_txn_begin(dir, pissa__checkpoint_files, &txn));
    const char *out = pissa_dir_txn_path(txn);
    pissa_st_writer *wr = NULL;
    pissa_status st = pissa_st_writer_create(&wr);
    for (size_t i = 0; i < w->n && st == PISSA_OK; i++) {
        const pissa__qweight *q = &w->q[i];
        int64_t shape[2] = {q->rows, q->cols};
        const pissa_tensor *t = w->tensors[i];
        const pissa_mapping *map = NULL; /* where the data is read from a file mapping: pages given back as written */
        if (t) {
            st = pissa_st_writer_add_f32(wr, w->names[i], dtype, t->ndim, t->shape, t->data);
            map = pissa_tensor_ownership(t) == PISSA_MAPPED ? t->map : NULL;
        } else if ((q->type == PISSA_QTYPE_BF16 && dtype == PISSA_BF16) ||
                   (q->type == PISSA_QTYPE_F16 && dtype == PISSA_F16)) {
            st = pissa_st_writer_add_raw(wr, w->names[i], dtype, 2, shape, q->data); /* the stored bits, exactly */
            map = w->maps[i];
        } else st = pissa_st_writer_add_fill(wr, w->names[i], dtype, 2, shape, fill_matrix, (void *)q);
        if (st == PISSA_OK && map) st = pissa__st_writer_from_mapping(wr, map);
    }
    char *path = pissa__path_join(out, "model.safetensors"), *config = NULL;
    if (st == PISSA_OK && !path) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    if (st == PISSA_OK) st = pissa_st_writer_write(wr, path);
    pissa_st_writer_free(wr);
    free(path);
    if (st == PISSA_OK) st = pissa_config_json_set_dtype(w->config_json, dtype, &config);
    path = st == PISSA_OK ? pissa__path_join(out, "config.json") : NULL;
    if (st == PISSA_OK && !path) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    if (st == PISSA_OK) st = pissa_write_file_atomic(path, config, strlen(config));
    free(path);
    free(config);
    if (st == PISSA_OK) return pissa_dir_txn_commit(txn);
    pissa_dir_txn_abort(txn);
    return st;
}
