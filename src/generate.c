/* Inference with a KV cache: one token at a time through a loaded model (pissa/model.h) — the same weights,
 * adapters and kernels (ops.h: RMSNorm, projections with LoRA, biases, RoPE tables, SwiGLU) as the trainable model,
 * so the two agree at every position; only the KV cache and the attention over it are the generator's own. Then
 * karpathy/llama2.c run.c's sampling and generation loop. */
#include "generate_internal.h"
#include "model_internal.h"
#include "ops.h"
#include "parallel.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { P_Q, P_K, P_V, P_O, P_GATE, P_UP, P_DOWN, N_PROJ = PISSA_N_PROJ };

typedef struct prob_index {
    float prob;
    int32_t index;
} prob_index;

struct pissa_generator {
    pissa_model *m;        /* owned: weights, adapters */
    pissa__layer_view *layers; // (L)
    pissa__qweight emb, head; /* (V, D) views, in their stored format */
    const float *norm, *inv_freq;
    int threads;              /* the kernels' threads, for which the scratch is sized */
    int64_t D, F, L, H, KV, hd, V, T, window;
    float eps;
    /* activations of one position */
    float *x, *xb;        // (D)
    float *q, *qn, *attn; // (H·hd)
    float *kn;            // (KV·hd) k before its per-head norm
    float *att;           // (T) scores of one head
    float *gate, *up;     // (F)
    float *rstd;          // (H) RMSNorm's saved 1/rms, unused here
    float *cos, *sin;     // (hd/2) RoPE tables of one position
    float *lora_xa, *scratch; /* the adapters' and the frozen products' scratch */
    float *logits;        // (V) for pissa_generate
    float *key_cache;     // (L, T, KV·hd)
    float *value_cache;   // (L, T, KV·hd)
    prob_index *probindex; // (V) for top-p sampling
};

/* ---- construction ---- */

void pissa_generator_free(pissa_generator *g) {
    if (!g) return;
    pissa_model_free(g->m);
    free(g->layers);
    float *bufs[] = {g->x, g->xb, g->q, g->qn, g->attn, g->kn, g->att, g->gate, g->up, g->rstd, g->cos, g->sin,
                     g->lora_xa, g->scratch, g->logits, g->key_cache, g->value_cache};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(g->probindex);
    free(g);
}

static pissa_status setup(pissa_generator *g, int64_t max_seq_len) {
    const pissa_llama_config *c = pissa_model_config(g->m);
    g->D = c->hidden_size, g->F = c->intermediate_size, g->L = c->num_hidden_layers, g->H = c->num_attention_heads;
    g->KV = c->num_key_value_heads, g->hd = c->head_dim, g->V = c->vocab_size, g->window = c->sliding_window;
    g->T = max_seq_len > 0 && max_seq_len < c->max_position_embeddings ? max_seq_len : c->max_position_embeddings;
    g->eps = (float)c->rms_norm_eps;
    pissa__model_ends(g->m, &g->emb, &g->norm, &g->head);
    g->inv_freq = pissa__model_inv_freq(g->m);
    if (!(g->layers = pissa__calloc((size_t)g->L, sizeof *g->layers)))
        return pissa__fail(PISSA_ERR_NOMEM, "generator: out of memory");
    g->threads = pissa__par_threads();
    size_t scratch = pissa__frozen_scratch_floats(g->head.type, g->threads);
    int64_t r_max = 1;
    for (int64_t l = 0; l < g->L; l++) {
        pissa__model_layer(g->m, (int)l, &g->layers[l]);
        for (int j = 0; j < N_PROJ; j++) {
            const pissa__linear *p = &g->layers[l].proj[j];
            size_t s = p->A ? pissa__lora_scratch_floats(1, (int)p->in, (int)p->out, (int)p->r, 0, p->W.type, g->threads)
                            : pissa__frozen_scratch_floats(p->W.type, g->threads);
            if (s > scratch) scratch = s;
            if (p->A && p->r > r_max) r_max = p->r;
        }
    }
    int64_t qd = g->H * g->hd, kvd = g->KV * g->hd;
    size_t cache = (size_t)g->L * (size_t)g->T * (size_t)kvd;
    g->x = pissa__calloc((size_t)g->D, sizeof(float));
    g->xb = pissa__calloc((size_t)g->D, sizeof(float));
    g->q = pissa__calloc((size_t)qd, sizeof(float));
    g->qn = pissa__calloc((size_t)qd, sizeof(float));
    g->attn = pissa__calloc((size_t)qd, sizeof(float));
    g->kn = pissa__calloc((size_t)kvd, sizeof(float));
    g->att = pissa__calloc((size_t)g->T, sizeof(float));
    g->gate = pissa__calloc((size_t)g->F, sizeof(float));
    g->up = pissa__calloc((size_t)g->F, sizeof(float));
    g->rstd = pissa__calloc((size_t)g->H, sizeof(float));
    g->cos = pissa__calloc((size_t)g->hd / 2, sizeof(float));
    g->sin = pissa__calloc((size_t)g->hd / 2, sizeof(float));
    g->lora_xa = pissa__calloc((size_t)r_max, sizeof(float));
    g->scratch = pissa__calloc(scratch ? scratch : 1, sizeof(float));
    g->logits = pissa__calloc((size_t)g->V, sizeof(float));
    g->key_cache = pissa__calloc(cache, sizeof(float));
    g->value_cache = pissa__calloc(cache, sizeof(float));
    g->probindex = pissa__calloc((size_t)g->V, sizeof *g->probindex);
    if (!g->x || !g->xb || !g->q || !g->qn || !g->attn || !g->kn || !g->att || !g->gate || !g->up || !g->rstd ||
        !g->cos || !g->sin || !g->lora_xa || !g->scratch || !g->logits || !g->key_cache || !g->value_cache ||
        !g->probindex)
        return pissa__fail(PISSA_ERR_NOMEM, "generator: out of memory for a KV cache of %lld positions (%.1f MiB)",
                           (long long)g->T, 2.0 * (double)cache * sizeof(float) / 1048576.0);
    return PISSA_OK;
}

pissa_status pissa__generator_create_from_model(pissa_model *m, int64_t max_seq_len, pissa_generator **out) {
    if (out) *out = NULL;
    pissa_generator *g = m && out ? calloc(1, sizeof *g) : NULL;
    if (!g) {
        pissa_model_free(m);
        return m && out ? pissa__fail(PISSA_ERR_NOMEM, "generator: out of memory")
                        : pissa__fail(PISSA_ERR_INVALID_ARG, "pissa__generator_create_from_model: NULL argument");
    }
    g->m = m;
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

pissa_status pissa_generator_create_with_opts(const char *model_path, const char *adapter_dir, int64_t max_seq_len,
                                              const pissa_model_opts *opts, pissa_generator **out) {
    if (out) *out = NULL;
    if (!model_path || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_generator_create: NULL argument");
    pissa_model *m;
    PISSA_TRY(pissa_model_load_with_opts(model_path, opts, &m));
    pissa_status st = adapter_dir ? pissa_model_load_adapter(m, adapter_dir) : PISSA_OK;
    if (st != PISSA_OK) {
        pissa_model_free(m);
        return st;
    }
    return pissa__generator_create_from_model(m, max_seq_len, out);
}

pissa_status pissa_generator_create(const char *model_path, const char *adapter_dir, int64_t max_seq_len,
                                    pissa_generator **out) {
    return pissa_generator_create_with_opts(model_path, adapter_dir, max_seq_len, NULL, out);
}

int64_t pissa_generator_vocab_size(const pissa_generator *g) { return g ? g->V : 0; }
int64_t pissa_generator_max_seq_len(const pissa_generator *g) { return g ? g->T : 0; }

/* ---- forward ---- */

/* y (out) = x·Wᵀ (+ s·(x·Aᵀ)·Bᵀ) (+ b): the training kernels with one row. */
static void linear_forward(pissa_generator *g, float *y, const float *x, const pissa__linear *p) {
    if (p->A)
        pissa__lora_forward(y, g->lora_xa, g->scratch, g->threads, x, NULL, 0.0f, &p->W, p->A, p->B, p->scale, 1,
                            (int)p->in, (int)p->out, (int)p->r);
    else pissa__frozen_forward(y, g->scratch, g->threads, x, &p->W, 1);
    if (p->bias) pissa__bias_forward(y, y, p->bias, 1, (int)p->out);
}

/* x (n) ← softmax(x): attention over the cache, the generator's own. */
static void softmax(float *x, int64_t n) {
    float max = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i] = expf(x[i] - max);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] / sum);
}

pissa_status pissa_generator_forward(pissa_generator *g, int32_t token, int64_t pos, float *logits) {
    if (!g || !logits) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_generator_forward: NULL argument");
    if (token < 0 || token >= g->V)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "generator: token %d is outside the vocabulary 0..%lld", (int)token,
                           (long long)g->V - 1);
    if (pos < 0 || pos >= g->T)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "generator: position %lld is outside the KV cache 0..%lld",
                           (long long)pos, (long long)g->T - 1);
    int64_t D = g->D, hd = g->hd, kvd = g->KV * hd, group = g->H / g->KV;
    int64_t k0 = g->window && pos - g->window + 1 > 0 ? pos - g->window + 1 : 0; /* first key in the window */
    float *x = g->x;
    pissa__blas_serial_begin(); /* the kernels split their work over the pool, as in a training pass */
    pissa__embedding_forward_q(x, &token, &g->emb, 1);
    pissa__rope_tables(g->cos, g->sin, NULL, (int)pos, 1, (int)hd / 2, g->inv_freq);
    for (int64_t l = 0; l < g->L; l++) {
        const pissa__layer_view *ly = &g->layers[l];
        float *kc = g->key_cache + l * g->T * kvd;   // (T, KV·hd)
        float *vc = g->value_cache + l * g->T * kvd; // (T, KV·hd)
        float *k = kc + pos * kvd;

        /* attention: q, k, v of this position (k and v into the cache); q and k normalised per head (Qwen3) */
        pissa__rmsnorm_forward(g->xb, g->rstd, x, ly->in_norm, g->eps, 1, (int)D);
        linear_forward(g, ly->q_norm ? g->qn : g->q, g->xb, &ly->proj[P_Q]);
        linear_forward(g, ly->k_norm ? g->kn : k, g->xb, &ly->proj[P_K]);
        linear_forward(g, vc + pos * kvd, g->xb, &ly->proj[P_V]);
        if (ly->q_norm) pissa__rmsnorm_forward(g->q, g->rstd, g->qn, ly->q_norm, g->eps, (int)g->H, (int)hd);
        if (ly->k_norm) pissa__rmsnorm_forward(k, g->rstd, g->kn, ly->k_norm, g->eps, (int)g->KV, (int)hd);
        pissa__rope_forward(g->q, g->q, g->cos, g->sin, NULL, 1, 1, (int)g->H, (int)hd);
        pissa__rope_forward(k, k, g->cos, g->sin, NULL, 1, 1, (int)g->KV, (int)hd);
        for (int64_t h = 0; h < g->H; h++) {
            int64_t kvh = h / group, n = pos + 1 - k0; /* grouped-query attention: kv head shared by `group` heads */
            /* att (n) = K[k0..pos, kvh]·q_h / √hd; out_h (hd) = V[k0..pos, kvh]ᵀ·softmax(att) */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)hd, 1.0f / sqrtf((float)hd),
                        kc + k0 * kvd + kvh * hd, (int)kvd, g->q + h * hd, 1, 0.0f, g->att, 1);
            softmax(g->att, n);
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, (int)hd, 1.0f, vc + k0 * kvd + kvh * hd, (int)kvd, g->att,
                        1, 0.0f, g->attn + h * hd, 1);
        }
        linear_forward(g, g->xb, g->attn, &ly->proj[P_O]);
        pissa__add_forward(x, x, g->xb, (size_t)D);

        /* MLP: x += down(silu(gate(h)) ⊙ up(h)) */
        pissa__rmsnorm_forward(g->xb, g->rstd, x, ly->post_norm, g->eps, 1, (int)D);
        linear_forward(g, g->gate, g->xb, &ly->proj[P_GATE]);
        linear_forward(g, g->up, g->xb, &ly->proj[P_UP]);
        pissa__swiglu_forward(g->gate, g->gate, g->up, (size_t)g->F);
        linear_forward(g, g->xb, g->gate, &ly->proj[P_DOWN]);
        pissa__add_forward(x, x, g->xb, (size_t)D);
    }
    pissa__rmsnorm_forward(g->xb, g->rstd, x, g->norm, g->eps, 1, (int)D);
    pissa__frozen_forward(logits, g->scratch, g->threads, g->xb, &g->head, 1);
    pissa__blas_serial_end();
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
    if (n0 == 0) return sample_argmax(p, n); /* a top-p below 1/n over a flat distribution: the nucleus is the mode */
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

/* Feeds IDS (N >= 1 prompt tokens), then samples until STEPS positions or a stop; with ECHO every prompt token is
 * passed to CALLBACK too (pissa_generate), else only the sampled ones (pissa_generate_tokens). */
static pissa_status generate_from(pissa_generator *g, const pissa_tokenizer *tok, const int32_t *ids, size_t n,
                                  int echo, int64_t steps, float temperature, float topp, uint64_t seed,
                                  pissa_token_fn callback, void *user, int64_t *n_positions) {
    if (!(temperature >= 0.0f) || isinf(temperature))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "generate: temperature %g must be a finite number >= 0",
                           (double)temperature);
    if (isnan(topp)) return pissa__fail(PISSA_ERR_INVALID_ARG, "generate: top-p is NaN");
    if (steps <= 0 || steps > g->T) steps = g->T;
    /* llama2.c: run.c's stop (BOS); tokenizer.json: its stop ids, text through a decode stream */
    int hf = pissa_tokenizer_get_kind(tok) == PISSA_TOKENIZER_HF;
    const int32_t *stop = NULL;
    size_t n_stop = 0;
    pissa_tokenizer_stop_ids(tok, &stop, &n_stop);
    pissa_token_stream *stream = NULL;
    pissa_status st = PISSA_OK;
    if (hf) st = pissa_token_stream_create(tok, 1, &stream);
    pissa_rng rng;
    pissa__rng_seed(&rng, seed);
    int32_t token = ids[0], next;
    int stopped = 0;
    if (st == PISSA_OK && hf && echo) { /* the first prompt token prints too (as nothing when it is special) */
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
        if (sampled) /* sampling from NaN or Inf logits would pick garbage */
            for (int64_t i = 0; i < g->V && st == PISSA_OK; i++)
                if (!isfinite(g->logits[i]))
                    st = pissa__fail(PISSA_ERR_NUMERIC, "generate: logit %lld at position %lld is %g: the logits are "
                                     "not finite (NaN or Inf weights?)", (long long)i, (long long)pos,
                                     (double)g->logits[i]);
        if (st != PISSA_OK) break;
        next = sampled ? sample(g, g->logits, temperature, topp, &rng) : ids[pos + 1];
        pos++;
        const char *piece = NULL;
        size_t plen = 0;
        if (hf) {
            int is_stop = 0;
            for (size_t k = 0; sampled && k < n_stop; k++) is_stop |= next == stop[k];
            if (is_stop) break; /* the end of the turn or of the text */
            if (sampled || echo) st = pissa_token_stream_put(stream, next, &piece, &plen);
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
        if ((sampled || echo) && callback && callback(user, next, piece, plen)) break;
        token = next;
    }
    pissa_token_stream_free(stream);
    if (n_positions) *n_positions = pos;
    return st;
}

pissa_status pissa_generate(pissa_generator *g, const pissa_tokenizer *tok, const char *prompt, int64_t steps,
                            float temperature, float topp, uint64_t seed, pissa_token_fn callback, void *user,
                            int64_t *n_positions) {
    if (n_positions) *n_positions = 0;
    if (!g || !tok) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_generate: NULL argument");
    if (!prompt) prompt = "";
    /* llama2.c: run.c's prompt (BOS + the text); tokenizer.json: the prompt as transformers encodes it
     * (tokenizer(prompt), BOS when the tokenizer adds one) */
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
    if (st == PISSA_OK)
        st = generate_from(g, tok, ids, n, 1, steps, temperature, topp, seed, callback, user, n_positions);
    free(ids);
    return st;
}

pissa_status pissa_generate_tokens(pissa_generator *g, const pissa_tokenizer *tok, const int32_t *prompt_ids,
                                   size_t n, int64_t steps, float temperature, float topp, uint64_t seed,
                                   pissa_token_fn callback, void *user, int64_t *n_positions) {
    if (n_positions) *n_positions = 0;
    if (!g || !tok || !prompt_ids) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_generate_tokens: NULL argument");
    if (n == 0) return pissa__fail(PISSA_ERR_INVALID_ARG, "generate: the prompt has no token");
    for (size_t i = 0; i < n; i++)
        if (prompt_ids[i] < 0 || prompt_ids[i] >= g->V)
            return pissa__fail(PISSA_ERR_INVALID_ARG, "generate: prompt token %zu is %d, outside [0, %lld)", i,
                               (int)prompt_ids[i], (long long)g->V);
    return generate_from(g, tok, prompt_ids, n, 0, steps, temperature, topp, seed, callback, user, n_positions);
}
