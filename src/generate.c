/* Inference with a KV cache: one token at a time through a Llama model in the Hugging Face maths (REFERENCE §5),
 * with PEFT LoRA layers applied unmerged, and karpathy/llama2.c run.c's sampling and generation loop. */
#include "generate_internal.h"
#include "interop_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { P_Q, P_K, P_V, P_O, P_GATE, P_UP, P_DOWN, N_PROJ };
static const char *proj_paths[N_PROJ] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                         "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                         "mlp.down_proj"};

/* A linear layer y = x·Wᵀ (+ s·(x·Aᵀ)·Bᵀ when A is set). */
typedef struct linear {
    const float *W; // (out, in)
    const float *A; // (r, in) or NULL
    const float *B; // (out, r)
    int64_t out, in, r;
    float scale;
} linear;

typedef struct layer {
    const float *rms_att; // (D)
    const float *rms_ffn; // (D)
    linear proj[N_PROJ];
} layer;

struct pissa_generator {
    pissa__weights w;
    pissa_peft_adapter *adapter; /* owns the A and B the layers point into */
    int64_t D, F, L, H, KV, hd, V, T;
    float eps;
    const float *emb;  // (V, D)
    const float *norm; // (D)
    const float *head; // (V, D): lm_head, or the embedding when tied
    layer *layers;     // (L)
    float *cos, *sin;  // (T, hd/2) RoPE tables
    /* activations of one position */
    float *x, *xb;        // (D)
    float *q, *attn;      // (H·hd)
    float *k, *v;         // (KV·hd)
    float *att;           // (T) scores of one head
    float *hb, *hb2;      // (F)
    float *lora_tmp;      // (max r)
    float *logits;        // (V) for pissa_generate
    float *key_cache;     // (L, T, KV·hd)
    float *value_cache;   // (L, T, KV·hd)
    struct prob_index *probindex; // (V) for top-p sampling
};

typedef struct prob_index {
    float prob;
    int32_t index;
} prob_index;

/* ---- construction ---- */

static const float *tensor_data(const pissa__weights *w, const char *name) {
    pissa_tensor *t = pissa__weights_get(w, name);
    return t ? pissa_tensor_data(t) : NULL;
}

/* Points the projections at the adapter's A and B, with the rank and scale PEFT's rules give each module
 * (pissa__peft_map_llama: list/regex/all-linear targets, layers_to_transform, rank/alpha patterns, rsLoRA). */
static pissa_status attach_adapter(pissa_generator *g) {
    pissa__peft_slot *slots = pissa__calloc((size_t)(g->L * N_PROJ), sizeof *slots);
    if (!slots) return pissa__fail(PISSA_ERR_NOMEM, "adapter: out of memory");
    pissa_status st = pissa__peft_map_llama(g->adapter, &g->w, 0, slots);
    for (int64_t k = 0; st == PISSA_OK && k < g->L * N_PROJ; k++) {
        if (slots[k].module < 0) continue;
        const char *mod;
        const pissa_tensor *A, *B;
        st = pissa_peft_adapter_module(g->adapter, (size_t)slots[k].module, &mod, &A, &B);
        if (st != PISSA_OK) break;
        linear *p = &g->layers[k / N_PROJ].proj[k % N_PROJ];
        p->A = pissa_tensor_data(A);
        p->B = pissa_tensor_data(B);
        p->r = slots[k].r;
        p->scale = (float)slots[k].scale;
    }
    free(slots);
    if (st != PISSA_OK && st != PISSA_ERR_NOMEM) { /* "adapter:" is replaced by the folder's name by the caller */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", pissa_last_error());
        st = pissa__fail(st, "adapter: %s", msg);
    }
    return st;
}

void pissa_generator_free(pissa_generator *g) {
    if (!g) return;
    pissa__weights_free(&g->w);
    pissa_peft_adapter_free(g->adapter);
    free(g->layers);
    float *bufs[] = {g->cos, g->sin, g->x, g->xb, g->q, g->attn, g->k, g->v, g->att, g->hb, g->hb2,
                     g->lora_tmp, g->logits, g->key_cache, g->value_cache};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(g->probindex);
    free(g);
}

static pissa_status setup(pissa_generator *g, int64_t max_seq_len) {
    const pissa_llama_config *c = &g->w.cfg;
    g->D = c->hidden_size, g->F = c->intermediate_size, g->L = c->num_hidden_layers, g->H = c->num_attention_heads;
    g->KV = c->num_key_value_heads, g->hd = c->head_dim, g->V = c->vocab_size;
    g->T = max_seq_len > 0 && max_seq_len < c->max_position_embeddings ? max_seq_len : c->max_position_embeddings;
    g->eps = (float)c->rms_norm_eps;
    g->emb = tensor_data(&g->w, "model.embed_tokens.weight");
    g->norm = tensor_data(&g->w, "model.norm.weight");
    g->head = c->tie_word_embeddings ? g->emb : tensor_data(&g->w, "lm_head.weight");
    if (!(g->layers = pissa__calloc((size_t)g->L, sizeof *g->layers)))
        return pissa__fail(PISSA_ERR_NOMEM, "generator: out of memory");
    int64_t qd = g->H * g->hd, kvd = g->KV * g->hd;
    int64_t shapes[N_PROJ][2] = {{qd, g->D}, {kvd, g->D}, {kvd, g->D}, {g->D, qd},
                                 {g->F, g->D}, {g->F, g->D}, {g->D, g->F}};
    char name[160];
    for (int64_t l = 0; l < g->L; l++) {
        layer *ly = &g->layers[l];
        snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)l);
        ly->rms_att = tensor_data(&g->w, name);
        snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
        ly->rms_ffn = tensor_data(&g->w, name);
        for (int j = 0; j < N_PROJ; j++) {
            snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l, proj_paths[j]);
            ly->proj[j] = (linear){.W = tensor_data(&g->w, name), .out = shapes[j][0], .in = shapes[j][1]};
        }
    }
    if (g->adapter) PISSA_TRY(attach_adapter(g));
    int64_t r_max = 1;
    for (int64_t l = 0; l < g->L; l++)
        for (int j = 0; j < N_PROJ; j++)
            if (g->layers[l].proj[j].r > r_max) r_max = g->layers[l].proj[j].r;

    /* RoPE tables: angle = p·theta^(−2i/hd), i < hd/2 (rotate_half pairs i and i + hd/2 share it). */
    int64_t half = g->hd / 2;
    size_t cache = (size_t)g->L * (size_t)g->T * (size_t)kvd;
    g->cos = pissa__alloc((size_t)(g->T * half), sizeof(float));
    g->sin = pissa__alloc((size_t)(g->T * half), sizeof(float));
    g->x = pissa__calloc((size_t)g->D, sizeof(float));
    g->xb = pissa__calloc((size_t)g->D, sizeof(float));
    g->q = pissa__calloc((size_t)qd, sizeof(float));
    g->attn = pissa__calloc((size_t)qd, sizeof(float));
    g->k = pissa__calloc((size_t)kvd, sizeof(float));
    g->v = pissa__calloc((size_t)kvd, sizeof(float));
    g->att = pissa__calloc((size_t)g->T, sizeof(float));
    g->hb = pissa__calloc((size_t)g->F, sizeof(float));
    g->hb2 = pissa__calloc((size_t)g->F, sizeof(float));
    g->lora_tmp = pissa__calloc((size_t)r_max, sizeof(float));
    g->logits = pissa__calloc((size_t)g->V, sizeof(float));
    g->key_cache = pissa__calloc(cache, sizeof(float));
    g->value_cache = pissa__calloc(cache, sizeof(float));
    g->probindex = pissa__calloc((size_t)g->V, sizeof *g->probindex);
    if (!g->cos || !g->sin || !g->x || !g->xb || !g->q || !g->attn || !g->k || !g->v || !g->att || !g->hb ||
        !g->hb2 || !g->lora_tmp || !g->logits || !g->key_cache || !g->value_cache || !g->probindex)
        return pissa__fail(PISSA_ERR_NOMEM, "generator: out of memory for a KV cache of %lld positions (%.1f MiB)",
                           (long long)g->T, 2.0 * (double)cache * sizeof(float) / 1048576.0);
    for (int64_t p = 0; p < g->T; p++)
        for (int64_t i = 0; i < half; i++) {
            double angle = (double)p * pow(g->w.cfg.rope_theta, -2.0 * (double)i / (double)g->hd);
            g->cos[p * half + i] = (float)cos(angle);
            g->sin[p * half + i] = (float)sin(angle);
        }
    return PISSA_OK;
}

pissa_status pissa__generator_create_from_weights(pissa__weights *w, pissa_peft_adapter *adapter, int64_t max_seq_len,
                                                  pissa_generator **out) {
    if (out) *out = NULL;
    pissa_generator *g = (w && out) ? calloc(1, sizeof *g) : NULL;
    if (!g) {
        if (w) pissa__weights_free(w);
        pissa_peft_adapter_free(adapter);
        return (w && out) ? pissa__fail(PISSA_ERR_NOMEM, "generator: out of memory")
                          : pissa__fail(PISSA_ERR_INVALID_ARG, "pissa__generator_create_from_weights: NULL argument");
    }
    g->w = *w;
    memset(w, 0, sizeof *w);
    g->adapter = adapter;
    pissa_status st = max_seq_len < 0 ? pissa__fail(PISSA_ERR_INVALID_ARG, "generator: max_seq_len %lld is negative",
                                                    (long long)max_seq_len)
                                      : setup(g, max_seq_len);
    if (st != PISSA_OK) {
        pissa_generator_free(g);
        return st;
    }
    *out = g;
    return PISSA_OK;
}

pissa_status pissa_generator_create(const char *model_path, const char *adapter_dir, int64_t max_seq_len,
                                    pissa_generator **out) {
    if (out) *out = NULL;
    if (!model_path || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_generator_create: NULL argument");
    pissa__weights w;
    PISSA_TRY(pissa__weights_load(model_path, &w));
    pissa_peft_adapter *a = NULL;
    if (adapter_dir) {
        pissa_status st = pissa_peft_adapter_load(adapter_dir, &a);
        if (st != PISSA_OK) {
            pissa__weights_free(&w);
            return st;
        }
    }
    pissa_status st = pissa__generator_create_from_weights(&w, a, max_seq_len, out);
    if (st != PISSA_OK && adapter_dir && !strncmp(pissa_last_error(), "adapter:", 8)) {
        char msg[1024]; /* copied: the message is the argument */
        snprintf(msg, sizeof msg, "%s", pissa_last_error() + 8);
        return pissa__fail(st, "adapter %s:%s", adapter_dir, msg);
    }
    return st;
}

int64_t pissa_generator_vocab_size(const pissa_generator *g) { return g ? g->V : 0; }
int64_t pissa_generator_max_seq_len(const pissa_generator *g) { return g ? g->T : 0; }

/* ---- forward ---- */

/* y (out) = x·Wᵀ + s·(x·Aᵀ)·Bᵀ */
static void linear_forward(float *y, const float *x, const linear *p, float *tmp) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)p->out, (int)p->in, 1.0f, p->W, (int)p->in, x, 1, 0.0f, y, 1);
    if (!p->A) return;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)p->r, (int)p->in, 1.0f, p->A, (int)p->in, x, 1, 0.0f, tmp, 1);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)p->out, (int)p->r, p->scale, p->B, (int)p->r, tmp, 1, 1.0f, y, 1);
}

/* out = x / sqrt(mean(x²) + eps) · w */
static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float inv = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++) out[i] = w[i] * (x[i] * inv);
}

static void softmax(float *x, int64_t n) {
    float max = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i] = expf(x[i] - max);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] / sum);
}

/* rotate_half RoPE on N_HEADS heads of V: (x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin). */
static void rope(float *v, int64_t n_heads, int64_t hd, const float *cos, const float *sin) {
    int64_t half = hd / 2;
    for (int64_t h = 0; h < n_heads; h++) {
        float *x1 = v + h * hd, *x2 = x1 + half;
        for (int64_t i = 0; i < half; i++) {
            float a = x1[i], b = x2[i];
            x1[i] = a * cos[i] - b * sin[i];
            x2[i] = b * cos[i] + a * sin[i];
        }
    }
}

pissa_status pissa_generator_forward(pissa_generator *g, int32_t token, int64_t pos, float *logits) {
    if (!g || !logits) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_generator_forward: NULL argument");
    if (token < 0 || token >= g->V)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "generator: token %d is outside the vocabulary 0..%lld", (int)token,
                           (long long)g->V - 1);
    if (pos < 0 || pos >= g->T)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "generator: position %lld is outside the KV cache 0..%lld",
                           (long long)pos, (long long)g->T - 1);
    int64_t D = g->D, hd = g->hd, kvd = g->KV * hd, group = g->H / g->KV, half = hd / 2;
    float *x = g->x;
    memcpy(x, g->emb + (int64_t)token * D, (size_t)D * sizeof(float));
    for (int64_t l = 0; l < g->L; l++) {
        const layer *ly = &g->layers[l];
        float *kc = g->key_cache + l * g->T * kvd;   // (T, KV·hd)
        float *vc = g->value_cache + l * g->T * kvd; // (T, KV·hd)

        /* attention: q, k, v of this position; k and v go to the cache */
        rmsnorm(g->xb, x, ly->rms_att, D, g->eps);
        linear_forward(g->q, g->xb, &ly->proj[P_Q], g->lora_tmp);
        linear_forward(kc + pos * kvd, g->xb, &ly->proj[P_K], g->lora_tmp);
        linear_forward(vc + pos * kvd, g->xb, &ly->proj[P_V], g->lora_tmp);
        rope(g->q, g->H, hd, g->cos + pos * half, g->sin + pos * half);
        rope(kc + pos * kvd, g->KV, hd, g->cos + pos * half, g->sin + pos * half);
        for (int64_t h = 0; h < g->H; h++) {
            int64_t kvh = h / group; /* grouped-query attention: KV head shared by `group` query heads */
            /* att (pos+1) = K[0..pos, kvh]·q_h / √hd; out_h (hd) = V[0..pos, kvh]ᵀ·softmax(att) */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)(pos + 1), (int)hd, 1.0f / sqrtf((float)hd), kc + kvh * hd,
                        (int)kvd, g->q + h * hd, 1, 0.0f, g->att, 1);
            softmax(g->att, pos + 1);
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)(pos + 1), (int)hd, 1.0f, vc + kvh * hd, (int)kvd, g->att, 1,
                        0.0f, g->attn + h * hd, 1);
        }
        linear_forward(g->xb, g->attn, &ly->proj[P_O], g->lora_tmp);
        for (int64_t i = 0; i < D; i++) x[i] += g->xb[i];

        /* MLP: x += down(silu(gate(h)) ⊙ up(h)) */
        rmsnorm(g->xb, x, ly->rms_ffn, D, g->eps);
        linear_forward(g->hb, g->xb, &ly->proj[P_GATE], g->lora_tmp);
        linear_forward(g->hb2, g->xb, &ly->proj[P_UP], g->lora_tmp);
        for (int64_t i = 0; i < g->F; i++) g->hb[i] = g->hb[i] / (1.0f + expf(-g->hb[i])) * g->hb2[i];
        linear_forward(g->xb, g->hb, &ly->proj[P_DOWN], g->lora_tmp);
        for (int64_t i = 0; i < D; i++) x[i] += g->xb[i];
    }
    rmsnorm(g->xb, x, g->norm, D, g->eps);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)g->V, (int)D, 1.0f, g->head, (int)D, g->xb, 1, 0.0f, logits, 1);
    return PISSA_OK;
}

/* ---- sampling (run.c sample_argmax, sample_mult, sample_topp) ---- */

static int32_t sample_argmax(const float *p, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (p[i] > p[best]) best = i;
    return (int32_t)best;
}

/* Index drawn from probabilities P (summing to 1) with COIN in [0, 1). */
static int32_t sample_mult(const float *p, int64_t n, float coin) {
    float cdf = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        cdf += p[i];
        if (coin < cdf) return (int32_t)i;
    }
    return (int32_t)(n - 1); /* rounding */
}

static int cmp_prob_desc(const void *a, const void *b) {
    const prob_index *x = a, *y = b;
    if (x->prob != y->prob) return x->prob > y->prob ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index); /* ties by id, so the order never depends on qsort */
}

/* Nucleus sampling: from the smallest set of most likely tokens whose probability exceeds TOPP. Tokens below
 * (1 − topp)/(n − 1) cannot be in it and are dropped before sorting, as run.c does. */
static int32_t sample_topp(const float *p, int64_t n, float topp, prob_index *pi, float coin) {
    int64_t n0 = 0;
    const float cutoff = (1.0f - topp) / (float)(n - 1);
    for (int64_t i = 0; i < n; i++)
        if (p[i] >= cutoff) pi[n0++] = (prob_index){p[i], (int32_t)i};
    qsort(pi, (size_t)n0, sizeof *pi, cmp_prob_desc);
    float cumulative = 0.0f;
    int64_t last = n0 - 1;
    for (int64_t i = 0; i < n0; i++) {
        cumulative += pi[i].prob;
        if (cumulative > topp) {
            last = i;
            break;
        }
    }
    float r = coin * cumulative, cdf = 0.0f;
    for (int64_t i = 0; i <= last; i++) {
        cdf += pi[i].prob;
        if (r < cdf) return pi[i].index;
    }
    return pi[last].index;
}

/* Consumes LOGITS (scaled and softmaxed in place). */
static int32_t sample(pissa_generator *g, float *logits, float temperature, float topp, pissa_rng *rng) {
    if (temperature == 0.0f || g->V == 1) return sample_argmax(logits, g->V);
    for (int64_t i = 0; i < g->V; i++) logits[i] /= temperature;
    softmax(logits, g->V);
    float coin = (float)pissa__rng_uniform(rng);
    if (topp <= 0.0f || topp >= 1.0f) return sample_mult(logits, g->V, coin);
    return sample_topp(logits, g->V, topp, g->probindex, coin);
}

/* ---- generation (run.c generate) ---- */

pissa_status pissa_generate(pissa_generator *g, const pissa_tokenizer *tok, const char *prompt, int64_t steps,
                            float temperature, float topp, uint64_t seed, pissa_token_fn callback, void *user,
                            int64_t *n_positions) {
    if (n_positions) *n_positions = 0;
    if (!g || !tok) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_generate: NULL argument");
    if (!(temperature >= 0.0f) || isinf(temperature))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "generate: temperature %g must be a finite number >= 0",
                           (double)temperature);
    if (isnan(topp)) return pissa__fail(PISSA_ERR_INVALID_ARG, "generate: top-p is NaN");
    if (steps <= 0 || steps > g->T) steps = g->T;
    if (!prompt) prompt = "";
    /* llama2.c: run.c's prompt (BOS + the text) and its stop (BOS); tokenizer.json: the prompt as transformers
     * encodes it (tokenizer(prompt), BOS when the tokenizer adds one), its stop ids, text through a decode stream */
    int hf = pissa_tokenizer_get_kind(tok) == PISSA_TOKENIZER_HF;
    size_t len = strlen(prompt), cap = pissa_tokenizer_max_tokens(tok, len), n = 0;
    int32_t *ids = cap == SIZE_MAX ? NULL : pissa__alloc(cap + 1, sizeof *ids);
    if (!ids) return pissa__fail(PISSA_ERR_NOMEM, "generate: out of memory for a prompt of %zu bytes", len);
    pissa_status st = hf ? pissa_tokenizer_encode_text(tok, prompt, len, 1, ids, cap, &n)
                         : pissa_tokenizer_encode(tok, prompt, len, 1, 0, ids, cap, &n);
    if (st == PISSA_OK && n == 0) { /* an empty prompt and no BOS from the post-processor: start from BOS */
        ids[n++] = pissa_tokenizer_special_id(tok, PISSA_SPECIAL_BOS);
        if (ids[0] < 0)
            st = pissa__fail(PISSA_ERR_INVALID_ARG, "generate: the prompt is empty and the tokenizer has no BOS token "
                             "to start from; give a prompt");
    }
    const int32_t *stop = NULL;
    size_t n_stop = 0;
    pissa_tokenizer_stop_ids(tok, &stop, &n_stop);
    pissa_token_stream *stream = NULL;
    if (st == PISSA_OK && hf) st = pissa_token_stream_create(tok, 1, &stream);
    pissa_rng rng;
    pissa__rng_seed(&rng, seed);
    int32_t token = st == PISSA_OK ? ids[0] : 0, next;
    int stopped = 0;
    if (st == PISSA_OK && hf) { /* the first prompt token prints too (as nothing when it is special) */
        const char *piece;
        size_t plen;
        st = pissa_token_stream_put(stream, token, &piece, &plen);
        if (st == PISSA_OK && callback && callback(user, token, piece, plen)) stopped = 1;
    }
    int64_t pos = 0;
    while (st == PISSA_OK && !stopped && pos < steps) {
        st = pissa_generator_forward(g, token, pos, g->logits);
        if (st != PISSA_OK) break;
        int sampled = pos >= (int64_t)n - 1;
        next = sampled ? sample(g, g->logits, temperature, topp, &rng) : ids[pos + 1];
        pos++;
        const char *piece;
        size_t plen;
        if (hf) {
            int is_stop = 0;
            for (size_t k = 0; sampled && k < n_stop; k++) is_stop |= next == stop[k];
            if (is_stop) break; /* the end of the turn or of the text */
            st = pissa_token_stream_put(stream, next, &piece, &plen);
            if (st != PISSA_OK) break;
        } else {
            if (next == PISSA_TOKEN_BOS) break; /* BOS delimits sequences: the story is over */
            piece = pissa_tokenizer_decode_piece(tok, token, next, &plen);
            if (!piece) {
                st = pissa__fail(PISSA_ERR_INVALID_ARG, "generate: token %d is beyond the tokenizer's %d tokens",
                                 (int)next, (int)pissa_tokenizer_vocab_size(tok));
                break;
            }
        }
        if (callback && callback(user, next, piece, plen)) break;
        token = next;
    }
    pissa_token_stream_free(stream);
    free(ids);
    if (n_positions) *n_positions = pos;
    return st;
}
